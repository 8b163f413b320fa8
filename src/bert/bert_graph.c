/* src/bert/bert_graph.c: the BERT encoder as a qd_graph, so BERT runs through the same
 * executor, reconstruction loop, checkpoints and exporter as every ONNX model.
 *
 * Graph (S = the padded sequence length, static; N = the batch, symbolic):
 *   inputs  "embeddings" [N, S, H]   embeddings LayerNorm output (the embedding lookup and its
 *                                    LayerNorm stay host code: a gather, nothing to train)
 *           "attention_mask" [N, 1, 1, S]  additive key mask: 0 for a token, -inf for padding
 *   Identity "emb_ln" (the EMB_LN quantizer, a_bits, not learned: no unit owns it), then per
 *   encoder layer l (one unit, "encoder.layer.l"):
 *     Gemm(Q|K|V) -> Reshape [0,0,heads,d] -> Transpose: Q, V [N,heads,S,d], K^T [N,heads,d,S]
 *     MatMul(Q, K^T) -> Mul(1/sqrt(d)) -> Softmax(axis -1, mask) = probs -> MatMul(probs, V)
 *     -> Transpose [N,S,heads,d] -> Reshape [0,0,H] = ctx -> Gemm(O) -> Add(x) -> LayerNorm
 *     = h1 -> Gemm(FF in) -> Gelu -> Gemm(FF out) -> Add(h1) -> LayerNorm = layer output.
 *   Linear layers are Gemm transB = 1 on [N, S, F] (the weight in HuggingFace's [out, in]
 *   layout, the bias as C), which is the IR's canonical linear form (canon_linear.c).
 * Quantizers (§8.8, docs/bert.md): weights per output channel on the 6 Gemms of every layer;
 * activations per tensor at Q, K (on K^T: same values), V, probs, ctx, h1, GELU output and the
 * layer output, learned by that layer's unit; the last layer's output quantizer 8-bit with
 * last_out_8bit. The mask is read inside every unit (a side input of the unit) and never
 * quantized, so units are marked here instead of by the cut finder (the mask is live across
 * every layer boundary, so no single-value cut exists). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qmath.h"
#include "qdrop/bert.h"
#include "qdrop/backend.h"
#include "qdrop/exec.h"
#include "qdrop/graph.h"

typedef struct gb {
    qd_graph *g;
    qd_status st;
} gb;

static int val(gb *b, const char *name) {
    if (b->st != QD_OK) return -1;
    int v = qd_graph_add_value(b->g, name);
    if (v < 0) b->st = qd_errorf(QD_ERR_INTERNAL, "BERT graph: out of memory");
    return v;
}

/* Constant float tensor (copied). */
static int cval(gb *b, const char *name, const float *data, int ndim, const int64_t *dims) {
    int v = val(b, name);
    if (v < 0) return -1;
    qd_value *x = &b->g->values[v];
    x->is_const = 1;
    x->ndim = ndim;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) { x->dims[d] = dims[d]; n *= dims[d]; }
    x->fdata = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!x->fdata) { b->st = qd_errorf(QD_ERR_INTERNAL, "BERT graph: out of memory"); return -1; }
    memcpy(x->fdata, data, sizeof(float) * (size_t)n);
    return v;
}

static int ival(gb *b, const char *name, const int64_t *data, int n) {
    int v = val(b, name);
    if (v < 0) return -1;
    qd_value *x = &b->g->values[v];
    x->is_const = 1;
    x->dtype = QD_DT_INT64;
    x->ndim = 1;
    x->dims[0] = n;
    x->idata = malloc(sizeof(int64_t) * (size_t)n);
    if (!x->idata) { b->st = qd_errorf(QD_ERR_INTERNAL, "BERT graph: out of memory"); return -1; }
    memcpy(x->idata, data, sizeof(int64_t) * (size_t)n);
    return v;
}

