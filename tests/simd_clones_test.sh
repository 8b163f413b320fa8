#!/usr/bin/env bash
# tests/simd_clones_test.sh: the CPU backend's hot loops are compiled several times
# (target_clones avx512f/avx2/default, src/core/simd.h) and the loader picks one per machine.
# Results must not depend on that choice: build a second engine with QD_NO_CLONES (one generic
# SSE2 version of every loop), run the same short job with both, and require byte-identical
# model_qdq.onnx, encodings.json and predictions.csv.
# Env: QD_BIN (the CLI), QD_SRC_DIR (repository root). Exit 0 pass, 1 fail, 77 skipped.
set -uo pipefail
SRC=${QD_SRC_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${QD_BIN:-$SRC/build/qdrop-gpu}
[ -x "$BIN" ] || { echo "simd_clones: $BIN not found: skipping"; exit 77; }
case "$(uname -m)" in x86_64) ;; *) echo "simd_clones: no target_clones on $(uname -m): skipping"; exit 77 ;; esac
cd "$SRC"
WORK=$(mktemp -d /tmp/qd_clones.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
echo "building the generic (QD_NO_CLONES) engine in $WORK/build"
if ! cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DQD_CUDA=OFF -DQD_BUILD_BENCH=OFF \
        -DCMAKE_C_FLAGS=-DQD_NO_CLONES >"$WORK/configure.log" 2>&1 ||
   ! cmake --build "$WORK/build" --target qdrop-gpu -j"$(nproc)" >"$WORK/build.log" 2>&1; then
    tail -20 "$WORK/configure.log" "$WORK/build.log" 2>/dev/null
    echo "FAIL: could not build the generic engine"
    exit 1
fi
run() { # name binary
    "$2" --config configs/default.json --device cpu --out "$WORK/$1" --quiet --progress never \
        --set quant.recon.iters=20 --set quant.calibrate=256 --set eval.max_images=500 --set output.plots=false \
        >"$WORK/$1.stdout" 2>"$WORK/$1.stderr"
    local rc=$?
    if [ $rc -ne 0 ]; then echo "FAIL: $1 run exited $rc: $(tail -1 "$WORK/$1.stderr")"; exit 1; fi
}
run dispatched "$BIN"
run generic "$WORK/build/qdrop-gpu"
fail=0
# encodings.json records the git sha each binary was configured with; a commit between the two
# configure steps must not count as a numerical difference.
for b in dispatched generic; do
    grep -v '"git_sha"' "$WORK/$b/encodings.json" >"$WORK/$b/encodings.nosha.json"
done
for f in model_qdq.onnx encodings.nosha.json predictions.csv; do
    if cmp -s "$WORK/dispatched/$f" "$WORK/generic/$f"; then echo "identical: $f"
    else echo "FAIL: $f differs between the dispatched and the generic build"; fail=1; fi
done
[ $fail = 0 ] && echo "PASS: SIMD clones and the generic build give byte-identical outputs"
exit $fail
