// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>

namespace gvm {

template<auto DeleteFn>
struct CDeleter {
	template<typename T>
	void operator()(T *p) const
	{
		if (p)
			DeleteFn(p);
	}
};

// Owner of a C library handle with its library's free function, e.g.
// CPtr<pcre2_code, pcre2_code_free> or CPtr<nl_sock, nl_socket_free>.
template<typename T, auto DeleteFn>
using CPtr = std::unique_ptr<T, CDeleter<DeleteFn>>;

} // namespace gvm
