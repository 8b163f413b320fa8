/* tests/unit/test_grad.c: finite-difference checks of every CPU node_backward and of the
 * quantization gradients (STE dx, LSQ ds, AdaRound dw/dV and regulariser, MSE loss).
 * Loss L = sum(y * r) with a fixed random r (= dout); central differences with h = 1e-2 in
 * float forwards, L accumulated in double. Inputs of kinked ops (Relu, Clip, MaxPool) are kept
 * at least 2h away from the kinks so the finite difference is the true derivative. din buffers
 * start at 0.5 to check that backward ADDS (backend.h contract). */
#define _POSIX_C_SOURCE 200809L /* strdup, clock_gettime */
#include "test.h"
#include "cpu_test_util.h"
#include "core/qmath.h"

#define H 1e-2f
#define MAXIN 8

static double loss_of(qd_backend *b, const qd_node *n, const qd_shape *is, float **x, const qd_shape *os, const float *r,
                      float *y) {
    MUST(b->ops->node_forward(b, n, is, (const float *const *)x, os, y));
    double L = 0.0;
    int64_t no = qd_shape_numel(os);
    for (int64_t i = 0; i < no; i++) L += (double)y[i] * (double)r[i];
    return L;
}

/* want[i]: check the gradient of input i. */
static void gradcheck(qd_backend *b, const char *label, const qd_node *n, const qd_shape *is, const qd_shape *os, float **x,
                      const int *want) {
    int64_t no = qd_shape_numel(os);
    float *y = malloc(sizeof(float) * (size_t)no), *r = malloc(sizeof(float) * (size_t)no);
    fill(r, no, -1.0f, 1.0f);
    (void)loss_of(b, n, is, x, os, r, y);
    float *din[MAXIN] = {0};
    for (int i = 0; i < n->ninputs; i++) {
        if (!want[i]) continue;
        int64_t ni = qd_shape_numel(&is[i]);
        din[i] = malloc(sizeof(float) * (size_t)ni);
        for (int64_t k = 0; k < ni; k++) din[i][k] = 0.5f;
    }
    MUST(b->ops->node_backward(b, n, is, (const float *const *)x, os, y, r, din));
    float *ytmp = malloc(sizeof(float) * (size_t)no);
    int checked = 0;
    for (int i = 0; i < n->ninputs; i++) {
        if (!want[i]) continue;
        int64_t ni = qd_shape_numel(&is[i]);
        int64_t step = ni > 40 ? ni / 40 : 1;
        double maxerr = 0.0;
        for (int64_t k = (int64_t)(urand() * (double)step); k < ni; k += step) {
            float save = x[i][k];
            x[i][k] = save + H;
            double lp = loss_of(b, n, is, x, os, r, ytmp);
            x[i][k] = save - H;
            double lm = loss_of(b, n, is, x, os, r, ytmp);
            x[i][k] = save;
            double num = (lp - lm) / (2.0 * (double)H);
            double ana = (double)din[i][k] - 0.5;
            double err = fabs(num - ana);
            if (err > maxerr) maxerr = err;
            CHECK(err <= 6e-3 + 6e-3 * fabs(ana), "%s: d/d input %d [%lld]: analytic %.6f vs numeric %.6f", label, i,
                  (long long)k, ana, num);
            checked++;
        }
        printf("  %-34s input %d: max |err| %.2e\n", label, i, maxerr);
    }
    CHECK(checked > 0, "%s: nothing checked", label);
    for (int i = 0; i < n->ninputs; i++) free(din[i]);
    free(y); free(r); free(ytmp);
}

static float *buf(const qd_shape *s, float lo, float hi) {
    int64_t n = qd_shape_numel(s);
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    fill(p, n, lo, hi);
    return p;
}

/* values with |x| >= gap, random sign */
static float *buf_away(const qd_shape *s, float gap, float mag) {
    float *p = buf(s, 0, 1);
    int64_t n = qd_shape_numel(s);
    for (int64_t i = 0; i < n; i++) {
        float v = gap + (mag - gap) * (float)urand();
        p[i] = urand() < 0.5 ? -v : v;
    }
    return p;
}

/* distinct values spaced by `gap` in random order (no ties, for MaxPool) */
static float *buf_distinct(const qd_shape *s, float gap) {
    int64_t n = qd_shape_numel(s);
    float *p = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) p[i] = (float)(i - n / 2) * gap;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(urand() * (double)(i + 1));
        float t = p[i]; p[i] = p[j]; p[j] = t;
    }
    return p;
}

static void run_conv(qd_backend *b, const char *label, int N, int C, int Hh, int W, int O, int k, int s, int pad_t, int pad_l,
                     int pad_b, int pad_r, int dil, int group, int bias) {
    qd_node n = make_node(QD_OP_CONV, bias ? 3 : 2);
    n.a.kernel[0] = n.a.kernel[1] = k;
    n.a.stride[0] = n.a.stride[1] = s;
    n.a.dilation[0] = n.a.dilation[1] = dil;
    n.a.pads[0] = pad_t; n.a.pads[1] = pad_l; n.a.pads[2] = pad_b; n.a.pads[3] = pad_r;
    n.a.group = group;
    int ek = (k - 1) * dil + 1;
    int OH = (Hh + pad_t + pad_b - ek) / s + 1, OW = (W + pad_l + pad_r - ek) / s + 1;
    qd_shape is[3] = {shp(4, N, C, Hh, W), shp(4, O, C / group, k, k), shp(1, O, 0, 0, 0)};
    qd_shape os = shp(4, N, O, OH, OW);
    float *x[3] = {buf(&is[0], -1, 1), buf(&is[1], -1, 1), buf(&is[2], -1, 1)};
    int want[3] = {1, 1, bias};
    gradcheck(b, label, &n, is, &os, x, want);
    for (int i = 0; i < 3; i++) free(x[i]);
}

