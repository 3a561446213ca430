// SPDX-License-Identifier: Apache-2.0
#include "daemon/net/netns.h"

#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <sched.h>

#include "common/log.h"

namespace gvm::net {

Result<UniqueFd> openCurrentNetns()
{
	// thread-self, not self: the namespace is a property of the thread,
	// and another thread of the process may be elsewhere.
	UniqueFd fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
	if (!fd)
		return fail(Error::fromErrno(errno, "opening /proc/thread-self/ns/net"));
	return fd;
}

Result<NetnsScope> NetnsScope::enterNew(UniqueFd *created)
{
	auto home = openCurrentNetns();
	if (!home)
		return fail(std::move(home).error().wrap("remembering the current network namespace"));
	// A new, empty network namespace for this thread only: the sandbox's
	// links, routes and nftables are configured from inside it, and the
	// scope's destructor brings the thread back to the host.
	if (::unshare(CLONE_NEWNET) < 0)
		return fail(Error::fromErrno(errno, "unshare(CLONE_NEWNET)"));
	NetnsScope scope(std::move(*home));
	auto ns = openCurrentNetns();
	if (!ns)
		return fail(std::move(ns).error().wrap("opening the new network namespace"));
	*created = std::move(*ns);
	return scope;
}

Result<NetnsScope> NetnsScope::enter(int nsFd)
{
	auto home = openCurrentNetns();
	if (!home)
		return fail(std::move(home).error().wrap("remembering the current network namespace"));
	// Entering an existing sandbox namespace, e.g. to read its nftables
	// counters through a netlink socket that must be opened there.
	if (::setns(nsFd, CLONE_NEWNET) < 0)
		return fail(Error::fromErrno(errno, "setns(CLONE_NEWNET)"));
	return NetnsScope(std::move(*home));
}

NetnsScope::~NetnsScope()
{
	if (!home_)
		return;
	// Back to the namespace the thread came from (the host's, for gvmd).
	if (::setns(home_.get(), CLONE_NEWNET) < 0) {
		int err = errno;
		GVM_LOG(Net, Error) << "cannot return to the host network namespace: "
				    << Error::fromErrno(err, "setns").message() << ", aborting";
		std::abort();
	}
}

} // namespace gvm::net
