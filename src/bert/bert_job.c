/* src/bert/bert_job.c: BERT as a model family of the one reconstruction engine (src/recon/):
 * what the run needs from a HuggingFace BERT directory besides the engine itself.
 *
 *   load:      model (safetensors + config + vocab), calibration sentences, evaluation set;
 *              the encoder graph (bert_graph.c) for sequences padded to S = the longest
 *              calibration sentence (<= data.max_seq_len), its §8.8 quantizers and one unit per
 *              encoder layer; the calibration tensors of the engine: the embeddings-LN output of
 *              every calibration sentence ([ncal, S, H]; the quantized path reads it from the
 *              8-bit embedding tables, the FP path from the FP ones), the additive attention
 *              mask (a side input of every unit) and the loss token weights (recon.h);
 *   ranges:    weight ranges (§3.1 MSE search, per-channel min/max at 8 bits) and activation
 *              ranges (§6.2 on valid tokens only) with the host calibration helpers of
 *              bert_calib.c, copied into the graph's quantizers, weights rounded to nearest;
 *   evaluate:  STS-B Spearman / SST-2 accuracy from the graph's outputs (graph encoder on the
 *              run's backend; pooling, L2 norm and the classifier head stay host FP32 code).
 *
 * Calibration (§8.8: 1,024 examples): the calibration file's sentences shuffled with
 * process.seed, first quant.calibrate of them (STS-B: both sentences of every dev pair; SST-2:
 * the sentences of data.calib_path). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qmath.h"
#include "qdrop/bert.h"
#include "qdrop/bert_job.h"
#include "qdrop/config.h"
#include "qdrop/exec.h"
#include "qdrop/fsutil.h"
#include "qdrop/log.h"
#include "recon/recon.h"

#define QD_BERT_RNG_T_CALIB 0xFFFFFFF2u /* calibration sentence shuffle */
#define QD_BERT_EVAL_BATCH 32
#define QD_BERT_STSB_MAX_LEN 256        /* all-MiniLM-L6-v2 sentence_bert_config.json max_seq_length */

/* Pointers to `want` sentences of the calibration file (Fisher-Yates with the counter RNG). */
static qd_status pick_calibration(const qd_sts_set *dev, const qd_glue_set *glue, int want, uint64_t seed,
                                  const char ***out, int *n_out) {
    int pool = dev ? 2 * dev->n : glue->n;
    const char **all = malloc(sizeof(char *) * (size_t)(pool > 0 ? pool : 1));
    if (!all) return qd_errorf(QD_ERR_INTERNAL, "BERT calibration: out of memory");
    if (dev)
        for (int i = 0; i < dev->n; i++) { all[2 * i] = dev->a[i]; all[2 * i + 1] = dev->b[i]; }
    else
        for (int i = 0; i < glue->n; i++) all[i] = glue->a[i];
    qd_rng_key key = {(uint32_t)seed, (uint32_t)(seed >> 32), 0u, QD_BERT_RNG_T_CALIB};
    for (int i = pool - 1; i > 0; i--) {
        int j = (int)qd_draw_index(key, 0u, (uint32_t)i, (uint32_t)(i + 1));
        const char *t = all[i]; all[i] = all[j]; all[j] = t;
    }
    if (want > pool) {
        qd_log_warn("bert_calib_small", "quant.calibrate %d > %d calibration sentences: using all of them", want, pool);
        want = pool;
    }
    *out = all;
    *n_out = want;
    return QD_OK;
}

/* Embedding rows fake-quantized to 8 bits per row with their min/max range (§8.8: the tables are
 * too large for the §3.1 search; not learned). */
static void fq_rows_minmax(const float *src, float *dst, int rows, int cols, int bits) {
    const int qmax = qd_qmax_for_bits(bits);
    for (int r = 0; r < rows; r++) {
        const float *p = src + (size_t)r * cols;
        float lo = INFINITY, hi = -INFINITY, s, z;
        for (int c = 0; c < cols; c++) { lo = fminf(lo, p[c]); hi = fmaxf(hi, p[c]); }
        qd_range_to_qparams(lo, hi, 0, qmax, &s, &z);
        for (int c = 0; c < cols; c++) dst[(size_t)r * cols + c] = qd_fake_quant(p[c], s, z, 0.0f, (float)qmax);
    }
}

