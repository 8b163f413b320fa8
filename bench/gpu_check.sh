#!/usr/bin/env bash
# bench/gpu_check.sh: the one script to run on a lent GPU machine (H100/H200), sized for one
# 600-second call: every step has its own timeout and the timeouts of the steps that run add up
# to less than GPU_CHECK_BUDGET_S (530 s). Usage and what each step proves: docs/gpu_check.md.
#
#   bash bench/gpu_check.sh --pack DIR        # here (no GPU): DIR/prebuilt.tar.gz of the CUDA binaries
#   bash bench/gpu_check.sh --prebuilt DIR    # there: run those binaries; build there if they do not start
#   bash bench/gpu_check.sh                   # there: build the CUDA-facing targets, then check
#   bash bench/gpu_check.sh --dry             # anywhere: every step's logic with stub binaries and the
#                                             # CPU selftests (GPU_CHECK_DRY=1 does the same; CI runs it)
#
# Steps, in this order (a failed step does not stop the later ones; a missing tool is "skipped"):
#   report      device, driver, CUDA/cuDNN/cuBLAS (wheels), compute-sanitizer, torch versions
#   binaries    prebuilt binaries start (LD_LIBRARY_PATH = bundled libs + wheels), else build
#               --target the CUDA-facing targets with -DCMAKE_CUDA_ARCHITECTURES=90 and -lineinfo
#   twin_*      test_cuda_ops / test_cuda_unit with QD_REQUIRE_GPU=1 (twin_bert: the tiny BERT
#               config through the engine on the GPU, model.type bert, its export in ONNX Runtime
#               and tools/bert_ort_check.py --trace worst with the engine's side on the GPU),
#               QD_SYNC_EACH_OP=1 (errors caught at the op that caused them) and cuDNN error logging
#   memcheck    compute-sanitizer memcheck on test_cuda_ops (API errors not reported: the test's
#               deliberate out-of-memory probe is also switched off); absent/refusing = skipped
#   e2e_default the default config on the GPU vs the CPU (tests/cuda/cli_e2e.sh default)
#   e2e_imagenet  ResNet-18 skeleton at 224x224 through the CLI on the GPU
#   determinism two processes, deterministic mode: byte-identical state dumps
#   bench_gpu   ResNet-18/50 W2A2 timings (measured if they fit, else projected), iteration vs convs
#   bench_torch the same unit in PyTorch eager on the same GPU (ratio)
#   bench_bert  BERT-base layer timing
# Output ($OUT, default ./gpu_out), at most 8 files: summary.json (rewritten after every step, so
# a run killed at its limit still returns what it finished), logs.tar.gz (every step's log and
# the runs' results.json/run.log, also rewritten after every step), bench_gpu.json,
# bench_torch_unit.json, cuda_e2e.json, cuda_e2e_imagenet.json. Exit 0 when no step failed.
set -u
cd "$(dirname "$0")/.." || exit 1
SRC=$(pwd)

MODE=check
PACK_DIR="" PREBUILT=""
DRY=${GPU_CHECK_DRY:-0}
while [ $# -gt 0 ]; do
    case "$1" in
    --dry) DRY=1 ;;
    --pack) MODE=pack; PACK_DIR=${2:?--pack DIR}; shift ;;
    --prebuilt) PREBUILT=${2:?--prebuilt DIR}; shift ;;
    -h | --help) sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check.sh: unknown option '$1' (see --help)" >&2; exit 64 ;;
    esac
    shift
done

# The binaries the check runs, by build-tree path (relative to the build dir).
BINS=(qdrop-gpu tests/test_cuda_ops tests/test_cuda_unit tests/qd_bench_gpu tests/bench_bert tests/bert_trace)
TARGETS=(qdrop-gpu test_cuda_ops test_cuda_unit qd_bench_gpu bench_bert bert_trace)

