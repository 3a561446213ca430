// SPDX-License-Identifier: Apache-2.0
#include "client/rpc_client.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

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

Result<std::string> RpcClient::readLine(std::chrono::milliseconds timeout)
{
	auto deadline = std::chrono::steady_clock::now() + timeout;
	while (lines_.empty()) {
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
		if (r == 0)
			continue;
		char buf[65536];
		ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fail(Error::fromErrno(errno, "reading from gvmd"));
		}
		if (n == 0)
			return fail(Error::fromErrno(ECONNRESET, "gvmd closed the connection"));
		auto fed = framer_.feed(std::string_view(buf, static_cast<size_t>(n)), &lines_);
		if (!fed)
			return fail(std::move(fed).error().wrap("reading from gvmd"));
	}
	std::string line = std::move(lines_.front());
	lines_.erase(lines_.begin());
	return line;
}

Result<rpc::Json> RpcClient::call(const std::string &method, const rpc::Json &params,
				  std::chrono::milliseconds timeout)
{
	int64_t id = nextId_++;
	std::string line = rpc::encodeRequest(id, method, params);
	std::optional<Error> sendError;
	size_t sent = 0;
	while (sent < line.size()) {
		ssize_t n = ::send(fd_.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			sendError = Error::fromErrno(errno, "sending to gvmd");
			break;
		}
		sent += static_cast<size_t>(n);
	}
	for (;;) {
		// After a failed send, gvmd may still have said why it hung up
		// (e.g. too many clients): prefer its words to EPIPE.
		auto raw = readLine(sendError ? std::chrono::milliseconds(500) : timeout);
		if (!raw)
			return fail(sendError ? std::move(*sendError) : std::move(raw).error());
		auto in = rpc::decodeIncoming(*raw);
		if (!in)
			return fail(std::move(in).error());
		if (!in->isResponse)
			continue;
		if (in->error) {
			// A response with a null id is the server refusing the
			// connection itself (e.g. too many clients).
			if (!in->id.is_null() && in->id != rpc::Json(id))
				continue;
			return fail(Error(ErrorDomain::Rpc, in->error->code, "gvmd: " + in->error->message));
		}
		if (in->id != rpc::Json(id))
			continue;
		return std::move(in->result);
	}
}

} // namespace gvm::client
