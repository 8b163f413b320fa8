/* src/cpu/cpu_internal.h: private pieces of the CPU reference backend (thread pool, scratch,
 * per-op entry points). Not part of the public API.
 *
 * Determinism: every parallel loop is split into chunks whose boundaries depend only on the
 * problem size (never on the thread count), each chunk writes disjoint outputs, and every
 * reduction is done per fixed chunk and then summed in chunk order by one thread. OpenBLAS runs
 * single-threaded inside the chunks (its level-3 kernels are deterministic for a fixed call), so
 * results are bit-identical for any `threads` setting (tests/unit/test_cpu_threads.c).
 */
#ifndef QD_CPU_INTERNAL_H
#define QD_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "qdrop/backend.h"

typedef struct qd_cpu_pool qd_cpu_pool;

/* fn(ctx, begin, end, tid): process [begin, end); tid in [0, nthreads) indexes scratch. */
typedef void (*qd_cpu_fn)(void *ctx, int64_t begin, int64_t end, int tid);

qd_cpu_pool *qd_cpu_pool_create(int nthreads);
void qd_cpu_pool_destroy(qd_cpu_pool *p);
int qd_cpu_pool_threads(const qd_cpu_pool *p);
/* Runs fn over [0, n) in chunks of `grain` items (the last chunk may be shorter). Chunk
 * boundaries are begin = k * grain, independent of the thread count. Blocks until done. */
void qd_cpu_parallel_for(qd_cpu_pool *p, int64_t n, int64_t grain, qd_cpu_fn fn, void *ctx);

/* One unit cache (alloc_cache): in memory, or a MAP_SHARED mapping of a spill file (cpu_spill.c). */
typedef struct qd_cpu_cache {
    void *p;
    size_t bytes;            /* requested */
    size_t map_len;          /* spilled: mapping length (page multiple) */
    int spilled;
    int fd;                  /* spilled: the file, for the batch gather's reads (-1 otherwise) */
} qd_cpu_cache;

typedef struct qd_cpu_impl {
    qd_cpu_pool *pool;
    int nthreads;
    float **scratch;         /* per-thread scratch (im2col columns, ...) */
    size_t *scratch_cap;     /* floats */
    float *shared;           /* one shared buffer (per-chunk partial sums) */
    size_t shared_cap;
    void *dnnl;              /* oneDNN engine, streams and primitive cache (cpu_conv_dnnl.c) */
    /* unit caches under the host-memory budget (cpu_spill.c) */
    qd_cpu_cache *caches;
    int ncaches, caches_cap, nspilled, spill_seq, spill_files;
    int64_t cache_budget;    /* bytes of caches kept in memory, 0 = no limit */
    int64_t mem_bytes, spill_bytes, mem_peak, spill_peak;
    char spill_dir[4096];    /* "" = spilling not allowed */
    float *gather_stage;     /* drawn samples of spilled caches, read with pread */
    size_t gather_stage_cap; /* floats */
    int32_t *gather_ident;   /* 0..batch-1 */
    int gather_ident_cap;
} qd_cpu_impl;

static inline qd_cpu_impl *qd_cpu(qd_backend *b) { return (qd_cpu_impl *)b->impl; }

/* Make every thread's scratch hold at least `floats` floats. */
QD_MUST_USE qd_status qd_cpu_scratch(qd_backend *b, size_t floats);
/* Shared scratch of at least `floats` floats (NULL + qd_errorf on failure). */
float *qd_cpu_shared(qd_backend *b, size_t floats);

/* Unit caches (src/cpu/cpu_spill.c). */
void *qd_cpu_cache_alloc(qd_backend *b, size_t bytes);
void qd_cpu_cache_free(qd_backend *b, void *p);
void qd_cpu_cache_release_all(qd_cpu_impl *c);
/* After an op touched [p, p + bytes) (bytes 0: to the end of its mapping): drop those pages of a
 * spilled cache from the process (no-op for other memory). */
void qd_cpu_spill_release(qd_backend *b, const void *p, size_t bytes);
/* memmove that goes in chunks, releasing spilled pages after each one. */
void qd_cpu_spill_copy(qd_backend *b, void *dst, const void *src, size_t bytes);
/* 1 when p lies in a spilled cache. */
int qd_cpu_is_spilled(qd_backend *b, const void *p);
/* dst[k] = sample idx[k] of src (sample_numel floats each), k < batch; a spilled src is read
 * with pread, so no page of it is mapped in. */
