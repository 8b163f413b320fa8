#!/usr/bin/env python3
# Stands in for qdrop-gpu in tests/nightly_test.sh and tests/nightly_sched_test.sh: writes
# results.json like the engine and holds a known amount of memory (160 MB for qdrop, 24 MB
# otherwise). FAKE_FAIL=MODE exits 70, FAKE_NO_RESULTS=MODE writes nothing, FAKE_SLEEP_S waits
# first (so that a sampler sees the process).
import json, os, sys, time
a = sys.argv[1:]
out = a[a.index("--out") + 1]
sets = dict(a[i + 1].split("=", 1) for i, x in enumerate(a) if x == "--set")
mode, w, ab = sets["quant.mode"], int(sets["quant.w_qconfig.bit"]), int(sets["quant.a_qconfig.bit"])
if os.environ.get("FAKE_FAIL") == mode:
    print("fake engine: told to fail", file=sys.stderr)
    sys.exit(70)
time.sleep(float(os.environ.get("FAKE_SLEEP_S", "0")))
rss_mb = 160 if mode == "qdrop" else 24
buf = bytearray(rss_mb << 20)
for i in range(0, len(buf), 4096):
    buf[i] = 1  # touch every page so it is resident
# hold the memory as long again, so that a sampler (every 0.2 s) sees the peak even on a busy machine
time.sleep(float(os.environ.get("FAKE_SLEEP_S", "0")))
top1 = {"qdrop": 88.0, "nearest": 70.0}[mode] - (4 - w) * 5.0 - (4 - ab) * 2.5
units = [] if mode == "nearest" else [
    {"index": i, "name": f"unit{i}", "iters_run": int(sets["quant.recon.iters"]), "loss_start": 1.0,
     "loss_end": 0.1, "sqnr_before_db": 10.0, "sqnr_after_db": 20.0, "seconds": 1.0 + 0.5 * i,
     "it_per_s": 10.0} for i in range(4)]
rec = sum(u["seconds"] for u in units)
res = {"version": "0.1.0", "git_sha": "fakesha", "device": {"backend": "cpu", "name": "fake cpu"},
       "mode": mode, "w_bits": w, "a_bits": ab, "iters_per_unit": int(sets["quant.recon.iters"]),
       "accuracy": {"images": 1000, "fp32_top1": 91.5, "fp32_top5": 99.7, "quant_top1": top1, "quant_top5": 98.0},
       "units": units, "timing": {"total_s": rec + 2.0, "reconstruction_s": rec}}
os.makedirs(out, exist_ok=True)
if os.environ.get("FAKE_NO_RESULTS") != mode:
    json.dump(res, open(os.path.join(out, "results.json"), "w"))
