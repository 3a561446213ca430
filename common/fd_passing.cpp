// SPDX-License-Identifier: Apache-2.0
#include "common/fd_passing.h"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>

namespace gvm {

Result<size_t> sendWithFds(int sock, std::string_view data, std::span<const int> fds)
{
	if (data.empty())
		return fail(Error::fromErrno(EINVAL, "sending descriptors needs at least one byte"));
	if (fds.size() > kMaxPassedFds)
		return fail(Error::fromErrno(E2BIG, "too many descriptors to pass"));

	iovec iov{const_cast<char *>(data.data()), data.size()};
	msghdr msg{};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;

	alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)];
	if (!fds.empty()) {
		const size_t payload = sizeof(int) * fds.size();
		msg.msg_control = control;
		msg.msg_controllen = CMSG_SPACE(payload);
		std::memset(control, 0, sizeof(control));
		cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(payload);
		std::memcpy(CMSG_DATA(cmsg), fds.data(), payload);
	}

	ssize_t n;
	do {
		n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return fail(Error::fromErrno(errno, "sendmsg"));
	return static_cast<size_t>(n);
}

Result<Received> receiveWithFds(int sock, char *buf, size_t len)
{
	iovec iov{buf, len};
	msghdr msg{};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)];
	msg.msg_control = control;
	msg.msg_controllen = sizeof(control);

	ssize_t n;
	do {
		n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return fail(Error::fromErrno(errno, "recvmsg"));

	Received out;
	out.bytes = static_cast<size_t>(n);
	for (cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
		if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
			continue;
		const size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count; ++i) {
			int fd;
			std::memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
			out.fds.emplace_back(fd);
		}
	}
	// The kernel closes what did not fit and sets MSG_CTRUNC.
	out.fdsTruncated = (msg.msg_flags & MSG_CTRUNC) != 0;
	return out;
}

} // namespace gvm
