#!/usr/bin/env python3
"""tests/op_coverage_test.py: whatever --inspect / --dry-run accept, a run reconstructs and exports.

One tiny generated model per op the ONNX reader accepts (its op table in src/onnx/onnx_reader.c,
plus the constant-folded shape ops and the layer layouts), each in a realistic position inside a
small CNN classifier ([N, 3, 8, 8] -> 10 classes). For every model:
  1. `--inspect` and `--dry-run`;
  2. a real run: 1 iteration per unit, W4A4 QDrop, export and output.logits on;
  3. the rule: when --dry-run exits 0 the run must exit 0 with model_qdq.onnx, encodings.json and
     both logits files written; and when --dry-run fails, the run must fail with the SAME exit code
     and the SAME one-line message (the plan step names the reason, nothing fails later);
     --inspect may not accept less than --dry-run;
  4. for the runs that succeed: the engine's FP32 logits match ONNX Runtime on the original model
     (max relative error <= 1e-4), and the exported QDQ model in ONNX Runtime (optimizations
     disabled) gives the engine's quantized predictions (>= 95% same argmax: a value within a
     rounding step of a grid tie may flip, docs/export.md §6);
  5. each model's expected outcome (run / rejected with a given message) is part of the case, so
     the rule cannot hold vacuously.
Exit 0 pass, 1 fail, 77 without numpy/onnx/onnxruntime or the binary.
Usage: QD_BIN=build/qdrop-gpu python3 tests/op_coverage_test.py [-k SUBSTRING]
"""
import argparse
import concurrent.futures
import os
import shutil
import sys

try:
    import numpy as np
    import onnxruntime  # noqa: F401
    from onnx import helper
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gen_small_models as G
    import export_ort_check as XC  # exits 77 itself without onnx/onnxruntime/numpy/Pillow
except ImportError as e:
    print(f"SKIP: {e}")
    sys.exit(77)

BIN = os.environ.get("QD_BIN") or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build",
                                                "qdrop-gpu")
WORK = os.path.join(os.environ.get("QD_BUILD_DIR", "/tmp"), "op_coverage")
N = helper.make_node
T = G.tensor
rng = np.random.default_rng(2024)


def rnd(*shape, s=0.3):
    return (rng.standard_normal(shape) * s).astype(np.float32)


def i64(*v):
    return np.array(v, dtype=np.int64)


