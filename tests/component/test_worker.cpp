// SPDX-License-Identifier: Apache-2.0
//
// gvmd's handle on a real gvm-worker process: configuration and policy
// reload over the control channel, errors, and the worker's exit.
#include <catch2/catch.hpp>

#include <csignal>
#include <sys/stat.h>

#include "common/loop.h"
#include "daemon/worker_process.h"
#include "tests/support/process.h"

using namespace gvm;
using namespace gvm::test;

namespace {

const char kPolicyA[] = "version: 1\nname: a\nrules:\n  - name: r\n    hosts: [example.com]\n    action: allow\n";
const char kPolicyB[] = "version: 1\nname: b\ndefault: allow\n";
const char kBroken[] = "version: 1\nname: broken\nrules:\n  - name: r\n    hots: [x]\n    action: allow\n";

struct Exit {
	bool seen = false;
	int64_t status = -1;
	int signal = -1;
};

std::unique_ptr<daemon::WorkerProcess> spawnWorker(Loop &loop, Exit *exit)
{
	auto worker = daemon::WorkerProcess::spawn(
		loop, binaryFromEnv("GVM_WORKER"),
		{nullptr, [exit](int64_t status, int signal) { *exit = {true, status, signal}; }}, "warning");
	REQUIRE(worker);
	return std::move(*worker);
}

// Calls a control method and runs the loop until it answers.
Result<rpc::Json> callSync(Loop &loop, daemon::WorkerProcess &worker, const std::string &method, const rpc::Json &params)
{
	std::optional<Result<rpc::Json>> answer;
	worker.call(method, params, [&](Result<rpc::Json> r) { answer = std::move(r); });
	REQUIRE(runLoopUntil(loop, [&] { return answer.has_value(); }));
	return std::move(*answer);
}

} // namespace

TEST_CASE("a worker is configured and reloaded over its control channel", "[worker]")
{
	auto loop = Loop::create();
	REQUIRE(loop);
	Exit exit;
	auto worker = spawnWorker(**loop, &exit);

	auto ping0 = callSync(**loop, *worker, "worker.ping", rpc::Json::object());
	REQUIRE(ping0);
	CHECK((*ping0)["pid"] == worker->pid());
	CHECK((*ping0)["sha256"] == "");

	auto configured = callSync(**loop, *worker, "worker.configure",
				   {{"sandbox", "sb1"}, {"policy_text", kPolicyA}, {"policy_file", "a.yaml"}});
	REQUIRE(configured);
	CHECK((*configured)["policy"] == "a");
	CHECK((*configured)["rules"] == 1);
	const std::string shaA = (*configured)["sha256"];

	auto again = callSync(**loop, *worker, "worker.configure", {{"sandbox", "sb1"}, {"policy_text", kPolicyA}});
	REQUIRE_FALSE(again);
	CHECK_THAT(again.error().context(), Catch::Contains("already configured"));

	// A broken policy is refused with its file:line:column; the old one stays.
	auto broken = callSync(**loop, *worker, "policy.reload", {{"policy_text", kBroken}, {"policy_file", "new.yaml"}});
	REQUIRE_FALSE(broken);
	CHECK(broken.error().code() == rpc::kPolicyError);
	CHECK_THAT(broken.error().context(), Catch::Contains("new.yaml:5:5:"));
	auto ping1 = callSync(**loop, *worker, "worker.ping", rpc::Json::object());
	REQUIRE(ping1);
	CHECK((*ping1)["sha256"] == shaA);
	CHECK((*ping1)["sandbox"] == "sb1");

	auto reloaded = callSync(**loop, *worker, "policy.reload", {{"policy_text", kPolicyB}});
	REQUIRE(reloaded);
	CHECK((*reloaded)["policy"] == "b");
	CHECK((*reloaded)["sha256"] != shaA);

	auto unknown = callSync(**loop, *worker, "worker.explode", rpc::Json::object());
	REQUIRE_FALSE(unknown);
	CHECK(unknown.error().code() == rpc::kMethodNotFound);
	CHECK(worker->running());
	CHECK_FALSE(exit.seen);
}

TEST_CASE("a worker that dies is reported, and its pending calls fail", "[worker]")
{
	auto loop = Loop::create();
	REQUIRE(loop);
	Exit exit;
	auto worker = spawnWorker(**loop, &exit);
	REQUIRE(callSync(**loop, *worker, "worker.ping", rpc::Json::object()));

	std::optional<Result<rpc::Json>> pending;
	::kill(worker->pid(), SIGKILL);
	worker->call("worker.ping", rpc::Json::object(), [&](Result<rpc::Json> r) { pending = std::move(r); });
	REQUIRE(runLoopUntil(**loop, [&] { return exit.seen && pending.has_value(); }));
	CHECK(exit.signal == SIGKILL);
	CHECK_FALSE(worker->running());
	REQUIRE_FALSE(*pending);

	// Calls after its death fail too, without waiting.
	auto late = callSync(**loop, *worker, "worker.ping", rpc::Json::object());
	CHECK_FALSE(late);
}

TEST_CASE("destroying the handle ends the worker and reaps it", "[worker]")
{
	auto loop = Loop::create();
	REQUIRE(loop);
	Exit exit;
	auto worker = spawnWorker(**loop, &exit);
	REQUIRE(callSync(**loop, *worker, "worker.ping", rpc::Json::object()));
	pid_t pid = worker->pid();
	worker.reset();
	struct stat st{};
	CHECK(::stat(("/proc/" + std::to_string(pid)).c_str(), &st) != 0);
}

TEST_CASE("gvm-worker refuses to start without a control descriptor", "[worker]")
{
	RunResult r = run({binaryFromEnv("GVM_WORKER")});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("--control-fd"));
	RunResult bad = run({binaryFromEnv("GVM_WORKER"), "--control-fd", "77"});
	CHECK(bad.status == 2);
}
