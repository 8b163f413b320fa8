/* src/cpu/cpu_recon.c: the reconstruction kernels of the CPU backend. Each is a plain loop over
 * the functions of src/core/qmath.h (the CUDA kernels call the same ones), so element codes,
 * masks and updates agree bit for bit with the CUDA twin; only reductions (loss, ds, reg) may
 * differ in the last bits there. Reductions here: double partial per fixed chunk of
 * QD_CPU_RED_GRAIN elements, summed in chunk order (thread-count independent). */
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/qmath.h"
#include "cpu/cpu_internal.h"
#include "core/simd.h"

/* ---- vectorised tiles (src/core/simd.h): branch-free loops over qmath.h ---- */

/* out[k] = qd_rng_u32(key, it, a0 + k) for k in [0, n), a0 a multiple of 4 (one Philox block
 * per 4 elements, the same words qd_rng_u32 returns); out holds n rounded up to 4. */
QD_SIMD_CLONES
static void rng_tile_c(qd_rng_key key, uint32_t it, int64_t a0, int n, uint32_t *out) {
    int nb = (n + 3) >> 2;
    uint64_t blk0 = (uint64_t)a0 >> 2;
    for (int j = 0; j < nb; j++) {
        uint32_t r[4];
        qd_rng_block(key, it, blk0 + (uint64_t)j, r);
        out[4 * j] = r[0];
        out[4 * j + 1] = r[1];
        out[4 * j + 2] = r[2];
        out[4 * j + 3] = r[3];
    }
}

#if defined(QD_AVX512_RNG)
#include <immintrin.h>

/* hi and lo 32 bits of the 16 products c[l] * m (Philox's mulhilo) */
__attribute__((target("avx512f"))) static inline void mulhilo16(__m512i c, __m512i m, __m512i *hi, __m512i *lo) {
    __m512i even = _mm512_mul_epu32(c, m);                        /* c[2i] * m as 64 bits in slot i */
    __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), m);  /* c[2i+1] * m */
    *hi = _mm512_mask_blend_epi32((__mmask16)0xAAAA, _mm512_srli_epi64(even, 32), odd);
    *lo = _mm512_mullo_epi32(c, m);
}

/* 16 Philox blocks (64 words) per step, the counters' four words in four registers; the same
 * integer operations as qd_philox4x32_10 / qd_rng_block, so the same bits. Blocks whose group
 * would carry into the counter's high word, and the tail, take the C path. */
__attribute__((target("avx512f"))) static void rng_tile_avx512(qd_rng_key key, uint32_t it, int64_t a0, int n,
                                                                uint32_t *out) {
    int nb = (n + 3) >> 2, j = 0;
    uint64_t blk0 = (uint64_t)a0 >> 2;
    const __m512i M0 = _mm512_set1_epi32((int)0xD2511F53u), M1 = _mm512_set1_epi32((int)0xCD9E8D57u);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (; j + 16 <= nb; j += 16) {
        uint64_t b = blk0 + (uint64_t)j;
        if ((uint32_t)b > 0xFFFFFFFFu - 15u) break;
        __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)b), lane);
        __m512i c1 = _mm512_set1_epi32((int)qd_rng_ctr1(key, b));
        __m512i c2 = _mm512_set1_epi32((int)key.tensor);
        __m512i c3 = _mm512_set1_epi32((int)it);
        uint32_t k0 = qd_rng_k0(key), k1 = key.seed_hi;
        for (int r = 0; r < 10; r++) {
            __m512i hi0, lo0, hi1, lo1;
            mulhilo16(c0, M0, &hi0, &lo0);
            mulhilo16(c2, M1, &hi1, &lo1);
            c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32((int)k0));
            c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32((int)k1));
            c1 = lo1;
            c3 = lo0;
            k0 += QD_PHILOX_W0; k1 += QD_PHILOX_W1;
        }
        /* transpose to block order: out[4*(j+l) + w] = c_w[l] */
        __m512i t0 = _mm512_unpacklo_epi32(c0, c1), t1 = _mm512_unpackhi_epi32(c0, c1);
        __m512i t2 = _mm512_unpacklo_epi32(c2, c3), t3 = _mm512_unpackhi_epi32(c2, c3);
        __m512i u0 = _mm512_unpacklo_epi64(t0, t2), u1 = _mm512_unpackhi_epi64(t0, t2);
        __m512i u2 = _mm512_unpacklo_epi64(t1, t3), u3 = _mm512_unpackhi_epi64(t1, t3);
        __m512i v0 = _mm512_shuffle_i32x4(u0, u1, 0x44), v1 = _mm512_shuffle_i32x4(u2, u3, 0x44);
        __m512i v2 = _mm512_shuffle_i32x4(u0, u1, 0xEE), v3 = _mm512_shuffle_i32x4(u2, u3, 0xEE);
        uint32_t *o = out + 4 * j;
        _mm512_storeu_si512((void *)o, _mm512_shuffle_i32x4(v0, v1, 0x88));
        _mm512_storeu_si512((void *)(o + 16), _mm512_shuffle_i32x4(v0, v1, 0xDD));
        _mm512_storeu_si512((void *)(o + 32), _mm512_shuffle_i32x4(v2, v3, 0x88));
        _mm512_storeu_si512((void *)(o + 48), _mm512_shuffle_i32x4(v2, v3, 0xDD));
    }
    if (j < nb) rng_tile_c(key, it, a0 + 4 * (int64_t)j, n - 4 * j, out + 4 * j);
}
#endif

