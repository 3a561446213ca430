// SPDX-License-Identifier: Apache-2.0
//
// gvmd and gvmctl, the real binaries, on a private socket: status over
// JSON-RPC, peer credentials, malformed and oversized input, client limits,
// readiness notification and clean shutdown.
#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

#include "common/json_rpc.h"
#include "daemon/rpc_server.h"
#include "tests/support/process.h"

using namespace gvm;
using namespace gvm::test;
using namespace std::chrono_literals;

namespace {

// A gvmd on a temporary socket and state directory, stopped on destruction.
struct DaemonFixture {
	TempDir dir;
	std::string socket = dir.path() + "/run/gvmd.sock";
	std::string stateDir = dir.path() + "/state";
	std::string log = dir.path() + "/gvmd.log";
	Child gvmd;

	explicit DaemonFixture(std::vector<std::string> env = {})
	{
		gvmd = Child::start({binaryFromEnv("GVM_GVMD"), "--socket", socket, "--state-dir", stateDir,
				     "--runtime-dir", dir.path() + "/run", "--log-level", "debug"},
				    env, log);
		REQUIRE(waitFor([&] { return RawClient(socket).connected(); }));
	}

	RunResult gvmctl(std::vector<std::string> args, std::vector<std::string> env = {})
	{
		args.insert(args.begin(), binaryFromEnv("GVM_GVMCTL"));
		return run(args, env);
	}
};

rpc::Json errorOf(const std::optional<rpc::Json> &reply)
{
	REQUIRE(reply);
	REQUIRE(reply->contains("error"));
	return (*reply)["error"];
}

} // namespace

TEST_CASE("gvmctl status talks to gvmd over JSON-RPC", "[daemon]")
{
	DaemonFixture d;
	RunResult r = d.gvmctl({"--socket", d.socket, "status", "--json"});
	INFO(r.err);
	REQUIRE(r.status == 0);
	auto s = rpc::parseJson(r.out);
	REQUIRE(s);
	CHECK((*s)["version"] == "0.1.0");
	CHECK((*s)["pid"] == d.gvmd.pid());
	CHECK((*s)["sandboxes"] == 0);
	CHECK((*s)["socket"] == d.socket);
	CHECK((*s)["state_dir"] == d.stateDir);
	CHECK((*s)["uptime_s"].get<double>() >= 0.0);
	CHECK((*s)["caller"]["uid"] == ::getuid());

	// GVM_SOCKET finds the daemon too; the human form names the essentials.
	RunResult h = d.gvmctl({"status"}, {"GVM_SOCKET=" + d.socket});
	REQUIRE(h.status == 0);
	CHECK_THAT(h.out, Catch::Contains("gvmd 0.1.0 (pid " + std::to_string(d.gvmd.pid()) + ")"));
	CHECK_THAT(h.out, Catch::Contains("sandboxes:  0"));
}

TEST_CASE("gvmd reports the caller's own pid and uid from SO_PEERCRED", "[daemon]")
{
	DaemonFixture d;
	RawClient c(d.socket);
	REQUIRE(c.connected());
	auto reply = c.call("daemon.status");
	REQUIRE(reply);
	CHECK((*reply)["result"]["caller"]["pid"] == ::getpid());
	CHECK((*reply)["result"]["caller"]["uid"] == ::getuid());
	CHECK((*reply)["result"]["caller"]["gid"] == ::getgid());
}

