// SPDX-License-Identifier: Apache-2.0
//
// As root, with real kernel objects: a SandboxNetwork is a namespace whose
// only way out is its veth pair; with the host table installed, the
// sandbox's TCP and DNS reach the sockets made for its worker with their
// original destination intact, and everything else (other UDP, ICMP, IPv6)
// is dropped and counted; a link that is not a sandbox's is left alone,
// whatever its name. Teardown, crash cleanup and the address pool touch only
// what gvm made.
//
// Every test uses its own random sandbox ids, addresses from 10.231.0.0/16
// (not gvm's default pool, so a gvmd running on the same host is not
// disturbed), and removes what it made even when it fails.
#include <catch2/catch.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <cstdio>
#include <fstream>
#include <netinet/in.h>
#include <poll.h>
#include <random>
#include <sstream>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/scope_exit.h"
#include "daemon/net/nftables.h"
#include "daemon/net/sandbox_network.h"
#include "tests/support/process.h"

using namespace gvm;
using namespace gvm::net;
using namespace gvm::test;

namespace {

constexpr const char *kIp = "/usr/sbin/ip";
constexpr const char *kNsenter = "/usr/bin/nsenter";
constexpr const char *kPython = "/usr/bin/python3";
// <linux/netfilter_ipv4.h>: SO_ORIGINAL_DST at level SOL_IP.
constexpr int kSoOriginalDst = 80;

template<typename T>
T take(Result<T> r)
{
	if (!r)
		FAIL(r.error().message());
	return std::move(r).value();
}

void require(Result<void> r)
{
	if (!r)
		FAIL(r.error().message());
}

std::string randomId()
{
	std::random_device rd;
	char buf[16];
	std::snprintf(buf, sizeof(buf), "%08x", rd());
	return buf;
}

bool linkExists(const std::string &name)
{
	return run({kIp, "link", "show", "dev", name}).status == 0;
}

// Runs argv inside the sandbox's namespace. The namespace is not pinned by a
// mount, so nsenter reaches it through this process's fd.
RunResult inSandbox(const SandboxNetwork &net, std::vector<std::string> argv)
{
	std::vector<std::string> full = {kNsenter,
					  "--net=/proc/" + std::to_string(::getpid()) + "/fd/" +
						  std::to_string(net.netnsFd())};
	full.insert(full.end(), argv.begin(), argv.end());
	return run(full);
}

Child startInSandbox(const SandboxNetwork &net, std::vector<std::string> argv, const std::string &log)
{
	std::vector<std::string> full = {kNsenter,
					  "--net=/proc/" + std::to_string(::getpid()) + "/fd/" +
						  std::to_string(net.netnsFd())};
	full.insert(full.end(), argv.begin(), argv.end());
	return Child::start(full, {}, log);
}

nlohmann::json ipJson(const RunResult &r)
{
	INFO(r.err);
	REQUIRE(r.status == 0);
	auto j = nlohmann::json::parse(r.out, nullptr, false);
	REQUIRE(!j.is_discarded());
	return j;
}

// The IPv4 address/prefix entries of an `ip -j addr` interface object.
std::vector<std::string> ipv4Addresses(const nlohmann::json &iface)
{
	std::vector<std::string> out;
	for (const auto &a : iface.value("addr_info", nlohmann::json::array()))
		if (a.value("family", "") == "inet")
			out.push_back(a.value("local", "") + "/" + std::to_string(a.value("prefixlen", 0)));
	return out;
}

bool hasFlag(const nlohmann::json &iface, const std::string &flag)
{
	for (const auto &f : iface.value("flags", nlohmann::json::array()))
		if (f == flag)
			return true;
	return false;
}

// The host table is shared by every sandbox of the host: install it for the
// test and remove it afterwards only if it was not there before.
class HostTableForTest
{
public:
	explicit HostTableForTest(const NetworkConfig &config)
	{
		existed_ = static_cast<bool>(runNftables("list table inet gvm"));
		require(installHostTable(config));
	}
	~HostTableForTest()
	{
		if (!existed_)
			(void)removeHostTable();
	}

private:
	bool existed_ = false;
};

UniqueFd acceptWithin(int listener, int timeoutMs = 5000)
{
	pollfd p{listener, POLLIN, 0};
	if (::poll(&p, 1, timeoutMs) <= 0)
		return {};
	return UniqueFd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
}

std::string originalDestination(int fd)
{
	sockaddr_in dst{};
	socklen_t len = sizeof(dst);
	if (::getsockopt(fd, SOL_IP, kSoOriginalDst, &dst, &len) < 0)
		return "error " + std::to_string(errno);
	char buf[INET_ADDRSTRLEN] = {};
	::inet_ntop(AF_INET, &dst.sin_addr, buf, sizeof(buf));
	return std::string(buf) + ":" + std::to_string(ntohs(dst.sin_port));
}

std::string readAll(int fd, int timeoutMs = 5000)
{
	std::string out;
	for (;;) {
		pollfd p{fd, POLLIN, 0};
		if (::poll(&p, 1, timeoutMs) <= 0)
			return out;
		char buf[512];
		ssize_t n = ::read(fd, buf, sizeof(buf));
		if (n <= 0)
			return out;
		out.append(buf, static_cast<size_t>(n));
	}
}

std::string fileText(const std::string &path)
{
	std::ifstream in(path);
	std::stringstream ss;
	ss << in.rdbuf();
	return ss.str();
}

const char *kConnectScript = R"PY(
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(sys.argv[3].encode())
s.close()
print("connected")
)PY";

