/* One BERT encoder layer: forward output, input gradient and every parameter gradient against a
 * PyTorch float64 autograd golden (tests/fixtures/bert/layer_golden.bin), a finite-difference
 * check of the backward pass, and the activation-hook positions (§8.8). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "qdrop/bert.h"

#include "unit/bert_layer_params.h"

/* max |a-b| / max(max |b|, 1e-2): the floor covers d(bk), which is exactly 0 in theory
 * (softmax ignores a per-row constant) and float noise in both implementations. */
static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 1e-2;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return num / den;
}

static int hook_calls[QD_BERT_SITE_COUNT];
static size_t hook_n[QD_BERT_SITE_COUNT];
static void count_hook(void *ctx, int layer, qd_bert_site site, float *x, size_t n) {
    (void)ctx; (void)x; (void)layer;
    hook_calls[site]++;
    hook_n[site] = n;
}
/* A hook that zeroes the GELU output must turn the layer into LN(h1 + b2). */
static void zero_gelu(void *ctx, int layer, qd_bert_site site, float *x, size_t n) {
    (void)ctx; (void)layer;
    if (site == QD_BERT_SITE_GELU) memset(x, 0, n * sizeof *x);
}

static double loss(const qd_bert_config *cfg, const qd_bert_layer *L, const float *x, const int *mask, int B, int S,
                   const float *dy, float *y) {
    if (qd_bert_layer_forward(cfg, L, 0, x, mask, B, S, y, NULL, NULL, NULL) != QD_OK) return NAN;
    double s = 0;
    for (int i = 0; i < B * S * cfg->hidden; i++) s += (double)y[i] * dy[i];
    return s;
}

