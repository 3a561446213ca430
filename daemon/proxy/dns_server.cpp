// SPDX-License-Identifier: Apache-2.0
#include "daemon/proxy/dns_server.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>
#include <openssl/rand.h>

#include "common/log.h"
#include "daemon/proxy/address_guard.h"
#include "daemon/proxy/proxy.h"
#include "daemon/proxy/transport.h"

namespace gvm::proxy {

namespace {

constexpr uint16_t kDnsPort = 53;
constexpr size_t kLengthPrefixBytes = 2;
// Connections accepted per listener wakeup.
constexpr int kAcceptBatch = 64;
// Random ids drawn before giving up on finding one not in flight; with at
// most kMaxDnsPendingQueries of 65536 taken, never reached in practice.
constexpr int kIdAttempts = 16;
// How long a TCP client that half-closed may take to read its last answer.
constexpr std::chrono::milliseconds kDnsTcpLinger{2000};

uint64_t toMs(std::chrono::milliseconds d)
{
	return static_cast<uint64_t>(std::max<int64_t>(0, d.count()));
}

socklen_t lengthOf(const sockaddr_storage &addr)
{
	return addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

// Same family, address and port.
bool sameEndpoint(const sockaddr_storage &a, const sockaddr_storage &b)
{
	if (a.ss_family != b.ss_family)
		return false;
	if (a.ss_family == AF_INET) {
		const auto &x = reinterpret_cast<const sockaddr_in &>(a);
		const auto &y = reinterpret_cast<const sockaddr_in &>(b);
		return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
	}
	if (a.ss_family == AF_INET6) {
		const auto &x = reinterpret_cast<const sockaddr_in6 &>(a);
		const auto &y = reinterpret_cast<const sockaddr_in6 &>(b);
		return x.sin6_port == y.sin6_port && std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof(in6_addr)) == 0;
	}
	return false;
}

Result<void> checkSocketType(int fd, int want, const char *what)
{
	int type = 0;
	socklen_t length = sizeof(type);
	if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) < 0)
		return fail(Error::fromErrno(errno, std::string("reading the type of the ") + what));
	if (type != want)
		return fail(Error::internal(std::string("the ") + what + " is not a " +
					    (want == SOCK_DGRAM ? "datagram" : "stream") + " socket"));
	return {};
}

std::string withLengthPrefix(const std::string &message)
{
	std::string out;
	out.reserve(kLengthPrefixBytes + message.size());
	out.push_back(static_cast<char>(message.size() >> 8));
	out.push_back(static_cast<char>(message.size() & 0xff));
	out += message;
	return out;
}

// The length a 2-byte prefix announces; the buffer holds at least 2 bytes.
size_t prefixedLength(const std::string &buffer)
{
	return static_cast<size_t>(static_cast<uint8_t>(buffer[0])) << 8 | static_cast<uint8_t>(buffer[1]);
}

// REFUSED rather than NXDOMAIN: the query's shape, not its name, is what
// the policy refuses (see the class comment).
bool isExfiltrationLike(uint16_t qtype, const policy::Decision &decision)
{
	return qtype == policy::kDnsTypeTxt || qtype == policy::kDnsTypeNull || qtype == policy::kDnsTypeAny ||
	       decision.likelyExfiltration;
}

} // namespace

// A socket from gvmd: a UDP socket queries arrive on, or a TCP listener.
struct DnsServer::Socket {
	UniqueFd fd;
	UvHandle<uv_poll_t> poll; // declared after fd: stops watching before the fd closes
	DnsServer *owner = nullptr;
	bool listener = false;
};

// One query from receipt to record: what its record needs.
struct DnsServer::Exchange {
	std::optional<DnsQuery> query; // absent for a malformed message
	std::shared_ptr<const policy::Engine> engine;
	policy::Decision decision;
	policy::ActionKind recorded = policy::ActionKind::Deny;
	bool monitor = false;
	std::string reason;
	std::string requestId;
	std::chrono::steady_clock::time_point started;
	size_t bytesOut = 0;
	bool recordedOnce = false;
};

