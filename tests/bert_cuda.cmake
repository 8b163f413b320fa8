# CUDA encoder layer (cuda/bert_cuda.cu) vs the CPU encoder (src/bert/encoder.c): label cuda, so
# bench/gpu_check.sh runs it with QD_REQUIRE_GPU=1; exits 77 (skipped) without a usable device.
# The _selftest variant runs the same harness with the CPU encoder in place of the device.
if(QD_HAVE_CUDA)
  qd_add_test(test_cuda_bert SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/cuda/test_cuda_bert.c LABELS cuda TIMEOUT 300)
  add_test(NAME test_cuda_bert_selftest COMMAND test_cuda_bert WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(test_cuda_bert_selftest PROPERTIES LABELS "unit" ENVIRONMENT "QD_TWIN_SELFTEST=1" TIMEOUT 300)
endif()
