#!/usr/bin/env python3
"""Export FP32 networks to ONNX for qdrop-gpu.

  # the embedded default model (real weights, BSD-2, see assets/models/PROVENANCE.md)
  python3 tools/export_onnx.py cifar-resnet20 \
      --weights ../shared/data/cifar10-resnet-akamaster/resnet20-12fca82f.th \
      --out assets/models/resnet20_cifar10.onnx --verify

  # torchvision architectures for the ImageNet configs (random weights unless --weights)
  python3 tools/export_onnx.py resnet18 --out models/resnet18.onnx [--weights r18.pth] [--pretrained]

Without torch, tools/export_cifar_resnet_notorch.py writes the same CIFAR ResNet graphs from the
legacy akamaster checkpoints (it produced assets/models/resnet56_cifar10.onnx).

Exports opset 13 (override with --opset, 13..17 are supported by the reader) with a symbolic
batch dimension "N", eval mode, constant folding on. --verify runs ONNX Runtime on random
inputs and compares with torch (max relative error printed; exit 1 above 1e-4).
Needs torch, torchvision; --verify also needs onnxruntime. Never needed by CI at run time.
"""
import argparse
import hashlib
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

TORCHVISION = ("resnet18", "resnet50", "mobilenet_v2", "regnet_x_600mf", "regnet_x_3_2gf", "mnasnet1_0")
CIFAR = {"cifar-resnet20": 3, "cifar-resnet32": 5, "cifar-resnet44": 7, "cifar-resnet56": 9}


# ---- CIFAR ResNet, akamaster/pytorch_resnet_cifar10 architecture (re-written from the description
# in ../shared/data/cifar10-resnet-akamaster/PROVENANCE.md; parameter names match the checkpoint) ----
class LambdaLayer(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            # Option A: parameter-free subsample by 2 and zero-pad the channels on both sides.
            p = planes // 4
            self.shortcut = LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p), "constant", 0.0))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class CifarResNet(nn.Module):
    def __init__(self, n, num_classes=10):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, n, 1)
        self.layer2 = self._make_layer(32, n, 2)
        self.layer3 = self._make_layer(64, n, 2)
        self.linear = nn.Linear(64, num_classes)

    def _make_layer(self, planes, n, stride):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        # torch.flatten instead of view(size(0), -1): same values, exports one Flatten node
        # instead of a Shape/Gather/Concat chain under a symbolic batch.
        out = torch.flatten(out, 1)
        return self.linear(out)


def build(arch, weights, pretrained):
    if arch in CIFAR:
        m = CifarResNet(CIFAR[arch])
        if weights:
            ck = torch.load(weights, map_location="cpu", weights_only=False)
            sd = ck.get("state_dict", ck)
            sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
            missing, unexpected = m.load_state_dict(sd, strict=False)
            missing = [k for k in missing if not k.endswith("num_batches_tracked")]
            if missing or unexpected:
                sys.exit(f"{weights}: missing {missing} unexpected {unexpected}")
        return m, (3, 32, 32)
    import torchvision
    if arch == "regnet_x_600mf":
        # Not in torchvision: the paper's RegNetX-600MF is pycls' config (DEPTH 16, W0 48, WA 36.97,
        # WM 2.24, GROUP_W 24), built with torchvision's RegNet class like its other X variants.
        from torchvision.models.regnet import BlockParams, RegNet
        if pretrained:
            sys.exit("regnet_x_600mf: no torchvision weights; pass --weights (pycls checkpoint converted to this layout)")
        m = RegNet(BlockParams.from_init_params(depth=16, w_0=48, w_a=36.97, w_m=2.24, group_width=24))
    else:
        fn = getattr(torchvision.models, arch)
        m = fn(weights="DEFAULT" if pretrained else None)
    if weights:
        sd = torch.load(weights, map_location="cpu")
        sd = sd.get("state_dict", sd)
        m.load_state_dict({k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()})
    return m, (3, 224, 224)


def export(m, shape, out, opset):
    m.eval()
    x = torch.randn(2, *shape)
    kw = dict(input_names=["input"], output_names=["logits"], opset_version=opset, do_constant_folding=True,
              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    try:
        torch.onnx.export(m, (x,), out, dynamo=False, **kw)
    except TypeError:  # older torch without the dynamo switch
        torch.onnx.export(m, (x,), out, **kw)


def make_skeleton(path, hw):
    """Weight-free copy for CI fixtures: initializers keep name/dims/dtype but no data, and the
    input is resized to hw x hw (all supported ImageNet nets are fully convolutional + global
    pool). tests/onnx_parity.py refills the weights from a seeded generator."""
    import onnx
    m = onnx.load(path)
    for t in m.graph.initializer:
        if t.data_type != onnx.TensorProto.FLOAT:
            continue  # shape constants must survive: only weights are refilled
        t.ClearField("raw_data")
        for f in ("float_data", "int64_data", "int32_data", "double_data"):
            t.ClearField(f)
    del m.graph.value_info[:]
    for inp in m.graph.input:
        d = inp.type.tensor_type.shape.dim
        if len(d) == 4:
            d[2].dim_value = hw
            d[3].dim_value = hw
    m.doc_string = f"qdrop-gpu skeleton fixture (no weights, input {hw}x{hw}); fill with tests/onnx_parity.py"
    onnx.save(m, path)


def verify(m, shape, out, batch=8, seed=0):
    import numpy as np
    import onnxruntime as ort
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *shape, generator=g)
    with torch.no_grad():
        ref = m.eval()(x).numpy()
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    rel = float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-12))
    agree = float(np.mean(got.argmax(1) == ref.argmax(1)))
    print(f"verify {out}: batch {batch}, max|ort-torch|/max|torch| = {rel:.3g}, argmax agreement {agree:.3f}")
    return rel


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("arch", choices=sorted(CIFAR) + list(TORCHVISION))
    ap.add_argument("--out", required=True)
    ap.add_argument("--weights", help="state_dict / checkpoint file (.th/.pth)")
    ap.add_argument("--pretrained", action="store_true", help="torchvision DEFAULT weights (downloads)")
    ap.add_argument("--seed", type=int, default=0, help="seed for random weights")
    ap.add_argument("--opset", type=int, default=13)
    ap.add_argument("--verify", action="store_true")
    ap.add_argument("--skeleton", type=int, metavar="HW",
                    help="write a weight-free test fixture with input HWxHW (tests/fixtures/onnx/)")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    m, shape = build(a.arch, a.weights, a.pretrained)
    m.eval()
    export(m, shape, a.out, a.opset)
    with open(a.out, "rb") as f:
        print(f"{a.out}: sha256 {hashlib.sha256(f.read()).hexdigest()}")
    if a.verify and verify(m, shape, a.out) > 1e-4:
        sys.exit(1)
    if a.skeleton:
        make_skeleton(a.out, a.skeleton)


if __name__ == "__main__":
    main()
