// SPDX-License-Identifier: Apache-2.0
//
// The pure parts of `gvmctl launch`, apart for testing: its command line,
// the sandbox.launch parameters and the exit status it ends with.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/json_rpc.h"
#include "common/result.h"

namespace gvm::client {

extern const char kLaunchUsage[];

struct LaunchOptions {
	std::string policyFile;                 // --policy, as given
	std::string upstreamCaFile;             // --upstream-ca; empty: none
	std::optional<std::string> name;        // --name
	bool monitor = false;                   // --monitor
	bool cooperative = false;               // --cooperative
	bool networkOnly = false;               // --network-only
	std::string workspace;                  // --workspace, resolved; empty: cwd
	std::vector<std::string> command;       // CMD [ARGS...]
	bool help = false;                      // --help
	bool json = false;                      // --json
	std::string socket;                     // --socket
};

// Options end at "--" or at the first argument that is not an option;
// everything after is the command, passed on untouched. A usage error is
// an Error whose message says what is wrong (exit 2).
Result<LaunchOptions> parseLaunchArgs(const std::vector<std::string> &args);

// The sandbox.launch parameters (see the RPC contract): `policyText` and
// `upstreamCaPem` are the files' contents, read by gvmctl as the user; `env`
// is the whole environment ("K=V"); `cwd` is gvmctl's working directory.
rpc::Json buildLaunchParams(const LaunchOptions &options, const std::string &policyText,
			    const std::string &upstreamCaPem, const std::vector<std::string> &env,
			    const std::string &cwd, bool tty);

// gvmctl's own environment as "K=V" strings.
std::vector<std::string> currentEnvironment();

// The exit status for a sandbox.exited notification: its exit_code when it
// is one (0..255), else the status, else 128 + the signal; 1 when the
// notification says nothing usable.
int exitCodeFromExited(const rpc::Json &params);

} // namespace gvm::client
