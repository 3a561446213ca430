// SPDX-License-Identifier: Apache-2.0
// The upstream fixture itself, proved with curl and a raw socket (no gvm in
// the path): private /etc/hosts, the test PKI's good and bad certificates,
// large files, exact request recording, unbuffered streaming, WebSocket,
// and a clean stop.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <poll.h>
#include <sstream>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include "common/sha256.h"
#include "common/unique_fd.h"
#include "tests/support/process.h"
#include "tests/support/test_pki.h"
#include "tests/support/upstream.h"

using namespace gvm;
using namespace gvm::test;
using namespace std::chrono_literals;

namespace {

const std::string kCurl = "/usr/bin/curl";
const std::string kHost = "api.gvm.test";

// Private /etc/hosts once per process; later test cases inherit it.
void ensurePrivateHosts()
{
	static bool entered = false;
	if (entered)
		return;
	auto r = enterPrivateHosts({{"api.gvm.test", "127.0.0.1"}, {"denied.gvm.test", "127.0.0.1"}});
	INFO((r ? std::string() : r.error().message()));
	REQUIRE(r);
	entered = true;
}

// A PKI and an nginx upstream, both gone with this object.
struct Upstream {
	TempDir pkiDir;
	TestPki pki = makePki(pkiDir);
	std::unique_ptr<NginxUpstream> nginx = start(pki);

	static TestPki makePki(const TempDir &dir)
	{
		auto pki = TestPki::create(dir.path());
		INFO((pki ? std::string() : pki.error().message()));
		REQUIRE(pki);
		return *pki;
	}
	static std::unique_ptr<NginxUpstream> start(const TestPki &pki)
	{
		auto nginx = NginxUpstream::create(pki);
		INFO((nginx ? std::string() : nginx.error().message()));
		REQUIRE(nginx);
		return std::move(*nginx);
	}
	// A failed REQUIRE unwinds through here: show what the servers said
	// (always with GVM_TEST_VERBOSE set).
	~Upstream()
	{
		if ((std::getenv("GVM_TEST_VERBOSE") || std::uncaught_exceptions() > 0) && nginx)
			std::fprintf(stderr, "%s\n", nginx->diagnostics().c_str());
	}
	std::string url(UpstreamServer server, std::string_view path = "/") const
	{
		return nginx->url(server, kHost, path);
	}
};

RunResult curl(std::vector<std::string> args, std::chrono::milliseconds timeout = 30s)
{
	args.insert(args.begin(), {kCurl, "-sS", "--max-time", "60"});
	return run(args, {}, timeout);
}

std::string readAll(const std::string &path)
{
	std::ifstream in(path, std::ios::binary);
	std::ostringstream out;
	out << in.rdbuf();
	return out.str();
}

bool portOpen(uint16_t port)
{
	UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	sockaddr_in addr{};
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = htons(port);
	return ::connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0;
}

// A WebSocket client over a plain TCP socket, just enough for the tests.
class WsClient
{
public:
	explicit WsClient(uint16_t port)
	{
		fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
		sockaddr_in addr{};
		addr.sin_family = AF_INET;
		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		addr.sin_port = htons(port);
		connected_ = ::connect(fd_.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0;
	}
	bool connected() const { return connected_; }

	bool sendAll(std::string_view bytes)
	{
		while (!bytes.empty()) {
			ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return false;
			bytes.remove_prefix(static_cast<size_t>(n));
		}
		return true;
	}

	// Reads until `pred(buffer_)` or timeout/EOF.
	bool fill(const std::function<bool()> &pred, std::chrono::milliseconds timeout = 5s)
	{
		auto deadline = std::chrono::steady_clock::now() + timeout;
		while (!pred()) {
			auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
											 std::chrono::steady_clock::now());
			if (left.count() <= 0)
				return false;
			pollfd pfd{fd_.get(), POLLIN, 0};
			if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
				continue;
			char buf[65536];
			ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
			if (n <= 0)
				return pred();
			buffer_.append(buf, static_cast<size_t>(n));
		}
		return true;
	}

