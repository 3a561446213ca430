// SPDX-License-Identifier: Apache-2.0
//
// gvmctl policy check / policy test, the real binary, without a daemon.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "common/json_rpc.h"
#include "tests/support/process.h"

using namespace gvm;
using namespace gvm::test;

namespace {

const char kPolicy[] = R"(version: 1
name: cli-test
default: deny
rules:
  - name: deny-openai
    hosts: [api.openai.com]
    action: deny
  - name: gql-mutation
    hosts: [api.github.com]
    path: '^/graphql$'
    body: {json: query, regex: '^\s*mutation'}
    action: deny
  - name: github-read
    hosts: [api.github.com]
    methods: [GET]
    action: allow
  - name: slow-post
    hosts: [api.github.com]
    methods: [POST]
    rate: 10/min
    action: {delay: 500ms}
  - name: needs-header
    hosts: [internal.example.com]
    headers: {x-team: '^infra$'}
    action: {hold: 30s}
)";

// Two mistakes: a misspelt key on line 5 and a bad regex on line 7.
const char kBroken[] = R"(version: 1
name: broken
rules:
  - name: a
    hots: [example.com]
    action: allow
  - name: b
    hosts: [example.com]
    path: '^/(unclosed'
    action: deny
)";

std::string write(const TempDir &dir, const std::string &name, const std::string &text)
{
	std::string path = dir.path() + "/" + name;
	std::ofstream(path) << text;
	return path;
}

RunResult gvmctl(std::vector<std::string> args)
{
	args.insert(args.begin(), binaryFromEnv("GVM_GVMCTL"));
	return run(args);
}

rpc::Json decide(const std::string &policy, std::vector<std::string> request)
{
	std::vector<std::string> args = {"policy", "test", policy};
	args.insert(args.end(), request.begin(), request.end());
	args.push_back("--json");
	RunResult r = gvmctl(args);
	INFO(r.err);
	REQUIRE(r.status == 0);
	auto j = rpc::parseJson(r.out);
	REQUIRE(j);
	return *j;
}

} // namespace

TEST_CASE("gvmctl policy check accepts every shipped preset", "[policy-cli]")
{
	const std::string presets = binaryFromEnv("GVM_PRESETS");
	std::vector<std::string> args = {"policy", "check"};
	for (const char *name : {"locked-down", "coding", "research", "support", "regulated"})
		args.push_back(presets + "/" + name + ".yaml");
	RunResult r = gvmctl(args);
	INFO(r.err);
	CHECK(r.status == 0);
	CHECK_THAT(r.out, Catch::Contains("coding.yaml: ok"));
}

TEST_CASE("gvmctl policy check lists every error with file:line:column", "[policy-cli]")
{
	TempDir dir;
	std::string good = write(dir, "good.yaml", kPolicy);
	std::string bad = write(dir, "bad.yaml", kBroken);

	RunResult ok = gvmctl({"policy", "check", good});
	CHECK(ok.status == 0);
	CHECK_THAT(ok.out, Catch::Contains("good.yaml: ok (policy 'cli-test', 5 rules"));

	RunResult r = gvmctl({"policy", "check", good, bad});
	CHECK(r.status == 1);
	CHECK_THAT(r.err, Catch::Contains(bad + ":5:5: "));
	CHECK_THAT(r.err, Catch::Contains("hots"));
	CHECK_THAT(r.err, Catch::Contains(bad + ":9:"));
	CHECK_THAT(r.err, Catch::Contains("missing closing parenthesis"));
	CHECK_THAT(r.err, Catch::Contains("bad.yaml: 2 errors"));

	RunResult j = gvmctl({"policy", "check", "--json", bad});
	CHECK(j.status == 1);
	auto out = rpc::parseJson(j.out);
	REQUIRE(out);
	CHECK((*out)["valid"] == false);
	auto &errors = (*out)["files"][0]["errors"];
	REQUIRE(errors.size() == 2);
	CHECK(errors[0]["line"] == 5);
	CHECK(errors[0]["column"] == 5);
	CHECK(errors[1]["line"] == 9);

	RunResult missing = gvmctl({"policy", "check", dir.path() + "/nope.yaml"});
	CHECK(missing.status == 1);
	CHECK_THAT(missing.err, Catch::Contains("nope.yaml"));

	RunResult none = gvmctl({"policy", "check"});
	CHECK(none.status == 2);
}

