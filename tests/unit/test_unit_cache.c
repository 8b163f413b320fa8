/* The unit-input cache object (src/recon/unit_cache.c) and the per-unit parameters
 * (src/recon/recon_stages.c) on ResNet-20 with 12 synthetic calibration inputs:
 *   - incremental caches (the running cut advanced unit by unit) are bit-identical to caches
 *     computed from the inputs through the whole prefix, for quant_in, fp_in and fp_out of every
 *     block unit; the cut is borrowed, not copied;
 *   - a unit whose input is not the cut (a layer inside a block) computes its own caches;
 *   - the FP-only cache of BRECQ's activation stage holds one buffer for both paths;
 *   - qd_unit_params for the weight stage, BRECQ's activation stage and NaN retries. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "qdrop/backend.h"
#include "qdrop/config.h"
#include "qdrop/exec.h"
#include "qdrop/graph.h"
#include "recon/recon.h"
#include "recon/unit_cache.h"

/* bytes of `numel` floats at device pointers a and b equal; the largest difference otherwise */
static int same_cache(qd_backend *b, const float *x, const float *y, size_t numel, double *maxd) {
    float *hx = malloc(sizeof(float) * numel), *hy = malloc(sizeof(float) * numel);
    if (!hx || !hy || b->ops->download(b, hx, x, sizeof(float) * numel) != QD_OK ||
        b->ops->download(b, hy, y, sizeof(float) * numel) != QD_OK) {
        free(hx); free(hy);
        return 0;
    }
    *maxd = 0;
    for (size_t i = 0; i < numel; i++) if (fabs((double)hx[i] - hy[i]) > *maxd) *maxd = fabs((double)hx[i] - hy[i]);
    int same = memcmp(hx, hy, sizeof(float) * numel) == 0;
    free(hx); free(hy);
    return same;
}

