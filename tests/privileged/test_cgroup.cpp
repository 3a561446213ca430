// SPDX-License-Identifier: Apache-2.0
//
// As root, against the real kernel: a SandboxCgroup writes its limits where
// the kernel enforces them; a child that joins it through procsFds() cannot
// fork past the pids limit, is OOM-killed past the memory limit and is
// throttled to its CPU quota; destroy() leaves no process and no directory;
// removeLeftovers() removes exactly what it is not told to keep; a create()
// that fails leaves nothing.
//
// Every test uses random sandbox ids, bounds every process it starts (each
// sleeps at most kSleeperLifetime and every loop is bounded), and destroys
// its cgroups and reaps its children however it ends.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <optional>
#include <poll.h>
#include <random>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/unique_fd.h"
#include "daemon/isolation/cgroup.h"
#include "tests/support/process.h"

using namespace gvm;
using namespace gvm::isolation;
using namespace std::chrono_literals;

namespace {

// A process the tests start never outlives this, even if the test that
// started it crashes before killing it.
constexpr unsigned kSleeperLifetime = 20; // seconds
constexpr int kBombAttempts = 100;
constexpr uint64_t kMiB = 1024 * 1024;

std::string randomName()
{
	static std::mt19937 rng(std::random_device{}());
	static const char digits[] = "0123456789abcdef";
	std::string name;
	for (int i = 0; i < 8; ++i)
		name += digits[rng() % 16];
	return name;
}

std::string dirname(const std::string &path)
{
	return path.substr(0, path.rfind('/'));
}

bool exists(const std::string &path)
{
	struct stat st{};
	return ::stat(path.c_str(), &st) == 0;
}

std::string trimmed(std::string text)
{
	while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
		text.pop_back();
	return text;
}

// The cgroup's directory that holds `file` (on v1, each controller has its
// own hierarchy); "" when none does.
std::string dirWith(const SandboxCgroup &cgroup, const std::string &file)
{
	for (const std::string &dir : cgroup.directories())
		if (exists(dir + "/" + file))
			return dir;
	return {};
}

std::vector<pid_t> procsOf(const std::string &dir)
{
	std::vector<pid_t> pids;
	std::string text = test::readFile(dir + "/cgroup.procs");
	size_t start = 0;
	while (start < text.size()) {
		size_t end = text.find('\n', start);
		if (end == std::string::npos)
			end = text.size();
		if (end > start)
			pids.push_back(static_cast<pid_t>(std::stol(text.substr(start, end - start))));
		start = end + 1;
	}
	return pids;
}

// Dead, or a zombie nobody has reaped yet (an orphan waits for init).
bool isGone(pid_t pid)
{
	if (::kill(pid, 0) < 0 && errno == ESRCH)
		return true;
	const std::string stat = test::readFile("/proc/" + std::to_string(pid) + "/stat");
	const size_t paren = stat.rfind(')');
	if (stat.empty() || paren == std::string::npos || paren + 2 >= stat.size())
		return true;
	return stat[paren + 2] == 'Z' || stat[paren + 2] == 'X';
}

bool hasSwap()
{
	const std::string meminfo = test::readFile("/proc/meminfo");
	const size_t at = meminfo.find("SwapTotal:");
	if (at == std::string::npos)
		return false;
	return std::stoull(meminfo.substr(at + std::strlen("SwapTotal:"))) > 0;
}

// The fds of procsFds() as the child gets them.
std::vector<int> rawFds(const SandboxCgroup &cgroup)
{
	std::vector<int> fds;
	for (const UniqueFd &fd : cgroup.procsFds())
		fds.push_back(fd.get());
	return fds;
}

// A forked child running `body` (which must end in _exit), SIGKILLed and
// reaped when the test ends.
class Forked
{
public:
	template<typename F>
	explicit Forked(F body)
	{
		pid_ = ::fork();
		if (pid_ == 0) {
			body();
			::_exit(0);
		}
	}
	Forked(const Forked &) = delete;
	Forked &operator=(const Forked &) = delete;
	~Forked()
	{
		if (pid_ > 0) {
			::kill(pid_, SIGKILL);
			::waitpid(pid_, nullptr, 0);
		}
	}

