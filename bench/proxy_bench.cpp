// SPDX-License-Identifier: Apache-2.0
//
// The proxy benchmark: what the gvm-worker costs an agent, measured in one
// run against one local nginx origin, along three paths:
//
//   direct       client --TLS--> origin nginx
//   worker       client --CONNECT, TLS (sandbox CA)--> gvm-worker --TLS--> origin
//   nginx-proxy  client --TLS--> nginx reverse proxy --TLS (keepalive pool)--> origin
//
// The nginx reverse proxy is the engineering floor for a proxy that
// terminates TLS on both legs; the worker does the same work plus policy.
// Each nginx is its own single process (`master_process off`), so the
// reverse proxy, like the worker, is one process on one core in front of
// the same single-process origin.
//
// Legs: (1) a fresh TCP+TLS connection per GET /1k (the worker's leaf for
// "localhost" is cached by the warm-up), latency p50/p99; (2) keep-alive
// GET /1k on 8 persistent connections for ~3 s per path, in three blocks
// with the paths taking turns, requests/s; (3) one GET of
// a 256 MiB file, MB/s; (4) the worker's memory, idle after configure and
// at its high-water mark after the legs, with its largest mappings. The
// CPU time of every process (run time of its threads from /proc, the
// user/system split from /proc/PID/stat) is taken around each leg to show
// where time goes, and the client counts the reads each response took
// (a response split in more TLS records or segments costs more wake-ups).
//
// Targets (reported, not enforced): fresh-connection p50 <= 1.5x direct;
// keep-alive req/s and bulk MB/s >= 90% of the nginx reverse proxy; idle
// worker RSS < 6 MiB. The program exits 1 when a leg fails (an error, a
// status other than 200, a short body), 2 on bad usage.
//
// Usage: proxy-bench [--worker PATH] [--nginx PATH] [--requests N]
//                    [--seconds S] [--connections N] [--bulk-runs N]
//                    [--worker-log-level LEVEL] [--json]
// The worker is --worker, else $GVM_WORKER. Needs root (the worker
// confines itself to the gvm-proxy user).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <latch>
#include <malloc.h>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/proxy_client.h"
#include "bench/proxy_pki.h"
#include "bench/report.h"
#include "bench/proxy_servers.h"

