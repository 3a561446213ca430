// SPDX-License-Identifier: Apache-2.0
//
// Sandbox mode end to end: a real gvmd launches real clients (curl, python3
// urllib and requests, node's fetch, git, getent) with `gvmctl launch` and no
// --cooperative, mostly with every proxy variable removed, so that only the
// sandbox's network namespace, its nftables and the host table can bring
// their traffic to the proxy worker. The upstreams (nginx, dnsmasq, a TCP
// echo server) live in a network namespace of the test's own
// (UpstreamNetns), reached across a veth pair from the host namespace, where
// the worker dials; gvmd forwards the sandboxes' DNS to that dnsmasq and
// trusts the test CA. A private /etc/resolv.conf (in this test's own mount
// namespace) points the worker's own getaddrinfo() at that dnsmasq too.
// Each behaviour is proved by
// what the client saw, what reached (or never reached) nginx or dnsmasq, and
// the audit record.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <chrono>
#include <functional>
#include <iterator>
#include <regex>
#include <csignal>
#include <dirent.h>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "tests/support/process.h"
#include "tests/support/upstream_netns.h"

using namespace gvm;
using namespace gvm::test;
using Json = nlohmann::json;

namespace {

constexpr char kPython[] = "/usr/bin/python3";
constexpr char kNobody[] = "65534";

void writeText(const std::string &path, const std::string &text) { std::ofstream(path) << text; }

// allowed.gvm.test is governed by path; denied.gvm.test is denied by name
// (and so never resolves); *.wild.gvm.test is allowed by a wildcard only;
// echo.gvm.test is a raw TCP service on one port; secret.gvm.test is
// named by no rule (dnsmasq would answer it, gvm never asks).
std::string policyText()
{
	return "version: 1\n"
	       "name: sandbox-system-test\n"
	       "mode: enforce\n"
	       "default: deny\n"
	       "dns:\n"
	       "  resolve: policy\n"
	       "  max_name_length: 120\n"
	       "upstream:\n"
	       "  allow_cidrs: [10.250.0.0/16]\n"
	       "rules:\n"
	       "  - name: forbidden-path\n"
	       "    hosts: [allowed.gvm.test]\n"
	       "    path: '^/echo/forbidden'\n"
	       "    action: deny\n"
	       "  - name: allowed-site\n"
	       "    hosts: [allowed.gvm.test, \"*.wild.gvm.test\"]\n"
	       "    action: allow\n"
	       "  - name: denied-site\n"
	       "    hosts: [denied.gvm.test]\n"
	       "    action: deny\n"
	       "  - name: echo-service\n"
	       "    tcp: {hosts: [echo.gvm.test], ports: [7000, 7002]}\n"
	       "    action: allow\n";
}

// Removes every proxy variable: what the command does then is transparent
// to it, only the namespace brings its traffic to the proxy.
std::vector<std::string> noProxy(std::vector<std::string> argv)
{
	std::vector<std::string> out = {"env",        "-u", "HTTP_PROXY", "-u", "HTTPS_PROXY", "-u", "http_proxy",
					"-u",         "https_proxy", "-u", "ALL_PROXY", "-u", "all_proxy"};
	out.insert(out.end(), argv.begin(), argv.end());
	return out;
}

std::vector<std::string> curl(const std::vector<std::string> &args)
{
	std::vector<std::string> argv = {"curl", "-sS", "--max-time", "20"};
	argv.insert(argv.end(), args.begin(), args.end());
	return argv;
}

// "<body>\n<code>" from curl -w '\n%{http_code}'.
std::pair<std::string, std::string> splitCode(const std::string &out)
{
	auto nl = out.rfind('\n');
	if (nl == std::string::npos)
		return {"", out};
	return {out.substr(0, nl), out.substr(nl + 1)};
}

// One gvmd (sandbox mode) with its own socket, runtime and state
// directories, the upstream namespace, and the policy.
struct Harness {
	TempDir dir;
	std::optional<TestPki> pki;
	std::unique_ptr<UpstreamNetns> up;
	std::string runtime = dir.path() + "/run";
	std::string socket = runtime + "/gvmd.sock";
	std::string state = dir.path() + "/state";
	std::string policy = dir.path() + "/policy.yaml";
	Child gvmd;

	Harness()
	{
		// Others (nobody, the worker's uid) must reach the policy file,
		// the socket and the PKI by path; nothing here is secret.
		REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
		REQUIRE(::mkdir((dir.path() + "/pki").c_str(), 0755) == 0);
		auto p = TestPki::create(dir.path() + "/pki");
		REQUIRE(p);
		pki.emplace(std::move(*p));
		UpstreamNetns::Options options;
		options.names = {"allowed.gvm.test", "denied.gvm.test", "echo.gvm.test", "secret.gvm.test",
				 "wild.gvm.test"};
		options.txtRecords = {{"allowed.gvm.test", "governed txt"}, {"x.wild.gvm.test", "wild txt"}};
		auto u = UpstreamNetns::create(*pki, options);
		if (!u)
			FAIL(u.error().message());
		up = std::move(*u);
		// The worker resolves upstream names with the host's resolver:
		// here, the fixture's dnsmasq. Not a private /etc/hosts: a sandbox
		// inherits gvmd's /etc/hosts, and curl would then find the names
		// there without asking the sandbox's DNS.
		auto resolver = enterPrivateResolver(up->address());
		if (!resolver)
			FAIL(resolver.error().message());
		writeText(policy, policyText());
		startGvmd();
	}

	~Harness()
	{
		// A clean stop first (its sandboxes end, their links go); the
		// Child's destructor kills it if that takes too long.
		if (gvmd.running())
			gvmd.stop(SIGTERM, std::chrono::seconds(10));
	}

	void startGvmd(std::vector<std::string> env = {})
	{
		env.push_back("GVM_WORKER=" + binaryFromEnv("GVM_WORKER"));
		gvmd = Child::start({binaryFromEnv("GVM_GVMD"), "--socket", socket, "--state-dir", state, "--runtime-dir",
				     runtime, "--upstream-ca", pki->caCert(), "--dns-upstream", up->address() + ":53",
				     "--log-level", "debug"},
				    env, dir.path() + "/gvmd.log");
		REQUIRE(waitFor([&] { return RawClient(socket).connected(); }, std::chrono::seconds(15)));
	}

	RunResult gvmctl(std::vector<std::string> args, std::chrono::milliseconds timeout = std::chrono::seconds(60))
	{
		args.insert(args.begin(), {binaryFromEnv("GVM_GVMCTL"), "--socket", socket});
		return run(args, {}, timeout);
	}

	// `gvmctl launch` (sandbox mode) of argv under the harness policy.
	RunResult launch(const std::vector<std::string> &argv, std::vector<std::string> flags = {},
			 std::chrono::milliseconds timeout = std::chrono::seconds(60))
	{
		return gvmctl(launchArgs(argv, std::move(flags)), timeout);
	}

	std::vector<std::string> launchArgs(const std::vector<std::string> &argv, std::vector<std::string> flags = {})
	{
		// The network sandbox alone: these cases check what crosses the
		// network, and their agents leave files for the test to read on
		// the host (tests/system/test_isolation.cpp covers the rest, and
		// the bypass suite runs with everything on).
		std::vector<std::string> args = {"launch", "--policy", policy, "--network-only"};
		args.insert(args.end(), flags.begin(), flags.end());
		args.push_back("--");
		args.insert(args.end(), argv.begin(), argv.end());
		return args;
	}

