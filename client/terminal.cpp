// SPDX-License-Identifier: Apache-2.0
#include "client/terminal.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fcntl.h>

namespace gvm::client {

Result<std::unique_ptr<TerminalMode>> TerminalMode::create(int fd)
{
	termios mode{};
	if (::tcgetattr(fd, &mode) < 0)
		return fail(Error::fromErrno(errno, "reading the terminal mode"));
	return std::unique_ptr<TerminalMode>(new TerminalMode(fd, mode));
}

Result<void> TerminalMode::makeRaw()
{
	termios mode = saved_;
	::cfmakeraw(&mode);
	// Reads return what is there, at least one byte: the relay polls first.
	mode.c_cc[VMIN] = 1;
	mode.c_cc[VTIME] = 0;
	if (::tcsetattr(fd_, TCSANOW, &mode) < 0)
		return fail(Error::fromErrno(errno, "switching the terminal to raw mode"));
	raw_ = true;
	return {};
}

void TerminalMode::restore()
{
	if (!raw_)
		return;
	// TCSANOW rather than TCSADRAIN: a terminal stopped by flow control
	// must not keep gvmctl from exiting.
	while (::tcsetattr(fd_, TCSANOW, &saved_) < 0 && errno == EINTR) {
	}
	raw_ = false;
}

Result<std::unique_ptr<Pty>> Pty::create(const termios *mode, const winsize *size)
{
	// O_NOCTTY: the pty is the agent's terminal, never gvmctl's.
	UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
	if (!master)
		return fail(Error::fromErrno(errno, "opening a pseudo-terminal"));
	if (::grantpt(master.get()) < 0)
		return fail(Error::fromErrno(errno, "granting the pseudo-terminal"));
	if (::unlockpt(master.get()) < 0)
		return fail(Error::fromErrno(errno, "unlocking the pseudo-terminal"));
	char name[PATH_MAX];
	if (int err = ::ptsname_r(master.get(), name, sizeof(name)); err != 0)
		return fail(Error::fromErrno(err, "naming the pseudo-terminal"));
	UniqueFd slave(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
	if (!slave)
		return fail(Error::fromErrno(errno, std::string("opening ") + name));
	if (mode && ::tcsetattr(slave.get(), TCSANOW, mode) < 0)
		return fail(Error::fromErrno(errno, "setting the pseudo-terminal's mode"));
	if (size && ::ioctl(master.get(), TIOCSWINSZ, size) < 0)
		return fail(Error::fromErrno(errno, "setting the pseudo-terminal's window size"));
	// Only the master is gvmctl's to poll; the slave is passed on as it is.
	int flags = ::fcntl(master.get(), F_GETFL);
	if (flags < 0 || ::fcntl(master.get(), F_SETFL, flags | O_NONBLOCK) < 0)
		return fail(Error::fromErrno(errno, "making the pseudo-terminal non-blocking"));
	return std::unique_ptr<Pty>(new Pty(std::move(master), std::move(slave)));
}

Result<void> Pty::setWindowSize(const winsize &size)
{
	// The kernel sends SIGWINCH to the pty's foreground process group.
	if (::ioctl(master_.get(), TIOCSWINSZ, &size) < 0)
		return fail(Error::fromErrno(errno, "setting the pseudo-terminal's window size"));
	return {};
}

std::optional<winsize> windowSize(int fd)
{
	winsize size{};
	if (::ioctl(fd, TIOCGWINSZ, &size) < 0)
		return std::nullopt;
	return size;
}

} // namespace gvm::client