# ---------------------------------------------------------------------------------------------
# --pack: bundle the CUDA binaries of ./build (or $QD_GPU_BUILD) with the shared libraries they
# load that a CUDA+PyTorch image does not have (cJSON, protobuf-c, OpenBLAS, libjpeg, oneDNN...).
# System C/C++ runtime, the driver, cuDNN and cuBLAS stay out: the machine has its own.
# ---------------------------------------------------------------------------------------------
if [ "$MODE" = pack ]; then
    B=${QD_GPU_BUILD:-$SRC/build}
    stage=$(mktemp -d)
    mkdir -p "$stage/prebuilt/bin" "$stage/prebuilt/lib"
    for b in "${BINS[@]}"; do
        [ -x "$B/$b" ] || { echo "gpu_check.sh --pack: $B/$b not built (bash scripts/build.sh)" >&2; rm -rf "$stage"; exit 66; }
        cp "$B/$b" "$stage/prebuilt/bin/"
        strip --strip-debug "$stage/prebuilt/bin/$(basename "$b")" 2>/dev/null || true
    done
    for b in "${BINS[@]}"; do ldd "$B/$b"; done | awk '/=> \// {print $1, $3}' | sort -u |
        while read -r name path; do
            case "$name" in
            libc.so* | libm.so* | libdl.so* | librt.so* | libpthread.so* | ld-linux* | libgcc_s* | libstdc++* | \
                libcuda.so* | libcudnn* | libcublas* | libcudart* | libnvidia*) ;;
            *) cp -L "$path" "$stage/prebuilt/lib/$name" ;;
            esac
        done
    {
        echo "git $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
        echo "built on $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"), $(ldd --version | head -1)"
        ls -l "$stage/prebuilt/bin" "$stage/prebuilt/lib"
    } >"$stage/prebuilt/MANIFEST"
    mkdir -p "$PACK_DIR"
    tar -C "$stage" -cf - prebuilt | gzip -1 >"$PACK_DIR/prebuilt.tar.gz"
    rm -rf "$stage"
    echo "gpu_check.sh: $PACK_DIR/prebuilt.tar.gz ($(du -h "$PACK_DIR/prebuilt.tar.gz" | cut -f1))"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
OUT=${OUT:-$SRC/gpu_out}
mkdir -p "$OUT"
WORK=${GPU_CHECK_WORK:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
LOGS=$WORK/logs
mkdir -p "$LOGS"
BUDGET=${GPU_CHECK_BUDGET_S:-530}
# Dry mode runs the GPU steps' logic on the CPU of a shared CI machine: same step order and
# budget rule, every timeout (and the budget) scaled by GPU_CHECK_TIMEOUT_SCALE (dry default 6).
SCALE=${GPU_CHECK_TIMEOUT_SCALE:-1}
[ "$DRY" = 1 ] && SCALE=${GPU_CHECK_TIMEOUT_SCALE:-6}
BUDGET=$((BUDGET * SCALE))
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 8)}
T0=$(date +%s)
GIT=$(git -C "$SRC" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
declare -a NAMES RCS SECS STATUS LIMITS NOTES
SPENT_LIMITS=0 # sum of the timeouts given so far: kept below BUDGET

json_str() { # JSON string of $1
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/ }
    s=${s//$'\t'/ }
    printf '"%s"' "$s"
}

json_file_or_null() { # embed $1 when it is valid JSON, else null
    if [ -s "$1" ] && command -v python3 >/dev/null 2>&1 &&
        python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$1" 2>/dev/null; then
        cat "$1"
    else
        echo null
    fi
}

write_summary() { # $1 = running | finished
    local n=${#NAMES[@]} i sep failed=0 skipped=0 passed=0
    for ((i = 0; i < n; i++)); do
        case "${STATUS[$i]}" in passed) passed=$((passed + 1)) ;; skipped) skipped=$((skipped + 1)) ;; *) failed=$((failed + 1)) ;; esac
    done
    {
        echo "{"
        echo "  \"script\": \"bench/gpu_check.sh\","
        echo "  \"state\": \"$1\","
        echo "  \"dry\": $([ "$DRY" = 1 ] && echo true || echo false),"
        echo "  \"git\": \"$GIT\","
        echo "  \"device\": $(json_str "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"),"
        echo "  \"binaries\": $(json_str "${BIN_SOURCE:-}"),"
        echo "  \"budget_s\": $BUDGET,"
        echo "  \"timeout_scale\": $SCALE,"
        echo "  \"timeouts_sum_s\": $SPENT_LIMITS,"
        echo "  \"wall_s\": $(($(date +%s) - T0)),"
        echo "  \"passed\": $passed, \"failed\": $failed, \"skipped\": $skipped,"
        echo "  \"steps\": ["
        for ((i = 0; i < n; i++)); do
            sep=","; [ $i -eq $((n - 1)) ] && sep=""
            echo "    {\"name\": \"${NAMES[$i]}\", \"status\": \"${STATUS[$i]}\", \"rc\": ${RCS[$i]}, \"seconds\": ${SECS[$i]}, \"timeout_s\": ${LIMITS[$i]}, \"note\": $(json_str "${NOTES[$i]}")}$sep"
        done
        echo "  ],"
        echo "  \"cuda_e2e\": $(json_file_or_null "$OUT/cuda_e2e.json"),"
        echo "  \"cuda_e2e_imagenet\": $(json_file_or_null "$OUT/cuda_e2e_imagenet.json"),"
        echo "  \"bench_gpu\": $(json_file_or_null "$OUT/bench_gpu.json"),"
        echo "  \"bench_torch_unit\": $(json_file_or_null "$OUT/bench_torch_unit.json")"
        echo "}"
    } >"$OUT/summary.json.tmp" && mv "$OUT/summary.json.tmp" "$OUT/summary.json"
    tar -C "$WORK" -czf "$OUT/logs.tar.gz.tmp" logs 2>/dev/null && mv "$OUT/logs.tar.gz.tmp" "$OUT/logs.tar.gz"
}

