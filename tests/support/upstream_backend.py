#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The application server behind the tests' nginx upstream (python3 stdlib only).

nginx proxies /echo, /sse, /ws and /slow here with HTTP/1.1, no buffering in
either direction, and Connection: close (or upgrade), so this server handles
one request per connection, each on its own thread:

  /echo   records the request exactly as nginx sent it (head and body bytes,
          chunked framing included) into DIR/<X-Test-Id>.req, replacing any
          earlier one, and answers JSON {method, path, headers, body_sha256,
          body_len}; headers is an object with lower-cased names (repeated
          headers joined with ", "), body_* describe the decoded body.
          The file is complete before the answer is sent.
  /sse    text/event-stream: n events (?n=, default 3) "data: event <i>\\n\\n"
          for i = 1..n, the first at once, then one every delay_ms (?delay_ms=,
          default 300), each sent by itself.
  /ws     a minimal RFC 6455 echo: text, binary and continuation frames come
          back unmasked with the same opcode and FIN bit, ping gets pong,
          close is answered with close.
  /slow   answers "slow\\n" after delay_ms (?delay_ms=, default 1000).

Usage: upstream_backend.py --dir DIR --port-file FILE [--port N]
The port it listens on (127.0.0.1, N or an ephemeral one) is written to FILE
(atomically) once it accepts connections. It runs until killed.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import socket
import socketserver
import struct
import sys
import time
import urllib.parse

MAX_HEAD_BYTES = 64 * 1024
MAX_WS_PAYLOAD = 16 * 1024 * 1024
IO_TIMEOUT_S = 120
TEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class BadRequest(Exception):
    pass


def read_head(reader):
    """The request head up to and including the blank line, as raw bytes."""
    head = b""
    while True:
        line = reader.readline(MAX_HEAD_BYTES + 1)
        if not line:
            raise BadRequest("connection closed inside the head")
        head += line
        if len(head) > MAX_HEAD_BYTES:
            raise BadRequest("head too large")
        if line in (b"\r\n", b"\n"):
            return head


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        if not line:
            break
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return method, target, version, headers


def header(headers, name):
    values = [v for n, v in headers if n.lower() == name]
    return ", ".join(values) if values else None


class Body:
    """Reads the request body, keeping the raw bytes (to a sink) and hashing
    the decoded ones."""

    def __init__(self, reader, headers, sink):
        self.reader = reader
        self.headers = headers
        self.sink = sink
        self.sha = hashlib.sha256()
        self.length = 0

    def _raw(self, data):
        if self.sink:
            self.sink.write(data)

    def _read_exact(self, n):
        while n > 0:
            data = self.reader.read(min(n, 65536))
            if not data:
                raise BadRequest("connection closed inside the body")
            self._raw(data)
            self.sha.update(data)
            self.length += len(data)
            n -= len(data)

    def read(self):
        te = header(self.headers, "transfer-encoding")
        if te and "chunked" in te.lower():
            while True:
                line = self.reader.readline(1024)
                if not line.endswith(b"\n"):
                    raise BadRequest("bad chunk size line")
                self._raw(line)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    break
                self._read_exact(size)
                crlf = self.reader.readline(16)
                self._raw(crlf)
            while True:  # trailers, then the blank line
                line = self.reader.readline(MAX_HEAD_BYTES)
                if not line:
                    raise BadRequest("connection closed inside the trailers")
                self._raw(line)
                if line in (b"\r\n", b"\n"):
                    break
            return
        cl = header(self.headers, "content-length")
        if cl:
            self._read_exact(int(cl))


def query_int(query, name, default):
    try:
        return int(query.get(name, [default])[0])
    except ValueError:
        return default