void qd_bert_job_free(qd_bert_job *j) {
    if (!j) return;
    free(j->qword); free(j->qpos); free(j->qtype);
    free(j->calib_q); free(j->calib_fp); free(j->calib_mask); free(j->loss_w);
    qd_bert_calib_free(&j->cal);
    if (j->dev.a) qd_sts_free(&j->dev);
    if (j->test.a) qd_sts_free(&j->test);
    if (j->gcal.a) qd_glue_free(&j->gcal);
    if (j->gval.a) qd_glue_free(&j->gval);
    qd_bert_free(j->fp);
    memset(j, 0, sizeof *j);
}

qd_status qd_bert_job_load(const qd_config *cfg, qd_bert_job *j, qd_graph **gout) {
    memset(j, 0, sizeof *j);
    *gout = NULL;
    j->sst2 = strcmp(cfg->task, "sst2") == 0;
    j->max_len = cfg->max_seq_len;
    if (cfg->mode != QD_MODE_QDROP && cfg->mode != QD_MODE_NODROP && cfg->mode != QD_MODE_NEAREST)
        return qd_errorf(QD_ERR_UNSUPPORTED, "quant.mode %s: model.type bert supports qdrop, nodrop and nearest",
                         qd_mode_name(cfg->mode));
    if (!j->sst2 && strcmp(cfg->task, "stsb") != 0)
        return qd_errorf(QD_ERR_CONFIG, "data.task %s: model.type bert runs the stsb or sst2 task", cfg->task);
    if (!cfg->calib_path[0])
        return qd_errorf(QD_ERR_CONFIG, "data.calib_path: required (%s)", j->sst2 ? "SST-2 TSV sentence<TAB>label" : "STS-B dev TSV");
    qd_status st = qd_bert_load(cfg->model_path, &j->fp);
    const qd_bert_model *fp = j->fp;
    if (st == QD_OK && j->sst2 && (!fp->pool_w || !fp->cls_w || fp->cfg.num_labels < 2))
        st = qd_errorf(QD_ERR_DATA, "%s: data.task sst2 needs a sequence classifier (bert.pooler.dense.* and "
                       "classifier.* with >= 2 labels, e.g. a fine-tuned BertForSequenceClassification); this "
                       "checkpoint has %s", cfg->model_path,
                       !fp->cls_w ? "no classifier head" : !fp->pool_w ? "no pooler" : "a 1-label classifier");
    if (st == QD_OK) st = j->sst2 ? qd_glue_read_sst2(cfg->calib_path, &j->gcal) : qd_sts_read(cfg->calib_path, &j->dev);
    if (st == QD_OK && cfg->eval_enabled) {
        if (!cfg->val_path[0])
            st = qd_errorf(QD_ERR_CONFIG, "data.val_path: required (%s) when eval.enabled",
                           j->sst2 ? "SST-2 dev TSV" : "STS-B test TSV");
        else if (j->sst2) st = qd_glue_read_sst2(cfg->val_path, &j->gval);
        else st = qd_sts_read(cfg->val_path, &j->test);
        if (st == QD_OK && !j->sst2 && cfg->eval_max_images > 0 && cfg->eval_max_images < j->test.n) {
            for (int i = cfg->eval_max_images; i < j->test.n; i++) { free(j->test.a[i]); free(j->test.b[i]); }
            j->test.n = cfg->eval_max_images;
        }
        if (st == QD_OK && j->sst2 && cfg->eval_max_images > 0 && cfg->eval_max_images < j->gval.n) {
            for (int i = cfg->eval_max_images; i < j->gval.n; i++) free(j->gval.a[i]);
            j->gval.n = cfg->eval_max_images;
        }
        j->n_eval = j->sst2 ? j->gval.n : j->test.n;
    }
    const char **sent = NULL;
    int ncal = 0;
    if (st == QD_OK)
        st = pick_calibration(j->sst2 ? NULL : &j->dev, j->sst2 ? &j->gcal : NULL, cfg->calibrate, cfg->seed, &sent, &ncal);
    if (st == QD_OK) st = qd_bert_calib_build(fp, sent, ncal, cfg->max_seq_len, &j->cal);
    free(sent);
    if (st != QD_OK) return st;

    /* the quantized path's embedding tables (8-bit per row) */
    const qd_bert_config *c = &fp->cfg;
    const int H = c->hidden;
    j->qword = malloc(sizeof(float) * (size_t)c->vocab * H);
    j->qpos = malloc(sizeof(float) * (size_t)c->max_pos * H);
    j->qtype = malloc(sizeof(float) * (size_t)c->type_vocab * H);
    if (!j->qword || !j->qpos || !j->qtype) return qd_errorf(QD_ERR_INTERNAL, "BERT: out of memory for the 8-bit embeddings");
    fq_rows_minmax(fp->word_emb, j->qword, c->vocab, H, 8);
    fq_rows_minmax(fp->pos_emb, j->qpos, c->max_pos, H, 8);
    fq_rows_minmax(fp->type_emb, j->qtype, c->type_vocab, H, 8);
    j->qemb = *fp;
    j->qemb.word_emb = j->qword; j->qemb.pos_emb = j->qpos; j->qemb.type_emb = j->qtype;

    /* calibration tensors, padded to the longest calibration sentence */
    const qd_bert_calib *cal = &j->cal;
    int S = 1;
    double tokens = 0.0;
    for (int i = 0; i < cal->n; i++) { if (cal->len[i] > S) S = cal->len[i]; tokens += cal->len[i]; }
    j->S = S;
    const size_t N = (size_t)cal->n;
    j->calib_q = malloc(sizeof(float) * N * (size_t)S * H);
    j->calib_fp = malloc(sizeof(float) * N * (size_t)S * H);
    j->calib_mask = malloc(sizeof(float) * N * (size_t)S);
    j->loss_w = malloc(sizeof(float) * N * (size_t)S);
    int *ids = malloc(sizeof(int) * (size_t)S), *mk = malloc(sizeof(int) * (size_t)S);
    if (!j->calib_q || !j->calib_fp || !j->calib_mask || !j->loss_w || !ids || !mk) {
        free(ids); free(mk);
        return qd_errorf(QD_ERR_INTERNAL, "BERT: out of memory for %d calibration sentences of %d tokens", cal->n, S);
    }
    /* token weight sqrt(H / mean length): the §5 reduction (sum over dims[1..], / (N * H)) of the
     * weighted error is the squared error summed over the hidden dimension, averaged over the
     * valid tokens of an average batch (recon.h "Loss weights") */
    const float wtok = (float)sqrt((double)H / (tokens / (double)cal->n));
    for (int i = 0; i < cal->n; i++) {
        for (int s = 0; s < S; s++) {
            int keep = s < cal->len[i];
            ids[s] = keep ? cal->ids[cal->off[i] + s] : 0;
            mk[s] = keep;
            j->loss_w[(size_t)i * S + s] = keep ? wtok : 0.0f;
        }
        qd_bert_additive_mask(mk, 1, S, j->calib_mask + (size_t)i * S);
        qd_bert_embed(fp, ids, NULL, 1, S, j->calib_fp + (size_t)i * S * H, NULL, NULL);
        qd_bert_embed(&j->qemb, ids, NULL, 1, S, j->calib_q + (size_t)i * S * H, NULL, NULL);
    }
    free(ids); free(mk);
    qd_graph *g = NULL;
    st = qd_bert_build_graph(fp, S, &g);
    if (st == QD_OK) st = qd_bert_graph_place_quantizers(g, cfg->w_qconfig.bit, cfg->a_qconfig.bit, cfg->first_last_8bit);
    if (st != QD_OK) { qd_graph_free(g); return st; }
    *gout = g;
    qd_log_info("bert_plan", "BERT %d layers, hidden %d: %d calibration sentences (%.0f tokens, padded to %d) from %s, "
                "evaluation (%s) on %d %s", c->layers, H, cal->n, tokens, S, cfg->calib_path, cfg->task, j->n_eval,
                j->sst2 ? "sentences" : "pairs");
    return QD_OK;
}

