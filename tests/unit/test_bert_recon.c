/* QDrop reconstruction of a BERT encoder layer (src/bert/bert_recon.c) on a tiny random BERT:
 *  (a) 200 iterations of QDrop reconstruction lower the layer's full-quantization loss on its
 *      calibration data below nearest rounding with the initial ranges;
 *  (b) the quantizer backward (STE dx, LSQ ds at all 8 sites, with drop) matches central finite
 *      differences of the layer loss with the rounding held fixed;
 *  (c) two runs give bit-identical hard weights and scales. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "qdrop/bert.h"

static qd_bert_config tiny_cfg(void) {
    qd_bert_config c;
    memset(&c, 0, sizeof c);
    c.hidden = 32; c.layers = 2; c.heads = 2; c.intermediate = 64; c.max_pos = 32; c.type_vocab = 2; c.vocab = 50;
    c.ln_eps = 1e-12f;
    return c;
}

static uint64_t lcg = 12345;
static uint32_t rnd(void) { lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL; return (uint32_t)(lcg >> 33); }
static float frand(void) { return (float)(rnd() % 2000001) / 1e6f - 1.0f; }

/* n sentences of 3..12 tokens, ids in [1, vocab) */
static void make_calib(int n, int vocab, qd_bert_calib *c) {
    memset(c, 0, sizeof *c);
    c->n = n;
    c->len = malloc(sizeof(int) * (size_t)n);
    c->off = malloc(sizeof(int64_t) * (size_t)n);
    c->ids = malloc(sizeof(int) * (size_t)n * 12);
    int64_t pos = 0;
    for (int i = 0; i < n; i++) {
        c->len[i] = 3 + (int)(rnd() % 10);
        c->off[i] = pos;
        for (int k = 0; k < c->len[i]; k++) c->ids[pos + k] = 1 + (int)(rnd() % (uint32_t)(vocab - 1));
        pos += c->len[i];
    }
    c->ntok = pos;
}

static qd_bert_recon_opts opts(int iters, float keep) {
    qd_bert_recon_opts o;
    memset(&o, 0, sizeof o);
    o.iters = iters; o.batch_size = 8; o.log_every = 10;
    o.scale_lr = 4e-5f; o.warm_up = 0.2f; o.lambda = 0.01f; o.b_start = 20.0f; o.b_end = 2.0f;
    o.keep_prob = keep; o.input_keep_prob = keep;
    o.learn_scales = 1; o.lsq_grad_scale = 1; o.seed = 1005;
    return o;
}

typedef struct {
    qd_bert_model *fp, *qm;
    qd_bert_quant *q;
    float *fpin, *qin, *fpout;
} setup;

static int make_setup(const qd_bert_calib *cal, int wb, int ab, setup *s) {
    qd_bert_config cfg = tiny_cfg();
    memset(s, 0, sizeof *s);
    if (qd_bert_random(&cfg, 7, &s->fp) != QD_OK || qd_bert_random(&cfg, 7, &s->qm) != QD_OK) return 0;
    /* weights x8 (std 0.16): with N(0, 0.02) the tiny layer is nearly the identity plus
     * LayerNorm and weight rounding would hardly matter */
    for (int l = 0; l < cfg.layers; l++)
        for (int i = 0; i < QD_BERT_NLINEAR; i++) {
            int r, c;
            qd_bert_linear_shape(&cfg, i, &r, &c);
            float *a = qd_bert_linear_weight(&s->fp->layer[l], i), *b = qd_bert_linear_weight(&s->qm->layer[l], i);
            for (int k = 0; k < r * c; k++) { a[k] *= 8.0f; b[k] *= 8.0f; }
        }
    if (qd_bert_quant_create(s->fp, wb, ab, 0, 1, &s->q) != QD_OK) return 0;
    qd_bert_quant_weights_nearest(s->q, s->fp, s->qm);
    if (qd_bert_quant_act_ranges(s->q, s->fp, cal, cal->n, 4096, 1) != QD_OK) return 0;
    size_t bytes = sizeof(float) * (size_t)cal->ntok * cfg.hidden;
    s->fpin = malloc(bytes); s->qin = malloc(bytes); s->fpout = malloc(bytes);
    if (qd_bert_embed_calib(s->fp, cal, s->fpin, NULL, NULL) != QD_OK) return 0;
    if (qd_bert_embed_calib(s->qm, cal, s->qin, qd_bert_quant_hook, s->q) != QD_OK) return 0;
    if (qd_bert_layer_run_calib(s->fp, 0, cal, s->fpin, s->fpout, NULL, NULL) != QD_OK) return 0;
    return 1;
}
static void free_setup(setup *s) {
    qd_bert_free(s->fp); qd_bert_free(s->qm); qd_bert_quant_free(s->q);
    free(s->fpin); free(s->qin); free(s->fpout);
}

