/* src/bert/bert_calib.c: calibration helpers of the BERT model family (src/bert/bert_job.c),
 * on the host encoder (src/bert/encoder.c) with its §8.8 hooks:
 *   weights: per output channel on the 6 Linear layers of every encoder layer, §3.1 MSE range
 *            search below 8 bits, per-channel min/max at 8 bits;
 *   activations: per tensor, asymmetric, a_bits, at the 8 §8.8 sites of every layer + the
 *            embeddings LayerNorm (the last layer's output 8-bit when first_last_8bit, §6.1);
 *            ranges by qd_act_range_search on FP activations of valid (non-padding) tokens
 *            only (§6.2), PROBS on valid query x valid key pairs;
 *   calibration sentences: tokenized and stored packed (valid tokens only).
 * The reconstruction itself is the engine's (src/recon/recon_unit.c) on the encoder graph. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bert/bert_internal.h"
#include "core/qmath.h"
#include "recon/recon.h"

#define CAL_BATCH 32 /* sentences per forward when running the calibration set */

float *qd_bert_linear_weight(const qd_bert_layer *L, int i) {
    switch (i) {
    case 0: return L->wq;
    case 1: return L->wk;
    case 2: return L->wv;
    case 3: return L->wo;
    case 4: return L->w1;
    default: return L->w2;
    }
}

void qd_bert_linear_shape(const qd_bert_config *cfg, int i, int *rows, int *cols) {
    *rows = i == 4 ? cfg->intermediate : cfg->hidden;
    *cols = i == 5 ? cfg->intermediate : cfg->hidden;
}

/* ---------------------------------------------------------------------------------------- */
/* quantization state                                                                        */
/* ---------------------------------------------------------------------------------------- */
void qd_bert_quant_free(qd_bert_quant *q) {
    if (!q) return;
    free(q->act); free(q->ws); free(q->wz); free(q->w_off);
    free(q);
}

