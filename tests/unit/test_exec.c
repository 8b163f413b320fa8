/* tests/unit/test_exec.c: the forward executor (src/graph/exec.c) on the CPU backend, on a
 * hand-built graph  x -> Conv(3x3) -> Relu -[act quant]-> Conv(1x1) -> Add(skip from the
 * quantized Relu output... via a second Conv) -> Relu -> y.  Checks FP and quantized runs
 * against node-by-node backend calls, sub-range runs (unit caching), the "input quantizer not
 * re-applied" rule, slot reuse, qd_exec_value and host chunking beyond max_batch. */
#define _POSIX_C_SOURCE 200809L /* strdup, clock_gettime */
#include "test.h"
#include "cpu_test_util.h"
#include "core/qmath.h"
#include "qdrop/exec.h"

static int add_val(qd_graph *g, const char *name, int nd, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    int v = qd_graph_add_value(g, name);
    qd_value *V = &g->values[v];
    V->ndim = nd;
    int64_t d[4] = {d0, d1, d2, d3};
    for (int i = 0; i < nd; i++) V->dims[i] = d[i];
    return v;
}

static int add_const(qd_graph *g, const char *name, int nd, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    int v = add_val(g, name, nd, d0, d1, d2, d3);
    qd_value *V = &g->values[v];
    V->is_const = 1;
    V->fdata = malloc(sizeof(float) * (size_t)qd_value_numel(V));
    fill(V->fdata, qd_value_numel(V), -0.5f, 0.5f);
    return v;
}

static int add_node(qd_graph *g, qd_op op, int nin, const int *ins, int out) {
    int k = qd_graph_add_node(g, "n", op, nin, 1);
    qd_node *n = &g->nodes[k];
    char nm[32];
    snprintf(nm, sizeof nm, "node%d", k);
    free(n->name);
    n->name = strdup(nm);
    for (int i = 0; i < nin; i++) n->inputs[i] = ins[i];
    n->outputs[0] = out;
    g->values[out].producer = k;
    return k;
}

/* nodes: 0 conv1(x) -> a ; 1 relu(a) -> b [aq 0] ; 2 conv2(b) -> c ; 3 conv3(b) -> d ; 4 add(c, d) -> e ;
 *        5 relu(e) -> y [aq 1] */
typedef struct { qd_graph *g; int x, w1, b1, a, b, w2, c, w3, d, e, y; } net;

static net build(void) {
    net t;
    qd_graph *g = t.g = qd_graph_new();
    t.x = add_val(g, "x", 4, 1, 2, 6, 6);
    t.w1 = add_const(g, "w1", 4, 4, 2, 3, 3);
    t.b1 = add_const(g, "b1", 1, 4, 0, 0, 0);
    t.a = add_val(g, "a", 4, 1, 4, 6, 6);
    t.b = add_val(g, "b", 4, 1, 4, 6, 6);
    t.w2 = add_const(g, "w2", 4, 3, 4, 1, 1);
    t.c = add_val(g, "c", 4, 1, 3, 6, 6);
    t.w3 = add_const(g, "w3", 4, 3, 4, 3, 3);
    t.d = add_val(g, "d", 4, 1, 3, 6, 6);
    t.e = add_val(g, "e", 4, 1, 3, 6, 6);
    t.y = add_val(g, "y", 4, 1, 3, 6, 6);
    int i0[3] = {t.x, t.w1, t.b1};
    int k = add_node(g, QD_OP_CONV, 3, i0, t.a);
    g->nodes[k].a.kernel[0] = g->nodes[k].a.kernel[1] = 3;
    g->nodes[k].a.pads[0] = g->nodes[k].a.pads[1] = g->nodes[k].a.pads[2] = g->nodes[k].a.pads[3] = 1;
    int i1[1] = {t.a};
    add_node(g, QD_OP_RELU, 1, i1, t.b);
    int i2[2] = {t.b, t.w2};
    k = add_node(g, QD_OP_CONV, 2, i2, t.c);
    g->nodes[k].a.kernel[0] = g->nodes[k].a.kernel[1] = 1;
    int i3[2] = {t.b, t.w3};
    k = add_node(g, QD_OP_CONV, 2, i3, t.d);
    g->nodes[k].a.kernel[0] = g->nodes[k].a.kernel[1] = 3;
    g->nodes[k].a.pads[0] = g->nodes[k].a.pads[1] = g->nodes[k].a.pads[2] = g->nodes[k].a.pads[3] = 1;
    int i4[2] = {t.c, t.d};
    add_node(g, QD_OP_ADD, 2, i4, t.e);
    int i5[1] = {t.e};
    add_node(g, QD_OP_RELU, 1, i5, t.y);
    g->ninputs = 1; g->inputs = malloc(sizeof(int)); g->inputs[0] = t.x;
    g->noutputs = 1; g->outputs = malloc(sizeof(int)); g->outputs[0] = t.y;
    for (int v = 0; v < g->nvalues; v++) g->values[v].batch_symbolic = !g->values[v].is_const;
    /* activation quantizers on b and y (not yet initialized) */
    g->nact = 2;
    g->act = calloc(2, sizeof(qd_act_quant));
    int vals[2] = {t.b, t.y};
    for (int q = 0; q < 2; q++) {
        g->act[q].value = vals[q]; g->act[q].bits = 4; g->act[q].qmin = 0; g->act[q].qmax = 15;
        g->act[q].scale = 0.05f + 0.03f * q; g->act[q].zero_point = 0; g->act[q].unit = -1;
        g->values[vals[q]].act_quant = q;
    }
    /* weight quantizer on conv1 with a visibly different effective weight */
    g->nwq = 1;
    g->wq = calloc(1, sizeof(qd_weight_quant));
    qd_weight_quant *q = &g->wq[0];
    q->node = 0; q->weight_value = t.w1; q->bits = 4; q->channels = 4; q->per_channel = 18;
    q->scale = calloc(4, sizeof(float)); q->zero_point = calloc(4, sizeof(float));
    q->qweight = malloc(sizeof(float) * 72);
    for (int i = 0; i < 72; i++) q->qweight[i] = rintf(g->values[t.w1].fdata[i] / 0.1f) * 0.1f;
    g->nodes[0].wq = 0;
    return t;
}