/* Random words of elements [a0, a0 + n), a0 a multiple of 4: out[i] = qd_rng_u32(key, it, a0 + i)
 * (n rounded up to whole blocks). */
static void rng_tile(qd_rng_key key, uint32_t it, int64_t a0, int n, uint32_t *out) {
#if defined(QD_AVX512_RNG)
    if (__builtin_cpu_supports("avx512f")) { rng_tile_avx512(key, it, a0, n, out); return; }
#endif
    rng_tile_c(key, it, a0, n, out);
}

void qd_cpu_rng_words(qd_rng_key key, uint32_t it, int64_t a0, int n, uint32_t *out) { rng_tile(key, it, a0, n, out); }

/* Random words of elements [i0, i0 + n) of (key, it); returns a pointer into buf (n + 4 words). */
static const uint32_t *rng_words(qd_rng_key key, uint32_t it, int64_t i0, int n, uint32_t *buf) {
    int64_t a0 = i0 & ~(int64_t)3;
    int off = (int)(i0 - a0);
    rng_tile(key, it, a0, n + off, buf);
    return buf + off;
}

/* Training fake-quant with optional drop: rnd NULL = quantize every element; else element i
 * keeps its quantization where qd_u32_to_uniform(rnd[i]) < keep (§7). */
QD_SIMD_CLONES
static void fq_fwd_tile(int n, const float *x, const uint32_t *rnd, float keep, float s, float z, float qmin,
                        float qmax, float *y, uint8_t *region) {
    if (rnd) {
        for (int i = 0; i < n; i++) {
            int reg;
            float xv = x[i];
            float q = qd_fake_quant_region(xv, s, z, qmin, qmax, &reg);
            int kept = qd_u32_to_uniform(rnd[i]) < keep;
            y[i] = kept ? q : xv;
            region[i] = (uint8_t)(kept ? reg : QD_FQ_DROPPED);
        }
    } else {
        for (int i = 0; i < n; i++) {
            int reg;
            y[i] = qd_fake_quant_region(x[i], s, z, qmin, qmax, &reg);
            region[i] = (uint8_t)reg;
        }
    }
}

/* Sum of v[0..n) into 8 double lanes, element i into lane i % 8: the order is fixed by the
 * source, so every SIMD width gives the same bits. */
QD_SIMD_CLONES
static void sum8_tile(int n, const float *v, double acc[8]) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)v[i + l];
    for (; i < n; i++) acc[i & 7] += (double)v[i];
}

static double sum8_lanes(const double acc[8]) {
    double s = 0.0;
    for (int l = 0; l < 8; l++) s += acc[l];
    return s;
}