const char *kUdpQueryScript = R"PY(
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"query", (sys.argv[1], int(sys.argv[2])))
data, peer = s.recvfrom(512)
print("reply %s from %s:%d" % (data.decode(), peer[0], peer[1]), flush=True)
)PY";

// Each probe prints "name: blocked (why)" or "name: sent".
const char *kForbiddenScript = R"PY(
import socket, struct
def probe(name, fn):
    try:
        fn()
        print(name + ": sent")
    except OSError as e:
        print(name + ": blocked (" + str(e) + ")")

def quic():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"\xc0quic-initial", ("192.0.2.9", 443))

def dot():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", ("192.0.2.9", 853))

def icmp():
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    header = struct.pack("!BBHHH", 8, 0, 0, 1, 1)
    csum = 0
    for i in range(0, len(header), 2):
        csum += (header[i] << 8) + header[i + 1]
    csum = (csum >> 16) + (csum & 0xffff)
    csum = ~csum & 0xffff
    s.sendto(struct.pack("!BBHHH", 8, 0, csum, 1, 1), ("192.0.2.7", 0))

def ipv6():
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(("2001:db8::7", 443))

probe("udp443", quic)
probe("udp853", dot)
probe("icmp", icmp)
probe("ipv6", ipv6)
)PY";

} // namespace

TEST_CASE("a sandbox network is a namespace whose only way out is its veth pair", "[net]")
{
	auto pool = take(AddressPool::create("10.231.0.0/24"));
	NetworkConfig config;
	const std::string id = randomId();
	auto net = take(SandboxNetwork::create(id, config, pool));
	CHECK(pool.inUse() == 1);
	CHECK(net->hostInterface() == "gvm" + id);
	CHECK(net->netnsFd() >= 0);

	// Host end: addressed, up.
	auto host = ipJson(run({kIp, "-j", "addr", "show", "dev", net->hostInterface()}));
	REQUIRE(host.size() == 1);
	CHECK(hasFlag(host[0], "UP"));
	CHECK(host[0].value("group", "") == std::to_string(kHostInterfaceGroup));
	CHECK(ipv4Addresses(host[0]) == std::vector<std::string>{net->hostAddress() + "/30"});
	CHECK(net->hostAddress().rfind("10.231.0.", 0) == 0);
	in_addr h{}, s{};
	REQUIRE(::inet_pton(AF_INET, net->hostAddress().c_str(), &h) == 1);
	REQUIRE(::inet_pton(AF_INET, net->sandboxAddress().c_str(), &s) == 1);
	CHECK(ntohl(s.s_addr) == ntohl(h.s_addr) + 1);
	CHECK(!linkExists("gvp" + id));
	CHECK(fileText("/proc/sys/net/ipv6/conf/gvm" + id + "/disable_ipv6") == "1\n");

	// Inside: lo and eth0 only, both up, eth0 addressed, default route
	// through the host end, IPv6 off.
	auto links = ipJson(inSandbox(*net, {kIp, "-j", "addr", "show"}));
	std::vector<std::string> names;
	for (const auto &l : links)
		names.push_back(l.value("ifname", ""));
	std::sort(names.begin(), names.end());
	CHECK(names == std::vector<std::string>{"eth0", "lo"});
	for (const auto &l : links) {
		CHECK(hasFlag(l, "UP"));
		if (l.value("ifname", "") == "eth0")
			CHECK(ipv4Addresses(l) == std::vector<std::string>{net->sandboxAddress() + "/30"});
		for (const auto &a : l.value("addr_info", nlohmann::json::array()))
			CHECK(a.value("family", "") != "inet6");
	}
	auto routes = ipJson(inSandbox(*net, {kIp, "-j", "route", "show", "default"}));
	REQUIRE(routes.size() == 1);
	CHECK(routes[0].value("gateway", "") == net->hostAddress());
	CHECK(routes[0].value("dev", "") == "eth0");
	for (const char *conf : {"all", "default", "eth0", "lo"}) {
		auto r = inSandbox(*net, {"/bin/cat", std::string("/proc/sys/net/ipv6/conf/") + conf + "/disable_ipv6"});
		INFO(conf << ": " << r.err);
		CHECK(r.out == "1\n");
	}
	// The sandbox table (and its counter) is in the sandbox's namespace.
	CHECK(take(net->readDroppedPackets()) == 0);

	net.reset();
	CHECK(!linkExists("gvm" + id));
	CHECK(!linkExists("gvp" + id));
	CHECK(pool.inUse() == 0);
}

