// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <sys/socket.h>

#include "common/result.h"

namespace gvm {

// A numeric socket address as users write it: "10.0.0.1", "10.0.0.1:5353",
// "::1", "[::1]:5353". No names are resolved. Errors say what was expected.
Result<sockaddr_storage> parseSocketAddress(std::string_view text, uint16_t defaultPort);

// "10.0.0.1:53", "[::1]:53".
std::string formatSocketAddress(const sockaddr_storage &address);

// The first "nameserver" of a resolv.conf text, with port 53; an error
// when there is none.
Result<sockaddr_storage> firstNameserver(std::string_view resolvConf);

} // namespace gvm
