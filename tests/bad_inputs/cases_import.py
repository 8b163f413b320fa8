"""Bad-input cases for the exporter spellings the ONNX reader imports (Resize/Upsample, HardSigmoid,
Squeeze/Unsqueeze of activations; docs/architecture.md "ONNX import").

Each model is generated in the case's prep function: a tiny CIFAR CNN (Conv -> Relu -> <op> ->
GlobalAveragePool -> Flatten -> Gemm) with the op under test on the main path, written the way an
exporter would but with one thing the engine cannot run or a value out of range. Each must give exit
65 with one line naming the node, the op, the opset and why - never a crash or a late failure.
"""
import os

try:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # the catalogue still runs its other cases without the python test extras
    np = None


def _model(op_nodes, inits=(), opset=13, out="z"):
    """x [N,3,32,32] -> conv1 -> relu1 (r1) -> op_nodes (read r1, write `out`) -> GAP -> Flatten -> Gemm."""
    rng = np.random.default_rng(5)
    base = [numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32), "W1"),
            numpy_helper.from_array(np.zeros(4, np.float32), "B1"),
            numpy_helper.from_array((rng.standard_normal((10, 4)) * 0.3).astype(np.float32), "Wfc"),
            numpy_helper.from_array(np.zeros(10, np.float32), "Bfc")]
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1")] + list(op_nodes) + [
             helper.make_node("GlobalAveragePool", [out], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "Wfc", "Bfc"], ["y"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "import", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], base + list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="cases_import")
    m.ir_version = 8
    return m


def _f32(name, *v):
    return numpy_helper.from_array(np.array(v, dtype=np.float32), name)


def _i64(name, *v):
    return numpy_helper.from_array(np.array(v, dtype=np.int64), name)


def _resize(opset=13, scales=(1, 1, 2, 2), **attrs):
    return _model([helper.make_node("Resize", ["r1", "", "sc"], ["z"], name="rs", **attrs)], [_f32("sc", *scales)],
                  opset=opset)


def cases(m):
    if np is None:
        return []
    C = []

    def case(name, regex, build, what):
        def prep(d):
            with open(os.path.join(d, "m.onnx"), "wb") as f:
                f.write(build().SerializeToString())
            return {}
        C.append(m.Case(name, 65, regex, prep=prep, config=m.tiny_config(model="{case}/m.onnx"), what=what))

    case("import_resize_cubic", r"m\.onnx: node 'rs': op Resize \(opset 13\) is not supported: attribute mode must be "
         r"nearest or linear", lambda: _resize(mode="cubic"), "Resize mode=cubic: refused naming the attribute")
    case("import_resize_tf_crop_and_resize",
         r"node 'rs': op Resize \(opset 13\) is not supported: attribute coordinate_transformation_mode="
         r"tf_crop_and_resize", lambda: _resize(mode="linear", coordinate_transformation_mode="tf_crop_and_resize"),
         "Resize with a coordinate transformation the engine does not implement")
    case("import_resize_antialias", r"node 'rs': op Resize \(opset 18\) is not supported: attribute antialias=1",
         lambda: _resize(opset=18, scales=(1, 1, 0.5, 0.5), mode="linear", antialias=1), "Resize-18 antialias=1")
    case("import_resize_channel_scale", r"node 'rs': op Resize \(opset 13\) is not supported: scales other than 1 on "
         r"the batch or channel dimension", lambda: _resize(scales=(1, 2, 2, 2)), "Resize that scales the channels")
    case("import_resize_zero_scale", r"node 'rs' \(Resize\): scale 0 must be positive and finite",
         lambda: _resize(scales=(1, 1, 0, 2)), "Resize scale 0")
    case("import_resize_huge_scale", r"node 'rs' \(Resize\): output extent .* too large",
         lambda: _resize(scales=(1, 1, 1e9, 1e9)), "Resize scales 1e9: the output size is checked, not allocated")
    case("import_upsample_opset10", r"node 'up': op Upsample \(opset 10\) is not supported: Upsample is deprecated",
         lambda: _model([helper.make_node("Upsample", ["r1", "sc"], ["z"], name="up")], [_f32("sc", 1, 1, 2, 2)],
                        opset=10), "Upsample in an opset-10 model (removed from the standard)")
    case("import_hardsigmoid_inf_alpha", r"node 'hs' \(HardSigmoid\): alpha inf / beta 0.5 must be finite",
         lambda: _model([helper.make_node("HardSigmoid", ["r1"], ["z"], name="hs", alpha=float("inf"))]),
         "HardSigmoid alpha=inf")
    case("import_squeeze_no_axes", r"node 'sq': op Squeeze \(opset 13\) is not supported: no axes on an activation",
         lambda: _model([helper.make_node("GlobalAveragePool", ["r1"], ["p"], name="p"),
                         helper.make_node("Squeeze", ["p"], ["q"], name="sq"),
                         helper.make_node("Unsqueeze", ["q", "ax"], ["z"], name="usq")], [_i64("ax", 2, 3)]),
         "Squeeze of an activation without axes (would squeeze a batch of 1)")
    case("import_unsqueeze_batch_axis", r"node 'usq' \(Unsqueeze\): axis 0 would move the batch",
         lambda: _model([helper.make_node("Unsqueeze", ["r1", "ax"], ["u"], name="usq"),
                         helper.make_node("Squeeze", ["u", "ax"], ["z"], name="sq")], [_i64("ax", 0)]),
         "Unsqueeze at axis 0 of an activation")
    bn = [_f32("g", 1, 1, 1, 1), _f32("b", 0, 0, 0, 0), _f32("mu", 0, 0, 0, 0), _f32("var", 1, 1, 1, 1)]
    case("import_batchnorm_training_mode", r"node 'bn': op BatchNormalization \(opset 15\) is not supported: "
         r"training_mode=1 \(a training-mode export: export the model in eval mode\)",
         lambda: _model([helper.make_node("BatchNormalization", ["r1", "g", "b", "mu", "var"], ["z"], name="bn",
                                          training_mode=1)], bn, opset=15),
         "BatchNormalization of a training-mode export (batch statistics)")
    case("import_unsupported_op_names_opset", r"node 'gs': op GridSample \(opset 16\) is not supported",
         lambda: _model([helper.make_node("GridSample", ["r1", "grid"], ["z"], name="gs")],
                        [_f32("grid", *([0.0] * 2 * 32 * 32 * 2))], opset=16),
         "an op the engine lacks: the one line names node, op and opset")
    return C
