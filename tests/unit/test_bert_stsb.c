/* End to end: all-MiniLM-L6-v2 (tools/fetch_minilm.sh -> models/all-MiniLM-L6-v2, or
 * $QD_BERT_MODEL_DIR) on the STS-B test set (assets/stsb/sts-test.tsv, 1379 pairs). The FP32
 * Spearman must match sentence-transformers 6.2.0 on the same files (0.820325, measured with
 * tools/make_bert_fixtures.py stsb) to 1e-4, and the W8A8 min/max baseline its measured value
 * 0.816022 to 5e-4. The FP32 run goes through the encoder graph on the CPU backend (the engine's
 * path); the W8A8 baseline's dynamic per-batch ranges are a host-encoder hook. Skips (77) when the model is not fetched (scripts/install_deps.sh fetches
 * it when online). About 2 x 25 s of one core: fast enough for CI as is (label e2e). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "qdrop/backend.h"
#include "qdrop/bert.h"
#include "qdrop/exec.h"
#include "qdrop/graph.h"

#define QD_ST_REFERENCE_SPEARMAN 0.820325
#define QD_W8A8_MINMAX_SPEARMAN 0.816022 /* this C code, 2026-11-29; sentence-transformers has no W8A8 */

int main(void) {
    const char *dir = getenv("QD_BERT_MODEL_DIR");
    if (!dir) dir = "models/all-MiniLM-L6-v2";
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        printf("SKIP: %s not found (run tools/fetch_minilm.sh)\n", path);
        return 77;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double rho = 0;
    /* FP32 through the engine's path: the encoder graph (src/bert/bert_graph.c) on the CPU
     * backend, host embeddings, mean pooling + L2 norm */
    qd_sts_set set;
    qd_bert_model *m;
    if (qd_sts_read("assets/stsb/sts-test.tsv", &set) != QD_OK || qd_bert_load(dir, &m) != QD_OK) {
        printf("FAIL: %s\n", qd_error_message());
        return 1;
    }
    int n = set.n;
    {
        qd_graph *g = NULL;
        qd_backend *b = NULL;
        qd_backend_options bo = {.threads = 0};
        qd_bert_graph_encoder e;
        if (qd_bert_build_graph(m, 8, &g) != QD_OK || qd_cpu_backend_create(&bo, &b) != QD_OK ||
            qd_bert_graph_encoder_init(&e, m, g, b, QD_EXEC_FP, 32, 256) != QD_OK) {
            printf("FAIL: %s\n", qd_error_message());
            return 1;
        }
        qd_bert_encoder enc = {qd_bert_graph_encode, &e, NULL};
        if (qd_bert_eval_stsb_enc(m, &set, &enc, &rho, NULL) != QD_OK) {
            printf("FAIL: %s\n", qd_error_message());
            return 1;
        }
        qd_bert_graph_encoder_free(&e);
        qd_backend_destroy(b);
        qd_graph_free(g);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("{\"model\": \"all-MiniLM-L6-v2\", \"pairs\": %d, \"spearman_fp32\": %.6f, \"reference\": %.6f, \"seconds\": %.1f}\n",
           n, rho, QD_ST_REFERENCE_SPEARMAN, sec);
    int ok = n == 1379 && fabs(rho - QD_ST_REFERENCE_SPEARMAN) < 1e-4;
    if (!ok) printf("FAIL: FP32 Spearman %.6f, sentence-transformers %.6f (tolerance 1e-4), %d pairs\n", rho, QD_ST_REFERENCE_SPEARMAN, n);
    /* W8A8 min/max baseline (per-channel weights, 8-bit embeddings, dynamic per-tensor
     * activations at the §8.8 sites): measured 0.816022; it must differ from FP32 and reproduce. */
    double rq = 0;
    int bits = 8;
    if (qd_bert_quantize_weights_minmax(m, 8, 8) != QD_OK ||
        qd_bert_eval_stsb_model(m, &set, qd_bert_dynamic_act_hook, &bits, &rq) != QD_OK) {
        printf("FAIL: %s\n", qd_error_message());
        return 1;
    }
    printf("{\"spearman_w8a8_minmax_dynamic\": %.6f}\n", rq);
    if (rq == rho || fabs(rq - QD_W8A8_MINMAX_SPEARMAN) > 5e-4) {
        printf("FAIL: W8A8 min/max Spearman %.6f, expected %.6f (tolerance 5e-4)\n", rq, QD_W8A8_MINMAX_SPEARMAN);
        ok = 0;
    }
    qd_bert_free(m);
    qd_sts_free(&set);
    printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
