// SPDX-License-Identifier: Apache-2.0
//
// gvm-worker: the proxy worker of one sandbox, started by gvmd (never by
// hand) with its control socket and listening sockets on known
// descriptors. It gathers what it needs from the host, confines itself,
// then serves gvmd and the agent until gvmd closes the channel.
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <ifaddrs.h>
#include <iostream>
#include <malloc.h>
#include <netdb.h>
#include <string>
#include <sys/resource.h>
#include <unistd.h>

#include "common/file.h"
#include "common/log.h"
#include "common/loop.h"
#include "daemon/proxy/tls_context.h"
#include "daemon/proxy/worker.h"
#include "daemon/proxy/worker_confinement.h"

namespace {

using namespace gvm;

// Descriptors the worker may hold: every agent connection may have an
// upstream one too.
constexpr rlim_t kWantedOpenFiles = 4 * proxy::kMaxConnections + 256;

const char kUsage[] = "Usage: gvm-worker --control-fd FD [--listen KIND=FD]... [--log-level LEVEL]\n"
		      "(started by gvmd, never by hand)\n";

bool adoptFd(int fd)
{
	if (fd < 3 || ::fcntl(fd, F_GETFD) < 0)
		return false;
	::fcntl(fd, F_SETFD, FD_CLOEXEC);
	::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
	return true;
}

std::vector<sockaddr_storage> hostAddresses()
{
	std::vector<sockaddr_storage> out;
	ifaddrs *list = nullptr;
	if (::getifaddrs(&list) < 0) {
		GVM_LOG(Proxy, Warning) << "listing the host's addresses: " << std::strerror(errno) << ", ignoring";
		return out;
	}
	for (ifaddrs *i = list; i; i = i->ifa_next) {
		if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
			continue;
		sockaddr_storage ss{};
		std::memcpy(&ss, i->ifa_addr,
			    i->ifa_addr->sa_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
		out.push_back(ss);
	}
	::freeifaddrs(list);
	return out;
}

} // namespace

int main(int argc, char **argv)
{
	int controlFd = -1;
	proxy::WorkerResources resources;
	for (int i = 1; i < argc; ++i) {
		std::string arg = argv[i];
		if (arg == "--control-fd" && i + 1 < argc) {
			controlFd = std::atoi(argv[++i]);
		} else if (arg == "--listen" && i + 1 < argc) {
			std::string spec = argv[++i];
			auto eq = spec.find('=');
			int fd = eq == std::string::npos ? -1 : std::atoi(spec.c_str() + eq + 1);
			auto kind = proxy::parseListenerKind(spec.substr(0, eq));
			if (!kind || !adoptFd(fd)) {
				std::cerr << "gvm-worker: --listen wants KIND=FD (KIND: explicit, transparent, dns-udp, "
					     "dns-tcp) with an open descriptor, not '"
					  << spec << "'\n";
				return 2;
			}
			resources.listeners.emplace_back(*kind, UniqueFd(fd));
		} else if (arg == "--log-level" && i + 1 < argc) {
			log::Level level;
			if (!log::parseLevel(argv[++i], &level)) {
				std::cerr << "gvm-worker: unknown log level '" << argv[i] << "'\n";
				return 2;
			}
			log::setThreshold(level);
		} else {
			std::cerr << "gvm-worker: unknown argument '" << arg << "'\n" << kUsage;
			return 2;
		}
	}
	if (!adoptFd(controlFd)) {
		std::cerr << "gvm-worker: --control-fd must name an open descriptor from gvmd\n";
		return 2;
	}
	UniqueFd control(controlFd);

	// Streaming churns through buffers of tens of KiB: keep freed memory
	// for reuse instead of returning it to the kernel after each one
	// (trimming costs a TLB shootdown on every libuv thread).
	::mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
	::mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);

	// Writing to a socket the peer closed is an error to handle, not a
	// reason to die.
	std::signal(SIGPIPE, SIG_IGN);

	// What the confined worker can no longer gather itself: the trust
	// store (a file), the host's addresses (netlink), resolver modules
	// loaded on the first lookup, and room for many descriptors.
	auto trust = readFileBounded(proxy::kHostTrustBundle, proxy::kMaxTrustBundleBytes);
	if (trust)
		resources.hostTrustPem = std::move(*trust);
	else
		GVM_LOG(Proxy, Warning) << "no host trust store: " << trust.error().message()
					<< "; only --upstream-ca is trusted";
	resources.hostAddresses = hostAddresses();
	{
		addrinfo *warm = nullptr;
		if (::getaddrinfo("localhost", nullptr, nullptr, &warm) == 0)
			::freeaddrinfo(warm);
	}
	rlimit files{};
	if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < kWantedOpenFiles) {
		files.rlim_cur = std::min(files.rlim_max, kWantedOpenFiles);
		::setrlimit(RLIMIT_NOFILE, &files);
	}

	// Confinement comes before anything gvmd or an agent sends is read:
	// no such byte is ever parsed by a process that still has privileges.
	auto identity = proxy::resolveWorkerIdentity();
	if (!identity) {
		GVM_LOG(Proxy, Error) << "gvm-worker: " << identity.error().message();
		return 1;
	}
	if (auto confined = proxy::confineWorker(*identity); !confined) {
		GVM_LOG(Proxy, Error) << "gvm-worker: " << confined.error().message();
		return 1;
	}

	auto loop = Loop::create();
	if (!loop) {
		GVM_LOG(Proxy, Error) << "gvm-worker: " << loop.error().message();
		return 1;
	}
	auto worker = proxy::Worker::create(**loop, std::move(control), std::move(resources));
	if (!worker) {
		GVM_LOG(Proxy, Error) << "gvm-worker: " << worker.error().message();
		return 1;
	}
	(*loop)->run();
	// What the last loop pass deferred goes while the proxy it refers to
	// is still here.
	(*loop)->runPosted();
	worker->reset();
	return 0;
}
