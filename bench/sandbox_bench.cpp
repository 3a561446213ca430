// SPDX-License-Identifier: Apache-2.0
//
// The sandbox benchmark: what gvm's sandbox mode costs, measured in one run
// against a private gvmd that the benchmark starts itself.
//
//   1. Launch: `gvmctl launch --policy P -- /bin/true`, from fork+exec of
//      gvmctl to its exit, in three modes interleaved (each round in a
//      rotated order): isolated (the default: the network sandbox plus the
//      overlay workspace, masks, private /tmp and /dev, Landlock, seccomp
//      and a cgroup), --network-only (the network sandbox alone) and
//      --cooperative; p50/p90/p95/max, and isolated over network-only.
//      Target: isolated p50 < 60 ms.
//   Legs 2 to 4 launch their sandboxes in the default mode, isolation on.
//   2. Teardown: agents that exit after 200 ms; from the agent's exit (the
//      CLOCK_MONOTONIC time it prints just before exiting) to the RTM_DELLINK
//      of its host link gvm<id> (an rtnetlink subscription, no polling), and
//      to gvmctl's exit; p50/max.
//   3. Fifty at once: 50 `gvmctl launch -- sh -c 'echo $GVM_SANDBOX; exec
//      sleep 600'` started together; the time until every agent has printed,
//      then the Pss (smaps_rollup) of every worker, sandbox init and agent
//      (gvmd's descendants) and gvmd's Pss growth, per sandbox, and the drop
//      of MemAvailable (which also counts kernel memory: namespaces, veths,
//      nftables, sockets; noisy). The gvmctl clients run as 5 unprivileged
//      uids (group gvm), as gvmd allows 16 clients and 32 sandboxes per uid.
//      Then `gvmctl stop` for all 50 (as root, 8 at a time) and the time
//      until every gvm link is gone and every gvmctl has exited.
//   4. Transparent HTTPS: an nginx TLS origin (origin.gvm.bench, 10.252.0.1)
//      reached by the same client (this program, --client) along three
//      paths: (a) direct, from a network namespace of the benchmark's own
//      over a veth pair, with no gvm; (b) nginx-proxy, from that namespace
//      to an nginx TLS reverse proxy on 10.252.0.1 (beside the origin and
//      gvmd's workers, presenting the origin's certificate) that pools
//      keep-alive TLS connections to the origin, as proxy-bench's
//      nginx-proxy: the engineering floor for two TLS legs; and (c) as the
//      agent of a gvm sandbox, dialling the origin's address with no proxy
//      settings, redirected to the worker by the sandbox's nftables. Fresh
//      TCP+TLS connection per GET /1k (p50/p99, in blocks alternating the
//      paths), keep-alive GET /1k on 8 connections (req/s, in blocks
//      with the paths taking turns; the sandbox/nginx-proxy ratio of each
//      round is reported too, median and range, as a measure of the
//      machine's noise), one GET of 256 MiB (MB/s). Targets: fresh p50 <= 1.5x direct; keep-alive and
//      bulk >= 0.9x nginx-proxy, which terminates TLS on both legs as the
//      worker does (the ratios to direct are reported too).
//
// Isolation: before anything else the benchmark enters a mount namespace of
// its own, with a private /etc/hosts naming the origin (gvmd's worker
// resolves upstream names with the host resolver), and a network namespace
// of its own: gvmd's veth pairs, addresses and global nftables table live
// there, apart from any other gvmd on the machine, and vanish with the
// benchmark. The client connects by address with SNI set to the name, so no
// DNS server is needed. Every sandbox's workspace is a directory of the
// benchmark's scratch directory (gvmd refuses "/", the working directory of
// the fifty leg's clients), which also holds the copy of this program that
// agents run: an isolated agent's /tmp is its own, and only the workspace
// is carried over onto it, so a build directory below /tmp is out of sight.
//
// Usage: sandbox-bench [--gvmd PATH] [--gvmctl PATH] [--worker PATH]
//                      [--nginx PATH] [--ip PATH] [--launches N]
//                      [--teardowns N] [--sandboxes N] [--requests N]
//                      [--seconds S] [--connections N] [--bulk-runs N]
//                      [--json]
// Binaries: the options, else $GVM_GVMD, $GVM_GVMCTL, $GVM_WORKER. Needs
// root (exits 77 otherwise). Exits 1 when a leg fails, 2 on bad usage.

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <poll.h>
#include <set>
#include <sstream>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <net/if.h>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/proxy_servers.h"
#include "bench/sandbox_client.h"
#include "bench/proxy_pki.h"
#include "bench/report.h"
#include "bench/sandbox_process.h"

