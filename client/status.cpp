// SPDX-License-Identifier: Apache-2.0
#include <cmath>
#include <iostream>

#include "client/commands.h"
#include "client/common_flags.h"
#include "client/rpc_client.h"

namespace gvm::client {

namespace {

const char kStatusUsage[] =
	"Usage: gvmctl status [--json] [--socket PATH]\n"
	"\n"
	"Show gvmd's version, pid, uptime, control socket, state directory, the\n"
	"isolation the kernel offers (Landlock ABI, cgroup hierarchy) and\n"
	"sandbox count, and the identity gvmd sees for you.\n";

std::string formatUptime(double seconds)
{
	auto s = static_cast<long long>(std::floor(seconds));
	std::string out;
	if (s >= 86400)
		out += std::to_string(s / 86400) + "d";
	if (s >= 3600)
		out += std::to_string((s % 86400) / 3600) + "h";
	if (s >= 60)
		out += std::to_string((s % 3600) / 60) + "m";
	out += std::to_string(s % 60) + "s";
	return out;
}

} // namespace

int runStatus(const GlobalOptions &globalIn, const std::vector<std::string> &args)
{
	GlobalOptions global = globalIn;
	ParsedArgs parsed;
	if (int r = parseCommandArgs(args, {}, kStatusUsage, &global, &parsed); r >= 0)
		return r;
	if (!parsed.positional.empty()) {
		std::cerr << "gvmctl status: unexpected argument '" << parsed.positional[0] << "'\n\n" << kStatusUsage;
		return kExitUsage;
	}

	auto client = RpcClient::connect(resolveSocketPath(global.socket));
	if (!client) {
		std::cerr << "gvmctl: " << client.error().message() << "\n";
		return kExitFailure;
	}
	auto result = client->call("daemon.status", rpc::Json::object());
	if (!result) {
		std::cerr << "gvmctl: " << result.error().message() << "\n";
		return kExitFailure;
	}
	const rpc::Json &s = *result;
	if (global.json) {
		std::cout << rpc::dumpJson(s) << "\n";
		return kExitOk;
	}
	auto str = [&](const char *key) { return s.contains(key) ? rpc::dumpJson(s[key]) : std::string("?"); };
	auto text = [&](const char *key) {
		return s.contains(key) && s[key].is_string() ? s[key].get<std::string>() : std::string("?");
	};
	double uptime = s.contains("uptime_s") && s["uptime_s"].is_number() ? s["uptime_s"].get<double>() : 0.0;
	std::cout << "gvmd " << text("version") << " (pid " << str("pid") << "), up " << formatUptime(uptime) << "\n"
		  << "  socket:     " << text("socket") << "\n"
		  << "  state dir:  " << text("state_dir") << "\n"
		  << "  sandboxes:  " << str("sandboxes") << "\n"
		  << "  clients:    " << str("clients") << "\n";
	if (s.contains("isolation") && s["isolation"].is_object()) {
		const rpc::Json &iso = s["isolation"];
		const int64_t abi = iso.value("landlock_abi", int64_t{0});
		std::cout << "  landlock:   " << (abi > 0 ? "ABI " + std::to_string(abi) : std::string("unavailable")) << "\n"
			  << "  cgroups:    " << iso.value("cgroups", std::string("?")) << "\n";
	}
	if (s.contains("caller") && s["caller"].is_object())
		std::cout << "  you:        uid " << rpc::dumpJson(s["caller"].value("uid", rpc::Json())) << ", gid "
			  << rpc::dumpJson(s["caller"].value("gid", rpc::Json())) << "\n";
	return kExitOk;
}

} // namespace gvm::client
