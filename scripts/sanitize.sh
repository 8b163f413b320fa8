#!/usr/bin/env bash
# scripts/sanitize.sh: build the host code with AddressSanitizer + UndefinedBehaviorSanitizer
# (QD_SANITIZE=ON, CPU only) and run the whole CTest suite except the slow and bench labels.
#   bash scripts/sanitize.sh                 # build-asan, every test
#   CTEST_ARGS="-L unit" bash scripts/sanitize.sh
# Env: BUILD_DIR (default build-asan), JOBS (default 2), CC (default: the system cc).
# Any ASan report (heap overflow, use-after-free, leak) or UBSan report (halt_on_error) makes the
# test that triggered it fail; the script exits with ctest's status. See docs/reliability.md.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-asan}
JOBS=${JOBS:-2}
cmake -S . -B "$BUILD_DIR" -DQD_SANITIZE=ON -DQD_CUDA=OFF -DQD_WERROR=ON -DQD_BUILD_BENCH=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$BUILD_DIR.configure.log" 2>&1 ||
    { tail -30 "$BUILD_DIR.configure.log"; echo "sanitize: configure failed"; exit 1; }
cmake --build "$BUILD_DIR" -j"$JOBS" || { echo "sanitize: build failed"; exit 1; }
# detect_leaks: LeakSanitizer at exit; abort_on_error: a report ends the process with a signal the
# test cannot mistake for a pass; halt_on_error for UBSan (the build also has -fno-sanitize-recover).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
# shellcheck disable=SC2086
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$JOBS" -LE "slow|bench" ${CTEST_ARGS:-}
rc=$?
echo "sanitize: ctest exit $rc (logs: $BUILD_DIR/Testing/Temporary/LastTest.log)"
exit $rc
