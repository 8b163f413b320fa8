"""tests/gen_small_models.py: tiny generated ONNX models and .npy data for the CLI tests
(tests/classifier_forms_test.py, tests/op_coverage_test.py, tests/eval_cli_test.py).

Every model reads NCHW float32 images [N, 3, 8, 8] (.npy, data.preprocess "none") and ends in a
10-class classifier. Weights come from a seeded generator, so a test builds the same model every
time without committing binaries. Needs numpy and onnx; onnxruntime for the ORT comparisons.
"""
import json
import os
import subprocess

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

C, H, W, NCLS = 3, 8, 8, 10


def write_data(d, n_calib=64, n_val=48, seed=7):
    """calib.npy, val.npy, val_labels.npy under d; returns their paths."""
    rng = np.random.default_rng(seed)
    os.makedirs(d, exist_ok=True)
    p = {k: os.path.join(d, k + ".npy") for k in ("calib", "val", "val_labels")}
    np.save(p["calib"], rng.standard_normal((n_calib, C, H, W)).astype(np.float32))
    np.save(p["val"], rng.standard_normal((n_val, C, H, W)).astype(np.float32))
    np.save(p["val_labels"], rng.integers(0, NCLS, n_val).astype(np.int64))
    return p


def config(model, data, out, iters=1, **extra):
    """A small CPU run on the generated data; extra: {"quant": {...}} style overrides merged in."""
    c = {
        "model": {"path": model},
        "data": {"calib_path": data["calib"], "val_path": data["val"], "val_labels_path": data["val_labels"],
                 "preprocess": "none"},
        "quant": {"w_qconfig": {"bit": 4}, "a_qconfig": {"bit": 4}, "calibrate": 64, "act_calib_samples": 32,
                  "recon": {"iters": iters, "batch_size": 16, "log_every": 1000}},
        "process": {"seed": 1005, "threads": 1},
        "device": {"type": "cpu"},
        "eval": {"batch_size": 16},
        "output": {"dir": out, "plots": False, "logits": True},
    }
    for sec, kv in extra.items():
        c.setdefault(sec, {})
        for k, v in kv.items():
            if isinstance(v, dict):
                c[sec].setdefault(k, {}).update(v)
            else:
                c[sec][k] = v
    return c


def write_config(path, cfg):
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)
    return path


def run(binary, *args, cwd=None):
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=cwd)


def tensor(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def save(nodes, inits, path, out_shape=(None, NCLS), opset=13, in_name="input", out_name="logits", in_shape=None):
    g = helper.make_graph(
        nodes, os.path.basename(path).split(".")[0],
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, in_shape or ["N", C, H, W])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [out_shape[0] or "N", *out_shape[1:]])],
        inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="qdrop-tests")
    m.ir_version = 7
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return path


def linear(form, name, x, y, w_oi, b):
    """One fully connected layer y = x W^T + b written as `form`:
    gemm_t1 (Gemm transB=1, W [out, in]), gemm_t0 (Gemm transB=0, W^T [in, out]),
    matmul (MatMul with W^T [in, out], then Add of the bias). Same node name and initializer names
    in every form. Returns (nodes, initializers)."""
    wn, bn = name + ".weight", name + ".bias"
    if form == "gemm_t1":
        return [helper.make_node("Gemm", [x, wn, bn], [y], name=name, transB=1)], [tensor(wn, w_oi), tensor(bn, b)]
    if form == "gemm_t0":
        return [helper.make_node("Gemm", [x, wn, bn], [y], name=name, transB=0)], \
            [tensor(wn, np.ascontiguousarray(w_oi.T)), tensor(bn, b)]
    if form == "matmul":
        return [helper.make_node("MatMul", [x, wn], [name + "_mm"], name=name),
                helper.make_node("Add", [name + "_mm", bn], [y], name=name + "_bias")], \
            [tensor(wn, np.ascontiguousarray(w_oi.T)), tensor(bn, b)]
    raise ValueError(form)