class Handler(socketserver.BaseRequestHandler):
    record_dir = "."

    def send(self, data):
        self.request.sendall(data)

    def respond(self, status, reason, body, content_type="text/plain"):
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        self.send(head.encode("latin-1") + body)

    def handle(self):
        self.request.settimeout(IO_TIMEOUT_S)
        reader = self.request.makefile("rb")
        try:
            head = read_head(reader)
            method, target, _, headers = parse_head(head)
            url = urllib.parse.urlsplit(target)
            query = urllib.parse.parse_qs(url.query)
            path = url.path
            if path == "/echo" or path.startswith("/echo/"):
                self.echo(reader, head, method, target, headers)
            elif path == "/ws":
                self.websocket(reader, headers)
            else:
                Body(reader, headers, None).read()
                if path == "/sse":
                    self.sse(query_int(query, "n", 3), query_int(query, "delay_ms", 300))
                elif path == "/slow":
                    time.sleep(query_int(query, "delay_ms", 1000) / 1000.0)
                    self.respond(200, "OK", b"slow\n")
                else:
                    self.respond(404, "Not Found", b"no such backend path\n")
        except (BadRequest, ValueError) as e:
            try:
                self.respond(400, "Bad Request", (str(e) + "\n").encode())
            except OSError:
                pass
        except OSError:
            pass  # the client (nginx) went away
        finally:
            reader.close()

    def echo(self, reader, head, method, target, headers):
        test_id = header(headers, "x-test-id")
        path = tmp = None
        sink = None
        if test_id and TEST_ID.match(test_id):
            path = os.path.join(self.record_dir, test_id + ".req")
            tmp = f"{path}.{os.getpid()}.{id(self)}.tmp"
            sink = open(tmp, "wb")
            sink.write(head)
        try:
            body = Body(reader, headers, sink)
            body.read()
        finally:
            if sink:
                sink.close()
        if tmp:
            os.replace(tmp, path)
        merged = {}
        for name, value in headers:
            key = name.lower()
            merged[key] = merged[key] + ", " + value if key in merged else value
        answer = {
            "method": method,
            "path": target,
            "headers": merged,
            "body_sha256": body.sha.hexdigest(),
            "body_len": body.length,
        }
        self.respond(200, "OK", json.dumps(answer).encode(), "application/json")

    def sse(self, n, delay_ms):
        self.send(
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\n"
            b"X-Accel-Buffering: no\r\n"
            b"Connection: close\r\n\r\n"
        )
        for i in range(1, n + 1):
            if i > 1:
                time.sleep(delay_ms / 1000.0)
            self.send(f"data: event {i}\n\n".encode())
        self.request.shutdown(socket.SHUT_WR)

    def websocket(self, reader, headers):
        key = header(headers, "sec-websocket-key")
        upgrade = header(headers, "upgrade") or ""
        if not key or upgrade.lower() != "websocket":
            self.respond(400, "Bad Request", b"not a websocket upgrade\n")
            return
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send(
            (
                "HTTP/1.1 101 Switching Protocols\r\n"
                "Upgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        while True:
            frame = read_ws_frame(reader)
            if frame is None:
                return
            fin, opcode, payload = frame
            if opcode == 0x8:  # close: answer with the same code, then end
                self.send(ws_frame(True, 0x8, payload[:2]))
                return
            if opcode == 0x9:  # ping
                self.send(ws_frame(True, 0xA, payload))
            elif opcode == 0xA:  # pong
                continue
            else:
                self.send(ws_frame(fin, opcode, payload))


def read_exact(reader, n):
    data = reader.read(n)
    if data is None or len(data) < n:
        return None
    return data


def read_ws_frame(reader):
    """(fin, opcode, unmasked payload), or None at EOF."""
    head = read_exact(reader, 2)
    if head is None:
        return None
    fin = bool(head[0] & 0x80)
    opcode = head[0] & 0x0F
    masked = bool(head[1] & 0x80)
    length = head[1] & 0x7F
    if length == 126:
        ext = read_exact(reader, 2)
        if ext is None:
            return None
        length = struct.unpack("!H", ext)[0]
    elif length == 127:
        ext = read_exact(reader, 8)
        if ext is None:
            return None
        length = struct.unpack("!Q", ext)[0]
    if length > MAX_WS_PAYLOAD:
        raise BadRequest("websocket frame too large")
    mask = read_exact(reader, 4) if masked else b"\0\0\0\0"
    payload = read_exact(reader, length) if length else b""
    if mask is None or payload is None:
        return None
    if masked:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return fin, opcode, payload


def ws_frame(fin, opcode, payload):
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 126, n)
    else:
        head = struct.pack("!BBQ", first, 127, n)
    return head + payload


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="where /echo records requests")
    parser.add_argument("--port-file", required=True, help="written with the listening port")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    Handler.record_dir = args.dir
    server = Server(("127.0.0.1", args.port), Handler)
    port = server.server_address[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, args.port_file)
    print(f"upstream_backend: listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
