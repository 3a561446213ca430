// SPDX-License-Identifier: Apache-2.0
#include "daemon/proxy/client_hello.h"

#include <algorithm>
#include <set>
#include <utility>

#include "common/text.h"

namespace gvm::proxy {

namespace {

constexpr uint8_t kContentTypeHandshake = 22;
constexpr uint8_t kHandshakeClientHello = 1;
constexpr size_t kRecordHeaderBytes = 5;
constexpr size_t kHandshakeHeaderBytes = 4;
constexpr size_t kRandomBytes = 32;
constexpr size_t kMaxSessionIdBytes = 32;
constexpr size_t kMaxLabelBytes = 63;
constexpr size_t kMaxMethodChars = 20;

constexpr uint16_t kExtServerName = 0;
constexpr uint16_t kExtAlpn = 16;
constexpr uint16_t kExtSupportedVersions = 43;
constexpr uint8_t kNameTypeHostName = 0;
constexpr uint16_t kTls13 = 0x0304;

Error malformed(std::string what)
{
	return Error(ErrorDomain::Http, 400, "malformed TLS ClientHello: " + std::move(what));
}

Error invalidSni(std::string what)
{
	return Error(ErrorDomain::Http, 400, "invalid SNI: " + std::move(what));
}

std::string hexByte(uint8_t byte)
{
	static const char kHex[] = "0123456789abcdef";
	return std::string("0x") + kHex[byte >> 4] + kHex[byte & 0xf];
}

// A bounds-checked cursor over untrusted bytes (BoringSSL's CBS, in small).
// Every read checks what remains first and, when it fails, leaves the
// cursor where it was.
class Reader
{
public:
	explicit Reader(std::string_view data = {}) : data_(data) {}

	size_t size() const { return data_.size(); }
	bool empty() const { return data_.empty(); }
	std::string_view bytes() const { return data_; }

	bool u8(uint8_t *out)
	{
		if (data_.empty())
			return false;
		*out = static_cast<uint8_t>(data_[0]);
		data_.remove_prefix(1);
		return true;
	}

	bool u16(uint16_t *out)
	{
		uint32_t value;
		if (!big(2, &value))
			return false;
		*out = static_cast<uint16_t>(value);
		return true;
	}

	bool u24(uint32_t *out) { return big(3, out); }

	bool skip(size_t n, std::string_view *out = nullptr)
	{
		if (data_.size() < n)
			return false;
		if (out)
			*out = data_.substr(0, n);
		data_.remove_prefix(n);
		return true;
	}

	// A vector with a 1- or 2-byte length prefix.
	bool prefixed8(Reader *out) { return prefixed(1, out); }
	bool prefixed16(Reader *out) { return prefixed(2, out); }

private:
	bool big(size_t n, uint32_t *out)
	{
		if (data_.size() < n)
			return false;
		uint32_t value = 0;
		for (size_t i = 0; i < n; i++)
			value = value << 8 | static_cast<uint8_t>(data_[i]);
		data_.remove_prefix(n);
		*out = value;
		return true;
	}

	bool prefixed(size_t lengthBytes, Reader *out)
	{
		Reader copy = *this;
		uint32_t length;
		std::string_view body;
		if (!copy.big(lengthBytes, &length) || !copy.skip(length, &body))
			return false;
		*this = copy;
		*out = Reader(body);
		return true;
	}

