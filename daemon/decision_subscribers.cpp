// SPDX-License-Identifier: Apache-2.0
#include "daemon/decision_subscribers.h"

#include <vector>

#include "common/audit_chain.h"

namespace gvm::daemon {

DecisionSubscribers::DecisionSubscribers(RpcServer &server) : server_(server)
{
	server_.addDisconnectHandler([this](uint64_t id) { remove(id); });
}

void DecisionSubscribers::add(uint64_t connectionId, uid_t uid, std::string sandbox)
{
	subscribers_[connectionId] = Subscriber{uid, std::move(sandbox)};
}

void DecisionSubscribers::remove(uint64_t connectionId)
{
	subscribers_.erase(connectionId);
}

void DecisionSubscribers::publish(uid_t owner, const std::string &sandbox, const std::string &recordLine)
{
	if (subscribers_.empty())
		return;
	// The notification a worker sends gvmd, with the sealed record in it.
	const std::string line = decisionLine(recordLine);

	// Who gets it is settled first: sending can close a connection, and
	// a closing connection calls back into remove().
	std::vector<uint64_t> targets;
	for (const auto &[id, sub] : subscribers_) {
		if (sub.uid != 0 && owner != sub.uid)
			continue;
		if (!sub.sandbox.empty() && sandbox != sub.sandbox)
			continue;
		targets.push_back(id);
	}
	for (uint64_t id : targets) {
		RpcConnection *conn = server_.connection(id);
		if (!conn) {
			subscribers_.erase(id);
			continue;
		}
		if (conn->pendingOutputBytes() + line.size() > kMaxSubscriberBacklogBytes) {
			subscribers_.erase(id);
			conn->close("a decision subscriber with more than " + std::to_string(kMaxSubscriberBacklogBytes) +
				    " bytes unread");
			continue;
		}
		conn->send(line);
	}
}

} // namespace gvm::daemon
