#!/usr/bin/env bash
# tests/bert_export_test.sh: the QDQ ONNX export of a quantized BERT encoder graph (tiny random
# BERT of test_bert_graph: 2 layers, hidden 32, all 17 activation quantizers and 12 per-channel
# weight quantizers active) passes onnx.checker and ONNX Runtime reproduces the engine's quantized
# outputs on a batch with padded sequences (tests/bert_export_check.py).
# Env: QD_BUILD_DIR, QD_SRC_DIR. Exit 0 pass, 1 fail, 77 no onnx/onnxruntime or no test binary.
set -uo pipefail
SRC=${QD_SRC_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILD=${QD_BUILD_DIR:-$SRC/build}
T=$BUILD/tests/test_bert_graph
[ -x "$T" ] || { echo "bert_export: $T not found: skipping"; exit 77; }
python3 -c "import numpy, onnx, onnxruntime" 2>/dev/null || { echo "bert_export: numpy/onnx/onnxruntime not importable: skipping"; exit 77; }
WORK=$(mktemp -d /tmp/qd_bert_export.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
QD_BERT_EXPORT_DIR=$WORK "$T" >"$WORK/log" 2>&1 || { echo "FAIL: test_bert_graph: $(tail -3 "$WORK/log")"; exit 1; }
exec python3 "$SRC/tests/bert_export_check.py" "$WORK"
