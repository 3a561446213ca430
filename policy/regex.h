// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include "common/c_ptr.h"

namespace gvm::policy {

// The outcome of one match. LimitExceeded means PCRE2 gave up (match, depth,
// heap or JIT stack limit): the caller must treat it as "unknown" and fail
// closed rather than as a plain miss.
enum class MatchResult { Match, NoMatch, LimitExceeded };

// Why a pattern did not compile: PCRE2's message and the offset in the
// pattern where it noticed.
struct RegexError {
	std::string message;
	size_t offset = 0;
};

// A compiled PCRE2 pattern (byte mode, no UTF, so a request carrying invalid
// UTF-8 cannot turn a match into an error), JIT-compiled where the platform
// allows and interpreted otherwise. Owned by a compiled rule and immutable
// after compile(): match() may be called from several threads at once, each
// using its own thread_local match data and match context, which carry
// kRegexMatchLimit and kRegexDepthLimit.
class Regex
{
public:
	// Compiles `pattern`; on failure returns nothing and fills `error`.
	static std::optional<Regex> compile(std::string_view pattern, RegexError *error);

	MatchResult match(std::string_view subject) const;
	const std::string &pattern() const { return pattern_; }
	bool jit() const { return jit_; }

private:
	Regex(std::string pattern, pcre2_code *code, bool jit);

	std::string pattern_;
	CPtr<pcre2_code, pcre2_code_free> code_;
	bool jit_ = false;
};

} // namespace gvm::policy
