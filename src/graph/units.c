/* src/graph/units.c: reconstruction units from graph structure (§8.1), quantizer placement
 * (§6.1, §1.5, §8.7) and the human-readable plan (--inspect).
 *
 * Units are found without knowing the network's Python classes:
 *   1. A value is a *cut* after node i when it is the only non-constant value produced so far
 *      (graph inputs included) that is still needed by a later node or is a graph output.
 *   2. The nodes between consecutive cuts form a segment. A segment with no Conv/Gemm/MatMul is
 *      glue (node.unit = -1); a segment with one layer and no merging Add is a layer unit;
 *      anything else (residual Add, several layers) is a block unit. So a residual block is the
 *      subgraph closed by its Add, shortcut convs and parameter-free shortcuts included.
 *   3. Glue made only of point-wise ops (Relu, Clip, Sigmoid, HardSwish, SiLU, bias Add/Mul, ...)
 *      right after a unit is absorbed into it: the ReLU after a conv belongs to the conv's unit
 *      (§1 step 4).
 *   4. Non-residual inverted-residual chains (MobileNetV2 t=1 / stride-2 blocks, MobileNetV3 /
 *      EfficientNet blocks) are merged into one block: [1x1 conv + act] -> depthwise conv + act ->
 *      [squeeze-and-excitation] -> 1x1 conv without act.
 * A squeeze-and-excitation block never holds a cut (its input stays live until the gate Mul), so
 * it always lies inside one unit; its gate is not quantized, the gated product is. 
 * docs/units.md lists the resulting counts per network.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/escape.h"
#include "core/qmath.h"
#include "graph/graph_internal.h"
#include "qdrop/graph.h"

static const char *src(const qd_graph *g) { return g->source_path ? g->source_path : "graph"; }

static int is_layer_node(const qd_graph *g, const qd_node *n) {
    return qd_op_is_layer(n->op) && n->ninputs > 1 && n->inputs[1] >= 0 && g->values[n->inputs[1]].is_const;
}

static int is_binary(qd_op op) { return (qd_op_traits(op) & QD_OPT_BINARY) != 0; }

/* An Add whose two operands are both activations: it merges a residual path. */
static int is_merge_add(const qd_graph *g, const qd_node *n) {
    return n->op == QD_OP_ADD && qd_node_act_input(g, n, 1) >= 0;
}

static int is_pointwise(const qd_graph *g, const qd_node *n) {
    if (n->op == QD_OP_RELU || n->op == QD_OP_CLIP || n->op == QD_OP_SIGMOID || n->op == QD_OP_IDENTITY ||
        n->op == QD_OP_HARDSIGMOID || n->op == QD_OP_HARDSWISH)
        return 1;
    if (is_binary(n->op)) {
        /* same shape in and out: a bias/scale or a gate, not a broadcast that grows the tensor */
        int x = qd_node_act_input(g, n, 0);
        return x >= 0 && n->noutputs > 0 && n->outputs[0] >= 0 &&
               qd_value_numel(&g->values[x]) == qd_value_numel(&g->values[n->outputs[0]]);
    }
    return 0;
}

/* The node that reads value v first after node `after` (-1 when none). */
static int first_reader(const qd_graph *g, int v, int after) {
    for (int i = after + 1; i < g->nnodes; i++)
        for (int k = 0; k < g->nodes[i].ninputs; k++)
            if (g->nodes[i].inputs[k] == v) return i;
    return -1;
}

/* A Mul of two activations. */
static int is_act_mul(const qd_graph *g, const qd_node *n) {
    return n->op == QD_OP_MUL && qd_node_act_input(g, n, 0) >= 0 && qd_node_act_input(g, n, 1) >= 0;
}

/* One step of a gate function: Sigmoid, HardSigmoid, Relu, Clip, or Add/Sub/Mul/Div with a
 * constant (the x + 3 -> Relu6 -> / 6 spelling of hard-sigmoid that Keras models carry through
 * tf2onnx). */
