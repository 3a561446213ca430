// SPDX-License-Identifier: Apache-2.0
#include "common/rfc3339.h"

#include <cstdio>
#include <ctime>

namespace gvm {

std::string rfc3339(std::chrono::system_clock::time_point t, TimePrecision precision)
{
	auto micros = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
	std::time_t secs = static_cast<std::time_t>(micros / 1000000);
	std::tm tm{};
	gmtime_r(&secs, &tm);
	char buf[40];
	size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	if (precision == TimePrecision::Micros)
		std::snprintf(buf + n, sizeof(buf) - n, ".%06lldZ", static_cast<long long>(micros % 1000000));
	else
		std::snprintf(buf + n, sizeof(buf) - n, "Z");
	return buf;
}

} // namespace gvm
