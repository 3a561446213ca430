// SPDX-License-Identifier: Apache-2.0
#include "daemon/proxy/upstream.h"

#include <cstring>
#include <netdb.h>

#include "common/log.h"
#include "daemon/proxy/address_guard.h"
#include "daemon/proxy/tls_context.h"

namespace gvm::proxy {

// ---- UpstreamPool ---------------------------------------------------------

UpstreamPool::UpstreamPool(Loop &loop, std::chrono::milliseconds idleTimeout)
	: loop_(loop), idleTimeoutMs_(static_cast<uint64_t>(idleTimeout.count())), expiry_(loop, [this] { expire(); })
{
}

UpstreamPool::~UpstreamPool() = default;

std::string UpstreamPool::key(const std::string &host, uint16_t port, bool secure)
{
	return (secure ? "https://" : "http://") + host + ":" + std::to_string(port);
}

std::unique_ptr<Transport> UpstreamPool::take(const std::string &key)
{
	// Most recently parked first: it is the least likely to have been
	// closed by the upstream's own idle timeout.
	for (auto it = idle_.rbegin(); it != idle_.rend(); ++it) {
		if (it->key != key || it->transport->state() != Transport::State::Open)
			continue;
		// Still reading: the taker sets its callbacks before the loop
		// runs again, and starting to read is then a no-op. The expiry
		// timer stays armed; it rearms for whatever is oldest then.
		std::unique_ptr<Transport> t = std::move(it->transport);
		t->setCallbacks({});
		idle_.erase(std::next(it).base());
		++reused_;
		return t;
	}
	return nullptr;
}

void UpstreamPool::put(const std::string &key, std::unique_ptr<Transport> transport)
{
	if (!transport || transport->state() != Transport::State::Open)
		return;
	size_t sameKey = 0;
	for (const Idle &i : idle_)
		sameKey += i.key == key;
	if (sameKey >= kMaxIdlePerUpstream)
		return; // closed by the destructor
	if (idle_.size() >= kMaxIdleUpstreams)
		idle_.pop_front();
	Idle &idle = idle_.emplace_back(Idle{key, std::move(transport), loop_.now() + idleTimeoutMs_});
	Idle *raw = &idle;
	// An idle upstream has nothing to say: any byte, EOF or error ends it.
	idle.transport->setCallbacks({[this, raw](std::string_view) { drop(raw); }, [this, raw] { drop(raw); },
				      [this, raw](const Error &) { drop(raw); }, nullptr});
	idle.transport->startReading();
	if (!expiry_.active())
		expiry_.start(idleTimeoutMs_);
}

void UpstreamPool::drop(Idle *idle)
{
	for (auto it = idle_.begin(); it != idle_.end(); ++it) {
		if (&*it != idle)
			continue;
		// Destroyed after this callback returns: we may be inside one of
		// its transport's callbacks.
		it->transport->close();
		loop_.deleteLater(std::move(it->transport));
		idle_.erase(it);
		return;
	}
}

void UpstreamPool::expire()
{
	const uint64_t now = loop_.now();
	while (!idle_.empty() && idle_.front().expiresAt <= now)
		idle_.pop_front(); // not inside a callback of its transport
	if (!idle_.empty())
		expiry_.start(idle_.front().expiresAt - now);
}

// ---- Dial -----------------------------------------------------------------

namespace {

struct ResolveRequest {
	uv_getaddrinfo_t req{};
	std::weak_ptr<Dial *> owner;
};

} // namespace

std::unique_ptr<Dial> Dial::start(Loop &loop, std::string host, uint16_t port, const UpstreamTls *tls,
				  std::shared_ptr<const AddressGuard> guard, Vet vet, Done done)
{
	std::unique_ptr<Dial> d(new Dial(loop));
	d->host_ = std::move(host);
	d->port_ = port;
	d->tls_ = tls;
	d->guard_ = std::move(guard);
	d->vet_ = std::move(vet);
	d->done_ = std::move(done);
	d->alive_ = std::make_shared<Dial *>(d.get());
	d->timer_.start(std::chrono::duration_cast<std::chrono::milliseconds>(kUpstreamConnectTimeout).count());

	auto *req = new ResolveRequest;
	req->owner = d->alive_;
	req->req.data = req;
	addrinfo hints{};
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	std::string service = std::to_string(port);
	int r = uv_getaddrinfo(
		loop.get(), &req->req,
		[](uv_getaddrinfo_t *g, int status, addrinfo *res) {
			std::unique_ptr<ResolveRequest> request(static_cast<ResolveRequest *>(g->data));
			auto owner = request->owner.lock();
			if (!owner) {
				uv_freeaddrinfo(res);
				return;
			}
			(*owner)->onResolved(status, res);
		},
		d->host_.c_str(), service.c_str(), &hints);
	if (r < 0) {
		delete req;
		Dial *self = d.get();
		loop.post([weak = std::weak_ptr<Dial *>(d->alive_), self, r] {
			if (!weak.expired())
				self->finish({nullptr, "", 502, "resolving: " + std::string(uv_strerror(r))});
		});
	}
	return d;
}

Dial::~Dial()
{
	alive_.reset();
}

void Dial::onResolved(int status, addrinfo *res)
{
	if (status < 0) {
		uv_freeaddrinfo(res);
		finish({nullptr, "", 502, "cannot resolve " + host_ + ": " + uv_strerror(status)});
		return;
	}
	std::string refused;
	for (addrinfo *ai = res; ai && candidates_.size() < kMaxAddressesTried; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		std::string text = formatAddress(ai->ai_addr);
		// The address checked is the address dialled: no second lookup
		// can swap it (DNS rebinding).
		if (auto why = guard_->check(ai->ai_addr)) {
			if (refused.empty())
				refused = *why;
			continue;
		}
		if (vet_) {
			if (auto why = vet_(ai->ai_addr, text)) {
				if (refused.empty())
					refused = *why;
				continue;
			}
		}
		sockaddr_storage ss{};
		std::memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
		candidates_.push_back(ss);
		candidateText_.push_back(text);
	}
	uv_freeaddrinfo(res);
	if (candidates_.empty()) {
		finish({nullptr, "", refused.empty() ? 502 : 403,
			refused.empty() ? "no usable address for " + host_ : refused});
		return;
	}
	tryNext();
}

void Dial::tryNext()
{
	if (next_ >= candidates_.size()) {
		finish({nullptr, candidateText_.empty() ? "" : candidateText_.back(), 502,
			"cannot connect to " + host_ + ":" + std::to_string(port_) + ": " + lastError_});
		return;
	}
	const sockaddr *addr = reinterpret_cast<const sockaddr *>(&candidates_[next_]);
	transport_ = Transport::connect(loop_, addr, [this, weak = std::weak_ptr<Dial *>(alive_)](Result<void> r) {
		if (!weak.expired())
			onConnected(std::move(r));
	});
}

void Dial::onConnected(Result<void> result)
{
	if (!result) {
		lastError_ = result.error().message();
		loop_.deleteLater(std::move(transport_));
		++next_;
		tryNext();
		return;
	}
	if (!tls_) {
		finish({std::move(transport_), candidateText_[next_], 0, ""});
		return;
	}
	auto ssl = tls_->newSession(host_);
	if (!ssl) {
		finish({nullptr, candidateText_[next_], 502, ssl.error().message()});
		return;
	}
	transport_->startTlsClient(std::move(*ssl), [this, weak = std::weak_ptr<Dial *>(alive_)](Result<void> r) {
		if (weak.expired())
			return;
		if (!r) {
			// A TLS failure is not retried on another address: the
			// certificate is the upstream's, not the address's.
			loop_.deleteLater(std::move(transport_));
			finish({nullptr, candidateText_[next_], 502,
				host_ + ":" + std::to_string(port_) + ": " + r.error().message()});
			return;
		}
		finish({std::move(transport_), candidateText_[next_], 0, ""});
	});
}

void Dial::onTimeout()
{
	if (transport_)
		loop_.deleteLater(std::move(transport_));
	finish({nullptr, next_ < candidateText_.size() ? candidateText_[next_] : "", 502,
		"connecting to " + host_ + ":" + std::to_string(port_) + " timed out after " +
			std::to_string(kUpstreamConnectTimeout.count()) + " s"});
}

void Dial::finish(DialOutcome outcome)
{
	timer_.stop();
	auto done = std::move(done_);
	done_ = nullptr;
	alive_.reset(); // no further callback
	if (done)
		done(std::move(outcome));
}

} // namespace gvm::proxy
