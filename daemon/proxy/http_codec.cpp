// SPDX-License-Identifier: Apache-2.0
#include "daemon/proxy/http_codec.h"

#include <algorithm>
#include <array>
#include <string>
#include <utility>

#include "common/text.h"

namespace gvm::proxy {

namespace {

Error httpError(int status, std::string reason)
{
	return Error(ErrorDomain::Http, status, std::move(reason));
}

bool isTchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	switch (c) {
	case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
	case '+': case '-': case '.': case '^': case '_': case '`': case '|': case '~':
		return true;
	default:
		return false;
	}
}

// Control characters other than HTAB (NUL, CR, LF, DEL...).
bool isBadControl(unsigned char c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

bool isWhitespace(char c)
{
	return c == ' ' || c == '\t';
}

bool isDigit(char c)
{
	return c >= '0' && c <= '9';
}


std::string_view trimWhitespace(std::string_view s)
{
	while (!s.empty() && isWhitespace(s.front()))
		s.remove_prefix(1);
	while (!s.empty() && isWhitespace(s.back()))
		s.remove_suffix(1);
	return s;
}

// Calls f with each trimmed, non-empty element of a comma-separated list,
// in place, until f returns true; whether one did.
template <typename F>
bool anyListElement(std::string_view value, F &&f)
{
	while (true) {
		const size_t comma = value.find(',');
		const std::string_view item = trimWhitespace(value.substr(0, comma));
		if (!item.empty() && f(item))
			return true;
		if (comma == std::string_view::npos)
			return false;
		value.remove_prefix(comma + 1);
	}
}

// Splits a comma-separated list into trimmed, non-empty elements.
std::vector<std::string_view> splitList(std::string_view value)
{
	std::vector<std::string_view> out;
	anyListElement(value, [&](std::string_view item) {
		out.push_back(item);
		return false;
	});
	return out;
}

bool listHasToken(const Headers &headers, std::string_view name, std::string_view token)
{
	for (const Header &h : headers)
		if (asciiIEquals(h.name, name) &&
		    anyListElement(h.value, [&](std::string_view item) { return asciiIEquals(item, token); }))
			return true;
	return false;
}

// "HTTP/1.1" → version; 505 for a well-formed other version, else 400.
Result<HttpVersion> parseVersion(std::string_view text, int badStatus, int unsupportedStatus)
{
	if (text.size() != 8 || text.substr(0, 5) != "HTTP/" || !isDigit(text[5]) || text[6] != '.' ||
	    !isDigit(text[7]))
		return fail(httpError(badStatus, "malformed HTTP version"));
	if (text[5] == '1' && text[7] == '1')
		return HttpVersion::Http11;
	if (text[5] == '1' && text[7] == '0')
		return HttpVersion::Http10;
	return fail(httpError(unsupportedStatus, "unsupported HTTP version"));
}

// One field line: token ":" OWS value OWS, no control characters.
Result<void> parseFieldLine(std::string_view line, Headers &out, int status)
{
	if (isWhitespace(line.front()))
		return fail(httpError(status, "obsolete line folding"));
	size_t colon = line.find(':');
	if (colon == std::string_view::npos)
		return fail(httpError(status, "header line without a colon"));
	std::string_view name = line.substr(0, colon);
	if (name.empty())
		return fail(httpError(status, "empty header name"));
	for (char c : name) {
		if (isWhitespace(c))
			return fail(httpError(status, "whitespace in or after a header name"));
		if (!isTchar(static_cast<unsigned char>(c)))
			return fail(httpError(status, "invalid character in a header name"));
	}
	std::string_view value = line.substr(colon + 1);
	for (char c : value)
		if (isBadControl(static_cast<unsigned char>(c)))
			return fail(httpError(status, "control character in a header value"));
	out.push_back(Header{std::string(name), std::string(trimWhitespace(value))});
	return {};
}

// Fields a request or response head usually has (browsers send 10 to 20).
constexpr size_t kTypicalHeaderCount = 16;
// Room a head reader takes at once for a new head, not grown line by line.
constexpr size_t kTypicalHeadBytes = 1024;

// Splits a head (which the HeadReader proved to be CRLF lines ending in an
// empty line) into the first line and validated fields.
Result<std::string_view> splitHead(std::string_view head, Headers &headers, int status)
{
	size_t end = head.find("\r\n");
	std::string_view first = head.substr(0, end);
	size_t pos = end + 2;
	// Room for a typical head's fields at once, not grown one by one.
	headers.reserve(headers.size() + kTypicalHeaderCount);
	while (true) {
		size_t next = head.find("\r\n", pos);
		if (next == pos)
			break; // the final empty line
		GVM_TRY_VOID(parseFieldLine(head.substr(pos, next - pos), headers, status), "while parsing headers");
		pos = next + 2;
	}
	return first;
}

// Content-Length: 1*DIGIT, once. Repeats (even equal) and lists are refused.
Result<bool> parseContentLength(const Headers &headers, uint64_t &length, int status)
{
	bool seen = false;
	for (const Header &h : headers) {
		if (!asciiIEquals(h.name, "Content-Length"))
			continue;
		if (seen)
			return fail(httpError(status, "repeated Content-Length"));
		seen = true;
		if (h.value.empty() || h.value.size() > 19)
			return fail(httpError(status, "invalid Content-Length"));
		uint64_t n = 0;
		for (char c : h.value) {
			if (!isDigit(c))
				return fail(httpError(status, "invalid Content-Length"));
			n = n * 10 + static_cast<uint64_t>(c - '0');
		}
		if (n > kMaxContentLength)
			return fail(httpError(status, "Content-Length overflow"));
		length = n;
	}
	return seen;
}

// Transfer-Encoding: present at most once, and exactly "chunked".
// Returns false when absent. "chunked" not last (or not present) is
// ambiguous framing (400); any other coding, even "gzip, chunked", is not
// implemented (501) - gvm relays decoded bodies and inspects them, and a
// coding under chunked would hide the body from inspection.
Result<bool> parseTransferEncoding(const Headers &headers, int badStatus, int unsupportedStatus)
{
	const Header *te = nullptr;
	for (const Header &h : headers) {
		if (!asciiIEquals(h.name, "Transfer-Encoding"))
			continue;
		if (te)
			return fail(httpError(badStatus, "repeated Transfer-Encoding"));
		te = &h;
	}
	if (!te)
		return false;
	std::vector<std::string_view> codings = splitList(te->value);
	if (codings.empty())
		return fail(httpError(badStatus, "empty Transfer-Encoding"));
	if (!asciiIEquals(codings.back(), "chunked"))
		return fail(httpError(badStatus, "Transfer-Encoding does not end in chunked"));
	if (codings.size() > 1) {
		for (size_t i = 0; i + 1 < codings.size(); ++i)
			if (asciiIEquals(codings[i], "chunked"))
				return fail(httpError(badStatus, "chunked applied twice"));
		return fail(httpError(unsupportedStatus, "unsupported transfer coding"));
	}
	return true;
}

struct Authority {
	std::string host;
	uint16_t port = 0;
	bool hasPort = false;
};

// host [":" port]: reg-name of letters, digits, '-', '_', '.', or a bracketed
// IPv6 literal; the host is lower-cased, one trailing dot dropped.
Result<Authority> parseAuthority(std::string_view text)
{
	Authority a;
	std::string_view host;
	std::string_view rest;
	if (!text.empty() && text.front() == '[') {
		size_t close = text.find(']');
		if (close == std::string_view::npos || close < 3)
			return fail(httpError(400, "malformed IPv6 literal"));
		host = text.substr(1, close - 1);
		for (char c : host)
			if (hexDigitValue(c) < 0 && c != ':' && c != '.')
				return fail(httpError(400, "malformed IPv6 literal"));
		rest = text.substr(close + 1);
		a.host = asciiLower(host);
	} else {
		size_t colon = text.find(':');
		host = text.substr(0, colon);
		rest = colon == std::string_view::npos ? std::string_view() : text.substr(colon);
		if (!host.empty() && host.back() == '.')
			host.remove_suffix(1);
		if (host.empty() || host.size() > 253)
			return fail(httpError(400, "invalid host"));
		char prev = '.';
		for (char c : host) {
			bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || isDigit(c) || c == '-' ||
				  c == '_' || c == '.';
			if (!ok || (c == '.' && prev == '.'))
				return fail(httpError(400, "invalid host"));
			prev = c;
		}
		a.host = asciiLower(host);
	}
	if (rest.empty())
		return a;
	if (rest.front() != ':' || rest.size() < 2 || rest.size() > 6)
		return fail(httpError(400, "invalid port"));
	uint32_t port = 0;
	for (char c : rest.substr(1)) {
		if (!isDigit(c))
			return fail(httpError(400, "invalid port"));
		port = port * 10 + static_cast<uint32_t>(c - '0');
	}
	if (port == 0 || port > 65535)
		return fail(httpError(400, "invalid port"));
	a.port = static_cast<uint16_t>(port);
	a.hasPort = true;
	return a;
}

// path ["?" query]: visible ASCII, no fragment.
Result<void> splitPathQuery(std::string_view text, RequestHead &head)
{
	for (char c : text) {
		unsigned char u = static_cast<unsigned char>(c);
		if (u <= 0x20 || u >= 0x7f)
			return fail(httpError(400, "invalid character in the request target"));
		if (c == '#')
			return fail(httpError(400, "fragment in the request target"));
	}
	size_t q = text.find('?');
	head.path = std::string(text.substr(0, q));
	head.hasQuery = q != std::string_view::npos;
	head.query = head.hasQuery ? std::string(text.substr(q + 1)) : std::string();
	if (head.path.empty())
		head.path = "/";
	return {};
}

// Decomposes the target and reconciles it with the (single) Host header.
Result<void> parseTarget(RequestHead &head)
{
	const std::string *hostHeader = nullptr;
	for (const Header &h : head.headers) {
		if (!asciiIEquals(h.name, "Host"))
			continue;
		if (hostHeader)
			return fail(httpError(400, "more than one Host header"));
		hostHeader = &h.value;
	}
	Authority fromHost;
	if (hostHeader) {
		auto a = parseAuthority(*hostHeader);
		if (!a)
			return fail(std::move(a).error().wrap("in the Host header"));
		fromHost = std::move(*a);
	} else if (head.version == HttpVersion::Http11) {
		return fail(httpError(400, "HTTP/1.1 request without Host"));
	}

	std::string_view target = head.target;
	if (head.isConnect()) {
		head.form = TargetForm::Authority;
		auto a = parseAuthority(target);
		if (!a)
			return fail(std::move(a).error().wrap("in the CONNECT target"));
		if (!a->hasPort)
			return fail(httpError(400, "CONNECT target without a port"));
		if (hostHeader && (fromHost.host != a->host || (fromHost.hasPort && fromHost.port != a->port)))
			return fail(httpError(400, "CONNECT target and Host differ"));
		head.host = a->host;
		head.port = a->port;
		head.path.clear();
		return {};
	}
	if (target == "*") {
		if (head.method != "OPTIONS")
			return fail(httpError(400, "asterisk-form target outside OPTIONS"));
		head.form = TargetForm::Asterisk;
		head.path = "*";
		head.host = fromHost.host;
		head.port = fromHost.hasPort ? fromHost.port : 80;
		return {};
	}
	if (!target.empty() && target.front() == '/') {
		head.form = TargetForm::Origin;
		GVM_TRY_VOID(splitPathQuery(target, head), "in the request target");
		head.host = fromHost.host;
		head.port = fromHost.hasPort ? fromHost.port : 80;
		return {};
	}

	// absolute-form
	size_t sep = target.find("://");
	if (sep == std::string_view::npos)
		return fail(httpError(400, "malformed request target"));
	std::string scheme = asciiLower(target.substr(0, sep));
	uint16_t defaultPort;
	if (scheme == "http")
		defaultPort = 80;
	else if (scheme == "https")
		defaultPort = 443;
	else
		return fail(httpError(400, "unsupported scheme in the request target"));
	std::string_view rest = target.substr(sep + 3);
	size_t end = rest.find_first_of("/?#");
	std::string_view authority = rest.substr(0, end);
	if (authority.find('@') != std::string_view::npos)
		return fail(httpError(400, "userinfo in the request target"));
	auto a = parseAuthority(authority);
	if (!a)
		return fail(std::move(a).error().wrap("in the request target"));
	std::string_view pathQuery = end == std::string_view::npos ? std::string_view() : rest.substr(end);
	if (!pathQuery.empty() && pathQuery.front() == '?')
		return fail(httpError(400, "absolute-form target without a path")); // keep it simple
	GVM_TRY_VOID(splitPathQuery(pathQuery, head), "in the request target");
	head.form = TargetForm::Absolute;
	head.scheme = scheme;
	head.host = a->host;
	head.port = a->hasPort ? a->port : defaultPort;
	if (hostHeader) {
		uint16_t hostPort = fromHost.hasPort ? fromHost.port : defaultPort;
		if (fromHost.host != head.host || hostPort != head.port)
			return fail(httpError(400, "request target and Host differ"));
	}
	return {};
}

bool computeKeepAlive(HttpVersion version, const Headers &headers)
{
	if (listHasToken(headers, "Connection", "close"))
		return false;
	if (version == HttpVersion::Http10)
		return listHasToken(headers, "Connection", "keep-alive");
	return true;
}

// The Upgrade protocol when the message asks to upgrade (Upgrade plus
// Connection: upgrade, HTTP/1.1 only), else empty.
std::string upgradeProtocol(HttpVersion version, const Headers &headers)
{
	if (version != HttpVersion::Http11 || !listHasToken(headers, "Connection", "upgrade"))
		return {};
	const std::string *upgrade = findHeader(headers, "Upgrade");
	if (!upgrade)
		return {};
	std::vector<std::string_view> protocols = splitList(*upgrade);
	return protocols.empty() ? std::string() : std::string(protocols.front());
}

Result<RequestHead> parseRequestHead(std::string_view raw)
{
	RequestHead head;
	auto first = splitHead(raw, head.headers, 400);
	if (!first)
		return fail(std::move(first).error());
	std::string_view line = *first;
	size_t sp1 = line.find(' ');
	if (sp1 == std::string_view::npos || sp1 == 0)
		return fail(httpError(400, "malformed request line"));
	std::string_view method = line.substr(0, sp1);
	for (char c : method)
		if (!isTchar(static_cast<unsigned char>(c)))
			return fail(httpError(400, "invalid method"));
	size_t sp2 = line.find(' ', sp1 + 1);
	if (sp2 == std::string_view::npos) // "GET /": HTTP/0.9
		return fail(httpError(505, "HTTP/0.9 request"));
	std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
	std::string_view version = line.substr(sp2 + 1);
	if (target.empty() || version.find(' ') != std::string_view::npos)
		return fail(httpError(400, "malformed request line"));
	for (char c : target) {
		unsigned char u = static_cast<unsigned char>(c);
		if (u <= 0x20 || u >= 0x7f)
			return fail(httpError(400, "invalid character in the request target"));
	}
	auto v = parseVersion(version, 400, 505);
	if (!v)
		return fail(std::move(v).error());
	head.method = std::string(method);
	head.target = std::string(target);
	head.version = *v;

	GVM_TRY_VOID(parseTarget(head), "while parsing the request target");

	uint64_t length = 0;
	auto hasLength = parseContentLength(head.headers, length, 400);
	if (!hasLength)
		return fail(std::move(hasLength).error());
	auto chunked = parseTransferEncoding(head.headers, 400, 501);
	if (!chunked)
		return fail(std::move(chunked).error());
	if (*chunked && *hasLength)
		return fail(httpError(400, "both Content-Length and Transfer-Encoding"));
	if (*chunked && head.version == HttpVersion::Http10)
		return fail(httpError(400, "Transfer-Encoding in an HTTP/1.0 request"));
	if (*chunked) {
		head.framing = BodyFraming::Chunked;
	} else if (*hasLength) {
		head.framing = BodyFraming::ContentLength;
		head.contentLength = length;
	}

	head.keepAlive = computeKeepAlive(head.version, head.headers);
	head.upgrade = upgradeProtocol(head.version, head.headers);
	if (head.version == HttpVersion::Http11) {
		const std::string *expect = head.header("Expect");
		head.expectContinue = expect && asciiIEquals(*expect, "100-continue");
	}
	if (head.isTunnel() && head.framing != BodyFraming::None &&
	    !(head.framing == BodyFraming::ContentLength && head.contentLength == 0))
		return fail(httpError(400, "CONNECT or Upgrade request with a body"));
	return head;
}

Result<ResponseHead> parseResponseHead(std::string_view raw, std::string_view requestMethod)
{
	ResponseHead head;
	auto first = splitHead(raw, head.headers, 502);
	if (!first)
		return fail(std::move(first).error());
	std::string_view line = *first;
	auto v = parseVersion(line.substr(0, 8), 502, 502);
	if (!v)
		return fail(std::move(v).error());
	head.version = *v;
	if (line.size() < 12 || line[8] != ' ' || !isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) ||
	    (line.size() > 12 && line[12] != ' '))
		return fail(httpError(502, "malformed status line"));
	head.status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
	if (head.status < 100 || head.status > 599)
		return fail(httpError(502, "invalid status code"));
	std::string_view reason = line.size() > 12 ? line.substr(13) : std::string_view();
	for (char c : reason)
		if (isBadControl(static_cast<unsigned char>(c)))
			return fail(httpError(502, "control character in the reason phrase"));
	head.reason = std::string(reason);

	uint64_t length = 0;
	auto hasLength = parseContentLength(head.headers, length, 502);
	if (!hasLength)
		return fail(std::move(hasLength).error());
	auto chunked = parseTransferEncoding(head.headers, 502, 502);
	if (!chunked)
		return fail(std::move(chunked).error());
	if (*chunked && *hasLength)
		return fail(httpError(502, "both Content-Length and Transfer-Encoding"));
	head.contentLength = length;
	head.keepAlive = computeKeepAlive(head.version, head.headers);

	bool interim = head.status < 200;
	bool tunnel = head.status == 101 || (requestMethod == "CONNECT" && head.status / 100 == 2);
	if (head.status == 101)
		head.upgrade = upgradeProtocol(head.version, head.headers);
	if (interim || tunnel || requestMethod == "HEAD" || head.status == 204 || head.status == 304) {
		head.framing = BodyFraming::None;
	} else if (*chunked) {
		head.framing = BodyFraming::Chunked;
	} else if (*hasLength) {
		head.framing = BodyFraming::ContentLength;
	} else {
		head.framing = BodyFraming::UntilClose;
		head.keepAlive = false;
	}
	return head;
}

bool bodyless(BodyFraming framing, uint64_t contentLength)
{
	return framing == BodyFraming::None || (framing == BodyFraming::ContentLength && contentLength == 0);
}

// Checks that http_parser read the head as we did.
Result<void> crossCheck(const HttpParserDriver &driver, BodyFraming framing, uint64_t contentLength, int status)
{
	if (!driver.headersComplete())
		return fail(httpError(status, "http_parser did not complete the head"));
	const http_parser &p = driver.parser();
	if (framing == BodyFraming::Chunked && !(p.flags & F_CHUNKED))
		return fail(httpError(status, "framing disagreement"));
	if (framing == BodyFraming::ContentLength && contentLength > 0 && p.content_length != contentLength)
		return fail(httpError(status, "framing disagreement"));
	if (bodyless(framing, contentLength) && !driver.messageComplete())
		return fail(httpError(status, "framing disagreement"));
	return {};
}

// The tokens of a head's Connection headers, gathered once for the check
// of every header forwarded; a head with more than kMaxGathered is checked
// by walking its lists.
class ConnectionTokens
{
public:
	explicit ConnectionTokens(const Headers &headers) : headers_(headers)
	{
		for (const Header &h : headers) {
			if (!asciiIEquals(h.name, "Connection"))
				continue;
			overflow_ = anyListElement(h.value, [&](std::string_view item) {
				if (count_ == tokens_.size())
					return true;
				tokens_[count_++] = item;
				return false;
			});
			if (overflow_)
				return;
		}
	}