qd_status qd_bert_quant_create(const qd_bert_model *m, int w_bits, int a_bits, int last_out_8bit, int threads,
                               qd_bert_quant **out) {
    *out = NULL;
    if (w_bits < 2 || w_bits > 8 || a_bits < 2 || a_bits > 8)
        return qd_errorf(QD_ERR_CONFIG, "BERT quantization: bits must be in 2..8 (weights %d, activations %d)", w_bits, a_bits);
    const qd_bert_config *cfg = &m->cfg;
    qd_bert_quant *q = calloc(1, sizeof *q);
    if (!q) return qd_errorf(QD_ERR_INTERNAL, "BERT quantization: out of memory");
    q->layers = cfg->layers; q->w_bits = w_bits; q->a_bits = a_bits; q->emb_bits = 8;
    q->last_out_8bit = last_out_8bit;
    int nl = cfg->layers * QD_BERT_NLINEAR;
    q->act = calloc((size_t)cfg->layers * QD_BERT_LAYER_SITES, sizeof *q->act);
    q->w_off = calloc((size_t)nl + 1, sizeof *q->w_off);
    if (!q->act || !q->w_off) { qd_bert_quant_free(q); return qd_errorf(QD_ERR_INTERNAL, "BERT quantization: out of memory"); }
    int64_t tot = 0;
    for (int k = 0; k < nl; k++) {
        int r, c;
        qd_bert_linear_shape(cfg, k % QD_BERT_NLINEAR, &r, &c);
        q->w_off[k] = tot;
        tot += r;
    }
    q->w_off[nl] = tot;
    q->ws = malloc(sizeof(float) * (size_t)tot);
    q->wz = malloc(sizeof(float) * (size_t)tot);
    if (!q->ws || !q->wz) { qd_bert_quant_free(q); return qd_errorf(QD_ERR_INTERNAL, "BERT quantization: out of memory"); }
    for (int k = 0; k < nl; k++) {
        int r, c;
        qd_bert_linear_shape(cfg, k % QD_BERT_NLINEAR, &r, &c);
        const float *w = qd_bert_linear_weight(&m->layer[k / QD_BERT_NLINEAR], k % QD_BERT_NLINEAR);
        float *ws = q->ws + q->w_off[k], *wz = q->wz + q->w_off[k];
        if (w_bits >= 8) {
            /* 8 bits: per-channel min/max. The §3.1 2-D search has 100 x 256 candidates per
             * channel (about 50 min for MiniLM on 2 cores) and lands within rounding of it. */
            for (int ch = 0; ch < r; ch++) {
                float lo = INFINITY, hi = -INFINITY;
                for (int e = 0; e < c; e++) { lo = fminf(lo, w[(size_t)ch * c + e]); hi = fmaxf(hi, w[(size_t)ch * c + e]); }
                qd_range_to_qparams(lo, hi, 0, qd_qmax_for_bits(w_bits), &ws[ch], &wz[ch]);
            }
            continue;
        }
        qd_status st = qd_weight_range_search(w, r, c, 1, w_bits, threads, ws, wz);
        if (st != QD_OK) { qd_bert_quant_free(q); return st; }
    }
    q->emb_ln.bits = a_bits; q->emb_ln.scale = 1.0f;
    for (int l = 0; l < cfg->layers; l++)
        for (int j = 0; j < QD_BERT_LAYER_SITES; j++) {
            qd_bert_aq *a = &q->act[l * QD_BERT_LAYER_SITES + j];
            a->bits = a_bits;
            a->scale = 1.0f;
            if (last_out_8bit && l == cfg->layers - 1 && j == QD_BERT_SITE_OUT_LN - 1) a->bits = 8;
        }
    *out = q;
    return QD_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* calibration sentences                                                                     */
/* ---------------------------------------------------------------------------------------- */
void qd_bert_calib_free(qd_bert_calib *c) {
    free(c->len); free(c->off); free(c->ids);
    memset(c, 0, sizeof *c);
}

qd_status qd_bert_calib_build(const qd_bert_model *m, const char *const *sent, int n, int max_len, qd_bert_calib *out) {
    memset(out, 0, sizeof *out);
    if (!m->tok) return qd_errorf(QD_ERR_DATA, "BERT calibration: model has no vocab.txt (tokenizer)");
    if (n < 1) return qd_errorf(QD_ERR_DATA, "BERT calibration: no sentences");
    if (max_len > m->cfg.max_pos) max_len = m->cfg.max_pos;
    int *tt = malloc(sizeof(int) * (size_t)max_len), *mk = malloc(sizeof(int) * (size_t)max_len);
    out->len = malloc(sizeof(int) * (size_t)n);
    out->off = malloc(sizeof(int64_t) * (size_t)n);
    out->ids = malloc(sizeof(int) * (size_t)n * (size_t)max_len);
    qd_status st = QD_OK;
    if (!tt || !mk || !out->len || !out->off || !out->ids) st = qd_errorf(QD_ERR_INTERNAL, "BERT calibration: out of memory");
    int64_t pos = 0;
    for (int i = 0; st == QD_OK && i < n; i++) {
        qd_bert_encoding e = {out->ids + pos, tt, mk, 0};
        st = qd_wp_encode(m->tok, sent[i], NULL, max_len, 0, &e);
        out->off[i] = pos;
        out->len[i] = e.len;
        pos += e.len;
    }
    free(tt); free(mk);
    if (st != QD_OK) { qd_bert_calib_free(out); return st; }
    out->n = n;
    out->ntok = pos;
    return QD_OK;
}

/* Batches of CAL_BATCH sentences in order of decreasing length (less padding). */
typedef struct { int idx, len; } li_pair;
static int cmp_li(const void *a, const void *b) {
    const li_pair *x = a, *y = b;
    return x->len != y->len ? y->len - x->len : x->idx - y->idx;
}
static li_pair *length_order(const qd_bert_calib *cal, int n) {
    li_pair *o = malloc(sizeof *o * (size_t)n);
    if (!o) return NULL;
    for (int i = 0; i < n; i++) { o[i].idx = i; o[i].len = cal->len[i]; }
    qsort(o, (size_t)n, sizeof *o, cmp_li);
    return o;
}

/* ---------------------------------------------------------------------------------------- */
/* activation ranges (§6.2)                                                                  */
/* ---------------------------------------------------------------------------------------- */
typedef struct {
    float *v;
    int64_t n, cap;
} fvec;

typedef struct {
    int layers, NH, B, S;
    const int *mask;
    fvec *site; /* [1 + layers*8]: 0 = EMB_LN */
    int oom;
} collect_ctx;

static int fvec_push(fvec *f, float x) {
    if (f->n == f->cap) {
        int64_t nc = f->cap ? f->cap * 2 : 65536;
        float *p = realloc(f->v, sizeof(float) * (size_t)nc);
        if (!p) return 0;
        f->v = p; f->cap = nc;
    }
    f->v[f->n++] = x;
    return 1;
}

/* keep values at valid (non-padding) tokens only: padded rows would bias the ranges */
static void collect_hook(void *vctx, int layer, qd_bert_site site, float *x, size_t n) {
    collect_ctx *c = vctx;
    int slot = layer < 0 ? 0 : 1 + layer * QD_BERT_LAYER_SITES + (int)site - 1;
    if (layer >= c->layers || (layer < 0 && site != QD_BERT_SITE_EMB_LN)) return;
    fvec *f = &c->site[slot];
    const int B = c->B, S = c->S, NH = c->NH;
    int ok = 1;
    if (site == QD_BERT_SITE_PROBS) {
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < S; i++)
                    for (int j = 0; j < S; j++)
                        if (c->mask[b * S + i] && c->mask[b * S + j])
                            ok &= fvec_push(f, x[(((size_t)b * NH + h) * S + i) * S + j]);
    } else if (site == QD_BERT_SITE_Q || site == QD_BERT_SITE_K || site == QD_BERT_SITE_V) {
        size_t d = n / ((size_t)B * NH * S);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int s = 0; s < S; s++)
                    if (c->mask[b * S + s])
                        for (size_t k = 0; k < d; k++) ok &= fvec_push(f, x[(((size_t)b * NH + h) * S + s) * d + k]);
    } else {
        size_t F = n / ((size_t)B * S);
        for (size_t t = 0; t < (size_t)B * S; t++)
            if (c->mask[t])
                for (size_t k = 0; k < F; k++) ok &= fvec_push(f, x[t * F + k]);
    }
    if (!ok) c->oom = 1;
}

