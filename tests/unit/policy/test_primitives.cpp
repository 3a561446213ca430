// SPDX-License-Identifier: Apache-2.0
//
// The small pieces: durations, rates, path normalisation, the rate limiter,
// diagnostics, file loading, limits and the engine's metadata.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <thread>

#include <unistd.h>

#include "common/sha256.h"
#include "policy/policy.h"
#include "table.h"

using namespace gvm::policy;
using namespace std::chrono_literals;
using gvm::policy::test::dataDir;
using gvm::policy::test::readFile;

TEST_CASE("parseDuration", "[policy][duration]")
{
	struct Case {
		const char *text;
		bool ok;
		std::chrono::milliseconds value;
	};
	const Case cases[] = {
		{"300ms", true, 300ms},   {"2s", true, 2s},        {"5m", true, 5min},   {"1h", true, 1h},
		{"0s", true, 0ms},        {"120s", true, 120s},    {"999999999999ms", true, 999999999999ms},
		{"1000000000000ms", false, 0ms}, {"", false, 0ms}, {"s", false, 0ms},    {"5", false, 0ms},
		{"1.5s", false, 0ms},     {"-1s", false, 0ms},     {"2 s", false, 0ms},  {" 2s", false, 0ms},
		{"2S", false, 0ms},       {"1d", false, 0ms},      {"2sec", false, 0ms}, {"1h1m", false, 0ms},
	};
	for (const Case &c : cases) {
		INFO(c.text);
		std::chrono::milliseconds out{-1};
		CHECK(parseDuration(c.text, &out) == c.ok);
		if (c.ok)
			CHECK(out == c.value);
	}
}

TEST_CASE("parseRate", "[policy][rate]")
{
	struct Case {
		const char *text;
		bool ok;
		uint32_t count;
		std::chrono::milliseconds period;
	};
	const Case cases[] = {
		{"60/min", true, 60, 1min},        {"10/s", true, 10, 1s},          {"1000/hour", true, 1000, 1h},
		{"5/sec", true, 5, 1s},            {"5/second", true, 5, 1s},       {"7/minute", true, 7, 1min},
		{"3/h", true, 3, 1h},              {"1/day", true, 1, 24h},         {"4294967295/s", true, 4294967295u, 1s},
		{"4294967296/s", false, 0, 0ms},   {"0/min", false, 0, 0ms},        {"60", false, 0, 0ms},
		{"60/", false, 0, 0ms},            {"/min", false, 0, 0ms},         {"60/fortnight", false, 0, 0ms},
		{"-1/s", false, 0, 0ms},           {"1.5/s", false, 0, 0ms},        {"60 / min", false, 0, 0ms},
	};
	for (const Case &c : cases) {
		INFO(c.text);
		Rate out;
		CHECK(parseRate(c.text, &out) == c.ok);
		if (c.ok) {
			CHECK(out.count == c.count);
			CHECK(out.period == c.period);
		}
	}
}

TEST_CASE("formatDuration", "[policy][duration]")
{
	CHECK(formatDuration(300ms) == "300ms");
	CHECK(formatDuration(1500ms) == "1500ms");
	CHECK(formatDuration(2s) == "2s");
	CHECK(formatDuration(90s) == "90s");
	CHECK(formatDuration(120s) == "2m");
	CHECK(formatDuration(1h) == "1h");
	CHECK(formatDuration(24h) == "24h");
	CHECK(formatDuration(0ms) == "0s");
	for (std::chrono::milliseconds d : {1ms, 999ms, 61000ms, 600000ms, 90000000ms}) {
		std::chrono::milliseconds back{0};
		REQUIRE(parseDuration(formatDuration(d), &back));
		CHECK(back == d);
	}
}

TEST_CASE("normalizePath", "[policy][path]")
{
	const std::pair<const char *, const char *> cases[] = {
		{"", "/"},
		{"/", "/"},
		{"/graphql", "/graphql"},
		{"/graph%71l", "/graphql"},
		{"/%7Euser/%2d%2E%5f", "/~user/-._"},
		{"/a%2fb", "/a%2Fb"},
		{"/a%2Fb", "/a%2Fb"},
		{"/%e2%82%ac", "/%E2%82%AC"},
		{"/a/../graphql", "/graphql"},
		{"/a/./b/../c", "/a/c"},
		{"/../../x", "/x"},
		{"/a/b/..", "/a/"},
		{"/a/b/.", "/a/b/"},
		{"/a/%2e%2E/b", "/b"},
		{"/..", "/"},
		{"/.", "/"},
		{"/a//b", "/a//b"},
		{"/a/..b/c", "/a/..b/c"},
		{"/100%", "/100%"},
		{"/%zz%4", "/%zz%4"},
		{"/%41%42", "/AB"},
	};
	for (const auto &[in, out] : cases) {
		INFO(in);
		CHECK(normalizePath(in) == out);
	}
}

