# Foundation tests: config schema, file/log utilities, CLI exit codes (issue 2).
qd_add_test(test_config SOURCES unit/test_config.c LABELS unit)
qd_add_test(test_fsutil_log SOURCES unit/test_fsutil_log.c LABELS unit)
qd_add_script_test(cli_test COMMAND bash ${CMAKE_SOURCE_DIR}/tests/cli_test.sh LABELS unit)
# docs/config.md's default column and iteration claims agree with the code (issue 21 item 5).
add_executable(print_resolved_config unit/print_resolved_config.c)
target_link_libraries(print_resolved_config PRIVATE qdrop)
if(QD_HAVE_CUDA)
  set_target_properties(print_resolved_config PROPERTIES LINKER_LANGUAGE CUDA)
endif()
qd_add_script_test(config_docs COMMAND python3 ${CMAKE_SOURCE_DIR}/tests/config_docs_test.py $<TARGET_FILE:print_resolved_config>
  LABELS unit TIMEOUT 60)
# Checkpoint files are untrusted: see tests/recon.cmake (test_ckpt) and tests/bad_inputs/cases_inputs.py.
# JSON outputs stay valid UTF-8 when the output directory and model path are not (issue 17 item 8).
qd_add_script_test(json_utf8 COMMAND python3 ${CMAKE_SOURCE_DIR}/tests/json_utf8_test.py LABELS e2e TIMEOUT 300)