	// A launch that keeps running while the test looks at it.
	Child launchInBackground(const std::vector<std::string> &argv, const std::string &log,
				 std::vector<std::string> flags = {})
	{
		std::vector<std::string> args = launchArgs(argv, std::move(flags));
		args.insert(args.begin(), {binaryFromEnv("GVM_GVMCTL"), "--socket", socket});
		return Child::start(args, {}, log);
	}

	// Every audit record so far (gvmd syncs within ~100 ms).
	std::vector<Json> audit()
	{
		std::vector<Json> out;
		std::istringstream in(readFile(state + "/audit/audit.jsonl"));
		for (std::string line; std::getline(in, line);)
			if (auto j = Json::parse(line, nullptr, false); !j.is_discarded())
				out.push_back(j);
		return out;
	}

	// The last record that `match` accepts, waiting for it a bounded time.
	std::optional<Json> record(const std::function<bool(const Json &)> &match)
	{
		std::optional<Json> found;
		waitFor(
			[&] {
				found.reset();
				for (const Json &r : audit())
					if (match(r))
						found = r;
				return found.has_value();
			},
			std::chrono::seconds(5));
		return found;
	}

	std::optional<Json> httpRecord(const std::string &host, const std::string &path)
	{
		return record([&](const Json &r) {
			return r.value("kind", "") == "http" && r.value("host", "") == host && r.value("path", "") == path;
		});
	}

	std::optional<Json> dnsRecord(const std::string &name, const std::string &type)
	{
		return record([&](const Json &r) {
			return r.value("kind", "") == "dns" && r.value("host", "") == name && r.value("method", "") == type;
		});
	}

	// The sandboxes gvmd lists.
	Json sandboxes()
	{
		RunResult ps = gvmctl({"ps", "--json"});
		auto j = Json::parse(ps.out, nullptr, false);
		if (j.is_discarded() || !j.contains("sandboxes"))
			return Json::array();
		return j["sandboxes"];
	}

	std::string log() { return readFile(dir.path() + "/gvmd.log"); }
	std::string diagnostics() { return "--- gvmd.log\n" + tail(log()) + "\n" + up->diagnostics(); }

	static std::string tail(const std::string &text, size_t max = 6000)
	{
		return text.size() <= max ? text : "..." + text.substr(text.size() - max);
	}
};

// A python3 DNS client for the sandbox's resolver (the nameserver of its
// /etc/resolv.conf): dnsq(name, type) is "rcode=N answer,answer" or
// "no-answer" (timeout) or "refused" (ICMP port unreachable).
const char kDnsClient[] = R"PY(
import random, socket, struct, sys, time
TYPES = {'A': 1, 'TXT': 16, 'AAAA': 28, 'ANY': 255}
def nameserver():
    for line in open('/etc/resolv.conf'):
        f = line.split()
        if len(f) >= 2 and f[0] == 'nameserver':
            return f[1]
def dnsq(name, qtype='A', timeout=3):
    qid = random.randrange(65536)
    q = struct.pack('!HHHHHH', qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip('.').split('.'):
        q += bytes([len(label)]) + label.encode()
    q += b'\0' + struct.pack('!HH', TYPES[qtype], 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, (nameserver(), 53))
        while True:
            data = s.recv(4096)
            if data[:2] == q[:2]:
                break
    except socket.timeout:
        return 'no-answer'
    except ConnectionRefusedError:
        return 'refused'
    finally:
        s.close()
    rcode = data[3] & 0xf
    count = struct.unpack('!H', data[6:8])[0]
    i = 12
    while data[i]:
        i += data[i] + 1
    i += 5
    out = []
    for _ in range(count):
        if data[i] & 0xc0 == 0xc0:
            i += 2
        else:
            while data[i]:
                i += data[i] + 1
            i += 1
        t, c, ttl, l = struct.unpack('!HHIH', data[i:i + 10])
        i += 10
        rd = data[i:i + l]
        i += l
        if t == 1:
            out.append(socket.inet_ntoa(rd))
        elif t == 16:
            out.append(rd[1:1 + rd[0]].decode())
    return f'rcode={rcode} ' + ','.join(out)
)PY";

// The sandbox id gvmctl --json reports on stderr ({"event":"launched",...}).
std::string launchedId(const std::string &stderrText)
{
	std::istringstream in(stderrText);
	for (std::string line; std::getline(in, line);) {
		auto j = Json::parse(line, nullptr, false);
		if (!j.is_discarded() && j.is_object() && j.value("event", "") == "launched")
			return j.value("sandbox", "");
	}
	return "";
}

// The state letter ('R', 'S', 'T', ...) of a /proc stat file, or 0.
char stateIn(const std::string &statFile)
{
	std::string stat = readFile(statFile);
	auto close = stat.rfind(')');
	return close != std::string::npos && stat.size() > close + 2 ? stat[close + 2] : 0;
}

char stateOf(pid_t pid) { return stateIn("/proc/" + std::to_string(pid) + "/stat"); }

bool processGone(pid_t pid)
{
	// A zombie nobody reaps (its parent was gvmd) counts as gone.
	const char state = stateOf(pid);
	return state == 0 || state == 'Z';
}

pid_t parentOf(pid_t pid)
{
	std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
	auto close = stat.rfind(')');
	if (close == std::string::npos)
		return -1;
	std::istringstream rest(stat.substr(close + 2));
	std::string state;
	pid_t ppid = -1;
	rest >> state >> ppid;
	return ppid;
}

// Stopped by a signal: SIGSTOP has taken effect.
bool stopped(pid_t pid) { return stateOf(pid) == 'T'; }

// Asleep waiting for events with nothing left to read: a loop that has
// handled what was sent to it.
bool idleInEpoll(pid_t pid)
{
	return stateOf(pid) == 'S' && readFile("/proc/" + std::to_string(pid) + "/wchan") == "do_epoll_wait";
}

// Every thread of pid asleep (libuv's pool threads included): nothing of
// its own is in progress.
bool allThreadsAsleep(pid_t pid)
{
	bool any = false;
	const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
	if (DIR *d = ::opendir(tasks.c_str())) {
		while (dirent *e = ::readdir(d)) {
			pid_t tid = std::atoi(e->d_name);
			if (tid <= 0)
				continue;
			if (stateIn(tasks + "/" + e->d_name + "/stat") != 'S') {
				::closedir(d);
				return false;
			}
			any = true;
		}
		::closedir(d);
	}
	return any;
}

// Live (not zombie) processes for which keep(pid) holds.
std::vector<pid_t> liveProcesses(const std::function<bool(pid_t)> &keep)
{
	std::vector<pid_t> out;
	if (DIR *d = ::opendir("/proc")) {
		while (dirent *e = ::readdir(d)) {
			pid_t pid = std::atoi(e->d_name);
			if (pid > 0 && keep(pid) && !processGone(pid))
				out.push_back(pid);
		}
		::closedir(d);
	}
	return out;
}

// The live children of `parent` named `comm`.
std::vector<pid_t> childrenNamed(pid_t parent, const std::string &comm)
{
	return liveProcesses([&](pid_t pid) {
		return parentOf(pid) == parent && readFile("/proc/" + std::to_string(pid) + "/comm") == comm + "\n";
	});
}

std::string netnsOf(pid_t pid)
{
	char buf[64];
	ssize_t n = ::readlink(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), buf, sizeof(buf) - 1);
	return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

// Live (not zombie) processes whose network namespace is `netns`.
std::vector<pid_t> processesIn(const std::string &netns)
{
	return liveProcesses([&](pid_t pid) { return netnsOf(pid) == netns; });
}

std::string links() { return run({"/usr/sbin/ip", "-o", "link"}).out; }

bool hasLink(const std::string &name)
{
	const std::string all = links();
	return all.find(" " + name + "@") != std::string::npos || all.find(" " + name + ":") != std::string::npos;
}

} // namespace

