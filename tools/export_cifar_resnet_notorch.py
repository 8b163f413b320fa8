#!/usr/bin/env python3
"""Write an akamaster CIFAR ResNet checkpoint (.th) as ONNX without PyTorch.

  python3 tools/export_cifar_resnet_notorch.py cifar-resnet56 \\
      --weights ../shared/data/cifar10-resnet-akamaster/resnet56-4bfd9763.th \\
      --out assets/models/resnet56_cifar10.onnx --verify

The same job as `tools/export_onnx.py cifar-resnetNN` for machines where torch cannot be
installed. The checkpoint (legacy, pre-1.6 `torch.save` pickle) is read with `pickle` and a
small unpickler that maps torch storages to numpy arrays; BatchNorm (eps 1e-5) is folded into
the convolutions; the graph is written with the `onnx` helper and reproduces, node for node,
what the TorchScript exporter produced for assets/models/resnet20_cifar10.onnx (opset 13,
input `input` [N,3,32,32], output `logits` [N,10], option-A shortcuts as Slice step 2 on H and
W, then a Pad of the channels whose pads are computed by the same Constant / ConstantOfShape /
Concat / Reshape / Slice / Transpose / Cast chain), so every reader that takes ResNet-20 takes
these too.

--verify compares ONNX Runtime with an independent numpy forward of the unfolded checkpoint
(BatchNorm applied as in eval mode) on random inputs; exit 1 above 1e-4 max relative error.
Needs numpy, onnx; --verify also needs onnxruntime.
"""
import argparse
import collections
import hashlib
import io
import pickle
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CIFAR = {"cifar-resnet20": 3, "cifar-resnet32": 5, "cifar-resnet44": 7, "cifar-resnet56": 9}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
BN_EPS = 1e-5
STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "LongStorage": np.int64,
                  "IntStorage": np.int32, "HalfStorage": np.float16}


# ---- legacy torch.save reader ----
class _StorageType:
    def __init__(self, name):
        self.dtype = STORAGE_DTYPES[name]


