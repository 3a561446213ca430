// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <openssl/base.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/result.h"

namespace gvm::proxy {

// Leaf certificates kept per CA; the least recently used one is evicted first.
// Bounds the memory an agent can pin by sending many distinct SNI names.
inline constexpr size_t kLeafCacheEntries = 1024;
inline constexpr std::chrono::hours kCaLifetime{24 * 30};
inline constexpr std::chrono::hours kLeafLifetime{24 * 7};
// notBefore is moved back by this much so that a sandbox whose clock lags the
// host a little still accepts a freshly minted certificate.
inline constexpr std::chrono::hours kBackdate{1};

// Longest DNS name (RFC 1035, without the trailing dot) and label.
inline constexpr size_t kMaxHostNameBytes = 253;
inline constexpr size_t kMaxHostLabelBytes = 63;
// Upper bound of an X.520 commonName (RFC 5280 ub-common-name).
inline constexpr size_t kMaxCommonNameBytes = 64;

// One leaf: certificate + the key it certifies.
struct LeafCertificate {
	bssl::UniquePtr<X509> certificate;
	bssl::UniquePtr<EVP_PKEY> key; // shared by all leaves of one CA
};

// The ephemeral certificate authority of one sandbox, used to intercept the
// agent's TLS. It holds an ECDSA P-256 CA key and a single P-256 leaf key, both
// generated at creation and kept only in memory (never written anywhere), and
// mints a leaf certificate per host name (SNI), kept in a bounded LRU cache.
// Owned by the sandbox's proxy worker; it is not thread-safe and is used only
// from the worker's loop thread. It lives as long as the worker: the sandbox's
// trust bundle holds certificatePem(), so a new CA means a new bundle. Leaves
// are handed out as shared_ptr<const LeafCertificate>, so a connection may keep
// using a leaf after it was evicted or after the CA is gone.
class CertificateAuthority
{
public:
	// New ECDSA P-256 key and self-signed CA certificate: subject CN
	// "gvm sandbox <label> CA" (label truncated so the CN fits 64 bytes),
	// O "gvm"; basicConstraints critical CA:TRUE pathlen:0; keyUsage critical
	// keyCertSign+cRLSign; SKI; random 128-bit positive serial; validity
	// now-kBackdate .. now+kCaLifetime; signed ecdsa-with-SHA256. Also creates
	// the (one) P-256 leaf key. cacheEntries must be at least 1.
	static Result<std::unique_ptr<CertificateAuthority>> create(std::string_view label,
								     size_t cacheEntries = kLeafCacheEntries);

	CertificateAuthority(const CertificateAuthority &) = delete;
	CertificateAuthority &operator=(const CertificateAuthority &) = delete;

	// The CA certificate; owned by this object.
	X509 *certificate() const { return certificate_.get(); }
	// PEM of the CA certificate, for the sandbox's trust bundle.
	std::string certificatePem() const;

	// Leaf for a DNS name or an IP literal (IPv4 or IPv6, without brackets).
	// A DNS name is lower-cased and one trailing dot is dropped; it may be a
	// wildcard only as a whole leftmost label ("*.example.com"). The leaf has
	// SAN dNSName or iPAddress, CN = the name (truncated to 64 bytes), EKU
	// serverAuth, keyUsage digitalSignature critical, basicConstraints
	// CA:FALSE, AKI + SKI, a random serial and validity now-kBackdate ..
	// min(now+kLeafLifetime, CA notAfter).
	// Cached: the same name returns the same shared_ptr until it is evicted.
	// The host is untrusted input: an empty name, a name over 253 bytes, a
	// label over 63 bytes or an empty label, or characters outside
	// [A-Za-z0-9-_.*] (unless it is a valid IP literal) are refused with an
	// Error of domain Http, code 400.
	Result<std::shared_ptr<const LeafCertificate>> leafFor(std::string_view host);

	size_t cacheSize() const { return lru_.size(); }
	size_t cacheCapacity() const { return cacheEntries_; }
	// How many leaves were signed (cache misses).
	uint64_t mintedCount() const { return minted_; }

private:
	struct HostName;
	using CacheList = std::list<std::pair<std::string, std::shared_ptr<const LeafCertificate>>>;

	CertificateAuthority(bssl::UniquePtr<EVP_PKEY> key, bssl::UniquePtr<X509> certificate,
			     bssl::UniquePtr<EVP_PKEY> leafKey, time_t notAfter, size_t cacheEntries);

	Result<std::shared_ptr<const LeafCertificate>> mint(const HostName &host);

	bssl::UniquePtr<EVP_PKEY> key_;
	bssl::UniquePtr<X509> certificate_;
	bssl::UniquePtr<EVP_PKEY> leafKey_;
	time_t notAfter_;
	size_t cacheEntries_;
	uint64_t minted_ = 0;

	// Most recently used first; index_ points into lru_.
	CacheList lru_;
	std::unordered_map<std::string, CacheList::iterator> index_;
};

// Sets the leaf certificate + key, and the CA as its chain, on the
// agent-facing (server) side of an interception.
Result<void> useLeaf(SSL *ssl, const LeafCertificate &leaf, const CertificateAuthority &ca);
Result<void> useLeaf(SSL_CTX *ctx, const LeafCertificate &leaf, const CertificateAuthority &ca);

} // namespace gvm::proxy
