/* src/graph/exec.c: forward executor of a prepared graph on any backend (qdrop/exec.h).
 *
 * Memory: every constant float value (weights, biases) is uploaded once; every Conv/Gemm/MatMul
 * with a weight quantizer also gets a device copy of its effective quantized weight
 * (wq->qweight, refreshed by qd_exec_sync_quant). Activations live in slots planned once over
 * the whole graph order: a value's slot is released after its last consumer, so peak memory is
 * the widest cut, not the sum of all activations. A run copies its output value out as soon
 * as it is final, so later reuse of that slot cannot clobber it.
 * Quantized modes fake-quantize (no drop) every value with an initialized activation quantizer
 * right after it is produced, in place, except the run's input value (already quantized). */
#include <stdlib.h>
#include <string.h>

#include "core/qmath.h"
#include "qdrop/exec.h"

struct qd_exec {
    const qd_graph *g;
    qd_backend *b;
    int max_batch;
    float **cdev;            /* [nvalues] device copies of constant float values */
    float **qw;              /* [nnodes] device effective quantized weights (NULL if none) */
    float *scales;           /* [nact] activation scales */
    int nslots;
    float **slot;            /* [nslots] buffers */
    size_t *slot_floats;
    int *slot_of;            /* [nvalues] planned slot, -1 for constants/unused */
    int *holder;             /* [nslots] value currently held in the slot this run, -1 */
    const float **cur;       /* [nvalues] pointer to the value this run (NULL = not computed) */
    const float **bound;     /* [nvalues] side inputs bound by qd_exec_bind (NULL = none) */
    float *host_in, *host_out; /* forward_host staging (backend memory) */
};

static int is_float_const(const qd_value *v) { return v->is_const && v->fdata && v->dtype == QD_DT_FLOAT; }

static qd_shape value_shape(const qd_value *v, int batch) {
    qd_shape s;
    memset(&s, 0, sizeof s);
    s.ndim = v->ndim;
    for (int d = 0; d < v->ndim; d++) s.dims[d] = v->dims[d];
    if (!v->is_const && v->ndim > 0) s.dims[0] = batch;
    return s;
}

static size_t act_floats(const qd_value *v, int max_batch) {
    return (size_t)qd_value_sample_numel(v) * (size_t)max_batch;
}

/* Greedy slot planning along the node order (best fit among free slots, else a new slot). */
static qd_status plan_slots(qd_exec *e) {
    const qd_graph *g = e->g;
    int nv = g->nvalues;
    int *last = malloc(sizeof(int) * (size_t)(nv > 0 ? nv : 1));
    int *slot_free = calloc((size_t)nv + 1, sizeof(int));
    e->slot_of = malloc(sizeof(int) * (size_t)(nv > 0 ? nv : 1));
    e->slot_floats = calloc((size_t)nv + 1, sizeof(size_t));
    if (!last || !slot_free || !e->slot_of || !e->slot_floats) {
        free(last); free(slot_free);
        return qd_errorf(QD_ERR_INTERNAL, "exec: out of host memory planning %d values", nv);
    }
    for (int v = 0; v < nv; v++) { last[v] = -1; e->slot_of[v] = -1; }
    for (int i = 0; i < g->nnodes; i++) {
        const qd_node *n = &g->nodes[i];
        for (int k = 0; k < n->ninputs; k++) if (n->inputs[k] >= 0) last[n->inputs[k]] = i;
    }
    for (int k = 0; k < g->noutputs; k++) last[g->outputs[k]] = g->nnodes;
    for (int k = 0; k < g->ninputs; k++) if (last[g->inputs[k]] < 0) last[g->inputs[k]] = 0;

#define TAKE_SLOT(v)                                                                              \
    do {                                                                                          \
        size_t need = act_floats(&g->values[v], e->max_batch);                                    \
        int best = -1;                                                                            \
        for (int s_ = 0; s_ < e->nslots; s_++)                                                    \
            if (slot_free[s_] && (best < 0 ||                                                     \
                (e->slot_floats[s_] >= need && (e->slot_floats[best] < need || e->slot_floats[s_] < e->slot_floats[best])) || \
                (e->slot_floats[best] < need && e->slot_floats[s_] > e->slot_floats[best])))       \
                best = s_;                                                                        \
        if (best < 0) best = e->nslots++;                                                         \
        slot_free[best] = 0;                                                                      \
        if (e->slot_floats[best] < need) e->slot_floats[best] = need;                             \
        e->slot_of[v] = best;                                                                     \
    } while (0)

    for (int k = 0; k < g->ninputs; k++) {
        int v = g->inputs[k];
        if (!g->values[v].is_const && e->slot_of[v] < 0) TAKE_SLOT(v);
    }
    for (int i = 0; i < g->nnodes; i++) {
        const qd_node *n = &g->nodes[i];
        /* release values whose last consumer ran before node i */
        for (int v = 0; v < nv; v++)
            if (e->slot_of[v] >= 0 && last[v] >= 0 && last[v] < i && !slot_free[e->slot_of[v]]) {
                /* only release when no other live value shares the slot (one value per slot) */
                slot_free[e->slot_of[v]] = 1;
                last[v] = -2;  /* released */
            }
        for (int o = 0; o < n->noutputs; o++) {
            int v = n->outputs[o];
            if (v < 0 || g->values[v].is_const || e->slot_of[v] >= 0) continue;
            TAKE_SLOT(v);
            if (last[v] == -1) last[v] = i;  /* unused output: free after this node */
        }
    }
#undef TAKE_SLOT
    free(last);
    free(slot_free);
    return QD_OK;
}