static void test_convs(qd_backend *b) {
    run_conv(b, "conv 3x3 pad1 bias", 2, 3, 7, 6, 4, 3, 1, 1, 1, 1, 1, 1, 1, 1);
    run_conv(b, "conv strided asym-pad", 2, 3, 8, 7, 5, 3, 2, 1, 0, 1, 2, 1, 1, 0);
    run_conv(b, "conv dilated", 1, 2, 9, 9, 3, 3, 1, 2, 2, 2, 2, 2, 1, 1);
    run_conv(b, "conv grouped g=2", 2, 4, 6, 6, 6, 3, 1, 1, 1, 1, 1, 1, 2, 1);
    run_conv(b, "conv depthwise s2", 2, 3, 7, 7, 3, 3, 2, 1, 1, 1, 1, 1, 3, 1);
    run_conv(b, "conv depthwise mult 2", 2, 2, 5, 6, 4, 3, 1, 1, 1, 1, 1, 1, 2, 0);
    run_conv(b, "conv 1x1 pointwise", 3, 5, 4, 4, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1);
    run_conv(b, "conv 1x1 stride 2", 2, 4, 5, 5, 3, 1, 2, 0, 0, 0, 0, 1, 1, 0);
}

static void test_gemm_matmul(qd_backend *b) {
    for (int tb = 0; tb < 2; tb++)
        for (int ta = 0; ta < 2; ta++) {
            qd_node n = make_node(QD_OP_GEMM, 3);
            n.a.trans_a = ta; n.a.trans_b = tb;
            n.a.alpha = 0.7f; n.a.beta = 1.3f;
            int M = 5, K = 6, N = 4;
            qd_shape is[3] = {ta ? shp(2, K, M, 0, 0) : shp(2, M, K, 0, 0), tb ? shp(2, N, K, 0, 0) : shp(2, K, N, 0, 0),
                              shp(1, N, 0, 0, 0)};
            qd_shape os = shp(2, M, N, 0, 0);
            float *x[3] = {buf(&is[0], -1, 1), buf(&is[1], -1, 1), buf(&is[2], -1, 1)};
            int want[3] = {1, 1, 1};
            char label[64];
            snprintf(label, sizeof label, "gemm transA=%d transB=%d", ta, tb);
            gradcheck(b, label, &n, is, &os, x, want);
            for (int i = 0; i < 3; i++) free(x[i]);
        }
    {   /* batched, shared 2-D B */
        qd_node n = make_node(QD_OP_MATMUL, 2);
        qd_shape is[2] = {shp(4, 2, 3, 4, 5), shp(2, 5, 3, 0, 0)};
        qd_shape os = shp(4, 2, 3, 4, 3);
        float *x[2] = {buf(&is[0], -1, 1), buf(&is[1], -1, 1)};
        int want[2] = {1, 1};
        gradcheck(b, "matmul batched x 2-D", &n, is, &os, x, want);
        free(x[0]); free(x[1]);
    }
    {   /* broadcast batch dims both ways */
        qd_node n = make_node(QD_OP_MATMUL, 2);
        qd_shape is[2] = {shp(4, 2, 1, 4, 5), shp(3, 3, 5, 2, 0)};
        qd_shape os = shp(4, 2, 3, 4, 2);
        float *x[2] = {buf(&is[0], -1, 1), buf(&is[1], -1, 1)};
        int want[2] = {1, 1};
        gradcheck(b, "matmul broadcast batch", &n, is, &os, x, want);
        free(x[0]); free(x[1]);
    }
    {   /* batched both sides, no broadcast */
        qd_node n = make_node(QD_OP_MATMUL, 2);
        qd_shape is[2] = {shp(3, 3, 4, 5, 0), shp(3, 3, 5, 2, 0)};
        qd_shape os = shp(3, 3, 4, 2, 0);
        float *x[2] = {buf(&is[0], -1, 1), buf(&is[1], -1, 1)};
        int want[2] = {1, 1};
        gradcheck(b, "matmul batched x batched", &n, is, &os, x, want);
        free(x[0]); free(x[1]);
    }
}

static void test_binary(qd_backend *b) {
    qd_op ops[4] = {QD_OP_ADD, QD_OP_SUB, QD_OP_MUL, QD_OP_DIV};
    const char *names[4] = {"add", "sub", "mul", "div"};
    for (int o = 0; o < 4; o++) {
        for (int bc = 0; bc < 3; bc++) {
            qd_node n = make_node(ops[o], 2);
            qd_shape os = shp(4, 2, 3, 4, 4);
            qd_shape is[2] = {os, os};
            if (bc == 1) is[1] = shp(4, 1, 3, 1, 1);          /* per-channel */
            if (bc == 2) { is[0] = shp(3, 3, 1, 4, 0); is[1] = shp(4, 2, 1, 4, 1); }  /* both broadcast */
            float lo = ops[o] == QD_OP_DIV ? 0.5f : -1.0f;
            float *x[2] = {buf(&is[0], -1, 1), buf(&is[1], lo, 1.5f)};
            int want[2] = {1, 1};
            char label[64];
            snprintf(label, sizeof label, "%s %s", names[o], bc == 0 ? "same shape" : bc == 1 ? "per-channel" : "2-way bcast");
            gradcheck(b, label, &n, is, &os, x, want);
            free(x[0]); free(x[1]);
        }
    }
}

