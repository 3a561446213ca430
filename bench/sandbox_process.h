// SPDX-License-Identifier: Apache-2.0
//
// Processes and namespaces of the sandbox benchmark. The benchmark runs in a
// private mount and network namespace of its own (a private /etc/hosts, its
// own "host" network where gvmd makes its veth pairs and nftables table), so
// that it neither sees nor disturbs any other gvmd on the machine, and
// everything it made disappears with it. Every child it spawns is a Process:
// its exit is waited for through a pidfd (woken the moment it exits, which
// the launch timings need), and it is SIGKILLed and reaped when its owner
// forgets it. Single-threaded use only.
#pragma once

#include <chrono>
#include <csignal>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace gvm::bench {

using SteadyClock = std::chrono::steady_clock;

struct SpawnOptions {
	std::vector<std::string> argv; // argv[0] is a path (no PATH search)
	std::vector<std::string> env;  // NAME=value added to (or replacing in) ours
	// The child's stdin, stdout and stderr; -1 is /dev/null.
	int stdinFd = -1;
	int stdoutFd = -1;
	int stderrFd = -1;
	// When valid, the child joins this network namespace before exec.
	int netnsFd = -1;
	// Sent to the child when the benchmark dies (PR_SET_PDEATHSIG).
	int deathSignal = SIGKILL;
	// When set, the child runs in "/" as this uid, with this gid as its
	// only group.
	std::optional<std::pair<uid_t, gid_t>> credentials;
};

class Process
{
public:
	static Result<std::unique_ptr<Process>> spawn(const SpawnOptions &options);
	~Process();
	Process(const Process &) = delete;
	Process &operator=(const Process &) = delete;

	pid_t pid() const { return pid_; }
	// Readable once the process has exited (for poll()).
	int pidfd() const { return pidfd_.get(); }
	// Waits up to `timeout` for the exit, woken by the pidfd as soon as it
	// happens; true when the process has exited (and is reaped).
	bool wait(std::chrono::milliseconds timeout);
	bool running() { return !wait(std::chrono::milliseconds(0)); }
	// When wait() first saw the exit.
	SteadyClock::time_point exitedAt() const { return exitedAt_; }
	// The exit code, or 128+N for signal N; -1 while running.
	int exitCode() const;
	std::string describe() const;
	// Sends `signal` (when non-zero), waits up to `grace`, then SIGKILLs.
	std::string stop(int signal, std::chrono::milliseconds grace);

private:
	Process(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
	pid_t pid_;
	UniqueFd pidfd_;
	bool reaped_ = false;
	int status_ = 0;
	SteadyClock::time_point exitedAt_;
};

// Spawns argv, waits up to `timeout`, and fails unless it exits 0; the
// error holds the end of its stderr.
Result<void> runTool(const std::vector<std::string> &argv, int netnsFd = -1,
		     std::chrono::milliseconds timeout = std::chrono::seconds(10));

struct Pipe {
	UniqueFd read, write;
};
Result<Pipe> makePipe();

// Lines from a pipe, with a timeout per line.
class LineReader
{
public:
	explicit LineReader(UniqueFd fd) : fd_(std::move(fd)) {}
	// The next line (without '\n'), or nullopt at end of stream or when
	// `timeout` passes first.
	std::optional<std::string> readLine(std::chrono::milliseconds timeout);
	// Everything up to the end of the stream (bounded by `timeout`).
	std::string readAll(std::chrono::milliseconds timeout);
	int fd() const { return fd_.get(); }
	bool eof() const { return eof_; }

private:
	UniqueFd fd_;
	std::string buffer_;
	bool eof_ = false;
};

// Moves the (single-threaded) calling process into a new mount namespace
// with /etc/hosts replaced by `hosts` (name, IPv4 address) pairs, and a new
// network namespace with loopback up. Children inherit both.
Result<void> enterPrivateNamespaces(const std::vector<std::pair<std::string, std::string>> &hosts);

// An empty network namespace kept alive by a child process that does
// nothing else; it goes away (with its links) when the holder is killed.
class NetnsHolder
{
public:
	static Result<std::unique_ptr<NetnsHolder>> create();
	~NetnsHolder();
	int fd() const { return fd_.get(); }
	pid_t pid() const { return pid_; }

private:
	NetnsHolder(pid_t pid, UniqueFd fd) : pid_(pid), fd_(std::move(fd)) {}
	pid_t pid_;
	UniqueFd fd_;
};

// Whether a network interface of that name exists in our namespace.
bool linkExists(const std::string &name);
// How many interfaces in our namespace have names starting with `prefix`.
size_t countLinks(const std::string &prefix);

// Tells when links are deleted: an rtnetlink socket subscribed to link
// events, so the time of a deletion is known without polling.
class LinkWatcher
{
public:
	static Result<std::unique_ptr<LinkWatcher>> create();
	int fd() const { return fd_.get(); }
	// Reads the pending events; the names of the links deleted among them.
	// Sets *overflow when the kernel dropped events (ENOBUFS).
	std::vector<std::string> deleted(bool *overflow);

private:
	explicit LinkWatcher(UniqueFd fd) : fd_(std::move(fd)) {}
	UniqueFd fd_;
};

} // namespace gvm::bench
