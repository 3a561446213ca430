// SPDX-License-Identifier: Apache-2.0
//
// As root: the agent's seccomp filter, loaded in a forked child with
// loadInChild(), makes each escape-prone system call fail with EPERM (clone3
// with ENOSYS), including through the other x86 ABIs, while what tools need
// (fork, threads, posix_spawn, exec, inet/unix/route-netlink sockets, a
// python subprocess) keeps working; a policy's allowed groups relax it.
// Every denial is checked against a control run without the filter, so a
// call that would fail with the same errno anyway cannot pass for a denial.
#include <catch2/catch.hpp>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <linux/keyctl.h>
#include <linux/audit.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/netlink.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <map>
#include <netinet/in.h>
#include <optional>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <string>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "daemon/isolation/agent_seccomp.h"
#include "tests/support/process.h"

using namespace gvm;
using isolation::AgentSeccompFilter;
using policy::SyscallGroup;
using policy::SyscallPolicy;

extern char **environ;

namespace {

// x32 system calls are native numbers with this bit set (asm/unistd.h).
constexpr long kX32SyscallBit = 0x40000000;
// getpid in the x86_64 and x32 tables, and in the i386 table.
constexpr long kGetpid64 = 39;
constexpr long kGetpid32 = 20;

constexpr auto kChildTimeout = std::chrono::seconds(10);

SyscallPolicy allowing(std::initializer_list<SyscallGroup> groups)
{
	SyscallPolicy policy;
	for (SyscallGroup g : groups)
		policy.allow |= static_cast<uint32_t>(g);
	return policy;
}

// One filter per policy, built once for the whole program (as gvmd does).
const AgentSeccompFilter &filterFor(SyscallPolicy policy)
{
	static std::map<uint32_t, AgentSeccompFilter> filters;
	auto it = filters.find(policy.allow);
	if (it == filters.end()) {
		auto built = AgentSeccompFilter::build(policy);
		if (!built)
			FAIL("building the filter: " << built.error().message());
		it = filters.emplace(policy.allow, std::move(*built)).first;
	}
	return it->second;
}

// What happened in a child: the value its attempt reported, or how it died.
struct Outcome {
	std::optional<long> value; // the attempt's result, if it reported one
	int loadError = 0;         // loadInChild()'s errno, if it failed
	int signal = 0;            // the signal that killed it, if any
	bool timedOut = false;
};

std::ostream &operator<<(std::ostream &os, const Outcome &o)
{
	os << "{value=" << (o.value ? std::to_string(*o.value) : "none") << " loadError=" << o.loadError
	   << " signal=" << o.signal << (o.timedOut ? " timed out" : "") << "}";
	return os;
}

struct Report {
	int stage; // 1: loading the filter failed, 2: the attempt ran
	long value;
};

// Runs `attempt` in a forked child under `filter` (none: the control run).
// `setup` runs first, unconfined (e.g. to enter a private mount namespace).
// The child is its own process group, killed whole afterwards, so nothing
// it started outlives the case.
Outcome runInChild(const AgentSeccompFilter *filter, const std::function<long()> &attempt,
		   const std::function<void()> &setup = {})
{
	int fds[2];
	REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
	UniqueFd readEnd(fds[0]), writeEnd(fds[1]);
	pid_t pid = ::fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		// Catch2's handlers would report a crash of the child as a
		// failure of its own: a signal must kill the child, as it would
		// kill the agent.
		for (int sig : {SIGSEGV, SIGILL, SIGFPE, SIGABRT, SIGBUS, SIGTERM, SIGINT})
			::signal(sig, SIG_DFL);
		::setpgid(0, 0);
		readEnd.reset();
		if (setup)
			setup();
		Report report{2, 0};
		if (filter) {
			// The kernel requires no_new_privs to load a filter without
			// CAP_SYS_ADMIN; gvmd's agent child sets it the same way.
			if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
				report = Report{1, errno};
			else if (int err = filter->loadInChild(); err != 0)
				report = Report{1, err};
		}
		if (report.stage == 2)
			report.value = attempt();
		ssize_t n = ::write(writeEnd.get(), &report, sizeof(report));
		::_exit(n == sizeof(report) ? 0 : 1);
	}
	writeEnd.reset();
	::setpgid(pid, pid); // either of us may get there first

