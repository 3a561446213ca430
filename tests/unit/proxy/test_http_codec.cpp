// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/text.h"
#include "daemon/proxy/http_codec.h"

using namespace gvm;
using namespace gvm::proxy;

namespace {

std::string dataPath(const std::string &name)
{
	const char *dir = std::getenv("GVM_TEST_DATA");
	return std::string(dir ? dir : "tests/data") + "/http/" + name;
}


// \r \n \t \0 \\ \xHH
std::string unescape(const std::string &text)
{
	std::string out;
	for (size_t i = 0; i < text.size(); ++i) {
		if (text[i] != '\\' || i + 1 == text.size()) {
			out += text[i];
			continue;
		}
		char c = text[++i];
		switch (c) {
		case 'r': out += '\r'; break;
		case 'n': out += '\n'; break;
		case 't': out += '\t'; break;
		case '0': out += '\0'; break;
		case '\\': out += '\\'; break;
		case 'x':
			out += static_cast<char>(hexDigitValue(text[i + 1]) * 16 + hexDigitValue(text[i + 2]));
			i += 2;
			break;
		default: out += '\\'; out += c; break;
		}
	}
	return out;
}

std::string escape(std::string_view bytes)
{
	static const char kHex[] = "0123456789abcdef";
	std::string out;
	for (char c : bytes) {
		unsigned char u = static_cast<unsigned char>(c);
		if (c == '\r') out += "\\r";
		else if (c == '\n') out += "\\n";
		else if (c == '\\') out += "\\\\";
		else if (u < 0x20 || u >= 0x7f) { out += "\\x"; out += kHex[u >> 4]; out += kHex[u & 15]; }
		else out += c;
	}
	return out;
}

struct Case {
	std::string name;
	std::string input;
	std::vector<std::string> methods; // responses: the request methods, in order
	bool eof = false;
	std::vector<std::string> expect;
	int line = 0;
};

std::vector<Case> loadCases(const std::string &file)
{
	std::ifstream in(dataPath(file));
	REQUIRE(in.good());
	std::vector<Case> cases;
	std::string line;
	int lineNo = 0;
	while (std::getline(in, line)) {
		++lineNo;
		if (line.empty() || line[0] == '#')
			continue;
		size_t sp = line.find(' ');
		std::string key = line.substr(0, sp);
		std::string rest = sp == std::string::npos ? std::string() : line.substr(sp + 1);
		if (key == "case") {
			cases.push_back(Case{});
			cases.back().name = rest;
			cases.back().line = lineNo;
			continue;
		}
		REQUIRE(!cases.empty());
		Case &c = cases.back();
		if (key == "in")
			c.input += unescape(rest);
		else if (key == "expect")
			c.expect.push_back(rest);
		else if (key == "method")
			c.methods.push_back(rest);
		else if (key == "eof")
			c.eof = true;
		else
			FAIL(file << ":" << lineNo << ": unknown key " << key);
	}
	return cases;
}

// Splittings of an input: whole, byte by byte, and at a random point.
std::vector<std::vector<size_t>> splittings(size_t size, std::mt19937 &rng)
{
	std::vector<std::vector<size_t>> out;
	out.push_back({size});
	std::vector<size_t> bytes(size, 1);
	out.push_back(bytes);
	size_t at = std::uniform_int_distribution<size_t>(0, size)(rng);
	out.push_back({at, size - at});
	return out;
}

std::string describe(const RequestHead &h)
{
	std::ostringstream s;
	s << "ok " << h.method << ' ' << (h.host.empty() ? "-" : h.host) << ' ' << h.port << ' '
	  << (h.path.empty() ? "-" : h.path) << (h.hasQuery ? "?" + h.query : "") << ' ' << toString(h.framing);
	if (h.framing == BodyFraming::ContentLength)
		s << ':' << h.contentLength;
	if (!h.keepAlive)
		s << " close";
	if (h.expectContinue)
		s << " continue";
	if (h.isUpgrade())
		s << " upgrade=" << h.upgrade;
	return s.str();
}

std::string describe(const ResponseHead &h)
{
	std::ostringstream s;
	s << "ok " << h.status << ' ' << toString(h.framing);
	if (h.framing == BodyFraming::ContentLength)
		s << ':' << h.contentLength;
	if (!h.keepAlive)
		s << " close";
	if (!h.upgrade.empty())
		s << " upgrade=" << h.upgrade;
	return s.str();
}

std::vector<std::string> runRequests(const std::string &input, const std::vector<size_t> &pieces)
{
	std::vector<std::string> out;
	std::string body;
	RequestParser parser(RequestParser::Callbacks{
		[&](const RequestHead &h) {
			out.push_back(describe(h));
			return HeadAction::Continue;
		},
		[&](std::string_view chunk) {
			CHECK(!chunk.empty());
			body += chunk;
		},
		[&] {
			if (!body.empty())
				out.push_back("body " + escape(body));
			body.clear();
			out.push_back("end");
		},
	});
	size_t pos = 0;
	for (size_t len : pieces) {
		auto n = parser.feed(std::string_view(input).substr(pos, len));
		if (!n) {
			out.push_back("error " + std::to_string(n.error().code()));
			// Failed is final: even good bytes are refused now.
			auto again = parser.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
			CHECK(!again);
			return out;
		}
		if (*n < len) {
			std::string rest = input.substr(pos + *n);
			if (parser.state() == RequestParser::State::Tunnel)
				out.push_back("tunnel " + escape(rest));
			else if (parser.state() == RequestParser::State::Closed)
				out.push_back("closed " + escape(rest));
			else
				out.push_back("stuck");
			return out;
		}
		pos += len;
	}
	if (parser.state() == RequestParser::State::Tunnel)
		out.push_back("tunnel ");
	if (!body.empty())
		out.push_back("partial " + escape(body));
	if (!parser.finish())
		out.push_back("truncated");
	return out;
}

std::vector<std::string> runResponses(const Case &c, const std::vector<size_t> &pieces)
{
	std::vector<std::string> out;
	std::string body;
	size_t next = 0;
	ResponseParser *self = nullptr;
	ResponseParser parser(ResponseParser::Callbacks{
		[&](const ResponseHead &h) { out.push_back("interim " + std::to_string(h.status)); },
		[&](const ResponseHead &h) {
			out.push_back(describe(h));
			return HeadAction::Continue;
		},
		[&](std::string_view chunk) { body += chunk; },
		[&] {
			if (!body.empty())
				out.push_back("body " + escape(body));
			body.clear();
			out.push_back("end");
			if (next < c.methods.size())
				self->expect(c.methods[next++]);
		},
	});
	self = &parser;
	parser.expect(c.methods.empty() ? "GET" : c.methods[next++]);
	size_t pos = 0;
	for (size_t len : pieces) {
		auto n = parser.feed(std::string_view(c.input).substr(pos, len));
		if (!n) {
			out.push_back("error " + std::to_string(n.error().code()));
			return out;
		}
		if (*n < len) {
			std::string rest = c.input.substr(pos + *n);
			out.push_back((parser.state() == ResponseParser::State::Tunnel ? "tunnel " : "closed ") +
				      escape(rest));
			return out;
		}
		pos += len;
	}
	if (c.eof) {
		auto done = parser.finish();
		if (!done)
			out.push_back("error " + std::to_string(done.error().code()));
	}
	return out;
}

std::string join(const std::vector<std::string> &lines)
{
	std::string out;
	for (const std::string &l : lines)
		out += l + "\n";
	return out;
}

RequestHead parseOne(const std::string &raw)
{
	RequestHead head;
	int heads = 0;
	RequestParser parser(RequestParser::Callbacks{
		[&](const RequestHead &h) {
			head = h;
			++heads;
			return HeadAction::Continue;
		},
		nullptr, nullptr});
	auto n = parser.feed(raw);
	INFO(escape(raw));
	REQUIRE(n);
	REQUIRE(heads == 1);
	return head;
}

int requestError(const std::string &raw)
{
	RequestParser parser(RequestParser::Callbacks{});
	auto n = parser.feed(raw);
	if (n)
		return 0;
	return n.error().code();
}

} // namespace

