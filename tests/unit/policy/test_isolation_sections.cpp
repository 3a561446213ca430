// SPDX-License-Identifier: Apache-2.0
//
// The policy's `filesystem:`, `syscalls:` and `limits:` sections: their
// defaults when absent, every valid form parsed into the exact value the
// sandbox will enforce, and every mistake reported as the exact diagnostic
// at its line and column.
#include <catch2/catch.hpp>

#include <iterator>
#include <string>
#include <vector>

#include "common/sha256.h"
#include "policy/policy.h"
#include "table.h"

using namespace gvm::policy;
using gvm::policy::test::dataDir;
using gvm::policy::test::readFile;

namespace {

// A policy of two header lines (version, name) and then `sections`, which
// therefore starts at line 3.
std::string policyWith(const std::string &sections)
{
	return "version: 1\nname: t\n" + sections;
}

// Loads a policy that must be valid.
std::shared_ptr<const Engine> load(const std::string &text)
{
	LoadResult result = loadPolicy(text, "p.yaml");
	std::string all;
	for (const Diagnostic &d : result.diagnostics)
		all += d.toString() + "\n";
	INFO("policy:\n" << text << "diagnostics:\n" << all);
	REQUIRE(result.diagnostics.empty());
	REQUIRE(result.engine);
	return result.engine;
}

// Every diagnostic of a policy that must be invalid, as "LINE:COLUMN: MESSAGE".
std::vector<std::string> errors(const std::string &text)
{
	LoadResult result = loadPolicy(text, "p.yaml");
	CHECK(result.engine == nullptr);
	std::vector<std::string> out;
	for (const Diagnostic &d : result.diagnostics) {
		CHECK(d.file == "p.yaml");
		out.push_back(std::to_string(d.line) + ":" + std::to_string(d.column) + ": " + d.message);
	}
	return out;
}

std::vector<std::string> defaultHidden()
{
	return {std::begin(kDefaultHidden), std::end(kDefaultHidden)};
}

std::vector<std::string> without(std::vector<std::string> list, const std::string &entry)
{
	std::erase(list, entry);
	return list;
}

} // namespace

TEST_CASE("absent sections keep the defaults", "[policy][isolation]")
{
	// Absent, and present but empty: the same defaults.
	for (const char *sections : {"", "filesystem: {}\nsyscalls: {}\nlimits: {}\n",
				     "filesystem: {hidden: [], visible: []}\nsyscalls: {allow: []}\n"}) {
		INFO(sections);
		auto engine = load(policyWith(sections));
		CHECK(engine->filesystem().workspace == WorkspaceMode::Overlay);
		CHECK(engine->filesystem().hidden == defaultHidden());
		CHECK(engine->syscalls().allow == 0);
		CHECK_FALSE(engine->syscalls().allows(SyscallGroup::Namespaces));
		CHECK_FALSE(engine->syscalls().allows(SyscallGroup::Ptrace));
		CHECK_FALSE(engine->syscalls().allows(SyscallGroup::IoUring));
		CHECK_FALSE(engine->limits().memoryBytes.has_value());
		CHECK_FALSE(engine->limits().pids.has_value());
		CHECK_FALSE(engine->limits().cpuMillis.has_value());
	}
	CHECK(defaultHidden() == std::vector<std::string>{"~/.ssh", "~/.gnupg", "~/.aws", "~/.config/gcloud",
							  "~/.azure", "~/.kube", "~/.docker", "~/.netrc",
							  "~/.git-credentials", ".env*"});
}

TEST_CASE("the README's example loads into the exact values", "[policy][isolation]")
{
	std::string path = dataDir("isolation") + "/sandbox.yaml";
	LoadResult result = loadPolicyFile(path);
	REQUIRE(result.diagnostics.empty());
	REQUIRE(result.engine);
	const Engine &engine = *result.engine;
	CHECK(engine.filesystem().workspace == WorkspaceMode::Overlay);
	std::vector<std::string> hidden = without(defaultHidden(), "~/.docker");
	hidden.insert(hidden.end(), {"~/.config/myapp", "/opt/secrets", "*.pem"});
	CHECK(engine.filesystem().hidden == hidden);
	CHECK(engine.syscalls().allow == static_cast<uint32_t>(SyscallGroup::Namespaces));
	CHECK(engine.limits().memoryBytes == uint64_t{2} << 30);
	CHECK(engine.limits().pids == 512u);
	CHECK(engine.limits().cpuMillis == 1500u);
	// The new sections change neither the name nor what sha256 covers.
	CHECK(engine.name() == "sandboxed");
	CHECK(engine.sha256() == gvm::sha256Hex(readFile(path)));
	CHECK(engine.ruleCount() == 1);
}

