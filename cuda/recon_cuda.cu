/* cuda/recon_cuda.cu: fused reconstruction kernels (§2, §4, §5, §6.3, §7) of the CUDA backend.
 * Every formula comes from src/core/qmath.h, the same header the CPU twin compiles, and every
 * random decision is keyed on (key, *iter, logical element index) only, so masks, region codes
 * and hard rounding decisions agree bit for bit with src/cpu (docs/numerics.md).
 * Everything iteration-dependent reads the device counter `iter`, never a host value, so one
 * iteration can be captured as a CUDA Graph and replayed.
 * Reductions are two-pass (per-block double partials, then one block sums them in a fixed
 * order): deterministic, independent of the device's SM count.
 */
#include "qd_cuda.cuh"
#include "core/qmath.h"

/* Block-level sum of one double per thread into partials[blockIdx.x] (fixed tree order). */
__device__ __forceinline__ void qd_block_partial(double v, double *partials) {
    __shared__ double sh[QD_CU_THREADS];
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned w = blockDim.x / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) partials[blockIdx.x] = sh[0];
}

/* ------------------------------------------------------------------------------------------ */
__global__ void qd_k_iter_advance(int32_t *iter) { *iter += 1; }

qd_status qd_cu_iter_advance(qd_backend *b, int32_t *iter) {
    qd_k_iter_advance<<<1, 1, 0, qd_cu_of(b)->stream>>>(iter);
    return qd_cu_post(b, "iter_advance", __FILE__, __LINE__);
}

/* ------------------------------------------------------------------------------------------ */
__global__ void qd_k_draw_batch(qd_rng_key key, const int32_t *iter, uint32_t n_total, int32_t batch, int32_t *idx) {
    int32_t k = (int32_t)(blockIdx.x * blockDim.x + threadIdx.x);
    if (k >= batch) return;
    idx[k] = (int32_t)qd_draw_index(key, (uint32_t)*iter, (uint32_t)k, n_total);
}

qd_status qd_cu_draw_batch(qd_backend *b, qd_rng_key key, const int32_t *iter, int32_t n_total, int32_t batch,
                           int32_t *idx) {
    if (batch <= 0) return QD_OK;
    if (n_total <= 0) return qd_errorf(QD_ERR_INTERNAL, "cuda: draw_batch: n_total %d must be > 0", n_total);
    qd_k_draw_batch<<<qd_cu_blocks(batch), QD_CU_THREADS, 0, qd_cu_of(b)->stream>>>(key, iter, (uint32_t)n_total,
                                                                                    batch, idx);
    return qd_cu_post(b, "draw_batch", __FILE__, __LINE__);
}

/* ------------------------------------------------------------------------------------------ */
/* Unit-input mixing (§7.1) fused with the batch gather. Sources may be mapped pinned host
 * memory (alloc_cache fallback).
 * One thread per Philox block: element e's random word is word e % 4 of block e / 4
 * (qd_rng_u32), so each thread draws one block and serves elements 4q .. 4q+3 with it, the
 * same words the CPU tiles use (bit-identical masks) for a quarter of the Philox rounds. */
__global__ void qd_k_gather_mix(const float *__restrict__ qsrc, const float *__restrict__ fsrc,
                                const int32_t *__restrict__ idx, int64_t total, int64_t sample_numel,
                                qd_rng_key key, float keep_prob, const int32_t *iter, int mix, float *__restrict__ out) {
    uint32_t it = mix ? (uint32_t)*iter : 0u;
    int64_t nquads = (total + 3) >> 2;
    for (int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; q < nquads; q += (int64_t)gridDim.x * blockDim.x) {
        uint32_t r[4] = {0u, 0u, 0u, 0u};
        if (mix) qd_rng_block(key, it, (uint64_t)q, r);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int64_t e = 4 * q + j;
            if (e >= total) break;
            int64_t k = e / sample_numel;
            int64_t src = (int64_t)idx[k] * sample_numel + (e - k * sample_numel);
            /* qd_keep_quant(key, it, e, keep_prob), its word taken from this thread's block */
            int keep_quant = !mix || qd_u32_to_uniform(r[j]) < keep_prob;
            out[e] = keep_quant ? qsrc[src] : fsrc[src];
        }
    }
}

