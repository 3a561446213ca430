// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <string>

#include "common/result.h"

namespace gvm {

// Reads a whole file (opened O_CLOEXEC, EINTR retried). A file longer than
// `limit` bytes is an EFBIG error naming it, so callers bound what a file
// they do not control can make them hold.
Result<std::string> readFileBounded(const std::string &path, size_t limit);

} // namespace gvm
