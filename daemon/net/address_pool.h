// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <netinet/in.h>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace gvm::net {

// One sandbox's addresses: a /30 out of the pool, host end = network + 1,
// sandbox end = network + 2. Addresses in network byte order.
struct Block {
	in_addr network{};
	in_addr host{};
	in_addr sandbox{};
	int prefix = 30;

	std::string toString() const; // "10.201.0.0/30"
	bool operator==(const Block &other) const { return network.s_addr == other.network.s_addr; }
};

// An IPv4 network already present on the host (a route or an address), which
// a sandbox block must not overlap. Host byte order.
struct HostNetwork {
	uint32_t network = 0;
	int prefix = 32;
	std::string what; // "route 10.201.0.0/30 dev gvmtest0"
};

// The IPv4 routes (every table; the default route excepted) and addresses of
// the namespace the calling thread is in, read with libnl-route caches.
Result<std::vector<HostNetwork>> readHostNetworks();

// Hands out /30 blocks of an IPv4 pool to sandboxes. A block is never given
// while another live sandbox holds it, nor when it overlaps a route or
// address of the host (it would shadow or be shadowed by a real network);
// the host is read again at each allocation. Owned by gvmd's sandbox manager;
// allocate() and release() may be called from any thread (a network is made
// ahead on a thread of the loop's pool); it must outlive the SandboxNetworks that
// hold its blocks. Allocation goes round the pool rather than reusing the
// block just released, so a new sandbox does not inherit conntrack entries
// of the previous one.
class AddressPool
{
public:
	// An IPv4 CIDR of prefix at most /30, e.g. "10.201.0.0/16". Host bits
	// set in the address are an error.
	static Result<AddressPool> create(std::string_view cidr);

	// A free block that overlaps nothing on the host. Fails with
	// EADDRNOTAVAIL and a context that says whether the pool is exhausted
	// by sandboxes or shadowed by host networks (and which).
	Result<Block> allocate();
	// Same, against the given host networks instead of reading the host's.
	Result<Block> allocate(const std::vector<HostNetwork> &host);
	// Gives a block back; unknown blocks are ignored.
	void release(const Block &block);

	const std::string &cidr() const { return cidr_; }
	uint32_t blockCount() const { return blockCount_; }
	size_t inUse() const
	{
		std::lock_guard lock(*mutex_);
		return used_.size();
	}

private:
	AddressPool(std::string cidr, uint32_t base, uint32_t blockCount)
		: cidr_(std::move(cidr)), base_(base), blockCount_(blockCount)
	{
	}

	std::string cidr_;
	uint32_t base_;       // host byte order
	uint32_t blockCount_; // number of /30 blocks
	uint32_t next_ = 0;   // index to try first
	std::set<uint32_t> used_; // block indexes
	// gvmd makes a network ahead on a thread of its own while its loop
	// may release another's block: allocate() and release() lock.
	std::unique_ptr<std::mutex> mutex_ = std::make_unique<std::mutex>();
};

} // namespace gvm::net
