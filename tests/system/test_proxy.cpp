// SPDX-License-Identifier: Apache-2.0
//
// The governing proxy end to end: a real gvmd launches real clients (curl,
// python3 urllib and requests, git) in cooperative mode; they reach real
// nginx upstreams on loopback through the sandbox's proxy worker, which
// verifies nginx against the test CA (gvmd --upstream-ca). Each decision
// type is proved by what the client saw, what reached nginx, and the audit
// record. Names like api.gvm.test resolve to 127.0.0.1 through a private
// /etc/hosts in this test's own mount namespace.
#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <dirent.h>
#include <sys/stat.h>
#include <fstream>
#include <sstream>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "tests/support/process.h"
#include "tests/support/upstream.h"

using namespace gvm;
using namespace gvm::test;
using Json = nlohmann::json;

namespace {

void ensureHosts()
{
	static bool done = false;
	if (done)
		return;
	auto r = enterPrivateHosts({{"api.gvm.test", "127.0.0.1"},
				    {"denied.gvm.test", "127.0.0.1"},
				    {"other.gvm.test", "127.0.0.1"},
				    {"metadata.gvm.test", "169.254.169.254"}});
	REQUIRE(r);
	done = true;
}

void writeFile(const std::string &path, const std::string &text)
{
	std::ofstream(path) << text;
}

// The standard test policy: api.gvm.test is governed rule by rule,
// denied.gvm.test is denied, loopback upstreams are allowed.
std::string policyText(const std::string &mode = "enforce")
{
	return "version: 1\n"
	       "name: system-test\n"
	       "mode: " + mode + "\n"
	       "default: deny\n"
	       "upstream:\n"
	       "  allow_cidrs: [127.0.0.0/8]\n"
	       "rules:\n"
	       "  - name: no-mutations\n"
	       "    hosts: [api.gvm.test]\n"
	       "    path: '^/echo/graphql$'\n"
	       "    body: {json: query, regex: '^\\s*mutation'}\n"
	       "    action: deny\n"
	       "  - name: slow-path\n"
	       "    hosts: [api.gvm.test]\n"
	       "    path: '^/echo/delayed$'\n"
	       "    action: {delay: 800ms}\n"
	       "  - name: needs-approval\n"
	       "    hosts: [api.gvm.test]\n"
	       "    path: '^/echo/held'\n"
	       "    action: {hold: 3s}\n"
	       "  - name: limited\n"
	       "    hosts: [api.gvm.test]\n"
	       "    path: '^/echo/limited$'\n"
	       "    rate: 2/min\n"
	       "    action: allow\n"
	       "  - name: api\n"
	       "    hosts: [api.gvm.test, other.gvm.test, metadata.gvm.test]\n"
	       "    action: allow\n";
}

// One gvmd with its own socket and state, nginx upstreams, and a policy.
struct Harness {
	TempDir dir;
	std::optional<TestPki> pki;
	std::unique_ptr<NginxUpstream> up;
	std::string socket = dir.path() + "/run/gvmd.sock";
	std::string state = dir.path() + "/state";
	std::string policy = dir.path() + "/policy.yaml";
	Child gvmd;

	explicit Harness(const std::string &text = policyText())
	{
		ensureHosts();
		::mkdir((dir.path() + "/pki").c_str(), 0755);
		auto p = TestPki::create(dir.path() + "/pki");
		REQUIRE(p);
		pki.emplace(std::move(*p));
		auto u = NginxUpstream::create(*pki);
		REQUIRE(u);
		up = std::move(*u);
		writeFile(policy, text);
		gvmd = Child::start({binaryFromEnv("GVM_GVMD"), "--socket", socket, "--state-dir", state, "--runtime-dir",
				     dir.path() + "/run", "--upstream-ca", pki->caCert(), "--log-level", "debug"},
				    {"GVM_WORKER=" + binaryFromEnv("GVM_WORKER")}, dir.path() + "/gvmd.log");
		REQUIRE(waitFor([&] { return RawClient(socket).connected(); }));
	}

	RunResult gvmctl(std::vector<std::string> args, std::chrono::milliseconds timeout = std::chrono::seconds(60))
	{
		args.insert(args.begin(), {binaryFromEnv("GVM_GVMCTL"), "--socket", socket});
		return run(args, {}, timeout);
	}

