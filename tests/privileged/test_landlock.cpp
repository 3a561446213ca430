// SPDX-License-Identifier: Apache-2.0
//
// As root, with the real kernel: a process confined by a LandlockPlan (and
// nothing else: no mount namespace, no masking mount) reads and executes the
// host, writes only its workspace and the files listed as writable, and can
// open nothing under a hidden path, whether it sits in the read-only root or
// in the workspace.
//
// Every case builds its plan in the parent, then forks a child that sets
// no_new_privs, applies the plan and tries one operation, reporting the
// result through a pipe, as gvmd's agent launcher will. The scratch tree
// lives in a fresh mkdtemp() directory, removed at the end.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <functional>
#include <linux/landlock.h>
#include <string>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/unique_fd.h"
#include "daemon/isolation/landlock.h"
#include "tests/support/process.h"

using namespace gvm;
using namespace gvm::isolation;

namespace {

// A confined child that has not reported after this long is killed (SIGALRM).
constexpr unsigned kChildTimeoutSeconds = 10;

constexpr uint64_t kFileRights = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
				 LANDLOCK_ACCESS_FS_READ_FILE | (1ULL << 14) /* TRUNCATE */;

template<typename T>
T take(Result<T> r)
{
	if (!r)
		FAIL(r.error().message());
	return std::move(r).value();
}

void require(Result<void> r)
{
	if (!r)
		FAIL(r.error().message());
}

bool isAtOrBelow(const std::string &path, const std::string &dir)
{
	return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
			       (dir == "/" || path[dir.size()] == '/'));
}

// The scratch tree, in a fresh directory under /tmp:
//   home/.ssh/id_ed25519  home/notes.txt  home/link-to-ssh -> .ssh
//   home/.config/gcloud/creds  home/.config/other/ok
//   work/.env  work/.secrets/key  work/src/main.c
//   outside/secret
class ScratchTree
{
public:
	ScratchTree()
	{
		std::string tmpl = "/tmp/gvm-landlock-XXXXXX";
		if (!::mkdtemp(tmpl.data()))
			FAIL("mkdtemp: " << std::strerror(errno));
		root_ = tmpl;
		for (const char *dir : {"home", "home/.ssh", "home/.config", "home/.config/gcloud", "home/.config/other",
					"work", "work/.secrets", "work/src", "outside"})
			require(test::makeDir(path(dir)));
		require(test::writeFile(path("home/.ssh/id_ed25519"), "PRIVATE KEY\n", 0600));
		require(test::writeFile(path("home/notes.txt"), "notes\n"));
		require(test::writeFile(path("home/.config/gcloud/creds"), "token\n", 0600));
		require(test::writeFile(path("home/.config/other/ok"), "ok\n"));
		require(test::writeFile(path("work/.env"), "API_KEY=secret\n", 0600));
		require(test::writeFile(path("work/.secrets/key"), "key\n", 0600));
		require(test::writeFile(path("work/src/main.c"), "int main(void) { return 0; }\n"));
		require(test::writeFile(path("outside/secret"), "outside\n"));
		REQUIRE(::symlink(".ssh", path("home/link-to-ssh").c_str()) == 0);
	}
	~ScratchTree()
	{
		std::error_code ec;
		std::filesystem::remove_all(root_, ec);
	}
	ScratchTree(const ScratchTree &) = delete;
	ScratchTree &operator=(const ScratchTree &) = delete;

	std::string path(const std::string &relative) const { return root_ + "/" + relative; }

private:
	std::string root_;
};

// What the confined child reports: whether applying worked, then what the
// operation returned (0 or an errno value).
struct Outcome {
	int apply = -1;
	int op = -1;
};

