/* src/core/qmath.h: every piece of quantization math, compiled by gcc (CPU backend, range
 * search, scheduler) and by nvcc (cuda/ kernels). One expression, one home: the CPU reference
 * and the CUDA kernels call these same functions, so integer codes and masks agree bit for bit.
 *
 * Rounding is ties-to-even (rintf under the default rounding mode == torch.round), never
 * roundf. Products that feed a rounding decision go through QD_MUL_RN so nvcc cannot contract
 * them into an FMA the CPU twin would not use (the host is built with -ffp-contract=off).
 * Section numbers (§N) refer to docs/algorithm.md.
 */
#ifndef QD_QMATH_H
#define QD_QMATH_H

#include <math.h>
#include <stdint.h>
#include "qdrop/rng_key.h"

#if defined(__CUDACC__)
#define QD_HD __host__ __device__ __forceinline__
#else
#define QD_HD static inline
#endif

#if defined(__CUDA_ARCH__)
#define QD_MUL_RN(a, b) __fmul_rn((a), (b))
#define QD_ADD_RN(a, b) __fadd_rn((a), (b))
#define QD_DIV_RN(a, b) __fdiv_rn((a), (b))
#else
#define QD_MUL_RN(a, b) ((a) * (b))
#define QD_ADD_RN(a, b) ((a) + (b))
#define QD_DIV_RN(a, b) ((a) / (b))
#endif

/* ------------------------------------------------------------------------------------------ */
/* Constants (§4, §6.3)                                                                        */
/* ------------------------------------------------------------------------------------------ */
#define QD_ADAROUND_GAMMA (-0.1f)  /* §4 rectified sigmoid lower stretch */
#define QD_ADAROUND_ZETA (1.1f)    /* §4 upper stretch */
#define QD_ADAM_LR_V 1e-3f         /* §4 Adam on V: PyTorch defaults */
#define QD_ADAM_BETA1 0.9f
#define QD_ADAM_BETA2 0.999f
#define QD_ADAM_EPS 1e-8f
#define QD_LSQ_SCALE_FLOOR 1.19209290e-07f /* §6.3 Q2 abs+eps guard (float32 eps) */
#define QD_MSE_P 2.4f              /* §3.1 L_p error exponent of the range search */
#define QD_MSE_CANDIDATES 100      /* §3.1 range candidates */

/* ------------------------------------------------------------------------------------------ */
/* Grid and scale/zero-point (§2)                                                              */
/* ------------------------------------------------------------------------------------------ */
QD_HD int qd_qmax_for_bits(int bits) { return (1 << bits) - 1; } /* unsigned grid, qmin = 0 */

/* Range [lo, hi] -> (scale, zero point), Q2 observer formula: 0 forced into the range,
 * s floored at 1e-8, z = clamp(qmin - round(lo'/s)). */
QD_HD void qd_range_to_qparams(float lo, float hi, int qmin, int qmax, float *scale, float *zp) {
    float lo2 = fminf(lo, 0.0f), hi2 = fmaxf(hi, 0.0f);
    float s = (hi2 - lo2) / (float)(qmax - qmin);
    s = fmaxf(s, 1e-8f);
    float z = (float)qmin - rintf(lo2 / s);
    z = fminf(fmaxf(z, (float)qmin), (float)qmax);
    *scale = s;
    *zp = z;
}

/* ------------------------------------------------------------------------------------------ */
/* Fake quantization (§2): v = x/s; r = round(v); q = clamp(r+z); y = (q-z)*s                 */
/* Division (not multiplication by 1/s) as in the reference's x / scale.                      */
/* ------------------------------------------------------------------------------------------ */
/* Clamp region codes stored per element for the backward pass. */
enum { QD_FQ_INSIDE = 0, QD_FQ_LOW = 1, QD_FQ_HIGH = 2, QD_FQ_DROPPED = 3 };

QD_HD float qd_fake_quant(float x, float s, float z, float qmin, float qmax) {
    float q = rintf(QD_DIV_RN(x, s)) + z;
    q = q < qmin ? qmin : q;  /* selects (not fminf/fmaxf calls): vectorisable, NaN propagates */
    q = q > qmax ? qmax : q;
    return QD_MUL_RN(q - z, s);
}

