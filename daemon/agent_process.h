// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <sys/types.h>
#include <vector>

#include "common/loop.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace gvm::isolation {
class MountViewPlan;
class LandlockPlan;
class AgentSeccompFilter;
} // namespace gvm::isolation

namespace gvm::daemon {

// What to run and as whom. Everything here comes from the caller (argv,
// env, cwd, stdio) or from the kernel about the caller (ids, groups); gvmd
// never opens a path of the caller's as root: the working directory and the
// program are reached only after the switch to the caller's ids.
struct AgentSpec {
	std::vector<std::string> argv; // non-empty; argv[0] is looked up in PATH
	std::vector<std::string> env;  // "K=V", exactly what the agent gets
	std::string cwd;
	uid_t uid = 0;
	gid_t gid = 0;
	std::vector<gid_t> groups; // supplementary groups
	mode_t umask = 022;        // the caller's
	bool tty = false;          // stdin is a terminal to make controlling
	std::array<UniqueFd, 3> stdio; // become the agent's 0, 1, 2
	// When valid, the child joins this mount namespace (the host's, see
	// hostMountNamespace()) before dropping privileges.
	UniqueFd mountNamespace;

	// Sandbox mode (absent: cooperative). The agent runs in the sandbox's
	// network namespace and in new pid, mount, uts and ipc namespaces,
	// under a small init (pid 1) that forwards signals and reports the
	// agent's exit; it has no capabilities, even as root, and
	// no_new_privs.
	struct Isolation {
		UniqueFd netns;
		// Bind-mounted read-only over kSystemCaBundle, kJavaKeystore
		// (where the host has one) and /etc/resolv.conf in the agent's
		// mount namespace.
		std::string caBundle;
		std::string javaKeystore;
		std::string resolvConf;
		// Directories covered by an empty read-only tmpfs (gvmd's
		// runtime, socket and state directories).
		std::vector<std::string> hidden;
		std::string hostname;
		// Isolation beyond the network (each optional): the file
		// system view, built by the init; Landlock rules and the
		// seccomp filter, applied by the agent just before execve();
		// the cgroup the init joins first (its cgroup.procs files).
		std::shared_ptr<const isolation::MountViewPlan> view;
		std::shared_ptr<const isolation::LandlockPlan> landlock;
		std::shared_ptr<const isolation::AgentSeccompFilter> seccomp;
		std::vector<UniqueFd> cgroupProcs;
	};
	std::optional<Isolation> isolation;
};

// Where the distribution keeps its CA bundle; in a sandbox the sandbox's
// bundle is mounted there.
inline constexpr char kSystemCaBundle[] = "/etc/ssl/certs/ca-certificates.crt";
// Debian's Java trust store, which every JDK's lib/security/cacerts links to.
inline constexpr char kJavaKeystore[] = "/etc/ssl/certs/java/cacerts";

// The agent of one sandbox, a direct child of gvmd: forked, switched to the
// caller's identity and exec'd; then watched through a pidfd until it
// exits, and reaped. Owned by its Sandbox, on gvmd's loop. The agent leads
// its own session and process group (setsid), so signals go to the group.
//
// start() reports through onStarted whether the exec succeeded (failures
// name the step: "cannot run 'foo': No such file or directory", "cannot
// enter working directory /x as uid 1000: Permission denied"); only after a
// successful start does onExit follow. Callbacks must not destroy the
// object at once (Loop::deleteLater does it later). Destroying it stops watching;
// an agent still running keeps running (gvmd signals it first when it
// means to end it).
class AgentProcess
{
public:
	struct Callbacks {
		// The exec happened, or why it did not (the child is reaped then).
		std::function<void(Result<void>)> onStarted;
		// The agent exited: its exit status, or the signal that ended it
		// (the other is -1).
		std::function<void(int status, int signal)> onExit;
	};

	static Result<std::unique_ptr<AgentProcess>> start(Loop &loop, AgentSpec spec, Callbacks callbacks);
	~AgentProcess();

	pid_t pid() const { return pid_; }
	bool running() const { return !reaped_; }

	// Sends signum to the agent's process group; only while the agent is
	// unreaped, so its pid (the group id) cannot have been reused.
	Result<void> signalGroup(int signum);

private:
	AgentProcess(Loop &loop, Callbacks callbacks, pid_t pid, UniqueFd pidfd, UniqueFd errorPipe,
		     std::string program, std::string cwd, uid_t uid);
	static Result<std::unique_ptr<AgentProcess>> watch(Loop &loop, Callbacks callbacks, pid_t pid, UniqueFd pidfd,
							   UniqueFd reportRead, const AgentSpec &spec);
	void onErrorPipe();
	void onPidfd();
	// Collects the exit status; true once the child is reaped.
	bool reap(int *status, bool block);

	Loop &loop_;
	Callbacks callbacks_;
	pid_t pid_;
	UniqueFd pidfd_;
	UniqueFd errorPipe_;
	UvHandle<uv_poll_t> pidPoll_;
	UvHandle<uv_poll_t> errorPoll_;
	std::string program_;
	std::string cwd_;
	uid_t uid_;
	// Sandbox mode: the init's report of the agent's wait status (the
	// init itself cannot die of the agent's signal).
	UniqueFd statusPipe_;
	bool started_ = false;
	bool reaped_ = false;
};

// The host's mount namespace, when gvmd runs in another one (systemd's
// ProtectSystem= gives gvmd a read-only view of /usr, /etc...): an open fd
// of /proc/1/ns/mnt for AgentSpec::mountNamespace, or an invalid fd when
// gvmd already shares PID 1's namespace or cannot join it (not root).
UniqueFd hostMountNamespace();

// What the agent inherits from its caller besides uid and gid, read from
// the kernel (/proc/PID/status), never from the request.
struct CallerProcess {
	std::vector<gid_t> groups; // "Groups:"
	mode_t umask = 022;        // "Umask:" (022 if the kernel does not say)
};

// Reads the caller's process, after checking that it still has the expected
// effective uid (a pid can be reused between connect() and now).
Result<CallerProcess> inspectCaller(pid_t pid, uid_t expectedUid);

} // namespace gvm::daemon
