/* tests/unit/test_transformer_ops.c: the graph's transformer ops on the CPU backend
 * (LayerNormalization, Gelu, Softmax with an additive key mask) give bit-identical results to
 * the BERT encoder's math (src/bert/encoder.c), forward and backward, on the same inputs.
 *
 * The reference below is a frozen copy of the encoder's loops as they were before the math moved
 * to src/core/nnmath.h (int key mask, cached xhat/rstd, in-place softmax): the op path (threaded,
 * strided, broadcast mask) and the shared row functions the encoder now calls must both match it
 * bit for bit. Backward buffers start at -0.0f, so "din += v" stores exactly v (the ops
 * accumulate, backend.h) and memcmp can compare bits. Inputs include large magnitudes. */
#include "cpu_test_util.h"
#include "core/nnmath.h"

/* ---- frozen reference (encoder.c's layernorm, layernorm_backward, gelu, masked softmax) ---- */
static void ref_layernorm(const float *x, const float *g, const float *b, int T, int n, float eps, float *y, float *xhat,
                          float *rstd) {
    for (int t = 0; t < T; t++) {
        const float *r = x + (size_t)t * n;
        double mean = 0, var = 0;
        for (int i = 0; i < n; i++) mean += r[i];
        mean /= n;
        for (int i = 0; i < n; i++) var += (r[i] - mean) * (r[i] - mean);
        var /= n;
        float rs = (float)(1.0 / sqrt(var + (double)eps));
        if (rstd) rstd[t] = rs;
        for (int i = 0; i < n; i++) {
            float h = (float)((r[i] - mean) * rs);
            if (xhat) xhat[(size_t)t * n + i] = h;
            y[(size_t)t * n + i] = h * g[i] + b[i];
        }
    }
}
static void ref_layernorm_backward(const float *dy, const float *xhat, const float *rstd, const float *g, int T, int n,
                                   float *dx) {
    for (int t = 0; t < T; t++) {
        const float *d = dy + (size_t)t * n, *h = xhat + (size_t)t * n;
        double m1 = 0, m2 = 0;
        for (int i = 0; i < n; i++) {
            double dh = (double)d[i] * g[i];
            m1 += dh;
            m2 += dh * h[i];
        }
        m1 /= n;
        m2 /= n;
        for (int i = 0; i < n; i++) dx[(size_t)t * n + i] = (float)(rstd[t] * ((double)d[i] * g[i] - m1 - h[i] * m2));
    }
}
static float ref_gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
static float ref_gelu_grad(float x) {
    return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) + x * 0.39894228040143268f * expf(-0.5f * x * x);
}
/* P [B, NH, S, S] in place, int key mask [B, S] */
static void ref_softmax(float *P, const int *mask, int B, int NH, int S) {
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < S; i++) {
                float *r = P + (((size_t)b * NH + h) * S + i) * S, mx = -INFINITY;
                for (int j = 0; j < S; j++)
                    if (mask[b * S + j] && r[j] > mx) mx = r[j];
                double sum = 0;
                for (int j = 0; j < S; j++) {
                    r[j] = mask[b * S + j] ? expf(r[j] - mx) : 0.0f;
                    sum += r[j];
                }
                float inv = (float)(1.0 / sum);
                for (int j = 0; j < S; j++) r[j] *= inv;
            }
}
static void ref_softmax_backward(float *dP, const float *Pp, int rows, int S) {
    for (int i = 0; i < rows; i++) {
        double s = 0;
        for (int j = 0; j < S; j++) s += (double)dP[i * S + j] * Pp[i * S + j];
        for (int j = 0; j < S; j++) dP[i * S + j] = Pp[i * S + j] * (float)(dP[i * S + j] - s);
    }
}

static float *alloc_f(int64_t n) { return malloc(sizeof(float) * (size_t)(n ? n : 1)); }
static void fill_mz(float *p, int64_t n) { for (int64_t i = 0; i < n; i++) p[i] = -0.0f; }

/* random values with occasional large magnitudes */
static void fill_wide(float *p, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) {
        double u = urand();
        p[i] = frand(-scale, scale) * (u < 0.05 ? 300.0f : 1.0f);
    }
}

