#!/usr/bin/env bash
# scripts/build.sh: configure and build qdrop-gpu into ./build (Release, warnings are errors).
# The CUDA backend is built when nvcc + cuDNN are found (QD_CUDA=AUTO); override with e.g.
#   QD_CUDA=OFF bash scripts/build.sh      JOBS=8 bash scripts/build.sh
# Extra CMake arguments are passed through:  bash scripts/build.sh -DQD_SANITIZE=ON
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DQD_WERROR=ON -DQD_CUDA="${QD_CUDA:-AUTO}" "$@"
cmake --build "$BUILD_DIR" -j"$JOBS"