TEST_CASE("sandbox TCP and DNS reach the worker's sockets with their original destination", "[net]")
{
	auto pool = take(AddressPool::create("10.231.1.0/24"));
	NetworkConfig config;
	HostTableForTest table(config);
	auto net = take(SandboxNetwork::create(randomId(), config, pool));

	SECTION("TCP to any address lands on the transparent listener")
	{
		UniqueFd listener = take(net->transparentListener());
		struct Case {
			std::string address;
			std::string port;
		};
		for (const Case &c : {Case{"192.0.2.7", "443"}, Case{net->hostAddress(), "22"}}) {
			INFO("to " << c.address << ":" << c.port);
			auto r = inSandbox(*net, {kPython, "-c", kConnectScript, c.address, c.port, "hello " + c.port});
			INFO(r.err);
			CHECK(r.out == "connected\n");
			UniqueFd conn = acceptWithin(listener.get());
			REQUIRE(conn);
			CHECK(originalDestination(conn.get()) == c.address + ":" + c.port);
			CHECK(readAll(conn.get()) == "hello " + c.port);
		}
	}

	SECTION("a UDP DNS query lands on the DNS socket and the reply comes from where it was sent")
	{
		TempDir dir;
		UniqueFd dns = take(net->dnsUdpSocket());
		std::string log = dir.path() + "/client.log";
		Child client = startInSandbox(*net, {kPython, "-c", kUdpQueryScript, "192.0.2.53", "53"}, log);
		pollfd p{dns.get(), POLLIN, 0};
		REQUIRE(::poll(&p, 1, 10000) == 1);
		char buf[512];
		sockaddr_in peer{};
		socklen_t len = sizeof(peer);
		ssize_t n = ::recvfrom(dns.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr *>(&peer), &len);
		REQUIRE(n > 0);
		CHECK(std::string(buf, static_cast<size_t>(n)) == "query");
		char addr[INET_ADDRSTRLEN] = {};
		::inet_ntop(AF_INET, &peer.sin_addr, addr, sizeof(addr));
		CHECK(std::string(addr) == net->sandboxAddress());
		REQUIRE(::sendto(dns.get(), "answer", 6, 0, reinterpret_cast<sockaddr *>(&peer), len) == 6);
		auto status = client.wait(std::chrono::seconds(10));
		REQUIRE(status);
		CHECK(*status == 0);
		CHECK(fileText(log) == "reply answer from 192.0.2.53:53\n");
	}

	SECTION("TCP DNS lands on the DNS listener")
	{
		UniqueFd dnsTcp = take(net->dnsTcpListener());
		auto r = inSandbox(*net, {kPython, "-c", kConnectScript, "192.0.2.53", "53", "tcp-query"});
		INFO(r.err);
		CHECK(r.out == "connected\n");
		UniqueFd conn = acceptWithin(dnsTcp.get());
		REQUIRE(conn);
		CHECK(originalDestination(conn.get()) == "192.0.2.53:53");
		CHECK(readAll(conn.get()) == "tcp-query");
	}

	SECTION("other UDP, ICMP and IPv6 never leave, and the drops are counted")
	{
		// A host socket on the address a QUIC packet would be redirected
		// to if it got out must stay silent.
		UniqueFd listener = take(net->transparentListener());
		uint64_t before = take(net->readDroppedPackets());
		auto r = inSandbox(*net, {kPython, "-c", kForbiddenScript});
		INFO(r.out << r.err);
		REQUIRE(r.status == 0);
		CHECK(r.out.find("udp443: blocked") != std::string::npos);
		CHECK(r.out.find("udp853: blocked") != std::string::npos);
		CHECK(r.out.find("icmp: blocked") != std::string::npos);
		CHECK(r.out.find("ipv6: blocked") != std::string::npos);
		uint64_t after = net->droppedPackets();
		CHECK(after >= before + 3);
		CHECK(!acceptWithin(listener.get(), 200));
	}
}

