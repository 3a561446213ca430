// SPDX-License-Identifier: Apache-2.0
#include "daemon/proxy/certificate_authority.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cstring>
#include <netinet/in.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/nid.h>
#include <openssl/obj.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

namespace gvm::proxy {

// A validated host name: the cache key and CN text, and for an IP literal
// its address bytes (4 or 16) for the iPAddress SAN.
struct CertificateAuthority::HostName {
	std::string text;
	std::string address; // empty for a DNS name
};

namespace {

constexpr long seconds(std::chrono::hours h)
{
	return static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(h).count());
}

Error badHost(std::string_view host, std::string_view why)
{
	// The host comes from the agent: quote it printable and short.
	std::string quoted;
	for (char c : host.substr(0, 80)) {
		unsigned char u = static_cast<unsigned char>(c);
		if (u >= 0x20 && u < 0x7f && c != '"' && c != '\\') {
			quoted += c;
		} else {
			static const char kHex[] = "0123456789abcdef";
			quoted += "\\x";
			quoted += kHex[u >> 4];
			quoted += kHex[u & 0xf];
		}
	}
	if (host.size() > 80)
		quoted += "...";
	return Error(ErrorDomain::Http, 400,
		     "invalid TLS host name \"" + quoted + "\": " + std::string(why));
}

bool isHostChar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '*';
}

// Bytes of an IPv4 or IPv6 literal, or empty if host is not one.
std::string parseIpLiteral(std::string_view host, std::string *canonical)
{
	// The longest IPv6 text form is 45 bytes; anything longer is not one.
	if (host.empty() || host.size() > INET6_ADDRSTRLEN - 1)
		return {};
	char text[INET6_ADDRSTRLEN];
	std::memcpy(text, host.data(), host.size());
	text[host.size()] = '\0';

	unsigned char bytes[sizeof(in6_addr)];
	int family = AF_INET;
	size_t length = sizeof(in_addr);
	if (inet_pton(AF_INET, text, bytes) != 1) {
		family = AF_INET6;
		length = sizeof(in6_addr);
		if (inet_pton(AF_INET6, text, bytes) != 1)
			return {};
	}
	char out[INET6_ADDRSTRLEN];
	if (!inet_ntop(family, bytes, out, sizeof(out)))
		return {};
	*canonical = out;
	return std::string(reinterpret_cast<const char *>(bytes), length);
}

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

// A random positive serial number of up to 128 bits (RFC 5280 allows 20
// octets); never zero.
bool setRandomSerial(X509 *cert)
{
	bssl::UniquePtr<BIGNUM> bn(BN_new());
	if (!bn)
		return false;
	do {
		if (!BN_rand(bn.get(), 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY))
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

bool addBasicConstraints(X509 *cert, bool ca)
{
	bssl::UniquePtr<BASIC_CONSTRAINTS> bc(BASIC_CONSTRAINTS_new());
	if (!bc)
		return false;
	if (ca) {
		bc->ca = 1;
		// pathlen 0: the sandbox CA signs leaves only, never another CA.
		bc->pathlen = ASN1_INTEGER_new();
		if (!bc->pathlen || !ASN1_INTEGER_set(bc->pathlen, 0))
			return false;
	}
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

// SKI as in RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits.
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

bool addSubjectAltName(X509 *cert, std::string_view dnsName, std::string_view address)
{
	bssl::UniquePtr<ASN1_STRING> value(address.empty() ? ASN1_IA5STRING_new() : ASN1_OCTET_STRING_new());
	std::string_view bytes = address.empty() ? dnsName : address;
	if (!value || !ASN1_STRING_set(value.get(), bytes.data(), static_cast<int>(bytes.size())))
		return false;
	bssl::UniquePtr<GENERAL_NAME> name(GENERAL_NAME_new());
	if (!name)
		return false;
	GENERAL_NAME_set0_value(name.get(), address.empty() ? GEN_DNS : GEN_IPADD, value.release());

	bssl::UniquePtr<GENERAL_NAMES> names(sk_GENERAL_NAME_new_null());
	if (!names || !sk_GENERAL_NAME_push(names.get(), name.get()))
		return false;
	name.release();
	return X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) == 1;
}

bool addNameEntry(X509_NAME *name, int nid, std::string_view value)
{
	return X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8,
					  reinterpret_cast<const unsigned char *>(value.data()),
					  static_cast<int>(value.size()), -1, 0) == 1;
}

// Cuts text to at most max bytes without splitting a UTF-8 sequence.
std::string_view truncateUtf8(std::string_view text, size_t max)
{
	if (text.size() <= max)
		return text;
	size_t end = max;
	while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xc0) == 0x80)
		end--;
	return text.substr(0, end);
}

} // namespace

