// SPDX-License-Identifier: Apache-2.0
#include "daemon/sandbox_manager.h"

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/java_keystore.h"
#include "common/log.h"
#include "common/rfc3339.h"
#include "common/scope_exit.h"
#include "daemon/isolation/cgroup.h"
#include "daemon/isolation/landlock.h"
#include "daemon/workspace_review.h"

namespace gvm::daemon {

namespace {
// How long a worker may take to hand over its last records after the agent exited.
constexpr uint64_t kWorkerDrainTimeoutMs = 2000;
} // namespace

namespace {

// Backlog of the explicit-proxy listening socket.
constexpr int kProxyListenBacklog = 511;

// What the agent's environment points at the proxy and at the sandbox's CA
// bundle. Tools differ in which one they read, so all of them are set.
constexpr const char *kProxyVariables[] = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
					   "http_proxy", "https_proxy", "all_proxy"};
constexpr const char *kCaBundleVariables[] = {"SSL_CERT_FILE",       "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
					      "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO",     "PIP_CERT",
					      "AWS_CA_BUNDLE"};
// Removed from the caller's environment: a NO_PROXY entry would let traffic
// skip the proxy.
constexpr const char *kRemovedVariables[] = {"NO_PROXY", "no_proxy", "GVM_SANDBOX"};

Error invalidParams(std::string what)
{
	return Error(ErrorDomain::Rpc, rpc::kInvalidParams, std::move(what));
}

Error notFound(std::string what)
{
	return Error(ErrorDomain::Rpc, rpc::kNotFound, std::move(what));
}

// params must be an object (or absent, when nothing is required).
Result<void> checkObject(const rpc::Json &params, bool allowNull)
{
	if (params.is_object() || (allowNull && params.is_null()))
		return {};
	return fail(invalidParams("params must be an object"));
}

const rpc::Json *member(const rpc::Json &params, const char *key)
{
	if (!params.is_object())
		return nullptr;
	auto it = params.find(key);
	return it == params.end() || it->is_null() ? nullptr : &*it;
}

// A string parameter; strings never carry NUL (argv, paths, environment).
Result<std::string> stringParam(const rpc::Json &params, const char *key, bool required,
				std::string fallback = {})
{
	const rpc::Json *v = member(params, key);
	if (!v) {
		if (required)
			return fail(invalidParams(std::string("\"") + key + "\" is required"));
		return fallback;
	}
	if (!v->is_string())
		return fail(invalidParams(std::string("\"") + key + "\" must be a string"));
	std::string s = v->get<std::string>();
	if (s.find('\0') != std::string::npos)
		return fail(invalidParams(std::string("\"") + key + "\" must not contain NUL"));
	return s;
}

Result<bool> boolParam(const rpc::Json &params, const char *key, bool fallback)
{
	const rpc::Json *v = member(params, key);
	if (!v)
		return fallback;
	if (!v->is_boolean())
		return fail(invalidParams(std::string("\"") + key + "\" must be true or false"));
	return v->get<bool>();
}

Result<std::vector<std::string>> stringListParam(const rpc::Json &params, const char *key, bool required)
{
	const rpc::Json *v = member(params, key);
	if (!v) {
		if (required)
			return fail(invalidParams(std::string("\"") + key + "\" is required"));
		return std::vector<std::string>();
	}
	if (!v->is_array())
		return fail(invalidParams(std::string("\"") + key + "\" must be an array of strings"));
	std::vector<std::string> out;
	for (const rpc::Json &e : *v) {
		if (!e.is_string())
			return fail(invalidParams(std::string("\"") + key + "\" must be an array of strings"));
		std::string s = e.get<std::string>();
		if (s.find('\0') != std::string::npos)
			return fail(invalidParams(std::string("\"") + key + "\" must not contain NUL"));
		out.push_back(std::move(s));
	}
	return out;
}

std::string envName(const std::string &entry)
{
	return entry.substr(0, entry.find('='));
}

// The caller's environment with the proxy and CA variables gvm owns
// replaced.
std::vector<std::string> agentEnvironment(const std::vector<std::string> &callerEnv, const SandboxInfo &info,
					  const std::string &caBundle)
{
	auto owned = [](const std::string &name) {
		for (const char *v : kProxyVariables)
			if (name == v)
				return true;
		for (const char *v : kCaBundleVariables)
			if (name == v)
				return true;
		for (const char *v : kRemovedVariables)
			if (name == v)
				return true;
		return false;
	};
	std::vector<std::string> env;
	for (const std::string &e : callerEnv)
		if (!owned(envName(e)))
			env.push_back(e);
	for (const char *v : kProxyVariables)
		env.push_back(std::string(v) + "=" + info.proxyUrl);
	for (const char *v : kCaBundleVariables)
		env.push_back(std::string(v) + "=" + caBundle);
	env.push_back("GVM_SANDBOX=" + info.id);
	return env;
}

// The explicit-proxy listening socket: made here, not by the worker, so
// that the port closes when the worker dies (gvmd keeps no copy).
Result<std::pair<UniqueFd, uint16_t>> makeProxyListener()
{
	UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (!fd)
		return fail(Error::fromErrno(errno, "creating the proxy socket"));
	sockaddr_in addr{};
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = 0;
	if (::bind(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) < 0)
		return fail(Error::fromErrno(errno, "binding the proxy socket to 127.0.0.1"));
	if (::listen(fd.get(), kProxyListenBacklog) < 0)
		return fail(Error::fromErrno(errno, "listening on the proxy socket"));
	socklen_t len = sizeof(addr);
	if (::getsockname(fd.get(), reinterpret_cast<sockaddr *>(&addr), &len) < 0)
		return fail(Error::fromErrno(errno, "reading the proxy port"));
	return std::make_pair(std::move(fd), ntohs(addr.sin_port));
}

// A new file of the sandbox's directory, world-readable (the agent runs
// as the caller, not as root).
Result<void> writePublicFile(const std::string &path, const std::string &content)
{
	UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
	if (!fd)
		return fail(Error::fromErrno(errno, "creating " + path));
	if (::fchmod(fd.get(), 0644) < 0)
		return fail(Error::fromErrno(errno, "setting the mode of " + path));
	size_t done = 0;
	while (done < content.size()) {
		ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(Error::fromErrno(errno, "writing " + path));
		done += static_cast<size_t>(n);
	}
	return {};
}

// The CA bundle the agent trusts: the host's roots, then the sandbox CA;
// and, unless javaPath is empty, the same as a Java keystore.
Result<void> writeCaBundle(const std::string &path, const std::string &sandboxCaPem, const std::string &javaPath)
{
	std::string bundle;
	if (auto roots = readFileBounded(kHostCaBundle, SIZE_MAX); roots) {
		bundle = std::move(*roots);
	} else {
		GVM_LOG(Daemon, Warning) << roots.error().message()
					 << ", ignoring (the sandbox CA bundle holds only the sandbox CA)";
	}
	if (!bundle.empty() && bundle.back() != '\n')
		bundle += '\n';
	const size_t rootsSize = bundle.size();
	bundle += sandboxCaPem;
	if (auto written = writePublicFile(path, bundle); !written || javaPath.empty())
		return written;
	const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
		std::chrono::system_clock::now().time_since_epoch());
	return writePublicFile(javaPath, javaKeystoreFromPem(std::string_view(bundle).substr(0, rootsSize),
							     sandboxCaPem, now.count()));
}

