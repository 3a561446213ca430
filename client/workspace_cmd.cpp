// SPDX-License-Identifier: Apache-2.0
//
// gvmctl diff, apply and discard: reviewing what an agent changed in its
// overlay workspace.
#include <iostream>

#include "client/commands.h"
#include "client/common_flags.h"
#include "client/rpc_client.h"
#include "client/table.h"

namespace gvm::client {

namespace {

const char kDiffUsage[] =
	"Usage: gvmctl diff SANDBOX [--patch] [--json] [--socket PATH]\n"
	"\n"
	"List what the sandbox's agent created, modified and deleted in its\n"
	"workspace. In sandbox mode the workspace (the launch's working directory\n"
	"or --workspace DIR) is an overlay: the agent's writes wait in gvmd's state\n"
	"directory, and the real files change only with 'gvmctl apply'. Works while\n"
	"the sandbox runs and after it has ended (see 'gvmctl ps --all').\n"
	"  --patch   also print a unified diff of every text change\n"
	"  --json    print gvmd's answer: {\"changes\":[{path,kind,type,target?}],\n"
	"            \"patch\"?:...}\n"
	"Exit 1 when there is no such sandbox of yours with changes.\n";

const char kApplyUsage[] =
	"Usage: gvmctl apply SANDBOX [PATH...] [--json] [--socket PATH]\n"
	"\n"
	"Copy the agent's changes into the real workspace: all of them, or those\n"
	"at or below each PATH (relative to the workspace). The copy runs as the\n"
	"sandbox's owner, never as root, and never follows a symlink: a symlink\n"
	"the agent made that points outside the workspace is refused, and so is a\n"
	"change whose directory in the real workspace is a symlink. Applied\n"
	"changes leave the review; refused ones stay. The sandbox must have ended.\n"
	"Exit 1 when any change was refused or nothing could be applied.\n";

const char kDiscardUsage[] =
	"Usage: gvmctl discard SANDBOX [--json] [--socket PATH]\n"
	"\n"
	"Throw away every change the sandbox's agent made to its workspace. The\n"
	"sandbox must have ended.\n";

int expectSandbox(const ParsedArgs &parsed, const char *command, const char *usage, bool morePaths)
{
	if (!parsed.positional.empty() && !parsed.positional[0].empty() && (morePaths || parsed.positional.size() == 1))
		return -1;
	std::cerr << "gvmctl " << command << ": expected "
		  << (parsed.positional.empty() ? "SANDBOX" : "one SANDBOX") << "\n\n"
		  << usage;
	return kExitUsage;
}

std::string symbol(const std::string &kind)
{
	if (kind == "created")
		return "A";
	if (kind == "deleted")
		return "D";
	return "M";
}

} // namespace

int runDiff(const GlobalOptions &globalIn, const std::vector<std::string> &args)
{
	GlobalOptions global = globalIn;
	ParsedArgs parsed;
	if (int r = parseCommandArgs(args, {{"--patch", false, false}}, kDiffUsage, &global, &parsed); r >= 0)
		return r;
	if (int r = expectSandbox(parsed, "diff", kDiffUsage, false); r >= 0)
		return r;
	const std::string &id = parsed.positional[0];
	auto result = callGvmd(global.socket, "workspace.diff", {{"sandbox", id}, {"patch", parsed.has("--patch")}},
			       "sandbox " + id + " has no workspace changes of yours");
	if (!result)
		return kExitFailure;
	if (global.json) {
		std::cout << rpc::dumpJson(*result) << "\n";
		return kExitOk;
	}
	const rpc::Json &changes = (*result)["changes"];
	if (!changes.is_array() || changes.empty()) {
		std::cout << "no changes in " << result->value("workspace", "the workspace") << "\n";
		return kExitOk;
	}
	for (const rpc::Json &c : changes) {
		std::string line = symbol(c.value("kind", "")) + " " + c.value("path", "");
		if (c.value("type", "") == "directory")
			line += "/";
		if (c.contains("target"))
			line += " -> " + c.value("target", "");
		std::cout << terminalSafe(line) << "\n";
	}
	if (parsed.has("--patch") && result->contains("patch"))
		std::cout << "\n" << (*result)["patch"].get<std::string>();
	return kExitOk;
}

int runApply(const GlobalOptions &globalIn, const std::vector<std::string> &args)
{
	GlobalOptions global = globalIn;
	ParsedArgs parsed;
	if (int r = parseCommandArgs(args, {}, kApplyUsage, &global, &parsed); r >= 0)
		return r;
	if (int r = expectSandbox(parsed, "apply", kApplyUsage, true); r >= 0)
		return r;
	const std::string &id = parsed.positional[0];
	std::vector<std::string> paths(parsed.positional.begin() + 1, parsed.positional.end());
	auto result = callGvmd(global.socket, "workspace.apply", {{"sandbox", id}, {"paths", paths}},
			       "sandbox " + id + " has no workspace changes of yours");
	if (!result)
		return kExitFailure;
	const rpc::Json &applied = (*result)["applied"];
	const rpc::Json &refused = (*result)["refused"];
	if (global.json) {
		std::cout << rpc::dumpJson(*result) << "\n";
	} else {
		for (const rpc::Json &p : applied)
			std::cout << "applied " << terminalSafe(p.get<std::string>()) << "\n";
		for (const rpc::Json &r : refused)
			std::cerr << "refused " << terminalSafe(r.value("path", "")) << ": "
				  << terminalSafe(r.value("reason", "")) << "\n";
	}
	return refused.is_array() && refused.empty() ? kExitOk : kExitFailure;
}

int runDiscard(const GlobalOptions &globalIn, const std::vector<std::string> &args)
{
	GlobalOptions global = globalIn;
	ParsedArgs parsed;
	if (int r = parseCommandArgs(args, {}, kDiscardUsage, &global, &parsed); r >= 0)
		return r;
	if (int r = expectSandbox(parsed, "discard", kDiscardUsage, false); r >= 0)
		return r;
	const std::string &id = parsed.positional[0];
	auto result = callGvmd(global.socket, "workspace.discard", {{"sandbox", id}},
			       "sandbox " + id + " has no workspace changes of yours");
	if (!result)
		return kExitFailure;
	if (global.json)
		std::cout << rpc::dumpJson(*result) << "\n";
	else
		std::cout << "discarded the workspace changes of sandbox " << id << "\n";
	return kExitOk;
}

} // namespace gvm::client
