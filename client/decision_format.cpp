// SPDX-License-Identifier: Apache-2.0
#include "client/decision_format.h"

#include "client/table.h"

namespace gvm::client {

namespace {

std::string field(const rpc::Json &r, const char *key)
{
	auto it = r.find(key);
	if (it == r.end() || it->is_null())
		return "";
	return terminalSafe(it->is_string() ? it->get<std::string>() : rpc::dumpJson(*it));
}

} // namespace

std::string formatDecision(const rpc::Json &r)
{
	if (!r.is_object())
		return terminalSafe(rpc::dumpJson(r));
	const std::string rawAction = field(r, "action");
	std::string action = rawAction;
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
	if (std::string status = field(r, "status"); !status.empty() && status != "0")
		line += " -> " + status;
	line += " rule=" + (field(r, "rule").empty() ? std::string("(default)") : field(r, "rule"));
	if (std::string sandbox = field(r, "sandbox"); !sandbox.empty())
		line += " sandbox=" + sandbox;
	if (std::string id = field(r, "request_id"); !id.empty() && rawAction == "hold")
		line += " request=" + id;
	if (auto it = r.find("reason"); it != r.end() && it->is_string() && !it->get_ref<const std::string &>().empty() &&
					  rawAction != "allow")
		line += " reason=" + terminalSafe(rpc::dumpJson(*it));
	return line;
}

} // namespace gvm::client
