// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <iostream>
#include <string>
#include <vector>

#include "client/args.h"
#include "client/commands.h"

namespace gvm::client {

// Parses a command's arguments with its own flags plus the global ones
// (--json, --socket, --help), which may also follow the command name.
// Returns an exit status to stop with, or -1 to go on.
inline int parseCommandArgs(const std::vector<std::string> &args, std::vector<FlagSpec> specs,
			    const char *usage, GlobalOptions *global, ParsedArgs *out)
{
	specs.push_back({"--json", false, false});
	specs.push_back({"--socket", true, false});
	specs.push_back({"--help", false, false});
	auto parsed = parseArgs(args, specs);
	if (!parsed) {
		std::cerr << "gvmctl: " << parsed.error().message() << "\n\n" << usage;
		return kExitUsage;
	}
	if (parsed->has("--help")) {
		std::cout << usage;
		return kExitOk;
	}
	if (parsed->has("--json"))
		global->json = true;
	if (parsed->has("--socket"))
		global->socket = parsed->value("--socket");
	*out = std::move(*parsed);
	return -1;
}

} // namespace gvm::client