TEST_CASE("curl without proxy variables is governed transparently: allow, deny, audit", "[sandbox][system]")
{
	Harness h;
	const std::string ns = h.up->address();

	// Allowed over HTTPS: the body as nginx served it, intercepted with the
	// sandbox CA that the agent trusts through the bind-mounted bundle.
	RunResult r = h.launch(noProxy(curl({"-H", "X-Test-Id: https-1", "-w", "\n%{http_code}",
					     "https://allowed.gvm.test/"})));
	INFO(r.err << h.diagnostics());
	REQUIRE(r.status == 0);
	CHECK(splitCode(r.out) == std::make_pair(std::string("hello from allowed.gvm.test\n"), std::string("200")));
	REQUIRE(h.up->waitForRequests("https-1", 1));
	for (const AccessLogEntry &e : h.up->accessLog())
		if (e.testId == "https-1") {
			CHECK(e.server == "https");
			CHECK(e.sni == "allowed.gvm.test");
			CHECK(e.host == "allowed.gvm.test");
			CHECK(e.request == "GET / HTTP/1.1");
			CHECK(e.status == 200);
		}
	auto allowed = h.httpRecord("allowed.gvm.test", "/");
	REQUIRE(allowed);
	CHECK((*allowed)["action"] == "allow");
	CHECK((*allowed)["rule"] == "allowed-site");
	CHECK((*allowed)["status"] == 200);
	CHECK((*allowed)["method"] == "GET");
	CHECK((*allowed)["port"] == 443);
	CHECK((*allowed)["mode"] == "enforce");
	CHECK((*allowed)["policy"] == "sandbox-system-test");
	// curl resolved the name through the sandbox's DNS, which forwarded it.
	auto lookup = h.dnsRecord("allowed.gvm.test", "A");
	REQUIRE(lookup);
	CHECK((*lookup)["action"] == "allow");
	CHECK((*lookup)["rule"] == "allowed-site");
	CHECK((*lookup)["status"] == 0);
	CHECK((*lookup)["sandbox"] == (*allowed)["sandbox"]);
	CHECK(h.up->dnsmasqSaw("allowed.gvm.test"));

	// Plain HTTP, with a body: byte-exact at the backend, Host as sent.
	RunResult p = h.launch(noProxy(curl({"-H", "X-Test-Id: http-1", "--data-binary", "governed body",
					     "http://allowed.gvm.test/echo/plain"})));
	INFO(p.err);
	REQUIRE(p.status == 0);
	auto echoed = Json::parse(p.out, nullptr, false);
	REQUIRE(!echoed.is_discarded());
	CHECK(echoed["method"] == "POST");
	CHECK(echoed["body_len"] == 13);
	CHECK(echoed["headers"]["host"] == "allowed.gvm.test");
	auto recorded = h.up->recordedRequest("http-1");
	REQUIRE(recorded);
	CHECK(recorded->substr(recorded->size() - 13) == "governed body");
	auto plain = h.httpRecord("allowed.gvm.test", "/echo/plain");
	REQUIRE(plain);
	CHECK((*plain)["action"] == "allow");
	CHECK((*plain)["port"] == 80);
	CHECK((*plain)["method"] == "POST");
	CHECK((*plain)["bytes_out"] == 13);

	// A path a rule denies on an allowed host: 403 with the JSON body, and
	// nothing reaches nginx.
	RunResult f = h.launch(noProxy(curl({"-H", "X-Test-Id: forbidden-1", "-w", "\n%{http_code}",
					     "https://allowed.gvm.test/echo/forbidden"})));
	INFO(f.err);
	REQUIRE(f.status == 0);
	auto [fBody, fCode] = splitCode(f.out);
	CHECK(fCode == "403");
	auto denial = Json::parse(fBody, nullptr, false);
	REQUIRE(!denial.is_discarded());
	CHECK(denial["error"] == "denied by policy");
	CHECK(denial["rule"] == "forbidden-path");
	CHECK(denial["sandbox"].get<std::string>().size() == 8);
	CHECK(denial["request_id"].get<std::string>().find('-') != std::string::npos);
	auto forbidden = h.httpRecord("allowed.gvm.test", "/echo/forbidden");
	REQUIRE(forbidden);
	CHECK((*forbidden)["action"] == "deny");
	CHECK((*forbidden)["status"] == 403);
	CHECK((*forbidden)["rule"] == "forbidden-path");
	CHECK((*forbidden)["request_id"] == denial["request_id"]);
	CHECK((*forbidden)["sandbox"] == denial["sandbox"]);

	// A denied host does not resolve (NXDOMAIN) ...
	RunResult n = h.launch(noProxy(curl({"-w", "\n%{http_code}", "https://denied.gvm.test/"})));
	CHECK(n.status == 6); // CURLE_COULDNT_RESOLVE_HOST
	auto nx = h.dnsRecord("denied.gvm.test", "A");
	REQUIRE(nx);
	CHECK((*nx)["action"] == "deny");
	CHECK((*nx)["rule"] == "denied-site");
	CHECK((*nx)["status"] == 3);
	// ... and an agent that knows its address anyway is denied by SNI and
	// Host: 403 with the JSON body over HTTPS and over HTTP.
	for (const char *scheme : {"https", "http"}) {
		const std::string port = std::string(scheme) == "https" ? "443" : "80";
		const std::string id = std::string("denied-") + scheme;
		RunResult d = h.launch(noProxy(curl({"-H", "X-Test-Id: " + id, "-w", "\n%{http_code}", "--resolve",
						     "denied.gvm.test:" + port + ":" + ns,
						     std::string(scheme) + "://denied.gvm.test/echo/x"})));
		INFO(scheme << ": " << d.out << d.err);
		REQUIRE(d.status == 0);
		auto [body, code] = splitCode(d.out);
		CHECK(code == "403");
		auto j = Json::parse(body, nullptr, false);
		REQUIRE(!j.is_discarded());
		CHECK(j["error"] == "denied by policy");
		CHECK(j["rule"] == "denied-site");
		auto rec = h.record([&](const Json &x) {
			return x.value("host", "") == "denied.gvm.test" && x.value("action", "") == "deny" &&
			       x.value("port", 0) == std::stoi(port) && x.value("kind", "") != "dns";
		});
		REQUIRE(rec);
		CHECK((*rec)["rule"] == "denied-site");
		CHECK((*rec)["status"] == 403);
	}
	std::this_thread::sleep_for(std::chrono::milliseconds(300));
	CHECK(h.up->countRequests("forbidden-1") == 0);
	CHECK(h.up->countRequests("denied-https") == 0);
	CHECK(h.up->countRequests("denied-http") == 0);
	CHECK_FALSE(h.up->dnsmasqSaw("denied.gvm.test"));

	// The log as a whole verifies.
	RunResult v = h.gvmctl({"audit", "verify", h.state + "/audit/audit.jsonl"});
	CHECK(v.status == 0);
}

