#!/usr/bin/env bash
# tests/nan_test.sh (issue 9 item 3): a NaN reconstruction loss (injected with
# QD_DEBUG_POISON_ITER) must stop the run with exit 76 and a one-line error naming the unit,
# leave no model files, and keep the checkpoint of the units finished before; with
# quant.recon.nan_retries=1 the unit is retried with lower learning rates and the run succeeds.
# With the argument "bert" the same for a BERT run (the tiny SST-2 classifier of
# tests/fixtures/bert/sst2_tiny: the encoder layers go through the same training loop).
# Env: QD_BIN, QD_SRC_DIR. Exit 0 pass, 1 fail, 77 no binary.
set -uo pipefail
SRC=${QD_SRC_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${QD_BIN:-$SRC/build/qdrop-gpu}
[ -x "$BIN" ] || { echo "nan: $BIN not found: skipping"; exit 77; }
cd "$SRC"
WORK=$(mktemp -d /tmp/qd_nan.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ARGS=(--config configs/default.json --device cpu --quiet --progress never
      --set quant.recon.iters=20 --set quant.recon.log_every=10 --set quant.calibrate=128
      --set quant.act_calib_samples=32 --set eval.enabled=false --set output.plots=false)
[ "${1:-}" = bert ] && ARGS=(--config tests/fixtures/bert/sst2_tiny_run.json --device cpu --quiet --progress never
      --set quant.recon.iters=20 --set quant.recon.log_every=10 --set quant.calibrate=64
      --set quant.act_calib_samples=32 --set eval.enabled=false)
fail=0
QD_DEBUG_POISON_ITER=15 "$BIN" "${ARGS[@]}" --out "$WORK/a" 2>"$WORK/a.err"
rc=$?
msg=$(cat "$WORK/a.err")
if [ $rc -ne 76 ]; then echo "FAIL: poisoned run exited $rc (expected 76): $msg"; fail=1; fi
[ "$(wc -l <"$WORK/a.err")" -eq 1 ] || { echo "FAIL: expected one error line, got: $msg"; fail=1; }
echo "$msg" | grep -q "unit '.*': reconstruction loss became NaN at iteration" || { echo "FAIL: message: $msg"; fail=1; }
for f in model_qdq.onnx encodings.json results.json; do
    [ -e "$WORK/a/$f" ] && { echo "FAIL: $f written by a failed run"; fail=1; }
done
[ -s "$WORK/a/checkpoint.bin" ] || { echo "FAIL: checkpoint missing after the failure"; fail=1; }
[ $fail -eq 0 ] && echo "ok   NaN stops the run: $msg"

QD_DEBUG_POISON_ITER=15 "$BIN" "${ARGS[@]}" --set quant.recon.nan_retries=1 --out "$WORK/b" 2>"$WORK/b.err"
rc=$?
if [ $rc -ne 0 ]; then echo "FAIL: run with nan_retries=1 exited $rc: $(cat "$WORK/b.err")"; fail=1
else
    n=$(grep -c '"event":"nan_retry"' "$WORK/b/run.log")
    [ "$n" -ge 1 ] && echo "ok   nan_retries=1: $n unit(s) retried with lower learning rates, run finished" \
                   || { echo "FAIL: no nan_retry event in run.log"; fail=1; }
    [ -s "$WORK/b/model_qdq.onnx" ] || { echo "FAIL: no model after a successful retry"; fail=1; }
fi
[ $fail -eq 0 ] && echo "nan: PASS" || echo "nan: FAIL"
exit $fail
