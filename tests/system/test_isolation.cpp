// SPDX-License-Identifier: Apache-2.0
//
// The sandbox's isolation beyond the network, end to end: a real gvmd (as
// root, sandbox mode) launches agents with `gvmctl launch`, and what the
// agent could read, write and ask of the kernel is proved from inside
// (`key=value` lines the agent prints) and from the host (the real files,
// `gvmctl diff`, `apply`, `discard`, `ps --all`).
//
// The agent runs as a system user this program creates (and deletes at the
// end) whose home directory, secrets and workspaces live in a scratch
// directory under /var/tmp: not /root, which is the real one, and not /tmp,
// which the agent sees privately (a home below /tmp gets no layer and no
// Landlock rule). gvmd's own socket, runtime and state directories are in
// the scratch directory too, so that the agent could see them unless the
// sandbox hides them. Nothing here needs a network: the policies deny
// everything, and no upstream is started.
//
// One gvmd serves the file (a function-local static, stopped cleanly at
// exit); the Landlock-only case starts a second one of its own with
// --test-no-mask-mounts. Each gvmd has a parent-death signal, and a run that
// was killed leaves its user and scratch directory to the next run, which
// removes them first.
#include <catch2/catch.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <dirent.h>
#include <filesystem>
#include <map>
#include <pwd.h>
#include <set>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "tests/support/process.h"

using namespace gvm;
using namespace gvm::test;
using Json = nlohmann::json;

namespace {

constexpr char kPython[] = "/usr/bin/python3";
// Not the PATH of the test's own environment: a version manager's shims in
// root's home are neither wanted nor reachable by the test user.
constexpr char kPath[] = "PATH=/usr/local/bin:/usr/bin:/bin";
// Sandbox veth pairs of this file's gvmds: apart from the other suites'.
constexpr char kPool[] = "10.205.0.0/17";
constexpr char kLandlockPool[] = "10.205.128.0/17";
// The test user's name prefix, and where its scratch directories live; a
// user of a killed earlier run is recognised by both (and a home that is
// gone) and deleted.
constexpr char kUserPrefix[] = "gvmiso";
constexpr char kScratchPrefix[] = "/var/tmp/gvm-iso-";

// What each case's agent text runs first: `try KEY CMD...` prints
// "KEY=<exit status> <output, one line>".
const char kShellPrelude[] =
	"try() { k=$1; shift; o=$(\"$@\" 2>&1 </dev/null); rc=$?; "
	"printf '%s=%s %s\\n' \"$k\" \"$rc\" \"$(printf '%s' \"$o\" | tr '\\n' ' ' | cut -c1-400)\"; }\n"
	"echo \"sandbox=$GVM_SANDBOX\"\n";

// The kernel interfaces the seccomp filter closes, each tried directly
// (ctypes), each printed as "ok" or the errno's name.
const char kSyscallsScript[] = R"PY(
import ctypes, errno, os, socket, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
def report(key, value):
    print(f"{key}={value}", flush=True)
def name(e):
    return errno.errorcode.get(e, str(e))
def call(r):
    return "ok" if r >= 0 else name(ctypes.get_errno())
def sock(family, kind, proto=0):
    try:
        socket.socket(family, kind, proto).close()
        return "ok"
    except OSError as e:
        return name(e.errno)

# PTRACE_ATTACH to a child of ours, which the kernel alone would allow.
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
report("ptrace", call(libc.ptrace(16, child, None, None)))
os.kill(child, 9)
os.waitpid(child, 0)

report("mount", call(libc.mount(b"none", b"/mnt", b"tmpfs", 0, None)))
report("unshare_ns", call(libc.unshare(0x00020000)))  # CLONE_NEWNS
report("af_packet", sock(socket.AF_PACKET, socket.SOCK_RAW))
report("af_vsock", sock(40, socket.SOCK_STREAM))  # AF_VSOCK
report("raw_ip", sock(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
# io_uring_setup(1, &params): a real ring when allowed (closed at once).
params = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 1, params)
report("io_uring", call(fd))
if fd >= 0:
    os.close(fd)
report("bpf", call(libc.syscall(321, 0, None, 0)))
# clone3(NULL, 0): EINVAL from the kernel, ENOSYS from the filter.
report("clone3", call(libc.syscall(435, None, 0)))
)PY";

// A bounded fork bomb: up to 500 children that sleep, counting the forks
// the kernel refuses; the children are killed and reaped before it ends.
const char kForkBombScript[] = R"PY(
import os, time
kids, failed, other = [], 0, "none"
for i in range(500):
    try:
        pid = os.fork()
    except BlockingIOError:
        failed += 1
        continue
    except OSError as e:
        failed += 1
        other = str(e.errno)
        continue
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    kids.append(pid)
tasks = sum(1 for d in os.listdir("/proc") if d.isdigit())
print(f"forked={len(kids)}")
print(f"failed={failed}")
print(f"other_errors={other}")
print(f"tasks={tasks}", flush=True)
for k in kids:
    os.kill(k, 9)
for k in kids:
    os.waitpid(k, 0)
print("reaped=yes", flush=True)
)PY";

void writeOrFail(const std::string &path, const std::string &text, mode_t mode = 0644)
{
	auto r = writeFile(path, text, mode);
	if (!r)
		FAIL(r.error().message());
}

void makeDirOrFail(const std::string &path)
{
	auto r = makeDir(path);
	if (!r)
		FAIL(r.error().message());
}

// The agent's answer: status, output, the `key=value` lines, and gvmd's
// log as it was when the launch ended (for INFO).
struct Agent {
	int status = -1;
	std::string out;
	std::string err;
	std::string sandbox;
	std::map<std::string, std::string> kv;
	std::string log;

	std::string operator[](const std::string &key) const
	{
		auto it = kv.find(key);
		return it == kv.end() ? "<missing " + key + ">" : it->second;
	}
	std::string text() const
	{
		return "status " + std::to_string(status) + "\n--- out\n" + out + "--- err\n" + err + log;
	}
};

// The exit status and the output of a `try` line.
int rcOf(const std::string &value)
{
	try {
		return std::stoi(value.substr(0, value.find(' ')));
	} catch (...) {
		return -1;
	}
}
std::string outputOf(const std::string &value)
{
	auto space = value.find(' ');
	return space == std::string::npos ? "" : value.substr(space + 1);
}

Agent parseAgent(const RunResult &r)
{
	Agent a{r.status, r.out, r.err, {}, {}, {}};
	std::istringstream in(r.out);
	for (std::string line; std::getline(in, line);)
		if (auto eq = line.find('='); eq != std::string::npos && eq > 0 && !a.kv.count(line.substr(0, eq)))
			a.kv[line.substr(0, eq)] = line.substr(eq + 1);
	a.sandbox = a.kv["sandbox"];
	return a;
}

bool exists(const std::string &path)
{
	struct stat st{};
	return ::lstat(path.c_str(), &st) == 0;
}

