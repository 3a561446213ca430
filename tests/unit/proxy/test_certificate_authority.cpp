// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "daemon/proxy/certificate_authority.h"
#include "daemon/proxy/tls_context.h"

using gvm::proxy::CertificateAuthority;
using gvm::proxy::LeafCertificate;

namespace {

std::unique_ptr<CertificateAuthority> makeCa(std::string_view label = "test",
					     size_t entries = gvm::proxy::kLeafCacheEntries)
{
	auto ca = CertificateAuthority::create(label, entries);
	REQUIRE(ca);
	return std::move(*ca);
}

std::shared_ptr<const LeafCertificate> leafOf(CertificateAuthority &ca, std::string_view host)
{
	auto leaf = ca.leafFor(host);
	INFO(host);
	if (!leaf)
		FAIL(leaf.error().message());
	return *leaf;
}

// X509_verify_cert of leaf against root as the only trust anchor, TLS server
// purpose; returns the X509_V_* result.
int verify(X509 *root, X509 *leaf, const std::function<void(X509_VERIFY_PARAM *)> &configure = {})
{
	bssl::UniquePtr<X509_STORE> store(X509_STORE_new());
	REQUIRE(X509_STORE_add_cert(store.get(), root) == 1);
	bssl::UniquePtr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
	REQUIRE(X509_STORE_CTX_init(ctx.get(), store.get(), leaf, nullptr) == 1);
	X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx.get());
	REQUIRE(X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER) == 1);
	if (configure)
		configure(param);
	int result = X509_verify_cert(ctx.get()) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx.get());
	ERR_clear_error();
	return result;
}

int verifyHost(X509 *root, X509 *leaf, const std::string &host)
{
	return verify(root, leaf, [&](X509_VERIFY_PARAM *param) {
		REQUIRE(X509_VERIFY_PARAM_set1_host(param, host.data(), host.size()) == 1);
	});
}

int verifyIp(X509 *root, X509 *leaf, const std::string &ip)
{
	return verify(root, leaf, [&](X509_VERIFY_PARAM *param) {
		REQUIRE(X509_VERIFY_PARAM_set1_ip_asc(param, ip.c_str()) == 1);
	});
}

// Seconds from now to t (negative if t is in the past).
long secondsFromNow(const ASN1_TIME *t)
{
	bssl::UniquePtr<ASN1_TIME> now(ASN1_TIME_set(nullptr, time(nullptr)));
	int days = 0, seconds = 0;
	REQUIRE(ASN1_TIME_diff(&days, &seconds, now.get(), t) == 1);
	return days * 86400L + seconds;
}

std::string subjectEntry(X509 *cert, int nid)
{
	X509_NAME *name = X509_get_subject_name(cert);
	int index = X509_NAME_get_index_by_NID(name, nid, -1);
	REQUIRE(index >= 0);
	const ASN1_STRING *value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
	return std::string(reinterpret_cast<const char *>(ASN1_STRING_get0_data(value)),
			   static_cast<size_t>(ASN1_STRING_length(value)));
}

bool extensionCritical(X509 *cert, int nid)
{
	int index = X509_get_ext_by_NID(cert, nid, -1);
	REQUIRE(index >= 0);
	return X509_EXTENSION_get_critical(X509_get_ext(cert, index)) == 1;
}

struct SanEntry {
	int type;
	std::string value;
};

