#!/usr/bin/env python3
"""FP32 inference throughput, ResNet-20 (CIFAR, batch 256, CPU): qdrop-gpu's executor beside
ONNX Runtime on the same machine, in the same run, same thread count; prints both and the ratio.
Usage: python3 bench/bench_infer.py [--bin build/bench/qd_bench_infer] [--threads 2]"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--bin", default=os.path.join(root, "build", "bench", "qd_bench_infer"))
ap.add_argument("--model", default=os.path.join(root, "assets", "models", "resnet20_cifar10.onnx"))
ap.add_argument("--batch", type=int, default=256)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
r = subprocess.run([a.bin, a.model, str(a.batch), str(a.reps), str(a.threads)], capture_output=True, text=True)
if r.returncode != 0:
    print(r.stderr, file=sys.stderr)
    sys.exit(1)
ours = json.loads(r.stdout.strip().splitlines()[-1])
print(json.dumps(ours))
try:
    import onnxruntime as ort
except ImportError:
    print(json.dumps({"onnxruntime": "not installed"}))
    sys.exit(0)
so = ort.SessionOptions()
so.intra_op_num_threads = a.threads
so.inter_op_num_threads = 1
sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
shape = [a.batch] + [d for d in inp.shape[1:]]
x = np.random.default_rng(1005).uniform(-1, 1, size=shape).astype(np.float32)
sess.run(None, {inp.name: x})
best = 1e30
for _ in range(a.reps):
    t0 = time.perf_counter()
    sess.run(None, {inp.name: x})
    best = min(best, time.perf_counter() - t0)
o = {"impl": "onnxruntime", "version": ort.__version__, "batch": a.batch, "threads": a.threads, "best_s": best,
     "images_per_s": a.batch / best}
print(json.dumps(o))
print(json.dumps({"summary": {"ratio_qdrop_over_ort": round(ours["images_per_s"] / o["images_per_s"], 3)}}))
