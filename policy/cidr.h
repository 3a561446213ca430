// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace gvm::policy {

// An IPv4 or IPv6 network ("10.0.0.0/8", "2001:db8::/32"); a bare address is
// a host network (/32, /128). Immutable value.
class Cidr
{
public:
	// Parses `text`; on failure returns false and fills `error` with why.
	static bool parse(std::string_view text, Cidr *out, std::string *error);

	// Whether the textual address lies in this network. An IPv4-mapped
	// IPv6 address ("::ffff:10.1.2.3") counts as its IPv4 address.
	bool contains(std::string_view address) const;

private:
	bool v6_ = false;
	std::array<uint8_t, 16> bytes_{};
	int prefix_ = 0;
};

} // namespace gvm::policy
