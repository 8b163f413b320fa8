#!/usr/bin/env bash
# tests/resume_test.sh (issue 6 item 4): a CPU run killed with SIGKILL in the middle of a unit,
# then continued with --resume, must end with outputs byte-identical to an uninterrupted run's
# (model_qdq.onnx, encodings.json, predictions.csv); resuming with a different config must be
# refused with exit 78 and leave the checkpoint untouched.
# With the argument "bert" the same is checked for a BERT run (model.type bert: the tiny random
# SST-2 classifier of tests/fixtures/bert/sst2_tiny, 2 encoder layers = 2 units; predictions.csv
# holds the quantized model's SST-2 predictions), killed in the middle of its second unit.
# With the argument "brecq" the same is checked for quant.mode=brecq, whose checkpoints also
# cover its activation stage (docs/algorithm.md §6.3/§9): the run is killed twice, once during the
# stage-2 activation-range initialisation (checkpoint: all weights done, no stage-2 unit) and once
# in the middle of the 4th stage-2 unit, and resumed after each kill.
# Env: QD_BIN, QD_SRC_DIR. Exit 0 pass, 1 fail, 77 no binary.
set -uo pipefail
SRC=${QD_SRC_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${QD_BIN:-$SRC/build/qdrop-gpu}
[ -x "$BIN" ] || { echo "resume: $BIN not found: skipping"; exit 77; }
cd "$SRC"
WORK=$(mktemp -d /tmp/qd_resume.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ARGS=(--config configs/default.json --device cpu --quiet --progress never
      --set quant.recon.iters=150 --set quant.calibrate=256 --set quant.act_calib_samples=64
      --set eval.max_images=500 --set output.plots=false --set quant.recon.log_every=10)
MODE=${1:-qdrop}
if [ "$MODE" = bert ]; then
    # 2 units x 300 iterations, a progress line every 10: killed 5 lines into the second unit
    ARGS=(--config tests/fixtures/bert/sst2_tiny_run.json --device cpu --quiet --progress never
          --set quant.recon.iters=300 --set quant.recon.log_every=10 --set eval.max_images=200)
    KILL_UNITS=1; KILL_PROGRESS=$((30 + 5))
elif [ "$MODE" = brecq ]; then
    # stage 1: 11 units x 3 progress lines; stage 2: 15 progress lines per unit
    ARGS+=(--set quant.mode=brecq --set quant.recon.iters=30 --set quant.brecq.act_iters=150)
    KILL_UNITS=$((11 + 3)); KILL_PROGRESS=$((11 * 3 + 3 * 15 + 5))
else
    KILL_UNITS=3; KILL_PROGRESS=$((3 * 15 + 5))
fi
fail=0

"$BIN" "${ARGS[@]}" --out "$WORK/full" || { echo "FAIL: uninterrupted run exited $?"; exit 1; }
echo "uninterrupted run done"

if [ "$MODE" = brecq ]; then
    # first kill: during BRECQ's stage-2 activation-range initialisation
    "$BIN" "${ARGS[@]}" --out "$WORK/cut" &
    pid=$!
    killed=0
    for _ in $(seq 1 3000); do
        if ! kill -0 $pid 2>/dev/null; then break; fi
        if grep -q '"event":"brecq_act_ranges"' "$WORK/cut/run.log" 2>/dev/null; then kill -9 $pid; killed=1; break; fi
        sleep 0.05
    done
    wait $pid 2>/dev/null
    if [ $killed -ne 1 ]; then echo "FAIL: could not interrupt the run during the stage-2 range init"; exit 1; fi
    grep -q '"event":"unit_start","msg":"BRECQ stage 2' "$WORK/cut/run.log" && echo "note: the first kill landed after stage 2 had started"
    echo "killed during the BRECQ activation-range initialisation"
    RESUME=(--resume)
else
    RESUME=()
fi

# Interrupted run: kill -9 once the checkpoint records KILL_UNITS finished units and the next is underway.
"$BIN" "${ARGS[@]}" --out "$WORK/cut" "${RESUME[@]}" &
pid=$!
killed=0
for _ in $(seq 1 1200); do
    if ! kill -0 $pid 2>/dev/null; then break; fi
    n=$(grep -c '"event":"unit_done"' "$WORK/cut/run.log" 2>/dev/null || true)
    p=$(grep -c '"event":"recon_progress"' "$WORK/cut/run.log" 2>/dev/null || true)
    if [ "${n:-0}" -ge $KILL_UNITS ] && [ "${p:-0}" -ge $KILL_PROGRESS ]; then
        kill -9 $pid; killed=1; break
    fi
    sleep 0.2
done
wait $pid 2>/dev/null
if [ $killed -ne 1 ]; then echo "FAIL: could not interrupt the run mid-unit"; exit 1; fi
echo "killed after $(grep -c '"event":"unit_done"' "$WORK/cut/run.log") finished units"
ls "$WORK/cut" | grep -q '\.tmp\.' && { echo "note: a temporary file was left by the kill (expected possible; outputs are written by rename)"; }
for f in model_qdq.onnx encodings.json results.json; do
    [ -e "$WORK/cut/$f" ] && { echo "FAIL: $f exists after the kill"; fail=1; }
done

# A different config must be refused and must not touch the checkpoint.
cp "$WORK/cut/checkpoint.bin" "$WORK/ckpt.before"
"$BIN" "${ARGS[@]}" --set quant.w_qconfig.bit=2 --out "$WORK/cut" --resume 2>"$WORK/mismatch.err"
rc=$?
if [ $rc -ne 78 ]; then echo "FAIL: resume with another config exited $rc, expected 78"; cat "$WORK/mismatch.err"; fail=1;
else echo "ok   mismatching config refused: $(cat "$WORK/mismatch.err")"; fi
cmp -s "$WORK/cut/checkpoint.bin" "$WORK/ckpt.before" || { echo "FAIL: refused resume modified the checkpoint"; fail=1; }

"$BIN" "${ARGS[@]}" --out "$WORK/cut" --resume || { echo "FAIL: resume exited $?"; exit 1; }
grep -q '"event":"resume"' "$WORK/cut/run.log" || { echo "FAIL: run.log has no resume event"; fail=1; }
for f in model_qdq.onnx encodings.json predictions.csv; do
    if cmp -s "$WORK/full/$f" "$WORK/cut/$f"; then echo "ok   $f byte-identical after kill + resume"
    else echo "FAIL: $f differs between the uninterrupted and the resumed run"; fail=1; fi
done
[ $fail -eq 0 ] && echo "resume ($MODE): PASS" || echo "resume ($MODE): FAIL"
exit $fail
