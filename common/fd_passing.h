// SPDX-License-Identifier: Apache-2.0
//
// Sending and receiving file descriptors with SCM_RIGHTS over a unix stream
// socket, alongside ordinary bytes.
#pragma once

#include <span>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace gvm {

// At most this many descriptors travel with one message; more are refused
// (sending) or closed and reported (receiving).
inline constexpr size_t kMaxPassedFds = 16;

// Sends data (at least one byte) with the descriptors attached to its first
// byte. Returns how many bytes were sent; a short send is possible on a
// non-blocking socket, and the descriptors went with the first part.
Result<size_t> sendWithFds(int sock, std::string_view data, std::span<const int> fds);

struct Received {
	size_t bytes = 0;           // 0 = end of stream
	std::vector<UniqueFd> fds;  // received O_CLOEXEC
	bool fdsTruncated = false;  // the sender attached more than kMaxPassedFds
};

// Receives into buf; EAGAIN/EINTR are reported as Errno errors.
Result<Received> receiveWithFds(int sock, char *buf, size_t len);

} // namespace gvm
