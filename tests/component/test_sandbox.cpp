// SPDX-License-Identifier: Apache-2.0
//
// Cooperative sandboxes through the real gvmd and gvm-worker: sandbox.launch
// with the agent's stdio passed over the socket, the agent's environment and
// exit status, listing, signalling and stopping, policy reload, decision
// subscriptions, held requests, and failing closed when the worker dies.
// Runs as whatever user runs the tests (gvmd launches for its own uid).
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <deque>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/fd_passing.h"
#include "common/json_rpc.h"
#include "common/unique_fd.h"
#include "common/loop.h"
#include "daemon/decision_subscribers.h"
#include "daemon/rpc_server.h"
#include "daemon/sandbox.h"
#include "tests/support/process.h"

using namespace gvm;
using namespace gvm::test;
using namespace std::chrono_literals;

namespace {

const char kPolicy[] = "version: 1\nname: test\ndefault: deny\n";
const char kPolicyB[] = "version: 1\nname: b\ndefault: allow\n";
const char kBroken[] = "version: 1\nname: broken\nrules:\n  - name: r\n    hots: [x]\n    action: allow\n";

// gvmd on a private socket, runtime and state directory; it finds
// gvm-worker through $GVM_WORKER, as meson sets it.
struct Gvmd {
	TempDir dir;
	std::string socket = dir.path() + "/run/gvmd.sock";
	std::string runtimeDir = dir.path() + "/run";
	std::string stateDir = dir.path() + "/state";
	std::string log = dir.path() + "/gvmd.log";
	Child process;

	// `before` runs before gvmd starts (to seed its directories).
	explicit Gvmd(const std::function<void(const Gvmd &)> &before = {})
	{
		if (before)
			before(*this);
		process = Child::start({binaryFromEnv("GVM_GVMD"), "--socket", socket, "--state-dir", stateDir,
					"--runtime-dir", runtimeDir, "--log-level", "debug"},
				       {}, log);
		REQUIRE(waitFor([&] { return RawClient(socket).connected(); }));
	}

	std::string logText() const
	{
		std::ifstream in(log);
		std::stringstream s;
		s << in.rdbuf();
		return s.str();
	}
};

// A client that can pass descriptors and keeps the notifications that
// arrive while it waits for an answer.
class Client
{
public:
	explicit Client(const std::string &socket) : raw_(socket) {}
	bool connected() const { return raw_.connected(); }

	int64_t send(const std::string &method, const rpc::Json &params, const std::vector<int> &fds = {})
	{
		int64_t id = next_++;
		std::string line = rpc::encodeRequest(id, method, params);
		size_t sent = 0;
		if (!fds.empty()) {
			auto r = sendWithFds(raw_.fd(), line, fds);
			REQUIRE(r);
			sent = *r;
		}
		REQUIRE(raw_.sendRaw(std::string_view(line).substr(sent)));
		return id;
	}

	// The answer to request `id`; notifications read meanwhile are kept.
	rpc::Json reply(int64_t id, std::chrono::milliseconds timeout = 20s)
	{
		auto deadline = std::chrono::steady_clock::now() + timeout;
		for (;;) {
			auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
											  std::chrono::steady_clock::now());
			REQUIRE(left.count() > 0);
			auto line = raw_.readLine(left);
			REQUIRE(line);
			auto msg = rpc::parseJson(*line);
			REQUIRE(msg);
			if (msg->contains("method")) {
				notes_.push_back(std::move(*msg));
				continue;
			}
			if ((*msg)["id"] == id)
				return *msg;
		}
	}

	rpc::Json call(const std::string &method, const rpc::Json &params = rpc::Json::object(),
		       const std::vector<int> &fds = {})
	{
		return reply(send(method, params, fds));
	}

	// The next notification of this method, or nullopt after the timeout.
	std::optional<rpc::Json> notification(const std::string &method, std::chrono::milliseconds timeout = 20s)
	{
		auto deadline = std::chrono::steady_clock::now() + timeout;
		for (;;) {
			for (auto it = notes_.begin(); it != notes_.end(); ++it) {
				if ((*it)["method"] == method) {
					rpc::Json n = std::move(*it);
					notes_.erase(it);
					return n;
				}
			}
			auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
											  std::chrono::steady_clock::now());
			if (left.count() <= 0)
				return std::nullopt;
			auto line = raw_.readLine(left);
			if (!line)
				return std::nullopt;
			auto msg = rpc::parseJson(*line);
			REQUIRE(msg);
			notes_.push_back(std::move(*msg));
		}
	}

	size_t unreadNotifications() const { return notes_.size(); }
	int fd() const { return raw_.fd(); }

private:
	RawClient raw_;
	int64_t next_ = 1;
	std::deque<rpc::Json> notes_;
};