TEST_CASE("python urllib and requests, node fetch and git clone are governed the same way", "[sandbox][system]")
{
	Harness h;
	const std::string url = "https://allowed.gvm.test/echo/clients";

	RunResult u = h.launch(noProxy({kPython, "-c",
					"import urllib.request,sys\n"
					"r=urllib.request.urlopen(urllib.request.Request(sys.argv[1], headers={'X-Test-Id': 'urllib-1'}))\n"
					"import json; print(r.status, json.load(r)['headers']['host'])",
					url}));
	INFO(u.err << h.diagnostics());
	CHECK(u.out == "200 allowed.gvm.test\n");
	CHECK(h.up->waitForRequests("urllib-1", 1));

	RunResult rq = h.launch(noProxy({kPython, "-c",
					 "import requests,sys\n"
					 "r=requests.post(sys.argv[1], json={'a': 1}, headers={'X-Test-Id': 'requests-1'})\n"
					 "print(r.status_code, r.json()['body_len'])\n"
					 "d=requests.get('https://allowed.gvm.test/echo/forbidden/py', headers={'X-Test-Id': 'requests-2'})\n"
					 "print(d.status_code, d.json()['error'], d.json()['rule'])",
					 url}));
	INFO(rq.err);
	CHECK(rq.out == "200 8\n403 denied by policy forbidden-path\n");
	CHECK(h.up->waitForRequests("requests-1", 1));
	CHECK(h.up->countRequests("requests-2") == 0);
	auto py = h.httpRecord("allowed.gvm.test", "/echo/forbidden/py");
	REQUIRE(py);
	CHECK((*py)["action"] == "deny");
	CHECK((*py)["status"] == 403);

	// A WebSocket straight over TLS to port 443: the upgrade is decided,
	// then the frames are relayed both ways.
	const std::string ws = "import base64, os, socket, ssl\n"
			       "c = ssl.create_default_context().wrap_socket(socket.create_connection(('allowed.gvm.test', 443), timeout=10), server_hostname='allowed.gvm.test')\n"
			       "k = base64.b64encode(os.urandom(16)).decode()\n"
			       "c.sendall(f'GET /ws HTTP/1.1\\r\\nHost: allowed.gvm.test\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: {k}\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n'.encode())\n"
			       "h = b''\n"
			       "while b'\\r\\n\\r\\n' not in h:\n"
			       "    h += c.recv(1)\n"
			       "print(h.split(b'\\r\\n')[0].decode())\n"
			       "m = b'governed echo'; mask = os.urandom(4)\n"
			       "c.sendall(bytes([0x81, 0x80 | len(m)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(m)))\n"
			       "f = c.recv(2); print(c.recv(f[1] & 0x7f).decode())\n";
	RunResult w = h.launch(noProxy({kPython, "-c", ws}));
	INFO(w.err);
	CHECK(w.out == "HTTP/1.1 101 Switching Protocols\ngoverned echo\n");
	auto upgrade = h.httpRecord("allowed.gvm.test", "/ws");
	REQUIRE(upgrade);
	CHECK((*upgrade)["action"] == "allow");
	CHECK((*upgrade)["status"] == 101);

	// node's fetch ignores proxy variables whatever they say: both ways.
	const std::string fetch = "fetch(process.argv[1], {headers: {'X-Test-Id': process.argv[2]}})"
				  ".then(async r => { const j = JSON.parse(await r.text()); console.log(r.status, j.headers ? j.headers.host : j.error); })"
				  ".catch(e => { console.log('error', e.cause ? e.cause.code : e.message); process.exit(3); })";
	RunResult n1 = h.launch(noProxy({"node", "-e", fetch, url, "node-1"}));
	INFO(n1.err);
	CHECK(n1.out == "200 allowed.gvm.test\n");
	RunResult n2 = h.launch({"node", "-e", fetch, url, "node-2"});
	INFO(n2.err);
	CHECK(n2.out == "200 allowed.gvm.test\n");
	CHECK(h.up->waitForRequests("node-1", 1));
	CHECK(h.up->waitForRequests("node-2", 1));
	RunResult n3 = h.launch({"node", "-e", fetch, "https://allowed.gvm.test/echo/forbidden/node", "node-3"});
	CHECK(n3.out == "403 denied by policy\n");
	CHECK(h.up->countRequests("node-3") == 0);
	auto nodeDeny = h.httpRecord("allowed.gvm.test", "/echo/forbidden/node");
	REQUIRE(nodeDeny);
	CHECK((*nodeDeny)["action"] == "deny");

	// git over HTTPS, dumb protocol: a bare repository nginx serves as files.
	const std::string files = h.up->filesDir();
	RunResult init = run({"/bin/sh", "-c",
			      "set -e; cd " + h.dir.path() + " && git init -q src && cd src && git -c user.name=t -c "
			      "user.email=t@t commit -q --allow-empty -m governed-in-sandbox && git clone -q --bare . " +
				      files + "/repo.git && cd " + files + "/repo.git && git update-server-info && "
				      "chmod -R a+rX " + files});
	REQUIRE(init.status == 0);
	const std::string clone = h.dir.path() + "/clone";
	RunResult g = h.launch(noProxy({"git", "clone", "-q", "https://allowed.gvm.test/file/repo.git", clone}));
	INFO(g.err << h.log());
	CHECK(g.status == 0);
	RunResult logged = run({"/usr/bin/git", "-C", clone, "log", "--format=%s"});
	CHECK(logged.out == "governed-in-sandbox\n");
	auto refs = h.httpRecord("allowed.gvm.test", "/file/repo.git/info/refs");
	REQUIRE(refs);
	CHECK((*refs)["action"] == "allow");
	CHECK((*refs)["status"] == 200);
	// A clone of a forbidden path fails and is recorded.
	RunResult gd = h.launch(noProxy({"git", "clone", "-q", "https://allowed.gvm.test/echo/forbidden/repo.git",
					 h.dir.path() + "/clone2"}));
	CHECK(gd.status != 0);
	CHECK_THAT(gd.err, Catch::Contains("403"));
}

