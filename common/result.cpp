// SPDX-License-Identifier: Apache-2.0
#include "common/result.h"

#include <cstring>

#include <openssl/err.h>
#include <pcre2.h>
#include <uv.h>

namespace gvm {

const char *toString(ErrorDomain domain)
{
	switch (domain) {
	case ErrorDomain::Errno: return "errno";
	case ErrorDomain::Libuv: return "libuv";
	case ErrorDomain::Netlink: return "netlink";
	case ErrorDomain::Ssl: return "ssl";
	case ErrorDomain::Pcre2: return "pcre2";
	case ErrorDomain::Policy: return "policy";
	case ErrorDomain::Rpc: return "rpc";
	case ErrorDomain::Http: return "http";
	case ErrorDomain::Internal: return "internal";
	}
	return "unknown";
}

Error Error::fromErrno(int err, std::string context)
{
	return Error(ErrorDomain::Errno, err, std::move(context));
}

Error Error::fromLibuv(int status, std::string context)
{
	return Error(ErrorDomain::Libuv, status, std::move(context));
}

Error Error::fromSsl(std::string context)
{
	uint32_t first = 0;
	char buf[256];
	while (uint32_t e = ERR_get_error()) {
		if (!first)
			first = e;
		ERR_error_string_n(e, buf, sizeof(buf));
		context += context.empty() ? "" : ": ";
		context += buf;
	}
	return Error(ErrorDomain::Ssl, static_cast<int>(first), std::move(context));
}

Error Error::fromPcre2(int code, std::string context)
{
	return Error(ErrorDomain::Pcre2, code, std::move(context));
}

Error Error::wrap(std::string_view what) &&
{
	context_ = std::string(what) + (context_.empty() ? "" : ": ") + context_;
	return std::move(*this);
}

Error Error::wrap(std::string_view what) const &
{
	Error copy = *this;
	return std::move(copy).wrap(what);
}

std::string Error::message() const
{
	std::string detail;
	switch (domain_) {
	case ErrorDomain::Errno:
		detail = std::strerror(code_);
		break;
	case ErrorDomain::Libuv:
		detail = uv_strerror(code_);
		break;
	case ErrorDomain::Pcre2: {
		PCRE2_UCHAR buf[256];
		if (pcre2_get_error_message(code_, buf, sizeof(buf)) > 0)
			detail = reinterpret_cast<const char *>(buf);
		break;
	}
	case ErrorDomain::Netlink:
	case ErrorDomain::Ssl:
	case ErrorDomain::Policy:
	case ErrorDomain::Rpc:
	case ErrorDomain::Http:
	case ErrorDomain::Internal:
		break;
	}
	if (detail.empty())
		return context_;
	if (context_.empty())
		return detail;
	return context_ + ": " + detail;
}

} // namespace gvm