// The pids of every process of `uid` on the host.
std::vector<std::string> processesOf(uid_t uid)
{
	std::vector<std::string> out;
	DIR *proc = ::opendir("/proc");
	if (!proc)
		return out;
	while (dirent *e = ::readdir(proc)) {
		const std::string name = e->d_name;
		if (name.find_first_not_of("0123456789") != std::string::npos)
			continue;
		std::istringstream status(readFile("/proc/" + name + "/status"));
		for (std::string line; std::getline(status, line);)
			if (line.rfind("Uid:", 0) == 0) {
				std::istringstream fields(line.substr(4));
				uid_t real = 0;
				if (fields >> real && real == uid)
					out.push_back(name);
				break;
			}
	}
	::closedir(proc);
	return out;
}

// A scratch directory outside /tmp, traversable by everyone, removed
// (recursively) on destruction. It names the process that owns it, so that
// a later run removes what a killed one left.
class ScratchDir
{
public:
	ScratchDir()
	{
		sweepStale();
		std::string tmpl = std::string(kScratchPrefix) + "XXXXXX";
		REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
		path_ = tmpl;
		REQUIRE(::chmod(path_.c_str(), 0755) == 0);
		writeOrFail(path_ + "/owner", std::to_string(::getpid()) + "\n");
	}
	~ScratchDir()
	{
		std::error_code ec;
		std::filesystem::remove_all(path_, ec);
	}
	ScratchDir(const ScratchDir &) = delete;
	ScratchDir &operator=(const ScratchDir &) = delete;
	const std::string &path() const { return path_; }

private:
	// Scratch directories whose owner is gone (its gvmd went with it:
	// it runs with a parent-death signal).
	static void sweepStale()
	{
		const std::filesystem::path parent = std::filesystem::path(kScratchPrefix).parent_path();
		const std::string prefix = std::filesystem::path(kScratchPrefix).filename().string();
		std::error_code ec;
		for (const auto &entry : std::filesystem::directory_iterator(parent, ec)) {
			if (entry.path().filename().string().rfind(prefix, 0) != 0)
				continue;
			const std::string owner = readFile(entry.path().string() + "/owner");
			const pid_t pid = static_cast<pid_t>(std::atol(owner.c_str()));
			if (pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM))
				continue;
			std::error_code rec;
			std::filesystem::remove_all(entry.path(), rec);
		}
	}

	std::string path_;
};

// A system user of this run, with its own group, deleted on destruction.
// Its home (which useradd does not create) is the caller's to make.
class TestUser
{
public:
	explicit TestUser(const std::string &home) : home_(home)
	{
		sweepStale();
		char name[32];
		std::snprintf(name, sizeof(name), "%s%06x", kUserPrefix,
			      static_cast<unsigned>(::getpid() ^ static_cast<unsigned>(::time(nullptr))) & 0xffffffu);
		name_ = name;
		RunResult r = run({"/usr/sbin/useradd", "--system", "--user-group", "--no-create-home", "--home-dir", home_,
				   "--shell", "/usr/sbin/nologin", name_});
		INFO("useradd: " << r.out << r.err);
		REQUIRE(r.status == 0);
		created_ = true;
		passwd *pw = ::getpwnam(name_.c_str());
		REQUIRE(pw != nullptr);
		uid_ = pw->pw_uid;
		gid_ = pw->pw_gid;
	}
	~TestUser()
	{
		if (created_)
			run({"/usr/sbin/userdel", name_});
	}
	TestUser(const TestUser &) = delete;
	TestUser &operator=(const TestUser &) = delete;

	const std::string &name() const { return name_; }
	const std::string &home() const { return home_; }
	uid_t uid() const { return uid_; }
	gid_t gid() const { return gid_; }

private:
	// Users an earlier, killed run of this program left: named like ours,
	// with a home in a scratch directory that is gone.
	static void sweepStale()
	{
		std::istringstream in(readFile("/etc/passwd"));
		for (std::string line; std::getline(in, line);) {
			std::vector<std::string> f;
			std::istringstream fields(line);
			for (std::string field; std::getline(fields, field, ':');)
				f.push_back(field);
			if (f.size() >= 6 && f[0].rfind(kUserPrefix, 0) == 0 && f[5].rfind(kScratchPrefix, 0) == 0 &&
			    !exists(f[5]))
				run({"/usr/sbin/userdel", f[0]});
		}
	}

	std::string home_;
	std::string name_;
	uid_t uid_ = 0;
	gid_t gid_ = 0;
	bool created_ = false;
};

// Who runs gvmctl (and so the agent): root, or the test user, which is
// also a member of the socket's group.
struct Caller {
	std::string label;
	uid_t uid = 0;
	gid_t gid = 0;
	std::string home; // empty: the environment's (root)
};

// A private gvmd: socket, runtime and state directories under `dir`.
class TestGvmd
{
public:
	TestGvmd(const std::string &dir, const char *pool, const std::vector<std::string> &extra = {})
		: dir_(dir), runtime_(dir + "/run"), state_(dir + "/state"), socket_(runtime_ + "/gvmd.sock"),
		  logPath_(dir + "/gvmd.log")
	{
		makeDirOrFail(dir_);
		// With a parent-death signal: should this program be killed,
		// gvmd stops (and ends its sandboxes) instead of living on.
		std::vector<std::string> argv = {"/usr/bin/setpriv", "--pdeathsig", "TERM", "--",
						 binaryFromEnv("GVM_GVMD"), "--socket", socket_, "--runtime-dir", runtime_,
						 "--state-dir", state_, "--worker", binaryFromEnv("GVM_WORKER"),
						 "--address-pool", pool, "--log-level", "debug"};
		argv.insert(argv.end(), extra.begin(), extra.end());
		process_ = Child::start(argv, {}, logPath_);
		if (waitFor([&] { return RawClient(socket_).connected(); }, std::chrono::seconds(15))) {
			struct stat st{};
			if (::stat(socket_.c_str(), &st) == 0)
				socketGroup_ = st.st_gid;
		}
	}
	~TestGvmd()
	{
		// A clean stop: its sandboxes end, their links go. The Child
		// kills it if that takes too long.
		if (process_.running())
			process_.stop(SIGTERM, std::chrono::seconds(10));
	}
	TestGvmd(const TestGvmd &) = delete;
	TestGvmd &operator=(const TestGvmd &) = delete;

	bool ready() { return process_.running() && RawClient(socket_).connected(); }
	// SIGKILL, as a crash would: no cleanup of its own.
	void crash() { process_.stop(SIGKILL, std::chrono::seconds(5)); }
	const std::string &socket() const { return socket_; }
	const std::string &runtime() const { return runtime_; }
	const std::string &state() const { return state_; }
	gid_t socketGroup() const { return socketGroup_; }
	std::string log() const { return "--- gvmd.log\n" + tail(readFile(logPath_), 4000); }

	// The command line that runs argv as `caller`, in `cwd`, with a
	// known PATH (and the user's HOME).
	std::vector<std::string> as(const Caller &caller, const std::string &cwd) const
	{
		std::vector<std::string> args;
		if (caller.uid != 0)
			// Drops root for the user's ids; its groups are its own
			// and the socket's, as a member of group gvm would have.
			args = {"/usr/bin/setpriv", "--reuid=" + std::to_string(caller.uid),
				"--regid=" + std::to_string(caller.gid),
				"--groups=" + std::to_string(caller.gid) + "," + std::to_string(socketGroup_)};
		args.insert(args.end(), {"/usr/bin/env", "-C", cwd, kPath});
		if (!caller.home.empty())
			args.push_back("HOME=" + caller.home);
		return args;
	}

