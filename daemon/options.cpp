// SPDX-License-Identifier: Apache-2.0
#include "daemon/options.h"

#include <cstdlib>

#include "gvm_config.h"

namespace gvm::daemon {

std::string usage()
{
	return "Usage: gvmd [OPTIONS]\n"
	       "\n"
	       "The gvm daemon: owns agent sandboxes and answers gvmctl over a unix socket.\n"
	       "Run it as root, normally from systemd (gvmd.service / gvmd.socket).\n"
	       "\n"
	       "Options:\n"
	       "  --socket PATH       control socket (default: RUNTIME_DIR/gvmd.sock, or the\n"
	       "                      socket systemd passes in)\n"
	       "  --runtime-dir DIR   runtime directory, sandboxes' files under DIR/sandboxes\n"
	       "                      (default: " GVM_DEFAULT_RUNTIME_DIR ")\n"
	       "  --state-dir DIR     state directory, audit log (default: " GVM_DEFAULT_STATE_DIR ")\n"
	       "  --worker PATH       proxy worker binary (default: $GVM_WORKER, else\n"
	       "                      " GVM_DEFAULT_WORKER ")\n"
	       "  --upstream-ca FILE  PEM file of extra CAs the proxy workers trust for\n"
	       "                      upstream TLS (private CAs, tests)\n"
	       "  --dns-upstream ADDR[:PORT]\n"
	       "                      resolver that sandboxes' DNS is forwarded to, after\n"
	       "                      the policy (default: first nameserver of\n"
	       "                      /etc/resolv.conf)\n"
	       "  --address-pool CIDR IPv4 range for sandbox veth pairs, /30 each; ranges\n"
	       "                      in use on the host are skipped (default: 10.201.0.0/16)\n"
	       "  --log-level LEVEL   debug, info, notice, warning or error (default: info)\n"
	       "  --test-no-mask-mounts\n"
	       "                      for gvm's own tests only: do not mount over hidden\n"
	       "                      paths, so that Landlock alone keeps them closed\n"
	       "  --help              show this help and exit\n"
	       "  --version           show the version and exit\n";
}

Result<Options> parseOptions(const std::vector<std::string> &args)
{
	Options opts;
	opts.runtimeDir = GVM_DEFAULT_RUNTIME_DIR;
	opts.stateDir = GVM_DEFAULT_STATE_DIR;

	for (size_t i = 0; i < args.size(); ++i) {
		const std::string &arg = args[i];
		std::string name = arg;
		std::string value;
		bool inlineValue = false;
		if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
			name = arg.substr(0, eq);
			value = arg.substr(eq + 1);
			inlineValue = true;
		}
		auto takeValue = [&]() -> Result<std::string> {
			if (inlineValue)
				return value;
			if (i + 1 >= args.size())
				return fail(Error(ErrorDomain::Internal, 0, "option " + name + " needs a value"));
			return args[++i];
		};

		if (name == "--help" || name == "-h") {
			opts.showHelp = true;
		} else if (name == "--version") {
			opts.showVersion = true;
		} else if (name == "--test-no-mask-mounts") {
			opts.maskMounts = false;
		} else if (name == "--socket" || name == "--runtime-dir" || name == "--state-dir" ||
			   name == "--log-level" || name == "--worker" || name == "--upstream-ca" ||
			   name == "--dns-upstream" || name == "--address-pool") {
			auto v = takeValue();
			if (!v)
				return fail(std::move(v).error());
			if (v->empty())
				return fail(Error(ErrorDomain::Internal, 0, "option " + name + " needs a non-empty value"));
			if (name == "--socket")
				opts.socketPath = *v;
			else if (name == "--runtime-dir")
				opts.runtimeDir = *v;
			else if (name == "--state-dir")
				opts.stateDir = *v;
			else if (name == "--worker")
				opts.workerPath = *v;
			else if (name == "--upstream-ca")
				opts.upstreamCaFile = *v;
			else if (name == "--dns-upstream")
				opts.dnsUpstream = *v;
			else if (name == "--address-pool")
				opts.addressPool = *v;
			else if (!log::parseLevel(*v, &opts.logLevel))
				return fail(Error(ErrorDomain::Internal, 0,
						  "unknown log level '" + *v + "' (expected debug, info, notice, warning or error)"));
		} else {
			return fail(Error(ErrorDomain::Internal, 0, "unknown argument '" + arg + "'"));
		}
	}
	if (opts.socketPath.empty())
		opts.socketPath = opts.runtimeDir + "/gvmd.sock";
	if (opts.workerPath.empty()) {
		const char *env = std::getenv("GVM_WORKER");
		opts.workerPath = env && *env ? env : GVM_DEFAULT_WORKER;
	}
	return opts;
}

} // namespace gvm::daemon