int main(void) {
    enum { NCAL = 12 };
    qd_graph *g = NULL;
    MUST(qd_graph_prepare("assets/models/resnet20_cifar10.onnx", &g));
    qd_quant_plan_opts po = {4, 4, 1, 0};
    MUST(qd_graph_place_quantizers(g, &po));
    MUST(qd_init_weight_ranges(g, 1));
    qd_backend *b = NULL;
    qd_backend_options bo = {.threads = 1, .deterministic = 1};
    MUST(qd_backend_create("cpu", &bo, &b));
    qd_exec *ex = NULL;
    MUST(qd_exec_create(g, b, 128, &ex));
    MUST(qd_exec_sync_quant(ex));
    const int64_t numel = 3 * 32 * 32;
    float *x = malloc(sizeof(float) * NCAL * numel);
    uint32_t s = 12345;
    for (int64_t i = 0; i < NCAL * numel; i++) { s = s * 1664525u + 1013904223u; x[i] = (float)(s >> 8) / (float)(1 << 24) * 4.0f - 2.0f; }
    qd_config cfg;
    qd_config_defaults(&cfg);
    cfg.threads = 1;
    qd_recon_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.g = g; ctx.b = b; ctx.exec = ex; ctx.cfg = &cfg;
    ctx.calib_host = x; ctx.ncal = NCAL; ctx.image_numel = numel;
    ctx.cache_progress_off = 1;
    /* activation ranges through the cache allocator, so QUANT-mode caches are meaningful */
    MUST(qd_init_act_ranges(&ctx, QD_EXEC_FP, NULL, NCAL, 0));

    qd_mode_plan mp = qd_mode_plan_for(QD_MODE_QDROP);
    qd_unit_params p = qd_unit_params_recon(&cfg, &mp);
    CHECK(p.upstream_mode == QD_EXEC_QUANT && p.input_keep_prob == cfg.recon.drop_prob && p.input_keep_prob < 1.0f,
          "QDrop: quantized upstream and input mixing with keep %g", (double)p.input_keep_prob);

    qd_unit_spec *units = NULL;
    int n = qd_build_units(g, 0, &units);
    CHECK(n == 11, "ResNet-20 has 11 block units, found %d", n);
    qd_unit_cache inc, ref;
    qd_unit_cache_init(&inc, 1, 0, 0);
    CHECK(inc.incremental == (getenv("QD_NO_INCREMENTAL_CACHE") == NULL), "incremental unless QD_NO_INCREMENTAL_CACHE");
    qd_unit_cache_init(&ref, 0, 0, 0);
    for (int i = 0; i < n; i++) {
        const qd_unit_spec *u = &units[i];
        MUST(qd_unit_cache_seek(&inc, &ctx, u, p.upstream_mode));
        CHECK(inc.cut_value == u->input_value, "unit %d: cut at value %d, unit input %d", i, inc.cut_value, u->input_value);
        MUST(qd_unit_cache_fill(&inc, &ctx, u, &p));
        CHECK(inc.borrowed && inc.qin == inc.cut_q && inc.fpin == inc.cut_fp, "unit %d: caches borrowed from the cut", i);
        MUST(qd_unit_cache_fill(&ref, &ctx, u, &p));
        CHECK(!ref.borrowed && ref.qin && ref.fpin && ref.fpout, "unit %d: own caches from the inputs", i);
        size_t in_n = (size_t)NCAL * (size_t)qd_value_sample_numel(&g->values[u->input_value]);
        size_t out_n = (size_t)NCAL * (size_t)qd_value_sample_numel(&g->values[u->output_value]);
        double d1 = 0, d2 = 0, d3 = 0;
        CHECK(same_cache(b, inc.qin, ref.qin, in_n, &d1), "unit %d: quant_in differs (max %g)", i, d1);
        CHECK(same_cache(b, inc.fpin, ref.fpin, in_n, &d2), "unit %d: fp_in differs (max %g)", i, d2);
        CHECK(same_cache(b, inc.fpout, ref.fpout, out_n, &d3), "unit %d: fp_out differs (max %g)", i, d3);
        qd_unit_cache_drop_unit(&inc, b);
        qd_unit_cache_drop_unit(&ref, b);
        CHECK(!inc.qin && !inc.fpin && !inc.fpout && inc.cut_q, "unit %d: drop_unit keeps the cut only", i);
        if (i + 1 < n) {
            qd_unit_cache_advance(&inc, &ctx, u, &units[i + 1], p.upstream_mode);
            CHECK(inc.incremental && inc.cut_value == units[i + 1].input_value, "unit %d: the chain continues", i);
        }
    }
    printf("incremental caches of %d units identical to caches from the inputs\n", n);

    /* a layer inside a block reads a value that is not the cut: its own caches */
    qd_unit_spec *layers = NULL;
    int nl = qd_build_units(g, 1, &layers);
    CHECK(nl > n, "more layers (%d) than blocks (%d)", nl, n);
    int inner = -1;
    for (int k = 0; k < nl && inner < 0; k++) if (layers[k].input_value != inc.cut_value) inner = k;
    MUST(qd_unit_cache_fill(&inc, &ctx, &layers[inner], &p));
    CHECK(!inc.borrowed && inc.qin != inc.cut_q, "a layer whose input is not the cut computes its own caches");
    qd_unit_cache_free(&inc, b);
    CHECK(!inc.cut_q && !inc.qin && inc.cut_value == -1, "free releases everything");

    /* BRECQ's activation stage: FP inputs, one buffer for both paths */
    qd_unit_params pa = qd_unit_params_brecq_act(&cfg);
    qd_unit_cache fpc;
    qd_unit_cache_init(&fpc, 1, 1, 1);
    MUST(qd_unit_cache_seek(&fpc, &ctx, &units[1], pa.upstream_mode));
    CHECK(fpc.cut_q && fpc.cut_q == fpc.cut_fp, "FP-only cut: one buffer");
    MUST(qd_unit_cache_fill(&fpc, &ctx, &units[1], &pa));
    CHECK(fpc.borrowed && fpc.qin == fpc.cut_q && !fpc.fpin, "FP-only: no input mixing buffer");
    qd_unit_params pfp = p;
    pfp.upstream_mode = QD_EXEC_FP;
    MUST(qd_unit_cache_fill(&ref, &ctx, &units[1], &pfp));
    double d = 0;
    CHECK(same_cache(b, fpc.qin, ref.qin, (size_t)NCAL * (size_t)qd_value_sample_numel(&g->values[units[1].input_value]), &d),
          "FP-only cut equals the FP input computed from the inputs (max %g)", d);
    qd_unit_cache_drop_unit(&ref, b);
    qd_unit_cache_free(&fpc, b);

    /* per-unit parameters */
    CHECK(p.iters == cfg.recon.iters && p.batch_size == cfg.recon.batch_size && p.lr_v == 1e-3f &&
          p.lr_scale == cfg.recon.scale_lr && p.train_weights && p.train_scales && p.act_quant && p.loss_p == 0.0f &&
          p.keep_prob == cfg.recon.drop_prob && p.attempt == 0, "weight-stage parameters from quant.recon.*");
    qd_mode_plan mp1 = qd_mode_plan_for(QD_MODE_CASE1);
    qd_unit_params p1 = qd_unit_params_recon(&cfg, &mp1);
    CHECK(!p1.act_quant && !p1.train_scales && p1.keep_prob == 1.0f && p1.upstream_mode == QD_EXEC_WQ_ONLY,
          "Case 1: weights only, no drop, weight-quantized upstream");
    CHECK(pa.iters == cfg.brecq.act_iters && pa.lr_scale == cfg.brecq.act_lr && pa.lsq_grad_scale == 0 &&
          !pa.train_weights && pa.train_scales && pa.act_quant && pa.keep_prob == 1.0f && pa.input_keep_prob == 1.0f &&
          pa.loss_p == 2.4f && pa.upstream_mode == QD_EXEC_FP && pa.batch_size == cfg.recon.batch_size,
          "BRECQ activation stage: scales only, FP inputs, L_2.4, quant.brecq.*");
    qd_unit_params r2 = qd_unit_params_retry(&pa, 2);
    CHECK(r2.attempt == 2 && r2.lr_scale == cfg.brecq.act_lr / 64.0f && r2.lr_v == 1e-3f / 64.0f && r2.iters == pa.iters &&
          r2.loss_p == pa.loss_p, "retry 2: both learning rates / 64, nothing else changes");

    free(units);
    free(layers);
    free(x);
    qd_exec_free(ex);
    qd_backend_destroy(b);
    qd_graph_free(g);
    return qd_test_summary("test_unit_cache");
}
