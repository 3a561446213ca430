// SPDX-License-Identifier: Apache-2.0
//
// Helpers for the table-driven policy tests: where the data lives, reading
// it, and splitting a case line into words.
#pragma once

#include <string>
#include <vector>

namespace gvm::policy::test {

// $GVM_TEST_DATA/policy/<sub>, or the source tree's copy.
std::string dataDir(const std::string &sub);
// The files in `dir` whose names end in `suffix`, sorted.
std::vector<std::string> listFiles(const std::string &dir, const std::string &suffix);
std::string readFile(const std::string &path);
// Splits on blanks; '...' quotes a word that holds blanks (no escapes).
std::vector<std::string> splitWords(const std::string &line);

} // namespace gvm::policy::test