// RUNTIME/sandboxes, made on first use (0755: agents read their CA bundle
// there as themselves).
Result<void> makeSandboxesDirectory(const std::string &runtimeDir)
{
	for (const std::string &dir : {runtimeDir, runtimeDir + "/sandboxes"}) {
		if (::mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST)
			return fail(Error::fromErrno(errno, "creating " + dir));
	}
	struct stat st{};
	const std::string dir = runtimeDir + "/sandboxes";
	if (::lstat(dir.c_str(), &st) < 0)
		return fail(Error::fromErrno(errno, "checking " + dir));
	if (!S_ISDIR(st.st_mode))
		return fail(Error::fromErrno(ENOTDIR, dir));
	return {};
}

std::string baseName(const std::string &path)
{
	size_t slash = path.rfind('/');
	return slash == std::string::npos ? path : path.substr(slash + 1);
}

} // namespace

SandboxManager::SandboxManager(Loop &loop, RpcServer &server, AuditLog &audit, DecisionSubscribers &subscribers,
			       Config config)
	: loop_(loop), server_(server), audit_(audit), subscribers_(subscribers), config_(std::move(config))
{
}

SandboxManager::~SandboxManager()
{
	server_.setScreen(nullptr);
	shutdown();
}

std::string SandboxManager::screen(const PeerCredentials &peer) const
{
	// The control plane is out of every agent's reach: a client whose
	// network namespace is one of the sandboxes' is refused, whatever
	// its uid (gvmd's socket is hidden from them too).
	struct stat client{};
	const std::string path = "/proc/" + std::to_string(peer.pid) + "/ns/net";
	if (::stat(path.c_str(), &client) < 0)
		return {};
	for (const auto &[id, sandbox] : sandboxes_) {
		struct stat ns{};
		if (sandbox->network && ::fstat(sandbox->network->netnsFd(), &ns) == 0 && ns.st_ino == client.st_ino &&
		    ns.st_dev == client.st_dev)
			return "gvmd does not serve processes inside its sandboxes (sandbox " + id + ")";
	}
	return {};
}

void SandboxManager::registerMethods()
{
	server_.setScreen([this](const PeerCredentials &peer) { return screen(peer); });
	auto add = [this](const char *name, Result<rpc::Json> (SandboxManager::*method)(CallContext &, const rpc::Json &)) {
		server_.addMethod(name, [this, method](CallContext &ctx, const rpc::Json &params) {
			return (this->*method)(ctx, params);
		});
	};
	add("sandbox.launch", &SandboxManager::launch);
	add("sandbox.signal", &SandboxManager::signal);
	add("sandbox.list", &SandboxManager::list);
	add("sandbox.stop", &SandboxManager::stop);
	add("policy.reload", &SandboxManager::reload);
	add("decisions.subscribe", &SandboxManager::subscribe);
	add("hold.list", &SandboxManager::holdList);
	add("hold.answer", &SandboxManager::holdAnswer);
	add("workspace.diff", &SandboxManager::workspaceDiff);
	add("workspace.apply", &SandboxManager::workspaceApply);
	add("workspace.discard", &SandboxManager::workspaceDiscard);
}

size_t SandboxManager::count() const
{
	size_t n = 0;
	for (const auto &[id, sandbox] : sandboxes_)
		if (sandbox->state() != Sandbox::State::Starting)
			++n;
	return n;
}

Sandbox *SandboxManager::lookup(const std::string &id)
{
	auto it = sandboxes_.find(id);
	return it == sandboxes_.end() ? nullptr : it->second.get();
}

Result<Sandbox *> SandboxManager::visible(const PeerCredentials &caller, const std::string &id)
{
	Sandbox *sandbox = lookup(id);
	// Another user's sandbox is "not found", not "permission denied": its
	// existence is none of the caller's business.
	if (!sandbox || sandbox->state() == Sandbox::State::Starting || (caller.uid != 0 && sandbox->uid() != caller.uid))
		return fail(notFound("no sandbox '" + id + "'"));
	return sandbox;
}

std::string SandboxManager::newId() const
{
	for (;;) {
		uint8_t bytes[4];
		if (::getrandom(bytes, sizeof(bytes), 0) != static_cast<ssize_t>(sizeof(bytes))) {
			// getrandom() on 4 bytes cannot fail once the pool is
			// initialised; fall back to something unique anyway.
			uint32_t v = static_cast<uint32_t>(::getpid()) * 2654435761u ^ static_cast<uint32_t>(loop_.now());
			std::memcpy(bytes, &v, sizeof(bytes));
		}
		char hex[9];
		std::snprintf(hex, sizeof(hex), "%02x%02x%02x%02x", bytes[0], bytes[1], bytes[2], bytes[3]);
		if (!sandboxes_.count(hex) && !(spareNetwork_ && spareNetwork_->id() == hex) && networkInFlight_ != hex)
			return hex;
	}
}

