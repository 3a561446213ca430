// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/big_endian.h"
#include "common/loop.h"
#include "common/unique_fd.h"
#include "daemon/proxy/certificate_authority.h"
#include "daemon/proxy/dns_message.h"
#include "daemon/proxy/dns_server.h"
#include "daemon/proxy/proxy.h"
#include "daemon/proxy/tls_context.h"
#include "policy/policy.h"

using namespace gvm;
using namespace gvm::proxy;

namespace {

// --- building messages by hand -------------------------------------------

// Uncompressed wire form of a dotted name ("" = root).
std::string wireName(const std::string &name)
{
	std::string out;
	size_t start = 0;
	while (start < name.size()) {
		size_t dot = name.find('.', start);
		size_t end = dot == std::string::npos ? name.size() : dot;
		out.push_back(static_cast<char>(end - start));
		out += name.substr(start, end - start);
		start = end + 1;
	}
	out.push_back('\0');
	return out;
}

std::string header(uint16_t id, uint16_t flags, uint16_t qd, uint16_t an = 0, uint16_t ns = 0, uint16_t ar = 0)
{
	std::string out;
	putU16(out, id);
	putU16(out, flags);
	putU16(out, qd);
	putU16(out, an);
	putU16(out, ns);
	putU16(out, ar);
	return out;
}

std::string question(const std::string &name, uint16_t qtype, uint16_t qclass = kDnsClassIn)
{
	std::string out = wireName(name);
	putU16(out, qtype);
	putU16(out, qclass);
	return out;
}

std::string query(uint16_t id, const std::string &name, uint16_t qtype, uint16_t flags = kDnsFlagRd)
{
	return header(id, flags, 1) + question(name, qtype);
}

std::string opt(uint16_t payload, bool dnssecOk)
{
	std::string out(1, '\0');
	putU16(out, kDnsTypeOpt);
	putU16(out, payload);
	putU32(out, dnssecOk ? 0x8000 : 0);
	putU16(out, 0);
	return out;
}

// Writes names with RFC 1035 compression, the way real servers do.
class ResponseWriter
{
public:
	ResponseWriter(uint16_t id, uint16_t flags, const std::string &qname, uint16_t qtype)
		: qname_(qname), qtype_(qtype)
	{
		out_ = header(id, flags, 1);
		name(qname);
		putU16(out_, qtype);
		putU16(out_, kDnsClassIn);
	}

	void name(const std::string &text)
	{
		std::string rest = text;
		while (!rest.empty()) {
			if (auto it = seen_.find(rest); it != seen_.end()) {
				putU16(out_, static_cast<uint16_t>(0xc000 | it->second));
				return;
			}
			if (out_.size() < 0x3fff)
				seen_[rest] = out_.size();
			size_t dot = rest.find('.');
			std::string label = rest.substr(0, dot);
			out_.push_back(static_cast<char>(label.size()));
			out_ += label;
			rest = dot == std::string::npos ? "" : rest.substr(dot + 1);
		}
		out_.push_back('\0');
	}

	void a(const std::string &owner, const std::string &address, uint32_t ttl)
	{
		bool v6 = address.find(':') != std::string::npos;
		recordHead(owner, v6 ? policy::kDnsTypeAaaa : policy::kDnsTypeA, ttl);
		unsigned char bytes[16];
		REQUIRE(inet_pton(v6 ? AF_INET6 : AF_INET, address.c_str(), bytes) == 1);
		putU16(out_, v6 ? 16 : 4);
		out_.append(reinterpret_cast<const char *>(bytes), v6 ? 16 : 4);
		++an_;
	}

	void cname(const std::string &owner, const std::string &target, uint32_t ttl)
	{
		recordHead(owner, kDnsTypeCname, ttl);
		size_t lengthAt = out_.size();
		putU16(out_, 0);
		size_t start = out_.size();
		name(target);
		size_t length = out_.size() - start;
		out_[lengthAt] = static_cast<char>(length >> 8);
		out_[lengthAt + 1] = static_cast<char>(length & 0xff);
		++an_;
	}

	std::string finish()
	{
		std::string out = out_;
		out[6] = static_cast<char>(an_ >> 8);
		out[7] = static_cast<char>(an_ & 0xff);
		return out;
	}

private:
	void recordHead(const std::string &owner, uint16_t type, uint32_t ttl)
	{
		name(owner);
		putU16(out_, type);
		putU16(out_, kDnsClassIn);
		putU32(out_, ttl);
	}

	std::string qname_;
	uint16_t qtype_;
	std::string out_;
	std::map<std::string, size_t> seen_;
	uint16_t an_ = 0;
};

uint16_t idOf(const std::string &message)
{
	return static_cast<uint16_t>(static_cast<uint8_t>(message[0]) << 8 | static_cast<uint8_t>(message[1]));
}

uint16_t flagsOf(const std::string &message)
{
	return static_cast<uint16_t>(static_cast<uint8_t>(message[2]) << 8 | static_cast<uint8_t>(message[3]));
}

int rcodeOf(const std::string &message)
{
	return flagsOf(message) & 0x000f;
}

} // namespace

// --- parser ------------------------------------------------------------------

