// SPDX-License-Identifier: Apache-2.0
//
// The audit log as gvmd writes it (AuditLog on a real loop and a real file)
// and as gvmctl verifies it: intact logs pass; edited, deleted, swapped and
// truncated records are each found at the right line.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "common/audit_chain.h"
#include "common/json_rpc.h"
#include "common/loop.h"
#include "daemon/audit_log.h"
#include "tests/support/audit_log.h"
#include "tests/support/process.h"

using namespace gvm;
using namespace gvm::test;
using namespace std::chrono_literals;

namespace {

nlohmann::json decision(int i)
{
	return {
		{"sandbox", "sb" + std::to_string(i % 3)}, {"uid", 1000},       {"policy", "coding"},
		{"policy_sha256", std::string(64, 'a')},    {"kind", "http"},    {"method", i % 2 ? "GET" : "POST"},
		{"host", "api.github.com"},                 {"port", 443},       {"path", "/repos/" + std::to_string(i)},
		{"rule", "github-read"},                    {"action", "allow"}, {"mode", "enforce"},
		{"status", 200},                            {"bytes_out", 120},  {"bytes_in", 4096},
		{"latency_us", 1500 + i},
	};
}

// Writes n records as gvmd would, into dir/audit.jsonl.
std::string writeLog(const std::string &dir, int n)
{
	std::vector<nlohmann::json> records;
	for (int i = 0; i < n; ++i)
		records.push_back(decision(i));
	return writeAuditLog(dir, records);
}

std::vector<std::string> readLines(const std::string &path)
{
	std::ifstream in(path);
	std::vector<std::string> lines;
	for (std::string l; std::getline(in, l);)
		lines.push_back(l);
	return lines;
}

void writeLines(const std::string &path, const std::vector<std::string> &lines, bool finalNewline = true)
{
	std::ofstream out(path, std::ios::trunc);
	for (size_t i = 0; i < lines.size(); ++i)
		out << lines[i] << (i + 1 < lines.size() || finalNewline ? "\n" : "");
}

RunResult verify(const std::string &file, bool json = false)
{
	std::vector<std::string> args = {binaryFromEnv("GVM_GVMCTL"), "audit", "verify", file};
	if (json)
		args.push_back("--json");
	return run(args);
}

} // namespace

TEST_CASE("a log written by gvmd verifies as intact", "[audit]")
{
	TempDir dir;
	std::string path = writeLog(dir.path() + "/audit", 50);
	auto lines = readLines(path);
	REQUIRE(lines.size() == 50);

	auto first = rpc::parseJson(lines[0]);
	REQUIRE(first);
	CHECK((*first)["v"] == 1);
	CHECK((*first)["seq"] == 1);
	CHECK((*first)["prev"] == kGenesisHash);
	CHECK((*first)["ts"].get<std::string>().size() == std::string("2026-11-23T10:30:08.123456Z").size());
	CHECK((*first)["host"] == "api.github.com");

	RunResult r = verify(path);
	INFO(r.err);
	CHECK(r.status == 0);
	CHECK_THAT(r.out, Catch::Contains("intact, 50 records"));

	auto j = rpc::parseJson(verify(path, true).out);
	REQUIRE(j);
	CHECK((*j)["status"] == "intact");
	CHECK((*j)["last_seq"] == 50);
}