static void test_unary(qd_backend *b) {
    qd_shape s = shp(4, 2, 3, 5, 4);
    int want[1] = {1};
    {
        qd_node n = make_node(QD_OP_RELU, 1);
        float *x[1] = {buf_away(&s, 3 * H, 2.0f)};
        gradcheck(b, "relu", &n, &s, &s, x, want);
        free(x[0]);
    }
    {
        qd_node n = make_node(QD_OP_CLIP, 1);
        n.a.clip_min = 0.0f; n.a.clip_max = 6.0f;
        float *x[1] = {buf_away(&s, 3 * H, 8.0f)};
        for (int64_t i = 0; i < qd_shape_numel(&s); i++) if (fabsf(x[0][i] - 6.0f) < 3 * H) x[0][i] += 6 * H;
        gradcheck(b, "clip (relu6)", &n, &s, &s, x, want);
        free(x[0]);
    }
    {
        qd_node n = make_node(QD_OP_SIGMOID, 1);
        float *x[1] = {buf(&s, -3, 3)};
        gradcheck(b, "sigmoid", &n, &s, &s, x, want);
        free(x[0]);
    }
    {
        /* kinks at alpha x + beta = 0 and 1 (x = -2.5 and 2.5): samples kept 3H away, both
         * saturated sides and the linear part covered */
        qd_node n = make_node(QD_OP_HARDSIGMOID, 1);
        n.a.alpha = 0.2f; n.a.beta = 0.5f;
        float *x[1] = {buf(&s, -5, 5)};
        for (int64_t i = 0; i < qd_shape_numel(&s); i++)
            if (fabsf(fabsf(x[0][i]) - 2.5f) < 3 * H) x[0][i] += 6 * H;
        gradcheck(b, "hardsigmoid", &n, &s, &s, x, want);
        free(x[0]);
    }
    {
        qd_node n = make_node(QD_OP_HARDSWISH, 1); /* kinks at -3 and 3 */
        float *x[1] = {buf(&s, -5, 5)};
        for (int64_t i = 0; i < qd_shape_numel(&s); i++)
            if (fabsf(fabsf(x[0][i]) - 3.0f) < 3 * H) x[0][i] += 6 * H;
        gradcheck(b, "hardswish", &n, &s, &s, x, want);
        free(x[0]);
    }
    {
        /* Resize is linear in x for fixed sampling positions: every mode/coordinate rule checked,
         * enlarging and shrinking, so each input element's gradient sums its own taps */
        static const struct { int mode, coord, nearest, oh, ow; const char *label; } rc[] = {
            {QD_RESIZE_LINEAR, QD_RESIZE_HALF_PIXEL, 0, 10, 8, "resize linear half_pixel x2"},
            {QD_RESIZE_LINEAR, QD_RESIZE_ALIGN_CORNERS, 0, 7, 3, "resize linear align_corners"},
            {QD_RESIZE_LINEAR, QD_RESIZE_PYTORCH_HALF_PIXEL, 0, 2, 1, "resize linear pytorch_half_pixel down"},
            {QD_RESIZE_NEAREST, QD_RESIZE_ASYMMETRIC, QD_RESIZE_FLOOR, 10, 8, "resize nearest asymmetric floor"},
            {QD_RESIZE_NEAREST, QD_RESIZE_HALF_PIXEL, QD_RESIZE_ROUND_PREFER_CEIL, 3, 7, "resize nearest half_pixel"},
        };
        for (size_t k = 0; k < sizeof rc / sizeof rc[0]; k++) {
            qd_node n = make_node(QD_OP_RESIZE, 1);
            n.a.resize_mode = rc[k].mode;
            n.a.resize_coord = rc[k].coord;
            n.a.resize_nearest = rc[k].nearest;
            n.a.resize_scale[0] = (float)rc[k].oh / (float)s.dims[2];
            n.a.resize_scale[1] = (float)rc[k].ow / (float)s.dims[3];
            qd_shape os = shp(4, 2, 3, rc[k].oh, rc[k].ow);
            float *x[1] = {buf(&s, -2, 2)};
            gradcheck(b, rc[k].label, &n, &s, &os, x, want);
            free(x[0]);
        }
    }
    for (int ax = 1; ax < 4; ax += 2) {
        qd_node n = make_node(QD_OP_SOFTMAX, 1);
        n.a.axis = ax;
        float *x[1] = {buf(&s, -2, 2)};
        gradcheck(b, ax == 1 ? "softmax axis 1" : "softmax axis -1", &n, &s, &s, x, want);
        free(x[0]);
    }
    {
        qd_node n = make_node(QD_OP_SOFTMAX, 1);
        n.opset = 11; n.a.axis = 2;   /* pre-13: softmax over flattened dims >= axis */
        float *x[1] = {buf(&s, -2, 2)};
        gradcheck(b, "softmax opset 11 axis 2", &n, &s, &s, x, want);
        free(x[0]);
    }
    {
        qd_node n = make_node(QD_OP_FLATTEN, 1);
        qd_shape os = shp(2, 2, 60, 0, 0);
        float *x[1] = {buf(&s, -1, 1)};
        gradcheck(b, "flatten", &n, &s, &os, x, want);
        free(x[0]);
    }
    {
        qd_node n = make_node(QD_OP_BATCHNORM, 5);
        qd_shape is[5] = {s, shp(1, 3, 0, 0, 0), shp(1, 3, 0, 0, 0), shp(1, 3, 0, 0, 0), shp(1, 3, 0, 0, 0)};
        float *x[5] = {buf(&s, -1, 1), buf(&is[1], 0.5f, 2), buf(&is[2], -1, 1), buf(&is[3], -1, 1), buf(&is[4], 0.5f, 2)};
        int w5[5] = {1, 0, 0, 0, 0};
        gradcheck(b, "batchnorm (inference) dx", &n, is, &s, x, w5);
        for (int i = 0; i < 5; i++) free(x[i]);
    }
}

