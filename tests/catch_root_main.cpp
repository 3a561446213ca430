// SPDX-License-Identifier: Apache-2.0
// Main for test programs that need root: they create kernel objects or switch
// users. Without root they exit 77, which meson reports as SKIP (and CI
// counts as a failure).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (geteuid() != 0) {
		std::fprintf(stderr, "this test needs root; skipping\n");
		return 77;
	}
	return Catch::Session().run(argc, argv);
}
