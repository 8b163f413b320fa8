#!/usr/bin/env python3
"""Compare a CPU run and a CUDA run of the same config (tests/cuda/cli_e2e.sh).

  compare_runs.py CPU_RUN_DIR DEV_RUN_DIR [--dry] [--out FILE.json]

Checks (docs/numerics.md: the backends agree to float rounding; every random draw is keyed on
(seed, unit, tensor, iteration, element) only):
  - quantized top-1 within 0.3 points, FP32 top-1 within 0.1 points, >= 99% of the quantized
    per-image predictions equal (predictions.csv);
  - per unit: same names and iteration counts, SQNR before and after within 0.2 dB;
  - per unit: the loss of the first iteration within 0.5 % relative. It is computed from the
    batch drawn at iteration 1 and that iteration's drop masks, so a single differing batch index
    or mask moves it by far more: this is the end-to-end check that batch indices and masks are
    the same on both backends (the twin tests check them bit for bit, tests/cuda/test_cuda_ops.c);
  - per unit: the reproducibility digests (results.json "rng_digest": batch indices, unit-input
    keep mask and activation drop masks of the first 2 iterations, each drawn by the backend
    that ran, docs/numerics.md) are equal: batch indices and masks bit-identical;
  - the device run names its GPU, TF32 state and CUDA/cuDNN versions, and the cuDNN algorithms
    it chose per convolution shape (results.json device.kernels.conv_algos; run.log
    "cudnn_algo" events as well); both runs name their convolution implementation.
--dry: both runs are CPU runs (the test's own logic, checked without a GPU): device checks that
need a GPU are reported as not applicable.
Exit 0 all checks pass, 1 otherwise.
"""
import argparse
import csv
import json
import math
import os
import sys


def load(d):
    with open(os.path.join(d, "results.json")) as f:
        return json.load(f)


def preds(d):
    p = os.path.join(d, "predictions.csv")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return [int(r["quant"]) for r in csv.DictReader(f)]


