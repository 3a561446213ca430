// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace gvm::net {

// Where sandbox networks take their addresses and where their worker listens.
// Plain value, read by gvmd at start from its options.
struct NetworkConfig {
	// IPv4 network split into /30 blocks, one per sandbox.
	std::string pool = "10.201.0.0/16";
	// The worker's port for redirected TCP (read SO_ORIGINAL_DST there).
	uint16_t transparentPort = 15001;
	// The worker's DNS port, UDP and TCP.
	uint16_t dnsPort = 15053;
};

// Host-side veth end of a sandbox: "gvm" + id; the sandbox end is created as
// "gvp" + id and renamed to kSandboxInterface inside the namespace.
inline constexpr std::string_view kHostInterfacePrefix = "gvm";
// The interface group of every sandbox's host end, set when the link is
// made: the host table matches sandboxes by it, so no other link (whatever
// its name) is redirected or cut off. "gvm" in ASCII.
inline constexpr uint32_t kHostInterfaceGroup = 0x67766d;
inline constexpr std::string_view kPeerInterfacePrefix = "gvp";
inline constexpr std::string_view kSandboxInterface = "eth0";
// The nftables table gvm owns, on the host and in every sandbox namespace.
inline constexpr std::string_view kTableName = "gvm";
// Named counter of what a sandbox tried to send and was dropped.
inline constexpr std::string_view kDroppedCounter = "dropped";
// Listen backlog of the worker's TCP listeners.
inline constexpr int kListenBacklog = 1024;
// Sandbox ids are this many lowercase hex digits.
inline constexpr size_t kSandboxIdLength = 8;

// True for exactly kSandboxIdLength lowercase hex digits. Interface names are
// built from ids, and crash recovery removes only names of that exact shape.
inline bool isSandboxId(std::string_view s)
{
	if (s.size() != kSandboxIdLength)
		return false;
	for (char c : s)
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	return true;
}

} // namespace gvm::net
