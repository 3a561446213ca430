// SPDX-License-Identifier: Apache-2.0
//
// A real agent end to end under the coding preset: openclaw, installed from
// the npm registry by tests/support/install_openclaw.sh (pinned versions,
// cached between runs), is started exactly as a user would start it:
//
//   gvmctl launch --policy policy/presets/coding.yaml --workspace DIR -- openclaw ...
//
// with full isolation (no --network-only, no --cooperative), its proxy
// variables as gvmctl sets them, and the shipped preset unchanged. openclaw
// --version and --help need nothing; `openclaw onboard` configures a custom
// OpenAI-compatible provider at https://integrate.api.nvidia.com/v1 (the
// host of the preset's model-gateway rule) inside the sandbox's workspace
// overlay, which `gvmctl apply` then copies out; `openclaw agent --local`
// runs one embedded agent turn, whose chat completion request must cross
// gvm's proxy, be allowed by the model-gateway rule and be recorded in the
// audit log. Pointed at api.openai.com instead (a shadow model provider the
// preset denies), the same turn must get nothing but gvm's 403s.
//
// Apart from the setup (the npm registry, on the first run only), nothing
// here reaches the internet: the model API is a stand-in
// (tests/support/model_standin.py) in a network namespace of the test's own
// (UpstreamNetns), on a TLS certificate for both provider names signed by a
// CA this test makes with openssl and gives gvmd (--upstream-ca). Both names
// resolve to the stand-in through a dnsmasq in that namespace, which gvmd
// forwards the sandboxes' DNS to (--dns-upstream) and which the proxy
// worker's own resolver asks (enterPrivateResolver). The stand-in listens on
// kStandInAddress, a globally routable address, added to the namespace and
// routed to it from the host for the test's lifetime: the preset's
// `upstream.allow_cidrs: []` refuses every private upstream (SSRF), so the
// fixture's 10.250/16 addresses could not stand in for a public API. The
// route goes with the namespace's veth pair, even when the test is killed.
//
// The agent's home (HOME, where openclaw keeps ~/.openclaw) is a directory
// of its workspace, which lives in a scratch directory under /var/tmp (the
// sandbox's /tmp is its own): what onboarding writes there waits in the
// workspace overlay, so `gvmctl diff` and `gvmctl apply` see it, where the
// private layer over a real home would throw it away with the sandbox.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <netdb.h>
#include <optional>
#include <sstream>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "tests/support/process.h"
#include "tests/support/upstream_netns.h"

using namespace gvm;
using namespace gvm::test;
using Json = nlohmann::json;

