// SPDX-License-Identifier: Apache-2.0
//
// DNS wire format (RFC 1035), as much of it as the worker's DNS forwarder
// needs: a strict parser for the agent's queries, builders for the answers
// the worker gives itself (NXDOMAIN, REFUSED, NODATA, SERVFAIL, FORMERR), and
// a parser for the upstream resolver's replies that checks they answer our
// question and extracts the addresses given out. Every message parsed here
// comes from an untrusted agent or from the network: anything malformed is an
// Error naming the problem and its offset, never an assert, and compression
// pointers can never make the parser loop. Pure functions, no state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace gvm::proxy {

// Wire-format limits (RFC 1035 §2.3.4, §4.2.1; RFC 6891 for EDNS).
inline constexpr size_t kDnsHeaderBytes = 12;
inline constexpr size_t kMaxDnsLabelBytes = 63;
// Of a name on the wire, length octets and the root label included.
inline constexpr size_t kMaxDnsNameWireBytes = 255;
// A plain UDP message without EDNS.
inline constexpr size_t kMaxDnsUdpBytes = 512;
// Any message (the TCP length prefix is 16 bits).
inline constexpr size_t kMaxDnsMessageBytes = 65535;
// What the worker accepts as a query: one question and an OPT record need a
// few hundred bytes; this leaves room for EDNS padding and cookies.
inline constexpr size_t kMaxDnsQueryBytes = 4096;
// The EDNS UDP payload the worker advertises upstream and to clients at most
// (the DNS flag day 2020 value, which avoids IP fragmentation).
inline constexpr uint16_t kDnsEdnsUdpPayload = 1232;
// Compression pointers followed while reading one name. Pointers must also go
// strictly backwards (see parser), so this is a second, explicit bound.
inline constexpr size_t kMaxDnsCompressionJumps = 32;
// Additional records a query may carry (an OPT record, maybe a TSIG).
inline constexpr uint16_t kMaxDnsQueryAdditional = 2;
// CNAME records followed from the question name in an answer.
inline constexpr size_t kMaxDnsCnameChain = 16;
// Resource records of any section parsed in one upstream reply.
inline constexpr size_t kMaxDnsRecords = 1024;

inline constexpr uint16_t kDnsClassIn = 1;
inline constexpr uint16_t kDnsClassAny = 255;
inline constexpr uint16_t kDnsTypeCname = 5;
inline constexpr uint16_t kDnsTypeOpt = 41;

// Header flag bits (the 16-bit word after the id).
inline constexpr uint16_t kDnsFlagQr = 0x8000;
inline constexpr uint16_t kDnsFlagAa = 0x0400;
inline constexpr uint16_t kDnsFlagTc = 0x0200;
inline constexpr uint16_t kDnsFlagRd = 0x0100;
inline constexpr uint16_t kDnsFlagRa = 0x0080;
inline constexpr uint16_t kDnsFlagAd = 0x0020;
inline constexpr uint16_t kDnsFlagCd = 0x0010;
inline constexpr uint16_t kDnsOpcodeMask = 0x7800; // 0 = QUERY

// Response codes the worker sends or reads (the audit record's status).
enum class DnsRcode : uint8_t {
	NoError = 0,
	FormErr = 1,
	ServFail = 2,
	NxDomain = 3,
	NotImp = 4,
	Refused = 5,
};
const char *toString(DnsRcode rcode); // "NOERROR", "FORMERR", ...

// "A", "AAAA", "TXT", "NULL", "ANY", "CNAME", ... else "TYPE<n>" (RFC 3597).
std::string dnsTypeName(uint16_t qtype);

struct DnsQuestion {
	// Lower-cased (ASCII), labels joined by '.', no trailing dot; "" is the
	// root. What the policy sees.
	std::string name;
	// The name as it came, uncompressed wire form with its original case:
	// echoed in answers (a client may check the case it sent, RFC 7766 0x20).
	std::string wireName;
	uint16_t qtype = 0;
	uint16_t qclass = 0;
};