record() { # record NAME STATUS RC SECONDS LIMIT NOTE
    NAMES+=("$1"); STATUS+=("$2"); RCS+=("$3"); SECS+=("$4"); LIMITS+=("$5"); NOTES+=("$6")
    [ -f "$LOGS/$1.log" ] || echo "$2: $6" >"$LOGS/$1.log" # a step without a command: its verdict
    echo "=== [$1] $2 (rc $3, $4 s of $5 s)${6:+: $6}" | tee -a "$LOGS/steps.log"
    write_summary running
}

# step NAME TIMEOUT CMD...: runs CMD with its output in logs/NAME.log. rc 77 = skipped (the
# command's own verdict, e.g. no sanitizer), 124/137 = timeout. The timeout is cut so that the
# timeouts given so far never exceed BUDGET.
step() {
    local name=$1 to=$(($2 * SCALE))
    shift 2
    local left=$((BUDGET - SPENT_LIMITS))
    if [ "$left" -lt 5 ]; then
        record "$name" skipped 0 0 0 "no budget left (${BUDGET} s of timeouts given)"
        return 0
    fi
    [ "$to" -gt "$left" ] && to=$left
    SPENT_LIMITS=$((SPENT_LIMITS + to))
    local t
    t=$(date +%s)
    echo "=== [$name] $*" >>"$LOGS/steps.log"
    if declare -F "$1" >/dev/null; then
        # a function of this script: timeout needs a program, so a bash that gets the script's
        # functions and the variables they read
        timeout --signal=TERM --kill-after=5 "$to" bash -c \
            "$(declare -p SRC OUT WORK LOGS DRY BIN_DIR STUBS CUDNN_ROOT CUBLAS_ROOT left JOBS BUILD cm TARGETS BINS 2>/dev/null)
$(declare -f); \"\$@\"" _ "$@" >"$LOGS/$name.log" 2>&1
    else
        timeout --signal=TERM --kill-after=5 "$to" "$@" >"$LOGS/$name.log" 2>&1
    fi
    local rc=$?
    local dt=$(($(date +%s) - t)) st=passed note=""
    case $rc in
    0) ;;
    77) st=skipped; note=$(grep -m1 -i -E 'skip|not found|refus|not supported' "$LOGS/$name.log" | cut -c1-200) ;;
    124 | 137) st=timeout; note="killed at its ${to} s limit" ;;
    *) st=failed; note=$(grep -m1 -E 'FAIL|error|Error' "$LOGS/$name.log" | cut -c1-200) ;;
    esac
    # no telling line: the log's last line says more than nothing
    [ "$st" != passed ] && [ -z "$note" ] && note=$(grep -v '^[[:space:]]*$' "$LOGS/$name.log" | tail -n 1 | cut -c1-200)
    record "$name" "$st" "$rc" "$dt" "$to" "$note"
    tail -n 5 "$LOGS/$name.log"
    return 0
}