TEST_CASE("workspace modes", "[policy][isolation]")
{
	CHECK(std::string(toString(WorkspaceMode::Overlay)) == "overlay");
	CHECK(std::string(toString(WorkspaceMode::Direct)) == "direct");
	CHECK(std::string(toString(WorkspaceMode::Readonly)) == "readonly");
	for (WorkspaceMode mode : {WorkspaceMode::Overlay, WorkspaceMode::Direct, WorkspaceMode::Readonly}) {
		auto engine = load(policyWith("filesystem:\n  workspace: " + std::string(toString(mode)) + "\n"));
		CHECK(engine->filesystem().workspace == mode);
		// The workspace mode leaves the hidden list alone.
		CHECK(engine->filesystem().hidden == defaultHidden());
	}
	CHECK(errors(policyWith("filesystem:\n  workspace: Overlay\n")) ==
	      std::vector<std::string>{"4:14: bad filesystem.workspace 'Overlay': expected overlay, direct or readonly"});
	CHECK(errors(policyWith("filesystem:\n  workspace: [direct]\n")) ==
	      std::vector<std::string>{"4:14: expected overlay, direct or readonly, got a list"});
}

TEST_CASE("hidden entries are normalised, deduplicated and added to the defaults", "[policy][isolation]")
{
	auto engine = load(policyWith("filesystem:\n"
				      "  hidden:\n"
				      "    - ~/.config/myapp/\n"   // trailing '/' dropped
				      "    - /opt//secrets//\n"    // '//' collapsed
				      "    - \"*.pem\"\n"          // a name pattern
				      "    - ~/.ssh\n"             // already a default
				      "    - ~//.config/myapp\n"   // the same as the first
				      "    - \"id_?sa\"\n"
				      "    - ~foo\n"               // a name, not a home
				      "    - /\xc3\xa9t\xc3\xa9\n")); // any bytes but NUL
	std::vector<std::string> hidden = defaultHidden();
	hidden.insert(hidden.end(), {"~/.config/myapp", "/opt/secrets", "*.pem", "id_?sa", "~foo", "/\xc3\xa9t\xc3\xa9"});
	CHECK(engine->filesystem().hidden == hidden);

	// The longest entry allowed.
	std::string longest = "/" + std::string(4095, 'a');
	engine = load(policyWith("filesystem:\n  hidden: [" + longest + "]\n"));
	CHECK(engine->filesystem().hidden.back() == longest);
}

TEST_CASE("visible entries take paths out of the hidden list", "[policy][isolation]")
{
	// A default, as written or after normalisation.
	for (const char *entry : {"~/.docker", "~/.docker/", "~//.docker"}) {
		INFO(entry);
		auto engine = load(policyWith("filesystem:\n  visible: [\"" + std::string(entry) + "\"]\n"));
		CHECK(engine->filesystem().hidden == without(defaultHidden(), "~/.docker"));
	}
	// Several, including a name pattern, an entry of the policy's own
	// `hidden:`, and one named twice.
	auto engine = load(policyWith("filesystem:\n"
				      "  hidden: [/opt/secrets, \"*.pem\"]\n"
				      "  visible: [\".env*\", ~/.ssh, /opt/secrets/, ~/.ssh]\n"));
	std::vector<std::string> hidden = without(without(defaultHidden(), ".env*"), "~/.ssh");
	hidden.push_back("*.pem");
	CHECK(engine->filesystem().hidden == hidden);
	// Everything can be made visible.
	std::string all;
	for (const char *entry : kDefaultHidden)
		all += (all.empty() ? "\"" : ", \"") + std::string(entry) + "\"";
	engine = load(policyWith("filesystem:\n  visible: [" + all + "]\n"));
	CHECK(engine->filesystem().hidden.empty());

	// An entry that takes nothing out is an error at that entry.
	CHECK(errors(policyWith("filesystem:\n"
				"  visible:\n"
				"    - ~/.ssh\n"
				"    - ~/.foo\n"
				"    - \"*.key\"\n")) ==
	      std::vector<std::string>{"6:7: visible '~/.foo' matches no hidden path",
				       "7:7: visible '*.key' matches no hidden path"});
	// Matching is on the text: a name pattern does not match paths, nor a
	// path inside a hidden directory its directory.
	CHECK(errors(policyWith("filesystem:\n  visible: [.ssh, ~/.ssh/config, ~/.SSH]\n")) ==
	      std::vector<std::string>{"4:13: visible '.ssh' matches no hidden path",
				       "4:19: visible '~/.ssh/config' matches no hidden path",
				       "4:34: visible '~/.SSH' matches no hidden path"});
	// When `hidden:` has a mistake, "matches nothing" is not reported: it
	// may be the broken entry that the visible one was meant to match.
	CHECK(errors(policyWith("filesystem:\n"
				"  hidden: [\"a/b\", ~/.foo]\n"
				"  visible: [~/.foo, ~/.bar]\n")) ==
	      std::vector<std::string>{"4:12: bad filesystem.hidden entry 'a/b': expected ~/PATH, /PATH or a name "
				       "pattern without '/' (such as *.pem)"});
}

