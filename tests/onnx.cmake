# ONNX reader, graph passes, units, quantizer placement (issue 3).
qd_add_test(test_onnx SOURCES unit/test_onnx.c LABELS unit)

# FP32 parity with ONNX Runtime on weight-filled skeletons of the ImageNet nets + ResNet-20:
# tests/onnx_parity.py fills tests/fixtures/onnx/*.skel.onnx, runs ORT and calls this binary.
# Skips (77) without python numpy/onnx/onnxruntime.
add_executable(test_onnx_parity_bin unit/test_onnx_parity.c)
target_link_libraries(test_onnx_parity_bin PRIVATE qdrop)
target_compile_options(test_onnx_parity_bin PRIVATE -UNDEBUG -Wall -Wextra -ffp-contract=off)
if(QD_HAVE_CUDA)
  set_target_properties(test_onnx_parity_bin PROPERTIES LINKER_LANGUAGE CUDA)
endif()
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  qd_add_script_test(test_onnx_parity
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/onnx_parity.py $<TARGET_FILE:test_onnx_parity_bin>
    LABELS unit TIMEOUT 900)
endif()

# The exporter spellings (opsets 7..21 as torch.onnx.export / tf2onnx write them), pool modes, hard
# activations, Resize/Upsample and squeeze-and-excitation blocks: tests/op_coverage_test.py's rule
# (ORT parity, 1-iteration run + export that ORT runs, or one identical refusal) on one tiny model
# each, plus the SE/MobileNetV3 unit partition and quantizer placement from --inspect.
if(Python3_Interpreter_FOUND)
  qd_add_script_test(test_op_coverage_import
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/op_coverage_test.py --group import
    LABELS "e2e" TIMEOUT 900)
endif()
