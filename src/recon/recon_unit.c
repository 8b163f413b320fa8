/* src/recon/recon_unit.c: reconstruction of one unit (§8.3), written once against
 * qd_backend_ops so the CPU reference and the CUDA backend run the same schedule.
 * What the loop trains comes from explicit per-unit parameters (qd_unit_params): the same loop
 * runs BRECQ's activation stage (§6.3, §9; !p->train_weights): weights fixed at their
 * hard-rounded values (no AdaRound step, no weight gradient), scales only, L_p loss. The unit's
 * input and target caches come from the stage's qd_unit_cache (recon/unit_cache.h).
 *
 * One iteration (all on the backend; the host reads the summed loss at each loss-curve point,
 * at least every 1% of the iterations, and at each log_every window):
 *   c += 1; idx = draw(seed, unit, c); x_in = mix(quant_in[idx], fp_in[idx]) (§7.1);
 *   target = fp_out[idx]; w_soft = AdaRound(W, V) per layer (§4);
 *   forward the unit's nodes, fake-quantizing (with drop, §7.2) every activation quantizer the
 *   unit owns; L = sum_c (y - t)^2 / (N*HW) (§5); backward in reverse order;
 *   Adam on V with the rounding regulariser (after warm-up) (§4); Adam on the scales (§6.3).
 * Finish: hard-round the weights into wq->qweight, store learned scales (§3.4).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/qmath.h"
#include "qdrop/interrupt.h"
#include "qdrop/log.h"
#include "qdrop/qdrop.h"
#include "recon/ckpt.h"
#include "recon/recon.h"
#include "recon/unit_cache.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static qd_shape value_shape(const qd_value *v, int batch) {
    qd_shape s;
    memset(&s, 0, sizeof s);
    s.ndim = v->ndim;
    for (int d = 0; d < v->ndim; d++) s.dims[d] = v->dims[d];
    if (s.ndim > 0) s.dims[0] = batch;
    return s;
}

typedef struct layer_state {
    int wq;             /* graph weight quantizer */
    int node;
    qd_adaround_desc d;
    float *W, *V, *m, *v, *wsoft, *dW, *s, *z;  /* backend */
} layer_state;

typedef struct val_state {
    int value;
    int64_t sample_numel;
    float *pre;         /* node output before the quantizer (== val when none) */
    float *val;         /* value as consumed downstream */
    float *gpre, *gval; /* gradients */
    uint8_t *region;
    int aq;             /* in-unit quantizer slot, -1 none */
} val_state;

typedef struct unit_rt {
    qd_recon_ctx *ctx;
    const qd_unit_spec *u;
    const qd_unit_params *p;
    int B;
    int nlayers, nvals, nq;
    layer_state *layers;
    val_state *vals;
    int *q_act;         /* slot -> graph act quantizer */
    qd_fq_desc *q_desc;
    float *scales, *dscales, *sm, *sv; /* backend [nq] */
    float *qin, *fpin, *fpout;         /* caches [ncal * numel], from `cache` */
    qd_unit_cache *cache;              /* the stage's caches, or own_cache */
    qd_unit_cache own_cache;
    float *xin, *target;
    int32_t *idx, *iter;
    float *loss, *reg;
    float **consts;     /* per value id: backend copy of a constant (or NULL) */
    qd_sched_desc sched;
    float *side[QD_MAX_SIDE_INPUTS];   /* this batch's side inputs (recon.h) */
    float *lw, *yw, *tw, *dyw;         /* loss weights of the batch, weighted output/target, d yw */
} unit_rt;

static int side_slot(const qd_recon_ctx *ctx, int v) {
    for (int k = 0; k < ctx->nside; k++) if (ctx->side_value[k] == v) return k;
    return -1;
}

/* The elementwise product x * w (w: loss weights broadcast over the last dimension) as a Mul
 * node on the backend: y = x * w forward, dx += dy * w backward. */
static void lw_shapes(const qd_value *ov, int B, qd_shape *xs, qd_shape *ws) {
    memset(xs, 0, sizeof *xs);
    xs->ndim = ov->ndim;
    for (int d = 0; d < ov->ndim; d++) xs->dims[d] = ov->dims[d];
    xs->dims[0] = B;
    *ws = *xs;
    ws->dims[ws->ndim - 1] = 1;
}
static qd_status lw_mul(qd_backend *b, const qd_value *ov, int B, const float *x, const float *w, float *y,
                        const float *dy, float *dx) {
    int ins_id[2] = {0, 1}, out_id = 2;
    qd_node n;
    memset(&n, 0, sizeof n);
    n.name = (char *)"loss weights";
    n.op = QD_OP_MUL;
    n.ninputs = 2; n.noutputs = 1;
    n.inputs = ins_id; n.outputs = &out_id;
    n.unit = -1; n.wq = -1;
    qd_shape is[2], os;
    lw_shapes(ov, B, &is[0], &is[1]);
    os = is[0];
    const float *in[2] = {x, w};
    if (!dy) return b->ops->node_forward(b, &n, is, in, &os, y);
    float *din[2] = {dx, NULL};
    return b->ops->node_backward(b, &n, is, in, &os, y, dy, din);
}

static void *balloc(qd_backend *b, size_t bytes) { return b->ops->alloc(b, bytes ? bytes : 4); }

static int find_val(unit_rt *r, int v) {
    for (int i = 0; i < r->nvals; i++) if (r->vals[i].value == v) return i;
    return -1;
}

