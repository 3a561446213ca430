// SPDX-License-Identifier: Apache-2.0
#include "policy/cidr.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace gvm::policy {

namespace {

// Parses a textual IPv4 or IPv6 address into 16 bytes (IPv4 in the first 4),
// folding IPv4-mapped IPv6 into IPv4.
bool parseAddress(std::string_view text, bool *v6, std::array<uint8_t, 16> *bytes)
{
	if (text.empty() || text.size() > 64)
		return false;
	char buf[65];
	std::memcpy(buf, text.data(), text.size());
	buf[text.size()] = '\0';
	bytes->fill(0);
	if (inet_pton(AF_INET, buf, bytes->data()) == 1) {
		*v6 = false;
		return true;
	}
	if (inet_pton(AF_INET6, buf, bytes->data()) != 1)
		return false;
	static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (std::memcmp(bytes->data(), kMapped, sizeof(kMapped)) == 0) {
		std::memmove(bytes->data(), bytes->data() + 12, 4);
		std::memset(bytes->data() + 4, 0, 12);
		*v6 = false;
		return true;
	}
	*v6 = true;
	return true;
}

bool prefixMatches(const std::array<uint8_t, 16> &a, const std::array<uint8_t, 16> &b, int prefix)
{
	int full = prefix / 8;
	if (std::memcmp(a.data(), b.data(), static_cast<size_t>(full)) != 0)
		return false;
	int rest = prefix % 8;
	if (rest == 0)
		return true;
	auto mask = static_cast<uint8_t>(0xff << (8 - rest));
	return (a[static_cast<size_t>(full)] & mask) == (b[static_cast<size_t>(full)] & mask);
}

} // namespace

bool Cidr::parse(std::string_view text, Cidr *out, std::string *error)
{
	std::string_view address = text;
	std::string_view prefixText;
	if (size_t slash = text.find('/'); slash != std::string_view::npos) {
		address = text.substr(0, slash);
		prefixText = text.substr(slash + 1);
	}
	Cidr cidr;
	if (!parseAddress(address, &cidr.v6_, &cidr.bytes_)) {
		*error = "'" + std::string(address) + "' is not an IPv4 or IPv6 address";
		return false;
	}
	int maxPrefix = cidr.v6_ ? 128 : 32;
	cidr.prefix_ = maxPrefix;
	if (text.find('/') != std::string_view::npos) {
		int prefix = -1;
		auto [end, ec] = std::from_chars(prefixText.data(), prefixText.data() + prefixText.size(), prefix);
		if (ec != std::errc() || end != prefixText.data() + prefixText.size() || prefixText.empty() ||
		    prefix < 0 || prefix > maxPrefix) {
			*error = "prefix length '" + std::string(prefixText) + "' is not a number from 0 to " +
				 std::to_string(maxPrefix);
			return false;
		}
		cidr.prefix_ = prefix;
	}
	// Host bits set ("10.0.0.1/8") are almost always a typo for a narrower
	// network: refuse rather than guess which was meant.
	std::array<uint8_t, 16> host = cidr.bytes_;
	for (int bit = cidr.prefix_; bit < maxPrefix; bit++)
		host[static_cast<size_t>(bit / 8)] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
	if (host != cidr.bytes_) {
		char buf[INET6_ADDRSTRLEN];
		inet_ntop(cidr.v6_ ? AF_INET6 : AF_INET, host.data(), buf, sizeof(buf));
		*error = "host bits are set; did you mean '" + std::string(buf) + "/" +
			 std::to_string(cidr.prefix_) + "'?";
		return false;
	}
	*out = cidr;
	return true;
}

bool Cidr::contains(std::string_view address) const
{
	bool v6 = false;
	std::array<uint8_t, 16> bytes{};
	if (!parseAddress(address, &v6, &bytes) || v6 != v6_)
		return false;
	return prefixMatches(bytes_, bytes, prefix_);
}

} // namespace gvm::policy
