/* tests/unit/test_cpu_threads.c: the CPU backend must give bit-identical results for any thread
 * count (fixed chunking, ordered reductions). Runs convs (GEMM, depthwise, pointwise, grouped)
 * and the reduction kernels (LSQ ds, MSE loss, AdaRound step) with 1, 2 and 3 threads.
 * Also prints the forward/backward GFLOP/s of a representative conv (32x16x32x32, 16->16 3x3). */
#define _POSIX_C_SOURCE 200809L /* strdup, clock_gettime */
#include <time.h>

#include "test.h"
#include "core/qmath.h"
#include "cpu/cpu_internal.h"
#include "cpu_test_util.h"

typedef struct {
    float *y, *dx, *dw;
    float ds, loss, reg;
    float *V;
} result;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void conv_case(qd_backend *b, int N, int C, int HW, int O, int k, int group, int stride, result *r, int seed) {
    g_rng = 0x1234567ull + (uint64_t)seed;
    qd_node n = make_node(QD_OP_CONV, 3);
    n.a.kernel[0] = n.a.kernel[1] = k;
    n.a.stride[0] = n.a.stride[1] = stride;
    n.a.pads[0] = n.a.pads[1] = n.a.pads[2] = n.a.pads[3] = k / 2;
    n.a.group = group;
    int OH = (HW + 2 * (k / 2) - k) / stride + 1;
    qd_shape is[3] = {shp(4, N, C, HW, HW), shp(4, O, C / group, k, k), shp(1, O, 0, 0, 0)};
    qd_shape os = shp(4, N, O, OH, OH);
    int64_t nx = qd_shape_numel(&is[0]), nw = qd_shape_numel(&is[1]), ny = qd_shape_numel(&os);
    float *x = malloc(sizeof(float) * nx), *w = malloc(sizeof(float) * nw), *bias = malloc(sizeof(float) * O);
    float *dy = malloc(sizeof(float) * ny);
    fill(x, nx, -1, 1); fill(w, nw, -1, 1); fill(bias, O, -1, 1); fill(dy, ny, -1, 1);
    r->y = malloc(sizeof(float) * ny);
    r->dx = calloc((size_t)nx, sizeof(float));
    r->dw = calloc((size_t)nw, sizeof(float));
    const float *in[3] = {x, w, bias};
    float *din[3] = {r->dx, r->dw, NULL};
    MUST(b->ops->node_forward(b, &n, is, in, &os, r->y));
    MUST(b->ops->node_backward(b, &n, is, in, &os, r->y, dy, din));
    free(x); free(w); free(bias); free(dy);
}

static int same(const float *a, const float *b, int64_t n) { return memcmp(a, b, sizeof(float) * (size_t)n) == 0; }

static void check_conv(int N, int C, int HW, int O, int k, int group, int stride, const char *label) {
    result r[3];
    int th[3] = {1, 2, 3};
    for (int t = 0; t < 3; t++) {
        qd_backend *b = make_cpu(th[t]);
        conv_case(b, N, C, HW, O, k, group, stride, &r[t], 1);
        qd_backend_destroy(b);
    }
    int OH = (HW + 2 * (k / 2) - k) / stride + 1;
    int64_t ny = (int64_t)N * O * OH * OH, nx = (int64_t)N * C * HW * HW, nw = (int64_t)O * (C / group) * k * k;
    for (int t = 1; t < 3; t++) {
        CHECK(same(r[0].y, r[t].y, ny), "%s: forward differs between 1 and %d threads", label, th[t]);
        CHECK(same(r[0].dx, r[t].dx, nx), "%s: input gradient differs between 1 and %d threads", label, th[t]);
        CHECK(same(r[0].dw, r[t].dw, nw), "%s: weight gradient differs between 1 and %d threads", label, th[t]);
    }
    for (int t = 0; t < 3; t++) { free(r[t].y); free(r[t].dx); free(r[t].dw); }
    printf("  %s: bit-identical for 1/2/3 threads\n", label);
}

