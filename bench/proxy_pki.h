// SPDX-License-Identifier: Apache-2.0
//
// The test PKI of the benchmarks: a throwaway CA and one server
// certificate (for "localhost" and 127.0.0.1 unless told otherwise) that
// the benchmarks' nginx instances present. Both keys are P-256, like the leaves the worker mints,
// so that the handshakes compared cost the same on the server side.
#pragma once

#include <string>

#include "common/result.h"

namespace gvm::bench {

struct TestPki {
	std::string caPem;     // the CA certificate: what clients trust
	std::string serverPem; // the server certificate (signed by the CA)
	std::string serverKeyPem;
};

// Generates a fresh CA and server certificate, valid from an hour ago for a
// week. Fails only when BoringSSL does.
// `name` and `address` are the server certificate's subject alternative
// names (DNS and IP).
Result<TestPki> makeTestPki(const std::string &name = "localhost", const std::string &address = "127.0.0.1");

} // namespace gvm::bench
