/* src/recon/recon.h: internal interfaces of the reconstruction engine (range search, unit
 * training, checkpoints). Not public API. */
#ifndef QD_RECON_H
#define QD_RECON_H

#include <stdint.h>
#include <stdio.h>
#include "qdrop/backend.h"
#include "qdrop/config.h"
#include "qdrop/data.h"
#include "qdrop/exec.h"
#include "qdrop/graph.h"
#include "qdrop/qdrop.h"

/* ---- range_init.c: MSE range search (§3.1) ---- */
/* Per-output-channel search on a weight tensor. Channel c's elements are found at
 * w[c*per_channel + k] when ch_stride == 1 layout is channel-major (ch_axis 0); for ch_axis 1
 * ([K, N] matrices) pass channel_major = 0 and the element k of channel c is w[k*channels + c].
 * Mode from the global sign of the tensor: 1-D when one-sided, else 2-D (100 x 2^b candidates). */
QD_MUST_USE qd_status qd_weight_range_search(const float *w, int channels, int64_t per_channel,
                                             int channel_major, int bits, int threads,
                                             float *scale, float *zero_point);
/* Per-tensor search on an activation sample (§6.2): 1-D for min >= 0 (or max <= 0), else 2-D. */
QD_MUST_USE qd_status qd_act_range_search(const float *x, int64_t n, int bits, int threads,
                                          float *scale, float *zero_point);
/* quant.range_search: FAST estimates every candidate from a histogram and scores the best few
 * exactly (docs/numerics.md, "Range search"); EXACT scores every candidate on every element.
 * The two functions above use the process-wide method (default FAST), set once per run. */
typedef enum { QD_RANGE_FAST = 0, QD_RANGE_EXACT = 1 } qd_range_method;
void qd_range_search_set_method(qd_range_method method);
qd_range_method qd_range_search_get_method(void);
QD_MUST_USE qd_status qd_weight_range_search_method(const float *w, int channels, int64_t per_channel,
                                                    int channel_major, int bits, int threads,
                                                    qd_range_method method, float *scale, float *zero_point);
QD_MUST_USE qd_status qd_act_range_search_method(const float *x, int64_t n, int bits, int threads,
                                                 qd_range_method method, float *scale, float *zero_point);

/* ---- inputs.c: model.path and data paths exist (exit 66 with how to get them otherwise) ---- */
QD_MUST_USE qd_status qd_check_run_inputs(const qd_config *cfg);

/* ---- recon_unit.c: one unit's reconstruction ---- */
typedef struct qd_unit_spec {
    char name[128];
    int node_begin, node_end;    /* nodes [begin, end) */
    int input_value, output_value;
    int index;                   /* unit index (RNG key) */
} qd_unit_spec;

typedef struct qd_unit_report {
    char name[128];
    int iters_planned, iters_run;
    double loss_start, loss_end;     /* reconstruction loss (window mean) */
    double reg_end;
    double sqnr_before_db, sqnr_after_db;
    double seconds, it_per_s;
    int early_stopped;
    int nlayers, nact;
    /* Reproducibility digest of the first digest_iters iterations (QD_RNG_DIGEST_ITERS; 0 = none,
     * e.g. a unit restored from a checkpoint): FNV-1a 64 of the batch indices drawn, of the
     * unit-input mix keep mask (has_input_mix) and of the drop masks of its activation quantizers
     * (mask_sites of them), as the backend drew them (results.json "rng_digest"). */
    int digest_iters;
    uint64_t digest_batch, digest_input_mix, digest_act_masks;
    int has_input_mix, mask_sites;
    int64_t mask_bits;               /* keep/drop decisions hashed, input mix and sites together */
    double *curve;                   /* reconstruction loss, window means: iteration 1, then a point at
                                      * least every 1% of the iterations (malloc'd) */
    int *curve_iter;
    int ncurve;
} qd_unit_report;

