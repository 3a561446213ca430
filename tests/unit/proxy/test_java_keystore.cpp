// SPDX-License-Identifier: Apache-2.0
//
// javaKeystoreFromPem: the keystore holds exactly the bundle's certificates,
// byte for byte, in Java's JKS layout; where the machine has a JDK, Java's
// own keytool reads it, checks its integrity with the cacerts password and
// lists the same certificates.
#include <catch2/catch.hpp>

#include <cstdio>
#include <optional>
#include <string>
#include <unistd.h>
#include <vector>

#include <openssl/sha.h>
#include <openssl/x509.h>

#include "common/java_keystore.h"
#include "daemon/proxy/certificate_authority.h"

using gvm::javaKeystoreFromPem;
using gvm::proxy::CertificateAuthority;

namespace {

constexpr char kKeytool[] = "/usr/bin/keytool";

std::string derOf(X509 *certificate)
{
	uint8_t *der = nullptr;
	const int len = i2d_X509(certificate, &der);
	REQUIRE(len > 0);
	std::string out(reinterpret_cast<const char *>(der), static_cast<size_t>(len));
	OPENSSL_free(der);
	return out;
}

// A cursor over the keystore's big-endian fields.
struct Reader {
	std::string_view data;
	size_t at = 0;

	uint64_t number(size_t bytes)
	{
		REQUIRE(at + bytes <= data.size());
		uint64_t v = 0;
		for (size_t i = 0; i < bytes; ++i)
			v = (v << 8) | static_cast<uint8_t>(data[at++]);
		return v;
	}
	std::string bytes(size_t n)
	{
		REQUIRE(at + n <= data.size());
		std::string out(data.substr(at, n));
		at += n;
		return out;
	}
	std::string utf() { return bytes(static_cast<size_t>(number(2))); }
};

// What Java's keytool says of the keystore: `keytool -list -rfc` with the
// cacerts password (so with its integrity check), its exit status and
// output; nullopt without a JDK.
struct Listing {
	int status = -1;
	std::string out;
};

std::optional<Listing> keytoolList(const std::string &keystore)
{
	if (::access(kKeytool, X_OK) != 0)
		return std::nullopt;
	char path[] = "/tmp/gvm-jks-XXXXXX";
	const int fd = ::mkstemp(path);
	REQUIRE(fd >= 0);
	REQUIRE(::write(fd, keystore.data(), keystore.size()) == static_cast<ssize_t>(keystore.size()));
	::close(fd);
	const std::string command = std::string(kKeytool) + " -list -keystore " + path + " -storepass " +
				    std::string(gvm::kJavaKeystorePassword) + " -rfc 2>&1";
	Listing listing;
	FILE *p = ::popen(command.c_str(), "r");
	if (p) {
		char buffer[4096];
		size_t n;
		while ((n = std::fread(buffer, 1, sizeof(buffer), p)) > 0)
			listing.out.append(buffer, n);
		listing.status = ::pclose(p);
	}
	::unlink(path);
	REQUIRE(p != nullptr);
	return listing;
}

size_t count(const std::string &text, const std::string &what)
{
	size_t n = 0;
	for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
		++n;
	return n;
}

} // namespace

