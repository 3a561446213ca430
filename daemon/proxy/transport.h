// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <openssl/ssl.h>

#include "common/loop.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace gvm::proxy {

// Plain bytes queued for a peer beyond which the other side stops reading
// (backpressure): what a slow agent or upstream can make the worker hold.
inline constexpr size_t kMaxQueuedBytes = 256 * 1024;
// Plain bytes a corked transport holds before writing them anyway.
inline constexpr size_t kMaxCorkedBytes = 64 * 1024;

// One TCP connection of the worker, to an agent or to an upstream, with an
// optional TLS layer (BoringSSL over memory BIOs), seen as a stream of plain
// bytes. The owner (a proxy connection or the upstream pool) sets the
// callbacks, writes plain bytes and pauses reading for backpressure; TLS
// records, the handshake and close_notify are handled here. Single-threaded
// (the worker's loop). Callbacks may ask for the owner's deferred deletion
// but must not destroy the Transport inside a callback; after close() no
// callback runs.
class Transport
{
public:
	enum class State { Connecting, Handshaking, Open, Closed };
	static const char *toString(State state);

	struct Callbacks {
		// Plain bytes from the peer (after decryption).
		std::function<void(std::string_view)> onData;
		// The peer closed its side (or sent close_notify).
		std::function<void()> onEof;
		// A read, write or TLS error; the transport is closed.
		std::function<void(const Error &)> onError;
		// The write queue fell below kMaxQueuedBytes after being above.
		std::function<void()> onDrained;
	};

	// Takes over an accepted, non-blocking connected socket.
	static Result<std::unique_ptr<Transport>> adopt(Loop &loop, UniqueFd fd);
	// Dials addr; done runs once (Open, or an error and the transport closed).
	static std::unique_ptr<Transport> connect(Loop &loop, const sockaddr *addr,
						  std::function<void(Result<void>)> done);
	~Transport();
	Transport(const Transport &) = delete;
	Transport &operator=(const Transport &) = delete;

	void setCallbacks(Callbacks callbacks) { callbacks_ = std::move(callbacks); }
	State state() const { return state_; }

	// Server side of TLS on an accepted connection: `ssl` is configured
	// (certificate, ALPN); `early` holds bytes already read (the
	// ClientHello). done runs once the handshake completed or failed.
	void startTlsServer(bssl::UniquePtr<SSL> ssl, std::string_view early, std::function<void(Result<void>)> done);
	// Client side of TLS on a dialled connection: `ssl` is configured
	// (SNI, host verification, ALPN).
	void startTlsClient(bssl::UniquePtr<SSL> ssl, std::function<void(Result<void>)> done);
	bool secure() const { return ssl_ != nullptr; }
	SSL *ssl() const { return ssl_.get(); }

	void startReading();
	void stopReading();
	bool reading() const { return reading_; }

	// Queues plain bytes; never fails at once (errors reach onError).
	void write(std::string_view data);
	// While corked (nestable), written bytes are held and leave together
	// at the last uncork(): one TCP write and, with TLS, one record per
	// 16 KiB instead of one per write() (a response head and its first
	// body bytes reach the peer in a single read). At most kMaxCorkedBytes
	// are held; more are written at once.
	void cork() { ++corks_; }
	void uncork();
	// Corks a transport for a scope; safe if the transport closes or is
	// destroyed meanwhile.
	class Cork
	{
	public:
		explicit Cork(Transport &t) : transport_(&t), alive_(t.alive_) { t.cork(); }
		~Cork()
		{
			if (!alive_.expired())
				transport_->uncork();
		}
		Cork(const Cork &) = delete;
		Cork &operator=(const Cork &) = delete;

	private:
		Transport *transport_;
		std::weak_ptr<Transport *> alive_;
	};
	// Bytes written but not yet taken by the kernel.
	size_t queuedBytes() const;
	// Sends close_notify (TLS) and shuts the write side down after the
	// queue drained.
	void shutdownWrite();
	// Closes now; no callback runs afterwards.
	void close();
	// Closes now with a TCP reset (what a refused raw connection sees),
	// dropping anything queued.
	void reset();

	int fd() const;
	uint64_t bytesRead() const { return bytesRead_; }
	uint64_t bytesWritten() const { return bytesWritten_; }

private:
	explicit Transport(Loop &loop);
	void setState(State state);
	void onRead(ssize_t n, const uv_buf_t *buf);
	void onTcpData(std::string_view data);
	void driveTls();
	void flushTls();
	void writeNow(std::string_view data);
	void writeRaw(std::string data);
	// Hands as much of data to the kernel as it takes now, when nothing is
	// queued before it; returns how much. Calls nothing back.
	size_t tryWrite(std::string_view data);
	// Queues data behind what is queued, with a libuv write request.
	void queueWrite(std::string data);
	void afterWrite(int status);
	void fail(Error error);
	void finishHandshake(Result<void> result);

	Loop &loop_;
	UvHandle<uv_tcp_t> tcp_;
	Callbacks callbacks_;
	State state_ = State::Open;
	bool reading_ = false;
	bool eof_ = false;
	bool shutdownPending_ = false;
	bool aboveLimit_ = false;
	size_t queued_ = 0;
	int corks_ = 0;
	std::string corked_;
	uint64_t bytesRead_ = 0;
	uint64_t bytesWritten_ = 0;

	bssl::UniquePtr<SSL> ssl_;
	BIO *rbio_ = nullptr; // owned by ssl_
	BIO *wbio_ = nullptr; // owned by ssl_
	std::function<void(Result<void>)> handshakeDone_;
	std::function<void(Result<void>)> connectDone_;
	// Set while the Transport lives; callbacks in flight check it.
	std::shared_ptr<Transport *> alive_;
};

// "ssl error: ..." for the BoringSSL error queue (drained).
std::string sslErrorString();

} // namespace gvm::proxy