	Outcome outcome;
	Report report{};
	pollfd pfd{readEnd.get(), POLLIN, 0};
	int ready = ::poll(&pfd, 1, static_cast<int>(std::chrono::milliseconds(kChildTimeout).count()));
	if (ready == 1 && ::read(readEnd.get(), &report, sizeof(report)) == sizeof(report)) {
		if (report.stage == 1)
			outcome.loadError = static_cast<int>(report.value);
		else
			outcome.value = report.value;
	} else if (ready == 0) {
		outcome.timedOut = true;
		::kill(-pid, SIGKILL);
	}
	int status = 0;
	while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	if (WIFSIGNALED(status))
		outcome.signal = WTERMSIG(status);
	// Whatever the attempt started and left behind.
	::kill(-pid, SIGKILL);
	return outcome;
}

// 0 when a libc call returning -1/errno succeeded, else its errno.
long errnoOf(long r)
{
	return r < 0 ? errno : 0;
}

// Waits for a grandchild started by an attempt: its exit code, or -signal.
long exitCodeOf(pid_t pid)
{
	int status = 0;
	if (::waitpid(pid, &status, 0) < 0)
		return -1000 - errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

// clone() as a raw system call with the given flags, fork-style (no new
// stack): the new process exits at once. 0 or errno.
long rawClone(unsigned long flags)
{
	long r = ::syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
	if (r == 0)
		::_exit(0);
	if (r < 0)
		return errno;
	return exitCodeOf(static_cast<pid_t>(r)) == 0 ? 0 : -1;
}

// clone3() fork-style with the given flags. 0 or errno.
long rawClone3(unsigned long flags)
{
	clone_args args{};
	args.flags = flags;
	args.exit_signal = SIGCHLD;
	long r = ::syscall(SYS_clone3, &args, sizeof(args));
	if (r == 0)
		::_exit(0);
	if (r < 0)
		return errno;
	return exitCodeOf(static_cast<pid_t>(r)) == 0 ? 0 : -1;
}

long trySocket(long family, int type, int protocol)
{
	// Raw, so that high bits in the family reach the kernel as given.
	long fd = ::syscall(SYS_socket, family, type, protocol);
	if (fd < 0)
		return errno;
	::close(static_cast<int>(fd));
	return 0;
}

long tryIoUringSetup()
{
	io_uring_params params{};
	long fd = ::syscall(SYS_io_uring_setup, 1, &params);
	if (fd < 0)
		return errno;
	::close(static_cast<int>(fd));
	return 0;
}

long tryProcessVmReadv()
{
	char source[16] = "gvm seccomp";
	char copy[16] = {};
	iovec local{copy, sizeof(copy)};
	iovec remote{source, sizeof(source)};
	return errnoOf(::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0));
}

#if defined(__x86_64__)
// The i386 entry: getpid through `int $0x80` from 64-bit code. It returns
// a pid or -errno in eax.
long int80Getpid()
{
	long r;
	__asm__ volatile("int $0x80"
			 : "=a"(r)
			 : "a"(kGetpid32)
			 : "memory", "rcx", "r8", "r9", "r10", "r11");
	return r;
}
#endif

// Runs argv (an absolute path first) in a grandchild and returns its exit code.
long runProgram(std::vector<const char *> argv)
{
	argv.push_back(nullptr);
	pid_t pid = ::fork();
	if (pid < 0)
		return -1000 - errno;
	if (pid == 0) {
		::execve(argv[0], const_cast<char *const *>(argv.data()), environ);
		::_exit(127);
	}
	return exitCodeOf(pid);
}

// A mount namespace of the child's own, with a tmpfs at `dir`: mount
// attempts in it cannot touch the host's mounts, even if the filter failed.
void privateMountNamespace(const std::string &dir)
{
	if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
	    ::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=1m") != 0)
		::_exit(90);
}

// A denial: the call fails with `expected` under the filter, and not so
// without it (the control run), so the failure is the filter's doing.
struct Denial {
	const char *name;
	std::function<long()> attempt;
	int expected = EPERM;
	std::function<void()> setup = {};
};

