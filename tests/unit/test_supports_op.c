/* tests/unit/test_supports_op.c: the plan-time check (qd_backend_ops.supports_op,
 * qd_backend_check_graph): what each backend refuses, the message naming model, node, op, reason
 * and backend, and qd_exec_create failing before it uploads anything. The CUDA backend's answer
 * needs no device, so it is checked here too when the build has the CUDA backend. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <stdint.h>

#include "test.h"
#include "qdrop/backend.h"
#include "qdrop/exec.h"

#ifdef QD_HAVE_CUDA
int qd_cu_supports_op(const qd_backend *b, const qd_graph *g, const qd_node *n, char *why, size_t cap);
#endif

static int add_val(qd_graph *g, const char *name, int is_const, int nd, const int64_t *dims) {
    int v = qd_graph_add_value(g, name);
    qd_value *V = &g->values[v];
    V->ndim = nd;
    V->is_const = is_const;
    V->dtype = QD_DT_FLOAT;
    for (int i = 0; i < nd; i++) V->dims[i] = dims[i];
    if (is_const) V->fdata = calloc((size_t)qd_value_numel(V), sizeof(float));
    return v;
}

static qd_node *add_node(qd_graph *g, const char *name, qd_op op, int a, int b, int out) {
    int k = qd_graph_add_node(g, name, op, b >= 0 ? 2 : 1, 1);
    qd_node *n = &g->nodes[k];
    n->inputs[0] = a;
    if (b >= 0) n->inputs[1] = b;
    n->outputs[0] = out;
    g->values[out].producer = k;
    return n;
}

/* x[1,3,8,8] -> Conv(w[4,3,3,3], pads p) -> y[1,4,h,w]: one node graph */
static qd_graph *conv_graph(int pt, int pl, int pb, int pr) {
    qd_graph *g = qd_graph_new();
    g->source_path = strdup("conv.onnx");
    int64_t xd[4] = {1, 3, 8, 8}, wd[4] = {4, 3, 3, 3}, yd[4] = {1, 4, 6 + pt + pb, 6 + pl + pr};
    int x = add_val(g, "x", 0, 4, xd), w = add_val(g, "w", 1, 4, wd), y = add_val(g, "y", 0, 4, yd);
    qd_node *n = add_node(g, "conv_a", QD_OP_CONV, x, w, y);
    n->a.kernel[0] = n->a.kernel[1] = 3;
    n->a.stride[0] = n->a.stride[1] = n->a.dilation[0] = n->a.dilation[1] = n->a.group = 1;
    n->a.pads[0] = pt; n->a.pads[1] = pl; n->a.pads[2] = pb; n->a.pads[3] = pr;
    g->ninputs = 1; g->inputs = malloc(sizeof(int)); g->inputs[0] = x;
    g->noutputs = 1; g->outputs = malloc(sizeof(int)); g->outputs[0] = y;
    return g;
}

/* MatMul(A, B) with A an activation of rank ra, B rank rb (constant or not) */
static qd_graph *matmul_graph(int ra, const int64_t *ad, int b_const, int rb, const int64_t *bd, int ro,
                              const int64_t *od) {
    qd_graph *g = qd_graph_new();
    int a = add_val(g, "a", 0, ra, ad), b = add_val(g, "b", b_const, rb, bd), y = add_val(g, "y", 0, ro, od);
    add_node(g, "mm", QD_OP_MATMUL, a, b, y);
    g->ninputs = 1; g->inputs = malloc(sizeof(int)); g->inputs[0] = a;
    g->noutputs = 1; g->outputs = malloc(sizeof(int)); g->outputs[0] = y;
    return g;
}