// Forks a child that sets no_new_privs (Landlock requires it of a process
// without CAP_SYS_ADMIN; the agent launcher sets it too), applies the plan
// and runs op; returns op's result. The test process is single-threaded,
// so the child may allocate.
int confined(const LandlockPlan &plan, const std::function<int()> &op)
{
	int fds[2];
	REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
	UniqueFd readEnd(fds[0]), writeEnd(fds[1]);
	pid_t pid = ::fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		::alarm(kChildTimeoutSeconds);
		Outcome outcome;
		outcome.apply = ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ? errno : plan.applyInChild();
		if (outcome.apply == 0)
			outcome.op = op();
		ssize_t n = ::write(writeEnd.get(), &outcome, sizeof(outcome));
		::_exit(n == sizeof(outcome) ? 0 : 1);
	}
	writeEnd.reset();
	Outcome outcome;
	ssize_t n;
	do
		n = ::read(readEnd.get(), &outcome, sizeof(outcome));
	while (n < 0 && errno == EINTR);
	int status = 0;
	REQUIRE(::waitpid(pid, &status, 0) == pid);
	INFO("child wait status " << status);
	REQUIRE(n == static_cast<ssize_t>(sizeof(outcome)));
	INFO("applyInChild: " << std::strerror(outcome.apply));
	REQUIRE(outcome.apply == 0);
	return outcome.op;
}

// The operations a confined child tries: 0 on success, else the errno.
int readAll(const std::string &path)
{
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd)
		return errno;
	char buf[512];
	ssize_t n;
	while ((n = ::read(fd.get(), buf, sizeof(buf))) > 0) {
	}
	return n < 0 ? errno : 0;
}

int appendTo(const std::string &path)
{
	UniqueFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
	if (!fd)
		return errno;
	return ::write(fd.get(), "x", 1) == 1 ? 0 : errno;
}

int createNew(const std::string &path)
{
	UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
	return fd ? 0 : errno;
}

// Creates path with text, then reads it back: 0 only if both worked and the
// text came back (EBADMSG if it differs).
int createAndReadBack(const std::string &path, const std::string &text)
{
	{
		UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
		if (!fd)
			return errno;
		if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
			return errno;
	}
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd)
		return errno;
	std::string back(text.size() + 1, '\0');
	ssize_t n = ::read(fd.get(), back.data(), back.size());
	if (n < 0)
		return errno;
	back.resize(static_cast<size_t>(n));
	return back == text ? 0 : EBADMSG;
}

// Lists dir: 0 if it could be listed and holds `name` (ENOENT if not).
int listHas(const std::string &dir, const std::string &name)
{
	DIR *d = ::opendir(dir.c_str());
	if (!d)
		return errno;
	bool found = false;
	while (struct dirent *entry = ::readdir(d))
		found = found || name == entry->d_name;
	::closedir(d);
	return found ? 0 : ENOENT;
}

int removeFile(const std::string &path) { return ::unlink(path.c_str()) == 0 ? 0 : errno; }

// Runs `/bin/sh -c command` (exec of a shell, then of cat, inside the
// confined child: the domain crosses execve) and returns its exit code.
int shell(const std::string &command)
{
	pid_t pid = ::fork();
	if (pid < 0)
		return errno;
	if (pid == 0) {
		::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char *>(nullptr));
		::_exit(127);
	}
	int status = 0;
	if (::waitpid(pid, &status, 0) != pid)
		return errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

const LandlockPlan::Rule *findRule(const LandlockPlan &plan, const std::string &path)
{
	auto it = std::find_if(plan.rules().begin(), plan.rules().end(),
			       [&](const LandlockPlan::Rule &rule) { return rule.path == path; });
	return it == plan.rules().end() ? nullptr : &*it;
}

} // namespace

TEST_CASE("the kernel supports Landlock", "[landlock]")
{
	CHECK(landlockAbi() >= 1);
}

