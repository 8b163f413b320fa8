#!/usr/bin/env bash
# scripts/test.sh: build (scripts/build.sh) and run the test suite, without the slow and
# benchmark labels. CUDA tests exit 77 (skipped) where no GPU is usable; QD_REQUIRE_GPU=1 makes
# them fail instead. Everything the tests need is committed in this repository or installed by
# scripts/install_deps.sh.
#   bash scripts/test.sh                  # build + tests
#   CTEST_ARGS="-L unit" bash scripts/test.sh
# The last line is `N passed, N failed, N skipped (skipped: names)` (scripts/ctest_summary.py).
# With CI=true (set by .ci/run) a test skipped for any reason other than "no GPU" fails the run,
# naming what it missed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
ABS_BUILD=$(cd "$BUILD_DIR" && pwd)
rm -f "$ABS_BUILD/ctest-junit.xml"
rc=0
# shellcheck disable=SC2086
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 -LE "slow|bench" --output-junit "$ABS_BUILD/ctest-junit.xml" \
    ${CTEST_ARGS:-} || rc=$?
ci=()
case "${CI:-}" in true | TRUE | True | 1 | yes) ci=(--ci) ;; esac
if command -v python3 >/dev/null 2>&1 && [ -s "$ABS_BUILD/ctest-junit.xml" ]; then
    ctest --test-dir "$BUILD_DIR" --show-only=json-v1 >"$ABS_BUILD/ctest-tests.json" 2>/dev/null || true
    python3 scripts/ctest_summary.py --junit "$ABS_BUILD/ctest-junit.xml" --tests-json "$ABS_BUILD/ctest-tests.json" \
        "${ci[@]}" || { [ "$rc" = 0 ] && rc=1; }
elif [ "${#ci[@]}" -gt 0 ]; then
    echo "test.sh: CI=true but no JUnit report (or no python3) to check skips with" >&2
    [ "$rc" = 0 ] && rc=1
fi
exit "$rc"
