// SPDX-License-Identifier: Apache-2.0
#include "bench/proxy_servers.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <string_view>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

namespace gvm::bench {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kPollInterval{10};
// Decision records kept verbatim when they are not "allow, 200".
constexpr size_t kMaxAnomalies = 5;
// The control channel's line limit, as in common/json_rpc.h.
constexpr size_t kMaxLine = 1024 * 1024;
constexpr size_t kErrorLogTail = 2000;

Result<std::string> readTextFile(const std::string &path)
{
	std::ifstream in(path);
	if (!in)
		return fail(Error::fromErrno(errno, "reading " + path));
	std::ostringstream text;
	text << in.rdbuf();
	return text.str();
}

// The number after `key` on its line of /proc/PID/status or smaps_rollup
// ("VmRSS:    1234 kB").
std::optional<uint64_t> kibField(const std::string &text, const std::string &key)
{
	size_t at = 0;
	while ((at = text.find(key, at)) != std::string::npos) {
		if (at == 0 || text[at - 1] == '\n')
			return std::strtoull(text.c_str() + at + key.size(), nullptr, 10);
		at += key.size();
	}
	return std::nullopt;
}

Result<UniqueFd> loopbackSocket(uint16_t port)
{
	UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	if (!fd)
		return fail(Error::fromErrno(errno, "creating a socket"));
	sockaddr_in sin{};
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (::bind(fd.get(), reinterpret_cast<const sockaddr *>(&sin), sizeof(sin)) < 0)
		return fail(Error::fromErrno(errno, "binding 127.0.0.1:" + std::to_string(port)));
	return fd;
}

Result<uint16_t> boundPort(int fd)
{
	sockaddr_in sin{};
	socklen_t len = sizeof(sin);
	if (::getsockname(fd, reinterpret_cast<sockaddr *>(&sin), &len) < 0)
		return fail(Error::fromErrno(errno, "reading a socket's address"));
	return ntohs(sin.sin_port);
}

bool acceptsConnections(uint16_t port)
{
	UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	sockaddr_in sin{};
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	// A loopback connect() is answered at once: no timeout needed.
	return fd && ::connect(fd.get(), reinterpret_cast<const sockaddr *>(&sin), sizeof(sin)) == 0;
}

std::string describeStatus(int status)
{
	if (WIFEXITED(status))
		return "exit " + std::to_string(WEXITSTATUS(status));
	if (WIFSIGNALED(status))
		return "signal " + std::to_string(WTERMSIG(status)) + " (" + ::strsignal(WTERMSIG(status)) + ")";
	return "status " + std::to_string(status);
}

const std::string *stringField(const nlohmann::json &object, const char *name)
{
	auto it = object.find(name);
	return it != object.end() && it->is_string() ? &it->get_ref<const std::string &>() : nullptr;
}

} // namespace

Result<std::unique_ptr<TempDir>> TempDir::create(const std::string &prefix)
{
	std::string pattern = "/tmp/" + prefix + ".XXXXXX";
	if (!::mkdtemp(pattern.data()))
		return fail(Error::fromErrno(errno, "creating a directory like " + pattern));
	return std::unique_ptr<TempDir>(new TempDir(pattern));
}

TempDir::~TempDir()
{
	std::error_code ec;
	std::filesystem::remove_all(path_, ec);
}

Result<void> writeFile(const std::filesystem::path &path, const std::string &content)
{
	UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
	if (!fd)
		return fail(Error::fromErrno(errno, "creating " + path.string()));
	size_t done = 0;
	while (done < content.size()) {
		ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(Error::fromErrno(errno, "writing " + path.string()));
		done += static_cast<size_t>(n);
	}
	return {};
}

Result<void> makeSparseFile(const std::filesystem::path &path, uint64_t size)
{
	UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
	if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(size)) < 0)
		return fail(Error::fromErrno(errno, "creating the sparse file " + path.string()));
	return {};
}