static void rt_free(unit_rt *r) {
    if (!r) return;
    qd_backend *b = r->ctx->b;
    for (int i = 0; i < r->nlayers; i++) {
        layer_state *L = &r->layers[i];
        b->ops->free(b, L->W); b->ops->free(b, L->V); b->ops->free(b, L->m); b->ops->free(b, L->v);
        b->ops->free(b, L->wsoft); b->ops->free(b, L->dW); b->ops->free(b, L->s); b->ops->free(b, L->z);
    }
    for (int i = 0; i < r->nvals; i++) {
        val_state *V = &r->vals[i];
        if (V->pre != V->val) b->ops->free(b, V->pre);
        b->ops->free(b, V->val);
        if (V->gpre != V->gval) b->ops->free(b, V->gpre);
        b->ops->free(b, V->gval);
        b->ops->free(b, V->region);
    }
    if (r->consts) {
        for (int v = 0; v < r->ctx->g->nvalues; v++) if (r->consts[v]) b->ops->free(b, r->consts[v]);
        free(r->consts);
    }
    b->ops->free(b, r->scales); b->ops->free(b, r->dscales); b->ops->free(b, r->sm); b->ops->free(b, r->sv);
    if (r->cache) qd_unit_cache_drop_unit(r->cache, b);
    b->ops->free(b, r->xin); b->ops->free(b, r->target); b->ops->free(b, r->idx); b->ops->free(b, r->iter);
    b->ops->free(b, r->loss); b->ops->free(b, r->reg);
    for (int k = 0; k < QD_MAX_SIDE_INPUTS; k++) if (r->side[k]) b->ops->free(b, r->side[k]);
    if (r->lw) b->ops->free(b, r->lw);
    if (r->yw) b->ops->free(b, r->yw);
    if (r->tw) b->ops->free(b, r->tw);
    if (r->dyw) b->ops->free(b, r->dyw);
    free(r->layers); free(r->vals); free(r->q_act); free(r->q_desc);
}