	// `gvmctl launch --cooperative` of argv under the harness policy.
	RunResult launch(const std::vector<std::string> &argv, std::vector<std::string> flags = {},
			 std::chrono::milliseconds timeout = std::chrono::seconds(60))
	{
		std::vector<std::string> args = {"launch", "--cooperative", "--policy", policy};
		args.insert(args.end(), flags.begin(), flags.end());
		args.push_back("--");
		args.insert(args.end(), argv.begin(), argv.end());
		return gvmctl(args, timeout);
	}

	std::string url(const std::string &host, const std::string &path,
			UpstreamServer server = UpstreamServer::HttpsGood) const
	{
		return up->url(server, host, path);
	}

	// Every audit record so far (gvmd syncs within ~100 ms).
	std::vector<Json> audit(size_t atLeast = 0)
	{
		std::vector<Json> out;
		waitFor(
			[&] {
				out.clear();
				std::istringstream in(readFile(state + "/audit/audit.jsonl"));
				for (std::string line; std::getline(in, line);)
					if (auto j = Json::parse(line, nullptr, false); !j.is_discarded())
						out.push_back(j);
				return out.size() >= atLeast;
			},
			std::chrono::seconds(5));
		return out;
	}

	// The record whose path is `path` (the last one).
	std::optional<Json> record(const std::string &path, size_t atLeast = 1)
	{
		std::optional<Json> found;
		waitFor(
			[&] {
				for (const Json &r : audit(atLeast))
					if (r.value("path", "") == path)
						found = r;
				return found.has_value();
			},
			std::chrono::seconds(5));
		return found;
	}

	std::string log() { return readFile(dir.path() + "/gvmd.log"); }
};

std::vector<std::string> curl(const std::vector<std::string> &args)
{
	std::vector<std::string> argv = {"curl", "-sS", "--max-time", "30"};
	argv.insert(argv.end(), args.begin(), args.end());
	return argv;
}

} // namespace

TEST_CASE("allowed HTTPS requests reach nginx byte-exact and are recorded", "[proxy][system]")
{
	Harness h;
	std::string body = "{\"query\": \"query { viewer }\", \"bin\": \"\\u0001\\u00ff\"}";
	writeFile(h.dir.path() + "/body.json", body);
	RunResult r = h.launch(curl({"-H", "X-Test-Id: exact-1", "--data-binary", "@" + h.dir.path() + "/body.json",
				     h.url("api.gvm.test", "/echo/exact")}));
	INFO(r.err << h.log());
	REQUIRE(r.status == 0);
	auto reply = Json::parse(r.out, nullptr, false);
	REQUIRE(!reply.is_discarded());
	CHECK(reply["body_len"] == body.size());
	auto recorded = h.up->recordedRequest("exact-1");
	REQUIRE(recorded);
	CHECK(recorded->substr(recorded->size() - body.size()) == body);
	CHECK(h.up->waitForRequests("exact-1", 1));

	auto rec = h.record("/echo/exact");
	REQUIRE(rec);
	CHECK((*rec)["action"] == "allow");
	CHECK((*rec)["rule"] == "api");
	CHECK((*rec)["status"] == 200);
	CHECK((*rec)["host"] == "api.gvm.test");
	CHECK((*rec)["method"] == "POST");
	CHECK((*rec)["bytes_out"] == body.size());
	CHECK((*rec)["mode"] == "enforce");

	// The log as a whole verifies.
	RunResult v = h.gvmctl({"audit", "verify", h.state + "/audit/audit.jsonl"});
	CHECK(v.status == 0);
}