/* Training forward, also returning the clamp region (test on the rounded value, §2).
 * The reference implements round with the straight-through trick round_ste(v) =
 * (round(v) - v).detach() + v (Q2 util_quant.py), so the value clamped is (r - v) + v in float32,
 * which can land one ulp above qmax (or below qmin) when v rounds onto the boundary: PyTorch then
 * treats the element as clamped and passes no gradient. We evaluate the same float expression so
 * the region codes, and hence every gradient, match the reference bit for bit
 * (tests/unit/test_golden_iter.c). */
QD_HD float qd_fake_quant_region(float x, float s, float z, float qmin, float qmax, int *region) {
    float v = QD_DIV_RN(x, s);
    float r = rintf(v);
    float t = QD_ADD_RN(QD_ADD_RN(r - v, v), z);
    /* Selects, not branches: the CPU loops vectorise (with -fno-trapping-math) and NaN keeps
     * propagating as in torch.clamp (both tests false -> INSIDE, value NaN). */
    int lo = t < qmin, hi = t > qmax;
    *region = lo * QD_FQ_LOW + hi * QD_FQ_HIGH;
    t = lo ? qmin : t;
    t = hi ? qmax : t;
    return QD_MUL_RN(t - z, s);
}

/* Integer code q in [qmin, qmax] of x (used by export and hard AdaRound checks). */
QD_HD float qd_quant_code(float x, float s, float z, float qmin, float qmax) {
    float r = rintf(QD_DIV_RN(x, s));
    return fminf(fmaxf(r + z, qmin), qmax);
}

/* STE gradient wrt x (§2): 1 inside the grid (boundaries included), 0 when clamped;
 * dropped elements (QDrop, §7) pass the gradient unchanged. */
QD_HD float qd_fake_quant_dx(float g, int region) {
    return (region == QD_FQ_INSIDE || region == QD_FQ_DROPPED) ? g : 0.0f;
}

/* LSQ gradient wrt s for one element (§2, §6.3): (r - v) inside, (qmin - z) / (qmax - z) when
 * clamped, 0 when dropped. Multiply the reduced sum by qd_lsq_grad_factor. */
QD_HD float qd_fake_quant_ds(float g, float x, float s, float z, float qmin, float qmax, int region) {
    float v = QD_DIV_RN(x, s);
    float inside = rintf(v) - v;  /* computed for every lane so the CPU loop is branch-free */
    float f = region == QD_FQ_LOW ? (qmin - z) : (region == QD_FQ_HIGH ? (qmax - z) : inside);
    return region == QD_FQ_DROPPED ? 0.0f : g * f;
}

/* Q2's LSQ gradient scale 1/sqrt(numel * qmax), numel = the whole batch tensor (§6.3). */
QD_HD float qd_lsq_grad_factor(double numel, int qmax) {
    return (float)(1.0 / sqrt(numel * (double)qmax));
}

/* Q2 positivity guard applied to s at every training forward (§6.3). */
QD_HD float qd_lsq_guard(float s) { return fmaxf(fabsf(s), QD_LSQ_SCALE_FLOOR); }

/* ------------------------------------------------------------------------------------------ */
/* AdaRound (§4)                                                                               */
/* ------------------------------------------------------------------------------------------ */
QD_HD float qd_sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

/* Activation functions of MobileNetV3-style networks, shared by the CPU and CUDA kernels.
 * ONNX HardSigmoid: max(0, min(1, alpha x + beta)); its gradient is alpha strictly inside the
 * linear part (PyTorch's hardsigmoid_backward). The selects keep NaN propagating. */
QD_HD float qd_hardsigmoid(float x, float alpha, float beta) {
    float v = alpha * x + beta;
    v = v < 0.0f ? 0.0f : v;
    return v > 1.0f ? 1.0f : v;
}
QD_HD float qd_hardsigmoid_grad(float x, float alpha, float beta) {
    float v = alpha * x + beta;
    return (v > 0.0f && v < 1.0f) ? alpha : 0.0f;
}
/* ONNX HardSwish: x * HardSigmoid(x) with alpha 1/6, beta 0.5; gradient as PyTorch's
 * hardswish_backward: 0 below -3, x/3 + 1/2 on [-3, 3], 1 above. */
QD_HD float qd_hardswish(float x) { return x * qd_hardsigmoid(x, 1.0f / 6.0f, 0.5f); }
QD_HD float qd_hardswish_grad(float x) { return x < -3.0f ? 0.0f : (x <= 3.0f ? x / 3.0f + 0.5f : 1.0f); }

