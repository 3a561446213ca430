// SPDX-License-Identifier: Apache-2.0
#include "daemon/proxy/tls_context.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/unique_fd.h"
#include "daemon/proxy/transport.h"

namespace gvm::proxy {

namespace {

constexpr uint8_t kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

int selectAlpn(SSL *, const uint8_t **out, uint8_t *outLen, const uint8_t *in, unsigned inLen, void *)
{
	// Offer http/1.1 when the agent lists it; otherwise no ALPN at all,
	// and a client that insists on h2 fails clearly rather than silently.
	for (unsigned i = 0; i < inLen;) {
		unsigned len = in[i];
		if (i + 1 + len > inLen)
			break;
		if (len == 8 && std::memcmp(in + i + 1, "http/1.1", 8) == 0) {
			*out = in + i + 1;
			*outLen = 8;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + len;
	}
	return SSL_TLSEXT_ERR_NOACK;
}

} // namespace

Result<bssl::UniquePtr<SSL_CTX>> makeInterceptContext()
{
	bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
	if (!ctx)
		return fail(Error(ErrorDomain::Ssl, 0, "creating the interception context: " + sslErrorString()));
	SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION);
	SSL_CTX_set_alpn_select_cb(ctx.get(), selectAlpn, nullptr);
	// Sessions are not resumed across leaves: every handshake sees its leaf.
	SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
	return ctx;
}

// The trusted certificates as DER, sorted by the hash of their subject
// name; each is parsed into the verifier's store the first time a chain
// being verified names it (or a certificate it issued) as an issuer.
class UpstreamTls::TrustAnchors
{
public:
	// Reads every certificate of a PEM bundle; a block that does not parse
	// is an error naming `source`.
	Result<void> addPem(std::string_view pem, const char *source)
	{
		if (pem.empty())
			return {};
		bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), pem.size()));
		for (;;) {
			bssl::UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
			if (!cert) {
				uint32_t err = ERR_peek_last_error();
				if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
					ERR_clear_error();
					return {};
				}
				return fail(Error(ErrorDomain::Ssl, 0,
						  std::string("reading a certificate from ") + source + ": " + sslErrorString()));
			}
			uint8_t *der = nullptr;
			const int length = i2d_X509(cert.get(), &der);
			if (length <= 0)
				return fail(Error(ErrorDomain::Ssl, 0,
						  std::string("encoding a certificate from ") + source + ": " + sslErrorString()));
			bssl::UniquePtr<uint8_t> owned(der);
			anchors_.push_back({static_cast<uint32_t>(X509_NAME_hash(X509_get_subject_name(cert.get()))),
					    der_.size(), static_cast<size_t>(length)});
			der_.append(reinterpret_cast<const char *>(der), static_cast<size_t>(length));
		}
	}

	// After the last addPem: sorts the index and drops repeated
	// certificates (the host store and the extra CAs may share some).
	void seal()
	{
		const auto bytes = [this](const Anchor &a) { return std::string_view(der_).substr(a.offset, a.length); };
		std::sort(anchors_.begin(), anchors_.end(), [&](const Anchor &a, const Anchor &b) {
			return a.subjectHash != b.subjectHash ? a.subjectHash < b.subjectHash : bytes(a) < bytes(b);
		});
		anchors_.erase(std::unique(anchors_.begin(), anchors_.end(),
					   [&](const Anchor &a, const Anchor &b) {
						   return a.subjectHash == b.subjectHash && bytes(a) == bytes(b);
					   }),
			       anchors_.end());
		der_.shrink_to_fit();
		anchors_.shrink_to_fit();
	}

	size_t size() const { return anchors_.size(); }
	size_t parsed() const { return parsed_; }

	// The verify callback: puts the trusted issuers the peer's chain can
	// reach into the store, then runs X509_verify_cert, as BoringSSL does
	// without a callback.
	static int verify(X509_STORE_CTX *ctx, void *arg)
	{
		auto *self = static_cast<TrustAnchors *>(arg);
		X509_STORE *store = X509_STORE_CTX_get0_store(ctx);
		if (X509 *leaf = X509_STORE_CTX_get0_cert(ctx))
			self->addIssuersOf(store, leaf);
		if (STACK_OF(X509) *chain = X509_STORE_CTX_get0_untrusted(ctx))
			for (size_t i = 0; i < sk_X509_num(chain); ++i)
				self->addIssuersOf(store, sk_X509_value(chain, i));
		return X509_verify_cert(ctx);
	}