TEST_CASE("denied requests never reach upstream and get the 403 JSON", "[proxy][system]")
{
	Harness h;
	RunResult r = h.launch(curl({"-H", "X-Test-Id: denied-1", "-w", "\n%{http_code}", h.url("denied.gvm.test", "/echo/x")}));
	INFO(r.err << h.log());
	// CONNECT to a host nothing allows is refused before any TLS.
	CHECK(r.status != 0);
	CHECK_THAT(r.err, Catch::Contains("403"));
	CHECK(h.up->countRequests("denied-1") == 0);

	// Inside an allowed host, a request no rule allows: a 403 with the body.
	RunResult g = h.launch(curl({"-H", "X-Test-Id: mut-1", "-w", "\n%{http_code}", "-H", "Content-Type: application/json",
				     "--data", "{\"query\": \" mutation { drop }\"}", h.url("api.gvm.test", "/echo/graphql")}));
	INFO(g.err);
	REQUIRE(g.status == 0);
	auto nl = g.out.rfind('\n');
	CHECK(g.out.substr(nl + 1) == "403");
	auto body = Json::parse(g.out.substr(0, nl), nullptr, false);
	REQUIRE(!body.is_discarded());
	CHECK(body["error"] == "denied by policy");
	CHECK(body["rule"] == "no-mutations");
	CHECK(body["request_id"].get<std::string>().find('-') != std::string::npos);
	CHECK(body["sandbox"].get<std::string>().size() == 8);
	std::this_thread::sleep_for(std::chrono::milliseconds(300));
	CHECK(h.up->countRequests("mut-1") == 0);
	auto rec = h.record("/echo/graphql");
	REQUIRE(rec);
	CHECK((*rec)["action"] == "deny");
	CHECK((*rec)["status"] == 403);
	CHECK((*rec)["request_id"] == body["request_id"]);

	// The same path with a query instead of a mutation passes.
	RunResult q = h.launch(curl({"-w", "\n%{http_code}", "--data", "{\"query\": \"query { x }\"}",
				     h.url("api.gvm.test", "/echo/graphql")}));
	CHECK(q.out.substr(q.out.rfind('\n') + 1) == "200");
}

TEST_CASE("delay, rate limit and monitor mode", "[proxy][system]")
{
	Harness h;
	auto t0 = std::chrono::steady_clock::now();
	RunResult d = h.launch(curl({"-o", "/dev/null", "-w", "%{http_code}", h.url("api.gvm.test", "/echo/delayed")}));
	auto took = std::chrono::steady_clock::now() - t0;
	CHECK(d.out == "200");
	CHECK(took >= std::chrono::milliseconds(800));
	auto rec = h.record("/echo/delayed");
	REQUIRE(rec);
	CHECK((*rec)["action"] == "delay");
	CHECK((*rec)["latency_us"].get<int64_t>() >= 800000);

	std::string codes;
	RunResult l = h.launch({"sh", "-c",
				"for i in 1 2 3; do curl -sS -o /dev/null -w '%{http_code} ' " +
					h.url("api.gvm.test", "/echo/limited") + "; done"});
	CHECK(l.out == "200 200 429 ");
	size_t limited = 0;
	waitFor([&] {
		limited = 0;
		for (const Json &r : h.audit())
			limited += r.value("action", "") == "rate_limit";
		return limited > 0;
	});
	CHECK(limited == 1);

	// Monitor mode: the denied request goes through, recorded as "deny".
	writeFile(h.policy, policyText("monitor"));
	RunResult m = h.launch(curl({"-H", "X-Test-Id: mon-1", "-o", "/dev/null", "-w", "%{http_code}", "--data",
				     "{\"query\": \"mutation { x }\"}", h.url("api.gvm.test", "/echo/graphql")}));
	CHECK(m.out == "200");
	CHECK(h.up->waitForRequests("mon-1", 1));
	auto mon = h.record("/echo/graphql");
	REQUIRE(mon);
	CHECK((*mon)["action"] == "deny");
	CHECK((*mon)["mode"] == "monitor");
	CHECK((*mon)["status"] == 200);

	// --monitor on the command line does the same for an enforcing policy.
	writeFile(h.policy, policyText());
	RunResult m2 = h.launch(curl({"-o", "/dev/null", "-w", "%{http_code}", h.url("denied.gvm.test", "/")}),
				{"--monitor"});
	CHECK(m2.out == "200");
}

