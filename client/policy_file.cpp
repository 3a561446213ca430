// SPDX-License-Identifier: Apache-2.0
#include "client/policy_file.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json_rpc.h"
#include "common/unique_fd.h"

namespace gvm::client {

Result<std::string> readTextFile(const std::string &path, const std::string &what)
{
	const std::string context = "cannot read " + what + " " + path;
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd)
		return fail(Error::fromErrno(errno, context));
	struct stat st{};
	if (::fstat(fd.get(), &st) < 0)
		return fail(Error::fromErrno(errno, context));
	if (S_ISDIR(st.st_mode))
		return fail(Error::fromErrno(EISDIR, context));
	std::string text;
	char buf[65536];
	for (;;) {
		ssize_t n = ::read(fd.get(), buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fail(Error::fromErrno(errno, context));
		}
		if (n == 0)
			break;
		text.append(buf, static_cast<size_t>(n));
		if (text.size() > rpc::kMaxMessageBytes)
			return fail(Error::internal(context + ": larger than " + std::to_string(rpc::kMaxMessageBytes) +
						    " bytes"));
	}
	return text;
}

std::optional<LocalPolicy> loadLocalPolicy(const std::string &path, std::ostream &err)
{
	auto text = readTextFile(path, "policy file");
	if (!text) {
		err << "gvmctl: " << text.error().message() << "\n";
		return std::nullopt;
	}
	// The very text that goes to gvmd is what is checked here.
	policy::LoadResult loaded = policy::loadPolicy(*text, path);
	if (!loaded.diagnostics.empty() || !loaded.engine) {
		for (const auto &d : loaded.diagnostics)
			err << d.toString() << "\n";
		err << path << ": " << loaded.diagnostics.size()
		    << (loaded.diagnostics.size() == 1 ? " error" : " errors") << ", nothing was sent to gvmd\n";
		return std::nullopt;
	}
	return LocalPolicy{path, std::move(*text), std::move(loaded.engine)};
}

} // namespace gvm::client
