// SPDX-License-Identifier: Apache-2.0
#include "common/rfc3339.h"

#include <ctime>

namespace gvm {

std::string rfc3339(std::chrono::system_clock::time_point t, TimePrecision precision)
{
	const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
	// Floor division, so that a time before 1970 has a fraction in [0, 1).
	long long secs = micros / 1000000;
	long long fraction = micros % 1000000;
	if (fraction < 0) {
		--secs;
		fraction += 1000000;
	}
	// Audit records take a time each: the date and time of day are
	// formatted once per second.
	thread_local bool formattedValid = false;
	thread_local long long formattedSecs = 0;
	thread_local char formatted[32];
	thread_local size_t formattedLength = 0;
	if (!formattedValid || secs != formattedSecs) {
		const auto when = static_cast<std::time_t>(secs);
		std::tm tm{};
		gmtime_r(&when, &tm);
		formattedLength = std::strftime(formatted, sizeof(formatted), "%Y-%m-%dT%H:%M:%S", &tm);
		formattedSecs = secs;
		formattedValid = true;
	}
	std::string out(formatted, formattedLength);
	if (precision == TimePrecision::Micros) {
		char digits[] = ".000000";
		for (size_t i = 6; i > 0; --i, fraction /= 10)
			digits[i] = static_cast<char>('0' + fraction % 10);
		out += digits;
	}
	out += 'Z';
	return out;
}

} // namespace gvm
