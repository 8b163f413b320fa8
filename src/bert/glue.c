/* src/bert/glue.c: STS-B / GLUE readers and metrics (accuracy, F1, Matthews, Pearson, Spearman
 * with average ranks for ties, as scipy.stats). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bert/bert_internal.h"

/* Split line in place on TAB; returns field count (<= cap). */
static int split_tabs(char *line, char **f, int cap) {
    int n = 0;
    for (char *p = line; n < cap;) {
        f[n++] = p;
        char *t = strchr(p, '\t');
        if (!t) break;
        *t = 0;
        p = t + 1;
    }
    return n;
}

static int parse_float(const char *s, float *v) {
    char *e;
    double d = strtod(s, &e);
    if (e == s || *e || !isfinite(d)) return 0;
    *v = (float)d;
    return 1;
}

void qd_sts_free(qd_sts_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) { free(s->a[i]); free(s->b[i]); }
    free(s->a); free(s->b); free(s->score);
    memset(s, 0, sizeof *s);
}

qd_status qd_sts_read(const char *path, qd_sts_set *out) {
    memset(out, 0, sizeof *out);
    char *buf;
    size_t len;
    QD_TRY(qd_bert_read_file(path, &buf, &len));
    int lines = 1;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    out->a = calloc((size_t)lines, sizeof(char *));
    out->b = calloc((size_t)lines, sizeof(char *));
    out->score = calloc((size_t)lines, sizeof(float));
    if (!out->a || !out->b || !out->score) { free(buf); qd_sts_free(out); return qd_errorf(QD_ERR_INTERNAL, "%s: out of memory", path); }
    qd_status rc = QD_OK;
    int glue = strncmp(buf, "index\t", 6) == 0, lineno = 0;
    char *p = buf;
    while (*p && rc == QD_OK) {
        char *e = strchr(p, '\n');
        if (e) *e = 0;
        lineno++;
        size_t l = strlen(p);
        if (l && p[l - 1] == '\r') p[--l] = 0;
        char *f[16];
        int nf = l ? split_tabs(p, f, 16) : 0;
        if (nf && !(glue && lineno == 1)) {
            /* GLUE: index genre filename year old_index source1 source2 s1 s2 score;
             * original: genre filename year id score s1 s2 [extra] */
            int is = glue ? 9 : 4, ia = glue ? 7 : 5, ib = glue ? 8 : 6;
            if (nf <= (glue ? 9 : 6)) rc = qd_errorf(QD_ERR_DATA, "%s:%d: %d tab-separated fields, expected %d", path, lineno, nf, glue ? 10 : 7);
            else if (!parse_float(f[is], &out->score[out->n]))
                rc = qd_errorf(QD_ERR_DATA, "%s:%d: score '%s' is not a number", path, lineno, f[is]);
            else {
                out->a[out->n] = strdup(f[ia]);
                out->b[out->n] = strdup(f[ib]);
                out->n++;
                if (!out->a[out->n - 1] || !out->b[out->n - 1]) rc = qd_errorf(QD_ERR_INTERNAL, "%s: out of memory", path);
            }
        }
        if (!e) break;
        p = e + 1;
    }
    free(buf);
    if (rc == QD_OK && out->n == 0) rc = qd_errorf(QD_ERR_DATA, "%s: no sentence pairs", path);
    if (rc != QD_OK) qd_sts_free(out);
    return rc;
}

void qd_glue_free(qd_glue_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) { free(s->a[i]); if (s->b) free(s->b[i]); }
    free(s->a); free(s->b); free(s->label);
    memset(s, 0, sizeof *s);
}

qd_status qd_glue_read_sst2(const char *path, qd_glue_set *out) {
    memset(out, 0, sizeof *out);
    char *buf;
    size_t len;
    QD_TRY(qd_bert_read_file(path, &buf, &len));
    int lines = 1;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    out->a = calloc((size_t)lines, sizeof(char *));
    out->b = calloc((size_t)lines, sizeof(char *));
    out->label = calloc((size_t)lines, sizeof(int));
    if (!out->a || !out->b || !out->label) { free(buf); qd_glue_free(out); return qd_errorf(QD_ERR_INTERNAL, "%s: out of memory", path); }
    qd_status rc = QD_OK;
    int lineno = 0, col_s = -1, col_l = -1;
    char *p = buf;
    while (*p && rc == QD_OK) {
        char *e = strchr(p, '\n');
        if (e) *e = 0;
        lineno++;
        size_t l = strlen(p);
        if (l && p[l - 1] == '\r') p[--l] = 0;
        char *f[8];
        int nf = l ? split_tabs(p, f, 8) : 0;
        if (lineno == 1) {
            for (int i = 0; i < nf; i++) {
                if (strcmp(f[i], "sentence") == 0) col_s = i;
                if (strcmp(f[i], "label") == 0) col_l = i;
            }
            if (col_s < 0 || col_l < 0) rc = qd_errorf(QD_ERR_DATA, "%s:1: header lacks 'sentence' and 'label' columns", path);
        } else if (nf) {
            if (nf <= col_s || nf <= col_l) rc = qd_errorf(QD_ERR_DATA, "%s:%d: %d fields", path, lineno, nf);
            else if (strcmp(f[col_l], "0") != 0 && strcmp(f[col_l], "1") != 0)
                rc = qd_errorf(QD_ERR_DATA, "%s:%d: label '%s' is not 0 or 1", path, lineno, f[col_l]);
            else {
                out->label[out->n] = f[col_l][0] - '0';
                out->a[out->n] = strdup(f[col_s]);
                if (!out->a[out->n]) rc = qd_errorf(QD_ERR_INTERNAL, "%s: out of memory", path);
                out->n++;
            }
        }
        if (!e) break;
        p = e + 1;
    }
    free(buf);
    if (rc == QD_OK && out->n == 0) rc = qd_errorf(QD_ERR_DATA, "%s: no examples", path);
    if (rc != QD_OK) qd_glue_free(out);
    return rc;
}