static qd_status rt_setup(unit_rt *r) {
    qd_recon_ctx *ctx = r->ctx;
    const qd_unit_spec *u = r->u;
    qd_graph *g = ctx->g;
    qd_backend *b = ctx->b;
    const qd_config *cfg = ctx->cfg;
    const qd_unit_params *p = r->p;
    int B = r->B;
    int n_nodes = u->node_end - u->node_begin;
    r->layers = calloc((size_t)n_nodes + 1, sizeof(layer_state));
    r->vals = calloc((size_t)n_nodes * 4 + 1, sizeof(val_state));
    r->q_act = calloc((size_t)n_nodes + 1, sizeof(int));
    r->q_desc = calloc((size_t)n_nodes + 1, sizeof(qd_fq_desc));
    r->consts = calloc((size_t)g->nvalues, sizeof(float *));
    if (!r->layers || !r->vals || !r->q_act || !r->q_desc || !r->consts)
        return qd_errorf(QD_ERR_INTERNAL, "out of host memory");

    /* values produced inside the unit, and the quantizers this unit learns */
    for (int ni = u->node_begin; ni < u->node_end; ni++) {
        const qd_node *n = &g->nodes[ni];
        for (int o = 0; o < n->noutputs; o++) {
            int v = n->outputs[o];
            val_state *V = &r->vals[r->nvals++];
            V->value = v;
            V->sample_numel = qd_value_sample_numel(&g->values[v]);
            V->aq = -1;
            size_t bytes = sizeof(float) * (size_t)B * (size_t)V->sample_numel;
            V->val = balloc(b, bytes); QD_UNIT_OOM(V->val, "activation buffer");
            V->gval = balloc(b, bytes); QD_UNIT_OOM(V->gval, "gradient buffer");
            V->pre = V->val; V->gpre = V->gval;
            int aq = g->values[v].act_quant;
            if (aq >= 0 && g->act[aq].unit == u->index && p->act_quant) {
                V->aq = r->nq;
                r->q_act[r->nq] = aq;
                const qd_act_quant *A = &g->act[aq];
                qd_fq_desc *D = &r->q_desc[r->nq];
                D->zero_point = A->zero_point;
                D->qmin = (float)A->qmin; D->qmax = (float)A->qmax;
                D->keep_prob = p->keep_prob;
                D->grad_scale = p->lsq_grad_scale;
                D->guard_scale = p->train_scales;
                D->key.seed_lo = (uint32_t)cfg->seed; D->key.seed_hi = (uint32_t)(cfg->seed >> 32);
                D->key.unit = (uint32_t)u->index; D->key.tensor = (uint32_t)r->nq;
                r->nq++;
                V->pre = balloc(b, bytes); QD_UNIT_OOM(V->pre, "activation buffer");
                V->gpre = balloc(b, bytes); QD_UNIT_OOM(V->gpre, "gradient buffer");
                V->region = balloc(b, (size_t)B * (size_t)V->sample_numel); QD_UNIT_OOM(V->region, "region codes");
            }
        }
        /* constant inputs (biases, weights) */
        for (int i = 0; i < n->ninputs; i++) {
            int v = n->inputs[i];
            if (v < 0 || !g->values[v].is_const || r->consts[v]) continue;
            const qd_value *cv = &g->values[v];
            if (!cv->fdata) continue;
            size_t bytes = sizeof(float) * (size_t)qd_value_numel(cv);
            r->consts[v] = balloc(b, bytes); QD_UNIT_OOM(r->consts[v], "constant");
            QD_TRY(b->ops->upload(b, r->consts[v], cv->fdata, bytes));
        }
        /* inputs must come from inside the unit, the unit input or constants */
        for (int i = 0; i < n->ninputs; i++) {
            int v = n->inputs[i];
            if (v < 0 || g->values[v].is_const || v == u->input_value) continue;
            int sk = side_slot(ctx, v);
            if (sk >= 0) {
                /* a side input: this batch's rows, gathered each iteration */
                if (!r->side[sk]) {
                    r->side[sk] = balloc(b, sizeof(float) * (size_t)B * (size_t)qd_value_sample_numel(&g->values[v]));
                    QD_UNIT_OOM(r->side[sk], "side input buffer");
                }
                continue;
            }
            int produced_inside = 0;
            for (int k = 0; k < r->nvals; k++) if (r->vals[k].value == v) produced_inside = 1;
            if (!produced_inside)
                return qd_errorf(QD_ERR_UNSUPPORTED, "unit '%s': node %s reads value '%s' from outside the unit",
                                 u->name, n->name, g->values[v].name);
        }
        if (n->wq >= 0) {
            const qd_weight_quant *q = &g->wq[n->wq];
            if (q->ch_axis != 0)
                return qd_errorf(QD_ERR_UNSUPPORTED, "unit '%s': node %s: AdaRound needs the output channel on axis 0 of the weight",
                                 u->name, n->name);
            layer_state *L = &r->layers[r->nlayers++];
            L->wq = n->wq; L->node = ni;
            L->d.numel = (int64_t)q->channels * q->per_channel;
            L->d.per_channel = q->per_channel;
            L->d.channels = q->channels;
            L->d.qmin = 0.0f; L->d.qmax = (float)qd_qmax_for_bits(q->bits);
            size_t wb = sizeof(float) * (size_t)L->d.numel, cb = sizeof(float) * (size_t)q->channels;
            if (!p->train_weights) {
                /* BRECQ stage 2: the finished hard-rounded weights, used as they are */
                L->wsoft = balloc(b, wb); QD_UNIT_OOM(L->wsoft, "weight buffer");
                QD_TRY(b->ops->upload(b, L->wsoft, q->qweight, wb));
                continue;
            }
            L->W = balloc(b, wb); L->V = balloc(b, wb); L->m = balloc(b, wb); L->v = balloc(b, wb);
            L->wsoft = balloc(b, wb); L->dW = balloc(b, wb); L->s = balloc(b, cb); L->z = balloc(b, cb);
            QD_UNIT_OOM(L->W && L->V && L->m && L->v && L->wsoft && L->dW && L->s && L->z, "AdaRound state");
            QD_TRY(b->ops->upload(b, L->W, g->values[q->weight_value].fdata, wb));
            QD_TRY(b->ops->upload(b, L->s, q->scale, cb));
            QD_TRY(b->ops->upload(b, L->z, q->zero_point, cb));
            QD_TRY(b->ops->zero(b, L->m, wb));
            QD_TRY(b->ops->zero(b, L->v, wb));
            QD_TRY(b->ops->adaround_init(b, &L->d, L->W, L->s, L->z, L->V));
        }
    }
    if (r->nlayers == 0) return qd_errorf(QD_ERR_INTERNAL, "unit '%s' has no layer to reconstruct", u->name);
    size_t qb = sizeof(float) * (size_t)(r->nq + 1);
    r->scales = balloc(b, qb); r->dscales = balloc(b, qb); r->sm = balloc(b, qb); r->sv = balloc(b, qb);
    QD_UNIT_OOM(r->scales && r->dscales && r->sm && r->sv, "scale state");
    {
        float hs[256];
        if (r->nq > 256) return qd_errorf(QD_ERR_UNSUPPORTED, "unit '%s' has more than 256 activation quantizers", u->name);
        for (int j = 0; j < r->nq; j++) hs[j] = g->act[r->q_act[j]].scale;
        if (r->nq) QD_TRY(b->ops->upload(b, r->scales, hs, sizeof(float) * (size_t)r->nq));
        QD_TRY(b->ops->zero(b, r->dscales, qb));
        QD_TRY(b->ops->zero(b, r->sm, qb));
        QD_TRY(b->ops->zero(b, r->sv, qb));
    }
    /* caches for the whole calibration set (§8.2) */
    int64_t in_numel = qd_value_sample_numel(&g->values[u->input_value]);
    int64_t out_numel = qd_value_sample_numel(&g->values[u->output_value]);
    r->xin = balloc(b, sizeof(float) * (size_t)B * (size_t)in_numel);
    r->target = balloc(b, sizeof(float) * (size_t)B * (size_t)out_numel);
    r->idx = balloc(b, sizeof(int32_t) * (size_t)B);
    r->iter = balloc(b, sizeof(int32_t));
    r->loss = balloc(b, sizeof(float));
    r->reg = balloc(b, sizeof(float));
    QD_UNIT_OOM(r->xin && r->target && r->idx && r->iter && r->loss && r->reg, "iteration buffers");
    if (ctx->loss_w_dev) {
        if (ctx->loss_w_numel * g->values[u->output_value].dims[g->values[u->output_value].ndim - 1] != out_numel)
            return qd_errorf(QD_ERR_INTERNAL, "unit '%s': %lld loss weights per sample for an output of %lld elements", u->name,
                             (long long)ctx->loss_w_numel, (long long)out_numel);
        size_t ob = sizeof(float) * (size_t)B * (size_t)out_numel;
        r->lw = balloc(b, sizeof(float) * (size_t)B * (size_t)ctx->loss_w_numel);
        r->yw = balloc(b, ob); r->tw = balloc(b, ob); r->dyw = balloc(b, ob);
        QD_UNIT_OOM(r->lw && r->yw && r->tw && r->dyw, "loss weight buffers");
    }
    QD_TRY(b->ops->zero(b, r->iter, sizeof(int32_t)));
    QD_TRY(b->ops->zero(b, r->loss, sizeof(float)));
    QD_TRY(b->ops->zero(b, r->reg, sizeof(float)));

    if (ctx->cache) r->cache = ctx->cache;
    else {
        qd_unit_cache_init(&r->own_cache, 0, 0, 0);
        r->cache = &r->own_cache;
    }
    QD_TRY(qd_unit_cache_fill(r->cache, ctx, u, p));
    r->qin = r->cache->qin;
    r->fpin = r->cache->fpin;
    r->fpout = r->cache->fpout;

    r->sched.total_iters = p->iters;
    r->sched.warm_up = p->warm_up;
    r->sched.b_start = p->b_start;
    r->sched.b_end = p->b_end;
    r->sched.lambda = p->round_weight;
    r->sched.lr_v = p->lr_v;
    r->sched.lr_scale = p->lr_scale;
    return QD_OK;
}