TEST_CASE("RateLimiter is a token bucket per rule that starts full", "[policy][rate]")
{
	RateLimiter limiter;
	const Rate rate{3, std::chrono::milliseconds(3000)}; // one token a second
	RateLimiter::Clock::time_point t0{std::chrono::seconds(1000)};
	CHECK(limiter.take(0, rate, t0));
	CHECK(limiter.take(0, rate, t0));
	CHECK(limiter.take(0, rate, t0));
	CHECK_FALSE(limiter.take(0, rate, t0));
	// Another rule has its own bucket.
	CHECK(limiter.take(1, rate, t0));
	// Half a token is not enough; a whole one is.
	CHECK_FALSE(limiter.take(0, rate, t0 + 500ms));
	CHECK(limiter.take(0, rate, t0 + 1000ms));
	CHECK_FALSE(limiter.take(0, rate, t0 + 1000ms));
	// A long pause refills to capacity, not beyond.
	auto later = t0 + 1h;
	CHECK(limiter.take(0, rate, later));
	CHECK(limiter.take(0, rate, later));
	CHECK(limiter.take(0, rate, later));
	CHECK_FALSE(limiter.take(0, rate, later));
	// Time going backwards neither refills nor breaks.
	CHECK_FALSE(limiter.take(0, rate, t0));
	// A zero rate never lets anything through.
	CHECK_FALSE(limiter.take(2, Rate{0, std::chrono::milliseconds(1000)}, t0));
	CHECK_FALSE(limiter.take(3, Rate{5, std::chrono::milliseconds(0)}, t0));
}

TEST_CASE("toString of enums uses the audit words", "[policy]")
{
	CHECK(std::string(toString(ActionKind::Allow)) == "allow");
	CHECK(std::string(toString(ActionKind::Deny)) == "deny");
	CHECK(std::string(toString(ActionKind::Delay)) == "delay");
	CHECK(std::string(toString(ActionKind::Hold)) == "hold");
	CHECK(std::string(toString(ActionKind::RateLimit)) == "rate_limit");
	CHECK(std::string(toString(Mode::Enforce)) == "enforce");
	CHECK(std::string(toString(Mode::Monitor)) == "monitor");
}

TEST_CASE("Diagnostic::toString", "[policy][errors]")
{
	CHECK(Diagnostic{"p.yaml", 3, 7, "bad"}.toString() == "p.yaml:3:7: bad");
	CHECK(Diagnostic{"p.yaml", 0, 0, "cannot open"}.toString() == "p.yaml: cannot open");
}

TEST_CASE("engine metadata", "[policy]")
{
	std::string path = dataDir("valid") + "/monitor.yaml";
	LoadResult result = loadPolicyFile(path);
	REQUIRE(result.diagnostics.empty());
	REQUIRE(result.engine);
	const Engine &engine = *result.engine;
	CHECK(engine.name() == "watch");
	CHECK(engine.mode() == Mode::Monitor);
	CHECK(engine.ruleCount() == 3);
	CHECK(engine.sha256() == gvm::sha256Hex(readFile(path)));
	CHECK(engine.sha256().size() == 64);
	CHECK(engine.upstreamAllowCidrs() == std::vector<std::string>{"10.0.0.0/8", "fd00::/8", "192.168.1.7"});

	LoadResult same = loadPolicy(readFile(path), "other-name.yaml");
	REQUIRE(same.engine);
	CHECK(same.engine->sha256() == engine.sha256());
}