	bool contains(std::string_view name) const
	{
		if (overflow_)
			return listHasToken(headers_, "Connection", name);
		for (size_t i = 0; i < count_; ++i)
			if (asciiIEquals(tokens_[i], name))
				return true;
		return false;
	}

private:
	static constexpr size_t kMaxGathered = 16;

	const Headers &headers_;
	std::array<std::string_view, kMaxGathered> tokens_;
	size_t count_ = 0;
	bool overflow_ = false;
};

bool isHopByHop(std::string_view name, const ConnectionTokens &connection, bool upgrading)
{
	static constexpr std::string_view kHopByHop[] = {
		"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization",
		"TE", "Trailer", "Transfer-Encoding", "Upgrade",
	};
	for (std::string_view h : kHopByHop)
		if (asciiIEquals(name, h))
			return !(upgrading && asciiIEquals(name, "Upgrade"));
	return connection.contains(name);
}

Result<void> appendHeaders(std::string &out, const Headers &headers, bool upgrading)
{
	const ConnectionTokens connection(headers);
	for (const Header &h : headers) {
		if (isHopByHop(h.name, connection, upgrading))
			continue;
		if (h.name.empty())
			return fail(httpError(500, "empty header name"));
		for (char c : h.name)
			if (!isTchar(static_cast<unsigned char>(c)))
				return fail(httpError(500, "invalid header name"));
		for (char c : h.value)
			if (isBadControl(static_cast<unsigned char>(c)))
				return fail(httpError(500, "control character in a header value"));
		out += h.name;
		out += ": ";
		out += h.value;
		out += "\r\n";
	}
	return {};
}

void appendConnection(std::string &out, HttpVersion version, bool keepAlive, bool upgrading)
{
	if (upgrading)
		out += "Connection: Upgrade\r\n";
	else if (!keepAlive && version == HttpVersion::Http11)
		out += "Connection: close\r\n";
	else if (keepAlive && version == HttpVersion::Http10)
		out += "Connection: keep-alive\r\n";
}

std::string formatHost(const std::string &host, uint16_t port, uint16_t defaultPort)
{
	std::string out = host.find(':') != std::string::npos ? "[" + host + "]" : host;
	if (port != defaultPort)
		out += ":" + std::to_string(port);
	return out;
}

} // namespace

