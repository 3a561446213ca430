// SPDX-License-Identifier: Apache-2.0
#include "daemon/isolation/landlock.h"

#include <linux/magic.h>
#include <sys/vfs.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <map>
#include <string_view>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/c_ptr.h"
#include "common/unique_fd.h"

// Debian 12's headers stop at ABI 2 (and older ones before it); the values
// are the kernel's UAPI and never change.
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#endif
#ifndef SYS_landlock_add_rule
#define SYS_landlock_add_rule 445
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif

namespace gvm::isolation {

namespace {

// The only rights the kernel accepts on a rule whose path is not a directory
// (anything else is EINVAL). IOCTL_DEV (ABI 5) would be one too, but gvm
// never handles it, so ioctls on ttys keep working.
constexpr uint64_t kFileRights = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
				 LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE;

constexpr uint64_t kReadOnlyRights =
	LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;

// Everything but MAKE_CHAR and MAKE_BLOCK: the agent never makes devices.
constexpr uint64_t kReadWriteRights =
	kReadOnlyRights | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
	LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
	LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_SYM |
	LANDLOCK_ACCESS_FS_REFER | LANDLOCK_ACCESS_FS_TRUNCATE;

// Existing files and devices read and written (a shell's "> /dev/null" opens
// with O_TRUNC), directories listed; nothing executed, created or removed.
constexpr uint64_t kWritableFileRights = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE |
					 LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_READ_DIR;

// The filesystem rights of an ABI: all of ABI 1 (EXECUTE up to MAKE_SYM),
// then REFER (2) and TRUNCATE (3). Handling a right the kernel does not
// know is EINVAL, so the ruleset handles exactly these.
uint64_t handledRights(int abi)
{
	uint64_t rights = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;
	if (abi >= 2)
		rights |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		rights |= LANDLOCK_ACCESS_FS_TRUNCATE;
	return rights;
}

// Whether path lies strictly below dir (both canonical).
bool isBelow(const std::string &path, const std::string &dir)
{
	if (path.size() <= dir.size() || path.compare(0, dir.size(), dir) != 0)
		return false;
	return dir == "/" || path[dir.size()] == '/';
}

std::string joinPath(const std::string &dir, const char *name)
{
	return dir == "/" ? "/" + std::string(name) : dir + "/" + name;
}

// realpath() of an absolute path, or "" when it does not exist (ENOENT, or
// ENOTDIR for a file used as a directory).
Result<std::string> canonicalPath(const std::string &path)
{
	if (path.empty() || path[0] != '/')
		return fail(Error::fromErrno(EINVAL, "Landlock path \"" + path + "\" is not absolute"));
	CPtr<char, ::free> resolved(::realpath(path.c_str(), nullptr));
	if (!resolved) {
		if (errno == ENOENT || errno == ENOTDIR)
			return std::string();
		return fail(Error::fromErrno(errno, "resolving " + path));
	}
	return std::string(resolved.get());
}

// Turns roots and hidden paths into one rule per path (rights of several
// roots on the same path are merged), in the caller's view of the
// filesystem. Lives only inside build().
class Expander
{
public:
	Expander(std::vector<std::string> hidden, uint64_t handled) : hidden_(std::move(hidden)), handled_(handled) {}

	Result<void> addRoot(const std::string &root, uint64_t rights)
	{
		auto canonical = canonicalPath(root);
		if (!canonical)
			return fail(std::move(canonical).error());
		// A root that does not exist is skipped; one at or under a
		// hidden path is dropped, since hidden wins.
		if (canonical->empty() || isHidden(*canonical))
			return {};
		struct stat st;
		if (::lstat(canonical->c_str(), &st) < 0) {
			if (errno == ENOENT)
				return {};
			return fail(Error::fromErrno(errno, "examining " + *canonical));
		}
		return expand(*canonical, st, rights & handled_);
	}

	std::map<std::string, uint64_t> take() { return std::move(rules_); }

private:
	// At or under a hidden path.
	bool isHidden(const std::string &path) const
	{
		return std::any_of(hidden_.begin(), hidden_.end(),
				   [&](const std::string &h) { return path == h || isBelow(path, h); });
	}

