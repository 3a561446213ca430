// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "daemon/proxy/client_hello.h"

using namespace gvm;
using namespace gvm::proxy;

namespace {

// ---- Real ClientHellos, from a BoringSSL client writing into memory ----

struct ClientOptions {
	const char *serverName = nullptr;
	std::vector<std::string> alpn;
	uint16_t maxVersion = TLS1_3_VERSION;
	bool grease = false;
};

// The bytes a BoringSSL client sends first: its ClientHello, in records.
std::string realClientHello(const ClientOptions &options)
{
	bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
	REQUIRE(ctx);
	REQUIRE(SSL_CTX_set_max_proto_version(ctx.get(), options.maxVersion) == 1);
	SSL_CTX_set_grease_enabled(ctx.get(), options.grease ? 1 : 0);
	bssl::UniquePtr<SSL> ssl(SSL_new(ctx.get()));
	REQUIRE(ssl);
	SSL_set_connect_state(ssl.get());
	BIO *rbio = BIO_new(BIO_s_mem());
	BIO *wbio = BIO_new(BIO_s_mem());
	REQUIRE(rbio);
	REQUIRE(wbio);
	SSL_set_bio(ssl.get(), rbio, wbio); // ssl owns both
	if (options.serverName)
		REQUIRE(SSL_set_tlsext_host_name(ssl.get(), options.serverName) == 1);
	if (!options.alpn.empty()) {
		std::string wire;
		for (const std::string &name : options.alpn) {
			wire += static_cast<char>(name.size());
			wire += name;
		}
		// SSL_set_alpn_protos returns 0 on success.
		REQUIRE(SSL_set_alpn_protos(ssl.get(), reinterpret_cast<const uint8_t *>(wire.data()),
					    wire.size()) == 0);
	}
	int ret = SSL_do_handshake(ssl.get());
	REQUIRE(ret == -1);
	REQUIRE(SSL_get_error(ssl.get(), ret) == SSL_ERROR_WANT_READ);
	const uint8_t *contents = nullptr;
	size_t length = 0;
	REQUIRE(BIO_mem_contents(wbio, &contents, &length) == 1);
	REQUIRE(length > 5);
	ERR_clear_error();
	return std::string(reinterpret_cast<const char *>(contents), length);
}

// ---- Hand-built TLS bytes ----

std::string u8(size_t v)
{
	return std::string(1, static_cast<char>(v & 0xff));
}

std::string u16(size_t v)
{
	return u8(v >> 8) + u8(v);
}

std::string u24(size_t v)
{
	return u8(v >> 16) + u16(v & 0xffff);
}

std::string extension(uint16_t type, const std::string &body)
{
	return u16(type) + u16(body.size()) + body;
}

struct SniEntry {
	uint8_t type;
	std::string name;
};

std::string sniExtension(const std::vector<SniEntry> &entries)
{
	std::string list;
	for (const SniEntry &entry : entries)
		list += u8(entry.type) + u16(entry.name.size()) + entry.name;
	return extension(0, u16(list.size()) + list);
}

std::string sniExtension(const std::string &name)
{
	return sniExtension({{0, name}});
}

std::string alpnExtension(const std::vector<std::string> &names)
{
	std::string list;
	for (const std::string &name : names)
		list += u8(name.size()) + name;
	return extension(16, u16(list.size()) + list);
}

// legacy_version .. compression methods, as a TLS 1.3 client sends them.
std::string helloPrefix(const std::string &sessionId = std::string(32, 's'),
			const std::string &cipherSuites = "\x13\x01\x13\x02", const std::string &compression = std::string(1, '\0'))
{
	return u16(0x0303) + std::string(32, 'r') + u8(sessionId.size()) + sessionId + u16(cipherSuites.size()) +
	       cipherSuites + u8(compression.size()) + compression;
}

std::string helloBody(const std::string &extensions)
{
	return helloPrefix() + u16(extensions.size()) + extensions;
}

std::string handshake(const std::string &body, uint8_t type = 1)
{
	return u8(type) + u24(body.size()) + body;
}

// message split into records of at most fragment bytes each.
std::string records(const std::string &message, size_t fragment = 16384, uint8_t type = 22)
{
	std::string out;
	for (size_t i = 0; i < message.size(); i += fragment) {
		std::string part = message.substr(i, fragment);
		out += u8(type) + "\x03\x01" + u16(part.size()) + part;
	}
	return out;
}

std::string helloStream(const std::string &extensions)
{
	return records(handshake(helloBody(extensions)));
}

// The handshake payload of a record stream (the inverse of records()).
std::string handshakeOf(const std::string &stream)
{
	std::string message;
	size_t offset = 0;
	while (offset + 5 <= stream.size()) {
		REQUIRE(static_cast<uint8_t>(stream[offset]) == 22);
		size_t length = static_cast<uint8_t>(stream[offset + 3]) << 8 | static_cast<uint8_t>(stream[offset + 4]);
		REQUIRE(offset + 5 + length <= stream.size());
		message += stream.substr(offset + 5, length);
		offset += 5 + length;
	}
	REQUIRE(offset == stream.size());
	return message;
}

// message in two records, the first holding split bytes.
std::string twoRecords(const std::string &message, size_t split)
{
	std::string first = message.substr(0, split), second = message.substr(split);
	return "\x16\x03\x01" + u16(first.size()) + first + "\x16\x03\x03" + u16(second.size()) + second;
}

ClientHello parsed(const std::string &stream)
{
	auto result = parseClientHello(stream);
	if (!result)
		FAIL(result.error().message());
	REQUIRE(result->has_value());
	return **result;
}

void requireIncomplete(std::string_view stream)
{
	auto result = parseClientHello(stream);
	if (!result)
		FAIL(result.error().message());
	REQUIRE_FALSE(result->has_value());
}

// Every strict prefix is incomplete; the whole stream parses.
ClientHello parsedByteByByte(const std::string &stream)
{
	for (size_t n = 0; n < stream.size(); n++) {
		INFO("prefix of " << n << " bytes");
		requireIncomplete(std::string_view(stream).substr(0, n));
	}
	return parsed(stream);
}

void requireBadRequest(const std::string &stream, const std::string &mentions)
{
	auto result = parseClientHello(stream);
	REQUIRE_FALSE(result);
	INFO(result.error().context());
	CHECK(result.error().domain() == ErrorDomain::Http);
	CHECK(result.error().code() == 400);
	CHECK_THAT(result.error().context(), Catch::Contains(mentions));
}

} // namespace