Result<std::unique_ptr<CertificateAuthority>> CertificateAuthority::create(std::string_view label,
									    size_t cacheEntries)
{
	if (cacheEntries == 0)
		return fail(Error::internal("certificate authority: leaf cache must hold at least one entry"));

	// Start from a clean queue so fromSsl() reports only our own failure.
	ERR_clear_error();

	auto key = newP256Key();
	if (!key)
		return fail(std::move(key).error().wrap("while creating the sandbox CA key"));
	auto leafKey = newP256Key();
	if (!leafKey)
		return fail(std::move(leafKey).error().wrap("while creating the sandbox leaf key"));

	bssl::UniquePtr<X509> cert(X509_new());
	if (!cert)
		return fail(Error::fromSsl("allocating the sandbox CA certificate"));

	const time_t now = time(nullptr);
	const time_t notAfter = now + seconds(kCaLifetime);

	constexpr std::string_view kPrefix = "gvm sandbox ";
	constexpr std::string_view kSuffix = " CA";
	std::string commonName(kPrefix);
	commonName += truncateUtf8(label, kMaxCommonNameBytes - kPrefix.size() - kSuffix.size());
	commonName += kSuffix;

	X509_NAME *subject = X509_get_subject_name(cert.get());
	bool ok = X509_set_version(cert.get(), X509_VERSION_3) &&
		  setRandomSerial(cert.get()) &&
		  setValidity(cert.get(), now - seconds(kBackdate), notAfter) &&
		  addNameEntry(subject, NID_commonName, commonName) &&
		  addNameEntry(subject, NID_organizationName, "gvm") &&
		  X509_set_issuer_name(cert.get(), subject) &&
		  X509_set_pubkey(cert.get(), key->get()) &&
		  addBasicConstraints(cert.get(), true) &&
		  addKeyUsage(cert.get(), {5 /* keyCertSign */, 6 /* cRLSign */}) &&
		  addSubjectKeyId(cert.get()) &&
		  X509_sign(cert.get(), key->get(), EVP_sha256()) > 0;
	if (!ok)
		return fail(Error::fromSsl("creating the sandbox CA certificate"));

	return std::unique_ptr<CertificateAuthority>(
		new CertificateAuthority(std::move(*key), std::move(cert), std::move(*leafKey), notAfter,
					 cacheEntries));
}

CertificateAuthority::CertificateAuthority(bssl::UniquePtr<EVP_PKEY> key, bssl::UniquePtr<X509> certificate,
					   bssl::UniquePtr<EVP_PKEY> leafKey, time_t notAfter, size_t cacheEntries)
	: key_(std::move(key)), certificate_(std::move(certificate)), leafKey_(std::move(leafKey)),
	  notAfter_(notAfter), cacheEntries_(cacheEntries)
{
}

std::string CertificateAuthority::certificatePem() const
{
	bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
	if (!bio || !PEM_write_bio_X509(bio.get(), certificate_.get())) {
		ERR_clear_error();
		return {};
	}
	const uint8_t *data = nullptr;
	size_t length = 0;
	if (!BIO_mem_contents(bio.get(), &data, &length))
		return {};
	return std::string(reinterpret_cast<const char *>(data), length);
}

