/* src/recon/unit_cache.h: the unit-input caches of a reconstruction stage (§8.2).
 *
 * Training a unit draws its inputs and targets from activations of the whole calibration set:
 * quant_in (the unit input with the upstream units quantized), fp_in (the same from the FP model,
 * for input mixing, §7.1) and fp_out (the FP unit output, the target). One qd_unit_cache serves a
 * whole stage loop (the weight stage and BRECQ's activation stage):
 *
 *   qd_unit_cache c;
 *   qd_unit_cache_init(&c, incremental, fp_only, oom_fallback);
 *   ctx->cache = &c;
 *   for each unit u:
 *       qd_unit_cache_seek(&c, ctx, u, upstream);   // the running cut at u's input (incremental)
 *       qd_recon_unit(ctx, u, ...);                  // -> qd_unit_cache_fill / _drop_unit
 *       qd_unit_cache_advance(&c, ctx, u, next, upstream);
 *   qd_unit_cache_free(&c, b);
 *
 * Incremental: block units form a chain, so the calibration set's activations at the current cut
 * are kept and advanced unit by unit (one pass over the unit) instead of recomputing the network
 * prefix from the images for every unit; units whose input is not the cut (layer-wise units read
 * values inside blocks) compute their caches from the images. QD_NO_INCREMENTAL_CACHE turns the
 * running cut off (a debugging switch: same results, more forward passes).
 *
 * Every byte of cache memory, here and in activation range initialisation, is allocated by
 * qd_unit_cache_alloc and returned by qd_unit_cache_release: the one place where cache placement
 * (device memory, pinned host memory, a host budget) is decided. */
#ifndef QD_RECON_UNIT_CACHE_H
#define QD_RECON_UNIT_CACHE_H

#include "recon/recon.h"

typedef struct qd_unit_cache {
    int incremental;        /* keep the running cut and advance it along the chain of units */
    int fp_only;            /* the quantized path is the FP path (BRECQ stage 2: "inputs from the FP model") */
    int oom_fallback;       /* no memory for the cut: recompute from the images instead of failing */
    /* the running cut: activations of every calibration image at value cut_value (-1: none) */
    float *cut_q, *cut_fp;  /* cut_q == cut_fp when fp_only */
    int cut_value;
    /* the current unit's caches (qd_unit_cache_fill) */
    float *qin, *fpin, *fpout;
    int borrowed;           /* qin/fpin are the cut itself, not the unit's own buffers */
    int in_dev, out_dev;    /* where qin / fpout live: 1 device memory, 0 pinned host memory */
} qd_unit_cache;

/* The one allocation of calibration-set activation memory: `bytes` through the backend's cache
 * allocator (*on_device says where it went). NULL with the error set when it does not fit. */
float *qd_unit_cache_alloc(qd_backend *b, size_t bytes, int *on_device);
void qd_unit_cache_release(qd_backend *b, float *p);

void qd_unit_cache_init(qd_unit_cache *c, int incremental, int fp_only, int oom_fallback);
/* Incremental caches: make sure the running cut exists, computed from the images at u's input
 * (quantized path in `upstream` mode, FP path). Without memory for it: an error naming the unit,
 * or with oom_fallback the cache turns non-incremental. */
QD_MUST_USE qd_status qd_unit_cache_seek(qd_unit_cache *c, qd_recon_ctx *ctx, const qd_unit_spec *u,
                                         qd_exec_mode upstream);
/* Unit u's quant_in / fp_in (only when p->input_keep_prob < 1) / fp_out: borrowed from the cut
 * when it is at u's input, else computed from the images. */
QD_MUST_USE qd_status qd_unit_cache_fill(qd_unit_cache *c, qd_recon_ctx *ctx, const qd_unit_spec *u,
                                         const qd_unit_params *p);
/* Release the current unit's own buffers (not the cut). */
void qd_unit_cache_drop_unit(qd_unit_cache *c, qd_backend *b);
/* Move the cut from u's input to next's input (one pass over the nodes between); when the units
 * do not form a simple chain there or memory runs out, the cache turns non-incremental. */
void qd_unit_cache_advance(qd_unit_cache *c, qd_recon_ctx *ctx, const qd_unit_spec *u, const qd_unit_spec *next,
                           qd_exec_mode upstream);
void qd_unit_cache_free(qd_unit_cache *c, qd_backend *b);

#endif
