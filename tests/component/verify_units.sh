#!/bin/sh
# Verifies gvm's systemd units with systemd-analyze, against the gvmd binary
# just built: usage: verify_units.sh GVMD UNIT...
set -eu
gvmd=$1; shift
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for unit in "$@"; do
	# ExecStart must name an existing binary; point it at the build.
	sed "s|^ExecStart=[^ ]*|ExecStart=$gvmd|" "$unit" > "$dir/$(basename "$unit")"
done
out=$(cd "$dir" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no ./*.service ./*.socket 2>&1) || {
	echo "$out" >&2
	exit 1
}
# Any diagnostic about our units is a failure, not only hard errors.
if printf '%s\n' "$out" | grep -E 'gvmd\.(service|socket)' >&2; then
	exit 1
fi
echo "systemd units verified: $*"
