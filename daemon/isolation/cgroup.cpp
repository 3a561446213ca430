// SPDX-License-Identifier: Apache-2.0
#include "daemon/isolation/cgroup.h"

#include <functional>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <mutex>
#include <set>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "common/c_ptr.h"
#include "common/file.h"
#include "common/log.h"
#include "common/scope_exit.h"

namespace gvm::isolation {

namespace {

using Clock = std::chrono::steady_clock;

// Bounds on what gvmd reads from kernel files: mountinfo of a host with
// many mounts, cgroup.procs of a sandbox at its pids limit (7 digits and a
// newline per process), and the small single-value files.
constexpr size_t kMaxMountinfoBytes = 8 * 1024 * 1024;
constexpr size_t kMaxProcsBytes = 1024 * 1024;
constexpr size_t kMaxValueBytes = 64 * 1024;

// How often destroy() looks again at a cgroup it is emptying.
constexpr std::chrono::milliseconds kDestroyPollInterval{5};
// How many times the processes of gvmd's v2 cgroup are moved before giving
// up (each round moves every process listed; a process forked during a
// round is moved by the next).
constexpr int kMoveRounds = 10;

// The controllers every sandbox needs, and the v2 subtree_control line that
// hands them down.
constexpr const char *kRequiredControllers[] = {"memory", "pids", "cpu"};
constexpr char kSubtreeControl[] = "+memory +pids +cpu";
// Options of a v1 cgroup mount that are not controllers (besides name=
// and release_agent=).
constexpr std::string_view kV1MountFlags[] = {"rw", "ro", "none", "all", "noprefix", "xattr", "clone_children",
					      "cpuset_v2_mode", "favordynmods"};
constexpr char kNoHierarchyHint[] = "; resource limits need cgroup v2 or v1 pids+memory+cpu";

bool isSandboxName(std::string_view name)
{
	return name.size() == 8 &&
	       std::all_of(name.begin(), name.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool exists(const std::string &path)
{
	return ::access(path.c_str(), F_OK) == 0;
}

void sleepFor(std::chrono::milliseconds duration)
{
	timespec ts{};
	ts.tv_sec = static_cast<time_t>(duration.count() / 1000);
	ts.tv_nsec = static_cast<long>((duration.count() % 1000) * 1000000);
	while (::nanosleep(&ts, &ts) < 0 && errno == EINTR) {
	}
}

std::vector<std::string_view> split(std::string_view text, char sep)
{
	std::vector<std::string_view> out;
	size_t start = 0;
	while (start <= text.size()) {
		size_t end = text.find(sep, start);
		if (end == std::string_view::npos)
			end = text.size();
		out.push_back(text.substr(start, end - start));
		start = end + 1;
	}
	return out;
}

std::string_view trim(std::string_view text)
{
	while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
		text.remove_suffix(1);
	while (!text.empty() && (text.front() == '\n' || text.front() == ' '))
		text.remove_prefix(1);
	return text;
}

// mountinfo escapes ' ', '\t', '\n' and '\\' in paths as \ooo.
std::string unescapeMountPath(std::string_view text)
{
	std::string out;
	for (size_t i = 0; i < text.size(); ++i) {
		if (text[i] == '\\' && i + 3 < text.size() &&
		    std::all_of(text.begin() + static_cast<std::ptrdiff_t>(i) + 1,
				text.begin() + static_cast<std::ptrdiff_t>(i) + 4, [](char c) { return c >= '0' && c <= '7'; })) {
			out += static_cast<char>((text[i + 1] - '0') * 64 + (text[i + 2] - '0') * 8 + (text[i + 3] - '0'));
			i += 3;
		} else {
			out += text[i];
		}
	}
	return out;
}

bool contains(const std::vector<std::string> &list, std::string_view item)
{
	return std::find(list.begin(), list.end(), item) != list.end();
}

// Writes one value to a cgroup file in a single write(), as the kernel
// wants it. The error names the value and the file.
Result<void> writeCgroupFile(const std::string &path, std::string_view value)
{
	UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
	if (!fd)
		return fail(Error::fromErrno(errno, "opening " + path));
	ssize_t n;
	do {
		n = ::write(fd.get(), value.data(), value.size());
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return fail(Error::fromErrno(errno, "writing " + std::string(value) + " to " + path));
	if (static_cast<size_t>(n) != value.size())
		return fail(Error::fromErrno(EIO, "writing " + std::string(value) + " to " + path + " (short write)"));
	return {};
}

Result<uint64_t> parseNumber(std::string_view text, const std::string &path)
{
	uint64_t value = 0;
	auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
	if (ec != std::errc() || end != text.data() + text.size() || text.empty())
		return fail(Error::fromErrno(EINVAL, "parsing " + path + " (\"" + std::string(text) + "\")"));
	return value;
}

// A number file, or "max" (absent).
Result<std::optional<uint64_t>> readLimit(const std::string &path)
{
	auto text = readFileBounded(path, kMaxValueBytes);
	if (!text)
		return fail(std::move(text).error());
	std::string_view value = trim(*text);
	if (value == "max")
		return std::optional<uint64_t>();
	auto number = parseNumber(value, path);
	if (!number)
		return fail(std::move(number).error());
	return std::optional<uint64_t>(*number);
}

Result<uint64_t> readNumber(const std::string &path)
{
	auto text = readFileBounded(path, kMaxValueBytes);
	if (!text)
		return fail(std::move(text).error());
	return parseNumber(trim(*text), path);
}

// The pids of cgroup.procs; none when the cgroup is gone.
Result<std::vector<pid_t>> readProcs(const std::string &dir)
{
	const std::string path = dir + "/cgroup.procs";
	auto text = readFileBounded(path, kMaxProcsBytes);
	if (!text) {
		if (text.error().domain() == ErrorDomain::Errno && (text.error().code() == ENOENT || text.error().code() == ENODEV))
			return std::vector<pid_t>();
		return fail(std::move(text).error());
	}
	std::vector<pid_t> pids;
	for (std::string_view line : split(*text, '\n')) {
		if (line.empty())
			continue;
		auto pid = parseNumber(line, path);
		if (!pid)
			return fail(std::move(pid).error());
		pids.push_back(static_cast<pid_t>(*pid));
	}
	return pids;
}

// mkdir that accepts an existing directory.
Result<void> makeDirectory(const std::string &path)
{
	if (::mkdir(path.c_str(), 0755) < 0 && errno != EEXIST)
		return fail(Error::fromErrno(errno, "creating " + path));
	return {};
}

std::string joinControllers(const std::vector<std::string> &names)
{
	std::string out;
	for (const std::string &n : names)
		out += (out.empty() ? "" : ", ") + n;
	return out;
}

// Where gvm's sandbox cgroups live, as found on this host. Every *Base is
// the directory holding the sandboxes' cgroups in that controller's
// hierarchy (all the same on v2).
struct Layout {
	CgroupVersion version = CgroupVersion::V2;
	std::string memoryBase, pidsBase, cpuBase, cpuacctBase, freezerBase;
	std::vector<std::string> bases; // distinct, in creation order
	std::string description;

	// v2 only: the cgroup whose controllers gvmd hands down (X in the
	// header), whether it is the root, and where gvmd runs now.
	std::string delegated;
	bool delegatedIsRoot = false;
	std::string own;
};

Error noHierarchy(std::string_view controller)
{
	return Error::fromErrno(ENOTSUP, "no cgroup hierarchy with the " + std::string(controller) +
						 " controller is mounted" + kNoHierarchyHint);
}

// gvmd's v2 cgroup path from /proc/self/cgroup ("0::/path").
Result<std::string> ownV2Path()
{
	auto text = readFileBounded("/proc/self/cgroup", kMaxValueBytes);
	if (!text)
		return fail(std::move(text).error());
	for (std::string_view line : split(*text, '\n'))
		if (line.substr(0, 3) == "0::")
			return std::string(line.substr(3));
	return fail(Error::fromErrno(ENOENT, "/proc/self/cgroup has no cgroup v2 line"));
}

Result<Layout> v2Layout(const CgroupMounts::Mount &mount)
{
	Layout layout;
	layout.version = CgroupVersion::V2;
	auto own = ownV2Path();
	if (!own)
		return fail(std::move(own).error());
	// The mount shows the hierarchy from its root (in a cgroup namespace,
	// or for a bind mount of a subtree): gvmd's cgroup must be below it.
	std::string rel = *own;
	if (mount.root != "/") {
		if (rel != mount.root && rel.compare(0, mount.root.size() + 1, mount.root + "/") != 0)
			return fail(Error::fromErrno(ENOENT, "gvmd's cgroup " + *own + " is not below " + mount.root +
								     ", the cgroup mounted at " + mount.mountPoint));
		rel = rel.substr(mount.root.size());
	}
	layout.own = mount.mountPoint + (rel == "/" ? "" : rel);

	// After create() moved gvmd into X/daemon, X is the delegated cgroup.
	layout.delegated = layout.own;
	const size_t slash = layout.own.rfind('/');
	if (layout.own.size() > mount.mountPoint.size() && layout.own.substr(slash + 1) == "daemon")
		layout.delegated = layout.own.substr(0, slash);

	// Only the root cgroup has no cgroup.type (the kernel's
	// CFTYPE_NOT_ON_ROOT); the root of a cgroup namespace has one and obeys
	// the no-internal-processes rule like any other cgroup.
	layout.delegatedIsRoot = !exists(layout.delegated + "/cgroup.type");
	if (layout.delegatedIsRoot) {
		layout.memoryBase = layout.delegated + "/gvm";
	} else {
		auto available = readFileBounded(layout.delegated + "/cgroup.controllers", kMaxValueBytes);
		if (!available)
			return fail(std::move(available).error());
		std::vector<std::string> have;
		for (std::string_view c : split(trim(*available), ' '))
			have.emplace_back(c);
		std::vector<std::string> missing;
		for (const char *c : kRequiredControllers)
			if (!contains(have, c))
				missing.emplace_back(c);
		if (!missing.empty())
			return fail(Error::fromErrno(ENOTSUP, "gvmd's cgroup " + layout.delegated + " has no " +
								      joinControllers(missing) +
								      " controller to hand down to sandboxes (under systemd, "
								      "run gvmd with Delegate=yes)"));
		layout.memoryBase = layout.delegated + "/sandboxes";
	}
	layout.pidsBase = layout.cpuBase = layout.cpuacctBase = layout.memoryBase;
	layout.bases = {layout.memoryBase};
	layout.description = "cgroup v2 (memory, pids, cpu) under " + layout.memoryBase;
	return layout;
}

Result<Layout> v1Layout(const CgroupMounts &mounts)
{
	Layout layout;
	layout.version = CgroupVersion::V1;
	// pids first: it is the controller the error message names when
	// nothing at all is mounted.
	for (const char *c : {"pids", "memory", "cpu"})
		if (!mounts.v1With(c))
			return fail(noHierarchy(c));
	std::vector<std::string> used = {"memory", "pids", "cpu"};
	auto base = [&](const char *controller) -> std::string {
		const CgroupMounts::Mount *m = mounts.v1With(controller);
		if (!m)
			return {};
		std::string dir = m->mountPoint + "/gvm";
		if (!contains(layout.bases, dir))
			layout.bases.push_back(dir);
		if (!contains(used, controller))
			used.emplace_back(controller);
		return dir;
	};
	layout.memoryBase = base("memory");
	layout.pidsBase = base("pids");
	layout.cpuBase = base("cpu");
	layout.cpuacctBase = base("cpuacct");
	layout.freezerBase = base("freezer");
	layout.description = "cgroup v1 (" + joinControllers(used) + ")";
	return layout;
}

// Finds the layout; changes nothing.
Result<Layout> detectLayout()
{
	auto mountinfo = readFileBounded("/proc/self/mountinfo", kMaxMountinfoBytes);
	if (!mountinfo)
		return fail(std::move(mountinfo).error());
	CgroupMounts mounts = parseCgroupMounts(*mountinfo);
	if (mounts.unified) {
		// The controllers bound to the unified hierarchy are listed at its
		// root; a controller bound to a v1 hierarchy cannot be there.
		auto controllers = readFileBounded(mounts.unified->mountPoint + "/cgroup.controllers", kMaxValueBytes);
		if (controllers) {
			std::vector<std::string> have;
			for (std::string_view c : split(trim(*controllers), ' '))
				have.emplace_back(c);
			if (std::all_of(std::begin(kRequiredControllers), std::end(kRequiredControllers),
					[&](const char *c) { return contains(have, c); }))
				return v2Layout(*mounts.unified);
		}
	}
	return v1Layout(mounts);
}

// One process-wide lock for setting up the shared part of the layout.
std::mutex &layoutMutex()
{
	static std::mutex mutex;
	return mutex;
}

// Makes the shared directories of the layout exist and, on v2, hands the
// controllers down to them. Idempotent. Caller holds layoutMutex().
Result<void> prepareLayout(const Layout &layout)
{
	if (layout.version == CgroupVersion::V1) {
		// v1 has no rule against processes next to child cgroups: `gvm`
		// is a plain directory at the hierarchy's root, shared by every
		// sandbox and never removed.
		for (const std::string &base : layout.bases)
			GVM_TRY_VOID(makeDirectory(base), "preparing gvm's cgroups");
		return {};
	}

	if (!layout.delegatedIsRoot) {
		// v2's no-internal-processes rule: X may enable controllers for its
		// children only once no process is in X itself. gvmd (and whatever
		// it forked before the first sandbox, e.g. proxy workers) moves to
		// X/daemon; X is gvmd's by delegation, so everything in it is
		// gvmd's. The move changes no limit: X/daemon has none.
		const std::string daemonDir = layout.delegated + "/daemon";
		GVM_TRY_VOID(makeDirectory(daemonDir), "moving gvmd out of its cgroup");
		for (int round = 0; round < kMoveRounds; ++round) {
			auto pids = readProcs(layout.delegated);
			if (!pids)
				return fail(std::move(pids).error().wrap("moving gvmd out of its cgroup"));
			if (pids->empty())
				break;
			for (pid_t pid : *pids) {
				auto moved = writeCgroupFile(daemonDir + "/cgroup.procs", std::to_string(pid));
				// ESRCH: the process exited meanwhile.
				if (!moved && moved.error().code() != ESRCH)
					return fail(std::move(moved).error().wrap("moving gvmd out of its cgroup"));
			}
		}
	}
	GVM_TRY_VOID(writeCgroupFile(layout.delegated + "/cgroup.subtree_control", kSubtreeControl),
		     "handing the controllers down to gvm's sandboxes");
	GVM_TRY_VOID(makeDirectory(layout.memoryBase), "preparing gvm's cgroups");
	GVM_TRY_VOID(writeCgroupFile(layout.memoryBase + "/cgroup.subtree_control", kSubtreeControl),
		     "handing the controllers down to gvm's sandboxes");
	return {};
}

// v1 freezer: asks for FROZEN and waits (briefly) until the kernel says
// every task is frozen, so that no process forks between the moment the
// pids are read and the moment they are killed.
bool freeze(const std::string &freezerDir, Clock::time_point deadline)
{
	const std::string state = freezerDir + "/freezer.state";
	if (!writeCgroupFile(state, "FROZEN"))
		return false;
	const auto freezeDeadline = std::min(deadline, Clock::now() + kCgroupDestroyTimeout / 4);
	while (Clock::now() < freezeDeadline) {
		auto now = readFileBounded(state, kMaxValueBytes);
		if (!now || trim(*now) == "FROZEN")
			break;
		sleepFor(kDestroyPollInterval);
	}
	// Even half-frozen, the caller must thaw.
	return true;
}

// Empties the cgroup (directories `dirs`, one per hierarchy) and removes
// it. The shared part of destroy() and removeLeftovers().
Result<void> killAndRemove(CgroupVersion version, const std::vector<std::string> &dirs, const std::string &freezerDir)
{
	if (dirs.empty())
		return {};
	const auto deadline = Clock::now() + kCgroupDestroyTimeout;
	bool frozen = false;
	if (version == CgroupVersion::V2) {
		// cgroup.kill (Linux 5.14) kills every process of the cgroup at
		// once, including those forked while it runs. Without it (or if
		// it fails) the loop below kills pid by pid.
		const std::string killFile = dirs.front() + "/cgroup.kill";
		if (exists(killFile))
			(void)writeCgroupFile(killFile, "1");
	} else if (!freezerDir.empty() && exists(freezerDir)) {
		frozen = freeze(freezerDir, deadline);
	}
	auto thaw = [&] {
		// A frozen task does not act on SIGKILL until thawed.
		if (frozen)
			(void)writeCgroupFile(freezerDir + "/freezer.state", "THAWED");
		frozen = false;
	};
	ScopeExit thawOnExit(thaw);

	for (;;) {
		std::vector<pid_t> pids;
		std::string busy;
		for (const std::string &dir : dirs) {
			auto procs = readProcs(dir);
			if (!procs)
				return fail(std::move(procs).error());
			if (!procs->empty() && busy.empty())
				busy = dir;
			pids.insert(pids.end(), procs->begin(), procs->end());
		}
		if (pids.empty())
			break;
		// Without the freezer (or cgroup.kill), a pid read above may
		// exit and be reused before the kill: the kernel gives no way
		// to signal "this pid, if still in this cgroup". The window is
		// the few microseconds between the read and the kill.
		for (pid_t pid : pids)
			if (pid > 0)
				::kill(pid, SIGKILL);
		thaw();
		if (Clock::now() >= deadline)
			return fail(Error::fromErrno(EBUSY, std::to_string(pids.size()) + " processes are still in " +
								    busy + " after " +
								    std::to_string(kCgroupDestroyTimeout.count()) + " ms"));
		sleepFor(kDestroyPollInterval);
	}

	// An exited process may still count in the cgroup for a moment after
	// cgroup.procs stopped listing it: EBUSY is retried until the deadline.
	for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
		while (::rmdir(it->c_str()) < 0) {
			if (errno == ENOENT)
				break;
			if (errno != EBUSY || Clock::now() >= deadline)
				return fail(Error::fromErrno(errno, "removing " + *it));
			sleepFor(kDestroyPollInterval);
		}
	}
	return {};
}

} // namespace

const char *toString(CgroupVersion version)
{
	switch (version) {
	case CgroupVersion::V1: return "v1";
	case CgroupVersion::V2: return "v2";
	}
	return "unknown";
}

policy::ResourceLimits effectiveLimits(const policy::ResourceLimits &limits)
{
	policy::ResourceLimits out = limits;
	if (!out.pids)
		out.pids = kDefaultPidsLimit;
	if (!out.memoryBytes) {
		struct sysinfo info{};
		if (::sysinfo(&info) == 0)
			out.memoryBytes = static_cast<uint64_t>(info.totalram) * info.mem_unit / kDefaultMemoryDivisor;
	}
	return out;
}

const CgroupMounts::Mount *CgroupMounts::v1With(std::string_view controller) const
{
	for (const Mount &m : v1)
		if (contains(m.controllers, controller))
			return &m;
	return nullptr;
}

CgroupMounts parseCgroupMounts(std::string_view mountinfo)
{
	// "36 30 0:33 / /sys/fs/cgroup/freezer rw,relatime shared:9 - cgroup cgroup rw,freezer"
	// id parent dev root mountpoint options [optional...] - fstype source superoptions
	CgroupMounts out;
	for (std::string_view line : split(mountinfo, '\n')) {
		std::vector<std::string_view> fields = split(line, ' ');
		size_t sep = 6;
		while (sep < fields.size() && fields[sep] != "-")
			++sep;
		if (sep + 1 >= fields.size())
			continue; // no " - " separator: not a mountinfo line
		const std::string_view type = fields[sep + 1];
		if (type != "cgroup" && type != "cgroup2")
			continue;
		CgroupMounts::Mount mount{unescapeMountPath(fields[4]), unescapeMountPath(fields[3]), {}};
		if (type == "cgroup2") {
			// The same hierarchy may be mounted more than once; the
			// mount of its whole tree is preferred.
			if (!out.unified || (out.unified->root != "/" && mount.root == "/"))
				out.unified = std::move(mount);
			continue;
		}
		if (sep + 3 >= fields.size())
			continue;
		for (std::string_view option : split(fields[sep + 3], ',')) {
			// Options that are not controllers: rw/ro, name=systemd,
			// release_agent=..., and the v1 mount flags.
			if (option.empty() || option.find('=') != std::string_view::npos ||
			    std::find(std::begin(kV1MountFlags), std::end(kV1MountFlags), option) != std::end(kV1MountFlags))
				continue;
			mount.controllers.emplace_back(option);
		}
		if (mount.controllers.empty())
			continue; // a named hierarchy without controllers (name=systemd)
		auto same = std::find_if(out.v1.begin(), out.v1.end(),
					 [&](const CgroupMounts::Mount &m) { return m.controllers == mount.controllers; });
		if (same == out.v1.end())
			out.v1.push_back(std::move(mount));
		else if (same->root != "/" && mount.root == "/")
			*same = std::move(mount);
	}
	return out;
}

Result<std::unique_ptr<SandboxCgroup>> SandboxCgroup::create(std::string_view name, const policy::ResourceLimits &limits)
{
	if (!isSandboxName(name))
		return fail(Error::fromErrno(EINVAL, "\"" + std::string(name) + "\" is not a sandbox id ([0-9a-f]{8})"));
	const std::string what = "creating the cgroup of sandbox " + std::string(name);

	Layout layout;
	{
		std::lock_guard lock(layoutMutex());
		auto found = detectLayout();
		if (!found)
			return fail(std::move(found).error().wrap(what));
		layout = std::move(*found);
		GVM_TRY_VOID(prepareLayout(layout), what);
	}

	std::unique_ptr<SandboxCgroup> cgroup(new SandboxCgroup());
	cgroup->name_ = std::string(name);
	cgroup->version_ = layout.version;
	auto in = [&](const std::string &base) { return base.empty() ? std::string() : base + "/" + cgroup->name_; };
	cgroup->memoryDir_ = in(layout.memoryBase);
	cgroup->pidsDir_ = in(layout.pidsBase);
	cgroup->cpuDir_ = in(layout.cpuBase);
	cgroup->cpuacctDir_ = in(layout.cpuacctBase);
	cgroup->freezerDir_ = in(layout.freezerBase);

	// Every step registers its undo; nothing is left if a later one fails.
	// No process can be in the new cgroups yet, so rmdir undoes mkdir.
	Rollback rollback;
	for (const std::string &base : layout.bases) {
		std::string dir = base + "/" + cgroup->name_;
		if (::mkdir(dir.c_str(), 0755) < 0)
			return fail(Error::fromErrno(errno, "creating " + dir).wrap(what));
		rollback.add([dir] { ::rmdir(dir.c_str()); });
		cgroup->dirs_.push_back(std::move(dir));
	}

	const policy::ResourceLimits effective = effectiveLimits(limits);
	const std::string &mem = cgroup->memoryDir_;
	const std::string &cpu = cgroup->cpuDir_;
	const std::string &pids = cgroup->pidsDir_;
	if (layout.version == CgroupVersion::V2) {
		if (effective.memoryBytes)
			GVM_TRY_VOID(writeCgroupFile(mem + "/memory.max", std::to_string(*effective.memoryBytes)), what);
		// An out-of-memory kill takes the whole sandbox rather than one
		// process of it, which could leave the agent half-working.
		if (exists(mem + "/memory.oom_group"))
			GVM_TRY_VOID(writeCgroupFile(mem + "/memory.oom_group", "1"), what);
		if (effective.cpuMillis)
			GVM_TRY_VOID(writeCgroupFile(cpu + "/cpu.max", std::to_string(uint64_t{*effective.cpuMillis} * 100) +
										   " " + std::to_string(kCpuPeriodUsec)),
				     what);
		GVM_TRY_VOID(writeCgroupFile(pids + "/pids.max", std::to_string(*effective.pids)), what);
	} else {
		if (effective.memoryBytes) {
			const std::string bytes = std::to_string(*effective.memoryBytes);
			GVM_TRY_VOID(writeCgroupFile(mem + "/memory.limit_in_bytes", bytes), what);
			// Memory plus swap at the same limit: the sandbox cannot
			// push its excess to swap. The file exists only with swap
			// accounting; without it the limit is on memory alone.
			if (exists(mem + "/memory.memsw.limit_in_bytes"))
				(void)writeCgroupFile(mem + "/memory.memsw.limit_in_bytes", bytes);
		}
		if (effective.cpuMillis) {
			GVM_TRY_VOID(writeCgroupFile(cpu + "/cpu.cfs_period_us", std::to_string(kCpuPeriodUsec)), what);
			GVM_TRY_VOID(writeCgroupFile(cpu + "/cpu.cfs_quota_us",
						     std::to_string(uint64_t{*effective.cpuMillis} * 100)),
				     what);
		}
		GVM_TRY_VOID(writeCgroupFile(pids + "/pids.max", std::to_string(*effective.pids)), what);
	}

	for (const std::string &dir : cgroup->dirs_) {
		const std::string path = dir + "/cgroup.procs";
		UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
		if (!fd)
			return fail(Error::fromErrno(errno, "opening " + path).wrap(what));
		cgroup->procsFds_.push_back(std::move(fd));
	}

	rollback.release();
	GVM_LOG(Daemon, Debug) << "sandbox " << cgroup->name_ << ": cgroup " << toString(layout.version) << " in "
			       << cgroup->dirs_.front();
	return cgroup;
}

SandboxCgroup::~SandboxCgroup()
{
	(void)destroy();
}

int SandboxCgroup::joinInChild(const int *fds, size_t count) noexcept
{
	// "0" is the writer itself, whatever pid namespace it is in.
	for (size_t i = 0; i < count; ++i) {
		ssize_t n;
		do {
			n = ::write(fds[i], "0", 1);
		} while (n < 0 && errno == EINTR);
		if (n < 0)
			return errno;
		if (n != 1)
			return EIO;
	}
	return 0;
}

Result<CgroupUsage> SandboxCgroup::usage() const
{
	if (destroyed_)
		return fail(Error::fromErrno(ENOENT, "the cgroup of sandbox " + name_ + " is destroyed"));
	CgroupUsage usage;
	const bool v2 = version_ == CgroupVersion::V2;

	const std::string memoryFile = memoryDir_ + (v2 ? "/memory.current" : "/memory.usage_in_bytes");
	auto memory = readNumber(memoryFile);
	if (!memory)
		return fail(std::move(memory).error());
	usage.memoryBytes = *memory;

	auto pids = readNumber(pidsDir_ + "/pids.current");
	if (!pids)
		return fail(std::move(pids).error());
	usage.pids = static_cast<uint32_t>(*pids);

	if (v2) {
		const std::string statFile = cpuDir_ + "/cpu.stat";
		auto stat = readFileBounded(statFile, kMaxValueBytes);
		if (!stat)
			return fail(std::move(stat).error());
		for (std::string_view line : split(*stat, '\n'))
			if (line.substr(0, 11) == "usage_usec ") {
				auto usec = parseNumber(line.substr(11), statFile);
				if (!usec)
					return fail(std::move(usec).error());
				usage.cpuUsec = *usec;
			}
	} else if (!cpuacctDir_.empty()) {
		auto nsec = readNumber(cpuacctDir_ + "/cpuacct.usage");
		if (!nsec)
			return fail(std::move(nsec).error());
		usage.cpuUsec = *nsec / 1000;
	}

	auto memoryLimit = readLimit(memoryDir_ + (v2 ? "/memory.max" : "/memory.limit_in_bytes"));
	if (!memoryLimit)
		return fail(std::move(memoryLimit).error());
	usage.memoryLimit = *memoryLimit;
	if (!v2 && usage.memoryLimit) {
		// v1 writes "no limit" as the largest page-aligned value.
		const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
		if (*usage.memoryLimit >= (uint64_t{INT64_MAX} / page) * page)
			usage.memoryLimit.reset();
	}
	auto pidsLimit = readLimit(pidsDir_ + "/pids.max");
	if (!pidsLimit)
		return fail(std::move(pidsLimit).error());
	if (*pidsLimit)
		usage.pidsLimit = static_cast<uint32_t>(**pidsLimit);
	return usage;
}

Result<void> SandboxCgroup::destroy()
{
	if (destroyed_)
		return {};
	auto removed = killAndRemove(version_, dirs_, freezerDir_);
	if (!removed)
		return fail(std::move(removed).error().wrap("destroying the cgroup of sandbox " + name_));
	procsFds_.clear();
	destroyed_ = true;
	GVM_LOG(Daemon, Debug) << "sandbox " << name_ << ": cgroup removed";
	return {};
}

std::vector<Error> SandboxCgroup::removeLeftovers(const std::vector<std::string> &keep)
{
	return removeWhere([&](const std::string &name) { return !contains(keep, name); });
}

std::vector<Error> SandboxCgroup::removeNamed(const std::vector<std::string> &names)
{
	return removeWhere([&](const std::string &name) { return contains(names, name); });
}

std::vector<Error> SandboxCgroup::removeWhere(const std::function<bool(const std::string &)> &remove)
{
	auto layout = detectLayout();
	if (!layout)
		return {};

	// The names of every hierarchy: a leftover may be missing from some
	// (an earlier gvmd killed half-way through create()).
	std::set<std::string> names;
	for (const std::string &base : layout->bases) {
		CPtr<DIR, ::closedir> dir(::opendir(base.c_str()));
		if (!dir)
			continue;
		while (const dirent *entry = ::readdir(dir.get())) {
			const std::string name = entry->d_name;
			if (entry->d_type == DT_DIR && isSandboxName(name) && remove(name))
				names.insert(name);
		}
	}

	std::vector<Error> errors;
	for (const std::string &name : names) {
		std::vector<std::string> dirs;
		for (const std::string &base : layout->bases)
			if (exists(base + "/" + name))
				dirs.push_back(base + "/" + name);
		const std::string freezer = layout->freezerBase.empty() ? "" : layout->freezerBase + "/" + name;
		auto removed = killAndRemove(layout->version, dirs, freezer);
		if (!removed)
			errors.push_back(std::move(removed).error().wrap("removing the leftover cgroup of sandbox " + name));
		else
			GVM_LOG(Daemon, Debug) << "sandbox " << name << ": leftover cgroup removed";
	}
	return errors;
}

Result<std::string> SandboxCgroup::describeSupport()
{
	auto layout = detectLayout();
	if (!layout)
		return fail(std::move(layout).error());
	return layout->description;
}

} // namespace gvm::isolation
