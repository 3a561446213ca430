// SPDX-License-Identifier: Apache-2.0
#include "client/launch_cmd.h"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <climits>
#include <iostream>
#include <sys/stat.h>
#include <memory>
#include <poll.h>
#include <unistd.h>

#include "client/args.h"
#include "client/commands.h"
#include "client/policy_file.h"
#include "client/rpc_client.h"
#include "client/signal_pipe.h"
#include "client/terminal.h"

extern char **environ;

namespace gvm::client {

const char kLaunchUsage[] =
	"Usage: gvmctl launch --policy FILE [--monitor] [--name NAME] [--workspace DIR]\n"
	"                     [--network-only] [--cooperative] [--upstream-ca FILE]\n"
	"                     [--json] [--socket PATH] -- CMD [ARGS...]\n"
	"\n"
	"Run CMD as you, in a sandbox whose network traffic gvmd decides with the\n"
	"policy in FILE. By default the sandbox has a network namespace of its own:\n"
	"every TCP connection and DNS query goes through the sandbox's proxy whether\n"
	"CMD honours proxy variables or not, anything else (other UDP, ICMP, IPv6)\n"
	"is dropped, and CMD runs in its own pid, mount, uts and ipc namespaces with\n"
	"no capabilities (even as root), no_new_privs, and gvmd's directories\n"
	"hidden.\n"
	"\n"
	"It also sees the host read-only, with the policy's `filesystem:` section\n"
	"applied: its workspace (your working directory, or --workspace DIR) is an\n"
	"overlay whose changes wait for 'gvmctl diff' and 'gvmctl apply' (or are\n"
	"written directly, or not at all, as the policy says); your home directory\n"
	"gets a private layer that is thrown away at the end; secrets (~/.ssh,\n"
	"~/.aws, .env files...) are replaced by empty unreadable mounts; /tmp,\n"
	"/dev/shm and /dev are its own. Landlock closes the same paths a second\n"
	"time, a seccomp filter makes ptrace, mount, new namespaces, bpf,\n"
	"io_uring and raw or packet sockets fail with EPERM, and a cgroup holds\n"
	"the policy's `limits:` (memory, pids, cpu).\n"
	"\n"
	"gvmctl reads FILE (and the --upstream-ca file) itself and\n"
	"checks the policy before asking gvmd for anything: a broken policy is\n"
	"reported as FILE:LINE:COLUMN: message and nothing is started.\n"
	"\n"
	"CMD runs with your user, groups, working directory and environment, plus\n"
	"HTTP_PROXY, HTTPS_PROXY and ALL_PROXY (and their lower-case forms) set to\n"
	"the sandbox's proxy, SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE,\n"
	"NODE_EXTRA_CA_CERTS, GIT_SSL_CAINFO, PIP_CERT and AWS_CA_BUNDLE set to a CA\n"
	"bundle that also trusts the sandbox's CA, GVM_SANDBOX set to the sandbox id,\n"
	"and NO_PROXY removed. Its stdin, stdout and stderr are yours: when stdin and\n"
	"stdout are terminals it gets a pseudo-terminal of its own (colours, line\n"
	"editing, Ctrl-C and window size work as if it ran directly); otherwise\n"
	"SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to gvmctl are passed on to its\n"
	"process group. Options end at '--' (or at the first argument that is not\n"
	"an option); everything after it is the command, untouched.\n"
	"\n"
	"Options:\n"
	"  --policy FILE       the policy (YAML) to enforce; required\n"
	"  --monitor           monitor mode whatever the policy says: record what it\n"
	"                      would deny, and allow everything\n"
	"  --name NAME         a name for the sandbox, shown by 'gvmctl ps'\n"
	"  --workspace DIR     the directory the agent may change (through the\n"
	"                      overlay); default: the working directory\n"
	"  --network-only      the network sandbox alone: the host's file system as\n"
	"                      it is, no seccomp filter, Landlock rules or cgroup\n"
	"  --cooperative       no namespaces: only programs that honour the proxy\n"
	"                      variables are governed, anything else bypasses gvm\n"
	"                      (the only mode of a gvmd that does not run as root)\n"
	"  --upstream-ca FILE  also trust the CA certificates (PEM) in FILE when the\n"
	"                      proxy verifies the servers the command talks to\n"
	"  --json              one JSON line on stderr when the sandbox starts\n"
	"                      ({\"event\":\"launched\",\"sandbox\":...,\"proxy\":...}) and\n"
	"                      one when it ends ({\"event\":\"exited\",\"exit_code\":...});\n"
	"                      stdout stays the command's\n"
	"  --socket PATH       gvmd's control socket\n"
	"\n"
	"Exit status: the command's own, or 128+N when signal N ended it. gvmctl's\n"
	"own failures (an unreadable or broken policy, gvmd unreachable or refusing,\n"
	"the connection to gvmd lost) exit 1, usage errors 2. A command can exit 1\n"
	"or 2 too: tell them apart by gvmctl's message on stderr, or with --json.\n"
	"If gvmd goes away while the command runs, gvmctl exits 1 and the\n"
	"sandbox's network is cut off.\n";

namespace {

const std::vector<FlagSpec> kLaunchFlags = {
	{"--policy", true, false},      {"--monitor", false, false}, {"--name", true, false},
	{"--cooperative", false, false}, {"--upstream-ca", true, false}, {"--json", false, false},
	{"--workspace", true, false},   {"--network-only", false, false},
	{"--socket", true, false},      {"--help", false, false},
};

// How long gvmd may take to configure the worker and start the agent.
constexpr auto kLaunchTimeout = std::chrono::seconds(60);
// After the agent exited: how long its last output may take to arrive.
constexpr auto kDrainTimeout = std::chrono::milliseconds(200);
// Bytes buffered in either direction of the pty relay before it stops
// reading that side.
constexpr size_t kRelayBufferBytes = 64 * 1024;

constexpr char kLostConnection[] = "lost the connection to gvmd; the sandbox's network is cut off";

using Clock = std::chrono::steady_clock;

// One `gvmctl launch` from its request to the agent's exit: sends
// sandbox.launch with the agent's three descriptors, then runs a poll()
// loop over gvmd's connection, the signal pipe and, with a terminal, the
// pty relay (stdin -> master, master -> stdout), until sandbox.exited or
// until gvmd goes away. Lives on runLaunch()'s stack and owns the pty, the
// caller's terminal mode and the signal handlers, so every way out puts the
// terminal and the signal dispositions back.
class LaunchSession
{
public:
	LaunchSession(RpcClient &client, bool json) : client_(client), json_(json) {}

