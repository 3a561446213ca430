// SPDX-License-Identifier: Apache-2.0
//
// gvmctl's pure parts: command lines, usage errors, tables, the launch
// parameters and the exit status a sandbox's end maps to.
#include <catch2/catch.hpp>

#include <algorithm>
#include <iostream>
#include <sstream>

#include "client/commands.h"
#include "client/decision_format.h"
#include "client/launch_cmd.h"
#include "client/sandbox_cmd.h"
#include "client/table.h"

using namespace gvm;
using namespace gvm::client;

namespace {

// Captures what a command prints while it lives.
class Captured
{
public:
	Captured() : oldOut_(std::cout.rdbuf(out_.rdbuf())), oldErr_(std::cerr.rdbuf(err_.rdbuf())) {}
	~Captured()
	{
		std::cout.rdbuf(oldOut_);
		std::cerr.rdbuf(oldErr_);
	}
	std::string out() const { return out_.str(); }
	std::string err() const { return err_.str(); }

private:
	std::ostringstream out_;
	std::ostringstream err_;
	std::streambuf *oldOut_;
	std::streambuf *oldErr_;
};

struct Outcome {
	int status;
	std::string out;
	std::string err;
};

// Runs gvmctl in-process. None of the usage errors below gets as far as
// connecting: the socket named here does not exist, so a command that did
// try would fail with 1, not 2.
Outcome gvmctl(std::vector<std::string> args)
{
	args.insert(args.begin(), {"--socket", "/nonexistent/gvmd.sock"});
	Captured c;
	int status = run(args);
	return {status, c.out(), c.err()};
}

} // namespace

TEST_CASE("launch: options end at -- or at the command", "[launch][args]")
{
	auto a = parseLaunchArgs({"--policy", "p.yaml", "--monitor", "--name=agent", "--cooperative", "--upstream-ca",
				  "ca.pem", "--json", "--", "python3", "-u", "--json", "agent.py"});
	REQUIRE(a);
	CHECK(a->policyFile == "p.yaml");
	CHECK(a->monitor);
	CHECK(a->cooperative);
	CHECK(a->json);
	REQUIRE(a->name);
	CHECK(*a->name == "agent");
	CHECK(a->upstreamCaFile == "ca.pem");
	CHECK(a->command == std::vector<std::string>{"python3", "-u", "--json", "agent.py"});

	// Without "--", the first argument that is not an option starts the
	// command; what follows is the command's, options included.
	auto b = parseLaunchArgs({"--policy", "p.yaml", "curl", "-s", "--policy", "x"});
	REQUIRE(b);
	CHECK(b->policyFile == "p.yaml");
	CHECK_FALSE(b->monitor);
	CHECK_FALSE(b->cooperative);
	CHECK_FALSE(b->name);
	CHECK(b->upstreamCaFile.empty());
	CHECK(b->command == std::vector<std::string>{"curl", "-s", "--policy", "x"});

	// A value that looks like a command is the option's value.
	auto c = parseLaunchArgs({"--name", "curl", "--policy", "p", "--", "true"});
	REQUIRE(c);
	CHECK(*c->name == "curl");
	CHECK(c->command == std::vector<std::string>{"true"});

	auto help = parseLaunchArgs({"--help"});
	REQUIRE(help);
	CHECK(help->help);
}

TEST_CASE("launch: usage errors say what is wrong", "[launch][args]")
{
	auto message = [](std::vector<std::string> args) {
		auto r = parseLaunchArgs(args);
		REQUIRE_FALSE(r);
		return r.error().message();
	};
	CHECK(message({"--", "true"}) == "--policy FILE is required");
	CHECK(message({"--policy", "p"}) == "no command given (put it after --)");
	CHECK(message({"--policy", "p", "--"}) == "no command given (put it after --)");
	CHECK(message({"--policy"}) == "option --policy needs a value");
	CHECK(message({"--policy", "p", "--bogus", "--", "true"}) == "unknown option '--bogus'");
	CHECK(message({"--policy", "p", "--policy", "q", "--", "true"}) == "option --policy given twice");
	CHECK(message({"--policy", "p", "--name=", "--", "true"}) == "--name needs a non-empty name");
	CHECK(message({"--policy", "p", "--monitor=yes", "--", "true"}) == "option --monitor takes no value");

	Outcome o = gvmctl({"launch", "--policy", "p.yaml"});
	CHECK(o.status == kExitUsage);
	CHECK_THAT(o.err, Catch::StartsWith("gvmctl launch: no command given (put it after --)\n\nUsage: gvmctl launch"));
	CHECK(o.out.empty());

	Outcome h = gvmctl({"help", "launch"});
	CHECK(h.status == kExitOk);
	CHECK_THAT(h.out, Catch::StartsWith("Usage: gvmctl launch --policy FILE"));
	CHECK_THAT(h.out, Catch::Contains("128+N"));
}