const char *toString(HttpVersion version)
{
	return version == HttpVersion::Http10 ? "HTTP/1.0" : "HTTP/1.1";
}

const char *toString(BodyFraming framing)
{
	switch (framing) {
	case BodyFraming::None: return "none";
	case BodyFraming::ContentLength: return "content-length";
	case BodyFraming::Chunked: return "chunked";
	case BodyFraming::UntilClose: return "until-close";
	}
	return "?";
}

const char *toString(TargetForm form)
{
	switch (form) {
	case TargetForm::Origin: return "origin";
	case TargetForm::Absolute: return "absolute";
	case TargetForm::Authority: return "authority";
	case TargetForm::Asterisk: return "asterisk";
	}
	return "?";
}

const std::string *findHeader(const Headers &headers, std::string_view name)
{
	for (const Header &h : headers)
		if (asciiIEquals(h.name, name))
			return &h.value;
	return nullptr;
}

bool RequestHead::isWebSocket() const
{
	return asciiIEquals(upgrade, "websocket");
}

// HeadReader

void HeadReader::reset()
{
	buf_.clear();
	lineStart_ = 0;
	headerStart_ = 0;
	lines_ = 0;
	leadingEmpty_ = 0;
	complete_ = false;
}

Result<size_t> HeadReader::feed(std::string_view data)
{
	if (buf_.capacity() < kTypicalHeadBytes && !data.empty())
		buf_.reserve(kTypicalHeadBytes);
	for (size_t i = 0; i < data.size(); ++i) {
		if (lines_ > 0) {
			// A field line: taken up to its LF (or the end of data) at
			// once, with the checks the byte loop below would make, in
			// the order it would make them.
			auto taken = feedFieldLine(data.substr(i));
			if (!taken)
				return fail(std::move(taken).error());
			i += *taken - 1;
			if (complete_)
				return i + 1;
			continue;
		}
		char c = data[i];
		bool afterCr = buf_.size() > lineStart_ && buf_.back() == '\r';
		if (afterCr && c != '\n')
			return fail(httpError(limits_.syntaxStatus, "bare CR in the message head"));
		if (!afterCr && c == '\n')
			return fail(httpError(limits_.syntaxStatus, "bare LF in the message head"));
		buf_.push_back(c);
		if (c != '\n') {
			if (lines_ == 0) {
				// Fail fast on what cannot be a request or status line
				// (a TLS record, binary junk) instead of buffering it.
				if (c != '\r' && isBadControl(static_cast<unsigned char>(c)))
					return fail(httpError(limits_.syntaxStatus, "control character in the first line"));
				size_t len = buf_.size() - lineStart_ - (c == '\r' ? 1 : 0);
				if (len > limits_.firstLineBytes)
					return fail(httpError(limits_.firstLineStatus, "first line too long"));
			} else if (buf_.size() - headerStart_ > limits_.headerBytes) {
				return fail(httpError(limits_.headerStatus, "header section too large"));
			}
			continue;
		}
		size_t lineLength = buf_.size() - lineStart_ - 2;
		if (lines_ == 0) {
			if (lineLength == 0) {
				// An empty line before the first line: tolerated, a few times.
				if (++leadingEmpty_ > kMaxLeadingEmptyLines)
					return fail(httpError(limits_.syntaxStatus, "too many empty lines"));
				buf_.clear();
				continue;
			}
			lines_ = 1;
			headerStart_ = buf_.size();
		} else if (lineLength == 0) {
			complete_ = true;
			return i + 1;
		} else if (++lines_ - 1 > limits_.headerCount) {
			return fail(httpError(limits_.headerStatus, "too many header fields"));
		}
		lineStart_ = buf_.size();
	}
	return data.size();
}

