// SPDX-License-Identifier: Apache-2.0
#include "bench/proxy_client.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string_view>
#include <sys/socket.h>
#include <sys/time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

namespace gvm::bench {

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kAlpn[] = "\x08http/1.1";
constexpr char kServerName[] = "localhost";

Error httpError(const std::string &what) { return Error(ErrorDomain::Http, 0, what); }

bool equalsIgnoreCase(std::string_view a, std::string_view b)
{
	if (a.size() != b.size())
		return false;
	for (size_t i = 0; i < a.size(); ++i) {
		char x = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] - 'A' + 'a') : a[i];
		char y = b[i] >= 'A' && b[i] <= 'Z' ? static_cast<char>(b[i] - 'A' + 'a') : b[i];
		if (x != y)
			return false;
	}
	return true;
}

std::string_view trim(std::string_view s)
{
	while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
		s.remove_prefix(1);
	while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
		s.remove_suffix(1);
	return s;
}

// "HTTP/1.1 200 OK" -> 200, or 0 when the line is not a status line.
int parseStatus(std::string_view line)
{
	if (line.substr(0, 5) != "HTTP/" || line.size() < 12 || line[8] != ' ')
		return 0;
	int status = 0;
	auto [p, ec] = std::from_chars(line.data() + 9, line.data() + 12, status);
	return ec == std::errc() && p == line.data() + 12 ? status : 0;
}

Result<UniqueFd> connectLoopback(uint16_t port)
{
	UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
	if (!fd)
		return fail(Error::fromErrno(errno, "creating a socket"));
	sockaddr_in sin{};
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (::connect(fd.get(), reinterpret_cast<const sockaddr *>(&sin), sizeof(sin)) < 0) {
		if (errno != EINPROGRESS)
			return fail(Error::fromErrno(errno, "connecting to 127.0.0.1:" + std::to_string(port)));
		pollfd pfd{fd.get(), POLLOUT, 0};
		int ready = ::poll(&pfd, 1, static_cast<int>(std::chrono::milliseconds(kIoTimeout).count()));
		if (ready <= 0)
			return fail(Error::fromErrno(ready == 0 ? ETIMEDOUT : errno,
						     "connecting to 127.0.0.1:" + std::to_string(port)));
		int err = 0;
		socklen_t len = sizeof(err);
		::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
		if (err)
			return fail(Error::fromErrno(err, "connecting to 127.0.0.1:" + std::to_string(port)));
	}
	// Blocking from here on, each operation bounded by the timeouts.
	::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
	timeval tv{};
	tv.tv_sec = kIoTimeout.count();
	int one = 1;
	if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		return fail(Error::fromErrno(errno, "setting socket options"));
	return fd;
}

// Sends CONNECT and reads the proxy's answer up to the end of its head,
// never past it: what follows belongs to the TLS handshake.
Result<void> proxyConnect(int fd, uint16_t targetPort)
{
	std::string authority = std::string(kServerName) + ":" + std::to_string(targetPort);
	std::string request = "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n";
	if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
		return fail(Error::fromErrno(errno, "sending CONNECT"));
	std::string head;
	char c;
	while (head.size() < 4 || head.compare(head.size() - 4, 4, "\r\n\r\n") != 0) {
		if (head.size() >= kMaxResponseHead)
			return fail(httpError("the proxy's CONNECT answer is too long"));
		// One byte at a time: the answer is short, and reading past it
		// would swallow the start of the server's handshake.
		ssize_t n = ::recv(fd, &c, 1, 0);
		if (n == 0)
			return fail(httpError("the proxy closed the connection after CONNECT"));
		if (n < 0)
			return fail(Error::fromErrno(errno == EAGAIN ? ETIMEDOUT : errno, "reading the CONNECT answer"));
		head.push_back(c);
	}
	int status = parseStatus(head.substr(0, head.find("\r\n")));
	if (status != 200)
		return fail(httpError("CONNECT answered '" + head.substr(0, head.find("\r\n")) + "'"));
	return {};
}

} // namespace

