/* tests/unit/test_export.c: QDQ ONNX + encodings export of a hand-built quantized graph
 * (issue 6, docs/export.md).
 *
 * Graph: input[N,3,8,8] -> Conv(4,3x3,pad 1) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(5)
 * with quantizers chosen to hit every storage case:
 *   conv weight 4-bit, z per channel in {3, 8, 12, 8}   -> INT8 k = q - z (INT4 at opset 21 only
 *                                                          when every k fits [-8, 7]: variant B)
 *   fc weight 8-bit, z = 10, codes up to 255 (k = 245)   -> float fallback (exact dequantized)
 *   conv output 8-bit z = 100 (k in [-100, 155])        -> Clip/Div/Round/Mul float emulation
 *   input 8-bit z = 0                                    -> not exported: qd_exec_forward_host
 *                                                          never applies a graph-input quantizer
 *   relu output 4-bit z = 0                              -> Clip(0, 15 s) -> Q/DQ int8
 *   flatten output 8-bit z = 128 (k in [-128, 127])      -> Q/DQ int8 without Clip
 *   logits (a graph output) 6-bit z = 20                 -> Clip -> Q/DQ, output name kept
 * Checks: the file unpacks with protobuf-c with the expected nodes and attributes, the INT8/INT4
 * initializers decode to q - z, scales/zero points/axes/clip bounds are exact; encodings.json
 * carries the same grids and codes; the file re-loads through qd_onnx_load.
 *
 * With --ort-dir DIR it also writes DIR/model_qdq.onnx, DIR/input.bin, DIR/expected.bin (the C
 * forward of the same quantized graph, QD_EXEC_QUANT, CPU backend) for tests/export_ort_check.py. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "onnx.pb-c.h"

#include "test.h"

#include "core/qmath.h"
#include "qdrop/backend.h"
#include "qdrop/config.h"
#include "qdrop/exec.h"
#include "qdrop/export.h"
#include "qdrop/fsutil.h"
#include "qdrop/graph.h"

/* ---- deterministic data ---------------------------------------------------------------- */
static uint32_t lcg = 12345u;
static float urand(void) { /* [0, 1) */
    lcg = lcg * 1664525u + 1013904223u;
    return (float)(lcg >> 8) * (1.0f / 16777216.0f);
}

static int add_value(qd_graph *g, const char *name, int ndim, const int64_t *dims, int is_const) {
    int v = qd_graph_add_value(g, name);
    qd_value *x = &g->values[v];
    x->dtype = QD_DT_FLOAT;
    x->ndim = ndim;
    for (int d = 0; d < ndim; d++) x->dims[d] = dims[d];
    x->is_const = is_const;
    x->batch_symbolic = !is_const;
    x->producer = -1;
    x->act_quant = -1;
    if (is_const) {
        int64_t n = qd_value_numel(x);
        x->fdata = malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) x->fdata[i] = urand() - 0.5f;
    }
    return v;
}

static int add_node(qd_graph *g, const char *name, qd_op op, int nin, const int *in, int out) {
    int n = qd_graph_add_node(g, name, op, nin, 1);
    qd_node *nd = &g->nodes[n];
    for (int i = 0; i < nin; i++) {
        nd->inputs[i] = in[i];
        if (in[i] >= 0) g->values[in[i]].nconsumers++;
    }
    nd->outputs[0] = out;
    nd->unit = -1;
    nd->wq = -1;
    nd->opset = 13;
    g->values[out].producer = n;
    return n;
}

/* Weight quantizer on node n: codes drawn in [0, 2^b - 1], qweight = (q - z) s exactly. */
static void add_wq(qd_graph *g, int node, int wv, int bits, const float *z, const float *s, int force_max) {
    int wi = g->nwq++;
    g->wq = realloc(g->wq, sizeof(qd_weight_quant) * (size_t)g->nwq);
    qd_weight_quant *wq = &g->wq[wi];
    memset(wq, 0, sizeof *wq);
    const qd_value *w = &g->values[wv];
    wq->node = node;
    wq->weight_value = wv;
    wq->bits = bits;
    wq->channels = (int)w->dims[0];
    wq->per_channel = qd_value_numel(w) / w->dims[0];
    wq->ch_axis = 0;
    wq->scale = malloc(sizeof(float) * (size_t)wq->channels);
    wq->zero_point = malloc(sizeof(float) * (size_t)wq->channels);
    wq->qweight = malloc(sizeof(float) * (size_t)qd_value_numel(w));
    const int qmax = qd_qmax_for_bits(bits);
    for (int c = 0; c < wq->channels; c++) {
        wq->scale[c] = s[c];
        wq->zero_point[c] = z[c];
    }
    for (int64_t i = 0; i < qd_value_numel(w); i++) {
        int c = (int)(i / wq->per_channel);
        float q = (float)(int)(urand() * (float)(qmax + 1));
        if (force_max && i % wq->per_channel == 0) q = (float)qmax; /* reach k = qmax - z */
        wq->qweight[i] = QD_MUL_RN(q - wq->zero_point[c], wq->scale[c]);
    }
    wq->reconstructed = 1;
    g->nodes[node].wq = wi;
}

