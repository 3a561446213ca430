// SPDX-License-Identifier: Apache-2.0
#include "bench/policy_workload.h"

#include <sstream>
#include <string_view>

namespace gvm::bench {

namespace {

// What each rule of the generated policy is. Rule 0 denies shadow model
// providers; five host-less rules sit at fixed tenths of the list; the rest
// cycle through the kinds a large organisation's policy is made of.
enum class RuleKind {
	Shadow,
	NoMethodOverride, // host-less: a header
	WellKnown,        // host-less: GET + path
	NoTrace,          // host-less: methods
	NoDebugQuery,     // host-less: a query parameter
	Robots,           // host-less: GET + path + rate
	Read,             // two exact hosts, GET/HEAD
	Wildcard,         // apex + "*.", GET/HEAD/POST
	WriteDelay,       // POST/PUT + path regex, delayed
	WriteHold,        // POST/DELETE + path regex, held
	GraphqlMutation,  // POST + path + body (JSON field) regex, denied
	TokenQuery,       // GET + query parameter regex
	AuthHeader,       // header regex
	Rated,            // host + rate
	Block,            // exact + "*.", denied
	Port,             // exact host on port 8443
	Tcp,              // raw TCP to a database
	Pinned,           // tls: passthrough
};

constexpr RuleKind kCycle[16] = {
	RuleKind::Read,       RuleKind::Read,      RuleKind::Read,       RuleKind::Read,
	RuleKind::Read,       RuleKind::Wildcard,  RuleKind::Wildcard,   RuleKind::WriteDelay,
	RuleKind::WriteHold,  RuleKind::GraphqlMutation, RuleKind::TokenQuery, RuleKind::AuthHeader,
	RuleKind::Rated,      RuleKind::Block,     RuleKind::Port,       RuleKind::Pinned,
};

RuleKind ruleKind(size_t i, size_t n)
{
	if (i == 0)
		return RuleKind::Shadow;
	if (i == n / 10)
		return RuleKind::NoMethodOverride;
	if (i == 3 * n / 10)
		return RuleKind::WellKnown;
	if (i == 5 * n / 10)
		return RuleKind::NoTrace;
	if (i == 7 * n / 10)
		return RuleKind::NoDebugQuery;
	if (i == 9 * n / 10)
		return RuleKind::Robots;
	RuleKind kind = kCycle[i % 16];
	// Every other port rule is a raw TCP rule instead.
	if (kind == RuleKind::Port && (i / 16) % 2 == 1)
		return RuleKind::Tcp;
	return kind;
}

const char *tld(size_t i)
{
	static constexpr const char *kTlds[] = { "com", "io", "net", "dev", "co.uk" };
	return kTlds[i % 5];
}

std::string vendor(size_t i)
{
	return "vendor" + std::to_string(i) + "." + tld(i);
}

std::string apiHost(size_t i)
{
	return "api." + vendor(i);
}

void writeRule(std::ostream &out, size_t i, size_t n)
{
	const std::string id = std::to_string(i);
	switch (ruleKind(i, n)) {
	case RuleKind::Shadow:
		out << "  - name: deny-shadow-models\n"
		    << "    hosts: [api.openai.com, api.anthropic.com, \"*.mistral.ai\", generativelanguage.googleapis.com,\n"
		    << "            api.cohere.com, api.groq.com, api.together.xyz, api.deepseek.com, openrouter.ai,\n"
		    << "            \"*.openai.azure.com\"]\n"
		    << "    action: deny\n";
		break;
	case RuleKind::NoMethodOverride:
		out << "  - name: hostless-no-method-override\n"
		    << "    headers: {x-http-method-override: '.'}\n"
		    << "    action: deny\n";
		break;
	case RuleKind::WellKnown:
		out << "  - name: hostless-well-known\n"
		    << "    methods: [GET]\n"
		    << "    path: '^/\\.well-known/(security\\.txt|openid-configuration|jwks\\.json)$'\n"
		    << "    action: allow\n";
		break;
	case RuleKind::NoTrace:
		out << "  - name: hostless-no-trace\n"
		    << "    methods: [TRACE, TRACK]\n"
		    << "    action: deny\n";
		break;
	case RuleKind::NoDebugQuery:
		out << "  - name: hostless-no-debug-query\n"
		    << "    query: {debug: '^(1|true|yes)$'}\n"
		    << "    action: deny\n";
		break;
	case RuleKind::Robots:
		out << "  - name: hostless-robots\n"
		    << "    methods: [GET, HEAD]\n"
		    << "    path: '^/robots\\.txt$'\n"
		    << "    rate: 60/min\n"
		    << "    action: allow\n";
		break;
	case RuleKind::Read:
		out << "  - name: read-" << id << "\n"
		    << "    hosts: [" << apiHost(i) << ", www." << vendor(i) << "]\n"
		    << "    methods: [GET, HEAD]\n"
		    << "    action: allow\n";
		break;
	case RuleKind::Wildcard:
		out << "  - name: wild-" << id << "\n"
		    << "    hosts: [svc" << id << ".net, \"*.svc" << id << ".net\"]\n"
		    << "    methods: [GET, HEAD, POST]\n"
		    << "    action: allow\n";
		break;
	case RuleKind::WriteDelay:
		out << "  - name: write-delay-" << id << "\n"
		    << "    hosts: [" << apiHost(i) << "]\n"
		    << "    methods: [POST, PUT]\n"
		    << "    path: '^/v[12]/(items|orders)/[0-9]+(/comments)?$'\n"
		    << "    action: {delay: 250ms}\n";
		break;
	case RuleKind::WriteHold:
		out << "  - name: write-hold-" << id << "\n"
		    << "    hosts: [" << apiHost(i) << "]\n"
		    << "    methods: [POST, DELETE]\n"
		    << "    path: '^/admin/'\n"
		    << "    action: {hold: 60s}\n";
		break;
	case RuleKind::GraphqlMutation:
		out << "  - name: graphql-" << id << "\n"
		    << "    hosts: [gql." << vendor(i) << "]\n"
		    << "    methods: [POST]\n"
		    << "    path: '^/graphql$'\n"
		    << "    body: {json: query, regex: '^\\s*mutation'}\n"
		    << "    action: deny\n";
		break;
	case RuleKind::TokenQuery:
		out << "  - name: token-query-" << id << "\n"
		    << "    hosts: [hooks." << vendor(i) << "]\n"
		    << "    methods: [GET]\n"
		    << "    query: {token: '^[a-f0-9]{32}$'}\n"
		    << "    action: allow\n";
		break;
	case RuleKind::AuthHeader:
		out << "  - name: auth-header-" << id << "\n"
		    << "    hosts: [" << apiHost(i) << "]\n"
		    << "    headers: {authorization: '^Bearer [A-Za-z0-9._-]+$'}\n"
		    << "    action: allow\n";
		break;
	case RuleKind::Rated:
		out << "  - name: rated-" << id << "\n"
		    << "    hosts: [" << apiHost(i) << "]\n"
		    << "    rate: 600/min\n"
		    << "    action: allow\n";
		break;
	case RuleKind::Block:
		out << "  - name: block-" << id << "\n"
		    << "    hosts: [tracker" << id << ".ads.example, \"*.tracker" << id << ".ads.example\"]\n"
		    << "    action: deny\n";
		break;
	case RuleKind::Port:
		out << "  - name: port-" << id << "\n"
		    << "    hosts: [internal" << id << ".vendor.com]\n"
		    << "    ports: [8443]\n"
		    << "    methods: [GET]\n"
		    << "    action: allow\n";
		break;
	case RuleKind::Tcp:
		out << "  - name: tcp-" << id << "\n"
		    << "    tcp: {hosts: [db" << id << ".vendor.net], ports: [5432]}\n"
		    << "    action: allow\n";
		break;
	case RuleKind::Pinned:
		out << "  - name: pinned-" << id << "\n"
		    << "    hosts: [pinned" << id << ".vendor.com]\n"
		    << "    tls: passthrough\n"
		    << "    action: allow\n";
		break;
	}
}

std::string makePolicyText(size_t n)
{
	std::ostringstream out;
	out << "# Generated by the policy benchmark: " << n << " rules.\n"
	    << "version: 1\n"
	    << "name: bench-" << n << "\n"
	    << "mode: enforce\n"
	    << "default: deny\n"
	    << "dns:\n"
	    << "  resolve: policy\n"
	    << "  max_name_length: 120\n"
	    << "upstream:\n"
	    << "  allow_cidrs: []\n"
	    << "rules:\n";
	for (size_t i = 0; i < n; i++)
		writeRule(out, i, n);
	return out.str();
}

// A rule of `kind` in [lo, hi), spread by `seed`.
size_t pickRule(RuleKind kind, size_t lo, size_t hi, size_t seed, size_t n)
{
	size_t span = hi - lo;
	size_t start = (seed * 7919) % span;
	for (size_t step = 0; step < span; step++) {
		size_t i = lo + (start + step) % span;
		if (ruleKind(i, n) == kind)
			return i;
	}
	return lo; // not reached for n >= 100
}

HttpProbe probe(std::string method, std::string host, std::string path, std::string rule)
{
	HttpProbe p;
	p.request.method = std::move(method);
	p.request.host = std::move(host);
	p.request.path = std::move(path);
	p.expectedRule = std::move(rule);
	return p;
}

std::string hex32(size_t k)
{
	static constexpr char kHex[] = "0123456789abcdef";
	std::string out;
	uint64_t x = 0x9e3779b97f4a7c15ull * (k + 1);
	for (int c = 0; c < 32; c++) {
		out += kHex[x & 15];
		x = x * 6364136223846793005ull + 1442695040888963407ull;
	}
	return out;
}

HttpProbe makeHttpProbe(size_t k, size_t n)
{
	const std::string unknown = "www.unknown" + std::to_string(k) + ".org";
	const size_t early = n / 10;
	const size_t late = n - n / 10;
	const size_t variant = k / 10;
	size_t i = 0;

	switch (k % 10) {
	case 0: // an early rule
		i = pickRule(RuleKind::Read, 1, early, k, n);
		return probe(variant % 2 ? "HEAD" : "GET", apiHost(i), "/v1/catalog/items/" + std::to_string(k),
			     "read-" + std::to_string(i));
	case 1: // a late rule
		i = pickRule(RuleKind::Read, late, n, k, n);
		return probe("GET", "www." + vendor(i), "/pricing", "read-" + std::to_string(i));
	case 2: // a wildcard, a few labels deep
		i = pickRule(RuleKind::Wildcard, 1, n, k, n);
		return probe("GET", "edge-" + std::to_string(k % 7) + ".cdn.svc" + std::to_string(i) + ".net",
			     "/assets/app." + std::to_string(k) + ".js", "wild-" + std::to_string(i));
	case 3: // a path regex
		i = pickRule(RuleKind::WriteDelay, 1, n, k, n);
		return probe("POST", apiHost(i), "/v2/orders/" + std::to_string(100000 + k) + "/comments",
			     "write-delay-" + std::to_string(i));
	case 4: // nothing matches: the default
		return probe("GET", unknown, "/index.html", "");
	case 5: // body, query and header selectors
		switch (variant % 4) {
		case 0: {
			i = pickRule(RuleKind::GraphqlMutation, 1, n, k, n);
			HttpProbe p = probe("POST", "gql." + vendor(i), "/graphql", "graphql-" + std::to_string(i));
			p.request.body = R"({"query":"mutation { deleteProject(id: \")" + std::to_string(k) +
					 R"(\") { ok } }","variables":{}})";
			return p;
		}
		case 1: {
			// Not a mutation: the body rule does not match and nothing
			// later does either.
			i = pickRule(RuleKind::GraphqlMutation, 1, n, k, n);
			HttpProbe p = probe("POST", "gql." + vendor(i), "/graphql", "");
			p.request.body = R"({"query":"query { project(id: \")" + std::to_string(k) +
					 R"(\") { name owner { login } } }"})";
			return p;
		}
		case 2: {
			i = pickRule(RuleKind::TokenQuery, 1, n, k, n);
			HttpProbe p = probe("GET", "hooks." + vendor(i), "/notify", "token-query-" + std::to_string(i));
			p.request.query = "event=push&token=" + hex32(k) + "&retry=0";
			return p;
		}
		default: {
			i = pickRule(RuleKind::AuthHeader, 1, n, k, n);
			HttpProbe p = probe("GET", apiHost(i), "/v2/me", "auth-header-" + std::to_string(i));
			p.request.headers = { { "Accept", "application/json" },
					      { "User-Agent", "python-httpx/0.27.0" },
					      { "Authorization", "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2lnbmF0dXJl" } };
			return p;
		}
		}
	case 6: // a listed host, turned away by its rule, or held
		if (variant % 2) {
			i = pickRule(RuleKind::WriteHold, 1, n, k, n);
			return probe("POST", apiHost(i), "/admin/users", "write-hold-" + std::to_string(i));
		}
		i = pickRule(RuleKind::Read, 1, n, k, n);
		return probe("DELETE", apiHost(i), "/v1/catalog/items/" + std::to_string(k), "");
	case 7: // denied by name
		if (variant % 2)
			return probe("POST", "api.openai.com", "/v1/chat/completions", "deny-shadow-models");
		i = pickRule(RuleKind::Block, 1, n, k, n);
		return probe("GET", "px.tracker" + std::to_string(i) + ".ads.example", "/collect",
			     "block-" + std::to_string(i));
	case 8: // a rate
		i = pickRule(RuleKind::Rated, 1, n, k, n);
		return probe("GET", apiHost(i), "/v1/quota", "rated-" + std::to_string(i));
	default: // ports and host-less rules
		switch (variant % 3) {
		case 0: {
			i = pickRule(RuleKind::Port, 1, n, k, n);
			HttpProbe p = probe("GET", "internal" + std::to_string(i) + ".vendor.com", "/status",
					    "port-" + std::to_string(i));
			p.request.port = 8443;
			return p;
		}
		case 1:
			i = pickRule(RuleKind::Port, 1, n, k, n);
			return probe("GET", "internal" + std::to_string(i) + ".vendor.com", "/status", "");
		default:
			return probe("GET", unknown, "/robots.txt", "hostless-robots");
		}
	}
}

TlsProbe makeTlsProbe(size_t k, size_t n)
{
	switch (k % 5) {
	case 0:
		return { apiHost(pickRule(RuleKind::Read, 1, n, k, n)), 443 };
	case 1:
		return { "pinned" + std::to_string(pickRule(RuleKind::Pinned, 1, n, k, n)) + ".vendor.com", 443 };
	case 2:
		return { "px.tracker" + std::to_string(pickRule(RuleKind::Block, 1, n, k, n)) + ".ads.example", 443 };
	case 3:
		return { "www.unknown" + std::to_string(k) + ".org", 443 };
	default:
		return { "api.openai.com", 443 };
	}
}

DnsProbe makeDnsProbe(size_t k, size_t n)
{
	switch (k % 6) {
	case 0:
		return { apiHost(pickRule(RuleKind::Read, 1, n, k, n)), gvm::policy::kDnsTypeA };
	case 1:
		return { "edge.cdn.svc" + std::to_string(pickRule(RuleKind::Wildcard, 1, n, k, n)) + ".net",
			 gvm::policy::kDnsTypeAaaa };
	case 2:
		return { "www.unknown" + std::to_string(k) + ".org", gvm::policy::kDnsTypeA };
	case 3: {
		// A tunnelling-shaped name: longer than max_name_length.
		std::string name;
		for (int label = 0; label < 3; label++)
			name += hex32(k + label) + hex32(k + label + 7).substr(0, 12) + ".";
		return { name + "t.example.org", gvm::policy::kDnsTypeA };
	}
	case 4:
		return { "x" + std::to_string(k) + ".unknown.org", gvm::policy::kDnsTypeTxt };
	default:
		return { "px.tracker" + std::to_string(pickRule(RuleKind::Block, 1, n, k, n)) + ".ads.example",
			 gvm::policy::kDnsTypeA };
	}
}

} // namespace

Workload makeWorkload(size_t ruleCount, size_t probeCount)
{
	Workload workload;
	workload.ruleCount = ruleCount;
	workload.policyText = makePolicyText(ruleCount);
	for (size_t k = 0; k < probeCount; k++) {
		workload.http.push_back(makeHttpProbe(k, ruleCount));
		workload.tls.push_back(makeTlsProbe(k, ruleCount));
		workload.dns.push_back(makeDnsProbe(k, ruleCount));
	}
	return workload;
}

} // namespace gvm::bench
