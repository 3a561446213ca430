// SPDX-License-Identifier: Apache-2.0
//
// Writing a flat JSON object straight into a string, for messages sent on
// every request (a proxy worker's decision records), where building an
// nlohmann::json object first costs dozens of allocations.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace gvm {

// Appends text as a JSON string (quotes included). Bytes that are not valid
// UTF-8 become U+FFFD, as rpc::dumpJson's replacement does; control
// characters are escaped.
void appendJsonString(std::string &out, std::string_view text);

// Appends {"key":value,...} to a string, one member at a time. Keys are
// written as given (callers use fixed ASCII keys).
class JsonObjectWriter
{
public:
	explicit JsonObjectWriter(std::string &out) : out_(out) { out_ += '{'; }
	JsonObjectWriter(const JsonObjectWriter &) = delete;
	JsonObjectWriter &operator=(const JsonObjectWriter &) = delete;

	JsonObjectWriter &string(std::string_view key, std::string_view value);
	JsonObjectWriter &number(std::string_view key, int64_t value);
	// A member whose value is JSON text already (an object, null...).
	JsonObjectWriter &raw(std::string_view key, std::string_view json);
	// Appends the closing brace; nothing may be added afterwards.
	void close() { out_ += '}'; }

private:
	void key(std::string_view key);

	std::string &out_;
	bool first_ = true;
};

} // namespace gvm
