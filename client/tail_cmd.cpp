// SPDX-License-Identifier: Apache-2.0
//
// gvmctl tail: decisions as gvmd records them.
#include <cerrno>
#include <csignal>
#include <cstring>
#include <iostream>
#include <poll.h>
#include <unistd.h>

#include "client/commands.h"
#include "client/common_flags.h"
#include "client/decision_format.h"
#include "client/rpc_client.h"
#include "client/signal_pipe.h"

namespace gvm::client {

namespace {

const char kTailUsage[] =
	"Usage: gvmctl tail [SANDBOX] [--json] [--socket PATH]\n"
	"\n"
	"Follow the proxy's decisions as gvmd records them: every request allowed,\n"
	"denied, delayed, held or rate-limited, in your own sandboxes (every\n"
	"sandbox for root), or only in SANDBOX. One line each:\n"
	"  TIME ACTION KIND METHOD HOST:PORT/PATH -> STATUS rule=RULE sandbox=ID\n"
	"where ACTION reads 'would deny' for a monitor-mode policy. --json prints\n"
	"each audit record as one JSON line instead. Only new decisions are shown;\n"
	"'gvmctl audit show' lists the earlier ones.\n"
	"\n"
	"Runs until Ctrl-C (exit 0) or until gvmd closes the connection (exit 1):\n"
	"gvmd drops a follower that falls more than 1 MiB of output behind.\n";

// Writes all of `text` to stdout; false when nobody reads it any more.
bool writeOut(const std::string &text)
{
	size_t done = 0;
	while (done < text.size()) {
		ssize_t n = ::write(STDOUT_FILENO, text.data() + done, text.size() - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		done += static_cast<size_t>(n);
	}
	return true;
}

// Prints one message if it is a decision; false when stdout is gone.
bool printIncoming(const rpc::Incoming &in, bool json)
{
	if (in.isResponse || in.method != "decision")
		return true;
	const rpc::Json record =
		in.params.is_object() && in.params.contains("record") ? in.params["record"] : in.params;
	return writeOut((json ? rpc::dumpJson(record) : formatDecision(record)) + "\n");
}

int follow(RpcClient &client, bool json)
{
	auto signals = SignalPipe::create({SIGINT});
	if (!signals) {
		std::cerr << "gvmctl: " << signals.error().message() << "\n";
		return kExitFailure;
	}
	for (;;) {
		while (auto in = client.next()) {
			// A reader that went away (gvmctl tail | head -1) ends
			// the command quietly.
			if (!printIncoming(*in, json))
				return kExitOk;
		}
		// Events 0 on stdout still report POLLERR once a pipe's
		// reader is gone, so tail ends then, not at the next record.
		pollfd p[3] = {{client.fd(), POLLIN, 0}, {(*signals)->fd(), POLLIN, 0}, {STDOUT_FILENO, 0, 0}};
		if (::poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			std::cerr << "gvmctl: waiting for gvmd: " << std::strerror(errno) << "\n";
			return kExitFailure;
		}
		if (p[1].revents && !(*signals)->take().empty())
			return kExitOk;
		if (p[2].revents & (POLLERR | POLLHUP))
			return kExitOk;
		if (!p[0].revents)
			continue;
		auto more = client.receive();
		while (auto in = client.next())
			if (!printIncoming(*in, json))
				return kExitOk;
		if (!more) {
			std::cerr << "gvmctl: " << more.error().message() << "\n";
			return kExitFailure;
		}
		if (!*more) {
			std::cerr << "gvmctl: gvmd closed the connection\n";
			return kExitFailure;
		}
	}
}

} // namespace

int runTail(const GlobalOptions &globalIn, const std::vector<std::string> &args)
{
	GlobalOptions global = globalIn;
	ParsedArgs parsed;
	if (int r = parseCommandArgs(args, {}, kTailUsage, &global, &parsed); r >= 0)
		return r;
	if (parsed.positional.size() > 1) {
		std::cerr << "gvmctl tail: expected at most one SANDBOX\n\n" << kTailUsage;
		return kExitUsage;
	}
	rpc::Json params = rpc::Json::object();
	std::string sandbox;
	if (!parsed.positional.empty()) {
		sandbox = parsed.positional[0];
		params["sandbox"] = sandbox;
	}
	auto client = RpcClient::connect(resolveSocketPath(global.socket));
	if (!client) {
		std::cerr << "gvmctl: " << client.error().message() << "\n";
		return kExitFailure;
	}
	auto subscribed = client->call("decisions.subscribe", params);
	if (!subscribed) {
		const Error &e = subscribed.error();
		if (!sandbox.empty() && e.domain() == ErrorDomain::Rpc && e.code() == rpc::kNotFound)
			std::cerr << "gvmctl: no sandbox " << sandbox << "\n";
		else
			std::cerr << "gvmctl: " << e.message() << "\n";
		return kExitFailure;
	}
	struct sigaction ignore{};
	ignore.sa_handler = SIG_IGN;
	::sigaction(SIGPIPE, &ignore, nullptr);
	return follow(*client, global.json);
}

} // namespace gvm::client
