// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <csignal>
#include <memory>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace gvm::client {

// Signals as bytes on a pipe (the self-pipe trick), so that a poll() loop
// sees them like any other input. While it exists, the listed signals are
// caught (SA_RESTART, so blocking calls elsewhere are not cut short) and
// their handler only writes the signal number to the pipe; destruction puts
// the previous dispositions back. At most one exists at a time; it lives on
// the stack of the command that loops.
class SignalPipe
{
public:
	static Result<std::unique_ptr<SignalPipe>> create(const std::vector<int> &signals);
	SignalPipe(const SignalPipe &) = delete;
	SignalPipe &operator=(const SignalPipe &) = delete;
	~SignalPipe();

	// Readable when a signal arrived.
	int fd() const { return read_.get(); }
	// The signals caught since the last call, in arrival order.
	std::vector<int> take();

private:
	SignalPipe(UniqueFd read, UniqueFd write) : read_(std::move(read)), write_(std::move(write)) {}

	UniqueFd read_;
	UniqueFd write_;
	std::vector<std::pair<int, struct sigaction>> previous_;
};

} // namespace gvm::client
