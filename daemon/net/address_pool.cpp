// SPDX-License-Identifier: Apache-2.0
#include "daemon/net/address_pool.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <net/if.h>

#include <netlink/route/nexthop.h>

#include "daemon/net/netlink.h"

namespace gvm::net {

namespace {

constexpr int kBlockPrefix = 30;
// The largest pool accepted (a /8 is 4 million sandboxes already).
constexpr int kMinPoolPrefix = 8;
constexpr uint32_t kBlockSize = 1u << (32 - kBlockPrefix);

uint32_t mask(int prefix)
{
	return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
}

in_addr toAddr(uint32_t hostOrder)
{
	in_addr a{};
	a.s_addr = htonl(hostOrder);
	return a;
}

std::string text(uint32_t hostOrder, int prefix)
{
	return toString(toAddr(hostOrder)) + "/" + std::to_string(prefix);
}

// Two networks overlap when the shorter prefix contains the other's start.
bool overlaps(uint32_t a, int aPrefix, uint32_t b, int bPrefix)
{
	uint32_t m = mask(std::min(aPrefix, bPrefix));
	return (a & m) == (b & m);
}

std::string interfaceName(int ifindex)
{
	char name[IF_NAMESIZE] = {};
	if (ifindex > 0 && ::if_indextoname(static_cast<unsigned>(ifindex), name))
		return name;
	return "ifindex " + std::to_string(ifindex);
}

// An IPv4 nl_addr as (host-order address, prefix); false for anything else.
bool ipv4Of(nl_addr *addr, uint32_t *out, int *prefix)
{
	if (!addr || nl_addr_get_family(addr) != AF_INET || nl_addr_get_len(addr) != 4)
		return false;
	uint32_t netOrder;
	std::memcpy(&netOrder, nl_addr_get_binary_addr(addr), 4);
	*out = ntohl(netOrder);
	*prefix = static_cast<int>(nl_addr_get_prefixlen(addr));
	return true;
}

} // namespace

std::string Block::toString() const
{
	return text(ntohl(network.s_addr), prefix);
}

Result<std::vector<HostNetwork>> readHostNetworks()
{
	auto sock = openRouteSocket();
	if (!sock)
		return fail(std::move(sock).error());
	std::vector<HostNetwork> out;

	nl_cache *raw = nullptr;
	if (int err = rtnl_route_alloc_cache(sock->get(), AF_INET, 0, &raw); err < 0)
		return fail(netlinkError(err, "reading the host's routes"));
	NlCache routes(raw);
	for (nl_object *o = nl_cache_get_first(routes.get()); o; o = nl_cache_get_next(o)) {
		auto *route = reinterpret_cast<rtnl_route *>(o);
		uint32_t dst;
		int prefix;
		// The default route covers everything and shadows nothing: a
		// more specific sandbox route wins over it.
		if (!ipv4Of(rtnl_route_get_dst(route), &dst, &prefix) || prefix == 0)
			continue;
		std::string what = "route " + text(dst & mask(prefix), prefix);
		if (rtnl_route_get_nnexthops(route) > 0)
			what += " dev " + interfaceName(rtnl_route_nh_get_ifindex(rtnl_route_nexthop_n(route, 0)));
		out.push_back({dst & mask(prefix), prefix, std::move(what)});
	}

	raw = nullptr;
	if (int err = rtnl_addr_alloc_cache(sock->get(), &raw); err < 0)
		return fail(netlinkError(err, "reading the host's addresses"));
	NlCache addrs(raw);
	for (nl_object *o = nl_cache_get_first(addrs.get()); o; o = nl_cache_get_next(o)) {
		auto *addr = reinterpret_cast<rtnl_addr *>(o);
		uint32_t local;
		int prefix;
		if (rtnl_addr_get_family(addr) != AF_INET || !ipv4Of(rtnl_addr_get_local(addr), &local, &prefix))
			continue;
		prefix = rtnl_addr_get_prefixlen(addr);
		std::string dev = interfaceName(rtnl_addr_get_ifindex(addr));
		// The address itself, and the network it is on.
		out.push_back({local, 32, "address " + text(local, 32) + " on " + dev});
		if (prefix > 0 && prefix < 32)
			out.push_back({local & mask(prefix), prefix, "address " + text(local, prefix) + " on " + dev});
		uint32_t peer;
		int peerPrefix;
		if (ipv4Of(rtnl_addr_get_peer(addr), &peer, &peerPrefix))
			out.push_back({peer, 32, "peer address " + text(peer, 32) + " on " + dev});
	}
	return out;
}

Result<AddressPool> AddressPool::create(std::string_view cidr)
{
	auto bad = [&](std::string why) {
		return fail(Error::fromErrno(EINVAL, "address pool \"" + std::string(cidr) + "\": " + why));
	};
	size_t slash = cidr.find('/');
	if (slash == std::string_view::npos)
		return bad("expected an IPv4 network like 10.201.0.0/16");
	std::string address(cidr.substr(0, slash));
	std::string_view prefixText = cidr.substr(slash + 1);
	in_addr a{};
	if (::inet_pton(AF_INET, address.c_str(), &a) != 1)
		return bad("not an IPv4 address: " + address);
	int prefix = -1;
	auto [end, ec] = std::from_chars(prefixText.data(), prefixText.data() + prefixText.size(), prefix);
	if (ec != std::errc() || end != prefixText.data() + prefixText.size() || prefix < 0 || prefix > 32)
		return bad("not a prefix length: " + std::string(prefixText));
	if (prefix > kBlockPrefix)
		return bad("too small: a sandbox needs a /30");
	if (prefix < kMinPoolPrefix)
		return bad("too large: at most a /" + std::to_string(kMinPoolPrefix));
	uint32_t base = ntohl(a.s_addr);
	if (base & ~mask(prefix))
		return bad("host bits are set (did you mean " + text(base & mask(prefix), prefix) + "?)");
	uint32_t blocks = uint32_t{1} << (kBlockPrefix - prefix);
	return AddressPool(text(base, prefix), base, blocks);
}

Result<Block> AddressPool::allocate()
{
	auto host = readHostNetworks();
	if (!host)
		return fail(std::move(host).error().wrap("allocating from address pool " + cidr_));
	return allocate(*host);
}

Result<Block> AddressPool::allocate(const std::vector<HostNetwork> &host)
{
	std::lock_guard lock(*mutex_);
	uint32_t shadowed = 0;
	const HostNetwork *firstShadow = nullptr;
	for (uint32_t i = 0; i < blockCount_; ++i) {
		uint32_t index = (next_ + i) % blockCount_;
		if (used_.count(index))
			continue;
		uint32_t network = base_ + index * kBlockSize;
		const HostNetwork *clash = nullptr;
		for (const auto &h : host) {
			if (overlaps(network, kBlockPrefix, h.network, h.prefix)) {
				clash = &h;
				break;
			}
		}
		if (clash) {
			++shadowed;
			if (!firstShadow)
				firstShadow = clash;
			continue;
		}
		used_.insert(index);
		next_ = (index + 1) % blockCount_;
		Block b;
		b.network = toAddr(network);
		b.host = toAddr(network + 1);
		b.sandbox = toAddr(network + 2);
		b.prefix = kBlockPrefix;
		return b;
	}
	std::string why;
	if (shadowed == 0)
		why = "address pool " + cidr_ + " is exhausted: all " + std::to_string(blockCount_) +
		      " /30 blocks are held by sandboxes";
	else if (used_.empty())
		why = "address pool " + cidr_ + " is entirely shadowed by host networks (e.g. " + firstShadow->what +
		      ")";
	else
		why = "address pool " + cidr_ + " has no free /30 block: " + std::to_string(used_.size()) +
		      " held by sandboxes, " + std::to_string(shadowed) + " overlapping host networks (e.g. " +
		      firstShadow->what + ")";
	return fail(Error::fromErrno(EADDRNOTAVAIL, why));
}

void AddressPool::release(const Block &block)
{
	std::lock_guard lock(*mutex_);
	uint32_t network = ntohl(block.network.s_addr);
	if (network < base_)
		return;
	uint32_t index = (network - base_) / kBlockSize;
	if (index < blockCount_ && base_ + index * kBlockSize == network)
		used_.erase(index);
}

} // namespace gvm::net