TEST_CASE("parseDnsQuery accepts valid queries", "[dns]")
{
	SECTION("a plain A query keeps the case on the wire, lower-cases the name")
	{
		auto q = parseDnsQuery(query(0x1234, "Api.Example.COM", policy::kDnsTypeA));
		REQUIRE(q);
		CHECK(q->id == 0x1234);
		CHECK(q->recursionDesired());
		CHECK(q->question.name == "api.example.com");
		CHECK(q->question.wireName == wireName("Api.Example.COM"));
		CHECK(q->question.qtype == policy::kDnsTypeA);
		CHECK(q->question.qclass == kDnsClassIn);
		CHECK_FALSE(q->ednsUdpPayload);
		CHECK(q->maxUdpAnswer() == kMaxDnsUdpBytes);
	}
	SECTION("the root name")
	{
		auto q = parseDnsQuery(query(1, "", 2));
		REQUIRE(q);
		CHECK(q->question.name.empty());
		CHECK(q->question.wireName == std::string(1, '\0'));
	}
	SECTION("an EDNS OPT record")
	{
		auto q = parseDnsQuery(header(7, kDnsFlagRd, 1, 0, 0, 1) + question("x.test", policy::kDnsTypeTxt) +
				       opt(4096, true));
		REQUIRE(q);
		CHECK(q->ednsUdpPayload == 4096);
		CHECK(q->ednsDnssecOk);
		CHECK(q->maxUdpAnswer() == 4096);
	}
	SECTION("underscores and hyphens, a 63-byte label and a 255-byte name")
	{
		CHECK(parseDnsQuery(query(1, "_dmarc.my-host.test", 16)));
		CHECK(parseDnsQuery(query(1, std::string(63, 'a') + ".test", 1)));
		// 3 * 64 + 62 + 1 = 255 bytes on the wire.
		std::string name = std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." +
				   std::string(61, 'd');
		REQUIRE(wireName(name).size() == kMaxDnsNameWireBytes);
		CHECK(parseDnsQuery(query(1, name, 1)));
	}
	SECTION("a backwards compression pointer into an additional record's name")
	{
		// The OPT owner must be the root, but a pointer to the root
		// byte of the question name is legal compression.
		std::string msg = header(9, 0, 1, 0, 0, 1) + question("a.test", 1);
		size_t rootAt = kDnsHeaderBytes + wireName("a.test").size() - 1;
		std::string o = opt(1232, false);
		putU16(msg, static_cast<uint16_t>(0xc000 | rootAt));
		msg += o.substr(1);
		auto q = parseDnsQuery(msg);
		REQUIRE(q);
		CHECK(q->ednsUdpPayload == 1232);
	}
}

TEST_CASE("parseDnsQuery refuses malformed queries precisely", "[dns]")
{
	struct Case {
		const char *what;
		std::string message;
		const char *error;
	};
	std::string selfPointer = header(1, 0, 1);
	putU16(selfPointer, 0xc000 | kDnsHeaderBytes); // points at itself
	putU16(selfPointer, 1);
	putU16(selfPointer, 1);
	std::string forwardPointer = header(1, 0, 1);
	putU16(forwardPointer, 0xc000 | 20);
	forwardPointer += std::string(8, '\0');
	// "a" then a pointer back to "a": backwards, but a loop.
	std::string twoStepLoop = header(1, 0, 1) + std::string("\x01" "a", 2);
	putU16(twoStepLoop, 0xc000 | kDnsHeaderBytes);
	putU16(twoStepLoop, 1);
	putU16(twoStepLoop, 1);
	std::string oversizedLabel = header(1, 0, 1) + std::string(1, '\x40') + std::string(64, 'a') + std::string(5, '\0');
	std::string longName = query(1, std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') +
						"." + std::string(62, 'd'),
				     1);
	std::string full = query(1, "example.test", 1);
	std::string twoQuestions = header(1, 0, 2) + question("a.test", 1) + question("b.test", 1);
	std::string dotInLabel = header(1, 0, 1) + std::string("\x03" "a.b\x04test", 10) + std::string(1, '\0');
	putU16(dotInLabel, 1);
	putU16(dotInLabel, 1);
	std::string badOptOwner = header(1, 0, 1, 0, 0, 1) + question("a.test", 1) + wireName("x") + opt(512, false).substr(1);

	std::vector<Case> cases = {
		{"empty", "", "message ends inside the header"},
		{"short header", full.substr(0, 11), "message ends inside the header"},
		{"cut inside a label", full.substr(0, 16), "label runs past the end of the message at offset 12"},
		{"cut before the type", full.substr(0, full.size() - 3), "message ends inside the question"},
		{"no terminating label", full.substr(0, kDnsHeaderBytes + 8), "name runs past the end"},
		{"pointer to itself", selfPointer, "compression pointer to offset 12 does not point backwards at offset 12"},
		{"pointer forwards", forwardPointer, "does not point backwards"},
		{"pointer loop", twoStepLoop, "compression pointer to offset 12 does not point backwards at offset 14"},
		{"truncated pointer", header(1, 0, 1) + std::string(1, '\xc0'), "truncated compression pointer"},
		{"64-byte label", oversizedLabel, "label length 64 is over 63"},
		{"256-byte name", longName, "name is longer than 255 bytes"},
		{"two questions", twoQuestions, "2 questions; exactly one is supported"},
		{"no question", header(1, 0, 0), "0 questions; exactly one is supported"},
		{"a response", header(1, kDnsFlagQr, 1) + question("a.test", 1), "QR is set"},
		{"opcode STATUS", header(1, 2 << 11, 1) + question("a.test", 1), "opcode 2 is not supported"},
		{"answers in a query", header(1, 0, 1, 1) + question("a.test", 1), "1 answer and 0 authority records"},
		{"too many additional records", header(1, 0, 1, 0, 0, 3) + question("a.test", 1), "3 additional records"},
		{"trailing bytes", full + "xx", "2 bytes after the last record"},
		{"a dot inside a label", dotInLabel, "label contains byte 0x2e"},
		{"a space", query(1, "a b.test", 1), "label contains byte 0x20"},
		{"a control byte", query(1, std::string("a\x01.test"), 1), "label contains byte 0x01"},
		{"an OPT record not owned by the root", badOptOwner, "OPT record not owned by the root"},
		{"two OPT records", header(1, 0, 1, 0, 0, 2) + question("a.test", 1) + opt(512, false) + opt(512, false),
		 "a second OPT record"},
		{"over the size limit", full + std::string(kMaxDnsQueryBytes, '\0'), "over the limit of 4096"},
	};
	for (const Case &c : cases) {
		INFO(c.what);
		auto q = parseDnsQuery(c.message);
		REQUIRE_FALSE(q);
		CHECK_THAT(q.error().message(), Catch::Contains(c.error));
	}
}

