/* bench/bench_bert.c: one BERT-base encoder layer (hidden 768, 12 heads, FFN 3072; random
 * weights) forward + backward at batch 32, sequence 128 (override: argv[1] batch, argv[2] seq,
 * argv[3] iterations, argv[4] cpu|gpu|both). The CPU encoder (OpenBLAS) always builds; on the GPU
 * the layer is timed as the engine runs it (the encoder graph on the CUDA backend: forward and
 * one reconstruction iteration) when the build has the CUDA backend (QD_HAVE_CUDA) and a device
 * is usable: FP32 with TF32 off, TF32 on, and 8-bit weights and activations at all 8 sites.
 * One JSON line per measurement. Exit 69 when gpu was asked for and there is
 * no usable device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qdrop/bert.h"
#ifdef QD_HAVE_CUDA
#include "core/qmath.h"
#include "qdrop/backend.h"
#include "qdrop/config.h"
#include "qdrop/exec.h"
#include "qdrop/graph.h"
#include "recon/recon.h"
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#ifdef QD_HAVE_CUDA
#define GPU_TRY(expr) do { if ((expr) != QD_OK) { fprintf(stderr, "bench_bert: %s: %s\n", #expr, qd_error_message()); rc = 70; goto done; } } while (0)
/* The layer as the engine runs it on the device: the encoder graph (src/bert/bert_graph.c) on
 * the CUDA backend. forward_ms: qd_exec_run of the layer (cuBLAS GEMMs, the LayerNorm / Gelu /
 * masked-softmax kernels); recon_iter_ms: one reconstruction iteration of its unit (batch B:
 * gather, soft AdaRound weights, forward with the 8 activation quantizers, loss, backward,
 * Adam), qd_recon_unit_time. Iteration 0 / the first call warm up. */