static void recon_case(qd_backend *b, result *r) {
    g_rng = 0xabcdefull;
    const int64_t n = 200000;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), *dy = malloc(sizeof(float) * n);
    float *dx = calloc((size_t)n, sizeof(float)), *t = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * n);
    uint8_t *reg = malloc((size_t)n);
    fill(x, n, -1, 2); fill(t, n, -1, 2);
    qd_fq_desc d;
    memset(&d, 0, sizeof d);
    d.zero_point = 2; d.qmin = 0; d.qmax = 15; d.keep_prob = 0.5f; d.grad_scale = 1; d.guard_scale = 1;
    d.key.seed_lo = 3; d.key.tensor = 1;
    float s = 0.12f;
    int32_t iter = 4;
    MUST(b->ops->fq_forward(b, &d, &s, &iter, n, x, y, reg));
    r->loss = 0.0f;
    MUST(b->ops->mse_loss(b, 8, 25, 1000, y, t, g, &r->loss));
    r->ds = 0.0f;
    MUST(b->ops->fq_backward(b, &d, &s, n, x, reg, g, dx, &r->ds));
    /* AdaRound step with the regulariser on */
    enum { C = 16, PC = 9 * 16 * 4 };
    int64_t ne = (int64_t)C * PC;
    float *w = malloc(sizeof(float) * ne), *dW = malloc(sizeof(float) * ne), *m = calloc((size_t)ne, 4), *v = calloc((size_t)ne, 4);
    float sc[C], z[C];
    for (int c = 0; c < C; c++) { sc[c] = 0.05f + 0.01f * (float)c; z[c] = 1; }
    fill(w, ne, -0.3f, 0.3f); fill(dW, ne, -1, 1);
    r->V = malloc(sizeof(float) * ne);
    qd_adaround_desc ad = {ne, PC, C, 0, 15};
    qd_sched_desc sd = {100, 0.2f, 20, 2, 0.01f, 1e-3f, 4e-5f};
    MUST(b->ops->adaround_init(b, &ad, w, sc, z, r->V));
    int32_t c30 = 30;
    r->reg = 0.0f;
    MUST(b->ops->adaround_step(b, &ad, &sd, &c30, w, sc, z, dW, r->V, m, v, &r->reg));
    r->y = y; r->dx = dx;
    free(x); free(dy); free(t); free(g); free(reg); free(w); free(dW); free(m); free(v);
}

static void check_recon(void) {
    result r[3];
    int th[3] = {1, 2, 3};
    for (int t = 0; t < 3; t++) {
        qd_backend *b = make_cpu(th[t]);
        recon_case(b, &r[t]);
        qd_backend_destroy(b);
    }
    for (int t = 1; t < 3; t++) {
        CHECK(same(r[0].y, r[t].y, 200000) && same(r[0].dx, r[t].dx, 200000), "fq forward/backward differ (%d threads)", th[t]);
        CHECK(r[0].ds == r[t].ds, "LSQ ds differs: %.9g vs %.9g (%d threads)", r[0].ds, r[t].ds, th[t]);
        CHECK(r[0].loss == r[t].loss, "MSE loss differs: %.9g vs %.9g (%d threads)", r[0].loss, r[t].loss, th[t]);
        CHECK(r[0].reg == r[t].reg, "reg loss differs (%d threads)", th[t]);
        CHECK(same(r[0].V, r[t].V, 16 * 9 * 16 * 4), "AdaRound V differs (%d threads)", th[t]);
    }
    CHECK(r[0].ds != 0.0f && r[0].loss > 0.0f && r[0].reg > 0.0f, "reductions must be non-trivial");
    for (int t = 0; t < 3; t++) { free(r[t].y); free(r[t].dx); free(r[t].V); }
    printf("  reconstruction kernels: bit-identical for 1/2/3 threads\n");
}

static void bench_conv(int threads) {
    qd_backend *b = make_cpu(threads);
    const int N = 32, C = 16, HW = 32, O = 16;
    qd_node n = make_node(QD_OP_CONV, 2);
    n.a.kernel[0] = n.a.kernel[1] = 3;
    n.a.pads[0] = n.a.pads[1] = n.a.pads[2] = n.a.pads[3] = 1;
    qd_shape is[2] = {shp(4, N, C, HW, HW), shp(4, O, C, 3, 3)};
    qd_shape os = shp(4, N, O, HW, HW);
    int64_t nx = qd_shape_numel(&is[0]), ny = qd_shape_numel(&os);
    float *x = malloc(4 * nx), *w = malloc(4 * 16 * 16 * 9), *y = malloc(4 * ny), *dy = malloc(4 * ny);
    float *dx = calloc((size_t)nx, 4), *dw = calloc(16 * 16 * 9, 4);
    fill(x, nx, -1, 1); fill(w, 16 * 16 * 9, -1, 1); fill(dy, ny, -1, 1);
    const float *in[2] = {x, w};
    float *din[2] = {dx, dw};
    double flops = 2.0 * N * O * HW * HW * C * 9;
    MUST(b->ops->node_forward(b, &n, is, in, &os, y)); /* warm-up */
    int reps = 10;
    double t0 = now();
    for (int i = 0; i < reps; i++) MUST(b->ops->node_forward(b, &n, is, in, &os, y));
    double tf = (now() - t0) / reps;
    MUST(b->ops->node_backward(b, &n, is, in, &os, y, dy, din));
    t0 = now();
    for (int i = 0; i < reps; i++) MUST(b->ops->node_backward(b, &n, is, in, &os, y, dy, din));
    double tb = (now() - t0) / reps;
    printf("  conv 32x16x32x32, 16->16 3x3 on %d thread(s): forward %.2f ms (%.1f GFLOP/s), backward data+filter %.2f ms "
           "(%.1f GFLOP/s)\n", threads, tf * 1e3, flops / tf * 1e-9, tb * 1e3, 2 * flops / tb * 1e-9);
    free(x); free(w); free(y); free(dy); free(dx); free(dw);
    qd_backend_destroy(b);
}

