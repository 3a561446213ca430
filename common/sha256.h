// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <string_view>

namespace gvm {

// Lower-case hex SHA-256 of the bytes.
std::string sha256Hex(std::string_view data);
// The same for the bytes of `first` followed by those of `second`.
std::string sha256Hex(std::string_view first, std::string_view second);

// Lower-case hex of arbitrary bytes.
std::string toHex(std::string_view bytes);

} // namespace gvm
