// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <limits>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/audit_chain.h"
#include "common/c_ptr.h"
#include "common/fd_passing.h"
#include "common/json_rpc.h"
#include "common/json_writer.h"
#include "common/line_channel.h"
#include "common/loop.h"
#include "common/result.h"
#include "common/rfc3339.h"
#include "common/scope_exit.h"
#include "common/sha256.h"
#include "common/unique_fd.h"
#include "common/url.h"

using namespace gvm;

namespace {

std::string dataPath(const std::string &rel)
{
	const char *dir = std::getenv("GVM_TEST_DATA");
	REQUIRE(dir != nullptr);
	return std::string(dir) + "/" + rel;
}

bool fdIsOpen(int fd)
{
	return ::fcntl(fd, F_GETFD) >= 0;
}

Result<int> half(int x)
{
	if (x % 2)
		return fail(Error::fromErrno(EINVAL, "odd number " + std::to_string(x)));
	return x / 2;
}

Result<void> quarter(int x, int *out)
{
	auto h = half(x);
	if (!h)
		return fail(std::move(h).error().wrap("while halving"));
	auto q = half(*h);
	if (!q)
		return fail(std::move(q).error().wrap("while halving again"));
	*out = *q;
	return {};
}

} // namespace

TEST_CASE("Result carries a value or an error with its domain and context", "[result]")
{
	int out = 0;
	REQUIRE(quarter(12, &out));
	CHECK(out == 3);

	auto r = quarter(6, &out);
	REQUIRE_FALSE(r);
	CHECK(r.error().domain() == ErrorDomain::Errno);
	CHECK(r.error().code() == EINVAL);
	CHECK(r.error().message() == "while halving again: odd number 3: Invalid argument");

	Error e = Error::fromLibuv(-ECONNREFUSED, "connecting");
	CHECK(e.message() == "connecting: connection refused");
	CHECK(std::string(toString(ErrorDomain::Netlink)) == "netlink");
}

TEST_CASE("UniqueFd closes what it owns, once", "[fd]")
{
	int raw;
	{
		UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
		REQUIRE(fd);
		raw = fd.get();
		UniqueFd moved = std::move(fd);
		CHECK_FALSE(fd.isValid());
		CHECK(moved.get() == raw);
		CHECK(fdIsOpen(raw));
	}
	CHECK_FALSE(fdIsOpen(raw));

	UniqueFd kept(::open("/dev/null", O_RDONLY | O_CLOEXEC));
	int released = kept.release();
	CHECK(fdIsOpen(released));
	::close(released);
}

namespace {
int gFreed = 0;
struct Thing {
	int v;
};
void freeThing(Thing *t)
{
	++gFreed;
	delete t;
}
} // namespace

TEST_CASE("CPtr frees with the library's function", "[cptr]")
{
	{
		CPtr<Thing, freeThing> p(new Thing{7});
		CHECK(p->v == 7);
		CPtr<Thing, freeThing> empty;
	}
	CHECK(gFreed == 1);
}

TEST_CASE("Rollback undoes completed steps in reverse unless released", "[rollback]")
{
	std::vector<int> undone;
	{
		Rollback rb;
		rb.add([&] { undone.push_back(1); });
		rb.add([&] { undone.push_back(2); });
		rb.add([&] { undone.push_back(3); });
	}
	CHECK(undone == std::vector<int>{3, 2, 1});

	undone.clear();
	{
		Rollback rb;
		rb.add([&] { undone.push_back(1); });
		rb.release();
	}
	CHECK(undone.empty());
}

