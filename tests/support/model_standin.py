#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A stand-in for an OpenAI-compatible model API (python3 stdlib only).

tests/system/test_openclaw.cpp points a real agent at it, through gvm, under
a model provider's name: it answers the way such an API does, enough for an
agent's turn to complete, and records every request so that the test can
prove what reached it.

  GET  /v1/models             {"object": "list", "data": [{"id": MODEL, ...}]}
  POST /v1/chat/completions   one assistant message whose content is REPLY,
                              finish_reason "stop": as one JSON object, or,
                              when the request asks for "stream": true, as
                              server-sent events (a role chunk, the content,
                              the finish chunk, a usage chunk when asked,
                              then "data: [DONE]")
  anything else               404 {"error": {...}}

Every request is appended to LOG as one JSON line {method, path, host,
authorization, user_agent, body} (body: the parsed JSON, or null) before it
is answered. HTTP/1.1 with keep-alive, one thread per connection; TLS when
--cert and --key are given.

Usage: model_standin.py --listen ADDR --port N --log FILE --port-file FILE
                        [--cert PEM --key PEM] [--model ID] [--reply TEXT]
FILE (--port-file) gets the port (atomically) once connections are accepted.
It runs until killed.
"""

import argparse
import http.server
import json
import os
import socketserver
import ssl
import sys
import threading
import time

MAX_BODY_BYTES = 16 * 1024 * 1024


class StandIn(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "model-standin/1"
    timeout = 120

    def log_message(self, fmt, *args):
        sys.stderr.write("model_standin: " + (fmt % args) + "\n")

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY_BYTES:
            raise ValueError("bad Content-Length")
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
                if len(data) > MAX_BODY_BYTES:
                    raise ValueError("body too large")
        return b""

    def record(self, body):
        entry = {
            "method": self.command,
            "path": self.path,
            "host": self.headers.get("Host", ""),
            "authorization": self.headers.get("Authorization", ""),
            "user_agent": self.headers.get("User-Agent", ""),
            "body": body,
        }
        with self.server.log_lock, open(self.server.log_path, "a") as log:
            log.write(json.dumps(entry) + "\n")

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.record(None)
        if self.path.split("?")[0] in ("/v1/models", "/models"):
            self.send_json(200, {"object": "list", "data": [self.model_entry()]})
        else:
            self.not_found()

    def do_HEAD(self):
        self.record(None)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        try:
            raw = self.read_body()
            body = json.loads(raw) if raw else None
        except ValueError as e:
            self.record(None)
            self.send_json(400, {"error": {"message": str(e), "type": "invalid_request_error"}})
            return
        self.record(body)
        if self.path.split("?")[0] not in ("/v1/chat/completions", "/chat/completions"):
            self.not_found()
        elif isinstance(body, dict) and body.get("stream"):
            self.stream_completion(body)
        else:
            self.send_json(200, self.completion(body if isinstance(body, dict) else {}))

    def not_found(self):
        self.send_json(404, {"error": {"message": "no such endpoint: " + self.path, "type": "not_found"}})

    def model_entry(self):
        return {"id": self.server.model, "object": "model", "created": 0, "owned_by": "gvm-test"}

    def usage(self):
        return {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}

    def completion(self, body):
        return {
            "id": "chatcmpl-standin",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.server.model),
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": self.server.reply},
                "finish_reason": "stop",
            }],
            "usage": self.usage(),
        }

    def stream_completion(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base = {
            "id": "chatcmpl-standin",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", self.server.model),
        }

        def event(payload):
            data = b"data: " + payload + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def chunk(delta, finish=None, **extra):
            event(json.dumps(dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": finish}],
                                  **extra)).encode())

        chunk({"role": "assistant", "content": ""})
        chunk({"content": self.server.reply})
        chunk({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            event(json.dumps(dict(base, choices=[], usage=self.usage())).encode())
        event(b"[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    tls = None

    def finish_request(self, request, client_address):
        # The TLS handshake happens on the connection's own thread: a
        # client that never finishes it cannot stall the accept loop.
        if not self.tls:
            super().finish_request(request, client_address)
            return
        try:
            request.settimeout(30)
            tls = self.tls.wrap_socket(request, server_side=True)
            tls.settimeout(None)
        except OSError as e:  # ssl.SSLError is an OSError
            sys.stderr.write(f"model_standin: TLS handshake with {client_address[0]} failed: {e}\n")
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--model", default="gvm-standin-model")
    parser.add_argument("--reply", default="Hello from the gvm model stand-in.")
    args = parser.parse_args()

    server = Server((args.listen, args.port), StandIn)
    server.log_path = args.log
    server.log_lock = threading.Lock()
    server.model = args.model
    server.reply = args.reply
    if args.cert:
        server.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.tls.load_cert_chain(args.cert, args.key)
    port = server.server_address[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.replace(tmp, args.port_file)
    print(f"model_standin: listening on {args.listen}:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