	// Returns gvmctl's exit status; prints gvmctl's own errors (after
	// the terminal is restored).
	int run(const rpc::Json &params, bool tty);

private:
	Result<void> setUp(bool tty, std::vector<int> *fds);
	void loop();
	void failWith(std::string message);

	void onRpcReadable();
	void onMessage(const rpc::Incoming &in);
	void onLaunched(const rpc::Json &result);
	void onExited(const rpc::Json &params);
	void onSignals();
	void forward(int signum);
	void copyWindowSize();

	void readStdin();
	void writeMaster();
	void readMaster();
	void writeStdout();
	bool outputDone() const;

	RpcClient &client_;
	const bool json_;
	std::unique_ptr<SignalPipe> signals_;
	std::unique_ptr<TerminalMode> terminal_;
	std::unique_ptr<Pty> pty_;
	std::vector<UniqueFd> devNull_;

	int64_t launchId_ = 0;
	bool launched_ = false;
	std::string sandbox_;
	std::vector<int> pendingSignals_;
	std::optional<int> exitCode_;
	rpc::Json exitedParams_;
	std::optional<Clock::time_point> drainDeadline_;
	std::optional<std::string> failure_;
	bool connectionClosed_ = false;

	std::string toMaster_;
	std::string toStdout_;
	bool stdinDone_ = false;
	bool masterDone_ = false;
	bool stdoutBroken_ = false;
};

void LaunchSession::failWith(std::string message)
{
	if (!failure_)
		failure_ = std::move(message);
}

Result<void> LaunchSession::setUp(bool tty, std::vector<int> *fds)
{
	if (tty) {
		auto terminal = TerminalMode::create(STDIN_FILENO);
		if (!terminal)
			return fail(std::move(terminal).error());
		terminal_ = std::move(*terminal);
		std::optional<winsize> size = windowSize(STDIN_FILENO);
		auto pty = Pty::create(&terminal_->saved(), size ? &*size : nullptr);
		if (!pty)
			return fail(std::move(pty).error().wrap("cannot give the command a terminal"));
		pty_ = std::move(*pty);
		const int slave = pty_->slave();
		*fds = {slave, slave, ::isatty(STDERR_FILENO) ? slave : STDERR_FILENO};
		return {};
	}
	// The agent gets gvmctl's own descriptors; a closed one becomes
	// /dev/null, as sendmsg() cannot pass what is not there.
	for (int fd = 0; fd <= 2; ++fd) {
		if (::fcntl(fd, F_GETFD) >= 0) {
			fds->push_back(fd);
			continue;
		}
		UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
		if (!null)
			return fail(Error::fromErrno(errno, "opening /dev/null"));
		fds->push_back(null.get());
		devNull_.push_back(std::move(null));
	}
	return {};
}

int LaunchSession::run(const rpc::Json &params, bool tty)
{
	std::vector<int> caught = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH};
	if (tty) {
		// Stopping and continuing gvmctl from outside (the Ctrl-Z key
		// goes to the agent) must hand the terminal back and forth.
		caught.push_back(SIGTSTP);
		caught.push_back(SIGCONT);
	}
	auto signals = SignalPipe::create(caught);
	if (!signals) {
		std::cerr << "gvmctl: " << signals.error().message() << "\n";
		return kExitFailure;
	}
	signals_ = std::move(*signals);

