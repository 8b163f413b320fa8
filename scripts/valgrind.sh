#!/usr/bin/env bash
# scripts/valgrind.sh: run the core unit tests (CTest label "unit", compiled C test executables
# only; shell/python script tests are skipped) under valgrind memcheck on a plain (unsanitized)
# CPU build. Any invalid read/write, use of uninitialised memory or definite/indirect leak fails.
#   bash scripts/valgrind.sh                 # configures and builds build-valgrind
#   BUILD_DIR=build bash scripts/valgrind.sh test_config test_data   # only these tests
# Env: BUILD_DIR (default build-valgrind), JOBS (build parallelism, default 2), VALGRIND_ARGS,
#      VALGRIND_TIMEOUT (seconds per test, default 900: valgrind runs 20-50x slower),
#      VALGRIND_EXCLUDE (regex of test names to leave out), VALGRIND_ALLOW_TIMEOUT=1 (a timed-out
#      test, i.e. one not fully checked, does not fail the run; it is still listed).
# Exit: 0 clean, 1 a finding, a test failure or a timeout, 77 valgrind not installed.
set -uo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind: not installed: skipping"; exit 77; }
BUILD_DIR=${BUILD_DIR:-build-valgrind}
JOBS=${JOBS:-2}
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S . -B "$BUILD_DIR" -DQD_CUDA=OFF -DQD_SANITIZE=OFF -DQD_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        >"$BUILD_DIR.configure.log" 2>&1 || { tail -30 "$BUILD_DIR.configure.log"; exit 1; }
fi
if grep -q '^QD_SANITIZE:BOOL=ON' "$BUILD_DIR/CMakeCache.txt"; then
    echo "valgrind: $BUILD_DIR is an ASan build; valgrind needs a plain one"; exit 1
fi
cmake --build "$BUILD_DIR" -j"$JOBS" || { echo "valgrind: build failed"; exit 1; }

# name, working directory and argv of every unit test whose command is a built executable
mapfile -t TESTS < <(ctest --test-dir "$BUILD_DIR" -N -L unit --show-only=json-v1 | python3 -c '
import json, os, sys
bd = os.path.abspath(sys.argv[1])
for t in json.load(sys.stdin)["tests"]:
    cmd = t.get("command") or []
    if not cmd or not os.path.abspath(cmd[0]).startswith(bd + os.sep):
        continue  # script tests (bash/python) are not C code under test
    wd = next((p["value"] for p in t.get("properties", []) if p["name"] == "WORKING_DIRECTORY"), bd)
    print("\t".join([t["name"], wd] + cmd))
' "$BUILD_DIR")

export OPENBLAS_NUM_THREADS=1 # one BLAS thread: faster under valgrind, no thread-pool noise
LOGDIR="$BUILD_DIR/valgrind"
mkdir -p "$LOGDIR"
fails=()
timeouts=()
n=0
for line in "${TESTS[@]}"; do
    IFS=$'\t' read -r -a f <<<"$line"
    name=${f[0]}; wd=${f[1]}; cmd=("${f[@]:2}")
    if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
    if [ -n "${VALGRIND_EXCLUDE:-}" ] && [[ $name =~ $VALGRIND_EXCLUDE ]]; then echo "SKIP $name (VALGRIND_EXCLUDE)"; continue; fi
    n=$((n + 1))
    t0=$(date +%s)
    # shellcheck disable=SC2086
    (cd "$wd" && timeout -k 10 "${VALGRIND_TIMEOUT:-900}" valgrind --tool=memcheck --error-exitcode=1 --leak-check=full \
        --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect --track-origins=yes \
        --num-callers=30 --log-file="$LOGDIR/$name.log" ${VALGRIND_ARGS:-} "${cmd[@]}") >"$LOGDIR/$name.out" 2>&1
    rc=$?
    errs=$(grep -m1 'ERROR SUMMARY' "$LOGDIR/$name.log" | sed 's/^==[0-9]*== //')
    if [ $rc -eq 77 ]; then
        echo "SKIP $name ($(($(date +%s) - t0))s)"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        echo "TIMEOUT $name (${VALGRIND_TIMEOUT:-900}s, not fully checked; errors so far: $(grep -c '^==[0-9]*== [A-Z][a-z]* .*\(read\|write\|uninitialised\|free\)' "$LOGDIR/$name.log"))"
        timeouts+=("$name")
    elif [ $rc -ne 0 ]; then
        echo "FAIL $name (exit $rc, $(($(date +%s) - t0))s): $errs  [$LOGDIR/$name.log]"
        fails+=("$name")
    else
        echo "ok   $name ($(($(date +%s) - t0))s): $errs"
    fi
done
echo "valgrind: $n tests, ${#fails[@]} failed${fails:+: ${fails[*]}}, ${#timeouts[@]} timed out${timeouts:+: ${timeouts[*]}}"
[ ${#fails[@]} -eq 0 ] || exit 1
[ ${#timeouts[@]} -eq 0 ] || [ "${VALGRIND_ALLOW_TIMEOUT:-0}" = 1 ] || exit 1
exit 0