Result<rpc::Json> SandboxManager::launch(CallContext &ctx, const rpc::Json &params)
{
	GVM_TRY_VOID(checkObject(params, false), "sandbox.launch");
	auto argv = stringListParam(params, "argv", true);
	if (!argv)
		return fail(std::move(argv).error());
	if (argv->empty() || (*argv)[0].empty())
		return fail(invalidParams("\"argv\" must name a command"));
	auto env = stringListParam(params, "env", false);
	if (!env)
		return fail(std::move(env).error());
	for (const std::string &e : *env)
		if (e.find('=') == std::string::npos || e[0] == '=')
			return fail(invalidParams("\"env\" entries must be NAME=VALUE, not '" + e + "'"));
	auto cwd = stringParam(params, "cwd", true);
	if (!cwd)
		return fail(std::move(cwd).error());
	if (cwd->empty() || (*cwd)[0] != '/')
		return fail(invalidParams("\"cwd\" must be an absolute path"));
	auto policyText = stringParam(params, "policy_text", true);
	if (!policyText)
		return fail(std::move(policyText).error());
	auto policyFile = stringParam(params, "policy_file", false, "policy");
	if (!policyFile)
		return fail(std::move(policyFile).error());
	auto cooperative = boolParam(params, "cooperative", false);
	if (!cooperative)
		return fail(std::move(cooperative).error());
	auto monitor = boolParam(params, "monitor", false);
	if (!monitor)
		return fail(std::move(monitor).error());
	auto tty = boolParam(params, "tty", false);
	if (!tty)
		return fail(std::move(tty).error());
	auto name = stringParam(params, "name", false, baseName((*argv)[0]));
	if (!name)
		return fail(std::move(name).error());
	if (name->size() > kMaxSandboxNameBytes)
		return fail(invalidParams("\"name\" is longer than " + std::to_string(kMaxSandboxNameBytes) + " bytes"));
	for (char c : *name)
		if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
			return fail(invalidParams("\"name\" must not contain control characters"));
	auto upstreamCa = stringParam(params, "upstream_ca_pem", false);
	if (!upstreamCa)
		return fail(std::move(upstreamCa).error());
	// The workspace (default: the working directory) and whether the
	// sandbox confines more than the network.
	auto workspace = stringParam(params, "workspace", false, *cwd);
	if (!workspace)
		return fail(std::move(workspace).error());
	if (workspace->empty() || (*workspace)[0] != '/')
		return fail(invalidParams("\"workspace\" must be an absolute path"));
	auto isolate = boolParam(params, "isolation", true);
	if (!isolate)
		return fail(std::move(isolate).error());
	if (*isolate && !*cooperative)
		if (std::string problem = workingDirectoryProblem(*cwd, *workspace); !problem.empty())
			return fail(invalidParams(problem));

	if (!*cooperative && ::geteuid() != 0)
		return fail(Error(ErrorDomain::Rpc, rpc::kServerError,
				  "sandbox mode needs gvmd to run as root (it creates network namespaces); "
				  "use --cooperative with an unprivileged gvmd"));
	if (ctx.fds.size() != 3)
		return fail(invalidParams("sandbox.launch needs exactly 3 file descriptors (stdin, stdout, stderr), got " +
					  std::to_string(ctx.fds.size())));

	// An unprivileged gvmd cannot become anyone else.
	const uid_t self = ::geteuid();
	if (self != 0 && ctx.peer.uid != self)
		return fail(Error(ErrorDomain::Rpc, rpc::kPermissionDenied,
				  "gvmd runs as uid " + std::to_string(self) + " and can launch only for that user"));

	size_t ofCaller = 0;
	for (const auto &[id, sandbox] : sandboxes_)
		if (sandbox->uid() == ctx.peer.uid)
			++ofCaller;
	if (ofCaller >= kMaxSandboxesPerUid)
		return fail(Error(ErrorDomain::Rpc, rpc::kServerError,
				  "too many sandboxes of this user (limit " + std::to_string(kMaxSandboxesPerUid) + ")"));
	if (sandboxes_.size() >= kMaxSandboxes)
		return fail(Error(ErrorDomain::Rpc, rpc::kServerError,
				  "too many sandboxes (limit " + std::to_string(kMaxSandboxes) + ")"));

	// The agent gets the caller's supplementary groups and umask, read
	// from the kernel, never from the request.
	auto caller = inspectCaller(ctx.peer.pid, ctx.peer.uid);
	if (!caller)
		return fail(std::move(caller).error());

	SandboxInfo info;
	// A network made ahead (namespace, veth, nftables) gives the sandbox
	// its id.
	std::unique_ptr<net::SandboxNetwork> network;
	if (!*cooperative)
		network = std::move(spareNetwork_);
	info.id = network ? network->id() : newId();
	info.name = *name;
	info.uid = ctx.peer.uid;
	info.gid = ctx.peer.gid;
	info.command = *argv;
	info.cooperative = *cooperative;
	info.dir = config_.runtimeDir + "/sandboxes/" + info.id;
	info.caBundle = info.dir + "/ca-bundle.pem";
	if (!info.cooperative)
		info.javaKeystore = info.dir + "/java-cacerts";
	const std::string id = info.id;

	// Each step that leaves something behind registers its undo; all of
	// it runs unless the launch gets as far as waiting for the worker.
	Rollback rollback;
	GVM_TRY_VOID(makeSandboxesDirectory(config_.runtimeDir), "launching sandbox " + id);
	if (::mkdir(info.dir.c_str(), 0755) < 0)
		return fail(Error::fromErrno(errno, "creating " + info.dir));
	rollback.add([dir = info.dir] {
		std::error_code ec;
		std::filesystem::remove_all(dir, ec);
	});
	// Readable by the agent whatever gvmd's umask.
	if (::chmod(info.dir.c_str(), 0755) < 0)
		return fail(Error::fromErrno(errno, "setting the mode of " + info.dir));

	std::vector<WorkerProcess::Listener> listeners;
	if (*cooperative) {
		auto listener = makeProxyListener();
		if (!listener)
			return fail(std::move(listener).error().wrap("launching sandbox " + id));
		info.proxyUrl = "http://127.0.0.1:" + std::to_string(listener->second);
		listeners.emplace_back("explicit", std::move(listener->first));
	} else {
		if (!network) {
			auto created = createNetwork(id);
			if (!created)
				return fail(std::move(created).error().wrap("creating the network of sandbox " + id));
			network = std::move(*created);
		}
		auto transparent = network->transparentListener();
		if (!transparent)
			return fail(std::move(transparent).error().wrap("launching sandbox " + id));
		auto dnsUdp = network->dnsUdpSocket();
		if (!dnsUdp)
			return fail(std::move(dnsUdp).error().wrap("launching sandbox " + id));
		auto dnsTcp = network->dnsTcpListener();
		if (!dnsTcp)
			return fail(std::move(dnsTcp).error().wrap("launching sandbox " + id));
		listeners.emplace_back("transparent", std::move(*transparent));
		listeners.emplace_back("dns-udp", std::move(*dnsUdp));
		listeners.emplace_back("dns-tcp", std::move(*dnsTcp));
		info.hostAddress = network->hostAddress();
		info.sandboxAddress = network->sandboxAddress();
		// Tools that honour proxy variables use CONNECT; the rest is
		// redirected there anyway.
		info.proxyUrl = "http://" + info.hostAddress + ":" + std::to_string(config_.network.transparentPort);
		// The agent's resolver: the worker (any address on port 53
		// reaches it; this one says where it is).
		GVM_TRY_VOID(writePublicFile(info.dir + "/resolv.conf",
						 "# gvm sandbox " + id + ": DNS is answered by its policy\nnameserver " +
							 info.hostAddress + "\noptions edns0\n"),
			     "launching sandbox " + id);
	}

	auto sandbox = std::make_unique<Sandbox>(loop_, std::move(info), ctx.connection.id());
	sandbox->network = std::move(network);
	// A worker started ahead (it has exec'd, read the host's trust store
	// and confined itself) takes most of the start-up off the launch; its
	// listening sockets come with worker.configure.
	WorkerProcess::Callbacks workerCallbacks{
		[this, id](const std::string &method, rpc::Json &p) { onWorkerNotification(id, method, p); },
		[this, id](int64_t status, int sig) { onWorkerExit(id, status, sig); },
		[this, id](AuditRecord &record) { onWorkerDecision(id, record); }};
	std::unique_ptr<WorkerProcess> worker = takeSpareWorker();
	if (worker) {
		worker->setCallbacks(std::move(workerCallbacks));
	} else {
		auto spawned = WorkerProcess::spawn(loop_, config_.workerPath, std::move(workerCallbacks),
						    config_.workerLogLevel);
		if (!spawned)
			return fail(std::move(spawned).error().wrap("launching sandbox " + id));
		worker = std::move(*spawned);
	}
	const pid_t workerPid = worker->pid();
	sandbox->setWorker(std::move(worker));

	for (size_t i = 0; i < 3; ++i)
		sandbox->stdio[i] = std::move(ctx.fds[i]);
	sandbox->caller = std::move(*caller);
	sandbox->env = std::move(*env);
	sandbox->cwd = std::move(*cwd);
	sandbox->tty = *tty;
	sandbox->isolate = !*cooperative && *isolate;
	sandbox->workspace = std::move(*workspace);

	std::string upstreamPem = config_.upstreamCaPem;
	if (!upstreamPem.empty() && upstreamPem.back() != '\n' && !upstreamCa->empty())
		upstreamPem += '\n';
	upstreamPem += *upstreamCa;
	rpc::Json configure = {
		{"sandbox", id},
		{"uid", ctx.peer.uid},
		{"policy_text", *policyText},
		{"policy_file", *policyFile},
		{"monitor", *monitor},
		{"upstream_ca_pem", upstreamPem},
	};
	if (!*cooperative)
		configure["dns_upstream"] = config_.dnsUpstream;
	if (::geteuid() == 0)
		configure["sandbox_pool"] = config_.network.pool;

	// The answer waits for the worker and the agent's exec.
	sandbox->launch = ctx.defer();
	WorkerProcess *w = sandbox->worker();
	sandboxes_[id] = std::move(sandbox);
	rollback.release();
	GVM_LOG(Daemon, Info) << "sandbox " << id << ": launching '" << (*argv)[0] << "' for uid " << ctx.peer.uid
			      << " (pid " << ctx.peer.pid << "), worker " << workerPid;
	rpc::Json names = rpc::Json::array();
	std::vector<UniqueFd> fds;
	for (auto &[kind, fd] : listeners) {
		names.push_back(kind);
		fds.push_back(std::move(fd));
	}
	configure["listeners"] = std::move(names);
	// gvmd keeps no copy of the listening sockets (they go with the
	// message): once the worker is gone, nothing listens there.
	w->call(
		"worker.configure", configure, [this, id](Result<rpc::Json> r) { onConfigured(id, std::move(r)); },
		std::move(fds));
	// The next launch's worker (and network) start now, after this one.
	usedSandboxMode_ = usedSandboxMode_ || !*cooperative;
	loop_.post([this] { prepareSpares(); });
	return rpc::Json();
}