TEST_CASE("gvmctl audit verify finds each kind of tampering", "[audit]")
{
	TempDir dir;
	std::string path = writeLog(dir.path() + "/audit", 30);
	const auto lines = readLines(path);
	std::string copy = dir.path() + "/copy.jsonl";

	SECTION("an edited field")
	{
		auto edited = lines;
		auto r = rpc::parseJson(edited[9]);
		(*r)["action"] = "deny";
		edited[9] = rpc::dumpJson(*r);
		writeLines(copy, edited);
		RunResult v = verify(copy);
		CHECK(v.status == 1);
		CHECK_THAT(v.err, Catch::Contains(copy + ":10: broken: record 10 was modified"));
	}
	SECTION("an edit that keeps the JSON but changes one byte of the hash")
	{
		auto edited = lines;
		size_t at = edited[4].find("\"hash\":\"") + 8;
		edited[4][at] = edited[4][at] == '0' ? '1' : '0';
		writeLines(copy, edited);
		CHECK(verify(copy).status == 1);
	}
	SECTION("a deleted line")
	{
		auto deleted = lines;
		deleted.erase(deleted.begin() + 19);
		writeLines(copy, deleted);
		RunResult v = verify(copy);
		CHECK(v.status == 1);
		CHECK_THAT(v.err, Catch::Contains(copy + ":20: broken: record 21 does not follow record 19"));
	}
	SECTION("two swapped lines")
	{
		auto swapped = lines;
		std::swap(swapped[4], swapped[5]);
		writeLines(copy, swapped);
		auto j = rpc::parseJson(verify(copy, true).out);
		REQUIRE(j);
		CHECK((*j)["status"] == "broken");
		CHECK((*j)["line"] == 5);
		CHECK((*j)["records"] == 4);
	}
	SECTION("a truncated last line")
	{
		auto cut = lines;
		cut.back().resize(cut.back().size() / 2);
		writeLines(copy, cut, false);
		RunResult v = verify(copy);
		CHECK(v.status == 1);
		CHECK_THAT(v.err, Catch::Contains(copy + ":30: truncated:"));
		auto j = rpc::parseJson(verify(copy, true).out);
		REQUIRE(j);
		CHECK((*j)["status"] == "truncated");
		CHECK((*j)["records"] == 29);
	}
	SECTION("the first record removed")
	{
		auto headless = std::vector<std::string>(lines.begin() + 1, lines.end());
		writeLines(copy, headless);
		RunResult v = verify(copy);
		CHECK(v.status == 1);
		CHECK_THAT(v.err, Catch::Contains(copy + ":1: broken"));
	}
	SECTION("a forged record appended with a correct-looking hash of its own")
	{
		auto forged = lines;
		nlohmann::json r = decision(99);
		sealAuditRecord(r, 31, kGenesisHash); // does not chain to record 30
		forged.push_back(rpc::dumpJson(r));
		writeLines(copy, forged);
		RunResult v = verify(copy);
		CHECK(v.status == 1);
		CHECK_THAT(v.err, Catch::Contains(copy + ":31: broken"));
	}
}

TEST_CASE("a restarted writer continues the chain, after cutting off a partial record", "[audit]")
{
	TempDir dir;
	std::string auditDir = dir.path() + "/audit";
	std::string path = writeLog(auditDir, 10);

	// A crash in the middle of a write leaves half a line.
	{
		std::ofstream out(path, std::ios::app);
		out << R"({"v":1,"seq":11,"host":"api.git)";
	}
	CHECK(verify(path).status == 1);

	writeLog(auditDir, 5);
	auto lines = readLines(path);
	REQUIRE(lines.size() == 15);
	CHECK((*rpc::parseJson(lines.back()))["seq"] == 15);
	RunResult v = verify(path);
	INFO(v.err);
	CHECK(v.status == 0);
	CHECK_THAT(v.out, Catch::Contains("intact, 15 records"));
}

TEST_CASE("records reach the disk within the sync delay without an explicit flush", "[audit]")
{
	TempDir dir;
	auto loop = Loop::create();
	REQUIRE(loop);
	auto log = daemon::AuditLog::open(**loop, dir.path() + "/audit");
	REQUIRE(log);
	(*log)->append(AuditRecord::fromJson(decision(1)));
	(*log)->append(AuditRecord::fromJson(decision(2)));
	// Nothing written yet: records are batched.
	CHECK(readLines((*log)->path()).empty());

	Timer stop(**loop, [&] { (*loop)->stop(); });
	stop.start(static_cast<uint64_t>((daemon::kAuditSyncDelay * 3).count()));
	(*loop)->run();
	CHECK(readLines((*log)->path()).size() == 2);
}

TEST_CASE("records are in the file when the loop pass that appended them ends, before any sync", "[audit]")
{
	// What a crash of gvmd can lose: only the records of the pass it dies
	// in. The kernel has the others, synced or not.
	TempDir dir;
	auto loop = Loop::create();
	REQUIRE(loop);
	auto log = daemon::AuditLog::open(**loop, dir.path() + "/audit");
	REQUIRE(log);
	std::vector<size_t> seen;
	(*loop)->post([&] {
		(*log)->append(AuditRecord::fromJson(decision(1)));
		(*log)->append(AuditRecord::fromJson(decision(2)));
		seen.push_back(readLines((*log)->path()).size()); // the pass has not ended
	});
	// Long before the sync delay, each after the pass before it.
	Timer last(**loop, [&] {
		seen.push_back(readLines((*log)->path()).size());
		(*loop)->stop();
	});
	Timer look(**loop, [&] {
		seen.push_back(readLines((*log)->path()).size());
		(*log)->append(AuditRecord::fromJson(decision(3)));
		last.start(1);
	});
	look.start(1);
	(*loop)->run();
	CHECK(seen == std::vector<size_t>{0, 2, 3});
	CHECK(verify((*log)->path()).status == 0);
}

