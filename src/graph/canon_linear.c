/* src/graph/canon_linear.c: one internal layout for every fully connected layer.
 *
 * Exporters write a classifier three ways: Gemm with transB = 1 (torch: W is [out, in]), Gemm
 * with transB = 0 and MatMul (W is [in, out]; TensorFlow/Keras converters, the ONNX model zoo's
 * mnist-8), the last two often followed by a bias Add. AdaRound, the weight range search, the
 * checkpoints and the CUDA kernels all index a weight as channel-major (output channel on axis 0,
 * channel = i / per_channel). Instead of teaching each of them a second layout, every such layer
 * is rewritten once, at load, into the form they already handle:
 *
 *   Gemm(A, W[K,N], transB=0)  ->  Gemm(A, W'[N,K], transB=1)          W' = transpose(W)
 *   MatMul(A[M,K], W[K,N])     ->  Gemm(A, W'[N,K], transB=1)
 *   MatMul + Add(bias [N])     ->  Gemm(A, W'[N,K], bias, transB=1)    (the Add node disappears)
 *
 * The three spellings of one classifier therefore become the same internal graph: same weight
 * values, same quantizer (per output channel, axis 0), same arithmetic, bit-identical results.
 * The transpose is exact (a permutation), so the FP32 model is unchanged. The QDQ export writes
 * the layer as the Gemm transB = 1 it now is (a valid ONNX model computing the same function;
 * docs/export.md). A MatMul on a rank > 2 activation or with a rank > 2 weight has no Gemm form;
 * it is left alone and the quantizer placement rejects it (qd_graph_place_quantizers).
 *
 * Runs after shape inference (the activation rank decides) and before BN folding (so a
 * BatchNormalization after a MatMul classifier folds like one after a Gemm).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph_internal.h"
#include "qdrop/graph.h"

static const char *src(const qd_graph *g) { return g->source_path ? g->source_path : "graph"; }

/* A layer this pass rewrites: MatMul/Gemm whose input 0 is a 2-D activation and input 1 a 2-D
 * float constant, not already in [out, in] form. */
static int needs_canon(const qd_graph *g, const qd_node *n) {
    if (n->op != QD_OP_MATMUL && n->op != QD_OP_GEMM) return 0;
    if (n->ninputs < 2 || n->inputs[0] < 0 || n->inputs[1] < 0 || n->noutputs < 1) return 0;
    const qd_value *x = &g->values[n->inputs[0]], *w = &g->values[n->inputs[1]];
    if (x->is_const || x->ndim != 2) return 0;
    if (!w->is_const || !w->fdata || w->dtype != QD_DT_FLOAT || w->ndim != 2) return 0;
    if (n->op == QD_OP_GEMM) return !n->a.trans_b && !n->a.trans_a;
    return 1;
}

/* The constant bias an Add adds to `y` (the MatMul output [M, N]): a float constant of N elements
 * ([N] or [1, N]) or a scalar, which is exactly what Gemm's C broadcasts. -1 when not a bias Add. */
static int bias_of_add(const qd_graph *g, const qd_node *add, int y, int64_t N) {
    if (add->op != QD_OP_ADD || add->ninputs != 2 || add->noutputs < 1) return -1;
    int other = add->inputs[0] == y ? add->inputs[1] : add->inputs[1] == y ? add->inputs[0] : -1;
    if (other < 0 || other == y) return -1;
    const qd_value *b = &g->values[other];
    if (!b->is_const || !b->fdata || b->dtype != QD_DT_FLOAT) return -1;
    int64_t nb = qd_value_numel(b);
    if (b->ndim == 0 || (b->ndim == 1 && (nb == N || nb == 1))) return other;
    if (b->ndim == 2 && b->dims[0] == 1 && (b->dims[1] == N || b->dims[1] == 1)) return other;
    return -1;
}

/* Give node n the transposed weight W'[N, K] of W[K, N]: in place when n is W's only reader,
 * else as a new constant "<W>_t" (other readers keep the original). */
