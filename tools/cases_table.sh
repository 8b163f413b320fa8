#!/usr/bin/env bash
# tools/cases_table.sh [OUTROOT]: the Case 1/2/3 / BRECQ / No-Drop / QDrop comparison (issue 4,
# docs/algorithm.md §9; QDrop paper Table 1) on CIFAR-10 ResNet-20 at W2A4 and W3A3 with
# configs/default.json (200 iterations per unit; BRECQ's activation stage at its own default of
# 5,000 iterations per unit, quant.brecq.act_iters), plus two W2A4 BRECQ diagnostics: the activation
# stage shortened to 200 iterations, and "stage 1 only" (act_iters 1 at lr 0, i.e. ranges only). Each run is one command,
# stored next to its output as <name>.cmd; tools/cases_table.py turns OUTROOT into the table in
# docs/results.md (python3 tools/update_results_docs.py runs/table_200 --cases OUTROOT).
# Runs single-threaded under nice (shared machine): process.threads=1 does not change results.
set -u
ROOT=${1:-runs/cases_200}
BIN=${QD_BIN:-build/qdrop-gpu}
mkdir -p "$ROOT"
run() {  # name, extra args...
    local name=$1; shift
    local out="$ROOT/$name"
    [ -f "$out/results.json" ] && return
    local cmd="$BIN --config configs/default.json --device cpu $* --set process.threads=1 --set output.plots=false --out $out --quiet --progress never"
    echo "$cmd" > "$ROOT/$name.cmd"
    echo "[$(date +%H:%M:%S)] $cmd"
    nice -n 10 $cmd || echo "FAILED: $cmd"
}
for bits in "2 4" "3 3"; do
    set -- $bits
    for mode in case1 case2 case3 brecq nodrop qdrop; do
        run "w$1a$2_$mode" --set quant.mode=$mode --set quant.w_qconfig.bit=$1 --set quant.a_qconfig.bit=$2
    done
done
run w2a4_brecq_act200 --set quant.mode=brecq --set quant.w_qconfig.bit=2 --set quant.a_qconfig.bit=4 \
    --set quant.brecq.act_iters=200
run w2a4_brecq_stage1only --set quant.mode=brecq --set quant.w_qconfig.bit=2 --set quant.a_qconfig.bit=4 \
    --set quant.brecq.act_iters=1 --set quant.brecq.act_lr=0