static void test_pools(qd_backend *b) {
    int want[1] = {1};
    qd_shape s = shp(4, 2, 3, 7, 8);
    {
        qd_node n = make_node(QD_OP_MAXPOOL, 1);
        n.a.kernel[0] = n.a.kernel[1] = 3; n.a.stride[0] = n.a.stride[1] = 2;
        n.a.pads[0] = n.a.pads[1] = n.a.pads[2] = n.a.pads[3] = 1;
        qd_shape os = shp(4, 2, 3, 4, 4);
        float *x[1] = {buf_distinct(&s, 5 * H)};
        gradcheck(b, "maxpool 3x3 s2 p1", &n, &s, &os, x, want);
        free(x[0]);
    }
    {
        qd_node n = make_node(QD_OP_MAXPOOL, 1);
        n.a.kernel[0] = n.a.kernel[1] = 2; n.a.stride[0] = n.a.stride[1] = 2;
        n.a.ceil_mode = 1;          /* 7x8 -> ceil(6/2)+1 = 4 x 4 */
        qd_shape os = shp(4, 2, 3, 4, 4);
        float *x[1] = {buf_distinct(&s, 5 * H)};
        gradcheck(b, "maxpool 2x2 ceil_mode", &n, &s, &os, x, want);
        free(x[0]);
    }
    for (int inc = 0; inc < 2; inc++) {
        qd_node n = make_node(QD_OP_AVGPOOL, 1);
        n.a.kernel[0] = n.a.kernel[1] = 3; n.a.stride[0] = n.a.stride[1] = 2;
        n.a.pads[0] = n.a.pads[1] = n.a.pads[2] = n.a.pads[3] = 1;
        n.a.count_include_pad = inc;
        n.a.ceil_mode = 1;          /* (7+2-3)/2 -> ceil 3 + 1 = 4; (8+2-3)/2 = 3.5 -> 4 + 1 = 5 */
        qd_shape os = shp(4, 2, 3, 4, 5);
        float *x[1] = {buf(&s, -1, 1)};
        gradcheck(b, inc ? "avgpool include_pad ceil" : "avgpool exclude_pad ceil", &n, &s, &os, x, want);
        free(x[0]);
    }
    {
        qd_node n = make_node(QD_OP_GLOBALAVGPOOL, 1);
        qd_shape os = shp(4, 2, 3, 1, 1);
        float *x[1] = {buf(&s, -1, 1)};
        gradcheck(b, "global average pool", &n, &s, &os, x, want);
        free(x[0]);
    }
    {
        qd_node n = make_node(QD_OP_REDUCEMEAN, 1);
        n.a.naxes = 2; n.a.axes[0] = 2; n.a.axes[1] = 3; n.a.keepdims = 1;
        qd_shape os = shp(4, 2, 3, 1, 1);
        float *x[1] = {buf(&s, -1, 1)};
        gradcheck(b, "reducemean axes 2,3 keepdims", &n, &s, &os, x, want);
        free(x[0]);
    }
    {
        qd_node n = make_node(QD_OP_REDUCEMEAN, 1);
        n.a.naxes = 1; n.a.axes[0] = 1; n.a.keepdims = 0;
        qd_shape os = shp(3, 2, 7, 8, 0);
        float *x[1] = {buf(&s, -1, 1)};
        gradcheck(b, "reducemean axis 1 no keepdims", &n, &s, &os, x, want);
        free(x[0]);
    }
}

static void test_shape_ops(qd_backend *b) {
    int want[2] = {1, 1};
    qd_shape s = shp(4, 2, 3, 6, 5);
    {   /* ResNet-20 option-A shortcut: pad channels, and a spatial pad */
        qd_node n = make_node(QD_OP_PAD, 1);
        n.a.pad_begin[1] = 2; n.a.pad_end[1] = 1; n.a.pad_begin[2] = 1; n.a.pad_end[3] = 2;
        n.a.pad_value = 0.25f;
        qd_shape os = shp(4, 2, 6, 7, 7);
        float *x[1] = {buf(&s, -1, 1)};
        gradcheck(b, "pad constant", &n, &s, &os, x, want);
        free(x[0]);
    }
    {   /* x[:, :, 1::2, ::2] */
        qd_node n = make_node(QD_OP_SLICE, 1);
        n.a.slice_start[2] = 1; n.a.slice_step[2] = 2; n.a.slice_step[3] = 2;
        qd_shape os = shp(4, 2, 3, 3, 3);
        float *x[1] = {buf(&s, -1, 1)};
        gradcheck(b, "slice step 2", &n, &s, &os, x, want);
        free(x[0]);
    }
    {   /* negative step: reverse channels 2..0 */
        qd_node n = make_node(QD_OP_SLICE, 1);
        n.a.slice_start[1] = 2; n.a.slice_step[1] = -1;
        qd_shape os = shp(4, 2, 3, 6, 5);
        float *x[1] = {buf(&s, -1, 1)};
        gradcheck(b, "slice step -1", &n, &s, &os, x, want);
        free(x[0]);
    }
    {
        qd_node n = make_node(QD_OP_CONCAT, 2);
        n.a.axis = 1;
        qd_shape is[2] = {s, shp(4, 2, 2, 6, 5)};
        qd_shape os = shp(4, 2, 5, 6, 5);
        float *x[2] = {buf(&is[0], -1, 1), buf(&is[1], -1, 1)};
        gradcheck(b, "concat axis 1", &n, is, &os, x, want);
        free(x[0]); free(x[1]);
    }
    {
        qd_node n = make_node(QD_OP_TRANSPOSE, 1);
        n.a.nperm = 4; n.a.perm[0] = 0; n.a.perm[1] = 2; n.a.perm[2] = 3; n.a.perm[3] = 1;
        qd_shape os = shp(4, 2, 6, 5, 3);
        float *x[1] = {buf(&s, -1, 1)};
        gradcheck(b, "transpose 0,2,3,1", &n, &s, &os, x, want);
        free(x[0]);
    }
}

