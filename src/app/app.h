/* src/app/app.h: the pipeline layer — what `qdrop-gpu run` and `qdrop-gpu eval` do, as stages
 * over one explicit run state (docs/architecture.md, "Data flow").
 *
 *   qd_run:  load -> [dry run] -> device -> evaluate FP32 -> calibrate (or resume)
 *            -> reconstruct -> evaluate quantized -> export -> report
 *   qd_eval: load (no calibration data) -> device -> evaluate FP32 / quantized -> report
 *
 * A model family (qd_model_family) plugs its graph, calibration tensors and metrics into the
 * same stages: its loader yields the graph (quantizers placed) and the calibration tensors, its
 * evaluator turns the graph outputs on the evaluation set into the metrics of results.json.
 * Every output file is written by the report module (src/app/results.c). */
#ifndef QD_APP_H
#define QD_APP_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "qdrop/qdrop.h"
#include "recon/memplan.h"
#include "recon/outdir.h"
#include "recon/recon.h"

typedef struct qd_run_state qd_run_state;

#define QD_MAX_METRICS 8

/* One figure of an evaluation: results.json writes it as accuracy["<fp32|quant>_<key>"], the
 * summary line as "<label> <value>". */
typedef struct qd_metric {
    char key[32];           /* "top1" */
    char label[16];         /* "top-1" */
    double value;           /* as written (accuracies in percent) */
    int percent;            /* printed as a percentage */
} qd_metric;

typedef struct qd_eval_result {
    int done;               /* this evaluation ran */
    int n;                  /* examples evaluated */
    int nmetrics;           /* 0 when the data has no labels */
    qd_metric m[QD_MAX_METRICS];
    int *pred;              /* [n] predicted class (classification), or NULL */
    const int *labels;      /* [n] reference labels (the family's, borrowed), or NULL */
    float *outputs;         /* [n, nout] graph outputs when kept (output.logits, eval), or NULL */
} qd_eval_result;

/* What the evaluator is asked for. */
typedef struct qd_eval_request {
    int keep_outputs;       /* keep the [n, nout] outputs (logits files) */
    int predictions;        /* per-example predictions (predictions.csv, agreement) */
    int progress;           /* a run's evaluation: progress bar, phase_done and eval_* log events,
                             * results.json timing (`qdrop-gpu eval` has none of these) */
} qd_eval_request;

/* The model-family hook. */
typedef struct qd_model_family {
    const char *name;
    /* A hash of the model's files for --resume (a checkpoint belongs to one model); NULL: the
     * bytes of cfg->model_path (a BERT directory hashes its model.safetensors). */
    QD_MUST_USE qd_status (*model_hash)(const qd_run_state *S, uint64_t *hash);
    /* The graph (S->g) from S->cfg with quantizers placed, S->nout = outputs per example. */
    QD_MUST_USE qd_status (*load_model)(qd_run_state *S);
    /* The calibration tensors into S->ctx (calib_host, ncal, image_numel) when with_calibration,
     * and the evaluation set (S->neval examples): for a run when eval.enabled and data given
     * (with labels), for `qdrop-gpu eval` always (labels optional). */
    QD_MUST_USE qd_status (*load_data)(qd_run_state *S, int with_calibration);
    /* Forward the evaluation set through S->ex in `mode`; metrics, predictions, outputs. */
    QD_MUST_USE qd_status (*evaluate)(qd_run_state *S, qd_exec_mode mode, const qd_eval_request *rq,
                                      qd_eval_result *res);
    void (*release)(qd_run_state *S);
    /* dry run: one line on the calibration and evaluation data */
    void (*describe_data)(const qd_run_state *S, FILE *out);
    /* Optional (NULL: the default): the quantizer ranges of the calibrate stage (default: the
     * engine's activation and weight range initialisation of the mode plan), the family's own
     * results.json fields and predictions.csv (default: per-class predictions of a classifier). */
    QD_MUST_USE qd_status (*init_ranges)(qd_run_state *S);
    void (*results_json)(const qd_run_state *S, cJSON *results, cJSON *accuracy);
    QD_MUST_USE qd_status (*write_predictions)(const qd_run_state *S, const char *path);
} qd_model_family;