	std::string_view data_;
};

bool isSniChar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
	       c == '.' || c == '_';
}

Result<std::string> parseHostName(std::string_view name)
{
	if (!name.empty() && name.back() == '.')
		name.remove_suffix(1);
	if (name.empty())
		return fail(invalidSni("empty host name"));
	if (name.size() > kMaxSniBytes)
		return fail(invalidSni("host name of " + std::to_string(name.size()) + " bytes is longer than " +
				       std::to_string(kMaxSniBytes)));
	size_t labelStart = 0;
	for (size_t i = 0; i <= name.size(); i++) {
		if (i == name.size() || name[i] == '.') {
			size_t label = i - labelStart;
			if (label == 0)
				return fail(invalidSni("host name has an empty label"));
			if (label > kMaxLabelBytes)
				return fail(invalidSni("host name has a label longer than " +
						       std::to_string(kMaxLabelBytes) + " bytes"));
			labelStart = i + 1;
		} else if (!isSniChar(name[i])) {
			return fail(invalidSni("byte " + hexByte(static_cast<uint8_t>(name[i])) +
					       " at offset " + std::to_string(i) + " of the host name"));
		}
	}
	return asciiLower(name);
}

// ServerNameList (RFC 6066 §3). Like BoringSSL and OpenSSL, only host_name
// entries are accepted: a name type nobody implements is more likely an
// attempt to make two parsers disagree about the name.
Result<void> parseServerName(Reader ext, ClientHello *hello)
{
	Reader list;
	if (!ext.prefixed16(&list) || !ext.empty())
		return fail(malformed("server_name list length does not match its extension"));
	if (list.empty())
		return fail(malformed("server_name list is empty"));
	bool found = false;
	while (!list.empty()) {
		uint8_t type;
		Reader name;
		if (!list.u8(&type) || !list.prefixed16(&name))
			return fail(malformed("server_name entry runs past the end of its list"));
		if (type != kNameTypeHostName)
			return fail(malformed("server_name entry of unsupported type " + std::to_string(type)));
		if (found)
			return fail(invalidSni("more than one host_name"));
		found = true;
		Result<std::string> host = parseHostName(name.bytes());
		if (!host)
			return fail(std::move(host).error());
		hello->serverName = std::move(*host);
	}
	return {};
}

// ProtocolNameList (RFC 7301 §3.1).
Result<void> parseAlpn(Reader ext, ClientHello *hello)
{
	Reader list;
	if (!ext.prefixed16(&list) || !ext.empty())
		return fail(malformed("ALPN list length does not match its extension"));
	if (list.empty())
		return fail(malformed("ALPN list is empty"));
	while (!list.empty()) {
		Reader name;
		if (!list.prefixed8(&name))
			return fail(malformed("ALPN protocol name runs past the end of its list"));
		if (name.empty())
			return fail(malformed("empty ALPN protocol name"));
		hello->alpn.emplace_back(name.bytes());
	}
	return {};
}

// ClientHello form of supported_versions (RFC 8446 §4.2.1).
Result<void> parseSupportedVersions(Reader ext, ClientHello *hello)
{
	Reader list;
	if (!ext.prefixed8(&list) || !ext.empty())
		return fail(malformed("supported_versions list length does not match its extension"));
	if (list.empty() || list.size() % 2 != 0)
		return fail(malformed("supported_versions list of " + std::to_string(list.size()) + " bytes"));
	while (!list.empty()) {
		uint16_t version = 0;
		(void)list.u16(&version); // cannot fail: the size is even
		if (version == kTls13)
			hello->hasSupportedVersions13 = true;
	}
	return {};
}

// The ClientHello body (RFC 8446 §4.1.2; RFC 5246 §7.4.1.2), without its
// handshake header.
Result<ClientHello> parseBody(std::string_view body)
{
	Reader r(body);
	ClientHello hello;
	Reader sessionId, cipherSuites, compression;
	if (!r.u16(&hello.legacyVersion) || !r.skip(kRandomBytes))
		return fail(malformed("truncated before the session id"));
	if (!r.prefixed8(&sessionId))
		return fail(malformed("session id runs past the end of the message"));
	if (sessionId.size() > kMaxSessionIdBytes)
		return fail(malformed("session id of " + std::to_string(sessionId.size()) + " bytes"));
	if (!r.prefixed16(&cipherSuites))
		return fail(malformed("cipher suites run past the end of the message"));
	if (cipherSuites.empty() || cipherSuites.size() % 2 != 0)
		return fail(malformed("cipher suite list of " + std::to_string(cipherSuites.size()) + " bytes"));
	if (!r.prefixed8(&compression))
		return fail(malformed("compression methods run past the end of the message"));
	if (compression.empty())
		return fail(malformed("no compression method"));
	// A TLS 1.2 hello may end here; one without extensions has no SNI.
	if (r.empty())
		return hello;

	Reader extensions;
	if (!r.prefixed16(&extensions))
		return fail(malformed("extensions run past the end of the message"));
	if (!r.empty())
		return fail(malformed(std::to_string(r.size()) + " bytes after the extensions"));

	std::set<uint16_t> seen;
	while (!extensions.empty()) {
		uint16_t type;
		Reader ext;
		if (!extensions.u16(&type) || !extensions.prefixed16(&ext))
			return fail(malformed("an extension runs past the end of the extension list"));
		// RFC 8446 §4.2: at most one extension of each type. Two
		// server_name extensions would also be two names to choose from.
		if (!seen.insert(type).second)
			return fail(malformed("duplicate extension " + std::to_string(type)));
		Result<void> parsed;
		switch (type) {
		case kExtServerName:
			parsed = parseServerName(ext, &hello);
			break;
		case kExtAlpn:
			parsed = parseAlpn(ext, &hello);
			break;
		case kExtSupportedVersions:
			parsed = parseSupportedVersions(ext, &hello);
			break;
		default:
			break;
		}
		if (!parsed)
			return fail(std::move(parsed).error());
	}
	return hello;
}

Error tooLarge()
{
	return Error(ErrorDomain::Http, 400,
		     "TLS ClientHello exceeds the limit of " + std::to_string(kMaxClientHelloBytes) + " bytes");
}

// Checks a record header, as much of it as has arrived.
Result<void> checkRecordHeader(std::string_view header)
{
	if (header.size() >= 1 && static_cast<uint8_t>(header[0]) != kContentTypeHandshake)
		return fail(malformed("record of content type " + std::to_string(static_cast<uint8_t>(header[0])) +
				      " where a handshake record (22) was expected"));
	if (header.size() >= 2 && header[1] != 3)
		return fail(malformed("record version major " + std::to_string(static_cast<uint8_t>(header[1])) +
				      ", expected 3"));
	if (header.size() >= kRecordHeaderBytes) {
		size_t length = static_cast<uint8_t>(header[3]) << 8 | static_cast<uint8_t>(header[4]);
		if (length == 0)
			return fail(malformed("empty handshake record"));
		if (length > kMaxTlsRecordPayload)
			return fail(malformed("record of " + std::to_string(length) + " bytes, more than " +
					      std::to_string(kMaxTlsRecordPayload)));
	}
	return {};
}

} // namespace

