// SPDX-License-Identifier: Apache-2.0
#include "common/sha256.h"

#include <openssl/sha.h>

namespace gvm {

std::string toHex(std::string_view bytes)
{
	static constexpr char kDigits[] = "0123456789abcdef";
	std::string out;
	out.reserve(bytes.size() * 2);
	for (unsigned char c : bytes) {
		out.push_back(kDigits[c >> 4]);
		out.push_back(kDigits[c & 0xf]);
	}
	return out;
}

std::string sha256Hex(std::string_view data)
{
	unsigned char digest[SHA256_DIGEST_LENGTH];
	SHA256(reinterpret_cast<const uint8_t *>(data.data()), data.size(), digest);
	return toHex(std::string_view(reinterpret_cast<const char *>(digest), sizeof(digest)));
}

} // namespace gvm