TEST_CASE("launch: a missing or broken policy stops gvmctl before gvmd", "[launch]")
{
	Outcome missing = gvmctl({"launch", "--policy", "/nonexistent/p.yaml", "--", "true"});
	CHECK(missing.status == kExitFailure);
	CHECK(missing.err == "gvmctl: cannot read policy file /nonexistent/p.yaml: No such file or directory\n");

	// A directory is not a policy either.
	Outcome directory = gvmctl({"launch", "--policy", "/", "--", "true"});
	CHECK(directory.status == kExitFailure);
	CHECK_THAT(directory.err, Catch::Contains("Is a directory"));
}

TEST_CASE("launch: the sandbox.launch parameters", "[launch]")
{
	LaunchOptions o;
	o.policyFile = "policies/coding.yaml";
	o.command = {"python3", "agent.py"};
	o.cooperative = true;
	const std::vector<std::string> env = {"PATH=/usr/bin", "HOME=/home/a", "EMPTY="};

	rpc::Json p = buildLaunchParams(o, "version: 1\n", "", env, "/work", false);
	CHECK(p["argv"] == rpc::Json({"python3", "agent.py"}));
	CHECK(p["env"] == rpc::Json(env));
	CHECK(p["cwd"] == "/work");
	CHECK(p["policy_text"] == "version: 1\n");
	CHECK(p["policy_file"] == "policies/coding.yaml");
	CHECK(p["cooperative"] == true);
	CHECK(p["monitor"] == false);
	CHECK(p["tty"] == false);
	// Optional members are absent unless asked for.
	CHECK_FALSE(p.contains("name"));
	CHECK_FALSE(p.contains("upstream_ca_pem"));

	o.name = "bot";
	o.monitor = true;
	o.cooperative = false;
	o.upstreamCaFile = "ca.pem";
	rpc::Json q = buildLaunchParams(o, "x", "-----BEGIN CERTIFICATE-----\n", env, "/", true);
	CHECK(q["name"] == "bot");
	CHECK(q["monitor"] == true);
	CHECK(q["cooperative"] == false);
	CHECK(q["tty"] == true);
	CHECK(q["upstream_ca_pem"] == "-----BEGIN CERTIFICATE-----\n");

	// The environment is passed whole, as gvmctl has it.
	::setenv("GVM_TEST_LAUNCH_ENV", "a=b c", 1);
	const std::vector<std::string> mine = currentEnvironment();
	CHECK(std::find(mine.begin(), mine.end(), "GVM_TEST_LAUNCH_ENV=a=b c") != mine.end());
	::unsetenv("GVM_TEST_LAUNCH_ENV");
}

TEST_CASE("launch: exit status from sandbox.exited", "[launch]")
{
	using J = rpc::Json;
	CHECK(exitCodeFromExited({{"sandbox", "a"}, {"status", 0}, {"signal", nullptr}, {"exit_code", 0}}) == 0);
	CHECK(exitCodeFromExited({{"status", 7}, {"signal", nullptr}, {"exit_code", 7}}) == 7);
	CHECK(exitCodeFromExited({{"status", nullptr}, {"signal", 9}, {"exit_code", 137}}) == 137);
	CHECK(exitCodeFromExited({{"status", 255}, {"exit_code", 255}}) == 255);
	// Without a usable exit_code: the status, else 128 + the signal.
	CHECK(exitCodeFromExited({{"status", 3}}) == 3);
	CHECK(exitCodeFromExited({{"signal", 15}}) == 143);
	CHECK(exitCodeFromExited({{"signal", 2}, {"exit_code", "130"}}) == 130);
	CHECK(exitCodeFromExited({{"exit_code", 300}, {"signal", 1}}) == 129);
	// Nothing usable: gvmctl's own failure status.
	CHECK(exitCodeFromExited(J::object()) == kExitFailure);
	CHECK(exitCodeFromExited(J::array()) == kExitFailure);
	CHECK(exitCodeFromExited({{"exit_code", -1}}) == kExitFailure);
}

