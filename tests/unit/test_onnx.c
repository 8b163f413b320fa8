/* ONNX reader, BN folding, units and quantizer placement (issue 3; §6.1, §8.1, §8.6, §8.7).
 * Needs only committed files: assets/models/resnet20_cifar10.onnx and tests/bad_inputs/onnx/. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "core/checked.h"
#include "core/escape.h"
#include "qdrop/graph.h"
#include "qdrop/status.h"

static const char *R20 = "assets/models/resnet20_cifar10.onnx";

static const qd_act_quant *aq_on(const qd_graph *g, const char *value) {
    int v = qd_graph_find_value(g, value);
    if (v < 0 || g->values[v].act_quant < 0) return NULL;
    return &g->act[g->values[v].act_quant];
}

static void test_resnet20_units_and_quantizers(void) {
    qd_graph *g = NULL;
    qd_status st = qd_graph_prepare(R20, &g);
    CHECK(st == QD_OK, "prepare %s: %s", R20, qd_error_message());
    if (st != QD_OK) return;
    CHECK(g->nunits == 11, "ResNet-20 units %d, expected 11 (stem, 9 blocks, fc)", g->nunits);
    CHECK(g->ninputs == 1 && g->values[g->inputs[0]].batch_symbolic, "symbolic batch input");
    CHECK(g->values[g->outputs[0]].ndim == 2 && g->values[g->outputs[0]].dims[1] == 10, "logits [N,10]");
    int nconv = 0, nbn = 0, npad = 0;
    for (int i = 0; i < g->nnodes; i++) {
        nconv += g->nodes[i].op == QD_OP_CONV;
        nbn += g->nodes[i].op == QD_OP_BATCHNORM;
        npad += g->nodes[i].op == QD_OP_PAD;
    }
    CHECK(nconv == 19 && nbn == 0 && npad == 2, "conv %d bn %d pad %d", nconv, nbn, npad);
    /* the option-A shortcut: its Pad adds 8 zero channels on each side (16 -> 32) */
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].op == QD_OP_PAD && strstr(g->nodes[i].name, "layer2.0")) {
            const qd_attrs *a = &g->nodes[i].a;
            CHECK(a->pad_begin[1] == 8 && a->pad_end[1] == 8 && a->pad_begin[2] == 0 && a->pad_value == 0.0f,
                  "layer2.0 pad %lld/%lld", (long long)a->pad_begin[1], (long long)a->pad_end[1]);
        } else if (g->nodes[i].op == QD_OP_SLICE && strstr(g->nodes[i].name, "layer3.0/shortcut/Slice_1")) {
            const qd_attrs *a = &g->nodes[i].a;
            const qd_value *o = &g->values[g->nodes[i].outputs[0]];
            CHECK(a->slice_step[3] == 2 && a->slice_start[3] == 0 && o->dims[1] == 32 && o->dims[2] == 8 && o->dims[3] == 8,
                  "layer3.0 slice");
        }
    /* units: kinds, contiguity, single input/output */
    for (int u = 0; u < g->nunits; u++) {
        const qd_unit *U = &g->units[u];
        int expect_block = u >= 1 && u <= 9;
        CHECK((U->kind == QD_UNIT_BLOCK) == expect_block, "unit %d kind", u);
        CHECK(U->nlayers == (expect_block ? 2 : 1), "unit %d nlayers %d", u, U->nlayers);
        for (int i = U->node_begin; i < U->node_end; i++) CHECK(g->nodes[i].unit == u, "node %d unit", i);
        if (u > 0) CHECK(U->input_value == g->units[u - 1].output_value || u == 10, "unit %d input", u);
    }
    CHECK(strncmp(g->units[0].name, "layer 0: /conv1/Conv", 20) == 0, "unit 0 name '%s'", g->units[0].name);
    CHECK(g->units[10].output_value == g->outputs[0], "fc unit writes the logits");

    /* §6.1 Q2 column, W4A4 with 8-bit first/last (§1 step 5) */
    qd_quant_plan_opts po = {4, 4, 1, 0};
    st = qd_graph_place_quantizers(g, &po);
    CHECK(st == QD_OK, "place: %s", qd_error_message());
    CHECK(g->nact == 19, "activation quantizers %d, expected 19 (stem + 2 per block)", g->nact);
    CHECK(g->nwq == 20, "weight quantizers %d, expected 20", g->nwq);
    const qd_act_quant *a = aq_on(g, "/Relu_output_0");
    CHECK(a && a->bits == 4 && a->one_sided && a->unit == 0 && a->qmin == 0 && a->qmax == 15, "stem quantizer");
    a = aq_on(g, "/layer1/layer1.0/Relu_output_0");
    CHECK(a && a->bits == 4 && a->one_sided && a->unit == 1, "block 0 inner quantizer");
    a = aq_on(g, "/layer2/layer2.0/Relu_1_output_0");
    CHECK(a && a->bits == 4 && a->one_sided && a->unit == 4, "block 3 output quantizer");
    a = aq_on(g, "/layer3/layer3.2/Relu_1_output_0");
    CHECK(a && a->bits == 8 && a->qmax == 255 && a->unit == 9, "last quantizer before the classifier is 8 bit");
    CHECK(!aq_on(g, "/layer1/layer1.0/conv2/Conv_output_0"), "nothing between the last conv and the add");
    CHECK(!aq_on(g, "/layer2/layer2.0/shortcut/Pad_output_0"), "shortcut not quantized");
    CHECK(!aq_on(g, "/layer1/layer1.0/Add_output_0"), "pre-ReLU add output not quantized");
    CHECK(!aq_on(g, "logits") && !aq_on(g, "input"), "logits and input never quantized");
    CHECK(!aq_on(g, "/Flatten_output_0") && !aq_on(g, "/AveragePool_output_0"), "pooling runs in FP after the 8-bit quantizer");
    int n8 = 0;
    for (int k = 0; k < g->nact; k++) n8 += g->act[k].bits == 8;
    CHECK(n8 == 1, "%d 8-bit activation quantizers", n8);
    for (int k = 0; k < g->nwq; k++) {
        const qd_weight_quant *q = &g->wq[k];
        int edge = k == 0 || k == g->nwq - 1;
        CHECK(q->bits == (edge ? 8 : 4), "weight quantizer %d bits %d", k, q->bits);
        CHECK(q->ch_axis == 0 && g->nodes[q->node].wq == k, "weight quantizer %d axis/node", k);
        CHECK(q->channels == g->values[q->weight_value].dims[0], "channels");
        CHECK(q->qweight && memcmp(q->qweight, g->values[q->weight_value].fdata,
                                   sizeof(float) * (size_t)(q->channels * q->per_channel)) == 0, "qweight = FP copy");
    }
    CHECK(g->wq[g->nwq - 1].channels == 10 && g->wq[g->nwq - 1].per_channel == 64, "fc weight quantizer");

    /* BRECQ setting (§8.7 row B): first layer output 8 bit too; no 8-bit overrides otherwise */
    qd_quant_plan_opts pb = {2, 4, 0, 1};
    st = qd_graph_place_quantizers(g, &pb);
    CHECK(st == QD_OK, "place brecq");
    a = aq_on(g, "/Relu_output_0");
    CHECK(a && a->bits == 8, "brecq: stem output 8 bit");
    a = aq_on(g, "/layer3/layer3.2/Relu_1_output_0");
    CHECK(a && a->bits == 4, "no first/last override");
    CHECK(g->wq[0].bits == 2 && g->wq[g->nwq - 1].bits == 2, "w2 everywhere");

    FILE *devnull = fopen("/dev/null", "w");
    qd_graph_print_plan(g, devnull);
    fclose(devnull);
    qd_graph_free(g);
}

