// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <sys/types.h>

#include "common/json_rpc.h"
#include "common/line_channel.h"
#include "common/loop.h"
#include "common/result.h"

namespace gvm::daemon {

// The descriptor number the control socket has in the worker.
inline constexpr int kWorkerControlFd = 3;

// gvmd's handle on one proxy worker process (gvm-worker): spawns it with
// the control socket as kWorkerControlFd, calls its control methods and
// hears its notifications and its exit. Owned by the sandbox it serves, on
// gvmd's loop. Destroying it closes the control channel, which makes the
// worker stop, and kills the worker if it is still running.
class WorkerProcess
{
public:
	struct Callbacks {
		// A notification from the worker (e.g. a decision to record).
		std::function<void(const std::string &method, const rpc::Json &params)> onNotification;
		// The worker exited: its exit status, or the signal that ended it.
		std::function<void(int64_t status, int signal)> onExit;
	};
	using ResponseHandler = std::function<void(Result<rpc::Json>)>;

	static Result<std::unique_ptr<WorkerProcess>> spawn(Loop &loop, const std::string &path, Callbacks callbacks,
							    const std::string &logLevel = "info");
	~WorkerProcess();

	pid_t pid() const { return pid_; }
	bool running() const { return running_; }

	// Calls a control method; the handler runs once, with the result or an
	// error (including the worker going away first).
	void call(const std::string &method, const rpc::Json &params, ResponseHandler handler);
	void kill(int signum);

private:
	WorkerProcess(Loop &loop, Callbacks callbacks);
	void onLine(const std::string &line);
	void failPending(const std::string &why);

	Loop &loop_;
	Callbacks callbacks_;
	UvHandle<uv_process_t> process_;
	std::unique_ptr<LineChannel> control_;
	pid_t pid_ = 0;
	bool running_ = false;
	int64_t nextId_ = 1;
	std::map<int64_t, ResponseHandler> pending_;
};

} // namespace gvm::daemon
