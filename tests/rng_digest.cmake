# tests/rng_digest.cmake: results.json's per-unit reproducibility digest (docs/numerics.md
# "Reproducibility digest"): equal for 1 and 2 threads, changed by the seed, and recomputed from
# the generator's definition for unit 0 (tests/rng_digest_test.py; three tiny CPU runs, ~20 s).
qd_add_script_test(rng_digest
  COMMAND python3 ${CMAKE_SOURCE_DIR}/tests/rng_digest_test.py
  LABELS e2e
  TIMEOUT 300)
