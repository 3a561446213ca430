// SPDX-License-Identifier: Apache-2.0
//
// The processes the proxy benchmark runs and measures: nginx instances (the
// origin and the TLS-terminating reverse proxy) and a gvm-worker started by
// hand the way gvmd starts it (control socketpair, listening socket on a
// known descriptor, worker.configure). Everything lives in one TempDir and
// every process is stopped and reaped by its owner's destructor; children
// also get SIGKILL if the benchmark dies (PR_SET_PDEATHSIG).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <sys/types.h>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "common/unique_fd.h"

namespace gvm::bench {

// Waiting for a server to accept connections, or for a process to exit.
inline constexpr std::chrono::seconds kStartTimeout{10};
inline constexpr std::chrono::seconds kStopTimeout{5};
// Waiting for the worker's answer to worker.configure.
inline constexpr std::chrono::seconds kConfigureTimeout{10};

// A private directory under /tmp, removed with its contents on destruction.
class TempDir
{
public:
	static Result<std::unique_ptr<TempDir>> create(const std::string &prefix);
	~TempDir();
	const std::filesystem::path &path() const { return path_; }

private:
	explicit TempDir(std::filesystem::path path) : path_(std::move(path)) {}
	std::filesystem::path path_;
};

Result<void> writeFile(const std::filesystem::path &path, const std::string &content);
// A file of `size` bytes that takes no disk space (reads as zeros).
Result<void> makeSparseFile(const std::filesystem::path &path, uint64_t size);
// A loopback TCP port nobody listens on right now.
Result<uint16_t> freeLoopbackPort();

// A child process, SIGKILLed and reaped when its owner forgets it.
class ChildProcess
{
public:
	// Starts argv[0] with argv; the descriptors in `inherit` stay open
	// across exec (all others are close-on-exec).
	static Result<std::unique_ptr<ChildProcess>> spawn(const std::vector<std::string> &argv,
							    const std::vector<int> &inherit);
	~ChildProcess();

	pid_t pid() const { return pid_; }
	// True while the process has not exited (reaps it when it has).
	bool running();
	// Waits up to `timeout` for an exit; true when it exited.
	bool waitExit(std::chrono::milliseconds timeout);
	// Sends `signal` (when non-zero), waits up to kStopTimeout, then
	// SIGKILLs. Returns how it ended: "exit 0", "signal 9 (killed)"...
	std::string stop(int signal);
	int exitStatus() const { return status_; }

private:
	explicit ChildProcess(pid_t pid) : pid_(pid) {}
	pid_t pid_;
	bool reaped_ = false;
	int status_ = 0;
};

// A process's CPU time and memory, from /proc.
struct ProcessCpu {
	// Clock-tick resolution (/proc/PID/stat), threads that exited included.
	std::chrono::microseconds user{0};
	std::chrono::microseconds system{0};
	// Nanosecond resolution: the sum of the live threads' run time
	// (/proc/PID/task/*/schedstat), or getrusage() for this process.
	std::chrono::nanoseconds onCpu{0};
};
Result<ProcessCpu> readProcessCpu(pid_t pid);

struct ProcessMemory {
	uint64_t rssKiB = 0;          // VmRSS
	uint64_t hwmKiB = 0;          // VmHWM
	uint64_t pssKiB = 0;          // Pss (smaps_rollup)
	uint64_t privateDirtyKiB = 0; // Private_Dirty (smaps_rollup)
};
Result<ProcessMemory> readProcessMemory(pid_t pid);

// Memory per mapped object (a file, [heap], [stack], anonymous), from
// /proc/PID/smaps, largest RSS first.
struct MappingMemory {
	std::string name;
	uint64_t rssKiB = 0;
	uint64_t pssKiB = 0;
	uint64_t privateDirtyKiB = 0;
};
Result<std::vector<MappingMemory>> readMappingMemory(pid_t pid);

// One nginx, single process (`master_process off`) in the foreground, with
// its configuration, pid file, logs and temp paths inside one directory.
// The start of an nginx.conf for a benchmark server named `name` in dir:
// one foreground process, its pid and error log there, and an http block
// (keep-alive without a request cap, TLS with dir/server.pem and
// server.key) left open for the caller's server blocks and closing brace.
std::string nginxPreamble(const std::filesystem::path &dir, const std::string &name);

// The whole nginx.conf of a TLS-terminating reverse proxy named "proxy" in
// dir (the engineering floor for a proxy with two TLS legs): it listens
// with TLS on each of `listen` (ADDRESS:PORT), and passes every request to
// https://`upstream` (ADDRESS:PORT) over pooled keep-alive connections,
// verifying the upstream's certificate for `serverName` against dir/ca.pem.
std::string reverseProxyConfig(const std::filesystem::path &dir, const std::vector<std::string> &listen,
			       const std::string &upstream, const std::string &serverName);

class NginxServer
{
public:
	// `config` is the whole nginx.conf text; the server is ready when
	// 127.0.0.1:port accepts a connection.
	static Result<std::unique_ptr<NginxServer>> start(const std::string &binary,
							   const std::filesystem::path &prefix,
							   const std::string &name, const std::string &config,
							   uint16_t port);
	~NginxServer();
	pid_t pid() const { return process_->pid(); }
	uint16_t port() const { return port_; }
	bool running() { return process_->running(); }
	// The last lines of its error log (for error reports).
	std::string errorLogTail() const;

private:
	NginxServer(std::unique_ptr<ChildProcess> process, std::filesystem::path errorLog, uint16_t port)
		: process_(std::move(process)), errorLog_(std::move(errorLog)), port_(port)
	{
	}
	std::unique_ptr<ChildProcess> process_;
	std::filesystem::path errorLog_;
	uint16_t port_;
};

// What the worker reported on its control channel.
struct WorkerReport {
	uint64_t decisions = 0;
	uint64_t allowed200 = 0;            // action allow, status 200
	std::vector<std::string> anomalies; // the first few other decision records
	uint64_t otherNotifications = 0;
	bool protocolError = false; // a line that is not JSON
};

// A gvm-worker serving one explicit-proxy listener on 127.0.0.1, configured
// with a policy and an upstream CA. A thread drains its control socket for
// its whole life (decision notifications would otherwise fill the worker's
// output buffer and stall it).
class WorkerProcess
{
public:
	struct Options {
		std::string binary;
		std::string policyText;
		std::string upstreamCaPem;
		std::string logLevel = "warning";
	};
	static Result<std::unique_ptr<WorkerProcess>> start(const Options &options);
	~WorkerProcess();

	pid_t pid() const { return process_->pid(); }
	uint16_t port() const { return port_; }
	// The sandbox CA the worker intercepts with (from worker.configure).
	const std::string &caPem() const { return caPem_; }
	bool running() { return process_->running(); }
	WorkerReport report() const;
	// Closes the control channel (which tells the worker to stop) and reaps
	// it; SIGKILL after kStopTimeout. Returns how it ended.
	std::string stop();

private:
	WorkerProcess() = default;
	Result<nlohmann::json> call(const std::string &method, nlohmann::json params);
	void drain();
	void onLine(const std::string &line);

	std::unique_ptr<ChildProcess> process_;
	UniqueFd control_;
	uint16_t port_ = 0;
	std::string caPem_;
	std::thread drainer_;
	std::atomic<bool> stopping_{false};

	mutable std::mutex mutex_;
	std::condition_variable replied_;
	int64_t nextId_ = 1;
	std::optional<nlohmann::json> reply_; // the last answer to a call
	WorkerReport report_;
	bool channelClosed_ = false;
	std::string stopped_;
};

} // namespace gvm::bench
