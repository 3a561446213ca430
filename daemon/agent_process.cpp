// SPDX-License-Identifier: Apache-2.0
#include "daemon/agent_process.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/isolation/agent_seccomp.h"
#include "daemon/isolation/cgroup.h"
#include "daemon/isolation/landlock.h"
#include "daemon/isolation/mount_view.h"

namespace gvm::daemon {

namespace {

// Where the child failed, reported to the parent with the errno.
enum class Step : int32_t {
	Setsid = 1,
	MountNamespace,
	Groups,
	Gid,
	Uid,
	Stdio,
	Tty,
	Chdir,
	Exec,
	// Sandbox mode.
	Unshare,
	NetNamespace,
	Mounts,
	MountCaBundle,
	MountJavaKeystore,
	MountResolvConf,
	MountHidden,
	MountProc,
	Hostname,
	ForkAgent,
	Capabilities,
	NoNewPrivs,
	Cgroup,
	MountView, // detail: what and where
	Landlock,
	Seccomp,
};

struct ChildReport {
	int32_t step;
	int32_t err;
	// A path or a description, NUL-terminated (a pipe write this small
	// is atomic).
	char detail[400];
};

constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";

// In the child only: tell the parent what failed and give up. write() and
// _exit() are async-signal-safe; nothing here allocates.
[[noreturn]] void childFail(int reportFd, Step step, int err, const char *detail = nullptr,
			    const char *detail2 = nullptr)
{
	ChildReport report{static_cast<int32_t>(step), err, {}};
	size_t at = 0;
	for (const char *part : {detail, detail2}) {
		if (part && at > 0 && at + 1 < sizeof(report.detail))
			report.detail[at++] = ' ';
		for (const char *c = part; c && *c && at + 1 < sizeof(report.detail); ++c)
			report.detail[at++] = *c;
	}
	[[maybe_unused]] ssize_t n = ::write(reportFd, &report, sizeof(report));
	::_exit(127);
}

// Keeps fd clear of 0..2, so the dup2() onto the standard streams in the
// child can never overwrite a descriptor still needed.
Result<void> moveAboveStdio(UniqueFd &fd)
{
	if (!fd || fd.get() > 2)
		return {};
	int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3);
	if (moved < 0)
		return fail(Error::fromErrno(errno, "duplicating a descriptor"));
	fd.reset(moved);
	return {};
}

std::string lookupEnv(const std::vector<std::string> &env, const std::string &name)
{
	std::string prefix = name + "=";
	for (const std::string &e : env)
		if (e.compare(0, prefix.size(), prefix) == 0)
			return e.substr(prefix.size());
	return {};
}

// Where execve() is tried, in order: argv[0] itself when it names a path,
// else each entry of the caller's PATH (an empty entry is the working
// directory), as execvp() does.
std::vector<std::string> programCandidates(const std::string &program, const std::vector<std::string> &env)
{
	if (program.find('/') != std::string::npos)
		return {program};
	std::string path = lookupEnv(env, "PATH");
	if (path.empty())
		path = kDefaultPath;
	std::vector<std::string> out;
	size_t start = 0;
	for (;;) {
		size_t colon = path.find(':', start);
		std::string dir = path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
		out.push_back(dir.empty() ? program : dir + "/" + program);
		if (colon == std::string::npos)
			break;
		start = colon + 1;
	}
	return out;
}

std::vector<char *> cStrings(std::vector<std::string> &strings)
{
	std::vector<char *> out;
	out.reserve(strings.size() + 1);
	for (std::string &s : strings)
		out.push_back(s.data());
	out.push_back(nullptr);
	return out;
}

} // namespace

AgentProcess::AgentProcess(Loop &loop, Callbacks callbacks, pid_t pid, UniqueFd pidfd, UniqueFd errorPipe,
			   std::string program, std::string cwd, uid_t uid)
	: loop_(loop), callbacks_(std::move(callbacks)), pid_(pid), pidfd_(std::move(pidfd)),
	  errorPipe_(std::move(errorPipe)), program_(std::move(program)), cwd_(std::move(cwd)), uid_(uid)
{
}

AgentProcess::~AgentProcess()
{
	pidPoll_.close();
	errorPoll_.close();
}

