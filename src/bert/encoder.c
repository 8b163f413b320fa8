/* src/bert/encoder.c: BERT encoder on the CPU (OpenBLAS sgemm): embeddings + LayerNorm,
 * self-attention with a key padding mask, FFN with exact erf GELU, residual + LayerNorm
 * (post-LN, as HuggingFace BertLayer), mean pooling and the [CLS] pooler/classifier head; and
 * the backward pass of one layer. Activation quantizer positions (§8.8) call the hook in place.
 * Reductions (LayerNorm statistics, softmax sums) accumulate in double. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bert/bert_internal.h"
#include "core/nnmath.h"

#define HOOK(layer, site, p, n) do { if (hook) hook(hctx, (layer), (site), (p), (n)); } while (0)

/* y[T,out] = x[T,in] W^T + b, W [out,in] (HuggingFace Linear). */
static void linear(const float *x, const float *W, const float *b, int T, int in, int out, float *y) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
    if (b)
        for (int t = 0; t < T; t++)
            for (int o = 0; o < out; o++) y[(size_t)t * out + o] += b[o];
}

/* y = LN(x) * g + b over rows of n; saves xhat and rstd when given (row math: core/nnmath.h,
 * shared with the graph's LayerNormalization op). */
static void layernorm(const float *x, const float *g, const float *b, int T, int n, float eps, float *y,
                      float *xhat, float *rstd) {
    for (int t = 0; t < T; t++)
        qd_layernorm_row(x + (size_t)t * n, g, b, n, eps, y + (size_t)t * n, xhat ? xhat + (size_t)t * n : NULL,
                         rstd ? rstd + t : NULL);
}

/* dx = rstd * (dxh - mean(dxh) - xhat * mean(dxh * xhat)), dxh = dy * g (accumulates dg, db). */
static void layernorm_backward(const float *dy, const float *xhat, const float *rstd, const float *g, int T, int n,
                               float *dx, float *dg, float *db) {
    for (int t = 0; t < T; t++)
        qd_layernorm_backward_row(dy + (size_t)t * n, xhat + (size_t)t * n, rstd[t], g, n, dx + (size_t)t * n, 0, dg, db);
}

/* [T,H] <-> [B,NH,S,d] */
static void split_heads(const float *x, int B, int S, int NH, int d, float *y) {
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++)
            for (int h = 0; h < NH; h++)
                memcpy(y + (((size_t)b * NH + h) * S + s) * d, x + ((size_t)b * S + s) * NH * d + (size_t)h * d,
                       (size_t)d * sizeof *x);
}
static void merge_heads(const float *x, int B, int S, int NH, int d, float *y) {
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++)
            for (int h = 0; h < NH; h++)
                memcpy(y + ((size_t)b * S + s) * NH * d + (size_t)h * d, x + (((size_t)b * NH + h) * S + s) * d,
                       (size_t)d * sizeof *x);
}

qd_status qd_bert_cache_alloc(const qd_bert_config *cfg, int B, int S, qd_bert_layer_cache *c) {
    memset(c, 0, sizeof *c);
    c->B = B;
    c->S = S;
    size_t T = (size_t)B * S, H = (size_t)cfg->hidden, FF = (size_t)cfg->intermediate, NH = (size_t)cfg->heads;
    float **p[] = {&c->x, &c->q, &c->k, &c->v, &c->ctx, &c->ln1_xhat, &c->h1, &c->ln2_xhat};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) *p[i] = malloc(T * H * sizeof(float));
    c->probs = malloc((size_t)B * NH * S * S * sizeof(float));
    c->probs_pre = malloc((size_t)B * NH * S * S * sizeof(float));
    c->pre = malloc(T * FF * sizeof(float));
    c->inter = malloc(T * FF * sizeof(float));
    c->ln1_rstd = malloc(T * sizeof(float));
    c->ln2_rstd = malloc(T * sizeof(float));
    int ok = c->probs && c->probs_pre && c->pre && c->inter && c->ln1_rstd && c->ln2_rstd;
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) ok = ok && *p[i];
    if (!ok) {
        qd_bert_cache_free(c);
        return qd_errorf(QD_ERR_INTERNAL, "BERT layer cache: out of memory (B %d, S %d)", B, S);
    }
    return QD_OK;
}

