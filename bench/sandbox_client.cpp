// SPDX-License-Identifier: Apache-2.0
#include "bench/sandbox_client.h"

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <fstream>
#include <latch>
#include <memory>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sstream>
#include <string_view>
#include <sys/socket.h>
#include <sys/time.h>
#include <thread>
#include <vector>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "bench/proxy_client.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace gvm::bench {

namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

constexpr int kKeepAliveWarmup = 5;

Error httpError(const std::string &what) { return Error(ErrorDomain::Http, 0, what); }

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Timings {
	Clock::duration tcp{}, tls{};
};

// One HTTPS/1.1 connection to address:port, TLS 1.3 with `name` as SNI and
// as the name the certificate must carry.
class Connection
{
public:
	static Result<std::unique_ptr<Connection>> open(SSL_CTX *ctx, const ClientOptions &o, Timings *timings)
	{
		auto start = Clock::now();
		UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
		if (!fd)
			return fail(Error::fromErrno(errno, "creating a socket"));
		timeval tv{};
		tv.tv_sec = kIoTimeout.count();
		int one = 1;
		if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
		    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
		    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
			return fail(Error::fromErrno(errno, "setting socket options"));
		sockaddr_in sin{};
		sin.sin_family = AF_INET;
		sin.sin_port = htons(o.port);
		if (::inet_pton(AF_INET, o.address.c_str(), &sin.sin_addr) != 1)
			return fail(Error::internal("not an IPv4 address: " + o.address));
		// SO_SNDTIMEO bounds a blocking connect() too.
		if (::connect(fd.get(), reinterpret_cast<const sockaddr *>(&sin), sizeof(sin)) < 0)
			return fail(Error::fromErrno(errno, "connecting to " + o.address + ":" + std::to_string(o.port)));
		auto connected = Clock::now();

		bssl::UniquePtr<SSL> ssl(SSL_new(ctx));
		if (!ssl || !SSL_set_fd(ssl.get(), fd.get()) || !SSL_set_tlsext_host_name(ssl.get(), o.name.c_str()) ||
		    !X509_VERIFY_PARAM_set1_host(SSL_get0_param(ssl.get()), o.name.data(), o.name.size()))
			return fail(Error::fromSsl("setting up the client TLS session"));
		if (SSL_connect(ssl.get()) != 1) {
			long verify = SSL_get_verify_result(ssl.get());
			std::string why = verify != X509_V_OK ? std::string(" (certificate: ") +
									X509_verify_cert_error_string(verify) + ")"
							      : std::string();
			return fail(Error::fromSsl("TLS handshake with " + o.name + why));
		}
		if (timings) {
			timings->tcp = connected - start;
			timings->tls = Clock::now() - connected;
		}
		return std::unique_ptr<Connection>(new Connection(std::move(fd), std::move(ssl), o.name));
	}

	~Connection()
	{
		if (ssl_)
			SSL_shutdown(ssl_.get());
	}

