// SPDX-License-Identifier: Apache-2.0
#include "tests/support/upstream_netns.h"

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <random>
#include <sched.h>
#include <sstream>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

namespace gvm::test {

namespace {

// 10.250.0.0/16, split into /30 blocks.
constexpr uint32_t kPoolBase = (10u << 24) | (250u << 16);
constexpr uint32_t kPoolBlocks = (1u << 16) / 4;
constexpr int kPickAttempts = 64;
constexpr uint16_t kHttpsPort = 443;
constexpr uint16_t kHttpPort = 80;
constexpr uint16_t kDnsPort = 53;
// The name of the fixture's own readiness query to dnsmasq; never a test's.
constexpr char kProbeName[] = "gvmtu-fixture-probe.invalid";

std::string ipv4String(uint32_t hostOrder)
{
	in_addr a{htonl(hostOrder)};
	char buf[INET_ADDRSTRLEN];
	::inet_ntop(AF_INET, &a, buf, sizeof(buf));
	return buf;
}

// True if some host interface has an IPv4 address inside [base, base + 4).
bool blockInUse(uint32_t base)
{
	ifaddrs *list = nullptr;
	if (::getifaddrs(&list) < 0)
		return true;
	bool used = false;
	for (ifaddrs *i = list; i && !used; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
			continue;
		uint32_t a = ntohl(reinterpret_cast<sockaddr_in *>(i->ifa_addr)->sin_addr.s_addr);
		used = (a & ~3u) == base;
	}
	::freeifaddrs(list);
	return used;
}

sockaddr_in socketAddress(const std::string &address, uint16_t port)
{
	sockaddr_in addr{};
	addr.sin_family = AF_INET;
	addr.sin_port = htons(port);
	::inet_pton(AF_INET, address.c_str(), &addr.sin_addr);
	return addr;
}

// A TCP connection from the host namespace within a short bound.
bool acceptsConnections(const std::string &address, uint16_t port)
{
	UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
	if (!fd)
		return false;
	sockaddr_in addr = socketAddress(address, port);
	if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0)
		return true;
	if (errno != EINPROGRESS)
		return false;
	pollfd pfd{fd.get(), POLLOUT, 0};
	if (::poll(&pfd, 1, 500) != 1)
		return false;
	int err = 0;
	socklen_t len = sizeof(err);
	return ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
}

// One A query for `name` over UDP; true if any answer came back in time.
bool dnsAnswers(const std::string &address, std::string_view name)
{
	std::string query = {'\x47', '\x54', '\x01', '\x00', '\x00', '\x01', '\x00', '\x00',
			     '\x00', '\x00', '\x00', '\x00'}; // id 0x4754, RD, one question
	size_t start = 0;
	while (start <= name.size()) {
		size_t dot = name.find('.', start);
		std::string_view label = name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
		query += static_cast<char>(label.size());
		query += label;
		if (dot == std::string_view::npos)
			break;
		start = dot + 1;
	}
	query += std::string("\x00\x00\x01\x00\x01", 5); // root, type A, class IN
	UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	if (!fd)
		return false;
	sockaddr_in addr = socketAddress(address, kDnsPort);
	if (::sendto(fd.get(), query.data(), query.size(), 0, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) < 0)
		return false;
	pollfd pfd{fd.get(), POLLIN, 0};
	if (::poll(&pfd, 1, 300) != 1)
		return false;
	char buf[512];
	ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
	return n >= 12 && buf[0] == '\x47' && buf[1] == '\x54';
}

std::string lower(std::string_view s)
{
	std::string out(s);
	for (char &c : out)
		if (c >= 'A' && c <= 'Z')
			c = static_cast<char>(c - 'A' + 'a');
	return out;
}

// The raw TCP echo server: every byte back, one thread per connection.
// argv: address, echo port, banner port, banner.
constexpr char kEchoServer[] = R"PY(
import socket, sys, threading
def serve(c, banner):
    with c:
        if banner:
            c.sendall(banner)
        while True:
            data = c.recv(65536)
            if not data:
                return
            c.sendall(data)
def listen(port, banner):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], port))
    s.listen(128)
    print(f"echo: listening on {sys.argv[1]}:{port}", file=sys.stderr, flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, banner), daemon=True).start()
threading.Thread(target=listen, args=(int(sys.argv[3]), sys.argv[4].encode()), daemon=True).start()
listen(int(sys.argv[2]), b"")
)PY";

} // namespace

