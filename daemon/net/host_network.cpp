// SPDX-License-Identifier: Apache-2.0
#include "daemon/net/host_network.h"

#include <cstring>

#include "common/log.h"
#include "daemon/net/netlink.h"
#include "daemon/net/nftables.h"

namespace gvm::net {

Result<void> installHostTable(const NetworkConfig &config)
{
	auto r = runNftables(hostRuleset(config));
	if (!r)
		return fail(std::move(r).error().wrap("installing the host nftables table inet " +
						      std::string(kTableName)));
	return {};
}

Result<void> removeHostTable()
{
	const std::string table = std::string(kTableName);
	auto r = runNftables("add table inet " + table + "\ndelete table inet " + table + "\n");
	if (!r)
		return fail(std::move(r).error().wrap("removing the host nftables table inet " + table));
	return {};
}

Result<std::vector<std::string>> cleanupLeftovers()
{
	return cleanupLeftovers([](const std::string &) { return false; });
}

Result<std::vector<std::string>> cleanupLeftovers(const std::function<bool(const std::string &id)> &keep)
{
	auto sock = openRouteSocket();
	if (!sock)
		return fail(std::move(sock).error().wrap("cleaning up leftover links"));
	nl_cache *raw = nullptr;
	if (int err = rtnl_link_alloc_cache(sock->get(), AF_UNSPEC, &raw); err < 0)
		return fail(netlinkError(err, "cleaning up leftover links: listing links"));
	NlCache links(raw);

	// Host ends first: deleting one takes its peer along, wherever it is.
	std::vector<std::string> candidates;
	for (std::string_view prefix : {kHostInterfacePrefix, kPeerInterfacePrefix}) {
		for (nl_object *o = nl_cache_get_first(links.get()); o; o = nl_cache_get_next(o)) {
			auto *link = reinterpret_cast<rtnl_link *>(o);
			const char *name = rtnl_link_get_name(link);
			const char *type = rtnl_link_get_type(link);
			if (!name || !type || std::strcmp(type, "veth") != 0)
				continue;
			std::string_view n(name);
			if (n.substr(0, prefix.size()) != prefix || !isSandboxId(n.substr(prefix.size())))
				continue;
			if (keep && keep(std::string(n.substr(prefix.size()))))
				continue;
			candidates.emplace_back(n);
		}
	}

	std::vector<std::string> removed;
	for (const auto &name : candidates) {
		auto r = deleteLink(sock->get(), name);
		if (r) {
			removed.push_back(name);
			continue;
		}
		// A peer already gone with its host end is not a failure.
		if (r.error().code() != NLE_OBJ_NOTFOUND && r.error().code() != NLE_NODEV)
			GVM_LOG(Net, Debug) << "cleanup: " << r.error().message() << ", ignoring";
	}
	return removed;
}

} // namespace gvm::net
