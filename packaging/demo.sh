#!/bin/sh
# The main job: build gvm, start gvmd on a private socket, check the shipped
# policies, then launch a stand-in coding agent (packaging/demo-agent.py)
# under the coding preset: its requests go through the sandbox's proxy
# worker, allowed ones reach the internet (502 when offline), denied ones
# get 403, and every decision lands in the hash-chained audit log, which is
# shown and verified. Stops gvmd when done.
# Usage: packaging/demo.sh [BUILD_DIR]   (default: build)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}

if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
	exec sudo "$0" "$@"
fi

[ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null
ninja -C "$build" daemon/gvmd client/gvmctl daemon/proxy/gvm-worker >/dev/null

run=$(mktemp -d /tmp/gvm-demo.XXXXXX)
gvmd_pid=
cleanup() {
	[ -n "$gvmd_pid" ] && kill "$gvmd_pid" 2>/dev/null && wait "$gvmd_pid" 2>/dev/null
	rm -rf "$run"
}
trap cleanup EXIT INT TERM

gvmctl="$build/client/gvmctl"
export GVM_SOCKET="$run/gvmd.sock"

"$build/daemon/gvmd" --socket "$GVM_SOCKET" --runtime-dir "$run" --state-dir "$run/state" \
	--worker "$build/daemon/proxy/gvm-worker" --log-level warning &
gvmd_pid=$!
i=0
until [ -S "$GVM_SOCKET" ]; do
	i=$((i + 1))
	[ $i -le 100 ] || { echo "demo: gvmd did not start" >&2; exit 1; }
	sleep 0.05
done

say() { printf '\n$ %s\n' "$*"; }

say gvmctl status
"$gvmctl" status

say gvmctl policy check policy/presets/*.yaml
"$gvmctl" policy check policy/presets/*.yaml

coding=policy/presets/coding.yaml
say gvmctl policy test $coding POST https://api.openai.com/v1/chat/completions
"$gvmctl" policy test $coding POST https://api.openai.com/v1/chat/completions

say gvmctl launch --policy $coding -- python3 packaging/demo-agent.py
"$gvmctl" launch --policy $coding -- python3 packaging/demo-agent.py || true

# The agent's file changes wait in its overlay; the real checkout is
# untouched until someone applies them.
sandbox=$("$gvmctl" ps --all --json | python3 -c 'import json, sys; s = json.load(sys.stdin)["sandboxes"]; print(s[-1]["sandbox"] if s else "")')
if [ -n "$sandbox" ]; then
	say gvmctl diff "$sandbox" --patch
	"$gvmctl" diff "$sandbox" --patch || true
	[ ! -e demo-agent-was-here.txt ] && echo "(the real checkout has no demo-agent-was-here.txt)"
	say gvmctl discard "$sandbox"
	"$gvmctl" discard "$sandbox" || true
fi

say gvmctl audit show --limit 5
"$gvmctl" audit show --limit 5

say gvmctl audit verify "$run/state/audit/audit.jsonl"
"$gvmctl" audit verify "$run/state/audit/audit.jsonl"

printf '\ndemo: done; gvmd stopped.\n'
