/* qdrop/config.h: the typed run configuration.
 *
 * Parsed from JSON with cJSON (src/config/config.c). Key names follow the reference QDrop YAML
 * (docs/algorithm.md §10.2) so published settings translate one to one; every key is documented in
 * docs/config.md. Defaults are applied in exactly one place: qd_config_defaults().
 * Unknown keys, wrong types and out-of-range values are rejected with the JSON path
 * ("quant.w_qconfig.bit: expected an integer in 2..8, got 16") and QD_ERR_CONFIG.
 */
#ifndef QDROP_CONFIG_H
#define QDROP_CONFIG_H

#include <stdint.h>
#include "qdrop/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QD_PATH_MAX 1024

typedef enum {
    QD_MODE_QDROP = 0,   /* LSQ + AdaRound + drop (drop_prob = keep probability, default 0.5) */
    QD_MODE_NODROP,      /* same flow with drop_prob forced to 1.0 (§9 "No Drop") */
    QD_MODE_CASE1,       /* §9 Case 1 */
    QD_MODE_CASE2,       /* §9 Case 2 */
    QD_MODE_CASE3,       /* §9 Case 3 */
    QD_MODE_ADAROUND,    /* layer-wise AdaRound, FP activations during tuning (§9 baselines) */
    QD_MODE_BRECQ,       /* block-wise AdaRound with FP activations, then act ranges and per-unit
                          * LSQ of the scales with FP inputs and L_2.4 (§9, quant.brecq.*) */
    QD_MODE_NEAREST      /* round-to-nearest, no reconstruction */
} qd_mode;

typedef enum { QD_PRE_CIFAR = 0, QD_PRE_IMAGENET = 1, QD_PRE_NONE = 2 } qd_preprocess;
typedef enum { QD_DEVICE_AUTO = 0, QD_DEVICE_CPU = 1, QD_DEVICE_CUDA = 2 } qd_device_kind;

typedef struct qd_qconfig {
    int bit;             /* 2..8 */
    int symmetric;       /* only false is implemented (all reference configs) */
    int ch_axis;         /* weights 0 (per output channel), activations -1 (per tensor) */
} qd_qconfig;

typedef struct qd_recon_config {
    int iters;           /* per unit, default 20000 */
    int batch_size;      /* default 32 */
    float scale_lr;      /* LSQ Adam lr, default 4e-5, cosine to 0 */
    float warm_up;       /* fraction of iters without the rounding loss, default 0.2 */
    float weight;        /* lambda of the rounding regulariser, default 0.01 */
    float b_start, b_end;/* b_range, default [20, 2] */
    float drop_prob;     /* probability of KEEPING quantization per element (reference naming) */
    int keep_gpu;        /* keep unit caches in device memory when they fit */
    int lsq_grad_scale;  /* Q2's 1/sqrt(numel*qmax) scale-gradient factor, default true */
    int early_stop;      /* stop a unit when the loss stops improving */
    int early_stop_window;   /* iterations per comparison window */
    float early_stop_min_delta; /* relative improvement required per window */
    int log_every;       /* progress/log line period in iterations, default 500 */
    int nan_retries;     /* on NaN/Inf: retry the unit with lr/10 this many times (default 0) */
} qd_recon_config;

/* quant.brecq.*: BRECQ's second stage (quant.mode "brecq" only; docs/algorithm.md §6.3, §9): after all
 * weights are reconstructed, per unit, LSQ on the activation scales alone with FP-model inputs,
 * L_2.4 loss, Adam + cosine to 0. Explicit: NOT scaled with quant.recon.iters. */
typedef struct qd_brecq_config {
    int act_iters;       /* iterations per unit, default 5000 */
    float act_lr;        /* Adam lr of the scales, default 4e-4, cosine-annealed to 0 over act_iters */
} qd_brecq_config;

