/* tests/unit/test_canon_linear.c: qd_graph_canon_linear (src/graph/canon_linear.c) on hand-built
 * graphs — which layers are rewritten to Gemm transB=1 [out, in], which are left alone, the bias
 * Add fusion and its limits, a shared weight — plus the .npy writer read back by the .npy reader. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "data/npy_write.h"
#include "qdrop/data.h"
#include "qdrop/graph.h"
#include "qdrop/status.h"

static int act(qd_graph *g, const char *name, int ndim, const int64_t *dims) {
    int v = qd_graph_add_value(g, name);
    g->values[v].ndim = ndim;
    for (int d = 0; d < ndim; d++) g->values[v].dims[d] = dims[d];
    g->values[v].batch_symbolic = 1;
    return v;
}

static int cst(qd_graph *g, const char *name, int ndim, const int64_t *dims, const float *data) {
    int v = qd_graph_add_value(g, name);
    qd_value *x = &g->values[v];
    x->ndim = ndim;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (x->dims[d] = dims[d]);
    x->is_const = 1;
    x->fdata = malloc(sizeof(float) * (size_t)n);
    memcpy(x->fdata, data, sizeof(float) * (size_t)n);
    return v;
}

static int node(qd_graph *g, const char *name, qd_op op, int a, int b, int c, int out) {
    int nin = c >= 0 ? 3 : b >= 0 ? 2 : 1;
    int n = qd_graph_add_node(g, name, op, nin, 1);
    g->nodes[n].inputs[0] = a;
    if (nin > 1) g->nodes[n].inputs[1] = b;
    if (nin > 2) g->nodes[n].inputs[2] = c;
    g->nodes[n].outputs[0] = out;
    return n;
}

static void io(qd_graph *g, int in, int out) {
    g->inputs = malloc(sizeof(int));
    g->inputs[0] = in;
    g->ninputs = 1;
    g->outputs = malloc(sizeof(int));
    g->outputs[0] = out;
    g->noutputs = 1;
}

static const float W23[6] = {1, 2, 3, 4, 5, 6}; /* [K=2, N=3] */
static const float WT[6] = {1, 4, 2, 5, 3, 6};  /* its [N=3, K=2] transpose */

static void check_transposed(const qd_graph *g, int w, const char *what) {
    const qd_value *v = &g->values[w];
    CHECK(v->ndim == 2 && v->dims[0] == 3 && v->dims[1] == 2, "%s: weight dims [%lld,%lld]", what, (long long)v->dims[0],
          (long long)v->dims[1]);
    for (int i = 0; i < 6; i++) CHECK(v->fdata[i] == WT[i], "%s: W'[%d] = %g, want %g", what, i, v->fdata[i], WT[i]);
}

/* MatMul + Add(bias [1, N]) -> one Gemm transB=1 with C, writing the Add's output */
static void test_matmul_bias_fused(void) {
    qd_graph *g = qd_graph_new();
    int64_t xd[2] = {1, 2}, yd[2] = {1, 3}, wd[2] = {2, 3}, bd[2] = {1, 3};
    const float B[3] = {0.5f, -1, 2};
    int x = act(g, "x", 2, xd), w = cst(g, "fc.w", 2, wd, W23), b = cst(g, "fc.b", 2, bd, B);
    int mm = act(g, "mm", 2, yd), y = act(g, "logits", 2, yd);
    node(g, "fc", QD_OP_MATMUL, x, w, -1, mm);
    node(g, "fc_bias", QD_OP_ADD, b, mm, -1, y); /* bias first: Add is commutative */
    io(g, x, y);
    qd_status st = qd_graph_canon_linear(g);
    CHECK(st == QD_OK, "canon: %s", qd_error_message());
    CHECK(g->nnodes == 1, "the bias Add is gone (%d nodes)", g->nnodes);
    const qd_node *n = &g->nodes[0];
    CHECK(n->op == QD_OP_GEMM && n->a.trans_b == 1 && n->a.trans_a == 0 && n->a.alpha == 1.0f && n->a.beta == 1.0f,
          "MatMul -> Gemm transB=1 alpha 1 beta 1");
    CHECK(n->ninputs == 3 && n->inputs[0] == x && n->inputs[1] == w && n->inputs[2] == b, "Gemm(x, W', b)");
    CHECK(n->outputs[0] == y && g->values[y].producer == 0, "the Gemm writes the Add's output");
    CHECK(!strcmp(n->name, "fc"), "keeps the MatMul's name");
    check_transposed(g, w, "matmul+add");
    CHECK(!strcmp(g->values[w].name, "fc.w"), "transposed in place, same initializer name");
    qd_graph_free(g);
}

/* A weight read by two Gemm transB=0 and by a rank-3 MatMul (left alone): each Gemm gets its own
 * transposed constant "<W>_t", "<W>_t2"; the MatMul keeps reading the original, unchanged. */
