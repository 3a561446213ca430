// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <sys/socket.h>

#include "common/loop.h"
#include "common/result.h"
#include "daemon/proxy/transport.h"

namespace gvm::proxy {

class AddressGuard;
class UpstreamTls;

// Named limits of upstream connections.
inline constexpr std::chrono::seconds kUpstreamConnectTimeout{10};
inline constexpr std::chrono::seconds kUpstreamIdleTimeout{30};
inline constexpr size_t kMaxIdlePerUpstream = 8;
inline constexpr size_t kMaxIdleUpstreams = 128;
// Addresses of one name tried before giving up.
inline constexpr size_t kMaxAddressesTried = 4;

// Keep-alive connections to upstreams, idle, by key (host, port, TLS; the
// verification settings are the worker's and never change). An agent that
// opens a fresh connection per request reuses them, so it pays only the
// local handshake. Bounded per key and in total, idle-expired (one timer for
// the pool, armed for the oldest: a connection is parked after every
// keep-alive response); a pooled connection that the upstream closes or
// writes to is dropped. Owned by the worker's Proxy, on its loop.
class UpstreamPool
{
public:
	explicit UpstreamPool(Loop &loop, std::chrono::milliseconds idleTimeout = kUpstreamIdleTimeout);
	~UpstreamPool();

	static std::string key(const std::string &host, uint16_t port, bool secure);
	// An idle, open connection for key, or null.
	std::unique_ptr<Transport> take(const std::string &key);
	// Keeps a connection whose last response completed with keep-alive.
	void put(const std::string &key, std::unique_ptr<Transport> transport);
	size_t idleCount() const { return idle_.size(); }
	uint64_t reused() const { return reused_; }

private:
	struct Idle {
		std::string key;
		std::unique_ptr<Transport> transport;
		uint64_t expiresAt = 0; // Loop::now()
	};
	void drop(Idle *idle);
	// Closes what has been idle too long; rearms for the oldest left.
	void expire();

	Loop &loop_;
	const uint64_t idleTimeoutMs_;
	std::list<Idle> idle_; // oldest first, so expiresAt ascends
	Timer expiry_;
	uint64_t reused_ = 0;
};

// What the dialler learnt: the connection, or why there is none.
struct DialOutcome {
	std::unique_ptr<Transport> transport;
	std::string address; // the address dialled ("93.184.216.34")
	// On failure: the HTTP status to answer (403 for a refused address or
	// a decision of vet, 502 for resolution, connection or TLS failures)
	// and one sentence for the agent and the audit record.
	int status = 0;
	std::string reason;
};

// Resolves a name, vets every address (the SSRF guard, then `vet`, e.g. a
// tcp: rule), connects to the first permitted one with a timeout and, for
// TLS upstreams, completes a verified handshake. The callback runs once,
// never from inside dial(). Destroying the Dial cancels it (no callback).
// Owned by the exchange that needs the connection.
class Dial
{
public:
	using Vet = std::function<std::optional<std::string>(const sockaddr *addr, const std::string &text)>;
	using Done = std::function<void(DialOutcome)>;

	static std::unique_ptr<Dial> start(Loop &loop, std::string host, uint16_t port, const UpstreamTls *tls,
					   std::shared_ptr<const AddressGuard> guard, Vet vet, Done done);
	~Dial();

private:
	Dial(Loop &loop) : loop_(loop), timer_(loop, [this] { onTimeout(); }) {}
	void onResolved(int status, addrinfo *res);
	void tryNext();
	void onConnected(Result<void> result);
	void finish(DialOutcome outcome);
	void onTimeout();

	Loop &loop_;
	std::string host_;
	uint16_t port_ = 0;
	const UpstreamTls *tls_ = nullptr;
	std::shared_ptr<const AddressGuard> guard_;
	Vet vet_;
	Done done_;
	Timer timer_;
	std::vector<sockaddr_storage> candidates_;
	std::vector<std::string> candidateText_;
	size_t next_ = 0;
	std::string lastError_;
	std::unique_ptr<Transport> transport_;
	std::shared_ptr<Dial *> alive_;
};

} // namespace gvm::proxy
