/* GLUE/STS metrics on hand-computed values, and the STS-B / SST-2 TSV readers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "qdrop/bert.h"

#define NEAR(a, b) (fabs((a) - (b)) < 1e-12)

int main(void) {
    /* pred/gold: TP=3 (0,1,2), FN=1 (3), FP=2 (4,5), TN=2 (6,7) */
    int pred[8] = {1, 1, 1, 0, 1, 1, 0, 0}, gold[8] = {1, 1, 1, 1, 0, 0, 0, 0};
    CHECK(NEAR(qd_metric_accuracy(pred, gold, 8), 5.0 / 8), "accuracy %g", qd_metric_accuracy(pred, gold, 8));
    /* F1 = 2TP / (2TP + FP + FN) = 6 / 9 */
    CHECK(NEAR(qd_metric_f1(pred, gold, 8), 6.0 / 9), "f1 %g", qd_metric_f1(pred, gold, 8));
    /* MCC = (3*2 - 2*1) / sqrt(5*4*4*3) = 4 / sqrt(240) */
    CHECK(NEAR(qd_metric_matthews(pred, gold, 8), 4.0 / sqrt(240.0)), "mcc %g", qd_metric_matthews(pred, gold, 8));
    int allz[4] = {0, 0, 0, 0}, g4[4] = {1, 0, 1, 0};
    CHECK(qd_metric_matthews(allz, g4, 4) == 0.0 && qd_metric_f1(allz, g4, 4) == 0.0, "degenerate predictions -> 0");

    double x[5] = {1, 2, 3, 4, 5}, y[5] = {2, 4, 5, 4, 5}, r;
    /* Pearson: mx 3, my 4; sxy = 6, sxx = 10, syy = 6 -> 6 / sqrt(60) */
    CHECK(qd_metric_pearson(x, y, 5, &r) == QD_OK && NEAR(r, 6.0 / sqrt(60.0)), "pearson %g", r);
    /* Spearman with ties: ranks y = 1, 2.5, 4.5, 2.5, 4.5; rx = 1..5 -> sxy = 4 + .5 + 0 - .5 + 3 = 7,
     * sxx = 10, syy = 9 -> 7 / sqrt(90) */
    CHECK(qd_metric_spearman(x, y, 5, &r) == QD_OK && NEAR(r, 7.0 / sqrt(90.0)), "spearman %g", r);
    double z[5] = {5, 4, 3, 2, 1};
    CHECK(qd_metric_spearman(x, z, 5, &r) == QD_OK && NEAR(r, -1.0), "spearman reversed %g", r);
    double c[5] = {1, 1, 1, 1, 1};
    qd_error_clear();
    CHECK(qd_metric_spearman(x, c, 5, &r) == QD_ERR_DATA, "constant input refused");
    CHECK(qd_metric_pearson(x, y, 1, &r) == QD_ERR_DATA, "n=1 refused");

    /* readers */
    qd_sts_set s;
    CHECK(qd_sts_read("assets/stsb/sts-test.tsv", &s) == QD_OK, "sts read: %s", qd_error_message());
    CHECK(s.n == 1379 && s.score[0] == 2.5f && strcmp(s.a[0], "A girl is styling her hair.") == 0 &&
          strcmp(s.b[0], "A girl is brushing her hair.") == 0, "sts first row");
    qd_sts_free(&s);
    const char *tmp = "build-bert-metrics-tmp.tsv";
    FILE *f = fopen(tmp, "w");
    fputs("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
          "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA man.\tA person.\t4.250\n", f);
    fclose(f);
    CHECK(qd_sts_read(tmp, &s) == QD_OK && s.n == 1 && s.score[0] == 4.25f && strcmp(s.b[0], "A person.") == 0, "GLUE STS-B format");
    qd_sts_free(&s);
    f = fopen(tmp, "w");
    fputs("g\tf\ty\tid\tnotanumber\ta\tb\n", f);
    fclose(f);
    qd_error_clear();
    CHECK(qd_sts_read(tmp, &s) == QD_ERR_DATA && strstr(qd_error_message(), ":1:"), "bad score: %s", qd_error_message());
    qd_glue_set g;
    f = fopen(tmp, "w");
    fputs("sentence\tlabel\nit 's a charming journey . \t1\nbad film\t0\n", f);
    fclose(f);
    CHECK(qd_glue_read_sst2(tmp, &g) == QD_OK && g.n == 2 && g.label[0] == 1 && g.label[1] == 0 &&
          strcmp(g.a[1], "bad film") == 0, "sst2 reader");
    qd_glue_free(&g);
    f = fopen(tmp, "w");
    fputs("sentence\tlabel\nx\t2\n", f);
    fclose(f);
    qd_error_clear();
    CHECK(qd_glue_read_sst2(tmp, &g) == QD_ERR_DATA && strstr(qd_error_message(), ":2:"), "bad label: %s", qd_error_message());
    remove(tmp);
    return qd_test_summary("test_bert_metrics");
}
