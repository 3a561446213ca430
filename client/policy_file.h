// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <optional>
#include <ostream>
#include <string>

#include "common/result.h"
#include "policy/policy.h"

namespace gvm::client {

// Reads a whole (small) file as the user running gvmctl: gvmd never opens
// a path a client names. `what` names the file in errors ("policy file").
// Files larger than rpc::kMaxMessageBytes could never be sent and are
// refused.
Result<std::string> readTextFile(const std::string &path, const std::string &what);

// A policy as gvmctl sends it to gvmd: the path as given, the exact text
// read, and the engine it loaded into locally.
struct LocalPolicy {
	std::string path;
	std::string text;
	std::shared_ptr<const policy::Engine> engine;
};

// Reads and checks a policy before gvmd is asked anything. On failure,
// prints the reason (or every FILE:LINE:COLUMN diagnostic) to `err` and
// returns nullopt: the command then exits 1.
std::optional<LocalPolicy> loadLocalPolicy(const std::string &path, std::ostream &err);

} // namespace gvm::client
