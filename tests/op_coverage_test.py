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
Usage: QD_BIN=build/qdrop-gpu python3 tests/op_coverage_test.py [--group base|import] [-k SUBSTRING]
(--group import: the opset 7..21 spellings of torch.onnx.export / tf2onnx, pool modes, hard activations,
Resize, squeeze-and-excitation blocks, whose unit partition and quantizers are checked from --inspect;
a separate CTest entry so the two halves run in parallel)
"""
import argparse
import concurrent.futures
import os
import re
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


def model(name, body, inits, x, feat, out_shape=(None, G.NCLS), tail=True, opset=13, in_shape=None):
    """stem conv(3->4)+relu -> body (reads 'a', writes x) -> head on x ([N, feat] after Flatten)."""
    n0, i0 = conv("stem", "input", "s", 3, 4)
    nodes = n0 + [N("Relu", ["s"], ["a"], name="stem_relu")] + body
    all_inits = i0 + inits
    if tail:
        nh, ih = head(x, feat)
        nodes += nh
        all_inits += ih
    return lambda path: G.save(nodes, all_inits, path, out_shape=out_shape, opset=opset, in_shape=in_shape)


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


def import_cases():
    """The exporter spellings and backbone operators (test_op_coverage_import, docs/architecture.md "ONNX import")."""
    c = {}
    exporter_variants(c)
    backbone_ops(c)
    return c


def exporter_variants(c):
    """The same ops as torch.onnx.export and tf2onnx write them at opsets 9..21."""
    F = 4 * 8 * 8
    c["Pad_opset9_attr"] = (model("pad9", [N("Pad", ["a"], ["o"], name="pad", mode="constant", pads=[0, 0, 1, 1, 0, 0, 1, 1],
                                            value=0.5)], [], "o", 4 * 10 * 10, opset=9), None)
    c["Pad_opset11_input_no_value"] = (model("pad11", [N("Pad", ["a", "pads"], ["o"], name="pad", mode="constant")],
                                             [T("pads", i64(0, 0, 2, 1, 0, 0, 0, 1))], "o", 4 * 10 * 10, opset=11), None)
    n1, i1 = conv("c1", "a", "b", 4, 4)
    c["Clip_opset9_attr"] = (model("clip9", n1 + [N("Clip", ["b"], ["o"], name="clip", min=0.0, max=6.0)], i1, "o", F,
                                   opset=9), None)
    n1, i1 = conv("c1", "a", "b", 4, 4)
    c["Clip_opset12_min_only"] = (model("clip12", n1 + [N("Clip", ["b", "lo", ""], ["o"], name="clip")],
                                        i1 + [T("lo", np.float32(-0.1))], "o", F, opset=12), None)
    c["Slice_opset9_attr"] = (model("sl9", [N("Slice", ["a"], ["o"], name="sl", starts=[1], ends=[3], axes=[1])], [], "o",
                                    2 * 8 * 8, opset=9), None)
    c["Slice_opset10_steps"] = (model("sl10", [N("Slice", ["a", "st", "en", "ax", "sp"], ["o"], name="sl")],
                                      [T("st", i64(0, 7)), T("en", i64(8, -100)), T("ax", i64(2, 3)), T("sp", i64(2, -2))],
                                      "o", 4 * 4 * 4, opset=10), None)
    c["ReduceMean_opset18_axes_input"] = (model("rm18", [N("ReduceMean", ["a", "axes"], ["o"], name="rm", keepdims=1)],
                                                [T("axes", i64(2, 3))], "o", 4, opset=18), None)
    c["Dropout_opset13_ratio_training_false"] = (model("dr13", [N("Dropout", ["a", "ratio", "train"], ["o"], name="drop")],
                                                       [T("ratio", np.float32(0.3)), T("train", np.array(False))], "o", F),
                                                 None)
    # a training-mode export: ONNX Runtime applies dropout, here it is the inference identity; ratio 0 makes both agree
    c["Dropout_opset13_training_true_ratio0"] = (model("dr13t", [N("Dropout", ["a", "ratio", "train"], ["o", "mask"],
                                                                   name="drop")],
                                                       [T("ratio", np.float32(0.0)), T("train", np.array(True))], "o", F),
                                                 None)
    c["Dropout_opset9_ratio_attr"] = (model("dr9", [N("Dropout", ["a"], ["o"], name="drop", ratio=0.25)], [], "o", F,
                                            opset=9), None)
    bn = [T("bn.g", rnd(4) + 1), T("bn.b", rnd(4)), T("bn.m", rnd(4)), T("bn.v", np.abs(rnd(4)) + 0.5)]
    c["BatchNormalization_unfolded_opset9"] = (model("bnu9", [N("BatchNormalization", ["a", "bn.g", "bn.b", "bn.m", "bn.v"],
                                                                ["o"], name="bn", epsilon=1e-3)], bn, "o", F, opset=9), None)
    bn = [T("bn.g", rnd(4) + 1), T("bn.b", rnd(4)), T("bn.m", rnd(4)), T("bn.v", np.abs(rnd(4)) + 0.5)]
    mp = [N("MaxPool", ["a"], ["p"], name="mp", kernel_shape=[2, 2], strides=[2, 2]),
          N("BatchNormalization", ["p", "bn.g", "bn.b", "bn.m", "bn.v"], ["o"], name="bn", training_mode=0)]
    c["BatchNormalization_unfolded_opset15_after_pool"] = (model("bnu15", mp, bn, "o", 4 * 4 * 4, opset=15), None)
    c["external_data"] = (external_data, None)
    # tf2onnx/Keras-style heads: GlobalAveragePool -> Squeeze to [N, C]; axes as attribute (< 13) and input (>= 13)
    c["Squeeze_opset11_attr_head"] = (model("sq11", [N("GlobalAveragePool", ["a"], ["p"], name="gap"),
                                                     N("Squeeze", ["p"], ["o"], name="squeeze", axes=[2, 3])], [], "o", 4,
                                            opset=11), None)
    c["Squeeze_opset13_input_head"] = (model("sq13", [N("GlobalAveragePool", ["a"], ["p"], name="gap"),
                                                      N("Squeeze", ["p", "ax"], ["o"], name="squeeze")], [T("ax", i64(-1, 2))],
                                             "o", 4), None)
    c["Unsqueeze_opset11_attr"] = (model("usq11", [N("Unsqueeze", ["a"], ["o"], name="unsqueeze", axes=[2])], [], "o", F,
                                         opset=11), None)
    c["Squeeze_batch_axis_refused"] = (model("sqb", [N("GlobalAveragePool", ["a"], ["p"], name="gap"),
                                                     N("Squeeze", ["p", "ax"], ["o"], name="squeeze")], [T("ax", i64(0, 2, 3))],
                                             "o", 4), "node 'squeeze' (Squeeze): axis 0 would move the batch")


def backbone_ops(c):
    """Operators of ImageNet backbones beyond ResNet: pool modes, hard activations, SiLU, SE blocks."""
    F = 4 * 8 * 8
    c["MaxPool_ceil_mode"] = (model("mpc", [N("MaxPool", ["a"], ["o"], name="mp", kernel_shape=[3, 3], strides=[2, 2],
                                              ceil_mode=1)], [], "o", 4 * 4 * 4), None)
    c["MaxPool_ceil_mode_pads"] = (model("mpcp", [N("MaxPool", ["a"], ["o"], name="mp", kernel_shape=[3, 3], strides=[2, 2],
                                                   pads=[1, 1, 1, 1], ceil_mode=1)], [], "o", 4 * 5 * 5), None)
    for cip in (0, 1):
        c[f"AveragePool_pads_count_include_pad{cip}"] = (
            model(f"apc{cip}", [N("AveragePool", ["a"], ["o"], name="ap", kernel_shape=[3, 3], strides=[2, 2],
                                  pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=cip)], [], "o", 4 * 5 * 5), None)
    n1, i1 = conv("c1", "a", "b", 4, 4)
    c["HardSigmoid"] = (model("hsig", n1 + [N("HardSigmoid", ["b"], ["o"], name="hsig", alpha=0.25, beta=0.4)], i1, "o",
                              F), None)
    n1, i1 = conv("c1", "a", "b", 4, 4)
    c["HardSwish_opset14"] = (model("hsw", n1 + [N("HardSwish", ["b"], ["o"], name="hswish")], i1, "o", F, opset=14), None)
    n1, i1 = conv("c1", "a", "b", 4, 4)
    c["HardSwish_as_x_mul_HardSigmoid_opset13"] = (
        model("hsw13", n1 + [N("HardSigmoid", ["b"], ["g"], name="hsig", alpha=1.0 / 6, beta=0.5),
                             N("Mul", ["b", "g"], ["o"], name="hswish")], i1, "o", F), None)
    n1, i1 = conv("c1", "a", "b", 4, 4)
    c["SiLU_x_mul_Sigmoid"] = (model("silu", n1 + [N("Sigmoid", ["b"], ["g"], name="sig"),
                                                   N("Mul", ["b", "g"], ["o"], name="silu")], i1, "o", F), None)
    se, ise = se_block("se", "a", "o", 4, 2, "sigmoid")
    c["SE_GlobalAveragePool_conv_Sigmoid"] = (model("se1", se, ise, "o", F), None)
    se, ise = se_block("se", "a", "o", 4, 2, "hardsigmoid", pool="reducemean18", gate_first=True)
    c["SE_ReduceMean18_conv_HardSigmoid"] = (model("se2", se, ise, "o", F, opset=18), None)
    se, ise = se_block("se", "a", "o", 4, 2, "sigmoid", fc=True)
    c["SE_Gemm_Reshape_Sigmoid"] = (model("se3", se, ise, "o", F), None)
    se, ise = se_block("se", "a", "o", 4, 2, "hardsigmoid", fc="squeeze")
    c["SE_ReduceMean_keepdims0_Gemm_Unsqueeze_HardSigmoid"] = (model("se4", se, ise, "o", F), None)
    resize_cases(c)
    for name, opset, res in (("MobileNetV3_block_opset14", 14, False), ("MobileNetV3_block_residual_opset21", 21, True),
                             ("MobileNetV3_block_opset13_decomposed", 13, False)):
        nodes, inits = mbv3_block("a", "o", 4, 8, 4, opset, res)
        c[name] = (model(name, nodes, inits, "o", F, opset=opset), None)
    nodes, inits = mbv3_block("a", "o", 4, 8, 4, "keras", False)
    c["MobileNetV3_block_keras_hard_swish_tf2onnx"] = (model("mbv3k", nodes, inits, "o", F), None)
    nodes, inits = mbconv("a", "o", 4, 8, 4)
    c["EfficientNet_MBConv_SiLU_SE_residual"] = (model("mbconv", nodes, inits, "o", F), None)


def resize_cases(c):
    """Resize / Upsample as exporters write them (input [N, 4, 8, 8] -> [N, 4, OH, OW])."""
    f32 = lambda *v: np.array(v, dtype=np.float32)

    def rs(name, opset, node_inputs, inits, oh, ow, op="Resize", static_batch=False, expect=None, **attrs):
        """static_batch: a fixed batch of 1, as torch.onnx.export writes without dynamic axes (4-D sizes name it)"""
        shapes = dict(in_shape=[1, G.C, G.H, G.W], out_shape=(1, G.NCLS)) if static_batch else {}
        c[name] = (model(name, [N(op, ["a"] + node_inputs, ["o"], name="resize", **attrs)], inits, "o", 4 * oh * ow,
                         opset=opset, **shapes), expect)
    rs("Upsample_opset7_linear_attr_scales", 7, [], [], 16, 16, op="Upsample", mode="linear", scales=[1.0, 1.0, 2.0, 2.0])
    rs("Upsample_opset9_nearest", 9, ["sc"], [T("sc", f32(1, 1, 2, 2))], 16, 16, op="Upsample", mode="nearest")
    rs("Resize_opset10_nearest_downscale", 10, ["sc"], [T("sc", f32(1, 1, 0.5, 0.75))], 4, 6, mode="nearest")
    rs("Resize_opset11_nearest_asymmetric_floor", 11, ["roi", "sc"], [T("roi", f32()), T("sc", f32(1, 1, 2, 2))], 16, 16,
       mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    rs("Resize_opset13_linear_pytorch_half_pixel", 13, ["", "sc"], [T("sc", f32(1, 1, 2, 2))], 16, 16, mode="linear",
       coordinate_transformation_mode="pytorch_half_pixel")
    rs("Resize_opset13_linear_align_corners_sizes", 13, ["", "", "sz"], [T("sz", i64(1, 4, 13, 11))], 13, 11,
       mode="linear", coordinate_transformation_mode="align_corners", static_batch=True)
    rs("Resize_sizes_fix_a_symbolic_batch_refused", 13, ["", "", "sz"], [T("sz", i64(2, 4, 13, 11))], 13, 11,
       mode="linear", expect="node 'resize' (Resize): sizes [2, 4, ..] change the batch or channels of an input [N, 4, ..]")
    rs("Resize_opset13_linear_half_pixel_downscale", 13, ["", "sc"], [T("sc", f32(1, 1, 0.5, 0.5))], 4, 4, mode="linear")
    rs("Resize_opset13_nearest_half_pixel_round_prefer_ceil_sizes", 13, ["", "", "sz"], [T("sz", i64(1, 4, 12, 5))], 12,
       5, mode="nearest", nearest_mode="round_prefer_ceil", static_batch=True)
    # 6 -> 7: 7/6 in float times 6 is 6.9999998, so the exported scale is the next float up
    c["Resize_opset13_sizes_7_over_6_exported_as_scale"] = (
        model("rs76", [N("MaxPool", ["a"], ["p"], name="mp", kernel_shape=[3, 3]),
                       N("Resize", ["p", "", "", "sz"], ["o"], name="resize", mode="linear",
                         coordinate_transformation_mode="half_pixel")], [T("sz", i64(1, 4, 7, 7))], "o", 4 * 7 * 7,
              in_shape=[1, G.C, G.H, G.W], out_shape=(1, G.NCLS)), None)
    rs("Resize_opset18_linear_sizes_axes", 18, ["", "", "sz"], [T("sz", i64(12, 10))], 12, 10, mode="linear",
       axes=[2, 3])
    rs("Resize_opset19_nearest_scales_axes", 19, ["", "sc"], [T("sc", f32(3, 1.5))], 24, 12, mode="nearest", axes=[-2, -1],
       coordinate_transformation_mode="asymmetric", nearest_mode="round_prefer_floor")
    c["Resize_cubic_refused"] = (model("rsc", [N("Resize", ["a", "", "sc"], ["o"], name="resize", mode="cubic")],
                                       [T("sc", f32(1, 1, 2, 2))], "o", 4 * 16 * 16),
                                 "node 'resize': op Resize (opset 13) is not supported: attribute mode must be nearest or "
                                 "linear")
    c["Resize_tf_crop_and_resize_refused"] = (
        model("rst", [N("Resize", ["a", "roi", "sc"], ["o"], name="resize", mode="linear",
                        coordinate_transformation_mode="tf_crop_and_resize")],
              [T("roi", f32(0, 0, 0, 0, 1, 1, 1, 1)), T("sc", f32(1, 1, 2, 2))], "o", 4 * 16 * 16),
        "op Resize (opset 13) is not supported: attribute coordinate_transformation_mode=tf_crop_and_resize")


def se_block(p, x, y, ch, mid, gate, pool="gap", fc=False, gate_first=False, act="relu"):
    """Squeeze-and-excitation on x [N, ch, H, W]: pool -> reduce (1x1 conv or Gemm) -> Relu -> expand -> gate -> x * gate."""
    nodes, inits = [], []
    if fc == "squeeze":  # x.mean((2, 3)) -> Linear -> ... -> [:, :, None, None]
        nodes.append(N("ReduceMean", [x], [p + "_flat"], name=p + "_pool", axes=[2, 3], keepdims=0))
    elif pool == "gap":
        nodes.append(N("GlobalAveragePool", [x], [p + "_pool"], name=p + "_pool"))
    else:
        nodes.append(N("ReduceMean", [x, p + "_axes"], [p + "_pool"], name=p + "_pool", keepdims=1))
        inits.append(T(p + "_axes", i64(2, 3)))
    s = p + "_pool"
    if fc == True:  # noqa: E712 (fc is True, False or "squeeze")
        nodes.append(N("Flatten", [s], [p + "_flat"], name=p + "_flat"))
    if fc:
        nodes += [N("Gemm", [p + "_flat", p + "_fc1.w", p + "_fc1.b"], [p + "_h"], name=p + "_fc1", transB=1),
                  N("Relu", [p + "_h"], [p + "_hr"], name=p + "_relu"),
                  N("Gemm", [p + "_hr", p + "_fc2.w", p + "_fc2.b"], [p + "_e"], name=p + "_fc2", transB=1)]
        inits += [T(p + "_fc1.w", rnd(mid, ch)), T(p + "_fc1.b", rnd(mid, s=0.1)), T(p + "_fc2.w", rnd(ch, mid)),
                  T(p + "_fc2.b", rnd(ch, s=0.1))]
    else:
        n1, i1 = conv(p + "_fc1", s, p + "_h", ch, mid, k=1, pad=0)
        n2, i2 = conv(p + "_fc2", p + "_hr", p + "_e", mid, ch, k=1, pad=0)
        a = [N("Relu", [p + "_h"], [p + "_hr"], name=p + "_relu")] if act == "relu" else silu(p + "_h", p + "_hr", p + "_relu")
        nodes += n1 + a + n2
        inits += i1 + i2
    if gate == "sigmoid":
        nodes.append(N("Sigmoid", [p + "_e"], [p + "_g"], name=p + "_gate"))
    elif gate == "keras":  # hard_sigmoid as Keras writes it: relu6(x + 3) / 6
        nodes += [N("Add", [p + "_e", "k3"], [p + "_e3"], name=p + "_add3"),
                  N("Clip", [p + "_e3", "k0", "k6"], [p + "_e6"], name=p + "_relu6"),
                  N("Div", [p + "_e6", "k6"], [p + "_g"], name=p + "_gate")]
    else:
        nodes.append(N("HardSigmoid", [p + "_e"], [p + "_g"], name=p + "_gate", alpha=1.0 / 6, beta=0.5))
    g = p + "_g"
    if fc == "squeeze":
        nodes.append(N("Unsqueeze", [g, p + "_uax"], [p + "_g4"], name=p + "_view"))
        inits.append(T(p + "_uax", i64(2, 3)))
        g = p + "_g4"
    elif fc:
        nodes.append(N("Reshape", [g, p + "_shape"], [p + "_g4"], name=p + "_view"))
        inits.append(T(p + "_shape", i64(0, ch, 1, 1)))
        g = p + "_g4"
    nodes.append(N("Mul", [g, x] if gate_first else [x, g], [y], name=p + "_mul"))
    return nodes, inits


def silu(x, y, name):
    """SiLU as torch.onnx.export writes nn.SiLU: x * Sigmoid(x)."""
    return [N("Sigmoid", [x], [y + "_s"], name=name + "_sigmoid"), N("Mul", [x, y + "_s"], [y], name=name)]


def mbconv(x, y, cin, cexp, cout):
    """EfficientNet MBConv with a residual: expand 1x1 + SiLU -> depthwise 3x3 + SiLU -> SE (SiLU, Sigmoid gate)
    -> project 1x1, + x."""
    n1, i1 = conv("exp", x, "e", cin, cexp, k=1, pad=0)
    n2, i2 = conv("dw", "ea", "d", cexp, cexp, group=cexp)
    se, ise = se_block("se", "da", "sx", cexp, 2, "sigmoid", gate_first=True, act="silu")
    n3, i3 = conv("proj", "sx", "pj", cexp, cout, k=1, pad=0)
    nodes = n1 + silu("e", "ea", "exp_act") + n2 + silu("d", "da", "dw_act") + se + n3 + \
        [N("Add", [x, "pj"], [y], name="res_add")]
    return nodes, i1 + i2 + ise + i3


def hardswish(x, y, name, opset):
    if opset == "keras":  # x * relu6(x + 3) / 6 (tf2onnx of a Keras MobileNetV3)
        return [N("Add", [x, "k3"], [y + "_3"], name=name + "_add3"),
                N("Clip", [y + "_3", "k0", "k6"], [y + "_6"], name=name + "_relu6"),
                N("Mul", [y + "_6", "k16"], [y + "_g"], name=name + "_div6"),
                N("Mul", [x, y + "_g"], [y], name=name)]
    if opset >= 14:
        return [N("HardSwish", [x], [y], name=name)]
    return [N("HardSigmoid", [x], [y + "_g"], name=name + "_gate", alpha=1.0 / 6, beta=0.5),
            N("Mul", [x, y + "_g"], [y], name=name)]


def mbv3_block(x, y, cin, cexp, cout, opset, residual):
    """MobileNetV3 inverted residual: expand 1x1 + HardSwish -> depthwise 3x3 + HardSwish -> SE (HardSigmoid gate)
    -> project 1x1 (linear), plus x when residual."""
    keras = opset == "keras"
    n1, i1 = conv("exp", x, "e", cin, cexp, k=1, pad=0)
    n2, i2 = conv("dw", "ea", "d", cexp, cexp, group=cexp)
    se, ise = se_block("se", "da", "sx", cexp, 4, "keras" if keras else "hardsigmoid",
                       pool="reducemean18" if not keras and opset >= 18 else "gap")
    if keras:
        ise += [T("k0", np.float32(0)), T("k3", np.float32(3)), T("k6", np.float32(6)), T("k16", np.float32(1 / 6))]
    n3, i3 = conv("proj", "sx", "pj" if residual else y, cexp, cout, k=1, pad=0)
    nodes = n1 + hardswish("e", "ea", "exp_act", opset) + n2 + hardswish("d", "da", "dw_act", opset) + se + n3
    if residual:
        nodes.append(N("Add", [x, "pj"], [y], name="res_add"))
    return nodes, i1 + i2 + ise + i3


def external_data(path):
    """A model whose weights live in a side file next to it (onnx save_as_external_data)."""
    import onnx
    n1, i1 = conv("c1", "a", "b", 4, 4)
    model("ext", n1 + [N("Relu", ["b"], ["o"], name="relu")], i1, "o", 4 * 8 * 8)(path)
    m = onnx.load(path)
    onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=os.path.basename(path) + ".data", size_threshold=0)
    assert os.path.getsize(path + ".data") > 0
    return path


# Unit partition and quantizer placement (--inspect) of the SE / MobileNetV3 cases: (units, layers of the unit that
# holds the SE Mul, nodes whose output must carry an activation quantizer, nodes whose output must not).
PLANS = {
    "SE_GlobalAveragePool_conv_Sigmoid": (3, 2, ["stem_relu", "se_relu", "se_mul"], ["se_fc2", "se_gate"]),
    "SE_ReduceMean18_conv_HardSigmoid": (3, 2, ["stem_relu", "se_relu", "se_mul"], ["se_fc2", "se_gate"]),
    "SE_Gemm_Reshape_Sigmoid": (3, 2, ["se_relu", "se_mul"], ["se_fc2", "se_gate", "se_view"]),
    "SE_ReduceMean_keepdims0_Gemm_Unsqueeze_HardSigmoid": (3, 2, ["se_relu", "se_mul"], ["se_fc2", "se_gate", "se_view"]),
    "MobileNetV3_block_opset14": (3, 5, ["exp_act", "dw_act", "se_relu", "se_mul", "proj"], ["se_fc2", "se_gate"]),
    "MobileNetV3_block_residual_opset21": (3, 5, ["exp_act", "dw_act", "se_relu", "se_mul", "res_add"],
                                           ["se_fc2", "se_gate", "proj"]),
    "MobileNetV3_block_opset13_decomposed": (3, 5, ["exp_act", "dw_act", "se_relu", "se_mul", "proj"],
                                             ["se_fc2", "se_gate", "exp", "dw", "exp_act_gate"]),
    "EfficientNet_MBConv_SiLU_SE_residual": (3, 5, ["exp_act", "dw_act", "se_relu", "se_mul", "res_add"],
                                             ["exp", "dw", "se_fc1", "se_fc2", "se_gate", "proj"]),
    "MobileNetV3_block_keras_hard_swish_tf2onnx": (3, 5, ["exp_act", "dw_act", "se_relu", "se_mul", "proj"],
                                                   ["exp", "dw", "se_fc2", "se_gate", "exp_act_relu6", "dw_act_div6"]),
    "SiLU_x_mul_Sigmoid": (3, 1, ["silu"], ["c1", "sig"]),
    "HardSwish_as_x_mul_HardSigmoid_opset13": (3, 1, ["hswish"], ["c1", "hsig"]),
}


def check_plan(name, inspect_out):
    """Errors (list) of the --inspect plan against PLANS[name]."""
    units, se_layers, quantized, plain = PLANS[name]
    errs = []
    m = re.search(r"^units: (\d+) ", inspect_out, re.M)
    if not m or int(m.group(1)) != units:
        errs.append(f"expected {units} units, --inspect says {m.group(1) if m else '?'}")
    unit_of, quant, layers, cur = {}, {}, {}, None
    for line in inspect_out.splitlines():
        mu = re.match(r"  unit (\d+) .*\((\d+) layers?\)", line)
        if mu:
            cur = int(mu.group(1))
            layers[cur] = int(mu.group(2))
            continue
        if line.startswith("  glue"):
            cur = None
            continue
        mn = re.match(r"      \S+\s+(\S+) ->", line)
        if mn:
            unit_of[mn.group(1)] = cur
            quant[mn.group(1)] = "quantizer on" in line
    last = "se_mul" if "se_mul" in unit_of else quantized[0]
    u = unit_of.get(last)
    if u is None:
        errs.append(f"node {last} is not inside a unit")
    elif layers.get(u) != se_layers:
        errs.append(f"the unit holding {last} has {layers.get(u)} layers, expected {se_layers}")
    for k in quantized:
        if not quant.get(k):
            errs.append(f"node {k}: expected an activation quantizer on its output")
    for k in plain:
        if k in quant and quant[k]:
            errs.append(f"node {k}: expected no activation quantizer on its output")
        if k not in quant:
            errs.append(f"node {k} not in the plan")
    return errs


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
    ap.add_argument("--group", choices=("base", "import"), default="base")
    args = ap.parse_args()
    global WORK
    if args.group != "base":
        WORK += "_" + args.group
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
    for name, (build, expect_reject) in (cases() if args.group == "base" else import_cases()).items():  # seeded, in order
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
        if name in PLANS and ri.returncode == 0:
            errs += check_plan(name, ri.stdout)
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
