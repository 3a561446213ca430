// SPDX-License-Identifier: Apache-2.0
#include "common/audit_chain.h"

#include <algorithm>
#include <functional>

#include "common/json_rpc.h"
#include "common/json_writer.h"
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

// Reads one JSON object of scalar members through nlohmann's SAX interface,
// refusing nesting, arrays and fractions (their canonical text is
// nlohmann's to write), so that no tree is built.
class FlatObjectReader
{
public:
	using Json = nlohmann::json;

	std::vector<AuditRecord::Member> members;

	bool null() { return value("null", false); }
	bool boolean(bool b) { return value(b ? "true" : "false", false); }
	bool number_integer(Json::number_integer_t v) { return value(std::to_string(v), false); }
	bool number_unsigned(Json::number_unsigned_t v) { return value(std::to_string(v), false); }
	bool number_float(Json::number_float_t, const std::string &) { return false; }
	bool string(std::string &v) { return value(std::move(v), true); }
	bool binary(Json::binary_t &) { return false; }
	bool start_object(std::size_t) { return depth_++ == 0; }
	bool key(std::string &k)
	{
		key_ = std::move(k);
		return true;
	}
	bool end_object()
	{
		--depth_;
		return true;
	}
	bool start_array(std::size_t) { return false; }
	bool end_array() { return false; }
	bool parse_error(std::size_t, const std::string &, const nlohmann::detail::exception &) { return false; }

private:
	bool value(std::string v, bool isString)
	{
		if (depth_ != 1)
			return false; // a bare scalar, not an object
		members.push_back({std::move(key_), std::move(v), isString});
		return true;
	}

	int depth_ = 0;
	std::string key_;
};

// Room left in a record read in for the members gvmd adds before sealing
// it (sandbox, uid, v, ts, seq, prev, hash), so adding them moves nothing.
constexpr size_t kRoomForSealing = 8;
// Members of a worker's decision record.
constexpr size_t kTypicalRecordMembers = 16;

// Reads the plain form of what workers send, which needs no general
// parser: one object whose keys and strings are printable ASCII without
// escapes and whose values are such strings, integers of at most
// kMaxPlainDigits digits, true, false or null. Anything else, valid or not,
// is not plain: read() returns nullopt and nlohmann's parser decides.
class PlainObjectReader
{
public:
	explicit PlainObjectReader(std::string_view text) : text_(text) {}

	std::optional<std::vector<AuditRecord::Member>> read()
	{
		std::vector<AuditRecord::Member> members;
		members.reserve(kTypicalRecordMembers + kRoomForSealing);
		if (!skipTo('{'))
			return std::nullopt;
		++at_;
		if (skipTo('}')) {
			++at_;
		} else {
			for (;;) {
				AuditRecord::Member m;
				auto key = string();
				if (!key || !skipTo(':'))
					return std::nullopt;
				++at_;
				skipSpace();
				if (!value(&m))
					return std::nullopt;
				m.key = *key;
				m.plain = true;
				members.push_back(std::move(m));
				skipSpace();
				if (at_ < text_.size() && text_[at_] == ',') {
					++at_;
					continue;
				}
				if (at_ < text_.size() && text_[at_] == '}') {
					++at_;
					break;
				}
				return std::nullopt;
			}
		}
		skipSpace();
		if (at_ != text_.size())
			return std::nullopt;
		return members;
	}

private:
	// Longer integers may not fit 64 bits; nlohmann's parser decides them.
	static constexpr size_t kMaxPlainDigits = 18;

	void skipSpace()
	{
		while (at_ < text_.size() &&
		       (text_[at_] == ' ' || text_[at_] == '\t' || text_[at_] == '\n' || text_[at_] == '\r'))
			++at_;
	}

	bool skipTo(char c)
	{
		skipSpace();
		return at_ < text_.size() && text_[at_] == c;
	}

	std::optional<std::string_view> string()
	{
		if (!skipTo('"'))
			return std::nullopt;
		const size_t start = ++at_;
		for (; at_ < text_.size(); ++at_) {
			const auto c = static_cast<unsigned char>(text_[at_]);
			if (c == '"')
				return text_.substr(start, at_++ - start);
			if (c < 0x20 || c >= 0x80 || c == '\\')
				return std::nullopt;
		}
		return std::nullopt;
	}

	bool literal(std::string_view word, AuditRecord::Member *m)
	{
		if (text_.substr(at_, word.size()) != word)
			return false;
		at_ += word.size();
		m->value = word;
		return true;
	}

	bool value(AuditRecord::Member *m)
	{
		if (at_ >= text_.size())
			return false;
		switch (text_[at_]) {
		case '"': {
			auto s = string();
			if (!s)
				return false;
			m->value = *s;
			m->isString = true;
			return true;
		}
		case 't': return literal("true", m);
		case 'f': return literal("false", m);
		case 'n': return literal("null", m);
		default: return integer(m);
		}
	}

	// -?(0|[1-9][0-9]*), with nothing after it that would make it a
	// fraction; "-0" is left to nlohmann (it reads as 0).
	bool integer(AuditRecord::Member *m)
	{
		const size_t start = at_;
		if (text_[at_] == '-')
			++at_;
		const size_t digits = at_;
		while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9')
			++at_;
		const size_t count = at_ - digits;
		if (count == 0 || count > kMaxPlainDigits || (text_[digits] == '0' && (count > 1 || digits > start)))
			return false;
		if (at_ < text_.size() && (text_[at_] == '.' || text_[at_] == 'e' || text_[at_] == 'E'))
			return false;
		m->value = text_.substr(start, at_ - start);
		return true;
	}

