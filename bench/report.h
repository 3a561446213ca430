// SPDX-License-Identifier: Apache-2.0
//
// What the benchmarks share to summarise and print their figures.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace gvm::bench {

// The p-th percentile (0-100) by nearest rank; 0 for no values.
inline double percentile(std::vector<double> values, double p)
{
	if (values.empty())
		return 0;
	std::sort(values.begin(), values.end());
	auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
	return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

// a / b, 0 when b is not positive.
inline double ratio(double a, double b)
{
	return b > 0 ? a / b : 0;
}

// v with `decimals` digits after the point.
inline std::string fixed(double v, int decimals)
{
	char buf[64];
	std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
	return buf;
}

// s padded with spaces to `width`, right-aligned unless `left`.
inline std::string pad(const std::string &s, size_t width, bool left = false)
{
	if (s.size() >= width)
		return s;
	return left ? s + std::string(width - s.size(), ' ') : std::string(width - s.size(), ' ') + s;
}

} // namespace gvm::bench
