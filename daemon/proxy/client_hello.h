// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace gvm::proxy {

// The most bytes of a TLS stream that may hold the ClientHello, record
// headers included. A ClientHello may span several records (large key shares,
// padding); a stream that has not delivered a whole one within this many
// bytes is refused, which bounds what the proxy buffers before deciding.
inline constexpr size_t kMaxClientHelloBytes = 64 * 1024;

// Largest TLSPlaintext fragment (RFC 8446 §5.1).
inline constexpr size_t kMaxTlsRecordPayload = 16 * 1024;

// Longest SNI host name, without the trailing dot (RFC 1035).
inline constexpr size_t kMaxSniBytes = 253;

// What the first bytes of an agent's connection look like.
enum class FirstBytes {
	NeedMore, // too few bytes to tell
	Tls,      // a TLS handshake record: 0x16, then version major 3
	Http,     // an HTTP/1.x request line: a method of 1..20 of [A-Z-]
	          // (starting with a letter) and a space ("GET ", "M-SEARCH ";
	          // "PRI * HTTP/2.0" too, which the HTTP codec refuses later)
	Other,    // anything else: raw TCP
};

const char *toString(FirstBytes kind);

// Classifies a connection by its first bytes, as many as have arrived.
// NeedMore only while every byte so far is a possible prefix of Tls or Http
// (e.g. "", "GE", "\x16"); once it answers something else, more bytes do not
// change the answer.
FirstBytes classifyFirstBytes(std::string_view data);

// What the proxy needs from an agent's TLS ClientHello.
struct ClientHello {
	// The SNI host_name, validated, lower-cased, one trailing dot dropped;
	// empty when the hello has no server_name extension.
	std::string serverName;
	// The ALPN protocol names, in the client's order; empty when absent.
	std::vector<std::string> alpn;
	// ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3 clients).
	uint16_t legacyVersion = 0;
	// Whether a supported_versions extension lists TLS 1.3 (0x0304).
	bool hasSupportedVersions13 = false;
};

// Parses the ClientHello at the start of a TLS stream: record headers
// included, the handshake message possibly fragmented over several
// handshake records. Bytes after the ClientHello (early data...) are not
// looked at.
//
// Returns nullopt while the ClientHello is not complete and the record and
// handshake headers seen so far are valid: call again with all the bytes so
// far plus more (the body is checked once the whole message is in).
// Returns an Error of domain Http, code 400, whose context says what is
// malformed, when a record is not a handshake record or has a bad version or
// length, the first handshake message is not a ClientHello, the stream would
// need more than kMaxClientHelloBytes, or any field or extension is
// malformed: lengths that run past their container or leave bytes over, a
// duplicated extension, an SNI list that is not exactly one host_name, an
// SNI host name that is empty, longer than kMaxSniBytes, has an empty label
// or one over 63 bytes, or holds a byte outside [A-Za-z0-9-._] ("invalid
// SNI"), an empty ALPN list or name. The input is untrusted: every length is
// checked before it is used.
Result<std::optional<ClientHello>> parseClientHello(std::string_view data);

} // namespace gvm::proxy