static int is_gate_step(const qd_graph *g, const qd_node *n) {
    if (n->op == QD_OP_SIGMOID || n->op == QD_OP_HARDSIGMOID || n->op == QD_OP_RELU || n->op == QD_OP_CLIP) return 1;
    return is_binary(n->op) && qd_node_act_input(g, n, 0) >= 0 && qd_node_act_input(g, n, 1) < 0;
}

/* Mul(v, f(v)) with f a short chain of gate steps containing a Sigmoid, HardSigmoid or Clip, each
 * intermediate read once: SiLU (x * Sigmoid(x)), HardSwish as exporters write it below opset 14
 * (x * HardSigmoid(x)) and as Keras does (x * Relu6(x + 3) / 6). An activation function, not a
 * gate. Returns the operand v (-1 when n is not such a Mul). */
static int self_gated_input(const qd_graph *g, const qd_node *n) {
    if (!is_act_mul(g, n)) return -1;
    for (int k = 0; k < 2; k++) {
        int v = n->inputs[k], s = n->inputs[1 - k], squash = 0;
        for (int hop = 0; hop < 4 && s >= 0 && s != v && g->values[s].nconsumers == 1; hop++) {
            int p = g->values[s].producer;
            if (p < 0 || !is_gate_step(g, &g->nodes[p])) break;
            const qd_node *f = &g->nodes[p];
            squash |= f->op == QD_OP_SIGMOID || f->op == QD_OP_HARDSIGMOID || f->op == QD_OP_CLIP;
            s = qd_node_act_input(g, f, 0);
        }
        if (s == v && squash) return v;
    }
    return -1;
}

/* A gate Mul: two activations, not self-gated (the excitation of a squeeze-and-excitation block
 * scaling its input). Returns the index (0/1) of the gated operand -- the one whose element
 * count equals the output's -- or -1. */
static int gate_mul_operand(const qd_graph *g, const qd_node *n) {
    if (!is_act_mul(g, n) || self_gated_input(g, n) >= 0 || n->outputs[0] < 0) return -1;
    int64_t on = qd_value_numel(&g->values[n->outputs[0]]);
    for (int k = 0; k < 2; k++)
        if (qd_value_numel(&g->values[n->inputs[k]]) == on) return k;
    return -1;
}

/* 1 when value v, through a chain of single-reader gate steps and view ops, is the gate of a
 * gate Mul (the excitation of a squeeze-and-excitation block). */
static int feeds_gate(const qd_graph *g, int v, int after) {
    for (int hop = 0; hop < 8 && v >= 0 && g->values[v].nconsumers == 1 && !qd_graph_is_output(g, v); hop++) {
        int r = first_reader(g, v, after);
        if (r < 0) return 0;
        const qd_node *rn = &g->nodes[r];
        int k = gate_mul_operand(g, rn);
        if (k >= 0) return rn->inputs[k] != v;
        if (!is_gate_step(g, rn) && !(qd_op_traits(rn->op) & QD_OPT_VIEW)) return 0;
        v = rn->outputs[0];
        after = r;
    }
    return 0;
}

/* Activation functions that end a layer (§1 step 4): Relu, Clip, HardSwish, HardSigmoid,
 * Sigmoid and the self-gated Muls. */
static int is_activation(const qd_graph *g, const qd_node *n) {
    return n->op == QD_OP_RELU || n->op == QD_OP_CLIP || n->op == QD_OP_HARDSWISH || n->op == QD_OP_HARDSIGMOID ||
           n->op == QD_OP_SIGMOID || self_gated_input(g, n) >= 0;
}

/* Output range of an activation: 1 when it is never negative (one-sided quantizer, §6.2). */
static int activation_one_sided(const qd_graph *g, const qd_node *n) {
    (void)g;
    return n->op == QD_OP_RELU || n->op == QD_OP_SIGMOID || n->op == QD_OP_HARDSIGMOID ||
           (n->op == QD_OP_CLIP && n->a.clip_min >= 0.0f);
}

typedef struct seg {
    int begin, end;   /* nodes [begin, end) */
    int in, out;      /* cut values, -1 when none */
    int nlayers;
    int merge;        /* contains a merging Add */
    int kind;         /* -1 glue, QD_UNIT_LAYER, QD_UNIT_BLOCK */
} seg;

