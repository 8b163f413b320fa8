/* src/onnx/onnx_prepare.c: qd_graph_prepare, an ONNX file to a graph ready for planning: the
 * reader, then the graph passes in their fixed order. It lives beside the reader, above the
 * graph passes it calls, so src/graph never depends on the ONNX code. */
#include <stdlib.h>
#include <string.h>

#include "graph/graph_internal.h"
#include "qdrop/graph.h"

/* Drops nodes whose outputs reach no graph output (dead code, as ONNX Runtime skips it). Kept,
 * they would sit inside a reconstruction unit without contributing to its output, and a unit
 * whose last node is not the producer of its output cannot be trained. */
static qd_status prune_dead_nodes(qd_graph *g) {
    if (g->nnodes == 0) return QD_OK;
    unsigned char *need = calloc((size_t)g->nvalues + 1, 1);
    unsigned char *dead = malloc((size_t)g->nnodes);
    if (!need || !dead) {
        free(need);
        free(dead);
        return qd_errorf(QD_ERR_INTERNAL, "prune: out of memory");
    }
    for (int k = 0; k < g->noutputs; k++)
        if (g->outputs[k] >= 0) need[g->outputs[k]] = 1;
    memset(dead, 1, (size_t)g->nnodes);
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = g->nnodes - 1; i >= 0; i--) {
            const qd_node *n = &g->nodes[i];
            if (!dead[i]) continue;
            int live = 0;
            for (int k = 0; k < n->noutputs; k++) live |= n->outputs[k] >= 0 && need[n->outputs[k]];
            if (!live) continue;
            dead[i] = 0;
            changed = 1;
            for (int k = 0; k < n->ninputs; k++)
                if (n->inputs[k] >= 0) need[n->inputs[k]] = 1;
        }
    }
    int any = 0;
    for (int i = 0; i < g->nnodes; i++) any |= dead[i];
    qd_status st = any ? qd_graph_remove_nodes(g, dead) : QD_OK;
    free(need);
    free(dead);
    return st;
}

qd_status qd_graph_prepare(const char *path, qd_graph **out) {
    *out = NULL;
    qd_graph *g = NULL;
    QD_TRY(qd_onnx_load(path, &g));
    qd_status st = qd_graph_simplify(g);
    if (st == QD_OK) st = prune_dead_nodes(g);
    if (st == QD_OK) st = qd_graph_toposort(g);
    if (st == QD_OK) st = qd_graph_infer_shapes(g);
    if (st == QD_OK) st = qd_graph_canon_linear(g);
    if (st == QD_OK) st = qd_graph_fold_bn(g);
    if (st == QD_OK) st = qd_graph_find_units(g);
    if (st != QD_OK) {
        qd_graph_free(g);
        return st;
    }
    *out = g;
    return QD_OK;
}