static int bench_gpu(const qd_bert_model *m, const float *x, const int *mask, int B, int S, int iters, int tf32, int quant,
                     double fl) {
    int rc = 0;
    const qd_bert_config *cfg = &m->cfg;
    const size_t T = (size_t)B * S, TH = T * (size_t)cfg->hidden;
    qd_backend_options o = {.threads = 1, .deterministic = 1, .tf32 = tf32};
    qd_backend *b = NULL;
    qd_graph *g = NULL;
    qd_exec *ex = NULL;
    float *dx_ = NULL, *dm_ = NULL, *y_ = NULL, *lw_ = NULL, *am = malloc(T * 4), *lw = malloc(T * 4);
    if (qd_cuda_backend_create(&o, &b) != QD_OK) {
        fprintf(stderr, "bench_bert: cuda backend: %s\n", qd_error_message());
        free(am); free(lw);
        return 69;
    }
    GPU_TRY(qd_bert_build_graph(m, S, &g));
    GPU_TRY(qd_bert_graph_place_quantizers(g, 8, 8, 0));
    for (int k = 0; k < g->nwq; k++) { /* 8-bit per-channel min/max grids, nearest weights */
        qd_weight_quant *w = &g->wq[k];
        const float *W = g->values[w->weight_value].fdata;
        for (int c = 0; c < w->channels; c++) {
            float lo = 0, hi = 0;
            for (int64_t i = 0; i < w->per_channel; i++) {
                float v = W[(size_t)c * (size_t)w->per_channel + (size_t)i];
                lo = v < lo ? v : lo; hi = v > hi ? v : hi;
            }
            qd_range_to_qparams(lo, hi, 0, 255, &w->scale[c], &w->zero_point[c]);
            for (int64_t i = 0; i < w->per_channel; i++) {
                size_t ix = (size_t)c * (size_t)w->per_channel + (size_t)i;
                w->qweight[ix] = qd_fake_quant(W[ix], w->scale[c], w->zero_point[c], 0.0f, 255.0f);
            }
        }
    }
    for (int k = 0; k < g->nact; k++) {
        g->act[k].scale = 0.05f; g->act[k].zero_point = 128.0f; g->act[k].initialized = 1;
    }
    g->act[4].scale = 1.0f / 255.0f; g->act[4].zero_point = 0.0f; /* probabilities */
    GPU_TRY(qd_exec_create(g, b, B, &ex));
    dx_ = b->ops->alloc(b, TH * 4);
    y_ = b->ops->alloc(b, TH * 4);
    dm_ = b->ops->alloc(b, T * 4);
    lw_ = b->ops->alloc(b, T * 4);
    if (!dx_ || !y_ || !dm_ || !lw_ || !am || !lw) { fprintf(stderr, "bench_bert: %s\n", qd_error_message()); rc = 75; goto done; }
    qd_bert_additive_mask(mask, B, S, am);
    for (size_t t = 0; t < T; t++) lw[t] = mask[t] ? 1.0f : 0.0f;
    GPU_TRY(b->ops->upload(b, dx_, x, TH * 4));
    GPU_TRY(b->ops->upload(b, dm_, am, T * 4));
    GPU_TRY(b->ops->upload(b, lw_, lw, T * 4));
    GPU_TRY(qd_exec_bind(ex, g->inputs[1], dm_));
    double tf = 0;
    for (int it = 0; it <= iters; it++) {
        double t0 = now();
        GPU_TRY(qd_exec_run(ex, quant ? QD_EXEC_QUANT : QD_EXEC_FP, 0, g->nnodes, g->inputs[0], dx_, B, g->outputs[0], y_));
        GPU_TRY(b->ops->sync(b));
        if (it) tf += now() - t0;
    }
    tf /= iters;
    /* one reconstruction iteration of the layer's unit on B calibration samples */
    qd_config c;
    qd_config_defaults(&c);
    c.recon.batch_size = B;
    c.recon.iters = iters + 1;
    qd_recon_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.g = g; ctx.b = b; ctx.exec = ex; ctx.cfg = &c;
    ctx.calib_host = x; ctx.ncal = B; ctx.image_numel = (int64_t)S * cfg->hidden;
    ctx.cache_progress_off = 1;
    qd_mode_plan plan = qd_mode_plan_for(QD_MODE_QDROP);
    qd_unit_params up = qd_unit_params_recon(&c, &plan);
    ctx.nside = 1; ctx.side_value[0] = g->inputs[1]; ctx.side_dev[0] = dm_;
    ctx.loss_w_dev = lw_; ctx.loss_w_host = lw; ctx.loss_w_numel = S;
    qd_unit_spec u;
    memset(&u, 0, sizeof u);
    snprintf(u.name, sizeof u.name, "%s", g->units[0].name);
    u.node_begin = g->units[0].node_begin; u.node_end = g->units[0].node_end;
    u.input_value = g->units[0].input_value; u.output_value = g->units[0].output_value;
    double ti = 0;
    GPU_TRY(qd_recon_unit_time(&ctx, &u, &up, iters, &ti));
    printf("{\"bench\": \"bert_layer_gpu\", \"path\": \"graph\", \"device\": \"%s\", \"tf32\": %d, \"act_quant_bits\": %d, "
           "\"batch\": %d, \"seq\": %d, \"hidden\": %d, \"heads\": %d, \"ffn\": %d, \"iters\": %d, \"forward_ms\": %.3f, "
           "\"recon_iter_ms\": %.3f, \"forward_gflops\": %.1f}\n",
           b->device_name, tf32, quant ? 8 : 0, B, S, cfg->hidden, cfg->heads, cfg->intermediate, iters, 1e3 * tf,
           1e3 * ti, fl / tf * 1e-9);
    fflush(stdout);
done:
    if (b) {
        b->ops->free(b, dx_); b->ops->free(b, y_); b->ops->free(b, dm_); b->ops->free(b, lw_);
        qd_exec_free(ex);
        qd_backend_destroy(b);
    }
    qd_graph_free(g);
    free(am); free(lw);
    return rc;
}
#endif