TEST_CASE("a PEM bundle becomes a keystore of exactly its certificates")
{
	std::vector<std::unique_ptr<CertificateAuthority>> cas;
	for (const char *label : {"one", "two", "three"}) {
		auto ca = CertificateAuthority::create(label);
		REQUIRE(ca);
		cas.push_back(std::move(*ca));
	}
	// Comments and blank lines between blocks, CRLF line ends in one, a
	// block whose base64 is broken, and a last block with no end line.
	std::string crlf;
	for (char c : cas[1]->certificatePem()) {
		if (c == '\n')
			crlf += '\r';
		crlf += c;
	}
	const std::string pem = "# roots\n" + cas[0]->certificatePem() + "\n\n" + crlf +
				"-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n" +
				cas[2]->certificatePem() + "-----BEGIN CERTIFICATE-----\nMIIB\n";
	constexpr int64_t kCreated = 1767225600123;
	const std::string keystore = javaKeystoreFromPem(pem, "", kCreated);

	Reader r{keystore};
	CHECK(r.number(4) == 0xFEEDFEED);
	CHECK(r.number(4) == 2);
	REQUIRE(r.number(4) == 3);
	for (size_t i = 0; i < cas.size(); ++i) {
		INFO("entry " << i + 1);
		CHECK(r.number(4) == 2); // a trusted certificate
		CHECK(r.utf() == "gvm-" + std::to_string(i + 1));
		CHECK(r.number(8) == kCreated);
		CHECK(r.utf() == "X.509");
		const size_t len = static_cast<size_t>(r.number(4));
		CHECK(r.bytes(len) == derOf(cas[i]->certificate()));
	}
	// The integrity digest ends the file.
	REQUIRE(keystore.size() == r.at + SHA_DIGEST_LENGTH);

	// Java itself: the digest checks with the cacerts password, and the
	// certificates it lists are the three, in order.
	if (auto listing = keytoolList(keystore)) {
		const std::string *listed = &listing->out;
		INFO(*listed);
		REQUIRE(listing->status == 0);
		CHECK(listed->find("Your keystore contains 3 entries") != std::string::npos);
		CHECK(count(*listed, "-----BEGIN CERTIFICATE-----") == 3);
		size_t at = 0;
		for (size_t i = 0; i < cas.size(); ++i) {
			const size_t alias = listed->find("Alias name: gvm-" + std::to_string(i + 1), at);
			REQUIRE(alias != std::string::npos);
			std::string body = cas[i]->certificatePem();
			body = body.substr(body.find('\n') + 1, 60); // the first line of base64
			at = listed->find(body, alias);
			CHECK(at != std::string::npos);
			at = at == std::string::npos ? alias : at;
		}
	} else {
		WARN("no JDK here: the keystore was not read by Java");
	}
}

TEST_CASE("a bundle with no certificate gives an empty keystore, and a flipped byte is caught")
{
	const std::string keystore = javaKeystoreFromPem("no certificates here\n", "", 0);
	Reader r{keystore};
	CHECK(r.number(4) == 0xFEEDFEED);
	CHECK(r.number(4) == 2);
	CHECK(r.number(4) == 0);
	CHECK(keystore.size() == 12 + SHA_DIGEST_LENGTH);
	if (auto listing = keytoolList(keystore)) {
		INFO(listing->out);
		REQUIRE(listing->status == 0);
		CHECK(listing->out.find("Your keystore contains 0 entries") != std::string::npos);
	}

	// One flipped byte of the body: keytool's integrity check fails.
	auto ca = CertificateAuthority::create("tamper");
	REQUIRE(ca);
	std::string tampered = javaKeystoreFromPem("", (*ca)->certificatePem(), 0);
	tampered[20] = static_cast<char>(tampered[20] ^ 1);
	if (auto listing = keytoolList(tampered)) {
		INFO(listing->out);
		CHECK(listing->status != 0);
	}
}

TEST_CASE("the roots are decoded once and remembered; the extra certificates never are")
{
	std::vector<std::unique_ptr<CertificateAuthority>> cas;
	for (const char *label : {"root-a", "root-b", "sandbox-1", "sandbox-2"}) {
		auto ca = CertificateAuthority::create(label);
		REQUIRE(ca);
		cas.push_back(std::move(*ca));
	}
	// The DERs of a keystore's entries, in order.
	auto entries = [](const std::string &keystore) {
		Reader r{keystore};
		r.number(8);
		std::vector<std::string> ders;
		for (uint64_t n = r.number(4); n > 0; --n) {
			r.number(4);
			r.utf();
			r.number(8);
			r.utf();
			ders.push_back(r.bytes(static_cast<size_t>(r.number(4))));
		}
		return ders;
	};
	const std::string roots = cas[0]->certificatePem() + cas[1]->certificatePem();
	const std::vector<std::string> first = entries(javaKeystoreFromPem(roots, cas[2]->certificatePem(), 0));
	const std::vector<std::string> second = entries(javaKeystoreFromPem(roots, cas[3]->certificatePem(), 0));
	CHECK(first == std::vector<std::string>{derOf(cas[0]->certificate()), derOf(cas[1]->certificate()),
						derOf(cas[2]->certificate())});
	CHECK(second == std::vector<std::string>{derOf(cas[0]->certificate()), derOf(cas[1]->certificate()),
						 derOf(cas[3]->certificate())});
	// Other roots: the new ones, not the remembered ones.
	const std::vector<std::string> other = entries(javaKeystoreFromPem(cas[1]->certificatePem(), "", 0));
	CHECK(other == std::vector<std::string>{derOf(cas[1]->certificate())});
}