static void add_act(qd_graph *g, int v, int bits, float z, float s) {
    int ai = g->nact++;
    g->act = realloc(g->act, sizeof(qd_act_quant) * (size_t)g->nact);
    qd_act_quant *a = &g->act[ai];
    memset(a, 0, sizeof *a);
    a->value = v;
    a->bits = bits;
    a->qmin = 0;
    a->qmax = qd_qmax_for_bits(bits);
    a->scale = s;
    a->zero_point = z;
    a->unit = -1;
    a->initialized = 1;
    g->values[v].act_quant = ai;
}

/* variant 0: default opset 13; variant 1: opset 21 INT4 with conv z = 8 everywhere */
static qd_graph *build_graph(int variant) {
    lcg = 12345u;
    qd_graph *g = qd_graph_new();
    g->opset = 13;
    const int64_t din[4] = {1, 3, 8, 8}, dw[4] = {4, 3, 3, 3}, db[1] = {4}, dconv[4] = {1, 4, 8, 8},
                  dgap[4] = {1, 4, 1, 1}, dflat[2] = {1, 4}, dfw[2] = {5, 4}, dfb[1] = {5}, dout[2] = {1, 5};
    int x = add_value(g, "input", 4, din, 0);
    int w = add_value(g, "conv.weight", 4, dw, 1);
    int bias = add_value(g, "conv.bias", 1, db, 1);
    int conv = add_value(g, "conv_out", 4, dconv, 0);
    int relu = add_value(g, "relu_out", 4, dconv, 0);
    int gap = add_value(g, "gap_out", 4, dgap, 0);
    int flat = add_value(g, "flat", 2, dflat, 0);
    int fw = add_value(g, "fc.weight", 2, dfw, 1);
    int fb = add_value(g, "fc.bias", 1, dfb, 1);
    int out = add_value(g, "logits", 2, dout, 0);
    g->ninputs = 1;
    g->inputs = malloc(sizeof(int));
    g->inputs[0] = x;
    g->noutputs = 1;
    g->outputs = malloc(sizeof(int));
    g->outputs[0] = out;

    int in_conv[3] = {x, w, bias};
    int n_conv = add_node(g, "Conv_0", QD_OP_CONV, 3, in_conv, conv);
    qd_attrs *a = &g->nodes[n_conv].a;
    a->kernel[0] = a->kernel[1] = 3;
    a->stride[0] = a->stride[1] = 1;
    a->dilation[0] = a->dilation[1] = 1;
    a->pads[0] = a->pads[1] = a->pads[2] = a->pads[3] = 1;
    a->group = 1;
    add_node(g, "Relu_1", QD_OP_RELU, 1, (int[]){conv}, relu);
    add_node(g, "GlobalAveragePool_2", QD_OP_GLOBALAVGPOOL, 1, (int[]){relu}, gap);
    int n_flat = add_node(g, "Flatten_3", QD_OP_FLATTEN, 1, (int[]){gap}, flat);
    g->nodes[n_flat].a.axis = 1;
    int n_fc = add_node(g, "Gemm_4", QD_OP_GEMM, 3, (int[]){flat, fw, fb}, out);
    a = &g->nodes[n_fc].a;
    a->alpha = 1.0f;
    a->beta = 1.0f;
    a->trans_b = 1;

    const float zc0[4] = {3, 8, 12, 8}, zc1[4] = {8, 8, 8, 8}, sc[4] = {0.05f, 0.03f, 0.07f, 0.04f};
    add_wq(g, n_conv, w, 4, variant ? zc1 : zc0, sc, 0);
    const float zf[5] = {10, 10, 10, 10, 10}, sf[5] = {0.004f, 0.005f, 0.003f, 0.006f, 0.002f};
    add_wq(g, n_fc, fw, 8, zf, sf, 1);
    add_act(g, x, 8, 0.0f, 4.0f / 255.0f);
    add_act(g, conv, 8, 100.0f, 4.0f / 255.0f);
    add_act(g, relu, 4, 0.0f, 0.2f);
    add_act(g, flat, 8, 128.0f, 0.02f);
    add_act(g, out, 6, 20.0f, 0.1f);
    return g;
}

