// SPDX-License-Identifier: Apache-2.0
//
// The upstream pool on a real loop with socket pairs standing in for
// upstream connections: what it hands back, what it closes, and when idle
// connections expire.
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

#include "common/loop.h"
#include "daemon/proxy/upstream.h"

using namespace gvm;
using namespace gvm::proxy;

namespace {

// One pooled connection: the pool's end as a Transport, and the far end,
// which plays the upstream.
struct Pair {
	std::unique_ptr<Transport> ours;
	UniqueFd upstream;
};

Pair makePair(Loop &loop)
{
	int fds[2];
	REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
	auto t = Transport::adopt(loop, UniqueFd(fds[0]));
	REQUIRE(t);
	return {std::move(*t), UniqueFd(fds[1])};
}

// Whether the upstream's end sees the pool's end closed.
bool closedByPool(int upstream)
{
	char c;
	return ::read(upstream, &c, 1) == 0;
}

// Runs the loop for about ms milliseconds.
void runFor(Loop &loop, uint64_t ms)
{
	Timer stop(loop, [&loop] { loop.stop(); });
	stop.start(ms);
	loop.run();
}

} // namespace

TEST_CASE("the upstream pool hands back the newest open connection of a key", "[upstream]")
{
	auto loop = Loop::create();
	REQUIRE(loop);
	UpstreamPool pool(**loop);
	Pair a = makePair(**loop), b = makePair(**loop), other = makePair(**loop);
	Transport *newest = b.ours.get();
	pool.put("https://a.example:443", std::move(a.ours));
	pool.put("https://a.example:443", std::move(b.ours));
	pool.put("https://b.example:443", std::move(other.ours));
	CHECK(pool.idleCount() == 3);
	CHECK(!pool.take("https://c.example:443"));
	auto t = pool.take("https://a.example:443");
	CHECK(t.get() == newest);
	CHECK(pool.idleCount() == 2);
	CHECK(pool.reused() == 1);
}

TEST_CASE("the upstream pool keeps at most kMaxIdlePerUpstream connections of a key", "[upstream]")
{
	auto loop = Loop::create();
	REQUIRE(loop);
	UpstreamPool pool(**loop);
	std::vector<Pair> pairs;
	for (size_t i = 0; i < kMaxIdlePerUpstream + 1; ++i) {
		pairs.push_back(makePair(**loop));
		pool.put("https://a.example:443", std::move(pairs.back().ours));
	}
	CHECK(pool.idleCount() == kMaxIdlePerUpstream);
	// The one refused is closed; the pooled ones are open.
	CHECK(closedByPool(pairs.back().upstream.get()));
	CHECK(!closedByPool(pairs.front().upstream.get()));
}

TEST_CASE("an idle upstream that speaks or closes leaves the pool", "[upstream]")
{
	auto loop = Loop::create();
	REQUIRE(loop);
	UpstreamPool pool(**loop);
	Pair talker = makePair(**loop), quitter = makePair(**loop), quiet = makePair(**loop);
	pool.put("k", std::move(talker.ours));
	pool.put("k", std::move(quitter.ours));
	pool.put("k", std::move(quiet.ours));
	REQUIRE(::write(talker.upstream.get(), "x", 1) == 1);
	quitter.upstream.reset();
	runFor(**loop, 50);
	CHECK(pool.idleCount() == 1);
	CHECK(closedByPool(talker.upstream.get()));
	CHECK(!closedByPool(quiet.upstream.get()));
}

TEST_CASE("idle upstreams expire one timeout after they were parked, oldest first", "[upstream]")
{
	using std::chrono::milliseconds;
	// Margins of 150 ms or more on every side of each expiry, so that a
	// loaded machine's late timers cannot reorder what is checked.
	auto loop = Loop::create();
	REQUIRE(loop);
	UpstreamPool pool(**loop, milliseconds(600));
	Pair first = makePair(**loop), second = makePair(**loop), taken = makePair(**loop);
	pool.put("k", std::move(first.ours));
	pool.put("t", std::move(taken.ours));
	runFor(**loop, 300);
	pool.put("k", std::move(second.ours));
	// Taken before it expires: the pool's timer fires for it anyway and
	// must leave the connection, now the taker's, alone.
	auto mine = pool.take("t");
	REQUIRE(mine);
	CHECK(pool.idleCount() == 2);

	runFor(**loop, 450); // 750 ms after the first was parked
	CHECK(pool.idleCount() == 1);
	CHECK(closedByPool(first.upstream.get()));
	CHECK(!closedByPool(second.upstream.get()));
	CHECK(mine->state() == Transport::State::Open);

	runFor(**loop, 450); // 900 ms after the second
	CHECK(pool.idleCount() == 0);
	CHECK(closedByPool(second.upstream.get()));
	CHECK(mine->state() == Transport::State::Open);
	CHECK(!closedByPool(taken.upstream.get()));
}
