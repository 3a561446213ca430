// SPDX-License-Identifier: Apache-2.0
#include "tests/support/upstream.h"

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <netinet/in.h>
#include <sched.h>
#include <sstream>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "common/unique_fd.h"

extern char **environ;

namespace gvm::test {

namespace {

constexpr int kStartAttempts = 4;
constexpr uint64_t k1K = 1024;
constexpr uint64_t k100M = 100ull * 1024 * 1024;

const UpstreamServer kServers[] = {
	UpstreamServer::HttpsGood,
	UpstreamServer::HttpsWrongName,
	UpstreamServer::HttpsExpired,
	UpstreamServer::HttpsUntrusted,
	UpstreamServer::HttpPlain,
};

// Binds n distinct ephemeral ports on 127.0.0.1 and releases them, for nginx
// to bind next. Another process may take one in between: create() retries.
Result<std::vector<uint16_t>> pickFreePorts(size_t n)
{
	std::vector<UniqueFd> held;
	std::vector<uint16_t> ports;
	for (size_t i = 0; i < n; i++) {
		UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
		if (!fd)
			return fail(Error::fromErrno(errno, "creating a socket"));
		sockaddr_in addr{};
		addr.sin_family = AF_INET;
		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t length = sizeof(addr);
		if (::bind(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) < 0 ||
		    ::getsockname(fd.get(), reinterpret_cast<sockaddr *>(&addr), &length) < 0)
			return fail(Error::fromErrno(errno, "binding an ephemeral port on 127.0.0.1"));
		ports.push_back(ntohs(addr.sin_port));
		held.push_back(std::move(fd));
	}
	return ports;
}

bool acceptsConnections(uint16_t port)
{
	UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	sockaddr_in addr{};
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = htons(port);
	return fd && ::connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0;
}

bool isHostNameChar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
	       c == '.' || c == '_';
}

} // namespace

const char *toString(UpstreamServer server)
{
	switch (server) {
	case UpstreamServer::HttpsGood:
		return "https_good";
	case UpstreamServer::HttpsWrongName:
		return "https_wrong_name";
	case UpstreamServer::HttpsExpired:
		return "https_expired";
	case UpstreamServer::HttpsUntrusted:
		return "https_untrusted";
	case UpstreamServer::HttpPlain:
		return "http_plain";
	}
	return "unknown";
}

