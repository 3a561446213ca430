// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <string>

#include "common/json_rpc.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace gvm::client {

// A blocking JSON-RPC client of gvmd, for one command's lifetime.
class RpcClient
{
public:
	// Connects to the socket; the error says how to fix the usual causes
	// (daemon not running, not in group gvm).
	static Result<RpcClient> connect(const std::string &socketPath);

	// Sends a request and waits for its response, skipping notifications.
	// An error response becomes an Error of domain Rpc with its code.
	Result<rpc::Json> call(const std::string &method, const rpc::Json &params,
			       std::chrono::milliseconds timeout = std::chrono::seconds(30));

	int fd() const { return fd_.get(); }

private:
	explicit RpcClient(UniqueFd fd) : fd_(std::move(fd)) {}
	Result<std::string> readLine(std::chrono::milliseconds timeout);

	UniqueFd fd_;
	rpc::LineFramer framer_;
	std::vector<std::string> lines_;
	int64_t nextId_ = 1;
};

// The socket gvmctl talks to: --socket, else $GVM_SOCKET, else the default.
std::string resolveSocketPath(const std::string &flag);

} // namespace gvm::client
