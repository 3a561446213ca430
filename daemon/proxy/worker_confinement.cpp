// SPDX-License-Identifier: Apache-2.0
#include "daemon/proxy/worker_confinement.h"

#include <cerrno>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <seccomp.h>

#include "common/c_ptr.h"
#include "common/log.h"

namespace gvm::proxy {

namespace {

using SeccompFilter = CPtr<void, seccomp_release>;

// What a proxy worker does: an event loop moving bytes between sockets it
// was handed or dials itself, TLS, timers, memory and a libuv thread pool.
// Everything else (exec, ptrace, mounts, namespaces, new files, raw or
// netlink sockets, changing identity) fails with EPERM.
constexpr int kAllowedSyscalls[] = {
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(pread64),
	SCMP_SYS(recvfrom), SCMP_SYS(sendto), SCMP_SYS(recvmsg), SCMP_SYS(sendmsg), SCMP_SYS(recvmmsg),
	SCMP_SYS(sendmmsg), SCMP_SYS(accept4), SCMP_SYS(connect), SCMP_SYS(shutdown), SCMP_SYS(close),
	SCMP_SYS(getsockopt), SCMP_SYS(setsockopt), SCMP_SYS(getsockname), SCMP_SYS(getpeername),
	SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait),
	SCMP_SYS(epoll_pwait2), SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(eventfd2), SCMP_SYS(pipe2),
	SCMP_SYS(timerfd_create), SCMP_SYS(timerfd_settime), SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres),
	SCMP_SYS(gettimeofday), SCMP_SYS(nanosleep), SCMP_SYS(clock_nanosleep), SCMP_SYS(mmap),
	SCMP_SYS(munmap), SCMP_SYS(mprotect), SCMP_SYS(mremap), SCMP_SYS(madvise), SCMP_SYS(brk),
	SCMP_SYS(futex), SCMP_SYS(set_robust_list), SCMP_SYS(get_robust_list), SCMP_SYS(rseq),
	SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn), SCMP_SYS(sigaltstack),
	SCMP_SYS(getrandom), SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getppid), SCMP_SYS(getuid),
	SCMP_SYS(geteuid), SCMP_SYS(getgid), SCMP_SYS(getegid), SCMP_SYS(exit), SCMP_SYS(exit_group),
	SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(lseek), SCMP_SYS(sched_yield),
	SCMP_SYS(sched_getaffinity), SCMP_SYS(uname), SCMP_SYS(getrlimit), SCMP_SYS(prlimit64),
	SCMP_SYS(dup), SCMP_SYS(dup3), SCMP_SYS(tgkill), SCMP_SYS(membarrier),
};

Result<void> addRule(scmp_filter_ctx ctx, uint32_t action, int syscall, unsigned count,
		     const scmp_arg_cmp *args = nullptr)
{
	int r = seccomp_rule_add_array(ctx, action, syscall, count, args);
	if (r < 0)
		return fail(Error::fromErrno(-r, "adding a seccomp rule for syscall " + std::to_string(syscall)));
	return {};
}

Result<void> loadSeccomp()
{
	SeccompFilter ctx(seccomp_init(SCMP_ACT_ERRNO(EPERM)));
	if (!ctx)
		return fail(Error::fromErrno(ENOMEM, "seccomp_init"));
	// Only the native architecture: x32 and 32-bit entry points would
	// otherwise reach syscalls this list never names.
	if (int r = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); r < 0)
		return fail(Error::fromErrno(-r, "seccomp bad-arch action"));

	for (int sc : kAllowedSyscalls)
		GVM_TRY_VOID(addRule(ctx.get(), SCMP_ACT_ALLOW, sc, 0), "building the worker filter");

	// Sockets: TCP/UDP over IPv4 and IPv6 (upstreams, DNS) and unix (the
	// control channel); never raw, packet or netlink.
	for (int family : {AF_INET, AF_INET6, AF_UNIX}) {
		scmp_arg_cmp arg = SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(family));
		GVM_TRY_VOID(addRule(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, &arg), "building the worker filter");
	}
	// fcntl: descriptor and status flags only.
	for (int cmd : {F_GETFL, F_SETFL, F_GETFD, F_SETFD, F_DUPFD_CLOEXEC}) {
		scmp_arg_cmp arg = SCMP_A1(SCMP_CMP_EQ, static_cast<scmp_datum_t>(cmd));
		GVM_TRY_VOID(addRule(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(fcntl), 1, &arg), "building the worker filter");
	}
	// ioctl: non-blocking mode and pending-byte counts only.
	for (unsigned long req : {static_cast<unsigned long>(FIONBIO), static_cast<unsigned long>(FIONREAD),
				  static_cast<unsigned long>(FIOCLEX)}) {
		scmp_arg_cmp arg = SCMP_A1(SCMP_CMP_EQ, static_cast<scmp_datum_t>(req));
		GVM_TRY_VOID(addRule(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, &arg), "building the worker filter");
	}
	// Threads of libuv's pool, never new processes: clone only with
	// CLONE_THREAD. clone3 passes its flags in memory seccomp cannot read,
	// so it gets ENOSYS and glibc falls back to clone.
	{
		scmp_arg_cmp arg = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD);
		GVM_TRY_VOID(addRule(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(clone), 1, &arg), "building the worker filter");
		GVM_TRY_VOID(addRule(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0), "building the worker filter");
	}
	// Opening files: read-only (e.g. /etc/hosts by the resolver); never
	// creating or writing one.
	{
		scmp_arg_cmp arg = SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC, O_RDONLY);
		GVM_TRY_VOID(addRule(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(openat), 1, &arg), "building the worker filter");
	}
	if (int r = seccomp_load(ctx.get()); r < 0)
		return fail(Error::fromErrno(-r, "loading the seccomp filter"));
	return {};
}