Result<size_t> HeadReader::feedFieldLine(std::string_view data)
{
	const size_t lf = data.find('\n');
	// The line's bytes before its LF (all of data when it has none yet).
	const std::string_view text = data.substr(0, lf == std::string_view::npos ? data.size() : lf);
	const bool afterCr = buf_.size() > lineStart_ && buf_.back() == '\r';

	// Where the byte loop would stop: at the byte after a CR that is not
	// an LF (checked before that byte is taken), or at the byte that
	// takes the section over its limit (after it is taken).
	size_t bareCr = std::string_view::npos;
	if (afterCr && !text.empty())
		bareCr = 0;
	else if (size_t cr = text.find('\r'); cr != std::string_view::npos && cr + 1 < text.size())
		bareCr = cr + 1;
	const size_t section = buf_.size() - headerStart_;
	size_t tooLarge = std::string_view::npos;
	if (!text.empty() && section + text.size() > limits_.headerBytes)
		tooLarge = limits_.headerBytes >= section ? limits_.headerBytes - section : 0;
	if (bareCr != std::string_view::npos && (tooLarge == std::string_view::npos || bareCr <= tooLarge))
		return fail(httpError(limits_.syntaxStatus, "bare CR in the message head"));
	if (tooLarge != std::string_view::npos)
		return fail(httpError(limits_.headerStatus, "header section too large"));

	buf_.append(text);
	if (lf == std::string_view::npos)
		return text.size();
	if (buf_.size() == lineStart_ || buf_.back() != '\r')
		return fail(httpError(limits_.syntaxStatus, "bare LF in the message head"));
	buf_.push_back('\n');
	if (buf_.size() - lineStart_ == 2) {
		complete_ = true;
	} else if (++lines_ - 1 > limits_.headerCount) {
		return fail(httpError(limits_.headerStatus, "too many header fields"));
	}
	lineStart_ = buf_.size();
	return lf + 1;
}

