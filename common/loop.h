// SPDX-License-Identifier: Apache-2.0
//
// A thin owner of one libuv loop and the handle types gvm uses on it. Each
// gvm process runs exactly one Loop, on one thread; nothing here is
// thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include <uv.h>

#include "common/result.h"

namespace gvm {

// Owns a libuv handle of type H allocated on the heap. Destruction calls
// uv_close(); the memory is freed in the close callback, as libuv requires.
// After destruction no callback of the handle reaches its former owner.
template<typename H>
class UvHandle
{
public:
	UvHandle() : handle_(new H{}) {}
	UvHandle(const UvHandle &) = delete;
	UvHandle &operator=(const UvHandle &) = delete;
	~UvHandle() { close(); }

	H *get() const { return handle_; }
	uv_handle_t *base() const { return reinterpret_cast<uv_handle_t *>(handle_); }

	// Closes now; safe to call twice. Handles never initialised on a loop
	// are freed directly.
	void close()
	{
		if (!handle_)
			return;
		H *h = std::exchange(handle_, nullptr);
		uv_handle_t *b = reinterpret_cast<uv_handle_t *>(h);
		b->data = nullptr;
		if (b->loop && !uv_is_closing(b))
			uv_close(b, [](uv_handle_t *c) { delete reinterpret_cast<H *>(c); });
		else if (!b->loop)
			delete h;
	}

private:
	H *handle_;
};

class Loop
{
public:
	static Result<std::unique_ptr<Loop>> create();
	Loop(const Loop &) = delete;
	Loop &operator=(const Loop &) = delete;
	// Closes every handle still open and drains their close callbacks.
	~Loop();

	uv_loop_t *get() { return &loop_; }

	// Runs fn after the current callback returns, on this loop.
	void post(std::function<void()> fn);

	// Destroys obj after the current callback returns, so an object may
	// ask for its own deletion from inside one of its callbacks.
	template<typename T>
	void deleteLater(std::unique_ptr<T> obj)
	{
		std::shared_ptr<T> holder(std::move(obj));
		post([holder]() mutable { holder.reset(); });
	}

	// Runs what post() and deleteLater() have queued, and what that queues
	// in turn, now: for an owner about to destroy what the queued work
	// refers to (after stop(), the work of the last pass is still queued).
	void runPosted();

	// Runs until stop() or until nothing is left to do.
	void run();
	void stop() { uv_stop(&loop_); }
	// Milliseconds since an arbitrary point, cached per iteration.
	uint64_t now() { return uv_now(&loop_); }

private:
	Loop() = default;
	static void onIdle(uv_idle_t *idle);
	// Runs the work queued so far (not what it queues).
	void runQueued();

	uv_loop_t loop_{};
	UvHandle<uv_idle_t> idle_;
	std::vector<std::function<void()>> posted_;
};

// A one-shot or repeating timer; destroying it cancels it.
class Timer
{
public:
	Timer(Loop &loop, std::function<void()> fn);
	void start(uint64_t timeoutMs, uint64_t repeatMs = 0);
	void stop();
	// Started and not yet fired (a one-shot timer is no longer active in
	// its own callback) or stopped.
	bool active() const { return uv_is_active(timer_.base()) != 0; }

private:
	UvHandle<uv_timer_t> timer_;
	std::function<void()> fn_;
};

// Delivers a signal to fn on the loop; destroying it stops watching.
class SignalWatcher
{
public:
	SignalWatcher(Loop &loop, int signum, std::function<void(int)> fn);

private:
	UvHandle<uv_signal_t> signal_;
	std::function<void(int)> fn_;
};

} // namespace gvm
