#!/usr/bin/env python3
"""tests/fuzz/make_corpus.py: regenerate the committed seed corpora under tests/fuzz/corpus/.

Small valid inputs (so the fuzzer starts from deep paths) plus a few invalid ones. Run from the
repository root: python3 tests/fuzz/make_corpus.py. Needs numpy, Pillow and onnx (tests only)."""
import io
import json
import os
import shutil
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def config_corpus():
    put("config", "default.json", open(os.path.join(ROOT, "configs", "default.json"), "rb").read())
    full = {
        "model": {"path": "m.onnx", "type": "onnx"},
        "data": {"calib_path": "calib", "val_path": "val", "val_labels_path": "", "preprocess": "imagenet",
                 "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "input_size": 224,
                 "resize_size": 256, "skip_corrupt": True, "task": "classification", "max_seq_len": 128},
        "quant": {"w_qconfig": {"bit": 2, "symmetric": False, "ch_axis": 0},
                  "a_qconfig": {"bit": 4, "symmetric": False, "ch_axis": -1},
                  "calibrate": 64, "act_calib_samples": 32, "first_last_8bit": True, "brecq_setting": False,
                  "mode": "nodrop",
                  "recon": {"iters": 2, "batch_size": 8, "scale_lr": 4e-5, "warm_up": 0.2, "weight": 0.01,
                            "b_range": [20, 2], "drop_prob": 0.5, "keep_gpu": True, "lsq_grad_scale": True,
                            "early_stop": True, "early_stop_window": 50, "early_stop_min_delta": 0.001,
                            "log_every": 1, "nan_retries": 2}},
        "process": {"seed": 18446744073709551615, "threads": 2},
        "device": {"type": "cpu", "deterministic": True, "tf32": False, "memory_budget_mb": 1024},
        "eval": {"enabled": False, "batch_size": 250, "max_images": 500, "fp32": True},
        "output": {"dir": "runs/x", "export_onnx": True, "onnx_opset": 21, "int4_weights": True, "plots": False},
    }
    put("config", "full.json", json.dumps(full, indent=1))
    put("config", "bert.json", json.dumps({"model": {"path": "bert-dir", "type": "bert"},
                                           "data": {"task": "stsb", "max_seq_len": 64, "preprocess": "none"},
                                           "quant": {"mode": "brecq", "w_qconfig": {"bit": 8}}}))
    for i, mode in enumerate(["case1", "case2", "case3", "adaround", "nearest", "qdrop"]):
        put("config", "mode_%d.json" % i, json.dumps({"quant": {"mode": mode, "recon": {"drop_prob": 1.0}}}))
    put("config", "bad_range.json", '{"quant": {"w_qconfig": {"bit": 9}, "recon": {"drop_prob": 1.5}}}')
    put("config", "bad_type.json", '{"quant": {"recon": {"iters": "many", "b_range": [2]}}, "eval": {"enabled": 1}}')
    put("config", "unknown_key.json", '{"quant": {"reconn": {}}, "extra": null}')
    put("config", "malformed.json", '{"quant": {"recon": {"iters": 2,, }}')
    put("config", "escapes.json", '{"model": {"path": "a\\u00e9\\ud83d\\ude00\\n\\t\\"b"}, "data": {"mean": [1e308, -1e-308, 0]}}')
    put("config", "deep.json", "[" * 64 + "]" * 64)
    put("config", "nul_in_path.json", '{"output": {"dir": "o_nul\\u0000/../../etc/evil"}}')
    put("config", "escaped_backslash_u0000.json", '{"output": {"dir": "a\\\\u0000b"}}')
    put("config", "deep_30000.json", "[" * 30000 + "]" * 30000)
    put("config", "non_utf8_path.json", b'{"model": {"path": "m\xe9\xff.onnx"}}')
    put("config", "numbers.json", '{"quant": {"calibrate": 1e400, "w_qconfig": {"bit": 4.0}, "recon": {"iters": -0}}}')