TEST_CASE("java's HttpClient, which ignores proxy variables, trusts the sandbox and is governed", "[sandbox][system]")
{
	Harness h;
	// Java reads neither the proxy variables nor the PEM bundle: it trusts
	// its own keystore (Debian's /etc/ssl/certs/java/cacerts), so HTTPS
	// works only if the sandbox's CA is in the keystore the agent sees.
	// The program lives where the default sandbox sees the host's files
	// (its /tmp is a private one).
	char scratch[] = "/var/tmp/gvm-java-XXXXXX";
	REQUIRE(::mkdtemp(scratch) != nullptr);
	struct Remove {
		std::string path;
		~Remove() { std::filesystem::remove_all(path); }
	} removeScratch{scratch};
	REQUIRE(::chmod(scratch, 0755) == 0);
	const std::string source = std::string(scratch) + "/Get.java";
	writeText(source, "import java.net.URI;\n"
			  "import java.net.http.*;\n"
			  "public class Get {\n"
			  "  public static void main(String[] a) throws Exception {\n"
			  "    HttpClient c = HttpClient.newHttpClient();\n"
			  "    HttpRequest q = HttpRequest.newBuilder(URI.create(a[0])).header(\"X-Test-Id\", a[1]).build();\n"
			  "    HttpResponse<String> r = c.send(q, HttpResponse.BodyHandlers.ofString());\n"
			  "    System.out.println(r.statusCode() + \" \" + r.body().contains(\"denied by policy\"));\n"
			  "  }\n"
			  "}\n");
	REQUIRE(::chmod(source.c_str(), 0644) == 0);
	for (const bool isolated : {false, true}) {
		INFO((isolated ? "the default sandbox" : "the network sandbox alone"));
		const std::string tag = isolated ? "iso" : "net";
		std::vector<std::string> args = h.launchArgs({"java", source, "https://allowed.gvm.test/echo/java", "java-" + tag});
		if (isolated)
			args.erase(std::find(args.begin(), args.end(), "--network-only"));
		RunResult ok = h.gvmctl(args, std::chrono::seconds(90));
		INFO(ok.err << h.diagnostics());
		CHECK(ok.status == 0);
		CHECK(ok.out == "200 false\n");
		CHECK(h.up->waitForRequests("java-" + tag, 1));
	}

	RunResult denied = h.launch({"java", source, "https://allowed.gvm.test/echo/forbidden/java", "java-denied"}, {},
				    std::chrono::seconds(90));
	INFO(denied.err);
	CHECK(denied.out == "403 true\n");
	CHECK(h.up->countRequests("java-denied") == 0);
	auto record = h.httpRecord("allowed.gvm.test", "/echo/forbidden/java");
	REQUIRE(record);
	CHECK((*record)["action"] == "deny");
	CHECK((*record)["rule"] == "forbidden-path");
	auto allowed = h.httpRecord("allowed.gvm.test", "/echo/java");
	REQUIRE(allowed);
	CHECK((*allowed)["action"] == "allow");
	CHECK((*allowed)["status"] == 200);
}

TEST_CASE("DNS: allowed names resolve to the upstream, others get NXDOMAIN without leaving", "[sandbox][system]")
{
	Harness h;
	const std::string ns = h.up->address();

	// getent (glibc, /etc/resolv.conf of the sandbox) and python's resolver.
	RunResult g = h.launch(noProxy({"getent", "hosts", "allowed.gvm.test"}));
	INFO(g.err << h.diagnostics());
	CHECK(g.status == 0);
	std::istringstream words(g.out);
	std::string address, name;
	words >> address >> name;
	CHECK(address == ns);
	CHECK(name == "allowed.gvm.test");
	RunResult p = h.launch(noProxy({kPython, "-c", "import socket; print(socket.gethostbyname('x.wild.gvm.test'))"}));
	CHECK(p.out == ns + "\n");

	// A name no rule allows: NXDOMAIN to getent (exit 2: not found) and to
	// python, and dnsmasq never sees it.
	RunResult s = h.launch(noProxy({"getent", "hosts", "secret.gvm.test"}));
	CHECK(s.status == 2);
	CHECK(s.out.empty());
	RunResult sp = h.launch(noProxy(
		{kPython, "-c", std::string(kDnsClient) + "print(dnsq('secret.gvm.test'))\nprint(dnsq('allowed.gvm.test'))\n"
						      "print(dnsq('allowed.gvm.test', 'TXT'))\nprint(dnsq('secret.gvm.test', 'TXT'))\n"
						      "print(dnsq('allowed.gvm.test', 'AAAA'))\nprint(dnsq('a' * 60 + '.' + 'b' * 60 + '.wild.gvm.test'))\n"
						      "print(dnsq('x.wild.gvm.test', 'TXT'))\n"}));
	INFO(sp.err);
	std::istringstream lines(sp.out);
	std::vector<std::string> answers;
	for (std::string line; std::getline(lines, line);)
		answers.push_back(line);
	REQUIRE(answers.size() == 7);
	CHECK(answers[0] == "rcode=3 ");             // NXDOMAIN
	CHECK(answers[1] == "rcode=0 " + ns);        // forwarded, dnsmasq's answer
	CHECK(answers[2] == "rcode=0 governed txt"); // TXT to a listed name: forwarded
	CHECK(answers[3] == "rcode=5 ");             // TXT to a name no rule lists: REFUSED
	CHECK(answers[4] == "rcode=0 ");             // AAAA: NODATA, no IPv6 in a sandbox
	CHECK(answers[5] == "rcode=5 ");             // over max_name_length: REFUSED
	CHECK(answers[6] == "rcode=0 wild txt");     // a wildcard lists the name too

	// dnsmasq logged the allowed questions and nothing gvm refused.
	REQUIRE(waitFor([&] { return h.up->dnsmasqSaw("allowed.gvm.test") && h.up->dnsmasqSaw("x.wild.gvm.test"); }));
	CHECK_FALSE(h.up->dnsmasqSaw("secret.gvm.test"));
	for (const DnsQueryLogEntry &q : h.up->dnsQueries()) {
		INFO(q.type << " " << q.name << " from " << q.from);
		CHECK(q.name != "secret.gvm.test");
		CHECK(q.type != "AAAA");
		CHECK(q.name.size() < 100);
		// Queries reach dnsmasq from the host side of the fixture's veth
		// (the worker forwards them), never from a sandbox address.
		CHECK(q.from == h.up->hostAddress());
	}

	// Each question is an audit record of kind dns.
	auto allowed = h.dnsRecord("allowed.gvm.test", "A");
	REQUIRE(allowed);
	CHECK((*allowed)["action"] == "allow");
	CHECK((*allowed)["status"] == 0);
	CHECK((*allowed)["rule"] == "allowed-site");
	auto secret = h.dnsRecord("secret.gvm.test", "A");
	REQUIRE(secret);
	CHECK((*secret)["action"] == "deny");
	CHECK((*secret)["status"] == 3);
	CHECK_THAT((*secret)["reason"].get<std::string>(), Catch::Contains("no rule may allow secret.gvm.test"));
	auto txt = h.dnsRecord("allowed.gvm.test", "TXT");
	REQUIRE(txt);
	CHECK((*txt)["action"] == "allow");
	auto secretTxt = h.dnsRecord("secret.gvm.test", "TXT");
	REQUIRE(secretTxt);
	CHECK((*secretTxt)["action"] == "deny");
	CHECK((*secretTxt)["status"] == 5);
	CHECK_THAT((*secretTxt)["reason"].get<std::string>(), Catch::Contains("no rule lists"));
	auto wildTxt = h.dnsRecord("x.wild.gvm.test", "TXT");
	REQUIRE(wildTxt);
	CHECK((*wildTxt)["action"] == "allow");
	CHECK((*wildTxt)["status"] == 0);
	auto aaaa = h.dnsRecord("allowed.gvm.test", "AAAA");
	REQUIRE(aaaa);
	CHECK((*aaaa)["status"] == 0);
	auto longName = h.record([](const Json &r) {
		return r.value("kind", "") == "dns" && r.value("host", "").size() > 120;
	});
	REQUIRE(longName);
	CHECK((*longName)["action"] == "deny");
	CHECK((*longName)["status"] == 5);
	CHECK_THAT((*longName)["reason"].get<std::string>(), Catch::Contains("exfiltration"));
}