/* QDrop input mixing (§7.1) element by element against its definition: out[k][e] = quantized
 * where qd_keep_quant(key, iter, k * sample_numel + e) else FP, for a sample size that makes the
 * backend's 512-element tiles straddle samples; identical for 1/2/3 threads. */
static void check_gather_mix(void) {
    const int32_t ncal = 7, batch = 5;
    const int64_t sn = 1000;
    float *q = malloc(sizeof(float) * ncal * sn), *f = malloc(sizeof(float) * ncal * sn);
    for (int64_t i = 0; i < ncal * sn; i++) { q[i] = (float)i; f[i] = -(float)i - 1.0f; }
    int32_t idx[5] = {3, 0, 6, 3, 1}, iter = 17;
    qd_rng_key key = {1005u, 0u, 4u, 2u};
    float *ref = malloc(sizeof(float) * batch * sn);
    int64_t kept = 0;
    for (int k = 0; k < batch; k++)
        for (int64_t e = 0; e < sn; e++) {
            int keep = qd_keep_quant(key, (uint32_t)iter, (uint64_t)(k * sn + e), 0.5f);
            kept += keep;
            ref[k * sn + e] = keep ? q[idx[k] * sn + e] : f[idx[k] * sn + e];
        }
    int th[3] = {1, 2, 3};
    for (int t = 0; t < 3; t++) {
        qd_backend *b = make_cpu(th[t]);
        float *out = malloc(sizeof(float) * batch * sn);
        MUST(b->ops->gather_mix(b, q, f, idx, batch, sn, key, 0.5f, &iter, out));
        CHECK(same(out, ref, batch * sn), "gather_mix differs from the per-element definition (%d threads)", th[t]);
        free(out);
        qd_backend_destroy(b);
    }
    CHECK(kept > batch * sn * 45 / 100 && kept < batch * sn * 55 / 100, "keep fraction %lld / %lld", (long long)kept,
          (long long)(batch * sn));
    free(q); free(f); free(ref);
    printf("  gather_mix: matches qd_keep_quant element by element for 1/2/3 threads\n");
}

/* keep_mask (the digest's view of the masks, backend.h) bit for bit against qd_keep_quant, for
 * lengths that end mid-word and mid-tile, keep 1.0 (all set) and 1/2/3 threads; and against the
 * masks the kernels apply: gather_mix with quantized = 1, FP = 0 returns the keep bits, and
 * fq_forward's region codes are QD_FQ_DROPPED exactly where the bit is clear (recon_unit.c's
 * digest reads them so). */