namespace {

constexpr char kOpenclawVersion[] = "2026.9.6";
// install_openclaw.sh's default; GVM_OPENCLAW_CACHE overrides it.
constexpr char kDefaultCache[] = "/var/cache/gvm-tests/openclaw-2026.9.6";
// The first run downloads ~280 MB of packages (Node.js alone is ~50 MB, and
// took ten minutes on a slow link); later runs find the cache complete.
// meson's timeout (1800 s) leaves the cases ~5 minutes after this.
constexpr auto kInstallTimeout = std::chrono::seconds(1500);

// The coding preset's model-gateway host, and one of its shadow providers.
constexpr char kModelHost[] = "integrate.api.nvidia.com";
constexpr char kShadowHost[] = "api.openai.com";
// A globally routable address for the stand-in (one of IANA's AS112 sink
// servers, 192.175.48.0/24, which nothing here talks to): gvm's SSRF guard
// refuses private, reserved and documentation addresses as upstreams. Only
// this host, and only while the test runs, routes it into the namespace.
constexpr char kStandInAddress[] = "192.175.48.42";
// Sandbox veth pairs of this file's gvmd: apart from the other suites'.
constexpr char kPool[] = "10.213.0.0/16";
constexpr char kScratchPrefix[] = "/var/tmp/gvm-openclaw-";

constexpr char kModelId[] = "gvm-standin-model";
constexpr char kApiKey[] = "sk-gvm-test-dummy-key";
constexpr char kReply[] = "Hello from the gvm model stand-in (reply 7f3a).";

constexpr char kIp[] = "/usr/sbin/ip";
constexpr char kNsenter[] = "/usr/bin/nsenter";
constexpr char kDnsmasq[] = "/usr/sbin/dnsmasq";
constexpr char kOpenssl[] = "/usr/bin/openssl";
constexpr char kSh[] = "/bin/sh";
constexpr char kSetpriv[] = "/usr/bin/setpriv";

std::string envOr(const char *name, const std::string &fallback)
{
	const char *value = std::getenv(name);
	return value && *value ? value : fallback;
}

std::string requireEnv(const char *name)
{
	const char *value = std::getenv(name);
	if (!value || !*value)
		FAIL(std::string(name) + " is not set (run the test through meson)");
	return value;
}

void writeOrFail(const std::string &path, const std::string &text, mode_t mode = 0644)
{
	auto r = writeFile(path, text, mode);
	if (!r)
		FAIL(r.error().message());
}

std::string commandLine(const std::vector<std::string> &argv)
{
	std::string out;
	for (const auto &a : argv)
		out += (out.empty() ? "" : " ") + a;
	return out;
}

// Runs argv and fails the test, with its output, unless it exits 0.
RunResult runOrFail(const std::vector<std::string> &argv,
		    std::chrono::milliseconds timeout = std::chrono::seconds(30))
{
	RunResult r = run(argv, {}, timeout);
	if (r.status != 0)
		FAIL(commandLine(argv) << " exited " << r.status << "\n" << tail(r.out) << tail(r.err));
	return r;
}

// JSON lines, the ones that parse.
std::vector<Json> jsonLines(const std::string &text)
{
	std::vector<Json> out;
	std::istringstream in(text);
	for (std::string line; std::getline(in, line);)
		if (auto j = Json::parse(line, nullptr, false); !j.is_discarded() && j.is_object())
			out.push_back(std::move(j));
	return out;
}

// The sandbox id gvmctl --json reports on stderr ({"event":"launched",...}).
std::string launchedId(const std::string &stderrText)
{
	for (const Json &j : jsonLines(stderrText))
		if (j.value("event", "") == "launched")
			return j.value("sandbox", "");
	return "";
}

// The first IPv4 address getaddrinfo() finds for name, or "".
std::string resolve(const std::string &name)
{
	addrinfo hints{};
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	addrinfo *res = nullptr;
	if (::getaddrinfo(name.c_str(), "443", &hints, &res) != 0 || !res)
		return "";
	char text[INET_ADDRSTRLEN] = {};
	::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in *>(res->ai_addr)->sin_addr, text, sizeof(text));
	::freeaddrinfo(res);
	return text;
}

// A scratch directory outside /tmp, traversable by everyone, removed
// (recursively) on destruction. It names the process that owns it, so that
// a later run removes what a killed one left.
class ScratchDir
{
public:
	ScratchDir()
	{
		sweepStale();
		std::string tmpl = std::string(kScratchPrefix) + "XXXXXX";
		REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
		path_ = tmpl;
		REQUIRE(::chmod(path_.c_str(), 0755) == 0);
		writeOrFail(path_ + "/owner", std::to_string(::getpid()) + "\n");
	}
	~ScratchDir()
	{
		std::error_code ec;
		std::filesystem::remove_all(path_, ec);
	}
	ScratchDir(const ScratchDir &) = delete;
	ScratchDir &operator=(const ScratchDir &) = delete;
	const std::string &path() const { return path_; }

private:
	// Scratch directories whose owner is gone (its gvmd and servers went
	// with it: they run with a parent-death signal).
	static void sweepStale()
	{
		const std::filesystem::path parent = std::filesystem::path(kScratchPrefix).parent_path();
		const std::string prefix = std::filesystem::path(kScratchPrefix).filename().string();
		std::error_code ec;
		for (const auto &entry : std::filesystem::directory_iterator(parent, ec)) {
			if (entry.path().filename().string().rfind(prefix, 0) != 0)
				continue;
			const pid_t pid = static_cast<pid_t>(std::atol(readFile(entry.path().string() + "/owner").c_str()));
			if (pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM))
				continue;
			std::error_code rec;
			std::filesystem::remove_all(entry.path(), rec);
		}
	}

	std::string path_;
};

