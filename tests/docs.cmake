# tests/docs.cmake: documentation checks (section references resolve inside the repository).
find_package(Python3 COMPONENTS Interpreter REQUIRED)
qd_add_script_test(doc_refs
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/doc_refs_test.py
  LABELS unit
  TIMEOUT 60)
