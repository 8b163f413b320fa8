/* bench/bench_infer.c: FP32 inference throughput of the engine's forward executor (issue 3):
 * images/s for an ONNX model at a given batch on the CPU backend. Prints one JSON line.
 * Usage: qd_bench_infer MODEL.onnx [batch=256] [reps=5] [threads=0]
 * bench/bench_infer.py runs it beside ONNX Runtime on the same machine and prints the ratio. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "qdrop/backend.h"
#include "qdrop/exec.h"
#include "qdrop/graph.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s MODEL.onnx [batch] [reps] [threads]\n", argv[0]); return 64; }
    int batch = argc > 2 ? atoi(argv[2]) : 256, reps = argc > 3 ? atoi(argv[3]) : 5, threads = argc > 4 ? atoi(argv[4]) : 0;
    qd_graph *g = NULL;
    qd_backend *b = NULL;
    qd_exec *ex = NULL;
    if (qd_graph_prepare(argv[1], &g) != QD_OK) { fprintf(stderr, "error: %s\n", qd_error_message()); return 65; }
    qd_backend_options bo = {.threads = threads, .deterministic = 1};
    if (qd_backend_create("cpu", &bo, &b) != QD_OK || qd_exec_create(g, b, batch, &ex) != QD_OK) {
        fprintf(stderr, "error: %s\n", qd_error_message());
        return 70;
    }
    const qd_value *in = &g->values[g->inputs[0]], *out = &g->values[g->outputs[0]];
    int64_t in_n = qd_value_sample_numel(in), out_n = qd_value_sample_numel(out);
    float *x = malloc(sizeof(float) * (size_t)batch * (size_t)in_n), *y = malloc(sizeof(float) * (size_t)batch * (size_t)out_n);
    srand(1005);
    for (int64_t i = 0; i < (int64_t)batch * in_n; i++) x[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
    if (qd_exec_forward_host(ex, QD_EXEC_FP, x, batch, y) != QD_OK) { fprintf(stderr, "error: %s\n", qd_error_message()); return 70; }
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        if (qd_exec_forward_host(ex, QD_EXEC_FP, x, batch, y) != QD_OK) { fprintf(stderr, "error: %s\n", qd_error_message()); return 70; }
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    printf("{\"impl\":\"qdrop-gpu-cpu\",\"model\":\"%s\",\"batch\":%d,\"threads\":%d,\"best_s\":%.6f,\"images_per_s\":%.1f}\n",
           argv[1], batch, b->threads, best, batch / best);
    free(x); free(y);
    qd_exec_free(ex);
    qd_backend_destroy(b);
    qd_graph_free(g);
    return 0;
}