TEST_CASE("classifyFirstBytes", "[client-hello]")
{
	struct {
		std::string data;
		FirstBytes expected;
	} cases[] = {
		{"GET / HTTP/1.1\r\n", FirstBytes::Http},
		{"GET ", FirstBytes::Http},
		{"CONNECT a:443 HTTP/1.1\r\n", FirstBytes::Http},
		{"M-SEARCH * HTTP/1.1\r\n", FirstBytes::Http},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", FirstBytes::Http},
		{"ABCDEFGHIJKLMNOPQRST ", FirstBytes::Http}, // 20 letters
		{"ABCDEFGHIJKLMNOPQRSTU ", FirstBytes::Other}, // 21
		{"ABCDEFGHIJKLMNOPQRST", FirstBytes::NeedMore},
		{"ABCDEFGHIJKLMNOPQRSTU", FirstBytes::Other},
		{std::string("\x16\x03\x01", 3), FirstBytes::Tls},
		{std::string("\x16\x03", 2), FirstBytes::Tls},
		{std::string("\x16", 1), FirstBytes::NeedMore},
		{std::string("\x16\x02", 2), FirstBytes::Other},
		{"SSH-2.0-OpenSSH_9.2\r\n", FirstBytes::Other},
		{"SSH-", FirstBytes::NeedMore},
		{"G", FirstBytes::NeedMore},
		{"GE", FirstBytes::NeedMore},
		{"", FirstBytes::NeedMore},
		{"get / HTTP/1.1", FirstBytes::Other},
		{" GET", FirstBytes::Other},
		{"-X ", FirstBytes::Other},
		{"GET/", FirstBytes::Other},
		{std::string("\x00\x01\x02\xff", 4), FirstBytes::Other},
		{std::string("\x80\x2e\x01\x03\x01", 5), FirstBytes::Other}, // SSLv2-style hello
		{"\x17\x03\x03", FirstBytes::Other},
	};
	for (const auto &c : cases) {
		INFO(c.data);
		CHECK(toString(classifyFirstBytes(c.data)) == std::string(toString(c.expected)));
	}
}

