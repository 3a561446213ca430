// SPDX-License-Identifier: Apache-2.0
#include "daemon/proxy/transport.h"

#include <sys/socket.h>

#include <openssl/err.h>

#include "common/log.h"

namespace gvm::proxy {

namespace {

constexpr size_t kReadBufferBytes = 64 * 1024;

// One uv_write in flight: the bytes must live until its callback.
struct WriteRequest {
	uv_write_t req{};
	std::string data;
	std::weak_ptr<Transport *> owner;
};

struct ConnectRequest {
	uv_connect_t req{};
	std::weak_ptr<Transport *> owner;
};

Error tlsError(const std::string &what)
{
	return Error(ErrorDomain::Ssl, 0, what + ": " + sslErrorString());
}

} // namespace

std::string sslErrorString()
{
	std::string out;
	while (uint32_t e = ERR_get_error()) {
		char buf[256];
		ERR_error_string_n(e, buf, sizeof(buf));
		out += (out.empty() ? "" : "; ") + std::string(buf);
	}
	return out.empty() ? "unknown TLS error" : out;
}

const char *Transport::toString(State state)
{
	switch (state) {
	case State::Connecting:
		return "connecting";
	case State::Handshaking:
		return "handshaking";
	case State::Open:
		return "open";
	case State::Closed:
		return "closed";
	}
	return "?";
}

Transport::Transport(Loop &loop) : loop_(loop), alive_(std::make_shared<Transport *>(this))
{
	uv_tcp_init(loop.get(), tcp_.get());
	tcp_.get()->data = this;
}

Transport::~Transport()
{
	close();
}

Result<std::unique_ptr<Transport>> Transport::adopt(Loop &loop, UniqueFd fd)
{
	std::unique_ptr<Transport> t(new Transport(loop));
	if (int r = uv_tcp_open(t->tcp_.get(), fd.get()); r < 0)
		return gvm::fail(Error::fromLibuv(r, "adopting a connection"));
	(void)fd.release(); // the handle owns it now
	uv_tcp_nodelay(t->tcp_.get(), 1);
	return t;
}

std::unique_ptr<Transport> Transport::connect(Loop &loop, const sockaddr *addr, std::function<void(Result<void>)> done)
{
	std::unique_ptr<Transport> t(new Transport(loop));
	t->state_ = State::Connecting;
	t->connectDone_ = std::move(done);
	auto *req = new ConnectRequest;
	req->owner = t->alive_;
	req->req.data = req;
	int r = uv_tcp_connect(&req->req, t->tcp_.get(), addr, [](uv_connect_t *c, int status) {
		std::unique_ptr<ConnectRequest> request(static_cast<ConnectRequest *>(c->data));
		auto owner = request->owner.lock();
		if (!owner || status == UV_ECANCELED)
			return;
		Transport *self = *owner;
		auto finished = std::move(self->connectDone_);
		if (status < 0) {
			self->close();
			finished(gvm::fail(Error::fromLibuv(status, "connecting")));
			return;
		}
		uv_tcp_nodelay(self->tcp_.get(), 1);
		self->setState(State::Open);
		finished({});
	});
	if (r < 0) {
		delete req;
		auto cb = std::move(t->connectDone_);
		t->close();
		loop.post([cb = std::move(cb), r] { cb(gvm::fail(Error::fromLibuv(r, "connecting"))); });
	}
	return t;
}

void Transport::setState(State state)
{
	if (state == state_)
		return;
	GVM_LOG(Proxy, Debug) << "transport fd " << fd() << ": " << toString(state_) << " -> " << toString(state);
	state_ = state;
}

int Transport::fd() const
{
	uv_os_fd_t fd = -1;
	if (tcp_.get())
		uv_fileno(tcp_.base(), &fd);
	return fd;
}

void Transport::startReading()
{
	if (reading_ || state_ == State::Closed || eof_)
		return;
	reading_ = true;
	uv_read_start(
		reinterpret_cast<uv_stream_t *>(tcp_.get()),
		[](uv_handle_t *, size_t, uv_buf_t *buf) {
			// One buffer for every read of the process: reads are
			// consumed before the callback returns, on the only loop.
			static char shared[kReadBufferBytes];
			buf->base = shared;
			buf->len = kReadBufferBytes;
		},
		[](uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
			if (auto *self = static_cast<Transport *>(s->data))
				self->onRead(n, buf);
		});
}

void Transport::stopReading()
{
	if (!reading_ || state_ == State::Closed)
		return;
	reading_ = false;
	uv_read_stop(reinterpret_cast<uv_stream_t *>(tcp_.get()));
}

void Transport::onRead(ssize_t n, const uv_buf_t *buf)
{
	if (n == 0)
		return;
	if (n == UV_EOF) {
		eof_ = true;
		stopReading();
		if (ssl_ && state_ == State::Handshaking) {
			fail(Error(ErrorDomain::Ssl, 0, "the peer closed the connection during the TLS handshake"));
			return;
		}
		// Copies: a callback may replace the callbacks (e.g. a connection
		// parked in the upstream pool).
		if (auto cb = callbacks_.onEof)
			cb();
		return;
	}
	if (n < 0) {
		fail(Error::fromLibuv(static_cast<int>(n), "reading"));
		return;
	}
	bytesRead_ += static_cast<uint64_t>(n);
	onTcpData(std::string_view(buf->base, static_cast<size_t>(n)));
}

void Transport::onTcpData(std::string_view data)
{
	if (!ssl_) {
		if (auto cb = callbacks_.onData)
			cb(data);
		return;
	}
	BIO_write(rbio_, data.data(), static_cast<int>(data.size()));
	driveTls();
}

void Transport::driveTls()
{
	std::weak_ptr<Transport *> alive = alive_;
	if (state_ == State::Handshaking) {
		int r = SSL_do_handshake(ssl_.get());
		flushTls();
		if (r != 1) {
			int err = SSL_get_error(ssl_.get(), r);
			if (err == SSL_ERROR_WANT_READ)
				return;
			Error error = tlsError("TLS handshake failed");
			if (!SSL_is_server(ssl_.get())) {
				long verify = SSL_get_verify_result(ssl_.get());
				if (verify != X509_V_OK)
					error = Error(ErrorDomain::Ssl, static_cast<int>(verify),
						      std::string("upstream certificate verification failed: ") +
							      X509_verify_cert_error_string(verify));
			}
			finishHandshake(gvm::fail(std::move(error)));
			return;
		}
		setState(State::Open);
		finishHandshake({});
		if (alive.expired() || state_ != State::Open)
			return;
	}
	// Decrypt everything available, handing plain bytes on as they come.
	char buf[16 * 1024];
	while (state_ == State::Open) {
		int n = SSL_read(ssl_.get(), buf, sizeof(buf));
		if (n > 0) {
			if (auto cb = callbacks_.onData)
				cb(std::string_view(buf, static_cast<size_t>(n)));
			if (alive.expired())
				return;
			continue;
		}
		int err = SSL_get_error(ssl_.get(), n);
		if (err == SSL_ERROR_WANT_READ)
			break;
		if (err == SSL_ERROR_ZERO_RETURN) {
			// close_notify: the peer is done sending.
			flushTls();
			if (auto cb = callbacks_.onEof)
				cb();
			return;
		}
		fail(tlsError("TLS read failed"));
		return;
	}
	flushTls();
}

void Transport::finishHandshake(Result<void> result)
{
	auto done = std::move(handshakeDone_);
	if (!result)
		close();
	if (done)
		done(std::move(result));
}

void Transport::flushTls()
{
	if (!wbio_)
		return;
	const uint8_t *data = nullptr;
	size_t len = 0;
	if (!BIO_mem_contents(wbio_, &data, &len) || len == 0)
		return;
	// Written straight from the BIO: only what the kernel does not take
	// now is copied, to wait for its turn.
	const std::string_view records(reinterpret_cast<const char *>(data), len);
	const size_t written = state_ == State::Closed ? len : tryWrite(records);
	std::string rest(records.substr(written));
	BIO_reset(wbio_);
	if (!rest.empty())
		queueWrite(std::move(rest));
}

void Transport::startTlsServer(bssl::UniquePtr<SSL> ssl, std::string_view early,
			       std::function<void(Result<void>)> done)
{
	ssl_ = std::move(ssl);
	rbio_ = BIO_new(BIO_s_mem());
	wbio_ = BIO_new(BIO_s_mem());
	SSL_set_bio(ssl_.get(), rbio_, wbio_);
	SSL_set_accept_state(ssl_.get());
	handshakeDone_ = std::move(done);
	setState(State::Handshaking);
	if (!early.empty())
		BIO_write(rbio_, early.data(), static_cast<int>(early.size()));
	driveTls();
}

void Transport::startTlsClient(bssl::UniquePtr<SSL> ssl, std::function<void(Result<void>)> done)
{
	ssl_ = std::move(ssl);
	rbio_ = BIO_new(BIO_s_mem());
	wbio_ = BIO_new(BIO_s_mem());
	SSL_set_bio(ssl_.get(), rbio_, wbio_);
	SSL_set_connect_state(ssl_.get());
	handshakeDone_ = std::move(done);
	setState(State::Handshaking);
	startReading();
	driveTls();
}

void Transport::write(std::string_view data)
{
	if (state_ == State::Closed || data.empty())
		return;
	if (corks_ > 0) {
		corked_.append(data);
		if (corked_.size() >= kMaxCorkedBytes) {
			std::string held = std::move(corked_);
			corked_.clear();
			writeNow(held);
		}
		return;
	}
	writeNow(data);
}

void Transport::uncork()
{
	if (corks_ > 0 && --corks_ == 0 && !corked_.empty()) {
		std::string held = std::move(corked_);
		corked_.clear();
		if (state_ != State::Closed)
			writeNow(held);
	}
}

void Transport::writeNow(std::string_view data)
{
	if (!ssl_) {
		writeRaw(std::string(data));
		return;
	}
	while (!data.empty()) {
		size_t chunk = std::min<size_t>(data.size(), 16 * 1024);
		int n = SSL_write(ssl_.get(), data.data(), static_cast<int>(chunk));
		if (n <= 0) {
			fail(tlsError("TLS write failed"));
			return;
		}
		data.remove_prefix(static_cast<size_t>(n));
	}
	flushTls();
}

void Transport::writeRaw(std::string data)
{
	if (state_ == State::Closed)
		return;
	const size_t written = tryWrite(data);
	if (written == data.size())
		return;
	data.erase(0, written);
	queueWrite(std::move(data));
}

size_t Transport::tryWrite(std::string_view data)
{
	if (queued_ > 0 || data.empty())
		return 0;
	// Nothing queued: hand the bytes to the kernel now, without a write
	// request (whose completion costs libuv an epoll_ctl). On an error
	// the write request that follows meets it again and reports it from
	// its callback, never from inside write().
	uv_buf_t now = uv_buf_init(const_cast<char *>(data.data()), static_cast<unsigned>(data.size()));
	int n = uv_try_write(reinterpret_cast<uv_stream_t *>(tcp_.get()), &now, 1);
	if (n <= 0)
		return 0;
	bytesWritten_ += static_cast<uint64_t>(n);
	return static_cast<size_t>(n);
}

void Transport::queueWrite(std::string data)
{
	if (state_ == State::Closed)
		return;
	auto *req = new WriteRequest;
	req->data = std::move(data);
	req->owner = alive_;
	req->req.data = req;
	uv_buf_t buf = uv_buf_init(req->data.data(), static_cast<unsigned>(req->data.size()));
	queued_ += req->data.size();
	bytesWritten_ += req->data.size();
	if (queued_ > kMaxQueuedBytes)
		aboveLimit_ = true;
	int r = uv_write(&req->req, reinterpret_cast<uv_stream_t *>(tcp_.get()), &buf, 1, [](uv_write_t *w, int status) {
		std::unique_ptr<WriteRequest> request(static_cast<WriteRequest *>(w->data));
		auto owner = request->owner.lock();
		if (!owner)
			return;
		Transport *self = *owner;
		self->queued_ -= request->data.size();
		self->afterWrite(status);
	});
	if (r < 0) {
		queued_ -= req->data.size();
		delete req;
		fail(Error::fromLibuv(r, "writing"));
	}
}

void Transport::afterWrite(int status)
{
	if (state_ == State::Closed)
		return;
	if (status < 0) {
		fail(Error::fromLibuv(status, "writing"));
		return;
	}
	if (shutdownPending_ && queued_ == 0) {
		shutdownPending_ = false;
		auto *req = new uv_shutdown_t;
		if (uv_shutdown(req, reinterpret_cast<uv_stream_t *>(tcp_.get()),
				[](uv_shutdown_t *s, int) { delete s; }) < 0)
			delete req;
	}
	if (aboveLimit_ && queued_ <= kMaxQueuedBytes / 2) {
		aboveLimit_ = false;
		if (auto cb = callbacks_.onDrained)
			cb();
	}
}

size_t Transport::queuedBytes() const
{
	return queued_ + corked_.size();
}

void Transport::shutdownWrite()
{
	if (state_ == State::Closed)
		return;
	if (!corked_.empty()) {
		std::string held = std::move(corked_);
		corked_.clear();
		writeNow(held);
		if (state_ == State::Closed)
			return;
	}
	if (ssl_ && state_ == State::Open) {
		SSL_shutdown(ssl_.get());
		flushTls();
	}
	if (queued_ == 0) {
		auto *req = new uv_shutdown_t;
		if (uv_shutdown(req, reinterpret_cast<uv_stream_t *>(tcp_.get()),
				[](uv_shutdown_t *s, int) { delete s; }) < 0)
			delete req;
	} else {
		shutdownPending_ = true;
	}
}

void Transport::fail(Error error)
{
	if (state_ == State::Closed)
		return;
	if (state_ == State::Handshaking && handshakeDone_) {
		finishHandshake(gvm::fail(std::move(error)));
		return;
	}
	auto onError = callbacks_.onError;
	close();
	if (onError)
		onError(error);
}

void Transport::reset()
{
	if (state_ == State::Closed)
		return;
	// Lingering zero seconds makes close() send RST, not FIN.
	linger now{1, 0};
	::setsockopt(fd(), SOL_SOCKET, SO_LINGER, &now, sizeof(now));
	close();
}

void Transport::close()
{
	if (state_ == State::Closed)
		return;
	state_ = State::Closed;
	reading_ = false;
	alive_.reset();
	corked_.clear();
	callbacks_ = {};
	tcp_.close();
}

} // namespace gvm::proxy