qd_status qd_cu_gather_mix(qd_backend *b, const float *quant_src, const float *fp_src, const int32_t *idx,
                           int32_t batch, int64_t sample_numel, qd_rng_key key, float keep_prob,
                           const int32_t *iter, float *out) {
    int64_t total = (int64_t)batch * sample_numel;
    if (total <= 0) return QD_OK;
    int mix = (fp_src != NULL && keep_prob < 1.0f);
    if (mix && !iter) return qd_errorf(QD_ERR_INTERNAL, "cuda: gather_mix: drop mixing needs the iteration counter");
    qd_k_gather_mix<<<qd_cu_blocks((total + 3) / 4), QD_CU_THREADS, 0, qd_cu_of(b)->stream>>>(
        quant_src, fp_src, idx, total, sample_numel, key, keep_prob, iter, mix, out);
    return qd_cu_post(b, "gather_mix", __FILE__, __LINE__);
}

/* ------------------------------------------------------------------------------------------ */
/* Keep-mask bits for the run's reproducibility digest (backend.h keep_mask): one thread per
 * 32-element word, eight Philox blocks, the same words and comparison as the kernels above. */
__global__ void qd_k_keep_mask(qd_rng_key key, const int32_t *iter, int64_t n, float keep_prob, uint32_t *bits) {
    int all = keep_prob >= 1.0f;
    uint32_t it = all ? 0u : (uint32_t)*iter;
    int64_t nwords = (n + 31) >> 5;
    for (int64_t w = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; w < nwords; w += (int64_t)gridDim.x * blockDim.x) {
        uint32_t m = 0;
        for (int q = 0; q < 8; q++) {
            uint32_t r[4] = {0u, 0u, 0u, 0u};
            if (!all) qd_rng_block(key, it, (uint64_t)(8 * w + q), r);
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int64_t e = 32 * w + 4 * q + j;
                if (e < n && (all || qd_u32_to_uniform(r[j]) < keep_prob)) m |= 1u << (4 * q + j);
            }
        }
        bits[w] = m;
    }
}

qd_status qd_cu_keep_mask(qd_backend *b, qd_rng_key key, const int32_t *iter, int64_t n, float keep_prob,
                          uint32_t *bits) {
    if (n <= 0) return QD_OK;
    if (keep_prob < 1.0f && !iter)
        return qd_errorf(QD_ERR_INTERNAL, "cuda: keep_mask: keep_prob %g needs the iteration counter", keep_prob);
    qd_k_keep_mask<<<qd_cu_blocks((n + 31) / 32), QD_CU_THREADS, 0, qd_cu_of(b)->stream>>>(key, iter, n, keep_prob,
                                                                                         bits);
    return qd_cu_post(b, "keep_mask", __FILE__, __LINE__);
}

/* ------------------------------------------------------------------------------------------ */
/* Activation fake-quant + QDrop mask (§2, §7.2). One Philox block per thread, serving elements
 * 4q .. 4q+3 (as qd_k_gather_mix). */
__global__ void qd_k_fq_forward(qd_fq_desc d, const float *scale, const int32_t *iter, int64_t n,
                                const float *__restrict__ x, float *__restrict__ y, uint8_t *__restrict__ region) {
    float s = d.guard_scale ? qd_lsq_guard(*scale) : *scale;
    int drop = d.keep_prob < 1.0f;
    uint32_t it = drop ? (uint32_t)*iter : 0u;
    int64_t nquads = (n + 3) >> 2;
    for (int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; q < nquads; q += (int64_t)gridDim.x * blockDim.x) {
        uint32_t r[4] = {0u, 0u, 0u, 0u};
        if (drop) qd_rng_block(d.key, it, (uint64_t)q, r);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int64_t i = 4 * q + j;
            if (i >= n) break;
            float xv = x[i];
            int reg;
            float yv;
            /* qd_keep_quant(d.key, it, i, keep_prob) with this thread's block */
            if (drop && !(qd_u32_to_uniform(r[j]) < d.keep_prob)) {
                reg = QD_FQ_DROPPED;
                yv = xv;
            } else {
                yv = qd_fake_quant_region(xv, s, d.zero_point, d.qmin, d.qmax, &reg);
            }
            y[i] = yv;
            if (region) region[i] = (uint8_t)reg;
        }
    }
}