TEST_CASE("bad hidden and visible entries", "[policy][isolation][errors]")
{
	struct Case {
		std::string yaml;  // a double-quoted YAML scalar's content
		std::string shown; // how the diagnostic quotes it
		std::string problem;
	};
	const std::string notAPath = "expected ~/PATH, /PATH or a name pattern without '/' (such as *.pem)";
	const std::string dots = "'.' and '..' components are not allowed";
	const std::string wildcard = "wildcards ('*', '?') are allowed only in a name pattern without '/', such as *.pem";
	const std::string home = "an entry cannot be the whole home directory; name a path in it, such as ~/.aws";
	const std::string root = "an entry cannot be the root directory";
	const std::string tooLong = "/" + std::string(4096, 'a');
	const Case cases[] = {
		{"", "''", "an entry cannot be empty"},
		{"~", "'~'", home},
		{"~/", "'~/'", home},
		{"~//", "'~//'", home},
		{"/", "'/'", root},
		{"///", "'///'", root},
		{".", "'.'", "'.' and '..' are not names"},
		{"..", "'..'", "'.' and '..' are not names"},
		{"/opt/../etc", "'/opt/../etc'", dots},
		{"~/./.ssh", "'~/./.ssh'", dots},
		{"~/.ssh/..", "'~/.ssh/..'", dots},
		{"/opt/.", "'/opt/.'", dots},
		{"a/b", "'a/b'", notAPath},
		{"./x", "'./x'", notAPath},
		{"*.pem/", "'*.pem/'", notAPath},
		{"~user/.ssh", "'~user/.ssh'", notAPath},
		{"/opt/*.pem", "'/opt/*.pem'", wildcard},
		{"~/.config/?cloud", "'~/.config/?cloud'", wildcard},
		{"a\\0b", "'a\\0b'", "an entry cannot contain a NUL character"},
		{tooLong, "'/" + std::string(59, 'a') + "...'", "longer than the maximum of 4096 characters"},
	};
	for (const char *key : {"hidden", "visible"}) {
		for (const Case &c : cases) {
			// filesystem:
			//   hidden: ["..."]
			//           ^ column 4 + length of the key
			std::string text = policyWith("filesystem:\n  " + std::string(key) + ": [\"" + c.yaml + "\"]\n");
			std::string where = "4:" + std::to_string(std::string(key).size() + 6) + ": ";
			INFO(text);
			CHECK(errors(text) == std::vector<std::string>{where + "bad filesystem." + key + " entry " + c.shown +
								       ": " + c.problem});
		}
	}

	// Wrong types, at the value (or at the key of an empty value).
	CHECK(errors(policyWith("filesystem:\n  hidden: ~/.foo\n")) ==
	      std::vector<std::string>{"4:11: expected a list of paths (~/PATH, /PATH) or name patterns (such as *.pem), got '~/.foo'"});
	CHECK(errors(policyWith("filesystem:\n  visible:\n")) ==
	      std::vector<std::string>{"4:3: expected a list of paths (~/PATH, /PATH) or name patterns (such as *.pem), got nothing"});
	CHECK(errors(policyWith("filesystem:\n  hidden: [[~/.a], {b: c}, ~/.ok]\n")) ==
	      std::vector<std::string>{"4:12: expected a path (~/PATH, /PATH) or a name pattern (such as *.pem), got a list",
				       "4:20: expected a path (~/PATH, /PATH) or a name pattern (such as *.pem), got a mapping"});
	// Every entry is checked, each mistake reported.
	CHECK(errors(policyWith("filesystem:\n"
				"  hidden:\n"
				"    - /\n"
				"    - ~/.ok\n"
				"    - ../x\n")) ==
	      std::vector<std::string>{"5:7: bad filesystem.hidden entry '/': " + root,
				       "7:7: bad filesystem.hidden entry '../x': " + notAPath});
	// The number of entries is bounded.
	std::string many;
	for (int i = 0; i < 1025; i++)
		many += (i ? ", ~/.f" : "~/.f") + std::to_string(i);
	CHECK(errors(policyWith("filesystem:\n  hidden: [" + many + "]\n")) ==
	      std::vector<std::string>{"4:11: too many entries in filesystem.hidden: 1025; at most 1024"});
}

