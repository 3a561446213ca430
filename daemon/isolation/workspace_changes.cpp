// SPDX-License-Identifier: Apache-2.0
#include "daemon/isolation/workspace_changes.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <map>
#include <optional>
#include <set>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <unordered_map>

#include "common/c_ptr.h"
#include "common/unique_fd.h"

namespace gvm::isolation {

namespace {

// How every lookup below the trees is resolved: never above the starting
// directory, never through a symlink (not even the last component, with
// O_NOFOLLOW added) and never through a /proc magic link. The agent wrote
// the upper tree and anyone may have planted symlinks in the workspace, so a
// path from either is only ever resolved this way.
constexpr uint64_t kResolveFlags = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

// Reads of file contents go through a buffer of this size.
constexpr size_t kCopyChunk = 64 * 1024;
// Directory entries are removed in batches of this many names.
constexpr size_t kRemoveBatch = 4096;
// Context lines around each hunk, as `diff -u`.
constexpr size_t kContextLines = 3;
// Attempts at finding an unused random temporary name.
constexpr int kTempNameAttempts = 16;

const char kReasonOutside[] = "symlink points outside the workspace";
const char kReasonDotDotAfterName[] = "symlink target has \"..\" after a name, which a symlink could redirect";
const char kReasonStale[] = "changed in the sandbox since it was listed";

// Opens `path` (relative, may be ".") below dirFd as described above.
// openat2 answers EAGAIN when a concurrent rename could have let a lookup
// escape; it is retried a few times.
Result<UniqueFd> openBeneath(int dirFd, const std::string &path, int flags)
{
	open_how how{};
	how.flags = static_cast<uint64_t>(flags | O_CLOEXEC | O_NOFOLLOW);
	how.resolve = kResolveFlags;
	for (int attempt = 0;; attempt++) {
		long fd = ::syscall(SYS_openat2, dirFd, path.c_str(), &how, sizeof(how));
		if (fd >= 0)
			return UniqueFd(static_cast<int>(fd));
		if ((errno == EAGAIN && attempt < 8) || errno == EINTR)
			continue;
		return fail(Error::fromErrno(errno, "opening " + path));
	}
}

Result<UniqueFd> openDirBeneath(int dirFd, const std::string &path)
{
	return openBeneath(dirFd, path, O_RDONLY | O_DIRECTORY);
}

// Regular files are opened non-blocking so that a FIFO swapped in for a file
// cannot hang us; the caller checks the type on the fd it got.
Result<UniqueFd> openFileBeneath(int dirFd, const std::string &path)
{
	return openBeneath(dirFd, path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
}

EntryType typeOf(mode_t mode)
{
	if (S_ISREG(mode))
		return EntryType::File;
	if (S_ISDIR(mode))
		return EntryType::Directory;
	if (S_ISLNK(mode))
		return EntryType::Symlink;
	return EntryType::Other;
}

unsigned permissionBits(mode_t mode)
{
	return static_cast<unsigned>(mode & 07777);
}

// lstat of one entry of dirFd; nullopt when it does not exist.
Result<std::optional<struct stat>> statEntry(int dirFd, const std::string &name)
{
	struct stat st{};
	if (::fstatat(dirFd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
		return std::optional<struct stat>(st);
	if (errno == ENOENT)
		return std::optional<struct stat>();
	return fail(Error::fromErrno(errno, "inspecting " + name));
}

Result<std::string> readLinkAt(int dirFd, const std::string &name)
{
	std::string target(PATH_MAX, '\0');
	ssize_t n = ::readlinkat(dirFd, name.c_str(), target.data(), target.size());
	if (n < 0)
		return fail(Error::fromErrno(errno, "reading the symlink " + name));
	if (static_cast<size_t>(n) >= target.size())
		return fail(Error::fromErrno(ENAMETOOLONG, "reading the symlink " + name));
	target.resize(static_cast<size_t>(n));
	return target;
}

// Whether the xattr exists on fd, and its value when it fits `max` bytes.
// ENODATA (absent) and ENOTSUP (no xattrs on this file system) read as
// absent.
Result<std::optional<std::string>> readXattr(int fd, const std::string &name, size_t max = 256)
{
	std::string value(max, '\0');
	ssize_t n = ::fgetxattr(fd, name.c_str(), value.data(), value.size());
	if (n >= 0) {
		value.resize(static_cast<size_t>(n));
		return std::optional<std::string>(std::move(value));
	}
	if (errno == ENODATA || errno == ENOTSUP)
		return std::optional<std::string>();
	if (errno == ERANGE) // present, longer than we care to read
		return std::optional<std::string>(std::string());
	return fail(Error::fromErrno(errno, "reading the xattr " + name));
}

// read() retried on EINTR.
ssize_t readSome(int fd, char *buf, size_t size)
{
	for (;;) {
		ssize_t n = ::read(fd, buf, size);
		if (n >= 0 || errno != EINTR)
			return n;
	}
}

Result<void> writeAll(int fd, const char *data, size_t size)
{
	while (size > 0) {
		ssize_t n = ::write(fd, data, size);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fail(Error::fromErrno(errno, "writing"));
		}
		data += n;
		size -= static_cast<size_t>(n);
	}
	return {};
}

// Whether two regular files (fds at offset 0) hold the same bytes.
Result<bool> sameContent(int a, int b)
{
	std::vector<char> bufA(kCopyChunk), bufB(kCopyChunk);
	for (;;) {
		ssize_t n = readSome(a, bufA.data(), bufA.size());
		if (n < 0)
			return fail(Error::fromErrno(errno, "reading"));
		// Fill the same number of bytes from b (short reads are legal).
		size_t got = 0;
		while (got < static_cast<size_t>(n)) {
			ssize_t m = readSome(b, bufB.data() + got, static_cast<size_t>(n) - got);
			if (m < 0)
				return fail(Error::fromErrno(errno, "reading"));
			if (m == 0)
				return false;
			got += static_cast<size_t>(m);
		}
		if (n == 0) {
			char extra;
			ssize_t m = readSome(b, &extra, 1);
			if (m < 0)
				return fail(Error::fromErrno(errno, "reading"));
			return m == 0;
		}
		if (std::memcmp(bufA.data(), bufB.data(), static_cast<size_t>(n)) != 0)
			return false;
	}
}

// Up to `max` entry names of dirFd (without "." and ".."), sorted bytewise;
// *more tells whether entries were left out. The directory is reopened
// through "." so that the caller's fd keeps its offset (and may be O_PATH).
Result<std::vector<std::string>> readNames(int dirFd, size_t max, bool *more)
{
	UniqueFd fd(::openat(dirFd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
	if (!fd)
		return fail(Error::fromErrno(errno, "opening a directory"));
	CPtr<DIR, ::closedir> dir(::fdopendir(fd.get()));
	if (!dir)
		return fail(Error::fromErrno(errno, "reading a directory"));
	(void)fd.release(); // the DIR owns it now

	std::vector<std::string> names;
	*more = false;
	for (;;) {
		errno = 0;
		const dirent *entry = ::readdir(dir.get());
		if (!entry) {
			if (errno != 0)
				return fail(Error::fromErrno(errno, "reading a directory"));
			break;
		}
		std::string_view name(entry->d_name);
		if (name == "." || name == "..")
			continue;
		if (names.size() >= max) {
			*more = true;
			break;
		}
		names.emplace_back(name);
	}
	std::sort(names.begin(), names.end());
	return names;
}

// A workspace-relative path as the API takes it: '/'-separated components,
// none empty, "." or "..", no NUL, shorter than PATH_MAX.
bool validRelativePath(std::string_view path)
{
	if (path.empty() || path.size() >= PATH_MAX || path.find('\0') != std::string_view::npos)
		return false;
	size_t start = 0;
	for (;;) {
		size_t end = path.find('/', start);
		std::string_view component = path.substr(start, end == std::string_view::npos ? std::string_view::npos
											: end - start);
		if (component.empty() || component == "." || component == "..")
			return false;
		if (end == std::string_view::npos)
			return true;
		start = end + 1;
	}
}

// "a/b/c" -> ("a/b", "c"); "c" -> (".", "c").
std::pair<std::string, std::string> splitParent(const std::string &path)
{
	size_t slash = path.rfind('/');
	if (slash == std::string::npos)
		return {".", path};
	return {path.substr(0, slash), path.substr(slash + 1)};
}

size_t depthOf(std::string_view path)
{
	return static_cast<size_t>(std::count(path.begin(), path.end(), '/')) + 1;
}

// Orders paths component by component: "dir" < "dir/x" < "dir-a".
bool pathLess(std::string_view a, std::string_view b)
{
	size_t n = std::min(a.size(), b.size());
	for (size_t i = 0; i < n; i++) {
		unsigned char ca = a[i] == '/' ? 0 : static_cast<unsigned char>(a[i]);
		unsigned char cb = b[i] == '/' ? 0 : static_cast<unsigned char>(b[i]);
		if (ca != cb)
			return ca < cb;
	}
	return a.size() < b.size();
}

// A random name for a temporary entry in a directory we write to.
std::string tempName(const char *prefix)
{
	uint32_t bits = 0;
	if (::getrandom(&bits, sizeof(bits), 0) != static_cast<ssize_t>(sizeof(bits)))
		bits = static_cast<uint32_t>(::getpid()) ^ static_cast<uint32_t>(::time(nullptr));
	char buf[16];
	std::snprintf(buf, sizeof(buf), "%08x", bits);
	return std::string(prefix) + buf;
}

// Whether this process may read trusted.* xattrs: the kernel hides them
// (ENODATA, as if absent) from a process without CAP_SYS_ADMIN.
bool hasCapSysAdmin()
{
	__user_cap_header_struct header{};
	header.version = _LINUX_CAPABILITY_VERSION_3;
	__user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
	if (::syscall(SYS_capget, &header, data) != 0)
		return false;
	return (data[CAP_SYS_ADMIN / 32].effective & (1u << (CAP_SYS_ADMIN % 32))) != 0;
}

// ---- listing ------------------------------------------------------------

// One walk of the upper tree against the lower one.
class ChangeWalker
{
public:
	explicit ChangeWalker(XattrNamespace xattrs)
	{
		std::string prefix = xattrs == XattrNamespace::Trusted ? "trusted.overlay." : "user.overlay.";
		opaque_ = prefix + "opaque";
		redirect_ = prefix + "redirect";
		metacopy_ = prefix + "metacopy";
		whiteout_ = prefix + "whiteout";
	}

	// Walks upperDir; lowerDir is the directory at the same place in the
	// workspace, or -1 where there is none (or it is hidden by an opaque
	// directory): then everything in upper is new.
	Result<void> walk(int upperDir, int lowerDir, const std::string &prefix, size_t depth);

	std::vector<Change> take() { return std::move(changes_); }

private:
	Result<void> add(Change change)
	{
		if (changes_.size() >= kMaxChanges)
			return fail(Error::fromErrno(E2BIG, "more than " + std::to_string(kMaxChanges) + " changes"));
		changes_.push_back(std::move(change));
		return {};
	}
	Result<void> whiteout(int lowerDir, const std::string &name, const std::string &path,
			      const std::optional<struct stat> &lower);
	Result<void> file(int upperDir, int lowerDir, const std::string &name, const std::string &path,
			  const std::optional<struct stat> &lower);
	Result<void> symlink(int upperDir, int lowerDir, const std::string &name, const std::string &path,
			     const struct stat &upper, const std::optional<struct stat> &lower);
	Result<void> directory(int upperDir, int lowerDir, const std::string &name, const std::string &path,
			       const struct stat &upper, const std::optional<struct stat> &lower, size_t depth);

	std::string opaque_, redirect_, metacopy_, whiteout_;
	std::vector<Change> changes_;
	size_t visited_ = 0;
};

Result<void> ChangeWalker::walk(int upperDir, int lowerDir, const std::string &prefix, size_t depth)
{
	bool more = false;
	auto names = readNames(upperDir, kMaxEntriesVisited - visited_, &more);
	if (!names)
		return fail(std::move(names).error().wrap("while listing " + (prefix.empty() ? "." : prefix)));
	// The entries here have depth + 1 path components.
	if (depth >= kMaxDepth && !names->empty())
		return fail(Error::fromErrno(ELOOP, "paths of more than " + std::to_string(kMaxDepth) +
							   " components below " + prefix.substr(0, 64) + "..."));
	visited_ += names->size();
	if (more)
		return fail(Error::fromErrno(E2BIG, "more than " + std::to_string(kMaxEntriesVisited) + " entries"));

	for (const std::string &name : *names) {
		const std::string path = prefix + name;
		auto upper = statEntry(upperDir, name);
		if (!upper)
			return fail(std::move(upper).error());
		if (!*upper)
			continue; // gone meanwhile: nothing to show
		std::optional<struct stat> lower;
		if (lowerDir >= 0) {
			auto l = statEntry(lowerDir, name);
			if (!l)
				return fail(std::move(l).error().wrap("while comparing " + path));
			lower = *l;
		}

		const struct stat &st = **upper;
		Result<void> r;
		if (S_ISCHR(st.st_mode) && st.st_rdev == ::makedev(0, 0))
			r = whiteout(lowerDir, name, path, lower);
		else if (S_ISREG(st.st_mode))
			r = file(upperDir, lowerDir, name, path, lower);
		else if (S_ISLNK(st.st_mode))
			r = symlink(upperDir, lowerDir, name, path, st, lower);
		else if (S_ISDIR(st.st_mode))
			r = directory(upperDir, lowerDir, name, path, st, lower, depth);
		else if (!lower || (lower->st_mode & S_IFMT) != (st.st_mode & S_IFMT) ||
			 permissionBits(lower->st_mode) != permissionBits(st.st_mode) ||
			 lower->st_rdev != st.st_rdev) {
			// A FIFO, socket or device: listed (applying it is refused),
			// unless it is the workspace's own, copied up unchanged.
			Change c{path, lower ? ChangeKind::Modified : ChangeKind::Created, EntryType::Other,
				 lower ? typeOf(lower->st_mode) : EntryType::Other, permissionBits(st.st_mode),
				 lower ? permissionBits(lower->st_mode) : 0, {}, false};
			r = add(std::move(c));
		}
		if (!r)
			return r;
	}
	return {};
}

Result<void> ChangeWalker::whiteout(int lowerDir, const std::string &name, const std::string &path,
				    const std::optional<struct stat> &lower)
{
	// A whiteout hides the workspace's entry; with nothing to hide (the
	// workspace lost it meanwhile, or it sits in a new or opaque directory)
	// there is nothing to delete.
	if (!lower)
		return {};
	Change c{path, ChangeKind::Deleted, typeOf(lower->st_mode), typeOf(lower->st_mode), 0,
		 permissionBits(lower->st_mode), {}, false};
	if (S_ISLNK(lower->st_mode)) {
		auto target = readLinkAt(lowerDir, name);
		if (!target)
			return fail(std::move(target).error());
		c.linkTarget = std::move(*target);
	}
	return add(std::move(c));
}

Result<void> ChangeWalker::file(int upperDir, int lowerDir, const std::string &name, const std::string &path,
				const std::optional<struct stat> &lower)
{
	auto fd = openFileBeneath(upperDir, name);
	if (!fd)
		return fail(std::move(fd).error());
	struct stat st{};
	if (::fstat(fd->get(), &st) != 0)
		return fail(Error::fromErrno(errno, "inspecting " + path));
	if (!S_ISREG(st.st_mode))
		return fail(Error::fromErrno(EAGAIN, path + " changed while it was listed"));

	// A metacopy file holds only metadata; its data is in a lower layer,
	// maybe under another name: it cannot be applied as a copy of itself.
	auto metacopy = readXattr(fd->get(), metacopy_);
	if (!metacopy)
		return fail(std::move(metacopy).error().wrap("while inspecting " + path));
	if (*metacopy)
		return fail(Error::fromErrno(EOPNOTSUPP, path + " is a metacopy (mount the overlay with metacopy=off)"));

	// The other whiteout format: an empty regular file marked by an xattr.
	if (st.st_size == 0) {
		auto marker = readXattr(fd->get(), whiteout_);
		if (!marker)
			return fail(std::move(marker).error().wrap("while inspecting " + path));
		if (*marker)
			return whiteout(lowerDir, name, path, lower);
	}

	Change c{path, ChangeKind::Created, EntryType::File, EntryType::File, permissionBits(st.st_mode), 0, {}, false};
	if (lower) {
		c.kind = ChangeKind::Modified;
		c.previousType = typeOf(lower->st_mode);
		c.previousMode = permissionBits(lower->st_mode);
		if (S_ISREG(lower->st_mode) && c.mode == c.previousMode && lower->st_size == st.st_size) {
			// Copied up (opened for writing, touched...) but maybe
			// unchanged: compare the bytes.
			auto lowerFd = openFileBeneath(lowerDir, name);
			if (!lowerFd)
				return fail(std::move(lowerFd).error().wrap("while comparing " + path));
			struct stat lst{};
			if (::fstat(lowerFd->get(), &lst) != 0)
				return fail(Error::fromErrno(errno, "inspecting the workspace's " + path));
			if (!S_ISREG(lst.st_mode)) // swapped meanwhile: compare nothing
				return add(std::move(c));
			auto same = sameContent(fd->get(), lowerFd->get());
			if (!same)
				return fail(std::move(same).error().wrap("while comparing " + path));
			if (*same)
				return {};
		}
	}
	return add(std::move(c));
}

Result<void> ChangeWalker::symlink(int upperDir, int lowerDir, const std::string &name, const std::string &path,
				   const struct stat &upper, const std::optional<struct stat> &lower)
{
	auto target = readLinkAt(upperDir, name);
	if (!target)
		return fail(std::move(target).error());
	Change c{path, ChangeKind::Created, EntryType::Symlink, EntryType::Symlink, permissionBits(upper.st_mode),
		 0, std::move(*target), false};
	if (lower) {
		c.kind = ChangeKind::Modified;
		c.previousType = typeOf(lower->st_mode);
		c.previousMode = permissionBits(lower->st_mode);
		if (S_ISLNK(lower->st_mode)) {
			auto old = readLinkAt(lowerDir, name);
			if (!old)
				return fail(std::move(old).error().wrap("while comparing " + path));
			if (*old == c.linkTarget)
				return {}; // copied up (e.g. by lchown) but pointing the same way
		}
	}
	return add(std::move(c));
}

Result<void> ChangeWalker::directory(int upperDir, int lowerDir, const std::string &name, const std::string &path,
				     const struct stat &upper, const std::optional<struct stat> &lower, size_t depth)
{
	auto fd = openDirBeneath(upperDir, name);
	if (!fd)
		return fail(std::move(fd).error());

	// A redirect means a directory renamed within the overlay: its contents
	// live in the workspace under another name, which a file-by-file copy
	// cannot express.
	auto redirect = readXattr(fd->get(), redirect_);
	if (!redirect)
		return fail(std::move(redirect).error().wrap("while inspecting " + path));
	if (*redirect)
		return fail(Error::fromErrno(EOPNOTSUPP,
					     path + " is a redirected directory (mount the overlay with redirect_dir=off)"));
	auto opaque = readXattr(fd->get(), opaque_);
	if (!opaque)
		return fail(std::move(opaque).error().wrap("while inspecting " + path));
	// "y" is opaque; newer kernels write "x" on a directory that only holds
	// xattr whiteouts, which is not opaque.
	const bool isOpaque = *opaque && **opaque == "y";

	Change c{path, ChangeKind::Created, EntryType::Directory, EntryType::Directory, permissionBits(upper.st_mode),
		 0, {}, false};
	UniqueFd lowerSub;
	bool isChange = true;
	if (lower) {
		c.kind = ChangeKind::Modified;
		c.previousType = typeOf(lower->st_mode);
		c.previousMode = permissionBits(lower->st_mode);
		if (S_ISDIR(lower->st_mode)) {
			if (isOpaque) {
				// Deleted and made again: the workspace's contents
				// are hidden, everything below is new.
				c.opaqueDirectory = true;
			} else {
				// Merged with the workspace's directory: a change
				// only if its own permission bits changed.
				isChange = c.mode != c.previousMode;
				auto l = openDirBeneath(lowerDir, name);
				if (!l)
					return fail(std::move(l).error().wrap("while comparing " + path));
				lowerSub = std::move(*l);
			}
		}
	}
	if (isChange) {
		auto r = add(std::move(c));
		if (!r)
			return r;
	}
	return walk(fd->get(), lowerSub ? lowerSub.get() : -1, path + "/", depth + 1);
}

// ---- diff ---------------------------------------------------------------

// Splits text into lines, each with its '\n' (the last one may lack it).
std::vector<std::string_view> splitLines(std::string_view text)
{
	std::vector<std::string_view> lines;
	size_t start = 0;
	while (start < text.size()) {
		size_t nl = text.find('\n', start);
		size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
		lines.push_back(text.substr(start, end - start));
		start = end;
	}
	return lines;
}

// Myers' O(ND) shortest edit script between a and b (line ids), marking
// deleted[i] for lines of a and inserted[j] for lines of b. Past
// kMaxDiffEdits edits it marks everything, i.e. replaces a by b.
void markEdits(const std::vector<int> &a, const std::vector<int> &b, std::vector<bool> &deleted,
	       std::vector<bool> &inserted)
{
	const long n = static_cast<long>(a.size());
	const long m = static_cast<long>(b.size());
	deleted.assign(a.size(), false);
	inserted.assign(b.size(), false);
	const long maxD = std::min(n + m, static_cast<long>(kMaxDiffEdits));
	auto replaceAll = [&] {
		deleted.assign(a.size(), true);
		inserted.assign(b.size(), true);
	};
	if (n == 0 || m == 0) {
		replaceAll();
		return;
	}

	// v[k + offset]: the furthest x reached on diagonal k = x - y. Line
	// counts fit an int: a text is at most kMaxPatchBytes.
	const long offset = maxD + 1;
	std::vector<int> v(static_cast<size_t>(2 * maxD + 3), 0);
	// v[-d..d] as it was after each round d, for backtracking: round d
	// starts at d * d (the rounds before it hold 1 + 3 + ... + (2d - 1)).
	// At most (kMaxDiffEdits + 1)^2 ints.
	std::vector<int> trace;
	long found = -1;
	for (long d = 0; d <= maxD && found < 0; d++) {
		for (long k = -d; k <= d; k += 2) {
			long x;
			if (k == -d || (k != d && v[k - 1 + offset] < v[k + 1 + offset]))
				x = v[k + 1 + offset]; // down: insert b[y]
			else
				x = v[k - 1 + offset] + 1; // right: delete a[x]
			long y = x - k;
			while (x < n && y < m && a[x] == b[y]) {
				x++;
				y++;
			}
			v[k + offset] = static_cast<int>(x);
			if (x >= n && y >= m) {
				found = d;
				break;
			}
		}
		trace.insert(trace.end(), v.begin() + (offset - d), v.begin() + (offset + d + 1));
	}
	if (found < 0) {
		replaceAll();
		return;
	}

	// Walk back from (n, m): each round d took one edit from round d - 1's
	// furthest point on a neighbouring diagonal, then a snake of equal lines.
	long x = n, y = m;
	for (long d = found; d > 0; d--) {
		const long base = (d - 1) * (d - 1); // round d - 1 in trace
		auto at = [&](long k) -> long { return trace[static_cast<size_t>(base + k + (d - 1))]; };
		long k = x - y;
		long prevK = (k == -d || (k != d && at(k - 1) < at(k + 1))) ? k + 1 : k - 1;
		long prevX = at(prevK);
		long prevY = prevX - prevK;
		if (prevK == k + 1)
			inserted[static_cast<size_t>(prevY)] = true;
		else
			deleted[static_cast<size_t>(prevX)] = true;
		x = prevX;
		y = prevY;
	}
}

void appendRange(std::string &out, size_t start, size_t count)
{
	// As diff: "start,count", just "start" for one line, and for an empty
	// range the line before it.
	if (count == 0) {
		out += std::to_string(start) + ",0";
	} else {
		out += std::to_string(start + 1);
		if (count != 1)
			out += "," + std::to_string(count);
	}
}

void appendLine(std::string &out, char mark, std::string_view line)
{
	out += mark;
	out += line;
	if (line.empty() || line.back() != '\n')
		out += "\n\\ No newline at end of file\n";
}

// Reads a regular file for patchFor: nullopt when it is binary (a NUL in its
// first kBinarySniffBytes) or longer than kMaxPatchBytes.
Result<std::optional<std::string>> readText(int fd, const std::string &path)
{
	struct stat st{};
	if (::fstat(fd, &st) != 0)
		return fail(Error::fromErrno(errno, "inspecting " + path));
	if (!S_ISREG(st.st_mode))
		return fail(Error::fromErrno(EAGAIN, path + " is no longer a regular file"));
	if (static_cast<uint64_t>(st.st_size) > kMaxPatchBytes)
		return std::optional<std::string>();
	std::string text;
	std::vector<char> buf(kCopyChunk);
	for (;;) {
		ssize_t n = readSome(fd, buf.data(), buf.size());
		if (n < 0)
			return fail(Error::fromErrno(errno, "reading " + path));
		if (n == 0)
			break;
		if (text.size() + static_cast<size_t>(n) > kMaxPatchBytes)
			return std::optional<std::string>(); // grew meanwhile
		text.append(buf.data(), static_cast<size_t>(n));
	}
	if (text.find('\0') < kBinarySniffBytes)
		return std::optional<std::string>();
	return std::optional<std::string>(std::move(text));
}

// One side of a patch: absent (/dev/null), binary, or text.
struct PatchSide {
	bool present = false;
	std::optional<std::string> text;
};

Result<PatchSide> loadSide(int rootFd, const Change &change, EntryType type)
{
	PatchSide side;
	side.present = true;
	if (type == EntryType::Symlink) {
		// A symlink's content is its target, as git shows it.
		auto [parent, leaf] = splitParent(change.path);
		auto dir = openDirBeneath(rootFd, parent);
		if (!dir)
			return fail(std::move(dir).error());
		auto target = readLinkAt(dir->get(), leaf);
		if (!target)
			return fail(std::move(target).error());
		side.text = std::move(*target);
		return side;
	}
	auto fd = openFileBeneath(rootFd, change.path);
	if (!fd)
		return fail(std::move(fd).error());
	auto text = readText(fd->get(), change.path);
	if (!text)
		return fail(std::move(text).error());
	side.text = std::move(*text);
	return side;
}

// ---- applying -------------------------------------------------------------

// Why opening the directory `dir` (relative to rootFd) in the workspace
// failed, for a refusal. openat2 answers ENOTDIR or ELOOP for a symlink in
// the way, depending on where it is, so its components are looked at one by
// one to tell which.
std::string parentReason(int rootFd, const std::string &dir, const Error &error)
{
	switch (error.code()) {
	case ENOTDIR:
	case ELOOP:
		for (size_t end = 0; end != std::string::npos;) {
			end = dir.find('/', end + 1);
			auto [parent, leaf] = splitParent(dir.substr(0, end));
			auto parentFd = openDirBeneath(rootFd, parent);
			if (!parentFd)
				break;
			auto st = statEntry(parentFd->get(), leaf);
			if (!st || !*st)
				break;
			if (S_ISLNK((*st)->st_mode))
				return "a symlink in the workspace is in the way";
			if (!S_ISDIR((*st)->st_mode))
				return "a parent of it is not a directory in the workspace";
		}
		return error.message();
	case EXDEV:
		return "the path leaves the workspace";
	case ENOENT:
		return "its parent directory does not exist in the workspace";
	default:
		return error.message();
	}
}

// Why a symlink target, resolved lexically from a link `linkDepth`
// directories below the workspace root, cannot be created; "" when it can.
//
// Lexical resolution matches the kernel's only while ".." climbs real
// directories. The link's own directory is reached through real directories
// (its parents are opened with RESOLVE_NO_SYMLINKS), so leading ".."
// components are exact; but a ".." after a name climbs from wherever that
// name leads, and the name may be another link of the agent's: with
// "d/s -> .." (inside), "d/l -> s/../x" is lexically "d/x" but really the
// workspace's parent's x. Such targets are refused. Names after the leading
// ".." only descend: through real directories, or through links that were
// held to the same rule.
std::string symlinkTargetProblem(size_t linkDepth, std::string_view target)
{
	if (target.empty())
		return "empty symlink target";
	if (target.front() == '/')
		return kReasonOutside;
	size_t depth = linkDepth;
	bool afterName = false;
	size_t start = 0;
	while (start <= target.size()) {
		size_t end = target.find('/', start);
		if (end == std::string_view::npos)
			end = target.size();
		std::string_view component = target.substr(start, end - start);
		if (component == "..") {
			if (afterName)
				return kReasonDotDotAfterName;
			if (depth == 0)
				return kReasonOutside;
			depth--;
		} else if (!component.empty() && component != ".") {
			afterName = true;
		}
		start = end + 1;
	}
	return {};
}

// Removes whatever entry `name` is in dirFd (a directory with its
// contents); absent is fine.
Result<void> removeExisting(int dirFd, const std::string &name)
{
	auto st = statEntry(dirFd, name);
	if (!st)
		return fail(std::move(st).error());
	if (!*st)
		return {};
	if (S_ISDIR((*st)->st_mode))
		return removeTree(dirFd, name);
	if (::unlinkat(dirFd, name.c_str(), 0) != 0 && errno != ENOENT)
		return fail(Error::fromErrno(errno, "removing " + name));
	return {};
}

// Puts the temporary entry tmp in place of name in dirFd. rename() replaces
// a file or symlink atomically but not a directory: that is removed first.
Result<void> moveIntoPlace(int dirFd, const std::string &tmp, const std::string &name)
{
	auto st = statEntry(dirFd, name);
	if (!st)
		return fail(std::move(st).error());
	if (*st && S_ISDIR((*st)->st_mode)) {
		auto r = removeTree(dirFd, name);
		if (!r)
			return r;
	}
	if (::renameat(dirFd, tmp.c_str(), dirFd, name.c_str()) != 0)
		return fail(Error::fromErrno(errno, "renaming into place"));
	return {};
}

// Applies changes one at a time, recording which were applied.
class Applier
{
public:
	Applier(int upperFd, int workspaceFd) : upperFd_(upperFd), workspaceFd_(workspaceFd) {}

	// "" when applied, else why not.
	std::string apply(const Change &change);
	// Sets the final permission bits of directories that had to stay
	// writable while their contents were applied.
	void finishDirectories();

private:
	std::string applyDeletion(int wsParent, int upParent, const std::string &leaf);
	std::string applyFile(int wsParent, int upParent, const std::string &leaf);
	std::string applySymlink(const Change &change, int wsParent, int upParent, const std::string &leaf);
	std::string applyDirectory(const Change &change, int wsParent, const std::string &leaf);

	int upperFd_;
	int workspaceFd_;
	std::vector<std::pair<std::string, unsigned>> finalModes_;
};

std::string Applier::apply(const Change &change)
{
	if (!validRelativePath(change.path))
		return "invalid path";
	auto [parent, leaf] = splitParent(change.path);
	auto wsParent = openDirBeneath(workspaceFd_, parent);
	if (!wsParent)
		return parentReason(workspaceFd_, parent, wsParent.error());
	auto upParent = openDirBeneath(upperFd_, parent);
	if (!upParent)
		return kReasonStale;

	switch (change.kind) {
	case ChangeKind::Deleted:
		return applyDeletion(wsParent->get(), upParent->get(), leaf);
	case ChangeKind::Created:
	case ChangeKind::Modified:
		switch (change.type) {
		case EntryType::File:
			return applyFile(wsParent->get(), upParent->get(), leaf);
		case EntryType::Symlink:
			return applySymlink(change, wsParent->get(), upParent->get(), leaf);
		case EntryType::Directory:
			return applyDirectory(change, wsParent->get(), leaf);
		case EntryType::Other:
			return "unsupported file type";
		}
	}
	return "unknown change";
}

std::string Applier::applyDeletion(int wsParent, int upParent, const std::string &leaf)
{
	// The upper entry must still be the whiteout that was listed (a 0:0
	// device, or an empty file for the xattr format, which we may not be
	// allowed to read here).
	auto up = statEntry(upParent, leaf);
	if (!up || !*up)
		return kReasonStale;
	const struct stat &st = **up;
	bool isWhiteout = (S_ISCHR(st.st_mode) && st.st_rdev == ::makedev(0, 0)) ||
			  (S_ISREG(st.st_mode) && st.st_size == 0);
	if (!isWhiteout)
		return kReasonStale;
	auto r = removeExisting(wsParent, leaf);
	if (!r)
		return r.error().message();
	// The whiteout has done its work; without it the entry stays deleted
	// since the workspace no longer has it.
	(void)::unlinkat(upParent, leaf.c_str(), 0);
	return {};
}

std::string Applier::applyFile(int wsParent, int upParent, const std::string &leaf)
{
	auto src = openFileBeneath(upParent, leaf);
	if (!src)
		return kReasonStale;
	struct stat st{};
	if (::fstat(src->get(), &st) != 0 || !S_ISREG(st.st_mode))
		return kReasonStale;

	// Write a new file next to the target and rename it over: the target is
	// never opened, so a hard link the workspace has there (maybe to a file
	// elsewhere) is replaced rather than written through, and readers see
	// the old or the new content, never half of it. O_EXCL|O_NOFOLLOW: the
	// random name is created fresh, never reused.
	std::string tmp;
	UniqueFd out;
	for (int attempt = 0; attempt < kTempNameAttempts && !out; attempt++) {
		tmp = tempName(".gvm-apply-");
		out = UniqueFd(::openat(wsParent, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
					0600));
		if (!out && errno != EEXIST)
			return Error::fromErrno(errno, "creating a temporary file").message();
	}
	if (!out)
		return "no free temporary name";
	auto cleanup = [&] { (void)::unlinkat(wsParent, tmp.c_str(), 0); };

	std::vector<char> buf(kCopyChunk);
	for (;;) {
		ssize_t n = readSome(src->get(), buf.data(), buf.size());
		if (n < 0) {
			cleanup();
			return Error::fromErrno(errno, "reading the new content").message();
		}
		if (n == 0)
			break;
		auto w = writeAll(out.get(), buf.data(), static_cast<size_t>(n));
		if (!w) {
			cleanup();
			return w.error().message();
		}
	}
	// Permission bits only: set-id and sticky bits are not carried over.
	// fchmod is not subject to the umask, so the mode is exactly this.
	if (::fchmod(out.get(), st.st_mode & 0777) != 0) {
		cleanup();
		return Error::fromErrno(errno, "setting permissions").message();
	}
	if (::close(out.release()) != 0) {
		cleanup();
		return Error::fromErrno(errno, "writing the new content").message();
	}
	auto r = moveIntoPlace(wsParent, tmp, leaf);
	if (!r) {
		cleanup();
		return r.error().message();
	}
	(void)::unlinkat(upParent, leaf.c_str(), 0);
	return {};
}

std::string Applier::applySymlink(const Change &change, int wsParent, int upParent, const std::string &leaf)
{
	auto target = readLinkAt(upParent, leaf);
	if (!target || *target != change.linkTarget)
		return kReasonStale;
	// Lexical check against the link's own directory: an absolute target,
	// or ".." climbing above the workspace root, would let the agent point
	// the user's tools (editors, build scripts) at files outside it.
	std::string problem = symlinkTargetProblem(depthOf(change.path) - 1, *target);
	if (!problem.empty())
		return problem;

	std::string tmp;
	bool made = false;
	for (int attempt = 0; attempt < kTempNameAttempts && !made; attempt++) {
		tmp = tempName(".gvm-apply-");
		made = ::symlinkat(target->c_str(), wsParent, tmp.c_str()) == 0;
		if (!made && errno != EEXIST)
			return Error::fromErrno(errno, "creating a symlink").message();
	}
	if (!made)
		return "no free temporary name";
	auto r = moveIntoPlace(wsParent, tmp, leaf);
	if (!r) {
		(void)::unlinkat(wsParent, tmp.c_str(), 0);
		return r.error().message();
	}
	(void)::unlinkat(upParent, leaf.c_str(), 0);
	return {};
}

std::string Applier::applyDirectory(const Change &change, int wsParent, const std::string &leaf)
{
	auto existing = statEntry(wsParent, leaf);
	if (!existing)
		return existing.error().message();
	bool existed = *existing && S_ISDIR((*existing)->st_mode);
	if (*existing && !existed && ::unlinkat(wsParent, leaf.c_str(), 0) != 0)
		return Error::fromErrno(errno, "removing what is in the way").message();
	if (!existed && ::mkdirat(wsParent, leaf.c_str(), 0700) != 0)
		return Error::fromErrno(errno, "creating the directory").message();

	auto dir = openDirBeneath(wsParent, leaf);
	if (!dir)
		return dir.error().message();
	if (existed && change.opaqueDirectory) {
		// The agent replaced the whole directory: what the workspace has
		// in it goes; the new contents follow as created entries.
		for (;;) {
			bool more = false;
			auto names = readNames(dir->get(), kRemoveBatch, &more);
			if (!names)
				return names.error().message();
			for (const std::string &name : *names) {
				auto r = removeTree(dir->get(), name);
				if (!r && r.error().code() != ENOENT)
					return r.error().message();
			}
			if (!more)
				break;
		}
	}
	// The owner keeps rwx while the directory's contents are applied; the
	// exact bits are set by finishDirectories() when they take some away.
	unsigned mode = change.mode & 0777;
	if (::fchmod(dir->get(), mode | 0700) != 0)
		return Error::fromErrno(errno, "setting permissions").message();
	if ((mode & 0700) != 0700)
		finalModes_.emplace_back(change.path, mode);
	// The upper directory is removed later, once its applied contents are
	// gone from it (see applyChanges).
	return {};
}

void Applier::finishDirectories()
{
	// Deepest first, so that a parent losing its x bit comes last.
	for (auto it = finalModes_.rbegin(); it != finalModes_.rend(); ++it) {
		auto dir = openDirBeneath(workspaceFd_, it->first);
		if (dir)
			(void)::fchmod(dir->get(), it->second);
	}
}

// Whether `path` is `prefix` or below it.
bool isAtOrBelow(std::string_view path, std::string_view prefix)
{
	return path == prefix ||
	       (path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0 && path[prefix.size()] == '/');
}

// A requested path as the user may type it: "./dir/" -> "dir".
std::string normalizeRequest(std::string path)
{
	while (path.size() >= 2 && path.compare(0, 2, "./") == 0)
		path.erase(0, 2);
	while (path.size() > 1 && path.back() == '/')
		path.pop_back();
	return path;
}

// Removes one entry of dirFd for removeTree, a directory with its contents;
// `depth` levels below the tree's top, topFd.
Result<void> removeEntry(int dirFd, const std::string &name, int topFd, size_t depth,
			 std::vector<std::string> &pending, size_t &count)
{
	if (++count > kMaxRemoveEntries)
		return fail(Error::fromErrno(E2BIG, "more than " + std::to_string(kMaxRemoveEntries) + " entries"));
	auto st = statEntry(dirFd, name);
	if (!st)
		return fail(std::move(st).error());
	if (!*st)
		return fail(Error::fromErrno(ENOENT, "removing " + name));
	if (!S_ISDIR((*st)->st_mode)) {
		// Files, symlinks (never followed: unlink removes the link),
		// devices, whiteouts.
		if (::unlinkat(dirFd, name.c_str(), 0) != 0)
			return fail(Error::fromErrno(errno, "removing " + name));
		return {};
	}
	if (depth >= kMaxDepth) {
		// Too deep to hold one more fd per level: move this subtree up
		// next to the tree's top and remove it from there later.
		for (int attempt = 0; attempt < kTempNameAttempts; attempt++) {
			std::string tmp = tempName(".gvm-remove-");
			if (::renameat2(dirFd, name.c_str(), topFd, tmp.c_str(), RENAME_NOREPLACE) == 0) {
				pending.push_back(tmp);
				return {};
			}
			if (errno != EEXIST)
				return fail(Error::fromErrno(errno, "moving up " + name));
		}
		return fail(Error::fromErrno(EEXIST, "moving up " + name));
	}
	auto sub = openDirBeneath(dirFd, name);
	if (!sub)
		return fail(std::move(sub).error());
	for (;;) {
		bool more = false;
		auto names = readNames(sub->get(), kRemoveBatch, &more);
		if (!names)
			return fail(std::move(names).error().wrap("while removing " + name));
		for (const std::string &child : *names) {
			auto r = removeEntry(sub->get(), child, topFd, depth + 1, pending, count);
			if (!r && r.error().code() != ENOENT)
				return r;
		}
		if (!more)
			break;
	}
	if (::unlinkat(dirFd, name.c_str(), AT_REMOVEDIR) != 0)
		return fail(Error::fromErrno(errno, "removing " + name));
	return {};
}

} // namespace

const char *toString(ChangeKind kind)
{
	switch (kind) {
	case ChangeKind::Created: return "created";
	case ChangeKind::Modified: return "modified";
	case ChangeKind::Deleted: return "deleted";
	}
	return "unknown";
}

const char *toString(EntryType type)
{
	switch (type) {
	case EntryType::File: return "file";
	case EntryType::Directory: return "directory";
	case EntryType::Symlink: return "symlink";
	case EntryType::Other: return "other";
	}
	return "unknown";
}

Result<std::vector<Change>> listChanges(int upperFd, int lowerFd, XattrNamespace xattrs)
{
	// Without CAP_SYS_ADMIN the kernel answers "no such attribute" for
	// trusted.* instead of refusing, so opaque directories would silently
	// look merged: refuse to produce such a list.
	if (xattrs == XattrNamespace::Trusted && !hasCapSysAdmin())
		return fail(Error::fromErrno(EPERM, "reading trusted.overlay.* xattrs needs CAP_SYS_ADMIN"));
	struct stat st{};
	if (::fstat(upperFd, &st) != 0 || !S_ISDIR(st.st_mode))
		return fail(Error::fromErrno(ENOTDIR, "the upper directory"));
	if (::fstat(lowerFd, &st) != 0 || !S_ISDIR(st.st_mode))
		return fail(Error::fromErrno(ENOTDIR, "the workspace directory"));

	ChangeWalker walker(xattrs);
	auto r = walker.walk(upperFd, lowerFd, "", 0);
	if (!r)
		return fail(std::move(r).error().wrap("while listing the workspace changes"));
	// The walk visits each directory's names sorted bytewise and emits a
	// directory right before its contents: already sorted by pathLess.
	return walker.take();
}

std::string quotePath(std::string_view path)
{
	bool plain = std::all_of(path.begin(), path.end(), [](char c) {
		auto u = static_cast<unsigned char>(c);
		return u >= 0x20 && u < 0x7f && c != '"' && c != '\\';
	});
	if (plain)
		return std::string(path);
	std::string out = "\"";
	for (char c : path) {
		auto u = static_cast<unsigned char>(c);
		switch (c) {
		case '\a': out += "\\a"; break;
		case '\b': out += "\\b"; break;
		case '\t': out += "\\t"; break;
		case '\n': out += "\\n"; break;
		case '\v': out += "\\v"; break;
		case '\f': out += "\\f"; break;
		case '\r': out += "\\r"; break;
		case '"': out += "\\\""; break;
		case '\\': out += "\\\\"; break;
		default:
			if (u >= 0x20 && u < 0x7f) {
				out += c;
			} else {
				char buf[8];
				std::snprintf(buf, sizeof(buf), "\\%03o", u);
				out += buf;
			}
		}
	}
	out += '"';
	return out;
}

std::string unifiedDiff(std::string_view oldText, std::string_view newText, std::string_view oldLabel,
			std::string_view newLabel)
{
	if (oldText == newText)
		return {};
	const std::vector<std::string_view> a = splitLines(oldText);
	const std::vector<std::string_view> b = splitLines(newText);

	// Lines become small integers so the diff compares ints. A line keeps
	// its '\n': "x" at the end of a file differs from "x\n".
	std::unordered_map<std::string_view, int> ids;
	auto idsOf = [&](const std::vector<std::string_view> &lines) {
		std::vector<int> out;
		out.reserve(lines.size());
		for (std::string_view line : lines)
			out.push_back(ids.emplace(line, static_cast<int>(ids.size())).first->second);
		return out;
	};
	const std::vector<int> ia = idsOf(a);
	const std::vector<int> ib = idsOf(b);

	// Common head and tail need no search; Myers runs on the middle.
	size_t head = 0;
	while (head < ia.size() && head < ib.size() && ia[head] == ib[head])
		head++;
	size_t tail = 0;
	while (tail < ia.size() - head && tail < ib.size() - head &&
	       ia[ia.size() - 1 - tail] == ib[ib.size() - 1 - tail])
		tail++;
	std::vector<bool> midDeleted, midInserted;
	markEdits(std::vector<int>(ia.begin() + static_cast<long>(head), ia.end() - static_cast<long>(tail)),
		  std::vector<int>(ib.begin() + static_cast<long>(head), ib.end() - static_cast<long>(tail)), midDeleted,
		  midInserted);
	std::vector<bool> deleted(a.size(), false), inserted(b.size(), false);
	std::copy(midDeleted.begin(), midDeleted.end(), deleted.begin() + static_cast<long>(head));
	std::copy(midInserted.begin(), midInserted.end(), inserted.begin() + static_cast<long>(head));

	// The edit script as one op per line: ' ' common, '-' from a, '+' from
	// b; within a change, deletions come before insertions (as diff).
	struct Op {
		char mark;
		size_t i; // index in a before this op
		size_t j; // index in b before this op
	};
	std::vector<Op> ops;
	ops.reserve(a.size() + b.size());
	for (size_t i = 0, j = 0; i < a.size() || j < b.size();) {
		if (i < a.size() && deleted[i]) {
			ops.push_back({'-', i, j});
			i++;
		} else if (j < b.size() && inserted[j]) {
			ops.push_back({'+', i, j});
			j++;
		} else {
			ops.push_back({' ', i, j});
			i++;
			j++;
		}
	}

	std::string out;
	out += "--- ";
	out += oldLabel;
	out += "\n+++ ";
	out += newLabel;
	out += '\n';
	// Hunks: each change with kContextLines around it; changes closer than
	// twice that share a hunk.
	size_t k = 0;
	while (k < ops.size()) {
		while (k < ops.size() && ops[k].mark == ' ')
			k++;
		if (k == ops.size())
			break;
		size_t start = k > kContextLines ? k - kContextLines : 0;
		size_t end = k; // one past the last change so far
		for (size_t p = k; p < ops.size(); p++) {
			if (ops[p].mark != ' ') {
				end = p + 1;
			} else if (p - end + 1 > 2 * kContextLines) {
				break;
			}
		}
		size_t stop = std::min(ops.size(), end + kContextLines);
		size_t oldCount = 0, newCount = 0;
		for (size_t p = start; p < stop; p++) {
			oldCount += ops[p].mark != '+';
			newCount += ops[p].mark != '-';
		}
		out += "@@ -";
		appendRange(out, ops[start].i, oldCount);
		out += " +";
		appendRange(out, ops[start].j, newCount);
		out += " @@\n";
		for (size_t p = start; p < stop; p++) {
			const Op &op = ops[p];
			appendLine(out, op.mark, op.mark == '+' ? b[op.j] : a[op.i]);
		}
		k = stop;
	}
	return out;
}

Result<std::string> patchFor(int upperFd, int lowerFd, const Change &change)
{
	if (!validRelativePath(change.path))
		return fail(Error::fromErrno(EINVAL, "invalid path"));
	if (change.type != EntryType::File && change.type != EntryType::Symlink)
		return std::string();

	PatchSide oldSide, newSide;
	// The old side exists when the workspace had an entry of the same kind
	// (a file replacing a directory shows as created, against /dev/null).
	if (change.kind != ChangeKind::Created && change.previousType == change.type) {
		auto side = loadSide(lowerFd, change, change.type);
		if (!side)
			return fail(std::move(side).error().wrap("while reading the workspace's " + change.path));
		oldSide = std::move(*side);
	}
	if (change.kind != ChangeKind::Deleted) {
		auto side = loadSide(upperFd, change, change.type);
		if (!side)
			return fail(std::move(side).error().wrap("while reading the sandbox's " + change.path));
		newSide = std::move(*side);
	}

	const std::string oldLabel = oldSide.present ? quotePath("a/" + change.path) : "/dev/null";
	const std::string newLabel = newSide.present ? quotePath("b/" + change.path) : "/dev/null";
	if ((oldSide.present && !oldSide.text) || (newSide.present && !newSide.text))
		return "Binary files " + oldLabel + " and " + newLabel + " differ\n";
	std::string oldText = oldSide.text.value_or(std::string());
	std::string newText = newSide.text.value_or(std::string());
	if (oldSide.present && newSide.present && oldText == newText)
		return std::string();
	if (oldText == newText) {
		// An empty file created or deleted: diff shows headers only.
		return "--- " + oldLabel + "\n+++ " + newLabel + "\n";
	}
	return unifiedDiff(oldText, newText, oldLabel, newLabel);
}

Result<ApplyResult> applyChanges(int upperFd, int workspaceFd, const std::vector<Change> &changes,
				 const std::vector<std::string> &paths)
{
	struct stat st{};
	if (::fstat(upperFd, &st) != 0 || !S_ISDIR(st.st_mode))
		return fail(Error::fromErrno(ENOTDIR, "the upper directory"));
	if (::fstat(workspaceFd, &st) != 0 || !S_ISDIR(st.st_mode))
		return fail(Error::fromErrno(ENOTDIR, "the workspace directory"));

	ApplyResult result;
	std::vector<bool> selected(changes.size(), paths.empty());
	for (const std::string &raw : paths) {
		std::string request = normalizeRequest(raw);
		// "." (or "") is the whole workspace.
		bool all = request.empty() || request == ".";
		bool any = false;
		for (size_t i = 0; i < changes.size(); i++) {
			if (all || isAtOrBelow(changes[i].path, request)) {
				selected[i] = true;
				any = true;
			}
		}
		if (!any)
			result.refused.emplace_back(raw, "no change at this path");
	}
	// A created directory above a selected change must exist for it.
	std::map<std::string, size_t> byPath;
	for (size_t i = 0; i < changes.size(); i++)
		byPath.emplace(changes[i].path, i);
	for (size_t i = 0; i < changes.size(); i++) {
		if (!selected[i])
			continue;
		std::string ancestor = changes[i].path;
		for (size_t slash; (slash = ancestor.rfind('/')) != std::string::npos;) {
			ancestor.resize(slash);
			auto it = byPath.find(ancestor);
			if (it != byPath.end() && changes[it->second].kind == ChangeKind::Created &&
			    changes[it->second].type == EntryType::Directory)
				selected[it->second] = true;
		}
	}

	// Parents before their contents, whatever order the list came in.
	std::vector<size_t> order;
	for (size_t i = 0; i < changes.size(); i++)
		if (selected[i])
			order.push_back(i);
	std::stable_sort(order.begin(), order.end(),
			 [&](size_t x, size_t y) { return pathLess(changes[x].path, changes[y].path); });

	Applier applier(upperFd, workspaceFd);
	std::vector<bool> applied(changes.size(), false);
	for (size_t i : order) {
		std::string reason = applier.apply(changes[i]);
		if (reason.empty()) {
			applied[i] = true;
			result.applied.push_back(changes[i].path);
		} else {
			result.refused.emplace_back(changes[i].path, std::move(reason));
		}
	}
	applier.finishDirectories();

	// Tidy upper: directories that applied changes leave empty (created or
	// modified directories once their contents are applied, and merely
	// copied-up ones above) go, deepest first, so listChanges no longer
	// walks them. A directory that is itself an unapplied change stays. A
	// non-empty one stays too (rmdir refuses it): it holds what remains.
	std::set<std::string> unappliedDirs;
	for (size_t i = 0; i < changes.size(); i++)
		if (!applied[i])
			unappliedDirs.insert(changes[i].path);
	std::set<std::string> candidates;
	for (size_t i = 0; i < changes.size(); i++) {
		if (!applied[i])
			continue;
		std::string dir = changes[i].path;
		if (changes[i].type == EntryType::Directory && changes[i].kind != ChangeKind::Deleted)
			candidates.insert(dir);
		for (size_t slash; (slash = dir.rfind('/')) != std::string::npos;) {
			dir.resize(slash);
			candidates.insert(dir);
		}
	}
	std::vector<std::string> prune(candidates.begin(), candidates.end());
	std::stable_sort(prune.begin(), prune.end(),
			 [](const std::string &x, const std::string &y) { return depthOf(x) > depthOf(y); });
	for (const std::string &dir : prune) {
		if (unappliedDirs.count(dir))
			continue;
		auto [parent, leaf] = splitParent(dir);
		auto parentFd = openDirBeneath(upperFd, parent);
		if (parentFd)
			(void)::unlinkat(parentFd->get(), leaf.c_str(), AT_REMOVEDIR);
	}
	return result;
}

Result<void> removeTree(int parentFd, const std::string &name)
{
	if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
		return fail(Error::fromErrno(EINVAL, "removing \"" + name + "\": not a single name"));
	std::vector<std::string> pending{name};
	size_t count = 0;
	bool first = true;
	while (!pending.empty()) {
		std::string next = std::move(pending.back());
		pending.pop_back();
		auto r = removeEntry(parentFd, next, parentFd, 0, pending, count);
		// A subtree moved up may have been removed by someone else; the
		// tree itself must exist.
		if (!r && (first || r.error().code() != ENOENT))
			return r;
		first = false;
	}
	return {};
}

} // namespace gvm::isolation