/* reference: node-by-node with plain backend calls */
static void reference(qd_backend *be, const net *t, const float *x, int N, int quant, float *out_b, float *out_y) {
    qd_graph *g = t->g;
    size_t n4 = (size_t)N * 4 * 36, n3 = (size_t)N * 3 * 36;
    float *a = malloc(4 * n4), *b = malloc(4 * n4), *c = malloc(4 * n3), *d = malloc(4 * n3), *e = malloc(4 * n3);
    qd_shape xs = shp(4, N, 2, 6, 6), s4 = shp(4, N, 4, 6, 6), s3 = shp(4, N, 3, 6, 6);
    qd_shape c1[3] = {xs, shp(4, 4, 2, 3, 3), shp(1, 4, 0, 0, 0)};
    const float *in1[3] = {x, quant ? g->wq[0].qweight : g->values[t->w1].fdata, g->values[t->b1].fdata};
    MUST(be->ops->node_forward(be, &g->nodes[0], c1, in1, &s4, a));
    const float *in2[1] = {a};
    MUST(be->ops->node_forward(be, &g->nodes[1], &s4, in2, &s4, b));
    qd_fq_desc fd;
    memset(&fd, 0, sizeof fd);
    fd.qmax = 15; fd.keep_prob = 1;
    if (quant) for (size_t i = 0; i < n4; i++) b[i] = qd_fake_quant(b[i], g->act[0].scale, 0, 0, 15);
    qd_shape c2[2] = {s4, shp(4, 3, 4, 1, 1)};
    const float *in3[2] = {b, g->values[t->w2].fdata};
    MUST(be->ops->node_forward(be, &g->nodes[2], c2, in3, &s3, c));
    qd_shape c3[2] = {s4, shp(4, 3, 4, 3, 3)};
    const float *in4[2] = {b, g->values[t->w3].fdata};
    MUST(be->ops->node_forward(be, &g->nodes[3], c3, in4, &s3, d));
    qd_shape a2[2] = {s3, s3};
    const float *in5[2] = {c, d};
    MUST(be->ops->node_forward(be, &g->nodes[4], a2, in5, &s3, e));
    const float *in6[1] = {e};
    MUST(be->ops->node_forward(be, &g->nodes[5], &s3, in6, &s3, out_y));
    if (quant) for (size_t i = 0; i < n3; i++) out_y[i] = qd_fake_quant(out_y[i], g->act[1].scale, 0, 0, 15);
    if (out_b) memcpy(out_b, b, 4 * n4);
    free(a); free(b); free(c); free(d); free(e);
}

