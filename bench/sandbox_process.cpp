// SPDX-License-Identifier: Apache-2.0
#include "bench/sandbox_process.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <grp.h>
#include <filesystem>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

namespace gvm::bench {

namespace {

constexpr size_t kMaxToolOutput = 4000;
constexpr std::chrono::milliseconds kKillWait{5000};

int remainingMs(SteadyClock::time_point deadline)
{
	auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
	return left > 0 ? static_cast<int>(left) : 0;
}

// Our environment with `extra` added, a NAME=value of `extra` replacing ours.
std::vector<std::string> environmentWith(const std::vector<std::string> &extra)
{
	std::vector<std::string> out;
	for (char **e = environ; *e; ++e) {
		std::string_view entry(*e);
		bool replaced = false;
		for (const std::string &x : extra) {
			size_t eq = x.find('=');
			if (eq != std::string::npos && entry.substr(0, eq + 1) == std::string_view(x).substr(0, eq + 1))
				replaced = true;
		}
		if (!replaced)
			out.emplace_back(entry);
	}
	out.insert(out.end(), extra.begin(), extra.end());
	return out;
}

std::string describeStatus(int status)
{
	if (WIFEXITED(status))
		return "exit " + std::to_string(WEXITSTATUS(status));
	if (WIFSIGNALED(status))
		return "signal " + std::to_string(WTERMSIG(status)) + " (" + ::strsignal(WTERMSIG(status)) + ")";
	return "status " + std::to_string(status);
}

} // namespace

Result<std::unique_ptr<Process>> Process::spawn(const SpawnOptions &options)
{
	if (options.argv.empty())
		return fail(Error::internal("spawning an empty command"));
	// Everything the child needs is made before fork(): between fork and
	// exec only async-signal-safe calls are allowed.
	std::vector<char *> args;
	for (const std::string &a : options.argv)
		args.push_back(const_cast<char *>(a.c_str()));
	args.push_back(nullptr);
	std::vector<std::string> envStrings = environmentWith(options.env);
	std::vector<char *> envp;
	for (std::string &e : envStrings)
		envp.push_back(e.data());
	envp.push_back(nullptr);
	UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
	if (!null)
		return fail(Error::fromErrno(errno, "opening /dev/null"));
	const int stdio[3] = {options.stdinFd >= 0 ? options.stdinFd : null.get(),
			      options.stdoutFd >= 0 ? options.stdoutFd : null.get(),
			      options.stderrFd >= 0 ? options.stderrFd : null.get()};
	auto report = makePipe();
	if (!report)
		return fail(std::move(report).error());
	const pid_t parent = ::getpid();
	sigset_t none;
	sigemptyset(&none);

	pid_t pid = ::fork();
	if (pid < 0)
		return fail(Error::fromErrno(errno, "forking for " + options.argv[0]));
	if (pid == 0) {
		int err = 0;
		::prctl(PR_SET_PDEATHSIG, options.deathSignal);
		if (::getppid() != parent)
			::_exit(127);
		::sigprocmask(SIG_SETMASK, &none, nullptr);
		::signal(SIGPIPE, SIG_DFL);
		for (int i = 0; i < 3 && err == 0; ++i) {
			// dup2 onto itself would keep close-on-exec: clear it.
			if (stdio[i] == i ? ::fcntl(i, F_SETFD, 0) < 0 : ::dup2(stdio[i], i) < 0)
				err = errno;
		}
		// Joining the client's network namespace: the command (a
		// benchmark client, `ip`) then sees only that namespace's links
		// and routes. Needs CAP_SYS_ADMIN, which the benchmark has.
		if (err == 0 && options.netnsFd >= 0 && ::setns(options.netnsFd, CLONE_NEWNET) < 0)
			err = errno;
		// Becoming another user (the fifty-sandbox leg spreads its
		// gvmctl clients over several, as gvmd limits clients and
		// sandboxes per uid): groups first, while still root. A change
		// of credentials clears the parent-death signal: set it again.
		if (err == 0 && options.credentials) {
			const gid_t gid = options.credentials->second;
			const uid_t uid = options.credentials->first;
			if (::chdir("/") < 0 || ::setgroups(1, &gid) < 0 || ::setresgid(gid, gid, gid) < 0 ||
			    ::setresuid(uid, uid, uid) < 0 || ::prctl(PR_SET_PDEATHSIG, options.deathSignal) < 0)
				err = errno;
			else if (::getppid() != parent)
				::_exit(127);
		}
		if (err == 0) {
			::execve(args[0], args.data(), envp.data());
			err = errno;
		}
		ssize_t ignored = ::write(report->write.get(), &err, sizeof(err));
		(void)ignored;
		::_exit(127);
	}
	UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
	std::unique_ptr<Process> process(new Process(pid, std::move(pidfd)));
	if (!process->pidfd_) {
		int err = errno;
		process.reset(); // kills and reaps
		return fail(Error::fromErrno(err, "pidfd_open"));
	}
	report->write.reset();
	int err = 0;
	ssize_t n;
	do {
		n = ::read(report->read.get(), &err, sizeof(err));
	} while (n < 0 && errno == EINTR);
	if (n == sizeof(err))
		return fail(Error::fromErrno(err, "starting " + options.argv[0]));
	return process;
}

Process::~Process()
{
	if (!reaped_)
		stop(SIGKILL, kKillWait);
}

bool Process::wait(std::chrono::milliseconds timeout)
{
	if (reaped_)
		return true;
	auto deadline = SteadyClock::now() + timeout;
	for (;;) {
		int status = 0;
		pid_t r = ::waitpid(pid_, &status, WNOHANG);
		if (r == pid_ || (r < 0 && errno == ECHILD)) {
			exitedAt_ = SteadyClock::now();
			reaped_ = true;
			status_ = status;
			return true;
		}
		int left = remainingMs(deadline);
		if (left == 0 && SteadyClock::now() >= deadline)
			return false;
		pollfd pfd{pidfd_.get(), POLLIN, 0};
		if (::poll(&pfd, 1, left) < 0 && errno != EINTR)
			return false;
	}
}

int Process::exitCode() const
{
	if (!reaped_)
		return -1;
	if (WIFEXITED(status_))
		return WEXITSTATUS(status_);
	if (WIFSIGNALED(status_))
		return 128 + WTERMSIG(status_);
	return -1;
}

std::string Process::describe() const { return reaped_ ? describeStatus(status_) : "running"; }

std::string Process::stop(int signal, std::chrono::milliseconds grace)
{
	if (!reaped_ && signal != 0)
		::kill(pid_, signal);
	if (!wait(grace)) {
		::kill(pid_, SIGKILL);
		if (!wait(kKillWait))
			return "still running after SIGKILL";
		return describe() + " after SIGKILL";
	}
	return describe();
}

Result<void> runTool(const std::vector<std::string> &argv, int netnsFd, std::chrono::milliseconds timeout)
{
	auto err = makePipe();
	if (!err)
		return fail(std::move(err).error());
	SpawnOptions options;
	options.argv = argv;
	options.stderrFd = err->write.get();
	options.stdoutFd = err->write.get();
	options.netnsFd = netnsFd;
	auto process = Process::spawn(options);
	if (!process)
		return fail(std::move(process).error());
	err->write.reset();
	LineReader reader(std::move(err->read));
	std::string output = reader.readAll(timeout);
	std::string command;
	for (const std::string &a : argv)
		command += (command.empty() ? "" : " ") + a;
	if (!(*process)->wait(timeout)) {
		(*process)->stop(SIGKILL, kKillWait);
		return fail(Error::internal("'" + command + "' did not finish"));
	}
	if ((*process)->exitCode() != 0) {
		if (output.size() > kMaxToolOutput)
			output = output.substr(output.size() - kMaxToolOutput);
		while (!output.empty() && output.back() == '\n')
			output.pop_back();
		return fail(Error::internal("'" + command + "' failed (" + (*process)->describe() + "): " + output));
	}
	return {};
}

Result<Pipe> makePipe()
{
	int fds[2];
	if (::pipe2(fds, O_CLOEXEC) < 0)
		return fail(Error::fromErrno(errno, "creating a pipe"));
	return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::optional<std::string> LineReader::readLine(std::chrono::milliseconds timeout)
{
	auto deadline = SteadyClock::now() + timeout;
	for (;;) {
		size_t eol = buffer_.find('\n');
		if (eol != std::string::npos) {
			std::string line = buffer_.substr(0, eol);
			buffer_.erase(0, eol + 1);
			return line;
		}
		if (eof_)
			return std::nullopt;
		pollfd pfd{fd_.get(), POLLIN, 0};
		int ready = ::poll(&pfd, 1, remainingMs(deadline));
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready <= 0)
			return std::nullopt;
		char chunk[4096];
		ssize_t n = ::read(fd_.get(), chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			eof_ = true;
		else
			buffer_.append(chunk, static_cast<size_t>(n));
	}
}

std::string LineReader::readAll(std::chrono::milliseconds timeout)
{
	auto deadline = SteadyClock::now() + timeout;
	while (!eof_) {
		pollfd pfd{fd_.get(), POLLIN, 0};
		int ready = ::poll(&pfd, 1, remainingMs(deadline));
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready <= 0)
			break;
		char chunk[65536];
		ssize_t n = ::read(fd_.get(), chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			eof_ = true;
		else
			buffer_.append(chunk, static_cast<size_t>(n));
	}
	return std::exchange(buffer_, {});
}

Result<void> enterPrivateNamespaces(const std::vector<std::pair<std::string, std::string>> &hosts)
{
	std::string text = "# Written by gvm's sandbox-bench; private to it.\n127.0.0.1 localhost\n";
	for (const auto &[name, address] : hosts)
		text += address + " " + name + "\n";

	// unshare() moves only the calling thread: with other threads alive
	// the process would be split between two views.
	std::error_code ec;
	size_t threads = 0;
	for (auto it = std::filesystem::directory_iterator("/proc/self/task", ec);
	     !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
		threads++;
	if (threads != 1)
		return fail(Error::internal("entering private namespaces: the process has " + std::to_string(threads) +
					    " threads, not 1"));

	// A mount namespace of our own, so that the /etc/hosts below is seen
	// by the benchmark and its children only (gvmd and its workers resolve
	// the origin's name with it); a network namespace of our own, so that
	// gvmd's host-side links, addresses and its global nftables table do
	// not meet those of any other gvmd on this machine, and all of it
	// vanishes with the benchmark.
	if (::unshare(CLONE_NEWNS | CLONE_NEWNET) < 0)
		return fail(Error::fromErrno(errno, "unshare(CLONE_NEWNS | CLONE_NEWNET)"));
	// The copy of the mount tree may share propagation with the host's
	// (systemd makes / shared): make it private so nothing leaks back.
	if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0)
		return fail(Error::fromErrno(errno, "making / rprivate"));
	char dir[] = "/tmp/gvm-sandbox-bench-hosts.XXXXXX";
	if (!::mkdtemp(dir))
		return fail(Error::fromErrno(errno, "creating a directory for the private /etc/hosts"));
	std::string file = std::string(dir) + "/hosts";
	Result<void> written;
	{
		UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
		if (!fd || ::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
			written = fail(Error::fromErrno(errno, "writing " + file));
	}
	if (written && ::mount(file.c_str(), "/etc/hosts", nullptr, MS_BIND, nullptr) < 0)
		written = fail(Error::fromErrno(errno, "bind-mounting " + file + " over /etc/hosts"));
	// The mount holds the inode; the name can go.
	::unlink(file.c_str());
	::rmdir(dir);
	if (!written)
		return written;

	// A new network namespace starts with loopback down.
	UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	ifreq ifr{};
	std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
	if (!sock || ::ioctl(sock.get(), SIOCGIFFLAGS, &ifr) < 0)
		return fail(Error::fromErrno(errno, "reading the flags of lo"));
	ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
	if (::ioctl(sock.get(), SIOCSIFFLAGS, &ifr) < 0)
		return fail(Error::fromErrno(errno, "bringing lo up"));
	return {};
}

Result<std::unique_ptr<NetnsHolder>> NetnsHolder::create()
{
	auto ready = makePipe();
	if (!ready)
		return fail(std::move(ready).error());
	const pid_t parent = ::getpid();
	pid_t pid = ::fork();
	if (pid < 0)
		return fail(Error::fromErrno(errno, "forking the namespace holder"));
	if (pid == 0) {
		::prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (::getppid() != parent)
			::_exit(127);
		// The client's network namespace: empty but for what the
		// benchmark puts in it (one veth end), so the direct client
		// crosses a veth pair like the sandboxed one, with no gvm.
		char ok = ::unshare(CLONE_NEWNET) == 0 ? 1 : 0;
		ssize_t ignored = ::write(ready->write.get(), &ok, 1);
		(void)ignored;
		for (;;)
			::pause();
	}
	ready->write.reset();
	char ok = 0;
	ssize_t n;
	do {
		n = ::read(ready->read.get(), &ok, 1);
	} while (n < 0 && errno == EINTR);
	UniqueFd fd(ok == 1 ? ::open(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC) : -1);
	int err = errno;
	std::unique_ptr<NetnsHolder> holder(new NetnsHolder(pid, std::move(fd)));
	if (ok != 1)
		return fail(Error::internal("the namespace holder could not unshare its network namespace"));
	if (!holder->fd_)
		return fail(Error::fromErrno(err, "opening the client network namespace"));
	return holder;
}

NetnsHolder::~NetnsHolder()
{
	fd_.reset();
	::kill(pid_, SIGKILL);
	int status;
	while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
	}
}

bool linkExists(const std::string &name) { return ::if_nametoindex(name.c_str()) != 0; }

size_t countLinks(const std::string &prefix)
{
	struct if_nameindex *list = ::if_nameindex();
	if (!list)
		return 0;
	size_t count = 0;
	for (struct if_nameindex *i = list; i->if_index != 0; ++i)
		if (std::string_view(i->if_name).substr(0, prefix.size()) == prefix)
			++count;
	::if_freenameindex(list);
	return count;
}

Result<std::unique_ptr<LinkWatcher>> LinkWatcher::create()
{
	UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE));
	if (!fd)
		return fail(Error::fromErrno(errno, "creating an rtnetlink socket"));
	sockaddr_nl addr{};
	addr.nl_family = AF_NETLINK;
	addr.nl_groups = RTMGRP_LINK;
	if (::bind(fd.get(), reinterpret_cast<const sockaddr *>(&addr), sizeof(addr)) < 0)
		return fail(Error::fromErrno(errno, "subscribing to link events"));
	return std::unique_ptr<LinkWatcher>(new LinkWatcher(std::move(fd)));
}

std::vector<std::string> LinkWatcher::deleted(bool *overflow)
{
	std::vector<std::string> names;
	alignas(nlmsghdr) char buffer[65536];
	for (;;) {
		ssize_t n = ::recv(fd_.get(), buffer, sizeof(buffer), 0);
		if (n < 0) {
			if (errno == ENOBUFS && overflow)
				*overflow = true;
			if (errno == EINTR || errno == ENOBUFS)
				continue;
			break; // EAGAIN: all read
		}
		size_t left = static_cast<size_t>(n);
		for (auto *h = reinterpret_cast<nlmsghdr *>(buffer); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
			if (h->nlmsg_type != RTM_DELLINK)
				continue;
			auto *info = static_cast<ifinfomsg *>(NLMSG_DATA(h));
			int length = static_cast<int>(IFLA_PAYLOAD(h));
			for (auto *a = IFLA_RTA(info); RTA_OK(a, length); a = RTA_NEXT(a, length)) {
				if (a->rta_type == IFLA_IFNAME)
					names.emplace_back(static_cast<const char *>(RTA_DATA(a)));
			}
		}
	}
	return names;
}

} // namespace gvm::bench
