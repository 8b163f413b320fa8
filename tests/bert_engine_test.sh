#!/usr/bin/env bash
# tests/bert_engine_test.sh: a BERT config (model.type bert, the tiny random SST-2 classifier of
# tests/fixtures/bert/sst2_tiny) gets what the engine gives every model (docs/bert.md):
#   - --device cuda without a usable GPU: exit 69 with one error line, no outputs (like ONNX runs);
#   - early stop: quant.recon.early_stop with a large min_delta stops every unit after warm-up
#     plus two windows without improvement (results.json: early_stopped, iters_run < planned);
#   - run.log, results.json (accuracy block, one unit per encoder layer), predictions.csv;
#   - --dry-run prints the plan (one unit per encoder layer) and writes nothing.
# (Kill + --resume: tests/resume_test.sh bert; NaN retries: tests/nan_test.sh bert; the ONNX
# export in ONNX Runtime: tests/bert_export_test.sh.)
# Env: QD_BIN, QD_SRC_DIR. Exit 0 pass, 1 fail, 77 no binary / no python3.
set -uo pipefail
SRC=${QD_SRC_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${QD_BIN:-$SRC/build/qdrop-gpu}
[ -x "$BIN" ] || { echo "bert_engine: $BIN not found: skipping"; exit 77; }
command -v python3 >/dev/null || { echo "bert_engine: python3 not found: skipping"; exit 77; }
cd "$SRC"
WORK=$(mktemp -d /tmp/qd_bert_engine.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ARGS=(--config tests/fixtures/bert/sst2_tiny_run.json --quiet --progress never --set output.export_onnx=false)
fail=0

# 1. --device cuda where no GPU is usable
if nvidia-smi -L >/dev/null 2>&1; then
    echo "note: a GPU is visible: the exit-69 check is for CPU-only machines (skipped)"
else
    "$BIN" "${ARGS[@]}" --device cuda --out "$WORK/cuda" 2>"$WORK/cuda.err"
    rc=$?
    if [ $rc -ne 69 ]; then echo "FAIL: --device cuda exited $rc, expected 69: $(cat "$WORK/cuda.err")"; fail=1
    elif [ "$(wc -l <"$WORK/cuda.err")" -ne 1 ]; then echo "FAIL: expected one error line: $(cat "$WORK/cuda.err")"; fail=1
    elif [ -e "$WORK/cuda/results.json" ]; then echo "FAIL: results.json written by a failed run"; fail=1
    else echo "ok   --device cuda without a GPU: exit 69: $(cat "$WORK/cuda.err")"; fi
fi

# 2. early stop (and the ordinary outputs of a run)
"$BIN" "${ARGS[@]}" --device cpu --set quant.recon.iters=200 --set quant.recon.early_stop=true \
    --set quant.recon.early_stop_window=10 --set quant.recon.early_stop_min_delta=0.9 --out "$WORK/es" 2>"$WORK/es.err"
rc=$?
if [ $rc -ne 0 ]; then echo "FAIL: early-stop run exited $rc: $(cat "$WORK/es.err")"; fail=1
else
    python3 - "$WORK/es" <<'PY' || fail=1
import json, os, sys
d = sys.argv[1]
r = json.load(open(os.path.join(d, "results.json")))
errs = []
u = r.get("units", [])
if [x["name"] for x in u] != ["encoder.layer.0", "encoder.layer.1"]: errs.append("units %r" % [x.get("name") for x in u])
for x in u:
    # warm-up 20% of 200 = 40 iterations, then two windows of 10 without a 90% improvement
    if not x.get("early_stopped") or not 40 <= x["iters_run"] < x["iters_planned"]:
        errs.append("%s: early_stopped %r after %r of %r iterations" % (x["name"], x.get("early_stopped"), x.get("iters_run"), x.get("iters_planned")))
a = r.get("accuracy", {})
if a.get("metric") != "accuracy" or not 0 <= a.get("quant", -1) <= 1 or a.get("examples") != 200: errs.append("accuracy %r" % a)
log = open(os.path.join(d, "run.log")).read()
for ev in ("unit_done", "eval_quant"):
    if '"event":"%s"' % ev not in log: errs.append("run.log has no %s event" % ev)
rows = open(os.path.join(d, "predictions.csv")).read().split("\n")
if rows[0] != "index,label,fp32,quant" or len([x for x in rows[1:] if x]) != 200: errs.append("predictions.csv %r" % rows[:2])
if errs: print("FAIL: " + "; ".join(errs)); sys.exit(1)
print("ok   early stop: %s; run.log, results.json, predictions.csv written"
      % ", ".join("%s after %d of %d iterations" % (x["name"], x["iters_run"], x["iters_planned"]) for x in u))
PY
fi

# 3. dry run
"$BIN" "${ARGS[@]}" --device cpu --dry-run --out "$WORK/dry" >"$WORK/dry.out" 2>"$WORK/dry.err"
rc=$?
if [ $rc -ne 0 ]; then echo "FAIL: dry run exited $rc: $(cat "$WORK/dry.err")"; fail=1
elif ! grep -q "units: 2 (2 blocks" "$WORK/dry.out"; then echo "FAIL: dry-run plan: $(head -5 "$WORK/dry.out")"; fail=1
elif [ -e "$WORK/dry/results.json" ]; then echo "FAIL: a dry run wrote results.json"; fail=1
else echo "ok   dry run: $(grep "units:" "$WORK/dry.out")"; fi
[ $fail -eq 0 ] && echo "bert_engine: PASS" || echo "bert_engine: FAIL"
exit $fail