void checkDenied(const AgentSeccompFilter &filter, const Denial &d)
{
	INFO("case: " << d.name);
	Outcome control = runInChild(nullptr, d.attempt, d.setup);
	INFO("without the filter: " << control);
	REQUIRE(control.value.has_value());
	CHECK(*control.value != d.expected);

	Outcome confined = runInChild(&filter, d.attempt, d.setup);
	INFO("under the filter: " << confined);
	REQUIRE(confined.value.has_value());
	CHECK(*confined.value == d.expected);
}

// What works: 0 under the filter.
void checkWorks(const AgentSeccompFilter &filter, const char *name, const std::function<long()> &attempt)
{
	INFO("case: " << name);
	Outcome confined = runInChild(&filter, attempt);
	INFO("under the filter: " << confined);
	REQUIRE(confined.value.has_value());
	CHECK(*confined.value == 0);
}

// A classic-BPF interpreter for what libseccomp emits, to run the exported
// program on seccomp_data the kernel of this machine cannot produce (its
// i386 entry may be switched off). nullopt on an unknown instruction.
std::optional<uint32_t> runBpf(std::span<const sock_filter> program, const seccomp_data &data)
{
	uint32_t a = 0, x = 0;
	uint32_t mem[BPF_MEMWORDS] = {};
	for (size_t pc = 0; pc < program.size(); ++pc) {
		const sock_filter &in = program[pc];
		uint32_t src = BPF_SRC(in.code) == BPF_X ? x : in.k;
		switch (BPF_CLASS(in.code)) {
		case BPF_LD:
			if (in.code == (BPF_LD | BPF_W | BPF_ABS) && in.k + 4 <= sizeof(data))
				std::memcpy(&a, reinterpret_cast<const char *>(&data) + in.k, 4);
			else if (in.code == (BPF_LD | BPF_IMM))
				a = in.k;
			else if (in.code == (BPF_LD | BPF_MEM) && in.k < BPF_MEMWORDS)
				a = mem[in.k];
			else
				return std::nullopt;
			break;
		case BPF_LDX:
			if (in.code == (BPF_LDX | BPF_IMM))
				x = in.k;
			else if (in.code == (BPF_LDX | BPF_MEM) && in.k < BPF_MEMWORDS)
				x = mem[in.k];
			else
				return std::nullopt;
			break;
		case BPF_ST:
		case BPF_STX:
			if (in.k >= BPF_MEMWORDS)
				return std::nullopt;
			mem[in.k] = BPF_CLASS(in.code) == BPF_ST ? a : x;
			break;
		case BPF_ALU:
			switch (BPF_OP(in.code)) {
			case BPF_AND: a &= src; break;
			case BPF_OR: a |= src; break;
			case BPF_ADD: a += src; break;
			case BPF_SUB: a -= src; break;
			case BPF_RSH: a >>= src; break;
			case BPF_LSH: a <<= src; break;
			default: return std::nullopt;
			}
			break;
		case BPF_JMP: {
			if (BPF_OP(in.code) == BPF_JA) {
				pc += in.k;
				break;
			}
			bool taken;
			switch (BPF_OP(in.code)) {
			case BPF_JEQ: taken = a == src; break;
			case BPF_JGT: taken = a > src; break;
			case BPF_JGE: taken = a >= src; break;
			case BPF_JSET: taken = (a & src) != 0; break;
			default: return std::nullopt;
			}
			pc += taken ? in.jt : in.jf;
			break;
		}
		case BPF_RET:
			return BPF_RVAL(in.code) == BPF_A ? a : in.k;
		case BPF_MISC:
			if (BPF_MISCOP(in.code) == BPF_TAX)
				x = a;
			else
				a = x;
			break;
		default:
			return std::nullopt;
		}
	}
	return std::nullopt; // fell off the end: the kernel would reject it
}

seccomp_data syscallData(uint32_t arch, int nr, std::initializer_list<uint64_t> args = {})
{
	seccomp_data data{};
	data.arch = arch;
	data.nr = nr;
	size_t i = 0;
	for (uint64_t arg : args)
		data.args[i++] = arg;
	return data;
}

constexpr uint32_t kRetEperm = SECCOMP_RET_ERRNO | EPERM;

} // namespace

