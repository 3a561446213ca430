// SPDX-License-Identifier: Apache-2.0
#include "daemon/net/sandbox_network.h"

#include <cerrno>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/scope_exit.h"
#include "daemon/net/netlink.h"
#include "daemon/net/netns.h"
#include "daemon/net/nftables.h"

namespace gvm::net {

namespace {

// Writes a sysctl of the namespace the calling thread is in (/proc/sys/net
// resolves against the opener's namespace). A missing file means the kernel
// has no IPv6 at all, which is what is asked for.
Result<void> disableIpv6(const std::string &conf)
{
	std::string path = "/proc/sys/net/ipv6/conf/" + conf + "/disable_ipv6";
	UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
	if (!fd) {
		if (errno == ENOENT)
			return {};
		return fail(Error::fromErrno(errno, "opening " + path));
	}
	if (::write(fd.get(), "1\n", 2) != 2)
		return fail(Error::fromErrno(errno, "writing " + path));
	return {};
}

Result<UniqueFd> boundSocket(int type, in_addr address, uint16_t port, bool listen)
{
	std::string what = std::string(type == SOCK_STREAM ? "TCP" : "UDP") + " socket on " + toString(address) +
			   ":" + std::to_string(port);
	UniqueFd fd(::socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (!fd)
		return fail(Error::fromErrno(errno, "creating " + what));
	int one = 1;
	if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		return fail(Error::fromErrno(errno, "setting SO_REUSEADDR on " + what));
	sockaddr_in sin{};
	sin.sin_family = AF_INET;
	sin.sin_addr = address;
	sin.sin_port = htons(port);
	if (::bind(fd.get(), reinterpret_cast<sockaddr *>(&sin), sizeof(sin)) < 0)
		return fail(Error::fromErrno(errno, "binding " + what));
	if (listen && ::listen(fd.get(), kListenBacklog) < 0)
		return fail(Error::fromErrno(errno, "listening on " + what));
	return fd;
}

} // namespace

SandboxNetwork::SandboxNetwork(std::string id, const NetworkConfig &config, AddressPool &pool, Block block,
			       UniqueFd netns)
	: id_(std::move(id)), config_(config), pool_(pool), block_(block), netns_(std::move(netns)),
	  hostInterface_(std::string(kHostInterfacePrefix) + id_)
{
}

Result<std::unique_ptr<SandboxNetwork>> SandboxNetwork::create(const std::string &id, const NetworkConfig &config,
								AddressPool &pool)
{
	// Errors name the step; the caller adds which sandbox it was creating.
	if (!isSandboxId(id))
		return fail(Error::fromErrno(EINVAL, "\"" + id + "\" is not a sandbox id"));
	const std::string hostIf = std::string(kHostInterfacePrefix) + id;
	const std::string peerIf = std::string(kPeerInterfacePrefix) + id;
	const std::string sandboxIf(kSandboxInterface);

	// Declared before the rollback list, whose undo steps use it.
	auto hostSock = openRouteSocket();
	if (!hostSock)
		return fail(std::move(hostSock).error().wrap("opening a netlink socket in the host namespace"));
	nl_sock *host = hostSock->get();

	// Every step registers its undo here; returning early undoes them.
	Rollback rollback;

	auto block = pool.allocate();
	if (!block)
		return fail(std::move(block).error().wrap("allocating addresses"));
	rollback.add([&pool, b = *block] { pool.release(b); });

	GVM_TRY_VOID(createVethPair(host, hostIf, kHostInterfaceGroup, peerIf), "creating the veth pair");
	rollback.add([host, hostIf] {
		// Deleting the host end deletes the peer, wherever it is by now.
		if (auto r = deleteLink(host, hostIf); !r)
			GVM_LOG(Net, Debug) << "rollback: " << r.error().message() << ", ignoring";
	});
	// The host end needs no IPv6 (no link-local address, no router
	// solicitations towards the sandbox).
	GVM_TRY_VOID(disableIpv6(hostIf), "disabling IPv6 on " + hostIf);
	GVM_TRY_VOID(addIpv4Address(host, hostIf, block->host, block->prefix), "addressing the host end");
	GVM_TRY_VOID(setLinkUp(host, hostIf), "bringing the host end up");

	UniqueFd netns;
	{
		// The sandbox's namespace is created by this thread and
		// configured from inside it: its netlink socket, sysctls and
		// nftables table belong to the namespace the thread is in. The
		// scope returns the thread to the host namespace when it ends,
		// whether the steps below succeed or not.
		auto scope = NetnsScope::enterNew(&netns);
		if (!scope)
			return fail(std::move(scope).error().wrap("creating the network namespace"));

		auto nsSock = openRouteSocket();
		if (!nsSock)
			return fail(std::move(nsSock).error().wrap("opening a netlink socket in the sandbox namespace"));
		nl_sock *inside = nsSock->get();

		GVM_TRY_VOID(setLinkUp(inside, "lo"), "bringing lo up in the sandbox");
		// IPv6 off before eth0 arrives: "default" applies to it, "all"
		// to what exists. The sandbox table drops IPv6 too.
		GVM_TRY_VOID(disableIpv6("all"), "disabling IPv6 in the sandbox");
		GVM_TRY_VOID(disableIpv6("default"), "disabling IPv6 in the sandbox");
		// The peer leaves the host namespace through the host socket.
		GVM_TRY_VOID(moveLinkToNamespace(host, peerIf, netns.get()), "moving the sandbox end into the namespace");
		GVM_TRY_VOID(renameLink(inside, peerIf, sandboxIf), "naming the sandbox end");
		GVM_TRY_VOID(addIpv4Address(inside, sandboxIf, block->sandbox, block->prefix),
			     "addressing the sandbox end");
		GVM_TRY_VOID(setLinkUp(inside, sandboxIf), "bringing the sandbox end up");
		GVM_TRY_VOID(addDefaultRoute(inside, sandboxIf, block->host), "routing the sandbox through the host end");
		GVM_TRY_VOID(runNftables(sandboxRuleset()), "installing the sandbox nftables table");
	}

	rollback.release();
	return std::unique_ptr<SandboxNetwork>(new SandboxNetwork(id, config, pool, *block, std::move(netns)));
}

SandboxNetwork::~SandboxNetwork()
{
	// Deleting the host end takes the sandbox end with it; the namespace
	// goes when netns_ closes and the processes in it are gone.
	auto sock = openRouteSocket();
	Result<void> r = sock ? deleteLink(sock->get(), hostInterface_) : Result<void>(std::move(sock).error());
	if (!r)
		GVM_LOG(Net, Warning) << "sandbox " << id_ << ": tearing down the network: " << r.error().message()
				      << ", ignoring";
	pool_.release(block_);
}

std::string SandboxNetwork::hostAddress() const
{
	return toString(block_.host);
}

std::string SandboxNetwork::sandboxAddress() const
{
	return toString(block_.sandbox);
}

Result<UniqueFd> SandboxNetwork::transparentListener() const
{
	return boundSocket(SOCK_STREAM, block_.host, config_.transparentPort, true);
}

Result<UniqueFd> SandboxNetwork::dnsUdpSocket() const
{
	return boundSocket(SOCK_DGRAM, block_.host, config_.dnsPort, false);
}

Result<UniqueFd> SandboxNetwork::dnsTcpListener() const
{
	return boundSocket(SOCK_STREAM, block_.host, config_.dnsPort, true);
}

Result<uint64_t> SandboxNetwork::readDroppedPackets() const
{
	// Into the sandbox namespace just long enough to read its counter
	// over a netlink socket opened there; the scope brings the thread back.
	auto scope = NetnsScope::enter(netns_.get());
	if (!scope)
		return fail(std::move(scope).error().wrap("entering the namespace of sandbox " + id_));
	return readCounterPackets(kDroppedCounter);
}

uint64_t SandboxNetwork::droppedPackets() const
{
	auto n = readDroppedPackets();
	if (!n) {
		GVM_LOG(Net, Debug) << "sandbox " << id_ << ": " << n.error().message();
		return 0;
	}
	return *n;
}

} // namespace gvm::net
