# Foundation tests: config schema, file/log utilities, CLI exit codes (issue 2).
qd_add_test(test_config SOURCES unit/test_config.c LABELS unit)
qd_add_test(test_fsutil_log SOURCES unit/test_fsutil_log.c LABELS unit)
qd_add_script_test(cli_test COMMAND bash ${CMAKE_SOURCE_DIR}/tests/cli_test.sh LABELS unit)