static int same_bits(const char *what, const float *a, const float *b, int64_t n) {
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) { if (first < 0) first = i; bad++; }
    CHECK(bad == 0, "%s: %lld of %lld values differ from encoder.c (first [%lld]: %.9g vs %.9g)", what, (long long)bad,
          (long long)n, (long long)first, first >= 0 ? a[first] : 0.0, first >= 0 ? b[first] : 0.0);
    if (!bad) printf("  %-44s %lld values bit-identical\n", what, (long long)n);
    return bad == 0;
}

static void test_layernorm(qd_backend *b, int N, int T, int F, float eps) {
    const int rows = N * T;
    const int64_t n = (int64_t)rows * F;
    float *x = alloc_f(n), *g = alloc_f(F), *bb = alloc_f(F), *y_ref = alloc_f(n), *xhat = alloc_f(n),
          *rstd = alloc_f(rows), *y_op = alloc_f(n), *y_row = alloc_f(n), *dy = alloc_f(n), *dx_ref = alloc_f(n),
          *dx_op = alloc_f(n), *dx_row = alloc_f(n);
    fill_wide(x, n, 4.0f);
    fill(g, F, 0.5f, 1.5f);
    fill(bb, F, -0.5f, 0.5f);
    fill_wide(dy, n, 1.0f);
    ref_layernorm(x, g, bb, rows, F, eps, y_ref, xhat, rstd);
    ref_layernorm_backward(dy, xhat, rstd, g, rows, F, dx_ref);

    qd_node nd = make_node(QD_OP_LAYERNORM, 3);
    nd.a.axis = -1;
    nd.a.epsilon = eps;
    qd_shape is[3] = {shp(3, N, T, F, 0), shp(1, F, 0, 0, 0), shp(1, F, 0, 0, 0)};
    const float *in[3] = {x, g, bb};
    MUST(b->ops->node_forward(b, &nd, is, in, &is[0], y_op));
    fill_mz(dx_op, n);
    float *din[3] = {dx_op, NULL, NULL};
    MUST(b->ops->node_backward(b, &nd, is, in, &is[0], y_op, dy, din));
    char what[96];
    snprintf(what, sizeof what, "LayerNormalization fwd [%d,%d,%d]", N, T, F);
    same_bits(what, y_op, y_ref, n);
    snprintf(what, sizeof what, "LayerNormalization bwd dX [%d,%d,%d]", N, T, F);
    same_bits(what, dx_op, dx_ref, n);

    /* the row functions encoder.c now calls (xhat cached, in place like the embeddings LN) */
    float *xh2 = alloc_f(n), *rs2 = alloc_f(rows);
    memcpy(y_row, x, sizeof(float) * (size_t)n);
    for (int t = 0; t < rows; t++)
        qd_layernorm_row(y_row + (size_t)t * F, g, bb, F, eps, y_row + (size_t)t * F, xh2 + (size_t)t * F, rs2 + t);
    for (int t = 0; t < rows; t++)
        qd_layernorm_backward_row(dy + (size_t)t * F, xh2 + (size_t)t * F, rs2[t], g, F, dx_row + (size_t)t * F, 0, NULL, NULL);
    same_bits("nnmath layernorm rows (encoder.c path) fwd", y_row, y_ref, n);
    same_bits("nnmath layernorm rows (encoder.c path) bwd", dx_row, dx_ref, n);
    free(xh2); free(rs2);
    free(x); free(g); free(bb); free(y_ref); free(xhat); free(rstd); free(y_op); free(y_row); free(dy); free(dx_ref);
    free(dx_op); free(dx_row);
}