TEST_CASE("a confined process reads the host, writes its workspace, and opens nothing hidden", "[landlock]")
{
	ScratchTree tree;
	LandlockView view;
	view.readOnly = {"/"};
	view.readWrite = {tree.path("work")};
	view.writableFiles = {"/dev/null"};
	view.hidden = {tree.path("home/.ssh"), tree.path("home/.config/gcloud")};
	LandlockPlan plan = take(LandlockPlan::build(view, landlockAbi()));
	CHECK(plan.abi() == std::min(landlockAbi(), kLandlockMaxAbi));

	// The plan: nothing at or under a hidden path, only READ_DIR on the
	// directories leading to one, file rights only on files, no rule on
	// the symlink.
	REQUIRE(plan.ruleCount() > 0);
	for (const LandlockPlan::Rule &rule : plan.rules()) {
		INFO(rule.path << " " << rule.access);
		CHECK((rule.access & ~plan.handledAccess()) == 0);
		for (const std::string &hidden : view.hidden) {
			CHECK_FALSE(isAtOrBelow(rule.path, hidden));
			if (isAtOrBelow(hidden, rule.path))
				CHECK(rule.access == LANDLOCK_ACCESS_FS_READ_DIR);
		}
	}
	const LandlockPlan::Rule *notes = findRule(plan, tree.path("home/notes.txt"));
	REQUIRE(notes);
	CHECK((notes->access & ~kFileRights) == 0);
	CHECK((notes->access & LANDLOCK_ACCESS_FS_READ_FILE) != 0);
	CHECK(findRule(plan, tree.path("home/.config/other")));
	CHECK_FALSE(findRule(plan, tree.path("home/link-to-ssh")));

	// Control: unconfined, root reads the secrets, so the denials below
	// are Landlock's.
	REQUIRE(readAll(tree.path("home/.ssh/id_ed25519")) == 0);
	REQUIRE(readAll(tree.path("home/.config/gcloud/creds")) == 0);

	// Hidden paths: no file can be opened, not even through a symlink,
	// nothing created or removed; their names stay listable.
	CHECK(confined(plan, [&] { return readAll(tree.path("home/.ssh/id_ed25519")); }) == EACCES);
	CHECK(confined(plan, [&] { return readAll(tree.path("home/link-to-ssh/id_ed25519")); }) == EACCES);
	CHECK(confined(plan, [&] { return readAll(tree.path("home/.config/gcloud/creds")); }) == EACCES);
	CHECK(confined(plan, [&] { return appendTo(tree.path("home/.ssh/id_ed25519")); }) == EACCES);
	CHECK(confined(plan, [&] { return createNew(tree.path("home/.ssh/authorized_keys")); }) == EACCES);
	CHECK(confined(plan, [&] { return removeFile(tree.path("home/.ssh/id_ed25519")); }) == EACCES);
	CHECK(confined(plan, [&] { return listHas(tree.path("home/.ssh"), "id_ed25519"); }) == 0);
	CHECK(::access(tree.path("home/.ssh/id_ed25519").c_str(), F_OK) == 0);
	CHECK(::access(tree.path("home/.ssh/authorized_keys").c_str(), F_OK) != 0);

	// Their siblings and the rest of the host: readable, not writable.
	CHECK(confined(plan, [&] { return readAll(tree.path("home/notes.txt")); }) == 0);
	CHECK(confined(plan, [&] { return readAll(tree.path("home/.config/other/ok")); }) == 0);
	CHECK(confined(plan, [&] { return listHas(tree.path("home"), "notes.txt"); }) == 0);
	CHECK(confined(plan, [&] { return listHas(tree.path("home/.config"), "gcloud"); }) == 0);
	CHECK(confined(plan, [] { return readAll("/etc/passwd"); }) == 0);
	CHECK(confined(plan, [&] { return appendTo(tree.path("home/notes.txt")); }) == EACCES);
	CHECK(confined(plan, [&] { return createNew(tree.path("outside/new")); }) == EACCES);
	CHECK(confined(plan, [&] { return createNew(tree.path("home/new")); }) == EACCES);
	CHECK(confined(plan, [&] { return removeFile(tree.path("outside/secret")); }) == EACCES);
	CHECK(test::readFile(tree.path("home/notes.txt")) == "notes\n");

	// The workspace: new files are written and read back, for real.
	CHECK(confined(plan, [&] { return createAndReadBack(tree.path("work/new.txt"), "hello\n"); }) == 0);
	CHECK(test::readFile(tree.path("work/new.txt")) == "hello\n");

	// Exec: a shell runs cat on a readable file and writes /dev/null (a
	// writable file); the domain follows execve, so cat of a hidden file
	// fails.
	CHECK(confined(plan, [&] { return shell("cat " + tree.path("home/notes.txt") + " >/dev/null"); }) == 0);
	CHECK(confined(plan, [&] { return shell("cat " + tree.path("home/.ssh/id_ed25519") + " >/dev/null 2>&1"); }) != 0);
	CHECK(confined(plan, [] { return appendTo("/dev/null"); }) == 0);
}