// BodyReader

void BodyReader::start(BodyFraming framing, uint64_t contentLength)
{
	remaining_ = 0;
	lineBytes_ = 0;
	trailerBytes_ = 0;
	trailerCount_ = 0;
	switch (framing) {
	case BodyFraming::None:
		phase_ = Phase::Done;
		break;
	case BodyFraming::ContentLength:
		remaining_ = contentLength;
		phase_ = contentLength ? Phase::Length : Phase::Done;
		break;
	case BodyFraming::Chunked:
		phase_ = Phase::SizeStart;
		break;
	case BodyFraming::UntilClose:
		phase_ = Phase::UntilClose;
		break;
	}
}

Result<void> BodyReader::scanChunkByte(char c)
{
	unsigned char u = static_cast<unsigned char>(c);
	switch (phase_) {
	case Phase::SizeStart:
	case Phase::SizeDigits:
		if (hexDigitValue(c) >= 0) {
			if (remaining_ > (kMaxChunkSize >> 4))
				return fail(httpError(errorStatus_, "chunk size overflow"));
			remaining_ = remaining_ * 16 + static_cast<uint64_t>(hexDigitValue(c));
			phase_ = Phase::SizeDigits;
		} else if (phase_ == Phase::SizeStart) {
			return fail(httpError(errorStatus_, "invalid chunk size"));
		} else if (c == ';') {
			phase_ = Phase::SizeExt;
		} else if (isWhitespace(c)) {
			phase_ = Phase::SizeSpace;
		} else if (c == '\r') {
			phase_ = Phase::SizeLf;
		} else {
			return fail(httpError(errorStatus_, "invalid chunk size"));
		}
		break;
	case Phase::SizeSpace:
		// Whitespace after the size is only allowed before an extension.
		if (c == ';')
			phase_ = Phase::SizeExt;
		else if (!isWhitespace(c))
			return fail(httpError(errorStatus_, "invalid chunk size line"));
		break;
	case Phase::SizeExt:
		if (c == '\r')
			phase_ = Phase::SizeLf;
		else if (isBadControl(u))
			return fail(httpError(errorStatus_, "control character in a chunk extension"));
		break;
	case Phase::SizeLf:
		if (c != '\n')
			return fail(httpError(errorStatus_, "bare CR in a chunk size line"));
		lineBytes_ = 0;
		phase_ = remaining_ ? Phase::Data : Phase::TrailerStart;
		return {};
	case Phase::DataCr:
		if (c != '\r')
			return fail(httpError(errorStatus_, "chunk data longer than its size"));
		phase_ = Phase::DataLf;
		return {};
	case Phase::DataLf:
		if (c != '\n')
			return fail(httpError(errorStatus_, "bare CR after chunk data"));
		phase_ = Phase::SizeStart;
		return {};
	case Phase::TrailerStart:
		if (c == '\r') {
			phase_ = Phase::FinalLf;
		} else if (isTchar(u)) {
			if (++trailerCount_ > kMaxHeaderCount)
				return fail(httpError(trailerStatus_, "too many trailer fields"));
			phase_ = Phase::TrailerName;
		} else {
			return fail(httpError(errorStatus_, "invalid trailer line"));
		}
		break;
	case Phase::TrailerName:
		if (c == ':')
			phase_ = Phase::TrailerValue;
		else if (!isTchar(u))
			return fail(httpError(errorStatus_, "invalid trailer name"));
		break;
	case Phase::TrailerValue:
		if (c == '\r')
			phase_ = Phase::TrailerLf;
		else if (isBadControl(u))
			return fail(httpError(errorStatus_, "control character in a trailer value"));
		break;
	case Phase::TrailerLf:
		if (c != '\n')
			return fail(httpError(errorStatus_, "bare CR in a trailer line"));
		phase_ = Phase::TrailerStart;
		break;
	case Phase::FinalLf:
		if (c != '\n')
			return fail(httpError(errorStatus_, "bare CR after the last chunk"));
		phase_ = Phase::Done;
		return {};
	default:
		return fail(httpError(errorStatus_, "internal body reader state"));
	}
	if (phase_ >= Phase::SizeStart && phase_ <= Phase::SizeLf) {
		if (++lineBytes_ > kMaxChunkLineBytes)
			return fail(httpError(errorStatus_, "chunk size line too long"));
	} else if (phase_ >= Phase::TrailerStart && phase_ <= Phase::FinalLf) {
		if (++trailerBytes_ > kMaxHeaderBytes)
			return fail(httpError(trailerStatus_, "trailer section too large"));
	}
	return {};
}

