/* tests/unit/test_harness.c: tests/test.h counts what it should. Every macro is run once failing
 * and once passing; the failures (their FAIL lines on stderr are expected) must be counted
 * exactly, and the passes not. The verdict then comes from a fresh count. */
#include "test.h"

int main(void) {
    CHECK(1 + 1 == 3, "deliberate failure %d", 1);
    CHECK(0);
    CHECK_NEAR(1.0, 1.1, 0.01);
    CHECK_NEAR(NAN, 1.0, 1e30);
    CHECK_REL(100.0, 101.0, 1e-3);
    CHECK_STATUS(QD_ERR_DATA, QD_OK, "deliberate");
    CHECK_CONTAINS("hello", "xyz");
    CHECK_CONTAINS(NULL, "x");
    int failed = qd_test_failures, checked = qd_test_checks;
    CHECK(1 + 1 == 2);
    CHECK_NEAR(1.0, 1.005, 0.01);
    CHECK_REL(100.0, 100.05, 1e-3);
    CHECK_STATUS(QD_OK, QD_OK);
    CHECK_CONTAINS("hello", "ell");
    int passes_counted = qd_test_checks - checked, passes_failed = qd_test_failures - failed;

    qd_test_failures = qd_test_checks = 0;
    printf("the FAIL lines above are deliberate\n");
    CHECK(failed == 8, "%d of 8 deliberate failures counted", failed);
    CHECK(checked == 8, "%d of 8 failing checks counted", checked);
    CHECK(passes_counted == 5 && passes_failed == 0, "passing checks: %d counted, %d failed", passes_counted,
          passes_failed);
    CHECK(qd_status_exit_code(QD_OK) == 0);
    return qd_test_summary("test_harness");
}
