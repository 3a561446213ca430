// SPDX-License-Identifier: Apache-2.0
//
// Small libnl-route helpers for gvm::net: owners for libnl handles and the
// few link, address and route operations sandbox networks need. Every
// operation goes through the socket it is given, so it acts on the network
// namespace that socket was opened in, whatever namespace the calling thread
// is in now.
#pragma once

#include <netinet/in.h>
#include <string>
#include <string_view>

#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>

#include "common/c_ptr.h"
#include "common/result.h"

namespace gvm::net {

using NlSocket = CPtr<nl_sock, nl_socket_free>;
using NlCache = CPtr<nl_cache, nl_cache_free>;
using NlAddr = CPtr<nl_addr, nl_addr_put>;
using RtnlLink = CPtr<rtnl_link, rtnl_link_put>;
using RtnlAddr = CPtr<rtnl_addr, rtnl_addr_put>;
using RtnlRoute = CPtr<rtnl_route, rtnl_route_put>;

// A libnl failure (negative or positive NLE_* code): the domain is Netlink
// and the context ends with libnl's text for the code, since NLE_* is not
// errno and Error::message() cannot render it.
Error netlinkError(int err, std::string_view what);

// A NETLINK_ROUTE socket bound to the calling thread's network namespace at
// the time of the call; it stays bound there.
Result<NlSocket> openRouteSocket();

// The kernel's view of the link named `name`.
Result<RtnlLink> getLink(nl_sock *sock, const std::string &name);

// Creates a veth pair `name` <-> `peer` in the socket's namespace, `name`
// in interface group `group` from the start; fails if either name exists.
Result<void> createVethPair(nl_sock *sock, const std::string &name, uint32_t group, const std::string &peer);
// Deletes a link (a veth's peer goes with it).
Result<void> deleteLink(nl_sock *sock, const std::string &name);
Result<void> setLinkUp(nl_sock *sock, const std::string &name);
Result<void> renameLink(nl_sock *sock, const std::string &name, const std::string &newName);
// Moves a link of the socket's namespace into the namespace behind nsFd.
Result<void> moveLinkToNamespace(nl_sock *sock, const std::string &name, int nsFd);
Result<void> addIpv4Address(nl_sock *sock, const std::string &name, in_addr address, int prefix);
// Adds "default via gateway dev name" to the main table.
Result<void> addDefaultRoute(nl_sock *sock, const std::string &name, in_addr gateway);

// Dotted quad of an address in network byte order.
std::string toString(in_addr address);

} // namespace gvm::net
