/* FP32 forward of an ONNX model on the CPU backend against ONNX Runtime's logits (issue 3).
 * Driven by tests/onnx_parity.py, which fills weight-free fixtures and computes the reference:
 *   test_onnx_parity MODEL.onnx X.npy REF.npy EXPECTED_UNITS
 * Checks the unit count (§8.1) and max|engine - ort| / max|ort| <= 1e-4. EXPECTED_UNITS -1 skips
 * the unit count; -2 also skips the quantizer plan (FP32 forward only: graphs whose layers the
 * quantizer plan does not cover yet, e.g. MatMul on [N, T, F] activations).
 * Optional: EXPORT.onnx OPSET writes the graph with the exporter at that opset (no quantizers
 * placed: the FP32 graph) for the caller to run in ONNX Runtime. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qdrop/backend.h"
#include "qdrop/config.h"
#include "qdrop/data.h"
#include "qdrop/exec.h"
#include "qdrop/export.h"
#include "qdrop/graph.h"

int main(int argc, char **argv) {
    if (argc != 5 && argc != 7) {
        fprintf(stderr, "usage: %s MODEL.onnx X.npy REF.npy EXPECTED_UNITS [EXPORT.onnx OPSET]\n", argv[0]);
        return 2;
    }
    const char *model = argv[1];
    int want_units = atoi(argv[4]);
    qd_graph *g = NULL;
    if (qd_graph_prepare(model, &g) != QD_OK) {
        fprintf(stderr, "FAIL prepare: %s\n", qd_error_message());
        return 1;
    }
    qd_quant_plan_opts po = {4, 4, 1, 0};
    if (want_units != -2 && qd_graph_place_quantizers(g, &po) != QD_OK) {
        fprintf(stderr, "FAIL place_quantizers: %s\n", qd_error_message());
        return 1;
    }
    int fails = 0;
    int nln = 0, ngelu = 0, nmsm = 0; /* transformer ops as imported (onnx_parity.py checks them) */
    for (int i = 0; i < g->nnodes; i++) {
        nln += g->nodes[i].op == QD_OP_LAYERNORM;
        ngelu += g->nodes[i].op == QD_OP_GELU;
        nmsm += g->nodes[i].op == QD_OP_SOFTMAX && g->nodes[i].ninputs > 1;
    }
    if (nln + ngelu + nmsm) printf("%s: LayerNormalization %d, Gelu %d, masked Softmax %d\n", model, nln, ngelu, nmsm);
    if (want_units >= 0 && g->nunits != want_units) {
        fprintf(stderr, "FAIL %s: %d units, expected %d\n", model, g->nunits, want_units);
        fails++;
    }
    qd_npy x, ref;
    memset(&x, 0, sizeof x);
    memset(&ref, 0, sizeof ref);
    if (qd_npy_load(argv[2], &x) != QD_OK || qd_npy_load(argv[3], &ref) != QD_OK || !x.f || !ref.f) {
        fprintf(stderr, "FAIL reading npy: %s\n", qd_error_message());
        return 1;
    }
    int batch = (int)x.dims[0];
    const qd_value *in = &g->values[g->inputs[0]], *out = &g->values[g->outputs[0]];
    if (x.numel != batch * qd_value_sample_numel(in) || ref.numel != batch * qd_value_sample_numel(out)) {
        fprintf(stderr, "FAIL %s: npy sizes do not match the model (%lld, %lld)\n", model, (long long)x.numel,
                (long long)ref.numel);
        return 1;
    }
    qd_backend *b = NULL;
    qd_backend_options bo = {.threads = 2, .deterministic = 1};
    qd_exec *e = NULL;
    if (qd_backend_create("cpu", &bo, &b) != QD_OK || qd_exec_create(g, b, batch, &e) != QD_OK) {
        fprintf(stderr, "FAIL backend/exec: %s\n", qd_error_message());
        return 1;
    }
    float *y = malloc(sizeof(float) * (size_t)ref.numel);
    if (!y || qd_exec_forward_host(e, QD_EXEC_FP, x.f, batch, y) != QD_OK) {
        fprintf(stderr, "FAIL forward: %s\n", qd_error_message());
        return 1;
    }
    double md = 0, mr = 0;
    for (int64_t i = 0; i < ref.numel; i++) {
        double d = fabs((double)y[i] - (double)ref.f[i]);
        if (!(d <= md)) md = d; /* NaN propagates */
        if (fabs(ref.f[i]) > mr) mr = fabs(ref.f[i]);
    }
    double rel = md / (mr > 0 ? mr : 1);
    printf("%s: units %d, batch %d, max|engine-ort| %.3g, max|ort| %.3g, relative %.3g\n", model, g->nunits, batch,
           md, mr, rel);
    if (!(rel <= 1e-4)) {
        fprintf(stderr, "FAIL %s: relative error %.3g > 1e-4\n", model, rel);
        fails++;
    }
    if (argc == 7) {
        qd_config cfg;
        qd_config_defaults(&cfg);
        cfg.onnx_opset = atoi(argv[6]);
        if (qd_export_qdq_onnx(g, &cfg, argv[5]) != QD_OK) {
            fprintf(stderr, "FAIL export: %s\n", qd_error_message());
            fails++;
        }
    }
    free(y);
    qd_exec_free(e);
    qd_backend_destroy(b);
    qd_npy_free(&x);
    qd_npy_free(&ref);
    qd_graph_free(g);
    return fails ? 1 : 0;
}
