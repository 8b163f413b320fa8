# Reconstruction engine tests (src/recon).
qd_add_test(test_golden_iter SOURCES unit/test_golden_iter.c LABELS "unit;golden")
# Kill -9 mid-unit, resume, byte-identical outputs; mismatching config refused (issue 6 item 4).
qd_add_script_test(resume COMMAND bash ${CMAKE_SOURCE_DIR}/tests/resume_test.sh LABELS e2e TIMEOUT 1800)
# The same for quant.mode=brecq, killed during and after its stage-2 range init (§6.3, §9).
qd_add_script_test(resume_brecq COMMAND bash ${CMAKE_SOURCE_DIR}/tests/resume_test.sh brecq LABELS e2e TIMEOUT 1800)
# NaN/Inf in the loss: clear error (exit 76), model untouched; retry with lower lr (issue 9 item 3).
qd_add_script_test(nan_fault COMMAND bash ${CMAKE_SOURCE_DIR}/tests/nan_test.sh LABELS e2e TIMEOUT 900)
# Fast (histogram + exact refine) vs exact MSE range search: agreement and thread independence.
qd_add_test(test_range_search SOURCES unit/test_range_search.c LABELS unit TIMEOUT 300)
# Progress of every long phase (bar and log lines) and the --dry-run time estimate (seconds).
qd_add_script_test(progress_estimate COMMAND bash ${CMAKE_SOURCE_DIR}/tests/progress_test.sh LABELS e2e TIMEOUT 600)
# Checkpoints are untrusted input: crafted fields, truncation, odd lengths, non-regular files.
qd_add_test(test_ckpt SOURCES unit/test_ckpt.c LABELS unit TIMEOUT 60)
# The unit-input cache object: incremental caches equal caches from the inputs; per-unit parameters.
qd_add_test(test_unit_cache SOURCES unit/test_unit_cache.c LABELS unit TIMEOUT 60)
# Host-memory budget of the CPU unit caches: byte-count config, spill to a mapped file, plan check (exit 75).
qd_add_test(test_memory SOURCES unit/test_memory.c LABELS unit TIMEOUT 120)
# Host-memory budget end to end: a budget that forces spilling gives identical results with peak RSS
# within budget + planned overhead; CIFAR ResNet-20 and a ResNet-18-shaped model at 224x224.
qd_add_script_test(memory_budget_cifar COMMAND bash ${CMAKE_SOURCE_DIR}/tests/memory_test.sh cifar LABELS e2e TIMEOUT 300)
qd_add_script_test(memory_budget_224 COMMAND bash ${CMAKE_SOURCE_DIR}/tests/memory_test.sh imagenet LABELS e2e TIMEOUT 300)