/* ---- protobuf-c views ------------------------------------------------------------------ */
static const Onnx__TensorProto *find_init(const Onnx__GraphProto *gp, const char *name) {
    for (size_t i = 0; i < gp->n_initializer; i++)
        if (strcmp(gp->initializer[i]->name, name) == 0) return gp->initializer[i];
    return NULL;
}

static const Onnx__NodeProto *find_producer(const Onnx__GraphProto *gp, const char *tensor) {
    for (size_t i = 0; i < gp->n_node; i++)
        for (size_t o = 0; o < gp->node[i]->n_output; o++)
            if (strcmp(gp->node[i]->output[o], tensor) == 0) return gp->node[i];
    return NULL;
}

static const Onnx__NodeProto *find_op(const Onnx__GraphProto *gp, const char *op, int nth) {
    for (size_t i = 0; i < gp->n_node; i++)
        if (strcmp(gp->node[i]->op_type, op) == 0 && nth-- == 0) return gp->node[i];
    return NULL;
}

static int64_t attr_int(const Onnx__NodeProto *n, const char *name, int64_t dflt) {
    for (size_t i = 0; i < n->n_attribute; i++)
        if (strcmp(n->attribute[i]->name, name) == 0) return n->attribute[i]->i;
    return dflt;
}

static float scalar_f(const Onnx__GraphProto *gp, const char *name) {
    const Onnx__TensorProto *t = find_init(gp, name);
    if (!t || t->data_type != 1 || t->raw_data.len != 4) return NAN;
    float f;
    memcpy(&f, t->raw_data.data, 4);
    return f;
}

static Onnx__ModelProto *load_model(const char *path) {
    void *data;
    size_t len;
    MUST(qd_read_file(path, &data, &len));
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, data);
    free(data);
    return m;
}

/* The activation chain on tensor `in`: checks Clip bounds (when expected) and Q/DQ scale. */
static void check_act_chain(const Onnx__GraphProto *gp, const char *read_name, float s, float z, int qmin, int qmax,
                            int expect_clip) {
    const Onnx__NodeProto *dq = find_producer(gp, read_name);
    CHECK(dq && strcmp(dq->op_type, "DequantizeLinear") == 0, "%s: produced by %s", read_name,
          dq ? dq->op_type : "nothing");
    if (!dq) return;
    CHECK(scalar_f(gp, dq->input[1]) == s, "%s: DQ scale %g want %g", read_name, (double)scalar_f(gp, dq->input[1]),
          (double)s);
    const Onnx__TensorProto *zp = find_init(gp, dq->input[2]);
    CHECK(zp && zp->data_type == 3 && zp->n_dims == 0 && zp->raw_data.len == 1 && zp->raw_data.data[0] == 0,
          "%s: zero point must be scalar int8 0", read_name);
    const Onnx__NodeProto *q = find_producer(gp, dq->input[0]);
    CHECK(q && strcmp(q->op_type, "QuantizeLinear") == 0, "%s: Q missing", read_name);
    if (!q) return;
    const Onnx__NodeProto *clip = find_producer(gp, q->input[0]);
    int has_clip = clip && strcmp(clip->op_type, "Clip") == 0;
    CHECK(has_clip == expect_clip, "%s: clip present %d, expected %d", read_name, has_clip, expect_clip);
    if (has_clip && expect_clip) {
        float lo = QD_MUL_RN((float)qmin - z, s), hi = QD_MUL_RN((float)qmax - z, s);
        CHECK(scalar_f(gp, clip->input[1]) == lo && scalar_f(gp, clip->input[2]) == hi, "%s: clip [%g, %g] want [%g, %g]",
              read_name, (double)scalar_f(gp, clip->input[1]), (double)scalar_f(gp, clip->input[2]), (double)lo,
              (double)hi);
    }
}

static int8_t int4_at(const uint8_t *raw, int64_t i) {
    int nib = (raw[i / 2] >> ((i & 1) ? 4 : 0)) & 0x0F;
    return (int8_t)(nib >= 8 ? nib - 16 : nib);
}

