/* bench/bench_bert.c: one BERT-base encoder layer (hidden 768, 12 heads, FFN 3072; random
 * weights) forward + backward at batch 32, sequence 128 (override: argv[1] batch, argv[2] seq,
 * argv[3] iterations, argv[4] cpu|gpu|both). The CPU encoder (OpenBLAS) always builds; the CUDA
 * layer (cuda/bert_cuda.cu) is timed when the build has the CUDA backend (QD_HAVE_CUDA) and a
 * device is usable: FP32 with TF32 off, TF32 on, and FP32 with 8-bit fake-quant at all 8
 * activation sites. One JSON line per measurement. Exit 69 when gpu was asked for and there is
 * no usable device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qdrop/bert.h"
#ifdef QD_HAVE_CUDA
#include "qdrop/backend.h"
#include "qdrop/bert_cuda.h"
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#ifdef QD_HAVE_CUDA
#define GPU_TRY(expr) do { if ((expr) != QD_OK) { fprintf(stderr, "bench_bert: %s: %s\n", #expr, qd_error_message()); rc = 70; goto done; } } while (0)
/* One configuration on the device: iteration 0 warms up (cuBLAS heuristics, clocks). */
static int bench_gpu(const qd_bert_config *cfg, const qd_bert_layer *L, const float *x, const int *mask,
                     const float *dy, int B, int S, int iters, int tf32, int quant, double fl) {
    int rc = 0;
    const size_t TH = (size_t)B * S * cfg->hidden;
    qd_backend_options o = {.threads = 1, .deterministic = 1, .tf32 = tf32};
    qd_backend *b = NULL;
    qd_bert_cuda *w = NULL;
    qd_bert_layer dl = {0};
    qd_bert_layer_grads dg = {0};
    float *dx_ = NULL, *dy_ = NULL, *y_ = NULL, *ddx = NULL;
    int *dm = NULL;
    if (qd_cuda_backend_create(&o, &b) != QD_OK) {
        fprintf(stderr, "bench_bert: cuda backend: %s\n", qd_error_message());
        return 69;
    }
    GPU_TRY(qd_bert_cuda_create(b, cfg, B, S, &w));
    GPU_TRY(qd_bert_cuda_layer_upload(b, cfg, L, &dl));
    GPU_TRY(qd_bert_cuda_grads_alloc(b, cfg, &dg));
    dx_ = b->ops->alloc(b, TH * 4);
    dy_ = b->ops->alloc(b, TH * 4);
    y_ = b->ops->alloc(b, TH * 4);
    ddx = b->ops->alloc(b, TH * 4);
    dm = b->ops->alloc(b, (size_t)B * S * sizeof(int));
    if (!dx_ || !dy_ || !y_ || !ddx || !dm) { fprintf(stderr, "bench_bert: %s\n", qd_error_message()); rc = 75; goto done; }
    GPU_TRY(b->ops->upload(b, dx_, x, TH * 4));
    GPU_TRY(b->ops->upload(b, dy_, dy, TH * 4));
    GPU_TRY(b->ops->upload(b, dm, mask, (size_t)B * S * sizeof(int)));
    if (quant)
        for (int s = QD_BERT_SITE_Q; s < QD_BERT_SITE_COUNT; s++) {
            qd_bert_aq a = {s == QD_BERT_SITE_PROBS ? 1.0f / 255.0f : 0.05f, s == QD_BERT_SITE_PROBS ? 0.0f : 128.0f, 8};
            GPU_TRY(qd_bert_cuda_set_act_quant(w, (qd_bert_site)s, &a));
        }
    double tf = 0, tb = 0;
    for (int it = 0; it <= iters; it++) {
        double t0 = now();
        GPU_TRY(qd_bert_cuda_layer_forward(w, &dl, dx_, dm, B, S, y_));
        GPU_TRY(qd_bert_cuda_sync(w));
        double t1 = now();
        GPU_TRY(qd_bert_cuda_layer_backward(w, &dl, dy_, ddx, &dg));
        GPU_TRY(qd_bert_cuda_sync(w));
        double t2 = now();
        if (it) { tf += t1 - t0; tb += t2 - t1; }
    }
    tf /= iters;
    tb /= iters;
    printf("{\"bench\": \"bert_layer_gpu\", \"device\": \"%s\", \"tf32\": %d, \"act_quant_bits\": %d, \"batch\": %d, "
           "\"seq\": %d, \"hidden\": %d, \"heads\": %d, \"ffn\": %d, \"iters\": %d, \"forward_ms\": %.3f, "
           "\"backward_ms\": %.3f, \"fwd_bwd_per_s\": %.2f, \"forward_gflops\": %.1f, \"backward_gflops\": %.1f}\n",
           b->device_name, tf32, quant ? 8 : 0, B, S, cfg->hidden, cfg->heads, cfg->intermediate, iters, 1e3 * tf,
           1e3 * tb, 1.0 / (tf + tb), fl / tf * 1e-9, 2 * fl / tb * 1e-9);
    fflush(stdout);
done:
    if (b) {
        b->ops->free(b, dx_); b->ops->free(b, dy_); b->ops->free(b, y_); b->ops->free(b, ddx); b->ops->free(b, dm);
        qd_bert_cuda_grads_free(b, &dg);
        qd_bert_cuda_layer_free(b, &dl);
        qd_bert_cuda_destroy(w);
        qd_backend_destroy(b);
    }
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
        rc = bench_gpu(&cfg, &m->layer[0], x, mask, dy, B, S, iters, k == 1, k == 2, fl);
#endif
    for (int i = 0; i < 16; i++) free(*gp[i]);
    free(ids); free(mask); free(x); free(y); free(dx); free(dy);
    qd_bert_free(m);
    return rc;
}
