# ONNX auto_pad (SAME_UPPER / SAME_LOWER / VALID) on Conv and pools: FP32 parity with ONNX Runtime
# on a generated CNN, and a 1-iteration run whose export must carry explicit pads. Reuses the
# parity binary from onnx.cmake. Skips (77) without python numpy/onnx/onnxruntime. ~10 s.
if(Python3_Interpreter_FOUND)
  qd_add_script_test(test_onnx_autopad
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/onnx_autopad_parity.py $<TARGET_FILE:test_onnx_parity_bin>
    LABELS unit TIMEOUT 300)
endif()

# x.view(x.size(0), -1) as torch exports it (Shape -> Gather -> Unsqueeze -> Concat -> Reshape, and
# the opset-11 / opset-15 variants): FP32 parity with ONNX Runtime. ~5 s.
if(Python3_Interpreter_FOUND)
  qd_add_script_test(test_onnx_view
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/onnx_view_parity.py $<TARGET_FILE:test_onnx_parity_bin>
    LABELS unit TIMEOUT 300)
endif()

# Shape of an activation with static non-batch dims under a dynamic batch (Resize sizes from
# Shape -> Slice -> Mul -> Concat, x.view(x.size(0), x.size(1), -1), Pad from ConstantOfShape):
# FP32 parity with ONNX Runtime at batch 2 and 3. ~5 s.
if(Python3_Interpreter_FOUND)
  qd_add_script_test(test_onnx_shape
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/onnx_shape_parity.py $<TARGET_FILE:test_onnx_parity_bin>
    LABELS unit TIMEOUT 300)
endif()