static void check_weight_dq(const Onnx__GraphProto *gp, const qd_graph *g, int wi, int int4) {
    const qd_weight_quant *wq = &g->wq[wi];
    const qd_value *w = &g->values[wq->weight_value];
    const Onnx__NodeProto *layer = find_op(gp, wi == 0 ? "Conv" : "Gemm", 0);
    CHECK(layer != NULL, "layer of weight %d missing", wi);
    if (!layer) return;
    const Onnx__NodeProto *dq = find_producer(gp, layer->input[1]);
    CHECK(dq && strcmp(dq->op_type, "DequantizeLinear") == 0, "%s: weight input not from DequantizeLinear", w->name);
    if (!dq) return;
    CHECK(attr_int(dq, "axis", 1) == 0, "%s: DQ axis %lld want 0", w->name, (long long)attr_int(dq, "axis", 1));
    const Onnx__TensorProto *k = find_init(gp, dq->input[0]), *sc = find_init(gp, dq->input[1]),
                            *zp = find_init(gp, dq->input[2]);
    CHECK(k && sc && zp, "%s: DQ initializers missing", w->name);
    if (!k || !sc || !zp) return;
    CHECK(k->data_type == (int4 ? 22 : 3), "%s: weight dtype %d", w->name, k->data_type);
    CHECK(zp->data_type == k->data_type && zp->n_dims == 1 && zp->dims[0] == wq->channels, "%s: zp shape", w->name);
    for (size_t i = 0; i < zp->raw_data.len; i++) CHECK(zp->raw_data.data[i] == 0, "%s: zp byte %zu", w->name, i);
    CHECK(sc->n_dims == 1 && sc->dims[0] == wq->channels && sc->raw_data.len == 4u * (size_t)wq->channels,
          "%s: scale shape", w->name);
    for (int c = 0; c < wq->channels && sc->raw_data.len == 4u * (size_t)wq->channels; c++) {
        float s;
        memcpy(&s, sc->raw_data.data + 4 * c, 4);
        CHECK(s == wq->scale[c], "%s: scale[%d] %g want %g", w->name, c, (double)s, (double)wq->scale[c]);
    }
    int64_t n = qd_value_numel(w);
    CHECK((int64_t)k->n_dims == w->ndim, "%s: rank", w->name);
    CHECK(k->raw_data.len == (size_t)(int4 ? (n + 1) / 2 : n), "%s: %zu bytes", w->name, k->raw_data.len);
    if (k->raw_data.len != (size_t)(int4 ? (n + 1) / 2 : n)) return;
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        int c = (int)(i / wq->per_channel);
        float s = wq->scale[c], z = wq->zero_point[c];
        float q = qd_quant_code(wq->qweight[i], s, z, 0.0f, (float)qd_qmax_for_bits(wq->bits));
        int kk = int4 ? int4_at(k->raw_data.data, i) : (int8_t)k->raw_data.data[i];
        if (kk != (int)(q - z) || QD_MUL_RN((float)kk, s) != wq->qweight[i]) bad++;
    }
    CHECK(bad == 0, "%s: %d of %lld codes are not q - z", w->name, bad, (long long)n);
}

