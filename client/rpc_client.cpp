// SPDX-License-Identifier: Apache-2.0
#include "client/rpc_client.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <vector>

#include "common/fd_passing.h"
#include "gvm_config.h"

namespace gvm::client {

std::string resolveSocketPath(const std::string &flag)
{
	if (!flag.empty())
		return flag;
	if (const char *env = std::getenv("GVM_SOCKET"); env && *env)
		return env;
	return GVM_DEFAULT_SOCKET;
}

Result<RpcClient> RpcClient::connect(const std::string &socketPath)
{
	sockaddr_un addr{};
	addr.sun_family = AF_UNIX;
	if (socketPath.size() >= sizeof(addr.sun_path))
		return fail(Error::fromErrno(ENAMETOOLONG, "socket path " + socketPath));
	std::memcpy(addr.sun_path, socketPath.c_str(), socketPath.size() + 1);

	UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
	if (!fd)
		return fail(Error::fromErrno(errno, "creating a socket"));
	if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) < 0) {
		int err = errno;
		std::string hint;
		if (err == ENOENT || err == ECONNREFUSED)
			hint = " (is gvmd running? start it with 'systemctl start gvmd', or point --socket/GVM_SOCKET at it)";
		else if (err == EACCES || err == EPERM)
			hint = " (is your user in the gvm group?)";
		return fail(Error::fromErrno(err, "cannot reach gvmd at " + socketPath + hint));
	}
	return RpcClient(std::move(fd));
}

std::optional<rpc::Json> callGvmd(const std::string &socketFlag, const std::string &method, const rpc::Json &params,
				  const std::string &notFound)
{
	auto client = RpcClient::connect(resolveSocketPath(socketFlag));
	if (!client) {
		std::cerr << "gvmctl: " << client.error().message() << "\n";
		return std::nullopt;
	}
	auto result = client->call(method, params);
	if (!result) {
		const Error &e = result.error();
		if (!notFound.empty() && e.domain() == ErrorDomain::Rpc && e.code() == rpc::kNotFound)
			std::cerr << "gvmctl: " << notFound << "\n";
		else
			std::cerr << "gvmctl: " << e.message() << "\n";
		return std::nullopt;
	}
	return std::move(*result);
}

Error RpcClient::responseError(const rpc::RpcError &error)
{
	return Error(ErrorDomain::Rpc, error.code, "gvmd: " + error.message);
}

Result<int64_t> RpcClient::send(const std::string &method, const rpc::Json &params, std::span<const int> fds)
{
	const int64_t id = nextId_++;
	const std::string line = rpc::encodeRequest(id, method, params);
	// The limit counts the message without its '\n'.
	if (line.size() - 1 > rpc::kMaxMessageBytes)
		return fail(Error::fromErrno(EMSGSIZE, "the " + method + " request is " + std::to_string(line.size() - 1) +
							       " bytes, more than gvmd accepts (" +
							       std::to_string(rpc::kMaxMessageBytes) + ")"));
	size_t sent = 0;
	if (!fds.empty()) {
		// The descriptors travel with the first byte of the line.
		auto n = sendWithFds(fd_.get(), line, fds);
		if (!n)
			return fail(std::move(n).error().wrap("sending to gvmd"));
		sent = *n;
	}
	while (sent < line.size()) {
		ssize_t n = ::send(fd_.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fail(Error::fromErrno(errno, "sending to gvmd"));
		}
		sent += static_cast<size_t>(n);
	}
	return id;
}

Result<bool> RpcClient::receive()
{
	char buf[65536];
	ssize_t n;
	do {
		n = ::recv(fd_.get(), buf, sizeof(buf), MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return true;
		if (errno == ECONNRESET)
			return false;
		return fail(Error::fromErrno(errno, "reading from gvmd"));
	}
	if (n == 0)
		return false;
	std::vector<std::string> lines;
	auto fed = framer_.feed(std::string_view(buf, static_cast<size_t>(n)), &lines);
	if (!fed)
		return fail(std::move(fed).error().wrap("reading from gvmd"));
	for (const std::string &line : lines) {
		auto in = rpc::decodeIncoming(line);
		if (!in)
			return fail(std::move(in).error());
		incoming_.push_back(std::move(*in));
	}
	return true;
}

std::optional<rpc::Incoming> RpcClient::next()
{
	if (incoming_.empty())
		return std::nullopt;
	rpc::Incoming in = std::move(incoming_.front());
	incoming_.pop_front();
	return in;
}

Result<bool> RpcClient::receiveWithin(std::chrono::milliseconds timeout)
{
	auto deadline = std::chrono::steady_clock::now() + timeout;
	for (;;) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
		if (left.count() <= 0)
			return fail(Error::fromErrno(ETIMEDOUT, "waiting for gvmd"));
		pollfd pfd{fd_.get(), POLLIN, 0};
		int r = ::poll(&pfd, 1, static_cast<int>(left.count()));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return fail(Error::fromErrno(errno, "waiting for gvmd"));
		}
		if (r > 0)
			return receive();
	}
}

Result<rpc::Json> RpcClient::call(const std::string &method, const rpc::Json &params,
				  std::chrono::milliseconds timeout)
{
	return call(method, params, {}, timeout);
}

std::optional<Error> RpcClient::refusal(std::chrono::milliseconds wait)
{
	const auto deadline = std::chrono::steady_clock::now() + wait;
	for (;;) {
		for (const rpc::Incoming &in : incoming_)
			if (in.isResponse && in.error && in.id.is_null())
				return responseError(*in.error);
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
										  std::chrono::steady_clock::now());
		if (left.count() <= 0)
			return std::nullopt;
		auto more = receiveWithin(left);
		if (!more || !*more) {
			for (const rpc::Incoming &in : incoming_)
				if (in.isResponse && in.error && in.id.is_null())
					return responseError(*in.error);
			return std::nullopt;
		}
	}
}

Result<rpc::Json> RpcClient::call(const std::string &method, const rpc::Json &params, std::span<const int> fds,
				  std::chrono::milliseconds timeout)
{
	const rpc::Json id = nextId_;
	if (auto sent = send(method, params, fds); !sent) {
		// gvmd may have said why it hung up: prefer its words to EPIPE.
		if (std::optional<Error> why = refusal())
			return fail(std::move(*why));
		return fail(std::move(sent).error());
	}
	const auto deadline = std::chrono::steady_clock::now() + timeout;
	for (;;) {
		// A response with a null id is the server refusing the
		// connection itself (e.g. too many clients).
		for (auto it = incoming_.begin(); it != incoming_.end(); ++it) {
			if (!it->isResponse)
				continue;
			if (it->id == id || (it->error && it->id.is_null())) {
				rpc::Incoming in = std::move(*it);
				incoming_.erase(it);
				if (in.error)
					return fail(responseError(*in.error));
				return std::move(in.result);
			}
		}
		auto more = receiveWithin(
			std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
		if (!more)
			return fail(std::move(more).error());
		if (!*more)
			return fail(Error::fromErrno(ECONNRESET, "gvmd closed the connection"));
	}
}

} // namespace gvm::client
