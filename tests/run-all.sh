#!/bin/sh
# Builds gvm and runs every test suite but fuzz: unit, component, and, as
# root, privileged and system; then an ASan+UBSan build runs the unit suite.
# Ends with one line "N passed, N failed" counted over all test results.
# Usage: tests/run-all.sh [BUILD_DIR]   (default: build)
# Root-only suites need root: run it as root or through sudo. With CI set,
# a skipped test counts as failed.
set -u
cd "$(dirname "$0")/.."
build=${1:-build}
asan=${build}-asan

if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && [ -z "${GVM_NO_SUDO:-}" ]; then
	exec sudo --preserve-env=CI "$0" "$@"
fi

status=0
step() { echo "==> $*"; }

setup() { # DIR ARGS...
	dir=$1; shift
	if [ -f "$dir/build.ninja" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
}

step "building ($build)"
setup "$build" || exit 1
ninja -C "$build" || exit 1

step "tests: unit, component, privileged, system"
meson test -C "$build" --print-errorlogs --no-rebuild \
	--suite unit --suite component --suite privileged --suite system || status=1

step "building with AddressSanitizer and UndefinedBehaviorSanitizer ($asan)"
setup "$asan" --buildtype=debug -Doptimization=1 -Db_sanitize=address,undefined -Db_lundef=false -Dunit_only=true -Dbench=disabled || exit 1
ninja -C "$asan" || exit 1

step "tests: unit under ASan+UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	meson test -C "$asan" --print-errorlogs --no-rebuild --suite unit || status=1

# Count results over both runs; in CI a skip is a failure (root-only suites
# must really run there).
python3 - "$build/meson-logs/testlog.json" "$asan/meson-logs/testlog.json" <<'PY' || status=1
import json, os, sys
passed = failed = skipped = 0
strict = bool(os.environ.get("CI"))
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            res = r.get("result")
            if res in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif res == "SKIP":
                skipped += 1
                print(f"skipped: {r['name']}" + (" (counted as failed in CI)" if strict else ""))
                if strict:
                    failed += 1
            else:
                failed += 1
                print(f"failed: {r['name']} ({res})")
line = f"{passed} passed, {failed} failed"
if skipped and not strict:
    line += f", {skipped} skipped"
print(line)
sys.exit(1 if failed else 0)
PY
exit $status