#define QD_MAX_SIDE_INPUTS 4

/* What one unit's reconstruction does (§8.3, §6.3, §9), built from the config for each unit by
 * the stage that trains it (qd_unit_params_recon, qd_unit_params_brecq_act) and passed
 * explicitly: the training loop reads no quant.recon.* key itself. */
typedef struct qd_unit_params {
    int iters;                       /* iterations planned */
    int batch_size;
    float warm_up;                   /* fraction of iters without the rounding loss (§4) */
    float b_start, b_end;            /* annealing of the rounding regulariser's exponent */
    float round_weight;              /* lambda of the rounding regulariser */
    float lr_v;                      /* Adam lr of AdaRound's V */
    float lr_scale;                  /* Adam lr of the activation scales (cosine to 0) */
    int lsq_grad_scale;              /* Q2's 1/sqrt(numel*qmax) scale-gradient factor */
    int train_weights;               /* AdaRound on the weights; 0: weights stay at their hard-rounded
                                      * values (BRECQ stage 2: no AdaRound state, no weight gradient) */
    int train_scales;                /* LSQ on the unit's activation scales */
    int act_quant;                   /* the unit's activation quantizers act during training */
    float keep_prob;                 /* in-unit drop keep probability (§7.2) */
    float input_keep_prob;           /* unit-input mixing keep probability (§7.1) */
    float loss_p;                    /* reconstruction loss exponent (§5): 0 or 2 = MSE; 2.4 = BRECQ stage 2 */
    qd_exec_mode upstream_mode;      /* how the quantized-input cache is produced */
    int early_stop, early_stop_window;
    float early_stop_min_delta;
    int log_every;                   /* progress/log line period */
    int attempt;                     /* 0 first try, k after k NaN retries (qd_unit_params_retry) */
} qd_unit_params;

struct qd_unit_cache;

typedef struct qd_recon_ctx {
    qd_graph *g;
    qd_backend *b;
    qd_exec *exec;
    const qd_config *cfg;            /* run-wide keys only: seed, threads */
    const float *calib_host;         /* [ncal, C, H, W] */
    const float *calib_host_fp;      /* FP-path input when it differs (BERT: FP embedding tables), else NULL */
    int ncal;
    int64_t image_numel;
    int progress_unit, progress_nunits;
    /* The unit-input caches (recon/unit_cache.h); NULL: each unit computes its caches from the
     * calibration images into buffers of its own. */
    struct qd_unit_cache *cache;
    int cache_progress_off;          /* qd_cache_value/_from draw no "cache" progress (range init has its own) */
    /* Side inputs (docs/architecture.md "Side inputs"): graph inputs other than inputs[0] that
     * units read besides their main input (BERT's attention mask). Per calibration sample, in
     * backend memory uploaded once by the caller ([ncal, sample_numel] each); every forward over
     * the calibration set binds the rows of its samples, and a unit's training batch gathers
     * them with the batch's indices. Never mixed (§7.1), never quantized. */
    int nside;
    int side_value[QD_MAX_SIDE_INPUTS];
    const float *side_host[QD_MAX_SIDE_INPUTS]; /* host data of the loader ([ncal, sample_numel]) */
    float *side_dev[QD_MAX_SIDE_INPUTS];        /* backend copies (qd_stage_device uploads them) */
    /* Loss weights (NULL = plain §5 MSE): per calibration sample, one weight per position of the
     * unit output with its last dimension reduced to 1 ([ncal, ..., 1]; BERT: a token weight,
     * 0 for padding). The loss is then sum (w y - w t)^2 over all elements / (N * HW), HW =
     * sample numel / dims[1] as in §5; BERT ([N, S, H], HW = H) uses w = sqrt(H / mean valid
     * tokens per sentence) for tokens and 0 for padding, which makes it the squared error summed
     * over the hidden dimension and averaged over valid tokens (docs/bert.md). */
    float *loss_w_dev;               /* backend, [ncal * loss_w_numel] (uploaded with the side inputs) */
    const float *loss_w_host;        /* the same on the host (SQNR) */
    int64_t loss_w_numel;            /* per sample */
} qd_recon_ctx;

