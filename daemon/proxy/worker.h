// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <string>

#include "common/line_channel.h"
#include "common/loop.h"
#include "common/result.h"
#include "policy/policy.h"

namespace gvm::proxy {

// The proxy worker of one sandbox, inside the worker process: the control
// channel to gvmd and the policy snapshot decisions are made against.
// Created by worker_main after the process is confined; lives on the
// process's only loop until gvmd closes the channel, which ends the worker
// (without gvmd no decision could be recorded, so none is made).
//
// Control methods (JSON-RPC from gvmd):
//   worker.configure {sandbox, policy_text, policy_file} -> {policy, sha256, rules}
//   policy.reload    {policy_text, policy_file}          -> {policy, sha256, rules}
//   worker.ping      {}                                  -> {pid, uid, sandbox, sha256}
class Worker
{
public:
	static Result<std::unique_ptr<Worker>> create(Loop &loop, UniqueFd control);

	// The policy in force; connections keep the snapshot they started with.
	std::shared_ptr<const policy::Engine> engine() const { return engine_; }

private:
	Worker(Loop &loop, UniqueFd control);
	void onLine(const std::string &line);
	Result<rpc::Json> loadPolicy(const rpc::Json &params);

	Loop &loop_;
	LineChannel control_;
	std::string sandbox_;
	std::shared_ptr<const policy::Engine> engine_;
};

} // namespace gvm::proxy
