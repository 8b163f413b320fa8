#!/usr/bin/env bash
# tests/memory_test.sh: the host-memory budget end to end (docs/memory.md), on the CPU.
#   memory_test.sh cifar     configs/default.json (ResNet-20, CIFAR-10), 256 calibration images,
#                            4 iterations per unit, budget 40M (its caches peak at 64 MiB);
#   memory_test.sh imagenet  a ResNet-18-shaped model at 224x224 (tests/cuda/make_imagenet_shape.py,
#                            channel counts / 8, seeded weights), 32 calibration images, budget 40M.
# Each runs the model twice through the CLI, with the default budget (every cache in memory) and
# with a budget that forces spilling, and checks:
#   1. --dry-run prints the memory plan per phase and says the budget forces spilling;
#   2. the budgeted run spilled (run.log "memory" event: spill files, bytes) and the other did not;
#   3. results identical: results.json numbers (timings aside), model_qdq.onnx and encodings.json
#      byte for byte; and no spill file is left in the output directory;
#   4. peak RSS (getrusage, logged by the run; /usr/bin/time -v agrees) within the budget + the
#      planned fixed overhead, and below the in-memory run's by the cache bytes the budget kept
#      out of memory, less the streaming window (the spilled pages one batch maps in) and 8 MiB;
#   5. imagenet: progress bars for every phase (--progress always).
# Env: QD_BIN, QD_SRC_DIR (set by qd_add_script_test).
set -u
WHAT=${1:?usage: memory_test.sh cifar|imagenet}
BIN=${QD_BIN:?QD_BIN not set}
SRC=${QD_SRC_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
T=$(mktemp -d /tmp/qd_memory_test.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

case "$WHAT" in
cifar)
    CONFIG="$SRC/configs/default.json"
    SETS=(--set device.type=cpu --set process.threads=2 --set quant.calibrate=256 --set quant.recon.iters=4
          --set eval.max_images=100 --set output.plots=false)
    BUDGET=40M
    PROGRESS=never
    ;;
imagenet)
    python3 "$SRC/tests/cuda/make_imagenet_shape.py" "$T/m" --hw 224 --calib 32 --val 16 --width-div 8 >/dev/null ||
        { echo "FAIL: make_imagenet_shape.py (numpy/onnx missing?)"; exit 1; }
    cat >"$T/m/c.json" <<'JSON'
{"model": {"path": "model.onnx"},
 "data": {"calib_path": "calib.npy", "val_path": "val.npy", "val_labels_path": "val_labels.npy", "preprocess": "none"},
 "quant": {"calibrate": 32, "act_calib_samples": 16, "first_last_8bit": false,
           "recon": {"iters": 2, "batch_size": 4, "log_every": 1}},
 "process": {"threads": 2}, "device": {"type": "cpu"},
 "eval": {"batch_size": 8}, "output": {"plots": false}}
JSON
    CONFIG="$T/m/c.json"
    SETS=()
    BUDGET=40M
    PROGRESS=always
    ;;
*) echo "usage: memory_test.sh cifar|imagenet"; exit 2 ;;
esac

TIMEV=()
[ -x /usr/bin/time ] && TIMEV=(/usr/bin/time -v -o "$T/time.txt")

# 1. the plan
"$BIN" --config "$CONFIG" "${SETS[@]}" --set process.host_memory_budget=$BUDGET --out "$T/dry" --dry-run \
    --progress never >"$T/dry.out" 2>"$T/dry.err" || fail "--dry-run: exit $?"
for p in "load" "FP32 evaluation" "activation ranges" "unit caches" "reconstruction" "quantized evaluation" "export"; do
    grep -qE "^  $p +[0-9.]+ (B|KiB|MiB|GiB) " "$T/dry.out" || fail "--dry-run: no host peak for phase '$p'"
done
grep -qF "the budget forces spilling" "$T/dry.out" || fail "--dry-run: does not say the budget forces spilling"
grep -qF "peak RSS bound: budget" "$T/dry.out" || fail "--dry-run: no peak RSS bound"

# 2. the two runs
"$BIN" --config "$CONFIG" "${SETS[@]}" --out "$T/mem" --progress never >"$T/mem.out" 2>"$T/mem.err" ||
    fail "in-memory run: exit $? ($(tail -1 "$T/mem.err"))"
t0=$(date +%s.%N)
"${TIMEV[@]}" "$BIN" --config "$CONFIG" "${SETS[@]}" --set process.host_memory_budget=$BUDGET --out "$T/spill" \
    --progress $PROGRESS >"$T/spill.out" 2>"$T/spill.err" || fail "spilling run: exit $? ($(tail -1 "$T/spill.err"))"
