// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <vector>

namespace gvm::client {

// Exit statuses of gvmctl.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Options every command takes.
struct GlobalOptions {
	std::string socket; // --socket
	bool json = false;  // --json
};

int runStatus(const GlobalOptions &global, const std::vector<std::string> &args);
int runPolicy(const GlobalOptions &global, const std::vector<std::string> &args);
int runAudit(const GlobalOptions &global, const std::vector<std::string> &args);
int runLaunch(const GlobalOptions &global, const std::vector<std::string> &args);
int runPs(const GlobalOptions &global, const std::vector<std::string> &args);
int runStop(const GlobalOptions &global, const std::vector<std::string> &args);
int runTail(const GlobalOptions &global, const std::vector<std::string> &args);
int runPending(const GlobalOptions &global, const std::vector<std::string> &args);
int runApprove(const GlobalOptions &global, const std::vector<std::string> &args);
int runDeny(const GlobalOptions &global, const std::vector<std::string> &args);
int runDiff(const GlobalOptions &global, const std::vector<std::string> &args);
int runApply(const GlobalOptions &global, const std::vector<std::string> &args);
int runDiscard(const GlobalOptions &global, const std::vector<std::string> &args);

// Entry point: argv without argv[0].
int run(const std::vector<std::string> &args);

} // namespace gvm::client
