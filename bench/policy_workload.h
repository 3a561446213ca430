// SPDX-License-Identifier: Apache-2.0
//
// A synthetic but realistic policy workload for the policy benchmark: the
// YAML text of a large policy (exact hosts, wildcards, methods, path
// regexes, body/query/header rules, host-less rules, rates, delays, holds,
// passthrough and tcp rules, a default) and a request mix over it (hits on
// early and late rules, wildcard hits, requests a host's rules turn away,
// misses that fall to the default), each with the rule it must hit. Built
// deterministically from indices, so every run measures the same thing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "policy/policy.h"

namespace gvm::bench {

struct HttpProbe {
	gvm::policy::HttpRequest request;
	std::string expectedRule; // "" = the default
};

struct TlsProbe {
	std::string sni;
	uint16_t port = 443;
};

struct DnsProbe {
	std::string name;
	uint16_t qtype = gvm::policy::kDnsTypeA;
};

struct Workload {
	std::string policyText;
	size_t ruleCount = 0;
	std::vector<HttpProbe> http;
	std::vector<TlsProbe> tls;
	std::vector<DnsProbe> dns;
};

// A policy of `ruleCount` rules (at least 1000 makes every rule kind appear
// many times) and `probeCount` probes of each kind.
Workload makeWorkload(size_t ruleCount, size_t probeCount);

} // namespace gvm::bench
