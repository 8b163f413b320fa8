#!/usr/bin/env bash
# scripts/test.sh: build (scripts/build.sh) and run the test suite, without the slow and
# benchmark labels. CUDA tests exit 77 (skipped) where no GPU is usable; QD_REQUIRE_GPU=1 makes
# them fail instead. Everything the tests need is committed in this repository.
#   bash scripts/test.sh                  # build + tests
#   CTEST_ARGS="-L unit" bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
# shellcheck disable=SC2086
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 -LE "slow|bench" ${CTEST_ARGS:-}
