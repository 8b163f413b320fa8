# tests/reliability.cmake: determinism of CPU runs (tests/determinism_test.sh), signals and the output-directory lock (tests/signal_test.sh); docs/reliability.md.
qd_add_script_test(determinism
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/determinism_test.sh
  LABELS e2e
  TIMEOUT 1800)
# SIGTERM/SIGINT stop a run with the checkpoint kept (exit 143/130), --resume finishes it
# byte-identically; a second run into a busy output directory is refused (docs/reliability.md
# "Output directory").
qd_add_script_test(signal
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/signal_test.sh
  LABELS e2e
  TIMEOUT 300)
