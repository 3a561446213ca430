// SPDX-License-Identifier: Apache-2.0
#include "daemon/isolation/mount_view.h"

#include "common/unique_fd.h"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <linux/mount.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

namespace gvm::isolation {

const char *describe(MountViewFailure::Step step)
{
	switch (step) {
	case MountViewFailure::Step::Workspace: return "cannot mount the sandbox's workspace on";
	case MountViewFailure::Step::Home: return "cannot mount the sandbox's private layer over the home directory";
	case MountViewFailure::Step::Mask: return "cannot hide";
	case MountViewFailure::Step::Tmp: return "cannot mount a private";
	case MountViewFailure::Step::Dev: return "cannot build the sandbox's /dev at";
	case MountViewFailure::Step::ReadOnly: return "cannot make the sandbox's view of the host read-only at";
	}
	return "cannot build the sandbox's file system view at";
}

namespace {

std::string overlayOptions(const std::string &lower, const std::string &upper, const std::string &work)
{
	return "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work;
}

bool fail(MountViewFailure *failure, MountViewFailure::Step step, const char *path)
{
	*failure = {step, errno, path};
	return false;
}

// mount_setattr(2) on the mount at `path` (not below it unless recursive).
int setMountAttributes(const char *path, unsigned flags, uint64_t set, uint64_t clear)
{
	mount_attr attr{};
	attr.attr_set = set;
	attr.attr_clr = clear;
	return static_cast<int>(::syscall(SYS_mount_setattr, AT_FDCWD, path, flags, &attr, sizeof(attr)));
}

// An empty, unreadable directory or file over `path`, if it exists; a
// dangling or missing path has nothing to hide.
bool mask(const char *path, const char *emptyFile, MountViewFailure *failure)
{
	struct stat st{};
	if (::stat(path, &st) < 0)
		return true;
	if (S_ISDIR(st.st_mode)) {
		if (::mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
			    "size=4k,nr_inodes=1,mode=000") < 0)
			return fail(failure, MountViewFailure::Step::Mask, path);
		return true;
	}
	if (::mount(emptyFile, path, nullptr, MS_BIND, nullptr) < 0 ||
	    ::mount(nullptr, path, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
		    nullptr) < 0)
		return fail(failure, MountViewFailure::Step::Mask, path);
	return true;
}

// mkdir -p of `path` (itself included), root's, mode 0755; without
// allocating: the path is copied into a buffer on the stack.
bool makeParents(const char *path)
{
	char buffer[4096];
	size_t n = 0;
	for (; path[n]; ++n) {
		if (n + 1 >= sizeof(buffer)) {
			errno = ENAMETOOLONG;
			return false;
		}
		buffer[n] = path[n];
		if (path[n] == '/' && n > 0) {
			buffer[n] = '\0';
			if (::mkdir(buffer, 0755) < 0 && errno != EEXIST)
				return false;
			buffer[n] = '/';
		}
	}
	buffer[n] = '\0';
	return ::mkdir(buffer, 0755) == 0 || errno == EEXIST;
}

struct DeviceNode {
	const char *path;
	unsigned major;
	unsigned minor;
};

// The devices a program may expect; nothing that reaches hardware or the
// host's terminals.
constexpr DeviceNode kDevices[] = {
	{"/dev/null", 1, 3},    {"/dev/zero", 1, 5}, {"/dev/full", 1, 7},
	{"/dev/random", 1, 8},  {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0},
};

constexpr const char *kDevLinks[][2] = {
	{"pts/ptmx", "/dev/ptmx"},       {"/proc/self/fd", "/dev/fd"},
	{"/proc/self/fd/0", "/dev/stdin"}, {"/proc/self/fd/1", "/dev/stdout"},
	{"/proc/self/fd/2", "/dev/stderr"},
};

bool mountDev(MountViewFailure *failure)
{
	using Step = MountViewFailure::Step;
	// A tmpfs of its own: the host's disks, consoles, terminals, /dev/kmsg
	// and the like are not there to open.
	if (::mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755") < 0)
		return fail(failure, Step::Dev, "/dev");
	for (const DeviceNode &d : kDevices) {
		if (::mknod(d.path, S_IFCHR | 0666, makedev(d.major, d.minor)) < 0 || ::chmod(d.path, 0666) < 0)
			return fail(failure, Step::Dev, d.path);
	}
	// A devpts instance of its own: ptys the agent opens are its own, and
	// the host's terminals are not listed.
	if (::mkdir("/dev/pts", 0755) < 0)
		return fail(failure, Step::Dev, "/dev/pts");
	if (::mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") < 0)
		return fail(failure, Step::Dev, "/dev/pts");
	for (const auto &link : kDevLinks)
		if (::symlink(link[0], link[1]) < 0)
			return fail(failure, Step::Dev, link[1]);
	if (::mkdir("/dev/shm", 01777) < 0 || ::mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
		return fail(failure, Step::Dev, "/dev/shm");
	return true;
}

} // namespace

MountViewPlan::MountViewPlan(Input input) : input_(std::move(input))
{
	for (const std::string &p : input_.maskDirs)
		maskDirs_.push_back(p.c_str());
	for (const std::string &p : input_.maskFiles)
		maskFiles_.push_back(p.c_str());
	if (!input_.workspace.empty()) {
		spec_.workspace = input_.workspace.c_str();
		// Whatever the kernel's defaults: no redirected directories and
		// no metadata-only copy-ups, so that every change is a whole
		// entry in the upper layer that `gvmctl apply` can copy.
		if (input_.workspaceMode == policy::WorkspaceMode::Overlay)
			workspaceOptions_ = overlayOptions(input_.workspace, input_.workspaceUpper,
							   input_.workspaceWork) +
					    ",redirect_dir=off,metacopy=off";
	}
	spec_.workspaceMode = input_.workspaceMode;
	spec_.workspaceInTmp = input_.workspace.rfind("/tmp/", 0) == 0;
	spec_.workspaceOptions = workspaceOptions_.c_str();
	if (!input_.home.empty()) {
		spec_.home = input_.home.c_str();
		spec_.homeScratch = input_.homeScratch.c_str();
		homeUpper_ = input_.homeScratch + "/upper";
		homeWork_ = input_.homeScratch + "/work";
		homeOptions_ = overlayOptions(input_.home, homeUpper_, homeWork_);
		spec_.homeUpper = homeUpper_.c_str();
		spec_.homeWork = homeWork_.c_str();
		spec_.homeOptions = homeOptions_.c_str();
		// Each hidden path's parents in the upper layer (as the lower
		// ones are), then the whiteout itself. The strings are all
		// made before any pointer into them is taken.
		std::vector<struct stat> modes;
		for (const std::string &relative : input_.homeWhiteouts) {
			for (size_t slash = relative.find('/'); slash != std::string::npos;
			     slash = relative.find('/', slash + 1)) {
				const std::string parent = relative.substr(0, slash);
				const std::string upper = homeUpper_ + "/" + parent;
				if (std::find(upperDirPaths_.begin(), upperDirPaths_.end(), upper) != upperDirPaths_.end())
					continue;
				struct stat st{};
				if (::lstat((input_.home + "/" + parent).c_str(), &st) < 0 || !S_ISDIR(st.st_mode))
					break; // nothing below to hide
				upperDirPaths_.push_back(upper);
				modes.push_back(st);
			}
			whiteoutPaths_.push_back(homeUpper_ + "/" + relative);
		}
		for (size_t i = 0; i < upperDirPaths_.size(); ++i)
			upperDirs_.push_back({upperDirPaths_[i].c_str(), modes[i].st_mode & 07777, modes[i].st_uid,
					      modes[i].st_gid});
		for (const std::string &w : whiteoutPaths_)
			whiteouts_.push_back(w.c_str());
		spec_.homeUpperDirs = upperDirs_.data();
		spec_.homeUpperDirCount = upperDirs_.size();
		spec_.homeWhiteouts = whiteouts_.data();
		spec_.homeWhiteoutCount = whiteouts_.size();
	}
	spec_.uid = input_.uid;
	spec_.gid = input_.gid;
	spec_.homeMode = input_.homeMode;
	spec_.maskDirs = maskDirs_.data();
	spec_.maskDirCount = maskDirs_.size();
	spec_.maskFiles = maskFiles_.data();
	spec_.maskFileCount = maskFiles_.size();
	spec_.emptyFile = input_.emptyFile.c_str();
}

bool overlayPathUsable(const std::string &path)
{
	// overlayfs splits its options on ',' and lower layers on ':'.
	return !path.empty() && path.find_first_of(",:\\") == std::string::npos;
}

bool mountLayers(const MountViewSpec &spec, MountViewFailure *failure) noexcept
{
	using Step = MountViewFailure::Step;
	// The home directory first (the workspace is often inside it): an
	// overlay whose upper layer is a tmpfs, so tools that keep caches and
	// settings there work, and nothing they write outlives the sandbox.
	if (spec.home) {
		if (::mount("tmpfs", spec.homeScratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") < 0)
			return fail(failure, Step::Home, spec.homeScratch);
		if (::mkdir(spec.homeUpper, spec.homeMode & 07777) < 0 || ::chmod(spec.homeUpper, spec.homeMode & 07777) < 0 ||
		    ::chown(spec.homeUpper, spec.uid, spec.gid) < 0 || ::mkdir(spec.homeWork, 0700) < 0)
			return fail(failure, Step::Home, spec.homeUpper);
		// The home's secrets do not exist in it: overlayfs whiteouts
		// (0:0 character devices) in the upper layer cover them.
		for (size_t i = 0; i < spec.homeUpperDirCount; ++i) {
			const MountViewSpec::UpperDir &d = spec.homeUpperDirs[i];
			if (::mkdir(d.path, d.mode) < 0 || ::chmod(d.path, d.mode) < 0 || ::chown(d.path, d.uid, d.gid) < 0)
				return fail(failure, Step::Home, d.path);
		}
		for (size_t i = 0; i < spec.homeWhiteoutCount; ++i)
			if (::mknod(spec.homeWhiteouts[i], S_IFCHR | 0000, makedev(0, 0)) < 0)
				return fail(failure, Step::Home, spec.homeWhiteouts[i]);
		if (::mount("overlay", spec.home, "overlay", MS_NOSUID | MS_NODEV, spec.homeOptions) < 0)
			return fail(failure, Step::Home, spec.home);
	}

	if (spec.workspace) {
		switch (spec.workspaceMode) {
		case policy::WorkspaceMode::Overlay:
			// The agent's writes land in the upper layer under
			// gvmd's state directory; the real tree changes only
			// when the user applies them.
			if (::mount("overlay", spec.workspace, "overlay", MS_NOSUID | MS_NODEV, spec.workspaceOptions) < 0)
				return fail(failure, Step::Workspace, spec.workspace);
			break;
		case policy::WorkspaceMode::Direct:
			// A mount of its own, so that it alone stays writable
			// when everything else is made read-only.
			if (::mount(spec.workspace, spec.workspace, nullptr, MS_BIND | MS_REC, nullptr) < 0)
				return fail(failure, Step::Workspace, spec.workspace);
			break;
		case policy::WorkspaceMode::Readonly:
			// Below /tmp it needs a mount of its own to be carried
			// over onto the private /tmp.
			if (spec.workspaceInTmp &&
			    ::mount(spec.workspace, spec.workspace, nullptr, MS_BIND | MS_REC, nullptr) < 0)
				return fail(failure, Step::Workspace, spec.workspace);
			break;
		}
	}

	// Secrets: replaced by empty mounts nobody can read (the agent has no
	// CAP_DAC_OVERRIDE, even as root). Mounted on top of the overlays so
	// they hide the lower and the upper layer alike.
	for (size_t i = 0; i < spec.maskDirCount; ++i)
		if (!mask(spec.maskDirs[i], spec.emptyFile, failure))
			return false;
	for (size_t i = 0; i < spec.maskFileCount; ++i)
		if (!mask(spec.maskFiles[i], spec.emptyFile, failure))
			return false;
	return true;
}

bool sealMountView(const MountViewSpec &spec, MountViewFailure *failure) noexcept
{
	using Step = MountViewFailure::Step;
	// Private scratch space: nothing the agent leaves in /tmp reaches the
	// host, and it sees nothing of the host's (sockets of other programs
	// included).
	// A workspace below /tmp would vanish under it: its mount tree is
	// cloned first and moved onto the same path in the new /tmp.
	UniqueFd carried;
	if (spec.workspace && spec.workspaceInTmp) {
		carried.reset(static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, spec.workspace,
							  OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)));
		if (!carried)
			return fail(failure, Step::Tmp, spec.workspace);
	}
	if (::mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
		return fail(failure, Step::Tmp, "/tmp");
	if (carried) {
		if (!makeParents(spec.workspace) ||
		    ::syscall(SYS_move_mount, carried.get(), "", AT_FDCWD, spec.workspace, MOVE_MOUNT_F_EMPTY_PATH) < 0)
			return fail(failure, Step::Tmp, spec.workspace);
	}
	if (!mountDev(failure))
		return false;

	// Everything read-only, recursively: the host's files, and every mount
	// made above; then the few writable places are opened again, each on
	// its own mount only (masks and /proc/sys below them stay read-only).
	// The mounts are slaves, so none of this reaches the host.
	if (setMountAttributes("/", AT_RECURSIVE, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0) < 0)
		return fail(failure, Step::ReadOnly, "/");
	const char *writable[] = {"/tmp", "/dev/shm", "/dev/pts", "/proc", spec.home,
				  spec.workspace && spec.workspaceMode != policy::WorkspaceMode::Readonly ? spec.workspace
													 : nullptr};
	for (const char *path : writable)
		if (path && setMountAttributes(path, 0, 0, MOUNT_ATTR_RDONLY) < 0)
			return fail(failure, Step::ReadOnly, path);
	return true;
}

} // namespace gvm::isolation