TEST_CASE("the filter is a small classic BPF program for every policy", "[seccomp]")
{
	const auto &strict = filterFor({});
	const auto &relaxed =
		filterFor(allowing({SyscallGroup::Namespaces, SyscallGroup::Ptrace, SyscallGroup::IoUring}));
	CHECK(strict.instructionCount() > 0);
	CHECK(strict.instructionCount() <= BPF_MAXINSNS);
	CHECK(relaxed.instructionCount() < strict.instructionCount());
	CHECK(strict.program().size() == strict.instructionCount());
	CHECK(strict.policy().allow == 0);

	// A copy loads like the original (the program is owned, not pointed to).
	AgentSeccompFilter copy = strict;
	Outcome o = runInChild(&copy, [] { return errnoOf(::syscall(SYS_bpf, BPF_MAP_CREATE, nullptr, 0)); });
	REQUIRE(o.value.has_value());
	CHECK(*o.value == EPERM);
}

TEST_CASE("loadInChild reports the kernel's refusal as an errno", "[seccomp]")
{
	// Neither no_new_privs nor CAP_SYS_ADMIN: the kernel refuses (EACCES)
	// rather than let a set-uid program run under a filter.
	const auto &filter = filterFor({});
	Outcome o = runInChild(nullptr, [&filter]() -> long {
		if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0)
			return -1;
		return filter.loadInChild();
	});
	REQUIRE(o.value.has_value());
	CHECK(*o.value == EACCES);
}

