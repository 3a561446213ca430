// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <http_parser.h>

#include "common/result.h"

namespace gvm::proxy {

// Named limits on what an agent (or an upstream) controls in a message head.
// A request line longer than kMaxRequestLineBytes is answered 414; a header
// section (everything after the request line) longer than kMaxHeaderBytes,
// or with more than kMaxHeaderCount field lines, is answered 431.
constexpr size_t kMaxRequestLineBytes = 8 * 1024;
constexpr size_t kMaxHeaderBytes = 64 * 1024;
constexpr size_t kMaxHeaderCount = 128;
// Empty lines (CRLF) tolerated before a request line (RFC 9112 §2.2).
constexpr size_t kMaxLeadingEmptyLines = 8;
// A chunk-size line, extensions included: longer ones are extension abuse.
constexpr size_t kMaxChunkLineBytes = 1024;
// Chunk sizes above this are refused (also rules out 64-bit overflow).
constexpr uint64_t kMaxChunkSize = (uint64_t{1} << 62) - 1;
// Content-Length values above this are refused as overflow.
constexpr uint64_t kMaxContentLength = (uint64_t{1} << 62) - 1;

enum class HttpVersion {
	Http10,
	Http11,
};

const char *toString(HttpVersion version);

// How the end of a message body is found.
enum class BodyFraming {
	None,          // no body
	ContentLength, // exactly contentLength bytes (possibly 0)
	Chunked,       // Transfer-Encoding: chunked (the only coding accepted)
	UntilClose,    // responses only: the body ends when the upstream closes
};

const char *toString(BodyFraming framing);

// What the onHead callback asks of the parser.
enum class HeadAction {
	Continue, // go on with the body (or the next message)
	Pause,    // consume nothing more until resume()
};

// How a request target was written (RFC 9112 §3.2).
enum class TargetForm {
	Origin,    // /path?query, host from the Host header
	Absolute,  // http://host:port/path?query (explicit proxy)
	Authority, // host:port, CONNECT only
	Asterisk,  // *, OPTIONS only
};

const char *toString(TargetForm form);

struct Header {
	std::string name;  // as sent
	std::string value; // without leading and trailing whitespace
};

using Headers = std::vector<Header>;

// First value of the header called name (ASCII case-insensitive), or nullptr.
const std::string *findHeader(const Headers &headers, std::string_view name);

// A parsed, validated request head. The parser fills every field; a proxy may
// edit it (e.g. keepAlive, headers) before serializeRequestHead().
struct RequestHead {
	std::string method; // case-sensitive token, e.g. "GET"
	std::string target; // as sent
	HttpVersion version = HttpVersion::Http11;
	Headers headers;    // in order, names as sent

	bool keepAlive = true;       // from version and Connection
	bool expectContinue = false; // Expect: 100-continue on an HTTP/1.1 request
	std::string upgrade;         // Upgrade protocol when upgrading ("websocket"), else empty
	BodyFraming framing = BodyFraming::None;
	uint64_t contentLength = 0;  // with BodyFraming::ContentLength

	// The target decomposed.
	TargetForm form = TargetForm::Origin;
	std::string scheme; // "http" or "https" for absolute-form, else empty
	std::string host;   // lower-case, no trailing dot, IPv6 without brackets; empty
	                    // only for an HTTP/1.0 origin-form request without Host
	uint16_t port = 80; // explicit, else the scheme's default (80 for origin-form)
	std::string path;   // "/..." ("*" for asterisk-form, empty for CONNECT)
	std::string query;  // after '?', without it
	bool hasQuery = false;

	bool isConnect() const { return method == "CONNECT"; }
	bool isUpgrade() const { return !upgrade.empty(); }
	bool isWebSocket() const;
	// CONNECT or Upgrade: after the head, the connection carries another protocol.
	bool isTunnel() const { return isConnect() || isUpgrade(); }
	const std::string *header(std::string_view name) const { return findHeader(headers, name); }
};

// A parsed, validated response head.
struct ResponseHead {
	HttpVersion version = HttpVersion::Http11;
	int status = 200;
	std::string reason;
	Headers headers;

