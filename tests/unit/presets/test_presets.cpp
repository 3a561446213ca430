// SPDX-License-Identifier: Apache-2.0
//
// Decision tables for the shipped presets (policy/presets/*.yaml). Each
// preset must load without a diagnostic, and a table of realistic requests
// pins what it allows, denies, delays and holds, and which rule says so. The
// tables are the presets' executable documentation: a change to a preset
// that changes a decision must change its table too.
//
// $GVM_PRESETS names the presets directory (meson sets it).

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "policy/policy.h"

using gvm::policy::ActionKind;
using gvm::policy::Decision;
using gvm::policy::Engine;
using gvm::policy::HttpRequest;
using namespace std::chrono_literals;

namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr ActionKind kAllow = ActionKind::Allow;
constexpr ActionKind kDeny = ActionKind::Deny;
constexpr ActionKind kDelay = ActionKind::Delay;
constexpr ActionKind kHold = ActionKind::Hold;

// The rule name of a decision made by the policy's default.
constexpr const char *kDefault = "";

// One row of a decision table: a request and what the preset must say.
struct HttpCase {
	std::string method;
	std::string url; // scheme://host[:port]/path[?query]
	ActionKind action;
	std::string rule;
	std::string body = {};
	Headers headers = {};
	bool bodyTruncated = false; // `body` is only the start of a longer body
};

std::string presetPath(const std::string &name)
{
	const char *dir = std::getenv("GVM_PRESETS");
	// Run by hand from the source tree when meson did not set it.
	return std::string(dir ? dir : "policy/presets") + "/" + name + ".yaml";
}

std::shared_ptr<const Engine> loadPreset(const std::string &name)
{
	gvm::policy::LoadResult result = gvm::policy::loadPolicyFile(presetPath(name));
	for (const gvm::policy::Diagnostic &diagnostic : result.diagnostics)
		UNSCOPED_INFO(diagnostic.toString());
	REQUIRE(result.diagnostics.empty());
	REQUIRE(result.engine);
	CHECK(result.engine->name() == name);
	// No preset ships in monitor mode: a preset that lets everything
	// through would be a trap.
	CHECK(result.engine->mode() == gvm::policy::Mode::Enforce);
	CHECK(result.engine->upstreamAllowCidrs().empty());
	return result.engine;
}

// Splits "https://host:port/path?query" the way the proxy hands requests to
// the engine: host without port, path without query.
HttpRequest makeRequest(std::string_view method, std::string_view url,
			std::string_view body = {}, const Headers &headers = {})
{
	HttpRequest request;
	request.method = method;
	request.port = 443;
	if (url.starts_with("https://")) {
		url.remove_prefix(8);
	} else if (url.starts_with("http://")) {
		url.remove_prefix(7);
		request.port = 80;
	}

	size_t authorityEnd = url.find_first_of("/?");
	std::string_view authority = url.substr(0, authorityEnd);
	std::string_view rest = authorityEnd == std::string_view::npos ? std::string_view{} : url.substr(authorityEnd);

	size_t colon = authority.rfind(':');
	if (colon != std::string_view::npos) {
		request.port = static_cast<uint16_t>(std::stoul(std::string(authority.substr(colon + 1))));
		authority = authority.substr(0, colon);
	}
	request.host = authority;

	size_t question = rest.find('?');
	request.path = rest.substr(0, question);
	if (request.path.empty())
		request.path = "/";
	if (question != std::string_view::npos)
		request.query = rest.substr(question + 1);

	request.body = body;
	request.headers = headers;
	return request;
}

Decision decide(const Engine &engine, std::string_view method, std::string_view url,
		std::string_view body = {}, const Headers &headers = {})
{
	return engine.evaluateHttp(makeRequest(method, url, body, headers));
}

std::string actionName(ActionKind kind)
{
	return gvm::policy::toString(kind);
}

void checkTable(const Engine &engine, const std::vector<HttpCase> &table)
{
	// Every table shows both sides of its preset.
	size_t allowed = 0;
	size_t denied = 0;
	for (const HttpCase &c : table) {
		allowed += c.action == kAllow;
		denied += c.action == kDeny;
	}
	REQUIRE(allowed > 0);
	REQUIRE(denied > 0);

	for (const HttpCase &c : table) {
		INFO(c.method << " " << c.url << (c.body.empty() ? "" : " body: ") << c.body);
		HttpRequest request = makeRequest(c.method, c.url, c.body, c.headers);
		request.bodyTruncated = c.bodyTruncated;
		Decision decision = engine.evaluateHttp(request);
		INFO("reason: " << decision.reason);
		CHECK(actionName(decision.action) == actionName(c.action));
		CHECK(decision.rule == c.rule);
		CHECK((decision.ruleIndex == -1) == c.rule.empty());
		if (c.action == kDelay || c.action == kHold)
			CHECK(decision.duration > 0ms);
	}
}

void checkDns(const Engine &engine, std::string_view name, uint16_t qtype, ActionKind action)
{
	INFO("DNS " << name << " type " << qtype);
	Decision decision = engine.evaluateDns(name, qtype);
	INFO("reason: " << decision.reason);
	CHECK(actionName(decision.action) == actionName(action));
}

// A TLS connection decided on SNI and port alone.
void checkTlsDecided(const Engine &engine, std::string_view sni, uint16_t port,
		     ActionKind action, const std::string &rule)
{
	INFO("TLS " << sni << ":" << port);
	Decision decision = engine.evaluateTls(sni, port);
	INFO("reason: " << decision.reason);
	CHECK_FALSE(decision.needsRequest);
	CHECK_FALSE(decision.passthrough);
	CHECK(actionName(decision.action) == actionName(action));
	CHECK(decision.rule == rule);
}

