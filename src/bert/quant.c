/* src/bert/quant.c: simple min/max quantization baseline for BERT (no reconstruction):
 * Linear weights fake-quantized per output channel (rows of [out,in]) and embedding tables per
 * row, on the unsigned grid of §2 via qd_range_to_qparams/qd_fake_quant; activations at the §8.8
 * positions fake-quantized per tensor with the min/max of the tensor itself (dynamic ranges).
 * The QDrop reconstruction replaces both with learned AdaRound/LSQ parameters later. */
#include <math.h>

#include "bert/bert_internal.h"
#include "core/qmath.h"

static void fq_rows(float *w, int rows, int cols, int bits) {
    const int qmax = qd_qmax_for_bits(bits);
    for (int r = 0; r < rows; r++) {
        float *p = w + (size_t)r * cols, lo = INFINITY, hi = -INFINITY, s, z;
        for (int c = 0; c < cols; c++) { lo = fminf(lo, p[c]); hi = fmaxf(hi, p[c]); }
        qd_range_to_qparams(lo, hi, 0, qmax, &s, &z);
        for (int c = 0; c < cols; c++) p[c] = qd_fake_quant(p[c], s, z, 0.0f, (float)qmax);
    }
}

qd_status qd_bert_quantize_weights_minmax(qd_bert_model *m, int w_bits, int emb_bits) {
    if (w_bits < 2 || w_bits > 8 || emb_bits < 2 || emb_bits > 8)
        return qd_errorf(QD_ERR_CONFIG, "BERT quantization: bits must be in 2..8 (weights %d, embeddings %d)", w_bits, emb_bits);
    const qd_bert_config *c = &m->cfg;
    fq_rows(m->word_emb, c->vocab, c->hidden, emb_bits);
    fq_rows(m->pos_emb, c->max_pos, c->hidden, emb_bits);
    fq_rows(m->type_emb, c->type_vocab, c->hidden, emb_bits);
    for (int l = 0; l < c->layers; l++) {
        qd_bert_layer *L = &m->layer[l];
        fq_rows(L->wq, c->hidden, c->hidden, w_bits);
        fq_rows(L->wk, c->hidden, c->hidden, w_bits);
        fq_rows(L->wv, c->hidden, c->hidden, w_bits);
        fq_rows(L->wo, c->hidden, c->hidden, w_bits);
        fq_rows(L->w1, c->intermediate, c->hidden, w_bits);
        fq_rows(L->w2, c->hidden, c->intermediate, w_bits);
    }
    return QD_OK;
}

void qd_bert_dynamic_act_hook(void *ctx, int layer, qd_bert_site site, float *x, size_t n) {
    (void)layer;
    (void)site;
    const int bits = *(const int *)ctx, qmax = qd_qmax_for_bits(bits);
    float lo = INFINITY, hi = -INFINITY, s, z;
    for (size_t i = 0; i < n; i++) { lo = fminf(lo, x[i]); hi = fmaxf(hi, x[i]); }
    qd_range_to_qparams(lo, hi, 0, qmax, &s, &z);
    for (size_t i = 0; i < n; i++) x[i] = qd_fake_quant(x[i], s, z, 0.0f, (float)qmax);
}
