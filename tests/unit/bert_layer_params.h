/* tests/unit/bert_layer_params.h: the 16 parameter tensors of one BERT encoder layer as arrays
 * of pointers (names, layer/gradient fields), shared by the CPU layer test and the CUDA twin. */
#ifndef QD_TEST_BERT_LAYER_PARAMS_H
#define QD_TEST_BERT_LAYER_PARAMS_H

#include <string.h>
#include "qdrop/bert.h"

enum { NP = 16 };
static const char *k_names[NP] = {"wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo", "ln1_g", "ln1_b",
                                  "w1", "b1", "w2", "b2", "ln2_g", "ln2_b"};

static inline void layer_ptrs(qd_bert_layer *L, float ***p) {
    float **q[NP] = {&L->wq, &L->bq, &L->wk, &L->bk, &L->wv, &L->bv, &L->wo, &L->bo, &L->ln1_g, &L->ln1_b,
                     &L->w1, &L->b1, &L->w2, &L->b2, &L->ln2_g, &L->ln2_b};
    memcpy(p, q, sizeof q);
}
static inline void grad_ptrs(qd_bert_layer_grads *g, float ***p) {
    float **q[NP] = {&g->wq, &g->bq, &g->wk, &g->bk, &g->wv, &g->bv, &g->wo, &g->bo, &g->ln1_g, &g->ln1_b,
                     &g->w1, &g->b1, &g->w2, &g->b2, &g->ln2_g, &g->ln2_b};
    memcpy(p, q, sizeof q);
}

#endif