/* Input pointer of node input i during training. */
static const float *in_ptr(unit_rt *r, const qd_node *n, int i) {
    int v = n->inputs[i];
    if (v < 0) return NULL;
    if (v == r->u->input_value) return r->xin;
    int sk = side_slot(r->ctx, v);
    if (sk >= 0) return r->side[sk];
    if (n->wq >= 0 && v == r->ctx->g->wq[n->wq].weight_value) {
        for (int l = 0; l < r->nlayers; l++) if (r->layers[l].node == (int)(n - r->ctx->g->nodes)) return r->layers[l].wsoft;
    }
    if (r->consts[v]) return r->consts[v];
    int k = find_val(r, v);
    return k >= 0 ? r->vals[k].val : NULL;
}

static qd_status one_iteration(unit_rt *r) {
    qd_recon_ctx *ctx = r->ctx;
    qd_graph *g = ctx->g;
    qd_backend *b = ctx->b;
    const qd_backend_ops *ops = b->ops;
    const qd_unit_spec *u = r->u;
    const qd_config *cfg = ctx->cfg;
    const qd_unit_params *p = r->p;
    int B = r->B;
    qd_rng_key key = {(uint32_t)cfg->seed, (uint32_t)(cfg->seed >> 32), (uint32_t)u->index, QD_RNG_T_BATCH};
    int64_t in_numel = qd_value_sample_numel(&g->values[u->input_value]);
    int64_t out_numel = qd_value_sample_numel(&g->values[u->output_value]);

    QD_TRY(ops->iter_advance(b, r->iter));
    QD_TRY(ops->draw_batch(b, key, r->iter, ctx->ncal, B, r->idx));
    key.tensor = QD_RNG_T_INPUT;
    QD_TRY(ops->gather_mix(b, r->qin, r->fpin, r->idx, B, in_numel, key, p->input_keep_prob, r->iter, r->xin));
    QD_TRY(ops->gather_mix(b, r->fpout, NULL, r->idx, B, out_numel, key, 1.0f, r->iter, r->target));
    for (int k = 0; k < ctx->nside; k++)
        if (r->side[k])
            QD_TRY(ops->gather_mix(b, ctx->side_dev[k], NULL, r->idx, B, qd_value_sample_numel(&g->values[ctx->side_value[k]]),
                                   key, 1.0f, r->iter, r->side[k]));
    if (r->lw) QD_TRY(ops->gather_mix(b, ctx->loss_w_dev, NULL, r->idx, B, ctx->loss_w_numel, key, 1.0f, r->iter, r->lw));
    for (int l = 0; l < r->nlayers && p->train_weights; l++) {
        layer_state *L = &r->layers[l];
        QD_TRY(ops->adaround_weight(b, &L->d, L->W, L->V, L->s, L->z, 0, L->wsoft));
    }
    /* forward */
    for (int ni = u->node_begin; ni < u->node_end; ni++) {
        const qd_node *n = &g->nodes[ni];
        qd_shape ish[16];
        const float *ins[16];
        if (n->ninputs > 16) return qd_errorf(QD_ERR_UNSUPPORTED, "node %s has more than 16 inputs", n->name);
        for (int i = 0; i < n->ninputs; i++) {
            int v = n->inputs[i];
            ins[i] = in_ptr(r, n, i);
            if (v >= 0) ish[i] = value_shape(&g->values[v], g->values[v].is_const ? (int)g->values[v].dims[0] : B);
            else memset(&ish[i], 0, sizeof ish[i]);
        }
        val_state *V = &r->vals[find_val(r, n->outputs[0])];
        qd_shape osh = value_shape(&g->values[V->value], B);
        QD_TRY(ops->node_forward(b, n, ish, ins, &osh, V->pre));
        if (V->aq >= 0)
            QD_TRY(ops->fq_forward(b, &r->q_desc[V->aq], r->scales + V->aq, r->iter, (int64_t)B * V->sample_numel,
                                   V->pre, V->val, V->region));
    }
    /* loss (§5): channel dim is dims[1]; spatial = the rest */
    const qd_value *ov = &g->values[u->output_value];
    int64_t C = ov->ndim > 1 ? ov->dims[1] : 1;
    int64_t HW = out_numel / (C > 0 ? C : 1);
    for (int i = 0; i < r->nvals; i++) {
        val_state *V = &r->vals[i];
        size_t bytes = sizeof(float) * (size_t)B * (size_t)V->sample_numel;
        QD_TRY(ops->zero(b, V->gval, bytes));
        if (V->gpre != V->gval) QD_TRY(ops->zero(b, V->gpre, bytes));
    }
    val_state *OV = &r->vals[find_val(r, u->output_value)];
    const float *ly = OV->val, *lt = r->target;
    float *ldy = OV->gval;
    if (r->lw) {
        /* weighted positions (recon.h): the loss sees w*y and w*t, its gradient flows back through w */
        QD_TRY(lw_mul(b, ov, B, OV->val, r->lw, r->yw, NULL, NULL));
        QD_TRY(lw_mul(b, ov, B, r->target, r->lw, r->tw, NULL, NULL));
        QD_TRY(ops->zero(b, r->dyw, sizeof(float) * (size_t)B * (size_t)out_numel));
        ly = r->yw; lt = r->tw; ldy = r->dyw;
    }
    if (p->loss_p > 0.0f && p->loss_p != 2.0f)
        QD_TRY(ops->lp_loss(b, p->loss_p, B, C, HW, ly, lt, ldy, r->loss));
    else
        QD_TRY(ops->mse_loss(b, B, C, HW, ly, lt, ldy, r->loss));
    if (r->lw) QD_TRY(lw_mul(b, ov, B, OV->val, r->lw, r->yw, r->dyw, OV->gval));
    for (int l = 0; l < r->nlayers && p->train_weights; l++)
        QD_TRY(ops->zero(b, r->layers[l].dW, sizeof(float) * (size_t)r->layers[l].d.numel));
    /* backward */
    for (int ni = u->node_end - 1; ni >= u->node_begin; ni--) {
        const qd_node *n = &g->nodes[ni];
        val_state *V = &r->vals[find_val(r, n->outputs[0])];
        if (V->aq >= 0)
            QD_TRY(ops->fq_backward(b, &r->q_desc[V->aq], r->scales + V->aq, (int64_t)B * V->sample_numel, V->pre,
                                    V->region, V->gval, V->gpre, r->dscales + V->aq));
        qd_shape ish[16];
        const float *ins[16];
        float *din[16];
        int any = 0;
        for (int i = 0; i < n->ninputs; i++) {
            int v = n->inputs[i];
            ins[i] = in_ptr(r, n, i);
            din[i] = NULL;
            if (v >= 0) ish[i] = value_shape(&g->values[v], g->values[v].is_const ? (int)g->values[v].dims[0] : B);
            else memset(&ish[i], 0, sizeof ish[i]);
            if (v < 0 || v == r->u->input_value) continue;
            if (n->wq >= 0 && v == g->wq[n->wq].weight_value) {
                /* dW is NULL with fixed weights: no weight gradient is computed */
                for (int l = 0; l < r->nlayers; l++) if (r->layers[l].node == ni) din[i] = r->layers[l].dW;
            } else if (!g->values[v].is_const) {
                int k = find_val(r, v);
                if (k >= 0) din[i] = r->vals[k].gval;
            }
            if (din[i]) any = 1;
        }
        if (!any) continue;
        qd_shape osh = value_shape(&g->values[V->value], B);
        QD_TRY(ops->node_backward(b, n, ish, ins, &osh, V->pre, V->gpre, din));
    }
    for (int l = 0; l < r->nlayers && p->train_weights; l++) {
        layer_state *L = &r->layers[l];
        QD_TRY(ops->adaround_step(b, &L->d, &r->sched, r->iter, L->W, L->s, L->z, L->dW, L->V, L->m, L->v, r->reg));
    }
    if (p->train_scales && r->nq > 0)
        QD_TRY(ops->scale_step(b, &r->sched, r->iter, r->nq, r->scales, r->dscales, r->sm, r->sv));
    else if (r->nq > 0)
        QD_TRY(ops->zero(b, r->dscales, sizeof(float) * (size_t)r->nq));
    return QD_OK;
}

