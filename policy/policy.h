// SPDX-License-Identifier: Apache-2.0
//
// The public face of the policy library: load a policy (YAML, version 1, see
// README "Policy reference"), then ask its Engine for decisions. The library
// is pure: no sockets, no event loop, no clock of its own (callers pass time
// in), so it can be unit-tested and fuzzed. An Engine is immutable once
// built; holders share it as std::shared_ptr<const Engine>, so a policy
// reload never disturbs a decision in flight.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gvm::policy {

// Named limits on what a policy or a request may make the engine do.
inline constexpr size_t kMaxPolicyBytes = 4 * 1024 * 1024;
inline constexpr size_t kMaxRules = 10000;
inline constexpr size_t kBodyInspectionWindow = 64 * 1024;
inline constexpr uint32_t kRegexMatchLimit = 100000;
inline constexpr uint32_t kRegexDepthLimit = 1000;
inline constexpr size_t kDefaultMaxDnsNameLength = 120;

enum class ActionKind { Allow, Deny, Delay, Hold, RateLimit };
// "allow", "deny", "delay", "hold", "rate_limit" (the audit record's words).
const char *toString(ActionKind kind);

enum class Mode { Enforce, Monitor };
const char *toString(Mode mode); // "enforce", "monitor"

enum class DnsResolve { Policy, All };

struct Action {
	ActionKind kind = ActionKind::Deny;
	// For Delay: how long to wait; for Hold: how long to wait for an
	// approval before denying.
	std::chrono::milliseconds duration{0};
};

// "60/min": at most `count` requests per `period`, as a token bucket of
// capacity `count` refilled evenly over `period`.
struct Rate {
	uint32_t count = 0;
	std::chrono::milliseconds period{0};
};

// A diagnostic about a policy file, 1-based line and column.
struct Diagnostic {
	std::string file;
	int line = 0;
	int column = 0;
	std::string message;
	// "FILE:LINE:COLUMN: MESSAGE"
	std::string toString() const;
};

// An HTTP request as the engine sees it. Host is matched case-insensitively,
// without a port and without a trailing dot. Path excludes the query; the
// engine normalises it (percent-decodes unreserved characters, upper-cases
// escapes, removes dot segments) before matching.
struct HttpRequest {
	std::string method; // e.g. "GET"
	std::string host;
	uint16_t port = 443;
	std::string path = "/";
	std::string query; // raw, without '?'
	std::vector<std::pair<std::string, std::string>> headers;
	std::string body;           // at most kBodyInspectionWindow bytes
	bool bodyTruncated = false; // the real body was longer than `body`
	// The request has a body that `body` does not hold yet: a rule that
	// inspects the body stops the evaluation with Decision::needsBody.
	bool bodyPending = false;
};

// A decision: what the policy says and why.
struct Decision {
	ActionKind action = ActionKind::Deny; // what the policy says
	std::chrono::milliseconds duration{0}; // for Delay and Hold
	std::optional<Rate> rate;              // the matched rule's rate, if any
	std::string rule;                      // matched rule name; "" = default
	int ruleIndex = -1;                    // index into rules; -1 = default
	std::string reason;                    // one human sentence
	Mode mode = Mode::Enforce;
	// For TLS: the rule says to splice bytes without interception.
	bool passthrough = false;
	// For TLS: the decision depends on the request (method, path, ...), so
	// the connection must be intercepted and each request decided.
	bool needsRequest = false;
	// For HTTP with bodyPending: a rule whose other selectors matched
	// inspects the body, so the caller buffers it (up to
	// kBodyInspectionWindow) and evaluates again.
	bool needsBody = false;
	// For DNS: denied for the query's shape (a name over max_name_length,
	// or TXT/NULL/ANY to a name no rule lists), which looks like data
	// leaving through DNS; answered REFUSED rather than NXDOMAIN.
	bool likelyExfiltration = false;

	// What to enforce: in monitor mode everything is allowed.
	ActionKind effective() const { return mode == Mode::Monitor ? ActionKind::Allow : action; }
};

// What the agent sees of the file system and may do to the kernel, beyond
// the network (the policy's `filesystem:`, `syscalls:` and `limits:`
// sections; each has safe defaults when absent).
enum class WorkspaceMode {
	Overlay,  // writes land in a per-sandbox upper directory until applied
	Direct,   // writes go straight to the real workspace
	Readonly, // the workspace is read-only like the rest of the host
};
const char *toString(WorkspaceMode mode); // "overlay", "direct", "readonly"

struct FilesystemPolicy {
	WorkspaceMode workspace = WorkspaceMode::Overlay;
	// Paths replaced by empty, unreadable mounts, as written: "~/x" is in
	// the caller's home, "/x" is absolute, anything else is a name pattern
	// ('*' and '?' wildcards, no '/') matched against file and directory
	// names anywhere in the workspace. Defaults first (kDefaultHidden),
	// then the policy's `hidden:`, minus the policy's `visible:`.
	std::vector<std::string> hidden;
};

