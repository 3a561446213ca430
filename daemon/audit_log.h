// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/audit_chain.h"
#include "common/loop.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace gvm::daemon {

// Records are synced (fdatasync) at most this long after they are appended.
inline constexpr std::chrono::milliseconds kAuditSyncDelay{100};
// A batch this large is written at once rather than waiting for the timer.
inline constexpr size_t kAuditBatchBytes = 256 * 1024;
// journald's socket, and how often gvmd looks whether it is there.
inline constexpr char kJournalSocket[] = "/run/systemd/journal/socket";
inline constexpr std::chrono::seconds kJournalRecheck{10};

// The append-only, hash-chained audit log (see common/audit_chain.h) in
// DIR/audit.jsonl. Owned by the Daemon, which is its only writer; lives on
// the loop thread. append() seals a record into the chain at once and
// queues it; the records queued in one pass of the loop are written in
// order, with one write(2), when that pass ends, and fdatasync()ed within
// kAuditSyncDelay; flush() and destruction do both at once. So a clean stop
// loses nothing, a crash of gvmd loses at most the records of the loop pass
// it died in (the kernel has the others), and a crash of the host at most
// the last unsynced kAuditSyncDelay. Opening an
// existing log continues its chain; a last line cut short by a crash is cut
// off (and said so in the log) so new records never follow a broken one.
class AuditLog
{
public:
	static Result<std::unique_ptr<AuditLog>> open(Loop &loop, const std::string &dir);
	~AuditLog();

	// Seals the record (adds "v", "ts" if absent, "seq", "prev", "hash"),
	// queues it for writing, mirrors it to the journal and returns its line
	// (without the newline).
	const std::string &append(AuditRecord record);

	// Writes everything queued and syncs everything written.
	Result<void> flush();

	// The last `limit` records for which keep(record) holds, oldest first,
	// read back from the file after a flush.
	Result<std::vector<nlohmann::json>> readBack(size_t limit,
						     const std::function<bool(const nlohmann::json &)> &keep);

	const std::string &path() const { return path_; }
	uint64_t lastSeq() const { return seq_; }
	const std::string &lastHash() const { return prev_; }

private:
	AuditLog(Loop &loop, std::string path, UniqueFd fd);
	Result<void> recover();
	// Writes the queued records (no sync).
	Result<void> writeQueued();
	void journal(const AuditRecord &record);
	// Whether journald is there to take the copy (looked up at most once
	// per kJournalRecheck).
	bool journalReachable();

	Loop &loop_;
	std::string path_;
	UniqueFd fd_;
	Timer timer_;
	// Writes the queue when the loop pass that filled it ends.
	UvHandle<uv_prepare_t> endOfPass_;
	std::string pending_;
	bool unsynced_ = false; // written since the last fdatasync
	uint64_t seq_ = 0;
	std::string prev_;
	std::string last_;
	std::chrono::steady_clock::time_point journalChecked_{};
	bool journalReachable_ = true;
};

} // namespace gvm::daemon
