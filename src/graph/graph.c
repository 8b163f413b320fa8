/* src/graph/graph.c: graph IR construction, lookup, topological order and the prepare pipeline. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "graph/graph_internal.h"
#include "qdrop/graph.h"

static const char *const k_op_names[QD_OP_COUNT] = {QD_OP_TABLE(QD_OP_TABLE_NAME_)};
static const int k_op_traits[QD_OP_COUNT] = {QD_OP_TABLE(QD_OP_TABLE_TRAITS_)};

const char *qd_op_name(qd_op op) {
    if ((int)op < 0 || op >= QD_OP_COUNT) return "?";
    return k_op_names[op];
}

int qd_op_traits(qd_op op) {
    if ((int)op < 0 || op >= QD_OP_COUNT) return 0;
    return k_op_traits[op];
}

qd_op qd_op_from_onnx(const char *onnx_name) {
    for (int i = 0; onnx_name && i < QD_OP_COUNT; i++)
        if (strcmp(onnx_name, k_op_names[i]) == 0) return (qd_op)i;
    return QD_OP_COUNT;
}

static char *dupstr(const char *s) {
    if (!s) s = "";
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

qd_graph *qd_graph_new(void) {
    qd_graph *g = calloc(1, sizeof *g);
    if (g) g->opset = 13;
    return g;
}

static void free_node(qd_node *n) {
    free(n->name);
    free(n->inputs);
    free(n->outputs);
    n->name = NULL;
    n->inputs = n->outputs = NULL;
}

void qd_graph_free(qd_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->nvalues; i++) {
        free(g->values[i].name);
        free(g->values[i].fdata);
        free(g->values[i].idata);
    }
    free(g->values);
    for (int i = 0; i < g->nnodes; i++) free_node(&g->nodes[i]);
    free(g->nodes);
    free(g->inputs);
    free(g->outputs);
    free(g->producer);
    free(g->source_path);
    for (int i = 0; i < g->nunits; i++) free(g->units[i].name);
    free(g->units);
    free(g->act);
    for (int i = 0; i < g->nwq; i++) {
        free(g->wq[i].scale);
        free(g->wq[i].zero_point);
        free(g->wq[i].qweight);
    }
    free(g->wq);
    free(g);
}

int qd_graph_add_value(qd_graph *g, const char *name) {
    if (g->nvalues == g->values_cap) {
        int cap = g->values_cap ? 2 * g->values_cap : 64;
        qd_value *nv = realloc(g->values, (size_t)cap * sizeof *nv);
        if (!nv) return -1;
        g->values = nv;
        g->values_cap = cap;
    }
    qd_value *v = &g->values[g->nvalues];
    memset(v, 0, sizeof *v);
    v->name = dupstr(name);
    if (!v->name) return -1;
    v->dtype = QD_DT_FLOAT;
    v->producer = -1;
    v->act_quant = -1;
    return g->nvalues++;
}

int qd_graph_find_value(const qd_graph *g, const char *name) {
    if (!name) return -1;
    /* Newest first: names are unique in valid ONNX; the reader creates values in file order. */
    for (int i = g->nvalues - 1; i >= 0; i--)
        if (g->values[i].name && strcmp(g->values[i].name, name) == 0) return i;
    return -1;
}

void qd_attrs_defaults(qd_attrs *a) {
    memset(a, 0, sizeof *a);
    a->stride[0] = a->stride[1] = 1;
    a->dilation[0] = a->dilation[1] = 1;
    a->group = 1;
    a->alpha = a->beta = 1.0f;
    a->clip_min = -INFINITY;
    a->clip_max = INFINITY;
    a->epsilon = 1e-5f; /* ONNX BatchNormalization default */
    a->keepdims = 1;
    a->axis = 1;
    for (int d = 0; d < QD_MAX_DIMS; d++) a->slice_step[d] = 1;
}

