#!/bin/sh
# The main job, for now: build gvm, start gvmd on a private socket, ask it
# for its status, then check the shipped policies and decide a few real
# agent requests against the coding preset. Stops gvmd when done.
# Usage: packaging/demo.sh [BUILD_DIR]   (default: build)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}

if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
	exec sudo "$0" "$@"
fi

[ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null
ninja -C "$build" daemon/gvmd client/gvmctl >/dev/null

run=$(mktemp -d /tmp/gvm-demo.XXXXXX)
gvmd_pid=
cleanup() {
	[ -n "$gvmd_pid" ] && kill "$gvmd_pid" 2>/dev/null && wait "$gvmd_pid" 2>/dev/null
	rm -rf "$run"
}
trap cleanup EXIT INT TERM

gvmctl="$build/client/gvmctl"
export GVM_SOCKET="$run/gvmd.sock"

"$build/daemon/gvmd" --runtime-dir "$run" --state-dir "$run/state" --log-level notice &
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
say gvmctl policy test $coding GET https://api.github.com/repos/torvalds/linux
"$gvmctl" policy test $coding GET https://api.github.com/repos/torvalds/linux

say gvmctl policy test $coding POST https://api.openai.com/v1/chat/completions
"$gvmctl" policy test $coding POST https://api.openai.com/v1/chat/completions

say "gvmctl policy test $coding POST https://api.github.com/graphql --body '{\"query\":\"mutation { deleteRepository }\"}'"
"$gvmctl" policy test $coding POST https://api.github.com/graphql --body '{"query":"mutation { deleteRepository }"}'

say gvmctl policy test $coding POST https://github.com/acme/app.git/git-receive-pack
"$gvmctl" policy test $coding POST https://github.com/acme/app.git/git-receive-pack

say gvmctl policy test $coding GET https://pastebin.com/raw/x --json
"$gvmctl" policy test $coding GET https://pastebin.com/raw/x --json

printf '\ndemo: done; gvmd stopped.\n'