TEST_CASE("raw TCP: a tcp rule allows a port of a resolved name; other ports are reset and denied", "[sandbox][system]")
{
	Harness h;
	const std::string ns = h.up->address();
	const std::string script = "import socket, sys\n"
				   "ip = socket.gethostbyname('echo.gvm.test')\n"
				   "print(ip)\n"
				   "s = socket.create_connection((ip, 7000), timeout=10)\n"
				   "s.sendall(b'raw bytes through gvm\\n')\n"
				   "data = b''\n"
				   "while not data.endswith(b'\\n'):\n"
				   "    chunk = s.recv(4096)\n"
				   "    if not chunk: break\n"
				   "    data += chunk\n"
				   "print(data.decode().strip())\n"
				   "s.close()\n"
				   "try:\n"
				   "    s = socket.create_connection((ip, 7001), timeout=10)\n"
				   "    s.sendall(b'should not pass\\n')\n"
				   "    d = s.recv(4096)\n"
				   "    print('closed' if d == b'' else 'data ' + d.decode())\n"
				   "except ConnectionResetError:\n"
				   "    print('reset')\n"
				   "except ConnectionRefusedError:\n"
				   "    print('refused')\n"
				   "except socket.timeout:\n"
				   "    print('timeout')\n";
	RunResult r = h.launch(noProxy({kPython, "-c", script}));
	INFO(r.err << h.diagnostics());
	REQUIRE(r.status == 0);
	// Port 7001: no byte comes back, and the close is a reset (DESIGN §3).
	CHECK(r.out == ns + "\nraw bytes through gvm\nreset\n");

	auto allowed = h.record([](const Json &x) { return x.value("kind", "") == "tcp" && x.value("port", 0) == 7000; });
	REQUIRE(allowed);
	CHECK((*allowed)["action"] == "allow");
	CHECK((*allowed)["rule"] == "echo-service");
	// host is the address dialled; the name that matched is in the reason.
	CHECK((*allowed)["host"] == ns);
	CHECK_THAT((*allowed)["reason"].get<std::string>(),
		   Catch::Contains("name echo.gvm.test") && Catch::Contains("port 7000"));
	CHECK((*allowed)["bytes_out"] == 22);
	CHECK((*allowed)["bytes_in"] == 22);
	auto denied = h.record([](const Json &x) { return x.value("kind", "") == "tcp" && x.value("port", 0) == 7001; });
	REQUIRE(denied);
	CHECK((*denied)["action"] == "deny");
	CHECK((*denied)["host"] == ns);
	CHECK((*denied)["bytes_out"] == 0);
	CHECK((*denied)["bytes_in"] == 0);
	auto lookup = h.dnsRecord("echo.gvm.test", "A");
	REQUIRE(lookup);
	CHECK((*lookup)["action"] == "allow");
	CHECK((*lookup)["rule"] == "echo-service");
}

TEST_CASE("raw TCP to a server that speaks first: its banner arrives unasked, through CONNECT and transparently",
	  "[sandbox][system]")
{
	Harness h;
	const std::string port = std::to_string(h.up->tcpBannerPort());
	// The client sends nothing after the tunnel opens, as an SSH client
	// waits for the server's greeting.
	const std::string script = "import os, socket, urllib.parse\n"
				   "def greeting(s):\n"
				   "    s.settimeout(10)\n"
				   "    data = b''\n"
				   "    while not data.endswith(b'\\n'):\n"
				   "        chunk = s.recv(4096)\n"
				   "        if not chunk: break\n"
				   "        data += chunk\n"
				   "    return data.decode().strip()\n"
				   "proxy = urllib.parse.urlsplit(os.environ['HTTPS_PROXY'])\n"
				   "s = socket.create_connection((proxy.hostname, proxy.port), timeout=10)\n"
				   "s.sendall(b'CONNECT echo.gvm.test:" + port + " HTTP/1.1\\r\\nHost: echo.gvm.test\\r\\n\\r\\n')\n"
				   "head = b''\n"
				   "while not head.endswith(b'\\r\\n\\r\\n'):\n"
				   "    chunk = s.recv(1)\n" // a byte at a time: the greeting stays unread
				   "    if not chunk: break\n"
				   "    head += chunk\n"
				   "print(head.split(b'\\r\\n')[0].decode())\n"
				   "print('connect', greeting(s))\n"
				   "s.close()\n"
				   "ip = socket.gethostbyname('echo.gvm.test')\n"
				   "print('transparent', greeting(socket.create_connection((ip, " + port + "), timeout=10)))\n";
	RunResult r = h.launch({kPython, "-c", script});
	INFO(r.err << h.diagnostics());
	REQUIRE(r.status == 0);
	const std::string banner = std::string(kTcpBanner).substr(0, std::strlen(kTcpBanner) - 2);
	CHECK(r.out == "HTTP/1.1 200 Connection established\nconnect " + banner + "\ntransparent " + banner + "\n");

	for (const std::string &host : {std::string("echo.gvm.test"), h.up->address()}) {
		INFO(host);
		auto rec = h.record([&](const Json &x) {
			return x.value("kind", "") == "tcp" && x.value("host", "") == host &&
			       x.value("port", 0) == h.up->tcpBannerPort();
		});
		REQUIRE(rec);
		CHECK((*rec)["action"] == "allow");
		CHECK((*rec)["rule"] == "echo-service");
		CHECK((*rec)["bytes_out"] == 0);
		CHECK((*rec)["bytes_in"] == std::strlen(kTcpBanner));
	}
}

