// SPDX-License-Identifier: Apache-2.0
//
// A policy after loading: every selector parsed, every regex compiled. The
// loader builds it, CompiledEngine owns it and never changes it.
#pragma once

#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "policy/cidr.h"
#include "policy/host_index.h"
#include "policy/policy.h"
#include "policy/regex.h"

namespace gvm::policy {

// A regex on the value(s) of a named part of the request: a query parameter
// (key as written; request parameters are percent-decoded) or a header (key
// lower-cased).
struct KeyedRegex {
	std::string key;
	Regex regex;
};

struct BodySelector {
	// Empty for a regex on the body text; else the dotted path, split.
	std::vector<std::string> jsonPath;
	std::string jsonPathText; // as written, for reasons
	Regex regex;
};

struct TcpSelector {
	std::vector<HostPattern> hosts;
	std::vector<Cidr> cidrs;
	std::vector<std::string> cidrTexts; // as written, for reasons
	std::vector<uint16_t> ports;
};

struct CompiledRule {
	std::string name;
	std::vector<HostPattern> hosts; // empty: any host
	std::vector<uint16_t> ports;
	std::vector<std::string> methods; // upper-cased
	std::optional<Regex> path;
	std::vector<KeyedRegex> query;
	std::vector<KeyedRegex> headers;
	std::optional<BodySelector> body;
	std::optional<TcpSelector> tcp;
	bool passthrough = false; // tls: passthrough
	std::optional<Rate> rate;
	Action action;

	// Selectors that need the decrypted request (TLS cannot decide them).
	bool hasRequestSelectors() const
	{
		return !methods.empty() || path || !query.empty() || !headers.empty() || body;
	}
};

// The `filesystem:` section's value when the policy has none: the workspace
// as an overlay, kDefaultHidden hidden.
inline FilesystemPolicy defaultFilesystemPolicy()
{
	FilesystemPolicy policy;
	policy.hidden.assign(std::begin(kDefaultHidden), std::end(kDefaultHidden));
	return policy;
}

struct CompiledPolicy {
	std::string name;
	Mode mode = Mode::Enforce;
	Action defaultAction;
	DnsResolve dnsResolve = DnsResolve::Policy;
	size_t maxDnsNameLength = kDefaultMaxDnsNameLength;
	std::vector<std::string> allowCidrs;
	std::vector<CompiledRule> rules;
	// What the sandbox enforces beyond the network; absent sections keep
	// these defaults.
	FilesystemPolicy filesystem = defaultFilesystemPolicy();
	SyscallPolicy syscalls;
	ResourceLimits limits;
};

// Builds the engine for a loaded policy; `sha256` is of the policy text.
std::shared_ptr<const Engine> makeCompiledEngine(CompiledPolicy policy, std::string sha256);

} // namespace gvm::policy
