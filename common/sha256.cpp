// SPDX-License-Identifier: Apache-2.0
#include "common/sha256.h"

#include <openssl/sha.h>

namespace gvm {

std::string toHex(std::string_view bytes)
{
	static constexpr char kDigits[] = "0123456789abcdef";
	std::string out(bytes.size() * 2, '\0');
	for (size_t i = 0; i < bytes.size(); ++i) {
		const auto c = static_cast<unsigned char>(bytes[i]);
		out[2 * i] = kDigits[c >> 4];
		out[2 * i + 1] = kDigits[c & 0xf];
	}
	return out;
}

std::string sha256Hex(std::string_view data)
{
	return sha256Hex(data, {});
}

std::string sha256Hex(std::string_view first, std::string_view second)
{
	SHA256_CTX ctx;
	SHA256_Init(&ctx);
	SHA256_Update(&ctx, first.data(), first.size());
	SHA256_Update(&ctx, second.data(), second.size());
	unsigned char digest[SHA256_DIGEST_LENGTH];
	SHA256_Final(digest, &ctx);
	return toHex(std::string_view(reinterpret_cast<const char *>(digest), sizeof(digest)));
}

} // namespace gvm