Result<size_t> BodyReader::scan(std::string_view data)
{
	size_t i = 0;
	while (i < data.size() && phase_ != Phase::Done) {
		switch (phase_) {
		case Phase::UntilClose:
			return data.size();
		case Phase::Length:
		case Phase::Data: {
			uint64_t take = std::min<uint64_t>(remaining_, data.size() - i);
			i += static_cast<size_t>(take);
			remaining_ -= take;
			if (remaining_ == 0)
				phase_ = phase_ == Phase::Length ? Phase::Done : Phase::DataCr;
			break;
		}
		default:
			GVM_TRY_VOID(scanChunkByte(data[i]), "while reading a chunked body");
			++i;
			break;
		}
	}
	return i;
}

// HttpParserDriver

HttpParserDriver::HttpParserDriver(std::function<void(std::string_view)> onBody)
	: onBody_(std::move(onBody))
{
	http_parser_settings_init(&settings_);
	settings_.on_headers_complete = &HttpParserDriver::onHeadersComplete;
	settings_.on_body = &HttpParserDriver::onBodyData;
	settings_.on_message_complete = &HttpParserDriver::onMessageComplete;
	http_parser_init(&parser_, HTTP_REQUEST);
	parser_.data = this;
}

void HttpParserDriver::begin(http_parser_type type, bool skipBody)
{
	http_parser_init(&parser_, type);
	parser_.data = this;
	skipBody_ = skipBody;
	headersComplete_ = false;
	messageComplete_ = false;
}

Result<void> HttpParserDriver::execute(std::string_view data, int errorStatus)
{
	size_t n = http_parser_execute(&parser_, &settings_, data.data(), data.size());
	auto err = static_cast<http_errno>(parser_.http_errno);
	if (err != HPE_OK) {
		int status = err == HPE_INVALID_METHOD && errorStatus == 400 ? 501 : errorStatus;
		return fail(httpError(status, std::string("http_parser: ") + http_errno_description(err)));
	}
	if (n != data.size())
		return fail(httpError(errorStatus, "http_parser stopped early"));
	return {};
}

Result<void> HttpParserDriver::executeEof(int errorStatus)
{
	http_parser_execute(&parser_, &settings_, nullptr, 0);
	auto err = static_cast<http_errno>(parser_.http_errno);
	if (err != HPE_OK)
		return fail(httpError(errorStatus, std::string("http_parser: ") + http_errno_description(err)));
	return {};
}

