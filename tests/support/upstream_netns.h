// SPDX-License-Identifier: Apache-2.0
//
// Real upstreams behind a network namespace of the test's own, for the
// sandbox-mode system tests: nginx, dnsmasq and a raw TCP echo server run in
// that namespace and are reached from the host only across a veth pair, the
// way a sandbox's proxy worker reaches the internet. Nothing listens on the
// host.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "tests/support/process.h"
#include "tests/support/test_pki.h"
#include "tests/support/upstream.h"

namespace gvm::test {

// What the fixture's TCP server says first on its banner port.
inline constexpr char kTcpBanner[] = "220 banner.gvm.test ready\r\n";

// One query dnsmasq logged (--log-queries).
struct DnsQueryLogEntry {
	std::string type; // "A", "AAAA", "TXT", ...
	std::string name; // as asked, lower case as dnsmasq logs it
	std::string from; // the client address
};

// A network namespace made for one test, and the servers in it.
//
// create() forks a holder process that unshares a network namespace and
// waits (it dies with the test process: PR_SET_PDEATHSIG), connects it to the
// host with a veth pair "gvmtu<4 hex>" (host) / "gvmtv<4 hex>" (namespace),
// addressed from a /30 of 10.250.0.0/16 picked at random among those no host
// interface uses (host end .1, namespace end .2 = address()), and starts in
// the namespace (each child setns()es into it before exec):
//
//   nginx        on address():443 (TLS, TestPki::goodCert: *.gvm.test) and
//                address():80 (cleartext), the same locations on both:
//                  /          200 "hello from <Host>\n" (text/plain)
//                  /file/...  static files under filesDir() (e.g. a bare git
//                             repository after `git update-server-info`:
//                             the dumb HTTP protocol)
//                  /echo, /ws upstream_backend.py (see there), which listens
//                             on the namespace's own loopback
//   dnsmasq      on address():53 (UDP and TCP), no upstream, no /etc/hosts:
//                it answers only Options::names (A = address(), with their
//                subdomains) and Options::txtRecords, and logs every query
//                (dnsQueries())
//   TCP echo     on address():Options::tcpEchoPort, a python3 server that
//                sends back every byte it receives; on
//                Options::tcpBannerPort the same server speaks first,
//                kTcpBanner, as SSH and SMTP servers do
//
// The names mean nothing to the host's resolver: a test that wants the
// worker's getaddrinfo() to find them maps them to address() with
// enterPrivateHosts().
//
// The destructor (or stop()) stops every server (SIGTERM, then SIGKILL after
// a bound), deletes the veth pair, kills the holder and closes the namespace,
// which then disappears. The interface names never have gvmd's shape
// ("gvm" + 8 hex), so gvmd's crash recovery never touches them. Owned by the
// test thread; not thread-safe. Needs root.
class UpstreamNetns
{
public:
	struct Options {
		std::vector<std::string> names = {"allowed.gvm.test", "denied.gvm.test", "echo.gvm.test"};
		std::vector<std::pair<std::string, std::string>> txtRecords = {{"txt.allowed.gvm.test", "governed txt"}};
		uint16_t tcpEchoPort = 7000;
		uint16_t tcpBannerPort = 7002;
		std::string nginx = "/usr/sbin/nginx";
		std::string dnsmasq = "/usr/sbin/dnsmasq";
		std::string ip = "/usr/sbin/ip";
		std::string python;  // empty: /usr/bin/python3, else python3 from $PATH
		std::string backend; // empty: $GVM_TEST_BACKEND (set by meson)
		std::chrono::milliseconds startTimeout = std::chrono::seconds(15);
		std::chrono::milliseconds stopTimeout = std::chrono::seconds(10);
	};

	// Makes the namespace and starts everything; any failure undoes what
	// was done. The PKI's files must outlive the fixture.
	static Result<std::unique_ptr<UpstreamNetns>> create(const TestPki &pki, Options options);
	static Result<std::unique_ptr<UpstreamNetns>> create(const TestPki &pki) { return create(pki, Options()); }
	~UpstreamNetns();
	UpstreamNetns(const UpstreamNetns &) = delete;
	UpstreamNetns &operator=(const UpstreamNetns &) = delete;

