// SPDX-License-Identifier: Apache-2.0
//
// The real gvmctl binary against a fake gvmd: a unix socket in a temporary
// directory, served by a thread of this test that reads what gvmctl sends
// (descriptors included) and answers as the RPC contract says. Assertions
// run on the main thread, after the server thread is joined.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <poll.h>
#include <spawn.h>
#include <sstream>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <thread>
#include <unistd.h>

#include "common/fd_passing.h"
#include "common/json_rpc.h"
#include "common/unique_fd.h"

extern char **environ;

using namespace gvm;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

const char kPolicy[] = "version: 1\nname: fake-test\ndefault: deny\nrules:\n"
		       "  - name: github\n    hosts: [github.com]\n    action: allow\n";

class TempDir
{
public:
	TempDir()
	{
		char tmpl[] = "/tmp/gvm-cli-XXXXXX";
		path_ = ::mkdtemp(tmpl) ? tmpl : "";
	}
	~TempDir()
	{
		std::error_code ec;
		std::filesystem::remove_all(path_, ec);
	}
	const std::string &path() const { return path_; }
	std::string write(const std::string &name, const std::string &text) const
	{
		std::string p = path_ + "/" + name;
		std::ofstream(p) << text;
		return p;
	}

private:
	std::string path_;
};

std::string readAll(const std::string &path)
{
	std::ifstream in(path, std::ios::binary);
	std::ostringstream ss;
	ss << in.rdbuf();
	return ss.str();
}

std::vector<std::string> lines(const std::string &text)
{
	std::vector<std::string> out;
	std::istringstream in(text);
	for (std::string line; std::getline(in, line);)
		out.push_back(line);
	return out;
}

bool waitUntil(const std::function<bool()> &pred, std::chrono::milliseconds timeout = 10s)
{
	const auto deadline = Clock::now() + timeout;
	while (!pred()) {
		if (Clock::now() > deadline)
			return false;
		std::this_thread::sleep_for(5ms);
	}
	return true;
}

// One connection, as the fake gvmd sees it.
class Peer
{
public:
	explicit Peer(UniqueFd fd) : fd_(std::move(fd)) {}

	// The next message, with the descriptors that came since the last
	// one; nullopt at EOF or after the timeout.
	std::optional<rpc::Json> read(std::vector<UniqueFd> *fds = nullptr, std::chrono::milliseconds timeout = 10s)
	{
		const auto deadline = Clock::now() + timeout;
		for (;;) {
			if (size_t nl = buffer_.find('\n'); nl != std::string::npos) {
				std::string line = buffer_.substr(0, nl);
				buffer_.erase(0, nl + 1);
				if (fds)
					*fds = std::move(fds_);
				fds_.clear();
				return rpc::parseJson(line);
			}
			auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
			if (left.count() <= 0)
				return std::nullopt;
			pollfd p{fd_.get(), POLLIN, 0};
			if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
				continue;
			char buf[65536];
			auto got = receiveWithFds(fd_.get(), buf, sizeof(buf));
			if (!got || got->bytes == 0)
				return std::nullopt;
			buffer_.append(buf, got->bytes);
			for (UniqueFd &fd : got->fds)
				fds_.push_back(std::move(fd));
		}
	}

	void send(const std::string &line)
	{
		size_t done = 0;
		while (done < line.size()) {
			ssize_t n = ::send(fd_.get(), line.data() + done, line.size() - done, MSG_NOSIGNAL);
			if (n <= 0)
				return;
			done += static_cast<size_t>(n);
		}
	}
	void result(const rpc::Json &id, const rpc::Json &result) { send(rpc::encodeResult(id, result)); }
	void error(const rpc::Json &id, int code, const std::string &message)
	{
		send(rpc::encodeError(id, {code, message, nullptr}));
	}
	void notify(const std::string &method, const rpc::Json &params)
	{
		send(rpc::encodeNotification(method, params));
	}

	// True when the client hung up within the timeout; what it sends
	// meanwhile is read and dropped.
	bool waitClosed(std::chrono::milliseconds timeout = 10s)
	{
		const auto deadline = Clock::now() + timeout;
		while (Clock::now() < deadline) {
			pollfd p{fd_.get(), POLLIN, 0};
			if (::poll(&p, 1, 50) <= 0)
				continue;
			char buf[4096];
			ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
			if (n <= 0)
				return true;
		}
		return false;
	}

	void close() { fd_.reset(); }

private:
	UniqueFd fd_;
	std::string buffer_;
	std::vector<UniqueFd> fds_;
};