// Everything the cases share, made once (see world()): the installed
// openclaw, the namespace with the stand-in and its dnsmasq, and a gvmd.
// Members are destroyed in reverse order: gvmd first, then the servers, the
// namespace (and with it the route) and the scratch directory.
struct World {
	std::string cache = envOr("GVM_OPENCLAW_CACHE", kDefaultCache);
	std::string installLog;
	ScratchDir scratch;
	std::string pkiDir = scratch.path() + "/pki";
	std::string caCert = pkiDir + "/ca.pem";
	std::string leafCert = pkiDir + "/standin.pem";
	std::string leafKey = pkiDir + "/standin-key.pem";
	std::string standInLog = scratch.path() + "/standin-requests.jsonl";
	std::string dnsLog = scratch.path() + "/dnsmasq.log";
	std::string runtime = scratch.path() + "/gvmd/run";
	std::string state = scratch.path() + "/gvmd/state";
	std::string socket = runtime + "/gvmd.sock";
	std::string gvmdLog = scratch.path() + "/gvmd.log";
	std::string coding = requireEnv("GVM_PRESETS") + "/coding.yaml";
	std::optional<TestPki> fixturePki;
	std::unique_ptr<UpstreamNetns> up;
	Child dnsmasq;
	Child standIn;
	Child gvmd;

	World()
	{
		install();
		makePki();
		startNamespace();
		startGvmd();
	}

	~World()
	{
		// A clean stop first (its sandboxes end, their links go); the
		// Child destructors kill whatever is left.
		if (gvmd.running())
			gvmd.stop(SIGTERM, std::chrono::seconds(10));
	}