TEST_CASE("request cases parse the same in any split", "[http][request]")
{
	std::vector<Case> cases = loadCases("requests.txt");
	REQUIRE(cases.size() > 80);
	std::mt19937 rng(20240601);
	for (const Case &c : cases) {
		INFO("requests.txt:" << c.line << ": " << c.name);
		for (const std::vector<size_t> &pieces : splittings(c.input.size(), rng)) {
			INFO("pieces: " << pieces.size());
			CHECK(join(runRequests(c.input, pieces)) == join(c.expect));
		}
	}
}

TEST_CASE("response cases parse the same in any split", "[http][response]")
{
	std::vector<Case> cases = loadCases("responses.txt");
	REQUIRE(cases.size() > 20);
	std::mt19937 rng(20240602);
	for (const Case &c : cases) {
		INFO("responses.txt:" << c.line << ": " << c.name);
		for (const std::vector<size_t> &pieces : splittings(c.input.size(), rng)) {
			INFO("pieces: " << pieces.size());
			CHECK(join(runResponses(c, pieces)) == join(c.expect));
		}
	}
}

TEST_CASE("named limits", "[http][limits]")
{
	auto requestWithTarget = [](size_t lineBytes) {
		std::string prefix = "GET /";
		std::string suffix = " HTTP/1.1";
		std::string path(lineBytes - prefix.size() - suffix.size(), 'a');
		return prefix + path + suffix + "\r\nHost: a\r\n\r\n";
	};
	CHECK(requestError(requestWithTarget(kMaxRequestLineBytes)) == 0);
	CHECK(requestError(requestWithTarget(kMaxRequestLineBytes + 1)) == 414);

	auto requestWithHeaders = [](size_t count, size_t valueBytes) {
		std::string raw = "GET / HTTP/1.1\r\nHost: a\r\n";
		for (size_t i = 1; i < count; ++i)
			raw += "X-" + std::to_string(i) + ": " + std::string(valueBytes, 'v') + "\r\n";
		return raw + "\r\n";
	};
	CHECK(requestError(requestWithHeaders(kMaxHeaderCount, 1)) == 0);
	CHECK(requestError(requestWithHeaders(kMaxHeaderCount + 1, 1)) == 431);
	CHECK(requestError(requestWithHeaders(60, 1000)) == 0);
	CHECK(requestError(requestWithHeaders(70, 1000)) == 431);
	// One huge header line is refused before the head ends: no unbounded buffering.
	std::string endless = "GET / HTTP/1.1\r\nX: " + std::string(kMaxHeaderBytes, 'v');
	CHECK(requestError(endless) == 431);
	CHECK(requestError("GET /" + std::string(kMaxRequestLineBytes, 'a')) == 414);

	std::string chunked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
	CHECK(requestError(chunked + "1;" + std::string(kMaxChunkLineBytes - 10, 'e') + "\r\nx\r\n0\r\n\r\n") == 0);
	CHECK(requestError(chunked + "1;" + std::string(kMaxChunkLineBytes, 'e') + "\r\nx\r\n0\r\n\r\n") == 400);
	CHECK(requestError(chunked + std::string(2000, '0') + "1\r\nx\r\n0\r\n\r\n") == 400);
	std::string trailers = chunked + "0\r\n";
	for (size_t i = 0; i <= kMaxHeaderCount; ++i)
		trailers += "T: 1\r\n";
	CHECK(requestError(trailers + "\r\n") == 431);

	std::string leading;
	for (size_t i = 0; i < kMaxLeadingEmptyLines + 1; ++i)
		leading += "\r\n";
	CHECK(requestError(leading + "GET / HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
}

TEST_CASE("a 1 MiB chunked body streams through without being held", "[http][stream]")
{
	std::mt19937 rng(7);
	std::string body(1 << 20, '\0');
	for (char &c : body)
		c = static_cast<char>(rng());
	std::string wire = "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
	for (size_t pos = 0; pos < body.size();) {
		size_t n = std::min<size_t>(std::uniform_int_distribution<size_t>(1, 100000)(rng), body.size() - pos);
		char size[32];
		snprintf(size, sizeof size, "%zx;n=%zu\r\n", n, pos);
		wire += size;
		wire += body.substr(pos, n);
		wire += "\r\n";
		pos += n;
	}
	wire += "0\r\n\r\n";

	std::string received;
	size_t feedSize = 0;
	size_t pieces = 0;
	size_t maxChunk = 0;
	bool complete = false;
	RequestParser *self = nullptr;
	RequestParser parser(RequestParser::Callbacks{
		[](const RequestHead &) { return HeadAction::Continue; },
		[&](std::string_view chunk) {
			// Every emitted piece points into the bytes just fed: it
			// can never exceed them, and the parser holds nothing.
			CHECK(chunk.size() <= feedSize);
			CHECK(self->bufferedBytes() == 0);
			maxChunk = std::max(maxChunk, chunk.size());
			received += chunk;
			++pieces;
		},
		[&] { complete = true; },
	});
	self = &parser;
	for (size_t pos = 0; pos < wire.size();) {
		feedSize = std::min<size_t>(std::uniform_int_distribution<size_t>(1, 16384)(rng), wire.size() - pos);
		auto n = parser.feed(std::string_view(wire).substr(pos, feedSize));
		REQUIRE(n);
		REQUIRE(*n == feedSize);
		pos += feedSize;
	}
	CHECK(complete);
	CHECK(received.size() == body.size());
	CHECK(received == body);
	CHECK(pieces > 64);
	CHECK(maxChunk <= 16384);
	CHECK(parser.bufferedBytes() == 0);
}

TEST_CASE("onHead can pause before any body byte", "[http][pause]")
{
	std::string wire = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
			   "GET /b HTTP/1.1\r\nHost: a\r\n\r\n"
			   "GET /c HTTP/1.1\r\nHost: a\r\n\r\n";
	std::vector<std::string> events;
	RequestParser parser(RequestParser::Callbacks{
		[&](const RequestHead &h) {
			events.push_back("head " + h.path);
			return HeadAction::Pause;
		},
		[&](std::string_view chunk) { events.push_back("body " + std::string(chunk)); },
		[&] { events.push_back("end"); },
	});
	size_t headEnd = wire.find("hello");
	auto n = parser.feed(wire);
	REQUIRE(n);
	CHECK(*n == headEnd);
	CHECK(parser.state() == RequestParser::State::Paused);
	CHECK(events == std::vector<std::string>{"head /a"});
	auto none = parser.feed(std::string_view(wire).substr(*n));
	REQUIRE(none);
	CHECK(*none == 0);
	parser.resume();
	size_t pos = *n;
	n = parser.feed(std::string_view(wire).substr(pos));
	REQUIRE(n);
	pos += *n;
	CHECK(events == std::vector<std::string>{"head /a", "body hello", "end", "head /b"});
	// A bodiless request completes on resume().
	parser.resume();
	CHECK(events.back() == "end");
	n = parser.feed(std::string_view(wire).substr(pos));
	REQUIRE(n);
	parser.resume();
	CHECK(events == std::vector<std::string>{"head /a", "body hello", "end", "head /b", "end", "head /c", "end"});
	CHECK(parser.finish());
}

TEST_CASE("a head taken while paused still decides what follows it", "[http][pause]")
{
	// The caller moves each head out; the parser must still know the
	// body framing, keep-alive and tunnel of the request it took.
	std::vector<RequestHead> taken;
	RequestParser *self = nullptr;
	std::vector<std::string> events;
	RequestParser parser(RequestParser::Callbacks{
		[&](const RequestHead &) {
			taken.push_back(self->takeHead());
			return HeadAction::Pause;
		},
		[&](std::string_view chunk) { events.push_back("body " + std::string(chunk)); },
		[&] { events.push_back("end"); },
	});
	self = &parser;
	auto feedAll = [&](std::string_view wire) {
		for (size_t pos = 0; pos < wire.size();) {
			auto n = parser.feed(wire.substr(pos));
			REQUIRE(n);
			pos += *n;
			if (parser.state() != RequestParser::State::Paused)
				break;
			parser.resume();
		}
	};

	SECTION("keep-alive, then close")
	{
		feedAll("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
			"GET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
			"GET /c HTTP/1.1\r\nHost: a\r\n\r\n");
		REQUIRE(taken.size() == 2);
		CHECK(taken[0].path == "/a");
		CHECK(taken[0].contentLength == 5);
		CHECK(taken[1].path == "/b");
		CHECK_FALSE(taken[1].keepAlive);
		CHECK(events == std::vector<std::string>{"body hello", "end", "end"});
		CHECK(parser.state() == RequestParser::State::Closed);
	}
	SECTION("an upgrade leaves the rest to the tunnel")
	{
		const std::string wire = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
					 "GET /not-http HTTP/1.1\r\n\r\n";
		auto n = parser.feed(wire);
		REQUIRE(n);
		parser.resume();
		REQUIRE(taken.size() == 1);
		CHECK(taken[0].upgrade == "websocket");
		CHECK(parser.state() == RequestParser::State::Tunnel);
		auto rest = parser.feed(std::string_view(wire).substr(*n));
		REQUIRE(rest);
		CHECK(*rest == 0);
		CHECK(events.empty());
	}
}

TEST_CASE("request heads round-trip through the serializer", "[http][serialize]")
{
	std::string raw = "POST http://Example.com:8080/p/q?x=1 HTTP/1.1\r\n"
			  "Host: example.com:8080\r\n"
			  "User-Agent: t\r\n"
			  "Connection: keep-alive, X-Secret\r\n"
			  "X-Secret: s\r\n"
			  "Keep-Alive: timeout=5\r\n"
			  "Proxy-Connection: keep-alive\r\n"
			  "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
			  "TE: trailers\r\n"
			  "Trailer: X-Sum\r\n"
			  "Upgrade: h2c\r\n"
			  "Transfer-Encoding: chunked\r\n"
			  "Accept: */*\r\n"
			  "\r\n";
	RequestHead head = parseOne(raw);
	CHECK(head.form == TargetForm::Absolute);
	CHECK(!head.isUpgrade()); // Upgrade without Connection: upgrade
	auto out = serializeRequestHead(head);
	REQUIRE(out);
	CHECK(out->rfind("POST /p/q?x=1 HTTP/1.1\r\n", 0) == 0);
	for (const char *gone : {"X-Secret", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "TE:", "Trailer",
				 "Upgrade", "Connection"})
		CHECK(out->find(gone) == std::string::npos);
	RequestHead again = parseOne(*out);
	CHECK(again.method == head.method);
	CHECK(again.host == head.host);
	CHECK(again.port == head.port);
	CHECK(again.path == head.path);
	CHECK(again.query == head.query);
	CHECK(again.framing == BodyFraming::Chunked);
	CHECK(again.keepAlive);
	std::vector<std::string> names;
	for (const Header &h : again.headers)
		names.push_back(h.name);
	CHECK(names == std::vector<std::string>{"Host", "User-Agent", "Accept", "Transfer-Encoding"});
	// Serializing the re-parsed head is a fixed point.
	auto twice = serializeRequestHead(again);
	REQUIRE(twice);
	CHECK(*twice == *out);

	SECTION("websocket upgrade keeps Upgrade")
	{
		RequestHead ws = parseOne("GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
					  "Connection: Upgrade\r\nSec-WebSocket-Key: k\r\n\r\n");
		CHECK(ws.isWebSocket());
		auto s = serializeRequestHead(ws);
		REQUIRE(s);
		RequestHead back = parseOne(*s);
		CHECK(back.isWebSocket());
		CHECK(back.header("Sec-WebSocket-Key"));
	}
	SECTION("HTTP/1.0 without Host gains one; close survives")
	{
		RequestHead old = parseOne("GET https://a.example/x HTTP/1.0\r\n\r\n");
		CHECK(!old.keepAlive);
		auto s = serializeRequestHead(old);
		REQUIRE(s);
		CHECK(*s == "GET /x HTTP/1.0\r\nHost: a.example\r\n\r\n");
		old.keepAlive = true;
		old.version = HttpVersion::Http11;
		old.headers.push_back(Header{"Content-Length", "3"});
		old.framing = BodyFraming::ContentLength;
		old.contentLength = 3;
		s = serializeRequestHead(old);
		REQUIRE(s);
		RequestHead back = parseOne(*s);
		CHECK(back.keepAlive);
		CHECK(back.contentLength == 3);
	}
	SECTION("a caller-added header cannot split the head")
	{
		head.headers.push_back(Header{"X-Injected", "a\r\nEvil: 1"});
		CHECK(!serializeRequestHead(head));
		head.headers.back() = Header{"Bad Name", "1"};
		CHECK(!serializeRequestHead(head));
	}
}

TEST_CASE("response heads and denials round-trip", "[http][serialize]")
{
	auto parseResponse = [](const std::string &raw, std::string method, std::string *body) {
		ResponseHead head;
		bool done = false;
		ResponseParser parser(ResponseParser::Callbacks{
			nullptr,
			[&](const ResponseHead &h) {
				head = h;
				return HeadAction::Continue;
			},
			[&](std::string_view chunk) {
				if (body)
					*body += chunk;
			},
			[&] { done = true; }});
		parser.expect(method);
		auto n = parser.feed(raw);
		INFO(escape(raw));
		REQUIRE(n);
		CHECK(*n == raw.size());
		CHECK(done);
		return head;
	};

	std::string body;
	std::string denial = buildResponse(403, R"({"error":"denied by policy"})", false);
	ResponseHead h = parseResponse(denial, "GET", &body);
	CHECK(h.status == 403);
	CHECK(h.reason == "Forbidden");
	CHECK(!h.keepAlive);
	CHECK(body == R"({"error":"denied by policy"})");
	CHECK(*h.header("Content-Type") == "application/json");

	h = parseResponse(buildResponse(429, "{}", true), "GET", nullptr);
	CHECK(h.keepAlive);
	CHECK(h.contentLength == 2);

	ResponseHead up = parseResponse("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
					"Connection: Keep-Alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
					"\r\n3\r\nabc\r\n0\r\n\r\n",
					"GET", nullptr);
	auto s = serializeResponseHead(up);
	REQUIRE(s);
	CHECK(*s == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n");
	ResponseHead back = parseResponse(*s + "0\r\n\r\n", "GET", nullptr);
	CHECK(back.status == 200);
	CHECK(back.framing == BodyFraming::Chunked);
	CHECK(back.keepAlive);

	up.framing = BodyFraming::UntilClose;
	s = serializeResponseHead(up);
	REQUIRE(s);
	CHECK(s->find("Connection: close\r\n") != std::string::npos);

	// Every Connection header counts, its tokens in any case, however many
	// (16 of them, keep-alive and x-LATE included, are gathered at once).
	for (int tokens : {2, 14, 15, 40}) {
		INFO(tokens);
		std::string list;
		for (int i = 0; i < tokens; ++i)
			list += (i ? ", " : "") + std::string("x-filler-") + std::to_string(i);
		ResponseHead many = parseResponse("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nX-Early: 1\r\n"
						  "Connection: " + list + " ,, x-LATE\r\nX-Late: 2\r\nX-Kept: 3\r\n"
						  "Content-Length: 0\r\n\r\n",
						  "GET", nullptr);
		auto out = serializeResponseHead(many);
		REQUIRE(out);
		CHECK(*out == "HTTP/1.1 200 OK\r\nX-Early: 1\r\nX-Kept: 3\r\nContent-Length: 0\r\n\r\n");
	}
}

TEST_CASE("an error is final", "[http][request]")
{
	RequestParser parser(RequestParser::Callbacks{});
	auto n = parser.feed("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx");
	REQUIRE(!n);
	CHECK(n.error().domain() == ErrorDomain::Http);
	CHECK(n.error().code() == 400);
	CHECK(parser.state() == RequestParser::State::Failed);
	auto again = parser.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
	REQUIRE(!again);
	CHECK(again.error().code() == 400);
	CHECK(!parser.finish());
}

// Feeds `input` to a HeadReader in pieces of the given sizes (cycled) and
// says what it answered: "ok N complete HEAD", "ok incomplete" or the error.
std::string feedInPieces(const HeadReader::Limits &limits, const std::string &input, const std::vector<size_t> &sizes)
{
	HeadReader reader(limits);
	size_t pos = 0;
	for (size_t turn = 0; pos < input.size(); ++turn) {
		const size_t n = std::min(sizes[turn % sizes.size()], input.size() - pos);
		auto taken = reader.feed(std::string_view(input).substr(pos, n));
		if (!taken)
			return "error " + std::to_string(taken.error().code()) + " " + taken.error().message();
		if (reader.complete())
			return "ok " + std::to_string(pos + *taken) + " complete " + std::string(reader.head());
		REQUIRE(*taken == n);
		pos += n;
	}
	return "ok incomplete " + std::string(reader.head());
}

TEST_CASE("a head reads the same whole, byte by byte and in random pieces", "[http][head]")
{
	// Heads made of the characters that matter to the reader (CR, LF,
	// a control character) and field text, under tight limits, so that
	// every check fires somewhere: the answer, error included, must not
	// depend on how the bytes arrived.
	// A section at its limit once its last LF is in: what comes next is
	// judged as it is (a bare LF here), not as more of the section.
	const HeadReader::Limits tight{100, 10, 10, 414, 431, 400};
	CHECK(feedInPieces(tight, "GET / HTTP/1.1\r\nabcdefghi\r\n\n", {100}) ==
	      "error 400 bare LF in the message head");
	CHECK(feedInPieces(tight, "GET / HTTP/1.1\r\nabcdefghi\r\nx", {100}) == "error 431 header section too large");

	std::mt19937 rng(20261207);
	const std::string alphabet = "\r\n\r\nab: \x01";
	for (int iteration = 0; iteration < 20000; ++iteration) {
		HeadReader::Limits limits{5 + rng() % 30, 5 + rng() % 60, 1 + rng() % 6, 414, 431, 400};
		std::string input = rng() % 2 ? "GET / HTTP/1.1\r\n" : "";
		for (size_t i = 0, n = rng() % 120; i < n; ++i)
			input += alphabet[rng() % alphabet.size()];
		if (rng() % 2)
			input += "\r\n\r\n";
		const std::string whole = feedInPieces(limits, input, {input.size() + 1});
		INFO(std::quoted(input));
		REQUIRE(feedInPieces(limits, input, {1}) == whole);
		REQUIRE(feedInPieces(limits, input, {1 + rng() % 7, 1 + rng() % 13, 1 + rng() % 3}) == whole);
	}
}