// A fake gvmd serving one connection with `serve` on its own thread.
class FakeGvmd
{
public:
	FakeGvmd(const std::string &path, std::function<void(Peer &)> serve)
	{
		sockaddr_un addr{};
		addr.sun_family = AF_UNIX;
		std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
		listener_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
		if (::bind(listener_.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) < 0 ||
		    ::listen(listener_.get(), 4) < 0)
			listener_.reset();
		thread_ = std::thread([this, serve = std::move(serve)] {
			pollfd p{listener_.get(), POLLIN, 0};
			if (!listener_ || ::poll(&p, 1, 15000) <= 0)
				return;
			Peer peer(UniqueFd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC)));
			serve(peer);
		});
	}
	~FakeGvmd() { join(); }
	bool listening() const { return listener_.isValid(); }
	void join()
	{
		if (thread_.joinable())
			thread_.join();
	}

private:
	UniqueFd listener_;
	std::thread thread_;
};

std::string gvmctlBinary()
{
	const char *path = std::getenv("GVM_GVMCTL");
	return path ? path : "";
}

// Starts gvmctl with the given stdin/stdout/stderr and default signal
// dispositions; in a new session when asked (no controlling terminal).
pid_t spawnGvmctl(const std::vector<std::string> &args, int in, int out, int err, bool newSession = false,
		  const std::vector<std::string> &extraEnv = {})
{
	std::vector<std::string> argv = {gvmctlBinary()};
	argv.insert(argv.end(), args.begin(), args.end());
	std::vector<char *> cargv;
	for (std::string &a : argv)
		cargv.push_back(a.data());
	cargv.push_back(nullptr);
	std::vector<std::string> env;
	for (char **e = environ; *e; ++e)
		env.emplace_back(*e);
	env.insert(env.end(), extraEnv.begin(), extraEnv.end());
	std::vector<char *> cenv;
	for (std::string &e : env)
		cenv.push_back(e.data());
	cenv.push_back(nullptr);

	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, in, 0);
	posix_spawn_file_actions_adddup2(&actions, out, 1);
	posix_spawn_file_actions_adddup2(&actions, err, 2);
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	sigset_t none;
	sigemptyset(&none);
	sigset_t defaults;
	sigemptyset(&defaults);
	for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGWINCH})
		sigaddset(&defaults, s);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &defaults);
	short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
	if (newSession)
		flags |= POSIX_SPAWN_SETSID;
	posix_spawnattr_setflags(&attr, flags);
	pid_t pid = -1;
	if (::posix_spawn(&pid, cargv[0], &actions, &attr, cargv.data(), cenv.data()) != 0)
		pid = -1;
	posix_spawn_file_actions_destroy(&actions);
	posix_spawnattr_destroy(&attr);
	return pid;
}

