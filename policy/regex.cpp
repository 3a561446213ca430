// SPDX-License-Identifier: Apache-2.0
#include "policy/regex.h"

#include "policy/policy.h"

namespace gvm::policy {

namespace {

using MatchData = CPtr<pcre2_match_data, pcre2_match_data_free>;
using MatchContext = CPtr<pcre2_match_context, pcre2_match_context_free>;

// Per-thread scratch: the engine is shared between threads, PCRE2 match data
// is not. One ovector pair is enough, nobody reads captures.
struct MatchScratch {
	MatchData data{pcre2_match_data_create(1, nullptr)};
	MatchContext context{pcre2_match_context_create(nullptr)};

	MatchScratch()
	{
		if (context) {
			pcre2_set_match_limit(context.get(), kRegexMatchLimit);
			pcre2_set_depth_limit(context.get(), kRegexDepthLimit);
		}
	}
};

MatchScratch &scratch()
{
	thread_local MatchScratch s;
	return s;
}

bool isLimitError(int rc)
{
	switch (rc) {
	case PCRE2_ERROR_MATCHLIMIT:
	case PCRE2_ERROR_DEPTHLIMIT:
	case PCRE2_ERROR_HEAPLIMIT:
	case PCRE2_ERROR_JIT_STACKLIMIT:
	case PCRE2_ERROR_NOMEMORY:
		return true;
	default:
		return false;
	}
}

} // namespace

Regex::Regex(std::string pattern, pcre2_code *code, bool jit)
	: pattern_(std::move(pattern)), code_(code), jit_(jit)
{
}

std::optional<Regex> Regex::compile(std::string_view pattern, RegexError *error)
{
	int code = 0;
	PCRE2_SIZE offset = 0;
	pcre2_code *re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
				       0, &code, &offset, nullptr);
	if (!re) {
		PCRE2_UCHAR buf[256];
		if (pcre2_get_error_message(code, buf, sizeof(buf)) < 0)
			error->message = "error " + std::to_string(code);
		else
			error->message = reinterpret_cast<const char *>(buf);
		error->offset = offset;
		return std::nullopt;
	}
	// JIT is an optimisation: where the platform lacks it (or it runs out
	// of executable memory) the interpreter gives the same answers.
	bool jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
	return Regex(std::string(pattern), re, jit);
}

MatchResult Regex::match(std::string_view subject) const
{
	MatchScratch &s = scratch();
	if (!s.data || !s.context)
		return MatchResult::LimitExceeded;
	// PCRE2 10.42 rejects a null subject even when it is empty.
	const char *bytes = subject.data() ? subject.data() : "";
	int rc = pcre2_match(code_.get(), reinterpret_cast<PCRE2_SPTR>(bytes), subject.size(), 0, 0,
			     s.data.get(), s.context.get());
	if (rc >= 0)
		return MatchResult::Match;
	if (isLimitError(rc))
		return MatchResult::LimitExceeded;
	return MatchResult::NoMatch;
}

} // namespace gvm::policy
