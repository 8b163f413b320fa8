/* src/bert/stsb.c: STS-B evaluation of a sentence-embedding BERT: Spearman correlation between
 * cosine(embed(s1), embed(s2)) and the gold score (sentence-transformers' evaluator metric). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bert/bert_internal.h"

#define QD_STSB_MAX_LEN 256 /* all-MiniLM-L6-v2 sentence_bert_config.json max_seq_length */
#define QD_STSB_BATCH 32

qd_status qd_bert_eval_stsb_enc(const qd_bert_model *m, const qd_sts_set *set, const qd_bert_encoder *enc,
                                double *spearman, double *cos_out) {
    const int H = m->cfg.hidden, n = set->n;
    float *ea = malloc((size_t)n * H * sizeof(float)), *eb = malloc((size_t)n * H * sizeof(float));
    double *cos = malloc((size_t)n * sizeof(double)), *gold = malloc((size_t)n * sizeof(double));
    qd_status rc = QD_OK;
    if (!ea || !eb || !cos || !gold) rc = qd_errorf(QD_ERR_INTERNAL, "STS-B: out of memory");
    if (rc == QD_OK) rc = qd_bert_sentences_enc(m, (const char *const *)set->a, n, QD_STSB_MAX_LEN, QD_STSB_BATCH, 0, enc, ea);
    if (rc == QD_OK) rc = qd_bert_sentences_enc(m, (const char *const *)set->b, n, QD_STSB_MAX_LEN, QD_STSB_BATCH, 0, enc, eb);
    if (rc == QD_OK) {
        for (int i = 0; i < n; i++) {
            /* embeddings are L2-normalised: cosine = dot (sentence-transformers divides again;
             * the difference is below float rounding) */
            double d = 0;
            for (int k = 0; k < H; k++) d += (double)ea[(size_t)i * H + k] * eb[(size_t)i * H + k];
            cos[i] = d;
            gold[i] = set->score[i];
        }
        rc = qd_metric_spearman(cos, gold, n, spearman);
        if (cos_out) memcpy(cos_out, cos, (size_t)n * sizeof(double));
    }
    free(ea); free(eb); free(cos); free(gold);
    return rc;
}

/* The host encoder with a hook, as a qd_bert_encoder. */
typedef struct hook_enc {
    const qd_bert_model *m;
    qd_bert_act_hook hook;
    void *hctx;
} hook_enc;
static qd_status hook_encode(void *ctx, const int *ids, const int *mask, int B, int S, float *hid) {
    const hook_enc *h = ctx;
    return qd_bert_encode(h->m, ids, NULL, mask, B, S, hid, h->hook, h->hctx);
}

qd_status qd_bert_eval_stsb_model(const qd_bert_model *m, const qd_sts_set *set, qd_bert_act_hook hook, void *hctx,
                                  double *spearman) {
    hook_enc h = {m, hook, hctx};
    qd_bert_encoder e = {hook_encode, &h, NULL};
    return qd_bert_eval_stsb_enc(m, set, &e, spearman, NULL);
}

qd_status qd_bert_eval_stsb(const char *model_dir, const char *stsb_path, int max_n, double *spearman, int *n_pairs) {
    char path[4096];
    struct stat sb;
    if (stat(stsb_path, &sb) == 0 && S_ISDIR(sb.st_mode)) snprintf(path, sizeof path, "%s/original/sts-test.tsv", stsb_path);
    else snprintf(path, sizeof path, "%s", stsb_path);
    qd_sts_set set;
    QD_TRY(qd_sts_read(path, &set));
    if (max_n > 0 && max_n < set.n) { /* qd_sts_free frees only the first n: free the tail now */
        for (int i = max_n; i < set.n; i++) { free(set.a[i]); free(set.b[i]); }
        set.n = max_n;
    }
    qd_bert_model *m;
    qd_status rc = qd_bert_load(model_dir, &m);
    if (rc == QD_OK) {
        rc = qd_bert_eval_stsb_model(m, &set, NULL, NULL, spearman);
        qd_bert_free(m);
    }
    if (n_pairs) *n_pairs = set.n;
    qd_sts_free(&set);
    return rc;
}

/* SST-2 (GLUE single-sentence classification): argmax of the classifier logits ([CLS] ->
 * pooler tanh -> classifier, qd_bert_classify) vs the gold label; ties go to the lower class
 * (numpy argmax). The head itself is never quantized; the hook quantizes the encoder. */
#define QD_SST2_BATCH 32
qd_status qd_bert_eval_sst2_model(const qd_bert_model *m, const qd_glue_set *set, int max_len, qd_bert_act_hook hook,
                                  void *hctx, double *accuracy, int *pred) {
    hook_enc h = {m, hook, hctx};
    qd_bert_encoder e = {hook_encode, &h, NULL};
    return qd_bert_eval_sst2_enc(m, set, max_len, &e, accuracy, pred);
}

qd_status qd_bert_eval_sst2_enc(const qd_bert_model *m, const qd_glue_set *set, int max_len, const qd_bert_encoder *enc,
                                double *accuracy, int *pred) {
    const int n = set->n, NL = m->cfg.num_labels;
    if (NL < 2) return qd_errorf(QD_ERR_DATA, "SST-2: the model has %d classifier labels, need >= 2 (classifier.weight)", NL);
    float *lg = malloc((size_t)n * NL * sizeof(float));
    int *pr = pred ? pred : malloc((size_t)n * sizeof(int));
    qd_status rc = QD_OK;
    if (!lg || !pr) rc = qd_errorf(QD_ERR_INTERNAL, "SST-2: out of memory");
    if (rc == QD_OK) rc = qd_bert_sentences_enc(m, (const char *const *)set->a, n, max_len, QD_SST2_BATCH, 1, enc, lg);
    if (rc == QD_OK) {
        for (int i = 0; i < n; i++) {
            int best = 0;
            for (int k = 1; k < NL; k++)
                if (lg[(size_t)i * NL + k] > lg[(size_t)i * NL + best]) best = k;
            pr[i] = best;
        }
        *accuracy = qd_metric_accuracy(pr, set->label, n);
    }
    free(lg);
    if (pr != pred) free(pr);
    return rc;
}