	std::vector<int> fds;
	if (auto ready = setUp(tty, &fds); !ready) {
		std::cerr << "gvmctl: " << ready.error().message() << "\n";
		return kExitFailure;
	}
	auto id = client_.send("sandbox.launch", params, fds);
	if (!id) {
		std::optional<Error> why = client_.refusal();
		std::cerr << "gvmctl: " << (why ? why->message() : id.error().message()) << "\n";
		return kExitFailure;
	}
	launchId_ = *id;
	// The descriptors are in flight now, referenced by the socket: drop
	// gvmctl's copies (see Pty::closeSlave).
	if (pty_)
		pty_->closeSlave();
	devNull_.clear();

	loop();

	if (terminal_)
		terminal_->restore();
	if (failure_) {
		std::cerr << "gvmctl: " << *failure_ << "\n";
		return kExitFailure;
	}
	if (json_) {
		rpc::Json event = {
			{"event", "exited"},
			{"sandbox", sandbox_},
			{"exit_code", *exitCode_},
			{"status", exitedParams_.value("status", rpc::Json())},
			{"signal", exitedParams_.value("signal", rpc::Json())},
		};
		std::cerr << rpc::dumpJson(event) << std::endl;
	}
	return *exitCode_;
}

void LaunchSession::loop()
{
	enum { kRpc, kSignals, kStdin, kMaster, kStdout, kCount };
	const auto launchDeadline = Clock::now() + kLaunchTimeout;
	for (;;) {
		if (failure_ || (exitCode_ && outputDone()))
			return;
		const auto now = Clock::now();
		if (drainDeadline_ && now >= *drainDeadline_)
			return;
		if (!launched_ && now >= launchDeadline) {
			failWith("gvmd did not answer sandbox.launch within " +
				 std::to_string(std::chrono::seconds(kLaunchTimeout).count()) + " s");
			return;
		}

		pollfd p[kCount];
		p[kRpc] = {connectionClosed_ ? -1 : client_.fd(), POLLIN, 0};
		p[kSignals] = {signals_->fd(), POLLIN, 0};
		p[kStdin] = {-1, POLLIN, 0};
		p[kMaster] = {-1, 0, 0};
		p[kStdout] = {-1, POLLOUT, 0};
		if (pty_) {
			// Keys go to the agent once it runs, and stop with its
			// exit: what the user types next belongs to the shell.
			if (launched_ && !exitCode_ && !stdinDone_ && toMaster_.size() < kRelayBufferBytes)
				p[kStdin].fd = STDIN_FILENO;
			short events = 0;
			if (!masterDone_ && toStdout_.size() < kRelayBufferBytes)
				events |= POLLIN;
			if (!masterDone_ && !toMaster_.empty())
				events |= POLLOUT;
			if (events) {
				p[kMaster].fd = pty_->master();
				p[kMaster].events = events;
			}
			// The agent's output is already processed by its own
			// pty (ONLCR and the like): it goes out only once the
			// caller's terminal is raw, or it would be processed
			// twice ("\r\r\n").
			if (!toStdout_.empty() && !stdoutBroken_ && (launched_ || exitCode_))
				p[kStdout].fd = STDOUT_FILENO;
		}

		int timeout = -1;
		std::optional<Clock::time_point> deadline;
		if (!launched_)
			deadline = launchDeadline;
		else if (drainDeadline_)
			deadline = drainDeadline_;
		if (deadline)
			timeout = static_cast<int>(
				std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - now).count() + 1);

		int r = ::poll(p, kCount, timeout);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			failWith(std::string("waiting for the command: ") + std::strerror(errno));
			return;
		}
		if (p[kSignals].revents)
			onSignals();
		if (p[kRpc].revents)
			onRpcReadable();
		if (p[kStdin].revents)
			readStdin();
		if ((p[kMaster].events & POLLOUT) && (p[kMaster].revents & (POLLOUT | POLLHUP | POLLERR)))
			writeMaster();
		if ((p[kMaster].events & POLLIN) && (p[kMaster].revents & (POLLIN | POLLHUP | POLLERR)))
			readMaster();
		if (p[kStdout].revents)
			writeStdout();
	}
}