TEST_CASE("hold waits for gvmctl approve and times out into deny", "[proxy][system]")
{
	Harness h;
	// Approved by a person while it waits.
	Child agent = Child::start({binaryFromEnv("GVM_GVMCTL"), "--socket", h.socket, "launch", "--cooperative", "--policy",
				    h.policy, "--", "curl", "-sS", "-o", h.dir.path() + "/held.out", "-w", "%{http_code}",
				    "-H", "X-Test-Id: held-1", h.url("api.gvm.test", "/echo/held")},
				   {}, h.dir.path() + "/held.log");
	std::string id;
	REQUIRE(waitFor(
		[&] {
			RunResult p = h.gvmctl({"pending", "--json"});
			auto j = Json::parse(p.out, nullptr, false);
			if (j.is_discarded() || !j.contains("pending") || j["pending"].empty())
				return false;
			id = j["pending"][0]["request_id"];
			return true;
		},
		std::chrono::seconds(10)));
	CHECK(h.up->countRequests("held-1") == 0);
	RunResult a = h.gvmctl({"approve", id});
	INFO(a.err);
	CHECK(a.status == 0);
	auto status = agent.wait(std::chrono::seconds(10));
	REQUIRE(status);
	CHECK(*status == 0);
	CHECK(readFile(h.dir.path() + "/held.log").find("200") != std::string::npos);
	CHECK(h.up->waitForRequests("held-1", 1));

	// Nobody answers: denied after the hold's 3 s.
	auto t0 = std::chrono::steady_clock::now();
	RunResult t = h.launch(curl({"-o", "/dev/null", "-w", "%{http_code}", "-H", "X-Test-Id: held-2",
				     h.url("api.gvm.test", "/echo/held-2")}));
	CHECK(t.out == "403");
	CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::seconds(3));
	CHECK(h.up->countRequests("held-2") == 0);
	auto rec = h.record("/echo/held-2");
	REQUIRE(rec);
	CHECK((*rec)["action"] == "hold");
	CHECK((*rec)["status"] == 403);
	CHECK_THAT((*rec)["reason"].get<std::string>(), Catch::Contains("not approved within 3s"));

	// An unknown id is refused.
	RunResult u = h.gvmctl({"approve", "ffffffff-1"});
	CHECK(u.status == 1);
}

TEST_CASE("python urllib, requests and git work through the proxy", "[proxy][system]")
{
	Harness h;
	std::string url = h.url("api.gvm.test", "/echo/py");
	RunResult u = h.launch({"python3", "-c",
				"import urllib.request,sys; r=urllib.request.urlopen(sys.argv[1]); print(r.status)", url});
	INFO(u.err);
	CHECK(u.out == "200\n");
	RunResult rq = h.launch({"python3", "-c",
				 "import requests,sys; r=requests.post(sys.argv[1], json={'a': 1}); print(r.status_code, r.json()['body_len'])",
				 url});
	INFO(rq.err);
	CHECK(rq.out == "200 8\n");
	RunResult rd = h.launch({"python3", "-c",
				 "import requests,sys; r=requests.post(sys.argv[1], json={'query': 'mutation { x }'}); print(r.status_code, r.json()['error'])",
				 h.url("api.gvm.test", "/echo/graphql")});
	CHECK(rd.out == "403 denied by policy\n");

	// git over HTTPS (dumb protocol, served by nginx as files).
	std::string files = h.up->prefix() + "/files";
	RunResult init = run({"/bin/sh", "-c",
			      "set -e; cd " + h.dir.path() + " && git init -q src && cd src && git -c user.name=t -c user.email=t@t "
			      "commit -q --allow-empty -m governed && git clone -q --bare . " + files + "/repo.git && "
			      "cd " + files + "/repo.git && git update-server-info && chmod -R a+rX " + files});
	REQUIRE(init.status == 0);
	RunResult g = h.launch({"git", "clone", "-q", h.url("api.gvm.test", "/file/repo.git"), h.dir.path() + "/clone"});
	INFO(g.err << h.log());
	CHECK(g.status == 0);
	RunResult logged = run({"/usr/bin/git", "-C", h.dir.path() + "/clone", "log", "--format=%s"});
	CHECK(logged.out == "governed\n");
}

