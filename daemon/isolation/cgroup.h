// SPDX-License-Identifier: Apache-2.0
//
// The cgroup of a sandbox: the memory, pids and CPU limits of everything the
// agent runs, and the one place from which all of it can be killed.
//
// Which hierarchy is used is read from /proc/self/mountinfo, never assumed:
//
//   cgroup v2, when the unified hierarchy has the memory, pids and cpu
//   controllers. Under v2's "no internal processes" rule a cgroup that has
//   controllers enabled for its children holds no process itself, so gvmd
//   never puts sandboxes next to its own process:
//     - gvmd in a cgroup X other than the root (under systemd,
//       X = /system.slice/gvmd.service, which needs Delegate=yes so that X
//       has the controllers to hand down):
//         X/daemon              gvmd (and any process it forked before),
//                               moved there at the first create()
//         X/sandboxes           +memory +pids +cpu in subtree_control
//         X/sandboxes/<name>    one sandbox (also +memory +pids +cpu in
//                               X's subtree_control)
//       A gvmd that already sits in a cgroup named "daemon" takes its
//       parent as X, so the layout is found again after the move.
//     - gvmd in the root cgroup (no systemd, no cgroup namespace):
//         /gvm                  +memory +pids +cpu in subtree_control
//         /gvm/<name>           one sandbox
//
//   cgroup v1 otherwise, when memory, pids and cpu are each mounted:
//         <mount of C>/gvm/<name>   for each hierarchy C of memory, pids,
//                                   cpu, and of cpuacct and freezer when
//                                   mounted (co-mounted controllers share
//                                   one directory); `gvm` is made on demand
//                                   at the root of the hierarchy as mounted.
//
//   Otherwise create() and describeSupport() fail with ENOTSUP: "no cgroup
//   hierarchy with the pids controller is mounted; resource limits need
//   cgroup v2 or v1 pids+memory+cpu" (naming the missing controller).
//
// A sandbox name is its id, exactly 8 lower-case hex digits.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "policy/policy.h"

namespace gvm::isolation {

enum class CgroupVersion { V1, V2 };
const char *toString(CgroupVersion version); // "v1", "v2"

// The limits gvmd applies where the policy sets none. Memory defaults to
// MemTotal / kDefaultMemoryDivisor (half of the host's RAM); CPU has no
// default limit.
inline constexpr uint32_t kDefaultPidsLimit = 4096;
inline constexpr uint64_t kDefaultMemoryDivisor = 2;
// The CFS period a CPU limit is expressed in: cpuMillis / 1000 cores is a
// quota of cpuMillis * 100 µs per kCpuPeriodUsec. The kernel's smallest
// quota is 1 ms, so a limit below 10 millicores fails with EINVAL.
inline constexpr uint32_t kCpuPeriodUsec = 100000;
// How long destroy() waits for the killed processes to leave the cgroup.
inline constexpr std::chrono::milliseconds kCgroupDestroyTimeout{2000};

// The policy's limits with gvmd's defaults filled in (memory and pids are
// always set; cpuMillis only when the policy sets it).
policy::ResourceLimits effectiveLimits(const policy::ResourceLimits &limits);

// What a sandbox uses now, and its limits as the kernel reports them.
struct CgroupUsage {
	uint64_t memoryBytes = 0; // memory.current / memory.usage_in_bytes
	uint32_t pids = 0;        // pids.current: tasks, so threads count
	uint64_t cpuUsec = 0;     // cpu.stat usage_usec / cpuacct.usage; 0 when v1 has no cpuacct
	std::optional<uint64_t> memoryLimit; // absent: unlimited
	std::optional<uint32_t> pidsLimit;   // absent: unlimited
};

// The cgroup file systems of /proc/self/mountinfo.
struct CgroupMounts {
	struct Mount {
		std::string mountPoint; // e.g. "/sys/fs/cgroup/memory"
		std::string root;       // the cgroup mounted there, usually "/"
		std::vector<std::string> controllers; // v1 only: "memory", "cpu", ...
	};
	std::optional<Mount> unified; // the cgroup2 mount
	std::vector<Mount> v1;        // one per v1 hierarchy (the first mount of each)