/* (a) */
static void test_recon_lowers_loss(void) {
    qd_bert_calib cal;
    make_calib(64, 50, &cal);
    setup s;
    CHECK(make_setup(&cal, 3, 8, &s), "setup: %s", qd_error_message());
    double nearest = 0.0;
    CHECK(qd_bert_layer_calib_loss(s.qm, s.q, 0, &cal, s.qin, s.fpout, &nearest) == QD_OK, "nearest loss");
    qd_bert_recon_opts o = opts(200, 0.5f);
    qd_bert_layer_report rep;
    CHECK(qd_bert_recon_layer(s.fp, s.qm, s.q, 0, &cal, s.qin, s.fpin, s.fpout, &o, &rep) == QD_OK, "recon: %s",
          qd_error_message());
    double after = 0.0;
    CHECK(qd_bert_layer_calib_loss(s.qm, s.q, 0, &cal, s.qin, s.fpout, &after) == QD_OK, "loss after");
    printf("(a) W3A8 layer 0 calibration loss: nearest %.6g -> QDrop 200 it %.6g (report %.6g -> %.6g, train %.6g -> %.6g)\n",
           nearest, after, rep.eval_before, rep.eval_after, rep.loss_start, rep.loss_end);
    CHECK(rep.iters == 200, "iterations %d", rep.iters);
    CHECK(fabs(rep.eval_before - nearest) <= 1e-9 * fabs(nearest), "report before %g vs %g", rep.eval_before, nearest);
    CHECK(fabs(rep.eval_after - after) <= 1e-9 * fabs(after), "report after %g vs %g", rep.eval_after, after);
    CHECK(after < 0.9 * nearest, "reconstruction did not lower the loss: %g vs nearest %g", after, nearest);
    /* hard weights lie on the grid: every weight of the layer is (code - z) * s */
    int rows, cols, off_grid = 0;
    qd_bert_linear_shape(&s.fp->cfg, 4, &rows, &cols);
    const float *w = qd_bert_linear_weight(&s.qm->layer[0], 4);
    const float *sc = s.q->ws + s.q->w_off[4], *zp = s.q->wz + s.q->w_off[4];
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            float code = w[r * cols + c] / sc[r] + zp[r];
            if (fabsf(code - rintf(code)) > 1e-3f || code < -1e-3f || code > 7.001f) off_grid++;
        }
    CHECK(off_grid == 0, "%d hard weights off the 3-bit grid", off_grid);
    free_setup(&s);
    qd_bert_calib_free(&cal);
}

/* (b) */
static double frozen_loss(const qd_bert_config *cfg, const qd_bert_layer *L, const float *x, const int *mask, int B, int S,
                          const float *wl, qd_bert_train_ctx *tc, float *y) {
    if (qd_bert_layer_forward(cfg, L, 0, x, mask, B, S, y, NULL, qd_bert_train_hook, tc) != QD_OK) return NAN;
    double l = 0;
    for (int i = 0; i < B * S * cfg->hidden; i++) l += (double)y[i] * wl[i];
    return l;
}

