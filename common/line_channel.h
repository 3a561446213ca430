// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/json_rpc.h"
#include "common/loop.h"
#include "common/unique_fd.h"

namespace gvm {

// Output a peer may leave unread before the channel gives up on it.
inline constexpr size_t kMaxPendingOutputBytes = 8 * 1024 * 1024;
inline constexpr size_t kReadChunkBytes = 64 * 1024;
// Batched lines leave at most once per this interval (see sendBatched()).
inline constexpr std::chrono::milliseconds kBatchInterval{2};

// Newline-framed messages over a non-blocking unix stream socket, on the
// loop: reads lines (at most rpc::kMaxMessageBytes each) together with any
// descriptors passed alongside (SCM_RIGHTS), and writes lines through a
// bounded output buffer. Used for gvmd's clients and for the control
// channel between gvmd and a proxy worker. Owned by whoever holds the
// peer; single-threaded. Callbacks may close the channel or ask for the
// owner's deferred deletion (Loop::deleteLater), never delete it at once;
// the channel never calls back after close().
class LineChannel
{
public:
	enum class State { Open, Draining, Closed };
	static const char *toString(State state);

	struct Callbacks {
		// One complete line, with the descriptors that arrived since the
		// previous line (the callee takes what it wants; the rest close).
		std::function<void(const std::string &line, std::vector<UniqueFd> &fds)> onLine;
		// The channel closed: peer hung up, an I/O error, an oversized
		// message, too many descriptors, or a peer not reading its output.
		// `why` is empty for an orderly close.
		std::function<void(const std::string &why)> onClosed;
	};

	LineChannel(Loop &loop, UniqueFd fd, Callbacks callbacks, std::string name);
	~LineChannel();
	LineChannel(const LineChannel &) = delete;
	LineChannel &operator=(const LineChannel &) = delete;

	State state() const { return state_; }
	int fd() const { return fd_.get(); }
	// Bytes queued for the peer and not yet written.
	size_t pendingOutputBytes() const { return output_.size() - outputOffset_; }

	// Queues one encoded line (ending in '\n'). A peer over its output
	// budget is disconnected.
	void send(std::string line);
	// Queues one line to be written with whatever else is queued by then:
	// just before the loop waits again, or, when a batch left less than
	// the batch interval ago, once the interval is over. Many messages,
	// one system call and one wake-up of the peer; a busy sender writes
	// at most once per interval, a quiet one without delay. Order with
	// send() is kept.
	void sendBatched(std::string line);
	// The batch interval; kBatchInterval unless changed.
	void setBatchInterval(std::chrono::milliseconds interval) { batchInterval_ = interval; }
	// Queues one line with descriptors attached to its first byte
	// (SCM_RIGHTS; at most kMaxPassedFds). They close here once sent.
	void send(std::string line, std::vector<UniqueFd> fds);
	// Stops reading, writes what is queued, then closes.
	void closeAfterFlush();
	// Closes now.
	void close(const std::string &why = "");

private:
	void setState(State state);
	void updatePoll();
	void onPoll(int status, int events);
	void onReadable();
	bool enqueue(std::string &line);
	void flush();
	void flushBatch();

	UniqueFd fd_;
	Callbacks callbacks_;
	std::string name_;
	State state_ = State::Open;
	UvHandle<uv_poll_t> poll_;
	UvHandle<uv_prepare_t> batchFlush_;
	UvHandle<uv_timer_t> batchTimer_;
	std::chrono::milliseconds batchInterval_ = kBatchInterval;
	std::optional<uint64_t> lastBatchMs_; // loop time of the last batch
	int pollEvents_ = 0;
	rpc::LineFramer framer_;
	std::string output_;
	size_t outputOffset_ = 0;
	// Lines of output_ that carry descriptors, in order: each goes out in
	// a sendmsg() of its own (the receiver attributes descriptors to the
	// last line that starts in what it read, see onReadable()).
	struct FdLine {
		size_t at;
		size_t length;
		std::vector<UniqueFd> fds;
	};
	std::deque<FdLine> outputFds_;
	std::vector<UniqueFd> receivedFds_;
};

} // namespace gvm
