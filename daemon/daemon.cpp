// SPDX-License-Identifier: Apache-2.0
#include "daemon/daemon.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <grp.h>
#include <set>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "common/file.h"
#include "common/log.h"
#include "common/rfc3339.h"
#include "common/socket_address.h"
#include "daemon/net/address_pool.h"
#include "daemon/net/host_network.h"
#include "gvm_config.h"
#include "daemon/isolation/cgroup.h"
#include "daemon/isolation/landlock.h"

namespace gvm::daemon {

namespace {

// Creates DIR (and missing parents) with the given mode for the last one.
Result<void> makeDirectories(const std::string &dir, mode_t mode)
{
	std::string path;
	size_t pos = 0;
	while (pos != std::string::npos) {
		pos = dir.find('/', pos + 1);
		path = dir.substr(0, pos);
		if (path.empty())
			continue;
		const bool last = pos == std::string::npos;
		if (::mkdir(path.c_str(), last ? mode : 0755) < 0 && errno != EEXIST)
			return fail(Error::fromErrno(errno, "creating " + path));
	}
	struct stat st{};
	if (::stat(dir.c_str(), &st) < 0)
		return fail(Error::fromErrno(errno, "checking " + dir));
	if (!S_ISDIR(st.st_mode))
		return fail(Error::fromErrno(ENOTDIR, dir));
	return {};
}

} // namespace

Daemon::Daemon(const Options &options) : options_(options) {}

Daemon::~Daemon()
{
	signals_.clear();
	// What the last loop pass deferred (the teardown of a sandbox removed
	// in it, say) runs while everything it refers to is still here.
	if (loop_)
		loop_->runPosted();
	// Sandboxes first: they answer through the server and write to the
	// audit log.
	sandboxes_.reset();
	if (loop_)
		loop_->runPosted();
	subscribers_.reset();
	server_.reset();
	audit_.reset(); // writes and syncs what is queued
	if (ownsSocketPath_)
		::unlink(options_.socketPath.c_str());
	loop_.reset();
}

Result<std::unique_ptr<Daemon>> Daemon::create(const Options &options)
{
	std::unique_ptr<Daemon> daemon(new Daemon(options));
	GVM_TRY_VOID(daemon->setUp(), "starting gvmd");
	return daemon;
}

Result<void> Daemon::setUp()
{
	started_ = std::chrono::steady_clock::now();
	startedWall_ = std::chrono::system_clock::now();

	// A client that hangs up must not kill the daemon.
	std::signal(SIGPIPE, SIG_IGN);

	auto loop = Loop::create();
	if (!loop)
		return fail(std::move(loop).error());
	loop_ = std::move(*loop);

	GVM_TRY_VOID(makeDirectories(options_.stateDir, 0700), "preparing the state directory");
	auto audit = AuditLog::open(*loop_, options_.stateDir + "/audit");
	if (!audit)
		return fail(std::move(audit).error());
	audit_ = std::move(*audit);

	std::string upstreamCaPem;
	if (!options_.upstreamCaFile.empty()) {
		auto pem = readFileBounded(options_.upstreamCaFile, kMaxUpstreamCaBytes);
		if (!pem)
			return fail(std::move(pem).error().wrap("reading --upstream-ca"));
		upstreamCaPem = std::move(*pem);
	}
	auto fd = openControlSocket();
	if (!fd)
		return fail(std::move(fd).error());
	// Only now, with the control socket ours: another gvmd still serving
	// its sandboxes from here would have kept it.
	removeStaleSandboxes();
	auto server = RpcServer::create(*loop_, std::move(*fd));
	if (!server)
		return fail(std::move(server).error());
	server_ = std::move(*server);
	subscribers_ = std::make_unique<DecisionSubscribers>(*server_);
	SandboxManager::Config config{options_.runtimeDir, options_.workerPath, log::toString(options_.logLevel),
				      std::move(upstreamCaPem)};
	GVM_TRY_VOID(prepareSandboxNetworking(config), "preparing sandbox networking");
	sandboxes_ = std::make_unique<SandboxManager>(*loop_, *server_, *audit_, *subscribers_, std::move(config));
	registerMethods();

	for (int sig : {SIGTERM, SIGINT})
		signals_.push_back(std::make_unique<SignalWatcher>(*loop_, sig, [this](int s) { shutdown(s); }));
	return {};
}

Result<void> Daemon::prepareSandboxNetworking(SandboxManager::Config &config)
{
	config.network.pool = options_.addressPool;
	config.stateDir = options_.stateDir;
	config.maskMounts = options_.maskMounts;
	if (!options_.maskMounts)
		GVM_LOG(Daemon, Warning) << "--test-no-mask-mounts: hidden paths are closed by Landlock alone";
	// Hidden from every agent: where gvmd keeps its socket, sandboxes
	// and audit log.
	config.hiddenDirs = {options_.runtimeDir, options_.stateDir, options_.socketPath};
	// And the system gvmd's, when this one runs beside it.
	for (const char *dir : {GVM_DEFAULT_RUNTIME_DIR, GVM_DEFAULT_STATE_DIR})
		if (std::find(config.hiddenDirs.begin(), config.hiddenDirs.end(), dir) == config.hiddenDirs.end())
			config.hiddenDirs.push_back(dir);
	if (!options_.dnsUpstream.empty()) {
		auto upstream = parseSocketAddress(options_.dnsUpstream, 53);
		if (!upstream)
			return fail(std::move(upstream).error().wrap("reading --dns-upstream"));
		config.dnsUpstream = formatSocketAddress(*upstream);
	} else {
		auto text = readFileBounded("/etc/resolv.conf", kMaxResolvConfBytes);
		auto upstream = text ? firstNameserver(*text) : Result<sockaddr_storage>(fail(std::move(text).error()));
		if (upstream) {
			config.dnsUpstream = formatSocketAddress(*upstream);
		} else {
			config.dnsUpstream = "127.0.0.1:53";
			GVM_LOG(Daemon, Warning) << "no resolver in /etc/resolv.conf (" << upstream.error().message()
						 << "); sandboxes' DNS goes to " << config.dnsUpstream;
		}
	}
	if (auto pool = net::AddressPool::create(options_.addressPool); !pool)
		return fail(std::move(pool).error().wrap("reading --address-pool"));
	if (::geteuid() != 0)
		return {}; // cooperative sandboxes only
	// Shared by every sandbox (and every gvmd on the host): replaced
	// atomically with the same rules.
	GVM_TRY_VOID(net::installHostTable(config.network), "installing the host nftables table");
	GVM_LOG(Daemon, Info) << "sandbox networks from " << config.network.pool << ", DNS forwarded to "
			      << config.dnsUpstream;
	return {};
}

void Daemon::removeStaleSandboxes()
{
	const std::string dir = options_.runtimeDir + "/sandboxes";
	// No sandbox outlives the gvmd that made it (its proxy died with it):
	// what an earlier gvmd left is removed, but only entries named the
	// way gvmd names them, never anything else someone put there.
	std::error_code ec;
	std::set<std::string> stale;
	for (const auto &entry : std::filesystem::directory_iterator(dir, ec)) {
		const std::string name = entry.path().filename().string();
		if (!isSandboxId(name))
			continue;
		stale.insert(name);
		GVM_LOG(Daemon, Notice) << "removing " << entry.path().string() << ", left by an earlier gvmd";
		std::error_code rec;
		std::filesystem::remove_all(entry.path(), rec);
		if (rec)
			GVM_LOG(Daemon, Warning) << "removing " << entry.path().string() << ": " << rec.message()
						 << ", ignoring";
	}
	// Their veth pairs, if anything kept the namespaces alive: only the
	// links of this gvmd's sandboxes (named after their ids), never
	// another gvmd's on the same host.
	if (stale.empty() || ::geteuid() != 0)
		return;
	// Their cgroups (empty: their processes died with the earlier gvmd).
	for (const Error &e :
	     isolation::SandboxCgroup::removeNamed(std::vector<std::string>(stale.begin(), stale.end())))
		GVM_LOG(Daemon, Warning) << e.message() << ", ignoring";
	auto removed = net::cleanupLeftovers([&](const std::string &id) { return stale.count(id) == 0; });
	if (!removed)
		GVM_LOG(Daemon, Warning) << "removing earlier sandboxes' links: " << removed.error().message()
					 << ", ignoring";
	else
		for (const std::string &link : *removed)
			GVM_LOG(Daemon, Notice) << "removed link " << link << ", left by an earlier gvmd";
}

Result<UniqueFd> Daemon::openControlSocket()
{
	// Socket activation: systemd created and bound the socket (gvmd.socket)
	// with the mode and group from the unit.
	int n = sd_listen_fds(1);
	if (n < 0)
		return fail(Error::fromErrno(-n, "reading the sockets passed by systemd"));
	if (n > 1)
		return fail(Error::fromErrno(EINVAL, "systemd passed " + std::to_string(n) + " sockets, expected one"));
	if (n == 1) {
		int fd = SD_LISTEN_FDS_START;
		if (sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0) <= 0)
			return fail(Error::fromErrno(EINVAL, "the socket passed by systemd is not a listening unix stream socket"));
		if (::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
		    ::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
			return fail(Error::fromErrno(errno, "configuring the socket passed by systemd"));
		GVM_LOG(Daemon, Info) << "using the control socket passed by systemd";
		return UniqueFd(fd);
	}

	const std::string &path = options_.socketPath;
	sockaddr_un addr{};
	addr.sun_family = AF_UNIX;
	if (path.size() >= sizeof(addr.sun_path))
		return fail(Error::fromErrno(ENAMETOOLONG, "socket path " + path));
	std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);

