// SPDX-License-Identifier: Apache-2.0
#include "daemon/isolation/agent_seccomp.h"

#include <cerrno>
#include <initializer_list>
#include <linux/seccomp.h>
#include <sched.h>
#include <string>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/netlink.h>
#include <seccomp.h>

#include "common/c_ptr.h"
#include "common/unique_fd.h"

namespace gvm::isolation {

namespace {

using SeccompContext = CPtr<void, seccomp_release>;

// Every denied call fails like an unprivileged attempt would, so tools
// report "Operation not permitted" and carry on without the feature.
constexpr uint32_t kDeny = SCMP_ACT_ERRNO(EPERM);

// Always denied: interfaces an agent's tools do not need and that either
// reach far into the kernel (a large attack surface) or act on the host as
// a whole.
constexpr const char *kDeniedSyscalls[] = {
	// Mounts and the new mount API: re-mounting or unmounting could undo
	// the sandbox's file-system view (hidden paths, read-only host).
	"mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
	"fspick", "mount_setattr",
	// File handles open any inode of a file system by number, past the
	// mount view and Landlock path rules (the "shocker" escape).
	"open_by_handle_at", "name_to_handle_at",
	// eBPF programs and perf events: large kernel attack surface and a
	// view of the whole machine.
	"bpf", "perf_event_open",
	// Replacing or extending the kernel.
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	// Kernel keyrings are not namespaced: keys could leak between
	// sandboxes or from the host.
	"keyctl", "add_key", "request_key",
	// userfaultfd stalls kernel accesses to user memory at will, the
	// building block of many kernel race exploits.
	"userfaultfd",
	// Host-wide administration.
	"acct", "swapon", "swapoff", "reboot", "quotactl", "quotactl_fd", "lookup_dcookie",
	// Direct I/O port access.
	"iopl", "ioperm",
};

// SyscallGroup::Ptrace: reading or changing another process (the agent's
// own children included) by debugging it or copying its memory or fds.
constexpr const char *kPtraceSyscalls[] = {
	"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
};

// SyscallGroup::IoUring: io_uring performs system calls the filter never
// sees, and has been a rich source of kernel bugs.
constexpr const char *kIoUringSyscalls[] = {
	"io_uring_setup", "io_uring_enter", "io_uring_register",
};

// The namespace flags clone() takes. CLONE_NEWTIME (0x80) is absent on
// purpose: in clone() that bit belongs to the exit-signal byte (CSIGNAL),
// and the kernel only creates time namespaces through unshare() and
// clone3(), both denied whole.
constexpr uint64_t kCloneNamespaceFlags[] = {
	CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP,
};

// Socket families with no use in an agent's sandbox: raw link-layer access,
// host-VM channels, bluetooth and IPsec key management.
constexpr int kDeniedSocketFamilies[] = {AF_PACKET, AF_VSOCK, AF_BLUETOOTH, AF_KEY};

// The socket type without SOCK_NONBLOCK / SOCK_CLOEXEC (the kernel's
// SOCK_TYPE_MASK).
constexpr uint64_t kSocketTypeMask = 0xf;

// The low 32 bits of an argument. The kernel reads int arguments (socket
// family, type, protocol; clone flags) from the low half of the register
// only: an equality test on all 64 bits would let a caller slip past a rule
// by setting high bits the kernel ignores. A masked test does not.
constexpr uint64_t kLow32 = 0xffffffff;

scmp_arg_cmp low32Equals(unsigned arg, uint32_t value)
{
	return scmp_arg_cmp{arg, SCMP_CMP_MASKED_EQ, kLow32, value};
}

// The flag `bit` is set in the argument.
scmp_arg_cmp bitSet(unsigned arg, uint64_t bit)
{
	return scmp_arg_cmp{arg, SCMP_CMP_MASKED_EQ, bit, bit};
}

// Adds one rule: `action` for the named syscall when all `args` hold.
Result<void> addRule(scmp_filter_ctx ctx, uint32_t action, const char *name,
		     std::initializer_list<scmp_arg_cmp> args = {})
{
	int nr = seccomp_syscall_resolve_name(name);
	if (nr == __NR_SCMP_ERROR)
		return fail(Error::fromErrno(ENOSYS, std::string("seccomp does not know syscall ") + name));
	int r = seccomp_rule_add_array(ctx, action, nr, static_cast<unsigned>(args.size()), args.begin());
	if (r < 0)
		return fail(Error::fromErrno(-r, std::string("adding a seccomp rule for ") + name));
	return {};
}

Result<void> addRules(scmp_filter_ctx ctx, policy::SyscallPolicy policy)
{
	using policy::SyscallGroup;

	for (const char *name : kDeniedSyscalls)
		GVM_TRY_VOID(addRule(ctx, kDeny, name), "denying a host interface");

	if (!policy.allows(SyscallGroup::Ptrace)) {
		for (const char *name : kPtraceSyscalls)
			GVM_TRY_VOID(addRule(ctx, kDeny, name), "denying ptrace");
	}
	if (!policy.allows(SyscallGroup::IoUring)) {
		for (const char *name : kIoUringSyscalls)
			GVM_TRY_VOID(addRule(ctx, kDeny, name), "denying io_uring");
	}

	if (!policy.allows(SyscallGroup::Namespaces)) {
		// New namespaces are where user-namespace root reaches kernel
		// code written for real root (netfilter, mounts of many file
		// systems), and setns could join another process's view.
		// unshare() and setns() are denied whatever their flags (the
		// namespace-free unshare(CLONE_FILES / CLONE_FS) included, which
		// tools do not rely on).
		GVM_TRY_VOID(addRule(ctx, kDeny, "unshare"), "denying namespaces");
		GVM_TRY_VOID(addRule(ctx, kDeny, "setns"), "denying namespaces");
		// clone() only with a namespace flag: fork(), vfork-style and
		// thread creation carry none and keep working. Rules of one
		// syscall are alternatives: one rule per flag denies any of them.
		for (uint64_t flag : kCloneNamespaceFlags)
			GVM_TRY_VOID(addRule(ctx, kDeny, "clone", {bitSet(0, flag)}), "denying namespaces");
		// clone3() passes its flags in a struct in memory, which a
		// seccomp filter cannot read. ENOSYS (not EPERM) makes glibc's
		// pthread_create, posix_spawn and friends fall back to clone(),
		// which the rules above inspect.
		GVM_TRY_VOID(addRule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3"), "denying namespaces");
	}

	// Sockets. Denied families, whatever the type.
	for (int family : kDeniedSocketFamilies)
		GVM_TRY_VOID(addRule(ctx, kDeny, "socket", {low32Equals(0, static_cast<uint32_t>(family))}),
			     "denying socket families");
	// Netlink only for NETLINK_ROUTE, which libc uses (getaddrinfo's
	// AI_ADDRCONFIG, if_nameindex) and tools read addresses and routes
	// with; not audit, netfilter, uevents, crypto, ... (The comparison of
	// the protocol is on 64 bits: stray high bits deny, never allow.)
	GVM_TRY_VOID(addRule(ctx, kDeny, "socket",
			     {low32Equals(0, AF_NETLINK), scmp_arg_cmp{2, SCMP_CMP_NE, NETLINK_ROUTE, 0}}),
		     "denying netlink sockets");
	// Raw sockets of any family (raw IP forges packets, sniffs), except
	// netlink, whose sockets are SOCK_RAW by convention. And the obsolete
	// SOCK_PACKET.
	GVM_TRY_VOID(addRule(ctx, kDeny, "socket",
			     {scmp_arg_cmp{0, SCMP_CMP_NE, AF_NETLINK, 0},
			      scmp_arg_cmp{1, SCMP_CMP_MASKED_EQ, kSocketTypeMask, SOCK_RAW}}),
		     "denying raw sockets");
	GVM_TRY_VOID(addRule(ctx, kDeny, "socket", {scmp_arg_cmp{1, SCMP_CMP_MASKED_EQ, kSocketTypeMask, SOCK_PACKET}}),
		     "denying packet sockets");

	// personality(): only PER_LINUX (0) and the query (0xffffffff). Other
	// personas switch off address-space randomisation or make data
	// executable (READ_IMPLIES_EXEC) for everything the agent runs next.
	// The kernel reads the persona as an unsigned int, and libseccomp
	// takes one comparison per argument in a rule, so "neither all zeros
	// nor all ones" is written as alternatives over the low 32 bits: some
	// set bit i is followed (cyclically) by a clear bit i+1. Any value with
	// both set and clear bits has such a pair; 0 and 0xffffffff have none.
	for (unsigned bit = 0; bit < 32; ++bit) {
		uint64_t set = 1ULL << bit;
		uint64_t nextClear = 1ULL << ((bit + 1) % 32);
		GVM_TRY_VOID(addRule(ctx, kDeny, "personality", {scmp_arg_cmp{0, SCMP_CMP_MASKED_EQ, set | nextClear, set}}),
			     "restricting personality");
	}
	return {};
}

// Reads back what seccomp_export_bpf() wrote: an array of sock_filter.
Result<std::vector<sock_filter>> exportProgram(scmp_filter_ctx ctx)
{
	// A memfd rather than a pipe: the export is one write() of the whole
	// program, which could exceed a pipe's buffer and block.
	UniqueFd fd(::memfd_create("gvm-agent-seccomp", MFD_CLOEXEC));
	if (!fd)
		return fail(Error::fromErrno(errno, "creating a memfd for the seccomp program"));
	if (int r = seccomp_export_bpf(ctx, fd.get()); r < 0)
		return fail(Error::fromErrno(-r, "exporting the seccomp program"));
	struct stat st {};
	if (::fstat(fd.get(), &st) < 0)
		return fail(Error::fromErrno(errno, "measuring the seccomp program"));
	size_t bytes = static_cast<size_t>(st.st_size);
	if (bytes == 0 || bytes % sizeof(sock_filter) != 0)
		return fail(Error::internal("libseccomp exported a program of " + std::to_string(bytes) + " bytes"));
	if (bytes / sizeof(sock_filter) > BPF_MAXINSNS)
		return fail(Error::fromErrno(E2BIG, "the seccomp program has " +
							  std::to_string(bytes / sizeof(sock_filter)) + " instructions"));

	std::vector<sock_filter> program(bytes / sizeof(sock_filter));
	auto *out = reinterpret_cast<char *>(program.data());
	for (size_t done = 0; done < bytes;) {
		ssize_t n = ::pread(fd.get(), out + done, bytes - done, static_cast<off_t>(done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(Error::fromErrno(errno, "reading back the seccomp program"));
		if (n == 0)
			return fail(Error::internal("the seccomp program was cut short"));
		done += static_cast<size_t>(n);
	}
	return program;
}

} // namespace

Result<AgentSeccompFilter> AgentSeccompFilter::build(policy::SyscallPolicy policy)
{
	// Everything not named is allowed: the agent runs arbitrary tools, so
	// an allow-list would break them; the deny-list closes what a
	// sandbox does not need.
	SeccompContext ctx(seccomp_init(SCMP_ACT_ALLOW));
	if (!ctx)
		return fail(Error::fromErrno(ENOMEM, "initialising the agent's seccomp filter"));
	// Only the native ABI is described (seccomp_init adds just it). A
	// call through another one (i386 `int $0x80`, whose numbers differ)
	// fails as a whole instead of being matched against the wrong table.
	// For x86_64, libseccomp also routes x32 calls (numbers with
	// __X32_SYSCALL_BIT, same audit arch) to this action.
	if (int r = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, kDeny); r < 0)
		return fail(Error::fromErrno(-r, "setting the seccomp bad-architecture action"));

	GVM_TRY_VOID(addRules(ctx.get(), policy), "building the agent's seccomp filter");

	auto program = exportProgram(ctx.get());
	if (!program)
		return fail(std::move(program).error().wrap("building the agent's seccomp filter"));
	return AgentSeccompFilter(policy, std::move(*program));
}

int AgentSeccompFilter::loadInChild() const noexcept
{
	// Built on the stack from the kept program: nothing is allocated and
	// the object stays valid across moves and copies.
	sock_fprog prog{};
	prog.len = static_cast<unsigned short>(program_.size());
	prog.filter = const_cast<sock_filter *>(program_.data());
	// From here on, this thread and everything it executes runs under
	// the filter, irrevocably. The kernel requires no_new_privs (or
	// CAP_SYS_ADMIN) so that a set-uid program cannot be started with a
	// filter that makes its privileged code misbehave.
	if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
		return errno;
	return 0;
}

} // namespace gvm::isolation