int HttpParserDriver::onHeadersComplete(http_parser *parser)
{
	auto *self = static_cast<HttpParserDriver *>(parser->data);
	self->headersComplete_ = true;
	// 1 tells http_parser there is no body (HEAD, 204, 304, 1xx, tunnels).
	return self->skipBody_ ? 1 : 0;
}

int HttpParserDriver::onBodyData(http_parser *parser, const char *at, size_t length)
{
	auto *self = static_cast<HttpParserDriver *>(parser->data);
	if (length && self->onBody_)
		self->onBody_(std::string_view(at, length));
	return 0;
}

int HttpParserDriver::onMessageComplete(http_parser *parser)
{
	static_cast<HttpParserDriver *>(parser->data)->messageComplete_ = true;
	return 0;
}

// RequestParser

RequestParser::RequestParser(Callbacks callbacks)
	: callbacks_(std::move(callbacks)),
	  headReader_(HeadReader::Limits{kMaxRequestLineBytes, kMaxHeaderBytes, kMaxHeaderCount, 414, 431, 400}),
	  bodyReader_(400, 431),
	  driver_([this](std::string_view chunk) {
		  if (callbacks_.onBody)
			  callbacks_.onBody(chunk);
	  })
{
}

Failure RequestParser::failWith(Error error)
{
	state_ = State::Failed;
	error_ = error;
	return fail(std::move(error));
}

Result<void> RequestParser::startMessage()
{
	auto head = parseRequestHead(headReader_.head());
	if (!head)
		return fail(std::move(head).error());
	head_ = std::move(*head);
	tunnel_ = head_.isTunnel();
	keepAlive_ = head_.keepAlive;
	// http_parser reads the same head as a cross-check and to be ready for
	// the body; it never sees bytes our own readers did not accept first.
	driver_.begin(HTTP_REQUEST, bodyless(head_.framing, head_.contentLength));
	GVM_TRY_VOID(driver_.execute(headReader_.head(), 400), "while parsing the request head");
	GVM_TRY_VOID(crossCheck(driver_, head_.framing, head_.contentLength, 400), "while parsing the request head");
	bodyReader_.start(head_.framing, head_.contentLength);
	headReader_.reset();
	return {};
}

void RequestParser::afterHead()
{
	if (tunnel_)
		state_ = State::Tunnel;
	else if (bodyReader_.done())
		completeMessage();
	else
		state_ = State::Body;
}

void RequestParser::completeMessage()
{
	state_ = keepAlive_ ? State::Head : State::Closed;
	if (callbacks_.onMessageComplete)
		callbacks_.onMessageComplete();
}

void RequestParser::resume()
{
	if (state_ == State::Paused)
		afterHead();
}

Result<size_t> RequestParser::feedBody(std::string_view data)
{
	auto n = bodyReader_.scan(data);
	if (!n)
		return fail(std::move(n).error());
	GVM_TRY_VOID(driver_.execute(data.substr(0, *n), 400), "while reading the request body");
	if (bodyReader_.done() != driver_.messageComplete())
		return fail(httpError(400, "body framing disagreement"));
	if (bodyReader_.done())
		completeMessage();
	return *n;
}

Result<size_t> RequestParser::feed(std::string_view data)
{
	if (state_ == State::Failed)
		return fail(error_);
	size_t used = 0;
	while (used < data.size()) {
		if (state_ == State::Head) {
			auto n = headReader_.feed(data.substr(used));
			if (!n)
				return failWith(std::move(n).error());
			used += *n;
			if (!headReader_.complete())
				continue;
			auto started = startMessage();
			if (!started)
				return failWith(std::move(started).error());
			HeadAction action = callbacks_.onHead ? callbacks_.onHead(head_) : HeadAction::Continue;
			if (action == HeadAction::Pause)
				state_ = State::Paused;
			else
				afterHead();
		} else if (state_ == State::Body) {
			auto n = feedBody(data.substr(used));
			if (!n)
				return failWith(std::move(n).error());
			used += *n;
		} else {
			break; // Paused, Tunnel, Closed
		}
	}
	return used;
}

Result<void> RequestParser::finish()
{
	switch (state_) {
	case State::Failed:
		return fail(error_);
	case State::Head:
		if (headReader_.empty())
			return {};
		return failWith(httpError(400, "connection closed inside a request head"));
	case State::Body:
	case State::Paused:
		return failWith(httpError(400, "connection closed inside a request"));
	case State::Tunnel:
	case State::Closed:
		return {};
	}
	return {};
}

// ResponseParser

ResponseParser::ResponseParser(Callbacks callbacks)
	: callbacks_(std::move(callbacks)),
	  headReader_(HeadReader::Limits{kMaxRequestLineBytes, kMaxHeaderBytes, kMaxHeaderCount, 502, 502, 502}),
	  bodyReader_(502, 502),
	  driver_([this](std::string_view chunk) {
		  if (callbacks_.onBody)
			  callbacks_.onBody(chunk);
	  })
{
}

Failure ResponseParser::failWith(Error error)
{
	state_ = State::Failed;
	error_ = error;
	return fail(std::move(error));
}

void ResponseParser::expect(std::string_view requestMethod)
{
	if (state_ != State::Idle)
		return;
	requestMethod_ = std::string(requestMethod);
	headReader_.reset();
	state_ = State::Head;
}

Result<bool> ResponseParser::startMessage()
{
	auto head = parseResponseHead(headReader_.head(), requestMethod_);
	if (!head)
		return fail(std::move(head).error());
	head_ = std::move(*head);
	bool skipBody = bodyless(head_.framing, head_.contentLength);
	driver_.begin(HTTP_RESPONSE, skipBody);
	GVM_TRY_VOID(driver_.execute(headReader_.head(), 502), "while parsing the response head");
	GVM_TRY_VOID(crossCheck(driver_, head_.framing, head_.contentLength, 502), "while parsing the response head");
	headReader_.reset();
	bodyReader_.start(head_.framing, head_.contentLength);
	return !(head_.status < 200 && head_.status != 101);
}

