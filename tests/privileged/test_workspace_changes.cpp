// SPDX-License-Identifier: Apache-2.0
//
// Review and application of an agent's overlay changes, against a real
// overlayfs: a scratch workspace (lower) is changed through the merged view,
// the overlay is unmounted, and then the upper tree is listed, diffed and
// applied, the apply running as an unprivileged user (nobody) as the daemon
// runs it as the caller.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <grp.h>
#include <map>
#include <random>
#include <sched.h>
#include <set>
#include <sstream>
#include <string>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <tuple>
#include <unistd.h>
#include <vector>

#include "common/unique_fd.h"
#include "daemon/isolation/workspace_changes.h"

using namespace gvm;
using namespace gvm::isolation;
namespace fs = std::filesystem;

namespace {

constexpr uid_t kNobody = 65534;

// Mounts made here vanish with this process even if it dies mid-test: the
// whole program runs in a private mount namespace of its own.
void enterPrivateMountNamespace()
{
	static bool done = false;
	if (done)
		return;
	REQUIRE(::unshare(CLONE_NEWNS) == 0);
	// Stop mount events propagating back to the host's namespace.
	REQUIRE(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0);
	done = true;
}

void writeFile(const std::string &path, std::string_view content, mode_t mode = 0644)
{
	UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
	REQUIRE(fd);
	REQUIRE(::write(fd.get(), content.data(), content.size()) == static_cast<ssize_t>(content.size()));
	REQUIRE(::fchmod(fd.get(), mode) == 0);
}

std::string readFile(const std::string &path)
{
	std::ifstream in(path, std::ios::binary);
	std::stringstream ss;
	ss << in.rdbuf();
	return ss.str();
}

bool exists(const std::string &path)
{
	struct stat st{};
	return ::lstat(path.c_str(), &st) == 0;
}

mode_t typeAt(const std::string &path)
{
	struct stat st{};
	REQUIRE(::lstat(path.c_str(), &st) == 0);
	return st.st_mode & S_IFMT;
}

std::set<std::string> namesIn(const std::string &dir)
{
	std::set<std::string> names;
	for (const auto &entry : fs::directory_iterator(dir))
		names.insert(entry.path().filename().string());
	return names;
}

// lchown of a whole tree; never follows a symlink.
void chownTree(const std::string &root, uid_t uid)
{
	REQUIRE(::lchown(root.c_str(), uid, uid) == 0);
	for (const auto &entry : fs::recursive_directory_iterator(root))
		REQUIRE(::lchown(entry.path().c_str(), uid, uid) == 0);
}

UniqueFd openDir(const std::string &path)
{
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	REQUIRE(fd);
	return fd;
}

// A scratch dir with lower/ upper/ work/ merged/ and an overlay over them;
// unmounted (MNT_DETACH) and removed on destruction, whatever happened.
class Scratch
{
public:
	explicit Scratch(const std::string &extraOptions = "redirect_dir=off,metacopy=off")
	{
		enterPrivateMountNamespace();
		char tmpl[] = "/tmp/gvm-wsc-XXXXXX";
		REQUIRE(::mkdtemp(tmpl));
		root_ = tmpl;
		// nobody must get through it to the workspace and the upper dir.
		REQUIRE(::chmod(root_.c_str(), 0755) == 0);
		for (const char *dir : {"lower", "upper", "work", "merged"})
			REQUIRE(::mkdir((root_ + "/" + dir).c_str(), 0755) == 0);
		options_ = "lowerdir=" + lower() + ",upperdir=" + upper() + ",workdir=" + root_ + "/work," + extraOptions;
	}
	~Scratch()
	{
		unmount();
		std::error_code ec;
		fs::remove_all(root_, ec); // does not follow symlinks
	}
	Scratch(const Scratch &) = delete;
	Scratch &operator=(const Scratch &) = delete;

	void mount()
	{
		REQUIRE(::mount("overlay", merged().c_str(), "overlay", 0, options_.c_str()) == 0);
		mounted_ = true;
	}
	void unmount()
	{
		if (mounted_)
			::umount2(merged().c_str(), MNT_DETACH);
		mounted_ = false;
	}

	std::string path(const std::string &rel = "") const { return rel.empty() ? root_ : root_ + "/" + rel; }
	std::string lower(const std::string &rel = "") const { return sub("lower", rel); }
	std::string upper(const std::string &rel = "") const { return sub("upper", rel); }
	std::string merged(const std::string &rel = "") const { return sub("merged", rel); }

private:
	std::string sub(const char *dir, const std::string &rel) const
	{
		return root_ + "/" + dir + (rel.empty() ? "" : "/" + rel);
	}