class _TensorRef:
    """A tensor view into a storage; materialised once the raw storages have been read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self, storages):
        flat = storages[self.storage["key"]]
        item = flat.itemsize
        return np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.size,
                                               strides=[s * item for s in self.stride]).copy()


def _rebuild_tensor_v2(storage, offset, size, stride, *_):
    return _TensorRef(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, f):
        super().__init__(f)
        self.storages = {}  # key -> {"type", "key", "numel"}; one dict per storage, shared by its views

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in checkpoint")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel, view_metadata)
        if pid[0] != "storage" or pid[5] is not None:
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        return self.storages.setdefault(pid[2], {"type": pid[1], "key": pid[2], "numel": pid[4]})


def load_legacy_checkpoint(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] == b"PK\x03\x04":
        sys.exit(f"{path}: zip-format torch checkpoint; this reader takes the legacy format only")
    f = io.BytesIO(data)
    if pickle.load(f) != LEGACY_MAGIC:
        sys.exit(f"{path}: not a legacy torch.save file (magic number)")
    pickle.load(f)  # protocol version
    sys_info = pickle.load(f)
    if not sys_info.get("little_endian", True):
        sys.exit(f"{path}: big-endian checkpoint")
    up = _Unpickler(f)
    obj = up.load()
    refs = up.storages
    keys = pickle.load(f)
    storages = {}
    for k in keys:
        (numel,) = struct.unpack("<q", f.read(8))
        dtype = refs[k]["type"].dtype
        storages[k] = np.frombuffer(f.read(numel * np.dtype(dtype).itemsize), dtype=dtype)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    out = collections.OrderedDict()
    for name, v in sd.items():
        name = name[len("module."):] if name.startswith("module.") else name
        out[name] = v.array(storages) if isinstance(v, _TensorRef) else v
    meta = {k: v for k, v in obj.items() if k != "state_dict"} if isinstance(obj, dict) else {}
    return out, meta


# ---- graph ----
def fold(sd, conv, bn):
    w = sd[conv + ".weight"].astype(np.float32)
    scale = sd[bn + ".weight"] / np.sqrt(sd[bn + ".running_var"] + np.float32(BN_EPS))
    wf = (w * scale.reshape(-1, 1, 1, 1)).astype(np.float32)
    bf = (sd[bn + ".bias"] - sd[bn + ".running_mean"] * scale).astype(np.float32)
    return wf, bf


def i64(vals):
    return numpy_helper.from_array(np.array(vals, dtype=np.int64))


class Builder:
    def __init__(self):
        self.nodes, self.inits, self.next_id = [], [], 0

    def node(self, op, inputs, output, name, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attrs))
        return output

    def const(self, scope, idx, tensor):
        out = f"{scope}/Constant{'' if idx == 0 else '_%d' % idx}_output_0"
        return self.node("Constant", [], out, f"{scope}/Constant{'' if idx == 0 else '_%d' % idx}", value=tensor)

    def conv(self, x, w, b, scope, stride):
        wn, bn = f"onnx::Conv_{self.next_id}", f"onnx::Conv_{self.next_id + 1}"
        self.next_id += 3  # the TorchScript exporter's numbering skips one per conv
        self.inits += [numpy_helper.from_array(w, wn), numpy_helper.from_array(b, bn)]
        return self.node("Conv", [x, wn, bn], f"{scope}/Conv_output_0", f"{scope}/Conv",
                         dilations=[1, 1], group=1, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride])

    def shortcut_a(self, x, scope, planes):
        """x[:, :, ::2, ::2] then F.pad(..., (0,0,0,0,p,p)) exactly as TorchScript exports it."""
        c = lambda i, v: self.const(scope, i, i64(v))
        s0 = self.node("Slice", [x, c(1, [0]), c(2, [2**63 - 1]), c(0, [2]), c(3, [2])],
                       f"{scope}/Slice_output_0", f"{scope}/Slice")
        s1 = self.node("Slice", [s0, c(5, [0]), c(6, [2**63 - 1]), c(4, [3]), c(7, [2])],
                       f"{scope}/Slice_1_output_0", f"{scope}/Slice_1")
        p = planes // 4
        n8 = c(8, [2])
        n9 = c(9, [0, 0, 0, 0, p, p])  # F.pad's tuple, last dim first
        zeros = self.node("ConstantOfShape", [n8], f"{scope}/ConstantOfShape_output_0", f"{scope}/ConstantOfShape",
                          value=i64([0]))
        cat = self.node("Concat", [n9, zeros], f"{scope}/Concat_output_0", f"{scope}/Concat", axis=0)
        rs = self.node("Reshape", [cat, c(10, [-1, 2])], f"{scope}/Reshape_output_0", f"{scope}/Reshape")
        n11, n12, n13, n14 = c(11, [0]), c(12, [-1]), c(13, [-(2**63) + 1]), c(14, [-1])
        sl = self.node("Slice", [rs, n12, n13, n11, n14], f"{scope}/Slice_2_output_0", f"{scope}/Slice_2")
        tr = self.node("Transpose", [sl], f"{scope}/Transpose_output_0", f"{scope}/Transpose", perm=[1, 0])
        r1 = self.node("Reshape", [tr, c(15, [-1])], f"{scope}/Reshape_1_output_0", f"{scope}/Reshape_1")
        cast = self.node("Cast", [r1], f"{scope}/Cast_output_0", f"{scope}/Cast", to=TensorProto.INT64)
        zero = self.const(scope, 16, numpy_helper.from_array(np.array(0.0, dtype=np.float32)))
        return self.node("Pad", [s1, cast, zero], f"{scope}/Pad_output_0", f"{scope}/Pad", mode="constant")


def build_graph(sd, n):
    b = Builder()
    b.next_id = 275  # the exporter's first free id for ResNet-20; any unique names would do
    w, bias = fold(sd, "conv1", "bn1")
    x = b.conv("input", w, bias, "/conv1", 1)
    x = b.node("Relu", [x], "/Relu_output_0", "/Relu")
    in_planes = 16
    for stage, planes in enumerate((16, 32, 64), start=1):
        for i in range(n):
            stride = 2 if (i == 0 and stage > 1) else 1
            pre = f"layer{stage}.{i}"
            scope = f"/layer{stage}/{pre}"
            w1, b1 = fold(sd, pre + ".conv1", pre + ".bn1")
            w2, b2 = fold(sd, pre + ".conv2", pre + ".bn2")
            h = b.conv(x, w1, b1, scope + "/conv1", stride)
            h = b.node("Relu", [h], f"{scope}/Relu_output_0", f"{scope}/Relu")
            h = b.conv(h, w2, b2, scope + "/conv2", 1)
            sc = x
            if stride != 1 or in_planes != planes:
                sc = b.shortcut_a(x, scope + "/shortcut", planes)
            h = b.node("Add", [h, sc], f"{scope}/Add_output_0", f"{scope}/Add")
            x = b.node("Relu", [h], f"{scope}/Relu_1_output_0", f"{scope}/Relu_1")
            in_planes = planes
    x = b.node("AveragePool", [x], "/AveragePool_output_0", "/AveragePool", ceil_mode=0, count_include_pad=1,
               kernel_shape=[8, 8], pads=[0, 0, 0, 0], strides=[8, 8])
    x = b.node("Flatten", [x], "/Flatten_output_0", "/Flatten", axis=1)
    b.inits = [numpy_helper.from_array(sd["linear.weight"].astype(np.float32), "linear.weight"),
               numpy_helper.from_array(sd["linear.bias"].astype(np.float32), "linear.bias")] + b.inits
    b.node("Gemm", [x, "linear.weight", "linear.bias"], "logits", "/linear/Gemm", alpha=1.0, beta=1.0, transB=1)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])
    g = helper.make_graph(b.nodes, "main_graph", [inp], [out], b.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="qdrop-gpu tools/export_cifar_resnet_notorch.py")
    m.ir_version = 7
    onnx.checker.check_model(m)
    return m


# ---- independent reference forward (unfolded BN, numpy) ----
def _conv3x3(x, w, stride):
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ho, wo = (h + 2 - 3) // stride + 1, (wd + 2 - 3) // stride + 1
    cols = np.empty((n, c, 3, 3, ho, wo), dtype=np.float64)
    for ky in range(3):
        for kx in range(3):
            cols[:, :, ky, kx] = xp[:, :, ky:ky + stride * ho:stride, kx:kx + stride * wo:stride]
    return np.einsum("nckluv,ockl->nouv", cols, w.astype(np.float64), optimize=True)


def _bn(x, sd, p):
    g, bt, m, v = (sd[p + k].astype(np.float64).reshape(1, -1, 1, 1)
                   for k in (".weight", ".bias", ".running_mean", ".running_var"))
    return (x - m) / np.sqrt(v + BN_EPS) * g + bt


def reference_forward(sd, n, x):
    relu = lambda t: np.maximum(t, 0.0)
    x = relu(_bn(_conv3x3(x.astype(np.float64), sd["conv1.weight"], 1), sd, "bn1"))
    in_planes = 16
    for stage, planes in enumerate((16, 32, 64), start=1):
        for i in range(n):
            stride = 2 if (i == 0 and stage > 1) else 1
            pre = f"layer{stage}.{i}"
            h = relu(_bn(_conv3x3(x, sd[pre + ".conv1.weight"], stride), sd, pre + ".bn1"))
            h = _bn(_conv3x3(h, sd[pre + ".conv2.weight"], 1), sd, pre + ".bn2")
            sc = x
            if stride != 1 or in_planes != planes:
                p = planes // 4
                sc = np.pad(x[:, :, ::2, ::2], ((0, 0), (p, p), (0, 0), (0, 0)))
            x = relu(h + sc)
            in_planes = planes
    x = x.mean(axis=(2, 3))
    return x @ sd["linear.weight"].astype(np.float64).T + sd["linear.bias"]


def verify(sd, n, path, batch=8, seed=0):
    import onnxruntime as ort
    x = np.random.default_rng(seed).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    ref = reference_forward(sd, n, x)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    rel = float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-12))
    agree = float(np.mean(got.argmax(1) == ref.argmax(1)))
    print(f"verify {path}: batch {batch}, max|ort-numpy|/max|numpy| = {rel:.3g}, argmax agreement {agree:.3f}")
    return rel


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("arch", choices=sorted(CIFAR))
    ap.add_argument("--weights", required=True, help="akamaster legacy checkpoint (.th)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--verify", action="store_true")
    a = ap.parse_args()
    n = CIFAR[a.arch]
    sd, meta = load_legacy_checkpoint(a.weights)
    want = {"conv1.weight", "bn1.running_var", "linear.weight", "linear.bias",
            f"layer3.{n - 1}.conv2.weight"}
    if not want <= set(sd) or f"layer1.{n}.conv1.weight" in sd:
        sys.exit(f"{a.weights}: state_dict does not match {a.arch} (n={n} blocks per stage)")
    m = build_graph(sd, n)
    onnx.save(m, a.out)
    with open(a.out, "rb") as f:
        blob = f.read()
    print(f"{a.out}: {len(blob)} bytes, sha256 {hashlib.sha256(blob).hexdigest()}"
          + (f", checkpoint best_prec1 {meta['best_prec1']:.2f}" if "best_prec1" in meta else ""))
    if a.verify and verify(sd, n, a.out) > 1e-4:
        sys.exit(1)


if __name__ == "__main__":
    main()