TEST_CASE("defaults of a minimal policy", "[policy]")
{
	LoadResult result = loadPolicy("version: 1\nname: minimal\n", "minimal.yaml");
	REQUIRE(result.diagnostics.empty());
	REQUIRE(result.engine);
	const Engine &engine = *result.engine;
	CHECK(engine.mode() == Mode::Enforce);
	CHECK(engine.ruleCount() == 0);
	CHECK(engine.upstreamAllowCidrs().empty());
	HttpRequest request;
	request.method = "GET";
	request.host = "example.com";
	Decision d = engine.evaluateHttp(request);
	CHECK(d.action == ActionKind::Deny);
	CHECK(d.reason == "no rule matched; default deny");
	// Default dns: resolve policy, deny by default, 120 characters.
	CHECK(engine.evaluateDns("example.com", kDnsTypeA).action == ActionKind::Deny);
	LoadResult allow = loadPolicy("version: 1\nname: m\ndefault: allow\n", "m.yaml");
	REQUIRE(allow.engine);
	CHECK(allow.engine->evaluateDns(std::string(120, 'a'), kDnsTypeA).action == ActionKind::Allow);
	CHECK(allow.engine->evaluateDns(std::string(121, 'a'), kDnsTypeA).action == ActionKind::Deny);
	CHECK(allow.engine->evaluateDns(std::string(120, 'a') + ".", kDnsTypeA).action == ActionKind::Allow);
	// Denials for the query's shape say so; a plain default denial does not.
	CHECK(allow.engine->evaluateDns(std::string(121, 'a'), kDnsTypeA).likelyExfiltration);
	CHECK(engine.evaluateDns("example.com", kDnsTypeTxt).likelyExfiltration);
	CHECK_FALSE(engine.evaluateDns("example.com", kDnsTypeA).likelyExfiltration);
	CHECK_FALSE(allow.engine->evaluateDns(std::string(120, 'a'), kDnsTypeA).likelyExfiltration);
}

TEST_CASE("loadPolicyFile on an unreadable file", "[policy][errors]")
{
	LoadResult result = loadPolicyFile("/nonexistent/policy.yaml");
	CHECK(result.engine == nullptr);
	REQUIRE(result.diagnostics.size() == 1);
	const Diagnostic &d = result.diagnostics[0];
	CHECK(d.line == 0);
	CHECK(d.column == 0);
	CHECK(d.file == "/nonexistent/policy.yaml");
	CHECK(d.toString().rfind("/nonexistent/policy.yaml: ", 0) == 0);
	CHECK(d.message.find("No such file") != std::string::npos);
}

TEST_CASE("a policy over kMaxPolicyBytes is refused", "[policy][errors]")
{
	std::string text = "version: 1\nname: big\n";
	text += "# " + std::string(kMaxPolicyBytes, 'x') + "\n";
	LoadResult result = loadPolicy(text, "big.yaml");
	CHECK(result.engine == nullptr);
	REQUIRE(result.diagnostics.size() == 1);
	CHECK(result.diagnostics[0].line == 0);
	CHECK(result.diagnostics[0].message.find("larger than the limit of 4194304 bytes") != std::string::npos);

	// The same through a file: it is not read further than needed.
	std::string path = "/tmp/gvm-test-policy-big-" + std::to_string(::getpid()) + ".yaml";
	FILE *f = std::fopen(path.c_str(), "w");
	REQUIRE(f);
	std::fwrite(text.data(), 1, text.size(), f);
	std::fclose(f);
	LoadResult fromFile = loadPolicyFile(path);
	std::remove(path.c_str());
	CHECK(fromFile.engine == nullptr);
	REQUIRE(fromFile.diagnostics.size() == 1);
	CHECK(fromFile.diagnostics[0].message.find("larger than the limit") != std::string::npos);
}

TEST_CASE("too many rules", "[policy][errors]")
{
	auto policyWith = [](size_t rules) {
		std::string text = "version: 1\nname: many\nrules:\n";
		for (size_t i = 0; i < rules; i++)
			text += "  - {name: r" + std::to_string(i) + ", hosts: [h" + std::to_string(i) + ".test], action: allow}\n";
		return text;
	};
	LoadResult ok = loadPolicy(policyWith(kMaxRules), "max.yaml");
	REQUIRE(ok.diagnostics.empty());
	REQUIRE(ok.engine);
	CHECK(ok.engine->ruleCount() == kMaxRules);
	HttpRequest request;
	request.method = "GET";
	request.host = "h9999.test";
	Decision d = ok.engine->evaluateHttp(request);
	CHECK(d.rule == "r9999");
	CHECK(d.ruleIndex == 9999);

	LoadResult over = loadPolicy(policyWith(kMaxRules + 1), "over.yaml");
	CHECK(over.engine == nullptr);
	REQUIRE(over.diagnostics.size() == 1);
	CHECK(over.diagnostics[0].line == 4);
	CHECK(over.diagnostics[0].column == 3);
	CHECK(over.diagnostics[0].message == "too many rules: 10001; at most 10000");
}

