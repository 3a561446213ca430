// SPDX-License-Identifier: Apache-2.0
#include "daemon/net/netlink.h"

#include <arpa/inet.h>
#include <linux/rtnetlink.h>
#include <net/if.h>

#include <netlink/netlink.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/nexthop.h>

namespace gvm::net {

Error netlinkError(int err, std::string_view what)
{
	int code = err < 0 ? -err : err;
	std::string context(what);
	context += ": ";
	context += nl_geterror(code);
	return Error(ErrorDomain::Netlink, code, std::move(context));
}

Result<NlSocket> openRouteSocket()
{
	NlSocket sock(nl_socket_alloc());
	if (!sock)
		return fail(netlinkError(NLE_NOMEM, "allocating a netlink socket"));
	// libnl opens the socket SOCK_CLOEXEC.
	if (int err = nl_connect(sock.get(), NETLINK_ROUTE); err < 0)
		return fail(netlinkError(err, "connecting a NETLINK_ROUTE socket"));
	return sock;
}

Result<RtnlLink> getLink(nl_sock *sock, const std::string &name)
{
	rtnl_link *link = nullptr;
	if (int err = rtnl_link_get_kernel(sock, 0, name.c_str(), &link); err < 0)
		return fail(netlinkError(err, "looking up link " + name));
	return RtnlLink(link);
}

Result<void> createVethPair(nl_sock *sock, const std::string &name, uint32_t group, const std::string &peer)
{
	RtnlLink link(rtnl_link_veth_alloc());
	if (!link)
		return fail(netlinkError(NLE_NOMEM, "allocating a veth link"));
	RtnlLink peerLink(rtnl_link_veth_get_peer(link.get()));
	rtnl_link_set_name(link.get(), name.c_str());
	rtnl_link_set_group(link.get(), group);
	rtnl_link_set_name(peerLink.get(), peer.c_str());
	if (int err = rtnl_link_add(sock, link.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0)
		return fail(netlinkError(err, "creating veth pair " + name + "/" + peer));
	return {};
}

Result<void> deleteLink(nl_sock *sock, const std::string &name)
{
	RtnlLink link(rtnl_link_alloc());
	if (!link)
		return fail(netlinkError(NLE_NOMEM, "allocating a link"));
	rtnl_link_set_name(link.get(), name.c_str());
	if (int err = rtnl_link_delete(sock, link.get()); err < 0)
		return fail(netlinkError(err, "deleting link " + name));
	return {};
}

namespace {

// Applies `change` to the link named `name`.
Result<void> changeLink(nl_sock *sock, const std::string &name, rtnl_link *change, std::string_view what)
{
	auto orig = getLink(sock, name);
	if (!orig)
		return fail(std::move(orig).error().wrap(what));
	if (int err = rtnl_link_change(sock, orig->get(), change, 0); err < 0)
		return fail(netlinkError(err, what));
	return {};
}

} // namespace

Result<void> setLinkUp(nl_sock *sock, const std::string &name)
{
	RtnlLink change(rtnl_link_alloc());
	if (!change)
		return fail(netlinkError(NLE_NOMEM, "allocating a link"));
	rtnl_link_set_flags(change.get(), IFF_UP);
	return changeLink(sock, name, change.get(), "setting " + name + " up");
}

Result<void> renameLink(nl_sock *sock, const std::string &name, const std::string &newName)
{
	RtnlLink change(rtnl_link_alloc());
	if (!change)
		return fail(netlinkError(NLE_NOMEM, "allocating a link"));
	rtnl_link_set_name(change.get(), newName.c_str());
	return changeLink(sock, name, change.get(), "renaming " + name + " to " + newName);
}

Result<void> moveLinkToNamespace(nl_sock *sock, const std::string &name, int nsFd)
{
	RtnlLink change(rtnl_link_alloc());
	if (!change)
		return fail(netlinkError(NLE_NOMEM, "allocating a link"));
	rtnl_link_set_ns_fd(change.get(), nsFd);
	return changeLink(sock, name, change.get(), "moving " + name + " to another network namespace");
}

Result<void> addIpv4Address(nl_sock *sock, const std::string &name, in_addr address, int prefix)
{
	std::string what = "adding " + toString(address) + "/" + std::to_string(prefix) + " to " + name;
	auto link = getLink(sock, name);
	if (!link)
		return fail(std::move(link).error().wrap(what));
	NlAddr local(nl_addr_build(AF_INET, &address, sizeof(address)));
	RtnlAddr addr(rtnl_addr_alloc());
	if (!local || !addr)
		return fail(netlinkError(NLE_NOMEM, what));
	nl_addr_set_prefixlen(local.get(), prefix);
	rtnl_addr_set_ifindex(addr.get(), rtnl_link_get_ifindex(link->get()));
	if (int err = rtnl_addr_set_local(addr.get(), local.get()); err < 0)
		return fail(netlinkError(err, what));
	rtnl_addr_set_prefixlen(addr.get(), prefix);
	if (int err = rtnl_addr_add(sock, addr.get(), 0); err < 0)
		return fail(netlinkError(err, what));
	return {};
}

Result<void> addDefaultRoute(nl_sock *sock, const std::string &name, in_addr gateway)
{
	std::string what = "adding default route via " + toString(gateway) + " dev " + name;
	auto link = getLink(sock, name);
	if (!link)
		return fail(std::move(link).error().wrap(what));
	in_addr any{};
	NlAddr dst(nl_addr_build(AF_INET, &any, sizeof(any)));
	NlAddr gw(nl_addr_build(AF_INET, &gateway, sizeof(gateway)));
	RtnlRoute route(rtnl_route_alloc());
	if (!dst || !gw || !route)
		return fail(netlinkError(NLE_NOMEM, what));
	nl_addr_set_prefixlen(dst.get(), 0);
	rtnl_route_set_family(route.get(), AF_INET);
	rtnl_route_set_table(route.get(), RT_TABLE_MAIN);
	rtnl_route_set_scope(route.get(), RT_SCOPE_UNIVERSE);
	rtnl_route_set_protocol(route.get(), RTPROT_STATIC);
	if (int err = rtnl_route_set_dst(route.get(), dst.get()); err < 0)
		return fail(netlinkError(err, what));
	rtnl_nexthop *nh = rtnl_route_nh_alloc();
	if (!nh)
		return fail(netlinkError(NLE_NOMEM, what));
	rtnl_route_nh_set_ifindex(nh, rtnl_link_get_ifindex(link->get()));
	rtnl_route_nh_set_gateway(nh, gw.get());
	// The route owns the next hop from here on.
	rtnl_route_add_nexthop(route.get(), nh);
	if (int err = rtnl_route_add(sock, route.get(), NLM_F_EXCL); err < 0)
		return fail(netlinkError(err, what));
	return {};
}

std::string toString(in_addr address)
{
	char buf[INET_ADDRSTRLEN] = {};
	::inet_ntop(AF_INET, &address, buf, sizeof(buf));
	return buf;
}

} // namespace gvm::net