/* Unclamped rectified sigmoid sigma(V)(zeta-gamma)+gamma. */
QD_HD float qd_adaround_hraw(float V) {
    return qd_sigmoid(V) * (QD_ADAROUND_ZETA - QD_ADAROUND_GAMMA) + QD_ADAROUND_GAMMA;
}
QD_HD float qd_adaround_h(float V) { return fminf(fmaxf(qd_adaround_hraw(V), 0.0f), 1.0f); }

/* floor(w/s) (§4: floor on w/s alone; z added after). */
QD_HD float qd_adaround_floor(float w, float s) { return floorf(QD_DIV_RN(w, s)); }

/* V such that the unclamped rectified sigmoid equals rest = w/s - floor(w/s) (§4 init). */
QD_HD float qd_adaround_init_v(float w, float s) {
    float ws = QD_DIV_RN(w, s);
    float rest = ws - floorf(ws);
    return -logf((QD_ADAROUND_ZETA - QD_ADAROUND_GAMMA) / (rest - QD_ADAROUND_GAMMA) - 1.0f);
}

/* Soft weight (training) or hard weight (hard != 0): (clamp(f + h + z) - z) * s.
 * *inside receives 1 when the clamp passes gradient (boundaries included). */
QD_HD float qd_adaround_weight(float w, float V, float s, float z, float qmin, float qmax, int hard,
                               int *inside) {
    float f = qd_adaround_floor(w, s);
    float h = hard ? (V >= 0.0f ? 1.0f : 0.0f) : qd_adaround_h(V);
    float t = f + h + z;
    int in = (t >= qmin && t <= qmax);
    t = fminf(fmaxf(t, qmin), qmax);
    if (inside) *inside = in;
    return QD_MUL_RN(t - z, s);
}

/* d(soft weight)/dV (§4): s * 1[clamp passes] * 1[0 <= hraw <= 1] * (zeta-gamma) sig (1-sig). */
QD_HD float qd_adaround_dw_dv(float w, float V, float s, float z, float qmin, float qmax) {
    float f = qd_adaround_floor(w, s);
    float sig = qd_sigmoid(V);
    float hraw = sig * (QD_ADAROUND_ZETA - QD_ADAROUND_GAMMA) + QD_ADAROUND_GAMMA;
    float h = fminf(fmaxf(hraw, 0.0f), 1.0f);
    float t = f + h + z;
    if (!(t >= qmin && t <= qmax)) return 0.0f;
    if (!(hraw >= 0.0f && hraw <= 1.0f)) return 0.0f;
    return s * (QD_ADAROUND_ZETA - QD_ADAROUND_GAMMA) * sig * (1.0f - sig);
}

/* Rounding regulariser term for one element, without lambda: 1 - |2h - 1|^beta. */
QD_HD float qd_adaround_reg(float V, float beta) {
    float h = qd_adaround_h(V);
    return 1.0f - powf(fabsf(2.0f * h - 1.0f), beta);
}

/* d/dV of lambda * (1 - |2h-1|^beta): -lambda*beta*|2h-1|^(beta-1)*2*sign(2h-1) * dh/dV,
 * dh/dV = (zeta-gamma) sig (1-sig) where 0 <= hraw <= 1, else 0 (clamp). */
QD_HD float qd_adaround_reg_dv(float V, float beta, float lambda) {
    float sig = qd_sigmoid(V);
    float hraw = sig * (QD_ADAROUND_ZETA - QD_ADAROUND_GAMMA) + QD_ADAROUND_GAMMA;
    if (!(hraw >= 0.0f && hraw <= 1.0f)) return 0.0f;
    float u = 2.0f * hraw - 1.0f;
    float sgn = (u > 0.0f) ? 1.0f : ((u < 0.0f) ? -1.0f : 0.0f);
    float dreg_dh = -lambda * beta * powf(fabsf(u), beta - 1.0f) * 2.0f * sgn;
    return dreg_dh * (QD_ADAROUND_ZETA - QD_ADAROUND_GAMMA) * sig * (1.0f - sig);
}

/* One AdaRound parameter's gradient from a single sigmoid evaluation: dW * dw/dV, plus (reg_on)
 * the regulariser's gradient, with its term 1 - |2h-1|^beta in *reg_term. The same float
 * expressions as qd_adaround_dw_dv + qd_adaround_reg_dv and qd_adaround_reg, so the result is
 * bit-identical to calling them (tests/unit/test_qmath.c); they evaluate the sigmoid 3 times. */