static qd_status transpose_weight(qd_graph *g, qd_node *n) {
    int wid = n->inputs[1];
    qd_value *w = &g->values[wid];
    const int64_t K = w->dims[0], N = w->dims[1];
    float *t = malloc(sizeof(float) * (size_t)(K * N > 0 ? K * N : 1));
    if (!t) return qd_errorf(QD_ERR_INTERNAL, "%s: node '%s': out of memory transposing the weight", src(g), n->name);
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < N; j++) t[j * K + k] = w->fdata[k * N + j];
    if (w->nconsumers <= 1) {
        free(w->fdata);
        w->fdata = t;
        w->dims[0] = N;
        w->dims[1] = K;
        return QD_OK;
    }
    char name[512];
    snprintf(name, sizeof name, "%s_t", w->name ? w->name : "weight");
    for (int s = 2; qd_graph_find_value(g, name) >= 0; s++)
        snprintf(name, sizeof name, "%s_t%d", w->name ? w->name : "weight", s);
    int nid = qd_graph_add_value(g, name);
    if (nid < 0) {
        free(t);
        return qd_errorf(QD_ERR_INTERNAL, "%s: node '%s': out of memory", src(g), n->name);
    }
    qd_value *nv = &g->values[nid]; /* add_value may have moved the array */
    nv->dtype = QD_DT_FLOAT;
    nv->ndim = 2;
    nv->dims[0] = N;
    nv->dims[1] = K;
    nv->is_const = 1;
    nv->fdata = t;
    nv->producer = -1;
    nv->act_quant = -1;
    n->inputs[1] = nid;
    qd_graph_recount(g);
    return QD_OK;
}

qd_status qd_graph_canon_linear(qd_graph *g) {
    if (g->nnodes == 0) return QD_OK;
    qd_graph_recount(g);
    unsigned char *dead = calloc((size_t)g->nnodes, 1);
    if (!dead) return qd_errorf(QD_ERR_INTERNAL, "canon_linear: out of memory");
    int any_dead = 0;
    qd_status st = QD_OK;
    for (int i = 0; i < g->nnodes && st == QD_OK; i++) {
        qd_node *n = &g->nodes[i];
        if (!needs_canon(g, n)) continue;
        const int64_t N = g->values[n->inputs[1]].dims[1];
        if (n->op == QD_OP_MATMUL) {
            /* MatMul(A, W) == Gemm(A, W, alpha 1, beta 1, transA 0, transB 0); with a bias Add as
             * the only reader of its output, the Add becomes Gemm's C. */
            int y = n->outputs[0], add = -1, bias = -1;
            if (y >= 0 && g->values[y].nconsumers == 1 && !qd_graph_is_output(g, y)) {
                for (int j = i + 1; j < g->nnodes && add < 0; j++)
                    for (int k = 0; k < g->nodes[j].ninputs; k++)
                        if (g->nodes[j].inputs[k] == y) { add = j; break; }
                if (add >= 0) bias = bias_of_add(g, &g->nodes[add], y, N);
            }
            if (bias >= 0) {
                int *in = realloc(n->inputs, sizeof(int) * 3);
                if (!in) { st = qd_errorf(QD_ERR_INTERNAL, "canon_linear: out of memory"); break; }
                n->inputs = in;
                n->inputs[2] = bias;
                n->ninputs = 3;
                n->outputs[0] = g->nodes[add].outputs[0];
                dead[add] = 1;
                any_dead = 1;
                g->values[y].producer = -1;
                g->values[y].nconsumers = 0;
            } else if (n->ninputs > 2) {
                n->ninputs = 2; /* MatMul has exactly two inputs; nothing else to carry */
            }
            n->op = QD_OP_GEMM;
            n->a.alpha = 1.0f;
            n->a.beta = 1.0f;
            n->a.trans_a = 0;
        }
        st = transpose_weight(g, n);
        n = &g->nodes[i];
        n->a.trans_b = 1;
    }
    if (st == QD_OK && any_dead) st = qd_graph_remove_nodes(g, dead);
    else if (st == QD_OK) qd_graph_recount(g);
    free(dead);
    return st;
}