static int eq(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

int main(void) {
    qd_backend *be = make_cpu(2);
    net t = build();
    qd_graph *g = t.g;
    const int MB = 4, N = 10;
    qd_exec *e = NULL;
    MUST(qd_exec_create(g, be, MB, &e));
    float *x = malloc(sizeof(float) * N * 72);
    fill(x, N * 72, -1, 1);
    float *y = malloc(sizeof(float) * N * 108), *yr = malloc(sizeof(float) * N * 108);
    float *br = malloc(sizeof(float) * N * 144);

    /* FP, batch 10 > max_batch 4: chunked */
    MUST(qd_exec_forward_host(e, QD_EXEC_FP, x, N, y));
    reference(be, &t, x, N, 0, NULL, yr);
    CHECK(eq(y, yr, (size_t)N * 108), "FP forward differs from node-by-node reference");
    /* QUANT with no initialized quantizer: only the weights change */
    MUST(qd_exec_forward_host(e, QD_EXEC_AQ_ONLY, x, N, y));
    CHECK(eq(y, yr, (size_t)N * 108), "AQ_ONLY without initialized quantizers must equal FP");
    g->act[0].initialized = g->act[1].initialized = 1;
    MUST(qd_exec_sync_quant(e));
    MUST(qd_exec_forward_host(e, QD_EXEC_QUANT, x, N, y));
    reference(be, &t, x, N, 1, br, yr);
    CHECK(eq(y, yr, (size_t)N * 108), "QUANT forward differs from reference (qweight + act quantizers)");
    int nz = 0;
    for (int i = 0; i < N * 108; i++) nz += y[i] != 0.0f;
    CHECK(nz > N * 20, "quantized output should not be all zero (%d non-zero)", nz);
    for (int i = 0; i < N * 108; i++) {
        float code = y[i] / g->act[1].scale;
        if (fabsf(code - rintf(code)) > 1e-3f) { CHECK(0, "output %d = %g is not on the 4-bit grid", i, y[i]); break; }
    }
    /* scale change picked up by sync_quant */
    g->act[1].scale = 0.2f;
    MUST(qd_exec_sync_quant(e));
    float *y2 = malloc(sizeof(float) * N * 108);
    MUST(qd_exec_forward_host(e, QD_EXEC_QUANT, x, N, y2));
    CHECK(!eq(y, y2, (size_t)N * 108), "sync_quant must re-upload activation scales");
    g->act[1].scale = 0.08f;
    MUST(qd_exec_sync_quant(e));

    /* sub-range runs, like unit caching: [0, 2) -> b (post-quantizer), then [2, 6) from b */
    float *bq = malloc(sizeof(float) * MB * 144), *yy = malloc(sizeof(float) * MB * 108);
    MUST(qd_exec_run(e, QD_EXEC_QUANT, 0, 2, t.x, x, MB, t.b, bq));
    CHECK(eq(bq, br, (size_t)MB * 144), "prefix run output must be the quantized b");
    MUST(qd_exec_run(e, QD_EXEC_QUANT, 2, 6, t.b, bq, MB, t.y, yy));
    CHECK(eq(yy, yr, (size_t)MB * 108), "suffix run from the cached input must match the full run");
    const float *pv = qd_exec_value(e, t.y);
    CHECK(pv && eq(pv, yy, (size_t)MB * 108), "qd_exec_value(y) after the run");
    CHECK(qd_exec_value(e, t.a) == NULL, "a was not computed by the suffix run");
    /* input quantizer not re-applied: feed an off-grid b directly */
    float *boff = malloc(sizeof(float) * MB * 144), *y3 = malloc(sizeof(float) * MB * 108), *y4 = malloc(sizeof(float) * MB * 108);
    for (int i = 0; i < MB * 144; i++) boff[i] = bq[i] + 0.013f;
    MUST(qd_exec_run(e, QD_EXEC_QUANT, 2, 6, t.b, boff, MB, t.y, y3));
    MUST(qd_exec_run(e, QD_EXEC_QUANT, 2, 6, t.b, bq, MB, t.y, y4));
    CHECK(!eq(y3, y4, (size_t)MB * 108), "the run's input quantizer must not be re-applied");
    /* asking for a value outside the range fails cleanly */
    qd_error_clear();
    CHECK(qd_exec_run(e, QD_EXEC_FP, 2, 6, t.x, x, MB, t.y, yy) != QD_OK, "reading b without computing it must fail");
    CHECK(strstr(qd_error_message(), "node") != NULL, "error names the node: %s", qd_error_message());
    qd_error_clear();
    CHECK(qd_exec_run(e, QD_EXEC_FP, 0, 6, t.x, x, MB + 1, t.y, yy) != QD_OK, "batch above max_batch must fail");
    qd_error_clear();

    qd_exec_free(e);
    qd_graph_free(g);
    qd_backend_destroy(be);
    free(x); free(y); free(yr); free(br); free(y2); free(bq); free(yy); free(boff); free(y3); free(y4);
    return qd_test_summary("test_exec");
}