/* Node with inputs ins[0..nin) and one new output value named out_name; returns the value. */
static int node(gb *b, const char *name, qd_op op, int nin, const int *ins, const char *out_name, qd_node **out_node) {
    if (b->st != QD_OK) return -1;
    for (int i = 0; i < nin; i++)
        if (ins[i] < 0) return -1;
    int y = val(b, out_name);
    if (y < 0) return -1;
    int ni = qd_graph_add_node(b->g, name, op, nin, 1);
    if (ni < 0) { b->st = qd_errorf(QD_ERR_INTERNAL, "BERT graph: out of memory"); return -1; }
    qd_node *n = &b->g->nodes[ni];
    for (int i = 0; i < nin; i++) n->inputs[i] = ins[i];
    n->outputs[0] = y;
    n->unit = -1;
    n->wq = -1;
    n->opset = b->g->opset;
    if (out_node) *out_node = n;
    return y;
}

/* Linear layer: Gemm(x, W [out, in], bias) with transB = 1. */
static int linear(gb *b, const char *p, const char *what, int x, const float *W, const float *bias, int out, int in) {
    char nm[160], wn[160], bn[160];
    snprintf(nm, sizeof nm, "%s%s", p, what);
    snprintf(wn, sizeof wn, "%s%s.weight", p, what);
    snprintf(bn, sizeof bn, "%s%s.bias", p, what);
    int64_t wd[2] = {out, in}, bd[1] = {out};
    int ins[3] = {x, cval(b, wn, W, 2, wd), cval(b, bn, bias, 1, bd)};
    qd_node *n = NULL;
    int y = node(b, nm, QD_OP_GEMM, 3, ins, nm, &n);
    if (n) n->a.trans_b = 1;
    return y;
}

static int reshape(gb *b, const char *name, int x, const int64_t *shape, int nd) {
    char sn[200];
    snprintf(sn, sizeof sn, "%s.shape", name);
    int ins[2] = {x, ival(b, sn, shape, nd)};
    return node(b, name, QD_OP_RESHAPE, 2, ins, name, NULL);
}

static int transpose(gb *b, const char *name, int x, int p0, int p1, int p2, int p3) {
    qd_node *n = NULL;
    int y = node(b, name, QD_OP_TRANSPOSE, 1, &x, name, &n);
    if (n) {
        n->a.nperm = 4;
        n->a.perm[0] = p0; n->a.perm[1] = p1; n->a.perm[2] = p2; n->a.perm[3] = p3;
    }
    return y;
}

static int layernorm(gb *b, const char *name, int x, const float *gamma, const float *beta, int H, float eps) {
    char gn[200], bn[200];
    snprintf(gn, sizeof gn, "%s.weight", name);
    snprintf(bn, sizeof bn, "%s.bias", name);
    int64_t d[1] = {H};
    int ins[3] = {x, cval(b, gn, gamma, 1, d), cval(b, bn, beta, 1, d)};
    qd_node *n = NULL;
    int y = node(b, name, QD_OP_LAYERNORM, 3, ins, name, &n);
    if (n) {
        n->a.axis = -1;
        n->a.epsilon = eps;
    }
    return y;
}

static void set_input(qd_graph *g, int v, int ndim, const int64_t *dims) {
    qd_value *x = &g->values[v];
    x->ndim = ndim;
    for (int d = 0; d < ndim; d++) x->dims[d] = dims[d];
    x->dims[0] = 1;
    x->batch_symbolic = 1;
}

/* The value of every §8.8 site of layer l, in node order: Q K V PROBS CTX ATTN_LN GELU OUT_LN. */
typedef struct layer_sites {
    int v[QD_BERT_LAYER_SITES];
    int begin, end, in, out;
} layer_sites;

