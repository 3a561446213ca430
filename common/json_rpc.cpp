// SPDX-License-Identifier: Apache-2.0
#include "common/json_rpc.h"

namespace gvm::rpc {

namespace {

// Bracket depth outside strings; bails out early once over the limit. The
// parser itself is not recursive, but anything that later walks the value
// (dump, comparison) is, so depth is bounded up front.
bool nestingWithin(std::string_view text, int limit)
{
	int depth = 0;
	bool inString = false;
	bool escaped = false;
	for (char c : text) {
		if (inString) {
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				inString = false;
			continue;
		}
		if (c == '"') {
			inString = true;
		} else if (c == '[' || c == '{') {
			if (++depth > limit)
				return false;
		} else if (c == ']' || c == '}') {
			--depth;
		}
	}
	return true;
}

bool validId(const Json &id)
{
	return id.is_string() || id.is_number_integer() || id.is_number_unsigned() || id.is_null();
}

} // namespace

RpcError toRpcError(const Error &error)
{
	if (error.domain() == ErrorDomain::Rpc)
		return {error.code(), error.context(), nullptr};
	if (error.domain() == ErrorDomain::Policy)
		return {kPolicyError, error.context(), nullptr};
	if (error.domain() == ErrorDomain::Errno && (error.code() == EPERM || error.code() == EACCES))
		return {kPermissionDenied, error.message(), nullptr};
	return {kServerError, error.message(), nullptr};
}

Result<void> LineFramer::feed(std::string_view data, std::vector<std::string> *lines)
{
	while (!data.empty()) {
		size_t nl = data.find('\n');
		if (nl == std::string_view::npos) {
			if (buffer_.size() + data.size() > maxLine_)
				return fail(Error(ErrorDomain::Rpc, kMessageTooLarge,
						  "message exceeds " + std::to_string(maxLine_) + " bytes"));
			buffer_.append(data);
			return {};
		}
		if (buffer_.size() + nl > maxLine_)
			return fail(Error(ErrorDomain::Rpc, kMessageTooLarge,
					  "message exceeds " + std::to_string(maxLine_) + " bytes"));
		buffer_.append(data.substr(0, nl));
		if (!buffer_.empty() && buffer_.back() == '\r')
			buffer_.pop_back();
		lines->push_back(std::move(buffer_));
		buffer_.clear();
		data.remove_prefix(nl + 1);
	}
	return {};
}

std::optional<Json> parseJson(std::string_view text)
{
	if (!nestingWithin(text, kMaxNestingDepth))
		return std::nullopt;
	Json value = Json::parse(text.begin(), text.end(), nullptr, false);
	if (value.is_discarded())
		return std::nullopt;
	return value;
}

std::string dumpJson(const Json &value)
{
	return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

DecodedRequest decodeRequest(std::string_view line)
{
	DecodedRequest out;
	out.id = nullptr;
	if (line.size() > kMaxMessageBytes) {
		out.error = {kMessageTooLarge, "message exceeds " + std::to_string(kMaxMessageBytes) + " bytes", nullptr};
		return out;
	}
	std::optional<Json> parsed = parseJson(line);
	if (!parsed) {
		out.error = {kParseError, "parse error: not valid JSON (or nested deeper than " +
						  std::to_string(kMaxNestingDepth) + ")", nullptr};
		return out;
	}
	Json &msg = *parsed;
	if (!msg.is_object()) {
		out.error = {kInvalidRequest, "invalid request: expected a JSON object", nullptr};
		return out;
	}
	auto idIt = msg.find("id");
	bool hasId = idIt != msg.end();
	if (hasId && validId(*idIt))
		out.id = *idIt;
	auto version = msg.find("jsonrpc");
	if (version == msg.end() || !version->is_string() || version->get_ref<const std::string &>() != "2.0") {
		out.error = {kInvalidRequest, "invalid request: \"jsonrpc\" must be \"2.0\"", nullptr};
		return out;
	}
	if (hasId && !validId(*idIt)) {
		out.error = {kInvalidRequest, "invalid request: \"id\" must be a string, an integer or null", nullptr};
		return out;
	}
	auto method = msg.find("method");
	if (method == msg.end() || !method->is_string()) {
		out.error = {kInvalidRequest, "invalid request: \"method\" must be a string", nullptr};
		return out;
	}
	Json params = nullptr;
	if (auto p = msg.find("params"); p != msg.end()) {
		if (!p->is_object() && !p->is_array()) {
			out.error = {kInvalidRequest, "invalid request: \"params\" must be an object or an array", nullptr};
			return out;
		}
		params = std::move(*p);
	}
	Request request;
	request.id = out.id;
	request.notification = !hasId;
	request.method = method->get<std::string>();
	request.params = std::move(params);
	out.request = std::move(request);
	return out;
}

Result<Incoming> decodeIncoming(std::string_view line)
{
	std::optional<Json> parsed = parseJson(line);
	if (!parsed || !parsed->is_object())
		return fail(Error(ErrorDomain::Rpc, kParseError, "malformed message from gvmd"));
	Json &msg = *parsed;
	Incoming in;
	if (auto m = msg.find("method"); m != msg.end()) {
		if (!m->is_string())
			return fail(Error(ErrorDomain::Rpc, kInvalidRequest, "notification without a method name"));
		in.method = m->get<std::string>();
		if (auto p = msg.find("params"); p != msg.end())
			in.params = std::move(*p);
		return in;
	}
	in.isResponse = true;
	if (auto id = msg.find("id"); id != msg.end())
		in.id = *id;
	if (auto e = msg.find("error"); e != msg.end()) {
		RpcError err;
		if (!e->is_object())
			return fail(Error(ErrorDomain::Rpc, kInvalidRequest, "malformed error object from gvmd"));
		if (auto c = e->find("code"); c != e->end() && c->is_number_integer())
			err.code = c->get<int>();
		if (auto t = e->find("message"); t != e->end() && t->is_string())
			err.message = t->get<std::string>();
		if (auto d = e->find("data"); d != e->end())
			err.data = *d;
		in.error = std::move(err);
		return in;
	}
	auto r = msg.find("result");
	if (r == msg.end())
		return fail(Error(ErrorDomain::Rpc, kInvalidRequest, "response without result or error"));
	in.result = std::move(*r);
	return in;
}

std::string encodeRequest(const Json &id, std::string_view method, const Json &params)
{
	Json msg = {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}};
	if (!params.is_null())
		msg["params"] = params;
	return dumpJson(msg) + "\n";
}

std::string encodeNotification(std::string_view method, const Json &params)
{
	Json msg = {{"jsonrpc", "2.0"}, {"method", method}};
	if (!params.is_null())
		msg["params"] = params;
	return dumpJson(msg) + "\n";
}

std::string encodeResult(const Json &id, const Json &result)
{
	return dumpJson(Json{{"jsonrpc", "2.0"}, {"id", id}, {"result", result}}) + "\n";
}

std::string encodeError(const Json &id, const RpcError &error)
{
	Json err = {{"code", error.code}, {"message", error.message}};
	if (!error.data.is_null())
		err["data"] = error.data;
	return dumpJson(Json{{"jsonrpc", "2.0"}, {"id", id}, {"error", err}}) + "\n";
}

} // namespace gvm::rpc
