// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string>

namespace gvm {

// Appends integers in network byte order (most significant byte first), as
// DNS messages and Java keystores store them.
inline void putU16(std::string &out, uint16_t v)
{
	out += static_cast<char>(v >> 8);
	out += static_cast<char>(v & 0xff);
}

inline void putU32(std::string &out, uint32_t v)
{
	putU16(out, static_cast<uint16_t>(v >> 16));
	putU16(out, static_cast<uint16_t>(v & 0xffff));
}

inline void putU64(std::string &out, uint64_t v)
{
	putU32(out, static_cast<uint32_t>(v >> 32));
	putU32(out, static_cast<uint32_t>(v & 0xffffffff));
}

} // namespace gvm
