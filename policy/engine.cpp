// SPDX-License-Identifier: Apache-2.0
//
// CompiledEngine: decisions over a compiled policy, with rules found through
// host indexes rather than a scan of every rule.
#include <algorithm>
#include <optional>

#include <nlohmann/json.hpp>

#include "common/text.h"
#include "policy/path.h"
#include "policy/rule.h"

namespace gvm::policy {

const char *toString(ActionKind kind)
{
	switch (kind) {
	case ActionKind::Allow: return "allow";
	case ActionKind::Deny: return "deny";
	case ActionKind::Delay: return "delay";
	case ActionKind::Hold: return "hold";
	case ActionKind::RateLimit: return "rate_limit";
	}
	return "unknown";
}

const char *toString(Mode mode)
{
	switch (mode) {
	case Mode::Enforce: return "enforce";
	case Mode::Monitor: return "monitor";
	}
	return "unknown";
}

const char *toString(WorkspaceMode mode)
{
	switch (mode) {
	case WorkspaceMode::Overlay: return "overlay";
	case WorkspaceMode::Direct: return "direct";
	case WorkspaceMode::Readonly: return "readonly";
	}
	return "unknown";
}

namespace {

// Deepest JSON body the engine inspects. nlohmann parses iteratively but
// dumps recursively, so a body of nested brackets could otherwise run a
// thread out of stack when a selected value is dumped for matching.
constexpr size_t kMaxBodyJsonDepth = 128;

// Whether `doc` nests deeper than `limit`, found without recursion.
bool nestsDeeperThan(const nlohmann::json &doc, size_t limit)
{
	std::vector<std::pair<const nlohmann::json *, size_t>> stack{{&doc, 1}};
	while (!stack.empty()) {
		auto [node, depth] = stack.back();
		stack.pop_back();
		if (depth > limit)
			return true;
		if (node->is_structured()) {
			for (const nlohmann::json &child : *node)
				stack.emplace_back(&child, depth + 1);
		}
	}
	return false;
}

std::string describeAction(const Action &action)
{
	switch (action.kind) {
	case ActionKind::Delay:
	case ActionKind::Hold:
		return std::string(toString(action.kind)) + " " + formatDuration(action.duration);
	default:
		return toString(action.kind);
	}
}

const char *qtypeName(uint16_t qtype)
{
	switch (qtype) {
	case kDnsTypeTxt: return "TXT";
	case kDnsTypeNull: return "NULL";
	case kDnsTypeAny: return "ANY";
	default: return nullptr;
	}
}

bool containsPort(const std::vector<uint16_t> &ports, uint16_t port)
{
	return std::find(ports.begin(), ports.end(), port) != ports.end();
}

// What a rule matched, as "host h, method m, ...", for a decision's reason.
class MatchDetail
{
public:
	void add(std::string_view what, std::string_view value = {})
	{
		if (!text_.empty())
			text_ += ", ";
		text_ += what;
		if (!value.empty()) {
			text_ += ' ';
			text_ += value;
		}
	}
	bool empty() const { return text_.empty(); }
	std::string take() { return std::move(text_); }

private:
	std::string text_;
};

// The request as rules look at it, with the costlier views (query, headers,
// JSON body) built on first use and then shared by every rule tried.
class RequestView
{
public:
	explicit RequestView(const HttpRequest &request)
		: request_(request), host_(canonicalHost(request.host)), method_(asciiUpper(request.method)),
		  path_(normalizePath(request.path))
	{
	}

	const HttpRequest &request() const { return request_; }
	const std::string &host() const { return host_; }
	const std::string &method() const { return method_; }
	const std::string &path() const { return path_; }

	const std::vector<std::pair<std::string, std::string>> &query()
	{
		if (!query_) {
			query_.emplace();
			std::string_view rest = request_.query;
			while (!rest.empty()) {
				size_t amp = rest.find('&');
				std::string_view pair = rest.substr(0, amp);
				rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
				if (pair.empty())
					continue;
				size_t eq = pair.find('=');
				std::string_view key = pair.substr(0, eq);
				std::string_view value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
				query_->emplace_back(percentDecode(key, true), percentDecode(value, true));
			}
		}
		return *query_;
	}

