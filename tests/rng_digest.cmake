# tests/rng_digest.cmake: results.json reproducibility evidence and the range-search benchmark smoke run.
# The per-unit reproducibility digest (docs/numerics.md
# "Reproducibility digest"): equal for 1 and 2 threads, changed by the seed, and recomputed from
# the generator's definition for unit 0 (tests/rng_digest_test.py; three tiny CPU runs, ~20 s).
qd_add_script_test(rng_digest
  COMMAND python3 ${CMAKE_SOURCE_DIR}/tests/rng_digest_test.py
  LABELS e2e
  TIMEOUT 300)
# The range-search benchmark keeps running and its fast search keeps matching the exact one on a
# 4-bit signed 2-D tensor (one 224x224-network image; ~1 s). Figures: docs/numerics.md §7.
if(QD_BUILD_BENCH)
  add_test(NAME bench_range_search_smoke COMMAND qd_bench_range_search --images 1 --only mbv2.block6_out
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(bench_range_search_smoke PROPERTIES LABELS "unit" TIMEOUT 120
                       PASS_REGULAR_EXPRESSION "\"range_rel_diff\":0\\.00e\\+00,\"lp_err_rel_diff\":0\\.00e\\+00")
endif()
