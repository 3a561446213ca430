// SPDX-License-Identifier: Apache-2.0
#include "daemon/proxy/tls_context.h"

#include <arpa/inet.h>
#include <cstring>
#include <fcntl.h>
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

Result<size_t> addPem(X509_STORE *store, std::string_view pem, const char *source)
{
	if (pem.empty())
		return size_t{0};
	bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), pem.size()));
	size_t added = 0;
	for (;;) {
		bssl::UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
		if (!cert) {
			uint32_t err = ERR_peek_last_error();
			if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
				ERR_clear_error();
				break;
			}
			return fail(Error(ErrorDomain::Ssl, 0, std::string("reading a certificate from ") + source + ": " +
									   sslErrorString()));
		}
		if (!X509_STORE_add_cert(store, cert.get())) {
			// Duplicates between the host store and extra CAs are fine.
			ERR_clear_error();
			continue;
		}
		++added;
	}
	return added;
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

Result<UpstreamTls> UpstreamTls::create(std::string_view hostBundlePem, std::string_view extraPem)
{
	bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
	if (!ctx)
		return fail(Error(ErrorDomain::Ssl, 0, "creating the upstream context: " + sslErrorString()));
	SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
	X509_STORE *store = SSL_CTX_get_cert_store(ctx.get());
	auto host = addPem(store, hostBundlePem, "the host trust store");
	if (!host)
		return fail(std::move(host).error());
	auto extra = addPem(store, extraPem, "--upstream-ca");
	if (!extra)
		return fail(std::move(extra).error());
	if (SSL_CTX_set_alpn_protos(ctx.get(), kAlpnHttp11, sizeof(kAlpnHttp11)) != 0)
		return fail(Error(ErrorDomain::Ssl, 0, "setting ALPN: " + sslErrorString()));
	return UpstreamTls(std::move(ctx), *host + *extra);
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