TEST_CASE("peekDnsId reads what it can of a broken message", "[dns]")
{
	CHECK_FALSE(peekDnsId("").id);
	CHECK_FALSE(peekDnsId("x").id);
	auto two = peekDnsId(std::string("\x12\x34", 2));
	CHECK(two.id == 0x1234);
	CHECK_FALSE(two.flags);
	CHECK_FALSE(two.response());
	CHECK(peekDnsId(header(1, kDnsFlagQr, 0)).response());
	CHECK(peekDnsId(header(1, 5 << 11, 0)).otherOpcode());
	CHECK_FALSE(peekDnsId(header(1, kDnsFlagRd, 0)).otherOpcode());
}

// --- builders ----------------------------------------------------------------

TEST_CASE("local answers echo the query and round-trip", "[dns]")
{
	auto q = parseDnsQuery(query(0xbeef, "Evil.Test", policy::kDnsTypeA, kDnsFlagRd | kDnsFlagCd));
	REQUIRE(q);
	for (DnsRcode rcode : {DnsRcode::NoError, DnsRcode::ServFail, DnsRcode::NxDomain, DnsRcode::Refused}) {
		INFO(toString(rcode));
		std::string answer = buildDnsResponse(*q, rcode);
		auto r = parseDnsResponse(answer);
		REQUIRE(r);
		CHECK(r->id == 0xbeef);
		CHECK(r->rcode() == rcode);
		CHECK(r->flags & kDnsFlagQr);
		CHECK(r->flags & kDnsFlagRa);
		CHECK(r->flags & kDnsFlagRd);
		CHECK(r->flags & kDnsFlagCd);
		CHECK_FALSE(r->truncated());
		CHECK(answersQuestion(*r, q->question));
		CHECK(r->addresses.empty());
		// The question as sent, case included.
		CHECK(answer.substr(kDnsHeaderBytes, q->question.wireName.size()) == q->question.wireName);
	}
	SECTION("RD clear stays clear; TC on request")
	{
		auto plain = parseDnsQuery(query(1, "a.test", 1, 0));
		REQUIRE(plain);
		auto r = parseDnsResponse(buildDnsResponse(*plain, DnsRcode::NoError, true));
		REQUIRE(r);
		CHECK_FALSE(r->flags & kDnsFlagRd);
		CHECK(r->truncated());
	}
	SECTION("EDNS queries get an OPT record back")
	{
		auto edns = parseDnsQuery(header(3, kDnsFlagRd, 1, 0, 0, 1) + question("a.test", 1) + opt(4096, true));
		REQUIRE(edns);
		std::string answer = buildDnsResponse(*edns, DnsRcode::NxDomain);
		CHECK(answer[11] == 1); // ARCOUNT
		CHECK(parseDnsResponse(answer));
	}
	SECTION("header-only FORMERR")
	{
		std::string answer = buildDnsHeaderOnlyResponse(0x4242, kDnsFlagRd, DnsRcode::FormErr);
		CHECK(answer.size() == kDnsHeaderBytes);
		auto r = parseDnsResponse(answer);
		REQUIRE(r);
		CHECK(r->id == 0x4242);
		CHECK(r->rcode() == DnsRcode::FormErr);
		CHECK_FALSE(r->question);
	}
}

TEST_CASE("the upstream query is rebuilt under a new id", "[dns]")
{
	auto q = parseDnsQuery(header(0x1111, kDnsFlagRd | kDnsFlagAd, 1, 0, 0, 1) + question("Api.Test", 1) +
			       opt(65000, true));
	REQUIRE(q);
	std::string upstream = buildDnsUpstreamQuery(*q, 0x2222);
	auto again = parseDnsQuery(upstream);
	REQUIRE(again);
	CHECK(again->id == 0x2222);
	CHECK(again->recursionDesired());
	CHECK_FALSE(again->flags & kDnsFlagAd); // only RD and CD are carried
	CHECK(again->question.wireName == q->question.wireName);
	CHECK(again->ednsUdpPayload == kDnsEdnsUdpPayload);
	CHECK(again->ednsDnssecOk);

	auto bare = parseDnsQuery(query(5, "a.test", 1));
	REQUIRE(bare);
	auto bareAgain = parseDnsQuery(buildDnsUpstreamQuery(*bare, 6));
	REQUIRE(bareAgain);
	CHECK_FALSE(bareAgain->ednsUdpPayload);
}

// --- upstream answers ----------------------------------------------------------

TEST_CASE("parseDnsResponse follows CNAME chains to addresses", "[dns]")
{
	ResponseWriter w(0x5555, kDnsFlagQr | kDnsFlagRd | kDnsFlagRa, "WWW.Example.com", policy::kDnsTypeA);
	w.cname("www.example.com", "cdn.example.net", 300);
	w.cname("cdn.example.net", "edge.cdn.example.net", 60);
	w.a("edge.cdn.example.net", "192.0.2.7", 30);
	w.a("edge.cdn.example.net", "192.0.2.8", 0x80000000u); // top bit: TTL 0
	w.a("edge.cdn.example.net", "2001:db8::7", 30);
	w.a("unrelated.example.org", "198.51.100.1", 30); // not in the chain
	auto r = parseDnsResponse(w.finish());
	REQUIRE(r);
	CHECK(r->id == 0x5555);
	CHECK(r->rcode() == DnsRcode::NoError);
	CHECK(r->chain == std::vector<std::string>{"www.example.com", "cdn.example.net", "edge.cdn.example.net"});
	REQUIRE(r->addresses.size() == 3);
	CHECK(r->addresses[0].address == "192.0.2.7");
	CHECK(r->addresses[0].owner == "edge.cdn.example.net");
	CHECK(r->addresses[0].ttl == 30);
	CHECK(r->addresses[1].ttl == 0);
	CHECK(r->addresses[2].address == "2001:db8::7");

	SECTION("a CNAME loop ends the chain")
	{
		ResponseWriter loop(1, kDnsFlagQr, "a.test", 1);
		loop.cname("a.test", "b.test", 10);
		loop.cname("b.test", "a.test", 10);
		loop.a("b.test", "192.0.2.1", 10);
		auto l = parseDnsResponse(loop.finish());
		REQUIRE(l);
		CHECK(l->chain == std::vector<std::string>{"a.test", "b.test"});
		CHECK(l->addresses.size() == 1);
	}
	SECTION("a chain longer than the limit is cut")
	{
		ResponseWriter longChain(1, kDnsFlagQr, "n0.test", 1);
		for (size_t i = 0; i < kMaxDnsCnameChain + 5; ++i)
			longChain.cname("n" + std::to_string(i) + ".test", "n" + std::to_string(i + 1) + ".test", 10);
		auto l = parseDnsResponse(longChain.finish());
		REQUIRE(l);
		CHECK(l->chain.size() == kMaxDnsCnameChain + 1);
	}
}

