// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
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
// Requests are dispatched in order as they arrive. Anything that outlives
// the current callback refers to a connection by id() and looks it up with
// RpcServer::connection(), which fails once the client is gone.
class RpcConnection
{
public:
	RpcConnection(RpcServer &server, Loop &loop, UniqueFd fd, PeerCredentials peer, uint64_t id);

	const PeerCredentials &peer() const { return peer_; }
	uint64_t id() const { return id_; }

	// Queues one encoded line. A client over its output budget is closed.
	void send(std::string line) { channel_.send(std::move(line)); }
	// Output queued for the client and not yet written.
	size_t pendingOutputBytes() const { return channel_.pendingOutputBytes(); }
	bool open() const { return channel_.state() == LineChannel::State::Open; }
	// Stops reading, flushes what is queued, then closes.
	void closeAfterFlush() { channel_.closeAfterFlush(); }
	// Closes now; `why` is logged.
	void close(const std::string &why = "") { channel_.close(why); }

private:
	void handleLine(const std::string &line, std::vector<UniqueFd> &fds);

	RpcServer &server_;
	PeerCredentials peer_;
	uint64_t id_;
	LineChannel channel_;
};

// The answer to one request, given later: a handler that cannot answer at
// once (it waits for a worker, say) takes one with CallContext::defer() and
// answers through it when it can. Copies share one answer; the first
// reply() wins and later ones do nothing. It holds the connection by id, so
// answering a client that has gone, or after the server is gone, is safe
// and does nothing. When the last copy of an unanswered Responder goes
// away the client gets an internal error rather than silence.
class Responder
{
public:
	Responder() = default;

	// True while an answer is owed.
	bool pending() const;
	uint64_t connectionId() const;

	void reply(Result<rpc::Json> result);
	void result(rpc::Json value) { reply(std::move(value)); }
	void error(Error error) { reply(fail(std::move(error))); }

private:
	friend class RpcServer;
	friend class CallContext;
	struct State;
	explicit Responder(std::shared_ptr<State> state) : state_(std::move(state)) {}

	std::shared_ptr<State> state_;
};

// What a method handler gets besides its params.
class CallContext
{
public:
	CallContext(RpcServer &server, RpcConnection &conn, std::vector<UniqueFd> &fdsIn, const rpc::Json &requestId,
		    bool notification)
		: connection(conn), peer(conn.peer()), fds(fdsIn), id(requestId), server_(server),
		  notification_(notification)
	{
	}

	RpcConnection &connection;
	const PeerCredentials &peer;
	// Descriptors that arrived with the request (SCM_RIGHTS).
	std::vector<UniqueFd> &fds;
	// The request's id (null for a notification).
	const rpc::Json &id;

	// Takes over answering the request: the handler answers later through
	// the returned Responder. If the handler then returns an error, that
	// error is the answer; a value it returns is ignored.
	Responder defer();
	bool deferred() const { return deferred_.has_value(); }

private:
	friend class RpcServer;
	RpcServer &server_;
	bool notification_;
	std::optional<Responder> deferred_;
};

using MethodHandler = std::function<Result<rpc::Json>(CallContext &ctx, const rpc::Json &params)>;

// Accepts clients on a listening unix socket, enforces the client limits
// and routes requests to registered methods. Owned by the Daemon; what it
// hands out (Responders, connection ids) stays safe to use after a client
// or the server itself is gone.
class RpcServer
{
public:
	static Result<std::unique_ptr<RpcServer>> create(Loop &loop, UniqueFd listenFd);
	~RpcServer();

	void addMethod(std::string name, MethodHandler handler);
	// Called (on the loop) with the id of every client that goes away.
	void addDisconnectHandler(std::function<void(uint64_t connectionId)> handler);
	// Asked about every new client before anything else: a non-empty
	// answer is why it is refused (kPermissionDenied), e.g. a process
	// inside one of gvmd's sandboxes.
	void setScreen(std::function<std::string(const PeerCredentials &peer)> screen) { screen_ = std::move(screen); }
	size_t clientCount() const { return connections_.size(); }

	// The open client with this id, or nullptr once it is gone.
	RpcConnection *connection(uint64_t id);
	// Sends a notification to a client; false when the client is gone.
	bool notify(uint64_t connectionId, std::string_view method, const rpc::Json &params);

	// Stops accepting and closes every client.
	void shutdown();

private:
	friend class RpcConnection;
	friend class Responder;
	friend class CallContext;
	RpcServer(Loop &loop, UniqueFd listenFd);
	void onAcceptable();
	void dispatch(RpcConnection &conn, rpc::Request request, std::vector<UniqueFd> &fds);
	void release(RpcConnection &conn);

	Loop &loop_;
	UniqueFd listenFd_;
	UvHandle<uv_poll_t> poll_;
	std::function<std::string(const PeerCredentials &)> screen_;
	std::map<std::string, MethodHandler> methods_;
	std::map<uint64_t, std::unique_ptr<RpcConnection>> connections_;
	std::map<uid_t, size_t> perUid_;
	std::vector<std::function<void(uint64_t)>> disconnectHandlers_;
	uint64_t nextId_ = 1;
	// Responders hold a weak reference: it expires with the server.
	std::shared_ptr<RpcServer *> self_;
};

} // namespace gvm::daemon