int main(void) {
    FILE *f = fopen("tests/fixtures/bert/layer_golden.bin", "rb");
    if (!f) { printf("FAIL: missing tests/fixtures/bert/layer_golden.bin\n"); return 1; }
    char magic[4];
    int hdr[6];
    if (fread(magic, 1, 4, f) != 4 || memcmp(magic, "QDBL", 4) != 0 || fread(hdr, 4, 6, f) != 6 || hdr[0] != 1) {
        printf("FAIL: bad golden header (HINT: re-run tools/make_bert_fixtures.py layer)\n");
        return 1;
    }
    const int B = hdr[1], S = hdr[2], H = hdr[3], NH = hdr[4], FF = hdr[5], T = B * S;
    qd_bert_config cfg = {.hidden = H, .layers = 1, .heads = NH, .intermediate = FF, .max_pos = S, .type_vocab = 2,
                          .vocab = 10, .ln_eps = 1e-12f};
    size_t sz[NP] = {(size_t)H * H, H, (size_t)H * H, H, (size_t)H * H, H, (size_t)H * H, H, H, H,
                     (size_t)FF * H, FF, (size_t)H * FF, H, H, H};
    qd_bert_layer L;
    qd_bert_layer_grads G, GW;
    float **lp[NP], *want[NP];
    layer_ptrs(&L, lp);
    int ok = 1;
    for (int i = 0; i < NP; i++) {
        lp[i][0] = malloc(sz[i] * 4);
        ok &= fread(lp[i][0], 4, sz[i], f) == sz[i];
    }
    float *x = malloc((size_t)T * H * 4), *maskf = malloc((size_t)T * 4), *dy = malloc((size_t)T * H * 4),
          *y_want = malloc((size_t)T * H * 4), *dx_want = malloc((size_t)T * H * 4);
    ok &= fread(x, 4, (size_t)T * H, f) == (size_t)T * H && fread(maskf, 4, T, f) == (size_t)T &&
          fread(dy, 4, (size_t)T * H, f) == (size_t)T * H && fread(y_want, 4, (size_t)T * H, f) == (size_t)T * H &&
          fread(dx_want, 4, (size_t)T * H, f) == (size_t)T * H;
    for (int i = 0; i < NP; i++) {
        want[i] = malloc(sz[i] * 4);
        ok &= fread(want[i], 4, sz[i], f) == sz[i];
    }
    fclose(f);
    if (!ok) { printf("FAIL: short golden file\n"); return 1; }
    int *mask = malloc((size_t)T * sizeof(int));
    for (int i = 0; i < T; i++) mask[i] = maskf[i] != 0.0f;

    qd_bert_layer_cache c;
    CHECK(qd_bert_cache_alloc(&cfg, B, S, &c) == QD_OK, "cache");
    float *y = malloc((size_t)T * H * 4), *dx = malloc((size_t)T * H * 4);
    memset(hook_calls, 0, sizeof hook_calls);
    CHECK(qd_bert_layer_forward(&cfg, &L, 0, x, mask, B, S, y, &c, count_hook, NULL) == QD_OK, "forward");
    double e = rel_err(y, y_want, (size_t)T * H);
    printf("forward y      rel err %.3g\n", e);
    CHECK(e < 1e-5, "forward output vs PyTorch: %g", e);
    /* sites: Q K V PROBS CTX ATTN_LN GELU OUT_LN once each with the right sizes, EMB_LN never */
    size_t site_n[QD_BERT_SITE_COUNT] = {0, (size_t)T * H, (size_t)T * H, (size_t)T * H, (size_t)B * NH * S * S,
                                         (size_t)T * H, (size_t)T * H, (size_t)T * FF, (size_t)T * H};
    for (int s = 1; s < QD_BERT_SITE_COUNT; s++)
        CHECK(hook_calls[s] == 1 && hook_n[s] == site_n[s], "site %d: %d calls, n %zu", s, hook_calls[s], hook_n[s]);
    CHECK(hook_calls[0] == 0, "EMB_LN called in a layer");

    float **gp[NP];
    grad_ptrs(&G, gp);
    for (int i = 0; i < NP; i++) gp[i][0] = calloc(sz[i], 4);
    CHECK(qd_bert_layer_backward(&cfg, &L, &c, mask, dy, dx, &G) == QD_OK, "backward");
    e = rel_err(dx, dx_want, (size_t)T * H);
    printf("backward dx    rel err %.3g\n", e);
    CHECK(e < 1e-4, "dx vs PyTorch: %g", e);
    for (int i = 0; i < NP; i++) {
        e = rel_err(gp[i][0], want[i], sz[i]);
        printf("backward d%-6s rel err %.3g\n", k_names[i], e);
        CHECK(e < 1e-4, "d%s vs PyTorch: %g", k_names[i], e);
    }
    /* gradients accumulate: a second backward doubles them */
    float **gw[NP];
    grad_ptrs(&GW, gw);
    for (int i = 0; i < NP; i++) { gw[i][0] = malloc(sz[i] * 4); memcpy(gw[i][0], gp[i][0], sz[i] * 4); }
    CHECK(qd_bert_layer_backward(&cfg, &L, &c, mask, dy, dx, &G) == QD_OK, "backward 2");
    for (int i = 0; i < NP; i++) {
        double m = 0;
        for (size_t k = 0; k < sz[i]; k++) m = fmax(m, fabs(gp[i][0][k] - 2 * gw[i][0][k]));
        CHECK(m <= 1e-5 * (1 + fabs(gw[i][0][0])) * 4, "d%s does not accumulate (%g)", k_names[i], m);
    }

    /* finite differences of L = sum(y * dy) (float32 central differences, step 1e-2) on a few
     * entries of every parameter and of x; gradient from the first backward (gw). */
    double worst = 0;
    for (int i = 0; i < NP; i++) {
        for (int t = 0; t < 3; t++) {
            size_t k = (size_t)(t * 7919 + i * 31) % sz[i];
            float old = lp[i][0][k], h = 1e-2f;
            lp[i][0][k] = old + h;
            double lpv = loss(&cfg, &L, x, mask, B, S, dy, y);
            lp[i][0][k] = old - h;
            double lmv = loss(&cfg, &L, x, mask, B, S, dy, y);
            lp[i][0][k] = old;
            double fd = (lpv - lmv) / (2 * h), an = gw[i][0][k];
            double err = fabs(fd - an) / (fabs(an) + 0.05);
            worst = fmax(worst, err);
            CHECK(err < 2e-2, "finite difference d%s[%zu]: fd %g analytic %g", k_names[i], k, fd, an);
        }
    }
    for (int t = 0; t < 8; t++) {
        size_t k = (size_t)(t * 613) % ((size_t)T * H);
        float old = x[k], h = 1e-2f;
        x[k] = old + h;
        double lpv = loss(&cfg, &L, x, mask, B, S, dy, y);
        x[k] = old - h;
        double lmv = loss(&cfg, &L, x, mask, B, S, dy, y);
        x[k] = old;
        double fd = (lpv - lmv) / (2 * h), an = dx_want[k];
        double err = fabs(fd - an) / (fabs(an) + 0.05);
        worst = fmax(worst, err);
        CHECK(err < 2e-2, "finite difference dx[%zu]: fd %g analytic %g", k, fd, an);
    }
    printf("finite differences: worst relative error %.3g\n", worst);

    /* padded tokens of sequence 1 must not change the unpadded outputs */
    float *x2 = malloc((size_t)T * H * 4), *y2 = malloc((size_t)T * H * 4);
    memcpy(x2, x, (size_t)T * H * 4);
    for (int s = 0; s < S; s++)
        if (!mask[S + s])
            for (int i = 0; i < H; i++) x2[((size_t)S + s) * H + i] += 3.0f;
    CHECK(qd_bert_layer_forward(&cfg, &L, 0, x, mask, B, S, y, NULL, NULL, NULL) == QD_OK, "fwd");
    CHECK(qd_bert_layer_forward(&cfg, &L, 0, x2, mask, B, S, y2, NULL, NULL, NULL) == QD_OK, "fwd2");
    double md = 0;
    for (int s = 0; s < S; s++)
        if (mask[S + s])
            for (int i = 0; i < H; i++) md = fmax(md, fabs(y[((size_t)S + s) * H + i] - y2[((size_t)S + s) * H + i]));
    CHECK(md == 0.0, "padding leaks into unpadded outputs: %g", md);
    /* hook that zeroes the GELU output: y = LN2(h1 + b2) */
    CHECK(qd_bert_layer_forward(&cfg, &L, 0, x, mask, B, S, y, &c, zero_gelu, NULL) == QD_OK, "fwd hook");
    {
        double mx = 0;
        for (int t = 0; t < T; t++) {
            double m = 0, v = 0;
            float r[512];
            for (int i = 0; i < H; i++) { r[i] = c.h1[(size_t)t * H + i] + L.b2[i]; m += r[i]; }
            m /= H;
            for (int i = 0; i < H; i++) v += (r[i] - m) * (r[i] - m);
            v /= H;
            for (int i = 0; i < H; i++) {
                double ref = (r[i] - m) / sqrt(v + 1e-12) * L.ln2_g[i] + L.ln2_b[i];
                mx = fmax(mx, fabs(ref - y[(size_t)t * H + i]));
            }
        }
        CHECK(mx < 1e-4, "zeroed GELU hook: %g", mx);
    }
    qd_bert_cache_free(&c);
    for (int i = 0; i < NP; i++) { free(lp[i][0]); free(gp[i][0]); free(gw[i][0]); free(want[i]); }
    free(x); free(maskf); free(dy); free(y_want); free(dx_want); free(mask); free(y); free(dx); free(x2); free(y2);
    return qd_test_summary("test_bert_layer");
}