void qd_exec_free(qd_exec *e) {
    if (!e) return;
    qd_backend *b = e->b;
    if (e->cdev) for (int v = 0; v < e->g->nvalues; v++) if (e->cdev[v]) b->ops->free(b, e->cdev[v]);
    if (e->qw) for (int i = 0; i < e->g->nnodes; i++) if (e->qw[i]) b->ops->free(b, e->qw[i]);
    if (e->slot) for (int s = 0; s < e->nslots; s++) if (e->slot[s]) b->ops->free(b, e->slot[s]);
    if (e->scales) b->ops->free(b, e->scales);
    if (e->host_in) b->ops->free(b, e->host_in);
    if (e->host_out) b->ops->free(b, e->host_out);
    free(e->cdev); free(e->qw); free(e->slot); free(e->slot_floats); free(e->slot_of); free(e->holder);
    free(e->cur);
    free(e->bound);
    free(e);
}

static void *dev_alloc(qd_backend *b, size_t bytes, const char *what, const char *name) {
    void *p = b->ops->alloc(b, bytes ? bytes : 4);
    if (!p && !qd_error_message()[0])
        qd_errorf(QD_ERR_DEVICE_OOM, "exec: cannot allocate %zu bytes for %s '%s'", bytes, what, name ? name : "?");
    return p;
}

int64_t qd_shape_numel(const qd_shape *s) {
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= s->dims[d];
    return n;
}

qd_status qd_backend_check_graph(const qd_backend *b, const qd_graph *g) {
    if (!b->ops->supports_op) return QD_OK;
    for (int i = 0; i < g->nnodes; i++) {
        const qd_node *n = &g->nodes[i];
        char why[256] = "";
        if (b->ops->supports_op(b, g, n, why, sizeof why)) continue;
        return qd_errorf(QD_ERR_UNSUPPORTED, "%s: node %s (%s): %s: not supported by the %s backend",
                         g->source_path ? g->source_path : "model", n->name ? n->name : "?", qd_op_name(n->op),
                         why[0] ? why : "no kernel", b->ops->name);
    }
    return QD_OK;
}

