// SPDX-License-Identifier: Apache-2.0
#include "daemon/proxy/connection.h"

#include <algorithm>
#include <cstdio>

#include "common/json_rpc.h"
#include "common/json_writer.h"
#include "common/log.h"
#include "common/text.h"
#include "daemon/proxy/client_hello.h"

namespace gvm::proxy {

namespace {

using policy::ActionKind;

std::string chunk(std::string_view data)
{
	char size[24];
	std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
	std::string out(size);
	out.append(data);
	out.append("\r\n");
	return out;
}

constexpr std::string_view kLastChunk = "0\r\n\r\n";

template<typename D>
uint64_t ms(D d)
{
	return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

bool hasBody(const std::string &method, int status)
{
	return method != "HEAD" && status >= 200 && status != 204 && status != 304;
}

} // namespace

const char *Connection::toString(State state)
{
	switch (state) {
	case State::Classifying:
		return "classifying";
	case State::TlsHandshake:
		return "tls-handshake";
	case State::ReadingHead:
		return "reading-head";
	case State::Deciding:
		return "deciding";
	case State::Forwarding:
		return "forwarding";
	case State::Tunnel:
		return "tunnel";
	case State::Closing:
		return "closing";
	case State::Closed:
		return "closed";
	}
	return "?";
}

Connection::Connection(Proxy &proxy, std::unique_ptr<Transport> agent, ListenerKind kind,
		       std::optional<Destination> original)
	: proxy_(proxy), agent_(std::move(agent)), kind_(kind), original_(std::move(original)),
	  timer_(proxy.loop(), [this] { onTimeout(); }), alive_(std::make_shared<Connection *>(this))
{
}

Connection::~Connection()
{
	close();
}

void Connection::setState(State state)
{
	if (state == state_)
		return;
	GVM_LOG(Proxy, Debug) << "connection fd " << agent_->fd() << ": " << toString(state_) << " -> " << toString(state);
	state_ = state;
}

void Connection::start()
{
	agent_->setCallbacks({[this](std::string_view data) {
				      if (state_ == State::Closing || state_ == State::Closed)
					      return;
				      if (state_ == State::ReadingHead && inbox_.empty() && parser_ &&
					  parser_->bufferedBytes() == 0)
					      armTimer(kHeaderTimeout);
				      if (state_ == State::Tunnel)
					      armTimer(kTunnelIdleTimeout);
				      // The agent spoke first: the rest of its first bytes
				      // get the header time, not kServerFirstTimeout.
				      if (state_ == State::Classifying && inbox_.empty() && original_)
					      armTimer(kHeaderTimeout);
				      inbox_.append(data);
				      process();
			      },
			      [this] {
				      agentEof_ = true;
				      process();
				      if (state_ == State::Closed)
					      return;
				      switch (state_) {
				      case State::Tunnel:
					      tunnelEof(true);
					      break;
				      case State::Deciding:
				      case State::Forwarding:
					      // The response may still be written; a request
					      // cut short ends the exchange.
					      if (exchange_ && !exchange_->requestDone) {
						      if (exchange_->reason.empty())
							      exchange_->reason = "the agent closed the connection mid-request";
						      close();
					      }
					      break;
				      default:
					      close();
				      }
			      },
			      [this](const Error &e) {
				      GVM_LOG(Proxy, Debug) << "agent connection: " << e.message();
				      close();
			      },
			      [this] {
				      if (exchange_ && exchange_->upstream && exchange_->upstream->state() == Transport::State::Open &&
					  !upstreamDone_)
					      exchange_->upstream->startReading();
			      }});
	armTimer(original_ ? std::chrono::milliseconds(kServerFirstTimeout) : std::chrono::milliseconds(kHeaderTimeout));
	agent_->startReading();
}

void Connection::armTimer(std::chrono::milliseconds timeout)
{
	timer_.start(static_cast<uint64_t>(timeout.count()));
}

void Connection::process()
{
	// Reentrancy guard: a step may answer, resume the parser or finish an
	// exchange, each of which may want another step.
	if (processing_) {
		again_ = true;
		return;
	}
	std::weak_ptr<Connection *> alive = alive_;
	processing_ = true;
	do {
		again_ = false;
		step();
		if (alive.expired())
			return;
	} while (again_ && state_ != State::Closed);
	processing_ = false;
	updateAgentReading();
}

void Connection::step()
{
	switch (state_) {
	case State::Classifying:
		classify();
		break;
	case State::ReadingHead:
	case State::Deciding:
	case State::Forwarding:
		pumpHttp();
		break;
	case State::Tunnel:
		if (!inbox_.empty() && exchange_ && exchange_->upstream) {
			std::string data = std::move(inbox_);
			inbox_.clear();
			spliceFromAgent(data);
		}
		break;
	case State::TlsHandshake:
		// Plain bytes that came with the end of the handshake: the first
		// request, read once the HTTP state begins.
		break;
	case State::Closing:
		inbox_.clear();
		break;
	case State::Closed:
		break;
	}
}

void Connection::classify()
{
	if (inbox_.empty())
		return;
	switch (classifyFirstBytes(inbox_)) {
	case FirstBytes::NeedMore:
		return;
	case FirstBytes::Http:
		enterHttp();
		return;
	case FirstBytes::Other:
		if (connectHost_.empty() && original_) {
			startTransparentTcp();
			return;
		}
		if (connectHost_.empty()) {
			GVM_LOG(Proxy, Debug) << "neither TLS nor HTTP on the explicit port; closing";
			close();
			return;
		}
		startTunnel("tcp", true);
		return;
	case FirstBytes::Tls:
		break;
	}
	auto hello = parseClientHello(inbox_);
	if (!hello) {
		GVM_LOG(Proxy, Debug) << "bad ClientHello: " << hello.error().message();
		close();
		return;
	}
	if (!*hello)
		return; // more bytes to come
	std::string name = (*hello)->serverName;
	bool mismatch = false;
	if (connectHost_.empty()) {
		// TLS straight to the explicit port, or redirected: the SNI
		// is all there is (the upstream is dialled by that name, so
		// the address the agent picked is never reached unchecked).
		if (name.empty()) {
			if (original_) {
				// No name to decide on: raw TCP to the address.
				startTransparentTcp();
				return;
			}
			close();
			return;
		}
		connectHost_ = name;
		connectPort_ = original_ ? original_->port : 443;
	} else if (name.empty()) {
		name = connectHost_;
	} else if (name != connectHost_) {
		mismatch = true;
	}
	auto engine = proxy_.engine();
	policy::Decision d = engine->evaluateTls(name, connectPort_);
	const bool monitor = d.mode == policy::Mode::Monitor || proxy_.forceMonitor();
	if (d.passthrough && !mismatch) {
		// Decided on SNI alone: splice the bytes without interception.
		exchange_ = std::make_unique<Exchange>();
		exchange_->requestId = proxy_.nextRequestId();
		exchange_->engine = engine;
		exchange_->started = std::chrono::steady_clock::now();
		exchange_->kind = "tls";
		exchange_->host = name;
		exchange_->port = connectPort_;
		exchange_->decision = d;
		exchange_->recorded = d.action;
		exchange_->reason = d.reason;
		if (!monitor && d.action != ActionKind::Allow) {
			refuse(); // reports the deny; the agent sees a reset
			return;
		}
		startTunnel("tls", false);
		return;
	}
	// Intercepted, so that a denied request gets its 403 JSON. Should the
	// agent send no request at all (a probe that only shakes hands), the
	// SNI decision is recorded when the connection ends.
	tlsDecision_ = d;
	tlsHost_ = name;
	startInterception(name, mismatch);
}

void Connection::startInterception(const std::string &serverName, bool serverNameMismatch)
{
	auto leaf = proxy_.ca().leafFor(serverName);
	if (!leaf) {
		GVM_LOG(Proxy, Debug) << "no leaf for '" << serverName << "': " << leaf.error().message();
		close();
		return;
	}
	bssl::UniquePtr<SSL> ssl(SSL_new(proxy_.interceptContext()));
	if (!ssl || !useLeaf(ssl.get(), **leaf, proxy_.ca())) {
		GVM_LOG(Proxy, Warning) << "setting up interception for '" << serverName << "' failed, ignoring";
		close();
		return;
	}
	setState(State::TlsHandshake);
	armTimer(kHeaderTimeout);
	std::string early = std::move(inbox_);
	inbox_.clear();
	agent_->startTlsServer(std::move(ssl), early,
			       [this, serverName, serverNameMismatch, alive = std::weak_ptr<Connection *>(alive_)](Result<void> r) {
				       if (alive.expired())
					       return;
				       if (!r) {
					       // Typically an agent that does not trust the sandbox CA.
					       GVM_LOG(Proxy, Debug) << "TLS with the agent for '" << serverName
								     << "' failed: " << r.error().message();
					       close();
					       return;
				       }
				       agentTls_ = true;
				       serverName_ = serverName;
				       serverNameMismatch_ = serverNameMismatch;
				       proxy_.loop().post([this, alive] {
					       if (alive.expired() || state_ != State::TlsHandshake)
						       return;
					       enterHttp();
					       process();
				       });
			       });
}

void Connection::enterHttp()
{
	if (parser_)
		proxy_.loop().deleteLater(std::move(parser_));
	parser_ = std::make_unique<RequestParser>(RequestParser::Callbacks{
		[this](const RequestHead &) {
			headPending_ = true;
			return HeadAction::Pause;
		},
		[this](std::string_view data) { onRequestBody(data); },
		[this] { onRequestComplete(); },
	});
	setState(State::ReadingHead);
	armTimer(inbox_.empty() ? std::chrono::milliseconds(kIdleTimeout) : std::chrono::milliseconds(kHeaderTimeout));
	again_ = true;
}

void Connection::pumpHttp()
{
	std::weak_ptr<Connection *> alive = alive_;
	while (parser_ && !inbox_.empty()) {
		auto st = parser_->state();
		if (st != RequestParser::State::Head && st != RequestParser::State::Body)
			break;
		// One request at a time: the next head waits for this response.
		if (exchange_ && exchange_->requestDone)
			break;
		auto n = parser_->feed(inbox_);
		if (!n) {
			Error e = n.error();
			if (exchange_ && exchange_->upstream) {
				exchange_->reason = "the agent sent a malformed body: " + e.message();
				close();
				return;
			}
			if (!exchange_) {
				exchange_ = std::make_unique<Exchange>();
				exchange_->requestId = proxy_.nextRequestId();
				exchange_->engine = proxy_.engine();
				exchange_->started = std::chrono::steady_clock::now();
				exchange_->host = connectHost_.empty() ? "-" : connectHost_;
				exchange_->port = connectPort_;
			}
			exchange_->recorded = ActionKind::Deny;
			exchange_->reason = "malformed request: " + e.message();
			int status = e.code() >= 400 && e.code() < 600 ? e.code() : 400;
			exchange_->status = status;
			report();
			answer(status, "malformed request: " + e.message(), false);
			closeAfterFlush();
			return;
		}
		inbox_.erase(0, *n);
		if (headPending_) {
			headPending_ = false;
			onRequestHead();
			return;
		}
		if (alive.expired() || state_ == State::Closed)
			return;
		if (exchange_ && exchange_->buffering && (exchange_->requestDone || bodyOverflow_)) {
			decideAfterBody();
			return;
		}
		if (*n == 0)
			break;
	}
	if (parser_ && parser_->state() == RequestParser::State::Tunnel && state_ == State::ReadingHead)
		close();
}

void Connection::onRequestHead()
{
	timer_.stop();
	++requests_;
	auto ex = std::make_unique<Exchange>();
	ex->requestId = proxy_.nextRequestId();
	ex->engine = proxy_.engine();
	ex->started = std::chrono::steady_clock::now();
	ex->head = parser_->takeHead();
	ex->agentKeepAlive = ex->head.keepAlive;
	exchange_ = std::move(ex);
	Exchange &x = *exchange_;
	setState(State::Deciding);
	if (x.head.isConnect()) {
		onConnect();
		return;
	}
	// Where the request goes, and whether the agent may say so.
	std::string mismatch;
	const bool tunnelled = agentTls_ || !connectHost_.empty();
	if (x.head.form == TargetForm::Absolute) {
		x.host = x.head.host;
		x.port = x.head.port;
		x.secure = x.head.scheme == "https";
		if (tunnelled && (x.host != connectHost_ || x.port != connectPort_))
			mismatch = "the request names " + x.host + ":" + std::to_string(x.port) + " inside a tunnel to " +
				   connectHost_ + ":" + std::to_string(connectPort_);
	} else if (tunnelled) {
		x.host = x.head.host.empty() ? connectHost_ : x.head.host;
		x.port = connectPort_;
		x.secure = agentTls_;
		if (serverNameMismatch_)
			mismatch = "the TLS server name " + serverName_ + " does not match the CONNECT target " + connectHost_;
		else if (x.host != connectHost_)
			mismatch = "Host " + x.host + " does not match the " +
				   std::string(agentTls_ ? "TLS server name " : "CONNECT target ") + connectHost_;
		else if (x.head.port != 80 && x.head.port != connectPort_)
			mismatch = "Host port " + std::to_string(x.head.port) + " does not match port " +
				   std::to_string(connectPort_);
	} else if (original_) {
		// Redirected plain HTTP: Host names the server, on the port
		// the agent dialled.
		x.host = x.head.host;
		x.port = original_->port;
		x.secure = false;
	} else {
		// Origin-form straight to the explicit port: Host names it.
		x.host = x.head.host;
		x.port = x.head.port;
		x.secure = false;
	}
	x.path = x.head.form == TargetForm::Asterisk ? "*" : x.head.path;
	if (x.host.empty()) {
		x.recorded = ActionKind::Deny;
		x.reason = "the request names no host";
		respondDenied(400);
		return;
	}
	if (!mismatch.empty()) {
		// Domain fronting: what was checked must be what is reached.
		x.recorded = ActionKind::Deny;
		x.reason = mismatch + "; denied";
		respondDenied(403);
		return;
	}
	decide();
}

void Connection::onConnect()
{
	Exchange &x = *exchange_;
	x.host = x.head.host;
	x.port = x.head.port;
	x.path = "";
	if (agentTls_ || !connectHost_.empty()) {
		x.recorded = ActionKind::Deny;
		x.reason = "CONNECT inside a tunnel is not supported";
		respondDenied(403);
		return;
	}
	// A tunnel may carry TLS (decided per request after interception, or
	// spliced by a passthrough rule) or raw TCP (tcp: rules): open it when
	// either could be allowed, refuse it when nothing could.
	policy::Decision tls = x.engine->evaluateTls(x.host, x.port);
	bool monitor = tls.mode == policy::Mode::Monitor || proxy_.forceMonitor();
	policy::Decision tcp = x.engine->evaluateTcp("", x.port, {x.host});
	connectMayBeRaw_ = tcp.action != ActionKind::Deny && tcp.ruleIndex >= 0;
	bool open = monitor || tls.needsRequest || tls.passthrough || tls.action != ActionKind::Deny || connectMayBeRaw_;
	if (!open) {
		x.decision = tls;
		x.recorded = ActionKind::Deny;
		x.reason = tls.reason;
		respondDenied(403);
		return;
	}
	connectHost_ = x.host;
	connectPort_ = x.port;
	agent_->write("HTTP/1.1 200 Connection established\r\n\r\n");
	// The tunnel's own traffic is decided (and recorded) as it is
	// classified; the CONNECT itself is not a record.
	exchange_.reset();
	proxy_.loop().deleteLater(std::move(parser_));
	setState(State::Classifying);
	armTimer(connectMayBeRaw_ ? std::chrono::milliseconds(kServerFirstTimeout)
				  : std::chrono::milliseconds(kHeaderTimeout));
	again_ = true;
}

policy::HttpRequest Connection::policyRequest(const Exchange &x)
{
	policy::HttpRequest request;
	request.method = x.head.method;
	request.host = x.host;
	request.port = x.port;
	request.path = x.path.empty() ? "/" : x.path;
	request.query = x.head.query;
	request.headers.reserve(x.head.headers.size());
	for (const Header &h : x.head.headers)
		request.headers.emplace_back(h.name, h.value);
	return request;
}

void Connection::decide()
{
	Exchange &x = *exchange_;
	policy::HttpRequest request = policyRequest(x);
	request.bodyPending = x.head.framing != BodyFraming::None && !x.buffering && !x.requestDone;
	policy::Decision d = x.engine->evaluateHttp(request);
	if (d.needsBody) {
		// A body rule decides: read the body (bounded) before deciding.
		x.buffering = true;
		if (x.head.expectContinue) {
			agent_->write("HTTP/1.1 100 Continue\r\n\r\n");
			x.head.expectContinue = false;
			std::erase_if(x.head.headers, [](const Header &h) {
				return asciiIEquals(h.name, "Expect");
			});
		}
		x.parserResumed = true;
		parser_->resume();
		if (x.requestDone) {
			decideAfterBody();
			return;
		}
		again_ = true;
		return;
	}
	x.decision = std::move(d);
	applyDecision();
}

void Connection::decideAfterBody()
{
	Exchange &x = *exchange_;
	x.buffering = false;
	policy::HttpRequest request = policyRequest(x);
	request.body = x.body;
	request.bodyTruncated = x.bodyTruncated;
	x.decision = x.engine->evaluateHttp(request);
	if (x.bodyTruncated) {
		// The part of the body past the window was not kept, so the
		// request cannot be forwarded whatever the policy says.
		x.recorded = ActionKind::Deny;
		x.reason = x.decision.reason;
		if (x.decision.action != ActionKind::Deny)
			x.reason = "the body exceeds the inspection window of " + std::to_string(policy::kBodyInspectionWindow) +
				   " bytes; denied to fail closed";
		x.agentKeepAlive = false;
		respondDenied(403);
		return;
	}
	applyDecision();
}

void Connection::applyDecision()
{
	Exchange &x = *exchange_;
	const policy::Decision &d = x.decision;
	ActionKind action = d.action;
	x.reason = d.reason;
	if (d.rate && (action == ActionKind::Allow || action == ActionKind::Delay) &&
	    !proxy_.rateLimiter().take(d.ruleIndex, *d.rate, std::chrono::steady_clock::now())) {
		action = ActionKind::RateLimit;
		x.reason = d.reason + "; over its rate of " + std::to_string(d.rate->count) + " per " +
			   policy::formatDuration(d.rate->period);
	}
	x.recorded = action;
	bool monitor = d.mode == policy::Mode::Monitor || proxy_.forceMonitor();
	ActionKind effective = monitor ? ActionKind::Allow : action;
	switch (effective) {
	case ActionKind::Allow:
		forward();
		return;
	case ActionKind::Deny:
		respondDenied(403);
		return;
	case ActionKind::RateLimit:
		respondDenied(429);
		return;
	case ActionKind::Delay:
		x.timer = std::make_unique<Timer>(proxy_.loop(), [this] { forward(); });
		x.timer->start(ms(d.duration));
		return;
	case ActionKind::Hold:
		startHold();
		return;
	}
}

void Connection::startHold()
{
	Exchange &x = *exchange_;
	if (!proxy_.registerHold(x.requestId, this)) {
		x.reason = x.decision.reason + "; too many requests are waiting for approval (" +
			   std::to_string(kMaxHeldRequests) + ")";
		respondDenied(403);
		return;
	}
	x.holdRegistered = true;
	proxy_.notify("hold.pending", {{"request_id", x.requestId},
				       {"method", x.head.method},
				       {"host", x.host},
				       {"port", x.port},
				       {"path", x.path},
				       {"rule", x.decision.rule},
				       {"timeout_ms", ms(x.decision.duration)}});
	std::string id = x.requestId;
	x.timer = std::make_unique<Timer>(proxy_.loop(), [this, id] {
		if (!exchange_ || exchange_->requestId != id)
			return;
		exchange_->reason = exchange_->decision.reason + "; not approved within " +
				    policy::formatDuration(exchange_->decision.duration);
		resolveHold(id, false);
	});
	x.timer->start(ms(x.decision.duration));
}

void Connection::resolveHold(const std::string &requestId, bool approve)
{
	if (!exchange_ || exchange_->requestId != requestId || !exchange_->holdRegistered)
		return;
	Exchange &x = *exchange_;
	x.holdRegistered = false;
	proxy_.unregisterHold(requestId);
	if (x.timer)
		proxy_.loop().deleteLater(std::move(x.timer));
	if (x.reason == x.decision.reason)
		x.reason = x.decision.reason + (approve ? "; approved" : "; denied by a person");
	proxy_.notify("hold.resolved", {{"request_id", requestId}, {"approved", approve}, {"reason", x.reason}});
	if (approve)
		forward();
	else
		respondDenied(403);
}

void Connection::forward()
{
	Exchange &x = *exchange_;
	setState(State::Forwarding);
	x.poolKey = UpstreamPool::key(x.host, x.port, x.secure);
	if (!x.head.isUpgrade()) {
		if (auto t = proxy_.pool().take(x.poolKey)) {
			x.upstream = std::move(t);
			sendRequest();
			return;
		}
	}
	x.dial = Dial::start(proxy_.loop(), x.host, x.port, x.secure ? &proxy_.upstreamTls() : nullptr, proxy_.guard(),
			     nullptr, [this](DialOutcome outcome) { onDialed(std::move(outcome)); });
}

void Connection::onDialed(DialOutcome outcome)
{
	Exchange &x = *exchange_;
	proxy_.loop().deleteLater(std::move(x.dial));
	if (!outcome.transport) {
		if (outcome.status == 403) {
			// The SSRF guard: never relaxed by monitor mode.
			x.recorded = ActionKind::Deny;
			x.reason = outcome.reason;
			respondDenied(403);
		} else {
			respondError(502, outcome.reason);
		}
		return;
	}
	x.upstream = std::move(outcome.transport);
	sendRequest();
}

void Connection::sendRequest()
{
	Exchange &x = *exchange_;
	// The upstream hop is kept alive for the pool whatever the agent said.
	auto serialized = serializeRequestHead(x.head, !x.head.isUpgrade());
	if (!serialized) {
		respondError(500, serialized.error().message());
		return;
	}
	x.responseParser = std::make_unique<ResponseParser>(ResponseParser::Callbacks{
		[this](const ResponseHead &interim) {
			if (exchange_ && interim.status == 100 && exchange_->head.expectContinue)
				agent_->write("HTTP/1.1 100 Continue\r\n\r\n");
		},
		[this](const ResponseHead &h) { return onResponseHead(h); },
		[this](std::string_view data) { onResponseBody(data); },
		[this] { onResponseComplete(); },
	});
	x.responseParser->expect(x.head.method);
	x.upstream->setCallbacks({[this](std::string_view data) { onUpstreamData(data); }, [this] { onUpstreamEof(); },
				  [this](const Error &e) { onUpstreamError(e.message()); },
				  [this] { updateAgentReading(); }});
	// The head and the body bytes already here leave in one write.
	Transport::Cork cork(*x.upstream);
	x.upstream->write(*serialized);
	if (!x.body.empty() || (x.requestDone && x.parserResumed)) {
		// The body was read for inspection: send it as it came.
		if (x.head.framing == BodyFraming::Chunked) {
			if (!x.body.empty())
				x.upstream->write(chunk(x.body));
			if (x.requestDone)
				x.upstream->write(kLastChunk);
		} else {
			x.upstream->write(x.body);
		}
		x.bytesOut += x.body.size();
		x.body.clear();
		x.body.shrink_to_fit();
	}
	x.upstream->startReading();
	if (!x.parserResumed) {
		x.parserResumed = true;
		parser_->resume();
	}
	process();
}

void Connection::onRequestBody(std::string_view data)
{
	if (!exchange_)
		return;
	Exchange &x = *exchange_;
	if (x.buffering) {
		size_t room = policy::kBodyInspectionWindow - std::min(policy::kBodyInspectionWindow, x.body.size());
		if (data.size() > room) {
			x.body.append(data.substr(0, room));
			x.bodyTruncated = true;
			bodyOverflow_ = true;
		} else {
			x.body.append(data);
		}
		return;
	}
	if (!x.upstream || x.bodyTruncated)
		return;
	x.bytesOut += data.size();
	if (x.head.framing == BodyFraming::Chunked)
		x.upstream->write(chunk(data));
	else
		x.upstream->write(data);
}

void Connection::onRequestComplete()
{
	if (!exchange_)
		return;
	Exchange &x = *exchange_;
	x.requestDone = true;
	if (!x.buffering && x.upstream && x.head.framing == BodyFraming::Chunked)
		x.upstream->write(kLastChunk);
	if (x.responseDone)
		proxy_.loop().post([this, alive = std::weak_ptr<Connection *>(alive_)] {
			if (!alive.expired() && exchange_ && exchange_->responseDone)
				finishExchange();
		});
}

HeadAction Connection::onResponseHead(const ResponseHead &h)
{
	Exchange &x = *exchange_;
	x.status = h.status;
	x.responseStarted = true;
	const bool upgrade = h.status == 101;
	x.agentKeepAlive = x.agentKeepAlive && !agentEof_ && h.framing != BodyFraming::UntilClose && !upgrade &&
			   !x.head.isUpgrade();
	x.upstreamReusable = h.keepAlive && h.framing != BodyFraming::UntilClose && !upgrade;
	x.responseChunked = h.framing == BodyFraming::Chunked && hasBody(x.head.method, h.status);
	auto serialized = serializeResponseHead(h, x.agentKeepAlive);
	if (!serialized) {
		onUpstreamError(serialized.error().message());
		return HeadAction::Pause;
	}
	agent_->write(*serialized);
	return HeadAction::Continue;
}

void Connection::onResponseBody(std::string_view data)
{
	Exchange &x = *exchange_;
	x.bytesIn += data.size();
	agent_->write(x.responseChunked ? std::string_view(chunk(data)) : data);
	if (agent_->queuedBytes() > kMaxQueuedBytes && x.upstream)
		x.upstream->stopReading();
}

void Connection::onResponseComplete()
{
	Exchange &x = *exchange_;
	if (x.responseChunked)
		agent_->write(kLastChunk);
	x.responseDone = true;
	// Finished outside the parser's callback: finishing destroys it.
	proxy_.loop().post([this, alive = std::weak_ptr<Connection *>(alive_), id = x.requestId] {
		if (alive.expired() || !exchange_ || exchange_->requestId != id)
			return;
		if (exchange_->requestDone || state_ == State::Closed)
			finishExchange();
		else {
			// The upstream answered before the request body ended:
			// the rest of the body has nowhere to go.
			exchange_->upstreamReusable = false;
			exchange_->agentKeepAlive = false;
			finishExchange();
		}
	});
}

void Connection::onUpstreamData(std::string_view data)
{
	if (!exchange_ || !exchange_->responseParser)
		return;
	Exchange &x = *exchange_;
	if (x.responseParser->state() == ResponseParser::State::Tunnel) {
		spliceFromUpstream(data);
		return;
	}
	// The head, the body bytes and the last chunk that came in one read
	// leave in one write.
	Transport::Cork cork(*agent_);
	auto n = x.responseParser->feed(data);
	if (!n) {
		onUpstreamError("the upstream sent an invalid response: " + n.error().message());
		return;
	}
	if (x.responseParser->state() == ResponseParser::State::Tunnel) {
		// 101 Switching Protocols: both sides now speak the upgraded
		// protocol; the decision was made on the upgrade request.
		startTunnel("http", false);
		if (*n < data.size())
			spliceFromUpstream(data.substr(*n));
		return;
	}
	if (*n < data.size())
		x.upstreamReusable = false; // bytes after the response: not trusted again
}

void Connection::onUpstreamEof()
{
	if (!exchange_)
		return;
	Exchange &x = *exchange_;
	if (state_ == State::Tunnel) {
		tunnelEof(false);
		return;
	}
	x.upstreamReusable = false;
	if (x.responseParser) {
		auto r = x.responseParser->finish();
		if (!r) {
			onUpstreamError(x.responseStarted ? "the upstream closed mid-response"
							  : "the upstream closed the connection without answering");
			return;
		}
	}
	if (!x.responseDone)
		onUpstreamError("the upstream closed the connection without answering");
}

void Connection::onUpstreamError(const std::string &why)
{
	if (!exchange_)
		return;
	Exchange &x = *exchange_;
	if (x.upstream) {
		x.upstream->close();
		proxy_.loop().deleteLater(std::move(x.upstream));
	}
	if (!x.responseStarted) {
		respondError(502, why);
		return;
	}
	x.reason = x.reason + "; " + why;
	close();
}

void Connection::finishExchange()
{
	if (!exchange_)
		return;
	Exchange &x = *exchange_;
	// The agent already has the whole response: the record may wait for
	// the end of this loop pass.
	report(Proxy::Delivery::Batched);
	if (x.upstream) {
		if (x.upstreamReusable && x.requestDone && x.responseDone)
			proxy_.pool().put(x.poolKey, std::move(x.upstream));
		else
			x.upstream->close();
	}
	const bool keep = x.agentKeepAlive && x.requestDone && !agentEof_ && parser_ &&
			  parser_->state() != RequestParser::State::Tunnel && parser_->state() != RequestParser::State::Closed;
	proxy_.loop().deleteLater(std::move(exchange_));
	if (!keep) {
		closeAfterFlush();
		return;
	}
	setState(State::ReadingHead);
	armTimer(inbox_.empty() ? std::chrono::milliseconds(kIdleTimeout) : std::chrono::milliseconds(kHeaderTimeout));
	process();
}

void Connection::startTunnel(std::string kind, bool rawConnect)
{
	if (!exchange_) {
		exchange_ = std::make_unique<Exchange>();
		exchange_->requestId = proxy_.nextRequestId();
		exchange_->engine = proxy_.engine();
		exchange_->started = std::chrono::steady_clock::now();
		exchange_->host = connectHost_;
		exchange_->port = connectPort_;
	}
	Exchange &x = *exchange_;
	x.kind = std::move(kind);
	if (x.upstream) {
		// An upgraded HTTP exchange: the upstream is already there.
		setState(State::Tunnel);
		armTimer(kTunnelIdleTimeout);
		x.upstream->setCallbacks({[this](std::string_view d) {
						  armTimer(kTunnelIdleTimeout);
						  spliceFromUpstream(d);
					  },
					  [this] { tunnelEof(false); }, [this](const Error &) { close(); },
					  [this] { updateAgentReading(); }});
		x.upstream->startReading();
		again_ = true;
		process();
		return;
	}
	Dial::Vet vet;
	if (rawConnect) {
		// Raw TCP: tcp: rules on the address dialled and the name asked for.
		vet = [this](const sockaddr *, const std::string &text) -> std::optional<std::string> {
			Exchange &e = *exchange_;
			e.decision = e.engine->evaluateTcp(text, e.port,
							  tcpNames_.empty() ? std::vector<std::string>{e.host} : tcpNames_);
			e.recorded = e.decision.action;
			e.reason = e.decision.reason;
			bool monitor = e.decision.mode == policy::Mode::Monitor || proxy_.forceMonitor();
			if (monitor || e.decision.action == ActionKind::Allow)
				return std::nullopt;
			return e.decision.reason;
		};
	}
	setState(State::Deciding);
	x.dial = Dial::start(proxy_.loop(), x.host, x.port, nullptr, proxy_.guard(), std::move(vet),
			     [this](DialOutcome outcome) {
				     Exchange &e = *exchange_;
				     proxy_.loop().deleteLater(std::move(e.dial));
				     if (!outcome.transport) {
					     if (outcome.status == 403)
						     e.recorded = ActionKind::Deny;
					     e.reason = outcome.reason;
					     refuse(); // the agent sees a reset
					     return;
				     }
				     e.upstream = std::move(outcome.transport);
				     startTunnel(e.kind, false);
			     });
}

void Connection::startTransparentTcp()
{
	// Neither HTTP nor TLS with a name: raw TCP to the address the agent
	// dialled, decided by tcp: rules on that address, its port and the
	// names the sandbox's DNS gave out for it.
	connectHost_ = original_->address;
	connectPort_ = original_->port;
	tcpNames_ = proxy_.dnsNamesFor(original_->address);
	startTunnel("tcp", true);
}

void Connection::spliceFromAgent(std::string_view data)
{
	Exchange &x = *exchange_;
	x.bytesOut += data.size();
	x.upstream->write(data);
	armTimer(kTunnelIdleTimeout);
}

void Connection::spliceFromUpstream(std::string_view data)
{
	Exchange &x = *exchange_;
	x.bytesIn += data.size();
	agent_->write(data);
	if (agent_->queuedBytes() > kMaxQueuedBytes && x.upstream)
		x.upstream->stopReading();
}

void Connection::tunnelEof(bool fromAgent)
{
	if (!exchange_ || !exchange_->upstream) {
		close();
		return;
	}
	if (fromAgent) {
		agentDone_ = true;
		exchange_->upstream->shutdownWrite();
	} else {
		upstreamDone_ = true;
		agent_->shutdownWrite();
	}
	if (agentDone_ && upstreamDone_)
		close();
}

void Connection::answer(int status, const std::string &error, bool keepAlive)
{
	nlohmann::json body = {{"error", error}, {"sandbox", proxy_.sandbox()}};
	if (exchange_) {
		body["rule"] = exchange_->decision.rule.empty() ? nlohmann::json(nullptr)
								: nlohmann::json(exchange_->decision.rule);
		body["request_id"] = exchange_->requestId;
		body["reason"] = exchange_->reason;
	}
	agent_->write(buildResponse(status, rpc::dumpJson(body) + "\n", keepAlive));
}

void Connection::respondDenied(int status)
{
	Exchange &x = *exchange_;
	x.status = status;
	// The connection survives a denial only when nothing of the request
	// is left unread.
	const bool bodyLeft = x.head.framing != BodyFraming::None && !x.requestDone;
	const bool keep = x.agentKeepAlive && !bodyLeft && !x.head.isTunnel() && !agentEof_;
	// The record goes out before the answer: an agent that exits on the
	// answer must not outrun its own audit record.
	report();
	answer(status, status == 429 ? "rate limited by policy" : "denied by policy", keep);
	if (!keep) {
		closeAfterFlush();
		return;
	}
	if (!x.parserResumed) {
		x.parserResumed = true;
		parser_->resume(); // completes the bodiless request
	}
	proxy_.loop().deleteLater(std::move(exchange_));
	setState(State::ReadingHead);
	armTimer(inbox_.empty() ? std::chrono::milliseconds(kIdleTimeout) : std::chrono::milliseconds(kHeaderTimeout));
	again_ = true;
	process();
}

void Connection::respondError(int status, const std::string &reason)
{
	Exchange &x = *exchange_;
	x.status = status;
	x.reason = x.reason.empty() ? reason : x.reason + "; " + reason;
	if (x.responseStarted) {
		close();
		return;
	}
	nlohmann::json body = {{"error", "upstream failed"},
			       {"sandbox", proxy_.sandbox()},
			       {"request_id", x.requestId},
			       {"reason", reason}};
	report();
	agent_->write(buildResponse(status, rpc::dumpJson(body) + "\n", false));
	closeAfterFlush();
}

void Connection::report(Proxy::Delivery delivery)
{
	if (!exchange_ || exchange_->reported || exchange_->host.empty())
		return;
	Exchange &x = *exchange_;
	x.reported = true;
	auto latency = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - x.started);
	bool monitor = x.decision.mode == policy::Mode::Monitor || proxy_.forceMonitor();
	// Written straight as JSON text: one record per request. The keys
	// are in sorted order, which spares gvmd sorting them.
	std::string record;
	record.reserve(512);
	JsonObjectWriter w(record);
	w.string("action", policy::toString(x.recorded))
		.number("bytes_in", static_cast<int64_t>(x.bytesIn))
		.number("bytes_out", static_cast<int64_t>(x.bytesOut))
		.string("host", x.host)
		.string("kind", x.kind)
		.number("latency_us", latency.count())
		.string("method", x.kind == "http" ? std::string_view(x.head.method) : std::string_view())
		.string("mode", monitor ? "monitor" : "enforce")
		.string("path", x.path)
		.string("policy", x.engine ? std::string_view(x.engine->name()) : std::string_view())
		.string("policy_sha256", x.engine ? std::string_view(x.engine->sha256()) : std::string_view())
		.number("port", x.port)
		.string("reason", x.reason)
		.string("request_id", x.requestId)
		.string("rule", x.decision.rule)
		.number("status", x.status);
	w.close();
	proxy_.reportRecord(std::move(record), delivery);
}

void Connection::updateAgentReading()
{
	if (state_ == State::Closed || state_ == State::Closing || agentEof_)
		return;
	// A paused parser (the request being decided or forwarded) does not
	// stop reading: what the agent sends meanwhile waits in the inbox,
	// up to kMaxQueuedBytes, and a keep-alive connection costs no
	// reading toggles per request.
	bool want = true;
	if (exchange_ && exchange_->upstream && exchange_->upstream->queuedBytes() > kMaxQueuedBytes)
		want = false;
	if (inbox_.size() > kMaxQueuedBytes)
		want = false;
	if (state_ == State::Tunnel && exchange_ && !exchange_->upstream)
		want = false;
	if (want)
		agent_->startReading();
	else
		agent_->stopReading();
}

void Connection::onTimeout()
{
	switch (state_) {
	case State::Classifying:
		if (original_ && inbox_.empty() && connectHost_.empty()) {
			startTransparentTcp();
			return;
		}
		if (connectMayBeRaw_ && inbox_.empty()) {
			// A silent CONNECT tunnel a tcp: rule may allow: raw
			// TCP, decided and dialled without waiting for the agent.
			startTunnel("tcp", true);
			return;
		}
		close();
		return;
	case State::ReadingHead:
		if ((parser_ && parser_->bufferedBytes() > 0) || !inbox_.empty()) {
			// Slowloris: a head that never ends.
			agent_->write(buildResponse(408, "{\"error\":\"request header timeout\"}\n", false));
			closeAfterFlush();
			return;
		}
		close();
		return;
	case State::Tunnel:
		if (exchange_)
			exchange_->reason += "; closed after " + std::to_string(kTunnelIdleTimeout.count()) + " min idle";
		close();
		return;
	case State::Deciding:
	case State::Forwarding:
		return;
	default:
		close();
	}
}

void Connection::closeAfterFlush()
{
	if (state_ == State::Closed || state_ == State::Closing)
		return;
	if (exchange_ && exchange_->upstream)
		exchange_->upstream->close();
	setState(State::Closing);
	agent_->shutdownWrite();
	armTimer(kLingerTimeout);
	agent_->startReading(); // until the agent's EOF, discarded
}

void Connection::refuse()
{
	resetAgent_ = true;
	close();
}

void Connection::close()
{
	if (state_ == State::Closed)
		return;
	if (tlsDecision_ && requests_ == 0 && !exchange_) {
		// An intercepted TLS connection that carried no request.
		exchange_ = std::make_unique<Exchange>();
		exchange_->requestId = proxy_.nextRequestId();
		exchange_->engine = proxy_.engine();
		exchange_->started = std::chrono::steady_clock::now();
		exchange_->kind = "tls";
		exchange_->host = tlsHost_;
		exchange_->port = connectPort_;
		exchange_->decision = *tlsDecision_;
		exchange_->recorded = tlsDecision_->action;
		exchange_->reason = "a TLS connection without a request (" +
				    std::string(agentTls_ ? "handshake done" : "no handshake") +
				    "); " + tlsDecision_->reason;
	}
	if (exchange_) {
		if (exchange_->holdRegistered)
			proxy_.unregisterHold(exchange_->requestId);
		if (!exchange_->reported && exchange_->reason.empty() && exchange_->recorded == ActionKind::Allow)
			exchange_->reason = exchange_->decision.reason;
		report();
		if (exchange_->upstream)
			exchange_->upstream->close();
		// Possibly inside one of their callbacks: destroyed later.
		if (exchange_->dial)
			proxy_.loop().deleteLater(std::move(exchange_->dial));
		if (exchange_->timer)
			proxy_.loop().deleteLater(std::move(exchange_->timer));
	}
	setState(State::Closed);
	timer_.stop();
	if (resetAgent_)
		agent_->reset();
	else
		agent_->close();
	alive_.reset();
	proxy_.release(this);
}

} // namespace gvm::proxy