const char *toString(FirstBytes kind)
{
	switch (kind) {
	case FirstBytes::NeedMore: return "need-more";
	case FirstBytes::Tls: return "tls";
	case FirstBytes::Http: return "http";
	case FirstBytes::Other: return "other";
	}
	return "unknown";
}

FirstBytes classifyFirstBytes(std::string_view data)
{
	if (data.empty())
		return FirstBytes::NeedMore;
	if (static_cast<uint8_t>(data[0]) == kContentTypeHandshake) {
		if (data.size() < 2)
			return FirstBytes::NeedMore;
		return data[1] == 3 ? FirstBytes::Tls : FirstBytes::Other;
	}
	if (data[0] < 'A' || data[0] > 'Z')
		return FirstBytes::Other;
	for (size_t i = 1; i < data.size(); i++) {
		char c = data[i];
		if (c == ' ')
			return FirstBytes::Http;
		if (i == kMaxMethodChars || !((c >= 'A' && c <= 'Z') || c == '-'))
			return FirstBytes::Other;
	}
	return FirstBytes::NeedMore;
}

Result<std::optional<ClientHello>> parseClientHello(std::string_view data)
{
	// The handshake message, reassembled from the payloads of the records
	// seen so far (the last one possibly partial).
	std::string message;
	size_t offset = 0;
	for (;;) {
		if (message.size() >= kHandshakeHeaderBytes) {
			if (static_cast<uint8_t>(message[0]) != kHandshakeClientHello)
				return fail(malformed("first handshake message is of type " +
						      std::to_string(static_cast<uint8_t>(message[0])) +
						      ", not ClientHello (1)"));
			size_t length = static_cast<size_t>(static_cast<uint8_t>(message[1])) << 16 |
					static_cast<size_t>(static_cast<uint8_t>(message[2])) << 8 |
					static_cast<uint8_t>(message[3]);
			// At least one record header comes with the message.
			if (kRecordHeaderBytes + kHandshakeHeaderBytes + length > kMaxClientHelloBytes)
				return fail(tooLarge());
			if (message.size() >= kHandshakeHeaderBytes + length) {
				Result<ClientHello> hello =
					parseBody(std::string_view(message).substr(kHandshakeHeaderBytes, length));
				if (!hello)
					return fail(std::move(hello).error());
				return std::optional<ClientHello>(std::move(*hello));
			}
		}

		std::string_view header = data.substr(offset, kRecordHeaderBytes);
		Result<void> checked = checkRecordHeader(header);
		if (!checked)
			return fail(std::move(checked).error());
		if (header.size() < kRecordHeaderBytes)
			return std::optional<ClientHello>();
		size_t length = static_cast<uint8_t>(header[3]) << 8 | static_cast<uint8_t>(header[4]);
		// Records in tiny fragments cost a header each: the bound is
		// on the stream, not only on the message.
		if (offset + kRecordHeaderBytes + length > kMaxClientHelloBytes)
			return fail(tooLarge());
		offset += kRecordHeaderBytes;
		size_t available = std::min(length, data.size() - offset);
		message.append(data.substr(offset, available));
		offset += available;
		// A partial record leaves offset at the end of data: the next
		// round checks the message, then asks for more.
	}
}

} // namespace gvm::proxy