int64_t qd_exec_plan_bytes(const qd_graph *g, int max_batch, int64_t *slot_bytes) {
    qd_exec e;
    memset(&e, 0, sizeof e);
    e.g = g;
    e.max_batch = max_batch > 0 ? max_batch : 1;
    int64_t consts = 0, slots = 0, qw = 0;
    for (int v = 0; v < g->nvalues; v++)
        if (is_float_const(&g->values[v])) consts += (int64_t)sizeof(float) * qd_value_numel(&g->values[v]);
    for (int k = 0; k < g->nwq; k++)
        if (g->wq[k].weight_value >= 0 && g->wq[k].weight_value < g->nvalues)
            qw += (int64_t)sizeof(float) * qd_value_numel(&g->values[g->wq[k].weight_value]);
    if (plan_slots(&e) == QD_OK)
        for (int s = 0; s < e.nslots; s++) slots += (int64_t)sizeof(float) * (int64_t)e.slot_floats[s];
    else
        qd_error_clear();
    free(e.slot_of);
    free(e.slot_floats);
    int64_t in_n = qd_value_sample_numel(&g->values[g->inputs[0]]), out_n = qd_value_sample_numel(&g->values[g->outputs[0]]);
    int64_t staging = (int64_t)sizeof(float) * e.max_batch * (in_n + out_n);
    if (slot_bytes) *slot_bytes = slots;
    return consts + qw + slots + staging;
}

qd_status qd_exec_create(const qd_graph *g, qd_backend *b, int max_batch, qd_exec **out) {
    *out = NULL;
    if (max_batch < 1) return qd_errorf(QD_ERR_INTERNAL, "exec: max_batch must be >= 1 (got %d)", max_batch);
    /* plan time: refuse a node the backend cannot run before uploading or computing anything */
    QD_TRY(qd_backend_check_graph(b, g));
    if (g->ninputs < 1 || g->noutputs < 1)
        return qd_errorf(QD_ERR_DATA, "%s: graph has %d inputs and %d outputs (need at least one of each)",
                         g->source_path ? g->source_path : "model", g->ninputs, g->noutputs);
    qd_exec *e = calloc(1, sizeof *e);
    if (!e) return qd_errorf(QD_ERR_INTERNAL, "exec: out of host memory");
    e->g = g; e->b = b; e->max_batch = max_batch;
    e->cdev = calloc((size_t)g->nvalues + 1, sizeof(float *));
    e->qw = calloc((size_t)g->nnodes + 1, sizeof(float *));
    e->cur = calloc((size_t)g->nvalues + 1, sizeof(float *));
    e->bound = calloc((size_t)g->nvalues + 1, sizeof(float *));
    if (!e->cdev || !e->qw || !e->cur || !e->bound) { qd_exec_free(e); return qd_errorf(QD_ERR_INTERNAL, "exec: out of host memory"); }
    qd_status st = QD_OK;
    for (int v = 0; v < g->nvalues && st == QD_OK; v++) {
        const qd_value *cv = &g->values[v];
        if (!is_float_const(cv)) continue;
        size_t bytes = sizeof(float) * (size_t)qd_value_numel(cv);
        e->cdev[v] = dev_alloc(b, bytes, "constant", cv->name);
        if (!e->cdev[v]) st = QD_ERR_DEVICE_OOM;
        else st = b->ops->upload(b, e->cdev[v], cv->fdata, bytes);
    }
    if (st == QD_OK) st = plan_slots(e);
    if (st == QD_OK) {
        e->slot = calloc((size_t)e->nslots + 1, sizeof(float *));
        e->holder = malloc(sizeof(int) * (size_t)(e->nslots + 1));
        if (!e->slot || !e->holder) st = qd_errorf(QD_ERR_INTERNAL, "exec: out of host memory");
        for (int s = 0; s < e->nslots && st == QD_OK; s++) {
            e->slot[s] = dev_alloc(b, sizeof(float) * e->slot_floats[s], "activation slot", "");
            if (!e->slot[s]) st = QD_ERR_DEVICE_OOM;
        }
    }
    if (st == QD_OK) {
        e->scales = dev_alloc(b, sizeof(float) * (size_t)(g->nact + 1), "activation scales", "");
        if (!e->scales) st = QD_ERR_DEVICE_OOM;
    }
    if (st == QD_OK) st = qd_exec_sync_quant(e);
    if (st != QD_OK) { qd_exec_free(e); return st; }
    *out = e;
    return QD_OK;
}