	const std::vector<std::pair<std::string, std::string>> &headers()
	{
		if (!headers_) {
			headers_.emplace();
			for (const auto &[name, value] : request_.headers)
				headers_->emplace_back(asciiLower(name), value);
		}
		return *headers_;
	}

	// Null when the body is not JSON.
	const nlohmann::json *json()
	{
		if (!json_) {
			json_ = nlohmann::json::parse(request_.body, nullptr, false);
			tooDeep_ = !json_->is_discarded() && nestsDeeperThan(*json_, kMaxBodyJsonDepth);
		}
		return json_->is_discarded() ? nullptr : &*json_;
	}
	// The body is JSON nested beyond kMaxBodyJsonDepth (after json()).
	bool jsonTooDeep() const { return tooDeep_; }

private:
	const HttpRequest &request_;
	std::string host_;
	std::string method_;
	std::string path_;
	std::optional<std::vector<std::pair<std::string, std::string>>> query_;
	std::optional<std::vector<std::pair<std::string, std::string>>> headers_;
	std::optional<nlohmann::json> json_;
	bool tooDeep_ = false;
};

// How one rule fared against a request. FailClosed: the rule could not be
// evaluated safely (a regex hit its limit, the body is beyond the inspection
// window) and the request is denied with `detail` as the reason.
struct RuleOutcome {
	enum class Kind { Match, NoMatch, FailClosed, NeedsBody };
	Kind kind = Kind::NoMatch;
	std::string detail; // Match: what matched; FailClosed: the reason
};

// Matches a selector's regex against every value a request gave for it
// (a query parameter or header may repeat). Which repeats count depends on
// what the rule does, so that repeating a value never loosens the policy: a
// deny rule fires when any value matches, any other rule needs them all.
MatchResult matchValues(const Regex &regex, const std::vector<std::string_view> &values, bool any)
{
	if (values.empty())
		return MatchResult::NoMatch;
	for (std::string_view value : values) {
		MatchResult r = regex.match(value);
		if (r == MatchResult::LimitExceeded)
			return r;
		if (any && r == MatchResult::Match)
			return MatchResult::Match;
		if (!any && r == MatchResult::NoMatch)
			return MatchResult::NoMatch;
	}
	return any ? MatchResult::NoMatch : MatchResult::Match;
}

// The value at a dotted path in a JSON document, as text: strings as they
// are, anything else as its JSON. Nothing when the path is missing.
std::optional<std::string> jsonValue(const nlohmann::json &doc, const std::vector<std::string> &path)
{
	const nlohmann::json *node = &doc;
	for (const std::string &segment : path) {
		if (node->is_object()) {
			auto it = node->find(segment);
			if (it == node->end())
				return std::nullopt;
			node = &*it;
		} else if (node->is_array()) {
			if (segment.empty() || segment.size() > 9 ||
			    !std::all_of(segment.begin(), segment.end(), [](char c) { return c >= '0' && c <= '9'; }))
				return std::nullopt;
			size_t index = std::stoul(segment);
			if (index >= node->size())
				return std::nullopt;
			node = &(*node)[index];
		} else {
			return std::nullopt;
		}
	}
	if (node->is_string())
		return node->get<std::string>();
	// The parser only accepts valid UTF-8, but dump() must never throw.
	return node->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string limitReason(const CompiledRule &rule, std::string_view what)
{
	return "rule '" + rule.name + "': the " + std::string(what) + " regex hit the match limit (" +
	       std::to_string(kRegexMatchLimit) + "); denied to fail closed";
}

RuleOutcome matchHttpRule(const CompiledRule &rule, RequestView &view)
{
	using Kind = RuleOutcome::Kind;
	const HttpRequest &request = view.request();
	MatchDetail matched;
	if (!rule.hosts.empty())
		matched.add("host", view.host());
	if (!rule.ports.empty()) {
		if (!containsPort(rule.ports, request.port))
			return {};
		matched.add("port", std::to_string(request.port));
	}
	if (!rule.methods.empty()) {
		if (std::find(rule.methods.begin(), rule.methods.end(), view.method()) == rule.methods.end())
			return {};
		matched.add("method", view.method());
	}
	if (rule.path) {
		MatchResult r = rule.path->match(view.path());
		if (r == MatchResult::LimitExceeded)
			return {Kind::FailClosed, limitReason(rule, "path")};
		if (r == MatchResult::NoMatch)
			return {};
		matched.add("path", view.path());
	}
	bool any = rule.action.kind == ActionKind::Deny;
	// Query parameters and headers: each selector's key must be present
	// and its values must match.
	auto matchKeyed = [&](const std::vector<KeyedRegex> &selectors,
			      const std::vector<std::pair<std::string, std::string>> &pairs,
			      const char *noun) -> std::optional<RuleOutcome> {
		for (const KeyedRegex &selector : selectors) {
			std::vector<std::string_view> values;
			for (const auto &[key, value] : pairs) {
				if (key == selector.key)
					values.push_back(value);
			}
			MatchResult r = matchValues(selector.regex, values, any);
			if (r == MatchResult::LimitExceeded)
				return RuleOutcome{Kind::FailClosed,
						   limitReason(rule, std::string(noun) + " '" + selector.key + "'")};
			if (r == MatchResult::NoMatch)
				return RuleOutcome{};
			matched.add(noun, selector.key);
		}
		return std::nullopt;
	};
	if (!rule.query.empty()) {
		if (auto stop = matchKeyed(rule.query, view.query(), "query parameter"))
			return *stop;
	}
	if (!rule.headers.empty()) {
		if (auto stop = matchKeyed(rule.headers, view.headers(), "header"))
			return *stop;
	}
	if (rule.body) {
		// Everything else matched, so only the body decides; a body the
		// engine did not see in full cannot be judged either way.
		if (request.bodyPending)
			return {Kind::NeedsBody, "rule '" + rule.name + "' inspects the body"};
		if (request.bodyTruncated)
			return {Kind::FailClosed, "rule '" + rule.name + "' inspects the body, which exceeds the inspection window of " +
						       std::to_string(kBodyInspectionWindow) + " bytes; denied to fail closed"};
		MatchResult r = MatchResult::NoMatch;
		if (rule.body->jsonPath.empty()) {
			r = rule.body->regex.match(request.body);
		} else if (const nlohmann::json *doc = view.json()) {
			if (view.jsonTooDeep())
				return {Kind::FailClosed, "rule '" + rule.name + "' inspects a JSON body nested deeper than " +
							  std::to_string(kMaxBodyJsonDepth) + " levels; denied to fail closed"};
			if (std::optional<std::string> value = jsonValue(*doc, rule.body->jsonPath))
				r = rule.body->regex.match(*value);
		}
		if (r == MatchResult::LimitExceeded)
			return {Kind::FailClosed, limitReason(rule, "body")};
		if (r == MatchResult::NoMatch)
			return {};
		if (rule.body->jsonPath.empty())
			matched.add("body");
		else
			matched.add("body field", rule.body->jsonPathText);
	}
	return {Kind::Match, matched.empty() ? "any request" : matched.take()};
}

// A decision engine over one compiled policy: see Engine. Immutable after
// construction and shared between threads; the only per-call state is on
// the stack and in Regex's thread_local scratch.
class CompiledEngine : public Engine
{
public:
	CompiledEngine(CompiledPolicy policy, std::string sha256);

	Decision evaluateHttp(const HttpRequest &request) const override;
	Decision evaluateTls(std::string_view sni, uint16_t port) const override;
	Decision evaluateTcp(std::string_view address, uint16_t port,
			     const std::vector<std::string> &names) const override;
	Decision evaluateDns(std::string_view name, uint16_t qtype) const override;

private:
	Decision decision(ActionKind action, std::string reason) const;
	Decision ruleDecision(int index, std::string reason) const;
	Decision defaultDecision() const;

	CompiledPolicy policy_;
	// Rules other than tcp rules, by hosts.
	HostIndex httpIndex_;
	// Every rule, by hosts or tcp.hosts: which rules may apply to a name.
	HostIndex dnsIndex_;
	std::vector<int> tcpRules_;
};

CompiledEngine::CompiledEngine(CompiledPolicy policy, std::string sha256) : policy_(std::move(policy))
{
	name_ = policy_.name;
	sha256_ = std::move(sha256);
	mode_ = policy_.mode;
	ruleCount_ = policy_.rules.size();
	allowCidrs_ = policy_.allowCidrs;
	filesystem_ = policy_.filesystem;
	syscalls_ = policy_.syscalls;
	limits_ = policy_.limits;
	for (size_t i = 0; i < policy_.rules.size(); i++) {
		const CompiledRule &rule = policy_.rules[i];
		int index = static_cast<int>(i);
		if (rule.tcp) {
			tcpRules_.push_back(index);
			if (rule.tcp->hosts.empty())
				dnsIndex_.addAnyHost(index);
			for (const HostPattern &host : rule.tcp->hosts)
				dnsIndex_.add(host, index);
			continue;
		}
		if (rule.hosts.empty()) {
			httpIndex_.addAnyHost(index);
			dnsIndex_.addAnyHost(index);
		}
		for (const HostPattern &host : rule.hosts) {
			httpIndex_.add(host, index);
			dnsIndex_.add(host, index);
		}
	}
}

Decision CompiledEngine::decision(ActionKind action, std::string reason) const
{
	Decision d;
	d.action = action;
	d.reason = std::move(reason);
	d.mode = mode_;
	return d;
}

Decision CompiledEngine::ruleDecision(int index, std::string reason) const
{
	const CompiledRule &rule = policy_.rules[static_cast<size_t>(index)];
	Decision d = decision(rule.action.kind, std::move(reason));
	d.duration = rule.action.duration;
	d.rate = rule.rate;
	d.rule = rule.name;
	d.ruleIndex = index;
	return d;
}

Decision CompiledEngine::defaultDecision() const
{
	Decision d = decision(policy_.defaultAction.kind, "no rule matched; default " + describeAction(policy_.defaultAction));
	d.duration = policy_.defaultAction.duration;
	return d;
}

Decision CompiledEngine::evaluateHttp(const HttpRequest &request) const
{
	RequestView view(request);
	std::optional<Decision> result;
	httpIndex_.forEachCandidate(view.host(), [&](int index) {
		const CompiledRule &rule = policy_.rules[static_cast<size_t>(index)];
		RuleOutcome outcome = matchHttpRule(rule, view);
		switch (outcome.kind) {
		case RuleOutcome::Kind::NoMatch:
			return false;
		case RuleOutcome::Kind::Match:
			result = ruleDecision(index, "rule '" + rule.name + "' matched " + outcome.detail);
			return true;
		case RuleOutcome::Kind::FailClosed:
			result = ruleDecision(index, std::move(outcome.detail));
			result->action = ActionKind::Deny;
			result->duration = {};
			result->rate.reset();
			return true;
		case RuleOutcome::Kind::NeedsBody:
			result = ruleDecision(index, std::move(outcome.detail) + "; the decision waits for the body");
			result->needsBody = true;
			return true;
		}
		return false;
	});
	return result ? std::move(*result) : defaultDecision();
}

Decision CompiledEngine::evaluateTls(std::string_view sni, uint16_t port) const
{
	std::string host = canonicalHost(sni);
	std::optional<Decision> result;
	httpIndex_.forEachCandidate(host, [&](int index) {
		const CompiledRule &rule = policy_.rules[static_cast<size_t>(index)];
		if (!rule.ports.empty() && !containsPort(rule.ports, port))
			return false;
		std::string what = rule.hosts.empty() ? "port " + std::to_string(port)
						      : "host " + host + ", port " + std::to_string(port);
		if (rule.hasRequestSelectors()) {
			result = ruleDecision(index, "rule '" + rule.name + "' matched " + what +
							     " but depends on the request; the decision waits for the request");
			result->needsRequest = true;
		} else {
			result = ruleDecision(index, "rule '" + rule.name + "' matched " + what +
							     (rule.passthrough ? " (tls passthrough)" : ""));
			result->passthrough = rule.passthrough;
		}
		return true;
	});
	return result ? std::move(*result) : defaultDecision();
}

Decision CompiledEngine::evaluateTcp(std::string_view address, uint16_t port,
				     const std::vector<std::string> &names) const
{
	std::vector<std::string> hosts;
	hosts.reserve(names.size());
	for (const std::string &name : names)
		hosts.push_back(canonicalHost(name));
	for (int index : tcpRules_) {
		const CompiledRule &rule = policy_.rules[static_cast<size_t>(index)];
		const TcpSelector &tcp = *rule.tcp;
		MatchDetail matched;
		if (!tcp.hosts.empty()) {
			const std::string *found = nullptr;
			for (const std::string &host : hosts) {
				for (const HostPattern &pattern : tcp.hosts) {
					if (pattern.matches(host)) {
						found = &host;
						break;
					}
				}
				if (found)
					break;
			}
			if (!found)
				continue;
			matched.add("name", *found);
		}
		if (!tcp.cidrs.empty()) {
			size_t i = 0;
			while (i < tcp.cidrs.size() && !tcp.cidrs[i].contains(address))
				i++;
			if (i == tcp.cidrs.size())
				continue;
			matched.add("address", std::string(address) + " in " + tcp.cidrTexts[i]);
		}
		if (!tcp.ports.empty()) {
			if (!containsPort(tcp.ports, port))
				continue;
			matched.add("port", std::to_string(port));
		}
		return ruleDecision(index, "rule '" + rule.name + "' matched " + matched.take());
	}
	return defaultDecision();
}

Decision CompiledEngine::evaluateDns(std::string_view rawName, uint16_t qtype) const
{
	std::string name = canonicalHost(rawName);
	if (name.size() > policy_.maxDnsNameLength) {
		Decision d = decision(ActionKind::Deny, "name is " + std::to_string(name.size()) +
								" characters, over the limit of " +
								std::to_string(policy_.maxDnsNameLength) + "; likely exfiltration");
		d.likelyExfiltration = true;
		return d;
	}
	if (const char *type = qtypeName(qtype); type && !dnsIndex_.lists(name)) {
		Decision d = decision(ActionKind::Deny,
				      std::string(type) + " query for " + name + ", which no rule lists; likely exfiltration");
		d.likelyExfiltration = true;
		return d;
	}
	if (policy_.dnsResolve == DnsResolve::All)
		return decision(ActionKind::Allow, "dns resolve: all");

	std::optional<Decision> result;
	dnsIndex_.forEachCandidate(name, [&](int index) {
		const CompiledRule &rule = policy_.rules[static_cast<size_t>(index)];
		if (rule.action.kind != ActionKind::Deny) {
			result = ruleDecision(index, "rule '" + rule.name + "' may allow " + name);
			result->action = ActionKind::Allow;
			result->duration = {};
			result->rate.reset();
			return true;
		}
		// A deny that depends on more than the name (a port, a path, a
		// destination address) leaves other uses of the name open: a
		// deny of port 80 must not stop the name resolving for 443.
		bool conditional = rule.tcp ? !rule.tcp->cidrs.empty() || !rule.tcp->ports.empty()
					    : !rule.ports.empty() || rule.hasRequestSelectors();
		if (conditional)
			return false;
		result = ruleDecision(index, "rule '" + rule.name + "' denies " + name);
		result->rate.reset();
		return true;
	});
	if (result)
		return std::move(*result);
	if (policy_.defaultAction.kind == ActionKind::Deny)
		return decision(ActionKind::Deny, "no rule may allow " + name + "; default deny");
	return decision(ActionKind::Allow, "no rule matched " + name + "; default " + describeAction(policy_.defaultAction));
}

} // namespace

std::shared_ptr<const Engine> makeCompiledEngine(CompiledPolicy policy, std::string sha256)
{
	return std::make_shared<const CompiledEngine>(std::move(policy), std::move(sha256));
}

} // namespace gvm::policy