namespace {

// Everything a child needs, prepared before fork(): between fork() and
// execve() only async-signal-safe calls are made (nothing allocates).
struct ChildPlan {
	char **argv;
	char **envp;
	char **paths;
	int stdio[3];
	const gid_t *groups;
	size_t groupCount;
	gid_t gid;
	uid_t uid;
	mode_t umask;
	bool tty;
	const char *cwd;
	int mountNamespace; // -1: stay
	// Sandbox mode.
	bool sandboxed;
	int netns;
	const char *caBundle;
	const char *javaKeystore; // "": none
	const char *resolvConf;
	const char *const *hidden;
	size_t hiddenCount;
	const char *hostname;
	int lastCap;
	const isolation::MountViewSpec *view;     // null: the host's view
	const isolation::LandlockPlan *landlock;  // null: none
	const isolation::AgentSeccompFilter *seccomp; // null: none
	const int *cgroupProcs;
	size_t cgroupProcsCount;
};

void resetSignals()
{
	// Default dispositions for every signal: gvmd ignores SIGPIPE and
	// handles SIGTERM/SIGINT/SIGCHLD; the agent inherits none of that.
	// (execve() resets handlers, but not SIG_IGN.)
	struct sigaction dfl{};
	dfl.sa_handler = SIG_DFL;
	for (int s = 1; s < NSIG; ++s)
		if (s != SIGKILL && s != SIGSTOP)
			::sigaction(s, &dfl, nullptr);
}

// A plain child (fork semantics) without glibc's fork(): no atfork
// handlers, no locks taken, so it is safe in a child of a raw clone too.
pid_t rawFork(uint64_t flags, int *pidfd)
{
	clone_args args{};
	args.flags = flags | (pidfd ? CLONE_PIDFD : 0);
	args.pidfd = reinterpret_cast<uint64_t>(pidfd);
	args.exit_signal = SIGCHLD;
	return static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof(args)));
}