def conv(name, x, y, cin, cout, k=3, pad=1, group=1, stride=1):
    """Conv node + its initializers."""
    return [N("Conv", [x, name + ".w", name + ".b"], [y], name=name, pads=[pad] * 4, group=group,
              strides=[stride, stride], kernel_shape=[k, k])], \
        [T(name + ".w", rnd(cout, cin // group, k, k)), T(name + ".b", rnd(cout, s=0.1))]


def head(x, feat, out="logits"):
    """Flatten -> Gemm(feat -> 10)."""
    return [N("Flatten", [x], ["flat"], name="flatten"),
            N("Gemm", ["flat", "fc.w", "fc.b"], [out], name="fc", transB=1)], \
        [T("fc.w", rnd(G.NCLS, feat, s=1.0 / np.sqrt(feat))), T("fc.b", rnd(G.NCLS, s=0.1))]


def model(name, body, inits, x, feat, out_shape=(None, G.NCLS), tail=True, opset=13):
    """stem conv(3->4)+relu -> body (reads 'a', writes x) -> head on x ([N, feat] after Flatten)."""
    n0, i0 = conv("stem", "input", "s", 3, 4)
    nodes = n0 + [N("Relu", ["s"], ["a"], name="stem_relu")] + body
    all_inits = i0 + inits
    if tail:
        nh, ih = head(x, feat)
        nodes += nh
        all_inits += ih
    return lambda path: G.save(nodes, all_inits, path, out_shape=out_shape, opset=opset)


ANY = "any outcome"  # the rule is checked, the outcome itself is not part of the case


def cases():
    c = {}
    F = 4 * 8 * 8
    # layers
    c["Conv"] = (model("Conv", *conv("c1", "a", "b", 4, 4), "b", F), None)
    n1, i1 = conv("dw", "a", "b", 4, 4, group=4)
    c["Conv_depthwise"] = (model("dw", n1, i1, "b", F), None)
    n1, i1 = conv("s2", "a", "b", 4, 4, stride=2)
    c["Conv_stride2"] = (model("s2", n1, i1, "b", 4 * 4 * 4), None)
    for form in ("gemm_t1", "gemm_t0", "matmul"):
        c["Linear_" + form] = (lambda p, f=form: G.classifier_model(p, f), None)
    mm = [N("Flatten", ["a"], ["f0"], name="fl0"), N("MatMul", ["f0", "mm.w"], ["logits"], name="mm")]
    c["MatMul_nobias"] = (model("mmnb", mm, [T("mm.w", rnd(F, G.NCLS, s=0.05))], None, None, tail=False), None)
    # MatMul on a rank-3 activation: no [out, in] form, rejected by the plan with the reason
    r3 = [N("Reshape", ["a", "shp"], ["r3"], name="to3d"), N("MatMul", ["r3", "mm.w"], ["m3"], name="mm3"),
          N("ReduceMean", ["m3"], ["logits"], name="rm", axes=[1], keepdims=0)]
    c["MatMul_rank3"] = (model("mm3", r3, [T("shp", i64(0, 4, 64)), T("mm.w", rnd(64, G.NCLS, s=0.1))], None, None,
                               tail=False),
                         "weight 'mm.w' has its output channel on axis 1; only Conv, Gemm and MatMul on a 2-D")
    # element-wise
    n1, i1 = conv("c1", "a", "b", 4, 4)
    res = n1 + [N("Add", ["a", "b"], ["s2"], name="res_add"), N("Relu", ["s2"], ["o"], name="res_relu")]
    c["Add_residual"] = (model("res", res, i1, "o", F), None)
    for op in ("Add", "Sub", "Mul", "Div"):
        k = rnd(1, 4, 1, 1) + (2.0 if op == "Div" else 0.0)
        body = [N(op, ["a", "k"], ["b"], name=op.lower())]
        c[op + "_const"] = (model(op, body, [T("k", k)], "b", F), None)
    silu = [N("Sigmoid", ["a"], ["sg"], name="sig"), N("Mul", ["a", "sg"], ["b"], name="silu")]
    c["Mul_activations"] = (model("silu", silu, [], "b", F), None)
    n1, i1 = conv("c1", "a", "b", 4, 4)
    c["Clip"] = (model("clip", n1 + [N("Clip", ["b", "lo", "hi"], ["o"], name="clip")],
                       i1 + [T("lo", np.float32(0)), T("hi", np.float32(6))], "o", F), None)
    c["Sigmoid"] = (model("sig", n1 + [N("Sigmoid", ["b"], ["o"], name="sig")], i1, "o", F), None)
    c["Relu"] = (model("relu", n1 + [N("Relu", ["b"], ["o"], name="relu")], i1, "o", F), None)
    bn = [T("bn.g", rnd(4) + 1), T("bn.b", rnd(4)), T("bn.m", rnd(4)), T("bn.v", np.abs(rnd(4)) + 0.5)]
    c["BatchNormalization_folded"] = (model("bnf", n1 + [N("BatchNormalization", ["b", "bn.g", "bn.b", "bn.m", "bn.v"],
                                                           ["o"], name="bn")], i1 + bn, "o", F), None)
    c["BatchNormalization_unfolded"] = (model("bnu", [N("BatchNormalization", ["a", "bn.g", "bn.b", "bn.m", "bn.v"],
                                                        ["o"], name="bn")], bn, "o", F), None)
    # pooling / reductions
    c["MaxPool"] = (model("mp", [N("MaxPool", ["a"], ["o"], name="mp", kernel_shape=[2, 2], strides=[2, 2])], [], "o",
                          4 * 4 * 4), None)
    c["AveragePool"] = (model("ap", [N("AveragePool", ["a"], ["o"], name="ap", kernel_shape=[3, 3], strides=[1, 1],
                                       pads=[1, 1, 1, 1], count_include_pad=1)], [], "o", F), None)
    c["GlobalAveragePool"] = (model("gap", [N("GlobalAveragePool", ["a"], ["o"], name="gap")], [], "o", 4), None)
    c["ReduceMean"] = (model("rm", [N("ReduceMean", ["a"], ["o"], name="rm", axes=[2, 3], keepdims=1)], [], "o", 4),
                       None)
    # shapes
    c["Reshape"] = (model("rs", [N("Reshape", ["a", "shp"], ["o"], name="rs")], [T("shp", i64(0, -1))], "o", F), None)
    c["Flatten_axis1"] = (model("fl", [], [], "a", F), None)
    shape_ops = [N("Shape", ["a"], ["sh"], name="shape"), N("Gather", ["sh", "zero"], ["n0"], name="gather", axis=0),
                 N("Unsqueeze", ["n0", "ax0"], ["n1"], name="unsq"), N("Concat", ["n1", "m1"], ["shp"], name="cat", axis=0),
                 N("Reshape", ["a", "shp"], ["o"], name="rs")]
    # x.view(x.size(0), -1): Shape of an activation; either outcome obeys the rule (ANY)
    c["Shape_Gather_Unsqueeze_Concat_Reshape"] = (model("dynflat", shape_ops, [T("zero", np.int64(0)), T("ax0", i64(0)),
                                                                               T("m1", i64(-1))], "o", F), ANY)
    c["Pad"] = (model("pad", [N("Pad", ["a", "pads", "pv"], ["o"], name="pad", mode="constant")],
                      [T("pads", i64(0, 0, 1, 1, 0, 0, 1, 1)), T("pv", np.float32(0))], "o", 4 * 10 * 10), None)
    c["Slice"] = (model("sl", [N("Slice", ["a", "st", "en", "ax"], ["o"], name="sl")],
                        [T("st", i64(1)), T("en", i64(3)), T("ax", i64(1))], "o", 2 * 8 * 8), None)
    n1, i1 = conv("c1", "a", "b", 4, 4)
    n2, i2 = conv("c2", "a", "d", 4, 2, k=1, pad=0)
    c["Concat"] = (model("cat", n1 + n2 + [N("Concat", ["b", "d"], ["o"], name="cat", axis=1)], i1 + i2, "o", 6 * 8 * 8),
                   None)
    c["Identity_Dropout_Cast"] = (model("idc", [N("Identity", ["a"], ["i1"], name="id"),
                                                N("Dropout", ["i1"], ["i2"], name="drop"),
                                                N("Cast", ["i2"], ["o"], name="cast", to=1)], [], "o", F), None)
    c["Transpose"] = (model("tr", [N("Transpose", ["a"], ["o"], name="tr", perm=[0, 2, 3, 1])], [], "o", F), None)
    sm_nodes, sm_inits = head("a", F, out="z")
    c["Softmax"] = (model("sm", sm_nodes + [N("Softmax", ["z"], ["logits"], name="sm", axis=1)], sm_inits, None, None,
                          tail=False), None)
    # transformer ops (opset 17 / 20), each after a conv: LayerNormalization over [C, H, W], exact-erf Gelu, and
    # Add(scores, constant key mask) -> Softmax, which the reader fuses into the masked softmax
    n1, i1 = conv("c1", "a", "b", 4, 4)
    c["LayerNormalization"] = (model("ln", n1 + [N("LayerNormalization", ["b", "ln.g", "ln.b"], ["o"], name="ln", axis=1)],
                                     i1 + [T("ln.g", rnd(4, 8, 8) + 1), T("ln.b", rnd(4, 8, 8))], "o", F, opset=17), None)
    c["Gelu"] = (model("gelu", n1 + [N("Gelu", ["b"], ["o"], name="gelu")], i1, "o", F, opset=20), None)
    key_mask = np.zeros((1, 1, 1, 8), np.float32)
    key_mask[..., 6:] = -10000.0
    c["Softmax_masked"] = (model("msm", n1 + [N("Mul", ["b", "half"], ["sc"], name="scale"),
                                              N("Add", ["sc", "kmask"], ["sm"], name="add_mask"),
                                              N("Softmax", ["sm"], ["o"], name="softmax", axis=-1)],
                                 i1 + [T("half", np.float32(0.5)), T("kmask", key_mask)], "o", F), None)
    c["Constant"] = (model("cst", [N("Constant", [], ["k"], name="k", value=T("kv", rnd(1, 4, 1, 1))),
                                   N("Mul", ["a", "k"], ["o"], name="mul")], [], "o", F), None)
    c["mnist8_like"] = (mnist8_like, None)
    return c


def mnist8_like(path):
    """The ONNX model zoo's mnist-8 layout (CNTK export) at this test's input size, with explicit
    pads: fixed batch 1, Conv + separate bias Add, Reshape to [1, F] with a constant shape, and a
    MatMul classifier whose weight is itself a Reshape of a 4-D constant, then Add of a [1, 10] bias."""
    nodes = [N("Conv", ["input", "w1"], ["c1"], name="Convolution28", pads=[2, 2, 2, 2], kernel_shape=[5, 5]),
             N("Add", ["c1", "b1"], ["a1"], name="Plus30"), N("Relu", ["a1"], ["r1"], name="ReLU32"),
             N("MaxPool", ["r1"], ["p1"], name="Pooling66", kernel_shape=[2, 2], strides=[2, 2]),
             N("Conv", ["p1", "w2"], ["c2"], name="Convolution110", pads=[2, 2, 2, 2], kernel_shape=[5, 5]),
             N("Add", ["c2", "b2"], ["a2"], name="Plus112"), N("Relu", ["a2"], ["r2"], name="ReLU114"),
             N("MaxPool", ["r2"], ["p2"], name="Pooling160", kernel_shape=[2, 2], strides=[2, 2]),
             N("Reshape", ["p2", "shape_x"], ["flat"], name="Times212_reshape0"),
             N("Reshape", ["w3_4d", "shape_w"], ["w3"], name="Times212_reshape1"),
             N("MatMul", ["flat", "w3"], ["mm"], name="Times212"),
             N("Add", ["mm", "b3"], ["logits"], name="Plus214")]
    inits = [T("w1", rnd(8, 3, 5, 5, s=0.2)), T("b1", rnd(8, 1, 1, s=0.1)), T("w2", rnd(16, 8, 5, 5, s=0.1)),
             T("b2", rnd(16, 1, 1, s=0.1)), T("shape_x", i64(1, 64)), T("w3_4d", rnd(16, 2, 2, G.NCLS, s=0.2)),
             T("shape_w", i64(64, G.NCLS)), T("b3", rnd(1, G.NCLS, s=0.1))]
    return G.save(nodes, inits, path, in_shape=[1, 3, 8, 8], out_shape=(1, G.NCLS), opset=8)


def one_line(stderr):
    lines = [l for l in stderr.splitlines() if l.strip()]
    return lines[-1] if lines else ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", default="")
    args = ap.parse_args()
    if not os.path.exists(BIN):
        print(f"SKIP: no binary {BIN}")
        return 77
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    data = G.write_data(os.path.join(WORK, "data"))
    x_val = np.load(data["val"])
    failures = []
    ran = rejected = 0
    todo = []
    for name, (build, expect_reject) in cases().items():  # models built in order: seeded weights
        if args.k and args.k not in name:
            continue
        path = os.path.join(WORK, name + ".onnx")
        build(path)
        out = os.path.join(WORK, "run_" + name)
        cfg = G.write_config(os.path.join(WORK, name + ".json"), G.config(path, data, out, iters=1))
        todo.append((name, expect_reject, path, out, cfg))

    def invoke(t):  # the three CLI calls of one case; mostly waiting on process start-up
        _, _, path, _, cfg = t
        return (G.run(BIN, "--inspect", path), G.run(BIN, "--config", cfg, "--dry-run", "--quiet"),
                G.run(BIN, "--config", cfg, "--quiet"))

    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(invoke, todo))
    for (name, expect_reject, path, out, cfg), (ri, rd, rr) in zip(todo, results):
        errs = []
        if ri.returncode != 0 and rd.returncode == 0:
            errs.append(f"--inspect rejects ({one_line(ri.stderr)}) what --dry-run accepts")
        if rd.returncode == 0:
            if rr.returncode != 0:
                errs.append(f"--dry-run accepted it, the run failed: exit {rr.returncode}: {one_line(rr.stderr)}")
            else:
                missing = [f for f in ("model_qdq.onnx", "encodings.json", "logits_fp32.npy", "logits_quant.npy")
                           if not os.path.exists(os.path.join(out, f))]
                if missing:
                    errs.append(f"run exit 0 but {missing} missing")
                else:
                    ran += 1
                    lf = np.load(os.path.join(out, "logits_fp32.npy"))
                    lq = np.load(os.path.join(out, "logits_quant.npy"))
                    e = G.max_rel_err(lf, G.ort_logits(path, x_val))
                    if not e <= 1e-4:
                        errs.append(f"FP32 logits vs ONNX Runtime: max rel err {e:.2e} > 1e-4")
                    try:
                        XC.load_and_check(os.path.join(out, "model_qdq.onnx"))
                    except Exception as ex:  # onnx.checker / TensorRT structural rules (tests/export_ort_check.py)
                        errs.append(f"model_qdq.onnx fails onnx.checker / TensorRT rules: {ex}")
                    q = G.ort_logits(os.path.join(out, "model_qdq.onnx"), x_val)
                    same = float(np.mean(q.argmax(1) == lq.argmax(1)))
                    eq = G.max_rel_err(lq, q)
                    rows = float(np.mean(np.max(np.abs(q - lq), axis=1) <= 1e-4 * np.max(np.abs(q))))
                    if same < 0.95 or rows < 0.95:
                        errs.append(f"exported model in ONNX Runtime: {same:.0%} same argmax, {rows:.0%} rows within "
                                    f"1e-4 of the engine's quantized logits (< 95%)")
                    print(f"     {name}: FP32 vs ORT {e:.1e}; QDQ vs engine: max rel err {eq:.1e}, argmax {same:.0%}")
        else:
            rejected += 1
            md, mr = one_line(rd.stderr), one_line(rr.stderr)
            if rr.returncode != rd.returncode or md != mr:
                errs.append(f"--dry-run failed (exit {rd.returncode}: {md}) but the run said exit {rr.returncode}: {mr}")
            if not md.startswith("qdrop-gpu: error: "):
                errs.append(f"rejection is not a one-line error: {md!r}")
        if expect_reject is None and rd.returncode != 0:
            errs.append(f"expected to run, --dry-run exit {rd.returncode}: {one_line(rd.stderr)}")
        if expect_reject not in (None, ANY) and (rd.returncode == 0 or expect_reject not in rd.stderr):
            errs.append(f"expected a plan-time rejection containing {expect_reject!r}, got exit {rd.returncode}: "
                        f"{one_line(rd.stderr)}")
        print(("ok   " if not errs else "FAIL ") + name + ("" if rd.returncode == 0 else f"  (rejected: {one_line(rd.stderr)})"))
        for e in errs:
            print("       " + e)
            failures.append(f"{name}: {e}")
    print(f"{ran} ran end to end, {rejected} rejected at the plan step, {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
