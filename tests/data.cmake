# Data input (src/data/): ImageFolder, JPEG decoding vs Pillow, preprocessing vs torchvision,
# calibration sampling, .npy, metrics, bad inputs; the CIFAR-10 FP32 end-to-end check.
qd_add_test(test_data SOURCES unit/test_data.c LABELS unit TIMEOUT 120)
qd_add_test(test_data_cifar_decode SOURCES unit/test_data_cifar_decode.c LABELS unit TIMEOUT 300)
# Needs the ONNX reader, the forward executor and the CPU backend; registered once the executor
# exists so a partial tree still builds (the src/ glob re-runs CMake when files appear).
if(EXISTS ${CMAKE_SOURCE_DIR}/src/graph/exec.c)
  qd_add_test(test_cifar_fp32 SOURCES unit/test_cifar_fp32.c LABELS e2e TIMEOUT 1200)
endif()