TEST_CASE("the host table leaves alone a link that is not a sandbox's, even one named like them", "[net]")
{
	NetworkConfig config;
	HostTableForTest table(config);
	// Named like a sandbox's host end but not one (no id, so a gvmd that
	// starts meanwhile does not take it for a leftover), with its peer in
	// a namespace of the test's own.
	const std::string tag = randomId();
	const std::string ns = "gvmtest-" + tag;
	const std::string link = "gvm" + tag.substr(0, 4) + "x";
	const std::string peer = "decoy" + tag.substr(0, 4);
	auto removeAll = [&] {
		if (linkExists(link))
			run({kIp, "link", "del", link});
		run({kIp, "netns", "del", ns});
	};
	ScopeExit cleanup(removeAll);
	REQUIRE(run({kIp, "netns", "add", ns}).status == 0);
	for (const std::vector<std::string> &step :
	     {std::vector<std::string>{kIp, "link", "add", link, "type", "veth", "peer", "name", peer, "netns", ns},
	      {kIp, "addr", "add", "10.231.3.1/30", "dev", link},
	      {kIp, "link", "set", link, "up"},
	      {kIp, "-n", ns, "addr", "add", "10.231.3.2/30", "dev", peer},
	      {kIp, "-n", ns, "link", "set", peer, "up"}}) {
		auto r = run(step);
		INFO(step[1] << " " << step[2] << ": " << r.err);
		REQUIRE(r.status == 0);
	}

	// A host service on the link's address: reached as on any other
	// link, not redirected to a worker's port (where nothing listens).
	UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	REQUIRE(listener);
	sockaddr_in addr{};
	addr.sin_family = AF_INET;
	REQUIRE(::inet_pton(AF_INET, "10.231.3.1", &addr.sin_addr) == 1);
	socklen_t len = sizeof(addr);
	REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr *>(&addr), len) == 0);
	REQUIRE(::listen(listener.get(), 4) == 0);
	REQUIRE(::getsockname(listener.get(), reinterpret_cast<sockaddr *>(&addr), &len) == 0);
	const std::string port = std::to_string(ntohs(addr.sin_port));
	auto r = run({kIp, "netns", "exec", ns, kPython, "-c", kConnectScript, "10.231.3.1", port, "plain"});
	INFO(r.err);
	CHECK(r.out == "connected\n");
	UniqueFd conn = acceptWithin(listener.get());
	REQUIRE(conn);
	CHECK(readAll(conn.get()) == "plain");
}

TEST_CASE("a failed create leaves nothing behind", "[net]")
{
	auto pool = take(AddressPool::create("10.231.2.0/24"));
	NetworkConfig config;

	auto bad = SandboxNetwork::create("NotAnId", config, pool);
	REQUIRE(!bad);
	CHECK(pool.inUse() == 0);

	const std::string id = randomId();
	auto first = take(SandboxNetwork::create(id, config, pool));
	auto second = SandboxNetwork::create(id, config, pool);
	REQUIRE(!second);
	INFO(second.error().message());
	CHECK(second.error().message().find("creating the veth pair") != std::string::npos);
	CHECK(second.error().message().find(id) != std::string::npos);
	CHECK(pool.inUse() == 1);
	// The first sandbox's link is intact.
	CHECK(linkExists("gvm" + id));
	first.reset();
	CHECK(!linkExists("gvm" + id));
}