void qd_bert_cache_free(qd_bert_layer_cache *c) {
    float *p[] = {c->x, c->q, c->k, c->v, c->probs, c->probs_pre, c->ctx, c->ln1_xhat, c->ln1_rstd, c->h1, c->pre, c->inter,
                  c->ln2_xhat, c->ln2_rstd};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
    memset(c, 0, sizeof *c);
}

void qd_bert_embed(const qd_bert_model *m, const int *ids, const int *type_ids, int B, int S, float *out,
                   qd_bert_act_hook hook, void *hctx) {
    int H = m->cfg.hidden;
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++) {
            size_t t = (size_t)b * S + s;
            int id = ids[t], tt = type_ids ? type_ids[t] : 0;
            const float *w = m->word_emb + (size_t)id * H, *ty = m->type_emb + (size_t)tt * H, *po = m->pos_emb + (size_t)s * H;
            /* HF order: (inputs_embeds + token_type_embeddings) + position_embeddings */
            for (int i = 0; i < H; i++) out[t * H + i] = (w[i] + ty[i]) + po[i];
        }
    layernorm(out, m->emb_ln_g, m->emb_ln_b, B * S, H, m->cfg.ln_eps, out, NULL, NULL);
    HOOK(-1, QD_BERT_SITE_EMB_LN, out, (size_t)B * S * H);
}

qd_status qd_bert_layer_forward(const qd_bert_config *cfg, const qd_bert_layer *L, int li, const float *x,
                                const int *mask, int B, int S, float *y, qd_bert_layer_cache *cache,
                                qd_bert_act_hook hook, void *hctx) {
    qd_bert_layer_cache own;
    qd_bert_layer_cache *c = cache;
    if (!c) {
        QD_TRY(qd_bert_cache_alloc(cfg, B, S, &own));
        c = &own;
    }
    const int H = cfg->hidden, NH = cfg->heads, d = H / NH, FF = cfg->intermediate, T = B * S;
    const size_t TH = (size_t)T * H;
    float *tmp = malloc(TH * sizeof(float)), *tmp2 = malloc(TH * sizeof(float)), *amask = malloc((size_t)T * sizeof(float));
    if (!tmp || !tmp2 || !amask) {
        free(tmp); free(tmp2); free(amask);
        if (!cache) qd_bert_cache_free(&own);
        return qd_errorf(QD_ERR_INTERNAL, "BERT layer %d: out of memory", li);
    }
    for (int t = 0; t < T; t++) amask[t] = mask[t] ? 0.0f : -INFINITY; /* key padding mask, additive */
    memcpy(c->x, x, TH * sizeof(float));
    linear(x, L->wq, L->bq, T, H, H, tmp);
    split_heads(tmp, B, S, NH, d, c->q);
    linear(x, L->wk, L->bk, T, H, H, tmp);
    split_heads(tmp, B, S, NH, d, c->k);
    linear(x, L->wv, L->bv, T, H, H, tmp);
    split_heads(tmp, B, S, NH, d, c->v);
    HOOK(li, QD_BERT_SITE_Q, c->q, TH);
    HOOK(li, QD_BERT_SITE_K, c->k, TH);
    HOOK(li, QD_BERT_SITE_V, c->v, TH);
    const float alpha = 1.0f / sqrtf((float)d);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            size_t bh = (size_t)b * NH + h;
            float *P = c->probs + bh * S * S;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, S, S, d, alpha, c->q + bh * S * d, d,
                        c->k + bh * S * d, d, 0.0f, P, S);
            /* Padded keys get probability exactly 0 (HF adds finfo.min, whose exp underflows):
             * the additive -inf mask of the graph's Softmax op, same row function. */
            for (int i = 0; i < S; i++) qd_softmax_row(P + (size_t)i * S, 1, amask + (size_t)b * S, 1, S, P + (size_t)i * S);
        }
    /* the softmax backward needs the probabilities before their quantizer */
    memcpy(c->probs_pre, c->probs, (size_t)B * NH * S * S * sizeof(float));
    HOOK(li, QD_BERT_SITE_PROBS, c->probs, (size_t)B * NH * S * S);
    for (size_t bh = 0; bh < (size_t)B * NH; bh++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, S, d, S, 1.0f, c->probs + bh * S * S, S,
                    c->v + bh * S * d, d, 0.0f, tmp + bh * S * d, d);
    merge_heads(tmp, B, S, NH, d, c->ctx);
    HOOK(li, QD_BERT_SITE_CTX, c->ctx, TH);
    linear(c->ctx, L->wo, L->bo, T, H, H, tmp);
    for (size_t i = 0; i < TH; i++) tmp[i] += x[i];
    layernorm(tmp, L->ln1_g, L->ln1_b, T, H, cfg->ln_eps, c->h1, c->ln1_xhat, c->ln1_rstd);
    HOOK(li, QD_BERT_SITE_ATTN_LN, c->h1, TH);
    linear(c->h1, L->w1, L->b1, T, H, FF, c->pre);
    for (size_t i = 0; i < (size_t)T * FF; i++) c->inter[i] = qd_gelu(c->pre[i]);
    HOOK(li, QD_BERT_SITE_GELU, c->inter, (size_t)T * FF);
    linear(c->inter, L->w2, L->b2, T, FF, H, tmp2);
    for (size_t i = 0; i < TH; i++) tmp2[i] += c->h1[i];
    layernorm(tmp2, L->ln2_g, L->ln2_b, T, H, cfg->ln_eps, y, c->ln2_xhat, c->ln2_rstd);
    HOOK(li, QD_BERT_SITE_OUT_LN, y, TH);
    free(tmp);
    free(tmp2);
    free(amask);
    if (!cache) qd_bert_cache_free(&own);
    return QD_OK;
}

