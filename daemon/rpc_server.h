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
#include "common/line_channel.h"
#include "common/loop.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace gvm::daemon {

// Limits on what clients can make gvmd hold (output per client is bounded
// by kMaxPendingOutputBytes, messages by rpc::kMaxMessageBytes).
inline constexpr size_t kMaxClientsPerUid = 16;
inline constexpr size_t kMaxClients = 512;

// Who is on the other end, from SO_PEERCRED at accept time.
struct PeerCredentials {
	pid_t pid = 0;
	uid_t uid = 0;
	gid_t gid = 0;
};

class RpcServer;

// One client connection: a LineChannel plus who the client is. Owned by
// RpcServer; lives on the loop's thread; destroyed (deferred) once closed.
// Requests are dispatched in order as they arrive.
class RpcConnection
{
public:
	RpcConnection(RpcServer &server, Loop &loop, UniqueFd fd, PeerCredentials peer, uint64_t id);

	const PeerCredentials &peer() const { return peer_; }
	uint64_t id() const { return id_; }

	// Queues one encoded line. A client over its output budget is closed.
	void send(std::string line) { channel_.send(std::move(line)); }
	// Stops reading, flushes what is queued, then closes.
	void closeAfterFlush() { channel_.closeAfterFlush(); }
	void close() { channel_.close(); }

private:
	void handleLine(const std::string &line, std::vector<UniqueFd> &fds);

	RpcServer &server_;
	PeerCredentials peer_;
	uint64_t id_;
	LineChannel channel_;
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