	// The response head of the upgrade, or empty.
	std::string handshake(const std::string &host, const std::string &key)
	{
		std::string request = "GET /ws HTTP/1.1\r\nHost: " + host +
				      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
				      "Sec-WebSocket-Key: " +
				      key + "\r\nSec-WebSocket-Version: 13\r\nX-Test-Id: ws-echo\r\n\r\n";
		if (!sendAll(request) || !fill([&] { return buffer_.find("\r\n\r\n") != std::string::npos; }))
			return {};
		size_t end = buffer_.find("\r\n\r\n") + 4;
		std::string head = buffer_.substr(0, end);
		buffer_.erase(0, end);
		return head;
	}

	// Client frames are masked (RFC 6455 5.3).
	bool sendFrame(int opcode, std::string_view payload)
	{
		std::string frame;
		frame += static_cast<char>(0x80 | opcode);
		if (payload.size() < 126) {
			frame += static_cast<char>(0x80 | payload.size());
		} else {
			frame += static_cast<char>(0x80 | 126);
			frame += static_cast<char>((payload.size() >> 8) & 0xff);
			frame += static_cast<char>(payload.size() & 0xff);
		}
		const char mask[4] = {'\x12', '\x34', '\x56', '\x78'};
		frame.append(mask, 4);
		for (size_t i = 0; i < payload.size(); i++)
			frame += static_cast<char>(payload[i] ^ mask[i % 4]);
		return sendAll(frame);
	}

	struct Frame {
		int opcode = -1;
		bool masked = false;
		std::string payload;
	};

	std::optional<Frame> readFrame()
	{
		size_t headLength = 0, length = 0;
		auto complete = [&] {
			if (buffer_.size() < 2)
				return false;
			length = static_cast<unsigned char>(buffer_[1]) & 0x7f;
			headLength = 2;
			if (length == 126) {
				if (buffer_.size() < 4)
					return false;
				length = (static_cast<size_t>(static_cast<unsigned char>(buffer_[2])) << 8) |
					 static_cast<unsigned char>(buffer_[3]);
				headLength = 4;
			}
			if (static_cast<unsigned char>(buffer_[1]) & 0x80)
				headLength += 4;
			return buffer_.size() >= headLength + length;
		};
		if (!fill(complete))
			return std::nullopt;
		Frame frame;
		frame.opcode = static_cast<unsigned char>(buffer_[0]) & 0x0f;
		frame.masked = static_cast<unsigned char>(buffer_[1]) & 0x80;
		frame.payload = buffer_.substr(headLength, length);
		buffer_.erase(0, headLength + length);
		return frame;
	}

private:
	UniqueFd fd_;
	bool connected_ = false;
	std::string buffer_;
};

} // namespace

TEST_CASE("private hosts resolve test names to loopback for this process only", "[upstream]")
{
	ensurePrivateHosts();
	std::string hosts = readAll("/etc/hosts");
	CHECK(hosts.find("127.0.0.1 api.gvm.test") != std::string::npos);
	CHECK(hosts.find("127.0.0.1 localhost") != std::string::npos);
	// pid 1 lives in the original mount namespace: its /etc/hosts is untouched.
	std::string original = readAll("/proc/1/root/etc/hosts");
	CHECK(original.find("gvm.test") == std::string::npos);

	auto resolved = run({"/usr/bin/getent", "hosts", "denied.gvm.test"});
	CHECK(resolved.status == 0);
	CHECK(resolved.out.find("127.0.0.1") == 0);

	// Bad entries are refused before anything changes.
	CHECK_FALSE(enterPrivateHosts({{"bad name", "127.0.0.1"}}));
	CHECK_FALSE(enterPrivateHosts({{"x.gvm.test", "not-an-ip"}}));
}