static void colsum_acc(const float *g, int T, int n, float *db) {
    if (!db) return;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < n; i++) db[i] += g[(size_t)t * n + i];
}
/* dW[out,in] += g[T,out]^T x[T,in] */
static void wgrad_acc(const float *g, const float *x, int T, int in, int out, float *dW) {
    if (!dW) return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, T, 1.0f, g, out, x, in, 1.0f, dW, in);
}

qd_status qd_bert_layer_backward(const qd_bert_config *cfg, const qd_bert_layer *L, const qd_bert_layer_cache *c,
                                 const int *mask, const float *dy, float *dx, qd_bert_layer_grads *g) {
    return qd_bert_layer_backward_ex(cfg, L, 0, c, mask, dy, dx, g, NULL, NULL);
}

#define BHOOK(site, p, off, n) do { if (bhook) bhook(bctx, li, (site), (p), (off), (n)); } while (0)

qd_status qd_bert_layer_backward_ex(const qd_bert_config *cfg, const qd_bert_layer *L, int li,
                                    const qd_bert_layer_cache *c, const int *mask, const float *dy, float *dx,
                                    qd_bert_layer_grads *g, qd_bert_act_bhook bhook, void *bctx) {
    (void)mask; /* padded keys have probability 0, so their score gradient P*(...) is 0 */
    const int B = c->B, S = c->S, H = cfg->hidden, NH = cfg->heads, d = H / NH, FF = cfg->intermediate, T = B * S;
    const size_t TH = (size_t)T * H, TF = (size_t)T * FF;
    qd_bert_layer_grads none = {0};
    if (!g) g = &none;
    float *dz2 = malloc(TH * 4), *dint = malloc(TF * 4), *dh1 = malloc(TH * 4), *dz1 = malloc(TH * 4),
          *dctx = malloc(TH * 4), *dq = malloc(TH * 4), *dk = malloc(TH * 4), *dv = malloc(TH * 4),
          *dP = malloc((size_t)S * S * 4), *tmp = malloc(TH * 4);
    if (!dz2 || !dint || !dh1 || !dz1 || !dctx || !dq || !dk || !dv || !dP || !tmp) {
        free(dz2); free(dint); free(dh1); free(dz1); free(dctx); free(dq); free(dk); free(dv); free(dP); free(tmp);
        return qd_errorf(QD_ERR_INTERNAL, "BERT layer backward: out of memory");
    }
    /* output LayerNorm and FFN; the OUT_LN quantizer's backward runs on a copy of dy */
    float *dyq = NULL;
    if (bhook) {
        dyq = malloc(TH * 4);
        if (!dyq) {
            free(dz2); free(dint); free(dh1); free(dz1); free(dctx); free(dq); free(dk); free(dv); free(dP); free(tmp);
            return qd_errorf(QD_ERR_INTERNAL, "BERT layer backward: out of memory");
        }
        memcpy(dyq, dy, TH * 4);
        BHOOK(QD_BERT_SITE_OUT_LN, dyq, 0, TH);
        dy = dyq;
    }
    layernorm_backward(dy, c->ln2_xhat, c->ln2_rstd, L->ln2_g, T, H, dz2, g->ln2_g, g->ln2_b);
    wgrad_acc(dz2, c->inter, T, FF, H, g->w2);
    colsum_acc(dz2, T, H, g->b2);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, FF, H, 1.0f, dz2, H, L->w2, FF, 0.0f, dint, FF);
    BHOOK(QD_BERT_SITE_GELU, dint, 0, TF);
    for (size_t i = 0; i < TF; i++) dint[i] *= qd_gelu_grad(c->pre[i]);
    wgrad_acc(dint, c->h1, T, H, FF, g->w1);
    colsum_acc(dint, T, FF, g->b1);
    memcpy(dh1, dz2, TH * 4); /* residual */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, H, FF, 1.0f, dint, FF, L->w1, H, 1.0f, dh1, H);
    BHOOK(QD_BERT_SITE_ATTN_LN, dh1, 0, TH);
    /* attention output LayerNorm and dense */
    layernorm_backward(dh1, c->ln1_xhat, c->ln1_rstd, L->ln1_g, T, H, dz1, g->ln1_g, g->ln1_b);
    wgrad_acc(dz1, c->ctx, T, H, H, g->wo);
    colsum_acc(dz1, T, H, g->bo);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, H, H, 1.0f, dz1, H, L->wo, H, 0.0f, tmp, H);
    BHOOK(QD_BERT_SITE_CTX, tmp, 0, TH);
    split_heads(tmp, B, S, NH, d, dctx);
    /* attention core, per (batch, head); dq/dk/dv in head layout */
    const float alpha = 1.0f / sqrtf((float)d);
    for (size_t bh = 0; bh < (size_t)B * NH; bh++) {
        const float *P = c->probs + bh * S * S, *Pp = c->probs_pre + bh * S * S, *Q = c->q + bh * S * d, *K = c->k + bh * S * d, *V = c->v + bh * S * d;
        const float *dC = dctx + bh * S * d;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, S, S, d, 1.0f, dC, d, V, d, 0.0f, dP, S);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, S, d, S, 1.0f, P, S, dC, d, 0.0f, dv + bh * S * d, d);
        BHOOK(QD_BERT_SITE_PROBS, dP, bh * S * S, (size_t)S * S);
        for (int i = 0; i < S; i++) /* softmax backward on the pre-quantizer P: dS = P * (dP - sum(dP * P)) */
            qd_softmax_backward_row(Pp + (size_t)i * S, dP + (size_t)i * S, 1, S, dP + (size_t)i * S, 0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, S, d, S, alpha, dP, S, K, d, 0.0f, dq + bh * S * d, d);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, S, d, S, alpha, dP, S, Q, d, 0.0f, dk + bh * S * d, d);
    }
    BHOOK(QD_BERT_SITE_Q, dq, 0, TH);
    BHOOK(QD_BERT_SITE_K, dk, 0, TH);
    BHOOK(QD_BERT_SITE_V, dv, 0, TH);
    /* back to [T,H] (reuse dctx/dz2/dh1 as merged buffers) */
    float *mq = dctx, *mk = dz2, *mv = dh1;
    merge_heads(dq, B, S, NH, d, mq);
    merge_heads(dk, B, S, NH, d, mk);
    merge_heads(dv, B, S, NH, d, mv);
    wgrad_acc(mq, c->x, T, H, H, g->wq);
    colsum_acc(mq, T, H, g->bq);
    wgrad_acc(mk, c->x, T, H, H, g->wk);
    colsum_acc(mk, T, H, g->bk);
    wgrad_acc(mv, c->x, T, H, H, g->wv);
    colsum_acc(mv, T, H, g->bv);
    memcpy(dx, dz1, TH * 4); /* residual */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, H, H, 1.0f, mq, H, L->wq, H, 1.0f, dx, H);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, H, H, 1.0f, mk, H, L->wk, H, 1.0f, dx, H);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, H, H, 1.0f, mv, H, L->wv, H, 1.0f, dx, H);
    free(dz2); free(dint); free(dh1); free(dz1); free(dctx); free(dq); free(dk); free(dv); free(dP); free(tmp);
    free(dyq);
    return QD_OK;
}