TEST_CASE("a real TLS 1.3 ClientHello: SNI and ALPN", "[client-hello]")
{
	std::string stream = realClientHello({"API.Example.com", {"h2", "http/1.1"}, TLS1_3_VERSION, false});
	REQUIRE(classifyFirstBytes(stream) == FirstBytes::Tls);

	SECTION("whole") {
		ClientHello hello = parsed(stream);
		CHECK(hello.serverName == "api.example.com");
		CHECK(hello.alpn == std::vector<std::string>{"h2", "http/1.1"});
		CHECK(hello.legacyVersion == 0x0303);
		CHECK(hello.hasSupportedVersions13);
	}
	SECTION("byte by byte") {
		ClientHello hello = parsedByteByByte(stream);
		CHECK(hello.serverName == "api.example.com");
		CHECK(hello.alpn == std::vector<std::string>{"h2", "http/1.1"});
	}
	SECTION("followed by more records") {
		// 0-RTT data, or anything else after the hello, is not looked at.
		ClientHello hello = parsed(stream + std::string("\x17\x03\x03\x00\x03xyz", 8));
		CHECK(hello.serverName == "api.example.com");
	}
	SECTION("re-framed into two records") {
		std::string message = handshakeOf(stream);
		for (size_t split : {size_t{1}, size_t{2}, size_t{3}, size_t{4}, size_t{5}, size_t{38}, size_t{39},
				     message.size() / 2, message.size() - 1}) {
			INFO("split at " << split << " of " << message.size());
			std::string reframed = twoRecords(message, split);
			ClientHello hello = parsed(reframed);
			CHECK(hello.serverName == "api.example.com");
			CHECK(hello.alpn == std::vector<std::string>{"h2", "http/1.1"});
			CHECK(hello.hasSupportedVersions13);
		}
		ClientHello hello = parsedByteByByte(twoRecords(message, message.size() / 3));
		CHECK(hello.serverName == "api.example.com");
	}
	SECTION("in records of 7 bytes") {
		ClientHello hello = parsedByteByByte(records(handshakeOf(stream), 7));
		CHECK(hello.serverName == "api.example.com");
	}
}

TEST_CASE("a real TLS 1.2-max ClientHello", "[client-hello]")
{
	std::string stream = realClientHello({"example.org", {"http/1.1"}, TLS1_2_VERSION, false});
	ClientHello hello = parsedByteByByte(stream);
	CHECK(hello.serverName == "example.org");
	CHECK(hello.alpn == std::vector<std::string>{"http/1.1"});
	CHECK(hello.legacyVersion == 0x0303);
	CHECK_FALSE(hello.hasSupportedVersions13);
}

TEST_CASE("real ClientHellos without SNI", "[client-hello]")
{
	for (uint16_t version : {uint16_t{TLS1_2_VERSION}, uint16_t{TLS1_3_VERSION}}) {
		INFO("max version " << version);
		ClientHello hello = parsed(realClientHello({nullptr, {}, version, false}));
		CHECK(hello.serverName.empty());
		CHECK(hello.alpn.empty());
		CHECK(hello.hasSupportedVersions13 == (version == TLS1_3_VERSION));
	}
}

TEST_CASE("a real ClientHello with GREASE values", "[client-hello]")
{
	// GREASE adds extensions, cipher suites and versions of reserved
	// values that a parser must skip.
	for (int i = 0; i < 8; i++) {
		ClientHello hello = parsed(realClientHello({"grease.example", {"h2"}, TLS1_3_VERSION, true}));
		CHECK(hello.serverName == "grease.example");
		CHECK(hello.alpn == std::vector<std::string>{"h2"});
		CHECK(hello.hasSupportedVersions13);
	}
}