// A UDP query forwarded upstream, waiting for its answer under `id`.
struct DnsServer::PendingQuery {
	std::unique_ptr<Exchange> exchange;
	Reply reply;
	std::unique_ptr<Timer> timer;
};

// One DNS-over-TCP client connection: reads length-prefixed queries and
// answers them one at a time, in order (RFC 7766 allows that); while one is
// answered the connection is not read, which bounds what a client can queue.
// A forwarded query goes to the upstream over its own TCP connection
// (the answer may be too big for UDP: that is why the client used TCP).
// Owned by the DnsServer; deleted later (never inside its own callbacks).
class DnsServer::TcpClient
{
public:
	TcpClient(DnsServer &server, std::unique_ptr<Transport> agent)
		: server_(server), agent_(std::move(agent)),
		  readTimer_(server.proxy_.loop(), [this] { close("no complete query in time"); }),
		  upstreamTimer_(server.proxy_.loop(), [this] { upstreamFailed("upstream timed out"); }),
		  alive_(std::make_shared<bool>(true))
	{
	}
	TcpClient(const TcpClient &) = delete;
	TcpClient &operator=(const TcpClient &) = delete;

	enum class State {
		Reading,   // waiting for (the rest of) a query
		Answering, // one query is being answered; the client is not read
		Lingering, // the client half-closed: our last answer drains
		Closed,
	};
	static const char *toString(State state)
	{
		switch (state) {
		case State::Reading: return "reading";
		case State::Answering: return "answering";
		case State::Lingering: return "lingering";
		case State::Closed: return "closed";
		}
		return "?";
	}

	void start()
	{
		agent_->setCallbacks({
			[this](std::string_view data) { onData(data); },
			[this] { onEof(); },
			[this](const Error &error) { close(error.message()); },
			nullptr,
		});
		agent_->startReading();
		readTimer_.start(toMs(server_.options_.tcpReadTimeout));
	}

	// The answer to the current query ("" = none: the query is dropped).
	void answer(const std::string &message)
	{
		if (state_ != State::Answering)
			return;
		if (!message.empty())
			agent_->write(withLengthPrefix(message));
		setState(State::Reading);
		answered_ = true;
		process();
	}

	void forward(std::unique_ptr<Exchange> exchange)
	{
		exchange_ = std::move(exchange);
		auto id = server_.freshId();
		if (!id) {
			upstreamFailed(id.error().message());
			return;
		}
		upstreamId_ = *id;
		upstreamQuery_ = withLengthPrefix(buildDnsUpstreamQuery(*exchange_->query, upstreamId_));
		std::weak_ptr<bool> alive = alive_;
		// A connect from the worker is allowed by its seccomp filter;
		// libuv does not bind() before connecting.
		upstream_ = Transport::connect(server_.proxy_.loop(), reinterpret_cast<const sockaddr *>(&server_.upstream_),
					       [this, alive](Result<void> result) {
						       if (!alive.expired())
							       onUpstreamConnected(std::move(result));
					       });
		upstreamTimer_.start(toMs(server_.options_.upstreamTimeout));
	}

	// Ends the connection; a query in flight is recorded as failed.
	void close(const std::string &why)
	{
		if (state_ == State::Closed)
			return;
		setState(State::Closed);
		alive_.reset();
		readTimer_.stop();
		dropUpstream();
		agent_->close();
		if (exchange_ && !server_.stopping_) {
			std::unique_ptr<Exchange> x = std::move(exchange_);
			x->reason += "; the client went away before the answer (" + why + ")";
			server_.record(*x, 0, static_cast<int>(DnsRcode::ServFail));
		}
		GVM_LOG(Proxy, Debug) << "DNS TCP client closed: " << why;
		server_.releaseTcp(this);
	}

private:
	void onData(std::string_view data)
	{
		buffer_.append(data);
		process();
	}

	void onEof()
	{
		eof_ = true;
		process();
	}

