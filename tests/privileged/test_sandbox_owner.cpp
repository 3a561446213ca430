// SPDX-License-Identifier: Apache-2.0
//
// As root: a sandbox belongs to the uid that launched it. The agent runs as
// the caller, with the caller's groups, and enters its working directory
// as the caller; another user neither sees nor controls it (it is "not
// found"); root sees everyone's; an unprivileged gvmd launches only for
// its own uid.
#include <catch2/catch.hpp>

#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fd_passing.h"
#include "common/json_rpc.h"
#include "tests/support/process.h"

using namespace gvm;
using namespace gvm::test;
using namespace std::chrono_literals;

namespace {

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
// A supplementary group nobody gets in these tests, to see it reach the agent.
constexpr gid_t kExtraGroup = 4242;

const char kPolicy[] = "version: 1\nname: owner-test\ndefault: deny\n";

// A JSON-RPC client that passes descriptors; no Catch macros, so it also
// works in the forked children below.
class Client
{
public:
	explicit Client(const std::string &socket) : raw_(socket) {}
	bool connected() const { return raw_.connected(); }

	// The reply to the request, or {} on a broken connection;
	// notifications that arrive meanwhile are kept.
	rpc::Json call(const std::string &method, const rpc::Json &params, const std::vector<int> &fds = {})
	{
		int64_t id = next_++;
		std::string line = rpc::encodeRequest(id, method, params);
		size_t sent = 0;
		if (!fds.empty()) {
			auto r = sendWithFds(raw_.fd(), line, fds);
			if (!r)
				return {};
			sent = *r;
		}
		if (!raw_.sendRaw(std::string_view(line).substr(sent)))
			return {};
		for (;;) {
			auto reply = raw_.readLine(20s);
			if (!reply)
				return {};
			auto msg = rpc::parseJson(*reply);
			if (!msg)
				return {};
			if (msg->contains("method"))
				notes_.push_back(std::move(*msg));
			else if ((*msg)["id"] == id)
				return *msg;
		}
	}

	rpc::Json notification(std::chrono::milliseconds timeout = 20s)
	{
		if (!notes_.empty()) {
			rpc::Json n = notes_.front();
			notes_.erase(notes_.begin());
			return n;
		}
		auto line = raw_.readLine(timeout);
		if (!line)
			return {};
		return rpc::parseJson(*line).value_or(rpc::Json());
	}

private:
	RawClient raw_;
	int64_t next_ = 1;
	std::vector<rpc::Json> notes_;
};

std::string readAll(int fd)
{
	std::string out;
	char buf[4096];
	for (;;) {
		pollfd pfd{fd, POLLIN, 0};
		if (::poll(&pfd, 1, 20000) <= 0)
			return out;
		ssize_t n = ::read(fd, buf, sizeof(buf));
		if (n <= 0)
			return out;
		out.append(buf, static_cast<size_t>(n));
	}
}

rpc::Json launchParams(const std::vector<std::string> &argv, const std::string &cwd)
{
	return {{"argv", argv},
		{"env", {"PATH=/usr/bin:/bin"}},
		{"cwd", cwd},
		{"policy_text", kPolicy},
		{"policy_file", "owner.yaml"},
		{"cooperative", true},
		{"monitor", false},
		{"tty", false}};
}

// Launches with /dev/null as stdin and stderr and a pipe as stdout; the
// reply, and the pipe's read end in *out.
rpc::Json launch(Client &c, const rpc::Json &params, UniqueFd *out)
{
	UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
	int p[2];
	if (::pipe2(p, O_CLOEXEC) < 0)
		return {};
	out->reset(p[0]);
	UniqueFd write(p[1]);
	return c.call("sandbox.launch", params, {devnull.get(), write.get(), devnull.get()});
}

// Runs fn in a child as nobody (primary group nogroup, the given
// supplementary groups); fn writes its findings to the fd; returns them.
std::string asNobody(const std::vector<gid_t> &groups, const std::function<std::string(int)> &fn)
{
	int fds[2];
	REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
	pid_t pid = ::fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		::close(fds[0]);
		if (::setgroups(groups.size(), groups.data()) < 0 || ::setgid(kNogroup) < 0 || ::setuid(kNobody) < 0)
			::_exit(3);
		std::string msg = fn(fds[1]);
		[[maybe_unused]] ssize_t n = ::write(fds[1], msg.data(), msg.size());
		::_exit(0);
	}
	::close(fds[1]);
	UniqueFd in(fds[0]);
	std::string got = readAll(in.get());
	int status = 0;
	::waitpid(pid, &status, 0);
	REQUIRE(WIFEXITED(status));
	REQUIRE(WEXITSTATUS(status) == 0);
	return got;
}

void writeLine(int fd, const std::string &line)
{
	std::string l = line + "\n";
	[[maybe_unused]] ssize_t n = ::write(fd, l.data(), l.size());
}

