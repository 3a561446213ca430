// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gvm::test {

// Writes the records as gvmd would (AuditLog, sealed and chained) into
// auditDir/audit.jsonl, creating the directories, closes the log cleanly
// and returns the file's path.
std::string writeAuditLog(const std::string &auditDir, const std::vector<nlohmann::json> &records);

} // namespace gvm::test
