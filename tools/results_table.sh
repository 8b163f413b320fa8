#!/usr/bin/env bash
# tools/results_table.sh ITERS OUTROOT: the CIFAR-10 ResNet-20 accuracy table (issue 4 item 8):
# FP32, round-to-nearest, AdaRound (layer-wise), No-Drop and QDrop at W4A4, W2A4, W3A3, W2A2,
# ITERS iterations per unit, 1,024 calibration images, all 10,000 test JPEGs. Each run is one
# command (printed); tools/results_table.py turns OUTROOT into docs/results.md.
set -u
ITERS=${1:-200}
ROOT=${2:-runs/table_${ITERS}}
# QD_BIN: the binary to run (e.g. a copy of build/qdrop-gpu, so rebuilding does not disturb a long
# table); the recorded commands name ./build/qdrop-gpu. QD_EXTRA_ARGS: appended to every command
# (e.g. "--set process.threads=1" to run two tables side by side; results do not depend on it).
BIN=${QD_BIN:-build/qdrop-gpu}
EXTRA=${QD_EXTRA_ARGS:-}
mkdir -p "$ROOT"
for bits in "4 4" "2 4" "3 3" "2 2"; do
    set -- $bits
    for mode in nearest qdrop nodrop adaround; do
        out="$ROOT/w$1a$2_$mode"
        [ -f "$out/results.json" ] && continue
        fp32=false; [ "$mode" = nearest ] && fp32=true
        cmd="$BIN --config configs/default.json --device cpu --set quant.w_qconfig.bit=$1 --set quant.a_qconfig.bit=$2 --set quant.mode=$mode --set quant.recon.iters=$ITERS --set eval.fp32=$fp32 --set output.plots=false --out $out --quiet --progress never${EXTRA:+ $EXTRA}"
        echo "./build/qdrop-gpu ${cmd#"$BIN "}" > "$ROOT/w$1a$2_$mode.cmd"
        echo "[$(date +%H:%M:%S)] $cmd"
        $cmd || echo "FAILED: $cmd"
    done
done