// A child process that runs in the fixture's network namespace: stdin from
// /dev/null, stdout and stderr appended to a log file, SIGKILLed if the test
// process dies first (PR_SET_PDEATHSIG), killed and reaped on destruction.
class UpstreamNetns::Process
{
public:
	static Result<std::unique_ptr<Process>> spawn(const std::vector<std::string> &argvIn, const std::string &logFile,
						      int netns)
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
		// setns and exec failures come back through this pipe (closed by a
		// good exec): [step, errno].
		int errPipe[2];
		if (::pipe2(errPipe, O_CLOEXEC) < 0)
			return fail(Error::fromErrno(errno, "creating a pipe"));
		UniqueFd errRead(errPipe[0]), errWrite(errPipe[1]);

		const pid_t parent = ::getpid();
		pid_t pid = ::fork();
		if (pid < 0)
			return fail(Error::fromErrno(errno, "forking for " + argv[0]));
		if (pid == 0) {
			int report[2] = {0, 0};
			// A test killed by its timeout must not leave servers behind.
			if (::prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || ::getppid() != parent)
				::_exit(126);
			// Into the fixture's namespace: the server binds there and
			// is reachable from the host only through the veth pair.
			if (netns >= 0 && ::setns(netns, CLONE_NEWNET) < 0) {
				report[0] = 1, report[1] = errno;
			} else {
				::dup2(devNull.get(), 0);
				::dup2(log.get(), 1);
				::dup2(log.get(), 2);
				::execve(cargv[0], cargv.data(), environ);
				report[0] = 2, report[1] = errno;
			}
			ssize_t ignored = ::write(errWrite.get(), report, sizeof(report));
			(void)ignored;
			::_exit(127);
		}
		errWrite.reset();
		auto process = std::unique_ptr<Process>(new Process(pid));
		int report[2] = {0, 0};
		ssize_t n;
		do {
			n = ::read(errRead.get(), report, sizeof(report));
		} while (n < 0 && errno == EINTR);
		if (n == sizeof(report))
			return fail(Error::fromErrno(report[1], (report[0] == 1 ? "entering the namespace for "
										      : "executing ") + argv[0]));
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
		int status;
		while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
		}
		status_ = decodeStatus(status);
	}

private:
	explicit Process(pid_t pid) : pid_(pid) {}

	pid_t pid_;
	std::optional<int> status_;
};

UpstreamNetns::UpstreamNetns() = default;

UpstreamNetns::~UpstreamNetns() { stop(); }

Result<std::unique_ptr<UpstreamNetns>> UpstreamNetns::create(const TestPki &pki, Options options)
{
	std::unique_ptr<UpstreamNetns> netns;
	try {
		netns.reset(new UpstreamNetns());
	} catch (const std::exception &e) {
		return fail(Error::internal(std::string("creating the prefix: ") + e.what()));
	}
	netns->stopTimeout_ = options.stopTimeout;
	// On failure the unique_ptr's destructor undoes every step that was done.
	auto started = netns->start(pki, options);
	if (!started)
		return fail(std::move(started).error().wrap("while starting the upstream namespace"));
	return netns;
}

Result<std::unique_ptr<UpstreamNetns::Process>> UpstreamNetns::spawn(const std::vector<std::string> &argv,
								       const std::string &logFile)
{
	return Process::spawn(argv, logFile, netns_.get());
}

Result<void> UpstreamNetns::start(const TestPki &pki, const Options &options)
{
	const std::string &p = prefix();
	// The worker and nginx run as other users than the one that made the
	// prefix (0700 by mkdtemp): the files must be readable.
	if (::chmod(p.c_str(), 0755) < 0)
		return fail(Error::fromErrno(errno, "making " + p + " readable"));
	for (const char *dir : {"/files", "/requests", "/tmp"})
		GVM_TRY_VOID(makeDir(p + dir), "while preparing the prefix");
	GVM_TRY_VOID(makeNamespace(options), "while making the namespace");
	GVM_TRY_VOID(startBackend(options), "while starting upstream_backend.py");
	GVM_TRY_VOID(startNginx(pki, options), "while starting nginx");
	GVM_TRY_VOID(startDnsmasq(options), "while starting dnsmasq");
	GVM_TRY_VOID(startEcho(options), "while starting the TCP echo server");
	return {};
}