bool SandboxManager::ensurePool()
{
	if (pool_)
		return true;
	auto pool = net::AddressPool::create(config_.network.pool);
	if (!pool) {
		GVM_LOG(Daemon, Warning) << pool.error().message() << " (the sandbox address pool)";
		return false;
	}
	pool_ = std::make_shared<net::AddressPool>(std::move(*pool));
	return true;
}

Result<std::unique_ptr<net::SandboxNetwork>> SandboxManager::createNetwork(const std::string &id)
{
	if (!ensurePool())
		return fail(Error::fromErrno(EINVAL, "reading the sandbox address pool " + config_.network.pool));
	return net::SandboxNetwork::create(id, config_.network, *pool_);
}

std::unique_ptr<WorkerProcess> SandboxManager::takeSpareWorker()
{
	std::unique_ptr<WorkerProcess> spare = std::move(spare_);
	if (spare && !spare->running())
		spare.reset();
	return spare;
}

void SandboxManager::prepareSpares()
{
	if (stopping_)
		return;
	// The next sandbox's network too, once sandbox mode has been used: a
	// namespace and veth pair nobody uses yet (gvm<id>, its id taken).
	// Made on a thread of libuv's pool: setns() there moves only that
	// thread, and the loop goes on serving the launch that asked.
	if (!spareNetwork_ && !networkInFlight_ && usedSandboxMode_ && ::geteuid() == 0 && ensurePool()) {
		struct Work {
			uv_work_t req{};
			SandboxManager *self;
			std::weak_ptr<bool> alive;
			std::string id;
			net::NetworkConfig config;
			std::shared_ptr<net::AddressPool> pool; // outlives result
			Result<std::unique_ptr<net::SandboxNetwork>> result = std::unique_ptr<net::SandboxNetwork>();
		};
		auto *work = new Work{{}, this, alive_, newId(), config_.network, pool_};
		work->req.data = work;
		networkInFlight_ = work->id;
		int r = uv_queue_work(
			loop_.get(), &work->req,
			[](uv_work_t *req) {
				auto *w = static_cast<Work *>(req->data);
				w->result = net::SandboxNetwork::create(w->id, w->config, *w->pool);
			},
			[](uv_work_t *req, int) {
				std::unique_ptr<Work> w(static_cast<Work *>(req->data));
				if (w->alive.expired())
					return; // the manager is gone: the network goes too
				SandboxManager *self = w->self;
				self->networkInFlight_.reset();
				if (!w->result) {
					GVM_LOG(Daemon, Warning) << w->result.error().message()
								 << " (a network made ahead), ignoring";
					return;
				}
				if (!self->stopping_ && !self->spareNetwork_)
					self->spareNetwork_ = std::move(*w->result);
			});
		if (r < 0) {
			networkInFlight_.reset();
			delete work;
		}
	}
	if (spare_)
		return;
	auto spawned = WorkerProcess::spawn(
		loop_, config_.workerPath,
		{[](const std::string &, const rpc::Json &) {},
		 [this](int64_t status, int sig) {
			 GVM_LOG(Daemon, Warning) << "the spare proxy worker exited ("
						  << (sig > 0 ? "signal " + std::to_string(sig) : "status " + std::to_string(status))
						  << "); the next launch starts its own";
			 // Inside its callback: destroyed later.
			 if (spare_)
				 loop_.deleteLater(std::move(spare_));
		 }},
		config_.workerLogLevel);
	if (!spawned) {
		GVM_LOG(Daemon, Warning) << spawned.error().message() << " (a spare proxy worker), ignoring";
		return;
	}
	spare_ = std::move(*spawned);
}