	pid_t pid() const { return pid_; }
	// The wait status, or nullopt when the child still runs after `timeout`.
	std::optional<int> wait(std::chrono::milliseconds timeout, rusage *usage = nullptr)
	{
		const auto deadline = std::chrono::steady_clock::now() + timeout;
		for (;;) {
			int status = 0;
			pid_t r = ::wait4(pid_, &status, WNOHANG, usage);
			if (r == pid_) {
				pid_ = -1;
				return status;
			}
			if (r < 0 || std::chrono::steady_clock::now() >= deadline)
				return std::nullopt;
			::usleep(5000);
		}
	}

private:
	pid_t pid_ = -1;
};

// What the fork-bomb leader reports through its pipe.
struct BombReport {
	int joinError;
	int forked;
	int eagain;
	int otherErrors;
	pid_t children[kBombAttempts];
};

// Reads exactly sizeof(T) from fd within the timeout.
template<typename T>
bool readReport(int fd, T *out, std::chrono::milliseconds timeout)
{
	pollfd p{fd, POLLIN, 0};
	if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1)
		return false;
	return ::read(fd, out, sizeof(T)) == static_cast<ssize_t>(sizeof(T));
}

std::unique_ptr<SandboxCgroup> mustCreate(const std::string &name, const policy::ResourceLimits &limits)
{
	auto cgroup = SandboxCgroup::create(name, limits);
	INFO((cgroup ? "" : cgroup.error().message()));
	REQUIRE(cgroup);
	return std::move(*cgroup);
}

} // namespace

TEST_CASE("mountinfo parsing finds v1 hierarchies and the unified mount")
{
	const std::string hybrid =
		"30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
		"31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
		"34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
		"35 30 0:35 /sub /mnt/pids\\040bind rw - cgroup cgroup rw,pids\n"
		"38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
		"39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
		"40 30 0:37 / /sys/fs/cgroup/unified rw,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate\n"
		"garbage line\n";
	CgroupMounts mounts = parseCgroupMounts(hybrid);
	REQUIRE(mounts.unified);
	CHECK(mounts.unified->mountPoint == "/sys/fs/cgroup/unified");
	CHECK(mounts.v1.size() == 3); // name=systemd has no controller
	REQUIRE(mounts.v1With("cpuacct"));
	CHECK(mounts.v1With("cpuacct")->mountPoint == "/sys/fs/cgroup/cpu,cpuacct");
	CHECK(mounts.v1With("cpu") == mounts.v1With("cpuacct"));
	REQUIRE(mounts.v1With("pids"));
	// The whole-tree mount wins over a bind mount of a subtree.
	CHECK(mounts.v1With("pids")->mountPoint == "/sys/fs/cgroup/pids");
	CHECK(mounts.v1With("freezer") == nullptr);

	const std::string escaped = "50 1 0:40 /a\\040b /mnt/my\\040cg rw - cgroup2 none rw\n";
	mounts = parseCgroupMounts(escaped);
	REQUIRE(mounts.unified);
	CHECK(mounts.unified->mountPoint == "/mnt/my cg");
	CHECK(mounts.unified->root == "/a b");
	CHECK(mounts.v1.empty());
}

TEST_CASE("describeSupport names the hierarchy in use")
{
	auto description = SandboxCgroup::describeSupport();
	INFO((description ? *description : description.error().message()));
	REQUIRE(description);
	CHECK(description->find("memory, pids, cpu") != std::string::npos);

	auto cgroup = mustCreate(randomName(), {});
	const char *version = cgroup->version() == CgroupVersion::V1 ? "cgroup v1" : "cgroup v2";
	CHECK(description->rfind(version, 0) == 0);
	REQUIRE(cgroup->destroy());
}

TEST_CASE("defaults apply where the policy sets no limit")
{
	policy::ResourceLimits effective = effectiveLimits({});
	REQUIRE(effective.pids);
	CHECK(*effective.pids == kDefaultPidsLimit);
	REQUIRE(effective.memoryBytes);
	CHECK(*effective.memoryBytes > 0);
	CHECK_FALSE(effective.cpuMillis);

	auto cgroup = mustCreate(randomName(), {});
	auto usage = cgroup->usage();
	REQUIRE(usage);
	REQUIRE(usage->pidsLimit);
	CHECK(*usage->pidsLimit == kDefaultPidsLimit);
	REQUIRE(usage->memoryLimit);
	// The kernel rounds the limit down to whole pages.
	CHECK(*usage->memoryLimit <= *effective.memoryBytes);
	CHECK(*usage->memoryLimit > *effective.memoryBytes - 65536);
	CHECK(usage->pids == 0);
	REQUIRE(cgroup->destroy());
}

