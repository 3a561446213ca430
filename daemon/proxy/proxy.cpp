// SPDX-License-Identifier: Apache-2.0
#include "daemon/proxy/proxy.h"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>

#include "common/log.h"
#include "daemon/proxy/connection.h"

namespace gvm::proxy {

namespace {
constexpr uint64_t kStatsIntervalMs = 1000;
constexpr int kAcceptBatch = 64;
} // namespace

Proxy::Proxy(Loop &loop, Setup setup)
	: loop_(loop), sandbox_(std::move(setup.sandbox)), forceMonitor_(setup.forceMonitor), ca_(std::move(setup.ca)),
	  upstreamTls_(std::move(setup.upstreamTls)), hostAddresses_(std::move(setup.hostAddresses)),
	  notify_(std::move(setup.notify)), pool_(loop), statsTimer_(loop, [this] { sendStats(); })
{
}

Proxy::~Proxy()
{
	listeners_.clear();
	// A closing connection unregisters itself: take them out first.
	auto owned = std::move(connections_);
	connections_.clear();
	owned.clear();
}

Result<std::unique_ptr<Proxy>> Proxy::create(Loop &loop, Setup setup, std::shared_ptr<const policy::Engine> engine)
{
	auto ctx = makeInterceptContext();
	if (!ctx)
		return fail(std::move(ctx).error());
	std::unique_ptr<Proxy> proxy(new Proxy(loop, std::move(setup)));
	proxy->interceptCtx_ = std::move(*ctx);
	GVM_TRY_VOID(proxy->setEngine(std::move(engine)), "configuring the proxy");
	proxy->statsTimer_.start(kStatsIntervalMs, kStatsIntervalMs);
	return proxy;
}

Result<void> Proxy::setEngine(std::shared_ptr<const policy::Engine> engine)
{
	auto guard = AddressGuard::create(engine->upstreamAllowCidrs(), hostAddresses_);
	if (!guard)
		return fail(std::move(guard).error().wrap("reading upstream.allow_cidrs"));
	guard_ = std::make_shared<const AddressGuard>(std::move(*guard));
	engine_ = std::move(engine);
	// Buckets are per rule index, which a new policy reassigns.
	rateLimiter_ = policy::RateLimiter();
	return {};
}

Result<void> Proxy::addListener(ListenerKind kind, UniqueFd fd)
{
	auto listener = std::make_unique<Listener>();
	listener->kind = kind;
	listener->fd = std::move(fd);
	if (int r = uv_poll_init(loop_.get(), listener->poll.get(), listener->fd.get()); r < 0)
		return fail(Error::fromLibuv(r, "watching a listening socket"));
	listener->poll.get()->data = listener.get();
	listener->owner = this;
	Listener *raw = listener.get();
	listeners_.push_back(std::move(listener));
	int r = uv_poll_start(raw->poll.get(), UV_READABLE, [](uv_poll_t *p, int status, int) {
		auto *l = static_cast<Listener *>(p->data);
		if (l && status >= 0 && l->owner)
			l->owner->onAcceptable(*l);
	});
	if (r < 0)
		return fail(Error::fromLibuv(r, "watching a listening socket"));
	return {};
}

void Proxy::onAcceptable(Listener &listener)
{
	// Bounded per wakeup so one busy listener cannot starve the loop.
	for (int i = 0; i < kAcceptBatch; ++i) {
		UniqueFd fd(::accept4(listener.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
		if (!fd) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
				GVM_LOG(Proxy, Warning) << "accepting a connection: " << std::strerror(errno) << ", ignoring";
			return;
		}
		if (connections_.size() >= kMaxConnections) {
			GVM_LOG(Proxy, Warning) << "sandbox " << sandbox_ << " has " << kMaxConnections
						<< " connections open; refusing another";
			continue; // fd closes
		}
		auto transport = Transport::adopt(loop_, std::move(fd));
		if (!transport) {
			GVM_LOG(Proxy, Warning) << transport.error().message() << ", ignoring";
			continue;
		}
		++connectionsTotal_;
		auto conn = std::make_unique<Connection>(*this, std::move(*transport), listener.kind);
		Connection *raw = conn.get();
		connections_.emplace(raw, std::move(conn));
		raw->start();
	}
}

void Proxy::release(Connection *connection)
{
	auto it = connections_.find(connection);
	if (it == connections_.end())
		return;
	loop_.deleteLater(std::move(it->second));
	connections_.erase(it);
}

std::string Proxy::nextRequestId()
{
	return sandbox_ + "-" + std::to_string(nextRequest_++);
}

void Proxy::report(nlohmann::json record, Delivery delivery)
{
	notify("decision", {{"record", std::move(record)}}, delivery);
}

void Proxy::notify(const std::string &method, nlohmann::json params, Delivery delivery)
{
	if (notify_)
		notify_(method, std::move(params), delivery);
}

bool Proxy::registerHold(const std::string &requestId, Connection *connection)
{
	if (holds_.size() >= kMaxHeldRequests)
		return false;
	holds_[requestId] = connection;
	return true;
}

void Proxy::unregisterHold(const std::string &requestId)
{
	holds_.erase(requestId);
}

bool Proxy::answerHold(const std::string &requestId, bool approve)
{
	auto it = holds_.find(requestId);
	if (it == holds_.end())
		return false;
	it->second->resolveHold(requestId, approve);
	return true;
}

void Proxy::sendStats()
{
	if (connections_.size() == lastOpen_ && connectionsTotal_ == lastTotal_)
		return;
	lastOpen_ = connections_.size();
	lastTotal_ = connectionsTotal_;
	notify("stats", {{"connections_open", lastOpen_}, {"connections_total", lastTotal_}}, Delivery::Batched);
}

} // namespace gvm::proxy