int main(int argc, char **argv) {
    int B = argc > 1 ? atoi(argv[1]) : 32, S = argc > 2 ? atoi(argv[2]) : 128, iters = argc > 3 ? atoi(argv[3]) : 3;
    const char *mode = argc > 4 ? argv[4] : "both";
    int do_cpu = strcmp(mode, "gpu") != 0, do_gpu = strcmp(mode, "cpu") != 0;
    if (B < 1 || S < 1 || S > 512 || iters < 1 || (strcmp(mode, "cpu") && strcmp(mode, "gpu") && strcmp(mode, "both"))) {
        fprintf(stderr, "usage: bench_bert [batch] [seq<=512] [iters] [cpu|gpu|both]\n");
        return 64;
    }
#ifndef QD_HAVE_CUDA
    if (strcmp(mode, "gpu") == 0) { fprintf(stderr, "bench_bert: built without the CUDA backend\n"); return 69; }
    do_gpu = 0;
    (void)do_gpu;
#endif
    qd_bert_config cfg = {.hidden = 768, .layers = 1, .heads = 12, .intermediate = 3072, .max_pos = 512,
                          .type_vocab = 2, .vocab = 1000, .ln_eps = 1e-12f};
    qd_bert_model *m;
    if (qd_bert_random(&cfg, 1234, &m) != QD_OK) { fprintf(stderr, "%s\n", qd_error_message()); return 70; }
    const size_t T = (size_t)B * S, H = 768, FF = 3072;
    int *ids = malloc(T * sizeof(int)), *mask = malloc(T * sizeof(int));
    float *x = malloc(T * H * 4), *y = malloc(T * H * 4), *dx = malloc(T * H * 4), *dy = malloc(T * H * 4);
    qd_bert_layer_grads g = {0};
    float **gp[] = {&g.wq, &g.bq, &g.wk, &g.bk, &g.wv, &g.bv, &g.wo, &g.bo, &g.ln1_g, &g.ln1_b, &g.w1, &g.b1, &g.w2, &g.b2, &g.ln2_g, &g.ln2_b};
    size_t gs[] = {H * H, H, H * H, H, H * H, H, H * H, H, H, H, FF * H, FF, H * FF, H, H, H};
    for (int i = 0; i < 16; i++) *gp[i] = calloc(gs[i], 4);
    for (size_t t = 0; t < T; t++) { ids[t] = (int)((t * 7919) % 1000); mask[t] = (t % S) < (size_t)(S - (int)(t / S) % 16); }
    for (size_t i = 0; i < T * H; i++) dy[i] = (float)((int)(i % 17) - 8) * 1e-3f;
    qd_bert_embed(m, ids, NULL, B, S, x, NULL, NULL);
    /* forward GEMM flops: 2T(4H^2 + 2 H FF) + attention 4 B S^2 H; backward about twice */
    double fl = 2.0 * T * (4.0 * H * H + 2.0 * H * FF) + 4.0 * B * (double)S * S * H;
    int rc = 0;
    if (do_cpu) {
        qd_bert_layer_cache c;
        if (qd_bert_cache_alloc(&cfg, B, S, &c) != QD_OK) { fprintf(stderr, "%s\n", qd_error_message()); return 70; }
        double tf = 0, tb = 0;
        for (int it = 0; it <= iters; it++) { /* iteration 0 warms up */
            double t0 = now();
            if (qd_bert_layer_forward(&cfg, &m->layer[0], 0, x, mask, B, S, y, &c, NULL, NULL) != QD_OK) return 70;
            double t1 = now();
            if (qd_bert_layer_backward(&cfg, &m->layer[0], &c, mask, dy, dx, &g) != QD_OK) return 70;
            double t2 = now();
            if (it) { tf += t1 - t0; tb += t2 - t1; }
        }
        tf /= iters;
        tb /= iters;
        printf("{\"bench\": \"bert_layer_cpu\", \"batch\": %d, \"seq\": %d, \"hidden\": 768, \"heads\": 12, \"ffn\": 3072, "
               "\"iters\": %d, \"forward_ms\": %.1f, \"backward_ms\": %.1f, \"fwd_bwd_per_s\": %.3f, \"forward_gflops\": %.1f, "
               "\"backward_gflops\": %.1f}\n",
               B, S, iters, 1e3 * tf, 1e3 * tb, 1.0 / (tf + tb), fl / tf * 1e-9, 2 * fl / tb * 1e-9);
        fflush(stdout);
        qd_bert_cache_free(&c);
    }
#ifdef QD_HAVE_CUDA
    if (do_gpu && !qd_cuda_available()) {
        fprintf(stderr, "bench_bert: no usable CUDA device%s\n", do_cpu ? "; GPU part skipped" : "");
        if (!do_cpu) rc = 69;
        do_gpu = 0;
    }
    /* FP32 (TF32 off), TF32 on, FP32 with 8-bit activation fake-quant */
    for (int k = 0; do_gpu && rc == 0 && k < 3; k++)
        rc = bench_gpu(m, x, mask, B, S, iters, k == 1, k == 2, fl);
#endif
    for (int i = 0; i < 16; i++) free(*gp[i]);
    free(ids); free(mask); free(x); free(y); free(dx); free(dy);
    qd_bert_free(m);
    return rc;
}