void SandboxManager::onConfigured(const std::string &id, Result<rpc::Json> result)
{
	Sandbox *sandbox = lookup(id);
	if (!sandbox || sandbox->state() != Sandbox::State::Starting)
		return;
	if (!result) {
		// A policy error is the caller's to fix and already names
		// file:line:column; anything else is the worker's failure.
		Error error = std::move(result).error();
		if (error.code() != rpc::kPolicyError && error.code() != rpc::kInvalidParams)
			error = Error(ErrorDomain::Rpc, rpc::kServerError,
				      "the proxy worker of sandbox " + id + " failed: " + error.message());
		abortLaunch(id, std::move(error));
		return;
	}
	if (!server_.connection(sandbox->launch.connectionId())) {
		abortLaunch(id, Error(ErrorDomain::Rpc, rpc::kServerError, "the launching client went away"));
		return;
	}
	sandbox->updatePolicy(*result);
	if (sandbox->policy().mode.empty())
		sandbox->updatePolicy({{"mode", "enforce"}});

	const SandboxInfo &info = sandbox->info();
	std::string caPem;
	if (auto it = result->find("ca_pem"); it != result->end() && it->is_string())
		caPem = it->get<std::string>();
	if (caPem.empty())
		GVM_LOG(Daemon, Warning) << "sandbox " << id << ": the proxy worker sent no CA certificate, ignoring "
					 << "(the agent's CA bundle holds only the host's roots)";
	if (auto r = writeCaBundle(info.caBundle, caPem, info.javaKeystore); !r) {
		abortLaunch(id, std::move(r).error().wrap("writing the sandbox's CA bundle"));
		return;
	}

	AgentSpec spec;
	spec.argv = info.command;
	spec.env = agentEnvironment(sandbox->env, info, sandbox->network ? kSystemCaBundle : info.caBundle);
	spec.cwd = sandbox->cwd;
	spec.uid = info.uid;
	spec.gid = info.gid;
	spec.groups = sandbox->caller.groups;
	spec.umask = sandbox->caller.umask;
	spec.tty = sandbox->tty;
	spec.stdio = std::move(sandbox->stdio);
	spec.mountNamespace = hostMountNamespace();
	sandbox->env.clear();
	if (sandbox->network) {
		AgentSpec::Isolation iso;
		iso.netns.reset(::fcntl(sandbox->network->netnsFd(), F_DUPFD_CLOEXEC, 3));
		if (!iso.netns) {
			abortLaunch(id, Error::fromErrno(errno, "passing the sandbox's network namespace on"));
			return;
		}
		iso.caBundle = info.caBundle;
		iso.javaKeystore = info.javaKeystore;
		iso.resolvConf = info.dir + "/resolv.conf";
		iso.hidden = config_.hiddenDirs;
		iso.hostname = "gvm-" + id;
		if (sandbox->isolate) {
			auto prepared = prepareSandboxIsolation(*sandbox, *result);
			if (!prepared) {
				abortLaunch(id, std::move(prepared).error());
				return;
			}
			iso.view = std::move(prepared->view);
			iso.landlock = std::move(prepared->landlock);
			iso.seccomp = std::move(prepared->seccomp);
			if (prepared->cgroup)
				for (const UniqueFd &fd : prepared->cgroup->procsFds())
					iso.cgroupProcs.emplace_back(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3));
			sandbox->cgroup = std::move(prepared->cgroup);
			sandbox->upperDir = std::move(prepared->upperDir);
		}
		spec.isolation = std::move(iso);
	}

	auto agent = AgentProcess::start(loop_, std::move(spec),
					 {[this, id](Result<void> r) { onAgentStarted(id, std::move(r)); },
					  [this, id](int status, int sig) { onAgentExit(id, status, sig); }});
	if (!agent) {
		abortLaunch(id, std::move(agent).error());
		return;
	}
	sandbox->setAgent(std::move(*agent));
}

Result<PreparedIsolation> SandboxManager::prepareSandboxIsolation(Sandbox &sandbox, const rpc::Json &configured)
{
	auto described = configured.find("isolation");
	if (described == configured.end())
		return fail(Error::internal("the proxy worker did not describe the policy's isolation sections"));
	auto policy = parseIsolationPolicy(*described);
	if (!policy)
		return fail(std::move(policy).error());
	const SandboxInfo &info = sandbox.info();
	IsolationRequest request;
	request.id = info.id;
	request.workspace = sandbox.workspace;
	request.uid = info.uid;
	request.gid = info.gid;
	request.sandboxDir = info.dir;
	request.stateDir = config_.stateDir;
	request.gvmdHidden = config_.hiddenDirs;
	request.maskMounts = config_.maskMounts;
	request.policy = std::move(*policy);
	auto prepared = prepareIsolation(request, seccompFilters_);
	if (!prepared)
		return fail(std::move(prepared).error().wrap("isolating sandbox " + info.id));
	if (!prepared->upperDir.empty())
		GVM_TRY_VOID(writeSandboxRecord(sandbox, false), "recording sandbox " + info.id);
	return prepared;
}

void SandboxManager::onAgentStarted(const std::string &id, Result<void> result)
{
	Sandbox *sandbox = lookup(id);
	if (!sandbox)
		return;
	if (!result) {
		abortLaunch(id, std::move(result).error());
		return;
	}
	sandbox->markStarted();
	if (!sandbox->worker() || !sandbox->worker()->running()) {
		GVM_LOG(Daemon, Warning) << "sandbox " << id
					 << ": the proxy worker died while the agent started; the agent has no network";
		sandbox->setState(Sandbox::State::WorkerDead);
	}
	const SandboxInfo &info = sandbox->info();
	const pid_t pid = sandbox->agent()->pid();
	GVM_LOG(Daemon, Info) << "sandbox " << id << ": agent " << pid << " started as uid " << info.uid << ", proxy "
			      << info.proxyUrl << ", policy " << sandbox->policy().name << " ("
			      << sandbox->policy().mode << ")";
	sandbox->launch.result({
		{"sandbox", id},
		{"name", info.name},
		{"pid", static_cast<int64_t>(pid)},
		{"proxy", info.proxyUrl},
		{"ca_bundle", info.caBundle},
		{"policy", sandbox->policy().name},
		{"sha256", sandbox->policy().sha256},
		{"mode", sandbox->policy().mode},
	});
	sandbox->launch = Responder();
}