TEST_CASE("the good server verifies against the test CA", "[upstream]")
{
	ensurePrivateHosts();
	Upstream up;

	auto r = curl({"--cacert", up.pki.caCert(), "-H", "X-Test-Id: good-root", up.url(UpstreamServer::HttpsGood)});
	INFO(r.err);
	CHECK(r.status == 0);
	CHECK(r.out == "hello from https_good\n");

	// The IP SAN and "localhost" work too.
	r = curl({"--cacert", up.pki.caCert(), up.nginx->url(UpstreamServer::HttpsGood, "127.0.0.1")});
	CHECK(r.status == 0);
	r = curl({"--cacert", up.pki.caCert(), up.nginx->url(UpstreamServer::HttpsGood, "localhost")});
	CHECK(r.status == 0);

	r = curl({"-H", "X-Test-Id: plain-root", up.url(UpstreamServer::HttpPlain)});
	CHECK(r.status == 0);
	CHECK(r.out == "hello from http_plain\n");

	REQUIRE(up.nginx->waitForRequests("good-root", 1));
	REQUIRE(up.nginx->waitForRequests("plain-root", 1));
	for (const auto &entry : up.nginx->accessLog()) {
		if (entry.testId == "good-root") {
			CHECK(entry.server == "https_good");
			CHECK(entry.request == "GET / HTTP/1.1");
			CHECK(entry.status == 200);
			CHECK(entry.host == kHost);
			CHECK(entry.sni == kHost);
		}
		if (entry.testId == "plain-root") {
			CHECK(entry.server == "http_plain");
			CHECK(entry.sni.empty());
		}
	}
}

TEST_CASE("the bad servers fail verification, each with its own error", "[upstream]")
{
	ensurePrivateHosts();
	Upstream up;

	auto wrongName = curl({"--cacert", up.pki.caCert(), up.url(UpstreamServer::HttpsWrongName)});
	CHECK(wrongName.status == 60);
	CHECK_THAT(wrongName.err, Catch::Contains("no alternative certificate subject name matches"));

	auto expired = curl({"--cacert", up.pki.caCert(), up.url(UpstreamServer::HttpsExpired)});
	CHECK(expired.status == 60);
	CHECK_THAT(expired.err, Catch::Contains("certificate has expired"));

	auto untrusted = curl({"--cacert", up.pki.caCert(), up.url(UpstreamServer::HttpsUntrusted)});
	CHECK(untrusted.status == 60);
	CHECK_THAT(untrusted.err, Catch::Contains("unable to get local issuer certificate"));

	// Control: the untrusted server is fine for whoever trusts its CA, so
	// trust is what failed above.
	auto control = curl({"--cacert", up.pki.untrustedCaCert(), up.url(UpstreamServer::HttpsUntrusted)});
	CHECK(control.status == 0);
	CHECK(control.out == "hello from https_untrusted\n");
}

TEST_CASE("static files, status codes and the access log", "[upstream]")
{
	ensurePrivateHosts();
	Upstream up;

	auto big = curl({"--cacert", up.pki.caCert(), "-o", "/dev/null", "-w", "%{size_download}",
			 up.url(UpstreamServer::HttpsGood, "/file/100M")},
			60s);
	INFO(big.err);
	CHECK(big.status == 0);
	CHECK(big.out == "104857600");

	auto small = curl({"--cacert", up.pki.caCert(), up.url(UpstreamServer::HttpsGood, "/file/1K")});
	CHECK(small.out.size() == 1024);
	CHECK(small.out.substr(0, 16) == "0123456789abcdef");

	for (int code : {200, 204, 302, 404, 418, 429, 503}) {
		auto r = curl({"--cacert", up.pki.caCert(), "-o", "/dev/null", "-w", "%{http_code}", "-H",
			       "X-Test-Id: status-codes", up.url(UpstreamServer::HttpsGood, "/status/" + std::to_string(code))});
		CHECK(r.out == std::to_string(code));
	}
	CHECK(up.nginx->waitForRequests("status-codes", 7));
	CHECK(up.nginx->countRequests("status-codes") == 7);
	CHECK(up.nginx->countRequests("no-such-id") == 0);
}

