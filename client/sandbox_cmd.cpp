// SPDX-License-Identifier: Apache-2.0
//
// gvmctl ps, stop, pending, approve and deny: one request each.
#include "client/sandbox_cmd.h"

#include <iostream>

#include "client/commands.h"
#include "client/common_flags.h"
#include "client/rpc_client.h"
#include "client/table.h"

namespace gvm::client {

namespace {

const char kPsUsage[] =
	"Usage: gvmctl ps [--all] [--json] [--socket PATH]\n"
	"\n"
	"List the running sandboxes you own (root: its own; with --all, every\n"
	"user's). --all also lists sandboxes that have ended and left workspace\n"
	"changes to review (STATE ended; see gvmctl diff). Columns:\n"
	"  ID         the sandbox id, for stop, tail and policy reload\n"
	"  NAME       the --name given at launch, or -\n"
	"  UID        the owner, who the command runs as\n"
	"  POLICY     the name of the policy in force\n"
	"  MODE       enforce or monitor; ',coop' marks a cooperative sandbox,\n"
	"             which a program ignoring the proxy variables can bypass\n"
	"  AGE        time since launch (s, m, h, d)\n"
	"  STATE      running, or worker-dead: the proxy is gone and the\n"
	"             sandbox's network with it\n"
	"  CONNS      connections open through the proxy now\n"
	"  DECISIONS  decisions recorded so far\n"
	"  PENDING    requests held for approval (see gvmctl pending)\n"
	"  MEM        memory the sandbox's cgroup uses now / its limit\n"
	"  PIDS       tasks in the sandbox's cgroup now / its limit\n"
	"  CPU        processor time the sandbox has used (s, m, h, d)\n"
	"             (MEM, PIDS and CPU are - for --network-only and cooperative\n"
	"             sandboxes, which have no cgroup of their own)\n"
	"  COMMAND    what was launched, cut to the terminal's width (40\n"
	"             characters when stdout is not a terminal)\n"
	"--json prints gvmd's answer, {\"sandboxes\":[...]}, uncut.\n";

const char kStopUsage[] =
	"Usage: gvmctl stop SANDBOX [--json] [--socket PATH]\n"
	"\n"
	"Stop a sandbox: SIGTERM to its command's process group now, SIGKILL\n"
	"5 seconds later if it is still running. 'gvmctl launch' then exits with\n"
	"the command's status. Exit 1 when there is no such sandbox of yours.\n";

const char kPendingUsage[] =
	"Usage: gvmctl pending [--json] [--socket PATH]\n"
	"\n"
	"List the requests that a rule with action {hold: DURATION} keeps waiting\n"
	"for a human: ID SANDBOX METHOD HOST PATH RULE EXPIRES-IN. Answer them with\n"
	"'gvmctl approve ID' or 'gvmctl deny ID'; one left unanswered is denied\n"
	"when it expires. --json prints gvmd's answer, {\"pending\":[...]}.\n";

const char kApproveUsage[] =
	"Usage: gvmctl approve REQUEST_ID [--json] [--socket PATH]\n"
	"\n"
	"Let a held request (see gvmctl pending) go on to its server.\n"
	"Exit 1 when no request of your sandboxes with that id is waiting.\n";

const char kDenyUsage[] =
	"Usage: gvmctl deny REQUEST_ID [--json] [--socket PATH]\n"
	"\n"
	"Refuse a held request (see gvmctl pending): the agent gets HTTP 403.\n"
	"Exit 1 when no request of your sandboxes with that id is waiting.\n";

// Exactly one positional argument, named `what` in the error.
int expectOne(const ParsedArgs &parsed, const char *command, const char *what, const char *usage)
{
	if (parsed.positional.size() == 1 && !parsed.positional[0].empty())
		return -1;
	if (parsed.positional.empty())
		std::cerr << "gvmctl " << command << ": expected " << what << "\n\n" << usage;
	else
		std::cerr << "gvmctl " << command << ": expected one " << what << ", got " << parsed.positional.size()
			  << " arguments\n\n" << usage;
	return kExitUsage;
}

int64_t integerOr(const rpc::Json &object, const char *key, int64_t fallback)
{
	auto it = object.find(key);
	return it != object.end() && it->is_number_integer() ? it->get<int64_t>() : fallback;
}

int runAnswer(const GlobalOptions &globalIn, const std::vector<std::string> &args, bool approve)
{
	const char *command = approve ? "approve" : "deny";
	const char *usage = approve ? kApproveUsage : kDenyUsage;
	GlobalOptions global = globalIn;
	ParsedArgs parsed;
	if (int r = parseCommandArgs(args, {}, usage, &global, &parsed); r >= 0)
		return r;
	if (int r = expectOne(parsed, command, "REQUEST_ID", usage); r >= 0)
		return r;
	const std::string &id = parsed.positional[0];
	auto result = callGvmd(global.socket, "hold.answer", {{"request_id", id}, {"approve", approve}},
			       "no pending request " + id);
	if (!result)
		return kExitFailure;
	if (global.json)
		std::cout << rpc::dumpJson(*result) << "\n";
	else
		std::cout << (approve ? "approved " : "denied ") << id << "\n";
	return kExitOk;
}

// The MEM, PIDS and CPU cells of a sandbox: "-" each when gvmd reported no
// cgroup usage for it, "used/limit" when it reported a limit.
struct Usage {
	std::string memory = "-";
	std::string pids = "-";
	std::string cpu = "-";
};

Usage usageCells(const rpc::Json &sandbox)
{
	Usage cells;
	auto iso = sandbox.find("isolation");
	if (iso == sandbox.end() || !iso->is_object())
		return cells;
	// -1: missing or not an integer (a count is never negative).
	if (const int64_t used = integerOr(*iso, "memory_bytes", -1); used >= 0) {
		cells.memory = formatBytes(static_cast<uint64_t>(used));
		if (const int64_t limit = integerOr(*iso, "memory_limit", -1); limit >= 0)
			cells.memory += "/" + formatBytes(static_cast<uint64_t>(limit));
	}
	if (const int64_t used = integerOr(*iso, "pids", -1); used >= 0) {
		cells.pids = std::to_string(used);
		if (const int64_t limit = integerOr(*iso, "pids_limit", -1); limit >= 0)
			cells.pids += "/" + std::to_string(limit);
	}
	if (const int64_t usec = integerOr(*iso, "cpu_usec", -1); usec >= 0)
		cells.cpu = formatAge(static_cast<double>(usec) / 1e6);
	return cells;
}

} // namespace

std::string formatSandboxTable(const rpc::Json &sandboxes, std::optional<size_t> terminalWidth)
{
	std::vector<std::vector<std::string>> rows;
	if (sandboxes.is_array()) {
		for (const rpc::Json &s : sandboxes) {
			if (!s.is_object())
				continue;
			std::string mode = cellText(s, "mode");
			if (s.value("cooperative", false))
				mode += ",coop";
			double age = 0;
			if (auto it = s.find("age_s"); it != s.end() && it->is_number())
				age = it->get<double>();
			std::vector<std::string> argv;
			if (auto it = s.find("command"); it != s.end() && it->is_array())
				for (const rpc::Json &a : *it)
					argv.push_back(a.is_string() ? a.get<std::string>() : rpc::dumpJson(a));
			const Usage usage = usageCells(s);
			rows.push_back({cellText(s, "id"), cellText(s, "name"), cellText(s, "uid"), cellText(s, "policy"),
					mode, formatAge(age), cellText(s, "state"), cellText(s, "connections_open"),
					cellText(s, "decisions"), cellText(s, "pending"), usage.memory, usage.pids, usage.cpu,
					terminalSafe(shellJoin(argv))});
		}
	}
	const std::vector<std::string> header = {"ID",    "NAME",      "UID",     "POLICY", "MODE", "AGE", "STATE",
						 "CONNS", "DECISIONS", "PENDING", "MEM",    "PIDS", "CPU", "COMMAND"};
	Table widths(header);
	for (const auto &row : rows)
		widths.add(row);
	size_t commandWidth = kCommandColumnWidth;
	if (terminalWidth) {
		const size_t before = widths.widthBeforeLast();
		commandWidth = *terminalWidth > before + kMinCommandColumnWidth ? *terminalWidth - before
										 : kMinCommandColumnWidth;
	}
	Table table(header);
	for (auto &row : rows) {
		row.back() = truncateText(row.back(), commandWidth);
		table.add(std::move(row));
	}
	return table.render();
}

std::string formatPendingTable(const rpc::Json &pending)
{
	Table table({"ID", "SANDBOX", "METHOD", "HOST", "PATH", "RULE", "EXPIRES-IN"});
	if (!pending.is_array())
		return table.render();
	for (const rpc::Json &p : pending) {
		if (!p.is_object())
			continue;
		std::string host = cellText(p, "host");
		// The usual web ports go without saying.
		const int64_t port = integerOr(p, "port", 0);
		if (port != 0 && port != 443 && port != 80)
			host += ":" + std::to_string(port);
		table.add({cellText(p, "request_id"), cellText(p, "sandbox"), cellText(p, "method"), host,
			   truncateText(cellText(p, "path"), kCommandColumnWidth), cellText(p, "rule"),
			   formatRemaining(integerOr(p, "remaining_ms", 0))});
	}
	return table.render();
}

int runPs(const GlobalOptions &globalIn, const std::vector<std::string> &args)
{
	GlobalOptions global = globalIn;
	ParsedArgs parsed;
	if (int r = parseCommandArgs(args, {{"--all", false, false}}, kPsUsage, &global, &parsed); r >= 0)
		return r;
	if (!parsed.positional.empty()) {
		std::cerr << "gvmctl ps: unexpected argument '" << parsed.positional[0] << "'\n\n" << kPsUsage;
		return kExitUsage;
	}
	rpc::Json params = rpc::Json::object();
	if (parsed.has("--all"))
		params["all"] = true;
	auto result = callGvmd(global.socket, "sandbox.list", params);
	if (!result)
		return kExitFailure;
	if (!result->is_object() || !result->contains("sandboxes") || !(*result)["sandboxes"].is_array()) {
		std::cerr << "gvmctl: malformed answer from gvmd\n";
		return kExitFailure;
	}
	if (global.json)
		std::cout << rpc::dumpJson(*result) << "\n";
	else
		std::cout << formatSandboxTable((*result)["sandboxes"], stdoutColumns());
	return kExitOk;
}

int runStop(const GlobalOptions &globalIn, const std::vector<std::string> &args)
{
	GlobalOptions global = globalIn;
	ParsedArgs parsed;
	if (int r = parseCommandArgs(args, {}, kStopUsage, &global, &parsed); r >= 0)
		return r;
	if (int r = expectOne(parsed, "stop", "SANDBOX", kStopUsage); r >= 0)
		return r;
	const std::string &id = parsed.positional[0];
	auto result = callGvmd(global.socket, "sandbox.stop", {{"sandbox", id}}, "no sandbox " + id);
	if (!result)
		return kExitFailure;
	if (global.json)
		std::cout << rpc::dumpJson(*result) << "\n";
	else
		std::cout << "stopping sandbox " << id << ": SIGTERM sent, SIGKILL follows in 5 s if it still runs\n";
	return kExitOk;
}

int runPending(const GlobalOptions &globalIn, const std::vector<std::string> &args)
{
	GlobalOptions global = globalIn;
	ParsedArgs parsed;
	if (int r = parseCommandArgs(args, {}, kPendingUsage, &global, &parsed); r >= 0)
		return r;
	if (!parsed.positional.empty()) {
		std::cerr << "gvmctl pending: unexpected argument '" << parsed.positional[0] << "'\n\n"
			  << kPendingUsage;
		return kExitUsage;
	}
	auto result = callGvmd(global.socket, "hold.list", rpc::Json::object());
	if (!result)
		return kExitFailure;
	if (!result->is_object() || !result->contains("pending") || !(*result)["pending"].is_array()) {
		std::cerr << "gvmctl: malformed answer from gvmd\n";
		return kExitFailure;
	}
	if (global.json)
		std::cout << rpc::dumpJson(*result) << "\n";
	else
		std::cout << formatPendingTable((*result)["pending"]);
	return kExitOk;
}

int runApprove(const GlobalOptions &global, const std::vector<std::string> &args)
{
	return runAnswer(global, args, true);
}

int runDeny(const GlobalOptions &global, const std::vector<std::string> &args)
{
	return runAnswer(global, args, false);
}

} // namespace gvm::client