	// GET path; the answer must be 200 with a Content-Length body of
	// `bytes` (nginx serving static files always sends one). Returns
	// whether the connection may be reused.
	Result<bool> get(const std::string &path, uint64_t bytes)
	{
		std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + host_ +
				      "\r\nUser-Agent: gvm-sandbox-bench\r\nAccept: */*\r\n\r\n";
		int n = SSL_write(ssl_.get(), request.data(), static_cast<int>(request.size()));
		if (n != static_cast<int>(request.size()))
			return fail(Error::fromSsl("sending GET " + path));
		// The head.
		size_t end;
		while ((end = std::string_view(buffer_.data() + begin_, end_ - begin_).find("\r\n\r\n")) ==
		       std::string_view::npos) {
			if (end_ - begin_ > kMaxResponseHead)
				return fail(httpError("the response head of GET " + path + " is too long"));
			auto got = fill();
			if (!got)
				return fail(std::move(got).error());
			if (*got == 0)
				return fail(httpError("the connection closed before the response head of GET " + path));
		}
		std::string head(buffer_.data() + begin_, end);
		begin_ += end + 4;
		if (head.compare(0, 9, "HTTP/1.1 ") != 0 || head.compare(9, 3, "200") != 0)
			return fail(httpError("GET " + path + " answered '" + head.substr(0, head.find("\r\n")) + "'"));
		std::string lower = head;
		std::transform(lower.begin(), lower.end(), lower.begin(),
			       [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
		size_t at = lower.find("\r\ncontent-length:");
		if (at == std::string::npos)
			return fail(httpError("GET " + path + " has no Content-Length"));
		uint64_t length = std::strtoull(lower.c_str() + at + 17, nullptr, 10);
		if (length != bytes)
			return fail(httpError("GET " + path + " has " + std::to_string(length) + " bytes, not " +
					      std::to_string(bytes)));
		bool keepAlive = lower.find("\r\nconnection: close") == std::string::npos;
		// The body, discarded.
		while (length > 0) {
			if (begin_ == end_) {
				auto got = fill();
				if (!got)
					return fail(std::move(got).error());
				if (*got == 0)
					return fail(httpError("the connection closed " + std::to_string(length) +
							      " bytes before the end of GET " + path));
			}
			size_t take = static_cast<size_t>(std::min<uint64_t>(length, end_ - begin_));
			begin_ += take;
			length -= take;
		}
		return keepAlive;
	}

private:
	Connection(UniqueFd fd, bssl::UniquePtr<SSL> ssl, std::string host)
		: fd_(std::move(fd)), ssl_(std::move(ssl)), host_(std::move(host)), buffer_(kReadBuffer)
	{
	}

	Result<size_t> fill()
	{
		if (begin_ == end_) {
			begin_ = end_ = 0;
		} else if (end_ == buffer_.size()) {
			std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
			end_ -= begin_;
			begin_ = 0;
		}
		int n = SSL_read(ssl_.get(), buffer_.data() + end_, static_cast<int>(buffer_.size() - end_));
		if (n > 0) {
			end_ += static_cast<size_t>(n);
			return static_cast<size_t>(n);
		}
		int err = SSL_get_error(ssl_.get(), n);
		if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && n == 0 && ERR_peek_error() == 0))
			return size_t{0};
		if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
			return fail(Error::fromErrno(errno == EAGAIN ? ETIMEDOUT : errno, "reading the response"));
		return fail(Error::fromSsl("reading the response"));
	}

	UniqueFd fd_;
	bssl::UniquePtr<SSL> ssl_;
	std::string host_;
	std::vector<char> buffer_;
	size_t begin_ = 0, end_ = 0;
};

Json runFresh(SSL_CTX *ctx, const ClientOptions &o)
{
	std::vector<double> total, tcp, tls, get;
	auto one = [&](bool record) -> Result<void> {
		Timings t;
		auto start = Clock::now();
		auto c = Connection::open(ctx, o, &t);
		if (!c)
			return fail(std::move(c).error());
		auto opened = Clock::now();
		auto r = (*c)->get(o.smallPath, o.smallBytes);
		if (!r)
			return fail(std::move(r).error());
		auto done = Clock::now();
		if (record) {
			total.push_back(ms(done - start));
			tcp.push_back(ms(t.tcp));
			tls.push_back(ms(t.tls));
			get.push_back(ms(done - opened));
		}
		return {};
	};
	std::string error;
	for (int i = 0; i < o.warmup && error.empty(); ++i)
		if (auto r = one(false); !r)
			error = "warm-up: " + r.error().message();
	for (int i = 0; i < o.requests && error.empty(); ++i)
		if (auto r = one(true); !r)
			error = r.error().message();
	return {{"total_ms", total}, {"tcp_ms", tcp}, {"tls_ms", tls}, {"get_ms", get}, {"error", error}};
}