	// Answers every complete query buffered, one at a time. Iterative, not
	// recursive: a local answer comes back through answer() while this
	// loop is running.
	void process()
	{
		if (processing_ || state_ != State::Reading)
			return;
		processing_ = true;
		while (state_ == State::Reading && buffer_.size() >= kLengthPrefixBytes) {
			size_t length = prefixedLength(buffer_);
			if (length > kMaxDnsQueryBytes) {
				// Cannot be skipped without reading it all: say so
				// and hang up.
				setState(State::Answering);
				server_.handleMalformed(std::string_view(buffer_).substr(kLengthPrefixBytes),
							Reply{nullptr, {}, 0, this},
							Error::internal("TCP message of " + std::to_string(length) +
									" bytes is over the limit of " +
									std::to_string(kMaxDnsQueryBytes)),
							std::chrono::steady_clock::now());
				buffer_.clear();
				eof_ = true;
				break;
			}
			if (buffer_.size() < kLengthPrefixBytes + length)
				break;
			std::string message = buffer_.substr(kLengthPrefixBytes, length);
			buffer_.erase(0, kLengthPrefixBytes + length);
			setState(State::Answering);
			server_.handleQuery(message, Reply{nullptr, {}, 0, this});
		}
		processing_ = false;
		if (state_ == State::Closed)
			return;
		if (state_ == State::Answering) {
			agent_->stopReading();
			readTimer_.stop();
			return;
		}
		if (eof_) {
			// The client is done sending: let our last answer
			// leave, then close.
			setState(State::Lingering);
			readTimer_.stop();
			agent_->shutdownWrite();
			if (agent_->queuedBytes() == 0)
				close("the client closed its side");
			else
				lingerTimer().start(toMs(kDnsTcpLinger));
			return;
		}
		if (answered_) {
			// The read timeout runs from the last answer, not from
			// the last byte: trickling bytes does not extend it.
			answered_ = false;
			readTimer_.start(toMs(server_.options_.tcpReadTimeout));
		}
		if (!agent_->reading())
			agent_->startReading();
	}

	void setState(State state)
	{
		if (state == state_)
			return;
		GVM_LOG(Proxy, Debug) << "DNS TCP client: " << toString(state_) << " -> " << toString(state);
		state_ = state;
	}

	Timer &lingerTimer()
	{
		if (!linger_)
			linger_ = std::make_unique<Timer>(server_.proxy_.loop(), [this] { close("the client closed its side"); });
		return *linger_;
	}

	void onUpstreamConnected(Result<void> result)
	{
		if (!result) {
			upstreamFailed("connecting to the upstream: " + result.error().message());
			return;
		}
		upstream_->setCallbacks({
			[this](std::string_view data) { onUpstreamData(data); },
			[this] { upstreamFailed("the upstream closed the connection before answering"); },
			[this](const Error &error) { upstreamFailed("upstream: " + error.message()); },
			nullptr,
		});
		upstream_->write(upstreamQuery_);
		upstream_->startReading();
	}

	void onUpstreamData(std::string_view data)
	{
		upstreamBuffer_.append(data);
		if (upstreamBuffer_.size() < kLengthPrefixBytes)
			return;
		size_t length = prefixedLength(upstreamBuffer_);
		if (upstreamBuffer_.size() < kLengthPrefixBytes + length)
			return;
		std::string message = upstreamBuffer_.substr(kLengthPrefixBytes, length);
		dropUpstream();
		auto response = parseDnsResponse(message);
		if (!response) {
			upstreamFailed("malformed upstream answer: " + response.error().message());
			return;
		}
		if (response->id != upstreamId_ || !answersQuestion(*response, exchange_->query->question)) {
			upstreamFailed("the upstream answered another question");
			return;
		}
		// relay() may start the next query (through answer()), which
		// sets a new exchange_: take this one out first.
		std::unique_ptr<Exchange> x = std::move(exchange_);
		server_.relay(*x, Reply{nullptr, {}, 0, this}, std::move(message), *response);
	}

