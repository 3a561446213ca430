// SPDX-License-Identifier: Apache-2.0
#include "common/json_writer.h"

namespace gvm {

namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD"; // U+FFFD in UTF-8

// Length of the valid UTF-8 sequence at the start of s, or 0 when it is not
// one (overlong forms, surrogates and code points above U+10FFFF included).
size_t validSequence(std::string_view s)
{
	const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
	const auto continuation = [&](size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
	const unsigned char lead = b(0);
	if (lead >= 0xC2 && lead <= 0xDF)
		return continuation(1) ? 2 : 0;
	if (lead >= 0xE0 && lead <= 0xEF) {
		if (!continuation(1) || !continuation(2))
			return 0;
		if ((lead == 0xE0 && b(1) < 0xA0) || (lead == 0xED && b(1) >= 0xA0))
			return 0; // overlong, or a surrogate
		return 3;
	}
	if (lead >= 0xF0 && lead <= 0xF4) {
		if (!continuation(1) || !continuation(2) || !continuation(3))
			return 0;
		if ((lead == 0xF0 && b(1) < 0x90) || (lead == 0xF4 && b(1) >= 0x90))
			return 0; // overlong, or above U+10FFFF
		return 4;
	}
	return 0;
}

} // namespace

void appendJsonString(std::string &out, std::string_view text)
{
	out.reserve(out.size() + text.size() + 2);
	out += '"';
	size_t i = 0;
	while (i < text.size()) {
		// Runs of bytes that are written as they are go in at once.
		size_t run = i;
		while (run < text.size()) {
			const auto c = static_cast<unsigned char>(text[run]);
			if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
				++run;
				continue;
			}
			const size_t n = c >= 0x80 ? validSequence(text.substr(run)) : 0;
			if (n == 0)
				break;
			run += n;
		}
		out.append(text.substr(i, run - i));
		i = run;
		if (i == text.size())
			break;
		const auto c = static_cast<unsigned char>(text[i++]);
		switch (c) {
		case '"': out += "\\\""; break;
		case '\\': out += "\\\\"; break;
		case '\n': out += "\\n"; break;
		case '\r': out += "\\r"; break;
		case '\t': out += "\\t"; break;
		case '\b': out += "\\b"; break;
		case '\f': out += "\\f"; break;
		default:
			if (c < 0x20) {
				static constexpr char kHex[] = "0123456789abcdef";
				out += "\\u00";
				out += kHex[c >> 4];
				out += kHex[c & 0xF];
			} else {
				out += kReplacement; // not valid UTF-8 here
			}
		}
	}
	out += '"';
}

void JsonObjectWriter::key(std::string_view key)
{
	if (!first_)
		out_ += ',';
	first_ = false;
	out_ += '"';
	out_ += key;
	out_ += "\":";
}

JsonObjectWriter &JsonObjectWriter::string(std::string_view k, std::string_view value)
{
	key(k);
	appendJsonString(out_, value);
	return *this;
}

JsonObjectWriter &JsonObjectWriter::number(std::string_view k, int64_t value)
{
	key(k);
	out_ += std::to_string(value);
	return *this;
}

JsonObjectWriter &JsonObjectWriter::raw(std::string_view k, std::string_view json)
{
	key(k);
	out_ += json;
	return *this;
}

} // namespace gvm
