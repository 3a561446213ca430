// SPDX-License-Identifier: Apache-2.0
#include "bench/proxy_pki.h"

#include <initializer_list>
#include <string>

#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace gvm::bench {

namespace {

constexpr long kBackdateSeconds = 3600;
constexpr long kValiditySeconds = 7 * 24 * 3600;

Result<bssl::UniquePtr<EVP_PKEY>> newP256Key()
{
	bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
	if (!ec || !EC_KEY_generate_key(ec.get()))
		return fail(Error::fromSsl("generating a P-256 key"));
	bssl::UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
	if (!key || !EVP_PKEY_set1_EC_KEY(key.get(), ec.get()))
		return fail(Error::fromSsl("wrapping a P-256 key"));
	return key;
}

bool addExtension(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
	// A null CONF is fine for the plain values used here (no @sections).
	bssl::UniquePtr<X509_EXTENSION> ext(X509V3_EXT_nconf_nid(nullptr, ctx, nid, value));
	return ext && X509_add_ext(cert, ext.get(), -1) == 1;
}

struct Extension {
	int nid;
	const char *value;
};

// A certificate for `key` named `commonName`, signed by `issuerKey` as
// `issuer` (or self-signed when issuer is null).
Result<bssl::UniquePtr<X509>> makeCertificate(const char *commonName, EVP_PKEY *key, X509 *issuer,
					       EVP_PKEY *issuerKey, std::initializer_list<Extension> extensions)
{
	bssl::UniquePtr<X509> cert(X509_new());
	bssl::UniquePtr<BIGNUM> serial(BN_new());
	if (!cert || !serial || !X509_set_version(cert.get(), X509_VERSION_3) ||
	    !BN_rand(serial.get(), 64, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) ||
	    !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) ||
	    !X509_gmtime_adj(X509_getm_notBefore(cert.get()), -kBackdateSeconds) ||
	    !X509_gmtime_adj(X509_getm_notAfter(cert.get()), kValiditySeconds))
		return fail(Error::fromSsl("filling in a certificate"));

	X509_NAME *subject = X509_get_subject_name(cert.get());
	if (!X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_ASC,
					reinterpret_cast<const uint8_t *>("gvm bench"), -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, reinterpret_cast<const uint8_t *>(commonName),
					-1, -1, 0) ||
	    !X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : subject) ||
	    !X509_set_pubkey(cert.get(), key))
		return fail(Error::fromSsl("naming a certificate"));

	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, issuer ? issuer : cert.get(), cert.get(), nullptr, nullptr, 0);
	for (const Extension &e : extensions) {
		if (!addExtension(cert.get(), &ctx, e.nid, e.value))
			return fail(Error::fromSsl(std::string("adding the extension ") + OBJ_nid2sn(e.nid) + "=" +
						   e.value));
	}
	if (!X509_sign(cert.get(), issuerKey, EVP_sha256()))
		return fail(Error::fromSsl("signing a certificate"));
	return cert;
}

Result<std::string> bioText(BIO *bio)
{
	const uint8_t *data = nullptr;
	size_t length = 0;
	if (!BIO_mem_contents(bio, &data, &length))
		return fail(Error::fromSsl("reading a memory BIO"));
	return std::string(reinterpret_cast<const char *>(data), length);
}

Result<std::string> certificatePem(X509 *cert)
{
	bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
	if (!bio || !PEM_write_bio_X509(bio.get(), cert))
		return fail(Error::fromSsl("encoding a certificate"));
	return bioText(bio.get());
}

Result<std::string> privateKeyPem(EVP_PKEY *key)
{
	bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
	if (!bio || !PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr))
		return fail(Error::fromSsl("encoding a private key"));
	return bioText(bio.get());
}

} // namespace

Result<TestPki> makeTestPki(const std::string &name, const std::string &address)
{
	auto caKey = newP256Key();
	if (!caKey)
		return fail(std::move(caKey).error());
	auto ca = makeCertificate("gvm bench CA", caKey->get(), nullptr, caKey->get(),
				  {{NID_basic_constraints, "critical,CA:TRUE"},
				   {NID_key_usage, "critical,keyCertSign,cRLSign"},
				   {NID_subject_key_identifier, "hash"}});
	if (!ca)
		return fail(std::move(ca).error().wrap("while making the test CA"));

	auto serverKey = newP256Key();
	if (!serverKey)
		return fail(std::move(serverKey).error());
	const std::string altNames = "DNS:" + name + ",IP:" + address;
	auto server = makeCertificate(name.c_str(), serverKey->get(), ca->get(), caKey->get(),
				      {{NID_basic_constraints, "critical,CA:FALSE"},
				       {NID_key_usage, "critical,digitalSignature"},
				       {NID_ext_key_usage, "serverAuth"},
				       {NID_subject_alt_name, altNames.c_str()},
				       {NID_subject_key_identifier, "hash"},
				       {NID_authority_key_identifier, "keyid:always"}});
	if (!server)
		return fail(std::move(server).error().wrap("while making the server certificate"));

	TestPki pki;
	auto caPem = certificatePem(ca->get());
	auto serverPem = certificatePem(server->get());
	auto keyPem = privateKeyPem(serverKey->get());
	if (!caPem || !serverPem || !keyPem)
		return fail(Error::fromSsl("encoding the test PKI"));
	pki.caPem = std::move(*caPem);
	pki.serverPem = std::move(*serverPem);
	pki.serverKeyPem = std::move(*keyPem);
	return pki;
}

} // namespace gvm::bench
