#!/usr/bin/env python3
"""ONNX Runtime on the QDQ export of the BERT encoder graph (tests/bert_export_test.sh).

DIR holds model_qdq.onnx (quantized encoder: inputs embeddings [N,S,H] and attention_mask
[N,1,1,S], output the last hidden state) with the inputs and the engine's outputs for them
(embeddings.npy, attention_mask.npy, tokens.npy = 1 for a token / 0 for padding, engine_quant.npy).
ORT runs with graph optimizations off (the QDQ graph with ONNX semantics, as tests/export_ort_check.py).
Passes when every valid token's output matches the engine's: max |ort - engine| <= TOL x max
|engine| (a fake-quant rounding boundary hit one way by the engine's float order and the other by
ORT's moves a value by one grid step; TOL allows a few such steps, the mean must stay tiny).
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort

TOL_MAX, TOL_MEAN = 2e-2, 1e-4
d = sys.argv[1]
model = onnx.load(d + "/model_qdq.onnx")
onnx.checker.check_model(model)
ops = sorted({n.op_type for n in model.graph.node})
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
sess = ort.InferenceSession(d + "/model_qdq.onnx", so, providers=["CPUExecutionProvider"])
feeds = {"embeddings": np.load(d + "/embeddings.npy"), "attention_mask": np.load(d + "/attention_mask.npy")}
y = sess.run(None, feeds)[0]
ref = np.load(d + "/engine_quant.npy")
valid = np.load(d + "/tokens.npy") > 0
diff = np.abs(y - ref)[valid]
scale = np.abs(ref[valid]).max()
mx, mean = diff.max() / scale, diff.mean() / scale
fp = np.load(d + "/engine_fp32.npy")
qerr = np.abs(fp - ref)[valid].mean() / scale
print("ORT vs engine (quantized encoder, %d valid tokens): max %.3g, mean %.3g of max |y|; quantization itself "
      "moves the output by %.3g (mean); ops %s" % (valid.sum(), mx, mean, qerr, ", ".join(ops)))
ok = np.isfinite(y).all() and mx <= TOL_MAX and mean <= TOL_MEAN and mean < 0.01 * qerr
print("bert_export: %s" % ("PASS" if ok else "FAIL"))
sys.exit(0 if ok else 1)
