#!/usr/bin/env bash
# tests/fuzz/run_fuzz.sh: build the libFuzzer targets (clang, ASan + UBSan) and run each for a
# bounded time from its committed seed corpus; print the executions reached per target.
#
#   bash tests/fuzz/run_fuzz.sh [target...]        (default: every target built in this tree)
#   FUZZ_SECONDS=600 bash tests/fuzz/run_fuzz.sh fuzz_onnx
#
# Environment: FUZZ_SECONDS (per target, default 60), FUZZ_BUILD_DIR (default build-fuzz),
# FUZZ_JOBS (parallel fuzzing processes per target, default 1), FUZZ_KEEP_CORPUS=1 (merge the
# new corpus entries back into tests/fuzz/corpus/<target>/, for growing the committed seeds).
# Crash reproducers go to tests/fuzz/crashes/<target>-crash-<sha1> (replay one with
# build-fuzz/tests/<target> FILE). Exit: 0 no crash, 1 a crash/leak/timeout found, 77 no clang.
set -u
SRC=${QD_SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${FUZZ_BUILD_DIR:-$SRC/build-fuzz}
SECONDS_PER=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-1}

CLANG=$(command -v clang || command -v clang-14 || true)
if [ -z "$CLANG" ]; then
    echo "run_fuzz: clang not found: skipping (libFuzzer needs clang)"
    exit 77
fi
if ! echo 'int LLVMFuzzerTestOneInput(const char*d,unsigned long n){(void)d;(void)n;return 0;}' |
     "$CLANG" -x c -fsanitize=fuzzer,address - -o /tmp/qd_fuzz_probe.$$ 2>/dev/null; then
    echo "run_fuzz: $CLANG cannot link -fsanitize=fuzzer (install libclang-rt-dev): skipping"
    rm -f /tmp/qd_fuzz_probe.$$
    exit 77
fi
rm -f /tmp/qd_fuzz_probe.$$

if [ ! -f "$BUILD/CMakeCache.txt" ] || ! grep -q '^QD_FUZZ:BOOL=ON' "$BUILD/CMakeCache.txt"; then
    CC="$CLANG" cmake -S "$SRC" -B "$BUILD" -DQD_FUZZ=ON -DQD_CUDA=OFF -DQD_BUILD_BENCH=OFF >"$BUILD.configure.log" 2>&1 ||
        { echo "run_fuzz: configure failed (see $BUILD.configure.log)"; tail -20 "$BUILD.configure.log"; exit 1; }
else
    cmake "$BUILD" >/dev/null 2>&1 # re-detect parsers added since the last configure
fi
if [ $# -gt 0 ]; then targets="$*"; else targets=$(cat "$BUILD/fuzz_targets.txt"); fi
# one target at a time, so a parser that does not link yet (work in progress) does not hide the
# others; a build failure still fails the run
status=0
for t in $targets; do
    cmake --build "$BUILD" -j2 --target "$t" >"$BUILD/fuzz_build_$t.log" 2>&1 ||
        { echo "run_fuzz: $t: build failed:"; grep -m5 -E 'error|undefined' "$BUILD/fuzz_build_$t.log"; status=1; }
done
CRASHDIR="$SRC/tests/fuzz/crashes"
mkdir -p "$CRASHDIR"
summary=""
for t in $targets; do
    bin="$BUILD/tests/$t"
    name=${t#fuzz_}
    seeds="$SRC/tests/fuzz/corpus/$name"
    [ -x "$bin" ] || { echo "run_fuzz: $t not built"; status=1; continue; }
    work="$BUILD/fuzz-work/$name"
    mkdir -p "$work"
    dict=()
    [ -f "$SRC/tests/fuzz/$name.dict" ] && dict=(-dict="$SRC/tests/fuzz/$name.dict")
    log="$BUILD/fuzz-work/$t.log"
    echo "== $t: ${SECONDS_PER}s, seeds $(ls "$seeds" 2>/dev/null | wc -l) files"
    # -rss_limit_mb: a parser must not need GBs for a tiny input (decompression bombs count as bugs)
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    par=()
    [ "$JOBS" -gt 1 ] && par=(-jobs="$JOBS" -workers="$JOBS")
    # run inside the work dir: with -jobs libFuzzer writes fuzz-N.log files into the cwd
    (cd "$BUILD/fuzz-work" && rm -f fuzz-*.log &&
     "$bin" -max_total_time="$SECONDS_PER" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 "${par[@]}" "${dict[@]}" \
        -artifact_prefix="$CRASHDIR/$t-" "$work" "$seeds") >"$log" 2>&1
    rc=$?
    if [ "$JOBS" -gt 1 ]; then cat "$BUILD"/fuzz-work/fuzz-*.log >>"$log" 2>/dev/null; fi
    execs=$(grep -h 'stat::number_of_executed_units' "$log" | awk '{s+=$2} END {print s+0}')
    cov=$(grep -ho 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
    corpus=$(ls "$work" | wc -l)
    if [ $rc -ne 0 ]; then
        status=1
        echo "   $t: FAILED (rc $rc): $(grep -m1 -E 'ERROR: |runtime error|SUMMARY' "$log")"
        grep -h 'Test unit written to' "$log" | sed 's/^/   /'
        grep -m1 -A25 -E '==ERROR|runtime error|deadly signal' "$log" | grep -E '^ *#[0-9]' | head -12 | sed 's/^/   /'
    fi
    line=$(printf '%-18s %12s execs %8s cov %6s corpus  rc %s' "$t" "$execs" "${cov:-?}" "$corpus" "$rc")
    echo "   $line"
    summary="$summary$line"$'\n'
    if [ "${FUZZ_KEEP_CORPUS:-0}" = 1 ]; then
        "$bin" -merge=1 "$seeds" "$work" >/dev/null 2>&1
    fi
done
echo
echo "run_fuzz summary (${SECONDS_PER}s per target, logs in $BUILD/fuzz-work/):"
printf '%s' "$summary"
exit $status