/* LSQ backward of one tile: ds terms into tmp, STE gradient added into dx (when given). */
QD_SIMD_CLONES
static void fq_bwd_tile(int n, const float *x, const uint8_t *region, const float *dy, float *dx, float s, float z,
                        float qmin, float qmax, float *tmp) {
    for (int i = 0; i < n; i++) tmp[i] = qd_fake_quant_ds(dy[i], x[i], s, z, qmin, qmax, region[i]);
    if (dx)
        for (int i = 0; i < n; i++) dx[i] += qd_fake_quant_dx(dy[i], region[i]);
}

/* MSE tile: squared errors into tmp, gradient 2e/denom into dy (when given). */
QD_SIMD_CLONES
static void mse_tile(int n, const float *y, const float *t, float *dy, float inv2, float *tmp) {
    for (int i = 0; i < n; i++) {
        float e = y[i] - t[i];
        tmp[i] = e * e;
        if (dy) dy[i] = inv2 * e;
    }
}

/* ---- chunked, ordered reductions ---- */
typedef double (*chunk_fn)(void *ctx, int64_t b0, int64_t b1);
typedef struct { chunk_fn fn; void *ctx; double *part; } red_task;

static void red_run(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    red_task *t = vctx;
    t->part[b0 / QD_CPU_RED_GRAIN] = t->fn(t->ctx, b0, b1);
}

static qd_status ordered_sum(qd_backend *b, int64_t n, chunk_fn fn, void *ctx, double *total) {
    int64_t nch = (n + QD_CPU_RED_GRAIN - 1) / QD_CPU_RED_GRAIN;
    double stack[64];
    double *part = nch <= 64 ? stack : malloc(sizeof(double) * (size_t)nch);
    if (!part) return qd_errorf(QD_ERR_DEVICE_OOM, "cpu backend: out of memory for %lld reduction partials", (long long)nch);
    red_task t = {fn, ctx, part};
    qd_cpu_parallel_for(qd_cpu(b)->pool, n, QD_CPU_RED_GRAIN, red_run, &t);
    double s = 0.0;
    for (int64_t k = 0; k < nch; k++) s += part[k];
    if (part != stack) free(part);
    *total = s;
    return QD_OK;
}

/* ---- iteration counter and batch draw ---- */
qd_status qd_cpu_iter_advance(qd_backend *b, int32_t *iter) {
    (void)b;
    *iter += 1;
    return QD_OK;
}

qd_status qd_cpu_draw_batch(qd_backend *b, qd_rng_key key, const int32_t *iter, int32_t n_total, int32_t batch,
                            int32_t *idx) {
    (void)b;
    if (n_total <= 0) return qd_errorf(QD_ERR_INTERNAL, "draw_batch: empty calibration set (n_total = %d)", n_total);
    for (int32_t k = 0; k < batch; k++) idx[k] = (int32_t)qd_draw_index(key, (uint32_t)*iter, (uint32_t)k, (uint32_t)n_total);
    return QD_OK;
}

/* ---- QDrop input mixing (§7.1) ---- */
typedef struct {
    const float *q, *f;
    const int32_t *idx;
    int64_t sn;
    qd_rng_key key;
    float keep;
    uint32_t it;
    int mix;
    float *out;
} gm_task;

/* o = keep ? quantized : FP per element, the keep flag drawn from the element's random word. */
QD_SIMD_CLONES
static void mix_run(int64_t m, const uint32_t *rnd, float keep, const float *q, const float *f, float *o) {
    for (int64_t j = 0; j < m; j++) o[j] = qd_u32_to_uniform(rnd[j]) < keep ? q[j] : f[j];
}

