// SPDX-License-Identifier: Apache-2.0
//
// Every file in tests/data/policy/errors/ is a broken policy whose leading
// "# expect: LINE:COLUMN: TEXT" comments name the diagnostics the loader must
// report (all of them, each at its position, TEXT a substring).
#include <catch2/catch.hpp>

#include <sstream>

#include "policy/policy.h"
#include "table.h"

using namespace gvm::policy;
using gvm::policy::test::dataDir;
using gvm::policy::test::listFiles;
using gvm::policy::test::readFile;

namespace {

struct Expectation {
	int line = 0;
	int column = 0;
	std::string text;
};

std::vector<Expectation> expectations(const std::string &text)
{
	std::vector<Expectation> out;
	std::istringstream in(text);
	std::string line;
	const std::string prefix = "# expect: ";
	while (std::getline(in, line)) {
		if (line.rfind(prefix, 0) != 0)
			continue;
		std::string rest = line.substr(prefix.size());
		Expectation e;
		size_t colon1 = rest.find(':');
		size_t colon2 = rest.find(':', colon1 + 1);
		REQUIRE(colon1 != std::string::npos);
		REQUIRE(colon2 != std::string::npos);
		e.line = std::stoi(rest.substr(0, colon1));
		e.column = std::stoi(rest.substr(colon1 + 1, colon2 - colon1 - 1));
		e.text = rest.substr(colon2 + 1);
		if (!e.text.empty() && e.text.front() == ' ')
			e.text.erase(0, 1);
		out.push_back(e);
	}
	return out;
}

} // namespace

TEST_CASE("policy errors are reported at their positions", "[policy][errors]")
{
	std::vector<std::string> files = listFiles(dataDir("errors"), ".yaml");
	REQUIRE(files.size() >= 20);
	for (const std::string &path : files) {
		DYNAMIC_SECTION(path)
		{
			std::string text = readFile(path);
			std::vector<Expectation> expected = expectations(text);
			REQUIRE(!expected.empty());
			LoadResult result = loadPolicy(text, path);
			CHECK(result.engine == nullptr);
			std::string all;
			for (const Diagnostic &d : result.diagnostics)
				all += d.toString() + "\n";
			INFO("diagnostics:\n" << all);
			for (const Expectation &e : expected) {
				INFO("expected " << e.line << ":" << e.column << ": " << e.text);
				bool found = false;
				for (const Diagnostic &d : result.diagnostics) {
					if (d.line == e.line && d.column == e.column &&
					    d.message.find(e.text) != std::string::npos)
						found = true;
				}
				CHECK(found);
			}
			// Every diagnostic names the file, and none is unexpected.
			for (const Diagnostic &d : result.diagnostics) {
				INFO("unexpected? " << d.toString());
				CHECK(d.file == path);
				bool wanted = false;
				for (const Expectation &e : expected) {
					if (d.line == e.line && d.column == e.column &&
					    d.message.find(e.text) != std::string::npos)
						wanted = true;
				}
				CHECK(wanted);
			}
		}
	}
}
