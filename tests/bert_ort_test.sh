#!/usr/bin/env bash
# tests/bert_ort_test.sh: ONNX Runtime redoes a BERT run's quantized evaluation from the run's own
# outputs (tools/bert_ort_check.py, docs/bert.md "Encoder graph"): the tiny random SST-2
# classifier of tests/fixtures/bert/sst2_tiny, one reconstruction iteration through the CLI with
# output.export_onnx and output.logits, then model_qdq.onnx in ONNX Runtime on the recorded
# encoder inputs + the checkpoint's head gives every one of the engine's 200 predictions and its
# accuracy (to 1e-4), on the exported model (also with ORT's graph optimizations) and on its
# symbolic-length copy; node by node
# (--trace) the only differences start with rounding flips at a boundary. Also: without
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
# ONNX Runtime's optimized graph (MatMulNBits for the 4-bit weights, fused MatMuls) with float
# MatMulNBits inputs (the tool's default accuracy level 0) runs the same model
python3 "$SRC/tools/bert_ort_check.py" --ort-opt all "$WORK/run" || { echo "FAIL: tools/bert_ort_check.py --ort-opt all"; exit 1; }
# the copy of the model with a symbolic sequence length (sentences longer than the exported one)
python3 "$SRC/tools/bert_ort_check.py" --free-length "$WORK/run" || { echo "FAIL: tools/bert_ort_check.py --free-length"; exit 1; }
# node by node (tools/bert_trace.c): the worst sentence's differences start with rounding flips at
# a boundary; a model whose first Gemm bias is off by 0.1% is caught at that node
TRACE_BIN=${QD_TRACE_BIN:-$(dirname "$BIN")/tests/bert_trace}
[ -x "$TRACE_BIN" ] || { echo "FAIL: $TRACE_BIN not built"; exit 1; }
python3 "$SRC/tools/bert_ort_check.py" --trace worst --trace-bin "$TRACE_BIN" "$WORK/run" > "$WORK/trace.txt" ||
    { cat "$WORK/trace.txt"; echo "FAIL: tools/bert_ort_check.py --trace worst"; exit 1; }
grep -E "^(worst|trace)" "$WORK/trace.txt"
cp -r "$WORK/run" "$WORK/tampered"
python3 - "$WORK/tampered/model_qdq.onnx" <<'PY' || { echo "FAIL: cannot tamper with the export"; exit 1; }
import sys, onnx
from onnx import numpy_helper
m = onnx.load(sys.argv[1])
for t in m.graph.initializer:
    if t.name == "encoder.layer.0.attention.self.query.bias":
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * 1.001 + 1e-3, t.name))
        break
else:
    sys.exit("no encoder.layer.0.attention.self.query.bias")
onnx.save(m, sys.argv[1])
PY
python3 "$SRC/tools/bert_ort_check.py" --trace 0 --trace-bin "$TRACE_BIN" "$WORK/tampered" > "$WORK/tampered.txt"
rc=$?
if [ $rc -ne 1 ] || ! grep -q "^FAIL: node encoder.layer.0.attention.self.query:" "$WORK/tampered.txt"; then
    cat "$WORK/tampered.txt"; echo "FAIL: a changed bias was not caught at its node (exit $rc)"; exit 1
fi
echo "ok   trace: a changed bias is caught at encoder.layer.0.attention.self.query"
"$BIN" "${ARGS[@]}" --set output.logits=false --out "$WORK/plain" 2>"$WORK/plain.err" ||
    { echo "FAIL: run without output.logits exited $?: $(cat "$WORK/plain.err")"; exit 1; }
if ls "$WORK/plain"/eval_*.npy >/dev/null 2>&1; then echo "FAIL: eval_*.npy written without output.logits"; exit 1; fi
echo "ok   without output.logits: no eval_*.npy"
