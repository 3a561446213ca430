// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace gvm::proxy {

// What kind of destination an IP address is, as far as upstream safety
// (DESIGN.md §3, SSRF) is concerned. Everything but Public is refused as an
// upstream unless the policy's upstream.allow_cidrs lists it.
enum class AddressClass {
	Public,             // globally routable unicast
	Loopback,           // 127.0.0.0/8, ::1
	LinkLocal,          // 169.254.0.0/16 (cloud metadata), fe80::/10
	Private,            // RFC 1918: 10/8, 172.16/12, 192.168/16
	SharedAddressSpace, // RFC 6598 carrier-grade NAT: 100.64.0.0/10
	Multicast,          // 224.0.0.0/4, ff00::/8
	Unspecified,        // 0.0.0.0/8 ("this network"; Linux dials 0.0.0.0 locally), ::
	Broadcast,          // 255.255.255.255
	Reserved,           // 240/4, 192.0.0/24, 192.88.99/24, 198.18/15, fec0::/10,
	                    // 100::/64, 64:ff9b:1::/48, IPv6 outside 2000::/3
	Documentation,      // 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20
	UniqueLocal,        // fc00::/7
	HostOwn,            // one of the host's own interface addresses
	SandboxPool,        // inside gvm's sandbox address pool
};

// Human words for a class, used inside a deny reason: "loopback",
// "link-local (cloud metadata)", "private (RFC 1918)", ...
const char *toString(AddressClass c);

// An IPv4 or IPv6 network. Immutable value.
//
// An IPv4-mapped IPv6 network of prefix 96 or more ("::ffff:10.0.0.0/104") is
// stored as the IPv4 network it covers ("10.0.0.0/8"), since traffic to a
// mapped address is IPv4 traffic.
class Cidr
{
public:
	// Parses "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or
	// /128 host network). Refuses, with an Error of domain Policy whose
	// context quotes the text: a malformed address, a prefix length that is
	// not a decimal number within 0..32 (IPv4) or 0..128 (IPv6), and set
	// host bits ("10.0.0.1/8"), which are almost always a typo.
	static Result<Cidr> parse(std::string_view text);

	// The host network (/32 or /128) of one AF_INET or AF_INET6 address
	// (port and IPv6 scope ignored); an Error for null or another family.
	static Result<Cidr> host(const sockaddr *addr);

	// Whether addr (AF_INET or AF_INET6) lies in this network. An IPv6
	// address that stands for an IPv4 address (IPv4-mapped ::ffff:0:0/96,
	// IPv4-compatible ::/96, NAT64 64:ff9b::/96) is contained in an IPv4
	// network that contains the embedded IPv4 address. An IPv4-mapped
	// address is never contained in an IPv6 network; NAT64 and compatible
	// addresses are also contained in IPv6 networks that hold them as
	// written. Null or another family: false.
	bool contains(const sockaddr *addr) const;

	bool isIpv6() const { return v6_; }
	int prefixLength() const { return prefix_; }

	// "10.0.0.0/8", "2001:db8::/32": always with the prefix length.
	std::string toString() const;

private:
	Cidr() = default;

	bool v6_ = false;
	std::array<uint8_t, 16> bytes_{}; // IPv4 in the first 4 bytes
	int prefix_ = 0;
};

// The class of one address: AF_INET or AF_INET6 (the port is ignored). IPv6
// addresses that stand for an IPv4 address (IPv4-mapped ::ffff:a.b.c.d,
// IPv4-compatible ::a.b.c.d other than :: and ::1, NAT64 well-known prefix
// 64:ff9b::/96) are classified by the embedded IPv4 address. Only the address
// itself is considered, so it never returns HostOwn or SandboxPool (see
// AddressGuard::classify). Null or another family: Reserved.
AddressClass classifyAddress(const sockaddr *addr);

// The address without port or scope: "127.0.0.1", "::1", and IPv4-mapped
// addresses as "::ffff:127.0.0.1". "(null)" for null, "(address family N)" for
// a family other than AF_INET/AF_INET6.
std::string formatAddress(const sockaddr *addr);

// The upstream SSRF guard of one sandbox's proxy worker: after the worker
// resolves an upstream name, it asks check() about every address before it
// connects, and dials only addresses that pass, so DNS rebinding cannot dodge
// the check. Pure (no sockets, no DNS): the host's own addresses are
// collected by the caller (getifaddrs, before the worker is confined) and
// handed in. Immutable after create(); a policy reload builds a new guard.
// Copyable; const, so safe to use from any thread.
class AddressGuard
{
public:
	// allowCidrs: the policy's upstream.allow_cidrs, as written; a CIDR
	// that does not parse is Cidr::parse's Error ("bad CIDR '...': ..."),
	// unwrapped: the caller says where the list came from.
	// hostAddresses: the host's own addresses; entries of a family other
	// than AF_INET/AF_INET6 (getifaddrs' AF_PACKET...) are ignored.
	// sandboxPool: the networks gvm hands out to sandboxes (may be empty).
	static Result<AddressGuard> create(const std::vector<std::string> &allowCidrs,
					   std::vector<sockaddr_storage> hostAddresses = {},
					   std::vector<Cidr> sandboxPool = {});

	// The class of addr, the host's own addresses and the sandbox pool
	// included: HostOwn when addr equals a host address (also through an
	// IPv4-embedding IPv6 form), else SandboxPool when a pool network
	// contains it, else classifyAddress(addr). HostOwn comes first, so a
	// public address of the host is not Public.
	AddressClass classify(const sockaddr *addr) const;

	// Empty when addr may be dialled: an allow CIDR contains it, or its
	// class is Public. Otherwise the reason for the deny decision, one
	// sentence naming the address and its class, e.g. "127.0.0.1 is a
	// loopback address, not listed in upstream.allow_cidrs". A null address
	// or one of another family is refused ("unsupported address family").
	// An allow CIDR overrides every class, HostOwn and SandboxPool
	// included: the policy author asked for that range.
	std::optional<std::string> check(const sockaddr *addr) const;

	const std::vector<Cidr> &allowCidrs() const { return allow_; }

private:
	AddressGuard(std::vector<Cidr> allow, std::vector<Cidr> hostAddresses, std::vector<Cidr> sandboxPool)
		: allow_(std::move(allow)), hostAddresses_(std::move(hostAddresses)),
		  sandboxPool_(std::move(sandboxPool))
	{
	}

	std::vector<Cidr> allow_;
	std::vector<Cidr> hostAddresses_; // each a /32 or /128
	std::vector<Cidr> sandboxPool_;
};

} // namespace gvm::proxy