qd_status qd_bert_build_graph(const qd_bert_model *m, int S, qd_graph **out) {
    *out = NULL;
    const qd_bert_config *c = &m->cfg;
    if (S < 1 || S > c->max_pos)
        return qd_errorf(QD_ERR_CONFIG, "BERT graph: sequence length %d outside 1..%d (max_position_embeddings)", S, c->max_pos);
    if (c->heads < 1 || c->hidden % c->heads != 0)
        return qd_errorf(QD_ERR_DATA, "BERT graph: hidden %d is not a multiple of %d heads", c->hidden, c->heads);
    gb b = {qd_graph_new(), QD_OK};
    if (!b.g) return qd_errorf(QD_ERR_INTERNAL, "BERT graph: out of memory");
    qd_graph *g = b.g;
    g->opset = 17;
    g->producer = malloc(16);
    g->source_path = malloc(32);
    if (!g->producer || !g->source_path) { qd_graph_free(g); return qd_errorf(QD_ERR_INTERNAL, "BERT graph: out of memory"); }
    strcpy(g->producer, "qdrop-gpu bert");
    strcpy(g->source_path, "BERT encoder");
    const int H = c->hidden, NH = c->heads, D = H / NH, FF = c->intermediate, L = c->layers;
    layer_sites *ls = calloc((size_t)L + 1, sizeof *ls);
    g->inputs = malloc(2 * sizeof(int));
    g->outputs = malloc(sizeof(int));
    if (!ls || !g->inputs || !g->outputs) { free(ls); qd_graph_free(g); return qd_errorf(QD_ERR_INTERNAL, "BERT graph: out of memory"); }
    int emb = val(&b, "embeddings"), mask = val(&b, "attention_mask");
    if (b.st == QD_OK) {
        int64_t ed[3] = {1, S, H}, md[4] = {1, 1, 1, S};
        set_input(g, emb, 3, ed);
        set_input(g, mask, 4, md);
        g->inputs[0] = emb;
        g->inputs[1] = mask;
        g->ninputs = 2;
    }
    int x = node(&b, "emb_ln", QD_OP_IDENTITY, 1, &emb, "emb_ln", NULL);
    const float alpha = (float)(1.0 / sqrt((double)D));
    const int64_t split[4] = {0, 0, NH, D}, merge[3] = {0, 0, H};
    for (int l = 0; l < L && b.st == QD_OK; l++) {
        const qd_bert_layer *W = &m->layer[l];
        char p[64], nm[160];
        snprintf(p, sizeof p, "encoder.layer.%d.", l);
        layer_sites *s = &ls[l];
        s->begin = g->nnodes;
        s->in = x;
#define NM(suffix) (snprintf(nm, sizeof nm, "%s%s", p, suffix), nm)
        int q = linear(&b, p, "attention.self.query", x, W->wq, W->bq, H, H);
        int k = linear(&b, p, "attention.self.key", x, W->wk, W->bk, H, H);
        int v = linear(&b, p, "attention.self.value", x, W->wv, W->bv, H, H);
        q = transpose(&b, NM("attention.q_heads"), reshape(&b, NM("attention.q_split"), q, split, 4), 0, 2, 1, 3);
        s->v[0] = q;
        k = transpose(&b, NM("attention.k_heads_t"), reshape(&b, NM("attention.k_split"), k, split, 4), 0, 2, 3, 1);
        s->v[1] = k;
        v = transpose(&b, NM("attention.v_heads"), reshape(&b, NM("attention.v_split"), v, split, 4), 0, 2, 1, 3);
        s->v[2] = v;
        int qk[2] = {q, k};
        int sc = node(&b, NM("attention.scores"), QD_OP_MATMUL, 2, qk, nm, NULL);
        int64_t one[1] = {1};
        char an[160];
        snprintf(an, sizeof an, "%sattention.scale", p);
        int ms[2] = {sc, cval(&b, an, &alpha, 1, one)};
        sc = node(&b, NM("attention.scores_scaled"), QD_OP_MUL, 2, ms, nm, NULL);
        int sm[2] = {sc, mask};
        qd_node *smn = NULL;
        int probs = node(&b, NM("attention.probs"), QD_OP_SOFTMAX, 2, sm, nm, &smn);
        if (smn) smn->a.axis = -1;
        s->v[3] = probs;
        int pv[2] = {probs, v};
        int ctx = node(&b, NM("attention.context_heads"), QD_OP_MATMUL, 2, pv, nm, NULL);
        ctx = transpose(&b, NM("attention.context_t"), ctx, 0, 2, 1, 3);
        ctx = reshape(&b, NM("attention.context"), ctx, merge, 3);
        s->v[4] = ctx;
        int ao = linear(&b, p, "attention.output.dense", ctx, W->wo, W->bo, H, H);
        int r1[2] = {ao, x};
        int h = node(&b, NM("attention.output.residual"), QD_OP_ADD, 2, r1, nm, NULL);
        h = layernorm(&b, NM("attention.output.LayerNorm"), h, W->ln1_g, W->ln1_b, H, c->ln_eps);
        s->v[5] = h;
        int f = linear(&b, p, "intermediate.dense", h, W->w1, W->b1, FF, H);
        f = node(&b, NM("intermediate.gelu"), QD_OP_GELU, 1, &f, nm, NULL);
        s->v[6] = f;
        f = linear(&b, p, "output.dense", f, W->w2, W->b2, H, FF);
        int r2[2] = {f, h};
        int o = node(&b, NM("output.residual"), QD_OP_ADD, 2, r2, nm, NULL);
        o = layernorm(&b, NM("output.LayerNorm"), o, W->ln2_g, W->ln2_b, H, c->ln_eps);
        s->v[7] = o;
        s->out = o;
        s->end = g->nnodes;
        x = o;
#undef NM
    }
    if (b.st == QD_OK) {
        g->outputs[0] = x;
        g->noutputs = 1;
        b.st = qd_graph_infer_shapes(g); /* also counts producers and consumers */
    }
    if (b.st == QD_OK) {
        g->units = calloc((size_t)L + 1, sizeof(qd_unit));
        if (!g->units) b.st = qd_errorf(QD_ERR_INTERNAL, "BERT graph: out of memory");
    }
    for (int l = 0; l < L && b.st == QD_OK; l++) {
        qd_unit *u = &g->units[l];
        char nm[64];
        snprintf(nm, sizeof nm, "encoder.layer.%d", l);
        u->name = malloc(strlen(nm) + 1);
        if (!u->name) { b.st = qd_errorf(QD_ERR_INTERNAL, "BERT graph: out of memory"); break; }
        strcpy(u->name, nm);
        u->kind = QD_UNIT_BLOCK;
        u->node_begin = ls[l].begin;
        u->node_end = ls[l].end;
        u->input_value = ls[l].in;
        u->output_value = ls[l].out;
        u->nlayers = QD_BERT_NLINEAR;
        for (int i = u->node_begin; i < u->node_end; i++) g->nodes[i].unit = l;
        g->nunits = l + 1;
    }
    free(ls);
    if (b.st != QD_OK) { qd_graph_free(g); return b.st; }
    *out = g;
    return QD_OK;
}