static void test_quantizer_backward_fd(void) {
    qd_bert_config cfg = tiny_cfg();
    qd_bert_model *m = NULL;
    CHECK(qd_bert_random(&cfg, 3, &m) == QD_OK, "random");
    if (!m) return;
    /* bigger weights than N(0, 0.02) so the attention is not uniform */
    for (int i = 0; i < cfg.hidden * cfg.hidden; i++) { m->layer[0].wq[i] *= 10; m->layer[0].wk[i] *= 10; }
    const int B = 2, S = 6, H = cfg.hidden, T = B * S;
    int mask[12] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    float *x = malloc(sizeof(float) * T * H), *y = malloc(sizeof(float) * T * H), *wl = malloc(sizeof(float) * T * H),
          *dx = malloc(sizeof(float) * T * H);
    for (int i = 0; i < T * H; i++) { x[i] = frand(); wl[i] = mask[i / H] ? frand() : 0.0f; }
    qd_bert_train_ctx tc;
    memset(&tc, 0, sizeof tc);
    tc.layer = 0; tc.keep_prob = 0.5f; tc.key.seed_lo = 99; tc.iteration = 3; tc.guard = 1;
    /* ranges from the layer's own FP values: min/max shrunk by 0.8 so some elements clamp */
    static float lo[QD_BERT_LAYER_SITES], hi[QD_BERT_LAYER_SITES];
    for (int j = 0; j < QD_BERT_LAYER_SITES; j++) { lo[j] = 1e30f; hi[j] = -1e30f; }
    qd_bert_layer_cache c;
    CHECK(qd_bert_cache_alloc(&cfg, B, S, &c) == QD_OK, "cache");
    CHECK(qd_bert_layer_forward(&cfg, &m->layer[0], 0, x, mask, B, S, y, &c, NULL, NULL) == QD_OK, "fp forward");
    const float *vals[QD_BERT_LAYER_SITES] = {c.q, c.k, c.v, c.probs, c.ctx, c.h1, c.inter, y};
    size_t ns[QD_BERT_LAYER_SITES] = {(size_t)T * H, (size_t)T * H, (size_t)T * H, (size_t)B * 2 * S * S, (size_t)T * H,
                                      (size_t)T * H, (size_t)T * cfg.intermediate, (size_t)T * H};
    for (int j = 0; j < QD_BERT_LAYER_SITES; j++) {
        for (size_t i = 0; i < ns[j]; i++) { lo[j] = fminf(lo[j], vals[j][i]); hi[j] = fmaxf(hi[j], vals[j][i]); }
        float l0 = fminf(lo[j] * 0.8f, 0.0f), h0 = fmaxf(hi[j] * 0.8f, 0.0f);
        tc.site[j].qmin = 0; tc.site[j].qmax = 15;
        tc.site[j].scale = (h0 - l0) / 15.0f;
        tc.site[j].zp = rintf(-l0 / tc.site[j].scale);
        tc.site[j].active = 1;
    }
    /* analytic: forward with drop, backward with the quantizer hooks */
    CHECK(qd_bert_layer_forward(&cfg, &m->layer[0], 0, x, mask, B, S, y, &c, qd_bert_train_hook, &tc) == QD_OK, "q forward");
    int ndrop = 0, nclamp = 0;
    for (int j = 0; j < QD_BERT_LAYER_SITES; j++)
        for (size_t i = 0; i < tc.site[j].n; i++) { ndrop += tc.site[j].region[i] == 3; nclamp += tc.site[j].region[i] == 1 || tc.site[j].region[i] == 2; }
    CHECK(ndrop > 100 && nclamp > 10, "drop/clamp not exercised: %d dropped, %d clamped", ndrop, nclamp);
    CHECK(qd_bert_layer_backward_ex(&cfg, &m->layer[0], 0, &c, mask, wl, dx, NULL, qd_bert_train_bhook, &tc) == QD_OK, "backward");
    double ds[QD_BERT_LAYER_SITES];
    for (int j = 0; j < QD_BERT_LAYER_SITES; j++) ds[j] = tc.site[j].ds;
    /* numeric, rounding held fixed */
    tc.freeze = 1;
    /* Central differences with Richardson extrapolation (steps 2% and 4% of s): the layer runs
     * in float32, so the loss carries ~1e-6 relative noise; errors are measured against
     * max(|fd|, 1e-3 * the largest gradient) for the same reason. */
    double worst_s = 0.0, gmax = 0.0;
    for (int j = 0; j < QD_BERT_LAYER_SITES; j++) gmax = fmax(gmax, fabs(ds[j]));
    for (int j = 0; j < QD_BERT_LAYER_SITES; j++) {
        float s0 = tc.site[j].scale;
        double fdh[2];
        for (int k = 0; k < 2; k++) {
            float h = s0 * (k ? 4e-2f : 2e-2f);
            tc.site[j].scale = s0 + h;
            double lp = frozen_loss(&cfg, &m->layer[0], x, mask, B, S, wl, &tc, y);
            tc.site[j].scale = s0 - h;
            double lm = frozen_loss(&cfg, &m->layer[0], x, mask, B, S, wl, &tc, y);
            fdh[k] = (lp - lm) / (2.0 * (double)h);
        }
        tc.site[j].scale = s0;
        double fd = (4.0 * fdh[0] - fdh[1]) / 3.0;
        double err = fabs(fd - ds[j]) / fmax(fabs(fd), 1e-3 * gmax);
        printf("(b) site %d: dL/ds analytic %.6g, finite difference %.6g, rel err %.2e\n", j + 1, ds[j], fd, err);
        if (err > worst_s) worst_s = err;
    }
    CHECK(worst_s < 2e-2, "scale gradient vs finite differences: worst rel err %.3g", worst_s);
    /* dx on a few input elements of valid tokens */
    double worst_x = 0.0;
    for (int k = 0; k < 12; k++) {
        int i = (int)(rnd() % (uint32_t)(10 * H));
        float x0 = x[i], h = 1e-2f;
        x[i] = x0 + h;
        double lp = frozen_loss(&cfg, &m->layer[0], x, mask, B, S, wl, &tc, y);
        x[i] = x0 - h;
        double lm = frozen_loss(&cfg, &m->layer[0], x, mask, B, S, wl, &tc, y);
        x[i] = x0;
        double fd = (lp - lm) / (2.0 * h);
        double err = fabs(fd - dx[i]) / fmax(fabs(fd), 1e-2);
        if (err > worst_x) worst_x = err;
    }
    printf("(b) dx vs finite differences (12 elements): worst rel err %.2e\n", worst_x);
    CHECK(worst_x < 2e-2, "dx vs finite differences: worst rel err %.3g", worst_x);
    qd_bert_train_ctx_free(&tc);
    qd_bert_cache_free(&c);
    qd_bert_free(m);
    free(x); free(y); free(wl); free(dx);
}

