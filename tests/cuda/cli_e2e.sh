#!/usr/bin/env bash
# tests/cuda/cli_e2e.sh: the CUDA backend end to end through the CLI (label cuda).
#
#   cli_e2e.sh default    configs/default.json (ResNet-20, CIFAR-10, W4A4) with --device cuda and
#                         with --device cpu, QD_CUDA_E2E_ITERS iterations per unit (default 100),
#                         compared by tests/cuda/compare_runs.py: quantized top-1 within 0.3 pt,
#                         per-unit SQNR within 0.2 dB, first-iteration losses, per-unit digests of
#                         the batch indices and drop masks bit-identical (results.json rng_digest),
#                         GPU name / TF32 / cuDNN versions and per-shape algorithms in results.json.
#   cli_e2e.sh imagenet   an ImageNet-shape model through the CLI on the GPU: the ResNet-18
#                         skeleton refilled by the seeded generator (tests/cuda/make_imagenet_shape.py),
#                         224x224 synthetic data (256 calibration arrays), W2A2, 20 iterations
#                         per unit; checks 10 units reconstructed with finite SQNR and accuracy
#                         reported; writes imagenet.json (timings, range-search time).
#
# Env: QD_BIN, QD_SRC_DIR, QD_BUILD_DIR (CTest sets them). QD_REQUIRE_GPU=1: no device fails.
#      QD_CUDA_E2E_DRY=1: the test's logic without a GPU: the "device" run is a second CPU run
#      (tiny sizes), GPU-only checks are reported as not applicable (bench/gpu_check.sh --dry).
#      QD_CUDA_E2E_OUT=DIR: keep the runs there (gpu_check.sh collects results.json/compare.json).
# Exit: 0 pass, 1 fail, 77 no usable CUDA device (the CLI's exit 69) or python3/numpy/onnx missing.
set -uo pipefail
mode=${1:-default}
SRC=${QD_SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${QD_BIN:-$SRC/build/qdrop-gpu}
W=${QD_CUDA_E2E_OUT:-${QD_BUILD_DIR:-/tmp}/cuda_e2e}/$mode
DRY=${QD_CUDA_E2E_DRY:-0}
dev=cuda
[[ "$DRY" == 1 ]] && dev=cpu
[[ -x "$BIN" ]] || { echo "cli_e2e: $BIN not found"; exit 1; }
command -v python3 >/dev/null || { echo "cli_e2e: skipped: python3 not found"; exit 77; }
rm -rf "$W"
mkdir -p "$W"

no_device() { # $1 = the CLI's error line
    if [[ "${QD_REQUIRE_GPU:-}" == 1 ]]; then
        echo "FAIL: QD_REQUIRE_GPU=1 but no usable CUDA device: $1" >&2
        exit 1
    fi
    echo "SKIP: no usable CUDA device ($1)"
    exit 77
}

run() { # run NAME DEVICE ARGS...: one CLI run into $W/NAME; exit code kept in $W/NAME.rc
    local name=$1 d=$2
    shift 2
    local t0=$SECONDS
    "$BIN" --device "$d" --out "$W/$name" --progress never "$@" >"$W/$name.out" 2>"$W/$name.err"
    local rc=$?
    echo "$rc" >"$W/$name.rc"
    echo "cli_e2e: $name (--device $d): exit $rc in $((SECONDS - t0)) s"
    if [[ $rc == 69 && $d == cuda ]]; then no_device "$(grep -m1 'error:' "$W/$name.err")"; fi
    if [[ $rc != 0 ]]; then
        echo "FAIL: $name exited $rc" >&2
        tail -n 20 "$W/$name.err" >&2
        exit 1
    fi
}

case "$mode" in
default)
    it=${QD_CUDA_E2E_ITERS:-100}
    extra=()
    dev_extra=()
    # dry: the logic only, as small as the config allows (CPU time in CI); the two CPU runs use
    # 1 and 2 threads, so the digest comparison also checks thread independence
    [[ "$DRY" == 1 ]] && { it=4; extra=(--set quant.calibrate=32 --set quant.act_calib_samples=32 --set eval.max_images=200
                                        --set process.threads=2); dev_extra=(--set process.threads=1); }
    # the device run first: without a GPU it ends the test before the CPU run costs anything
    run device "$dev" --config "$SRC/configs/default.json" --set "quant.recon.iters=$it" "${extra[@]}" "${dev_extra[@]}"
    run cpu cpu --config "$SRC/configs/default.json" --set "quant.recon.iters=$it" "${extra[@]}"
    dry=()
    [[ "$DRY" == 1 ]] && dry=(--dry)
    python3 "$SRC/tests/cuda/compare_runs.py" "$W/cpu" "$W/device" "${dry[@]}" --out "$W/compare.json"
    exit $?
    ;;
