// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <sys/types.h>

#include "common/json_rpc.h"
#include "daemon/rpc_server.h"

namespace gvm::daemon {

// A subscriber whose unread output passes this is dropped: a slow `gvmctl
// tail` must never slow gvmd or a worker, nor make gvmd hold its backlog.
inline constexpr size_t kMaxSubscriberBacklogBytes = 1024 * 1024;

// The clients that asked for live decisions (decisions.subscribe), each with
// what it may see: records of its own uid (root: all), optionally of one
// sandbox. Owned by the Daemon, on the loop; refers to clients by
// connection id and forgets them when they go.
class DecisionSubscribers
{
public:
	explicit DecisionSubscribers(RpcServer &server);

	// Subscribes (or re-subscribes with a new filter) a client.
	void add(uint64_t connectionId, uid_t uid, std::string sandbox);
	void remove(uint64_t connectionId);
	size_t size() const { return subscribers_.size(); }

	// Sends a sealed audit record (its line, as AuditLog::append returns
	// it), as a `decision` notification, to every subscriber allowed to see
	// a record of that owner and sandbox.
	void publish(uid_t owner, const std::string &sandbox, const std::string &recordLine);

private:
	struct Subscriber {
		uid_t uid;
		std::string sandbox; // empty: every sandbox the uid may see
	};

	RpcServer &server_;
	std::map<uint64_t, Subscriber> subscribers_;
};

} // namespace gvm::daemon