/* §8.6 on a handmade graph: Conv without bias -> BN, and Gemm(transB=0) with bias -> BN. */
static int add_const(qd_graph *g, const char *name, int ndim, const int64_t *dims, const float *data) {
    int v = qd_graph_add_value(g, name);
    qd_value *val = &g->values[v];
    val->is_const = 1;
    val->ndim = ndim;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (val->dims[d] = dims[d]);
    val->fdata = malloc(sizeof(float) * (size_t)n);
    memcpy(val->fdata, data, sizeof(float) * (size_t)n);
    return v;
}

static int add_bn(qd_graph *g, const char *p, int x, const float *gam, const float *bet, const float *mu,
                  const float *var, int C, const char *out) {
    char nm[64];
    int64_t d = C;
    int ids[5] = {x, 0, 0, 0, 0};
    const float *src[4] = {gam, bet, mu, var};
    const char *suf[4] = {"g", "b", "m", "v"};
    for (int k = 0; k < 4; k++) {
        snprintf(nm, sizeof nm, "%s.%s", p, suf[k]);
        ids[k + 1] = add_const(g, nm, 1, &d, src[k]);
    }
    int o = qd_graph_add_value(g, out);
    int n = qd_graph_add_node(g, p, QD_OP_BATCHNORM, 5, 1);
    for (int k = 0; k < 5; k++) g->nodes[n].inputs[k] = ids[k];
    g->nodes[n].outputs[0] = o;
    g->nodes[n].a.epsilon = 1e-5f;
    return o;
}