/* ---- quantization gradients ---- */

/* STE dx and LSQ ds of fq_backward against an independent evaluation: dx = dy where the code
 * r+z lies inside [qmin, qmax] or the element was dropped, 0 where clamped; ds is checked
 * against central differences (double) of the STE surrogate
 *   y(s) = (clamp(x/s + (r0 - v0) + z, qmin, qmax) - z) * s     (round held at its s0 offset),
 * which is d/ds[(clamp(round(x/s)+z)-z)s] with the rounding step frozen. */
static void test_fake_quant_grads(qd_backend *b) {
    const int64_t n = 3000;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), *dy = malloc(sizeof(float) * n);
    float *dx = malloc(sizeof(float) * n);
    uint8_t *reg = malloc((size_t)n);
    for (int drop = 0; drop < 2; drop++) {
        qd_fq_desc d;
        memset(&d, 0, sizeof d);
        d.zero_point = 3.0f; d.qmin = 0.0f; d.qmax = 15.0f;
        d.keep_prob = drop ? 0.5f : 1.0f;
        d.grad_scale = 1;
        d.key.seed_lo = 7; d.key.unit = 2; d.key.tensor = 1;
        float s = 0.1f;
        int32_t iter = 5;
        for (int64_t i = 0; i < n; i++) {
            float v;
            do {   /* keep codes off the exact clamp boundaries (one-sided there) */
                v = frand(-0.6f, 1.5f);
            } while (rintf(v / s) + d.zero_point == d.qmin || rintf(v / s) + d.zero_point == d.qmax ||
                     fabsf(v / s - rintf(v / s)) > 0.499f);
            x[i] = v;
        }
        fill(dy, n, -1, 1);
        MUST(b->ops->fq_forward(b, &d, &s, &iter, n, x, y, reg));
        for (int64_t i = 0; i < n; i++) dx[i] = 0.25f;
        float ds = 0.0f;
        MUST(b->ops->fq_backward(b, &d, &s, n, x, reg, dy, dx, &ds));
        double num = 0.0;
        int64_t ndrop = 0, nclamp = 0;
        for (int64_t i = 0; i < n; i++) {
            int kept = qd_keep_quant(d.key, (uint32_t)iter, (uint64_t)i, d.keep_prob);
            double v0 = (double)x[i] / s, r0 = rint(v0);
            double code = r0 + d.zero_point;
            int inside = code >= d.qmin && code <= d.qmax;
            float want_dx = 0.25f + ((!kept || inside) ? dy[i] : 0.0f);
            CHECK(dx[i] == want_dx, "fq dx[%lld]: %g vs %g (kept %d inside %d)", (long long)i, dx[i], want_dx, kept, inside);
            CHECK(reg[i] == (kept ? (inside ? QD_FQ_INSIDE : (code < d.qmin ? QD_FQ_LOW : QD_FQ_HIGH)) : QD_FQ_DROPPED),
                  "fq region[%lld] = %d", (long long)i, reg[i]);
            if (!kept) { ndrop++; CHECK(y[i] == x[i], "dropped element %lld changed", (long long)i); continue; }
            if (!inside) nclamp++;
            double hs = 1e-6;
            double yp, ym;
            for (int sgn = -1; sgn <= 1; sgn += 2) {
                double ss = s + sgn * hs;
                double t = (double)x[i] / ss + (r0 - v0) + d.zero_point;
                t = fmin(fmax(t, d.qmin), d.qmax);
                double yy = (t - d.zero_point) * ss;
                if (sgn < 0) ym = yy; else yp = yy;
            }
            num += (double)dy[i] * (yp - ym) / (2 * hs);
        }
        num *= 1.0 / sqrt((double)n * d.qmax);
        CHECK(fabs(num - ds) <= 1e-4 + 1e-4 * fabs(num), "LSQ ds (drop=%d): backend %.7f vs finite difference %.7f", drop, ds, num);
        CHECK(nclamp > 100, "test data should hit the clamp (%lld)", (long long)nclamp);
        if (drop) CHECK(ndrop > n / 3 && ndrop < 2 * n / 3, "drop count %lld of %lld", (long long)ndrop, (long long)n);
        printf("  fake-quant drop=%d: ds %.6f vs fd %.6f, %lld clamped, %lld dropped\n", drop, ds, num, (long long)nclamp,
               (long long)ndrop);
    }
    free(x); free(y); free(dy); free(dx); free(reg);
}

/* AdaRound soft weight dw/dV and the regulariser gradient: true central differences of the
 * qmath forward functions (double-checked away from the clamp kinks). */