static void test_gelu(qd_backend *b) {
    const int64_t n = 3 * 17 * 1536 + 5; /* several elementwise chunks */
    float *x = alloc_f(n), *y_ref = alloc_f(n), *y_op = alloc_f(n), *dy = alloc_f(n), *dx_ref = alloc_f(n),
          *dx_op = alloc_f(n);
    fill_wide(x, n, 6.0f);
    x[0] = 0.0f; x[1] = -0.0f; x[2] = 40.0f; x[3] = -40.0f; x[4] = 1e-30f;
    fill(dy, n, -1, 1);
    for (int64_t i = 0; i < n; i++) { y_ref[i] = ref_gelu(x[i]); dx_ref[i] = dy[i] * ref_gelu_grad(x[i]); }
    qd_node nd = make_node(QD_OP_GELU, 1);
    qd_shape s = shp(2, 1, n, 0, 0);
    const float *in[1] = {x};
    MUST(b->ops->node_forward(b, &nd, &s, in, &s, y_op));
    fill_mz(dx_op, n);
    float *din[1] = {dx_op};
    MUST(b->ops->node_backward(b, &nd, &s, in, &s, y_op, dy, din));
    same_bits("Gelu fwd", y_op, y_ref, n);
    /* encoder.c: dint *= gelu_grad(pre), dint = dy: the same product */
    same_bits("Gelu bwd", dx_op, dx_ref, n);
    for (int64_t i = 0; i < n; i++) y_ref[i] = qd_gelu(x[i]);
    same_bits("nnmath qd_gelu (encoder.c path)", y_op, y_ref, n);
    free(x); free(y_ref); free(y_op); free(dy); free(dx_ref); free(dx_op);
}

/* scores [B, NH, S, S] + mask [B, 1, 1, S] (0 valid / pad for padded keys) */
static void test_softmax(qd_backend *b, int B, int NH, int S, float pad) {
    const int64_t n = (int64_t)B * NH * S * S;
    const int rows = B * NH * S;
    float *x = alloc_f(n), *p_ref = alloc_f(n), *p_op = alloc_f(n), *dy = alloc_f(n), *dx_ref = alloc_f(n),
          *dx_op = alloc_f(n), *am = alloc_f((int64_t)B * S);
    int *mask = malloc(sizeof(int) * (size_t)B * S);
    fill_wide(x, n, 8.0f);
    fill(dy, n, -1, 1);
    for (int bi = 0; bi < B; bi++) {
        int len = bi == 0 ? S : 1 + (int)(urand() * S); /* sample 0 unpadded, others random lengths */
        for (int j = 0; j < S; j++) {
            mask[bi * S + j] = j < len;
            am[bi * S + j] = j < len ? 0.0f : pad;
        }
    }
    memcpy(p_ref, x, sizeof(float) * (size_t)n);
    ref_softmax(p_ref, mask, B, NH, S);
    memcpy(dx_ref, dy, sizeof(float) * (size_t)n);
    ref_softmax_backward(dx_ref, p_ref, rows, S);

    qd_node nd = make_node(QD_OP_SOFTMAX, 2);
    nd.a.axis = 3;
    qd_shape is[2] = {{4, {B, NH, S, S}}, {4, {B, 1, 1, S}}};
    const float *in[2] = {x, am};
    MUST(b->ops->node_forward(b, &nd, is, in, &is[0], p_op));
    fill_mz(dx_op, n);
    float *din[2] = {dx_op, NULL};
    MUST(b->ops->node_backward(b, &nd, is, in, &is[0], p_op, dy, din));
    char what[96];
    snprintf(what, sizeof what, "Softmax+mask(%g) fwd [%d,%d,%d,%d]", (double)pad, B, NH, S, S);
    same_bits(what, p_op, p_ref, n);
    snprintf(what, sizeof what, "Softmax+mask(%g) bwd dx", (double)pad);
    same_bits(what, dx_op, dx_ref, n);
    free(x); free(p_ref); free(p_op); free(dy); free(dx_ref); free(dx_op); free(am); free(mask);
}

int main(void) {
    for (int threads = 1; threads <= 2; threads++) {
        qd_backend *b = make_cpu(threads);
        printf("backend: %s\n", b->device_name);
        test_layernorm(b, 3, 7, 384, 1e-12f); /* MiniLM: hidden 384, eps 1e-12 */
        test_layernorm(b, 2, 5, 33, 1e-5f);
        test_gelu(b);
        /* -inf (what encoder.c's int mask means), HF's finfo.min and the classic -10000 */
        test_softmax(b, 4, 3, 19, -INFINITY);
        test_softmax(b, 4, 3, 19, -3.4028234663852886e38f);
        test_softmax(b, 3, 2, 40, -10000.0f);
        qd_backend_destroy(b);
    }
    if (g_fail) { fprintf(stderr, "%d check(s) failed\n", g_fail); return 1; }
    printf("transformer ops match encoder.c bit for bit\n");
    return 0;
}
