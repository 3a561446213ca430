// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

#include "common/audit_chain.h"
#include "common/json_rpc.h"
#include "common/line_channel.h"
#include "common/loop.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace gvm::daemon {

// The descriptor number the control socket has in the worker; listening
// sockets handed over follow it (4, 5, ...).
inline constexpr int kWorkerControlFd = 3;
// At most this many listening sockets are handed to one worker.
inline constexpr size_t kMaxWorkerListeners = 8;

// gvmd's handle on one proxy worker process (gvm-worker): spawns it with
// the control socket as kWorkerControlFd and the listening sockets gvmd
// made for it after that, calls its control methods and hears its
// notifications and its exit. Owned by the sandbox it serves, on gvmd's
// loop. Destroying it closes the control channel, which makes the worker
// stop, and kills the worker if it is still running.
class WorkerProcess
{
public:
	struct Callbacks {
		// A notification from the worker.
		std::function<void(const std::string &method, rpc::Json &params)> onNotification;
		// The worker exited: its exit status, or the signal that ended it.
		std::function<void(int64_t status, int signal)> onExit;
		// A decision to record, read from a `decision` notification whose
		// record is flat (as workers send them); any other decision
		// notification goes to onNotification.
		std::function<void(AuditRecord &record)> onDecision;
	};
	using ResponseHandler = std::function<void(Result<rpc::Json>)>;

	// A listening socket to hand over, by the name the worker knows it
	// by ("explicit", later "transparent", "dns").
	using Listener = std::pair<std::string, UniqueFd>;

	// Starts `path --control-fd 3 [--listen NAME=FD]... --log-level LEVEL`.
	// The listeners become fds 4, 5, ... in the worker, in order; gvmd's
	// copies are closed once the worker has them, so when the worker dies
	// nothing listens on those ports any more (fail closed).
	static Result<std::unique_ptr<WorkerProcess>> spawn(Loop &loop, const std::string &path, Callbacks callbacks,
							    const std::string &logLevel = "info",
							    std::vector<Listener> listeners = {});
	~WorkerProcess();

	pid_t pid() const { return pid_; }
	bool running() const { return running_; }

	// Calls a control method; the handler runs once, with the result or an
	// error (including the worker going away first).
	void call(const std::string &method, const rpc::Json &params, ResponseHandler handler,
		  std::vector<UniqueFd> fds = {});
	// A worker started ahead of its sandbox (a spare) learns whom it
	// serves: notifications and the exit go to these from now on.
	void setCallbacks(Callbacks callbacks) { callbacks_ = std::move(callbacks); }
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
