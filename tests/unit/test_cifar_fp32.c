/* End-to-end FP32 check of model + data input (issue 3 "Done when"):
 * FP32 ResNet-20 (assets/models/resnet20_cifar10.onnx) on the 10,000 committed CIFAR-10 test
 * JPEGs must give 81.03% +- 0.05 top-1 and agree with PyTorch's per-image argmax
 * (assets/cifar10/fp32_reference_top1.csv, column resnet20) on >= 99.9% of the images.
 * Reference setup (assets/cifar10/PROVENANCE.md): Pillow decoding, ToTensor, Normalize with
 * mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225), no resize.
 * Prints JSON lines with top-1 and the agreement. CPU backend, 2 threads. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qdrop/backend.h"
#include "qdrop/data.h"
#include "qdrop/exec.h"
#include "qdrop/graph.h"

#define MODEL "assets/models/resnet20_cifar10.onnx"
#define TEST_DIR "assets/cifar10/test"
#define REF_CSV "assets/cifar10/fp32_reference_top1.csv"
#define REF_TOP1 0.8103
#define TOP1_TOL 0.0005
#define MIN_AGREE 0.999

/* path (relative to assets/cifar10/) -> reference prediction, in CSV order */
typedef struct ref_row {
    char path[64];
    int label, pred;
} ref_row;

static int load_ref(ref_row **out) {
    FILE *f = fopen(REF_CSV, "r");
    if (!f) return -1;
    char line[256];
    int n = 0, cap = 10000;
    ref_row *r = malloc(sizeof(ref_row) * (size_t)cap);
    if (!r || !fgets(line, sizeof line, f) || strncmp(line, "path,label,resnet20", 19) != 0) {
        free(r);
        fclose(f);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        if (n == cap) break;
        char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
        if (!c1 || !c2 || c1 - line >= 64) continue;
        memcpy(r[n].path, line, (size_t)(c1 - line));
        r[n].path[c1 - line] = 0;
        r[n].label = atoi(c1 + 1);
        r[n].pred = atoi(c2 + 1);
        n++;
    }
    fclose(f);
    *out = r;
    return n;
}