void SandboxManager::onAgentExit(const std::string &id, int status, int sig)
{
	Sandbox *sandbox = lookup(id);
	if (!sandbox)
		return;
	const int exitCode = sig > 0 ? 128 + sig : status;
	GVM_LOG(Daemon, Info) << "sandbox " << id << ": agent exited"
			      << (sig > 0 ? " on signal " + std::to_string(sig) : " with status " + std::to_string(status));
	server_.notify(sandbox->connection(), "sandbox.exited",
		       {{"sandbox", id},
			{"status", sig > 0 ? rpc::Json() : rpc::Json(status)},
			{"signal", sig > 0 ? rpc::Json(sig) : rpc::Json()},
			{"exit_code", exitCode}});
	// Records the worker sent just before the agent exited may still be
	// on their way: a ping is answered after them (one ordered channel),
	// so they reach the audit log before the worker is stopped. Bounded:
	// a worker that does not answer is stopped anyway.
	if (WorkerProcess *worker = sandbox->worker(); worker && worker->running()) {
		// Whichever comes first; the second finds the sandbox gone. The
		// timer goes with the sandbox, as does the pending ping when gvmd
		// stops first.
		auto finish = [this, id] { remove(id); };
		sandbox->drainTimer = std::make_unique<Timer>(loop_, finish);
		sandbox->drainTimer->start(kWorkerDrainTimeoutMs);
		worker->call("worker.ping", rpc::Json::object(), [finish](Result<rpc::Json>) { finish(); });
		return;
	}
	remove(id);
}

void SandboxManager::onWorkerNotification(const std::string &id, const std::string &method, rpc::Json &params)
{
	Sandbox *sandbox = lookup(id);
	if (!sandbox)
		return;
	if (method == "decision") {
		auto in = params.find("record");
		if (in == params.end() || !in->is_object()) {
			GVM_LOG(Daemon, Warning) << "sandbox " << id << ": a decision without a record, ignoring";
			return;
		}
		AuditRecord record = AuditRecord::fromJson(*in);
		onWorkerDecision(id, record);
	} else if (method == "hold.pending") {
		if (auto r = sandbox->addHold(params); !r)
			GVM_LOG(Daemon, Warning) << "sandbox " << id << ": " << r.error().message() << ", ignoring";
	} else if (method == "hold.resolved") {
		if (const rpc::Json *rid = member(params, "request_id"); rid && rid->is_string())
			sandbox->resolveHold(rid->get<std::string>());
	} else if (method == "stats") {
		sandbox->updateStats(params);
	} else {
		GVM_LOG(Daemon, Debug) << "sandbox " << id << ": unknown worker notification '" << method << "', ignoring";
	}
}

void SandboxManager::onWorkerDecision(const std::string &id, AuditRecord &record)
{
	Sandbox *sandbox = lookup(id);
	if (!sandbox)
		return;
	// The chain fields and the time are gvmd's to set; the sandbox and
	// owner are what gvmd knows, not what the worker says.
	for (const char *key : {"v", "seq", "ts", "prev", "hash"})
		record.erase(key);
	record.setString("sandbox", id);
	record.setNumber("uid", sandbox->uid());
	if (!record.contains("policy"))
		record.setString("policy", sandbox->policy().name);
	if (!record.contains("policy_sha256"))
		record.setString("policy_sha256", sandbox->policy().sha256);
	sandbox->countDecision();
	const std::string &line = audit_.append(std::move(record));
	subscribers_.publish(sandbox->uid(), id, line);
}

void SandboxManager::onWorkerExit(const std::string &id, int64_t status, int sig)
{
	Sandbox *sandbox = lookup(id);
	if (!sandbox || sandbox->state() != Sandbox::State::Running)
		return; // a launch in progress fails through its pending call
	// Fail closed: gvmd holds no copy of the listening socket, so the
	// agent's proxy port now refuses connections. The agent keeps running
	// without network; its owner decides what to do.
	GVM_LOG(Daemon, Warning) << "sandbox " << id << ": the proxy worker "
				 << (sandbox->worker() ? sandbox->worker()->pid() : 0) << " died"
				 << (sig ? " on signal " + std::to_string(sig) : " with status " + std::to_string(status))
				 << " while the agent runs; the agent has no network now";
	sandbox->setState(Sandbox::State::WorkerDead);
	sandbox->clearHolds();
}

void SandboxManager::abortLaunch(const std::string &id, Error error)
{
	Sandbox *sandbox = lookup(id);
	if (!sandbox)
		return;
	GVM_LOG(Daemon, Notice) << "sandbox " << id << ": launch failed: " << error.message();
	sandbox->launch.error(std::move(error));
	remove(id);
}

void SandboxManager::remove(const std::string &id)
{
	auto it = sandboxes_.find(id);
	if (it == sandboxes_.end())
		return;
	std::error_code ec;
	std::filesystem::remove_all(it->second->info().dir, ec);
	if (ec)
		GVM_LOG(Daemon, Warning) << "removing " << it->second->info().dir << ": " << ec.message() << ", ignoring";
	// An overlay workspace's changes wait for the user; a layer the agent
	// left empty goes now.
	if (!it->second->upperDir.empty()) {
		Result<void> r = hasPendingChanges(config_.stateDir, id) ? writeSandboxRecord(*it->second, true)
									 : discardWorkspaceChanges(config_.stateDir, id);
		if (!r)
			GVM_LOG(Daemon, Warning) << "sandbox " << id << ": " << r.error().message() << ", ignoring";
		else if (hasPendingChanges(config_.stateDir, id))
			GVM_LOG(Daemon, Info) << "sandbox " << id << ": workspace changes kept for `gvmctl diff " << id
					      << "`";
	}
	// We may be inside one of the sandbox's own callbacks (its worker's
	// or its agent's): destroy it afterwards. Destroying it kills and
	// reaps the worker.
	loop_.deleteLater(std::move(it->second));
	sandboxes_.erase(it);
}

void SandboxManager::shutdown()
{
	for (auto &[id, sandbox] : sandboxes_) {
		if (AgentProcess *agent = sandbox->agent(); agent && agent->running()) {
			GVM_LOG(Daemon, Info) << "sandbox " << id << ": gvmd is stopping, sending SIGTERM to agent "
					      << agent->pid();
			if (auto r = agent->signalGroup(SIGTERM); !r)
				GVM_LOG(Daemon, Warning) << "sandbox " << id << ": " << r.error().message() << ", ignoring";
		}
		sandbox->launch.error(Error(ErrorDomain::Rpc, rpc::kServerError, "gvmd is stopping"));
		std::error_code ec;
		std::filesystem::remove_all(sandbox->info().dir, ec);
	}
	// Not inside any sandbox's callback here: destroying them now kills
	// and reaps their workers.
	sandboxes_.clear();
	stopping_ = true;
	spare_.reset();
	spareNetwork_.reset();
}

