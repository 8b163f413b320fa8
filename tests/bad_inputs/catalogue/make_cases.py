#!/usr/bin/env python3
"""tests/bad_inputs/catalogue/make_cases.py: regenerate the committed bad-input files used by
tests/bad_inputs_test.py. Run from anywhere: python3 tests/bad_inputs/catalogue/make_cases.py
(needs numpy and onnx; tests only). Every model is tiny (a few KB) and CIFAR-shaped unless the
case is about the shape."""
import os

import numpy as np
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
F = TensorProto.FLOAT


def tiny_cnn(name, hw=32, batch="N", w_fill=None, extra_node=None, in_shape=None):
    """Conv(3->8) BN ReLU Conv(8->8) ReLU GAP Flatten Gemm(8->10): one CIFAR-like classifier."""
    rng = np.random.default_rng(11)
    W1 = (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    if w_fill is not None:
        W1.flat[5] = w_fill
    inits = [
        numpy_helper.from_array(W1, "W1"),
        numpy_helper.from_array(np.zeros(8, np.float32), "B1"),
        numpy_helper.from_array(np.ones(8, np.float32), "bn_s"),
        numpy_helper.from_array(np.zeros(8, np.float32), "bn_b"),
        numpy_helper.from_array(np.zeros(8, np.float32), "bn_m"),
        numpy_helper.from_array(np.ones(8, np.float32), "bn_v"),
        numpy_helper.from_array((rng.standard_normal((8, 8, 3, 3)) * 0.2).astype(np.float32), "W2"),
        numpy_helper.from_array(np.zeros(8, np.float32), "B2"),
        numpy_helper.from_array((rng.standard_normal((10, 8)) * 0.3).astype(np.float32), "FW"),
        numpy_helper.from_array(np.zeros(10, np.float32), "FB"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["b1"], name="bn1"),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "W2", "B2"], ["c2"], name="conv2", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
    ]
    last = "r2"
    if extra_node is not None:
        nodes.append(helper.make_node(extra_node, [last], ["odd"], name="odd_op"))
        last = "odd"
    nodes += [
        helper.make_node("GlobalAveragePool", [last], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "FW", "FB"], ["logits"], name="fc", transB=1),
    ]
    shape = in_shape if in_shape is not None else [batch, 3, hw, hw]
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", F, shape)],
                          [helper.make_tensor_value_info("logits", F, [batch, 10])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="qdrop-bad-inputs")
    m.ir_version = 7
    path = os.path.join(HERE, name + ".onnx")
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
    return path


def main():
    good = tiny_cnn("tiny_cnn32")                                   # valid base model
    tiny_cnn("unsupported_op", extra_node="Sin")                    # op outside the supported set
    tiny_cnn("dynamic_hw", in_shape=["N", 3, "H", "W"])             # symbolic non-batch dims
    tiny_cnn("nan_weight", w_fill=float("nan"))
    tiny_cnn("inf_weight", w_fill=float("inf"))
    tiny_cnn("input64", hw=64)                                      # 64x64 model vs 32x32 CIFAR
    raw = open(good, "rb").read()
    with open(os.path.join(HERE, "truncated.onnx"), "wb") as f:
        f.write(raw[: len(raw) * 2 // 3])
    with open(os.path.join(HERE, "random_bytes.onnx"), "wb") as f:
        f.write(np.random.default_rng(99).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    # .npy whose header is not a dict literal
    with open(os.path.join(HERE, "malformed.npy"), "wb") as f:
        hdr = b"[1, 2, 3]" + b" " * 53 + b"\n"
        f.write(b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr + b"\0" * 16)
    # a .npy calibration tensor with the wrong per-sample shape (3x16x16 vs the model's 3x32x32)
    np.save(os.path.join(HERE, "calib_16x16.npy"), np.zeros((4, 3, 16, 16), np.float32))
    # a JPEG cut in half, placed in a calibration folder by the test
    src = os.path.join(HERE, "..", "..", "..", "assets", "cifar10", "train-calib", "cat", "0003.jpg")
    data = open(src, "rb").read()
    with open(os.path.join(HERE, "corrupt.jpg"), "wb") as f:
        f.write(data[: len(data) // 2])
    with open(os.path.join(HERE, "malformed.json"), "w") as f:
        f.write('{\n  "quant": {\n    "recon": {"iters": 2,, "batch_size": 8}\n  }\n}\n')
    for n in sorted(os.listdir(HERE)):
        print("%-22s %6d bytes" % (n, os.path.getsize(os.path.join(HERE, n))))


if __name__ == "__main__":
    main()
