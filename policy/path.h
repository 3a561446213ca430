// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <string_view>

namespace gvm::policy {

// Decodes every %XX escape (malformed escapes stay as written); with
// `plusIsSpace`, '+' becomes ' ' as in form-encoded query strings.
std::string percentDecode(std::string_view text, bool plusIsSpace);

// RFC 3986 §5.2.4: removes "." and ".." segments.
std::string removeDotSegments(std::string_view path);

} // namespace gvm::policy