int main(void) {
    qd_backend_options o;
    memset(&o, 0, sizeof o);
    o.threads = 1;
    qd_backend *cpu = NULL;
    MUST(qd_backend_create("cpu", &o, &cpu));
    CHECK(cpu->ops->supports_op != NULL, "the CPU vtable answers supports_op");
    char why[256];

    /* asymmetric pads: the CPU runs them (im2col/oneDNN) */
    qd_graph *g = conv_graph(0, 0, 1, 1);
    CHECK(cpu->ops->supports_op(cpu, g, &g->nodes[0], why, sizeof why) == 1);
    CHECK_STATUS(qd_backend_check_graph(cpu, g), QD_OK);
    qd_exec *ex = NULL;
    CHECK_STATUS(qd_exec_create(g, cpu, 2, &ex), QD_OK);
    qd_exec_free(ex);
#ifdef QD_HAVE_CUDA
    /* ... the cuDNN path does not: refused at plan time, with the pads in the reason */
    why[0] = 0;
    CHECK(qd_cu_supports_op(NULL, g, &g->nodes[0], why, sizeof why) == 0);
    CHECK_CONTAINS(why, "asymmetric pads (0,0,1,1)");
    qd_graph *gs = conv_graph(1, 1, 1, 1);
    CHECK(qd_cu_supports_op(NULL, gs, &gs->nodes[0], why, sizeof why) == 1, "symmetric pads run on cuDNN");
    qd_graph_free(gs);
#endif

    /* a Conv on 3-D tensors: refused by both, before anything runs */
    g->values[0].ndim = 3;
    why[0] = 0;
    CHECK(cpu->ops->supports_op(cpu, g, &g->nodes[0], why, sizeof why) == 0);
    CHECK_CONTAINS(why, "only 2-D convolution");
#ifdef QD_HAVE_CUDA
    CHECK(qd_cu_supports_op(NULL, g, &g->nodes[0], why, sizeof why) == 0);
#endif
    qd_graph_free(g);

    /* an op no kernel runs (Constant is folded at load): the whole message, and qd_exec_create
     * fails with it before allocating */
    g = conv_graph(1, 1, 1, 1);
    g->nodes[0].op = QD_OP_CONSTANT;
    ex = NULL;
    CHECK_STATUS(qd_exec_create(g, cpu, 2, &ex), QD_ERR_UNSUPPORTED);
    CHECK(ex == NULL);
    CHECK_CONTAINS(qd_error_message(), "conv.onnx: node conv_a (Constant): no CPU kernel: not supported by the cpu backend");
    CHECK(qd_status_exit_code(QD_ERR_UNSUPPORTED) == 65, "documented exit code of an unsupported model");
#ifdef QD_HAVE_CUDA
    CHECK(qd_cu_supports_op(NULL, g, &g->nodes[0], why, sizeof why) == 0);
#endif
    qd_graph_free(g);

    /* MatMul batches: attention's [N,h,T,d] x [N,h,d,T] and a shared weight [N,T,F] x [F,G] run
     * everywhere; [N,h,T,d] x constant [h,d,e] (batch broadcast) only on the CPU */
    int64_t a4[4] = {1, 2, 5, 3}, b4[4] = {1, 2, 3, 5}, o4[4] = {1, 2, 5, 5};
    int64_t a3[3] = {1, 5, 3}, b2[2] = {3, 7}, o3[3] = {1, 5, 7};
    int64_t b3[3] = {2, 3, 7}, o4b[4] = {1, 2, 5, 7};
    qd_graph *m1 = matmul_graph(4, a4, 0, 4, b4, 4, o4);
    qd_graph *m2 = matmul_graph(3, a3, 1, 2, b2, 3, o3);
    qd_graph *m3 = matmul_graph(4, a4, 1, 3, b3, 4, o4b);
    CHECK(cpu->ops->supports_op(cpu, m1, &m1->nodes[0], why, sizeof why) == 1);
    CHECK(cpu->ops->supports_op(cpu, m2, &m2->nodes[0], why, sizeof why) == 1);
    CHECK(cpu->ops->supports_op(cpu, m3, &m3->nodes[0], why, sizeof why) == 1);
#ifdef QD_HAVE_CUDA
    CHECK(qd_cu_supports_op(NULL, m1, &m1->nodes[0], why, sizeof why) == 1);
    CHECK(qd_cu_supports_op(NULL, m2, &m2->nodes[0], why, sizeof why) == 1);
    why[0] = 0;
    CHECK(qd_cu_supports_op(NULL, m3, &m3->nodes[0], why, sizeof why) == 0);
    CHECK_CONTAINS(why, "batch dims of A (2 x N) and B (2)");
#endif
    qd_graph_free(m1);
    qd_graph_free(m2);
    qd_graph_free(m3);

    /* every op of the table gets an answer from every backend (no op falls through unanswered) */
    g = conv_graph(1, 1, 1, 1);
    for (int op = 0; op < QD_OP_COUNT; op++) {
        g->nodes[0].op = (qd_op)op;
        why[0] = 0;
        int ok = cpu->ops->supports_op(cpu, g, &g->nodes[0], why, sizeof why);
        CHECK(ok == 1 || why[0], "cpu refuses %s without a reason", qd_op_name((qd_op)op));
    }
    qd_graph_free(g);
    qd_backend_destroy(cpu);
    return qd_test_summary("test_supports_op");
}
