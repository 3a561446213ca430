// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <deque>
#include <optional>
#include <span>
#include <string>

#include "common/json_rpc.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace gvm::client {

// A JSON-RPC client of gvmd, for one command's lifetime. Two ways to use it:
// call() sends a request and blocks until its response; or, for commands
// that also wait on other descriptors (launch, tail), send() a request,
// poll() fd() yourself, receive() when it is readable and take the decoded
// messages, responses and notifications alike, from next(). Notifications
// that arrive during a call() are kept for next(), never dropped. The
// socket stays blocking: receive() reads only what poll() announced, and a
// send blocks only while gvmd's receive buffer is full.
class RpcClient
{
public:
	// Connects to the socket; the error says how to fix the usual causes
	// (daemon not running, not in group gvm).
	static Result<RpcClient> connect(const std::string &socketPath);

	// Sends a request (with `fds` attached to its first byte via
	// SCM_RIGHTS, if any) and waits for its response. An error response
	// becomes an Error of domain Rpc with its code and "gvmd: <message>".
	Result<rpc::Json> call(const std::string &method, const rpc::Json &params,
			       std::chrono::milliseconds timeout = std::chrono::seconds(30));
	Result<rpc::Json> call(const std::string &method, const rpc::Json &params, std::span<const int> fds,
			       std::chrono::milliseconds timeout = std::chrono::seconds(30));

	// Sends one request and returns its id. Requests larger than
	// rpc::kMaxMessageBytes are refused here, as gvmd would.
	Result<int64_t> send(const std::string &method, const rpc::Json &params, std::span<const int> fds = {});
	// Reads what the socket holds (one recv; call it when poll() reports
	// fd() readable) and queues the complete messages for next(). Returns
	// false once gvmd closed the connection.
	Result<bool> receive();
	// The oldest message received and not yet taken.
	std::optional<rpc::Incoming> next();

	// After a failed send: gvmd's own reason for hanging up (e.g. too
	// many clients), if it gave one within `wait`.
	std::optional<Error> refusal(std::chrono::milliseconds wait = std::chrono::milliseconds(500));

	// The Error for a failed response.
	static Error responseError(const rpc::RpcError &error);

	int fd() const { return fd_.get(); }

private:
	explicit RpcClient(UniqueFd fd) : fd_(std::move(fd)) {}
	// Waits up to `timeout` for the socket and receives once.
	Result<bool> receiveWithin(std::chrono::milliseconds timeout);

	UniqueFd fd_;
	rpc::LineFramer framer_;
	std::deque<rpc::Incoming> incoming_;
	int64_t nextId_ = 1;
};

// The socket gvmctl talks to: --socket, else $GVM_SOCKET, else the default.
std::string resolveSocketPath(const std::string &flag);

// One request on a fresh connection, for the commands that need no more:
// the result, or nullopt after printing why to stderr ("gvmctl: ...").
// `notFound`, when given, replaces gvmd's words for a kNotFound answer
// (e.g. "no sandbox 1a2b3c4d"): gvmd says the same for a sandbox that does
// not exist and for one of another user.
std::optional<rpc::Json> callGvmd(const std::string &socketFlag, const std::string &method, const rpc::Json &params,
				  const std::string &notFound = "");

} // namespace gvm::client