static void gm_run(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    gm_task *t = vctx;
    uint32_t rbuf[QD_CPU_TILE + 4];
    const uint32_t *rnd = NULL;
    for (int64_t i0 = b0; i0 < b1; i0 += QD_CPU_TILE) {
        int n = (int)(b1 - i0 < QD_CPU_TILE ? b1 - i0 : QD_CPU_TILE);
        if (t->mix) rnd = rng_words(t->key, t->it, i0, n, rbuf);
        /* runs of one sample: contiguous source rows */
        for (int64_t i = i0; i < i0 + n;) {
            int64_t k = i / t->sn, e = i - k * t->sn;
            int64_t end = (k + 1) * t->sn < i0 + n ? (k + 1) * t->sn : i0 + n;
            /* pointers at this run's first element (no out-of-range pointer arithmetic) */
            const float *q = t->q + (int64_t)t->idx[k] * t->sn + e;
            const float *f = t->f ? t->f + (int64_t)t->idx[k] * t->sn + e : NULL;
            float *o = t->out + i;
            int64_t m = end - i;
            if (t->mix) {
                mix_run(m, rnd + (i - i0), t->keep, q, f, o);
            } else {
                memcpy(o, q, sizeof(float) * (size_t)m);
            }
            i = end;
        }
    }
}

qd_status qd_cpu_gather_mix(qd_backend *b, const float *quant_src, const float *fp_src, const int32_t *idx,
                            int32_t batch, int64_t sample_numel, qd_rng_key key, float keep_prob,
                            const int32_t *iter, float *out) {
    int mix = fp_src != NULL && keep_prob < 1.0f;
    if (mix && !iter) return qd_errorf(QD_ERR_INTERNAL, "gather_mix: keep_prob %g needs the iteration counter", keep_prob);
    gm_task t = {quant_src, fp_src, idx, sample_numel, key, keep_prob, mix ? (uint32_t)*iter : 0u, mix, out};
    qd_cpu_parallel_for(qd_cpu(b)->pool, (int64_t)batch * sample_numel, QD_CPU_EW_GRAIN, gm_run, &t);
    return QD_OK;
}

/* ---- keep-mask bits for the run's reproducibility digest (backend.h keep_mask) ---- */
typedef struct {
    qd_rng_key key;
    uint32_t it;
    int64_t n;
    float keep;
    uint32_t *bits;
} km_task;

/* Words [w0, w1): the same random words (rng_tile) and comparison as mix_run / fq_fwd_tile. */
static void km_run(void *vctx, int64_t w0, int64_t w1, int tid) {
    (void)tid;
    km_task *t = vctx;
    enum { TILE_WORDS = QD_CPU_TILE / 32 };
    uint32_t rnd[QD_CPU_TILE + 4];
    for (int64_t w = w0; w < w1; w += TILE_WORDS) {
        int64_t wend = w + TILE_WORDS < w1 ? w + TILE_WORDS : w1;
        int64_t e0 = 32 * w, e1 = 32 * wend < t->n ? 32 * wend : t->n;
        int all = t->keep >= 1.0f;
        if (!all) rng_tile(t->key, t->it, e0, (int)(e1 - e0), rnd);
        for (int64_t ww = w; ww < wend; ww++) {
            uint32_t m = 0;
            for (int j = 0; j < 32; j++) {
                int64_t e = 32 * ww + j;
                if (e >= t->n) break;
                if (all || qd_u32_to_uniform(rnd[e - e0]) < t->keep) m |= 1u << j;
            }
            t->bits[ww] = m;
        }
    }
}

qd_status qd_cpu_keep_mask(qd_backend *b, qd_rng_key key, const int32_t *iter, int64_t n, float keep_prob,
                           uint32_t *bits) {
    if (n <= 0) return QD_OK;
    if (keep_prob < 1.0f && !iter) return qd_errorf(QD_ERR_INTERNAL, "keep_mask: keep_prob %g needs the iteration counter", keep_prob);
    km_task t = {key, iter ? (uint32_t)*iter : 0u, n, keep_prob, bits};
    qd_cpu_parallel_for(qd_cpu(b)->pool, (n + 31) / 32, QD_CPU_EW_GRAIN / 32, km_run, &t);
    return QD_OK;
}

/* ---- activation fake-quant with drop (§2, §7.2) ---- */
typedef struct {
    const qd_fq_desc *d;
    float s;
    uint32_t it;
    const float *x, *dy;
    float *y, *dx;
    uint8_t *region;
    const uint8_t *cregion;
} fq_task;