	void upstreamFailed(const std::string &why)
	{
		dropUpstream();
		if (!exchange_)
			return;
		std::unique_ptr<Exchange> x = std::move(exchange_);
		server_.answerServfail(*x, Reply{nullptr, {}, 0, this}, why);
	}

	// Closes the upstream connection; the Transport is deleted later, as
	// this may run inside one of its callbacks.
	void dropUpstream()
	{
		upstreamTimer_.stop();
		upstreamBuffer_.clear();
		if (upstream_) {
			upstream_->close();
			server_.proxy_.loop().deleteLater(std::move(upstream_));
		}
	}

	DnsServer &server_;
	std::unique_ptr<Transport> agent_;
	std::string buffer_;
	Timer readTimer_;
	std::unique_ptr<Timer> linger_;
	State state_ = State::Reading;
	bool processing_ = false; // inside process()
	bool answered_ = false;   // answered since the read timer was started
	bool eof_ = false;        // the client will send no more
	// The query forwarded upstream, while it is.
	std::unique_ptr<Exchange> exchange_;
	std::unique_ptr<Transport> upstream_;
	std::string upstreamQuery_;
	std::string upstreamBuffer_;
	uint16_t upstreamId_ = 0;
	Timer upstreamTimer_;
	// Expires with the client, for the connect callback that Transport may
	// post to the loop.
	std::shared_ptr<bool> alive_;
};

DnsServer::DnsServer(Proxy &proxy, const sockaddr_storage &upstream, DnsServerOptions options)
	: proxy_(proxy), upstream_(upstream), upstreamLength_(lengthOf(upstream)), options_(options),
	  buffer_(kMaxDnsMessageBytes + 1)
{
}

DnsServer::~DnsServer()
{
	// Queries in flight are dropped unrecorded: the proxy that records
	// them is going away too.
	stopping_ = true;
	auto clients = std::move(tcpClients_);
	tcpClients_.clear();
	clients.clear();
	pending_.clear();
	sockets_.clear();
}

