#!/usr/bin/env bash
# tests/progress_test.sh: progress of the long phases and the --dry-run cost estimate, on the tiny
# 32x32 CNN of the bad-input catalogue (seconds).
#  1. --progress always: every phase draws "label [bar] k/N ..., elapsed, ETA" (FP32 evaluation,
#     activation ranges, weight ranges, cache, reconstruction bar, quantized evaluation);
#  2. no terminal (--progress never): the end of each phase is logged to run.log with its time;
#  3. --dry-run prints the per-phase time estimate, labelled as an estimate.
# Env: QD_BIN, QD_SRC_DIR (set by qd_add_script_test).
set -u
BIN=${QD_BIN:?QD_BIN not set}
SRC=${QD_SRC_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
T=$(mktemp -d /tmp/qd_progress_test.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

cat >"$T/c.json" <<JSON
{"model": {"path": "$SRC/tests/bad_inputs/catalogue/tiny_cnn32.onnx"},
 "data": {"calib_path": "$SRC/assets/cifar10/train-calib", "val_path": "$SRC/assets/cifar10/test", "preprocess": "cifar"},
 "quant": {"calibrate": 64, "act_calib_samples": 32, "recon": {"iters": 4, "batch_size": 8, "log_every": 2}},
 "process": {"threads": 2}, "device": {"type": "cpu"},
 "eval": {"max_images": 100}, "output": {"export_onnx": false, "plots": false}}
JSON

"$BIN" --config "$T/c.json" --out "$T/a" --progress always >"$T/a.out" 2>"$T/a.err" || fail "run with --progress always: exit $?"
for p in "FP32 evaluation [" "activation ranges [" "weight ranges [" "cache [" "quantized evaluation ["; do
    grep -qF -- "$p" "$T/a.err" || fail "--progress always: no '$p' bar on stderr"
done
grep -qE "[0-9]+/[0-9]+ (images|quantizers|layers), [0-9]+s elapsed, ETA " "$T/a.err" || fail "bars lack 'k/N what, elapsed, ETA'"
grep -qE "loss .* it/s ETA " "$T/a.err" || fail "no reconstruction bar"

"$BIN" --config "$T/c.json" --out "$T/b" --progress never >"$T/b.out" 2>"$T/b.err" || fail "run with --progress never: exit $?"
grep -qF "[" "$T/b.err" && grep -qF "ETA" "$T/b.err" && grep -q "\[#*\.*\]" "$T/b.err" && fail "--progress never drew a bar"
for p in "FP32 evaluation" "activation ranges" "weight ranges" "quantized evaluation"; do
    grep -q "\"event\":\"phase_done\".*\"phase\":\"$p\".*\"elapsed_s\"" "$T/b/run.log" || fail "run.log: no phase_done line for '$p'"
done

"$BIN" --config "$T/c.json" --out "$T/c" --dry-run --progress never >"$T/c.out" 2>"$T/c.err" || fail "--dry-run: exit $?"
grep -qF "time estimate (cpu" "$T/c.out" || fail "--dry-run: no 'time estimate (cpu' line"
grep -qF "ESTIMATE" "$T/c.out" || fail "--dry-run: estimate not labelled as one"
for p in "FP32 evaluation" "activation ranges" "weight ranges" "unit caches" "reconstruction" "quantized evaluation" "total"; do
    grep -qE "^  $p .*~([0-9]+[dhms]|<1s)" "$T/c.out" || fail "--dry-run: no estimate line for '$p'"
done
[ -e "$T/c" ] && fail "--dry-run created the output directory"

if [ "$fails" != 0 ]; then
    echo "--- stderr (always) ---"; cat "$T/a.err"; echo "--- dry run ---"; cat "$T/c.out"
    exit 1
fi
echo "progress_test: all checks passed"