	// The setup step: install_openclaw.sh, a no-op when the cache is
	// complete. A registry that cannot be reached fails the test.
	void install()
	{
		const auto started = std::chrono::steady_clock::now();
		RunResult r = run({kSh, requireEnv("GVM_OPENCLAW_INSTALL"), cache}, {}, kInstallTimeout);
		installLog = r.out + r.err;
		const auto took = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started);
		if (r.status != 0)
			FAIL("tests/support/install_openclaw.sh could not install openclaw " << kOpenclawVersion << " into "
			     << cache << " (exit " << r.status << " after " << took.count()
			     << " s); the npm registry must be reachable for this test's setup:\n"
			     << tail(installLog));
		REQUIRE(::access((cache + "/bin/openclaw").c_str(), X_OK) == 0);
	}

	// A CA of the test's own and the stand-in's certificate, for both
	// provider names (the fixture's TestPki keeps its CA key in memory).
	void makePki()
	{
		REQUIRE(::mkdir(pkiDir.c_str(), 0755) == 0);
		const std::string caKey = pkiDir + "/ca-key.pem";
		const std::string csr = pkiDir + "/standin.csr";
		const std::string ext = pkiDir + "/standin.ext";
		writeOrFail(ext, "basicConstraints = critical, CA:FALSE\n"
				 "keyUsage = critical, digitalSignature\n"
				 "extendedKeyUsage = serverAuth\n"
				 "subjectAltName = DNS:" + std::string(kModelHost) + ", DNS:" + kShadowHost + "\n");
		runOrFail({kOpenssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
			   "-keyout", caKey, "-out", caCert, "-days", "2", "-subj", "/CN=gvm openclaw test CA", "-addext",
			   "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
		runOrFail({kOpenssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
			   "-keyout", leafKey, "-out", csr, "-subj", "/CN=" + std::string(kModelHost)});
		runOrFail({kOpenssl, "x509", "-req", "-in", csr, "-CA", caCert, "-CAkey", caKey, "-CAcreateserial",
			   "-days", "2", "-extfile", ext, "-out", leafCert});
		// The proxy worker (its own uid) reads the CA by path.
		REQUIRE(::chmod(caCert.c_str(), 0644) == 0);
	}

	void startNamespace()
	{
		// The fixture's own servers (nginx, its dnsmasq, the echo
		// server) stay unused: the namespace and its veth pair are
		// what this test needs from it.
		REQUIRE(::mkdir((scratch.path() + "/fixture-pki").c_str(), 0755) == 0);
		auto pki = TestPki::create(scratch.path() + "/fixture-pki");
		REQUIRE(pki);
		fixturePki.emplace(std::move(*pki));
		auto u = UpstreamNetns::create(*fixturePki);
		if (!u)
			FAIL(u.error().message());
		up = std::move(*u);
		const std::string inNs = "--net=" + up->netnsPath();

		// The public address: on the namespace's end of the veth pair,
		// and routed there from the host (the route goes with the link).
		runOrFail({kNsenter, inNs, kIp, "addr", "add", std::string(kStandInAddress) + "/32", "dev",
			   up->peerInterface()});
		runOrFail({kIp, "route", "add", std::string(kStandInAddress) + "/32", "via", up->address(), "dev",
			   up->hostInterface()});

		// Both servers run in the namespace (nsenter execs them: they
		// are this process's children) with a parent-death signal: were
		// this program killed, they would otherwise keep the namespace,
		// its veth pair and the route alive.
		const std::vector<std::string> inNamespace = {kSetpriv, "--pdeathsig", "KILL", "--", kNsenter, inNs};
		auto server = [&](std::vector<std::string> argv) {
			argv.insert(argv.begin(), inNamespace.begin(), inNamespace.end());
			return argv;
		};

		// dnsmasq answers both provider names with the stand-in, and
		// nothing else (no upstream, no /etc/hosts).
		dnsmasq = Child::start(server({kDnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file",
					       "--no-resolv", "--no-hosts", "--no-poll", "--bind-interfaces",
					       "--listen-address=" + std::string(kStandInAddress), "--port=53",
					       "--user=root", "--group=root", "--local-ttl=60", "--log-queries",
					       "--log-facility=" + dnsLog,
					       "--address=/" + std::string(kModelHost) + "/" + kStandInAddress,
					       "--address=/" + std::string(kShadowHost) + "/" + kStandInAddress}),
				       {}, scratch.path() + "/dnsmasq.stderr");

		const std::string portFile = scratch.path() + "/standin.port";
		standIn = Child::start(server({findPython(""), requireEnv("GVM_MODEL_STANDIN"), "--listen",
					       kStandInAddress, "--port", "443", "--log", standInLog, "--port-file",
					       portFile, "--cert", leafCert, "--key", leafKey, "--model", kModelId,
					       "--reply", kReply}),
				       {}, scratch.path() + "/standin.stderr");
		REQUIRE(waitFor([&] { return !readFile(portFile).empty() || !standIn.running(); },
				std::chrono::seconds(15)));
		INFO(readFile(scratch.path() + "/standin.stderr"));
		REQUIRE(standIn.running());

		// The worker's getaddrinfo() asks that dnsmasq too: it resolves
		// the upstream names itself before it dials.
		auto resolver = enterPrivateResolver(kStandInAddress);
		if (!resolver)
			FAIL(resolver.error().message());
		INFO(readFile(scratch.path() + "/dnsmasq.stderr") << readFile(dnsLog));
		REQUIRE(waitFor([] { return resolve(kModelHost) == kStandInAddress; }, std::chrono::seconds(15)));
	}

	void startGvmd()
	{
		// With a parent-death signal: should this program be killed,
		// gvmd stops (and ends its sandboxes) instead of living on.
		gvmd = Child::start({kSetpriv, "--pdeathsig", "TERM", "--", binaryFromEnv("GVM_GVMD"), "--socket",
				     socket, "--runtime-dir", runtime, "--state-dir", state, "--worker",
				     binaryFromEnv("GVM_WORKER"), "--address-pool", kPool, "--upstream-ca", caCert,
				     "--dns-upstream", std::string(kStandInAddress) + ":53", "--log-level", "debug"},
				    {}, gvmdLog);
		INFO(diagnostics());
		REQUIRE(waitFor([&] { return RawClient(socket).connected(); }, std::chrono::seconds(15)));
	}

	// A workspace of its own for a case, with the agent's home in it.
	std::string makeWorkspace(const std::string &name)
	{
		const std::string dir = scratch.path() + "/" + name;
		REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
		REQUIRE(::mkdir((dir + "/home").c_str(), 0700) == 0);
		return dir;
	}

	// The command line of `gvmctl ARGS` as the user types it in `workspace`,
	// with the installed openclaw first on PATH and HOME in the workspace.
	std::vector<std::string> ctlArgs(const std::string &workspace, const std::vector<std::string> &args) const
	{
		std::vector<std::string> argv = {"/usr/bin/env", "-C", workspace, "HOME=" + workspace + "/home",
						 "PATH=" + cache + "/bin:/usr/local/bin:/usr/bin:/bin", "NO_COLOR=1",
						 binaryFromEnv("GVM_GVMCTL"), "--socket", socket};
		argv.insert(argv.end(), args.begin(), args.end());
		return argv;
	}

	RunResult ctl(const std::string &workspace, const std::vector<std::string> &args,
		      std::chrono::milliseconds timeout = std::chrono::seconds(30)) const
	{
		return run(ctlArgs(workspace, args), {}, timeout);
	}

	// gvmctl launch --json --policy coding.yaml --workspace W -- openclaw ARGS
	RunResult launchOpenclaw(const std::string &workspace, const std::vector<std::string> &args,
				 std::chrono::milliseconds timeout) const
	{
		std::vector<std::string> launch = {"launch", "--json", "--policy", coding, "--workspace", workspace,
						   "--", "openclaw"};
		launch.insert(launch.end(), args.begin(), args.end());
		return ctl(workspace, launch, timeout);
	}

	// openclaw onboard, non-interactively, for a custom OpenAI-compatible
	// provider at baseUrl: in a sandbox, then applied to the workspace.
	void onboard(const std::string &workspace, const std::string &baseUrl) const
	{
		RunResult r = launchOpenclaw(workspace,
					     {"onboard", "--non-interactive", "--accept-risk", "--mode", "local",
					      "--auth-choice", "custom-api-key", "--custom-base-url", baseUrl,
					      "--custom-model-id", kModelId, "--custom-api-key", kApiKey,
					      "--custom-compatibility", "openai", "--secret-input-mode", "plaintext",
					      "--skip-skills", "--skip-channels", "--skip-health", "--skip-search",
					      "--skip-hooks", "--skip-ui", "--no-install-daemon"},
					     std::chrono::seconds(180));
		INFO("onboard: status " << r.status << "\n" << tail(r.out) << tail(r.err) << diagnostics());
		REQUIRE(r.status == 0);
		const std::string id = launchedId(r.err);
		REQUIRE(!id.empty());
		// Onboarding a custom provider does not call it (nor anything).
		CHECK(recordsOf(id).empty());
		const std::string config = workspace + "/home/.openclaw/openclaw.json";
		// The agent's writes wait in the overlay: nothing yet in the
		// real workspace, the configuration in the review.
		CHECK(::access(config.c_str(), F_OK) != 0);
		RunResult diff = ctl(workspace, {"diff", id});
		CHECK(diff.status == 0);
		CHECK_THAT(diff.out, Catch::Contains("home/.openclaw/openclaw.json"));
		RunResult apply = ctl(workspace, {"apply", id});
		INFO("apply: " << apply.out << apply.err);
		REQUIRE(apply.status == 0);
		auto json = Json::parse(readFile(config), nullptr, false);
		REQUIRE(!json.is_discarded());
		bool found = false;
		for (const auto &[name, provider] : json["models"]["providers"].items())
			found = found || provider.value("baseUrl", "") == baseUrl;
		CHECK(found);
	}

	// Every audit record so far (gvmd syncs within ~100 ms).
	std::vector<Json> audit() const { return jsonLines(readFile(state + "/audit/audit.jsonl")); }

	// The last record of `sandbox` that `match` accepts, waiting for it a
	// bounded time.
	std::optional<Json> record(const std::string &sandbox, const std::function<bool(const Json &)> &match) const
	{
		std::optional<Json> found;
		waitFor(
			[&] {
				found.reset();
				for (const Json &r : audit())
					if (r.value("sandbox", "") == sandbox && match(r))
						found = r;
				return found.has_value();
			},
			std::chrono::seconds(5));
		return found;
	}

	// What the stand-in received.
	std::vector<Json> standInRequests() const { return jsonLines(readFile(standInLog)); }

	// Every audit record of a sandbox.
	std::vector<Json> recordsOf(const std::string &sandbox) const
	{
		std::vector<Json> out;
		for (Json &r : audit())
			if (r.value("sandbox", "") == sandbox)
				out.push_back(std::move(r));
		return out;
	}

	// The same, one line each, for failure messages.
	std::string auditSummary(const std::string &sandbox) const
	{
		std::string out = "--- audit records of " + sandbox + "\n";
		for (const Json &r : recordsOf(sandbox))
			out += r.dump() + "\n";
		return out;
	}

	std::string diagnostics() const
	{
		return "--- gvmd.log\n" + tail(readFile(gvmdLog), 4000) + "\n--- stand-in\n" +
		       tail(readFile(scratch.path() + "/standin.stderr"), 2000) + "\n--- dnsmasq\n" +
		       tail(readFile(dnsLog), 2000) + "\n";
	}
};

// The shared world, made by the first case that needs it; a failed setup
// fails that case and is tried again by the next one.
World &world()
{
	static std::unique_ptr<World> instance;
	if (!instance)
		instance = std::make_unique<World>();
	return *instance;
}

} // namespace

