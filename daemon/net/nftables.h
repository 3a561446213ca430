// SPDX-License-Identifier: Apache-2.0
//
// gvm::net's use of libnftables: run a batch of nft commands in the calling
// thread's current network namespace, and the rulesets gvm installs. gvm
// never spawns the nft program.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"
#include "daemon/net/network_config.h"

namespace gvm::net {

// Runs `commands` (nft syntax, one atomic batch) in the network namespace
// the calling thread is in now; returns what nft printed (JSON if `json`).
// A failure carries nft's own error text.
Result<std::string> runNftables(const std::string &commands, bool json = false);

// The table of the host namespace, shared by every sandbox: redirects
// sandbox TCP to the worker's transparent port and DNS to its DNS port,
// admits nothing else from gvm interfaces, forwards nothing to or from them.
// Replaces any previous version of the table in the same batch.
std::string hostRuleset(const NetworkConfig &config);

// The table inside a sandbox namespace: lets out IPv4 TCP and DNS (towards
// the host, where the host table redirects them), drops and counts the rest.
std::string sandboxRuleset();

// Reads the packet count of the named counter of table `inet gvm` in the
// current namespace.
Result<uint64_t> readCounterPackets(std::string_view counter);

} // namespace gvm::net
