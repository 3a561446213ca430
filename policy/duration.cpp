// SPDX-License-Identifier: Apache-2.0
//
// Durations ("300ms", "2s") and rates ("60/min") as policies write them.
#include <cstdint>
#include <string>

#include "policy/policy.h"

namespace gvm::policy {

namespace {

// Longest number accepted: 12 digits of hours still fit in int64 milliseconds.
constexpr size_t kMaxDigits = 12;

// Parses a whole number of at most kMaxDigits digits at the start of `text`,
// advancing it past the digits.
bool parseNumber(std::string_view *text, uint64_t *out)
{
	size_t n = 0;
	uint64_t value = 0;
	while (n < text->size() && (*text)[n] >= '0' && (*text)[n] <= '9') {
		if (n == kMaxDigits)
			return false;
		value = value * 10 + static_cast<uint64_t>((*text)[n] - '0');
		n++;
	}
	if (n == 0)
		return false;
	text->remove_prefix(n);
	*out = value;
	return true;
}

} // namespace

bool parseDuration(std::string_view text, std::chrono::milliseconds *out)
{
	uint64_t value = 0;
	if (!parseNumber(&text, &value))
		return false;
	int64_t unitMs = 0;
	if (text == "ms")
		unitMs = 1;
	else if (text == "s")
		unitMs = 1000;
	else if (text == "m")
		unitMs = 60 * 1000;
	else if (text == "h")
		unitMs = 60 * 60 * 1000;
	else
		return false;
	*out = std::chrono::milliseconds(static_cast<int64_t>(value) * unitMs);
	return true;
}

bool parseRate(std::string_view text, Rate *out)
{
	uint64_t count = 0;
	if (!parseNumber(&text, &count) || count == 0 || count > UINT32_MAX)
		return false;
	if (text.empty() || text.front() != '/')
		return false;
	text.remove_prefix(1);
	int64_t periodMs = 0;
	if (text == "s" || text == "sec" || text == "second")
		periodMs = 1000;
	else if (text == "m" || text == "min" || text == "minute")
		periodMs = 60 * 1000;
	else if (text == "h" || text == "hour")
		periodMs = 60 * 60 * 1000;
	else if (text == "d" || text == "day")
		periodMs = 24 * 60 * 60 * 1000;
	else
		return false;
	out->count = static_cast<uint32_t>(count);
	out->period = std::chrono::milliseconds(periodMs);
	return true;
}

std::string formatDuration(std::chrono::milliseconds d)
{
	int64_t ms = d.count();
	if (ms == 0)
		return "0s";
	if (ms % (60 * 60 * 1000) == 0)
		return std::to_string(ms / (60 * 60 * 1000)) + "h";
	if (ms % (60 * 1000) == 0)
		return std::to_string(ms / (60 * 1000)) + "m";
	if (ms % 1000 == 0)
		return std::to_string(ms / 1000) + "s";
	return std::to_string(ms) + "ms";
}

} // namespace gvm::policy