std::vector<SanEntry> subjectAltNames(X509 *cert)
{
	bssl::UniquePtr<GENERAL_NAMES> names(static_cast<GENERAL_NAMES *>(
		X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
	REQUIRE(names);
	std::vector<SanEntry> out;
	for (size_t i = 0; i < sk_GENERAL_NAME_num(names.get()); i++) {
		const GENERAL_NAME *name = sk_GENERAL_NAME_value(names.get(), i);
		const ASN1_STRING *value = name->type == GEN_DNS ? name->d.dNSName
				       : name->type == GEN_IPADD ? name->d.iPAddress
								 : nullptr;
		REQUIRE(value);
		out.push_back({name->type, std::string(reinterpret_cast<const char *>(ASN1_STRING_get0_data(value)),
						       static_cast<size_t>(ASN1_STRING_length(value)))});
	}
	return out;
}

void requireP256(EVP_PKEY *key)
{
	REQUIRE(EVP_PKEY_id(key) == EVP_PKEY_EC);
	const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(key);
	REQUIRE(ec);
	CHECK(EC_GROUP_get_curve_name(EC_KEY_get0_group(ec)) == NID_X9_62_prime256v1);
}

void requirePositiveSerial(X509 *cert)
{
	const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
	CHECK(ASN1_STRING_type(serial) == V_ASN1_INTEGER); // not V_ASN1_NEG_INTEGER
	bssl::UniquePtr<BIGNUM> bn(ASN1_INTEGER_to_BN(serial, nullptr));
	REQUIRE(bn);
	CHECK(!BN_is_zero(bn.get()));
	CHECK(BN_num_bits(bn.get()) <= 128);
	// Random 128 bits have fewer than 96 significant ones with p = 2^-32.
	CHECK(BN_num_bits(bn.get()) > 96);
}

} // namespace

TEST_CASE("CA certificate is a P-256 self-signed CA with pathlen 0", "[ca]")
{
	auto ca = makeCa("sandbox-1");
	X509 *cert = ca->certificate();
	REQUIRE(cert);

	CHECK(X509_get_version(cert) == X509_VERSION_3);
	CHECK(subjectEntry(cert, NID_commonName) == "gvm sandbox sandbox-1 CA");
	CHECK(subjectEntry(cert, NID_organizationName) == "gvm");
	CHECK(X509_NAME_cmp(X509_get_subject_name(cert), X509_get_issuer_name(cert)) == 0);

	CHECK(X509_check_ca(cert) == 1);
	CHECK(X509_get_pathlen(cert) == 0);
	CHECK(extensionCritical(cert, NID_basic_constraints));
	CHECK(extensionCritical(cert, NID_key_usage));
	CHECK(X509_get_key_usage(cert) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
	CHECK(X509_get0_subject_key_id(cert) != nullptr);
	CHECK(X509_get_signature_nid(cert) == NID_ecdsa_with_SHA256);
	requirePositiveSerial(cert);

	bssl::UniquePtr<EVP_PKEY> key(X509_get_pubkey(cert));
	REQUIRE(key);
	requireP256(key.get());
	CHECK(X509_verify(cert, key.get()) == 1);
	CHECK(verify(cert, cert) == X509_V_OK);

	long notBefore = secondsFromNow(X509_get0_notBefore(cert));
	long notAfter = secondsFromNow(X509_get0_notAfter(cert));
	CHECK(notBefore <= -3600 + 5);
	CHECK(notBefore >= -3600 - 5);
	CHECK(notAfter >= 30 * 86400L - 5);
	CHECK(notAfter <= 30 * 86400L + 5);
}

TEST_CASE("CA certificates are distinct per sandbox and PEM is exportable", "[ca]")
{
	auto a = makeCa("a");
	auto b = makeCa("b");
	CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(a->certificate()), X509_get0_serialNumber(b->certificate())) != 0);
	CHECK(X509_cmp(a->certificate(), b->certificate()) != 0);

	std::string pem = a->certificatePem();
	CHECK(pem.rfind("-----BEGIN CERTIFICATE-----\n", 0) == 0);
	bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
	bssl::UniquePtr<X509> parsed(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
	REQUIRE(parsed);
	CHECK(X509_cmp(parsed.get(), a->certificate()) == 0);
	CHECK(pem.find("PRIVATE KEY") == std::string::npos);
}

TEST_CASE("CA common name stays within 64 bytes for a long label", "[ca]")
{
	auto ca = makeCa(std::string(100, 'x'));
	std::string cn = subjectEntry(ca->certificate(), NID_commonName);
	CHECK(cn.size() == 64);
	CHECK(cn.rfind("gvm sandbox xxx", 0) == 0);
	CHECK(cn.substr(cn.size() - 3) == " CA");
}

TEST_CASE("CA refuses an empty leaf cache", "[ca]")
{
	CHECK_FALSE(CertificateAuthority::create("x", 0));
}

TEST_CASE("leaf for a DNS name has the expected profile", "[leaf]")
{
	auto ca = makeCa();
	auto leaf = leafOf(*ca, "API.GitHub.com");
	X509 *cert = leaf->certificate.get();

	auto sans = subjectAltNames(cert);
	REQUIRE(sans.size() == 1);
	CHECK(sans[0].type == GEN_DNS);
	CHECK(sans[0].value == "api.github.com");
	CHECK(subjectEntry(cert, NID_commonName) == "api.github.com");
	CHECK(X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(ca->certificate())) == 0);

	CHECK(X509_check_ca(cert) == 0);
	CHECK(X509_get_ext_by_NID(cert, NID_basic_constraints, -1) >= 0);
	CHECK(extensionCritical(cert, NID_key_usage));
	CHECK(X509_get_key_usage(cert) == KU_DIGITAL_SIGNATURE);
	CHECK(X509_get_extended_key_usage(cert) == XKU_SSL_SERVER);
	CHECK(X509_get_signature_nid(cert) == NID_ecdsa_with_SHA256);
	requirePositiveSerial(cert);

	const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(cert);
	REQUIRE(aki);
	CHECK(ASN1_OCTET_STRING_cmp(aki, X509_get0_subject_key_id(ca->certificate())) == 0);
	CHECK(X509_get0_subject_key_id(cert) != nullptr);

	requireP256(leaf->key.get());
	bssl::UniquePtr<EVP_PKEY> certKey(X509_get_pubkey(cert));
	CHECK(EVP_PKEY_cmp(certKey.get(), leaf->key.get()) == 1);
	bssl::UniquePtr<EVP_PKEY> caKey(X509_get_pubkey(ca->certificate()));
	CHECK(EVP_PKEY_cmp(certKey.get(), caKey.get()) == 0);

	long notBefore = secondsFromNow(X509_get0_notBefore(cert));
	long notAfter = secondsFromNow(X509_get0_notAfter(cert));
	CHECK(notBefore <= -3600 + 5);
	CHECK(notBefore >= -3600 - 5);
	CHECK(notAfter >= 7 * 86400L - 5);
	CHECK(notAfter <= 7 * 86400L + 5);
	CHECK(secondsFromNow(X509_get0_notAfter(ca->certificate())) >= notAfter);
}

