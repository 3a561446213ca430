// SPDX-License-Identifier: Apache-2.0
#include "daemon/worker_process.h"

#include <csignal>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "common/log.h"

namespace gvm::daemon {

WorkerProcess::WorkerProcess(Loop &loop, Callbacks callbacks) : loop_(loop), callbacks_(std::move(callbacks)) {}

WorkerProcess::~WorkerProcess()
{
	control_.reset();
	if (running_) {
		// Closing the handle stops libuv from tracking the child, so reap
		// it here; SIGKILL makes that wait short.
		uv_process_kill(process_.get(), SIGKILL);
		process_.close();
		::waitpid(pid_, nullptr, 0);
	}
}

Result<std::unique_ptr<WorkerProcess>> WorkerProcess::spawn(Loop &loop, const std::string &path, Callbacks callbacks,
							     const std::string &logLevel, std::vector<Listener> listeners)
{
	if (listeners.size() > kMaxWorkerListeners)
		return fail(Error::fromErrno(E2BIG, "handing " + std::to_string(listeners.size()) +
							    " listening sockets to the proxy worker"));
	int sv[2];
	if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return fail(Error::fromErrno(errno, "creating the worker's control socket"));
	UniqueFd ours(sv[0]), theirs(sv[1]);
	if (::fcntl(ours.get(), F_SETFL, ::fcntl(ours.get(), F_GETFL) | O_NONBLOCK) < 0)
		return fail(Error::fromErrno(errno, "configuring the worker's control socket"));

	std::unique_ptr<WorkerProcess> worker(new WorkerProcess(loop, std::move(callbacks)));

	std::string fdArg = std::to_string(kWorkerControlFd);
	std::string level = logLevel;
	std::vector<std::string> listenArgs;
	for (size_t i = 0; i < listeners.size(); ++i)
		listenArgs.push_back(listeners[i].first + "=" + std::to_string(kWorkerControlFd + 1 + i));
	std::vector<char *> args = {const_cast<char *>(path.c_str()), const_cast<char *>("--control-fd"), fdArg.data()};
	for (std::string &l : listenArgs) {
		args.push_back(const_cast<char *>("--listen"));
		args.push_back(l.data());
	}
	args.push_back(const_cast<char *>("--log-level"));
	args.push_back(level.data());
	args.push_back(nullptr);

	// The worker gets no stdin, gvmd's stdout/stderr (its log lines reach
	// the journal with gvmd's), the control socket, its listening sockets,
	// and nothing else: libuv closes every other descriptor in the child.
	std::vector<uv_stdio_container_t> stdio(kWorkerControlFd + 1 + listeners.size());
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_INHERIT_FD;
	stdio[1].data.fd = 1;
	stdio[2].flags = UV_INHERIT_FD;
	stdio[2].data.fd = 2;
	stdio[kWorkerControlFd].flags = UV_INHERIT_FD;
	stdio[kWorkerControlFd].data.fd = theirs.get();
	for (size_t i = 0; i < listeners.size(); ++i) {
		stdio[kWorkerControlFd + 1 + i].flags = UV_INHERIT_FD;
		stdio[kWorkerControlFd + 1 + i].data.fd = listeners[i].second.get();
	}

	uv_process_options_t options{};
	options.file = path.c_str();
	options.args = args.data();
	options.stdio = stdio.data();
	options.stdio_count = static_cast<int>(stdio.size());
	// A minimal environment: nothing of gvmd's reaches the worker.
	char *env[] = {nullptr};
	options.env = env;
	options.exit_cb = [](uv_process_t *p, int64_t status, int signal) {
		auto *self = static_cast<WorkerProcess *>(p->data);
		if (!self)
			return;
		self->running_ = false;
		GVM_LOG(Proxy, Info) << "worker " << self->pid_ << " exited"
				     << (signal ? " on signal " + std::to_string(signal) : " with status " + std::to_string(status));
		self->failPending("the worker exited");
		if (self->callbacks_.onExit)
			self->callbacks_.onExit(status, signal);
	};
	if (int r = uv_spawn(loop.get(), worker->process_.get(), &options); r < 0)
		return fail(Error::fromLibuv(r, "starting the proxy worker " + path));
	worker->process_.get()->data = worker.get();
	worker->pid_ = worker->process_.get()->pid;
	worker->running_ = true;
	// The worker has its copies now. Keeping ours would keep the ports
	// open (connections queueing, never answered) after a worker death.
	theirs.reset();
	listeners.clear();

	WorkerProcess *self = worker.get();
	worker->control_ = std::make_unique<LineChannel>(
		loop, std::move(ours),
		LineChannel::Callbacks{[self](const std::string &line, std::vector<UniqueFd> &) { self->onLine(line); },
				       [self](const std::string &why) {
					       self->failPending("the worker closed its control channel" +
								 (why.empty() ? std::string() : ": " + why));
				       }},
		"worker " + std::to_string(worker->pid_));
	return worker;
}

void WorkerProcess::call(const std::string &method, const rpc::Json &params, ResponseHandler handler,
			 std::vector<UniqueFd> fds)
{
	if (!control_ || control_->state() != LineChannel::State::Open) {
		loop_.post([handler = std::move(handler)] {
			handler(fail(Error(ErrorDomain::Rpc, rpc::kServerError, "the proxy worker is gone")));
		});
		return;
	}
	int64_t id = nextId_++;
	pending_[id] = std::move(handler);
	control_->send(rpc::encodeRequest(id, method, params), std::move(fds));
}

void WorkerProcess::onLine(const std::string &line)
{
	// Decisions come with every request the agent makes: their record is
	// read without building a JSON tree of the whole message.
	const std::string_view text(line);
	if (callbacks_.onDecision && text.starts_with(kDecisionLineHead) && text.ends_with(kDecisionLineTail)) {
		auto record = AuditRecord::parseFlat(text.substr(
			kDecisionLineHead.size(), text.size() - kDecisionLineHead.size() - kDecisionLineTail.size()));
		if (record) {
			callbacks_.onDecision(*record);
			return;
		}
	}
	auto in = rpc::decodeIncoming(line);
	if (!in) {
		GVM_LOG(Proxy, Warning) << "worker " << pid_ << ": " << in.error().message() << ", ignoring";
		return;
	}
	if (!in->isResponse) {
		if (callbacks_.onNotification)
			callbacks_.onNotification(in->method, in->params);
		return;
	}
	if (!in->id.is_number_integer())
		return;
	auto it = pending_.find(in->id.get<int64_t>());
	if (it == pending_.end())
		return;
	ResponseHandler handler = std::move(it->second);
	pending_.erase(it);
	if (in->error)
		handler(fail(Error(ErrorDomain::Rpc, in->error->code, in->error->message)));
	else
		handler(std::move(in->result));
}

void WorkerProcess::failPending(const std::string &why)
{
	auto pending = std::move(pending_);
	pending_.clear();
	for (auto &[id, handler] : pending)
		handler(fail(Error(ErrorDomain::Rpc, rpc::kServerError, why)));
}

void WorkerProcess::kill(int signum)
{
	if (running_)
		uv_process_kill(process_.get(), signum);
}

} // namespace gvm::daemon
