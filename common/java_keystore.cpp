// SPDX-License-Identifier: Apache-2.0
#include "common/java_keystore.h"

#include <openssl/base64.h>
#include <openssl/sha.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <vector>

#include "common/big_endian.h"

namespace gvm {

namespace {

constexpr uint32_t kMagic = 0xFEEDFEED;
constexpr uint32_t kVersion = 2;
constexpr uint32_t kTrustedCertificateTag = 2;
constexpr std::string_view kBegin = "-----BEGIN CERTIFICATE-----";
constexpr std::string_view kEnd = "-----END CERTIFICATE-----";
constexpr std::string_view kDigestSalt = "Mighty Aphrodite";

// Java's writeUTF, for ASCII text (modified UTF-8 is ASCII there).
void putUtf(std::string &out, std::string_view text)
{
	putU16(out, static_cast<uint16_t>(text.size()));
	out += text;
}

// The DER of a block's base64 body (line breaks and spaces removed), or
// nothing when it does not decode.
std::string decodeBody(std::string_view body)
{
	std::string compact(body.size(), '\0');
	compact.erase(std::remove_copy_if(body.begin(), body.end(), compact.begin(),
					  [](char c) { return c == '\n' || c == '\r' || c == ' ' || c == '\t'; }),
		      compact.end());
	size_t max = 0;
	if (compact.empty() || !EVP_DecodedLength(&max, compact.size()))
		return {};
	std::string der(max, '\0');
	size_t len = 0;
	if (!EVP_DecodeBase64(reinterpret_cast<uint8_t *>(der.data()), &len, max,
			      reinterpret_cast<const uint8_t *>(compact.data()), compact.size()))
		return {};
	der.resize(len);
	return der;
}

// The DER of every CERTIFICATE block of `pem` whose base64 decodes.
std::vector<std::string> certificatesOf(std::string_view pem)
{
	std::vector<std::string> certificates;
	for (size_t at = pem.find(kBegin); at != std::string_view::npos; at = pem.find(kBegin, at)) {
		const size_t body = at + kBegin.size();
		const size_t end = pem.find(kEnd, body);
		if (end == std::string_view::npos)
			break;
		if (std::string der = decodeBody(pem.substr(body, end - body)); !der.empty())
			certificates.push_back(std::move(der));
		at = end + kEnd.size();
	}
	return certificates;
}

// The roots of the last call, decoded: BoringSSL's base64 decoder takes
// about a millisecond for a distribution's bundle, and every launch
// passes the same one.
struct DecodedRoots {
	std::mutex mutex;
	std::string text;
	std::shared_ptr<const std::vector<std::string>> certificates;
};

std::shared_ptr<const std::vector<std::string>> decodedRoots(std::string_view roots)
{
	static DecodedRoots cache;
	std::lock_guard lock(cache.mutex);
	if (!cache.certificates || cache.text != roots) {
		cache.certificates = std::make_shared<const std::vector<std::string>>(certificatesOf(roots));
		cache.text = std::string(roots);
	}
	return cache.certificates;
}

} // namespace

std::string javaKeystoreFromPem(std::string_view roots, std::string_view extra, int64_t createdMs)
{
	const std::shared_ptr<const std::vector<std::string>> rootCertificates = decodedRoots(roots);
	const std::vector<std::string> extraCertificates = certificatesOf(extra);
	std::vector<std::string_view> certificates(rootCertificates->begin(), rootCertificates->end());
	certificates.insert(certificates.end(), extraCertificates.begin(), extraCertificates.end());

	size_t bytes = 3 * 4 + SHA_DIGEST_LENGTH;
	for (std::string_view der : certificates)
		bytes += der.size() + 64; // the entry's own fields: tag, alias, time, type, length
	std::string out;
	out.reserve(bytes);
	putU32(out, kMagic);
	putU32(out, kVersion);
	putU32(out, static_cast<uint32_t>(certificates.size()));
	for (size_t i = 0; i < certificates.size(); ++i) {
		putU32(out, kTrustedCertificateTag);
		putUtf(out, "gvm-" + std::to_string(i + 1));
		putU64(out, static_cast<uint64_t>(createdMs));
		putUtf(out, "X.509");
		putU32(out, static_cast<uint32_t>(certificates[i].size()));
		out += certificates[i];
	}

	// The password's chars as UTF-16BE (ASCII: a zero byte, then the char).
	SHA_CTX sha;
	SHA1_Init(&sha);
	for (char c : kJavaKeystorePassword) {
		const uint8_t utf16[2] = {0, static_cast<uint8_t>(c)};
		SHA1_Update(&sha, utf16, sizeof(utf16));
	}
	SHA1_Update(&sha, kDigestSalt.data(), kDigestSalt.size());
	SHA1_Update(&sha, out.data(), out.size());
	uint8_t digest[SHA_DIGEST_LENGTH];
	SHA1_Final(digest, &sha);
	out.append(reinterpret_cast<const char *>(digest), sizeof(digest));
	return out;
}

} // namespace gvm