double qd_metric_accuracy(const int *pred, const int *gold, int n) {
    int c = 0;
    for (int i = 0; i < n; i++) c += pred[i] == gold[i];
    return n > 0 ? (double)c / n : 0.0;
}

double qd_metric_f1(const int *pred, const int *gold, int n) {
    double tp = 0, fp = 0, fn = 0;
    for (int i = 0; i < n; i++) {
        tp += pred[i] == 1 && gold[i] == 1;
        fp += pred[i] == 1 && gold[i] != 1;
        fn += pred[i] != 1 && gold[i] == 1;
    }
    return tp > 0 ? 2 * tp / (2 * tp + fp + fn) : 0.0; /* sklearn: 0 when no true positive */
}

double qd_metric_matthews(const int *pred, const int *gold, int n) {
    double tp = 0, tn = 0, fp = 0, fn = 0;
    for (int i = 0; i < n; i++) {
        tp += pred[i] == 1 && gold[i] == 1;
        tn += pred[i] != 1 && gold[i] != 1;
        fp += pred[i] == 1 && gold[i] != 1;
        fn += pred[i] != 1 && gold[i] == 1;
    }
    double den = sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn));
    return den > 0 ? (tp * tn - fp * fn) / den : 0.0; /* sklearn convention for a zero denominator */
}

qd_status qd_metric_pearson(const double *x, const double *y, int n, double *r) {
    if (n < 2) return qd_errorf(QD_ERR_DATA, "pearson: need at least 2 values, got %d", n);
    double mx = 0, my = 0;
    for (int i = 0; i < n; i++) { mx += x[i]; my += y[i]; }
    mx /= n;
    my /= n;
    double sxy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < n; i++) {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx) * (x[i] - mx);
        syy += (y[i] - my) * (y[i] - my);
    }
    if (sxx <= 0 || syy <= 0) return qd_errorf(QD_ERR_DATA, "pearson: constant input");
    *r = sxy / sqrt(sxx * syy);
    return QD_OK;
}

static const double *g_rank_keys;
static int cmp_key(const void *a, const void *b) {
    double x = g_rank_keys[*(const int *)a], y = g_rank_keys[*(const int *)b];
    return x < y ? -1 : x > y ? 1 : (*(const int *)a - *(const int *)b);
}

/* 1-based ranks, ties get their average rank. */
static int ranks(const double *v, int n, double *r) {
    int *o = malloc((size_t)n * sizeof *o);
    if (!o) return 0;
    for (int i = 0; i < n; i++) o[i] = i;
    g_rank_keys = v; /* qsort has no context argument in C11 */
    qsort(o, (size_t)n, sizeof *o, cmp_key);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && v[o[j + 1]] == v[o[i]]) j++;
        double avg = 0.5 * (i + j) + 1.0;
        for (int k = i; k <= j; k++) r[o[k]] = avg;
        i = j + 1;
    }
    free(o);
    return 1;
}

qd_status qd_metric_spearman(const double *x, const double *y, int n, double *rho) {
    if (n < 2) return qd_errorf(QD_ERR_DATA, "spearman: need at least 2 values, got %d", n);
    double *rx = malloc((size_t)n * sizeof *rx), *ry = malloc((size_t)n * sizeof *ry);
    if (!rx || !ry || !ranks(x, n, rx) || !ranks(y, n, ry)) {
        free(rx); free(ry);
        return qd_errorf(QD_ERR_INTERNAL, "spearman: out of memory");
    }
    qd_status rc = qd_metric_pearson(rx, ry, n, rho);
    free(rx);
    free(ry);
    return rc;
}