static void check_file(const char *path, const qd_graph *g, int variant) {
    Onnx__ModelProto *m = load_model(path);
    CHECK(m != NULL, "%s does not unpack", path);
    if (!m) return;
    const Onnx__GraphProto *gp = m->graph;
    int opset = variant ? 21 : 13;
    CHECK(m->n_opset_import == 1 && m->opset_import[0]->version == opset, "opset");
    CHECK(m->ir_version == (variant ? 10 : 7), "ir_version %lld", (long long)m->ir_version);
    /* 1 conv DQ + Conv + 4 (conv output emulation) + Relu + 3 (relu act) + GAP + Flatten
     * + 2 (flat act) + Gemm (float weight) + 3 (logits act); nothing on the graph input */
    CHECK(gp->n_node == 18, "node count %zu want 18", gp->n_node);
    static const char *order[18] = {"DequantizeLinear", "Conv", "Clip", "Div", "Round", "Mul", "Relu", "Clip",
                                    "QuantizeLinear", "DequantizeLinear", "GlobalAveragePool", "Flatten",
                                    "QuantizeLinear", "DequantizeLinear", "Gemm", "Clip", "QuantizeLinear",
                                    "DequantizeLinear"};
    for (size_t i = 0; i < gp->n_node && i < 18; i++)
        CHECK(strcmp(gp->node[i]->op_type, order[i]) == 0, "node %zu is %s, want %s", i, gp->node[i]->op_type, order[i]);
    CHECK(gp->n_input == 1 && strcmp(gp->input[0]->name, "input") == 0, "graph input");
    CHECK(gp->n_output == 1 && strcmp(gp->output[0]->name, "logits") == 0, "graph output keeps its name");
    const Onnx__TensorShapeProto *sh = gp->input[0]->type->tensor_type->shape;
    CHECK(sh->n_dim == 4 && sh->dim[0]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
              strcmp(sh->dim[0]->dim_param, "N") == 0 && sh->dim[1]->dim_value == 3,
          "input shape [N,3,8,8]");

    /* Conv attributes and its weight */
    const Onnx__NodeProto *conv = find_op(gp, "Conv", 0);
    CHECK(conv && attr_int(conv, "group", 0) == 1, "conv group");
    check_weight_dq(gp, g, 0, variant);
    /* fc: 8-bit, k up to 245 -> exact float weights, no DQ */
    const Onnx__NodeProto *gemm = find_op(gp, "Gemm", 0);
    CHECK(gemm && attr_int(gemm, "transB", 0) == 1, "gemm transB");
    if (gemm) {
        const Onnx__TensorProto *fw = find_init(gp, gemm->input[1]);
        CHECK(fw && fw->data_type == 1 && fw->raw_data.len == 4 * 20, "fc weight stored as float");
        if (fw && fw->raw_data.len == 80)
            CHECK(memcmp(fw->raw_data.data, g->wq[1].qweight, 80) == 0, "fc float weight == qweight bit for bit");
        CHECK(gemm->n_input == 3 && strcmp(gemm->input[0], "flat_dq") == 0, "gemm reads flat_dq, got %s",
              gemm->input[0]);
    }
    /* activation chains */
    check_act_chain(gp, "relu_out_dq", 0.2f, 0.0f, 0, 15, 1);
    check_act_chain(gp, "flat_dq", 0.02f, 128.0f, 0, 255, 0);
    check_act_chain(gp, "logits", 0.1f, 20.0f, 0, 63, 1);
    const Onnx__NodeProto *mul = find_producer(gp, "conv_out_dq");
    CHECK(mul && strcmp(mul->op_type, "Mul") == 0, "conv output 8-bit z=100 uses the float emulation");
    CHECK(conv && strcmp(conv->input[0], "input") == 0, "conv reads the raw input (no input quantizer)");
    const Onnx__NodeProto *relu = find_op(gp, "Relu", 0);
    CHECK(relu && strcmp(relu->input[0], "conv_out_dq") == 0, "relu reads conv_out_dq");
    const Onnx__NodeProto *clip0 = find_op(gp, "Clip", 0);
    if (clip0) {
        float s = 4.0f / 255.0f;
        CHECK(scalar_f(gp, clip0->input[1]) == QD_MUL_RN(-100.0f, s) &&
                  scalar_f(gp, clip0->input[2]) == QD_MUL_RN(155.0f, s),
              "input clip bounds");
    }
    onnx__model_proto__free_unpacked(m, NULL);
}

