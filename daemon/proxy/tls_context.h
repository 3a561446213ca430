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
//
// The trusted certificates are kept as their DER bytes, indexed by subject
// name, and parsed into the verifier only when a peer's chain names one as
// an issuer: a parsed host store takes about 0.9 MiB of every worker's heap,
// its DER about 0.2 MiB, and a worker talks to a few roots, not all of them.
class UpstreamTls
{
public:
	// hostBundlePem: the host's roots (may be empty); extraPem: more CAs.
	// A PEM block that does not parse is an error naming its source.
	static Result<UpstreamTls> create(std::string_view hostBundlePem, std::string_view extraPem);

	// A client SSL for `host` (a DNS name or an IP literal): SNI for names,
	// verification of the name or address, ALPN http/1.1.
	Result<bssl::UniquePtr<SSL>> newSession(const std::string &host) const;
	size_t trustedCount() const;

	// Trusted certificates parsed so far (the issuers of the chains seen).
	size_t parsedCount() const;

private:
	class TrustAnchors;
	// The SSL_CTX ex_data slot that owns a context's TrustAnchors.
	static int trustAnchorsIndex();
	UpstreamTls(bssl::UniquePtr<SSL_CTX> ctx, const TrustAnchors *anchors) : ctx_(std::move(ctx)), anchors_(anchors) {}
	bssl::UniquePtr<SSL_CTX> ctx_;
	const TrustAnchors *anchors_; // owned by ctx_ (its ex_data), for its verify callback
};

} // namespace gvm::proxy