TEST_CASE("openclaw --version and --help run in a sandbox of the coding preset", "[openclaw][system]")
{
	World &w = world();
	const std::string workspace = w.makeWorkspace("version");

	RunResult version = w.launchOpenclaw(workspace, {"--version"}, std::chrono::seconds(60));
	INFO("--version: status " << version.status << "\n" << version.out << version.err << w.diagnostics());
	REQUIRE(version.status == 0);
	CHECK_THAT(version.out, Catch::StartsWith(std::string("OpenClaw ") + kOpenclawVersion));
	const std::string id = launchedId(version.err);
	CHECK(id.size() == 8);
	// It ran in a sandbox under the preset: gvmd says so in its exit event.
	bool exited = false;
	for (const Json &j : jsonLines(version.err))
		exited = exited || (j.value("event", "") == "exited" && j.value("exit_code", -1) == 0);
	CHECK(exited);

	RunResult help = w.launchOpenclaw(workspace, {"--help"}, std::chrono::seconds(60));
	INFO("--help: status " << help.status << "\n" << help.out << help.err);
	REQUIRE(help.status == 0);
	CHECK_THAT(help.out, Catch::Contains("Usage: openclaw [options] [command]"));
	CHECK_THAT(help.out, Catch::Contains("onboard"));
	const std::string helpId = launchedId(help.err);
	CHECK(helpId.size() == 8);
	CHECK(helpId != id);

	// Neither touches the network: no decision recorded, nothing reached
	// the stand-in.
	std::this_thread::sleep_for(std::chrono::milliseconds(300));
	CHECK(w.recordsOf(id).empty());
	CHECK(w.recordsOf(helpId).empty());
	CHECK(w.standInRequests().empty());
}

