// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/result.h"

namespace gvm::client {

// One flag a command accepts.
struct FlagSpec {
	std::string name;       // "--header"
	bool takesValue = false;
	bool repeatable = false;
};

// A command line split into flags and positional arguments. Flags may come
// anywhere; "--" ends them. Unknown flags are errors.
struct ParsedArgs {
	std::vector<std::string> positional;
	std::map<std::string, std::vector<std::string>> flags;

	bool has(const std::string &name) const { return flags.count(name) > 0; }
	std::string value(const std::string &name) const
	{
		auto it = flags.find(name);
		return it == flags.end() || it->second.empty() ? std::string() : it->second.back();
	}
	const std::vector<std::string> &values(const std::string &name) const
	{
		static const std::vector<std::string> kNone;
		auto it = flags.find(name);
		return it == flags.end() ? kNone : it->second;
	}
};

Result<ParsedArgs> parseArgs(const std::vector<std::string> &args, const std::vector<FlagSpec> &specs);

} // namespace gvm::client