// The agent's stdin (/dev/null), stdout and stderr (pipes the test reads).
struct Stdio {
	UniqueFd in;
	UniqueFd outRead, outWrite;
	UniqueFd errRead, errWrite;

	Stdio()
	{
		in.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
		int p[2];
		REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
		outRead.reset(p[0]);
		outWrite.reset(p[1]);
		REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
		errRead.reset(p[0]);
		errWrite.reset(p[1]);
	}

	std::vector<int> fds() const { return {in.get(), outWrite.get(), errWrite.get()}; }
	// Once gvmd has its copies: the pipes then end when the agent does.
	void sent()
	{
		outWrite.reset();
		errWrite.reset();
	}
};

// Everything from fd until EOF (or the timeout).
std::string readAll(int fd, std::chrono::milliseconds timeout = 20s)
{
	std::string out;
	auto deadline = std::chrono::steady_clock::now() + timeout;
	for (;;) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
		if (left.count() <= 0)
			return out;
		pollfd pfd{fd, POLLIN, 0};
		if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
			continue;
		char buf[4096];
		ssize_t n = ::read(fd, buf, sizeof(buf));
		if (n <= 0)
			return out;
		out.append(buf, static_cast<size_t>(n));
	}
}

std::vector<std::string> lines(const std::string &text)
{
	std::vector<std::string> out;
	std::istringstream in(text);
	for (std::string l; std::getline(in, l);)
		out.push_back(l);
	return out;
}

std::vector<std::string> baseEnv()
{
	return {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/", "LANG=C"};
}

rpc::Json launchParams(const std::vector<std::string> &argv, const std::string &cwd,
		       std::vector<std::string> env = baseEnv())
{
	return {{"argv", argv},
		{"env", env},
		{"cwd", cwd},
		{"policy_text", kPolicy},
		{"policy_file", "test.yaml"},
		{"cooperative", true},
		{"monitor", false},
		{"tty", false}};
}

// Launches and returns the result (REQUIREs success).
rpc::Json launch(Client &c, Stdio &io, const rpc::Json &params)
{
	int64_t id = c.send("sandbox.launch", params, io.fds());
	io.sent();
	rpc::Json reply = c.reply(id);
	INFO(reply.dump());
	REQUIRE(reply.contains("result"));
	return reply["result"];
}

rpc::Json errorOf(const rpc::Json &reply)
{
	INFO(reply.dump());
	REQUIRE(reply.contains("error"));
	return reply["error"];
}

int proxyPort(const std::string &proxyUrl)
{
	return std::stoi(proxyUrl.substr(proxyUrl.rfind(':') + 1));
}

// connect() to 127.0.0.1:port; 0 or the errno.
int connectLoopback(int port)
{
	UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	sockaddr_in addr{};
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = htons(static_cast<uint16_t>(port));
	return ::connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0 ? 0 : errno;
}

rpc::Json listed(Client &c, const std::string &id)
{
	rpc::Json reply = c.call("sandbox.list", {{"all", true}});
	INFO(reply.dump());
	REQUIRE(reply.contains("result"));
	for (auto &s : reply["result"]["sandboxes"])
		if (s["id"] == id)
			return s;
	return nullptr;
}

// Running (a zombie nobody reaped yet does not count).
bool processAlive(pid_t pid)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
	std::string stat;
	if (!std::getline(in, stat))
		return false;
	size_t paren = stat.rfind(')');
	return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

} // namespace