def algos(d):
    out = []
    p = os.path.join(d, "run.log")
    if not os.path.exists(p):
        return out
    with open(p) as f:
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") == "cudnn_algo":
                out.append({k: e.get(k) for k in ("shape", "fwd_algo", "bwd_data_algo", "bwd_filter_algo", "fwd_math")})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("cpu")
    ap.add_argument("dev")
    ap.add_argument("--dry", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    fails, notes = [], []

    def check(ok, what):
        (notes if ok else fails).append(("ok   " if ok else "FAIL ") + what)

    rc_, rd = load(a.cpu), load(a.dev)
    ac, ad = rc_.get("accuracy", {}), rd.get("accuracy", {})
    for key, tol in (("quant_top1", 0.3), ("fp32_top1", 0.1)):
        if key in ac and key in ad:
            d = abs(ac[key] - ad[key])
            check(d <= tol, f"{key}: cpu {ac[key]:.2f} device {ad[key]:.2f} (|diff| {d:.2f} <= {tol})")
        else:
            check(False, f"{key} missing from results.json")
    pc, pd = preds(a.cpu), preds(a.dev)
    if pc is not None and pd is not None and len(pc) == len(pd) and pc:
        agree = sum(x == y for x, y in zip(pc, pd)) / len(pc)
        check(agree >= 0.99, f"quantized predictions agree on {100 * agree:.2f}% of {len(pc)} images (>= 99%)")
    uc, ud = rc_.get("units", []), rd.get("units", [])
    check(len(uc) == len(ud) and len(uc) > 0, f"unit count cpu {len(uc)} device {len(ud)}")
    worst = {"sqnr_before_db": 0.0, "sqnr_after_db": 0.0, "loss_start_rel": 0.0}
    digests_equal = []
    for x, y in zip(uc, ud):
        name = x.get("name")
        check(name == y.get("name") and x.get("iters_run") == y.get("iters_run"),
              f"unit {name}: names/iterations match ({x.get('iters_run')} vs {y.get('iters_run')})")
        for k in ("sqnr_before_db", "sqnr_after_db"):
            xv, yv = x.get(k), y.get(k)
            ok = xv is not None and yv is not None and math.isfinite(xv) and math.isfinite(yv) and abs(xv - yv) <= 0.2
            worst[k] = max(worst[k], abs(xv - yv) if ok else float("inf"))
            if not ok:
                check(False, f"unit {name}: {k} cpu {xv} device {yv} (|diff| > 0.2 dB)")
        gx, gy = x.get("rng_digest"), y.get("rng_digest")
        if not gx or not gy or gx.get("iterations", 0) < 1:
            check(False, f"unit {name}: rng_digest missing (cpu {gx}, device {gy})")
        else:
            same = all(gx.get(k) == gy.get(k) for k in ("iterations", "batch_indices", "input_mix", "act_drop_masks", "mask_bits"))
            digests_equal.append(same)
            if not same:
                check(False, f"unit {name}: batch indices / drop masks differ: cpu {gx} device {gy}")
        l0, l1 = x.get("loss_start"), y.get("loss_start")
        rel = abs(l0 - l1) / max(abs(l0), 1e-30) if l0 is not None and l1 is not None else float("inf")
        worst["loss_start_rel"] = max(worst["loss_start_rel"], rel)
        if not rel <= 5e-3:
            check(False, f"unit {name}: first-iteration loss cpu {l0} device {l1} (rel {rel:.2e} > 5e-3): "
                         "different batch indices or drop masks?")
    check(worst["sqnr_after_db"] <= 0.2 and worst["sqnr_before_db"] <= 0.2,
          f"per-unit SQNR: worst |diff| before {worst['sqnr_before_db']:.3f} dB, after {worst['sqnr_after_db']:.3f} dB (<= 0.2)")
    check(worst["loss_start_rel"] <= 5e-3, f"first-iteration losses: worst rel diff {worst['loss_start_rel']:.2e} (<= 5e-3)")
    check(len(digests_equal) == len(uc) and all(digests_equal),
          f"rng digests (batch indices, input mix, drop masks; first iterations) equal on {sum(digests_equal)} of {len(uc)} units")
    dev = rd.get("device", {})
    al = algos(a.dev)
    kc, kd = rc_.get("device", {}).get("kernels") or {}, dev.get("kernels") or {}
    check(bool(kc.get("conv")) and bool(kd.get("conv")),
          f"convolution implementation named: cpu {kc.get('conv')!r}, device {kd.get('conv')!r}")
    ka = kd.get("conv_algos") or []
    if a.dry:
        notes.append("n/a  dry run (CPU vs CPU, 1 vs 2 threads): GPU name, cuDNN versions and algorithms not checked")
    else:
        check(dev.get("backend") == "cuda", f"device run backend is {dev.get('backend')!r} (cuda)")
        check(bool(dev.get("name")) and dev.get("name") != "cpu", f"device name {dev.get('name')!r}")
        check(isinstance(dev.get("tf32"), bool), f"TF32 state recorded: {dev.get('tf32')}")
        check("cuDNN" in (dev.get("cuda_versions") or ""), f"versions: {dev.get('cuda_versions')!r}")
        check(len(al) > 0, f"{len(al)} cuDNN algorithm choices in run.log")
        check(kd.get("conv") == "cudnn" and kd.get("tf32") == dev.get("tf32"),
              f"results.json kernels: conv {kd.get('conv')!r}, tf32 {kd.get('tf32')} (device tf32 {dev.get('tf32')})")
        named = [e for e in ka if all(e.get(k) not in (None, "?") for k in
                                      ("shape", "fwd_algo_name", "bwd_data_algo_name", "bwd_filter_algo_name", "fwd_math"))]
        check(len(ka) > 0 and len(named) == len(ka),
              f"results.json names the cuDNN fwd/bwd-data/bwd-filter algorithms of {len(named)} of {len(ka)} conv shapes")
        if not dev.get("tf32"):
            check(all(e.get(k) == "fma" for e in ka for k in ("fwd_math", "bwd_data_math", "bwd_filter_math")),
                  "TF32 off: every cuDNN algorithm runs in FMA math")
    summary = {
        "cpu_quant_top1": ac.get("quant_top1"), "device_quant_top1": ad.get("quant_top1"),
        "cpu_fp32_top1": ac.get("fp32_top1"), "device_fp32_top1": ad.get("fp32_top1"),
        "worst_sqnr_after_diff_db": worst["sqnr_after_db"], "worst_sqnr_before_diff_db": worst["sqnr_before_db"],
        "worst_first_loss_rel": worst["loss_start_rel"], "device": dev, "cudnn_algos": al[:64],
        "rng_digests_equal": bool(digests_equal) and all(digests_equal),
        "timing_cpu": rc_.get("timing"), "timing_device": rd.get("timing"), "dry": a.dry,
        "failures": [f for f in fails],
    }
    if a.out:
        with open(a.out, "w") as f:
            json.dump(summary, f, indent=1, allow_nan=True)
    for line in notes + fails:
        print(line)
    print(f"compare_runs: {len(notes)} ok, {len(fails)} failed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