Result<uint16_t> freeLoopbackPort()
{
	auto fd = loopbackSocket(0);
	if (!fd)
		return fail(std::move(fd).error());
	return boundPort(fd->get());
}

Result<std::unique_ptr<ChildProcess>> ChildProcess::spawn(const std::vector<std::string> &argv,
							   const std::vector<int> &inherit)
{
	// Everything the child needs is prepared before fork(): between fork
	// and exec only async-signal-safe calls are allowed (other threads
	// may hold locks).
	std::vector<char *> args;
	for (const std::string &a : argv)
		args.push_back(const_cast<char *>(a.c_str()));
	args.push_back(nullptr);
	int report[2];
	if (::pipe2(report, O_CLOEXEC) < 0)
		return fail(Error::fromErrno(errno, "creating a pipe"));
	UniqueFd reportRead(report[0]), reportWrite(report[1]);
	const pid_t parent = ::getpid();

	pid_t pid = ::fork();
	if (pid < 0)
		return fail(Error::fromErrno(errno, "forking for " + argv[0]));
	if (pid == 0) {
		// Die with the benchmark, whatever way it ends. (Cleared again
		// when the worker changes its credentials; it stops on its own
		// when its control channel closes.)
		::prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (::getppid() != parent)
			::_exit(127);
		::signal(SIGPIPE, SIG_DFL);
		for (int fd : inherit)
			::fcntl(fd, F_SETFD, 0);
		::execv(args[0], args.data());
		int err = errno;
		ssize_t ignored = ::write(reportWrite.get(), &err, sizeof(err));
		(void)ignored;
		::_exit(127);
	}
	auto child = std::unique_ptr<ChildProcess>(new ChildProcess(pid));
	reportWrite.reset();
	int err = 0;
	ssize_t n;
	do {
		n = ::read(reportRead.get(), &err, sizeof(err));
	} while (n < 0 && errno == EINTR);
	if (n == sizeof(err))
		return fail(Error::fromErrno(err, "executing " + argv[0]));
	return child;
}

ChildProcess::~ChildProcess() { stop(SIGKILL); }

bool ChildProcess::running()
{
	if (reaped_)
		return false;
	int status = 0;
	pid_t r = ::waitpid(pid_, &status, WNOHANG);
	if (r == pid_ || (r < 0 && errno == ECHILD)) {
		reaped_ = true;
		status_ = status;
		return false;
	}
	return true;
}

bool ChildProcess::waitExit(std::chrono::milliseconds timeout)
{
	auto deadline = Clock::now() + timeout;
	while (running()) {
		if (Clock::now() >= deadline)
			return false;
		std::this_thread::sleep_for(kPollInterval);
	}
	return true;
}

std::string ChildProcess::stop(int signal)
{
	if (!reaped_ && signal != 0 && running())
		::kill(pid_, signal);
	if (!waitExit(kStopTimeout)) {
		::kill(pid_, SIGKILL);
		// SIGKILL cannot be ignored; the bound only guards against a
		// process stuck in the kernel.
		if (!waitExit(kStopTimeout))
			return "still running after SIGKILL";
		return describeStatus(status_) + " after SIGKILL";
	}
	return describeStatus(status_);
}