qd_status qd_bert_encode(const qd_bert_model *m, const int *ids, const int *type_ids, const int *mask, int B, int S,
                         float *out, qd_bert_act_hook hook, void *hctx) {
    const qd_bert_config *cfg = &m->cfg;
    if (S > cfg->max_pos) return qd_errorf(QD_ERR_DATA, "BERT: sequence length %d above max_position_embeddings %d", S, cfg->max_pos);
    for (int i = 0; i < B * S; i++)
        if (ids[i] < 0 || ids[i] >= cfg->vocab || (type_ids && (type_ids[i] < 0 || type_ids[i] >= cfg->type_vocab)))
            return qd_errorf(QD_ERR_DATA, "BERT: token %d: id %d / type %d out of range", i, ids[i], type_ids ? type_ids[i] : 0);
    qd_bert_layer_cache c;
    QD_TRY(qd_bert_cache_alloc(cfg, B, S, &c));
    float *buf = malloc((size_t)B * S * cfg->hidden * sizeof(float));
    if (!buf) { qd_bert_cache_free(&c); return qd_errorf(QD_ERR_INTERNAL, "BERT: out of memory"); }
    qd_bert_embed(m, ids, type_ids, B, S, out, hook, hctx);
    qd_status rc = QD_OK;
    for (int l = 0; l < cfg->layers && rc == QD_OK; l++) {
        rc = qd_bert_layer_forward(cfg, &m->layer[l], l, out, mask, B, S, buf, &c, hook, hctx);
        memcpy(out, buf, (size_t)B * S * cfg->hidden * sizeof(float));
    }
    free(buf);
    qd_bert_cache_free(&c);
    return rc;
}