int qd_bert_graph_seq_len(const qd_graph *g) {
    return g && g->ninputs > 0 ? (int)g->values[g->inputs[0]].dims[1] : 0;
}

qd_status qd_bert_graph_set_seq(qd_graph *g, int S) {
    if (g->ninputs != 2 || S < 1)
        return qd_errorf(QD_ERR_INTERNAL, "BERT graph: cannot set sequence length %d", S);
    if (qd_bert_graph_seq_len(g) == S) return QD_OK;
    g->values[g->inputs[0]].dims[1] = S;
    g->values[g->inputs[1]].dims[3] = S;
    /* Reshape keeps its shape tensor as inputs[1] after the first inference (shape inference
     * hides it once resolved); the builder's targets use 0 for N and S, so they hold for any S */
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].op == QD_OP_RESHAPE && g->nodes[i].ninputs == 1) g->nodes[i].ninputs = 2;
    return qd_graph_infer_shapes(g);
}

/* Node (= output value) names of the §8.8 sites of a layer, in node order. */
static const char *const k_site_names[QD_BERT_LAYER_SITES] = {
    "attention.q_heads", "attention.k_heads_t", "attention.v_heads", "attention.probs", "attention.context",
    "attention.output.LayerNorm", "intermediate.gelu", "output.LayerNorm"};

