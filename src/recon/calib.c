/* src/recon/calib.c: forwards over the calibration set — unit caches (§8.2) and activation
 * range initialisation (§6.2): qd_cache_value runs the network prefix from the images (any cut,
 * layer-wise units inside blocks), qd_cache_from advances activations already cached at one value
 * (recon/unit_cache.h keeps the running cut). */
#include <stdlib.h>
#include <string.h>

#include "qdrop/log.h"
#include "recon/memplan.h" /* QD_CALIB_BATCH */
#include "recon/recon.h"
#include "recon/unit_cache.h"

/* Side inputs of the samples [s0, s0 + nb): their rows of the per-sample side caches. */
static qd_status bind_side(qd_recon_ctx *ctx, int s0) {
    for (int k = 0; k < ctx->nside; k++) {
        int64_t numel = qd_value_sample_numel(&ctx->g->values[ctx->side_value[k]]);
        QD_TRY(qd_exec_bind(ctx->exec, ctx->side_value[k], ctx->side_dev[k] + (size_t)s0 * (size_t)numel));
    }
    return QD_OK;
}

qd_status qd_recon_bind_side(qd_recon_ctx *ctx, int s0) { return bind_side(ctx, s0); }

qd_status qd_cache_value(qd_recon_ctx *ctx, qd_exec_mode mode, int node_end, int v, int nimages, float *dst) {
    qd_graph *g = ctx->g;
    qd_backend *b = ctx->b;
    int64_t numel = qd_value_sample_numel(&g->values[v]);
    int in_v = g->inputs[0];
    float *img = b->ops->alloc(b, sizeof(float) * (size_t)QD_CALIB_BATCH * (size_t)ctx->image_numel);
    if (!img) return qd_errorf(QD_ERR_DEVICE_OOM, "calibration batch buffer");
    qd_status st = QD_OK;
    qd_phase ph;
    if (!ctx->cache_progress_off) qd_phase_begin(&ph, "cache", "images", nimages);
    for (int s0 = 0; s0 < nimages && st == QD_OK; s0 += QD_CALIB_BATCH) {
        int nb = nimages - s0 < QD_CALIB_BATCH ? nimages - s0 : QD_CALIB_BATCH;
        if (!ctx->cache_progress_off) qd_phase_update(&ph, s0);
        /* a network whose input stage is quantized outside the graph (BERT's 8-bit embedding
         * tables) has a separate FP-path input */
        const float *src = ctx->calib_host_fp && (mode == QD_EXEC_FP || mode == QD_EXEC_AQ_ONLY) ? ctx->calib_host_fp
                                                                                                : ctx->calib_host;
        st = b->ops->upload(b, img, src + (size_t)s0 * (size_t)ctx->image_numel,
                            sizeof(float) * (size_t)nb * (size_t)ctx->image_numel);
        if (st == QD_OK) st = bind_side(ctx, s0);
        if (st == QD_OK) {
            if (v == in_v) st = b->ops->copy(b, dst + (size_t)s0 * (size_t)numel, img, sizeof(float) * (size_t)nb * (size_t)numel);
            else st = qd_exec_run(ctx->exec, mode, 0, node_end, in_v, img, nb, v, dst + (size_t)s0 * (size_t)numel);
        }
    }
    b->ops->free(b, img);
    if (!ctx->cache_progress_off) { qd_phase_update(&ph, nimages); qd_phase_end(&ph); }
    return st;
}

qd_status qd_cache_from(qd_recon_ctx *ctx, qd_exec_mode mode, const float *src, int src_value, int node_begin,
                        int node_end, int v, int nimages, float *dst) {
    qd_graph *g = ctx->g;
    int64_t in_numel = qd_value_sample_numel(&g->values[src_value]);
    int64_t numel = qd_value_sample_numel(&g->values[v]);
    qd_status st = QD_OK;
    if (v == src_value)
        return ctx->b->ops->copy(ctx->b, dst, src, sizeof(float) * (size_t)nimages * (size_t)numel);
    qd_phase ph;
    if (!ctx->cache_progress_off) qd_phase_begin(&ph, "cache", "images", nimages);
    for (int s0 = 0; s0 < nimages && st == QD_OK; s0 += QD_CALIB_BATCH) {
        int nb = nimages - s0 < QD_CALIB_BATCH ? nimages - s0 : QD_CALIB_BATCH;
        if (!ctx->cache_progress_off) qd_phase_update(&ph, s0);
        st = bind_side(ctx, s0);
        if (st == QD_OK)
            st = qd_exec_run(ctx->exec, mode, node_begin, node_end, src_value, src + (size_t)s0 * (size_t)in_numel, nb, v,
                             dst + (size_t)s0 * (size_t)numel);
    }
    if (!ctx->cache_progress_off) { qd_phase_update(&ph, nimages); qd_phase_end(&ph); }
    return st;
}