TEST_CASE("a cooperative agent runs as the caller with the proxy in its environment", "[sandbox]")
{
	Gvmd d;
	Client c(d.socket);
	REQUIRE(c.connected());
	Stdio io;
	// The agent gets the caller's umask (read from the kernel).
	const mode_t savedUmask = ::umask(027);
	std::vector<std::string> env = baseEnv();
	env.insert(env.end(), {"NO_PROXY=example.com", "no_proxy=example.com", "HTTPS_PROXY=http://elsewhere:1",
			       "FOO=bar"});
	rpc::Json r = launch(c, io,
			     launchParams({"/bin/sh", "-c",
					   "echo $HTTPS_PROXY; echo $SSL_CERT_FILE; pwd; "
					   "echo \"$NO_PROXY|$no_proxy|$FOO|$GVM_SANDBOX|$HTTP_PROXY|$all_proxy|$CURL_CA_BUNDLE\"; "
					   "id -u; umask; exit 7"},
					  d.dir.path(), env));
	::umask(savedUmask);

	const std::string id = r["sandbox"];
	CHECK(daemon::isSandboxId(id));
	CHECK(r["name"] == "sh");
	CHECK(r["pid"].get<int64_t>() > 0);
	const std::string proxy = r["proxy"];
	CHECK_THAT(proxy, Catch::StartsWith("http://127.0.0.1:"));
	CHECK(proxyPort(proxy) > 0);
	const std::string bundle = r["ca_bundle"];
	CHECK(bundle == d.runtimeDir + "/sandboxes/" + id + "/ca-bundle.pem");
	CHECK(r["policy"] == "test");
	CHECK(r["sha256"].get<std::string>().size() == 64);
	CHECK(r["mode"] == "enforce");

	auto out = lines(readAll(io.outRead.get()));
	REQUIRE(out.size() == 6);
	CHECK(out[0] == proxy);
	CHECK(out[1] == bundle);
	CHECK(out[2] == d.dir.path());
	CHECK(out[3] == "||bar|" + id + "|" + proxy + "|" + proxy + "|" + bundle);
	CHECK(out[4] == std::to_string(::getuid()));
	CHECK(out[5] == "0027");

	auto exited = c.notification("sandbox.exited");
	REQUIRE(exited);
	auto &p = (*exited)["params"];
	CHECK(p["sandbox"] == id);
	CHECK(p["status"] == 7);
	CHECK(p["signal"].is_null());
	CHECK(p["exit_code"] == 7);

	// Gone with its agent: its directory, its listing, its worker's port.
	CHECK(waitFor([&] { return !std::filesystem::exists(d.runtimeDir + "/sandboxes/" + id); }));
	CHECK(listed(c, id).is_null());
	CHECK(c.call("daemon.status")["result"]["sandboxes"] == 0);
	CHECK(waitFor([&] { return connectLoopback(proxyPort(proxy)) == ECONNREFUSED; }));
}

TEST_CASE("an agent killed by a signal exits with 128+N", "[sandbox]")
{
	Gvmd d;
	Client c(d.socket);
	Stdio io;
	rpc::Json r = launch(c, io, launchParams({"/bin/sh", "-c", "kill -TERM $$"}, "/"));
	auto exited = c.notification("sandbox.exited");
	REQUIRE(exited);
	auto &p = (*exited)["params"];
	CHECK(p["sandbox"] == r["sandbox"]);
	CHECK(p["status"].is_null());
	CHECK(p["signal"] == SIGTERM);
	CHECK(p["exit_code"] == 128 + SIGTERM);
}

TEST_CASE("a command that cannot run is reported precisely and leaves nothing behind", "[sandbox]")
{
	Gvmd d;
	Client c(d.socket);

	{
		Stdio io;
		int64_t id = c.send("sandbox.launch", launchParams({"gvm-no-such-command"}, "/"), io.fds());
		io.sent();
		auto e = errorOf(c.reply(id));
		CHECK(e["message"] == "cannot run 'gvm-no-such-command': No such file or directory");
	}
	{
		Stdio io;
		int64_t id = c.send("sandbox.launch", launchParams({"/nonexistent/tool"}, "/"), io.fds());
		io.sent();
		CHECK(errorOf(c.reply(id))["message"] == "cannot run '/nonexistent/tool': No such file or directory");
	}
	{
		Stdio io;
		int64_t id = c.send("sandbox.launch", launchParams({"true"}, d.dir.path() + "/missing"), io.fds());
		io.sent();
		CHECK(errorOf(c.reply(id))["message"] == "cannot enter working directory " + d.dir.path() +
								  "/missing as uid " + std::to_string(::getuid()) +
								  ": No such file or directory");
	}
	{
		// Found in PATH, but not executable.
		std::string script = d.dir.path() + "/not-executable";
		std::ofstream(script) << "#!/bin/sh\n";
		REQUIRE(::chmod(script.c_str(), 0644) == 0);
		Stdio io;
		auto params = launchParams({"not-executable"}, "/", {"PATH=" + d.dir.path()});
		int64_t id = c.send("sandbox.launch", params, io.fds());
		io.sent();
		// Even root cannot execute a file without any x bit.
		CHECK(errorOf(c.reply(id))["message"] == "cannot run 'not-executable': Permission denied");
	}

	CHECK(c.call("sandbox.list")["result"]["sandboxes"].empty());
	CHECK(c.notification("sandbox.exited", 300ms) == std::nullopt);
	std::error_code ec;
	CHECK(std::filesystem::is_empty(d.runtimeDir + "/sandboxes", ec));
	// gvmd reaped every failed child.
	CHECK(c.call("daemon.status")["result"]["sandboxes"] == 0);
}

