// SPDX-License-Identifier: Apache-2.0
#include "daemon/rpc_server.h"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>

#include "common/fd_passing.h"
#include "common/log.h"

namespace gvm::daemon {

const char *RpcConnection::toString(State state)
{
	switch (state) {
	case State::Open: return "open";
	case State::Draining: return "draining";
	case State::Closed: return "closed";
	}
	return "?";
}

RpcConnection::RpcConnection(RpcServer &server, UniqueFd fd, PeerCredentials peer, uint64_t id)
	: server_(server), fd_(std::move(fd)), peer_(peer), id_(id)
{
	uv_poll_init(server_.loop_.get(), poll_.get(), fd_.get());
	poll_.get()->data = this;
	updatePoll();
}

RpcConnection::~RpcConnection()
{
	poll_.close();
}

void RpcConnection::setState(State state)
{
	GVM_LOG(Rpc, Debug) << "client " << id_ << " (uid " << peer_.uid << "): " << toString(state_) << " -> "
			    << toString(state);
	state_ = state;
}

void RpcConnection::updatePoll()
{
	if (state_ == State::Closed)
		return;
	int events = 0;
	if (state_ == State::Open)
		events |= UV_READABLE;
	if (outputOffset_ < output_.size())
		events |= UV_WRITABLE;
	if (events == 0) {
		uv_poll_stop(poll_.get());
		return;
	}
	uv_poll_start(poll_.get(), events, [](uv_poll_t *p, int status, int ev) {
		if (auto *self = static_cast<RpcConnection *>(p->data))
			self->onPoll(status, ev);
	});
}

void RpcConnection::onPoll(int status, int events)
{
	if (status < 0) {
		GVM_LOG(Rpc, Debug) << "client " << id_ << ": " << uv_strerror(status);
		close();
		return;
	}
	if (events & UV_WRITABLE)
		flush();
	if (state_ == State::Open && (events & UV_READABLE))
		onReadable();
}

void RpcConnection::onReadable()
{
	char buf[kReadChunkBytes];
	auto received = receiveWithFds(fd_.get(), buf, sizeof(buf));
	if (!received) {
		if (received.error().code() == EAGAIN)
			return;
		GVM_LOG(Rpc, Debug) << "client " << id_ << ": " << received.error().message();
		close();
		return;
	}
	if (received->bytes == 0) {
		// The client finished sending; answer what it asked, then close.
		closeAfterFlush();
		return;
	}
	for (auto &fd : received->fds) {
		if (receivedFds_.size() >= kMaxPassedFds) {
			// More descriptors than any request can use: a
			// misbehaving client. Drop it rather than hoard fds.
			send(rpc::encodeError(nullptr, {rpc::kInvalidRequest, "too many file descriptors", nullptr}));
			closeAfterFlush();
			return;
		}
		receivedFds_.push_back(std::move(fd));
	}

	std::vector<std::string> lines;
	auto fed = framer_.feed(std::string_view(buf, received->bytes), &lines);
	for (const std::string &line : lines) {
		if (state_ != State::Open)
			break;
		handleLine(line);
	}
	if (!fed && state_ == State::Open) {
		// An oversized message cannot be resynchronised: answer and hang up.
		send(rpc::encodeError(nullptr, rpc::toRpcError(fed.error())));
		closeAfterFlush();
	}
}

void RpcConnection::handleLine(const std::string &line)
{
	if (line.empty())
		return;
	rpc::DecodedRequest decoded = rpc::decodeRequest(line);
	if (!decoded.request) {
		send(rpc::encodeError(decoded.id, decoded.error));
		return;
	}
	// Descriptors belong to the request they arrived with; whatever the
	// method does not take is closed when this returns.
	std::vector<UniqueFd> fds = std::move(receivedFds_);
	receivedFds_.clear();
	server_.dispatch(*this, std::move(*decoded.request), fds);
}

void RpcConnection::send(std::string line)
{
	if (state_ == State::Closed)
		return;
	if (output_.size() - outputOffset_ + line.size() > kMaxPendingOutputBytes) {
		GVM_LOG(Rpc, Warning) << "client " << id_ << " (uid " << peer_.uid
				      << ") is not reading its output; dropping it";
		close();
		return;
	}
	if (outputOffset_ == output_.size()) {
		output_.clear();
		outputOffset_ = 0;
	}
	output_.append(line);
	flush();
}

void RpcConnection::flush()
{
	while (outputOffset_ < output_.size()) {
		ssize_t n = ::send(fd_.get(), output_.data() + outputOffset_, output_.size() - outputOffset_,
				   MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			GVM_LOG(Rpc, Debug) << "client " << id_ << ": send: " << std::strerror(errno);
			close();
			return;
		}
		outputOffset_ += static_cast<size_t>(n);
	}
	if (outputOffset_ == output_.size()) {
		output_.clear();
		outputOffset_ = 0;
		if (state_ == State::Draining) {
			close();
			return;
		}
	}
	updatePoll();
}

void RpcConnection::closeAfterFlush()
{
	if (state_ != State::Open)
		return;
	setState(State::Draining);
	flush();
}

void RpcConnection::close()
{
	if (state_ == State::Closed)
		return;
	setState(State::Closed);
	uv_poll_stop(poll_.get());
	server_.release(*this);
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

RpcServer::RpcServer(Loop &loop, UniqueFd listenFd) : loop_(loop), listenFd_(std::move(listenFd)) {}

RpcServer::~RpcServer()
{
	shutdown();
}

void RpcServer::addMethod(std::string name, MethodHandler handler)
{
	methods_[std::move(name)] = std::move(handler);
}

void RpcServer::shutdown()
{
	poll_.close();
	while (!connections_.empty()) {
		auto it = connections_.begin();
		std::unique_ptr<RpcConnection> conn = std::move(it->second);
		connections_.erase(it);
		conn->state_ = RpcConnection::State::Closed;
	}
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

		const char *refusal = nullptr;
		if (connections_.size() >= kMaxClients)
			refusal = "too many clients";
		else if (perUid_[peer.uid] >= kMaxClientsPerUid)
			refusal = "too many connections from this user";
		if (refusal) {
			GVM_LOG(Rpc, Notice) << "refusing client (pid " << peer.pid << ", uid " << peer.uid
					     << "): " << refusal;
			// Best effort: tell the client why, then hang up.
			std::string line = rpc::encodeError(
				nullptr, {rpc::kTooManyClients,
					  std::string(refusal) + " (limit " +
						  std::to_string(connections_.size() >= kMaxClients ? kMaxClients
												     : kMaxClientsPerUid) +
						  ")",
					  nullptr});
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
		connections_[id] = std::make_unique<RpcConnection>(*this, std::move(fd), peer, id);
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
	CallContext ctx{conn, conn.peer(), fds};
	Result<rpc::Json> result = it->second(ctx, request.params);
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
	GVM_LOG(Rpc, Debug) << "client " << conn.id() << " gone";
	// The connection may be inside one of its own callbacks.
	loop_.deleteLater(std::move(it->second));
	connections_.erase(it);
}

} // namespace gvm::daemon
