#!/usr/bin/env python3
"""A second real pretrained network end to end: CIFAR-10 ResNet-56 (assets/models/resnet56_cifar10.onnx).

Runs the CLI twice on configs/resnet56_cifar10_w4a4.json, W4A4, CPU, one thread, on 1,000 evenly
spaced test images (eval.max_images) with 64 calibration images:
  round-to-nearest (quant.mode=nearest) and QDrop (20 iterations per unit, 29 units).
Then checks, without using the labels for the quantized verdict:
  1. FP32 parity: the engine's FP32 logits (logits_fp32.npy of both runs, which must be identical)
     against ONNX Runtime on the same images decoded with Pillow: max|engine-ort|/max|ort| <= 1e-4
     and identical argmax.
  2. Agreement of each quantized model's top-1 with the FP32 top-1 (from logits_quant.npy,
     cross-checked with results.json's accuracy.agreement_with_fp32): both >= FLOOR, and
     QDrop >= nearest - MARGIN. Measured here: nearest 85.3%, QDrop 87.6% (deterministic CPU
     backend); a broken quantizer, range search or reconstruction lands far below FLOOR.
Env (CTest): QD_BIN, QD_BUILD_DIR, QD_SRC_DIR. Exit 0 pass, 1 fail (never 77: numpy, onnxruntime and
Pillow are CI dependencies, scripts/install_deps.sh).
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

SRC = os.environ.get("QD_SRC_DIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("QD_BUILD_DIR", "/tmp")
BIN = os.environ.get("QD_BIN", os.path.join(SRC, "build", "qdrop-gpu"))
MODEL = os.path.join(SRC, "assets/models/resnet56_cifar10.onnx")
CONFIG = os.path.join(SRC, "configs/resnet56_cifar10_w4a4.json")
VAL = os.path.join(SRC, "assets/cifar10/test")
N_IMAGES, ITERS, CALIB, UNITS = 1000, 20, 64, 29
FLOOR = 75.0    # % agreement with FP32; measured 85.3 (nearest) / 87.6 (QDrop)
MARGIN = 1.0    # QDrop may trail nearest by at most this many points
MAX_REL = 1e-4
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)

failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg)
    if not ok:
        failures.append(msg)


def run(mode):
    out = os.path.join(BUILD, f"pretrained_resnet56_{mode}")
    cmd = [BIN, "--config", CONFIG, "--device", "cpu", "--quiet", "--out", out,
           "--set", "process.threads=1", "--set", f"eval.max_images={N_IMAGES}",
           "--set", "output.logits=true", "--set", f"quant.calibrate={CALIB}",
           "--set", f"quant.recon.iters={ITERS}", "--set", f"quant.mode={mode}"]
    t0 = time.time()
    rc = subprocess.call(cmd)
    if rc != 0:
        sys.exit(f"FAIL qdrop-gpu {mode} exited {rc}: {' '.join(cmd)}")
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    fp32 = np.load(os.path.join(out, "logits_fp32.npy"))
    quant = np.load(os.path.join(out, "logits_quant.npy"))
    print(f"{mode}: {time.time() - t0:.1f} s, {res['total_iterations']} iterations")
    return res, fp32, quant


def val_subset():
    """The images eval.max_images picks: classes sorted, files sorted, index i*n/k (src/data/dataset.c)."""
    items = []
    for ci, c in enumerate(sorted(d for d in os.listdir(VAL) if os.path.isdir(os.path.join(VAL, d)))):
        for f in sorted(os.listdir(os.path.join(VAL, c))):
            items.append((os.path.join(VAL, c, f), ci))
    n = len(items)
    return [items[i * n // N_IMAGES] for i in range(N_IMAGES)]


def ort_logits(items):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(MODEL, so, providers=["CPUExecutionProvider"])
    x = []
    for p, _ in items:
        with Image.open(p) as im:
            a = np.asarray(im.convert("RGB"), dtype=np.float32) / np.float32(255.0)
        x.append(((a - MEAN) / STD).transpose(2, 0, 1))
    return sess.run(None, {"input": np.ascontiguousarray(np.stack(x), dtype=np.float32)})[0]


def main():
    near, near_fp32, near_q = run("nearest")
    qdrop, qdrop_fp32, qdrop_q = run("qdrop")
    check(near["mode"] == "nearest" and near["total_iterations"] == 0,
          f"nearest run: mode {near['mode']}, {near['total_iterations']} iterations (want 0)")
    check(qdrop["mode"] == "qdrop" and qdrop["total_iterations"] == UNITS * ITERS,
          f"QDrop run: mode {qdrop['mode']}, {qdrop['total_iterations']} iterations (want {UNITS}x{ITERS})")
    check(near_fp32.shape == (N_IMAGES, 10) and np.array_equal(near_fp32, qdrop_fp32),
          f"FP32 logits {near_fp32.shape}, identical in both runs")

    items = val_subset()
    ref = ort_logits(items)
    rel = float(np.max(np.abs(near_fp32 - ref)) / np.max(np.abs(ref)))
    check(rel <= MAX_REL, f"FP32 parity with ONNX Runtime on {N_IMAGES} CIFAR-10 test images: "
          f"max|engine-ort|/max|ort| = {rel:.3g} (limit {MAX_REL:g})")
    same = float(np.mean(near_fp32.argmax(1) == ref.argmax(1)))
    check(same == 1.0, f"FP32 argmax identical to ONNX Runtime on {100 * same:.2f}% of images")
    labels = np.array([c for _, c in items])
    fp32_top1 = 100.0 * float(np.mean(ref.argmax(1) == labels))
    print(f"FP32 top-1 on the subset: {fp32_top1:.2f}% (engine results.json {near['accuracy']['fp32_top1']:.2f}%)")

    fp32_pred = near_fp32.argmax(1)
    agree = {}
    for name, res, q in (("nearest", near, near_q), ("QDrop", qdrop, qdrop_q)):
        a = 100.0 * float(np.mean(q.argmax(1) == fp32_pred))
        agree[name] = a
        check(abs(a - res["accuracy"]["agreement_with_fp32"]) < 0.051,
              f"{name}: agreement from logits {a:.2f}% matches results.json "
              f"{res['accuracy']['agreement_with_fp32']:.2f}%")
        check(a >= FLOOR, f"{name} W4A4: {a:.2f}% of top-1 predictions agree with FP32 (floor {FLOOR:g}%)")
    check(agree["QDrop"] >= agree["nearest"] - MARGIN,
          f"W4A4 agreement with FP32: QDrop {agree['QDrop']:.2f}% vs round-to-nearest {agree['nearest']:.2f}% "
          f"(QDrop may trail by at most {MARGIN:g} pt); {ITERS} iterations/unit, {CALIB} calibration images, "
          f"{N_IMAGES} test images")
    if failures:
        print(f"pretrained_resnet56: {len(failures)} check(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
