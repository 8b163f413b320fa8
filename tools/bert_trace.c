/* tools/bert_trace.c: every intermediate value of a finished BERT run's quantized encoder graph
 * for one batch, as the engine computes it (CPU backend, or CUDA with --device cuda: FP32, no
 * TF32), so tools/bert_ort_check.py --trace can find the first node where ONNX Runtime on the
 * exported model_qdq.onnx computes something else.
 *
 *   bert_trace [--device cpu|cuda] RUN_DIR EMBEDDINGS.f32 MASK.f32 B S OUT.bin [MODEL_DIR]
 *
 * EMBEDDINGS.f32: raw float32 [B, S, H], the encoder's `embeddings` input (eval_embeddings.npy
 * rows, padded); MASK.f32: raw float32 [B, S], the additive attention mask (0 / -inf). The run's
 * quantized model comes from RUN_DIR/encodings.json (as `qdrop-gpu eval --from`), its model and
 * bit widths from RUN_DIR/resolved_config.json (MODEL_DIR replaces its model.path, which may be
 * relative to the directory the run started in). OUT.bin: for every node's (first) output,
 * u32 name length, the name, u32 ndim, ndim x i64 dims, then the float32 data (after the value's
 * activation quantizer, when it has one: the tensor named like the value in the export).
 * Exit 0, or 1 with one error line. A developer tool, built with the tests (not installed). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qdrop/backend.h"
#include "qdrop/bert.h"
#include "qdrop/config.h"
#include "qdrop/exec.h"
#include "qdrop/export.h"
#include "qdrop/graph.h"
#include "qdrop/status.h"

static int read_exact(const char *path, float *dst, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t got = fread(dst, sizeof(float), n, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    return got == n && !extra;
}

static qd_status trace(const char *run_dir, const char *emb_path, const char *mask_path, int B, int S,
                       const char *out_path, const char *model_dir, const char *device) {
    char path[4096];
    qd_config cfg;
    qd_config_defaults(&cfg);
    snprintf(path, sizeof path, "%s/resolved_config.json", run_dir);
    QD_TRY(qd_config_load_file(&cfg, path));
    QD_TRY(qd_config_finalize(&cfg));
    if (model_dir) {
        if (strlen(model_dir) >= sizeof cfg.model_path) return qd_errorf(QD_ERR_USAGE, "MODEL_DIR %s: too long", model_dir);
        strcpy(cfg.model_path, model_dir);
    }
    qd_bert_model *m = NULL;
    qd_graph *g = NULL;
    qd_backend *b = NULL;
    qd_exec *ex = NULL;
    float *h_in = NULL, *h_mask = NULL, *d_in = NULL, *d_mask = NULL;
    FILE *out = NULL;
    qd_status st = qd_bert_load(cfg.model_path, &m);
    if (st == QD_OK) st = qd_bert_build_graph(m, S, &g);
    if (st == QD_OK) st = qd_bert_graph_place_quantizers(g, cfg.w_qconfig.bit, cfg.a_qconfig.bit, cfg.first_last_8bit);
    if (st == QD_OK) {
        snprintf(path, sizeof path, "%s/encodings.json", run_dir);
        st = qd_import_encodings(g, path);
    }
    const int H = st == QD_OK ? m->cfg.hidden : 0;
    const size_t tok = (size_t)B * (size_t)S;
    if (st == QD_OK) {
        h_in = malloc(sizeof(float) * tok * (size_t)H);
        h_mask = malloc(sizeof(float) * tok);
        if (!h_in || !h_mask) st = qd_errorf(QD_ERR_INTERNAL, "out of host memory");
    }
    if (st == QD_OK && !read_exact(emb_path, h_in, tok * (size_t)H))
        st = qd_errorf(QD_ERR_DATA, "%s: expected %zu float32 values ([%d, %d, %d])", emb_path, tok * (size_t)H, B, S, H);
    if (st == QD_OK && !read_exact(mask_path, h_mask, tok))
        st = qd_errorf(QD_ERR_DATA, "%s: expected %zu float32 values ([%d, %d])", mask_path, tok, B, S);
    qd_backend_options bo = {.threads = 1, .deterministic = 1};
    if (st == QD_OK) st = qd_backend_create(device, &bo, &b);
    if (st == QD_OK) st = qd_exec_create(g, b, B, &ex);
    if (st == QD_OK) {
        d_in = b->ops->alloc(b, sizeof(float) * tok * (size_t)H);
        d_mask = b->ops->alloc(b, sizeof(float) * tok);
        if (!d_in || !d_mask) st = qd_errorf(QD_ERR_INTERNAL, "out of backend memory");
    }
    if (st == QD_OK) st = b->ops->upload(b, d_in, h_in, sizeof(float) * tok * (size_t)H);
    if (st == QD_OK) st = b->ops->upload(b, d_mask, h_mask, sizeof(float) * tok);
    if (st == QD_OK) st = qd_exec_bind(ex, g->inputs[1], d_mask);
    if (st == QD_OK && !(out = fopen(out_path, "wb"))) st = qd_errorf(QD_ERR_IO, "%s: cannot create", out_path);
    /* The executor reuses activation buffers, so each node's output is taken from a run of the
     * nodes up to it (quadratic in the node count: fine for one batch of one encoder). */
    for (int k = 0; st == QD_OK && k < g->nnodes; k++) {
        const int v = g->nodes[k].outputs[0];
        const qd_value *val = &g->values[v];
        int64_t numel = B;
        for (int d = 1; d < val->ndim; d++) numel *= val->dims[d];
        float *dv = b->ops->alloc(b, sizeof(float) * (size_t)numel);
        float *h = malloc(sizeof(float) * (size_t)numel);
        if (!dv || !h) st = qd_errorf(QD_ERR_INTERNAL, "out of memory for value %s", val->name);
        if (st == QD_OK) st = qd_exec_run(ex, QD_EXEC_QUANT, 0, k + 1, g->inputs[0], d_in, B, v, dv);
        if (st == QD_OK) st = b->ops->download(b, h, dv, sizeof(float) * (size_t)numel);
        uint32_t nl = (uint32_t)strlen(val->name), nd = (uint32_t)val->ndim;
        int64_t dims[QD_MAX_DIMS];
        memcpy(dims, val->dims, sizeof dims);
        dims[0] = B;
        if (st == QD_OK &&
            (fwrite(&nl, 4, 1, out) != 1 || fwrite(val->name, 1, nl, out) != nl || fwrite(&nd, 4, 1, out) != 1 ||
             fwrite(dims, 8, nd, out) != nd || fwrite(h, sizeof(float), (size_t)numel, out) != (size_t)numel))
            st = qd_errorf(QD_ERR_IO, "%s: write failed", out_path);
        if (dv) b->ops->free(b, dv);
        free(h);
    }
    if (out && fclose(out) != 0 && st == QD_OK) st = qd_errorf(QD_ERR_IO, "%s: write failed", out_path);
    if (d_in) b->ops->free(b, d_in);
    if (d_mask) b->ops->free(b, d_mask);
    qd_exec_free(ex);
    if (b) qd_backend_destroy(b);
    qd_graph_free(g);
    qd_bert_free(m);
    free(h_in);
    free(h_mask);
    return st;
}

