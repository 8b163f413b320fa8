/* tests/unit/test_conv_paths.c: the CPU backend's two convolution paths (oneDNN direct kernels
 * and im2col + OpenBLAS, src/cpu/cpu_conv*.c) must compute the same forward, input gradient and
 * weight gradient to float rounding, on shapes that exercise each oneDNN case the engine meets:
 * 3x3 stride 1/2, 1x1 downsample, the 3-channel stem (plain source layout), 7x7 with asymmetric
 * padding, dilation, channel counts that are not a multiple of the 16-channel block and batches
 * that leave a short last chunk. The im2col path is itself checked against finite differences
 * (test_grad, also run with QD_CPU_CONV=im2col). Exit 77 when the build has no oneDNN. */
#include <math.h>

#include "test.h"
#include "cpu/cpu_conv.h"
#include "cpu_test_util.h"

typedef struct { int N, C, H, O, k, stride, pad_tl, pad_br, dil; int bias; } conv_shape;

static void run(qd_backend *b, const conv_shape *s, float **y, float **dx, float **dw, int64_t *ny, int64_t *nx,
                int64_t *nw) {
    g_rng = 0x5eed0000ull + (uint64_t)(s->C * 131 + s->O * 7 + s->k);
    qd_node n = make_node(QD_OP_CONV, s->bias ? 3 : 2);
    n.a.kernel[0] = n.a.kernel[1] = s->k;
    n.a.stride[0] = n.a.stride[1] = s->stride;
    n.a.dilation[0] = n.a.dilation[1] = s->dil;
    n.a.pads[0] = n.a.pads[1] = s->pad_tl;
    n.a.pads[2] = n.a.pads[3] = s->pad_br;
    n.a.group = 1;
    int ke = (s->k - 1) * s->dil + 1;
    int OH = (s->H + s->pad_tl + s->pad_br - ke) / s->stride + 1;
    qd_shape is[3] = {shp(4, s->N, s->C, s->H, s->H), shp(4, s->O, s->C, s->k, s->k), shp(1, s->O, 0, 0, 0)};
    qd_shape os = shp(4, s->N, s->O, OH, OH);
    *nx = qd_shape_numel(&is[0]); *nw = qd_shape_numel(&is[1]); *ny = qd_shape_numel(&os);
    float *x = malloc(sizeof(float) * *nx), *w = malloc(sizeof(float) * *nw), *bias = malloc(sizeof(float) * s->O);
    float *dy = malloc(sizeof(float) * *ny);
    fill(x, *nx, -1, 1); fill(w, *nw, -1, 1); fill(bias, s->O, -1, 1); fill(dy, *ny, -1, 1);
    *y = malloc(sizeof(float) * *ny);
    /* gradients accumulate (din += ...): start from a non-zero value to check that too */
    *dx = malloc(sizeof(float) * *nx);
    *dw = malloc(sizeof(float) * *nw);
    for (int64_t i = 0; i < *nx; i++) (*dx)[i] = 0.25f;
    for (int64_t i = 0; i < *nw; i++) (*dw)[i] = -0.5f;
    const float *in[3] = {x, w, bias};
    float *din[3] = {*dx, *dw, NULL};
    MUST(b->ops->node_forward(b, &n, is, in, &os, *y));
    MUST(b->ops->node_backward(b, &n, is, in, &os, *y, dy, din));
    free(x); free(w); free(bias); free(dy);
}

/* max |a-b| / max(1, max |b|): both paths sum the same products in different orders */
static double rel_err(const float *a, const float *b, int64_t n) {
    double m = 0, r = 1;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d) m = d != d ? INFINITY : d;
        if (fabs((double)b[i]) > r) r = fabs((double)b[i]);
    }
    return m / r;
}

int main(void) {
    const conv_shape shapes[] = {
        {32, 16, 32, 16, 3, 1, 1, 1, 1, 1},  /* ResNet-20 stage 1 (8-sample chunks) */
        {11, 32, 16, 32, 3, 1, 1, 1, 1, 1},  /* short last chunk (11 = 8 + 3) */
        {9, 16, 32, 32, 3, 2, 1, 1, 1, 1},   /* stride-2 3x3 */
        {9, 16, 32, 32, 1, 2, 0, 0, 1, 0},   /* 1x1 stride-2 downsample, no bias */
        {5, 3, 32, 16, 3, 1, 1, 1, 1, 1},    /* RGB stem: oneDNN keeps a plain source layout */
        {3, 3, 40, 24, 7, 2, 3, 2, 1, 1},    /* 7x7 s2, asymmetric padding, 24 output channels */
        {4, 20, 12, 12, 3, 1, 2, 2, 2, 1},   /* dilation 2, 20 -> 12 channels */
        {64, 64, 8, 64, 3, 1, 1, 1, 1, 1},   /* ResNet-20 stage 3 */
    };
    qd_backend *b = make_cpu(2);
    qd_cpu_conv_use_dnnl(1);
    const char *path = qd_cpu_conv_path();
    if (strncmp(path, "onednn", 6) != 0) {
        printf("SKIP: this build has no oneDNN (%s)\n", path);
        qd_backend_destroy(b);
        return 77;
    }
    printf("oneDNN path: %s\n", path);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const conv_shape *s = &shapes[i];
        float *y[2], *dx[2], *dw[2];
        int64_t ny, nx, nw;
        for (int p = 0; p < 2; p++) {
            qd_cpu_conv_use_dnnl(p == 0);
            long calls = qd_cpu_conv_dnnl_calls();
            run(b, s, &y[p], &dx[p], &dw[p], &ny, &nx, &nw);
            /* forward + backward through oneDNN in the first pass, none in the second */
            CHECK(qd_cpu_conv_dnnl_calls() - calls == (p == 0 ? 2 : 0), "shape %zu: %ld oneDNN calls in the %s pass", i,
                  qd_cpu_conv_dnnl_calls() - calls, p == 0 ? "oneDNN" : "im2col");
        }
        double ey = rel_err(y[0], y[1], ny), ex = rel_err(dx[0], dx[1], nx), ew = rel_err(dw[0], dw[1], nw);
        /* float sums of up to C*k*k (forward, dx) or N*OH*OW (dW) products in different orders */
        CHECK(ey < 2e-6, "shape %zu (N%d C%d H%d O%d k%d s%d): forward differs by %.3g (relative)", i, s->N, s->C, s->H,
              s->O, s->k, s->stride, ey);
        CHECK(ex < 2e-6, "shape %zu: input gradient differs by %.3g (relative)", i, ex);
        CHECK(ew < 1e-5, "shape %zu: weight gradient differs by %.3g (relative)", i, ew);
        printf("  N%-2d C%-2d %2dx%-2d -> O%-2d k%d s%d pad %d/%d dil %d: forward %.2e, dx %.2e, dW %.2e\n", s->N, s->C,
               s->H, s->H, s->O, s->k, s->stride, s->pad_tl, s->pad_br, s->dil, ey, ex, ew);
        for (int p = 0; p < 2; p++) { free(y[p]); free(dx[p]); free(dw[p]); }
    }
    qd_backend_destroy(b);
    return qd_test_summary("test_conv_paths");
}
