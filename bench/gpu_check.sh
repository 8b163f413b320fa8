#!/usr/bin/env bash
# bench/gpu_check.sh: the one script to run on a lent GPU machine (H100/H200), < 8 minutes.
#   1. configure + build (Release, -DQD_CUDA=ON)
#   2. ctest, all tests, QD_REQUIRE_GPU=1 (a CUDA test that skips fails)
#   3. compute-sanitizer --tool memcheck on the op twin test and the BERT layer twin test
#   4. the GPU benchmark (TF32 on, then deterministic FP32 with the determinism check)
#   5. cross-process determinism: two benchmark determinism dumps must be byte-identical
#   6. BERT-base encoder layer forward+backward timing on the GPU (bench/bench_bert.c: batch 32,
#      seq 128; FP32, TF32, 8-bit activation fake-quant), JSON lines in bench_bert_gpu.json
# Every step runs even when an earlier one failed; each step's rc lands in $OUT/summary.json.
# Output: $OUT (or ./gpu_out): summary.json, *.log, bench_*.json.
set -u
cd "$(dirname "$0")/.."
SRC=$(pwd)
OUT=${OUT:-$SRC/gpu_out}
mkdir -p "$OUT"
BUILD=${QD_GPU_BUILD:-$SRC/build-gpucheck}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 8)}
T0=$(date +%s)
declare -a NAMES RCS SECS

step() { # step NAME TIMEOUT_S CMD...
    local name=$1 to=$2
    shift 2
    local t=$(date +%s)
    echo "=== [$name] $*" | tee -a "$OUT/steps.log"
    timeout --signal=TERM --kill-after=10 "$to" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    local dt=$(( $(date +%s) - t ))
    echo "=== [$name] rc=$rc (${dt}s)" | tee -a "$OUT/steps.log"
    tail -n 15 "$OUT/$name.log"
    NAMES+=("$name"); RCS+=("$rc"); SECS+=("$dt")
    return $rc
}

{ nvidia-smi || true; } > "$OUT/nvidia-smi.log" 2>&1

step configure 120 cmake -S "$SRC" -B "$BUILD" -DQD_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DQD_WERROR=OFF \
    -DCMAKE_CUDA_ARCHITECTURES=90-real
step build 300 cmake --build "$BUILD" -j "$JOBS"
# build what we can even if some unrelated target failed
if [ "${RCS[-1]}" != 0 ]; then
    step build_cuda_targets 200 cmake --build "$BUILD" -j "$JOBS" --target test_cuda_ops test_cuda_unit test_cuda_bert qd_bench_gpu bench_bert
fi

export QD_REQUIRE_GPU=1
step ctest_cuda 240 ctest --test-dir "$BUILD" -L cuda --output-on-failure --timeout 200
step ctest_all 240 ctest --test-dir "$BUILD" --output-on-failure --timeout 200 -j 8

SAN=$(command -v compute-sanitizer || true)
for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    [ -z "$SAN" ] && [ -x "$c" ] && SAN=$c
done
SAN=${SAN:-compute-sanitizer}
if [ -x "$SAN" ]; then
    step memcheck_ops 300 "$SAN" --tool memcheck --error-exitcode 99 --leak-check no "$BUILD/tests/test_cuda_ops"
    step memcheck_bert 180 "$SAN" --tool memcheck --error-exitcode 99 --leak-check no "$BUILD/tests/test_cuda_bert"
else
    echo "compute-sanitizer not found" > "$OUT/memcheck_ops.log"; NAMES+=(memcheck_ops); RCS+=(127); SECS+=(0)
fi

step bench_tf32 240 "$BUILD/tests/qd_bench_gpu" --tf32 1 --deterministic 0 --iters 200 --out "$OUT/bench_tf32.json"
step bench_fp32_det 240 "$BUILD/tests/qd_bench_gpu" --tf32 0 --deterministic 1 --iters 100 \
    --out "$OUT/bench_fp32_det.json" --determinism-dump "$OUT/det_run1.bin"
# second process, same deterministic computation: bytes must match the first process's dump
step det_process_1 120 "$BUILD/tests/qd_bench_gpu" --smoke --tf32 0 --deterministic 1 --determinism-dump "$OUT/det_smoke_1.bin"
step det_process_2 120 "$BUILD/tests/qd_bench_gpu" --smoke --tf32 0 --deterministic 1 --determinism-dump "$OUT/det_smoke_2.bin"
step determinism_cmp 10 cmp "$OUT/det_smoke_1.bin" "$OUT/det_smoke_2.bin"
# BERT-base layer on the GPU (cuda/bert_cuda.cu): stdout is JSON lines
step bench_bert_gpu 120 bash -o pipefail -c '"$0" 32 128 20 gpu | tee "$1"' "$BUILD/tests/bench_bert" "$OUT/bench_bert_gpu.json"

# summary.json
{
    echo "{"
    echo "  \"script\": \"bench/gpu_check.sh\","
    echo "  \"git\": \"$(git -C "$SRC" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)\","
    echo "  \"device\": \"$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)\","
    echo "  \"wall_s\": $(( $(date +%s) - T0 )),"
    echo "  \"steps\": ["
    n=${#NAMES[@]}
    for ((i = 0; i < n; i++)); do
        sep=","; [ $i -eq $((n - 1)) ] && sep=""
        echo "    {\"name\": \"${NAMES[$i]}\", \"rc\": ${RCS[$i]}, \"seconds\": ${SECS[$i]}}$sep"
    done
    echo "  ]"
    echo "}"
} > "$OUT/summary.json"
cat "$OUT/summary.json"
fail=0
for rc in "${RCS[@]}"; do [ "$rc" != 0 ] && fail=1; done
exit $fail