TEST_CASE("usage errors of every command exit 2 with a message", "[args]")
{
	struct Case {
		std::vector<std::string> args;
		std::string message;
	};
	const std::vector<Case> cases = {
		{{"ps", "extra"}, "gvmctl ps: unexpected argument 'extra'"},
		{{"ps", "--bogus"}, "gvmctl: unknown option '--bogus'"},
		{{"stop"}, "gvmctl stop: expected SANDBOX"},
		{{"stop", "a", "b"}, "gvmctl stop: expected one SANDBOX, got 2 arguments"},
		{{"tail", "a", "b"}, "gvmctl tail: expected at most one SANDBOX"},
		{{"pending", "x"}, "gvmctl pending: unexpected argument 'x'"},
		{{"approve"}, "gvmctl approve: expected REQUEST_ID"},
		{{"deny", "a", "b"}, "gvmctl deny: expected one REQUEST_ID, got 2 arguments"},
		{{"approve", "--all", "x"}, "gvmctl: unknown option '--all'"},
		{{"policy", "reload", "only-one"}, "gvmctl policy reload: expected SANDBOX FILE"},
		{{"launch", "--name"}, "gvmctl launch: option --name needs a value"},
	};
	for (const Case &c : cases) {
		INFO(c.args[0]);
		Outcome o = gvmctl(c.args);
		CHECK(o.status == kExitUsage);
		CHECK_THAT(o.err, Catch::StartsWith(c.message + "\n\nUsage: gvmctl "));
		CHECK(o.out.empty());
	}
}

TEST_CASE("every new command has help, and the main usage lists it", "[args]")
{
	Outcome main = gvmctl({"--help"});
	for (const char *command : {"launch", "ps", "stop", "tail", "pending", "approve", "deny", "policy reload"}) {
		INFO(command);
		CHECK_THAT(main.out, Catch::Contains(std::string("  ") + command + " "));
		std::vector<std::string> args = {"help"};
		std::istringstream words(command);
		for (std::string w; words >> w;)
			args.push_back(w);
		Outcome help = gvmctl(args);
		CHECK(help.status == kExitOk);
		CHECK_THAT(help.out, Catch::StartsWith(std::string("Usage: gvmctl ") + command));
	}
	Outcome ps = gvmctl({"ps", "--help"});
	CHECK(ps.status == kExitOk);
	CHECK_THAT(ps.out, Catch::Contains("--all"));
}

TEST_CASE("ages and time left", "[format]")
{
	CHECK(formatAge(0) == "0s");
	CHECK(formatAge(-3) == "0s");
	CHECK(formatAge(5.9) == "5s");
	CHECK(formatAge(59) == "59s");
	CHECK(formatAge(60) == "1m");
	CHECK(formatAge(3599) == "59m");
	CHECK(formatAge(3600) == "1h");
	CHECK(formatAge(7300) == "2h");
	CHECK(formatAge(86399) == "23h");
	CHECK(formatAge(86400 * 3 + 5) == "3d");

	CHECK(formatBytes(0) == "0B");
	CHECK(formatBytes(1023) == "1023B");
	CHECK(formatBytes(1024) == "1.0K");
	CHECK(formatBytes(2047) == "1.9K");
	CHECK(formatBytes(10 * 1024 - 1) == "9.9K");
	CHECK(formatBytes(10 * 1024) == "10K");
	CHECK(formatBytes(1048575) == "1023K");
	CHECK(formatBytes(1048576) == "1.0M");
	CHECK(formatBytes(110100480) == "105M");
	CHECK(formatBytes(1610612736) == "1.5G");
	CHECK(formatBytes(uint64_t{1} << 40) == "1.0T");
	CHECK(formatBytes(UINT64_MAX) == "15E");

	CHECK(formatRemaining(0) == "0s");
	CHECK(formatRemaining(-20) == "0s");
	CHECK(formatRemaining(1) == "1s");
	CHECK(formatRemaining(45000) == "45s");
	CHECK(formatRemaining(112000) == "1m52s");
	CHECK(formatRemaining(60000) == "1m00s");
	CHECK(formatRemaining(7380000) == "2h03m");
}