private:
	struct Anchor {
		uint32_t subjectHash;
		size_t offset;
		size_t length;
		bool inStore = false;
	};

	// Every trusted certificate whose subject is `cert`'s issuer goes into
	// the store, and in turn their issuers (a trusted certificate need not
	// be self-signed).
	void addIssuersOf(X509_STORE *store, X509 *cert)
	{
		const auto hash = static_cast<uint32_t>(X509_NAME_hash(X509_get_issuer_name(cert)));
		auto [first, last] = std::equal_range(anchors_.begin(), anchors_.end(), Anchor{hash, 0, 0},
						      [](const Anchor &a, const Anchor &b) { return a.subjectHash < b.subjectHash; });
		for (auto it = first; it != last; ++it) {
			if (it->inStore)
				continue;
			it->inStore = true;
			const auto *der = reinterpret_cast<const uint8_t *>(der_.data() + it->offset);
			bssl::UniquePtr<X509> anchor(d2i_X509(nullptr, &der, static_cast<long>(it->length)));
			if (!anchor || !X509_STORE_add_cert(store, anchor.get())) {
				ERR_clear_error(); // read once already; verification reports what is missing
				continue;
			}
			++parsed_;
			addIssuersOf(store, anchor.get());
		}
	}

	std::vector<Anchor> anchors_;
	std::string der_;
	size_t parsed_ = 0;
};

// The SSL_CTX owns its trust anchors, so that they live as long as any
// session that may still verify with them.
int UpstreamTls::trustAnchorsIndex()
{
	static const int index = SSL_CTX_get_ex_new_index(
		0, nullptr, nullptr, nullptr, [](void *, void *anchors, CRYPTO_EX_DATA *, int, long, void *) {
			delete static_cast<UpstreamTls::TrustAnchors *>(anchors);
		});
	return index;
}

Result<UpstreamTls> UpstreamTls::create(std::string_view hostBundlePem, std::string_view extraPem)
{
	bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
	if (!ctx)
		return fail(Error(ErrorDomain::Ssl, 0, "creating the upstream context: " + sslErrorString()));
	SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
	auto anchors = std::make_unique<TrustAnchors>();
	for (auto [pem, source] : {std::pair{hostBundlePem, "the host trust store"}, std::pair{extraPem, "--upstream-ca"}})
		if (auto added = anchors->addPem(pem, source); !added)
			return fail(std::move(added).error());
	anchors->seal();
	if (SSL_CTX_set_alpn_protos(ctx.get(), kAlpnHttp11, sizeof(kAlpnHttp11)) != 0)
		return fail(Error(ErrorDomain::Ssl, 0, "setting ALPN: " + sslErrorString()));
	TrustAnchors *raw = anchors.get();
	if (!SSL_CTX_set_ex_data(ctx.get(), trustAnchorsIndex(), raw))
		return fail(Error(ErrorDomain::Ssl, 0, "keeping the trust anchors: " + sslErrorString()));
	anchors.release();
	SSL_CTX_set_cert_verify_callback(ctx.get(), &TrustAnchors::verify, raw);
	return UpstreamTls(std::move(ctx), raw);
}

size_t UpstreamTls::trustedCount() const
{
	return anchors_->size();
}

size_t UpstreamTls::parsedCount() const
{
	return anchors_->parsed();
}

Result<bssl::UniquePtr<SSL>> UpstreamTls::newSession(const std::string &host) const
{
	bssl::UniquePtr<SSL> ssl(SSL_new(ctx_.get()));
	if (!ssl)
		return fail(Error(ErrorDomain::Ssl, 0, "creating an upstream session: " + sslErrorString()));
	in6_addr a6;
	in_addr a4;
	bool literal = ::inet_pton(AF_INET, host.c_str(), &a4) == 1 || ::inet_pton(AF_INET6, host.c_str(), &a6) == 1;
	X509_VERIFY_PARAM *param = SSL_get0_param(ssl.get());
	if (literal) {
		if (!X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()))
			return fail(Error(ErrorDomain::Ssl, 0, "setting the address to verify: " + sslErrorString()));
	} else {
		if (!SSL_set_tlsext_host_name(ssl.get(), host.c_str()))
			return fail(Error(ErrorDomain::Ssl, 0, "setting SNI: " + sslErrorString()));
		X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (!X509_VERIFY_PARAM_set1_host(param, host.data(), host.size()))
			return fail(Error(ErrorDomain::Ssl, 0, "setting the name to verify: " + sslErrorString()));
	}
	return ssl;
}

} // namespace gvm::proxy