TEST_CASE("leaf verifies for its own name only", "[leaf][verify]")
{
	auto ca = makeCa();
	auto leaf = leafOf(*ca, "api.github.com");
	X509 *root = ca->certificate();
	X509 *cert = leaf->certificate.get();

	CHECK(verifyHost(root, cert, "api.github.com") == X509_V_OK);
	CHECK(verifyHost(root, cert, "API.GITHUB.COM") == X509_V_OK);
	CHECK(verifyHost(root, cert, "github.com") == X509_V_ERR_HOSTNAME_MISMATCH);
	CHECK(verifyHost(root, cert, "evil.example") == X509_V_ERR_HOSTNAME_MISMATCH);
	CHECK(verifyHost(root, cert, "x.api.github.com") == X509_V_ERR_HOSTNAME_MISMATCH);
	CHECK(verifyIp(root, cert, "140.82.112.5") == X509_V_ERR_IP_ADDRESS_MISMATCH);
}

TEST_CASE("leaf for an IP literal carries an iPAddress SAN", "[leaf][verify]")
{
	auto ca = makeCa();
	X509 *root = ca->certificate();

	SECTION("IPv4")
	{
		auto leaf = leafOf(*ca, "192.0.2.7");
		auto sans = subjectAltNames(leaf->certificate.get());
		REQUIRE(sans.size() == 1);
		CHECK(sans[0].type == GEN_IPADD);
		CHECK(sans[0].value == std::string("\xc0\x00\x02\x07", 4));
		CHECK(subjectEntry(leaf->certificate.get(), NID_commonName) == "192.0.2.7");
		CHECK(verifyIp(root, leaf->certificate.get(), "192.0.2.7") == X509_V_OK);
		CHECK(verifyIp(root, leaf->certificate.get(), "192.0.2.8") == X509_V_ERR_IP_ADDRESS_MISMATCH);
		CHECK(verifyHost(root, leaf->certificate.get(), "example.com") == X509_V_ERR_HOSTNAME_MISMATCH);
	}
	SECTION("IPv6, cached under its canonical form")
	{
		auto leaf = leafOf(*ca, "2001:DB8:0:0::1");
		auto sans = subjectAltNames(leaf->certificate.get());
		REQUIRE(sans.size() == 1);
		CHECK(sans[0].type == GEN_IPADD);
		CHECK(sans[0].value.size() == 16);
		CHECK(subjectEntry(leaf->certificate.get(), NID_commonName) == "2001:db8::1");
		CHECK(verifyIp(root, leaf->certificate.get(), "2001:db8::1") == X509_V_OK);
		CHECK(verifyIp(root, leaf->certificate.get(), "2001:db8::2") == X509_V_ERR_IP_ADDRESS_MISMATCH);
		CHECK(verifyIp(root, leaf->certificate.get(), "192.0.2.7") == X509_V_ERR_IP_ADDRESS_MISMATCH);
		CHECK(leafOf(*ca, "2001:db8::1") == leaf);
		CHECK(ca->mintedCount() == 1);
	}
}

