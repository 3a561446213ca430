// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace gvm::isolation {

// The Landlock ABI version the running kernel supports; 0 when Landlock is
// not built in or disabled at boot. One syscall, no allocation: may be called
// anywhere, including in a freshly cloned child.
int landlockAbi();

// The newest ABI whose filesystem rights gvm uses (3: TRUNCATE). Newer ABIs
// add IOCTL_DEV (5), which would break ttys, network rights (4) and scopes
// (6), which gvm leaves to the network namespace and seccomp.
constexpr int kLandlockMaxAbi = 3;

// Bound on the rules one plan may hold: expanding a directory around a hidden
// path adds one rule per entry, and a directory with more entries than this
// (a huge home) makes build() fail instead of slowing every agent start.
constexpr size_t kMaxLandlockRules = 4096;

// What the agent may reach in the filesystem, by absolute path as both the
// host and the agent's mount namespace name it. Relative paths are an error;
// every path is resolved with realpath() at build time, and paths that do
// not exist then are skipped.
struct LandlockView {
	// Read and execute, hierarchical (e.g. "/").
	std::vector<std::string> readOnly;
	// Everything but making devices: read, execute, write, truncate, create
	// and remove files, directories, sockets, fifos and symlinks, and move
	// entries in and out (REFER), hierarchical (workspace, /tmp, /dev/shm).
	std::vector<std::string> readWrite;
	// Read and write existing files and devices (and list directories),
	// hierarchical, nothing created or removed (e.g. "/dev/null", "/dev/tty",
	// "/dev/pts", "/proc").
	std::vector<std::string> writableFiles;
	// No access at all, even inside the trees above; wins over every other
	// list (a root at or under a hidden path is dropped).
	std::vector<std::string> hidden;
	// Read-write, hierarchical, not expanded around hidden paths, and
	// granted only when the path is an overlayfs mount in the child's
	// view: a private layer that hides its secrets itself (whiteouts).
	// Should the layer be missing, the rule is skipped and the path keeps
	// whatever the lists above give it (hidden paths closed).
	std::vector<std::string> overlayReadWrite;
};

// The Landlock ruleset that confines an agent's filesystem access: a second,
// independent layer behind its mount namespace, so a hidden path stays
// unreadable even if the mount that masks it is missing.
//
// Landlock only grants, and a rule on a directory covers its whole subtree.
// So "everything under a root except a hidden path" is built by expansion:
// each directory on the way from the root down to a hidden path gets only
// READ_DIR, and each of its other entries gets the root's rights (expanded
// again if another hidden path lies below it). Consequences:
//  - The names (and stat metadata) of entries in and under a hidden
//    directory can still be listed, since READ_DIR is hierarchical; no file
//    in it can be opened for reading, writing or executing.
//  - Nothing can be created, removed or renamed directly in a directory on
//    the way to a hidden path, even inside a readWrite tree: a new entry
//    there would only have the directory's rights, and granting it file
//    rights would grant them to the hidden path too. Its other entries keep
//    their full rights (e.g. with workspace/.env hidden, workspace/src/new
//    can be created, but workspace/new cannot).
//  - Symlinks get no rule: Landlock checks the resolved path, so a link to a
//    hidden path does not reach it, and a link elsewhere reaches whatever
//    the target's own rules allow.
//  - Below ABI 3 truncate(2) is not restricted; below ABI 2 every rename or
//    link across directories fails with EXDEV.
//
// Built in the parent (it lists directories and allocates), applied in the
// agent's child process right before execve, where applyInChild() only
// reads the plan. Immutable after build; a default plan applies nothing.
class LandlockPlan
{
public:
	// One landlock_add_rule(): a path and the rights granted beneath it,
	// already limited to file rights for a non-directory.
	struct Rule {
		std::string path;
		uint64_t access;
		bool overlayOnly = false; // see LandlockView::overlayReadWrite
	};

	// Resolves the view into rules for ABI min(abi, kLandlockMaxAbi),
	// listing directories and lstat()ing entries in the caller's (host)
	// view, never following a symlink in the expansion. Fails when a path
	// is relative, a path on the way to a hidden one cannot be examined
	// (failing closed rather than leaving its siblings unconfined), or the
	// rules exceed kMaxLandlockRules. With abi <= 0 the plan is empty.
	static Result<LandlockPlan> build(const LandlockView &view, int abi);

	// In the child, after the mount namespace is in its final shape (rules
	// attach to the inodes the paths name at this moment: a mount made
	// afterwards hides them) and after no_new_privs is set (the kernel
	// refuses otherwise unless the caller has CAP_SYS_ADMIN). Creates the
	// ruleset, adds each rule, and restricts the calling thread and all its
	// future children. A rule whose path the child cannot reach (ENOENT,
	// ENOTDIR, EACCES, ELOOP) is skipped: skipping a grant only denies more.
	// Async-signal-safe: no allocation, no locks, no stdio. Returns 0 or
	// an errno value; with an empty plan (abi 0) does nothing and returns 0.
	int applyInChild() const noexcept;

	// The ABI the rules are written for (0: none, apply does nothing).
	int abi() const { return abi_; }
	// The rights the ruleset handles: anything in it not granted by a rule
	// is denied.
	uint64_t handledAccess() const { return handled_; }
	size_t ruleCount() const { return rules_.size(); }
	const std::vector<Rule> &rules() const { return rules_; }

private:
	int abi_ = 0;
	uint64_t handled_ = 0;
	std::vector<Rule> rules_;
};

} // namespace gvm::isolation
