# tests/bad_inputs.cmake: the bad-input catalogue (tests/bad_inputs_test.py; cases and files in
# tests/bad_inputs/catalogue/, table in docs/reliability.md). Each case checks the exit code, the
# one-line error and that no partial output is left behind.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_FOUND)
  qd_add_script_test(bad_inputs
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/bad_inputs_test.py
    LABELS e2e
    TIMEOUT 900)
endif()