TEST_CASE("leaf of one CA does not verify against another CA", "[leaf][verify]")
{
	auto ca1 = makeCa("one");
	auto ca2 = makeCa("two");
	auto leaf = leafOf(*ca1, "example.com");
	CHECK(verifyHost(ca1->certificate(), leaf->certificate.get(), "example.com") == X509_V_OK);
	CHECK(verifyHost(ca2->certificate(), leaf->certificate.get(), "example.com") ==
	      X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
}

TEST_CASE("long names are accepted and the CN truncated to 64 bytes", "[leaf]")
{
	auto ca = makeCa();
	std::string label(63, 'a');
	std::string host = label + "." + label + "." + label + "." + std::string(61, 'b'); // 253 bytes
	REQUIRE(host.size() == 253);
	auto leaf = leafOf(*ca, host);
	CHECK(subjectEntry(leaf->certificate.get(), NID_commonName) == host.substr(0, 64));
	auto sans = subjectAltNames(leaf->certificate.get());
	REQUIRE(sans.size() == 1);
	CHECK(sans[0].value == host);
	CHECK(verifyHost(ca->certificate(), leaf->certificate.get(), host) == X509_V_OK);
}

TEST_CASE("leaves are cached by name", "[cache]")
{
	auto ca = makeCa();
	auto first = leafOf(*ca, "example.com");
	CHECK(ca->mintedCount() == 1);
	CHECK(ca->cacheSize() == 1);

	CHECK(leafOf(*ca, "example.com") == first);
	CHECK(leafOf(*ca, "EXAMPLE.com") == first);
	CHECK(leafOf(*ca, "example.com.") == first);
	CHECK(ca->mintedCount() == 1);
	CHECK(ca->cacheSize() == 1);

	auto other = leafOf(*ca, "example.org");
	CHECK(other != first);
	CHECK(ca->mintedCount() == 2);
	CHECK(ca->cacheSize() == 2);
	// One leaf key per CA, different certificates and serials.
	CHECK(other->key.get() == first->key.get());
	CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(other->certificate.get()),
			       X509_get0_serialNumber(first->certificate.get())) != 0);
}