/* FNV-1a 64 over 32-bit words serialised little-endian (the same digest on any host). */
static uint64_t fnv_words(const uint32_t *w, size_t n, uint64_t h) {
    for (size_t i = 0; i < n; i++) {
        unsigned char le[4] = {(unsigned char)w[i], (unsigned char)(w[i] >> 8), (unsigned char)(w[i] >> 16),
                               (unsigned char)(w[i] >> 24)};
        h = qd_fnv1a64(le, 4, h);
    }
    return h;
}

/* Folds the iteration just run (the backend counter holds its number) into rep's digests: the
 * batch indices draw_batch wrote, the unit-input keep mask redrawn by the backend's keep_mask op
 * (gather_mix keeps no mask), and each drop site's keep mask read back from the region codes
 * fq_forward wrote (keep = code != QD_FQ_DROPPED): the masks the kernels applied. Bits are
 * packed LSB first in 32-bit words, as keep_mask writes them. Runs between iterations, never
 * inside a capture; costs a few small synchronous downloads per unit. */
static qd_status digest_iteration(unit_rt *r, qd_unit_report *rep) {
    qd_recon_ctx *ctx = r->ctx;
    qd_backend *b = ctx->b;
    const qd_graph *g = ctx->g;
    int B = r->B;
    int64_t in_numel = qd_value_sample_numel(&g->values[r->u->input_value]);
    int mix = r->fpin != NULL && r->p->input_keep_prob < 1.0f && b->ops->keep_mask != NULL;
    int sites = r->p->keep_prob < 1.0f;
    int64_t max_elems = mix ? (int64_t)B * in_numel : 0;
    for (int i = 0; i < r->nvals; i++)
        if (sites && r->vals[i].aq >= 0 && (int64_t)B * r->vals[i].sample_numel > max_elems)
            max_elems = (int64_t)B * r->vals[i].sample_numel;
    size_t max_words = (size_t)((max_elems + 31) / 32);
    int32_t *hidx = malloc(sizeof(int32_t) * (size_t)B);
    /* host words: the packed masks, and the batch indices too */
    uint32_t *hwords = malloc(sizeof(uint32_t) * ((max_words > (size_t)B ? max_words : (size_t)B) + 1));
    uint8_t *hreg = sites ? malloc((size_t)max_elems + 1) : NULL;
    uint32_t *dbits = mix ? b->ops->alloc(b, sizeof(uint32_t) * (max_words + 1)) : NULL;
    qd_status st = QD_OK;
    if (!hidx || !hwords || (sites && !hreg) || (mix && !dbits)) {
        st = qd_errorf(QD_ERR_INTERNAL, "unit '%s': out of memory for the reproducibility digest", r->u->name);
        goto out;
    }
    if (rep->digest_iters == 0) {
        rep->has_input_mix = mix;
        rep->mask_sites = 0;
        for (int i = 0; sites && i < r->nvals; i++) rep->mask_sites += r->vals[i].aq >= 0;
    }
    if ((st = b->ops->download(b, hidx, r->idx, sizeof(int32_t) * (size_t)B)) != QD_OK) goto out;
    for (int k = 0; k < B; k++) hwords[k] = (uint32_t)hidx[k];
    rep->digest_batch = fnv_words(hwords, (size_t)B, rep->digest_batch);
    if (mix) {
        qd_rng_key key = {(uint32_t)ctx->cfg->seed, (uint32_t)(ctx->cfg->seed >> 32), (uint32_t)r->u->index,
                          QD_RNG_T_INPUT};
        int64_t n = (int64_t)B * in_numel;
        size_t nw = (size_t)((n + 31) / 32);
        if ((st = b->ops->keep_mask(b, key, r->iter, n, r->p->input_keep_prob, dbits)) != QD_OK) goto out;
        if ((st = b->ops->download(b, hwords, dbits, sizeof(uint32_t) * nw)) != QD_OK) goto out;
        rep->digest_input_mix = fnv_words(hwords, nw, rep->digest_input_mix);
        rep->mask_bits += n;
    }
    for (int i = 0; sites && i < r->nvals; i++) {
        const val_state *V = &r->vals[i];
        if (V->aq < 0) continue;
        int64_t n = (int64_t)B * V->sample_numel;
        size_t nw = (size_t)((n + 31) / 32);
        if ((st = b->ops->download(b, hreg, V->region, (size_t)n)) != QD_OK) goto out;
        memset(hwords, 0, sizeof(uint32_t) * nw);
        for (int64_t e = 0; e < n; e++)
            if (hreg[e] != QD_FQ_DROPPED) hwords[e >> 5] |= 1u << (e & 31);
        rep->digest_act_masks = fnv_words(hwords, nw, rep->digest_act_masks);
        rep->mask_bits += n;
    }
    rep->digest_iters++;
out:
    if (dbits) b->ops->free(b, dbits);
    free(hidx); free(hwords); free(hreg);
    return st;
}

