"""Bad-input cases for the transformer ops (LayerNormalization, Gelu, Softmax with an additive mask).

Every model is generated in the case's prep function (x [N, 6, 8] -> the op under test -> y): the
ops at an opset that predates them, the forms the engine does not implement (Gelu's tanh
approximation, LayerNormalization's Mean / InvStdDev outputs, normalising over the batch) and
parameters or masks of the wrong shape. Each gives exit 65 with one line naming the node.
"""
import os

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # the catalogue still runs its other cases without the python test extras
    onnx = None


def _f32(name, a):
    return numpy_helper.from_array(np.asarray(a, np.float32), name)


def _model(nodes, inits, opset, outputs=("y",)):
    g = helper.make_graph(nodes, "transformer_bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6, 8])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="cases_transformer")
    m.ir_version = 8
    return m


def _ln(opset=17, scale_len=8, outputs=("y",), axis=-1):
    return _model([helper.make_node("LayerNormalization", ["x", "g", "b"], list(outputs), name="ln", axis=axis)],
                  [_f32("g", np.ones(scale_len)), _f32("b", np.zeros(scale_len))], opset, outputs)


def _gelu(opset=20, **attrs):
    return _model([helper.make_node("Gelu", ["x"], ["y"], name="gelu", **attrs)], [], opset)


def _masked_softmax(mask_shape):
    return _model([helper.make_node("Mul", ["x", "two"], ["s"], name="scale"),
                   helper.make_node("Add", ["s", "mask"], ["sm"], name="add_mask"),
                   helper.make_node("Softmax", ["sm"], ["y"], name="softmax", axis=-1)],
                  [_f32("two", 2.0), _f32("mask", np.zeros(mask_shape))], 13)


def _prep(build):
    def prep(d):
        with open(os.path.join(d, "m.onnx"), "wb") as f:
            f.write(build().SerializeToString())
        return {}
    return prep


def cases(m):
    if onnx is None:
        return []
    C = []
    insp = ["--inspect", "{case}/m.onnx"]

    def case(name, regex, build, what):
        C.append(m.Case(name, 65, regex, argv=insp, config=False, prep=_prep(build), what=what))

    case("onnx_layernorm_opset16", r"node 'ln': op LayerNormalization \(opset 16\) is not supported: "
         r"LayerNormalization needs opset >= 17", lambda: _ln(opset=16), "LayerNormalization in an opset-16 model")
    case("onnx_layernorm_mean_output", r"node 'ln': op LayerNormalization \(opset 17\) is not supported: the Mean",
         lambda: _ln(outputs=("y", "mean")), "LayerNormalization with its Mean output used")
    case("onnx_layernorm_scale_size", r"node 'ln' \(LayerNormalization\): Scale must be a constant float tensor of 8 "
         r"elements", lambda: _ln(scale_len=7), "LayerNormalization Scale of 7 elements over 8 features")
    case("onnx_layernorm_over_batch", r"node 'ln' \(LayerNormalization\): axis out of range or over the batch",
         lambda: _ln(scale_len=48, axis=0), "LayerNormalization axis 0 (would mix the samples of a batch)")
    case("onnx_gelu_opset19", r"node 'gelu': op Gelu \(opset 19\) is not supported: Gelu needs opset >= 20",
         lambda: _gelu(opset=19), "Gelu in an opset-19 model")
    case("onnx_gelu_tanh", r"node 'gelu': op Gelu \(opset 20\) is not supported: approximate=\"tanh\"",
         lambda: _gelu(approximate="tanh"), "Gelu with the tanh approximation")
    case("onnx_gelu_bad_approximate", r"node 'gelu' \(Gelu\): approximate \"fast\" is neither",
         lambda: _gelu(approximate="fast"), "Gelu approximate=\"fast\"")
    case("onnx_masked_softmax_bad_mask", r"node 'softmax' \(Softmax\): mask dim 1 \(5\) does not broadcast to 8",
         lambda: _masked_softmax((1, 5)), "Add(scores, mask) -> Softmax with a mask of 5 keys for 8")
    return C
