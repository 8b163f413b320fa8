/* src/data/metrics.c: top-1 / top-5 classification accuracy (docs/algorithm.md §11). */
#include <math.h>

#include "qdrop/data.h"

void qd_argmax_rows(const float *logits, int n, int k, int *out) {
    for (int i = 0; i < n; i++) {
        const float *r = logits + (size_t)i * (size_t)k;
        int best = 0;
        float bv = -INFINITY;
        int have = 0;
        for (int j = 0; j < k; j++) {
            if (isnan(r[j])) continue;
            if (!have || r[j] > bv) { bv = r[j]; best = j; have = 1; } /* strict: first maximum wins */
        }
        out[i] = best;
    }
}

qd_status qd_topk_accuracy(const float *logits, const int *labels, int n, int k, double *top1, double *top5) {
    if (n <= 0 || k <= 0) return qd_errorf(QD_ERR_DATA, "accuracy over %d samples of %d classes", n, k);
    int kk = k < 5 ? k : 5;
    long c1 = 0, c5 = 0;
    for (int i = 0; i < n; i++) {
        int y = labels[i];
        if (y < 0 || y >= k)
            return qd_errorf(QD_ERR_DATA, "label %d of sample %d is outside the model's %d classes", y, i, k);
        const float *r = logits + (size_t)i * (size_t)k;
        float v = r[y];
        if (isnan(v)) continue;
        /* rank = classes ahead of y: larger logit, or equal logit and lower index */
        int rank = 0;
        for (int j = 0; j < k; j++)
            if (r[j] > v || (r[j] == v && j < y)) rank++;
        if (rank == 0) c1++;
        if (rank < kk) c5++;
    }
    *top1 = (double)c1 / n;
    *top5 = (double)c5 / n;
    return QD_OK;
}