QD_MUST_USE qd_status qd_cpu_spill_stage(qd_backend *b, const float *src, const int32_t *idx, int32_t batch,
                                         int64_t sample_numel, float *dst);

/* Graph ops (src/cpu/cpu_conv.c, src/cpu/cpu_ops.c). */
qd_status qd_cpu_conv_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                              const qd_shape *os, float *out);
qd_status qd_cpu_conv_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                               const qd_shape *os, const float *dout, float *const *din);
qd_status qd_cpu_node_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                              const qd_shape *os, float *out);
qd_status qd_cpu_node_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                               const qd_shape *os, const float *out, const float *dout, float *const *din);

/* Plan-time check (src/cpu/cpu_ops.c, beside the kernels' switch): qd_backend_ops.supports_op. */
int qd_cpu_supports_op(const qd_backend *b, const qd_graph *g, const qd_node *n, char *why, size_t cap);

/* Reconstruction kernels (src/cpu/cpu_recon.c); qd_backend_ops documents each. */
qd_status qd_cpu_iter_advance(qd_backend *b, int32_t *iter);
qd_status qd_cpu_draw_batch(qd_backend *b, qd_rng_key key, const int32_t *iter, int32_t n_total, int32_t batch,
                            int32_t *idx);
qd_status qd_cpu_gather_mix(qd_backend *b, const float *quant_src, const float *fp_src, const int32_t *idx,
                            int32_t batch, int64_t sample_numel, qd_rng_key key, float keep_prob,
                            const int32_t *iter, float *out);
qd_status qd_cpu_fq_forward(qd_backend *b, const qd_fq_desc *d, const float *scale, const int32_t *iter, int64_t n,
                            const float *x, float *y, uint8_t *region);
qd_status qd_cpu_fq_backward(qd_backend *b, const qd_fq_desc *d, const float *scale, int64_t n, const float *x,
                             const uint8_t *region, const float *dy, float *dx, float *dscale);
qd_status qd_cpu_adaround_init(qd_backend *b, const qd_adaround_desc *d, const float *w, const float *s,
                               const float *z, float *V);
qd_status qd_cpu_adaround_weight(qd_backend *b, const qd_adaround_desc *d, const float *w, const float *V,
                                 const float *s, const float *z, int hard, float *w_out);
qd_status qd_cpu_adaround_step(qd_backend *b, const qd_adaround_desc *d, const qd_sched_desc *s, const int32_t *iter,
                               const float *w, const float *sc, const float *z, const float *dW, float *V, float *m,
                               float *v, float *reg_loss);
qd_status qd_cpu_scale_step(qd_backend *b, const qd_sched_desc *s, const int32_t *iter, int n, float *scales,
                            float *grads, float *m, float *v);
qd_status qd_cpu_mse_loss(qd_backend *b, int64_t n, int64_t c, int64_t hw, const float *y, const float *t,
                          float *dy, float *loss);
qd_status qd_cpu_lp_loss(qd_backend *b, float p, int64_t n, int64_t c, int64_t hw, const float *y, const float *t,
                         float *dy, float *loss);
qd_status qd_cpu_check_finite(qd_backend *b, int64_t n, const float *x, int32_t *bad);
qd_status qd_cpu_keep_mask(qd_backend *b, qd_rng_key key, const int32_t *iter, int64_t n, float keep_prob,
                          uint32_t *bits);
/* out[i] = qd_rng_u32(key, it, a0 + i) for i < n, a0 a multiple of 4, out holding n rounded up
 * to a multiple of 4 words: the CPU's Philox tile (AVX-512 or C), exposed for tests. */
void qd_cpu_rng_words(qd_rng_key key, uint32_t it, int64_t a0, int n, uint32_t *out);

/* Fixed chunk sizes: part of the numerical contract (changing them changes reduction order). */
#define QD_CPU_EW_GRAIN 16384   /* elementwise */
#define QD_CPU_RED_GRAIN 8192   /* reductions: partial per chunk, summed in chunk order */

#endif