// An agent's query.
struct DnsQuery {
	uint16_t id = 0;
	uint16_t flags = 0; // as received
	DnsQuestion question;
	// The client's EDNS OPT record, when it sent one: its UDP payload size
	// and DO bit. Without EDNS a UDP answer is at most kMaxDnsUdpBytes.
	std::optional<uint16_t> ednsUdpPayload;
	bool ednsDnssecOk = false;

	bool recursionDesired() const { return flags & kDnsFlagRd; }
	// The largest UDP answer the client accepts.
	size_t maxUdpAnswer() const;
};

// Parses one query: a 12-byte header with QR clear and opcode QUERY (0),
// exactly one question,
// no answer or authority records, at most kMaxDnsQueryAdditional additional
// records (structurally checked; an OPT record is read), nothing after the
// last record, at most kMaxDnsQueryBytes. The question name must have labels
// of at most kMaxDnsLabelBytes printable ASCII characters other than '.' and
// space, at most kMaxDnsNameWireBytes in all, and compression pointers only
// backwards. The Error's context names the problem and offset.
Result<DnsQuery> parseDnsQuery(std::string_view message);

// What can be read of a message too malformed to parse: its id (2 bytes) and
// flags (4 bytes), when it is that long.
struct DnsIdPeek {
	std::optional<uint16_t> id;
	std::optional<uint16_t> flags;

	// QR set: a response is never answered, so two DNS servers cannot
	// bounce errors at each other.
	bool response() const { return flags && (*flags & kDnsFlagQr); }
	// An opcode other than QUERY, to be answered NOTIMP rather than FORMERR.
	bool otherOpcode() const { return flags && (*flags & kDnsOpcodeMask); }
};
DnsIdPeek peekDnsId(std::string_view message);

// An answer built by the worker: the query's id, its question and RD bit, QR
// and RA set, no records (NOERROR with no records is NODATA), an OPT record
// when the query had one. `truncated` sets TC (retry over TCP).
std::string buildDnsResponse(const DnsQuery &query, DnsRcode rcode, bool truncated = false);
// An answer to a query that did not parse: header only (no question).
std::string buildDnsHeaderOnlyResponse(uint16_t id, uint16_t queryFlags, DnsRcode rcode);

// The query sent upstream for `query`, under a fresh id: its question, its
// RD and CD bits, and an OPT record with min(its payload, kDnsEdnsUdpPayload)
// and its DO bit when it had EDNS. Rebuilt rather than copied, so nothing
// else the agent put in its message reaches the upstream.
std::string buildDnsUpstreamQuery(const DnsQuery &query, uint16_t id);

// One A or AAAA record of an answer.
struct DnsAddressRecord {
	std::string owner;   // the record's name (lower-cased, no trailing dot)
	std::string address; // "192.0.2.1" or "2001:db8::1" (inet_ntop)
	uint32_t ttl = 0;
};

// An upstream reply, as far as the worker reads it.
struct DnsResponse {
	uint16_t id = 0;
	uint16_t flags = 0;
	std::optional<DnsQuestion> question; // absent when QDCOUNT is 0
	// The question name, then each CNAME target followed from it in the
	// answer section (at most kMaxDnsCnameChain links, no repeats).
	std::vector<std::string> chain;
	// A and AAAA answer records owned by a name of `chain`; records of
	// other owners are ignored.
	std::vector<DnsAddressRecord> addresses;

	DnsRcode rcode() const { return static_cast<DnsRcode>(flags & 0x000f); }
	uint8_t rawRcode() const { return static_cast<uint8_t>(flags & 0x000f); }
	bool truncated() const { return flags & kDnsFlagTc; }
};

// Parses a reply: header with QR set, at most one question, then (unless TC
// is set, in which case the rest may be cut anywhere and is not read) every
// record of every section structurally, at most kMaxDnsRecords, with names
// bounded as for queries (but any label bytes accepted) and pointers only
// backwards.
Result<DnsResponse> parseDnsResponse(std::string_view message);

// Whether `response` answers `question`: same type and class, and the same
// name ignoring ASCII case. (The id is the caller's to compare.)
bool answersQuestion(const DnsResponse &response, const DnsQuestion &question);

// Replaces the id (first two bytes) of a message of at least 2 bytes.
void setDnsId(std::string &message, uint16_t id);

} // namespace gvm::proxy
