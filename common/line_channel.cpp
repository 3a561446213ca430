// SPDX-License-Identifier: Apache-2.0
#include "common/line_channel.h"

#include <cerrno>
#include <cstring>
#include <iterator>
#include <optional>
#include <sys/socket.h>

#include "common/fd_passing.h"
#include "common/log.h"

namespace gvm {

const char *LineChannel::toString(State state)
{
	switch (state) {
	case State::Open: return "open";
	case State::Draining: return "draining";
	case State::Closed: return "closed";
	}
	return "?";
}

LineChannel::LineChannel(Loop &loop, UniqueFd fd, Callbacks callbacks, std::string name)
	: fd_(std::move(fd)), callbacks_(std::move(callbacks)), name_(std::move(name))
{
	uv_poll_init(loop.get(), poll_.get(), fd_.get());
	poll_.get()->data = this;
	uv_prepare_init(loop.get(), batchFlush_.get());
	batchFlush_.get()->data = this;
	uv_timer_init(loop.get(), batchTimer_.get());
	batchTimer_.get()->data = this;
	updatePoll();
}

LineChannel::~LineChannel()
{
	poll_.close();
	batchFlush_.close();
	batchTimer_.close();
}

void LineChannel::setState(State state)
{
	GVM_LOG(Rpc, Debug) << name_ << ": " << toString(state_) << " -> " << toString(state);
	state_ = state;
}

void LineChannel::updatePoll()
{
	if (state_ == State::Closed)
		return;
	int events = 0;
	if (state_ == State::Open)
		events |= UV_READABLE;
	if (outputOffset_ < output_.size())
		events |= UV_WRITABLE;
	// Restarting a poll with the events it already has costs two
	// epoll_ctl calls: only changes reach libuv.
	if (events == pollEvents_)
		return;
	pollEvents_ = events;
	if (events == 0) {
		uv_poll_stop(poll_.get());
		return;
	}
	uv_poll_start(poll_.get(), events, [](uv_poll_t *p, int status, int ev) {
		if (auto *self = static_cast<LineChannel *>(p->data))
			self->onPoll(status, ev);
	});
}

void LineChannel::onPoll(int status, int events)
{
	if (status < 0) {
		close(uv_strerror(status));
		return;
	}
	if (events & UV_WRITABLE)
		flush();
	if (state_ == State::Open && (events & UV_READABLE))
		onReadable();
}

void LineChannel::onReadable()
{
	char buf[kReadChunkBytes];
	auto received = receiveWithFds(fd_.get(), buf, sizeof(buf));
	if (!received) {
		if (received.error().code() != EAGAIN)
			close(received.error().message());
		return;
	}
	if (received->bytes == 0) {
		// The peer finished sending: answer what it asked, then close.
		closeAfterFlush();
		return;
	}
	if (receivedFds_.size() + received->fds.size() > kMaxPassedFds) {
		// More descriptors than any message can use: a misbehaving
		// peer. Drop it rather than hoard fds.
		send(rpc::encodeError(nullptr, {rpc::kInvalidRequest, "too many file descriptors", nullptr}));
		closeAfterFlush();
		return;
	}

	// Which line the descriptors of this read belong to. The kernel ends a
	// read right after the data that carried descriptors but may put
	// earlier data before it, and a sender puts a line with descriptors in
	// a sendmsg() of its own: they belong to the last line that starts in
	// this read (still incomplete when the read does not end a line).
	// Descriptors of earlier reads wait for the line they came with, the
	// first one completed now.
	const std::string_view chunk(buf, received->bytes);
	std::vector<std::string> lines;
	auto fed = framer_.feed(chunk, &lines);
	std::vector<UniqueFd> earlier = std::move(receivedFds_);
	receivedFds_.clear();
	std::optional<size_t> owner;
	if (!received->fds.empty()) {
		if (chunk.back() != '\n' || lines.empty())
			receivedFds_ = std::move(received->fds);
		else
			owner = lines.size() - 1;
	}
	for (size_t i = 0; i < lines.size(); ++i) {
		if (state_ != State::Open)
			return;
		std::vector<UniqueFd> fds;
		if (i == 0)
			fds = std::move(earlier);
		if (owner && *owner == i)
			for (UniqueFd &fd : received->fds)
				fds.push_back(std::move(fd));
		if (lines[i].empty())
			continue; // any descriptors close
		callbacks_.onLine(lines[i], fds);
	}
	if (lines.empty() && !earlier.empty())
		receivedFds_.insert(receivedFds_.begin(), std::make_move_iterator(earlier.begin()),
				    std::make_move_iterator(earlier.end()));
	if (!fed && state_ == State::Open) {
		// An oversized message cannot be resynchronised: answer and hang up.
		send(rpc::encodeError(nullptr, rpc::toRpcError(fed.error())));
		closeAfterFlush();
	}
}

bool LineChannel::enqueue(std::string &line)
{
	if (state_ == State::Closed)
		return false;
	if (output_.size() - outputOffset_ + line.size() > kMaxPendingOutputBytes) {
		close("the peer is not reading its output");
		return false;
	}
	if (outputOffset_ == output_.size()) {
		output_.clear();
		outputOffset_ = 0;
	}
	output_.append(line);
	return true;
}

void LineChannel::send(std::string line)
{
	if (enqueue(line))
		flush();
}

void LineChannel::send(std::string line, std::vector<UniqueFd> fds)
{
	if (fds.empty()) {
		send(std::move(line));
		return;
	}
	if (fds.size() > kMaxPassedFds || line.empty()) {
		close("too many descriptors to send");
		return;
	}
	if (outputOffset_ == output_.size()) {
		output_.clear();
		outputOffset_ = 0;
	}
	const size_t at = output_.size();
	const size_t length = line.size();
	if (!enqueue(line))
		return;
	outputFds_.push_back({at, length, std::move(fds)});
	flush();
}

void LineChannel::sendBatched(std::string line)
{
	if (!enqueue(line) || uv_is_active(batchFlush_.base()) || uv_is_active(batchTimer_.base()))
		return;
	const uint64_t now = uv_now(batchTimer_.get()->loop);
	const auto interval = static_cast<uint64_t>(batchInterval_.count());
	if (lastBatchMs_ && now < *lastBatchMs_ + interval) {
		uv_timer_start(
			batchTimer_.get(),
			[](uv_timer_t *t) {
				if (auto *self = static_cast<LineChannel *>(t->data); self && self->state_ != State::Closed)
					self->flushBatch();
			},
			*lastBatchMs_ + interval - now, 0);
		return;
	}
	uv_prepare_start(batchFlush_.get(), [](uv_prepare_t *p) {
		uv_prepare_stop(p);
		if (auto *self = static_cast<LineChannel *>(p->data); self && self->state_ != State::Closed)
			self->flushBatch();
	});
}

void LineChannel::flushBatch()
{
	lastBatchMs_ = uv_now(batchTimer_.get()->loop);
	flush();
}

void LineChannel::flush()
{
	while (outputOffset_ < output_.size()) {
		// Up to the next byte that carries descriptors, or with them.
		size_t end = output_.size();
		ssize_t n;
		if (!outputFds_.empty() && outputFds_.front().at == outputOffset_) {
			end = outputFds_.front().at + outputFds_.front().length;
			std::vector<int> raw;
			for (const UniqueFd &fd : outputFds_.front().fds)
				raw.push_back(fd.get());
			auto sent = sendWithFds(fd_.get(), std::string_view(output_).substr(outputOffset_, end - outputOffset_),
						raw);
			if (sent) {
				n = static_cast<ssize_t>(*sent);
				outputFds_.pop_front();
			} else {
				errno = sent.error().code();
				n = -1;
			}
		} else {
			if (!outputFds_.empty())
				end = outputFds_.front().at;
			n = ::send(fd_.get(), output_.data() + outputOffset_, end - outputOffset_, MSG_NOSIGNAL | MSG_DONTWAIT);
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			close(std::string("send: ") + std::strerror(errno));
			return;
		}
		outputOffset_ += static_cast<size_t>(n);
	}
	if (outputOffset_ == output_.size()) {
		output_.clear();
		outputOffset_ = 0;
		if (state_ == State::Draining) {
			close();
			return;
		}
	}
	updatePoll();
}

void LineChannel::closeAfterFlush()
{
	if (state_ != State::Open)
		return;
	setState(State::Draining);
	flush();
}

void LineChannel::close(const std::string &why)
{
	if (state_ == State::Closed)
		return;
	if (!why.empty())
		GVM_LOG(Rpc, Debug) << name_ << ": closing: " << why;
	setState(State::Closed);
	uv_poll_stop(poll_.get());
	pollEvents_ = 0;
	uv_prepare_stop(batchFlush_.get());
	uv_timer_stop(batchTimer_.get());
	if (callbacks_.onClosed)
		callbacks_.onClosed(why);
}

} // namespace gvm
