// SPDX-License-Identifier: Apache-2.0
#include "tests/support/process.h"

#include "common/loop.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <poll.h>
#include <sstream>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char **environ;

namespace gvm::test {

namespace {

std::vector<char *> cStrings(std::vector<std::string> &v)
{
	std::vector<char *> out;
	for (auto &s : v)
		out.push_back(s.data());
	out.push_back(nullptr);
	return out;
}

std::vector<std::string> environment(const std::vector<std::string> &extra)
{
	std::vector<std::string> env;
	for (char **e = environ; *e; ++e) {
		std::string entry = *e;
		bool overridden = false;
		for (const auto &x : extra)
			if (entry.substr(0, entry.find('=') + 1) == x.substr(0, x.find('=') + 1))
				overridden = true;
		if (!overridden)
			env.push_back(entry);
	}
	env.insert(env.end(), extra.begin(), extra.end());
	return env;
}

// Forks and execs argv with the environment plus extraEnv; inChild runs in
// the child first (redirections).
pid_t spawn(const std::vector<std::string> &argvIn, const std::vector<std::string> &extraEnv,
	    const std::function<void()> &inChild)
{
	std::vector<std::string> argv = argvIn;
	std::vector<std::string> env = environment(extraEnv);
	auto cargv = cStrings(argv);
	auto cenv = cStrings(env);
	pid_t pid = ::fork();
	if (pid == 0) {
		inChild();
		::execve(cargv[0], cargv.data(), cenv.data());
		::_exit(127);
	}
	return pid;
}

} // namespace

RunResult run(const std::vector<std::string> &argv, const std::vector<std::string> &extraEnv,
	      std::chrono::milliseconds timeout)
{
	int outPipe[2], errPipe[2];
	if (::pipe2(outPipe, O_CLOEXEC) < 0 || ::pipe2(errPipe, O_CLOEXEC) < 0)
		throw std::runtime_error("pipe2 failed");
	pid_t pid = spawn(argv, extraEnv, [&] {
		::dup2(outPipe[1], 1);
		::dup2(errPipe[1], 2);
		int devnull = ::open("/dev/null", O_RDONLY);
		::dup2(devnull, 0);
	});
	::close(outPipe[1]);
	::close(errPipe[1]);
	UniqueFd out(outPipe[0]), err(errPipe[0]);

	RunResult result;
	auto deadline = std::chrono::steady_clock::now() + timeout;
	bool outOpen = true, errOpen = true;
	while (outOpen || errOpen) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
		if (left.count() <= 0) {
			::kill(pid, SIGKILL);
			break;
		}
		pollfd fds[2] = {{out.get(), POLLIN, 0}, {err.get(), POLLIN, 0}};
		fds[0].fd = outOpen ? out.get() : -1;
		fds[1].fd = errOpen ? err.get() : -1;
		if (::poll(fds, 2, static_cast<int>(left.count())) < 0 && errno != EINTR)
			break;
		char buf[4096];
		for (int i = 0; i < 2; ++i) {
			if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP)))
				continue;
			ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
			if (n <= 0)
				(i == 0 ? outOpen : errOpen) = false;
			else
				(i == 0 ? result.out : result.err).append(buf, static_cast<size_t>(n));
		}
	}
	int status = 0;
	::waitpid(pid, &status, 0);
	result.status = decodeStatus(status);
	return result;
}

Child Child::start(const std::vector<std::string> &argv, const std::vector<std::string> &extraEnv,
		   const std::string &logFile)
{
	pid_t pid = spawn(argv, extraEnv, [&] {
		if (!logFile.empty()) {
			int fd = ::open(logFile.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
			::dup2(fd, 1);
			::dup2(fd, 2);
		}
	});
	Child c;
	c.pid_ = pid;
	return c;
}

Child &Child::operator=(Child &&other) noexcept
{
	if (this != &other) {
		if (pid_ > 0 && !status_) {
			::kill(pid_, SIGKILL);
			::waitpid(pid_, nullptr, 0);
		}
		pid_ = std::exchange(other.pid_, -1);
		status_ = std::exchange(other.status_, std::nullopt);
	}
	return *this;
}

Child::~Child()
{
	if (pid_ > 0 && !status_) {
		::kill(pid_, SIGKILL);
		::waitpid(pid_, nullptr, 0);
	}
}

bool Child::running()
{
	if (pid_ <= 0 || status_)
		return false;
	int status;
	if (::waitpid(pid_, &status, WNOHANG) == pid_) {
		status_ = decodeStatus(status);
		return false;
	}
	return true;
}

std::optional<int> Child::wait(std::chrono::milliseconds timeout)
{
	waitFor([&] { return !running(); }, timeout);
	return status_;
}

std::optional<int> Child::stop(int sig, std::chrono::milliseconds timeout)
{
	if (running())
		::kill(pid_, sig);
	return wait(timeout);
}

bool waitFor(const std::function<bool()> &pred, std::chrono::milliseconds timeout)
{
	auto deadline = std::chrono::steady_clock::now() + timeout;
	while (std::chrono::steady_clock::now() < deadline) {
		if (pred())
			return true;
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	}
	return pred();
}

TempDir::TempDir()
{
	std::string tmpl = (std::filesystem::temp_directory_path() / "gvm-test-XXXXXX").string();
	if (!::mkdtemp(tmpl.data()))
		throw std::runtime_error("mkdtemp failed");
	path_ = tmpl;
}

TempDir::~TempDir()
{
	std::error_code ec;
	std::filesystem::remove_all(path_, ec);
}

RawClient::RawClient(const std::string &path)
{
	sockaddr_un addr{};
	addr.sun_family = AF_UNIX;
	std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
	UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
	if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) < 0) {
		errno_ = errno;
		return;
	}
	fd_ = std::move(fd);
}

