/* bench/bench_bert.c: one BERT-base encoder layer (hidden 768, 12 heads, FFN 3072; random
 * weights) forward + backward on the CPU at batch 32, sequence 128 (override: argv[1] batch,
 * argv[2] seq, argv[3] iterations). Prints one JSON line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qdrop/bert.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    int B = argc > 1 ? atoi(argv[1]) : 32, S = argc > 2 ? atoi(argv[2]) : 128, iters = argc > 3 ? atoi(argv[3]) : 3;
    if (B < 1 || S < 1 || S > 512 || iters < 1) { fprintf(stderr, "usage: bench_bert [batch] [seq<=512] [iters]\n"); return 64; }
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
    /* forward GEMM flops: 2T(4H^2 + 2 H FF) + attention 4 B S^2 H; backward about twice */
    double fl = 2.0 * T * (4.0 * H * H + 2.0 * H * FF) + 4.0 * B * (double)S * S * H;
    printf("{\"bench\": \"bert_layer_cpu\", \"batch\": %d, \"seq\": %d, \"hidden\": 768, \"heads\": 12, \"ffn\": 3072, "
           "\"iters\": %d, \"forward_ms\": %.1f, \"backward_ms\": %.1f, \"fwd_bwd_per_s\": %.3f, \"forward_gflops\": %.1f, "
           "\"backward_gflops\": %.1f}\n",
           B, S, iters, 1e3 * tf, 1e3 * tb, 1.0 / (tf + tb), fl / tf * 1e-9, 2 * fl / tb * 1e-9);
    qd_bert_cache_free(&c);
    for (int i = 0; i < 16; i++) free(*gp[i]);
    free(ids); free(mask); free(x); free(y); free(dx); free(dy);
    qd_bert_free(m);
    return 0;
}
