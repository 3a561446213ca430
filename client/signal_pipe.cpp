// SPDX-License-Identifier: Apache-2.0
#include "client/signal_pipe.h"

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

namespace gvm::client {

namespace {

// The write end, for the handler; -1 while no SignalPipe exists.
volatile sig_atomic_t gWriteFd = -1;

extern "C" void onSignal(int signum)
{
	// Only async-signal-safe calls here. A full pipe drops the byte: the
	// loop is then already awake with plenty of signals to handle.
	const int saved = errno;
	const unsigned char byte = static_cast<unsigned char>(signum);
	if (gWriteFd >= 0)
		(void)!::write(gWriteFd, &byte, 1);
	errno = saved;
}

} // namespace

Result<std::unique_ptr<SignalPipe>> SignalPipe::create(const std::vector<int> &signals)
{
	if (gWriteFd >= 0)
		return fail(Error::internal("a signal pipe exists already"));
	int fds[2];
	if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
		return fail(Error::fromErrno(errno, "creating the signal pipe"));
	std::unique_ptr<SignalPipe> pipe(new SignalPipe(UniqueFd(fds[0]), UniqueFd(fds[1])));
	gWriteFd = pipe->write_.get();
	for (int signum : signals) {
		struct sigaction action{};
		action.sa_handler = onSignal;
		sigemptyset(&action.sa_mask);
		action.sa_flags = SA_RESTART;
		struct sigaction old{};
		if (::sigaction(signum, &action, &old) < 0)
			return fail(Error::fromErrno(errno, "catching signal " + std::to_string(signum)));
		pipe->previous_.emplace_back(signum, old);
	}
	return pipe;
}

SignalPipe::~SignalPipe()
{
	for (auto it = previous_.rbegin(); it != previous_.rend(); ++it)
		::sigaction(it->first, &it->second, nullptr);
	gWriteFd = -1;
}

std::vector<int> SignalPipe::take()
{
	std::vector<int> out;
	unsigned char buf[64];
	for (;;) {
		ssize_t n = ::read(read_.get(), buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; ++i)
			out.push_back(buf[i]);
	}
	return out;
}

} // namespace gvm::client