static int b64val(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static void check_encodings(const char *path, const qd_graph *g) {
    void *data;
    size_t len;
    MUST(qd_read_file(path, &data, &len));
    cJSON *root = cJSON_ParseWithLength(data, len);
    free(data);
    CHECK(root != NULL, "encodings.json parses");
    if (!root) return;
    cJSON *ws = cJSON_GetObjectItemCaseSensitive(root, "weights");
    cJSON *as = cJSON_GetObjectItemCaseSensitive(root, "activations");
    CHECK(cJSON_GetArraySize(ws) == 2 && cJSON_GetArraySize(as) == 4, "2 weights, 4 activations (input skipped)");
    for (int wi = 0; wi < 2 && wi < cJSON_GetArraySize(ws); wi++) {
        const qd_weight_quant *wq = &g->wq[wi];
        cJSON *o = cJSON_GetArrayItem(ws, wi);
        CHECK(strcmp(cJSON_GetObjectItemCaseSensitive(o, "name")->valuestring, g->values[wq->weight_value].name) == 0,
              "weight name");
        CHECK(cJSON_GetObjectItemCaseSensitive(o, "bits")->valueint == wq->bits, "bits");
        cJSON *sc = cJSON_GetObjectItemCaseSensitive(o, "scale"), *zp = cJSON_GetObjectItemCaseSensitive(o, "zero_point");
        for (int c = 0; c < wq->channels; c++) {
            CHECK((float)cJSON_GetArrayItem(sc, c)->valuedouble == wq->scale[c], "weight %d scale %d round-trips", wi, c);
            CHECK((float)cJSON_GetArrayItem(zp, c)->valuedouble == wq->zero_point[c], "zero point");
        }
        CHECK(strcmp(cJSON_GetObjectItemCaseSensitive(o, "onnx_storage")->valuestring, wi == 0 ? "int8" : "float") == 0,
              "storage of weight %d", wi);
        const char *q = cJSON_GetObjectItemCaseSensitive(o, "q")->valuestring;
        int64_t n = qd_value_numel(&g->values[wq->weight_value]), i = 0, bad = 0;
        for (size_t p = 0; q[p] && q[p + 1] && q[p + 2] && q[p + 3]; p += 4) {
            int v0 = b64val(q[p]), v1 = b64val(q[p + 1]), v2 = b64val(q[p + 2]), v3 = b64val(q[p + 3]);
            int bytes[3] = {(v0 << 2) | (v1 >> 4), ((v1 & 15) << 4) | (v2 >= 0 ? v2 >> 2 : 0),
                            ((v2 & 3) << 6) | (v3 >= 0 ? v3 : 0)};
            int nb = v2 < 0 ? 1 : (v3 < 0 ? 2 : 3);
            for (int b = 0; b < nb && i < n; b++, i++) {
                int c = (int)(i / wq->per_channel);
                if (QD_MUL_RN((float)bytes[b] - wq->zero_point[c], wq->scale[c]) != wq->qweight[i]) bad++;
            }
        }
        CHECK(i == n && bad == 0, "weight %d: %lld codes decoded, %lld wrong", wi, (long long)i, (long long)bad);
    }
    cJSON *a0 = cJSON_GetArrayItem(as, 0);
    CHECK(a0 && strcmp(cJSON_GetObjectItemCaseSensitive(a0, "name")->valuestring, "conv_out") == 0 &&
              cJSON_GetObjectItemCaseSensitive(a0, "zero_point")->valuedouble == 100.0 &&
              (float)cJSON_GetObjectItemCaseSensitive(a0, "scale")->valuedouble == 4.0f / 255.0f &&
              strcmp(cJSON_GetObjectItemCaseSensitive(a0, "onnx_storage")->valuestring, "float_round") == 0,
          "conv_out activation encoding");
    cJSON *aimet = cJSON_GetObjectItemCaseSensitive(root, "aimet");
    cJSON *ae = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(aimet, "activation_encodings"), "logits");
    CHECK(ae && cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ae, 0), "offset")->valuedouble == -20.0 &&
              cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ae, 0), "bitwidth")->valueint == 6,
          "aimet offset = -z");
    cJSON_Delete(root);
}

/* The node conversion through the reader: the same graph without quantizers exports to plain
 * ONNX, which qd_onnx_load must read back to the same nodes, attributes and weights. */
