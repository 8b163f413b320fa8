#!/usr/bin/env python3
"""results.json's per-unit reproducibility digest ("rng_digest", docs/numerics.md).

Three tiny CPU runs of configs/default.json (QDrop, 3 iterations per unit, 64 calibration images):
  - 1 thread and 2 threads: every unit carries a digest of QD_RNG_DIGEST_ITERS = 2 iterations,
    and all digests are equal (the draws depend on the key and the element index only);
  - another seed: every batch-index and mask digest differs;
  - the digests mean what the docs say: unit 0's batch indices, unit-input keep mask and its
    activation drop mask are recomputed here from the generator's definition (Philox4x32-10 as
    src/core/qmath.h, FNV-1a 64 over little-endian words) and must match.
The CUDA end-to-end test (tests/cuda/cli_e2e.sh) requires the same digests from a --device cuda run.
Env: QD_BIN, QD_SRC_DIR, QD_BUILD_DIR (CTest). Exit 0 pass, 1 fail, 77 numpy or the CLI missing.
"""
import json
import os
import subprocess
import sys

SRC = os.environ.get("QD_SRC_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("QD_BIN") or os.path.join(SRC, "build", "qdrop-gpu")
WORK = os.path.join(os.environ.get("QD_BUILD_DIR") or "/tmp", "rng_digest_test")
try:
    import numpy as np
except ImportError:
    print("rng_digest: skipped: numpy missing")
    sys.exit(77)
if not os.access(BIN, os.X_OK):
    print(f"rng_digest: {BIN} not found")
    sys.exit(77)

M32 = 0xFFFFFFFF
fails = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        fails.append(what)


def run(name, threads, seed):
    out = os.path.join(WORK, name)
    cmd = [BIN, "--config", os.path.join(SRC, "configs", "default.json"), "--device", "cpu", "--out", out,
           "--quiet", "--progress", "never", "--set", "quant.recon.iters=3", "--set", "quant.calibrate=64",
           "--set", "quant.act_calib_samples=64", "--set", "eval.max_images=50", "--set", "output.plots=false",
           "--set", "output.export_onnx=false", "--set", f"process.threads={threads}", "--set", f"process.seed={seed}"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        print(f"FAIL run {name} exited {p.returncode}: {p.stderr.strip()[-400:]}")
        sys.exit(1)
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


def philox_words(seed, unit, tensor, iteration, elems):
    """qd_rng_u32(key, iteration, e) for the int64 array elems (src/core/qmath.h)."""
    elems = np.asarray(elems, dtype=np.uint64)
    blk = elems >> np.uint64(2)
    c0 = (blk & np.uint64(M32)).astype(np.uint64)
    c1 = ((blk >> np.uint64(32)) ^ np.uint64((unit << 16) & M32)).astype(np.uint64)
    c2 = np.full_like(c0, tensor & M32)
    c3 = np.full_like(c0, iteration & M32)
    k0 = ((seed & M32) ^ ((unit * 0x85EBCA6B) & M32)) & M32
    k1 = (seed >> 32) & M32
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c0
        p1 = np.uint64(0xCD9E8D57) * c2
        n0 = (p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0)
        n2 = (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1)
        c0, c1, c2, c3 = n0, p1 & np.uint64(M32), n2, p0 & np.uint64(M32)
        k0 = (k0 + 0x9E3779B9) & M32
        k1 = (k1 + 0xBB67AE85) & M32
    words = np.stack([c0, c1, c2, c3], axis=1)
    return words[np.arange(len(elems)), (elems & np.uint64(3)).astype(np.int64)]


def fnv(data, h=0):
    if h == 0:
        h = 1469598103934665603
    for byte in data:
        h ^= byte
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def keep_bits_bytes(seed, unit, tensor, iteration, n, keep):
    """The keep mask packed LSB first into 32-bit words, as little-endian bytes."""
    r = philox_words(seed, unit, tensor, iteration, np.arange(n, dtype=np.uint64))
    keep_mask = (r >> np.uint64(8)).astype(np.float64) * (1.0 / 16777216.0) < np.float32(keep)
    padded = np.zeros(((n + 31) // 32) * 32, dtype=bool)
    padded[:n] = keep_mask
    return np.packbits(padded, bitorder="little").tobytes()


os.makedirs(WORK, exist_ok=True)
a, b, c = run("t1", 1, 1005), run("t2", 2, 1005), run("seed", 1, 2024)
ua, ub, uc = a["units"], b["units"], c["units"]
check(len(ua) == len(ub) == len(uc) and len(ua) > 0, f"unit counts {len(ua)}/{len(ub)}/{len(uc)}")
fields = ("batch_indices", "input_mix", "act_drop_masks")
for x, y, z in zip(ua, ub, uc):
    dx, dy, dz = x.get("rng_digest"), y.get("rng_digest"), z.get("rng_digest")
    if not dx or not dy or not dz:
        check(False, f"unit {x['name']}: rng_digest missing")
        continue
    check(dx["iterations"] == 2 and dx == dy,
          f"unit {x['name']}: 1 vs 2 threads: digests equal ({dx['batch_indices']}/{dx['input_mix']}/{dx['act_drop_masks']}, "
          f"{dx['mask_bits']} mask bits, {dx['iterations']} iterations)")
    for k in fields:
        if dx[k] is not None:
            check(dx[k] != dz[k], f"unit {x['name']}: seed 2024 changes {k} ({dx[k]} -> {dz[k]})")

# independent recomputation for unit 0 (one quantizer site, the image as its input)
cfg = json.load(open(os.path.join(SRC, "configs", "default.json")))
keep = cfg["quant"]["recon"]["drop_prob"]
batch = cfg["quant"]["recon"]["batch_size"]
seed, ncal, unit = a["seed"], a["calibration_images"], 0
d0 = ua[0]["rng_digest"]
h = 0
for it in (1, 2):
    r = philox_words(seed, unit, 0xFFFFFFF0, it, np.arange(batch, dtype=np.uint64))
    idx = ((r * np.uint64(ncal)) >> np.uint64(32)).astype("<u4")
    h = fnv(idx.tobytes(), h)
check(f"{h:016x}" == d0["batch_indices"], f"unit 0 batch-index digest recomputed from the spec: {h:016x} vs {d0['batch_indices']}")
in_n = batch * 3 * 32 * 32
site_n = d0["mask_bits"] // 2 - in_n
h_mix = h_site = 0
for it in (1, 2):
    h_mix = fnv(keep_bits_bytes(seed, unit, 0xFFFFFFF1, it, in_n, keep), h_mix)
    h_site = fnv(keep_bits_bytes(seed, unit, 0, it, site_n, keep), h_site)
check(f"{h_mix:016x}" == d0["input_mix"], f"unit 0 input-mix digest recomputed: {h_mix:016x} vs {d0['input_mix']}")
check(d0["act_drop_sites"] == 1 and f"{h_site:016x}" == d0["act_drop_masks"],
      f"unit 0 drop-mask digest recomputed ({site_n} elements): {h_site:016x} vs {d0['act_drop_masks']}")
print(f"rng_digest: {len(fails)} failure(s)")
sys.exit(1 if fails else 0)