Result<bssl::UniquePtr<SSL_CTX>> makeClientContext(const std::string &trustedPem)
{
	bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
	if (!ctx || !SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION))
		return fail(Error::fromSsl("creating the client context"));
	// SSL_CTX_set_alpn_protos returns 0 on success.
	if (SSL_CTX_set_alpn_protos(ctx.get(), reinterpret_cast<const uint8_t *>(kAlpn), sizeof(kAlpn) - 1) != 0)
		return fail(Error::fromSsl("setting ALPN"));
	SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
	// No session is ever offered for resumption: every handshake is full.
	SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);

	bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(trustedPem.data(), static_cast<int>(trustedPem.size())));
	X509_STORE *store = SSL_CTX_get_cert_store(ctx.get());
	int added = 0;
	while (bio) {
		bssl::UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
		if (!cert)
			break;
		if (!X509_STORE_add_cert(store, cert.get()))
			return fail(Error::fromSsl("trusting a CA certificate"));
		++added;
	}
	ERR_clear_error(); // the end of the PEM text
	if (added == 0)
		return fail(Error(ErrorDomain::Ssl, 0, "no CA certificate in the PEM text given to trust"));
	return ctx;
}

HttpsConnection::HttpsConnection(UniqueFd fd, bssl::UniquePtr<SSL> ssl, uint16_t targetPort)
	: fd_(std::move(fd)), ssl_(std::move(ssl)), targetPort_(targetPort), buffer_(kReadBuffer)
{
}

HttpsConnection::~HttpsConnection()
{
	// One close_notify, no wait for the peer's: the socket closes next.
	if (ssl_)
		SSL_shutdown(ssl_.get());
}

Result<std::unique_ptr<HttpsConnection>> HttpsConnection::open(SSL_CTX *ctx, const Route &route,
								OpenTimings *timings)
{
	OpenTimings local;
	OpenTimings &t = timings ? *timings : local;
	auto start = Clock::now();
	auto fd = connectLoopback(route.port);
	if (!fd)
		return fail(std::move(fd).error());
	auto connected = Clock::now();
	t.tcp = connected - start;
	if (route.viaConnect)
		GVM_TRY_VOID(proxyConnect(fd->get(), route.targetPort), "while tunnelling through the proxy");
	auto tunnelled = Clock::now();
	t.proxyConnect = tunnelled - connected;

	bssl::UniquePtr<SSL> ssl(SSL_new(ctx));
	if (!ssl || !SSL_set_fd(ssl.get(), fd->get()) || !SSL_set_tlsext_host_name(ssl.get(), kServerName) ||
	    !X509_VERIFY_PARAM_set1_host(SSL_get0_param(ssl.get()), kServerName, sizeof(kServerName) - 1))
		return fail(Error::fromSsl("setting up the client TLS session"));
	if (SSL_connect(ssl.get()) != 1) {
		long verify = SSL_get_verify_result(ssl.get());
		std::string why = verify != X509_V_OK ? std::string(" (certificate: ") +
								X509_verify_cert_error_string(verify) + ")"
						      : std::string();
		return fail(Error::fromSsl("TLS handshake" + why));
	}
	const uint8_t *alpn = nullptr;
	unsigned alpnLength = 0;
	SSL_get0_alpn_selected(ssl.get(), &alpn, &alpnLength);
	if (alpnLength != 0 && std::string_view(reinterpret_cast<const char *>(alpn), alpnLength) != "http/1.1")
		return fail(httpError("the server chose ALPN " +
				      std::string(reinterpret_cast<const char *>(alpn), alpnLength)));
	t.handshake = Clock::now() - tunnelled;
	return std::unique_ptr<HttpsConnection>(
		new HttpsConnection(std::move(*fd), std::move(ssl), route.targetPort));
}

Result<void> HttpsConnection::writeAll(const std::string &data)
{
	size_t done = 0;
	while (done < data.size()) {
		int n = SSL_write(ssl_.get(), data.data() + done, static_cast<int>(data.size() - done));
		if (n <= 0) {
			int err = SSL_get_error(ssl_.get(), n);
			if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
				return fail(Error::fromErrno(errno == EAGAIN ? ETIMEDOUT : errno, "sending the request"));
			return fail(Error::fromSsl("sending the request"));
		}
		done += static_cast<size_t>(n);
	}
	return {};
}

Result<size_t> HttpsConnection::fill()
{
	if (begin_ == end_) {
		begin_ = end_ = 0;
	} else if (end_ == buffer_.size()) {
		std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
		end_ -= begin_;
		begin_ = 0;
	}
	if (end_ == buffer_.size())
		return fail(httpError("a response line does not fit the read buffer"));
	int n = SSL_read(ssl_.get(), buffer_.data() + end_, static_cast<int>(buffer_.size() - end_));
	if (n > 0) {
		end_ += static_cast<size_t>(n);
		++reads_;
		return static_cast<size_t>(n);
	}
	int err = SSL_get_error(ssl_.get(), n);
	if (err == SSL_ERROR_ZERO_RETURN)
		return size_t{0};
	if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
		if (n == 0)
			return size_t{0}; // end of stream without close_notify
		return fail(Error::fromErrno(errno == EAGAIN ? ETIMEDOUT : errno, "reading the response"));
	}
	return fail(Error::fromSsl("reading the response"));
}

