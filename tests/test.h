/* tests/test.h: the one check harness of the C tests (header-only; include it once per test).
 *
 *   CHECK(cond[, fmt, ...])            counts a check; on failure prints
 *                                      "FAIL file:line: cond: message" on stderr and goes on
 *   CHECK_NEAR(got, want, tol[, ...])  |got - want| <= tol (absolute), NaN fails
 *   CHECK_REL(got, want, rtol[, ...])  |got - want| <= rtol * |want| (relative error), NaN fails
 *   CHECK_STATUS(expr, want[, ...])    a qd_status expression returns want (prints both names
 *                                      and the error message when not)
 *   CHECK_CONTAINS(text, part[, ...])  strstr(text, part) != NULL (text may be NULL: fails)
 *   MUST(expr)                         a qd_status expression that must be QD_OK, else the test
 *                                      stops at once (exit 1): later checks would be noise
 *
 * Verdict (CTest reads the exit status): return qd_test_summary("name") from main: prints
 * "name: N checks, F failed" and returns 0 (pass) or 1 (fail). Tests that need a GPU return
 * qd_test_no_gpu(why): 77 (CTest: skipped) without a usable device, or 1 where the
 * environment sets QD_REQUIRE_GPU=1 (a GPU machine must not skip). No other test skips.
 * qd_test_failures / qd_test_checks are the counters, for tests that add their own checks.
 */
#ifndef QD_TEST_H
#define QD_TEST_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qdrop/status.h"

/* CHECK(cond) passes an empty format to qd_test_fail_ */
#pragma GCC diagnostic ignored "-Wformat-zero-length"

static int qd_test_failures = 0;
static int qd_test_checks = 0;

static inline void qd_test_fail_(const char *file, int line, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline void qd_test_fail_(const char *file, int line, const char *what, const char *fmt, ...) {
    qd_test_failures++;
    fprintf(stderr, "FAIL %s:%d: %s", file, line, what);
    if (fmt && fmt[0]) {
        va_list ap;
        va_start(ap, fmt);
        fputs(": ", stderr);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fputc('\n', stderr);
}

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        qd_test_checks++;                                                                     \
        if (!(cond)) qd_test_fail_(__FILE__, __LINE__, #cond, "" __VA_ARGS__);               \
    } while (0)

#define CHECK_NEAR(got, want, tol, ...)                                                       \
    do {                                                                                      \
        double g_ = (double)(got), w_ = (double)(want), t_ = (double)(tol);                   \
        qd_test_checks++;                                                                     \
        if (!(fabs(g_ - w_) <= t_)) {                                                         \
            char d_[256];                                                                     \
            snprintf(d_, sizeof d_, "%s = %.9g, want %s = %.9g (|diff| %.3g > %.3g)", #got, g_, \
                     #want, w_, fabs(g_ - w_), t_);                                           \
            qd_test_fail_(__FILE__, __LINE__, d_, "" __VA_ARGS__);                            \
        }                                                                                     \
    } while (0)

#define CHECK_REL(got, want, rtol, ...)                                                       \
    do {                                                                                      \
        double g_ = (double)(got), w_ = (double)(want), r_ = (double)(rtol);                  \
        qd_test_checks++;                                                                     \
        if (!(fabs(g_ - w_) <= r_ * fabs(w_))) {                                              \
            char d_[256];                                                                     \
            snprintf(d_, sizeof d_, "%s = %.9g, want %s = %.9g (relative error %.3g > %.3g)", \
                     #got, g_, #want, w_, w_ != 0 ? fabs(g_ - w_) / fabs(w_) : INFINITY, r_); \
            qd_test_fail_(__FILE__, __LINE__, d_, "" __VA_ARGS__);                            \
        }                                                                                     \
    } while (0)

#define CHECK_STATUS(expr, want, ...)                                                         \
    do {                                                                                      \
        qd_status s_ = (expr), w_ = (want);                                                   \
        qd_test_checks++;                                                                     \
        if (s_ != w_) {                                                                       \
            char d_[512];                                                                     \
            snprintf(d_, sizeof d_, "%s -> %s, want %s (%s)", #expr, qd_status_name(s_),     \
                     qd_status_name(w_), qd_error_message());                                 \
            qd_test_fail_(__FILE__, __LINE__, d_, "" __VA_ARGS__);                            \
        }                                                                                     \
    } while (0)

#define CHECK_CONTAINS(text, part, ...)                                                       \
    do {                                                                                      \
        const char *t_ = (text), *p_ = (part);                                                \
        qd_test_checks++;                                                                     \
        if (!t_ || !strstr(t_, p_)) {                                                         \
            char d_[512];                                                                     \
            snprintf(d_, sizeof d_, "\"%s\" does not contain \"%s\"", t_ ? t_ : "(null)", p_); \
            qd_test_fail_(__FILE__, __LINE__, d_, "" __VA_ARGS__);                            \
        }                                                                                     \
    } while (0)

#define MUST(expr)                                                                            \
    do {                                                                                      \
        qd_status st_ = (expr);                                                               \
        if (st_ != QD_OK) {                                                                   \
            fprintf(stderr, "FAIL %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr,          \
                    qd_status_name(st_), qd_error_message());                                 \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

static inline int qd_test_summary(const char *name) {
    printf("%s: %d checks, %d failed\n", name, qd_test_checks, qd_test_failures);
    return qd_test_failures ? 1 : 0;
}

static inline int qd_test_no_gpu(const char *why) {
    const char *req = getenv("QD_REQUIRE_GPU");
    if (req && strcmp(req, "1") == 0) {
        fprintf(stderr, "FAIL: QD_REQUIRE_GPU=1 but no usable CUDA device: %s\n", why);
        return 1;
    }
    printf("SKIP: no usable CUDA device (%s)\n", why);
    return 77;
}

#endif