TEST_CASE("syscall groups", "[policy][isolation]")
{
	auto engine = load(policyWith("syscalls:\n  allow: [ptrace]\n"));
	CHECK(engine->syscalls().allow == static_cast<uint32_t>(SyscallGroup::Ptrace));
	CHECK(engine->syscalls().allows(SyscallGroup::Ptrace));
	CHECK_FALSE(engine->syscalls().allows(SyscallGroup::Namespaces));
	CHECK_FALSE(engine->syscalls().allows(SyscallGroup::IoUring));

	engine = load(policyWith("syscalls:\n  allow: [io_uring]\n"));
	CHECK(engine->syscalls().allow == static_cast<uint32_t>(SyscallGroup::IoUring));

	// All of them; a group named twice is allowed once, like a repeated method.
	engine = load(policyWith("syscalls:\n  allow: [namespaces, ptrace, io_uring, namespaces]\n"));
	CHECK(engine->syscalls().allow == 0b111u);
	CHECK(engine->syscalls().allows(SyscallGroup::Namespaces));
	CHECK(engine->syscalls().allows(SyscallGroup::Ptrace));
	CHECK(engine->syscalls().allows(SyscallGroup::IoUring));

	const std::string known = "expected one of: namespaces, ptrace, io_uring";
	CHECK(errors(policyWith("syscalls:\n  allow: [ptrce, Namespaces, bpf, io-uring]\n")) ==
	      std::vector<std::string>{
		      "4:11: unknown syscall group 'ptrce' in syscalls.allow; " + known + "; did you mean 'ptrace'?",
		      "4:18: unknown syscall group 'Namespaces' in syscalls.allow; " + known + "; did you mean 'namespaces'?",
		      "4:30: unknown syscall group 'bpf' in syscalls.allow; " + known,
		      "4:35: unknown syscall group 'io-uring' in syscalls.allow; " + known + "; did you mean 'io_uring'?",
	      });
	CHECK(errors(policyWith("syscalls:\n  allow: namespaces\n")) ==
	      std::vector<std::string>{"4:10: expected a list of syscall groups (namespaces, ptrace, io_uring), got 'namespaces'"});
	CHECK(errors(policyWith("syscalls:\n  allow: [{ptrace: true}]\n")) ==
	      std::vector<std::string>{"4:11: expected a syscall group name, got a mapping"});
	CHECK(errors(policyWith("syscalls:\n  deny: [ptrace]\n")) ==
	      std::vector<std::string>{"4:3: unknown key 'deny' in syscalls; expected one of: allow"});
	CHECK(errors(policyWith("syscalls: [ptrace]\n")) ==
	      std::vector<std::string>{"3:11: expected a mapping {allow}, got a list"});
}