static void free_units(qd_graph *g) {
    for (int i = 0; i < g->nunits; i++) free(g->units[i].name);
    free(g->units);
    g->units = NULL;
    g->nunits = 0;
    for (int i = 0; i < g->nnodes; i++) g->nodes[i].unit = -1;
}

static int is_pointwise_conv(const qd_graph *g, const qd_node *c) {
    const qd_value *w = &g->values[c->inputs[1]];
    return c->a.group == 1 && w->ndim == 4 && w->dims[2] == 1 && w->dims[3] == 1;
}

/* Conv of a layer unit, and whether the unit ends in an activation function. */
static const qd_node *unit_conv(const qd_graph *g, const seg *s, int *has_act) {
    const qd_node *c = NULL;
    for (int i = s->begin; i < s->end; i++)
        if (is_layer_node(g, &g->nodes[i])) c = &g->nodes[i];
    const qd_node *last = &g->nodes[s->end - 1];
    *has_act = is_activation(g, last);
    return c && c->op == QD_OP_CONV ? c : NULL;
}

/* A squeeze-and-excitation segment: its input x is pooled (GlobalAveragePool or ReduceMean),
 * run through 1x1 convs / fully connected layers and a gate, and the segment ends in the
 * broadcast Mul of x by that gate. */
static int is_se_segment(const qd_graph *g, const seg *s) {
    if (s->kind != QD_UNIT_BLOCK || s->merge || s->in < 0 || s->end - s->begin < 3) return 0;
    const qd_node *last = &g->nodes[s->end - 1];
    int k = gate_mul_operand(g, last);
    if (k < 0 || last->inputs[k] != s->in) return 0;
    int pooled = 0;
    for (int i = s->begin; i < s->end; i++) {
        const qd_node *n = &g->nodes[i];
        if ((n->op == QD_OP_GLOBALAVGPOOL || n->op == QD_OP_REDUCEMEAN) && n->inputs[0] == s->in) pooled = 1;
        if (is_layer_node(g, n) && n->op == QD_OP_CONV && !is_pointwise_conv(g, n)) return 0;
    }
    return pooled;
}


static int is_depthwise_conv(const qd_graph *g, const qd_node *c) {
    const qd_value *w = &g->values[c->inputs[1]];
    return c->a.group > 1 && w->ndim == 4 && w->dims[1] == 1 && w->dims[0] == c->a.group;
}

