// SPDX-License-Identifier: Apache-2.0
#include "daemon/proxy/dns_message.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>

#include "common/big_endian.h"
#include "common/text.h"
#include "policy/policy.h"

namespace gvm::proxy {

namespace {

constexpr int kOpcodeShift = 11;
// RFC 6891 §6.1.3: the DO bit in the OPT record's TTL field.
constexpr uint32_t kEdnsDoBit = 0x00008000;
constexpr uint8_t kPointerBits = 0xc0;
constexpr size_t kOptRecordBytes = 11; // root name, type, class, ttl, rdlength
// RFC 2181 §8: a TTL with the top bit set means zero.
constexpr uint32_t kMaxTtl = 0x7fffffff;

Error malformed(const std::string &what, size_t offset)
{
	return Error::internal(what + " at offset " + std::to_string(offset));
}

// Reads big-endian integers from a message; the caller checks room first.
class Cursor
{
public:
	explicit Cursor(std::string_view message, size_t pos = 0) : msg_(message), pos_(pos) {}

	size_t pos() const { return pos_; }
	void seek(size_t pos) { pos_ = pos; }
	size_t left() const { return msg_.size() - pos_; }
	bool atEnd() const { return pos_ == msg_.size(); }
	std::string_view message() const { return msg_; }

	uint8_t byteAt(size_t at) const { return static_cast<uint8_t>(msg_[at]); }
	uint16_t u16()
	{
		uint16_t v = static_cast<uint16_t>(byteAt(pos_) << 8 | byteAt(pos_ + 1));
		pos_ += 2;
		return v;
	}
	uint32_t u32()
	{
		uint32_t hi = u16();
		return hi << 16 | u16();
	}

