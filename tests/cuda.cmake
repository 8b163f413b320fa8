# CUDA twin tests (label cuda; qd_add_test adds RESOURCE_LOCK gpu). They are built whenever the
# CUDA backend is, and exit 77 (skipped) without a usable device, 1 when QD_REQUIRE_GPU=1.
if(QD_HAVE_CUDA)
  qd_add_test(test_cuda_ops SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/cuda/test_cuda_ops.c LABELS cuda TIMEOUT 300)
  qd_add_test(test_cuda_unit SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/cuda/test_cuda_unit.c LABELS cuda TIMEOUT 300)
  # The harness itself, run against a second CPU backend: checks shapes/attributes/budgets of the
  # twin tests on machines without a GPU (QD_TWIN_SELFTEST=1).
  add_test(NAME test_cuda_ops_selftest COMMAND test_cuda_ops WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(test_cuda_ops_selftest PROPERTIES LABELS "unit" ENVIRONMENT "QD_TWIN_SELFTEST=1" TIMEOUT 300)
  add_test(NAME test_cuda_unit_selftest COMMAND test_cuda_unit WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(test_cuda_unit_selftest PROPERTIES LABELS "unit" ENVIRONMENT "QD_TWIN_SELFTEST=1" TIMEOUT 300)
  # GPU benchmark (bench/bench_gpu.c): built here so it needs no bench/CMakeLists.txt; smoke-run
  # as a test (tiny iteration counts), exits 77 without a device.
  add_executable(qd_bench_gpu ${CMAKE_SOURCE_DIR}/bench/bench_gpu.c)
  target_include_directories(qd_bench_gpu PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(qd_bench_gpu PRIVATE qdrop)
  target_compile_options(qd_bench_gpu PRIVATE -Wall -Wextra -ffp-contract=off)
  set_target_properties(qd_bench_gpu PROPERTIES LINKER_LANGUAGE CUDA)
  add_test(NAME bench_gpu_smoke COMMAND qd_bench_gpu --smoke WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(bench_gpu_smoke PROPERTIES LABELS "cuda" SKIP_RETURN_CODE 77 TIMEOUT 300 RESOURCE_LOCK gpu)
endif()
# The CUDA backend end to end through the CLI (tests/cuda/cli_e2e.sh): default config on the GPU
# vs the CPU, and an ImageNet-shape ResNet-18 at 224x224. Exit 77 without a device (the CLI's 69).
if(QD_HAVE_CUDA)
  foreach(mode default imagenet)
    qd_add_script_test(test_cuda_e2e_${mode} COMMAND bash ${CMAKE_SOURCE_DIR}/tests/cuda/cli_e2e.sh ${mode}
                       LABELS "cuda" TIMEOUT 900)
    set_tests_properties(test_cuda_e2e_${mode} PROPERTIES RESOURCE_LOCK gpu)
  endforeach()
  # bench/gpu_check.sh --dry: every step of the GPU check with the CPU selftests and stub
  # binaries (pack -> prebuilt start, twins, sanitizer lookup, the e2e script's comparison on two
  # CPU runs, cross-process dump compare, JSON summary, <= 8 files), so its first run on a GPU
  # machine is not its first run. Checked by tests/gpu_check_dry_test.sh.
  qd_add_script_test(test_gpu_check_dry COMMAND bash ${CMAKE_SOURCE_DIR}/tests/gpu_check_dry_test.sh
                     LABELS "unit" TIMEOUT 600)
endif()
