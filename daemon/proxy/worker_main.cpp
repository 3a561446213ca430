// SPDX-License-Identifier: Apache-2.0
//
// gvm-worker: the proxy worker of one sandbox, started by gvmd (never by
// hand) with its control socket on a known descriptor. It confines itself
// before anything else, then serves gvmd until gvmd closes the channel.
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <string>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "daemon/proxy/worker.h"
#include "daemon/proxy/worker_confinement.h"

int main(int argc, char **argv)
{
	using namespace gvm;
	int controlFd = -1;
	for (int i = 1; i < argc; ++i) {
		std::string arg = argv[i];
		if (arg == "--control-fd" && i + 1 < argc) {
			controlFd = std::atoi(argv[++i]);
		} else if (arg == "--log-level" && i + 1 < argc) {
			log::Level level;
			if (!log::parseLevel(argv[++i], &level)) {
				std::cerr << "gvm-worker: unknown log level '" << argv[i] << "'\n";
				return 2;
			}
			log::setThreshold(level);
		} else {
			std::cerr << "gvm-worker: unknown argument '" << arg
				  << "'\nUsage: gvm-worker --control-fd FD [--log-level LEVEL] (started by gvmd)\n";
			return 2;
		}
	}
	if (controlFd < 3 || ::fcntl(controlFd, F_GETFD) < 0) {
		std::cerr << "gvm-worker: --control-fd must name an open descriptor from gvmd\n";
		return 2;
	}
	UniqueFd control(controlFd);
	::fcntl(controlFd, F_SETFD, FD_CLOEXEC);
	::fcntl(controlFd, F_SETFL, ::fcntl(controlFd, F_GETFL) | O_NONBLOCK);

	// Confinement comes first: nothing gvmd or an agent sends is read by a
	// process that still has privileges.
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
	auto worker = proxy::Worker::create(**loop, std::move(control));
	if (!worker) {
		GVM_LOG(Proxy, Error) << "gvm-worker: " << worker.error().message();
		return 1;
	}
	(*loop)->run();
	worker->reset();
	return 0;
}