	RunResult ctl(const Caller &caller, const std::vector<std::string> &args,
		      std::chrono::milliseconds timeout = std::chrono::seconds(30)) const
	{
		std::vector<std::string> argv = as(caller, dir_);
		argv.insert(argv.end(), {binaryFromEnv("GVM_GVMCTL"), "--socket", socket_});
		argv.insert(argv.end(), args.begin(), args.end());
		return run(argv, {}, timeout);
	}

	// `gvmctl launch` of a shell script (after kShellPrelude) in `cwd`.
	std::vector<std::string> launchArgv(const Caller &caller, const std::string &policy, const std::string &cwd,
					    const std::string &script, const std::vector<std::string> &flags = {}) const
	{
		std::vector<std::string> argv = as(caller, cwd);
		argv.insert(argv.end(), {binaryFromEnv("GVM_GVMCTL"), "--socket", socket_, "launch", "--policy", policy});
		argv.insert(argv.end(), flags.begin(), flags.end());
		argv.insert(argv.end(), {"--", "/bin/sh", "-c", std::string(kShellPrelude) + script});
		return argv;
	}

	Agent launch(const Caller &caller, const std::string &policy, const std::string &cwd, const std::string &script,
		     const std::vector<std::string> &flags = {},
		     std::chrono::milliseconds timeout = std::chrono::seconds(60)) const
	{
		Agent a = parseAgent(run(launchArgv(caller, policy, cwd, script, flags), {}, timeout));
		a.log = log();
		return a;
	}

	// `gvmctl ... --json`, parsed (discarded when not JSON).
	Json json(const Caller &caller, const std::vector<std::string> &args, RunResult *raw = nullptr) const
	{
		std::vector<std::string> withJson = args;
		withJson.push_back("--json");
		RunResult r = ctl(caller, withJson);
		if (raw)
			*raw = r;
		return Json::parse(r.out, nullptr, false);
	}

private:
	std::string dir_;
	std::string runtime_;
	std::string state_;
	std::string socket_;
	std::string logPath_;
	gid_t socketGroup_ = 0;
	Child process_;
};

// Everything the cases share: the scratch directory, the test user and its
// home with secrets, the policies and scripts, and the main gvmd.
class World
{
public:
	ScratchDir scratch;
	std::string home = scratch.path() + "/home";
	TestUser user{home};
	std::string sshKey = home + "/.ssh/id_ed25519";
	std::string homeFile = home + "/readable.txt";
	// A directory the user's tools keep settings in.
	std::string homeConfig = home + "/.config";
	// Root's secret (a file root could read without any capability, as
	// its owner), hidden by a policy entry for the root caller's cases.
	std::string rootSecrets = scratch.path() + "/root-secrets";
	std::string rootKey = rootSecrets + "/.ssh/id_ed25519";
	std::string policies = scratch.path() + "/policies";
	std::string scripts = scratch.path() + "/scripts";
	std::string denyPolicy = policies + "/deny.yaml";
	std::string rootSecretsPolicy = policies + "/root-secrets.yaml";
	std::string namespacesPolicy = policies + "/namespaces.yaml";
	std::string allGroupsPolicy = policies + "/all-groups.yaml";
	std::string limitsPolicy = policies + "/limits.yaml";
	std::string syscallsScript = scripts + "/syscalls.py";
	std::string forkBombScript = scripts + "/fork_bomb.py";
	Caller root{"caller root", 0, 0, ""};
	Caller agentUser;
	std::unique_ptr<TestGvmd> gvmd;

	World()
	{
		agentUser = {"caller " + user.name(), user.uid(), user.gid(), home};
		// The user's home: a secret key (the user's, 0600: readable by
		// the user without the sandbox) and an ordinary file beside it.
		userDir(home, 0755);
		userDir(home + "/.ssh", 0700);
		userFile(sshKey, "PRIVATE-KEY-OF-THE-USER\n", 0600);
		userFile(homeFile, "readable home file\n", 0644);
		userDir(homeConfig, 0755);
		makeDirOrFail(rootSecrets);
		REQUIRE(::mkdir((rootSecrets + "/.ssh").c_str(), 0700) == 0);
		writeOrFail(rootKey, "PRIVATE-KEY-OF-ROOT\n", 0600);

		makeDirOrFail(policies);
		const std::string head = "version: 1\ndefault: deny\n";
		writeOrFail(denyPolicy, head + "name: isolation\n");
		writeOrFail(rootSecretsPolicy, head + "name: isolation-root-secrets\n"
						      "filesystem:\n  hidden: [\"" + rootSecrets + "/.ssh\"]\n");
		writeOrFail(namespacesPolicy, head + "name: isolation-namespaces\nsyscalls:\n  allow: [namespaces]\n");
		writeOrFail(allGroupsPolicy,
			    head + "name: isolation-all-groups\nsyscalls:\n  allow: [namespaces, ptrace, io_uring]\n");
		writeOrFail(limitsPolicy, head + "name: isolation-limits\nlimits:\n  memory: 512M\n  pids: 64\n  cpu: 1\n");
		makeDirOrFail(scripts);
		writeOrFail(syscallsScript, kSyscallsScript);
		writeOrFail(forkBombScript, kForkBombScript);

		gvmd = std::make_unique<TestGvmd>(scratch.path() + "/gvmd", kPool);
	}

	~World()
	{
		// gvmd first (its sandboxes end), then the user, then the files.
		gvmd.reset();
	}

	void userDir(const std::string &path, mode_t mode)
	{
		makeDirOrFail(path);
		REQUIRE(::chmod(path.c_str(), mode) == 0);
		REQUIRE(::chown(path.c_str(), user.uid(), user.gid()) == 0);
	}
	void userFile(const std::string &path, const std::string &text, mode_t mode)
	{
		writeOrFail(path, text, mode);
		REQUIRE(::chown(path.c_str(), user.uid(), user.gid()) == 0);
	}