// A child process in its own right: stdin from /dev/null, stdout and stderr
// appended to a log file, SIGKILLed if the test process dies first
// (PR_SET_PDEATHSIG), and killed and reaped on destruction.
class NginxUpstream::Process
{
public:
	static Result<std::unique_ptr<Process>> spawn(const std::vector<std::string> &argvIn,
						      const std::string &logFile)
	{
		// Everything the child needs is built before fork(): after it, the
		// child only makes system calls.
		std::vector<std::string> argv = argvIn;
		std::vector<char *> cargv;
		for (auto &a : argv)
			cargv.push_back(a.data());
		cargv.push_back(nullptr);

		UniqueFd log(::open(logFile.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
		if (!log)
			return fail(Error::fromErrno(errno, "opening " + logFile));
		UniqueFd devNull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
		if (!devNull)
			return fail(Error::fromErrno(errno, "opening /dev/null"));
		// exec failures come back through this pipe (closed by a good exec).
		int errPipe[2];
		if (::pipe2(errPipe, O_CLOEXEC) < 0)
			return fail(Error::fromErrno(errno, "creating a pipe"));
		UniqueFd errRead(errPipe[0]), errWrite(errPipe[1]);

		const pid_t parent = ::getpid();
		pid_t pid = ::fork();
		if (pid < 0)
			return fail(Error::fromErrno(errno, "forking for " + argv[0]));
		if (pid == 0) {
			// A test killed by its timeout must not leave servers behind.
			if (::prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || ::getppid() != parent)
				::_exit(126);
			::dup2(devNull.get(), 0);
			::dup2(log.get(), 1);
			::dup2(log.get(), 2);
			::execve(cargv[0], cargv.data(), environ);
			int err = errno;
			ssize_t ignored = ::write(errWrite.get(), &err, sizeof(err));
			(void)ignored;
			::_exit(127);
		}
		errWrite.reset();
		auto process = std::unique_ptr<Process>(new Process(pid));
		int err = 0;
		ssize_t n;
		do {
			n = ::read(errRead.get(), &err, sizeof(err));
		} while (n < 0 && errno == EINTR);
		if (n == sizeof(err))
			return fail(Error::fromErrno(err, "executing " + argv[0]));
		return process;
	}

	~Process()
	{
		if (!status_) {
			::kill(pid_, SIGKILL);
			int status;
			while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
			}
		}
	}

	pid_t pid() const { return pid_; }

	bool running()
	{
		if (status_)
			return false;
		int status;
		if (::waitpid(pid_, &status, WNOHANG) == pid_) {
			status_ = decodeStatus(status);
			return false;
		}
		return true;
	}

	std::optional<int> exitStatus() const { return status_; }

	// sig, a bounded wait, then SIGKILL; always reaps.
	void stop(int sig, std::chrono::milliseconds timeout)
	{
		if (!running())
			return;
		::kill(pid_, sig);
		if (waitFor([&] { return !running(); }, timeout))
			return;
		::kill(pid_, SIGKILL);
		waitFor([&] { return !running(); }, std::chrono::seconds(10));
	}

private:
	explicit Process(pid_t pid) : pid_(pid) {}

	pid_t pid_;
	std::optional<int> status_;
};

NginxUpstream::NginxUpstream() = default;

NginxUpstream::~NginxUpstream() { stop(); }

Result<std::unique_ptr<NginxUpstream>> NginxUpstream::create(const TestPki &pki, Options options)
{
	std::unique_ptr<NginxUpstream> upstream;
	try {
		upstream.reset(new NginxUpstream());
	} catch (const std::exception &e) {
		return fail(Error::internal(std::string("creating the nginx prefix: ") + e.what()));
	}
	upstream->stopTimeout_ = options.stopTimeout;
	auto started = upstream->start(pki, options);
	if (!started)
		return fail(std::move(started).error().wrap("while starting the nginx upstream"));
	return upstream;
}

Result<void> NginxUpstream::start(const TestPki &pki, const Options &options)
{
	const std::string &p = prefix();
	for (const char *dir : {"/files", "/requests", "/tmp"})
		GVM_TRY_VOID(makeDir(p + dir), "while preparing the prefix");

	// The 1 KiB file has a recognisable pattern; the 100 MiB one is a hole.
	std::string pattern;
	while (pattern.size() < k1K)
		pattern += "0123456789abcdef";
	GVM_TRY_VOID(writeFile(p + "/files/1K", pattern), "while creating /file/1K");
	{
		UniqueFd fd(::open((p + "/files/100M").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
		if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(k100M)) < 0)
			return fail(Error::fromErrno(errno, "creating /file/100M"));
	}

	GVM_TRY_VOID(startBackend(options), "while starting upstream_backend.py");

	for (int attempt = 1;; attempt++) {
		bool retry = false;
		auto started = startNginx(pki, options, &retry);
		if (started)
			return {};
		if (!retry || attempt == kStartAttempts)
			return fail(std::move(started).error().wrap("while starting nginx (attempt " +
								     std::to_string(attempt) + ")"));
	}
}

Result<void> NginxUpstream::startBackend(const Options &options)
{
	std::string script = options.backend;
	if (script.empty()) {
		const char *env = std::getenv("GVM_TEST_BACKEND");
		if (!env)
			return fail(Error::internal("GVM_TEST_BACKEND is not set (run the tests through meson)"));
		script = env;
	}
	const std::string portFile = prefix() + "/backend.port";
	auto process = Process::spawn({findPython(options.python), script, "--dir", recordDir(), "--port-file",
				       portFile},
				      prefix() + "/backend.log");
	if (!process)
		return fail(std::move(process).error());
	backend_ = std::move(*process);

	bool ready = waitFor([&] { return !backend_->running() || !readFile(portFile).empty(); },
			     options.startTimeout);
	if (!backend_->running())
		return fail(Error::internal("upstream_backend.py exited (status " +
					    std::to_string(backend_->exitStatus().value_or(-1)) +
					    "): " + tail(readFile(prefix() + "/backend.log"))));
	if (!ready)
		return fail(Error::internal("upstream_backend.py did not report its port within " +
					    std::to_string(options.startTimeout.count()) + " ms"));
	int port = std::atoi(readFile(portFile).c_str());
	if (port <= 0 || port > 65535)
		return fail(Error::internal("upstream_backend.py reported a bad port: " + readFile(portFile)));
	backendPort_ = static_cast<uint16_t>(port);
	return {};
}

Result<void> NginxUpstream::startNginx(const TestPki &pki, const Options &options, bool *retry)
{
	*retry = false;
	const std::string &p = prefix();
	auto ports = pickFreePorts(std::size(kServers));
	if (!ports)
		return fail(std::move(ports).error());
	ports_.clear();
	for (size_t i = 0; i < std::size(kServers); i++)
		ports_.emplace_back(kServers[i], (*ports)[i]);

	std::ostringstream conf;
	conf << "# Written by tests/support/upstream.cpp for one test; removed with its prefix.\n"
	     << "daemon off;\n"
	     // One process: nothing switches to another uid, so the 0700 prefix
	     // stays readable, and SIGTERM ends everything at once.
	     << "master_process off;\n"
	     << "worker_processes 1;\n";
	// As root nginx resolves its default user "nobody" and a group Debian
	// calls "nogroup": name an existing pair (unused without workers).
	if (::geteuid() == 0)
		conf << "user root root;\n";
	conf << "pid " << p << "/nginx.pid;\n"
	     << "error_log stderr notice;\n"
	     << "events { worker_connections 1024; }\n"
	     << "http {\n"
	     << "    log_format gvm_test '$server_port\\t$status\\t$host\\t$ssl_server_name\\t"
		"$http_x_test_id\\t$bytes_sent\\t$request';\n"
	     << "    access_log " << p << "/access.log gvm_test;\n"
	     << "    client_body_temp_path " << p << "/tmp/client_body;\n"
	     << "    proxy_temp_path " << p << "/tmp/proxy;\n"
	     << "    fastcgi_temp_path " << p << "/tmp/fastcgi;\n"
	     << "    uwsgi_temp_path " << p << "/tmp/uwsgi;\n"
	     << "    scgi_temp_path " << p << "/tmp/scgi;\n"
	     << "    default_type application/octet-stream;\n"
	     << "    sendfile on;\n"
	     << "    tcp_nodelay on;\n"
	     << "    server_tokens off;\n"
	     << "    client_max_body_size 0;\n"
	     << "    keepalive_timeout 60s;\n"
	     << "    keepalive_requests 100000;\n"
	     << "    ssl_protocols TLSv1.2 TLSv1.3;\n"
	     << "    map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n"
	     << "    upstream gvm_backend { server 127.0.0.1:" << backendPort_ << "; }\n"
	     << "    proxy_http_version 1.1;\n"
	     << "    proxy_buffering off;\n"
	     << "    proxy_request_buffering off;\n"
	     << "    proxy_set_header Host $http_host;\n"
	     << "    proxy_set_header Upgrade $http_upgrade;\n"
	     << "    proxy_set_header Connection $connection_upgrade;\n"
	     << "    proxy_read_timeout 300s;\n"
	     << "    proxy_send_timeout 300s;\n";
	for (auto [server, port] : ports_) {
		conf << "    server {\n";
		if (server == UpstreamServer::HttpPlain) {
			conf << "        listen 127.0.0.1:" << port << ";\n";
		} else {
			std::string cert, key;
			switch (server) {
			case UpstreamServer::HttpsWrongName:
				cert = pki.wrongNameCert(), key = pki.wrongNameKey();
				break;
			case UpstreamServer::HttpsExpired:
				cert = pki.expiredCert(), key = pki.expiredKey();
				break;
			case UpstreamServer::HttpsUntrusted:
				cert = pki.untrustedCert(), key = pki.untrustedKey();
				break;
			default:
				cert = pki.goodCert(), key = pki.goodKey();
				break;
			}
			conf << "        listen 127.0.0.1:" << port << " ssl;\n"
			     << "        ssl_certificate " << cert << ";\n"
			     << "        ssl_certificate_key " << key << ";\n";
		}
		conf << "        server_name _;\n"
		     << "        location = / { default_type text/plain; return 200 \"hello from "
		     << toString(server) << "\\n\"; }\n"
		     << "        location /file/ { alias " << p << "/files/; }\n";
		for (int code : statusCodes()) {
			conf << "        location = /status/" << code << " { ";
			if (code == 204 || code == 304)
				conf << "return " << code << ";";
			else if (code >= 300 && code < 400)
				conf << "return " << code << " /;";
			else
				conf << "default_type text/plain; return " << code << " \"status " << code << "\\n\";";
			conf << " }\n";
		}
		conf << "        location /echo { proxy_pass http://gvm_backend; }\n"
		     << "        location = /sse { proxy_pass http://gvm_backend; }\n"
		     << "        location = /ws { proxy_pass http://gvm_backend; }\n"
		     << "        location = /slow { proxy_pass http://gvm_backend; }\n"
		     << "    }\n";
	}
	conf << "}\n";

	const std::string confPath = p + "/nginx.conf";
	const std::string pidPath = p + "/nginx.pid";
	const std::string logPath = p + "/nginx.log";
	GVM_TRY_VOID(writeFile(confPath, conf.str()), "while writing nginx.conf");
	// Fresh for this attempt: the pid file is the readiness signal, and
	// the log is searched for a lost port.
	::unlink(pidPath.c_str());
	::unlink(logPath.c_str());

	// -e stderr: otherwise nginx opens its compiled-in /var/log/nginx/error.log
	// before it reads the configuration.
	auto process = Process::spawn({options.nginx, "-p", p + "/", "-c", confPath, "-e", "stderr"}, logPath);
	if (!process)
		return fail(std::move(process).error());
	nginx_ = std::move(*process);

	// nginx writes its pid file only after it has bound every listener.
	const std::string expected = std::to_string(nginx_->pid());
	bool ready = waitFor(
		[&] {
			if (!nginx_->running())
				return true;
			std::string pid = readFile(pidPath);
			return pid.substr(0, pid.find('\n')) == expected;
		},
		options.startTimeout);
	if (!nginx_->running()) {
		std::string log = readFile(logPath);
		// nginx itself retries bind() for 2 s before giving up.
		*retry = log.find("Address already in use") != std::string::npos;
		return fail(Error::internal("nginx exited (status " +
					    std::to_string(nginx_->exitStatus().value_or(-1)) + "): " + tail(log)));
	}
	if (!ready) {
		nginx_->stop(SIGKILL, options.stopTimeout);
		return fail(Error::internal("nginx did not start within " + std::to_string(options.startTimeout.count()) +
					    " ms: " + tail(readFile(logPath))));
	}
	for (auto [server, port] : ports_) {
		if (!acceptsConnections(port))
			return fail(Error::internal(std::string("nginx does not accept connections for ") +
						    toString(server) + " on 127.0.0.1:" + std::to_string(port)));
	}
	return {};
}

void NginxUpstream::stop()
{
	if (nginx_) {
		// SIGTERM: nginx's fast shutdown closes listeners and connections.
		nginx_->stop(SIGTERM, stopTimeout_);
		nginx_.reset();
	}
	if (backend_) {
		backend_->stop(SIGTERM, stopTimeout_);
		backend_.reset();
	}
}

uint16_t NginxUpstream::port(UpstreamServer server) const
{
	for (auto [s, port] : ports_) {
		if (s == server)
			return port;
	}
	return 0;
}

std::string NginxUpstream::url(UpstreamServer server, std::string_view host, std::string_view path) const
{
	std::string out = server == UpstreamServer::HttpPlain ? "http://" : "https://";
	out += host;
	out += ':';
	out += std::to_string(port(server));
	out += path;
	return out;
}

std::string NginxUpstream::accessLogPath() const { return prefix() + "/access.log"; }

std::string NginxUpstream::recordDir() const { return prefix() + "/requests"; }

std::optional<std::string> NginxUpstream::recordedRequest(std::string_view testId) const
{
	std::string path = recordDir() + "/" + std::string(testId) + ".req";
	if (::access(path.c_str(), F_OK) < 0)
		return std::nullopt;
	return readFile(path);
}

std::vector<AccessLogEntry> NginxUpstream::accessLog() const
{
	std::vector<AccessLogEntry> entries;
	std::istringstream in(readFile(accessLogPath()));
	std::string line;
	// nginx writes a line with one write(): a line without '\n' is still
	// being written, and getline would return it too, so cut on '\n' only.
	while (std::getline(in, line)) {
		if (in.eof())
			break;
		std::vector<std::string> fields;
		size_t start = 0;
		for (;;) {
			size_t tab = line.find('\t', start);
			fields.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
			if (tab == std::string::npos)
				break;
			start = tab + 1;
		}
		if (fields.size() != 7)
			continue;
		for (auto &f : fields) {
			if (f == "-")
				f.clear();
		}
		AccessLogEntry entry;
		int port = std::atoi(fields[0].c_str());
		for (auto [server, p] : ports_) {
			if (p == port)
				entry.server = toString(server);
		}
		entry.status = std::atoi(fields[1].c_str());
		entry.host = fields[2];
		entry.sni = fields[3];
		entry.testId = fields[4];
		entry.bytesSent = std::strtoull(fields[5].c_str(), nullptr, 10);
		entry.request = fields[6];
		entry.line = line;
		entries.push_back(std::move(entry));
	}
	return entries;
}

size_t NginxUpstream::countRequests(std::string_view testId) const
{
	size_t count = 0;
	for (const auto &entry : accessLog()) {
		if (entry.testId == testId)
			count++;
	}
	return count;
}

bool NginxUpstream::waitForRequests(std::string_view testId, size_t count, std::chrono::milliseconds timeout) const
{
	return waitFor([&] { return countRequests(testId) >= count; }, timeout);
}

std::string NginxUpstream::diagnostics() const
{
	return "--- nginx.log\n" + tail(readFile(prefix() + "/nginx.log")) + "--- backend.log\n" +
	       tail(readFile(prefix() + "/backend.log"));
}

pid_t NginxUpstream::nginxPid() const { return nginx_ ? nginx_->pid() : -1; }

pid_t NginxUpstream::backendPid() const { return backend_ ? backend_->pid() : -1; }

const std::vector<int> &NginxUpstream::statusCodes()
{
	static const std::vector<int> codes = {200, 201, 202, 204, 301, 302, 303, 304, 307, 308, 400, 401, 403,
					       404, 405, 408, 409, 410, 413, 418, 429, 500, 501, 502, 503, 504};
	return codes;
}

Result<void> enterPrivateHosts(const std::vector<std::pair<std::string, std::string>> &entries)
{
	std::string hosts = "# Written by gvm's test fixture (enterPrivateHosts); private to this test.\n"
			    "127.0.0.1 localhost\n";
	for (const auto &[name, address] : entries) {
		unsigned char bytes[sizeof(in6_addr)];
		if (::inet_pton(AF_INET, address.c_str(), bytes) != 1 && ::inet_pton(AF_INET6, address.c_str(), bytes) != 1)
			return fail(Error::internal("private hosts: \"" + address + "\" is not an IP address"));
		if (name.empty() || name.size() > 253)
			return fail(Error::internal("private hosts: bad host name length for \"" + name + "\""));
		for (char c : name) {
			if (!isHostNameChar(c))
				return fail(Error::internal("private hosts: bad character in host name \"" + name + "\""));
		}
		hosts += address + " " + name + "\n";
	}

	// unshare() moves only the calling thread into the new namespace; with
	// other threads alive, the process would be split between two views.
	std::error_code ec;
	size_t threads = 0;
	for (auto it = std::filesystem::directory_iterator("/proc/self/task", ec);
	     !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
		threads++;
	if (threads != 1)
		return fail(Error::internal("private hosts: the process must have one thread (it has " +
					    std::to_string(threads) + ")"));

	// A mount namespace of our own: the bind mount below is visible to this
	// process and its future children only; the host keeps its /etc/hosts.
	if (::unshare(CLONE_NEWNS) < 0)
		return fail(Error::fromErrno(errno, "private hosts: unshare(CLONE_NEWNS) (needs root)"));
	// The new namespace starts as a copy whose mounts may be shared with the
	// host's (systemd makes / shared): make every one private so nothing we
	// mount propagates back.
	if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0)
		return fail(Error::fromErrno(errno, "private hosts: making / rprivate"));

	std::string dir = (std::filesystem::temp_directory_path(ec) / "gvm-hosts-XXXXXX").string();
	if (!::mkdtemp(dir.data()))
		return fail(Error::fromErrno(errno, "private hosts: creating a temporary directory"));
	const std::string file = dir + "/hosts";
	auto written = writeFile(file, hosts);
	if (written && ::chmod(dir.c_str(), 0755) < 0)
		written = fail(Error::fromErrno(errno, "making " + dir + " readable"));
	if (written && ::mount(file.c_str(), "/etc/hosts", nullptr, MS_BIND, nullptr) < 0)
		written = fail(Error::fromErrno(errno, "private hosts: bind-mounting " + file + " over /etc/hosts"));
	// The mount holds the inode: the name and its directory can go now.
	::unlink(file.c_str());
	::rmdir(dir.c_str());
	return written;
}

} // namespace gvm::test
