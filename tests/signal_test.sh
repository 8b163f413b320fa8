#!/usr/bin/env bash
# tests/signal_test.sh: SIGTERM/SIGINT and the output-directory lock on a tiny CPU run
# (tests/bad_inputs/catalogue/tiny_cnn32.onnx: 3 layer units, 3000 iterations each, ~2-4 s for
# each of the first two; about 35 s in all).
#   1. an uninterrupted run gives the reference outputs;
#   2. a second run into its directory while it runs exits 74 with one "in use" line and leaves
#      it alone;
#   3. SIGTERM once the first unit's checkpoint exists: exit 143, one stderr line "interrupted by
#      SIGTERM after unit k of 3; resume with --resume", an "interrupted" run.log event with the
#      same k, the checkpoint byte-identical to the one written after unit k, no results;
#   4. --resume, interrupted again with SIGINT in the next unit (exit 130, same checks), then
#      --resume to the end: outputs byte-identical to the uninterrupted run's.
# Env: QD_BIN, QD_SRC_DIR. Exit 0 pass, 1 fail, 77 no binary.
set -uo pipefail
SRC=${QD_SRC_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${QD_BIN:-$SRC/build/qdrop-gpu}
[ -x "$BIN" ] || { echo "signal: $BIN not found: skipping"; exit 77; }
cd "$SRC"
WORK=$(mktemp -d /tmp/qd_signal.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cat >"$WORK/cfg.json" <<JSON
{"model": {"path": "$SRC/tests/bad_inputs/catalogue/tiny_cnn32.onnx", "type": "onnx"},
 "data": {"calib_path": "$SRC/assets/cifar10/train-calib", "val_path": "$SRC/assets/cifar10/test", "preprocess": "cifar"},
 "quant": {"w_qconfig": {"bit": 4}, "a_qconfig": {"bit": 4}, "calibrate": 64, "act_calib_samples": 32,
           "mode": "qdrop", "recon": {"iters": 3000, "batch_size": 8, "log_every": 50}},
 "process": {"seed": 1005, "threads": 2}, "device": {"type": "cpu"},
 "eval": {"enabled": true, "max_images": 200}, "output": {"export_onnx": true, "plots": false}}
JSON
ARGS=(--config "$WORK/cfg.json" --quiet --progress never)
OUTS=(model_qdq.onnx encodings.json predictions.csv)
fail=0
bad() { echo "FAIL: $*"; fail=1; }


count_in() { local n; n=$(grep -c "$2" "$1" 2>/dev/null); echo "${n:-0}"; }
count() { count_in "$WORK/cut/run.log" "$1"; }
# wait_for_in FILE PATTERN COUNT PID: until FILE has COUNT lines matching PATTERN (1 when PID ended first)
wait_for_in() {
    for _ in $(seq 1 3000); do
        kill -0 "$4" 2>/dev/null || return 1
        [ "$(count_in "$1" "$2")" -ge "$3" ] && return 0
        sleep 0.02
    done
    return 1
}
wait_for() { wait_for_in "$WORK/cut/run.log" "$@"; }

# interrupt SIGNAL EXPECTED_RC UNITS [--resume]: start a run into cut/, wait until it has finished
# UNITS more units and logged 3 progress lines of the next one, send SIGNAL, check the aftermath
interrupt() {
    local sig=$1 want=$2 units=$3; shift 3
    local done0; done0=$(count '"event":"unit_done"')
    "$BIN" "${ARGS[@]}" --out "$WORK/cut" "$@" 2>"$WORK/cut.err" &
    local pid=$!
    if ! wait_for '"event":"unit_done"' $((done0 + units)) $pid; then
        wait $pid; bad "SIG$sig: the run ended (exit $?) before $units unit(s) were done: $(cat "$WORK/cut.err")"; return 1
    fi
    # in the middle of the next unit (its checkpoint is the one of the units before)
    local k; k=$(count '"event":"unit_done"')
    if ! wait_for '"event":"recon_progress"' $(($(count '"event":"recon_progress"') + 3)) $pid; then
        wait $pid; bad "SIG$sig: the run ended (exit $?) before the signal: $(cat "$WORK/cut.err")"; return 1
    fi
    cp "$WORK/cut/checkpoint.bin" "$WORK/ckpt.at_signal"
    kill -$sig $pid
    wait $pid
    local rc=$?
    [ $rc -eq "$want" ] || bad "SIG$sig: exit $rc, expected $want: $(cat "$WORK/cut.err")"
    [ "$(count '"event":"unit_done"')" -eq "$k" ] || bad "SIG$sig: a unit finished after the signal"
    local msg; msg=$(cat "$WORK/cut.err")
    [ "$(wc -l <"$WORK/cut.err")" -eq 1 ] || bad "expected one stderr line after SIG$sig, got: $msg"
    echo "$msg" | grep -q "^qdrop-gpu: error: interrupted by SIG$sig after unit $k of 3; resume with --resume" \
        || bad "stderr after SIG$sig (unit_done events: $k): $msg"
    tail -n 1 "$WORK/cut/run.log" | grep -q "\"event\":\"interrupted\",\"msg\":\"interrupted after unit $k of 3; resume with --resume\",\"signal\":\"SIG$sig\",\"units_done\":$k" \
        || bad "last run.log line after SIG$sig: $(tail -n 1 "$WORK/cut/run.log")"
    cmp -s "$WORK/cut/checkpoint.bin" "$WORK/ckpt.at_signal" || bad "the checkpoint changed after SIG$sig"
    for f in "${OUTS[@]}" results.json; do [ -e "$WORK/cut/$f" ] && bad "$f exists after SIG$sig"; done
    ls -a "$WORK/cut" | grep -q '\.tmp\.\|\.qdrop-staging' && bad "temporary files left after SIG$sig: $(ls -a "$WORK/cut")"
    [ $fail -eq 0 ] && echo "ok   SIG$sig in unit $((k + 1)): exit $rc, $msg"
    return 0
}

# The uninterrupted run; while it runs, a second run into its directory must be refused.
"$BIN" "${ARGS[@]}" --out "$WORK/full" 2>"$WORK/full.err" &
pid=$!
if wait_for_in "$WORK/full/run.log" '"event":"recon_progress"' 1 $pid; then
    "$BIN" "${ARGS[@]}" --out "$WORK/full" 2>"$WORK/second.err"
    rc2=$?
    if [ $rc2 -ne 74 ]; then bad "second run into a busy directory exited $rc2, expected 74: $(cat "$WORK/second.err")"
    elif [ "$(wc -l <"$WORK/second.err")" -ne 1 ] || ! grep -q "^qdrop-gpu: error: output directory .* is in use by another qdrop-gpu run" "$WORK/second.err"; then
        bad "second run's message: $(cat "$WORK/second.err")"
    else echo "ok   second run refused: $(cat "$WORK/second.err")"; fi
else bad "the uninterrupted run ended before its first progress line"; fi
wait $pid || { echo "FAIL: uninterrupted run exited $?: $(cat "$WORK/full.err")"; exit 1; }
echo "ok   uninterrupted run"

interrupt TERM 143 1 || exit 1
interrupt INT 130 0 --resume || exit 1
"$BIN" "${ARGS[@]}" --out "$WORK/cut" --resume 2>"$WORK/resume.err" || { echo "FAIL: final --resume exited $?: $(cat "$WORK/resume.err")"; exit 1; }
[ "$(count '"event":"resume"')" -eq 2 ] || bad "expected two resume events in run.log"
for f in "${OUTS[@]}"; do
    if cmp -s "$WORK/full/$f" "$WORK/cut/$f"; then echo "ok   $f byte-identical after SIGTERM, SIGINT and two resumes"
    else bad "$f differs between the uninterrupted and the interrupted + resumed run"; fi
done
[ $fail -eq 0 ] && echo "signal: PASS" || echo "signal: FAIL"
exit $fail