TEST_CASE("a child that joins cannot fork past the pids limit, and destroy kills them all")
{
	auto cgroup = mustCreate(randomName(), {.memoryBytes = {}, .pids = 20, .cpuMillis = {}});
	const std::vector<int> fds = rawFds(*cgroup);
	REQUIRE(fds.size() == cgroup->directories().size());

	int pipeFds[2];
	REQUIRE(::pipe2(pipeFds, O_CLOEXEC) == 0);
	UniqueFd reportRead(pipeFds[0]), reportWrite(pipeFds[1]);

	// The leader joins the cgroup, then tries kBombAttempts forks of
	// children that only sleep, and reports what the kernel let it do.
	Forked leader([&] {
		BombReport report{};
		report.joinError = SandboxCgroup::joinInChild(fds.data(), fds.size());
		if (report.joinError == 0) {
			for (int i = 0; i < kBombAttempts; ++i) {
				pid_t child = ::fork();
				if (child == 0) {
					::sleep(kSleeperLifetime);
					::_exit(0);
				}
				if (child > 0)
					report.children[report.forked++] = child;
				else if (errno == EAGAIN)
					++report.eagain;
				else
					++report.otherErrors;
			}
		}
		(void)!::write(reportWrite.get(), &report, sizeof(report));
		::sleep(kSleeperLifetime);
		::_exit(0);
	});
	REQUIRE(leader.pid() > 0);
	reportWrite.reset();

	BombReport report{};
	REQUIRE(readReport(reportRead.get(), &report, 10s));
	REQUIRE(report.joinError == 0);
	INFO("forked " << report.forked << ", EAGAIN " << report.eagain << ", other errors " << report.otherErrors);
	CHECK(report.otherErrors == 0);
	CHECK(report.eagain > 0);
	CHECK(report.forked + report.eagain + report.otherErrors == kBombAttempts);
	// The leader counts too: at most 19 more.
	CHECK(report.forked <= 19);
	CHECK(report.forked > 0);

	// The leader is in the sandbox's cgroup in every hierarchy.
	for (const std::string &dir : cgroup->directories()) {
		std::vector<pid_t> procs = procsOf(dir);
		INFO(dir);
		CHECK(std::find(procs.begin(), procs.end(), leader.pid()) != procs.end());
		CHECK(procs.size() == static_cast<size_t>(report.forked) + 1);
		CHECK(procs.size() <= 20);
	}
	auto usage = cgroup->usage();
	REQUIRE(usage);
	CHECK(usage->pids == static_cast<uint32_t>(report.forked) + 1);
	REQUIRE(usage->pidsLimit);
	CHECK(*usage->pidsLimit == 20);

	const std::vector<std::string> dirs = cgroup->directories();
	auto destroyed = cgroup->destroy();
	INFO((destroyed ? "" : destroyed.error().message()));
	REQUIRE(destroyed);
	for (const std::string &dir : dirs)
		CHECK_FALSE(exists(dir));
	CHECK(cgroup->procsFds().empty());
	CHECK(cgroup->destroy()); // idempotent
	CHECK_FALSE(cgroup->usage());

	auto status = leader.wait(2s);
	REQUIRE(status);
	CHECK(WIFSIGNALED(*status));
	CHECK(WTERMSIG(*status) == SIGKILL);
	for (int i = 0; i < report.forked; ++i) {
		const pid_t child = report.children[i];
		INFO("bomb child " << child);
		CHECK(test::waitFor([&] { return isGone(child); }, 2s));
	}
}

