"""Bad-input cases: the paper configs (configs/<network>_<bits>.json) on a checkout without the
ImageNet model or data: exit 66 and a line that says how to get them."""
import glob
import os

NETWORKS = {"resnet18": "resnet18", "resnet50": "resnet50", "mobilenetv2": "mobilenet_v2",
            "regnetx600m": "regnet_x_600mf", "regnetx3200m": "regnet_x_3_2gf", "mnasnet": "mnasnet1_0"}


def cases(m):
    C = []
    src = os.path.dirname(os.path.dirname(m.CAT))
    src = os.path.dirname(src)  # repository root
    # one config per network (each run costs about a second; the four bit widths differ only in bits)
    for net, arch in sorted(NETWORKS.items()):
        for bits in (("w2a2",) if net == "resnet50" else ("w4a4",)):
            cfg = os.path.join(src, "configs", "%s_%s.json" % (net, bits))
            model = os.path.join(src, "models", arch + ".onnx")
            C.append(m.Case(
                "paper_config_%s_%s_no_model" % (net, bits), 66,
                r"models/%s\.onnx: cannot open the model: no such file; export it with "
                r"`python3 tools/export_onnx.py %s --pretrained --out .*models/%s\.onnx`" % (arch, arch, arch),
                argv=["--config", cfg, "--out", "{out}"], config=False,
                skip=lambda model=model: "%s exists" % model if os.path.exists(model) else None,
                what="paper config %s_%s without models/%s.onnx" % (net, bits, arch)))
    cfg = os.path.join(src, "configs", "resnet50_w2a2.json")
    C.append(m.Case(
        "paper_config_no_imagenet", 66,
        r"data/imagenet/train: image folder not found \(data\.calib_path\); ImageNet is expected as class "
        r"sub-folders: train/<wnid>/\*\.JPEG .* val/<wnid>/\*\.JPEG",
        argv=["--config", cfg, "--out", "{out}", "--set", "model.path=" + m.RESNET20], config=False,
        skip=lambda: "data/imagenet/train exists" if os.path.exists(os.path.join(src, "data", "imagenet", "train")) else None,
        what="paper config without data/imagenet/train"))
    return C
