// SPDX-License-Identifier: Apache-2.0
#include "daemon/proxy/address_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>
#include <utility>

namespace gvm::proxy {

namespace {

using Bytes = std::array<uint8_t, 16>;
using Ipv4Bytes = std::array<uint8_t, 4>;

constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
constexpr uint8_t kNat64Prefix[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
constexpr uint8_t kZeroPrefix[12] = {};

// An address as the guard compares it. An IPv4-mapped IPv6 address is folded
// into IPv4: on the wire it is IPv4 traffic. IPv4-compatible and NAT64
// addresses stay IPv6 (that is what is dialled) but carry the IPv4 address
// they stand for, which decides their class.
struct Ip {
	bool v6 = false;
	Bytes bytes{}; // IPv4 in the first 4 bytes
	std::optional<Ipv4Bytes> embedded;
};

bool prefixMatches(const uint8_t *a, const uint8_t *b, int prefix)
{
	auto full = static_cast<size_t>(prefix / 8);
	if (std::memcmp(a, b, full) != 0)
		return false;
	int rest = prefix % 8;
	if (rest == 0)
		return true;
	auto mask = static_cast<uint8_t>(0xff << (8 - rest));
	return (a[full] & mask) == (b[full] & mask);
}

Ip ipFromV6(const Bytes &raw)
{
	Ip ip;
	if (std::memcmp(raw.data(), kMappedPrefix, 12) == 0) {
		std::memcpy(ip.bytes.data(), raw.data() + 12, 4);
		return ip;
	}
	ip.v6 = true;
	ip.bytes = raw;
	bool compatible = std::memcmp(raw.data(), kZeroPrefix, 12) == 0 &&
			  !(raw[12] == 0 && raw[13] == 0 && raw[14] == 0 && raw[15] <= 1); // not :: or ::1
	if (compatible || std::memcmp(raw.data(), kNat64Prefix, 12) == 0) {
		Ipv4Bytes v4;
		std::memcpy(v4.data(), raw.data() + 12, 4);
		ip.embedded = v4;
	}
	return ip;
}

// addr is read by its family only: a caller may hand in a sockaddr_in that
// is not followed by the rest of a sockaddr_in6. memcpy, not a cast, because
// a sockaddr buffer need not be aligned for the wider structures.
std::optional<Ip> ipOf(const sockaddr *addr)
{
	if (!addr)
		return std::nullopt;
	if (addr->sa_family == AF_INET) {
		sockaddr_in sin;
		std::memcpy(&sin, addr, sizeof(sin));
		Ip ip;
		std::memcpy(ip.bytes.data(), &sin.sin_addr, 4);
		return ip;
	}
	if (addr->sa_family == AF_INET6) {
		sockaddr_in6 sin6;
		std::memcpy(&sin6, addr, sizeof(sin6));
		Bytes raw;
		std::memcpy(raw.data(), &sin6.sin6_addr, 16);
		return ipFromV6(raw);
	}
	return std::nullopt;
}

std::string formatBytes(bool v6, const uint8_t *bytes)
{
	char buf[INET6_ADDRSTRLEN];
	if (!inet_ntop(v6 ? AF_INET6 : AF_INET, bytes, buf, sizeof(buf)))
		return "(unprintable address)";
	return buf;
}

struct Ipv4Range {
	uint32_t network;
	int prefix;
	AddressClass cls;
};

constexpr uint32_t ipv4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	return uint32_t{a} << 24 | uint32_t{b} << 16 | uint32_t{c} << 8 | d;
}

// IANA's IPv4 special-purpose registry, as far as dialling matters; the first
// matching range decides.
constexpr Ipv4Range kIpv4Ranges[] = {
	{ipv4(255, 255, 255, 255), 32, AddressClass::Broadcast},
	{ipv4(0, 0, 0, 0), 8, AddressClass::Unspecified},
	{ipv4(127, 0, 0, 0), 8, AddressClass::Loopback},
	{ipv4(169, 254, 0, 0), 16, AddressClass::LinkLocal},
	{ipv4(10, 0, 0, 0), 8, AddressClass::Private},
	{ipv4(172, 16, 0, 0), 12, AddressClass::Private},
	{ipv4(192, 168, 0, 0), 16, AddressClass::Private},
	{ipv4(100, 64, 0, 0), 10, AddressClass::SharedAddressSpace},
	{ipv4(224, 0, 0, 0), 4, AddressClass::Multicast},
	{ipv4(240, 0, 0, 0), 4, AddressClass::Reserved},
	{ipv4(192, 0, 0, 0), 24, AddressClass::Reserved},   // IETF protocol assignments
	{ipv4(192, 88, 99, 0), 24, AddressClass::Reserved}, // deprecated 6to4 relay anycast
	{ipv4(198, 18, 0, 0), 15, AddressClass::Reserved},  // benchmarking
	{ipv4(192, 0, 2, 0), 24, AddressClass::Documentation},
	{ipv4(198, 51, 100, 0), 24, AddressClass::Documentation},
	{ipv4(203, 0, 113, 0), 24, AddressClass::Documentation},
};

AddressClass classifyIpv4(const uint8_t *bytes)
{
	uint32_t address = ipv4(bytes[0], bytes[1], bytes[2], bytes[3]);
	for (const Ipv4Range &range : kIpv4Ranges) {
		uint32_t mask = ~uint32_t{0} << (32 - range.prefix);
		if ((address & mask) == range.network)
			return range.cls;
	}
	return AddressClass::Public;
}

// ip.v6 and no embedded IPv4 address.
AddressClass classifyIpv6(const Bytes &a)
{
	static constexpr Bytes kLoopback = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
	if (a == Bytes{})
		return AddressClass::Unspecified;
	if (a == kLoopback)
		return AddressClass::Loopback;
	if (a[0] == 0xff)
		return AddressClass::Multicast;
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return AddressClass::LinkLocal;
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)
		return AddressClass::Reserved; // deprecated site-local
	if ((a[0] & 0xfe) == 0xfc)
		return AddressClass::UniqueLocal;
	// Only 2000::/3 is allocated as global unicast; the rest (100::/64
	// discard, 64:ff9b:1::/48 local-use NAT64 whose embedding is not
	// knowable, unassigned space) is not somewhere an upstream lives.
	if ((a[0] & 0xe0) != 0x20)
		return AddressClass::Reserved;
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8)
		return AddressClass::Documentation; // 2001:db8::/32
	if (a[0] == 0x3f && a[1] == 0xff && (a[2] & 0xf0) == 0)
		return AddressClass::Documentation; // 3fff::/20
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0x02 && a[4] == 0 && a[5] == 0)
		return AddressClass::Reserved; // 2001:2::/48 benchmarking
	return AddressClass::Public;
}

