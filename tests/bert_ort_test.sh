#!/usr/bin/env bash
# tests/bert_ort_test.sh: ONNX Runtime redoes a BERT run's quantized evaluation from the run's own
# outputs (tools/bert_ort_check.py, docs/bert.md "Encoder graph"): the tiny random SST-2
# classifier of tests/fixtures/bert/sst2_tiny, one reconstruction iteration through the CLI with
# output.export_onnx and output.logits, then model_qdq.onnx in ONNX Runtime on the recorded
# encoder inputs + the checkpoint's head gives every one of the engine's 200 predictions and its
# accuracy (to 1e-4), on the exported model and on its symbolic-length copy. Also: without
# output.logits no eval_*.npy is written.
# Env: QD_BIN, QD_SRC_DIR. Exit 0 pass, 1 fail, 77 no binary / no numpy, onnx or onnxruntime.
set -uo pipefail
SRC=${QD_SRC_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${QD_BIN:-$SRC/build/qdrop-gpu}
[ -x "$BIN" ] || { echo "bert_ort: $BIN not found: skipping"; exit 77; }
python3 -c "import numpy, onnx, onnxruntime" 2>/dev/null || { echo "bert_ort: numpy/onnx/onnxruntime not importable: skipping"; exit 77; }
cd "$SRC"
WORK=$(mktemp -d /tmp/qd_bert_ort.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ARGS=(--config tests/fixtures/bert/sst2_tiny_run.json --quiet --progress never --device cpu
      --set quant.recon.iters=1 --set eval.fp32=false --set output.export_onnx=true)
"$BIN" "${ARGS[@]}" --set output.logits=true --out "$WORK/run" 2>"$WORK/run.err" ||
    { echo "FAIL: run exited $?: $(cat "$WORK/run.err")"; exit 1; }
python3 "$SRC/tools/bert_ort_check.py" "$WORK/run" || { echo "FAIL: tools/bert_ort_check.py"; exit 1; }
# the copy of the model with a symbolic sequence length (sentences longer than the exported one)
python3 "$SRC/tools/bert_ort_check.py" --free-length "$WORK/run" || { echo "FAIL: tools/bert_ort_check.py --free-length"; exit 1; }
"$BIN" "${ARGS[@]}" --set output.logits=false --out "$WORK/plain" 2>"$WORK/plain.err" ||
    { echo "FAIL: run without output.logits exited $?: $(cat "$WORK/plain.err")"; exit 1; }
if ls "$WORK/plain"/eval_*.npy >/dev/null 2>&1; then echo "FAIL: eval_*.npy written without output.logits"; exit 1; fi
echo "ok   without output.logits: no eval_*.npy"