static void test_adaround_grads(void) {
    int checked = 0;
    for (int t = 0; t < 400; t++) {
        float s = frand(0.02f, 0.2f), z = (float)(int)frand(0, 4);
        float w = frand(-0.3f, 0.3f), V = frand(-3.0f, 3.0f);
        float qmin = 0, qmax = 7;
        float hr = qd_adaround_hraw(V);
        float f = qd_adaround_floor(w, s);
        /* stay 2h-ish away from the h clamps and the grid clamps */
        if (hr < 0.02f || hr > 0.98f) continue;
        if (f + z < qmin + 0.1f || f + z + 1.0f > qmax - 0.1f) continue;
        float hv = 1e-3f;
        double num = ((double)qd_adaround_weight(w, V + hv, s, z, qmin, qmax, 0, NULL) -
                      (double)qd_adaround_weight(w, V - hv, s, z, qmin, qmax, 0, NULL)) / (2.0 * hv);
        double ana = qd_adaround_dw_dv(w, V, s, z, qmin, qmax);
        CHECK(fabs(num - ana) <= 2e-3 * fabs(ana) + 2e-5, "dw/dV at w=%g V=%g s=%g: %g vs fd %g", w, V, s, ana, num);
        float beta = frand(2.0f, 20.0f), lam = 0.01f;
        if (fabsf(2 * hr - 1) > 0.05f) {
            double rn = lam * ((double)qd_adaround_reg(V + hv, beta) - (double)qd_adaround_reg(V - hv, beta)) / (2.0 * hv);
            double ra = qd_adaround_reg_dv(V, beta, lam);
            CHECK(fabs(rn - ra) <= 5e-3 * fabs(ra) + 2e-6, "dR/dV at V=%g beta=%g: %g vs fd %g", V, beta, ra, rn);
        }
        checked++;
    }
    CHECK(checked > 150, "adaround grad cases checked %d", checked);
    /* clamped h (V far out) and clamped grid give zero gradient */
    CHECK(qd_adaround_dw_dv(0.05f, 5.0f, 0.1f, 0.0f, 0.0f, 7.0f) == 0.0f, "dw/dV must vanish where h is clamped at 1");
    CHECK(qd_adaround_dw_dv(2.0f, 0.0f, 0.1f, 0.0f, 0.0f, 7.0f) == 0.0f, "dw/dV must vanish where the grid clamps");
    CHECK(qd_adaround_reg_dv(0.0f, 4.0f, 0.01f) == 0.0f || fabsf(qd_adaround_hraw(0.0f) - 0.5f) > 1e-6f,
          "regulariser gradient vanishes at h = 0.5");
    printf("  adaround dw/dV and dR/dV: %d cases\n", checked);
}

/* adaround_step = dW*dw/dV (+ dR/dV when c >= T_w) fed to Adam: compare with the same chain
 * evaluated element by element here. */
static void test_adaround_step(qd_backend *b) {
    enum { C = 3, PC = 50, NE = C * PC };
    float w[NE], V[NE], m[NE], v[NE], dW[NE], s[C], z[C], Vr[NE], mr[NE], vr[NE];
    for (int c = 0; c < C; c++) { s[c] = frand(0.05f, 0.1f); z[c] = 2.0f; }
    fill(w, NE, -0.3f, 0.3f);
    fill(dW, NE, -1, 1);
    qd_adaround_desc d = {NE, PC, C, 0.0f, 15.0f};
    MUST(b->ops->adaround_init(b, &d, w, s, z, V));
    for (int i = 0; i < NE; i++) {
        CHECK(fabsf(qd_adaround_hraw(V[i]) - (w[i] / s[i / PC] - floorf(w[i] / s[i / PC]))) < 1e-4f, "init h != rest at %d", i);
        m[i] = v[i] = 0.0f;
    }
    qd_sched_desc sc = {100, 0.2f, 20.0f, 2.0f, 0.01f, 1e-3f, 4e-5f};
    for (int32_t iter = 19; iter <= 21; iter++) {   /* T_w = 20: reg off, then on */
        memcpy(Vr, V, sizeof V); memcpy(mr, m, sizeof m); memcpy(vr, v, sizeof v);
        float reg = 0.0f;
        MUST(b->ops->adaround_step(b, &d, &sc, &iter, w, s, z, dW, V, m, v, &reg));
        double regr = 0.0;
        float beta = qd_beta_at(iter, 100, 0.2f, 20.0f, 2.0f);
        for (int i = 0; i < NE; i++) {
            int c = i / PC;
            float g = dW[i] * qd_adaround_dw_dv(w[i], Vr[i], s[c], z[c], 0.0f, 15.0f);
            if (iter >= 20) { g += qd_adaround_reg_dv(Vr[i], beta, 0.01f); regr += qd_adaround_reg(Vr[i], beta); }
            float want = qd_adam_update(Vr[i], g, &mr[i], &vr[i], 1e-3f, iter);
            CHECK(V[i] == want, "adaround_step V[%d] at c=%d: %g vs %g", i, iter, V[i], want);
        }
        CHECK(fabs(reg - 0.01 * regr) <= 1e-5 * fabs(0.01 * regr) + 1e-7, "reg loss at c=%d: %g vs %g", iter, reg, 0.01 * regr);
        if (iter < 20) CHECK(reg == 0.0f, "regulariser must be off before T_w (c=%d)", iter);
    }
}