struct Gvmd {
	TempDir dir;
	std::string socket;
	Child process;
	gid_t socketGroup = 0;

	Gvmd()
	{
		// Others must be able to traverse to the socket and to the
		// sandboxes' CA bundles.
		REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
		socket = dir.path() + "/run/gvmd.sock";
		process = Child::start({binaryFromEnv("GVM_GVMD"), "--socket", socket, "--runtime-dir", dir.path() + "/run",
					"--state-dir", dir.path() + "/state", "--log-level", "debug"},
				       {}, dir.path() + "/gvmd.log");
		REQUIRE(waitFor([&] { return RawClient(socket).connected(); }));
		struct stat st{};
		REQUIRE(::stat(socket.c_str(), &st) == 0);
		socketGroup = st.st_gid;
	}
};

std::vector<std::string> lines(const std::string &text)
{
	std::vector<std::string> out;
	std::istringstream in(text);
	for (std::string l; std::getline(in, l);)
		out.push_back(l);
	return out;
}

} // namespace

TEST_CASE("the agent runs as its caller, with the caller's groups, in a directory the caller may enter", "[sandbox]")
{
	Gvmd d;
	const std::string home = d.dir.path() + "/home";
	const std::string rootOnly = d.dir.path() + "/root-only";
	REQUIRE(::mkdir(home.c_str(), 0700) == 0);
	REQUIRE(::chown(home.c_str(), kNobody, kNogroup) == 0);
	REQUIRE(::mkdir(rootOnly.c_str(), 0700) == 0);

	std::string got = asNobody({d.socketGroup, kExtraGroup}, [&](int) {
		Client c(d.socket);
		if (!c.connected())
			return std::string("no connection");
		UniqueFd out;
		rpc::Json r = launch(c,
				     launchParams({"/bin/sh", "-c",
						   "id -u; id -g; id -G; pwd; test -r \"$SSL_CERT_FILE\" && echo readable; exit 3"},
						  home),
				     &out);
		rpc::Json report;
		report["launch"] = r;
		report["out"] = readAll(out.get());
		report["exited"] = c.notification();
		UniqueFd out2;
		report["denied"] = launch(c, launchParams({"true"}, rootOnly), &out2);
		return rpc::dumpJson(report);
	});
	auto report = rpc::parseJson(got);
	INFO(got);
	REQUIRE(report);
	REQUIRE((*report)["launch"].contains("result"));
	auto out = lines((*report)["out"].get<std::string>());
	REQUIRE(out.size() == 5);
	CHECK(out[0] == std::to_string(kNobody));
	CHECK(out[1] == std::to_string(kNogroup));
	CHECK_THAT(" " + out[2] + " ", Catch::Contains(" " + std::to_string(kExtraGroup) + " "));
	CHECK_THAT(" " + out[2] + " ", Catch::Contains(" " + std::to_string(d.socketGroup) + " "));
	CHECK(out[3] == home);
	CHECK(out[4] == "readable");
	CHECK((*report)["exited"]["params"]["exit_code"] == 3);

	auto &denied = (*report)["denied"];
	REQUIRE(denied.contains("error"));
	CHECK(denied["error"]["message"] ==
	      "cannot enter working directory " + rootOnly + " as uid 65534: Permission denied");
}