qd_status qd_cu_fq_forward(qd_backend *b, const qd_fq_desc *d, const float *scale, const int32_t *iter,
                           int64_t n, const float *x, float *y, uint8_t *region) {
    if (n <= 0) return QD_OK;
    if (d->keep_prob < 1.0f && !iter)
        return qd_errorf(QD_ERR_INTERNAL, "cuda: fq_forward: keep_prob %g needs the iteration counter", d->keep_prob);
    qd_k_fq_forward<<<qd_cu_blocks((n + 3) / 4), QD_CU_THREADS, 0, qd_cu_of(b)->stream>>>(*d, scale, iter, n, x, y,
                                                                                        region);
    return qd_cu_post(b, "fq_forward", __FILE__, __LINE__);
}

/* STE backward + LSQ scale gradient partials (pass 1). */
__global__ void qd_k_fq_backward(qd_fq_desc d, const float *scale, int64_t n, const float *__restrict__ x,
                                 const uint8_t *__restrict__ region, const float *__restrict__ dy,
                                 float *__restrict__ dx, int want_ds, double *partials) {
    float s = d.guard_scale ? qd_lsq_guard(*scale) : *scale;
    double acc = 0.0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int reg = region[i];
        float g = dy[i];
        if (dx) dx[i] += qd_fake_quant_dx(g, reg);
        if (want_ds) acc += (double)qd_fake_quant_ds(g, x[i], s, d.zero_point, d.qmin, d.qmax, reg);
    }
    if (want_ds) qd_block_partial(acc, partials);
}

qd_status qd_cu_fq_backward(qd_backend *b, const qd_fq_desc *d, const float *scale, int64_t n, const float *x,
                            const uint8_t *region, const float *dy, float *dx, float *dscale) {
    if (n <= 0) return QD_OK;
    qd_cu *c = qd_cu_of(b);
    if (!region) return qd_errorf(QD_ERR_INTERNAL, "cuda: fq_backward needs the forward's region codes");
    int want_ds = dscale != NULL;
    unsigned nb = want_ds ? qd_cu_red_blocks(n) : qd_cu_blocks(n);
    qd_k_fq_backward<<<nb, QD_CU_THREADS, 0, c->stream>>>(*d, scale, n, x, region, dy, dx, want_ds, c->partials);
    QD_CU_POST(b, "fq_backward");
    if (!want_ds) return QD_OK;
    double factor = d->grad_scale ? (double)qd_lsq_grad_factor((double)n, (int)d->qmax) : 1.0;
    return qd_cu_reduce_finish(b, nb, factor, dscale);
}

/* ------------------------------------------------------------------------------------------ */
/* AdaRound (§4). channel = i / per_channel. */
__global__ void qd_k_adaround_init(int64_t n, int64_t per_channel, const float *__restrict__ w,
                                   const float *__restrict__ s, float *__restrict__ V) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        V[i] = qd_adaround_init_v(w[i], s[i / per_channel]);
}

qd_status qd_cu_adaround_init(qd_backend *b, const qd_adaround_desc *d, const float *w, const float *s,
                              const float *z, float *V) {
    (void)z; /* §4: the floor is on w/s alone */
    if (d->numel <= 0) return QD_OK;
    if (d->per_channel <= 0) return qd_errorf(QD_ERR_INTERNAL, "cuda: adaround_init: per_channel must be > 0");
    qd_k_adaround_init<<<qd_cu_blocks(d->numel), QD_CU_THREADS, 0, qd_cu_of(b)->stream>>>(d->numel, d->per_channel,
                                                                                         w, s, V);
    return qd_cu_post(b, "adaround_init", __FILE__, __LINE__);
}

__global__ void qd_k_adaround_weight(qd_adaround_desc d, const float *__restrict__ w, const float *__restrict__ V,
                                     const float *__restrict__ s, const float *__restrict__ z, int hard,
                                     float *__restrict__ wo) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < d.numel;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t ch = i / d.per_channel;
        wo[i] = qd_adaround_weight(w[i], V[i], s[ch], z[ch], d.qmin, d.qmax, hard, (int *)0);
    }
}

