// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstring>
#include <string>
#include <vector>

#include "daemon/proxy/address_guard.h"

using namespace gvm;
using namespace gvm::proxy;

namespace {

// A sockaddr_in or sockaddr_in6 (port 443) for a textual address.
sockaddr_storage addressOf(const std::string &text)
{
	sockaddr_storage storage{};
	auto *sin = reinterpret_cast<sockaddr_in *>(&storage);
	auto *sin6 = reinterpret_cast<sockaddr_in6 *>(&storage);
	if (inet_pton(AF_INET, text.c_str(), &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(443);
	} else if (inet_pton(AF_INET6, text.c_str(), &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(443);
	} else {
		FAIL("test address does not parse: " << text);
	}
	return storage;
}

const sockaddr *sa(const sockaddr_storage &storage)
{
	return reinterpret_cast<const sockaddr *>(&storage);
}

AddressGuard makeGuard(const std::vector<std::string> &allow, std::vector<sockaddr_storage> hosts = {},
		       std::vector<Cidr> pool = {})
{
	auto guard = AddressGuard::create(allow, std::move(hosts), std::move(pool));
	if (!guard)
		FAIL(guard.error().message());
	return std::move(*guard);
}

Cidr cidr(std::string_view text)
{
	auto parsed = Cidr::parse(text);
	if (!parsed)
		FAIL(parsed.error().message());
	return *parsed;
}

struct ClassCase {
	const char *address;
	AddressClass expected;
};

const ClassCase kClassCases[] = {
	// IPv4
	{"8.8.8.8", AddressClass::Public},
	{"1.1.1.1", AddressClass::Public},
	{"0.0.0.0", AddressClass::Unspecified},
	{"0.1.2.3", AddressClass::Unspecified},
	{"127.0.0.1", AddressClass::Loopback},
	{"127.255.255.254", AddressClass::Loopback},
	{"128.0.0.1", AddressClass::Public},
	{"169.254.169.254", AddressClass::LinkLocal},
	{"169.254.0.1", AddressClass::LinkLocal},
	{"169.255.0.1", AddressClass::Public},
	{"10.0.0.1", AddressClass::Private},
	{"10.255.255.255", AddressClass::Private},
	{"11.0.0.1", AddressClass::Public},
	{"172.16.0.1", AddressClass::Private},
	{"172.31.255.255", AddressClass::Private},
	{"172.15.255.255", AddressClass::Public},
	{"172.32.0.1", AddressClass::Public},
	{"192.168.1.1", AddressClass::Private},
	{"192.169.0.1", AddressClass::Public},
	{"100.64.0.1", AddressClass::SharedAddressSpace},
	{"100.127.255.255", AddressClass::SharedAddressSpace},
	{"100.63.255.255", AddressClass::Public},
	{"100.128.0.0", AddressClass::Public},
	{"224.0.0.1", AddressClass::Multicast},
	{"239.255.255.250", AddressClass::Multicast},
	{"240.0.0.1", AddressClass::Reserved},
	{"255.255.255.254", AddressClass::Reserved},
	{"255.255.255.255", AddressClass::Broadcast},
	{"192.0.0.8", AddressClass::Reserved},
	{"192.88.99.1", AddressClass::Reserved},
	{"198.18.0.1", AddressClass::Reserved},
	{"198.19.255.255", AddressClass::Reserved},
	{"198.20.0.1", AddressClass::Public},
	{"192.0.2.1", AddressClass::Documentation},
	{"198.51.100.7", AddressClass::Documentation},
	{"203.0.113.9", AddressClass::Documentation},
	// IPv6
	{"2606:4700::1111", AddressClass::Public},
	{"2001:4860:4860::8888", AddressClass::Public},
	{"::", AddressClass::Unspecified},
	{"::1", AddressClass::Loopback},
	{"fe80::1", AddressClass::LinkLocal},
	{"febf:ffff::1", AddressClass::LinkLocal},
	{"fec0::1", AddressClass::Reserved},
	{"fc00::1", AddressClass::UniqueLocal},
	{"fd00:ec2::254", AddressClass::UniqueLocal},
	{"ff02::1", AddressClass::Multicast},
	{"ff05::1:3", AddressClass::Multicast},
	{"2001:db8::1", AddressClass::Documentation},
	{"3fff::1", AddressClass::Documentation},
	{"2001:2::1", AddressClass::Reserved},
	{"100::1", AddressClass::Reserved},
	{"4000::1", AddressClass::Reserved},
	{"1::1", AddressClass::Reserved},
	// IPv4-mapped: classified by the embedded IPv4 address
	{"::ffff:127.0.0.1", AddressClass::Loopback},
	{"::ffff:169.254.169.254", AddressClass::LinkLocal},
	{"::ffff:10.1.2.3", AddressClass::Private},
	{"::ffff:172.16.0.1", AddressClass::Private},
	{"::ffff:192.168.0.1", AddressClass::Private},
	{"::ffff:100.64.0.1", AddressClass::SharedAddressSpace},
	{"::ffff:224.0.0.1", AddressClass::Multicast},
	{"::ffff:0.0.0.0", AddressClass::Unspecified},
	{"::ffff:255.255.255.255", AddressClass::Broadcast},
	{"::ffff:240.0.0.1", AddressClass::Reserved},
	{"::ffff:8.8.8.8", AddressClass::Public},
	// IPv4-compatible and NAT64 (64:ff9b::/96)
	{"::127.0.0.1", AddressClass::Loopback},
	{"::10.0.0.1", AddressClass::Private},
	{"::8.8.8.8", AddressClass::Public},
	{"64:ff9b::127.0.0.1", AddressClass::Loopback},
	{"64:ff9b::169.254.169.254", AddressClass::LinkLocal},
	{"64:ff9b::192.168.1.1", AddressClass::Private},
	{"64:ff9b::8.8.8.8", AddressClass::Public},
	{"64:ff9b:1::1", AddressClass::Reserved},
};

} // namespace

TEST_CASE("classifyAddress covers IPv4, IPv6 and embedded IPv4 forms", "[address-guard]")
{
	for (const ClassCase &c : kClassCases) {
		INFO(c.address);
		sockaddr_storage storage = addressOf(c.address);
		CHECK(toString(classifyAddress(sa(storage))) == std::string(toString(c.expected)));
	}
}

TEST_CASE("classifyAddress: null and other families are Reserved", "[address-guard]")
{
	CHECK(classifyAddress(nullptr) == AddressClass::Reserved);
	sockaddr_un un{};
	un.sun_family = AF_UNIX;
	CHECK(classifyAddress(reinterpret_cast<const sockaddr *>(&un)) == AddressClass::Reserved);
}

TEST_CASE("the guard refuses every non-public class and names it", "[address-guard]")
{
	AddressGuard guard = makeGuard({});
	for (const ClassCase &c : kClassCases) {
		INFO(c.address);
		sockaddr_storage storage = addressOf(c.address);
		auto reason = guard.check(sa(storage));
		if (c.expected == AddressClass::Public) {
			CHECK_FALSE(reason);
			continue;
		}
		REQUIRE(reason);
		INFO(*reason);
		CHECK_THAT(*reason, Catch::StartsWith(formatAddress(sa(storage)) + " "));
		CHECK_THAT(*reason, Catch::Contains(toString(c.expected)));
		CHECK_THAT(*reason, Catch::EndsWith("not listed in upstream.allow_cidrs"));
	}
}

TEST_CASE("deny reasons read as one sentence", "[address-guard]")
{
	AddressGuard guard = makeGuard({});
	struct {
		const char *address;
		const char *reason;
	} cases[] = {
		{"127.0.0.1", "127.0.0.1 is a loopback address, not listed in upstream.allow_cidrs"},
		{"169.254.169.254",
		 "169.254.169.254 is a link-local (cloud metadata) address, not listed in upstream.allow_cidrs"},
		{"::ffff:169.254.169.254",
		 "::ffff:169.254.169.254 is a link-local (cloud metadata) address, not listed in upstream.allow_cidrs"},
		{"10.0.0.1", "10.0.0.1 is a private (RFC 1918) address, not listed in upstream.allow_cidrs"},
		{"100.64.1.1",
		 "100.64.1.1 is in the shared address space (100.64.0.0/10), not listed in upstream.allow_cidrs"},
		{"fd00::1", "fd00::1 is a unique local (fc00::/7) address, not listed in upstream.allow_cidrs"},
		{"::", ":: is an unspecified address, not listed in upstream.allow_cidrs"},
		{"64:ff9b::7f00:1",
		 "64:ff9b::7f00:1 (IPv4 127.0.0.1) is a loopback address, not listed in upstream.allow_cidrs"},
	};
	for (const auto &c : cases) {
		sockaddr_storage storage = addressOf(c.address);
		auto reason = guard.check(sa(storage));
		REQUIRE(reason);
		CHECK(*reason == c.reason);
	}
}

TEST_CASE("allow_cidrs open exactly the listed ranges", "[address-guard]")
{
	AddressGuard guard = makeGuard({"127.0.0.0/8", "::1/128", "fd00:1::/32"});
	struct {
		const char *address;
		bool allowed;
	} cases[] = {
		{"127.0.0.1", true},
		{"127.1.2.3", true},
		{"::ffff:127.0.0.1", true},  // a v4 CIDR contains the mapped form
		{"64:ff9b::127.0.0.1", true}, // and the NAT64 form
		{"::1", true},
		{"fd00:1:ffff::5", true},
		{"fd00:2::5", false},
		{"10.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"169.254.169.254", false},
		{"8.8.8.8", true}, // public: allowed anyway
	};
	for (const auto &c : cases) {
		INFO(c.address);
		sockaddr_storage storage = addressOf(c.address);
		CHECK(!guard.check(sa(storage)).has_value() == c.allowed);
	}
}

TEST_CASE("an IPv6 CIDR does not contain IPv4-mapped addresses", "[address-guard]")
{
	AddressGuard guard = makeGuard({"::/0"});
	CHECK_FALSE(guard.check(sa(addressOf("fd00::1"))));
	CHECK_FALSE(guard.check(sa(addressOf("::1"))));
	CHECK(guard.check(sa(addressOf("::ffff:127.0.0.1"))));
	CHECK(guard.check(sa(addressOf("127.0.0.1"))));
}

TEST_CASE("a mapped CIDR covers IPv4", "[address-guard]")
{
	Cidr mapped = cidr("::ffff:10.0.0.0/104");
	CHECK(mapped.toString() == "10.0.0.0/8");
	CHECK_FALSE(mapped.isIpv6());
	CHECK(mapped.contains(sa(addressOf("10.9.9.9"))));
	CHECK(mapped.contains(sa(addressOf("::ffff:10.9.9.9"))));
	CHECK(cidr("::ffff:127.0.0.1").toString() == "127.0.0.1/32");
}

TEST_CASE("the host's own addresses are refused, public ones included", "[address-guard]")
{
	std::vector<sockaddr_storage> hosts = {addressOf("203.0.114.7"), addressOf("2a01:4f8::7"),
					       addressOf("10.1.1.1")};
	sockaddr_un un{};
	un.sun_family = AF_UNIX;
	sockaddr_storage local{};
	std::memcpy(&local, &un, sizeof(un));
	hosts.push_back(local); // ignored, not an error
	AddressGuard guard = makeGuard({}, hosts);

	for (const char *address : {"203.0.114.7", "::ffff:203.0.114.7", "64:ff9b::203.0.114.7", "2a01:4f8::7",
				    "10.1.1.1"}) {
		INFO(address);
		sockaddr_storage storage = addressOf(address);
		CHECK(guard.classify(sa(storage)) == AddressClass::HostOwn);
		auto reason = guard.check(sa(storage));
		REQUIRE(reason);
		CHECK_THAT(*reason, Catch::StartsWith(formatAddress(sa(storage)) + " "));
		CHECK_THAT(*reason, Catch::Contains("one of the host's own addresses"));
	}
	CHECK_FALSE(guard.check(sa(addressOf("203.0.114.8"))));
	CHECK_FALSE(guard.check(sa(addressOf("2a01:4f8::8"))));

	// The scope and port of a host address do not matter.
	sockaddr_storage scoped = addressOf("2a01:4f8::7");
	reinterpret_cast<sockaddr_in6 *>(&scoped)->sin6_scope_id = 3;
	reinterpret_cast<sockaddr_in6 *>(&scoped)->sin6_port = htons(1);
	CHECK(guard.classify(sa(scoped)) == AddressClass::HostOwn);

	// An allow CIDR is the policy author's explicit word.
	AddressGuard allowing = makeGuard({"203.0.114.0/24"}, hosts);
	CHECK_FALSE(allowing.check(sa(addressOf("203.0.114.7"))));
}

TEST_CASE("gvm's sandbox pool is refused", "[address-guard]")
{
	AddressGuard guard = makeGuard({}, {}, {cidr("10.200.0.0/16"), cidr("fd7a:6776::/48")});
	for (const char *address : {"10.200.3.1", "::ffff:10.200.3.1", "fd7a:6776::2"}) {
		INFO(address);
		sockaddr_storage storage = addressOf(address);
		CHECK(guard.classify(sa(storage)) == AddressClass::SandboxPool);
		auto reason = guard.check(sa(storage));
		REQUIRE(reason);
		CHECK_THAT(*reason, Catch::Contains(address));
		CHECK_THAT(*reason, Catch::Contains("gvm's sandbox pool"));
	}
	CHECK(guard.classify(sa(addressOf("10.201.0.1"))) == AddressClass::Private);
}

TEST_CASE("public addresses are dialled", "[address-guard]")
{
	AddressGuard guard = makeGuard({});
	for (const char *address : {"8.8.8.8", "2606:4700::1111", "::ffff:1.1.1.1", "64:ff9b::8.8.4.4"}) {
		INFO(address);
		CHECK_FALSE(guard.check(sa(addressOf(address))));
	}
}

TEST_CASE("unsupported address families are refused", "[address-guard]")
{
	AddressGuard guard = makeGuard({"0.0.0.0/0", "::/0"});
	auto reason = guard.check(nullptr);
	REQUIRE(reason);
	CHECK_THAT(*reason, Catch::Contains("unsupported address family"));

	sockaddr_un un{};
	un.sun_family = AF_UNIX;
	reason = guard.check(reinterpret_cast<const sockaddr *>(&un));
	REQUIRE(reason);
	CHECK_THAT(*reason, Catch::Contains("unsupported address family"));
}

TEST_CASE("Cidr::parse accepts networks and bare addresses", "[address-guard]")
{
	struct {
		const char *text;
		const char *canonical;
		bool v6;
		int prefix;
	} cases[] = {
		{"10.0.0.0/8", "10.0.0.0/8", false, 8},
		{"0.0.0.0/0", "0.0.0.0/0", false, 0},
		{"192.168.1.7", "192.168.1.7/32", false, 32},
		{"172.16.0.0/12", "172.16.0.0/12", false, 12},
		{"::1/128", "::1/128", true, 128},
		{"::1", "::1/128", true, 128},
		{"::/0", "::/0", true, 0},
		{"fc00::/7", "fc00::/7", true, 7},
		{"2001:DB8::/32", "2001:db8::/32", true, 32},
	};
	for (const auto &c : cases) {
		INFO(c.text);
		auto parsed = Cidr::parse(c.text);
		REQUIRE(parsed);
		CHECK(parsed->toString() == c.canonical);
		CHECK(parsed->isIpv6() == c.v6);
		CHECK(parsed->prefixLength() == c.prefix);
	}
}

TEST_CASE("Cidr::parse refuses malformed text and names it", "[address-guard]")
{
	struct {
		const char *text;
		const char *mentions;
	} cases[] = {
		{"10.0.0.1/8", "did you mean '10.0.0.0/8'"},
		{"1.2.3.4/33", "0 to 32"},
		{"1.2.3.4/-1", "0 to 32"},
		{"1.2.3.4/", "0 to 32"},
		{"1.2.3.4/8x", "0 to 32"},
		{"1.2.3.4/ 8", "0 to 32"},
		{"1.2.3", "not an IPv4 or IPv6 address"},
		{"1.2.3.256", "not an IPv4 or IPv6 address"},
		{"::1/129", "0 to 128"},
		{"::1/64", "did you mean '::/64'"},
		{"fe80::1%eth0", "not an IPv4 or IPv6 address"},
		{"garbage", "not an IPv4 or IPv6 address"},
		{"", "not an IPv4 or IPv6 address"},
		{"/8", "not an IPv4 or IPv6 address"},
		{"10.0.0.0/8/8", "0 to 32"},
		{"aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa", "not an IPv4 or IPv6 address"},
	};
	for (const auto &c : cases) {
		INFO(c.text);
		auto parsed = Cidr::parse(c.text);
		REQUIRE_FALSE(parsed);
		CHECK(parsed.error().domain() == ErrorDomain::Policy);
		CHECK_THAT(parsed.error().context(), Catch::Contains(std::string("'") + c.text + "'"));
		CHECK_THAT(parsed.error().context(), Catch::Contains(c.mentions));
	}
}

TEST_CASE("AddressGuard::create refuses a bad allow CIDR", "[address-guard]")
{
	auto guard = AddressGuard::create({"127.0.0.0/8", "10.0.0.1/8"});
	REQUIRE_FALSE(guard);
	CHECK(guard.error().domain() == ErrorDomain::Policy);
	CHECK_THAT(guard.error().context(), Catch::Contains("bad CIDR '10.0.0.1/8'"));
}

TEST_CASE("Cidr::contains and Cidr::host", "[address-guard]")
{
	Cidr net = cidr("172.16.0.0/12");
	CHECK(net.contains(sa(addressOf("172.31.0.1"))));
	CHECK_FALSE(net.contains(sa(addressOf("172.32.0.1"))));
	CHECK_FALSE(net.contains(nullptr));
	CHECK_FALSE(cidr("fe80::/10").contains(sa(addressOf("169.254.0.1"))));
	CHECK_FALSE(cidr("0.0.0.0/0").contains(sa(addressOf("2606:4700::1111"))));

	auto host = Cidr::host(sa(addressOf("::ffff:1.2.3.4")));
	REQUIRE(host);
	CHECK(host->toString() == "1.2.3.4/32");
	CHECK_FALSE(Cidr::host(nullptr));
}

TEST_CASE("formatAddress", "[address-guard]")
{
	CHECK(formatAddress(sa(addressOf("127.0.0.1"))) == "127.0.0.1");
	CHECK(formatAddress(sa(addressOf("::1"))) == "::1");
	CHECK(formatAddress(sa(addressOf("::ffff:127.0.0.1"))) == "::ffff:127.0.0.1");
	CHECK(formatAddress(sa(addressOf("2606:4700:0::1111"))) == "2606:4700::1111");
	CHECK(formatAddress(nullptr) == "(null)");
	sockaddr_un un{};
	un.sun_family = AF_UNIX;
	CHECK(formatAddress(reinterpret_cast<const sockaddr *>(&un)) == "(address family 1)");
}
