/* src/graph/fold_bn.c: BatchNorm folding (§8.6) and graph simplification.
 *
 * Folding happens before any quantizer exists, so range search, AdaRound and everything else act
 * on the folded weights; biases stay FP (§8.6). The arithmetic follows Q2's fold_bn.py in float32
 * and in the same order: sigma = sqrt(var + eps); W' = W * (gamma / sigma);
 * b' = beta - gamma * mu / sigma (+ gamma * b / sigma when the layer had a bias).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph_internal.h"
#include "qdrop/graph.h"

static const char *src(const qd_graph *g) { return g->source_path ? g->source_path : "graph"; }

/* Drop Identity nodes (Identity, Dropout and float->float Cast map to it) by rewiring their
 * consumers. Constants were already folded by the reader. */
qd_status qd_graph_simplify(qd_graph *g) {
    if (g->nnodes == 0) return QD_OK;
    unsigned char *dead = calloc((size_t)g->nnodes, 1);
    if (!dead) return qd_errorf(QD_ERR_INTERNAL, "simplify: out of memory");
    int any = 0;
    for (int i = 0; i < g->nnodes; i++) {
        qd_node *n = &g->nodes[i];
        if (n->op == QD_OP_CONSTANT && n->noutputs > 0 && n->outputs[0] >= 0 && g->values[n->outputs[0]].is_const) {
            dead[i] = 1; /* a constant that carries its own data */
            any = 1;
            continue;
        }
        if (n->op != QD_OP_IDENTITY || n->ninputs < 1 || n->noutputs < 1) continue;
        int in = n->inputs[0], out = n->outputs[0];
        if (in < 0 || out < 0) continue;
        /* Keep an Identity that maps a graph input straight to a graph output (nothing to rewire to). */
        if (qd_graph_is_output(g, out) && qd_graph_is_output(g, in)) continue;
        if (qd_graph_is_output(g, out)) {
            /* Keep the output's name: let the producer of `in` write `out` directly when `in` is
             * an internal value nobody else reads. */
            int p = g->values[in].producer;
            int readers = 0;
            for (int j = 0; j < g->nnodes; j++)
                for (int k = 0; k < g->nodes[j].ninputs; k++) readers += g->nodes[j].inputs[k] == in;
            if (p < 0 || readers != 1 || g->values[in].is_const) continue;
            for (int k = 0; k < g->nodes[p].noutputs; k++)
                if (g->nodes[p].outputs[k] == in) g->nodes[p].outputs[k] = out;
        } else {
            qd_graph_replace_uses(g, out, in);
        }
        dead[i] = 1;
        any = 1;
    }
    qd_status st = any ? qd_graph_remove_nodes(g, dead) : QD_OK;
    free(dead);
    if (!any) qd_graph_recount(g);
    return st;
}