QD_HD float qd_adaround_grad(float dW, float w, float V, float s, float z, float qmin, float qmax, int reg_on,
                             float beta, float lambda, float *reg_term) {
    float sig = qd_sigmoid(V);
    float hraw = sig * (QD_ADAROUND_ZETA - QD_ADAROUND_GAMMA) + QD_ADAROUND_GAMMA;
    float h = fminf(fmaxf(hraw, 0.0f), 1.0f);
    int h_inside = hraw >= 0.0f && hraw <= 1.0f;
    float t = qd_adaround_floor(w, s) + h + z;
    /* products associate as in the separate functions: ((s * k) * sig) * (1 - sig) */
    float dwdv = (t >= qmin && t <= qmax && h_inside) ? s * (QD_ADAROUND_ZETA - QD_ADAROUND_GAMMA) * sig * (1.0f - sig)
                                                      : 0.0f;
    float g = dW * dwdv;
    if (reg_on) {
        float rdv = 0.0f;
        if (h_inside) {
            float u = 2.0f * hraw - 1.0f;
            float sgn = (u > 0.0f) ? 1.0f : ((u < 0.0f) ? -1.0f : 0.0f);
            float dreg_dh = -lambda * beta * powf(fabsf(u), beta - 1.0f) * 2.0f * sgn;
            rdv = dreg_dh * (QD_ADAROUND_ZETA - QD_ADAROUND_GAMMA) * sig * (1.0f - sig);
        }
        g += rdv;
        *reg_term = 1.0f - powf(fabsf(2.0f * h - 1.0f), beta);
    }
    return g;
}

/* ------------------------------------------------------------------------------------------ */
/* Schedules (§4 LinearTempDecay, §6.3 cosine). c is the 1-based iteration counter.            */
/* ------------------------------------------------------------------------------------------ */
QD_HD int qd_warmup_iters(int total, float warm_up) { return (int)(warm_up * (float)total); }

/* beta(c) = b_start for c < T_w; else b_end + (b_start-b_end)*max(0, 1-(c-T_w)/(T-T_w)). */
QD_HD float qd_beta_at(int c, int total, float warm_up, float b_start, float b_end) {
    int tw = qd_warmup_iters(total, warm_up);
    if (c < tw) return b_start;
    if (c > total) return b_end;
    float rel = (float)(c - tw) / (float)(total - tw);
    float k = 1.0f - rel;
    if (k < 0.0f) k = 0.0f;
    return b_end + (b_start - b_end) * k;
}

/* Regulariser on from c = T_w (§4: omitted while c < T_w). */
QD_HD int qd_reg_active(int c, int total, float warm_up) { return c >= qd_warmup_iters(total, warm_up); }

/* Cosine annealing to 0 over `total` steps; the step with 1-based counter c uses t = c - 1. */
QD_HD float qd_cosine_lr(float base, int c, int total) {
    double t = (double)(c - 1);
    return (float)(base * 0.5 * (1.0 + cos(3.14159265358979323846 * t / (double)total)));
}

/* ------------------------------------------------------------------------------------------ */
/* Adam (PyTorch semantics, bias-corrected, no weight decay). step = 1-based.                  */
/* ------------------------------------------------------------------------------------------ */
/* Bias corrections of step `step`: the same for every element, so loops over many parameters
 * compute them once (qd_adam_update_bc) instead of two powf per element. */
typedef struct { float bc1, sqrt_bc2; } qd_adam_bc;
QD_HD qd_adam_bc qd_adam_bias_correction(int step) {
    qd_adam_bc bc;
    bc.bc1 = 1.0f - powf(QD_ADAM_BETA1, (float)step);
    bc.sqrt_bc2 = sqrtf(1.0f - powf(QD_ADAM_BETA2, (float)step));
    return bc;
}
QD_HD float qd_adam_update_bc(float p, float g, float *m, float *v, float lr, qd_adam_bc bc) {
    float m1 = QD_ADAM_BETA1 * (*m) + (1.0f - QD_ADAM_BETA1) * g;
    float v1 = QD_ADAM_BETA2 * (*v) + (1.0f - QD_ADAM_BETA2) * g * g;
    *m = m1;
    *v = v1;
    float denom = sqrtf(v1) / bc.sqrt_bc2 + QD_ADAM_EPS;
    return p - (lr / bc.bc1) * m1 / denom;
}
QD_HD float qd_adam_update(float p, float g, float *m, float *v, float lr, int step) {
    return qd_adam_update_bc(p, g, m, v, lr, qd_adam_bias_correction(step));
}

