// SPDX-License-Identifier: Apache-2.0
#include "daemon/sandbox_isolation.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/scope_exit.h"
#include "common/unique_fd.h"
#include "daemon/isolation/agent_seccomp.h"
#include "daemon/isolation/cgroup.h"
#include "daemon/isolation/landlock.h"
#include "daemon/isolation/mount_view.h"
#include "daemon/isolation/workspace_changes.h"

namespace gvm::daemon {

namespace {

Error badIsolation(const std::string &what)
{
	return Error::internal("the proxy worker's isolation description: " + what);
}

bool isWithin(const std::string &path, const std::string &dir)
{
	if (dir == "/")
		return true;
	return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

// The caller's home directory, from the password database; "" when there is
// none worth layering (missing, "/", not a directory).
std::string homeOf(uid_t uid)
{
	long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
	std::vector<char> buffer(size > 0 ? static_cast<size_t>(size) : 16384);
	passwd entry{};
	passwd *found = nullptr;
	if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) != 0 || !found || !found->pw_dir)
		return {};
	std::string home = found->pw_dir;
	struct stat st{};
	if (home.empty() || home[0] != '/' || home == "/" || ::stat(home.c_str(), &st) < 0 || !S_ISDIR(st.st_mode))
		return {};
	return home;
}

// The real path of an existing hidden path and whether it is a directory
// (masks and Landlock act on what a symlink points to), or nothing.
struct Resolved {
	std::string path;
	bool directory = false;
};
std::optional<Resolved> resolve(const std::string &path)
{
	char real[PATH_MAX];
	if (!::realpath(path.c_str(), real))
		return std::nullopt;
	struct stat st{};
	if (::stat(real, &st) < 0)
		return std::nullopt;
	return Resolved{real, S_ISDIR(st.st_mode)};
}

// Entries of the workspace whose name matches one of `patterns` (".env*"),
// found without following symlinks, skipping .git and node_modules, within
// the scan bounds (past them, a warning: the masks cover what was found).
std::vector<std::string> scanWorkspace(const std::string &workspace, const std::vector<std::string> &patterns)
{
	std::vector<std::string> found;
	if (patterns.empty())
		return found;
	struct Pending {
		std::string path;
		int depth;
	};
	std::vector<Pending> stack{{workspace, 0}};
	size_t seen = 0;
	while (!stack.empty()) {
		Pending dir = std::move(stack.back());
		stack.pop_back();
		UniqueFd fd(::open(dir.path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
		if (!fd)
			continue;
		DIR *stream = ::fdopendir(fd.get());
		if (!stream)
			continue;
		(void)fd.release(); // the stream owns it now
		while (dirent *entry = ::readdir(stream)) {
			const std::string name = entry->d_name;
			if (name == "." || name == "..")
				continue;
			if (++seen > kMaxHiddenScanEntries) {
				GVM_LOG(Daemon, Warning) << "the workspace " << workspace << " has more than "
							 << kMaxHiddenScanEntries << " entries; hidden name patterns are "
							 << "applied to the first ones only";
				::closedir(stream);
				return found;
			}
			const std::string path = dir.path + "/" + name;
			for (const std::string &pattern : patterns)
				if (::fnmatch(pattern.c_str(), name.c_str(), 0) == 0) {
					found.push_back(path);
					break;
				}
			bool isDir = entry->d_type == DT_DIR;
			if (entry->d_type == DT_UNKNOWN) {
				struct stat st{};
				isDir = ::fstatat(::dirfd(stream), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
					S_ISDIR(st.st_mode);
			}
			if (isDir && name != ".git" && name != "node_modules" && dir.depth + 1 < kMaxHiddenScanDepth)
				stack.push_back({path, dir.depth + 1});
		}
		::closedir(stream);
	}
	return found;
}

Result<void> makeDirectory(const std::string &path, mode_t mode, uid_t uid, gid_t gid)
{
	if (::mkdir(path.c_str(), mode) < 0 && errno != EEXIST)
		return fail(Error::fromErrno(errno, "creating " + path));
	if (::chmod(path.c_str(), mode) < 0)
		return fail(Error::fromErrno(errno, "setting the mode of " + path));
	if (::chown(path.c_str(), uid, gid) < 0)
		return fail(Error::fromErrno(errno, "setting the owner of " + path));
	return {};
}

int cachedLandlockAbi()
{
	static const int abi = isolation::landlockAbi();
	return abi;
}

} // namespace

Result<IsolationPolicy> parseIsolationPolicy(const rpc::Json &json)
{
	IsolationPolicy out;
	if (!json.is_object())
		return fail(badIsolation("not an object"));
	auto workspace = json.find("workspace");
	if (workspace == json.end() || !workspace->is_string())
		return fail(badIsolation("no workspace mode"));
	const std::string mode = workspace->get<std::string>();
	if (mode == "overlay")
		out.filesystem.workspace = policy::WorkspaceMode::Overlay;
	else if (mode == "direct")
		out.filesystem.workspace = policy::WorkspaceMode::Direct;
	else if (mode == "readonly")
		out.filesystem.workspace = policy::WorkspaceMode::Readonly;
	else
		return fail(badIsolation("unknown workspace mode '" + mode + "'"));
	auto hidden = json.find("hidden");
	if (hidden == json.end() || !hidden->is_array())
		return fail(badIsolation("no hidden list"));
	for (const rpc::Json &h : *hidden) {
		if (!h.is_string())
			return fail(badIsolation("a hidden entry is not a string"));
		out.filesystem.hidden.push_back(h.get<std::string>());
	}
	if (auto allow = json.find("syscalls_allow"); allow != json.end() && allow->is_array())
		for (const rpc::Json &g : *allow) {
			bool known = false;
			for (size_t i = 0; i < std::size(policy::kSyscallGroupNames); ++i)
				if (g.is_string() && g.get<std::string>() == policy::kSyscallGroupNames[i]) {
					out.syscalls.allow |= 1u << i;
					known = true;
				}
			if (!known)
				return fail(badIsolation("unknown system call group " + g.dump()));
		}
	if (auto limits = json.find("limits"); limits != json.end() && limits->is_object()) {
		if (auto m = limits->find("memory"); m != limits->end() && m->is_number_unsigned())
			out.limits.memoryBytes = m->get<uint64_t>();
		if (auto p = limits->find("pids"); p != limits->end() && p->is_number_unsigned())
			out.limits.pids = p->get<uint32_t>();
		if (auto c = limits->find("cpu_millis"); c != limits->end() && c->is_number_unsigned())
			out.limits.cpuMillis = c->get<uint32_t>();
	}
	return out;
}

Result<std::shared_ptr<const isolation::AgentSeccompFilter>> SeccompFilters::get(policy::SyscallPolicy policy)
{
	if (auto it = filters_.find(policy.allow); it != filters_.end())
		return it->second;
	auto built = isolation::AgentSeccompFilter::build(policy);
	if (!built)
		return fail(std::move(built).error().wrap("building the agent's seccomp filter"));
	auto shared = std::make_shared<const isolation::AgentSeccompFilter>(std::move(*built));
	filters_[policy.allow] = shared;
	return shared;
}

std::string sandboxStateDir(const std::string &stateDir, const std::string &id)
{
	return stateDir + "/sandboxes/" + id;
}

std::string workspaceProblem(const std::string &path)
{
	if (path.empty() || path[0] != '/')
		return "the workspace must be an absolute path";
	if (path == "/")
		return "the root directory cannot be a workspace (the whole host would be writable); run from your "
		       "project's directory or pass --workspace DIR";
	for (const char *system : {"/proc", "/sys", "/dev", "/run", "/boot", "/usr", "/etc", "/bin", "/sbin", "/lib",
				   "/lib64", "/var/lib/gvm"})
		if (isWithin(path, system))
			return "the workspace cannot be in " + std::string(system);
	if (!isolation::overlayPathUsable(path))
		return "the workspace path contains ',', ':' or '\\', which overlayfs cannot take; use "
		       "`filesystem: {workspace: direct}` or another directory";
	return {};
}

std::string workingDirectoryProblem(const std::string &cwd, const std::string &workspace)
{
	if (isWithin(cwd, workspace))
		return {};
	for (const char *private_ : {"/tmp", "/dev/shm"})
		if (isWithin(cwd, private_))
			return "the working directory " + cwd + " is in " + private_ + ", which the sandbox replaces with a " +
			       "private one; start from the workspace (" + workspace + ") or a directory outside " +
			       private_;
	return {};
}

Result<PreparedIsolation> prepareIsolation(const IsolationRequest &request, SeccompFilters &filters)
{
	PreparedIsolation out;
	Rollback rollback;
	const policy::FilesystemPolicy &fs = request.policy.filesystem;
	const bool writableWorkspace = fs.workspace != policy::WorkspaceMode::Readonly;

	struct stat workspaceStat{};
	if (::stat(request.workspace.c_str(), &workspaceStat) < 0)
		return fail(Error::fromErrno(errno, "the workspace " + request.workspace));
	if (!S_ISDIR(workspaceStat.st_mode))
		return fail(Error::fromErrno(ENOTDIR, "the workspace " + request.workspace));
	if (std::string problem = workspaceProblem(request.workspace); !problem.empty() && writableWorkspace)
		return fail(Error(ErrorDomain::Rpc, rpc::kInvalidParams, problem));

	isolation::MountViewPlan::Input view;
	view.workspace = request.workspace;
	view.workspaceMode = fs.workspace;
	if (fs.workspace == policy::WorkspaceMode::Overlay) {
		// stateDir/sandboxes/<id>/{upper,work}: root's, except the upper
		// layer's top, which takes the workspace's owner and mode (it is
		// what the agent sees as the workspace directory itself).
		const std::string dir = sandboxStateDir(request.stateDir, request.id);
		GVM_TRY_VOID(makeDirectory(request.stateDir + "/sandboxes", 0700, 0, 0), "preparing the workspace layer");
		GVM_TRY_VOID(makeDirectory(dir, 0700, 0, 0), "preparing the workspace layer");
		rollback.add([dir] {
			UniqueFd parent(::open((dir + "/..").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
			if (parent)
				(void)isolation::removeTree(parent.get(), dir.substr(dir.rfind('/') + 1));
		});
		out.upperDir = dir + "/upper";
		view.workspaceUpper = out.upperDir;
		view.workspaceWork = dir + "/work";
		GVM_TRY_VOID(makeDirectory(view.workspaceUpper, workspaceStat.st_mode & 07777, workspaceStat.st_uid,
					   workspaceStat.st_gid),
			     "preparing the workspace layer");
		GVM_TRY_VOID(makeDirectory(view.workspaceWork, 0700, 0, 0), "preparing the workspace layer");
	}

	// The home directory gets a private writable layer unless the
	// workspace already covers it (and not in tests of Landlock alone:
	// the layer hides the home's secrets, a mount like the masks).
	const std::string home = homeOf(request.uid);
	struct stat homeStat{};
	if (request.maskMounts && !home.empty() && isolation::overlayPathUsable(home) &&
	    !isWithin(home, request.workspace) && !isWithin(home, "/tmp") && ::stat(home.c_str(), &homeStat) == 0) {
		view.home = home;
		view.homeScratch = request.sandboxDir + "/home";
		view.uid = homeStat.st_uid;
		view.gid = homeStat.st_gid;
		view.homeMode = homeStat.st_mode & 07777;
		GVM_TRY_VOID(makeDirectory(view.homeScratch, 0700, 0, 0), "preparing the home layer");
	}

	// What to hide: "~/x" in the caller's home, "/x" as written, and name
	// patterns found in the workspace.
	std::vector<std::string> patterns;
	std::vector<Resolved> hidden; // masked
	std::vector<std::string> landlockHidden;
	for (const std::string &entry : fs.hidden) {
		if (entry.rfind("~/", 0) == 0) {
			if (home.empty())
				continue;
			const std::string lexical = home + entry.substr(1);
			auto r = resolve(lexical);
			// In the home's layer the entry itself is whited out;
			// what a symlink there points to elsewhere is masked.
			struct stat st{};
			bool whitedOut = false;
			if (!view.home.empty() && ::lstat(lexical.c_str(), &st) == 0) {
				view.homeWhiteouts.push_back(entry.substr(2));
				whitedOut = true;
			}
			if (r) {
				if (!(whitedOut && isWithin(r->path, home)))
					hidden.push_back(*r);
				landlockHidden.push_back(r->path);
			}
		} else if (!entry.empty() && entry[0] == '/') {
			if (auto r = resolve(entry)) {
				hidden.push_back(*r);
				landlockHidden.push_back(r->path);
			}
		} else {
			patterns.push_back(entry);
		}
	}
	std::vector<Resolved> inWorkspace;
	for (const std::string &path : scanWorkspace(request.workspace, patterns))
		if (auto r = resolve(path))
			inWorkspace.push_back(*r);

	view.emptyFile = request.sandboxDir + "/empty";
	{
		UniqueFd empty(::open(view.emptyFile.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0));
		if (!empty || ::fchmod(empty.get(), 0) < 0)
			return fail(Error::fromErrno(errno, "creating " + view.emptyFile));
	}
	if (request.maskMounts)
		for (const auto &list : {&hidden, &inWorkspace})
			for (const Resolved &r : *list)
				(r.directory ? view.maskDirs : view.maskFiles).push_back(r.path);
	out.view = std::make_shared<const isolation::MountViewPlan>(std::move(view));
	const isolation::MountViewPlan::Input &planned = out.view->input();

	// Landlock, the second layer: the host read-only, the writable places
	// writable, the hidden paths closed. Hidden paths inside a writable
	// workspace are left to the masks: closing them here would split the
	// workspace into per-entry rules, and new files in it would be
	// unreadable.
	if (int abi = cachedLandlockAbi(); abi > 0) {
		isolation::LandlockView rules;
		rules.readOnly = {"/"};
		rules.readWrite = {"/tmp", "/dev/shm"};
		if (writableWorkspace)
			rules.readWrite.push_back(request.workspace);
		// The home's layer is writable as a whole (its secrets are
		// whited out), only while it is there: without it, the home
		// keeps the read-only rules above, its hidden paths closed.
		if (!planned.home.empty())
			rules.overlayReadWrite.push_back(planned.home);
		rules.writableFiles = {"/dev", "/proc"};
		// Paths below /tmp are gone anyway (the agent's /tmp is its own)
		// and would close /tmp itself.
		auto closable = [&](const std::string &path) {
			return !isWithin(path, "/tmp") && !(writableWorkspace && isWithin(path, request.workspace));
		};
		for (const std::string &path : landlockHidden)
			if (closable(path))
				rules.hidden.push_back(path);
		for (const std::string &dir : request.gvmdHidden)
			if (closable(dir))
				rules.hidden.push_back(dir);
		auto plan = isolation::LandlockPlan::build(rules, abi);
		if (!plan)
			return fail(std::move(plan).error().wrap("preparing the sandbox's Landlock rules"));
		out.landlock = std::make_shared<const isolation::LandlockPlan>(std::move(*plan));
	}

	auto seccomp = filters.get(request.policy.syscalls);
	if (!seccomp)
		return fail(std::move(seccomp).error());
	out.seccomp = std::move(*seccomp);

	// The cgroup. Limits the policy sets must hold, or the launch fails;
	// gvmd's defaults alone are worth a warning where cgroups are missing.
	const policy::ResourceLimits &limits = request.policy.limits;
	auto cgroup = isolation::SandboxCgroup::create(request.id, limits);
	if (cgroup) {
		out.cgroup = std::move(*cgroup);
	} else {
		const bool asked = limits.memoryBytes || limits.pids || limits.cpuMillis;
		if (asked || cgroup.error().code() != ENOTSUP)
			return fail(std::move(cgroup).error().wrap("creating the sandbox's cgroup"));
		GVM_LOG(Daemon, Warning) << "sandbox " << request.id << ": " << cgroup.error().message()
					 << "; running without resource limits";
	}

	rollback.release();
	return out;
}

} // namespace gvm::daemon