// The exit status (128+N for signal N), or nullopt after killing a process
// that outlived the timeout.
std::optional<int> waitExit(pid_t pid, std::chrono::milliseconds timeout = 15s)
{
	const auto deadline = Clock::now() + timeout;
	for (;;) {
		int status = 0;
		if (::waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		if (Clock::now() > deadline) {
			::kill(pid, SIGKILL);
			::waitpid(pid, &status, 0);
			return std::nullopt;
		}
		std::this_thread::sleep_for(5ms);
	}
}

struct RunResult {
	std::optional<int> status;
	std::string out;
	std::string err;
};

// A started gvmctl whose stdout and stderr go to files, stdin /dev/null.
class Gvmctl
{
public:
	Gvmctl(const TempDir &dir, const std::vector<std::string> &args, const std::vector<std::string> &extraEnv = {})
		: outPath_(dir.path() + "/out"), errPath_(dir.path() + "/err")
	{
		UniqueFd in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
		UniqueFd out(::open(outPath_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
		UniqueFd err(::open(errPath_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
		pid_ = spawnGvmctl(args, in.get(), out.get(), err.get(), false, extraEnv);
	}
	pid_t pid() const { return pid_; }
	RunResult wait()
	{
		RunResult r;
		r.status = waitExit(pid_);
		r.out = readAll(outPath_);
		r.err = readAll(errPath_);
		return r;
	}

private:
	std::string outPath_;
	std::string errPath_;
	pid_t pid_ = -1;
};

rpc::Json launchResult()
{
	return {{"sandbox", "1a2b3c4d"},
		{"name", "t1"},
		{"pid", 4242},
		{"proxy", "http://127.0.0.1:40000"},
		{"ca_bundle", "/run/gvm/sandboxes/1a2b3c4d/ca-bundle.pem"},
		{"policy", "fake-test"},
		{"sha256", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		{"mode", "enforce"}};
}

rpc::Json exited(int status, int signal)
{
	return {{"sandbox", "1a2b3c4d"},
		{"status", signal ? rpc::Json() : rpc::Json(status)},
		{"signal", signal ? rpc::Json(signal) : rpc::Json()},
		{"exit_code", signal ? 128 + signal : status}};
}

rpc::Json decisionRecord(int seq, const std::string &action)
{
	return {{"v", 1},         {"seq", seq},        {"ts", "2026-11-23T10:30:08.123456Z"},
		{"sandbox", "1a2b3c4d"}, {"uid", 1000},   {"policy", "fake-test"},
		{"kind", "http"},      {"method", "GET"},   {"host", "github.com"},
		{"port", 443},         {"path", "/x"},      {"rule", "github"},
		{"action", action},    {"mode", "enforce"}, {"status", 200},
		{"prev", "00"},        {"hash", "ff"}};
}

} // namespace

TEST_CASE("launch without a terminal: the agent gets gvmctl's descriptors; gvmctl exits with its status",
	  "[launch][fake]")
{
	REQUIRE_FALSE(gvmctlBinary().empty());
	TempDir dir;
	const std::string policy = dir.write("policy.yaml", kPolicy);
	const std::string socket = dir.path() + "/gvmd.sock";

	rpc::Json request;
	size_t fdCount = 0;
	bool wroteHello = false;
	bool sameStdout = false;
	bool closed = false;
	struct stat outFile{};
	FakeGvmd gvmd(socket, [&](Peer &peer) {
		std::vector<UniqueFd> fds;
		auto req = peer.read(&fds);
		if (!req)
			return;
		request = *req;
		fdCount = fds.size();
		if (fds.size() == 3) {
			wroteHello = ::write(fds[1].get(), "hello\n", 6) == 6;
			struct stat st{};
			sameStdout = ::fstat(fds[1].get(), &st) == 0 && ::stat((dir.path() + "/out").c_str(), &outFile) == 0 &&
				     st.st_ino == outFile.st_ino && st.st_dev == outFile.st_dev;
		}
		fds.clear();
		peer.result((*req)["id"], launchResult());
		peer.notify("sandbox.exited", exited(7, 0));
		closed = peer.waitClosed();
	});
	REQUIRE(gvmd.listening());

	Gvmctl run(dir,
		   {"--socket", socket, "launch", "--policy", policy, "--cooperative", "--name", "t1", "--", "/bin/sh",
		    "-c", "echo hi; exit 7"},
		   {"GVM_TEST_MARKER=42 x"});
	RunResult r = run.wait();
	gvmd.join();

	CHECK(r.status == 7);
	CHECK(r.out == "hello\n"); // the agent's output, and nothing of gvmctl's
	CHECK(r.err.empty());
	CHECK(fdCount == 3);
	CHECK(wroteHello);
	CHECK(sameStdout);
	CHECK(closed);

	REQUIRE(request.is_object());
	CHECK(request["method"] == "sandbox.launch");
	const rpc::Json &p = request["params"];
	CHECK(p["argv"] == rpc::Json({"/bin/sh", "-c", "echo hi; exit 7"}));
	CHECK(p["policy_text"] == kPolicy);
	CHECK(p["policy_file"] == policy);
	CHECK(p["cooperative"] == true);
	CHECK(p["monitor"] == false);
	CHECK(p["name"] == "t1");
	CHECK(p["tty"] == false);
	CHECK_FALSE(p.contains("upstream_ca_pem"));
	char cwd[PATH_MAX];
	REQUIRE(::getcwd(cwd, sizeof(cwd)));
	CHECK(p["cwd"] == cwd);
	REQUIRE(p["env"].is_array());
	bool marker = false;
	for (const auto &e : p["env"])
		marker = marker || e == "GVM_TEST_MARKER=42 x";
	CHECK(marker);
}

TEST_CASE("launch --json: launched and exited events on stderr; a signal's death is 128+N", "[launch][fake]")
{
	TempDir dir;
	const std::string policy = dir.write("policy.yaml", kPolicy);
	const std::string ca = dir.write("ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
	const std::string socket = dir.path() + "/gvmd.sock";
	rpc::Json params;
	FakeGvmd gvmd(socket, [&](Peer &peer) {
		auto req = peer.read();
		if (!req)
			return;
		params = (*req)["params"];
		peer.result((*req)["id"], launchResult());
		peer.notify("sandbox.exited", exited(0, 9));
		peer.waitClosed();
	});
	Gvmctl run(dir, {"--socket", socket, "--json", "launch", "--policy", policy, "--monitor", "--cooperative",
			 "--upstream-ca", ca, "--", "sleep", "100"});
	RunResult r = run.wait();
	gvmd.join();

	CHECK(r.status == 137);
	CHECK(r.out.empty());
	CHECK(params["monitor"] == true);
	CHECK(params["upstream_ca_pem"] == readAll(ca));
	const auto events = lines(r.err);
	REQUIRE(events.size() == 2);
	auto launched = rpc::parseJson(events[0]);
	auto ended = rpc::parseJson(events[1]);
	REQUIRE(launched);
	REQUIRE(ended);
	CHECK((*launched)["event"] == "launched");
	CHECK((*launched)["sandbox"] == "1a2b3c4d");
	CHECK((*launched)["proxy"] == "http://127.0.0.1:40000");
	CHECK((*launched)["ca_bundle"] == "/run/gvm/sandboxes/1a2b3c4d/ca-bundle.pem");
	CHECK(*ended == rpc::Json({{"event", "exited"},
				   {"sandbox", "1a2b3c4d"},
				   {"exit_code", 137},
				   {"status", nullptr},
				   {"signal", 9}}));
}

TEST_CASE("launch: signals to gvmctl reach the sandbox, also those before the launch result", "[launch][fake]")
{
	TempDir dir;
	const std::string policy = dir.write("policy.yaml", kPolicy);
	const std::string socket = dir.path() + "/gvmd.sock";
	std::atomic<bool> requested{false};
	std::atomic<bool> interrupted{false};
	std::atomic<bool> firstForwarded{false};
	std::vector<rpc::Json> signalRequests;
	FakeGvmd gvmd(socket, [&](Peer &peer) {
		auto req = peer.read();
		if (!req)
			return;
		requested = true;
		waitUntil([&] { return interrupted.load(); });
		peer.result((*req)["id"], launchResult());
		for (int i = 0; i < 2; ++i) {
			auto sig = peer.read();
			if (!sig)
				return;
			signalRequests.push_back(*sig);
			peer.result((*sig)["id"], {{"sandbox", "1a2b3c4d"}});
			firstForwarded = true;
		}
		peer.notify("sandbox.exited", exited(0, 15));
		peer.waitClosed();
	});
	Gvmctl run(dir, {"--socket", socket, "launch", "--policy", policy, "--cooperative", "--", "sleep", "100"});
	REQUIRE(waitUntil([&] { return requested.load(); }));
	::kill(run.pid(), SIGINT);
	std::this_thread::sleep_for(100ms);
	interrupted = true;
	REQUIRE(waitUntil([&] { return firstForwarded.load(); }));
	::kill(run.pid(), SIGTERM);
	RunResult r = run.wait();
	gvmd.join();

	CHECK(r.status == 143);
	CHECK(r.err.empty());
	REQUIRE(signalRequests.size() == 2);
	CHECK(signalRequests[0]["method"] == "sandbox.signal");
	CHECK(signalRequests[0]["params"] == rpc::Json({{"sandbox", "1a2b3c4d"}, {"signal", SIGINT}}));
	CHECK(signalRequests[1]["params"] == rpc::Json({{"sandbox", "1a2b3c4d"}, {"signal", SIGTERM}}));
}

TEST_CASE("launch: gvmd's refusals and gvmd vanishing are gvmctl failures (exit 1)", "[launch][fake]")
{
	TempDir dir;
	const std::string policy = dir.write("policy.yaml", kPolicy);
	const std::string socket = dir.path() + "/gvmd.sock";

	SECTION("not cooperative")
	{
		rpc::Json params;
		FakeGvmd gvmd(socket, [&](Peer &peer) {
			auto req = peer.read();
			if (!req)
				return;
			params = (*req)["params"];
			peer.error((*req)["id"], rpc::kServerError,
				   "sandbox mode needs gvmd to run as root (it creates network namespaces); "
				   "use --cooperative with an unprivileged gvmd");
			peer.waitClosed();
		});
		RunResult r = Gvmctl(dir, {"--socket", socket, "launch", "--policy", policy, "--", "true"}).wait();
		gvmd.join();
		CHECK(params["cooperative"] == false);
		CHECK(r.status == 1);
		CHECK(r.err == "gvmctl: gvmd: sandbox mode needs gvmd to run as root (it creates network namespaces); "
			       "use --cooperative with an unprivileged gvmd\n");
	}
	SECTION("connection lost while the agent runs")
	{
		FakeGvmd gvmd(socket, [&](Peer &peer) {
			auto req = peer.read();
			if (!req)
				return;
			peer.result((*req)["id"], launchResult());
			peer.close();
		});
		RunResult r = Gvmctl(dir, {"--socket", socket, "launch", "--policy", policy, "--cooperative", "--",
					   "sleep", "100"})
				      .wait();
		gvmd.join();
		CHECK(r.status == 1);
		CHECK(r.out.empty());
		CHECK(r.err == "gvmctl: lost the connection to gvmd; the sandbox's network is cut off\n");
	}
	SECTION("exited, then the connection closes at once")
	{
		FakeGvmd gvmd(socket, [&](Peer &peer) {
			auto req = peer.read();
			if (!req)
				return;
			peer.send(rpc::encodeResult((*req)["id"], launchResult()) +
				  rpc::encodeNotification("sandbox.exited", exited(3, 0)));
			peer.close();
		});
		RunResult r = Gvmctl(dir, {"--socket", socket, "launch", "--policy", policy, "--cooperative", "--",
					   "false"})
				      .wait();
		gvmd.join();
		CHECK(r.status == 3);
		CHECK(r.err.empty());
	}
	SECTION("a missing upstream CA file stops gvmctl before gvmd")
	{
		RunResult r = Gvmctl(dir, {"--socket", socket, "launch", "--policy", policy, "--cooperative",
					   "--upstream-ca", dir.path() + "/none.pem", "--", "true"})
				      .wait();
		CHECK(r.status == 1);
		CHECK(r.err == "gvmctl: cannot read upstream CA file " + dir.path() +
				       "/none.pem: No such file or directory\n");
	}
	SECTION("a broken policy stops gvmctl before gvmd, with file:line:column")
	{
		const std::string broken = dir.write("broken.yaml", "version: 1\nname: b\nrules:\n  - name: a\n    hots: [x]\n"
								    "    action: allow\n");
		RunResult r = Gvmctl(dir, {"--socket", socket, "launch", "--policy", broken, "--cooperative", "--",
					   "true"})
				      .wait();
		CHECK(r.status == 1);
		CHECK_THAT(r.err, Catch::StartsWith(broken + ":5:5: unknown key 'hots'"));
		CHECK_THAT(r.err, Catch::EndsWith(broken + ": 1 error, nothing was sent to gvmd\n"));
	}
}

TEST_CASE("launch with a terminal: the agent gets a pty; keys, output and window size are relayed; the "
	  "terminal is restored",
	  "[launch][fake][pty]")
{
	TempDir dir;
	const std::string policy = dir.write("policy.yaml", kPolicy);
	const std::string socket = dir.path() + "/gvmd.sock";

	// The caller's terminal: a pty whose slave is gvmctl's stdin, stdout
	// and stderr.
	UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
	REQUIRE(master);
	REQUIRE(::grantpt(master.get()) == 0);
	REQUIRE(::unlockpt(master.get()) == 0);
	char name[PATH_MAX];
	REQUIRE(::ptsname_r(master.get(), name, sizeof(name)) == 0);
	UniqueFd slave(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
	REQUIRE(slave);
	winsize size{};
	size.ws_row = 40;
	size.ws_col = 120;
	REQUIRE(::ioctl(master.get(), TIOCSWINSZ, &size) == 0);
	termios before{};
	REQUIRE(::tcgetattr(slave.get(), &before) == 0);
	REQUIRE((before.c_lflag & (ICANON | ECHO)) == (ICANON | ECHO));
	REQUIRE(::fcntl(master.get(), F_SETFL, O_NONBLOCK) == 0);

	rpc::Json params;
	size_t fdCount = 0;
	bool allTtys = false;
	bool oneTerminal = false;
	bool cooked = false;
	winsize seenSize{};
	winsize resized{};
	bool rawDuring = false;
	std::string input;
	std::atomic<bool> launched{false};
	FakeGvmd gvmd(socket, [&](Peer &peer) {
		std::vector<UniqueFd> fds;
		auto req = peer.read(&fds);
		if (!req)
			return;
		params = (*req)["params"];
		fdCount = fds.size();
		if (fds.size() != 3)
			return;
		struct stat a{}, b{}, c{};
		allTtys = ::isatty(fds[0].get()) && ::isatty(fds[1].get()) && ::isatty(fds[2].get());
		oneTerminal = ::fstat(fds[0].get(), &a) == 0 && ::fstat(fds[1].get(), &b) == 0 &&
			      ::fstat(fds[2].get(), &c) == 0 && a.st_rdev == b.st_rdev && b.st_rdev == c.st_rdev;
		termios mode{};
		cooked = ::tcgetattr(fds[0].get(), &mode) == 0 && (mode.c_lflag & (ICANON | ECHO)) == (ICANON | ECHO);
		::ioctl(fds[0].get(), TIOCGWINSZ, &seenSize);
		(void)!::write(fds[1].get(), "hello\n", 6);
		peer.result((*req)["id"], launchResult());
		launched = true;
		// The agent reads a line that the user typed.
		const auto deadline = Clock::now() + 10s;
		while (input.find('\n') == std::string::npos && Clock::now() < deadline) {
			pollfd p{fds[0].get(), POLLIN, 0};
			if (::poll(&p, 1, 50) <= 0)
				continue;
			char buf[256];
			ssize_t n = ::read(fds[0].get(), buf, sizeof(buf));
			if (n <= 0)
				break;
			input.append(buf, static_cast<size_t>(n));
		}
		// gvmctl relays keys only once the caller's terminal is raw.
		termios outer{};
		rawDuring = ::tcgetattr(slave.get(), &outer) == 0 && (outer.c_lflag & (ICANON | ECHO | ISIG)) == 0;
		// A resized window reaches the agent's terminal.
		waitUntil([&] { return ::ioctl(fds[0].get(), TIOCGWINSZ, &resized) == 0 && resized.ws_row == 50; });
		// The agent exits: its side of the pty closes.
		fds.clear();
		peer.notify("sandbox.exited", exited(7, 0));
		peer.waitClosed();
	});

	pid_t pid = spawnGvmctl({"--socket", socket, "launch", "--policy", policy, "--cooperative", "--", "bash"},
				slave.get(), slave.get(), slave.get(), true);
	REQUIRE(pid > 0);
	std::string screen;
	bool typed = false;
	std::optional<int> status;
	const auto deadline = Clock::now() + 15s;
	while (!status && Clock::now() < deadline) {
		pollfd p{master.get(), POLLIN, 0};
		if (::poll(&p, 1, 20) > 0) {
			char buf[4096];
			ssize_t n = ::read(master.get(), buf, sizeof(buf));
			if (n > 0)
				screen.append(buf, static_cast<size_t>(n));
		}
		if (launched && !typed) {
			winsize bigger{};
			bigger.ws_row = 50;
			bigger.ws_col = 132;
			REQUIRE(::ioctl(master.get(), TIOCSWINSZ, &bigger) == 0);
			// The caller's terminal is no controlling terminal here,
			// so the kernel sends no SIGWINCH: do it as it would.
			::kill(pid, SIGWINCH);
			REQUIRE(::write(master.get(), "ping\r", 5) == 5);
			typed = true;
		}
		int st = 0;
		if (::waitpid(pid, &st, WNOHANG) == pid)
			status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
	if (!status) {
		::kill(pid, SIGKILL);
		::waitpid(pid, nullptr, 0);
	}
	for (;;) {
		char buf[4096];
		ssize_t n = ::read(master.get(), buf, sizeof(buf));
		if (n <= 0)
			break;
		screen.append(buf, static_cast<size_t>(n));
	}
	gvmd.join();

	CHECK(status == 7);
	CHECK(params["tty"] == true);
	CHECK(fdCount == 3);
	CHECK(allTtys);
	CHECK(oneTerminal);
	CHECK(cooked); // the caller's mode, copied before gvmctl went raw
	CHECK(seenSize.ws_row == 40);
	CHECK(seenSize.ws_col == 120);
	CHECK(input == "ping\n");
	CHECK(rawDuring);
	CHECK(resized.ws_row == 50);
	CHECK(resized.ws_col == 132);
	// Processed once, by the agent's pty: the agent writes before the
	// launch result reaches gvmctl, and gvmctl holds that output back
	// until the caller's terminal is raw.
	CHECK_THAT(screen, Catch::Contains("hello\r\n"));
	CHECK_THAT(screen, !Catch::Contains("\r\r\n"));
	termios after{};
	REQUIRE(::tcgetattr(slave.get(), &after) == 0);
	CHECK(after.c_lflag == before.c_lflag);
	CHECK(after.c_iflag == before.c_iflag);
	CHECK(after.c_oflag == before.c_oflag);
	CHECK(after.c_cflag == before.c_cflag);
}

TEST_CASE("tail --json: one record per line until gvmd closes (exit 1)", "[tail][fake]")
{
	TempDir dir;
	const std::string socket = dir.path() + "/gvmd.sock";
	rpc::Json subscribe;
	FakeGvmd gvmd(socket, [&](Peer &peer) {
		auto req = peer.read();
		if (!req)
			return;
		subscribe = *req;
		peer.result((*req)["id"], {{"subscribed", true}});
		peer.notify("decision", {{"record", decisionRecord(1, "allow")}});
		peer.notify("decision", {{"record", decisionRecord(2, "deny")}});
		std::this_thread::sleep_for(100ms);
		peer.close();
	});
	RunResult r = Gvmctl(dir, {"--socket", socket, "tail", "1a2b3c4d", "--json"}).wait();
	gvmd.join();

	CHECK(subscribe["method"] == "decisions.subscribe");
	CHECK(subscribe["params"] == rpc::Json({{"sandbox", "1a2b3c4d"}}));
	CHECK(r.status == 1);
	CHECK(r.err == "gvmctl: gvmd closed the connection\n");
	const auto out = lines(r.out);
	REQUIRE(out.size() == 2);
	CHECK(rpc::parseJson(out[0]) == decisionRecord(1, "allow"));
	CHECK(rpc::parseJson(out[1]) == decisionRecord(2, "deny"));
}

TEST_CASE("tail: human lines; a reader that goes away ends it quietly", "[tail][fake]")
{
	TempDir dir;
	const std::string socket = dir.path() + "/gvmd.sock";
	std::atomic<bool> readerGone{false};
	bool clientLeft = false;
	FakeGvmd gvmd(socket, [&](Peer &peer) {
		auto req = peer.read();
		if (!req)
			return;
		peer.result((*req)["id"], {{"subscribed", true}});
		peer.notify("decision", {{"record", decisionRecord(1, "deny")}});
		waitUntil([&] { return readerGone.load(); });
		// gvmctl leaves without waiting for another record.
		clientLeft = peer.waitClosed(5s);
	});

	int pipeFds[2];
	REQUIRE(::pipe2(pipeFds, O_CLOEXEC) == 0);
	UniqueFd readEnd(pipeFds[0]);
	UniqueFd writeEnd(pipeFds[1]);
	UniqueFd in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
	UniqueFd err(::open((dir.path() + "/err").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
	pid_t pid = spawnGvmctl({"--socket", socket, "tail"}, in.get(), writeEnd.get(), err.get());
	REQUIRE(pid > 0);
	writeEnd.reset();

	// Like `head -1`: one line, then close.
	std::string first;
	const auto deadline = Clock::now() + 10s;
	while (first.find('\n') == std::string::npos && Clock::now() < deadline) {
		pollfd p{readEnd.get(), POLLIN, 0};
		if (::poll(&p, 1, 50) <= 0)
			continue;
		char c;
		if (::read(readEnd.get(), &c, 1) != 1)
			break;
		first += c;
	}
	readEnd.reset();
	readerGone = true;
	std::optional<int> status = waitExit(pid);
	gvmd.join();

	CHECK(first == "2026-11-23T10:30:08.123456Z deny   http GET github.com:443/x -> 200 rule=github sandbox=1a2b3c4d\n");
	CHECK(status == 0);
	CHECK(readAll(dir.path() + "/err").empty());
	CHECK(clientLeft);
}

TEST_CASE("approve and deny: hold.answer; an unknown id is exit 1 with a message", "[approve][fake]")
{
	TempDir dir;
	const std::string socket = dir.path() + "/gvmd.sock";
	rpc::Json request;

	SECTION("unknown id")
	{
		FakeGvmd gvmd(socket, [&](Peer &peer) {
			auto req = peer.read();
			if (!req)
				return;
			request = *req;
			peer.error((*req)["id"], rpc::kNotFound, "no pending request 'ffffffff-9'");
		});
		RunResult r = Gvmctl(dir, {"--socket", socket, "approve", "ffffffff-9"}).wait();
		gvmd.join();
		CHECK(request["method"] == "hold.answer");
		CHECK(request["params"] == rpc::Json({{"request_id", "ffffffff-9"}, {"approve", true}}));
		CHECK(r.status == 1);
		CHECK(r.out.empty());
		CHECK(r.err == "gvmctl: no pending request ffffffff-9\n");
	}
	SECTION("deny a pending request")
	{
		FakeGvmd gvmd(socket, [&](Peer &peer) {
			auto req = peer.read();
			if (!req)
				return;
			request = *req;
			peer.result((*req)["id"], {{"request_id", "1a2b3c4d-3"}, {"approved", false}});
		});
		RunResult r = Gvmctl(dir, {"--socket", socket, "deny", "1a2b3c4d-3"}).wait();
		gvmd.join();
		CHECK(request["params"] == rpc::Json({{"request_id", "1a2b3c4d-3"}, {"approve", false}}));
		CHECK(r.status == 0);
		CHECK(r.out == "denied 1a2b3c4d-3\n");
		CHECK(r.err.empty());
	}
}

TEST_CASE("ps, stop, pending and policy reload against gvmd's answers", "[ps][fake]")
{
	TempDir dir;
	const std::string socket = dir.path() + "/gvmd.sock";
	rpc::Json request;
	auto answer = [&](rpc::Json result) {
		return [&request, result](Peer &peer) {
			auto req = peer.read();
			if (!req)
				return;
			request = *req;
			peer.result((*req)["id"], result);
		};
	};

	SECTION("ps --all")
	{
		rpc::Json list = {{"sandboxes",
				   {{{"id", "1a2b3c4d"},
				     {"name", "t1"},
				     {"uid", 1000},
				     {"policy", "fake-test"},
				     {"mode", "enforce"},
				     {"cooperative", true},
				     {"age_s", 65},
				     {"command", {"bash"}},
				     {"state", "running"},
				     {"connections_open", 1},
				     {"decisions", 9},
				     {"pending", 0}}}}};
		FakeGvmd gvmd(socket, answer(list));
		RunResult r = Gvmctl(dir, {"--socket", socket, "ps", "--all"}).wait();
		gvmd.join();
		CHECK(request["method"] == "sandbox.list");
		CHECK(request["params"] == rpc::Json({{"all", true}}));
		CHECK(r.status == 0);
		CHECK(r.out == "ID        NAME  UID   POLICY     MODE          AGE  STATE    CONNS  DECISIONS  PENDING  MEM  PIDS  "
			       "CPU  COMMAND\n"
			       "1a2b3c4d  t1    1000  fake-test  enforce,coop  1m   running  1      9          0        -    -     "
			       "-    bash\n");
	}
	SECTION("ps --json prints the answer")
	{
		FakeGvmd gvmd(socket, answer({{"sandboxes", rpc::Json::array()}}));
		RunResult r = Gvmctl(dir, {"--socket", socket, "ps", "--json"}).wait();
		gvmd.join();
		CHECK(request["params"] == rpc::Json::object());
		CHECK(r.out == "{\"sandboxes\":[]}\n");
	}
	SECTION("stop someone else's sandbox")
	{
		FakeGvmd gvmd(socket, [&](Peer &peer) {
			auto req = peer.read();
			if (!req)
				return;
			request = *req;
			peer.error((*req)["id"], rpc::kNotFound, "no sandbox '99999999'");
		});
		RunResult r = Gvmctl(dir, {"--socket", socket, "stop", "99999999"}).wait();
		gvmd.join();
		CHECK(request["method"] == "sandbox.stop");
		CHECK(request["params"] == rpc::Json({{"sandbox", "99999999"}}));
		CHECK(r.status == 1);
		CHECK(r.err == "gvmctl: no sandbox 99999999\n");
	}
	SECTION("pending")
	{
		rpc::Json held = {{"pending",
				   {{{"request_id", "1a2b3c4d-1"},
				     {"sandbox", "1a2b3c4d"},
				     {"method", "POST"},
				     {"host", "api.sendgrid.com"},
				     {"port", 443},
				     {"path", "/v3/mail/send"},
				     {"rule", "mail"},
				     {"expires", "2026-11-23T10:32:08Z"},
				     {"remaining_ms", 30000}}}}};
		FakeGvmd gvmd(socket, answer(held));
		RunResult r = Gvmctl(dir, {"--socket", socket, "pending"}).wait();
		gvmd.join();
		CHECK(request["method"] == "hold.list");
		CHECK(r.status == 0);
		CHECK(r.out == "ID          SANDBOX   METHOD  HOST              PATH           RULE  EXPIRES-IN\n"
			       "1a2b3c4d-1  1a2b3c4d  POST    api.sendgrid.com  /v3/mail/send  mail  30s\n");
	}
	SECTION("policy reload")
	{
		const std::string policy = dir.write("policy.yaml", kPolicy);
		FakeGvmd gvmd(socket, answer({{"sandbox", "1a2b3c4d"},
					      {"policy", "fake-test"},
					      {"sha256", "0123456789abcdef0123456789abcdef"},
					      {"rules", 1},
					      {"mode", "enforce"}}));
		RunResult r = Gvmctl(dir, {"--socket", socket, "policy", "reload", "1a2b3c4d", policy}).wait();
		gvmd.join();
		CHECK(request["method"] == "policy.reload");
		CHECK(request["params"] ==
		      rpc::Json({{"sandbox", "1a2b3c4d"}, {"policy_text", kPolicy}, {"policy_file", policy}}));
		CHECK(r.status == 0);
		CHECK(r.out == "sandbox 1a2b3c4d now enforces fake-test (sha256 0123456789ab…, 1 rule)\n");
	}
	SECTION("policy reload of a broken policy asks gvmd nothing")
	{
		const std::string broken = dir.write("broken.yaml", "version: 2\n");
		RunResult r = Gvmctl(dir, {"--socket", socket, "policy", "reload", "1a2b3c4d", broken}).wait();
		CHECK(r.status == 1);
		CHECK_THAT(r.err, Catch::StartsWith(broken + ":1:"));
		CHECK_THAT(r.err, Catch::EndsWith("nothing was sent to gvmd\n"));
		CHECK_THAT(r.err, !Catch::Contains("cannot reach"));
	}
}
