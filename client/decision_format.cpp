// SPDX-License-Identifier: Apache-2.0
#include "client/decision_format.h"

namespace gvm::client {

namespace {

std::string field(const rpc::Json &r, const char *key)
{
	auto it = r.find(key);
	if (it == r.end() || it->is_null())
		return "";
	return it->is_string() ? it->get<std::string>() : rpc::dumpJson(*it);
}

} // namespace

std::string formatDecision(const rpc::Json &r)
{
	if (!r.is_object())
		return rpc::dumpJson(r);
	std::string action = field(r, "action");
	if (field(r, "mode") == "monitor" && action != "allow")
		action = "would " + action;
	std::string line = field(r, "ts");
	line += (line.empty() ? "" : " ") + action;
	line.append(action.size() < 6 ? 6 - action.size() : 0, ' ');
	for (const char *key : {"kind", "method"}) {
		if (std::string v = field(r, key); !v.empty())
			line += " " + v;
	}
	if (std::string host = field(r, "host"); !host.empty()) {
		line += " " + host;
		if (std::string port = field(r, "port"); !port.empty())
			line += ":" + port;
		line += field(r, "path");
	}
	if (std::string status = field(r, "status"); !status.empty())
		line += " -> " + status;
	line += " rule=" + (field(r, "rule").empty() ? std::string("(default)") : field(r, "rule"));
	if (std::string sandbox = field(r, "sandbox"); !sandbox.empty())
		line += " sandbox=" + sandbox;
	return line;
}

} // namespace gvm::client
