#!/usr/bin/env python3
"""ONNX auto_pad (SAME_UPPER / SAME_LOWER / VALID) on Conv, MaxPool and AveragePool.

Builds a small CIFAR-sized CNN whose convolutions and pools use auto_pad instead of explicit
pads, with strides and kernel sizes that make SAME padding asymmetric (the odd pixel goes to the
end for SAME_UPPER, to the beginning for SAME_LOWER), then checks:
  1. FP32 parity with ONNX Runtime (test_onnx_parity binary: max|engine - ort| / max|ort| <= 1e-4)
     for a batch of 3, with a symbolic and a static batch;
  2. with QD_BIN set: a 1-iteration W8A8 run on CIFAR calibration images exports a model_qdq.onnx
     with explicit pads and no auto_pad attribute, which ONNX Runtime loads and runs, and whose
     predictions agree with the FP32 model on most test images (W8A8 barely moves logits).

Usage: onnx_autopad_parity.py PARITY_BINARY   (env QD_BIN, QD_SRC_DIR, QD_BUILD_DIR from CTest)
Exit 77 (skip) when numpy, onnx or onnxruntime is missing.
"""
import glob
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ort_parity as P  # exits 77 without numpy, onnx or onnxruntime
from ort_parity import TensorProto, helper, np, numpy_helper, onnx

SRC = os.environ.get("QD_SRC_DIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(os.environ.get("QD_BUILD_DIR", "/tmp"), "onnx_autopad")


def build(symbolic_batch, rng):
    inits = []

    def w(name, shape, scale=None):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        s = scale if scale is not None else np.sqrt(2.0 / max(1, fan_in))
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * s).astype(np.float32), name))
        return name

    nodes = [
        # 32 -> 16 with k3 s2: SAME pads 1 pixel in total, at the end (UPPER)
        helper.make_node("Conv", ["x", w("W1", (8, 3, 3, 3)), w("B1", (8,), 0.05)], ["c1"], name="conv_same_upper",
                         auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        # 16 -> 16 with k2 s1: 1 pixel of padding, at the beginning (LOWER)
        helper.make_node("Conv", ["r1", w("W2", (8, 8, 2, 2)), w("B2", (8,), 0.05)], ["c2"], name="conv_same_lower",
                         auto_pad="SAME_LOWER"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        # 16 -> 8 with k4 s2: 2 pixels of padding, one on each side
        helper.make_node("Conv", ["r2", w("W3", (12, 8, 4, 4)), w("B3", (12,), 0.05)], ["c3"], name="conv_even",
                         auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
        # 8 -> 4: MaxPool k3 s2 SAME_UPPER (pad 1 at the end)
        helper.make_node("MaxPool", ["r3"], ["p1"], name="maxpool_same_upper", kernel_shape=[3, 3], strides=[2, 2],
                         auto_pad="SAME_UPPER"),
        # 4 -> 3: VALID conv k2
        helper.make_node("Conv", ["p1", w("W4", (16, 12, 2, 2)), w("B4", (16,), 0.05)], ["c4"], name="conv_valid",
                         auto_pad="VALID"),
        helper.make_node("Relu", ["c4"], ["r4"], name="relu4"),
        # 3 -> 2: AveragePool k2 s2 SAME_LOWER (pad 1 at the beginning; padding not counted)
        helper.make_node("AveragePool", ["r4"], ["p2"], name="avgpool_same_lower", kernel_shape=[2, 2],
                         strides=[2, 2], auto_pad="SAME_LOWER"),
        helper.make_node("GlobalAveragePool", ["p2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", w("Wfc", (10, 16), 0.3), w("Bfc", (10,), 0.05)], ["logits"], name="fc",
                         transB=1),
    ]
    batch = "N" if symbolic_batch else 3
    g = helper.make_graph(nodes, "autopad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 32, 32])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="onnx_autopad_parity")
    onnx.checker.check_model(m)
    return m


def export_check(model_path):
    """A 1-iteration W8A8 run with export; the exported model must carry explicit pads."""
    binp = os.environ.get("QD_BIN")
    if not binp or not os.path.exists(binp):
        print("export check skipped: QD_BIN not set")
        return 0
    out = os.path.join(OUT, "run")
    cfg = {
        "model": {"path": model_path, "type": "onnx"},
        "data": {"calib_path": os.path.join(SRC, "assets", "cifar10", "train-calib"),
                 "val_path": os.path.join(SRC, "assets", "cifar10", "test"), "preprocess": "cifar"},
        "quant": {"w_qconfig": {"bit": 8}, "a_qconfig": {"bit": 8}, "calibrate": 32, "act_calib_samples": 32,
                  "recon": {"iters": 1, "batch_size": 8}},
        "process": {"seed": 1005, "threads": 2},
        "device": {"type": "cpu"},
        "eval": {"enabled": False},
        "output": {"export_onnx": True, "plots": False},
    }
    cpath = os.path.join(OUT, "run.json")
    json.dump(cfg, open(cpath, "w"))
    r = subprocess.run([binp, "--config", cpath, "--out", out, "--quiet", "--progress", "never"], capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        print(f"FAIL export run (exit {r.returncode}): {r.stderr.strip()}")
        return 1
    q = onnx.load(os.path.join(out, "model_qdq.onnx"))
    fails = 0
    for n in q.graph.node:
        if n.op_type not in ("Conv", "MaxPool", "AveragePool"):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        ap = attrs.get("auto_pad", b"NOTSET")
        if ap not in (b"NOTSET", "NOTSET") or "pads" not in attrs:
            print(f"FAIL exported {n.op_type} '{n.name}': auto_pad {ap!r}, pads {attrs.get('pads')}")
            fails += 1
    # ORT must run the export; W8A8 keeps the FP32 model's predictions on nearly all images
    rng = np.random.default_rng(7)
    x = rng.standard_normal((64, 3, 32, 32)).astype(np.float32)
    yq = P.reference(os.path.join(out, "model_qdq.onnx"), x)
    yf = P.reference(model_path, x)
    agree = float(np.mean(np.argmax(yq, 1) == np.argmax(yf, 1)))
    rel = float(np.max(np.abs(yq - yf)) / max(1e-12, float(np.max(np.abs(yf)))))
    print(f"export: explicit pads on every Conv/pool; W8A8 vs FP32 in ORT: top-1 agreement {agree:.3f}, "
          f"max relative logit difference {rel:.3g}")
    if not (agree >= 0.9 and rel <= 0.2):
        print("FAIL export: the exported model does not follow the FP32 model")
        fails += 1
    return fails


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    os.makedirs(OUT, exist_ok=True)
    failed = 0
    for k, sym in enumerate((True, False)):
        rng = np.random.default_rng(2024 + k)
        m = build(sym, rng)
        name = "autopad_%s" % ("symbatch" if sym else "static")
        mpath = os.path.join(OUT, name + ".onnx")
        onnx.save(m, mpath)
        x = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)
        rc, _ = P.run_engine(binary, OUT, name, mpath, x, P.reference(mpath, x), -1)
        failed += rc != 0
        if sym:
            failed += export_check(mpath)
    print("PASS" if not failed else f"{failed} failure(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
