// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <linux/filter.h>
#include <span>
#include <utility>
#include <vector>

#include "common/result.h"
#include "policy/policy.h"

namespace gvm::isolation {

// The agent's seccomp filter: a deny-list over an ALLOW default that keeps
// the agent's tools (shells, compilers, interpreters, package managers)
// working while closing the kernel interfaces a sandbox escape or a host
// attack goes through: ptrace and cross-process memory access, mounts and
// file handles, new namespaces, BPF, perf, kernel modules, kexec, keyrings,
// userfaultfd, io_uring, and raw, packet, vsock, bluetooth, PF_KEY and
// (non-route) netlink sockets. A denied call fails with EPERM, never kills,
// so a tool degrades gracefully (clone3 fails with ENOSYS instead, so that
// libc falls back to clone, whose flags the filter can read). Calls through
// another ABI than native x86_64 (the i386 `int $0x80` entry, x32 numbers)
// fail with EPERM as a whole.
//
// Built once by gvmd with libseccomp for a sandbox's SyscallPolicy, then
// immutable: the exported classic BPF program is kept in memory, so the
// agent's child process can load it after a raw clone3 in the multithreaded
// daemon without allocating or calling into libseccomp. Copyable and
// movable; loadInChild() may be called from any thread or forked child.
class AgentSeccompFilter
{
public:
	// Builds the filter, relaxing the groups the policy allows.
	static Result<AgentSeccompFilter> build(policy::SyscallPolicy policy);

	// Installs the filter on the calling thread (and everything it later
	// starts or executes). Async-signal-safe: one seccomp(2) system call,
	// no allocation, no libc state beyond errno. Requires no_new_privs
	// (PR_SET_NO_NEW_PRIVS) or CAP_SYS_ADMIN in the caller's user
	// namespace. The filter denies mount, setns, unshare...: call it as the
	// last confinement step, just before execve. Returns 0 or an errno
	// value.
	int loadInChild() const noexcept;

	// The number of BPF instructions (at most BPF_MAXINSNS).
	size_t instructionCount() const { return program_.size(); }
	// The exported program, e.g. to inspect it in tests.
	std::span<const sock_filter> program() const { return program_; }
	const policy::SyscallPolicy &policy() const { return policy_; }

private:
	AgentSeccompFilter(policy::SyscallPolicy policy, std::vector<sock_filter> program)
		: policy_(policy), program_(std::move(program))
	{
	}

	policy::SyscallPolicy policy_;
	std::vector<sock_filter> program_;
};

} // namespace gvm::isolation