void LaunchSession::onRpcReadable()
{
	auto more = client_.receive();
	// What arrived before the connection ended still counts, above all
	// a sandbox.exited right before gvmd closed.
	while (auto in = client_.next())
		onMessage(*in);
	if (more && *more)
		return;
	connectionClosed_ = true;
	if (exitCode_)
		return;
	if (!more)
		failWith(more.error().message() + (launched_ ? std::string("; ") + kLostConnection : std::string()));
	else if (launched_)
		failWith(kLostConnection);
	else
		failWith("gvmd closed the connection before answering sandbox.launch");
}

void LaunchSession::onMessage(const rpc::Incoming &in)
{
	if (in.isResponse) {
		if (in.id == rpc::Json(launchId_) || (in.error && in.id.is_null())) {
			if (in.error)
				failWith(RpcClient::responseError(*in.error).message());
			else if (!launched_)
				onLaunched(in.result);
		}
		// Answers to sandbox.signal need nothing: one that failed
		// found the agent gone already, and its exit is on its way.
		return;
	}
	if (in.method == "sandbox.exited")
		onExited(in.params);
}

void LaunchSession::onLaunched(const rpc::Json &result)
{
	if (!result.is_object() || !result.contains("sandbox") || !result["sandbox"].is_string()) {
		failWith("malformed answer from gvmd to sandbox.launch");
		return;
	}
	launched_ = true;
	sandbox_ = result["sandbox"].get<std::string>();
	if (json_) {
		rpc::Json event = result;
		event["event"] = "launched";
		std::cerr << rpc::dumpJson(event) << std::endl;
	}
	// Raw mode only now: until the agent runs, Ctrl-C is a signal to
	// gvmctl, which passes it on below once there is a sandbox.
	if (terminal_)
		(void)terminal_->makeRaw();
	for (int signum : pendingSignals_)
		forward(signum);
	pendingSignals_.clear();
}

void LaunchSession::onExited(const rpc::Json &params)
{
	if (exitCode_ || !params.is_object())
		return;
	if (launched_ && params.contains("sandbox") && params["sandbox"] != rpc::Json(sandbox_))
		return;
	if (!launched_ && params.contains("sandbox") && params["sandbox"].is_string())
		sandbox_ = params["sandbox"].get<std::string>();
	exitCode_ = exitCodeFromExited(params);
	exitedParams_ = params;
	drainDeadline_ = Clock::now() + kDrainTimeout;
}

void LaunchSession::onSignals()
{
	for (int signum : signals_->take()) {
		if (signum == SIGWINCH) {
			copyWindowSize();
			continue;
		}
		if (signum == SIGTSTP) {
			// The default action would leave the shell a raw
			// terminal: restore it, stop, and take it again once
			// continued.
			const bool wasRaw = terminal_ && terminal_->raw();
			if (terminal_)
				terminal_->restore();
			::raise(SIGSTOP);
			if (wasRaw)
				(void)terminal_->makeRaw();
			copyWindowSize();
			continue;
		}
		if (signum == SIGCONT) {
			// A shell that stopped gvmctl has put its own mode back.
			if (terminal_ && launched_ && !exitCode_ && !failure_)
				(void)terminal_->makeRaw();
			copyWindowSize();
			continue;
		}
		if (exitCode_ || failure_)
			continue;
		if (!launched_) {
			pendingSignals_.push_back(signum);
			continue;
		}
		forward(signum);
	}
}

void LaunchSession::copyWindowSize()
{
	if (!pty_)
		return;
	if (std::optional<winsize> size = windowSize(STDIN_FILENO))
		(void)pty_->setWindowSize(*size);
}

void LaunchSession::forward(int signum)
{
	// A failed send means gvmd is gone; reading notices and reports it.
	(void)client_.send("sandbox.signal", {{"sandbox", sandbox_}, {"signal", signum}});
}