def patch_sof(jpeg, w, h):
    """Rewrite the frame size in the SOF header (the scan data no longer matches it)."""
    b = bytearray(jpeg)
    i = 2
    while i + 4 < len(b):
        mk, ln = b[i + 1], struct.unpack_from(">H", b, i + 2)[0]
        if mk in (0xC0, 0xC1, 0xC2):
            struct.pack_into(">HH", b, i + 5, h, w)
            return bytes(b)
        i += 2 + ln
    raise ValueError("no SOF marker")


def many_scans(nscans=600):
    """A 32x32 progressive JPEG whose last scan is repeated (the scan-count time bomb)."""
    from PIL import Image
    rnd = np.random.RandomState(1)
    img = Image.fromarray(rnd.randint(0, 256, (32, 32, 3)).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", progressive=True, quality=90)
    j = buf.getvalue()
    last = j[j.rfind(b"\xff\xda"):-2]
    return j[:-2] + last * nscans + b"\xff\xd9"


def jpeg_corpus():
    from PIL import Image
    for cls, idx in (("airplane", "0000"), ("cat", "0003"), ("truck", "0001")):
        p = os.path.join(ROOT, "assets", "cifar10", "train-calib", cls, idx + ".jpg")
        if os.path.exists(p):
            shutil.copy(p, os.path.join(OUT, "jpeg", "cifar_%s.jpg" % cls))
    for n in ("color420.jpg", "gray.jpg", "progressive.jpg"):
        shutil.copy(os.path.join(ROOT, "tests", "fixtures", "data", n), os.path.join(OUT, "jpeg", n))
    rng = np.random.default_rng(7)
    def save(img, name, **kw):
        b = io.BytesIO()
        img.save(b, format="JPEG", **kw)
        put("jpeg", name, b.getvalue())
    px = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    save(Image.fromarray(px), "rgb444.jpg", subsampling=0, quality=90)
    save(Image.fromarray(px), "rgb422.jpg", subsampling=1, quality=50)
    save(Image.fromarray(px[:, :, 0]), "gray_small.jpg")
    save(Image.fromarray(px).convert("CMYK"), "cmyk.jpg")
    save(Image.fromarray(px), "restart.jpg", progressive=True, optimize=True)
    save(Image.fromarray(px[:1, :1]), "1x1.jpg")
    save(Image.new("RGB", (1, 37633), (120, 30, 200)), "thin_1x37633.jpg", quality=90)
    small = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 30, 200)).save(small, format="JPEG", quality=90)
    put("jpeg", "header_16000x16000.jpg", patch_sof(small.getvalue(), 16000, 16000))
    put("jpeg", "header_8000x6000.jpg", patch_sof(small.getvalue(), 8000, 6000))
    put("jpeg", "progressive_600_scans.jpg", many_scans())
    good = open(os.path.join(OUT, "jpeg", "rgb444.jpg"), "rb").read()
    put("jpeg", "truncated.jpg", good[: len(good) // 2])
    put("jpeg", "soi_only.jpg", b"\xff\xd8\xff\xd9")


def npy_header(descr, shape, fortran=False, version=(1, 0)):
    d = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, "True" if fortran else "False", "(%s)" % "".join("%d, " % s for s in shape) if len(shape) != 1 else "(%d,)" % shape[0])
    hl = 2 if version[0] == 1 else 4
    pad = (64 - (6 + 2 + hl + len(d) + 1) % 64) % 64
    d = d + " " * pad + "\n"
    fmt = "<H" if version[0] == 1 else "<I"
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, len(d)) + d.encode("latin1")