TEST_CASE("sandbox.launch refuses malformed requests", "[sandbox]")
{
	Gvmd d;
	Client c(d.socket);

	Stdio io;
	if (::geteuid() != 0) {
		// Network namespaces need root; the system suite runs sandbox mode.
		auto params = launchParams({"true"}, "/");
		params["cooperative"] = false;
		auto e = errorOf(c.call("sandbox.launch", params, io.fds()));
		CHECK(e["code"] == rpc::kServerError);
		CHECK_THAT(e["message"].get<std::string>(), Catch::StartsWith("sandbox mode needs gvmd to run as root"));
	}

	auto noFds = errorOf(c.call("sandbox.launch", launchParams({"true"}, "/")));
	CHECK(noFds["code"] == rpc::kInvalidParams);
	CHECK_THAT(noFds["message"].get<std::string>(), Catch::Contains("exactly 3 file descriptors"));

	auto emptyArgv = errorOf(c.call("sandbox.launch", launchParams({}, "/"), io.fds()));
	CHECK(emptyArgv["code"] == rpc::kInvalidParams);

	auto relative = errorOf(c.call("sandbox.launch", launchParams({"true"}, "tmp"), io.fds()));
	CHECK(relative["code"] == rpc::kInvalidParams);

	auto badPolicy = launchParams({"true"}, "/");
	badPolicy["policy_text"] = kBroken;
	badPolicy["policy_file"] = "new.yaml";
	auto policyError = errorOf(c.call("sandbox.launch", badPolicy, io.fds()));
	CHECK(policyError["code"] == rpc::kPolicyError);
	CHECK_THAT(policyError["message"].get<std::string>(), Catch::Contains("new.yaml:5:5:"));

	CHECK(c.call("sandbox.list")["result"]["sandboxes"].empty());
	// The connection survives all of it.
	CHECK(c.call("daemon.status").contains("result"));
}

TEST_CASE("running sandboxes are listed, signalled and stopped", "[sandbox]")
{
	Gvmd d;
	Client c(d.socket);
	Stdio io1, io2;
	auto p1 = launchParams({"sleep", "60"}, "/");
	p1["name"] = "sleeper";
	rpc::Json a = launch(c, io1, p1);
	rpc::Json b = launch(c, io2, launchParams({"sleep", "61"}, "/"));
	const std::string idA = a["sandbox"], idB = b["sandbox"];
	CHECK(idA != idB);

	rpc::Json s = listed(c, idA);
	REQUIRE(s.is_object());
	CHECK(s["name"] == "sleeper");
	CHECK(s["uid"] == ::getuid());
	CHECK(s["pid"] == a["pid"]);
	CHECK(s["policy"] == "test");
	CHECK(s["sha256"] == a["sha256"]);
	CHECK(s["mode"] == "enforce");
	CHECK(s["cooperative"] == true);
	CHECK(s["command"] == rpc::Json({"sleep", "60"}));
	CHECK(s["proxy"] == a["proxy"]);
	CHECK(s["state"] == "running");
	CHECK(s["worker_pid"].get<int64_t>() > 0);
	CHECK(s["started"].get<std::string>().size() == 20);
	CHECK(s["age_s"].get<double>() >= 0.0);
	CHECK(s["decisions"] == 0);
	CHECK(s["pending"] == 0);
	CHECK(s["connections_open"] == 0);
	CHECK(c.call("daemon.status")["result"]["sandboxes"] == 2);
	CHECK(c.call("sandbox.list")["result"]["sandboxes"].size() == 2);

	// The CA bundle is readable by the agent and ends with the sandbox CA.
	struct stat st{};
	REQUIRE(::stat(a["ca_bundle"].get<std::string>().c_str(), &st) == 0);
	CHECK((st.st_mode & 0777) == 0644);
	std::ifstream bundleIn(a["ca_bundle"].get<std::string>());
	std::string bundle((std::istreambuf_iterator<char>(bundleIn)), std::istreambuf_iterator<char>());
	CHECK_THAT(bundle, Catch::EndsWith("-----END CERTIFICATE-----\n"));

	// stop: SIGTERM to the group.
	auto stopped = c.call("sandbox.stop", {{"sandbox", idA}});
	INFO(stopped.dump());
	CHECK(stopped["result"]["sandbox"] == idA);
	CHECK(stopped["result"]["stopping"] == true);
	auto exitA = c.notification("sandbox.exited");
	REQUIRE(exitA);
	CHECK((*exitA)["params"]["sandbox"] == idA);
	CHECK((*exitA)["params"]["exit_code"] == 128 + SIGTERM);

	// signal: any signal, to the group.
	auto signalled = c.call("sandbox.signal", {{"sandbox", idB}, {"signal", SIGKILL}});
	CHECK(signalled["result"]["sandbox"] == idB);
	auto exitB = c.notification("sandbox.exited");
	REQUIRE(exitB);
	CHECK((*exitB)["params"]["sandbox"] == idB);
	CHECK((*exitB)["params"]["signal"] == SIGKILL);
	CHECK((*exitB)["params"]["exit_code"] == 128 + SIGKILL);

	CHECK(waitFor([&] { return c.call("sandbox.list")["result"]["sandboxes"].empty(); }));
	CHECK(errorOf(c.call("sandbox.stop", {{"sandbox", idA}}))["code"] == rpc::kNotFound);
	CHECK(errorOf(c.call("sandbox.signal", {{"sandbox", "00000000"}, {"signal", 15}}))["code"] == rpc::kNotFound);
	CHECK(errorOf(c.call("sandbox.signal", {{"sandbox", idB}, {"signal", 999}}))["code"] == rpc::kInvalidParams);
}

