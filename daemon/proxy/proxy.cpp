// SPDX-License-Identifier: Apache-2.0
#include "daemon/proxy/proxy.h"

#include <cerrno>
#include <cstring>
#include <arpa/inet.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <optional>
#include <sys/socket.h>

#include "common/audit_chain.h"
#include "common/log.h"
#include "daemon/proxy/connection.h"
#include "daemon/proxy/dns_server.h"

namespace gvm::proxy {

namespace {
constexpr uint64_t kStatsIntervalMs = 1000;
constexpr int kAcceptBatch = 64;

// Where nftables' redirect sent a connection from (SO_ORIGINAL_DST); an
// empty address when the agent dialled the listener itself; nullopt when
// the kernel knows of no redirection at all.
std::optional<Connection::Destination> originalDestination(int fd)
{
	sockaddr_in original{};
	socklen_t len = sizeof(original);
	if (::getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &original, &len) < 0 || original.sin_family != AF_INET)
		return std::nullopt;
	sockaddr_in local{};
	socklen_t localLen = sizeof(local);
	if (::getsockname(fd, reinterpret_cast<sockaddr *>(&local), &localLen) == 0 &&
	    local.sin_addr.s_addr == original.sin_addr.s_addr && local.sin_port == original.sin_port)
		return Connection::Destination{};
	char text[INET_ADDRSTRLEN] = {};
	::inet_ntop(AF_INET, &original.sin_addr, text, sizeof(text));
	return Connection::Destination{text, ntohs(original.sin_port)};
}
} // namespace

std::optional<ListenerKind> parseListenerKind(std::string_view name)
{
	if (name == "explicit")
		return ListenerKind::Explicit;
	if (name == "transparent")
		return ListenerKind::Transparent;
	if (name == "dns-udp")
		return ListenerKind::DnsUdp;
	if (name == "dns-tcp")
		return ListenerKind::DnsTcp;
	return std::nullopt;
}

Proxy::Proxy(Loop &loop, Setup setup)
	: loop_(loop), sandbox_(std::move(setup.sandbox)), forceMonitor_(setup.forceMonitor), ca_(std::move(setup.ca)),
	  upstreamTls_(std::move(setup.upstreamTls)), hostAddresses_(std::move(setup.hostAddresses)),
	  sandboxPool_(std::move(setup.sandboxPool)),
	  notify_(std::move(setup.notify)), sendLine_(std::move(setup.sendLine)), pool_(loop), statsTimer_(loop, [this] { sendStats(); })
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
	const std::optional<sockaddr_storage> dnsUpstream = setup.dnsUpstream;
	std::unique_ptr<Proxy> proxy(new Proxy(loop, std::move(setup)));
	proxy->interceptCtx_ = std::move(*ctx);
	GVM_TRY_VOID(proxy->setEngine(std::move(engine)), "configuring the proxy");
	if (dnsUpstream) {
		auto dns = DnsServer::create(*proxy, *dnsUpstream);
		if (!dns)
			return fail(std::move(dns).error().wrap("starting the sandbox's DNS"));
		proxy->dns_ = std::move(*dns);
	}
	proxy->statsTimer_.start(kStatsIntervalMs, kStatsIntervalMs);
	return proxy;
}

Result<void> Proxy::setEngine(std::shared_ptr<const policy::Engine> engine)
{
	auto guard = AddressGuard::create(engine->upstreamAllowCidrs(), hostAddresses_, sandboxPool_);
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
	if (kind == ListenerKind::DnsUdp || kind == ListenerKind::DnsTcp) {
		if (!dns_)
			return fail(Error::fromErrno(EINVAL, "a DNS socket, but no upstream resolver was configured"));
		return kind == ListenerKind::DnsUdp ? dns_->addUdpSocket(std::move(fd)) : dns_->addTcpListener(std::move(fd));
	}
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
		std::optional<Connection::Destination> original;
		ListenerKind kind = listener.kind;
		if (kind == ListenerKind::Transparent) {
			original = originalDestination((*transport)->fd());
			// Opened to the worker's own address (HTTP_PROXY): the
			// explicit proxy's rules. Without a recorded original
			// destination nothing can be decided: closed.
			if (!original) {
				GVM_LOG(Proxy, Debug) << "a transparent connection without an original destination; closing";
				continue;
			}
			if (original->address.empty())
				kind = ListenerKind::Explicit;
		}
		++connectionsTotal_;
		auto conn = std::make_unique<Connection>(*this, std::move(*transport), kind,
							 kind == ListenerKind::Transparent ? original : std::nullopt);
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

std::vector<std::string> Proxy::dnsNamesFor(const std::string &address) const
{
	return dns_ ? dns_->namesFor(address) : std::vector<std::string>{};
}

std::string Proxy::nextRequestId()
{
	return sandbox_ + "-" + std::to_string(nextRequest_++);
}

void Proxy::report(nlohmann::json record, Delivery delivery)
{
	notify("decision", {{"record", std::move(record)}}, delivery);
}

void Proxy::reportRecord(std::string recordJson, Delivery delivery)
{
	if (!sendLine_) {
		report(nlohmann::json::parse(recordJson, nullptr, false), delivery);
		return;
	}
	sendLine_(decisionLine(recordJson), delivery);
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
