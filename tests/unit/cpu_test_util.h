/* tests/unit/cpu_test_util.h: helpers shared by the CPU backend tests (node construction,
 * deterministic random fills, checks). Header-only; each test includes it once. */
#ifndef QD_CPU_TEST_UTIL_H
#define QD_CPU_TEST_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "qdrop/backend.h"

/* The counter's older name, so tests written against it still build; new code uses
 * qd_test_failures (tests/test.h). */
#define g_fail qd_test_failures

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static inline double urand(void) { /* xorshift64*, [0,1) */
    g_rng ^= g_rng >> 12; g_rng ^= g_rng << 25; g_rng ^= g_rng >> 27;
    return (double)((g_rng * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}
static inline float frand(float lo, float hi) { return lo + (hi - lo) * (float)urand(); }
static inline void fill(float *x, int64_t n, float lo, float hi) { for (int64_t i = 0; i < n; i++) x[i] = frand(lo, hi); }

static inline qd_node make_node(qd_op op, int ninputs) {
    qd_node n;
    memset(&n, 0, sizeof n);
    n.name = (char *)"test_node";
    n.op = op;
    n.opset = 13;
    n.ninputs = ninputs;
    n.noutputs = 1;
    n.unit = -1;
    n.wq = -1;
    n.a.stride[0] = n.a.stride[1] = 1;
    n.a.dilation[0] = n.a.dilation[1] = 1;
    n.a.group = 1;
    n.a.alpha = n.a.beta = 1.0f;
    n.a.clip_min = -INFINITY;
    n.a.clip_max = INFINITY;
    n.a.epsilon = 1e-5f;
    n.a.keepdims = 1;
    n.a.axis = 1;
    for (int d = 0; d < QD_MAX_DIMS; d++) n.a.slice_step[d] = 1;
    return n;
}

static inline qd_shape shp(int nd, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    qd_shape s;
    memset(&s, 0, sizeof s);
    s.ndim = nd;
    int64_t v[4] = {d0, d1, d2, d3};
    for (int i = 0; i < nd && i < 4; i++) s.dims[i] = v[i];
    return s;
}

static inline qd_backend *make_cpu(int threads) {
    qd_backend_options o;
    memset(&o, 0, sizeof o);
    o.threads = threads;
    qd_backend *b = NULL;
    MUST(qd_backend_create("cpu", &o, &b));
    return b;
}

#endif