	const std::string &hostInterface() const { return hostInterface_; } // "gvmtu<4 hex>"
	const std::string &peerInterface() const { return peerInterface_; } // "gvmtv<4 hex>", in the namespace
	const std::string &hostAddress() const { return hostAddress_; }     // 10.250.x.y+1
	const std::string &address() const { return address_; }             // 10.250.x.y+2: every server
	// "/proc/<holder>/ns/net", for nsenter --net=.
	std::string netnsPath() const;
	pid_t holderPid() const { return holder_; }
	uint16_t tcpEchoPort() const { return tcpEchoPort_; }
	uint16_t tcpBannerPort() const { return tcpBannerPort_; }

	// "https://<host><path>" (or http://), default ports; path starts with '/'.
	static std::string url(std::string_view scheme, std::string_view host, std::string_view path = "/");

	// The prefix directory: nginx.conf, access.log, nginx.log, backend.log,
	// dnsmasq.log (its queries), echo.log, files/, requests/.
	const std::string &prefix() const { return prefix_.path(); }
	std::string filesDir() const { return prefix() + "/files"; }

	// nginx's access log; AccessLogEntry::server is "https" or "http".
	std::vector<AccessLogEntry> accessLog() const;
	size_t countRequests(std::string_view testId) const;
	bool waitForRequests(std::string_view testId, size_t count,
			     std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;
	// The last request /echo recorded with this X-Test-Id, raw.
	std::optional<std::string> recordedRequest(std::string_view testId) const;

	// Every query dnsmasq logged so far, in order (the fixture's own
	// readiness probe excluded).
	std::vector<DnsQueryLogEntry> dnsQueries() const;
	// True if dnsmasq logged a query for this name (any type; case-insensitive).
	bool dnsmasqSaw(std::string_view name) const;

	// What the servers wrote to stderr (for failure messages).
	std::string diagnostics() const;

	pid_t nginxPid() const;
	pid_t dnsmasqPid() const;

	// Stops everything and removes the veth pair and the namespace;
	// idempotent. The destructor calls it.
	void stop();

	class Process; // a child in the namespace, killed and reaped on destruction

private:
	UpstreamNetns();
	Result<void> start(const TestPki &pki, const Options &options);
	Result<void> makeNamespace(const Options &options);
	Result<void> startBackend(const Options &options);
	Result<void> startNginx(const TestPki &pki, const Options &options);
	Result<void> startDnsmasq(const Options &options);
	Result<void> startEcho(const Options &options);
	Result<std::unique_ptr<Process>> spawn(const std::vector<std::string> &argv, const std::string &logFile);

	TempDir prefix_;
	pid_t holder_ = -1;
	UniqueFd netns_;
	std::string ipBinary_;
	std::string hostInterface_;
	std::string peerInterface_;
	std::string hostAddress_;
	std::string address_;
	bool linkCreated_ = false;
	uint16_t tcpEchoPort_ = 0;
	uint16_t tcpBannerPort_ = 0;
	uint16_t backendPort_ = 0;
	std::unique_ptr<Process> backend_;
	std::unique_ptr<Process> nginx_;
	std::unique_ptr<Process> dnsmasq_;
	std::unique_ptr<Process> echo_;
	std::chrono::milliseconds stopTimeout_{10000};
};

// Gives the calling process a private mount namespace whose /etc/resolv.conf
// names only `nameserver` (an IPv4 address, port 53), e.g. an UpstreamNetns's
// dnsmasq: everything it spawns afterwards (gvmd, the proxy worker) resolves
// names there with getaddrinfo(), while /etc/hosts stays the host's. Unlike
// enterPrivateHosts, the test names then reach a sandbox only through its
// DNS (a sandbox inherits gvmd's /etc/hosts, not its /etc/resolv.conf).
// Needs CAP_SYS_ADMIN and a single-threaded process (the first time); may be
// called again, which only rewrites the file. The file is removed at exit.
Result<void> enterPrivateResolver(const std::string &nameserver);

} // namespace gvm::test