qd_status qd_exec_sync_quant(qd_exec *e) {
    const qd_graph *g = e->g;
    qd_backend *b = e->b;
    for (int k = 0; k < g->nwq; k++) {
        const qd_weight_quant *q = &g->wq[k];
        if (q->node < 0 || q->node >= g->nnodes || !q->qweight) continue;
        if (q->weight_value < 0 || q->weight_value >= g->nvalues)
            return qd_errorf(QD_ERR_INTERNAL, "exec: weight quantizer %d has no weight value", k);
        size_t bytes = sizeof(float) * (size_t)qd_value_numel(&g->values[q->weight_value]);
        if (!e->qw[q->node]) {
            e->qw[q->node] = dev_alloc(b, bytes, "quantized weight", g->nodes[q->node].name);
            if (!e->qw[q->node]) return QD_ERR_DEVICE_OOM;
        }
        QD_TRY(b->ops->upload(b, e->qw[q->node], q->qweight, bytes));
    }
    if (g->nact > 0) {
        float *hs = malloc(sizeof(float) * (size_t)g->nact);
        if (!hs) return qd_errorf(QD_ERR_INTERNAL, "exec: out of host memory");
        for (int k = 0; k < g->nact; k++) hs[k] = g->act[k].scale;
        qd_status st = b->ops->upload(b, e->scales, hs, sizeof(float) * (size_t)g->nact);
        free(hs);
        QD_TRY(st);
    }
    return QD_OK;
}

static int mode_wq(qd_exec_mode m) { return m == QD_EXEC_QUANT || m == QD_EXEC_WQ_ONLY; }
static int mode_aq(qd_exec_mode m) { return m == QD_EXEC_QUANT || m == QD_EXEC_AQ_ONLY; }

qd_status qd_exec_run(qd_exec *e, qd_exec_mode mode, int node_begin, int node_end, int input_value, const float *input,
                      int batch, int output_value, float *output) {
    const qd_graph *g = e->g;
    qd_backend *b = e->b;
    if (batch < 1 || batch > e->max_batch)
        return qd_errorf(QD_ERR_INTERNAL, "exec: batch %d outside 1..%d", batch, e->max_batch);
    if (node_begin < 0 || node_end > g->nnodes || node_begin > node_end)
        return qd_errorf(QD_ERR_INTERNAL, "exec: node range [%d, %d) outside the graph (%d nodes)", node_begin, node_end, g->nnodes);
    if (input_value < 0 || input_value >= g->nvalues || output_value < 0 || output_value >= g->nvalues)
        return qd_errorf(QD_ERR_INTERNAL, "exec: bad input/output value ids (%d, %d)", input_value, output_value);
    for (int v = 0; v < g->nvalues; v++) e->cur[v] = e->cdev[v] ? e->cdev[v] : e->bound[v];
    for (int s = 0; s < e->nslots; s++) e->holder[s] = -1;
    e->cur[input_value] = input;
    int done = 0;
    size_t out_bytes = sizeof(float) * (size_t)batch * (size_t)qd_value_sample_numel(&g->values[output_value]);
    if (output_value == input_value) {
        QD_TRY(b->ops->copy(b, output, input, out_bytes));
        done = 1;
    }
    qd_shape ish[16];
    const float *ins[16];
    for (int ni = node_begin; ni < node_end; ni++) {
        const qd_node *n = &g->nodes[ni];
        if (n->noutputs < 1 || n->outputs[0] < 0 || g->values[n->outputs[0]].is_const) continue; /* folded */
        if (n->ninputs > 16) return qd_errorf(QD_ERR_UNSUPPORTED, "node %s has %d inputs (max 16)", n->name, n->ninputs);
        for (int i = 0; i < n->ninputs; i++) {
            int v = n->inputs[i];
            if (v < 0) { ins[i] = NULL; memset(&ish[i], 0, sizeof ish[i]); continue; }
            const float *p = e->cur[v];
            if (mode_wq(mode) && n->wq >= 0 && e->qw[ni] && v == g->wq[n->wq].weight_value) p = e->qw[ni];
            if (!p) {
                if (g->values[v].is_const)
                    return qd_errorf(QD_ERR_UNSUPPORTED, "node %s: constant input '%s' is not float32", n->name, g->values[v].name);
                return qd_errorf(QD_ERR_INTERNAL, "exec: node %s reads '%s', which is not computed by nodes [%d, %d) from '%s'",
                                 n->name, g->values[v].name, node_begin, node_end, g->values[input_value].name);
            }
            ins[i] = p;
            ish[i] = value_shape(&g->values[v], batch);
        }
        int ov = n->outputs[0];
        int s = e->slot_of[ov];
        if (s < 0) return qd_errorf(QD_ERR_INTERNAL, "exec: value '%s' has no buffer", g->values[ov].name);
        /* the slot's previous holder is dead by construction of the plan */
        if (e->holder[s] >= 0) e->cur[e->holder[s]] = (e->holder[s] == input_value) ? input : NULL;
        e->holder[s] = ov;
        float *y = e->slot[s];
        qd_shape osh = value_shape(&g->values[ov], batch);
        QD_TRY(b->ops->node_forward(b, n, ish, ins, &osh, y));
        int aq = g->values[ov].act_quant;
        if (mode_aq(mode) && aq >= 0 && aq < g->nact && g->act[aq].initialized && ov != input_value) {
            const qd_act_quant *A = &g->act[aq];
            qd_fq_desc d;
            memset(&d, 0, sizeof d);
            d.zero_point = A->zero_point;
            d.qmin = (float)A->qmin; d.qmax = (float)A->qmax;
            d.keep_prob = 1.0f;
            QD_TRY(b->ops->fq_forward(b, &d, e->scales + aq, NULL, qd_shape_numel(&osh), y, y, NULL));
        }
        e->cur[ov] = y;
        if (ov == output_value) {
            QD_TRY(b->ops->copy(b, output, y, out_bytes));
            done = 1;
        }
    }
    if (!done)
        return qd_errorf(QD_ERR_INTERNAL, "exec: nodes [%d, %d) do not produce value '%s'", node_begin, node_end,
                         g->values[output_value].name);
    return QD_OK;
}