TEST_CASE("a device is writable only when listed in writableFiles", "[landlock]")
{
	LandlockView view;
	view.readOnly = {"/"};
	LandlockPlan plan = take(LandlockPlan::build(view, landlockAbi()));
	CHECK(confined(plan, [] { return readAll("/dev/null"); }) == 0);
	CHECK(confined(plan, [] { return appendTo("/dev/null"); }) == EACCES);

	view.writableFiles = {"/dev/null"};
	plan = take(LandlockPlan::build(view, landlockAbi()));
	CHECK(confined(plan, [] { return appendTo("/dev/null"); }) == 0);
}

TEST_CASE("an overlay-only rule holds only while its path is an overlay mount", "[landlock]")
{
	ScratchTree tree;
	for (const char *dir : {"layer", "layer/upper", "layer/work"})
		require(test::makeDir(tree.path(dir)));
	const std::string home = tree.path("home");
	LandlockView view;
	view.readOnly = {"/"};
	view.hidden = {tree.path("home/.ssh")};
	view.overlayReadWrite = {home};
	LandlockPlan plan = take(LandlockPlan::build(view, landlockAbi()));
	const LandlockPlan::Rule *rule = findRule(plan, home);
	REQUIRE(rule != nullptr);

	// No overlay there: the rule is skipped, the home stays read-only
	// and its hidden path closed.
	CHECK(confined(plan, [&] { return createNew(home + "/new-plain"); }) == EACCES);
	CHECK(confined(plan, [&] { return readAll(home + "/notes.txt"); }) == 0);
	CHECK(confined(plan, [&] { return readAll(home + "/.ssh/id_ed25519"); }) == EACCES);

	// A private layer over it (as the sandbox's home gets): writable as
	// a whole, new entries at its top included.
	const std::string options = "lowerdir=" + home + ",upperdir=" + tree.path("layer/upper") +
				    ",workdir=" + tree.path("layer/work");
	REQUIRE(::mount("overlay", home.c_str(), "overlay", 0, options.c_str()) == 0);
	struct Unmount {
		std::string path;
		~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
	} unmount{home};
	CHECK(confined(plan, [&] { return createAndReadBack(home + "/new-top", "top\n"); }) == 0);
	CHECK(confined(plan, [&] { return appendTo(home + "/notes.txt"); }) == 0);
}

