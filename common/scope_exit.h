// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <functional>
#include <utility>
#include <vector>

namespace gvm {

// Rollback list for multi-step setup: each step that succeeds registers how to
// undo itself; if the setup returns early, the destructor undoes the steps in
// reverse order. release() on success keeps everything.
class Rollback
{
public:
	Rollback() = default;
	Rollback(const Rollback &) = delete;
	Rollback &operator=(const Rollback &) = delete;
	~Rollback() { run(); }

	void add(std::function<void()> undo) { undo_.push_back(std::move(undo)); }
	void release() { undo_.clear(); }
	// Undoes everything now (reverse order).
	void run()
	{
		while (!undo_.empty()) {
			auto undo = std::move(undo_.back());
			undo_.pop_back();
			undo();
		}
	}

private:
	std::vector<std::function<void()>> undo_;
};

// Runs a callable when the scope ends, unless dismissed.
template<typename F>
class ScopeExit
{
public:
	explicit ScopeExit(F f) : f_(std::move(f)) {}
	ScopeExit(const ScopeExit &) = delete;
	ScopeExit &operator=(const ScopeExit &) = delete;
	~ScopeExit()
	{
		if (active_)
			f_();
	}
	void dismiss() { active_ = false; }

private:
	F f_;
	bool active_ = true;
};

} // namespace gvm
