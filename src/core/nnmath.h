/* src/core/nnmath.h: the transformer-layer math shared by the BERT encoder (src/bert/encoder.c),
 * the CPU graph ops (src/cpu/cpu_ops.c: LayerNormalization, Gelu, Softmax with an additive
 * mask) and their CUDA kernels (cuda/ops_cuda_bert.cu). One expression, one home: the element
 * expressions below are compiled by gcc and nvcc (QD_HD, -ffp-contract=off / -fmad=false), and
 * the host row functions are the only CPU implementation, so the graph ops reproduce the C
 * encoder bit for bit and the CUDA kernels differ from it only in the order of the double
 * reductions (docs/architecture.md, "Transformer ops").
 *
 * Reductions (LayerNorm mean/variance and its backward means, softmax sums) accumulate in
 * double; everything stored is float.
 */
#ifndef QD_NNMATH_H
#define QD_NNMATH_H

#include <math.h>
#include <stdint.h>

#include "core/qmath.h" /* QD_HD */

/* ------------------------------------------------------------------------------------------ */
/* GELU, exact erf form (HF BERT "gelu", ONNX Gelu approximate="none")                         */
/* ------------------------------------------------------------------------------------------ */
QD_HD float qd_gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
/* d gelu / dx = Phi(x) + x phi(x) */
QD_HD float qd_gelu_grad(float x) {
    return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) + x * 0.39894228040143268f * expf(-0.5f * x * x);
}

/* ------------------------------------------------------------------------------------------ */
/* LayerNorm over rows of n: y = xhat * g + b, xhat = (x - mean) * rstd, rstd = 1/sqrt(var+eps) */
/* ------------------------------------------------------------------------------------------ */
QD_HD float qd_ln_rstd(double var, float eps) { return (float)(1.0 / sqrt(var + (double)eps)); }
QD_HD float qd_ln_xhat(float x, double mean, float rstd) { return (float)((x - mean) * rstd); }
QD_HD float qd_ln_affine(float xhat, float g, float b) { return xhat * g + b; }
/* dx = rstd * (dy*g - m1 - xhat*m2), m1 = mean(dy*g), m2 = mean(dy*g*xhat) */
QD_HD double qd_ln_dxhat(float dy, float g) { return (double)dy * g; }
QD_HD float qd_ln_dx(float rstd, float dy, float g, float xhat, double m1, double m2) {
    return (float)(rstd * ((double)dy * g - m1 - xhat * m2));
}

/* ------------------------------------------------------------------------------------------ */
/* Softmax over a row with an additive mask: z = x + mask; the maximum over the row, exp(z - max) */
/* (a key with z = -inf gives exactly 0), sum in double, times the float inverse of the sum.    */
/* A row whose keys are all -inf gives all zeros (not NaN).                                     */
/* ------------------------------------------------------------------------------------------ */
QD_HD float qd_softmax_exp(float z, float mx) { return z == -INFINITY ? 0.0f : expf(z - mx); }
QD_HD float qd_softmax_inv(double sum) { return sum > 0.0 ? (float)(1.0 / sum) : 0.0f; }
/* dz = p * (dp - sum_j dp_j p_j) */
QD_HD float qd_softmax_dx(float p, float dp, double s) { return p * (float)(dp - s); }

#ifndef __CUDA_ARCH__
/* ---- host row functions (the CPU implementation of encoder.c and of the graph ops) ---- */

/* Mean (double) and rstd of one row of n. */
static inline void qd_ln_stats(const float *x, int64_t n, float eps, double *mean_out, float *rstd_out) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; i++) mean += x[i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= (double)n;
    *mean_out = mean;
    *rstd_out = qd_ln_rstd(var, eps);
}

/* y = LN(x) * g + b for one row (b may be NULL: 0); saves xhat / rstd when given. y may be x. */
static inline void qd_layernorm_row(const float *x, const float *g, const float *b, int64_t n, float eps, float *y,
                                    float *xhat, float *rstd) {
    double mean;
    float rs;
    qd_ln_stats(x, n, eps, &mean, &rs);
    if (rstd) *rstd = rs;
    for (int64_t i = 0; i < n; i++) {
        float h = qd_ln_xhat(x[i], mean, rs);
        if (xhat) xhat[i] = h;
        y[i] = qd_ln_affine(h, g[i], b ? b[i] : 0.0f);
    }
}

/* dx of one row from the forward's xhat and rstd; accumulate: dx += instead of dx =.
 * dg / db (may be NULL) accumulate the parameter gradients. */
static inline void qd_layernorm_backward_row(const float *dy, const float *xhat, float rstd, const float *g, int64_t n,
                                             float *dx, int accumulate, float *dg, float *db) {
    double m1 = 0, m2 = 0;
    for (int64_t i = 0; i < n; i++) {
        double dh = qd_ln_dxhat(dy[i], g[i]);
        m1 += dh;
        m2 += dh * xhat[i];
        if (dg) dg[i] += dy[i] * xhat[i];
        if (db) db[i] += dy[i];
    }
    m1 /= (double)n;
    m2 /= (double)n;
    for (int64_t i = 0; i < n; i++) {
        float v = qd_ln_dx(rstd, dy[i], g[i], xhat[i], m1, m2);
        dx[i] = accumulate ? dx[i] + v : v;
    }
}

/* Softmax of one row of n elements at stride xs (y the same stride, may be x); mask (may be
 * NULL) at stride ms (0 broadcasts one value). */
static inline void qd_softmax_row(const float *x, int64_t xs, const float *mask, int64_t ms, int64_t n, float *y) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        float z = mask ? x[j * xs] + mask[j * ms] : x[j * xs];
        if (z > mx) mx = z;
    }
    double sum = 0;
    for (int64_t j = 0; j < n; j++) {
        float z = mask ? x[j * xs] + mask[j * ms] : x[j * xs];
        float e = qd_softmax_exp(z, mx);
        y[j * xs] = e;
        sum += e;
    }
    const float inv = qd_softmax_inv(sum);
    for (int64_t j = 0; j < n; j++) y[j * xs] *= inv;
}

/* Softmax backward of one row (stride st for p, dp and dx); dx may be dp (in place). */
static inline void qd_softmax_backward_row(const float *p, const float *dp, int64_t st, int64_t n, float *dx,
                                           int accumulate) {
    double s = 0;
    for (int64_t j = 0; j < n; j++) s += (double)dp[j * st] * p[j * st];
    for (int64_t j = 0; j < n; j++) {
        float v = qd_softmax_dx(p[j * st], dp[j * st], s);
        dx[j * st] = accumulate ? dx[j * st] + v : v;
    }
}
#endif /* !__CUDA_ARCH__ */

#endif