qd_status qd_bert_job_init_ranges(const qd_bert_job *j, qd_graph *g, const qd_config *cfg) {
    const qd_bert_model *fp = j->fp;
    const int L = fp->cfg.layers;
    if (g->nwq != L * QD_BERT_NLINEAR || g->nact != 1 + L * QD_BERT_LAYER_SITES)
        return qd_errorf(QD_ERR_INTERNAL, "BERT graph: %d weight and %d activation quantizers, expected %d and %d", g->nwq,
                         g->nact, L * QD_BERT_NLINEAR, 1 + L * QD_BERT_LAYER_SITES);
    qd_bert_quant *q = NULL;
    QD_TRY(qd_bert_quant_create(fp, cfg->w_qconfig.bit, cfg->a_qconfig.bit, cfg->first_last_8bit, qd_default_threads(cfg), &q));
    /* Search budget per site: about 2.6e7 evaluations of |Q(x)-x|^p for the 2-D search's
     * 100 x 2^b candidates (§3.1): 16384 elements at 4 bits, 2048 at 8 bits (evenly strided over
     * the valid tokens of act_calib_samples sentences) */
    int64_t max_elems = (int64_t)(26214400.0 / (100.0 * (double)(1 << q->a_bits)));
    if (max_elems < 2048) max_elems = 2048;
    qd_status st = qd_bert_quant_act_ranges(q, fp, &j->cal, cfg->act_calib_samples, max_elems, 1);
    if (st == QD_OK) {
        for (int k = 0; k < g->nwq; k++) {
            qd_weight_quant *w = &g->wq[k];
            const float *ws = q->ws + q->w_off[k], *wz = q->wz + q->w_off[k];
            const float *W = g->values[w->weight_value].fdata;
            const float qmax = (float)qd_qmax_for_bits(w->bits);
            for (int ch = 0; ch < w->channels; ch++) {
                w->scale[ch] = ws[ch];
                w->zero_point[ch] = wz[ch];
                for (int64_t e = 0; e < w->per_channel; e++) {
                    size_t i = (size_t)ch * (size_t)w->per_channel + (size_t)e;
                    w->qweight[i] = qd_fake_quant(W[i], ws[ch], wz[ch], 0.0f, qmax);
                }
            }
        }
        for (int k = 0; k < g->nact; k++) {
            const qd_bert_aq *a = k == 0 ? &q->emb_ln : &q->act[k - 1];
            g->act[k].scale = a->scale;
            g->act[k].zero_point = a->zp;
            g->act[k].initialized = 1;
        }
    }
    qd_bert_quant_free(q);
    return st;
}

