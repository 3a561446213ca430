// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

#include "common/json_rpc.h"
#include "common/loop.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "daemon/agent_process.h"
#include "daemon/net/sandbox_network.h"
#include "daemon/rpc_server.h"
#include "daemon/worker_process.h"

namespace gvm::isolation {
class SandboxCgroup;
}

namespace gvm::daemon {

// sandbox.stop: SIGTERM first, SIGKILL this long after if the agent runs on.
inline constexpr std::chrono::seconds kStopGrace{5};
// Requests held for approval that gvmd tracks per sandbox; a worker
// announcing more is not believed beyond this.
inline constexpr size_t kMaxPendingHoldsPerSandbox = 1024;

// Sandbox ids (kSandboxIdLength lowercase hex digits, random) and
// isSandboxId() come with the network names built from them.
using net::isSandboxId;
using net::kSandboxIdLength;

// What a sandbox is, fixed at launch.
struct SandboxInfo {
	std::string id; // 8 lowercase hex digits
	std::string name;
	uid_t uid = 0; // the owner: the caller who launched it
	gid_t gid = 0;
	std::vector<std::string> command;
	bool cooperative = true;
	std::string proxyUrl; // http://127.0.0.1:PORT
	std::string dir;      // RUNTIME/sandboxes/<id>
	std::string caBundle; // dir/ca-bundle.pem
	// Sandbox mode: the same certificates as a Java keystore, which Java
	// clients trust instead of any PEM bundle.
	std::string javaKeystore; // dir/java-cacerts
	// Sandbox mode: the addresses of its veth pair.
	std::string hostAddress;
	std::string sandboxAddress;
};

// The policy in force, as the worker reported it.
struct SandboxPolicy {
	std::string name;
	std::string sha256;
	std::string mode; // "enforce" or "monitor"
	int64_t rules = 0;
};

// A request the worker holds for approval (hold.pending), until it reports
// hold.resolved.
struct PendingHold {
	std::string requestId;
	std::string method;
	std::string host;
	int64_t port = 0;
	std::string path;
	std::string rule;
	std::chrono::system_clock::time_point expires;
};

// One sandbox: its owner and launch facts, its proxy worker, its agent,
// the requests held for approval and its counters. Owned by the
// SandboxManager, on gvmd's loop; destroyed (deferred) when its agent has
// exited, which also ends its worker. While it starts it also carries the
// launch request's answer and the agent's standard streams.
class Sandbox
{
public:
	enum class State { Starting, Running, WorkerDead };
	static const char *toString(State state);

	Sandbox(Loop &loop, SandboxInfo info, uint64_t connection);
	~Sandbox();
	Sandbox(const Sandbox &) = delete;
	Sandbox &operator=(const Sandbox &) = delete;

	const SandboxInfo &info() const { return info_; }
	const std::string &id() const { return info_.id; }
	uid_t uid() const { return info_.uid; }
	// The client that launched it, told when the agent exits.
	uint64_t connection() const { return connection_; }

	State state() const { return state_; }
	void setState(State state);
	// Marks the agent started: the sandbox is Running from now on.
	void markStarted();

	WorkerProcess *worker() const { return worker_.get(); }
	void setWorker(std::unique_ptr<WorkerProcess> worker) { worker_ = std::move(worker); }
	AgentProcess *agent() const { return agent_.get(); }
	void setAgent(std::unique_ptr<AgentProcess> agent) { agent_ = std::move(agent); }

	const SandboxPolicy &policy() const { return policy_; }
	// Takes name/sha256/rules/mode from a worker.configure or policy.reload
	// result; absent fields keep their value.
	void updatePolicy(const rpc::Json &result);

	// Worker notifications.
	void countDecision() { ++decisions_; }
	void updateStats(const rpc::Json &params);
	Result<void> addHold(const rpc::Json &params);
	void resolveHold(const std::string &requestId) { holds_.erase(requestId); }
	void clearHolds() { holds_.clear(); }
	// Holds not yet expired (expired ones are forgotten).
	std::vector<PendingHold> pendingHolds();

	// Signals the agent's process group.
	Result<void> signal(int signum);
	// SIGTERM now, SIGKILL after kStopGrace if the agent still runs.
	Result<void> stop();

	// The sandbox.list entry.
	rpc::Json describe() const;

	// While starting: the launch request's answer and what the agent gets.
	Responder launch;
	std::array<UniqueFd, 3> stdio;
	// Sandbox mode: the network namespace and veth (torn down with the
	// sandbox).
	std::unique_ptr<net::SandboxNetwork> network;
	CallerProcess caller;
	std::vector<std::string> env;
	std::string cwd;
	bool tty = false;
	// Isolation beyond the network (sandbox mode unless --network-only):
	// the workspace, its overlay's upper layer ("" unless an overlay),
	// and the cgroup (removed with the sandbox).
	bool isolate = false;
	std::string workspace;
	std::string upperDir;
	std::unique_ptr<isolation::SandboxCgroup> cgroup;
	// After the agent has exited: the bound on waiting for the worker's
	// last records before the sandbox is removed.
	std::unique_ptr<Timer> drainTimer;

private:
	SandboxInfo info_;
	uint64_t connection_;
	State state_ = State::Starting;
	std::chrono::system_clock::time_point started_;
	std::chrono::steady_clock::time_point startedSteady_;
	Timer killTimer_;
	bool stopping_ = false;
	std::unique_ptr<AgentProcess> agent_;
	std::unique_ptr<WorkerProcess> worker_;
	SandboxPolicy policy_;
	int64_t connectionsOpen_ = 0;
	int64_t connectionsTotal_ = 0;
	uint64_t decisions_ = 0;
	std::map<std::string, PendingHold> holds_;
};

} // namespace gvm::daemon
