// SPDX-License-Identifier: Apache-2.0
//
// The policy loader: YAML text → CompiledPolicy → engine, or every mistake
// in the text as a file:line:column diagnostic. yaml-cpp reports by throwing;
// its exceptions stop here and never leave loadPolicy().
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <map>
#include <set>
#include <span>

#include <yaml-cpp/yaml.h>

#include "common/sha256.h"
#include "common/text.h"
#include "common/unique_fd.h"
#include "policy/rule.h"

namespace gvm::policy {

std::string Diagnostic::toString() const
{
	if (line <= 0)
		return file + ": " + message;
	return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

namespace {

constexpr std::chrono::milliseconds kMaxDelay = std::chrono::minutes(10);
constexpr std::chrono::milliseconds kMaxHold = std::chrono::hours(24);
constexpr size_t kMaxDnsNameLengthLimit = 253;
// Without aliases a YAML node takes at least one byte of text, so a policy
// within kMaxPolicyBytes that expands to more nodes does so through aliases
// ("billion laughs"): refuse it before walking it.
constexpr size_t kMaxPolicyNodes = kMaxPolicyBytes;
// `filesystem:` entries: each becomes at least one mount in the sandbox.
constexpr size_t kMaxHiddenEntries = 1024;
constexpr size_t kMaxHiddenPathLength = 4096; // PATH_MAX
// `limits:` bounds. Below 16 MiB an agent cannot even start a runtime; above
// 1 TiB the number is more likely a typo than a limit.
constexpr uint64_t kMinMemoryLimit = uint64_t{16} << 20;
constexpr uint64_t kMaxMemoryLimit = uint64_t{1} << 40;
constexpr uint32_t kMinPidsLimit = 16;
constexpr uint32_t kMaxPidsLimit = 4194304; // the kernel's PID_MAX_LIMIT
constexpr uint32_t kMaxCpuMillis = 1024 * 1000;
// The kernel's smallest CPU quota is 1 ms per 100 ms period.
constexpr uint32_t kMinCpuMillis = 10;

constexpr const char *kPolicyKeys[] = {"version", "name",  "mode",       "default",  "dns",
				       "upstream", "rules", "filesystem", "syscalls", "limits"};
constexpr const char *kRuleKeys[] = {"name",    "hosts", "ports", "methods", "path", "query",
				     "headers", "body",  "tcp",   "tls",     "rate", "action"};
constexpr const char *kDnsKeys[] = {"resolve", "max_name_length"};
constexpr const char *kUpstreamKeys[] = {"allow_cidrs"};
constexpr const char *kBodyKeys[] = {"json", "regex"};
constexpr const char *kTcpKeys[] = {"hosts", "cidrs", "ports"};
constexpr const char *kActionKeys[] = {"delay", "hold"};
constexpr const char *kFilesystemKeys[] = {"workspace", "hidden", "visible"};
constexpr const char *kSyscallsKeys[] = {"allow"};
constexpr const char *kLimitsKeys[] = {"memory", "pids", "cpu"};
constexpr const char *kWorkspaceModeNames[] = {"overlay", "direct", "readonly"};
constexpr WorkspaceMode kWorkspaceModes[] = {WorkspaceMode::Overlay, WorkspaceMode::Direct, WorkspaceMode::Readonly};
// The group of each name in kSyscallGroupNames, in the same order.
constexpr SyscallGroup kSyscallGroups[] = {SyscallGroup::Namespaces, SyscallGroup::Ptrace, SyscallGroup::IoUring};
static_assert(std::size(kSyscallGroups) == std::size(kSyscallGroupNames));
static_assert(std::size(kWorkspaceModes) == std::size(kWorkspaceModeNames));

size_t editDistance(std::string_view a, std::string_view b)
{
	std::vector<size_t> row(b.size() + 1);
	for (size_t j = 0; j <= b.size(); j++)
		row[j] = j;
	for (size_t i = 1; i <= a.size(); i++) {
		size_t diagonal = row[0];
		row[0] = i;
		for (size_t j = 1; j <= b.size(); j++) {
			size_t above = row[j];
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + cost});
			diagonal = above;
		}
	}
	return row[b.size()];
}

std::string joinKeys(std::span<const char *const> keys)
{
	std::string out;
	for (const char *key : keys)
		out += (out.empty() ? "" : ", ") + std::string(key);
	return out;
}

// The name in `names` that `text` was most likely meant to be (a small edit
// away, ignoring case), or nullptr.
const char *closestName(std::string_view text, std::span<const char *const> names)
{
	const char *best = nullptr;
	size_t bestDistance = 3;
	for (const char *name : names) {
		size_t d = editDistance(asciiLower(text), name);
		if (d < bestDistance && d < std::strlen(name)) {
			best = name;
			bestDistance = d;
		}
	}
	return best;
}

// "expected one of: a, b, c" plus a "did you mean" hint when one is close.
std::string expectedOneOf(std::string_view text, std::span<const char *const> names)
{
	std::string message = "expected one of: " + joinKeys(names);
	if (const char *best = closestName(text, names))
		message += "; did you mean '" + std::string(best) + "'?";
	return message;
}

// The index of `text` in `names`, or -1.
int indexOf(std::string_view text, std::span<const char *const> names)
{
	for (size_t i = 0; i < names.size(); i++) {
		if (text == names[i])
			return static_cast<int>(i);
	}
	return -1;
}

// A scalar quoted for a message, cut short if long.
std::string quote(std::string_view text)
{
	constexpr size_t kMaxQuoted = 60;
	if (text.size() > kMaxQuoted)
		return "'" + std::string(text.substr(0, kMaxQuoted)) + "...'";
	return "'" + std::string(text) + "'";
}

std::string describe(const YAML::Node &node)
{
	switch (node.Type()) {
	case YAML::NodeType::Map:
		return "a mapping";
	case YAML::NodeType::Sequence:
		return "a list";
	case YAML::NodeType::Scalar:
		return quote(node.Scalar());
	default:
		return "nothing";
	}
}

bool isTokenChar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool isToken(std::string_view text)
{
	return !text.empty() && std::all_of(text.begin(), text.end(), isTokenChar);
}

// Checks a host name (already lower-cased, trailing dot dropped); returns
// what is wrong with it, or "" when it is fine.
std::string hostNameProblem(std::string_view name)
{
	if (name.empty())
		return "a host name cannot be empty";
	if (name.find(':') != std::string_view::npos) {
		Cidr cidr;
		std::string ignored;
		if (name.find('/') == std::string_view::npos && Cidr::parse(name, &cidr, &ignored))
			return "";
		return "not a host name or IPv6 address";
	}
	if (name.size() > 253)
		return "a host name has at most 253 characters";
	if (name.find('*') != std::string_view::npos)
		return "a wildcard is only allowed as a leading '*.' or as '*' alone";
	size_t start = 0;
	while (start <= name.size()) {
		size_t dot = name.find('.', start);
		size_t end = dot == std::string_view::npos ? name.size() : dot;
		std::string_view label = name.substr(start, end - start);
		if (label.empty())
			return "empty label (two dots in a row, or a leading dot)";
		if (label.size() > 63)
			return "a label has at most 63 characters";
		for (char c : label) {
			if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
				return "a host name has letters, digits, '-', '_' and '.' only";
		}
		if (dot == std::string_view::npos)
			break;
		start = dot + 1;
	}
	return "";
}

// Normalises one `hidden:` or `visible:` entry into *out (repeated and
// trailing '/' dropped); returns what is wrong with it, or "" when it is
// fine. See FilesystemPolicy::hidden for the three forms.
std::string hiddenPathProblem(std::string_view text, std::string *out)
{
	if (text.empty())
		return "an entry cannot be empty";
	if (text.size() > kMaxHiddenPathLength)
		return "longer than the maximum of " + std::to_string(kMaxHiddenPathLength) + " characters";
	if (text.find('\0') != std::string_view::npos)
		return "an entry cannot contain a NUL character";
	bool home = text == "~" || text.starts_with("~/");
	bool absolute = text.starts_with('/');
	if (!home && !absolute) {
		// A name pattern, matched against single names in the workspace.
		if (text.find('/') != std::string_view::npos)
			return "expected ~/PATH, /PATH or a name pattern without '/' (such as *.pem)";
		if (text == "." || text == "..")
			return "'.' and '..' are not names";
		*out = text;
		return "";
	}
	std::string path = home ? "~" : "";
	size_t start = home ? 1 : 0;
	while (start < text.size()) {
		size_t slash = text.find('/', start + 1);
		size_t end = slash == std::string_view::npos ? text.size() : slash;
		std::string_view component = text.substr(start + 1, end - start - 1);
		start = end;
		if (component.empty())
			continue;
		if (component == "." || component == "..")
			return "'.' and '..' components are not allowed";
		if (component.find_first_of("*?") != std::string_view::npos)
			return "wildcards ('*', '?') are allowed only in a name pattern without '/', such as *.pem";
		path += "/";
		path += component;
	}
	if (path == "~")
		return "an entry cannot be the whole home directory; name a path in it, such as ~/.aws";
	if (path.empty())
		return "an entry cannot be the root directory";
	*out = std::move(path);
	return "";
}

// `text` for a message, with any NUL spelled out rather than cutting it.
std::string printable(std::string_view text)
{
	std::string out;
	for (char c : text)
		out += c == '\0' ? std::string("\\0") : std::string(1, c);
	return quote(out);
}

// Parses digits into *out, saturating at UINT64_MAX: a huge number is out of
// range rather than malformed. False unless `text` is all digits.
bool parseWholeNumber(std::string_view text, uint64_t *out)
{
	if (text.empty())
		return false;
	uint64_t value = 0;
	for (char c : text) {
		if (c < '0' || c > '9')
			return false;
		uint64_t digit = static_cast<uint64_t>(c - '0');
		value = value > (UINT64_MAX - digit) / 10 ? UINT64_MAX : value * 10 + digit;
	}
	*out = value;
	return true;
}

// "2G", "512MiB", "1048576": bytes, with K, M, G, T (or KiB ... TiB) as
// powers of 1024; saturates at UINT64_MAX. False on bad input.
bool parseByteSize(std::string_view text, uint64_t *out)
{
	static constexpr std::pair<const char *, int> kSuffixes[] = {
		{"K", 10}, {"M", 20}, {"G", 30}, {"T", 40}, {"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40},
	};
	size_t digits = text.find_first_not_of("0123456789");
	std::string_view suffix = digits == std::string_view::npos ? "" : text.substr(digits);
	int shift = 0;
	if (!suffix.empty()) {
		auto it = std::find_if(std::begin(kSuffixes), std::end(kSuffixes),
				       [&](const auto &s) { return suffix == s.first; });
		if (it == std::end(kSuffixes))
			return false;
		shift = it->second;
	}
	uint64_t value = 0;
	if (!parseWholeNumber(text.substr(0, digits), &value))
		return false;
	*out = value > (UINT64_MAX >> shift) ? UINT64_MAX : value << shift;
	return true;
}

// The shortest exact form of a byte count: "16M", "1T", "1000".
std::string formatByteSize(uint64_t bytes)
{
	static constexpr std::pair<char, int> kUnits[] = {{'T', 40}, {'G', 30}, {'M', 20}, {'K', 10}};
	for (const auto &[unit, shift] : kUnits) {
		if (bytes != 0 && bytes % (uint64_t{1} << shift) == 0)
			return std::to_string(bytes >> shift) + unit;
	}
	return std::to_string(bytes);
}

// "1.5" cores → 1500 thousandths, at most 3 decimals; saturates at
// UINT64_MAX. False on bad input.
bool parseCpuMillis(std::string_view text, uint64_t *out)
{
	size_t dot = text.find('.');
	std::string_view whole = text.substr(0, dot);
	std::string_view fraction = dot == std::string_view::npos ? "" : text.substr(dot + 1);
	uint64_t cores = 0;
	uint64_t thousandths = 0;
	if (!parseWholeNumber(whole, &cores))
		return false;
	if (dot != std::string_view::npos) {
		if (fraction.empty() || fraction.size() > 3 || !parseWholeNumber(fraction, &thousandths))
			return false;
		for (size_t i = fraction.size(); i < 3; i++)
			thousandths *= 10;
	}
	*out = cores > (UINT64_MAX - thousandths) / 1000 ? UINT64_MAX : cores * 1000 + thousandths;
	return true;
}

struct Entry {
	YAML::Node key;
	YAML::Node value;
};

// The known keys of one mapping, first occurrence of each.
using Fields = std::map<std::string, Entry, std::less<>>;

const YAML::Node *field(const Fields &fields, std::string_view key)
{
	auto it = fields.find(key);
	return it == fields.end() ? nullptr : &it->second.value;
}

// Counts nodes as a walk would meet them (aliases expanded), stopping as soon
// as `budget` is spent. False when it was.
bool withinNodeBudget(const YAML::Node &node, size_t *budget)
{
	if (*budget == 0)
		return false;
	(*budget)--;
	if (node.IsSequence()) {
		for (const YAML::Node &child : node) {
			if (!withinNodeBudget(child, budget))
				return false;
		}
	} else if (node.IsMap()) {
		for (const auto &pair : node) {
			if (!withinNodeBudget(pair.first, budget) || !withinNodeBudget(pair.second, budget))
				return false;
		}
	}
	return true;
}

// Walks one parsed policy document, collecting a diagnostic for every
// mistake rather than stopping at the first. Lives for one loadPolicy() call.
class PolicyCompiler
{
public:
	explicit PolicyCompiler(std::string file) : file_(std::move(file)) {}

	CompiledPolicy compile(const YAML::Node &root);
	void errorAt(int line, int column, std::string message);
	void errorAt(const YAML::Mark &mark, std::string message);
	std::vector<Diagnostic> takeDiagnostics() { return std::move(diagnostics_); }

private:
	void error(const YAML::Node &node, std::string message);

	bool mapping(const YAML::Node &node, std::string_view what, std::string_view expected,
		     std::span<const char *const> keys, Fields *fields);
	bool require(const Fields &fields, const YAML::Node &parent, std::string_view key, std::string_view where);
	bool scalar(const YAML::Node &node, std::string_view expected, std::string *out);
	bool list(const YAML::Node &node, std::string_view expected, std::string_view key);

	bool action(const YAML::Node &node, std::string_view where, Action *out);
	bool duration(const YAML::Node &node, ActionKind kind, std::chrono::milliseconds *out);
	bool hosts(const YAML::Node &node, std::string_view key, std::vector<HostPattern> *out);
	bool ports(const YAML::Node &node, std::string_view key, std::vector<uint16_t> *out);
	bool methods(const YAML::Node &node, std::vector<std::string> *out);
	bool cidrs(const YAML::Node &node, std::string_view key, std::vector<Cidr> *out, std::vector<std::string> *texts);
	std::optional<Regex> regex(const YAML::Node &node, std::string_view what);
	// What a `query` or `headers` mapping holds, for its diagnostics.
	struct KeyedRegexKind {
		const char *section;  // "query"
		const char *keyNoun;  // "query parameter", "header name"
		const char *valueNoun; // "query parameter"
		bool isHeader;        // keys are header tokens, compared lower-cased
	};
	bool keyedRegexes(const YAML::Node &node, const KeyedRegexKind &kind, std::vector<KeyedRegex> *out);
	bool body(const YAML::Node &node, std::optional<BodySelector> *out);
	bool tcp(const YAML::Node &node, std::optional<TcpSelector> *out);
	bool rule(const YAML::Node &node, CompiledRule *out);
	void dns(const YAML::Node &node, CompiledPolicy *policy);
	void upstream(const YAML::Node &node, CompiledPolicy *policy);
	void rules(const YAML::Node &node, CompiledPolicy *policy);
	// A `hidden:` or `visible:` list, normalised, each with its node.
	using HiddenEntries = std::vector<std::pair<std::string, YAML::Node>>;
	bool hiddenEntries(const YAML::Node &node, std::string_view key, HiddenEntries *out);
	void filesystem(const YAML::Node &node, CompiledPolicy *policy);
	void syscalls(const YAML::Node &node, CompiledPolicy *policy);
	void limits(const YAML::Node &node, CompiledPolicy *policy);

	std::string file_;
	std::vector<Diagnostic> diagnostics_;
	// Empty values ("hosts:" with nothing after it) and their keys: yaml-cpp
	// marks an empty value where the next token starts, often lines later,
	// so a mistake about one is reported at its key instead.
	std::vector<std::pair<YAML::Node, YAML::Mark>> emptyValues_;
};

void PolicyCompiler::error(const YAML::Node &node, std::string message)
{
	if (node.IsNull()) {
		for (const auto &[value, keyMark] : emptyValues_) {
			if (value.is(node)) {
				errorAt(keyMark, std::move(message));
				return;
			}
		}
	}
	errorAt(node.Mark(), std::move(message));
}

void PolicyCompiler::errorAt(int line, int column, std::string message)
{
	diagnostics_.push_back(Diagnostic{file_, line, column, std::move(message)});
}

void PolicyCompiler::errorAt(const YAML::Mark &mark, std::string message)
{
	// yaml-cpp counts from 0 (and marks "no position" with -1).
	if (mark.is_null() || mark.line < 0)
		errorAt(0, 0, std::move(message));
	else
		errorAt(mark.line + 1, mark.column + 1, std::move(message));
}

// Checks that `node` is a mapping whose keys are all in `keys`, each once,
// and collects them in `fields`. Reports each unknown or repeated key.
bool PolicyCompiler::mapping(const YAML::Node &node, std::string_view what, std::string_view expected,
			     std::span<const char *const> keys, Fields *fields)
{
	if (!node.IsMap()) {
		error(node, "expected " + std::string(expected) + ", got " + describe(node));
		return false;
	}
	bool ok = true;
	for (const auto &pair : node) {
		const YAML::Node &key = pair.first;
		if (!key.IsScalar()) {
			error(key, "expected a key name in " + std::string(what) + ", got " + describe(key));
			ok = false;
			continue;
		}
		const std::string &name = key.Scalar();
		if (std::find_if(keys.begin(), keys.end(), [&](const char *k) { return name == k; }) == keys.end()) {
			error(key, "unknown key " + quote(name) + " in " + std::string(what) + "; " + expectedOneOf(name, keys));
			ok = false;
			continue;
		}
		if (auto it = fields->find(name); it != fields->end()) {
			error(key, "duplicate key " + quote(name) + " in " + std::string(what) + " (first at line " +
					   std::to_string(it->second.key.Mark().line + 1) + ")");
			ok = false;
			continue;
		}
		if (pair.second.IsNull())
			emptyValues_.emplace_back(pair.second, key.Mark());
		fields->emplace(name, Entry{key, pair.second});
	}
	return ok;
}

bool PolicyCompiler::require(const Fields &fields, const YAML::Node &parent, std::string_view key,
			     std::string_view where)
{
	if (fields.find(key) != fields.end())
		return true;
	error(parent, "missing required key '" + std::string(key) + "' in " + std::string(where));
	return false;
}

bool PolicyCompiler::scalar(const YAML::Node &node, std::string_view expected, std::string *out)
{
	if (!node.IsScalar()) {
		error(node, "expected " + std::string(expected) + ", got " + describe(node));
		return false;
	}
	*out = node.Scalar();
	return true;
}

bool PolicyCompiler::list(const YAML::Node &node, std::string_view expected, std::string_view key)
{
	if (!node.IsSequence()) {
		error(node, "expected " + std::string(expected) + ", got " + describe(node));
		return false;
	}
	if (node.size() == 0) {
		error(node, std::string(key) + " must not be empty");
		return false;
	}
	return true;
}

bool PolicyCompiler::duration(const YAML::Node &node, ActionKind kind, std::chrono::milliseconds *out)
{
	const char *what = toString(kind);
	std::string text;
	if (!scalar(node, "a duration such as 300ms, 2s, 5m or 1h", &text))
		return false;
	std::chrono::milliseconds d{0};
	if (!parseDuration(text, &d)) {
		error(node, "bad duration " + quote(text) + ": expected a whole number with ms, s, m or h (e.g. 300ms, 2s, 5m, 1h)");
		return false;
	}
	std::chrono::milliseconds max = kind == ActionKind::Delay ? kMaxDelay : kMaxHold;
	if (d.count() == 0) {
		error(node, std::string(what) + " must be longer than zero");
		return false;
	}
	if (d > max) {
		error(node, std::string(what) + " " + text + " is longer than the maximum of " + formatDuration(max));
		return false;
	}
	*out = d;
	return true;
}

bool PolicyCompiler::action(const YAML::Node &node, std::string_view where, Action *out)
{
	static constexpr const char *kExpected = "an action: allow, deny, {delay: DURATION} or {hold: DURATION}";
	if (node.IsScalar()) {
		const std::string &text = node.Scalar();
		if (text == "allow") {
			*out = Action{ActionKind::Allow, {}};
			return true;
		}
		if (text == "deny") {
			*out = Action{ActionKind::Deny, {}};
			return true;
		}
		std::string message = "bad " + std::string(where) + " " + quote(text) + ": expected " + kExpected;
		if (text == "delay" || text == "hold")
			message += " (" + text + " needs a duration, e.g. {" + text + ": 2s})";
		error(node, std::move(message));
		return false;
	}
	Fields fields;
	if (!mapping(node, where, kExpected, kActionKeys, &fields))
		return false;
	if (fields.size() != 1) {
		error(node, fields.empty() ? "expected " + std::string(kExpected) + ", got an empty mapping"
					   : std::string(where) + " has one of delay or hold, not both");
		return false;
	}
	ActionKind kind = fields.begin()->first == "delay" ? ActionKind::Delay : ActionKind::Hold;
	std::chrono::milliseconds d{0};
	if (!duration(fields.begin()->second.value, kind, &d))
		return false;
	*out = Action{kind, d};
	return true;
}

bool PolicyCompiler::hosts(const YAML::Node &node, std::string_view key, std::vector<HostPattern> *out)
{
	if (!list(node, "a list of host names", key))
		return false;
	bool ok = true;
	for (const YAML::Node &item : node) {
		std::string text;
		if (!scalar(item, "a host name", &text)) {
			ok = false;
			continue;
		}
		HostPattern pattern;
		if (text == "*") {
			pattern.kind = HostPattern::Kind::Any;
		} else if (text.starts_with("*.")) {
			pattern.kind = HostPattern::Kind::Suffix;
			pattern.name = canonicalHost(std::string_view(text).substr(2));
		} else {
			pattern.name = canonicalHost(text);
		}
		if (pattern.kind != HostPattern::Kind::Any) {
			if (std::string problem = hostNameProblem(pattern.name); !problem.empty()) {
				error(item, "bad host " + quote(text) + ": " + problem);
				ok = false;
				continue;
			}
		}
		out->push_back(std::move(pattern));
	}
	return ok;
}

bool PolicyCompiler::ports(const YAML::Node &node, std::string_view key, std::vector<uint16_t> *out)
{
	if (!list(node, "a list of ports", key))
		return false;
	bool ok = true;
	for (const YAML::Node &item : node) {
		std::string text;
		if (!scalar(item, "a port number", &text)) {
			ok = false;
			continue;
		}
		uint32_t port = 0;
		bool valid = !text.empty() && text.size() <= 5 &&
			     std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
		if (valid)
			port = static_cast<uint32_t>(std::stoul(text));
		if (!valid || port < 1 || port > 65535) {
			error(item, "bad port " + quote(text) + ": expected a number from 1 to 65535");
			ok = false;
			continue;
		}
		out->push_back(static_cast<uint16_t>(port));
	}
	return ok;
}

bool PolicyCompiler::methods(const YAML::Node &node, std::vector<std::string> *out)
{
	if (!list(node, "a list of HTTP methods", "methods"))
		return false;
	bool ok = true;
	for (const YAML::Node &item : node) {
		std::string text;
		if (!scalar(item, "an HTTP method", &text)) {
			ok = false;
			continue;
		}
		if (!isToken(text)) {
			error(item, "bad method " + quote(text) +
					    ": an HTTP method is a token of letters, digits and !#$%&'*+-.^_`|~");
			ok = false;
			continue;
		}
		out->push_back(asciiUpper(text));
	}
	return ok;
}

bool PolicyCompiler::cidrs(const YAML::Node &node, std::string_view key, std::vector<Cidr> *out,
			   std::vector<std::string> *texts)
{
	if (!node.IsSequence()) {
		error(node, "expected a list of CIDRs such as 10.0.0.0/8, got " + describe(node));
		return false;
	}
	if (node.size() == 0 && key == "cidrs") {
		error(node, "cidrs must not be empty");
		return false;
	}
	bool ok = true;
	for (const YAML::Node &item : node) {
		std::string text;
		if (!scalar(item, "a CIDR such as 10.0.0.0/8", &text)) {
			ok = false;
			continue;
		}
		Cidr cidr;
		std::string problem;
		if (!Cidr::parse(text, &cidr, &problem)) {
			error(item, "bad CIDR " + quote(text) + ": " + problem);
			ok = false;
			continue;
		}
		if (out)
			out->push_back(cidr);
		texts->push_back(text);
	}
	return ok;
}

std::optional<Regex> PolicyCompiler::regex(const YAML::Node &node, std::string_view what)
{
	std::string text;
	if (!scalar(node, "a regular expression", &text))
		return std::nullopt;
	RegexError problem;
	std::optional<Regex> re = Regex::compile(text, &problem);
	if (!re)
		error(node, "bad regex in " + std::string(what) + " " + quote(text) + ": " + problem.message +
				    " at offset " + std::to_string(problem.offset));
	return re;
}

bool PolicyCompiler::keyedRegexes(const YAML::Node &node, const KeyedRegexKind &kind, std::vector<KeyedRegex> *out)
{
	if (!node.IsMap()) {
		error(node, "expected a mapping of " + std::string(kind.keyNoun) + " to regex, got " + describe(node));
		return false;
	}
	if (node.size() == 0) {
		error(node, std::string(kind.section) + " must not be empty");
		return false;
	}
	bool ok = true;
	std::set<std::string> seen;
	for (const auto &pair : node) {
		std::string key;
		if (!scalar(pair.first, "a " + std::string(kind.keyNoun), &key)) {
			ok = false;
			continue;
		}
		if (kind.isHeader) {
			if (!isToken(key)) {
				error(pair.first, "bad header name " + quote(key) + ": a header name is a token of letters, digits and !#$%&'*+-.^_`|~");
				ok = false;
				continue;
			}
			key = asciiLower(key);
		}
		if (!seen.insert(key).second) {
			error(pair.first, "duplicate key " + quote(key) + " in " + kind.section +
						  (kind.isHeader ? " (header names ignore case)" : ""));
			ok = false;
			continue;
		}
		std::optional<Regex> re = regex(pair.second, std::string(kind.valueNoun) + " " + quote(key));
		if (!re) {
			ok = false;
			continue;
		}
		out->push_back(KeyedRegex{key, std::move(*re)});
	}
	return ok;
}

bool PolicyCompiler::body(const YAML::Node &node, std::optional<BodySelector> *out)
{
	Fields fields;
	bool ok = mapping(node, "body", "{json: PATH, regex: REGEX} or {regex: REGEX}", kBodyKeys, &fields);
	if (!node.IsMap())
		return false;
	ok = require(fields, node, "regex", "body") && ok;
	std::vector<std::string> path;
	std::string pathText;
	if (const YAML::Node *json = field(fields, "json")) {
		if (!scalar(*json, "a dotted JSON path such as message.text", &pathText)) {
			ok = false;
		} else {
			size_t start = 0;
			for (;;) {
				size_t dot = pathText.find('.', start);
				path.push_back(pathText.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
				if (dot == std::string::npos)
					break;
				start = dot + 1;
			}
			if (std::any_of(path.begin(), path.end(), [](const std::string &s) { return s.empty(); })) {
				error(*json, "bad JSON path " + quote(pathText) +
						     ": expected dotted names such as message.text or items.0.name");
				ok = false;
			}
		}
	}
	std::optional<Regex> re;
	if (const YAML::Node *r = field(fields, "regex")) {
		re = regex(*r, "body");
		ok = ok && re.has_value();
	}
	if (!ok)
		return false;
	*out = BodySelector{std::move(path), std::move(pathText), std::move(*re)};
	return true;
}

bool PolicyCompiler::tcp(const YAML::Node &node, std::optional<TcpSelector> *out)
{
	Fields fields;
	bool ok = mapping(node, "tcp", "a mapping {hosts, cidrs, ports}", kTcpKeys, &fields);
	if (!node.IsMap())
		return false;
	if (fields.empty()) {
		// An unknown key was reported already; say nothing more.
		if (ok)
			error(node, "tcp needs at least one of hosts, cidrs, ports");
		return false;
	}
	TcpSelector selector;
	if (const YAML::Node *n = field(fields, "hosts"))
		ok = hosts(*n, "tcp.hosts", &selector.hosts) && ok;
	if (const YAML::Node *n = field(fields, "cidrs"))
		ok = cidrs(*n, "cidrs", &selector.cidrs, &selector.cidrTexts) && ok;
	if (const YAML::Node *n = field(fields, "ports"))
		ok = ports(*n, "tcp.ports", &selector.ports) && ok;
	if (!ok)
		return false;
	*out = std::move(selector);
	return true;
}

bool PolicyCompiler::rule(const YAML::Node &node, CompiledRule *out)
{
	Fields fields;
	bool ok = mapping(node, "rule", "a rule mapping (name, hosts, ..., action)", kRuleKeys, &fields);
	if (!node.IsMap())
		return false;
	std::string where = "rule";
	if (const YAML::Node *n = field(fields, "name")) {
		if (!scalar(*n, "a rule name", &out->name)) {
			ok = false;
		} else if (out->name.empty()) {
			error(*n, "a rule name cannot be empty");
			ok = false;
		} else {
			where = "rule " + quote(out->name);
		}
	} else {
		ok = require(fields, node, "name", where) && ok;
	}
	if (const YAML::Node *n = field(fields, "action"))
		ok = action(*n, "action", &out->action) && ok;
	else
		ok = require(fields, node, "action", where) && ok;

	if (const YAML::Node *n = field(fields, "hosts"))
		ok = hosts(*n, "hosts", &out->hosts) && ok;
	if (const YAML::Node *n = field(fields, "ports"))
		ok = ports(*n, "ports", &out->ports) && ok;
	if (const YAML::Node *n = field(fields, "methods"))
		ok = methods(*n, &out->methods) && ok;
	if (const YAML::Node *n = field(fields, "path")) {
		out->path = regex(*n, "path");
		ok = out->path.has_value() && ok;
	}
	if (const YAML::Node *n = field(fields, "query"))
		ok = keyedRegexes(*n, {"query", "query parameter", "query parameter", false}, &out->query) && ok;
	if (const YAML::Node *n = field(fields, "headers"))
		ok = keyedRegexes(*n, {"headers", "header name", "header", true}, &out->headers) && ok;
	if (const YAML::Node *n = field(fields, "body"))
		ok = body(*n, &out->body) && ok;
	if (const YAML::Node *n = field(fields, "tcp"))
		ok = tcp(*n, &out->tcp) && ok;
	if (const YAML::Node *n = field(fields, "tls")) {
		std::string text;
		if (!scalar(*n, "intercept or passthrough", &text)) {
			ok = false;
		} else if (text == "passthrough") {
			out->passthrough = true;
		} else if (text != "intercept") {
			error(*n, "bad tls " + quote(text) + ": expected intercept or passthrough");
			ok = false;
		}
	}
	if (const YAML::Node *n = field(fields, "rate")) {
		std::string text;
		Rate rate;
		if (!scalar(*n, "a rate such as 60/min", &text)) {
			ok = false;
		} else if (!parseRate(text, &rate)) {
			error(*n, "bad rate " + quote(text) + ": expected COUNT/PERIOD with COUNT at least 1 and PERIOD one of s, min, hour, day (e.g. 60/min, 10/s)");
			ok = false;
		} else {
			out->rate = rate;
		}
	}

	// Selectors that cannot be combined, reported at the key that makes
	// the others meaningless.
	auto present = [&](std::span<const char *const> keys) {
		std::string names;
		for (const char *k : keys) {
			if (fields.find(std::string_view(k)) != fields.end())
				names += (names.empty() ? "" : ", ") + std::string(k);
		}
		return names;
	};
	if (auto it = fields.find(std::string_view("tcp")); it != fields.end()) {
		static constexpr const char *kHttpKeys[] = {"hosts", "ports", "methods", "path", "query", "headers", "body", "tls"};
		if (std::string names = present(kHttpKeys); !names.empty()) {
			error(it->second.key, where + " has tcp, which cannot be combined with HTTP selectors (" + names +
						      "); use tcp.hosts and tcp.ports, or make two rules");
			ok = false;
		}
	}
	if (auto it = fields.find(std::string_view("tls")); it != fields.end() && out->passthrough) {
		static constexpr const char *kRequestKeys[] = {"methods", "path", "query", "headers", "body"};
		if (std::string names = present(kRequestKeys); !names.empty()) {
			error(it->second.value, where + " has tls: passthrough, which cannot be combined with request selectors (" +
							names + "): a passed-through request is never decrypted");
			ok = false;
		}
	}
	return ok;
}

void PolicyCompiler::dns(const YAML::Node &node, CompiledPolicy *policy)
{
	Fields fields;
	mapping(node, "dns", "a mapping {resolve, max_name_length}", kDnsKeys, &fields);
	if (const YAML::Node *n = field(fields, "resolve")) {
		std::string text;
		if (scalar(*n, "policy or all", &text)) {
			if (text == "policy")
				policy->dnsResolve = DnsResolve::Policy;
			else if (text == "all")
				policy->dnsResolve = DnsResolve::All;
			else
				error(*n, "bad dns.resolve " + quote(text) + ": expected policy or all");
		}
	}
	if (const YAML::Node *n = field(fields, "max_name_length")) {
		std::string text;
		if (scalar(*n, "a number from 1 to 253", &text)) {
			bool valid = !text.empty() && text.size() <= 3 &&
				     std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
			size_t value = valid ? std::stoul(text) : 0;
			if (value < 1 || value > kMaxDnsNameLengthLimit)
				error(*n, "bad dns.max_name_length " + quote(text) + ": expected a number from 1 to 253");
			else
				policy->maxDnsNameLength = value;
		}
	}
}

void PolicyCompiler::upstream(const YAML::Node &node, CompiledPolicy *policy)
{
	Fields fields;
	mapping(node, "upstream", "a mapping {allow_cidrs}", kUpstreamKeys, &fields);
	if (const YAML::Node *n = field(fields, "allow_cidrs"); n && !n->IsNull())
		cidrs(*n, "allow_cidrs", nullptr, &policy->allowCidrs);
}

void PolicyCompiler::rules(const YAML::Node &node, CompiledPolicy *policy)
{
	if (node.IsNull())
		return;
	if (!node.IsSequence()) {
		error(node, "expected a list of rules, got " + describe(node));
		return;
	}
	if (node.size() > kMaxRules) {
		error(node, "too many rules: " + std::to_string(node.size()) + "; at most " + std::to_string(kMaxRules));
		return;
	}
	std::map<std::string, YAML::Mark> names;
	for (const YAML::Node &item : node) {
		CompiledRule compiled;
		bool ok = rule(item, &compiled);
		if (!compiled.name.empty()) {
			auto [it, inserted] = names.emplace(compiled.name, item.Mark());
			if (!inserted) {
				error(item, "duplicate rule name " + quote(compiled.name) + " (first at line " +
						    std::to_string(it->second.line + 1) + ")");
				ok = false;
			}
		}
		if (ok)
			policy->rules.push_back(std::move(compiled));
	}
}

bool PolicyCompiler::hiddenEntries(const YAML::Node &node, std::string_view key, HiddenEntries *out)
{
	if (!node.IsSequence()) {
		error(node, "expected a list of paths (~/PATH, /PATH) or name patterns (such as *.pem), got " +
				    describe(node));
		return false;
	}
	if (node.size() > kMaxHiddenEntries) {
		error(node, "too many entries in " + std::string(key) + ": " + std::to_string(node.size()) +
				    "; at most " + std::to_string(kMaxHiddenEntries));
		return false;
	}
	bool ok = true;
	for (const YAML::Node &item : node) {
		std::string text;
		if (!scalar(item, "a path (~/PATH, /PATH) or a name pattern (such as *.pem)", &text)) {
			ok = false;
			continue;
		}
		std::string normalised;
		if (std::string problem = hiddenPathProblem(text, &normalised); !problem.empty()) {
			error(item, "bad " + std::string(key) + " entry " + printable(text) + ": " + problem);
			ok = false;
			continue;
		}
		out->emplace_back(std::move(normalised), item);
	}
	return ok;
}

void PolicyCompiler::filesystem(const YAML::Node &node, CompiledPolicy *policy)
{
	Fields fields;
	mapping(node, "filesystem", "a mapping {workspace, hidden, visible}", kFilesystemKeys, &fields);
	if (const YAML::Node *n = field(fields, "workspace")) {
		std::string text;
		if (scalar(*n, "overlay, direct or readonly", &text)) {
			if (int i = indexOf(text, kWorkspaceModeNames); i >= 0)
				policy->filesystem.workspace = kWorkspaceModes[i];
			else
				error(*n, "bad filesystem.workspace " + quote(text) + ": expected overlay, direct or readonly");
		}
	}
	// The defaults, then `hidden:` in order, each path once.
	std::vector<std::string> &hidden = policy->filesystem.hidden;
	bool hiddenOk = true;
	if (const YAML::Node *n = field(fields, "hidden")) {
		HiddenEntries entries;
		hiddenOk = hiddenEntries(*n, "filesystem.hidden", &entries);
		for (auto &[path, item] : entries) {
			if (std::find(hidden.begin(), hidden.end(), path) == hidden.end())
				hidden.push_back(std::move(path));
		}
	}
	// Each `visible:` entry must take something out of that list, compared
	// as normalised text: a path that matches nothing is most likely a
	// typo that would leave the secret it meant to expose (or thought it
	// exposed) where it was. When `hidden:` had a mistake, its entries are
	// incomplete, so "matches nothing" could be wrong: say nothing then.
	if (const YAML::Node *n = field(fields, "visible")) {
		HiddenEntries entries;
		hiddenEntries(*n, "filesystem.visible", &entries);
		std::set<std::string> remove;
		for (const auto &[path, item] : entries) {
			if (std::find(hidden.begin(), hidden.end(), path) != hidden.end())
				remove.insert(path);
			else if (hiddenOk)
				error(item, "visible " + printable(item.Scalar()) + " matches no hidden path");
		}
		std::erase_if(hidden, [&](const std::string &path) { return remove.count(path) != 0; });
	}
}

void PolicyCompiler::syscalls(const YAML::Node &node, CompiledPolicy *policy)
{
	Fields fields;
	mapping(node, "syscalls", "a mapping {allow}", kSyscallsKeys, &fields);
	const YAML::Node *n = field(fields, "allow");
	if (!n)
		return;
	if (!n->IsSequence()) {
		error(*n, "expected a list of syscall groups (" + joinKeys(kSyscallGroupNames) + "), got " + describe(*n));
		return;
	}
	// A group named twice is allowed once, like a repeated method.
	for (const YAML::Node &item : *n) {
		std::string text;
		if (!scalar(item, "a syscall group name", &text))
			continue;
		int i = indexOf(text, kSyscallGroupNames);
		if (i < 0) {
			error(item, "unknown syscall group " + quote(text) + " in syscalls.allow; " +
					    expectedOneOf(text, kSyscallGroupNames));
			continue;
		}
		policy->syscalls.allow |= static_cast<uint32_t>(kSyscallGroups[i]);
	}
}

void PolicyCompiler::limits(const YAML::Node &node, CompiledPolicy *policy)
{
	Fields fields;
	mapping(node, "limits", "a mapping {memory, pids, cpu}", kLimitsKeys, &fields);
	std::string text;
	if (const YAML::Node *n = field(fields, "memory"); n && scalar(*n, "a size such as 512M or 2G", &text)) {
		uint64_t bytes = 0;
		if (!parseByteSize(text, &bytes)) {
			error(*n, "bad limits.memory " + quote(text) +
					  ": expected a whole number of bytes with an optional K, M, G or T suffix "
					  "(powers of 1024), such as 512M or 2G");
		} else if (bytes < kMinMemoryLimit) {
			error(*n, "limits.memory " + quote(text) + " is less than the minimum of " +
					  formatByteSize(kMinMemoryLimit));
		} else if (bytes > kMaxMemoryLimit) {
			error(*n, "limits.memory " + quote(text) + " is more than the maximum of " +
					  formatByteSize(kMaxMemoryLimit));
		} else {
			policy->limits.memoryBytes = bytes;
		}
	}
	if (const YAML::Node *n = field(fields, "pids"); n && scalar(*n, "a number of processes", &text)) {
		uint64_t pids = 0;
		if (parseWholeNumber(text, &pids) && pids >= kMinPidsLimit && pids <= kMaxPidsLimit)
			policy->limits.pids = static_cast<uint32_t>(pids);
		else
			error(*n, "bad limits.pids " + quote(text) + ": expected a whole number from " +
					  std::to_string(kMinPidsLimit) + " to " + std::to_string(kMaxPidsLimit));
	}
	if (const YAML::Node *n = field(fields, "cpu"); n && scalar(*n, "a number of CPU cores such as 1.5", &text)) {
		uint64_t millis = 0;
		if (!parseCpuMillis(text, &millis)) {
			error(*n, "bad limits.cpu " + quote(text) +
					  ": expected a number of CPU cores with at most 3 decimals, such as 1, 0.5 or 1.25");
		} else if (millis == 0) {
			error(*n, "limits.cpu must be more than zero");
		} else if (millis < kMinCpuMillis) {
			error(*n, "limits.cpu " + quote(text) + " is less than the minimum of 0.01 cores");
		} else if (millis > kMaxCpuMillis) {
			error(*n, "limits.cpu " + quote(text) + " is more than the maximum of " +
					  std::to_string(kMaxCpuMillis / 1000) + " cores");
		} else {
			policy->limits.cpuMillis = static_cast<uint32_t>(millis);
		}
	}
}

CompiledPolicy PolicyCompiler::compile(const YAML::Node &root)
{
	CompiledPolicy policy;
	if (root.IsNull()) {
		errorAt(1, 1, "the policy is empty; expected a mapping with version, name and rules");
		return policy;
	}
	size_t budget = kMaxPolicyNodes;
	if (!withinNodeBudget(root, &budget)) {
		errorAt(1, 1, "the policy expands to more than " + std::to_string(kMaxPolicyNodes) +
				      " YAML nodes (through aliases?)");
		return policy;
	}
	Fields fields;
	mapping(root, "policy", "a policy mapping (version, name, rules, ...)", kPolicyKeys, &fields);
	if (!root.IsMap())
		return policy;

	if (const YAML::Node *n = field(fields, "version")) {
		std::string text;
		if (scalar(*n, "version 1", &text) && text != "1")
			error(*n, "unsupported policy version " + quote(text) + "; expected 1");
	} else {
		require(fields, root, "version", "policy");
	}
	if (const YAML::Node *n = field(fields, "name")) {
		if (scalar(*n, "a policy name", &policy.name) && policy.name.empty())
			error(*n, "the policy name cannot be empty");
	} else {
		require(fields, root, "name", "policy");
	}
	if (const YAML::Node *n = field(fields, "mode")) {
		std::string text;
		if (scalar(*n, "enforce or monitor", &text)) {
			if (text == "enforce")
				policy.mode = Mode::Enforce;
			else if (text == "monitor")
				policy.mode = Mode::Monitor;
			else
				error(*n, "bad mode " + quote(text) + ": expected enforce or monitor");
		}
	}
	if (const YAML::Node *n = field(fields, "default"))
		action(*n, "default", &policy.defaultAction);
	if (const YAML::Node *n = field(fields, "dns"))
		dns(*n, &policy);
	if (const YAML::Node *n = field(fields, "upstream"))
		upstream(*n, &policy);
	if (const YAML::Node *n = field(fields, "filesystem"))
		filesystem(*n, &policy);
	if (const YAML::Node *n = field(fields, "syscalls"))
		syscalls(*n, &policy);
	if (const YAML::Node *n = field(fields, "limits"))
		limits(*n, &policy);
	if (const YAML::Node *n = field(fields, "rules"))
		rules(*n, &policy);
	return policy;
}

} // namespace

LoadResult loadPolicy(std::string_view text, std::string_view file)
{
	LoadResult result;
	PolicyCompiler compiler{std::string(file)};
	if (text.size() > kMaxPolicyBytes) {
		compiler.errorAt(0, 0, "the policy is larger than the limit of " + std::to_string(kMaxPolicyBytes) +
					       " bytes");
		result.diagnostics = compiler.takeDiagnostics();
		return result;
	}
	CompiledPolicy policy;
	try {
		YAML::Node root = YAML::Load(std::string(text));
		policy = compiler.compile(root);
	} catch (const YAML::Exception &e) {
		compiler.errorAt(e.mark, e.msg);
	} catch (const std::exception &e) {
		compiler.errorAt(0, 0, std::string("cannot load the policy: ") + e.what());
	}
	result.diagnostics = compiler.takeDiagnostics();
	if (!result.diagnostics.empty()) {
		std::stable_sort(result.diagnostics.begin(), result.diagnostics.end(),
				 [](const Diagnostic &a, const Diagnostic &b) {
					 return std::pair(a.line, a.column) < std::pair(b.line, b.column);
				 });
		return result;
	}
	try {
		result.engine = makeCompiledEngine(std::move(policy), sha256Hex(text));
	} catch (const std::exception &e) {
		result.diagnostics.push_back(Diagnostic{std::string(file), 0, 0, std::string("cannot build the engine: ") + e.what()});
	}
	return result;
}

LoadResult loadPolicyFile(const std::string &path)
{
	auto unreadable = [&path](std::string message) {
		LoadResult result;
		result.diagnostics.push_back(Diagnostic{path, 0, 0, std::move(message)});
		return result;
	};
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd)
		return unreadable(std::string("cannot open the policy: ") + std::strerror(errno));
	std::string text;
	char buf[64 * 1024];
	for (;;) {
		ssize_t n = ::read(fd.get(), buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return unreadable(std::string("cannot read the policy: ") + std::strerror(errno));
		}
		if (n == 0)
			break;
		text.append(buf, static_cast<size_t>(n));
		// Stop reading once it is too big; loadPolicy() says so.
		if (text.size() > kMaxPolicyBytes)
			break;
	}
	return loadPolicy(text, path);
}

} // namespace gvm::policy