Result<ProcessCpu> readProcessCpu(pid_t pid)
{
	auto text = readTextFile("/proc/" + std::to_string(pid) + "/stat");
	if (!text)
		return fail(std::move(text).error());
	// The command name may hold spaces and parentheses: count fields
	// after its closing parenthesis. utime and stime are fields 14 and 15,
	// i.e. the 12th and 13th after the name.
	size_t close = text->rfind(')');
	if (close == std::string::npos)
		return fail(Error::internal("unexpected /proc/" + std::to_string(pid) + "/stat"));
	std::istringstream fields(text->substr(close + 2));
	std::string skip;
	for (int i = 0; i < 11; ++i)
		fields >> skip;
	long long utime = 0, stime = 0;
	fields >> utime >> stime;
	const long ticks = ::sysconf(_SC_CLK_TCK);
	ProcessCpu cpu;
	cpu.user = std::chrono::microseconds(utime * 1000000 / ticks);
	cpu.system = std::chrono::microseconds(stime * 1000000 / ticks);

	if (pid == ::getpid()) {
		// Our own threads come and go: getrusage() keeps the time of
		// those that ended.
		rusage usage{};
		::getrusage(RUSAGE_SELF, &usage);
		auto us = [](const timeval &tv) { return std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec); };
		cpu.onCpu = us(usage.ru_utime) + us(usage.ru_stime);
		return cpu;
	}
	std::error_code ec;
	for (const auto &task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
		// "<ns on cpu> <ns waiting> <timeslices>"; a thread may end
		// between listing and reading.
		auto schedstat = readTextFile(task.path().string() + "/schedstat");
		if (schedstat)
			cpu.onCpu += std::chrono::nanoseconds(std::strtoll(schedstat->c_str(), nullptr, 10));
	}
	if (ec)
		return fail(Error::fromErrno(ec.value(), "listing the threads of " + std::to_string(pid)));
	return cpu;
}

Result<ProcessMemory> readProcessMemory(pid_t pid)
{
	std::string base = "/proc/" + std::to_string(pid);
	auto status = readTextFile(base + "/status");
	if (!status)
		return fail(std::move(status).error());
	auto rollup = readTextFile(base + "/smaps_rollup");
	if (!rollup)
		return fail(std::move(rollup).error());
	ProcessMemory m;
	m.rssKiB = kibField(*status, "VmRSS:").value_or(0);
	m.hwmKiB = kibField(*status, "VmHWM:").value_or(0);
	m.pssKiB = kibField(*rollup, "Pss:").value_or(0);
	m.privateDirtyKiB = kibField(*rollup, "Private_Dirty:").value_or(0);
	return m;
}

Result<std::vector<MappingMemory>> readMappingMemory(pid_t pid)
{
	auto smaps = readTextFile("/proc/" + std::to_string(pid) + "/smaps");
	if (!smaps)
		return fail(std::move(smaps).error());
	std::map<std::string, MappingMemory> byName;
	MappingMemory *current = nullptr;
	std::istringstream lines(*smaps);
	std::string line;
	while (std::getline(lines, line)) {
		std::istringstream words(line);
		std::string first;
		words >> first;
		if (first.empty())
			continue;
		if (first.back() != ':') {
			// "start-end perms offset dev inode [name]"
			std::string perms, offset, dev, inode, name;
			words >> perms >> offset >> dev >> inode >> name;
			if (name.empty())
				name = "[anonymous]";
			current = &byName[name];
			current->name = name;
			continue;
		}
		uint64_t kib = 0;
		words >> kib;
		if (!current)
			continue;
		if (first == "Rss:")
			current->rssKiB += kib;
		else if (first == "Pss:")
			current->pssKiB += kib;
		else if (first == "Private_Dirty:")
			current->privateDirtyKiB += kib;
	}
	std::vector<MappingMemory> out;
	for (auto &[name, m] : byName)
		out.push_back(std::move(m));
	std::sort(out.begin(), out.end(),
		  [](const MappingMemory &a, const MappingMemory &b) { return a.rssKiB > b.rssKiB; });
	return out;
}

