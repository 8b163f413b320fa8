/* qdrop/qdrop.h: the top-level C API of qdrop-gpu (what the CLI calls). */
#ifndef QDROP_QDROP_H
#define QDROP_QDROP_H

#include "qdrop/config.h"
#include "qdrop/log.h"
#include "qdrop/status.h"
#include "qdrop/version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_run_options {
    int dry_run;        /* validate, load model and data, print the plan, exit */
    int resume;         /* continue from the checkpoint in cfg->out_dir */
    int quiet;          /* errors only on stderr */
    int log_json;       /* stderr log as JSON lines */
    qd_progress_mode progress;
    const char *command;   /* the command line as typed (shell-quoted), recorded in results.json; may be NULL */
} qd_run_options;

/* Run a whole job: load, calibrate, reconstruct, evaluate, export. Writes every output file
 * into cfg->out_dir atomically. */
QD_MUST_USE qd_status qd_run(qd_config *cfg, const qd_run_options *opt);

/* `qdrop-gpu eval`: evaluate only (src/app/run.c). The FP32 model on data.val_path, and
 * with from_dir (a finished run's output directory) the quantized model read back from its
 * encodings.json. Writes logits_fp32.npy / logits_quant.npy ([N, classes] float32) and eval.json
 * into cfg->out_dir; prints top-1/top-5 when the data has labels. */
QD_MUST_USE qd_status qd_eval(qd_config *cfg, const char *from_dir, const qd_run_options *opt);

/* Print units, layers and quantizer placement of an ONNX model (--inspect). */
QD_MUST_USE qd_status qd_inspect(const char *model_path, const qd_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
