// SPDX-License-Identifier: Apache-2.0
#include "tests/support/test_pki.h"
#include "tests/support/process.h"

#include <arpa/inet.h>
#include <cerrno>
#include <ctime>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/obj.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/unique_fd.h"

namespace gvm::test {

namespace {

constexpr time_t kHour = 3600;
constexpr time_t kDay = 24 * kHour;

// The names every "valid" leaf carries; tests reach the servers as
// <anything>.gvm.test through enterPrivateHosts().
const std::vector<std::string> kGoodDnsNames = {"*.gvm.test", "gvm.test", "localhost"};
const std::vector<std::string> kGoodIps = {"127.0.0.1"};

struct KeyPair {
	bssl::UniquePtr<EVP_PKEY> key;
	bssl::UniquePtr<X509> cert;
};

// What one certificate says about itself.
struct CertSpec {
	std::string commonName;
	bool ca = false;
	std::vector<std::string> dnsNames;
	std::vector<std::string> ips;
	time_t notBefore = 0;
	time_t notAfter = 0;
};

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

bool setRandomSerial(X509 *cert)
{
	bssl::UniquePtr<BIGNUM> bn(BN_new());
	if (!bn)
		return false;
	do {
		if (!BN_rand(bn.get(), 120, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY))
			return false;
	} while (BN_is_zero(bn.get()));
	bssl::UniquePtr<ASN1_INTEGER> serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
	return serial && X509_set_serialNumber(cert, serial.get());
}

bool setValidity(X509 *cert, time_t notBefore, time_t notAfter)
{
	bssl::UniquePtr<ASN1_TIME> from(ASN1_TIME_set(nullptr, notBefore));
	bssl::UniquePtr<ASN1_TIME> to(ASN1_TIME_set(nullptr, notAfter));
	return from && to && X509_set1_notBefore(cert, from.get()) && X509_set1_notAfter(cert, to.get());
}

bool addNameEntry(X509_NAME *name, int nid, const std::string &value)
{
	return X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8,
					  reinterpret_cast<const unsigned char *>(value.data()),
					  static_cast<int>(value.size()), -1, 0) == 1;
}

bool addBasicConstraints(X509 *cert, bool ca)
{
	bssl::UniquePtr<BASIC_CONSTRAINTS> bc(BASIC_CONSTRAINTS_new());
	if (!bc)
		return false;
	bc->ca = ca ? 1 : 0;
	return X509_add1_ext_i2d(cert, NID_basic_constraints, bc.get(), 1, X509V3_ADD_DEFAULT) == 1;
}

bool addKeyUsage(X509 *cert, std::initializer_list<int> bits)
{
	bssl::UniquePtr<ASN1_BIT_STRING> usage(ASN1_BIT_STRING_new());
	if (!usage)
		return false;
	for (int bit : bits) {
		if (!ASN1_BIT_STRING_set_bit(usage.get(), bit, 1))
			return false;
	}
	return X509_add1_ext_i2d(cert, NID_key_usage, usage.get(), 1, X509V3_ADD_DEFAULT) == 1;
}

bool addServerAuth(X509 *cert)
{
	bssl::UniquePtr<EXTENDED_KEY_USAGE> eku(sk_ASN1_OBJECT_new_null());
	if (!eku)
		return false;
	bssl::UniquePtr<ASN1_OBJECT> serverAuth(OBJ_nid2obj(NID_server_auth));
	if (!serverAuth || !sk_ASN1_OBJECT_push(eku.get(), serverAuth.get()))
		return false;
	serverAuth.release();
	return X509_add1_ext_i2d(cert, NID_ext_key_usage, eku.get(), 0, X509V3_ADD_DEFAULT) == 1;
}

bool pushGeneralName(GENERAL_NAMES *names, int type, const std::string &bytes)
{
	bssl::UniquePtr<ASN1_STRING> value(type == GEN_DNS ? ASN1_IA5STRING_new() : ASN1_OCTET_STRING_new());
	if (!value || !ASN1_STRING_set(value.get(), bytes.data(), static_cast<int>(bytes.size())))
		return false;
	bssl::UniquePtr<GENERAL_NAME> name(GENERAL_NAME_new());
	if (!name)
		return false;
	GENERAL_NAME_set0_value(name.get(), type, value.release());
	if (!sk_GENERAL_NAME_push(names, name.get()))
		return false;
	name.release();
	return true;
}

bool addSubjectAltNames(X509 *cert, const CertSpec &spec)
{
	bssl::UniquePtr<GENERAL_NAMES> names(sk_GENERAL_NAME_new_null());
	if (!names)
		return false;
	for (const auto &dns : spec.dnsNames) {
		if (!pushGeneralName(names.get(), GEN_DNS, dns))
			return false;
	}
	for (const auto &ip : spec.ips) {
		in_addr address{};
		if (inet_pton(AF_INET, ip.c_str(), &address) != 1)
			return false;
		if (!pushGeneralName(names.get(), GEN_IPADD,
				     std::string(reinterpret_cast<const char *>(&address), sizeof(address))))
			return false;
	}
	return X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) == 1;
}

