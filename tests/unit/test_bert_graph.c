/* The BERT encoder as a qd_graph (src/bert/bert_graph.c) on a tiny random BERT (H 32, 2 heads,
 * FF 64, 2 layers):
 *  (a) the graph on the CPU backend reproduces the C encoder (qd_bert_encode) on a batch with a
 *      padded sequence, valid tokens to 1e-5 relative, and again after changing the padded length;
 *  (b) one unit per encoder layer with the mask as its only outside read, 6 per-channel weight
 *      quantizers per layer, 1 + 8 per layer activation quantizers at the §8.8 sites (the last
 *      layer's output 8-bit), unit inputs/outputs = layer boundaries;
 *  (c) the quantized graph (nearest weights, all sites) matches the C encoder with the same
 *      quantized weights and qd_bert_quant_hook-style fake quant at the same sites. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qmath.h"
#include "qdrop/backend.h"
#include "data/npy_write.h"
#include "qdrop/bert.h"
#include "qdrop/config.h"
#include "qdrop/export.h"
#include "qdrop/exec.h"
#include "qdrop/graph.h"

static int fails = 0;
#define CHECK(c, ...) do { if (!(c)) { fails++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

/* max |a-b| over valid tokens / max |b| */
static double rel_err(const float *a, const float *b, const int *mask, int T, int H) {
    double mx = 0, md = 0;
    for (int t = 0; t < T; t++) {
        if (!mask[t]) continue;
        for (int i = 0; i < H; i++) {
            double d = fabs((double)a[t * H + i] - b[t * H + i]);
            if (d > md) md = d;
            if (fabs(b[t * H + i]) > mx) mx = fabs(b[t * H + i]);
        }
    }
    return md / (mx > 0 ? mx : 1);
}

/* Hook for (c): fake-quantize each site with the graph's quantizer of that site. */
typedef struct { const qd_graph *g; } hook_ctx;
static void site_hook(void *vctx, int layer, qd_bert_site site, float *x, size_t n) {
    const qd_graph *g = ((hook_ctx *)vctx)->g;
    int k = layer < 0 ? 0 : 1 + layer * QD_BERT_LAYER_SITES + (int)site - 1;
    const qd_act_quant *a = &g->act[k];
    for (size_t i = 0; i < n; i++) x[i] = qd_fake_quant(x[i], a->scale, a->zero_point, 0.0f, (float)a->qmax);
}

