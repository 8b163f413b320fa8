# CPU reference backend, shared quantization math and forward executor (issue 4 items 1, 2, 7).
qd_add_test(test_qmath SOURCES unit/test_qmath.c LABELS unit)
qd_add_test(test_grad SOURCES unit/test_grad.c LABELS unit grad)
# Transformer ops (LayerNormalization, Gelu, masked Softmax) bit-identical to the BERT encoder's math.
qd_add_test(test_transformer_ops SOURCES unit/test_transformer_ops.c LABELS unit)
qd_add_test(test_cpu_threads SOURCES unit/test_cpu_threads.c LABELS unit)
# The im2col + OpenBLAS convolution path (builds without oneDNN, grouped convs) stays covered
# when oneDNN takes the ungrouped ones: the same checks with QD_CPU_CONV=im2col, and a twin test.
add_test(NAME test_grad_im2col COMMAND test_grad WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
add_test(NAME test_cpu_threads_im2col COMMAND test_cpu_threads WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(test_grad_im2col test_cpu_threads_im2col PROPERTIES LABELS unit ENVIRONMENT
                     "QD_CPU_CONV=im2col;QD_TEST_NO_BENCH=1" TIMEOUT 600)
qd_add_test(test_conv_paths SOURCES unit/test_conv_paths.c LABELS unit)
qd_add_test(test_golden_quant SOURCES unit/test_golden_quant.c LABELS unit golden)
qd_add_test(test_exec SOURCES unit/test_exec.c LABELS unit)
# SIMD clone choice (src/core/simd.h) must not change results: generic build vs dispatched build.
qd_add_script_test(simd_clones COMMAND bash ${CMAKE_SOURCE_DIR}/tests/simd_clones_test.sh LABELS e2e TIMEOUT 1200)