TEST_CASE("limits: memory", "[policy][isolation]")
{
	struct Case {
		const char *text;
		uint64_t bytes;
	};
	constexpr uint64_t kKiB = 1024, kMiB = kKiB << 10, kGiB = kMiB << 10, kTiB = kGiB << 10;
	const Case cases[] = {
		{"16M", 16 * kMiB},      {"16MiB", 16 * kMiB},       {"16384K", 16 * kMiB}, {"16384KiB", 16 * kMiB},
		{"16777216", 16 * kMiB}, {"512M", 512 * kMiB},       {"2G", 2 * kGiB},      {"2GiB", 2 * kGiB},
		{"1536M", 1536 * kMiB},  {"1073741824", kGiB},       {"1T", kTiB},          {"1TiB", kTiB},
		{"1024G", kTiB},         {"16777217", 16 * kMiB + 1}, {"0016M", 16 * kMiB},
	};
	for (const Case &c : cases) {
		INFO(c.text);
		auto engine = load(policyWith("limits:\n  memory: " + std::string(c.text) + "\n"));
		CHECK(engine->limits().memoryBytes == c.bytes);
		CHECK_FALSE(engine->limits().pids.has_value());
		CHECK_FALSE(engine->limits().cpuMillis.has_value());
	}

	const std::string form = "expected a whole number of bytes with an optional K, M, G or T suffix (powers of 1024), such as 512M or 2G";
	struct BadCase {
		const char *text;
		std::string message;
	};
	const BadCase bad[] = {
		{"1.5G", "bad limits.memory '1.5G': " + form},
		{"2g", "bad limits.memory '2g': " + form},
		{"2GB", "bad limits.memory '2GB': " + form},
		{"2Gi", "bad limits.memory '2Gi': " + form},
		{"G", "bad limits.memory 'G': " + form},
		{"-2G", "bad limits.memory '-2G': " + form},
		{"0x100000000", "bad limits.memory '0x100000000': " + form},
		{"2P", "bad limits.memory '2P': " + form},
		{"'2 G'", "bad limits.memory '2 G': " + form},
		{"15M", "limits.memory '15M' is less than the minimum of 16M"},
		{"16777215", "limits.memory '16777215' is less than the minimum of 16M"},
		{"0", "limits.memory '0' is less than the minimum of 16M"},
		{"2T", "limits.memory '2T' is more than the maximum of 1T"},
		{"1025G", "limits.memory '1025G' is more than the maximum of 1T"},
		// Too big to hold is out of range, not malformed.
		{"99999999999999999999999T", "limits.memory '99999999999999999999999T' is more than the maximum of 1T"},
		{"18446744073709551616", "limits.memory '18446744073709551616' is more than the maximum of 1T"},
	};
	for (const BadCase &c : bad) {
		INFO(c.text);
		CHECK(errors(policyWith("limits:\n  memory: " + std::string(c.text) + "\n")) ==
		      std::vector<std::string>{"4:11: " + c.message});
	}
	CHECK(errors(policyWith("limits:\n  memory: [2G]\n")) ==
	      std::vector<std::string>{"4:11: expected a size such as 512M or 2G, got a list"});
}

TEST_CASE("limits: pids", "[policy][isolation]")
{
	for (uint32_t pids : {16u, 512u, 4096u, 4194304u}) {
		auto engine = load(policyWith("limits:\n  pids: " + std::to_string(pids) + "\n"));
		CHECK(engine->limits().pids == pids);
		CHECK_FALSE(engine->limits().memoryBytes.has_value());
	}
	for (const char *text : {"15", "0", "4194305", "-1", "1.5", "abc", "512k", "99999999999999999999999"}) {
		INFO(text);
		CHECK(errors(policyWith("limits:\n  pids: " + std::string(text) + "\n")) ==
		      std::vector<std::string>{"4:9: bad limits.pids '" + std::string(text) +
					       "': expected a whole number from 16 to 4194304"});
	}
}