	bool hasHiddenBelow(const std::string &path) const
	{
		return std::any_of(hidden_.begin(), hidden_.end(),
				   [&](const std::string &h) { return isBelow(h, path); });
	}

	Result<void> grant(const std::string &path, uint64_t rights)
	{
		if (rights == 0)
			return {};
		auto it = rules_.find(path);
		if (it != rules_.end()) {
			it->second |= rights;
			return {};
		}
		if (rules_.size() >= kMaxLandlockRules)
			return fail(Error::fromErrno(E2BIG, "more than " + std::to_string(kMaxLandlockRules) +
								    " Landlock rules, at " + path));
		rules_.emplace(path, rights);
		return {};
	}

	// Grants rights beneath path, except beneath hidden paths. st is the
	// lstat() of path, which is neither hidden nor under a hidden path.
	Result<void> expand(const std::string &path, const struct stat &st, uint64_t rights)
	{
		// Landlock checks the resolved path of every access, so a rule
		// on a symlink grants nothing and a link cannot lead around a
		// hidden path: no rule, and never followed here.
		if (S_ISLNK(st.st_mode))
			return {};
		if (!S_ISDIR(st.st_mode))
			return grant(path, rights & kFileRights);
		if (!hasHiddenBelow(path))
			return grant(path, rights);

		// A hidden path lies below: this directory gets only READ_DIR
		// (which covers the hidden subtree too: names stay listable,
		// contents do not), and each entry gets the rights on its own.
		GVM_TRY_VOID(grant(path, rights & LANDLOCK_ACCESS_FS_READ_DIR), "expanding " + path);
		UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
		if (!fd)
			return fail(Error::fromErrno(errno, "opening " + path + " to expand it around a hidden path"));
		CPtr<DIR, ::closedir> dir(::fdopendir(fd.get()));
		if (!dir)
			return fail(Error::fromErrno(errno, "listing " + path));
		(void)fd.release(); // the DIR owns it now

		// Collect first, so the recursion holds one open directory per
		// level only while listing it.
		std::vector<std::pair<std::string, struct stat>> entries;
		errno = 0;
		while (struct dirent *entry = ::readdir(dir.get())) {
			std::string_view name = entry->d_name;
			if (name == "." || name == "..")
				continue;
			std::string child = joinPath(path, entry->d_name);
			if (isHidden(child))
				continue;
			struct stat childSt;
			if (::fstatat(::dirfd(dir.get()), entry->d_name, &childSt, AT_SYMLINK_NOFOLLOW) < 0) {
				if (errno == ENOENT) { // removed while listing
					errno = 0;
					continue;
				}
				return fail(Error::fromErrno(errno, "examining " + child));
			}
			entries.emplace_back(std::move(child), childSt);
			if (entries.size() > kMaxLandlockRules)
				return fail(Error::fromErrno(E2BIG, "more than " + std::to_string(kMaxLandlockRules) +
									    " entries in " + path));
			errno = 0;
		}
		if (errno != 0)
			return fail(Error::fromErrno(errno, "listing " + path));
		dir.reset();

		for (const auto &[child, childSt] : entries)
			GVM_TRY_VOID(expand(child, childSt, rights), "expanding " + path);
		return {};
	}