qd_status qd_bert_quant_act_ranges(qd_bert_quant *q, const qd_bert_model *fp, const qd_bert_calib *cal, int nsamples,
                                   int64_t max_elems, int threads) {
    if (nsamples > cal->n) nsamples = cal->n;
    if (nsamples < 1) return qd_errorf(QD_ERR_CONFIG, "BERT activation ranges: no calibration sentences");
    const int H = fp->cfg.hidden, nslots = 1 + q->layers * QD_BERT_LAYER_SITES;
    collect_ctx cc;
    memset(&cc, 0, sizeof cc);
    cc.layers = q->layers; cc.NH = fp->cfg.heads;
    cc.site = calloc((size_t)nslots, sizeof(fvec));
    qd_bert_calib sub = *cal;
    sub.n = nsamples;
    li_pair *ord = length_order(&sub, nsamples);
    int S0 = ord ? ord[0].len : 0;
    int *ids = malloc(sizeof(int) * (size_t)CAL_BATCH * S0), *mask = malloc(sizeof(int) * (size_t)CAL_BATCH * S0);
    float *y = malloc(sizeof(float) * (size_t)CAL_BATCH * S0 * H), *sample = NULL;
    qd_status st = QD_OK;
    if (!cc.site || !ord || !ids || !mask || !y) st = qd_errorf(QD_ERR_INTERNAL, "BERT activation ranges: out of memory");
    for (int s0 = 0; st == QD_OK && s0 < nsamples; s0 += CAL_BATCH) {
        int nb = nsamples - s0 < CAL_BATCH ? nsamples - s0 : CAL_BATCH, S = ord[s0].len;
        for (int b = 0; b < nb; b++)
            for (int s = 0; s < S; s++) {
                int i = ord[s0 + b].idx;
                ids[b * S + s] = s < cal->len[i] ? cal->ids[cal->off[i] + s] : 0;
                mask[b * S + s] = s < cal->len[i];
            }
        cc.B = nb; cc.S = S; cc.mask = mask;
        st = qd_bert_encode(fp, ids, NULL, mask, nb, S, y, collect_hook, &cc);
        if (st == QD_OK && cc.oom) st = qd_errorf(QD_ERR_INTERNAL, "BERT activation ranges: out of memory");
    }
    if (st == QD_OK && !(sample = malloc(sizeof(float) * (size_t)(max_elems > 0 ? max_elems : 1))))
        st = qd_errorf(QD_ERR_INTERNAL, "BERT activation ranges: out of memory");
    for (int k = 0; st == QD_OK && k < nslots; k++) {
        fvec *f = &cc.site[k];
        qd_bert_aq *a = k == 0 ? &q->emb_ln : &q->act[k - 1];
        int64_t m = f->n < max_elems ? f->n : max_elems;
        /* evenly strided, deterministic subsample: the 2-D search costs 100 x 2^b passes over it */
        for (int64_t i = 0; i < m; i++) sample[i] = f->v[(int64_t)((double)i * (double)f->n / (double)m)];
        st = qd_act_range_search(sample, m, a->bits, threads, &a->scale, &a->zp);
    }
    for (int k = 0; cc.site && k < nslots; k++) free(cc.site[k].v);
    free(cc.site); free(ord); free(ids); free(mask); free(y); free(sample);
    return st;
}