TEST_CASE("the control socket is not reachable by others", "[daemon]")
{
	DaemonFixture d;
	struct stat st{};
	REQUIRE(::stat(d.socket.c_str(), &st) == 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK((st.st_mode & 07777) == 0660);
}

TEST_CASE("malformed requests get JSON-RPC errors and the connection survives", "[daemon]")
{
	DaemonFixture d;
	RawClient c(d.socket);
	REQUIRE(c.connected());

	REQUIRE(c.sendRaw("this is not json\n"));
	auto parseErr = errorOf(rpc::parseJson(c.readLine().value_or("")));
	CHECK(parseErr["code"] == rpc::kParseError);

	REQUIRE(c.sendRaw(R"({"jsonrpc":"2.0","id":4,"method":17})" "\n"));
	auto reply = rpc::parseJson(c.readLine().value_or(""));
	CHECK(errorOf(reply)["code"] == rpc::kInvalidRequest);
	CHECK((*reply)["id"] == 4);

	REQUIRE(c.sendRaw(R"({"jsonrpc":"2.0","id":5,"method":"no.such.method"})" "\n"));
	auto unknown = rpc::parseJson(c.readLine().value_or(""));
	CHECK(errorOf(unknown)["code"] == rpc::kMethodNotFound);
	CHECK((*unknown)["id"] == 5);

	// A request split across writes is reassembled.
	REQUIRE(c.sendRaw(R"({"jsonrpc":"2.0","id":6,)"));
	std::this_thread::sleep_for(50ms);
	REQUIRE(c.sendRaw(R"("method":"daemon.status"})" "\n"));
	auto split = rpc::parseJson(c.readLine().value_or(""));
	REQUIRE(split);
	CHECK((*split)["id"] == 6);
	CHECK((*split)["result"]["pid"] == d.gvmd.pid());

	// Notifications get no answer; the next request does.
	REQUIRE(c.sendRaw(R"({"jsonrpc":"2.0","method":"daemon.status"})" "\n"));
	auto after = c.call("daemon.status");
	REQUIRE(after);
	CHECK((*after)["id"] == 1);
}

TEST_CASE("a client that half-closes after its request still gets the answer", "[daemon]")
{
	DaemonFixture d;
	RawClient c(d.socket);
	REQUIRE(c.connected());
	REQUIRE(c.sendRaw(R"({"jsonrpc":"2.0","id":9,"method":"daemon.status"})" "\n"));
	REQUIRE(::shutdown(c.fd(), SHUT_WR) == 0);
	auto reply = rpc::parseJson(c.readLine().value_or(""));
	REQUIRE(reply);
	CHECK((*reply)["id"] == 9);
	CHECK((*reply)["result"]["pid"] == d.gvmd.pid());
	CHECK(c.closedByPeer());
}

TEST_CASE("an oversized message closes only that client", "[daemon]")
{
	DaemonFixture d;
	RawClient bystander(d.socket);
	REQUIRE(bystander.connected());

	RawClient big(d.socket);
	REQUIRE(big.connected());
	std::string chunk(64 * 1024, 'a');
	bool refusedEarly = false;
	for (size_t sent = 0; sent <= rpc::kMaxMessageBytes; sent += chunk.size()) {
		if (!big.sendRaw(chunk)) {
			refusedEarly = true; // gvmd already hung up
			break;
		}
	}
	if (!refusedEarly) {
		auto line = big.readLine();
		REQUIRE(line);
		CHECK(errorOf(rpc::parseJson(*line))["code"] == rpc::kMessageTooLarge);
	}
	CHECK(big.closedByPeer());

	auto reply = bystander.call("daemon.status");
	REQUIRE(reply);
	CHECK((*reply)["result"]["pid"] == d.gvmd.pid());
	CHECK(d.gvmd.running());
}

TEST_CASE("clients per uid are limited, and a freed slot can be reused", "[daemon]")
{
	DaemonFixture d;
	std::vector<std::unique_ptr<RawClient>> clients;
	for (size_t i = 0; i < daemon::kMaxClientsPerUid; ++i) {
		clients.push_back(std::make_unique<RawClient>(d.socket));
		REQUIRE(clients.back()->connected());
		// Each accepted client is served.
		REQUIRE(clients.back()->call("daemon.status"));
	}

	RawClient extra(d.socket);
	REQUIRE(extra.connected()); // the kernel accepts; gvmd refuses
	auto refusal = rpc::parseJson(extra.readLine().value_or(""));
	CHECK(errorOf(refusal)["code"] == rpc::kTooManyClients);
	CHECK(extra.closedByPeer());

	// gvmctl explains the refusal and fails.
	RunResult r = d.gvmctl({"--socket", d.socket, "status"});
	CHECK(r.status == 1);
	CHECK_THAT(r.err, Catch::Contains("too many connections"));

	clients.pop_back();
	CHECK(waitFor([&] {
		RawClient again(d.socket);
		auto reply = again.call("daemon.status");
		return reply && reply->contains("result");
	}));
	auto status = clients.front()->call("daemon.status");
	REQUIRE(status);
	CHECK((*status)["result"]["clients"].get<int>() <= static_cast<int>(daemon::kMaxClientsPerUid));
}

TEST_CASE("gvmd announces readiness and stopping to systemd, and exits cleanly on SIGTERM", "[daemon]")
{
	TempDir notifyDir;
	std::string notifyPath = notifyDir.path() + "/notify";
	UniqueFd notify(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	sockaddr_un addr{};
	addr.sun_family = AF_UNIX;
	std::strncpy(addr.sun_path, notifyPath.c_str(), sizeof(addr.sun_path) - 1);
	REQUIRE(::bind(notify.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0);

	auto receive = [&](const std::string &what) {
		std::string all;
		waitFor(
			[&] {
				char buf[4096];
				ssize_t n = ::recv(notify.get(), buf, sizeof(buf), MSG_DONTWAIT);
				if (n > 0)
					all.append(buf, static_cast<size_t>(n)).append("\n");
				return all.find(what) != std::string::npos;
			},
			5s);
		return all;
	};

	DaemonFixture d({"NOTIFY_SOCKET=" + notifyPath});
	CHECK_THAT(receive("READY=1"), Catch::Contains("READY=1"));

	auto status = d.gvmd.stop(SIGTERM);
	REQUIRE(status);
	CHECK(*status == 0);
	CHECK_THAT(receive("STOPPING=1"), Catch::Contains("STOPPING=1"));
	// gvmd removes the socket it created.
	CHECK_FALSE(std::filesystem::exists(d.socket));
}

TEST_CASE("a second gvmd refuses a live socket but replaces a stale one", "[daemon]")
{
	DaemonFixture d;
	RunResult second = run({binaryFromEnv("GVM_GVMD"), "--socket", d.socket, "--state-dir", d.stateDir});
	CHECK(second.status == 1);
	CHECK_THAT(second.err, Catch::Contains("another gvmd is listening"));
	// The first one is untouched.
	REQUIRE(RawClient(d.socket).call("daemon.status"));

	// Killed without cleanup: its socket file stays behind, and the next
	// gvmd takes over.
	d.gvmd.stop(SIGKILL);
	REQUIRE(std::filesystem::exists(d.socket));
	Child next = Child::start({binaryFromEnv("GVM_GVMD"), "--socket", d.socket, "--state-dir", d.stateDir}, {},
				  d.log);
	CHECK(waitFor([&] {
		auto reply = RawClient(d.socket).call("daemon.status");
		return reply && (*reply)["result"]["pid"] == next.pid();
	}));
}

TEST_CASE("gvmctl explains an unreachable daemon and rejects bad usage", "[client]")
{
	TempDir dir;
	RunResult r = run({binaryFromEnv("GVM_GVMCTL"), "--socket", dir.path() + "/none.sock", "status"});
	CHECK(r.status == 1);
	CHECK_THAT(r.err, Catch::Contains("cannot reach gvmd at " + dir.path() + "/none.sock"));
	CHECK_THAT(r.err, Catch::Contains("is gvmd running?"));

	RunResult bad = run({binaryFromEnv("GVM_GVMCTL"), "status", "--bogus"});
	CHECK(bad.status == 2);
	CHECK_THAT(bad.err, Catch::Contains("unknown option '--bogus'"));
	CHECK_THAT(bad.err, Catch::Contains("Usage: gvmctl status"));

	RunResult unknown = run({binaryFromEnv("GVM_GVMCTL"), "frobnicate"});
	CHECK(unknown.status == 2);
	CHECK_THAT(unknown.err, Catch::Contains("unknown command 'frobnicate'"));

	for (std::vector<std::string> help : std::vector<std::vector<std::string>>{
		     {"--help"}, {"status", "--help"}, {"policy", "--help"}, {"help", "policy"}}) {
		help.insert(help.begin(), binaryFromEnv("GVM_GVMCTL"));
		RunResult h = run(help);
		CHECK(h.status == 0);
		CHECK_THAT(h.out, Catch::Contains("Usage: gvmctl"));
	}

	RunResult daemonBad = run({binaryFromEnv("GVM_GVMD"), "--frobnicate"});
	CHECK(daemonBad.status == 2);
	CHECK_THAT(daemonBad.err, Catch::Contains("unknown argument '--frobnicate'"));
}