qd_status qd_cu_adaround_weight(qd_backend *b, const qd_adaround_desc *d, const float *w, const float *V,
                                const float *s, const float *z, int hard, float *w_out) {
    if (d->numel <= 0) return QD_OK;
    if (d->per_channel <= 0) return qd_errorf(QD_ERR_INTERNAL, "cuda: adaround_weight: per_channel must be > 0");
    qd_k_adaround_weight<<<qd_cu_blocks(d->numel), QD_CU_THREADS, 0, qd_cu_of(b)->stream>>>(*d, w, V, s, z, hard,
                                                                                           w_out);
    return qd_cu_post(b, "adaround_weight", __FILE__, __LINE__);
}

/* One pass: dV = dW * dw/dV (+ regulariser gradient once c >= T_w), Adam on V, and the
 * regulariser value of the pre-update V (for logs) as block partials. */
__global__ void qd_k_adaround_step(qd_adaround_desc d, qd_sched_desc sc, const int32_t *iter,
                                   const float *__restrict__ w, const float *__restrict__ s,
                                   const float *__restrict__ z, const float *__restrict__ dW, float *__restrict__ V,
                                   float *__restrict__ m, float *__restrict__ v, int want_reg, double *partials) {
    int c = *iter;
    int active = qd_reg_active(c, sc.total_iters, sc.warm_up);
    float beta = qd_beta_at(c, sc.total_iters, sc.warm_up, sc.b_start, sc.b_end);
    qd_adam_bc bc = qd_adam_bias_correction(c);
    double acc = 0.0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < d.numel;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t ch = i / d.per_channel;
        float Vi = V[i];
        float term = 0.0f;
        float g = qd_adaround_grad(dW[i], w[i], Vi, s[ch], z[ch], d.qmin, d.qmax, active, beta, sc.lambda, &term);
        if (active && want_reg) acc += (double)term;
        float mi = m[i], vi = v[i];
        V[i] = qd_adam_update_bc(Vi, g, &mi, &vi, sc.lr_v, bc);
        m[i] = mi;
        v[i] = vi;
    }
    if (want_reg) qd_block_partial(acc, partials);
}

/* Regulariser switched on? Needs the counter, which lives on the device: the kernel decides,
 * the host always finishes the reduction (partials are 0 while inactive). */
qd_status qd_cu_adaround_step(qd_backend *b, const qd_adaround_desc *d, const qd_sched_desc *s,
                              const int32_t *iter, const float *w, const float *sc, const float *z,
                              const float *dW, float *V, float *m, float *v, float *reg_loss) {
    if (d->numel <= 0) return QD_OK;
    qd_cu *c = qd_cu_of(b);
    if (d->per_channel <= 0) return qd_errorf(QD_ERR_INTERNAL, "cuda: adaround_step: per_channel must be > 0");
    int want_reg = reg_loss != NULL;
    unsigned nb = want_reg ? qd_cu_red_blocks(d->numel) : qd_cu_blocks(d->numel);
    qd_k_adaround_step<<<nb, QD_CU_THREADS, 0, c->stream>>>(*d, *s, iter, w, sc, z, dW, V, m, v, want_reg,
                                                            c->partials);
    QD_CU_POST(b, "adaround_step");
    if (!want_reg) return QD_OK;
    return qd_cu_reduce_finish(b, nb, (double)s->lambda, reg_loss);
}

/* ------------------------------------------------------------------------------------------ */
/* Scales' Adam with the cosine lr (§6.3); gradients zeroed for the next iteration. */
__global__ void qd_k_scale_step(qd_sched_desc sc, const int32_t *iter, int n, float *scales, float *grads, float *m,
                                float *v) {
    int c = *iter;
    float lr = qd_cosine_lr(sc.lr_scale, c, sc.total_iters);
    for (int i = (int)(blockIdx.x * blockDim.x + threadIdx.x); i < n; i += (int)(gridDim.x * blockDim.x)) {
        float mi = m[i], vi = v[i];
        scales[i] = qd_adam_update(scales[i], grads[i], &mi, &vi, lr, c);
        m[i] = mi;
        v[i] = vi;
        grads[i] = 0.0f;
    }
}

