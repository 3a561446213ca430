// SPDX-License-Identifier: Apache-2.0
//
// Path and query text as the engine matches it: percent-encoding and dot
// segments normalised, so "/graph%71l" and "/a/../graphql" are "/graphql".
#include "policy/path.h"

#include "common/text.h"

#include "policy/policy.h"

namespace gvm::policy {

namespace {


bool isUnreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
	       c == '.' || c == '_' || c == '~';
}

char upperHex(char c)
{
	return (c >= 'a' && c <= 'f') ? static_cast<char>(c - 'a' + 'A') : c;
}

} // namespace

std::string percentDecode(std::string_view text, bool plusIsSpace)
{
	std::string out;
	out.reserve(text.size());
	for (size_t i = 0; i < text.size(); i++) {
		char c = text[i];
		if (c == '%' && i + 2 < text.size() && hexDigitValue(text[i + 1]) >= 0 && hexDigitValue(text[i + 2]) >= 0) {
			out += static_cast<char>(hexDigitValue(text[i + 1]) * 16 + hexDigitValue(text[i + 2]));
			i += 2;
		} else if (c == '+' && plusIsSpace) {
			out += ' ';
		} else {
			out += c;
		}
	}
	return out;
}

std::string removeDotSegments(std::string_view in)
{
	std::string out;
	out.reserve(in.size());
	auto dropLastSegment = [&out]() {
		size_t slash = out.rfind('/');
		out.erase(slash == std::string::npos ? 0 : slash);
	};
	while (!in.empty()) {
		if (in.starts_with("../")) {
			in.remove_prefix(3);
		} else if (in.starts_with("./")) {
			in.remove_prefix(2);
		} else if (in.starts_with("/./")) {
			in.remove_prefix(2);
		} else if (in == "/.") {
			in = "/";
		} else if (in.starts_with("/../")) {
			in.remove_prefix(3);
			dropLastSegment();
		} else if (in == "/..") {
			in = "/";
			dropLastSegment();
		} else if (in == "." || in == "..") {
			in = {};
		} else {
			size_t end = in.find('/', in.front() == '/' ? 1 : 0);
			if (end == std::string_view::npos)
				end = in.size();
			out.append(in.substr(0, end));
			in.remove_prefix(end);
		}
	}
	return out;
}

std::string normalizePath(std::string_view path)
{
	// Percent-encoding first (RFC 3986 §6.2.2.2), so an encoded dot
	// ("%2e%2e") is a dot segment too, then dot segments (§6.2.2.3).
	std::string decoded;
	decoded.reserve(path.size());
	for (size_t i = 0; i < path.size(); i++) {
		char c = path[i];
		if (c == '%' && i + 2 < path.size() && hexDigitValue(path[i + 1]) >= 0 && hexDigitValue(path[i + 2]) >= 0) {
			auto byte = static_cast<unsigned char>(hexDigitValue(path[i + 1]) * 16 + hexDigitValue(path[i + 2]));
			if (isUnreserved(byte)) {
				decoded += static_cast<char>(byte);
			} else {
				decoded += '%';
				decoded += upperHex(path[i + 1]);
				decoded += upperHex(path[i + 2]);
			}
			i += 2;
		} else {
			decoded += c;
		}
	}
	std::string out = removeDotSegments(decoded);
	if (out.empty())
		out.push_back('/');
	return out;
}

} // namespace gvm::policy
