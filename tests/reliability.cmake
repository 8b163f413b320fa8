# tests/reliability.cmake: determinism of CPU runs (tests/determinism_test.sh, docs/reliability.md).
qd_add_script_test(determinism
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/determinism_test.sh
  LABELS e2e
  TIMEOUT 1800)
