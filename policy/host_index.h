// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace gvm::policy {

// One entry of a `hosts:` list, already lower-cased and without a trailing
// dot: an exact name, "*.suffix" (any subdomain of suffix at any depth, not
// suffix itself) or "*" (any host).
struct HostPattern {
	enum class Kind { Exact, Suffix, Any };
	Kind kind = Kind::Exact;
	std::string name; // Exact: the host; Suffix: the suffix; Any: empty

	bool matches(std::string_view host) const; // host as canonicalHost() gives it
	std::string toString() const;
};

// Lower-cases and drops one trailing dot: the form hosts are matched in.
std::string canonicalHost(std::string_view host);

// Rules by host, so a request is matched against the rules that can apply to
// its host rather than every rule: exact name → rule indices, wildcard suffix
// → rule indices, and the rules that apply to any host. Built once by the
// loader, then read-only; safe to read from several threads.
class HostIndex
{
public:
	// Rule indices must be added in increasing order.
	void add(const HostPattern &pattern, int ruleIndex);
	void addAnyHost(int ruleIndex);

	// Calls `visit(ruleIndex)` for every rule that may apply to `host`, in
	// rule order, until it returns true. Returns whether one did.
	template<typename Visit>
	bool forEachCandidate(std::string_view host, Visit &&visit) const;

	// Whether an exact or wildcard entry (not "*") names `host`.
	bool lists(std::string_view host) const;

private:
	static void append(std::vector<int> *list, int ruleIndex);
	void collect(std::string_view host, std::vector<std::span<const int>> *lists) const;

	std::unordered_map<std::string, std::vector<int>> exact_;
	std::unordered_map<std::string, std::vector<int>> suffix_;
	std::vector<int> any_;
};

template<typename Visit>
bool HostIndex::forEachCandidate(std::string_view host, Visit &&visit) const
{
	std::vector<std::span<const int>> lists;
	collect(host, &lists);
	// A k-way merge of the sorted lists, dropping duplicates (a rule may
	// list a host and a wildcard above it). k is small: at most one list
	// per label of the host plus two.
	std::vector<size_t> pos(lists.size(), 0);
	for (;;) {
		int next = -1;
		for (size_t i = 0; i < lists.size(); i++) {
			if (pos[i] < lists[i].size() && (next < 0 || lists[i][pos[i]] < next))
				next = lists[i][pos[i]];
		}
		if (next < 0)
			return false;
		for (size_t i = 0; i < lists.size(); i++) {
			if (pos[i] < lists[i].size() && lists[i][pos[i]] == next)
				pos[i]++;
		}
		if (visit(next))
			return true;
	}
}

} // namespace gvm::policy
