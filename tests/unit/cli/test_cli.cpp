// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include "client/args.h"
#include "daemon/options.h"

using namespace gvm;

TEST_CASE("gvmd options: defaults, both value forms, and precise errors", "[options]")
{
	auto d = daemon::parseOptions({});
	REQUIRE(d);
	CHECK(d->runtimeDir == "/run/gvm");
	CHECK(d->socketPath == "/run/gvm/gvmd.sock");
	CHECK(d->stateDir == "/var/lib/gvm");
	CHECK(d->logLevel == log::Level::Info);

	auto o = daemon::parseOptions({"--runtime-dir", "/tmp/r", "--state-dir=/tmp/s", "--log-level", "debug"});
	REQUIRE(o);
	CHECK(o->socketPath == "/tmp/r/gvmd.sock");
	CHECK(o->stateDir == "/tmp/s");
	CHECK(o->logLevel == log::Level::Debug);

	auto s = daemon::parseOptions({"--socket=/tmp/x.sock", "--runtime-dir", "/tmp/r"});
	REQUIRE(s);
	CHECK(s->socketPath == "/tmp/x.sock");

	auto unknown = daemon::parseOptions({"--bogus"});
	REQUIRE_FALSE(unknown);
	CHECK(unknown.error().message() == "unknown argument '--bogus'");

	auto missing = daemon::parseOptions({"--socket"});
	REQUIRE_FALSE(missing);
	CHECK(missing.error().message() == "option --socket needs a value");

	auto empty = daemon::parseOptions({"--state-dir="});
	REQUIRE_FALSE(empty);

	auto level = daemon::parseOptions({"--log-level", "loud"});
	REQUIRE_FALSE(level);
	CHECK_THAT(level.error().message(), Catch::Contains("unknown log level 'loud'"));

	auto help = daemon::parseOptions({"--help"});
	REQUIRE(help);
	CHECK(help->showHelp);
}

TEST_CASE("gvmctl argument parsing: flags anywhere, repeats, and --", "[args]")
{
	std::vector<client::FlagSpec> specs = {{"--header", true, true}, {"--body", true, false}, {"--json", false, false}};

	auto a = client::parseArgs({"f.yaml", "--header", "A: 1", "GET", "--json", "--header=B:2", "https://x/"}, specs);
	REQUIRE(a);
	CHECK(a->positional == std::vector<std::string>{"f.yaml", "GET", "https://x/"});
	CHECK(a->values("--header") == std::vector<std::string>{"A: 1", "B:2"});
	CHECK(a->has("--json"));
	CHECK_FALSE(a->has("--body"));

	auto dashdash = client::parseArgs({"--", "--json", "-x"}, specs);
	REQUIRE(dashdash);
	CHECK(dashdash->positional == std::vector<std::string>{"--json", "-x"});
	CHECK_FALSE(dashdash->has("--json"));

	auto unknown = client::parseArgs({"--bogus"}, specs);
	REQUIRE_FALSE(unknown);
	CHECK(unknown.error().message() == "unknown option '--bogus'");

	CHECK_FALSE(client::parseArgs({"--body"}, specs));
	CHECK_FALSE(client::parseArgs({"--body", "a", "--body", "b"}, specs));
	CHECK_FALSE(client::parseArgs({"--json=yes"}, specs));

	// A lone "-" is an argument (stdin by convention), not a flag.
	auto dash = client::parseArgs({"-"}, specs);
	REQUIRE(dash);
	CHECK(dash->positional == std::vector<std::string>{"-"});
}
