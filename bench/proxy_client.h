// SPDX-License-Identifier: Apache-2.0
//
// The blocking HTTPS/1.1 client of the proxy benchmark: one TCP connection
// to 127.0.0.1, optionally through an HTTP proxy (CONNECT), then TLS 1.3
// with ALPN http/1.1, SNI "localhost" and the peer verified against the CA
// it is given. Each HttpsConnection is used by one thread; the SSL_CTX is
// shared read-only. Every socket operation is bounded by kIoTimeout, so a
// stuck peer is an error, never a hang.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <openssl/ssl.h>

#include "common/result.h"
#include "common/unique_fd.h"

namespace gvm::bench {

// Connecting, and every read or write of a socket.
inline constexpr std::chrono::seconds kIoTimeout{10};
// A response head (or the proxy's CONNECT answer) longer than this is an error.
inline constexpr size_t kMaxResponseHead = 16 * 1024;
// What one read() may bring in: large enough for bulk transfers.
inline constexpr size_t kReadBuffer = 256 * 1024;

// Where a connection goes: 127.0.0.1:port, which is the origin itself or an
// HTTP proxy asked to CONNECT to localhost:targetPort.
struct Route {
	uint16_t port = 0;
	bool viaConnect = false;
	uint16_t targetPort = 0;
};

// How long each step of opening a connection took.
struct OpenTimings {
	std::chrono::nanoseconds tcp{0};
	std::chrono::nanoseconds proxyConnect{0}; // CONNECT to its 200; zero without a proxy
	std::chrono::nanoseconds handshake{0};
};

struct Response {
	int status = 0;
	uint64_t bodyBytes = 0;
	bool keepAlive = true;
};

// A client context: TLS 1.3 only, ALPN http/1.1, peer verification on and
// only `trustedPem` trusted.
Result<bssl::UniquePtr<SSL_CTX>> makeClientContext(const std::string &trustedPem);

class HttpsConnection
{
public:
	static Result<std::unique_ptr<HttpsConnection>> open(SSL_CTX *ctx, const Route &route,
							      OpenTimings *timings = nullptr);
	// Sends close_notify (without waiting for the peer's) and closes.
	~HttpsConnection();

	// GET path with Host: localhost:<target port>; reads the whole response
	// and discards the body, counting its bytes.
	Result<Response> get(const std::string &path);
	// How many reads brought response bytes in so far: more reads per
	// response means the server sent it in more pieces (TLS records,
	// TCP segments), each a wake-up of the client.
	uint64_t reads() const { return reads_; }

private:
	HttpsConnection(UniqueFd fd, bssl::UniquePtr<SSL> ssl, uint16_t targetPort);
	// Reads more into the buffer; 0 at end of stream.
	Result<size_t> fill();
	Result<std::string> readLine();
	Result<void> discard(uint64_t bytes);
	Result<void> writeAll(const std::string &data);

	UniqueFd fd_;
	bssl::UniquePtr<SSL> ssl_;
	uint16_t targetPort_;
	std::vector<char> buffer_;
	size_t begin_ = 0; // unread data is [begin_, end_)
	size_t end_ = 0;
	uint64_t reads_ = 0;
};

} // namespace gvm::bench