	// A fresh workspace of the user's, with the given files (parents
	// made as needed). Numbered: a case with sections runs once per
	// section.
	std::string workspace(const std::string &name, const std::map<std::string, std::string> &files = {})
	{
		const std::string ws = scratch.path() + "/ws-" + name + "-" + std::to_string(++workspaces_);
		REQUIRE_FALSE(exists(ws));
		userDir(ws, 0755);
		for (const auto &[path, text] : files) {
			for (size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', slash + 1))
				if (!exists(ws + "/" + path.substr(0, slash)))
					userDir(ws + "/" + path.substr(0, slash), 0755);
			userFile(ws + "/" + path, text, 0644);
		}
		return ws;
	}

	// The ended sandbox `id` as `ps --all --json` lists it to `caller`.
	std::optional<Json> listed(const Caller &caller, const std::string &id)
	{
		Json ps = gvmd->json(caller, {"ps", "--all"});
		if (ps.is_discarded() || !ps.contains("sandboxes"))
			return std::nullopt;
		for (const Json &s : ps["sandboxes"])
			if (s.value("id", "") == id)
				return s;
		return std::nullopt;
	}

private:
	int workspaces_ = 0;
};

World &world()
{
	static World w;
	INFO(w.gvmd->log());
	REQUIRE(w.gvmd->ready());
	// The test user reaches the socket through its group (gvm).
	REQUIRE(w.gvmd->socketGroup() != 0);
	return w;
}

// The changes `gvmctl diff --json` lists, as path -> "kind type".
std::map<std::string, std::string> changesOf(const Json &diff)
{
	std::map<std::string, std::string> out;
	if (diff.is_discarded() || !diff.contains("changes"))
		return out;
	for (const Json &c : diff["changes"])
		out[c.value("path", "")] = c.value("kind", "") + " " + c.value("type", "");
	return out;
}

std::set<std::string> stringsOf(const Json &list)
{
	std::set<std::string> out;
	if (list.is_array())
		for (const Json &s : list)
			if (s.is_string())
				out.insert(s.get<std::string>());
	return out;
}

// The secrets script of cases 1 and 7: every secret tried, every
// neighbour read, and whether a mask is mounted over ~/.ssh.
std::string secretsScript(const World &w, const std::string &key, const std::string &sshDir)
{
	return "try ssh_key cat " + key + "\n"
	       "try ssh_dir ls -A " + sshDir + "\n"
	       "try env cat .env\n"
	       "try env_local cat sub/.env.local\n"
	       "try notes cat notes.txt\n"
	       "try readme cat sub/README\n"
	       "try home_file cat " + w.homeFile + "\n"
	       "echo \"ssh_mounted=$(grep -c ' " + sshDir + " ' /proc/self/mountinfo)\"\n";
}

void checkDenied(const Agent &a, const std::string &key)
{
	INFO(key << ": " << a[key]);
	CHECK(rcOf(a[key]) != 0);
	CHECK_THAT(outputOf(a[key]), Catch::Contains("Permission denied"));
}

// A secret of the home: its private layer has no such entry (a whiteout).
void checkAbsent(const Agent &a, const std::string &key)
{
	INFO(key << ": " << a[key]);
	CHECK(rcOf(a[key]) != 0);
	CHECK_THAT(outputOf(a[key]), Catch::Contains("No such file or directory"));
}

} // namespace

TEST_CASE("secrets in the home and in the workspace are unreadable, their neighbours readable",
	  "[isolation][system]")
{
	World &w = world();
	const std::string ws = w.workspace("secrets", {{".env", "API_KEY=secret-of-the-workspace\n"},
						       {"sub/.env.local", "LOCAL_KEY=secret-of-the-subdir\n"},
						       {"notes.txt", "notes beside the secrets\n"},
						       {"sub/README", "readme beside the secrets\n"}});
	// `inHome`: the secret is in the caller's home, whose private layer
	// does not have it at all (a whiteout); elsewhere a mask mount makes
	// it unreadable. (Landlock alone: the case below.)
	auto check = [&](const Agent &a, bool inHome) {
		INFO(a.text());
		REQUIRE(a.status == 0);
		if (inHome) {
			checkAbsent(a, "ssh_key");
			checkAbsent(a, "ssh_dir");
			CHECK(a["ssh_mounted"] == "0");
		} else {
			checkDenied(a, "ssh_key");
			checkDenied(a, "ssh_dir");
			CHECK(a["ssh_mounted"] != "0");
		}
		checkDenied(a, "env");
		checkDenied(a, "env_local");
		CHECK(a["notes"] == "0 notes beside the secrets");
		CHECK(a["readme"] == "0 readme beside the secrets");
		CHECK(a["home_file"] == "0 readable home file");
		CHECK(a.out.find("PRIVATE-KEY") == std::string::npos);
		CHECK(a.out.find("secret-of-the") == std::string::npos);
	};
	SECTION("the user's ~/.ssh (a default) and .env files")
	{
		// Without the sandbox, the user reads all of them.
		RunResult plain = run({"/usr/bin/setpriv", "--reuid=" + std::to_string(w.user.uid()),
				       "--regid=" + std::to_string(w.user.gid()), "--clear-groups", "/bin/cat", w.sshKey,
				       ws + "/.env", ws + "/sub/.env.local"});
		INFO(plain.out << plain.err);
		REQUIRE(plain.status == 0);
		check(w.gvmd->launch(w.agentUser, w.denyPolicy, ws, secretsScript(w, w.sshKey, w.home + "/.ssh")),
		      true);
	}
	SECTION("root's, hidden by an absolute policy entry: no capability overrides the masks")
	{
		REQUIRE(readFile(w.rootKey) == "PRIVATE-KEY-OF-ROOT\n");
		check(w.gvmd->launch(w.root, w.rootSecretsPolicy, ws,
				     secretsScript(w, w.rootKey, w.rootSecrets + "/.ssh")),
		      false);
	}
}

TEST_CASE("workspace overlay: changes wait for review, apply brings them in as the user", "[isolation][system]")
{
	World &w = world();
	const Caller &u = w.agentUser;
	const std::string ws = w.workspace("review", {{"edit.txt", "old line\n"},
						      {"remove.txt", "to be removed\n"},
						      {"keep.txt", "untouched\n"}});
	Agent a = w.gvmd->launch(u, w.denyPolicy, ws,
				 "printf 'new line\\n' > edit.txt\n"
				 "echo created > new.txt\n"
				 "rm remove.txt\n"
				 "echo \"inside_edit=$(cat edit.txt)\"\n"
				 "echo \"inside_new=$(cat new.txt)\"\n"
				 "echo \"inside_removed=$(test -e remove.txt && echo present || echo absent)\"\n");
	INFO(a.text());
	REQUIRE(a.status == 0);
	REQUIRE(!a.sandbox.empty());
	// The agent sees its own changes...
	CHECK(a["inside_edit"] == "new line");
	CHECK(a["inside_new"] == "created");
	CHECK(a["inside_removed"] == "absent");
	// ...and the real tree has none of them.
	CHECK(readFile(ws + "/edit.txt") == "old line\n");
	CHECK_FALSE(exists(ws + "/new.txt"));
	CHECK(readFile(ws + "/remove.txt") == "to be removed\n");
	CHECK(exists(w.gvmd->state() + "/sandboxes/" + a.sandbox + "/upper"));

	auto entry = w.listed(u, a.sandbox);
	REQUIRE(entry);
	INFO(entry->dump());
	CHECK((*entry)["state"] == "ended");
	CHECK((*entry)["pending_changes"] == true);
	CHECK((*entry)["workspace"] == ws);

	RunResult raw;
	Json diff = w.gvmd->json(u, {"diff", a.sandbox}, &raw);
	INFO(raw.out << raw.err);
	REQUIRE(raw.status == 0);
	CHECK(changesOf(diff) == std::map<std::string, std::string>{{"edit.txt", "modified file"},
								    {"new.txt", "created file"},
								    {"remove.txt", "deleted file"}});
	RunResult patch = w.gvmd->ctl(u, {"diff", a.sandbox, "--patch"});
	INFO(patch.out << patch.err);
	CHECK(patch.status == 0);
	CHECK_THAT(patch.out, Catch::Contains("M edit.txt") && Catch::Contains("A new.txt") &&
				      Catch::Contains("D remove.txt"));
	CHECK_THAT(patch.out, Catch::Contains("-old line") && Catch::Contains("+new line"));

	Json applied = w.gvmd->json(u, {"apply", a.sandbox}, &raw);
	INFO(raw.out << raw.err);
	CHECK(raw.status == 0);
	CHECK(stringsOf(applied["applied"]) == std::set<std::string>{"edit.txt", "new.txt", "remove.txt"});
	CHECK(applied["refused"] == Json::array());
	CHECK(readFile(ws + "/edit.txt") == "new line\n");
	CHECK(readFile(ws + "/new.txt") == "created\n");
	CHECK_FALSE(exists(ws + "/remove.txt"));
	CHECK(readFile(ws + "/keep.txt") == "untouched\n");
	// Written as the user, never as root.
	for (const char *name : {"edit.txt", "new.txt"}) {
		INFO(name);
		struct stat st{};
		REQUIRE(::stat((ws + "/" + name).c_str(), &st) == 0);
		CHECK(st.st_uid == w.user.uid());
		CHECK(st.st_gid == w.user.gid());
	}
	// Nothing left to review: the layer is gone.
	CHECK_FALSE(exists(w.gvmd->state() + "/sandboxes/" + a.sandbox));
}