// A TLS connection that must be intercepted so each request is decided.
void checkTlsIntercepted(const Engine &engine, std::string_view sni, uint16_t port)
{
	INFO("TLS " << sni << ":" << port);
	Decision decision = engine.evaluateTls(sni, port);
	INFO("reason: " << decision.reason);
	CHECK(decision.needsRequest);
	CHECK_FALSE(decision.passthrough);
}

// A name of `length` characters under `suffix`, in labels of at most 50.
std::string longName(size_t length, std::string_view suffix)
{
	std::string name;
	while (name.size() + suffix.size() < length) {
		size_t label = std::min<size_t>(50, length - suffix.size() - name.size() - 1);
		if (label == 0)
			label = 1;
		name += std::string(label, 'a') + ".";
	}
	name += suffix;
	return name;
}

void checkRate(const Decision &decision, uint32_t count, std::chrono::milliseconds period)
{
	REQUIRE(decision.rate);
	CHECK(decision.rate->count == count);
	CHECK(decision.rate->period == period);
}

} // namespace

TEST_CASE("longName builds names of the asked length", "[presets]")
{
	CHECK(longName(121, "github.com").size() == 121);
	CHECK(longName(61, "example.com").size() == 61);
}

// --- locked-down ---------------------------------------------------------

TEST_CASE("locked-down: only inference on the model gateway", "[presets][locked-down]")
{
	auto engine = loadPreset("locked-down");
	const std::string chat = R"({"model":"meta/llama-3.1-70b-instruct","messages":[{"role":"user","content":"Summarise the attached report."}],"max_tokens":512})";

	checkTable(*engine, {
		// The gateway's inference paths, POST only, port 443 only.
		{ "POST", "https://integrate.api.nvidia.com/v1/chat/completions", kAllow, "model-gateway-inference", chat },
		{ "POST", "https://integrate.api.nvidia.com/v1/chat/completions?stream=true", kAllow, "model-gateway-inference", chat },
		{ "POST", "https://integrate.api.nvidia.com/v1/embeddings", kAllow, "model-gateway-inference",
		  R"({"model":"nvidia/nv-embedqa-e5-v5","input":["quarterly revenue"]})" },
		{ "POST", "https://INTEGRATE.API.NVIDIA.COM/v1/completions", kAllow, "model-gateway-inference" },
		{ "GET", "https://integrate.api.nvidia.com/v1/models", kAllow, "model-gateway-list-models" },
		{ "GET", "https://integrate.api.nvidia.com/v1/models/meta/llama-3.1-70b-instruct", kAllow, "model-gateway-list-models" },
		{ "GET", "https://integrate.api.nvidia.com/v1/chat/completions", kDeny, "model-gateway-other" },
		{ "POST", "https://integrate.api.nvidia.com/v1/files", kDeny, "model-gateway-other" },
		{ "DELETE", "https://integrate.api.nvidia.com/v1/models/my-fine-tune", kDeny, "model-gateway-other" },
		// Dot segments are removed before matching: this is /v1/admin/keys.
		{ "POST", "https://integrate.api.nvidia.com/v1/chat/completions/../../admin/keys", kDeny, "model-gateway-other" },
		{ "POST", "https://integrate.api.nvidia.com:8443/v1/chat/completions", kDeny, "model-gateway-other", chat },
		{ "POST", "http://integrate.api.nvidia.com/v1/chat/completions", kDeny, "model-gateway-other", chat },
		// Shadow model providers, by name.
		{ "POST", "https://api.openai.com/v1/chat/completions", kDeny, "deny-shadow-models", chat },
		{ "POST", "https://api.anthropic.com/v1/messages", kDeny, "deny-shadow-models" },
		{ "POST", "https://api.mistral.ai/v1/chat/completions", kDeny, "deny-shadow-models" },
		{ "POST", "https://acme-eastus.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01",
		  kDeny, "deny-shadow-models" },
		{ "GET", "https://openrouter.ai/api/v1/models", kDeny, "deny-shadow-models" },
		// Nothing else.
		{ "GET", "https://github.com/", kDeny, kDefault },
		{ "GET", "https://pypi.org/simple/requests/", kDeny, kDefault },
		{ "GET", "http://169.254.169.254/latest/meta-data/iam/security-credentials/", kDeny, kDefault },
		{ "POST", "https://hooks.slack.com/services/T000/B000/XXXX", kDeny, kDefault },
	});

	SECTION("inference is rate-limited at 60/min") {
		checkRate(decide(*engine, "POST", "https://integrate.api.nvidia.com/v1/chat/completions", chat), 60, 60s);
		checkRate(decide(*engine, "GET", "https://integrate.api.nvidia.com/v1/models"), 10, 60s);
	}

	SECTION("TLS") {
		checkTlsIntercepted(*engine, "integrate.api.nvidia.com", 443);
		checkTlsDecided(*engine, "integrate.api.nvidia.com", 8443, kDeny, "model-gateway-other");
		checkTlsDecided(*engine, "api.openai.com", 443, kDeny, "deny-shadow-models");
		checkTlsDecided(*engine, "codestral.mistral.ai", 443, kDeny, "deny-shadow-models");
		checkTlsDecided(*engine, "example.com", 443, kDeny, kDefault);
	}

	SECTION("DNS resolves the gateway and nothing else") {
		checkDns(*engine, "integrate.api.nvidia.com", gvm::policy::kDnsTypeA, kAllow);
		checkDns(*engine, "integrate.api.nvidia.com", gvm::policy::kDnsTypeAaaa, kAllow);
		checkDns(*engine, "github.com", gvm::policy::kDnsTypeA, kDeny);
		checkDns(*engine, "api.openai.com", gvm::policy::kDnsTypeA, kDeny);
		checkDns(*engine, "example.com", gvm::policy::kDnsTypeTxt, kDeny);
	}

	SECTION("raw TCP is denied, even to the gateway's address") {
		Decision decision = engine->evaluateTcp("203.0.113.10", 443, { "integrate.api.nvidia.com" });
		CHECK(actionName(decision.action) == "deny");
		CHECK(decision.rule == kDefault);
	}
}

