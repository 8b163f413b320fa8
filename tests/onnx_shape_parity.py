#!/usr/bin/env python3
"""Shape arithmetic on activations with a dynamic batch, as torch exports it.

The reader reads Shape of an activation whose non-batch dims are static as a real int64 vector
whose element 0 is the batch symbol, and folds the shape arithmetic around it. Checks FP32 parity
with ONNX Runtime (test_onnx_parity binary, relative error <= 1e-4) at batch sizes 2 and 3 of one
symbolic-batch model each:
  resize_slice   F.interpolate(x, size=(2*H, 2*W)): Shape -> Slice(2:4) -> Cast(float) -> Mul ->
                 Cast(int64), Shape -> Slice(0:2), Concat -> Resize sizes
  resize_shape15 the same with opset-15 Shape start/end instead of Slice
  view_nc        x.view(x.size(0), x.size(1), -1): Gather(0), Gather(1), Unsqueeze, Concat -> Reshape
  pad_shape      F.pad to a fixed 20x20: Sub(20, Shape[2:4]), ConstantOfShape(Shape(...)) zeros,
                 Concat -> Pad pads

Usage: onnx_shape_parity.py PARITY_BINARY   (env QD_BUILD_DIR from CTest)
Exit 77 (skip) when numpy, onnx or onnxruntime is missing.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ort_parity as P  # exits 77 without numpy, onnx or onnxruntime
from ort_parity import TensorProto, helper, np, numpy_helper, onnx

OUT = os.path.join(os.environ.get("QD_BUILD_DIR", "/tmp"), "onnx_shape")


def build(variant, rng):
    f32 = lambda a: a.astype(np.float32)
    i64 = lambda n, v: numpy_helper.from_array(np.array(v, np.int64), n)
    inits = [numpy_helper.from_array(f32(rng.standard_normal((4, 3, 3, 3)) * 0.4), "W1"),
             numpy_helper.from_array(f32(rng.standard_normal(4) * 0.05), "B1"),
             numpy_helper.from_array(f32(rng.standard_normal((10, 4)) * 0.3), "Wfc"),
             numpy_helper.from_array(f32(rng.standard_normal(10) * 0.05), "Bfc"),
             numpy_helper.from_array(np.array([2.0, 2.0], np.float32), "two2"),
             i64("zero", 0), i64("one", 1), i64("axes0", [0]), i64("minus1", [-1]),
             i64("s0", [0]), i64("s2", [2]), i64("e2", [2]), i64("e4", [4]), i64("hw20", [20, 20])]
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu")]  # [N, 4, 16, 16]
    opset = 13
    tail = "r2"
    if variant in ("resize_slice", "resize_shape15"):
        if variant == "resize_slice":
            nodes += [helper.make_node("Shape", ["r1"], ["shp"], name="shape"),
                      helper.make_node("Slice", ["shp", "s2", "e4", "axes0"], ["hw"], name="slice_hw"),
                      helper.make_node("Slice", ["shp", "s0", "e2", "axes0"], ["nc"], name="slice_nc")]
        else:
            opset = 15
            nodes += [helper.make_node("Shape", ["r1"], ["hw"], name="shape_hw", start=2),
                      helper.make_node("Shape", ["r1"], ["nc"], name="shape_nc", start=0, end=-2)]
        nodes += [helper.make_node("Cast", ["hw"], ["hwf"], name="cast_f", to=TensorProto.FLOAT),
                  helper.make_node("Mul", ["hwf", "two2"], ["hw2f"], name="times2"),
                  helper.make_node("Cast", ["hw2f"], ["hw2"], name="cast_i", to=TensorProto.INT64),
                  helper.make_node("Concat", ["nc", "hw2"], ["sizes"], name="concat_sizes", axis=0),
                  helper.make_node("Resize", ["r1", "", "", "sizes"], ["r2"], name="resize", mode="nearest")]
    elif variant == "view_nc":
        nodes += [helper.make_node("Shape", ["r1"], ["shp"], name="shape"),
                  helper.make_node("Gather", ["shp", "zero"], ["g0"], name="gather0", axis=0),
                  helper.make_node("Gather", ["shp", "one"], ["g1"], name="gather1", axis=0),
                  helper.make_node("Unsqueeze", ["g0", "axes0"], ["u0"], name="unsq0"),
                  helper.make_node("Unsqueeze", ["g1", "axes0"], ["u1"], name="unsq1"),
                  helper.make_node("Concat", ["u0", "u1", "minus1"], ["tgt"], name="concat", axis=0),
                  helper.make_node("Reshape", ["r1", "tgt"], ["v3"], name="view"),  # [N, 4, 256]
                  helper.make_node("Unsqueeze", ["v3", "minus1"], ["r2"], name="to4d")]  # [N, 4, 256, 1]
    elif variant == "pad_shape":
        nodes += [helper.make_node("Shape", ["r1"], ["shp"], name="shape"),
                  helper.make_node("Slice", ["shp", "s2", "e4", "axes0"], ["hw"], name="slice_hw"),
                  helper.make_node("Sub", ["hw20", "hw"], ["d"], name="missing"),
                  helper.make_node("Shape", ["d"], ["dn"], name="shape_d"),
                  helper.make_node("ConstantOfShape", ["dn"], ["z2"], name="zeros",
                                   value=numpy_helper.from_array(np.array([0], np.int64))),
                  helper.make_node("Concat", ["z2", "z2", "z2", "d"], ["pads"], name="concat_pads", axis=0),
                  helper.make_node("Pad", ["r1", "pads"], ["r2"], name="pad", mode="constant")]
    else:
        raise ValueError(variant)
    nodes += [helper.make_node("GlobalAveragePool", [tail], ["gap"], name="gap"),
              helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
              helper.make_node("Gemm", ["flat", "Wfc", "Bfc"], ["logits"], name="fc", transB=1)]
    g = helper.make_graph(nodes, variant, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="onnx_shape_parity")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    os.makedirs(OUT, exist_ok=True)
    failed = 0
    for k, variant in enumerate(("resize_slice", "resize_shape15", "view_nc", "pad_shape")):
        rng = np.random.default_rng(7 + k)
        mpath = os.path.join(OUT, variant + ".onnx")
        onnx.save(build(variant, rng), mpath)
        sess = P.session(mpath, quiet=True)
        for batch in (2, 3):
            name = "%s_b%d" % (variant, batch)
            x = rng.standard_normal((batch, 3, 16, 16)).astype(np.float32)
            rc, _ = P.run_engine(binary, OUT, name, mpath, x, P.reference(mpath, x, sess), -1)
            failed += rc != 0
    print("PASS" if not failed else f"{failed} failure(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
