// SPDX-License-Identifier: Apache-2.0
//
// A Java keystore (JKS) of trusted certificates, built from a PEM bundle.
//
// Java trusts neither SSL_CERT_FILE nor the distribution's PEM bundle: it
// reads its own keystore (on Debian /etc/ssl/certs/java/cacerts, which
// every JDK's lib/security/cacerts links to). A sandbox's agent gets one
// made from its CA bundle, so that Java clients trust the sandbox CA like
// every other client does.
//
// The format, as Java's sun.security.provider.JavaKeyStore reads it (all
// integers big-endian):
//   u32 0xFEEDFEED, u32 2 (version), u32 entry count, then per entry
//   u32 2 (trusted certificate), alias (u16 length + bytes),
//   u64 creation time (ms since the epoch), "X.509" (u16 length + bytes),
//   u32 length + the certificate's DER;
//   then SHA-1 over the password (UTF-16BE), "Mighty Aphrodite" and every
//   byte before it.
// Java reads the default trust store without a password (no integrity
// check); kJavaKeystorePassword is the one tools assume for cacerts.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace gvm {

inline constexpr std::string_view kJavaKeystorePassword = "changeit";

// The keystore of every CERTIFICATE block of `roots` then of `extra`, in
// order, with the aliases "gvm-1", "gvm-2", ... and creation time
// `createdMs`. Blocks whose base64 does not decode are left out; text
// between blocks is ignored; no block at all gives a keystore with no
// entry. The decoded roots of the last call are remembered, so a call with
// the same roots (the host's bundle, at every launch) decodes only
// `extra`. Thread-safe.
std::string javaKeystoreFromPem(std::string_view roots, std::string_view extra, int64_t createdMs);

} // namespace gvm
