// SPDX-License-Identifier: Apache-2.0
#include "client/table.h"

#include <algorithm>
#include <cmath>
#include <sys/ioctl.h>
#include <unistd.h>

namespace gvm::client {

namespace {

bool isContinuation(char c)
{
	return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

} // namespace

std::string terminalSafe(std::string_view text)
{
	static const char kHex[] = "0123456789abcdef";
	std::string out;
	out.reserve(text.size());
	for (size_t i = 0; i < text.size(); ++i) {
		const auto u = static_cast<unsigned char>(text[i]);
		if (u < 0x20 || u == 0x7f) {
			out += "\\x";
			out += kHex[u >> 4];
			out += kHex[u & 0xf];
		} else if (u == 0xc2 && i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xe0) == 0x80) {
			const auto c1 = static_cast<unsigned char>(text[++i]);
			out += "\\u00";
			out += kHex[c1 >> 4];
			out += kHex[c1 & 0xf];
		} else {
			out += text[i];
		}
	}
	return out;
}

size_t displayWidth(std::string_view text)
{
	return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) { return !isContinuation(c); }));
}

std::string truncateText(std::string_view text, size_t width)
{
	if (displayWidth(text) <= width)
		return std::string(text);
	if (width == 0)
		return "";
	// Keep width - 1 characters, cut at a character boundary.
	size_t kept = 0;
	size_t end = 0;
	for (; end < text.size(); ++end) {
		if (isContinuation(text[end]))
			continue;
		if (kept == width - 1)
			break;
		++kept;
	}
	return std::string(text.substr(0, end)) + "…";
}

std::string Table::render() const
{
	std::vector<size_t> widths;
	for (const auto &row : rows_) {
		if (widths.size() < row.size())
			widths.resize(row.size(), 0);
		for (size_t i = 0; i < row.size(); ++i)
			widths[i] = std::max(widths[i], displayWidth(row[i]));
	}
	std::string out;
	for (const auto &row : rows_) {
		std::string line;
		for (size_t i = 0; i < row.size(); ++i) {
			line += row[i];
			if (i + 1 < row.size())
				line.append(widths[i] - displayWidth(row[i]) + 2, ' ');
		}
		// An empty last cell leaves no trailing blanks.
		while (!line.empty() && line.back() == ' ')
			line.pop_back();
		out += line + "\n";
	}
	return out;
}

size_t Table::widthBeforeLast() const
{
	std::vector<size_t> widths;
	for (const auto &row : rows_) {
		if (widths.size() < row.size())
			widths.resize(row.size(), 0);
		for (size_t i = 0; i < row.size(); ++i)
			widths[i] = std::max(widths[i], displayWidth(row[i]));
	}
	size_t total = 0;
	for (size_t i = 0; i + 1 < widths.size(); ++i)
		total += widths[i] + 2;
	return total;
}

std::string formatAge(double seconds)
{
	if (!(seconds > 0))
		return "0s";
	const auto s = static_cast<long long>(std::floor(seconds));
	if (s < 60)
		return std::to_string(s) + "s";
	if (s < 3600)
		return std::to_string(s / 60) + "m";
	if (s < 86400)
		return std::to_string(s / 3600) + "h";
	return std::to_string(s / 86400) + "d";
}

std::string formatRemaining(int64_t milliseconds)
{
	if (milliseconds <= 0)
		return "0s";
	const int64_t s = (milliseconds + 999) / 1000;
	auto two = [](int64_t v) { return (v < 10 ? "0" : "") + std::to_string(v); };
	if (s < 60)
		return std::to_string(s) + "s";
	if (s < 3600)
		return std::to_string(s / 60) + "m" + two(s % 60) + "s";
	return std::to_string(s / 3600) + "h" + two((s % 3600) / 60) + "m";
}

std::string formatBytes(uint64_t bytes)
{
	static const char kUnits[] = "KMGTPE";
	if (bytes < 1024)
		return std::to_string(bytes) + "B";
	size_t unit = 0;
	uint64_t scale = 1024;
	while (unit + 1 < sizeof kUnits - 1 && bytes / scale >= 1024) {
		scale *= 1024;
		++unit;
	}
	const uint64_t whole = bytes / scale;
	if (whole >= 10)
		return std::to_string(whole) + kUnits[unit];
	// Tenths, rounded down; the remainder is below 2^60, so ten times it
	// still fits.
	const uint64_t tenths = (bytes % scale) * 10 / scale;
	return std::to_string(whole) + "." + std::to_string(tenths) + kUnits[unit];
}

std::string shellJoin(const std::vector<std::string> &argv)
{
	static const std::string_view kPlain =
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=.,/:@%^";
	std::string out;
	for (const std::string &arg : argv) {
		if (!out.empty())
			out += ' ';
		bool plain = !arg.empty();
		for (char c : arg)
			plain = plain && (kPlain.find(c) != std::string_view::npos || (static_cast<unsigned char>(c) & 0x80));
		if (plain) {
			out += arg;
			continue;
		}
		out += '\'';
		for (char c : arg)
			out += c == '\'' ? std::string("'\\''") : std::string(1, c);
		out += '\'';
	}
	return out;
}

std::string cellText(const rpc::Json &object, const char *key)
{
	if (!object.is_object())
		return "-";
	auto it = object.find(key);
	if (it == object.end() || it->is_null())
		return "-";
	if (it->is_string()) {
		const std::string &s = it->get_ref<const std::string &>();
		return s.empty() ? "-" : terminalSafe(s);
	}
	return terminalSafe(rpc::dumpJson(*it));
}

std::optional<size_t> stdoutColumns()
{
	if (!::isatty(STDOUT_FILENO))
		return std::nullopt;
	winsize size{};
	if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) < 0 || size.ws_col == 0)
		return std::nullopt;
	return size.ws_col;
}

} // namespace gvm::client
