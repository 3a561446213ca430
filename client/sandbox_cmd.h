// SPDX-License-Identifier: Apache-2.0
//
// The pure parts of gvmctl ps and gvmctl pending, apart for testing.
#pragma once

#include <optional>
#include <string>

#include "common/json_rpc.h"

namespace gvm::client {

// The widest a COMMAND cell gets when stdout is not a terminal.
inline constexpr size_t kCommandColumnWidth = 40;
// The narrowest a COMMAND cell gets, however narrow the terminal.
inline constexpr size_t kMinCommandColumnWidth = 10;

// The `gvmctl ps` table for sandbox.list's "sandboxes" array: ID NAME UID
// POLICY MODE AGE STATE CONNS DECISIONS PENDING COMMAND. With a terminal
// width, COMMAND is cut so that lines fit it; without one, to
// kCommandColumnWidth characters.
std::string formatSandboxTable(const rpc::Json &sandboxes, std::optional<size_t> terminalWidth);

// The `gvmctl pending` table for hold.list's "pending" array: ID SANDBOX
// METHOD HOST PATH RULE EXPIRES-IN.
std::string formatPendingTable(const rpc::Json &pending);

} // namespace gvm::client