Result<void> UpstreamNetns::makeNamespace(const Options &options)
{
	ipBinary_ = options.ip;

	// The holder: a child that unshares a network namespace and waits, so
	// the namespace has a pid to be named by (/proc/<pid>/ns/net). The
	// test process itself never leaves the host namespace.
	int ready[2];
	if (::pipe2(ready, O_CLOEXEC) < 0)
		return fail(Error::fromErrno(errno, "creating a pipe"));
	UniqueFd readyRead(ready[0]), readyWrite(ready[1]);
	const pid_t parent = ::getpid();
	pid_t pid = ::fork();
	if (pid < 0)
		return fail(Error::fromErrno(errno, "forking the namespace holder"));
	if (pid == 0) {
		if (::prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || ::getppid() != parent)
			::_exit(126);
		// A network namespace of our own: only lo until the veth peer
		// is moved in. Nothing the servers bind is visible on the host.
		int err = ::unshare(CLONE_NEWNET) < 0 ? errno : 0;
		ssize_t ignored = ::write(readyWrite.get(), &err, sizeof(err));
		(void)ignored;
		if (err)
			::_exit(1);
		readyWrite.reset();
		readyRead.reset();
		for (;;)
			::pause();
	}
	holder_ = pid;
	readyWrite.reset();
	int err = -1;
	ssize_t n;
	do {
		n = ::read(readyRead.get(), &err, sizeof(err));
	} while (n < 0 && errno == EINTR);
	if (n != sizeof(err))
		return fail(Error::internal("the namespace holder died before unsharing"));
	if (err)
		return fail(Error::fromErrno(err, "unshare(CLONE_NEWNET) (needs root)"));
	netns_ = UniqueFd(::open(netnsPath().c_str(), O_RDONLY | O_CLOEXEC));
	if (!netns_)
		return fail(Error::fromErrno(errno, "opening " + netnsPath()));

	// A free /30 and free names, at random: tests of other runs may hold
	// others at the same time.
	std::random_device random;
	std::string lastError;
	for (int attempt = 0; attempt < kPickAttempts; attempt++) {
		uint32_t block = kPoolBase + 4 * (random() % kPoolBlocks);
		char tag[8];
		std::snprintf(tag, sizeof(tag), "%04x", static_cast<unsigned>(random() & 0xffff));
		std::string host = std::string("gvmtu") + tag;
		std::string peer = std::string("gvmtv") + tag;
		if (blockInUse(block) || ::if_nametoindex(host.c_str()) != 0 || ::if_nametoindex(peer.c_str()) != 0)
			continue;
		// The peer end is created straight inside the holder's namespace.
		RunResult add = run({ipBinary_, "link", "add", host, "type", "veth", "peer", "name", peer, "netns",
				     std::to_string(holder_)});
		if (add.status != 0) {
			lastError = add.err;
			continue; // lost a race for the name
		}
		hostInterface_ = host;
		peerInterface_ = peer;
		hostAddress_ = ipv4String(block + 1);
		address_ = ipv4String(block + 2);
		linkCreated_ = true;
		break;
	}
	if (!linkCreated_)
		return fail(Error::internal("no free veth name or /30 in 10.250.0.0/16 after " +
					    std::to_string(kPickAttempts) + " attempts: " + lastError));

	const std::string nsenter = "/usr/bin/nsenter";
	const std::string inNs = "--net=" + netnsPath();
	const std::vector<std::vector<std::string>> steps = {
		{ipBinary_, "addr", "add", hostAddress_ + "/30", "dev", hostInterface_},
		{ipBinary_, "link", "set", hostInterface_, "up"},
		{nsenter, inNs, ipBinary_, "link", "set", "lo", "up"},
		{nsenter, inNs, ipBinary_, "addr", "add", address_ + "/30", "dev", peerInterface_},
		{nsenter, inNs, ipBinary_, "link", "set", peerInterface_, "up"},
		{nsenter, inNs, ipBinary_, "route", "add", "default", "via", hostAddress_},
	};
	for (const auto &argv : steps) {
		RunResult r = run(argv);
		if (r.status != 0) {
			std::string command;
			for (const auto &a : argv)
				command += (command.empty() ? "" : " ") + a;
			return fail(Error::internal(command + " failed (" + std::to_string(r.status) + "): " + r.err));
		}
	}
	return {};
}

