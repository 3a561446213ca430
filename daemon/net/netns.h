// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "common/result.h"
#include "common/unique_fd.h"

namespace gvm::net {

// Keeps the calling thread in another network namespace for a scope, and
// brings it back to the namespace it came from when destroyed, on every path.
// Namespaces are per thread: only the thread that made the scope moves, and
// it must destroy the scope itself (gvmd's loop thread does both).
class NetnsScope
{
public:
	// Moves the thread into a fresh, empty network namespace
	// (unshare(CLONE_NEWNET)) and stores an fd to it in *created: the fd
	// is what keeps the namespace alive once nothing runs in it.
	static Result<NetnsScope> enterNew(UniqueFd *created);
	// Moves the thread into the namespace behind nsFd.
	static Result<NetnsScope> enter(int nsFd);

	NetnsScope(NetnsScope &&) noexcept = default;
	NetnsScope &operator=(NetnsScope &&) = delete;
	NetnsScope(const NetnsScope &) = delete;
	NetnsScope &operator=(const NetnsScope &) = delete;
	// Returns to the original namespace; aborts the process if it cannot,
	// since a daemon left in a sandbox's namespace would make every later
	// socket and netlink request there.
	~NetnsScope();

private:
	explicit NetnsScope(UniqueFd home) : home_(std::move(home)) {}

	UniqueFd home_;
};

// An fd to the calling thread's current network namespace.
Result<UniqueFd> openCurrentNetns();

} // namespace gvm::net
