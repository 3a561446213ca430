// SPDX-License-Identifier: Apache-2.0
#include "daemon/audit_log.h"

#include <cerrno>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "common/json_rpc.h"
#include "common/log.h"
#include "common/rfc3339.h"

namespace gvm::daemon {


AuditLog::AuditLog(Loop &loop, std::string path, UniqueFd fd)
	: loop_(loop), path_(std::move(path)), fd_(std::move(fd)), timer_(loop, [this] {
		  if (auto r = flush(); !r)
			  GVM_LOG(Audit, Error) << "writing " << path_ << ": " << r.error().message();
	  }),
	  prev_(kGenesisHash)
{
	uv_prepare_init(loop.get(), endOfPass_.get());
	endOfPass_.get()->data = this;
}

AuditLog::~AuditLog()
{
	if (auto r = flush(); !r)
		GVM_LOG(Audit, Error) << "writing " << path_ << " at exit: " << r.error().message();
}

Result<std::unique_ptr<AuditLog>> AuditLog::open(Loop &loop, const std::string &dir)
{
	if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST)
		return fail(Error::fromErrno(errno, "creating " + dir));
	std::string path = dir + "/audit.jsonl";
	UniqueFd fd(::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
	if (!fd)
		return fail(Error::fromErrno(errno, "opening " + path));
	std::unique_ptr<AuditLog> log(new AuditLog(loop, std::move(path), std::move(fd)));
	GVM_TRY_VOID(log->recover(), "reading the audit log " + log->path_);
	return log;
}

Result<void> AuditLog::recover()
{
	struct stat st{};
	if (::fstat(fd_.get(), &st) < 0)
		return fail(Error::fromErrno(errno, "fstat"));
	if (st.st_size == 0)
		return {};

	// Only the tail matters: find the last complete line.
	const off_t size = st.st_size;
	const off_t window = std::min<off_t>(size, static_cast<off_t>(kMaxAuditLineBytes) + 2);
	std::string tail(static_cast<size_t>(window), '\0');
	ssize_t n = ::pread(fd_.get(), tail.data(), tail.size(), size - window);
	if (n != window)
		return fail(Error::fromErrno(n < 0 ? errno : EIO, "reading the tail"));

	size_t end = tail.size();
	if (tail.back() != '\n') {
		// Cut short by a crash: remove the partial line so the next
		// record starts on a line of its own.
		size_t nl = tail.rfind('\n');
		off_t keep = nl == std::string::npos ? size - window : size - window + static_cast<off_t>(nl) + 1;
		if (nl == std::string::npos && window < size)
			return fail(Error::fromErrno(EINVAL, "the last line is longer than any record"));
		GVM_LOG(Audit, Warning) << path_ << ": removing an incomplete last record (" << (size - keep)
					<< " bytes) left by an interrupted write";
		if (::ftruncate(fd_.get(), keep) < 0)
			return fail(Error::fromErrno(errno, "truncating the incomplete last record"));
		end = nl == std::string::npos ? 0 : nl + 1;
		if (end == 0)
			return {};
	}
	size_t start = tail.rfind('\n', end - 2);
	start = start == std::string::npos ? 0 : start + 1;
	if (start == 0 && window < size)
		return fail(Error::fromErrno(EINVAL, "the last line is longer than any record"));
	auto last = rpc::parseJson(std::string_view(tail).substr(start, end - 1 - start));
	if (!last || !last->is_object() || !(*last)["seq"].is_number_unsigned() || !(*last)["hash"].is_string())
		return fail(Error::fromErrno(EINVAL, "the last record is not a gvm audit record"));
	seq_ = (*last)["seq"].get<uint64_t>();
	prev_ = (*last)["hash"].get<std::string>();
	GVM_LOG(Audit, Info) << path_ << ": continuing after record " << seq_;
	return {};
}

const std::string &AuditLog::append(AuditRecord record)
{
	if (!record.contains("v"))
		record.setNumber("v", 1);
	if (!record.contains("ts"))
		record.setString("ts", rfc3339(std::chrono::system_clock::now(), TimePrecision::Micros));
	last_ = record.seal(++seq_, prev_);
	prev_ = record.text("hash");
	pending_ += last_;
	pending_ += '\n';
	journal(record);

	if (pending_.size() >= kAuditBatchBytes) {
		if (auto r = flush(); !r)
			GVM_LOG(Audit, Error) << "writing " << path_ << ": " << r.error().message();
		return last_;
	}
	if (!uv_is_active(endOfPass_.base()))
		uv_prepare_start(endOfPass_.get(), [](uv_prepare_t *p) {
			uv_prepare_stop(p);
			auto *self = static_cast<AuditLog *>(p->data);
			if (!self)
				return;
			// A failure stays queued; the sync timer's flush retries it
			// and reports it, at most once per kAuditSyncDelay.
			if (auto r = self->writeQueued(); !r)
				GVM_LOG(Audit, Debug) << "writing " << self->path_ << ": " << r.error().message();
		});
	if (!timer_.active())
		timer_.start(static_cast<uint64_t>(kAuditSyncDelay.count()));
	return last_;
}

Result<void> AuditLog::flush()
{
	timer_.stop();
	if (auto written = writeQueued(); !written)
		return written;
	if (unsynced_) {
		if (::fdatasync(fd_.get()) < 0)
			return fail(Error::fromErrno(errno, "fdatasync"));
		unsynced_ = false;
	}
	return {};
}

Result<void> AuditLog::writeQueued()
{
	uv_prepare_stop(endOfPass_.get());
	size_t done = 0;
	while (done < pending_.size()) {
		ssize_t n = ::write(fd_.get(), pending_.data() + done, pending_.size() - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			// Keep what was not written; the next pass or flush
			// retries it.
			unsynced_ = unsynced_ || done > 0;
			pending_.erase(0, done);
			return fail(Error::fromErrno(errno, "write"));
		}
		done += static_cast<size_t>(n);
	}
	unsynced_ = unsynced_ || !pending_.empty();
	pending_.clear();
	return {};
}

Result<std::vector<nlohmann::json>> AuditLog::readBack(size_t limit,
						       const std::function<bool(const nlohmann::json &)> &keep)
{
	GVM_TRY_VOID(flush(), "writing the audit log");
	UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
	if (!fd)
		return fail(Error::fromErrno(errno, "opening " + path_));
	// A full scan: fine for the log sizes of one host; an index comes when
	// logs rotate.
	std::deque<nlohmann::json> kept;
	std::string buffer;
	char chunk[65536];
	for (;;) {
		ssize_t n = ::read(fd.get(), chunk, sizeof(chunk));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fail(Error::fromErrno(errno, "reading " + path_));
		}
		if (n == 0)
			break;
		buffer.append(chunk, static_cast<size_t>(n));
		size_t start = 0;
		for (size_t nl; (nl = buffer.find('\n', start)) != std::string::npos; start = nl + 1) {
			auto record = rpc::parseJson(std::string_view(buffer).substr(start, nl - start));
			if (!record || !record->is_object() || !keep(*record))
				continue;
			kept.push_back(std::move(*record));
			if (kept.size() > limit)
				kept.pop_front();
		}
		buffer.erase(0, start);
	}
	return std::vector<nlohmann::json>(std::make_move_iterator(kept.begin()), std::make_move_iterator(kept.end()));
}