TEST_CASE("sandbox.stop kills an agent that ignores SIGTERM after the grace period", "[sandbox]")
{
	Gvmd d;
	Client c(d.socket);
	Stdio io;
	rpc::Json r = launch(c, io, launchParams({"/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.2; done"}, "/"));
	// The trap is in place once it says so.
	char buf[16];
	REQUIRE(::read(io.outRead.get(), buf, sizeof(buf)) > 0);
	auto begin = std::chrono::steady_clock::now();
	CHECK(c.call("sandbox.stop", {{"sandbox", r["sandbox"]}})["result"]["stopping"] == true);
	auto exited = c.notification("sandbox.exited", 15s);
	REQUIRE(exited);
	CHECK((*exited)["params"]["signal"] == SIGKILL);
	CHECK(std::chrono::steady_clock::now() - begin >= daemon::kStopGrace - 500ms);
}

TEST_CASE("policy.reload swaps the sandbox's policy, and a broken one is refused with its position", "[sandbox]")
{
	Gvmd d;
	Client c(d.socket);
	Stdio io;
	rpc::Json r = launch(c, io, launchParams({"sleep", "60"}, "/"));
	const std::string id = r["sandbox"];

	auto reloaded = c.call("policy.reload", {{"sandbox", id}, {"policy_text", kPolicyB}, {"policy_file", "b.yaml"}});
	INFO(reloaded.dump());
	REQUIRE(reloaded.contains("result"));
	CHECK(reloaded["result"]["sandbox"] == id);
	CHECK(reloaded["result"]["policy"] == "b");
	CHECK(reloaded["result"]["sha256"] != r["sha256"]);
	CHECK(reloaded["result"]["rules"] == 0);
	CHECK(reloaded["result"]["mode"] == "enforce");
	CHECK(listed(c, id)["sha256"] == reloaded["result"]["sha256"]);
	CHECK(listed(c, id)["policy"] == "b");

	auto broken = errorOf(c.call("policy.reload", {{"sandbox", id}, {"policy_text", kBroken}, {"policy_file", "new.yaml"}}));
	CHECK(broken["code"] == rpc::kPolicyError);
	CHECK_THAT(broken["message"].get<std::string>(), Catch::Contains("new.yaml:5:5:"));
	CHECK(listed(c, id)["sha256"] == reloaded["result"]["sha256"]);

	CHECK(errorOf(c.call("policy.reload", {{"sandbox", "12345678"}, {"policy_text", kPolicyB}}))["code"] ==
	      rpc::kNotFound);
	CHECK(errorOf(c.call("policy.reload", {{"sandbox", id}}))["code"] == rpc::kInvalidParams);
	c.call("sandbox.stop", {{"sandbox", id}});
	CHECK(c.notification("sandbox.exited"));
}

