#!/usr/bin/env python3
"""x.view(x.size(0), -1) as torch exports it: Shape -> Gather(0) -> Unsqueeze -> Concat([-1]) -> Reshape.

The reader follows the batch size as a symbol through that shape arithmetic (the Reshape target
becomes [0, -1]). Checks FP32 parity with ONNX Runtime (test_onnx_parity binary, relative error
<= 1e-4) on a small CNN written three ways: opset 13 (Unsqueeze axes as an input), opset 11
(axes as an attribute, plus a Cast to int64 as some exporters add) and opset 15 (Shape with
start=0, end=1, no Gather), each with a symbolic and a static batch.

Usage: onnx_view_parity.py PARITY_BINARY   (env QD_BUILD_DIR from CTest)
Exit 77 (skip) when numpy, onnx or onnxruntime is missing.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ort_parity as P  # exits 77 without numpy, onnx or onnxruntime
from ort_parity import TensorProto, helper, np, numpy_helper, onnx

OUT = os.path.join(os.environ.get("QD_BUILD_DIR", "/tmp"), "onnx_view")


def build(variant, symbolic_batch, rng):
    f32 = lambda a: a.astype(np.float32)
    i64 = lambda n, v: numpy_helper.from_array(np.array(v, np.int64), n)
    inits = [numpy_helper.from_array(f32(rng.standard_normal((4, 3, 3, 3)) * 0.4), "W1"),
             numpy_helper.from_array(f32(rng.standard_normal(4) * 0.05), "B1"),
             numpy_helper.from_array(f32(rng.standard_normal((10, 256)) * 0.1), "Wfc"),
             numpy_helper.from_array(f32(rng.standard_normal(10) * 0.05), "Bfc"),
             i64("zero", 0), i64("minus1", [-1]), i64("axes0", [0])]
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], name="conv", pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
             helper.make_node("MaxPool", ["r1"], ["p1"], name="pool", kernel_shape=[2, 2], strides=[2, 2])]
    if variant == "opset15_shape_slice":
        opset = 15
        nodes += [helper.make_node("Shape", ["p1"], ["n1"], name="shape", start=0, end=1)]
    else:
        opset = 13 if variant == "opset13" else 11
        nodes += [helper.make_node("Shape", ["p1"], ["shp"], name="shape"),
                  helper.make_node("Gather", ["shp", "zero"], ["n0"], name="gather", axis=0)]
        if opset >= 13:
            nodes += [helper.make_node("Unsqueeze", ["n0", "axes0"], ["n1"], name="unsqueeze")]
        else:
            nodes += [helper.make_node("Unsqueeze", ["n0"], ["n1u"], name="unsqueeze", axes=[0]),
                      helper.make_node("Cast", ["n1u"], ["n1"], name="cast", to=TensorProto.INT64)]
    nodes += [helper.make_node("Concat", ["n1", "minus1"], ["target"], name="concat", axis=0),
              helper.make_node("Reshape", ["p1", "target"], ["flat"], name="view"),
              helper.make_node("Gemm", ["flat", "Wfc", "Bfc"], ["logits"], name="fc", transB=1)]
    batch = "N" if symbolic_batch else 2
    g = helper.make_graph(nodes, "view", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 32, 32])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="onnx_view_parity")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    os.makedirs(OUT, exist_ok=True)
    failed = 0
    k = 0
    for variant in ("opset13", "opset11_cast", "opset15_shape_slice"):
        for sym in (True, False):
            rng = np.random.default_rng(99 + k)
            k += 1
            name = "%s_%s" % (variant, "symbatch" if sym else "static")
            mpath = os.path.join(OUT, name + ".onnx")
            onnx.save(build(variant, sym, rng), mpath)
            x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
            # 2 units: conv (+relu, pool glue) and the classifier
            rc, _ = P.run_engine(binary, OUT, name, mpath, x, P.reference(mpath, x), 2)
            failed += rc != 0
    print("PASS" if not failed else f"{failed} failure(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
