/* Golden test: complete QDrop training iterations of a BasicBlock unit against PyTorch
 * (tools/make_golden_iter.py writes tests/golden/iter_block.{onnx,json}; CI needs no torch).
 * Same batch indices and drop masks (counter-based RNG, tools/qd_philox.py), same quantizer
 * parameters; compares per-iteration reconstruction and rounding losses, V of both layers and
 * the learned scales after 3 iterations (Adam on V and on scales, cosine lr, beta schedule with
 * the regulariser switching on at c = 2).
 * Tolerances (docs/numerics.md): losses 1e-4 relative (float32 sums in a different order);
 * V within 1e-5 absolute (measured 6e-7: Adam steps are 1e-3, so one sign error in a gradient
 * would show as 2e-3); scales 1e-6 relative.
 * The fixture uses an inclusive clamp gradient (PyTorch 1.x, docs/algorithm.md §2) and Q2's round_ste
 * arithmetic; see qd_fake_quant_region in src/core/qmath.h. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "qdrop/backend.h"
#include "qdrop/config.h"
#include "qdrop/exec.h"
#include "qdrop/fsutil.h"
#include "qdrop/graph.h"
#include "recon/recon.h"

static void farr(const cJSON *a, float *dst, int n) {
    for (int i = 0; i < n; i++) dst[i] = (float)cJSON_GetArrayItem(a, i)->valuedouble;
}

int main(void) {
    void *txt = NULL;
    size_t len = 0;
    if (qd_read_file("tests/golden/iter_block.json", &txt, &len) != QD_OK) { fprintf(stderr, "%s\n", qd_error_message()); return 1; }
    char *t2 = realloc(txt, len + 1);
    t2[len] = 0;
    cJSON *fx = cJSON_Parse(t2);
    free(t2);
    if (!fx) { fprintf(stderr, "bad fixture JSON\n"); return 1; }
#define NUM(k) (cJSON_GetObjectItem(fx, k)->valuedouble)
    int C = (int)NUM("C"), HW = (int)NUM("HW"), ncal = (int)NUM("ncal"), iters = (int)NUM("iters");

    qd_graph *g = NULL;
    if (qd_graph_prepare("tests/golden/iter_block.onnx", &g) != QD_OK) { fprintf(stderr, "%s\n", qd_error_message()); return 1; }
    qd_quant_plan_opts po = {(int)NUM("w_bits"), (int)NUM("a_bits"), 0, 0};
    if (qd_graph_place_quantizers(g, &po) != QD_OK) { fprintf(stderr, "%s\n", qd_error_message()); return 1; }
    CHECK(g->nunits == 1, "expected 1 unit, got %d", g->nunits);
    CHECK(g->nwq == 2, "expected 2 weight quantizers, got %d", g->nwq);
    CHECK(g->nact == 2, "expected 2 activation quantizers, got %d", g->nact);
    if (qd_test_failures) return 1;
    cJSON *ws = cJSON_GetObjectItem(fx, "w_scale"), *wz = cJSON_GetObjectItem(fx, "w_zp"), *as = cJSON_GetObjectItem(fx, "a_scale");
    for (int k = 0; k < 2; k++) {
        /* weight quantizers in node order: conv1, conv2 */
        int wq = -1, seen = 0;
        for (int n = 0; n < g->nnodes; n++) if (g->nodes[n].wq >= 0 && seen++ == k) wq = g->nodes[n].wq;
        farr(cJSON_GetArrayItem(ws, k), g->wq[wq].scale, C);
        farr(cJSON_GetArrayItem(wz, k), g->wq[wq].zero_point, C);
        int a = -1; seen = 0;
        for (int n = 0; n < g->nnodes; n++)
            for (int o = 0; o < g->nodes[n].noutputs; o++)
                if (g->values[g->nodes[n].outputs[o]].act_quant >= 0 && seen++ == k) a = g->values[g->nodes[n].outputs[o]].act_quant;
        g->act[a].scale = (float)cJSON_GetArrayItem(as, k)->valuedouble;
        g->act[a].zero_point = 0.0f;
        g->act[a].initialized = 1;
        CHECK(g->act[a].unit == 0, "quantizer %d should belong to unit 0", a);
    }
    qd_config cfg;
    qd_config_defaults(&cfg);
    cfg.recon.iters = (int)NUM("total_iters");
    cfg.recon.batch_size = (int)NUM("batch");
    cfg.recon.warm_up = (float)NUM("warm_up");
    cfg.recon.weight = (float)NUM("lambda");
    cfg.recon.scale_lr = (float)NUM("scale_lr");
    cfg.recon.drop_prob = (float)NUM("keep_prob");
    cfg.recon.lsq_grad_scale = 1;
    cfg.seed = (uint64_t)NUM("seed");
    cfg.threads = 1;

    qd_backend *b = NULL;
    qd_backend_options bo = {.threads = 1, .deterministic = 1};
    if (qd_backend_create("cpu", &bo, &b) != QD_OK) { fprintf(stderr, "%s\n", qd_error_message()); return 1; }
    qd_exec *ex = NULL;
    if (qd_exec_create(g, b, 128, &ex) != QD_OK) { fprintf(stderr, "%s\n", qd_error_message()); return 1; }
    float *xcal = malloc(sizeof(float) * (size_t)ncal * C * HW * HW);
    farr(cJSON_GetObjectItem(fx, "x_cal"), xcal, ncal * C * HW * HW);

    qd_recon_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.g = g; ctx.b = b; ctx.exec = ex; ctx.cfg = &cfg;
    ctx.calib_host = xcal; ctx.ncal = ncal; ctx.image_numel = (int64_t)C * HW * HW;
    qd_mode_plan mp = qd_mode_plan_for(QD_MODE_QDROP);   /* activations on, scales learned, drop */
    qd_unit_params up = qd_unit_params_recon(&cfg, &mp);
    qd_unit_spec u;
    memset(&u, 0, sizeof u);
    snprintf(u.name, sizeof u.name, "golden block");
    u.node_begin = g->units[0].node_begin; u.node_end = g->units[0].node_end;
    u.input_value = g->units[0].input_value; u.output_value = g->units[0].output_value;
    u.index = 0;
    int nw = C * C * 9;
    float rec[8], reg[8], scales[2];
    float *V[2] = {malloc(sizeof(float) * nw), malloc(sizeof(float) * nw)};
    if (qd_recon_unit_trace(&ctx, &u, &up, iters, rec, reg, V, scales) != QD_OK) { fprintf(stderr, "%s\n", qd_error_message()); return 1; }

    cJSON *tr = cJSON_GetObjectItem(fx, "trace");
    for (int i = 0; i < iters; i++) {
        cJSON *e = cJSON_GetArrayItem(tr, i);
        double er = cJSON_GetObjectItem(e, "rec_loss")->valuedouble, eg = cJSON_GetObjectItem(e, "round_loss")->valuedouble;
        CHECK(fabs(rec[i] - er) <= 1e-4 * fabs(er) + 1e-7, "iter %d rec loss %.8g vs torch %.8g", i + 1, rec[i], er);
        CHECK(fabs(reg[i] - eg) <= 1e-4 * fabs(eg) + 1e-6, "iter %d round loss %.8g vs torch %.8g", i + 1, reg[i], eg);
        printf("iter %d: rec %.7g (torch %.7g)  round %.7g (torch %.7g)\n", i + 1, rec[i], er, reg[i], eg);
    }
    cJSON *last = cJSON_GetArrayItem(tr, iters - 1);
    const char *vk[2] = {"V1", "V2"};
    for (int l = 0; l < 2; l++) {
        float *ev = malloc(sizeof(float) * nw);
        farr(cJSON_GetObjectItem(last, vk[l]), ev, nw);
        int close = 0;
        double maxd = 0;
        for (int i = 0; i < nw; i++) {
            double d = fabs(V[l][i] - ev[i]);
            if (d <= 1e-5) close++;
            if (d > maxd) maxd = d;
        }
        CHECK(close == nw, "layer %d: only %d/%d V within 1e-5 of torch", l, close, nw);
                printf("layer %d: V %d/%d within 1e-5, max diff %.3g\n", l, close, nw, maxd);
        free(ev);
    }
    cJSON *es = cJSON_GetObjectItem(last, "scales");
    for (int j = 0; j < 2; j++) {
        double e = cJSON_GetArrayItem(es, j)->valuedouble;
        CHECK(fabs(scales[j] - e) <= 1e-6 * fabs(e), "scale %d %.9g vs torch %.9g", j, scales[j], e);
        printf("scale %d: %.9g (torch %.9g, init %.9g)\n", j, scales[j], e, cJSON_GetArrayItem(as, j)->valuedouble);
    }
    free(V[0]); free(V[1]); free(xcal);
    qd_exec_free(ex);
    qd_backend_destroy(b);
    qd_graph_free(g);
    cJSON_Delete(fx);
    return qd_test_summary("test_golden_iter");
}
