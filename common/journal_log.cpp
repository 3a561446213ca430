// SPDX-License-Identifier: Apache-2.0
#include "common/journal_log.h"

#include <systemd/sd-journal.h>

#include "common/log.h"

namespace gvm::log {

void useJournal()
{
	setJournalSender([](const struct iovec *fields, int count) { return sd_journal_sendv(fields, count) >= 0; });
}

} // namespace gvm::log