bool AuditLog::journalReachable()
{
	const auto now = std::chrono::steady_clock::now();
	if (now >= journalChecked_ + kJournalRecheck) {
		journalChecked_ = now;
		// libsystemd drops messages silently when journald is not
		// there, after formatting them; so ask before formatting.
		const bool reachable = ::access(kJournalSocket, F_OK) == 0;
		if (reachable != journalReachable_)
			GVM_LOG(Audit, Notice) << (reachable ? "the journal is reachable: decisions are mirrored to it"
							     : std::string("the journal is not reachable (no ") + kJournalSocket +
								       "): decisions are recorded in " + path_ + " only");
		journalReachable_ = reachable;
	}
	return journalReachable_;
}

void AuditLog::journal(const AuditRecord &r)
{
	if (!journalReachable())
		return;
	auto text = [&](const char *key) { return r.text(key); };
	std::string message = text("action") + " " + text("kind") + " " + text("method") + " " + text("host") +
			      text("path") + " rule=" + text("rule");
	sd_journal_send(("MESSAGE=" + message).c_str(), "PRIORITY=6", "GVM_AUDIT=1",
			("GVM_SEQ=" + text("seq")).c_str(), ("GVM_SANDBOX=" + text("sandbox")).c_str(),
			("GVM_UID=" + text("uid")).c_str(), ("GVM_KIND=" + text("kind")).c_str(),
			("GVM_ACTION=" + text("action")).c_str(), ("GVM_MODE=" + text("mode")).c_str(),
			("GVM_HOST=" + text("host")).c_str(), ("GVM_RULE=" + text("rule")).c_str(),
			("GVM_POLICY_SHA256=" + text("policy_sha256")).c_str(), ("GVM_HASH=" + text("hash")).c_str(),
			nullptr);
}

} // namespace gvm::daemon
