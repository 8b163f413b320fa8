#!/usr/bin/env bash
# tests/bert_sst2_cli.sh (issue 7): data.task sst2 through `qdrop-gpu --config` on the tiny random
# BertForSequenceClassification of tests/fixtures/bert/sst2_tiny (tools/make_bert_sst2_fixture.py):
# QDrop W4A8 for a few iterations per layer, calibration on 128 sentences and evaluation on all
# 872 sentences of assets/sst2/sst2_dev.tsv (the tiny test only: the same file serves both; real
# runs calibrate on a train file). Checks results.json: accuracy block (metric accuracy, FP32
# equal to the numpy reference of golden.json, quantized in [0, 1]), one unit per encoder layer
# with the planned iterations, and that a checkpoint without classifier head is refused (exit 65).
# Env: QD_BIN, QD_SRC_DIR. Exit 0 pass, 1 fail, 77 no binary / no python3.
set -uo pipefail
SRC=${QD_SRC_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${QD_BIN:-$SRC/build/qdrop-gpu}
[ -x "$BIN" ] || { echo "bert_sst2_cli: $BIN not found: skipping"; exit 77; }
command -v python3 >/dev/null || { echo "bert_sst2_cli: python3 not found: skipping"; exit 77; }
cd "$SRC"
WORK=$(mktemp -d /tmp/qd_bert_sst2.XXXXXX)
trap '[ -n "${QD_KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
FIX=$SRC/tests/fixtures/bert/sst2_tiny
cat >"$WORK/sst2.json" <<JSON
{
  "model": { "path": "$FIX", "type": "bert" },
  "data": { "calib_path": "$SRC/assets/sst2/sst2_dev.tsv", "val_path": "$SRC/assets/sst2/sst2_dev.tsv",
            "task": "sst2", "max_seq_len": 128 },
  "quant": {
    "w_qconfig": { "bit": 4, "symmetric": false, "ch_axis": 0 },
    "a_qconfig": { "bit": 8, "symmetric": false, "ch_axis": -1 },
    "calibrate": 128, "act_calib_samples": 64, "first_last_8bit": true, "mode": "qdrop",
    "recon": { "iters": 6, "batch_size": 8, "log_every": 3, "drop_prob": 0.5 }
  },
  "process": { "seed": 1005, "threads": 1 },
  "output": { "dir": "$WORK/out", "export_onnx": false }
}
JSON
fail=0
t0=$(date +%s)
"$BIN" --config "$WORK/sst2.json" --progress never >"$WORK/stdout" 2>"$WORK/stderr"
rc=$?
echo "qdrop-gpu exit $rc in $(( $(date +%s) - t0 )) s: $(cat "$WORK/stdout")"
if [ $rc -ne 0 ]; then echo "FAIL: run exited $rc: $(tail -5 "$WORK/stderr")"; fail=1
else
    python3 - "$WORK/out/results.json" "$FIX/golden.json" <<'PY' || fail=1
import json, sys
r = json.load(open(sys.argv[1])); g = json.load(open(sys.argv[2]))
a = r["accuracy"]
errs = []
if a.get("metric") != "accuracy": errs.append("metric %r" % a.get("metric"))
if a.get("examples") != g["n_dev"]: errs.append("examples %r != %d" % (a.get("examples"), g["n_dev"]))
if not isinstance(a.get("fp32"), float) or abs(a["fp32"] - g["fp32_accuracy"]) > 1e-9:
    errs.append("fp32 %r != reference %r" % (a.get("fp32"), g["fp32_accuracy"]))
if not isinstance(a.get("quant"), (int, float)) or not 0.0 <= a["quant"] <= 1.0: errs.append("quant %r" % a.get("quant"))
if r.get("task") != "sst2" or r.get("mode") != "qdrop" or r.get("w_bits") != 4 or r.get("a_bits") != 8:
    errs.append("task/mode/bits %r %r %r %r" % (r.get("task"), r.get("mode"), r.get("w_bits"), r.get("a_bits")))
u = r.get("units", [])
if len(u) != 2 or any(x["iters_run"] != 6 or x["iters_planned"] != 6 for x in u): errs.append("units %r" % u)
if r.get("calibration_sentences") != 128: errs.append("calibration_sentences %r" % r.get("calibration_sentences"))
if errs:
    print("FAIL: results.json: " + "; ".join(errs)); sys.exit(1)
print("ok   results.json: accuracy FP32 %.6f (= numpy reference), QDrop W4A8 %.6f, %d units x %d iterations"
      % (a["fp32"], a["quant"], len(u), u[0]["iters_run"]))
PY
    [ -s "$WORK/out/resolved_config.json" ] || { echo "FAIL: resolved_config.json missing"; fail=1; }
fi
# headless checkpoint: the STS-B-style model has no classifier -> data error (65), one line
mkdir -p "$WORK/nohead"
python3 - "$FIX" "$WORK/nohead" <<'PY'
import json, shutil, struct, sys
src, dst = sys.argv[1], sys.argv[2]
for f in ("config.json", "vocab.txt", "tokenizer_config.json"):
    shutil.copy(f"{src}/{f}", f"{dst}/{f}")
b = open(f"{src}/model.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); data = b[8 + n:]
keep = {k: v for k, v in h.items() if k != "__metadata__" and not k.startswith("classifier.")}
out, off, hdr = [], 0, {}
for k in sorted(keep, key=lambda k: keep[k]["data_offsets"][0]):
    s, e = keep[k]["data_offsets"]; hdr[k] = dict(keep[k], data_offsets=[off, off + e - s]); off += e - s
    out.append(data[s:e])
hj = json.dumps(hdr).encode(); hj += b" " * ((8 - len(hj) % 8) % 8)
open(f"{dst}/model.safetensors", "wb").write(struct.pack("<Q", len(hj)) + hj + b"".join(out))
PY
"$BIN" --config "$WORK/sst2.json" --set "model.path=$WORK/nohead" --out "$WORK/out2" --quiet --progress never 2>"$WORK/err2"
rc=$?
if [ $rc -ne 65 ] || [ "$(wc -l <"$WORK/err2")" -ne 1 ] || ! grep -q "classifier" "$WORK/err2"; then
    echo "FAIL: headless checkpoint: exit $rc (expected 65): $(cat "$WORK/err2")"; fail=1
else echo "ok   headless checkpoint refused: $(cat "$WORK/err2")"; fi
[ $fail -eq 0 ] && echo "bert_sst2_cli: PASS" || echo "bert_sst2_cli: FAIL"
exit $fail