TEST_CASE("SSE streams event by event; WebSocket echoes; 100 MiB streams in bounded memory", "[proxy][system]")
{
	Harness h;
	// Each event must arrive on its own, ~400 ms apart, not at the end.
	RunResult s = h.launch({"python3", "-c",
				"import requests,sys,time\n"
				"t=time.monotonic(); r=requests.get(sys.argv[1], stream=True)\n"
				"for line in r.iter_lines():\n"
				"    if line: print(round(time.monotonic()-t,2), line.decode(), flush=True)\n",
				h.url("api.gvm.test", "/sse?n=3&delay_ms=400")});
	INFO(s.err << s.out);
	std::istringstream lines(s.out);
	std::vector<double> times;
	double t;
	std::string word;
	while (lines >> t && std::getline(lines, word))
		times.push_back(t);
	REQUIRE(times.size() == 3);
	CHECK(times[1] - times[0] >= 0.3);
	CHECK(times[2] - times[1] >= 0.3);

	// WebSocket: handshake, one masked text frame, its echo.
	std::string ws = "import socket,ssl,os,sys,base64,urllib.parse\n"
			 "u=urllib.parse.urlparse(sys.argv[1]); p=urllib.parse.urlparse(os.environ['HTTPS_PROXY'])\n"
			 "s=socket.create_connection((p.hostname,p.port))\n"
			 "s.sendall(f'CONNECT {u.hostname}:{u.port} HTTP/1.1\\r\\nHost: {u.hostname}:{u.port}\\r\\n\\r\\n'.encode())\n"
			 "assert s.recv(4096).startswith(b'HTTP/1.1 200')\n"
			 "c=ssl.create_default_context(cafile=os.environ['SSL_CERT_FILE']).wrap_socket(s,server_hostname=u.hostname)\n"
			 "k=base64.b64encode(os.urandom(16)).decode()\n"
			 "c.sendall(f'GET /ws HTTP/1.1\\r\\nHost: {u.hostname}:{u.port}\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: {k}\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n'.encode())\n"
			 "h=b''\n"
			 "while b'\\r\\n\\r\\n' not in h: h+=c.recv(1)\n"
			 "assert h.startswith(b'HTTP/1.1 101'), h\n"
			 "m=b'governed echo'; mask=os.urandom(4)\n"
			 "c.sendall(bytes([0x81,0x80|len(m)])+mask+bytes(b^mask[i%4] for i,b in enumerate(m)))\n"
			 "f=c.recv(2); d=c.recv(f[1]&0x7f); print(d.decode())\n";
	RunResult w = h.launch({"python3", "-c", ws, h.url("api.gvm.test", "/ws")});
	INFO(w.err << h.log());
	CHECK(w.out == "governed echo\n");

	// 100 MiB through the worker: every byte, and the worker's peak memory
	// stays far below the size of the download.
	std::string out = h.dir.path() + "/big.log";
	Child big = Child::start({binaryFromEnv("GVM_GVMCTL"), "--socket", h.socket, "launch", "--cooperative", "--policy",
				  h.policy, "--", "curl", "-sS", "--limit-rate", "40M", "-o", "/dev/null", "-w",
				  "%{http_code} %{size_download}", h.url("api.gvm.test", "/file/100M")},
				 {}, out);
	long peakKb = 0;
	std::optional<int> status;
	for (int i = 0; i < 1200 && !status; ++i) {
		RunResult ps = h.gvmctl({"ps", "--json"});
		auto j = Json::parse(ps.out, nullptr, false);
		if (!j.is_discarded() && j.contains("sandboxes"))
			for (const Json &sb : j["sandboxes"]) {
				std::istringstream st(readFile("/proc/" + std::to_string(sb.value("worker_pid", 0)) + "/status"));
				for (std::string line; std::getline(st, line);)
					if (line.rfind("VmHWM:", 0) == 0)
						peakKb = std::max(peakKb, std::stol(line.substr(6)));
			}
		status = big.wait(std::chrono::milliseconds(100));
	}
	REQUIRE(status);
	CHECK(*status == 0);
	CHECK(readFile(out).find("200 104857600") != std::string::npos);
	INFO("worker peak RSS " << peakKb << " KiB");
	CHECK(peakKb > 0);
	CHECK(peakKb < 32 * 1024);
	auto rec = h.record("/file/100M");
	REQUIRE(rec);
	CHECK((*rec)["bytes_in"] == 104857600);
}

namespace {

// A python3 client speaking raw bytes to the sandbox's proxy: helpers
// shared by the negative tests (the proxy URL comes from HTTPS_PROXY).
const char kRawClient[] = R"PY(
import os, socket, ssl, sys, urllib.parse
p = urllib.parse.urlparse(os.environ["HTTPS_PROXY"])
def proxy():
    return socket.create_connection((p.hostname, p.port), timeout=20)
def status_of(s):
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            return "closed"
        data += chunk
    return data.split(b" ")[1].decode()
def tunnel(host, port, sni):
    s = proxy()
    s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    assert status_of(s) == "200"
    ctx = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    ctx.check_hostname = False
    return ctx.wrap_socket(s, server_hostname=sni)
)PY";

} // namespace