/* Per-site activation quantizer of value v. */
static void add_act(qd_graph *g, int v, int bits, int unit) {
    qd_act_quant *a = &g->act[g->nact];
    memset(a, 0, sizeof *a);
    a->value = v;
    a->bits = bits;
    a->qmin = 0;
    a->qmax = qd_qmax_for_bits(bits);
    a->scale = 1.0f;
    a->unit = unit;
    g->values[v].act_quant = g->nact++;
}

qd_status qd_bert_graph_place_quantizers(qd_graph *g, int w_bits, int a_bits, int last_out_8bit) {
    if (w_bits < 2 || w_bits > 8 || a_bits < 2 || a_bits > 8)
        return qd_errorf(QD_ERR_CONFIG, "BERT quantization: bits must be in 2..8 (weights %d, activations %d)", w_bits, a_bits);
    if (g->act || g->wq) return qd_errorf(QD_ERR_INTERNAL, "BERT graph: quantizers already placed");
    int L = g->nunits;
    g->act = calloc((size_t)L * QD_BERT_LAYER_SITES + 1, sizeof(qd_act_quant));
    g->wq = calloc((size_t)L * QD_BERT_NLINEAR + 1, sizeof(qd_weight_quant));
    if (!g->act || !g->wq) return qd_errorf(QD_ERR_INTERNAL, "BERT quantization: out of memory");
    for (int v = 0; v < g->nvalues; v++) g->values[v].act_quant = -1;
    /* EMB_LN: the Identity before layer 0 (no unit learns it) */
    add_act(g, g->units[0].input_value, a_bits, -1);
    for (int l = 0; l < L; l++) {
        const qd_unit *u = &g->units[l];
        /* the §8.8 sites in node order, which is also the order of the drop keys' tensor index:
         * the outputs of the K/Q/V head transposes, Softmax, the context Reshape, the two
         * LayerNorms and Gelu */
        for (int i = u->node_begin; i < u->node_end; i++) {
            qd_node *n = &g->nodes[i];
            n->wq = -1;
            int site = 0;
            for (int k = 0; k < QD_BERT_LAYER_SITES && !site; k++) {
                char nm[160];
                snprintf(nm, sizeof nm, "encoder.layer.%d.%s", l, k_site_names[k]);
                site = strcmp(n->name, nm) == 0;
            }
            if (site) {
                int bits = a_bits;
                if (last_out_8bit && l == L - 1 && n->outputs[0] == u->output_value) bits = 8;
                add_act(g, n->outputs[0], bits, l);
            }
            if (n->op == QD_OP_GEMM) {
                const qd_value *w = &g->values[n->inputs[1]];
                qd_weight_quant *q = &g->wq[g->nwq];
                q->node = i;
                q->weight_value = n->inputs[1];
                q->bits = w_bits;
                q->ch_axis = 0;
                q->channels = (int)w->dims[0];
                q->per_channel = w->dims[1];
                int64_t numel = qd_value_numel(w);
                q->scale = calloc((size_t)q->channels, sizeof(float));
                q->zero_point = calloc((size_t)q->channels, sizeof(float));
                q->qweight = malloc(sizeof(float) * (size_t)numel);
                if (!q->scale || !q->zero_point || !q->qweight) {
                    free(q->scale); free(q->zero_point); free(q->qweight);
                    return qd_errorf(QD_ERR_INTERNAL, "BERT quantization: out of memory");
                }
                memcpy(q->qweight, w->fdata, sizeof(float) * (size_t)numel); /* FP until range init */
                n->wq = g->nwq++;
            }
        }
    }
    return QD_OK;
}

void qd_bert_additive_mask(const int *mask, int B, int S, float *out) {
    for (int i = 0; i < B * S; i++) out[i] = mask[i] ? 0.0f : -INFINITY;
}

