/* src/bert/bert_recon.c: QDrop reconstruction of BERT encoder layers on the CPU (§8.8: one
 * encoder layer = one unit), mirroring src/recon/recon_unit.c with the same qmath.h functions:
 *
 *   weights: per output channel on the 6 Linear layers, §3.1 MSE range search, AdaRound (§4);
 *            embedding tables 8-bit per row (min/max, nearest, not reconstructed);
 *   activations: per tensor, asymmetric, a_bits, at the 8 §8.8 sites of every layer + the
 *            embeddings LayerNorm; ranges by qd_act_range_search on FP activations (§6.2);
 *            the last layer's output quantizer is 8-bit when first_last_8bit (§6.1: the last
 *            quantizer before the head is 8-bit; here mean pooling follows it);
 *   one iteration (§8.3): c += 1; 32 sentences drawn with replacement (qd_draw_index);
 *            x = mix(quant_in, fp_in) per element (§7.1); soft AdaRound weights; forward with
 *            every site quantized with drop (§7.2); loss = squared error summed over hidden and
 *            averaged over the batch's valid tokens (§5 with tokens in place of N*H*W);
 *            backward with the STE/LSQ quantizer gradients; Adam on V (+ regulariser after
 *            warm-up, β schedule); Adam on the scales with cosine lr (§6.3).
 *   finish: hard-round the weights into the quantized model, keep the learned scales.
 *
 * Sentences have different lengths: they are stored packed (valid tokens only) and each batch is
 * padded to its longest sentence. Padded positions get zero loss gradient, and because padded
 * keys have attention probability exactly 0 they receive no gradient at all, so padding does
 * not touch V or the scale gradients. The LSQ factor 1/sqrt(numel*qmax) uses the valid element
 * count of the batch tensor. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bert/bert_internal.h"
#include "core/qmath.h"
#include "qdrop/log.h"
#include "recon/recon.h"

#define CAL_BATCH 32 /* sentences per forward when running the whole calibration set */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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