/* ------------------------------------------------------------------------------------------ */
/* Counter-based RNG: Philox4x32-10 keyed on (seed, unit); counter (element/4, tensor, iter).  */
/* Results depend only on the key and the logical element index, never on threads or launch    */
/* shapes, so the CPU twin reproduces the GPU's masks and a resumed run its draws.             */
/* ------------------------------------------------------------------------------------------ */
/* qd_rng_key: see include/qdrop/rng_key.h */

#define QD_RNG_T_BATCH 0xFFFFFFF0u  /* batch index draw */
#define QD_RNG_T_INPUT 0xFFFFFFF1u  /* unit-input mixing (§7.1) */
/* activation quantizer j inside a unit uses tensor id j (§7.2) */

#define QD_PHILOX_W0 0x9E3779B9u
#define QD_PHILOX_W1 0xBB67AE85u
/* One Philox4x32 round on a counter held in four words (the CPU's vectorised tiles keep 16
 * counters as four arrays and call it per lane; qd_philox4x32_10 per block). */
QD_HD void qd_philox_round(uint32_t *c0, uint32_t *c1, uint32_t *c2, uint32_t *c3, uint32_t k0, uint32_t k1) {
    uint64_t p0 = (uint64_t)0xD2511F53u * *c0;
    uint64_t p1 = (uint64_t)0xCD9E8D57u * *c2;
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ *c1 ^ k0;
    uint32_t n2 = hi0 ^ *c3 ^ k1;
    *c0 = n0; *c1 = lo1; *c2 = n2; *c3 = lo0;
}

QD_HD void qd_philox4x32_10(uint32_t ctr[4], uint32_t k0, uint32_t k1) {
    for (int i = 0; i < 10; i++) {
        qd_philox_round(&ctr[0], &ctr[1], &ctr[2], &ctr[3], k0, k1);
        k0 += QD_PHILOX_W0; k1 += QD_PHILOX_W1;
    }
}

/* The Philox block of elements 4*blk .. 4*blk+3 of (key, iteration): out[j] is the value
 * qd_rng_u32 returns for element 4*blk + j. CPU loops use it to pay one block per 4 elements. */
/* Philox key words and the counter's high word of (key): shared by qd_rng_block and the CPU tiles. */
QD_HD uint32_t qd_rng_k0(qd_rng_key key) { return key.seed_lo ^ (key.unit * 0x85EBCA6Bu); }
QD_HD uint32_t qd_rng_ctr1(qd_rng_key key, uint64_t blk) { return (uint32_t)(blk >> 32) ^ (key.unit << 16); }

QD_HD void qd_rng_block(qd_rng_key key, uint32_t iteration, uint64_t blk, uint32_t out[4]) {
    out[0] = (uint32_t)blk;
    out[1] = qd_rng_ctr1(key, blk);
    out[2] = key.tensor;
    out[3] = iteration;
    qd_philox4x32_10(out, qd_rng_k0(key), key.seed_hi);
}

/* 32 random bits for logical element `elem` of (key, iteration). */
QD_HD uint32_t qd_rng_u32(qd_rng_key key, uint32_t iteration, uint64_t elem) {
    uint32_t ctr[4];
    qd_rng_block(key, iteration, elem >> 2, ctr);
    return ctr[elem & 3u];
}

/* Uniform in [0,1) from 32 random bits (24 bits kept: exactly representable in float). */
QD_HD float qd_u32_to_uniform(uint32_t r) { return (float)(r >> 8) * (1.0f / 16777216.0f); }

/* Uniform in [0,1) with 24 bits: exactly representable in float. */
QD_HD float qd_rng_uniform(qd_rng_key key, uint32_t iteration, uint64_t elem) {
    return qd_u32_to_uniform(qd_rng_u32(key, iteration, elem));
}

/* QDrop keep decision: keep quantization where u < p (§7: p = probability of KEEPING). */
QD_HD int qd_keep_quant(qd_rng_key key, uint32_t iteration, uint64_t elem, float keep_prob) {
    if (keep_prob >= 1.0f) return 1;
    return qd_rng_uniform(key, iteration, elem) < keep_prob;
}