TEST_CASE("a child that joins is OOM-killed past the memory limit")
{
	constexpr uint64_t kLimit = 64 * kMiB;
	constexpr size_t kTouch = 256;
	auto cgroup = mustCreate(randomName(), {.memoryBytes = kLimit, .pids = {}, .cpuMillis = {}});
	auto usage = cgroup->usage();
	REQUIRE(usage);
	REQUIRE(usage->memoryLimit);
	CHECK(*usage->memoryLimit == kLimit);

	// Swap could let the child run on past the limit (paged out) on v2,
	// or on v1 without swap accounting; then only the peak is checked.
	const bool swapCanHide =
		hasSwap() && (cgroup->version() == CgroupVersion::V2 || dirWith(*cgroup, "memory.memsw.limit_in_bytes").empty());

	const std::vector<int> fds = rawFds(*cgroup);
	Forked hog([&] {
		if (SandboxCgroup::joinInChild(fds.data(), fds.size()) != 0)
			::_exit(2);
		for (size_t i = 0; i < kTouch; ++i) {
			void *p = ::malloc(kMiB);
			if (!p)
				::_exit(3);
			std::memset(p, 0x5a, kMiB);
		}
		::_exit(0);
	});
	REQUIRE(hog.pid() > 0);
	auto status = hog.wait(15s);
	REQUIRE(status);
	INFO("status " << *status);
	if (!swapCanHide) {
		CHECK(WIFSIGNALED(*status));
		CHECK(WTERMSIG(*status) == SIGKILL);
	} else {
		CHECK(((WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL) ||
		       (WIFEXITED(*status) && WEXITSTATUS(*status) == 0)));
		const std::string memDir = dirWith(*cgroup, cgroup->version() == CgroupVersion::V2 ? "memory.peak"
												     : "memory.max_usage_in_bytes");
		if (!memDir.empty()) {
			const std::string peak = trimmed(test::readFile(
				memDir + (cgroup->version() == CgroupVersion::V2 ? "/memory.peak" : "/memory.max_usage_in_bytes")));
			CHECK(std::stoull(peak) <= kLimit);
		}
	}
	REQUIRE(cgroup->destroy());
}