TEST_CASE("escape-prone system calls fail with EPERM under the filter", "[seccomp]")
{
	const auto &filter = filterFor({});
	test::TempDir dir;
	const std::string mountPoint = dir.path();

	// A sibling to attach to; killed when the case ends.
	auto sibling = test::Child::start({"/bin/sleep", "60"});
	REQUIRE(sibling.pid() > 0);
	const pid_t siblingPid = sibling.pid();

	const Denial denials[] = {
		// Ptrace group.
		{"ptrace attach", [=] { return errnoOf(::ptrace(PTRACE_ATTACH, siblingPid, nullptr, nullptr)); }},
		{"process_vm_readv", tryProcessVmReadv},
		{"pidfd_getfd",
		 [] {
			 long pidfd = ::syscall(SYS_pidfd_open, ::getpid(), 0);
			 if (pidfd < 0)
				 return -1000L - errno;
			 return errnoOf(::syscall(SYS_pidfd_getfd, pidfd, 0, 0));
		 }},
		// Mounts (in a private mount namespace set up before the filter).
		{"mount tmpfs",
		 [=] { return errnoOf(::mount("tmpfs", mountPoint.c_str(), "tmpfs", 0, "size=1m")); },
		 EPERM, [=] { privateMountNamespace(mountPoint); }},
		{"umount2", [=] { return errnoOf(::umount2(mountPoint.c_str(), 0)); }, EPERM,
		 [=] { privateMountNamespace(mountPoint); }},
		{"fsopen", [] { return errnoOf(::syscall(SYS_fsopen, "tmpfs", 0)); }},
		{"open_tree", [] { return errnoOf(::syscall(SYS_open_tree, AT_FDCWD, "/", 0)); }},
		{"name_to_handle_at",
		 [] {
			 alignas(file_handle) unsigned char buffer[sizeof(file_handle) + MAX_HANDLE_SZ] = {};
			 auto *handle = reinterpret_cast<file_handle *>(buffer);
			 handle->handle_bytes = MAX_HANDLE_SZ;
			 int mountId = 0;
			 return errnoOf(::name_to_handle_at(AT_FDCWD, "/", handle, &mountId, 0));
		 }},
		// Namespaces group.
		{"unshare(CLONE_NEWNET)", [] { return errnoOf(::unshare(CLONE_NEWNET)); }},
		{"unshare(CLONE_NEWUSER)", [] { return errnoOf(::unshare(CLONE_NEWUSER)); }},
		{"setns",
		 [] {
			 int fd = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
			 if (fd < 0)
				 return -1000L - errno;
			 return errnoOf(::setns(fd, CLONE_NEWNET));
		 }},
		{"clone(CLONE_NEWNET)", [] { return rawClone(CLONE_NEWNET); }},
		{"clone(CLONE_NEWUSER|CLONE_NEWNS)", [] { return rawClone(CLONE_NEWUSER | CLONE_NEWNS); }},
		{"clone(CLONE_NEWPID)", [] { return rawClone(CLONE_NEWPID); }},
		{"clone3", [] { return rawClone3(0); }, ENOSYS},
		{"clone3(CLONE_NEWNET)", [] { return rawClone3(CLONE_NEWNET); }, ENOSYS},
		// Sockets.
		{"socket(AF_PACKET, SOCK_RAW)", [] { return trySocket(AF_PACKET, SOCK_RAW, 0); }},
		{"socket(AF_PACKET, SOCK_DGRAM|SOCK_CLOEXEC)",
		 [] { return trySocket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0); }},
		// The kernel reads the family as an int: high bits must not
		// slip past the rule.
		{"socket(AF_PACKET | 1<<32)", [] { return trySocket((1L << 32) | AF_PACKET, SOCK_RAW, 0); }},
		{"socket(AF_VSOCK, SOCK_STREAM)", [] { return trySocket(AF_VSOCK, SOCK_STREAM, 0); }},
		{"socket(AF_INET, SOCK_RAW, ICMP)", [] { return trySocket(AF_INET, SOCK_RAW, IPPROTO_ICMP); }},
		{"socket(AF_INET6, SOCK_RAW|SOCK_NONBLOCK, ICMPV6)",
		 [] { return trySocket(AF_INET6, SOCK_RAW | SOCK_NONBLOCK, IPPROTO_ICMPV6); }},
		{"socket(AF_INET, SOCK_PACKET)", [] { return trySocket(AF_INET, SOCK_PACKET, htons(3)); }},
		{"socket(AF_NETLINK, NETLINK_AUDIT)", [] { return trySocket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT); }},
		{"socket(AF_NETLINK, NETLINK_NETFILTER)",
		 [] { return trySocket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER); }},
		{"socket(AF_NETLINK, SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)",
		 [] { return trySocket(AF_NETLINK, SOCK_DGRAM, NETLINK_KOBJECT_UEVENT); }},
		// The rest.
		{"io_uring_setup", tryIoUringSetup},
		{"bpf", [] {
			 bpf_attr attr{};
			 return errnoOf(::syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)));
		 }},
		{"perf_event_open",
		 [] {
			 perf_event_attr attr{};
			 attr.size = sizeof(attr);
			 attr.type = PERF_TYPE_SOFTWARE;
			 attr.config = PERF_COUNT_SW_TASK_CLOCK;
			 long fd = ::syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
			 return errnoOf(fd);
		 }},
		{"keyctl", [] {
			 return errnoOf(::syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1));
		 }},
		{"add_key", [] {
			 return errnoOf(::syscall(SYS_add_key, "user", "gvm-test", "x", 1, KEY_SPEC_PROCESS_KEYRING));
		 }},
		{"userfaultfd", [] { return errnoOf(::syscall(SYS_userfaultfd, O_CLOEXEC)); }},
		{"finit_module", [] { return errnoOf(::syscall(SYS_finit_module, -1, "", 0)); }},
		{"delete_module", [] { return errnoOf(::syscall(SYS_delete_module, "gvm_none", O_NONBLOCK)); }},
		{"personality(PER_LINUX32)", [] { return errnoOf(::personality(PER_LINUX32)); }},
		{"personality(ADDR_NO_RANDOMIZE)", [] { return errnoOf(::personality(ADDR_NO_RANDOMIZE)); }},
		// An x32 call: x86_64's audit arch with __X32_SYSCALL_BIT set
		// (ENOSYS without the filter on a kernel without x32).
		{"x32 getpid", [] { return errnoOf(::syscall(kX32SyscallBit | kGetpid64)); }},
	};
	for (const Denial &d : denials)
		checkDenied(filter, d);
}