// The default `hidden:` list.
inline constexpr const char *kDefaultHidden[] = {
	"~/.ssh",   "~/.gnupg",  "~/.aws",   "~/.config/gcloud", "~/.azure",
	"~/.kube",  "~/.docker", "~/.netrc", "~/.git-credentials", ".env*",
};

// Named groups of system calls the agent's seccomp filter denies, which a
// policy may allow (`syscalls: {allow: [namespaces]}`).
enum class SyscallGroup : uint32_t {
	Namespaces = 1u << 0, // unshare, setns, clone/clone3 with namespace flags
	Ptrace = 1u << 1,     // ptrace, process_vm_readv/writev
	IoUring = 1u << 2,    // io_uring_setup/enter/register
};
inline constexpr const char *kSyscallGroupNames[] = {"namespaces", "ptrace", "io_uring"};

struct SyscallPolicy {
	uint32_t allow = 0; // SyscallGroup bits
	bool allows(SyscallGroup group) const { return (allow & static_cast<uint32_t>(group)) != 0; }
};

// Resource limits of the sandbox's cgroup; absent means gvmd's default.
struct ResourceLimits {
	std::optional<uint64_t> memoryBytes; // `memory: 2G` (K, M, G, T; powers of 1024)
	std::optional<uint32_t> pids;        // `pids: 512`
	std::optional<uint32_t> cpuMillis;   // `cpu: 1.5` cores -> 1500
};

// DNS query types the engine treats specially.
inline constexpr uint16_t kDnsTypeA = 1;
inline constexpr uint16_t kDnsTypeNull = 10;
inline constexpr uint16_t kDnsTypeTxt = 16;
inline constexpr uint16_t kDnsTypeAaaa = 28;
inline constexpr uint16_t kDnsTypeAny = 255;

class Engine
{
public:
	virtual ~Engine() = default;

	const std::string &name() const { return name_; }
	const std::string &sha256() const { return sha256_; } // of the policy text
	Mode mode() const { return mode_; }
	size_t ruleCount() const { return ruleCount_; }
	// The policy's upstream.allow_cidrs, as written ("10.0.0.0/8", "::1/128").
	const std::vector<std::string> &upstreamAllowCidrs() const { return allowCidrs_; }
	const FilesystemPolicy &filesystem() const { return filesystem_; }
	const SyscallPolicy &syscalls() const { return syscalls_; }
	const ResourceLimits &limits() const { return limits_; }

	// First rule whose selectors all match decides; else the default.
	virtual Decision evaluateHttp(const HttpRequest &request) const = 0;
	// Before decryption: decides on SNI and port alone where it can; sets
	// needsRequest when a rule for this host depends on the request.
	virtual Decision evaluateTls(std::string_view sni, uint16_t port) const = 0;
	// Raw TCP: `tcp:` rules against the destination address (textual IPv4
	// or IPv6), port, and the names DNS gave out for that address.
	virtual Decision evaluateTcp(std::string_view address, uint16_t port,
				     const std::vector<std::string> &names) const = 0;
	// Whether a DNS name may resolve (Allow) or gets NXDOMAIN (Deny):
	// max_name_length, resolve: policy|all, and TXT/NULL/ANY to names no
	// rule lists.
	virtual Decision evaluateDns(std::string_view name, uint16_t qtype) const = 0;

protected:
	std::string name_;
	std::string sha256_;
	Mode mode_ = Mode::Enforce;
	size_t ruleCount_ = 0;
	std::vector<std::string> allowCidrs_;
	FilesystemPolicy filesystem_;
	SyscallPolicy syscalls_;
	ResourceLimits limits_;
};

// The outcome of loading: an engine, or every diagnostic found.
struct LoadResult {
	std::shared_ptr<const Engine> engine; // null when diagnostics is non-empty
	std::vector<Diagnostic> diagnostics;
};

// Loads a policy from its text; `file` names it in diagnostics. Never throws.
LoadResult loadPolicy(std::string_view text, std::string_view file);
// Reads the file, then loadPolicy(); an unreadable file is one diagnostic.
LoadResult loadPolicyFile(const std::string &path);

// Token buckets for rules with a `rate`; time is passed in. Not thread-safe.
class RateLimiter
{
public:
	using Clock = std::chrono::steady_clock;
	// True when the request may proceed (a token was taken).
	bool take(int ruleIndex, const Rate &rate, Clock::time_point now);

private:
	struct Bucket {
		double tokens = 0;
		Clock::time_point last;
	};
	std::map<int, Bucket> buckets_;
};

// Parses "300ms", "2s", "5m", "1h" (whole numbers). False on bad input.
bool parseDuration(std::string_view text, std::chrono::milliseconds *out);
// Parses "60/min", "10/s", "1000/hour" (also "/sec", "/second", "/minute", "/h").
bool parseRate(std::string_view text, Rate *out);
// "300ms", "2s", "1m" ... : the shortest exact form.
std::string formatDuration(std::chrono::milliseconds d);

// RFC 3986 §6.2.2 normalisation of a path (see HttpRequest).
std::string normalizePath(std::string_view path);

} // namespace gvm::policy
