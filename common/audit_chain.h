// SPDX-License-Identifier: Apache-2.0
//
// The audit log's hash chain, shared by its writer (gvmd) and its verifier
// (gvmctl audit verify). A log is JSON lines; each record carries "seq"
// (1, 2, ...), "prev" (the previous record's hash; kGenesisHash for the
// first) and "hash" = SHA-256 over the bytes of "prev" (64 hex characters)
// followed by the record's canonical serialisation without "hash": compact
// JSON, keys sorted, invalid UTF-8 replaced.
#pragma once

#include <cstdint>
#include <istream>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace gvm {

inline constexpr char kGenesisHash[] = "0000000000000000000000000000000000000000000000000000000000000000";
// Lines longer than this are not records (the writer never produces them).
inline constexpr size_t kMaxAuditLineBytes = 1024 * 1024;

// The canonical serialisation of a record without its "hash".
std::string canonicalAuditRecord(const nlohmann::json &record);

// Sets "seq" and "prev" and computes "hash"; returns the hash.
std::string sealAuditRecord(nlohmann::json &record, uint64_t seq, const std::string &prev);

struct AuditVerifyReport {
	enum class Status {
		Intact,    // every record chains to the one before
		Truncated, // intact up to a last line that was cut short
		Broken,    // a record was edited, removed, reordered or inserted
	};
	Status status = Status::Intact;
	uint64_t records = 0;    // intact records read
	uint64_t line = 0;       // 1-based line of the first problem; 0 if none
	std::string problem;     // what is wrong there, in one sentence
	std::string lastHash = kGenesisHash; // hash of the last intact record
	uint64_t lastSeq = 0;
};
const char *toString(AuditVerifyReport::Status status); // "intact", "truncated", "broken"

// Reads a whole log and reports the first broken link.
AuditVerifyReport verifyAuditLog(std::istream &in);

} // namespace gvm