int main(int argc, char **argv) {
    /* optional leading --device cpu|cuda: the backend that computes the nodes (default cpu) */
    const char *device = "cpu";
    if (argc >= 3 && strcmp(argv[1], "--device") == 0) {
        device = argv[2];
        if (strcmp(device, "cpu") != 0 && strcmp(device, "cuda") != 0) {
            fprintf(stderr, "bert_trace: --device %s: expected cpu or cuda\n", device);
            return 2;
        }
        argv += 2;
        argc -= 2;
    }
    if (argc != 7 && argc != 8) {
        fprintf(stderr, "usage: bert_trace [--device cpu|cuda] RUN_DIR EMBEDDINGS.f32 MASK.f32 B S OUT.bin [MODEL_DIR]\n");
        return 2;
    }
    int B = atoi(argv[4]), S = atoi(argv[5]);
    if (B < 1 || B > 4096 || S < 1 || S > 4096) {
        fprintf(stderr, "bert_trace: B %s / S %s: expected 1..4096\n", argv[4], argv[5]);
        return 2;
    }
    if (trace(argv[1], argv[2], argv[3], B, S, argv[6], argc == 8 ? argv[7] : NULL, device) != QD_OK) {
        fprintf(stderr, "bert_trace: %s\n", qd_error_message());
        return 1;
    }
    return 0;
}
