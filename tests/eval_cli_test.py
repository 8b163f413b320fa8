#!/usr/bin/env python3
"""tests/eval_cli_test.py: `qdrop-gpu eval` (README "Logits") against ONNX Runtime.

The embedded ResNet-20 evaluated with `qdrop-gpu eval --config` on generated images (.npy,
data.preprocess none): logits_fp32.npy must match ONNX Runtime's output of the same ONNX file to
max relative error <= 1e-4 (the README's comparison snippet, done here), eval.json must report
the accuracy computed from those logits and the labels, eval.max_images must cut the set, no
quantized logits without --from, and nothing but the documented files may be written.
Exit 0 pass, 1 fail, 77 without numpy/onnx/onnxruntime or the binary.
"""
import json
import os
import shutil
import sys

try:
    import numpy as np
    import onnxruntime as ort
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gen_small_models as G
except ImportError as e:
    print(f"SKIP: {e}")
    sys.exit(77)

SRC = os.environ.get("QD_SRC_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("QD_BIN") or os.path.join(SRC, "build", "qdrop-gpu")
WORK = os.path.join(os.environ.get("QD_BUILD_DIR", "/tmp"), "eval_cli")
RESNET20 = os.path.join(SRC, "assets", "models", "resnet20_cifar10.onnx")
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg)
    if not ok:
        failures.append(msg)


def main():
    if not os.path.exists(BIN):
        print(f"SKIP: no binary {BIN}")
        return 77
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, len(x)).astype(np.int64)
    xp, lp = os.path.join(WORK, "x.npy"), os.path.join(WORK, "labels.npy")
    np.save(xp, x)
    np.save(lp, labels)
    cfg = {"model": {"path": RESNET20}, "data": {"val_path": xp, "val_labels_path": lp, "preprocess": "none"},
           "device": {"type": "cpu"}, "process": {"threads": 1}, "eval": {"batch_size": 16},
           "output": {"dir": os.path.join(WORK, "unused")}}
    cp = G.write_config(os.path.join(WORK, "eval.json"), cfg)
    out = os.path.join(WORK, "out")
    r = G.run(BIN, "eval", "--config", cp, "--out", out)
    check(r.returncode == 0, f"eval --config: exit {r.returncode} {r.stderr.strip()}")
    if r.returncode != 0:
        return 1
    check(sorted(os.listdir(out)) == ["eval.json", "logits_fp32.npy"],
          f"eval without --from writes eval.json and logits_fp32.npy only: {sorted(os.listdir(out))}")
    check(not os.path.exists(os.path.join(WORK, "unused")), "--out overrides output.dir")
    # the README "Logits" comparison
    logits = np.load(os.path.join(out, "logits_fp32.npy"))
    sess = ort.InferenceSession(RESNET20, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    check(logits.shape == (40, 10) and logits.dtype == np.float32, f"logits_fp32.npy is float32 {logits.shape}")
    err = G.max_rel_err(logits, ref)
    check(err <= 1e-4, f"FP32 logits vs ONNX Runtime: max relative error {err:.2e} (<= 1e-4)")
    res = json.load(open(os.path.join(out, "eval.json")))
    want = 100.0 * float(np.mean(logits.argmax(1) == labels))
    check(res["images"] == 40 and abs(res["accuracy"]["fp32_top1"] - want) < 1e-9,
          f"eval.json: {res['images']} images, fp32_top1 {res['accuracy'].get('fp32_top1')} == {want} from the logits")
    check("quant_top1" not in res["accuracy"], "no quantized accuracy without --from")
    # max_images, no labels
    out2 = os.path.join(WORK, "out2")
    cfg["data"].pop("val_labels_path")
    cp2 = G.write_config(os.path.join(WORK, "eval2.json"), cfg)
    r = G.run(BIN, "eval", "--config", cp2, "--out", out2, "--set", "eval.max_images=7", "--quiet")
    check(r.returncode == 0 and r.stdout == "", f"eval --quiet without labels: exit {r.returncode} {r.stderr.strip()}")
    if r.returncode == 0:
        l2 = np.load(os.path.join(out2, "logits_fp32.npy"))
        # max_images takes evenly spaced images (src/data/dataset.c); another batch split (7 vs 16)
        # may change the convolutions' summation order, hence a tolerance
        rows = [i * len(x) // 7 for i in range(7)]
        check(l2.shape == (7, 10) and G.max_rel_err(l2, logits[rows]) <= 1e-5,
              f"eval.max_images=7: those rows of the full evaluation ({l2.shape})")
        check(json.load(open(os.path.join(out2, "eval.json")))["accuracy"] == {}, "no accuracy without labels")
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