static float **linear_weight_slot(qd_bert_layer *L, int i) {
    switch (i) {
    case 0: return &L->wq;
    case 1: return &L->wk;
    case 2: return &L->wv;
    case 3: return &L->wo;
    case 4: return &L->w1;
    default: return &L->w2;
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

/* Embedding rows: 8-bit per row with the min/max range (a 30522 x 384 table is too large for
 * the §3.1 2-D search; at 8 bits the min/max grid is within a few percent of it). */
static void fq_rows_minmax(const float *src, float *dst, int rows, int cols, int bits) {
    const int qmax = qd_qmax_for_bits(bits);
    for (int r = 0; r < rows; r++) {
        const float *p = src + (size_t)r * cols;
        float lo = INFINITY, hi = -INFINITY, s, z;
        for (int c = 0; c < cols; c++) { lo = fminf(lo, p[c]); hi = fmaxf(hi, p[c]); }
        qd_range_to_qparams(lo, hi, 0, qmax, &s, &z);
        for (int c = 0; c < cols; c++) dst[(size_t)r * cols + c] = qd_fake_quant(p[c], s, z, 0.0f, (float)qmax);
    }
}

void qd_bert_quant_weights_nearest(const qd_bert_quant *q, const qd_bert_model *fp, qd_bert_model *qm) {
    const qd_bert_config *cfg = &fp->cfg;
    const float qmax = (float)qd_qmax_for_bits(q->w_bits);
    for (int k = 0; k < q->layers * QD_BERT_NLINEAR; k++) {
        int r, c, l = k / QD_BERT_NLINEAR, i = k % QD_BERT_NLINEAR;
        qd_bert_linear_shape(cfg, i, &r, &c);
        const float *w = qd_bert_linear_weight(&fp->layer[l], i);
        float *o = qd_bert_linear_weight(&qm->layer[l], i);
        const float *s = q->ws + q->w_off[k], *z = q->wz + q->w_off[k];
        for (int ch = 0; ch < r; ch++)
            for (int e = 0; e < c; e++)
                o[(size_t)ch * c + e] = qd_fake_quant(w[(size_t)ch * c + e], s[ch], z[ch], 0.0f, qmax);
    }
    fq_rows_minmax(fp->word_emb, qm->word_emb, cfg->vocab, cfg->hidden, q->emb_bits);
    fq_rows_minmax(fp->pos_emb, qm->pos_emb, cfg->max_pos, cfg->hidden, q->emb_bits);
    fq_rows_minmax(fp->type_emb, qm->type_emb, cfg->type_vocab, cfg->hidden, q->emb_bits);
}

static const qd_bert_aq *site_aq(const qd_bert_quant *q, int layer, qd_bert_site site) {
    if (layer < 0) return site == QD_BERT_SITE_EMB_LN ? &q->emb_ln : NULL;
    if (layer >= q->layers || site == QD_BERT_SITE_EMB_LN || site >= QD_BERT_SITE_COUNT) return NULL;
    return &q->act[layer * QD_BERT_LAYER_SITES + (int)site - 1];
}

void qd_bert_quant_hook(void *ctx, int layer, qd_bert_site site, float *x, size_t n) {
    const qd_bert_aq *a = site_aq((const qd_bert_quant *)ctx, layer, site);
    if (!a) return;
    const float qmax = (float)qd_qmax_for_bits(a->bits);
    for (size_t i = 0; i < n; i++) x[i] = qd_fake_quant(x[i], a->scale, a->zp, 0.0f, qmax);
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

/* pad packed rows [len_b, H] of the batch into x [nb, S, H] (zeros at padding), mask [nb*S] */
static void gather_batch(const qd_bert_calib *cal, const li_pair *ord, int nb, int S, int H, const float *packed,
                         float *x, int *mask) {
    memset(x, 0, sizeof(float) * (size_t)nb * S * H);
    for (int b = 0; b < nb; b++) {
        int i = ord[b].idx, len = cal->len[i];
        if (packed) memcpy(x + (size_t)b * S * H, packed + (size_t)cal->off[i] * H, sizeof(float) * (size_t)len * H);
        for (int s = 0; s < S; s++) mask[b * S + s] = s < len;
    }
}
static void scatter_batch(const qd_bert_calib *cal, const li_pair *ord, int nb, int S, int H, const float *y, float *packed) {
    for (int b = 0; b < nb; b++) {
        int i = ord[b].idx;
        memcpy(packed + (size_t)cal->off[i] * H, y + (size_t)b * S * H, sizeof(float) * (size_t)cal->len[i] * H);
    }
}

qd_status qd_bert_embed_calib(const qd_bert_model *m, const qd_bert_calib *cal, float *out, qd_bert_act_hook hook,
                              void *hctx) {
    const int H = m->cfg.hidden;
    li_pair *ord = length_order(cal, cal->n);
    int S0 = ord ? ord[0].len : 0;
    int *ids = malloc(sizeof(int) * (size_t)CAL_BATCH * S0), *mask = malloc(sizeof(int) * (size_t)CAL_BATCH * S0);
    float *y = malloc(sizeof(float) * (size_t)CAL_BATCH * S0 * H);
    qd_status st = QD_OK;
    if (!ord || !ids || !mask || !y) st = qd_errorf(QD_ERR_INTERNAL, "BERT calibration: out of memory");
    for (int s0 = 0; st == QD_OK && s0 < cal->n; s0 += CAL_BATCH) {
        int nb = cal->n - s0 < CAL_BATCH ? cal->n - s0 : CAL_BATCH, S = ord[s0].len;
        for (int b = 0; b < nb; b++)
            for (int s = 0; s < S; s++) {
                int i = ord[s0 + b].idx;
                ids[b * S + s] = s < cal->len[i] ? cal->ids[cal->off[i] + s] : 0;
                mask[b * S + s] = s < cal->len[i];
            }
        qd_bert_embed(m, ids, NULL, nb, S, y, hook, hctx);
        scatter_batch(cal, ord + s0, nb, S, H, y, out);
    }
    free(ord); free(ids); free(mask); free(y);
    return st;
}

qd_status qd_bert_layer_run_calib(const qd_bert_model *m, int l, const qd_bert_calib *cal, const float *in, float *out,
                                  qd_bert_act_hook hook, void *hctx) {
    const int H = m->cfg.hidden;
    li_pair *ord = length_order(cal, cal->n);
    int S0 = ord ? ord[0].len : 0;
    int *mask = malloc(sizeof(int) * (size_t)CAL_BATCH * S0);
    float *x = malloc(sizeof(float) * (size_t)CAL_BATCH * S0 * H), *y = malloc(sizeof(float) * (size_t)CAL_BATCH * S0 * H);
    qd_bert_layer_cache c;
    memset(&c, 0, sizeof c);
    qd_status st = QD_OK;
    if (!ord || !mask || !x || !y) st = qd_errorf(QD_ERR_INTERNAL, "BERT calibration: out of memory");
    if (st == QD_OK) st = qd_bert_cache_alloc(&m->cfg, CAL_BATCH, S0, &c);
    for (int s0 = 0; st == QD_OK && s0 < cal->n; s0 += CAL_BATCH) {
        int nb = cal->n - s0 < CAL_BATCH ? cal->n - s0 : CAL_BATCH, S = ord[s0].len;
        gather_batch(cal, ord + s0, nb, S, H, in, x, mask);
        st = qd_bert_layer_forward(&m->cfg, &m->layer[l], l, x, mask, nb, S, y, &c, hook, hctx);
        if (st == QD_OK) scatter_batch(cal, ord + s0, nb, S, H, y, out);
    }
    qd_bert_cache_free(&c);
    free(ord); free(mask); free(x); free(y);
    return st;
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

/* ---------------------------------------------------------------------------------------- */
/* training-time quantizers (§2, §6.3, §7.2)                                                 */
/* ---------------------------------------------------------------------------------------- */
void qd_bert_train_ctx_free(qd_bert_train_ctx *t) {
    for (int j = 0; j < QD_BERT_LAYER_SITES; j++) {
        free(t->site[j].pre); free(t->site[j].delta); free(t->site[j].region);
        t->site[j].pre = t->site[j].delta = NULL;
        t->site[j].region = NULL;
        t->site[j].cap = 0;
    }
}

static float tsite_scale(const qd_bert_train_ctx *t, const qd_bert_tsite *s) {
    return t->guard ? qd_lsq_guard(s->scale) : s->scale;
}

void qd_bert_train_hook(void *vctx, int layer, qd_bert_site site, float *x, size_t n) {
    qd_bert_train_ctx *t = vctx;
    if (layer != t->layer || site == QD_BERT_SITE_EMB_LN || site >= QD_BERT_SITE_COUNT) return;
    int j = (int)site - 1;
    qd_bert_tsite *st = &t->site[j];
    if (!st->active) return;
    if (n > st->cap) {
        float *p = realloc(st->pre, sizeof(float) * n), *d = p ? realloc(st->delta, sizeof(float) * n) : NULL;
        uint8_t *r = d ? realloc(st->region, n) : NULL;
        if (p) st->pre = p;
        if (d) st->delta = d;
        if (r) st->region = r;
        if (!p || !d || !r) { t->oom = 1; return; }
        st->cap = n;
    }
    st->n = n;
    const float s = tsite_scale(t, st), z = st->zp;
    qd_rng_key key = t->key;
    key.tensor = (uint32_t)j; /* §7.2: activation quantizer j of the unit */
    const int drop = t->keep_prob < 1.0f;
    for (size_t i = 0; i < n; i++) {
        float xv = x[i];
        st->pre[i] = xv;
        if (t->freeze) {
            int reg = st->region[i];
            if (reg == QD_FQ_INSIDE) x[i] = xv + s * st->delta[i];
            else if (reg == QD_FQ_LOW) x[i] = (st->qmin - z) * s;
            else if (reg == QD_FQ_HIGH) x[i] = (st->qmax - z) * s;
            continue;
        }
        int reg = QD_FQ_DROPPED;
        if (!drop || qd_keep_quant(key, t->iteration, (uint64_t)i, t->keep_prob)) {
            x[i] = qd_fake_quant_region(xv, s, z, st->qmin, st->qmax, &reg);
            float v = xv / s;
            st->delta[i] = rintf(v) - v;
        }
        st->region[i] = (uint8_t)reg;
    }
}

void qd_bert_train_bhook(void *vctx, int layer, qd_bert_site site, float *g, size_t offset, size_t n) {
    qd_bert_train_ctx *t = vctx;
    if (layer != t->layer || site == QD_BERT_SITE_EMB_LN || site >= QD_BERT_SITE_COUNT) return;
    qd_bert_tsite *st = &t->site[(int)site - 1];
    if (!st->active || offset + n > st->n) return;
    const float s = tsite_scale(t, st);
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        int reg = st->region[offset + i];
        float gi = g[i];
        acc += (double)qd_fake_quant_ds(gi, st->pre[offset + i], s, st->zp, st->qmin, st->qmax, reg);
        g[i] = qd_fake_quant_dx(gi, reg);
    }
    st->ds += acc;
}

/* ---------------------------------------------------------------------------------------- */
/* layer loss on the calibration set                                                          */
/* ---------------------------------------------------------------------------------------- */
qd_status qd_bert_layer_calib_loss(const qd_bert_model *qm, const qd_bert_quant *q, int l, const qd_bert_calib *cal,
                                   const float *qin, const float *fpout, double *loss) {
    const int H = qm->cfg.hidden;
    float *y = malloc(sizeof(float) * (size_t)cal->ntok * H);
    if (!y) return qd_errorf(QD_ERR_INTERNAL, "BERT layer loss: out of memory");
    qd_status st = qd_bert_layer_run_calib(qm, l, cal, qin, y, qd_bert_quant_hook, (void *)q);
    int64_t ntok = 0;
    for (int i = 0; i < cal->n; i++) ntok += cal->len[i];
    double acc = 0.0;
    for (int i = 0; st == QD_OK && i < cal->n; i++)
        for (int64_t k = cal->off[i] * H; k < (cal->off[i] + cal->len[i]) * H; k++) {
            double e = (double)y[k] - (double)fpout[k];
            acc += e * e;
        }
    *loss = ntok > 0 ? acc / (double)ntok : 0.0;
    free(y);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* reconstruction of one layer (§8.3)                                                        */
/* ---------------------------------------------------------------------------------------- */
typedef struct {
    int rows, cols;
    int64_t numel;
    const float *W, *s, *z;
    float *V, *m, *v, *wsoft, *dW;
} ar_lin;

qd_status qd_bert_recon_layer(const qd_bert_model *fp, qd_bert_model *qm, qd_bert_quant *q, int l,
                              const qd_bert_calib *cal, const float *qin, const float *fpin, const float *fpout,
                              const qd_bert_recon_opts *o, qd_bert_layer_report *rep) {
    const qd_bert_config *cfg = &fp->cfg;
    const int H = cfg->hidden, NH = cfg->heads, FF = cfg->intermediate, B = o->batch_size;
    const float wqmax = (float)qd_qmax_for_bits(q->w_bits);
    double t0 = now_s();
    memset(rep, 0, sizeof *rep);
    rep->layer = l;
    if (o->iters < 1 || B < 1) return qd_errorf(QD_ERR_CONFIG, "BERT reconstruction: iters %d / batch %d must be >= 1", o->iters, B);
    int Smax = 0;
    for (int i = 0; i < cal->n; i++) if (cal->len[i] > Smax) Smax = cal->len[i];
    qd_bert_calib sub = *cal;
    if (sub.n > 256) sub.n = 256; /* before/after loss on the first 256 sentences, as the CNN SQNR */
    qd_status st = qd_bert_layer_calib_loss(qm, q, l, &sub, qin, fpout, &rep->eval_before);
    if (st != QD_OK) return st;

    ar_lin lin[QD_BERT_NLINEAR];
    memset(lin, 0, sizeof lin);
    qd_bert_layer Ls = fp->layer[l];
    qd_bert_train_ctx tc;
    memset(&tc, 0, sizeof tc);
    qd_bert_layer_cache cache;
    memset(&cache, 0, sizeof cache);
    size_t TH = (size_t)B * Smax * H;
    float *xin = malloc(sizeof(float) * TH), *tgt = malloc(sizeof(float) * TH), *y = malloc(sizeof(float) * TH),
          *dy = malloc(sizeof(float) * TH), *dx = malloc(sizeof(float) * TH);
    int *mask = malloc(sizeof(int) * (size_t)B * Smax), *idx = malloc(sizeof(int) * (size_t)B);
    if (!xin || !tgt || !y || !dy || !dx || !mask || !idx) st = qd_errorf(QD_ERR_INTERNAL, "BERT reconstruction: out of memory");
    for (int i = 0; st == QD_OK && i < QD_BERT_NLINEAR; i++) {
        ar_lin *A = &lin[i];
        qd_bert_linear_shape(cfg, i, &A->rows, &A->cols);
        A->numel = (int64_t)A->rows * A->cols;
        A->W = qd_bert_linear_weight(&fp->layer[l], i);
        int k = l * QD_BERT_NLINEAR + i;
        A->s = q->ws + q->w_off[k]; A->z = q->wz + q->w_off[k];
        size_t bytes = sizeof(float) * (size_t)A->numel;
        A->V = malloc(bytes); A->m = calloc((size_t)A->numel, sizeof(float)); A->v = calloc((size_t)A->numel, sizeof(float));
        A->wsoft = malloc(bytes); A->dW = malloc(bytes);
        if (!A->V || !A->m || !A->v || !A->wsoft || !A->dW) { st = qd_errorf(QD_ERR_INTERNAL, "BERT reconstruction: out of memory"); break; }
        for (int64_t e = 0; e < A->numel; e++) A->V[e] = qd_adaround_init_v(A->W[e], A->s[e / A->cols]);
        *linear_weight_slot(&Ls, i) = A->wsoft;
    }
    if (st == QD_OK) st = qd_bert_cache_alloc(cfg, B, Smax, &cache);

    tc.layer = l;
    tc.keep_prob = o->keep_prob;
    tc.key.seed_lo = (uint32_t)o->seed; tc.key.seed_hi = (uint32_t)(o->seed >> 32); tc.key.unit = (uint32_t)l;
    tc.guard = o->learn_scales;
    float sm[QD_BERT_LAYER_SITES] = {0}, sv[QD_BERT_LAYER_SITES] = {0};
    for (int j = 0; j < QD_BERT_LAYER_SITES; j++) {
        const qd_bert_aq *a = &q->act[l * QD_BERT_LAYER_SITES + j];
        tc.site[j].scale = a->scale; tc.site[j].zp = a->zp;
        tc.site[j].qmin = 0.0f; tc.site[j].qmax = (float)qd_qmax_for_bits(a->bits);
        tc.site[j].active = 1;
    }
    qd_rng_key bkey = tc.key, ikey = tc.key;
    bkey.tensor = QD_RNG_T_BATCH;
    ikey.tensor = QD_RNG_T_INPUT;
    int every = o->log_every > 0 ? o->log_every : 500;
    double win_loss = 0.0, win_reg = 0.0;
    int win_n = 0;
    double t_train = now_s();
    for (int c = 1; st == QD_OK && c <= o->iters; c++) {
        /* batch: B sentences with replacement (§8.3), padded to the longest */
        int Sb = 0;
        int64_t ntok = 0, nprob = 0;
        for (int b = 0; b < B; b++) {
            idx[b] = (int)qd_draw_index(bkey, (uint32_t)c, (uint32_t)b, (uint32_t)cal->n);
            int len = cal->len[idx[b]];
            if (len > Sb) Sb = len;
            ntok += len;
            nprob += (int64_t)len * len;
        }
        memset(xin, 0, sizeof(float) * (size_t)B * Sb * H);
        memset(tgt, 0, sizeof(float) * (size_t)B * Sb * H);
        for (int b = 0; b < B; b++) {
            int i = idx[b], len = cal->len[i];
            for (int s = 0; s < Sb; s++) mask[b * Sb + s] = s < len;
            const float *qi = qin + (size_t)cal->off[i] * H, *fi = fpin + (size_t)cal->off[i] * H;
            float *xo = xin + (size_t)b * Sb * H;
            for (int64_t e = 0; e < (int64_t)len * H; e++) {
                uint64_t flat = (uint64_t)b * Sb * H + (uint64_t)e; /* element of the padded batch tensor */
                xo[e] = qd_keep_quant(ikey, (uint32_t)c, flat, o->input_keep_prob) ? qi[e] : fi[e];
            }
            memcpy(tgt + (size_t)b * Sb * H, fpout + (size_t)cal->off[i] * H, sizeof(float) * (size_t)len * H);
        }
        /* soft AdaRound weights (§4) */
        for (int i = 0; i < QD_BERT_NLINEAR; i++) {
            ar_lin *A = &lin[i];
            for (int64_t e = 0; e < A->numel; e++) {
                int64_t ch = e / A->cols;
                A->wsoft[e] = qd_adaround_weight(A->W[e], A->V[e], A->s[ch], A->z[ch], 0.0f, wqmax, 0, NULL);
            }
        }
        tc.iteration = (uint32_t)c;
        for (int j = 0; j < QD_BERT_LAYER_SITES; j++) tc.site[j].ds = 0.0;
        st = qd_bert_layer_forward(cfg, &Ls, l, xin, mask, B, Sb, y, &cache, qd_bert_train_hook, &tc);
        if (st == QD_OK && tc.oom) st = qd_errorf(QD_ERR_INTERNAL, "BERT reconstruction: out of memory in a quantizer");
        if (st != QD_OK) break;
        cache.B = B; cache.S = Sb;
        /* loss: squared error summed over hidden, mean over valid tokens */
        double loss = 0.0;
        const float inv2 = (float)(2.0 / (double)ntok);
        for (size_t t = 0; t < (size_t)B * Sb; t++) {
            float *d = dy + t * H;
            const float *yy = y + t * H, *tt = tgt + t * H;
            if (!mask[t]) { memset(d, 0, sizeof(float) * (size_t)H); continue; }
            for (int k = 0; k < H; k++) {
                float e = yy[k] - tt[k];
                loss += (double)e * (double)e;
                d[k] = inv2 * e;
            }
        }
        loss /= (double)ntok;
        for (int i = 0; i < QD_BERT_NLINEAR; i++) memset(lin[i].dW, 0, sizeof(float) * (size_t)lin[i].numel);
        qd_bert_layer_grads g;
        memset(&g, 0, sizeof g);
        g.wq = lin[0].dW; g.wk = lin[1].dW; g.wv = lin[2].dW; g.wo = lin[3].dW; g.w1 = lin[4].dW; g.w2 = lin[5].dW;
        st = qd_bert_layer_backward_ex(cfg, &Ls, l, &cache, mask, dy, dx, &g, qd_bert_train_bhook, &tc);
        if (st != QD_OK) break;
        /* Adam on V with the rounding regulariser after warm-up (§4) */
        int active = qd_reg_active(c, o->iters, o->warm_up);
        float beta = qd_beta_at(c, o->iters, o->warm_up, o->b_start, o->b_end);
        qd_adam_bc bc = qd_adam_bias_correction(c);
        double reg = 0.0;
        for (int i = 0; i < QD_BERT_NLINEAR; i++) {
            ar_lin *A = &lin[i];
            for (int64_t e = 0; e < A->numel; e++) {
                int64_t ch = e / A->cols;
                float V = A->V[e];
                float term = 0.0f;
                float gv = qd_adaround_grad(A->dW[e], A->W[e], V, A->s[ch], A->z[ch], 0.0f, wqmax, active, beta,
                                            o->lambda, &term);
                if (active) reg += (double)term;
                A->V[e] = qd_adam_update_bc(V, gv, &A->m[e], &A->v[e], QD_ADAM_LR_V, bc);
            }
        }
        reg *= (double)o->lambda;
        /* Adam on the scales, cosine lr (§6.3) */
        if (o->learn_scales) {
            float lr = qd_cosine_lr(o->scale_lr, c, o->iters);
            for (int j = 0; j < QD_BERT_LAYER_SITES; j++) {
                qd_bert_tsite *ts = &tc.site[j];
                int64_t numel;
                qd_bert_site site = (qd_bert_site)(j + 1);
                if (site == QD_BERT_SITE_PROBS) numel = (int64_t)NH * nprob;
                else if (site == QD_BERT_SITE_GELU) numel = ntok * FF;
                else numel = ntok * H;
                double f = o->lsq_grad_scale ? (double)qd_lsq_grad_factor((double)numel, (int)ts->qmax) : 1.0;
                ts->scale = qd_adam_update(ts->scale, (float)(ts->ds * f), &sm[j], &sv[j], lr, c);
            }
        }
        if (c == 1) rep->loss_start = loss;
        win_loss += loss; win_reg += reg; win_n++;
        if (c % every == 0 || c == o->iters) {
            double ml = win_loss / win_n, mr = win_reg / win_n;
            if (!isfinite(ml) || !isfinite(mr)) {
                st = qd_errorf(QD_ERR_NUMERIC, "BERT layer %d: reconstruction loss became %s at iteration %d (try a lower quant.recon.scale_lr)",
                               l, isnan(ml) ? "NaN" : "Inf", c);
                break;
            }
            rep->loss_end = ml; rep->reg_end = mr;
            double el = now_s() - t_train;
            qd_progress_update(l, q->layers, "bert layer", c, o->iters, ml, c / (el > 0 ? el : 1e-9));
            char fields[256];
            snprintf(fields, sizeof fields, "\"unit\":%d,\"iter\":%d,\"rec_loss\":%.6g,\"round_loss\":%.6g,\"it_per_s\":%.3f",
                     l, c, ml, mr, c / (el > 0 ? el : 1e-9));
            qd_log_event_json(QD_LOG_DEBUG, "recon_progress", fields, "layer %d/%d: iter %d/%d rec %.5g round %.5g (%.2f it/s)",
                              l + 1, q->layers, c, o->iters, ml, mr, c / (el > 0 ? el : 1e-9));
            win_loss = win_reg = 0.0;
            win_n = 0;
        }
        rep->iters = c;
    }
    qd_progress_done();
    /* finish: hard-rounded weights into qm, learned scales into q (§3.4) */
    if (st == QD_OK) {
        for (int i = 0; i < QD_BERT_NLINEAR; i++) {
            ar_lin *A = &lin[i];
            float *dst = qd_bert_linear_weight(&qm->layer[l], i);
            for (int64_t e = 0; e < A->numel; e++) {
                int64_t ch = e / A->cols;
                dst[e] = qd_adaround_weight(A->W[e], A->V[e], A->s[ch], A->z[ch], 0.0f, wqmax, 1, NULL);
            }
        }
        if (o->learn_scales)
            for (int j = 0; j < QD_BERT_LAYER_SITES; j++) {
                if (!isfinite(tc.site[j].scale)) { st = qd_errorf(QD_ERR_NUMERIC, "BERT layer %d: learned scale %d is not finite", l, j); break; }
                q->act[l * QD_BERT_LAYER_SITES + j].scale = qd_lsq_guard(tc.site[j].scale);
            }
    }
    if (st == QD_OK) st = qd_bert_layer_calib_loss(qm, q, l, &sub, qin, fpout, &rep->eval_after);
    for (int i = 0; i < QD_BERT_NLINEAR; i++) {
        free(lin[i].V); free(lin[i].m); free(lin[i].v); free(lin[i].wsoft); free(lin[i].dW);
    }
    qd_bert_train_ctx_free(&tc);
    qd_bert_cache_free(&cache);
    free(xin); free(tgt); free(y); free(dy); free(dx); free(mask); free(idx);
    rep->seconds = now_s() - t0;
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* whole pipeline                                                                            */
/* ---------------------------------------------------------------------------------------- */
qd_status qd_bert_ptq(const qd_bert_model *fp, qd_bert_model *qm, qd_bert_quant *q, const qd_bert_calib *cal,
                      int act_samples, int reconstruct, const qd_bert_recon_opts *o, qd_bert_layer_report *reps) {
    const int H = fp->cfg.hidden;
    qd_bert_quant_weights_nearest(q, fp, qm);
    /* Search budget per site: about 2.6e7 evaluations of |Q(x)-x|^p for the 2-D search's
     * 100 x 2^b candidates (§3.1): 16384 elements at 4 bits, 2048 at 8 bits (evenly strided
     * over the valid tokens of act_samples sentences; 2 shared cores) */
    int64_t max_elems = (int64_t)(26214400.0 / (100.0 * (double)(1 << q->a_bits)));
    if (max_elems < 2048) max_elems = 2048;
    double t0 = now_s();
    QD_TRY(qd_bert_quant_act_ranges(q, fp, cal, act_samples, max_elems, 1));
    qd_log_info("bert_act_ranges", "activation ranges of %d sites in %.1f s (%lld elements max per site)",
                1 + q->layers * QD_BERT_LAYER_SITES, now_s() - t0, (long long)max_elems);
    if (!reconstruct) return QD_OK;
    size_t bytes = sizeof(float) * (size_t)cal->ntok * H;
    float *fpin = malloc(bytes), *qin = malloc(bytes), *fpout = malloc(bytes), *qout = malloc(bytes);
    qd_status st = QD_OK;
    if (!fpin || !qin || !fpout || !qout) st = qd_errorf(QD_ERR_INTERNAL, "BERT reconstruction: out of memory for caches");
    if (st == QD_OK) st = qd_bert_embed_calib(fp, cal, fpin, NULL, NULL);
    if (st == QD_OK) st = qd_bert_embed_calib(qm, cal, qin, qd_bert_quant_hook, q);
    for (int l = 0; st == QD_OK && l < fp->cfg.layers; l++) {
        st = qd_bert_layer_run_calib(fp, l, cal, fpin, fpout, NULL, NULL);
        if (st == QD_OK) st = qd_bert_recon_layer(fp, qm, q, l, cal, qin, fpin, fpout, o, &reps[l]);
        if (st == QD_OK) st = qd_bert_layer_run_calib(qm, l, cal, qin, qout, qd_bert_quant_hook, q);
        if (st != QD_OK) break;
        qd_log_info("bert_layer_done", "layer %d/%d: loss %.5g -> %.5g (calibration, full quantization %.5g -> %.5g), %d iters, %.1f s",
                    l + 1, fp->cfg.layers, reps[l].loss_start, reps[l].loss_end, reps[l].eval_before, reps[l].eval_after,
                    reps[l].iters, reps[l].seconds);
        float *t = fpin; fpin = fpout; fpout = t;
        t = qin; qin = qout; qout = t;
    }
    free(fpin); free(qin); free(fpout); free(qout);
    return st;
}