/* Scale used by the forward and the backward: Q2's guard max(|s|, eps) in training (§6.3).
 * The guard is treated as the identity in the gradient (Q2 applies it to .data). */
static float fq_scale(const qd_fq_desc *d, const float *scale) { return d->guard_scale ? qd_lsq_guard(*scale) : *scale; }

static void fq_fwd_run(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    fq_task *t = vctx;
    const qd_fq_desc *d = t->d;
    int drop = d->keep_prob < 1.0f;
    uint32_t rbuf[QD_CPU_TILE + 4];
    uint8_t regbuf[QD_CPU_TILE];
    for (int64_t i0 = b0; i0 < b1; i0 += QD_CPU_TILE) {
        int n = (int)(b1 - i0 < QD_CPU_TILE ? b1 - i0 : QD_CPU_TILE);
        const uint32_t *rnd = drop ? rng_words(d->key, t->it, i0, n, rbuf) : NULL;
        fq_fwd_tile(n, t->x + i0, rnd, d->keep_prob, t->s, d->zero_point, d->qmin, d->qmax, t->y + i0,
                    t->region ? t->region + i0 : regbuf);
    }
}

qd_status qd_cpu_fq_forward(qd_backend *b, const qd_fq_desc *d, const float *scale, const int32_t *iter, int64_t n,
                            const float *x, float *y, uint8_t *region) {
    if (d->keep_prob < 1.0f && !iter)
        return qd_errorf(QD_ERR_INTERNAL, "fq_forward: keep_prob %g needs the iteration counter", d->keep_prob);
    fq_task t = {d, fq_scale(d, scale), (d->keep_prob < 1.0f) ? (uint32_t)*iter : 0u, x, NULL, y, NULL, region, NULL};
    qd_cpu_parallel_for(qd_cpu(b)->pool, n, QD_CPU_EW_GRAIN, fq_fwd_run, &t);
    return QD_OK;
}

static double fq_bwd_chunk(void *vctx, int64_t b0, int64_t b1) {
    fq_task *t = vctx;
    const qd_fq_desc *d = t->d;
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    float tmp[QD_CPU_TILE];
    for (int64_t i0 = b0; i0 < b1; i0 += QD_CPU_TILE) {
        int n = (int)(b1 - i0 < QD_CPU_TILE ? b1 - i0 : QD_CPU_TILE);
        fq_bwd_tile(n, t->x + i0, t->cregion + i0, t->dy + i0, t->dx ? t->dx + i0 : NULL, t->s, d->zero_point, d->qmin,
                    d->qmax, tmp);
        sum8_tile(n, tmp, acc);
    }
    return sum8_lanes(acc);
}

qd_status qd_cpu_fq_backward(qd_backend *b, const qd_fq_desc *d, const float *scale, int64_t n, const float *x,
                             const uint8_t *region, const float *dy, float *dx, float *dscale) {
    if (!region) return qd_errorf(QD_ERR_INTERNAL, "fq_backward: region codes missing (fq_forward ran without them)");
    fq_task t = {d, fq_scale(d, scale), 0u, x, dy, NULL, dx, NULL, region};
    double sum = 0.0;
    QD_TRY(ordered_sum(b, n, fq_bwd_chunk, &t, &sum));
    if (dscale) {
        double f = d->grad_scale ? (double)qd_lsq_grad_factor((double)n, (int)d->qmax) : 1.0;
        *dscale += (float)(sum * f);
    }
    return QD_OK;
}

/* ---- AdaRound (§4) ---- */
typedef struct {
    const qd_adaround_desc *d;
    const qd_sched_desc *sc;
    const float *w, *s, *z, *dW;
    const float *Vc;
    float *V, *m, *v, *out;
    int hard, c, active;
    float beta;
    qd_adam_bc bc;            /* Adam bias corrections of step c */
} ar_task;

static void ar_init_run(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    ar_task *t = vctx;
    int64_t pc = t->d->per_channel;
    for (int64_t i = b0; i < b1;) {
        int64_t c = i / pc, end = (c + 1) * pc < b1 ? (c + 1) * pc : b1;
        for (; i < end; i++) t->V[i] = qd_adaround_init_v(t->w[i], t->s[c]);
    }
}