TEST_CASE("the agent runs as the caller, without capabilities, in its own namespaces, without gvmd", "[sandbox][system]")
{
	Harness h;
	// nobody must reach the socket by path (gvmd makes it 0660 root).
	REQUIRE(::chmod(h.runtime.c_str(), 0755) == 0);
	REQUIRE(::chmod(h.socket.c_str(), 0666) == 0);

	const std::string probe = "import os, socket\n"
				  "print('uid', os.getuid(), os.geteuid())\n"
				  "st = {}\n"
				  "for line in open('/proc/self/status'):\n"
				  "    k, _, v = line.partition(':')\n"
				  "    st[k] = v.strip()\n"
				  "print('caps', st['CapEff'], st['CapPrm'], st['CapBnd'], st['CapAmb'], 'nnp', st['NoNewPrivs'])\n"
				  "print('hostname', socket.gethostname())\n"
				  "pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
				  "print('procs', os.getpid(), ' '.join(str(p) for p in pids))\n"
				  "print('socket', os.path.exists(os.environ['GVMD_SOCKET']))\n"
				  "s = socket.socket(socket.AF_UNIX)\n"
				  "try:\n"
				  "    s.connect(os.environ['GVMD_SOCKET']); print('connect ok')\n"
				  "except OSError as e:\n"
				  "    print('connect', type(e).__name__)\n"
				  "r = os.environ['GVMD_RUNTIME']\n"
				  "print('runtime', os.listdir(r) if os.path.isdir(r) else 'absent')\n"
				  "print('audit', os.path.exists(os.environ['GVMD_STATE'] + '/audit/audit.jsonl'))\n"
				  "init = {}\n"
				  "for line in open('/proc/1/status'):\n"
				  "    k, _, v = line.partition(':')\n"
				  "    init[k] = v.strip()\n"
				  "print('init', init['Name'], init['CapEff'], init['CapBnd'], 'nnp', init['NoNewPrivs'])\n";
	auto check = [&](const RunResult &r, const std::string &uid) {
		INFO(r.out << r.err << h.diagnostics());
		REQUIRE(r.status == 0);
		std::string id = launchedId(r.err);
		REQUIRE(id.size() == 8);
		std::istringstream lines(r.out);
		std::vector<std::string> l;
		for (std::string line; std::getline(lines, line);)
			l.push_back(line);
		REQUIRE(l.size() == 9);
		CHECK(l[0] == "uid " + uid + " " + uid);
		CHECK(l[1] == "caps 0000000000000000 0000000000000000 0000000000000000 0000000000000000 nnp 1");
		CHECK(l[2] == "hostname gvm-" + id);
		// A pid namespace of its own: its init (1) and the agent, nothing
		// of the host's.
		std::istringstream procs(l[3]);
		std::string word;
		int self = 0;
		procs >> word >> self;
		std::vector<int> pids;
		for (int pid; procs >> pid;)
			pids.push_back(pid);
		CHECK(pids == std::vector<int>{1, self});
		CHECK(self < 10);
		CHECK(l[4] == "socket False");
		CHECK(l[5] == "connect FileNotFoundError");
		// gvmd's runtime directory is an empty tmpfs there; its audit log
		// cannot be seen.
		CHECK((l[6] == "runtime []" || l[6] == "runtime absent"));
		CHECK(l[7] == "audit False");
		// The sandbox's init keeps CAP_KILL (bit 5) only, to pass signals on.
		CHECK(l[8] == "init gvm-init 0000000000000020 0000000000000020 nnp 1");
	};
	const std::vector<std::string> env = {"env",   "GVMD_SOCKET=" + h.socket, "GVMD_RUNTIME=" + h.runtime,
					      "GVMD_STATE=" + h.state, kPython, "-c", probe};

	// As root: still no capabilities, no_new_privs.
	RunResult root = h.launch(env, {"--json"});
	check(root, "0");

	// As nobody (setpriv drops the test's root before gvmctl runs): the
	// agent is nobody too.
	std::vector<std::string> args = {"/usr/bin/setpriv", "--reuid=" + std::string(kNobody),
					 "--regid=" + std::string(kNobody), "--clear-groups",
					 "/usr/bin/env", "-C", "/", binaryFromEnv("GVM_GVMCTL"), "--socket", h.socket};
	for (const auto &a : h.launchArgs(env, {"--json"}))
		args.push_back(a);
	RunResult nobody = run(args, {}, std::chrono::seconds(60));
	check(nobody, kNobody);
	// gvmd took the identity from the socket (SO_PEERCRED), not from root.
	CHECK_THAT(h.log(), Catch::Contains("started as uid " + std::string(kNobody)));
}

TEST_CASE("exit status and stdout pass through as in cooperative mode", "[sandbox][system]")
{
	Harness h;
	RunResult seven = h.launch({"sh", "-c", "echo out-line; echo err-line >&2; exit 7"});
	CHECK(seven.status == 7);
	CHECK(seven.out == "out-line\n");
	CHECK_THAT(seven.err, Catch::Contains("err-line"));
	RunResult zero = h.launch({"true"});
	CHECK(zero.status == 0);
	CHECK(zero.out.empty());
	RunResult killed = h.launch({"sh", "-c", "kill -TERM $$"});
	CHECK(killed.status == 128 + SIGTERM);
	// The same command in cooperative mode gives the same.
	RunResult coop = h.launch({"sh", "-c", "echo out-line; exit 7"}, {"--cooperative"});
	CHECK(coop.status == 7);
	CHECK(coop.out == "out-line\n");
}

TEST_CASE("killing the worker leaves the agent with no network at all", "[sandbox][system]")
{
	Harness h;
	const std::string ready = h.dir.path() + "/agent-ready";
	const std::string go = h.dir.path() + "/agent-go";
	const std::string script = std::string(kDnsClient) +
				   "import os, ssl\n"
				   "ip = socket.gethostbyname('allowed.gvm.test')\n"
				   "def https_get():\n"
				   "    try:\n"
				   "        s = socket.create_connection((ip, 443), timeout=5)\n"
				   "    except ConnectionRefusedError:\n"
				   "        return 'refused'\n"
				   "    except ConnectionResetError:\n"
				   "        return 'reset'\n"
				   "    except socket.timeout:\n"
				   "        return 'timeout'\n"
				   "    except OSError as e:\n"
				   "        return 'error-' + str(e.errno)\n"
				   "    try:\n"
				   "        c = ssl.create_default_context().wrap_socket(s, server_hostname='allowed.gvm.test')\n"
				   "        c.sendall(b'GET / HTTP/1.1\\r\\nHost: allowed.gvm.test\\r\\nX-Test-Id: ' + sys.argv[3].encode() + b'\\r\\nConnection: close\\r\\n\\r\\n')\n"
				   "        data = b''\n"
				   "        while True:\n"
				   "            chunk = c.recv(4096)\n"
				   "            if not chunk: break\n"
				   "            data += chunk\n"
				   "        return 'ok ' + data.split(b'\\r\\n')[0].decode()\n"
				   "    except Exception as e:\n"
				   "        return 'connected-then-' + type(e).__name__\n"
				   "print('before', https_get(), dnsq('allowed.gvm.test'), flush=True)\n"
				   "open(sys.argv[1], 'w').close()\n"
				   "deadline = time.monotonic() + 60\n"
				   "while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:\n"
				   "    time.sleep(0.05)\n"
				   "t = time.monotonic()\n"
				   "r = https_get()\n"
				   "took = time.monotonic() - t\n"
				   "print('after', r, round(took, 1), dnsq('allowed.gvm.test'), flush=True)\n";
	const std::string log = h.dir.path() + "/agent.log";
	Child agent = h.launchInBackground(noProxy({kPython, "-c", script, ready, go, "worker-1"}), log);
	INFO(readFile(log) << h.diagnostics());
	REQUIRE(waitFor([&] { return ::access(ready.c_str(), F_OK) == 0 || !agent.running(); }, std::chrono::seconds(30)));
	REQUIRE(agent.running());
	CHECK(h.up->waitForRequests("worker-1", 1));

	Json boxes = h.sandboxes();
	REQUIRE(boxes.size() == 1);
	pid_t worker = boxes[0].value("worker_pid", 0);
	REQUIRE(worker > 0);
	// This gvmd's worker, not another test's.
	REQUIRE(parentOf(worker) == h.gvmd.pid());
	REQUIRE(::kill(worker, SIGKILL) == 0);
	REQUIRE(waitFor([&] { return processGone(worker); }));
	// gvmd notices and says so.
	CHECK(waitFor([&] { return h.log().find("the agent has no network now") != std::string::npos; }));

	writeText(go, "");
	auto status = agent.wait(std::chrono::seconds(30));
	REQUIRE(status);
	CHECK(*status == 0);
	std::string out = readFile(log);
	std::istringstream lines(out);
	std::string before, after;
	std::getline(lines, before);
	std::getline(lines, after);
	CHECK(before == "before ok HTTP/1.1 200 OK rcode=0 " + h.up->address());
	std::istringstream words(after);
	std::string tag, result, dns;
	double took = 0;
	words >> tag >> result >> took >> dns;
	CHECK(tag == "after");
	CHECK_THAT(result, Catch::Matches("refused|reset|timeout"));
	CHECK(took <= 5.5);
	CHECK_THAT(dns, Catch::Matches("no-answer|refused"));
	// Nothing reached nginx after the worker died.
	CHECK(h.up->countRequests("worker-1") == 1);
}