TEST_CASE("leaf cache evicts the least recently used name", "[cache]")
{
	auto ca = makeCa("lru", 2);
	auto a = leafOf(*ca, "a.example");
	auto b = leafOf(*ca, "b.example");
	CHECK(leafOf(*ca, "a.example") == a); // a is now the most recent
	auto c = leafOf(*ca, "c.example");     // evicts b
	CHECK(ca->cacheSize() == 2);
	CHECK(ca->mintedCount() == 3);

	CHECK(leafOf(*ca, "a.example") == a);
	CHECK(leafOf(*ca, "c.example") == c);
	CHECK(ca->mintedCount() == 3);

	auto b2 = leafOf(*ca, "b.example");
	CHECK(b2 != b);
	CHECK(ca->mintedCount() == 4);
	CHECK(ca->cacheSize() == 2);
	// An evicted leaf stays usable for whoever holds it.
	CHECK(verifyHost(ca->certificate(), b->certificate.get(), "b.example") == X509_V_OK);
}

TEST_CASE("invalid host names are refused", "[leaf][validate]")
{
	auto ca = makeCa();
	const std::string longLabel(64, 'a');
	const std::string tooLong = std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') +
				    "." + std::string(62, 'd'); // 254 bytes
	REQUIRE(tooLong.size() == 254);

	const std::string bad[] = {
		"",
		".",
		"..",
		"a..b",
		".example.com",
		"example.com..",
		longLabel + ".com",
		tooLong,
		"exa mple.com",
		"example.com/evil",
		"example.com:443",
		"[::1]",
		"fe80::1%eth0",
		"ex\xc3\xa4mple.com",
		std::string("exa\0mple.com", 12),
		"ex\"ample.com",
		"foo.*.example.com",
		"f*o.example.com",
		"*",
		"*.com",
	};
	for (const auto &host : bad) {
		INFO("host: " << host);
		auto leaf = ca->leafFor(host);
		CHECK_FALSE(leaf);
		if (!leaf) {
			CHECK(leaf.error().domain() == gvm::ErrorDomain::Http);
			CHECK(leaf.error().code() == 400);
			CHECK(leaf.error().context().find("invalid TLS host name") != std::string::npos);
		}
	}
	CHECK(ca->mintedCount() == 0);
	CHECK(ca->cacheSize() == 0);

	// Control characters are escaped in the error, not echoed.
	auto leaf = ca->leafFor("a\nb");
	REQUIRE_FALSE(leaf);
	CHECK(leaf.error().context().find('\n') == std::string::npos);
	CHECK(leaf.error().context().find("a\\x0ab") != std::string::npos);
}

TEST_CASE("unusual but valid host names are accepted", "[leaf][validate]")
{
	auto ca = makeCa();
	const std::string good[] = {"localhost", "under_score.example", "xn--bcher-kva.example", "a-b.c-d.e",
				    "*.example.com", std::string(63, 'x')};
	for (const auto &host : good) {
		INFO("host: " << host);
		auto leaf = ca->leafFor(host);
		if (!leaf)
			FAIL(leaf.error().message());
	}
	auto wildcard = leafOf(*ca, "*.example.com");
	CHECK(verifyHost(ca->certificate(), wildcard->certificate.get(), "www.example.com") == X509_V_OK);
	CHECK(verifyHost(ca->certificate(), wildcard->certificate.get(), "example.com") ==
	      X509_V_ERR_HOSTNAME_MISMATCH);
}

