/* src/app/family_bert.c: the BERT model family (model.type bert) — a HuggingFace BERT directory
 * (safetensors + config + vocab) and a text task (data.task stsb or sst2) through the same stages
 * as every ONNX model. The family part is src/bert/bert_job.c: the encoder graph with its §8.8
 * quantizers and one unit per encoder layer, the calibration tensors (embeddings-LN outputs of
 * the calibration sentences padded to the longest one, the attention mask as a side input of
 * every unit, the loss token weights), the ranges on valid tokens, and the evaluator (STS-B
 * Spearman of cosine similarity, SST-2 accuracy) on the graph's outputs. docs/bert.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "data/npy_write.h"
#include "qdrop/bert_job.h"
#include "qdrop/fsutil.h"
#include "qdrop/log.h"
#include "recon/ckpt.h"

typedef struct bert_data {
    qd_bert_job job;
    double *per_fp, *per_q;   /* per evaluation example: STS-B cosine / SST-2 predicted label */
    qd_bert_eval_record rec;  /* output.logits: the quantized evaluation's encoder inputs and results */
} bert_data;

static bert_data *data_of(qd_run_state *S) {
    if (!S->family_data) S->family_data = calloc(1, sizeof(bert_data));
    return S->family_data;
}

static qd_status bert_load_model(qd_run_state *S) {
    bert_data *d = data_of(S);
    if (!d) return qd_errorf(QD_ERR_INTERNAL, "out of host memory");
    QD_TRY(qd_bert_job_load(S->cfg, &d->job, &S->g));
    S->nout = d->job.fp->cfg.hidden;
    return QD_OK;
}

/* --resume checks the weights file */
static qd_status bert_model_hash(const qd_run_state *S, uint64_t *hash) {
    char path[QD_PATH_MAX + 64];
    QD_TRY(qd_path_join(path, sizeof path, S->cfg->model_path, "model.safetensors"));
    void *buf = NULL;
    size_t n = 0;
    QD_TRY(qd_read_input(path, "BERT weights", (size_t)4 << 30, &buf, &n));
    *hash = qd_fnv1a64(buf, n, 0);
    free(buf);
    return QD_OK;
}

static qd_status bert_load_data(qd_run_state *S, int with_calibration) {
    bert_data *d = S->family_data;
    qd_bert_job *j = &d->job;
    if (!with_calibration) return qd_errorf(QD_ERR_CONFIG, "model.type bert: `qdrop-gpu eval` evaluates ONNX models only");
    qd_recon_ctx *c = &S->ctx;
    c->calib_host = j->calib_q;
    c->calib_host_fp = j->calib_fp;
    c->ncal = j->cal.n;
    c->image_numel = (int64_t)j->S * j->fp->cfg.hidden;
    c->nside = 1;
    c->side_value[0] = S->g->inputs[1];
    c->side_host[0] = j->calib_mask;
    c->loss_w_host = j->loss_w;
    c->loss_w_numel = j->S;
    S->neval = S->cfg->eval_enabled ? j->n_eval : 0;
    return QD_OK;
}

static qd_status bert_init_ranges(qd_run_state *S) {
    bert_data *d = S->family_data;
    return qd_bert_job_init_ranges(&d->job, S->g, S->cfg);
}

static qd_status bert_evaluate(qd_run_state *S, qd_exec_mode mode, const qd_eval_request *rq, qd_eval_result *res) {
    bert_data *d = S->family_data;
    const qd_bert_job *j = &d->job;
    int quant = mode != QD_EXEC_FP;
    memset(res, 0, sizeof *res);
    double **per = quant ? &d->per_q : &d->per_fp;
    free(*per);
    *per = calloc((size_t)j->n_eval + 1, sizeof(double));
    if (!*per) return qd_errorf(QD_ERR_INTERNAL, "out of host memory");
    double metric = NAN;
    qd_phase ph;
    if (rq->progress)
        qd_phase_begin(&ph, quant ? "quantized evaluation" : "FP32 evaluation", j->sst2 ? "sentences" : "pairs", j->n_eval);
    qd_bert_eval_record *rec = NULL;
    if (quant && S->cfg->logits) {
        qd_bert_eval_record_free(&d->rec);
        rec = &d->rec;
    }
    qd_status st = qd_bert_job_evaluate(j, S->g, S->b, quant, &metric, *per, rec);
    if (rq->progress) {
        if (st == QD_OK) { qd_phase_update(&ph, j->n_eval); qd_phase_end(&ph); }
        else qd_progress_done();
    }
    if (st != QD_OK) return st;
    qd_metric *m = &res->m[res->nmetrics++];
    snprintf(m->key, sizeof m->key, "%s", j->sst2 ? "accuracy" : "spearman_cosine");
    snprintf(m->label, sizeof m->label, "%s", j->sst2 ? "SST-2 acc." : "Spearman");
    m->value = metric;
    m->percent = 0;
    res->done = 1;
    res->n = j->n_eval;
    return QD_OK;
}

static void bert_release(qd_run_state *S) {
    bert_data *d = S->family_data;
    if (!d) return;
    qd_bert_job_free(&d->job);
    qd_bert_eval_record_free(&d->rec);
    free(d->per_fp);
    free(d->per_q);
    free(d);
    S->family_data = NULL;
}