Result<std::unique_ptr<NginxServer>> NginxServer::start(const std::string &binary, const std::filesystem::path &prefix,
							 const std::string &name, const std::string &config,
							 uint16_t port)
{
	std::filesystem::path conf = prefix / (name + ".conf");
	std::filesystem::path errorLog = prefix / (name + "-error.log");
	GVM_TRY_VOID(writeFile(conf, config), "while writing the nginx configuration");
	auto process = ChildProcess::spawn(
		{binary, "-p", prefix.string() + "/", "-c", conf.string(), "-e", errorLog.string()}, {});
	if (!process)
		return fail(std::move(process).error());
	std::unique_ptr<NginxServer> server(new NginxServer(std::move(*process), errorLog, port));

	auto deadline = Clock::now() + kStartTimeout;
	while (!acceptsConnections(port)) {
		if (!server->running())
			return fail(Error::internal("nginx '" + name + "' exited (" +
						    describeStatus(server->process_->exitStatus()) +
						    "): " + server->errorLogTail()));
		if (Clock::now() >= deadline)
			return fail(Error::internal("nginx '" + name + "' does not accept connections on port " +
						    std::to_string(port) + ": " + server->errorLogTail()));
		std::this_thread::sleep_for(kPollInterval);
	}
	return server;
}

NginxServer::~NginxServer()
{
	// SIGTERM: nginx's fast shutdown.
	process_->stop(SIGTERM);
}

std::string NginxServer::errorLogTail() const
{
	auto text = readTextFile(errorLog_.string());
	if (!text)
		return "(no error log)";
	return text->size() > kErrorLogTail ? text->substr(text->size() - kErrorLogTail) : *text;
}