TEST_CASE("/echo records the exact request nginx forwarded", "[upstream]")
{
	ensurePrivateHosts();
	Upstream up;

	TempDir work;
	std::string body;
	for (int round = 0; round < 40; round++) {
		for (int b = 0; b < 256; b++)
			body += static_cast<char>(b);
		body += "\r\n\r\n0\r\n\r\n"; // looks like framing; must be just bytes
	}
	const std::string bodyFile = work.path() + "/body.bin";
	std::ofstream(bodyFile, std::ios::binary) << body;

	SECTION("with Content-Length")
	{
		auto r = curl({"--cacert", up.pki.caCert(), "-H", "X-Test-Id: echo-binary", "-H",
			       "Content-Type: application/octet-stream", "--data-binary", "@" + bodyFile,
			       up.url(UpstreamServer::HttpsGood, "/echo?x=1")});
		INFO(r.err);
		REQUIRE(r.status == 0);
		auto answer = nlohmann::json::parse(r.out, nullptr, false);
		REQUIRE_FALSE(answer.is_discarded());
		CHECK(answer["method"] == "POST");
		CHECK(answer["path"] == "/echo?x=1");
		CHECK(answer["body_len"] == body.size());
		CHECK(answer["body_sha256"] == sha256Hex(body));
		CHECK(answer["headers"]["x-test-id"] == "echo-binary");
		CHECK(answer["headers"]["host"] == kHost + ":" + std::to_string(up.nginx->port(UpstreamServer::HttpsGood)));

		auto recorded = up.nginx->recordedRequest("echo-binary");
		REQUIRE(recorded);
		CHECK(std::filesystem::exists(up.nginx->recordDir() + "/echo-binary.req"));
		CHECK(recorded->rfind("POST /echo?x=1 HTTP/1.1\r\n", 0) == 0);
		size_t headEnd = recorded->find("\r\n\r\n");
		REQUIRE(headEnd != std::string::npos);
		CHECK(recorded->substr(headEnd + 4) == body);
		CHECK(up.nginx->waitForRequests("echo-binary", 1));
	}

	SECTION("chunked: the framing is recorded, the decoded body hashed")
	{
		auto r = curl({"--cacert", up.pki.caCert(), "-H", "X-Test-Id: echo-chunked", "-H",
			       "Transfer-Encoding: chunked", "--data-binary", "@" + bodyFile,
			       up.url(UpstreamServer::HttpPlain, "/echo")});
		REQUIRE(r.status == 0);
		auto answer = nlohmann::json::parse(r.out, nullptr, false);
		REQUIRE_FALSE(answer.is_discarded());
		CHECK(answer["body_len"] == body.size());
		CHECK(answer["body_sha256"] == sha256Hex(body));
		auto recorded = up.nginx->recordedRequest("echo-chunked");
		REQUIRE(recorded);
		CHECK_THAT(*recorded, Catch::Contains("Transfer-Encoding: chunked\r\n"));
		CHECK(recorded->size() > body.size());
	}

	CHECK_FALSE(up.nginx->recordedRequest("never-sent"));
}

TEST_CASE("/sse arrives event by event and /slow waits", "[upstream]")
{
	ensurePrivateHosts();
	Upstream up;

	TempDir work;
	const std::string out = work.path() + "/sse.out";
	auto start = std::chrono::steady_clock::now();
	Child client = Child::start({kCurl, "-sSN", "--max-time", "20", "--cacert", up.pki.caCert(),
				     up.url(UpstreamServer::HttpsGood, "/sse?n=3&delay_ms=300")},
				    {}, out);
	// curl -N writes each event as it gets it: watch the file grow.
	std::vector<std::chrono::milliseconds> arrivals;
	bool all = waitFor(
		[&] {
			std::string text = readAll(out);
			while (arrivals.size() < 3 &&
			       text.find("data: event " + std::to_string(arrivals.size() + 1) + "\n\n") != std::string::npos)
				arrivals.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(
					std::chrono::steady_clock::now() - start));
			return arrivals.size() == 3;
		},
		10s);
	REQUIRE(all);
	CHECK(client.wait(10s) == 0);
	CHECK(readAll(out) == "data: event 1\n\ndata: event 2\n\ndata: event 3\n\n");
	INFO("arrivals " << arrivals[0].count() << " " << arrivals[1].count() << " " << arrivals[2].count() << " ms");
	CHECK(arrivals[1] - arrivals[0] >= 200ms);
	CHECK(arrivals[2] - arrivals[1] >= 200ms);

	auto before = std::chrono::steady_clock::now();
	auto slow = curl({up.url(UpstreamServer::HttpPlain, "/slow?delay_ms=400")});
	CHECK(slow.out == "slow\n");
	CHECK(std::chrono::steady_clock::now() - before >= 400ms);
}