/* Iterations at the start of every unit whose batch indices and masks go into the unit
 * report's digest (docs/numerics.md "Reproducibility digest"): enough to cover the eager first
 * iteration and the first CUDA Graph replay, few enough that the downloads cost nothing. */
#define QD_RNG_DIGEST_ITERS 2

QD_MUST_USE qd_status qd_recon_unit(qd_recon_ctx *ctx, const qd_unit_spec *u, const qd_unit_params *p,
                                    qd_unit_report *rep);

/* Test hook: run `iters` iterations of unit u and report losses, V per layer and scales. */
QD_MUST_USE qd_status qd_recon_unit_trace(qd_recon_ctx *ctx, const qd_unit_spec *u, const qd_unit_params *p, int iters,
                                          float *rec_loss, float *reg_loss, float **V_out, float *scales_out);
int qd_default_threads(const qd_config *cfg);

/* Cost-estimate hook: warm-up + `iters` timed iterations of unit u; mean seconds per iteration. */
QD_MUST_USE qd_status qd_recon_unit_time(qd_recon_ctx *ctx, const qd_unit_spec *u, const qd_unit_params *p, int iters,
                                         double *iter_s);

/* ---- stages.c: the reconstruction stages of a run (§9) ---- */
/* What a quant.mode does, in order (§9 mode table). */
typedef struct qd_mode_plan {
    int ranges_before;        /* activation ranges before any tuning */
    qd_exec_mode range_mode;  /* network mode for that range forward */
    int range_progressive;
    int ranges_after_all;     /* activation ranges after all weights (progressive, QUANT) */
    int ranges_per_unit_after;/* Case 3: a unit's downstream ranges right after it */
    qd_exec_mode upstream;    /* how the quantized-input cache is produced */
    int act_in_unit, learn_scales, drop;
    int layerwise, reconstruct;
    int brecq_act;            /* BRECQ stage 2 after all weights (§6.2 B, §6.3, §9) */
} qd_mode_plan;
qd_mode_plan qd_mode_plan_for(qd_mode mode);

/* Per-unit parameters: the weight-and-scale stage of a mode (quant.recon.*), BRECQ's activation
 * stage (quant.brecq.*: scales only, FP inputs, L_2.4), and the k-th NaN retry of either (both
 * learning rates divided by 8^k). */
qd_unit_params qd_unit_params_recon(const qd_config *cfg, const qd_mode_plan *mp);
qd_unit_params qd_unit_params_brecq_act(const qd_config *cfg);
qd_unit_params qd_unit_params_retry(const qd_unit_params *base, int attempt);

/* Units to reconstruct: the graph's blocks, or one per layer (AdaRound baseline: the Conv/Gemm
 * plus the activation node that directly consumes it). Returns the count, -1 out of memory. */
int qd_build_units(const qd_graph *g, int layerwise, qd_unit_spec **out);

/* qd_recon_unit with quant.recon.nan_retries: on a NaN/Inf loss the unit is restored and trained
 * again with qd_unit_params_retry(p, k), k = 1..retries. `stage` prefixes the log lines ("" or
 * "BRECQ stage 2, "). The one place that retries. */
QD_MUST_USE qd_status qd_recon_unit_retrying(qd_recon_ctx *ctx, const qd_unit_spec *u, const qd_unit_params *p,
                                             int retries, const char *stage, qd_unit_report *rep);

/* Checkpoint after each finished unit: what qd_ckpt_save needs, and where the count goes. */
typedef struct qd_recon_progress {
    const char *ckpt_path;
    uint64_t cfg_hash, model_hash;
    qd_unit_report *reps;            /* one report per unit and stage */
    int *nreps;                      /* reports filled */
    int *ckpt_units;                 /* units recorded in the checkpoint */
} qd_recon_progress;