TEST_CASE("openclaw's agent turn reaches the model gateway through gvm and is audited", "[openclaw][system]")
{
	World &w = world();
	const std::string workspace = w.makeWorkspace("gateway");
	const std::string baseUrl = "https://" + std::string(kModelHost) + "/v1";
	w.onboard(workspace, baseUrl);
	const size_t before = w.standInRequests().size();

	const std::string prompt = "Say hello to gvm (turn 51c2).";
	RunResult turn = w.launchOpenclaw(workspace, {"agent", "--local", "--agent", "main", "--message", prompt,
						     "--timeout", "120"},
					  std::chrono::seconds(240));
	const std::string id = launchedId(turn.err);
	INFO("agent: status " << turn.status << "\n--- out\n" << tail(turn.out) << "\n--- err\n" << tail(turn.err)
			      << w.auditSummary(id) << w.diagnostics());
	REQUIRE(turn.status == 0);
	REQUIRE(!id.empty());
	// The model's answer is what openclaw printed.
	CHECK_THAT(turn.out, Catch::Contains(kReply));

	// The stand-in got the chat completion request under the gateway's
	// name, with the key and the prompt, through gvm's proxy.
	std::vector<Json> requests = w.standInRequests();
	REQUIRE(requests.size() > before);
	std::optional<Json> completion;
	for (size_t i = before; i < requests.size(); ++i)
		if (requests[i]["method"] == "POST" && requests[i]["path"] == "/v1/chat/completions")
			completion = requests[i];
	REQUIRE(completion);
	CHECK((*completion)["host"] == kModelHost);
	CHECK((*completion)["authorization"] == std::string("Bearer ") + kApiKey);
	const Json &body = (*completion)["body"];
	REQUIRE(body.is_object());
	CHECK(body.value("model", "") == kModelId);
	CHECK_THAT(body.dump(), Catch::Contains(prompt));

	// The audit log has it: allowed by the preset's model-gateway rule,
	// with the upstream's status.
	auto allowed = w.record(id, [](const Json &r) {
		return r.value("kind", "") == "http" && r.value("host", "") == kModelHost &&
		       r.value("path", "") == "/v1/chat/completions";
	});
	REQUIRE(allowed);
	CHECK((*allowed)["action"] == "allow");
	CHECK((*allowed)["rule"] == "model-gateway");
	CHECK((*allowed)["method"] == "POST");
	CHECK((*allowed)["status"] == 200);
	CHECK((*allowed)["port"] == 443);
	CHECK((*allowed)["policy"] == "coding");
	CHECK((*allowed)["mode"] == "enforce");
	// Nothing of this sandbox was allowed by any other rule.
	for (const Json &r : w.recordsOf(id))
		if (r.value("action", "") == "allow")
			CHECK(r.value("rule", "") == "model-gateway");
	// The name was resolved by the proxy worker (from the host's end of
	// the fixture's veth pair), which alone dials upstreams.
	CHECK_THAT(readFile(w.dnsLog),
		   Catch::Contains(std::string("query[A] ") + kModelHost + " from " + w.up->hostAddress()));

	RunResult discard = w.ctl(workspace, {"discard", id});
	CHECK(discard.status == 0);
}