namespace {

struct HandshakeResult {
	bool ok = false;
	long verifyResult = X509_V_OK;
	uint16_t version = 0;
};

// Where the in-memory server takes its certificate from.
struct ServerSide {
	CertificateAuthority *ca;
	std::string fixedName; // if empty, mint by the client's SNI (as the worker does)
};

int selectLeaf(SSL *ssl, void *arg)
{
	auto *server = static_cast<ServerSide *>(arg);
	std::string name = server->fixedName;
	if (name.empty()) {
		const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
		if (!sni)
			return 0;
		name = sni;
	}
	auto leaf = server->ca->leafFor(name);
	if (!leaf)
		return 0;
	return useLeaf(ssl, **leaf, *server->ca) ? 1 : 0;
}

HandshakeResult handshake(ServerSide server, bssl::UniquePtr<SSL> clientSsl, SSL_CTX *serverCtx);

// A TLS handshake between two SSL objects over a BIO pair. The client trusts
// only clientRoot and checks hostname; the server mints its leaf from server.
HandshakeResult handshake(ServerSide server, X509 *clientRoot, const std::string &hostname, uint16_t version,
			  bool isIp = false)
{
	bssl::UniquePtr<SSL_CTX> serverCtx(SSL_CTX_new(TLS_method()));
	bssl::UniquePtr<SSL_CTX> clientCtx(SSL_CTX_new(TLS_method()));
	REQUIRE(serverCtx);
	REQUIRE(clientCtx);
	for (SSL_CTX *ctx : {serverCtx.get(), clientCtx.get()}) {
		REQUIRE(SSL_CTX_set_min_proto_version(ctx, version) == 1);
		REQUIRE(SSL_CTX_set_max_proto_version(ctx, version) == 1);
	}
	SSL_CTX_set_verify(clientCtx.get(), SSL_VERIFY_PEER, nullptr);
	REQUIRE(X509_STORE_add_cert(SSL_CTX_get_cert_store(clientCtx.get()), clientRoot) == 1);
	bssl::UniquePtr<SSL> clientSsl(SSL_new(clientCtx.get()));
	REQUIRE(clientSsl);
	if (isIp) {
		// No SNI for an IP literal (RFC 6066); the client checks the iPAddress SAN.
		REQUIRE(X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(clientSsl.get()), hostname.c_str()) == 1);
	} else {
		REQUIRE(SSL_set_tlsext_host_name(clientSsl.get(), hostname.c_str()) == 1);
		REQUIRE(SSL_set1_host(clientSsl.get(), hostname.c_str()) == 1);
	}
	return handshake(server, std::move(clientSsl), serverCtx.get());
}

// The same with a client session made elsewhere (the worker's UpstreamTls).
HandshakeResult handshake(ServerSide server, bssl::UniquePtr<SSL> clientSsl, SSL_CTX *serverCtx)
{
	bssl::UniquePtr<SSL_CTX> ownCtx;
	if (!serverCtx) {
		ownCtx.reset(SSL_CTX_new(TLS_method()));
		REQUIRE(ownCtx);
		serverCtx = ownCtx.get();
	}
	SSL_CTX_set_cert_cb(serverCtx, selectLeaf, &server);
	bssl::UniquePtr<SSL> serverSsl(SSL_new(serverCtx));
	REQUIRE(serverSsl);
	SSL_set_accept_state(serverSsl.get());
	SSL_set_connect_state(clientSsl.get());

	BIO *clientBio = nullptr;
	BIO *serverBio = nullptr;
	REQUIRE(BIO_new_bio_pair(&clientBio, 0, &serverBio, 0) == 1);
	SSL_set_bio(clientSsl.get(), clientBio, clientBio); // each SSL takes its end
	SSL_set_bio(serverSsl.get(), serverBio, serverBio);

	HandshakeResult result;
	bool clientDone = false;
	bool serverDone = false;
	for (int round = 0; round < 20 && !(clientDone && serverDone); round++) {
		for (auto [ssl, done] : {std::pair{clientSsl.get(), &clientDone}, std::pair{serverSsl.get(), &serverDone}}) {
			if (*done)
				continue;
			int rc = SSL_do_handshake(ssl);
			if (rc == 1) {
				*done = true;
				continue;
			}
			int err = SSL_get_error(ssl, rc);
			if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
				result.verifyResult = SSL_get_verify_result(clientSsl.get());
				ERR_clear_error();
				return result;
			}
		}
	}
	result.ok = clientDone && serverDone;
	result.verifyResult = SSL_get_verify_result(clientSsl.get());
	result.version = static_cast<uint16_t>(SSL_version(clientSsl.get()));
	return result;
}

} // namespace