// In the child: become the caller and run the program; never returns.
[[noreturn]] void becomeAgent(const ChildPlan &plan, int report)
{
	// A session and process group of its own: sandbox.signal and
	// sandbox.stop reach the whole agent tree through the group, and a
	// terminal of its own can become its controlling terminal.
	if (::setsid() < 0)
		childFail(report, Step::Setsid, errno);

	// gvmd may run in a mount namespace of its own (systemd's
	// ProtectSystem= makes /usr, /etc... read-only for gvmd). The agent
	// is the caller's program and must see the host as the caller does,
	// so it joins PID 1's mount namespace. This is done while still
	// privileged (setns needs CAP_SYS_ADMIN) and before anything of the
	// caller's is touched; it gives the agent nothing the caller does not
	// already have. (A sandboxed agent's init did this already.)
	if (!plan.sandboxed && plan.mountNamespace >= 0 && ::setns(plan.mountNamespace, CLONE_NEWNS) < 0)
		childFail(report, Step::MountNamespace, errno);

	// A sandboxed agent can never regain a capability: the bounding set
	// is emptied while gvmd's privileges still allow it (CAP_SETPCAP),
	// so not even a root caller's agent gets any back from execve().
	if (plan.sandboxed && ::geteuid() == 0)
		for (int cap = 0; cap <= plan.lastCap; ++cap)
			if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
				childFail(report, Step::Capabilities, errno);

	// Landlock: file access limited to the sandbox's view, a layer that
	// does not depend on the mounts (a path they failed to cover stays
	// closed). Applied while still root, which may open every path the
	// rules name; the domain binds root and everything after alike.
	if (plan.landlock) {
		if (int err = plan.landlock->applyInChild(); err != 0)
			childFail(report, Step::Landlock, err);
	}

	// Become the caller, for good: supplementary groups, then gid, then
	// uid (the order matters: once the uid is not 0, the group calls are
	// no longer allowed). Real, effective and saved ids all change, so the
	// agent cannot switch back, and moving every uid away from 0 clears
	// all capabilities (no SECBIT_KEEP_CAPS is set). An unprivileged gvmd
	// only ever launches for its own uid (checked by the caller), so there
	// is nothing to switch and it could not anyway.
	if (::geteuid() == 0) {
		if (::setgroups(plan.groupCount, plan.groups) < 0)
			childFail(report, Step::Groups, errno);
		if (::setresgid(plan.gid, plan.gid, plan.gid) < 0)
			childFail(report, Step::Gid, errno);
		if (::setresuid(plan.uid, plan.uid, plan.uid) < 0)
			childFail(report, Step::Uid, errno);
	} else if (plan.uid != ::geteuid()) {
		childFail(report, Step::Uid, EPERM);
	}

	if (plan.sandboxed) {
		// A root caller keeps root's capabilities across setresuid(0):
		// clear every set (and the ambient one), then forbid gaining
		// privileges through setuid programs or file capabilities.
		__user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
		__user_cap_data_struct none[2] = {};
		if (::syscall(SYS_capset, &header, none) < 0)
			childFail(report, Step::Capabilities, errno);
		::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
		if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			childFail(report, Step::NoNewPrivs, errno);
	}

	// The caller's stdin, stdout and stderr (all above 2 by now, so no
	// dup2() overwrites another).
	for (int i = 0; i < 3; ++i)
		if (::dup2(plan.stdio[i], i) < 0)
			childFail(report, Step::Stdio, errno);
	if (plan.tty && ::ioctl(0, TIOCSCTTY, 0) < 0)
		childFail(report, Step::Tty, errno);

	// The working directory is entered as the caller, never as root: a
	// directory the caller may not enter stays closed.
	if (::chdir(plan.cwd) < 0)
		childFail(report, Step::Chdir, errno);
	// The caller's umask, not gvmd's (its unit sets UMask=0077).
	::umask(plan.umask);

	// No descriptor of gvmd's reaches the agent: close everything but
	// 0..2 and the report pipe (close-on-exec, so the parent sees EOF
	// once execve() succeeds).
	if (report > 3)
		::close_range(3, static_cast<unsigned>(report) - 1, 0);
	::close_range(static_cast<unsigned>(report) + 1, ~0U, 0);

	sigset_t none;
	sigemptyset(&none);
	::sigprocmask(SIG_SETMASK, &none, nullptr);

	// The seccomp filter, last before execve(): system calls the agent has
	// no business making (ptrace, mount, namespaces, bpf, io_uring, raw and
	// packet sockets...) fail with EPERM from here on. no_new_privs is set
	// (sandbox mode), so an unprivileged process may load it.
	if (plan.seccomp) {
		if (int err = plan.seccomp->loadInChild(); err != 0)
			childFail(report, Step::Seccomp, err);
	}

	// PATH lookup as execvp() does it: a missing or non-directory entry
	// moves on; EACCES is reported if nothing else worked.
	int err = ENOENT;
	bool denied = false;
	for (size_t i = 0; plan.paths[i]; ++i) {
		::execve(plan.paths[i], plan.argv, plan.envp);
		err = errno;
		if (err == EACCES)
			denied = true;
		else if (err != ENOENT && err != ENOTDIR && err != ESTALE && err != ENODEV && err != ETIMEDOUT)
			break;
	}
	childFail(report, Step::Exec, denied && (err == ENOENT || err == ENOTDIR) ? EACCES : err);
}

void ignoreSignal(int) {}

// Signals the init passes on to the agent's process group.
constexpr int kForwardedSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2,
				     SIGWINCH, SIGCONT, SIGTSTP, SIGALRM, SIGTTIN, SIGTTOU};