def npy_corpus():
    rng = np.random.default_rng(3)
    def save(arr, name):
        b = io.BytesIO()
        np.save(b, arr)
        put("npy", name, b.getvalue())
    save(rng.standard_normal((2, 3, 4, 4)).astype(np.float32), "f4_nchw.npy")
    save(rng.standard_normal((2, 3)).astype(np.float64), "f8_2d.npy")
    save(np.arange(5, dtype=np.int64), "i8_labels.npy")
    save(np.arange(5, dtype=np.int32), "i4_labels.npy")
    save(np.arange(5, dtype=np.uint8), "u1.npy")
    save(np.float32(3.5), "scalar.npy")
    save(np.zeros((0, 3), np.float32), "empty.npy")
    x = rng.standard_normal((1, 2, 2)).astype(np.float32)
    put("npy", "v2.npy", npy_header("<f4", x.shape, version=(2, 0)) + x.tobytes())
    put("npy", "v3.npy", npy_header("<f4", x.shape, version=(3, 0)) + x.tobytes())
    put("npy", "fortran.npy", npy_header("<f4", x.shape, fortran=True) + x.tobytes())
    put("npy", "big_endian.npy", npy_header(">f4", x.shape) + x.byteswap().tobytes())
    put("npy", "short.npy", npy_header("<f4", (4, 4)) + x.tobytes())
    put("npy", "huge_shape.npy", npy_header("<f4", (2 ** 31, 2 ** 31, 2 ** 31)) + x.tobytes())
    put("npy", "neg_shape.npy", npy_header("<f4", (-1, 3)) + x.tobytes())
    put("npy", "header_only.npy", b"\x93NUMPY\x01\x00")
    bad = os.path.join(ROOT, "tests", "bad_inputs", "data")
    if os.path.isdir(bad):
        for n in sorted(os.listdir(bad)):
            if n.endswith(".npy") and os.path.getsize(os.path.join(bad, n)) < 4096:
                shutil.copy(os.path.join(bad, n), os.path.join(OUT, "npy", "bad_" + n))


