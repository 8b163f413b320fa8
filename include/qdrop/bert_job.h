/* qdrop/bert_job.h: BERT as a model family of the reconstruction engine (src/bert/bert_job.c):
 * the loader that turns a HuggingFace BERT directory and the task's data into the encoder graph
 * and the engine's calibration tensors, the range initialisation and the evaluator that turns
 * the graph's outputs into the task metric (src/app/family_bert.c plugs them into the run's
 * stages, src/app/stages.c). The run does the rest exactly as
 * for an ONNX model. */
#ifndef QDROP_BERT_JOB_H
#define QDROP_BERT_JOB_H

#include "qdrop/backend.h"
#include "qdrop/bert.h"
#include "qdrop/config.h"
#include "qdrop/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_bert_job {
    qd_bert_model *fp;            /* the checkpoint: tokenizer, FP embeddings, head */
    qd_bert_model qemb;           /* shallow copy of *fp with the 8-bit embedding tables */
    float *qword, *qpos, *qtype;  /* owned 8-bit tables */
    int sst2;                     /* data.task sst2 (else stsb) */
    int max_len;                  /* data.max_seq_len */
    qd_sts_set dev, test;
    qd_glue_set gcal, gval;
    int n_eval;                   /* evaluation pairs / sentences */
    qd_bert_calib cal;
    int S;                        /* calibration length: the longest calibration sentence */
    /* engine calibration tensors, [ncal, S, H] / [ncal, S] */
    float *calib_q, *calib_fp;    /* embeddings-LN output from the 8-bit / FP tables */
    float *calib_mask;            /* additive attention mask (side input "attention_mask") */
    float *loss_w;                /* loss token weights (recon.h) */
} qd_bert_job;

/* Model, data, calibration tensors, encoder graph with its quantizers and units (*g, owned by the
 * caller). Errors: 65 data, 66 missing file, 78 config. */
QD_MUST_USE qd_status qd_bert_job_load(const qd_config *cfg, qd_bert_job *j, qd_graph **g);
/* Weight and activation ranges into g's quantizers (all initialized, weights nearest). */
QD_MUST_USE qd_status qd_bert_job_init_ranges(const qd_bert_job *j, qd_graph *g, const qd_config *cfg);
/* The task metric (STS-B Spearman of cosine / SST-2 accuracy) of the graph on backend b, FP32
 * (quant 0) or quantized (quant 1, with the 8-bit embedding tables). */
QD_MUST_USE qd_status qd_bert_job_evaluate(const qd_bert_job *j, qd_graph *g, qd_backend *b, int quant, double *metric,
                                           double *per_example, qd_bert_eval_record *rec);
/* per_example [n_eval] (may be NULL): STS-B each pair's cosine similarity, SST-2 the predicted label.
 * rec (may be NULL): records the graph's inputs and the host results (qd_bert_eval_record). */
/* predictions.csv of a run: index, gold (STS-B score / SST-2 label), fp32, quant (either column
 * empty when not evaluated); malloc'd text in *csv. */
QD_MUST_USE qd_status qd_bert_job_predictions_csv(const qd_bert_job *j, const double *fp, const double *q, char **csv,
                                                  size_t *len);
void qd_bert_job_free(qd_bert_job *j);

#ifdef __cplusplus
}
#endif
#endif