	bool keepAlive = true;
	std::string upgrade; // 101: the Upgrade protocol
	BodyFraming framing = BodyFraming::None;
	uint64_t contentLength = 0; // with BodyFraming::ContentLength (also kept for HEAD)

	const std::string *header(std::string_view name) const { return findHeader(headers, name); }
};

// Collects one message head from a byte stream, a building block of the
// parsers below. It enforces the line discipline before anything else looks
// at the bytes: every line ends in CRLF (a bare CR or bare LF is an error),
// the first line and the header section are bounded, and so is the number of
// field lines. It buffers at most the head itself (bounded by the limits).
// Owned by one parser, used on its thread; reset() between messages.
class HeadReader
{
public:
	struct Limits {
		size_t firstLineBytes;
		size_t headerBytes;
		size_t headerCount;
		int firstLineStatus; // answered when the first line is too long
		int headerStatus;    // answered when the header section is too large
		int syntaxStatus;    // answered for malformed lines
	};

	explicit HeadReader(Limits limits) : limits_(limits) {}

	// Consumes bytes until the head is complete (its final CRLF included)
	// and returns how many it took; the rest belongs to the body.
	Result<size_t> feed(std::string_view data);
	bool complete() const { return complete_; }
	// The head without leading empty lines, final empty line included.
	std::string_view head() const { return buf_; }
	// Nothing of a next head received (leading empty lines aside).
	bool empty() const { return buf_.empty(); }
	size_t bufferedBytes() const { return buf_.size(); }
	void reset();

private:
	// Takes the bytes of a field line (or of the final empty line) up to
	// and including its LF; returns how many it took.
	Result<size_t> feedFieldLine(std::string_view data);

	Limits limits_;
	std::string buf_;
	size_t lineStart_ = 0;   // offset of the current line in buf_
	size_t headerStart_ = 0; // offset of the first field line
	size_t lines_ = 0;       // complete lines, the first line included
	size_t leadingEmpty_ = 0;
	bool complete_ = false;
};

// Validates a message body's framing byte by byte ahead of http_parser, a
// building block of the parsers below. http_parser is lenient where a proxy
// must not be (chunk extensions may hold bare LF, their length is unbounded,
// trailer lines are not checked); this reader finds the exact end of the
// body under the strict grammar and refuses anything else, so what
// http_parser decodes is only ever what this reader accepted. It holds no
// body bytes: only counters and a state. Owned by one parser, on its thread.
class BodyReader
{
public:
	explicit BodyReader(int errorStatus, int trailerStatus)
		: errorStatus_(errorStatus), trailerStatus_(trailerStatus)
	{
	}

	void start(BodyFraming framing, uint64_t contentLength);
	// Returns how many bytes of data belong to the body; done() once the
	// last one was scanned.
	Result<size_t> scan(std::string_view data);
	bool done() const { return phase_ == Phase::Done; }

private:
	enum class Phase {
		Length, UntilClose,
		SizeStart, SizeDigits, SizeSpace, SizeExt, SizeLf,
		Data, DataCr, DataLf,
		TrailerStart, TrailerName, TrailerValue, TrailerLf, FinalLf,
		Done,
	};

	Result<void> scanChunkByte(char c);

	int errorStatus_;
	int trailerStatus_;
	Phase phase_ = Phase::Done;
	uint64_t remaining_ = 0; // Length / Data bytes left, or the chunk size being read
	size_t lineBytes_ = 0;   // bytes of the current chunk-size line
	size_t trailerBytes_ = 0;
	size_t trailerCount_ = 0;
};

// Drives one http_parser over bytes the strict readers above already
// accepted, and reports the decoded body; a building block of the parsers
// below. It is re-initialised for every message, so a pipelined message never
// inherits state. Owned by one parser, on its thread; not copyable (the C
// parser points back at it).
class HttpParserDriver
{
public:
	explicit HttpParserDriver(std::function<void(std::string_view)> onBody);
	HttpParserDriver(const HttpParserDriver &) = delete;
	HttpParserDriver &operator=(const HttpParserDriver &) = delete;

