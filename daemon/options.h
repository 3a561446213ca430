// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <vector>

#include "common/log.h"
#include "common/result.h"

namespace gvm::daemon {

// gvmd's command line.
struct Options {
	std::string socketPath;
	std::string runtimeDir;
	std::string stateDir;
	// The proxy worker binary: --worker, else $GVM_WORKER, else the
	// installed one.
	std::string workerPath;
	// PEM file of extra CAs the workers trust for upstream TLS (tests,
	// private CAs); empty for none.
	std::string upstreamCaFile;
	// Sandbox mode: the resolver sandboxes' DNS is forwarded to
	// ("ADDR" or "ADDR:PORT", "[ADDR]:PORT" for IPv6; empty: the first
	// nameserver of /etc/resolv.conf), and the IPv4 pool their veth
	// addresses come from.
	std::string dnsUpstream;
	// Tests of the Landlock layer only (--test-no-mask-mounts).
	bool maskMounts = true;
	std::string addressPool = "10.201.0.0/16";
	log::Level logLevel = log::Level::Info;
	bool showHelp = false;
	bool showVersion = false;
};

// Parses argv (without argv[0]); reads $GVM_WORKER when --worker is absent.
// Errors name the offending argument.
Result<Options> parseOptions(const std::vector<std::string> &args);
std::string usage();

} // namespace gvm::daemon