static void test_mse(qd_backend *b) {
    int64_t N = 3, C = 4, HW = 5, n = N * C * HW;
    float y[60], t[60], dy[60];
    fill(y, n, -1, 1); fill(t, n, -1, 1);
    float loss = 0.5f;
    MUST(b->ops->mse_loss(b, N, C, HW, y, t, dy, &loss));
    double ref = 0;
    for (int64_t i = 0; i < n; i++) ref += ((double)y[i] - t[i]) * ((double)y[i] - t[i]);
    ref /= (double)(N * HW);
    CHECK(fabs((loss - 0.5) - ref) < 1e-5, "mse loss %g vs %g", loss - 0.5, ref);
    for (int64_t i = 0; i < n; i += 7) {
        float save = y[i];
        float lp = 0, lm = 0;
        y[i] = save + H; MUST(b->ops->mse_loss(b, N, C, HW, y, t, NULL, &lp));
        y[i] = save - H; MUST(b->ops->mse_loss(b, N, C, HW, y, t, NULL, &lm));
        y[i] = save;
        double num = ((double)lp - lm) / (2 * H);
        CHECK(fabs(num - dy[i]) < 2e-4, "mse dy[%lld]: %g vs fd %g", (long long)i, dy[i], num);
    }
}

/* L_p loss with p = 2.4 (BRECQ's activation stage, docs/algorithm.md §5 reduction / §6.3): value
 * against a double reference, dy against central differences of the op itself, and p = 2
 * against mse_loss. */
static void test_lp_loss(qd_backend *b) {
    int64_t N = 3, C = 4, HW = 5, n = N * C * HW;
    float y[60], t[60], dy[60], dy2[60], dym[60];
    fill(y, n, -1, 1); fill(t, n, -1, 1);
    y[0] = t[0];                       /* d = 0: gradient exactly 0 */
    const float p = 2.4f;
    float loss = 0.25f;
    MUST(b->ops->lp_loss(b, p, N, C, HW, y, t, dy, &loss));
    double ref = 0;
    for (int64_t i = 0; i < n; i++) ref += pow(fabs((double)y[i] - t[i]), 2.4);
    ref /= (double)(N * HW);
    CHECK(fabs((loss - 0.25) - ref) < 1e-5 * (1 + ref), "lp loss %g vs %g", loss - 0.25, ref);
    CHECK(dy[0] == 0.0f, "lp dy at d = 0: %g", dy[0]);
    for (int64_t i = 0; i < n; i++) {
        double d = (double)y[i] - t[i];
        double want = 2.4 * pow(fabs(d), 1.4) * (d > 0 ? 1 : d < 0 ? -1 : 0) / (double)(N * HW);
        CHECK(fabs(dy[i] - want) < 1e-6 + 1e-5 * fabs(want), "lp dy[%lld] %g vs analytic %g", (long long)i, dy[i], want);
    }
    for (int64_t i = 1; i < n; i += 3) {
        float save = y[i];
        float lp = 0, lm = 0;
        y[i] = save + H; MUST(b->ops->lp_loss(b, p, N, C, HW, y, t, NULL, &lp));
        y[i] = save - H; MUST(b->ops->lp_loss(b, p, N, C, HW, y, t, NULL, &lm));
        y[i] = save;
        double num = ((double)lp - lm) / (2 * H);
        CHECK(fabs(num - dy[i]) < 2e-4 + 1e-2 * fabs(dy[i]), "lp dy[%lld]: %g vs fd %g", (long long)i, dy[i], num);
    }
    /* p = 2 is the MSE of §5 */
    float l2 = 0, lm2 = 0;
    MUST(b->ops->lp_loss(b, 2.0f, N, C, HW, y, t, dy2, &l2));
    MUST(b->ops->mse_loss(b, N, C, HW, y, t, dym, &lm2));
    CHECK(fabs(l2 - lm2) <= 1e-6 * fabs(lm2), "lp(p=2) loss %g vs mse %g", l2, lm2);
    for (int64_t i = 0; i < n; i++)
        CHECK(fabs(dy2[i] - dym[i]) <= 1e-6 * fabs(dym[i]) + 1e-9, "lp(p=2) dy[%lld] %g vs mse %g", (long long)i, dy2[i], dym[i]);
}