#if defined(__x86_64__)
TEST_CASE("other ABIs are denied whole and argument checks hold on all 64 bits", "[seccomp]")
{
	const auto &filter = filterFor({});
	// The exported program, run on what the kernel would pass for an i386
	// getpid and for some native calls.
	// (An instruction the interpreter does not know reads as 0xdeadbeef,
	// which no check expects.)
	auto verdict = [&](const seccomp_data &d) { return runBpf(filter.program(), d).value_or(0xdeadbeefU); };
	CHECK(verdict(syscallData(AUDIT_ARCH_I386, kGetpid32)) == kRetEperm);
	CHECK(verdict(syscallData(AUDIT_ARCH_X86_64, kGetpid64)) == SECCOMP_RET_ALLOW);
	CHECK(verdict(syscallData(AUDIT_ARCH_X86_64, kX32SyscallBit | kGetpid64)) == kRetEperm);
	CHECK(verdict(syscallData(AUDIT_ARCH_X86_64, SYS_ptrace)) == kRetEperm);
	CHECK(verdict(syscallData(AUDIT_ARCH_X86_64, SYS_clone3)) == (SECCOMP_RET_ERRNO | ENOSYS));
	// personality's query, zero- or sign-extended, and PER_LINUX pass.
	CHECK(verdict(syscallData(AUDIT_ARCH_X86_64, SYS_personality, {0xffffffffULL})) == SECCOMP_RET_ALLOW);
	CHECK(verdict(syscallData(AUDIT_ARCH_X86_64, SYS_personality, {~0ULL})) == SECCOMP_RET_ALLOW);
	CHECK(verdict(syscallData(AUDIT_ARCH_X86_64, SYS_personality, {0})) == SECCOMP_RET_ALLOW);
	CHECK(verdict(syscallData(AUDIT_ARCH_X86_64, SYS_personality, {PER_LINUX32})) == kRetEperm);
	// Route netlink passes; other netlink protocols and high bits do not.
	CHECK(verdict(syscallData(AUDIT_ARCH_X86_64, SYS_socket, {AF_NETLINK, SOCK_RAW, NETLINK_ROUTE})) ==
	      SECCOMP_RET_ALLOW);
	CHECK(verdict(syscallData(AUDIT_ARCH_X86_64, SYS_socket, {AF_NETLINK, SOCK_RAW, NETLINK_GENERIC})) ==
	      kRetEperm);
	CHECK(verdict(syscallData(AUDIT_ARCH_X86_64, SYS_socket, {(1ULL << 32) | AF_VSOCK, SOCK_STREAM, 0})) ==
	      kRetEperm);
	CHECK(verdict(syscallData(AUDIT_ARCH_X86_64, SYS_clone, {(1ULL << 32) | CLONE_NEWUSER})) == kRetEperm);

	// The real thing, where the kernel has the i386 entry. Some kernels
	// switch it off (ia32_emulation=0): `int $0x80` then faults
	// (SIGSEGV) before any system call, so nothing reaches the filter.
	Outcome control = runInChild(nullptr, int80Getpid);
	Outcome confined = runInChild(&filter, int80Getpid);
	INFO("without the filter: " << control << ", under it: " << confined);
	if (control.value) {
		CHECK(*control.value > 0);
		REQUIRE(confined.value.has_value());
		CHECK(*confined.value == -EPERM);
	} else {
		WARN("this kernel has no i386 system call entry (int $0x80 faults); only the exported program was checked");
		CHECK(control.signal == SIGSEGV);
		CHECK(confined.signal == SIGSEGV);
	}
}
#endif