TEST_CASE("hand-built ClientHellos that are valid", "[client-hello]")
{
	SECTION("one trailing dot is dropped, the name lower-cased") {
		CHECK(parsed(helloStream(sniExtension("Example.COM."))).serverName == "example.com");
	}
	SECTION("underscores, digits and hyphens") {
		CHECK(parsed(helloStream(sniExtension("_srv.a-1.example"))).serverName == "_srv.a-1.example");
	}
	SECTION("a 253-byte name, with a trailing dot too") {
		std::string name = std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') +
				   "." + std::string(61, 'd');
		REQUIRE(name.size() == 253);
		CHECK(parsed(helloStream(sniExtension(name))).serverName == name);
		CHECK(parsed(helloStream(sniExtension(name + "."))).serverName == name);
	}
	SECTION("no extensions at all") {
		ClientHello hello = parsed(records(handshake(helloPrefix())));
		CHECK(hello.serverName.empty());
		CHECK(hello.legacyVersion == 0x0303);
	}
	SECTION("an empty extension block") {
		CHECK(parsed(helloStream("")).serverName.empty());
	}
	SECTION("supported_versions") {
		std::string versions = extension(43, u8(4) + u16(0x0304) + u16(0x0303));
		CHECK(parsed(helloStream(versions)).hasSupportedVersions13);
		std::string only12 = extension(43, u8(2) + u16(0x0303));
		CHECK_FALSE(parsed(helloStream(only12)).hasSupportedVersions13);
	}
	SECTION("a large hello over several records") {
		// 12000 bytes of padding (RFC 7685): two records of 16 KiB max.
		std::string stream = records(handshake(helloBody(sniExtension("big.example") +
								  extension(21, std::string(12000, '\0')))),
					     8000);
		CHECK(parsed(stream).serverName == "big.example");
	}
}

TEST_CASE("malformed records are a 400", "[client-hello]")
{
	std::string good = handshake(helloBody(sniExtension("example.com")));
	requireBadRequest(records(good, 16384, 23), "content type 23");
	requireBadRequest("\x17", "content type 23");
	requireBadRequest(std::string("\x15\x03\x03\x00\x02\x02\x28", 7), "content type 21");
	requireBadRequest("GET / HTTP/1.1\r\n\r\n", "content type 71");
	requireBadRequest("\x16\x02", "version major 2");
	requireBadRequest(std::string("\x16\x03\x01\x00\x00", 5), "empty handshake record");
	requireBadRequest("\x16\x03\x01\x40\x01", "more than 16384");
	// A handshake record, then something else before the hello is whole.
	std::string message = good;
	requireBadRequest(records(message.substr(0, 20)) + records(message.substr(20), 16384, 23),
			  "content type 23");
}

TEST_CASE("a first handshake message that is not a ClientHello is a 400", "[client-hello]")
{
	requireBadRequest(records(handshake(helloBody(""), 2)), "not ClientHello");
	// Decided as soon as the handshake header is in.
	requireBadRequest(std::string("\x16\x03\x01\x00\x50\x02\x00\x00\x4c", 9), "not ClientHello");
}

TEST_CASE("a ClientHello over kMaxClientHelloBytes is a 400", "[client-hello]")
{
	SECTION("by its declared length, as soon as it is known") {
		std::string header("\x16\x03\x01\x40\x00", 5);
		std::string prefix = header + u8(1) + u24(kMaxClientHelloBytes);
		requireBadRequest(prefix, "exceeds the limit");
		requireBadRequest(header + u8(1) + u24(0xffffff), "exceeds the limit");
	}
	SECTION("by the record headers of tiny fragments") {
		std::string message =
			handshake(helloBody(sniExtension("a.example") + extension(21, std::string(12000, '\0'))));
		REQUIRE(message.size() < kMaxClientHelloBytes);
		std::string stream = records(message, 1);
		REQUIRE(stream.size() > kMaxClientHelloBytes);
		requireBadRequest(stream, "exceeds the limit");
		// Refused as soon as the next record would cross the limit.
		requireBadRequest(stream.substr(0, kMaxClientHelloBytes + 1), "exceeds the limit");
		requireIncomplete(std::string_view(stream).substr(0, kMaxClientHelloBytes - 6));
	}
}