/* Scales per output channel and builds the new bias. Returns 0 when the layer cannot be folded. */
static qd_status fold_one(qd_graph *g, int li, int bi, int *folded) {
    qd_node *L = &g->nodes[li];
    qd_node *B = &g->nodes[bi];
    *folded = 0;
    if (L->ninputs < 2 || L->inputs[1] < 0) return QD_OK;
    qd_value *W = &g->values[L->inputs[1]];
    if (!W->is_const || !W->fdata || W->nconsumers != 1) return QD_OK;
    int64_t C, per, stride_c, stride_e; /* element (c, e) of W is at c*stride_c + e*stride_e */
    if (L->op == QD_OP_CONV) {
        if (W->ndim != 4) return QD_OK;
        C = W->dims[0];
        per = qd_value_numel(W) / (C ? C : 1);
        stride_c = per;
        stride_e = 1;
    } else if (L->op == QD_OP_GEMM) {
        if (W->ndim != 2) return QD_OK;
        if (L->a.trans_b) { C = W->dims[0]; per = W->dims[1]; stride_c = per; stride_e = 1; }
        else { C = W->dims[1]; per = W->dims[0]; stride_c = 1; stride_e = C; }
    } else {
        return QD_OK;
    }
    const float *gam = g->values[B->inputs[1]].fdata, *bet = g->values[B->inputs[2]].fdata;
    const float *mu = g->values[B->inputs[3]].fdata, *var = g->values[B->inputs[4]].fdata;
    if (qd_value_numel(&g->values[B->inputs[1]]) != C) return QD_OK;
    float eps = B->a.epsilon;

    /* existing bias (Conv input 2 / Gemm C): per-channel or scalar only */
    const float *oldb = NULL;
    int64_t oldn = 0;
    if (L->ninputs > 2 && L->inputs[2] >= 0) {
        qd_value *bv = &g->values[L->inputs[2]];
        if (!bv->is_const || !bv->fdata) return QD_OK;
        oldn = qd_value_numel(bv);
        if (oldn != C && oldn != 1) return QD_OK;
        oldb = bv->fdata;
    }
    float *nb = malloc(sizeof(float) * (size_t)C);
    if (!nb) return qd_errorf(QD_ERR_INTERNAL, "fold_bn: out of memory");
    float gemm_scale = L->op == QD_OP_GEMM ? L->a.alpha : 1.0f; /* Gemm: alpha folds into W */
    float gemm_beta = L->op == QD_OP_GEMM ? L->a.beta : 1.0f;
    for (int64_t c = 0; c < C; c++) {
        float sd = sqrtf(var[c] + eps);
        float k = gam[c] / sd;
        for (int64_t e = 0; e < per; e++) {
            float *p = &W->fdata[c * stride_c + e * stride_e];
            *p = gemm_scale == 1.0f ? *p * k : (*p * gemm_scale) * k;
        }
        float beta = bet[c] - gam[c] * mu[c] / sd;
        if (oldb) {
            float b0 = oldb[oldn == 1 ? 0 : c];
            if (gemm_beta != 1.0f) b0 *= gemm_beta;
            nb[c] = gam[c] * b0 / sd + beta;
        } else {
            nb[c] = beta;
        }
    }
    if (L->op == QD_OP_GEMM) L->a.alpha = L->a.beta = 1.0f;

    if (oldb && oldn == C && g->values[L->inputs[2]].nconsumers == 1) {
        qd_value *bv = &g->values[L->inputs[2]];
        memcpy(bv->fdata, nb, sizeof(float) * (size_t)C);
        free(nb);
    } else {
        char name[512];
        snprintf(name, sizeof name, "%s.folded_bias", L->name ? L->name : "layer");
        int v = qd_graph_add_value(g, name);
        if (v < 0) { free(nb); return qd_errorf(QD_ERR_INTERNAL, "fold_bn: out of memory"); }
        L = &g->nodes[li]; /* values moved; nodes did not, but keep it obvious */
        qd_value *bv = &g->values[v];
        bv->is_const = 1;
        bv->dtype = QD_DT_FLOAT;
        bv->ndim = 1;
        bv->dims[0] = C;
        bv->fdata = nb;
        if (L->ninputs < 3) {
            int *ni = realloc(L->inputs, sizeof(int) * 3);
            if (!ni) return qd_errorf(QD_ERR_INTERNAL, "fold_bn: out of memory");
            L->inputs = ni;
            for (int k = L->ninputs; k < 3; k++) L->inputs[k] = -1;
            L->ninputs = 3;
        }
        L->inputs[2] = v;
    }
    *folded = 1;
    return QD_OK;
}

qd_status qd_graph_fold_bn(qd_graph *g) {
    qd_graph_recount(g);
    if (g->nnodes == 0) return QD_OK;
    unsigned char *dead = calloc((size_t)g->nnodes, 1);
    if (!dead) return qd_errorf(QD_ERR_INTERNAL, "fold_bn: out of memory");
    int any = 0;
    for (int i = 0; i < g->nnodes; i++) {
        qd_node *B = &g->nodes[i];
        if (B->op != QD_OP_BATCHNORM || B->ninputs < 5 || B->inputs[0] < 0) continue;
        int y = B->inputs[0];
        int li = g->values[y].producer;
        if (li < 0) continue;
        const qd_node *L = &g->nodes[li];
        /* §8.6: only a BN directly after a conv/linear whose output nothing else reads. */
        if (L->op != QD_OP_CONV && L->op != QD_OP_GEMM) continue;
        if (g->values[y].nconsumers != 1 || qd_graph_is_output(g, y)) continue;
        for (int k = 1; k < 5; k++)
            if (B->inputs[k] < 0 || !g->values[B->inputs[k]].fdata) {
                free(dead);
                return qd_errorf(QD_ERR_UNSUPPORTED, "%s: node '%s' (BatchNormalization): non-constant parameters",
                                 src(g), B->name);
            }
        int folded = 0;
        qd_status st = fold_one(g, li, i, &folded);
        if (st != QD_OK) { free(dead); return st; }
        if (!folded) continue;
        /* The layer now writes the BN's output value directly. */
        B = &g->nodes[i];
        int out = B->outputs[0];
        qd_node *Lw = &g->nodes[li];
        for (int k = 0; k < Lw->noutputs; k++)
            if (Lw->outputs[k] == y) Lw->outputs[k] = out;
        dead[i] = 1;
        any = 1;
        qd_graph_recount(g);
    }
    qd_status st = any ? qd_graph_remove_nodes(g, dead) : QD_OK;
    free(dead);
    return st;
}