void qd_bert_mean_pool(const float *hid, const int *mask, int B, int S, int H, int l2norm, float *out) {
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * H;
        double cnt = 0;
        for (int i = 0; i < H; i++) o[i] = 0;
        for (int s = 0; s < S; s++)
            if (mask[b * S + s]) {
                cnt += 1;
                for (int i = 0; i < H; i++) o[i] += hid[((size_t)b * S + s) * H + i];
            }
        float inv = (float)(1.0 / (cnt > 1e-9 ? cnt : 1e-9)); /* sentence-transformers clamp(min=1e-9) */
        double nrm = 0;
        for (int i = 0; i < H; i++) { o[i] *= inv; nrm += (double)o[i] * o[i]; }
        if (l2norm) {
            float sc = (float)(1.0 / fmax(sqrt(nrm), 1e-12)); /* F.normalize eps */
            for (int i = 0; i < H; i++) o[i] *= sc;
        }
    }
}

qd_status qd_bert_classify(const qd_bert_model *m, const float *hid, int B, int S, float *logits) {
    if (!m->pool_w || !m->cls_w) return qd_errorf(QD_ERR_DATA, "BERT: checkpoint has no pooler/classifier head");
    int H = m->cfg.hidden, NL = m->cfg.num_labels;
    float *cls = calloc((size_t)B * H * 2, sizeof(float));
    if (!cls) return qd_errorf(QD_ERR_INTERNAL, "BERT: out of memory");
    for (int b = 0; b < B; b++) memcpy(cls + (size_t)b * H, hid + (size_t)b * S * H, (size_t)H * sizeof(float));
    float *pooled = cls + (size_t)B * H;
    linear(cls, m->pool_w, m->pool_b, B, H, H, pooled);
    for (size_t i = 0; i < (size_t)B * H; i++) pooled[i] = tanhf(pooled[i]);
    linear(pooled, m->cls_w, m->cls_b, B, H, NL, logits);
    free(cls);
    return QD_OK;
}

typedef struct { int idx, len; } len_idx;