bool RawClient::sendRaw(std::string_view bytes)
{
	size_t sent = 0;
	while (sent < bytes.size()) {
		ssize_t n = ::send(fd_.get(), bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		sent += static_cast<size_t>(n);
	}
	return true;
}

std::optional<std::string> RawClient::readLine(std::chrono::milliseconds timeout)
{
	auto deadline = std::chrono::steady_clock::now() + timeout;
	for (;;) {
		if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
			std::string line = buffer_.substr(0, nl);
			buffer_.erase(0, nl + 1);
			return line;
		}
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
		if (left.count() <= 0)
			return std::nullopt;
		pollfd pfd{fd_.get(), POLLIN, 0};
		if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
			continue;
		char buf[65536];
		ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
		if (n <= 0)
			return std::nullopt;
		buffer_.append(buf, static_cast<size_t>(n));
	}
}

bool RawClient::closedByPeer(std::chrono::milliseconds timeout)
{
	auto deadline = std::chrono::steady_clock::now() + timeout;
	while (std::chrono::steady_clock::now() < deadline) {
		pollfd pfd{fd_.get(), POLLIN, 0};
		if (::poll(&pfd, 1, 50) <= 0)
			continue;
		char buf[65536];
		ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
	}
	return false;
}

std::optional<rpc::Json> RawClient::call(const std::string &method, const rpc::Json &params)
{
	if (!sendRaw(rpc::encodeRequest(nextId_++, method, params)))
		return std::nullopt;
	auto line = readLine();
	if (!line)
		return std::nullopt;
	return rpc::parseJson(*line);
}

std::string binaryFromEnv(const char *var)
{
	const char *v = std::getenv(var);
	if (!v)
		throw std::runtime_error(std::string(var) + " is not set (run the tests through meson)");
	return v;
}

std::string readFile(const std::string &path)
{
	std::ifstream in(path, std::ios::binary);
	if (!in)
		return {};
	std::ostringstream out;
	out << in.rdbuf();
	return out.str();
}


Result<void> writeFile(const std::string &path, std::string_view text, mode_t mode)
{
	UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
	if (!fd)
		return fail(Error::fromErrno(errno, "opening " + path));
	// The umask may have narrowed the mode (a worker's uid must read certs).
	if (::fchmod(fd.get(), mode) < 0)
		return fail(Error::fromErrno(errno, "setting the mode of " + path));
	size_t done = 0;
	while (done < text.size()) {
		ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(Error::fromErrno(errno, "writing " + path));
		done += static_cast<size_t>(n);
	}
	return {};
}


Result<void> makeDir(const std::string &path)
{
	if (::mkdir(path.c_str(), 0755) < 0 && errno != EEXIST)
		return fail(Error::fromErrno(errno, "creating " + path));
	return {};
}


int decodeStatus(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}


std::string findPython(const std::string &configured)
{
	auto isExecutable = [](const std::string &path) { return ::access(path.c_str(), X_OK) == 0; };
	if (!configured.empty())
		return configured;
	// Debian's interpreter, not a version manager's shim that PATH may
	// put first: the backend needs only the standard library.
	if (isExecutable("/usr/bin/python3"))
		return "/usr/bin/python3";
	const char *path = std::getenv("PATH");
	std::stringstream dirs(path ? path : "");
	std::string dir;
	while (std::getline(dirs, dir, ':')) {
		if (!dir.empty() && isExecutable(dir + "/python3"))
			return dir + "/python3";
	}
	return "python3";
}


std::string tail(const std::string &text, size_t max)
{
	return text.size() <= max ? text : "..." + text.substr(text.size() - max);
}


} // namespace gvm::test

namespace gvm::test {

bool runLoopUntil(Loop &loop, const std::function<bool()> &pred, std::chrono::milliseconds timeout)
{
	auto deadline = std::chrono::steady_clock::now() + timeout;
	Timer check(loop, [&] {
		if (pred() || std::chrono::steady_clock::now() >= deadline)
			loop.stop();
	});
	check.start(0, 5);
	loop.run();
	return pred();
}

} // namespace gvm::test
