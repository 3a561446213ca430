// SPDX-License-Identifier: Apache-2.0
//
// As root: gvmd identifies callers by SO_PEERCRED, not by anything they
// send; only root and the socket's group can reach it; the per-uid client
// limit of one user does not lock out another.
#include <catch2/catch.hpp>

#include <cerrno>
#include <filesystem>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/json_rpc.h"
#include "daemon/rpc_server.h"
#include "tests/support/audit_log.h"
#include "tests/support/process.h"

using namespace gvm;
using namespace gvm::test;

namespace {

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

struct Outcome {
	int connectErrno = 0;
	std::string reply; // the daemon.status reply line, if connected
};

// Runs a client in a child process as uid/gid nobody with the given
// supplementary groups, and reports what it got.
Outcome connectAs(const std::string &socket, const std::vector<gid_t> &groups,
		  const std::string &method = "daemon.status")
{
	int fds[2];
	REQUIRE(::pipe(fds) == 0);
	pid_t pid = ::fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		::close(fds[0]);
		if (::setgroups(groups.size(), groups.data()) < 0 || ::setgid(kNogroup) < 0 || ::setuid(kNobody) < 0)
			::_exit(3);
		RawClient c(socket);
		std::string msg;
		if (!c.connected()) {
			msg = "E" + std::to_string(c.error());
		} else {
			auto reply = c.call(method);
			msg = "R" + (reply ? rpc::dumpJson(*reply) : std::string("{}"));
		}
		[[maybe_unused]] ssize_t n = ::write(fds[1], msg.data(), msg.size());
		::_exit(0);
	}
	::close(fds[1]);
	std::string got;
	char buf[4096];
	ssize_t n;
	while ((n = ::read(fds[0], buf, sizeof(buf))) > 0)
		got.append(buf, static_cast<size_t>(n));
	::close(fds[0]);
	int status = 0;
	::waitpid(pid, &status, 0);
	REQUIRE(WIFEXITED(status));
	REQUIRE(WEXITSTATUS(status) == 0);
	REQUIRE(!got.empty());
	Outcome o;
	if (got[0] == 'E')
		o.connectErrno = std::stoi(got.substr(1));
	else
		o.reply = got.substr(1);
	return o;
}

} // namespace

TEST_CASE("gvmd tells users apart by SO_PEERCRED and the socket keeps others out", "[peercred]")
{
	TempDir dir;
	// nobody must be able to traverse to the socket; the socket's own mode
	// and group are what decide.
	REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
	std::string socket = dir.path() + "/run/gvmd.sock";
	Child gvmd = Child::start({binaryFromEnv("GVM_GVMD"), "--socket", socket, "--state-dir",
				   dir.path() + "/state"},
				  {}, dir.path() + "/gvmd.log");
	REQUIRE(waitFor([&] { return RawClient(socket).connected(); }));

	struct stat st{};
	REQUIRE(::stat(socket.c_str(), &st) == 0);
	CHECK((st.st_mode & 07777) == 0660);
	CHECK(st.st_uid == 0);
	if (group *g = ::getgrnam("gvm"))
		CHECK(st.st_gid == g->gr_gid);

	SECTION("a user outside the socket's group cannot connect")
	{
		Outcome o = connectAs(socket, {});
		CHECK(o.connectErrno == EACCES);
	}

	SECTION("a member of the socket's group is seen as its own uid, not root")
	{
		Outcome o = connectAs(socket, {st.st_gid});
		REQUIRE(o.connectErrno == 0);
		auto reply = rpc::parseJson(o.reply);
		REQUIRE(reply);
		REQUIRE(reply->contains("result"));
		CHECK((*reply)["result"]["caller"]["uid"] == kNobody);
		CHECK((*reply)["result"]["caller"]["gid"] == kNogroup);
	}

	SECTION("root filling its client quota does not lock out another user")
	{
		std::vector<std::unique_ptr<RawClient>> rootClients;
		for (size_t i = 0; i < daemon::kMaxClientsPerUid; ++i) {
			rootClients.push_back(std::make_unique<RawClient>(socket));
			REQUIRE(rootClients.back()->call("daemon.status"));
		}
		RawClient extra(socket);
		auto refused = rpc::parseJson(extra.readLine().value_or(""));
		REQUIRE(refused);
		CHECK((*refused)["error"]["code"] == rpc::kTooManyClients);

		Outcome o = connectAs(socket, {st.st_gid});
		REQUIRE(o.connectErrno == 0);
		auto reply = rpc::parseJson(o.reply);
		REQUIRE(reply);
		CHECK((*reply)["result"]["caller"]["uid"] == kNobody);
	}
}

TEST_CASE("a user sees only the audit records of their own sandboxes", "[peercred]")
{
	TempDir dir;
	REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
	std::string stateDir = dir.path() + "/state";
	std::vector<nlohmann::json> seeded;
	for (int i = 0; i < 6; ++i)
		seeded.push_back({{"uid", i % 2 ? kNobody : 1000u}, {"sandbox", "sb" + std::to_string(i)},
				  {"kind", "http"}, {"action", "allow"}});
	writeAuditLog(stateDir + "/audit", seeded);
	std::string socket = dir.path() + "/run/gvmd.sock";
	Child gvmd = Child::start({binaryFromEnv("GVM_GVMD"), "--socket", socket, "--state-dir", stateDir}, {},
				  dir.path() + "/gvmd.log");
	REQUIRE(waitFor([&] { return RawClient(socket).connected(); }));
	struct stat st{};
	REQUIRE(::stat(socket.c_str(), &st) == 0);

	Outcome o = connectAs(socket, {st.st_gid}, "audit.show");
	REQUIRE(o.connectErrno == 0);
	auto reply = rpc::parseJson(o.reply);
	REQUIRE(reply);
	auto &records = (*reply)["result"]["records"];
	REQUIRE(records.size() == 3);
	for (auto &r : records)
		CHECK(r["uid"] == kNobody);

	// Root sees everyone's.
	auto rootReply = RawClient(socket).call("audit.show");
	REQUIRE(rootReply);
	CHECK((*rootReply)["result"]["records"].size() == 6);
}
