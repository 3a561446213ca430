// SPDX-License-Identifier: Apache-2.0
#include "daemon/net/nftables.h"

#include <nftables/libnftables.h>
#include <nlohmann/json.hpp>

#include "common/c_ptr.h"

namespace gvm::net {

namespace {

using NftContext = CPtr<nft_ctx, nft_ctx_free>;

std::string trimmed(const char *text)
{
	std::string s = text ? text : "";
	while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
		s.pop_back();
	return s;
}

} // namespace

Result<std::string> runNftables(const std::string &commands, bool json)
{
	// The context's netlink socket belongs to the namespace the thread is
	// in while it is made and used; it lives only for this call.
	NftContext ctx(nft_ctx_new(NFT_CTX_DEFAULT));
	if (!ctx)
		return fail(Error::internal("creating a libnftables context"));
	if (nft_ctx_buffer_output(ctx.get()) != 0 || nft_ctx_buffer_error(ctx.get()) != 0)
		return fail(Error::internal("buffering libnftables output"));
	if (json)
		nft_ctx_output_set_flags(ctx.get(), nft_ctx_output_get_flags(ctx.get()) | NFT_CTX_OUTPUT_JSON);
	if (nft_run_cmd_from_buffer(ctx.get(), commands.c_str()) != 0) {
		std::string why = trimmed(nft_ctx_get_error_buffer(ctx.get()));
		return fail(Error::internal("nftables: " + (why.empty() ? std::string("command failed") : why)));
	}
	const char *out = nft_ctx_get_output_buffer(ctx.get());
	return std::string(out ? out : "");
}

std::string hostRuleset(const NetworkConfig &config)
{
	const std::string transparent = std::to_string(config.transparentPort);
	const std::string dns = std::to_string(config.dnsPort);
	const std::string table = std::string(kTableName);
	const std::string counter = std::string(kDroppedCounter);
	// Sandboxes are the links in gvm's interface group (their names,
	// gvm<id>, are not matched: another link may share the prefix).
	const std::string group = std::to_string(kHostInterfaceGroup);
	// "add" then "delete" makes the delete succeed whether or not the table
	// existed; the whole batch is one transaction, so the old table is
	// replaced atomically.
	return "add table inet " + table + "\n"
	       "delete table inet " + table + "\n"
	       "table inet " + table + " {\n"
	       "  counter " + counter + " {}\n"
	       // Redirect (DNAT to the incoming interface's primary address,
	       // the host end of that sandbox's veth) happens here, in the host
	       // namespace, so the worker's conntrack entry keeps the original
	       // destination for SO_ORIGINAL_DST.
	       "  chain prerouting {\n"
	       "    type nat hook prerouting priority dstnat; policy accept;\n"
	       "    iifgroup " + group + " meta nfproto ipv4 udp dport 53 redirect to :" + dns + "\n"
	       "    iifgroup " + group + " meta nfproto ipv4 tcp dport 53 redirect to :" + dns + "\n"
	       "    iifgroup " + group + " meta nfproto ipv4 meta l4proto tcp redirect to :" + transparent + "\n"
	       "  }\n"
	       // From a sandbox, only the worker's ports are reachable on the
	       // host (after the redirect, so this also closes every other host
	       // service reachable through the veth address).
	       "  chain input {\n"
	       "    type filter hook input priority filter - 1; policy accept;\n"
	       "    iifgroup != " + group + " accept\n"
	       "    meta nfproto ipv6 counter name \"" + counter + "\" drop\n"
	       "    ct state established,related accept\n"
	       "    meta nfproto ipv4 tcp dport { " + transparent + ", " + dns + " } accept\n"
	       "    meta nfproto ipv4 udp dport " + dns + " accept\n"
	       "    counter name \"" + counter + "\" drop\n"
	       "  }\n"
	       // Nothing is routed to or from a sandbox, even with ip_forward=1.
	       "  chain forward {\n"
	       "    type filter hook forward priority filter - 1; policy accept;\n"
	       "    iifgroup " + group + " counter name \"" + counter + "\" drop\n"
	       "    oifgroup " + group + " counter name \"" + counter + "\" drop\n"
	       "  }\n"
	       "}\n";
}

std::string sandboxRuleset()
{
	const std::string table = std::string(kTableName);
	const std::string counter = std::string(kDroppedCounter);
	return "add table inet " + table + "\n"
	       "delete table inet " + table + "\n"
	       "table inet " + table + " {\n"
	       "  counter " + counter + " {}\n"
	       "  counter dropped_input {}\n"
	       // What the agent may send: IPv4 TCP anywhere and DNS. Both leave
	       // through eth0 to the host, whose table redirects them to the
	       // worker. IPv6, ICMP and other UDP (QUIC, DoT, tunnels) are
	       // dropped and counted.
	       "  chain output {\n"
	       "    type filter hook output priority filter; policy drop;\n"
	       "    oif \"lo\" accept\n"
	       "    meta nfproto ipv6 counter name \"" + counter + "\" drop\n"
	       "    meta nfproto ipv4 meta l4proto tcp accept\n"
	       "    meta nfproto ipv4 udp dport 53 accept\n"
	       "    counter name \"" + counter + "\" drop\n"
	       "  }\n"
	       // What reaches the agent: TCP segments other than a
	       // connection request (a SYN without ACK), DNS answers and
	       // ICMP errors; the rest is dropped and counted. Decided
	       // without connection tracking, so the namespace runs none:
	       // only the host is at the other end of eth0, as nothing is
	       // routed to or from a sandbox.
	       "  chain input {\n"
	       "    type filter hook input priority filter; policy drop;\n"
	       "    iif \"lo\" accept\n"
	       "    meta nfproto ipv4 tcp flags & (syn | ack) != syn accept\n"
	       "    meta nfproto ipv4 udp sport 53 accept\n"
	       "    meta nfproto ipv4 icmp type { destination-unreachable, time-exceeded, parameter-problem } accept\n"
	       "    counter name \"dropped_input\" drop\n"
	       "  }\n"
	       "}\n";
}

Result<uint64_t> readCounterPackets(std::string_view counter)
{
	auto out = runNftables("list counter inet " + std::string(kTableName) + " " + std::string(counter), true);
	if (!out)
		return fail(std::move(out).error().wrap("reading counter " + std::string(counter)));
	auto doc = nlohmann::json::parse(*out, nullptr, false);
	if (doc.is_discarded() || !doc.is_object() || !doc.contains("nftables") || !doc["nftables"].is_array())
		return fail(Error::internal("reading counter " + std::string(counter) + ": unexpected nft output"));
	for (const auto &item : doc["nftables"]) {
		if (!item.is_object() || !item.contains("counter"))
			continue;
		const auto &c = item["counter"];
		if (c.is_object() && c.contains("packets") && c["packets"].is_number_unsigned())
			return c["packets"].get<uint64_t>();
	}
	return fail(Error::internal("reading counter " + std::string(counter) + ": no packet count in nft output"));
}

} // namespace gvm::net