TEST_CASE("gvmd opens its audit log in the state directory and reports it", "[audit]")
{
	TempDir dir;
	std::string socket = dir.path() + "/gvmd.sock";
	Child gvmd = Child::start({binaryFromEnv("GVM_GVMD"), "--socket", socket, "--state-dir", dir.path() + "/state"},
				  {}, dir.path() + "/gvmd.log");
	REQUIRE(waitFor([&] { return RawClient(socket).connected(); }));
	auto reply = RawClient(socket).call("daemon.status");
	REQUIRE(reply);
	CHECK((*reply)["result"]["audit"]["path"] == dir.path() + "/state/audit/audit.jsonl");
	CHECK((*reply)["result"]["audit"]["records"] == 0);
	struct stat st{};
	REQUIRE(::stat((dir.path() + "/state/audit/audit.jsonl").c_str(), &st) == 0);
	CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("gvmctl audit verify explains a missing file and bad usage", "[audit]")
{
	RunResult missing = verify("/nonexistent/audit.jsonl");
	CHECK(missing.status == 1);
	CHECK_THAT(missing.err, Catch::Contains("cannot read /nonexistent/audit.jsonl"));
	RunResult usage = run({binaryFromEnv("GVM_GVMCTL"), "audit", "frob"});
	CHECK(usage.status == 2);
	RunResult help = run({binaryFromEnv("GVM_GVMCTL"), "audit", "verify", "--help"});
	CHECK(help.status == 0);
	CHECK_THAT(help.out, Catch::Contains("first broken link"));
}

TEST_CASE("gvmctl audit show returns the latest decisions, filtered", "[audit]")
{
	TempDir dir;
	std::string stateDir = dir.path() + "/state";
	// Records of three sandboxes, as gvmd would have written them.
	std::vector<nlohmann::json> seeded;
	for (int i = 0; i < 12; ++i) {
		auto r = decision(i);
		r["uid"] = ::getuid();
		if (i == 11) {
			r["mode"] = "monitor";
			r["action"] = "deny";
			r["rule"] = nullptr;
		}
		seeded.push_back(r);
	}
	writeAuditLog(stateDir + "/audit", seeded);
	std::string socket = dir.path() + "/gvmd.sock";
	Child gvmd = Child::start({binaryFromEnv("GVM_GVMD"), "--socket", socket, "--state-dir", stateDir}, {},
				  dir.path() + "/gvmd.log");
	REQUIRE(waitFor([&] { return RawClient(socket).connected(); }));
	auto gvmctl = [&](std::vector<std::string> args) {
		args.insert(args.begin(), {binaryFromEnv("GVM_GVMCTL"), "--socket", socket, "audit", "show"});
		return run(args);
	};

	RunResult all = gvmctl({"--json"});
	INFO(all.err);
	REQUIRE(all.status == 0);
	std::istringstream lines(all.out);
	std::vector<nlohmann::json> records;
	for (std::string l; std::getline(lines, l);)
		records.push_back(*rpc::parseJson(l));
	REQUIRE(records.size() == 12);
	CHECK(records.front()["seq"] == 1);
	CHECK(records.back()["seq"] == 12);

	RunResult sb1 = gvmctl({"--sandbox", "sb1", "--limit", "2", "--json"});
	REQUIRE(sb1.status == 0);
	std::istringstream sbLines(sb1.out);
	std::vector<int> seqs;
	for (std::string l; std::getline(sbLines, l);) {
		auto r = rpc::parseJson(l);
		CHECK((*r)["sandbox"] == "sb1");
		seqs.push_back((*r)["seq"].get<int>());
	}
	// sb1 holds records 2, 5, 8, 11; the latest two, oldest first.
	CHECK(seqs == std::vector<int>{8, 11});

	RunResult human = gvmctl({"--limit", "1"});
	REQUIRE(human.status == 0);
	CHECK_THAT(human.out, Catch::Contains("would deny http GET api.github.com:443/repos/11 -> 200 rule=(default) sandbox=sb2"));

	RunResult badLimit = gvmctl({"--limit", "0"});
	CHECK(badLimit.status == 1);
	CHECK_THAT(badLimit.err, Catch::Contains("\"limit\" must be an integer from 1 to 10000"));
	CHECK(gvmctl({"--limit", "x"}).status == 2);
}
