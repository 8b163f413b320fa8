# CPU reference backend, shared quantization math and forward executor (issue 4 items 1, 2, 7).
qd_add_test(test_qmath SOURCES unit/test_qmath.c LABELS unit)
qd_add_test(test_grad SOURCES unit/test_grad.c LABELS unit grad)
qd_add_test(test_cpu_threads SOURCES unit/test_cpu_threads.c LABELS unit)
qd_add_test(test_golden_quant SOURCES unit/test_golden_quant.c LABELS unit golden)
qd_add_test(test_exec SOURCES unit/test_exec.c LABELS unit)
# SIMD clone choice (src/core/simd.h) must not change results: generic build vs dispatched build.
qd_add_script_test(simd_clones COMMAND bash ${CMAKE_SOURCE_DIR}/tests/simd_clones_test.sh LABELS e2e TIMEOUT 1200)