	// Reads `n` bytes' worth of fixed fields; an Error naming `what` when
	// the message ends first.
	Result<void> need(size_t n, const char *what) const
	{
		if (left() < n)
			return fail(malformed(std::string("message ends inside ") + what, pos_));
		return {};
	}

private:
	std::string_view msg_;
	size_t pos_;
};

struct Name {
	std::string text; // lower-cased, '.'-joined, no trailing dot
	std::string wire; // uncompressed, original case
};

// Whether a query name may contain the byte: printable ASCII but space and
// '.' (a '.' inside a label would read as a label boundary to the policy
// while the upstream resolves something else).
bool isQueryNameByte(uint8_t c)
{
	return c > 0x20 && c < 0x7f && c != '.';
}

// Reads a (possibly compressed) name at the cursor and moves the cursor past
// it. A compression pointer must point before the start of the name segment
// it was found in (so each jump goes strictly backwards and no pointer can
// ever be revisited), at most kMaxDnsCompressionJumps of them.
Result<Name> readName(Cursor &cursor, bool strictBytes)
{
	std::string_view msg = cursor.message();
	Name name;
	size_t p = cursor.pos();
	size_t limit = p; // a pointer must point below this
	size_t resume = 0; // where the cursor goes after a first jump
	size_t jumps = 0;
	size_t wireBytes = 0;
	for (;;) {
		if (p >= msg.size())
			return fail(malformed("name runs past the end of the message", p));
		uint8_t len = static_cast<uint8_t>(msg[p]);
		if ((len & kPointerBits) == kPointerBits) {
			if (p + 1 >= msg.size())
				return fail(malformed("truncated compression pointer", p));
			size_t target = static_cast<size_t>(len & ~kPointerBits) << 8 | static_cast<uint8_t>(msg[p + 1]);
			if (target >= limit)
				return fail(malformed("compression pointer to offset " + std::to_string(target) +
							      " does not point backwards",
						      p));
			if (++jumps > kMaxDnsCompressionJumps)
				return fail(malformed("more than " + std::to_string(kMaxDnsCompressionJumps) +
							      " compression pointers in one name",
						      p));
			if (jumps == 1)
				resume = p + 2;
			limit = target;
			p = target;
			continue;
		}
		if (len > kMaxDnsLabelBytes)
			return fail(malformed("label length " + std::to_string(len) + " is over " +
						      std::to_string(kMaxDnsLabelBytes) + " (or an unsupported label type)",
					      p));
		wireBytes += 1u + len;
		if (wireBytes > kMaxDnsNameWireBytes)
			return fail(malformed("name is longer than " + std::to_string(kMaxDnsNameWireBytes) + " bytes", p));
		if (len == 0) {
			name.wire.push_back('\0');
			cursor.seek(jumps ? resume : p + 1);
			return name;
		}
		if (msg.size() - p - 1 < len)
			return fail(malformed("label runs past the end of the message", p));
		std::string_view label = msg.substr(p + 1, len);
		if (strictBytes) {
			for (size_t i = 0; i < label.size(); ++i) {
				auto c = static_cast<uint8_t>(label[i]);
				if (!isQueryNameByte(c)) {
					char hex[8];
					std::snprintf(hex, sizeof(hex), "0x%02x", c);
					return fail(malformed(std::string("label contains byte ") + hex, p + 1 + i));
				}
			}
		}
		if (!name.wire.empty())
			name.text.push_back('.');
		name.text += asciiLower(label);
		name.wire.push_back(static_cast<char>(len));
		name.wire += label;
		p += 1u + len;
	}
}

Result<DnsQuestion> readQuestion(Cursor &cursor, bool strictBytes)
{
	auto name = readName(cursor, strictBytes);
	if (!name)
		return fail(std::move(name).error().wrap("reading the question name"));
	GVM_TRY_VOID(cursor.need(4, "the question"), "reading the question");
	DnsQuestion q;
	q.name = std::move(name->text);
	q.wireName = std::move(name->wire);
	q.qtype = cursor.u16();
	q.qclass = cursor.u16();
	return q;
}

// The fixed part of a resource record after its name.
struct RecordHead {
	std::string owner;
	uint16_t type = 0;
	uint16_t rclass = 0;
	uint32_t ttl = 0;
	size_t rdataOffset = 0;
	uint16_t rdlength = 0;
};

Result<RecordHead> readRecord(Cursor &cursor, bool strictBytes)
{
	RecordHead head;
	auto name = readName(cursor, strictBytes);
	if (!name)
		return fail(std::move(name).error());
	head.owner = std::move(name->text);
	GVM_TRY_VOID(cursor.need(10, "a record header"), "reading a record");
	head.type = cursor.u16();
	head.rclass = cursor.u16();
	head.ttl = cursor.u32();
	head.rdlength = cursor.u16();
	head.rdataOffset = cursor.pos();
	if (cursor.left() < head.rdlength)
		return fail(malformed("record data of " + std::to_string(head.rdlength) +
					      " bytes runs past the end of the message",
				      head.rdataOffset));
	cursor.seek(head.rdataOffset + head.rdlength);
	return head;
}

void putHeader(std::string &out, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns, uint16_t ar)
{
	putU16(out, id);
	putU16(out, flags);
	putU16(out, qd);
	putU16(out, an);
	putU16(out, ns);
	putU16(out, ar);
}

void putQuestion(std::string &out, const DnsQuestion &q)
{
	out += q.wireName;
	putU16(out, q.qtype);
	putU16(out, q.qclass);
}

void putOpt(std::string &out, uint16_t payload, bool dnssecOk)
{
	out.push_back('\0'); // root owner
	putU16(out, kDnsTypeOpt);
	putU16(out, payload);
	putU32(out, dnssecOk ? kEdnsDoBit : 0);
	putU16(out, 0); // no options
}

} // namespace

const char *toString(DnsRcode rcode)
{
	switch (rcode) {
	case DnsRcode::NoError: return "NOERROR";
	case DnsRcode::FormErr: return "FORMERR";
	case DnsRcode::ServFail: return "SERVFAIL";
	case DnsRcode::NxDomain: return "NXDOMAIN";
	case DnsRcode::NotImp: return "NOTIMP";
	case DnsRcode::Refused: return "REFUSED";
	}
	return "?";
}

std::string dnsTypeName(uint16_t qtype)
{
	switch (qtype) {
	case policy::kDnsTypeA: return "A";
	case policy::kDnsTypeAaaa: return "AAAA";
	case policy::kDnsTypeTxt: return "TXT";
	case policy::kDnsTypeNull: return "NULL";
	case policy::kDnsTypeAny: return "ANY";
	default: return "TYPE" + std::to_string(qtype);
	}
}

size_t DnsQuery::maxUdpAnswer() const
{
	if (!ednsUdpPayload)
		return kMaxDnsUdpBytes;
	return std::max<size_t>(kMaxDnsUdpBytes, *ednsUdpPayload);
}

Result<DnsQuery> parseDnsQuery(std::string_view message)
{
	if (message.size() > kMaxDnsQueryBytes)
		return fail(Error::internal("query of " + std::to_string(message.size()) + " bytes is over the limit of " +
					    std::to_string(kMaxDnsQueryBytes)));
	Cursor cursor(message);
	GVM_TRY_VOID(cursor.need(kDnsHeaderBytes, "the header"), "reading the header");
	DnsQuery query;
	query.id = cursor.u16();
	query.flags = cursor.u16();
	uint16_t qd = cursor.u16();
	uint16_t an = cursor.u16();
	uint16_t ns = cursor.u16();
	uint16_t ar = cursor.u16();
	if (query.flags & kDnsFlagQr)
		return fail(Error::internal("QR is set: a response, not a query"));
	if (uint16_t opcode = (query.flags & kDnsOpcodeMask) >> kOpcodeShift; opcode != 0)
		return fail(Error::internal("opcode " + std::to_string(opcode) + " is not supported"));
	if (qd != 1)
		return fail(Error::internal(std::to_string(qd) + " questions; exactly one is supported"));
	if (an != 0 || ns != 0)
		return fail(Error::internal("a query with " + std::to_string(an) + " answer and " + std::to_string(ns) +
					    " authority records"));
	if (ar > kMaxDnsQueryAdditional)
		return fail(Error::internal(std::to_string(ar) + " additional records; at most " +
					    std::to_string(kMaxDnsQueryAdditional) + " are accepted"));
	auto question = readQuestion(cursor, true);
	if (!question)
		return fail(std::move(question).error());
	query.question = std::move(*question);
	for (uint16_t i = 0; i < ar; ++i) {
		size_t start = cursor.pos();
		auto record = readRecord(cursor, false);
		if (!record)
			return fail(std::move(record).error().wrap("reading additional record " + std::to_string(i + 1)));
		if (record->type != kDnsTypeOpt)
			continue;
		// RFC 6891 §6.1.1: one OPT record, owned by the root.
		if (query.ednsUdpPayload)
			return fail(malformed("a second OPT record", start));
		if (!record->owner.empty())
			return fail(malformed("an OPT record not owned by the root", start));
		if (uint8_t version = static_cast<uint8_t>(record->ttl >> 16); version != 0)
			return fail(malformed("EDNS version " + std::to_string(version) + " is not supported", start));
		query.ednsUdpPayload = record->rclass;
		query.ednsDnssecOk = record->ttl & kEdnsDoBit;
	}
	if (!cursor.atEnd())
		return fail(malformed(std::to_string(cursor.left()) + " bytes after the last record", cursor.pos()));
	return query;
}

DnsIdPeek peekDnsId(std::string_view message)
{
	DnsIdPeek peek;
	if (message.size() >= 2)
		peek.id = static_cast<uint16_t>(static_cast<uint8_t>(message[0]) << 8 | static_cast<uint8_t>(message[1]));
	if (message.size() >= 4)
		peek.flags = static_cast<uint16_t>(static_cast<uint8_t>(message[2]) << 8 | static_cast<uint8_t>(message[3]));
	return peek;
}

std::string buildDnsResponse(const DnsQuery &query, DnsRcode rcode, bool truncated)
{
	uint16_t flags = kDnsFlagQr | kDnsFlagRa | (query.flags & (kDnsOpcodeMask | kDnsFlagRd | kDnsFlagCd)) |
			 static_cast<uint16_t>(rcode);
	if (truncated)
		flags |= kDnsFlagTc;
	bool edns = query.ednsUdpPayload.has_value();
	std::string out;
	out.reserve(kDnsHeaderBytes + query.question.wireName.size() + 4 + (edns ? kOptRecordBytes : 0));
	putHeader(out, query.id, flags, 1, 0, 0, edns ? 1 : 0);
	putQuestion(out, query.question);
	if (edns)
		putOpt(out, kDnsEdnsUdpPayload, query.ednsDnssecOk);
	return out;
}

std::string buildDnsHeaderOnlyResponse(uint16_t id, uint16_t queryFlags, DnsRcode rcode)
{
	uint16_t flags = kDnsFlagQr | kDnsFlagRa | (queryFlags & (kDnsOpcodeMask | kDnsFlagRd | kDnsFlagCd)) |
			 static_cast<uint16_t>(rcode);
	std::string out;
	putHeader(out, id, flags, 0, 0, 0, 0);
	return out;
}

std::string buildDnsUpstreamQuery(const DnsQuery &query, uint16_t id)
{
	uint16_t flags = query.flags & (kDnsFlagRd | kDnsFlagCd);
	bool edns = query.ednsUdpPayload.has_value();
	std::string out;
	putHeader(out, id, flags, 1, 0, 0, edns ? 1 : 0);
	putQuestion(out, query.question);
	if (edns)
		putOpt(out, std::min<uint16_t>(std::max<uint16_t>(*query.ednsUdpPayload, kMaxDnsUdpBytes), kDnsEdnsUdpPayload),
		       query.ednsDnssecOk);
	return out;
}

Result<DnsResponse> parseDnsResponse(std::string_view message)
{
	if (message.size() > kMaxDnsMessageBytes)
		return fail(Error::internal("response of " + std::to_string(message.size()) + " bytes is over " +
					    std::to_string(kMaxDnsMessageBytes)));
	Cursor cursor(message);
	GVM_TRY_VOID(cursor.need(kDnsHeaderBytes, "the header"), "reading the header");
	DnsResponse response;
	response.id = cursor.u16();
	response.flags = cursor.u16();
	uint16_t qd = cursor.u16();
	uint16_t an = cursor.u16();
	uint16_t ns = cursor.u16();
	uint16_t ar = cursor.u16();
	if (!(response.flags & kDnsFlagQr))
		return fail(Error::internal("QR is clear: a query, not a response"));
	if (qd > 1)
		return fail(Error::internal(std::to_string(qd) + " questions in a response"));
	if (qd == 1) {
		auto question = readQuestion(cursor, false);
		if (!question)
			return fail(std::move(question).error());
		response.question = std::move(*question);
	}
	// A truncated reply may stop anywhere after the question: the client
	// retries over TCP and nothing of it is used.
	if (response.truncated())
		return response;
	if (size_t total = size_t{an} + ns + ar; total > kMaxDnsRecords)
		return fail(Error::internal(std::to_string(total) + " records; at most " + std::to_string(kMaxDnsRecords) +
					    " are read"));

	std::vector<std::pair<std::string, std::string>> cnames; // owner -> target
	std::vector<DnsAddressRecord> addresses;
	for (size_t i = 0; i < size_t{an} + ns + ar; ++i) {
		auto record = readRecord(cursor, false);
		if (!record)
			return fail(std::move(record).error().wrap("reading record " + std::to_string(i + 1)));
		if (i >= an || record->rclass != kDnsClassIn)
			continue; // only the answer section maps names to addresses
		const char *rdata = message.data() + record->rdataOffset;
		uint32_t ttl = record->ttl > kMaxTtl ? 0 : record->ttl;
		if (record->type == policy::kDnsTypeA || record->type == policy::kDnsTypeAaaa) {
			bool v6 = record->type == policy::kDnsTypeAaaa;
			size_t want = v6 ? 16 : 4;
			if (record->rdlength != want)
				return fail(malformed(std::string(v6 ? "an AAAA" : "an A") + " record of " +
							      std::to_string(record->rdlength) + " bytes",
						      record->rdataOffset));
			char text[INET6_ADDRSTRLEN];
			if (!inet_ntop(v6 ? AF_INET6 : AF_INET, rdata, text, sizeof(text)))
				return fail(malformed("an address that does not format", record->rdataOffset));
			addresses.push_back({record->owner, text, ttl});
		} else if (record->type == kDnsTypeCname) {
			// The target may be compressed against anything before it;
			// it must fill the record data exactly.
			Cursor rdataCursor(message.substr(0, record->rdataOffset + record->rdlength), record->rdataOffset);
			auto target = readName(rdataCursor, false);
			if (!target)
				return fail(std::move(target).error().wrap("reading a CNAME target"));
			if (!rdataCursor.atEnd())
				return fail(malformed("bytes after a CNAME target", rdataCursor.pos()));
			cnames.emplace_back(record->owner, std::move(target->text));
		}
	}
	if (!cursor.atEnd())
		return fail(malformed(std::to_string(cursor.left()) + " bytes after the last record", cursor.pos()));

	if (response.question) {
		response.chain.push_back(response.question->name);
		while (response.chain.size() <= kMaxDnsCnameChain) {
			auto it = std::find_if(cnames.begin(), cnames.end(),
					       [&](const auto &c) { return c.first == response.chain.back(); });
			if (it == cnames.end() ||
			    std::find(response.chain.begin(), response.chain.end(), it->second) != response.chain.end())
				break;
			response.chain.push_back(it->second);
		}
		for (DnsAddressRecord &a : addresses)
			if (std::find(response.chain.begin(), response.chain.end(), a.owner) != response.chain.end())
				response.addresses.push_back(std::move(a));
	}
	return response;
}

bool answersQuestion(const DnsResponse &response, const DnsQuestion &question)
{
	// Names are lower-cased by the parser, so a resolver that changes the
	// case (0x20 randomisation) still answers.
	return response.question && response.question->qtype == question.qtype &&
	       response.question->qclass == question.qclass && response.question->name == question.name;
}

void setDnsId(std::string &message, uint16_t id)
{
	if (message.size() < 2)
		return;
	message[0] = static_cast<char>(id >> 8);
	message[1] = static_cast<char>(id & 0xff);
}

} // namespace gvm::proxy
