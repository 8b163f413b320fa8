#!/usr/bin/env python3
"""FP32 parity of the engine with ONNX Runtime on the paper's ImageNet architectures, and on a
generated MobileNetV3-Small (squeeze-and-excitation, Hardswish; torch's opset-13 and opset-17 spellings).

The torchvision models are far too big to commit with weights, so tests/fixtures/onnx/ holds
weight-free skeletons (tools/export_onnx.py --skeleton 64: graph + initializer shapes, input
64x64). This script refills every float initializer from a seeded generator (He-normal weights,
small biases), runs ONNX Runtime on a batch of 2, and hands model, input and ORT logits to the C
test binary (test_onnx_parity), which checks the unit count (§8.1) and compares the engine's FP32
forward (CPU backend) to <= 1e-4 relative error. The committed ResNet-20 (real weights) runs too, and
generated one-layer transformer encoders on [N, T, F] (LayerNormalization, Gelu, masked Softmax).

Usage: onnx_parity.py PARITY_BINARY   (env QD_SRC_DIR, QD_BUILD_DIR from CTest)
Exit 77 (skip) when numpy, onnx or onnxruntime is missing.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ort_parity as P  # exits 77 without numpy, onnx or onnxruntime
from ort_parity import np, numpy_helper, onnx
import gen_small_models as G

SRC = os.environ.get("QD_SRC_DIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(os.environ.get("QD_BUILD_DIR", "/tmp"), "onnx_parity")

# (fixture, expected units per §8.1 / docs/units.md, input HxW)
CASES = [
    ("tests/fixtures/onnx/resnet18.skel.onnx", 10, 64),
    ("tests/fixtures/onnx/resnet50.skel.onnx", 18, 64),
    ("tests/fixtures/onnx/mobilenet_v2.skel.onnx", 20, 64),
    ("tests/fixtures/onnx/regnet_x_600mf.skel.onnx", 18, 64),
    ("tests/fixtures/onnx/regnet_x_3_2gf.skel.onnx", 27, 64),
    ("tests/fixtures/onnx/mnasnet1_0.skel.onnx", 20, 64),
    ("assets/models/resnet20_cifar10.onnx", 11, 32),
]


# Generated without weights to fill (tests/gen_small_models.py): (name, builder(path), expected units,
# input HxW). MobileNetV3-Small: stem + 11 inverted residual blocks (squeeze-and-excitation inside
# their unit; docs/units.md) + final 1x1 conv + two classifier layers = 15.
GENERATED = [
    ("mobilenet_v3_small_opset17", lambda p: G.mobilenet_v3_small(p, 64, opset=17), 15, 64),
    ("mobilenet_v3_small_opset13", lambda p: G.mobilenet_v3_small(p, 64, opset=13), 15, 64),
]


def fill(model, rng):
    for t in model.graph.initializer:
        if t.data_type != onnx.TensorProto.FLOAT or t.raw_data or t.float_data:
            continue
        dims = tuple(t.dims)
        if len(dims) == 4:    # conv [O, I/g, kh, kw]: He normal
            w = rng.normal(0.0, np.sqrt(2.0 / max(1, dims[1] * dims[2] * dims[3])), dims)
        elif len(dims) == 2:  # linear [O, I]
            w = rng.normal(0.0, np.sqrt(1.0 / max(1, dims[1])), dims)
        else:                 # biases
            w = rng.normal(0.0, 0.05, dims)
        t.CopyFrom(numpy_helper.from_array(w.astype(np.float32), t.name))


# Generated transformer layers on [N, T, F] (tests/gen_small_models.py transformer_model): LayerNormalization
# (opset 17), Gelu (opset 20), MatMul and Softmax with an additive key mask, which the reader fuses into the
# IR's masked softmax. (name, opset, mask value, padded keys, expected "LayerNormalization a, Gelu b, masked
# Softmax c" line). FP32 forward only (units -2): the quantizer plan does not cover MatMul on [N, T, F] yet.
GEN_CASES = [
    ("encoder_opset17", 17, -10000.0, 2, "LayerNormalization 3, Gelu 0, masked Softmax 1"),
    ("encoder_opset20", 20, -10000.0, 2, "LayerNormalization 3, Gelu 1, masked Softmax 1"),
    # HF's finfo(float32).min on every key: a fully padded row is softmax(x + min) (uniform), not NaN
    ("encoder_opset20_all_padded", 20, float(np.finfo(np.float32).min), 6,
     "LayerNormalization 3, Gelu 1, masked Softmax 1"),
]


def run_generated(binary):
    failed = 0
    for k, (name, opset, mask_value, pad, want) in enumerate(GEN_CASES):
        mpath = G.transformer_model(os.path.join(OUT, name + ".onnx"), opset, seed=31 + k, pad_keys=pad,
                                    mask_value=mask_value)
        rng = np.random.default_rng(2000 + k)
        x = (rng.standard_normal((3, 6, 16)) * 2).astype(np.float32)
        x[0, 0, :] *= 200  # large magnitudes through the LayerNorms
        ref = G.ort_logits(mpath, x).astype(np.float32)
        # the exporter writes the graph back at the default opset 13 (LayerNormalization and Gelu as the ops
        # of their definition, the masked softmax as Add + Softmax) and at the model's opset (native ops)
        for eop in (13, opset):
            ep = os.path.join(OUT, f"{name}.export{eop}.onnx")
            rc, out = P.run_engine(binary, OUT, name, mpath, x, ref, -2, (ep, eop))
            if rc == 77:
                return 77
            if rc != 0 or want not in out:
                print(f"FAIL {name} (exit {rc}; expected '{want}')")
                failed += 1
                continue
            m = onnx.load(ep)
            onnx.checker.check_model(m)
            ops = {n.op_type for n in m.graph.node}
            native = {"LayerNormalization"} | ({"Gelu"} if "Gelu 1" in want else set())
            if (eop >= 17) != ("LayerNormalization" in ops) or (eop >= 20 and not native <= ops):
                print(f"FAIL {name}: export at opset {eop} wrote {sorted(ops)}")
                failed += 1
            err = G.max_rel_err(G.ort_logits(ep, x), ref)
            print(f"{name}: export opset {eop} in ONNX Runtime vs the original: relative {err:.3g}")
            if not err <= 1e-4:
                print(f"FAIL {name}: exported model (opset {eop}) differs from the original by {err:.3g}")
                failed += 1
    return failed


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    os.makedirs(OUT, exist_ok=True)
    failed = 0
    todo = [(os.path.basename(rel).split(".")[0], lambda p, rel=rel: onnx.save(onnx.load(os.path.join(SRC, rel)), p),
             units, hw) for rel, units, hw in CASES] + GENERATED
    for k, (name, build, units, hw) in enumerate(todo):
        rng = np.random.default_rng(1005 + k)
        mpath = os.path.join(OUT, name + ".onnx")
        build(mpath)
        model = onnx.load(mpath)
        fill(model, rng)
        onnx.save(model, mpath)
        x = rng.standard_normal((2, 3, hw, hw)).astype(np.float32)
        ref = P.reference(mpath, x, P.session(mpath, optimize=True))
        rc, _ = P.run_engine(binary, OUT, name, mpath, x, ref, units)
        if rc == 77:
            print(f"SKIP {name}: parity binary skipped")
            return 77
        failed += rc != 0
    g = run_generated(binary)
    if g == 77:
        print("SKIP: parity binary skipped")
        return 77
    failed += g
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