int main(void) {
    qd_bert_config c;
    memset(&c, 0, sizeof c);
    c.hidden = 32; c.layers = 2; c.heads = 2; c.intermediate = 64; c.max_pos = 32; c.type_vocab = 2; c.vocab = 50;
    c.ln_eps = 1e-12f;
    qd_bert_model *m = NULL;
    if (qd_bert_random(&c, 7, &m) != QD_OK) { printf("FAIL: %s\n", qd_error_message()); return 1; }
    const int B = 3, S = 9, H = c.hidden;
    int ids[3 * 9], mask[3 * 9], lens[3] = {9, 4, 6};
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++) {
            mask[b * S + s] = s < lens[b];
            ids[b * S + s] = s < lens[b] ? 1 + (b * 7 + s * 3) % (c.vocab - 1) : 0;
        }
    float *ref = malloc(sizeof(float) * B * S * H), *emb = malloc(sizeof(float) * B * S * H);
    float *out = malloc(sizeof(float) * B * S * H), *am = malloc(sizeof(float) * B * S);
    CHECK(qd_bert_encode(m, ids, NULL, mask, B, S, ref, NULL, NULL) == QD_OK, "host encode: %s", qd_error_message());
    qd_bert_embed(m, ids, NULL, B, S, emb, NULL, NULL);
    qd_bert_additive_mask(mask, B, S, am);

    qd_graph *g = NULL;
    qd_backend *be = NULL;
    qd_exec *ex = NULL;
    qd_backend_options bo = {.threads = 1};
    if (qd_bert_build_graph(m, S, &g) != QD_OK || qd_cpu_backend_create(&bo, &be) != QD_OK ||
        qd_exec_create(g, be, B, &ex) != QD_OK) {
        printf("FAIL: setup: %s\n", qd_error_message());
        return 1;
    }
    /* (a) FP32 */
    CHECK(qd_exec_bind(ex, g->inputs[1], am) == QD_OK, "bind");
    CHECK(qd_exec_run(ex, QD_EXEC_FP, 0, g->nnodes, g->inputs[0], emb, B, g->outputs[0], out) == QD_OK, "run: %s",
          qd_error_message());
    double e = rel_err(out, ref, mask, B * S, H);
    printf("FP32 graph vs C encoder: max rel error %.3g\n", e);
    CHECK(e < 1e-5, "FP32 graph differs from the C encoder: %.3g", e);
    /* shorter padding: the first 6 tokens of sentences 2 and 3 */
    {
        const int S2 = 6, B2 = 2;
        int ids2[12], mask2[12];
        for (int b = 0; b < B2; b++)
            for (int s = 0; s < S2; s++) { ids2[b * S2 + s] = ids[(b + 1) * S + s]; mask2[b * S2 + s] = mask[(b + 1) * S + s]; }
        float ref2[12 * 32], emb2[12 * 32], out2[12 * 32], am2[12];
        CHECK(qd_bert_encode(m, ids2, NULL, mask2, B2, S2, ref2, NULL, NULL) == QD_OK, "host encode S2");
        qd_bert_embed(m, ids2, NULL, B2, S2, emb2, NULL, NULL);
        qd_bert_additive_mask(mask2, B2, S2, am2);
        CHECK(qd_bert_graph_set_seq(g, S2) == QD_OK, "set_seq: %s", qd_error_message());
        CHECK(qd_bert_graph_seq_len(g) == S2, "seq len");
        CHECK(qd_exec_bind(ex, g->inputs[1], am2) == QD_OK, "bind");
        CHECK(qd_exec_run(ex, QD_EXEC_FP, 0, g->nnodes, g->inputs[0], emb2, B2, g->outputs[0], out2) == QD_OK, "run S2: %s",
              qd_error_message());
        double e2 = rel_err(out2, ref2, mask2, B2 * S2, H);
        CHECK(e2 < 1e-5, "FP32 graph at S %d differs: %.3g", S2, e2);
        CHECK(qd_bert_graph_set_seq(g, S) == QD_OK, "set_seq back");
        CHECK(qd_exec_bind(ex, g->inputs[1], am) == QD_OK, "bind");
    }
    /* (b) units and quantizers */
    CHECK(g->nunits == c.layers, "%d units for %d layers", g->nunits, c.layers);
    CHECK(qd_bert_graph_place_quantizers(g, 4, 4, 1) == QD_OK, "place: %s", qd_error_message());
    CHECK(g->nwq == 6 * c.layers && g->nact == 1 + 8 * c.layers, "%d weight / %d act quantizers", g->nwq, g->nact);
    for (int l = 0; l < g->nunits && l < c.layers; l++) {
        const qd_unit *u = &g->units[l];
        CHECK(u->nlayers == 6, "unit %d has %d layers", l, u->nlayers);
        CHECK(u->input_value == (l == 0 ? g->nodes[0].outputs[0] : g->units[l - 1].output_value), "unit %d input", l);
        int outside = 0;
        for (int i = u->node_begin; i < u->node_end; i++)
            for (int k = 0; k < g->nodes[i].ninputs; k++) {
                int v = g->nodes[i].inputs[k];
                if (v < 0 || g->values[v].is_const || v == u->input_value) continue;
                int p = g->values[v].producer;
                if (p < u->node_begin || p >= u->node_end) { outside++; CHECK(v == g->inputs[1], "unit %d reads %s", l, g->values[v].name); }
            }
        CHECK(outside == 1, "unit %d: %d outside reads (the mask of its Softmax only)", l, outside);
        for (int j = 0; j < QD_BERT_LAYER_SITES; j++) {
            const qd_act_quant *a = &g->act[1 + l * QD_BERT_LAYER_SITES + j];
            CHECK(a->unit == l, "site %d of layer %d owned by unit %d", j, l, a->unit);
            int want = (l == c.layers - 1 && j == 7) ? 8 : 4;
            CHECK(a->bits == want, "site %d of layer %d: %d bits", j, l, a->bits);
        }
        CHECK(g->act[1 + l * 8 + 7].value == u->output_value, "OUT_LN quantizer on the unit output");
    }
    CHECK(g->act[0].unit == -1 && g->act[0].value == g->units[0].input_value, "EMB_LN quantizer");
    /* (c) quantized: nearest weights (min/max ranges), activation ranges from the FP values */
    qd_bert_model *qm = NULL;
    CHECK(qd_bert_random(&c, 7, &qm) == QD_OK, "qm");
    for (int k = 0; k < g->nwq; k++) {
        qd_weight_quant *w = &g->wq[k];
        const float *W = g->values[w->weight_value].fdata;
        float *dst = qd_bert_linear_weight(&qm->layer[k / 6], k % 6);
        for (int ch = 0; ch < w->channels; ch++) {
            float lo = INFINITY, hi = -INFINITY;
            for (int64_t i = 0; i < w->per_channel; i++) { lo = fminf(lo, W[ch * w->per_channel + i]); hi = fmaxf(hi, W[ch * w->per_channel + i]); }
            qd_range_to_qparams(lo, hi, 0, 15, &w->scale[ch], &w->zero_point[ch]);
            for (int64_t i = 0; i < w->per_channel; i++) {
                size_t ix = (size_t)ch * (size_t)w->per_channel + (size_t)i;
                w->qweight[ix] = qd_fake_quant(W[ix], w->scale[ch], w->zero_point[ch], 0.0f, 15.0f);
                dst[ix] = w->qweight[ix];
            }
        }
    }
    for (int k = 0; k < g->nact; k++) {
        qd_act_quant *a = &g->act[k];
        a->scale = k == 0 ? 0.03f : 0.05f + 0.01f * (float)(k % 5);
        a->zero_point = (float)(a->qmax / 2);
        a->initialized = 1;
    }
    CHECK(qd_exec_sync_quant(ex) == QD_OK, "sync");
    hook_ctx hc = {g};
    float *qin = malloc(sizeof(float) * B * S * H);
    memcpy(qin, emb, sizeof(float) * B * S * H);
    site_hook(&hc, -1, QD_BERT_SITE_EMB_LN, qin, (size_t)B * S * H);
    /* host: encode the quantized input layer by layer with the hook */
    float *hx = malloc(sizeof(float) * B * S * H), *hy = malloc(sizeof(float) * B * S * H);
    memcpy(hx, qin, sizeof(float) * B * S * H);
    for (int l = 0; l < c.layers; l++) {
        CHECK(qd_bert_layer_forward(&qm->cfg, &qm->layer[l], l, hx, mask, B, S, hy, NULL, site_hook, &hc) == QD_OK, "layer");
        memcpy(hx, hy, sizeof(float) * B * S * H);
    }
    CHECK(qd_exec_run(ex, QD_EXEC_QUANT, 0, g->nnodes, g->inputs[0], emb, B, g->outputs[0], out) == QD_OK, "quant run: %s",
          qd_error_message());
    double eq = rel_err(out, hx, mask, B * S, H);
    printf("quantized graph vs C encoder with the same quantizers: max rel error %.3g\n", eq);
    CHECK(eq < 1e-4, "quantized graph differs: %.3g", eq);
    /* (d) for tests/bert_export_test.sh: the QDQ export of this quantized graph, its inputs and the
     * engine's quantized outputs, which ONNX Runtime must reproduce */
    const char *xdir = getenv("QD_BERT_EXPORT_DIR");
    if (xdir) {
        char path[1024];
        qd_config cfg;
        qd_config_defaults(&cfg);
        int64_t ed[3] = {B, S, H}, md[4] = {B, 1, 1, S}, td[2] = {B, S};
        float tok[3 * 9];
        for (int t = 0; t < B * S; t++) tok[t] = (float)mask[t];
        snprintf(path, sizeof path, "%s/model_qdq.onnx", xdir);
        CHECK(qd_export_qdq_onnx(g, &cfg, path) == QD_OK, "export: %s", qd_error_message());
        snprintf(path, sizeof path, "%s/embeddings.npy", xdir);
        CHECK(qd_npy_write_f32(path, emb, 3, ed) == QD_OK, "npy");
        snprintf(path, sizeof path, "%s/attention_mask.npy", xdir);
        CHECK(qd_npy_write_f32(path, am, 4, md) == QD_OK, "npy");
        snprintf(path, sizeof path, "%s/tokens.npy", xdir);
        CHECK(qd_npy_write_f32(path, tok, 2, td) == QD_OK, "npy");
        snprintf(path, sizeof path, "%s/engine_quant.npy", xdir);
        CHECK(qd_npy_write_f32(path, out, 3, ed) == QD_OK, "npy");
        CHECK(qd_exec_run(ex, QD_EXEC_FP, 0, g->nnodes, g->inputs[0], emb, B, g->outputs[0], hy) == QD_OK, "fp run");
        snprintf(path, sizeof path, "%s/engine_fp32.npy", xdir);
        CHECK(qd_npy_write_f32(path, hy, 3, ed) == QD_OK, "npy");
        printf("export written to %s\n", xdir);
    }
    qd_exec_free(ex);
    qd_backend_destroy(be);
    qd_graph_free(g);
    qd_bert_free(m);
    qd_bert_free(qm);
    free(ref); free(emb); free(out); free(am); free(qin); free(hx); free(hy);
    printf("%s\n", fails ? "FAIL" : "PASS");
    return fails ? 1 : 0;
}