static void test_fold_bn(void) {
    qd_graph *g = qd_graph_new();
    int x = qd_graph_add_value(g, "x");
    g->values[x].ndim = 4;
    g->values[x].dims[0] = 1; g->values[x].dims[1] = 2; g->values[x].dims[2] = 2; g->values[x].dims[3] = 3;
    g->values[x].batch_symbolic = 1;
    g->inputs = malloc(sizeof(int));
    g->inputs[0] = x;
    g->ninputs = 1;
    const float W[8] = {1, -2, 0.5f, 3, -1, 4, 2, -0.25f}; /* [O=2, I=2, 1, 2]: x [N,2,2,3] -> [N,2,2,2] */
    int64_t wd[4] = {2, 2, 1, 2};
    int w = add_const(g, "conv.w", 4, wd, W);
    int c = qd_graph_add_value(g, "conv.out");
    int n = qd_graph_add_node(g, "conv", QD_OP_CONV, 2, 1);
    g->nodes[n].inputs[0] = x; g->nodes[n].inputs[1] = w; g->nodes[n].outputs[0] = c;
    const float g1[2] = {0.5f, 2.0f}, b1[2] = {0.1f, -0.3f}, m1[2] = {0.2f, -1.0f}, v1[2] = {4.0f, 0.25f};
    int y = add_bn(g, "bn1", c, g1, b1, m1, v1, 2, "bn1.out");
    /* Flatten then Gemm with transB = 0 (weight [I=4, O=3]) and a bias, then BN */
    int f = qd_graph_add_value(g, "flat");
    n = qd_graph_add_node(g, "flatten", QD_OP_FLATTEN, 1, 1);
    g->nodes[n].inputs[0] = y; g->nodes[n].outputs[0] = f;
    const float G[8 * 3] = {1, 2, 3, 4, 5, 6, -1, -2, -3, 0.5f, 0.25f, 1, 7, 8, 9, 1, 1, 1, -4, 2, 0, 3, 3, 3};
    int64_t gd[2] = {8, 3}, bd[1] = {3};
    const float GB[3] = {0.5f, -1.0f, 2.0f};
    int gw = add_const(g, "fc.w", 2, gd, G), gb = add_const(g, "fc.b", 1, bd, GB);
    int fo = qd_graph_add_value(g, "fc.out");
    n = qd_graph_add_node(g, "fc", QD_OP_GEMM, 3, 1);
    g->nodes[n].inputs[0] = f; g->nodes[n].inputs[1] = gw; g->nodes[n].inputs[2] = gb; g->nodes[n].outputs[0] = fo;
    const float g2[3] = {1.5f, -0.5f, 1.0f}, b2[3] = {0, 1, 2}, m2[3] = {1, 2, 3}, v2[3] = {1, 9, 0.01f};
    int z = add_bn(g, "bn2", fo, g2, b2, m2, v2, 3, "out");
    g->outputs = malloc(sizeof(int));
    g->outputs[0] = z;
    g->noutputs = 1;

    qd_status st = qd_graph_infer_shapes(g);
    CHECK(st == QD_OK, "shapes: %s", qd_error_message());
    st = qd_graph_fold_bn(g);
    CHECK(st == QD_OK, "fold: %s", qd_error_message());
    CHECK(g->nnodes == 3, "BN nodes removed (%d nodes left)", g->nnodes);
    const qd_node *cv = &g->nodes[0], *fc = &g->nodes[2];
    CHECK(cv->op == QD_OP_CONV && cv->outputs[0] == y, "conv now writes bn1's output");
    CHECK(fc->op == QD_OP_GEMM && fc->outputs[0] == z, "gemm now writes bn2's output");
    CHECK(cv->ninputs == 3 && cv->inputs[2] >= 0, "conv got a bias");
    for (int o = 0; o < 2; o++) {
        double sd = sqrt((double)v1[o] + 1e-5), k = g1[o] / sd;
        for (int e = 0; e < 4; e++) {
            double want = W[o * 4 + e] * k, got = g->values[w].fdata[o * 4 + e];
            CHECK(fabs(got - want) <= 1e-6 * fabs(want) + 1e-7, "conv W'[%d,%d] %g vs %g", o, e, got, want);
        }
        double bw = b1[o] - g1[o] * m1[o] / sd, bg = g->values[cv->inputs[2]].fdata[o];
        CHECK(fabs(bg - bw) <= 1e-6, "conv b'[%d] %g vs %g", o, bg, bw);
    }
    for (int o = 0; o < 3; o++) {
        double sd = sqrt((double)v2[o] + 1e-5), k = g2[o] / sd;
        for (int i = 0; i < 8; i++) {
            double want = G[i * 3 + o] * k, got = g->values[gw].fdata[i * 3 + o]; /* channel axis 1 */
            CHECK(fabs(got - want) <= 1e-6 * fabs(want) + 1e-7, "gemm W'[%d,%d] %g vs %g", i, o, got, want);
        }
        double bw = b2[o] - g2[o] * m2[o] / sd + g2[o] * GB[o] / sd;
        double bg = g->values[fc->inputs[2]].fdata[o];
        CHECK(fabs(bg - bw) <= 1e-5 * fabs(bw) + 1e-6, "gemm b'[%d] %g vs %g", o, bg, bw);
    }
    /* a Gemm with transB = 0 is rewritten to transB = 1 with the weight transposed once
     * (qd_graph_canon_linear), so its quantizer is on axis 0 like every other layer */
    float gfold[24];
    memcpy(gfold, g->values[gw].fdata, sizeof gfold);
    st = qd_graph_canon_linear(g);
    CHECK(st == QD_OK && g->nnodes == 3 && g->nodes[2].a.trans_b == 1 && g->nodes[2].inputs[1] == gw, "canon gemm");
    CHECK(g->values[gw].dims[0] == 3 && g->values[gw].dims[1] == 8, "canon weight [3,8]");
    for (int o = 0; o < 3; o++)
        for (int i = 0; i < 8; i++)
            CHECK(g->values[gw].fdata[o * 8 + i] == gfold[i * 3 + o], "canon W[%d,%d] transposed", o, i);
    st = qd_graph_find_units(g);
    CHECK(st == QD_OK && g->nunits == 2, "units %d", g->nunits);
    qd_quant_plan_opts po = {4, 4, 0, 0};
    st = qd_graph_place_quantizers(g, &po);
    CHECK(st == QD_OK && g->nwq == 2, "wq");
    if (st == QD_OK && g->nwq == 2) {
        CHECK(g->wq[1].ch_axis == 0 && g->wq[1].channels == 3 && g->wq[1].per_channel == 8, "gemm ch_axis 0");
        CHECK(g->wq[0].ch_axis == 0 && g->wq[0].channels == 2 && g->wq[0].per_channel == 4, "conv ch_axis 0");
        /* conv output feeds the glue Flatten: a linear layer output -> signed quantizer; logits none */
        CHECK(g->nact == 1 && g->act[0].value == y && !g->act[0].one_sided && g->act[0].unit == 0, "signed quantizer");
    }
    qd_graph_free(g);
}