TEST_CASE("a hidden path inside the workspace stays closed while the rest of it is writable", "[landlock]")
{
	ScratchTree tree;
	LandlockView view;
	view.readOnly = {"/"};
	view.readWrite = {tree.path("work")};
	view.hidden = {tree.path("work/.env"), tree.path("work/.secrets")};
	LandlockPlan plan = take(LandlockPlan::build(view, landlockAbi()));
	const LandlockPlan::Rule *src = findRule(plan, tree.path("work/src"));
	REQUIRE(src);
	CHECK((src->access & LANDLOCK_ACCESS_FS_MAKE_REG) != 0);

	CHECK(confined(plan, [&] { return readAll(tree.path("work/.env")); }) == EACCES);
	CHECK(confined(plan, [&] { return appendTo(tree.path("work/.env")); }) == EACCES);
	CHECK(confined(plan, [&] { return removeFile(tree.path("work/.env")); }) == EACCES);
	CHECK(confined(plan, [&] { return readAll(tree.path("work/.secrets/key")); }) == EACCES);
	CHECK(confined(plan, [&] { return createNew(tree.path("work/.secrets/new")); }) == EACCES);
	CHECK(test::readFile(tree.path("work/.env")) == "API_KEY=secret\n");

	// The workspace's other entries keep every right.
	CHECK(confined(plan, [&] { return readAll(tree.path("work/src/main.c")); }) == 0);
	CHECK(confined(plan, [&] { return appendTo(tree.path("work/src/main.c")); }) == 0);
	CHECK(confined(plan, [&] { return createAndReadBack(tree.path("work/src/new.c"), "new\n"); }) == 0);
	CHECK(confined(plan, [&] { return ::mkdir(tree.path("work/src/sub").c_str(), 0755) == 0 ? 0 : errno; }) == 0);
	CHECK(confined(plan, [&] { return listHas(tree.path("work"), "src"); }) == 0);
	CHECK(test::readFile(tree.path("work/src/new.c")) == "new\n");

	// The documented price: the directory holding the hidden path gets
	// READ_DIR only, since any file right on it would reach .env too, so
	// nothing is created directly in it.
	CHECK(confined(plan, [&] { return createNew(tree.path("work/new.txt")); }) == EACCES);
}

TEST_CASE("older ABIs confine with their own rights, and ABI 0 does nothing", "[landlock]")
{
	ScratchTree tree;
	LandlockView view;
	view.readOnly = {"/"};
	view.readWrite = {tree.path("work")};
	view.hidden = {tree.path("home/.ssh")};

	SECTION("ABI 1: no REFER or TRUNCATE handled, hidden paths still closed")
	{
		LandlockPlan plan = take(LandlockPlan::build(view, 1));
		CHECK(plan.abi() == 1);
		CHECK((plan.handledAccess() & LANDLOCK_ACCESS_FS_REFER) == 0);
		CHECK((plan.handledAccess() & (1ULL << 14)) == 0);
		CHECK(confined(plan, [&] { return readAll(tree.path("home/.ssh/id_ed25519")); }) == EACCES);
		CHECK(confined(plan, [&] { return readAll(tree.path("home/notes.txt")); }) == 0);
		CHECK(confined(plan, [&] { return createAndReadBack(tree.path("work/abi1.txt"), "1\n"); }) == 0);
	}

	SECTION("a newer ABI than gvm knows is used as ABI 3")
	{
		LandlockPlan plan = take(LandlockPlan::build(view, 99));
		CHECK(plan.abi() == kLandlockMaxAbi);
	}

	SECTION("ABI 0: an empty plan that applies nothing")
	{
		LandlockPlan plan = take(LandlockPlan::build(view, 0));
		CHECK(plan.ruleCount() == 0);
		CHECK(confined(plan, [&] { return readAll(tree.path("home/.ssh/id_ed25519")); }) == 0);
	}
}

TEST_CASE("a plan skips missing paths and rejects relative ones", "[landlock]")
{
	LandlockView view;
	view.readWrite = {"/nonexistent-gvm-landlock-test"};
	view.hidden = {"/nonexistent-gvm-landlock-test/.ssh"};
	LandlockPlan plan = take(LandlockPlan::build(view, landlockAbi()));
	CHECK(plan.ruleCount() == 0);

	view.readWrite = {"relative/work"};
	auto bad = LandlockPlan::build(view, landlockAbi());
	REQUIRE_FALSE(bad);
	CHECK(bad.error().code() == EINVAL);
}
