// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <sys/types.h>
#include <vector>

#include "common/json_rpc.h"
#include "common/loop.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace gvm::daemon {

// Limits on what clients can make gvmd hold.
inline constexpr size_t kMaxClientsPerUid = 16;
inline constexpr size_t kMaxClients = 512;
// A client that does not read its responses or notifications is dropped once
// this much output is queued for it.
inline constexpr size_t kMaxPendingOutputBytes = 8 * 1024 * 1024;
inline constexpr size_t kReadChunkBytes = 64 * 1024;

// Who is on the other end, from SO_PEERCRED at accept time.
struct PeerCredentials {
	pid_t pid = 0;
	uid_t uid = 0;
	gid_t gid = 0;
};

class RpcServer;

// One client connection. Owned by RpcServer; lives on the loop's thread;
// destroyed (deferred) once closed. Reads newline-framed JSON-RPC requests,
// dispatches them in order and writes responses, buffering output up to
// kMaxPendingOutputBytes.
class RpcConnection
{
public:
	enum class State { Open, Draining, Closed };
	static const char *toString(State state);

	RpcConnection(RpcServer &server, UniqueFd fd, PeerCredentials peer, uint64_t id);
	~RpcConnection();

	const PeerCredentials &peer() const { return peer_; }
	uint64_t id() const { return id_; }
	State state() const { return state_; }

	// Queues one encoded line. A client over its output budget is closed.
	void send(std::string line);
	// Stops reading, flushes what is queued, then closes.
	void closeAfterFlush();
	// Closes now.
	void close();

private:
	friend class RpcServer;
	void setState(State state);
	void onPoll(int status, int events);
	void onReadable();
	void flush();
	void updatePoll();
	void handleLine(const std::string &line);

	RpcServer &server_;
	UniqueFd fd_;
	PeerCredentials peer_;
	uint64_t id_;
	State state_ = State::Open;
	UvHandle<uv_poll_t> poll_;
	rpc::LineFramer framer_;
	std::string output_;
	size_t outputOffset_ = 0;
	std::vector<UniqueFd> receivedFds_;
};

// What a method handler gets besides its params.
struct CallContext {
	RpcConnection &connection;
	const PeerCredentials &peer;
	// Descriptors that arrived with the request (SCM_RIGHTS).
	std::vector<UniqueFd> &fds;
};

using MethodHandler = std::function<Result<rpc::Json>(CallContext &ctx, const rpc::Json &params)>;

// Accepts clients on a listening unix socket, enforces the client limits
// and routes requests to registered methods. Owned by the Daemon.
class RpcServer
{
public:
	static Result<std::unique_ptr<RpcServer>> create(Loop &loop, UniqueFd listenFd);
	~RpcServer();

	void addMethod(std::string name, MethodHandler handler);
	size_t clientCount() const { return connections_.size(); }
	// Stops accepting and closes every client.
	void shutdown();

private:
	friend class RpcConnection;
	RpcServer(Loop &loop, UniqueFd listenFd);
	void onAcceptable();
	void dispatch(RpcConnection &conn, rpc::Request request, std::vector<UniqueFd> &fds);
	void release(RpcConnection &conn);

	Loop &loop_;
	UniqueFd listenFd_;
	UvHandle<uv_poll_t> poll_;
	std::map<std::string, MethodHandler> methods_;
	std::map<uint64_t, std::unique_ptr<RpcConnection>> connections_;
	std::map<uid_t, size_t> perUid_;
	uint64_t nextId_ = 1;
};

} // namespace gvm::daemon
