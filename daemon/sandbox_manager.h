// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/json_rpc.h"
#include "common/loop.h"
#include "common/result.h"
#include "daemon/audit_log.h"
#include "daemon/decision_subscribers.h"
#include "daemon/rpc_server.h"
#include "daemon/net/address_pool.h"
#include "daemon/net/network_config.h"
#include "daemon/sandbox.h"
#include "daemon/sandbox_isolation.h"
#include "daemon/workspace_review.h"

namespace gvm::daemon {

// Limits on the sandboxes clients can make gvmd run.
inline constexpr size_t kMaxSandboxesPerUid = 32;
inline constexpr size_t kMaxSandboxes = 256;
inline constexpr size_t kMaxSandboxNameBytes = 64;
// The host's trust store, the first part of every sandbox's CA bundle.
inline constexpr char kHostCaBundle[] = "/etc/ssl/certs/ca-certificates.crt";

// Every sandbox of this gvmd, and the RPC methods on them:
//
//   sandbox.launch      {argv, env, cwd, policy_text, policy_file, cooperative,
//                        monitor, name?, upstream_ca_pem?, tty} + 3 fds
//                       -> {sandbox, name, pid, proxy, ca_bundle, policy, sha256, mode}
//                       later notification sandbox.exited {sandbox, status, signal, exit_code}
//   sandbox.signal      {sandbox, signal} -> {sandbox}
//   sandbox.list        {all?} -> {sandboxes: [...]}
//   sandbox.stop        {sandbox} -> {sandbox, stopping: true}
//   policy.reload       {sandbox, policy_text, policy_file} -> {sandbox, policy, sha256, rules, mode}
//   decisions.subscribe {sandbox?} -> {subscribed: true}, then `decision` notifications
//   hold.list           {} -> {pending: [...]}
//   hold.answer         {request_id, approve} -> {request_id, approved}
//
// A caller sees and controls only sandboxes of its own uid (root: all); any
// other is "not found". Launching forks the agent as the caller; an
// unprivileged gvmd (development, tests) launches only for its own uid.
// Owned by the Daemon, on its loop; destroyed before the RpcServer and the
// AuditLog it uses.
class SandboxManager
{
public:
	struct Config {
		std::string runtimeDir;    // sandboxes live in runtimeDir/sandboxes/<id>
		std::string workerPath;    // gvm-worker
		std::string workerLogLevel;
		std::string upstreamCaPem; // --upstream-ca, put before each launch's own
		// Sandbox mode (root only): where sandbox networks take their
		// addresses and ports, the resolver their DNS forwards to
		// ("ADDR:PORT"), and the directories hidden from agents.
		net::NetworkConfig network;
		std::string dnsUpstream;
		std::vector<std::string> hiddenDirs;
		// Overlay workspaces' upper layers live in stateDir/sandboxes.
		std::string stateDir;
		// Tests of Landlock alone: no masking mounts over hidden paths.
		bool maskMounts = true;
	};

	SandboxManager(Loop &loop, RpcServer &server, AuditLog &audit, DecisionSubscribers &subscribers, Config config);
	~SandboxManager();

	void registerMethods();
	// Sandboxes launched and not yet ended.
	size_t count() const;
	// gvmd is stopping: SIGTERM to every agent's process group, workers
	// killed, runtime directories removed.
	void shutdown();

private:
	Result<rpc::Json> launch(CallContext &ctx, const rpc::Json &params);
	Result<rpc::Json> signal(CallContext &ctx, const rpc::Json &params);
	Result<rpc::Json> list(CallContext &ctx, const rpc::Json &params);
	Result<rpc::Json> stop(CallContext &ctx, const rpc::Json &params);
	Result<rpc::Json> reload(CallContext &ctx, const rpc::Json &params);
	Result<rpc::Json> subscribe(CallContext &ctx, const rpc::Json &params);
	Result<rpc::Json> holdList(CallContext &ctx, const rpc::Json &params);
	Result<rpc::Json> holdAnswer(CallContext &ctx, const rpc::Json &params);
	Result<rpc::Json> workspaceDiff(CallContext &ctx, const rpc::Json &params);
	Result<rpc::Json> workspaceApply(CallContext &ctx, const rpc::Json &params);
	Result<rpc::Json> workspaceDiscard(CallContext &ctx, const rpc::Json &params);
	// The record of a sandbox whose workspace the caller may review, and
	// whom the review runs as.
	Result<SandboxRecord> reviewable(CallContext &ctx, const rpc::Json &params, const char *method,
					 bool mustHaveEnded, Reviewer *reviewer);

	// Why a new client is refused ("" to serve it).
	std::string screen(const PeerCredentials &peer) const;
	// The caller's running sandbox with this id, or kNotFound.
	Result<Sandbox *> visible(const PeerCredentials &caller, const std::string &id);
	Sandbox *lookup(const std::string &id);
	std::string newId() const;

	void onConfigured(const std::string &id, Result<rpc::Json> result);
	void onAgentStarted(const std::string &id, Result<void> result);
	void onAgentExit(const std::string &id, int status, int signal);
	// `params` is the notification's own, taken apart rather than copied.
	void onWorkerNotification(const std::string &id, const std::string &method, rpc::Json &params);
	void onWorkerDecision(const std::string &id, AuditRecord &record);
	void onWorkerExit(const std::string &id, int64_t status, int signal);
	// Fails a launch in progress with `error` and removes the sandbox.
	void abortLaunch(const std::string &id, Error error);
	// Removes the sandbox: its directory now, the object (and with it the
	// worker) after the current callback.
	void remove(const std::string &id);
	// The worker started ahead for the next launch, if it is still there.
	std::unique_ptr<WorkerProcess> takeSpareWorker();
	// Starts that worker and makes the next sandbox's network (after a
	// launch, off its path).
	void prepareSpares();
	Result<std::unique_ptr<net::SandboxNetwork>> createNetwork(const std::string &id);
	bool ensurePool();
	// The mount view, Landlock rules, seccomp filter and cgroup of a
	// sandbox's agent, from the worker's worker.configure answer.
	Result<PreparedIsolation> prepareSandboxIsolation(Sandbox &sandbox, const rpc::Json &configured);
	// stateDir/sandboxes/<id>/sandbox.json: who owns the overlay's upper
	// layer and where it applies, for diff, apply and discard after the
	// sandbox has ended.
	Result<void> writeSandboxRecord(const Sandbox &sandbox, bool ended);

	Loop &loop_;
	RpcServer &server_;
	AuditLog &audit_;
	DecisionSubscribers &subscribers_;
	Config config_;
	// Shared with a network being made ahead on a pool thread, which may
	// finish after the manager is gone.
	std::shared_ptr<net::AddressPool> pool_;
	std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
	std::map<std::string, std::unique_ptr<Sandbox>> sandboxes_;
	std::unique_ptr<WorkerProcess> spare_;
	std::unique_ptr<net::SandboxNetwork> spareNetwork_;
	// The id of the network being made ahead on a pool thread.
	std::optional<std::string> networkInFlight_;
	SeccompFilters seccompFilters_;
	bool usedSandboxMode_ = false;
	bool stopping_ = false;
};

} // namespace gvm::daemon
