// SPDX-License-Identifier: Apache-2.0
#include "tests/support/audit_log.h"

#include <filesystem>
#include <stdexcept>

#include "common/loop.h"
#include "daemon/audit_log.h"

namespace gvm::test {

std::string writeAuditLog(const std::string &auditDir, const std::vector<nlohmann::json> &records)
{
	std::filesystem::create_directories(std::filesystem::path(auditDir).parent_path());
	auto loop = Loop::create();
	if (!loop)
		throw std::runtime_error(loop.error().message());
	auto log = daemon::AuditLog::open(**loop, auditDir);
	if (!log)
		throw std::runtime_error(log.error().message());
	for (const auto &record : records)
		(*log)->append(AuditRecord::fromJson(record));
	std::string path = (*log)->path();
	log->reset(); // writes and syncs
	return path;
}

} // namespace gvm::test
