// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <sys/types.h>

#include "common/result.h"

namespace gvm::proxy {

// The user proxy workers run as, created by sysusers.d (systemd/gvm.sysusers).
inline constexpr char kWorkerUser[] = "gvm-proxy";
inline constexpr char kFallbackWorkerUser[] = "nobody";

struct WorkerIdentity {
	std::string user;
	uid_t uid = 0;
	gid_t gid = 0;
	bool fallback = false; // kWorkerUser is missing; running as nobody
};

// Looks up kWorkerUser, else kFallbackWorkerUser. Never root.
Result<WorkerIdentity> resolveWorkerIdentity();

// Confines the calling process for good, before it reads a single byte of
// agent traffic: empties the capability bounding set, switches to the
// identity (no supplementary groups), keeps no capabilities, sets
// no_new_privs and loads the worker's seccomp allow-list. Called in a
// single-threaded process; on error the process must exit. When not root
// (gvmd run unprivileged for development) only no_new_privs and seccomp
// apply.
Result<void> confineWorker(const WorkerIdentity &identity);

} // namespace gvm::proxy