/* ---------------------------------------------------------------------------------------- */
/* graph encoder: host embeddings -> graph on a backend -> last hidden state                  */
/* ---------------------------------------------------------------------------------------- */
qd_status qd_bert_graph_encoder_init(qd_bert_graph_encoder *e, const qd_bert_model *emb, qd_graph *g, qd_backend *b,
                                     int mode, int max_batch, int max_S) {
    memset(e, 0, sizeof *e);
    e->emb = emb; e->g = g; e->b = b; e->mode = mode;
    e->max_batch = max_batch; e->max_S = max_S;
    e->restore_S = qd_bert_graph_seq_len(g);
    const int H = emb->cfg.hidden;
    size_t tok = (size_t)max_batch * (size_t)max_S;
    QD_TRY(qd_bert_graph_set_seq(g, max_S));
    qd_status st = qd_exec_create(g, b, max_batch, &e->ex);
    e->h_in = malloc(sizeof(float) * tok * (size_t)H);
    e->h_mask = malloc(sizeof(float) * tok);
    e->d_in = b->ops->alloc(b, sizeof(float) * tok * (size_t)H);
    e->d_mask = b->ops->alloc(b, sizeof(float) * tok);
    e->d_out = b->ops->alloc(b, sizeof(float) * tok * (size_t)H);
    if (st == QD_OK && (!e->h_in || !e->h_mask)) st = qd_errorf(QD_ERR_INTERNAL, "BERT graph encoder: out of memory");
    if (st == QD_OK && (!e->d_in || !e->d_mask || !e->d_out))
        st = qd_error_message()[0] ? QD_ERR_DEVICE_OOM : qd_errorf(QD_ERR_DEVICE_OOM, "BERT graph encoder: cannot allocate buffers");
    if (st != QD_OK) qd_bert_graph_encoder_free(e);
    return st;
}

void qd_bert_graph_encoder_free(qd_bert_graph_encoder *e) {
    if (!e->g) return;
    qd_backend *b = e->b;
    qd_exec_free(e->ex);
    if (e->d_in) b->ops->free(b, e->d_in);
    if (e->d_mask) b->ops->free(b, e->d_mask);
    if (e->d_out) b->ops->free(b, e->d_out);
    free(e->h_in);
    free(e->h_mask);
    /* the graph goes back to the length it had (the calibration length of a run) */
    if (e->restore_S > 0 && qd_bert_graph_set_seq(e->g, e->restore_S) != QD_OK) qd_error_clear();
    memset(e, 0, sizeof *e);
}

qd_status qd_bert_graph_encode(void *ctx, const int *ids, const int *mask, int B, int S, float *hid) {
    qd_bert_graph_encoder *e = ctx;
    qd_backend *b = e->b;
    const qd_bert_config *c = &e->emb->cfg;
    const int H = c->hidden;
    if (B < 1 || B > e->max_batch || S < 1 || S > e->max_S)
        return qd_errorf(QD_ERR_INTERNAL, "BERT graph encoder: batch %d x %d tokens outside %d x %d", B, S, e->max_batch, e->max_S);
    for (int i = 0; i < B * S; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return qd_errorf(QD_ERR_DATA, "BERT: token %d: id %d out of range", i, ids[i]);
    size_t tok = (size_t)B * (size_t)S;
    qd_bert_embed(e->emb, ids, NULL, B, S, e->h_in, NULL, NULL);
    qd_bert_additive_mask(mask, B, S, e->h_mask);
    QD_TRY(qd_bert_graph_set_seq(e->g, S));
    QD_TRY(b->ops->upload(b, e->d_in, e->h_in, sizeof(float) * tok * (size_t)H));
    QD_TRY(b->ops->upload(b, e->d_mask, e->h_mask, sizeof(float) * tok));
    const qd_graph *g = e->g;
    QD_TRY(qd_exec_bind(e->ex, g->inputs[1], e->d_mask));
    QD_TRY(qd_exec_run(e->ex, (qd_exec_mode)e->mode, 0, g->nnodes, g->inputs[0], e->d_in, B, g->outputs[0], e->d_out));
    return b->ops->download(b, hid, e->d_out, sizeof(float) * tok * (size_t)H);
}