TEST_CASE("/ws echoes WebSocket frames through nginx", "[upstream]")
{
	ensurePrivateHosts();
	Upstream up;

	WsClient ws(up.nginx->port(UpstreamServer::HttpPlain));
	REQUIRE(ws.connected());
	// The example key of RFC 6455 1.3, with its known accept value.
	std::string head = ws.handshake(kHost, "dGhlIHNhbXBsZSBub25jZQ==");
	INFO(head);
	CHECK(head.rfind("HTTP/1.1 101 ", 0) == 0);
	CHECK_THAT(head, Catch::Contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));

	REQUIRE(ws.sendFrame(0x1, "hello websocket"));
	auto text = ws.readFrame();
	REQUIRE(text);
	CHECK(text->opcode == 0x1);
	CHECK_FALSE(text->masked);
	CHECK(text->payload == "hello websocket");

	std::string binary;
	for (int i = 0; i < 300; i++)
		binary += static_cast<char>(i & 0xff);
	REQUIRE(ws.sendFrame(0x2, binary));
	auto echoed = ws.readFrame();
	REQUIRE(echoed);
	CHECK(echoed->opcode == 0x2);
	CHECK(echoed->payload == binary);

	REQUIRE(ws.sendFrame(0x9, "ping"));
	auto pong = ws.readFrame();
	REQUIRE(pong);
	CHECK(pong->opcode == 0xA);
	CHECK(pong->payload == "ping");

	REQUIRE(ws.sendFrame(0x8, std::string("\x03\xe8", 2)));
	auto close = ws.readFrame();
	REQUIRE(close);
	CHECK(close->opcode == 0x8);
	CHECK(close->payload == std::string("\x03\xe8", 2));
	CHECK(up.nginx->waitForRequests("ws-echo", 1));
}

TEST_CASE("destroying the fixture stops nginx and the backend", "[upstream]")
{
	ensurePrivateHosts();
	pid_t nginxPid, backendPid;
	std::vector<uint16_t> ports;
	std::string prefix;
	{
		Upstream up;
		nginxPid = up.nginx->nginxPid();
		backendPid = up.nginx->backendPid();
		prefix = up.nginx->prefix();
		for (auto server : {UpstreamServer::HttpsGood, UpstreamServer::HttpsWrongName, UpstreamServer::HttpsExpired,
				    UpstreamServer::HttpsUntrusted, UpstreamServer::HttpPlain})
			ports.push_back(up.nginx->port(server));
		ports.push_back(up.nginx->backendPort());
		REQUIRE(nginxPid > 0);
		REQUIRE(backendPid > 0);
		for (uint16_t port : ports)
			CHECK(portOpen(port));
	}
	// Reaped, so not even a zombie is left.
	int nginxGone = ::kill(nginxPid, 0) < 0 ? errno : 0;
	int backendGone = ::kill(backendPid, 0) < 0 ? errno : 0;
	CHECK(nginxGone == ESRCH);
	CHECK(backendGone == ESRCH);
	for (uint16_t port : ports)
		CHECK_FALSE(portOpen(port));
	CHECK_FALSE(std::filesystem::exists(prefix));
}

TEST_CASE("two fixtures run side by side", "[upstream]")
{
	ensurePrivateHosts();
	Upstream a, b;
	CHECK(a.nginx->port(UpstreamServer::HttpsGood) != b.nginx->port(UpstreamServer::HttpsGood));
	auto ra = curl({"--cacert", a.pki.caCert(), a.url(UpstreamServer::HttpsGood)});
	auto rb = curl({"--cacert", b.pki.caCert(), b.url(UpstreamServer::HttpsGood)});
	CHECK(ra.status == 0);
	CHECK(rb.status == 0);
	// Each fixture has its own CA.
	auto crossed = curl({"--cacert", a.pki.caCert(), b.url(UpstreamServer::HttpsGood)});
	CHECK(crossed.status == 60);
}
