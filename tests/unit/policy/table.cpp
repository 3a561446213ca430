// SPDX-License-Identifier: Apache-2.0
#include "table.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace gvm::policy::test {

std::string dataDir(const std::string &sub)
{
	const char *env = std::getenv("GVM_TEST_DATA");
	std::string root = env && *env ? env : "tests/data";
	return root + "/policy/" + sub;
}

std::vector<std::string> listFiles(const std::string &dir, const std::string &suffix)
{
	std::vector<std::string> files;
	std::error_code ec;
	for (const auto &entry : std::filesystem::directory_iterator(dir, ec)) {
		std::string path = entry.path().string();
		if (path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0)
			files.push_back(path);
	}
	std::sort(files.begin(), files.end());
	return files;
}

std::string readFile(const std::string &path)
{
	std::ifstream in(path, std::ios::binary);
	std::ostringstream out;
	out << in.rdbuf();
	return out.str();
}

std::vector<std::string> splitWords(const std::string &line)
{
	std::vector<std::string> words;
	std::string word;
	bool inWord = false;
	bool quoted = false;
	for (char c : line) {
		if (c == '\'') {
			quoted = !quoted;
			inWord = true;
		} else if (!quoted && (c == ' ' || c == '\t')) {
			if (inWord)
				words.push_back(word);
			word.clear();
			inWord = false;
		} else {
			word += c;
			inWord = true;
		}
	}
	if (inWord)
		words.push_back(word);
	return words;
}

} // namespace gvm::policy::test