TEST_CASE("sha256Hex matches the FIPS 180-2 vectors", "[sha256]")
{
	CHECK(sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	CHECK(sha256Hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("LineFramer splits lines and refuses oversized messages", "[rpc]")
{
	rpc::LineFramer framer(16);
	std::vector<std::string> lines;
	REQUIRE(framer.feed("ab", &lines));
	CHECK(lines.empty());
	REQUIRE(framer.feed("c\r\nde\nf", &lines));
	CHECK(lines == std::vector<std::string>{"abc", "de"});
	CHECK(framer.buffered() == 1);

	lines.clear();
	// A partial line growing past the limit fails without a newline.
	auto r = framer.feed(std::string(16, 'x'), &lines);
	REQUIRE_FALSE(r);
	CHECK(r.error().code() == rpc::kMessageTooLarge);

	rpc::LineFramer exact(4);
	REQUIRE(exact.feed("abcd\n", &lines));
	CHECK(lines.back() == "abcd");
	REQUIRE_FALSE(exact.feed("abcde\n", &lines));
}

TEST_CASE("LineFramer enforces the 1 MiB message cap by default", "[rpc]")
{
	rpc::LineFramer framer;
	std::vector<std::string> lines;
	std::string big(rpc::kMaxMessageBytes, 'a');
	REQUIRE(framer.feed(big, &lines));
	REQUIRE_FALSE(framer.feed("a", &lines));
}

TEST_CASE("decodeRequest follows the table in tests/data/rpc/requests.tsv", "[rpc]")
{
	std::ifstream in(dataPath("rpc/requests.tsv"));
	REQUIRE(in);
	std::string line;
	int cases = 0;
	while (std::getline(in, line)) {
		if (line.empty() || line[0] == '#')
			continue;
		auto tab = line.find('\t');
		REQUIRE(tab != std::string::npos);
		const std::string expected = line.substr(0, tab);
		const std::string input = line.substr(tab + 1);
		INFO("input: " << input);
		rpc::DecodedRequest d = rpc::decodeRequest(input);
		if (expected.rfind("ok", 0) == 0) {
			REQUIRE(d.request);
			const bool notification = expected.rfind("ok-notification:", 0) == 0;
			CHECK(d.request->notification == notification);
			CHECK(d.request->method == expected.substr(expected.find(':') + 1));
		} else {
			REQUIRE_FALSE(d.request);
			CHECK(d.error.code == std::stoi(expected));
			CHECK_FALSE(d.error.message.empty());
			// The answer itself must be a valid JSON-RPC error.
			auto reply = rpc::decodeIncoming(rpc::encodeError(d.id, d.error));
			REQUIRE(reply);
			REQUIRE(reply->error);
			CHECK(reply->error->code == d.error.code);
		}
		++cases;
	}
	CHECK(cases >= 25);
}

TEST_CASE("decodeRequest keeps the id of an invalid request when it can", "[rpc]")
{
	auto d = rpc::decodeRequest(R"({"jsonrpc":"2.0","id":"x7","method":3})");
	REQUIRE_FALSE(d.request);
	CHECK(d.id == "x7");
	auto o = rpc::decodeRequest(std::string(rpc::kMaxMessageBytes + 1, ' '));
	CHECK(o.error.code == rpc::kMessageTooLarge);
}

TEST_CASE("encoders never throw on invalid UTF-8", "[rpc]")
{
	std::string bad = "caf\xc3\x28";
	std::string line = rpc::encodeResult(1, rpc::Json{{"name", bad}});
	CHECK(line.back() == '\n');
	auto in = rpc::decodeIncoming(line);
	REQUIRE(in);
	CHECK(in->isResponse);
	CHECK(in->result["name"].is_string());
}

TEST_CASE("decodeIncoming tells responses from notifications", "[rpc]")
{
	auto n = rpc::decodeIncoming(rpc::encodeNotification("decision", {{"action", "deny"}}));
	REQUIRE(n);
	CHECK_FALSE(n->isResponse);
	CHECK(n->method == "decision");
	CHECK(n->params["action"] == "deny");

	auto e = rpc::decodeIncoming(rpc::encodeError(5, {rpc::kNotFound, "no such sandbox", nullptr}));
	REQUIRE(e);
	REQUIRE(e->error);
	CHECK(e->error->code == rpc::kNotFound);
	CHECK(e->id == 5);

	CHECK_FALSE(rpc::decodeIncoming("nonsense"));
	CHECK_FALSE(rpc::decodeIncoming(R"({"jsonrpc":"2.0","id":1})"));
}

TEST_CASE("descriptors travel with SCM_RIGHTS", "[fd-passing]")
{
	int sv[2];
	REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	UniqueFd a(sv[0]), b(sv[1]);

	int pipefd[2];
	REQUIRE(::pipe2(pipefd, O_CLOEXEC) == 0);
	UniqueFd r(pipefd[0]), w(pipefd[1]);

	int fds[] = {r.get(), w.get()};
	auto sent = sendWithFds(a.get(), "x", fds);
	REQUIRE(sent);
	CHECK(*sent == 1);

	char buf[8];
	auto got = receiveWithFds(b.get(), buf, sizeof(buf));
	REQUIRE(got);
	CHECK(got->bytes == 1);
	REQUIRE(got->fds.size() == 2);
	CHECK_FALSE(got->fdsTruncated);
	// The received write end feeds the original read end.
	CHECK(::write(got->fds[1].get(), "hi", 2) == 2);
	char rb[2];
	CHECK(::read(r.get(), rb, 2) == 2);
	CHECK(::fcntl(got->fds[0].get(), F_GETFD) & FD_CLOEXEC);

	std::vector<int> tooMany(kMaxPassedFds + 1, r.get());
	CHECK_FALSE(sendWithFds(a.get(), "x", tooMany));
	CHECK_FALSE(sendWithFds(a.get(), "", fds));
}

namespace {

// Says "deleted" in log when it is destroyed.
struct Tracked {
	std::vector<std::string> *log;
	~Tracked() { log->push_back("deleted"); }
};

} // namespace

TEST_CASE("Loop runs posted work after the current callback and deletes later", "[loop]")
{
	auto loop = Loop::create();
	REQUIRE(loop);
	std::vector<std::string> order;
	Timer timer(**loop, [&] {
		(*loop)->post([&] { order.push_back("posted"); });
		(*loop)->deleteLater(std::unique_ptr<Tracked>(new Tracked{&order}));
		order.push_back("callback");
	});
	timer.start(1);
	(*loop)->run();
	CHECK(order == std::vector<std::string>{"callback", "posted", "deleted"});
}

TEST_CASE("a Timer is active from start until it fires or is stopped", "[loop]")
{
	auto loop = Loop::create();
	REQUIRE(loop);
	std::optional<bool> activeInOwnCallback;
	Timer once(**loop, [&] { activeInOwnCallback = once.active(); });
	Timer stopped(**loop, [] {});
	CHECK(!once.active());
	once.start(1);
	stopped.start(1000);
	CHECK(once.active());
	CHECK(stopped.active());
	stopped.stop();
	CHECK(!stopped.active());
	(*loop)->run();
	// A one-shot timer is no longer active in its own callback, so the
	// callback can start it again.
	REQUIRE(activeInOwnCallback);
	CHECK(!*activeInOwnCallback);
	CHECK(!once.active());
}

TEST_CASE("Loop::runPosted runs the work a stopped loop left queued, and what that queues", "[loop]")
{
	auto loop = Loop::create();
	REQUIRE(loop);
	std::vector<std::string> order;
	// Queued in the loop's last pass, after the point where that pass
	// runs queued work.
	(*loop)->post([&] {
		(*loop)->deleteLater(std::unique_ptr<Tracked>(new Tracked{&order}));
		(*loop)->post([&] {
			order.push_back("posted");
			(*loop)->post([&] { order.push_back("posted by posted"); });
		});
		(*loop)->stop();
	});
	(*loop)->run();
	CHECK(order.empty());
	(*loop)->runPosted();
	CHECK(order == std::vector<std::string>{"deleted", "posted", "posted by posted"});
	// Nothing is left for the loop: it has no more to do.
	(*loop)->run();
	CHECK(order.size() == 3);
}

namespace {

// What the peer of a LineChannel can read now, without waiting.
std::string readAvailable(int fd)
{
	std::string out;
	char buf[4096];
	for (;;) {
		ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n <= 0)
			return out;
		out.append(buf, static_cast<size_t>(n));
	}
}

// A LineChannel that only writes, on a socketpair whose other end (peer)
// the test reads.
struct WritingChannel {
	UniqueFd peer;
	std::unique_ptr<LineChannel> channel;
};

WritingChannel writingChannel(Loop &loop)
{
	int sv[2];
	REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	WritingChannel out{UniqueFd(sv[1]), nullptr};
	out.channel = std::make_unique<LineChannel>(
		loop, UniqueFd(sv[0]), LineChannel::Callbacks{[](const std::string &, std::vector<UniqueFd> &) {}, nullptr},
		"test");
	return out;
}

} // namespace

TEST_CASE("LineChannel batches lines until the loop waits, and send() keeps the order", "[line-channel]")
{
	auto loop = Loop::create();
	REQUIRE(loop);
	WritingChannel pair = writingChannel(**loop);
	const UniqueFd &peer = pair.peer;
	LineChannel &channel = *pair.channel;
	std::string seenInCallback, seenAfterBatch, seenAfterSend;
	Timer first(**loop, [&] {
		channel.sendBatched("one\n");
		channel.sendBatched("two\n");
		// Still inside this loop pass: nothing has been written.
		seenInCallback = readAvailable(peer.get());
	});
	Timer second(**loop, [&] {
		seenAfterBatch = readAvailable(peer.get());
		channel.sendBatched("three\n");
		channel.send("four\n"); // writes what was batched before it, then itself
		seenAfterSend = readAvailable(peer.get());
		channel.close();
	});
	first.start(1);
	second.start(20);
	(*loop)->run();
	CHECK(seenInCallback.empty());
	CHECK(seenAfterBatch == "one\ntwo\n");
	CHECK(seenAfterSend == "three\nfour\n");
}

TEST_CASE("LineChannel writes batches at most once per batch interval", "[line-channel]")
{
	auto loop = Loop::create();
	REQUIRE(loop);
	WritingChannel pair = writingChannel(**loop);
	const UniqueFd &peer = pair.peer;
	LineChannel &channel = *pair.channel;
	// Long enough that a slow machine's late timers cannot blur it.
	channel.setBatchInterval(std::chrono::milliseconds(400));
	std::string afterFirst, afterSecond, late;
	Timer first(**loop, [&] { channel.sendBatched("one\n"); }); // after a quiet spell: before the loop waits
	Timer second(**loop, [&] {
		afterFirst = readAvailable(peer.get());
		channel.sendBatched("two\n"); // within the interval: held
		channel.sendBatched("three\n");
	});
	Timer check(**loop, [&] { afterSecond = readAvailable(peer.get()); });
	Timer end(**loop, [&] {
		late = readAvailable(peer.get());
		channel.close();
	});
	first.start(1);
	second.start(20);
	check.start(120);
	end.start(1000);
	(*loop)->run();
	CHECK(afterFirst == "one\n");
	CHECK(afterSecond.empty());
	CHECK(late == "two\nthree\n");
}

TEST_CASE("LineChannel passes descriptors with their line, whatever the reads merge", "[line-channel]")
{
	auto loop = Loop::create();
	REQUIRE(loop);
	int sv[2];
	REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	std::vector<std::pair<std::string, size_t>> got; // line, descriptors with it
	UniqueFd received;
	std::unique_ptr<LineChannel> receiver;
	LineChannel sender(**loop, UniqueFd(sv[0]), {[](const std::string &, std::vector<UniqueFd> &) {}, nullptr},
			   "sender");
	int pipeFds[2];
	REQUIRE(::pipe2(pipeFds, O_CLOEXEC) == 0);
	UniqueFd pipeRead(pipeFds[0]);
	// All three lines are in the socket before the receiver reads: the
	// kernel hands "before" and "with-fd" over in one read.
	sender.send("before\n");
	std::vector<UniqueFd> passed;
	passed.emplace_back(pipeFds[1]);
	sender.send("with-fd\n", std::move(passed));
	sender.send("after\n");
	Timer guard(**loop, [&] {
		receiver->close();
		sender.close();
	});
	receiver = std::make_unique<LineChannel>(
		**loop, UniqueFd(sv[1]),
		LineChannel::Callbacks{[&](const std::string &line, std::vector<UniqueFd> &fds) {
					       got.emplace_back(line, fds.size());
					       if (!fds.empty())
						       received = std::move(fds[0]);
					       if (got.size() == 3) {
						       receiver->close();
						       sender.close();
						       guard.stop();
					       }
				       },
				       nullptr},
		"receiver");
	guard.start(5000);
	(*loop)->run();
	REQUIRE(got.size() == 3);
	CHECK(got[0] == std::make_pair(std::string("before"), size_t{0}));
	CHECK(got[1] == std::make_pair(std::string("with-fd"), size_t{1}));
	CHECK(got[2] == std::make_pair(std::string("after"), size_t{0}));
	// The descriptor received is the pipe's write end.
	REQUIRE(received);
	REQUIRE(::write(received.get(), "x", 1) == 1);
	char c = 0;
	CHECK(::read(pipeRead.get(), &c, 1) == 1);
	CHECK(c == 'x');
}

TEST_CASE("JsonObjectWriter writes what nlohmann reads back, invalid UTF-8 replaced as dumpJson does", "[json-writer]")
{
	static constexpr char kControls[] = "nul \0 and controls \x01\x1f\t\n\r\b\f";
	const std::vector<std::string> texts = {
		"",
		"plain",
		"quote \" backslash \\ slash /",
		std::string(kControls, sizeof(kControls) - 1),
		"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",        // valid 2, 3 and 4 bytes
		"bad \xff lead, \xc3 cut, \xe0\x80\x80 overlong",   // invalid
		"surrogate \xed\xa0\x80, too big \xf4\x90\x80\x80", // invalid
		"\x7f del",
	};
	for (const std::string &text : texts) {
		INFO(rpc::dumpJson(text));
		std::string out;
		JsonObjectWriter w(out);
		w.string("s", text).number("n", -42).raw("o", "{\"x\":null}");
		w.close();
		auto parsed = rpc::Json::parse(out, nullptr, false);
		REQUIRE(!parsed.is_discarded());
		// What the standard encoder makes of the same bytes.
		auto expected = rpc::Json::parse(rpc::dumpJson(text));
		CHECK(parsed["s"] == expected);
		CHECK(parsed["n"] == -42);
		CHECK(parsed["o"] == rpc::Json{{"x", nullptr}});
	}
}

TEST_CASE("parseUrl splits what policies match on", "[url]")
{
	auto u = parseUrl("HTTPS://API.GitHub.com/graphql?x=1#frag");
	REQUIRE(u);
	CHECK(u->scheme == "https");
	CHECK(u->host == "api.github.com");
	CHECK(u->port == 443);
	CHECK(u->path == "/graphql");
	CHECK(u->query == "x=1");

	auto p = parseUrl("http://[::1]:8080");
	REQUIRE(p);
	CHECK(p->host == "::1");
	CHECK(p->port == 8080);
	CHECK(p->path == "/");

	CHECK_FALSE(parseUrl("ftp://example.com/"));
	CHECK_FALSE(parseUrl("example.com/path"));
	CHECK_FALSE(parseUrl("http://github.com@evil.example/"));
	CHECK_FALSE(parseUrl("http://host:0/"));
	CHECK_FALSE(parseUrl("http://host:99999/"));
	CHECK_FALSE(parseUrl("http:///path"));
	CHECK_FALSE(parseUrl("http://ho st/"));
}

TEST_CASE("rfc3339 writes UTC times, to the second or the microsecond", "[time]")
{
	using namespace std::chrono;
	const system_clock::time_point t{microseconds(1234567890123456LL)};
	CHECK(rfc3339(t, TimePrecision::Micros) == "2009-02-13T23:31:30.123456Z");
	CHECK(rfc3339(t, TimePrecision::Seconds) == "2009-02-13T23:31:30Z");
	// The same second again (formatted once), then the next one.
	CHECK(rfc3339(t + microseconds(7), TimePrecision::Micros) == "2009-02-13T23:31:30.123463Z");
	CHECK(rfc3339(t + microseconds(876544), TimePrecision::Micros) == "2009-02-13T23:31:31.000000Z");
	CHECK(rfc3339(t + hours(24 * 366), TimePrecision::Micros) == "2010-02-14T23:31:30.123456Z");
	CHECK(rfc3339(system_clock::time_point{microseconds(-500000)}, TimePrecision::Micros) ==
	      "1969-12-31T23:59:59.500000Z");
	CHECK(rfc3339(system_clock::time_point{}, TimePrecision::Seconds) == "1970-01-01T00:00:00Z");
}

TEST_CASE("audit records hash canonically, whatever order their keys were set in", "[audit]")
{
	nlohmann::json a = {{"host", "x.example"}, {"action", "deny"}, {"hash", "ignored"}};
	nlohmann::json b;
	b["action"] = "deny";
	b["host"] = "x.example";
	CHECK(canonicalAuditRecord(a) == canonicalAuditRecord(b));
	CHECK(canonicalAuditRecord(a) == R"({"action":"deny","host":"x.example"})");

	std::string h1 = sealAuditRecord(a, 1, kGenesisHash);
	std::string h2 = sealAuditRecord(b, 1, kGenesisHash);
	CHECK(h1 == h2);
	CHECK(a["hash"] == h1);
	// hash = SHA-256(prev || canonical record without hash)
	CHECK(h1 == sha256Hex(std::string(kGenesisHash) +
			      R"({"action":"deny","host":"x.example","prev":")" + kGenesisHash + R"(","seq":1})"));

	nlohmann::json c = b;
	CHECK(sealAuditRecord(c, 2, h1) != h1);

	std::istringstream log(rpc::dumpJson(a) + "\n" + rpc::dumpJson(c) + "\n");
	AuditVerifyReport ok = verifyAuditLog(log);
	CHECK(ok.status == AuditVerifyReport::Status::Intact);
	CHECK(ok.records == 2);

	std::istringstream empty("");
	CHECK(verifyAuditLog(empty).status == AuditVerifyReport::Status::Intact);
	std::istringstream garbage("not json\n");
	AuditVerifyReport bad = verifyAuditLog(garbage);
	CHECK(bad.status == AuditVerifyReport::Status::Broken);
	CHECK(bad.line == 1);
}

namespace {

// A random record: keys around "hash" in sort order, values of every
// scalar kind, strings with escapes, multi-byte and (when `invalidUtf8`)
// invalid UTF-8.
nlohmann::json randomRecord(std::mt19937 &rng, bool invalidUtf8)
{
	static const std::vector<std::string> kKeys = {"action", "h", "ha", "hash2", "host", "i", "kind", "path",
						       "prev", "seq", "ts", "zz", "a\"b", "\t", "caf\xc3\xa9", ""};
	auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
	auto randomText = [&] {
		static const std::string kPieces[] = {"x", "\"", "\\", "\n", "\x01", "\x1f", "\x7f", "/",
						      "\xc3\xa9", "\xf0\x9f\x98\x80", "\xff", "\xc3", "\xed\xa0\x80"};
		const size_t valid = invalidUtf8 ? std::size(kPieces) : std::size(kPieces) - 3;
		std::string text;
		for (size_t n = pick(12); n > 0; --n)
			text += kPieces[pick(valid)];
		return text;
	};
	nlohmann::json record = nlohmann::json::object();
	for (size_t n = pick(kKeys.size()); n > 0; --n) {
		const std::string &key = kKeys[pick(kKeys.size())];
		switch (pick(6)) {
		case 0: record[key] = randomText(); break;
		case 1: record[key] = -static_cast<int64_t>(pick(1000000)); break;
		case 2: record[key] = std::numeric_limits<uint64_t>::max() - pick(3); break;
		case 3: record[key] = pick(2) == 1; break;
		case 4: record[key] = nullptr; break;
		default: record[key] = pick(100000); break;
		}
	}
	return record;
}

} // namespace

TEST_CASE("an AuditRecord seals into exactly the line sealAuditRecord and dumpJson write", "[audit]")
{
	std::mt19937 rng(20261207);
	std::string prev = kGenesisHash;
	for (int i = 0; i < 3000; ++i) {
		const bool invalidUtf8 = i % 2 == 1;
		const nlohmann::json original = randomRecord(rng, invalidUtf8);
		INFO(rpc::dumpJson(original));
		const uint64_t seq = static_cast<uint64_t>(i) + 1;

		nlohmann::json expected = original;
		const std::string expectedHash = sealAuditRecord(expected, seq, prev);
		AuditRecord fromTree = AuditRecord::fromJson(original);
		CHECK(fromTree.seal(seq, prev) == rpc::dumpJson(expected));
		CHECK(fromTree.text("hash") == expectedHash);

		// The worker's text, read flat, seals as its parsed tree does.
		const std::string text = rpc::dumpJson(original);
		nlohmann::json parsed = nlohmann::json::parse(text);
		sealAuditRecord(parsed, seq, prev);
		auto flat = AuditRecord::parseFlat(text);
		REQUIRE(flat);
		CHECK(flat->seal(seq, prev) == rpc::dumpJson(parsed));
		prev = expectedHash;
	}
}

TEST_CASE("AuditRecord::parseFlat accepts exactly what nlohmann reads as a flat object, with the same content", "[audit]")
{
	// Keys and values near the plain form's edges: escapes, non-ASCII,
	// raw control bytes, leading zeros, "-0", 18 to 20 digits, fractions,
	// cut-off literals, nesting; separators with JSON and non-JSON space.
	static const std::vector<std::string> kKeys = {"\"a\"",	  "\"b\"",     "\"host\"", "\"a\\\"b\"", "\"caf\xc3\xa9\"",
						       "\"\\u0041\"", "\"\x01\"", "\"\"",     "\"hash\"",   "a",
						       "\"x"};
	static const std::vector<std::string> kValues = {
		"\"x\"", "\"a\\\"b\"", "\"\\u00e9\"", "\"\xc3\xa9\"", "\"\xff\"", "\"\x7f\"", "\"\x01\"", "\"\\ud800\"",
		"0", "-0", "01", "-5", "-05", "123456789012345678", "-123456789012345678", "1234567890123456789",
		"18446744073709551615", "18446744073709551616", "-9223372036854775808", "1.5", "1e3", "1E3", "-", "true",
		"false", "null", "tru", "nul", "truex", "[]", "{}", "\"x"};
	static const std::vector<std::string> kSpace = {"", "", "", " ", "\t", "\n", "\r", " \n ", "\f"};
	std::mt19937 rng(20261207);
	auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
	auto space = [&] { return kSpace[pick(kSpace.size())]; };
	// Values nlohmann reads as a fraction or a container.
	static const std::set<std::string> kNotFlat = {"18446744073709551616", "1.5", "1e3", "1E3", "[]", "{}"};
	size_t plainAccepted = 0;
	for (int i = 0; i < 5000; ++i) {
		// Mostly plain texts (known-good keys and values), some anything.
		const bool plainOnly = i % 3 != 0;
		std::string text = space() + "{" + space();
		bool anyNotFlat = false; // also for a key that is repeated later
		for (size_t n = pick(6), k = 0; k < n; ++k) {
			if (k > 0)
				text += space() + "," + space();
			text += plainOnly ? kKeys[pick(3)] : kKeys[pick(kKeys.size())];
			text += space() + ":" + space();
			const std::string &value = plainOnly
							   ? kValues[std::vector<size_t>{0, 8, 11, 13, 14, 23, 24, 25}[pick(8)]]
							   : kValues[pick(kValues.size())];
			anyNotFlat = anyNotFlat || kNotFlat.contains(value);
			text += value;
		}
		text += space() + "}" + space();
		if (pick(20) == 0)
			text += "x";
		INFO(text);

		const nlohmann::json parsed = nlohmann::json::parse(text, nullptr, false);
		const bool flat = !parsed.is_discarded() && parsed.is_object() && !anyNotFlat;
		auto record = AuditRecord::parseFlat(text);
		REQUIRE(record.has_value() == flat);
		if (!flat)
			continue;
		plainAccepted += plainOnly;
		AuditRecord expected = AuditRecord::fromJson(parsed);
		CHECK(record->seal(1, kGenesisHash) == expected.seal(1, kGenesisHash));
	}
	CHECK(plainAccepted > 500); // the plain form was read many times
}

TEST_CASE("AuditRecord edits seal as the same edits of a JSON tree do", "[audit]")
{
	// gvmd's edits of a worker's record: keys erased, set anew, set again
	// and erased after being set, sealed twice; in random order.
	static const std::vector<std::string> kKeys = {"a", "hash", "host", "policy", "prev", "sandbox",
						       "seq", "ts", "uid", "v", "zz", "\"q\"", "\xc3\xa9"};
	std::mt19937 rng(20261207);
	auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
	std::string prev = kGenesisHash;
	for (int i = 0; i < 2000; ++i) {
		nlohmann::json tree = randomRecord(rng, i % 4 == 3);
		const std::string text = rpc::dumpJson(tree);
		INFO(text);
		auto record = AuditRecord::parseFlat(text);
		REQUIRE(record);
		for (size_t n = pick(12), k = 0; k < n; ++k) {
			const std::string &key = kKeys[pick(kKeys.size())];
			switch (pick(3)) {
			case 0:
				record->erase(key);
				tree.erase(key);
				break;
			case 1:
				record->setString(key, "v\"" + std::to_string(k));
				tree[key] = "v\"" + std::to_string(k);
				break;
			default:
				record->setNumber(key, k);
				tree[key] = k;
				break;
			}
			CHECK(record->contains(key) == tree.contains(key));
		}
		for (int round = 0; round < 2; ++round) {
			const uint64_t seq = static_cast<uint64_t>(2 * i + round) + 1;
			const std::string hash = sealAuditRecord(tree, seq, prev);
			CHECK(record->seal(seq, prev) == rpc::dumpJson(tree));
			CHECK(record->text("hash") == hash);
			prev = hash;
		}
	}
}

TEST_CASE("AuditRecord reads only flat objects, and edits keep the canonical order", "[audit]")
{
	for (std::string_view bad : {"", "[]", "\"x\"", "1", "{\"a\":{}}", "{\"a\":[1]}", "{\"a\":1.5}", "{\"a\":1e3}",
				     "{\"a\":1", "{\"a\":1}x", "{\"a\":1}{}", "{\"a\":\"\xff\"}", "{\"a\":\"\\ud800\"}",
				     "{a:1}", "{\"a\":99999999999999999999999}"}) {
		INFO(bad);
		CHECK_FALSE(AuditRecord::parseFlat(bad));
	}

	// A repeated key keeps its last value, as nlohmann's parser does.
	auto dup = AuditRecord::parseFlat(R"({"b":1,"a":"x","b":"two","a":null})");
	REQUIRE(dup);
	CHECK(dup->text("b") == "two");
	CHECK(dup->text("a") == "");
	CHECK(dup->contains("a"));
	CHECK_FALSE(dup->contains("c"));

	auto r = AuditRecord::parseFlat(R"({"port":443,"host":"x.example","ok":true,"note":"a\"b"})");
	REQUIRE(r);
	CHECK(r->text("port") == "443");
	CHECK(r->text("ok") == "true");
	CHECK(r->text("note") == "a\"b");
	r->erase("ok");
	r->erase("absent");
	r->setString("sandbox", "s1");
	r->setNumber("uid", 1000);
	r->setString("host", "y.example");
	const std::string line = r->seal(1, kGenesisHash);
	const std::string hash = r->text("hash");
	CHECK(line == R"({"hash":")" + hash + R"(","host":"y.example","note":"a\"b","port":443,"prev":")" + kGenesisHash +
			      R"(","sandbox":"s1","seq":1,"uid":1000})");
	std::istringstream log(line + "\n");
	CHECK(verifyAuditLog(log).status == AuditVerifyReport::Status::Intact);

	// A member read as plain text and then given a value that needs
	// escaping is written escaped.
	auto plain = AuditRecord::parseFlat(R"({"host":"x.example","port":443})");
	REQUIRE(plain);
	plain->setString("host", "q\"uote\n\xff");
	nlohmann::json tree = {{"host", "q\"uote\n\xff"}, {"port", 443}};
	sealAuditRecord(tree, 1, kGenesisHash);
	CHECK(plain->seal(1, kGenesisHash) == rpc::dumpJson(tree));
}
