// SPDX-License-Identifier: Apache-2.0
#include "client/args.h"

namespace gvm::client {

Result<ParsedArgs> parseArgs(const std::vector<std::string> &args, const std::vector<FlagSpec> &specs)
{
	ParsedArgs out;
	bool flagsDone = false;
	for (size_t i = 0; i < args.size(); ++i) {
		const std::string &arg = args[i];
		if (flagsDone || arg.size() < 2 || arg[0] != '-') {
			out.positional.push_back(arg);
			continue;
		}
		if (arg == "--") {
			flagsDone = true;
			continue;
		}
		std::string name = arg;
		std::string value;
		bool inlineValue = false;
		if (auto eq = arg.find('='); eq != std::string::npos && arg.rfind("--", 0) == 0) {
			name = arg.substr(0, eq);
			value = arg.substr(eq + 1);
			inlineValue = true;
		}
		const FlagSpec *spec = nullptr;
		for (const FlagSpec &s : specs)
			if (s.name == name)
				spec = &s;
		if (!spec)
			return fail(Error(ErrorDomain::Internal, 0, "unknown option '" + name + "'"));
		if (!spec->takesValue) {
			if (inlineValue)
				return fail(Error(ErrorDomain::Internal, 0, "option " + name + " takes no value"));
			out.flags[name].push_back("");
			continue;
		}
		if (!inlineValue) {
			if (i + 1 >= args.size())
				return fail(Error(ErrorDomain::Internal, 0, "option " + name + " needs a value"));
			value = args[++i];
		}
		auto &slot = out.flags[name];
		if (!slot.empty() && !spec->repeatable)
			return fail(Error(ErrorDomain::Internal, 0, "option " + name + " given twice"));
		slot.push_back(value);
	}
	return out;
}

} // namespace gvm::client
