// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"
#include "daemon/net/address_pool.h"
#include "daemon/net/host_network.h"
#include "daemon/net/network_config.h"

namespace gvm::net {

// One sandbox's network: a network namespace whose only way out is a veth
// pair to the host (gvm<id> on the host, eth0 inside), a /30 from the
// AddressPool, IPv6 off inside, and the sandbox nftables table `inet gvm`
// (only IPv4 TCP and DNS leave; the rest is dropped and counted). The host
// table (installHostTable) redirects what leaves to the sandbox's worker,
// which listens on hostAddress() with the sockets made here.
//
// Owned by gvmd's sandbox manager and used from its loop thread only (create
// and droppedPackets() move that thread into the namespace and back). The
// namespace is not pinned by a mount: it lives while netnsFd() is open or a
// process runs in it. Destruction deletes the veth pair, closes the
// namespace fd and gives the block back to the pool, which must outlive it.
class SandboxNetwork
{
public:
	// All-or-nothing: any failing step rolls back every earlier one, and
	// the error names the step. `id` is a sandbox id (8 lowercase hex).
	static Result<std::unique_ptr<SandboxNetwork>> create(const std::string &id, const NetworkConfig &config,
							      AddressPool &pool);
	SandboxNetwork(const SandboxNetwork &) = delete;
	SandboxNetwork &operator=(const SandboxNetwork &) = delete;
	// Tears down; never fails, logs what could not be undone.
	~SandboxNetwork();

	const std::string &id() const { return id_; }
	// The namespace, for setns() by the agent's launcher. Owned here.
	int netnsFd() const { return netns_.get(); }
	const std::string &hostInterface() const { return hostInterface_; } // "gvm<id>"
	std::string hostAddress() const;                                    // "10.201.0.1"
	std::string sandboxAddress() const;                                 // "10.201.0.2"
	const Block &block() const { return block_; }

	// Sockets for the worker, in the host namespace, bound to
	// hostAddress(): nonblocking, close-on-exec, SO_REUSEADDR; TCP
	// listeners have a backlog of kListenBacklog.
	Result<UniqueFd> transparentListener() const; // TCP, transparentPort
	Result<UniqueFd> dnsUdpSocket() const;        // UDP, dnsPort
	Result<UniqueFd> dnsTcpListener() const;      // TCP, dnsPort

	// Packets the sandbox tried to send and its nftables table dropped
	// (counter `dropped`); 0 if it cannot be read (logged at debug).
	uint64_t droppedPackets() const;
	Result<uint64_t> readDroppedPackets() const;

private:
	SandboxNetwork(std::string id, const NetworkConfig &config, AddressPool &pool, Block block, UniqueFd netns);

	std::string id_;
	NetworkConfig config_;
	AddressPool &pool_;
	Block block_;
	UniqueFd netns_;
	std::string hostInterface_;
};

} // namespace gvm::net