AddressClass classifyIp(const Ip &ip)
{
	if (!ip.v6)
		return classifyIpv4(ip.bytes.data());
	if (ip.embedded)
		return classifyIpv4(ip.embedded->data());
	return classifyIpv6(ip.bytes);
}

// The predicate of a deny reason: "<address> is <this>, not listed in ...".
const char *describe(AddressClass c)
{
	switch (c) {
	case AddressClass::Public: return "a public address";
	case AddressClass::Loopback: return "a loopback address";
	case AddressClass::LinkLocal: return "a link-local (cloud metadata) address";
	case AddressClass::Private: return "a private (RFC 1918) address";
	case AddressClass::SharedAddressSpace: return "in the shared address space (100.64.0.0/10)";
	case AddressClass::Multicast: return "a multicast address";
	case AddressClass::Unspecified: return "an unspecified address";
	case AddressClass::Broadcast: return "a broadcast address";
	case AddressClass::Reserved: return "a reserved address";
	case AddressClass::Documentation: return "a documentation address";
	case AddressClass::UniqueLocal: return "a unique local (fc00::/7) address";
	case AddressClass::HostOwn: return "one of the host's own addresses";
	case AddressClass::SandboxPool: return "in gvm's sandbox pool";
	}
	return "an address of an unknown class";
}

Error cidrError(std::string_view text, const std::string &why)
{
	return Error(ErrorDomain::Policy, 0, "bad CIDR '" + std::string(text) + "': " + why);
}

} // namespace

