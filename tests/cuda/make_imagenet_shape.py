#!/usr/bin/env python3
"""ImageNet-shape fixture for the CUDA end-to-end test (tests/cuda/cli_e2e.sh imagenet): the
committed ResNet-18 skeleton (tests/fixtures/onnx/resnet18.skel.onnx, weights stripped) refilled
from the seeded generator of tests/onnx_parity.py, its input resized to HWxHW (the net is fully
convolutional + global pool), and synthetic data as preprocessed .npy arrays.

  make_imagenet_shape.py OUTDIR [--hw 224] [--calib 64] [--val 64] [--seed 0] [--width-div 1]

Writes OUTDIR/model.onnx, calib.npy [N,3,HW,HW] float32, val.npy, val_labels.npy (int64, labels
= the FP32 model's own top-1 on half the images and random on the rest, so top-1 is neither 0
nor 100 and the quantized accuracy can move). Exit 0, 1 on error, 77 when numpy/onnx are missing.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
try:
    import numpy as np
    import onnx
    sys.path.insert(0, os.path.join(SRC, "tests"))
    from onnx_parity import fill  # the seeded He-normal refill the parity test uses
except ImportError as e:  # pragma: no cover - depends on the environment
    print(f"make_imagenet_shape: skipped: {e}")
    sys.exit(77)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--hw", type=int, default=224)
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--val", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width-div", type=int, default=1,
                    help="divide every channel count (dims that are multiples of 64) by this: the same topology, "
                         "cheaper (the CPU stand-in of bench/gpu_check.sh --dry)")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    m = onnx.load(os.path.join(SRC, "tests/fixtures/onnx/resnet18.skel.onnx"))
    if a.width_div > 1:  # ResNet-18's channel counts are 64..512; 3 (RGB), 1000 (classes), kernels stay
        for t in m.graph.initializer:
            if t.data_type == onnx.TensorProto.FLOAT:
                dims = [d // a.width_div if d % 64 == 0 else d for d in t.dims]
                del t.dims[:]
                t.dims.extend(dims)
    rng = np.random.default_rng(a.seed)
    fill(m, rng)
    for inp in m.graph.input:
        d = inp.type.tensor_type.shape.dim
        if len(d) == 4:
            d[2].dim_value = a.hw
            d[3].dim_value = a.hw
    del m.graph.value_info[:]
    m.doc_string = f"ResNet-18 skeleton refilled with seed {a.seed}, input {a.hw}x{a.hw} (tests/cuda/make_imagenet_shape.py)"
    onnx.save(m, os.path.join(a.out, "model.onnx"))
    shape = (3, a.hw, a.hw)
    calib = rng.standard_normal((a.calib,) + shape, dtype=np.float32)
    val = rng.standard_normal((a.val,) + shape, dtype=np.float32)
    np.save(os.path.join(a.out, "calib.npy"), calib)
    np.save(os.path.join(a.out, "val.npy"), val)
    labels = rng.integers(0, 1000, size=a.val).astype(np.int64)
    try:  # half the labels = the FP32 model's prediction (ONNX Runtime), when it is installed
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        s = ort.InferenceSession(os.path.join(a.out, "model.onnx"), so, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        pred = np.concatenate([s.run(None, {name: val[i:i + 16]})[0].argmax(1) for i in range(0, a.val, 16)])
        labels[::2] = pred[::2]
    except ImportError:
        pass
    np.save(os.path.join(a.out, "val_labels.npy"), labels)
    print(f"make_imagenet_shape: {a.out}: ResNet-18 {a.hw}x{a.hw}, {a.calib} calibration / {a.val} validation arrays")
    return 0


if __name__ == "__main__":
    sys.exit(main())
