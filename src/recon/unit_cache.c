/* src/recon/unit_cache.c: the unit-input caches (quant_in, fp_in, fp_out) and the running cut
 * that advances them along a chain of units (recon/unit_cache.h). */
#include <stdlib.h>
#include <string.h>

#include "recon/unit_cache.h"

float *qd_unit_cache_alloc(qd_backend *b, size_t bytes, int *on_device) {
    return b->ops->alloc_cache(b, bytes, on_device);
}

void qd_unit_cache_release(qd_backend *b, float *p) {
    if (p) b->ops->free_cache(b, p);
}

void qd_unit_cache_init(qd_unit_cache *c, int incremental, int fp_only, int oom_fallback) {
    memset(c, 0, sizeof *c);
    c->incremental = incremental && getenv("QD_NO_INCREMENTAL_CACHE") == NULL;
    c->fp_only = fp_only;
    c->oom_fallback = oom_fallback;
    c->cut_value = -1;
}

static size_t value_bytes(const qd_recon_ctx *ctx, int v) {
    return sizeof(float) * (size_t)ctx->ncal * (size_t)qd_value_sample_numel(&ctx->g->values[v]);
}

static void drop_cut(qd_unit_cache *c, qd_backend *b) {
    if (c->cut_fp != c->cut_q) qd_unit_cache_release(b, c->cut_fp);
    qd_unit_cache_release(b, c->cut_q);
    c->cut_q = c->cut_fp = NULL;
    c->cut_value = -1;
}

qd_status qd_unit_cache_seek(qd_unit_cache *c, qd_recon_ctx *ctx, const qd_unit_spec *u, qd_exec_mode upstream) {
    if (!c->incremental || c->cut_q) return QD_OK;
    qd_backend *b = ctx->b;
    int v = u->input_value;
    size_t bytes = value_bytes(ctx, v);
    int dev = 0;
    c->cut_q = qd_unit_cache_alloc(b, bytes, &dev);
    c->cut_fp = c->fp_only ? c->cut_q : c->cut_q ? qd_unit_cache_alloc(b, bytes, &dev) : NULL;
    if (!c->cut_q || !c->cut_fp) {
        drop_cut(c, b);
        if (c->oom_fallback) {
            qd_error_clear();
            c->incremental = 0;
            return QD_OK;
        }
        return qd_errorf(QD_ERR_DEVICE_OOM, "unit %d (%s): cannot allocate the %zu-byte calibration caches", u->index,
                         u->name, bytes);
    }
    QD_TRY(qd_cache_value(ctx, c->fp_only ? QD_EXEC_FP : upstream, u->node_begin, v, ctx->ncal, c->cut_q));
    if (!c->fp_only) QD_TRY(qd_cache_value(ctx, QD_EXEC_FP, u->node_begin, v, ctx->ncal, c->cut_fp));
    c->cut_value = v;
    return QD_OK;
}

qd_status qd_unit_cache_fill(qd_unit_cache *c, qd_recon_ctx *ctx, const qd_unit_spec *u, const qd_unit_params *p) {
    qd_backend *b = ctx->b;
    size_t in_bytes = value_bytes(ctx, u->input_value), out_bytes = value_bytes(ctx, u->output_value);
    int dev = 0;
    c->borrowed = c->cut_q && c->cut_value == u->input_value;
    if (c->borrowed) {
        c->qin = c->cut_q;
        c->in_dev = 1;
        if (p->input_keep_prob < 1.0f) c->fpin = c->cut_fp;
    } else {
        c->qin = qd_unit_cache_alloc(b, in_bytes, &dev); QD_UNIT_OOM(c->qin, "quantized-input cache");
        c->in_dev = dev;
        if (p->input_keep_prob < 1.0f) {
            c->fpin = qd_unit_cache_alloc(b, in_bytes, &dev); QD_UNIT_OOM(c->fpin, "FP-input cache");
        }
    }
    c->fpout = qd_unit_cache_alloc(b, out_bytes, &dev); QD_UNIT_OOM(c->fpout, "FP-output cache");
    c->out_dev = dev;
    if (c->borrowed)
        return qd_cache_from(ctx, QD_EXEC_FP, c->cut_fp, u->input_value, u->node_begin, u->node_end, u->output_value,
                             ctx->ncal, c->fpout);
    QD_TRY(qd_cache_value(ctx, p->upstream_mode, u->node_begin, u->input_value, ctx->ncal, c->qin));
    if (c->fpin) QD_TRY(qd_cache_value(ctx, QD_EXEC_FP, u->node_begin, u->input_value, ctx->ncal, c->fpin));
    return qd_cache_value(ctx, QD_EXEC_FP, u->node_end, u->output_value, ctx->ncal, c->fpout);
}

void qd_unit_cache_drop_unit(qd_unit_cache *c, qd_backend *b) {
    if (!c->borrowed) {
        qd_unit_cache_release(b, c->qin);
        qd_unit_cache_release(b, c->fpin);
    }
    qd_unit_cache_release(b, c->fpout);
    c->qin = c->fpin = c->fpout = NULL;
    c->borrowed = 0;
}

void qd_unit_cache_advance(qd_unit_cache *c, qd_recon_ctx *ctx, const qd_unit_spec *u, const qd_unit_spec *next,
                           qd_exec_mode upstream) {
    if (!c->cut_q) return;
    qd_backend *b = ctx->b;
    size_t bytes = value_bytes(ctx, next->input_value);
    int dev = 0;
    float *nq = qd_unit_cache_alloc(b, bytes, &dev);
    float *nf = c->fp_only ? nq : qd_unit_cache_alloc(b, bytes, &dev);
    qd_status st = nq && nf ? QD_OK : QD_ERR_DEVICE_OOM;
    if (st == QD_OK)
        st = qd_cache_from(ctx, c->fp_only ? QD_EXEC_FP : upstream, c->cut_q, c->cut_value, u->node_begin,
                           next->node_begin, next->input_value, ctx->ncal, nq);
    if (st == QD_OK && !c->fp_only)
        st = qd_cache_from(ctx, QD_EXEC_FP, c->cut_fp, c->cut_value, u->node_begin, next->node_begin,
                           next->input_value, ctx->ncal, nf);
    if (st == QD_OK) {
        drop_cut(c, b);
        c->cut_q = nq;
        c->cut_fp = nf;
        c->cut_value = next->input_value;
        return;
    }
    /* not a simple chain here (or no memory): the following units recompute from the images */
    qd_error_clear();
    if (nf != nq) qd_unit_cache_release(b, nf);
    qd_unit_cache_release(b, nq);
    drop_cut(c, b);
    c->incremental = 0;
}

void qd_unit_cache_free(qd_unit_cache *c, qd_backend *b) {
    qd_unit_cache_drop_unit(c, b);
    drop_cut(c, b);
}
