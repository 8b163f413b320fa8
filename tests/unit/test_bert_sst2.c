/* SST-2 classifier path on a tiny random BertForSequenceClassification (tests/fixtures/bert/
 * sst2_tiny, written by tools/make_bert_sst2_fixture.py; 2 layers, hidden 32, 713-token vocab):
 * (a) token ids of the first golden sentences equal HuggingFace BertTokenizer's,
 * (b) C FP32 logits ([CLS] -> pooler tanh -> classifier) equal the numpy float64 reference to
 *     1e-4 relative (abs floor 1e-5),
 * (c) the argmax prediction of all 872 sentences of assets/sst2/sst2_dev.tsv equals the
 *     reference's and the accuracy is the reference's exactly (smallest reference margin 9e-3),
 * (d) a model without a classifier head is refused with QD_ERR_DATA. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "qdrop/bert.h"

#define FIX "tests/fixtures/bert/sst2_tiny"

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

int main(void) {
    char *txt = slurp(FIX "/golden.json");
    cJSON *g = txt ? cJSON_Parse(txt) : NULL;
    if (!g) { printf("FAIL: cannot read %s/golden.json\n", FIX); return 1; }
    qd_bert_model *m = NULL;
    if (qd_bert_load(FIX, &m) != QD_OK) { printf("FAIL: load: %s\n", qd_error_message()); return 1; }
    int max_len = cJSON_GetObjectItem(g, "max_len")->valueint;
    if (m->cfg.num_labels != 2 || !m->pool_w || !m->cls_w) { printf("FAIL: no classifier head loaded\n"); return 1; }

    /* (a) + (b) */
    cJSON *sents = cJSON_GetObjectItem(g, "sentences");
    int ns = cJSON_GetArraySize(sents);
    const char **text = malloc(sizeof(char *) * (size_t)ns);
    float *lg = malloc(sizeof(float) * 2 * (size_t)ns);
    int *ids = malloc(sizeof(int) * (size_t)max_len * 3);
    double worst = 0;
    for (int i = 0; i < ns; i++) {
        cJSON *s = cJSON_GetArrayItem(sents, i);
        text[i] = cJSON_GetObjectItem(s, "text")->valuestring;
        qd_bert_encoding e = {ids, ids + max_len, ids + 2 * max_len, 0};
        if (qd_wp_encode(m->tok, text[i], NULL, max_len, 0, &e) != QD_OK) { printf("FAIL: encode %d\n", i); return 1; }
        cJSON *gi = cJSON_GetObjectItem(s, "ids");
        int same = e.len == cJSON_GetArraySize(gi);
        for (int k = 0; same && k < e.len; k++) same = ids[k] == cJSON_GetArrayItem(gi, k)->valueint;
        CHECK(same, "ids of sentence %d differ from HuggingFace (%d vs %d tokens)", i, e.len, cJSON_GetArraySize(gi));
    }
    /* batch 5: several length-sorted batches, padding inside each */
    if (qd_bert_classify_sentences(m, text, ns, max_len, 5, lg, NULL, NULL) != QD_OK) { printf("FAIL: %s\n", qd_error_message()); return 1; }
    for (int i = 0; i < ns; i++) {
        cJSON *ref = cJSON_GetObjectItem(cJSON_GetArrayItem(sents, i), "logits");
        for (int k = 0; k < 2; k++) {
            double r = cJSON_GetArrayItem(ref, k)->valuedouble, err = fabs(lg[2 * i + k] - r) / fmax(fabs(r), 0.1);
            if (err > worst) worst = err;
            CHECK(fabs(lg[2 * i + k] - r) <= 1e-4 * fabs(r) + 1e-5, "sentence %d logit %d: C %.7g numpy %.7g", i, k,
                  lg[2 * i + k], r);
        }
    }
    printf("golden sentences %d: worst logit error (rel., floor 0.1) %.3g\n", ns, worst);

    /* (c) */
    qd_glue_set dev;
    if (qd_glue_read_sst2("assets/sst2/sst2_dev.tsv", &dev) != QD_OK) { printf("FAIL: %s\n", qd_error_message()); return 1; }
    const char *pred_ref = cJSON_GetObjectItem(g, "pred")->valuestring;
    double acc_ref = cJSON_GetObjectItem(g, "fp32_accuracy")->valuedouble, acc = -1;
    int *pred = malloc(sizeof(int) * (size_t)dev.n);
    if (dev.n != 872 || (int)strlen(pred_ref) != dev.n) { printf("FAIL: %d dev sentences, %zu reference predictions\n", dev.n, strlen(pred_ref)); return 1; }
    if (qd_bert_eval_sst2_model(m, &dev, max_len, NULL, NULL, &acc, pred) != QD_OK) { printf("FAIL: %s\n", qd_error_message()); return 1; }
    int diff = 0;
    for (int i = 0; i < dev.n; i++) diff += pred[i] != pred_ref[i] - '0';
    printf("{\"sst2_dev\": %d, \"fp32_accuracy\": %.6f, \"reference\": %.6f, \"predictions_differing\": %d}\n", dev.n, acc, acc_ref, diff);
    CHECK(diff == 0 && fabs(acc - acc_ref) <= 1e-12, "predictions differ from the numpy reference");

    /* (d) no head: drop it and ask again */
    free(m->cls_w);
    m->cls_w = NULL;
    CHECK_STATUS(qd_bert_classify_sentences(m, text, 1, max_len, 1, lg, NULL, NULL), QD_ERR_DATA, "headless model accepted");
    (void)qd_error_message();

    free(pred);
    qd_glue_free(&dev);
    free(text); free(lg); free(ids);
    qd_bert_free(m);
    cJSON_Delete(g);
    free(txt);
    return qd_test_summary("test_bert_sst2");
}