Result<rpc::Json> SandboxManager::signal(CallContext &ctx, const rpc::Json &params)
{
	GVM_TRY_VOID(checkObject(params, false), "sandbox.signal");
	auto id = stringParam(params, "sandbox", true);
	if (!id)
		return fail(std::move(id).error());
	const rpc::Json *sig = member(params, "signal");
	if (!sig || !sig->is_number_integer() || sig->get<int64_t>() < 1 || sig->get<int64_t>() >= NSIG)
		return fail(invalidParams("\"signal\" must be a signal number from 1 to " + std::to_string(NSIG - 1)));
	auto sandbox = visible(ctx.peer, *id);
	if (!sandbox)
		return fail(std::move(sandbox).error());
	GVM_TRY_VOID((*sandbox)->signal(static_cast<int>(sig->get<int64_t>())), "signalling sandbox " + *id);
	return rpc::Json{{"sandbox", *id}};
}

Result<rpc::Json> SandboxManager::list(CallContext &ctx, const rpc::Json &params)
{
	GVM_TRY_VOID(checkObject(params, true), "sandbox.list");
	auto all = boolParam(params, "all", false);
	if (!all)
		return fail(std::move(all).error());
	// A user lists their own sandboxes; root lists its own, or with "all"
	// everyone's.
	const bool everyone = ctx.peer.uid == 0 && *all;
	rpc::Json out = rpc::Json::array();
	for (const auto &[id, sandbox] : sandboxes_) {
		if (sandbox->state() == Sandbox::State::Starting)
			continue;
		if (!everyone && sandbox->uid() != ctx.peer.uid)
			continue;
		out.push_back(sandbox->describe());
	}
	// With "all": also sandboxes that ended and left workspace changes.
	if (*all)
		for (const SandboxRecord &record : listSandboxRecords(config_.stateDir)) {
			if (sandboxes_.count(record.id) || !record.ended)
				continue;
			if (ctx.peer.uid != 0 && record.uid != ctx.peer.uid)
				continue;
			rpc::Json entry = record.toJson();
			entry["sandbox"] = record.id;
			entry["state"] = "ended";
			entry["pending_changes"] = hasPendingChanges(config_.stateDir, record.id);
			out.push_back(std::move(entry));
		}
	return rpc::Json{{"sandboxes", std::move(out)}};
}

Result<void> SandboxManager::writeSandboxRecord(const Sandbox &sandbox, bool ended)
{
	const SandboxInfo &info = sandbox.info();
	SandboxRecord record;
	record.id = info.id;
	record.name = info.name;
	record.uid = info.uid;
	record.gid = info.gid;
	record.workspace = sandbox.workspace;
	record.command = info.command;
	record.started = sandbox.describe().value("started", "");
	record.ended = ended;
	return daemon::writeSandboxRecord(config_.stateDir, record);
}

Result<SandboxRecord> SandboxManager::reviewable(CallContext &ctx, const rpc::Json &params, const char *method,
						 bool mustHaveEnded, Reviewer *reviewer)
{
	GVM_TRY_VOID(checkObject(params, false), method);
	auto id = stringParam(params, "sandbox", true);
	if (!id)
		return fail(std::move(id).error());
	if (!net::isSandboxId(*id))
		return fail(notFound("no sandbox '" + *id + "'"));
	auto record = readSandboxRecord(config_.stateDir, *id);
	// Another user's changes are "not found", like their sandboxes.
	if (!record || (ctx.peer.uid != 0 && record->uid != ctx.peer.uid))
		return fail(notFound("sandbox '" + *id + "' has no workspace changes"));
	if (mustHaveEnded && sandboxes_.count(*id))
		return fail(Error(ErrorDomain::Rpc, rpc::kServerError,
				  "sandbox " + *id + " is still running; stop it first (`gvmctl stop " + *id + "`)"));
	// The work runs as the sandbox's owner (root reviewing another user's
	// sandbox included): its files, its workspace.
	reviewer->uid = record->uid;
	reviewer->gid = record->gid;
	if (record->uid == ctx.peer.uid) {
		auto caller = inspectCaller(ctx.peer.pid, ctx.peer.uid);
		if (!caller)
			return fail(std::move(caller).error());
		reviewer->groups = caller->groups;
	} else {
		reviewer->groups = {record->gid};
	}
	return record;
}

Result<rpc::Json> SandboxManager::workspaceDiff(CallContext &ctx, const rpc::Json &params)
{
	Reviewer reviewer;
	auto record = reviewable(ctx, params, "workspace.diff", false, &reviewer);
	if (!record)
		return fail(std::move(record).error());
	auto patch = boolParam(params, "patch", false);
	if (!patch)
		return fail(std::move(patch).error());
	auto out = listWorkspaceChanges(config_.stateDir, *record, reviewer, *patch);
	if (!out)
		return fail(std::move(out).error());
	(*out)["sandbox"] = record->id;
	(*out)["workspace"] = record->workspace;
	return out;
}

Result<rpc::Json> SandboxManager::workspaceApply(CallContext &ctx, const rpc::Json &params)
{
	Reviewer reviewer;
	auto record = reviewable(ctx, params, "workspace.apply", true, &reviewer);
	if (!record)
		return fail(std::move(record).error());
	auto paths = stringListParam(params, "paths", false);
	if (!paths)
		return fail(std::move(paths).error());
	auto out = applyWorkspaceChanges(config_.stateDir, *record, reviewer, *paths);
	if (!out)
		return fail(std::move(out).error());
	GVM_LOG(Daemon, Info) << "sandbox " << record->id << ": uid " << ctx.peer.uid << " applied "
			      << (*out)["applied"].size() << " change(s) to " << record->workspace << ", "
			      << (*out)["refused"].size() << " refused";
	if (!hasPendingChanges(config_.stateDir, record->id))
		if (auto r = discardWorkspaceChanges(config_.stateDir, record->id); !r)
			GVM_LOG(Daemon, Warning) << r.error().message() << ", ignoring";
	(*out)["sandbox"] = record->id;
	(*out)["workspace"] = record->workspace;
	return out;
}