TEST_CASE("openclaw pointed at a shadow model provider is denied and audited", "[openclaw][system]")
{
	World &w = world();
	const std::string workspace = w.makeWorkspace("shadow");
	// api.openai.com: the stand-in would answer it (dnsmasq has the name,
	// its certificate the SAN); only gvm stands in the way.
	w.onboard(workspace, "https://" + std::string(kShadowHost) + "/v1");

	RunResult turn = w.launchOpenclaw(workspace, {"agent", "--local", "--agent", "main", "--message",
						     "Say hello to a shadow model.", "--timeout", "60"},
					  std::chrono::seconds(240));
	const std::string id = launchedId(turn.err);
	INFO("agent: status " << turn.status << "\n--- out\n" << tail(turn.out) << "\n--- err\n" << tail(turn.err)
			      << w.auditSummary(id) << w.diagnostics());
	REQUIRE(!id.empty());
	// The turn fails: no model answered.
	CHECK(turn.status != 0);
	CHECK_THAT(turn.out, !Catch::Contains(kReply));
	for (const Json &r : w.standInRequests())
		CHECK(r.value("host", "") != kShadowHost);

	// gvm's decision: openclaw honours the HTTPS_PROXY gvmctl set, and
	// the proxy answers its CONNECT to api.openai.com with 403, by the
	// preset's shadow-model rule (openclaw retries, each one denied).
	auto denied = w.record(id, [](const Json &r) { return r.value("host", "") == kShadowHost; });
	REQUIRE(denied);
	CHECK((*denied)["kind"] == "http");
	CHECK((*denied)["method"] == "CONNECT");
	CHECK((*denied)["port"] == 443);
	CHECK((*denied)["action"] == "deny");
	CHECK((*denied)["rule"] == "deny-shadow-models");
	CHECK((*denied)["status"] == 403);
	CHECK((*denied)["policy"] == "coding");
	CHECK((*denied)["bytes_out"] == 0);
	// Nothing of this sandbox was allowed.
	for (const Json &r : w.recordsOf(id))
		CHECK(r.value("action", "") == "deny");
	// The worker never even resolved the name: dnsmasq was not asked.
	CHECK_THAT(readFile(w.dnsLog), !Catch::Contains(std::string("query[A] ") + kShadowHost));

	RunResult discard = w.ctl(workspace, {"discard", id});
	CHECK(discard.status == 0);
}
