# Reconstruction engine tests (src/recon).
qd_add_test(test_golden_iter SOURCES unit/test_golden_iter.c LABELS "unit;golden")