/* The weight stage: units [units_done, nunits) in order, each with qd_unit_params_recon, the
 * unit-input caches advanced incrementally along a chain of blocks, a checkpoint after each. */
QD_MUST_USE qd_status qd_recon_weight_stage(qd_recon_ctx *ctx, const qd_mode_plan *mp, const qd_unit_spec *units,
                                            int nunits, int units_done, const qd_recon_progress *pr);
/* BRECQ stage 2 (§6.2 B, §6.3, §9), after every unit's weights are hard-rounded; progress counts
 * after the weight stage's units (units_done in [nunits, 2 * nunits]). */
QD_MUST_USE qd_status qd_brecq_act_stage(qd_recon_ctx *ctx, const qd_unit_spec *units, int nunits, int units_done,
                                         const qd_recon_progress *pr);

/* ---- estimate.c: --dry-run wall-time estimate per phase on the configured device ---- */
typedef struct qd_estimate_plan {
    int reconstruct, brecq_act;
    qd_unit_params unit;      /* the weight stage's per-unit parameters */
} qd_estimate_plan;
/* Creates its own backend; overwrites the graph's quantizer ranges (a dry run discards them). */
QD_MUST_USE qd_status qd_print_cost_estimate(const qd_config *cfg, qd_graph *g, const qd_unit_spec *units,
                                             int nunits, const float *calib_host, int ncal, int64_t image_numel,
                                             int nval, const qd_estimate_plan *plan, FILE *out);

/* Activation range initialisation for the quantizers selected by `select[j]` (NULL = all not yet
 * initialised), on the first `nsamples` calibration images, network run in `mode`. Quantizers
 * are initialised in data-flow order: with `progressive`, each one is searched on a forward in
 * which the already initialised upstream quantizers are active (Q1 flow); otherwise one forward
 * serves all (Q2 flow, FP network, §6.2). */
QD_MUST_USE qd_status qd_init_act_ranges(qd_recon_ctx *ctx, qd_exec_mode mode, const int *select,
                                         int nsamples, int progressive);
/* Weight range init + nearest rounding of every weight quantizer (§3.1). */
QD_MUST_USE qd_status qd_init_weight_ranges(qd_graph *g, int threads);

/* Run nodes [node_begin, node_end) on the calibration activations `src` of value src_value
 * (backend memory, all images) and write value v for every image into dst. */
QD_MUST_USE qd_status qd_cache_from(qd_recon_ctx *ctx, qd_exec_mode mode, const float *src, int src_value,
                                    int node_begin, int node_end, int v, int nimages, float *dst);

/* Bind the side inputs of calibration samples [s0, ...) to ctx->exec (before a qd_exec_run over them). */
QD_MUST_USE qd_status qd_recon_bind_side(qd_recon_ctx *ctx, int s0);

/* Run the network prefix on calibration images in batches and write value `v` for all of them
 * into `dst` (backend memory, ncal * sample_numel floats). */
QD_MUST_USE qd_status qd_cache_value(qd_recon_ctx *ctx, qd_exec_mode mode, int node_end, int v,
                                     int nimages, float *dst);

/* In a function over a unit `u` (qd_unit_spec *): return QD_ERR_DEVICE_OOM when allocation p
 * failed, keeping the backend's own message or naming the unit and what could not be allocated. */
#define QD_UNIT_OOM(p, what)                                                                       \
    do {                                                                                           \
        if (!(p)) {                                                                                \
            if (!qd_error_message()[0])                                                            \
                qd_errorf(QD_ERR_DEVICE_OOM, "unit '%s': cannot allocate %s", u->name, what);     \
            return QD_ERR_DEVICE_OOM;                                                              \
        }                                                                                          \
    } while (0)

#endif