TEST_CASE("TLS handshake with a minted leaf", "[tls]")
{
	uint16_t version = GENERATE(uint16_t(TLS1_3_VERSION), uint16_t(TLS1_2_VERSION));
	INFO("version " << std::hex << version);
	auto ca = makeCa("tls");

	SECTION("succeeds for the name in SNI")
	{
		auto result = handshake({ca.get(), ""}, ca->certificate(), "api.github.com", version);
		CHECK(result.ok);
		CHECK(result.verifyResult == X509_V_OK);
		CHECK(result.version == version);
		CHECK(ca->mintedCount() == 1);

		// A second connection reuses the cached leaf.
		auto again = handshake({ca.get(), ""}, ca->certificate(), "api.github.com", version);
		CHECK(again.ok);
		CHECK(ca->mintedCount() == 1);
	}
	SECTION("succeeds for an IP literal")
	{
		auto result = handshake({ca.get(), "192.0.2.1"}, ca->certificate(), "192.0.2.1", version, true);
		CHECK(result.ok);
		CHECK(result.verifyResult == X509_V_OK);
		auto wrong = handshake({ca.get(), "192.0.2.1"}, ca->certificate(), "192.0.2.2", version, true);
		CHECK_FALSE(wrong.ok);
		CHECK(wrong.verifyResult == X509_V_ERR_IP_ADDRESS_MISMATCH);
	}
	SECTION("fails verification when the leaf is for another name")
	{
		auto result = handshake({ca.get(), "api.github.com"}, ca->certificate(), "github.com", version);
		CHECK_FALSE(result.ok);
		CHECK(result.verifyResult == X509_V_ERR_HOSTNAME_MISMATCH);
	}
	SECTION("fails verification when the client trusts another CA")
	{
		auto other = makeCa("other");
		auto result = handshake({ca.get(), ""}, other->certificate(), "api.github.com", version);
		CHECK_FALSE(result.ok);
		// useLeaf sends the CA along, so the client sees an untrusted self-signed root.
		CHECK(result.verifyResult == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN);
	}
}

namespace {

// A self-signed root, or (with an issuer) a CA certificate for `subject`'s
// name and `key` signed by that issuer: enough to put a trusted certificate
// that is not self-signed into a bundle.
bssl::UniquePtr<X509> caCertificate(X509_NAME *subject, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuerKey)
{
	bssl::UniquePtr<X509> cert(X509_new());
	REQUIRE(cert);
	REQUIRE(X509_set_version(cert.get(), X509_VERSION_3));
	REQUIRE(ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 7));
	REQUIRE(X509_set_subject_name(cert.get(), subject));
	REQUIRE(X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : subject));
	REQUIRE(X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600));
	REQUIRE(X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400));
	REQUIRE(X509_set_pubkey(cert.get(), key));
	bssl::UniquePtr<X509_EXTENSION> ca(X509V3_EXT_nconf_nid(nullptr, nullptr, NID_basic_constraints, "critical,CA:TRUE"));
	REQUIRE(ca);
	REQUIRE(X509_add_ext(cert.get(), ca.get(), -1));
	REQUIRE(X509_sign(cert.get(), issuerKey ? issuerKey : key, EVP_sha256()));
	return cert;
}

std::string pemOf(X509 *cert)
{
	bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
	REQUIRE(PEM_write_bio_X509(bio.get(), cert));
	const uint8_t *data = nullptr;
	size_t length = 0;
	REQUIRE(BIO_mem_contents(bio.get(), &data, &length));
	return std::string(reinterpret_cast<const char *>(data), length);
}

} // namespace

