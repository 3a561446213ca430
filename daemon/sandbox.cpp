// SPDX-License-Identifier: Apache-2.0
#include "daemon/sandbox.h"

#include <algorithm>
#include <csignal>

#include "common/log.h"
#include "daemon/isolation/cgroup.h"
#include "common/rfc3339.h"

namespace gvm::daemon {

namespace {

std::string stringField(const rpc::Json &params, const char *key)
{
	auto it = params.find(key);
	return it != params.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int64_t intField(const rpc::Json &params, const char *key, int64_t fallback)
{
	auto it = params.find(key);
	if (it == params.end() || !(it->is_number_integer() || it->is_number_unsigned()))
		return fallback;
	return it->get<int64_t>();
}

} // namespace

const char *Sandbox::toString(State state)
{
	switch (state) {
	case State::Starting: return "starting";
	case State::Running: return "running";
	case State::WorkerDead: return "worker-dead";
	}
	return "?";
}

Sandbox::Sandbox(Loop &loop, SandboxInfo info, uint64_t connection)
	: info_(std::move(info)), connection_(connection), started_(std::chrono::system_clock::now()),
	  startedSteady_(std::chrono::steady_clock::now()), killTimer_(loop, [this] {
		  if (agent_ && agent_->running()) {
			  GVM_LOG(Daemon, Notice) << "sandbox " << info_.id << ": the agent outlived its "
						  << kStopGrace.count() << " s of grace, killing it";
			  if (auto r = agent_->signalGroup(SIGKILL); !r)
				  GVM_LOG(Daemon, Warning) << "sandbox " << info_.id << ": " << r.error().message()
							   << ", ignoring";
		  }
	  })
{
}

Sandbox::~Sandbox() = default;

void Sandbox::setState(State state)
{
	if (state == state_)
		return;
	GVM_LOG(Daemon, Debug) << "sandbox " << info_.id << ": " << toString(state_) << " -> " << toString(state);
	state_ = state;
}

void Sandbox::markStarted()
{
	started_ = std::chrono::system_clock::now();
	startedSteady_ = std::chrono::steady_clock::now();
	setState(State::Running);
}

void Sandbox::updatePolicy(const rpc::Json &result)
{
	if (!result.is_object())
		return;
	if (auto v = stringField(result, "policy"); !v.empty())
		policy_.name = v;
	if (auto v = stringField(result, "sha256"); !v.empty())
		policy_.sha256 = v;
	if (auto v = stringField(result, "mode"); !v.empty())
		policy_.mode = v;
	policy_.rules = intField(result, "rules", policy_.rules);
}

void Sandbox::updateStats(const rpc::Json &params)
{
	if (!params.is_object())
		return;
	connectionsOpen_ = std::max<int64_t>(0, intField(params, "connections_open", connectionsOpen_));
	connectionsTotal_ = std::max<int64_t>(0, intField(params, "connections_total", connectionsTotal_));
}

Result<void> Sandbox::addHold(const rpc::Json &params)
{
	if (!params.is_object())
		return fail(Error(ErrorDomain::Rpc, rpc::kInvalidParams, "hold.pending without params"));
	PendingHold hold;
	hold.requestId = stringField(params, "request_id");
	// Request ids are "<sandbox id>-<n>": a worker names only holds of its
	// own sandbox, or hold.answer could never find them.
	if (hold.requestId.size() <= info_.id.size() + 1 || hold.requestId.compare(0, info_.id.size() + 1, info_.id + "-") != 0)
		return fail(Error(ErrorDomain::Rpc, rpc::kInvalidParams,
				  "hold.pending for request '" + hold.requestId + "', not one of this sandbox"));
	if (holds_.size() >= kMaxPendingHoldsPerSandbox && !holds_.count(hold.requestId))
		return fail(Error(ErrorDomain::Rpc, rpc::kInvalidParams,
				  "more than " + std::to_string(kMaxPendingHoldsPerSandbox) + " pending holds"));
	hold.method = stringField(params, "method");
	hold.host = stringField(params, "host");
	hold.port = intField(params, "port", 0);
	hold.path = stringField(params, "path");
	hold.rule = stringField(params, "rule");
	const int64_t timeoutMs = std::max<int64_t>(0, intField(params, "timeout_ms", 0));
	hold.expires = std::chrono::system_clock::now() + std::chrono::milliseconds(timeoutMs);
	holds_[hold.requestId] = std::move(hold);
	return {};
}

std::vector<PendingHold> Sandbox::pendingHolds()
{
	const auto now = std::chrono::system_clock::now();
	std::vector<PendingHold> out;
	for (auto it = holds_.begin(); it != holds_.end();) {
		// The worker denies an expired hold itself; its hold.resolved
		// may still be on the way.
		if (it->second.expires <= now) {
			it = holds_.erase(it);
			continue;
		}
		out.push_back(it->second);
		++it;
	}
	return out;
}

Result<void> Sandbox::signal(int signum)
{
	if (!agent_ || !agent_->running())
		return fail(Error(ErrorDomain::Rpc, rpc::kNotFound, "sandbox " + info_.id + " has no running agent"));
	return agent_->signalGroup(signum);
}

Result<void> Sandbox::stop()
{
	GVM_TRY_VOID(signal(SIGTERM), "stopping sandbox " + info_.id);
	if (!stopping_) {
		stopping_ = true;
		killTimer_.start(static_cast<uint64_t>(std::chrono::milliseconds(kStopGrace).count()));
	}
	return {};
}

rpc::Json Sandbox::describe() const
{
	const double age = std::chrono::duration<double>(std::chrono::steady_clock::now() - startedSteady_).count();
	rpc::Json out = {
		{"id", info_.id},
		{"name", info_.name},
		{"uid", info_.uid},
		{"pid", agent_ ? static_cast<int64_t>(agent_->pid()) : 0},
		{"policy", policy_.name},
		{"sha256", policy_.sha256},
		{"mode", policy_.mode},
		{"cooperative", info_.cooperative},
		{"started", rfc3339(started_, TimePrecision::Seconds)},
		{"age_s", age},
		{"command", info_.command},
		{"proxy", info_.proxyUrl},
		{"state", toString(state_)},
		{"worker_pid", worker_ ? static_cast<int64_t>(worker_->pid()) : 0},
		{"connections_open", connectionsOpen_},
		{"connections_total", connectionsTotal_},
		{"decisions", decisions_},
		{"pending", holds_.size()},
	};
	if (network) {
		// What the sandbox's nftables dropped: attempts to leave other
		// than by TCP and DNS (UDP, ICMP, IPv6).
		out["network"] = {{"interface", network->hostInterface()},
				  {"host_address", network->hostAddress()},
				  {"sandbox_address", network->sandboxAddress()},
				  {"dropped_packets", network->droppedPackets()}};
	}
	if (isolate) {
		rpc::Json iso = {{"workspace", workspace}, {"overlay", !upperDir.empty()}};
		if (cgroup)
			if (auto usage = cgroup->usage()) {
				iso["memory_bytes"] = usage->memoryBytes;
				iso["pids"] = usage->pids;
				iso["cpu_usec"] = usage->cpuUsec;
				if (usage->memoryLimit)
					iso["memory_limit"] = *usage->memoryLimit;
				if (usage->pidsLimit)
					iso["pids_limit"] = *usage->pidsLimit;
			}
		out["isolation"] = std::move(iso);
	}
	return out;
}

} // namespace gvm::daemon
