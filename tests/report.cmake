# tests/report.cmake: the run report (report.html/report.md, `qdrop-gpu report`, `qdrop-gpu compare`)
# rendered by headless Chromium, and hostile node names / output paths that must never reach a
# shell or a gnuplot script (tests/report_test.py; about 25 s).
find_package(Python3 COMPONENTS Interpreter)
if(Python3_FOUND)
  qd_add_script_test(report_render
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/report_test.py
    LABELS e2e
    TIMEOUT 300)
endif()

# escaping, base64 and the gnuplot runner (payload titles never run)
qd_add_test(test_report_text SOURCES unit/test_report_text.c LABELS unit TIMEOUT 60)
