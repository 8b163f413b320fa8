#!/usr/bin/env python3
"""Writes the small ONNX files under tests/bad_inputs/onnx/ used by tests/unit/test_onnx.c.
Needs the python `onnx` package only. Re-run after changing a case; commit the outputs."""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "bad_inputs", "onnx")


def conv_model(w, name="tiny", dims=("N", 2, 4, 4), extra_nodes=(), out_name="y", ext=False):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None)
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv0", pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    last = "c"
    nodes = [conv]
    for n in extra_nodes:
        nodes.append(n)
    if not extra_nodes:
        nodes.append(helper.make_node("Relu", ["c"], [out_name], name="relu0"))
    g = helper.make_graph(nodes, name, [x], [y], [numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_onnx_bad_inputs")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)

    # unsupported op: LeakyRelu named my_leaky
    m = conv_model(w, extra_nodes=[helper.make_node("LeakyRelu", ["c"], ["y"], name="my_leaky", alpha=0.1)])
    onnx.save(m, os.path.join(OUT, "unsupported_op.onnx"))

    # NaN in the conv weight
    wn = w.copy()
    wn[1, 0, 2, 1] = np.nan
    onnx.save(conv_model(wn), os.path.join(OUT, "nan_weight.onnx"))

    # a symbolic spatial dimension
    onnx.save(conv_model(w, dims=("N", 2, "height", 4)), os.path.join(OUT, "symbolic_dim.onnx"))

    # external data: weight in ext_weight.bin at offset 16 (valid), and one pointing at a missing file
    for fname, loc in (("external_ok.onnx", "external_ok.bin"), ("external_missing.onnx", "no_such_file.bin")):
        m = conv_model(w)
        t = m.graph.initializer[0]
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", loc), ("offset", "16"), ("length", str(w.nbytes))):
            e = t.external_data.add()
            e.key, e.value = k, v
        onnx.save(m, os.path.join(OUT, fname))
    with open(os.path.join(OUT, "external_ok.bin"), "wb") as f:
        f.write(b"\0" * 16 + w.tobytes())
    # the expected weight values for the external-data test (first and last element)
    print("external weight first/last:", w.flat[0], w.flat[-1])


if __name__ == "__main__":
    main()
