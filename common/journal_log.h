// SPDX-License-Identifier: Apache-2.0
//
// Log messages to the journal (sd_journal_sendv) when stderr is connected
// to it. Kept apart from common/log so that programs which never log to the
// journal (the proxy worker) do not link libsystemd.
#pragma once

namespace gvm::log {

// Installs the journal sender of common/log.h.
void useJournal();

} // namespace gvm::log