static qd_status load_expect(const char *path, qd_status want, const char **needles, int nneedles) {
    qd_error_clear();
    qd_graph *g = NULL;
    qd_status st = qd_graph_prepare(path, &g);
    const char *msg = qd_error_message();
    CHECK(st == want, "%s: status %d (%s), expected %d", path, st, msg ? msg : "", want);
    CHECK(g == NULL || st == QD_OK, "%s: graph returned on error", path);
    for (int i = 0; i < nneedles; i++)
        CHECK(msg && strstr(msg, needles[i]), "%s: message '%s' lacks '%s'", path, msg ? msg : "", needles[i]);
    if (st != QD_OK) printf("  %s -> exit %d: %s\n", path, qd_status_exit_code(st), msg);
    qd_graph_free(g);
    qd_error_clear();
    return st;
}

static void test_bad_inputs(void) {
    const char *n1[] = {"tests/bad_inputs/onnx/does_not_exist.onnx"};
    CHECK(load_expect(n1[0], QD_ERR_NOINPUT, n1, 1) == QD_ERR_NOINPUT, "missing");
    CHECK(qd_status_exit_code(QD_ERR_NOINPUT) == 66, "missing file exits 66");

    /* truncated copy of the ResNet-20 model */
    FILE *f = fopen(R20, "rb");
    CHECK(f != NULL, "open %s", R20);
    if (f) {
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *buf = malloc((size_t)len);
        size_t got = fread(buf, 1, (size_t)len, f);
        fclose(f);
        char tp[] = "/tmp/qd_truncated_XXXXXX";
        int fd = mkstemp(tp);
        CHECK(fd >= 0 && got == (size_t)len, "tmp file");
        if (fd >= 0) {
            ssize_t wr = write(fd, buf, (size_t)len / 2);
            close(fd);
            CHECK(wr == len / 2, "write");
            const char *n2[] = {tp, "not a valid ONNX model (protobuf parse failed)"};
            load_expect(tp, QD_ERR_DATA, n2, 2);
            CHECK(qd_status_exit_code(QD_ERR_DATA) == 65, "data error exits 65");
            unlink(tp);
        }
        free(buf);
    }
    const char *n3[] = {"unsupported_op.onnx", "my_leaky", "LeakyRelu", "opset 13", "supported ops", "Conv"};
    load_expect("tests/bad_inputs/onnx/unsupported_op.onnx", QD_ERR_UNSUPPORTED, n3, 6);
    const char *n4[] = {"nan_weight.onnx", "initializer 'w'", "NaN", "conv0"};
    load_expect("tests/bad_inputs/onnx/nan_weight.onnx", QD_ERR_DATA, n4, 4);
    const char *n5[] = {"symbolic_dim.onnx", "input 'x'", "dimension 2", "height"};
    load_expect("tests/bad_inputs/onnx/symbolic_dim.onnx", QD_ERR_UNSUPPORTED, n5, 4);
    const char *n6[] = {"no_such_file.bin", "initializer 'w'"};
    load_expect("tests/bad_inputs/onnx/external_missing.onnx", QD_ERR_NOINPUT, n6, 2);

    /* external data at offset 16 of external_ok.bin (values from tools/make_onnx_bad_inputs.py) */
    qd_graph *g = NULL;
    qd_status st = qd_graph_prepare("tests/bad_inputs/onnx/external_ok.onnx", &g);
    CHECK(st == QD_OK, "external data: %s", qd_error_message());
    if (st == QD_OK) {
        int w = qd_graph_find_value(g, "w");
        CHECK(w >= 0 && g->values[w].fdata && qd_value_numel(&g->values[w]) == 36, "external weight shape");
        if (w >= 0 && g->values[w].fdata) {
            CHECK(g->values[w].fdata[0] == 0.12573022f && g->values[w].fdata[35] == 0.3553727f,
                  "external weight values %g %g", g->values[w].fdata[0], g->values[w].fdata[35]);
        }
        CHECK(g->nunits == 1 && g->units[0].kind == QD_UNIT_LAYER, "one layer unit");
        qd_graph_free(g);
    }
}