def onnx_corpus():
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    golden = os.path.join(ROOT, "tests", "golden", "iter_block.onnx")
    if os.path.exists(golden):
        shutil.copy(golden, os.path.join(OUT, "onnx", "iter_block.onnx"))
    rng = np.random.default_rng(5)

    def model(nodes, inits, inp, out, name, opset=13):
        g = helper.make_graph(nodes, name, inp, out, initializer=inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="qdrop-fuzz")
        m.ir_version = 7
        put("onnx", name + ".onnx", m.SerializeToString())

    f = TensorProto.FLOAT
    W = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W")
    B = numpy_helper.from_array(np.zeros(4, np.float32), "B")
    x = helper.make_tensor_value_info("x", f, ["N", 3, 8, 8])
    # conv + bn + relu + pool + flatten + gemm: the CIFAR ResNet vocabulary
    scale = numpy_helper.from_array(np.ones(4, np.float32), "s")
    bias = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    mean = numpy_helper.from_array(np.zeros(4, np.float32), "m")
    var = numpy_helper.from_array(np.ones(4, np.float32), "v")
    FW = numpy_helper.from_array(rng.standard_normal((10, 4)).astype(np.float32), "FW")
    FB = numpy_helper.from_array(np.zeros(10, np.float32), "FB")
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1], kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn"], epsilon=1e-5),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("Add", ["r", "bn"], ["a"]),
        helper.make_node("GlobalAveragePool", ["a"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "FW", "FB"], ["y"], transB=1),
    ]
    model(nodes, [W, B, scale, bias, mean, var, FW, FB], [x], [helper.make_tensor_value_info("y", f, ["N", 10])],
          "conv_bn_gemm")
    nodes2 = [
        helper.make_node("Conv", ["x", "W"], ["c"], pads=[0, 0, 0, 0], strides=[2, 2], group=1),
        helper.make_node("Clip", ["c"], ["r6"], min=0.0, max=6.0) if False else helper.make_node("Relu", ["c"], ["r6"]),
        helper.make_node("MaxPool", ["r6"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["mp", "shape"], ["rs"]),
        helper.make_node("MatMul", ["rs", "MW"], ["y"]),
    ]
    shape = numpy_helper.from_array(np.array([-1, 4], np.int64), "shape")
    MW = numpy_helper.from_array(rng.standard_normal((4, 5)).astype(np.float32), "MW")
    model(nodes2, [W, shape, MW], [helper.make_tensor_value_info("x", f, [1, 3, 5, 5])],
          [helper.make_tensor_value_info("y", f, None)], "conv_pool_matmul")
    model([helper.make_node("Identity", ["x"], ["y"])], [], [x], [helper.make_tensor_value_info("y", f, None)],
          "identity")
    model([helper.make_node("LSTM", ["x"], ["y"])], [], [x], [helper.make_tensor_value_info("y", f, None)],
          "unsupported_op")
    # external data reference (the reader must not follow it out of the model directory)
    ext = TensorProto()
    ext.name = "W"
    ext.data_type = f
    ext.dims.extend([4, 3, 3, 3])
    ext.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../../../etc/passwd"), ("offset", "0"), ("length", "432")):
        e = ext.external_data.add()
        e.key, e.value = k, v
    model([helper.make_node("Conv", ["x", "W"], ["y"])], [ext], [x], [helper.make_tensor_value_info("y", f, None)],
          "external_data")
    # many initializers and constant-foldable nodes (Identity, Shape->Gather->Reshape on constants):
    # the reader's value table grows past its initial capacity while folding
    cinits = [numpy_helper.from_array(np.full((2,), i, np.float32), "k%d" % i) for i in range(48)]
    cinits.append(numpy_helper.from_array(np.array(0, np.int64), "zero"))
    fold = [helper.make_node("Identity", ["k0"], ["k0b"], name="fold_identity"),
            helper.make_node("Shape", ["k1"], ["k1s"], name="fold_shape"),
            helper.make_node("Gather", ["k1s", "zero"], ["k1g"], name="fold_gather", axis=0),
            helper.make_node("Add", ["x2", "k0b"], ["y"], name="add")]
    model(fold, cinits, [helper.make_tensor_value_info("x2", f, ["N", 2])],
          [helper.make_tensor_value_info("y", f, ["N", 2])], "constant_folding")
    raw = open(os.path.join(OUT, "onnx", "conv_bn_gemm.onnx"), "rb").read()
    put("onnx", "truncated.onnx", raw[: len(raw) // 2])
    put("onnx", "random.onnx", bytes(rng.integers(0, 256, 256, dtype=np.uint8)))
    onnx_fold_shape_seeds(model, rng)


def onnx_fold_shape_seeds(model, rng):
    """Seeds that reach constant folding (every foldable op, int64 values at the overflow
    boundaries that are still valid) and shape inference (Pad, Slice, Reshape, Concat, Transpose,
    Softmax, ReduceMean, auto_pad Conv/pools) with valid graphs, so mutations start deep inside."""
    from onnx import TensorProto, helper, numpy_helper
    f = TensorProto.FLOAT
    i64 = lambda n, v: numpy_helper.from_array(np.array(v, np.int64), n)
    x = helper.make_tensor_value_info("x", f, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", f, None)
    W = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W")
    big, small = (1 << 63) - 1, -(1 << 63)
    # int64 folding: every op on constants, values near the limits without overflowing
    inits = [i64("a", [big - 5, small + 5, 7, -7]), i64("b", [5, -5, 2, 3]), i64("shp", [2, 3]),
             i64("ax0", [0]), i64("ax1", [1]), i64("st", [0, -1]), i64("en", [big, small]),
             i64("sax", [0, 1]), i64("sp", [1, -2]), i64("idx", [1, -1]), i64("rs", [3, -1])]
    fold = [
        helper.make_node("Add", ["a", "b"], ["s_add"], name="f_add"),
        helper.make_node("Sub", ["a", "b"], ["s_sub"], name="f_sub"),
        helper.make_node("Mul", ["b", "b"], ["s_mul"], name="f_mul"),
        helper.make_node("Div", ["a", "b"], ["s_div"], name="f_div"),
        helper.make_node("ConstantOfShape", ["shp"], ["cos"], name="f_cos",
                         value=numpy_helper.from_array(np.array([3], np.int64), "v")),
        helper.make_node("Concat", ["cos", "cos"], ["cat"], name="f_concat", axis=0),
        helper.make_node("Transpose", ["cat"], ["tr"], name="f_transpose", perm=[1, 0]),
        helper.make_node("Slice", ["tr", "st", "en", "sax", "sp"], ["sl"], name="f_slice"),
        helper.make_node("Gather", ["a", "idx"], ["ga"], name="f_gather", axis=0),
        helper.make_node("Unsqueeze", ["ga", "ax1"], ["un"], name="f_unsqueeze"),
        helper.make_node("Squeeze", ["un", "ax1"], ["sq"], name="f_squeeze"),
        helper.make_node("Reshape", ["tr", "rs"], ["re"], name="f_reshape"),
        helper.make_node("Flatten", ["re"], ["fl"], name="f_flatten", axis=1),
        helper.make_node("Cast", ["fl"], ["cf"], name="f_cast", to=f),
        helper.make_node("Cast", ["cf"], ["ci"], name="f_cast_back", to=TensorProto.INT64),
        helper.make_node("Shape", ["ci"], ["sh"], name="f_shape"),
        helper.make_node("Relu", ["x"], ["y"], name="relu"),
    ]
    model(fold, inits, [x], [y], "fold_int64_ops")
    # shape inference over the activation ops, with auto_pad and Slice/Pad/Reshape resolved from
    # constant inputs
    sinits = [W, i64("pads", [0, 0, 1, 0, 0, 0, 0, 1]), i64("ss", [1, 0]), i64("se", [big, -1]),
              i64("sa", [2, 3]), i64("sst", [2, big]), i64("rshape", [0, 4, -1]), i64("perm_unused", [0])]
    shape_nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv_same", auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("MaxPool", ["c"], ["mp"], name="pool_same", auto_pad="SAME_LOWER", kernel_shape=[3, 3]),
        helper.make_node("AveragePool", ["mp"], ["ap"], name="pool_valid", auto_pad="VALID", kernel_shape=[2, 2]),
        helper.make_node("Pad", ["ap", "pads"], ["pd"], name="pad"),
        helper.make_node("Slice", ["pd", "ss", "se", "sa", "sst"], ["sl"], name="slice"),
        helper.make_node("Reshape", ["sl", "rshape"], ["rsh"], name="reshape"),
        helper.make_node("Transpose", ["rsh"], ["tp"], name="transpose", perm=[0, 2, 1]),
        helper.make_node("Softmax", ["tp"], ["sm"], name="softmax", axis=-1),
        helper.make_node("Concat", ["sm", "sm"], ["cc"], name="concat", axis=1),
        helper.make_node("ReduceMean", ["cc"], ["y"], name="mean", axes=[1], keepdims=0),
    ]
    model(shape_nodes, sinits, [x], [y], "shape_inference_ops")
    # a 2^31-1-element boundary that must be rejected without allocating, and a valid wide input
    model([helper.make_node("ConstantOfShape", ["bshp"], ["bc"], name="cos_cap"),
           helper.make_node("Relu", ["x"], ["y"], name="relu")], [i64("bshp", [46341, 46341])], [x], [y],
          "fold_cap_boundary")
    model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [],
          [helper.make_tensor_value_info("x", f, [1, 1, 1, 1 << 20])], [y], "wide_input")
    # exporter spellings (docs/architecture.md "ONNX import"): Resize scales/sizes and its string
    # attributes, Upsample, hard activations, a squeeze-and-excitation gate, Squeeze/Unsqueeze
    f32 = lambda n, v: numpy_helper.from_array(np.array(v, np.float32), n)
    W1 = numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "W1")
    imp = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("HardSwish", ["c"], ["h"], name="hswish"),
        helper.make_node("ReduceMean", ["h"], ["m"], name="se_pool", axes=[2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "uax"], ["mu"], name="se_unsqueeze"),
        helper.make_node("Conv", ["mu", "W1"], ["e"], name="se_fc"),
        helper.make_node("HardSigmoid", ["e"], ["g"], name="se_gate", alpha=0.2, beta=0.5),
        helper.make_node("Mul", ["h", "g"], ["se"], name="se_mul"),
        helper.make_node("Resize", ["se", "", "rsc"], ["r1"], name="resize_scales", mode="linear",
                         coordinate_transformation_mode="pytorch_half_pixel"),
        helper.make_node("Resize", ["r1", "", "", "rsz"], ["r2"], name="resize_sizes", mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor", axes=[2, 3]),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
        helper.make_node("Squeeze", ["p", "uax"], ["y"], name="squeeze"),
    ]
    model(imp, [W, W1, i64("uax", [2, 3]), f32("rsc", [1, 1, 1.5, 0.5]), i64("rsz", [5, 7])], [x], [y],
          "import_ops", opset=18)
    model([helper.make_node("Upsample", ["x", "usc"], ["u"], name="upsample", mode="nearest"),
           helper.make_node("Relu", ["u"], ["y"], name="relu")], [f32("usc", [1, 1, 2, 3])], [x], [y],
          "upsample_opset9", opset=9)


def safetensors_corpus():
    def st(tensors, meta=None):
        hdr, blobs, off = {}, [], 0
        if meta is not None:
            hdr["__metadata__"] = meta
        for name, (dt, arr) in tensors.items():
            b = arr.tobytes()
            hdr[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
            blobs.append(b)
            off += len(b)
        h = json.dumps(hdr).encode()
        h += b" " * ((8 - len(h) % 8) % 8)
        return struct.pack("<Q", len(h)) + h + b"".join(blobs)
    rng = np.random.default_rng(9)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    put("safetensors", "f32.safetensors", st({"bert.embeddings.weight": ("F32", a), "b": ("F32", a[0])},
                                            {"format": "pt"}))
    put("safetensors", "f16_bf16.safetensors", st({"h": ("F16", a.astype(np.float16)),
                                                   "bf": ("BF16", (a.view(np.uint32) >> 16).astype(np.uint16)),
                                                   "d": ("F64", a.astype(np.float64))}))
    put("safetensors", "ints.safetensors", st({"i": ("I64", np.arange(4, dtype=np.int64)),
                                               "u": ("U8", np.arange(3, dtype=np.uint8)),
                                               "scalar": ("F32", np.float32(1.0).reshape(()))}))
    put("safetensors", "empty_header.safetensors", struct.pack("<Q", 2) + b"{}")
    good = st({"w": ("F32", a)})
    put("safetensors", "truncated.safetensors", good[:-5])
    put("safetensors", "huge_len.safetensors", struct.pack("<Q", 2 ** 63) + good[8:])
    bad = json.dumps({"w": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 8]}}).encode()
    put("safetensors", "size_mismatch.safetensors", struct.pack("<Q", len(bad)) + bad + a.tobytes())