qd_status qd_bert_job_evaluate(const qd_bert_job *j, qd_graph *g, qd_backend *b, int quant, double *metric,
                               double *per_example, qd_bert_eval_record *rec) {
    int max_S = j->sst2 ? j->max_len : QD_BERT_STSB_MAX_LEN;
    if (max_S > j->fp->cfg.max_pos) max_S = j->fp->cfg.max_pos;
    qd_bert_graph_encoder e;
    QD_TRY(qd_bert_graph_encoder_init(&e, quant ? &j->qemb : j->fp, g, b, quant ? QD_EXEC_QUANT : QD_EXEC_FP,
                                      QD_BERT_EVAL_BATCH, max_S));
    qd_bert_encoder enc = {qd_bert_graph_encode, &e, rec};
    if (rec) rec->emb = quant ? &j->qemb : j->fp;
    int *pred = j->sst2 && per_example ? malloc(sizeof(int) * (size_t)(j->n_eval > 0 ? j->n_eval : 1)) : NULL;
    qd_status st = QD_OK;
    if (j->sst2 && per_example && !pred) st = qd_errorf(QD_ERR_INTERNAL, "BERT evaluation: out of memory");
    if (st == QD_OK)
        st = j->sst2 ? qd_bert_eval_sst2_enc(j->fp, &j->gval, j->max_len, &enc, metric, pred)
                     : qd_bert_eval_stsb_enc(j->fp, &j->test, &enc, metric, per_example);
    if (st == QD_OK && pred)
        for (int i = 0; i < j->n_eval; i++) per_example[i] = pred[i];
    free(pred);
    qd_bert_graph_encoder_free(&e);
    return st;
}

qd_status qd_bert_job_predictions_csv(const qd_bert_job *j, const double *fp, const double *q, char **csv, size_t *len) {
    size_t cap = (size_t)j->n_eval * 64 + 64, n = 0;
    char *t = malloc(cap);
    if (!t) return qd_errorf(QD_ERR_INTERNAL, "out of memory writing predictions.csv");
    n += (size_t)snprintf(t + n, cap - n, "index,%s,fp32,quant\n", j->sst2 ? "label" : "gold");
    for (int i = 0; i < j->n_eval; i++) {
        char a[32] = "", c[32] = "";
        /* SST-2: labels; STS-B: cosine similarities, %.9g = every float digit */
        if (fp) snprintf(a, sizeof a, j->sst2 ? "%.0f" : "%.9g", fp[i]);
        if (q) snprintf(c, sizeof c, j->sst2 ? "%.0f" : "%.9g", q[i]);
        if (j->sst2) n += (size_t)snprintf(t + n, cap - n, "%d,%d,%s,%s\n", i, j->gval.label[i], a, c);
        else n += (size_t)snprintf(t + n, cap - n, "%d,%.9g,%s,%s\n", i, (double)j->test.score[i], a, c);
    }
    *csv = t;
    *len = n;
    return QD_OK;
}
