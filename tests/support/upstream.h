// SPDX-License-Identifier: Apache-2.0
//
// Real upstream servers for the system tests: the distribution's nginx on
// loopback, with a python backend behind it, and a private /etc/hosts so
// names like api.gvm.test reach them.
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
#include "tests/support/process.h"
#include "tests/support/test_pki.h"

namespace gvm::test {

// The servers one NginxUpstream runs, each on its own 127.0.0.1 port and each
// with the same locations (see NginxUpstream).
enum class UpstreamServer {
	HttpsGood,      // TestPki::goodCert: verifies against TestPki::caCert
	HttpsWrongName, // TestPki::wrongNameCert: SAN other.invalid only
	HttpsExpired,   // TestPki::expiredCert
	HttpsUntrusted, // TestPki::untrustedCert: another CA
	HttpPlain,      // cleartext HTTP/1.1
};
const char *toString(UpstreamServer server); // "https_good", ..., "http_plain"

// One line of nginx's access log (written when a request ends).
struct AccessLogEntry {
	std::string server;  // toString(UpstreamServer) of the server that answered
	std::string request; // "$request": "GET /path HTTP/1.1" (nginx-escaped)
	int status = 0;
	std::string host;    // $host: Host header without port (lower case), or server name
	std::string sni;     // $ssl_server_name; empty without SNI or over plain HTTP
	std::string testId;  // X-Test-Id request header; empty when absent
	uint64_t bytesSent = 0; // response bytes, head included
	std::string line;    // the raw line
};

// nginx (the distribution's binary, one process, `master_process off`) and
// upstream_backend.py, both started by create() and killed and reaped (SIGTERM,
// then SIGKILL after a bound) by the destructor, which also removes the
// prefix directory. Both children also die if the test process dies
// (PR_SET_PDEATHSIG). The test thread owns it; not thread-safe.
//
// Every server answers:
//   /              200 "hello from <server>\n" (text/plain)
//   /file/1K       1024 bytes: "0123456789abcdef" repeated
//   /file/100M     104857600 zero bytes (a sparse file)
//   /status/<code> that status; codes in statusCodes(); 3xx redirect to "/"
//   /echo, /sse, /ws, /slow   proxied unbuffered to upstream_backend.py (see
//                  there); the Host header reaches it as the client sent it
// Request bodies have no size limit (client_max_body_size 0).
class NginxUpstream
{
public:
	struct Options {
		std::string nginx = "/usr/sbin/nginx";
		std::string python;  // empty: /usr/bin/python3, else python3 from $PATH
		std::string backend; // empty: $GVM_TEST_BACKEND (set by meson)
		std::chrono::milliseconds startTimeout = std::chrono::seconds(15);
		std::chrono::milliseconds stopTimeout = std::chrono::seconds(10);
	};

	// Starts everything; the PKI's files must outlive the fixture. A start
	// that loses a race for one of its ports is retried with fresh ports.
	static Result<std::unique_ptr<NginxUpstream>> create(const TestPki &pki, Options options);
	static Result<std::unique_ptr<NginxUpstream>> create(const TestPki &pki) { return create(pki, Options()); }
	~NginxUpstream();
	NginxUpstream(const NginxUpstream &) = delete;
	NginxUpstream &operator=(const NginxUpstream &) = delete;

	uint16_t port(UpstreamServer server) const;
	uint16_t backendPort() const { return backendPort_; }
	// "https://<host>:<port><path>" (http:// for HttpPlain); path starts with '/'.
	std::string url(UpstreamServer server, std::string_view host, std::string_view path = "/") const;

	// The prefix directory: nginx.conf, access.log, nginx.log (its stderr),
	// backend.log, files/, requests/.
	const std::string &prefix() const { return prefix_.path(); }
	std::string accessLogPath() const;
	// Where /echo records requests: <dir>/<X-Test-Id>.req
	std::string recordDir() const;
	// The last request /echo recorded with this X-Test-Id, raw; nullopt if none.
	std::optional<std::string> recordedRequest(std::string_view testId) const;

	std::vector<AccessLogEntry> accessLog() const;
	// Requests in the access log with this X-Test-Id.
	size_t countRequests(std::string_view testId) const;
	// nginx logs a request after the client has its answer: poll for it.
	bool waitForRequests(std::string_view testId, size_t count,
			     std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;
	// What nginx and the backend wrote to stderr (for failure messages).
	std::string diagnostics() const;

	pid_t nginxPid() const;
	pid_t backendPid() const;

	// Stops both processes (bounded); idempotent. The destructor calls it.
	void stop();

	static const std::vector<int> &statusCodes();

	class Process; // a child killed and reaped on destruction (upstream.cpp)

private:
	NginxUpstream();
	Result<void> start(const TestPki &pki, const Options &options);
	Result<void> startBackend(const Options &options);
	// Failure with `retry` set: a port was taken, start again with new ones.
	Result<void> startNginx(const TestPki &pki, const Options &options, bool *retry);

	TempDir prefix_;
	std::unique_ptr<Process> nginx_;
	std::unique_ptr<Process> backend_;
	std::vector<std::pair<UpstreamServer, uint16_t>> ports_;
	uint16_t backendPort_ = 0;
	std::chrono::milliseconds stopTimeout_{10000};
};

// Gives the calling process a private mount namespace whose /etc/hosts maps
// each (name, address) entry, after "127.0.0.1 localhost"; everything it
// spawns afterwards (gvmd, the worker, curl, python) inherits it, and the
// host's /etc/hosts is untouched. Needs CAP_SYS_ADMIN (root), and must be
// called while the process has one thread (unshare would move only the
// calling thread). May be called again: the newest list wins.
// Example: enterPrivateHosts({{"api.gvm.test", "127.0.0.1"}}).
Result<void> enterPrivateHosts(const std::vector<std::pair<std::string, std::string>> &entries);

} // namespace gvm::test
