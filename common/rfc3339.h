// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <string>

namespace gvm {

enum class TimePrecision { Seconds, Micros };

// UTC timestamps: "2026-11-23T10:30:08Z", or with Micros
// "2026-11-23T10:30:08.123456Z" (audit records).
std::string rfc3339(std::chrono::system_clock::time_point t, TimePrecision precision);

} // namespace gvm