void ResponseParser::afterHead()
{
	bool tunnel = head_.status == 101 || (requestMethod_ == "CONNECT" && head_.status / 100 == 2);
	if (tunnel)
		state_ = State::Tunnel;
	else if (bodyReader_.done())
		completeMessage();
	else
		state_ = State::Body;
}

void ResponseParser::completeMessage()
{
	state_ = head_.keepAlive ? State::Idle : State::Closed;
	if (callbacks_.onMessageComplete)
		callbacks_.onMessageComplete();
}

void ResponseParser::resume()
{
	if (state_ == State::Paused)
		afterHead();
}

Result<size_t> ResponseParser::feed(std::string_view data)
{
	if (state_ == State::Failed)
		return fail(error_);
	size_t used = 0;
	while (used < data.size()) {
		if (state_ == State::Idle)
			return failWith(httpError(502, "response data without a request"));
		if (state_ == State::Head) {
			auto n = headReader_.feed(data.substr(used));
			if (!n)
				return failWith(std::move(n).error());
			used += *n;
			if (!headReader_.complete())
				continue;
			auto final = startMessage();
			if (!final)
				return failWith(std::move(final).error());
			if (!*final) {
				if (callbacks_.onInterim)
					callbacks_.onInterim(head_);
				continue; // still in Head: the final response follows
			}
			HeadAction action = callbacks_.onHead ? callbacks_.onHead(head_) : HeadAction::Continue;
			if (action == HeadAction::Pause)
				state_ = State::Paused;
			else
				afterHead();
		} else if (state_ == State::Body) {
			std::string_view rest = data.substr(used);
			auto n = bodyReader_.scan(rest);
			if (!n)
				return failWith(std::move(n).error());
			auto ok = driver_.execute(rest.substr(0, *n), 502);
			if (!ok)
				return failWith(std::move(ok).error().wrap("while reading the response body"));
			used += *n;
			if (bodyReader_.done() != driver_.messageComplete())
				return failWith(httpError(502, "body framing disagreement"));
			if (bodyReader_.done())
				completeMessage();
		} else {
			break; // Paused, Tunnel, Closed
		}
	}
	return used;
}

Result<void> ResponseParser::finish()
{
	switch (state_) {
	case State::Failed:
		return fail(error_);
	case State::Idle:
	case State::Tunnel:
	case State::Closed:
		return {};
	case State::Head:
		return failWith(httpError(502, "upstream closed before a complete response"));
	case State::Paused:
	case State::Body:
		if (head_.framing != BodyFraming::UntilClose)
			return failWith(httpError(502, "upstream closed inside a response body"));
		{
			// A paused read-until-close response ends here too: there
			// is no more body to wait for.
			auto ok = driver_.executeEof(502);
			if (!ok)
				return failWith(std::move(ok).error());
		}
		state_ = State::Closed;
		if (callbacks_.onMessageComplete)
			callbacks_.onMessageComplete();
		return {};
	}
	return {};
}

// Serializers

Result<std::string> serializeRequestHead(const RequestHead &head, bool keepAlive)
{
	std::string out;
	out.reserve(256);
	out += head.method;
	out += ' ';
	if (head.isConnect()) {
		out += formatHost(head.host, head.port, 0);
	} else {
		out += head.path.empty() ? "/" : head.path;
		if (head.hasQuery) {
			out += '?';
			out += head.query;
		}
	}
	out += ' ';
	out += toString(head.version);
	out += "\r\n";
	for (char c : std::string_view(out).substr(0, out.size() - 2))
		if (isBadControl(static_cast<unsigned char>(c)) || static_cast<unsigned char>(c) >= 0x80)
			return fail(httpError(500, "invalid request line"));
	if (!head.header("Host") && !head.host.empty()) {
		out += "Host: ";
		out += formatHost(head.host, head.port, head.scheme == "https" ? 443 : 80);
		out += "\r\n";
	}
	bool upgrading = head.isUpgrade();
	GVM_TRY_VOID(appendHeaders(out, head.headers, upgrading), "while serializing a request head");
	if (head.framing == BodyFraming::Chunked)
		out += "Transfer-Encoding: chunked\r\n";
	appendConnection(out, head.version, keepAlive, upgrading);
	out += "\r\n";
	return out;
}

Result<std::string> serializeResponseHead(const ResponseHead &head, bool keepAlive)
{
	std::string out;
	out.reserve(256);
	out += toString(head.version);
	out += ' ';
	out += std::to_string(head.status);
	out += ' ';
	out += head.reason;
	for (char c : head.reason)
		if (isBadControl(static_cast<unsigned char>(c)))
			return fail(httpError(500, "invalid reason phrase"));
	out += "\r\n";
	bool upgrading = head.status == 101 && !head.upgrade.empty();
	GVM_TRY_VOID(appendHeaders(out, head.headers, upgrading), "while serializing a response head");
	if (head.framing == BodyFraming::Chunked)
		out += "Transfer-Encoding: chunked\r\n";
	appendConnection(out, head.version, keepAlive && head.framing != BodyFraming::UntilClose, upgrading);
	out += "\r\n";
	return out;
}

std::string buildResponse(int status, std::string_view body, bool keepAlive, std::string_view contentType)
{
	std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reasonPhrase(status) + "\r\n";
	out += "Content-Type: ";
	out += contentType;
	out += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
	out += keepAlive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
	out += "\r\n";
	out += body;
	return out;
}

const char *reasonPhrase(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 407: return "Proxy Authentication Required";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 417: return "Expectation Failed";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

} // namespace gvm::proxy