qd_status qd_graph_find_units(qd_graph *g) {
    free_units(g);
    qd_graph_recount(g);
    int n = g->nnodes, V = g->nvalues;
    if (n == 0) return QD_OK;
    int *lastuse = malloc(sizeof(int) * (size_t)V);
    int *cnt = calloc((size_t)n + 2, sizeof(int));           /* live count after node i (index i+1) */
    long long *sum = calloc((size_t)n + 2, sizeof(long long)); /* sum of live ids, identifies a single one */
    seg *segs = malloc(sizeof(seg) * (size_t)(n + 1));
    if (!lastuse || !cnt || !sum || !segs) {
        free(lastuse); free(cnt); free(sum); free(segs);
        return qd_errorf(QD_ERR_INTERNAL, "find_units: out of memory");
    }
    for (int v = 0; v < V; v++) lastuse[v] = -2;
    for (int i = 0; i < n; i++) {
        const qd_node *nd = &g->nodes[i];
        for (int k = 0; k < nd->ninputs; k++) {
            int v = nd->inputs[k];
            if (v >= 0 && !g->values[v].is_const && lastuse[v] < i) lastuse[v] = i;
        }
    }
    for (int k = 0; k < g->noutputs; k++) lastuse[g->outputs[k]] = n;
    for (int v = 0; v < V; v++) {
        if (g->values[v].is_const || lastuse[v] == -2) continue;
        int def = g->values[v].producer; /* -1 for graph inputs */
        /* live after node i for def <= i < lastuse, i.e. at positions def+1 .. lastuse */
        for (int i = def; i < lastuse[v] && i < n; i++) {
            cnt[i + 1]++;
            sum[i + 1] += v;
        }
    }
    int nseg = 0, start = 0;
    int prev_cut = cnt[0] == 1 ? (int)sum[0] : -1;
    for (int i = 0; i < n; i++) {
        int is_cut = cnt[i + 1] == 1;
        if (!is_cut && i != n - 1) continue;
        seg *s = &segs[nseg++];
        s->begin = start;
        s->end = i + 1;
        s->in = prev_cut;
        s->out = is_cut ? (int)sum[i + 1] : -1;
        s->nlayers = 0;
        s->merge = 0;
        for (int j = s->begin; j < s->end; j++) {
            s->nlayers += is_layer_node(g, &g->nodes[j]);
            s->merge |= is_merge_add(g, &g->nodes[j]);
        }
        s->kind = s->nlayers == 0 ? -1 : (s->nlayers == 1 && !s->merge ? QD_UNIT_LAYER : QD_UNIT_BLOCK);
        prev_cut = s->out;
        start = i + 1;
    }
    free(lastuse); free(cnt); free(sum);

    /* 3. absorb point-wise glue into the unit before it */
    int m = 0;
    for (int k = 0; k < nseg; k++) {
        seg *s = &segs[k];
        int pw = s->kind == -1;
        for (int j = s->begin; pw && j < s->end; j++) pw = is_pointwise(g, &g->nodes[j]);
        if (pw && m > 0 && segs[m - 1].kind != -1 && segs[m - 1].out == s->in) {
            segs[m - 1].end = s->end;
            segs[m - 1].out = s->out;
            continue;
        }
        segs[m++] = *s;
    }
    nseg = m;

    /* 4. merge non-residual inverted-residual chains: [1x1 conv + act] -> depthwise conv + act ->
     *    [squeeze-and-excitation] -> 1x1 conv without act (MobileNetV2 t = 1 and stride-2 blocks;
     *    MobileNetV3 / EfficientNet blocks without a residual, their SE block included) */
    m = 0;
    for (int k = 0; k < nseg; k++) {
        int take = 0, layers = 0;
        for (int var = 0; var < 4 && !take; var++) {
            int ex = var < 2, se = var % 2 == 0; /* longest pattern first */
            int len = ex + 2 + se;
            if (k + len > nseg) continue;
            int ok = 1;
            for (int j = 1; j < len && ok; j++)
                ok = segs[k + j].begin == segs[k + j - 1].end && segs[k + j].in == segs[k + j - 1].out;
            int d = k + ex, p = d + 1 + se;
            for (int j = k; j < k + len && ok; j++)
                ok = (se && j == d + 1) ? is_se_segment(g, &segs[j]) : segs[j].kind == QD_UNIT_LAYER;
            if (!ok) continue;
            int act_e = 0, act_d, act_p;
            const qd_node *ce = ex ? unit_conv(g, &segs[k], &act_e) : NULL;
            const qd_node *cd = unit_conv(g, &segs[d], &act_d), *cp = unit_conv(g, &segs[p], &act_p);
            if (ex) ok = ce && is_pointwise_conv(g, ce) && act_e;
            ok = ok && cd && cp && is_depthwise_conv(g, cd) && act_d && is_pointwise_conv(g, cp) && !act_p;
            if (ok) {
                take = len;
                for (int j = k; j < k + len; j++) layers += segs[j].nlayers;
            }
        }
        if (take) {
            seg merged = segs[k];
            merged.end = segs[k + take - 1].end;
            merged.out = segs[k + take - 1].out;
            merged.nlayers = layers;
            merged.kind = QD_UNIT_BLOCK;
            segs[m++] = merged;
            k += take - 1;
        } else {
            segs[m++] = segs[k];
        }
    }
    nseg = m;

    int nunits = 0;
    for (int k = 0; k < nseg; k++) nunits += segs[k].kind != -1;
    g->units = calloc((size_t)(nunits ? nunits : 1), sizeof(qd_unit));
    if (!g->units) {
        free(segs);
        return qd_errorf(QD_ERR_INTERNAL, "find_units: out of memory");
    }
    int nb = 0, nl = 0;
    for (int k = 0; k < nseg; k++) {
        const seg *s = &segs[k];
        if (s->kind == -1) continue;
        qd_unit *u = &g->units[g->nunits];
        u->kind = (qd_unit_kind)s->kind;
        u->node_begin = s->begin;
        u->node_end = s->end;
        u->input_value = s->in;
        u->output_value = s->out;
        u->nlayers = s->nlayers;
        if (s->in < 0 || s->out < 0) {
            qd_status st = qd_errorf(QD_ERR_UNSUPPORTED, "%s: the subgraph %s..%s has no single input/output "
                                     "activation; units need one (several graph inputs or outputs?)", src(g),
                                     g->nodes[s->begin].name, g->nodes[s->end - 1].name);
            free(segs);
            return st;
        }
        /* unit names reach the progress bar, the log and results.json: node names escaped */
        char buf[1024], e0[400], e1[400];
        snprintf(buf, sizeof buf, "%s %d: %s..%s", s->kind == QD_UNIT_BLOCK ? "block" : "layer",
                 s->kind == QD_UNIT_BLOCK ? nb : nl, qd_escape_text(g->nodes[s->begin].name, e0, sizeof e0),
                 qd_escape_text(g->nodes[s->end - 1].name, e1, sizeof e1));
        if (s->kind == QD_UNIT_BLOCK) nb++;
        else nl++;
        u->name = malloc(strlen(buf) + 1);
        if (!u->name) {
            free(segs);
            return qd_errorf(QD_ERR_INTERNAL, "find_units: out of memory");
        }
        strcpy(u->name, buf);
        for (int i = s->begin; i < s->end; i++) g->nodes[i].unit = g->nunits;
        g->nunits++;
    }
    free(segs);
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* quantizer placement (§6.1)                                                                   */
/* ------------------------------------------------------------------------------------------ */
/* The value a layer's activation quantizer would sit on: its output after a bias Add and an
 * absorbed activation function (Relu, Clip, HardSwish, HardSigmoid, Sigmoid, SiLU), each only
 * when it is the sole reader. *gate = 1 when that value only feeds the gate of a
 * squeeze-and-excitation Mul (through a Sigmoid/HardSigmoid and view ops): the gated product is
 * quantized instead, as a residual branch's last conv leaves the quantizer to the Add. */
static int layer_act_out(const qd_graph *g, int node, int *one_sided, int *gate) {
    int v = g->nodes[node].outputs[0];
    *one_sided = 0;
    *gate = 0;
    if (feeds_gate(g, v, node)) {
        *gate = 1;
        return v;
    }
    int acted = 0;
    for (int guard = 0; guard < 8; guard++) {
        if (v < 0 || qd_graph_is_output(g, v)) break;
        if (!acted && g->values[v].nconsumers >= 2) { /* SiLU: f(v) and Mul(v, f(v)) read v */
            int c = -1;
            for (int r = first_reader(g, v, node); r >= 0 && c < 0; r = first_reader(g, v, r))
                if (self_gated_input(g, &g->nodes[r]) == v) c = r;
            if (c < 0 || g->values[v].nconsumers != 2) break;
            v = g->nodes[c].outputs[0];
            node = c;
            acted = 1;
            continue;
        }
        if (g->values[v].nconsumers != 1) break;
        int c = first_reader(g, v, node);
        if (c < 0) break;
        const qd_node *cn = &g->nodes[c];
        if (!acted && is_binary(cn->op) && qd_node_act_input(g, cn, 1) < 0 && is_pointwise(g, cn)) {
            v = cn->outputs[0]; /* bias / scale by a constant */
            node = c;
            continue;
        }
        if (!acted && is_activation(g, cn)) {
            *one_sided = activation_one_sided(g, cn);
            v = cn->outputs[0];
            node = c;
            acted = 1;
            continue;
        }
        break;
    }
    return v;
}

static int feeds_merge_add(const qd_graph *g, int v) {
    for (int i = 0; i < g->nnodes; i++) {
        const qd_node *n = &g->nodes[i];
        if (!is_merge_add(g, n)) continue;
        for (int k = 0; k < n->ninputs; k++)
            if (n->inputs[k] == v) return 1;
    }
    return 0;
}

static int is_unit_output(const qd_graph *g, int v) {
    for (int u = 0; u < g->nunits; u++)
        if (g->units[u].output_value == v) return 1;
    return 0;
}

static void free_quant(qd_graph *g) {
    for (int i = 0; i < g->nwq; i++) {
        free(g->wq[i].scale);
        free(g->wq[i].zero_point);
        free(g->wq[i].qweight);
    }
    free(g->wq);
    free(g->act);
    g->wq = NULL;
    g->act = NULL;
    g->nwq = g->nact = 0;
    for (int v = 0; v < g->nvalues; v++) g->values[v].act_quant = -1;
    for (int i = 0; i < g->nnodes; i++) g->nodes[i].wq = -1;
}

qd_status qd_graph_place_quantizers(qd_graph *g, const qd_quant_plan_opts *o) {
    if (!o || o->w_bits < 2 || o->w_bits > 8 || o->a_bits < 2 || o->a_bits > 8)
        return qd_errorf(QD_ERR_CONFIG, "quantizer plan: bit widths must be in 2..8 (w %d, a %d)", o ? o->w_bits : 0,
                         o ? o->a_bits : 0);
    free_quant(g);
    qd_graph_recount(g);
    int V = g->nvalues;
    signed char *mark = malloc((size_t)(V ? V : 1)); /* -1 none, 0 signed, 1 one-sided */
    if (!mark) return qd_errorf(QD_ERR_INTERNAL, "place_quantizers: out of memory");
    memset(mark, -1, (size_t)(V ? V : 1));
    int first_layer = -1, last_layer = -1, first_layer_out = -1;
    for (int i = 0; i < g->nnodes; i++) {
        const qd_node *n = &g->nodes[i];
        if (n->unit < 0) continue;
        if (is_layer_node(g, n)) {
            if (first_layer < 0) first_layer = i;
            last_layer = i;
            int os, gate, v = layer_act_out(g, i, &os, &gate);
            if (first_layer == i) first_layer_out = v;
            /* §6.1: no quantizer between a branch's last conv and the add inside a unit; a unit's
             * output is always quantized (the ResNet-20 stem feeds layer1.0's identity add);
             * logits never; an SE excitation's gate is not quantized, its product is (below). */
            if (v >= 0 && !qd_graph_is_output(g, v) && (is_unit_output(g, v) || (!feeds_merge_add(g, v) && !gate)))
                mark[v] = (signed char)os;
        } else if (gate_mul_operand(g, n) >= 0) {
            /* SE block: x * gate feeds the next layer; one quantizer on the product, one-sided
             * when x is (the gate is in [0, 1]) */
            int v = n->outputs[0], x = n->inputs[gate_mul_operand(g, n)];
            if (v >= 0 && !qd_graph_is_output(g, v) && !feeds_merge_add(g, v)) mark[v] = (signed char)(mark[x] == 1);
        } else if (is_merge_add(g, n)) {
            int v = n->outputs[0], os = 0;
            if (v >= 0 && g->values[v].nconsumers == 1 && !qd_graph_is_output(g, v)) {
                for (int j = i + 1; j < g->nnodes; j++) {
                    const qd_node *c = &g->nodes[j];
                    if (c->op != QD_OP_SIGMOID && c->op != QD_OP_HARDSIGMOID && is_activation(g, c) &&
                        (c->inputs[0] == v || self_gated_input(g, c) == v)) {
                        os = activation_one_sided(g, c);
                        v = c->outputs[0];
                        break;
                    }
                }
            }
            if (v >= 0 && !qd_graph_is_output(g, v)) mark[v] = (signed char)os;
        }
    }
    /* network inputs are never quantized (§1 step 5) */
    for (int k = 0; k < g->ninputs; k++) mark[g->inputs[k]] = -1;

    int na = 0;
    for (int v = 0; v < V; v++) na += mark[v] >= 0;
    int nw = 0;
    for (int i = 0; i < g->nnodes; i++) nw += is_layer_node(g, &g->nodes[i]) && g->values[g->nodes[i].inputs[1]].fdata != NULL;
    g->act = calloc((size_t)(na ? na : 1), sizeof(qd_act_quant));
    g->wq = calloc((size_t)(nw ? nw : 1), sizeof(qd_weight_quant));
    if (!g->act || !g->wq) {
        free(mark);
        return qd_errorf(QD_ERR_INTERNAL, "place_quantizers: out of memory");
    }
    /* activation quantizers in data-flow (node) order */
    for (int i = 0; i < g->nnodes; i++) {
        const qd_node *n = &g->nodes[i];
        for (int k = 0; k < n->noutputs; k++) {
            int v = n->outputs[k];
            if (v < 0 || mark[v] < 0 || g->values[v].act_quant >= 0) continue;
            qd_act_quant *a = &g->act[g->nact];
            a->value = v;
            a->bits = o->a_bits;
            a->one_sided = mark[v];
            a->unit = n->unit;
            g->values[v].act_quant = g->nact++;
        }
    }
    if (o->brecq_setting && first_layer_out >= 0 && g->values[first_layer_out].act_quant >= 0)
        g->act[g->values[first_layer_out].act_quant].bits = 8; /* §8.7 row B */
    if (o->first_last_8bit && g->nunits > 0) {
        /* §1 step 5: the quantizer whose output feeds the last unit (through glue such as
         * GAP/Flatten) is 8 bit. */
        int v = g->units[g->nunits - 1].input_value;
        while (v >= 0 && g->values[v].act_quant < 0) {
            int p = g->values[v].producer;
            if (p < 0 || g->nodes[p].unit >= 0) { v = -1; break; }
            v = qd_node_act_input(g, &g->nodes[p], 0);
        }
        if (v >= 0) g->act[g->values[v].act_quant].bits = 8;
    }
    for (int k = 0; k < g->nact; k++) {
        g->act[k].qmin = 0; /* unsigned asymmetric grid everywhere (§6.1) */
        g->act[k].qmax = qd_qmax_for_bits(g->act[k].bits);
    }

    /* weight quantizers: per output channel (§3) */
    for (int i = 0; i < g->nnodes; i++) {
        qd_node *n = &g->nodes[i];
        if (!is_layer_node(g, n)) continue;
        const qd_value *w = &g->values[n->inputs[1]];
        if (!w->fdata || w->ndim < 2) continue;
        qd_weight_quant *q = &g->wq[g->nwq];
        q->node = i;
        q->weight_value = n->inputs[1];
        q->bits = o->w_bits;
        if (o->first_last_8bit && (i == first_layer || i == last_layer)) q->bits = 8;
        if (n->op == QD_OP_CONV) q->ch_axis = 0;
        else if (n->op == QD_OP_GEMM) q->ch_axis = n->a.trans_b ? 0 : 1; /* [O,I] vs [I,O] */
        else q->ch_axis = w->ndim - 1;                                    /* MatMul B [.., K, N] */
        if (q->ch_axis != 0) {
            /* AdaRound, the range search and the export index weights channel-major; a 2-D
             * classifier is brought there by qd_graph_canon_linear (qd_graph_prepare), so only
             * layers with no [out, in] form get here: reject them at the plan, not mid-run. */
            free(mark);
            return qd_errorf(QD_ERR_UNSUPPORTED,
                             "%s: node '%s' (%s): weight '%s' has its output channel on axis %d; only Conv, Gemm and "
                             "MatMul on a 2-D [batch, features] input with a 2-D weight can be quantized",
                             src(g), n->name, qd_op_name(n->op), w->name, q->ch_axis);
        }
        int64_t numel = qd_value_numel(w);
        q->channels = (int)w->dims[q->ch_axis];
        q->per_channel = q->channels ? numel / q->channels : 0;
        q->scale = calloc((size_t)(q->channels ? q->channels : 1), sizeof(float));
        q->zero_point = calloc((size_t)(q->channels ? q->channels : 1), sizeof(float));
        q->qweight = malloc(sizeof(float) * (size_t)(numel ? numel : 1));
        if (!q->scale || !q->zero_point || !q->qweight) {
            free(q->scale); free(q->zero_point); free(q->qweight);
            free(mark);
            return qd_errorf(QD_ERR_INTERNAL, "place_quantizers: out of memory");
        }
        memcpy(q->qweight, w->fdata, sizeof(float) * (size_t)numel); /* FP until range init */
        n->wq = g->nwq++;
    }
    free(mark);
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* plan printing                                                                                */
/* ------------------------------------------------------------------------------------------ */
static void print_dims(FILE *f, const qd_value *v) {
    fputc('[', f);
    for (int d = 0; d < v->ndim; d++) {
        if (d == 0 && v->batch_symbolic) fputs("N", f);
        else fprintf(f, "%lld", (long long)v->dims[d]);
        if (d + 1 < v->ndim) fputc(',', f);
    }
    fputc(']', f);
}

/* Names come from the model file: printed escaped (core/escape.h), never raw to the terminal. */
#define ESC(s) qd_fputs_escaped((s), f)

static void print_node(FILE *f, const qd_graph *g, int i, const char *indent) {
    const qd_node *n = &g->nodes[i];
    fprintf(f, "%s%-18s ", indent, qd_op_name(n->op));
    ESC(n->name);
    if (n->noutputs > 0 && n->outputs[0] >= 0) {
        fputs(" -> ", f);
        print_dims(f, &g->values[n->outputs[0]]);
    }
    if (n->wq >= 0 && n->wq < g->nwq) {
        const qd_weight_quant *q = &g->wq[n->wq];
        fprintf(f, "  W%d per-channel x%d (axis %d)", q->bits, q->channels, q->ch_axis);
    }
    if (n->op == QD_OP_CONV && n->a.group > 1) fprintf(f, " group %d", n->a.group);
    for (int k = 0; k < n->noutputs; k++) {
        int v = n->outputs[k];
        if (v < 0 || g->values[v].act_quant < 0 || g->values[v].act_quant >= g->nact) continue;
        const qd_act_quant *a = &g->act[g->values[v].act_quant];
        fprintf(f, "  | A%d %s quantizer on '", a->bits, a->one_sided ? "one-sided" : "signed");
        ESC(g->values[v].name);
        fputc('\'', f);
    }
    fputc('\n', f);
}

void qd_graph_print_plan(const qd_graph *g, void *file) {
    FILE *f = file ? (FILE *)file : stdout;
    int nb = 0;
    for (int u = 0; u < g->nunits; u++) nb += g->units[u].kind == QD_UNIT_BLOCK;
    fputs("model: ", f);
    ESC(src(g));
    fprintf(f, " (opset %d%s", g->opset, g->producer && g->producer[0] ? ", " : "");
    ESC(g->producer ? g->producer : "");
    fputs(")\n", f);
    for (int k = 0; k < g->ninputs; k++) {
        fputs("input:  ", f);
        ESC(g->values[g->inputs[k]].name);
        fputc(' ', f);
        print_dims(f, &g->values[g->inputs[k]]);
        fputs(" (not quantized)\n", f);
    }
    for (int k = 0; k < g->noutputs; k++) {
        fputs("output: ", f);
        ESC(g->values[g->outputs[k]].name);
        fputc(' ', f);
        print_dims(f, &g->values[g->outputs[k]]);
        fputc('\n', f);
    }
    fprintf(f, "units: %d (%d blocks, %d layers); nodes %d; weight quantizers %d; activation quantizers %d\n",
            g->nunits, nb, g->nunits - nb, g->nnodes, g->nwq, g->nact);
    int i = 0;
    while (i < g->nnodes) {
        int u = g->nodes[i].unit;
        if (u < 0) {
            fputs("  glue\n", f);
            while (i < g->nnodes && g->nodes[i].unit < 0) print_node(f, g, i++, "      ");
            continue;
        }
        const qd_unit *un = &g->units[u];
        fprintf(f, "  unit %d  %s", u, un->name); /* built from escaped node names */
        fprintf(f, "  (%d layer%s) in '", un->nlayers, un->nlayers == 1 ? "" : "s");
        ESC(un->input_value >= 0 ? g->values[un->input_value].name : "?");
        fputs("' out '", f);
        ESC(un->output_value >= 0 ? g->values[un->output_value].name : "?");
        fputs("'\n", f);
        while (i < g->nnodes && g->nodes[i].unit == u) print_node(f, g, i++, "      ");
    }
}