	std::string_view text_;
	size_t at_ = 0;
};

} // namespace

std::optional<AuditRecord> AuditRecord::parseFlat(std::string_view json)
{
	auto members = PlainObjectReader(json).read();
	if (!members) {
		FlatObjectReader reader;
		if (!nlohmann::json::sax_parse(json.begin(), json.end(), &reader))
			return std::nullopt;
		members = std::move(reader.members);
	}
	AuditRecord record;
	const auto keyOrder = [](const Member &a, const Member &b) { return a.key < b.key; };
	// Workers send their keys sorted and once each.
	if (std::adjacent_find(members->begin(), members->end(), std::not_fn(keyOrder)) == members->end()) {
		record.members_ = std::move(*members);
		record.members_.reserve(record.members_.size() + kRoomForSealing);
		return record;
	}
	// Sorted as nlohmann sorts object keys; for a repeated key the last
	// value stays, as in nlohmann's parser.
	std::stable_sort(members->begin(), members->end(), keyOrder);
	record.members_.reserve(members->size() + kRoomForSealing);
	for (size_t i = 0; i < members->size(); ++i) {
		auto &m = (*members)[i];
		if (i + 1 < members->size() && (*members)[i + 1].key == m.key)
			continue;
		record.members_.push_back(std::move(m));
	}
	return record;
}

AuditRecord AuditRecord::fromJson(const nlohmann::json &object)
{
	AuditRecord record;
	if (!object.is_object())
		return record;
	record.members_.reserve(object.size() + kRoomForSealing);
	for (const auto &[key, value] : object.items()) {
		if (value.is_string())
			record.members_.push_back({key, value.get<std::string>(), true});
		else
			record.members_.push_back({key, rpc::dumpJson(value), false});
	}
	return record;
}

namespace {

template <typename Members>
auto findMember(Members &members, std::string_view key)
{
	return std::lower_bound(members.begin(), members.end(), key,
				[](const auto &m, std::string_view k) { return std::string_view(m.key) < k; });
}

} // namespace

bool AuditRecord::contains(std::string_view key) const
{
	auto it = findMember(members_, key);
	return it != members_.end() && it->key == key;
}

std::string AuditRecord::text(std::string_view key) const
{
	auto it = findMember(members_, key);
	if (it == members_.end() || it->key != key || (!it->isString && it->value == "null"))
		return {};
	return it->value;
}

void AuditRecord::erase(std::string_view key)
{
	auto it = findMember(members_, key);
	if (it != members_.end() && it->key == key)
		members_.erase(it);
}

void AuditRecord::set(std::string_view key, std::string value, bool isString)
{
	auto it = findMember(members_, key);
	if (it != members_.end() && it->key == key) {
		it->value = std::move(value);
		it->isString = isString;
		it->plain = false; // the new value may need escaping
		return;
	}
	members_.insert(it, Member{std::string(key), std::move(value), isString});
}

void AuditRecord::setString(std::string_view key, std::string value)
{
	set(key, std::move(value), true);
}

void AuditRecord::setNumber(std::string_view key, uint64_t value)
{
	set(key, std::to_string(value), false);
}

std::string AuditRecord::serialize(size_t mark, size_t *markOffset) const
{
	size_t size = 2;
	for (const Member &m : members_)
		size += m.key.size() + m.value.size() + 6;
	std::string out;
	out.reserve(size + size / 8 + 80); // and room for "hash" (76 bytes)
	out += '{';
	for (size_t i = 0; i < members_.size(); ++i) {
		const Member &m = members_[i];
		if (i > 0)
			out += ',';
		if (i == mark)
			*markOffset = out.size();
		if (m.plain) {
			out += '"';
			out += m.key;
			out += "\":";
			if (m.isString) {
				out += '"';
				out += m.value;
				out += '"';
			} else {
				out += m.value;
			}
			continue;
		}
		appendJsonString(out, m.key);
		out += ':';
		if (m.isString)
			appendJsonString(out, m.value);
		else
			out += m.value;
	}
	if (mark >= members_.size())
		*markOffset = out.size();
	out += '}';
	return out;
}

std::string AuditRecord::seal(uint64_t seq, const std::string &prev)
{
	setNumber("seq", seq);
	setString("prev", prev);
	erase("hash");
	// Without "hash", the serialisation is the canonical form; the line
	// is the same text with "hash" put in its place in key order.
	const auto at = findMember(members_, "hash");
	const size_t index = static_cast<size_t>(at - members_.begin());
	size_t offset = 0;
	std::string line = serialize(index, &offset);
	std::string hash = sha256Hex(prev, line);
	std::string member = "\"hash\":\"" + hash + "\"";
	if (index < members_.size())
		member += ',';
	else if (index > 0)
		member.insert(0, 1, ',');
	line.insert(offset, member);
	members_.insert(at, Member{"hash", std::move(hash), true});
	return line;
}

std::string decisionLine(std::string_view recordJson)
{
	std::string line;
	line.reserve(kDecisionLineHead.size() + recordJson.size() + kDecisionLineTail.size() + 1);
	line += kDecisionLineHead;
	line += recordJson;
	line += kDecisionLineTail;
	line += '\n';
	return line;
}

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
	std::string hash = sha256Hex(prev, rpc::dumpJson(record));
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
		if (sha256Hex(prev, canonicalAuditRecord(r)) != hash)
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
