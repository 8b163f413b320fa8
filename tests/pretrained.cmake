# Real pretrained networks other than the embedded ResNet-20 (assets/models/PROVENANCE.md).
#   test_pretrained_resnet56  CIFAR-10 ResNet-56: FP32 logits vs ONNX Runtime (<= 1e-4 relative),
#                             then W4A4 QDrop and round-to-nearest on 1,000 test images, reported
#                             as agreement with the FP32 predictions (label-free); QDrop must not
#                             trail nearest by more than 1 pt and both must clear a floor.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  qd_add_script_test(test_pretrained_resnet56
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/pretrained_resnet56.py
    LABELS "e2e" TIMEOUT 600)
endif()
