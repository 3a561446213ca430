// SPDX-License-Identifier: Apache-2.0
//
// Helpers for tests that run gvm's real binaries: start a process, capture
// its output, wait for it with a bound, talk JSON-RPC over a raw socket.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

#include "common/json_rpc.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace gvm::test {

struct RunResult {
	int status = -1; // exit status, or 128+signal
	std::string out;
	std::string err;
};

// Runs argv to completion (killed after `timeout`), capturing stdout/stderr.
RunResult run(const std::vector<std::string> &argv, const std::vector<std::string> &extraEnv = {},
	      std::chrono::milliseconds timeout = std::chrono::seconds(20));

// A child process killed (SIGKILL) and reaped on destruction.
class Child
{
public:
	// Starts argv; `preExec` runs in the child before exec (e.g. to drop
	// privileges). Output goes to the given file (or inherits if empty).
	static Child start(const std::vector<std::string> &argv, const std::vector<std::string> &extraEnv = {},
			   const std::string &logFile = "");
	Child() = default;
	Child(Child &&other) noexcept : pid_(std::exchange(other.pid_, -1)) {}
	Child &operator=(Child &&other) noexcept;
	~Child();

	pid_t pid() const { return pid_; }
	bool running();
	// Sends sig and waits up to timeout; the exit status or nullopt.
	std::optional<int> stop(int sig, std::chrono::milliseconds timeout = std::chrono::seconds(10));
	std::optional<int> wait(std::chrono::milliseconds timeout);

private:
	pid_t pid_ = -1;
	std::optional<int> status_;
};

// Polls until pred() or the timeout; returns the last pred().
bool waitFor(const std::function<bool()> &pred, std::chrono::milliseconds timeout = std::chrono::seconds(10));

// A fresh temporary directory, removed (recursively) on destruction.
class TempDir
{
public:
	TempDir();
	~TempDir();
	const std::string &path() const { return path_; }

private:
	std::string path_;
};

// A raw client of a unix socket, for protocol-level tests.
class RawClient
{
public:
	// Connects; invalid (fd < 0) on failure, errno preserved in error().
	explicit RawClient(const std::string &path);
	bool connected() const { return fd_.isValid(); }
	int error() const { return errno_; }
	int fd() const { return fd_.get(); }

	bool sendRaw(std::string_view bytes);
	// Reads one line (without '\n'); nullopt on EOF or timeout.
	std::optional<std::string> readLine(std::chrono::milliseconds timeout = std::chrono::seconds(5));
	// True when the peer closed the connection within the timeout.
	bool closedByPeer(std::chrono::milliseconds timeout = std::chrono::seconds(5));
	// Sends a request and returns the decoded reply line.
	std::optional<rpc::Json> call(const std::string &method, const rpc::Json &params = rpc::Json::object());

private:
	UniqueFd fd_;
	int errno_ = 0;
	std::string buffer_;
	int nextId_ = 1;
};

// Path of a built binary named by an environment variable set by meson.
std::string binaryFromEnv(const char *var);

// Small file and process helpers the fixtures share.
// The whole file, or "" when it cannot be read.
std::string readFile(const std::string &path);
// Creates or truncates path with text and exactly mode (whatever the umask).
Result<void> writeFile(const std::string &path, std::string_view text, mode_t mode = 0644);
// mkdir 0755; an existing directory is fine.
Result<void> makeDir(const std::string &path);
// A wait status as a shell reports it: the exit code, or 128 + signal.
int decodeStatus(int status);
// The last `max` bytes of text, marked when cut.
std::string tail(const std::string &text, size_t max = 4000);
// The python3 to run fixture servers with: `configured` if set, else
// Debian's /usr/bin/python3 (not a version manager's shim PATH may put
// first: the servers need only the standard library), else PATH's.
std::string findPython(const std::string &configured);

} // namespace gvm::test

namespace gvm {
class Loop;
}

namespace gvm::test {

// Runs the loop until pred() holds or the timeout passes; returns pred().
bool runLoopUntil(Loop &loop, const std::function<bool()> &pred,
		  std::chrono::milliseconds timeout = std::chrono::seconds(10));

} // namespace gvm::test
