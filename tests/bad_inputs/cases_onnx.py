"""Bad-input cases for crafted ONNX model files (docs/reliability.md, "Model files").

Every model is generated in the case's prep function with the onnx package (no committed blobs):
a tiny valid CIFAR CNN (Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm) with one thing made
hostile: int64 constant folding that overflows, shapes whose element count wraps or exceeds the
per-tensor cap, int64 attributes outside the int range, graphs the engine cannot run, control
characters in node names, and external data that is not a regular file inside the model's
directory. Each must give exit 65 (66 for a missing file) with one line naming the node, tensor
or file at fault - never a crash, a hang or undefined behaviour (run under ASan + UBSan too).
"""
import os
import subprocess

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # the catalogue still runs its other cases without the python test extras
    onnx = None

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


def _i64(name, vals, shape=None):
    a = np.array(vals, dtype=np.int64)
    if shape is not None:
        a = a.reshape(shape)
    return numpy_helper.from_array(a, name)


def _const(out, tensor, name=None):
    return helper.make_node("Constant", [], [out], name=name or out, value=tensor)


def _model(extra_nodes=(), extra_inits=(), in_shape=("N", 3, 32, 32), opset=13, conv_attrs=None, outputs=None,
           inputs=None, first_input="x", names=None):  # noqa: E501
    """The base CNN plus extra nodes (folded side chains are evaluated at load even when unused)."""
    rng = np.random.default_rng(5)
    names = names or {}
    inits = [numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32), "W1"),
             numpy_helper.from_array(np.zeros(4, np.float32), "B1"),
             numpy_helper.from_array((rng.standard_normal((10, 4)) * 0.3).astype(np.float32), "Wfc"),
             numpy_helper.from_array(np.zeros(10, np.float32), "Bfc")] + list(extra_inits)
    ca = {"pads": [1, 1, 1, 1]}
    ca.update(conv_attrs or {})
    nodes = [helper.make_node("Conv", [first_input, "W1", "B1"], ["c1"], name=names.get("conv", "conv1"), **ca),
             helper.make_node("Relu", ["c1"], ["r1"], name=names.get("relu", "relu1")),
             helper.make_node("GlobalAveragePool", ["r1"], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "Wfc", "Bfc"], ["y"], name=names.get("fc", "fc"), transB=1)]
    nodes = nodes + list(extra_nodes)
    ins = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))]
    outs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, [in_shape[0], 10])]
    g = helper.make_graph(nodes, "hostile", ins, outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="cases_onnx")
    m.opset_import[0].version = opset  # set after make_model: any int64, even out of range
    m.ir_version = 8
    return m


def _save(d, m, name="m.onnx"):
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(m.SerializeToString())
    return p


def _fold_binop(op, a, b, name):
    return [_const("ca_" + name, _i64("ca_" + name, [a])), _const("cb_" + name, _i64("cb_" + name, [b])),
            helper.make_node(op, ["ca_" + name, "cb_" + name], ["res_" + name], name=name)]


def _prep_model(build):
    def prep(d):
        _save(d, build())
        return {}
    return prep


def _ext_model(d, location):
    """A model whose conv weight W1 is stored externally at `location` (relative to the model)."""
    m = _model()
    t = [t for t in m.graph.initializer if t.name == "W1"][0]
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", location
    return _save(d, m)


def _prep_ext_symlink_devzero(d):
    os.symlink("/dev/zero", os.path.join(d, "w.bin"))
    _ext_model(d, "w.bin")
    return {}


def _prep_ext_fifo(d):
    os.mkfifo(os.path.join(d, "w.bin"))
    _ext_model(d, "w.bin")
    return {}


def _prep_ext_symlink_outside(d):
    outside = os.path.join(d, "outside")
    os.makedirs(os.path.join(d, "model"))
    with open(outside, "wb") as f:
        f.write(b"\0" * 4 * 108)
    os.symlink(outside, os.path.join(d, "model", "w.bin"))
    _ext_model(os.path.join(d, "model"), "w.bin")
    return {}


def _prep_ext_short(d):
    with open(os.path.join(d, "w.bin"), "wb") as f:
        f.write(b"\0" * 100)  # W1 needs 4*3*3*3 floats = 432 bytes
    _ext_model(d, "w.bin")
    return {}


def _prep_ext_dotdot(d):
    _ext_model(d, "../w.bin")
    return {}


def _prep_ext_dir(d):
    os.makedirs(os.path.join(d, "w.bin"))
    _ext_model(d, "w.bin")
    return {}


def _prep_model_fifo(d):
    os.mkfifo(os.path.join(d, "m.onnx"))
    return {}