static void bert_describe_data(const qd_run_state *S, FILE *out) {
    const bert_data *d = S->family_data;
    const qd_bert_job *j = &d->job;
    fprintf(out, "calibration: %d sentences (%s, %lld tokens, padded to %d), activation ranges on %d; evaluation (%s): %d %s\n",
            j->cal.n, S->cfg->calib_path, (long long)j->cal.ntok, j->S, S->cfg->act_calib_samples, S->cfg->task, j->n_eval,
            j->sst2 ? "sentences" : "pairs");
}

/* results.json: the task block {metric, fp32, quant, pairs | examples} and the calibration set */
static void bert_results_json(const qd_run_state *S, cJSON *r, cJSON *acc) {
    const bert_data *d = S->family_data;
    const qd_bert_job *j = &d->job;
    cJSON_AddStringToObject(r, "model_type", "bert");
    cJSON_AddStringToObject(r, "task", S->cfg->task);
    cJSON_AddNumberToObject(r, "calibration_sentences", j->cal.n);
    cJSON_AddNumberToObject(r, "calibration_tokens", (double)j->cal.ntok);
    cJSON_AddNumberToObject(r, "calibration_seq_len", j->S);
    cJSON_AddStringToObject(acc, "metric", j->sst2 ? "accuracy" : "spearman_cosine");
    cJSON_AddStringToObject(acc, "eval_set", S->cfg->val_path);
    cJSON_AddNumberToObject(acc, j->sst2 ? "examples" : "pairs", S->neval);
    if (S->eval_fp.done) cJSON_AddNumberToObject(acc, "fp32", S->eval_fp.m[0].value);
    else cJSON_AddNullToObject(acc, "fp32");
    if (S->eval_q.done) cJSON_AddNumberToObject(acc, "quant", S->eval_q.m[0].value);
    else cJSON_AddNullToObject(acc, "quant");
}

/* output.logits: the quantized evaluation as an external runtime (ONNX Runtime on model_qdq.onnx,
 * tools/bert_ort_check.py) needs it, into the staged output directory: eval_embeddings.npy
 * [tokens, H] the encoder's `embeddings` input rows of every sentence's valid tokens, sentence
 * after sentence; eval_lengths.npy [sentences] their token counts (float32, exact); eval_outputs.npy
 * [sentences, H | labels] the engine's host results (STS-B: normalised mean-pooled embeddings, the
 * first n sentences of the pairs then the second ones; SST-2: classifier logits). */
static qd_status write_eval_record(const qd_bert_eval_record *r, const char *dir) {
    const int H = r->emb->cfg.hidden;
    float *tok = malloc(sizeof(float) * (size_t)(r->ntok > 0 ? r->ntok : 1) * (size_t)H);
    float *len = malloc(sizeof(float) * (size_t)(r->n > 0 ? r->n : 1));
    qd_status st = tok && len ? QD_OK : qd_errorf(QD_ERR_INTERNAL, "output.logits: out of host memory");
    int64_t off = 0;
    for (int i = 0; st == QD_OK && i < r->n; i++) {
        memcpy(tok + off * H, r->tok[i], sizeof(float) * (size_t)r->len[i] * (size_t)H);
        off += r->len[i];
        len[i] = (float)r->len[i];
    }
    char path[QD_PATH_MAX + 64];
    int64_t dt[2] = {r->ntok, H}, dl[1] = {r->n}, dout[2] = {r->n, r->nout};
    if (st == QD_OK) st = qd_path_join(path, sizeof path, dir, "eval_embeddings.npy");
    if (st == QD_OK) st = qd_npy_write_f32(path, tok, 2, dt);
    if (st == QD_OK) st = qd_path_join(path, sizeof path, dir, "eval_lengths.npy");
    if (st == QD_OK) st = qd_npy_write_f32(path, len, 1, dl);
    if (st == QD_OK) st = qd_path_join(path, sizeof path, dir, "eval_outputs.npy");
    if (st == QD_OK) st = qd_npy_write_f32(path, r->out, 2, dout);
    free(tok);
    free(len);
    return st;
}

/* predictions.csv: per example the gold value and the FP32 / quantized model's output; with
 * output.logits also the evaluation record beside it (write_eval_record) */
static qd_status bert_write_predictions(const qd_run_state *S, const char *path) {
    const bert_data *d = S->family_data;
    if (!S->eval_q.done || !d->per_q) return QD_OK;
    char *csv = NULL;
    size_t len = 0;
    QD_TRY(qd_bert_job_predictions_csv(&d->job, S->eval_fp.done ? d->per_fp : NULL, d->per_q, &csv, &len));
    qd_status st = qd_write_file_atomic(path, csv, len);
    free(csv);
    if (st == QD_OK && S->cfg->logits && d->rec.n > 0) st = write_eval_record(&d->rec, S->od->stage);
    return st;
}

const qd_model_family qd_family_bert = {
    .name = "bert",
    .model_hash = bert_model_hash,
    .load_model = bert_load_model,
    .load_data = bert_load_data,
    .evaluate = bert_evaluate,
    .release = bert_release,
    .describe_data = bert_describe_data,
    .init_ranges = bert_init_ranges,
    .results_json = bert_results_json,
    .write_predictions = bert_write_predictions,
};