Json runKeepAlive(SSL_CTX *ctx, const ClientOptions &o)
{
	const size_t n = static_cast<size_t>(o.connections);
	std::latch ready(o.connections);
	std::atomic<bool> go{false}, failed{false};
	Clock::time_point start, deadline;
	std::vector<uint64_t> counts(n, 0);
	std::vector<Clock::time_point> ends(n);
	std::vector<std::string> errors(n);

	auto body = [&](size_t index) {
		bool arrived = false;
		auto arrive = [&] {
			if (!arrived)
				ready.count_down();
			arrived = true;
		};
		auto run = [&]() -> Result<void> {
			auto c = Connection::open(ctx, o, nullptr);
			if (!c)
				return fail(std::move(c).error());
			for (int i = 0; i < kKeepAliveWarmup; ++i) {
				auto r = (*c)->get(o.smallPath, o.smallBytes);
				if (!r)
					return fail(std::move(r).error().wrap("while warming up"));
			}
			arrive();
			go.wait(false);
			while (Clock::now() < deadline && !failed.load(std::memory_order_relaxed)) {
				auto r = (*c)->get(o.smallPath, o.smallBytes);
				if (!r)
					return fail(std::move(r).error().wrap("after " + std::to_string(counts[index]) +
									      " requests"));
				++counts[index];
				if (!*r) {
					c = Connection::open(ctx, o, nullptr);
					if (!c)
						return fail(std::move(c).error());
				}
			}
			return {};
		};
		if (auto r = run(); !r) {
			errors[index] = r.error().message();
			failed.store(true);
		}
		ends[index] = Clock::now();
		arrive();
	};
	std::vector<std::thread> threads;
	for (size_t i = 0; i < n; ++i)
		threads.emplace_back(body, i);
	ready.wait();
	start = Clock::now();
	deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
	go.store(true);
	go.notify_all();
	for (std::thread &t : threads)
		t.join();
	uint64_t requests = 0;
	Clock::time_point last = start;
	std::string error;
	for (size_t i = 0; i < n; ++i) {
		requests += counts[i];
		last = std::max(last, ends[i]);
		if (error.empty() && !errors[i].empty())
			error = "connection " + std::to_string(i) + ": " + errors[i];
	}
	double seconds = std::chrono::duration<double>(last - start).count();
	return {{"requests", requests},
		{"seconds", seconds},
		{"per_second", seconds > 0 ? static_cast<double>(requests) / seconds : 0.0},
		{"error", error}};
}

Json runBulk(SSL_CTX *ctx, const ClientOptions &o)
{
	std::vector<double> rates;
	std::string error;
	for (int i = 0; i < o.bulkRuns && error.empty(); ++i) {
		auto c = Connection::open(ctx, o, nullptr);
		if (!c) {
			error = c.error().message();
			break;
		}
		auto start = Clock::now();
		auto r = (*c)->get(o.bulkPath, o.bulkBytes);
		double seconds = std::chrono::duration<double>(Clock::now() - start).count();
		if (!r) {
			error = r.error().message();
			break;
		}
		rates.push_back(static_cast<double>(o.bulkBytes) / 1e6 / seconds);
	}
	return {{"mb_per_second", rates}, {"error", error}};
}

} // namespace

const char *toString(ClientLeg leg)
{
	switch (leg) {
	case ClientLeg::Fresh: return "fresh";
	case ClientLeg::KeepAlive: return "keepalive";
	case ClientLeg::Bulk: return "bulk";
	}
	return "?";
}

Json runClient(const ClientOptions &o)
{
	std::ifstream in(o.caFile);
	std::ostringstream pem;
	pem << in.rdbuf();
	if (!in)
		return {{"error", "cannot read the CA file " + o.caFile}};
	auto ctx = makeClientContext(pem.str());
	if (!ctx)
		return {{"error", ctx.error().message()}};
	switch (o.leg) {
	case ClientLeg::Fresh: return runFresh(ctx->get(), o);
	case ClientLeg::KeepAlive: return runKeepAlive(ctx->get(), o);
	case ClientLeg::Bulk: return runBulk(ctx->get(), o);
	}
	return {{"error", "unknown leg"}};
}

} // namespace gvm::bench
