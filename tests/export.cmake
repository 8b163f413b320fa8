# Export tests (src/export, issue 6): QDQ ONNX + encodings.json.
#   test_export      builds a tiny quantized graph by hand, exports it (opset 13 and opset-21 INT4),
#                    unpacks the file and checks codes/scales/axes/clip bounds, reloads it through
#                    qd_onnx_load, and checks encodings.json.
#   test_export_ort  onnx.checker + TensorRT structural rules + ONNX Runtime output of that tiny
#                    model vs the C forward (QD_EXEC_QUANT, CPU backend); 77 without onnxruntime.
#   test_export_e2e_* short W4A4 / W2A4 QDrop runs of the embedded ResNet-20, then ORT on the
#                    CIFAR-10 test set: >= 99.5% identical top-1, |top-1 diff| <= 0.1 pt.
find_package(Python3 COMPONENTS Interpreter)
qd_add_test(test_export SOURCES unit/test_export.c LABELS "unit")
if(Python3_Interpreter_FOUND)
  qd_add_script_test(test_export_ort
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/export_ort_check.py
            --selftest-bin $<TARGET_FILE:test_export> --workdir ${CMAKE_BINARY_DIR}/export_ort_selftest
    LABELS "unit" TIMEOUT 300)
  qd_add_script_test(test_export_e2e_w4a4
    COMMAND sh ${CMAKE_SOURCE_DIR}/tests/export_e2e.sh 4 4
    LABELS "e2e" TIMEOUT 3600)
  qd_add_script_test(test_export_e2e_w2a4
    COMMAND sh ${CMAKE_SOURCE_DIR}/tests/export_e2e.sh 2 4
    LABELS "e2e" TIMEOUT 3600)
endif()