int main(void) {
    qd_graph *g = NULL;
    qd_backend *b = NULL;
    qd_exec *ex = NULL;
    qd_dataset ds;
    memset(&ds, 0, sizeof ds);
    ref_row *ref = NULL;
    float *logits = NULL;
    int *pred = NULL;
    int rc = 1;

    int nref = load_ref(&ref);
    if (nref != 10000) { fprintf(stderr, "FAIL: %s: expected 10000 rows, read %d\n", REF_CSV, nref); goto out; }
    if (qd_graph_prepare(MODEL, &g) != QD_OK) { fprintf(stderr, "FAIL: %s\n", qd_error_message()); goto out; }
    if (g->ninputs != 1 || g->noutputs != 1) { fprintf(stderr, "FAIL: model needs 1 input/1 output\n"); goto out; }
    const qd_value *inv = &g->values[g->inputs[0]], *outv = &g->values[g->outputs[0]];
    if (inv->ndim != 4 || inv->dims[1] != 3 || inv->dims[2] != 32 || inv->dims[3] != 32) {
        fprintf(stderr, "FAIL: model input is not [N,3,32,32]\n");
        goto out;
    }
    int k = (int)outv->dims[outv->ndim - 1];
    if (k != 10) { fprintf(stderr, "FAIL: model has %d classes\n", k); goto out; }

    qd_data_options o;
    memset(&o, 0, sizeof o);
    o.preprocess = QD_PRE_CIFAR;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (int i = 0; i < 3; i++) { o.mean[i] = mean[i]; o.std[i] = std[i]; }
    o.threads = 2;
    if (qd_dataset_load_folder(TEST_DIR, &o, 3, 32, 32, &ds) != QD_OK) { fprintf(stderr, "FAIL: %s\n", qd_error_message()); goto out; }
    if (ds.n != 10000) { fprintf(stderr, "FAIL: %d test images\n", ds.n); goto out; }

    qd_backend_options bo = {.threads = 2, .deterministic = 1};
    if (qd_backend_create("cpu", &bo, &b) != QD_OK) { fprintf(stderr, "FAIL: %s\n", qd_error_message()); goto out; }
    enum { BATCH = 250 };
    if (qd_exec_create(g, b, BATCH, &ex) != QD_OK) { fprintf(stderr, "FAIL: %s\n", qd_error_message()); goto out; }
    logits = malloc(sizeof(float) * (size_t)ds.n * (size_t)k);
    pred = malloc(sizeof(int) * (size_t)ds.n);
    if (!logits || !pred) goto out;
    size_t numel = (size_t)3 * 32 * 32;
    for (int s0 = 0; s0 < ds.n; s0 += BATCH) {
        int nb = ds.n - s0 < BATCH ? ds.n - s0 : BATCH;
        if (qd_exec_forward_host(ex, QD_EXEC_FP, ds.x + (size_t)s0 * numel, nb, logits + (size_t)s0 * (size_t)k) != QD_OK) {
            fprintf(stderr, "FAIL: forward: %s\n", qd_error_message());
            goto out;
        }
    }
    double top1 = 0, top5 = 0;
    if (qd_topk_accuracy(logits, ds.labels, ds.n, k, &top1, &top5) != QD_OK) { fprintf(stderr, "FAIL: %s\n", qd_error_message()); goto out; }
    qd_argmax_rows(logits, ds.n, k, pred);

    /* match by path: dataset paths are "assets/cifar10/test/...", CSV paths "test/..." */
    int agree = 0, matched = 0, label_mismatch = 0;
    for (int i = 0; i < ds.n; i++) {
        const char *rel = strstr(ds.paths[i], "test/");
        /* both lists are in sorted ImageFolder order: try the same index first */
        int j = (i < nref && rel && strcmp(ref[i].path, rel) == 0) ? i : -1;
        for (int t = 0; j < 0 && rel && t < nref; t++)
            if (strcmp(ref[t].path, rel) == 0) j = t;
        if (j < 0) continue;
        matched++;
        label_mismatch += ref[j].label != ds.labels[i];
        agree += ref[j].pred == pred[i];
        if (ref[j].pred != pred[i] && agree + 20 > matched)
            fprintf(stderr, "note: %s: engine %d, PyTorch %d\n", ds.paths[i], pred[i], ref[j].pred);
    }
    double agreement = matched ? (double)agree / matched : 0.0;
    printf("{\"metric\": \"cifar10/resnet20/fp32_top1\", \"value\": %.4f, \"reference\": %.4f}\n", top1, REF_TOP1);
    printf("{\"metric\": \"cifar10/resnet20/fp32_top5\", \"value\": %.4f}\n", top5);
    printf("{\"metric\": \"cifar10/resnet20/fp32_agreement\", \"value\": %.5f, \"images\": %d}\n", agreement, matched);
    rc = 0;
    if (matched != 10000) { fprintf(stderr, "FAIL: %d of 10000 images found in the reference CSV\n", matched); rc = 1; }
    if (label_mismatch) { fprintf(stderr, "FAIL: %d labels differ from the reference CSV\n", label_mismatch); rc = 1; }
    if (fabs(top1 - REF_TOP1) > TOP1_TOL) { fprintf(stderr, "FAIL: top-1 %.4f, want %.4f +- %.4f\n", top1, REF_TOP1, TOP1_TOL); rc = 1; }
    if (agreement < MIN_AGREE) { fprintf(stderr, "FAIL: agreement %.5f < %.3f\n", agreement, MIN_AGREE); rc = 1; }
out:
    free(logits);
    free(pred);
    free(ref);
    qd_dataset_free(&ds);
    if (ex) qd_exec_free(ex);
    if (b) qd_backend_destroy(b);
    if (g) qd_graph_free(g);
    return rc;
}
