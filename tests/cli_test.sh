#!/usr/bin/env bash
# tests/cli_test.sh: exit codes and one-line error messages of the qdrop-gpu CLI (issue 2).
# Everything here fails before the engine runs, so it needs no model or data.
# Env: QD_BIN (the binary), QD_SRC_DIR (repository root) — set by qd_add_script_test.
set -u
BIN=${QD_BIN:?QD_BIN not set}
SRC=${QD_SRC_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
T=$(mktemp -d /tmp/qd_cli_test.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0; checks=0

# expect CODE NEEDLE ARGS... : run the CLI, check the exit code and that stderr is exactly one
# line containing NEEDLE (NEEDLE "" = no stderr check).
expect() {
    local want=$1 needle=$2; shift 2
    checks=$((checks + 1))
    "$BIN" "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    local nl; nl=$(wc -l <"$T/err")
    if [ "$rc" != "$want" ]; then
        echo "FAIL: qdrop-gpu $* -> exit $rc, want $want; stderr: $(cat "$T/err")"; fails=$((fails + 1)); return
    fi
    if [ -n "$needle" ]; then
        if ! grep -qF -- "$needle" "$T/err" || [ "$nl" != 1 ]; then
            echo "FAIL: qdrop-gpu $* -> stderr ($nl lines) lacks '$needle': $(cat "$T/err")"; fails=$((fails + 1)); return
        fi
        if ! head -c 20 "$T/err" | grep -qF "qdrop-gpu: error: "; then
            echo "FAIL: qdrop-gpu $* -> stderr does not start with 'qdrop-gpu: error: '"; fails=$((fails + 1)); return
        fi
    fi
}

cd "$T" || exit 1
# missing inputs -> 66, naming the file
expect 66 "missing.json" --config missing.json
expect 66 "configs/default.json" --dry-run          # no --config and no ./configs/default.json here

# config errors -> 78 naming key and path
printf '{\n  "quant": {\n    "w_qconfig": { "bitt": 4 }\n  }\n}\n' >misspelt.json
expect 78 "quant.w_qconfig.bitt: unknown key (expected one of: bit, symmetric, ch_axis)" --config misspelt.json
expect 78 "misspelt.json" --config misspelt.json
printf '{\n  "quant": {\n    "calibrate": 12,,\n  }\n}\n' >malformed.json
expect 78 "malformed.json:3:21: malformed JSON" --config malformed.json
printf '{"quant": {"recon": {"drop_prob": "half"}}}' >type.json
expect 78 'quant.recon.drop_prob: expected a number in [0, 1], got the string "half"' --config type.json
printf '{"model": {"path": "m.onnx"}, "output": {"int4_weights": true}}' >int4.json
expect 78 "output.int4_weights" --config int4.json

# --set is typed by the schema
printf '{"model": {"path": "m.onnx"}}' >ok.json
expect 78 "quant.w_qconfig.bit: expected an integer in 2..8, got 9" --config ok.json --set quant.w_qconfig.bit=9
expect 78 "quant.recon.keep_gpu: expected true or false" --config ok.json --set quant.recon.keep_gpu=maybe
expect 78 "quant.recon.b_range" --config ok.json --set quant.recon.b_range=[20]
expect 78 "quant.mode: expected one of" --config ok.json --set quant.mode=fast
expect 78 "expected key.path=value" --config ok.json --set novalue

# the default config of the repository parses, and the embedded one is found from the root
cd "$SRC" || exit 1
expect 78 "quant.w_qconfig.bit: expected an integer in 2..8, got 9" --set quant.w_qconfig.bit=9
expect 78 "quant.w_qconfig.bit: expected an integer in 2..8, got 9" --config configs/default.json --set quant.w_qconfig.bit=9
cd "$T" || exit 1

# usage errors -> 64
expect 64 "unknown option '--bogus'" --bogus
expect 64 "--device: expected auto, cpu or cuda" --device gpu
expect 64 "--log-format" --log-format xml
expect 64 "--progress" --progress sometimes
expect 64 "needs a value" --config
expect 64 "unexpected argument" --config ok.json extra

# --help: exit 0, options and the exit-code table on stdout
expect 0 "" --help
for w in --config --set --device --out --resume --dry-run --inspect --log-format --progress --quiet --version \
         " 64 " " 65 " " 66 " " 69 " " 70 " " 74 " " 75 " " 76 " " 78 "; do
    checks=$((checks + 1))
    grep -qF -- "$w" "$T/out" || { echo "FAIL: --help lacks '$w'"; fails=$((fails + 1)); }
done
# --version: exit 0, version and git sha
expect 0 "" --version
checks=$((checks + 1))
grep -qE '^qdrop-gpu [0-9]+\.[0-9]+\.[0-9]+ \(git [0-9a-z]+\)' "$T/out" || { echo "FAIL: --version: $(cat "$T/out")"; fails=$((fails + 1)); }

echo "cli_test: $checks checks, $fails failed"
[ "$fails" = 0 ]