# ---------------------------------------------------------------------------------------------
# cuDNN / cuBLAS from the Python wheels (nvidia-cudnn-cu13, nvidia-cublas) when the toolkit has
# none: their lib/ goes on LD_LIBRARY_PATH, their include/ and libraries to CMake.
# ---------------------------------------------------------------------------------------------
wheel_dir() { python3 -c "import nvidia.$1 as m, os; print(os.path.dirname(m.__file__))" 2>/dev/null; }
CUDNN_ROOT=$(wheel_dir cudnn)
CUBLAS_ROOT=$(wheel_dir cublas)
for r in "$CUDNN_ROOT" "$CUBLAS_ROOT"; do
    [ -n "$r" ] && [ -d "$r/lib" ] && export LD_LIBRARY_PATH="$r/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export CUDNN_LOGERR_DBG=1 CUDNN_LOGDEST_DBG=stderr # cuDNN explains its refusals on stderr
export QD_SYNC_EACH_OP=1                              # first runs: fail at the op that failed
# on the GPU machine a missing device is a failure of every GPU step, never a skip
[ "$DRY" = 1 ] || export QD_REQUIRE_GPU=1

report() {
    echo "date: $(date -u +%FT%TZ)  host: $(uname -srm)  cores: $(nproc)"
    echo "--- nvidia-smi"; nvidia-smi 2>&1 || echo "nvidia-smi: not available"
    echo "--- nvcc"; { command -v nvcc && nvcc --version; } 2>&1 || echo "nvcc: not found"
    echo "--- cuDNN wheel: ${CUDNN_ROOT:-not found}"; [ -n "$CUDNN_ROOT" ] && ls "$CUDNN_ROOT/lib" 2>&1 | head
    echo "--- cuBLAS wheel: ${CUBLAS_ROOT:-not found}"; [ -n "$CUBLAS_ROOT" ] && ls "$CUBLAS_ROOT/lib" 2>&1 | head
    echo "--- compute-sanitizer"; { command -v compute-sanitizer && compute-sanitizer --version; } 2>&1 || echo "not found"
    echo "--- torch"; python3 -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available(), torch.backends.cudnn.version())' 2>&1
    echo "--- cmake"; cmake --version 2>&1 | head -1
    echo "--- LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    return 0
}
step report 15 report

# ---------------------------------------------------------------------------------------------
# Binaries: prebuilt (started by path) or built here. Dry mode: stubs for what needs a GPU.
# ---------------------------------------------------------------------------------------------
BIN_DIR="" BIN_SOURCE=""
starts() { # $1 = dir with the binaries: qdrop-gpu --version must run (shared libraries, glibc)
    "$1/qdrop-gpu" --version >"$LOGS/binary_start.log" 2>&1
}
if [ -n "$PREBUILT" ]; then
    pdir=$WORK/prebuilt
    if [ -f "$PREBUILT/prebuilt.tar.gz" ]; then tar -C "$WORK" -xzf "$PREBUILT/prebuilt.tar.gz"; else cp -r "$PREBUILT" "$pdir"; fi
    export LD_LIBRARY_PATH="$pdir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    if starts "$pdir/bin"; then
        BIN_DIR=$pdir/bin BIN_SOURCE="prebuilt ($PREBUILT)"
        record binaries passed 0 0 0 "prebuilt binaries start: $(head -1 "$LOGS/binary_start.log")"
    else
        record binaries_prebuilt skipped 0 0 0 "prebuilt binaries do not start here: $(grep -m1 -E 'error|GLIBC|not found' "$LOGS/binary_start.log" | cut -c1-160); building"
    fi