TEST_CASE("gvmctl policy test decides a request offline", "[policy-cli]")
{
	TempDir dir;
	std::string policy = write(dir, "p.yaml", kPolicy);

	auto get = decide(policy, {"GET", "https://api.github.com/repos/acme/app"});
	CHECK(get["action"] == "allow");
	CHECK(get["rule"] == "github-read");
	CHECK(get["policy"] == "cli-test");
	CHECK(get["policy_sha256"].get<std::string>().size() == 64);

	auto openai = decide(policy, {"post", "https://api.openai.com/v1/chat/completions"});
	CHECK(openai["action"] == "deny");
	CHECK(openai["rule"] == "deny-openai");
	CHECK(openai["request"]["method"] == "POST");

	auto mutation = decide(policy, {"POST", "https://api.github.com/graphql",
					"--body", R"({"query":"  mutation { deleteRepository(id: 1) }"})"});
	CHECK(mutation["action"] == "deny");
	CHECK(mutation["rule"] == "gql-mutation");

	std::string body = write(dir, "query.json", R"({"query":"query { viewer { login } }"})");
	auto query = decide(policy, {"POST", "https://api.github.com/graphql", "--body", "@" + body});
	CHECK(query["action"] == "delay");
	CHECK(query["rule"] == "slow-post");
	CHECK(query["duration_ms"] == 500);
	CHECK(query["rate"]["count"] == 10);
	CHECK(query["rate"]["period_ms"] == 60000);

	auto held = decide(policy, {"GET", "https://internal.example.com/", "--header", "X-Team: infra"});
	CHECK(held["action"] == "hold");
	CHECK(held["duration_ms"] == 30000);

	auto noHeader = decide(policy, {"GET", "https://internal.example.com/"});
	CHECK(noHeader["action"] == "deny");
	CHECK(noHeader["rule"].is_null());

	RunResult human = gvmctl({"policy", "test", policy, "POST", "https://api.github.com/issues"});
	CHECK(human.status == 0);
	CHECK_THAT(human.out, Catch::StartsWith("delay 500ms"));
	CHECK_THAT(human.out, Catch::Contains("rule:   slow-post"));
}

TEST_CASE("gvmctl policy test shows monitor mode and rejects bad input", "[policy-cli]")
{
	TempDir dir;
	std::string text = kPolicy;
	text.replace(text.find("default: deny"), 13, "mode: monitor\ndefault: deny");
	std::string monitor = write(dir, "m.yaml", text);

	auto d = decide(monitor, {"DELETE", "https://api.openai.com/v1/files/1"});
	CHECK(d["action"] == "deny");
	CHECK(d["effective"] == "allow");
	CHECK(d["mode"] == "monitor");

	RunResult badUrl = gvmctl({"policy", "test", monitor, "GET", "ftp://example.com/"});
	CHECK(badUrl.status == 2);
	CHECK_THAT(badUrl.err, Catch::Contains("unsupported scheme"));

	RunResult badHeader = gvmctl({"policy", "test", monitor, "GET", "https://x.example/", "--header", "nocolon"});
	CHECK(badHeader.status == 2);

	RunResult missingArgs = gvmctl({"policy", "test", monitor, "GET"});
	CHECK(missingArgs.status == 2);
	CHECK_THAT(missingArgs.err, Catch::Contains("expected FILE METHOD URL"));

	std::string bad = write(dir, "bad.yaml", kBroken);
	RunResult broken = gvmctl({"policy", "test", bad, "GET", "https://example.com/"});
	CHECK(broken.status == 1);
	CHECK_THAT(broken.err, Catch::Contains(bad + ":5:5:"));
}