namespace {

using namespace gvm;
using namespace gvm::bench;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kOriginName[] = "origin.gvm.bench";
// The direct client's veth pair: the host end (where the origin listens)
// and the client's end. Not named like gvmd's links (gvm<id>), which gvmd
// deletes as leftovers when it starts.
constexpr char kHostAddress[] = "10.252.0.1";
constexpr char kClientAddress[] = "10.252.0.2";
constexpr char kClientCidr[] = "10.252.0.0/30";
constexpr char kHostLink[] = "sbench0";
constexpr char kClientLink[] = "sbench1";
constexpr char kGvmLinkPrefix[] = "gvm";
// Inside a sandbox, the system bundle holds the sandbox CA.
constexpr char kSandboxCaBundle[] = "/etc/ssl/certs/ca-certificates.crt";

constexpr uint64_t kSmallBytes = 1024;
constexpr uint64_t kBulkBytes = 256ull * 1024 * 1024;

constexpr int kDefaultLaunches = 50;
constexpr int kLaunchWarmups = 3;
constexpr int kDefaultTeardowns = 20;
constexpr int kAgentLifetimeMs = 200;
constexpr int kDefaultSandboxes = 50;
// gvmd allows 16 clients and 32 sandboxes per uid: the fifty-sandbox leg
// runs its gvmctl clients as unprivileged uids from kFirstAgentUid on,
// this many each, with group gvm (which may use gvmd's socket).
constexpr int kSandboxesPerUid = 10;
constexpr uid_t kFirstAgentUid = 64100;
constexpr char kSocketGroup[] = "gvm";
// `gvmctl stop` clients at once, below gvmd's 16 clients per uid.
constexpr size_t kStopConcurrency = 8;
constexpr int kDefaultRequests = 300;
constexpr int kFreshBlocks = 3;
// The keep-alive leg of each path is split into blocks of about this long,
// at least kMinKeepAliveBlocks, the paths taking turns: short turns let
// load from outside the benchmark, which comes and goes over seconds,
// weigh on every path alike.
constexpr double kKeepAliveBlockSeconds = 2.0;
constexpr int kMinKeepAliveBlocks = 3;
constexpr int kFreshWarmup = 10;
constexpr double kDefaultSeconds = 12.0;
constexpr int kDefaultConnections = 8;
constexpr int kDefaultBulkRuns = 3;
// Bounds on what the command line may ask for.
constexpr int kMaxLaunches = 10000;
constexpr int kMaxSandboxes = 500;
constexpr int kMaxRequests = 100000;
constexpr int kMaxConnections = 256;
constexpr double kMaxSeconds = 600;
constexpr int kMaxBulkRuns = 20;

// How long one step may take before it counts as failed.
constexpr milliseconds kGvmdStartTimeout = seconds(10);
constexpr milliseconds kLaunchTimeout = seconds(30);
constexpr milliseconds kTeardownTimeout = seconds(10);
constexpr milliseconds kFiftyTimeout = seconds(120);
constexpr milliseconds kClientTimeout = seconds(300);
constexpr milliseconds kStopGrace = seconds(10);
// Between the last of the 50 starting and reading memory.
constexpr milliseconds kSettle = milliseconds(1000);

// Targets (reported, not enforced).
constexpr double kLaunchP50TargetMs = 60;
constexpr double kFreshP50Target = 1.5;   // sandbox/direct, at most
constexpr double kThroughputTarget = 0.9; // sandbox/nginx-proxy, at least

volatile std::sig_atomic_t gInterrupted = 0;
void onInterrupt(int) { gInterrupted = 1; }
bool interrupted() { return gInterrupted != 0; }

struct Options {
	std::string gvmd, gvmctl, worker;
	std::string nginx = "/usr/sbin/nginx";
	std::string ip;
	int launches = kDefaultLaunches;
	int teardowns = kDefaultTeardowns;
	int sandboxes = kDefaultSandboxes;
	int requests = kDefaultRequests;
	double seconds = kDefaultSeconds;
	int connections = kDefaultConnections;
	int bulkRuns = kDefaultBulkRuns;
	bool json = false;
};

// --- Small helpers -----------------------------------------------------------

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double maximum(const std::vector<double> &v) { return v.empty() ? 0 : *std::max_element(v.begin(), v.end()); }

// How many blocks a keep-alive leg of `legSeconds` per path runs in.
int keepAliveBlocks(double legSeconds)
{
	return std::max(kMinKeepAliveBlocks, static_cast<int>(std::lround(legSeconds / kKeepAliveBlockSeconds)));
}

const char *verdict(bool met) { return met ? "met" : "MISSED"; }

std::vector<double> loadAverage()
{
	double l[3] = {0, 0, 0};
	if (::getloadavg(l, 3) != 3)
		return {};
	return {l[0], l[1], l[2]};
}

std::string readText(const std::string &path)
{
	std::ifstream in(path);
	std::ostringstream s;
	s << in.rdbuf();
	return s.str();
}

// A "Name:   1234 kB" field of /proc/meminfo, in KiB.
int64_t meminfoKiB(const std::string &key)
{
	std::string text = readText("/proc/meminfo");
	size_t at = text.find("\n" + key + ":");
	if (at == std::string::npos)
		return 0;
	return std::strtoll(text.c_str() + at + key.size() + 2, nullptr, 10);
}

uint64_t pssKiB(pid_t pid)
{
	auto m = readProcessMemory(pid);
	return m ? m->pssKiB : 0;
}

std::string lastLines(const std::string &path, size_t bytes = 1500)
{
	std::string text = readText(path);
	return text.size() > bytes ? text.substr(text.size() - bytes) : text;
}

// The path of this program, copied into the sandboxes' workspace for
// agents to run (see the top of this file).
std::string selfPath()
{
	char buf[4096];
	ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// --- The environment: gvmd, policy, origin, client namespace -----------------

// How `gvmctl launch` runs an agent: the default, isolation on (network
// sandbox, overlay workspace, masks, private /tmp and /dev, Landlock,
// seccomp, cgroup); --network-only (the network sandbox alone); or
// --cooperative (no namespaces, proxy variables only).
enum class Mode { Isolated, NetworkOnly, Cooperative };
constexpr Mode kLaunchModes[] = {Mode::Isolated, Mode::NetworkOnly, Mode::Cooperative};
// The mode of legs 2 to 4: what `gvmctl launch` does unless told otherwise.
constexpr Mode kDefaultMode = Mode::Isolated;

const char *toString(Mode m)
{
	return m == Mode::Isolated ? "isolated" : m == Mode::NetworkOnly ? "network-only" : "cooperative";
}

const char *jsonKey(Mode m)
{
	return m == Mode::Isolated ? "isolated" : m == Mode::NetworkOnly ? "network_only" : "cooperative";
}

struct Bench {
	Options options;
	std::filesystem::path dir;
	std::string self;
	// The sandboxes' workspace (in dir), and the copy of this program in
	// it that agents run (see the top of this file).
	std::string workspace;
	std::string agent;
	std::string socket;
	std::string policy;
	std::unique_ptr<Process> gvmd;
	std::string gvmdLog;
	std::string gvmctlLog; // stderr of the gvmctl runs
	std::unique_ptr<NetnsHolder> clientNs;
	std::unique_ptr<NginxServer> origin;
	uint16_t originPort = 0;
	// Leg 4's nginx reverse proxy, or why it did not start: then its path
	// reports that error and the other paths still run.
	std::unique_ptr<NginxServer> nginxProxy;
	uint16_t nginxProxyPort = 0;
	std::string nginxProxyError;

	std::vector<std::string> gvmctl(std::vector<std::string> args) const
	{
		args.insert(args.begin(), {options.gvmctl, "--socket", socket});
		return args;
	}

	std::vector<std::string> launch(Mode mode, const std::vector<std::string> &command) const
	{
		std::vector<std::string> args = {"launch", "--policy", policy};
		// Both sandbox modes name the same workspace, so that the flag is
		// their only difference (gvmctl refuses one with --cooperative).
		if (mode != Mode::Cooperative)
			args.insert(args.end(), {"--workspace", workspace});
		if (mode == Mode::NetworkOnly)
			args.push_back("--network-only");
		if (mode == Mode::Cooperative)
			args.push_back("--cooperative");
		args.push_back("--");
		args.insert(args.end(), command.begin(), command.end());
		return gvmctl(args);
	}
};

std::string policyText()
{
	return std::string("version: 1\n"
			   "name: sandbox-bench\n"
			   "default: deny\n"
			   "upstream:\n"
			   "  allow_cidrs: [") + kClientCidr + "]\n"
	       "rules:\n"
	       "  - name: origin\n"
	       "    hosts: [" + kOriginName + "]\n"
	       "    action: allow\n";
}

std::string originConfig(const std::filesystem::path &dir, uint16_t port)
{
	std::string d = dir.string();
	std::string p = std::to_string(port);
	return nginxPreamble(dir, "origin") +
	       "  server {\n"
	       // Loopback for NginxServer's readiness check; the veth's host
	       // address for both clients (the worker dials it by name).
	       "    listen 127.0.0.1:" + p + " ssl;\n"
	       "    listen " + kHostAddress + ":" + p + " ssl;\n"
	       "    server_name " + kOriginName + ";\n"
	       "    root " + d + "/www;\n"
	       "    location / { }\n"
	       "  }\n"
	       "}\n";
}

// Where the nginx reverse proxy listens: loopback for NginxServer's
// readiness check, the veth's host address for the client in its
// namespace. It presents the origin's certificate (nginxPreamble's
// server.pem) and dials the origin where the worker does.
std::vector<std::string> nginxProxyListen(uint16_t port)
{
	return {"127.0.0.1:" + std::to_string(port), std::string(kHostAddress) + ":" + std::to_string(port)};
}

bool socketAccepts(const std::string &path)
{
	UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
	sockaddr_un addr{};
	addr.sun_family = AF_UNIX;
	if (!fd || path.size() >= sizeof(addr.sun_path))
		return false;
	std::memcpy(addr.sun_path, path.c_str(), path.size());
	return ::connect(fd.get(), reinterpret_cast<const sockaddr *>(&addr), sizeof(addr)) == 0;
}

Result<void> startGvmd(Bench &b)
{
	UniqueFd log(::open(b.gvmdLog.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
	if (!log)
		return fail(Error::fromErrno(errno, "creating " + b.gvmdLog));
	SpawnOptions s;
	s.argv = {b.options.gvmd,    "--socket",      b.socket,
		  "--runtime-dir",   (b.dir / "run").string(),
		  "--state-dir",     (b.dir / "state").string(),
		  "--upstream-ca",   (b.dir / "ca.pem").string(),
		  // Unused: the client dials the origin by address.
		  "--dns-upstream",  "127.0.0.1:53",
		  "--log-level",     "warning"};
	s.env = {"GVM_WORKER=" + b.options.worker};
	s.stdoutFd = log.get();
	s.stderrFd = log.get();
	// If the benchmark dies, gvmd stops its sandboxes as on any SIGTERM.
	s.deathSignal = SIGTERM;
	auto p = Process::spawn(s);
	if (!p)
		return fail(std::move(p).error());
	b.gvmd = std::move(*p);
	auto deadline = Clock::now() + kGvmdStartTimeout;
	while (!socketAccepts(b.socket)) {
		if (!b.gvmd->running())
			return fail(Error::internal("gvmd exited (" + b.gvmd->describe() + "): " + lastLines(b.gvmdLog)));
		if (Clock::now() >= deadline)
			return fail(Error::internal("gvmd does not answer on " + b.socket));
		std::this_thread::sleep_for(milliseconds(10));
	}
	return {};
}

// The direct client's namespace: a veth pair sbench0 (here, 10.252.0.1) -
// sbench1 (there, 10.252.0.2), the origin on the /30's host address.
Result<void> setUpClientNamespace(Bench &b)
{
	auto ns = NetnsHolder::create();
	if (!ns)
		return fail(std::move(ns).error());
	b.clientNs = std::move(*ns);
	const std::string &ip = b.options.ip;
	const std::string host = std::string(kHostAddress) + "/30";
	const std::string client = std::string(kClientAddress) + "/30";
	GVM_TRY_VOID(runTool({ip, "link", "add", kHostLink, "type", "veth", "peer", "name", kClientLink, "netns",
			      std::to_string(b.clientNs->pid())}),
		     "while creating the client's veth pair");
	GVM_TRY_VOID(runTool({ip, "addr", "add", host, "dev", kHostLink}), "while configuring " + std::string(kHostLink));
	GVM_TRY_VOID(runTool({ip, "link", "set", kHostLink, "up"}), "while configuring " + std::string(kHostLink));
	int fd = b.clientNs->fd();
	GVM_TRY_VOID(runTool({ip, "link", "set", "lo", "up"}, fd), "while configuring the client namespace");
	GVM_TRY_VOID(runTool({ip, "addr", "add", client, "dev", kClientLink}, fd),
		     "while configuring the client namespace");
	GVM_TRY_VOID(runTool({ip, "link", "set", kClientLink, "up"}, fd), "while configuring the client namespace");
	return {};
}

// --- Leg 1: launch time --------------------------------------------------------

struct LaunchFigures {
	std::map<Mode, std::vector<double>> ms;
	std::string error;

	const std::vector<double> &of(Mode m) const
	{
		static const std::vector<double> kNone;
		auto it = ms.find(m);
		return it == ms.end() ? kNone : it->second;
	}
	double p(Mode m, double pct) const { return percentile(of(m), pct); }
	bool targetMet(Mode m) const { return !of(m).empty() && p(m, 50) < kLaunchP50TargetMs; }
};

// One gvmctl launch of /bin/true, fork+exec to exit; the time in ms.
Result<double> timeLaunch(const Bench &b, Mode mode)
{
	UniqueFd err(::open(b.gvmctlLog.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
	SpawnOptions s;
	s.argv = b.launch(mode, {"/bin/true"});
	s.stderrFd = err.get();
	auto start = Clock::now();
	auto p = Process::spawn(s);
	if (!p)
		return fail(std::move(p).error());
	if (!(*p)->wait(kLaunchTimeout))
		return fail(Error::internal("gvmctl launch did not finish within " +
					    std::to_string(kLaunchTimeout.count()) + " ms"));
	double t = ms((*p)->exitedAt() - start);
	if ((*p)->exitCode() != 0)
		return fail(Error::internal("gvmctl launch " + (*p)->describe() + ": " + lastLines(b.gvmctlLog)));
	return t;
}

LaunchFigures runLaunches(const Bench &b)
{
	LaunchFigures f;
	constexpr size_t kModes = std::size(kLaunchModes);
	// Warm-ups: the first sandbox installs the host's nftables table, and
	// page caches fill.
	for (int i = 0; i < kLaunchWarmups && f.error.empty(); ++i)
		for (Mode m : kLaunchModes)
			if (auto r = timeLaunch(b, m); !r) {
				f.error = std::string(toString(m)) + " warm-up: " + r.error().message();
				break;
			}
	// Interleaved, so that a slow phase of a shared machine hits every
	// mode alike; each round starts one mode later, so that no mode always
	// follows the same one.
	for (int i = 0; i < b.options.launches && f.error.empty() && !interrupted(); ++i) {
		for (size_t k = 0; k < kModes; ++k) {
			Mode m = kLaunchModes[(static_cast<size_t>(i) + k) % kModes];
			auto r = timeLaunch(b, m);
			if (!r) {
				f.error = std::string(toString(m)) + ": " + r.error().message();
				break;
			}
			f.ms[m].push_back(*r);
		}
	}
	return f;
}

// --- Leg 2: teardown time ------------------------------------------------------

struct TeardownFigures {
	std::vector<double> linkGoneMs;     // agent exit -> RTM_DELLINK of gvm<id>
	std::vector<double> gvmctlReturnMs; // agent exit -> gvmctl exited
	int missedEvents = 0;               // deletions seen by polling instead
	std::string error;
};

Result<void> timeTeardown(const Bench &b, LinkWatcher &watcher, TeardownFigures *f)
{
	bool overflow = false;
	watcher.deleted(&overflow); // drop older events
	auto out = makePipe();
	if (!out)
		return fail(std::move(out).error());
	UniqueFd err(::open(b.gvmctlLog.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
	SpawnOptions s;
	s.argv = b.launch(kDefaultMode, {b.agent, "--agent-exit-after", std::to_string(kAgentLifetimeMs)});
	s.stdoutFd = out->write.get();
	s.stderrFd = err.get();
	auto p = Process::spawn(s);
	if (!p)
		return fail(std::move(p).error());
	out->write.reset();
	LineReader reader(std::move(out->read));

	auto first = reader.readLine(kLaunchTimeout);
	if (!first || first->compare(0, 8, "sandbox ") != 0)
		return fail(Error::internal("the agent did not report its sandbox: " + lastLines(b.gvmctlLog)));
	const std::string link = kGvmLinkPrefix + first->substr(8);
	if (!linkExists(link))
		return fail(Error::internal("no host link " + link + " while the agent runs"));

	std::optional<Clock::time_point> exited, gone;
	auto deadline = Clock::now() + seconds(kAgentLifetimeMs / 1000 + 1) + kTeardownTimeout;
	while (!(exited && gone)) {
		if (Clock::now() >= deadline)
			return fail(Error::internal(std::string(!exited ? "the agent did not report its exit"
									: "the link " + link + " was not deleted")));
		// The agent's pipe (until its end), the link events, and
		// gvmctl's pidfd (its exit time is taken when it happens).
		// A reaped process's pidfd stays readable: leave it out then.
		bool gvmctlRunning = (*p)->running();
		pollfd pfds[3] = {{watcher.fd(), POLLIN, 0},
				  {gvmctlRunning ? (*p)->pidfd() : -1, POLLIN, 0},
				  {reader.eof() ? -1 : reader.fd(), POLLIN, 0}};
		// The timeout only matters when an event was lost (ENOBUFS).
		int ready = ::poll(pfds, 3, 50);
		if (ready < 0 && errno != EINTR)
			return fail(Error::fromErrno(errno, "polling"));
		if (pfds[1].revents & POLLIN)
			(*p)->wait(milliseconds(0));
		if (pfds[2].revents & (POLLIN | POLLHUP)) {
			if (auto line = reader.readLine(milliseconds(0)); line && line->compare(0, 5, "exit ") == 0)
				exited = Clock::time_point(
					std::chrono::nanoseconds(std::strtoll(line->c_str() + 5, nullptr, 10)));
		}
		overflow = false;
		for (const std::string &name : watcher.deleted(&overflow))
			if (name == link && !gone)
				gone = Clock::now();
		if (!gone && (overflow || ready == 0) && !linkExists(link)) {
			gone = Clock::now();
			f->missedEvents++;
		}
	}
	if (!(*p)->wait(kTeardownTimeout))
		return fail(Error::internal("gvmctl did not exit after its agent"));
	if ((*p)->exitCode() != 0)
		return fail(Error::internal("gvmctl launch " + (*p)->describe() + ": " + lastLines(b.gvmctlLog)));
	f->linkGoneMs.push_back(ms(*gone - *exited));
	f->gvmctlReturnMs.push_back(ms((*p)->exitedAt() - *exited));
	return {};
}

TeardownFigures runTeardowns(const Bench &b)
{
	TeardownFigures f;
	auto watcher = LinkWatcher::create();
	if (!watcher) {
		f.error = watcher.error().message();
		return f;
	}
	for (int i = 0; i < b.options.teardowns && !interrupted(); ++i) {
		if (auto r = timeTeardown(b, **watcher, &f); !r) {
			f.error = r.error().message();
			break;
		}
	}
	return f;
}

// --- Leg 3: fifty sandboxes at once --------------------------------------------

struct MemoryGroup {
	size_t count = 0;
	uint64_t pssKiB = 0;
};

struct FiftyFigures {
	int requested = 0;
	int started = 0;
	std::vector<double> readyMs; // per sandbox, from the common start
	MemoryGroup workers, inits, agents;
	uint64_t gvmdPssBeforeKiB = 0, gvmdPssAfterKiB = 0;
	int64_t memAvailableDropKiB = 0; // machine-wide
	int64_t kernelGrowthKiB = 0;      // Slab + KernelStack + PageTables, machine-wide
	double stopAllMs = 0;
	size_t linksLeft = 0;
	int stopFailures = 0;
	std::string error;

	int64_t gvmdGrowthKiB() const
	{
		return static_cast<int64_t>(gvmdPssAfterKiB) - static_cast<int64_t>(gvmdPssBeforeKiB);
	}
	// gvm's own memory (workers, inits, gvmd growth), per sandbox.
	double gvmPerSandboxKiB() const
	{
		return started ? (static_cast<double>(workers.pssKiB + inits.pssKiB) + static_cast<double>(gvmdGrowthKiB())) /
					 started
			       : 0;
	}
	double allPerSandboxKiB() const
	{
		return started ? gvmPerSandboxKiB() + static_cast<double>(agents.pssKiB) / started : 0;
	}
};

// gvmd's descendants by kind: its workers (gvm-worker), the sandboxes'
// init processes (forks of gvmd) and the agents under them.
void measureDescendants(pid_t gvmd, FiftyFigures *f)
{
	std::map<pid_t, std::pair<pid_t, std::string>> procs; // pid -> (ppid, comm)
	if (DIR *d = ::opendir("/proc")) {
		while (dirent *e = ::readdir(d)) {
			pid_t pid = static_cast<pid_t>(std::strtol(e->d_name, nullptr, 10));
			if (pid <= 0)
				continue;
			std::string stat = readText("/proc/" + std::to_string(pid) + "/stat");
			size_t open = stat.find('('), close = stat.rfind(')');
			if (open == std::string::npos || close == std::string::npos || close + 4 >= stat.size())
				continue;
			pid_t ppid = static_cast<pid_t>(std::strtol(stat.c_str() + close + 4, nullptr, 10));
			procs[pid] = {ppid, stat.substr(open + 1, close - open - 1)};
		}
		::closedir(d);
	}
	std::vector<pid_t> frontier = {gvmd};
	while (!frontier.empty()) {
		pid_t parent = frontier.back();
		frontier.pop_back();
		for (const auto &[pid, info] : procs) {
			if (info.first != parent)
				continue;
			frontier.push_back(pid);
			// A sandbox's init is a fork of gvmd that names itself
			// gvm-init once the agent runs.
			MemoryGroup &g = info.second == "gvm-worker"                      ? f->workers
					 : info.second == "gvm-init" || info.second == "gvmd" ? f->inits
											      : f->agents;
			g.count++;
			g.pssKiB += pssKiB(pid);
		}
	}
}

FiftyFigures runFifty(const Bench &b)
{
	FiftyFigures f;
	f.requested = b.options.sandboxes;
	f.gvmdPssBeforeKiB = pssKiB(b.gvmd->pid());
	int64_t availableBefore = meminfoKiB("MemAvailable");
	auto kernelKiB = [] { return meminfoKiB("Slab") + meminfoKiB("KernelStack") + meminfoKiB("PageTables"); };
	int64_t kernelBefore = kernelKiB();

	struct Agent {
		std::unique_ptr<Process> gvmctl;
		std::unique_ptr<LineReader> out;
		std::string id;
	};
	std::vector<Agent> agents;
	const group *socketGroup = ::getgrnam(kSocketGroup);
	if (!socketGroup) {
		f.error = std::string("no group '") + kSocketGroup + "': the agents' uids could not use gvmd's socket";
		return f;
	}
	const gid_t gid = socketGroup->gr_gid;
	UniqueFd err(::open(b.gvmctlLog.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644));
	auto start = Clock::now();
	for (int i = 0; i < f.requested && f.error.empty(); ++i) {
		auto out = makePipe();
		if (!out) {
			f.error = out.error().message();
			break;
		}
		SpawnOptions s;
		s.argv = b.launch(kDefaultMode, {"/bin/sh", "-c", "echo \"$GVM_SANDBOX\"; exec sleep 600"});
		s.stdoutFd = out->write.get();
		s.stderrFd = err.get();
		s.credentials = {{kFirstAgentUid + static_cast<uid_t>(i / kSandboxesPerUid), gid}};
		auto p = Process::spawn(s);
		if (!p) {
			f.error = p.error().message();
			break;
		}
		agents.push_back({std::move(*p), std::make_unique<LineReader>(std::move(out->read)), {}});
	}
	// Wait for every agent's line, noting when each arrives.
	auto deadline = start + kFiftyTimeout;
	size_t pending = agents.size();
	while (pending > 0 && f.error.empty() && !interrupted()) {
		std::vector<pollfd> pfds;
		std::vector<Agent *> waiting;
		for (Agent &a : agents) {
			if (a.id.empty() && !a.out->eof()) {
				pfds.push_back({a.out->fd(), POLLIN, 0});
				waiting.push_back(&a);
			}
		}
		if (waiting.size() < pending) {
			f.error = "a sandbox did not start: " + lastLines(b.gvmctlLog);
			break;
		}
		auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
		if (left <= 0) {
			f.error = std::to_string(pending) + " sandboxes not running after " +
				  std::to_string(kFiftyTimeout.count()) + " ms";
			break;
		}
		if (::poll(pfds.data(), pfds.size(), static_cast<int>(left)) < 0 && errno != EINTR) {
			f.error = Error::fromErrno(errno, "polling the agents").message();
			break;
		}
		for (size_t i = 0; i < pfds.size(); ++i) {
			if (!(pfds[i].revents & (POLLIN | POLLHUP)))
				continue;
			auto line = waiting[i]->out->readLine(milliseconds(0));
			if (line && line->size() == 8) {
				waiting[i]->id = *line;
				f.readyMs.push_back(ms(Clock::now() - start));
				pending--;
			}
		}
	}
	f.started = static_cast<int>(f.readyMs.size());

	if (f.error.empty()) {
		std::this_thread::sleep_for(kSettle);
		measureDescendants(b.gvmd->pid(), &f);
		f.gvmdPssAfterKiB = pssKiB(b.gvmd->pid());
		f.memAvailableDropKiB = availableBefore - meminfoKiB("MemAvailable");
		f.kernelGrowthKiB = kernelKiB() - kernelBefore;
	}

	// Stop them all, as root, kStopConcurrency `gvmctl stop` at a time
	// (gvmd allows 16 clients per uid).
	auto stopStart = Clock::now();
	std::vector<std::unique_ptr<Process>> stops;
	auto reapStops = [&](size_t keep) {
		while (stops.size() > keep) {
			std::unique_ptr<Process> &first = stops.front();
			if (!first->wait(kStopGrace) || first->exitCode() != 0)
				f.stopFailures++;
			stops.erase(stops.begin());
		}
	};
	UniqueFd stopErr(::open(b.gvmctlLog.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
	for (Agent &a : agents) {
		if (a.id.empty())
			continue;
		reapStops(kStopConcurrency - 1);
		SpawnOptions s;
		s.argv = b.gvmctl({"stop", a.id});
		s.stderrFd = stopErr.get();
		auto p = Process::spawn(s);
		if (p)
			stops.push_back(std::move(*p));
		else
			f.stopFailures++;
	}
	reapStops(0);
	auto stopDeadline = Clock::now() + kStopGrace;
	for (Agent &a : agents)
		if (!a.gvmctl->wait(std::chrono::duration_cast<milliseconds>(stopDeadline - Clock::now())))
			a.gvmctl->stop(SIGTERM, kStopGrace);
	// The sandboxes' own links (gvmd may also hold one made ahead for the
	// next launch).
	auto linksOfAgents = [&] {
		size_t left = 0;
		for (const Agent &a : agents)
			if (!a.id.empty() && ::if_nametoindex((std::string(kGvmLinkPrefix) + a.id).c_str()) != 0)
				++left;
		return left;
	};
	while (linksOfAgents() > 0 && Clock::now() < stopDeadline)
		std::this_thread::sleep_for(milliseconds(1));
	f.stopAllMs = ms(Clock::now() - stopStart);
	f.linksLeft = linksOfAgents();
	if (f.error.empty() && f.stopFailures > 0)
		f.error = std::to_string(f.stopFailures) + " gvmctl stop failed: " + lastLines(b.gvmctlLog, 400);
	if (f.error.empty() && f.linksLeft > 0)
		f.error = std::to_string(f.linksLeft) + " gvm links left after stopping every sandbox";
	return f;
}

// --- Leg 4: transparent HTTPS ---------------------------------------------------

// Direct and NginxProxy run the client in the benchmark's plain namespace;
// Sandbox runs it as a gvm agent.
enum class Path { Direct, NginxProxy, Sandbox };
constexpr Path kPaths[] = {Path::Direct, Path::NginxProxy, Path::Sandbox};
const char *toString(Path p)
{
	return p == Path::Direct ? "direct" : p == Path::NginxProxy ? "nginx-proxy" : "sandbox";
}

struct HttpsFigures {
	std::map<Path, std::vector<double>> freshMs, tcpMs, tlsMs, getMs;
	std::map<Path, double> keepAlive; // requests/s
	std::map<Path, uint64_t> keepAliveRequests;
	std::map<Path, std::vector<double>> keepAliveBlockRates; // requests/s of each block, by round
	std::map<Path, std::vector<double>> bulk; // MB/s per run
	std::vector<std::string> errors;

	double bulkMedian(Path p) const { return bulk.count(p) ? percentile(bulk.at(p), 50) : 0; }
	double fresh(Path p, double pct) const { return freshMs.count(p) ? percentile(freshMs.at(p), pct) : 0; }
	double ka(Path p) const { return keepAlive.count(p) ? keepAlive.at(p) : 0; }
	// sandbox/nginx-proxy, what the throughput targets are about; 0 when
	// either path has no figure.
	double kaShare() const { return ratio(ka(Path::Sandbox), ka(Path::NginxProxy)); }
	double bulkShare() const { return ratio(bulkMedian(Path::Sandbox), bulkMedian(Path::NginxProxy)); }
	// sandbox/nginx-proxy of each round in which both paths ran a block:
	// how far single blocks move on the machine the benchmark runs on.
	std::vector<double> kaRoundShares() const
	{
		std::vector<double> out;
		if (!keepAliveBlockRates.count(Path::Sandbox) || !keepAliveBlockRates.count(Path::NginxProxy))
			return out;
		const auto &s = keepAliveBlockRates.at(Path::Sandbox);
		const auto &n = keepAliveBlockRates.at(Path::NginxProxy);
		for (size_t i = 0; i < std::min(s.size(), n.size()); ++i)
			out.push_back(ratio(s[i], n[i]));
		return out;
	}
};

// Runs this program as the client of one leg, along one path; its JSON.
Result<Json> runClientProcess(const Bench &b, Path path, ClientLeg leg, int requests, double legSeconds = 0)
{
	const Options &o = b.options;
	std::vector<std::string> client = {b.agent,
					   "--client",
					   toString(leg),
					   "--address",
					   kHostAddress,
					   "--port",
					   std::to_string(path == Path::NginxProxy ? b.nginxProxyPort : b.originPort),
					   "--name",
					   kOriginName,
					   "--ca",
					   path == Path::Sandbox ? kSandboxCaBundle : (b.dir / "ca.pem").string(),
					   "--requests",
					   std::to_string(requests),
					   "--warmup",
					   std::to_string(kFreshWarmup),
					   "--seconds",
					   std::to_string(legSeconds > 0 ? legSeconds : o.seconds),
					   "--connections",
					   std::to_string(o.connections),
					   "--bulk-runs",
					   std::to_string(o.bulkRuns)};
	auto out = makePipe();
	if (!out)
		return fail(std::move(out).error());
	UniqueFd err(::open(b.gvmctlLog.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
	SpawnOptions s;
	s.stdoutFd = out->write.get();
	s.stderrFd = err.get();
	if (path == Path::Sandbox) {
		s.argv = b.launch(kDefaultMode, client);
	} else {
		s.argv = client;
		s.netnsFd = b.clientNs->fd();
	}
	auto p = Process::spawn(s);
	if (!p)
		return fail(std::move(p).error());
	out->write.reset();
	LineReader reader(std::move(out->read));
	std::string text = reader.readAll(kClientTimeout);
	if (!(*p)->wait(kStopGrace))
		(*p)->stop(SIGTERM, kStopGrace);
	Json j = Json::parse(text, nullptr, false);
	if (j.is_discarded() || !j.is_object())
		return fail(Error::internal(std::string(toString(path)) + " client (" + (*p)->describe() +
					    ") wrote no result: " + lastLines(b.gvmctlLog)));
	if (j.value("error", std::string()) != "")
		return fail(Error::internal(std::string(toString(path)) + " " + toString(leg) + ": " +
					    j.value("error", std::string())));
	return j;
}

HttpsFigures runHttps(const Bench &b)
{
	HttpsFigures f;
	// The paths that can be measured: without its reverse proxy,
	// nginx-proxy is one error and the others run as usual.
	std::vector<Path> paths;
	for (Path p : kPaths) {
		if (p == Path::NginxProxy && !b.nginxProxy)
			f.errors.push_back(std::string(toString(p)) + ": " + b.nginxProxyError);
		else
			paths.push_back(p);
	}
	auto append = [](std::vector<double> &to, const Json &from) {
		if (from.is_array())
			for (const Json &v : from)
				to.push_back(v.get<double>());
	};
	// Fresh connections, in blocks alternating the paths.
	for (int block = 0; block < kFreshBlocks && !interrupted(); ++block) {
		int count = b.options.requests / kFreshBlocks + (block < b.options.requests % kFreshBlocks ? 1 : 0);
		for (Path p : paths) {
			auto j = runClientProcess(b, p, ClientLeg::Fresh, count);
			if (!j) {
				f.errors.push_back(j.error().message());
				continue;
			}
			append(f.freshMs[p], (*j)["total_ms"]);
			append(f.tcpMs[p], (*j)["tcp_ms"]);
			append(f.tlsMs[p], (*j)["tls_ms"]);
			append(f.getMs[p], (*j)["get_ms"]);
		}
	}
	// Keep-alive, in blocks with the paths taking turns in an order that
	// rotates each round, so that load from outside the benchmark weighs
	// on every path alike.
	std::map<Path, double> keepAliveSeconds;
	std::set<Path> keepAliveFailed;
	const int blocks = keepAliveBlocks(b.options.seconds);
	for (int block = 0; block < blocks && !interrupted(); ++block) {
		for (size_t turn = 0; turn < paths.size(); ++turn) {
			const Path p = paths[(turn + static_cast<size_t>(block)) % paths.size()];
			if (keepAliveFailed.count(p))
				continue;
			auto j = runClientProcess(b, p, ClientLeg::KeepAlive, 0, b.options.seconds / blocks);
			if (!j) {
				f.errors.push_back(j.error().message());
				keepAliveFailed.insert(p);
				continue;
			}
			const uint64_t requests = (*j).value("requests", uint64_t{0});
			const double blockSeconds = (*j).value("seconds", 0.0);
			f.keepAliveRequests[p] += requests;
			keepAliveSeconds[p] += blockSeconds;
			f.keepAliveBlockRates[p].push_back(blockSeconds > 0 ? static_cast<double>(requests) / blockSeconds : 0);
		}
	}
	for (Path p : paths)
		if (!keepAliveFailed.count(p) && keepAliveSeconds[p] > 0)
			f.keepAlive[p] = static_cast<double>(f.keepAliveRequests[p]) / keepAliveSeconds[p];
	for (Path p : paths) {
		if (interrupted())
			break;
		auto j = runClientProcess(b, p, ClientLeg::Bulk, 0);
		if (!j) {
			f.errors.push_back(j.error().message());
			continue;
		}
		append(f.bulk[p], (*j)["mb_per_second"]);
	}
	return f;
}

// --- Report ----------------------------------------------------------------------

struct Figures {
	long cpus = 0;
	std::vector<double> loadStart, loadEnd;
	LaunchFigures launch;
	TeardownFigures teardown;
	FiftyFigures fifty;
	HttpsFigures https;
	std::string gvmdExit;
	std::vector<std::string> notes;
};

Json distribution(const std::vector<double> &v)
{
	return {{"n", v.size()},
		{"p50_ms", percentile(v, 50)},
		{"p90_ms", percentile(v, 90)},
		{"p95_ms", percentile(v, 95)},
		{"max_ms", maximum(v)},
		{"samples_ms", v}};
}

Json toJson(const Figures &f, const Options &o)
{
	Json out;
	out["machine"] = {{"cpus", f.cpus}, {"load_average_start", f.loadStart}, {"load_average_end", f.loadEnd}};
	out["config"] = {{"launches", o.launches},         {"launch_warmups", kLaunchWarmups},
			 {"teardowns", o.teardowns},       {"agent_lifetime_ms", kAgentLifetimeMs},
			 {"sandboxes", o.sandboxes},       {"sandboxes_per_uid", kSandboxesPerUid},       {"requests", o.requests},
			 {"fresh_warmup_per_block", kFreshWarmup}, {"fresh_blocks", kFreshBlocks},
			 {"keepalive_seconds", o.seconds},
			 {"keepalive_blocks", keepAliveBlocks(o.seconds)}, {"connections", o.connections},
			 {"bulk_bytes", kBulkBytes},       {"bulk_runs", o.bulkRuns}};
	const LaunchFigures &l = f.launch;
	out["launch"] = {{"default_mode", jsonKey(kDefaultMode)}};
	for (Mode m : kLaunchModes)
		out["launch"][jsonKey(m)] = distribution(l.of(m));
	// What isolation adds to the network sandbox, from the same run.
	out["launch"]["isolated_over_network_only"] = {
		{"p50", ratio(l.p(Mode::Isolated, 50), l.p(Mode::NetworkOnly, 50))},
		{"p95", ratio(l.p(Mode::Isolated, 95), l.p(Mode::NetworkOnly, 95))},
		{"p50_difference_ms", l.p(Mode::Isolated, 50) - l.p(Mode::NetworkOnly, 50)}};
	out["launch"]["target_p50_ms"] = kLaunchP50TargetMs;
	out["launch"]["target_met"] = l.targetMet(kDefaultMode);
	out["launch"]["target_met_network_only"] = l.targetMet(Mode::NetworkOnly);
	out["launch"]["error"] = l.error;
	out["teardown"] = {{"mode", jsonKey(kDefaultMode)},
			   {"link_deleted", distribution(f.teardown.linkGoneMs)},
			   {"gvmctl_returned", distribution(f.teardown.gvmctlReturnMs)},
			   {"deletions_seen_by_polling", f.teardown.missedEvents},
			   {"error", f.teardown.error}};
	const FiftyFigures &s = f.fifty;
	auto group = [](const MemoryGroup &g) { return Json{{"processes", g.count}, {"pss_kib", g.pssKiB}}; };
	out["fifty"] = {{"mode", jsonKey(kDefaultMode)},
			{"requested", s.requested},
			{"started", s.started},
			{"all_started_ms", s.readyMs.empty() ? 0.0 : maximum(s.readyMs)},
			{"memory",
			 {{"workers", group(s.workers)},
			  {"sandbox_inits", group(s.inits)},
			  {"agents", group(s.agents)},
			  {"gvmd_pss_before_kib", s.gvmdPssBeforeKiB},
			  {"gvmd_pss_after_kib", s.gvmdPssAfterKiB},
			  {"gvmd_growth_kib", s.gvmdGrowthKiB()},
			  {"gvm_per_sandbox_kib", s.gvmPerSandboxKiB()},
			  {"with_agent_per_sandbox_kib", s.allPerSandboxKiB()},
			  {"mem_available_drop_kib", s.memAvailableDropKiB},
			  {"kernel_slab_stack_pagetables_growth_kib", s.kernelGrowthKiB},
			  {"kernel_growth_per_sandbox_kib",
			   s.started ? static_cast<double>(s.kernelGrowthKiB) / s.started : 0.0},
			  {"mem_available_drop_per_sandbox_kib",
			   s.started ? static_cast<double>(s.memAvailableDropKiB) / s.started : 0.0}}},
			{"stop_all_ms", s.stopAllMs},
			{"links_left", s.linksLeft},
			{"error", s.error}};
	const HttpsFigures &h = f.https;
	out["https"]["sandbox_mode"] = jsonKey(kDefaultMode);
	for (Path p : kPaths) {
		auto get = [&](const std::map<Path, std::vector<double>> &m) {
			return m.count(p) ? percentile(m.at(p), 50) : 0.0;
		};
		out["https"]["fresh"][toString(p)] = {{"requests", h.freshMs.count(p) ? h.freshMs.at(p).size() : 0},
						      {"p50_ms", h.fresh(p, 50)},
						      {"p99_ms", h.fresh(p, 99)},
						      {"phase_p50_ms",
						       {{"tcp", get(h.tcpMs)}, {"tls", get(h.tlsMs)}, {"get", get(h.getMs)}}}};
		out["https"]["keepalive"][toString(p)] = {
			{"requests_per_second", h.ka(p)},
			{"requests", h.keepAliveRequests.count(p) ? h.keepAliveRequests.at(p) : 0},
			{"blocks_requests_per_second",
			 h.keepAliveBlockRates.count(p) ? h.keepAliveBlockRates.at(p) : std::vector<double>{}}};
		out["https"]["bulk"][toString(p)] = {{"mb_per_second", h.bulkMedian(p)},
						     {"runs_mb_per_second", h.bulk.count(p) ? h.bulk.at(p) : std::vector<double>{}}};
	}
	double freshRatio = ratio(h.fresh(Path::Sandbox, 50), h.fresh(Path::Direct, 50));
	out["https"]["ratios"] = {
		{"fresh_p50_sandbox_over_direct", freshRatio},
		{"fresh_p99_sandbox_over_direct", ratio(h.fresh(Path::Sandbox, 99), h.fresh(Path::Direct, 99))},
		{"fresh_p50_sandbox_over_nginx_proxy", ratio(h.fresh(Path::Sandbox, 50), h.fresh(Path::NginxProxy, 50))},
		{"fresh_p99_sandbox_over_nginx_proxy", ratio(h.fresh(Path::Sandbox, 99), h.fresh(Path::NginxProxy, 99))},
		{"keepalive_sandbox_over_direct", ratio(h.ka(Path::Sandbox), h.ka(Path::Direct))},
		{"keepalive_sandbox_over_nginx_proxy", h.kaShare()},
		{"keepalive_rounds_sandbox_over_nginx_proxy", h.kaRoundShares()},
		{"bulk_sandbox_over_direct", ratio(h.bulkMedian(Path::Sandbox), h.bulkMedian(Path::Direct))},
		{"bulk_sandbox_over_nginx_proxy", h.bulkShare()}};
	out["https"]["targets"] = {{"fresh_p50_ratio_max", kFreshP50Target},
				   {"fresh_p50_met", freshRatio > 0 && freshRatio <= kFreshP50Target},
				   {"keepalive_share_min", kThroughputTarget},
				   {"keepalive_met", h.kaShare() >= kThroughputTarget},
				   {"bulk_share_min", kThroughputTarget},
				   {"bulk_met", h.bulkShare() >= kThroughputTarget}};
	out["https"]["errors"] = h.errors;
	out["gvmd_exit"] = f.gvmdExit;
	out["notes"] = f.notes;
	return out;
}

void printTable(const Figures &f, const Options &o)
{
	std::ostream &out = std::cout;
	auto row = [&](const std::vector<std::string> &cells, const std::vector<size_t> &widths) {
		for (size_t i = 0; i < cells.size(); ++i)
			out << pad(cells[i], widths[i], i == 0) << (i + 1 < cells.size() ? "  " : "\n");
	};
	auto load = [](const std::vector<double> &l) {
		return l.size() == 3 ? fixed(l[0], 2) + " " + fixed(l[1], 2) + " " + fixed(l[2], 2) : std::string("?");
	};
	out << "gvm sandbox benchmark (" << f.cpus << " CPUs; load average " << load(f.loadStart) << " at start, "
	    << load(f.loadEnd) << " at end)\n"
	    << "gvmd, its workers and the origin run in the benchmark's own network namespace\n\n";

	const LaunchFigures &l = f.launch;
	const std::vector<size_t> w1 = {16, 8, 8, 8, 8};
	out << "1. Launch: `gvmctl launch -- /bin/true`, fork+exec to exit (" << o.launches
	    << " per mode, interleaved in rotating order, after " << kLaunchWarmups << " warm-ups each)\n"
	    << "   isolated: the default (network sandbox, overlay workspace, masks, private /tmp and /dev,\n"
	    << "   Landlock, seccomp, cgroup); network-only: --network-only (the network sandbox alone)\n";
	row({"mode", "p50 ms", "p90 ms", "p95 ms", "max ms"}, w1);
	for (Mode m : kLaunchModes)
		row({toString(m), fixed(l.p(m, 50), 1), fixed(l.p(m, 90), 1), fixed(l.p(m, 95), 1),
		     fixed(maximum(l.of(m)), 1)},
		    w1);
	double isolated50 = l.p(Mode::Isolated, 50), networkOnly50 = l.p(Mode::NetworkOnly, 50);
	out << "   isolated/network-only: p50 " << fixed(ratio(isolated50, networkOnly50), 2) << "x ("
	    << (isolated50 >= networkOnly50 ? "+" : "") << fixed(isolated50 - networkOnly50, 1) << " ms), p95 "
	    << fixed(ratio(l.p(Mode::Isolated, 95), l.p(Mode::NetworkOnly, 95)), 2) << "x\n"
	    << "   p50 target < " << fixed(kLaunchP50TargetMs, 0) << " ms: isolated (the default) "
	    << verdict(l.targetMet(Mode::Isolated)) << ", network-only " << verdict(l.targetMet(Mode::NetworkOnly))
	    << "\n\n";

	out << "2. Teardown: from the agent's exit (" << o.teardowns << " " << toString(kDefaultMode)
	    << " agents living " << kAgentLifetimeMs << " ms)\n";
	const std::vector<size_t> w2 = {30, 8, 8};
	row({"until", "p50 ms", "max ms"}, w2);
	row({"host link gvm<id> deleted", fixed(percentile(f.teardown.linkGoneMs, 50), 1),
	     fixed(maximum(f.teardown.linkGoneMs), 1)},
	    w2);
	row({"gvmctl launch exited", fixed(percentile(f.teardown.gvmctlReturnMs, 50), 1),
	     fixed(maximum(f.teardown.gvmctlReturnMs), 1)},
	    w2);
	if (f.teardown.missedEvents > 0)
		out << "   (" << f.teardown.missedEvents << " deletions seen by polling, +-50 ms)\n";
	out << "\n";

	const FiftyFigures &s = f.fifty;
	out << "3. " << s.requested << " " << toString(kDefaultMode) << " sandboxes at once (`sleep 600` agents): "
	    << s.started << " running after "
	    << fixed(s.readyMs.empty() ? 0 : maximum(s.readyMs), 0) << " ms ("
	    << fixed(s.started ? maximum(s.readyMs) / s.started : 0, 1) << " ms per sandbox; each running after p50 "
	    << fixed(percentile(s.readyMs, 50), 0) << " ms)\n"
	    << "   (launched as " << (s.requested + kSandboxesPerUid - 1) / kSandboxesPerUid << " unprivileged uids, "
	    << kSandboxesPerUid << " each: gvmd allows 16 clients and 32 sandboxes per uid)\n";
	const std::vector<size_t> w3 = {34, 10, 12};
	row({"memory (Pss, KiB)", "total", "per sandbox"}, w3);
	auto per = [&](double kib) { return fixed(s.started ? kib / s.started : 0, 0); };
	auto groupRow = [&](const std::string &name, const MemoryGroup &g) {
		row({name + " (" + std::to_string(g.count) + ")", std::to_string(g.pssKiB),
		     per(static_cast<double>(g.pssKiB))},
		    w3);
	};
	groupRow("workers", s.workers);
	groupRow("sandbox inits", s.inits);
	groupRow("agents (sleep)", s.agents);
	row({"gvmd Pss change (" + std::to_string(s.gvmdPssBeforeKiB) + " -> " + std::to_string(s.gvmdPssAfterKiB) + ")",
	     std::to_string(s.gvmdGrowthKiB()), per(static_cast<double>(s.gvmdGrowthKiB()))},
	    w3);
	row({"gvm (workers + inits + gvmd)", "", fixed(s.gvmPerSandboxKiB(), 0)}, w3);
	row({"gvm + agent", "", fixed(s.allPerSandboxKiB(), 0)}, w3);
	out << "   (gvmd's Pss falls as the inits, forks of gvmd, share its pages: the sum is what counts)\n";
	out << "   machine-wide, so other load on the machine shows too:\n";
	row({"kernel Slab+KernelStack+PageTables", std::to_string(s.kernelGrowthKiB),
	     per(static_cast<double>(s.kernelGrowthKiB))},
	    w3);
	row({"MemAvailable drop", std::to_string(s.memAvailableDropKiB),
	     per(static_cast<double>(s.memAvailableDropKiB))},
	    w3);
	out << "   stop all (gvmctl stop x" << s.started << ", " << kStopConcurrency
	    << " at a time) until every link is gone: "
	    << fixed(s.stopAllMs, 0) << " ms; links left: " << s.linksLeft << "\n\n";

	const HttpsFigures &h = f.https;
	out << "4. Transparent HTTPS to " << kOriginName << " (" << kHostAddress
	    << "), direct netns vs nginx-proxy vs " << toString(kDefaultMode)
	    << " gvm sandbox (no proxy variables used)\n"
	    << "   nginx-proxy: from the direct netns to an nginx TLS reverse proxy beside the origin, with pooled\n"
	    << "   keep-alive TLS to it (proxy-bench's nginx-proxy: the floor for two TLS legs)\n";
	out << "   fresh TCP+TLS 1.3 connection per GET /1k (" << o.requests << " per path in " << kFreshBlocks
	    << " alternating blocks, " << kFreshWarmup << " warm-up each)\n";
	const std::vector<size_t> w4 = {12, 8, 8, 8, 8, 8};
	row({"path", "p50 ms", "p99 ms", "tcp", "TLS", "GET"}, w4);
	for (Path p : kPaths) {
		auto p50of = [&](const std::map<Path, std::vector<double>> &m) {
			return fixed(m.count(p) ? percentile(m.at(p), 50) : 0, 3);
		};
		row({toString(p), fixed(h.fresh(p, 50), 3), fixed(h.fresh(p, 99), 3), p50of(h.tcpMs), p50of(h.tlsMs),
		     p50of(h.getMs)},
		    w4);
	}
	double fr = ratio(h.fresh(Path::Sandbox, 50), h.fresh(Path::Direct, 50));
	out << "   (tcp/TLS/GET: p50 ms of each step)\n"
	    << "   sandbox/direct      p50 " << fixed(fr, 2) << "x  p99 "
	    << fixed(ratio(h.fresh(Path::Sandbox, 99), h.fresh(Path::Direct, 99)), 2) << "x   target p50 <= "
	    << fixed(kFreshP50Target, 1) << "x: " << verdict(fr > 0 && fr <= kFreshP50Target) << "\n"
	    << "   sandbox/nginx-proxy p50 " << fixed(ratio(h.fresh(Path::Sandbox, 50), h.fresh(Path::NginxProxy, 50)), 2)
	    << "x  p99 " << fixed(ratio(h.fresh(Path::Sandbox, 99), h.fresh(Path::NginxProxy, 99)), 2) << "x\n";
	// The throughput lines: each path's figure, then the sandbox's ratios
	// and the target on the one against nginx-proxy.
	auto shares = [&](double overDirect, double share) {
		out << "     sandbox/direct " << fixed(overDirect, 2) << "x   sandbox/nginx-proxy " << fixed(share, 2)
		    << "x   target >= " << fixed(kThroughputTarget, 2) << "x: " << verdict(share >= kThroughputTarget)
		    << "\n";
	};
	out << "   keep-alive GET /1k, " << o.connections << " connections, " << fixed(o.seconds, 1) << " s in "
	    << keepAliveBlocks(o.seconds) << " alternating blocks: direct " << fixed(h.ka(Path::Direct), 0) << " req/s, nginx-proxy "
	    << fixed(h.ka(Path::NginxProxy), 0) << " req/s, sandbox " << fixed(h.ka(Path::Sandbox), 0) << " req/s\n";
	shares(ratio(h.ka(Path::Sandbox), h.ka(Path::Direct)), h.kaShare());
	if (const std::vector<double> rounds = h.kaRoundShares(); !rounds.empty())
		out << "     sandbox/nginx-proxy by round: median " << fixed(percentile(rounds, 50), 2) << "x, range "
		    << fixed(*std::min_element(rounds.begin(), rounds.end()), 2) << "x to " << fixed(maximum(rounds), 2)
		    << "x over " << rounds.size() << " rounds (how far single blocks move on this machine)\n";
	out << "   bulk GET of 256 MiB (MB = 10^6 B, median of " << o.bulkRuns << "): direct "
	    << fixed(h.bulkMedian(Path::Direct), 0) << " MB/s, nginx-proxy " << fixed(h.bulkMedian(Path::NginxProxy), 0)
	    << " MB/s, sandbox " << fixed(h.bulkMedian(Path::Sandbox), 0) << " MB/s\n";
	shares(ratio(h.bulkMedian(Path::Sandbox), h.bulkMedian(Path::Direct)), h.bulkShare());
	out << "   (keep-alive and bulk targets are against nginx-proxy, which terminates TLS on both legs as the\n"
	    << "    worker does; direct has one TLS leg and is shown for reference)\n\n";

	out << "gvmd stopped: " << f.gvmdExit << "\n";
	for (const std::string &n : f.notes)
		out << "Note: " << n << "\n";
	if (!f.launch.error.empty())
		out << "ERROR launch: " << f.launch.error << "\n";
	if (!f.teardown.error.empty())
		out << "ERROR teardown: " << f.teardown.error << "\n";
	if (!f.fifty.error.empty())
		out << "ERROR fifty: " << f.fifty.error << "\n";
	for (const std::string &e : h.errors)
		out << "ERROR https: " << e << "\n";
}

// --- Main --------------------------------------------------------------------------

void usage(std::ostream &out)
{
	out << "Usage: sandbox-bench [--gvmd PATH] [--gvmctl PATH] [--worker PATH] [--nginx PATH] [--ip PATH]\n"
	       "                     [--launches N] [--teardowns N] [--sandboxes N] [--requests N]\n"
	       "                     [--seconds S] [--connections N] [--bulk-runs N] [--json]\n"
	       "--seconds: each path's keep-alive time (default 12), in turns of about 2 s.\n"
	       "Binaries: the options, else $GVM_GVMD, $GVM_GVMCTL, $GVM_WORKER. Run as root.\n";
}

bool parseOptions(int argc, char **argv, Options *o)
{
	auto env = [](const char *name) { return std::getenv(name) ? std::string(std::getenv(name)) : std::string(); };
	o->gvmd = env("GVM_GVMD");
	o->gvmctl = env("GVM_GVMCTL");
	o->worker = env("GVM_WORKER");
	for (const char *ip : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"})
		if (o->ip.empty() && ::access(ip, X_OK) == 0)
			o->ip = ip;
	for (int i = 1; i < argc; ++i) {
		std::string arg = argv[i];
		auto value = [&]() -> const char * { return i + 1 < argc ? argv[++i] : nullptr; };
		auto number = [&](double lo, double hi, double *out) {
			const char *v = value();
			if (!v)
				return false;
			char *end = nullptr;
			double d = std::strtod(v, &end);
			if (*v == '\0' || *end != '\0' || !(d >= lo && d <= hi))
				return false;
			*out = d;
			return true;
		};
		std::map<std::string, std::string *> paths = {{"--gvmd", &o->gvmd}, {"--gvmctl", &o->gvmctl},
							      {"--worker", &o->worker}, {"--nginx", &o->nginx},
							      {"--ip", &o->ip}};
		double d = 0;
		if (paths.count(arg)) {
			const char *v = value();
			if (!v)
				return false;
			*paths[arg] = v;
		} else if (arg == "--launches" && number(1, kMaxLaunches, &d)) {
			o->launches = static_cast<int>(d);
		} else if (arg == "--teardowns" && number(1, kMaxLaunches, &d)) {
			o->teardowns = static_cast<int>(d);
		} else if (arg == "--sandboxes" && number(1, kMaxSandboxes, &d)) {
			o->sandboxes = static_cast<int>(d);
		} else if (arg == "--requests" && number(kFreshBlocks, kMaxRequests, &d)) {
			o->requests = static_cast<int>(d);
		} else if (arg == "--seconds" && number(0.1, kMaxSeconds, &d)) {
			o->seconds = d;
		} else if (arg == "--connections" && number(1, kMaxConnections, &d)) {
			o->connections = static_cast<int>(d);
		} else if (arg == "--bulk-runs" && number(1, kMaxBulkRuns, &d)) {
			o->bulkRuns = static_cast<int>(d);
		} else if (arg == "--json") {
			o->json = true;
		} else {
			return false;
		}
	}
	return !o->gvmd.empty() && !o->gvmctl.empty() && !o->worker.empty() && !o->ip.empty();
}

// `sandbox-bench --client LEG --address A --port P --name N --ca FILE ...`:
// one leg of the HTTPS client, its JSON on stdout.
int clientMain(int argc, char **argv)
{
	ClientOptions c;
	c.smallBytes = kSmallBytes;
	c.bulkBytes = kBulkBytes;
	std::string leg = argc > 2 ? argv[2] : "";
	c.leg = leg == "keepalive" ? ClientLeg::KeepAlive : leg == "bulk" ? ClientLeg::Bulk : ClientLeg::Fresh;
	for (int i = 3; i + 1 < argc; i += 2) {
		std::string k = argv[i], v = argv[i + 1];
		if (k == "--address")
			c.address = v;
		else if (k == "--port")
			c.port = static_cast<uint16_t>(std::stoi(v));
		else if (k == "--name")
			c.name = v;
		else if (k == "--ca")
			c.caFile = v;
		else if (k == "--requests")
			c.requests = std::stoi(v);
		else if (k == "--warmup")
			c.warmup = std::stoi(v);
		else if (k == "--seconds")
			c.seconds = std::stod(v);
		else if (k == "--connections")
			c.connections = std::stoi(v);
		else if (k == "--bulk-runs")
			c.bulkRuns = std::stoi(v);
	}
	std::cout << runClient(c).dump() << std::endl;
	return 0;
}

// `sandbox-bench --agent-exit-after MS`: the teardown leg's agent. Prints
// its sandbox id, lives MS ms, prints the CLOCK_MONOTONIC time (the clock
// of std::chrono::steady_clock, shared with the benchmark across pid
// namespaces) and exits at once.
int agentMain(int argc, char **argv)
{
	const char *id = std::getenv("GVM_SANDBOX");
	std::printf("sandbox %s\n", id ? id : "");
	std::fflush(stdout);
	std::this_thread::sleep_for(milliseconds(argc > 2 ? std::atoi(argv[2]) : kAgentLifetimeMs));
	timespec now{};
	::clock_gettime(CLOCK_MONOTONIC, &now);
	std::printf("exit %lld\n", static_cast<long long>(now.tv_sec) * 1000000000LL + now.tv_nsec);
	std::fflush(stdout);
	::_exit(0);
}

int run(const Options &o)
{
	auto fatal = [](const Error &e) {
		std::cerr << "sandbox-bench: " << e.message() << "\n";
		return 1;
	};
	Figures f;
	f.cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
	f.loadStart = loadAverage();

	// First, while single-threaded: our own mount and network namespaces
	// (see the top of this file).
	if (auto r = enterPrivateNamespaces({{kOriginName, kHostAddress}}); !r)
		return fatal(r.error());

	Bench b;
	b.options = o;
	b.self = selfPath();
	auto dir = TempDir::create("gvm-sandbox-bench");
	if (!dir)
		return fatal(dir.error());
	b.dir = (*dir)->path();
	// Everything under it must be reachable by the worker's user (the
	// upstream CA) and by agents (nothing else).
	::chmod(b.dir.c_str(), 0755);
	b.socket = (b.dir / "run" / "gvmd.sock").string();
	b.policy = (b.dir / "policy.yaml").string();
	b.gvmdLog = (b.dir / "gvmd.log").string();
	b.gvmctlLog = (b.dir / "gvmctl.log").string();

	auto pki = makeTestPki(kOriginName, kHostAddress);
	if (!pki)
		return fatal(pki.error());
	std::error_code ec;
	std::filesystem::create_directory(b.dir / "www", ec);

	// The workspace: not "/" (gvmd refuses it), readable by the fifty
	// leg's uids, and holding the agents' copy of this program.
	b.workspace = (b.dir / "workspace").string();
	b.agent = b.workspace + "/sandbox-bench";
	if (!std::filesystem::create_directory(b.workspace, ec) || ::chmod(b.workspace.c_str(), 0755) < 0)
		return fatal(Error::fromErrno(ec ? ec.value() : errno, "creating " + b.workspace));
	if (!std::filesystem::copy_file(b.self, b.agent, ec) || ::chmod(b.agent.c_str(), 0755) < 0)
		return fatal(Error::fromErrno(ec ? ec.value() : errno, "copying " + b.self + " to " + b.agent));
	for (auto r : {writeFile(b.dir / "ca.pem", pki->caPem),
		       writeFile(b.dir / "server.pem", pki->serverPem + pki->caPem),
		       writeFile(b.dir / "server.key", pki->serverKeyPem), writeFile(b.policy, policyText()),
		       writeFile(b.dir / "www" / "1k", std::string(kSmallBytes, 'x')),
		       makeSparseFile(b.dir / "www" / "256m", kBulkBytes)}) {
		if (!r)
			return fatal(r.error());
	}

	if (auto r = setUpClientNamespace(b); !r)
		return fatal(r.error());
	auto port = freeLoopbackPort();
	if (!port)
		return fatal(port.error());
	b.originPort = *port;
	auto origin = NginxServer::start(o.nginx, b.dir, "origin", originConfig(b.dir, b.originPort), b.originPort);
	if (!origin)
		return fatal(origin.error().wrap("while starting the origin nginx"));
	b.origin = std::move(*origin);
	// Started after the origin, so that the free port found is not the
	// origin's. Unlike the origin it is not essential: if it does not
	// start, leg 4 reports why for its path and runs the others.
	if (auto proxyPort = freeLoopbackPort(); !proxyPort) {
		b.nginxProxyError = proxyPort.error().message();
	} else {
		b.nginxProxyPort = *proxyPort;
		auto proxy = NginxServer::start(o.nginx, b.dir, "proxy",
						reverseProxyConfig(b.dir, nginxProxyListen(b.nginxProxyPort),
							   std::string(kHostAddress) + ":" + std::to_string(b.originPort),
							   kOriginName),
						b.nginxProxyPort);
		if (proxy)
			b.nginxProxy = std::move(*proxy);
		else
			b.nginxProxyError = proxy.error().wrap("while starting the nginx reverse proxy").message();
	}
	if (auto r = startGvmd(b); !r)
		return fatal(r.error().wrap("while starting gvmd"));

	if (!o.json)
		std::cerr << "sandbox-bench: gvmd pid " << b.gvmd->pid() << ", origin " << kHostAddress << ":"
			  << b.originPort << ", nginx-proxy "
			  << (b.nginxProxy ? kHostAddress + (":" + std::to_string(b.nginxProxyPort))
					   : std::string("not started"))
			  << "; running...\n";
	f.launch = runLaunches(b);
	if (!interrupted())
		f.teardown = runTeardowns(b);
	if (!interrupted())
		f.fifty = runFifty(b);
	if (!interrupted())
		f.https = runHttps(b);

	if (!b.gvmd->running())
		f.notes.push_back("gvmd exited during the run: " + lastLines(b.gvmdLog));
	f.gvmdExit = b.gvmd->stop(SIGTERM, kStopGrace);
	if (size_t left = countLinks(kGvmLinkPrefix); left > 0)
		f.notes.push_back(std::to_string(left) + " gvm links left after gvmd stopped");
	if (std::string log = lastLines(b.gvmdLog, 600); !log.empty())
		f.notes.push_back("gvmd log (end): " + log);
	f.loadEnd = loadAverage();

	if (o.json)
		std::cout << toJson(f, o).dump(2) << "\n";
	else
		printTable(f, o);
	if (interrupted()) {
		std::cerr << "sandbox-bench: interrupted; the figures are partial\n";
		return 130;
	}
	bool failed = !f.launch.error.empty() || !f.teardown.error.empty() || !f.fifty.error.empty() ||
		      !f.https.errors.empty();
	return failed ? 1 : 0;
}

} // namespace

int main(int argc, char **argv)
{
	std::string mode = argc > 1 ? argv[1] : "";
	if (mode == "--client")
		return clientMain(argc, argv);
	if (mode == "--agent-exit-after")
		return agentMain(argc, argv);

	Options options;
	if (!parseOptions(argc, argv, &options)) {
		usage(std::cerr);
		return 2;
	}
	if (::geteuid() != 0) {
		std::cerr << "sandbox-bench: needs root (namespaces, veth pairs, gvmd in sandbox mode); skipping\n";
		return 77;
	}
	std::signal(SIGPIPE, SIG_IGN);
	struct sigaction stop {};
	stop.sa_handler = onInterrupt;
	for (int sig : {SIGINT, SIGTERM, SIGHUP})
		::sigaction(sig, &stop, nullptr);
	return run(options);
}
