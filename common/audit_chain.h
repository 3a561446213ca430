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
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace gvm {

inline constexpr char kGenesisHash[] = "0000000000000000000000000000000000000000000000000000000000000000";
// Lines longer than this are not records (the writer never produces them).
inline constexpr size_t kMaxAuditLineBytes = 1024 * 1024;

// The canonical serialisation of a record without its "hash".
std::string canonicalAuditRecord(const nlohmann::json &record);

// Sets "seq" and "prev" and computes "hash"; returns the hash.
std::string sealAuditRecord(nlohmann::json &record, uint64_t seq, const std::string &prev);

// A proxy worker reports each decision to gvmd as one JSON-RPC notification
// line: kDecisionLineHead, the record (a JSON object), kDecisionLineTail.
inline constexpr std::string_view kDecisionLineHead = R"({"jsonrpc":"2.0","method":"decision","params":{"record":)";
inline constexpr std::string_view kDecisionLineTail = "}}";
// That line for one record's JSON text, newline included.
std::string decisionLine(std::string_view recordJson);

// One record as its members, kept sorted by key, for gvmd's writer: a
// record is written for every request an agent makes, and this form is
// read from the worker's text, edited and sealed into its line without
// building a JSON tree. seal() writes exactly what sealAuditRecord() and
// rpc::dumpJson() would for the same content.
class AuditRecord
{
public:
	// One member: its key and its value.
	struct Member {
		std::string key;
		std::string value; // a string's own text, else its JSON text
		bool isString = false;
		// The key and value are printable ASCII without quotes or
		// backslashes: written as they are, without escaping.
		bool plain = false;
	};

	// From JSON text that is one object whose values are all strings,
	// integers, booleans or null (what workers send); nullopt for anything
	// else, invalid JSON included. A repeated key keeps its last value.
	static std::optional<AuditRecord> parseFlat(std::string_view json);
	// From any JSON object; nested values are kept as their canonical text.
	static AuditRecord fromJson(const nlohmann::json &object);

	bool contains(std::string_view key) const;
	// A string member's own text, the JSON text of any other value, and ""
	// for null or an absent key.
	std::string text(std::string_view key) const;
	void erase(std::string_view key);
	void setString(std::string_view key, std::string value);
	void setNumber(std::string_view key, uint64_t value);

	// Sets "seq" and "prev", computes "hash" as sealAuditRecord() does and
	// returns the record's line (its canonical serialisation with "hash",
	// no newline).
	std::string seal(uint64_t seq, const std::string &prev);

private:
	void set(std::string_view key, std::string value, bool isString);
	// Compact JSON of the members, keys in order; *markOffset is where
	// the member at index mark starts (for mark == size, the closing
	// brace).
	std::string serialize(size_t mark, size_t *markOffset) const;

	std::vector<Member> members_;
};

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
