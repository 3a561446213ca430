// SPDX-License-Identifier: Apache-2.0
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>

#include "client/commands.h"
#include "client/common_flags.h"
#include "client/decision_format.h"
#include "client/rpc_client.h"
#include "common/audit_chain.h"
#include "common/json_rpc.h"
#include "gvm_config.h"

namespace gvm::client {

namespace {

const char kAuditUsage[] =
	"Usage: gvmctl audit verify [FILE] [--json]\n"
	"       gvmctl audit show [--sandbox ID] [--limit N] [--json] [--socket PATH]\n"
	"\n"
	"verify  Check the audit log's hash chain and report the first broken link:\n"
	"        an edited, deleted, reordered or inserted record, or a log cut\n"
	"        short during a write. FILE defaults to gvmd's log,\n"
	"        " GVM_DEFAULT_STATE_DIR "/audit/audit.jsonl (readable by root).\n"
	"        Exit 0 when the whole chain is intact, 1 otherwise.\n"
	"show    Ask gvmd for the latest decisions (default 100, at most 10000),\n"
	"        oldest first: your own sandboxes' only, all of them for root.\n"
	"        --json prints one audit record per line.\n";

int runVerify(const GlobalOptions &globalIn, const std::vector<std::string> &args)
{
	GlobalOptions global = globalIn;
	ParsedArgs parsed;
	if (int r = parseCommandArgs(args, {}, kAuditUsage, &global, &parsed); r >= 0)
		return r;
	if (parsed.positional.size() > 1) {
		std::cerr << "gvmctl audit verify: expected at most one FILE\n\n" << kAuditUsage;
		return kExitUsage;
	}
	const std::string file =
		parsed.positional.empty() ? std::string(GVM_DEFAULT_STATE_DIR "/audit/audit.jsonl") : parsed.positional[0];
	std::ifstream in(file, std::ios::binary);
	if (!in) {
		std::cerr << "gvmctl audit verify: cannot read " << file << ": " << std::strerror(errno) << "\n";
		return kExitFailure;
	}
	AuditVerifyReport report = verifyAuditLog(in);
	const bool intact = report.status == AuditVerifyReport::Status::Intact;

	if (global.json) {
		rpc::Json out = {
			{"file", file},
			{"status", toString(report.status)},
			{"records", report.records},
			{"last_seq", report.lastSeq},
			{"last_hash", report.lastHash},
		};
		if (!intact) {
			out["line"] = report.line;
			out["problem"] = report.problem;
		}
		std::cout << rpc::dumpJson(out) << "\n";
		return intact ? kExitOk : kExitFailure;
	}
	if (intact) {
		std::cout << file << ": intact, " << report.records << " records, last hash " << report.lastHash << "\n";
		return kExitOk;
	}
	std::cerr << file << ":" << report.line << ": " << toString(report.status) << ": " << report.problem << "\n";
	std::cerr << file << ": " << report.records << " records intact before line " << report.line << "\n";
	return kExitFailure;
}

int runShow(const GlobalOptions &globalIn, const std::vector<std::string> &args)
{
	GlobalOptions global = globalIn;
	ParsedArgs parsed;
	if (int r = parseCommandArgs(args, {{"--sandbox", true, false}, {"--limit", true, false}}, kAuditUsage, &global,
				     &parsed);
	    r >= 0)
		return r;
	if (!parsed.positional.empty()) {
		std::cerr << "gvmctl audit show: unexpected argument '" << parsed.positional[0] << "'\n\n" << kAuditUsage;
		return kExitUsage;
	}
	rpc::Json params = rpc::Json::object();
	if (parsed.has("--sandbox"))
		params["sandbox"] = parsed.value("--sandbox");
	if (parsed.has("--limit")) {
		const std::string text = parsed.value("--limit");
		if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos) {
			std::cerr << "gvmctl audit show: --limit expects a positive number, got '" << text << "'\n";
			return kExitUsage;
		}
		params["limit"] = std::stoll(text);
	}
	auto client = RpcClient::connect(resolveSocketPath(global.socket));
	if (!client) {
		std::cerr << "gvmctl: " << client.error().message() << "\n";
		return kExitFailure;
	}
	auto result = client->call("audit.show", params);
	if (!result) {
		std::cerr << "gvmctl: " << result.error().message() << "\n";
		return kExitFailure;
	}
	if (!result->contains("records") || !(*result)["records"].is_array()) {
		std::cerr << "gvmctl: malformed answer from gvmd\n";
		return kExitFailure;
	}
	for (const rpc::Json &record : (*result)["records"])
		std::cout << (global.json ? rpc::dumpJson(record) : formatDecision(record)) << "\n";
	return kExitOk;
}

} // namespace

int runAudit(const GlobalOptions &global, const std::vector<std::string> &args)
{
	if (args.empty()) {
		std::cerr << kAuditUsage;
		return kExitUsage;
	}
	std::vector<std::string> rest(args.begin() + 1, args.end());
	if (args[0] == "verify")
		return runVerify(global, rest);
	if (args[0] == "show")
		return runShow(global, rest);
	if (args[0] == "--help" || args[0] == "-h") {
		std::cout << kAuditUsage;
		return kExitOk;
	}
	std::cerr << "gvmctl audit: unknown subcommand '" << args[0] << "'\n\n" << kAuditUsage;
	return kExitUsage;
}

} // namespace gvm::client
