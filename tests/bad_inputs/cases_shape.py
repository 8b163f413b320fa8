"""Bad-input cases for Shape of an activation under a dynamic batch (docs/architecture.md,
"ONNX import").

The reader folds Shape of an activation with static non-batch dims into an int64 vector whose
element 0 is the batch symbol; data movement (Slice, Gather, Concat, Unsqueeze, ...) carries it.
What would compute with the batch size - arithmetic on an element holding it, a ConstantOfShape
sized by it, the batch used as a Pad amount - is data-dependent: exit 65 naming the node. Each
model is a tiny CIFAR CNN (Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm) with a symbolic
batch, generated here with the onnx package.
"""
import os

try:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # the catalogue still runs its other cases without the python test extras
    np = None


def _model(extra_nodes, extra_outputs=()):
    rng = np.random.default_rng(11)
    i64 = lambda n, v: numpy_helper.from_array(np.array(v, np.int64), n)
    inits = [numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32), "W1"),
             numpy_helper.from_array(np.zeros(4, np.float32), "B1"),
             numpy_helper.from_array((rng.standard_normal((10, 4)) * 0.3).astype(np.float32), "Wfc"),
             numpy_helper.from_array(np.zeros(10, np.float32), "Bfc"),
             i64("s0", [0]), i64("e1", [1]), i64("e2", [2]), i64("axes0", [0]), i64("two_one", [2, 1]),
             i64("zeros7", [0] * 7)]
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1")] + list(extra_nodes)
    nodes += [helper.make_node("GlobalAveragePool", ["r1"], ["gap"], name="gap"),
              helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "Wfc", "Bfc"], ["y"], name="fc", transB=1)]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])] + list(extra_outputs)
    g = helper.make_graph(nodes, "shape_cases", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                               ["N", 3, 32, 32])], outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="cases_shape")
    m.ir_version = 8
    return m


def _prep(build):
    def prep(d):
        with open(os.path.join(d, "m.onnx"), "wb") as f:
            f.write(build().SerializeToString())
        return {}
    return prep


def _batch_times_two():
    # x.shape[:2] * [2, 1]: element 0 (the batch) takes part in the product
    return _model([helper.make_node("Shape", ["r1"], ["shp"], name="shape"),
                   helper.make_node("Slice", ["shp", "s0", "e2", "axes0"], ["nc"], name="slice_nc"),
                   helper.make_node("Mul", ["nc", "two_one"], ["nc2"], name="double_batch")])


def _zeros_like_shape():
    # torch.zeros(x.shape) exported as ConstantOfShape(Shape(x)): a tensor as large as the batch
    return _model([helper.make_node("Shape", ["r1"], ["shp"], name="shape"),
                   helper.make_node("ConstantOfShape", ["shp"], ["z"], name="zeros_like")])


def _batch_as_pad():
    # pads [N, 0, ..., 0]: padding by the batch size
    return _model([helper.make_node("Shape", ["r1"], ["shp"], name="shape"),
                   helper.make_node("Slice", ["shp", "s0", "e1", "axes0"], ["n"], name="slice_n"),
                   helper.make_node("Concat", ["n", "zeros7"], ["pads"], name="concat_pads", axis=0),
                   helper.make_node("Pad", ["r1", "pads"], ["padded"], name="pad_by_batch")],
                  [helper.make_tensor_value_info("padded", TensorProto.FLOAT, None)])


def cases(m):
    if np is None:
        return []
    insp = ["--inspect", "{case}/m.onnx"]
    C = []

    def case(name, regex, build, what):
        C.append(m.Case(name, 65, regex, argv=insp, config=False, prep=_prep(build), what=what))

    case("shape_batch_in_arithmetic", r"m\.onnx: node 'double_batch' \(Mul\): computes with the batch size",
         _batch_times_two, "x.shape[:2] * [2, 1] with a dynamic batch: arithmetic on the batch size is refused")
    case("shape_constantofshape_batch", r"node 'zeros_like' \(ConstantOfShape\): builds a tensor sized by the batch",
         _zeros_like_shape, "ConstantOfShape(Shape(x)) with a dynamic batch: a tensor sized by the batch is refused")
    case("shape_batch_as_pad_amount", r"node 'pad_by_batch': op Pad .*the batch size \(Shape of an activation\) "
         r"used other than as dimension 0 of a Reshape target or of Resize sizes",
         _batch_as_pad, "Pad amounts holding the batch size: refused naming the Pad node")
    return C