// In the sandbox's first process (pid 1 of its pid namespace, made by
// clone3 with CLONE_NEWPID): builds the agent's view of the system, starts
// the agent as pid 2, then forwards signals to it and reaps orphans until
// it exits. Its wait status goes to gvmd through `statusFd`; when this init
// exits, the kernel ends every process left in the namespace.
[[noreturn]] void runSandboxInit(const ChildPlan &plan, int report, int statusFd)
{
	// gvmd gone (a crash): the sandbox goes with it, and its network
	// namespace and veth with the last process in it.
	::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	// Into the sandbox's cgroup before anything else, so every process of
	// the sandbox is counted against its limits.
	if (plan.cgroupProcsCount > 0) {
		if (int err = isolation::SandboxCgroup::joinInChild(plan.cgroupProcs, plan.cgroupProcsCount); err != 0)
			childFail(report, Step::Cgroup, err);
	}
	// A process group of its own, which gvmd signals (kill(-pid)).
	if (::setsid() < 0)
		childFail(report, Step::Setsid, errno);
	if (plan.mountNamespace >= 0 && ::setns(plan.mountNamespace, CLONE_NEWNS) < 0)
		childFail(report, Step::MountNamespace, errno);
	if (::unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC) < 0)
		childFail(report, Step::Unshare, errno);
	if (::setns(plan.netns, CLONE_NEWNET) < 0)
		childFail(report, Step::NetNamespace, errno);

	// Mounts made here stay here; the host's later mounts still show.
	if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) < 0)
		childFail(report, Step::Mounts, errno);
	auto bindReadOnly = [&](const char *source, const char *target, Step step) {
		if (::access(target, F_OK) < 0)
			return; // nothing there to replace
		if (::mount(source, target, nullptr, MS_BIND, nullptr) < 0 ||
		    ::mount(nullptr, target, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) < 0)
			childFail(report, step, errno);
	};
	// The workspace, the home's private layer and the masks over secrets
	// first: their sources live in the sandbox's directory, hidden below.
	isolation::MountViewFailure viewFailure{};
	if (plan.view && !isolation::mountLayers(*plan.view, &viewFailure))
		childFail(report, Step::MountView, viewFailure.err, isolation::describe(viewFailure.step), viewFailure.path);
	bindReadOnly(plan.caBundle, kSystemCaBundle, Step::MountCaBundle);
	if (plan.javaKeystore && plan.javaKeystore[0] != '\0')
		bindReadOnly(plan.javaKeystore, kJavaKeystore, Step::MountJavaKeystore);
	bindReadOnly(plan.resolvConf, "/etc/resolv.conf", Step::MountResolvConf);
	// A hidden directory becomes an empty read-only tmpfs; a hidden file
	// (gvmd's socket) becomes /dev/null, which nothing can connect to.
	for (size_t i = 0; i < plan.hiddenCount; ++i) {
		struct stat st{};
		if (::stat(plan.hidden[i], &st) < 0)
			continue;
		int r = S_ISDIR(st.st_mode) ? ::mount("tmpfs", plan.hidden[i], "tmpfs",
						       MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0755")
					    : ::mount("/dev/null", plan.hidden[i], nullptr, MS_BIND, nullptr);
		if (r < 0)
			childFail(report, Step::MountHidden, errno);
	}
	// The processes of this pid namespace only.
	if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0)
		childFail(report, Step::MountProc, errno);
	// The kernel lets uid 0 write the namespace's sysctls without any
	// capability (net.ipv6.conf.all.disable_ipv6 among them): read-only.
	bindReadOnly("/proc/sys", "/proc/sys", Step::MountProc);
	bindReadOnly("/proc/sysrq-trigger", "/proc/sysrq-trigger", Step::MountProc);
	// Private /tmp, /dev and /dev/shm, then the whole host read-only but
	// for the workspace, the home layer and those.
	if (plan.view && !isolation::sealMountView(*plan.view, &viewFailure))
		childFail(report, Step::MountView, viewFailure.err, isolation::describe(viewFailure.step), viewFailure.path);
	if (plan.hostname[0] && ::sethostname(plan.hostname, std::strlen(plan.hostname)) < 0)
		childFail(report, Step::Hostname, errno);

	// Handlers (never run: the signals stay blocked and are taken with
	// sigwaitinfo) so that pid 1 does not discard them.
	struct sigaction act{};
	act.sa_handler = ignoreSignal;
	for (int sig : kForwardedSignals)
		::sigaction(sig, &act, nullptr);
	::sigaction(SIGCHLD, &act, nullptr);

	const pid_t agent = rawFork(0, nullptr);
	if (agent < 0)
		childFail(report, Step::ForkAgent, errno);
	if (agent == 0)
		becomeAgent(plan, report);

	// The agent holds the report pipe until its execve(); the init's
	// copy, the caller's streams and everything else of gvmd's close.
	::close_range(0, static_cast<unsigned>(statusFd) - 1, 0);
	::close_range(static_cast<unsigned>(statusFd) + 1, ~0U, 0);

	// From here the init only waits and passes signals on: it keeps
	// CAP_KILL (the agent may run as another user) and nothing else,
	// cannot regain anything, and cannot be ptraced by the agent.
	::prctl(PR_SET_NAME, "gvm-init", 0, 0, 0);
	for (int cap = 0; cap <= plan.lastCap; ++cap)
		if (cap != CAP_KILL)
			::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
	{
		__user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
		__user_cap_data_struct onlyKill[2] = {};
		onlyKill[0].effective = onlyKill[0].permitted = 1U << CAP_KILL;
		::syscall(SYS_capset, &header, onlyKill);
	}
	::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

	sigset_t waitFor;
	sigemptyset(&waitFor);
	for (int sig : kForwardedSignals)
		sigaddset(&waitFor, sig);
	sigaddset(&waitFor, SIGCHLD);
	for (;;) {
		siginfo_t info{};
		int sig = ::sigwaitinfo(&waitFor, &info);
		if (sig < 0)
			continue;
		if (sig != SIGCHLD) {
			if (::kill(-agent, sig) < 0)
				::kill(agent, sig);
			continue;
		}
		for (;;) {
			int status = 0;
			pid_t pid = ::waitpid(-1, &status, WNOHANG);
			if (pid <= 0)
				break;
			if (pid == agent) {
				[[maybe_unused]] ssize_t n = ::write(statusFd, &status, sizeof(status));
				::_exit(0);
			}
		}
	}
}