def classifier_model(path, form, seed=11):
    """Conv(3->4, 3x3) + Relu -> Flatten -> fc1 (256->16) + Relu -> fc2 (16->10), both FC layers in
    `form`; the weights depend only on the seed."""
    rng = np.random.default_rng(seed)
    cw = (rng.standard_normal((4, C, 3, 3)) * 0.3).astype(np.float32)
    cb = (rng.standard_normal(4) * 0.1).astype(np.float32)
    w1 = (rng.standard_normal((16, 4 * H * W)) / 16).astype(np.float32)
    b1 = (rng.standard_normal(16) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((NCLS, 16)) / 4).astype(np.float32)
    b2 = (rng.standard_normal(NCLS) * 0.1).astype(np.float32)
    nodes = [helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flatten")]
    inits = [tensor("conv.weight", cw), tensor("conv.bias", cb)]
    n1, i1 = linear(form, "fc1", "f", "h", w1, b1)
    n2, i2 = linear(form, "fc2", "hr", "logits", w2, b2)
    nodes += n1 + [helper.make_node("Relu", ["h"], ["hr"], name="relu_fc1")] + n2
    return save(nodes, inits + i1 + i2, path)


def ort_logits(model_path, x, disable_opt=True):
    import onnxruntime as ort
    so = ort.SessionOptions()
    if disable_opt:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    if inp.shape and inp.shape[0] == 1:  # a fixed batch of 1 (mnist-8 style): one image at a time
        return np.concatenate([sess.run(None, {inp.name: x[i:i + 1]})[0] for i in range(len(x))])
    return sess.run(None, {inp.name: x})[0]


def max_rel_err(a, ref):
    """max |a - ref| / max |ref| (the FP32 parity measure of tests/onnx_parity.py)."""
    return float(np.max(np.abs(a.astype(np.float64) - ref)) / max(1e-30, float(np.max(np.abs(ref)))))


# torchvision mobilenet_v3_small's inverted residual settings:
# (kernel, expanded channels, out channels, squeeze-and-excitation, activation, stride)
MBV3_SMALL = [(3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
              (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
              (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1), (5, 288, 96, True, "HS", 2),
              (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1)]


def mobilenet_v3_small(path, hw=64, opset=17, seed=3, ncls=1000):
    """torchvision's MobileNetV3-Small as torch.onnx.export writes it in eval mode (BN folded into the
    convs, dynamic batch), with He-normal random weights: stem 3x3/2 + Hardswish, 11 inverted residual
    blocks (expand 1x1 when expanded != in, depthwise kxk, SE = GlobalAveragePool -> 1x1 conv -> Relu
    -> 1x1 conv -> HardSigmoid -> Mul(gate, x), project 1x1, residual when stride 1 and in == out),
    1x1 conv to 576 + Hardswish, GlobalAveragePool, Flatten, Linear 576->1024 + Hardswish, Linear.
    Below opset 14 Hardswish is x * HardSigmoid(x), as torch writes it there."""
    rng = np.random.default_rng(seed)
    nodes, inits, cnt = [], [], [0]

    def nm(base):
        cnt[0] += 1
        return f"{base}_{cnt[0]}"

    def conv(x, cin, cout, k, stride=1, group=1):
        n = nm("/features/Conv")
        w = rng.normal(0.0, np.sqrt(2.0 / (cin // group * k * k)), (cout, cin // group, k, k)).astype(np.float32)
        inits.extend([tensor(n + ".weight", w), tensor(n + ".bias", (rng.standard_normal(cout) * 0.05).astype(np.float32))])
        nodes.append(helper.make_node("Conv", [x, n + ".weight", n + ".bias"], [n + "_out"], name=n, group=group,
                                      kernel_shape=[k, k], strides=[stride, stride], pads=[(k - 1) // 2] * 4))
        return n + "_out"

    def act(x, kind):
        n = nm("/features/" + ("Relu" if kind == "RE" else "HardSwish"))
        if kind == "RE":
            nodes.append(helper.make_node("Relu", [x], [n + "_out"], name=n))
        elif opset >= 14:
            nodes.append(helper.make_node("HardSwish", [x], [n + "_out"], name=n))
        else:
            nodes.append(helper.make_node("HardSigmoid", [x], [n + "_hs"], name=n + "_HardSigmoid", alpha=1.0 / 6))
            nodes.append(helper.make_node("Mul", [x, n + "_hs"], [n + "_out"], name=n))
        return n + "_out"

    def se(x, ch):
        sq = ((ch // 4 + 4) // 8) * 8  # torchvision _make_divisible(ch // 4, 8)
        sq = max(sq, 8)
        n = nm("/se")
        nodes.append(helper.make_node("GlobalAveragePool", [x], [n + "_pool"], name=n + "_avgpool"))
        h = act(conv(n + "_pool", ch, sq, 1), "RE")
        e = conv(h, sq, ch, 1)
        nodes.append(helper.make_node("HardSigmoid", [e], [n + "_gate"], name=n + "_hardsigmoid", alpha=1.0 / 6))
        nodes.append(helper.make_node("Mul", [n + "_gate", x], [n + "_out"], name=n + "_mul"))
        return n + "_out"

    x = act(conv("input", 3, 16, 3, 2), "HS")
    cin = 16
    for k, exp, cout, use_se, a, stride in MBV3_SMALL:
        y = x
        if exp != cin:
            y = act(conv(y, cin, exp, 1), a)
        y = act(conv(y, exp, exp, k, stride, group=exp), a)
        if use_se:
            y = se(y, exp)
        y = conv(y, exp, cout, 1)
        if stride == 1 and cin == cout:
            n = nm("/features/Add")
            nodes.append(helper.make_node("Add", [x, y], [n + "_out"], name=n))
            y = n + "_out"
        x, cin = y, cout
    x = act(conv(x, cin, 576, 1), "HS")
    nodes += [helper.make_node("GlobalAveragePool", [x], ["pooled"], name="/avgpool/GlobalAveragePool"),
              helper.make_node("Flatten", ["pooled"], ["flat"], name="/Flatten")]
    w1 = rng.normal(0.0, np.sqrt(1.0 / 576), (1024, 576)).astype(np.float32)
    w2 = rng.normal(0.0, np.sqrt(1.0 / 1024), (ncls, 1024)).astype(np.float32)
    inits += [tensor("classifier.0.weight", w1), tensor("classifier.0.bias", np.zeros(1024, np.float32)),
              tensor("classifier.3.weight", w2), tensor("classifier.3.bias", np.zeros(ncls, np.float32))]
    nodes.append(helper.make_node("Gemm", ["flat", "classifier.0.weight", "classifier.0.bias"], ["h"],
                                  name="/classifier/classifier.0/Gemm", transB=1))
    h = act("h", "HS")
    nodes.append(helper.make_node("Gemm", [h, "classifier.3.weight", "classifier.3.bias"], ["logits"],
                                  name="/classifier/classifier.3/Gemm", transB=1))
    return save(nodes, inits, path, out_shape=(None, ncls), opset=opset, in_shape=["N", 3, hw, hw])


def transformer_model(path, opset, seed=23, T=6, F=16, FF=32, pad_keys=2, mask_value=-10000.0):
    """One post-LN encoder layer on [N, T, F] (single head), weights from the seed:
    LayerNormalization -> q, k, v = MatMul(h, W*) -> scores = MatMul(q, k^T) * 1/sqrt(F)
    -> Add(scores, mask) -> Softmax(axis -1) -> MatMul(probs, v) -> MatMul(Wo) -> + h
    -> LayerNormalization -> MatMul(W1) -> Gelu (opset >= 20; Relu otherwise) -> MatMul(W2) -> + x1
    -> LayerNormalization (axis 1, over [T, F], without B). The mask is a constant [1, 1, T]: 0 for
    the first T - pad_keys keys, mask_value for the padded ones (HF's additive key mask).
    LayerNormalization needs opset >= 17, Gelu opset >= 20."""
    rng = np.random.default_rng(seed)
    f32 = lambda a: np.asarray(a, np.float32)
    w = lambda *s: f32(rng.standard_normal(s) / np.sqrt(s[0]))
    mask = np.zeros((1, 1, T), np.float32)
    mask[..., T - pad_keys:] = mask_value
    inits = [tensor("ln0.g", f32(1 + 0.1 * rng.standard_normal(F))), tensor("ln0.b", f32(0.1 * rng.standard_normal(F))),
             tensor("wq", w(F, F)), tensor("wk", w(F, F)), tensor("wv", w(F, F)), tensor("wo", w(F, F)),
             tensor("scale", f32(1.0 / np.sqrt(F))), tensor("mask", mask),
             tensor("ln1.g", f32(1 + 0.1 * rng.standard_normal(F))), tensor("ln1.b", f32(0.1 * rng.standard_normal(F))),
             tensor("w1", w(F, FF)), tensor("w2", w(FF, F)),
             tensor("ln2.g", f32(1 + 0.1 * rng.standard_normal((T, F))))]
    act = "Gelu" if opset >= 20 else "Relu"
    nodes = [helper.make_node("LayerNormalization", ["input", "ln0.g", "ln0.b"], ["h"], name="ln0", axis=-1, epsilon=1e-5),
             helper.make_node("MatMul", ["h", "wq"], ["q"], name="q"),
             helper.make_node("MatMul", ["h", "wk"], ["k"], name="k"),
             helper.make_node("MatMul", ["h", "wv"], ["v"], name="v"),
             helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["s0"], name="qk"),
             helper.make_node("Mul", ["s0", "scale"], ["s"], name="scale_scores"),
             helper.make_node("Add", ["s", "mask"], ["sm"], name="add_mask"),
             helper.make_node("Softmax", ["sm"], ["p"], name="softmax", axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["ctx"], name="pv"),
             helper.make_node("MatMul", ["ctx", "wo"], ["ao"], name="o"),
             helper.make_node("Add", ["ao", "h"], ["r1"], name="res1"),
             helper.make_node("LayerNormalization", ["r1", "ln1.g", "ln1.b"], ["x1"], name="ln1", epsilon=1e-12),
             helper.make_node("MatMul", ["x1", "w1"], ["f1"], name="ffn1"),
             helper.make_node(act, ["f1"], ["g"], name="act"),
             helper.make_node("MatMul", ["g", "w2"], ["f2"], name="ffn2"),
             helper.make_node("Add", ["f2", "x1"], ["r2"], name="res2"),
             helper.make_node("LayerNormalization", ["r2", "ln2.g"], ["logits"], name="ln2", axis=1, epsilon=1e-5)]
    return save(nodes, inits, path, out_shape=(None, T, F), opset=opset, in_shape=["N", T, F])