void LaunchSession::readStdin()
{
	char buf[4096];
	ssize_t n = ::read(STDIN_FILENO, buf, sizeof(buf));
	if (n > 0) {
		toMaster_.append(buf, static_cast<size_t>(n));
		return;
	}
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	// End of input (or a hung-up terminal): tell the agent's line
	// discipline, once, as its own EOF key would.
	stdinDone_ = true;
	const cc_t eof = terminal_ ? terminal_->saved().c_cc[VEOF] : cc_t(4);
	if (eof != _POSIX_VDISABLE)
		toMaster_.push_back(static_cast<char>(eof));
}

void LaunchSession::writeMaster()
{
	ssize_t n = ::write(pty_->master(), toMaster_.data(), toMaster_.size());
	if (n > 0) {
		toMaster_.erase(0, static_cast<size_t>(n));
		return;
	}
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	// The agent's side is gone: nobody will read these keys.
	toMaster_.clear();
}

void LaunchSession::readMaster()
{
	char buf[16384];
	ssize_t n = ::read(pty_->master(), buf, sizeof(buf));
	if (n > 0) {
		if (!stdoutBroken_)
			toStdout_.append(buf, static_cast<size_t>(n));
		return;
	}
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	// EIO: every descriptor of the slave is closed, all output is read.
	masterDone_ = true;
	toMaster_.clear();
}

void LaunchSession::writeStdout()
{
	ssize_t n = ::write(STDOUT_FILENO, toStdout_.data(), toStdout_.size());
	if (n > 0) {
		toStdout_.erase(0, static_cast<size_t>(n));
		return;
	}
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	// Nobody reads stdout any more: keep draining the pty so the agent
	// never blocks on it, and drop what it writes.
	stdoutBroken_ = true;
	toStdout_.clear();
}

bool LaunchSession::outputDone() const
{
	return !pty_ || (masterDone_ && (toStdout_.empty() || stdoutBroken_));
}

} // namespace

Result<LaunchOptions> parseLaunchArgs(const std::vector<std::string> &args)
{
	// Find where the options end: at "--", or at the first argument that
	// is neither an option nor an option's value.
	size_t optionsEnd = args.size();
	size_t commandStart = args.size();
	for (size_t i = 0; i < args.size(); ++i) {
		const std::string &arg = args[i];
		if (arg == "--") {
			optionsEnd = i;
			commandStart = i + 1;
			break;
		}
		if (arg.size() >= 2 && arg[0] == '-') {
			if (arg.find('=') == std::string::npos) {
				for (const FlagSpec &spec : kLaunchFlags)
					if (spec.name == arg && spec.takesValue)
						++i;
			}
			continue;
		}
		optionsEnd = i;
		commandStart = i;
		break;
	}
	auto parsed = parseArgs(std::vector<std::string>(args.begin(), args.begin() + static_cast<long>(optionsEnd)),
				kLaunchFlags);
	if (!parsed)
		return fail(std::move(parsed).error());

	LaunchOptions options;
	options.help = parsed->has("--help");
	options.json = parsed->has("--json");
	options.socket = parsed->value("--socket");
	options.monitor = parsed->has("--monitor");
	options.cooperative = parsed->has("--cooperative");
	options.networkOnly = parsed->has("--network-only");
	options.workspace = parsed->value("--workspace");
	options.policyFile = parsed->value("--policy");
	options.upstreamCaFile = parsed->value("--upstream-ca");
	if (parsed->has("--name"))
		options.name = parsed->value("--name");
	if (commandStart < args.size())
		options.command.assign(args.begin() + static_cast<long>(commandStart), args.end());
	if (options.help)
		return options;

	if (options.policyFile.empty())
		return fail(Error::internal("--policy FILE is required"));
	if (parsed->has("--upstream-ca") && options.upstreamCaFile.empty())
		return fail(Error::internal("--upstream-ca needs a file name"));
	if (parsed->has("--workspace") && options.workspace.empty())
		return fail(Error::internal("--workspace needs a directory"));
	if (options.cooperative && !options.workspace.empty())
		return fail(Error::internal("--cooperative has no file system isolation: --workspace does not apply"));
	if (options.name && options.name->empty())
		return fail(Error::internal("--name needs a non-empty name"));
	if (options.command.empty())
		return fail(Error::internal("no command given (put it after --)"));
	return options;
}

