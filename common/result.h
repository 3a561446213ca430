// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace gvm {

// Where an error code comes from. Codes of different domains are different
// number spaces (libnl's NLE_* is not errno, a libuv code is a negative errno,
// BoringSSL packs library and reason), so an Error always carries its domain.
enum class ErrorDomain {
	Errno,    // code is an errno value
	Libuv,    // code is a libuv status (negative)
	Netlink,  // code is a libnl NLE_* value
	Ssl,      // code is a BoringSSL packed error
	Pcre2,    // code is a PCRE2 error code
	Policy,   // code is unused; the context says what is wrong
	Rpc,      // code is a JSON-RPC error code
	Http,     // code is the HTTP status to answer with (400, 413, 431, 502...)
	Internal, // code is unused
};

const char *toString(ErrorDomain domain);

// A failure: its domain, its code within the domain and a human context that
// reads outermost first ("while launching: while creating veth: File exists").
class Error
{
public:
	Error(ErrorDomain domain, int code, std::string context)
		: domain_(domain), code_(code), context_(std::move(context))
	{
	}

	static Error fromErrno(int err, std::string context);
	static Error fromLibuv(int status, std::string context);
	// Drains the BoringSSL error queue of this thread into the context.
	static Error fromSsl(std::string context);
	static Error fromPcre2(int code, std::string context);
	static Error internal(std::string context) { return Error(ErrorDomain::Internal, 0, std::move(context)); }

	ErrorDomain domain() const { return domain_; }
	int code() const { return code_; }
	const std::string &context() const { return context_; }

	// Adds an outer context: "while <what>: <previous>".
	Error wrap(std::string_view what) &&;
	Error wrap(std::string_view what) const &;

	// The whole human message: context plus the text of the code.
	std::string message() const;

private:
	ErrorDomain domain_;
	int code_;
	std::string context_;
};

// The error side of a Result, like std::unexpected.
struct Failure {
	Error error;
};

inline Failure fail(Error error) { return Failure{std::move(error)}; }

// Result<T> holds a T or an Error; shaped like std::expected (which GCC 12
// lacks in C++20 mode).
template<typename T>
class [[nodiscard]] Result
{
public:
	Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
	Result(Failure failure) : v_(std::in_place_index<1>, std::move(failure.error)) {}
	Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

	bool has_value() const { return v_.index() == 0; }
	explicit operator bool() const { return has_value(); }

	T &value() & { assert(has_value()); return std::get<0>(v_); }
	const T &value() const & { assert(has_value()); return std::get<0>(v_); }
	T &&value() && { assert(has_value()); return std::get<0>(std::move(v_)); }
	T &operator*() & { return value(); }
	const T &operator*() const & { return value(); }
	T &&operator*() && { return std::move(*this).value(); }
	T *operator->() { return &value(); }
	const T *operator->() const { return &value(); }

	const Error &error() const & { assert(!has_value()); return std::get<1>(v_); }
	Error &&error() && { assert(!has_value()); return std::get<1>(std::move(v_)); }

private:
	std::variant<T, Error> v_;
};

template<>
class [[nodiscard]] Result<void>
{
public:
	Result() = default;
	Result(Failure failure) : error_(std::move(failure.error)), failed_(true) {}
	Result(Error error) : error_(std::move(error)), failed_(true) {}

	bool has_value() const { return !failed_; }
	explicit operator bool() const { return has_value(); }

	const Error &error() const & { assert(failed_); return error_; }
	Error &&error() && { assert(failed_); return std::move(error_); }

private:
	Error error_{ErrorDomain::Internal, 0, {}};
	bool failed_ = false;
};

} // namespace gvm

// Evaluates a Result-returning expression and returns its error from the
// enclosing function, wrapped with the given context.
#define GVM_TRY_VOID(expr, what)                                        \
	do {                                                            \
		auto gvm_try_r_ = (expr);                               \
		if (!gvm_try_r_)                                        \
			return ::gvm::fail(std::move(gvm_try_r_).error().wrap(what)); \
	} while (0)