qd_status qd_cpu_adaround_init(qd_backend *b, const qd_adaround_desc *d, const float *w, const float *s,
                               const float *z, float *V) {
    (void)z; /* floor on w/s alone (§4); z only shifts the integer grid */
    if (d->per_channel <= 0) return qd_errorf(QD_ERR_INTERNAL, "adaround_init: per_channel = %lld", (long long)d->per_channel);
    ar_task t = {.d = d, .w = w, .s = s, .V = V};
    qd_cpu_parallel_for(qd_cpu(b)->pool, d->numel, QD_CPU_EW_GRAIN, ar_init_run, &t);
    return QD_OK;
}

static void ar_weight_run(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    ar_task *t = vctx;
    const qd_adaround_desc *d = t->d;
    int64_t pc = d->per_channel;
    for (int64_t i = b0; i < b1;) {
        int64_t c = i / pc, end = (c + 1) * pc < b1 ? (c + 1) * pc : b1;
        for (; i < end; i++) t->out[i] = qd_adaround_weight(t->w[i], t->Vc[i], t->s[c], t->z[c], d->qmin, d->qmax, t->hard, NULL);
    }
}

qd_status qd_cpu_adaround_weight(qd_backend *b, const qd_adaround_desc *d, const float *w, const float *V,
                                 const float *s, const float *z, int hard, float *w_out) {
    if (d->per_channel <= 0) return qd_errorf(QD_ERR_INTERNAL, "adaround_weight: per_channel = %lld", (long long)d->per_channel);
    ar_task t = {.d = d, .w = w, .s = s, .z = z, .Vc = V, .out = w_out, .hard = hard};
    qd_cpu_parallel_for(qd_cpu(b)->pool, d->numel, QD_CPU_EW_GRAIN, ar_weight_run, &t);
    return QD_OK;
}

/* dV = dW * dw/dV + [c >= T_w] dR/dV; Adam on V (lr_v, step c). Returns the chunk's sum of
 * (1 - |2h-1|^beta) at the pre-update V (the regulariser of this iteration's forward). */
static double ar_step_chunk(void *vctx, int64_t b0, int64_t b1) {
    ar_task *t = vctx;
    const qd_adaround_desc *d = t->d;
    double reg = 0.0;
    int64_t pc = d->per_channel, c = b0 / pc, cend = (c + 1) * pc;
    for (int64_t i = b0; i < b1; i++) {
        if (i == cend) { c++; cend += pc; }
        float V = t->V[i], term = 0.0f;
        float g = qd_adaround_grad(t->dW[i], t->w[i], V, t->s[c], t->z[c], d->qmin, d->qmax, t->active, t->beta,
                                   t->sc->lambda, &term);
        if (t->active) reg += (double)term;
        t->V[i] = qd_adam_update_bc(V, g, &t->m[i], &t->v[i], t->sc->lr_v, t->bc);
    }
    return reg;
}

qd_status qd_cpu_adaround_step(qd_backend *b, const qd_adaround_desc *d, const qd_sched_desc *s, const int32_t *iter,
                               const float *w, const float *sc, const float *z, const float *dW, float *V, float *m,
                               float *v, float *reg_loss) {
    if (d->per_channel <= 0) return qd_errorf(QD_ERR_INTERNAL, "adaround_step: per_channel = %lld", (long long)d->per_channel);
    int c = *iter;
    ar_task t = {.d = d, .sc = s, .w = w, .s = sc, .z = z, .dW = dW, .V = V, .m = m, .v = v, .c = c};
    t.active = qd_reg_active(c, s->total_iters, s->warm_up);
    t.beta = qd_beta_at(c, s->total_iters, s->warm_up, s->b_start, s->b_end);
    t.bc = qd_adam_bias_correction(c);
    double reg = 0.0;
    QD_TRY(ordered_sum(b, d->numel, ar_step_chunk, &t, &reg));
    if (reg_loss && t.active) *reg_loss += (float)((double)s->lambda * reg);
    return QD_OK;
}