/* Batch draw with replacement from [0, n) (§8.3): multiply-shift, bias < n/2^32. */
QD_HD uint32_t qd_draw_index(qd_rng_key key, uint32_t iteration, uint32_t slot, uint32_t n) {
    return (uint32_t)(((uint64_t)qd_rng_u32(key, iteration, slot) * (uint64_t)n) >> 32);
}

/* ------------------------------------------------------------------------------------------ */
/* Range-search error |Q(x) - x|^p (§3.1)                                                      */
/* ------------------------------------------------------------------------------------------ */
QD_HD float qd_lp_err(float q, float x, float p) { return powf(fabsf(q - x), p); }

/* |e|^2.4 for the range search's score without libm (§3.1), so the CPU loop vectorises and every
 * SIMD width gives the same bits: e^2.4 = 2^(2.4 log2 e), log2 from the mantissa m in
 * [sqrt(1/2), sqrt(2)) by the odd series in u = (m-1)/(m+1), 2^f on [-1/2, 1/2] by a degree-7
 * Taylor polynomial. Relative error below 2.1e-7 (2-3 ulp; tests/unit/test_qmath.c checks it
 * against powf); the reference evaluates torch.pow in float32 on the GPU, which is not
 * correctly rounded either, so only exact near-ties between candidates can be affected.
 * Results below 2^-126 flush to 0, as do inputs below 2^-52 (their contribution is < 1e-37). */
QD_HD float qd_pow_lp24(float e) {
    union { float f; uint32_t u; } a, m, r;
    a.f = fabsf(e);
    int k = (int)((a.u >> 23) & 0xFFu) - 127;
    m.u = (a.u & 0x007FFFFFu) | 0x3F800000u;           /* m in [1, 2) */
    int big = m.f > 1.41421356f;
    m.f = big ? 0.5f * m.f : m.f;                      /* m in [sqrt(1/2), sqrt(2)) */
    k += big;
    float u = (m.f - 1.0f) / (m.f + 1.0f), u2 = u * u;
    /* log2(m) = 2/ln2 * (u + u^3/3 + u^5/5 + u^7/7 + u^9/9), |u| <= 0.1716 */
    float lg = u * (2.88539008f + u2 * (0.961796694f + u2 * (0.577078016f + u2 * (0.412198583f + u2 * 0.320598898f))));
    int finite = a.u < 0x7F800000u;
    double y = (double)QD_MSE_P * ((double)k + (double)lg); /* double: k*p must not lose f's bits */
    y = finite ? y : 0.0;                              /* keep the int conversion defined */
    y = y < -300.0 ? -300.0 : y;
    y = y > 300.0 ? 300.0 : y;
    double nd = rint(y);
    float n = (float)nd, f = (float)(y - nd);          /* f in [-1/2, 1/2] */
    float p2 = 1.0f + f * (0.693147181f + f * (0.240226507f + f * (0.0555041087f + f * (0.00961812911f +
               f * (0.00133335581f + f * (0.000154035304f + f * 0.0000152527339f))))));
    int ni = (int)n;
    int tiny = a.u < 0x25800000u || ni <= -126;       /* |e| < 2^-52 or a subnormal result */
    int over = ni >= 128;
    r.u = (uint32_t)((ni + 127) & 0xFF) << 23;
    float out = p2 * r.f;
    out = tiny ? 0.0f : out;
    out = over ? INFINITY : out;
    return finite ? out : a.f;                         /* inf -> inf, NaN -> NaN */
}

/* ------------------------------------------------------------------------------------------ */
/* L_p reconstruction loss (§5; p = 2.4 in BRECQ's activation stage, §6.3 / §9). Reduction as    */
/* §5: sum over channels, mean over batch and space, so per element (d = y - t):                */
/*   term |d|^p (summed, then divided by N*HW) and gradient p |d|^(p-1) sign(d) * inv,           */
/* inv = 1/(N*HW). For p = 2 this is 2 d inv, the MSE gradient.                                  */
/* ------------------------------------------------------------------------------------------ */
QD_HD float qd_lp_loss_term(float d, float p) { return powf(fabsf(d), p); }

QD_HD float qd_lp_loss_grad(float d, float p, float inv) {
    float g = p * powf(fabsf(d), p - 1.0f) * inv;
    return d > 0.0f ? g : (d < 0.0f ? -g : 0.0f);
}

#endif /* QD_QMATH_H */