int lastCapability()
{
	int last = 40;
	UniqueFd fd(::open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC));
	char buf[16] = {};
	if (fd && ::read(fd.get(), buf, sizeof(buf) - 1) > 0)
		last = std::atoi(buf);
	return last > 0 && last < 64 ? last : 63;
}

} // namespace

Result<std::unique_ptr<AgentProcess>> AgentProcess::start(Loop &loop, AgentSpec spec, Callbacks callbacks)
{
	if (spec.argv.empty() || spec.argv[0].empty())
		return fail(Error::fromErrno(ENOENT, "cannot run ''"));

	// Everything the child needs is prepared here: between fork() and
	// execve() only async-signal-safe calls are allowed (libuv's thread
	// pool may hold locks the child would inherit).
	std::vector<std::string> candidates = programCandidates(spec.argv[0], spec.env);
	std::vector<char *> argv = cStrings(spec.argv);
	std::vector<char *> envp = cStrings(spec.env);
	std::vector<char *> paths = cStrings(candidates);
	for (UniqueFd &fd : spec.stdio)
		GVM_TRY_VOID(moveAboveStdio(fd), "preparing the agent's standard streams");
	GVM_TRY_VOID(moveAboveStdio(spec.mountNamespace), "preparing the agent's mount namespace");

	int pipeFds[2];
	if (::pipe2(pipeFds, O_CLOEXEC) < 0)
		return fail(Error::fromErrno(errno, "creating the agent's report pipe"));
	UniqueFd reportRead(pipeFds[0]), reportWrite(pipeFds[1]);
	GVM_TRY_VOID(moveAboveStdio(reportWrite), "preparing the agent's report pipe");

	ChildPlan plan{};
	plan.argv = argv.data();
	plan.envp = envp.data();
	plan.paths = paths.data();
	for (size_t i = 0; i < 3; ++i)
		plan.stdio[i] = spec.stdio[i].get();
	plan.groups = spec.groups.data();
	plan.groupCount = spec.groups.size();
	plan.gid = spec.gid;
	plan.uid = spec.uid;
	plan.umask = spec.umask;
	plan.tty = spec.tty;
	plan.cwd = spec.cwd.c_str();
	plan.mountNamespace = spec.mountNamespace ? spec.mountNamespace.get() : -1;

	UniqueFd statusRead, statusWrite;
	std::vector<const char *> hidden;
	std::vector<int> cgroupProcs;
	if (spec.isolation) {
		AgentSpec::Isolation &iso = *spec.isolation;
		GVM_TRY_VOID(moveAboveStdio(iso.netns), "preparing the sandbox's network namespace");
		if (::pipe2(pipeFds, O_CLOEXEC) < 0)
			return fail(Error::fromErrno(errno, "creating the sandbox's status pipe"));
		statusRead.reset(pipeFds[0]);
		statusWrite.reset(pipeFds[1]);
		GVM_TRY_VOID(moveAboveStdio(statusWrite), "preparing the sandbox's status pipe");
		for (const std::string &h : iso.hidden)
			hidden.push_back(h.c_str());
		plan.sandboxed = true;
		plan.netns = iso.netns.get();
		plan.caBundle = iso.caBundle.c_str();
		plan.javaKeystore = iso.javaKeystore.c_str();
		plan.resolvConf = iso.resolvConf.c_str();
		plan.hidden = hidden.data();
		plan.hiddenCount = hidden.size();
		plan.hostname = iso.hostname.c_str();
		plan.lastCap = lastCapability();
		plan.view = iso.view ? &iso.view->spec() : nullptr;
		plan.landlock = iso.landlock.get();
		plan.seccomp = iso.seccomp.get();
		for (UniqueFd &fd : iso.cgroupProcs) {
			GVM_TRY_VOID(moveAboveStdio(fd), "preparing the sandbox's cgroup");
			cgroupProcs.push_back(fd.get());
		}
		plan.cgroupProcs = cgroupProcs.data();
		plan.cgroupProcsCount = cgroupProcs.size();
	}

	// Signals stay blocked across fork(): the child must not run gvmd's
	// handlers (libuv's would write to gvmd's own signal pipe) before it
	// has reset them to their defaults.
	sigset_t all, saved;
	sigfillset(&all);
	::pthread_sigmask(SIG_SETMASK, &all, &saved);
	int pidfdNumber = -1;
	const pid_t pid = spec.isolation ? rawFork(CLONE_NEWPID, &pidfdNumber) : ::fork();
	if (pid < 0) {
		int err = errno;
		::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
		return fail(Error::fromErrno(err, spec.isolation ? "starting the sandbox (clone3 with a new pid namespace)"
								 : "forking the agent"));
	}
	if (pid == 0) {
		resetSignals();
		if (plan.sandboxed)
			runSandboxInit(plan, reportWrite.get(), statusWrite.get());
		becomeAgent(plan, reportWrite.get());
	}

	::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
	reportWrite.reset();
	statusWrite.reset();

	UniqueFd pidfd(spec.isolation ? pidfdNumber : static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
	if (!pidfd) {
		int err = errno;
		::kill(pid, SIGKILL);
		::waitpid(pid, nullptr, 0);
		return fail(Error::fromErrno(err, "watching the agent (pidfd_open)"));
	}
	::fcntl(pidfd.get(), F_SETFD, FD_CLOEXEC);
	auto agent = watch(loop, std::move(callbacks), pid, std::move(pidfd), std::move(reportRead), spec);
	if (agent && statusRead) {
		::fcntl(statusRead.get(), F_SETFL, ::fcntl(statusRead.get(), F_GETFL) | O_NONBLOCK);
		(*agent)->statusPipe_ = std::move(statusRead);
	}
	return agent;
}

Result<std::unique_ptr<AgentProcess>> AgentProcess::watch(Loop &loop, Callbacks callbacks, pid_t pid, UniqueFd pidfd,
							 UniqueFd reportRead, const AgentSpec &spec)
{
	::fcntl(reportRead.get(), F_SETFL, ::fcntl(reportRead.get(), F_GETFL) | O_NONBLOCK);
	std::unique_ptr<AgentProcess> agent(new AgentProcess(loop, std::move(callbacks), pid, std::move(pidfd),
							     std::move(reportRead), spec.argv[0], spec.cwd, spec.uid));
	AgentProcess *self = agent.get();
	uv_poll_init(loop.get(), self->errorPoll_.get(), self->errorPipe_.get());
	self->errorPoll_.get()->data = self;
	uv_poll_start(self->errorPoll_.get(), UV_READABLE, [](uv_poll_t *p, int, int) {
		if (auto *a = static_cast<AgentProcess *>(p->data))
			a->onErrorPipe();
	});
	uv_poll_init(loop.get(), self->pidPoll_.get(), self->pidfd_.get());
	self->pidPoll_.get()->data = self;
	uv_poll_start(self->pidPoll_.get(), UV_READABLE, [](uv_poll_t *p, int, int) {
		if (auto *a = static_cast<AgentProcess *>(p->data))
			a->onPidfd();
	});
	GVM_LOG(Daemon, Debug) << "agent " << pid << " forked for uid " << spec.uid
			       << (spec.isolation ? " (sandbox init)" : "");
	return agent;
}

void AgentProcess::onErrorPipe()
{
	if (started_ || reaped_ || !errorPipe_)
		return;
	ChildReport report{};
	ssize_t n;
	do {
		n = ::read(errorPipe_.get(), &report, sizeof(report));
	} while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return;
	errorPoll_.close();
	errorPipe_.reset();

	if (n == 0) {
		// EOF without a report: the close-on-exec pipe closed in
		// execve(). (A child killed before exec also ends here; its
		// exit follows at once.)
		started_ = true;
		if (callbacks_.onStarted)
			callbacks_.onStarted({});
		return;
	}

	Error error = Error::fromErrno(EIO, "the agent failed to start");
	if (n == static_cast<ssize_t>(sizeof(report))) {
		const std::string uid = std::to_string(uid_);
		std::string what;
		switch (static_cast<Step>(report.step)) {
		case Step::Setsid: what = "cannot start a session for the agent"; break;
		case Step::MountNamespace: what = "cannot enter the host's mount namespace"; break;
		case Step::Groups:
		case Step::Gid:
		case Step::Uid: what = "cannot switch to uid " + uid; break;
		case Step::Stdio: what = "cannot set up the agent's standard streams"; break;
		case Step::Tty: what = "cannot make the terminal the agent's controlling terminal"; break;
		case Step::Chdir: what = "cannot enter working directory " + cwd_ + " as uid " + uid; break;
		case Step::Exec: what = "cannot run '" + program_ + "'"; break;
		case Step::Unshare: what = "cannot create the sandbox's mount, uts and ipc namespaces"; break;
		case Step::NetNamespace: what = "cannot enter the sandbox's network namespace"; break;
		case Step::Mounts: what = "cannot make the sandbox's mounts private"; break;
		case Step::MountCaBundle: what = std::string("cannot mount the sandbox's CA bundle over ") + kSystemCaBundle; break;
		case Step::MountJavaKeystore:
			what = std::string("cannot mount the sandbox's Java keystore over ") + kJavaKeystore;
			break;
		case Step::MountResolvConf: what = "cannot mount the sandbox's resolv.conf"; break;
		case Step::MountHidden: what = "cannot hide gvmd's directories from the sandbox"; break;
		case Step::MountProc: what = "cannot mount /proc for the sandbox"; break;
		case Step::Hostname: what = "cannot set the sandbox's host name"; break;
		case Step::ForkAgent: what = "cannot start the agent inside the sandbox"; break;
		case Step::Capabilities: what = "cannot drop the agent's capabilities"; break;
		case Step::NoNewPrivs: what = "cannot set no_new_privs for the agent"; break;
		case Step::Cgroup: what = "cannot move the sandbox into its cgroup"; break;
		case Step::MountView: what = std::string(report.detail, strnlen(report.detail, sizeof(report.detail))); break;
		case Step::Landlock: what = "cannot apply the sandbox's Landlock rules"; break;
		case Step::Seccomp: what = "cannot load the agent's seccomp filter"; break;
		default: what = "the agent failed to start"; break;
		}
		error = Error::fromErrno(report.err, what);
	}
	// The child _exit()s right after its report: reaping it blocks for
	// no longer than that.
	int status = 0;
	reap(&status, true);
	if (callbacks_.onStarted)
		callbacks_.onStarted(fail(std::move(error)));
}

void AgentProcess::onPidfd()
{
	if (reaped_)
		return;
	// The exit can be seen before the report pipe's EOF (an agent that
	// exits at once): settle the start first, so onStarted always comes
	// before onExit.
	if (!started_) {
		onErrorPipe();
		if (reaped_ || !started_)
			return;
	}
	int status = 0;
	if (!reap(&status, false))
		return;
	if (statusPipe_) {
		// A sandbox's init reports how the agent ended; without a
		// report (the init was killed), the init's own end stands.
		int agentStatus = 0;
		if (::read(statusPipe_.get(), &agentStatus, sizeof(agentStatus)) == sizeof(agentStatus))
			status = agentStatus;
		statusPipe_.reset();
	}
	GVM_LOG(Daemon, Debug) << "agent " << pid_ << " exited (wait status " << status << ")";
	if (callbacks_.onExit) {
		if (WIFSIGNALED(status))
			callbacks_.onExit(-1, WTERMSIG(status));
		else
			callbacks_.onExit(WIFEXITED(status) ? WEXITSTATUS(status) : 255, -1);
	}
}

bool AgentProcess::reap(int *status, bool block)
{
	pid_t r;
	do {
		r = ::waitpid(pid_, status, block ? 0 : WNOHANG);
	} while (r < 0 && errno == EINTR);
	if (r == 0)
		return false;
	if (r < 0) {
		GVM_LOG(Daemon, Warning) << "waiting for agent " << pid_ << ": " << std::strerror(errno)
					 << ", taking it as gone";
		*status = 255 << 8;
	}
	reaped_ = true;
	pidPoll_.close();
	pidfd_.reset();
	return true;
}

Result<void> AgentProcess::signalGroup(int signum)
{
	if (reaped_)
		return fail(Error::fromErrno(ESRCH, "signalling the agent"));
	// The agent leads its process group (setsid), and an unreaped leader
	// keeps the group id from being reused.
	if (::kill(-pid_, signum) < 0 && errno != ESRCH)
		return fail(Error::fromErrno(errno, "signalling the agent's process group"));
	return {};
}

UniqueFd hostMountNamespace()
{
	if (::geteuid() != 0)
		return {};
	struct stat host{}, self{};
	if (::stat("/proc/1/ns/mnt", &host) < 0 || ::stat("/proc/self/ns/mnt", &self) < 0)
		return {};
	if (host.st_dev == self.st_dev && host.st_ino == self.st_ino)
		return {};
	UniqueFd fd(::open("/proc/1/ns/mnt", O_RDONLY | O_CLOEXEC));
	if (!fd)
		GVM_LOG(Daemon, Warning) << "opening the host's mount namespace: " << std::strerror(errno)
					 << ", ignoring (the agent sees gvmd's view of the file system)";
	return fd;
}

Result<CallerProcess> inspectCaller(pid_t pid, uid_t expectedUid)
{
	const std::string path = "/proc/" + std::to_string(pid) + "/status";
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd)
		return fail(Error::fromErrno(errno, "reading the caller's groups from " + path));
	std::string text;
	char buf[4096];
	for (;;) {
		ssize_t n = ::read(fd.get(), buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(Error::fromErrno(errno, "reading " + path));
		if (n == 0 || text.size() > 256 * 1024)
			break;
		text.append(buf, static_cast<size_t>(n));
	}

	// "Name:\tvalue" lines; the leading newline makes every field start
	// with one, the first included.
	text.insert(0, "\n");
	auto field = [&](const char *name) -> std::optional<std::string> {
		std::string key = std::string("\n") + name + ":";
		size_t at = text.find(key);
		if (at == std::string::npos)
			return std::nullopt;
		size_t start = at + key.size();
		size_t end = text.find('\n', start);
		return text.substr(start, end == std::string::npos ? std::string::npos : end - start);
	};
	auto numbers = [](const std::string &s) {
		std::vector<unsigned long> out;
		const char *p = s.c_str();
		while (*p) {
			char *end;
			errno = 0;
			unsigned long v = std::strtoul(p, &end, 10);
			if (end == p) {
				++p;
				continue;
			}
			if (errno == 0)
				out.push_back(v);
			p = end;
		}
		return out;
	};

	auto uids = field("Uid");
	auto groups = field("Groups");
	if (!uids || !groups)
		return fail(Error::fromErrno(EINVAL, "reading the caller's groups from " + path));
	// SO_PEERCRED names the effective uid at connect(); the pid may have
	// been reused since (the client gone, another process in its place).
	auto ids = numbers(*uids);
	if (ids.size() < 2 || ids[1] != expectedUid)
		return fail(Error::fromErrno(ESRCH, "the calling process " + std::to_string(pid) + " is gone"));
	CallerProcess out;
	for (unsigned long g : numbers(*groups))
		out.groups.push_back(static_cast<gid_t>(g));
	if (auto mask = field("Umask")) {
		errno = 0;
		char *end;
		unsigned long v = std::strtoul(mask->c_str(), &end, 8);
		if (errno == 0 && end != mask->c_str() && v <= 0777)
			out.umask = static_cast<mode_t>(v);
	}
	return out;
}

} // namespace gvm::daemon