	std::string root_;
	std::string options_;
	bool mounted_ = false;
};

const std::string kBinaryOld("\x7f" "ELF\0\0\x01\x02", 8);
const std::string kBinaryNew("\x7f" "ELF\0\0\x03\x04", 8);

// The workspace before the agent runs.
void populateLower(Scratch &s)
{
	writeFile(s.lower("a.txt"), "one\ntwo\nthree\nfour\nfive\n");
	REQUIRE(::mkdir(s.lower("dir").c_str(), 0755) == 0);
	writeFile(s.lower("dir/b.txt"), "b\n");
	writeFile(s.lower("gone.txt"), "gone\n");
	REQUIRE(::mkdir(s.lower("gonedir").c_str(), 0755) == 0);
	writeFile(s.lower("gonedir/x"), "x\n");
	REQUIRE(::mkdir(s.lower("gonedir/sub").c_str(), 0755) == 0);
	writeFile(s.lower("gonedir/sub/y"), "y\n");
	REQUIRE(::mkdir(s.lower("keep").c_str(), 0755) == 0);
	writeFile(s.lower("keep/k.txt"), "k\n");
	REQUIRE(::mkdir(s.lower("dir2").c_str(), 0755) == 0);
	writeFile(s.lower("dir2/z"), "z\n");
	writeFile(s.lower("bin.dat"), kBinaryOld);
	writeFile(s.lower("run.sh"), "#!/bin/sh\n", 0644);
	REQUIRE(::mkdir(s.lower("opq").c_str(), 0755) == 0);
	writeFile(s.lower("opq/old.txt"), "old\n");
	writeFile(s.lower("touched.txt"), "same\n");
}

// What the agent does, through the merged view.
void agentChanges(Scratch &s)
{
	writeFile(s.merged("a.txt"), "one\ntwo\nTHREE\nfour\nfive\n");
	writeFile(s.merged("new.txt"), "hello\n");
	writeFile(s.merged("dir/c.txt"), "c\n");
	REQUIRE(::unlink(s.merged("gone.txt").c_str()) == 0);
	fs::remove_all(s.merged("gonedir"));
	REQUIRE(::symlink("a.txt", s.merged("inside").c_str()) == 0);
	REQUIRE(::symlink("../a.txt", s.merged("dir/up").c_str()) == 0);
	REQUIRE(::symlink("/etc/passwd", s.merged("escape").c_str()) == 0);
	REQUIRE(::symlink("../../etc", s.merged("escape2").c_str()) == 0);
	// Each lexically inside, but together a way out: dir/s is the
	// workspace root, so s/.. is its parent.
	REQUIRE(::symlink("..", s.merged("dir/s").c_str()) == 0);
	REQUIRE(::symlink("s/../outside-link.txt", s.merged("dir/sneaky").c_str()) == 0);
	REQUIRE(::chmod(s.merged("run.sh").c_str(), 0755) == 0);
	fs::remove_all(s.merged("dir2"));
	writeFile(s.merged("dir2"), "now a file\n");
	writeFile(s.merged("bin.dat"), kBinaryNew);
	// Deleted and made again: an opaque directory.
	fs::remove_all(s.merged("opq"));
	REQUIRE(::mkdir(s.merged("opq").c_str(), 0755) == 0);
	writeFile(s.merged("opq/new.txt"), "fresh\n");
	REQUIRE(::mkdir(s.merged("newdir").c_str(), 0755) == 0);
	writeFile(s.merged("newdir/n.txt"), "n\n");
	// Copied up without a change: opened for writing, written the same.
	writeFile(s.merged("touched.txt"), "same\n");
	writeFile(s.merged("keep/k.txt"), "k\n");
}

// A scenario ready to review: overlay used, then unmounted; the workspace
// and upper belong to nobody, as a caller's would.
void prepare(Scratch &s)
{
	populateLower(s);
	s.mount();
	agentChanges(s);
	s.unmount();
	// In trusted mode the agent could set user.overlay.opaque on its own
	// directories; it must not count.
	REQUIRE(::setxattr(s.upper("dir").c_str(), "user.overlay.opaque", "y", 1, 0) == 0);
	chownTree(s.lower(), kNobody);
	chownTree(s.upper(), kNobody);
}

const Change *find(const std::vector<Change> &changes, const std::string &path)
{
	for (const Change &c : changes)
		if (c.path == path)
			return &c;
	return nullptr;
}

using Row = std::tuple<std::string, std::string, std::string>; // path, kind, type

std::vector<Row> rows(const std::vector<Change> &changes)
{
	std::vector<Row> out;
	for (const Change &c : changes)
		out.emplace_back(c.path, toString(c.kind), toString(c.type));
	return out;
}

const std::vector<Row> kExpected = {
	{"a.txt", "modified", "file"},
	{"bin.dat", "modified", "file"},
	{"dir/c.txt", "created", "file"},
	{"dir/s", "created", "symlink"},
	{"dir/sneaky", "created", "symlink"},
	{"dir/up", "created", "symlink"},
	{"dir2", "modified", "file"},
	{"escape", "created", "symlink"},
	{"escape2", "created", "symlink"},
	{"gone.txt", "deleted", "file"},
	{"gonedir", "deleted", "directory"},
	{"inside", "created", "symlink"},
	{"new.txt", "created", "file"},
	{"newdir", "created", "directory"},
	{"newdir/n.txt", "created", "file"},
	{"opq", "modified", "directory"},
	{"opq/new.txt", "created", "file"},
	{"run.sh", "modified", "file"},
};

std::vector<Change> listAsRoot(Scratch &s)
{
	UniqueFd upper = openDir(s.upper());
	UniqueFd lower = openDir(s.lower());
	auto changes = listChanges(upper.get(), lower.get());
	INFO((changes ? "" : changes.error().message()));
	REQUIRE(changes);
	return *changes;
}

// Runs body in a child process and returns what it wrote to its pipe; with
// asNobody, the child first drops to nobody (groups, gid, then uid, as the
// daemon's caller child does).
std::string runChild(const std::function<std::string()> &body, bool asNobody)
{
	int fds[2];
	REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
	UniqueFd readEnd(fds[0]), writeEnd(fds[1]);
	pid_t pid = ::fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		readEnd.reset();
		if (asNobody && (::setgroups(0, nullptr) != 0 || ::setresgid(kNobody, kNobody, kNobody) != 0 ||
				 ::setresuid(kNobody, kNobody, kNobody) != 0))
			::_exit(3);
		std::string out = body();
		size_t done = 0;
		while (done < out.size()) {
			ssize_t n = ::write(writeEnd.get(), out.data() + done, out.size() - done);
			if (n <= 0)
				::_exit(4);
			done += static_cast<size_t>(n);
		}
		::_exit(0);
	}
	writeEnd.reset();
	std::string out;
	char buf[4096];
	ssize_t n;
	while ((n = ::read(readEnd.get(), buf, sizeof(buf))) > 0)
		out.append(buf, static_cast<size_t>(n));
	int status = 0;
	REQUIRE(::waitpid(pid, &status, 0) == pid);
	REQUIRE(WIFEXITED(status));
	REQUIRE(WEXITSTATUS(status) == 0);
	return out;
}

