# Fully connected layers in every ONNX spelling, the "what --dry-run accepts must run" rule, and
# the logits outputs / `qdrop-gpu eval` (docs/units.md, docs/export.md, README "Logits").
#   test_classifier_forms  one classifier as Gemm transB=1 / Gemm transB=0 / MatMul + Add, same
#                          weights: bit-identical logits, encodings and QDQ model; ORT parity in FP32
#                          and after export; eval --from reproduces the run's quantized logits
#   test_op_coverage       one tiny model per supported op: --dry-run accepts => the run
#                          reconstructs and exports (ORT checks), else both fail with one message
#   test_eval_cli          qdrop-gpu eval on ResNet-20: FP32 logits vs ONNX Runtime (<= 1e-4)
# All generate their models and data (tests/gen_small_models.py); 77 without numpy/onnx/onnxruntime.
#   test_canon_linear      the rewrite on hand-built graphs (fusion limits, shared weights, layers left
#                          alone) and the .npy writer read back by the reader
qd_add_test(test_canon_linear SOURCES unit/test_canon_linear.c LABELS unit)
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  qd_add_script_test(test_classifier_forms
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/classifier_forms_test.py
    LABELS "e2e" TIMEOUT 600)
  qd_add_script_test(test_op_coverage
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/op_coverage_test.py
    LABELS "e2e" TIMEOUT 900)
  qd_add_script_test(test_eval_cli
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/eval_cli_test.py
    LABELS "e2e" TIMEOUT 600)
endif()