bool addSubjectKeyId(X509 *cert)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int length = 0;
	if (!X509_pubkey_digest(cert, EVP_sha1(), digest, &length))
		return false;
	bssl::UniquePtr<ASN1_OCTET_STRING> id(ASN1_OCTET_STRING_new());
	return id && ASN1_OCTET_STRING_set(id.get(), digest, static_cast<int>(length)) &&
	       X509_add1_ext_i2d(cert, NID_subject_key_identifier, id.get(), 0, X509V3_ADD_DEFAULT) == 1;
}

bool addAuthorityKeyId(X509 *cert, X509 *issuer)
{
	const ASN1_OCTET_STRING *issuerId = X509_get0_subject_key_id(issuer);
	if (!issuerId)
		return false;
	bssl::UniquePtr<AUTHORITY_KEYID> akid(AUTHORITY_KEYID_new());
	if (!akid)
		return false;
	akid->keyid = ASN1_OCTET_STRING_dup(issuerId);
	return akid->keyid &&
	       X509_add1_ext_i2d(cert, NID_authority_key_identifier, akid.get(), 0, X509V3_ADD_DEFAULT) == 1;
}

// Makes a key and a certificate for it, signed by issuer (self-signed when
// issuer is null). Strict verifiers (Python 3.13's VERIFY_X509_STRICT) want
// SKI/AKI and critical basicConstraints/keyUsage, so every certificate has them.
Result<KeyPair> makeCertificate(const CertSpec &spec, const KeyPair *issuer)
{
	ERR_clear_error();
	auto key = newP256Key();
	if (!key)
		return fail(std::move(key).error().wrap("while making the key of " + spec.commonName));
	bssl::UniquePtr<X509> cert(X509_new());
	if (!cert)
		return fail(Error::fromSsl("allocating the certificate " + spec.commonName));

	X509_NAME *subject = X509_get_subject_name(cert.get());
	bool ok = X509_set_version(cert.get(), X509_VERSION_3) && setRandomSerial(cert.get()) &&
		  setValidity(cert.get(), spec.notBefore, spec.notAfter) &&
		  addNameEntry(subject, NID_commonName, spec.commonName) &&
		  addNameEntry(subject, NID_organizationName, "gvm tests") &&
		  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer->cert.get()) : subject) &&
		  X509_set_pubkey(cert.get(), key->get()) && addBasicConstraints(cert.get(), spec.ca) &&
		  addSubjectKeyId(cert.get());
	if (ok && spec.ca)
		ok = addKeyUsage(cert.get(), {5 /* keyCertSign */, 6 /* cRLSign */});
	if (ok && !spec.ca)
		ok = addKeyUsage(cert.get(), {0 /* digitalSignature */}) && addServerAuth(cert.get()) &&
		     addSubjectAltNames(cert.get(), spec);
	if (ok && issuer)
		ok = addAuthorityKeyId(cert.get(), issuer->cert.get());
	if (ok)
		ok = X509_sign(cert.get(), issuer ? issuer->key.get() : key->get(), EVP_sha256()) > 0;
	if (!ok)
		return fail(Error::fromSsl("building the certificate " + spec.commonName));
	return KeyPair{std::move(*key), std::move(cert)};
}

