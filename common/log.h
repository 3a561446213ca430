// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sstream>
#include <string>
#include <string_view>

struct iovec;

namespace gvm::log {

enum class Level { Debug, Info, Notice, Warning, Error };

enum class Category { Common, Policy, Daemon, Rpc, Client, Net, Proxy, Audit };

const char *toString(Level level);
const char *toString(Category category);

// Parses "debug", "info", "notice", "warning" or "error".
bool parseLevel(std::string_view text, Level *out);

// Sends one message's journal fields ("NAME=value" each) to the journal;
// true when the journal took it (sd_journal_sendv's contract).
using JournalSender = bool (*)(const struct iovec *fields, int count);
// Installed by programs that log to the journal (common/journal_log.h), so
// that the proxy worker, which never does, does not load libsystemd.
void setJournalSender(JournalSender sender);

// Process-wide threshold; messages below it are dropped before formatting.
void setThreshold(Level level);
Level threshold();
inline bool enabled(Level level) { return level >= threshold(); }

// One log line, emitted when the object is destroyed: to the journal (with
// GVM_CATEGORY= and any extra GVM_* fields) when stderr is connected to it
// ($JOURNAL_STREAM) and a JournalSender is installed, else to stderr.
class Message
{
public:
	Message(Category category, Level level, const char *file, int line);
	Message(const Message &) = delete;
	Message &operator=(const Message &) = delete;
	~Message();

	std::ostream &stream() { return stream_; }
	// Adds a structured journal field, e.g. field("GVM_SANDBOX", id).
	Message &field(std::string_view name, std::string_view value);

private:
	Category category_;
	Level level_;
	const char *file_;
	int line_;
	std::ostringstream stream_;
	std::string fields_; // "NAME=value\n" lines
};

// Turns the streamed expression into void, so GVM_LOG can sit in a ternary
// (and never produces a dangling else).
struct Voidify {
	void operator&(std::ostream &) {}
};

} // namespace gvm::log

#define GVM_LOG(category, level)                                                     \
	!::gvm::log::enabled(::gvm::log::Level::level)                                \
		? (void)0                                                            \
		: ::gvm::log::Voidify() & ::gvm::log::Message(::gvm::log::Category::category, \
							       ::gvm::log::Level::level, __FILE__, __LINE__) \
						  .stream()
