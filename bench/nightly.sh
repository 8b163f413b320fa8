#!/usr/bin/env bash
# Nightly benchmark job, one command (issue 8). Wraps bench/nightly.py; see docs/nightly.md.
#
#   bench/nightly.sh [--matrix bench/nightly_matrix_ci.json] [--out runs/nightly]
#                    [--bin build/qdrop-gpu] [--previous LAST_NIGHT_DIR_OR_benchmark.json]
#                    [--accuracy-drop-pt 0.5] [--time-increase-pct 10] [--only ID_TEXT] ...
#   bench/nightly.sh compare --current A.json --previous B.json     (detector only)
#   bench/nightly.sh slurm [--matrix M] --out SHARED_DIR [--partition P] [--gres gpu:1 | --cpu-only] [--wait]
#                                        (one Slurm job array + an afterany summary job)
#   bench/nightly.sh k8s [--matrix M] [--image IMG] [--results-pvc PVC] -o nightly.yaml
#                                        (Kubernetes Indexed Job manifest)
#   bench/nightly.sh run-one --id RUN_ID ...   (one matrix element; what each array task runs)
#
# Exit codes: 0 ok, 1 regressions against --previous, 2 usage / bad matrix, 3 a run failed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
py="${PYTHON:-python3}"
if ! command -v "$py" >/dev/null 2>&1; then
  echo "nightly.sh: $py not found (install python3: scripts/install_deps.sh)" >&2
  exit 2
fi
if [[ "${1:-}" =~ ^(compare|run|run-one|slurm|k8s)$ ]]; then
  sub="$1"
  shift
else
  sub=run
fi
# Default binary: $QD_BIN, else the README's build dir.
if [[ "$sub" =~ ^(run|run-one|slurm)$ ]] && [[ " $* " != *" --bin "* ]] && [[ "$*" != *"--bin="* ]]; then
  set -- --bin "${QD_BIN:-$root/build/qdrop-gpu}" "$@"
fi
exec "$py" "$here/nightly.py" "$sub" "$@"
