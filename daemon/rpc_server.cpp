// SPDX-License-Identifier: Apache-2.0
#include "daemon/rpc_server.h"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>

#include "common/log.h"

namespace gvm::daemon {

RpcConnection::RpcConnection(RpcServer &server, Loop &loop, UniqueFd fd, PeerCredentials peer, uint64_t id)
	: server_(server), peer_(peer), id_(id),
	  channel_(loop, std::move(fd),
		   {[this](const std::string &line, std::vector<UniqueFd> &fds) { handleLine(line, fds); },
		    [this](const std::string &why) {
			    if (!why.empty())
				    GVM_LOG(Rpc, Notice) << "dropping client " << id_ << " (pid " << peer_.pid << ", uid "
							 << peer_.uid << "): " << why;
			    server_.release(*this);
		    }},
		   "client " + std::to_string(id) + " (uid " + std::to_string(peer.uid) + ")")
{
}

void RpcConnection::handleLine(const std::string &line, std::vector<UniqueFd> &fds)
{
	rpc::DecodedRequest decoded = rpc::decodeRequest(line);
	if (!decoded.request) {
		send(rpc::encodeError(decoded.id, decoded.error));
		return;
	}
	server_.dispatch(*this, std::move(*decoded.request), fds);
}

struct Responder::State {
	std::weak_ptr<RpcServer *> server;
	uint64_t connection = 0;
	rpc::Json id;
	bool notification = false;
	bool done = false;

	~State()
	{
		if (!done)
			send(fail(Error(ErrorDomain::Rpc, rpc::kInternalError, "gvmd abandoned the request")));
	}