static void check_keep_mask(void) {
    qd_rng_key key = {1005u, 0u, 6u, QD_RNG_T_INPUT};
    int32_t iter = 2;
    const int64_t lens[4] = {1, 31, 16384 * 3 + 77, 200003};
    const float keeps[3] = {0.5f, 0.25f, 1.0f};
    int th[3] = {1, 2, 3};
    for (int t = 0; t < 3; t++) {
        qd_backend *b = make_cpu(th[t]);
        CHECK(b->ops->keep_mask != NULL, "cpu backend has no keep_mask op");
        if (!b->ops->keep_mask) { qd_backend_destroy(b); return; }
        for (int li = 0; li < 4; li++)
            for (int ki = 0; ki < 3; ki++) {
                int64_t n = lens[li], nw = (n + 31) / 32;
                uint32_t *bits = malloc(sizeof(uint32_t) * (size_t)(nw + 1));
                bits[nw] = 0xA5A5A5A5u; /* guard: nothing past the last word */
                MUST(b->ops->keep_mask(b, key, &iter, n, keeps[ki], bits));
                int64_t bad = 0, set = 0;
                for (int64_t e = 0; e < 32 * nw; e++) {
                    int want = e < n && qd_keep_quant(key, (uint32_t)iter, (uint64_t)e, keeps[ki]);
                    int got = (int)((bits[e >> 5] >> (e & 31)) & 1u);
                    bad += want != got;
                    set += got;
                }
                CHECK(bad == 0 && bits[nw] == 0xA5A5A5A5u, "keep_mask n=%lld keep=%.2f (%d threads): %lld bits differ",
                      (long long)n, keeps[ki], th[t], (long long)bad);
                if (keeps[ki] >= 1.0f) CHECK(set == n, "keep_mask keep=1: %lld of %lld bits set", (long long)set, (long long)n);
                free(bits);
            }
        qd_backend_destroy(b);
    }
    /* the masks the kernels apply */
    qd_backend *b = make_cpu(2);
    const int32_t batch = 3, ncal = 4;
    const int64_t sn = 1111, n = batch * sn, nw = (n + 31) / 32;
    float *q = malloc(sizeof(float) * ncal * sn), *f = calloc((size_t)(ncal * sn), sizeof(float));
    for (int64_t i = 0; i < ncal * sn; i++) q[i] = 1.0f;
    int32_t idx[3] = {2, 0, 3};
    float *out = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), *x = malloc(sizeof(float) * n);
    uint8_t *reg = malloc((size_t)n);
    uint32_t *bits = malloc(sizeof(uint32_t) * (size_t)nw);
    fill(x, n, -2, 2);
    MUST(b->ops->keep_mask(b, key, &iter, n, 0.5f, bits));
    MUST(b->ops->gather_mix(b, q, f, idx, batch, sn, key, 0.5f, &iter, out));
    int64_t bad_mix = 0, bad_fq = 0;
    for (int64_t e = 0; e < n; e++) bad_mix += (out[e] == 1.0f) != (int)((bits[e >> 5] >> (e & 31)) & 1u);
    qd_fq_desc d;
    memset(&d, 0, sizeof d);
    d.qmin = 0.0f; d.qmax = 15.0f; d.keep_prob = 0.5f; d.key = key;
    float s = 0.1f;
    MUST(b->ops->fq_forward(b, &d, &s, &iter, n, x, y, reg));
    for (int64_t e = 0; e < n; e++) bad_fq += (reg[e] != QD_FQ_DROPPED) != (int)((bits[e >> 5] >> (e & 31)) & 1u);
    CHECK(bad_mix == 0, "gather_mix keeps quantized values where keep_mask says otherwise (%lld elements)", (long long)bad_mix);
    CHECK(bad_fq == 0, "fq_forward's dropped region codes differ from keep_mask (%lld elements)", (long long)bad_fq);
    free(q); free(f); free(out); free(y); free(x); free(reg); free(bits);
    qd_backend_destroy(b);
    printf("  keep_mask: equals qd_keep_quant bit for bit (1/2/3 threads) and the masks gather_mix / fq_forward apply\n");
}

/* The Philox tile (hand-written AVX-512 where the CPU has it) word for word against
 * qd_rng_u32, including groups whose block counter carries into its high word. */
static void check_rng_words(void) {
    qd_rng_key key = {0xdeadbeefu, 7u, 3u, 5u};
    int64_t starts[3] = {0, 4 * 1000003, 4 * ((int64_t)0xFFFFFFFF - 20)};
    uint32_t buf[700];
    int bad = 0;
    for (int s = 0; s < 3; s++)
        for (int n = 1; n <= 600; n += 37) {
            qd_cpu_rng_words(key, 41u, starts[s], n, buf);
            for (int i = 0; i < n; i++) bad += buf[i] != qd_rng_u32(key, 41u, (uint64_t)(starts[s] + i));
        }
    CHECK(bad == 0, "Philox tile differs from qd_rng_u32 in %d words", bad);
    printf("  Philox tile: word for word equal to qd_rng_u32 (incl. a counter carry)\n");
}

int main(void) {
    check_conv(5, 8, 12, 6, 3, 1, 1, "conv 3x3");
    check_conv(19, 16, 16, 16, 3, 1, 1, "conv 3x3, 3 batch chunks (short last)");
    check_conv(4, 6, 11, 6, 3, 6, 2, "conv depthwise 3x3 s2");
    check_conv(9, 8, 7, 4, 1, 1, 1, "conv 1x1 pointwise");
    check_conv(3, 8, 9, 8, 3, 2, 1, "conv grouped g=2");
    check_recon();
    check_gather_mix();
    check_keep_mask();
    check_rng_words();
    if (!getenv("QD_TEST_NO_BENCH")) { bench_conv(1); bench_conv(2); }
    return qd_test_summary("test_cpu_threads");
}