TEST_CASE("aliases cannot blow a policy up", "[policy][errors]")
{
	// Nine levels of ten aliases each: 10^9 host entries if expanded.
	std::string text = "version: 1\nname: laughs\nx0: &a0 [a.test, a.test, a.test, a.test, a.test, a.test, a.test, a.test, a.test, a.test]\n";
	for (int i = 1; i < 9; i++) {
		std::string prev = "*a" + std::to_string(i - 1);
		text += "x" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + prev;
		for (int j = 1; j < 10; j++)
			text += ", " + prev;
		text += "]\n";
	}
	text += "rules:\n  - {name: r, hosts: *a8, action: allow}\n";
	auto start = std::chrono::steady_clock::now();
	LoadResult result = loadPolicy(text, "laughs.yaml");
	CHECK(std::chrono::steady_clock::now() - start < 20s);
	CHECK(result.engine == nullptr);
	REQUIRE(!result.diagnostics.empty());
	CHECK(result.diagnostics[0].message.find("YAML nodes") != std::string::npos);
}

TEST_CASE("catastrophic regexes fail closed quickly", "[policy][regex]")
{
	LoadResult result = loadPolicy(R"(version: 1
name: redos
default: allow
rules:
  - name: evil
    path: '^/(a+)+$'
    action: allow
)",
				       "redos.yaml");
	REQUIRE(result.engine);
	HttpRequest request;
	request.method = "GET";
	request.host = "example.com";
	request.path = "/" + std::string(10000, 'a') + "b";
	auto start = std::chrono::steady_clock::now();
	Decision d = result.engine->evaluateHttp(request);
	CHECK(std::chrono::steady_clock::now() - start < 5s);
	CHECK(d.action == ActionKind::Deny);
	CHECK(d.rule == "evil");
	CHECK(d.reason.find("match limit") != std::string::npos);
	request.path = "/" + std::string(10000, 'a');
	CHECK(result.engine->evaluateHttp(request).action == ActionKind::Allow);
}

TEST_CASE("an engine answers from several threads at once", "[policy][threads]")
{
	LoadResult result = loadPolicyFile(dataDir("valid") + "/selectors.yaml");
	REQUIRE(result.engine);
	std::shared_ptr<const Engine> engine = result.engine;
	std::vector<std::thread> threads;
	std::vector<int> wrong(4, 0);
	for (int t = 0; t < 4; t++) {
		threads.emplace_back([engine, t, &wrong]() {
			for (int i = 0; i < 2000; i++) {
				HttpRequest request;
				request.method = "GET";
				request.host = "api.example.com";
				request.path = "/search";
				bool good = (i + t) % 2 == 0;
				request.query = good ? "q=hello&lang=en" : "q=HELLO&lang=en";
				Decision d = engine->evaluateHttp(request);
				if ((d.action == ActionKind::Allow) != good)
					wrong[static_cast<size_t>(t)]++;
			}
		});
	}
	for (std::thread &thread : threads)
		thread.join();
	CHECK(wrong == std::vector<int>(4, 0));
}

TEST_CASE("a JSON body nested too deep fails closed", "[policy][body]")
{
	LoadResult result = loadPolicy(R"(version: 1
name: deep
default: allow
rules:
  - name: no-mutations
    hosts: [api.example.com]
    body: {json: query, regex: mutation}
    action: deny
)",
				       "deep.yaml");
	REQUIRE(result.engine);
	HttpRequest request;
	request.method = "POST";
	request.host = "api.example.com";
	request.body = R"({"query": "query { a }", "pad": )" + std::string(5000, '[') + std::string(5000, ']') + "}";
	Decision d = result.engine->evaluateHttp(request);
	CHECK(d.action == ActionKind::Deny);
	CHECK(d.rule == "no-mutations");
	CHECK(d.reason.find("nested deeper than 128 levels") != std::string::npos);
	request.body = R"({"query": "query { a }", "pad": )" + std::string(100, '[') + std::string(100, ']') + "}";
	d = result.engine->evaluateHttp(request);
	CHECK(d.action == ActionKind::Allow);
	CHECK(d.rule.empty());
}
