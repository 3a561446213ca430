// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <string_view>

#include <openssl/ssl.h>

#include "common/result.h"

namespace gvm::proxy {

// Where the host's trust store is on Debian (ca-certificates).
inline constexpr const char *kHostTrustBundle = "/etc/ssl/certs/ca-certificates.crt";
// A trust bundle larger than this is refused (the host's is ~200 KiB).
inline constexpr size_t kMaxTrustBundleBytes = 16 * 1024 * 1024;

// The agent-facing TLS context of an intercepting worker: TLS 1.2 and 1.3,
// ALPN http/1.1 only (HTTP/2 end to end is a later capability). The
// certificate is set per connection (CertificateAuthority::leafFor).
Result<bssl::UniquePtr<SSL_CTX>> makeInterceptContext();

// The upstream-facing TLS of a worker: verification against the host trust
// store plus any extra CAs (--upstream-ca), with SNI and host name checks.
// Verification can never be turned off. Owned by the worker's proxy, on its
// loop; built once before the worker reads agent bytes.
class UpstreamTls
{
public:
	// hostBundlePem: the host's roots (may be empty); extraPem: more CAs.
	// A PEM block that does not parse is an error naming its source.
	static Result<UpstreamTls> create(std::string_view hostBundlePem, std::string_view extraPem);

	// A client SSL for `host` (a DNS name or an IP literal): SNI for names,
	// verification of the name or address, ALPN http/1.1.
	Result<bssl::UniquePtr<SSL>> newSession(const std::string &host) const;
	size_t trustedCount() const { return trusted_; }

private:
	UpstreamTls(bssl::UniquePtr<SSL_CTX> ctx, size_t trusted) : ctx_(std::move(ctx)), trusted_(trusted) {}
	bssl::UniquePtr<SSL_CTX> ctx_;
	size_t trusted_;
};

} // namespace gvm::proxy