// --- coding --------------------------------------------------------------

TEST_CASE("coding: a coding agent on GitHub, registries and docs", "[presets][coding]")
{
	auto engine = loadPreset("coding");
	const std::string chat = R"({"model":"qwen/qwen2.5-coder-32b-instruct","messages":[{"role":"user","content":"Fix the failing test."}]})";

	checkTable(*engine, {
		// Shadow model providers are denied first, whatever the method.
		{ "POST", "https://api.openai.com/v1/chat/completions", kDeny, "deny-shadow-models", chat },
		{ "GET", "https://api.openai.com/v1/models", kDeny, "deny-shadow-models" },
		{ "POST", "https://API.OpenAI.com/v1/responses", kDeny, "deny-shadow-models" },
		{ "POST", "https://api.anthropic.com/v1/messages", kDeny, "deny-shadow-models",
		  R"({"model":"claude-3-5-sonnet-latest","max_tokens":1024,"messages":[{"role":"user","content":"here is the repo"}]})" },
		{ "POST", "https://api.mistral.ai/v1/chat/completions", kDeny, "deny-shadow-models" },
		{ "POST", "https://codestral.mistral.ai/v1/fim/completions", kDeny, "deny-shadow-models" },
		{ "POST", "https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-pro:generateContent?key=AIzaSyA",
		  kDeny, "deny-shadow-models" },
		{ "POST", "https://api.groq.com/openai/v1/chat/completions", kDeny, "deny-shadow-models" },
		{ "POST", "https://acme.openai.azure.com/openai/deployments/gpt-4o/chat/completions", kDeny, "deny-shadow-models" },
		{ "POST", "https://openrouter.ai/api/v1/chat/completions", kDeny, "deny-shadow-models" },
		// A fully qualified name is the same host.
		{ "POST", "https://api.openai.com./v1/chat/completions", kDeny, "deny-shadow-models", chat },

		// GraphQL: queries are allowed, mutations denied, however dressed.
		{ "POST", "https://api.github.com/graphql", kAllow, "github-graphql-query",
		  R"({"query":"query { viewer { login repositories(first: 5) { nodes { name } } } }"})" },
		{ "POST", "https://api.github.com/graphql", kAllow, "github-graphql-query",
		  R"({"query":"{ repository(owner: \"octocat\", name: \"Hello-World\") { issues(states: OPEN) { totalCount } } }"})" },
		{ "POST", "https://api.github.com/graphql", kAllow, "github-graphql-query",
		  R"({"query":"query($n: Int!) { viewer { pullRequests(last: $n) { nodes { title } } } }","variables":{"n":3}})" },
		{ "POST", "https://api.github.com/graphql", kDeny, "no-graphql-mutations",
		  R"({"query":"mutation { addStar(input: {starrableId: \"MDEwOlJlcG9zaXRvcnkxMjk2MjY5\"}) { clientMutationId } }"})" },
		{ "POST", "https://api.github.com/graphql", kDeny, "no-graphql-mutations",
		  R"({"query":"  mutation MergePR($id: ID!) { mergePullRequest(input: {pullRequestId: $id}) { pullRequest { merged } } }","variables":{"id":"PR_kwDO"}})" },
		{ "POST", "https://api.github.com/graphql", kDeny, "no-graphql-mutations",
		  R"({"query":"# just a comment\nmutation { deleteRepository(input: {repositoryId: \"R_1\"}) { clientMutationId } }"})" },
		{ "POST", "https://api.github.com/graphql", kDeny, "no-graphql-mutations",
		  R"({"query":"query Harmless { viewer { login } } mutation Evil { closeIssue(input: {issueId: \"I_1\"}) { issue { id } } }","operationName":"Evil"})" },
		{ "POST", "https://api.github.com/graphql", kDeny, "no-graphql-mutations",
		  R"({"query":",mutation{addComment(input:{subjectId:\"I_1\",body:\"x\"}){clientMutationId}}"})" },
		// The rule reads the decoded JSON string, so escapes do not hide it.
		{ "POST", "https://api.github.com/graphql", kDeny, "no-graphql-mutations",
		  R"({"query":"\u006dutation { deleteRef(input: {refId: \"REF_1\"}) { clientMutationId } }"})" },
		// Duplicate keys: the last one counts, as on GitHub's side.
		{ "POST", "https://api.github.com/graphql", kDeny, "no-graphql-mutations",
		  R"({"query":"query { viewer { login } }","query":"mutation { deleteRef(input: {refId: \"REF_1\"}) { clientMutationId } }"})" },
		{ "POST", "https://api.github.com/graphql", kDeny, "no-graphql-batches",
		  R"([{"query":"query { viewer { login } }"},{"query":"mutation { deleteRef(input: {refId: \"REF_1\"}) { clientMutationId } }"}])" },
		// A body beyond the inspection window cannot be judged: fail closed.
		{ "POST", "https://api.github.com/graphql", kDeny, "no-graphql-mutations",
		  R"({"query":"query($x: String!) { viewer { login } }","variables":{"x":"aaaaaaaa)", {}, true },

		// git over smart HTTP: fetch is a read, push waits for a human.
		{ "GET", "https://github.com/acme/app.git/info/refs?service=git-upload-pack", kAllow, "github-read" },
		{ "POST", "https://github.com/acme/app.git/git-upload-pack", kAllow, "git-fetch",
		  "0011command=fetch0001000fno-progress0032want 1f0e0c2a1b3d4e5f60718293a4b5c6d7e8f90a1b\n0009done\n0000" },
		{ "GET", "https://github.com/acme/app.git/info/refs?service=git-receive-pack", kAllow, "github-read" },
		{ "POST", "https://github.com/acme/app.git/git-receive-pack", kHold, "git-push-needs-approval" },
		{ "POST", "https://github.com/torvalds/linux/git-receive-pack", kHold, "git-push-needs-approval" },
		// Normalised before matching: dot segments, escaped unreserved characters.
		{ "POST", "https://github.com/acme/app/objects/../git-receive-pack", kHold, "git-push-needs-approval" },
		{ "POST", "https://github.com/acme/app/git%2Dreceive%2Dpack", kHold, "git-push-needs-approval" },
		// Git LFS: downloads through the batch API; uploads fall to the default.
		{ "POST", "https://github.com/acme/app.git/info/lfs/objects/batch", kAllow, "git-lfs-download",
		  R"({"operation":"download","transfers":["basic"],"objects":[{"oid":"12345678abcdef","size":1048576}]})" },
		{ "POST", "https://github.com/acme/app.git/info/lfs/objects/batch", kDeny, kDefault,
		  R"({"operation":"upload","transfers":["basic"],"objects":[{"oid":"12345678abcdef","size":1048576}]})" },

		// GitHub REST: reads go through, writes wait for a human.
		{ "GET", "https://api.github.com/repos/acme/app/pulls?state=open&per_page=50", kAllow, "github-read" },
		{ "GET", "https://api.github.com/repos/acme/app/actions/runs/123456789/logs", kAllow, "github-read" },
		{ "POST", "https://api.github.com/repos/acme/app/pulls", kHold, "github-api-writes-need-approval",
		  R"({"title":"Fix flaky test","head":"agent/fix-flaky","base":"main"})" },
		{ "PATCH", "https://api.github.com/repos/acme/app/issues/42", kHold, "github-api-writes-need-approval",
		  R"({"state":"closed"})" },
		{ "DELETE", "https://api.github.com/repos/acme/app", kHold, "github-api-writes-need-approval" },
		{ "POST", "https://uploads.github.com/repos/acme/app/releases/1/assets?name=app.tar.gz", kHold,
		  "github-api-writes-need-approval" },
		{ "GET", "https://github.com/acme/app/blob/main/README.md", kAllow, "github-read" },
		{ "GET", "https://raw.githubusercontent.com/acme/app/main/package.json", kAllow, "github-read" },
		{ "GET", "https://objects.githubusercontent.com/github-production-release-asset-2e65be/1/2?X-Amz-Algorithm=AWS4-HMAC-SHA256",
		  kAllow, "github-read" },
		{ "HEAD", "https://codeload.github.com/acme/app/tar.gz/refs/heads/main", kAllow, "github-read" },
		{ "PUT", "https://github.com/acme/app/settings", kDeny, kDefault },
		// `*.` means a subdomain: the bare domain is not listed.
		{ "GET", "https://githubusercontent.com/", kDeny, kDefault },

		// Package registries: read-only, npm's audit allowed, publishing denied.
		{ "GET", "https://registry.npmjs.org/left-pad", kAllow, "registries-read" },
		{ "GET", "https://registry.npmjs.org/@types%2fnode", kAllow, "registries-read" },
		{ "GET", "https://registry.npmjs.org/react/-/react-18.3.1.tgz", kAllow, "registries-read" },
		{ "POST", "https://registry.npmjs.org/-/npm/v1/security/advisories/bulk", kAllow, "npm-audit",
		  R"({"react":["18.3.1"],"left-pad":["1.3.0"]})" },
		{ "PUT", "https://registry.npmjs.org/acme-internal-tool", kDeny, "no-package-publish" },
		{ "POST", "https://upload.pypi.org/legacy/", kDeny, "no-package-publish" },
		{ "PUT", "https://crates.io/api/v1/crates/new", kDeny, "no-package-publish" },
		{ "GET", "https://pypi.org/simple/requests/", kAllow, "registries-read" },
		{ "GET", "https://files.pythonhosted.org/packages/f9/9b/335f9764261e915ed497fcdeb11df5dfd6f7bf257d4a6a2a686d80da4d54/requests-2.32.3-py3-none-any.whl",
		  kAllow, "registries-read" },
		{ "GET", "https://index.crates.io/se/rd/serde", kAllow, "registries-read" },
		{ "GET", "https://static.crates.io/crates/serde/serde-1.0.210.crate", kAllow, "registries-read" },
		{ "GET", "https://proxy.golang.org/github.com/google/uuid/@v/list", kAllow, "registries-read" },
		{ "GET", "https://sum.golang.org/lookup/github.com/google/uuid@v1.6.0", kAllow, "registries-read" },
		{ "GET", "http://deb.debian.org/debian/dists/bookworm/InRelease", kAllow, "registries-read" },

		// Documentation: GET only.
		{ "GET", "https://docs.python.org/3/library/asyncio-task.html", kAllow, "docs-read" },
		{ "GET", "https://developer.mozilla.org/en-US/docs/Web/HTTP/Headers/Cache-Control", kAllow, "docs-read" },
		{ "GET", "https://docs.rs/tokio/latest/tokio/", kAllow, "docs-read" },
		{ "GET", "https://pkg.go.dev/net/http?tab=doc", kAllow, "docs-read" },
		{ "POST", "https://docs.python.org/3/search.html", kDeny, kDefault },

		// The model gateway.
		{ "POST", "https://integrate.api.nvidia.com/v1/chat/completions", kAllow, "model-gateway", chat },
		{ "GET", "https://integrate.api.nvidia.com/v1/models", kAllow, "model-gateway-list-models" },
		{ "POST", "https://integrate.api.nvidia.com/v1/fine_tuning/jobs", kDeny, kDefault },

		// Everything else.
		{ "GET", "https://example.com/", kDeny, kDefault },
		{ "POST", "https://pastebin.com/api/api_post.php", kDeny, kDefault, "api_dev_key=x&api_paste_code=secrets" },
		{ "GET", "https://gitlab.com/acme/app", kDeny, kDefault },
		{ "GET", "http://169.254.169.254/latest/meta-data/", kDeny, kDefault },
	});

	SECTION("holds and rates carry their durations") {
		Decision push = decide(*engine, "POST", "https://github.com/acme/app.git/git-receive-pack");
		CHECK(push.duration == 120s);
		Decision pr = decide(*engine, "POST", "https://api.github.com/repos/acme/app/pulls");
		CHECK(pr.duration == 120s);
		checkRate(decide(*engine, "POST", "https://integrate.api.nvidia.com/v1/chat/completions", chat), 120, 60s);
	}

	SECTION("ssh to GitHub, and no other raw TCP") {
		Decision ssh = engine->evaluateTcp("140.82.121.4", 22, { "github.com" });
		CHECK(actionName(ssh.action) == "allow");
		CHECK(ssh.rule == "ssh-to-github");

		Decision otherPort = engine->evaluateTcp("140.82.121.4", 443, { "github.com" });
		CHECK(actionName(otherPort.action) == "deny");
		CHECK(otherPort.rule == kDefault);

		Decision otherHost = engine->evaluateTcp("192.0.2.44", 22, { "gitlab.com" });
		CHECK(actionName(otherHost.action) == "deny");
		Decision unnamed = engine->evaluateTcp("198.51.100.7", 22, {});
		CHECK(actionName(unnamed.action) == "deny");
	}

	SECTION("TLS") {
		checkTlsDecided(*engine, "api.openai.com", 443, kDeny, "deny-shadow-models");
		checkTlsDecided(*engine, "api.mistral.ai", 443, kDeny, "deny-shadow-models");
		checkTlsDecided(*engine, "api.openai.com.", 443, kDeny, "deny-shadow-models");
		checkTlsDecided(*engine, "example.com", 443, kDeny, kDefault);
		checkTlsIntercepted(*engine, "github.com", 443);
		checkTlsIntercepted(*engine, "api.github.com", 443);
		checkTlsIntercepted(*engine, "registry.npmjs.org", 443);
	}

	SECTION("DNS") {
		checkDns(*engine, "github.com", gvm::policy::kDnsTypeA, kAllow);
		checkDns(*engine, "raw.githubusercontent.com", gvm::policy::kDnsTypeAaaa, kAllow);
		checkDns(*engine, "registry.npmjs.org", gvm::policy::kDnsTypeA, kAllow);
		checkDns(*engine, "integrate.api.nvidia.com", gvm::policy::kDnsTypeA, kAllow);
		// Names only a deny rule lists, unlisted names, the bare domain
		// of a wildcard.
		checkDns(*engine, "api.openai.com", gvm::policy::kDnsTypeA, kDeny);
		checkDns(*engine, "api.mistral.ai", gvm::policy::kDnsTypeA, kDeny);
		checkDns(*engine, "example.com", gvm::policy::kDnsTypeA, kDeny);
		checkDns(*engine, "githubusercontent.com", gvm::policy::kDnsTypeA, kDeny);
		checkDns(*engine, "exfil.example.com", gvm::policy::kDnsTypeTxt, kDeny);
		// max_name_length: 120 applies even under an allowed wildcard.
		checkDns(*engine, longName(120, "github.com"), gvm::policy::kDnsTypeA, kAllow);
		checkDns(*engine, longName(121, "github.com"), gvm::policy::kDnsTypeA, kDeny);
	}
}

// --- research ------------------------------------------------------------

TEST_CASE("research: read the web, write nowhere but the gateway", "[presets][research]")
{
	auto engine = loadPreset("research");

	checkTable(*engine, {
		// The open web, read-only, any host and port.
		{ "GET", "https://en.wikipedia.org/wiki/Attention_Is_All_You_Need", kAllow, "web-read" },
		{ "GET", "https://arxiv.org/abs/1706.03762", kAllow, "web-read" },
		{ "GET", "https://export.arxiv.org/api/query?search_query=all:transformer&start=0&max_results=10", kAllow, "web-read" },
		{ "HEAD", "https://www.nature.com/articles/s41586-021-03819-2.pdf", kAllow, "web-read" },
		{ "GET", "http://data.example.org:8080/series/cpi.csv", kAllow, "web-read" },
		{ "GET", "https://api.github.com/search/repositories?q=llm+agents&sort=stars", kAllow, "web-read" },
		// Inference is the only write.
		{ "POST", "https://integrate.api.nvidia.com/v1/chat/completions", kAllow, "model-gateway",
		  R"({"model":"meta/llama-3.1-405b-instruct","messages":[{"role":"user","content":"Summarise these sources."}]})" },
		{ "POST", "https://integrate.api.nvidia.com/v1/embeddings", kAllow, "model-gateway" },
		{ "POST", "https://integrate.api.nvidia.com/v1/files", kDeny, "no-writes" },
		{ "POST", "https://en.wikipedia.org/w/api.php?action=edit", kDeny, "no-writes", "title=Sandbox&text=hello" },
		{ "POST", "https://www.google.com/search", kDeny, "no-writes", "q=secret" },
		{ "PUT", "https://acme-bucket.s3.amazonaws.com/notes.txt", kDeny, "no-writes", "the notes" },
		{ "PATCH", "https://api.github.com/repos/acme/app/issues/1", kDeny, "no-writes" },
		{ "DELETE", "https://api.example.com/v1/items/7", kDeny, "no-writes" },
		// Methods nobody listed fall to the default.
		{ "OPTIONS", "https://api.example.com/v1/items", kDeny, kDefault },
		{ "TRACE", "https://api.example.com/", kDeny, kDefault },
		// Paste, file-sharing and request-capture sites, GET included.
		{ "POST", "https://pastebin.com/api/api_post.php", kDeny, "deny-paste-and-file-sharing",
		  "api_dev_key=x&api_option=paste&api_paste_code=notes" },
		{ "GET", "https://pastebin.com/raw/Xy12AbCd", kDeny, "deny-paste-and-file-sharing" },
		{ "PUT", "https://transfer.sh/notes.txt", kDeny, "deny-paste-and-file-sharing", "the notes" },
		{ "POST", "https://file.io/", kDeny, "deny-paste-and-file-sharing" },
		{ "POST", "https://0x0.st/", kDeny, "deny-paste-and-file-sharing" },
		{ "GET", "https://webhook.site/0e6a3f6c-2b1f-4a8e-9a63-2f1f5d1c1e11?data=c2VjcmV0", kDeny, "deny-paste-and-file-sharing" },
		{ "GET", "https://d3adb33f.ngrok-free.app/collect?k=v", kDeny, "deny-paste-and-file-sharing" },
		{ "POST", "https://files.catbox.moe/user/api.php", kDeny, "deny-paste-and-file-sharing" },
		// Shadow model providers.
		{ "POST", "https://api.openai.com/v1/chat/completions", kDeny, "deny-shadow-models" },
		{ "GET", "https://api.anthropic.com/v1/models", kDeny, "deny-shadow-models" },
		{ "POST", "https://api.perplexity.ai/chat/completions", kDeny, "deny-shadow-models" },
	});

	SECTION("the general web is rate-limited") {
		checkRate(decide(*engine, "GET", "https://en.wikipedia.org/wiki/Main_Page"), 300, 60s);
		checkRate(decide(*engine, "POST", "https://integrate.api.nvidia.com/v1/chat/completions"), 60, 60s);
	}

	SECTION("TLS") {
		checkTlsDecided(*engine, "pastebin.com", 443, kDeny, "deny-paste-and-file-sharing");
		checkTlsDecided(*engine, "api.openai.com", 443, kDeny, "deny-shadow-models");
		checkTlsIntercepted(*engine, "en.wikipedia.org", 443);
		checkTlsIntercepted(*engine, "integrate.api.nvidia.com", 443);
	}

	SECTION("DNS") {
		// A host-less rule may allow any name: every address record resolves.
		checkDns(*engine, "en.wikipedia.org", gvm::policy::kDnsTypeA, kAllow);
		checkDns(*engine, "data.example.org", gvm::policy::kDnsTypeAaaa, kAllow);
		// Names only a deny rule lists do not resolve, host-less rule or not.
		checkDns(*engine, "pastebin.com", gvm::policy::kDnsTypeA, kDeny);
		checkDns(*engine, "abc.ngrok-free.app", gvm::policy::kDnsTypeA, kDeny);
		checkDns(*engine, "api.openai.com", gvm::policy::kDnsTypeA, kDeny);
		// TXT to names no rule lists is a tunnelling channel.
		checkDns(*engine, "c2VjcmV0.exfil.example.org", gvm::policy::kDnsTypeTxt, kDeny);
		// max_name_length: 100.
		checkDns(*engine, longName(100, "example.org"), gvm::policy::kDnsTypeA, kAllow);
		checkDns(*engine, longName(101, "example.org"), gvm::policy::kDnsTypeA, kDeny);
	}
}

// --- support -------------------------------------------------------------

TEST_CASE("support: help desk reads, delayed replies, held refunds and email", "[presets][support]")
{
	auto engine = loadPreset("support");
	const std::string reply = R"({"ticket":{"comment":{"body":"Thanks for waiting: your order shipped today.","public":true},"status":"pending"}})";

	checkTable(*engine, {
		// Help desk: reads.
		{ "GET", "https://acme.zendesk.com/api/v2/tickets/48213.json", kAllow, "helpdesk-read" },
		{ "GET", "https://acme.zendesk.com/api/v2/tickets/48213/comments.json?sort_order=desc", kAllow, "helpdesk-read" },
		{ "GET", "https://acme.zendesk.com/api/v2/search.json?query=type%3Aticket%20status%3Aopen", kAllow, "helpdesk-read" },
		{ "GET", "https://acme.zendesk.com/api/v2/help_center/articles/360001234567.json", kAllow, "helpdesk-read" },
		{ "GET", "https://acme.zendesk.com/api/v2/users/me.json", kAllow, "helpdesk-read" },
		// Replies and new tickets are delayed.
		{ "PUT", "https://acme.zendesk.com/api/v2/tickets/48213.json", kDelay, "helpdesk-reply-delayed", reply },
		{ "PUT", "https://acme.zendesk.com/api/v2/tickets/48213", kDelay, "helpdesk-reply-delayed", reply },
		{ "POST", "https://acme.zendesk.com/api/v2/tickets.json", kDelay, "helpdesk-reply-delayed",
		  R"({"ticket":{"subject":"Follow-up on your return","comment":{"body":"..."},"requester_id":20978392}})" },
		// Bulk updates and attachments wait for a human.
		{ "PUT", "https://acme.zendesk.com/api/v2/tickets/update_many.json?ids=1,2,3", kHold,
		  "helpdesk-bulk-update-needs-approval", R"({"ticket":{"status":"solved"}})" },
		{ "POST", "https://acme.zendesk.com/api/v2/uploads.json?filename=invoice.pdf", kHold, "helpdesk-upload-needs-approval" },
		// Deletions, other endpoints and other tenants are denied.
		{ "DELETE", "https://acme.zendesk.com/api/v2/tickets/48213.json", kDeny, "helpdesk-no-deletes" },
		{ "DELETE", "https://acme.zendesk.com/api/v2/users/20978392.json", kDeny, "helpdesk-no-deletes" },
		{ "POST", "https://acme.zendesk.com/api/v2/users.json", kDeny, "helpdesk-everything-else",
		  R"({"user":{"name":"New Admin","role":"admin"}})" },
		{ "PUT", "https://acme.zendesk.com/api/v2/account/settings.json", kDeny, "helpdesk-everything-else" },
		{ "GET", "https://acme.zendesk.com/agent/tickets/48213", kDeny, "helpdesk-everything-else" },
		{ "GET", "https://attacker.zendesk.com/api/v2/tickets.json", kDeny, "helpdesk-everything-else" },
		{ "PUT", "https://attacker.zendesk.com/api/v2/tickets/1.json", kDeny, "helpdesk-everything-else", reply },

		// Payments: look-ups allowed, refunds held, other writes denied.
		{ "GET", "https://api.stripe.com/v1/customers/cus_NffrFeUfNV2Hib", kAllow, "payments-read" },
		{ "GET", "https://api.stripe.com/v1/charges?customer=cus_NffrFeUfNV2Hib&limit=10", kAllow, "payments-read" },
		{ "GET", "https://api.stripe.com/v1/refunds/re_1Nispe2eZvKYlo2Cd31jOCgZ", kAllow, "payments-read" },
		{ "POST", "https://api.stripe.com/v1/refunds", kHold, "refund-needs-approval",
		  "charge=ch_3MmlLrLkdIwHu7ix0snN0B15&amount=1500&reason=requested_by_customer" },
		{ "POST", "https://api.stripe.com/v1/charges/ch_3MmlLrLkdIwHu7ix0snN0B15/refunds", kHold, "refund-needs-approval" },
		{ "POST", "https://api.stripe.com/v1/refunds/re_1Nispe2eZvKYlo2Cd31jOCgZ/cancel", kHold, "refund-needs-approval" },
		{ "POST", "https://api.stripe.com/v1/charges", kDeny, "payments-other-writes",
		  "amount=2000&currency=usd&source=tok_visa" },
		{ "POST", "https://api.stripe.com/v1/payouts", kDeny, "payments-other-writes", "amount=500000&currency=usd" },
		{ "DELETE", "https://api.stripe.com/v1/customers/cus_NffrFeUfNV2Hib", kDeny, "payments-other-writes" },

		// Email waits for a human.
		{ "POST", "https://api.sendgrid.com/v3/mail/send", kHold, "email-send-needs-approval",
		  R"({"personalizations":[{"to":[{"email":"customer@example.com"}]}],"from":{"email":"support@acme.example"},"subject":"Your refund","content":[{"type":"text/plain","value":"..."}]})" },
		{ "POST", "https://api.postmarkapp.com/email", kHold, "email-send-needs-approval-postmark" },
		{ "POST", "https://api.postmarkapp.com/email/batch", kHold, "email-send-needs-approval-postmark" },
		{ "GET", "https://api.sendgrid.com/v3/templates", kDeny, kDefault },
		{ "POST", "https://api.sendgrid.com/v3/marketing/contacts", kDeny, kDefault },

		// The model gateway, and nothing else.
		{ "POST", "https://integrate.api.nvidia.com/v1/chat/completions", kAllow, "model-gateway" },
		{ "POST", "https://api.openai.com/v1/chat/completions", kDeny, "deny-shadow-models" },
		{ "GET", "https://www.google.com/search?q=acme+refund+policy", kDeny, kDefault },
		{ "POST", "https://hooks.slack.com/services/T000/B000/XXXX", kDeny, kDefault },
	});

	SECTION("delays and holds carry their durations") {
		CHECK(decide(*engine, "PUT", "https://acme.zendesk.com/api/v2/tickets/48213.json", reply).duration == 2s);
		CHECK(decide(*engine, "POST", "https://api.stripe.com/v1/refunds").duration == 75s);
		CHECK(decide(*engine, "POST", "https://api.sendgrid.com/v3/mail/send").duration == 120s);
	}

	SECTION("TLS") {
		checkTlsDecided(*engine, "attacker.zendesk.com", 443, kDeny, "helpdesk-everything-else");
		checkTlsDecided(*engine, "api.openai.com", 443, kDeny, "deny-shadow-models");
		checkTlsDecided(*engine, "www.google.com", 443, kDeny, kDefault);
		checkTlsIntercepted(*engine, "acme.zendesk.com", 443);
		checkTlsIntercepted(*engine, "api.stripe.com", 443);
	}

	SECTION("DNS") {
		checkDns(*engine, "acme.zendesk.com", gvm::policy::kDnsTypeA, kAllow);
		checkDns(*engine, "api.stripe.com", gvm::policy::kDnsTypeA, kAllow);
		checkDns(*engine, "api.sendgrid.com", gvm::policy::kDnsTypeA, kAllow);
		checkDns(*engine, "attacker.zendesk.com", gvm::policy::kDnsTypeA, kDeny);
		checkDns(*engine, "www.google.com", gvm::policy::kDnsTypeA, kDeny);
		checkDns(*engine, "api.openai.com", gvm::policy::kDnsTypeAaaa, kDeny);
	}
}

// --- regulated -----------------------------------------------------------

TEST_CASE("regulated: narrow reads, every write held", "[presets][regulated]")
{
	auto engine = loadPreset("regulated");
	const std::string sf = "https://acme.my.salesforce.com/services/data/v59.0";

	checkTable(*engine, {
		// Ticketing: reads (search is a POST that only reads), writes held.
		{ "GET", "https://acme.atlassian.net/rest/api/3/issue/FIN-1234?fields=summary,status", kAllow, "ticketing-read" },
		{ "GET", "https://acme.atlassian.net/wiki/api/v2/pages/98765?body-format=storage", kAllow, "ticketing-read" },
		{ "POST", "https://acme.atlassian.net/rest/api/3/search", kAllow, "ticketing-search",
		  R"({"jql":"project = FIN AND status = \"In Review\"","maxResults":50})" },
		{ "POST", "https://acme.atlassian.net/rest/api/3/issue/FIN-1234/comment", kHold, "ticketing-write-needs-approval",
		  R"({"body":{"type":"doc","version":1,"content":[]}})" },
		{ "PUT", "https://acme.atlassian.net/rest/api/3/issue/FIN-1234", kHold, "ticketing-write-needs-approval" },
		{ "DELETE", "https://acme.atlassian.net/rest/api/3/issue/FIN-1234", kHold, "ticketing-write-needs-approval" },
		{ "POST", "https://acme.atlassian.net/rest/api/3/issue/FIN-1234/transitions", kHold, "ticketing-write-needs-approval" },
		// Outside the APIs, or off port 443: denied.
		{ "GET", "https://acme.atlassian.net/secure/admin/ViewApplicationProperties.jspa", kDeny, kDefault },
		{ "GET", "http://acme.atlassian.net/rest/api/3/issue/FIN-1234", kDeny, kDefault },

		// CRM: reads, writes held.
		{ "GET", sf + "/query?q=SELECT+Id,Name+FROM+Account+LIMIT+10", kAllow, "crm-read" },
		{ "GET", sf + "/sobjects/Account/001xx000003DGb2AAG", kAllow, "crm-read" },
		{ "PATCH", sf + "/sobjects/Account/001xx000003DGb2AAG", kHold, "crm-write-needs-approval",
		  R"({"BillingCity":"Leeds"})" },
		{ "POST", sf + "/composite/tree/Account", kHold, "crm-write-needs-approval" },
		{ "DELETE", sf + "/sobjects/Contact/003xx000004TmiQAAS", kHold, "crm-write-needs-approval" },
		{ "GET", "https://acme.my.salesforce.com/lightning/setup/SetupOneHome/home", kDeny, kDefault },

		// Method overrides, wherever they appear.
		{ "GET", "https://acme.atlassian.net/rest/api/3/issue/FIN-1234", kDeny, "no-method-override-header", "",
		  { { "X-HTTP-Method-Override", "DELETE" } } },
		{ "GET", sf + "/sobjects/Account/001xx000003DGb2AAG", kDeny, "no-method-override-header-x-method", "",
		  { { "X-Method-Override", "PATCH" } } },
		{ "POST", sf + "/sobjects/Account/001xx000003DGb2AAG?_HttpMethod=PATCH", kDeny, "no-method-override-query",
		  R"({"Name":"x"})" },
		{ "POST", "https://integrate.api.nvidia.com/v1/chat/completions", kDeny, "no-method-override-header", "{}",
		  { { "x-http-method-override", "DELETE" } } },
		// An unrelated header does not trip them.
		{ "GET", "https://acme.atlassian.net/rest/api/3/myself", kAllow, "ticketing-read", "",
		  { { "Accept", "application/json" }, { "X-Request-Id", "4f1c" } } },

		// The model gateway: chat and embeddings only.
		{ "POST", "https://integrate.api.nvidia.com/v1/chat/completions", kAllow, "model-gateway" },
		{ "POST", "https://integrate.api.nvidia.com/v1/embeddings", kAllow, "model-gateway" },
		{ "POST", "https://integrate.api.nvidia.com/v1/completions", kDeny, kDefault },
		{ "POST", "https://api.anthropic.com/v1/messages", kDeny, "deny-shadow-models" },

		// Nothing else.
		{ "GET", "https://github.com/", kDeny, kDefault },
		{ "GET", "https://en.wikipedia.org/wiki/GDPR", kDeny, kDefault },
		{ "POST", "https://api.sendgrid.com/v3/mail/send", kDeny, kDefault },
	});

	SECTION("writes are held for five minutes") {
		CHECK(decide(*engine, "PUT", "https://acme.atlassian.net/rest/api/3/issue/FIN-1").duration == 300s);
		CHECK(decide(*engine, "POST", sf + "/sobjects/Case").duration == 300s);
		checkRate(decide(*engine, "POST", "https://integrate.api.nvidia.com/v1/chat/completions"), 30, 60s);
	}

	SECTION("TLS: the systems of record are intercepted, the rest refused at the handshake") {
		checkTlsIntercepted(*engine, "acme.atlassian.net", 443);
		checkTlsIntercepted(*engine, "acme.my.salesforce.com", 443);
		checkTlsIntercepted(*engine, "integrate.api.nvidia.com", 443);
		checkTlsDecided(*engine, "api.anthropic.com", 443, kDeny, "deny-shadow-models");
		checkTlsDecided(*engine, "github.com", 443, kDeny, kDefault);
	}

	SECTION("DNS") {
		checkDns(*engine, "acme.atlassian.net", gvm::policy::kDnsTypeA, kAllow);
		checkDns(*engine, "acme.my.salesforce.com", gvm::policy::kDnsTypeA, kAllow);
		checkDns(*engine, "github.com", gvm::policy::kDnsTypeA, kDeny);
		checkDns(*engine, "api.anthropic.com", gvm::policy::kDnsTypeA, kDeny);
		checkDns(*engine, longName(61, "example.com"), gvm::policy::kDnsTypeA, kDeny);
	}
}