Result<std::shared_ptr<const LeafCertificate>> CertificateAuthority::leafFor(std::string_view host)
{
	HostName name;
	name.address = parseIpLiteral(host, &name.text);
	if (name.address.empty()) {
		if (host.empty())
			return fail(badHost(host, "empty"));
		// The absolute form "example.com." names the same host.
		if (host.back() == '.')
			host.remove_suffix(1);
		if (host.empty())
			return fail(badHost(host, "empty"));
		if (host.size() > kMaxHostNameBytes)
			return fail(badHost(host, "longer than 253 bytes"));
		size_t labelStart = 0;
		for (size_t i = 0; i <= host.size(); i++) {
			if (i < host.size() && host[i] != '.') {
				if (!isHostChar(host[i]))
					return fail(badHost(host, "character not allowed in a host name"));
				continue;
			}
			std::string_view label = host.substr(labelStart, i - labelStart);
			if (label.empty())
				return fail(badHost(host, "empty label"));
			if (label.size() > kMaxHostLabelBytes)
				return fail(badHost(host, "label longer than 63 bytes"));
			// A wildcard is only meaningful as a whole leftmost label.
			if (label.find('*') != std::string_view::npos && (labelStart != 0 || label != "*"))
				return fail(badHost(host, "'*' allowed only as the whole leftmost label"));
			labelStart = i + 1;
		}
		// "*.com" would cover a whole TLD; clients refuse such leaves.
		if (host.front() == '*' && std::count(host.begin(), host.end(), '.') < 2)
			return fail(badHost(host, "wildcard needs at least two labels after it"));
		name.text.assign(host);
		std::transform(name.text.begin(), name.text.end(), name.text.begin(), [](char c) {
			return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
		});
	}

	if (auto it = index_.find(name.text); it != index_.end()) {
		lru_.splice(lru_.begin(), lru_, it->second);
		return it->second->second;
	}

	auto leaf = mint(name);
	if (!leaf)
		return fail(std::move(leaf).error().wrap("while minting a leaf certificate for " + name.text));
	minted_++;

	lru_.emplace_front(name.text, *leaf);
	index_[name.text] = lru_.begin();
	while (lru_.size() > cacheEntries_) {
		index_.erase(lru_.back().first);
		lru_.pop_back();
	}
	return std::move(*leaf);
}

Result<std::shared_ptr<const LeafCertificate>> CertificateAuthority::mint(const HostName &host)
{
	ERR_clear_error();

	bssl::UniquePtr<X509> cert(X509_new());
	if (!cert)
		return fail(Error::fromSsl("allocating a certificate"));

	const time_t now = time(nullptr);
	// Never outlive the CA: a chain whose root expired first fails anyway,
	// and clients report that less clearly.
	const time_t notAfter = std::min<time_t>(now + seconds(kLeafLifetime), notAfter_);

	bool ok = X509_set_version(cert.get(), X509_VERSION_3) &&
		  setRandomSerial(cert.get()) &&
		  setValidity(cert.get(), now - seconds(kBackdate), notAfter) &&
		  addNameEntry(X509_get_subject_name(cert.get()), NID_commonName,
			       truncateUtf8(host.text, kMaxCommonNameBytes)) &&
		  X509_set_issuer_name(cert.get(), X509_get_subject_name(certificate_.get())) &&
		  X509_set_pubkey(cert.get(), leafKey_.get()) &&
		  addBasicConstraints(cert.get(), false) &&
		  addKeyUsage(cert.get(), {0 /* digitalSignature */}) &&
		  addServerAuth(cert.get()) &&
		  addSubjectAltName(cert.get(), host.text, host.address) &&
		  addSubjectKeyId(cert.get()) &&
		  addAuthorityKeyId(cert.get(), certificate_.get()) &&
		  X509_sign(cert.get(), key_.get(), EVP_sha256()) > 0;
	if (!ok)
		return fail(Error::fromSsl("building the certificate"));

	auto leaf = std::make_shared<LeafCertificate>();
	leaf->certificate = std::move(cert);
	leaf->key = bssl::UpRef(leafKey_);
	return std::shared_ptr<const LeafCertificate>(std::move(leaf));
}

Result<void> useLeaf(SSL *ssl, const LeafCertificate &leaf, const CertificateAuthority &ca)
{
	ERR_clear_error();
	if (!SSL_use_certificate(ssl, leaf.certificate.get()) || !SSL_use_PrivateKey(ssl, leaf.key.get()) ||
	    !SSL_clear_chain_certs(ssl) || !SSL_add1_chain_cert(ssl, ca.certificate()))
		return fail(Error::fromSsl("setting the leaf certificate on a TLS connection"));
	return {};
}

Result<void> useLeaf(SSL_CTX *ctx, const LeafCertificate &leaf, const CertificateAuthority &ca)
{
	ERR_clear_error();
	if (!SSL_CTX_use_certificate(ctx, leaf.certificate.get()) ||
	    !SSL_CTX_use_PrivateKey(ctx, leaf.key.get()) || !SSL_CTX_clear_chain_certs(ctx) ||
	    !SSL_CTX_add1_chain_cert(ctx, ca.certificate()))
		return fail(Error::fromSsl("setting the leaf certificate on a TLS context"));
	return {};
}

} // namespace gvm::proxy
