// SPDX-License-Identifier: Apache-2.0
#include <fstream>
#include <iostream>
#include <sstream>

#include "client/commands.h"
#include "client/common_flags.h"
#include "client/policy_file.h"
#include "client/rpc_client.h"
#include "common/json_rpc.h"
#include "common/text.h"
#include "common/url.h"
#include "policy/policy.h"

namespace gvm::client {

namespace {

const char kPolicyUsage[] =
	"Usage: gvmctl policy check FILE... [--json]\n"
	"       gvmctl policy test FILE METHOD URL [--header K:V]... [--body TEXT|@FILE] [--json]\n"
	"       gvmctl policy reload SANDBOX FILE [--json] [--socket PATH]\n"
	"\n"
	"check  Validate policy files. Every error is listed as FILE:LINE:COLUMN: message.\n"
	"       Exit 0 when every file is valid, 1 otherwise.\n"
	"test   Decide one HTTP request against a policy, offline (no daemon needed), and\n"
	"       print the action, the rule that decided and why. --body @FILE reads the\n"
	"       body from FILE. Exit 0 when the policy loaded, whatever the decision.\n"
	"reload Replace a running sandbox's policy with FILE, atomically: requests\n"
	"       already in flight finish under the policy they started with, every\n"
	"       later one is decided by the new one. gvmctl reads and checks FILE\n"
	"       first; a broken policy is reported as FILE:LINE:COLUMN: message and\n"
	"       the sandbox keeps its policy. Exit 0 when the new policy is in force.\n";

const char kCheckUsage[] = "Usage: gvmctl policy check FILE... [--json]\n";
const char kTestUsage[] =
	"Usage: gvmctl policy test FILE METHOD URL [--header K:V]... [--body TEXT|@FILE] [--json]\n";
const char kReloadUsage[] =
	"Usage: gvmctl policy reload SANDBOX FILE [--json] [--socket PATH]\n"
	"\n"
	"Replace sandbox SANDBOX's policy with FILE, atomically: requests already in\n"
	"flight finish under the policy they started with, every later one is\n"
	"decided by the new one. gvmctl reads and checks FILE first; a broken\n"
	"policy is reported as FILE:LINE:COLUMN: message and the sandbox keeps its\n"
	"policy (exit 1). --json prints gvmd's answer: sandbox, policy, sha256,\n"
	"rules, mode.\n";

rpc::Json diagnosticJson(const policy::Diagnostic &d)
{
	return {{"file", d.file}, {"line", d.line}, {"column", d.column}, {"message", d.message}};
}

void printDiagnostics(const std::vector<policy::Diagnostic> &diagnostics)
{
	for (const auto &d : diagnostics)
		std::cerr << d.toString() << "\n";
}

int runCheck(const GlobalOptions &globalIn, const std::vector<std::string> &args)
{
	GlobalOptions global = globalIn;
	ParsedArgs parsed;
	if (int r = parseCommandArgs(args, {}, kCheckUsage, &global, &parsed); r >= 0)
		return r;
	if (parsed.positional.empty()) {
		std::cerr << "gvmctl policy check: no policy file given\n\n" << kCheckUsage;
		return kExitUsage;
	}
	bool allValid = true;
	rpc::Json files = rpc::Json::array();
	for (const std::string &file : parsed.positional) {
		policy::LoadResult loaded = policy::loadPolicyFile(file);
		const bool ok = loaded.diagnostics.empty() && loaded.engine;
		allValid = allValid && ok;
		if (global.json) {
			rpc::Json entry = {{"file", file}, {"valid", ok}};
			rpc::Json errors = rpc::Json::array();
			for (const auto &d : loaded.diagnostics)
				errors.push_back(diagnosticJson(d));
			entry["errors"] = errors;
			if (ok) {
				entry["name"] = loaded.engine->name();
				entry["rules"] = loaded.engine->ruleCount();
				entry["mode"] = policy::toString(loaded.engine->mode());
				entry["sha256"] = loaded.engine->sha256();
			}
			files.push_back(entry);
			continue;
		}
		if (ok) {
			std::cout << file << ": ok (policy '" << loaded.engine->name() << "', "
				  << loaded.engine->ruleCount() << " rules, " << policy::toString(loaded.engine->mode())
				  << " mode)\n";
		} else {
			printDiagnostics(loaded.diagnostics);
			std::cerr << file << ": " << loaded.diagnostics.size()
				  << (loaded.diagnostics.size() == 1 ? " error\n" : " errors\n");
		}
	}
	if (global.json)
		std::cout << rpc::dumpJson({{"valid", allValid}, {"files", files}}) << "\n";
	return allValid ? kExitOk : kExitFailure;
}

int runTest(const GlobalOptions &globalIn, const std::vector<std::string> &args)
{
	GlobalOptions global = globalIn;
	ParsedArgs parsed;
	if (int r = parseCommandArgs(args, {{"--header", true, true}, {"--body", true, false}}, kTestUsage, &global,
				     &parsed);
	    r >= 0)
		return r;
	if (parsed.positional.size() != 3) {
		std::cerr << "gvmctl policy test: expected FILE METHOD URL\n\n" << kTestUsage;
		return kExitUsage;
	}
	const std::string &file = parsed.positional[0];

	policy::HttpRequest request;
	request.method = asciiUpper(parsed.positional[1]);
	auto url = parseUrl(parsed.positional[2]);
	if (!url) {
		std::cerr << "gvmctl policy test: " << url.error().message() << "\n";
		return kExitUsage;
	}
	request.host = url->host;
	request.port = url->port;
	request.path = url->path;
	request.query = url->query;

	for (const std::string &h : parsed.values("--header")) {
		auto colon = h.find(':');
		if (colon == std::string::npos || colon == 0) {
			std::cerr << "gvmctl policy test: --header expects NAME:VALUE, got '" << h << "'\n";
			return kExitUsage;
		}
		std::string value = h.substr(colon + 1);
		size_t start = value.find_first_not_of(" \t");
		value = start == std::string::npos ? std::string() : value.substr(start);
		request.headers.emplace_back(h.substr(0, colon), value);
	}
	if (parsed.has("--body")) {
		std::string body = parsed.value("--body");
		if (!body.empty() && body[0] == '@') {
			std::ifstream in(body.substr(1), std::ios::binary);
			if (!in) {
				std::cerr << "gvmctl policy test: cannot read body file '" << body.substr(1) << "'\n";
				return kExitFailure;
			}
			std::ostringstream ss;
			ss << in.rdbuf();
			body = ss.str();
		}
		if (body.size() > policy::kBodyInspectionWindow) {
			body.resize(policy::kBodyInspectionWindow);
			request.bodyTruncated = true;
		}
		request.body = std::move(body);
	}

	policy::LoadResult loaded = policy::loadPolicyFile(file);
	if (!loaded.diagnostics.empty() || !loaded.engine) {
		printDiagnostics(loaded.diagnostics);
		return kExitFailure;
	}
	const policy::Decision d = loaded.engine->evaluateHttp(request);

	if (global.json) {
		rpc::Json out = {
			{"action", policy::toString(d.action)},
			{"effective", policy::toString(d.effective())},
			{"mode", policy::toString(d.mode)},
			{"rule", d.rule.empty() ? rpc::Json(nullptr) : rpc::Json(d.rule)},
			{"reason", d.reason},
			{"policy", loaded.engine->name()},
			{"policy_sha256", loaded.engine->sha256()},
			{"request", {{"method", request.method}, {"host", request.host}, {"port", request.port},
				     {"path", request.path}, {"query", request.query}}},
		};
		if (d.action == policy::ActionKind::Delay || d.action == policy::ActionKind::Hold)
			out["duration_ms"] = d.duration.count();
		if (d.rate)
			out["rate"] = {{"count", d.rate->count}, {"period_ms", d.rate->period.count()}};
		std::cout << rpc::dumpJson(out) << "\n";
		return kExitOk;
	}

	std::cout << policy::toString(d.action);
	if (d.action == policy::ActionKind::Delay || d.action == policy::ActionKind::Hold)
		std::cout << " " << policy::formatDuration(d.duration);
	if (d.mode == policy::Mode::Monitor && d.effective() != d.action)
		std::cout << " (monitor mode: recorded, then allowed)";
	std::cout << "\n  rule:   " << (d.rule.empty() ? "(default)" : d.rule) << "\n";
	if (d.rate)
		std::cout << "  rate:   " << d.rate->count << " per " << policy::formatDuration(d.rate->period) << "\n";
	std::cout << "  reason: " << d.reason << "\n";
	return kExitOk;
}

int runReload(const GlobalOptions &globalIn, const std::vector<std::string> &args)
{
	GlobalOptions global = globalIn;
	ParsedArgs parsed;
	if (int r = parseCommandArgs(args, {}, kReloadUsage, &global, &parsed); r >= 0)
		return r;
	if (parsed.positional.size() != 2) {
		std::cerr << "gvmctl policy reload: expected SANDBOX FILE\n\n" << kReloadUsage;
		return kExitUsage;
	}
	const std::string &sandbox = parsed.positional[0];
	std::optional<LocalPolicy> local = loadLocalPolicy(parsed.positional[1], std::cerr);
	if (!local)
		return kExitFailure;
	auto result = callGvmd(global.socket, "policy.reload",
			       {{"sandbox", sandbox}, {"policy_text", local->text}, {"policy_file", local->path}},
			       "no sandbox " + sandbox);
	if (!result)
		return kExitFailure;
	if (global.json) {
		std::cout << rpc::dumpJson(*result) << "\n";
		return kExitOk;
	}
	auto text = [&](const char *key, const std::string &fallback) {
		auto it = result->find(key);
		return it != result->end() && it->is_string() ? it->get<std::string>() : fallback;
	};
	const std::string sha = text("sha256", local->engine->sha256());
	size_t rules = local->engine->ruleCount();
	if (auto it = result->find("rules"); it != result->end() && it->is_number_integer() && it->get<int64_t>() >= 0)
		rules = static_cast<size_t>(it->get<int64_t>());
	std::cout << "sandbox " << text("sandbox", sandbox) << " now enforces " << text("policy", local->engine->name())
		  << " (sha256 " << sha.substr(0, 12) << "…, " << rules << (rules == 1 ? " rule" : " rules");
	if (text("mode", "") == "monitor")
		std::cout << ", monitor mode: recorded, not enforced";
	std::cout << ")\n";
	return kExitOk;
}

} // namespace

int runPolicy(const GlobalOptions &global, const std::vector<std::string> &args)
{
	if (args.empty()) {
		std::cerr << kPolicyUsage;
		return kExitUsage;
	}
	std::vector<std::string> rest(args.begin() + 1, args.end());
	if (args[0] == "check")
		return runCheck(global, rest);
	if (args[0] == "test")
		return runTest(global, rest);
	if (args[0] == "reload")
		return runReload(global, rest);
	if (args[0] == "--help" || args[0] == "-h") {
		std::cout << kPolicyUsage;
		return kExitOk;
	}
	std::cerr << "gvmctl policy: unknown subcommand '" << args[0] << "'\n\n" << kPolicyUsage;
	return kExitUsage;
}

} // namespace gvm::client
