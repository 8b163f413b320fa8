# tests/layering.cmake: the build's layers (CMakeLists.txt qd_add_layer) hold in the includes and
# in the linked symbols; the plan-time supports_op check of the backends; the tests/test.h harness.
find_package(Python3 COMPONENTS Interpreter REQUIRED)
qd_add_script_test(layering
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/layering_test.py
  LABELS unit
  TIMEOUT 120)
qd_add_test(test_supports_op SOURCES unit/test_supports_op.c LABELS unit TIMEOUT 60)
# tests/test.h itself: failures are counted, passes are not
qd_add_test(test_harness SOURCES unit/test_harness.c LABELS unit TIMEOUT 30)