/* SQNR (dB) of the unit's quantized output (no drop, current weights in wq->qweight and scales
 * in g->act) against the FP output, on the first n cached samples. */
static qd_status unit_sqnr(unit_rt *r, int n, double *db) {
    qd_recon_ctx *ctx = r->ctx;
    qd_graph *g = ctx->g;
    qd_backend *b = ctx->b;
    const qd_unit_spec *u = r->u;
    int64_t in_numel = qd_value_sample_numel(&g->values[u->input_value]);
    int64_t out_numel = qd_value_sample_numel(&g->values[u->output_value]);
    int bs = 64;
    float *yq = b->ops->alloc(b, sizeof(float) * (size_t)bs * (size_t)out_numel);
    float *hy = malloc(sizeof(float) * (size_t)bs * (size_t)out_numel);
    float *ht = malloc(sizeof(float) * (size_t)bs * (size_t)out_numel);
    if (!yq || !hy || !ht) { b->ops->free(b, yq); free(hy); free(ht); return qd_errorf(QD_ERR_DEVICE_OOM, "unit '%s': SQNR buffers", u->name); }
    double sig = 0.0, err = 0.0;
    qd_status st = qd_exec_sync_quant(ctx->exec);
    for (int s0 = 0; st == QD_OK && s0 < n; s0 += bs) {
        int nb = n - s0 < bs ? n - s0 : bs;
        st = qd_recon_bind_side(ctx, s0);
        if (st != QD_OK) break;
        st = qd_exec_run(ctx->exec, QD_EXEC_QUANT, u->node_begin, u->node_end, u->input_value,
                         r->qin + (size_t)s0 * (size_t)in_numel, nb, u->output_value, yq);
        if (st != QD_OK) break;
        st = b->ops->download(b, hy, yq, sizeof(float) * (size_t)nb * (size_t)out_numel);
        if (st != QD_OK) break;
        st = b->ops->download(b, ht, r->fpout + (size_t)s0 * (size_t)out_numel, sizeof(float) * (size_t)nb * (size_t)out_numel);
        if (st != QD_OK) break;
        /* with loss weights, positions weigh as in the loss (padding: not at all) */
        int64_t last = g->values[u->output_value].dims[g->values[u->output_value].ndim - 1];
        for (int64_t k = 0; k < (int64_t)nb * out_numel; k++) {
            double w = ctx->loss_w_host ? (double)ctx->loss_w_host[(size_t)s0 * (size_t)ctx->loss_w_numel + (size_t)(k / last)] : 1.0;
            double d = w * ((double)hy[k] - (double)ht[k]), t = w * (double)ht[k];
            sig += t * t;
            err += d * d;
        }
    }
    b->ops->free(b, yq); free(hy); free(ht);
    *db = err > 0.0 ? 10.0 * log10(sig / err) : 999.0;
    return st;
}

static qd_status read_scalar(qd_backend *b, const float *p, float *out) { return b->ops->download(b, out, p, sizeof(float)); }

/* Copy the learned state back into the graph: hard-rounded weights and the scales. */
static qd_status rt_finish(unit_rt *r) {
    qd_recon_ctx *ctx = r->ctx;
    qd_graph *g = ctx->g;
    qd_backend *b = ctx->b;
    const qd_unit_params *p = r->p;
    for (int l = 0; l < r->nlayers && p->train_weights; l++) {
        layer_state *L = &r->layers[l];
        qd_weight_quant *q = &g->wq[L->wq];
        QD_TRY(b->ops->adaround_weight(b, &L->d, L->W, L->V, L->s, L->z, 1, L->wsoft));
        QD_TRY(b->ops->download(b, q->qweight, L->wsoft, sizeof(float) * (size_t)L->d.numel));
        q->reconstructed = 1;
    }
    if (r->nq > 0 && p->train_scales) {
        float hs[256];
        QD_TRY(b->ops->download(b, hs, r->scales, sizeof(float) * (size_t)r->nq));
        for (int j = 0; j < r->nq; j++) {
            if (!isfinite(hs[j])) return qd_errorf(QD_ERR_NUMERIC, "unit '%s': learned scale %d is not finite", r->u->name, j);
            g->act[r->q_act[j]].scale = qd_lsq_guard(hs[j]);
        }
    }
    return qd_exec_sync_quant(ctx->exec);
}