int qd_graph_add_node(qd_graph *g, const char *name, qd_op op, int ninputs, int noutputs) {
    if (ninputs < 0 || noutputs < 0) return -1;
    if (g->nnodes == g->nodes_cap) {
        int cap = g->nodes_cap ? 2 * g->nodes_cap : 64;
        qd_node *nn = realloc(g->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return -1;
        g->nodes = nn;
        g->nodes_cap = cap;
    }
    qd_node *n = &g->nodes[g->nnodes];
    memset(n, 0, sizeof *n);
    n->name = dupstr(name);
    n->inputs = malloc(sizeof(int) * (size_t)(ninputs > 0 ? ninputs : 1));
    n->outputs = malloc(sizeof(int) * (size_t)(noutputs > 0 ? noutputs : 1));
    if (!n->name || !n->inputs || !n->outputs) {
        free_node(n);
        return -1;
    }
    for (int i = 0; i < ninputs; i++) n->inputs[i] = -1;
    for (int i = 0; i < noutputs; i++) n->outputs[i] = -1;
    n->op = op;
    n->opset = g->opset;
    n->ninputs = ninputs;
    n->noutputs = noutputs;
    n->unit = -1;
    n->wq = -1;
    qd_attrs_defaults(&n->a);
    return g->nnodes++;
}

/* The reader and shape inference keep every value within QD_MAX_TENSOR_NUMEL elements; these
 * stay defined anyway (a value being built may not be checked yet): -1 for a negative dimension
 * or a product that overflows int64. */
int64_t qd_value_numel(const qd_value *v) {
    int64_t n;
    return qd_shape_numel_checked(v->ndim, v->dims, INT64_MAX, &n) ? n : -1;
}

int64_t qd_value_sample_numel(const qd_value *v) {
    int64_t n;
    if (v->ndim < 1) return 1;
    return qd_shape_numel_checked(v->ndim - 1, v->dims + 1, INT64_MAX, &n) ? n : -1;
}

void qd_graph_recount(qd_graph *g) {
    for (int v = 0; v < g->nvalues; v++) {
        g->values[v].producer = -1;
        g->values[v].nconsumers = 0;
    }
    for (int i = 0; i < g->nnodes; i++) {
        const qd_node *n = &g->nodes[i];
        for (int k = 0; k < n->ninputs; k++)
            if (n->inputs[k] >= 0) g->values[n->inputs[k]].nconsumers++;
        for (int k = 0; k < n->noutputs; k++)
            if (n->outputs[k] >= 0) g->values[n->outputs[k]].producer = i;
    }
}

qd_status qd_graph_remove_nodes(qd_graph *g, const unsigned char *dead) {
    if (g->nunits > 0) return qd_errorf(QD_ERR_INTERNAL, "graph: cannot remove nodes after unit discovery");
    int j = 0;
    for (int i = 0; i < g->nnodes; i++) {
        if (dead[i]) {
            free_node(&g->nodes[i]);
            continue;
        }
        if (j != i) g->nodes[j] = g->nodes[i];
        j++;
    }
    g->nnodes = j;
    qd_graph_recount(g);
    return QD_OK;
}

void qd_graph_replace_uses(qd_graph *g, int from, int to) {
    for (int i = 0; i < g->nnodes; i++) {
        qd_node *n = &g->nodes[i];
        for (int k = 0; k < n->ninputs; k++)
            if (n->inputs[k] == from) n->inputs[k] = to;
    }
    for (int k = 0; k < g->noutputs; k++)
        if (g->outputs[k] == from) g->outputs[k] = to;
}

int qd_graph_is_output(const qd_graph *g, int v) {
    for (int k = 0; k < g->noutputs; k++)
        if (g->outputs[k] == v) return 1;
    return 0;
}

int qd_node_act_input(const qd_graph *g, const qd_node *n, int i) {
    for (int k = 0; k < n->ninputs; k++) {
        int v = n->inputs[k];
        if (v < 0 || g->values[v].is_const) continue;
        if (i-- == 0) return v;
    }
    return -1;
}

/* Kahn's algorithm that always emits the lowest-indexed ready node: a graph already in
 * topological order keeps its file order exactly, so every block exported contiguously by
 * torch stays contiguous (units are index ranges). O(n^2), n is a few hundred. */
qd_status qd_graph_toposort(qd_graph *g) {
    int n = g->nnodes;
    if (n == 0) return QD_OK;
    qd_graph_recount(g);
    int *pending = calloc((size_t)n, sizeof(int)); /* unfinished producers per node */
    int *order = malloc(sizeof(int) * (size_t)n);
    unsigned char *done = calloc((size_t)n, 1);
    if (!pending || !order || !done) {
        free(pending); free(order); free(done);
        return qd_errorf(QD_ERR_INTERNAL, "toposort: out of memory");
    }
    for (int i = 0; i < n; i++) {
        const qd_node *nd = &g->nodes[i];
        for (int k = 0; k < nd->ninputs; k++) {
            int v = nd->inputs[k];
            if (v >= 0 && g->values[v].producer >= 0) pending[i]++;
        }
    }
    int cnt = 0;
    while (cnt < n) {
        int pick = -1;
        for (int i = 0; i < n; i++)
            if (!done[i] && pending[i] == 0) { pick = i; break; }
        if (pick < 0) {
            int bad = 0;
            while (bad < n && done[bad]) bad++;
            qd_status st = qd_errorf(QD_ERR_DATA, "%s: graph has a cycle (node '%s' can never run)",
                                     g->source_path ? g->source_path : "graph", g->nodes[bad].name);
            free(pending); free(order); free(done);
            return st;
        }
        done[pick] = 1;
        order[cnt++] = pick;
        const qd_node *p = &g->nodes[pick];
        for (int o = 0; o < p->noutputs; o++) {
            int v = p->outputs[o];
            if (v < 0) continue;
            for (int i = 0; i < n; i++) {
                if (done[i]) continue;
                const qd_node *c = &g->nodes[i];
                for (int k = 0; k < c->ninputs; k++)
                    if (c->inputs[k] == v) pending[i]--;
            }
        }
    }
    int same = 1;
    for (int i = 0; i < n; i++) same &= order[i] == i;
    if (!same) {
        qd_node *tmp = malloc(sizeof(qd_node) * (size_t)n);
        if (!tmp) {
            free(pending); free(order); free(done);
            return qd_errorf(QD_ERR_INTERNAL, "toposort: out of memory");
        }
        for (int i = 0; i < n; i++) tmp[i] = g->nodes[order[i]];
        memcpy(g->nodes, tmp, sizeof(qd_node) * (size_t)n);
        free(tmp);
        qd_graph_recount(g);
    }
    free(pending); free(order); free(done);
    return QD_OK;
}
