// SPDX-License-Identifier: Apache-2.0
//
// Reviewing what a sandbox's agent changed in its overlay workspace, and
// applying or discarding it: `gvmctl diff`, `gvmctl apply`, `gvmctl discard`.
//
// A sandbox with an overlay workspace leaves stateDir/sandboxes/<id>/ behind:
// the upper layer ("upper"), overlayfs's work directory ("work") and its
// record ("sandbox.json": owner, workspace, command). They outlive the
// sandbox until the user applies or discards the changes.
//
// The work on the caller's files runs in a child process of gvmd with the
// caller's identity: the upper layer is opened as root (it lives in gvmd's
// private state directory), the real workspace only after the switch, so a
// workspace path the caller may not open stays closed, and what apply
// writes belongs to the caller. Listing keeps CAP_SYS_ADMIN (overlayfs
// marks replaced directories with trusted.* attributes) but reads the
// workspace with the caller's file-system ids; apply drops root entirely.
// The calls block gvmd's loop while the child works; the child's output is
// bounded.
#pragma once

#include <cstdint>
#include <string>
#include <sys/types.h>
#include <vector>

#include "common/json_rpc.h"
#include "common/result.h"

namespace gvm::daemon {

// The most a review child may send back (patches included).
inline constexpr size_t kMaxReviewOutputBytes = 64 * 1024 * 1024;

struct SandboxRecord {
	std::string id;
	std::string name;
	uid_t uid = 0;
	gid_t gid = 0;
	std::string workspace;
	std::vector<std::string> command;
	std::string started; // RFC 3339
	bool ended = false;

	rpc::Json toJson() const;
};

Result<void> writeSandboxRecord(const std::string &stateDir, const SandboxRecord &record);
Result<SandboxRecord> readSandboxRecord(const std::string &stateDir, const std::string &id);
// Every record under stateDir/sandboxes (unreadable ones skipped).
std::vector<SandboxRecord> listSandboxRecords(const std::string &stateDir);

// Who the work runs as.
struct Reviewer {
	uid_t uid = 0;
	gid_t gid = 0;
	std::vector<gid_t> groups;
};

// {"changes": [{"path", "kind", "type", "target"?}], "patch": "..."?}
Result<rpc::Json> listWorkspaceChanges(const std::string &stateDir, const SandboxRecord &record,
				       const Reviewer &reviewer, bool withPatch);
// {"applied": [paths], "refused": [{"path", "reason"}]}; paths empty: all.
Result<rpc::Json> applyWorkspaceChanges(const std::string &stateDir, const SandboxRecord &record,
					const Reviewer &reviewer, const std::vector<std::string> &paths);
// Removes the sandbox's upper layer, work directory and record.
Result<void> discardWorkspaceChanges(const std::string &stateDir, const std::string &id);
// Whether the upper layer holds anything.
bool hasPendingChanges(const std::string &stateDir, const std::string &id);

} // namespace gvm::daemon
