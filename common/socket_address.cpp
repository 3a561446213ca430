// SPDX-License-Identifier: Apache-2.0
#include "common/socket_address.h"

#include <arpa/inet.h>
#include <cerrno>
#include <charconv>
#include <netinet/in.h>

namespace gvm {

namespace {

Error invalid(std::string_view text, const std::string &why)
{
	return Error::fromErrno(EINVAL, "'" + std::string(text) + "' is not an address[:port] (" + why + ")");
}

} // namespace

Result<sockaddr_storage> parseSocketAddress(std::string_view text, uint16_t defaultPort)
{
	std::string host(text);
	std::string_view portText;
	if (!text.empty() && text.front() == '[') {
		size_t close = text.find(']');
		if (close == std::string_view::npos)
			return fail(invalid(text, "']' missing"));
		host = std::string(text.substr(1, close - 1));
		std::string_view rest = text.substr(close + 1);
		if (!rest.empty()) {
			if (rest.front() != ':')
				return fail(invalid(text, "':PORT' expected after ']'"));
			portText = rest.substr(1);
		}
	} else if (size_t colon = text.find(':');
		   colon != std::string_view::npos && text.find(':', colon + 1) == std::string_view::npos) {
		// One colon: IPv4 with a port (IPv6 has several).
		host = std::string(text.substr(0, colon));
		portText = text.substr(colon + 1);
	}
	uint16_t port = defaultPort;
	if (!portText.empty() || text.ends_with(':')) {
		unsigned value = 0;
		auto [end, ec] = std::from_chars(portText.data(), portText.data() + portText.size(), value);
		if (ec != std::errc() || end != portText.data() + portText.size() || value == 0 || value > 65535)
			return fail(invalid(text, "the port must be 1-65535"));
		port = static_cast<uint16_t>(value);
	}
	sockaddr_storage out{};
	auto *v4 = reinterpret_cast<sockaddr_in *>(&out);
	auto *v6 = reinterpret_cast<sockaddr_in6 *>(&out);
	if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
		return out;
	}
	if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(port);
		return out;
	}
	return fail(invalid(text, "not a numeric IPv4 or IPv6 address"));
}

std::string formatSocketAddress(const sockaddr_storage &address)
{
	char text[INET6_ADDRSTRLEN] = {};
	if (address.ss_family == AF_INET) {
		const auto *v4 = reinterpret_cast<const sockaddr_in *>(&address);
		::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text));
		return std::string(text) + ":" + std::to_string(ntohs(v4->sin_port));
	}
	if (address.ss_family == AF_INET6) {
		const auto *v6 = reinterpret_cast<const sockaddr_in6 *>(&address);
		::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text));
		return "[" + std::string(text) + "]:" + std::to_string(ntohs(v6->sin6_port));
	}
	return "?";
}

Result<sockaddr_storage> firstNameserver(std::string_view resolvConf)
{
	size_t start = 0;
	while (start < resolvConf.size()) {
		size_t end = resolvConf.find('\n', start);
		std::string_view line = resolvConf.substr(start, end == std::string_view::npos ? end : end - start);
		start = end == std::string_view::npos ? resolvConf.size() : end + 1;
		constexpr std::string_view kKey = "nameserver";
		if (!line.starts_with(kKey) || line.size() == kKey.size() || (line[kKey.size()] != ' ' && line[kKey.size()] != '\t'))
			continue;
		std::string_view value = line.substr(kKey.size());
		while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
			value.remove_prefix(1);
		size_t stop = value.find_first_of(" \t\r#;");
		value = value.substr(0, stop);
		// A scoped IPv6 address ("fe80::1%eth0") is not reachable by
		// number alone: skipped.
		if (value.empty() || value.find('%') != std::string_view::npos)
			continue;
		if (value.find(':') != std::string_view::npos)
			return parseSocketAddress("[" + std::string(value) + "]", 53);
		return parseSocketAddress(value, 53);
	}
	return fail(Error::fromErrno(ENOENT, "no usable nameserver line"));
}

} // namespace gvm
