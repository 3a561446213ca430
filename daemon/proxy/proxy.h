// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <vector>

#include <nlohmann/json.hpp>
#include <openssl/ssl.h>

#include "common/loop.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "daemon/proxy/address_guard.h"
#include "daemon/proxy/certificate_authority.h"
#include "daemon/proxy/tls_context.h"
#include "daemon/proxy/upstream.h"
#include "policy/policy.h"

namespace gvm::proxy {

// Named limits on what one sandbox's agent can make its worker hold.
inline constexpr size_t kMaxConnections = 4096;
// Waiting for the first byte of a request on a kept-alive connection.
inline constexpr std::chrono::seconds kIdleTimeout{60};
// From the first byte of a request head (or a TLS handshake) to its end:
// a slowloris client is cut off after this.
inline constexpr std::chrono::seconds kHeaderTimeout{10};
// A tunnel (WebSocket, passthrough, raw TCP) with no traffic either way.
inline constexpr std::chrono::minutes kTunnelIdleTimeout{30};
// How long a closing connection may take to read our last bytes.
inline constexpr std::chrono::seconds kLingerTimeout{5};
// A redirected connection, or a CONNECT tunnel that a tcp: rule may allow,
// that sends nothing this long is taken for a protocol where the server
// speaks first (SSH, SMTP, MySQL, FTP...): raw TCP, decided and dialled
// without waiting for the agent.
inline constexpr std::chrono::milliseconds kServerFirstTimeout{500};
// Requests parked for approval at once; more are denied at once.
inline constexpr size_t kMaxHeldRequests = 256;

class Connection;

// What a listener is for.
enum class ListenerKind {
	Explicit,    // HTTP_PROXY / HTTPS_PROXY: CONNECT and absolute-form requests
	Transparent, // a sandbox's TCP, redirected by nftables (SO_ORIGINAL_DST)
	DnsUdp,      // a sandbox's DNS over UDP (a bound datagram socket)
	DnsTcp,      // a sandbox's DNS over TCP (a listening socket)
};
// "explicit", "transparent", "dns-udp", "dns-tcp" (gvm-worker --listen).
std::optional<ListenerKind> parseListenerKind(std::string_view name);

class DnsServer;

// The proxy of one sandbox inside its worker process: the listeners it was
// handed, every agent connection, the interception CA, upstream TLS and
// the upstream pool, rate-limit buckets and held requests. Decisions are
// reported through `report` (to gvmd). Owned by the Worker, on the worker's
// only loop; lives until the worker stops.
class Proxy
{
public:
	// Now: written before the caller goes on (a record that must reach
	// gvmd before the agent sees the answer it describes). Batched:
	// written with the others of this loop pass, one system call for all.
	enum class Delivery { Now, Batched };
	using Notify = std::function<void(const std::string &method, nlohmann::json params, Delivery delivery)>;

	struct Setup {
		std::string sandbox;
		bool forceMonitor = false;
		std::unique_ptr<CertificateAuthority> ca;
		UpstreamTls upstreamTls;
		std::vector<sockaddr_storage> hostAddresses;
		Notify notify;
		// Sandbox mode: the host's resolver, where allowed DNS queries
		// of the sandbox are forwarded (its DNS listeners need it).
		std::optional<sockaddr_storage> dnsUpstream;
		// The networks gvm hands out to sandboxes (another sandbox's
		// host address is no upstream).
		std::vector<Cidr> sandboxPool;
		// Sends one encoded JSON-RPC line to gvmd (the decision records
		// of connections, encoded without nlohmann objects); without
		// it, records go through notify.
		std::function<void(std::string line, Delivery delivery)> sendLine;
	};

	static Result<std::unique_ptr<Proxy>> create(Loop &loop, Setup setup,
						     std::shared_ptr<const policy::Engine> engine);
	~Proxy();

	Result<void> addListener(ListenerKind kind, UniqueFd fd);
	// Swaps the policy: connections pick it up at their next request.
	Result<void> setEngine(std::shared_ptr<const policy::Engine> engine);
	// Answers a held request; false when no such request is held.
	bool answerHold(const std::string &requestId, bool approve);

	size_t connectionsOpen() const { return connections_.size(); }
	uint64_t connectionsTotal() const { return connectionsTotal_; }

	// For connections.
	Loop &loop() { return loop_; }
	const std::string &sandbox() const { return sandbox_; }
	bool forceMonitor() const { return forceMonitor_; }
	std::shared_ptr<const policy::Engine> engine() const { return engine_; }
	std::shared_ptr<const AddressGuard> guard() const { return guard_; }
	CertificateAuthority &ca() { return *ca_; }
	SSL_CTX *interceptContext() { return interceptCtx_.get(); }
	const UpstreamTls &upstreamTls() const { return upstreamTls_; }
	UpstreamPool &pool() { return pool_; }
	policy::RateLimiter &rateLimiter() { return rateLimiter_; }
	std::string nextRequestId();
	// The names the sandbox's DNS gave out for an address (most recent
	// first); empty without a DNS listener.
	std::vector<std::string> dnsNamesFor(const std::string &address) const;
	void report(nlohmann::json record, Delivery delivery = Delivery::Now);
	// The same for a record that is JSON object text already.
	void reportRecord(std::string recordJson, Delivery delivery = Delivery::Now);
	void notify(const std::string &method, nlohmann::json params, Delivery delivery = Delivery::Now);
	// Held requests: a connection registers while it waits.
	bool registerHold(const std::string &requestId, Connection *connection);
	void unregisterHold(const std::string &requestId);
	void release(Connection *connection);

private:
	// A listening socket from gvmd. Accepted with accept4() on a poll
	// handle rather than uv_listen(), which would call listen() again: the
	// worker's seccomp filter does not allow listen() at all, so it can
	// never open a port of its own.
	struct Listener {
		ListenerKind kind;
		UniqueFd fd;
		UvHandle<uv_poll_t> poll;
		Proxy *owner = nullptr;
	};

	Proxy(Loop &loop, Setup setup);
	void onAcceptable(Listener &listener);
	void sendStats();

	Loop &loop_;
	std::string sandbox_;
	bool forceMonitor_;
	std::unique_ptr<CertificateAuthority> ca_;
	UpstreamTls upstreamTls_;
	std::vector<sockaddr_storage> hostAddresses_;
	std::vector<Cidr> sandboxPool_;
	Notify notify_;
	std::function<void(std::string line, Delivery delivery)> sendLine_;
	bssl::UniquePtr<SSL_CTX> interceptCtx_;
	std::shared_ptr<const policy::Engine> engine_;
	std::shared_ptr<const AddressGuard> guard_;
	UpstreamPool pool_;
	policy::RateLimiter rateLimiter_;
	std::vector<std::unique_ptr<Listener>> listeners_;
	std::map<Connection *, std::unique_ptr<Connection>> connections_;
	std::map<std::string, Connection *> holds_;
	uint64_t nextRequest_ = 1;
	uint64_t connectionsTotal_ = 0;
	Timer statsTimer_;
	size_t lastOpen_ = SIZE_MAX;
	uint64_t lastTotal_ = UINT64_MAX;
	// Last: destroyed first, while what it reports through still exists.
	std::unique_ptr<DnsServer> dns_;
};

} // namespace gvm::proxy