static void fp_roundtrip(const char *dir, qd_graph *g) {
    int nwq = g->nwq, nact = g->nact, wq_of[16];
    for (int i = 0; i < g->nnodes && i < 16; i++) wq_of[i] = g->nodes[i].wq, g->nodes[i].wq = -1;
    g->nwq = 0;
    g->nact = 0;
    char path[1200];
    MUST(qd_path_join(path, sizeof path, dir, "model_fp.onnx"));
    qd_config cfg;
    qd_config_defaults(&cfg);
    MUST(qd_export_qdq_onnx(g, &cfg, path));
    g->nwq = nwq;
    g->nact = nact;
    for (int i = 0; i < g->nnodes && i < 16; i++) g->nodes[i].wq = wq_of[i];
    qd_graph *r = NULL;
    qd_status st = qd_onnx_load(path, &r);
    CHECK(st == QD_OK, "qd_onnx_load(%s): %s", path, qd_error_message());
    if (st != QD_OK) return;
    static const qd_op ops[5] = {QD_OP_CONV, QD_OP_RELU, QD_OP_GLOBALAVGPOOL, QD_OP_FLATTEN, QD_OP_GEMM};
    CHECK(r->nnodes == 5, "FP export reloads with %d nodes, want 5", r->nnodes);
    for (int i = 0; i < r->nnodes && i < 5; i++) CHECK(r->nodes[i].op == ops[i], "node %d op %d", i, (int)r->nodes[i].op);
    if (r->nnodes == 5) {
        const qd_attrs *a = &r->nodes[0].a;
        CHECK(a->kernel[0] == 3 && a->kernel[1] == 3 && a->pads[0] == 1 && a->pads[3] == 1 && a->stride[0] == 1 &&
                  a->group == 1,
              "conv attributes survive");
        CHECK(r->nodes[4].a.trans_b == 1 && r->nodes[4].a.alpha == 1.0f && r->nodes[3].a.axis == 1,
              "gemm/flatten attributes survive");
    }
    const char *names[4] = {"conv.weight", "conv.bias", "fc.weight", "fc.bias"};
    for (int k = 0; k < 4; k++) {
        int v0 = qd_graph_find_value(g, names[k]), v1 = qd_graph_find_value(r, names[k]);
        CHECK(v1 >= 0 && r->values[v1].fdata && qd_value_numel(&r->values[v1]) == qd_value_numel(&g->values[v0]) &&
                  memcmp(r->values[v1].fdata, g->values[v0].fdata,
                         sizeof(float) * (size_t)qd_value_numel(&g->values[v0])) == 0,
              "%s reloads bit for bit", names[k]);
    }
    int in = r->ninputs == 1 ? r->inputs[0] : -1;
    CHECK(in >= 0 && r->values[in].batch_symbolic && r->values[in].ndim == 4 && r->values[in].dims[1] == 3,
          "input [N,3,8,8] with a symbolic batch");
    qd_graph_free(r);
}

/* The embedded ResNet-20, prepared (constants folded, BN folded), exported without quantizers:
 * reloads with the same nodes; tests/export_ort_check.py compares it with the original in ORT. */
static void resnet_roundtrip(const char *dir) {
    const char *model = "assets/models/resnet20_cifar10.onnx";
    if (!qd_file_exists(model)) {
        printf("note: %s not found (run from the source tree); ResNet-20 round trip skipped\n", model);
        return;
    }
    qd_graph *g = NULL;
    MUST(qd_graph_prepare(model, &g));
    char path[1200];
    MUST(qd_path_join(path, sizeof path, dir, "resnet20_fp.onnx"));
    qd_config cfg;
    qd_config_defaults(&cfg);
    MUST(qd_export_qdq_onnx(g, &cfg, path));
    qd_graph *r = NULL;
    qd_status st = qd_onnx_load(path, &r);
    CHECK(st == QD_OK, "qd_onnx_load(%s): %s", path, qd_error_message());
    if (st == QD_OK) {
        CHECK(r->nnodes == g->nnodes, "ResNet-20 export reloads with %d nodes, prepared graph has %d", r->nnodes,
              g->nnodes);
        int same = r->nnodes == g->nnodes;
        for (int i = 0; same && i < r->nnodes; i++) same = r->nodes[i].op == g->nodes[i].op;
        CHECK(same, "ResNet-20 export reloads with the same op sequence");
        printf("ResNet-20: %d nodes exported and reloaded\n", r->nnodes);
        qd_graph_free(r);
    }
    qd_graph_free(g);
}

/* The C forward of the quantized graph, written for tests/export_ort_check.py. */
static int write_ort_case(const char *dir, qd_graph *g) {
    qd_backend *b = NULL;
    qd_backend_options bo = {0};
    bo.threads = 1;
    MUST(qd_backend_create("cpu", &bo, &b));
    const int batch = 8;
    qd_exec *e = NULL;
    MUST(qd_exec_create(g, b, batch, &e));
    float in[8 * 3 * 8 * 8], out[8 * 5];
    for (int i = 0; i < batch * 3 * 64; i++) in[i] = 4.0f * (urand() - 0.5f);
    MUST(qd_exec_forward_host(e, QD_EXEC_QUANT, in, batch, out));
    qd_exec_free(e);
    qd_backend_destroy(b);
    char path[1200];
    MUST(qd_path_join(path, sizeof path, dir, "input.bin"));
    MUST(qd_write_file_atomic(path, in, sizeof in));
    MUST(qd_path_join(path, sizeof path, dir, "expected.bin"));
    MUST(qd_write_file_atomic(path, out, sizeof out));
    printf("wrote %s/{model_qdq.onnx,input.bin,expected.bin}: batch %d, logits[0] = %g %g %g %g %g\n", dir, batch,
           (double)out[0], (double)out[1], (double)out[2], (double)out[3], (double)out[4]);
    return 0;
}