TEST_CASE("UpstreamTls parses only the trusted certificates a peer's chain reaches", "[tls][upstream]")
{
	using gvm::proxy::UpstreamTls;
	std::vector<std::unique_ptr<CertificateAuthority>> cas;
	std::string bundle;
	for (int i = 0; i < 12; ++i) {
		cas.push_back(makeCa("bundle-" + std::to_string(i)));
		bundle += cas.back()->certificatePem();
	}
	auto made = UpstreamTls::create(bundle + cas[3]->certificatePem(), "");
	REQUIRE(made);
	UpstreamTls &tls = *made;
	CHECK(tls.trustedCount() == 12); // the repeated one counts once
	CHECK(tls.parsedCount() == 0);

	auto session = [&](const std::string &host) {
		auto ssl = tls.newSession(host);
		REQUIRE(ssl);
		return std::move(*ssl);
	};
	auto ok = handshake({cas[7].get(), ""}, session("api.example.com"), nullptr);
	CHECK(ok.ok);
	CHECK(ok.verifyResult == X509_V_OK);
	CHECK(tls.parsedCount() == 1);
	CHECK(handshake({cas[7].get(), ""}, session("api.example.com"), nullptr).ok);
	CHECK(handshake({cas[11].get(), ""}, session("other.example.com"), nullptr).ok);
	CHECK(tls.parsedCount() == 2);

	// Still checked: the name, and a CA outside the bundle.
	auto wrongName = handshake({cas[7].get(), "api.example.com"}, session("www.example.com"), nullptr);
	CHECK_FALSE(wrongName.ok);
	CHECK(wrongName.verifyResult == X509_V_ERR_HOSTNAME_MISMATCH);
	auto outsider = makeCa("outsider");
	auto untrusted = handshake({outsider.get(), ""}, session("api.example.com"), nullptr);
	CHECK_FALSE(untrusted.ok);
	CHECK(untrusted.verifyResult == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN);
	CHECK(tls.parsedCount() == 2);

	// --upstream-ca takes the same path.
	auto extra = UpstreamTls::create("", outsider->certificatePem());
	REQUIRE(extra);
	auto extraSsl = extra->newSession("api.example.com");
	REQUIRE(extraSsl);
	CHECK(handshake({outsider.get(), ""}, std::move(*extraSsl), nullptr).ok);
	CHECK(extra->parsedCount() == 1);

	SECTION("a trusted certificate that is not self-signed brings its issuer")
	{
		// The bundle holds a root and, issued by it, a CA certificate with
		// the outsider's name and key (a cross-signature), but not the
		// outsider's own self-signed certificate.
		bssl::UniquePtr<EVP_PKEY> rootKey(EVP_PKEY_new());
		bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
		REQUIRE(EC_KEY_generate_key(ec.get()));
		REQUIRE(EVP_PKEY_assign_EC_KEY(rootKey.get(), ec.release()));
		bssl::UniquePtr<X509_NAME> rootName(X509_NAME_new());
		REQUIRE(X509_NAME_add_entry_by_txt(rootName.get(), "CN", MBSTRING_ASC,
						   reinterpret_cast<const uint8_t *>("cross root"), -1, -1, 0));
		auto root = caCertificate(rootName.get(), rootKey.get(), nullptr, nullptr);
		bssl::UniquePtr<EVP_PKEY> outsiderKey(X509_get_pubkey(outsider->certificate()));
		auto cross = caCertificate(X509_get_subject_name(outsider->certificate()), outsiderKey.get(), root.get(),
					   rootKey.get());

		auto crossTls = UpstreamTls::create(bundle + pemOf(cross.get()) + pemOf(root.get()), "");
		REQUIRE(crossTls);
		auto ssl = crossTls->newSession("api.example.com");
		REQUIRE(ssl);
		auto crossed = handshake({outsider.get(), ""}, std::move(*ssl), nullptr);
		CHECK(crossed.ok);
		CHECK(crossed.verifyResult == X509_V_OK);
		CHECK(crossTls->parsedCount() == 2); // the cross-signed certificate and its root
	}
}