def tokenizer_corpus():
    texts = ["The quick brown fox jumps!", "unaffable caf\u00e9\tworld", "\u4e2d\u6587 hello, world?",
             "CAF\u00c9  \u0301e\u00a0x\u3000y", "a" * 120, "\ufeff\u200b\x00\x7f[CLS] [MASK] ##s",
             "\U0001F600 emoji \ud7a3 \u0e01\u0e02"]
    for i, t in enumerate(texts):
        put("tokenizer", "text_%d" % i, bytes([2 * (i % 2)]) + t.encode("utf-8", "surrogatepass"))
    vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\nquick\n##ly\n\u00e9\n"
    put("tokenizer", "vocab_small", b"\x01" + vocab.encode())
    put("tokenizer", "vocab_crlf", b"\x03" + vocab.replace("\n", "\r\n").encode())
    put("tokenizer", "vocab_dup", b"\x01[PAD]\n[PAD]\n\n\n[UNK]")


def checkpoint_corpus():
    """Checkpoint bodies WITHOUT the trailing checksum (fuzz_checkpoint appends it), for the graph
    of tests/unit/ckpt_test_graph.h: weight quantizers of 2x3 and 3x2 elements, 2 activation
    quantizers, at most 2 units. Layout: src/recon/ckpt.c (qd_ckpt_save)."""
    def body(units, recon=(1, 0), ncurve=3, names=("block 0", "block 1")):
        b = b"QDCKPT01" + struct.pack("<QQ", 0x1111222233334444, 0x5555666677778888)
        b += struct.pack("<qq", units, 2)
        for k, (ch, per) in enumerate(((2, 3), (3, 2))):
            b += struct.pack("<qqq", ch, ch * per, recon[k])
            b += struct.pack("<%df" % ch, *[0.25 * (c + 1) for c in range(ch)])
            b += struct.pack("<%df" % ch, *[float(c + 3) for c in range(ch)])
            b += struct.pack("<%df" % (ch * per), *[0.125 * (i - 2) for i in range(ch * per)])
        b += struct.pack("<q", 2)
        for a in range(2):
            b += struct.pack("<ffq", 0.5 + a, float(a), 1)
        b += struct.pack("<q", units)
        for i in range(units):
            b += names[i].encode().ljust(128, b"\0")
            b += struct.pack("<qqqqq", 100, 100, 0, 1, 1)
            b += struct.pack("<7d", 1.0 + i, 0.5, 0.01, 10.0, 20.0, 0.0, 0.0)
            b += struct.pack("<q", ncurve)
            for c in range(ncurve):
                b += struct.pack("<dq", 1.0 / (c + 1), 50 * c)
        return b
    put("checkpoint", "units0.ckpt", body(0, recon=(0, 0)))
    put("checkpoint", "units1.ckpt", body(1))
    put("checkpoint", "units2.ckpt", body(2, recon=(1, 1)))
    put("checkpoint", "units2_nocurve.ckpt", body(2, recon=(1, 1), ncurve=0))
    put("checkpoint", "units_big.ckpt", body(0)[:24] + struct.pack("<q", 1 << 31) + body(0)[32:])
    put("checkpoint", "truncated.ckpt", body(2)[:300])
    put("checkpoint", "magic_only.ckpt", b"QDCKPT01")


def main():
    """python3 tests/fuzz/make_corpus.py [TARGET...]: regenerate every corpus, or only those named."""
    targets = {"config": config_corpus, "jpeg": jpeg_corpus, "npy": npy_corpus, "onnx": onnx_corpus,
               "safetensors": safetensors_corpus, "tokenizer": tokenizer_corpus, "checkpoint": checkpoint_corpus}
    want = sys.argv[1:] or list(targets)
    for t in want:
        if t not in targets:
            sys.exit("make_corpus: unknown target '%s' (%s)" % (t, ", ".join(targets)))
    os.makedirs(OUT, exist_ok=True)
    for t in want:
        os.makedirs(os.path.join(OUT, t), exist_ok=True)
        targets[t]()
    for t in sorted(os.listdir(OUT)):
        files = os.listdir(os.path.join(OUT, t))
        print("%-12s %3d files %7d bytes" % (t, len(files), sum(os.path.getsize(os.path.join(OUT, t, n)) for n in files)))


if __name__ == "__main__":
    sys.exit(main())