qd_status qd_recon_unit(qd_recon_ctx *ctx, const qd_unit_spec *u, const qd_unit_params *p, qd_unit_report *rep) {
    qd_backend *b = ctx->b;
    unit_rt rt;
    memset(&rt, 0, sizeof rt);
    rt.ctx = ctx; rt.u = u; rt.p = p; rt.B = p->batch_size;
    memset(rep, 0, sizeof *rep);
    snprintf(rep->name, sizeof rep->name, "%s", u->name);
    rep->iters_planned = p->iters;
    double t0 = now_s();
    qd_status st = rt_setup(&rt);
    if (st != QD_OK) { rt_free(&rt); return st; }
    rep->nlayers = rt.nlayers;
    rep->nact = rt.nq;
    st = unit_sqnr(&rt, ctx->ncal < 256 ? ctx->ncal : 256, &rep->sqnr_before_db);
    if (st != QD_OK) { rt_free(&rt); return st; }

    int every = p->log_every > 0 ? p->log_every : 500;
    /* The loss curve gets a point at least every 1% of the iterations (window means), however
     * coarse the log period: a curve needs ~100 points to show its shape. Reading the device
     * accumulator is one small synchronous copy per point. */
    int curve_every = p->iters >= 100 ? p->iters / 100 : 1;
    int ncurve_cap = p->iters / curve_every + 3;
    rep->curve = calloc((size_t)ncurve_cap, sizeof(double));
    rep->curve_iter = calloc((size_t)ncurve_cap, sizeof(int));
    if (!rep->curve || !rep->curve_iter) {
        free(rep->curve); free(rep->curve_iter);
        rep->curve = NULL; rep->curve_iter = NULL;
        rt_free(&rt);
        return qd_errorf(QD_ERR_INTERNAL, "out of host memory");
    }
    void *graph = NULL;
    int use_graph = b->ops->capture_begin != NULL && getenv("QD_NO_GRAPH") == NULL;
    double best = INFINITY;
    int windows_without_improvement = 0;
    double t_train = now_s();
    int it = 0;
    /* Device sums are read at every "tick" (a curve point, a log window or an early-stop window
     * ending) and accumulated on the host into the log window and the curve window. */
    int tick_start = 0;
    int window_start = 0;                    /* log / early-stop window: since the last such read */
    double win_loss = 0.0, win_reg = 0.0;
    int curve_start = 0;                     /* curve window: since the last curve point */
    double curve_loss = 0.0;
    while (it < p->iters) {
        /* SIGINT/SIGTERM: stop between iterations; the unit is discarded and the run keeps the
         * checkpoint of the units before it (no message here: the run reports where it stopped) */
        if (qd_interrupted()) { st = QD_ERR_INTERRUPTED; break; }
        /* The first iteration runs eagerly (cuDNN algorithm choice and lazy module loading
         * must happen outside stream capture); iteration 2 onwards replays one captured
         * iteration, which reads the schedule from the device-side counter. */
        if (use_graph && !graph && it >= 1) {
            st = b->ops->capture_begin(b);
            if (st == QD_OK) st = one_iteration(&rt);
            if (st == QD_OK) st = b->ops->capture_end(b, &graph);
            else { void *tmp = NULL; (void)b->ops->capture_end(b, &tmp); if (tmp) b->ops->graph_destroy(b, tmp); }
            if (st != QD_OK) break;
        }
        st = graph ? b->ops->graph_launch(b, graph) : one_iteration(&rt);
        if (st != QD_OK) break;
        it++;
        if (it <= QD_RNG_DIGEST_ITERS && (st = digest_iteration(&rt, rep)) != QD_OK) break;
        if (it == 1) {
            /* the loss before any update: the reconstruction error the unit starts from */
            float l0 = 0.0f;
            st = read_scalar(b, rt.loss, &l0);
            if (st != QD_OK) break;
            rep->loss_start = l0;
            if (it < p->iters) {
                if (isfinite(l0)) { rep->curve[0] = l0; rep->curve_iter[0] = 1; rep->ncurve = 1; }
                if ((st = b->ops->zero(b, rt.loss, sizeof(float))) != QD_OK) break;
                if ((st = b->ops->zero(b, rt.reg, sizeof(float))) != QD_OK) break;
                tick_start = window_start = curve_start = 1;
                continue;
            }
        }
        int curve_end = (it % curve_every == 0) || it == p->iters;
        int window_end = (it % every == 0) || it == p->iters;
        int es_window = p->early_stop && p->early_stop_window > 0 && it % p->early_stop_window == 0;
        if (!curve_end && !window_end && !es_window) continue;
        float loss_sum = 0.0f, reg_sum = 0.0f;
        {
            /* Fault injection for tests/nan_test.sh: QD_DEBUG_POISON_ITER=N turns the loss of the
             * window containing iteration N into NaN on the first attempt of every unit. */
            const char *poison = getenv("QD_DEBUG_POISON_ITER");
            if (poison && p->attempt == 0 && it >= atoi(poison) && tick_start < atoi(poison)) {
                float nanv = NAN;
                if ((st = b->ops->upload(b, rt.loss, &nanv, sizeof nanv)) != QD_OK) break;
            }
        }
        st = read_scalar(b, rt.loss, &loss_sum);
        if (st == QD_OK) st = read_scalar(b, rt.reg, &reg_sum);
        if (st == QD_OK) st = b->ops->zero(b, rt.loss, sizeof(float));
        if (st == QD_OK) st = b->ops->zero(b, rt.reg, sizeof(float));
        if (st != QD_OK) break;
        tick_start = it;
        if (!isfinite(loss_sum) || !isfinite(reg_sum)) {
            st = qd_errorf(QD_ERR_NUMERIC,
                           "unit '%s': reconstruction loss became %s at iteration %d; the unit was restored to its "
                           "state before training (try a lower quant.recon.scale_lr or set quant.recon.nan_retries)",
                           u->name, isnan(loss_sum) || isnan(reg_sum) ? "NaN" : "Inf", it);
            break;
        }
        win_loss += loss_sum; win_reg += reg_sum;
        curve_loss += loss_sum;
        if (curve_end) {
            int n = it - curve_start > 0 ? it - curve_start : 1;
            if (rep->ncurve < ncurve_cap) {
                rep->curve[rep->ncurve] = curve_loss / n;
                rep->curve_iter[rep->ncurve] = it;
                rep->ncurve++;
            }
            curve_loss = 0.0;
            curve_start = it;
        }
        if (!window_end && !es_window) continue;
        int nwin = it - window_start > 0 ? it - window_start : 1;
        window_start = it;
        double loss = win_loss / nwin, reg = win_reg / nwin;
        win_loss = win_reg = 0.0;
        rep->loss_end = loss;
        rep->reg_end = reg;
        double el = now_s() - t_train;
        double ips = it / (el > 0 ? el : 1e-9);
        qd_progress_update(ctx->progress_unit, ctx->progress_nunits, u->name, it, p->iters, loss, ips);
        char fields[256];
        snprintf(fields, sizeof fields, "\"unit\":%d,\"iter\":%d,\"rec_loss\":%.6g,\"round_loss\":%.6g,\"it_per_s\":%.3f",
                 u->index, it, loss, reg, ips);
        qd_log_event_json(QD_LOG_DEBUG, "recon_progress", fields, "unit %d/%d %s: iter %d/%d rec %.5g round %.5g (%.1f it/s)",
                          ctx->progress_unit + 1, ctx->progress_nunits, u->name, it, p->iters, loss, reg, ips);
        if (es_window && it >= qd_warmup_iters(p->iters, p->warm_up)) {
            /* Early stop compares the total loss (rec + round) windows after warm-up: the
             * regulariser must have had time to push h(V) to 0/1 before stopping. */
            double total = loss + reg;
            if (total < best * (1.0 - p->early_stop_min_delta)) { best = total; windows_without_improvement = 0; }
            else if (++windows_without_improvement >= 2) { rep->early_stopped = 1; break; }
        }
    }
    if (graph) b->ops->graph_destroy(b, graph);
    rep->iters_run = it;
    if (st == QD_OK) st = b->ops->sync(b);
    if (st == QD_OK) st = rt_finish(&rt);
    if (st == QD_OK) st = unit_sqnr(&rt, ctx->ncal < 256 ? ctx->ncal : 256, &rep->sqnr_after_db);
    double t1 = now_s();
    rep->seconds = t1 - t0;
    rep->it_per_s = it / ((t1 - t_train) > 0 ? (t1 - t_train) : 1e-9);
    qd_progress_done();
    rt_free(&rt);
    if (st != QD_OK) {
        /* a failed unit has no report: the caller retries or stops without it */
        free(rep->curve); free(rep->curve_iter);
        rep->curve = NULL; rep->curve_iter = NULL; rep->ncurve = 0;
    }
    return st;
}