TEST_CASE("apply refuses a symlink out of the workspace; discard throws changes away", "[isolation][system]")
{
	World &w = world();
	const Caller &u = w.agentUser;
	const std::string ws = w.workspace("refuse");
	Agent a = w.gvmd->launch(u, w.denyPolicy, ws, "ln -s /etc/passwd escape\necho also > also.txt\necho done=1\n");
	INFO(a.text());
	REQUIRE(a.status == 0);
	REQUIRE(a["done"] == "1");

	RunResult raw;
	Json diff = w.gvmd->json(u, {"diff", a.sandbox}, &raw);
	INFO(raw.out << raw.err);
	CHECK(changesOf(diff) ==
	      std::map<std::string, std::string>{{"escape", "created symlink"}, {"also.txt", "created file"}});
	for (const Json &c : diff["changes"])
		if (c.value("path", "") == "escape")
			CHECK(c.value("target", "") == "/etc/passwd");

	Json applied = w.gvmd->json(u, {"apply", a.sandbox}, &raw);
	INFO(raw.out << raw.err);
	CHECK(raw.status == 1);
	CHECK(stringsOf(applied["applied"]) == std::set<std::string>{"also.txt"});
	REQUIRE(applied["refused"].is_array());
	REQUIRE(applied["refused"].size() == 1);
	CHECK(applied["refused"][0]["path"] == "escape");
	CHECK_THAT(applied["refused"][0].value("reason", ""), Catch::Contains("outside the workspace"));
	CHECK_FALSE(exists(ws + "/escape"));
	CHECK(readFile(ws + "/also.txt") == "also\n");

	// The refused change is still there to review, until discarded.
	CHECK(changesOf(w.gvmd->json(u, {"diff", a.sandbox})) ==
	      std::map<std::string, std::string>{{"escape", "created symlink"}});
	RunResult discard = w.gvmd->ctl(u, {"discard", a.sandbox});
	INFO(discard.out << discard.err);
	CHECK(discard.status == 0);
	RunResult after = w.gvmd->ctl(u, {"diff", a.sandbox});
	INFO(after.out << after.err);
	CHECK(after.status == 1);
	CHECK_FALSE(exists(w.gvmd->state() + "/sandboxes/" + a.sandbox));
	CHECK_FALSE(w.listed(u, a.sandbox));
	CHECK_FALSE(exists(ws + "/escape"));
}

TEST_CASE("apply and discard wait until the sandbox has ended", "[isolation][system]")
{
	World &w = world();
	const Caller &u = w.agentUser;
	const std::string ws = w.workspace("running");
	const std::string log = w.scratch.path() + "/running-launch.log";
	Child launch = Child::start(
		w.gvmd->launchArgv(u, w.denyPolicy, ws, "echo busy > busy.txt\necho ready=1\nexec sleep 60\n"), {}, log);
	REQUIRE(waitFor([&] { return readFile(log).find("ready=1") != std::string::npos || !launch.running(); },
			std::chrono::seconds(30)));
	INFO("--- launch\n" << readFile(log) << w.gvmd->log());
	REQUIRE(launch.running());
	const Agent a = parseAgent({0, readFile(log), ""});
	REQUIRE(!a.sandbox.empty());

	// A look while it runs is fine...
	CHECK(changesOf(w.gvmd->json(u, {"diff", a.sandbox})) ==
	      std::map<std::string, std::string>{{"busy.txt", "created file"}});
	// ...changing the real tree under a running agent is not.
	for (const char *command : {"apply", "discard"}) {
		INFO(command);
		RunResult r = w.gvmd->ctl(u, {command, a.sandbox});
		INFO(r.out << r.err);
		CHECK(r.status == 1);
		CHECK_THAT(r.err, Catch::Contains("still running"));
	}
	CHECK_FALSE(exists(ws + "/busy.txt"));
	CHECK(exists(w.gvmd->state() + "/sandboxes/" + a.sandbox + "/upper/busy.txt"));

	RunResult stop = w.gvmd->ctl(u, {"stop", a.sandbox});
	INFO(stop.out << stop.err);
	CHECK(stop.status == 0);
	CHECK(launch.wait(std::chrono::seconds(20)).has_value());
	RunResult discard = w.gvmd->ctl(u, {"discard", a.sandbox});
	INFO(discard.out << discard.err);
	CHECK(discard.status == 0);
	CHECK_FALSE(exists(ws + "/busy.txt"));
}