TEST_CASE("parseDnsResponse refuses broken answers", "[dns]")
{
	ResponseWriter good(1, kDnsFlagQr, "a.test", 1);
	good.a("a.test", "192.0.2.1", 10);
	std::string message = good.finish();
	REQUIRE(parseDnsResponse(message));

	SECTION("a query is not a response")
	{
		CHECK_FALSE(parseDnsResponse(query(1, "a.test", 1)));
	}
	SECTION("cut anywhere inside the records")
	{
		for (size_t n = kDnsHeaderBytes; n < message.size(); ++n) {
			INFO(n);
			CHECK_FALSE(parseDnsResponse(message.substr(0, n)));
		}
	}
	SECTION("an A record of the wrong size")
	{
		std::string bad = message;
		bad[bad.size() - 5] = 5; // rdlength 4 -> 5, and one byte more
		bad.push_back('\0');
		auto r = parseDnsResponse(bad);
		REQUIRE_FALSE(r);
		CHECK_THAT(r.error().message(), Catch::Contains("an A record of 5 bytes"));
	}
	SECTION("TC: the rest may be missing")
	{
		std::string truncated = message.substr(0, kDnsHeaderBytes + question("a.test", 1).size());
		truncated[2] = static_cast<char>(truncated[2] | (kDnsFlagTc >> 8));
		auto r = parseDnsResponse(truncated);
		REQUIRE(r);
		CHECK(r->truncated());
		CHECK(r->addresses.empty());
	}
	SECTION("another question")
	{
		auto r = parseDnsResponse(message);
		REQUIRE(r);
		auto other = parseDnsQuery(query(1, "b.test", 1));
		auto otherType = parseDnsQuery(query(1, "a.test", policy::kDnsTypeTxt));
		auto sameUpper = parseDnsQuery(query(1, "A.TEST", 1));
		CHECK_FALSE(answersQuestion(*r, other->question));
		CHECK_FALSE(answersQuestion(*r, otherType->question));
		CHECK(answersQuestion(*r, sameUpper->question));
	}
}

TEST_CASE("dnsTypeName", "[dns]")
{
	CHECK(dnsTypeName(1) == "A");
	CHECK(dnsTypeName(28) == "AAAA");
	CHECK(dnsTypeName(16) == "TXT");
	CHECK(dnsTypeName(10) == "NULL");
	CHECK(dnsTypeName(255) == "ANY");
	CHECK(dnsTypeName(15) == "TYPE15");
}

TEST_CASE("mutated messages never crash the parsers", "[dns]")
{
	// Not a fuzzer (that is the fuzz suite's job): a deterministic sweep of
	// byte flips over valid messages, so the sanitizer build checks bounds.
	ResponseWriter w(1, kDnsFlagQr, "www.example.com", 1);
	w.cname("www.example.com", "cdn.example.net", 10);
	w.a("cdn.example.net", "192.0.2.1", 10);
	std::vector<std::string> seeds = {
		w.finish(),
		header(1, kDnsFlagRd, 1, 0, 0, 1) + question("a.b.test", 1) + opt(1232, true),
	};
	uint32_t state = 12345;
	auto next = [&state] {
		state = state * 1103515245u + 12345u;
		return state >> 16;
	};
	size_t parsed = 0;
	for (const std::string &seed : seeds) {
		for (int i = 0; i < 20000; ++i) {
			std::string m = seed;
			for (uint32_t flips = 1 + next() % 4; flips > 0; --flips)
				m[next() % m.size()] = static_cast<char>(next() & 0xff);
			if (next() % 8 == 0)
				m.resize(next() % (m.size() + 1));
			parsed += parseDnsQuery(m).has_value();
			parsed += parseDnsResponse(m).has_value();
		}
	}
	CHECK(parsed > 0);
}

// --- the server on a real loop -------------------------------------------------

namespace {

constexpr const char *kPolicy = R"(version: 1
name: dns-test
default: deny
rules:
  - name: example
    hosts: [api.example.com, www.example.com, silent.example.com, big.example.com, "*.allowed.test"]
    action: allow
)";

constexpr const char *kMonitorPolicy = R"(version: 1
name: dns-monitor
mode: monitor
default: deny
rules:
  - name: example
    hosts: [api.example.com]
    action: allow
)";

sockaddr_in loopback(uint16_t port)
{
	sockaddr_in sin{};
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sin;
}

uint16_t portOf(int fd)
{
	sockaddr_in sin{};
	socklen_t length = sizeof(sin);
	REQUIRE(getsockname(fd, reinterpret_cast<sockaddr *>(&sin), &length) == 0);
	return ntohs(sin.sin_port);
}