TEST_CASE("text helpers: width, cutting, quoting, terminal safety", "[format]")
{
	CHECK(displayWidth("abc") == 3);
	CHECK(displayWidth("héllo…") == 6);
	CHECK(truncateText("abcdef", 6) == "abcdef");
	CHECK(truncateText("abcdefg", 6) == "abcde…");
	CHECK(truncateText("ééééééé", 4) == "ééé…");
	CHECK(displayWidth(truncateText("ééééééé", 4)) == 4);
	CHECK(truncateText("abc", 0).empty());

	CHECK(shellJoin({"python3", "-c", "print('hi there')"}) == "python3 -c 'print('\\''hi there'\\'')'");
	CHECK(shellJoin({"curl", "https://x.example/a?b=c", ""}) == "curl 'https://x.example/a?b=c' ''");

	CHECK(terminalSafe("/a\x1b[2Jb\x7f") == "/a\\x1b[2Jb\\x7f");
	CHECK(terminalSafe("\xc2\x9b" "31m ok é") == "\\u009b31m ok é");
}

TEST_CASE("ps: the table, its columns and the COMMAND cut", "[format][ps]")
{
	rpc::Json sandboxes = rpc::Json::array();
	sandboxes.push_back({{"id", "1a2b3c4d"},
			     {"name", "coder"},
			     {"uid", 1000},
			     {"policy", "coding"},
			     {"sha256", "ab"},
			     {"mode", "enforce"},
			     {"cooperative", true},
			     {"age_s", 125.5},
			     {"command", {"python3", "agent.py", "--task", "fix the failing tests in the parser module"}},
			     {"state", "running"},
			     {"connections_open", 2},
			     {"connections_total", 40},
			     {"decisions", 1234},
			     {"pending", 1}});
	sandboxes.push_back({{"id", "ffee0011"},
			     {"name", ""},
			     {"uid", 0},
			     {"policy", "locked-down"},
			     {"mode", "monitor"},
			     {"cooperative", false},
			     {"age_s", 4000},
			     {"command", {"sh"}},
			     {"state", "worker-dead"},
			     {"connections_open", 0},
			     {"decisions", 0},
			     {"pending", 0},
			     {"isolation",
			      {{"workspace", "/home/u/src"},
			       {"overlay", true},
			       {"memory_bytes", 110100480},
			       {"pids", 3},
			       {"cpu_usec", 2500000},
			       {"memory_limit", 536870912},
			       {"pids_limit", 64}}}});

	const std::string expected =
		"ID        NAME   UID   POLICY       MODE          AGE  STATE        CONNS  DECISIONS  PENDING  MEM        "
		"PIDS  CPU  COMMAND\n"
		"1a2b3c4d  coder  1000  coding       enforce,coop  2m   running      2      1234       1        -          "
		"-     -    python3 agent.py --task 'fix the failin…\n"
		"ffee0011  -      0     locked-down  monitor       1h   worker-dead  0      0          0        105M/512M  "
		"3/64  2s   sh\n";
	CHECK(formatSandboxTable(sandboxes, std::nullopt) == expected);

	// A terminal of 140 columns: COMMAND gets what is left of it.
	const std::string narrow = formatSandboxTable(sandboxes, 140);
	std::istringstream lines(narrow);
	std::string line;
	while (std::getline(lines, line))
		CHECK(displayWidth(line) <= 140);
	CHECK_THAT(narrow, Catch::Contains("python3 agent.py --tas…\n"));
	// However narrow the terminal, COMMAND keeps a few characters.
	CHECK_THAT(formatSandboxTable(sandboxes, 20), Catch::Contains("python3 a…\n"));

	CHECK(formatSandboxTable(rpc::Json::array(), std::nullopt) ==
	      "ID  NAME  UID  POLICY  MODE  AGE  STATE  CONNS  DECISIONS  PENDING  MEM  PIDS  CPU  COMMAND\n");
	// Malformed entries are skipped, never thrown on.
	CHECK(formatSandboxTable(rpc::Json({1, "x", nullptr}), std::nullopt) ==
	      "ID  NAME  UID  POLICY  MODE  AGE  STATE  CONNS  DECISIONS  PENDING  MEM  PIDS  CPU  COMMAND\n");
}

