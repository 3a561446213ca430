// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <memory>

#include "common/loop.h"
#include "common/result.h"
#include "daemon/audit_log.h"
#include "daemon/decision_subscribers.h"
#include "daemon/options.h"
#include "daemon/rpc_server.h"
#include "daemon/sandbox_manager.h"

namespace gvm::daemon {

// audit.show answers with at most this many records (default, maximum).
inline constexpr int64_t kAuditShowDefaultLimit = 100;
inline constexpr int64_t kAuditShowMaxLimit = 10000;
// The --upstream-ca file is read whole at startup, up to this size.
inline constexpr size_t kMaxUpstreamCaBytes = 1024 * 1024;
// /etc/resolv.conf is read for the sandboxes' upstream resolver, at most this much.
inline constexpr size_t kMaxResolvConfBytes = 64 * 1024;

// The gvmd process: owns the loop, the control socket, the audit log, the
// sandboxes and the RPC methods. One instance per process, on the loop's
// thread, alive until run() returns.
class Daemon
{
public:
	static Result<std::unique_ptr<Daemon>> create(const Options &options);
	~Daemon();

	// Runs until SIGTERM or SIGINT; returns the process exit status.
	int run();

private:
	explicit Daemon(const Options &options);
	Result<void> setUp();
	Result<UniqueFd> openControlSocket();
	void removeStaleSandboxes();
	// Fills the sandbox mode part of the manager's configuration and, as
	// root, installs the host nftables table.
	Result<void> prepareSandboxNetworking(SandboxManager::Config &config);
	void registerMethods();
	void shutdown(int signum);
	rpc::Json status(const PeerCredentials &caller) const;
	// What isolation the kernel offers: Landlock's ABI, the cgroup
	// hierarchy ("daemon.status" → "isolation").
	static rpc::Json isolationSupport();

	Options options_;
	std::unique_ptr<Loop> loop_;
	std::unique_ptr<AuditLog> audit_;
	std::unique_ptr<RpcServer> server_;
	std::unique_ptr<DecisionSubscribers> subscribers_;
	std::unique_ptr<SandboxManager> sandboxes_;
	std::vector<std::unique_ptr<SignalWatcher>> signals_;
	std::chrono::steady_clock::time_point started_;
	std::chrono::system_clock::time_point startedWall_;
	// True when gvmd bound the socket itself (not socket activation), so
	// it removes it on exit.
	bool ownsSocketPath_ = false;
};

} // namespace gvm::daemon