TEST_CASE("malformed ClientHello fields are a 400", "[client-hello]")
{
	std::string sni = sniExtension("example.com");
	struct {
		const char *what;
		std::string body;
		const char *mentions;
	} cases[] = {
		{"empty message", "", "truncated"},
		{"truncated random", u16(0x0303) + std::string(10, 'r'), "truncated"},
		{"session id past the end", u16(0x0303) + std::string(32, 'r') + u8(32) + "abc", "session id"},
		{"session id of 33 bytes", helloPrefix(std::string(33, 's')) + u16(0), "session id of 33"},
		{"odd cipher suites", helloPrefix(std::string(32, 's'), "\x13\x01\x13") + u16(0), "cipher suite list"},
		{"no cipher suites", helloPrefix(std::string(32, 's'), "") + u16(0), "cipher suite list"},
		{"no compression", helloPrefix(std::string(32, 's'), "\x13\x01", "") + u16(0), "compression"},
		{"one byte of extension length", helloPrefix() + u8(0), "extensions run past"},
		{"extensions past the end", helloPrefix() + u16(sni.size() + 5) + sni, "extensions run past"},
		{"bytes after the extensions", helloBody(sni) + "xy", "2 bytes after the extensions"},
		{"truncated extension header", helloBody(sni + u8(0)), "runs past the end of the extension list"},
		{"extension length past the block", helloBody(sni + u16(0x1234) + u16(10) + "abc"),
		 "runs past the end of the extension list"},
		{"duplicate extension", helloBody(sni + alpnExtension({"h2"}) + alpnExtension({"h2"})),
		 "duplicate extension 16"},
		{"two server_name extensions", helloBody(sni + sni), "duplicate extension 0"},
		{"SNI list length short of the extension", helloBody(extension(0, u16(3) + u8(0) + u16(1) + "ab")),
		 "server_name list length"},
		{"SNI list length past the extension", helloBody(extension(0, u16(30) + u8(0) + u16(1) + "a")),
		 "server_name list length"},
		{"empty SNI list", helloBody(extension(0, u16(0))), "server_name list is empty"},
		{"SNI name length past the list", helloBody(extension(0, u16(14) + u8(0) + u16(50) + "example.com")),
		 "runs past the end of its list"},
		{"SNI entry without a length", helloBody(extension(0, u16(2) + u8(0) + u8(0))),
		 "runs past the end of its list"},
		{"SNI of unknown name type", helloBody(sniExtension({{1, "example.com"}})), "unsupported type 1"},
		{"two host names", helloBody(sniExtension({{0, "a.example"}, {0, "b.example"}})),
		 "invalid SNI: more than one host_name"},
		{"SNI with a space", helloBody(sniExtension("exa mple.com")), "invalid SNI: byte 0x20"},
		{"SNI with a NUL", helloBody(sniExtension(std::string("example\0.com", 12))), "invalid SNI: byte 0x00"},
		{"SNI with a slash", helloBody(sniExtension("example.com/x")), "invalid SNI: byte 0x2f"},
		{"SNI with a colon", helloBody(sniExtension("example.com:443")), "invalid SNI: byte 0x3a"},
		{"SNI with UTF-8", helloBody(sniExtension("b\xc3\xbc"
							  "cher.example")),
		 "invalid SNI: byte 0xc3"},
		{"empty SNI", helloBody(sniExtension("")), "invalid SNI: empty host name"},
		{"SNI of one dot", helloBody(sniExtension(".")), "invalid SNI: empty host name"},
		{"SNI with an empty label", helloBody(sniExtension("a..example")), "invalid SNI: host name has an empty label"},
		{"SNI with a leading dot", helloBody(sniExtension(".example")), "invalid SNI: host name has an empty label"},
		{"SNI with two trailing dots", helloBody(sniExtension("example..")), "invalid SNI: host name has an empty label"},
		{"SNI of 254 bytes", helloBody(sniExtension(std::string(60, 'a') + "." + std::string(60, 'b') + "." +
							  std::string(60, 'c') + "." + std::string(60, 'd') + "." +
							  std::string(10, 'e'))),
		 "invalid SNI: host name of 254 bytes"},
		{"SNI label of 64 bytes", helloBody(sniExtension(std::string(64, 'a') + ".example")),
		 "label longer than 63"},
		{"empty ALPN list", helloBody(extension(16, u16(0))), "ALPN list is empty"},
		{"ALPN list shorter than its extension", helloBody(extension(16, u16(3) + u8(2) + "h2" + u8(0))),
		 "ALPN list length"},
		{"zero-length ALPN name", helloBody(extension(16, u16(4) + u8(2) + "h2" + u8(0))), "empty ALPN protocol name"},
		{"ALPN name past the list", helloBody(extension(16, u16(3) + u8(5) + "h2")), "ALPN protocol name runs past"},
		{"ALPN list length mismatch", helloBody(extension(16, u16(2) + u8(1) + "h" + "x")), "ALPN list length"},
		{"odd supported_versions", helloBody(extension(43, u8(3) + u16(0x0304) + u8(3))), "supported_versions list of 3"},
		{"empty supported_versions", helloBody(extension(43, u8(0))), "supported_versions list of 0"},
		{"supported_versions length mismatch", helloBody(extension(43, u8(4) + u16(0x0304))),
		 "supported_versions list length"},
	};
	for (const auto &c : cases) {
		INFO(c.what);
		std::string stream = records(handshake(c.body));
		requireBadRequest(stream, c.mentions);
		// The same bytes one at a time: incomplete, until the error.
		for (size_t n = 0; n < stream.size(); n++) {
			auto result = parseClientHello(std::string_view(stream).substr(0, n));
			REQUIRE(result);
			REQUIRE_FALSE(result->has_value());
		}
	}
}

