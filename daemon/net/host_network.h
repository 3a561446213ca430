// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/result.h"
#include "daemon/net/network_config.h"

namespace gvm::net {

// The host side of every sandbox network, called by gvmd from its loop
// thread in the host network namespace.

// Installs (or replaces, atomically) the host table `inet gvm`: TCP from any
// gvm<id> interface is redirected to the worker's transparent port on that
// interface's address, DNS (UDP and TCP 53) to its DNS port; only those
// ports are reachable on the host from a sandbox, and nothing is forwarded
// to or from one.
Result<void> installHostTable(const NetworkConfig &config);
// Removes the host table; no error if it is not there.
Result<void> removeHostTable();

// Crash recovery: deletes veth links named exactly "gvm" or "gvp" + a
// sandbox id (8 lowercase hex), never any other name that merely starts
// with gvm. Links whose id `keep` accepts are left alone (the sandboxes gvmd
// still runs). Returns the names it deleted; failures to delete one link are
// logged (debug) and skipped.
Result<std::vector<std::string>> cleanupLeftovers(const std::function<bool(const std::string &id)> &keep);
Result<std::vector<std::string>> cleanupLeftovers();

} // namespace gvm::net