Result<std::string> HttpsConnection::readLine()
{
	for (;;) {
		std::string_view data(buffer_.data() + begin_, end_ - begin_);
		size_t eol = data.find("\r\n");
		if (eol != std::string_view::npos) {
			std::string line(data.substr(0, eol));
			begin_ += eol + 2;
			return line;
		}
		if (data.size() > kMaxResponseHead)
			return fail(httpError("a response line is too long"));
		auto n = fill();
		if (!n)
			return fail(std::move(n).error());
		if (*n == 0)
			return fail(httpError("the connection closed in the middle of a response head"));
	}
}

Result<void> HttpsConnection::discard(uint64_t bytes)
{
	while (bytes > 0) {
		if (begin_ == end_) {
			auto n = fill();
			if (!n)
				return fail(std::move(n).error());
			if (*n == 0)
				return fail(httpError("the connection closed " + std::to_string(bytes) +
						      " bytes before the end of the body"));
		}
		size_t take = static_cast<size_t>(std::min<uint64_t>(bytes, end_ - begin_));
		begin_ += take;
		bytes -= take;
	}
	return {};
}

Result<Response> HttpsConnection::get(const std::string &path)
{
	std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + kServerName + ":" +
			      std::to_string(targetPort_) + "\r\nUser-Agent: gvm-proxy-bench\r\nAccept: */*\r\n\r\n";
	GVM_TRY_VOID(writeAll(request), "while sending GET " + path);

	Response response;
	auto statusLine = readLine();
	if (!statusLine)
		return fail(std::move(statusLine).error().wrap("while reading the status of GET " + path));
	response.status = parseStatus(*statusLine);
	if (response.status == 0)
		return fail(httpError("not an HTTP status line: '" + *statusLine + "'"));
	bool haveLength = false;
	bool chunked = false;
	uint64_t length = 0;
	size_t headBytes = statusLine->size();
	for (;;) {
		auto line = readLine();
		if (!line)
			return fail(std::move(line).error().wrap("while reading the head of GET " + path));
		if (line->empty())
			break;
		headBytes += line->size();
		if (headBytes > kMaxResponseHead)
			return fail(httpError("the response head of GET " + path + " is too long"));
		std::string_view header(*line);
		size_t colon = header.find(':');
		if (colon == std::string_view::npos)
			continue;
		std::string_view name = header.substr(0, colon);
		std::string_view value = trim(header.substr(colon + 1));
		if (equalsIgnoreCase(name, "content-length")) {
			auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
			if (ec != std::errc() || p != value.data() + value.size())
				return fail(httpError("bad Content-Length '" + std::string(value) + "'"));
			haveLength = true;
		} else if (equalsIgnoreCase(name, "transfer-encoding")) {
			chunked = value.find("chunked") != std::string_view::npos;
		} else if (equalsIgnoreCase(name, "connection")) {
			response.keepAlive = !equalsIgnoreCase(value, "close");
		}
	}

	if (chunked) {
		for (;;) {
			auto sizeLine = readLine();
			if (!sizeLine)
				return fail(std::move(sizeLine).error().wrap("while reading a chunk size"));
			uint64_t size = 0;
			auto [p, ec] = std::from_chars(sizeLine->data(), sizeLine->data() + sizeLine->size(), size, 16);
			if (ec != std::errc())
				return fail(httpError("bad chunk size '" + *sizeLine + "'"));
			(void)p;
			if (size == 0)
				break;
			GVM_TRY_VOID(discard(size), "while reading a chunk");
			response.bodyBytes += size;
			auto end = readLine();
			if (!end || !end->empty())
				return fail(httpError("a chunk does not end with CRLF"));
		}
		for (;;) { // trailers
			auto line = readLine();
			if (!line)
				return fail(std::move(line).error().wrap("while reading the trailers"));
			if (line->empty())
				break;
		}
	} else if (haveLength) {
		GVM_TRY_VOID(discard(length), "while reading the body of GET " + path);
		response.bodyBytes = length;
	} else {
		// Delimited by the end of the connection.
		response.keepAlive = false;
		for (;;) {
			response.bodyBytes += end_ - begin_;
			begin_ = end_;
			auto n = fill();
			if (!n)
				return fail(std::move(n).error().wrap("while reading the body of GET " + path));
			if (*n == 0)
				break;
		}
	}
	return response;
}

} // namespace gvm::bench
