/* tests/cuda/unit_iter.h: one QDrop reconstruction iteration of a small conv unit (a chain of
 * conv [-> Relu/ReLU6] [-> fake-quant] layers, an optional residual add with an optional 1x1
 * projection, optional post-add activation and output quantizer) written purely against
 * qd_backend_ops, so the same code runs on the CPU and the CUDA backend. Used by the twin test
 * (tests/cuda/test_cuda_unit.c) and the GPU benchmark (bench/bench_gpu.c). Header-only.
 *
 * One iteration (§8.3): iter_advance, draw_batch, gather+mix of the unit input (§7.1), gather of
 * the FP target, zero gradients, soft AdaRound weights (§4), forward with QDrop fake-quant
 * (§7.2), mse_loss (§5), backward, adaround_step per layer, scale_step (§6.3). Everything
 * iteration-dependent is read from the backend counter, so it can be captured as a CUDA Graph.
 */
#ifndef QD_UNIT_ITER_H
#define QD_UNIT_ITER_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qmath.h"
#include "qdrop/backend.h"

#define UI_MAXL 6

enum { UI_ACT_NONE = 0, UI_ACT_RELU = 1, UI_ACT_RELU6 = 2 };

typedef struct ui_layer {
    int cin, cout, k, stride, pad, group;
    int act; /* UI_ACT_* */
    int fq;  /* activation quantizer after the activation */
} ui_layer;

typedef struct ui_spec {
    const char *name;
    int batch, cin, h, w;
    int nlayers;
    ui_layer layers[UI_MAXL];
    int residual;     /* add the unit input (or its projection) after the chain */
    int has_short;    /* 1x1 projection on the residual path */
    ui_layer shortcut;
    int post_act;     /* activation after the add */
    int out_fq;       /* output quantizer */
    int ncal;         /* calibration samples in the caches */
    int w_bits, a_bits;
    float keep_prob;  /* QDrop p (probability of keeping quantization) */
    int count;        /* how many units of this shape a network has (projections) */
} ui_spec;

/* Per conv layer state. */
typedef struct ui_conv {
    qd_node node;
    qd_shape is[3], os;
    qd_adaround_desc ad;
    float *W, *V, *m, *v, *s, *z, *Wq, *dW; /* backend memory */
    float *y;                               /* conv output (pre-activation) */
    float *ya;                              /* after activation (== y without one) */
    float *yq;                              /* after fake-quant (== ya without one) */
    uint8_t *reg;                           /* fq region codes */
    float *gy, *gya, *gyq;                  /* gradients (aliases like the forwards) */
    qd_node act;
    int fq_index;                           /* quantizer index, -1 none */
} ui_conv;

typedef struct ui_unit {
    ui_spec sp;
    qd_backend *b;
    int nconv;            /* layers + shortcut */
    ui_conv c[UI_MAXL + 1];
    int64_t in_numel, out_numel, sample_in, sample_out;
    int oh, ow, oc;
    float *qin, *fpin, *fpout; /* caches */
    float *X, *T;              /* mixed input, target */
    float *sum, *post, *out;   /* residual sum, after post act, after out fq */
    uint8_t *out_reg;
    float *gsum, *gpost, *dy;
    qd_node add, post_node;
    qd_fq_desc fq[UI_MAXL + 2];
    int nfq;
    float *scales, *sgrad, *sm, *sv;
    int32_t *iter, *idx;
    float *loss, *reg_loss;
    int32_t *bad;
    float *grad_arena;
    size_t grad_bytes;
    qd_sched_desc sched;
    qd_rng_key key_batch, key_input;
    char err[256];
} ui_unit;

static int ui_ids[8] = {0, 1, 2, 3, 4, 5, 6, 7};