/* core/checked.h: exact results or failure, never a wrapped value. */
static void test_checked_arith(void) {
    int64_t r = 0;
    CHECK(qd_add_i64_checked(INT64_MAX - 1, 1, &r) && r == INT64_MAX, "add to the max");
    CHECK(!qd_add_i64_checked(INT64_MAX, 1, &r) && r == INT64_MAX, "add overflow fails, leaves *out");
    CHECK(!qd_sub_i64_checked(INT64_MIN, 1, &r), "sub overflow");
    CHECK(!qd_mul_i64_checked((int64_t)1 << 32, (int64_t)1 << 32, &r), "2^32 * 2^32 overflows (it wraps to 0)");
    CHECK(qd_mul_i64_checked(-((int64_t)1 << 62), 2, &r) && r == INT64_MIN, "mul to the min");
    CHECK(!qd_div_i64_checked(INT64_MIN, -1, &r) && !qd_div_i64_checked(1, 0, &r), "INT64_MIN / -1 and / 0 fail");
    CHECK(qd_div_i64_checked(-7, 2, &r) && r == -3, "division truncates toward zero");
    CHECK(!qd_f64_to_i64_checked(NAN, &r) && !qd_f64_to_i64_checked(INFINITY, &r) &&
              !qd_f64_to_i64_checked(9223372036854775808.0, &r), "NaN, Inf, 2^63 do not convert");
    CHECK(qd_f64_to_i64_checked(-9223372036854775808.0, &r) && r == INT64_MIN, "-2^63 converts");
    CHECK(qd_f64_to_i64_checked(-2.9, &r) && r == -2, "truncation like ONNX Cast");
    int iv = 0;
    CHECK(!qd_i64_to_int_checked(((int64_t)1 << 32) + 1, &iv) && qd_i64_to_int_checked(-5, &iv) && iv == -5,
          "int range");
    int64_t d1[] = {65536, 65536}, d2[] = {1 << 30, 0, 1 << 30}, d3[] = {3, -1}, d4[] = {46340, 46340};
    int64_t d5[] = {(int64_t)1 << 40, 0}, n = -1;
    CHECK(!qd_shape_numel_checked(2, d1, QD_MAX_TENSOR_NUMEL, &n), "2^32 elements exceed the cap");
    CHECK(qd_shape_numel_checked(3, d2, QD_MAX_TENSOR_NUMEL, &n) && n == 0, "a zero dim gives 0");
    CHECK(!qd_shape_numel_checked(2, d3, QD_MAX_TENSOR_NUMEL, &n), "negative dim");
    CHECK(qd_shape_numel_checked(2, d4, QD_MAX_TENSOR_NUMEL, &n) && n == 46340 * 46340, "just below the cap");
    CHECK(!qd_shape_numel_checked(2, d5, QD_MAX_TENSOR_NUMEL, &n), "a dim above the cap fails even next to 0");
    qd_value v;
    memset(&v, 0, sizeof v);
    v.ndim = 3;
    v.dims[0] = (int64_t)1 << 32;
    v.dims[1] = (int64_t)1 << 32;
    v.dims[2] = 1;
    CHECK(qd_value_numel(&v) == -1, "qd_value_numel reports overflow as -1, not a wrapped 0");
}