std::string bioContents(BIO *bio)
{
	const uint8_t *data = nullptr;
	size_t length = 0;
	if (!BIO_mem_contents(bio, &data, &length))
		return {};
	return std::string(reinterpret_cast<const char *>(data), length);
}

Result<void> writeCert(const std::string &path, X509 *cert)
{
	bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
	if (!bio || !PEM_write_bio_X509(bio.get(), cert))
		return fail(Error::fromSsl("encoding " + path));
	return writeFile(path, bioContents(bio.get()), 0644);
}

Result<void> writeKey(const std::string &path, EVP_PKEY *key)
{
	bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
	if (!bio || !PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr))
		return fail(Error::fromSsl("encoding " + path));
	return writeFile(path, bioContents(bio.get()), 0600);
}

Result<void> writePair(const std::string &certPath, const std::string &keyPath, const KeyPair &pair)
{
	GVM_TRY_VOID(writeCert(certPath, pair.cert.get()), "while writing " + certPath);
	GVM_TRY_VOID(writeKey(keyPath, pair.key.get()), "while writing " + keyPath);
	return {};
}

} // namespace

Result<TestPki> TestPki::create(const std::string &dir)
{
	// Unprivileged readers (the proxy worker's uid) must reach ca.pem even
	// when dir came from mkdtemp (0700).
	if (::chmod(dir.c_str(), 0755) < 0)
		return fail(Error::fromErrno(errno, "making " + dir + " readable"));

	const time_t now = ::time(nullptr);
	// Backdated an hour: a clock a little behind still accepts the leaves.
	const time_t from = now - kHour;
	const time_t until = now + 30 * kDay;

	auto ca = makeCertificate({"gvm test upstream CA", true, {}, {}, from, now + 365 * kDay}, nullptr);
	if (!ca)
		return fail(std::move(ca).error().wrap("while making the test CA"));
	auto otherCa = makeCertificate({"gvm test untrusted CA", true, {}, {}, from, now + 365 * kDay}, nullptr);
	if (!otherCa)
		return fail(std::move(otherCa).error().wrap("while making the untrusted CA"));

	auto good = makeCertificate({"gvm.test", false, kGoodDnsNames, kGoodIps, from, until}, &*ca);
	if (!good)
		return fail(std::move(good).error().wrap("while making the good leaf"));
	auto wrongName = makeCertificate({"other.invalid", false, {"other.invalid"}, {}, from, until}, &*ca);
	if (!wrongName)
		return fail(std::move(wrongName).error().wrap("while making the wrong-name leaf"));
	auto expired = makeCertificate({"gvm.test", false, kGoodDnsNames, kGoodIps, now - 30 * kDay, now - kDay},
				       &*ca);
	if (!expired)
		return fail(std::move(expired).error().wrap("while making the expired leaf"));
	auto untrusted = makeCertificate({"gvm.test", false, kGoodDnsNames, kGoodIps, from, until}, &*otherCa);
	if (!untrusted)
		return fail(std::move(untrusted).error().wrap("while making the untrusted leaf"));

	TestPki pki(dir);
	GVM_TRY_VOID(writeCert(pki.caCert(), ca->cert.get()), "while writing the test PKI");
	GVM_TRY_VOID(writeCert(pki.untrustedCaCert(), otherCa->cert.get()), "while writing the test PKI");
	GVM_TRY_VOID(writePair(pki.goodCert(), pki.goodKey(), *good), "while writing the test PKI");
	GVM_TRY_VOID(writePair(pki.wrongNameCert(), pki.wrongNameKey(), *wrongName), "while writing the test PKI");
	GVM_TRY_VOID(writePair(pki.expiredCert(), pki.expiredKey(), *expired), "while writing the test PKI");
	GVM_TRY_VOID(writePair(pki.untrustedCert(), pki.untrustedKey(), *untrusted), "while writing the test PKI");
	return pki;
}

} // namespace gvm::test