qd_status qd_exec_bind(qd_exec *e, int value, const float *data) {
    const qd_graph *g = e->g;
    int ok = 0;
    for (int k = 0; k < g->ninputs; k++) ok |= g->inputs[k] == value;
    if (!ok) return qd_errorf(QD_ERR_INTERNAL, "exec: value %d is not a graph input", value);
    e->bound[value] = data;
    return QD_OK;
}

const float *qd_exec_value(const qd_exec *e, int v) {
    if (!e || v < 0 || v >= e->g->nvalues) return NULL;
    return e->cur[v];
}

qd_status qd_exec_forward_host(qd_exec *e, qd_exec_mode mode, const float *input_host, int batch, float *output_host) {
    const qd_graph *g = e->g;
    qd_backend *b = e->b;
    int in_v = g->inputs[0], out_v = g->outputs[0];
    int64_t in_n = qd_value_sample_numel(&g->values[in_v]), out_n = qd_value_sample_numel(&g->values[out_v]);
    if (!e->host_in) {
        e->host_in = dev_alloc(b, sizeof(float) * (size_t)e->max_batch * (size_t)in_n, "input staging", g->values[in_v].name);
        e->host_out = dev_alloc(b, sizeof(float) * (size_t)e->max_batch * (size_t)out_n, "output staging", g->values[out_v].name);
        if (!e->host_in || !e->host_out) return QD_ERR_DEVICE_OOM;
    }
    for (int s0 = 0; s0 < batch; s0 += e->max_batch) {
        int nb = batch - s0 < e->max_batch ? batch - s0 : e->max_batch;
        QD_TRY(b->ops->upload(b, e->host_in, input_host + (size_t)s0 * (size_t)in_n, sizeof(float) * (size_t)nb * (size_t)in_n));
        QD_TRY(qd_exec_run(e, mode, 0, g->nnodes, in_v, e->host_in, nb, out_v, e->host_out));
        QD_TRY(b->ops->download(b, output_host + (size_t)s0 * (size_t)out_n, e->host_out,
                                sizeof(float) * (size_t)nb * (size_t)out_n));
    }
    return QD_OK;
}