TEST_CASE("request smuggling vectors get 400 and nothing reaches upstream", "[proxy][system]")
{
	Harness h;
	std::string authority = "api.gvm.test:" + std::to_string(h.up->port(UpstreamServer::HttpPlain));
	std::string script = std::string(kRawClient) +
			     "a = sys.argv[1]\n"
			     "vectors = [\n"
			     " 'Content-Length: 5\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n0\\r\\n\\r\\n',\n"
			     " 'Content-Length: 5\\r\\nContent-Length: 6\\r\\n\\r\\nhello',\n"
			     " 'Content-Length: +5\\r\\n\\r\\nhello',\n"
			     " 'X-Folded: a\\r\\n b\\r\\nContent-Length: 0\\r\\n\\r\\n',\n"
			     " 'X-Bare: a\\rb\\r\\n\\r\\n',\n"
			     " 'Transfer-Encoding: chunked, identity\\r\\n\\r\\n0\\r\\n\\r\\n',\n"
			     " 'X-Big: ' + 'x' * 70000 + '\\r\\n\\r\\n',\n"
			     "]\n"
			     "for i, v in enumerate(vectors):\n"
			     "    s = proxy()\n"
			     "    s.sendall(f'POST http://{a}/echo/smuggle HTTP/1.1\\r\\nHost: {a}\\r\\nX-Test-Id: smuggle-{i}\\r\\n'.encode() + v.encode())\n"
			     "    print(status_of(s), end=' ')\n";
	RunResult r = h.launch({"python3", "-c", script, authority});
	INFO(r.err << h.log());
	// 431 for the oversized header section, 400 for the others.
	CHECK(r.out == "400 400 400 400 400 400 431 ");
	std::this_thread::sleep_for(std::chrono::milliseconds(500));
	for (int i = 0; i < 7; ++i)
		CHECK(h.up->countRequests("smuggle-" + std::to_string(i)) == 0);
	size_t malformed = 0;
	for (const Json &rec : h.audit())
		malformed += rec.value("reason", "").rfind("malformed request", 0) == 0;
	CHECK(malformed == 7);
}

TEST_CASE("SNI/Host mismatch (domain fronting) is denied", "[proxy][system]")
{
	Harness h;
	std::string port = std::to_string(h.up->port(UpstreamServer::HttpsGood));
	std::string script = std::string(kRawClient) +
			     "port = int(sys.argv[1])\n"
			     "s = tunnel('api.gvm.test', port, 'api.gvm.test')\n"
			     "s.sendall(f'GET /echo/front HTTP/1.1\\r\\nHost: other.gvm.test:{port}\\r\\nX-Test-Id: front-1\\r\\n\\r\\n'.encode())\n"
			     "print(status_of(s), end=' ')\n"
			     "s = tunnel('api.gvm.test', port, 'other.gvm.test')\n"
			     "s.sendall(f'GET /echo/front HTTP/1.1\\r\\nHost: other.gvm.test:{port}\\r\\nX-Test-Id: front-2\\r\\n\\r\\n'.encode())\n"
			     "print(status_of(s), end=' ')\n"
			     "s = tunnel('api.gvm.test', port, 'api.gvm.test')\n"
			     "s.sendall(f'GET /echo/front HTTP/1.1\\r\\nHost: api.gvm.test:{port}\\r\\nX-Test-Id: front-3\\r\\n\\r\\n'.encode())\n"
			     "print(status_of(s), end='')\n";
	RunResult r = h.launch({"python3", "-c", script, port});
	INFO(r.err << h.log());
	CHECK(r.out == "403 403 200");
	CHECK(h.up->waitForRequests("front-3", 1));
	CHECK(h.up->countRequests("front-1") == 0);
	CHECK(h.up->countRequests("front-2") == 0);
}