TEST_CASE("another user's sandbox is not found; root sees and stops everyone's", "[sandbox]")
{
	Gvmd d;
	Client root(d.socket);
	UniqueFd out;
	rpc::Json r = launch(root, launchParams({"sleep", "60"}, "/"), &out);
	INFO(r.dump());
	REQUIRE(r.contains("result"));
	const std::string id = r["result"]["sandbox"];

	std::string got = asNobody({d.socketGroup}, [&](int) {
		Client c(d.socket);
		rpc::Json report;
		report["list"] = c.call("sandbox.list", rpc::Json::object());
		report["list_all"] = c.call("sandbox.list", {{"all", true}});
		report["stop"] = c.call("sandbox.stop", {{"sandbox", id}});
		report["signal"] = c.call("sandbox.signal", {{"sandbox", id}, {"signal", SIGKILL}});
		report["reload"] = c.call("policy.reload", {{"sandbox", id}, {"policy_text", kPolicy}});
		report["subscribe"] = c.call("decisions.subscribe", {{"sandbox", id}});
		report["answer"] = c.call("hold.answer", {{"request_id", id + "-1"}, {"approve", true}});
		report["holds"] = c.call("hold.list", rpc::Json::object());
		return rpc::dumpJson(report);
	});
	auto report = rpc::parseJson(got);
	INFO(got);
	REQUIRE(report);
	CHECK((*report)["list"]["result"]["sandboxes"].empty());
	CHECK((*report)["list_all"]["result"]["sandboxes"].empty());
	for (const char *k : {"stop", "signal", "reload", "subscribe", "answer"}) {
		INFO(k);
		CHECK((*report)[k]["error"]["code"] == rpc::kNotFound);
		CHECK((*report)[k]["error"]["message"] == "no " +
			      std::string(std::string(k) == "answer" ? "pending request '" + id + "-1'" : "sandbox '" + id + "'"));
	}
	CHECK((*report)["holds"]["result"]["pending"].empty());

	// Untouched by all that.
	auto listed = root.call("sandbox.list", rpc::Json::object());
	REQUIRE(listed["result"]["sandboxes"].size() == 1);
	CHECK(listed["result"]["sandboxes"][0]["state"] == "running");

	// nobody's sandbox: root lists it with "all" and may stop it; its
	// owner hears the exit.
	int sync[2];
	REQUIRE(::pipe2(sync, O_CLOEXEC) == 0);
	UniqueFd syncRead(sync[0]), syncWrite(sync[1]);
	pid_t child = ::fork();
	REQUIRE(child >= 0);
	if (child == 0) {
		syncRead.reset();
		if (::setgroups(1, &d.socketGroup) < 0 || ::setgid(kNogroup) < 0 || ::setuid(kNobody) < 0)
			::_exit(3);
		Client c(d.socket);
		UniqueFd o;
		rpc::Json l = launch(c, launchParams({"sleep", "60"}, "/"), &o);
		writeLine(syncWrite.get(), rpc::dumpJson(l));
		writeLine(syncWrite.get(), rpc::dumpJson(c.notification(30s)));
		::_exit(0);
	}
	syncWrite.reset();
	std::string all;
	REQUIRE(waitFor([&] {
		char buf[4096];
		pollfd pfd{syncRead.get(), POLLIN, 0};
		if (::poll(&pfd, 1, 10) > 0) {
			ssize_t n = ::read(syncRead.get(), buf, sizeof(buf));
			if (n > 0)
				all.append(buf, static_cast<size_t>(n));
		}
		return all.find('\n') != std::string::npos;
	}, 20s));
	auto theirs = rpc::parseJson(all.substr(0, all.find('\n')));
	REQUIRE(theirs);
	INFO(theirs->dump());
	REQUIRE(theirs->contains("result"));
	const std::string nobodyId = (*theirs)["result"]["sandbox"];

	CHECK(root.call("sandbox.list", rpc::Json::object())["result"]["sandboxes"].size() == 1);
	auto everyone = root.call("sandbox.list", {{"all", true}})["result"]["sandboxes"];
	REQUIRE(everyone.size() == 2);
	bool seen = false;
	for (auto &s : everyone)
		if (s["id"] == nobodyId) {
			seen = true;
			CHECK(s["uid"] == kNobody);
		}
	CHECK(seen);
	CHECK(root.call("sandbox.stop", {{"sandbox", nobodyId}})["result"]["stopping"] == true);

	std::string rest = all.substr(all.find('\n') + 1) + readAll(syncRead.get());
	int status = 0;
	::waitpid(child, &status, 0);
	auto exited = rpc::parseJson(rest.substr(0, rest.find('\n')));
	REQUIRE(exited);
	CHECK((*exited)["method"] == "sandbox.exited");
	CHECK((*exited)["params"]["sandbox"] == nobodyId);
	CHECK((*exited)["params"]["exit_code"] == 128 + SIGTERM);

	root.call("sandbox.stop", {{"sandbox", id}});
	CHECK(root.notification()["params"]["sandbox"] == id);
}

TEST_CASE("an unprivileged gvmd launches only for its own uid", "[sandbox]")
{
	TempDir dir;
	REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
	const std::string base = dir.path() + "/nobody";
	REQUIRE(::mkdir(base.c_str(), 0755) == 0);
	REQUIRE(::chown(base.c_str(), kNobody, kNogroup) == 0);
	const std::string socket = base + "/run/gvmd.sock";
	Child gvmd = Child::start({"/usr/bin/setpriv", "--reuid", std::to_string(kNobody), "--regid",
				   std::to_string(kNogroup), "--clear-groups", binaryFromEnv("GVM_GVMD"), "--socket",
				   socket, "--runtime-dir", base + "/run", "--state-dir", base + "/state"},
				  {}, dir.path() + "/gvmd.log");
	REQUIRE(waitFor([&] { return RawClient(socket).connected(); }));

	// Root reaches any socket; the unprivileged gvmd still refuses it.
	Client root(socket);
	UniqueFd out;
	rpc::Json r = launch(root, launchParams({"true"}, "/"), &out);
	INFO(r.dump());
	REQUIRE(r.contains("error"));
	CHECK(r["error"]["code"] == rpc::kPermissionDenied);
	CHECK(r["error"]["message"] == "gvmd runs as uid 65534 and can launch only for that user");
}
