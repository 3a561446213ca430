// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace gvm {

// An absolute http(s)/ws(s) URL split into what policies match on.
struct Url {
	std::string scheme; // lower-case: http, https, ws, wss
	std::string host;   // lower-case; IPv6 literals without brackets
	uint16_t port = 0;  // explicit, or the scheme's default
	std::string path;   // starts with '/'; never empty
	std::string query;  // without '?'; fragment dropped
};

// Parses an absolute URL. Userinfo is refused (it hides the real host from
// a reader: http://github.com@evil.example/).
Result<Url> parseUrl(std::string_view text);

} // namespace gvm