TEST_CASE("the host is read-only, gvmd's directories are hidden, /tmp and the home layer are private",
	  "[isolation][system]")
{
	World &w = world();
	const std::string ws = w.workspace("host");
	const std::string tag = std::to_string(::getpid());
	const std::string hostMarker = "/tmp/gvm-iso-host-" + tag;
	const std::string agentMarker = "/tmp/gvm-iso-agent-" + tag;
	const std::string probe = "gvm-iso-probe-" + tag;
	const std::string homeWrite = w.homeConfig + "/agent-wrote-" + tag;
	writeOrFail(hostMarker, "the host's\n");
	// The host's files are removed whatever the checks say.
	struct Cleanup {
		std::vector<std::string> paths;
		~Cleanup()
		{
			for (const std::string &p : paths)
				::unlink(p.c_str());
		}
	} cleanup{{hostMarker, agentMarker, "/usr/" + probe, "/etc/" + probe, homeWrite}};

	const std::string script =
		"try usr sh -c 'echo x > /usr/" + probe + "'\n"
		"try etc sh -c 'echo x > /etc/" + probe + "'\n"
		"echo \"default_socket=$(test -e /run/gvm/gvmd.sock && echo present || echo absent)\"\n"
		"echo \"test_socket=$(test -e " + w.gvmd->socket() + " && echo present || echo absent)\"\n"
		"echo \"runtime_dir=$(ls -A " + w.gvmd->runtime() + " 2>&1 | tr '\\n' ' ')\"\n"
		"echo \"state_dir=$(ls -A " + w.gvmd->state() + " 2>&1 | tr '\\n' ' ')\"\n"
		"echo \"host_tmp=$(test -e " + hostMarker + " && echo present || echo absent)\"\n"
		"echo agent > " + agentMarker + "\n"
		"echo \"own_tmp=$(cat " + agentMarker + ")\"\n"
		"try home_write sh -c 'echo agent > " + homeWrite + " && cat " + homeWrite + "'\n";
	for (const Caller *caller : {&w.agentUser, &w.root}) {
		INFO(caller->label);
		Agent a = w.gvmd->launch(*caller, w.denyPolicy, ws, script);
		INFO(a.text());
		REQUIRE(a.status == 0);
		for (const char *key : {"usr", "etc"}) {
			INFO(key << ": " << a[key]);
			CHECK(rcOf(a[key]) != 0);
			CHECK_THAT(outputOf(a[key]),
				   Catch::Contains("Read-only file system") || Catch::Contains("Permission denied"));
		}
		CHECK_FALSE(exists("/usr/" + probe));
		CHECK_FALSE(exists("/etc/" + probe));
		// (Absent on a host without a system gvmd too; hidden if not.)
		CHECK(a["default_socket"] == "absent");
		CHECK(a["test_socket"] == "absent");
		// On the host both directories have entries (the socket; the
		// audit log and the sandboxes' layers).
		CHECK(a["runtime_dir"] == "");
		CHECK(a["state_dir"] == "");
		CHECK(a["host_tmp"] == "absent");
		CHECK(a["own_tmp"] == "agent");
		CHECK_FALSE(exists(agentMarker));
		// The home is writable (a private layer) for its owner, and
		// nothing written there reaches the host. (Root's own home
		// is /root; the user's is not root's to write.) New entries at
		// the top of the home: the top-of-home case.
		if (caller->uid != 0)
			CHECK(a["home_write"] == "0 agent");
		CHECK_FALSE(exists(homeWrite));
	}
	CHECK(exists(w.gvmd->socket()));
	CHECK(exists(w.gvmd->state() + "/audit"));
}

TEST_CASE("the agent creates new files and directories at the top of its home layer, privately",
	  "[isolation][system]")
{
	World &w = world();
	const std::string ws = w.workspace("home-top");
	const std::string tag = std::to_string(::getpid());
	const std::string file = w.home + "/agent-new-file-" + tag;
	const std::string dir = w.home + "/.agent-cache-" + tag;
	Agent a = w.gvmd->launch(w.agentUser, w.denyPolicy, ws,
				 "try file sh -c 'echo new > " + file + " && cat " + file + "'\n"
				 "try dir sh -c 'mkdir " + dir + " && echo in-dir > " + dir + "/f && cat " + dir + "/f'\n"
				 "try ssh_create sh -c 'mkdir -p " + w.home + "/.ssh && cat " + w.sshKey + "'\n");
	INFO(a.text());
	REQUIRE(a.status == 0);
	CHECK(a["file"] == "0 new");
	CHECK(a["dir"] == "0 in-dir");
	// Re-creating ~/.ssh gives an empty directory of the layer's, not
	// the real one.
	CHECK(rcOf(a["ssh_create"]) != 0);
	CHECK(a.out.find("PRIVATE-KEY") == std::string::npos);
	CHECK_FALSE(exists(file));
	CHECK_FALSE(exists(dir));
	CHECK(readFile(w.sshKey).find("PRIVATE-KEY") != std::string::npos);
}

TEST_CASE("the seccomp filter denies ptrace, mount, namespaces, packet and vsock sockets, io_uring",
	  "[isolation][system]")
{
	World &w = world();
	const std::string ws = w.workspace("syscalls");
	const std::string script = "try unshare_net unshare -n true\n"
				   "try unshare_user unshare -U true\n"
				   "try mount_cmd mount -t tmpfs none /mnt\n"
				   "echo \"mnt=$(grep -c ' /mnt ' /proc/self/mountinfo)\"\n" +
				   std::string(kPython) + " " + w.syscallsScript + "\n";
	for (const Caller *caller : {&w.agentUser, &w.root}) {
		INFO(caller->label);
		Agent a = w.gvmd->launch(*caller, w.denyPolicy, ws, script);
		INFO(a.text());
		REQUIRE(a.status == 0);
		for (const char *key : {"ptrace", "mount", "unshare_ns", "af_packet", "af_vsock", "raw_ip", "io_uring",
					"bpf"}) {
			INFO(key);
			CHECK(a[key] == "EPERM");
		}
		CHECK(a["clone3"] == "ENOSYS");
		for (const char *key : {"unshare_net", "unshare_user"}) {
			INFO(key << ": " << a[key]);
			CHECK(rcOf(a[key]) != 0);
			CHECK_THAT(outputOf(a[key]), Catch::Contains("Operation not permitted"));
		}
		CHECK(rcOf(a["mount_cmd"]) != 0);
		CHECK(a["mnt"] == "0");
	}
}

TEST_CASE("a policy re-allows namespaces, ptrace and io_uring on request", "[isolation][system]")
{
	World &w = world();
	const std::string ws = w.workspace("allowed-syscalls");
	SECTION("syscalls: {allow: [namespaces]}: a user namespace")
	{
		Agent a = w.gvmd->launch(w.agentUser, w.namespacesPolicy, ws,
					 "try unshare_user unshare -U true\n"
					 "try unshare_user_id unshare -U id -u\n");
		INFO(a.text());
		REQUIRE(a.status == 0);
		CHECK(a["unshare_user"] == "0 ");
		// Unmapped in the new namespace: the overflow uid.
		CHECK(a["unshare_user_id"] == "0 65534");
	}
	SECTION("all three groups: what the filter denied before now reaches the kernel")
	{
		Agent a = w.gvmd->launch(w.agentUser, w.allGroupsPolicy, ws,
					 std::string(kPython) + " " + w.syscallsScript + "\n");
		INFO(a.text());
		REQUIRE(a.status == 0);
		CHECK(a["ptrace"] == "ok");
		CHECK(a["io_uring"] == "ok");
		CHECK(a["clone3"] == "EINVAL");
		// Never re-allowed: mounts, packet and vsock sockets, bpf.
		for (const char *key : {"mount", "af_packet", "af_vsock", "bpf"}) {
			INFO(key);
			CHECK(a[key] == "EPERM");
		}
	}
}

