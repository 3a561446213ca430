// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <string>
#include <sys/socket.h>
#include <utility>
#include <vector>

#include "common/line_channel.h"
#include "common/loop.h"
#include "common/result.h"
#include "daemon/proxy/proxy.h"
#include "policy/policy.h"

namespace gvm::proxy {

// What the worker process gathered before it confined itself: the
// listening sockets gvmd handed over, the host's trust store and the
// host's own addresses (for the SSRF guard).
struct WorkerResources {
	std::vector<std::pair<ListenerKind, UniqueFd>> listeners;
	std::string hostTrustPem;
	std::vector<sockaddr_storage> hostAddresses;
};

// The proxy worker of one sandbox, inside the worker process: the control
// channel to gvmd, the policy snapshot decisions are made against and,
// once configured, the Proxy serving the agent. Created by worker_main
// after the process is confined; lives on the process's only loop until
// gvmd closes the channel, which ends the worker (without gvmd no decision
// could be recorded, so none is made).
//
// Control methods (JSON-RPC from gvmd):
//   worker.configure {sandbox, uid, policy_text, policy_file, monitor, upstream_ca_pem,
//                     dns_upstream, sandbox_pool, listeners} (+ listening sockets)
//                    -> {policy, sha256, rules, mode, ca_pem}
//   policy.reload    {policy_text, policy_file}  -> {policy, sha256, rules, mode}
//   hold.answer      {request_id, approve}       -> {request_id, found}
//   worker.ping      {}                          -> {pid, uid, sandbox, sha256, connections_open, connections_total}
// Notifications to gvmd: decision {record}, hold.pending, hold.resolved, stats.
class Worker
{
public:
	static Result<std::unique_ptr<Worker>> create(Loop &loop, UniqueFd control, WorkerResources resources);
	~Worker();

	// The policy in force; connections keep the snapshot they started with.
	std::shared_ptr<const policy::Engine> engine() const { return engine_; }

private:
	Worker(Loop &loop, UniqueFd control, WorkerResources resources);
	void onLine(const std::string &line, std::vector<UniqueFd> &fds);
	Result<std::shared_ptr<const policy::Engine>> parsePolicy(const rpc::Json &params);
	Result<rpc::Json> configure(const rpc::Json &params, std::vector<UniqueFd> &fds);
	Result<rpc::Json> reload(const rpc::Json &params);
	rpc::Json describePolicy() const;

	Loop &loop_;
	LineChannel control_;
	WorkerResources resources_;
	std::string sandbox_;
	bool forceMonitor_ = false;
	std::shared_ptr<const policy::Engine> engine_;
	std::unique_ptr<Proxy> proxy_;
};

} // namespace gvm::proxy
