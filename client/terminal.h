// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <optional>
#include <termios.h>
#include <sys/ioctl.h>

#include "common/result.h"
#include "common/unique_fd.h"

namespace gvm::client {

// The caller's terminal for the length of one `gvmctl launch`: remembers the
// mode of a terminal descriptor, switches it to raw mode (cfmakeraw: no echo,
// no line editing, no signal keys, no output processing) so that every key
// reaches the agent's pseudo-terminal untouched, and puts the saved mode back
// on restore() or destruction. Holding it on the stack is what makes every
// way out of gvmctl, gvmd vanishing included, leave the user's terminal as it
// was. Does not own the descriptor; single-threaded.
class TerminalMode
{
public:
	// Saves fd's current mode; fails when fd is not a terminal.
	static Result<std::unique_ptr<TerminalMode>> create(int fd);
	TerminalMode(const TerminalMode &) = delete;
	TerminalMode &operator=(const TerminalMode &) = delete;
	~TerminalMode() { restore(); }

	// The mode the terminal had when create() ran.
	const termios &saved() const { return saved_; }

	Result<void> makeRaw();
	// Puts the saved mode back, if makeRaw() changed it; safe to repeat.
	void restore();
	bool raw() const { return raw_; }

private:
	TerminalMode(int fd, const termios &saved) : fd_(fd), saved_(saved) {}

	int fd_;
	termios saved_;
	bool raw_ = false;
};

// A pseudo-terminal pair for an agent. gvmctl keeps the master (non-blocking,
// relayed to and from its own terminal); the slave is sent to gvmd, which
// makes it the agent's stdin/stdout/stderr and controlling terminal. Owned
// by the launch session.
class Pty
{
public:
	// Opens a pty whose slave starts with the given mode and window size
	// (either may be null: the kernel's defaults).
	static Result<std::unique_ptr<Pty>> create(const termios *mode, const winsize *size);
	Pty(const Pty &) = delete;
	Pty &operator=(const Pty &) = delete;

	int master() const { return master_.get(); }
	int slave() const { return slave_.get(); }

	// Drops gvmctl's own copy of the slave once it went to gvmd: reading
	// the master then reports EIO as soon as the agent's side is all
	// closed, which is how the relay knows the output is complete.
	void closeSlave() { slave_.reset(); }

	Result<void> setWindowSize(const winsize &size);

private:
	Pty(UniqueFd master, UniqueFd slave) : master_(std::move(master)), slave_(std::move(slave)) {}

	UniqueFd master_;
	UniqueFd slave_;
};

// The window size of terminal fd, if it has one.
std::optional<winsize> windowSize(int fd);

} // namespace gvm::client