TEST_CASE("pending: the table", "[format][pending]")
{
	rpc::Json pending = rpc::Json::array();
	pending.push_back({{"request_id", "1a2b3c4d-7"},
			   {"sandbox", "1a2b3c4d"},
			   {"method", "POST"},
			   {"host", "api.sendgrid.com"},
			   {"port", 443},
			   {"path", "/v3/mail/send"},
			   {"rule", "mail-needs-approval"},
			   {"expires", "2026-11-23T10:32:08Z"},
			   {"remaining_ms", 112000}});
	pending.push_back({{"request_id", "ffee0011-12"},
			   {"sandbox", "ffee0011"},
			   {"method", "PUT"},
			   {"host", "internal.example.com"},
			   {"port", 8443},
			   {"path", "/\x1b[31m/a/very/long/path/that/goes/on/and/on/and/on"},
			   {"rule", "needs-header"},
			   {"remaining_ms", 4100}});
	const std::string expected =
		"ID           SANDBOX   METHOD  HOST                       PATH                                      RULE   "
		"              EXPIRES-IN\n"
		"1a2b3c4d-7   1a2b3c4d  POST    api.sendgrid.com           /v3/mail/send                             "
		"mail-needs-approval  1m52s\n"
		"ffee0011-12  ffee0011  PUT     internal.example.com:8443  /\\x1b[31m/a/very/long/path/that/goes/on…  "
		"needs-header         5s\n";
	CHECK(formatPendingTable(pending) == expected);
	CHECK(formatPendingTable(rpc::Json::array()) == "ID  SANDBOX  METHOD  HOST  PATH  RULE  EXPIRES-IN\n");
}

TEST_CASE("decision lines: status 0 left out, holds name their request, controls escaped", "[format][tail]")
{
	rpc::Json r = {{"ts", "2026-11-23T10:30:08.123456Z"},
		       {"action", "deny"},
		       {"mode", "enforce"},
		       {"kind", "http"},
		       {"method", "POST"},
		       {"host", "api.openai.com"},
		       {"port", 443},
		       {"path", "/v1/chat"},
		       {"status", 403},
		       {"rule", "deny-shadow-models"},
		       {"sandbox", "sb1"},
		       {"reason", "matched rule deny-shadow-models"}};
	CHECK(formatDecision(r) == "2026-11-23T10:30:08.123456Z deny   http POST api.openai.com:443/v1/chat -> 403 "
				   "rule=deny-shadow-models sandbox=sb1 reason=\"matched rule deny-shadow-models\"");

	rpc::Json dns = {{"action", "allow"}, {"kind", "dns"},     {"host", "github.com"}, {"port", 53},
			 {"status", 0},       {"rule", "github"},   {"reason", "allowed"}};
	CHECK(formatDecision(dns) == "allow  dns github.com:53 rule=github");

	rpc::Json hold = {{"action", "hold"}, {"kind", "http"}, {"method", "POST"}, {"host", "api.sendgrid.com"},
			  {"port", 443}, {"path", "/v3/mail/send\x1b]0;pwned\x07"}, {"status", 0}, {"rule", "mail"},
			  {"request_id", "sb1-3"}, {"sandbox", "sb1"}};
	CHECK(formatDecision(hold) == "hold   http POST api.sendgrid.com:443/v3/mail/send\\x1b]0;pwned\\x07 rule=mail "
				      "sandbox=sb1 request=sb1-3");

	rpc::Json monitor = {{"action", "deny"}, {"mode", "monitor"}, {"kind", "tls"}, {"host", "x.example"},
			     {"port", 443}, {"rule", nullptr}};
	CHECK(formatDecision(monitor) == "would deny tls x.example:443 rule=(default)");
	CHECK(formatDecision(rpc::Json("junk")) == "\"junk\"");
}
