// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/loop.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "daemon/proxy/dns_message.h"
#include "policy/policy.h"

namespace gvm::proxy {

class Proxy;

// Named limits on what one sandbox's agent can make its DNS forwarder hold.
// Queries waiting for the upstream resolver at once (UDP); more get SERVFAIL.
inline constexpr size_t kMaxDnsPendingQueries = 512;
// How long the upstream resolver has to answer before the client gets
// SERVFAIL (a stub resolver retries after 5 s by default, so it hears first).
inline constexpr std::chrono::milliseconds kDnsUpstreamTimeout{3000};
// DNS-over-TCP clients connected at once; more are closed at once.
inline constexpr size_t kMaxDnsTcpClients = 64;
// From a TCP client's connection (or its last answer) to its next complete
// query: an idle or slowloris client is cut off after this.
inline constexpr std::chrono::milliseconds kDnsTcpReadTimeout{10000};
// (address, name) pairs remembered for raw-TCP decisions; least recently
// given out are forgotten first.
inline constexpr size_t kMaxDnsRememberedNames = 4096;
// A remembered name lasts at least this long whatever its TTL: an agent may
// connect well after a 5-second TTL ran out and still be matched by name.
inline constexpr std::chrono::seconds kMinDnsRememberTtl{60};
// ... and at most this long, whatever the upstream said.
inline constexpr std::chrono::hours kMaxDnsRememberTtl{24};
// Datagrams read per socket wakeup, so one busy socket cannot starve the loop.
inline constexpr int kDnsUdpBatch = 64;

// What tests (and only tests) change.
struct DnsServerOptions {
	std::chrono::milliseconds upstreamTimeout = kDnsUpstreamTimeout;
	std::chrono::milliseconds tcpReadTimeout = kDnsTcpReadTimeout;
	size_t maxRememberedNames = kMaxDnsRememberedNames;
	std::chrono::seconds minRememberTtl = kMinDnsRememberTtl;
};

// The policy-aware DNS forwarder of one sandbox, run by its proxy worker.
// nftables sends the sandbox's UDP and TCP port 53 to sockets gvmd binds and
// hands over (the worker's seccomp filter forbids bind() and listen()); for
// each query the policy decides (Engine::evaluateDns): a denied name is
// answered locally without the upstream seeing it, an allowed one is
// forwarded to the host's resolver under a fresh random id, AAAA is answered
// NODATA (the sandbox has no IPv6). Addresses given out are remembered so a
// later raw TCP connection can be decided by name (namesFor). Every query
// yields exactly one decision record through Proxy::report.
//
// Denials: REFUSED when the query's shape is the problem, that is a
// TXT/NULL/ANY query (data-carrying types) or a name over the policy's
// max_name_length (the engine's reason says "likely exfiltration"); NXDOMAIN
// otherwise, so to the agent a name the policy does not allow does not exist.
// In monitor mode (the policy's or Proxy::forceMonitor()) nothing is denied;
// the record says deny with mode "monitor" ("would deny").
//
// Owned by the Proxy, one per sandbox, on the worker's only loop; not
// copyable. Destroying it closes its sockets and drops queries in flight
// without answering or recording them.
class DnsServer
{
public:
	// upstream: the host's resolver (AF_INET or AF_INET6 with a port),
	// reached from the worker's (host) network namespace over a connected
	// UDP socket, so the kernel drops datagrams from any other source.
	static Result<std::unique_ptr<DnsServer>> create(Proxy &proxy, const sockaddr_storage &upstream,
							 DnsServerOptions options = {});
	~DnsServer();
	DnsServer(const DnsServer &) = delete;
	DnsServer &operator=(const DnsServer &) = delete;

	// A bound, non-blocking UDP socket from gvmd; queries on it are served
	// from now on.
	Result<void> addUdpSocket(UniqueFd fd);
	// A listening, non-blocking TCP socket from gvmd: accepted with
	// accept4() on a poll handle (never listen()); each connection may
	// send several 2-byte length-prefixed queries, answered in order.
	Result<void> addTcpListener(UniqueFd fd);

	// The names DNS gave out for a textual IPv4 or IPv6 address (as
	// inet_ntop writes it), most recently given out first; expired
	// entries are left out.
	std::vector<std::string> namesFor(const std::string &address) const;

	uint64_t queries() const { return queries_; }     // every query, malformed ones included
	uint64_t denied() const { return denied_; }       // answered with a denial (not in monitor mode)
	uint64_t forwarded() const { return forwarded_; } // sent to the upstream
	size_t pendingQueries() const { return pending_.size(); }
	size_t tcpClients() const { return tcpClients_.size(); }

private:
	class TcpClient;
	struct Socket;
	struct Exchange;
	struct PendingQuery;
	// Where an answer goes: a UDP peer on one of our sockets, or a TCP client.
	struct Reply {
		Socket *udp = nullptr;
		sockaddr_storage peer{};
		socklen_t peerLength = 0;
		TcpClient *tcp = nullptr;
	};
	struct Remembered {
		std::string address;
		std::string name;
		uint64_t expiresMs = 0; // on the loop clock
		uint64_t stamp = 0;     // larger = given out more recently
	};

	DnsServer(Proxy &proxy, const sockaddr_storage &upstream, DnsServerOptions options);
	Result<Socket *> watch(UniqueFd fd, bool listener);
	void onUdpReadable(Socket &socket);
	void onAcceptable(Socket &listener);
	void onUpstreamReadable();

	// Decides one query and answers it, now or after the upstream did.
	void handleQuery(std::string_view message, const Reply &reply);
	void handleMalformed(std::string_view message, const Reply &reply, const Error &error,
			     std::chrono::steady_clock::time_point started);
	void forwardUdp(std::unique_ptr<Exchange> exchange, const Reply &reply);
	void onUpstreamTimeout(uint16_t id);
	// Relays an upstream answer (already matched to its query) to the client.
	void relay(Exchange &exchange, const Reply &reply, std::string answer, const DnsResponse &response);
	// Answers SERVFAIL; `why` is added to the record's reason.
	void answerServfail(Exchange &exchange, const Reply &reply, const std::string &why);
	// Sends `answer` (if any) and records the exchange.
	void finish(Exchange &exchange, const Reply &reply, const std::string &answer, int status);
	void send(const Reply &reply, const std::string &answer);
	// Reports the decision record; once per exchange.
	void record(Exchange &exchange, size_t bytesIn, int status);
	Result<uint16_t> freshId() const;
	void remember(const DnsResponse &response);
	void releaseTcp(TcpClient *client);

	Proxy &proxy_;
	sockaddr_storage upstream_;
	socklen_t upstreamLength_;
	DnsServerOptions options_;
	UniqueFd upstreamFd_;
	UvHandle<uv_poll_t> upstreamPoll_;
	std::vector<std::unique_ptr<Socket>> sockets_;
	std::map<uint16_t, std::unique_ptr<PendingQuery>> pending_;
	std::map<TcpClient *, std::unique_ptr<TcpClient>> tcpClients_;
	std::vector<char> buffer_; // one datagram, kMaxDnsMessageBytes
	// Remembered answers: LRU list, most recently given out first, and an
	// index by (address, name), so one address's names are adjacent.
	std::list<Remembered> lru_;
	std::map<std::pair<std::string, std::string>, std::list<Remembered>::iterator> remembered_;
	uint64_t stamp_ = 0;
	uint64_t queries_ = 0;
	uint64_t denied_ = 0;
	uint64_t forwarded_ = 0;
	bool stopping_ = false;
};

} // namespace gvm::proxy
