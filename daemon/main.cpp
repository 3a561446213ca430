// SPDX-License-Identifier: Apache-2.0
#include <iostream>
#include <string>
#include <vector>

#include "common/journal_log.h"
#include "common/log.h"
#include "daemon/daemon.h"
#include "daemon/options.h"
#include "gvm_config.h"

int main(int argc, char **argv)
{
	using namespace gvm;
	log::useJournal();
	std::vector<std::string> args(argv + 1, argv + argc);
	auto options = daemon::parseOptions(args);
	if (!options) {
		std::cerr << "gvmd: " << options.error().message() << "\n\n" << daemon::usage();
		return 2;
	}
	if (options->showHelp) {
		std::cout << daemon::usage();
		return 0;
	}
	if (options->showVersion) {
		std::cout << "gvmd " << GVM_VERSION << "\n";
		return 0;
	}
	log::setThreshold(options->logLevel);

	auto d = daemon::Daemon::create(*options);
	if (!d) {
		GVM_LOG(Daemon, Error) << d.error().message();
		return 1;
	}
	return (*d)->run();
}
