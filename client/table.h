// SPDX-License-Identifier: Apache-2.0
//
// Plain-text output helpers shared by gvmctl's listing commands.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/json_rpc.h"

namespace gvm::client {

// Columns left-aligned, two spaces apart, the last one unpadded. Widths
// count characters (UTF-8 code points), not bytes.
class Table
{
public:
	explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
	void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
	// Every line, each ending in '\n'.
	std::string render() const;
	// How wide render() makes each line up to (not including) the last
	// column, so that a caller can fit the last one into a terminal.
	size_t widthBeforeLast() const;

private:
	std::vector<std::vector<std::string>> rows_;
};

// Text safe to print on a terminal, whoever chose it (hosts and paths come
// from agent traffic): C0 controls and DEL become \xNN, the C1 controls
// (U+0080..U+009F, which some terminals obey in UTF-8) \u00NN.
std::string terminalSafe(std::string_view text);

// Characters in UTF-8 text (continuation bytes are not counted).
size_t displayWidth(std::string_view text);
// Text cut to at most `width` characters, the last of them "…" when cut.
std::string truncateText(std::string_view text, size_t width);

// A compact age: "5s", "3m", "2h", "4d" (whole units, rounded down).
std::string formatAge(double seconds);
// Time left: "45s", "1m52s", "2h03m" (rounded up to the second); "0s" when
// none is left.
std::string formatRemaining(int64_t milliseconds);

// A size in binary units, as ls -h prints it: "512B", "9.5K", "105M",
// "1.5G" (one decimal below 10, rounded down; K = 1024 bytes).
std::string formatBytes(uint64_t bytes);

// argv as a shell would need it typed: words with spaces, quotes or other
// special characters are single-quoted.
std::string shellJoin(const std::vector<std::string> &argv);

// A JSON member as table text: strings as they are (terminalSafe), numbers
// and booleans printed, "-" for missing, null or empty. Never throws.
std::string cellText(const rpc::Json &object, const char *key);

// The terminal width of stdout, if stdout is a terminal.
std::optional<size_t> stdoutColumns();

} // namespace gvm::client