Result<std::unique_ptr<WorkerProcess>> WorkerProcess::start(const Options &options)
{
	int pair[2];
	if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
		return fail(Error::fromErrno(errno, "creating the control socketpair"));
	UniqueFd ours(pair[0]), theirs(pair[1]);
	auto listener = loopbackSocket(0);
	if (!listener)
		return fail(std::move(listener).error());
	if (::listen(listener->get(), SOMAXCONN) < 0)
		return fail(Error::fromErrno(errno, "listening for the worker"));
	auto port = boundPort(listener->get());
	if (!port)
		return fail(std::move(port).error());
	timeval tv{};
	tv.tv_sec = kConfigureTimeout.count();
	::setsockopt(ours.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

	// Exactly what gvmd hands over: the control socket and the explicit
	// proxy listener, on descriptors named on the command line.
	auto process = ChildProcess::spawn({options.binary, "--control-fd", std::to_string(theirs.get()), "--listen",
					    "explicit=" + std::to_string(listener->get()), "--log-level",
					    options.logLevel},
					   {theirs.get(), listener->get()});
	if (!process)
		return fail(std::move(process).error());

	std::unique_ptr<WorkerProcess> worker(new WorkerProcess());
	worker->process_ = std::move(*process);
	worker->control_ = std::move(ours);
	worker->port_ = *port;
	worker->drainer_ = std::thread([w = worker.get()] { w->drain(); });
	theirs.reset();
	listener->reset();

	auto configured = worker->call("worker.configure", {{"sandbox", "be4c0001"},
							    {"uid", 0},
							    {"policy_text", options.policyText},
							    {"policy_file", "proxy-bench.yaml"},
							    {"monitor", false},
							    {"upstream_ca_pem", options.upstreamCaPem}});
	if (!configured) {
		Error error = std::move(configured).error().wrap("while configuring the worker");
		if (worker->process_->waitExit(std::chrono::milliseconds(100)))
			return fail(std::move(error).wrap("the worker ended with " +
							  describeStatus(worker->process_->exitStatus())));
		return fail(std::move(error));
	}
	const std::string *ca = stringField(*configured, "ca_pem");
	if (!ca || ca->empty())
		return fail(Error::internal("worker.configure returned no ca_pem: " + configured->dump()));
	worker->caPem_ = *ca;
	return worker;
}

WorkerProcess::~WorkerProcess() { stop(); }

Result<nlohmann::json> WorkerProcess::call(const std::string &method, nlohmann::json params)
{
	int64_t id;
	{
		std::lock_guard lock(mutex_);
		id = nextId_++;
		reply_.reset();
	}
	nlohmann::json request = {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", std::move(params)}};
	std::string line = request.dump() + "\n";
	size_t done = 0;
	while (done < line.size()) {
		ssize_t n = ::send(control_.get(), line.data() + done, line.size() - done, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(Error::fromErrno(errno, "sending " + method));
		done += static_cast<size_t>(n);
	}

	std::unique_lock lock(mutex_);
	bool answered = replied_.wait_for(lock, kConfigureTimeout, [&] {
		return channelClosed_ || (reply_ && reply_->contains("id") && (*reply_)["id"] == id);
	});
	if (!answered || !reply_)
		return fail(Error::internal(method + ": " +
					    (channelClosed_ ? "the worker closed its control channel"
							    : "no answer within " +
								      std::to_string(kConfigureTimeout.count()) + " s")));
	nlohmann::json reply = std::move(*reply_);
	reply_.reset();
	if (reply.contains("error"))
		return fail(Error(ErrorDomain::Rpc, 0, method + " failed: " + reply["error"].dump()));
	auto result = reply.find("result");
	if (result == reply.end() || !result->is_object())
		return fail(Error(ErrorDomain::Rpc, 0, method + ": no result object in " + reply.dump()));
	return std::move(*result);
}

void WorkerProcess::drain()
{
	std::string pending;
	std::vector<char> chunk(64 * 1024);
	for (;;) {
		pollfd pfd{control_.get(), POLLIN, 0};
		int ready = ::poll(&pfd, 1, static_cast<int>(kPollInterval.count() * 20));
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready == 0) {
			// stop() sets this only once the worker is reaped, so
			// nothing more can arrive.
			if (stopping_.load())
				break;
			continue;
		}
		ssize_t n = ready < 0 ? -1 : ::recv(control_.get(), chunk.data(), chunk.size(), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		pending.append(chunk.data(), static_cast<size_t>(n));
		size_t start = 0, eol;
		while ((eol = pending.find('\n', start)) != std::string::npos) {
			onLine(pending.substr(start, eol - start));
			start = eol + 1;
		}
		pending.erase(0, start);
		if (pending.size() > kMaxLine) {
			std::lock_guard lock(mutex_);
			report_.protocolError = true;
			pending.clear();
		}
	}
	std::lock_guard lock(mutex_);
	channelClosed_ = true;
	replied_.notify_all();
}

void WorkerProcess::onLine(const std::string &line)
{
	// The worker writes a decision as one flat JSON object with escaped
	// strings, so these byte sequences can only be its keys and values: a
	// record of an allowed 200 is counted without parsing it. Parsing every
	// record would cost this process (the client's) about as much CPU per
	// request as the client itself, taken from the machine the measured
	// paths share; gvmd's cost of reading records is sandbox-bench's to
	// measure. Any other line is parsed and looked at.
	static constexpr std::string_view kDecision = "{\"jsonrpc\":\"2.0\",\"method\":\"decision\",\"params\":{\"record\":{";
	if (std::string_view(line).starts_with(kDecision) && line.find(",\"action\":\"allow\",") != std::string::npos &&
	    line.find(",\"status\":200,") != std::string::npos && line.ends_with("}}}")) {
		std::lock_guard lock(mutex_);
		++report_.decisions;
		++report_.allowed200;
		return;
	}
	nlohmann::json message = nlohmann::json::parse(line, nullptr, false);
	std::lock_guard lock(mutex_);
	if (message.is_discarded() || !message.is_object()) {
		report_.protocolError = true;
		return;
	}
	if (message.contains("id") && (message.contains("result") || message.contains("error"))) {
		reply_ = std::move(message);
		replied_.notify_all();
		return;
	}
	const std::string *method = stringField(message, "method");
	if (!method || *method != "decision") {
		++report_.otherNotifications;
		return;
	}
	++report_.decisions;
	auto params = message.find("params");
	const nlohmann::json *record = nullptr;
	if (params != message.end() && params->is_object()) {
		auto r = params->find("record");
		if (r != params->end() && r->is_object())
			record = &*r;
	}
	bool ok = false;
	if (record) {
		const std::string *action = stringField(*record, "action");
		auto status = record->find("status");
		ok = action && *action == "allow" && status != record->end() && status->is_number_integer() &&
		     status->get<int>() == 200;
	}
	if (ok)
		++report_.allowed200;
	else if (report_.anomalies.size() < kMaxAnomalies)
		report_.anomalies.push_back(record ? record->dump() : message.dump());
}

WorkerReport WorkerProcess::report() const
{
	std::lock_guard lock(mutex_);
	return report_;
}

std::string WorkerProcess::stop()
{
	if (!stopped_.empty())
		return stopped_;
	// The end of the control stream stops the worker, as when gvmd
	// closes its side.
	::shutdown(control_.get(), SHUT_WR);
	stopped_ = process_->stop(0);
	stopping_.store(true);
	if (drainer_.joinable())
		drainer_.join();
	return stopped_;
}

std::string nginxPreamble(const std::filesystem::path &dir, const std::string &name)
{
	std::string d = dir.string();
	std::string tmp = d + "/" + name + "-temp";
	return "daemon off;\n"
	       "master_process off;\n"
	       "worker_processes 1;\n"
	       "pid " + d + "/" + name + ".pid;\n"
	       "error_log " + d + "/" + name + "-error.log warn;\n"
	       "events { worker_connections 1024; }\n"
	       "http {\n"
	       "  access_log off;\n"
	       "  client_body_temp_path " + tmp + "-body;\n"
	       "  proxy_temp_path " + tmp + "-proxy;\n"
	       "  fastcgi_temp_path " + tmp + "-fastcgi;\n"
	       "  uwsgi_temp_path " + tmp + "-uwsgi;\n"
	       "  scgi_temp_path " + tmp + "-scgi;\n"
	       "  default_type application/octet-stream;\n"
	       // The keep-alive leg must not be cut by nginx's default of
	       // 1000 requests per connection.
	       "  keepalive_requests 1000000;\n"
	       "  keepalive_timeout 120s;\n"
	       "  ssl_protocols TLSv1.2 TLSv1.3;\n"
	       "  ssl_certificate " + d + "/server.pem;\n"
	       "  ssl_certificate_key " + d + "/server.key;\n";
}

std::string reverseProxyConfig(const std::filesystem::path &dir, const std::vector<std::string> &listen,
			       const std::string &upstream, const std::string &serverName)
{
	std::string config = nginxPreamble(dir, "proxy") +
			     "  upstream origin {\n"
			     "    server " + upstream + ";\n"
			     "    keepalive 32;\n"
			     "  }\n"
			     "  server {\n";
	for (const std::string &address : listen)
		config += "    listen " + address + " ssl;\n";
	return config +
	       "    server_name " + serverName + ";\n"
	       "    location / {\n"
	       "      proxy_pass https://origin;\n"
	       "      proxy_http_version 1.1;\n"
	       "      proxy_set_header Connection \"\";\n"
	       "      proxy_set_header Host " + serverName + ";\n"
	       "      proxy_ssl_verify on;\n"
	       "      proxy_ssl_trusted_certificate " + dir.string() + "/ca.pem;\n"
	       "      proxy_ssl_name " + serverName + ";\n"
	       "      proxy_ssl_server_name on;\n"
	       "      proxy_ssl_session_reuse on;\n"
	       // The worker negotiates TLS 1.3 upstream; nginx 1.22 would
	       // stop at 1.2 by default.
	       "      proxy_ssl_protocols TLSv1.3;\n"
	       // Stream large bodies through memory buffers, as the worker
	       // does, instead of spooling them to a temp file.
	       "      proxy_max_temp_file_size 0;\n"
	       "    }\n"
	       "  }\n"
	       "}\n";
}


} // namespace gvm::bench