TEST_CASE("ordinary tools work in the overlay workspace: git, python3, node, make, cc", "[isolation][system]")
{
	World &w = world();
	std::string cc;
	for (const char *candidate : {"/usr/bin/cc", "/usr/bin/gcc"})
		if (cc.empty() && ::access(candidate, X_OK) == 0)
			cc = candidate;
	if (cc.empty())
		FAIL("neither /usr/bin/cc nor /usr/bin/gcc exists: install gcc (Debian: apt-get install gcc)");
	REQUIRE(::access("/usr/bin/node", X_OK) == 0);
	REQUIRE(::access("/usr/bin/git", X_OK) == 0);
	REQUIRE(::access("/usr/bin/make", X_OK) == 0);
	const std::string ws = w.workspace("tools");
	const std::string script =
		"try git_init git init -q .\n"
		"printf 'hello\\n' > hello.txt\n"
		"try git_add git add hello.txt\n"
		"try git_commit git -c user.name=gvm -c user.email=gvm@example.invalid -c commit.gpgsign=false "
		"commit -q -m first\n"
		"try git_log git log --format=%s\n"
		"try python " + std::string(kPython) + " -c \"open('py.txt', 'w').write('from python')\"\n"
		"try node node -e \"require('fs').writeFileSync('node.txt', 'from node')\"\n"
		"printf 'made.txt:\\n\\techo from make > made.txt\\n' > Makefile\n"
		"try make make\n"
		"printf '#include <stdio.h>\\nint main(void) { puts(\"hello from cc\"); return 0; }\\n' > hello.c\n"
		"try cc " + cc + " -o hello hello.c\n"
		"try hello ./hello\n"
		"echo \"files=$(cat py.txt node.txt made.txt | tr '\\n' ' ')\"\n";
	Agent a = w.gvmd->launch(w.agentUser, w.denyPolicy, ws, script);
	INFO(a.text());
	REQUIRE(a.status == 0);
	for (const char *key : {"git_init", "git_add", "git_commit", "python", "node", "make", "cc"}) {
		INFO(key << ": " << a[key]);
		CHECK(rcOf(a[key]) == 0);
	}
	CHECK(a["git_log"] == "0 first");
	CHECK(a["hello"] == "0 hello from cc");
	CHECK(a["files"] == "from pythonfrom nodefrom make ");

	// All of it waits in the layer; none in the real tree.
	auto changes = changesOf(w.gvmd->json(w.agentUser, {"diff", a.sandbox}));
	INFO(Json(changes).dump());
	for (const char *name : {"hello.txt", "py.txt", "node.txt", "made.txt", "Makefile", "hello.c", "hello"}) {
		INFO(name);
		CHECK(changes[name] == "created file");
		CHECK_FALSE(exists(ws + "/" + name));
	}
	CHECK(changes[".git"] == "created directory");
	CHECK_FALSE(exists(ws + "/.git"));
	RunResult discard = w.gvmd->ctl(w.agentUser, {"discard", a.sandbox});
	INFO(discard.out << discard.err);
	CHECK(discard.status == 0);
}

TEST_CASE("a fork bomb meets the pids limit and the host stays responsive", "[isolation][system]")
{
	World &w = world();
	const std::string ws = w.workspace("fork-bomb");
	const auto started = std::chrono::steady_clock::now();
	Agent a = w.gvmd->launch(w.agentUser, w.limitsPolicy, ws, std::string(kPython) + " " + w.forkBombScript + "\n");
	const auto took = std::chrono::steady_clock::now() - started;
	INFO(a.text());
	REQUIRE(a.status == 0);
	CHECK(took < std::chrono::seconds(45));
	const int forked = std::stoi("0" + a.kv["forked"]);
	const int failed = std::stoi("0" + a.kv["failed"]);
	const int tasks = std::stoi("0" + a.kv["tasks"]);
	// The limit counts every task of the sandbox: its init, sh, python.
	CHECK(forked >= 8);
	CHECK(forked <= 64);
	CHECK(forked + failed == 500);
	CHECK(failed >= 500 - 64);
	CHECK(a["other_errors"] == "none");
	CHECK(tasks <= 64);
	CHECK(a["reaped"] == "yes");

	// Nothing of the sandbox is left on the host...
	std::vector<std::string> left;
	CHECK(waitFor(
		[&] {
			left = processesOf(w.user.uid());
			return left.empty();
		},
		std::chrono::seconds(10)));
	INFO("processes of the user left: " << left.size());
	// ...and the host forks and gvmd answers at once.
	const auto forkStart = std::chrono::steady_clock::now();
	for (int i = 0; i < 20; ++i)
		REQUIRE(run({"/bin/true"}, {}, std::chrono::seconds(5)).status == 0);
	CHECK(std::chrono::steady_clock::now() - forkStart < std::chrono::seconds(5));
	RunResult status = w.gvmd->ctl(w.root, {"status"}, std::chrono::seconds(10));
	INFO(status.out << status.err);
	CHECK(status.status == 0);
}

TEST_CASE("gvmctl ps shows a sandbox's memory, tasks and processor time against its limits", "[isolation][system]")
{
	World &w = world();
	const std::string ws = w.workspace("usage");
	const std::string dir = w.scratch.path() + "/usage";
	makeDirOrFail(dir);
	// 96 MiB written (so resident, not just reserved), a child, then a
	// wait that ps looks at.
	const std::string script = std::string(kPython) +
				   " -c 'import time; b = b\"x\" * (96 << 20); time.sleep(60)' &\n"
				   "sleep 60\n";
	Child agent = Child::start(w.gvmd->launchArgv(w.agentUser, w.limitsPolicy, ws, script), {},
				   dir + "/agent.log");
	Json mine;
	const bool seen = waitFor(
		[&] {
			Json ps = w.gvmd->json(w.agentUser, {"ps"});
			if (ps.is_discarded() || !ps["sandboxes"].is_array())
				return false;
			for (const Json &s : ps["sandboxes"])
				if (s.value("policy", "") == "isolation-limits" &&
				    s["isolation"].value("memory_bytes", uint64_t{0}) >= (uint64_t{96} << 20)) {
					mine = s;
					return true;
				}
			return false;
		},
		std::chrono::seconds(30));
	INFO(mine.dump() << "\n" << readFile(dir + "/agent.log") << w.gvmd->log());
	REQUIRE(seen);
	const Json &iso = mine["isolation"];
	// The policy's limits: memory 512M, pids 64.
	CHECK(iso.value("memory_limit", uint64_t{0}) == (uint64_t{512} << 20));
	CHECK(iso.value("pids_limit", uint64_t{0}) == 64);
	// init, sh, python, sleep.
	CHECK(iso.value("pids", uint64_t{0}) >= 4);
	CHECK(iso.value("pids", uint64_t{0}) <= 8);
	CHECK(iso.value("memory_bytes", uint64_t{0}) < (uint64_t{512} << 20));
	CHECK(iso.contains("cpu_usec"));

	// The table shows the same, with the units a person reads.
	RunResult table = w.gvmd->ctl(w.agentUser, {"ps"});
	INFO(table.out << table.err);
	CHECK(table.status == 0);
	CHECK_THAT(table.out, Catch::Contains("MEM") && Catch::Contains("PIDS") && Catch::Contains("CPU"));
	CHECK_THAT(table.out, Catch::Matches("(.|\n)* [0-9.]+M/512M +[0-9]/64 +[0-9]+s (.|\n)*"));

	RunResult stop = w.gvmd->ctl(w.agentUser, {"stop", mine.value("id", "")});
	CHECK(stop.status == 0);
	CHECK(waitFor([&] { return !agent.running(); }, std::chrono::seconds(15)));
}