const char *toString(AddressClass c)
{
	switch (c) {
	case AddressClass::Public: return "public";
	case AddressClass::Loopback: return "loopback";
	case AddressClass::LinkLocal: return "link-local (cloud metadata)";
	case AddressClass::Private: return "private (RFC 1918)";
	case AddressClass::SharedAddressSpace: return "shared address space (100.64.0.0/10)";
	case AddressClass::Multicast: return "multicast";
	case AddressClass::Unspecified: return "unspecified";
	case AddressClass::Broadcast: return "broadcast";
	case AddressClass::Reserved: return "reserved";
	case AddressClass::Documentation: return "documentation";
	case AddressClass::UniqueLocal: return "unique local (fc00::/7)";
	case AddressClass::HostOwn: return "one of the host's own addresses";
	case AddressClass::SandboxPool: return "gvm's sandbox pool";
	}
	return "unknown";
}

Result<Cidr> Cidr::parse(std::string_view text)
{
	size_t slash = text.find('/');
	std::string_view address = text.substr(0, slash);

	// inet_pton needs a NUL-terminated string; anything longer than the
	// longest textual IPv6 address is not an address.
	char buf[INET6_ADDRSTRLEN];
	if (address.empty() || address.size() >= sizeof(buf))
		return fail(cidrError(text, "'" + std::string(address) + "' is not an IPv4 or IPv6 address"));
	std::memcpy(buf, address.data(), address.size());
	buf[address.size()] = '\0';

	Cidr cidr;
	if (inet_pton(AF_INET, buf, cidr.bytes_.data()) == 1) {
		cidr.v6_ = false;
	} else if (inet_pton(AF_INET6, buf, cidr.bytes_.data()) == 1) {
		cidr.v6_ = true;
	} else {
		return fail(cidrError(text, "'" + std::string(address) + "' is not an IPv4 or IPv6 address"));
	}

	int maxPrefix = cidr.v6_ ? 128 : 32;
	cidr.prefix_ = maxPrefix;
	if (slash != std::string_view::npos) {
		std::string_view prefixText = text.substr(slash + 1);
		int prefix = -1;
		const char *end = prefixText.data() + prefixText.size();
		auto [ptr, ec] = std::from_chars(prefixText.data(), end, prefix);
		if (prefixText.empty() || prefixText.size() > 3 || ec != std::errc() || ptr != end ||
		    prefix < 0 || prefix > maxPrefix)
			return fail(cidrError(text, "prefix length '" + std::string(prefixText) +
						      "' is not a number from 0 to " + std::to_string(maxPrefix)));
		cidr.prefix_ = prefix;
	}

	// Traffic to an IPv4-mapped address is IPv4 traffic: keep such a
	// network as the IPv4 network it covers.
	if (cidr.v6_ && cidr.prefix_ >= 96 && std::memcmp(cidr.bytes_.data(), kMappedPrefix, 12) == 0) {
		std::memmove(cidr.bytes_.data(), cidr.bytes_.data() + 12, 4);
		std::memset(cidr.bytes_.data() + 4, 0, 12);
		cidr.v6_ = false;
		cidr.prefix_ -= 96;
		maxPrefix = 32;
	}

	// Host bits set ("10.0.0.1/8") are almost always a typo for a narrower
	// network: refuse rather than guess which was meant.
	Bytes network = cidr.bytes_;
	for (int bit = cidr.prefix_; bit < maxPrefix; bit++)
		network[static_cast<size_t>(bit / 8)] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
	if (network != cidr.bytes_)
		return fail(cidrError(text, "host bits are set; did you mean '" + formatBytes(cidr.v6_, network.data()) +
					      "/" + std::to_string(cidr.prefix_) + "'?"));
	return cidr;
}

Result<Cidr> Cidr::host(const sockaddr *addr)
{
	std::optional<Ip> ip = ipOf(addr);
	if (!ip)
		return fail(Error(ErrorDomain::Internal, 0, "unsupported address family for a host network: " +
								    formatAddress(addr)));
	Cidr cidr;
	cidr.v6_ = ip->v6;
	cidr.bytes_ = ip->bytes;
	cidr.prefix_ = ip->v6 ? 128 : 32;
	return cidr;
}

