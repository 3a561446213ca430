// SPDX-License-Identifier: Apache-2.0
//
// JSON-RPC 2.0 over a byte stream, one message per line ('\n'), each at most
// kMaxMessageBytes. Used by gvmd (server) and gvmctl (client). Decoding never
// throws and never trusts its input: every malformed message yields an
// RpcError that can be sent back as-is.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace gvm::rpc {

using Json = nlohmann::json;

inline constexpr size_t kMaxMessageBytes = 1024 * 1024;
// Deeper nesting is refused before parsing.
inline constexpr int kMaxNestingDepth = 64;

// JSON-RPC 2.0 codes, then gvm's own (server error range).
enum ErrorCode : int {
	kParseError = -32700,
	kInvalidRequest = -32600,
	kMethodNotFound = -32601,
	kInvalidParams = -32602,
	kInternalError = -32603,
	kServerError = -32000,
	kTooManyClients = -32001,
	kPermissionDenied = -32002,
	kMessageTooLarge = -32003,
	kNotFound = -32004,
	kPolicyError = -32005,
};

struct RpcError {
	int code = kInternalError;
	std::string message;
	Json data; // null when absent
};

// Maps an internal Error to what a client is told.
RpcError toRpcError(const Error &error);

// Splits a byte stream into lines. A line longer than kMaxMessageBytes (or a
// partial line growing past it) is an error: the stream cannot be resynced
// and the connection should be closed after reporting it.
class LineFramer
{
public:
	explicit LineFramer(size_t maxLine = kMaxMessageBytes) : maxLine_(maxLine) {}

	// Appends data; complete lines (without '\n', a trailing '\r' removed)
	// are appended to `lines`.
	Result<void> feed(std::string_view data, std::vector<std::string> *lines);
	size_t buffered() const { return buffer_.size(); }

private:
	size_t maxLine_;
	std::string buffer_;
};

struct Request {
	Json id;            // string, number or null; absent for notifications
	bool notification = false;
	std::string method;
	Json params;        // object, array or null
};

// A decoded request, or the error to answer with (and the id to answer to,
// when it could be recovered).
struct DecodedRequest {
	std::optional<Request> request;
	RpcError error;
	Json id;
};

DecodedRequest decodeRequest(std::string_view line);

// What a client reads: a response to one of its requests, or a server
// notification.
struct Incoming {
	bool isResponse = false;
	Json id;
	Json result;                  // for a successful response
	std::optional<RpcError> error; // for a failed response
	std::string method;           // for a notification
	Json params;                  // for a notification
};

Result<Incoming> decodeIncoming(std::string_view line);

// Encoders return one line including its '\n'. Strings that are not valid
// UTF-8 are replaced, never thrown on.
std::string encodeRequest(const Json &id, std::string_view method, const Json &params);
std::string encodeNotification(std::string_view method, const Json &params);
std::string encodeResult(const Json &id, const Json &result);
std::string encodeError(const Json &id, const RpcError &error);

// Parses JSON without exceptions; nullopt on malformed input or nesting
// deeper than kMaxNestingDepth.
std::optional<Json> parseJson(std::string_view text);
// Serialises without throwing (invalid UTF-8 is replaced).
std::string dumpJson(const Json &value);

} // namespace gvm::rpc