TEST_CASE("decision subscribers get only real records of sandboxes they may see", "[sandbox]")
{
	Gvmd d;
	Client c(d.socket);
	Client tail(d.socket);

	CHECK(errorOf(tail.call("decisions.subscribe", {{"sandbox", "abcdef01"}}))["code"] == rpc::kNotFound);
	auto subscribed = tail.call("decisions.subscribe");
	INFO(subscribed.dump());
	CHECK(subscribed["result"]["subscribed"] == true);

	// An agent that makes no request: nothing to report.
	Stdio quiet;
	launch(c, quiet, launchParams({"/bin/sh", "-c", "exit 0"}, "/"));
	REQUIRE(c.notification("sandbox.exited"));
	CHECK(tail.notification("decision", 500ms) == std::nullopt);
	CHECK(tail.unreadNotifications() == 0);

	// One request through the proxy, denied by the default: exactly one
	// record, sealed, naming the sandbox and its owner.
	Stdio io;
	rpc::Json r = launch(c, io, launchParams({"sleep", "60"}, "/"));
	const std::string id = r["sandbox"];
	{
		UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
		sockaddr_in addr{};
		addr.sin_family = AF_INET;
		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		addr.sin_port = htons(static_cast<uint16_t>(proxyPort(r["proxy"])));
		REQUIRE(::connect(s.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0);
		std::string request = "GET http://denied.example/x HTTP/1.1\r\nHost: denied.example\r\nConnection: close\r\n\r\n";
		REQUIRE(::send(s.get(), request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()));
		CHECK_THAT(readAll(s.get(), 10s), Catch::StartsWith("HTTP/1.1 403"));
	}
	auto decision = tail.notification("decision", 10s);
	REQUIRE(decision);
	auto &record = (*decision)["params"]["record"];
	INFO(record.dump());
	CHECK(record["sandbox"] == id);
	CHECK(record["uid"] == ::getuid());
	CHECK(record["host"] == "denied.example");
	CHECK(record["action"] == "deny");
	CHECK(record["policy_sha256"] == r["sha256"]);
	CHECK(record["hash"].get<std::string>().size() == 64);
	CHECK(record["seq"].get<uint64_t>() >= 1);
	CHECK(tail.notification("decision", 300ms) == std::nullopt);
	CHECK(waitFor([&] { return listed(c, id)["decisions"] == 1; }));

	// A filtered subscription sees its own sandbox only.
	auto audit = c.call("audit.show", {{"sandbox", id}});
	REQUIRE(audit["result"]["records"].size() == 1);
	CHECK(audit["result"]["records"][0]["hash"] == record["hash"]);
	c.call("sandbox.stop", {{"sandbox", id}});
	CHECK(c.notification("sandbox.exited"));
}

TEST_CASE("held requests: the list starts empty and unknown ids are not found", "[sandbox]")
{
	Gvmd d;
	Client c(d.socket);
	auto list = c.call("hold.list");
	INFO(list.dump());
	CHECK(list["result"]["pending"].empty());
	CHECK(errorOf(c.call("hold.answer", {{"request_id", "deadbeef-1"}, {"approve", true}}))["code"] == rpc::kNotFound);
	CHECK(errorOf(c.call("hold.answer", {{"request_id", "nodash"}, {"approve", false}}))["code"] == rpc::kNotFound);
	CHECK(errorOf(c.call("hold.answer", {{"request_id", "deadbeef-1"}}))["code"] == rpc::kInvalidParams);

	Stdio io;
	rpc::Json r = launch(c, io, launchParams({"sleep", "60"}, "/"));
	const std::string id = r["sandbox"];
	CHECK(errorOf(c.call("hold.answer", {{"request_id", id + "-77"}, {"approve", true}}))["code"] == rpc::kNotFound);
	c.call("sandbox.stop", {{"sandbox", id}});
	CHECK(c.notification("sandbox.exited"));
}

TEST_CASE("a request held for approval is listed and answered through gvmd", "[sandbox]")
{
	Gvmd d;
	Client c(d.socket);
	Stdio io;
	auto params = launchParams({"sleep", "60"}, "/");
	params["policy_text"] = "version: 1\nname: holds\ndefault: deny\nrules:\n  - name: needs-approval\n"
				"    hosts: [held.example]\n    action: {hold: 30s}\n";
	rpc::Json r = launch(c, io, params);
	const std::string id = r["sandbox"];

	UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	sockaddr_in addr{};
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = htons(static_cast<uint16_t>(proxyPort(r["proxy"])));
	REQUIRE(::connect(s.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0);
	std::string request = "GET http://held.example/x HTTP/1.1\r\nHost: held.example\r\nConnection: close\r\n\r\n";
	REQUIRE(::send(s.get(), request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()));

	rpc::Json pending;
	REQUIRE(waitFor([&] {
		pending = c.call("hold.list")["result"]["pending"];
		return pending.size() == 1;
	}));
	auto &hold = pending[0];
	INFO(hold.dump());
	const std::string requestId = hold["request_id"];
	CHECK_THAT(requestId, Catch::StartsWith(id + "-"));
	CHECK(hold["sandbox"] == id);
	CHECK(hold["method"] == "GET");
	CHECK(hold["host"] == "held.example");
	CHECK(hold["port"] == 80);
	CHECK(hold["path"] == "/x");
	CHECK(hold["rule"] == "needs-approval");
	CHECK(hold["remaining_ms"].get<int64_t>() > 0);
	CHECK(hold["remaining_ms"].get<int64_t>() <= 30000);
	CHECK(hold["expires"].get<std::string>().size() == 20);
	CHECK(listed(c, id)["pending"] == 1);

	auto answered = c.call("hold.answer", {{"request_id", requestId}, {"approve", false}});
	INFO(answered.dump());
	CHECK(answered["result"]["request_id"] == requestId);
	CHECK(answered["result"]["approved"] == false);
	CHECK_THAT(readAll(s.get(), 10s), Catch::StartsWith("HTTP/1.1 403"));
	CHECK(c.call("hold.list")["result"]["pending"].empty());
	CHECK(errorOf(c.call("hold.answer", {{"request_id", requestId}, {"approve", true}}))["code"] == rpc::kNotFound);

	c.call("sandbox.stop", {{"sandbox", id}});
	CHECK(c.notification("sandbox.exited"));
}

TEST_CASE("with tty the agent gets its terminal as controlling terminal", "[sandbox]")
{
	Gvmd d;
	Client c(d.socket);
	UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
	REQUIRE(master);
	REQUIRE(::grantpt(master.get()) == 0);
	REQUIRE(::unlockpt(master.get()) == 0);
	UniqueFd slave(::open(::ptsname(master.get()), O_RDWR | O_NOCTTY | O_CLOEXEC));
	REQUIRE(slave);

	auto params = launchParams({"/bin/sh", "-c", "echo ctty > /dev/tty; test \"$(cut -d' ' -f6 /proc/$$/stat)\" -eq $$ && echo leader"}, "/");
	params["tty"] = true;
	int64_t id = c.send("sandbox.launch", params, {slave.get(), slave.get(), slave.get()});
	slave.reset();
	rpc::Json reply = c.reply(id);
	INFO(reply.dump());
	REQUIRE(reply.contains("result"));
	auto exited = c.notification("sandbox.exited");
	REQUIRE(exited);
	CHECK((*exited)["params"]["exit_code"] == 0);
	std::string out;
	for (;;) {
		pollfd pfd{master.get(), POLLIN, 0};
		if (::poll(&pfd, 1, 2000) <= 0)
			break;
		char buf[256];
		ssize_t n = ::read(master.get(), buf, sizeof(buf));
		if (n <= 0)
			break;
		out.append(buf, static_cast<size_t>(n));
	}
	CHECK_THAT(out, Catch::Contains("ctty"));
	CHECK_THAT(out, Catch::Contains("leader"));
}

TEST_CASE("when the worker dies the agent runs on without network (fail closed)", "[sandbox]")
{
	Gvmd d;
	Client c(d.socket);
	Stdio io;
	rpc::Json r = launch(c, io, launchParams({"sleep", "60"}, "/"));
	const std::string id = r["sandbox"];
	const int port = proxyPort(r["proxy"]);
	CHECK(connectLoopback(port) == 0);

	rpc::Json s = listed(c, id);
	const pid_t worker = s["worker_pid"].get<pid_t>();
	REQUIRE(worker > 0);
	REQUIRE(::kill(worker, SIGKILL) == 0);

	CHECK(waitFor([&] { return listed(c, id)["state"] == "worker-dead"; }));
	CHECK(connectLoopback(port) == ECONNREFUSED);
	CHECK(processAlive(r["pid"].get<pid_t>()));
	CHECK(c.notification("sandbox.exited", 300ms) == std::nullopt);
	CHECK(errorOf(c.call("policy.reload", {{"sandbox", id}, {"policy_text", kPolicyB}}))["code"] ==
	      rpc::kServerError);
	auto log = d.logText();
	CHECK_THAT(log, Catch::Contains("sandbox " + id + ": the proxy worker"));

	c.call("sandbox.stop", {{"sandbox", id}});
	auto exited = c.notification("sandbox.exited");
	REQUIRE(exited);
	CHECK((*exited)["params"]["exit_code"] == 128 + SIGTERM);
}

TEST_CASE("a launching client that hangs up does not disturb gvmd", "[sandbox]")
{
	Gvmd d;
	pid_t agent = 0;
	{
		Client c(d.socket);
		Stdio io;
		rpc::Json r = launch(c, io, launchParams({"sleep", "60"}, "/"));
		agent = r["pid"].get<pid_t>();
	}
	// The agent runs on; its exit goes nowhere, harmlessly.
	Client other(d.socket);
	CHECK(waitFor([&] { return other.call("daemon.status")["result"]["sandboxes"] == 1; }));
	REQUIRE(::kill(-agent, SIGTERM) == 0);
	CHECK(waitFor([&] { return other.call("daemon.status")["result"]["sandboxes"] == 0; }));
	CHECK(d.process.running());
}

TEST_CASE("stopping gvmd ends its agents and workers and removes their files", "[sandbox]")
{
	Gvmd d;
	Client c(d.socket);
	Stdio io;
	rpc::Json r = launch(c, io, launchParams({"sleep", "60"}, "/"));
	const std::string id = r["sandbox"];
	const pid_t agent = r["pid"].get<pid_t>();
	const pid_t worker = listed(c, id)["worker_pid"].get<pid_t>();

	auto status = d.process.stop(SIGTERM);
	REQUIRE(status);
	CHECK(*status == 0);
	// The agent was gvmd's child: reparented and reaped by init once gone.
	CHECK(waitFor([&] { return !processAlive(agent); }));
	CHECK_FALSE(processAlive(worker));
	CHECK_FALSE(std::filesystem::exists(d.runtimeDir + "/sandboxes/" + id));
}

TEST_CASE("a decision subscriber that stops reading is dropped; the others are not slowed", "[sandbox]")
{
	// In process: a real RpcServer on a real socket and loop, records
	// published directly.
	auto loop = Loop::create();
	REQUIRE(loop);
	TempDir dir;
	const std::string path = dir.path() + "/s.sock";
	UniqueFd listenFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	sockaddr_un addr{};
	addr.sun_family = AF_UNIX;
	std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
	REQUIRE(::bind(listenFd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0);
	REQUIRE(::listen(listenFd.get(), 16) == 0);
	auto server = daemon::RpcServer::create(**loop, std::move(listenFd));
	REQUIRE(server);
	daemon::DecisionSubscribers subscribers(**server);
	(*server)->addMethod("decisions.subscribe", [&](daemon::CallContext &ctx, const rpc::Json &params) -> Result<rpc::Json> {
		subscribers.add(ctx.connection.id(), ctx.peer.uid, params.value("sandbox", ""));
		return rpc::Json{{"subscribed", true}};
	});

	RawClient slow(path), fast(path), other(path);
	REQUIRE(slow.sendRaw(rpc::encodeRequest(1, "decisions.subscribe", rpc::Json::object())));
	REQUIRE(fast.sendRaw(rpc::encodeRequest(1, "decisions.subscribe", rpc::Json::object())));
	REQUIRE(other.sendRaw(rpc::encodeRequest(1, "decisions.subscribe", {{"sandbox", "bbbb0000"}})));
	REQUIRE(runLoopUntil(**loop, [&] { return subscribers.size() == 3; }));

	// `fast` reads everything as it comes; `slow` reads nothing.
	size_t fastBytes = 0;
	auto drainFast = [&] {
		char buf[65536];
		for (ssize_t n; (n = ::recv(fast.fd(), buf, sizeof(buf), MSG_DONTWAIT)) > 0;)
			fastBytes += static_cast<size_t>(n);
	};
	const rpc::Json record = {{"sandbox", "aaaa0000"}, {"uid", ::getuid()}, {"path", std::string(32 * 1024, 'p')}};
	const std::string recordLine = rpc::dumpJson(record);
	int published = 0;
	for (; published < 200 && subscribers.size() == 3; ++published) {
		subscribers.publish(::getuid(), "aaaa0000", recordLine);
		runLoopUntil(**loop, [] { return false; }, 5ms);
		drainFast();
	}
	CHECK(subscribers.size() == 2);
	// Dropped after about 1 MiB of backlog (plus what the socket buffers).
	CHECK(published * record["path"].get<std::string>().size() > daemon::kMaxSubscriberBacklogBytes);
	CHECK(published < 200);
	CHECK(slow.closedByPeer());

	// `fast` got every record; `other` (another sandbox) none.
	for (int i = 0; i < 3; ++i) {
		subscribers.publish(::getuid(), "aaaa0000", recordLine);
		runLoopUntil(**loop, [] { return false; }, 5ms);
		drainFast();
	}
	CHECK(fastBytes > static_cast<size_t>(published + 3) * 32 * 1024);
	auto otherReply = other.readLine(1s);
	REQUIRE(otherReply);
	CHECK_THAT(*otherReply, Catch::Contains("\"subscribed\":true"));
	CHECK_FALSE(other.readLine(100ms));
}

TEST_CASE("gvmd removes the sandbox directories an earlier gvmd left, and nothing else", "[sandbox]")
{
	Gvmd d([](const Gvmd &g) {
		std::filesystem::create_directories(g.runtimeDir + "/sandboxes/0badc0de");
		std::ofstream(g.runtimeDir + "/sandboxes/0badc0de/ca-bundle.pem") << "stale\n";
		std::filesystem::create_directories(g.runtimeDir + "/sandboxes/gvm0badc0de");
		std::filesystem::create_directories(g.runtimeDir + "/sandboxes/0BADC0DE");
	});
	// Removed right after gvmd starts listening.
	CHECK(waitFor([&] { return !std::filesystem::exists(d.runtimeDir + "/sandboxes/0badc0de"); }));
	CHECK(std::filesystem::exists(d.runtimeDir + "/sandboxes/gvm0badc0de"));
	CHECK(std::filesystem::exists(d.runtimeDir + "/sandboxes/0BADC0DE"));
}