void qd_bert_eval_record_free(qd_bert_eval_record *r) {
    if (!r) return;
    for (int i = 0; r->tok && i < r->cap; i++) free(r->tok[i]);
    free(r->tok); free(r->len); free(r->out);
    const qd_bert_model *emb = r->emb;
    memset(r, 0, sizeof *r);
    r->emb = emb;
}

/* Sentences base..base+n-1 get slots (results [nout] each). */
static qd_status record_reserve(qd_bert_eval_record *r, int need, int nout) {
    if (r->n > 0 && r->nout != nout)
        return qd_errorf(QD_ERR_INTERNAL, "BERT evaluation record: result width %d after %d", nout, r->nout);
    r->nout = nout;
    if (need <= r->cap) return QD_OK;
    int cap = need > 2 * r->cap ? need : 2 * r->cap;
    int *len = realloc(r->len, sizeof(int) * (size_t)cap);
    if (len) r->len = len;
    float **tok = realloc(r->tok, sizeof(float *) * (size_t)cap);
    if (tok) r->tok = tok;
    float *out = realloc(r->out, sizeof(float) * (size_t)cap * (size_t)nout);
    if (out) r->out = out;
    if (!len || !tok || !out) return qd_errorf(QD_ERR_INTERNAL, "BERT evaluation record: out of host memory");
    for (int i = r->cap; i < cap; i++) { r->tok[i] = NULL; r->len[i] = 0; }
    r->cap = cap;
    return QD_OK;
}

/* One padded batch: the embeddings the graph encoder fed (same function, same tables, so the
 * same bytes) cut to each sentence's valid tokens, and its host result. */
static qd_status record_batch(qd_bert_eval_record *r, const len_idx *o, int nb, int S, const int *bid,
                              const float *res, int nout) {
    const int H = r->emb->cfg.hidden;
    float *x = malloc(sizeof(float) * (size_t)nb * (size_t)S * (size_t)H);
    if (!x) return qd_errorf(QD_ERR_INTERNAL, "BERT evaluation record: out of host memory");
    qd_bert_embed(r->emb, bid, NULL, nb, S, x, NULL, NULL);
    for (int b = 0; b < nb; b++) {
        int k = r->n + o[b].idx, len = o[b].len;
        free(r->tok[k]);
        r->tok[k] = malloc(sizeof(float) * (size_t)len * (size_t)H + 1);
        if (!r->tok[k]) { free(x); return qd_errorf(QD_ERR_INTERNAL, "BERT evaluation record: out of host memory"); }
        memcpy(r->tok[k], x + (size_t)b * S * H, sizeof(float) * (size_t)len * (size_t)H);
        r->ntok += len - r->len[k];
        r->len[k] = len;
        memcpy(r->out + (size_t)k * nout, res + (size_t)b * nout, sizeof(float) * (size_t)nout);
    }
    free(x);
    return QD_OK;
}

static int cmp_len(const void *a, const void *b) {
    const len_idx *x = a, *y = b;
    return x->len != y->len ? y->len - x->len : x->idx - y->idx;
}

/* Encode n single sentences in length-sorted batches; per sentence either the mean-pooled,
 * L2-normalised embedding (classify == 0, out [n, H]) or the classifier logits ([CLS] -> pooler
 * -> classifier, classify != 0, out [n, num_labels]). */