// The part of confinement that needs no privilege.
Result<void> confineUnprivileged()
{
	// A set-uid binary could otherwise regain privileges; also required
	// for loading a seccomp filter without CAP_SYS_ADMIN.
	if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return fail(Error::fromErrno(errno, "setting no_new_privs"));
	// No core dumps or ptrace by same-uid processes: the worker holds the
	// sandbox CA's private key.
	if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return fail(Error::fromErrno(errno, "making the worker non-dumpable"));
	GVM_TRY_VOID(loadSeccomp(), "confining the proxy worker");
	return {};
}

} // namespace

Result<WorkerIdentity> resolveWorkerIdentity()
{
	for (const char *name : {kWorkerUser, kFallbackWorkerUser}) {
		errno = 0;
		passwd *pw = ::getpwnam(name);
		if (!pw)
			continue;
		if (pw->pw_uid == 0 || pw->pw_gid == 0)
			return fail(Error::fromErrno(EPERM, std::string("user ") + name + " is root; refusing to run workers as it"));
		WorkerIdentity id{name, pw->pw_uid, pw->pw_gid, name != std::string(kWorkerUser)};
		return id;
	}
	return fail(Error::fromErrno(ENOENT, std::string("neither ") + kWorkerUser + " nor " + kFallbackWorkerUser +
						     " exists (install systemd/gvm.sysusers)"));
}

Result<void> confineWorker(const WorkerIdentity &identity)
{
	if (identity.fallback)
		GVM_LOG(Proxy, Warning) << "user " << kWorkerUser << " does not exist; running the proxy worker as "
					<< identity.user << " (install systemd/gvm.sysusers)";

	if (::geteuid() != 0) {
		// gvmd itself runs unprivileged (a development run): there is no
		// identity to give up, but no_new_privs and seccomp still apply.
		GVM_LOG(Proxy, Notice) << "not started as root: the proxy worker keeps uid " << ::geteuid();
		return confineUnprivileged();
	}
	// Empty the bounding set while we still hold CAP_SETPCAP: nothing this
	// process ever executes could regain a capability.
	for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
		if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			return fail(Error::fromErrno(errno, "dropping capability " + std::to_string(cap) + " from the bounding set"));
	}
	// Drop root's groups, then gid, then uid (in that order: after setuid
	// we could no longer change groups). With no SECBIT_KEEP_CAPS, the
	// uid change clears the permitted, effective and ambient sets.
	if (::setgroups(0, nullptr) < 0)
		return fail(Error::fromErrno(errno, "clearing supplementary groups"));
	if (::setresgid(identity.gid, identity.gid, identity.gid) < 0)
		return fail(Error::fromErrno(errno, "switching to gid " + std::to_string(identity.gid)));
	if (::setresuid(identity.uid, identity.uid, identity.uid) < 0)
		return fail(Error::fromErrno(errno, "switching to uid " + std::to_string(identity.uid)));
	// Belt and braces: the way back to root must be closed.
	if (::setresuid(0, 0, 0) == 0)
		return fail(Error::fromErrno(EPERM, "could switch back to root after dropping privileges"));
	return confineUnprivileged();
}

} // namespace gvm::proxy
