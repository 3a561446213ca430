// SPDX-License-Identifier: Apache-2.0
//
// gvmd's audit log mirrors every decision to the journal through
// libsystemd's native protocol. The test gives its own mount namespace a
// private /run with a datagram socket where journald's would be, and reads
// what arrives there as journald would.
#include <catch2/catch.hpp>

#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "common/audit_chain.h"
#include "common/loop.h"
#include "common/unique_fd.h"
#include "daemon/audit_log.h"
#include "tests/support/process.h"

using namespace gvm;
using namespace std::chrono_literals;

namespace {

using Fields = std::map<std::string, std::string>;

// A stand-in for journald's socket: collects every datagram, as fields.
class JournalSocket
{
public:
	JournalSocket()
	{
		fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
		REQUIRE(fd_);
		sockaddr_un addr{};
		addr.sun_family = AF_UNIX;
		std::strncpy(addr.sun_path, daemon::kJournalSocket, sizeof(addr.sun_path) - 1);
		REQUIRE(::bind(fd_.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0);
		reader_ = std::thread([this] { read(); });
	}
	~JournalSocket()
	{
		stop_ = true;
		reader_.join();
	}

	std::vector<Fields> messages()
	{
		std::lock_guard lock(mutex_);
		return messages_;
	}

private:
	void read()
	{
		std::vector<char> buffer(256 * 1024);
		while (!stop_) {
			pollfd p{fd_.get(), POLLIN, 0};
			if (::poll(&p, 1, 20) <= 0)
				continue;
			ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), 0);
			if (n <= 0)
				continue;
			// KEY=VALUE lines (values with newlines use a binary form
			// that none of gvmd's fields needs).
			Fields fields;
			std::string_view rest(buffer.data(), static_cast<size_t>(n));
			while (!rest.empty()) {
				size_t nl = rest.find('\n');
				std::string_view line = rest.substr(0, nl);
				size_t eq = line.find('=');
				if (eq != std::string_view::npos)
					fields[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
				rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
			}
			std::lock_guard lock(mutex_);
			messages_.push_back(std::move(fields));
		}
	}

	UniqueFd fd_;
	std::thread reader_;
	std::atomic<bool> stop_{false};
	std::mutex mutex_;
	std::vector<Fields> messages_;
};

AuditRecord decision(int i)
{
	return AuditRecord::fromJson({
		{"sandbox", "sb1"}, {"uid", 1000}, {"kind", "http"}, {"method", "GET"}, {"host", "api.github.com"},
		{"port", 443}, {"path", "/repos/" + std::to_string(i)}, {"rule", "github-read"}, {"action", "allow"},
		{"mode", "enforce"},
	});
}

void runFor(Loop &loop, std::chrono::milliseconds span)
{
	Timer stop(loop, [&] { loop.stop(); });
	stop.start(static_cast<uint64_t>(span.count()));
	loop.run();
}

} // namespace

TEST_CASE("every decision is mirrored to the journal, in order, with its record's fields", "[journal]")
{
	// This process's own /run, so the socket takes journald's place here
	// only.
	REQUIRE(::unshare(CLONE_NEWNS) == 0);
	REQUIRE(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0);
	REQUIRE(::mount("tmpfs", "/run", "tmpfs", 0, "mode=0755") == 0);
	REQUIRE(::mkdir("/run/systemd", 0755) == 0);
	REQUIRE(::mkdir("/run/systemd/journal", 0755) == 0);
	JournalSocket journal;

	test::TempDir dir;
	auto loop = Loop::create();
	REQUIRE(loop);
	auto log = daemon::AuditLog::open(**loop, dir.path() + "/audit");
	REQUIRE(log);

	// More at once than journald's default limit for a service over 30 s
	// (10000): gvmd's unit lifts it, and gvmd sends every one.
	constexpr int kBurst = 12000;
	for (int i = 0; i < kBurst; ++i)
		(*log)->append(decision(i));
	runFor(**loop, 300ms);
	REQUIRE((*log)->flush());

	std::vector<Fields> messages;
	for (int i = 0; i < 100 && messages.size() < kBurst; ++i) {
		std::this_thread::sleep_for(20ms);
		messages = journal.messages();
	}
	REQUIRE(messages.size() == kBurst);
	std::ifstream in((*log)->path());
	std::string line;
	for (size_t i = 0; i < kBurst; ++i) {
		INFO("record " << i + 1);
		REQUIRE(std::getline(in, line));
		const auto record = nlohmann::json::parse(line);
		const Fields &m = messages[i];
		REQUIRE(m.at("GVM_AUDIT") == "1");
		REQUIRE(m.at("GVM_SEQ") == std::to_string(i + 1));
		REQUIRE(m.at("GVM_HASH") == record["hash"]);
		REQUIRE(m.at("PRIORITY") == "6");
		REQUIRE(m.at("MESSAGE") == "allow http GET api.github.com/repos/" + std::to_string(i) + " rule=github-read");
	}
	const Fields &first = messages[0];
	CHECK(first.at("GVM_SANDBOX") == "sb1");
	CHECK(first.at("GVM_UID") == "1000");
	CHECK(first.at("GVM_KIND") == "http");
	CHECK(first.at("GVM_ACTION") == "allow");
	CHECK(first.at("GVM_MODE") == "enforce");
	CHECK(first.at("GVM_HOST") == "api.github.com");
	CHECK(first.at("GVM_RULE") == "github-read");
}