echo "spilling run: $(echo "$(date +%s.%N) - $t0" | bc) s"

python3 - "$T" <<'PY' || fails=$((fails + 1))
import json, os, re, sys
T = sys.argv[1]
bad = []

def memory_event(d):
    ev = [json.loads(l) for l in open(os.path.join(T, d, "run.log")) if '"event":"memory"' in l]
    if not ev:
        bad.append(f"{d}: no memory event in run.log")
        return None
    return ev[-1]

m, s = memory_event("mem"), memory_event("spill")
if m and s:
    print(f"in memory: peak RSS {m['peak_rss_bytes'] / 2**20:.1f} MiB, caches {m['cache_in_memory_peak_bytes'] / 2**20:.1f} MiB")
    print(f"spilled:   peak RSS {s['peak_rss_bytes'] / 2**20:.1f} MiB, caches {s['cache_in_memory_peak_bytes'] / 2**20:.1f} MiB "
          f"in memory + {s['cache_spilled_peak_bytes'] / 2**20:.1f} MiB spilled in {s['spill_files']} files; "
          f"budget {s['host_budget_bytes'] / 2**20:.1f} MiB + planned overhead {s['fixed_overhead_bytes'] / 2**20:.1f} MiB")
    if m["spill_files"] != 0:
        bad.append(f"the default budget spilled {m['spill_files']} files")
    if s["spill_files"] < 1 or s["cache_spilled_peak_bytes"] <= 0:
        bad.append("the budgeted run did not spill")
    if s["cache_in_memory_peak_bytes"] > s["host_budget_bytes"]:
        bad.append(f"caches in memory {s['cache_in_memory_peak_bytes']} > budget {s['host_budget_bytes']}")
    bound = s["host_budget_bytes"] + s["fixed_overhead_bytes"]
    if s["peak_rss_bytes"] > bound:
        bad.append(f"peak RSS {s['peak_rss_bytes']} > budget + planned overhead {bound}")
    kept_out = m["cache_in_memory_peak_bytes"] - s["cache_in_memory_peak_bytes"]
    if m["peak_rss_bytes"] - s["peak_rss_bytes"] < kept_out - s["window_bytes"] - (8 << 20):
        bad.append(f"peak RSS fell by {m['peak_rss_bytes'] - s['peak_rss_bytes']} bytes only, the budget kept {kept_out} "
                   f"bytes of caches out of memory (streaming window {s['window_bytes']})")
    tv = os.path.join(T, "time.txt")
    if os.path.exists(tv):
        kb = [int(x) for x in re.findall(r"Maximum resident set size \(kbytes\): (\d+)", open(tv).read())]
        if not kb:
            bad.append("/usr/bin/time -v: no maximum resident set size")
        elif kb[0] * 1024 > bound:
            bad.append(f"/usr/bin/time -v: maximum RSS {kb[0]} KiB > budget + planned overhead {bound} bytes")

def numbers(d):
    r = json.load(open(os.path.join(T, d, "results.json")))
    for k in ("timing", "command"):
        r.pop(k, None)
    for u in r.get("units", []):
        u.pop("seconds", None)
        u.pop("it_per_s", None)
    return r

a, b = numbers("mem"), numbers("spill")
if a != b:
    bad.append("results.json differs between the in-memory and the spilling run")
for f in ("model_qdq.onnx", "encodings.json", "predictions.csv"):
    if open(os.path.join(T, "mem", f), "rb").read() != open(os.path.join(T, "spill", f), "rb").read():
        bad.append(f"{f} differs between the in-memory and the spilling run")
left = sorted(set(os.listdir(os.path.join(T, "spill"))) - set(os.listdir(os.path.join(T, "mem"))))
if left:
    bad.append(f"files left by the spilling run: {left}")
for x in bad:
    print("FAIL:", x)
sys.exit(1 if bad else 0)
PY

if [ "$PROGRESS" = always ]; then
    for p in "FP32 evaluation [" "activation ranges [" "weight ranges [" "cache [" "quantized evaluation ["; do
        grep -qF -- "$p" "$T/spill.err" || fail "no '$p' progress bar"
    done
    grep -qE "loss .* it/s ETA " "$T/spill.err" || fail "no reconstruction progress bar"
fi

if [ "$fails" != 0 ]; then
    echo "--- dry run ---"; cat "$T/dry.out"; echo "--- spilling run stderr ---"; tail -20 "$T/spill.err"
    exit 1
fi
echo "memory_test $WHAT: all checks passed"
