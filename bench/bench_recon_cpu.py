#!/usr/bin/env python3
"""CPU reconstruction benchmark (issue 4 item 9): QDrop iterations/s per unit type at batch 32 and
peak RSS of qdrop-gpu, beside a PyTorch-eager implementation of the same unit iteration
(bench/torch_qdrop_iter.py) on the same cores with the same thread count, measured in the same
run. Prints JSON lines and a final summary with the ratios.

Usage: python3 bench/bench_recon_cpu.py [--bin build/qdrop-gpu] [--iters 200] [--threads 2]
The engine side runs the embedded default (CIFAR ResNet-20) with evaluation off; ResNet-20's
units 2-3 / 5-6 / 8-9 are the stride-1 BasicBlocks with 16ch@32x32 / 32ch@16x16 / 64ch@8x8,
the shapes bench/torch_qdrop_iter.py times."""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
ap = argparse.ArgumentParser()
ap.add_argument("--bin", default=os.path.join(root, "build", "qdrop-gpu"))
ap.add_argument("--iters", type=int, default=200)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--skip-torch", action="store_true")
ap.add_argument("--repeat", type=int, default=2,
                help="runs of each side; the best it/s of each is kept (the shared machine's noise only slows runs down)")
ap.add_argument("--skip-im2col", action="store_true", help="do not also time the im2col convolution path")
a = ap.parse_args()

cmd = [a.bin, "--config", os.path.join(root, "configs", "default.json"), "--device", "cpu",
       "--set", f"quant.recon.iters={a.iters}", "--set", "eval.enabled=false", "--set", f"process.threads={a.threads}",
       "--set", "output.export_onnx=false", "--set", "output.plots=false", "--set", f"quant.recon.log_every={a.iters}",
       "--progress", "never", "--quiet"]


def run_engine(extra_env, label):
    best = None
    for _ in range(max(1, a.repeat)):
        out = tempfile.mkdtemp(prefix="qd_bench_")  # a fresh folder per run (an old one would resume)
        r = subprocess.run(cmd + ["--out", out], capture_output=True, text=True, env=dict(os.environ, **extra_env))
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            sys.exit(r.returncode)
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        res = json.load(open(os.path.join(out, "results.json")))
        units = res["units"]
        if best is None:
            best = [u["it_per_s"] for u in units]
        else:
            best = [max(x, u["it_per_s"]) for x, u in zip(best, units)]
    per = {}
    for name, idxs in shapes.items():
        ips = [best[i] for i in idxs if i < len(best)]
        per[name] = sum(ips) / len(ips) if ips else float("nan")
        print(json.dumps({"impl": label, "unit": name, "batch": 32, "threads": a.threads, "iters": a.iters,
                          "it_per_s": per[name]}))
    print(json.dumps({"impl": label, "device": res["device"]["name"], "peak_rss_mb": rss, "units": len(units),
                      "repeat": a.repeat, "per_unit_it_per_s_best": [round(x, 2) for x in best]}))
    return per, rss


shapes = {"basicblock_c16_hw32": [2, 3], "basicblock_c32_hw16": [5, 6], "basicblock_c64_hw8": [8, 9]}
# the engine as built (oneDNN convolutions when the build has them) ...
engine, engine_rss = run_engine({}, "qdrop-gpu-cpu")
# ... and its im2col + OpenBLAS convolution path, measured in the same run as a baseline
baseline = None
if not a.skip_im2col:
    baseline, _ = run_engine({"QD_CPU_CONV": "im2col"}, "qdrop-gpu-cpu-im2col")
    print(json.dumps({"speedup_over_im2col": {k: round(engine[k] / baseline[k], 2) for k in engine}}))
if a.skip_torch:
    sys.exit(0)
env = dict(os.environ, QD_BENCH_THREADS=str(a.threads), QD_BENCH_ITERS=str(min(a.iters, 100)), QD_BENCH_REPEAT=str(a.repeat), OMP_NUM_THREADS=str(a.threads))
t = subprocess.run([sys.executable, os.path.join(here, "torch_qdrop_iter.py")], capture_output=True, text=True, env=env)
if t.returncode != 0:
    print(t.stderr, file=sys.stderr)
    print(json.dumps({"torch": "unavailable"}))
    sys.exit(0)
rows = [json.loads(l) for l in t.stdout.splitlines() if l.startswith("{")]
torch_rows = [r for r in rows if r.get("impl") == "pytorch_eager"]
peak = [r for r in rows if r.get("impl") == "sgemm_peak"]
summary = {"threads": a.threads, "ratios": {}}


def required_conv_flops(unit_name):
    """The convolution work an iteration cannot avoid: forward of both 3x3 convs, the second's
    input gradient, both weight gradients (the unit's input needs no gradient): 5 passes of
    2*N*C*C*9*H*W FLOPs at batch N = 32."""
    c, hw = [int(x) for x in unit_name.replace("basicblock_c", "").split("_hw")]
    return 5 * 2.0 * 32 * c * c * 9 * hw * hw


if peak:
    # Hardware limit: that work at the rate of a large SGEMM on the same cores.
    print(json.dumps(peak[0]))
    summary["sgemm_peak_gflops"] = round(peak[0]["gflops"], 1)
    for name in engine:
        gf = required_conv_flops(name) * engine[name] / 1e9
        summary.setdefault("engine_conv_gflops", {})[name] = round(gf, 1)
        summary.setdefault("engine_fraction_of_sgemm_peak", {})[name] = round(gf / peak[0]["gflops"], 2)
for row in torch_rows:
    print(json.dumps(row))
    e = engine.get(row["unit"])
    if e:
        summary["ratios"][row["unit"]] = round(e / row["it_per_s"], 2)
        # engine iteration vs the unit's convolutions alone in oneDNN: the speed-up over PyTorch
        # that convolutions this fast would allow is bound_ratio (see torch_qdrop_iter.py)
        summary.setdefault("engine_iter_over_conv_only", {})[row["unit"]] = round((1000.0 / e) / row["conv_only_ms"], 2)
        summary.setdefault("bound_ratio_conv_only", {})[row["unit"]] = round(row["bound_ratio"], 2)
        if peak:
            # the speed-up over PyTorch of an engine doing nothing but the required convolution
            # FLOPs at SGEMM rate: no CPU implementation can exceed it on these cores
            summary.setdefault("bound_ratio_sgemm_peak", {})[row["unit"]] = round(
                peak[0]["gflops"] * 1e9 / required_conv_flops(row["unit"]) / row["it_per_s"], 2)
if baseline:
    summary["speedup_over_im2col_path"] = {k: round(engine[k] / baseline[k], 2) for k in engine}
summary["peak_rss_mb"] = {"qdrop-gpu": round(engine_rss, 1), "pytorch_eager": round(max(r["peak_rss_mb"] for r in torch_rows), 1)}
print(json.dumps({"summary": summary}))