rpc::Json buildLaunchParams(const LaunchOptions &options, const std::string &policyText,
			    const std::string &upstreamCaPem, const std::vector<std::string> &env,
			    const std::string &cwd, bool tty)
{
	rpc::Json params = {
		{"argv", options.command},
		{"env", env},
		{"cwd", cwd},
		{"policy_text", policyText},
		{"policy_file", options.policyFile},
		{"cooperative", options.cooperative},
		{"monitor", options.monitor},
		{"tty", tty},
	};
	if (options.name)
		params["name"] = *options.name;
	if (!options.upstreamCaFile.empty())
		params["upstream_ca_pem"] = upstreamCaPem;
	if (!options.workspace.empty())
		params["workspace"] = options.workspace;
	if (options.networkOnly)
		params["isolation"] = false;
	return params;
}

std::vector<std::string> currentEnvironment()
{
	std::vector<std::string> env;
	for (char **e = environ; e && *e; ++e)
		env.emplace_back(*e);
	return env;
}

int exitCodeFromExited(const rpc::Json &params)
{
	auto integer = [&](const char *key) -> std::optional<int64_t> {
		if (!params.is_object())
			return std::nullopt;
		auto it = params.find(key);
		if (it == params.end() || !it->is_number_integer())
			return std::nullopt;
		return it->get<int64_t>();
	};
	if (auto code = integer("exit_code"); code && *code >= 0 && *code <= 255)
		return static_cast<int>(*code);
	if (auto status = integer("status"); status && *status >= 0 && *status <= 255)
		return static_cast<int>(*status);
	if (auto signal = integer("signal"); signal && *signal > 0 && *signal < 128)
		return 128 + static_cast<int>(*signal);
	return kExitFailure;
}

int runLaunch(const GlobalOptions &global, const std::vector<std::string> &args)
{
	auto options = parseLaunchArgs(args);
	if (!options) {
		std::cerr << "gvmctl launch: " << options.error().message() << "\n\n" << kLaunchUsage;
		return kExitUsage;
	}
	if (options->help) {
		std::cout << kLaunchUsage;
		return kExitOk;
	}
	const bool json = global.json || options->json;
	const std::string socket = options->socket.empty() ? global.socket : options->socket;

	std::optional<LocalPolicy> policy = loadLocalPolicy(options->policyFile, std::cerr);
	if (!policy)
		return kExitFailure;
	std::string caPem;
	if (!options->upstreamCaFile.empty()) {
		auto text = readTextFile(options->upstreamCaFile, "upstream CA file");
		if (!text) {
			std::cerr << "gvmctl: " << text.error().message() << "\n";
			return kExitFailure;
		}
		if (text->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
			std::cerr << "gvmctl: upstream CA file " << options->upstreamCaFile
				  << " holds no PEM certificate (-----BEGIN CERTIFICATE-----)\n";
			return kExitFailure;
		}
		caPem = std::move(*text);
	}
	char cwd[4096];
	if (!::getcwd(cwd, sizeof(cwd))) {
		std::cerr << "gvmctl: cannot determine the working directory: " << std::strerror(errno) << "\n";
		return kExitFailure;
	}

	// The workspace as a real path, resolved as the user: gvmd mounts
	// over exactly that directory.
	if (!options->workspace.empty()) {
		char real[PATH_MAX];
		struct stat st{};
		if (!::realpath(options->workspace.c_str(), real) || ::stat(real, &st) < 0) {
			std::cerr << "gvmctl: workspace " << options->workspace << ": " << std::strerror(errno) << "\n";
			return kExitFailure;
		}
		if (!S_ISDIR(st.st_mode)) {
			std::cerr << "gvmctl: workspace " << options->workspace << " is not a directory\n";
			return kExitFailure;
		}
		options->workspace = real;
	}

	auto client = RpcClient::connect(resolveSocketPath(socket));
	if (!client) {
		std::cerr << "gvmctl: " << client.error().message() << "\n";
		return kExitFailure;
	}
	const bool tty = ::isatty(STDIN_FILENO) && ::isatty(STDOUT_FILENO);
	const rpc::Json params =
		buildLaunchParams(*options, policy->text, caPem, currentEnvironment(), cwd, tty);

	// A closed stdout is the agent's business; gvmctl must not die of it.
	struct sigaction ignore{};
	ignore.sa_handler = SIG_IGN;
	struct sigaction previous{};
	::sigaction(SIGPIPE, &ignore, &previous);
	LaunchSession session(*client, json);
	int status = session.run(params, tty);
	::sigaction(SIGPIPE, &previous, nullptr);
	return status;
}

} // namespace gvm::client