bool Cidr::contains(const sockaddr *addr) const
{
	std::optional<Ip> ip = ipOf(addr);
	if (!ip)
		return false;
	if (v6_)
		return ip->v6 && prefixMatches(bytes_.data(), ip->bytes.data(), prefix_);
	if (!ip->v6)
		return prefixMatches(bytes_.data(), ip->bytes.data(), prefix_);
	return ip->embedded && prefixMatches(bytes_.data(), ip->embedded->data(), prefix_);
}

std::string Cidr::toString() const
{
	return formatBytes(v6_, bytes_.data()) + "/" + std::to_string(prefix_);
}

AddressClass classifyAddress(const sockaddr *addr)
{
	std::optional<Ip> ip = ipOf(addr);
	if (!ip)
		return AddressClass::Reserved;
	return classifyIp(*ip);
}

std::string formatAddress(const sockaddr *addr)
{
	if (!addr)
		return "(null)";
	if (addr->sa_family == AF_INET) {
		sockaddr_in sin;
		std::memcpy(&sin, addr, sizeof(sin));
		return formatBytes(false, reinterpret_cast<const uint8_t *>(&sin.sin_addr));
	}
	if (addr->sa_family == AF_INET6) {
		sockaddr_in6 sin6;
		std::memcpy(&sin6, addr, sizeof(sin6));
		const auto *bytes = reinterpret_cast<const uint8_t *>(&sin6.sin6_addr);
		// Spelled out rather than left to inet_ntop's choice, so that
		// a mapped address always reads as such.
		if (std::memcmp(bytes, kMappedPrefix, 12) == 0)
			return "::ffff:" + formatBytes(false, bytes + 12);
		return formatBytes(true, bytes);
	}
	return "(address family " + std::to_string(addr->sa_family) + ")";
}

Result<AddressGuard> AddressGuard::create(const std::vector<std::string> &allowCidrs,
					  std::vector<sockaddr_storage> hostAddresses, std::vector<Cidr> sandboxPool)
{
	std::vector<Cidr> allow;
	allow.reserve(allowCidrs.size());
	for (const std::string &text : allowCidrs) {
		Result<Cidr> cidr = Cidr::parse(text);
		if (!cidr)
			return fail(std::move(cidr).error());
		allow.push_back(*cidr);
	}

	std::vector<Cidr> hosts;
	hosts.reserve(hostAddresses.size());
	for (const sockaddr_storage &storage : hostAddresses) {
		Result<Cidr> host = Cidr::host(reinterpret_cast<const sockaddr *>(&storage));
		if (host)
			hosts.push_back(*host);
	}

	return AddressGuard(std::move(allow), std::move(hosts), std::move(sandboxPool));
}

AddressClass AddressGuard::classify(const sockaddr *addr) const
{
	for (const Cidr &host : hostAddresses_)
		if (host.contains(addr))
			return AddressClass::HostOwn;
	for (const Cidr &pool : sandboxPool_)
		if (pool.contains(addr))
			return AddressClass::SandboxPool;
	return classifyAddress(addr);
}

std::optional<std::string> AddressGuard::check(const sockaddr *addr) const
{
	std::optional<Ip> ip = ipOf(addr);
	if (!ip) {
		std::string reason = "unsupported address family";
		if (addr)
			reason += " " + std::to_string(addr->sa_family);
		return reason + ": only IPv4 and IPv6 upstreams are dialled";
	}

	for (const Cidr &cidr : allow_)
		if (cidr.contains(addr))
			return std::nullopt;

	AddressClass cls = classify(addr);
	if (cls == AddressClass::Public)
		return std::nullopt;

	std::string address = formatAddress(addr);
	// A NAT64 address does not show the IPv4 address that decided its
	// class; name it.
	if (ip->embedded && address.find('.') == std::string::npos)
		address += " (IPv4 " + formatBytes(false, ip->embedded->data()) + ")";
	return address + " is " + describe(cls) + ", not listed in upstream.allow_cidrs";
}

} // namespace gvm::proxy