	// The v1 hierarchy with this controller, or null.
	const Mount *v1With(std::string_view controller) const;
};

// Parses mountinfo text (proc(5): octal escapes in paths are decoded).
// Lines that are not cgroup mounts, or are malformed, are skipped.
CgroupMounts parseCgroupMounts(std::string_view mountinfo);

// One sandbox's cgroup (one directory per hierarchy on v1, one on v2).
// Owned by the sandbox it limits; created before the agent is started and
// destroyed after it has been reaped. Not thread-safe: one thread at a time
// uses an object, but objects of different sandboxes may be created and
// destroyed on different threads at once (the shared layout is set up under
// a process-wide lock).
class SandboxCgroup
{
public:
	// Creates the cgroup `name` (a sandbox id, [0-9a-f]{8}) and writes the
	// limits (effectiveLimits(limits)), then opens the cgroup.procs files
	// for procsFds(). All or nothing: on failure nothing it made is left.
	// The error names the file that failed ("writing 4294967295 to
	// /sys/fs/cgroup/pids/gvm/0a1b2c3d/pids.max: Invalid argument"). An
	// existing cgroup of the same name is EEXIST (see removeLeftovers()).
	// On v2, the first call may move gvmd itself (see the layout above).
	static Result<std::unique_ptr<SandboxCgroup>> create(std::string_view name,
							     const policy::ResourceLimits &limits);
	// destroy(), with its error dropped (libraries log nothing above Debug;
	// call destroy() first to see it).
	~SandboxCgroup();
	SandboxCgroup(const SandboxCgroup &) = delete;
	SandboxCgroup &operator=(const SandboxCgroup &) = delete;

	const std::string &name() const { return name_; }
	CgroupVersion version() const { return version_; }
	// The cgroup's directory in each hierarchy (one on v2).
	const std::vector<std::string> &directories() const { return dirs_; }

	// Each hierarchy's cgroup.procs, open O_WRONLY | O_CLOEXEC, for a child
	// to join with joinInChild() after fork()/clone3() and before execve().
	// The fds are opened by root, so the child joins while it still has
	// gvmd's credentials: before it switches uid, drops capabilities, or
	// loads seccomp and Landlock (Landlock does not check an already open
	// fd, but joining first keeps every step of the join root's). Empty
	// after destroy().
	const std::vector<UniqueFd> &procsFds() const { return procsFds_; }
	// Async-signal-safe: writes "0" (the writing process itself, even as
	// pid 1 of a new pid namespace) to each fd. Returns 0, or the errno of
	// the first write that failed (the caller should then not exec: the
	// agent would run unlimited).
	static int joinInChild(const int *fds, size_t count) noexcept;

	// Current usage and limits, read from the kernel.
	Result<CgroupUsage> usage() const;

	// Kills every process still in the cgroup (v2: cgroup.kill when the
	// kernel has it, else SIGKILL to each pid of cgroup.procs until it is
	// empty; v1: freeze with the freezer controller when mounted, SIGKILL
	// each pid, thaw, repeat until empty), waits up to
	// kCgroupDestroyTimeout for them to go, and removes the directories.
	// EBUSY when processes remain after the wait (e.g. stuck in the
	// kernel); then the directories stay and destroy() can be called
	// again. Idempotent.
	Result<void> destroy();

	// For gvmd's start-up: destroys (as destroy() does) every sandbox
	// cgroup in gvm's place of the layout whose name is not in `keep`,
	// e.g. those of an earlier gvmd that was killed. Only names of the form
	// [0-9a-f]{8} are touched. Returns one error per cgroup that could not
	// be removed, for the daemon to log; a host without a usable cgroup
	// hierarchy has nothing to remove. Does not move gvmd (on v2).
	static std::vector<Error> removeLeftovers(const std::vector<std::string> &keep);
	// The same for the named sandboxes only (those an earlier run of this
	// gvmd left behind; another gvmd's are not touched).
	static std::vector<Error> removeNamed(const std::vector<std::string> &names);

	// The hierarchy create() would use, for `gvmctl status`, e.g.
	// "cgroup v1 (memory, pids, cpu, cpuacct, freezer)" or "cgroup v2
	// (memory, pids, cpu) under /sys/fs/cgroup/system.slice/gvmd.service/
	// sandboxes"; the ENOTSUP error above when there is none. Changes
	// nothing.
	static Result<std::string> describeSupport();

private:
	SandboxCgroup() = default;
	static std::vector<Error> removeWhere(const std::function<bool(const std::string &)> &remove);

	std::string name_;
	CgroupVersion version_ = CgroupVersion::V2;
	std::vector<std::string> dirs_;
	// Where each controller's files are (empty when not mounted on v1).
	std::string memoryDir_, pidsDir_, cpuDir_, cpuacctDir_, freezerDir_;
	std::vector<UniqueFd> procsFds_;
	bool destroyed_ = false;
};

} // namespace gvm::isolation
