/* tests/cuda/twin_common.h: helpers shared by the CPU-vs-CUDA twin tests (header-only).
 *
 * Verdicts: 0 pass, 1 fail, 77 skipped (no usable CUDA device; 1 instead when the environment
 * sets QD_REQUIRE_GPU=1). QD_TWIN_SELFTEST=1 runs the whole harness with a second CPU backend
 * in place of the device: that checks the test itself (shapes, attributes, budgets) on a
 * machine without a GPU.
 * Error metric (docs/numerics.md): NMSE = mse(ref, dev) / mse(ref, 0), ref = CPU.
 */
#ifndef QD_TWIN_COMMON_H
#define QD_TWIN_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "qdrop/backend.h"
#include "qdrop/status.h"

/* The counters' older names, so twin tests written against them still build; new code uses
 * qd_test_failures / qd_test_checks (tests/test.h). */
#define tw_failures qd_test_failures
#define tw_checks qd_test_checks

static inline int tw_env_is(const char *name, const char *val) {
    const char *v = getenv(name);
    return v && strcmp(v, val) == 0;
}

/* 77 (skip) or 1 (fail when a GPU is required): tests/test.h's convention. */
static inline int tw_no_device(const char *why) { return qd_test_no_gpu(why); }

static inline int tw_selftest(void) { return tw_env_is("QD_TWIN_SELFTEST", "1"); }

/* Creates the reference (CPU) and the device backend. Returns 0, or the verdict to exit with. */
static inline int tw_create(qd_backend **cpu, qd_backend **dev, int deterministic, int tf32) {
    qd_backend_options o;
    memset(&o, 0, sizeof o);
    o.threads = 2;
    o.deterministic = deterministic;
    o.tf32 = tf32;
    *cpu = *dev = NULL;
    if (qd_cpu_backend_create(&o, cpu) != QD_OK) {
        fprintf(stderr, "FAIL: cpu backend: %s\n", qd_error_message());
        return 1;
    }
    if (tw_selftest()) {
        o.threads = 1;
        if (qd_cpu_backend_create(&o, dev) != QD_OK) {
            fprintf(stderr, "FAIL: second cpu backend: %s\n", qd_error_message());
            return 1;
        }
        printf("note: QD_TWIN_SELFTEST=1: comparing the CPU backend against itself\n");
        return 0;
    }
    if (!qd_cuda_available()) {
        qd_backend_destroy(*cpu);
        *cpu = NULL;
        return tw_no_device(qd_cuda_unavailable_reason());
    }
    qd_status st = qd_cuda_backend_create(&o, dev);
    if (st != QD_OK) {
        const char *m = qd_error_message();
        qd_backend_destroy(*cpu);
        *cpu = NULL;
        if (st == QD_ERR_NODEVICE) return tw_no_device(m);
        fprintf(stderr, "FAIL: cuda backend: %s\n", m);
        return 1;
    }
    char v[256];
    qd_cuda_versions(v, sizeof v);
    printf("device: %s (%s), deterministic=%d tf32=%d\n", (*dev)->device_name, v, deterministic, tf32);
    return 0;
}

/* ---- deterministic host random numbers (splitmix64) ---- */
static uint64_t tw_state = 0x1234567ULL;
static inline uint64_t tw_next(void) {
    uint64_t z = (tw_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static inline float tw_unif(float lo, float hi) { return lo + (hi - lo) * (float)((tw_next() >> 40) * (1.0 / 16777216.0)); }
static inline float *tw_rand(int64_t n, float lo, float hi) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) { fprintf(stderr, "FAIL: host out of memory\n"); exit(1); }
    for (int64_t i = 0; i < n; i++) p[i] = tw_unif(lo, hi);
    return p;
}

