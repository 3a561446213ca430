// SPDX-License-Identifier: Apache-2.0
//
// Every tests/data/policy/valid/NAME.yaml must load, and every line of
// NAME.cases is a question to its engine and the decision expected:
//
//   http METHOD URL [h:Name=Value]... [body='TEXT'] [truncated] [pending] -> EXPECT
//   tls SNI PORT -> EXPECT
//   tcp ADDRESS PORT [name=NAME]... -> EXPECT
//   dns NAME QTYPE -> EXPECT
//
// EXPECT is "ACTION RULE [FLAG]..." with RULE "-" for the default and FLAG
// one of needs-request, needs-body, passthrough, monitor, rate=60/min, duration=500ms,
// reason='substring'. Flags not given must not be set.
#include <catch2/catch.hpp>

#include <sstream>

#include "policy/policy.h"
#include "table.h"

using namespace gvm::policy;
using gvm::policy::test::dataDir;
using gvm::policy::test::listFiles;
using gvm::policy::test::readFile;
using gvm::policy::test::splitWords;

namespace {

HttpRequest parseHttp(const std::vector<std::string> &words)
{
	HttpRequest request;
	REQUIRE(words.size() >= 3);
	request.method = words[1];
	std::string url = words[2];
	bool tls = url.rfind("https://", 0) == 0;
	REQUIRE((tls || url.rfind("http://", 0) == 0));
	url.erase(0, tls ? 8 : 7);
	size_t slash = url.find('/');
	std::string authority = url.substr(0, slash);
	std::string target = slash == std::string::npos ? "" : url.substr(slash);
	request.port = tls ? 443 : 80;
	if (size_t colon = authority.rfind(':'); colon != std::string::npos) {
		request.port = static_cast<uint16_t>(std::stoi(authority.substr(colon + 1)));
		authority.erase(colon);
	}
	request.host = authority;
	if (size_t q = target.find('?'); q != std::string::npos) {
		request.query = target.substr(q + 1);
		target.erase(q);
	}
	request.path = target;
	for (size_t i = 3; i < words.size(); i++) {
		const std::string &w = words[i];
		if (w.rfind("h:", 0) == 0) {
			size_t eq = w.find('=');
			REQUIRE(eq != std::string::npos);
			request.headers.emplace_back(w.substr(2, eq - 2), w.substr(eq + 1));
		} else if (w.rfind("body=", 0) == 0) {
			request.body = w.substr(5);
		} else if (w == "truncated") {
			request.bodyTruncated = true;
		} else if (w == "pending") {
			request.bodyPending = true;
		} else {
			FAIL("unknown http word " << w);
		}
	}
	return request;
}

uint16_t parseQtype(const std::string &text)
{
	if (text == "A")
		return kDnsTypeA;
	if (text == "AAAA")
		return kDnsTypeAaaa;
	if (text == "TXT")
		return kDnsTypeTxt;
	if (text == "NULL")
		return kDnsTypeNull;
	if (text == "ANY")
		return kDnsTypeAny;
	FAIL("unknown qtype " << text);
	return 0;
}

Decision ask(const Engine &engine, const std::vector<std::string> &words)
{
	REQUIRE(!words.empty());
	const std::string &kind = words[0];
	if (kind == "http")
		return engine.evaluateHttp(parseHttp(words));
	if (kind == "tls") {
		REQUIRE(words.size() == 3);
		return engine.evaluateTls(words[1], static_cast<uint16_t>(std::stoi(words[2])));
	}
	if (kind == "tcp") {
		REQUIRE(words.size() >= 3);
		std::vector<std::string> names;
		for (size_t i = 3; i < words.size(); i++) {
			REQUIRE(words[i].rfind("name=", 0) == 0);
			names.push_back(words[i].substr(5));
		}
		return engine.evaluateTcp(words[1], static_cast<uint16_t>(std::stoi(words[2])), names);
	}
	if (kind == "dns") {
		REQUIRE(words.size() == 3);
		return engine.evaluateDns(words[1], parseQtype(words[2]));
	}
	FAIL("unknown case kind " << kind);
	return {};
}

void check(const Decision &d, const std::vector<std::string> &expect)
{
	REQUIRE(expect.size() >= 2);
	INFO("decision: " << toString(d.action) << " rule '" << d.rule << "' (" << d.ruleIndex << "): " << d.reason);
	CHECK(toString(d.action) == expect[0]);
	if (expect[1] == "-") {
		CHECK(d.rule.empty());
		CHECK(d.ruleIndex == -1);
	} else {
		CHECK(d.rule == expect[1]);
		CHECK(d.ruleIndex >= 0);
	}
	CHECK(!d.reason.empty());
	bool needsRequest = false, needsBody = false, passthrough = false, monitor = false;
	std::optional<Rate> rate;
	std::chrono::milliseconds duration{0};
	for (size_t i = 2; i < expect.size(); i++) {
		const std::string &flag = expect[i];
		if (flag == "needs-request") {
			needsRequest = true;
		} else if (flag == "needs-body") {
			needsBody = true;
		} else if (flag == "passthrough") {
			passthrough = true;
		} else if (flag == "monitor") {
			monitor = true;
		} else if (flag.rfind("rate=", 0) == 0) {
			Rate r;
			REQUIRE(parseRate(flag.substr(5), &r));
			rate = r;
		} else if (flag.rfind("duration=", 0) == 0) {
			REQUIRE(parseDuration(flag.substr(9), &duration));
		} else if (flag.rfind("reason=", 0) == 0) {
			std::string want = flag.substr(7);
			INFO("reason should contain: " << want);
			CHECK(d.reason.find(want) != std::string::npos);
		} else {
			FAIL("unknown flag " << flag);
		}
	}
	CHECK(d.needsRequest == needsRequest);
	CHECK(d.needsBody == needsBody);
	CHECK(d.passthrough == passthrough);
	CHECK(d.mode == (monitor ? Mode::Monitor : Mode::Enforce));
	CHECK(d.effective() == (monitor ? ActionKind::Allow : d.action));
	CHECK(d.duration == duration);
	CHECK(d.rate.has_value() == rate.has_value());
	if (d.rate && rate) {
		CHECK(d.rate->count == rate->count);
		CHECK(d.rate->period == rate->period);
	}
}

} // namespace

TEST_CASE("decision tables", "[policy][decisions]")
{
	std::vector<std::string> policies = listFiles(dataDir("valid"), ".yaml");
	REQUIRE(policies.size() >= 6);
	size_t cases = 0;
	for (const std::string &path : policies) {
		std::string casesPath = path.substr(0, path.size() - 5) + ".cases";
		DYNAMIC_SECTION(path)
		{
			LoadResult result = loadPolicyFile(path);
			std::string all;
			for (const Diagnostic &d : result.diagnostics)
				all += d.toString() + "\n";
			INFO(all);
			REQUIRE(result.diagnostics.empty());
			REQUIRE(result.engine);
			std::istringstream in(readFile(casesPath));
			std::string line;
			int lineNo = 0;
			size_t here = 0;
			while (std::getline(in, line)) {
				lineNo++;
				if (line.empty() || line[0] == '#')
					continue;
				INFO(casesPath << ":" << lineNo << ": " << line);
				size_t arrow = line.find(" -> ");
				REQUIRE(arrow != std::string::npos);
				Decision d = ask(*result.engine, splitWords(line.substr(0, arrow)));
				check(d, splitWords(line.substr(arrow + 4)));
				here++;
			}
			CHECK(here >= 3);
			cases += here;
		}
	}
	CHECK(cases > 0);
}