TEST_CASE("a real ClientHello with a mangled SNI length is a 400", "[client-hello]")
{
	std::string stream = realClientHello({"victim.example", {"h2"}, TLS1_3_VERSION, false});
	size_t at = stream.find("victim.example");
	REQUIRE(at != std::string::npos);
	REQUIRE(at >= 2);
	// The host name length sits right before the name: make it run past
	// the end of the server_name list.
	std::string mangled = stream;
	mangled[at - 1] = static_cast<char>(static_cast<uint8_t>(mangled[at - 1]) + 1);
	requireBadRequest(mangled, "runs past the end of its list");

	// The list length, three bytes before that, made to run past the
	// extension.
	mangled = stream;
	mangled[at - 4] = static_cast<char>(static_cast<uint8_t>(mangled[at - 4]) + 1);
	requireBadRequest(mangled, "server_name list length");

	// A space in the name.
	mangled = stream;
	mangled[at + 6] = ' ';
	requireBadRequest(mangled, "invalid SNI");

	// Not a handshake record.
	mangled = stream;
	mangled[0] = 0x17;
	requireBadRequest(mangled, "content type 23");
}

TEST_CASE("mutated ClientHellos never crash", "[client-hello]")
{
	// Fuzz-grade care in miniature: flip, drop, insert and truncate bytes
	// of real hellos (single record and re-framed); every outcome must be
	// a hello, a request for more bytes or a 400.
	std::vector<std::string> seeds = {
		realClientHello({"seed.example", {"h2", "http/1.1"}, TLS1_3_VERSION, true}),
		realClientHello({"seed.example", {}, TLS1_2_VERSION, false}),
	};
	seeds.push_back(twoRecords(handshakeOf(seeds[0]), 100));
	std::mt19937 random(20240611);
	size_t hellos = 0, incomplete = 0, errors = 0;
	for (int round = 0; round < 20000; round++) {
		std::string data = seeds[static_cast<size_t>(round) % seeds.size()];
		int edits = 1 + static_cast<int>(random() % 4);
		for (int e = 0; e < edits && !data.empty(); e++) {
			size_t at = random() % data.size();
			switch (random() % 5) {
			case 0: data[at] = static_cast<char>(random()); break;
			case 1: data[at] = static_cast<char>(data[at] ^ (1 << (random() % 8))); break;
			case 2: data.erase(at, 1 + random() % 8); break;
			case 3: {
				size_t count = 1 + random() % 4;
				data.insert(at, std::string(count, static_cast<char>(random())));
				break;
			}
			case 4: data.resize(at); break;
			}
		}
		auto result = parseClientHello(data);
		if (!result) {
			CHECK(result.error().domain() == ErrorDomain::Http);
			CHECK(result.error().code() == 400);
			errors++;
		} else if (result->has_value()) {
			hellos++;
		} else {
			incomplete++;
		}
	}
	// Each outcome shows up, so the mutations reach deep into the parser.
	CHECK(hellos > 0);
	CHECK(incomplete > 0);
	CHECK(errors > 0);
}