	void send(const Result<rpc::Json> &result)
	{
		done = true;
		if (notification)
			return;
		auto owner = server.lock();
		if (!owner || !*owner)
			return;
		RpcConnection *conn = (*owner)->connection(connection);
		if (!conn)
			return;
		if (result)
			conn->send(rpc::encodeResult(id, *result));
		else
			conn->send(rpc::encodeError(id, rpc::toRpcError(result.error())));
	}
};

bool Responder::pending() const
{
	return state_ && !state_->done;
}

uint64_t Responder::connectionId() const
{
	return state_ ? state_->connection : 0;
}

void Responder::reply(Result<rpc::Json> result)
{
	if (!pending())
		return;
	state_->send(result);
}

Responder CallContext::defer()
{
	if (!deferred_) {
		auto state = std::make_shared<Responder::State>();
		state->server = server_.self_;
		state->connection = connection.id();
		state->id = id;
		state->notification = notification_;
		deferred_ = Responder(std::move(state));
	}
	return *deferred_;
}

Result<std::unique_ptr<RpcServer>> RpcServer::create(Loop &loop, UniqueFd listenFd)
{
	std::unique_ptr<RpcServer> server(new RpcServer(loop, std::move(listenFd)));
	if (int r = uv_poll_init(loop.get(), server->poll_.get(), server->listenFd_.get()); r < 0)
		return fail(Error::fromLibuv(r, "watching the control socket"));
	server->poll_.get()->data = server.get();
	uv_poll_start(server->poll_.get(), UV_READABLE, [](uv_poll_t *p, int status, int) {
		auto *self = static_cast<RpcServer *>(p->data);
		if (self && status >= 0)
			self->onAcceptable();
	});
	return server;
}

RpcServer::RpcServer(Loop &loop, UniqueFd listenFd)
	: loop_(loop), listenFd_(std::move(listenFd)), self_(std::make_shared<RpcServer *>(this))
{
}

RpcServer::~RpcServer()
{
	shutdown();
	*self_ = nullptr;
}

void RpcServer::addMethod(std::string name, MethodHandler handler)
{
	methods_[std::move(name)] = std::move(handler);
}

void RpcServer::addDisconnectHandler(std::function<void(uint64_t connectionId)> handler)
{
	disconnectHandlers_.push_back(std::move(handler));
}

RpcConnection *RpcServer::connection(uint64_t id)
{
	auto it = connections_.find(id);
	return it == connections_.end() ? nullptr : it->second.get();
}

bool RpcServer::notify(uint64_t connectionId, std::string_view method, const rpc::Json &params)
{
	RpcConnection *conn = connection(connectionId);
	if (!conn)
		return false;
	conn->send(rpc::encodeNotification(method, params));
	return true;
}

void RpcServer::shutdown()
{
	poll_.close();
	// Not inside any connection's callback here: destroy them now. A
	// LineChannel destroyed without close() calls nothing back.
	connections_.clear();
	perUid_.clear();
}

void RpcServer::onAcceptable()
{
	// Bounded: one wake-up accepts what is queued, at most this many.
	for (int i = 0; i < 64; ++i) {
		UniqueFd fd(::accept4(listenFd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
		if (!fd) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				GVM_LOG(Rpc, Warning) << "accept: " << std::strerror(errno) << ", ignoring";
			return;
		}
		ucred cred{};
		socklen_t len = sizeof(cred);
		if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
			GVM_LOG(Rpc, Warning) << "SO_PEERCRED: " << std::strerror(errno) << ", dropping client";
			continue;
		}
		PeerCredentials peer{cred.pid, cred.uid, cred.gid};

		std::string refusal;
		int code = rpc::kTooManyClients;
		if (connections_.size() >= kMaxClients) {
			refusal = "too many clients (limit " + std::to_string(kMaxClients) + ")";
		} else if (perUid_[peer.uid] >= kMaxClientsPerUid) {
			refusal = "too many connections from this user (limit " + std::to_string(kMaxClientsPerUid) + ")";
		} else if (screen_) {
			refusal = screen_(peer);
			code = rpc::kPermissionDenied;
		}
		if (!refusal.empty()) {
			GVM_LOG(Rpc, Notice) << "refusing client (pid " << peer.pid << ", uid " << peer.uid
					     << "): " << refusal;
			// Best effort: tell the client why, then hang up.
			std::string line = rpc::encodeError(nullptr, {code, refusal, nullptr});
			[[maybe_unused]] ssize_t n = ::send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
			// Closing with unread input makes the kernel send RST,
			// which can destroy the answer before the client reads
			// it: discard what already arrived (bounded) and send
			// FIN first.
			char sink[4096];
			for (int k = 0; k < 16 && ::recv(fd.get(), sink, sizeof(sink), MSG_DONTWAIT) > 0; ++k) {
			}
			::shutdown(fd.get(), SHUT_WR);
			continue;
		}

		uint64_t id = nextId_++;
		perUid_[peer.uid]++;
		GVM_LOG(Rpc, Debug) << "client " << id << " connected (pid " << peer.pid << ", uid " << peer.uid << ")";
		connections_[id] = std::make_unique<RpcConnection>(*this, loop_, std::move(fd), peer, id);
	}
}

void RpcServer::dispatch(RpcConnection &conn, rpc::Request request, std::vector<UniqueFd> &fds)
{
	auto it = methods_.find(request.method);
	if (it == methods_.end()) {
		if (!request.notification)
			conn.send(rpc::encodeError(request.id, {rpc::kMethodNotFound,
								"method not found: " + request.method, nullptr}));
		return;
	}
	CallContext ctx(*this, conn, fds, request.id, request.notification);
	Result<rpc::Json> result = it->second(ctx, request.params);
	if (ctx.deferred_) {
		// The handler answers later; only a failure it returned now is
		// the answer.
		if (!result)
			ctx.deferred_->reply(std::move(result));
		return;
	}
	if (request.notification)
		return;
	if (result)
		conn.send(rpc::encodeResult(request.id, *result));
	else
		conn.send(rpc::encodeError(request.id, rpc::toRpcError(result.error())));
}

void RpcServer::release(RpcConnection &conn)
{
	auto it = connections_.find(conn.id());
	if (it == connections_.end())
		return;
	if (auto u = perUid_.find(conn.peer().uid); u != perUid_.end() && --u->second == 0)
		perUid_.erase(u);
	const uint64_t id = conn.id();
	GVM_LOG(Rpc, Debug) << "client " << id << " gone";
	// The connection may be inside one of its own callbacks.
	loop_.deleteLater(std::move(it->second));
	connections_.erase(it);
	for (auto &handler : disconnectHandlers_)
		handler(id);
}

} // namespace gvm::daemon