/* Transformer ops (LayerNormalization, Gelu, Softmax with an additive key mask). */
static void test_transformer(qd_backend *b) {
    {
        /* [N, T, F] over the last axis, then over [T, F] (axis 1); Scale/B frozen (din NULL) */
        qd_shape s = shp(3, 2, 3, 8, 0);
        for (int ax = -1; ax <= 1; ax += 2) {
            qd_node n = make_node(QD_OP_LAYERNORM, 3);
            n.a.axis = ax;
            int64_t len = ax == 1 ? 24 : 8;
            qd_shape is[3] = {s, shp(1, len, 0, 0, 0), shp(1, len, 0, 0, 0)};
            float *x[3] = {buf(&s, -2, 3), buf(&is[1], 0.5f, 1.5f), buf(&is[2], -1, 1)};
            int w3[3] = {1, 0, 0};
            gradcheck(b, ax == 1 ? "layernorm axis 1 dx" : "layernorm axis -1 dx", &n, is, &s, x, w3);
            for (int i = 0; i < 3; i++) free(x[i]);
        }
        /* without B */
        qd_node n = make_node(QD_OP_LAYERNORM, 2);
        n.a.axis = -1;
        qd_shape is[2] = {s, shp(1, 8, 0, 0, 0)};
        float *x[2] = {buf(&s, -2, 3), buf(&is[1], 0.5f, 1.5f)};
        int w2[2] = {1, 0};
        gradcheck(b, "layernorm no B dx", &n, is, &s, x, w2);
        for (int i = 0; i < 2; i++) free(x[i]);
    }
    {
        qd_shape s = shp(3, 2, 3, 7, 0);
        qd_node n = make_node(QD_OP_GELU, 1);
        float *x[1] = {buf(&s, -4, 4)};
        int w1[1] = {1};
        gradcheck(b, "gelu (erf)", &n, &s, &s, x, w1);
        free(x[0]);
    }
    /* masked softmax: scores [N=3, heads=2, S=5, S=5], mask [3, 1, 1, 5]; sample 1 pads its last
     * two keys, sample 2 pads every key (with -inf: all-zero rows; finite: ordinary softmax) */
    for (int variant = 0; variant < 2; variant++) {
        const float pad = variant == 0 ? -INFINITY : -10000.0f;
        const int S = 5;
        qd_shape xs = {4, {3, 2, S, S}}, ms = {4, {3, 1, 1, S}};
        qd_node n = make_node(QD_OP_SOFTMAX, 2);
        n.a.axis = -1;
        qd_shape is[2] = {xs, ms};
        float *x[2] = {buf(&xs, -3, 3), buf(&ms, 0, 0)};
        for (int j = 0; j < S; j++) {
            x[1][j] = 0.0f;
            x[1][S + j] = j >= 3 ? pad : 0.0f;
            x[1][2 * S + j] = variant == 0 ? pad : (j == 0 ? 0.0f : pad);
        }
        /* finite mask: scores near -1e4 have an ulp of 1e-3, too coarse for the finite difference
         * of h = 1e-2 on a fully padded row; sample 2 keeps one key there (full rows below) */
        int w2[2] = {1, 0};
        gradcheck(b, variant == 0 ? "softmax + mask (-inf)" : "softmax + mask (-1e4)", &n, is, &xs, x, w2);
        /* padded keys: probability exactly 0 and gradient exactly 0 */
        int64_t no = qd_shape_numel(&xs);
        float *y = malloc(sizeof(float) * (size_t)no), *dy = malloc(sizeof(float) * (size_t)no),
              *dx = calloc((size_t)no, sizeof(float));
        fill(dy, no, -1, 1);
        MUST(b->ops->node_forward(b, &n, is, (const float *const *)x, &xs, y));
        float *din[2] = {dx, NULL};
        MUST(b->ops->node_backward(b, &n, is, (const float *const *)x, &xs, y, dy, din));
        int bad = 0, nan = 0;
        for (int64_t r = 0; r < no / S; r++) {
            int smp = (int)(r / (2 * S));
            double sum = 0;
            for (int j = 0; j < S; j++) {
                float p = y[r * S + j], g = dx[r * S + j];
                if (isnan(p) || isnan(g)) nan++;
                sum += p;
                if (smp == 1 && j >= 3 && (p != 0.0f || g != 0.0f)) bad++;
                if (smp == 2 && (variant == 0 || j > 0) && (p != 0.0f || g != 0.0f)) bad++;
            }
            if (!(smp == 2 && variant == 0)) CHECK(fabs(sum - 1.0) < 1e-6, "masked softmax row %lld sums to %.8f", (long long)r, sum);
        }
        CHECK(bad == 0, "masked softmax (%s): %d padded probabilities/gradients are not exactly 0", variant ? "-1e4" : "-inf", bad);
        CHECK(nan == 0, "masked softmax (%s): %d NaN", variant ? "-1e4" : "-inf", nan);
        /* a finite mask on every key (HF style): softmax(x + mask) like ONNX, not NaN */
        if (variant == 1) {
            for (int j = 0; j < S; j++) x[1][2 * S + j] = pad;
            MUST(b->ops->node_forward(b, &n, is, (const float *const *)x, &xs, y));
            qd_node n1 = make_node(QD_OP_SOFTMAX, 1);
            n1.a.axis = -1;
            float *xm = malloc(sizeof(float) * (size_t)no), *y1 = malloc(sizeof(float) * (size_t)no);
            for (int64_t i = 0; i < no; i++) xm[i] = x[0][i] + x[1][(i / (2 * S * S)) * S + i % S];
            MUST(b->ops->node_forward(b, &n1, &xs, (const float *const *)&xm, &xs, y1));
            for (int64_t i = 4 * S * S; i < no; i++)
                CHECK(!isnan(y[i]) && fabsf(y[i] - y1[i]) <= 1e-6f, "fully padded row (finite mask) [%lld]: %g vs softmax(x+mask) %g",
                      (long long)i, y[i], y1[i]);
            free(xm); free(y1);
        }
        free(y); free(dy); free(dx); free(x[0]); free(x[1]);
    }
    {
        /* a constant mask of lower rank broadcasts right-aligned (numpy), as an imported Add would */
        qd_shape xs = shp(3, 2, 4, 6, 0), ms = shp(1, 6, 0, 0, 0);
        qd_node n = make_node(QD_OP_SOFTMAX, 2);
        n.a.axis = 2;
        qd_shape is[2] = {xs, ms};
        float *x[2] = {buf(&xs, -3, 3), buf(&ms, -1, 1)};
        x[1][5] = -INFINITY;
        int w2[2] = {1, 0};
        gradcheck(b, "softmax + rank-1 mask", &n, is, &xs, x, w2);
        free(x[0]); free(x[1]);
    }
}

int main(void) {
    qd_backend *b = make_cpu(2);
    printf("backend: %s\n", b->device_name);
    test_convs(b);
    test_gemm_matmul(b);
    test_binary(b);
    test_unary(b);
    test_transformer(b);
    test_pools(b);
    test_shape_ops(b);
    test_fake_quant_grads(b);
    test_adaround_grads();
    test_adaround_step(b);
    test_mse(b);
    test_lp_loss(b);
    qd_backend_destroy(b);
    return qd_test_summary("test_grad");
}