TEST_CASE("launch refuses, with the reason, a root workspace and a working directory in the private /tmp",
	  "[isolation][system]")
{
	World &w = world();
	// The root as the workspace (the caller's working directory by
	// default) would make the whole host writable through the overlay.
	Agent root = w.gvmd->launch(w.agentUser, w.denyPolicy, "/", "echo started=yes\n");
	INFO(root.text());
	CHECK(root.status != 0);
	CHECK(root["started"] == "<missing started>");
	CHECK_THAT(root.err, Catch::Contains("the root directory cannot be a workspace"));

	// A working directory in the host's /tmp, with the workspace elsewhere:
	// the sandbox's /tmp is a private one, so the directory is not there.
	struct TmpDir {
		std::string path = "/tmp/gvm-iso-cwd-XXXXXX";
		TmpDir() { REQUIRE(::mkdtemp(path.data()) != nullptr); }
		~TmpDir()
		{
			std::error_code ec;
			std::filesystem::remove_all(path, ec);
		}
	} cwd;
	REQUIRE(::chown(cwd.path.c_str(), w.user.uid(), w.user.gid()) == 0);
	const std::string ws = w.workspace("cwd-elsewhere");
	Agent elsewhere = w.gvmd->launch(w.agentUser, w.denyPolicy, cwd.path, "echo started=yes\n", {"--workspace", ws});
	INFO(elsewhere.text());
	CHECK(elsewhere.status != 0);
	CHECK(elsewhere["started"] == "<missing started>");
	CHECK_THAT(elsewhere.err, Catch::Contains("the working directory " + cwd.path + " is in /tmp") &&
					  Catch::Contains("private") && Catch::Contains(ws));

	// The same directory as the workspace is carried into the private /tmp.
	Agent inside = w.gvmd->launch(w.agentUser, w.denyPolicy, cwd.path, "echo started=yes; pwd\n");
	INFO(inside.text());
	CHECK(inside.status == 0);
	CHECK(inside["started"] == "yes");
	CHECK_THAT(inside.out, Catch::Contains(cwd.path + "\n"));
}

TEST_CASE("Landlock alone keeps hidden paths closed (no masking mounts)", "[isolation][system]")
{
	World &w = world();
	RunResult raw;
	Json status = w.gvmd->json(w.root, {"status"}, &raw);
	INFO(raw.out << raw.err);
	REQUIRE(raw.status == 0);
	const int abi = status.is_discarded() ? -1 : status["isolation"].value("landlock_abi", -1);
	if (abi <= 0)
		FAIL("gvmctl status reports landlock_abi " << abi
							    << ": this kernel has no Landlock, and CI must have it "
							       "(CONFIG_SECURITY_LANDLOCK=y, lsm=...,landlock)");

	TestGvmd bare(w.scratch.path() + "/gvmd-landlock", kLandlockPool, {"--test-no-mask-mounts"});
	INFO(bare.log());
	REQUIRE(bare.ready());
	REQUIRE(bare.socketGroup() != 0);
	const std::string ws = w.workspace("landlock", {{"notes.txt", "notes beside the secrets\n"},
							{"sub/README", "readme beside the secrets\n"}});
	Agent a = bare.launch(w.agentUser, w.denyPolicy, ws, secretsScript(w, w.sshKey, w.home + "/.ssh"));
	INFO(a.text());
	REQUIRE(a.status == 0);
	// No mask is mounted over ~/.ssh: the denial is Landlock's. (The
	// names in ~/.ssh stay listable: Landlock's READ_DIR on the home
	// covers the hidden subtree, see LandlockPlan; contents do not.)
	CHECK(a["ssh_mounted"] == "0");
	checkDenied(a, "ssh_key");
	CHECK(a.out.find("PRIVATE-KEY") == std::string::npos);
	CHECK(a["home_file"] == "0 readable home file");
	CHECK(a["notes"] == "0 notes beside the secrets");
	CHECK_THAT(bare.log(), Catch::Contains("--test-no-mask-mounts"));
}

// The cgroup directories named `id`, in every hierarchy (v1: one per
// controller under <mount>/gvm; v2: under the unified root).
std::vector<std::string> cgroupsOf(const std::string &id)
{
	std::vector<std::string> found;
	std::vector<std::string> bases = {"/sys/fs/cgroup/gvm"};
	if (DIR *d = ::opendir("/sys/fs/cgroup")) {
		while (dirent *e = ::readdir(d))
			if (e->d_name[0] != '.')
				bases.push_back(std::string("/sys/fs/cgroup/") + e->d_name + "/gvm");
		::closedir(d);
	}
	for (const std::string &base : bases)
		if (exists(base + "/" + id))
			found.push_back(base + "/" + id);
	return found;
}

TEST_CASE("a gvmd restarted after a crash removes its sandboxes' cgroups", "[isolation][system]")
{
	World &w = world();
	const std::string dir = w.scratch.path() + "/gvmd-crash";
	const std::string ws = w.workspace("crash");
	std::string id;
	{
		TestGvmd crashing(dir, kLandlockPool);
		INFO(crashing.log());
		REQUIRE(crashing.ready());
		Child agent = Child::start(crashing.launchArgv(w.root, w.limitsPolicy, ws, "sleep 60\n"), {},
					   dir + "/agent.log");
		REQUIRE(waitFor(
			[&] {
				Json ps = crashing.json(w.root, {"ps"});
				if (ps.is_discarded() || ps["sandboxes"].empty())
					return false;
				id = ps["sandboxes"][0].value("id", "");
				return !id.empty();
			},
			std::chrono::seconds(30)));
		INFO("sandbox " << id);
		REQUIRE_FALSE(cgroupsOf(id).empty());
		crashing.crash();
		// The sandbox's init dies with gvmd (parent-death signal), and
		// the agent with its pid namespace; gvmctl loses gvmd.
		CHECK(waitFor([&] { return !agent.running(); }, std::chrono::seconds(15)));
	}
	TestGvmd restarted(dir, kLandlockPool);
	REQUIRE(restarted.ready());
	// gvmd cleans up as it starts, which may end a moment after its
	// socket answers.
	waitFor([&] { return cgroupsOf(id).empty(); }, std::chrono::seconds(10));
	INFO(restarted.log());
	CHECK_THAT(restarted.log(), Catch::Contains("removing") && Catch::Contains(id));
	for (const std::string &left : cgroupsOf(id))
		FAIL_CHECK("left behind: " << left);
}

TEST_CASE("--network-only leaves the file system as it is", "[isolation][system]")
{
	World &w = world();
	const std::string ws = w.workspace("network-only", {{".env", "API_KEY=visible-without-isolation\n"}});
	Agent a = w.gvmd->launch(w.agentUser, w.denyPolicy, ws,
				 "try env cat .env\n"
				 "try write sh -c 'echo direct > direct.txt'\n"
				 "echo \"ssh_mounted=$(grep -c ' " + w.home + "/.ssh ' /proc/self/mountinfo)\"\n",
				 {"--network-only"});
	INFO(a.text());
	REQUIRE(a.status == 0);
	CHECK(a["env"] == "0 API_KEY=visible-without-isolation");
	CHECK(a["write"] == "0 ");
	CHECK(a["ssh_mounted"] == "0");
	// Straight into the real workspace, as the user; nothing to review.
	CHECK(readFile(ws + "/direct.txt") == "direct\n");
	struct stat st{};
	REQUIRE(::stat((ws + "/direct.txt").c_str(), &st) == 0);
	CHECK(st.st_uid == w.user.uid());
	CHECK_FALSE(w.listed(w.agentUser, a.sandbox));
	CHECK_FALSE(exists(w.gvmd->state() + "/sandboxes/" + a.sandbox));
}