qd_status qd_cu_scale_step(qd_backend *b, const qd_sched_desc *s, const int32_t *iter, int n, float *scales,
                           float *grads, float *m, float *v) {
    if (n <= 0) return QD_OK;
    qd_k_scale_step<<<qd_cu_blocks(n), QD_CU_THREADS, 0, qd_cu_of(b)->stream>>>(*s, iter, n, scales, grads, m, v);
    return qd_cu_post(b, "scale_step", __FILE__, __LINE__);
}

/* ------------------------------------------------------------------------------------------ */
/* Reconstruction loss (§5): sum over channels of squared error, mean over batch and space. */
__global__ void qd_k_mse(int64_t total, float inv2, const float *__restrict__ y, const float *__restrict__ t,
                         float *__restrict__ dy, double *partials) {
    double acc = 0.0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        float d = y[i] - t[i];
        if (dy) dy[i] = inv2 * d;
        acc += (double)d * (double)d;
    }
    qd_block_partial(acc, partials);
}

qd_status qd_cu_mse_loss(qd_backend *b, int64_t n, int64_t c, int64_t hw, const float *y, const float *t,
                         float *dy, float *loss) {
    qd_cu *cu = qd_cu_of(b);
    int64_t total = n * c * hw;
    if (total <= 0) return QD_OK;
    /* same expression as the CPU twin: dy = (float)(2 / (N*HW)) * (y - t) */
    float inv2 = (float)(2.0 / ((double)n * (double)hw));
    unsigned nb = qd_cu_red_blocks(total);
    qd_k_mse<<<nb, QD_CU_THREADS, 0, cu->stream>>>(total, inv2, y, t, dy, cu->partials);
    QD_CU_POST(b, "mse_loss");
    if (!loss) return QD_OK;
    return qd_cu_reduce_finish(b, nb, 1.0 / ((double)n * (double)hw), loss);
}

/* ------------------------------------------------------------------------------------------ */
/* L_p loss (§5 reduction; p = 2.4 in BRECQ's activation stage): same element formulas as the
 * CPU twin (qd_lp_loss_term / qd_lp_loss_grad, src/core/qmath.h). */
__global__ void qd_k_lp(int64_t total, float p, float inv, const float *__restrict__ y, const float *__restrict__ t,
                        float *__restrict__ dy, double *partials) {
    double acc = 0.0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        float d = y[i] - t[i];
        if (dy) dy[i] = qd_lp_loss_grad(d, p, inv);
        acc += (double)qd_lp_loss_term(d, p);
    }
    qd_block_partial(acc, partials);
}

qd_status qd_cu_lp_loss(qd_backend *b, float p, int64_t n, int64_t c, int64_t hw, const float *y, const float *t,
                        float *dy, float *loss) {
    qd_cu *cu = qd_cu_of(b);
    int64_t total = n * c * hw;
    if (total <= 0) return QD_OK;
    if (!(p >= 1.0f)) return qd_errorf(QD_ERR_INTERNAL, "cuda: lp_loss: p must be >= 1, got %g", (double)p);
    float inv = (float)(1.0 / ((double)n * (double)hw));
    unsigned nb = qd_cu_red_blocks(total);
    qd_k_lp<<<nb, QD_CU_THREADS, 0, cu->stream>>>(total, p, inv, y, t, dy, cu->partials);
    QD_CU_POST(b, "lp_loss");
    if (!loss) return QD_OK;
    return qd_cu_reduce_finish(b, nb, 1.0 / ((double)n * (double)hw), loss);
}

/* ------------------------------------------------------------------------------------------ */
__global__ void qd_k_check_finite(int64_t n, const float *__restrict__ x, int32_t *bad) {
    int local = 0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        if (!isfinite(x[i])) local = 1;
    /* benign race: every writer stores the same value */
    if (local) *bad = 1;
}

qd_status qd_cu_check_finite(qd_backend *b, int64_t n, const float *x, int32_t *bad) {
    if (n <= 0) return QD_OK;
    qd_k_check_finite<<<qd_cu_red_blocks(n), QD_CU_THREADS, 0, qd_cu_of(b)->stream>>>(n, x, bad);
    return qd_cu_post(b, "check_finite", __FILE__, __LINE__);
}