typedef struct qd_config {
    /* model.* */
    char model_path[QD_PATH_MAX];   /* .onnx file, or a HuggingFace BERT directory */
    char model_type[16];            /* "onnx" | "bert" */
    /* data.* */
    char calib_path[QD_PATH_MAX];   /* ImageFolder of JPEGs, or a .npy [N,C,H,W] */
    char val_path[QD_PATH_MAX];     /* ImageFolder with class sub-folders, or .npy (+ labels) */
    char val_labels_path[QD_PATH_MAX]; /* .npy int labels when val_path is .npy */
    qd_preprocess preprocess;
    float mean[3], std[3];
    int input_size;                 /* crop size for imagenet preprocessing, default 224 */
    int resize_size;                /* shorter side before crop, default 256 */
    int skip_corrupt;               /* skip unreadable images with a warning instead of failing */
    char task[32];                  /* "classification" | "stsb" | "sst2" | ... */
    int max_seq_len;                /* BERT */
    /* quant.* */
    qd_qconfig w_qconfig, a_qconfig;
    int calibrate;                  /* calibration set size, default 1024 */
    int act_calib_samples;          /* images for activation range init, default 256 (§6.2) */
    int first_last_8bit;            /* default true (§1.5) */
    int brecq_setting;              /* default false (§8.7) */
    int range_search;               /* MSE range search: 0 fast (histogram + exact refine, default), 1 exact */
    qd_mode mode;
    qd_recon_config recon;
    qd_brecq_config brecq;          /* quant.brecq.*, used by mode "brecq" only */
    /* process.* */
    uint64_t seed;                  /* default 1005 */
    int threads;                    /* 0 = all cores */
    int64_t host_memory_budget;     /* bytes of host memory for the unit caches, 0 = auto (docs/memory.md) */
    /* device.* */
    qd_device_kind device;
    int deterministic;              /* deterministic cuDNN algorithms, default true */
    int tf32;                       /* allow TF32 in cuDNN/cuBLAS, default false */
    int64_t device_memory_budget_mb;/* 0 = use what the device has */
    /* eval.* */
    int eval_enabled;               /* default true */
    int eval_batch_size;            /* default 250 */
    int eval_max_images;            /* 0 = all */
    int eval_fp32;                  /* also evaluate the FP32 model, default true */
    /* output.* */
    char out_dir[QD_PATH_MAX];      /* default "runs/<model stem>" */
    int export_onnx;                /* write model_qdq.onnx, default true */
    int onnx_opset;                 /* 13 default; 21 allows int4 weights */
    int int4_weights;               /* store <=4-bit weights as INT4 (needs opset 21) */
    int plots;                      /* write loss-curve PNGs when gnuplot is present */
    int logits;                     /* write logits_fp32.npy / logits_quant.npy of the evaluation set */
    /* bookkeeping */
    char config_path[QD_PATH_MAX];  /* file it came from ("" for defaults) */
} qd_config;

/* Fill every field with its default (the single home of defaults). */
void qd_config_defaults(qd_config *c);
/* Parse a JSON file over the defaults. */
QD_MUST_USE qd_status qd_config_load_file(qd_config *c, const char *path);
/* Parse JSON text over the current values (used by tests and by --set). */
QD_MUST_USE qd_status qd_config_load_text(qd_config *c, const char *text, const char *origin);
/* Apply one "--set key.path=value" override, typed by the schema. */
QD_MUST_USE qd_status qd_config_set(qd_config *c, const char *assignment);
/* Cross-field checks and mode-implied settings (e.g. nodrop => drop_prob 1). */
QD_MUST_USE qd_status qd_config_finalize(qd_config *c);
/* The resolved config as JSON text (malloc'd, caller frees); stable key order. */
char *qd_config_to_json(const qd_config *c);
/* 64-bit FNV-1a hash of the resolved JSON, for checkpoints and results. */
uint64_t qd_config_hash(const qd_config *c);
const char *qd_mode_name(qd_mode m);

#ifdef __cplusplus
}
#endif
#endif