Result<std::unique_ptr<DnsServer>> DnsServer::create(Proxy &proxy, const sockaddr_storage &upstream,
						     DnsServerOptions options)
{
	if (upstream.ss_family != AF_INET && upstream.ss_family != AF_INET6)
		return fail(Error::internal("the upstream resolver must be an IPv4 or IPv6 address"));
	std::unique_ptr<DnsServer> server(new DnsServer(proxy, upstream, options));
	// A connected socket: the kernel delivers only the upstream's
	// datagrams, and connect() picks a source port without bind(), which
	// the worker's seccomp filter forbids.
	server->upstreamFd_.reset(::socket(upstream.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (!server->upstreamFd_)
		return fail(Error::fromErrno(errno, "creating the upstream DNS socket"));
	if (::connect(server->upstreamFd_.get(), reinterpret_cast<const sockaddr *>(&upstream), server->upstreamLength_) < 0)
		return fail(Error::fromErrno(errno, "connecting to the upstream resolver " +
							    formatAddress(reinterpret_cast<const sockaddr *>(&upstream))));
	uv_poll_t *poll = server->upstreamPoll_.get();
	if (int r = uv_poll_init(proxy.loop().get(), poll, server->upstreamFd_.get()); r < 0)
		return fail(Error::fromLibuv(r, "watching the upstream DNS socket"));
	poll->data = server.get();
	int r = uv_poll_start(poll, UV_READABLE, [](uv_poll_t *p, int status, int) {
		if (auto *self = static_cast<DnsServer *>(p->data); self && status >= 0)
			self->onUpstreamReadable();
	});
	if (r < 0)
		return fail(Error::fromLibuv(r, "watching the upstream DNS socket"));
	return server;
}

Result<DnsServer::Socket *> DnsServer::watch(UniqueFd fd, bool listener)
{
	auto socket = std::make_unique<Socket>();
	socket->fd = std::move(fd);
	socket->owner = this;
	socket->listener = listener;
	if (int r = uv_poll_init(proxy_.loop().get(), socket->poll.get(), socket->fd.get()); r < 0)
		return fail(Error::fromLibuv(r, "watching a DNS socket"));
	socket->poll.get()->data = socket.get();
	int r = uv_poll_start(socket->poll.get(), UV_READABLE, [](uv_poll_t *p, int status, int) {
		auto *s = static_cast<Socket *>(p->data);
		if (!s || status < 0)
			return;
		if (s->listener)
			s->owner->onAcceptable(*s);
		else
			s->owner->onUdpReadable(*s);
	});
	if (r < 0)
		return fail(Error::fromLibuv(r, "watching a DNS socket"));
	sockets_.push_back(std::move(socket));
	return sockets_.back().get();
}

Result<void> DnsServer::addUdpSocket(UniqueFd fd)
{
	GVM_TRY_VOID(checkSocketType(fd.get(), SOCK_DGRAM, "DNS UDP socket"), "serving DNS over UDP");
	auto socket = watch(std::move(fd), false);
	if (!socket)
		return fail(std::move(socket).error().wrap("serving DNS over UDP"));
	return {};
}

Result<void> DnsServer::addTcpListener(UniqueFd fd)
{
	GVM_TRY_VOID(checkSocketType(fd.get(), SOCK_STREAM, "DNS TCP listener"), "serving DNS over TCP");
	int listening = 0;
	socklen_t length = sizeof(listening);
	if (::getsockopt(fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) < 0)
		return fail(Error::fromErrno(errno, "serving DNS over TCP: reading SO_ACCEPTCONN"));
	// The worker cannot call listen() itself (seccomp): gvmd must have.
	if (!listening)
		return fail(Error::internal("serving DNS over TCP: the socket is not listening"));
	auto socket = watch(std::move(fd), true);
	if (!socket)
		return fail(std::move(socket).error().wrap("serving DNS over TCP"));
	return {};
}

void DnsServer::onUdpReadable(Socket &socket)
{
	for (int i = 0; i < kDnsUdpBatch; ++i) {
		Reply reply;
		reply.udp = &socket;
		reply.peerLength = sizeof(reply.peer);
		// MSG_TRUNC: n is the datagram's real length, so an oversized
		// one is refused rather than parsed cut.
		ssize_t n = ::recvfrom(socket.fd.get(), buffer_.data(), buffer_.size(), MSG_DONTWAIT | MSG_TRUNC,
				       reinterpret_cast<sockaddr *>(&reply.peer), &reply.peerLength);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				GVM_LOG(Proxy, Debug) << "reading a DNS query: " << std::strerror(errno) << ", ignoring";
			return;
		}
		size_t length = std::min(static_cast<size_t>(n), buffer_.size());
		handleQuery(std::string_view(buffer_.data(), length), reply);
	}
}

void DnsServer::onAcceptable(Socket &listener)
{
	for (int i = 0; i < kAcceptBatch; ++i) {
		UniqueFd fd(::accept4(listener.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
		if (!fd) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
				GVM_LOG(Proxy, Debug) << "accepting a DNS connection: " << std::strerror(errno)
						      << ", ignoring";
			return;
		}
		if (tcpClients_.size() >= kMaxDnsTcpClients) {
			GVM_LOG(Proxy, Debug) << kMaxDnsTcpClients << " DNS TCP clients connected; refusing another";
			continue; // fd closes
		}
		auto transport = Transport::adopt(proxy_.loop(), std::move(fd));
		if (!transport) {
			GVM_LOG(Proxy, Debug) << transport.error().message() << ", ignoring";
			continue;
		}
		auto client = std::make_unique<TcpClient>(*this, std::move(*transport));
		TcpClient *raw = client.get();
		tcpClients_.emplace(raw, std::move(client));
		raw->start();
	}
}

void DnsServer::releaseTcp(TcpClient *client)
{
	auto it = tcpClients_.find(client);
	if (it == tcpClients_.end())
		return;
	proxy_.loop().deleteLater(std::move(it->second));
	tcpClients_.erase(it);
}

void DnsServer::handleQuery(std::string_view message, const Reply &reply)
{
	++queries_;
	auto started = std::chrono::steady_clock::now();
	auto parsed = parseDnsQuery(message);
	if (!parsed) {
		handleMalformed(message, reply, parsed.error(), started);
		return;
	}
	auto x = std::make_unique<Exchange>();
	x->query = std::move(*parsed);
	x->engine = proxy_.engine();
	x->requestId = proxy_.nextRequestId();
	x->started = started;
	x->bytesOut = message.size();
	const DnsQuestion &question = x->query->question;

	if (question.qclass != kDnsClassIn) {
		// CHAOS "version.bind" and the like: nothing an agent needs,
		// and not the host resolver's business. Not a policy matter,
		// so enforced even in monitor mode.
		x->reason = "class " + std::to_string(question.qclass) + " queries are not served";
		finish(*x, reply, buildDnsResponse(*x->query, DnsRcode::Refused), static_cast<int>(DnsRcode::Refused));
		return;
	}

	x->decision = x->engine->evaluateDns(question.name, question.qtype);
	x->monitor = x->decision.mode == policy::Mode::Monitor || proxy_.forceMonitor();
	x->recorded = x->decision.action;
	x->reason = x->decision.reason;
	if (x->decision.action != policy::ActionKind::Allow && !x->monitor) {
		// Answered here: the upstream never sees a denied name, so a
		// name cannot leak data out through the resolver.
		DnsRcode rcode = isExfiltrationLike(question.qtype, x->decision) ? DnsRcode::Refused : DnsRcode::NxDomain;
		finish(*x, reply, buildDnsResponse(*x->query, rcode), static_cast<int>(rcode));
		return;
	}
	if (question.qtype == policy::kDnsTypeAaaa) {
		// The sandbox has no IPv6: an AAAA answer would only make
		// clients try addresses they cannot reach.
		x->reason += "; NODATA: the sandbox has no IPv6";
		finish(*x, reply, buildDnsResponse(*x->query, DnsRcode::NoError), static_cast<int>(DnsRcode::NoError));
		return;
	}
	if (reply.tcp) {
		++forwarded_;
		reply.tcp->forward(std::move(x));
		return;
	}
	forwardUdp(std::move(x), reply);
}

void DnsServer::handleMalformed(std::string_view message, const Reply &reply, const Error &error,
				std::chrono::steady_clock::time_point started)
{
	Exchange x;
	x.engine = proxy_.engine();
	x.requestId = proxy_.nextRequestId();
	x.started = started;
	x.bytesOut = message.size();
	x.reason = "malformed DNS query: " + error.message();
	DnsIdPeek peek = peekDnsId(message);
	if (peek.response() || !peek.id) {
		// No answer: without an id the client could not match one,
		// and a response is never answered (no loops between servers).
		x.reason += peek.response() ? "; a response, dropped" : "; no id, dropped";
		finish(x, reply, "", 0);
		return;
	}
	DnsRcode rcode = peek.otherOpcode() ? DnsRcode::NotImp : DnsRcode::FormErr;
	finish(x, reply, buildDnsHeaderOnlyResponse(*peek.id, peek.flags.value_or(0), rcode), static_cast<int>(rcode));
}

Result<uint16_t> DnsServer::freshId() const
{
	// Unpredictable, so that only the upstream (not someone guessing
	// ids) can answer a query.
	for (int i = 0; i < kIdAttempts; ++i) {
		uint8_t bytes[2];
		if (!RAND_bytes(bytes, sizeof(bytes)))
			return fail(Error::fromSsl("drawing a DNS query id"));
		auto id = static_cast<uint16_t>(bytes[0] << 8 | bytes[1]);
		if (!pending_.count(id))
			return id;
	}
	return fail(Error::internal("no free DNS query id"));
}

void DnsServer::forwardUdp(std::unique_ptr<Exchange> x, const Reply &reply)
{
	if (pending_.size() >= kMaxDnsPendingQueries) {
		answerServfail(*x, reply,
			       "too many queries waiting for the upstream (" + std::to_string(kMaxDnsPendingQueries) + ")");
		return;
	}
	auto id = freshId();
	if (!id) {
		answerServfail(*x, reply, id.error().message());
		return;
	}
	std::string query = buildDnsUpstreamQuery(*x->query, *id);
	if (::send(upstreamFd_.get(), query.data(), query.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		answerServfail(*x, reply, std::string("sending to the upstream: ") + std::strerror(errno));
		return;
	}
	++forwarded_;
	auto pending = std::make_unique<PendingQuery>();
	pending->exchange = std::move(x);
	pending->reply = reply;
	uint16_t key = *id;
	pending->timer = std::make_unique<Timer>(proxy_.loop(), [this, key] { onUpstreamTimeout(key); });
	pending->timer->start(toMs(options_.upstreamTimeout));
	pending_.emplace(key, std::move(pending));
}

void DnsServer::onUpstreamTimeout(uint16_t id)
{
	auto it = pending_.find(id);
	if (it == pending_.end())
		return;
	std::unique_ptr<PendingQuery> pending = std::move(it->second);
	pending_.erase(it);
	answerServfail(*pending->exchange, pending->reply, "upstream timed out");
	// Its timer is running this callback: delete it afterwards.
	proxy_.loop().deleteLater(std::move(pending));
}

void DnsServer::onUpstreamReadable()
{
	for (int i = 0; i < kDnsUdpBatch; ++i) {
		sockaddr_storage from{};
		socklen_t fromLength = sizeof(from);
		ssize_t n = ::recvfrom(upstreamFd_.get(), buffer_.data(), buffer_.size(), MSG_DONTWAIT | MSG_TRUNC,
				       reinterpret_cast<sockaddr *>(&from), &fromLength);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			// ECONNREFUSED and the like: an ICMP error about an
			// earlier datagram. Its query times out.
			GVM_LOG(Proxy, Debug) << "reading from the upstream resolver: " << std::strerror(errno)
					      << ", ignoring";
			continue;
		}
		// The socket is connected, so the kernel already filters by
		// source; checked again so that stays true whatever changes.
		if (!sameEndpoint(from, upstream_) || static_cast<size_t>(n) > kMaxDnsMessageBytes)
			continue;
		std::string message(buffer_.data(), static_cast<size_t>(n));
		auto response = parseDnsResponse(message);
		if (!response) {
			GVM_LOG(Proxy, Debug) << "malformed upstream DNS answer: " << response.error().message()
					      << ", ignoring";
			continue;
		}
		auto it = pending_.find(response->id);
		// An answer to another question under the id is ignored (a
		// forgery, or a late answer to an id reused): the query keeps
		// waiting for the real one or its timeout.
		if (it == pending_.end() || !answersQuestion(*response, it->second->exchange->query->question))
			continue;
		std::unique_ptr<PendingQuery> pending = std::move(it->second);
		pending_.erase(it);
		pending->timer->stop();
		relay(*pending->exchange, pending->reply, std::move(message), *response);
	}
}

void DnsServer::relay(Exchange &x, const Reply &reply, std::string answer, const DnsResponse &response)
{
	const DnsQuery &query = *x.query;
	setDnsId(answer, query.id);
	auto rcode = static_cast<DnsRcode>(response.rawRcode());
	if (reply.udp && (response.truncated() || answer.size() > query.maxUdpAnswer())) {
		// Too big for the client over UDP: TC tells it to ask again
		// over TCP, where the upstream is asked over TCP too.
		answer = buildDnsResponse(query, rcode, true);
		x.reason += "; answer truncated, the client is told to retry over TCP";
	} else if (rcode == DnsRcode::NoError) {
		remember(response);
	}
	finish(x, reply, answer, response.rawRcode());
}

void DnsServer::answerServfail(Exchange &x, const Reply &reply, const std::string &why)
{
	x.reason += "; " + why;
	finish(x, reply, buildDnsResponse(*x.query, DnsRcode::ServFail), static_cast<int>(DnsRcode::ServFail));
}

void DnsServer::finish(Exchange &x, const Reply &reply, const std::string &answer, int status)
{
	// Recorded first: a denial must reach gvmd before the agent can act on
	// its answer.
	record(x, answer.size(), status);
	send(reply, answer);
}

void DnsServer::send(const Reply &reply, const std::string &answer)
{
	if (reply.tcp) {
		reply.tcp->answer(answer);
		return;
	}
	if (!reply.udp || answer.empty())
		return;
	// A full socket buffer drops the answer: the client retries, as it
	// would after any lost datagram.
	if (::sendto(reply.udp->fd.get(), answer.data(), answer.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
		     reinterpret_cast<const sockaddr *>(&reply.peer), reply.peerLength) < 0)
		GVM_LOG(Proxy, Debug) << "sending a DNS answer: " << std::strerror(errno) << ", ignoring";
}

void DnsServer::record(Exchange &x, size_t bytesIn, int status)
{
	if (x.recordedOnce)
		return;
	x.recordedOnce = true;
	bool enforcedDenial = x.recorded != policy::ActionKind::Allow && !x.monitor;
	if (enforcedDenial)
		++denied_;
	auto latency =
		std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - x.started);
	nlohmann::json record = {
		{"kind", "dns"},
		{"method", x.query ? dnsTypeName(x.query->question.qtype) : ""},
		{"host", x.query ? x.query->question.name : ""},
		{"port", kDnsPort},
		{"path", ""},
		{"rule", x.decision.rule},
		{"action", policy::toString(x.recorded)},
		{"mode", x.monitor ? "monitor" : "enforce"},
		{"status", status},
		{"bytes_out", x.bytesOut},
		{"bytes_in", bytesIn},
		{"latency_us", latency.count()},
		{"reason", x.reason},
		{"request_id", x.requestId},
		{"policy", x.engine ? x.engine->name() : ""},
		{"policy_sha256", x.engine ? x.engine->sha256() : ""},
	};
	proxy_.report(std::move(record), enforcedDenial ? Proxy::Delivery::Now : Proxy::Delivery::Batched);
}

void DnsServer::remember(const DnsResponse &response)
{
	uint64_t now = proxy_.loop().now();
	for (const DnsAddressRecord &a : response.addresses) {
		auto ttl = std::clamp(std::chrono::seconds(a.ttl), options_.minRememberTtl,
				      std::chrono::seconds(kMaxDnsRememberTtl));
		uint64_t expires = now + static_cast<uint64_t>(std::chrono::milliseconds(ttl).count());
		// Last name of the chain first, so the name the agent asked
		// for is the most recent.
		for (auto name = response.chain.rbegin(); name != response.chain.rend(); ++name) {
			auto key = std::make_pair(a.address, *name);
			auto it = remembered_.find(key);
			if (it != remembered_.end()) {
				it->second->expiresMs = expires;
				it->second->stamp = ++stamp_;
				lru_.splice(lru_.begin(), lru_, it->second);
				continue;
			}
			lru_.push_front(Remembered{a.address, *name, expires, ++stamp_});
			remembered_.emplace(std::move(key), lru_.begin());
			if (lru_.size() > std::max<size_t>(options_.maxRememberedNames, 1)) {
				remembered_.erase(std::make_pair(lru_.back().address, lru_.back().name));
				lru_.pop_back();
			}
		}
	}
}

std::vector<std::string> DnsServer::namesFor(const std::string &address) const
{
	uint64_t now = proxy_.loop().now();
	std::vector<std::pair<uint64_t, std::string>> found;
	for (auto it = remembered_.lower_bound(std::make_pair(address, std::string()));
	     it != remembered_.end() && it->first.first == address; ++it)
		if (it->second->expiresMs > now)
			found.emplace_back(it->second->stamp, it->second->name);
	std::sort(found.begin(), found.end(), [](const auto &a, const auto &b) { return a.first > b.first; });
	std::vector<std::string> names;
	names.reserve(found.size());
	for (auto &f : found)
		names.push_back(std::move(f.second));
	return names;
}

} // namespace gvm::proxy
