// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/loop.h"
#include "daemon/proxy/http_codec.h"
#include "daemon/proxy/proxy.h"
#include "daemon/proxy/transport.h"
#include "daemon/proxy/upstream.h"
#include "policy/policy.h"

namespace gvm::proxy {

// One agent connection to the worker, as an explicit state machine:
//
//   Classifying --TLS--> TlsHandshake --> ReadingHead
//        |--HTTP---------------------------> ReadingHead <--------------+
//        |--other (after CONNECT)--> Tunnel                             |
//   ReadingHead --head--> Deciding --allow--> Forwarding --response--> -+
//                             |--deny/429--> (answer) --------------------+
//   Forwarding --101 / CONNECT--> Tunnel          any --> Closing
//
// The first bytes decide what the agent speaks (TLS ClientHello: the SNI
// names the host, and the connection is intercepted with a leaf of the
// sandbox CA unless a `tls: passthrough` rule splices it; an HTTP request
// line: Host names it; after a CONNECT anything else is raw TCP decided by
// `tcp:` rules). Each request is decided against the policy snapshot taken
// when its head arrived, then forwarded on a pooled or new upstream
// connection; the response streams back as it arrives. Delay and hold park
// the request on a timer without blocking the loop. Every request ends in
// exactly one decision record. Owned by the Proxy, on the worker's loop;
// destroyed (deferred) after close().
class Connection
{
public:
	enum class State { Classifying, TlsHandshake, ReadingHead, Deciding, Forwarding, Tunnel, Closing, Closed };
	static const char *toString(State state);

	// Where a transparently redirected connection was going (from
	// SO_ORIGINAL_DST): an IPv4 address and a port.
	struct Destination {
		std::string address;
		uint16_t port = 0;
	};

	// `original` is set for a connection from the transparent listener
	// that was redirected there (not one the agent opened to the worker's
	// own address, which is served like the explicit port).
	Connection(Proxy &proxy, std::unique_ptr<Transport> agent, ListenerKind kind,
		   std::optional<Destination> original = std::nullopt);
	~Connection();

	void start();
	// A held request was approved or denied by a person.
	void resolveHold(const std::string &requestId, bool approve);

private:
	// One request and its response, or one tunnel.
	struct Exchange {
		std::string requestId;
		std::shared_ptr<const policy::Engine> engine;
		std::chrono::steady_clock::time_point started;
		std::string kind = "http";
		RequestHead head;
		std::string host;
		uint16_t port = 0;
		bool secure = false;
		std::string path;
		policy::Decision decision;
		policy::ActionKind recorded = policy::ActionKind::Deny;
		std::string reason;
		int status = 0;
		uint64_t bytesOut = 0;
		uint64_t bytesIn = 0;
		bool reported = false;
		// Body inspection.
		bool buffering = false;
		std::string body;
		bool bodyTruncated = false;
		// Progress.
		bool parserResumed = false;
		bool requestDone = false;
		bool responseStarted = false;
		bool responseDone = false;
		bool agentKeepAlive = true;
		bool upstreamReusable = false;
		bool responseChunked = false;
		bool holdRegistered = false;
		std::string poolKey;
		std::unique_ptr<Dial> dial;
		std::unique_ptr<Transport> upstream;
		std::unique_ptr<ResponseParser> responseParser;
		std::unique_ptr<Timer> timer;
	};

	void setState(State state);
	void process();
	void step();
	void classify();
	void startInterception(const std::string &serverName, bool serverNameMismatch);
	void enterHttp();
	void pumpHttp();
	void onRequestHead();
	void onConnect();
	// The request as the policy engine sees it (without its body).
	static policy::HttpRequest policyRequest(const Exchange &x);
	void decide();
	void applyDecision();
	void decideAfterBody();
	void forward();
	void onDialed(DialOutcome outcome);
	void sendRequest();
	void onUpstreamData(std::string_view data);
	void onUpstreamEof();
	void onUpstreamError(const std::string &why);
	void onRequestBody(std::string_view data);
	void onRequestComplete();
	HeadAction onResponseHead(const ResponseHead &head);
	void onResponseBody(std::string_view data);
	void onResponseComplete();
	void finishExchange();
	void startHold();
	void startTunnel(std::string kind, bool rawConnect);
	void startTransparentTcp();
	void spliceFromAgent(std::string_view data);
	void spliceFromUpstream(std::string_view data);
	void tunnelEof(bool fromAgent);
	void answer(int status, const std::string &error, bool keepAlive);
	void respondDenied(int status);
	void respondError(int status, const std::string &reason);
	// Sends the exchange's decision record once (Now unless the agent
	// already has the whole answer).
	void report(Proxy::Delivery delivery = Proxy::Delivery::Now);
	void updateAgentReading();
	void armTimer(std::chrono::milliseconds timeout);
	void onTimeout();
	void closeAfterFlush();
	void close();
	// Closes with a TCP reset: how a refused tunnel or raw connection ends.
	void refuse();

	Proxy &proxy_;
	std::unique_ptr<Transport> agent_;
	ListenerKind kind_;
	State state_ = State::Classifying;
	std::string inbox_; // agent bytes not yet consumed
	bool processing_ = false;
	bool again_ = false;
	bool agentEof_ = false;
	bool headPending_ = false;
	bool bodyOverflow_ = false;
	bool resetAgent_ = false;
	// Intercepted TLS: what the SNI alone decided, recorded if no request
	// ever comes; and how many requests came.
	std::optional<policy::Decision> tlsDecision_;
	std::string tlsHost_;
	uint64_t requests_ = 0;

	// Where the agent said it goes (CONNECT host:port), and what TLS said.
	std::string connectHost_;
	uint16_t connectPort_ = 0;
	// A tcp: rule may allow the CONNECT target: a tunnel the agent leaves
	// silent is taken for a protocol whose server speaks first (SSH...).
	bool connectMayBeRaw_ = false;
	// Transparent: the destination the agent dialled; for raw TCP, the
	// names the sandbox's DNS gave out for its address.
	std::optional<Destination> original_;
	std::vector<std::string> tcpNames_;
	bool agentTls_ = false;
	std::string serverName_;
	bool serverNameMismatch_ = false;

	std::unique_ptr<RequestParser> parser_;
	std::unique_ptr<Exchange> exchange_;
	Timer timer_;
	// Tunnel half-closes.
	bool agentDone_ = false;
	bool upstreamDone_ = false;
	std::shared_ptr<Connection *> alive_;
};

} // namespace gvm::proxy
