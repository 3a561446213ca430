// SPDX-License-Identifier: Apache-2.0
#include "common/url.h"

#include "common/text.h"

#include <charconv>

namespace gvm {

namespace {

Error urlError(std::string_view text, std::string_view why)
{
	return Error(ErrorDomain::Internal, 0, "invalid URL '" + std::string(text) + "': " + std::string(why));
}

} // namespace

Result<Url> parseUrl(std::string_view text)
{
	Url url;
	size_t colon = text.find("://");
	if (colon == std::string_view::npos)
		return fail(urlError(text, "expected SCHEME://HOST[:PORT]/PATH"));
	url.scheme = asciiLower(text.substr(0, colon));
	uint16_t defaultPort;
	if (url.scheme == "http" || url.scheme == "ws")
		defaultPort = 80;
	else if (url.scheme == "https" || url.scheme == "wss")
		defaultPort = 443;
	else
		return fail(urlError(text, "unsupported scheme '" + url.scheme + "' (expected http, https, ws or wss)"));

	std::string_view rest = text.substr(colon + 3);
	size_t authorityEnd = rest.find_first_of("/?#");
	std::string_view authority = rest.substr(0, authorityEnd);
	std::string_view tail = authorityEnd == std::string_view::npos ? std::string_view() : rest.substr(authorityEnd);

	if (authority.find('@') != std::string_view::npos)
		return fail(urlError(text, "user information in URLs is not supported"));

	std::string_view host = authority;
	std::string_view port;
	if (!authority.empty() && authority.front() == '[') {
		size_t close = authority.find(']');
		if (close == std::string_view::npos)
			return fail(urlError(text, "unterminated IPv6 address"));
		host = authority.substr(1, close - 1);
		std::string_view after = authority.substr(close + 1);
		if (!after.empty()) {
			if (after.front() != ':')
				return fail(urlError(text, "unexpected characters after the IPv6 address"));
			port = after.substr(1);
		}
	} else if (size_t c = authority.rfind(':'); c != std::string_view::npos) {
		host = authority.substr(0, c);
		port = authority.substr(c + 1);
	}
	if (host.empty())
		return fail(urlError(text, "missing host"));
	for (char ch : host) {
		unsigned char c = static_cast<unsigned char>(ch);
		if (c <= 0x20 || c >= 0x7f || ch == '/' || ch == '\\' || ch == '%')
			return fail(urlError(text, "invalid character in host"));
	}
	url.host = asciiLower(host);

	url.port = defaultPort;
	if (!port.empty()) {
		unsigned value = 0;
		auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
		if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
			return fail(urlError(text, "invalid port '" + std::string(port) + "'"));
		url.port = static_cast<uint16_t>(value);
	}

	if (size_t hash = tail.find('#'); hash != std::string_view::npos)
		tail = tail.substr(0, hash);
	size_t q = tail.find('?');
	url.path = std::string(tail.substr(0, q));
	if (q != std::string_view::npos)
		url.query = std::string(tail.substr(q + 1));
	if (url.path.empty())
		url.path = "/";
	return url;
}

} // namespace gvm