	std::vector<std::string> hidden_;
	uint64_t handled_;
	std::map<std::string, uint64_t> rules_;
};

} // namespace

int landlockAbi()
{
	// With LANDLOCK_CREATE_RULESET_VERSION and no attributes, the call only
	// reports the ABI. ENOSYS: not built in; EOPNOTSUPP: disabled at boot.
	long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
	return abi < 0 ? 0 : static_cast<int>(abi);
}

Result<LandlockPlan> LandlockPlan::build(const LandlockView &view, int abi)
{
	LandlockPlan plan;
	if (abi <= 0)
		return plan;
	plan.abi_ = std::min(abi, kLandlockMaxAbi);
	plan.handled_ = handledRights(plan.abi_);

	// Hidden paths are compared by their resolved names, as the roots
	// are; one that does not exist has nothing to hide. One that cannot
	// be resolved for another reason (EACCES on a FUSE mount) fails the
	// build rather than leaving whatever it is readable.
	std::vector<std::string> hidden;
	for (const std::string &path : view.hidden) {
		auto canonical = canonicalPath(path);
		if (!canonical)
			return fail(std::move(canonical).error().wrap("while resolving a hidden path"));
		if (!canonical->empty())
			hidden.push_back(std::move(*canonical));
	}

	Expander expander(std::move(hidden), plan.handled_);
	const std::pair<const std::vector<std::string> *, uint64_t> lists[] = {
		{&view.readOnly, kReadOnlyRights},
		{&view.readWrite, kReadWriteRights},
		{&view.writableFiles, kWritableFileRights},
	};
	for (const auto &[paths, rights] : lists) {
		for (const std::string &path : *paths)
			GVM_TRY_VOID(expander.addRoot(path, rights), "while planning Landlock rules for " + path);
	}

	// The strings are final from here on: applyInChild() only reads them.
	for (auto &[path, access] : expander.take())
		plan.rules_.push_back(Rule{path, access, false});
	for (const std::string &path : view.overlayReadWrite) {
		auto canonical = canonicalPath(path);
		if (!canonical)
			return fail(std::move(canonical).error().wrap("while planning Landlock rules for " + path));
		if (!canonical->empty())
			plan.rules_.push_back(Rule{*canonical, kReadWriteRights & plan.handled_, true});
	}
	if (plan.rules_.size() > kMaxLandlockRules)
		return fail(Error::fromErrno(E2BIG, "more than " + std::to_string(kMaxLandlockRules) + " Landlock rules"));
	return plan;
}

int LandlockPlan::applyInChild() const noexcept
{
	if (abi_ <= 0)
		return 0;

	// The ruleset handles the filesystem rights of the plan's ABI only.
	// This header's attribute struct has no handled_access_net and no
	// scoped field, so network and IPC scoping stay unrestricted (the
	// network namespace and seccomp govern those), and IOCTL_DEV is never
	// handled, so ttys keep working.
	struct landlock_ruleset_attr attr = {};
	attr.handled_access_fs = handled_;
	UniqueFd ruleset(static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0)));
	if (!ruleset)
		return errno;

	for (const Rule &rule : rules_) {
		// O_PATH: a handle on the inode for the rule, without read
		// permission on it. O_NOFOLLOW: the plan holds resolved paths,
		// so a symlink here appeared since build() and gets no rule.
		UniqueFd path(::open(rule.path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
		if (!path) {
			int err = errno;
			// Missing in the agent's view, or out of reach of its
			// credentials: the agent could not use the grant anyway,
			// and skipping a grant only ever denies more.
			if (err == ENOENT || err == ENOTDIR || err == EACCES || err == ELOOP)
				continue;
			return err;
		}
		struct stat st;
		if (::fstat(path.get(), &st) < 0)
			return errno;
		if (S_ISLNK(st.st_mode))
			continue;
		if (rule.overlayOnly) {
			struct statfs fs;
			if (::fstatfs(path.get(), &fs) < 0)
				return errno;
			if (fs.f_type != OVERLAYFS_SUPER_MAGIC)
				continue;
		}
		uint64_t access = rule.access;
		// The type may have changed since build(): a directory-only
		// right on a non-directory would be EINVAL.
		if (!S_ISDIR(st.st_mode))
			access &= kFileRights;
		if (access == 0)
			continue;
		struct landlock_path_beneath_attr beneath = {};
		beneath.allowed_access = access;
		beneath.parent_fd = path.get();
		if (::syscall(SYS_landlock_add_rule, ruleset.get(), LANDLOCK_RULE_PATH_BENEATH, &beneath, 0) < 0)
			return errno;
	}

	// The privilege step: from here on this thread, and everything it
	// forks or execs, can open only what the rules grant, whatever the
	// mount namespace shows and whatever its uid may do. It cannot be
	// undone, only narrowed further by another ruleset.
	if (::syscall(SYS_landlock_restrict_self, ruleset.get(), 0) < 0)
		return errno;
	return 0;
}

} // namespace gvm::isolation