TEST_CASE("what tools need keeps working under the filter", "[seccomp]")
{
	const auto &filter = filterFor({});

	checkWorks(filter, "fork + waitpid", [] {
		pid_t pid = ::fork();
		if (pid < 0)
			return -1000L - errno;
		if (pid == 0)
			::_exit(7);
		return exitCodeOf(pid) == 7 ? 0L : -1L;
	});
	checkWorks(filter, "vfork", [] {
		pid_t pid = ::vfork();
		if (pid < 0)
			return -1000L - errno;
		if (pid == 0)
			::_exit(7);
		return exitCodeOf(pid) == 7 ? 0L : -1L;
	});
	checkWorks(filter, "clone without namespace flags", [] { return rawClone(0); });
	checkWorks(filter, "pthread_create (clone3 falls back to clone)", [] {
		static int ran = 0;
		pthread_t thread;
		int err = ::pthread_create(
			&thread, nullptr,
			[](void *) -> void * {
				ran = 1;
				return nullptr;
			},
			nullptr);
		if (err != 0)
			return static_cast<long>(err);
		::pthread_join(thread, nullptr);
		return ran == 1 ? 0L : -1L;
	});
	checkWorks(filter, "posix_spawn /bin/true", [] {
		pid_t pid;
		const char *argv[] = {"/bin/true", nullptr};
		int err = ::posix_spawn(&pid, "/bin/true", nullptr, nullptr, const_cast<char *const *>(argv), environ);
		if (err != 0)
			return static_cast<long>(err);
		return exitCodeOf(pid);
	});
	checkWorks(filter, "execve /bin/sh -c true", [] { return runProgram({"/bin/sh", "-c", "true"}); });
	checkWorks(filter, "socket(AF_INET, SOCK_STREAM)", [] { return trySocket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); });
	checkWorks(filter, "socket(AF_INET6, SOCK_DGRAM)", [] { return trySocket(AF_INET6, SOCK_DGRAM, 0); });
	checkWorks(filter, "socket(AF_UNIX, SOCK_STREAM)", [] { return trySocket(AF_UNIX, SOCK_STREAM, 0); });
	checkWorks(filter, "socket(AF_UNIX, SOCK_DGRAM)", [] { return trySocket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0); });
	checkWorks(filter, "socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)",
		   [] { return trySocket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE); });
	checkWorks(filter, "socket(AF_NETLINK, SOCK_DGRAM, NETLINK_ROUTE)",
		   [] { return trySocket(AF_NETLINK, SOCK_DGRAM, NETLINK_ROUTE); });
	checkWorks(filter, "personality query", [] { return errnoOf(::personality(0xffffffff)); });
	checkWorks(filter, "personality(PER_LINUX)", [] { return errnoOf(::personality(PER_LINUX)); });

	const std::string python = test::findPython("");
	checkWorks(filter, "python3 subprocess.run", [&python] {
		return runProgram({python.c_str(), "-c", "import subprocess; subprocess.run(['true'], check=True)"});
	});
}

TEST_CASE("a policy's allowed groups relax only their group", "[seccomp]")
{
	auto sibling = test::Child::start({"/bin/sleep", "60"});
	REQUIRE(sibling.pid() > 0);
	const pid_t siblingPid = sibling.pid();

	auto ptraceAttach = [=] { return errnoOf(::ptrace(PTRACE_ATTACH, siblingPid, nullptr, nullptr)); };
	auto unshareUser = [] { return errnoOf(::unshare(CLONE_NEWUSER)); };

	SECTION("namespaces")
	{
		const auto &filter = filterFor(allowing({SyscallGroup::Namespaces}));
		checkWorks(filter, "unshare(CLONE_NEWUSER)", unshareUser);
		checkWorks(filter, "unshare(CLONE_NEWNET)", [] { return errnoOf(::unshare(CLONE_NEWNET)); });
		checkWorks(filter, "clone(CLONE_NEWNET)", [] { return rawClone(CLONE_NEWNET); });
		checkWorks(filter, "clone3", [] { return rawClone3(0); });
		checkDenied(filter, {"ptrace attach", ptraceAttach});
		checkDenied(filter, {"io_uring_setup", tryIoUringSetup});
	}
	SECTION("ptrace")
	{
		const auto &filter = filterFor(allowing({SyscallGroup::Ptrace}));
		checkWorks(filter, "ptrace attach", ptraceAttach);
		checkWorks(filter, "process_vm_readv", tryProcessVmReadv);
		checkDenied(filter, {"unshare(CLONE_NEWUSER)", unshareUser});
		checkDenied(filter, {"io_uring_setup", tryIoUringSetup});
	}
	SECTION("io_uring")
	{
		const auto &filter = filterFor(allowing({SyscallGroup::IoUring}));
		checkWorks(filter, "io_uring_setup", tryIoUringSetup);
		checkDenied(filter, {"ptrace attach", ptraceAttach});
		checkDenied(filter, {"clone3", [] { return rawClone3(0); }, ENOSYS});
	}
}
