// SPDX-License-Identifier: Apache-2.0
#include "policy/host_index.h"

#include "common/text.h"

namespace gvm::policy {

bool HostPattern::matches(std::string_view host) const
{
	switch (kind) {
	case Kind::Any:
		return true;
	case Kind::Exact:
		return host == name;
	case Kind::Suffix:
		return host.size() > name.size() + 1 && host.ends_with(name) &&
		       host[host.size() - name.size() - 1] == '.';
	}
	return false;
}

std::string HostPattern::toString() const
{
	switch (kind) {
	case Kind::Any:
		return "*";
	case Kind::Exact:
		return name;
	case Kind::Suffix:
		return "*." + name;
	}
	return name;
}

std::string canonicalHost(std::string_view host)
{
	if (host.ends_with('.'))
		host.remove_suffix(1);
	return asciiLower(host);
}

void HostIndex::append(std::vector<int> *list, int ruleIndex)
{
	if (list->empty() || list->back() != ruleIndex)
		list->push_back(ruleIndex);
}

void HostIndex::add(const HostPattern &pattern, int ruleIndex)
{
	switch (pattern.kind) {
	case HostPattern::Kind::Any:
		append(&any_, ruleIndex);
		break;
	case HostPattern::Kind::Exact:
		append(&exact_[pattern.name], ruleIndex);
		break;
	case HostPattern::Kind::Suffix:
		append(&suffix_[pattern.name], ruleIndex);
		break;
	}
}

void HostIndex::addAnyHost(int ruleIndex)
{
	append(&any_, ruleIndex);
}

void HostIndex::collect(std::string_view host, std::vector<std::span<const int>> *lists) const
{
	// unordered_map<std::string> has no heterogeneous lookup in C++20's
	// libstdc++ 12, so the key is built once and shortened in place.
	std::string key(host);
	if (auto it = exact_.find(key); it != exact_.end())
		lists->emplace_back(it->second);
	if (!suffix_.empty()) {
		// Each proper parent suffix: a.b.c → b.c, c.
		for (size_t dot = host.find('.'); dot != std::string_view::npos; dot = host.find('.', dot + 1)) {
			if (dot == 0)
				continue; // ".example.com" is not a subdomain of anything
			key.assign(host.substr(dot + 1));
			if (auto it = suffix_.find(key); it != suffix_.end())
				lists->emplace_back(it->second);
		}
	}
	if (!any_.empty())
		lists->emplace_back(any_);
}

bool HostIndex::lists(std::string_view host) const
{
	std::vector<std::span<const int>> found;
	collect(host, &found);
	if (!any_.empty())
		found.pop_back();
	return !found.empty();
}

} // namespace gvm::policy