TEST_CASE("limits: cpu", "[policy][isolation]")
{
	struct Case {
		const char *text;
		uint32_t millis;
	};
	const Case cases[] = {
		{"1.5", 1500}, {"1", 1000},   {"2.0", 2000},   {"0.5", 500},         {"0.25", 250},
		{"0.05", 50},  {"0.01", 10},  {"1.125", 1125}, {"1024", 1024000},    {"1024.000", 1024000},
		{"03", 3000},  {"0.010", 10}, {"16", 16000},   {"1023.999", 1023999},
	};
	for (const Case &c : cases) {
		INFO(c.text);
		auto engine = load(policyWith("limits:\n  cpu: " + std::string(c.text) + "\n"));
		CHECK(engine->limits().cpuMillis == c.millis);
	}

	const std::string form = "expected a number of CPU cores with at most 3 decimals, such as 1, 0.5 or 1.25";
	struct BadCase {
		const char *text;
		std::string message;
	};
	const BadCase bad[] = {
		{"0", "limits.cpu must be more than zero"},
		{"0.000", "limits.cpu must be more than zero"},
		{"1024.001", "limits.cpu '1024.001' is more than the maximum of 1024 cores"},
		{"2000", "limits.cpu '2000' is more than the maximum of 1024 cores"},
		{"0.005", "limits.cpu '0.005' is less than the minimum of 0.01 cores"},
		{"99999999999999999999999", "limits.cpu '99999999999999999999999' is more than the maximum of 1024 cores"},
		{"1.2345", "bad limits.cpu '1.2345': " + form},
		{"0.0001", "bad limits.cpu '0.0001': " + form},
		{"1.", "bad limits.cpu '1.': " + form},
		{".5", "bad limits.cpu '.5': " + form},
		{"-1", "bad limits.cpu '-1': " + form},
		{"1e3", "bad limits.cpu '1e3': " + form},
		{"1.5.0", "bad limits.cpu '1.5.0': " + form},
		{"150%", "bad limits.cpu '150%': " + form},
		{"two", "bad limits.cpu 'two': " + form},
	};
	for (const BadCase &c : bad) {
		INFO(c.text);
		CHECK(errors(policyWith("limits:\n  cpu: " + std::string(c.text) + "\n")) ==
		      std::vector<std::string>{"4:8: " + c.message});
	}
}

TEST_CASE("limits together, and mistakes in the sections' shape", "[policy][isolation][errors]")
{
	auto engine = load(policyWith("limits: {memory: 512MiB, pids: 64, cpu: 0.5}\n"));
	CHECK(engine->limits().memoryBytes == uint64_t{512} << 20);
	CHECK(engine->limits().pids == 64u);
	CHECK(engine->limits().cpuMillis == 500u);

	// Unknown keys get the "did you mean" treatment in each section.
	CHECK(errors(policyWith("filesystem:\n"
				"  hiden: [~/.foo]\n"
				"  Workspace: direct\n"
				"syscalls:\n"
				"  alow: [ptrace]\n"
				"limits:\n"
				"  memroy: 2G\n"
				"  threads: 5\n")) ==
	      std::vector<std::string>{
		      "4:3: unknown key 'hiden' in filesystem; expected one of: workspace, hidden, visible; did you mean 'hidden'?",
		      "5:3: unknown key 'Workspace' in filesystem; expected one of: workspace, hidden, visible; did you mean 'workspace'?",
		      "7:3: unknown key 'alow' in syscalls; expected one of: allow; did you mean 'allow'?",
		      "9:3: unknown key 'memroy' in limits; expected one of: memory, pids, cpu; did you mean 'memory'?",
		      "10:3: unknown key 'threads' in limits; expected one of: memory, pids, cpu",
	      });
	CHECK(errors(policyWith("filesytem: {}\n")) ==
	      std::vector<std::string>{"3:1: unknown key 'filesytem' in policy; expected one of: version, name, mode, default, "
				       "dns, upstream, rules, filesystem, syscalls, limits; did you mean 'filesystem'?"});
	// Wrong types and empty values.
	CHECK(errors(policyWith("filesystem:\nsyscalls: none\nlimits: [1G]\n")) ==
	      std::vector<std::string>{"3:1: expected a mapping {workspace, hidden, visible}, got nothing",
				       "4:11: expected a mapping {allow}, got 'none'",
				       "5:9: expected a mapping {memory, pids, cpu}, got a list"});
	// Duplicate keys, like everywhere else.
	CHECK(errors(policyWith("limits:\n  pids: 64\n  pids: 128\n")) ==
	      std::vector<std::string>{"5:3: duplicate key 'pids' in limits (first at line 4)"});
	// Mistakes in every section at once, in the order of the text.
	CHECK(errors(policyWith("filesystem: {workspace: tmpfs, hidden: [\"/\"]}\n"
				"syscalls: {allow: [bpf]}\n"
				"limits: {memory: 1K, pids: 1, cpu: 0}\n")) ==
	      std::vector<std::string>{
		      "3:25: bad filesystem.workspace 'tmpfs': expected overlay, direct or readonly",
		      "3:41: bad filesystem.hidden entry '/': an entry cannot be the root directory",
		      "4:20: unknown syscall group 'bpf' in syscalls.allow; expected one of: namespaces, ptrace, io_uring",
		      "5:18: limits.memory '1K' is less than the minimum of 16M",
		      "5:28: bad limits.pids '1': expected a whole number from 16 to 4194304",
		      "5:36: limits.cpu must be more than zero",
	      });
}
