// SPDX-License-Identifier: Apache-2.0
#include "daemon/proxy/worker.h"

#include <unistd.h>

#include "common/log.h"

namespace gvm::proxy {

namespace {

Error invalidParams(const std::string &what)
{
	return Error(ErrorDomain::Rpc, rpc::kInvalidParams, what);
}

} // namespace

Worker::Worker(Loop &loop, UniqueFd control)
	: loop_(loop),
	  control_(loop, std::move(control),
		   {[this](const std::string &line, std::vector<UniqueFd> &) { onLine(line); },
		    [this](const std::string &why) {
			    GVM_LOG(Proxy, Info) << "gvmd closed the control channel" << (why.empty() ? "" : ": " + why)
						 << "; stopping";
			    loop_.stop();
		    }},
		   "control channel")
{
}

Result<std::unique_ptr<Worker>> Worker::create(Loop &loop, UniqueFd control)
{
	return std::unique_ptr<Worker>(new Worker(loop, std::move(control)));
}

Result<rpc::Json> Worker::loadPolicy(const rpc::Json &params)
{
	if (!params.is_object() || !params.contains("policy_text") || !params["policy_text"].is_string())
		return fail(invalidParams("\"policy_text\" must be a string"));
	std::string file = params.contains("policy_file") && params["policy_file"].is_string()
				   ? params["policy_file"].get<std::string>()
				   : "policy";
	policy::LoadResult loaded = policy::loadPolicy(params["policy_text"].get_ref<const std::string &>(), file);
	if (!loaded.engine) {
		std::string message;
		for (const auto &d : loaded.diagnostics)
			message += (message.empty() ? "" : "\n") + d.toString();
		return fail(Error(ErrorDomain::Policy, 0, message));
	}
	// Swapping the pointer is the whole reload: requests in flight hold
	// their own reference to the previous engine.
	engine_ = std::move(loaded.engine);
	return rpc::Json{{"policy", engine_->name()}, {"sha256", engine_->sha256()}, {"rules", engine_->ruleCount()}};
}

void Worker::onLine(const std::string &line)
{
	rpc::DecodedRequest decoded = rpc::decodeRequest(line);
	if (!decoded.request) {
		control_.send(rpc::encodeError(decoded.id, decoded.error));
		return;
	}
	const rpc::Request &req = *decoded.request;
	Result<rpc::Json> result = fail(Error(ErrorDomain::Rpc, rpc::kMethodNotFound, "method not found: " + req.method));
	if (req.method == "worker.configure") {
		if (!engine_ && req.params.is_object() && req.params.contains("sandbox") && req.params["sandbox"].is_string()) {
			sandbox_ = req.params["sandbox"].get<std::string>();
			result = loadPolicy(req.params);
		} else {
			result = fail(invalidParams(engine_ ? "already configured" : "\"sandbox\" must be a string"));
		}
	} else if (req.method == "policy.reload") {
		result = engine_ ? loadPolicy(req.params) : fail(invalidParams("not configured yet"));
	} else if (req.method == "worker.ping") {
		result = rpc::Json{{"pid", static_cast<int64_t>(::getpid())},
				   {"uid", ::getuid()},
				   {"sandbox", sandbox_},
				   {"sha256", engine_ ? engine_->sha256() : std::string()}};
	}
	if (req.notification)
		return;
	control_.send(result ? rpc::encodeResult(req.id, *result) : rpc::encodeError(req.id, rpc::toRpcError(result.error())));
}

} // namespace gvm::proxy
