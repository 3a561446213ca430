// SPDX-License-Identifier: Apache-2.0
#include "common/loop.h"

#include "common/log.h"

namespace gvm {

Result<std::unique_ptr<Loop>> Loop::create()
{
	std::unique_ptr<Loop> loop(new Loop());
	if (int r = uv_loop_init(&loop->loop_); r < 0)
		return fail(Error::fromLibuv(r, "initialising the event loop"));
	uv_idle_init(&loop->loop_, loop->idle_.get());
	loop->idle_.get()->data = loop.get();
	return loop;
}

Loop::~Loop()
{
	posted_.clear();
	idle_.close();
	uv_walk(
		&loop_,
		[](uv_handle_t *h, void *) {
			if (!uv_is_closing(h)) {
				GVM_LOG(Common, Debug) << "closing a leftover " << uv_handle_type_name(h->type) << " handle";
				// Leftover handles belong to owners that are already
				// gone; their memory is reclaimed with the process.
				uv_close(h, nullptr);
			}
		},
		nullptr);
	uv_run(&loop_, UV_RUN_DEFAULT);
	uv_loop_close(&loop_);
}

void Loop::post(std::function<void()> fn)
{
	if (posted_.empty())
		uv_idle_start(idle_.get(), &Loop::onIdle);
	posted_.push_back(std::move(fn));
}

void Loop::onIdle(uv_idle_t *idle)
{
	auto *self = static_cast<Loop *>(idle->data);
	if (!self)
		return;
	self->runQueued();
	if (self->posted_.empty())
		uv_idle_stop(idle);
}

void Loop::runQueued()
{
	std::vector<std::function<void()>> batch;
	batch.swap(posted_);
	for (auto &fn : batch)
		fn();
}

void Loop::runPosted()
{
	while (!posted_.empty())
		runQueued();
	uv_idle_stop(idle_.get());
}

void Loop::run()
{
	uv_run(&loop_, UV_RUN_DEFAULT);
}

Timer::Timer(Loop &loop, std::function<void()> fn) : fn_(std::move(fn))
{
	uv_timer_init(loop.get(), timer_.get());
	timer_.get()->data = this;
}

void Timer::start(uint64_t timeoutMs, uint64_t repeatMs)
{
	uv_timer_start(
		timer_.get(),
		[](uv_timer_t *t) {
			if (auto *self = static_cast<Timer *>(t->data))
				self->fn_();
		},
		timeoutMs, repeatMs);
}

void Timer::stop()
{
	uv_timer_stop(timer_.get());
}

SignalWatcher::SignalWatcher(Loop &loop, int signum, std::function<void(int)> fn) : fn_(std::move(fn))
{
	uv_signal_init(loop.get(), signal_.get());
	signal_.get()->data = this;
	uv_signal_start(
		signal_.get(),
		[](uv_signal_t *s, int sig) {
			if (auto *self = static_cast<SignalWatcher *>(s->data))
				self->fn_(sig);
		},
		signum);
}

} // namespace gvm