namespace {

using namespace gvm;
using namespace gvm::bench;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

constexpr uint64_t kSmallBytes = 1024;
constexpr uint64_t kBulkBytes = 256ull * 1024 * 1024;
constexpr char kSmallPath[] = "/1k";
constexpr char kBulkPath[] = "/256m";

constexpr int kDefaultRequests = 300;
// Fresh connections per path before measuring: mints and caches the
// worker's leaf, fills the reverse proxy's upstream pool, warms caches.
constexpr int kWarmupRequests = 20;
// The fresh-connection leg alternates paths in this many blocks, so that a
// slow phase of a shared machine does not land on one path only.
constexpr int kFreshBlocks = 3;
// Blocks the keep-alive leg of each path is split into (runKeepAliveBlocks).
constexpr int kKeepAliveBlocks = 3;
constexpr double kDefaultSeconds = 3.0;
constexpr int kDefaultConnections = 8;
// Requests on each keep-alive connection before the clock starts.
constexpr int kKeepAliveWarmup = 5;
// Bounds on what the command line may ask for.
constexpr int kMaxRequests = 100000;
constexpr int kMaxConnections = 256;
constexpr double kMaxSeconds = 600;
constexpr int kMaxBulkRuns = 20;

// glibc malloc thresholds of this process (see main()).
constexpr int kClientTrimThreshold = 64 * 1024 * 1024;
constexpr int kClientMmapThreshold = 4 * 1024 * 1024;

// Targets of the issue.
constexpr double kFreshP50Target = 1.5;   // worker/direct, at most
constexpr double kThroughputTarget = 0.9; // worker/nginx-proxy, at least
constexpr uint64_t kIdleRssTargetKiB = 6 * 1024;

const char kPolicy[] = "version: 1\n"
		       "name: bench\n"
		       "default: allow\n"
		       "upstream:\n"
		       "  allow_cidrs: [127.0.0.0/8]\n"
		       "rules: []\n";

// Set by SIGINT/SIGTERM/SIGHUP: the legs stop early and everything
// started is still stopped and removed.
volatile std::sig_atomic_t gInterrupted = 0;

void onInterrupt(int) { gInterrupted = 1; }

bool interrupted() { return gInterrupted != 0; }

enum class Path { Direct, Worker, NginxProxy };
constexpr Path kPaths[] = {Path::Direct, Path::Worker, Path::NginxProxy};

const char *toString(Path path)
{
	switch (path) {
	case Path::Direct: return "direct";
	case Path::Worker: return "worker";
	case Path::NginxProxy: return "nginx-proxy";
	}
	return "?";
}

struct Options {
	std::string worker;
	std::string nginx = "/usr/sbin/nginx";
	int requests = kDefaultRequests;
	double seconds = kDefaultSeconds;
	int connections = kDefaultConnections;
	int bulkRuns = 1;
	std::string workerLogLevel = "warning";
	bool json = false;
};

// How to reach the origin along one path.
struct Target {
	Route route;
	SSL_CTX *ctx = nullptr;
	// Counts the complete 200 responses along this path (warm-ups too).
	std::atomic<uint64_t> *responses = nullptr;
};

// CPU time of one process over a stretch of the run: precise on-CPU time,
// and its user/system split at clock-tick resolution.
struct Cpu {
	double ms = 0;
	double userMs = 0, systemMs = 0;
	Cpu &operator+=(const Cpu &o)
	{
		ms += o.ms;
		userMs += o.userMs;
		systemMs += o.systemMs;
		return *this;
	}
	Cpu operator-(const Cpu &o) const { return {ms - o.ms, userMs - o.userMs, systemMs - o.systemMs}; }
	// The system share of the time, in percent.
	double systemPercent() const { return userMs + systemMs > 0 ? 100 * systemMs / (userMs + systemMs) : 0; }
};

// CPU time per process, accumulated over a leg.
struct CpuUse {
	Cpu client, worker, nginxProxy, origin;
	CpuUse &operator+=(const CpuUse &o)
	{
		client += o.client;
		worker += o.worker;
		nginxProxy += o.nginxProxy;
		origin += o.origin;
		return *this;
	}
};

// The processes measured, for CPU snapshots.
struct Processes {
	pid_t worker = 0, nginxProxy = 0, origin = 0;
};

using CpuSnapshot = CpuUse;

Cpu cpuOf(pid_t pid)
{
	auto cpu = readProcessCpu(pid);
	if (!cpu)
		return {};
	auto toMs = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
	return {toMs(cpu->onCpu), toMs(cpu->user), toMs(cpu->system)};
}

CpuSnapshot snapshot(const Processes &p)
{
	return {cpuOf(::getpid()), cpuOf(p.worker), cpuOf(p.nginxProxy), cpuOf(p.origin)};
}

CpuUse since(const CpuSnapshot &before, const Processes &p)
{
	CpuSnapshot after = snapshot(p);
	return {after.client - before.client, after.worker - before.worker, after.nginxProxy - before.nginxProxy,
		after.origin - before.origin};
}

double ms(std::chrono::nanoseconds d) { return std::chrono::duration<double, std::milli>(d).count(); }

// One GET that must answer 200 with a body of `bytes`.
Result<Response> fetch(HttpsConnection &connection, const Target &target, const char *path, uint64_t bytes)
{
	auto response = connection.get(path);
	if (!response)
		return response;
	if (response->status != 200)
		return fail(Error(ErrorDomain::Http, response->status,
				  std::string("GET ") + path + " answered " + std::to_string(response->status)));
	if (response->bodyBytes != bytes)
		return fail(Error(ErrorDomain::Http, 0,
				  std::string("GET ") + path + " returned " + std::to_string(response->bodyBytes) +
					  " bytes, not " + std::to_string(bytes)));
	if (target.responses)
		target.responses->fetch_add(1, std::memory_order_relaxed);
	return response;
}

// --- Leg 1: a fresh connection per request -------------------------------

struct FreshResult {
	std::vector<double> totalMs;
	std::vector<double> tcpMs, tunnelMs, handshakeMs, requestMs;
	CpuUse cpu;
	std::string error;
};

Result<void> freshRequest(const Target &t, FreshResult *out)
{
	OpenTimings timings;
	auto start = Clock::now();
	auto connection = HttpsConnection::open(t.ctx, t.route, &timings);
	if (!connection)
		return fail(std::move(connection).error());
	auto opened = Clock::now();
	GVM_TRY_VOID(fetch(**connection, t, kSmallPath, kSmallBytes), "while fetching");
	auto done = Clock::now();
	if (out) {
		out->totalMs.push_back(ms(done - start));
		out->tcpMs.push_back(ms(timings.tcp));
		out->tunnelMs.push_back(ms(timings.proxyConnect));
		out->handshakeMs.push_back(ms(timings.handshake));
		out->requestMs.push_back(ms(done - opened));
	}
	return {};
}

std::map<Path, FreshResult> runFresh(const std::map<Path, Target> &targets, const Processes &procs, int requests)
{
	std::map<Path, FreshResult> results;
	for (Path path : kPaths) {
		for (int i = 0; i < kWarmupRequests && results[path].error.empty() && !interrupted(); ++i) {
			if (auto r = freshRequest(targets.at(path), nullptr); !r)
				results[path].error = "warm-up: " + r.error().message();
		}
	}
	for (int block = 0; block < kFreshBlocks; ++block) {
		int count = requests / kFreshBlocks + (block < requests % kFreshBlocks ? 1 : 0);
		for (Path path : kPaths) {
			FreshResult &res = results[path];
			if (!res.error.empty())
				continue;
			CpuSnapshot before = snapshot(procs);
			for (int i = 0; i < count && !interrupted(); ++i) {
				if (auto r = freshRequest(targets.at(path), &res); !r) {
					res.error = r.error().message();
					break;
				}
			}
			res.cpu += since(before, procs);
		}
	}
	return results;
}

// --- Leg 2: keep-alive requests/s ----------------------------------------

struct KeepAliveResult {
	uint64_t requests = 0;
	uint64_t reconnects = 0;
	uint64_t reads = 0; // client reads that brought data, while measuring
	double seconds = 0;
	double perSecond = 0;
	CpuUse cpu;
	std::string error;
};

KeepAliveResult runKeepAlive(const Target &target, const Processes &procs, int connections, double seconds)
{
	KeepAliveResult result;
	std::latch ready(connections);
	std::atomic<bool> go{false};
	std::atomic<bool> failed{false};
	Clock::time_point start, deadline;
	std::vector<uint64_t> counts(static_cast<size_t>(connections), 0);
	std::vector<uint64_t> reconnects(static_cast<size_t>(connections), 0);
	std::vector<uint64_t> reads(static_cast<size_t>(connections), 0);
	std::vector<Clock::time_point> ends(static_cast<size_t>(connections));
	std::vector<std::string> errors(static_cast<size_t>(connections));

	auto body = [&](size_t index) {
		bool counted = false;
		auto arrive = [&] {
			if (!counted)
				ready.count_down();
			counted = true;
		};
		auto run = [&]() -> Result<void> {
			auto connection = HttpsConnection::open(target.ctx, target.route);
			if (!connection)
				return fail(std::move(connection).error());
			for (int i = 0; i < kKeepAliveWarmup; ++i)
				GVM_TRY_VOID(fetch(**connection, target, kSmallPath, kSmallBytes), "while warming up");
			arrive();
			go.wait(false);
			uint64_t readsBefore = (*connection)->reads();
			while (Clock::now() < deadline && !failed.load(std::memory_order_relaxed) && !interrupted()) {
				auto response = fetch(**connection, target, kSmallPath, kSmallBytes);
				if (!response)
					return fail(std::move(response).error().wrap(
						"after " + std::to_string(counts[index]) + " requests"));
				++counts[index];
				if (!response->keepAlive) {
					// The server ended the connection: open another.
					++reconnects[index];
					reads[index] += (*connection)->reads() - readsBefore;
					readsBefore = 0;
					connection = HttpsConnection::open(target.ctx, target.route);
					if (!connection)
						return fail(std::move(connection).error());
				}
			}
			reads[index] += (*connection)->reads() - readsBefore;
			return {};
		};
		if (auto r = run(); !r) {
			errors[index] = r.error().message();
			failed.store(true);
		}
		ends[index] = Clock::now();
		arrive();
	};

	std::vector<std::thread> threads;
	for (int i = 0; i < connections; ++i)
		threads.emplace_back(body, static_cast<size_t>(i));
	ready.wait();
	CpuSnapshot before = snapshot(procs);
	start = Clock::now();
	deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
	go.store(true);
	go.notify_all();
	for (std::thread &t : threads)
		t.join();
	result.cpu = since(before, procs);

	Clock::time_point last = start;
	for (size_t i = 0; i < counts.size(); ++i) {
		result.requests += counts[i];
		result.reconnects += reconnects[i];
		result.reads += reads[i];
		last = std::max(last, ends[i]);
		if (result.error.empty() && !errors[i].empty())
			result.error = "connection " + std::to_string(i) + ": " + errors[i];
	}
	result.seconds = std::chrono::duration<double>(last - start).count();
	result.perSecond = result.seconds > 0 ? static_cast<double>(result.requests) / result.seconds : 0;
	return result;
}

// The leg in kKeepAliveBlocks blocks per path, the paths taking turns in an
// order that rotates each round, so that load from outside the benchmark
// that comes and goes weighs on every path alike.
std::map<Path, KeepAliveResult> runKeepAliveBlocks(const std::map<Path, Target> &targets, const Processes &procs,
						   int connections, double seconds)
{
	std::map<Path, KeepAliveResult> results;
	constexpr size_t kCount = std::size(kPaths);
	for (int block = 0; block < kKeepAliveBlocks && !interrupted(); ++block) {
		for (size_t turn = 0; turn < kCount; ++turn) {
			const Path path = kPaths[(turn + static_cast<size_t>(block)) % kCount];
			KeepAliveResult &total = results[path];
			if (!total.error.empty())
				continue;
			KeepAliveResult part =
				runKeepAlive(targets.at(path), procs, connections, seconds / kKeepAliveBlocks);
			total.requests += part.requests;
			total.reconnects += part.reconnects;
			total.reads += part.reads;
			total.seconds += part.seconds;
			total.cpu += part.cpu;
			total.error = std::move(part.error);
		}
	}
	for (auto &[path, total] : results)
		total.perSecond = total.seconds > 0 ? static_cast<double>(total.requests) / total.seconds : 0;
	return results;
}

// --- Leg 3: bulk MB/s ------------------------------------------------------

struct BulkResult {
	std::vector<double> megabytesPerSecond; // one per run
	double median = 0;
	CpuUse cpu;
	std::string error;
};

BulkResult runBulk(const Target &target, const Processes &procs, int runs)
{
	BulkResult result;
	for (int i = 0; i < runs && result.error.empty() && !interrupted(); ++i) {
		auto connection = HttpsConnection::open(target.ctx, target.route);
		if (!connection) {
			result.error = connection.error().message();
			break;
		}
		CpuSnapshot before = snapshot(procs);
		auto start = Clock::now();
		auto response = fetch(**connection, target, kBulkPath, kBulkBytes);
		double seconds = std::chrono::duration<double>(Clock::now() - start).count();
		result.cpu += since(before, procs);
		if (!response) {
			result.error = response.error().message();
			break;
		}
		result.megabytesPerSecond.push_back(static_cast<double>(kBulkBytes) / 1e6 / seconds);
	}
	result.median = percentile(result.megabytesPerSecond, 50);
	return result;
}

// --- Setup -----------------------------------------------------------------

std::string originConfig(const std::filesystem::path &dir, uint16_t port)
{
	return nginxPreamble(dir, "origin") +
	       "  server {\n"
	       "    listen 127.0.0.1:" + std::to_string(port) + " ssl;\n"
	       "    server_name localhost;\n"
	       "    root " + dir.string() + "/www;\n"
	       "    location / { }\n"
	       "  }\n"
	       "}\n";
}

void usage(std::ostream &out)
{
	out << "Usage: proxy-bench [--worker PATH] [--nginx PATH] [--requests N] [--seconds S]\n"
	       "                   [--connections N] [--bulk-runs N] [--worker-log-level LEVEL] [--json]\n"
	       "The worker is --worker PATH, else $GVM_WORKER. Run as root.\n";
}

bool parseOptions(int argc, char **argv, Options *o)
{
	if (const char *env = std::getenv("GVM_WORKER"))
		o->worker = env;
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
		double d = 0;
		if (arg == "--worker" || arg == "--nginx" || arg == "--worker-log-level") {
			const char *v = value();
			if (!v)
				return false;
			(arg == "--worker" ? o->worker : arg == "--nginx" ? o->nginx : o->workerLogLevel) = v;
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
	return !o->worker.empty();
}

// --- Report ----------------------------------------------------------------

// Mappings of the idle worker shown in the report.
constexpr size_t kTopMappings = 8;

struct MemoryFigures {
	ProcessMemory idle;
	std::vector<MappingMemory> idleMappings; // the largest, by RSS
	ProcessMemory after;
	ProcessMemory nginxProxyAfter;
	ProcessMemory originAfter;
};

struct Figures {
	std::map<Path, FreshResult> fresh;
	std::map<Path, KeepAliveResult> keepAlive;
	std::map<Path, BulkResult> bulk;
	MemoryFigures memory;
	WorkerReport worker;
	uint64_t workerRequests = 0;
	std::string workerExit;
	std::vector<std::string> observations;
};

const char *verdict(bool met) { return met ? "met" : "MISSED"; }

// The proxy process of a path: the worker, the nginx reverse proxy, or
// none (all zero) for the direct path.
const Cpu &proxyCpu(Path path, const CpuUse &c)
{
	static const Cpu kNone;
	return path == Path::Worker ? c.worker : path == Path::NginxProxy ? c.nginxProxy : kNone;
}

// CPU of each process over a leg, per request (`per` requests) or per run.
Json cpuJson(Path path, const CpuUse &c, double per, const char *unit)
{
	auto scaled = [&](const Cpu &cpu) { return per > 0 ? cpu.ms * (unit[0] == 'u' ? 1000.0 : 1.0) / per : 0.0; };
	const Cpu &proxy = proxyCpu(path, c);
	return {{std::string("client_") + unit, scaled(c.client)},
		{std::string("proxy_") + unit, scaled(proxy)},
		{"proxy_system_percent", proxy.systemPercent()},
		{std::string("origin_") + unit, scaled(c.origin)}};
}

Json memoryJson(const ProcessMemory &m)
{
	return {{"vm_rss_kib", m.rssKiB}, {"vm_hwm_kib", m.hwmKiB}, {"pss_kib", m.pssKiB},
		{"private_dirty_kib", m.privateDirtyKiB}};
}

Json toJson(const Figures &f, const Options &o)
{
	Json out;
	out["config"] = {{"requests", o.requests},
			 {"warmup_requests", kWarmupRequests},
			 {"keepalive_seconds", o.seconds},
			 {"connections", o.connections},
			 {"bulk_bytes", kBulkBytes},
			 {"bulk_runs", o.bulkRuns}};
	for (Path p : kPaths) {
		const FreshResult &r = f.fresh.at(p);
		out["fresh"][toString(p)] = {
			{"requests", r.totalMs.size()},
			{"p50_ms", percentile(r.totalMs, 50)},
			{"p99_ms", percentile(r.totalMs, 99)},
			{"phase_p50_ms",
			 {{"tcp", percentile(r.tcpMs, 50)},
			  {"connect", percentile(r.tunnelMs, 50)},
			  {"tls", percentile(r.handshakeMs, 50)},
			  {"get", percentile(r.requestMs, 50)}}},
			{"cpu", cpuJson(p, r.cpu, static_cast<double>(r.totalMs.size()), "us_per_request")},
			{"error", r.error}};
		const KeepAliveResult &k = f.keepAlive.at(p);
		out["keepalive"][toString(p)] = {{"requests", k.requests},
						 {"seconds", k.seconds},
						 {"requests_per_second", k.perSecond},
						 {"reconnects", k.reconnects},
						 {"client_reads_per_response",
						  k.requests ? static_cast<double>(k.reads) / static_cast<double>(k.requests) : 0},
						 {"cpu", cpuJson(p, k.cpu, static_cast<double>(k.requests), "us_per_request")},
						 {"error", k.error}};
		const BulkResult &b = f.bulk.at(p);
		out["bulk"][toString(p)] = {{"mb_per_second", b.median},
					    {"runs_mb_per_second", b.megabytesPerSecond},
					    {"cpu", cpuJson(p, b.cpu, static_cast<double>(b.megabytesPerSecond.size()),
							    "ms_per_get")},
					    {"error", b.error}};
	}
	auto p50 = [&](Path p) { return percentile(f.fresh.at(p).totalMs, 50); };
	auto p99 = [&](Path p) { return percentile(f.fresh.at(p).totalMs, 99); };
	out["ratios"] = {
		{"fresh_p50_worker_over_direct", ratio(p50(Path::Worker), p50(Path::Direct))},
		{"fresh_p99_worker_over_direct", ratio(p99(Path::Worker), p99(Path::Direct))},
		{"fresh_p50_worker_over_nginx_proxy", ratio(p50(Path::Worker), p50(Path::NginxProxy))},
		{"fresh_p99_worker_over_nginx_proxy", ratio(p99(Path::Worker), p99(Path::NginxProxy))},
		{"keepalive_worker_over_direct",
		 ratio(f.keepAlive.at(Path::Worker).perSecond, f.keepAlive.at(Path::Direct).perSecond)},
		{"keepalive_worker_over_nginx_proxy",
		 ratio(f.keepAlive.at(Path::Worker).perSecond, f.keepAlive.at(Path::NginxProxy).perSecond)},
		{"bulk_worker_over_direct", ratio(f.bulk.at(Path::Worker).median, f.bulk.at(Path::Direct).median)},
		{"bulk_worker_over_nginx_proxy",
		 ratio(f.bulk.at(Path::Worker).median, f.bulk.at(Path::NginxProxy).median)}};
	out["worker_memory"] = {{"idle", memoryJson(f.memory.idle)}, {"after", memoryJson(f.memory.after)}};
	for (const MappingMemory &m : f.memory.idleMappings)
		out["worker_memory"]["idle_top_mappings"].push_back({{"name", m.name},
								     {"rss_kib", m.rssKiB},
								     {"pss_kib", m.pssKiB},
								     {"private_dirty_kib", m.privateDirtyKiB}});
	out["nginx_memory_after"] = {{"proxy", memoryJson(f.memory.nginxProxyAfter)},
				     {"origin", memoryJson(f.memory.originAfter)}};
	out["targets"] = {
		{"fresh_p50_ratio_max", kFreshP50Target},
		{"fresh_p50_met", ratio(p50(Path::Worker), p50(Path::Direct)) <= kFreshP50Target},
		{"keepalive_share_min", kThroughputTarget},
		{"keepalive_met", ratio(f.keepAlive.at(Path::Worker).perSecond,
					f.keepAlive.at(Path::NginxProxy).perSecond) >= kThroughputTarget},
		{"bulk_share_min", kThroughputTarget},
		{"bulk_met", ratio(f.bulk.at(Path::Worker).median, f.bulk.at(Path::NginxProxy).median) >=
				     kThroughputTarget},
		{"idle_rss_kib_max", kIdleRssTargetKiB},
		{"idle_rss_met", f.memory.idle.rssKiB < kIdleRssTargetKiB}};
	out["worker"] = {{"responses_200", f.workerRequests},
			 {"decisions", f.worker.decisions},
			 {"allowed_200", f.worker.allowed200},
			 {"anomalies", f.worker.anomalies},
			 {"exit", f.workerExit}};
	out["observations"] = f.observations;
	return out;
}

void printTable(const Figures &f, const Options &o)
{
	std::ostream &out = std::cout;
	auto row = [&](const std::vector<std::string> &cells, const std::vector<size_t> &widths) {
		for (size_t i = 0; i < cells.size(); ++i)
			out << pad(cells[i], widths[i], i == 0) << (i + 1 < cells.size() ? "  " : "\n");
	};
	auto p50 = [&](Path p) { return percentile(f.fresh.at(p).totalMs, 50); };
	auto p99 = [&](Path p) { return percentile(f.fresh.at(p).totalMs, 99); };

	out << "gvm proxy benchmark (" << std::thread::hardware_concurrency() << " CPUs; origin, reverse proxy and "
	    << "worker are one process each)\n\n";

	// CPU columns: per request (or per GET for bulk) of the client, the
	// proxy process and the origin, and the proxy's system-time share.
	auto cpuCells = [&](Path p, const CpuUse &c, double per, double scale, int decimals) {
		auto cell = [&](const Cpu &cpu) { return fixed(per > 0 ? cpu.ms * scale / per : 0, decimals); };
		const Cpu &proxy = proxyCpu(p, c);
		bool direct = p == Path::Direct;
		return std::vector<std::string>{cell(c.client), direct ? "-" : cell(proxy),
						direct ? "-" : fixed(proxy.systemPercent(), 0), cell(c.origin)};
	};
	auto join = [](std::vector<std::string> a, const std::vector<std::string> &b) {
		a.insert(a.end(), b.begin(), b.end());
		return a;
	};
	const std::vector<std::string> cpuHeads = {"client", "proxy", "sys%", "origin"};
	const std::vector<size_t> cpuWidths = {8, 8, 5, 8};

	out << "1. Fresh TCP+TLS 1.3 connection per GET /1k (" << o.requests << " per path after " << kWarmupRequests
	    << " warm-up; leaf cached)\n";
	std::vector<size_t> w1 = {12, 8, 8, 7, 8, 7, 7};
	w1.insert(w1.end(), cpuWidths.begin(), cpuWidths.end());
	row(join({"", "p50 ms", "p99 ms", "tcp", "CONNECT", "TLS", "GET"}, {"-- CPU us per request --"}),
	    {12, 8, 8, 7, 8, 7, 7, 32});
	row(join({"path", "", "", "", "", "", ""}, cpuHeads), w1);
	for (Path p : kPaths) {
		const FreshResult &r = f.fresh.at(p);
		row(join({toString(p), fixed(p50(p), 3), fixed(p99(p), 3), fixed(percentile(r.tcpMs, 50), 3),
			  fixed(percentile(r.tunnelMs, 50), 3), fixed(percentile(r.handshakeMs, 50), 3),
			  fixed(percentile(r.requestMs, 50), 3)},
			 cpuCells(p, r.cpu, static_cast<double>(r.totalMs.size()), 1000, 0)),
		    w1);
	}
	out << "   (tcp/CONNECT/TLS/GET: p50 ms of each step of a request)\n";
	out << "   worker/direct      p50 " << fixed(ratio(p50(Path::Worker), p50(Path::Direct)), 2) << "x  p99 "
	    << fixed(ratio(p99(Path::Worker), p99(Path::Direct)), 2) << "x   target p50 <= " << fixed(kFreshP50Target, 1)
	    << "x: " << verdict(ratio(p50(Path::Worker), p50(Path::Direct)) <= kFreshP50Target) << "\n";
	out << "   worker/nginx-proxy p50 " << fixed(ratio(p50(Path::Worker), p50(Path::NginxProxy)), 2) << "x  p99 "
	    << fixed(ratio(p99(Path::Worker), p99(Path::NginxProxy)), 2) << "x\n\n";

	out << "2. Keep-alive GET /1k, " << o.connections << " connections, " << fixed(o.seconds, 1) << " s\n";
	std::vector<size_t> w2 = {12, 9, 9, 10, 10};
	w2.insert(w2.end(), cpuWidths.begin(), cpuWidths.end());
	row({"", "", "", "", "reads per", "-- CPU us per request --"}, {12, 9, 9, 10, 10, 32});
	row(join({"path", "req/s", "requests", "reconnects", "response"}, cpuHeads), w2);
	for (Path p : kPaths) {
		const KeepAliveResult &k = f.keepAlive.at(p);
		double n = static_cast<double>(k.requests);
		row(join({toString(p), fixed(k.perSecond, 0), std::to_string(k.requests), std::to_string(k.reconnects),
			  fixed(n > 0 ? static_cast<double>(k.reads) / n : 0, 2)},
			 cpuCells(p, k.cpu, n, 1000, 1)),
		    w2);
	}
	double kaShare = ratio(f.keepAlive.at(Path::Worker).perSecond, f.keepAlive.at(Path::NginxProxy).perSecond);
	out << "   worker/direct " << fixed(ratio(f.keepAlive.at(Path::Worker).perSecond,
					       f.keepAlive.at(Path::Direct).perSecond), 2)
	    << "x   worker/nginx-proxy " << fixed(kaShare, 2) << "x   target >= " << fixed(kThroughputTarget, 2) << "x: "
	    << verdict(kaShare >= kThroughputTarget) << "\n\n";

	out << "3. Bulk GET of 256 MiB (MB = 10^6 bytes; median of " << o.bulkRuns << " run"
	    << (o.bulkRuns > 1 ? "s" : "") << ")\n";
	std::vector<size_t> w3 = {12, 9};
	w3.insert(w3.end(), cpuWidths.begin(), cpuWidths.end());
	row({"", "", "-- CPU ms per GET --"}, {12, 9, 32});
	row(join({"path", "MB/s"}, cpuHeads), w3);
	for (Path p : kPaths) {
		const BulkResult &b = f.bulk.at(p);
		row(join({toString(p), fixed(b.median, 0)},
			 cpuCells(p, b.cpu, static_cast<double>(b.megabytesPerSecond.size()), 1, 0)),
		    w3);
	}
	double bulkShare = ratio(f.bulk.at(Path::Worker).median, f.bulk.at(Path::NginxProxy).median);
	out << "   worker/direct " << fixed(ratio(f.bulk.at(Path::Worker).median, f.bulk.at(Path::Direct).median), 2)
	    << "x   worker/nginx-proxy " << fixed(bulkShare, 2) << "x   target >= " << fixed(kThroughputTarget, 2)
	    << "x: " << verdict(bulkShare >= kThroughputTarget) << "\n\n";

	out << "4. Memory (KiB)\n";
	std::vector<size_t> w4 = {26, 9, 9, 9, 14};
	row({"process", "VmRSS", "VmHWM", "Pss", "Private_Dirty"}, w4);
	auto memRow = [&](const char *name, const ProcessMemory &m) {
		row({name, std::to_string(m.rssKiB), std::to_string(m.hwmKiB), std::to_string(m.pssKiB),
		     std::to_string(m.privateDirtyKiB)},
		    w4);
	};
	memRow("worker, idle (configured)", f.memory.idle);
	memRow("worker, after all legs", f.memory.after);
	memRow("nginx-proxy, after", f.memory.nginxProxyAfter);
	memRow("origin nginx, after", f.memory.originAfter);
	out << "   largest mappings of the idle worker (RSS / Pss / Private_Dirty KiB):\n";
	for (const MappingMemory &m : f.memory.idleMappings)
		out << "     " << pad(std::to_string(m.rssKiB), 6) << " " << pad(std::to_string(m.pssKiB), 6) << " "
		    << pad(std::to_string(m.privateDirtyKiB), 6) << "  " << m.name << "\n";
	out << "   idle worker VmRSS " << fixed(static_cast<double>(f.memory.idle.rssKiB) / 1024, 2)
	    << " MiB, target < " << kIdleRssTargetKiB / 1024 << " MiB: " << verdict(f.memory.idle.rssKiB < kIdleRssTargetKiB)
	    << "\n\n";

	out << "Worker: " << f.worker.decisions << " decision records for " << f.workerRequests << " 200 responses ("
	    << f.worker.allowed200 << " allow/200); stopped: " << f.workerExit << "\n";
	for (const std::string &a : f.worker.anomalies)
		out << "   unexpected record: " << a << "\n";
	for (const std::string &obs : f.observations)
		out << "Note: " << obs << "\n";
	for (Path p : kPaths) {
		if (!f.fresh.at(p).error.empty())
			out << "ERROR fresh/" << toString(p) << ": " << f.fresh.at(p).error << "\n";
		if (!f.keepAlive.at(p).error.empty())
			out << "ERROR keep-alive/" << toString(p) << ": " << f.keepAlive.at(p).error << "\n";
		if (!f.bulk.at(p).error.empty())
			out << "ERROR bulk/" << toString(p) << ": " << f.bulk.at(p).error << "\n";
	}
}

int run(const Options &o)
{
	auto fatal = [](const Error &e) {
		std::cerr << "proxy-bench: " << e.message() << "\n";
		return 1;
	};

	auto dir = TempDir::create("gvm-proxy-bench");
	if (!dir)
		return fatal(dir.error());
	const std::filesystem::path &d = (*dir)->path();
	auto pki = makeTestPki();
	if (!pki)
		return fatal(pki.error());
	std::error_code ec;
	if (!std::filesystem::create_directory(d / "www", ec))
		return fatal(Error::fromErrno(ec.value(), "creating " + (d / "www").string()));
	for (auto r : {writeFile(d / "ca.pem", pki->caPem), writeFile(d / "server.pem", pki->serverPem + pki->caPem),
		       writeFile(d / "server.key", pki->serverKeyPem),
		       writeFile(d / "www" / "1k", std::string(kSmallBytes, 'x')),
		       makeSparseFile(d / "www" / "256m", kBulkBytes)}) {
		if (!r)
			return fatal(r.error());
	}

	auto originPort = freeLoopbackPort();
	auto proxyPort = freeLoopbackPort();
	if (!originPort || !proxyPort)
		return fatal(!originPort ? originPort.error() : proxyPort.error());
	if (*proxyPort == *originPort)
		return fatal(Error::internal("the kernel handed out the same free port twice"));
	auto origin = NginxServer::start(o.nginx, d, "origin", originConfig(d, *originPort), *originPort);
	if (!origin)
		return fatal(origin.error().wrap("while starting the origin nginx"));
	const std::string proxyConfig = reverseProxyConfig(d, {"127.0.0.1:" + std::to_string(*proxyPort)},
							   "127.0.0.1:" + std::to_string(*originPort), "localhost");
	auto nginxProxy = NginxServer::start(o.nginx, d, "proxy", proxyConfig, *proxyPort);
	if (!nginxProxy)
		return fatal(nginxProxy.error().wrap("while starting the nginx reverse proxy"));

	auto worker = WorkerProcess::start({o.worker, kPolicy, pki->caPem, o.workerLogLevel});
	if (!worker)
		return fatal(worker.error().wrap("while starting the worker"));
	Figures f;
	{
		auto idle = readProcessMemory((*worker)->pid());
		if (!idle)
			return fatal(idle.error());
		f.memory.idle = *idle;
		if (auto mappings = readMappingMemory((*worker)->pid())) {
			f.memory.idleMappings = std::move(*mappings);
			if (f.memory.idleMappings.size() > kTopMappings)
				f.memory.idleMappings.resize(kTopMappings);
		}
	}

	auto directCtx = makeClientContext(pki->caPem);
	auto workerCtx = makeClientContext((*worker)->caPem());
	if (!directCtx || !workerCtx)
		return fatal(!directCtx ? directCtx.error() : workerCtx.error().wrap("while trusting the sandbox CA"));
	std::atomic<uint64_t> workerResponses{0};
	std::map<Path, Target> targets;
	targets[Path::Direct] = {{*originPort, false, *originPort}, directCtx->get(), nullptr};
	targets[Path::Worker] = {{(*worker)->port(), true, *originPort}, workerCtx->get(), &workerResponses};
	targets[Path::NginxProxy] = {{*proxyPort, false, *proxyPort}, directCtx->get(), nullptr};
	Processes procs{(*worker)->pid(), (*nginxProxy)->pid(), (*origin)->pid()};

	if (!o.json)
		std::cerr << "proxy-bench: origin :" << *originPort << ", nginx-proxy :" << *proxyPort << ", worker :"
			  << (*worker)->port() << " (pid " << (*worker)->pid() << "); running...\n";

	f.fresh = runFresh(targets, procs, o.requests);
	f.keepAlive = runKeepAliveBlocks(targets, procs, o.connections, o.seconds);
	for (Path p : kPaths)
		f.bulk[p] = runBulk(targets.at(p), procs, o.bulkRuns);

	if (auto m = readProcessMemory((*worker)->pid()))
		f.memory.after = *m;
	else
		f.observations.push_back("worker memory after the legs: " + m.error().message());
	if (auto m = readProcessMemory((*nginxProxy)->pid()))
		f.memory.nginxProxyAfter = *m;
	if (auto m = readProcessMemory((*origin)->pid()))
		f.memory.originAfter = *m;

	f.workerRequests = workerResponses.load();

	bool workerAlive = (*worker)->running();
	f.workerExit = (*worker)->stop();
	if (!workerAlive)
		f.observations.push_back("the worker exited during the run");
	f.worker = (*worker)->report();
	if (f.worker.protocolError)
		f.observations.push_back("the worker wrote a control line that is not JSON");
	if (f.worker.decisions != f.workerRequests)
		f.observations.push_back("the worker recorded " + std::to_string(f.worker.decisions) +
					 " decisions for " + std::to_string(f.workerRequests) + " requests");
	if (f.workerExit != "exit 0")
		f.observations.push_back("the worker did not exit cleanly when its control channel closed: " +
					 f.workerExit);
	if (!(*origin)->running() || !(*nginxProxy)->running())
		f.observations.push_back("an nginx exited during the run");

	if (o.json)
		std::cout << toJson(f, o).dump(2) << "\n";
	else
		printTable(f, o);

	bool failed = false;
	for (Path p : kPaths)
		failed = failed || !f.fresh.at(p).error.empty() || !f.keepAlive.at(p).error.empty() ||
			 !f.bulk.at(p).error.empty();
	if (interrupted()) {
		std::cerr << "proxy-bench: interrupted; the figures are partial\n";
		return 130;
	}
	return failed ? 1 : 0;
}

} // namespace

int main(int argc, char **argv)
{
	Options options;
	if (!parseOptions(argc, argv, &options)) {
		usage(std::cerr);
		return 2;
	}
	// A peer that closes early is an error of the leg, not a reason to die.
	std::signal(SIGPIPE, SIG_IGN);
	struct sigaction stop {};
	stop.sa_handler = onInterrupt;
	for (int sig : {SIGINT, SIGTERM, SIGHUP})
		::sigaction(sig, &stop, nullptr);
	// The client must not be the bottleneck of what it measures. With
	// glibc's default (dynamic) thresholds, BoringSSL freeing its record
	// buffer after each read trims the top of the heap: a brk() shrink, a
	// TLB shootdown, and page faults when it grows back. Fixed thresholds
	// keep freed memory for reuse. (Only this process: children exec.)
	::mallopt(M_TRIM_THRESHOLD, kClientTrimThreshold);
	::mallopt(M_MMAP_THRESHOLD, kClientMmapThreshold);
	return run(options);
}