UniqueFd boundSocket(int type, uint16_t port)
{
	UniqueFd fd(socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	REQUIRE(fd);
	int one = 1;
	setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sockaddr_in sin = loopback(port);
	if (bind(fd.get(), reinterpret_cast<sockaddr *>(&sin), sizeof(sin)) < 0)
		return UniqueFd();
	if (type == SOCK_STREAM)
		REQUIRE(listen(fd.get(), 16) == 0);
	return fd;
}

// A resolver on 127.0.0.1, UDP and TCP on one port, served from the test's
// polling loop. Answers by name: a few names have fixed answers, others get
// 192.0.2.99; "silent.example.com" gets nothing (over UDP or TCP);
// "big.example.com" gets TC
// over UDP and the full answer over TCP.
class FakeResolver
{
public:
	FakeResolver()
	{
		for (int attempt = 0; attempt < 20 && !tcp_; ++attempt) {
			udp_ = boundSocket(SOCK_DGRAM, 0);
			REQUIRE(udp_);
			tcp_ = boundSocket(SOCK_STREAM, portOf(udp_.get()));
		}
		REQUIRE(tcp_);
		port_ = portOf(udp_.get());
	}

	sockaddr_storage address() const
	{
		sockaddr_storage storage{};
		sockaddr_in sin = loopback(port_);
		std::memcpy(&storage, &sin, sizeof(sin));
		return storage;
	}

	void serve()
	{
		char buf[65536];
		for (;;) {
			sockaddr_storage from{};
			socklen_t length = sizeof(from);
			ssize_t n = recvfrom(udp_.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr *>(&from), &length);
			if (n <= 0)
				break;
			std::string answer = answerFor(std::string(buf, static_cast<size_t>(n)), false);
			if (!answer.empty())
				sendto(udp_.get(), answer.data(), answer.size(), 0, reinterpret_cast<sockaddr *>(&from), length);
		}
		for (;;) {
			if (!tcp_)
				break;
			UniqueFd fd(accept4(tcp_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
			if (!fd)
				break;
			connections_.push_back({std::move(fd), {}});
		}
		for (auto &c : connections_) {
			ssize_t n;
			while ((n = read(c.fd.get(), buf, sizeof(buf))) > 0)
				c.buffer.append(buf, static_cast<size_t>(n));
			if (c.buffer.size() < 2)
				continue;
			size_t length = static_cast<size_t>(static_cast<uint8_t>(c.buffer[0])) << 8 |
					static_cast<uint8_t>(c.buffer[1]);
			if (c.buffer.size() < 2 + length)
				continue;
			std::string answer = answerFor(c.buffer.substr(2, length), true);
			c.buffer.clear();
			if (answer.empty())
				continue;
			std::string framed;
			putU16(framed, static_cast<uint16_t>(answer.size()));
			framed += answer;
			REQUIRE(write(c.fd.get(), framed.data(), framed.size()) == static_cast<ssize_t>(framed.size()));
		}
	}

	// Connections to the TCP port are refused from now on.
	void closeTcp()
	{
		connections_.clear();
		tcp_.reset();
	}

	struct Seen {
		std::string name;
		uint16_t qtype;
		bool tcp;
	};
	const std::vector<Seen> &seen() const { return seen_; }
	bool sawName(const std::string &name) const
	{
		for (const Seen &s : seen_)
			if (s.name == name)
				return true;
		return false;
	}

private:
	std::string answerFor(const std::string &message, bool tcp)
	{
		auto q = parseDnsQuery(message);
		REQUIRE(q);
		seen_.push_back({q->question.name, q->question.qtype, tcp});
		const std::string &name = q->question.name;
		uint16_t flags = kDnsFlagQr | kDnsFlagRa | (q->flags & kDnsFlagRd);
		if (name == "silent.example.com")
			return "";
		if (name == "big.example.com" && !tcp) {
			ResponseWriter w(q->id, flags | kDnsFlagTc, name, q->question.qtype);
			return w.finish();
		}
		ResponseWriter w(q->id, flags, name, q->question.qtype);
		if (name == "api.example.com") {
			w.a(name, "192.0.2.10", 5);
		} else if (name == "short.allowed.test") {
			w.a(name, "192.0.2.30", 1);
		} else if (name == "www.example.com") {
			w.cname(name, "edge.example.net", 300);
			w.a("edge.example.net", "192.0.2.20", 300);
		} else if (name == "big.example.com") {
			for (int i = 1; i <= 40; ++i)
				w.a(name, "192.0.2." + std::to_string(100 + i), 60);
		} else {
			w.a(name, "192.0.2.99", 60);
		}
		return w.finish();
	}

	struct Connection {
		UniqueFd fd;
		std::string buffer;
	};
	UniqueFd udp_;
	UniqueFd tcp_;
	uint16_t port_ = 0;
	std::vector<Connection> connections_;
	std::vector<Seen> seen_;
};

// A proxy with a DNS server on loopback sockets, and a fake upstream, all on
// one loop that the test drives.
class Harness
{
public:
	explicit Harness(const char *policyText, DnsServerOptions options = {std::chrono::milliseconds(200),
									      std::chrono::milliseconds(300)})
	{
		auto loop = Loop::create();
		REQUIRE(loop);
		loop_ = std::move(*loop);
		auto loaded = policy::loadPolicy(policyText, "test.yaml");
		REQUIRE(loaded.diagnostics.empty());
		auto ca = CertificateAuthority::create("dns-test");
		REQUIRE(ca);
		auto tls = UpstreamTls::create("", "");
		REQUIRE(tls);
		// Designated: fields the test does not need keep their defaults.
		Proxy::Setup setup{.sandbox = "sb1",
				   .ca = std::move(*ca),
				   .upstreamTls = std::move(*tls),
				   .notify = [this](const std::string &method, nlohmann::json params,
						    Proxy::Delivery delivery) {
					   if (method == "decision") {
						   records.push_back(params["record"]);
						   deliveries.push_back(delivery);
					   }
				   }};
		auto proxy = Proxy::create(*loop_, std::move(setup), loaded.engine);
		REQUIRE(proxy);
		proxy_ = std::move(*proxy);
		auto server = DnsServer::create(*proxy_, resolver.address(), options);
		REQUIRE(server);
		server_ = std::move(*server);

		UniqueFd udp = boundSocket(SOCK_DGRAM, 0);
		REQUIRE(udp);
		udpPort_ = portOf(udp.get());
		REQUIRE(server_->addUdpSocket(std::move(udp)));
		UniqueFd tcp = boundSocket(SOCK_STREAM, 0);
		REQUIRE(tcp);
		tcpPort_ = portOf(tcp.get());
		REQUIRE(server_->addTcpListener(std::move(tcp)));

		client_ = UniqueFd(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
		REQUIRE(client_);
	}

	~Harness()
	{
		server_.reset();
		proxy_.reset();
		loop_.reset();
	}

	DnsServer &server() { return *server_; }

	// Runs the loop (and the fake resolver) until pred() or the deadline.
	bool runUntil(const std::function<bool()> &pred, std::chrono::milliseconds limit = std::chrono::milliseconds(3000))
	{
		auto deadline = std::chrono::steady_clock::now() + limit;
		while (std::chrono::steady_clock::now() < deadline) {
			uv_run(loop_->get(), UV_RUN_NOWAIT);
			resolver.serve();
			uv_run(loop_->get(), UV_RUN_NOWAIT);
			if (pred())
				return true;
			std::this_thread::sleep_for(std::chrono::milliseconds(1));
		}
		return false;
	}

	void runFor(std::chrono::milliseconds d)
	{
		runUntil([] { return false; }, d);
	}

	// Sends a UDP query and waits for the answer ("" = none in time).
	std::string askUdp(const std::string &message, std::chrono::milliseconds limit = std::chrono::milliseconds(3000))
	{
		sockaddr_in to = loopback(udpPort_);
		REQUIRE(sendto(client_.get(), message.data(), message.size(), 0, reinterpret_cast<sockaddr *>(&to),
			       sizeof(to)) == static_cast<ssize_t>(message.size()));
		std::string answer;
		runUntil(
			[&] {
				char buf[65536];
				ssize_t n = recv(client_.get(), buf, sizeof(buf), 0);
				if (n > 0)
					answer.assign(buf, static_cast<size_t>(n));
				return n > 0;
			},
			limit);
		return answer;
	}

	UniqueFd connectTcp()
	{
		UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
		REQUIRE(fd);
		sockaddr_in to = loopback(tcpPort_);
		REQUIRE(connect(fd.get(), reinterpret_cast<sockaddr *>(&to), sizeof(to)) == 0);
		REQUIRE(fcntl(fd.get(), F_SETFL, O_NONBLOCK) == 0);
		return fd;
	}

	void sendTcp(int fd, const std::string &message)
	{
		std::string framed;
		putU16(framed, static_cast<uint16_t>(message.size()));
		framed += message;
		REQUIRE(write(fd, framed.data(), framed.size()) == static_cast<ssize_t>(framed.size()));
	}

	// Reads one length-prefixed answer ("" = none in time).
	std::string readTcp(int fd, std::string &buffer)
	{
		std::string answer;
		runUntil([&] {
			char buf[65536];
			ssize_t n;
			while ((n = read(fd, buf, sizeof(buf))) > 0)
				buffer.append(buf, static_cast<size_t>(n));
			if (buffer.size() < 2)
				return false;
			size_t length = static_cast<size_t>(static_cast<uint8_t>(buffer[0])) << 8 |
					static_cast<uint8_t>(buffer[1]);
			if (buffer.size() < 2 + length)
				return false;
			answer = buffer.substr(2, length);
			buffer.erase(0, 2 + length);
			return true;
		});
		return answer;
	}

	FakeResolver resolver;
	std::vector<nlohmann::json> records;
	std::vector<Proxy::Delivery> deliveries;

private:
	std::unique_ptr<Loop> loop_;
	std::unique_ptr<Proxy> proxy_;
	std::unique_ptr<DnsServer> server_;
	uint16_t udpPort_ = 0;
	uint16_t tcpPort_ = 0;
	UniqueFd client_;
};

} // namespace

TEST_CASE("DnsServer resolves allowed names through the upstream", "[dns][loop]")
{
	Harness h(kPolicy);
	std::string answer = h.askUdp(query(0x1234, "API.example.com", policy::kDnsTypeA));
	REQUIRE_FALSE(answer.empty());
	CHECK(idOf(answer) == 0x1234);
	auto r = parseDnsResponse(answer);
	REQUIRE(r);
	CHECK(r->rcode() == DnsRcode::NoError);
	REQUIRE(r->addresses.size() == 1);
	CHECK(r->addresses[0].address == "192.0.2.10");
	CHECK(h.resolver.sawName("api.example.com"));
	// A TTL of 5 s is remembered for at least the floor.
	CHECK(h.server().namesFor("192.0.2.10") == std::vector<std::string>{"api.example.com"});
	CHECK(h.server().namesFor("192.0.2.11").empty());

	REQUIRE(h.records.size() == 1);
	const auto &rec = h.records[0];
	CHECK(rec["kind"] == "dns");
	CHECK(rec["method"] == "A");
	CHECK(rec["host"] == "api.example.com");
	CHECK(rec["port"] == 53);
	CHECK(rec["path"] == "");
	CHECK(rec["rule"] == "example");
	CHECK(rec["action"] == "allow");
	CHECK(rec["mode"] == "enforce");
	CHECK(rec["status"] == 0);
	CHECK(rec["bytes_out"] == query(0x1234, "API.example.com", 1).size());
	CHECK(rec["bytes_in"] == answer.size());
	CHECK(rec["request_id"] == "sb1-1");
	CHECK(rec["policy"] == "dns-test");
	CHECK(rec["policy_sha256"].get<std::string>().size() == 64);
	CHECK(rec["latency_us"].get<int64_t>() >= 0);
	CHECK(h.deliveries[0] == Proxy::Delivery::Batched);
	CHECK(h.server().queries() == 1);
	CHECK(h.server().forwarded() == 1);
	CHECK(h.server().denied() == 0);

	SECTION("a CNAME chain maps every name to the address, the asked name first")
	{
		std::string a = h.askUdp(query(7, "www.example.com", policy::kDnsTypeA));
		REQUIRE_FALSE(a.empty());
		CHECK(h.server().namesFor("192.0.2.20") ==
		      std::vector<std::string>{"www.example.com", "edge.example.net"});
	}
}

TEST_CASE("DnsServer denies locally without asking the upstream", "[dns][loop]")
{
	Harness h(kPolicy);

	SECTION("an unlisted name gets NXDOMAIN")
	{
		std::string answer = h.askUdp(query(0x0101, "evil.test", policy::kDnsTypeA));
		REQUIRE_FALSE(answer.empty());
		CHECK(idOf(answer) == 0x0101);
		CHECK(rcodeOf(answer) == 3);
		CHECK(flagsOf(answer) & kDnsFlagRd);
		CHECK(flagsOf(answer) & kDnsFlagRa);
		h.runFor(std::chrono::milliseconds(50));
		CHECK(h.resolver.seen().empty());
		REQUIRE(h.records.size() == 1);
		CHECK(h.records[0]["action"] == "deny");
		CHECK(h.records[0]["status"] == 3);
		CHECK(h.records[0]["host"] == "evil.test");
		CHECK(h.deliveries[0] == Proxy::Delivery::Now);
		CHECK(h.server().denied() == 1);
		CHECK(h.server().forwarded() == 0);
	}
	SECTION("a long name is REFUSED")
	{
		std::string name = std::string(60, 'x') + "." + std::string(60, 'y') + ".allowed.test";
		std::string answer = h.askUdp(query(2, name, policy::kDnsTypeA));
		REQUIRE_FALSE(answer.empty());
		CHECK(rcodeOf(answer) == 5);
		h.runFor(std::chrono::milliseconds(50));
		CHECK(h.resolver.seen().empty());
		REQUIRE(h.records.size() == 1);
		CHECK(h.records[0]["action"] == "deny");
		CHECK(h.records[0]["status"] == 5);
		CHECK_THAT(h.records[0]["reason"].get<std::string>(), Catch::Contains("likely exfiltration"));
	}
	SECTION("TXT to an unlisted name is REFUSED")
	{
		std::string answer = h.askUdp(query(3, "data.evil.test", policy::kDnsTypeTxt));
		REQUIRE_FALSE(answer.empty());
		CHECK(rcodeOf(answer) == 5);
		h.runFor(std::chrono::milliseconds(50));
		CHECK(h.resolver.seen().empty());
		REQUIRE(h.records.size() == 1);
		CHECK(h.records[0]["method"] == "TXT");
		CHECK(h.records[0]["status"] == 5);
	}
	SECTION("AAAA of an allowed name is NODATA, locally")
	{
		std::string answer = h.askUdp(query(4, "api.example.com", policy::kDnsTypeAaaa));
		REQUIRE_FALSE(answer.empty());
		CHECK(rcodeOf(answer) == 0);
		auto r = parseDnsResponse(answer);
		REQUIRE(r);
		CHECK(r->addresses.empty());
		CHECK(answer[7] == 0); // ANCOUNT
		h.runFor(std::chrono::milliseconds(50));
		CHECK(h.resolver.seen().empty());
		REQUIRE(h.records.size() == 1);
		CHECK(h.records[0]["action"] == "allow");
		CHECK(h.records[0]["method"] == "AAAA");
		CHECK(h.records[0]["status"] == 0);
	}
	SECTION("a malformed query gets FORMERR and a deny record")
	{
		std::string bad = header(0x7777, kDnsFlagRd, 2) + question("a.test", 1) + question("b.test", 1);
		std::string answer = h.askUdp(bad);
		REQUIRE(answer.size() == kDnsHeaderBytes);
		CHECK(idOf(answer) == 0x7777);
		CHECK(rcodeOf(answer) == 1);
		REQUIRE(h.records.size() == 1);
		CHECK(h.records[0]["action"] == "deny");
		CHECK(h.records[0]["status"] == 1);
		CHECK_THAT(h.records[0]["reason"].get<std::string>(),
			   Catch::StartsWith("malformed DNS query: 2 questions"));
	}
	SECTION("a message without an id is dropped, but recorded")
	{
		CHECK(h.askUdp(std::string(1, 'x'), std::chrono::milliseconds(100)).empty());
		REQUIRE(h.records.size() == 1);
		CHECK(h.records[0]["action"] == "deny");
		CHECK_THAT(h.records[0]["reason"].get<std::string>(), Catch::Contains("dropped"));
	}
	SECTION("a response is never answered")
	{
		CHECK(h.askUdp(header(1, kDnsFlagQr, 0), std::chrono::milliseconds(100)).empty());
		CHECK(h.records.size() == 1);
	}
}

TEST_CASE("DnsServer answers SERVFAIL when the upstream is silent", "[dns][loop]")
{
	Harness h(kPolicy);
	auto started = std::chrono::steady_clock::now();
	std::string answer = h.askUdp(query(0x0a0a, "silent.example.com", policy::kDnsTypeA));
	auto waited = std::chrono::steady_clock::now() - started;
	REQUIRE_FALSE(answer.empty());
	CHECK(idOf(answer) == 0x0a0a);
	CHECK(rcodeOf(answer) == 2);
	CHECK(waited >= std::chrono::milliseconds(150));
	CHECK(h.resolver.sawName("silent.example.com"));
	CHECK(h.server().pendingQueries() == 0);
	REQUIRE(h.records.size() == 1);
	CHECK(h.records[0]["action"] == "allow");
	CHECK(h.records[0]["status"] == 2);
	CHECK_THAT(h.records[0]["reason"].get<std::string>(), Catch::Contains("upstream timed out"));
}

TEST_CASE("DnsServer over TCP", "[dns][loop]")
{
	Harness h(kPolicy);
	UniqueFd fd = h.connectTcp();
	std::string buffer;

	SECTION("several queries on one connection, forwarded over TCP")
	{
		h.sendTcp(fd.get(), query(0x0b0b, "big.example.com", policy::kDnsTypeA));
		h.sendTcp(fd.get(), query(0x0c0c, "evil.test", policy::kDnsTypeA));
		std::string first = h.readTcp(fd.get(), buffer);
		REQUIRE_FALSE(first.empty());
		CHECK(idOf(first) == 0x0b0b);
		auto r = parseDnsResponse(first);
		REQUIRE(r);
		CHECK_FALSE(r->truncated());
		CHECK(r->addresses.size() == 40);
		CHECK(h.server().namesFor("192.0.2.140") == std::vector<std::string>{"big.example.com"});
		std::string second = h.readTcp(fd.get(), buffer);
		REQUIRE_FALSE(second.empty());
		CHECK(idOf(second) == 0x0c0c);
		CHECK(rcodeOf(second) == 3);
		REQUIRE(h.resolver.seen().size() == 1);
		CHECK(h.resolver.seen()[0].tcp);
		CHECK(h.records.size() == 2);
	}
	SECTION("a big answer over UDP says TC")
	{
		std::string answer = h.askUdp(query(0x0d0d, "big.example.com", policy::kDnsTypeA));
		REQUIRE_FALSE(answer.empty());
		CHECK(flagsOf(answer) & kDnsFlagTc);
		CHECK(idOf(answer) == 0x0d0d);
		REQUIRE(h.records.size() == 1);
		CHECK_THAT(h.records[0]["reason"].get<std::string>(), Catch::Contains("retry over TCP"));
	}
	SECTION("an idle client is cut off after the read timeout")
	{
		h.runFor(std::chrono::milliseconds(50));
		CHECK(h.server().tcpClients() == 1);
		bool closed = h.runUntil([&] {
			char c;
			return read(fd.get(), &c, 1) == 0;
		});
		CHECK(closed);
		CHECK(h.server().tcpClients() == 0);
	}
	SECTION("a silent upstream over TCP: SERVFAIL, and the connection goes on")
	{
		h.sendTcp(fd.get(), query(0x0e0e, "silent.example.com", policy::kDnsTypeA));
		std::string a = h.readTcp(fd.get(), buffer);
		REQUIRE_FALSE(a.empty());
		CHECK(idOf(a) == 0x0e0e);
		CHECK(rcodeOf(a) == 2);
		h.sendTcp(fd.get(), query(0x0e0f, "api.example.com", policy::kDnsTypeA));
		std::string b = h.readTcp(fd.get(), buffer);
		REQUIRE_FALSE(b.empty());
		CHECK(idOf(b) == 0x0e0f);
		CHECK(rcodeOf(b) == 0);
		REQUIRE(h.records.size() == 2);
		CHECK_THAT(h.records[0]["reason"].get<std::string>(), Catch::Contains("upstream timed out"));
	}
	SECTION("an oversized TCP message: FORMERR, then the connection closes")
	{
		std::string framed;
		putU16(framed, 0x2000);
		framed += header(0x0e11, kDnsFlagRd, 1);
		REQUIRE(write(fd.get(), framed.data(), framed.size()) == static_cast<ssize_t>(framed.size()));
		std::string a = h.readTcp(fd.get(), buffer);
		REQUIRE(a.size() == kDnsHeaderBytes);
		CHECK(idOf(a) == 0x0e11);
		CHECK(rcodeOf(a) == 1);
		CHECK(h.runUntil([&] {
			char c;
			return read(fd.get(), &c, 1) == 0;
		}));
		REQUIRE(h.records.size() == 1);
		CHECK_THAT(h.records[0]["reason"].get<std::string>(), Catch::Contains("over the limit of 4096"));
	}
	SECTION("a client that leaves mid-query still gets one record")
	{
		h.sendTcp(fd.get(), query(0x0e10, "silent.example.com", policy::kDnsTypeA));
		h.runUntil([&] { return h.resolver.sawName("silent.example.com"); });
		fd.reset();
		h.runUntil([&] { return h.server().tcpClients() == 0; });
		CHECK(h.server().tcpClients() == 0);
		CHECK(h.records.size() == 1);
	}
}

TEST_CASE("DnsServer answers SERVFAIL when the upstream refuses TCP", "[dns][loop]")
{
	Harness h(kPolicy);
	h.resolver.closeTcp();
	UniqueFd fd = h.connectTcp();
	std::string buffer;
	h.sendTcp(fd.get(), query(0x0e0e, "api.example.com", policy::kDnsTypeA));
	std::string a = h.readTcp(fd.get(), buffer);
	REQUIRE_FALSE(a.empty());
	CHECK(idOf(a) == 0x0e0e);
	CHECK(rcodeOf(a) == 2);
	REQUIRE(h.records.size() == 1);
	CHECK_THAT(h.records[0]["reason"].get<std::string>(), Catch::Contains("connecting to the upstream"));
}

TEST_CASE("DnsServer forgets names by TTL and by age", "[dns][loop]")
{
	DnsServerOptions options{std::chrono::milliseconds(200), std::chrono::milliseconds(300)};
	options.maxRememberedNames = 2;
	options.minRememberTtl = std::chrono::seconds(0);
	Harness h(kPolicy, options);

	SECTION("the least recently given out goes first")
	{
		for (const char *name : {"a.allowed.test", "b.allowed.test", "c.allowed.test"})
			REQUIRE_FALSE(h.askUdp(query(1, name, policy::kDnsTypeA)).empty());
		CHECK(h.server().namesFor("192.0.2.99") ==
		      std::vector<std::string>{"c.allowed.test", "b.allowed.test"});
		// Asking again makes a name the most recent.
		REQUIRE_FALSE(h.askUdp(query(1, "b.allowed.test", policy::kDnsTypeA)).empty());
		CHECK(h.server().namesFor("192.0.2.99") ==
		      std::vector<std::string>{"b.allowed.test", "c.allowed.test"});
	}
	SECTION("a 1-second TTL expires on the loop clock")
	{
		REQUIRE_FALSE(h.askUdp(query(1, "short.allowed.test", policy::kDnsTypeA)).empty());
		CHECK(h.server().namesFor("192.0.2.30") == std::vector<std::string>{"short.allowed.test"});
		h.runFor(std::chrono::milliseconds(1100));
		CHECK(h.server().namesFor("192.0.2.30").empty());
	}
}

TEST_CASE("DnsServer in monitor mode forwards and records would-deny", "[dns][loop]")
{
	Harness h(kMonitorPolicy);
	std::string answer = h.askUdp(query(0x0f0f, "evil.test", policy::kDnsTypeA));
	REQUIRE_FALSE(answer.empty());
	CHECK(rcodeOf(answer) == 0);
	CHECK(h.resolver.sawName("evil.test"));
	CHECK(h.server().namesFor("192.0.2.99") == std::vector<std::string>{"evil.test"});
	REQUIRE(h.records.size() == 1);
	CHECK(h.records[0]["action"] == "deny");
	CHECK(h.records[0]["mode"] == "monitor");
	CHECK(h.records[0]["status"] == 0);
	CHECK(h.deliveries[0] == Proxy::Delivery::Batched);
	CHECK(h.server().denied() == 0);
	CHECK(h.server().forwarded() == 1);
}