	// Starts a message; skipBody tells http_parser there is no body.
	void begin(http_parser_type type, bool skipBody);
	// Feeds bytes; all must be consumed without an error.
	Result<void> execute(std::string_view data, int errorStatus);
	// Signals the end of the stream (read-until-close bodies).
	Result<void> executeEof(int errorStatus);

	bool headersComplete() const { return headersComplete_; }
	bool messageComplete() const { return messageComplete_; }
	const http_parser &parser() const { return parser_; }

private:
	static int onHeadersComplete(http_parser *parser);
	static int onBodyData(http_parser *parser, const char *at, size_t length);
	static int onMessageComplete(http_parser *parser);

	std::function<void(std::string_view)> onBody_;
	http_parser parser_;
	http_parser_settings settings_;
	bool skipBody_ = false;
	bool headersComplete_ = false;
	bool messageComplete_ = false;
};

// Streaming parser for the requests an agent sends on one connection (the
// untrusted side). It is fed whatever the socket read returned, in any split;
// it emits each request head once it is complete and validated, then the
// decoded (de-chunked) body as it arrives, never buffering it, then the end of
// the message, and goes on with the next pipelined request. Anything
// ambiguous (request smuggling vectors, obsolete syntax, limits) is an Error
// in the Http domain whose code is the status to answer; after one, the
// parser stays failed. CONNECT and Upgrade requests stop it after the head:
// the remaining bytes belong to the tunnel. Owned by the proxy connection
// that reads the agent socket; single-threaded (the worker's loop thread);
// lives as long as that connection. Callbacks run inside feed()/resume() and
// must not destroy the parser (use deferred deletion).
class RequestParser
{
public:
	enum class State {
		Head,   // reading a request head
		Paused, // onHead asked to pause; feed() consumes nothing until resume()
		Body,   // reading a body
		Tunnel, // after a CONNECT / Upgrade head: the rest is not HTTP
		Closed, // after a request without keep-alive: the rest is ignored
		Failed, // after an error: feed() returns it again
	};

	struct Callbacks {
		std::function<HeadAction(const RequestHead &)> onHead;
		std::function<void(std::string_view)> onBody; // decoded bytes, never empty
		std::function<void()> onMessageComplete;      // not called for tunnels
	};

	explicit RequestParser(Callbacks callbacks);

	// Consumes bytes and returns how many. Fewer than data.size() are consumed
	// only when the parser is Paused, Tunnel or Closed: in Tunnel state the
	// unconsumed bytes are the first tunnel bytes.
	Result<size_t> feed(std::string_view data);
	// Continues after a Pause: enters the body, or completes a bodiless
	// request (calling onMessageComplete from here).
	void resume();
	// The agent closed its side: fine between requests, a 400 mid-request.
	Result<void> finish();

	State state() const { return state_; }
	// The head of the current (or last) request, unless taken.
	const RequestHead &head() const { return head_; }
	// Moves the current request's head out (from onHead or later, before
	// the next head): the parser keeps what it still needs of it.
	RequestHead takeHead() { return std::move(head_); }
	// Bytes held by the parser: at most one head, never a body.
	size_t bufferedBytes() const { return headReader_.bufferedBytes(); }

private:
	Result<void> startMessage();
	void afterHead();
	void completeMessage();
	Result<size_t> feedBody(std::string_view data);
	Failure failWith(Error error);