static inline qd_node ui_mknode(qd_op op, const char *name, int nin) {
    qd_node n;
    memset(&n, 0, sizeof n);
    n.name = (char *)name;
    n.op = op;
    n.opset = 13;
    n.ninputs = nin;
    n.noutputs = 1;
    n.inputs = ui_ids;
    n.outputs = ui_ids;
    n.unit = 0;
    n.wq = -1;
    n.a.alpha = n.a.beta = 1.0f;
    n.a.group = 1;
    n.a.stride[0] = n.a.stride[1] = 1;
    n.a.dilation[0] = n.a.dilation[1] = 1;
    n.a.clip_min = -INFINITY;
    n.a.clip_max = INFINITY;
    return n;
}

static inline qd_shape ui_shape4(int64_t n, int64_t c, int64_t h, int64_t w) {
    qd_shape s;
    memset(&s, 0, sizeof s);
    s.ndim = 4;
    s.dims[0] = n; s.dims[1] = c; s.dims[2] = h; s.dims[3] = w;
    return s;
}

/* splitmix-based host generator (deterministic, independent of the backend) */
static uint64_t ui_rng = 42;
static inline float ui_unif(float lo, float hi) {
    uint64_t z = (ui_rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return lo + (hi - lo) * (float)((z >> 40) * (1.0 / 16777216.0));
}

#define UI_TRY(expr)                                                                           \
    do {                                                                                       \
        qd_status ui_st_ = (expr);                                                             \
        if (ui_st_ != QD_OK) {                                                                 \
            snprintf(u->err, sizeof u->err, "%s:%d: %s: %s", __FILE__, __LINE__, #expr, qd_error_message()); \
            return ui_st_;                                                                     \
        }                                                                                      \
    } while (0)

static inline void *ui_alloc(ui_unit *u, size_t bytes) {
    void *p = u->b->ops->alloc(u->b, bytes ? bytes : 4);
    if (!p) snprintf(u->err, sizeof u->err, "alloc %zu bytes: %s", bytes, qd_error_message());
    return p;
}
#define UI_ALLOC(dst, bytes)                            \
    do {                                                \
        (dst) = ui_alloc(u, (bytes));                   \
        if (!(dst)) return QD_ERR_DEVICE_OOM;           \
    } while (0)

/* Random values in [lo, hi). Buffers above UI_RAND_CHUNK floats (the benchmark's 1,024-sample
 * caches, gigabytes) repeat their first chunk by device copies: generating and uploading
 * every value would take most of a GPU check's time, and timing does not depend on the values.
 * The twin tests' buffers are smaller, so they see one unbroken random stream. */
#define UI_RAND_CHUNK ((int64_t)1 << 22)
static inline qd_status ui_upload_rand(ui_unit *u, float *dst, int64_t n, float lo, float hi) {
    int64_t n0 = n < UI_RAND_CHUNK ? n : UI_RAND_CHUNK;
    float *h = (float *)malloc((size_t)(n0 > 0 ? n0 : 1) * sizeof(float));
    if (!h) return qd_errorf(QD_ERR_INTERNAL, "host out of memory");
    for (int64_t i = 0; i < n0; i++) h[i] = ui_unif(lo, hi);
    qd_status st = u->b->ops->upload(u->b, dst, h, (size_t)n0 * sizeof(float));
    free(h);
    for (int64_t off = n0; st == QD_OK && off < n; off += n0) {
        int64_t k = n - off < n0 ? n - off : n0;
        st = u->b->ops->copy(u->b, dst + off, dst, (size_t)k * sizeof(float));
    }
    if (st == QD_OK && n > n0) st = u->b->ops->sync(u->b);
    return st;
}

/* Build the unit on backend b. Host random init depends on `seed` only, so two backends built
 * with the same seed start from identical state. */
static inline qd_status ui_create(ui_unit *u, qd_backend *b, const ui_spec *sp, uint64_t seed) {
    memset(u, 0, sizeof *u);
    u->sp = *sp;
    u->b = b;
    ui_rng = seed;
    const qd_backend_ops *o = b->ops;
    int B = sp->batch;
    int wq = (1 << sp->w_bits) - 1, aq = (1 << sp->a_bits) - 1;
    int h = sp->h, w = sp->w, c = sp->cin;
    u->nconv = sp->nlayers + (sp->residual && sp->has_short ? 1 : 0);
    u->sample_in = (int64_t)sp->cin * sp->h * sp->w;
    u->in_numel = u->sample_in * B;
    /* ---- layers ---- */
    u->nfq = 0;
    for (int i = 0; i < u->nconv; i++) {
        ui_conv *cv = &u->c[i];
        int is_short = i == sp->nlayers;
        const ui_layer *L = is_short ? &sp->shortcut : &sp->layers[i];
        int ih = is_short ? sp->h : h, iw = is_short ? sp->w : w, ic = is_short ? sp->cin : c;
        if (L->cin != ic) return qd_errorf(QD_ERR_INTERNAL, "%s: layer %d expects %d input channels, has %d", sp->name, i, L->cin, ic);
        int g = L->group > 0 ? L->group : 1;
        int oh = (ih + 2 * L->pad - L->k) / L->stride + 1, ow = (iw + 2 * L->pad - L->k) / L->stride + 1;
        cv->node = ui_mknode(QD_OP_CONV, is_short ? "shortcut" : "conv", 2);
        cv->node.a.kernel[0] = cv->node.a.kernel[1] = L->k;
        cv->node.a.stride[0] = cv->node.a.stride[1] = L->stride;
        cv->node.a.pads[0] = cv->node.a.pads[1] = cv->node.a.pads[2] = cv->node.a.pads[3] = L->pad;
        cv->node.a.group = g;
        cv->is[0] = ui_shape4(B, ic, ih, iw);
        cv->is[1] = ui_shape4(L->cout, ic / g, L->k, L->k);
        cv->os = ui_shape4(B, L->cout, oh, ow);
        int64_t wn = (int64_t)L->cout * (ic / g) * L->k * L->k, yn = (int64_t)B * L->cout * oh * ow;
        cv->ad.numel = wn;
        cv->ad.per_channel = wn / L->cout;
        cv->ad.channels = L->cout;
        cv->ad.qmin = 0.0f;
        cv->ad.qmax = (float)wq;
        UI_ALLOC(cv->W, wn * 4); UI_ALLOC(cv->V, wn * 4); UI_ALLOC(cv->m, wn * 4); UI_ALLOC(cv->v, wn * 4);
        UI_ALLOC(cv->Wq, wn * 4); UI_ALLOC(cv->s, L->cout * 4); UI_ALLOC(cv->z, L->cout * 4);
        UI_ALLOC(cv->y, yn * 4);
        /* weights: He-uniform; per-channel min/max -> (s, z) (§2) */
        float bound = sqrtf(6.0f / (float)(cv->ad.per_channel));
        float *hw = (float *)malloc((size_t)wn * 4), *hs = (float *)malloc((size_t)L->cout * 4),
              *hz = (float *)malloc((size_t)L->cout * 4);
        if (!hw || !hs || !hz) return qd_errorf(QD_ERR_INTERNAL, "host out of memory");
        for (int64_t e = 0; e < wn; e++) hw[e] = ui_unif(-bound, bound);
        for (int oc = 0; oc < L->cout; oc++) {
            float lo = INFINITY, hi = -INFINITY;
            for (int64_t e = 0; e < cv->ad.per_channel; e++) {
                float v = hw[oc * cv->ad.per_channel + e];
                lo = fminf(lo, v); hi = fmaxf(hi, v);
            }
            qd_range_to_qparams(lo, hi, 0, wq, &hs[oc], &hz[oc]);
        }
        UI_TRY(o->upload(b, cv->W, hw, (size_t)wn * 4));
        UI_TRY(o->upload(b, cv->s, hs, (size_t)L->cout * 4));
        UI_TRY(o->upload(b, cv->z, hz, (size_t)L->cout * 4));
        free(hw); free(hs); free(hz);
        UI_TRY(o->adaround_init(b, &cv->ad, cv->W, cv->s, cv->z, cv->V));
        UI_TRY(o->zero(b, cv->m, wn * 4));
        UI_TRY(o->zero(b, cv->v, wn * 4));
        cv->ya = cv->y;
        cv->yq = cv->y;
        if (L->act != UI_ACT_NONE) {
            cv->act = ui_mknode(L->act == UI_ACT_RELU ? QD_OP_RELU : QD_OP_CLIP, "act", 1);
            if (L->act == UI_ACT_RELU6) { cv->act.a.clip_min = 0.0f; cv->act.a.clip_max = 6.0f; }
            UI_ALLOC(cv->ya, yn * 4);
            cv->yq = cv->ya;
        }
        cv->fq_index = -1;
        if (L->fq && !is_short) {
            UI_ALLOC(cv->yq, yn * 4);
            UI_ALLOC(cv->reg, yn);
            cv->fq_index = u->nfq++;
        }
        if (!is_short) { h = oh; w = ow; c = L->cout; }
    }
    u->oh = h; u->ow = w; u->oc = c;
    u->sample_out = (int64_t)c * h * w;
    u->out_numel = u->sample_out * B;
    /* ---- residual / output ---- */
    const float *last = u->c[sp->nlayers - 1].yq;
    u->sum = (float *)last;
    if (sp->residual) {
        ui_conv *sc = sp->has_short ? &u->c[sp->nlayers] : NULL;
        if (sc ? qd_shape_numel(&sc->os) != u->out_numel : u->in_numel != u->out_numel)
            return qd_errorf(QD_ERR_INTERNAL, "%s: residual shape mismatch", sp->name);
        u->add = ui_mknode(QD_OP_ADD, "add", 2);
        UI_ALLOC(u->sum, u->out_numel * 4);
    }
    u->post = u->sum;
    if (sp->post_act != UI_ACT_NONE) {
        u->post_node = ui_mknode(sp->post_act == UI_ACT_RELU ? QD_OP_RELU : QD_OP_CLIP, "post", 1);
        if (sp->post_act == UI_ACT_RELU6) { u->post_node.a.clip_min = 0.0f; u->post_node.a.clip_max = 6.0f; }
        UI_ALLOC(u->post, u->out_numel * 4);
    }
    u->out = u->post;
    int out_fq_index = -1;
    if (sp->out_fq) {
        UI_ALLOC(u->out, u->out_numel * 4);
        UI_ALLOC(u->out_reg, u->out_numel);
        out_fq_index = u->nfq++;
    }
    /* ---- quantizers: scale from a nominal range, z = 0 after Relu/ReLU6, mid-grid otherwise ---- */
    float hsc[UI_MAXL + 2];
    for (int j = 0; j < u->nfq; j++) {
        int relu_before;
        if (j == out_fq_index) relu_before = sp->post_act != UI_ACT_NONE || (!sp->residual && sp->layers[sp->nlayers - 1].act);
        else {
            int li = 0;
            for (int i = 0; i < sp->nlayers; i++) if (u->c[i].fq_index == j) li = i;
            relu_before = sp->layers[li].act != UI_ACT_NONE;
        }
        qd_fq_desc *d = &u->fq[j];
        memset(d, 0, sizeof *d);
        d->qmin = 0.0f;
        d->qmax = (float)aq;
        d->zero_point = relu_before ? 0.0f : (float)((aq + 1) / 2);
        d->keep_prob = sp->keep_prob;
        d->grad_scale = 1;
        d->guard_scale = 1;
        qd_rng_key k = {1005u, 0u, 0u, (uint32_t)j};
        d->key = k;
        hsc[j] = (relu_before ? 2.0f : 4.0f) / (float)aq;
    }
    UI_ALLOC(u->scales, (u->nfq + 1) * 4); UI_ALLOC(u->sgrad, (u->nfq + 1) * 4);
    UI_ALLOC(u->sm, (u->nfq + 1) * 4); UI_ALLOC(u->sv, (u->nfq + 1) * 4);
    if (u->nfq) UI_TRY(o->upload(b, u->scales, hsc, (size_t)u->nfq * 4));
    UI_TRY(o->zero(b, u->sgrad, (u->nfq + 1) * 4));
    UI_TRY(o->zero(b, u->sm, (u->nfq + 1) * 4));
    UI_TRY(o->zero(b, u->sv, (u->nfq + 1) * 4));
    /* ---- caches (alloc_cache: device within the budget, else pinned host) ---- */
    int ond;
    size_t cin_b = (size_t)sp->ncal * u->sample_in * 4, cout_b = (size_t)sp->ncal * u->sample_out * 4;
    u->qin = (float *)o->alloc_cache(b, cin_b, &ond);
    if (!u->qin) return QD_ERR_DEVICE_OOM;
    u->fpin = (float *)o->alloc_cache(b, cin_b, &ond);
    if (!u->fpin) return QD_ERR_DEVICE_OOM;
    u->fpout = (float *)o->alloc_cache(b, cout_b, &ond);
    if (!u->fpout) return QD_ERR_DEVICE_OOM;
    UI_TRY(ui_upload_rand(u, u->qin, (int64_t)sp->ncal * u->sample_in, 0.0f, 1.5f));
    UI_TRY(ui_upload_rand(u, u->fpin, (int64_t)sp->ncal * u->sample_in, 0.0f, 1.5f));
    UI_TRY(ui_upload_rand(u, u->fpout, (int64_t)sp->ncal * u->sample_out, 0.0f, 2.0f));
    UI_ALLOC(u->X, u->in_numel * 4);
    UI_ALLOC(u->T, u->out_numel * 4);
    UI_ALLOC(u->iter, 4); UI_ALLOC(u->idx, B * 4); UI_ALLOC(u->loss, 4); UI_ALLOC(u->reg_loss, 4); UI_ALLOC(u->bad, 4);
    UI_TRY(o->zero(b, u->iter, 4));
    UI_TRY(o->zero(b, u->loss, 4));
    UI_TRY(o->zero(b, u->reg_loss, 4));
    UI_TRY(o->zero(b, u->bad, 4));
    /* ---- gradient arena: everything zeroed once per iteration ---- */
    size_t gb = 0;
    for (int i = 0; i < u->nconv; i++) {
        ui_conv *cv = &u->c[i];
        int64_t yn = qd_shape_numel(&cv->os);
        gb += (size_t)cv->ad.numel * 4 + (size_t)yn * 4;          /* dW, gy */
        if (cv->ya != cv->y) gb += (size_t)yn * 4;                  /* gya */
        if (cv->yq != cv->ya) gb += (size_t)yn * 4;                 /* gyq */
    }
    gb += 3 * (size_t)u->out_numel * 4; /* gsum, gpost, dy (upper bound) */
    u->grad_bytes = gb;
    UI_ALLOC(u->grad_arena, gb);
    float *p = u->grad_arena;
    for (int i = 0; i < u->nconv; i++) {
        ui_conv *cv = &u->c[i];
        int64_t yn = qd_shape_numel(&cv->os);
        cv->dW = p; p += cv->ad.numel;
        cv->gy = p; p += yn;
        cv->gya = cv->gy;
        if (cv->ya != cv->y) { cv->gya = p; p += yn; }
        cv->gyq = cv->gya;
        if (cv->yq != cv->ya) { cv->gyq = p; p += yn; }
    }
    u->dy = p; p += u->out_numel;
    u->gpost = u->dy;
    if (sp->out_fq) { u->gpost = p; p += u->out_numel; }
    u->gsum = u->gpost;
    if (sp->post_act != UI_ACT_NONE) { u->gsum = p; p += u->out_numel; }
    /* ---- schedules ---- */
    qd_sched_desc s = {20000, 0.2f, 20.0f, 2.0f, 0.01f, QD_ADAM_LR_V, 4e-5f};
    u->sched = s;
    qd_rng_key kb = {1005u, 0u, 0u, QD_RNG_T_BATCH}, ki = {1005u, 0u, 0u, QD_RNG_T_INPUT};
    u->key_batch = kb;
    u->key_input = ki;
    return o->sync(b);
}

/* Forward from u->X (batch already gathered). */
static inline qd_status ui_forward(ui_unit *u) {
    qd_backend *b = u->b;
    const qd_backend_ops *o = b->ops;
    const ui_spec *sp = &u->sp;
    const float *x = u->X;
    for (int i = 0; i < sp->nlayers; i++) {
        ui_conv *cv = &u->c[i];
        const float *in[2] = {x, cv->Wq};
        UI_TRY(o->node_forward(b, &cv->node, cv->is, in, &cv->os, cv->y));
        if (cv->ya != cv->y) {
            const float *ai[1] = {cv->y};
            UI_TRY(o->node_forward(b, &cv->act, &cv->os, ai, &cv->os, cv->ya));
        }
        if (cv->fq_index >= 0) {
            int j = cv->fq_index;
            UI_TRY(o->fq_forward(b, &u->fq[j], u->scales + j, u->iter, qd_shape_numel(&cv->os), cv->ya, cv->yq, cv->reg));
        }
        x = cv->yq;
    }
    if (sp->residual) {
        const float *res = u->X;
        qd_shape rs = u->c[sp->nlayers - 1].os;
        if (sp->has_short) {
            ui_conv *sc = &u->c[sp->nlayers];
            const float *in[2] = {u->X, sc->Wq};
            UI_TRY(o->node_forward(b, &sc->node, sc->is, in, &sc->os, sc->y));
            res = sc->y;
        }
        const float *ai[2] = {x, res};
        qd_shape as[2] = {rs, rs};
        UI_TRY(o->node_forward(b, &u->add, as, ai, &rs, u->sum));
    }
    if (u->post != u->sum) {
        qd_shape rs = u->c[sp->nlayers - 1].os;
        const float *ai[1] = {u->sum};
        UI_TRY(o->node_forward(b, &u->post_node, &rs, ai, &rs, u->post));
    }
    if (sp->out_fq) {
        int j = u->nfq - 1;
        UI_TRY(o->fq_forward(b, &u->fq[j], u->scales + j, u->iter, u->out_numel, u->post, u->out, u->out_reg));
    }
    return QD_OK;
}

static inline qd_status ui_backward(ui_unit *u) {
    qd_backend *b = u->b;
    const qd_backend_ops *o = b->ops;
    const ui_spec *sp = &u->sp;
    qd_shape rs = u->c[sp->nlayers - 1].os;
    if (sp->out_fq) {
        int j = u->nfq - 1;
        UI_TRY(o->fq_backward(b, &u->fq[j], u->scales + j, u->out_numel, u->post, u->out_reg, u->dy, u->gpost, u->sgrad + j));
    }
    if (u->post != u->sum) {
        const float *ai[1] = {u->sum};
        float *di[1] = {u->gsum};
        UI_TRY(o->node_backward(b, &u->post_node, &rs, ai, &rs, u->post, u->gpost, di));
    }
    ui_conv *lc = &u->c[sp->nlayers - 1];
    if (sp->residual) {
        const float *res = u->X;
        float *gres = NULL;
        if (sp->has_short) { res = u->c[sp->nlayers].y; gres = u->c[sp->nlayers].gy; }
        const float *ai[2] = {lc->yq, res};
        float *di[2] = {lc->gyq, gres};
        qd_shape as[2] = {rs, rs};
        UI_TRY(o->node_backward(b, &u->add, as, ai, &rs, u->sum, u->gsum, di));
        if (sp->has_short) {
            ui_conv *sc = &u->c[sp->nlayers];
            const float *in[2] = {u->X, sc->Wq};
            float *din[2] = {NULL, sc->dW};
            UI_TRY(o->node_backward(b, &sc->node, sc->is, in, &sc->os, sc->y, sc->gy, din));
        }
    } else {
        /* no add: the chain output is the post-activation input */
        UI_TRY(o->copy(b, lc->gyq, u->gsum, (size_t)u->out_numel * 4));
    }
    for (int i = sp->nlayers - 1; i >= 0; i--) {
        ui_conv *cv = &u->c[i];
        int64_t yn = qd_shape_numel(&cv->os);
        if (cv->fq_index >= 0) {
            int j = cv->fq_index;
            UI_TRY(o->fq_backward(b, &u->fq[j], u->scales + j, yn, cv->ya, cv->reg, cv->gyq, cv->gya, u->sgrad + j));
        }
        if (cv->ya != cv->y) {
            const float *ai[1] = {cv->y};
            float *di[1] = {cv->gy};
            UI_TRY(o->node_backward(b, &cv->act, &cv->os, ai, &cv->os, cv->ya, cv->gya, di));
        }
        const float *in[2] = {i ? u->c[i - 1].yq : u->X, cv->Wq};
        float *din[2] = {i ? u->c[i - 1].gyq : NULL, cv->dW};
        UI_TRY(o->node_backward(b, &cv->node, cv->is, in, &cv->os, cv->y, cv->gy, din));
    }
    return QD_OK;
}

/* One full iteration (capturable: no host synchronisation, no allocation). */
static inline qd_status ui_iteration(ui_unit *u) {
    qd_backend *b = u->b;
    const qd_backend_ops *o = b->ops;
    const ui_spec *sp = &u->sp;
    UI_TRY(o->iter_advance(b, u->iter));
    UI_TRY(o->draw_batch(b, u->key_batch, u->iter, sp->ncal, sp->batch, u->idx));
    UI_TRY(o->gather_mix(b, u->qin, u->fpin, u->idx, sp->batch, u->sample_in, u->key_input, sp->keep_prob, u->iter, u->X));
    UI_TRY(o->gather_mix(b, u->fpout, NULL, u->idx, sp->batch, u->sample_out, u->key_input, 1.0f, u->iter, u->T));
    UI_TRY(o->zero(b, u->grad_arena, u->grad_bytes));
    for (int i = 0; i < u->nconv; i++) {
        ui_conv *cv = &u->c[i];
        UI_TRY(o->adaround_weight(b, &cv->ad, cv->W, cv->V, cv->s, cv->z, 0, cv->Wq));
    }
    QD_TRY(ui_forward(u));
    UI_TRY(o->mse_loss(b, sp->batch, u->oc, (int64_t)u->oh * u->ow, u->out, u->T, u->dy, u->loss));
    QD_TRY(ui_backward(u));
    for (int i = 0; i < u->nconv; i++) {
        ui_conv *cv = &u->c[i];
        UI_TRY(o->adaround_step(b, &cv->ad, &u->sched, u->iter, cv->W, cv->s, cv->z, cv->dW, cv->V, cv->m, cv->v,
                                u->reg_loss));
    }
    if (u->nfq) UI_TRY(o->scale_step(b, &u->sched, u->iter, u->nfq, u->scales, u->sgrad, u->sm, u->sv));
    UI_TRY(o->check_finite(b, u->out_numel, u->out, u->bad));
    return QD_OK;
}

/* The unit's convolutions alone: forward, backward-data (except the first layer's input),
 * backward-filter. Used by the benchmark as the cuDNN-only baseline. */
static inline qd_status ui_convs_only(ui_unit *u) {
    qd_backend *b = u->b;
    const qd_backend_ops *o = b->ops;
    const ui_spec *sp = &u->sp;
    for (int i = 0; i < u->nconv; i++) {
        ui_conv *cv = &u->c[i];
        int is_short = i == sp->nlayers;
        const float *in[2] = {(i == 0 || is_short) ? u->X : u->c[i - 1].yq, cv->Wq};
        UI_TRY(o->node_forward(b, &cv->node, cv->is, in, &cv->os, cv->y));
    }
    for (int i = u->nconv - 1; i >= 0; i--) {
        ui_conv *cv = &u->c[i];
        int is_short = i == sp->nlayers;
        const float *in[2] = {(i == 0 || is_short) ? u->X : u->c[i - 1].yq, cv->Wq};
        float *din[2] = {(i == 0 || is_short) ? NULL : u->c[i - 1].gyq, cv->dW};
        UI_TRY(o->node_backward(b, &cv->node, cv->is, in, &cv->os, cv->y, cv->gy, din));
    }
    return QD_OK;
}

static inline void ui_destroy(ui_unit *u) {
    if (!u->b) return;
    qd_backend *b = u->b;
    const qd_backend_ops *o = b->ops;
    for (int i = 0; i < u->nconv; i++) {
        ui_conv *cv = &u->c[i];
        o->free(b, cv->W); o->free(b, cv->V); o->free(b, cv->m); o->free(b, cv->v); o->free(b, cv->Wq);
        o->free(b, cv->s); o->free(b, cv->z); o->free(b, cv->y);
        if (cv->ya != cv->y) o->free(b, cv->ya);
        if (cv->yq != cv->ya) { o->free(b, cv->yq); o->free(b, cv->reg); }
    }
    if (u->sum != u->c[u->sp.nlayers - 1].yq) o->free(b, u->sum);
    if (u->post != u->sum) o->free(b, u->post);
    if (u->out != u->post) { o->free(b, u->out); o->free(b, u->out_reg); }
    o->free(b, u->scales); o->free(b, u->sgrad); o->free(b, u->sm); o->free(b, u->sv);
    o->free_cache(b, u->qin); o->free_cache(b, u->fpin); o->free_cache(b, u->fpout);
    o->free(b, u->X); o->free(b, u->T); o->free(b, u->iter); o->free(b, u->idx); o->free(b, u->loss);
    o->free(b, u->reg_loss); o->free(b, u->bad); o->free(b, u->grad_arena);
    memset(u, 0, sizeof *u);
}

/* Host copy of the learned state (V of every layer, m, v, scales, loss, reg_loss, iter) for
 * comparisons and the cross-run determinism check. Returns malloc'd bytes. */
static inline void *ui_state(ui_unit *u, size_t *bytes) {
    size_t n = 0;
    for (int i = 0; i < u->nconv; i++) n += 3 * (size_t)u->c[i].ad.numel * 4;
    n += (size_t)u->nfq * 4 * 3 + 12;
    char *h = (char *)malloc(n), *p = h;
    if (!h) return NULL;
    const qd_backend_ops *o = u->b->ops;
    int ok = 1;
    for (int i = 0; i < u->nconv; i++) {
        size_t wb = (size_t)u->c[i].ad.numel * 4;
        ok &= o->download(u->b, p, u->c[i].V, wb) == QD_OK; p += wb;
        ok &= o->download(u->b, p, u->c[i].m, wb) == QD_OK; p += wb;
        ok &= o->download(u->b, p, u->c[i].v, wb) == QD_OK; p += wb;
    }
    if (u->nfq) {
        ok &= o->download(u->b, p, u->scales, (size_t)u->nfq * 4) == QD_OK; p += u->nfq * 4;
        ok &= o->download(u->b, p, u->sm, (size_t)u->nfq * 4) == QD_OK; p += u->nfq * 4;
        ok &= o->download(u->b, p, u->sv, (size_t)u->nfq * 4) == QD_OK; p += u->nfq * 4;
    }
    ok &= o->download(u->b, p, u->loss, 4) == QD_OK; p += 4;
    ok &= o->download(u->b, p, u->reg_loss, 4) == QD_OK; p += 4;
    ok &= o->download(u->b, p, u->iter, 4) == QD_OK; p += 4;
    if (!ok) { free(h); return NULL; }
    *bytes = n;
    return h;
}

#endif