	std::string dir = path.substr(0, path.rfind('/'));
	if (!dir.empty())
		GVM_TRY_VOID(makeDirectories(dir, 0755), "preparing the runtime directory");

	UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (!fd)
		return fail(Error::fromErrno(errno, "creating the control socket"));

	// A socket file left by a gvmd that died is removed; one that a live
	// gvmd answers on is not.
	struct stat st{};
	if (::lstat(path.c_str(), &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return fail(Error::fromErrno(EEXIST, path + " exists and is not a socket"));
		UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
		if (probe && ::connect(probe.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0)
			return fail(Error::fromErrno(EADDRINUSE, "another gvmd is listening on " + path));
		::unlink(path.c_str());
	}

	// Bind with a restrictive umask, then widen to 0660 for group gvm: the
	// socket is never reachable by others, not even for an instant.
	mode_t old = ::umask(0177);
	int r = ::bind(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr));
	int bindErrno = errno;
	::umask(old);
	if (r < 0)
		return fail(Error::fromErrno(bindErrno, "binding " + path));
	ownsSocketPath_ = true;

	if (group *g = ::getgrnam("gvm")) {
		if (::chown(path.c_str(), static_cast<uid_t>(-1), g->gr_gid) < 0)
			GVM_LOG(Daemon, Warning) << "giving " << path << " to group gvm: " << std::strerror(errno)
						 << ", ignoring";
	}
	if (::chmod(path.c_str(), 0660) < 0)
		return fail(Error::fromErrno(errno, "setting the mode of " + path));
	if (::listen(fd.get(), 128) < 0)
		return fail(Error::fromErrno(errno, "listening on " + path));
	GVM_LOG(Daemon, Info) << "listening on " << path;
	return fd;
}

void Daemon::registerMethods()
{
	// Decisions of the caller's own sandboxes; root sees every record.
	server_->addMethod("audit.show", [this](CallContext &ctx, const rpc::Json &params) -> Result<rpc::Json> {
		if (!params.is_null() && !params.is_object())
			return fail(Error(ErrorDomain::Rpc, rpc::kInvalidParams, "params must be an object"));
		std::string sandbox;
		int64_t limit = kAuditShowDefaultLimit;
		if (params.is_object()) {
			if (auto s = params.find("sandbox"); s != params.end()) {
				if (!s->is_string())
					return fail(Error(ErrorDomain::Rpc, rpc::kInvalidParams, "\"sandbox\" must be a string"));
				sandbox = s->get<std::string>();
			}
			if (auto l = params.find("limit"); l != params.end()) {
				if (!l->is_number_integer() || l->get<int64_t>() < 1 || l->get<int64_t>() > kAuditShowMaxLimit)
					return fail(Error(ErrorDomain::Rpc, rpc::kInvalidParams,
							  "\"limit\" must be an integer from 1 to " + std::to_string(kAuditShowMaxLimit)));
				limit = l->get<int64_t>();
			}
		}
		const uid_t uid = ctx.peer.uid;
		auto records = audit_->readBack(static_cast<size_t>(limit), [&](const rpc::Json &r) {
			if (uid != 0 && (!r.contains("uid") || r["uid"] != uid))
				return false;
			return sandbox.empty() || (r.contains("sandbox") && r["sandbox"] == sandbox);
		});
		if (!records)
			return fail(std::move(records).error());
		return rpc::Json{{"records", std::move(*records)}};
	});

	sandboxes_->registerMethods();

	server_->addMethod("daemon.status", [this](CallContext &ctx, const rpc::Json &) -> Result<rpc::Json> {
		return status(ctx.peer);
	});
}

rpc::Json Daemon::status(const PeerCredentials &caller) const
{
	auto uptime = std::chrono::steady_clock::now() - started_;
	return {
		{"version", GVM_VERSION},
		{"pid", static_cast<int64_t>(::getpid())},
		{"started", rfc3339(startedWall_, TimePrecision::Seconds)},
		{"uptime_s", std::chrono::duration<double>(uptime).count()},
		{"sandboxes", sandboxes_->count()},
		{"clients", server_->clientCount()},
		{"socket", options_.socketPath},
		{"state_dir", options_.stateDir},
		{"isolation", isolationSupport()},
		{"audit", {{"path", audit_->path()}, {"records", audit_->lastSeq()}}},
		{"caller", {{"uid", caller.uid}, {"gid", caller.gid}, {"pid", static_cast<int64_t>(caller.pid)}}},
	};
}

rpc::Json Daemon::isolationSupport()
{
	// Read once: neither changes while gvmd runs.
	static const rpc::Json support = [] {
		rpc::Json out = {{"landlock_abi", isolation::landlockAbi()}};
		auto cgroups = isolation::SandboxCgroup::describeSupport();
		out["cgroups"] = cgroups ? *cgroups : "unavailable: " + cgroups.error().message();
		return out;
	}();
	return support;
}

void Daemon::shutdown(int signum)
{
	GVM_LOG(Daemon, Info) << "received " << ::strsignal(signum) << ", stopping";
	sd_notify(0, "STOPPING=1");
	sandboxes_->shutdown();
	server_->shutdown();
	if (auto r = audit_->flush(); !r)
		GVM_LOG(Audit, Error) << "writing the audit log: " << r.error().message();
	signals_.clear();
	loop_->stop();
}

int Daemon::run()
{
	sd_notifyf(0, "READY=1\nSTATUS=listening on %s\nMAINPID=%d", options_.socketPath.c_str(),
		   static_cast<int>(::getpid()));
	GVM_LOG(Daemon, Info) << "gvmd " << GVM_VERSION << " ready (pid " << ::getpid() << ")";
	loop_->run();
	return 0;
}

} // namespace gvm::daemon