def _check_inspect_escapes(m):
    """--inspect of a valid model whose node and value names hold terminal escape sequences and
    newlines: exit 0, and stdout holds no raw control character (they are printed as \\xNN)."""
    def prep(d):
        evil = "conv\x1b]0;pwned\x07\x1b[2J\nfake line\r"
        model = _model(names={"conv": evil, "relu": "relu\x9b31m"})
        p = _save(d, model)
        r = subprocess.run([m.BIN, "--inspect", p], capture_output=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("--inspect exit %d: %s" % (r.returncode, r.stderr.decode(errors="replace").strip()))
        out = r.stdout.decode("utf-8")  # must stay valid UTF-8
        bad = [c for c in out if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f]
        if bad:
            raise RuntimeError("--inspect printed raw control characters %r" % sorted(set(bad)))
        if "conv\\x1b]0;pwned\\x07\\x1b[2J\\nfake line\\r" not in out or "relu\\xc2\\x9b31m" not in out:
            raise RuntimeError("--inspect did not print the escaped names:\n" + out)
        return {"model": p}
    return prep


def cases(m):
    if onnx is None:
        return []
    C = []
    run = lambda model="{case}/m.onnx": m.tiny_config(model=model)
    insp = ["--inspect", "{case}/m.onnx"]

    def case(name, regex, build, what, expect=65, inspect=False):
        C.append(m.Case(name, expect, regex, prep=_prep_model(build), what=what,
                        **({"argv": insp, "config": False} if inspect else {"config": run()})))

    # --- int64 constant folding ---
    case("onnx_fold_div_int64_min", r"m\.onnx: node 'div_min' \(Div\): int64 overflow of -9223372036854775808 and -1",
         lambda: _model(_fold_binop("Div", INT64_MIN, -1, "div_min")), "folded int64 Div INT64_MIN / -1 (was SIGFPE)")
    case("onnx_fold_div_zero", r"node 'div_zero' \(Div\): int64 division by zero",
         lambda: _model(_fold_binop("Div", 7, 0, "div_zero")), "folded int64 Div by 0", inspect=True)
    case("onnx_fold_add_overflow", r"node 'add_big' \(Add\): int64 overflow",
         lambda: _model(_fold_binop("Add", INT64_MAX, 1, "add_big")), "folded int64 Add INT64_MAX + 1")
    case("onnx_fold_sub_overflow", r"node 'sub_big' \(Sub\): int64 overflow",
         lambda: _model(_fold_binop("Sub", INT64_MIN, 1, "sub_big")), "folded int64 Sub INT64_MIN - 1", inspect=True)
    case("onnx_fold_mul_overflow", r"node 'mul_big' \(Mul\): int64 overflow",
         lambda: _model(_fold_binop("Mul", 1 << 62, 4, "mul_big")), "folded int64 Mul 2^62 * 4", inspect=True)
    case("onnx_fold_cast_nan_to_int", r"node 'cast_nan' \(Cast\): element 1 is not a finite value in the int64 range",
         lambda: _model([_const("fnan", numpy_helper.from_array(np.array([1.0, np.nan], np.float32), "fnan")),
                         helper.make_node("Cast", ["fnan"], ["inan"], name="cast_nan", to=TensorProto.INT64)]),
         "folded Cast of NaN to int64 (was undefined behaviour)", inspect=True)
    case("onnx_fold_cast_huge_to_int", r"node 'cast_big' \(Cast\): element 0 is not a finite value",
         lambda: _model([_const("fbig", numpy_helper.from_array(np.array([1e30], np.float32), "fbig")),
                         helper.make_node("Cast", ["fbig"], ["ibig"], name="cast_big", to=TensorProto.INT64)]),
         "folded Cast of 1e30 to int64", inspect=True)
    # --- shapes that wrap or exceed the per-tensor cap ---
    case("onnx_cos_wrap_transpose", r"node 'cos_wrap' \(ConstantOfShape\): result shape \[4294967296,4294967296\]",
         lambda: _model([_const("shp", _i64("shp", [1 << 32, 1 << 32])),
                         helper.make_node("ConstantOfShape", ["shp"], ["big"], name="cos_wrap"),
                         helper.make_node("Transpose", ["big"], ["bigT"], name="tr", perm=[1, 0])]),
         "ConstantOfShape [2^32, 2^32] (product wraps to 0) then Transpose (was SIGSEGV)")
    case("onnx_cos_wrap_reshape", r"node 'cos_wrap2' \(ConstantOfShape\): result shape \[8589934592,2147483648\]",
         lambda: _model([_const("shp", _i64("shp", [1 << 33, 1 << 31])),
                         helper.make_node("ConstantOfShape", ["shp"], ["big"], name="cos_wrap2"),
                         _const("rs", _i64("rs", [-1])),
                         helper.make_node("Reshape", ["big", "rs"], ["flatbig"], name="rsh")]),
         "ConstantOfShape [2^33, 2^31] then Reshape (was SIGSEGV)", inspect=True)
    case("onnx_cos_negative_dims", r"node 'cos_neg' \(ConstantOfShape\): result shape \[-1,-1\] has a negative",
         lambda: _model([_const("shp", _i64("shp", [-1, -1])),
                         helper.make_node("ConstantOfShape", ["shp"], ["neg"], name="cos_neg")]),
         "ConstantOfShape [-1, -1] (was kept with negative dims)", inspect=True)
    case("onnx_cos_2p32_elements", r"node 'cos_4g' \(ConstantOfShape\): result shape \[65536,65536\] .*more than "
         r"2147483647 elements",
         lambda: _model([_const("shp", _i64("shp", [65536, 65536])),
                         helper.make_node("ConstantOfShape", ["shp"], ["c4g"], name="cos_4g")]),
         "ConstantOfShape of 2^32 elements")
    case("onnx_fold_amplification", r"node 'cat2' \(Concat\): constant folding would compute 33554432 more elements, "
         r"over its budget",
         lambda: _model([_const("shp", _i64("shp", [2, 1 << 23])),
                         helper.make_node("ConstantOfShape", ["shp"], ["c16m"], name="cos_16m"),
                         helper.make_node("Concat", ["c16m", "c16m"], ["c32m"], name="cat2", axis=0)]),
         "a 300-byte model folding 2^24 + 2^25 elements (found by fuzz_onnx as a 14 s timeout)", inspect=True)
    case("onnx_fold_reshape_negative", r"node 'rsh_neg' \(Reshape\): bad target dim -5",
         lambda: _model([_const("v6", _i64("v6", list(range(6)))), _const("rs", _i64("rs", [-5, -1])),
                         helper.make_node("Reshape", ["v6", "rs"], ["v6r"], name="rsh_neg")]),
         "folded Reshape to [-5, -1]", inspect=True)
    case("onnx_fold_transpose_dup_perm", r"node 'tr_dup' \(Transpose\): perm is not a permutation",
         lambda: _model([_const("v", _i64("v", list(range(1000)), (1000, 1))),
                         helper.make_node("Transpose", ["v"], ["vt"], name="tr_dup", perm=[1, 1])]),
         "folded Transpose with perm [1, 1] (was a heap overflow)", inspect=True)
    case("onnx_input_2p32_elements", r"m\.onnx: graph input 'x' has shape \[1,1,65536,65536\]: more than 2147483647",
         lambda: _model(in_shape=(1, 1, 65536, 65536)), "graph input of 2^32 elements (was exit 70)")
    case("onnx_input_dim_2p40", r"graph input 'x' has shape \[N,3,1099511627776,32\]|graph input 'x' has shape "
         r"\[1,3,1099511627776,32\]", lambda: _model(in_shape=("N", 3, 1 << 40, 32)),
         "graph input dimension 2^40 (was exit 75 + UBSan)")
    case("onnx_input_dim_2p32_32", r"graph input 'x' has shape \[1,3,4294967328,32\]",
         lambda: _model(in_shape=(1, 3, (1 << 32) + 32, 32)), "graph input dimension 2^32+32 (was exit 70 + UBSan)")
    case("onnx_conv_pads_2p30", r"node 'conv1' \(Conv\): padded input 2147483680 .*exceeds 2147483647",
         lambda: _model(conv_attrs={"pads": [1 << 30] * 4}), "Conv pads of 2^30 (was exit 75 + UBSan)")
    case("onnx_pad_int64_max", r"node 'pad_big' \(Pad\): pads 9223372036854775807 \+ 0 on dimension 3",
         lambda: _model([_const("pp", _i64("pp", [0, 0, 0, INT64_MAX, 0, 0, 0, 0])),
                         helper.make_node("Pad", ["r1", "pp"], ["padded"], name="pad_big"),
                         helper.make_node("Relu", ["padded"], ["y2"], name="relu_pad")],
                        outputs=[helper.make_tensor_value_info("y2", TensorProto.FLOAT, None)]),
         "Pad of INT64_MAX on an activation", inspect=True)
    case("onnx_reshape_act_overflow", r"node 'rsh_big' \(Reshape\): target shape has more than 2147483647 elements",
         lambda: _model([_const("rs", _i64("rs", [0, 1 << 40, 1 << 40])),
                         helper.make_node("Reshape", ["r1", "rs"], ["rr"], name="rsh_big"),
                         helper.make_node("Relu", ["rr"], ["y2"], name="relu_r")],
                        outputs=[helper.make_tensor_value_info("y2", TensorProto.FLOAT, None)]),
         "Reshape of an activation to [0, 2^40, 2^40]", inspect=True)
    # --- Slice with extreme steps: valid, must not be undefined behaviour ---
    def slice_model():
        s = [_const("st", _i64("st", [0, -1])), _const("en", _i64("en", [INT64_MAX, INT64_MIN])),
             _const("ax", _i64("ax", [2, 3])), _const("sp", _i64("sp", [INT64_MAX, INT64_MIN])),
             helper.make_node("Slice", ["r1", "st", "en", "ax", "sp"], ["sl"], name="slice_extreme"),
             _const("cv", _i64("cv", list(range(10)))), _const("cst", _i64("cst", [5])),
             _const("cen", _i64("cen", [INT64_MIN])), _const("cax", _i64("cax", [0])),
             _const("csp", _i64("csp", [INT64_MIN])),
             helper.make_node("Slice", ["cv", "cst", "cen", "cax", "csp"], ["csl"], name="slice_const_min")]
        return _model(s)
    C.append(m.Case("onnx_slice_empty_negative_step", 0, None, argv=insp, config=False, check_partial=False,
                    prep=_prep_model(lambda: _model([
                        _const("shp", _i64("shp", [3, 0])),
                        helper.make_node("ConstantOfShape", ["shp"], ["empty"], name="cos_empty"),
                        _const("st", _i64("st", [-1])), _const("en", _i64("en", [INT64_MIN])),
                        _const("ax", _i64("ax", [1])), _const("sp", _i64("sp", [-2])),
                        helper.make_node("Slice", ["empty", "st", "en", "ax", "sp"], ["sl"], name="slice_empty")])),
                    what="folded Slice with a negative step over an empty dimension selects nothing (fuzz_onnx found "
                    "a heap overflow)"))
    C.append(m.Case("onnx_slice_step_extremes", 0, None, argv=insp, config=False, prep=_prep_model(slice_model),
                    check_partial=False, what="Slice steps INT64_MAX / INT64_MIN on an activation and a constant "
                    "(--inspect succeeds; was UBSan)"))
    # --- int64 attributes that do not fit an int ---
    case("onnx_opset_2p32_13", r"m\.onnx: opset 4294967309 is not supported", lambda: _model(opset=(1 << 32) + 13),
         "opset 2^32+13 (was read as 13)", inspect=True)
    case("onnx_conv_stride_2p32_1", r"node 'conv1' \(Conv\): strides\[0\] is 4294967297",
         lambda: _model(conv_attrs={"strides": [(1 << 32) + 1, 1]}), "Conv strides 2^32+1 (was read as 1)")
    case("onnx_conv_group_2p32_1", r"node 'conv1' \(Conv\): attribute 'group' is 4294967297",
         lambda: _model(conv_attrs={"group": (1 << 32) + 1}), "Conv group 2^32+1 (was read as 1)", inspect=True)
    case("onnx_conv_kernel_negative", r"node 'conv1' \(Conv\): kernel_shape\[1\] is -3",
         lambda: _model(conv_attrs={"kernel_shape": [3, -3]}), "Conv kernel_shape [3, -3]", inspect=True)
    # --- graphs the engine cannot run: rejected at load, so --inspect and a run agree ---
    case("onnx_output_is_input", r"m\.onnx: graph output 'x' is the graph input",
         lambda: _model(outputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])]),
         "graph output that is the graph input (was a heap overflow in reconstruction)")
    case("onnx_output_is_input_inspect", r"m\.onnx: graph output 'x' is the graph input",
         lambda: _model(outputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])]),
         "same, --inspect rejects it too", inspect=True)
    vi = lambda n, shp: helper.make_tensor_value_info(n, TensorProto.FLOAT, shp)
    C.append(m.Case("onnx_dead_nodes_after_output", 0, None, config=run(),
                    prep=_prep_model(lambda: _model(outputs=[vi("r1", ["N", 4, 32, 32])])),
                    what="graph output is the conv's Relu; GAP/Flatten/Gemm after it reach no output: pruned at "
                    "load, the run succeeds (was a heap overflow in reconstruction)"))
    C.append(m.Case("onnx_two_outputs_run", 65, r"needs exactly one graph input and one output \(found 1 and 2\)",
                    config=run(), prep=_prep_model(lambda: _model(outputs=[vi("y", ["N", 10]), vi("y", ["N", 10])])),
                    what="the same output listed twice: --inspect shows it, the run rejects it before computing"))
    # --- the batch size as a symbol: x.view(x.size(0), -1) imports; arithmetic on it does not ---
    def view_model(gather_index=0, scale=False):
        nodes = [helper.make_node("Shape", ["r1"], ["shp"], name="shape"),
                 _const("gi", _i64("gi", gather_index)),
                 helper.make_node("Gather", ["shp", "gi"], ["n0"], name="gather", axis=0),
                 _const("ax0", _i64("ax0", [0])),
                 helper.make_node("Unsqueeze", ["n0", "ax0"], ["n1"], name="unsqueeze")]
        if scale:
            nodes += [_const("two", _i64("two", [2])), helper.make_node("Mul", ["n1", "two"], ["n2"], name="times2")]
        nodes += [_const("m1", _i64("m1", [-1])),
                  helper.make_node("Concat", ["n2" if scale else "n1", "m1"], ["tgt"], name="concat", axis=0),
                  helper.make_node("Reshape", ["r1", "tgt"], ["flat2"], name="view"),
                  helper.make_node("Relu", ["flat2"], ["y2"], name="relu_v")]
        return _model(nodes, outputs=[helper.make_tensor_value_info("y2", TensorProto.FLOAT, None)])
    C.append(m.Case("onnx_view_batch_ok", 0, None, argv=insp, config=False, check_partial=False,
                    prep=_prep_model(view_model), what="x.view(x.size(0), -1) as torch exports it: imports"))
    case("onnx_view_batch_times_two", r"node 'times2' \(Mul\): computes with the batch size",
         lambda: view_model(scale=True), "x.view(x.size(0) * 2, -1): arithmetic on the batch size is refused",
         inspect=True)
    case("onnx_view_size1", r"node 'view' \(Reshape\): the target shape must keep the batch as dimension 0",
         lambda: view_model(gather_index=1), "x.view(x.size(1), -1): the static channel count folds, but a target "
         "that moves it into dimension 0 mixes the batch into it", inspect=True)
    # --- names with control characters: one error line, escaped ---
    case("onnx_name_control_chars", r"node 'odd\\x1b\[2J.op': op Sin",
         lambda: _model([helper.make_node("Sin", ["r1"], ["s1"], name="odd\x1b[2J\nop")]),
         "unsupported node named with ESC and newline: the error stays one escaped line", inspect=True)
    C.append(m.Case("onnx_inspect_escapes_names", 0, None, argv=["--inspect", "{model}"], config=False,
                    prep=_check_inspect_escapes(m), check_partial=False,
                    what="--inspect prints node names with terminal escapes as \\xNN"))
    # --- external data and the model file itself: regular files inside the model's directory ---
    C.append(m.Case("onnx_ext_symlink_devzero", 65, r"initializer 'W1': external data 'w\.bin' resolves to '/dev/zero', "
                    r"outside the model's directory", config=run(), prep=_prep_ext_symlink_devzero,
                    what="external data is a symlink to /dev/zero (was loaded as zero weights)"))
    C.append(m.Case("onnx_ext_fifo", 65, r"external data '.*w\.bin' of initializer 'W1' is not a regular file",
                    config=run(), prep=_prep_ext_fifo, what="external data is a FIFO (was blocking forever)"))
    C.append(m.Case("onnx_ext_symlink_outside", 65, r"external data 'w\.bin' resolves to '.*/outside', outside",
                    config=run("{case}/model/m.onnx"), prep=_prep_ext_symlink_outside,
                    what="external data symlink to a file outside the model directory"))
    C.append(m.Case("onnx_ext_too_short", 65, r"external data file '.*w\.bin' is too short for initializer 'W1' "
                    r"\(100 bytes; needs offset 0 \+ 432 bytes\)", argv=insp, config=False, prep=_prep_ext_short,
                    what="external data file shorter than the tensor"))
    C.append(m.Case("onnx_ext_dotdot", 65, r"external data location '\.\./w\.bin' must be a relative path inside",
                    argv=insp, config=False, prep=_prep_ext_dotdot, what="external data location with '..'"))
    C.append(m.Case("onnx_ext_directory", 65, r"external data '.*w\.bin' of initializer 'W1' is not a regular file",
                    argv=insp, config=False, prep=_prep_ext_dir, what="external data location is a directory"))
    C.append(m.Case("onnx_model_fifo", 66, r"m\.onnx: is a FIFO .*expected a regular file \(ONNX model\)", argv=insp,
                    config=False, prep=_prep_model_fifo, what="--inspect on a FIFO (was blocking forever)"))
    return C