fi
if [ -z "$BIN_DIR" ] && [ "$DRY" = 1 ]; then
    # dry: the pack -> unpack -> start path for real, on the binaries of ./build
    if bash "$SRC/bench/gpu_check.sh" --pack "$WORK/pack" >"$LOGS/pack.log" 2>&1 &&
        tar -C "$WORK" -xzf "$WORK/pack/prebuilt.tar.gz" && LD_LIBRARY_PATH="$WORK/prebuilt/lib:${LD_LIBRARY_PATH:-}" starts "$WORK/prebuilt/bin"; then
        BIN_DIR=$WORK/prebuilt/bin BIN_SOURCE="dry: packed from ${QD_GPU_BUILD:-build}"
        export LD_LIBRARY_PATH="$WORK/prebuilt/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        record binaries passed 0 0 0 "dry: --pack and --prebuilt start check ($(du -h "$WORK/pack/prebuilt.tar.gz" | cut -f1))"
    else
        record binaries failed 1 0 0 "dry: --pack/start of ./build failed (see logs/pack.log, binary_start.log)"
    fi
fi
if [ -z "$BIN_DIR" ] && [ "$DRY" != 1 ]; then
    BUILD=${QD_GPU_BUILD:-$SRC/build-gpucheck}
    cm=(-DQD_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DQD_WERROR=OFF -DQD_BUILD_BENCH=OFF
        -DCMAKE_CUDA_ARCHITECTURES=90 "-DCMAKE_CUDA_FLAGS=-lineinfo")
    if [ -n "$CUDNN_ROOT" ] && [ ! -e /usr/include/cudnn.h ] && [ ! -e /usr/local/cuda/include/cudnn.h ]; then
        lib=$(ls "$CUDNN_ROOT"/lib/libcudnn.so* 2>/dev/null | head -1)
        cm+=("-DCUDNN_INC=$CUDNN_ROOT/include" "-DCUDNN_LIB=$lib")
    fi
    if [ -n "$CUBLAS_ROOT" ] && [ ! -e /usr/local/cuda/include/cublas_v2.h ]; then
        cm+=("-DCUDA_cublas_LIBRARY=$(ls "$CUBLAS_ROOT"/lib/libcublas.so* | head -1)"
            "-DCUDA_cublasLt_LIBRARY=$(ls "$CUBLAS_ROOT"/lib/libcublasLt.so* | head -1)"
            "-DCMAKE_CUDA_FLAGS=-lineinfo -I$CUBLAS_ROOT/include")
    fi
    build() {
        cmake -S "$SRC" -B "$BUILD" "${cm[@]}" && cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}"
    }
    step build 150 build
    if [ "${STATUS[-1]}" = passed ]; then
        BIN_DIR=$WORK/built
        mkdir -p "$BIN_DIR"
        for b in "${BINS[@]}"; do ln -sf "$BUILD/$b" "$BIN_DIR/"; done
        BIN_SOURCE="built here ($BUILD)"
    fi
fi

# Stubs for dry mode: what needs a GPU is replaced by scripts with the same interface, so the
# steps' plumbing (arguments, dumps, JSON, cmp) runs for real.
STUBS=$WORK/stubs
if [ "$DRY" = 1 ]; then
    mkdir -p "$STUBS"
    cat >"$STUBS/qd_bench_gpu" <<'EOF'
#!/usr/bin/env bash
# dry-mode stand-in for qd_bench_gpu: same options; deterministic dump, a JSON of the real shape
out="" dump=""
while [ $# -gt 0 ]; do
    case "$1" in --out) out=$2; shift ;; --determinism-dump) dump=$2; shift ;; --iters|--tf32|--deterministic|--ncal|--w-bits|--a-bits|--full-budget-s) shift ;; esac
    shift
done
[ -n "$dump" ] && printf 'qdrop-gpu dry determinism dump\n' >"$dump"
j='{"benchmark": "qdrop-gpu unit iteration", "device": "dry stub", "units": [], "resnet18_mode": "projected", "resnet18_full_s": 0, "resnet50_mode": "projected", "resnet50_full_s": 0, "peak_device_memory_mb": 0, "status": "dry"}'
if [ -n "$out" ]; then echo "$j" >"$out"; else echo "$j"; fi
EOF
    printf '#!/bin/sh\necho "{\\"dry\\": true}"\n' >"$STUBS/bench_bert"
    chmod +x "$STUBS/qd_bench_gpu" "$STUBS/bench_bert"
