// SPDX-License-Identifier: Apache-2.0
#include "common/audit_chain.h"

#include "common/json_rpc.h"
#include "common/sha256.h"

namespace gvm {

namespace {

bool isHex64(const nlohmann::json &v)
{
	if (!v.is_string())
		return false;
	const auto &s = v.get_ref<const std::string &>();
	return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

} // namespace

std::string canonicalAuditRecord(const nlohmann::json &record)
{
	nlohmann::json copy = record;
	copy.erase("hash");
	// nlohmann::json keeps object keys sorted, so dump() is canonical.
	return rpc::dumpJson(copy);
}

std::string sealAuditRecord(nlohmann::json &record, uint64_t seq, const std::string &prev)
{
	record["seq"] = seq;
	record["prev"] = prev;
	record.erase("hash");
	// Without "hash", the record's dump is its canonical form.
	std::string hash = sha256Hex(prev + rpc::dumpJson(record));
	record["hash"] = hash;
	return hash;
}

const char *toString(AuditVerifyReport::Status status)
{
	switch (status) {
	case AuditVerifyReport::Status::Intact: return "intact";
	case AuditVerifyReport::Status::Truncated: return "truncated";
	case AuditVerifyReport::Status::Broken: return "broken";
	}
	return "?";
}

AuditVerifyReport verifyAuditLog(std::istream &in)
{
	AuditVerifyReport report;
	std::string line;
	uint64_t lineNo = 0;
	auto broken = [&](std::string problem) {
		report.status = AuditVerifyReport::Status::Broken;
		report.line = lineNo;
		report.problem = std::move(problem);
		return report;
	};
	while (std::getline(in, line)) {
		++lineNo;
		// getline() sets eof when the last line has no newline: the
		// writer always ends a record with one, so such a line was cut
		// short (a crash or a full disk during the write).
		const bool unterminated = in.eof();
		std::optional<nlohmann::json> record;
		if (line.size() <= kMaxAuditLineBytes)
			record = rpc::parseJson(line);
		if (unterminated && (!record || !record->is_object())) {
			report.status = AuditVerifyReport::Status::Truncated;
			report.line = lineNo;
			report.problem = "the last line is an incomplete record (the log was cut short during a write); "
					 "the records before it are intact";
			return report;
		}
		if (!record || !record->is_object())
			return broken("not a JSON record");
		const nlohmann::json &r = *record;
		if (!r.contains("hash") || !isHex64(r["hash"]) || !r.contains("prev") || !isHex64(r["prev"]))
			return broken("record without a valid \"prev\" and \"hash\"");
		if (!r.contains("seq") || !r["seq"].is_number_unsigned())
			return broken("record without a valid \"seq\"");
		const std::string &prev = r["prev"].get_ref<const std::string &>();
		const std::string &hash = r["hash"].get_ref<const std::string &>();
		const uint64_t seq = r["seq"].get<uint64_t>();
		if (sha256Hex(prev + canonicalAuditRecord(r)) != hash)
			return broken("record " + std::to_string(seq) + " was modified: its hash does not match its content");
		if (prev != report.lastHash)
			return broken("record " + std::to_string(seq) + " does not follow record " +
				      std::to_string(report.lastSeq) + ": a record was removed, reordered or inserted here");
		if (seq != report.lastSeq + 1)
			return broken("record " + std::to_string(seq) + " follows record " + std::to_string(report.lastSeq) +
				      ": sequence numbers must increase by one");
		report.records++;
		report.lastSeq = seq;
		report.lastHash = hash;
		if (unterminated) {
			// A complete record missing only its newline: intact, but
			// the write was cut short all the same.
			report.status = AuditVerifyReport::Status::Truncated;
			report.line = lineNo;
			report.problem = "the last record is not terminated by a newline (the log was cut short during a write)";
			return report;
		}
	}
	return report;
}

} // namespace gvm
