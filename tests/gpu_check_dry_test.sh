#!/usr/bin/env bash
# tests/gpu_check_dry_test.sh: runs `bench/gpu_check.sh --dry` (stubs + CPU selftests, no GPU)
# and checks what a GPU run would return: at most 8 files under $OUT, a summary.json listing
# every step in order with a verdict, the logs archive with every step's log, no failed step.
# Env: QD_SRC_DIR, QD_BUILD_DIR (CTest). Exit 0 pass, 1 fail.
set -uo pipefail
SRC=${QD_SRC_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
B=${QD_BUILD_DIR:-$SRC/build}
OUT_DIR=$B/gpu_check_dry/out
WORK_DIR=$B/gpu_check_dry/work
rm -rf "$B/gpu_check_dry"
mkdir -p "$OUT_DIR" "$WORK_DIR"
OUT=$OUT_DIR GPU_CHECK_WORK=$WORK_DIR QD_GPU_BUILD=$B bash "$SRC/bench/gpu_check.sh" --dry >"$B/gpu_check_dry/stdout.log" 2>&1
rc=$?
tail -n 40 "$B/gpu_check_dry/stdout.log"
python3 - "$OUT_DIR" "$rc" <<'PY'
import json, os, sys, tarfile
out, rc = sys.argv[1], int(sys.argv[2])
fails = []
files = [os.path.join(dp, f) for dp, _, fs in os.walk(out) for f in fs]
if len(files) > 8:
    fails.append(f"{len(files)} files under OUT (at most 8 come back from a GPU machine): {files}")
s = json.load(open(os.path.join(out, "summary.json")))
names = [st["name"] for st in s["steps"]]
want = ["report", "binaries", "twin_ops", "twin_unit", "twin_bert", "memcheck", "e2e_default", "e2e_imagenet",
        "determinism", "bench_gpu", "bench_torch", "bench_bert"]
if names != want:
    fails.append(f"steps {names}, expected {want}")
for st in s["steps"]:
    if st["status"] not in ("passed", "skipped"):
        fails.append(f"step {st['name']}: {st['status']} (rc {st['rc']}): {st['note']}")
# in dry mode only tools that are really absent may skip: the sanitizer (never run dry) and torch
for st in s["steps"]:
    if st["status"] == "skipped" and st["name"] not in ("memcheck", "bench_torch"):
        fails.append(f"step {st['name']} skipped in dry mode: {st['note']}")
if s["state"] != "finished" or not s["dry"]:
    fails.append(f"state {s['state']} dry {s['dry']}")
sc = s.get("timeout_scale", 1)
if s["timeouts_sum_s"] > s["budget_s"] or s["budget_s"] / sc >= 540:
    fails.append(f"timeouts add up to {s['timeouts_sum_s']} s, budget {s['budget_s']} s (/{sc}: must stay < 540)")
if not s.get("cuda_e2e") or s["cuda_e2e"].get("failures"):
    fails.append(f"cuda_e2e comparison missing or failed: {s.get('cuda_e2e')}")
if not s.get("bench_gpu"):
    fails.append("bench_gpu JSON not embedded")
with tarfile.open(os.path.join(out, "logs.tar.gz")) as t:
    logs = {os.path.basename(n) for n in t.getnames()}
for n in want:
    if f"{n}.log" not in logs:
        fails.append(f"logs.tar.gz has no {n}.log")
for f in fails:
    print("FAIL", f)
print(f"gpu_check --dry: {len(names)} steps, {len(files)} files, wall {s['wall_s']} s, script exit {rc}")
sys.exit(1 if fails or rc != 0 else 0)
PY
