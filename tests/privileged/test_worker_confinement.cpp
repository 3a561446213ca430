// SPDX-License-Identifier: Apache-2.0
//
// As root: a process confined as a proxy worker is not root, holds no
// capability, has no_new_privs and seccomp in filter mode, and every escape
// a compromised parser might try fails, while what a worker needs works.
#include <catch2/catch.hpp>

#include <cerrno>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <netinet/in.h>
#include <sched.h>
#include <sstream>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "common/loop.h"
#include "daemon/proxy/worker_confinement.h"
#include "daemon/worker_process.h"
#include "tests/support/process.h"

using namespace gvm;

namespace {

std::map<std::string, std::string> procStatus(pid_t pid)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/status");
	std::map<std::string, std::string> fields;
	for (std::string line; std::getline(in, line);) {
		auto colon = line.find(':');
		if (colon == std::string::npos)
			continue;
		std::string value = line.substr(colon + 1);
		value.erase(0, value.find_first_not_of(" \t"));
		fields[line.substr(0, colon)] = value;
	}
	return fields;
}

// "name=errno" for each attempt, "name=0" when it succeeded.
std::string attempt(const char *name, bool ok)
{
	return std::string(name) + "=" + std::to_string(ok ? 0 : errno) + "\n";
}

} // namespace

TEST_CASE("a confined proxy worker is unprivileged and cannot escape", "[worker]")
{
	auto identity = proxy::resolveWorkerIdentity();
	REQUIRE(identity);
	CHECK(identity->uid != 0);

	int report[2], hold[2];
	REQUIRE(::pipe(report) == 0);
	REQUIRE(::pipe(hold) == 0);
	pid_t pid = ::fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		::close(report[0]);
		::close(hold[1]);
		std::string out;
		auto confined = proxy::confineWorker(*identity);
		out += attempt("confine", static_cast<bool>(confined));

		// What a worker needs.
		int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		out += attempt("socket-inet", tcp >= 0);
		int udp6 = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		out += attempt("socket-inet6", udp6 >= 0);
		char rnd[16];
		out += attempt("getrandom", ::getrandom(rnd, sizeof(rnd), 0) == sizeof(rnd));
		bool threadRan = false;
		std::thread([&] { threadRan = true; }).join();
		out += attempt("thread", threadRan);
		int rd = ::open("/etc/hosts", O_RDONLY | O_CLOEXEC);
		out += attempt("open-readonly", rd >= 0);

		// What it must not do.
		out += attempt("socket-packet", ::socket(AF_PACKET, SOCK_RAW, 0) >= 0);
		out += attempt("socket-netlink", ::socket(AF_NETLINK, SOCK_RAW, 0) >= 0);
		out += attempt("socket-raw", ::socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) >= 0);
		out += attempt("open-create", ::open("/tmp/gvm-worker-escape", O_WRONLY | O_CREAT | O_CLOEXEC, 0600) >= 0);
		out += attempt("open-write", ::open("/etc/hosts", O_WRONLY | O_CLOEXEC) >= 0);
		out += attempt("setuid-root", ::setuid(0) == 0);
		out += attempt("ptrace", ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) == 0);
		out += attempt("unshare-net", ::unshare(CLONE_NEWNET) == 0);
		out += attempt("mount", ::mount("none", "/tmp", "tmpfs", 0, nullptr) == 0);
		out += attempt("fork", ::fork() >= 0);
		char *const argv[] = {const_cast<char *>("/bin/true"), nullptr};
		out += attempt("execve", ::execve("/bin/true", argv, nullptr) == 0);

		[[maybe_unused]] ssize_t w = ::write(report[1], out.data(), out.size());
		::close(report[1]);
		char c;
		[[maybe_unused]] ssize_t r = ::read(hold[0], &c, 1); // until the parent has looked
		::_exit(0);
	}
	::close(report[1]);
	::close(hold[0]);
	std::string text;
	char buf[4096];
	ssize_t n;
	while ((n = ::read(report[0], buf, sizeof(buf))) > 0)
		text.append(buf, static_cast<size_t>(n));
	::close(report[0]);

	auto status = procStatus(pid);
	::close(hold[1]);
	int wstatus = 0;
	REQUIRE(::waitpid(pid, &wstatus, 0) == pid);
	INFO(text);
	CHECK(WIFEXITED(wstatus));

	std::map<std::string, int> results;
	std::istringstream lines(text);
	for (std::string line; std::getline(lines, line);)
		results[line.substr(0, line.find('='))] = std::stoi(line.substr(line.find('=') + 1));

	REQUIRE(results.count("confine"));
	REQUIRE(results["confine"] == 0);

	// The identity, as the kernel reports it.
	const std::string uid = std::to_string(identity->uid);
	CHECK(status["Uid"] == uid + "\t" + uid + "\t" + uid + "\t" + uid);
	CHECK(status["Groups"].empty());
	CHECK(status["CapEff"] == "0000000000000000");
	CHECK(status["CapPrm"] == "0000000000000000");
	CHECK(status["CapBnd"] == "0000000000000000");
	CHECK(status["CapAmb"] == "0000000000000000");
	CHECK(status["NoNewPrivs"] == "1");
	CHECK(status["Seccomp"] == "2");

	for (const char *allowed : {"socket-inet", "socket-inet6", "getrandom", "thread", "open-readonly"}) {
		INFO(allowed);
		CHECK(results[allowed] == 0);
	}
	for (const char *denied : {"socket-packet", "socket-netlink", "socket-raw", "open-create", "open-write",
				   "setuid-root", "ptrace", "unshare-net", "mount", "fork", "execve"}) {
		INFO(denied);
		CHECK(results[denied] == EPERM);
	}
	CHECK(::access("/tmp/gvm-worker-escape", F_OK) != 0);
}

TEST_CASE("the gvm-worker that gvmd starts runs confined", "[worker]")
{
	auto loop = Loop::create();
	REQUIRE(loop);
	auto worker = daemon::WorkerProcess::spawn(**loop, test::binaryFromEnv("GVM_WORKER"), {}, "warning");
	REQUIRE(worker);
	// Once it answers, it has confined itself (that comes before its loop).
	std::optional<Result<rpc::Json>> ping;
	(*worker)->call("worker.ping", rpc::Json::object(), [&](Result<rpc::Json> r) { ping = std::move(r); });
	REQUIRE(test::runLoopUntil(**loop, [&] { return ping.has_value(); }));
	REQUIRE(*ping);

	auto status = procStatus((*worker)->pid());
	auto identity = proxy::resolveWorkerIdentity();
	REQUIRE(identity);
	CHECK((**ping)["uid"] == identity->uid);
	CHECK(status["Uid"].substr(0, status["Uid"].find('\t')) == std::to_string(identity->uid));
	CHECK(status["Uid"].rfind("0\t", 0) != 0);
	CHECK(status["CapEff"] == "0000000000000000");
	CHECK(status["CapBnd"] == "0000000000000000");
	CHECK(status["NoNewPrivs"] == "1");
	CHECK(status["Seccomp"] == "2");
}
