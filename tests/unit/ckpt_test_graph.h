/* tests/unit/ckpt_test_graph.h: a tiny graph holding only quantizer state, enough for the
 * checkpoint reader (src/recon/ckpt.c): two weight quantizers (2 x 3 and 3 x 2 elements) and two
 * activation quantizers. Shared by tests/unit/test_ckpt.c and tests/fuzz/fuzz_checkpoint.c. */
#ifndef QD_CKPT_TEST_GRAPH_H
#define QD_CKPT_TEST_GRAPH_H

#include <stdlib.h>
#include "qdrop/graph.h"

static qd_graph *ckpt_test_graph(void) {
    qd_graph *g = qd_graph_new();
    if (!g) return NULL;
    static const int ch[2] = {2, 3}, per[2] = {3, 2};
    g->nwq = 2;
    g->wq = calloc(2, sizeof *g->wq);
    g->nact = 2;
    g->act = calloc(2, sizeof *g->act);
    if (!g->wq || !g->act) { qd_graph_free(g); return NULL; }
    for (int k = 0; k < 2; k++) {
        qd_weight_quant *q = &g->wq[k];
        q->bits = 4;
        q->channels = ch[k];
        q->per_channel = per[k];
        q->scale = calloc((size_t)ch[k], sizeof(float));
        q->zero_point = calloc((size_t)ch[k], sizeof(float));
        q->qweight = calloc((size_t)ch[k] * (size_t)per[k], sizeof(float));
        if (!q->scale || !q->zero_point || !q->qweight) { qd_graph_free(g); return NULL; }
        g->act[k].bits = 4;
        g->act[k].qmax = 15;
    }
    return g;
}

#endif