TEST_CASE("the CPU limit reaches the kernel and throttles a busy child")
{
	{
		auto cgroup = mustCreate(randomName(), {.memoryBytes = {}, .pids = {}, .cpuMillis = 1500});
		if (cgroup->version() == CgroupVersion::V1) {
			const std::string dir = dirWith(*cgroup, "cpu.cfs_quota_us");
			REQUIRE_FALSE(dir.empty());
			CHECK(trimmed(test::readFile(dir + "/cpu.cfs_quota_us")) == "150000");
			CHECK(trimmed(test::readFile(dir + "/cpu.cfs_period_us")) == "100000");
		} else {
			const std::string dir = dirWith(*cgroup, "cpu.max");
			REQUIRE_FALSE(dir.empty());
			CHECK(trimmed(test::readFile(dir + "/cpu.max")) == "150000 100000");
		}
		REQUIRE(cgroup->destroy());
	}

	// 100 millicores: a child that spins for one second of wall time gets
	// about a tenth of it.
	auto cgroup = mustCreate(randomName(), {.memoryBytes = {}, .pids = {}, .cpuMillis = 100});
	const std::vector<int> fds = rawFds(*cgroup);
	Forked spinner([&] {
		if (SandboxCgroup::joinInChild(fds.data(), fds.size()) != 0)
			::_exit(2);
		const auto end = std::chrono::steady_clock::now() + 1s;
		volatile uint64_t spins = 0;
		while (std::chrono::steady_clock::now() < end)
			spins = spins + 1;
		::_exit(0);
	});
	REQUIRE(spinner.pid() > 0);
	rusage ru{};
	auto status = spinner.wait(10s, &ru);
	REQUIRE(status);
	CHECK(WIFEXITED(*status));
	CHECK(WEXITSTATUS(*status) == 0);
	const long cpuMs = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
			   (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
	INFO("the spinner used " << cpuMs << " ms of CPU in 1 s");
	CHECK(cpuMs > 0);
	CHECK(cpuMs < 400);

	auto usage = cgroup->usage();
	REQUIRE(usage);
	// cpuacct (v1) or cpu.stat (v2) saw the same time.
	if (cgroup->version() == CgroupVersion::V2 || !dirWith(*cgroup, "cpuacct.usage").empty()) {
		CHECK(usage->cpuUsec > 0);
		CHECK(usage->cpuUsec < 400000);
	}
	REQUIRE(cgroup->destroy());
}

TEST_CASE("removeLeftovers removes what it is not told to keep")
{
	const std::string keepName = randomName();
	const std::string leftName = randomName();
	auto kept = mustCreate(keepName, {});

	// An earlier gvmd's cgroup: made by hand in every hierarchy, with a
	// process in it.
	std::vector<std::string> leftDirs;
	for (const std::string &dir : kept->directories()) {
		leftDirs.push_back(dirname(dir) + "/" + leftName);
		REQUIRE(::mkdir(leftDirs.back().c_str(), 0755) == 0);
	}
	Forked sleeper([] {
		::sleep(kSleeperLifetime);
		::_exit(0);
	});
	REQUIRE(sleeper.pid() > 0);
	for (const std::string &dir : leftDirs)
		REQUIRE(test::writeFile(dir + "/cgroup.procs", std::to_string(sleeper.pid())));

	// Keep every other cgroup that is there (a gvmd on this host may have
	// sandboxes): only the leftover made above may go.
	std::vector<std::string> keep;
	for (const std::string &dir : kept->directories()) {
		std::string base = dirname(dir);
		std::unique_ptr<DIR, int (*)(DIR *)> list(::opendir(base.c_str()), ::closedir);
		REQUIRE(list);
		while (const dirent *entry = ::readdir(list.get()))
			if (entry->d_name != leftName)
				keep.emplace_back(entry->d_name);
	}

	std::vector<Error> errors = SandboxCgroup::removeLeftovers(keep);
	for (const Error &e : errors)
		FAIL_CHECK(e.message());
	for (const std::string &dir : leftDirs)
		CHECK_FALSE(exists(dir));
	for (const std::string &dir : kept->directories())
		CHECK(exists(dir));
	auto status = sleeper.wait(2s);
	REQUIRE(status);
	CHECK(WIFSIGNALED(*status));
	CHECK(WTERMSIG(*status) == SIGKILL);
	REQUIRE(kept->destroy());
}

TEST_CASE("a create() that fails leaves nothing and names the file")
{
	// Where sandboxes' cgroups live, learnt from one that works.
	std::vector<std::string> bases;
	{
		auto probe = mustCreate(randomName(), {});
		for (const std::string &dir : probe->directories())
			bases.push_back(dirname(dir));
		REQUIRE(probe->destroy());
	}
	auto nothingNamed = [&](const std::string &name) {
		if (name.empty())
			return true;
		for (const std::string &base : bases)
			if (exists(base + "/" + name))
				return false;
		return true;
	};

	SECTION("a pids limit above the kernel's maximum, written after the others")
	{
		const std::string name = randomName();
		auto cgroup = SandboxCgroup::create(name, {.memoryBytes = 64 * kMiB, .pids = UINT32_MAX, .cpuMillis = 500});
		REQUIRE_FALSE(cgroup);
		INFO(cgroup.error().message());
		CHECK(cgroup.error().code() == EINVAL);
		CHECK(cgroup.error().message().find("/" + name + "/pids.max") != std::string::npos);
		CHECK(nothingNamed(name));
	}
	SECTION("a CPU quota below the kernel's 1 ms")
	{
		const std::string name = randomName();
		auto cgroup = SandboxCgroup::create(name, {.memoryBytes = {}, .pids = {}, .cpuMillis = 5});
		REQUIRE_FALSE(cgroup);
		INFO(cgroup.error().message());
		CHECK(cgroup.error().code() == EINVAL);
		CHECK((cgroup.error().message().find("cpu.cfs_quota_us") != std::string::npos ||
		       cgroup.error().message().find("cpu.max") != std::string::npos));
		CHECK(nothingNamed(name));
	}
	SECTION("a name that exists already: EEXIST, and the existing one is untouched")
	{
		const std::string name = randomName();
		auto first = mustCreate(name, {});
		auto second = SandboxCgroup::create(name, {});
		REQUIRE_FALSE(second);
		CHECK(second.error().code() == EEXIST);
		for (const std::string &dir : first->directories())
			CHECK(exists(dir));
		REQUIRE(first->destroy());
		CHECK(nothingNamed(name));
	}
	SECTION("a name that is not a sandbox id")
	{
		for (const char *bad : {"", "0123456", "012345678", "0123456G", "../01234", "ABCDEF01"}) {
			auto cgroup = SandboxCgroup::create(bad, {});
			REQUIRE_FALSE(cgroup);
			CHECK(cgroup.error().code() == EINVAL);
			CHECK(nothingNamed(bad));
		}
	}
}

TEST_CASE("joinInChild reports a write that fails")
{
	const int bad[] = {-1};
	CHECK(SandboxCgroup::joinInChild(bad, 1) == EBADF);
	CHECK(SandboxCgroup::joinInChild(nullptr, 0) == 0);
}
