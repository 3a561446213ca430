// SPDX-License-Identifier: Apache-2.0
#include "daemon/proxy/worker.h"

#include <malloc.h>
#include <unistd.h>

#include "common/log.h"
#include "common/socket_address.h"

namespace gvm::proxy {

namespace {

Error invalidParams(const std::string &what)
{
	return Error(ErrorDomain::Rpc, rpc::kInvalidParams, what);
}

std::string stringParam(const rpc::Json &params, const char *name, std::string fallback = "")
{
	if (params.is_object() && params.contains(name) && params[name].is_string())
		return params[name].get<std::string>();
	return fallback;
}

} // namespace

Worker::Worker(Loop &loop, UniqueFd control, WorkerResources resources)
	: loop_(loop),
	  control_(loop, std::move(control),
		   {[this](const std::string &line, std::vector<UniqueFd> &fds) { onLine(line, fds); },
		    [this](const std::string &why) {
			    GVM_LOG(Proxy, Info) << "gvmd closed the control channel" << (why.empty() ? "" : ": " + why)
						 << "; stopping";
			    // Without gvmd no decision could be recorded: serve nothing.
			    proxy_.reset();
			    loop_.stop();
		    }},
		   "control channel"),
	  resources_(std::move(resources))
{
}

Worker::~Worker() = default;

Result<std::unique_ptr<Worker>> Worker::create(Loop &loop, UniqueFd control, WorkerResources resources)
{
	return std::unique_ptr<Worker>(new Worker(loop, std::move(control), std::move(resources)));
}

Result<std::shared_ptr<const policy::Engine>> Worker::parsePolicy(const rpc::Json &params)
{
	if (!params.is_object() || !params.contains("policy_text") || !params["policy_text"].is_string())
		return fail(invalidParams("\"policy_text\" must be a string"));
	std::string file = stringParam(params, "policy_file", "policy");
	policy::LoadResult loaded = policy::loadPolicy(params["policy_text"].get_ref<const std::string &>(), file);
	if (!loaded.engine) {
		std::string message;
		for (const auto &d : loaded.diagnostics)
			message += (message.empty() ? "" : "\n") + d.toString();
		return fail(Error(ErrorDomain::Policy, 0, message));
	}
	return std::move(loaded.engine);
}

namespace {

// The policy's filesystem, syscalls and limits sections, for gvmd, which
// confines the agent by them and never parses policy text itself.
rpc::Json describeIsolation(const policy::Engine &engine)
{
	rpc::Json allow = rpc::Json::array();
	for (size_t i = 0; i < std::size(policy::kSyscallGroupNames); ++i)
		if (engine.syscalls().allow & (1u << i))
			allow.push_back(policy::kSyscallGroupNames[i]);
	rpc::Json limits = rpc::Json::object();
	if (engine.limits().memoryBytes)
		limits["memory"] = *engine.limits().memoryBytes;
	if (engine.limits().pids)
		limits["pids"] = *engine.limits().pids;
	if (engine.limits().cpuMillis)
		limits["cpu_millis"] = *engine.limits().cpuMillis;
	return {{"workspace", policy::toString(engine.filesystem().workspace)},
		{"hidden", engine.filesystem().hidden},
		{"syscalls_allow", std::move(allow)},
		{"limits", std::move(limits)}};
}

} // namespace

rpc::Json Worker::describePolicy() const
{
	const bool monitor = forceMonitor_ || engine_->mode() == policy::Mode::Monitor;
	return {{"policy", engine_->name()},
		{"sha256", engine_->sha256()},
		{"rules", engine_->ruleCount()},
		{"mode", monitor ? "monitor" : "enforce"}};
}

Result<rpc::Json> Worker::configure(const rpc::Json &params, std::vector<UniqueFd> &fds)
{
	if (engine_)
		return fail(invalidParams("already configured"));
	std::string sandbox = stringParam(params, "sandbox");
	if (sandbox.empty())
		return fail(invalidParams("\"sandbox\" must be a non-empty string"));
	// Listening sockets may come with the request (a worker started ahead
	// of its sandbox): "listeners" names them, in the order passed.
	std::vector<std::pair<ListenerKind, UniqueFd>> passed;
	if (params.contains("listeners")) {
		const rpc::Json &names = params["listeners"];
		if (!names.is_array() || names.size() != fds.size())
			return fail(invalidParams("\"listeners\" must name each descriptor passed, got " +
						  std::to_string(fds.size()) + " descriptors"));
		for (size_t i = 0; i < names.size(); ++i) {
			auto kind = names[i].is_string() ? parseListenerKind(names[i].get<std::string>()) : std::nullopt;
			if (!kind)
				return fail(invalidParams("unknown listener " + names[i].dump()));
			passed.emplace_back(*kind, std::move(fds[i]));
		}
	}
	auto engine = parsePolicy(params);
	if (!engine)
		return fail(std::move(engine).error());
	bool monitor = params.contains("monitor") && params["monitor"].is_boolean() && params["monitor"].get<bool>();

	auto ca = CertificateAuthority::create(sandbox);
	if (!ca)
		return fail(std::move(ca).error().wrap("creating the sandbox CA"));
	auto tls = UpstreamTls::create(resources_.hostTrustPem, stringParam(params, "upstream_ca_pem"));
	if (!tls)
		return fail(std::move(tls).error());
	std::string caPem = (*ca)->certificatePem();

	std::optional<sockaddr_storage> dnsUpstream;
	if (std::string text = stringParam(params, "dns_upstream"); !text.empty()) {
		auto address = parseSocketAddress(text, 53);
		if (!address)
			return fail(std::move(address).error().wrap("reading dns_upstream"));
		dnsUpstream = *address;
	}
	std::vector<Cidr> sandboxPool;
	if (std::string text = stringParam(params, "sandbox_pool"); !text.empty()) {
		auto pool = Cidr::parse(text);
		if (!pool)
			return fail(std::move(pool).error().wrap("reading sandbox_pool"));
		sandboxPool.push_back(*pool);
	}
	Proxy::Setup setup{sandbox, monitor, std::move(*ca), std::move(*tls), resources_.hostAddresses,
			   [this](const std::string &method, nlohmann::json p, Proxy::Delivery delivery) {
				   std::string line = rpc::encodeNotification(method, p);
				   if (delivery == Proxy::Delivery::Batched)
					   control_.sendBatched(std::move(line));
				   else
					   control_.send(std::move(line));
			   },
			   dnsUpstream, std::move(sandboxPool),
			   [this](std::string line, Proxy::Delivery delivery) {
				   if (delivery == Proxy::Delivery::Batched)
					   control_.sendBatched(std::move(line));
				   else
					   control_.send(std::move(line));
			   }};
	auto proxy = Proxy::create(loop_, std::move(setup), *engine);
	if (!proxy)
		return fail(std::move(proxy).error());
	for (auto &[kind, fd] : resources_.listeners)
		GVM_TRY_VOID((*proxy)->addListener(kind, std::move(fd)), "serving the sandbox");
	resources_.listeners.clear();
	for (size_t i = 0; i < passed.size(); ++i)
		GVM_TRY_VOID((*proxy)->addListener(passed[i].first, std::move(passed[i].second)), "serving the sandbox");

	sandbox_ = std::move(sandbox);
	forceMonitor_ = monitor;
	// The trust store now lives parsed in the upstream context; a worker
	// is configured once, so its text is not needed again.
	std::string().swap(resources_.hostTrustPem);
	engine_ = std::move(*engine);
	proxy_ = std::move(*proxy);
	GVM_LOG(Proxy, Info) << "sandbox " << sandbox_ << ": enforcing policy '" << engine_->name() << "' ("
			     << engine_->ruleCount() << " rules" << (forceMonitor_ ? ", monitor mode" : "") << ")";
	rpc::Json result = describePolicy();
	result["ca_pem"] = caPem;
	result["isolation"] = describeIsolation(*engine_);
	return result;
}

Result<rpc::Json> Worker::reload(const rpc::Json &params)
{
	if (!engine_)
		return fail(invalidParams("not configured yet"));
	auto engine = parsePolicy(params);
	if (!engine)
		return fail(std::move(engine).error());
	// Swapping the pointer is the whole reload: requests in flight hold
	// their own reference to the previous engine.
	GVM_TRY_VOID(proxy_->setEngine(*engine), "reloading the policy");
	engine_ = std::move(*engine);
	return describePolicy();
}

void Worker::onLine(const std::string &line, std::vector<UniqueFd> &fds)
{
	rpc::DecodedRequest decoded = rpc::decodeRequest(line);
	if (!decoded.request) {
		control_.send(rpc::encodeError(decoded.id, decoded.error));
		return;
	}
	const rpc::Request &req = *decoded.request;
	Result<rpc::Json> result = fail(Error(ErrorDomain::Rpc, rpc::kMethodNotFound, "method not found: " + req.method));
	if (req.method == "worker.configure") {
		result = configure(req.params, fds);
	} else if (req.method == "policy.reload") {
		result = reload(req.params);
	} else if (req.method == "hold.answer") {
		std::string id = stringParam(req.params, "request_id");
		if (id.empty() || !req.params.contains("approve") || !req.params["approve"].is_boolean())
			result = fail(invalidParams("hold.answer needs \"request_id\" and a boolean \"approve\""));
		else
			result = rpc::Json{{"request_id", id},
					   {"found", proxy_ && proxy_->answerHold(id, req.params["approve"].get<bool>())}};
	} else if (req.method == "worker.ping") {
		result = rpc::Json{{"pid", static_cast<int64_t>(::getpid())},
				   {"uid", ::getuid()},
				   {"sandbox", sandbox_},
				   {"sha256", engine_ ? engine_->sha256() : std::string()},
				   {"connections_open", proxy_ ? proxy_->connectionsOpen() : 0},
				   {"connections_total", proxy_ ? proxy_->connectionsTotal() : 0}};
	}
	if (!req.notification)
		control_.send(result ? rpc::encodeResult(req.id, *result)
				     : rpc::encodeError(req.id, rpc::toRpcError(result.error())));
	// Parsing the policy and the trust store leaves freed heap that the
	// idle worker would otherwise keep resident for its whole life (the
	// trim threshold is high for streaming's sake): give it back once.
	if (req.method == "worker.configure")
		::malloc_trim(0);
}

} // namespace gvm::proxy