int main(int argc, char **argv) {
    const char *ort_dir = NULL;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--ort-dir") == 0 && i + 1 < argc) ort_dir = argv[++i];
    char dir[1024];
    if (ort_dir) {
        snprintf(dir, sizeof dir, "%s", ort_dir);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/qd_test_export_%d", tmp && tmp[0] ? tmp : "/tmp", (int)getpid());
    }
    MUST(qd_mkdir_p(dir));
    char onnx_path[1200], enc_path[1200], int4_path[1200];
    MUST(qd_path_join(onnx_path, sizeof onnx_path, dir, "model_qdq.onnx"));
    MUST(qd_path_join(enc_path, sizeof enc_path, dir, "encodings.json"));
    MUST(qd_path_join(int4_path, sizeof int4_path, dir, "model_qdq_int4.onnx"));

    qd_config cfg;
    qd_config_defaults(&cfg);
    cfg.w_qconfig.bit = 4;
    cfg.a_qconfig.bit = 4;

    /* variant A: opset 13 */
    qd_graph *g = build_graph(0);
    MUST(qd_export_qdq_onnx(g, &cfg, onnx_path));
    MUST(qd_export_encodings(g, &cfg, enc_path));
    check_file(onnx_path, g, 0);
    check_encodings(enc_path, g);

    /* the reader takes the QDQ file back when it understands Q/DQ; until then it must refuse it
     * cleanly, naming the op (the content was checked above with protobuf-c) */
    qd_graph *r = NULL;
    qd_status st = qd_onnx_load(onnx_path, &r);
    if (st == QD_OK) {
        CHECK(r->ninputs == 1 && r->noutputs == 1 && r->nnodes >= 5, "reloaded QDQ graph: %d nodes", r->nnodes);
        printf("QDQ model reloaded through qd_onnx_load: %d nodes\n", r->nnodes);
        qd_graph_free(r);
    } else {
        CHECK(st == QD_ERR_UNSUPPORTED && strstr(qd_error_message(), "Linear"), "qd_onnx_load(%s): %s %s", onnx_path,
              qd_status_name(st), qd_error_message());
        printf("note: qd_onnx_load does not read QDQ files yet (%s)\n", qd_error_message());
    }
    qd_error_clear();
    fp_roundtrip(dir, g);

    /* refusals: INT4 without opset 21, opset out of range, a weight off its grid */
    cfg.int4_weights = 1;
    CHECK(qd_export_qdq_onnx(g, &cfg, onnx_path) == QD_ERR_CONFIG, "int4 at opset 13 refused");
    qd_error_clear();
    cfg.int4_weights = 0;
    cfg.onnx_opset = 11;
    CHECK(qd_export_qdq_onnx(g, &cfg, onnx_path) == QD_ERR_CONFIG, "opset 11 refused");
    qd_error_clear();
    cfg.onnx_opset = 13;
    float keep = g->wq[0].qweight[5];
    g->wq[0].qweight[5] = keep + 0.3f * g->wq[0].scale[0];
    st = qd_export_qdq_onnx(g, &cfg, "/nonexistent-dir/never.onnx");
    CHECK(st == QD_ERR_INTERNAL && strstr(qd_error_message(), "conv.weight"), "off-grid weight refused: %s",
          qd_error_message());
    qd_error_clear();
    g->wq[0].qweight[5] = keep;

    /* variant B: opset 21 with INT4 weights (conv z = 8 -> k in [-8, 7]) */
    qd_graph *g4 = build_graph(1);
    cfg.onnx_opset = 21;
    cfg.int4_weights = 1;
    MUST(qd_export_qdq_onnx(g4, &cfg, int4_path));
    check_file(int4_path, g4, 1);
    qd_graph_free(g4);

    resnet_roundtrip(dir);
    if (ort_dir && write_ort_case(dir, g)) qd_test_failures++;
    qd_graph_free(g);

    if (!ort_dir) {
        remove(onnx_path);
        remove(enc_path);
        remove(int4_path);
        char p2[1200];
        if (qd_path_join(p2, sizeof p2, dir, "model_fp.onnx") == QD_OK) remove(p2);
        if (qd_path_join(p2, sizeof p2, dir, "resnet20_fp.onnx") == QD_OK) remove(p2);
        remove(dir);
    }
    return qd_test_summary("test_export");
}
