// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include "common/result.h"

namespace gvm::test {

// A small public key infrastructure for tests of upstream TLS, made
// in-process with BoringSSL (ECDSA P-256, SHA-256) and written as PEM files
// into a directory the caller owns (and removes). Each file name below is
// relative to that directory:
//
//   ca.pem                   root "gvm test upstream CA": the one to trust
//                            (curl --cacert, gvmctl launch --upstream-ca)
//   good.pem, good-key.pem   signed by ca.pem; SANs *.gvm.test, gvm.test,
//                            localhost, IP 127.0.0.1; valid now
//   wrong-name.pem, -key     signed by ca.pem; SAN only other.invalid
//   expired.pem, -key        signed by ca.pem; valid names, notAfter a day ago
//   untrusted.pem, -key      valid names, signed by untrusted-ca.pem
//   untrusted-ca.pem         a second root that nobody is told to trust; it
//                            is written only so a test can prove that trust
//                            is what fails
//
// Certificates are mode 0644 and the directory is made 0755, so the proxy
// worker (its own unprivileged uid) can read ca.pem; keys are 0600.
// A value type: it holds only paths; the files live as long as the directory.
class TestPki
{
public:
	static Result<TestPki> create(const std::string &dir);

	const std::string &dir() const { return dir_; }
	std::string caCert() const { return dir_ + "/ca.pem"; }
	std::string goodCert() const { return dir_ + "/good.pem"; }
	std::string goodKey() const { return dir_ + "/good-key.pem"; }
	std::string wrongNameCert() const { return dir_ + "/wrong-name.pem"; }
	std::string wrongNameKey() const { return dir_ + "/wrong-name-key.pem"; }
	std::string expiredCert() const { return dir_ + "/expired.pem"; }
	std::string expiredKey() const { return dir_ + "/expired-key.pem"; }
	std::string untrustedCert() const { return dir_ + "/untrusted.pem"; }
	std::string untrustedKey() const { return dir_ + "/untrusted-key.pem"; }
	std::string untrustedCaCert() const { return dir_ + "/untrusted-ca.pem"; }

private:
	explicit TestPki(std::string dir) : dir_(std::move(dir)) {}

	std::string dir_;
};

} // namespace gvm::test