/* core/escape.h: terminal controls and invalid UTF-8 escaped, printable UTF-8 kept. */
static void test_escape(void) {
    char b[256];
    CHECK(strcmp(qd_escape_text("conv\x1b]0;t\x07\n\\x", b, sizeof b), "conv\\x1b]0;t\\x07\\n\\x") == 0,
          "ESC/BEL/newline escaped, backslash kept: '%s'", b);
    CHECK(strcmp(qd_escape_text("caf\xc3\xa9 \xe2\x86\x92 \xf0\x9f\x98\x80", b, sizeof b),
                 "caf\xc3\xa9 \xe2\x86\x92 \xf0\x9f\x98\x80") == 0, "UTF-8 kept: '%s'", b);
    CHECK(strcmp(qd_escape_text("a\xc2\x9b" "31m\xff\xc0\xaf\xed\xa0\x80", b, sizeof b),
                 "a\\xc2\\x9b31m\\xff\\xc0\\xaf\\xed\\xa0\\x80") == 0,
          "C1 CSI, invalid byte, overlong, surrogate escaped: '%s'", b);
    CHECK(strcmp(qd_escape_text("abc\x1b", b, 6), "abc") == 0, "truncated at a whole escape: '%s'", b);
    CHECK(strcmp(qd_escape_text("\xe2\x86", b, sizeof b), "\\xe2\\x86") == 0, "cut sequence at the end: '%s'", b);
}