TEST_CASE("crash recovery: a killed gvmd takes its sandboxes along and a new one starts cleanly", "[sandbox][system]")
{
	Harness h;
	const std::string log = h.dir.path() + "/sleeper.log";
	Child sleeper = h.launchInBackground({"sleep", "600"}, log, {"--json"});
	std::string id;
	REQUIRE(waitFor(
		[&] {
			id = launchedId(readFile(log));
			return !id.empty();
		},
		std::chrono::seconds(20)));
	INFO("sandbox " << id << "\n" << readFile(log) << h.diagnostics());
	Json boxes = h.sandboxes();
	REQUIRE(boxes.size() == 1);
	REQUIRE(boxes[0]["id"] == id);
	pid_t agent = boxes[0].value("pid", 0);
	pid_t worker = boxes[0].value("worker_pid", 0);
	REQUIRE(agent > 0);
	REQUIRE(worker > 0);
	const std::string hostLink = "gvm" + id;
	REQUIRE(hasLink(hostLink));
	const std::string netns = netnsOf(agent);
	REQUIRE(!netns.empty());
	REQUIRE(netns != netnsOf(::getpid()));
	REQUIRE(!processesIn(netns).empty());
	const std::string sandboxDir = h.runtime + "/sandboxes/" + id;

	REQUIRE(h.gvmd.stop(SIGKILL, std::chrono::seconds(5)));
	// The agent's init dies with gvmd (PR_SET_PDEATHSIG), and with it every
	// process of the sandbox; the namespace and its veth pair go too.
	CHECK(waitFor([&] { return processGone(agent); }, std::chrono::seconds(5)));
	CHECK(waitFor([&] { return processGone(worker); }, std::chrono::seconds(5)));
	CHECK(waitFor([&] { return processesIn(netns).empty(); }, std::chrono::seconds(5)));
	CHECK(waitFor([&] { return !hasLink(hostLink); }, std::chrono::seconds(10)));
	// gvmctl lost gvmd: it says so and fails.
	auto status = sleeper.wait(std::chrono::seconds(10));
	REQUIRE(status);
	CHECK(*status == 1);

	// A new gvmd on the same directories starts cleanly and removes what
	// the old one left in its runtime directory.
	h.startGvmd();
	std::this_thread::sleep_for(std::chrono::milliseconds(500));
	CHECK(h.gvmd.running());
	CHECK(h.sandboxes().empty());
	RunResult st = h.gvmctl({"status"});
	CHECK(st.status == 0);
	CHECK_FALSE(hasLink("gvm" + id));
	CHECK_FALSE(hasLink("gvp" + id));
	CHECK(processesIn(netns).empty());
	CHECK(::access(sandboxDir.c_str(), F_OK) != 0);
	// And it works: a new sandbox reaches the upstream.
	RunResult r = h.launch(noProxy(curl({"https://allowed.gvm.test/"})));
	CHECK(r.out == "hello from allowed.gvm.test\n");
}

TEST_CASE("a sandbox that ends in the loop pass that stops gvmd is torn down before gvmd's parts go",
	  "[sandbox][system]")
{
	// A freed object's memory is overwritten at once (no per-thread
	// cache keeps it intact), so a use after free crashes instead of
	// passing unseen.
	Harness h;
	REQUIRE(h.gvmd.stop(SIGTERM));
	h.startGvmd({"MALLOC_PERTURB_=165", "GLIBC_TUNABLES=glibc.malloc.tcache_count=0"});
	INFO(h.diagnostics());

	// After one sandbox has come and gone, gvmd keeps one worker ready
	// for the next launch.
	RunResult first = h.launch({"true"});
	REQUIRE(first.status == 0);
	std::vector<pid_t> workers;
	REQUIRE(waitFor([&] {
		workers = childrenNamed(h.gvmd.pid(), "gvm-worker");
		return workers.size() == 1 && h.sandboxes().empty() && idleInEpoll(workers[0]);
	}));
	const pid_t worker = workers[0];

	// The next launch waits on that worker, which does not answer yet.
	REQUIRE(::kill(worker, SIGSTOP) == 0);
	REQUIRE(waitFor([&] { return stopped(worker); }));
	const std::string log = h.dir.path() + "/launch.log";
	Child launch = h.launchInBackground({"true"}, log);
	const std::string launching = "), worker " + std::to_string(worker) + "\n";
	REQUIRE(waitFor([&] { return h.log().find(launching) != std::string::npos; }));
	// Its client hangs up: gvmd now drops the sandbox when the worker
	// answers.
	REQUIRE(launch.stop(SIGKILL));
	REQUIRE(waitFor([&] {
		const std::string text = h.log();
		return text.find(" gone\n", text.find(launching)) != std::string::npos;
	}));
	// The next sandbox's network, made ahead on a thread of gvmd's, is
	// ready: two gvm links (the launching sandbox's and that one), and
	// every thread of gvmd asleep for a while. (A network still being
	// made would keep gvmd's address pool alive to the very end.)
	const std::regex sandboxLink(": gvm[0-9a-f]{8}@");
	auto sandboxLinks = [&] {
		const std::string all = links();
		return std::distance(std::sregex_iterator(all.begin(), all.end(), sandboxLink), std::sregex_iterator());
	};
	REQUIRE(waitFor([&] { return sandboxLinks() == 2; }));
	int asleep = 0;
	REQUIRE(waitFor([&] {
		asleep = allThreadsAsleep(h.gvmd.pid()) ? asleep + 1 : 0;
		return asleep >= 5;
	}));

	// The worker's answer and SIGTERM reach gvmd in one loop pass: the
	// sandbox is removed (its teardown deferred to the end of the pass)
	// and gvmd stops.
	REQUIRE(::kill(h.gvmd.pid(), SIGSTOP) == 0);
	REQUIRE(waitFor([&] { return stopped(h.gvmd.pid()); }));
	REQUIRE(::kill(worker, SIGCONT) == 0);
	REQUIRE(waitFor([&] { return idleInEpoll(worker); }));
	REQUIRE(::kill(h.gvmd.pid(), SIGTERM) == 0);
	REQUIRE(::kill(h.gvmd.pid(), SIGCONT) == 0);
	auto status = h.gvmd.wait(std::chrono::seconds(10));
	REQUIRE(status);
	CHECK(*status == 0);
	const std::string text = h.log();
	CHECK_THAT(text, Catch::Contains("the launching client went away"));
	CHECK_THAT(text, Catch::Contains("received Terminated, stopping"));
	CHECK(text.find("received Terminated") > text.find("the launching client went away"));
	CHECK(waitFor([&] { return processGone(worker); }));
	CHECK(waitFor([&] { return sandboxLinks() == 0; }));
}
