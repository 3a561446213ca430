// SPDX-License-Identifier: Apache-2.0
#include <iostream>

#include "client/args.h"
#include "client/commands.h"
#include "common/log.h"
#include "gvm_config.h"

namespace gvm::client {

namespace {

using CommandFn = int (*)(const GlobalOptions &, const std::vector<std::string> &);

CommandFn findCommand(const std::string &name)
{
	static const std::pair<const char *, CommandFn> kCommands[] = {
		{"launch", runLaunch},   {"ps", runPs},           {"stop", runStop},   {"tail", runTail},
		{"pending", runPending}, {"approve", runApprove}, {"deny", runDeny},   {"status", runStatus},
		{"policy", runPolicy},   {"audit", runAudit},         {"diff", runDiff},   {"apply", runApply},
		{"discard", runDiscard},
	};
	for (const auto &[commandName, fn] : kCommands)
		if (name == commandName)
			return fn;
	return nullptr;
}

const char kUsage[] =
	"Usage: gvmctl [--socket PATH] [--json] COMMAND [ARGS...]\n"
	"\n"
	"Control gvm, the governance runtime for AI agents.\n"
	"\n"
	"Commands:\n"
	"  launch --policy FILE [--monitor] [--name NAME] [--workspace DIR]\n"
	"         [--network-only] [--cooperative] [--upstream-ca FILE] -- CMD [ARGS...]\n"
	"                                       run CMD in a sandbox governed by the policy;\n"
	"                                       exits with CMD's status\n"
	"  ps [--all]                           list running sandboxes (--all: also\n"
	"                                       ended ones with workspace changes)\n"
	"  diff SANDBOX [--patch]               what the agent changed in its workspace\n"
	"  apply SANDBOX [PATH...]              copy those changes into the real workspace\n"
	"  discard SANDBOX                      throw those changes away\n"
	"  stop SANDBOX                         stop a sandbox (SIGTERM, then SIGKILL)\n"
	"  tail [SANDBOX]                       follow decisions live, until Ctrl-C\n"
	"  pending                              list requests held for approval\n"
	"  approve REQUEST_ID                   let a held request through\n"
	"  deny REQUEST_ID                      refuse a held request\n"
	"  status                               show the daemon's state\n"
	"  policy check FILE...                 validate policy files (exit 0 valid, 1 invalid)\n"
	"  policy test FILE METHOD URL [--header K:V]... [--body TEXT|@FILE]\n"
	"                                       decide one request offline, without a daemon\n"
	"  policy reload SANDBOX FILE           replace a running sandbox's policy\n"
	"  audit verify [FILE]                  check the audit log's hash chain (exit 0 intact, 1 not)\n"
	"  audit show [--sandbox ID] [--limit N]\n"
	"                                       the latest decisions recorded by gvmd\n"
	"  help [COMMAND]                       show help for a command\n"
	"\n"
	"Options (every command):\n"
	"  --socket PATH   gvmd's control socket (default: $GVM_SOCKET, else " GVM_DEFAULT_SOCKET ")\n"
	"  --json          machine-readable output on stdout (launch: on stderr)\n"
	"  --help          show help\n"
	"  --version       show the version\n"
	"\n"
	"Errors go to stderr. Exit status: 0 success, 1 failure, 2 usage error;\n"
	"launch exits with the command's own status (see 'gvmctl help launch').\n";

} // namespace

int run(const std::vector<std::string> &args)
{
	GlobalOptions global;
	// Leading global options, before the command name.
	size_t i = 0;
	for (; i < args.size(); ++i) {
		const std::string &a = args[i];
		if (a == "--json") {
			global.json = true;
		} else if (a == "--socket" && i + 1 < args.size()) {
			global.socket = args[++i];
		} else if (a.rfind("--socket=", 0) == 0) {
			global.socket = a.substr(9);
		} else if (a == "--help" || a == "-h") {
			std::cout << kUsage;
			return kExitOk;
		} else if (a == "--version") {
			std::cout << "gvmctl " << GVM_VERSION << "\n";
			return kExitOk;
		} else if (a.rfind("-", 0) == 0) {
			std::cerr << "gvmctl: unknown option '" << a << "'\n\n" << kUsage;
			return kExitUsage;
		} else {
			break;
		}
	}
	if (i == args.size()) {
		std::cerr << kUsage;
		return kExitUsage;
	}
	const std::string command = args[i];
	std::vector<std::string> rest(args.begin() + static_cast<long>(i) + 1, args.end());

	// Libraries log nothing above Debug; gvmctl itself reports on stderr.
	log::setThreshold(log::Level::Warning);

	if (CommandFn fn = findCommand(command))
		return fn(global, rest);
	if (command == "help") {
		if (rest.empty()) {
			std::cout << kUsage;
			return kExitOk;
		}
		std::vector<std::string> sub(rest.begin() + 1, rest.end());
		sub.push_back("--help");
		if (CommandFn fn = findCommand(rest[0]))
			return fn(global, sub);
		std::cerr << "gvmctl: unknown command '" << rest[0] << "'\n";
		return kExitUsage;
	}
	std::cerr << "gvmctl: unknown command '" << command << "'\n\n" << kUsage;
	return kExitUsage;
}

} // namespace gvm::client