extern const qd_model_family qd_family_image;   /* ONNX image classifiers (src/app/family_image.c) */
extern const qd_model_family qd_family_bert;    /* HuggingFace BERT directories (src/app/family_bert.c) */

struct qd_run_state {
    qd_config *cfg;
    const qd_run_options *opt;
    qd_outdir *od;                  /* the output directory (staging for final outputs); NULL for eval */
    const char *from_dir;           /* eval --from RUN_DIR, or NULL */
    const qd_model_family *family;
    void *family_data;
    qd_mode_plan plan;
    uint64_t cfg_hash, model_hash;
    qd_graph *g;
    qd_backend *b;
    qd_exec *ex;
    int nout;                       /* graph outputs per example (classes) */
    int neval;                      /* examples in the evaluation set (0: no evaluation) */
    /* graph, backend, executor and calibration tensors as the reconstruction engine sees them */
    qd_recon_ctx ctx;
    qd_unit_spec *units;
    int nunits;
    qd_unit_report *reps;           /* one per unit and stage (BRECQ: 2 * nunits) */
    int nreps, rep_cap;
    int units_done;                 /* finished units when reconstruction starts (resume) */
    int ckpt_units;                 /* units recorded in checkpoint.bin by this run or the one resumed; -1 none */
    qd_eval_result eval_fp, eval_q;
    char ckpt_path[QD_PATH_MAX + 64];
    cJSON *times;                   /* results.json "timing" (seconds per stage) */
    qd_mem_plan mem;                /* the memory plan of a run (qd_stage_memory; docs/memory.md) */
    double t_start;
};

double qd_app_now_s(void);
void qd_run_state_init(qd_run_state *S, qd_config *cfg, const qd_run_options *opt, const qd_model_family *family);
void qd_run_state_free(qd_run_state *S);

/* ---- stages (src/app/stages.c) ---- */
QD_MUST_USE qd_status qd_stage_load(qd_run_state *S, int with_calibration);
/* the memory plan (recon/memplan.h) from the loaded model and data: a run that cannot fit even
 * spilling its caches stops here, before computing (exit 75); a dry run prints it first */
QD_MUST_USE qd_status qd_stage_memory(qd_run_state *S);
QD_MUST_USE qd_status qd_stage_dry_run(qd_run_state *S);
/* backend + executor; device_budget in bytes, batch the largest batch the executor runs */
QD_MUST_USE qd_status qd_stage_device(qd_run_state *S, int64_t device_budget, int batch);
QD_MUST_USE qd_status qd_stage_calibrate(qd_run_state *S);
QD_MUST_USE qd_status qd_stage_reconstruct(qd_run_state *S);
QD_MUST_USE qd_status qd_stage_evaluate(qd_run_state *S, qd_exec_mode mode, const qd_eval_request *rq);
QD_MUST_USE qd_status qd_stage_export(qd_run_state *S);
QD_MUST_USE qd_status qd_stage_report(qd_run_state *S);

/* ---- the report module (src/app/results.c): every file a run or an eval writes ---- */
/* run.log and resolved_config.json in cfg->out_dir, then the "start" event */
QD_MUST_USE qd_status qd_results_open_run(qd_run_state *S);
/* predictions.csv, logits_*.npy and results.json into the staging directory */
QD_MUST_USE qd_status qd_results_write_run(qd_run_state *S);
/* report.html / report.md (+ plots/) from the published files; a failure is a warning */
void qd_results_render_report(const qd_run_state *S);
void qd_results_print_run_summary(const qd_run_state *S);
/* `qdrop-gpu eval`: logits_*.npy and eval.json into cfg->out_dir, and the summary */
QD_MUST_USE qd_status qd_results_write_eval(qd_run_state *S);
/* output.logits / eval: logits_fp32.npy and logits_quant.npy ([n, nout] float32, atomic) in dir
 * for whichever of fp / q is not NULL; a warning when n == 0. */
QD_MUST_USE qd_status qd_results_write_logits(const char *dir, const float *fp, const float *q, int n, int nout);
/* "top-1 91.20% top-5 99.70%": the metrics as one phrase (log lines) */
void qd_results_metrics_text(const qd_eval_result *r, char *buf, size_t n);

#endif