/* Test hook (tests/unit/test_golden_iter.c): set up unit u, run `iters` iterations and report
 * each iteration's reconstruction and rounding loss, then V of every layer (V_out[l] sized by
 * the caller) and the activation scales. Nothing is written back into the graph. */
qd_status qd_recon_unit_trace(qd_recon_ctx *ctx, const qd_unit_spec *u, const qd_unit_params *p, int iters,
                              float *rec_loss, float *reg_loss, float **V_out, float *scales_out) {
    unit_rt rt;
    memset(&rt, 0, sizeof rt);
    rt.ctx = ctx; rt.u = u; rt.p = p; rt.B = p->batch_size;
    qd_backend *b = ctx->b;
    qd_status st = rt_setup(&rt);
    for (int i = 0; st == QD_OK && i < iters; i++) {
        st = one_iteration(&rt);
        if (st == QD_OK) st = read_scalar(b, rt.loss, &rec_loss[i]);
        if (st == QD_OK) st = read_scalar(b, rt.reg, &reg_loss[i]);
        if (st == QD_OK) st = b->ops->zero(b, rt.loss, sizeof(float));
        if (st == QD_OK) st = b->ops->zero(b, rt.reg, sizeof(float));
    }
    for (int l = 0; st == QD_OK && l < rt.nlayers; l++)
        st = b->ops->download(b, V_out[l], rt.layers[l].V, sizeof(float) * (size_t)rt.layers[l].d.numel);
    if (st == QD_OK && rt.nq > 0) st = b->ops->download(b, scales_out, rt.scales, sizeof(float) * (size_t)rt.nq);
    rt_free(&rt);
    return st;
}

/* Cost-estimate hook (--dry-run): set up unit u on ctx's calibration images, run one warm-up
 * iteration, then time `iters` iterations; *iter_s is the mean seconds per iteration. */
qd_status qd_recon_unit_time(qd_recon_ctx *ctx, const qd_unit_spec *u, const qd_unit_params *p, int iters,
                             double *iter_s) {
    unit_rt rt;
    memset(&rt, 0, sizeof rt);
    rt.ctx = ctx; rt.u = u; rt.p = p; rt.B = p->batch_size;
    qd_backend *b = ctx->b;
    qd_status st = rt_setup(&rt);
    if (st == QD_OK) st = one_iteration(&rt);
    if (st == QD_OK) st = b->ops->sync(b);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; st == QD_OK && i < iters; i++) st = one_iteration(&rt);
    if (st == QD_OK) st = b->ops->sync(b);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *iter_s = ((double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec)) / (iters > 0 ? iters : 1);
    rt_free(&rt);
    return st;
}