/* (c) */
static void test_determinism(void) {
    qd_bert_calib cal;
    make_calib(40, 50, &cal);
    float *w[2] = {NULL, NULL};
    float sc[2][QD_BERT_LAYER_SITES];
    size_t n = 0;
    for (int r = 0; r < 2; r++) {
        setup s;
        CHECK(make_setup(&cal, 4, 4, &s), "setup");
        qd_bert_recon_opts o = opts(12, 0.5f);
        qd_bert_layer_report rep;
        CHECK(qd_bert_recon_layer(s.fp, s.qm, s.q, 0, &cal, s.qin, s.fpin, s.fpout, &o, &rep) == QD_OK, "recon");
        size_t tot = 0;
        for (int i = 0; i < QD_BERT_NLINEAR; i++) {
            int rr, cc;
            qd_bert_linear_shape(&s.fp->cfg, i, &rr, &cc);
            tot += (size_t)rr * cc;
        }
        w[r] = malloc(sizeof(float) * tot);
        n = 0;
        for (int i = 0; i < QD_BERT_NLINEAR; i++) {
            int rr, cc;
            qd_bert_linear_shape(&s.fp->cfg, i, &rr, &cc);
            memcpy(w[r] + n, qd_bert_linear_weight(&s.qm->layer[0], i), sizeof(float) * (size_t)rr * cc);
            n += (size_t)rr * cc;
        }
        for (int j = 0; j < QD_BERT_LAYER_SITES; j++) sc[r][j] = s.q->act[j].scale;
        free_setup(&s);
    }
    CHECK(memcmp(w[0], w[1], sizeof(float) * n) == 0, "hard weights differ between two runs");
    CHECK(memcmp(sc[0], sc[1], sizeof sc[0]) == 0, "learned scales differ between two runs");
    printf("(c) two runs: %zu hard weights and %d scales identical\n", n, QD_BERT_LAYER_SITES);
    free(w[0]); free(w[1]);
    qd_bert_calib_free(&cal);
}

int main(void) {
    test_quantizer_backward_fd();
    test_recon_lowers_loss();
    test_determinism();
    return qd_test_summary("test_bert_recon");
}
