// SPDX-License-Identifier: Apache-2.0
//
// The HTTPS client of the sandbox benchmark. sandbox-bench runs itself as
// this client (`sandbox-bench --client ...`) in two places: in a plain
// network namespace of the benchmark's (the direct path to the origin, and
// the path through an nginx reverse proxy), and as the agent of a gvm
// sandbox, where it connects to the origin's address as if there were no
// proxy and the sandbox's nftables send it to the worker (the transparent
// path). proxy_client.h's connection only dials 127.0.0.1 with
// the name "localhost"; this one dials an IPv4 address with a server name
// of its choice (SNI, verified name and Host). One leg per run; the result
// is one JSON object on stdout. Blocking sockets, every operation bounded
// by kIoTimeout (proxy_client.h).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace gvm::bench {

enum class ClientLeg { Fresh, KeepAlive, Bulk };
const char *toString(ClientLeg leg);

struct ClientOptions {
	ClientLeg leg = ClientLeg::Fresh;
	std::string address;   // the IPv4 address dialled (origin or proxy)
	uint16_t port = 0;
	std::string name;      // SNI, the name verified, Host
	std::string caFile;    // PEM of the CAs trusted
	int requests = 100;    // fresh: measured requests
	int warmup = 10;       // fresh: requests before measuring
	double seconds = 3;    // keep-alive: duration
	int connections = 8;   // keep-alive: parallel connections
	int bulkRuns = 1;      // bulk: GETs of the large file
	std::string smallPath = "/1k";
	uint64_t smallBytes = 1024;
	std::string bulkPath = "/256m";
	uint64_t bulkBytes = 256ull * 1024 * 1024;
};

// Runs one leg. Fresh: {"total_ms":[...],"tcp_ms":[...],"tls_ms":[...],
// "get_ms":[...]}; keep-alive: {"requests","seconds","per_second"}; bulk:
// {"mb_per_second":[...]}; all with "error" ("" when none).
nlohmann::json runClient(const ClientOptions &options);

} // namespace gvm::bench
