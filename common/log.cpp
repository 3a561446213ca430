// SPDX-License-Identifier: Apache-2.0
#include "common/log.h"

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <sys/uio.h>
#include <syslog.h>
#include <unistd.h>
#include <vector>

namespace gvm::log {

namespace {

std::atomic<Level> gThreshold{Level::Info};
std::atomic<JournalSender> gJournalSender{nullptr};

int syslogPriority(Level level)
{
	switch (level) {
	case Level::Debug: return LOG_DEBUG;
	case Level::Info: return LOG_INFO;
	case Level::Notice: return LOG_NOTICE;
	case Level::Warning: return LOG_WARNING;
	case Level::Error: return LOG_ERR;
	}
	return LOG_INFO;
}

bool toJournal()
{
	static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
	return journal;
}

} // namespace

const char *toString(Level level)
{
	switch (level) {
	case Level::Debug: return "debug";
	case Level::Info: return "info";
	case Level::Notice: return "notice";
	case Level::Warning: return "warning";
	case Level::Error: return "error";
	}
	return "?";
}

const char *toString(Category category)
{
	switch (category) {
	case Category::Common: return "common";
	case Category::Policy: return "policy";
	case Category::Daemon: return "daemon";
	case Category::Rpc: return "rpc";
	case Category::Client: return "client";
	case Category::Net: return "net";
	case Category::Proxy: return "proxy";
	case Category::Audit: return "audit";
	}
	return "?";
}

bool parseLevel(std::string_view text, Level *out)
{
	for (Level l : {Level::Debug, Level::Info, Level::Notice, Level::Warning, Level::Error}) {
		if (text == toString(l)) {
			*out = l;
			return true;
		}
	}
	return false;
}

void setJournalSender(JournalSender sender) { gJournalSender.store(sender); }
void setThreshold(Level level) { gThreshold.store(level); }
Level threshold() { return gThreshold.load(); }

Message::Message(Category category, Level level, const char *file, int line)
	: category_(category), level_(level), file_(file), line_(line)
{
}

Message &Message::field(std::string_view name, std::string_view value)
{
	fields_.append(name).append("=").append(value).append("\n");
	return *this;
}

Message::~Message()
{
	const std::string text = stream_.str();
	const JournalSender sendToJournal = gJournalSender.load();
	if (sendToJournal && toJournal()) {
		std::vector<std::string> items = {
			"MESSAGE=" + text,
			"PRIORITY=" + std::to_string(syslogPriority(level_)),
			std::string("GVM_CATEGORY=") + toString(category_),
			std::string("CODE_FILE=") + file_,
			"CODE_LINE=" + std::to_string(line_),
		};
		size_t pos = 0;
		while (pos < fields_.size()) {
			size_t nl = fields_.find('\n', pos);
			items.push_back(fields_.substr(pos, nl - pos));
			pos = nl + 1;
		}
		std::vector<iovec> iov;
		iov.reserve(items.size());
		for (auto &item : items)
			iov.push_back({item.data(), item.size()});
		if (sendToJournal(iov.data(), static_cast<int>(iov.size())))
			return;
	}
	std::string line;
	line.reserve(text.size() + 32);
	line.append("gvm ").append(toString(level_)).append(" [").append(toString(category_)).append("] ");
	line.append(text).append("\n");
	// One write so lines of concurrent processes do not interleave.
	[[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
}

} // namespace gvm::log
