# CI honesty (label unit): the test environment and the shipped images are what the scripts say.
#   test_ci_deps          every module the tests import comes from install_deps.sh's pip list (or
#                         the standard library), and the ONNX Runtime export check runs for real in
#                         an interpreter that sees only those packages (tests/ci_deps_test.py)
#   test_ci_runtime_libs  every shared library qdrop-gpu loads is installed by install_deps.sh
#                         --runtime (what the runtime Docker stages run), or is in the base/CUDA image
#   test_ctest_summary    scripts/test.sh's closing line and its CI rule: only GPU tests may skip
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  qd_add_script_test(test_ci_deps COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/ci_deps_test.py
                     LABELS "unit" TIMEOUT 300)
  set_tests_properties(test_ci_deps PROPERTIES DEPENDS test_export)
  qd_add_script_test(test_ctest_summary COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/ctest_summary_test.py
                     LABELS "unit" TIMEOUT 60)
endif()
qd_add_script_test(test_ci_runtime_libs COMMAND bash ${CMAKE_SOURCE_DIR}/tests/ci_runtime_libs_test.sh
                   LABELS "unit" TIMEOUT 180)