	Callbacks callbacks_;
	HeadReader headReader_;
	BodyReader bodyReader_;
	HttpParserDriver driver_;
	RequestHead head_;
	// Of the current head, what the parser needs after onHead.
	bool tunnel_ = false;
	bool keepAlive_ = true;
	State state_ = State::Head;
	Error error_{ErrorDomain::Http, 0, {}};
};

// Streaming parser for the responses an upstream sends on one connection.
// Before each response the caller says which request method it answers
// (expect()), since HEAD and CONNECT change the framing. Interim 1xx
// responses (100 Continue and others) are reported through onInterim; the
// final head through onHead; body bytes as they arrive, never buffered;
// read-until-close bodies end with finish(). A 101 (or a 2xx to CONNECT) ends
// parsing after the head: the remaining bytes belong to the tunnel. Errors
// are Http-domain Errors with code 502; after one the parser stays failed.
// Owned by the proxy connection that reads the upstream socket; single-
// threaded (the worker's loop thread); lives as long as that connection.
// Callbacks must not destroy the parser.
class ResponseParser
{
public:
	enum class State {
		Idle,   // no response expected: bytes are an error
		Head,   // reading a response head
		Paused, // onHead asked to pause
		Body,
		Tunnel, // after 101 or a 2xx to CONNECT
		Closed, // after a response without keep-alive
		Failed,
	};

	struct Callbacks {
		std::function<void(const ResponseHead &)> onInterim; // 1xx but 101
		std::function<HeadAction(const ResponseHead &)> onHead;
		std::function<void(std::string_view)> onBody;
		std::function<void()> onMessageComplete; // not called for tunnels
	};

	explicit ResponseParser(Callbacks callbacks);

	// The next response answers a request with this method.
	void expect(std::string_view requestMethod);
	// As RequestParser::feed(); in Idle state any byte is an error.
	Result<size_t> feed(std::string_view data);
	void resume();
	// The upstream closed: completes a read-until-close body (also when
	// paused on its head: there is no more body to wait for); a 502 when a
	// response is cut short.
	Result<void> finish();

	State state() const { return state_; }
	const ResponseHead &head() const { return head_; }
	size_t bufferedBytes() const { return headReader_.bufferedBytes(); }

private:
	Result<bool> startMessage(); // false: interim response, keep reading heads
	void afterHead();
	void completeMessage();
	Failure failWith(Error error);

	Callbacks callbacks_;
	HeadReader headReader_;
	BodyReader bodyReader_;
	HttpParserDriver driver_;
	ResponseHead head_;
	std::string requestMethod_;
	State state_ = State::Idle;
	Error error_{ErrorDomain::Http, 0, {}};
};

// The request head for the upstream hop: origin-form target (path?query),
// Host added when missing, hop-by-hop headers removed (Connection and the
// headers it names, Keep-Alive, Proxy-Connection, Proxy-Authorization, TE,
// Trailer, Transfer-Encoding, Upgrade), then "Transfer-Encoding: chunked"
// for a chunked body and Connection as keepAlive / upgrade say. Fails (500)
// on a name or value that could split the head (a caller-added header).
// keepAlive, when given, stands for head.keepAlive (the hop's own choice),
// so the head need not be copied to change it.
Result<std::string> serializeRequestHead(const RequestHead &head, bool keepAlive);
inline Result<std::string> serializeRequestHead(const RequestHead &head)
{
	return serializeRequestHead(head, head.keepAlive);
}

// The response head for the agent hop, with the same hop-by-hop treatment;
// framing UntilClose writes no length and "Connection: close".
Result<std::string> serializeResponseHead(const ResponseHead &head, bool keepAlive);
inline Result<std::string> serializeResponseHead(const ResponseHead &head)
{
	return serializeResponseHead(head, head.keepAlive);
}

// A complete small response (a denial): status line, Content-Type,
// Content-Length, Connection (keep-alive or close) and the body.
std::string buildResponse(int status, std::string_view body, bool keepAlive,
			  std::string_view contentType = "application/json");

// The standard reason phrase of a status ("Forbidden"), or "Unknown".
const char *reasonPhrase(int status);

} // namespace gvm::proxy