/* Initialise the selected activation quantizers (§6.2). */
qd_status qd_init_act_ranges(qd_recon_ctx *ctx, qd_exec_mode mode, const int *select, int nsamples, int progressive) {
    qd_graph *g = ctx->g;
    qd_backend *b = ctx->b;
    if (nsamples > ctx->ncal) nsamples = ctx->ncal;
    /* order quantizers by producer node (data flow) */
    int *order = malloc(sizeof(int) * (size_t)(g->nact + 1));
    if (!order) return qd_errorf(QD_ERR_INTERNAL, "out of host memory");
    int n = 0;
    for (int ni = 0; ni < g->nnodes; ni++)
        for (int o = 0; o < g->nodes[ni].noutputs; o++) {
            int v = g->nodes[ni].outputs[o];
            int a = g->values[v].act_quant;
            if (a < 0) continue;
            if (select ? !select[a] : g->act[a].initialized) continue;
            order[n++] = a;
        }
    qd_status st = QD_OK;
    float *host = NULL;
    size_t host_cap = 0;
    qd_phase ph;
    qd_phase_begin(&ph, "activation ranges", "quantizers", n);
    int quiet_cache = ctx->cache_progress_off;
    ctx->cache_progress_off = 1; /* one bar: quantizer k/N, not each quantizer's forward */
    for (int k = 0; k < n && st == QD_OK; k++) {
        qd_phase_update(&ph, k);
        int a = order[k];
        qd_act_quant *A = &g->act[a];
        int v = A->value;
        int64_t numel = qd_value_sample_numel(&g->values[v]);
        size_t bytes = sizeof(float) * (size_t)nsamples * (size_t)numel;
        int ondev = 0;
        float *dev = qd_unit_cache_alloc(b, bytes, &ondev);
        if (!dev) { st = qd_errorf(QD_ERR_DEVICE_OOM, "activation calibration buffer for '%s' (%zu bytes)", g->values[v].name, bytes); break; }
        /* The quantizer being initialised is not applied yet (initialized == 0), so the value
         * cached is its input. In the non-progressive flow the network mode decides whether
         * upstream quantizers act; with progressive they do as soon as they are initialised. */
        st = qd_cache_value(ctx, mode, g->values[v].producer + 1, v, nsamples, dev);
        if (st == QD_OK) {
            if (bytes > host_cap) {
                free(host);
                host = malloc(bytes);
                host_cap = host ? bytes : 0;
            }
            if (!host) st = qd_errorf(QD_ERR_INTERNAL, "out of host memory (%zu bytes)", bytes);
        }
        if (st == QD_OK) st = b->ops->download(b, host, dev, bytes);
        qd_unit_cache_release(b, dev);
        if (st == QD_OK) st = qd_act_range_search(host, (int64_t)nsamples * numel, A->bits, ctx->cfg->threads > 0 ? ctx->cfg->threads : 2, &A->scale, &A->zero_point);
        if (st == QD_OK && progressive) { A->initialized = 1; st = qd_exec_sync_quant(ctx->exec); }
    }
    ctx->cache_progress_off = quiet_cache;
    if (st == QD_OK) { qd_phase_update(&ph, n); qd_phase_end(&ph); }
    else qd_progress_done();
    if (st == QD_OK && !progressive) {
        for (int k = 0; k < n; k++) g->act[order[k]].initialized = 1;
        st = qd_exec_sync_quant(ctx->exec);
    }
    free(host);
    free(order);
    return st;
}