static void test_shared_weight_and_untouched(void) {
    qd_graph *g = qd_graph_new();
    int64_t xd[2] = {1, 2}, yd[2] = {1, 3}, wd[2] = {2, 3}, r3[3] = {1, 4, 2};
    int x = act(g, "x", 2, xd), w = cst(g, "w", 2, wd, W23);
    int y1 = act(g, "y1", 2, yd), y2 = act(g, "y2", 2, yd), s = act(g, "s", 2, yd);
    int g1 = node(g, "g1", QD_OP_GEMM, x, w, -1, y1);
    g->nodes[g1].a.alpha = 1; g->nodes[g1].a.beta = 1;
    int g2 = node(g, "g2", QD_OP_GEMM, x, w, -1, y2);
    g->nodes[g2].a.alpha = 1; g->nodes[g2].a.beta = 1;
    node(g, "sum", QD_OP_ADD, y1, y2, -1, s);
    /* left alone: a MatMul on a rank-3 activation, a MatMul of two activations, a Gemm already transB=1 */
    int x3 = act(g, "x3", 3, r3), o3 = act(g, "o3", 3, (int64_t[]){1, 4, 3});
    node(g, "mm3", QD_OP_MATMUL, x3, w, -1, o3);
    int o4 = act(g, "o4", 2, (int64_t[]){1, 1});
    node(g, "mmact", QD_OP_MATMUL, x, s, -1, o4);
    io(g, x, s);
    qd_status st = qd_graph_canon_linear(g);
    CHECK(st == QD_OK, "canon: %s", qd_error_message());
    CHECK(g->nnodes == 5, "no node removed (%d)", g->nnodes);
    int t1 = g->nodes[0].inputs[1], t2 = g->nodes[1].inputs[1];
    CHECK(t1 != w && t2 != w && t1 != t2, "each shared-weight reader gets its own transposed constant");
    CHECK(!strcmp(g->values[t1].name, "w_t") && !strcmp(g->values[t2].name, "w_t2"), "names %s %s", g->values[t1].name,
          g->values[t2].name);
    check_transposed(g, t1, "shared 1");
    check_transposed(g, t2, "shared 2");
    CHECK(g->nodes[0].a.trans_b == 1 && g->nodes[1].a.trans_b == 1, "both transB=1");
    for (int i = 0; i < 6; i++) CHECK(g->values[w].fdata[i] == W23[i], "original weight unchanged");
    CHECK(g->nodes[3].op == QD_OP_MATMUL && g->nodes[3].inputs[1] == w && g->values[w].dims[0] == 2,
          "rank-3 MatMul untouched, reads the original weight");
    CHECK(g->nodes[4].op == QD_OP_MATMUL, "MatMul of two activations untouched");
    /* idempotent: a second pass changes nothing */
    st = qd_graph_canon_linear(g);
    CHECK(st == QD_OK && g->nodes[0].inputs[1] == t1, "second pass");
    check_transposed(g, t1, "second pass");
    qd_graph_free(g);
}

/* A MatMul whose output is the graph output, or feeds two readers, or an Add of an activation,
 * or an Add of a bias of the wrong size: no fusion, but still the Gemm form. */
static void test_no_fusion(void) {
    for (int kind = 0; kind < 3; kind++) {
        qd_graph *g = qd_graph_new();
        int64_t xd[2] = {1, 2}, yd[2] = {1, 3}, wd[2] = {2, 3}, bd[1] = {2};
        const float B[2] = {1, 2};
        int x = act(g, "x", 2, xd), w = cst(g, "w", 2, wd, W23), mm = act(g, "mm", 2, yd), y = act(g, "y", 2, yd);
        int other = kind == 0 ? mm : kind == 1 ? cst(g, "b2", 1, bd, B) : -1;
        node(g, "fc", QD_OP_MATMUL, x, w, -1, mm);
        if (kind == 0) node(g, "dbl", QD_OP_ADD, mm, other, -1, y);       /* mm + mm */
        else if (kind == 1) node(g, "badb", QD_OP_ADD, mm, other, -1, y); /* bias of 2 for 3 outputs */
        io(g, x, kind == 2 ? mm : y);                                      /* kind 2: mm is the output */
        qd_status st = qd_graph_canon_linear(g);
        CHECK(st == QD_OK, "kind %d: %s", kind, qd_error_message());
        CHECK(g->nodes[0].op == QD_OP_GEMM && g->nodes[0].ninputs == 2 && g->nodes[0].outputs[0] == mm,
              "kind %d: Gemm without C, output kept", kind);
        CHECK(g->nnodes == (kind == 2 ? 1 : 2), "kind %d: nodes %d", kind, g->nnodes);
        check_transposed(g, w, "no fusion");
        qd_graph_free(g);
    }
}

static void test_npy_write_roundtrip(void) {
    char path[] = "/tmp/qd_test_npy_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    close(fd);
    float v[21];
    for (int i = 0; i < 21; i++) v[i] = (float)i * 0.5f - 3.0f;
    v[4] = -0.0f;
    v[5] = INFINITY;
    int64_t dims[2] = {7, 3};
    qd_status st = qd_npy_write_f32(path, v, 2, dims);
    CHECK(st == QD_OK, "write: %s", qd_error_message());
    qd_npy a;
    memset(&a, 0, sizeof a);
    st = qd_npy_load(path, &a);
    CHECK(st == QD_OK, "read back: %s", qd_error_message());
    if (st == QD_OK) {
        CHECK(a.ndim == 2 && a.dims[0] == 7 && a.dims[1] == 3, "shape");
        CHECK(a.dtype == QD_DT_FLOAT && a.f && memcmp(a.f, v, sizeof v) == 0, "float32 data bit for bit");
        qd_npy_free(&a);
    }
    FILE *f = fopen(path, "rb");
    unsigned char h[10];
    CHECK(f && fread(h, 1, 10, f) == 10, "header");
    if (f) {
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fclose(f);
        size_t hl = (size_t)h[8] | (size_t)h[9] << 8;
        CHECK(h[6] == 1 && h[7] == 0 && (10 + hl) % 64 == 0, "format 1.0, data 64-byte aligned (header %zu)", hl);
        CHECK(size == (long)(10 + hl + sizeof v), "file size %ld", size);
    }
    remove(path);
}

int main(void) {
    test_matmul_bias_fused();
    test_shared_weight_and_untouched();
    test_no_fusion();
    test_npy_write_roundtrip();
    return qd_test_summary("test_canon_linear");
}