TEST_CASE("crash cleanup removes exactly gvm's links", "[net]")
{
	const std::string staleId = "0123abcd";
	auto removeLinks = [&] {
		for (const char *name : {"gvm0123abcd", "gvp0123abcd", "gvmother", "gvmtest2"})
			if (linkExists(name))
				run({kIp, "link", "del", name});
	};
	removeLinks();
	ScopeExit cleanup(removeLinks);
	REQUIRE(run({kIp, "link", "add", "gvm0123abcd", "type", "veth", "peer", "name", "gvp0123abcd"}).status == 0);
	REQUIRE(run({kIp, "link", "add", "gvmother", "type", "veth", "peer", "name", "gvmtest2"}).status == 0);

	// Links of sandboxes that another gvmd on this host may be running are
	// kept: only the stale id is reported as not live.
	std::vector<std::string> asked;
	auto removed = take(cleanupLeftovers([&](const std::string &id) {
		asked.push_back(id);
		return id != staleId;
	}));
	CHECK(std::count(removed.begin(), removed.end(), "gvm0123abcd") == 1);
	for (const auto &name : removed)
		CHECK(name.find(staleId) != std::string::npos);
	CHECK(!linkExists("gvm0123abcd"));
	CHECK(!linkExists("gvp0123abcd"));
	CHECK(linkExists("gvmother"));
	CHECK(linkExists("gvmtest2"));
	CHECK(std::count(asked.begin(), asked.end(), "other") == 0);
}

TEST_CASE("the address pool avoids host networks and says why it is empty", "[net]")
{
	SECTION("pool syntax")
	{
		CHECK(!AddressPool::create("10.231.4.1/24"));
		CHECK(!AddressPool::create("10.231.4.0/31"));
		CHECK(!AddressPool::create("10.231.4.0"));
		CHECK(!AddressPool::create("fd00::/64"));
		CHECK(!AddressPool::create("10.231.4.0/x"));
		auto p = take(AddressPool::create("10.231.4.0/22"));
		CHECK(p.blockCount() == 256);
	}

	SECTION("a block overlapping a host route or address is skipped")
	{
		auto removeDummy = [] {
			if (linkExists("gvmtest0"))
				run({kIp, "link", "del", "gvmtest0"});
		};
		removeDummy();
		ScopeExit cleanup(removeDummy);
		// A veth pair stands in for any host interface (this kernel may
		// have no dummy driver); its peer goes with it.
		REQUIRE(run({kIp, "link", "add", "gvmtest0", "type", "veth", "peer", "name", "gvmtest1"}).status == 0);
		REQUIRE(run({kIp, "addr", "add", "10.231.4.1/30", "dev", "gvmtest0"}).status == 0);
		REQUIRE(run({kIp, "link", "set", "gvmtest0", "up"}).status == 0);

		auto pool = take(AddressPool::create("10.231.4.0/28"));
		std::vector<std::string> got;
		for (int i = 0; i < 3; ++i)
			got.push_back(take(pool.allocate()).toString());
		CHECK(got == std::vector<std::string>{"10.231.4.4/30", "10.231.4.8/30", "10.231.4.12/30"});
		auto none = pool.allocate();
		REQUIRE(!none);
		CHECK(none.error().code() == EADDRNOTAVAIL);
		CHECK(none.error().message().find("3 held by sandboxes, 1 overlapping host networks") !=
		      std::string::npos);
		CHECK(none.error().message().find("gvmtest0") != std::string::npos);

		auto shadowed = take(AddressPool::create("10.231.4.0/30"));
		auto s = shadowed.allocate();
		REQUIRE(!s);
		CHECK(s.error().message().find("entirely shadowed") != std::string::npos);
	}

	SECTION("a tiny pool runs out, and a released block comes back")
	{
		auto pool = take(AddressPool::create("10.231.5.0/29"));
		Block a = take(pool.allocate(std::vector<HostNetwork>{}));
		Block b = take(pool.allocate(std::vector<HostNetwork>{}));
		CHECK(a.toString() == "10.231.5.0/30");
		CHECK(b.toString() == "10.231.5.4/30");
		char host[INET_ADDRSTRLEN], sandbox[INET_ADDRSTRLEN];
		::inet_ntop(AF_INET, &b.host, host, sizeof(host));
		::inet_ntop(AF_INET, &b.sandbox, sandbox, sizeof(sandbox));
		CHECK(std::string(host) == "10.231.5.5");
		CHECK(std::string(sandbox) == "10.231.5.6");
		auto none = pool.allocate(std::vector<HostNetwork>{});
		REQUIRE(!none);
		CHECK(none.error().message().find("exhausted") != std::string::npos);
		pool.release(a);
		CHECK(take(pool.allocate(std::vector<HostNetwork>{})) == a);
	}

	SECTION("the default route shadows nothing, a covering route shadows all")
	{
		auto pool = take(AddressPool::create("10.231.6.0/30"));
		auto wide = pool.allocate({HostNetwork{0x0a000000, 8, "route 10.0.0.0/8 dev lan0"}});
		REQUIRE(!wide);
		CHECK(wide.error().message().find("route 10.0.0.0/8 dev lan0") != std::string::npos);
		CHECK(pool.allocate().has_value());
	}
}
