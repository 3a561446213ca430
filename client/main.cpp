// SPDX-License-Identifier: Apache-2.0
#include <string>
#include <vector>

#include "client/commands.h"
#include "common/journal_log.h"

int main(int argc, char **argv)
{
	gvm::log::useJournal();
	return gvm::client::run(std::vector<std::string>(argv + 1, argv + argc));
}