/* ---- backend buffers ---- */
static inline void tw_die(const char *what) {
    fprintf(stderr, "FAIL: %s: %s\n", what, qd_error_message());
    exit(1);
}
static inline void *tw_up(qd_backend *b, const void *h, size_t bytes) {
    void *p = b->ops->alloc(b, bytes ? bytes : 4);
    if (!p) tw_die("alloc");
    if (bytes && b->ops->upload(b, p, h, bytes) != QD_OK) tw_die("upload");
    return p;
}
static inline void *tw_down(qd_backend *b, const void *p, size_t bytes) {
    void *h = malloc(bytes ? bytes : 4);
    if (!h) { fprintf(stderr, "FAIL: host out of memory\n"); exit(1); }
    if (bytes && b->ops->download(b, h, p, bytes) != QD_OK) tw_die("download");
    return h;
}
#define TW_OK(expr)                                                                       \
    do {                                                                                  \
        if ((expr) != QD_OK) {                                                            \
            fprintf(stderr, "FAIL: %s (%s:%d): %s\n", #expr, __FILE__, __LINE__, qd_error_message()); \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

/* ---- comparisons ---- */
static inline double tw_nmse(const float *ref, const float *dev, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(ref[i]) != isnan(dev[i]) || (isinf(ref[i]) && ref[i] != dev[i])) return INFINITY;
        if (!isfinite(ref[i])) continue;
        double d = (double)ref[i] - (double)dev[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return num / den;
}

static inline void tw_check_nmse(const char *what, const float *ref, const float *dev, int64_t n, double budget) {
    double e = tw_nmse(ref, dev, n);
    qd_test_checks++;
    if (!(e <= budget)) {
        qd_test_failures++;
        int64_t worst = 0;
        double wd = -1;
        for (int64_t i = 0; i < n; i++) {
            double d = fabs((double)ref[i] - (double)dev[i]);
            if (d > wd || isnan(d)) { wd = d; worst = i; }
        }
        fprintf(stderr, "FAIL %-44s nmse %.3e > budget %.1e (worst [%lld] ref %.9g dev %.9g)\n", what, e, budget,
                (long long)worst, n ? ref[worst] : 0.0, n ? dev[worst] : 0.0);
    } else {
        printf("ok   %-44s nmse %.3e (budget %.1e)\n", what, e, budget);
    }
}

static inline void tw_check_exact(const char *what, const void *ref, const void *dev, size_t bytes, size_t elem) {
    qd_test_checks++;
    if (memcmp(ref, dev, bytes) != 0) {
        qd_test_failures++;
        size_t nd = 0, first = (size_t)-1;
        for (size_t i = 0; i < bytes / elem; i++)
            if (memcmp((const char *)ref + i * elem, (const char *)dev + i * elem, elem) != 0) {
                if (first == (size_t)-1) first = i;
                nd++;
            }
        fprintf(stderr, "FAIL %-44s %zu of %zu elements differ (first at %zu)\n", what, nd, bytes / elem, first);
    } else {
        printf("ok   %-44s bit-identical (%zu elements)\n", what, bytes / elem);
    }
}

static inline void tw_check_rel(const char *what, double ref, double dev, double tol) {
    double e = fabs(ref - dev) / (fabs(ref) > 1e-30 ? fabs(ref) : 1.0);
    qd_test_checks++;
    if (!(e <= tol)) {
        qd_test_failures++;
        fprintf(stderr, "FAIL %-44s ref %.9g dev %.9g rel %.3e > %.1e\n", what, ref, dev, e, tol);
    } else {
        printf("ok   %-44s ref %.9g dev %.9g rel %.3e\n", what, ref, dev, e);
    }
}

static inline int tw_verdict(const char *name) {
    if (qd_test_checks == 0) {
        fprintf(stderr, "%s: no checks ran\n", name);
        return 1;
    }
    return qd_test_summary(name);
}

/* NMSE budgets (docs/numerics.md, FP32 with TF32 off). */
#define TW_EXACT 0.0          /* selections, copies, shape ops */
#define TW_ELEM 1e-12         /* elementwise math (libm vs CUDA expf/logf/powf: <= 2 ulp) */
#define TW_REDUCE 1e-10       /* reductions in a different order */
#define TW_LINALG 1e-9        /* conv / gemm: different FP32 accumulation order */

#endif