fi
gpu_bin() { # path of a GPU binary: the stub in dry mode where one exists
    if [ "$DRY" = 1 ] && [ -x "$STUBS/$1" ]; then echo "$STUBS/$1"; else echo "$BIN_DIR/$1"; fi
}

if [ -z "$BIN_DIR" ]; then
    echo "gpu_check.sh: no binaries (prebuilt did not start and the build failed): nothing more to check" >&2
    write_summary finished
    exit 1
fi

# ---------------------------------------------------------------------------------------------
# Correctness: the twin tests (dry: the same binaries against a second CPU backend)
# ---------------------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then twin_env=(env QD_TWIN_SELFTEST=1); else twin_env=(env QD_REQUIRE_GPU=1); fi
step twin_ops 35 "${twin_env[@]}" "$BIN_DIR/test_cuda_ops"
step twin_unit 20 "${twin_env[@]}" "$BIN_DIR/test_cuda_unit"
bert_gpu() { # BERT (the tiny random SST-2 classifier) through the one engine on the device
    local dev=cuda
    [ "$DRY" = 1 ] && dev=cpu # dry: the same run on the CPU (the script's plumbing, not the GPU)
    "$BIN_DIR/qdrop-gpu" --config "$SRC/tests/fixtures/bert/sst2_tiny_run.json" --device $dev --progress never \
        --set quant.recon.iters=50 --set output.export_onnx=true --set output.logits=true \
        --out "$WORK/bert_gpu" || return 1
    cat "$WORK/bert_gpu/results.json"
    # The export in ONNX Runtime against the device's evaluation (informational: another summation
    # order may flip a rounding, docs/bert.md), then node by node on the device (the verdict: before
    # the first rounding flip every node agrees to float rounding, the first flips sit at a boundary)
    if ! python3 -c "import numpy, onnx, onnxruntime" 2>/dev/null; then
        echo "numpy/onnx/onnxruntime not importable: ONNX Runtime checks not run"
        return 0
    fi
    local tool=(python3 "$SRC/tools/bert_ort_check.py" --model "$SRC/tests/fixtures/bert/sst2_tiny")
    "${tool[@]}" "$WORK/bert_gpu" || echo "(ONNX Runtime differs beyond 1e-4: see the trace)"
    "${tool[@]}" --trace worst --trace-device $dev --trace-bin "$BIN_DIR/bert_trace" "$WORK/bert_gpu"
}
step twin_bert 30 "${twin_env[@]}" bash -c "$(declare -p SRC WORK DRY BIN_DIR); $(declare -f bert_gpu); bert_gpu"

memcheck() {
    local san
    san=$(command -v compute-sanitizer || true)
    for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
        [ -z "$san" ] && [ -x "$c" ] && san=$c
    done
    if [ -z "$san" ]; then echo "compute-sanitizer not found: skipped"; return 77; fi
    if [ "$DRY" = 1 ]; then echo "dry: compute-sanitizer found ($san) but not run: skipped"; return 77; fi
    # --report-api-errors no: cudaMalloc failing on purpose (the OOM probe, the cache fallback)
    # is not a bug; QD_TWIN_NO_OOM_PROBE=1 leaves the probe out as well.
    QD_TWIN_NO_OOM_PROBE=1 QD_REQUIRE_GPU=1 "$san" --tool memcheck --error-exitcode 99 --leak-check no \
        --report-api-errors no "$BIN_DIR/test_cuda_ops" >"$WORK/memcheck.out" 2>&1
    local rc=$?
    cat "$WORK/memcheck.out"
    # a sanitizer that refuses the device (seen on gVisor machines) is not a finding
    if [ $rc != 0 ] && [ $rc != 99 ] && grep -q -i -E 'Device not supported|not supported on this|Target application terminated before first instrumented|error 999' "$WORK/memcheck.out"; then
        echo "compute-sanitizer refuses this device: skipped"
        return 77
    fi
    return $rc
}
step memcheck 40 memcheck