/* ---- scales' Adam with cosine lr (§6.3) ---- */
qd_status qd_cpu_scale_step(qd_backend *b, const qd_sched_desc *s, const int32_t *iter, int n, float *scales,
                            float *grads, float *m, float *v) {
    (void)b;
    int c = *iter;
    float lr = qd_cosine_lr(s->lr_scale, c, s->total_iters);
    for (int j = 0; j < n; j++) {
        scales[j] = qd_adam_update(scales[j], grads[j], &m[j], &v[j], lr, c);
        grads[j] = 0.0f;
    }
    return QD_OK;
}

/* ---- reconstruction loss (§5) ---- */
typedef struct { const float *y, *t; float *dy; float inv2; } mse_task;

static double mse_chunk(void *vctx, int64_t b0, int64_t b1) {
    mse_task *t = vctx;
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    float tmp[QD_CPU_TILE];
    for (int64_t i0 = b0; i0 < b1; i0 += QD_CPU_TILE) {
        int n = (int)(b1 - i0 < QD_CPU_TILE ? b1 - i0 : QD_CPU_TILE);
        mse_tile(n, t->y + i0, t->t + i0, t->dy ? t->dy + i0 : NULL, t->inv2, tmp);
        sum8_tile(n, tmp, acc);
    }
    return sum8_lanes(acc);
}

qd_status qd_cpu_mse_loss(qd_backend *b, int64_t n, int64_t c, int64_t hw, const float *y, const float *t,
                          float *dy, float *loss) {
    double denom = (double)n * (double)hw;
    if (denom <= 0) return qd_errorf(QD_ERR_INTERNAL, "mse_loss: empty tensor (N=%lld HW=%lld)", (long long)n, (long long)hw);
    mse_task k = {y, t, dy, (float)(2.0 / denom)};
    double sum = 0.0;
    QD_TRY(ordered_sum(b, n * c * hw, mse_chunk, &k, &sum));
    if (loss) *loss += (float)(sum / denom);
    return QD_OK;
}

/* ---- L_p reconstruction loss (§5 reduction, p = 2.4 in BRECQ's activation stage) ---- */
typedef struct { const float *y, *t; float *dy; float p, inv; } lp_task;

static double lp_chunk(void *vctx, int64_t b0, int64_t b1) {
    lp_task *t = vctx;
    double acc = 0.0;
    for (int64_t i = b0; i < b1; i++) {
        float e = t->y[i] - t->t[i];
        acc += (double)qd_lp_loss_term(e, t->p);
        if (t->dy) t->dy[i] = qd_lp_loss_grad(e, t->p, t->inv);
    }
    return acc;
}

qd_status qd_cpu_lp_loss(qd_backend *b, float p, int64_t n, int64_t c, int64_t hw, const float *y, const float *t,
                         float *dy, float *loss) {
    double denom = (double)n * (double)hw;
    if (denom <= 0) return qd_errorf(QD_ERR_INTERNAL, "lp_loss: empty tensor (N=%lld HW=%lld)", (long long)n, (long long)hw);
    if (!(p >= 1.0f)) return qd_errorf(QD_ERR_INTERNAL, "lp_loss: p must be >= 1, got %g", (double)p);
    lp_task k = {y, t, dy, p, (float)(1.0 / denom)};
    double sum = 0.0;
    QD_TRY(ordered_sum(b, n * c * hw, lp_chunk, &k, &sum));
    if (loss) *loss += (float)(sum / denom);
    return QD_OK;
}

/* ---- divergence check: sticky flag (set to 1, never cleared here; callers zero it) ---- */
static double finite_chunk(void *vctx, int64_t b0, int64_t b1) {
    const float *x = vctx;
    for (int64_t i = b0; i < b1; i++) if (!isfinite(x[i])) return 1.0;
    return 0.0;
}

qd_status qd_cpu_check_finite(qd_backend *b, int64_t n, const float *x, int32_t *bad) {
    double nbad = 0.0;
    QD_TRY(ordered_sum(b, n, finite_chunk, (void *)x, &nbad));
    if (nbad > 0.0) *bad = 1;
    return QD_OK;
}