Result<rpc::Json> SandboxManager::workspaceDiscard(CallContext &ctx, const rpc::Json &params)
{
	Reviewer reviewer;
	auto record = reviewable(ctx, params, "workspace.discard", true, &reviewer);
	if (!record)
		return fail(std::move(record).error());
	GVM_TRY_VOID(discardWorkspaceChanges(config_.stateDir, record->id), "workspace.discard");
	GVM_LOG(Daemon, Info) << "sandbox " << record->id << ": uid " << ctx.peer.uid << " discarded its workspace changes";
	return rpc::Json{{"sandbox", record->id}, {"discarded", true}};
}

Result<rpc::Json> SandboxManager::stop(CallContext &ctx, const rpc::Json &params)
{
	GVM_TRY_VOID(checkObject(params, false), "sandbox.stop");
	auto id = stringParam(params, "sandbox", true);
	if (!id)
		return fail(std::move(id).error());
	auto sandbox = visible(ctx.peer, *id);
	if (!sandbox)
		return fail(std::move(sandbox).error());
	GVM_TRY_VOID((*sandbox)->stop(), "stopping sandbox " + *id);
	GVM_LOG(Daemon, Info) << "sandbox " << *id << ": stopping at the request of uid " << ctx.peer.uid;
	return rpc::Json{{"sandbox", *id}, {"stopping", true}};
}

Result<rpc::Json> SandboxManager::reload(CallContext &ctx, const rpc::Json &params)
{
	GVM_TRY_VOID(checkObject(params, false), "policy.reload");
	auto id = stringParam(params, "sandbox", true);
	if (!id)
		return fail(std::move(id).error());
	auto text = stringParam(params, "policy_text", true);
	if (!text)
		return fail(std::move(text).error());
	auto file = stringParam(params, "policy_file", false, "policy");
	if (!file)
		return fail(std::move(file).error());
	auto sandbox = visible(ctx.peer, *id);
	if (!sandbox)
		return fail(std::move(sandbox).error());
	if ((*sandbox)->state() == Sandbox::State::WorkerDead || !(*sandbox)->worker())
		return fail(Error(ErrorDomain::Rpc, rpc::kServerError, "the proxy worker of sandbox " + *id + " is dead"));

	Responder responder = ctx.defer();
	const std::string sid = *id;
	(*sandbox)->worker()->call("policy.reload", {{"policy_text", *text}, {"policy_file", *file}},
				   [this, sid, responder](Result<rpc::Json> r) mutable {
					   if (!r) {
						   responder.error(std::move(r).error());
						   return;
					   }
					   Sandbox *sb = lookup(sid);
					   if (sb)
						   sb->updatePolicy(*r);
					   rpc::Json answer = *r;
					   if (!answer.is_object())
						   answer = rpc::Json::object();
					   answer["sandbox"] = sid;
					   if (sb && !answer.contains("mode"))
						   answer["mode"] = sb->policy().mode;
					   if (sb)
						   GVM_LOG(Daemon, Info) << "sandbox " << sid << ": policy reloaded, "
									 << sb->policy().name << " " << sb->policy().sha256;
					   responder.result(std::move(answer));
				   });
	return rpc::Json();
}

Result<rpc::Json> SandboxManager::subscribe(CallContext &ctx, const rpc::Json &params)
{
	GVM_TRY_VOID(checkObject(params, true), "decisions.subscribe");
	auto id = stringParam(params, "sandbox", false);
	if (!id)
		return fail(std::move(id).error());
	if (!id->empty()) {
		if (auto sandbox = visible(ctx.peer, *id); !sandbox)
			return fail(std::move(sandbox).error());
	}
	subscribers_.add(ctx.connection.id(), ctx.peer.uid, *id);
	return rpc::Json{{"subscribed", true}};
}

Result<rpc::Json> SandboxManager::holdList(CallContext &ctx, const rpc::Json &params)
{
	GVM_TRY_VOID(checkObject(params, true), "hold.list");
	const auto now = std::chrono::system_clock::now();
	rpc::Json out = rpc::Json::array();
	for (auto &[id, sandbox] : sandboxes_) {
		if (sandbox->state() == Sandbox::State::Starting || (ctx.peer.uid != 0 && sandbox->uid() != ctx.peer.uid))
			continue;
		for (const PendingHold &hold : sandbox->pendingHolds()) {
			auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(hold.expires - now);
			out.push_back({
				{"request_id", hold.requestId},
				{"sandbox", id},
				{"method", hold.method},
				{"host", hold.host},
				{"port", hold.port},
				{"path", hold.path},
				{"rule", hold.rule},
				{"expires", rfc3339(hold.expires, TimePrecision::Seconds)},
				{"remaining_ms", std::max<int64_t>(0, remaining.count())},
			});
		}
	}
	return rpc::Json{{"pending", std::move(out)}};
}

Result<rpc::Json> SandboxManager::holdAnswer(CallContext &ctx, const rpc::Json &params)
{
	GVM_TRY_VOID(checkObject(params, false), "hold.answer");
	auto requestId = stringParam(params, "request_id", true);
	if (!requestId)
		return fail(std::move(requestId).error());
	const rpc::Json *approve = member(params, "approve");
	if (!approve || !approve->is_boolean())
		return fail(invalidParams("\"approve\" must be true or false"));
	const bool approved = approve->get<bool>();

	// "<sandbox id>-<n>" names its sandbox.
	const std::string rid = *requestId;
	const size_t dash = rid.find('-');
	Result<Sandbox *> sandbox = notFound("no pending request '" + rid + "'");
	if (dash != std::string::npos)
		sandbox = visible(ctx.peer, rid.substr(0, dash));
	if (!sandbox || !(*sandbox)->worker() || (*sandbox)->state() != Sandbox::State::Running)
		return fail(notFound("no pending request '" + rid + "'"));

	Responder responder = ctx.defer();
	const std::string sid = (*sandbox)->id();
	(*sandbox)->worker()->call(
		"hold.answer", {{"request_id", rid}, {"approve", approved}},
		[this, sid, rid, approved, responder, uid = ctx.peer.uid](Result<rpc::Json> r) mutable {
			if (!r) {
				responder.error(std::move(r).error());
				return;
			}
			auto found = r->find("found");
			if (found == r->end() || !found->is_boolean() || !found->get<bool>()) {
				responder.error(notFound("no pending request '" + rid + "'"));
				return;
			}
			if (Sandbox *sb = lookup(sid))
				sb->resolveHold(rid);
			GVM_LOG(Daemon, Info) << "sandbox " << sid << ": request " << rid
					      << (approved ? " approved" : " denied") << " by uid " << uid;
			responder.result({{"request_id", rid}, {"approved", approved}});
		});
	return rpc::Json();
}

} // namespace gvm::daemon