# ---------------------------------------------------------------------------------------------
# CUDA end to end through the CLI
# ---------------------------------------------------------------------------------------------
e2e() { # e2e MODE
    local d=0
    [ "$DRY" = 1 ] && d=1
    QD_BIN=$BIN_DIR/qdrop-gpu QD_SRC_DIR=$SRC QD_BUILD_DIR=$WORK QD_CUDA_E2E_OUT=$WORK/e2e QD_CUDA_E2E_DRY=$d \
        QD_CUDA_E2E_ITERS=${QD_CUDA_E2E_ITERS:-60} QD_REQUIRE_GPU=$((1 - d)) bash "$SRC/tests/cuda/cli_e2e.sh" "$1"
    local rc=$?
    mkdir -p "$LOGS/e2e_$1"
    for f in "$WORK"/e2e/"$1"/*/results.json "$WORK"/e2e/"$1"/*/run.log "$WORK"/e2e/"$1"/compare.json "$WORK"/e2e/"$1"/*.err; do
        [ -f "$f" ] && cp "$f" "$LOGS/e2e_$1/$(basename "$(dirname "$f")")_$(basename "$f")"
    done
    [ -f "$WORK/e2e/$1/compare.json" ] && cp "$WORK/e2e/$1/compare.json" "$OUT/cuda_e2e.json"
    [ -f "$WORK/e2e/$1/imagenet.json" ] && cp "$WORK/e2e/$1/imagenet.json" "$OUT/cuda_e2e_imagenet.json"
    return $rc
}
step e2e_default 70 e2e default
# its timings are reported: no per-op synchronisation from here on
step e2e_imagenet 40 env -u QD_SYNC_EACH_OP bash -c "$(declare -p SRC OUT WORK LOGS DRY BIN_DIR); $(declare -f e2e); e2e imagenet"

# ---------------------------------------------------------------------------------------------
# Smoke benchmark + cross-process determinism: two processes, byte-identical dumps
# ---------------------------------------------------------------------------------------------
determinism() {
    local bg
    bg=$(gpu_bin qd_bench_gpu)
    "$bg" --smoke --tf32 0 --deterministic 1 --determinism-dump "$WORK/det_1.bin" || return 1
    "$bg" --smoke --tf32 0 --deterministic 1 --determinism-dump "$WORK/det_2.bin" || return 1
    cmp "$WORK/det_1.bin" "$WORK/det_2.bin" && echo "cross-process determinism: $(wc -c <"$WORK/det_1.bin") bytes identical"
}
unset QD_SYNC_EACH_OP # benchmarks: per-op synchronisation would serialise what they time
step determinism 25 determinism

# ---------------------------------------------------------------------------------------------
# Full benchmarks last: whatever time is left goes to them
# ---------------------------------------------------------------------------------------------
left=$(((BUDGET - SPENT_LIMITS) / SCALE - 35)) # 35 s kept for bench_torch + bench_bert
[ "$left" -lt 30 ] && left=30
bench_gpu() {
    "$(gpu_bin qd_bench_gpu)" --tf32 0 --deterministic 1 --w-bits 2 --a-bits 2 --ncal 1024 --iters 100 \
        --full-budget-s $((left - 10)) --out "$OUT/bench_gpu.json"
}
step bench_gpu "$left" bench_gpu
bench_torch() {
    local a=()
    [ "$DRY" = 1 ] && a=(--dry)
    QD_REQUIRE_GPU=$([ "$DRY" = 1 ] && echo 0 || echo 1) python3 "$SRC/bench/bench_torch_unit.py" "${a[@]}" \
        --out "$OUT/bench_torch_unit.json"
}
step bench_torch 25 bench_torch
step bench_bert 10 "$(gpu_bin bench_bert)" 32 128 5 gpu

write_summary finished
cat "$OUT/summary.json"
fail=0
for s in "${STATUS[@]}"; do case "$s" in failed | timeout) fail=1 ;; esac; done
[ "${GPU_CHECK_KEEP_WORK:-0}" = 1 ] || [ -n "${GPU_CHECK_WORK:-}" ] || rm -rf "$WORK"
exit $fail