imagenet)
    # 256 calibration images = quant.act_calib_samples' default: the range search then costs what
    # it costs in a full 1,024-image run (it reads act_calib_samples images)
    hw=224 it=${QD_CUDA_E2E_ITERS_IMAGENET:-20} n=256 nval=64 bs=32 wdiv=1
    # dry: the same 10-unit topology at 1/8 of the channels and 32x32 (the CPU's range search on
    # the full net takes minutes)
    [[ "$DRY" == 1 ]] && { hw=32; it=2; n=8; nval=8; bs=8; wdiv=8; }
    # is there a device? (a one-iteration default run: exit 69 within seconds when there is none,
    # before the fixture costs anything)
    [[ "$DRY" == 1 ]] || run probe cuda --config "$SRC/configs/default.json" --set quant.recon.iters=1 \
        --set quant.calibrate=32 --set quant.act_calib_samples=32 --set eval.enabled=false \
        --set output.export_onnx=false --set output.plots=false
    python3 "$SRC/tests/cuda/make_imagenet_shape.py" "$W/data" --hw "$hw" --calib "$n" --val "$nval" --width-div "$wdiv"
    rc=$?
    [[ $rc == 0 ]] || { echo "cli_e2e: fixture generation exited $rc"; exit "$rc"; }
    run r18 "$dev" --config "$SRC/configs/default.json" \
        --set "model.path=$W/data/model.onnx" --set "data.calib_path=$W/data/calib.npy" \
        --set "data.val_path=$W/data/val.npy" --set "data.val_labels_path=$W/data/val_labels.npy" \
        --set data.preprocess=none --set "quant.calibrate=$n" --set "quant.act_calib_samples=$n" \
        --set "quant.recon.iters=$it" --set "quant.recon.batch_size=$bs" \
        --set quant.w_qconfig.bit=2 --set quant.a_qconfig.bit=2 --set eval.batch_size=32
    python3 - "$W/r18/results.json" "$dev" "$W/imagenet.json" <<'PY'
import json, math, sys
r = json.load(open(sys.argv[1]))
dev = sys.argv[2]
fails = []
units = r.get("units", [])
if len(units) != 10:
    fails.append(f"{len(units)} units reconstructed, ResNet-18 has 10 (docs/units.md)")
for u in units:
    if not (math.isfinite(u.get("sqnr_after_db", float("nan"))) and u.get("iters_run", 0) > 0):
        fails.append(f"unit {u.get('name')}: sqnr_after_db {u.get('sqnr_after_db')} iters_run {u.get('iters_run')}")
acc = r.get("accuracy", {})
if "quant_top1" not in acc or "fp32_top1" not in acc:
    fails.append(f"accuracy missing: {acc}")
if r.get("device", {}).get("backend") != dev:
    fails.append(f"backend {r.get('device', {}).get('backend')!r}, expected {dev!r}")
t = r.get("timing", {})
print(f"imagenet-shape ResNet-18: {len(units)} units, FP32 top-1 {acc.get('fp32_top1')}, quant top-1 "
      f"{acc.get('quant_top1')}, range search {t.get('act_ranges_s', 0) + t.get('weight_ranges_s', 0):.2f} s, "
      f"reconstruction {t.get('reconstruction_s')} s, total {t.get('total_s')} s on {r.get('device', {}).get('name')}")
for f in fails:
    print("FAIL", f)
json.dump({"model": "ResNet-18 skeleton (seeded weights)", "device": r.get("device"), "units": len(units),
           "calibration_images": r.get("calibration_images"), "iters_per_unit": r.get("iters_per_unit"),
           "w_bits": r.get("w_bits"), "a_bits": r.get("a_bits"), "accuracy": acc, "timing": t,
           "range_search_s": t.get("act_ranges_s", 0) + t.get("weight_ranges_s", 0), "failures": fails},
          open(sys.argv[3], "w"), indent=1)
sys.exit(1 if fails else 0)
PY
    exit $?
    ;;
*)
    echo "usage: cli_e2e.sh default|imagenet" >&2
    exit 64
    ;;
esac
