// SPDX-License-Identifier: Apache-2.0
#include "common/file.h"

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

#include "common/unique_fd.h"

namespace gvm {

Result<std::string> readFileBounded(const std::string &path, size_t limit)
{
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd)
		return fail(Error::fromErrno(errno, "opening " + path));
	std::string out;
	char buf[65536];
	for (;;) {
		ssize_t n = ::read(fd.get(), buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(Error::fromErrno(errno, "reading " + path));
		if (n == 0)
			return out;
		out.append(buf, static_cast<size_t>(n));
		if (out.size() > limit)
			return fail(Error::fromErrno(EFBIG, path + " is larger than " + std::to_string(limit) + " bytes"));
	}
}

} // namespace gvm