std::string runAsNobody(const std::function<std::string()> &body)
{
	return runChild(body, true);
}

struct ChildApply {
	std::vector<std::string> applied;
	std::map<std::string, std::string> refused;
	std::string error;
};

// For failure messages.
std::string describe(const ChildApply &result)
{
	std::string text = result.error;
	for (const std::string &p : result.applied)
		text += "applied " + p + "\n";
	for (const auto &[p, reason] : result.refused)
		text += "refused " + p + ": " + reason + "\n";
	return text;
}

// Applies as nobody: the upper fd is opened here by root, the workspace fd
// by the child after it switched to nobody, as the daemon does.
ChildApply applyAsNobody(Scratch &s, const std::vector<Change> &changes, const std::vector<std::string> &paths)
{
	UniqueFd upper = openDir(s.upper());
	std::string lowerPath = s.lower();
	std::string out = runAsNobody([&]() -> std::string {
		UniqueFd ws(::open(lowerPath.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
		if (!ws)
			return "E cannot open the workspace\n";
		auto r = applyChanges(upper.get(), ws.get(), changes, paths);
		if (!r)
			return "E " + r.error().message() + "\n";
		std::string text;
		for (const std::string &p : r->applied)
			text += "A " + p + "\n";
		for (const auto &[p, reason] : r->refused)
			text += "R " + p + "\t" + reason + "\n";
		return text;
	});
	ChildApply result;
	std::istringstream lines(out);
	for (std::string line; std::getline(lines, line);) {
		if (line.rfind("A ", 0) == 0) {
			result.applied.push_back(line.substr(2));
		} else if (line.rfind("R ", 0) == 0) {
			size_t tab = line.find('\t');
			result.refused[line.substr(2, tab - 2)] = line.substr(tab + 1);
		} else {
			result.error += line;
		}
	}
	return result;
}

// Applies a unified diff (as unifiedDiff writes it) to text: the test's own
// reading of the format, so the diff is checked by what it does.
std::string applyPatch(const std::string &text, const std::string &patch)
{
	std::vector<std::string> lines;
	for (size_t start = 0; start < text.size();) {
		size_t nl = text.find('\n', start);
		size_t end = nl == std::string::npos ? text.size() : nl + 1;
		lines.push_back(text.substr(start, end - start));
		start = end;
	}
	std::vector<std::string> out;
	size_t next = 0; // next line of `lines` to copy
	std::istringstream in(patch);
	std::string line;
	std::getline(in, line); // ---
	std::getline(in, line); // +++
	char lastMark = 0; // of the line an end-of-file marker refers to
	while (std::getline(in, line)) {
		if (line.rfind("@@ -", 0) == 0) {
			size_t start = std::stoul(line.substr(4));
			size_t count = 1;
			size_t comma = line.find(',');
			if (comma != std::string::npos && comma < line.find(' ', 4))
				count = std::stoul(line.substr(comma + 1));
			// An empty range names the line before it.
			size_t first = count == 0 ? start : start - 1;
			REQUIRE(first >= next);
			while (next < first)
				out.push_back(lines[next++]);
			lastMark = 0;
			continue;
		}
		if (line == "\\ No newline at end of file") {
			REQUIRE(lastMark != 0);
			// The line before ends the file without '\n': drop the one
			// added below, unless that line only left the old text.
			if (lastMark != '-')
				out.back().pop_back();
			lastMark = 0;
			continue;
		}
		REQUIRE(!line.empty());
		std::string body = line.substr(1) + "\n";
		if (line[0] == ' ' || line[0] == '-') {
			REQUIRE(next < lines.size());
			std::string expected = lines[next];
			if (expected.back() != '\n')
				expected += '\n'; // its marker line follows
			REQUIRE(expected == body);
			next++;
		}
		if (line[0] == ' ' || line[0] == '+')
			out.push_back(body);
		lastMark = line[0];
	}
	while (next < lines.size())
		out.push_back(lines[next++]);
	std::string result;
	for (const std::string &l : out)
		result += l;
	return result;
}

} // namespace

TEST_CASE("unifiedDiff writes diff -u hunks", "[workspace]")
{
	CHECK(unifiedDiff("same\n", "same\n", "a/x", "b/x").empty());
	CHECK(unifiedDiff("", "hello\n", "/dev/null", "b/x") == "--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+hello\n");
	CHECK(unifiedDiff("a\nb\n", "", "a/x", "/dev/null") == "--- a/x\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n");
	// A missing final newline is a difference of its own.
	CHECK(unifiedDiff("a\nb\n", "a\nb", "a/x", "b/x") ==
	      "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+b\n\\ No newline at end of file\n");
	// Two changes 7 lines apart make two hunks; 6 apart, one.
	std::string base;
	for (int i = 1; i <= 20; i++)
		base += std::to_string(i) + "\n";
	std::string two = base;
	two.replace(two.find("2\n"), 2, "X\n");
	two.replace(two.find("\n10\n") + 1, 3, "Y\n");
	CHECK(unifiedDiff(base, two, "a", "b") ==
	      "--- a\n+++ b\n@@ -1,5 +1,5 @@\n 1\n-2\n+X\n 3\n 4\n 5\n@@ -7,7 +7,7 @@\n 7\n 8\n 9\n-10\n+Y\n 11\n 12\n 13\n");
	std::string one = base;
	one.replace(one.find("2\n"), 2, "X\n");
	one.replace(one.find("\n9\n") + 1, 2, "Y\n");
	CHECK(unifiedDiff(base, one, "a", "b") ==
	      "--- a\n+++ b\n@@ -1,12 +1,12 @@\n 1\n-2\n+X\n 3\n 4\n 5\n 6\n 7\n 8\n-9\n+Y\n 10\n 11\n 12\n");
}

TEST_CASE("unifiedDiff patches turn the old text into the new one", "[workspace]")
{
	std::mt19937 rng(1234);
	auto randomText = [&](size_t maxLines) {
		std::uniform_int_distribution<size_t> count(0, maxLines);
		std::uniform_int_distribution<int> word(0, 6);
		std::string text;
		size_t n = count(rng);
		for (size_t i = 0; i < n; i++)
			text += "w" + std::to_string(word(rng)) + "\n";
		if (!text.empty() && word(rng) == 0)
			text.pop_back();
		return text;
	};
	for (int round = 0; round < 300; round++) {
		std::string a = randomText(40), b = randomText(40);
		std::string patch = unifiedDiff(a, b, "a", "b");
		INFO("old:\n" << a << "\nnew:\n" << b << "\npatch:\n" << patch);
		if (a == b) {
			CHECK(patch.empty());
			continue;
		}
		CHECK(applyPatch(a, patch) == b);
	}
	// Past kMaxDiffEdits the diff stops searching and replaces the rest:
	// still a correct patch, and quick.
	std::string a, b;
	for (size_t i = 0; i < 3 * kMaxDiffEdits; i++) {
		a += "a" + std::to_string(i) + "\n";
		b += (i % 2 ? "a" : "b") + std::to_string(i) + "\n";
	}
	CHECK(applyPatch(a, unifiedDiff(a, b, "a", "b")) == b);
}

TEST_CASE("quotePath keeps file names from forging diff lines", "[workspace]")
{
	CHECK(quotePath("a/dir/file.txt") == "a/dir/file.txt");
	CHECK(quotePath("a/x\n+++ b/y") == "\"a/x\\n+++ b/y\"");
	CHECK(quotePath("a/tab\there") == "\"a/tab\\there\"");
	CHECK(quotePath("a/\"q\"\\") == "\"a/\\\"q\\\"\\\\\"");
	CHECK(quotePath("a/caf\xc3\xa9") == "\"a/caf\\303\\251\"");
}

TEST_CASE("listChanges reports exactly what the agent changed", "[workspace]")
{
	Scratch s;
	prepare(s);
	std::vector<Change> changes = listAsRoot(s);
	CHECK(rows(changes) == kExpected);

	const Change *dir2 = find(changes, "dir2");
	REQUIRE(dir2);
	CHECK(dir2->previousType == EntryType::Directory);
	const Change *run = find(changes, "run.sh");
	REQUIRE(run);
	CHECK(run->mode == 0755);
	CHECK(run->previousMode == 0644);
	const Change *opq = find(changes, "opq");
	REQUIRE(opq);
	CHECK(opq->opaqueDirectory);
	const Change *inside = find(changes, "inside");
	REQUIRE(inside);
	CHECK(inside->linkTarget == "a.txt");
	const Change *escape = find(changes, "escape");
	REQUIRE(escape);
	CHECK(escape->linkTarget == "/etc/passwd");
	const Change *gone = find(changes, "gonedir");
	REQUIRE(gone);
	CHECK(gone->previousType == EntryType::Directory);
	// Copied up without a change (touched.txt, keep/, dir/), or marked by
	// an xattr of the namespace the mount does not use: not changes.
	CHECK_FALSE(find(changes, "touched.txt"));
	CHECK_FALSE(find(changes, "keep"));
	CHECK_FALSE(find(changes, "keep/k.txt"));
	CHECK_FALSE(find(changes, "dir"));
	CHECK(exists(s.upper("touched.txt")));
	CHECK(exists(s.upper("keep/k.txt")));
	// The whiteouts are really there: the listing read them.
	CHECK(typeAt(s.upper("gone.txt")) == S_IFCHR);

	SECTION("without CAP_SYS_ADMIN it refuses rather than miss opaque directories")
	{
		UniqueFd upper = openDir(s.upper());
		std::string lowerPath = s.lower();
		std::string out = runAsNobody([&]() -> std::string {
			UniqueFd lower(::open(lowerPath.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
			auto r = listChanges(upper.get(), lower.get());
			return r ? "listed" : std::to_string(r.error().code());
		});
		CHECK(out == std::to_string(EPERM));
	}
}

TEST_CASE("patchFor shows one change as a unified diff", "[workspace]")
{
	Scratch s;
	prepare(s);
	std::vector<Change> changes = listAsRoot(s);
	UniqueFd upper = openDir(s.upper());
	UniqueFd lower = openDir(s.lower());
	auto patch = [&](const std::string &path) {
		const Change *c = find(changes, path);
		REQUIRE(c);
		auto p = patchFor(upper.get(), lower.get(), *c);
		INFO((p ? "" : p.error().message()));
		REQUIRE(p);
		return *p;
	};

	CHECK(patch("a.txt") == "--- a/a.txt\n+++ b/a.txt\n@@ -1,5 +1,5 @@\n one\n two\n-three\n+THREE\n four\n five\n");
	CHECK(patch("new.txt") == "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+hello\n");
	CHECK(patch("dir/c.txt") == "--- /dev/null\n+++ b/dir/c.txt\n@@ -0,0 +1 @@\n+c\n");
	CHECK(patch("gone.txt") == "--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone\n");
	CHECK(patch("bin.dat") == "Binary files a/bin.dat and b/bin.dat differ\n");
	CHECK(patch("inside") == "--- /dev/null\n+++ b/inside\n@@ -0,0 +1 @@\n+a.txt\n\\ No newline at end of file\n");
	// A file where a directory was: against /dev/null.
	CHECK(patch("dir2") == "--- /dev/null\n+++ b/dir2\n@@ -0,0 +1 @@\n+now a file\n");
	// Permission bits only, and directories: no content to show.
	CHECK(patch("run.sh").empty());
	CHECK(patch("opq").empty());
	CHECK(patch("gonedir").empty());

	// A path that would climb out of the trees is refused.
	Change evil;
	evil.path = "../lower/a.txt";
	evil.kind = ChangeKind::Modified;
	CHECK_FALSE(patchFor(upper.get(), lower.get(), evil));
	// So is a symlink in the way (a file "inside" a symlinked directory).
	REQUIRE(::symlink("dir", s.upper("linkdir").c_str()) == 0);
	Change through;
	through.path = "linkdir/c.txt";
	through.kind = ChangeKind::Created;
	auto r = patchFor(upper.get(), lower.get(), through);
	REQUIRE_FALSE(r);
	CHECK(r.error().code() == ELOOP);
}

TEST_CASE("applyChanges as the caller applies what stays inside the workspace", "[workspace]")
{
	Scratch s;
	prepare(s);
	// A hard link from the workspace to a file outside it: the apply must
	// replace the workspace's entry, not write through the link.
	writeFile(s.path("outside-link.txt"), "one\ntwo\nthree\nfour\nfive\n");
	REQUIRE(::unlink(s.lower("a.txt").c_str()) == 0);
	REQUIRE(::link(s.path("outside-link.txt").c_str(), s.lower("a.txt").c_str()) == 0);
	REQUIRE(::lchown(s.lower("a.txt").c_str(), kNobody, kNobody) == 0);

	std::vector<Change> changes = listAsRoot(s);
	REQUIRE(rows(changes) == kExpected);
	ChildApply result = applyAsNobody(s, changes, {});
	INFO(describe(result));
	REQUIRE(result.error.empty());

	CHECK(result.applied == std::vector<std::string>{"a.txt", "bin.dat", "dir/c.txt", "dir/s", "dir/up", "dir2",
							 "gone.txt", "gonedir", "inside", "new.txt", "newdir",
							 "newdir/n.txt", "opq", "opq/new.txt", "run.sh"});
	CHECK(result.refused ==
	      std::map<std::string, std::string>{
		      {"dir/sneaky", "symlink target has \"..\" after a name, which a symlink could redirect"},
		      {"escape", "symlink points outside the workspace"},
		      {"escape2", "symlink points outside the workspace"}});

	// The workspace has the changes...
	CHECK(readFile(s.lower("a.txt")) == "one\ntwo\nTHREE\nfour\nfive\n");
	CHECK(readFile(s.path("outside-link.txt")) == "one\ntwo\nthree\nfour\nfive\n");
	CHECK(readFile(s.lower("new.txt")) == "hello\n");
	CHECK(readFile(s.lower("dir/c.txt")) == "c\n");
	CHECK(readFile(s.lower("dir/b.txt")) == "b\n");
	CHECK(readFile(s.lower("bin.dat")) == kBinaryNew);
	CHECK(readFile(s.lower("newdir/n.txt")) == "n\n");
	CHECK(readFile(s.lower("dir2")) == "now a file\n");
	CHECK(typeAt(s.lower("dir2")) == S_IFREG);
	CHECK_FALSE(exists(s.lower("gone.txt")));
	CHECK_FALSE(exists(s.lower("gonedir")));
	CHECK(namesIn(s.lower("opq")) == std::set<std::string>{"new.txt"});
	CHECK(fs::read_symlink(s.lower("inside")) == "a.txt");
	CHECK(fs::read_symlink(s.lower("dir/up")) == "../a.txt");
	CHECK(fs::read_symlink(s.lower("dir/s")) == "..");
	CHECK_FALSE(exists(s.lower("escape")));
	CHECK_FALSE(exists(s.lower("escape2")));
	CHECK_FALSE(exists(s.lower("dir/sneaky")));
	struct stat st{};
	REQUIRE(::lstat(s.lower("run.sh").c_str(), &st) == 0);
	CHECK((st.st_mode & 07777) == 0755);
	// ...made by the caller: owned by nobody, no temporary left behind.
	REQUIRE(::lstat(s.lower("new.txt").c_str(), &st) == 0);
	CHECK(st.st_uid == kNobody);
	CHECK(st.st_gid == kNobody);
	CHECK((st.st_mode & 07777) == 0644);
	for (const auto &entry : fs::recursive_directory_iterator(s.lower()))
		CHECK(entry.path().filename().string().rfind(".gvm-", 0) == std::string::npos);

	// Upper keeps only what was refused, and what was copied up unchanged.
	CHECK(namesIn(s.upper()) == std::set<std::string>{"dir", "escape", "escape2", "keep", "touched.txt"});
	CHECK(namesIn(s.upper("dir")) == std::set<std::string>{"sneaky"});
	std::vector<Change> left = listAsRoot(s);
	CHECK(rows(left) == std::vector<Row>{{"dir/sneaky", "created", "symlink"},
					     {"escape", "created", "symlink"},
					     {"escape2", "created", "symlink"}});
}

TEST_CASE("applyChanges applies only the selected paths", "[workspace]")
{
	Scratch s;
	prepare(s);
	std::vector<Change> changes = listAsRoot(s);

	ChildApply one = applyAsNobody(s, changes, {"new.txt"});
	INFO(describe(one));
	CHECK(one.applied == std::vector<std::string>{"new.txt"});
	CHECK(one.refused.empty());
	CHECK(readFile(s.lower("new.txt")) == "hello\n");
	CHECK(readFile(s.lower("a.txt")) == "one\ntwo\nthree\nfour\nfive\n");
	CHECK(exists(s.lower("gone.txt")));
	CHECK_FALSE(exists(s.upper("new.txt")));
	CHECK(exists(s.upper("a.txt")));

	// A directory selects what is below it (and "./x/" is "x"); a path
	// that matches nothing is reported.
	changes = listAsRoot(s);
	CHECK_FALSE(find(changes, "new.txt"));
	ChildApply dir = applyAsNobody(s, changes, {"./newdir/", "nothing-here"});
	CHECK(dir.applied == std::vector<std::string>{"newdir", "newdir/n.txt"});
	CHECK(dir.refused == std::map<std::string, std::string>{{"nothing-here", "no change at this path"}});
	CHECK(readFile(s.lower("newdir/n.txt")) == "n\n");
	CHECK_FALSE(exists(s.upper("newdir")));

	// The rest is still listed.
	std::vector<Row> rest;
	for (const Row &row : kExpected)
		if (std::get<0>(row) != "new.txt" && std::get<0>(row).rfind("newdir", 0) != 0)
			rest.push_back(row);
	CHECK(rows(listAsRoot(s)) == rest);
}

TEST_CASE("a symlink planted in the workspace cannot redirect an apply", "[workspace]")
{
	Scratch s;
	prepare(s);
	std::vector<Change> changes = listAsRoot(s);

	// After the review, lower/dir becomes a symlink to a directory outside
	// the workspace that nobody may write to: if the apply followed it,
	// c.txt would land there.
	REQUIRE(::mkdir(s.path("elsewhere").c_str(), 0755) == 0);
	REQUIRE(::lchown(s.path("elsewhere").c_str(), kNobody, kNobody) == 0);
	fs::remove_all(s.lower("dir"));
	REQUIRE(::symlink(s.path("elsewhere").c_str(), s.lower("dir").c_str()) == 0);

	ChildApply result = applyAsNobody(s, changes, {"dir/c.txt", "dir/up"});
	INFO(describe(result));
	CHECK(result.applied.empty());
	CHECK(result.refused == std::map<std::string, std::string>{
					{"dir/c.txt", "a symlink in the workspace is in the way"},
					{"dir/up", "a symlink in the workspace is in the way"}});
	CHECK(namesIn(s.path("elsewhere")).empty());
	CHECK(exists(s.upper("dir/c.txt")));
	CHECK(typeAt(s.lower("dir")) == S_IFLNK);

	// A relative symlink climbing out of the workspace is no way out either.
	REQUIRE(::unlink(s.lower("dir").c_str()) == 0);
	REQUIRE(::symlink("../elsewhere", s.lower("dir").c_str()) == 0);
	result = applyAsNobody(s, changes, {"dir"});
	CHECK(result.applied.empty());
	CHECK(result.refused.size() == 4); // dir/c.txt, dir/s, dir/sneaky, dir/up
	CHECK(namesIn(s.path("elsewhere")).empty());
}

TEST_CASE("listChanges refuses a redirected directory", "[workspace]")
{
	// With redirect_dir=on a directory renamed in the overlay keeps its
	// contents in the workspace under the old name: a file-by-file apply
	// would lose them, so the listing fails instead.
	Scratch s("redirect_dir=on,metacopy=off");
	populateLower(s);
	s.mount();
	REQUIRE(::rename(s.merged("dir").c_str(), s.merged("moved").c_str()) == 0);
	s.unmount();
	UniqueFd upper = openDir(s.upper());
	UniqueFd lower = openDir(s.lower());
	auto r = listChanges(upper.get(), lower.get());
	REQUIRE_FALSE(r);
	CHECK(r.error().code() == EOPNOTSUPP);
}

TEST_CASE("listChanges bounds how deep it walks", "[workspace]")
{
	// An upper tree made directly (no overlay needed): paths of kMaxDepth
	// components are listed, one more is an error.
	Scratch s;
	UniqueFd level = openDir(s.upper());
	auto nest = [&] {
		REQUIRE(::mkdirat(level.get(), "d", 0755) == 0);
		level = UniqueFd(::openat(level.get(), "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
		REQUIRE(level);
	};
	for (size_t depth = 0; depth < kMaxDepth; depth++)
		nest();
	UniqueFd upper = openDir(s.upper());
	UniqueFd lower = openDir(s.lower());
	auto listed = listChanges(upper.get(), lower.get());
	INFO((listed ? "" : listed.error().message()));
	REQUIRE(listed);
	CHECK(listed->size() == kMaxDepth);
	CHECK(listed->back().kind == ChangeKind::Created);
	nest();
	auto tooDeep = listChanges(upper.get(), lower.get());
	REQUIRE_FALSE(tooDeep);
	CHECK(tooDeep.error().code() == ELOOP);
}

TEST_CASE("removeTree removes deep trees without following symlinks", "[workspace]")
{
	Scratch s;
	// Something outside the tree that a followed symlink would destroy.
	REQUIRE(::mkdir(s.path("outside").c_str(), 0755) == 0);
	writeFile(s.path("outside/precious"), "keep me\n");

	// A chain twice as deep as kMaxDepth (so parts of it get moved up),
	// each level with a file and a symlink to the outside directory.
	REQUIRE(::mkdir(s.path("deep").c_str(), 0755) == 0);
	UniqueFd level = openDir(s.path("deep"));
	for (size_t depth = 0; depth < 2 * kMaxDepth + 10; depth++) {
		UniqueFd file(::openat(level.get(), "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
		REQUIRE(file);
		REQUIRE(::symlinkat(s.path("outside").c_str(), level.get(), "link") == 0);
		REQUIRE(::mkdirat(level.get(), "d", 0755) == 0);
		level = UniqueFd(::openat(level.get(), "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
		REQUIRE(level);
	}
	level.reset();
	REQUIRE(::symlink(s.path("outside").c_str(), s.path("toplink").c_str()) == 0);

	UniqueFd root = openDir(s.path());
	std::string out = runChild(
		[&]() -> std::string {
			// Fewer fds than the tree has levels: only moving deep
			// subtrees up keeps the walk within them.
			rlimit limit{kMaxDepth + 32, kMaxDepth + 32};
			if (::setrlimit(RLIMIT_NOFILE, &limit) != 0)
				return "setrlimit failed";
			auto r = removeTree(root.get(), "deep");
			return r ? "removed" : r.error().message();
		},
		false);
	CHECK(out == "removed");
	CHECK_FALSE(exists(s.path("deep")));
	CHECK(readFile(s.path("outside/precious")) == "keep me\n");
	// A symlink named directly is removed itself, not its target.
	REQUIRE(removeTree(root.get(), "toplink"));
	CHECK_FALSE(exists(s.path("toplink")));
	CHECK(readFile(s.path("outside/precious")) == "keep me\n");
	// Nothing moved up is left behind.
	CHECK(namesIn(s.path()) == std::set<std::string>{"lower", "merged", "outside", "upper", "work"});

	auto missing = removeTree(root.get(), "deep");
	REQUIRE_FALSE(missing);
	CHECK(missing.error().code() == ENOENT);
	auto nested = removeTree(root.get(), "outside/precious");
	REQUIRE_FALSE(nested);
	CHECK(nested.error().code() == EINVAL);
	CHECK(exists(s.path("outside/precious")));
}