static const qd_value *val(const qd_graph *g, const char *name) {
    int v = qd_graph_find_value(g, name);
    return v >= 0 ? &g->values[v] : NULL;
}

static int ivals(const qd_value *v, int ndim, const int64_t *dims, const int64_t *want) {
    if (!v || !v->is_const || !v->idata || v->ndim != ndim) return 0;
    for (int d = 0; d < ndim; d++)
        if (v->dims[d] != dims[d]) return 0;
    for (int64_t i = 0; i < qd_value_numel(v); i++)
        if (v->idata[i] != want[i]) return 0;
    return 1;
}

/* Constant folding of every foldable op on int64 values at the limits (fuzz seed generated by
 * tests/fuzz/make_corpus.py: values are exact, nothing wraps). */
static void test_fold_int64(void) {
    const char *p = "tests/fuzz/corpus/onnx/fold_int64_ops.onnx";
    qd_graph *g = NULL;
    qd_status st = qd_onnx_load(p, &g);
    CHECK(st == QD_OK, "load %s: %s", p, qd_error_message());
    if (st != QD_OK) return;
    const int64_t big = INT64_MAX, small = INT64_MIN;
    int64_t d4[] = {4}, d2[] = {2}, d23[] = {2, 3}, d34[] = {3, 4}, d32[] = {3, 2};
    int64_t add[] = {big, small, 9, -4}, sub[] = {big - 10, small + 10, 5, -10}, mul[] = {25, 25, 4, 9};
    int64_t dv[] = {(big - 5) / 5, (small + 5) / -5, 3, -2}, three[12], gat[] = {small + 5, -7}, shp[] = {3, 4};
    int64_t sl[] = {3, 3, 3, 3, 3, 3};
    for (int i = 0; i < 12; i++) three[i] = 3;
    CHECK(ivals(val(g, "s_add"), 1, d4, add), "Add at the limits");
    CHECK(ivals(val(g, "s_sub"), 1, d4, sub), "Sub at the limits");
    CHECK(ivals(val(g, "s_mul"), 1, d4, mul), "Mul");
    CHECK(ivals(val(g, "s_div"), 1, d4, dv), "Div truncates toward zero");
    CHECK(ivals(val(g, "cos"), 2, d23, three), "ConstantOfShape int64 fill");
    CHECK(ivals(val(g, "tr"), 2, d34, three), "Concat + Transpose");
    CHECK(ivals(val(g, "sl"), 2, d32, sl), "Slice ends INT64_MAX/INT64_MIN, steps 1/-2: [3,2]");
    CHECK(ivals(val(g, "ga"), 1, d2, gat), "Gather with a negative index");
    CHECK(ivals(val(g, "sq"), 1, d2, gat), "Unsqueeze + Squeeze");
    CHECK(ivals(val(g, "ci"), 2, d34, three), "Reshape/Flatten/Cast round trip");
    CHECK(ivals(val(g, "sh"), 1, d2, shp), "Shape");
    qd_graph_free(g);
}

int main(void) {
    test_resnet20_units_and_quantizers();
    test_fold_bn();
    test_bad_inputs();
    test_checked_arith();
    test_escape();
    test_fold_int64();
    return qd_test_summary("test_onnx");
}