TEST_CASE("upstreams with bad certificates fail closed with a 502 and a reason", "[proxy][system]")
{
	Harness h;
	struct Case {
		UpstreamServer server;
		const char *reason;
	};
	for (Case c : {Case{UpstreamServer::HttpsWrongName, "Hostname mismatch"},
		       Case{UpstreamServer::HttpsExpired, "certificate has expired"},
		       Case{UpstreamServer::HttpsUntrusted, "unable to get local issuer certificate"}}) {
		std::string path = std::string("/echo/") + toString(c.server);
		RunResult r = h.launch(curl({"-w", "\n%{http_code}", h.url("api.gvm.test", path, c.server)}));
		INFO(toString(c.server) << ": " << r.out << r.err);
		CHECK(r.out.substr(r.out.rfind('\n') + 1) == "502");
		auto rec = h.record(path);
		REQUIRE(rec);
		CHECK((*rec)["status"] == 502);
		CHECK_THAT((*rec)["reason"].get<std::string>(), Catch::Contains("verification failed") &&
									Catch::Contains(c.reason, Catch::CaseSensitive::No));
	}
	// The guard: an allowed name that resolves to the metadata address.
	RunResult m = h.launch(curl({"-w", "\n%{http_code}", "http://metadata.gvm.test/latest/meta-data/"}));
	CHECK(m.out.substr(m.out.rfind('\n') + 1) == "403");
	auto rec = h.record("/latest/meta-data/");
	REQUIRE(rec);
	CHECK_THAT((*rec)["reason"].get<std::string>(), Catch::Contains("169.254.169.254") && Catch::Contains("link-local"));
}

TEST_CASE("slowloris headers time out; 1000 connections leave no descriptor behind", "[proxy][system]")
{
	Harness h;
	std::string slow = std::string(kRawClient) +
			   "import select, time\n"
			   "s = proxy(); t = time.monotonic()\n"
			   "s.sendall(b'GET http://api.gvm.test/ HTTP/1.1\\r\\nHost: api.gvm.test\\r\\n')\n"
			   "for i in range(30):\n"
			   "    if select.select([s], [], [], 1)[0]:\n"
			   "        break\n"
			   "    s.sendall(b'X')\n"
			   "print(status_of(s), round(time.monotonic() - t))\n";
	RunResult r = h.launch({"python3", "-c", slow}, {}, std::chrono::seconds(60));
	INFO(r.err);
	std::istringstream words(r.out);
	std::string status;
	int seconds = 0;
	words >> status >> seconds;
	CHECK(status == "408");
	CHECK(seconds >= 9);
	CHECK(seconds <= 15);

	// 1000 tunnels at once, then all closed: the worker's descriptors
	// go back to what they were.
	std::string many = std::string(kRawClient) +
			   "import resource, time\n"
			   "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
			   "resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))\n"
			   "time.sleep(1)\n"
			   "socks = []\n"
			   "for i in range(1000):\n"
			   "    s = proxy(); s.sendall(f'CONNECT api.gvm.test:{sys.argv[1]} HTTP/1.1\\r\\nHost: api.gvm.test:{sys.argv[1]}\\r\\n\\r\\n'.encode()); socks.append(s)\n"
			   "ok = sum(status_of(s) == '200' for s in socks)\n"
			   "print(ok, flush=True)\n"
			   "time.sleep(2)\n"
			   "for s in socks: s.close()\n"
			   "time.sleep(3)\n";
	Child agent = Child::start({binaryFromEnv("GVM_GVMCTL"), "--socket", h.socket, "launch", "--cooperative", "--policy",
				    h.policy, "--", "python3", "-c", many,
				    std::to_string(h.up->port(UpstreamServer::HttpsGood))},
				   {}, h.dir.path() + "/many.log");
	auto fds = [](int pid) {
		size_t n = 0;
		if (DIR *d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
			while (::readdir(d))
				++n;
			::closedir(d);
		}
		return n;
	};
	int worker = 0;
	size_t before = 0, peak = 0, after = 0;
	std::optional<int> status2;
	for (int i = 0; i < 400 && !status2; ++i) {
		if (!worker) {
			RunResult ps = h.gvmctl({"ps", "--json"});
			auto j = Json::parse(ps.out, nullptr, false);
			if (!j.is_discarded() && j.contains("sandboxes") && !j["sandboxes"].empty()) {
				worker = j["sandboxes"][0].value("worker_pid", 0);
				before = fds(worker);
			}
		} else {
			size_t now = fds(worker);
			if (now > 0) {
				peak = std::max(peak, now);
				after = now;
			}
		}
		status2 = agent.wait(std::chrono::milliseconds(50));
	}
	REQUIRE(status2);
	INFO(readFile(h.dir.path() + "/many.log") << " before " << before << " peak " << peak << " after " << after);
	CHECK(*status2 == 0);
	CHECK(readFile(h.dir.path() + "/many.log").find("1000") != std::string::npos);
	CHECK(peak >= before + 1000);
	CHECK(after <= before + 2);
}