static qd_status encode_sentences(const qd_bert_model *m, const char *const *sent, int n, int max_len, int batch,
                                  int classify, float *out, const qd_bert_encoder *enc) {
    if (!m->tok) return qd_errorf(QD_ERR_DATA, "BERT: model has no vocab.txt (tokenizer)");
    if (classify && (!m->pool_w || !m->cls_w || m->cfg.num_labels < 1))
        return qd_errorf(QD_ERR_DATA, "BERT: checkpoint has no pooler/classifier head (bert.pooler.dense.*, classifier.*)");
    if (max_len > m->cfg.max_pos) max_len = m->cfg.max_pos;
    if (batch < 1) batch = 1;
    const int H = m->cfg.hidden, NO = classify ? m->cfg.num_labels : H;
    int *ids = malloc((size_t)n * max_len * sizeof(int)), *tt = malloc((size_t)max_len * sizeof(int)),
        *mk = malloc((size_t)max_len * sizeof(int));
    len_idx *ord = malloc((size_t)n * sizeof *ord);
    int *bid = malloc((size_t)batch * max_len * sizeof(int)), *bmask = malloc((size_t)batch * max_len * sizeof(int));
    float *hid = malloc((size_t)batch * max_len * H * sizeof(float)), *emb = malloc((size_t)batch * (H > NO ? H : NO) * sizeof(float));
    qd_status rc = QD_OK;
    if (!ids || !tt || !mk || !ord || !bid || !bmask || !hid || !emb) rc = qd_errorf(QD_ERR_INTERNAL, "BERT: out of memory");
    for (int i = 0; rc == QD_OK && i < n; i++) {
        qd_bert_encoding e = {ids + (size_t)i * max_len, tt, mk, 0};
        rc = qd_wp_encode(m->tok, sent[i], NULL, max_len, 0, &e);
        ord[i].idx = i;
        ord[i].len = e.len;
    }
    /* longest first, like sentence-transformers: each batch pads to its own longest sentence */
    if (rc == QD_OK) qsort(ord, (size_t)n, sizeof *ord, cmp_len);
    if (rc == QD_OK && enc->rec) rc = record_reserve(enc->rec, enc->rec->n + n, NO);
    for (int s0 = 0; rc == QD_OK && s0 < n; s0 += batch) {
        int nb = n - s0 < batch ? n - s0 : batch, S = ord[s0].len;
        for (int b = 0; b < nb; b++) {
            const int *src = ids + (size_t)ord[s0 + b].idx * max_len;
            for (int s = 0; s < S; s++) {
                int keep = s < ord[s0 + b].len;
                bid[b * S + s] = keep ? src[s] : 0;
                bmask[b * S + s] = keep;
            }
        }
        rc = enc->encode(enc->ctx, bid, bmask, nb, S, hid);
        if (rc != QD_OK) break;
        if (classify) rc = qd_bert_classify(m, hid, nb, S, emb);
        else qd_bert_mean_pool(hid, bmask, nb, S, H, 1, emb);
        if (rc != QD_OK) break;
        for (int b = 0; b < nb; b++)
            memcpy(out + (size_t)ord[s0 + b].idx * NO, emb + (size_t)b * NO, (size_t)NO * sizeof(float));
        if (enc->rec) rc = record_batch(enc->rec, ord + s0, nb, S, bid, emb, NO);
    }
    if (rc == QD_OK && enc->rec) enc->rec->n += n;
    free(ids); free(tt); free(mk); free(ord); free(bid); free(bmask); free(hid); free(emb);
    return rc;
}

/* The host encoder (qd_bert_encode with a hook) as a qd_bert_encoder. */
typedef struct host_enc {
    const qd_bert_model *m;
    qd_bert_act_hook hook;
    void *hctx;
} host_enc;
static qd_status host_encode(void *ctx, const int *ids, const int *mask, int B, int S, float *hid) {
    const host_enc *h = ctx;
    return qd_bert_encode(h->m, ids, NULL, mask, B, S, hid, h->hook, h->hctx);
}

qd_status qd_bert_embed_sentences(const qd_bert_model *m, const char *const *sent, int n, int max_len, int batch,
                                  float *out, qd_bert_act_hook hook, void *hctx) {
    host_enc h = {m, hook, hctx};
    qd_bert_encoder e = {host_encode, &h, NULL};
    return encode_sentences(m, sent, n, max_len, batch, 0, out, &e);
}

qd_status qd_bert_classify_sentences(const qd_bert_model *m, const char *const *sent, int n, int max_len, int batch,
                                     float *logits, qd_bert_act_hook hook, void *hctx) {
    host_enc h = {m, hook, hctx};
    qd_bert_encoder e = {host_encode, &h, NULL};
    return encode_sentences(m, sent, n, max_len, batch, 1, logits, &e);
}

qd_status qd_bert_sentences_enc(const qd_bert_model *m, const char *const *sent, int n, int max_len, int batch,
                                int classify, const qd_bert_encoder *enc, float *out) {
    return encode_sentences(m, sent, n, max_len, batch, classify, out, enc);
}