Result<void> UpstreamNetns::startBackend(const Options &options)
{
	std::string script = options.backend;
	if (script.empty()) {
		const char *env = std::getenv("GVM_TEST_BACKEND");
		if (!env)
			return fail(Error::internal("GVM_TEST_BACKEND is not set (run the tests through meson)"));
		script = env;
	}
	// It listens on 127.0.0.1 of the namespace: only nginx there reaches it.
	const std::string portFile = prefix() + "/backend.port";
	auto process = spawn({findPython(options.python), script, "--dir", prefix() + "/requests", "--port-file",
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
		return fail(Error::internal("upstream_backend.py did not report its port in time"));
	int port = std::atoi(readFile(portFile).c_str());
	if (port <= 0 || port > 65535)
		return fail(Error::internal("upstream_backend.py reported a bad port: " + readFile(portFile)));
	backendPort_ = static_cast<uint16_t>(port);
	return {};
}

Result<void> UpstreamNetns::startNginx(const TestPki &pki, const Options &options)
{
	const std::string &p = prefix();
	std::ostringstream conf;
	conf << "# Written by tests/support/upstream_netns.cpp for one test; removed with its prefix.\n"
	     << "daemon off;\n"
	     // One process: SIGTERM ends everything at once.
	     << "master_process off;\n"
	     << "worker_processes 1;\n";
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
	     << "    ssl_protocols TLSv1.2 TLSv1.3;\n"
	     << "    map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n"
	     << "    upstream gvm_backend { server 127.0.0.1:" << backendPort_ << "; }\n"
	     << "    proxy_http_version 1.1;\n"
	     << "    proxy_buffering off;\n"
	     << "    proxy_request_buffering off;\n"
	     << "    proxy_set_header Host $http_host;\n"
	     << "    proxy_set_header Upgrade $http_upgrade;\n"
	     << "    proxy_set_header Connection $connection_upgrade;\n"
	     << "    server {\n"
	     << "        listen " << address_ << ":" << kHttpsPort << " ssl;\n"
	     << "        listen " << address_ << ":" << kHttpPort << ";\n"
	     << "        ssl_certificate " << pki.goodCert() << ";\n"
	     << "        ssl_certificate_key " << pki.goodKey() << ";\n"
	     << "        server_name _;\n"
	     << "        location = / { default_type text/plain; return 200 \"hello from $host\\n\"; }\n"
	     << "        location /file/ { alias " << p << "/files/; }\n"
	     << "        location /echo { proxy_pass http://gvm_backend; }\n"
	     << "        location = /ws { proxy_pass http://gvm_backend; }\n"
	     << "    }\n"
	     << "}\n";

	const std::string confPath = p + "/nginx.conf";
	const std::string pidPath = p + "/nginx.pid";
	const std::string logPath = p + "/nginx.log";
	GVM_TRY_VOID(writeFile(confPath, conf.str()), "while writing nginx.conf");
	// -e stderr: otherwise nginx opens its compiled-in error log first.
	auto process = spawn({options.nginx, "-p", p + "/", "-c", confPath, "-e", "stderr"}, logPath);
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
	if (!nginx_->running())
		return fail(Error::internal("nginx exited (status " + std::to_string(nginx_->exitStatus().value_or(-1)) +
					    "): " + tail(readFile(logPath))));
	if (!ready)
		return fail(Error::internal("nginx did not start in time: " + tail(readFile(logPath))));
	// Reachable from the host across the veth pair: the way the worker
	// will reach it.
	for (uint16_t port : {kHttpsPort, kHttpPort}) {
		if (!waitFor([&] { return acceptsConnections(address_, port); }, options.startTimeout))
			return fail(Error::internal("nginx does not accept connections on " + address_ + ":" +
						    std::to_string(port) + " from the host"));
	}
	return {};
}

Result<void> UpstreamNetns::startDnsmasq(const Options &options)
{
	const std::string &p = prefix();
	std::vector<std::string> argv = {
		options.dnsmasq,
		"--keep-in-foreground",
		"--conf-file=/dev/null", // not the host's configuration
		"--pid-file",            // no pid file
		"--no-resolv",           // no upstream servers: nothing leaves
		"--no-hosts",            // the host's /etc/hosts means nothing here
		"--no-poll",
		"--bind-interfaces",
		"--listen-address=" + address_,
		"--port=53",
		"--user=root", // no privilege drop to a user the system may lack
		"--group=root",
		"--local-ttl=60",
		"--log-queries",
		"--log-facility=" + p + "/dnsmasq.log",
	};
	for (const auto &name : options.names)
		argv.push_back("--address=/" + name + "/" + address_);
	for (const auto &[name, text] : options.txtRecords)
		argv.push_back("--txt-record=" + name + "," + text); // no shell: no quotes
	auto process = spawn(argv, p + "/dnsmasq.stderr");
	if (!process)
		return fail(std::move(process).error());
	dnsmasq_ = std::move(*process);
	// Answers (REFUSED: it has no upstream) to the fixture's probe mean it
	// serves; the probe is left out of dnsQueries().
	bool ready = waitFor([&] { return !dnsmasq_->running() || dnsAnswers(address_, kProbeName); },
			     options.startTimeout);
	if (!dnsmasq_->running())
		return fail(Error::internal("dnsmasq exited (status " + std::to_string(dnsmasq_->exitStatus().value_or(-1)) +
					    "): " + tail(readFile(p + "/dnsmasq.stderr") + readFile(p + "/dnsmasq.log"))));
	if (!ready)
		return fail(Error::internal("dnsmasq does not answer on " + address_ + ":53: " +
					    tail(readFile(p + "/dnsmasq.log"))));
	return {};
}

Result<void> UpstreamNetns::startEcho(const Options &options)
{
	tcpEchoPort_ = options.tcpEchoPort;
	tcpBannerPort_ = options.tcpBannerPort;
	auto process = spawn({findPython(options.python), "-c", kEchoServer, address_, std::to_string(tcpEchoPort_),
			      std::to_string(tcpBannerPort_), kTcpBanner},
			     prefix() + "/echo.log");
	if (!process)
		return fail(std::move(process).error());
	echo_ = std::move(*process);
	bool ready = waitFor(
		[&] {
			return !echo_->running() || (acceptsConnections(address_, tcpEchoPort_) &&
						     acceptsConnections(address_, tcpBannerPort_));
		},
		options.startTimeout);
	if (!echo_->running() || !ready)
		return fail(Error::internal("the echo server does not accept connections on " + address_ + ":" +
					    std::to_string(tcpEchoPort_) + " and :" + std::to_string(tcpBannerPort_) +
					    ": " + tail(readFile(prefix() + "/echo.log"))));
	return {};
}

void UpstreamNetns::stop()
{
	for (auto *process : {&nginx_, &backend_, &dnsmasq_, &echo_}) {
		if (*process) {
			(*process)->stop(SIGTERM, stopTimeout_);
			process->reset();
		}
	}
	// Deleting one end of a veth pair deletes both.
	if (linkCreated_) {
		RunResult r = run({ipBinary_, "link", "del", hostInterface_});
		(void)r; // gone already if the namespace went first
		linkCreated_ = false;
	}
	if (holder_ > 0) {
		::kill(holder_, SIGKILL);
		int status;
		while (::waitpid(holder_, &status, 0) < 0 && errno == EINTR) {
		}
		holder_ = -1;
	}
	// The last reference: the namespace goes with it.
	netns_.reset();
}

std::string UpstreamNetns::netnsPath() const { return "/proc/" + std::to_string(holder_) + "/ns/net"; }

std::string UpstreamNetns::url(std::string_view scheme, std::string_view host, std::string_view path)
{
	return std::string(scheme) + "://" + std::string(host) + std::string(path);
}

std::vector<AccessLogEntry> UpstreamNetns::accessLog() const
{
	std::vector<AccessLogEntry> entries;
	std::istringstream in(readFile(prefix() + "/access.log"));
	std::string line;
	// A line without '\n' is still being written.
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
		entry.server = port == kHttpsPort ? "https" : port == kHttpPort ? "http" : fields[0];
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

size_t UpstreamNetns::countRequests(std::string_view testId) const
{
	size_t count = 0;
	for (const auto &entry : accessLog())
		count += entry.testId == testId;
	return count;
}

bool UpstreamNetns::waitForRequests(std::string_view testId, size_t count, std::chrono::milliseconds timeout) const
{
	return waitFor([&] { return countRequests(testId) >= count; }, timeout);
}

std::optional<std::string> UpstreamNetns::recordedRequest(std::string_view testId) const
{
	std::string path = prefix() + "/requests/" + std::string(testId) + ".req";
	if (::access(path.c_str(), F_OK) < 0)
		return std::nullopt;
	return readFile(path);
}

std::vector<DnsQueryLogEntry> UpstreamNetns::dnsQueries() const
{
	// "Nov 23 15:20:01 dnsmasq[1234]: query[A] allowed.gvm.test from 10.250.3.1"
	std::vector<DnsQueryLogEntry> out;
	std::istringstream in(readFile(prefix() + "/dnsmasq.log"));
	for (std::string line; std::getline(in, line);) {
		size_t q = line.find(": query[");
		if (q == std::string::npos)
			continue;
		size_t typeStart = q + 8;
		size_t typeEnd = line.find("] ", typeStart);
		if (typeEnd == std::string::npos)
			continue;
		size_t nameStart = typeEnd + 2;
		size_t from = line.find(" from ", nameStart);
		if (from == std::string::npos)
			continue;
		DnsQueryLogEntry entry;
		entry.type = line.substr(typeStart, typeEnd - typeStart);
		entry.name = lower(line.substr(nameStart, from - nameStart));
		entry.from = line.substr(from + 6);
		if (entry.name == kProbeName)
			continue;
		out.push_back(std::move(entry));
	}
	return out;
}

bool UpstreamNetns::dnsmasqSaw(std::string_view name) const
{
	const std::string wanted = lower(name);
	for (const auto &q : dnsQueries())
		if (q.name == wanted)
			return true;
	return false;
}

std::string UpstreamNetns::diagnostics() const
{
	const std::string &p = prefix();
	return "--- nginx.log\n" + tail(readFile(p + "/nginx.log")) + "--- backend.log\n" +
	       tail(readFile(p + "/backend.log")) + "--- dnsmasq.log\n" + tail(readFile(p + "/dnsmasq.log")) +
	       tail(readFile(p + "/dnsmasq.stderr")) + "--- echo.log\n" + tail(readFile(p + "/echo.log"));
}

pid_t UpstreamNetns::nginxPid() const { return nginx_ ? nginx_->pid() : -1; }

pid_t UpstreamNetns::dnsmasqPid() const { return dnsmasq_ ? dnsmasq_->pid() : -1; }

Result<void> enterPrivateResolver(const std::string &nameserver)
{
	in_addr parsed{};
	if (::inet_pton(AF_INET, nameserver.c_str(), &parsed) != 1)
		return fail(Error::internal("private resolver: \"" + nameserver + "\" is not an IPv4 address"));
	const std::string text = "# Written by gvm's test fixture (enterPrivateResolver); private to this test.\n"
				 "nameserver " + nameserver + "\noptions timeout:2 attempts:2\n";

	// Once per process: later calls rewrite the mounted file in place,
	// so what /etc/resolv.conf shows changes for later children only.
	static std::string file;
	if (!file.empty())
		return writeFile(file, text);

	// unshare() moves only the calling thread: with other threads alive,
	// the process would be split between two views of /etc.
	size_t threads = 0;
	if (DIR *d = ::opendir("/proc/self/task")) {
		while (dirent *e = ::readdir(d))
			threads += e->d_name[0] != '.';
		::closedir(d);
	}
	if (threads != 1)
		return fail(Error::internal("private resolver: the process must have one thread (it has " +
					    std::to_string(threads) + ")"));

	// A mount namespace of our own: the bind mount below is seen by this
	// process and its future children only; the host keeps its resolver.
	if (::unshare(CLONE_NEWNS) < 0)
		return fail(Error::fromErrno(errno, "private resolver: unshare(CLONE_NEWNS) (needs root)"));
	// Nothing mounted here may propagate back to the host's namespace.
	if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0)
		return fail(Error::fromErrno(errno, "private resolver: making / rprivate"));

	std::string dir = "/tmp/gvm-resolver-XXXXXX";
	if (!::mkdtemp(dir.data()))
		return fail(Error::fromErrno(errno, "private resolver: creating a temporary directory"));
	const std::string path = dir + "/resolv.conf";
	auto written = writeFile(path, text);
	if (written && ::chmod(dir.c_str(), 0755) < 0)
		written = fail(Error::fromErrno(errno, "making " + dir + " readable"));
	if (written && ::mount(path.c_str(), "/etc/resolv.conf", nullptr, MS_BIND, nullptr) < 0)
		written = fail(Error::fromErrno(errno, "private resolver: bind-mounting " + path + " over /etc/resolv.conf"));
	if (!written) {
		::unlink(path.c_str());
		::rmdir(dir.c_str());
		return written;
	}
	// The file must keep its name while mounted: gvmd bind-mounts each
	// sandbox's own resolv.conf over this one, and the kernel refuses to
	// mount over an unlinked file (ENOENT). It goes when the process exits.
	file = path;
	std::atexit([] {
		::umount2("/etc/resolv.conf", MNT_DETACH);
		::unlink(file.c_str());
		::rmdir(file.substr(0, file.rfind('/')).c_str());
	});
	return {};
}

} // namespace gvm::test
