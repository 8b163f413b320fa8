/* src/recon/run.c: qd_run — the whole job, in the reference order (docs/algorithm.md §1):
 *   load ONNX -> fold BN -> units -> quantizer placement -> calibration data
 *   -> FP32 evaluation -> activation ranges (§6.2) -> weight ranges (§3.1)
 *   -> per unit: caches + reconstruction (§8) -> checkpoint -> next unit
 *   -> (mode-dependent late activation ranges, §9; BRECQ: its activation stage, §6.3)
 *   -> quantized evaluation
 *   -> results.json, encodings + QDQ ONNX export, run report (report.html/.md, plots/).
 * Every output file is written atomically; the final outputs are staged and published together
 * (recon/outdir.h), the report rendered from them after publication. SIGINT/SIGTERM stop the run
 * at the next iteration or phase boundary with the last checkpoint intact (qdrop/interrupt.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/escape.h"
#include "qdrop/backend.h"
#include "qdrop/bert.h"
#include "qdrop/bert_job.h"
#include "qdrop/data.h"
#include "qdrop/exec.h"
#include "qdrop/export.h"
#include "qdrop/fsutil.h"
#include "qdrop/interrupt.h"
#include "qdrop/log.h"
#include "qdrop/qdrop.h"
#include "qdrop/report.h"
#include "recon/ckpt.h"
#include "recon/outdir.h"
#include "recon/recon.h"
#include "qdrop/utf8.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int qd_default_threads(const qd_config *cfg) {
    if (cfg->threads > 0) return cfg->threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* ---- mode table (§9) ---- */
typedef struct mode_plan {
    int ranges_before;        /* act ranges before any tuning */
    qd_exec_mode range_mode;  /* network mode for the range forward */
    int range_progressive;
    int ranges_after_all;     /* act ranges after all weights (progressive, QUANT) */
    int ranges_per_unit_after;/* Case 3 */
    qd_exec_mode upstream;    /* quant-input cache */
    int act_in_unit, learn_scales, drop;
    int layerwise, reconstruct;
    int brecq_act;            /* BRECQ stage 2 after all weights (§6.2 B, §6.3, §9) */
} mode_plan;

static mode_plan plan_for(qd_mode m) {
    mode_plan p;
    memset(&p, 0, sizeof p);
    p.reconstruct = 1;
    p.upstream = QD_EXEC_QUANT;
    switch (m) {
    case QD_MODE_QDROP: p.ranges_before = 1; p.range_mode = QD_EXEC_FP; p.act_in_unit = 1; p.learn_scales = 1; p.drop = 1; break;
    case QD_MODE_NODROP: p.ranges_before = 1; p.range_mode = QD_EXEC_FP; p.act_in_unit = 1; p.learn_scales = 1; break;
    case QD_MODE_CASE1: p.ranges_after_all = 1; p.upstream = QD_EXEC_WQ_ONLY; break;
    case QD_MODE_CASE2: p.ranges_before = 1; p.range_mode = QD_EXEC_AQ_ONLY; p.range_progressive = 1; p.act_in_unit = 1; break;
    case QD_MODE_CASE3: p.ranges_per_unit_after = 1; break;
    case QD_MODE_ADAROUND: p.ranges_after_all = 1; p.upstream = QD_EXEC_WQ_ONLY; p.layerwise = 1; break;
    case QD_MODE_BRECQ: p.brecq_act = 1; p.upstream = QD_EXEC_WQ_ONLY; break;
    case QD_MODE_NEAREST: p.ranges_before = 1; p.range_mode = QD_EXEC_FP; p.reconstruct = 0; break;
    }
    return p;
}

/* Units to reconstruct: the graph's blocks/layers, or one per layer (AdaRound baseline:
 * the Conv/Gemm plus the activation node that directly consumes it). */
static int build_units(const qd_graph *g, int layerwise, qd_unit_spec **out) {
    qd_unit_spec *u = calloc((size_t)(g->nunits + g->nwq + 1), sizeof *u);
    if (!u) return -1;
    int n = 0;
    if (!layerwise) {
        for (int k = 0; k < g->nunits; k++) {
            qd_unit_spec *s = &u[n];
            snprintf(s->name, sizeof s->name, "%s", g->units[k].name ? g->units[k].name : "unit");
            s->node_begin = g->units[k].node_begin; s->node_end = g->units[k].node_end;
            s->input_value = g->units[k].input_value; s->output_value = g->units[k].output_value;
            s->index = n++;
        }
    } else {
        for (int ni = 0; ni < g->nnodes; ni++) {
            const qd_node *nd = &g->nodes[ni];
            if (nd->wq < 0 || nd->unit < 0) continue;
            qd_unit_spec *s = &u[n];
            int end = ni + 1;
            int outv = nd->outputs[0];
            if (end < g->nnodes) {
                const qd_node *nx = &g->nodes[end];
                if ((nx->op == QD_OP_RELU || nx->op == QD_OP_CLIP) && nx->inputs[0] == outv && g->values[outv].nconsumers == 1) {
                    outv = nx->outputs[0];
                    end++;
                }
            }
            char esc[sizeof s->name - 6]; /* "layer " + the escaped node name (untrusted: no control characters) */
            snprintf(s->name, sizeof s->name, "layer %s", qd_escape_text(nd->name, esc, sizeof esc));
            s->node_begin = ni; s->node_end = end;
            s->input_value = nd->inputs[0]; s->output_value = outv;
            s->index = n++;
        }
    }
    *out = u;
    return n;
}

static qd_status load_images(const qd_config *cfg, const char *path, const char *labels, int c, int h, int w,
                             int sample_n, int max_images, qd_dataset *ds) {
    qd_data_options o;
    memset(&o, 0, sizeof o);
    o.preprocess = cfg->preprocess;
    for (int i = 0; i < 3; i++) { o.mean[i] = cfg->mean[i]; o.std[i] = cfg->std[i]; }
    o.input_size = cfg->input_size;
    o.resize_size = cfg->resize_size;
    o.skip_corrupt = cfg->skip_corrupt;
    o.threads = qd_default_threads(cfg);
    o.sample_n = sample_n;
    o.max_images = max_images;
    o.seed = cfg->seed;
    return qd_dataset_load(path, labels, &o, c, h, w, ds);
}

qd_status qd_load_images(const qd_config *cfg, const char *path, const char *labels, int c, int h, int w,
                         int sample_n, int max_images, qd_dataset *ds) {
    return load_images(cfg, path, labels, c, h, w, sample_n, max_images, ds);
}

/* Forward the whole validation set; top-1/top-5, optionally the per-image argmax and the
 * [n, nclasses] logits themselves (*logits_out, malloc'd, for output.logits). */
static qd_status evaluate(qd_exec *ex, qd_exec_mode mode, const qd_dataset *val, int batch, int nclasses,
                          double *top1, double *top5, int **pred_out, float **logits_out) {
    float *logits = malloc(sizeof(float) * (size_t)batch * (size_t)nclasses);
    float *all = malloc(sizeof(float) * (size_t)val->n * (size_t)nclasses);
    if (!logits || !all) { free(logits); free(all); return qd_errorf(QD_ERR_INTERNAL, "out of host memory"); }
    int64_t numel = (int64_t)val->c * val->h * val->w;
    qd_status st = QD_OK;
    qd_phase ph;
    qd_phase_begin(&ph, mode == QD_EXEC_FP ? "FP32 evaluation" : "quantized evaluation", "images", val->n);
    for (int s0 = 0; s0 < val->n && st == QD_OK; s0 += batch) {
        int nb = val->n - s0 < batch ? val->n - s0 : batch;
        if (qd_interrupted()) { st = QD_ERR_INTERRUPTED; break; }
        qd_phase_update(&ph, s0);
        st = qd_exec_forward_host(ex, mode, val->x + (size_t)s0 * (size_t)numel, nb, all + (size_t)s0 * (size_t)nclasses);
    }
    if (st == QD_OK) { qd_phase_update(&ph, val->n); qd_phase_end(&ph); }
    else qd_progress_done();
    (void)logits;
    free(logits);
    if (st == QD_OK) st = qd_topk_accuracy(all, val->labels, val->n, nclasses, top1, top5);
    if (st == QD_OK && pred_out) {
        int *pred = malloc(sizeof(int) * (size_t)val->n);
        if (pred) qd_argmax_rows(all, val->n, nclasses, pred);
        *pred_out = pred;
    }
    if (st == QD_OK && logits_out) {
        *logits_out = all;
        all = NULL;
    }
    free(all);
    return st;
}

static uint64_t config_hash_for_resume(const qd_config *cfg) {
    qd_config c = *cfg;
    /* what does not change the learned model: where outputs go, evaluation, logging, plots,
     * export options, threads and device (results are deterministic per device) */
    memset(c.out_dir, 0, sizeof c.out_dir);
    memset(c.config_path, 0, sizeof c.config_path);
    c.eval_enabled = 0; c.eval_batch_size = 0; c.eval_max_images = 0; c.eval_fp32 = 0;
    memset(c.val_path, 0, sizeof c.val_path);
    memset(c.val_labels_path, 0, sizeof c.val_labels_path);
    c.export_onnx = 0; c.onnx_opset = 0; c.int4_weights = 0; c.plots = 0; c.logits = 0;
    c.recon.log_every = 0; c.threads = 0; c.device = QD_DEVICE_AUTO;
    if (c.mode != QD_MODE_BRECQ) memset(&c.brecq, 0, sizeof c.brecq);   /* unused by the other modes */
    return qd_config_hash(&c);
}

static qd_status file_hash(const char *path, uint64_t *h) {
    void *d = NULL;
    size_t n = 0;
    QD_TRY(qd_read_input(path, "ONNX model", (size_t)2 << 30, &d, &n));
    *h = qd_fnv1a64(d, n, 0);
    free(d);
    return QD_OK;
}

static cJSON *unit_json(const qd_unit_report *r, int idx) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", idx);
    cJSON_AddStringToObject(o, "name", r->name);
    cJSON_AddNumberToObject(o, "layers", r->nlayers);
    cJSON_AddNumberToObject(o, "act_quantizers", r->nact);
    cJSON_AddNumberToObject(o, "iters_planned", r->iters_planned);
    cJSON_AddNumberToObject(o, "iters_run", r->iters_run);
    cJSON_AddBoolToObject(o, "early_stopped", r->early_stopped);
    cJSON_AddNumberToObject(o, "loss_start", r->loss_start);
    cJSON_AddNumberToObject(o, "loss_end", r->loss_end);
    cJSON_AddNumberToObject(o, "round_loss_end", r->reg_end);
    cJSON_AddNumberToObject(o, "sqnr_before_db", r->sqnr_before_db);
    cJSON_AddNumberToObject(o, "sqnr_after_db", r->sqnr_after_db);
    cJSON_AddNumberToObject(o, "seconds", r->seconds);
    cJSON_AddNumberToObject(o, "it_per_s", r->it_per_s);
    /* the loss curve for the run report: window means, a point at least every 1% of the iterations */
    cJSON *curve = cJSON_AddObjectToObject(o, "loss_curve");
    cJSON *xs = cJSON_AddArrayToObject(curve, "iteration"), *ys = cJSON_AddArrayToObject(curve, "loss");
    for (int c = 0; c < r->ncurve; c++) {
        cJSON_AddItemToArray(xs, cJSON_CreateNumber(r->curve_iter[c]));
        cJSON_AddItemToArray(ys, cJSON_CreateNumber(r->curve[c]));
    }
    return o;
}

typedef struct run_state {
    qd_graph *g;
    qd_backend *b;
    qd_exec *ex;
    qd_dataset calib, val;
    qd_unit_spec *units;
    qd_unit_report *reps;
    int nunits, nreps, rep_cap;
    int *pred_fp, *pred_q;
    float *logits_fp, *logits_q;   /* [val.n, nclasses] when output.logits */
    int ckpt_units;   /* units recorded in checkpoint.bin by this run or the one resumed; -1 none */
    /* model.type bert (src/bert/bert_job.c): the family's loader/evaluator; calib holds the
     * embeddings of the calibration sentences ([ncal, 1, S, H]) */
    int bert;
    qd_bert_job job;
    float *side_dev, *loss_w_dev;  /* backend copies of the attention masks and loss weights */
    double *bert_fp, *bert_q;      /* per evaluation example (predictions.csv) */
} run_state;

static void run_free(run_state *s) {
    /* every slot: a unit that failed may hold a curve without being counted in nreps */
    int nslots = s->rep_cap > s->nreps ? s->rep_cap : s->nreps;
    if (s->reps) for (int i = 0; i < nslots; i++) { free(s->reps[i].curve); free(s->reps[i].curve_iter); }
    free(s->reps);
    free(s->units);
    free(s->pred_fp);
    free(s->pred_q);
    free(s->logits_fp);
    free(s->logits_q);
    qd_exec_free(s->ex);
    if (s->side_dev) s->b->ops->free_cache(s->b, s->side_dev);
    if (s->loss_w_dev) s->b->ops->free_cache(s->b, s->loss_w_dev);
    if (s->b) qd_backend_destroy(s->b);
    qd_dataset_free(&s->calib);
    qd_dataset_free(&s->val);
    qd_bert_job_free(&s->job);
    free(s->bert_fp);
    free(s->bert_q);
    qd_graph_free(s->g);
}

static void print_dry_run(const qd_config *cfg, const run_state *s, const mode_plan *mp) {
    const qd_graph *g = s->g;
    printf("qdrop-gpu dry run: %s\n", cfg->model_path);
    qd_graph_print_plan(g, stdout);
    int64_t worst = 0;
    int worst_u = -1;
    for (int i = 0; i < s->nunits; i++) {
        int64_t in = qd_value_sample_numel(&g->values[s->units[i].input_value]);
        int64_t out = qd_value_sample_numel(&g->values[s->units[i].output_value]);
        int64_t bytes = 4 * (int64_t)s->calib.n * ((mp->drop ? 2 : 1) * in + out);
        if (bytes > worst) { worst = bytes; worst_u = i; }
    }
    int64_t wbytes = 0;
    for (int k = 0; k < g->nwq; k++) wbytes += 4 * (int64_t)g->wq[k].channels * g->wq[k].per_channel;
    printf("mode: %s, W%dA%d, %d units (%s), %d iterations per unit, batch %d, total %lld iterations\n",
           qd_mode_name(cfg->mode), cfg->w_qconfig.bit, cfg->a_qconfig.bit, s->nunits, mp->layerwise ? "layer-wise" : "block-wise",
           mp->reconstruct ? cfg->recon.iters : 0, cfg->recon.batch_size,
           (long long)(mp->reconstruct ? (int64_t)cfg->recon.iters * s->nunits : 0));
    if (mp->brecq_act)
        printf("BRECQ activation stage: up to %d iterations per unit with activation quantizers (LSQ, lr %g cosine, L_2.4, FP "
               "inputs)\n", cfg->brecq.act_iters, (double)cfg->brecq.act_lr);
    printf("calibration: %d images (%s), activation ranges on %d; validation: %d images\n", s->calib.n, cfg->calib_path,
           cfg->act_calib_samples, s->val.n);
    printf("memory estimate: largest unit cache %.1f MiB (unit %d: %s), weights %.1f MiB x ~6 (FP, V, Adam m/v, soft, grad)\n",
           worst / 1048576.0, worst_u, worst_u >= 0 ? s->units[worst_u].name : "-", wbytes / 1048576.0);
}

/* BRECQ stage 2 (docs/algorithm.md §6.2 "B", §6.3 last item, §9 "Original baselines"), after every unit's
 * weights are hard-rounded:
 *   1. activation ranges of all quantizers: one progressive forward of quant.act_calib_samples
 *      images with hard weights and all activations quantized (each quantizer initialised on its
 *      first call, in data-flow order — B's single 64-image forward);
 *   2. per unit, in order: LSQ of the unit's activation scales only (weights fixed, no AdaRound,
 *      no drop), inputs and targets from the FP model, loss L_2.4 (§5 reduction), separate Adam
 *      lr quant.brecq.act_lr with cosine annealing to 0 over quant.brecq.act_iters, no scale
 *      gradient factor (B has none, §6.3), through the same training loop (qd_recon_unit).
 * Progress is checkpointed after every unit as units_done = nunits + i + 1, so --resume continues
 * exactly: ranges are recomputed (deterministically) only when no stage-2 unit had finished. */
static qd_status brecq_act_stage(run_state *S, qd_recon_ctx *ctx, const char *ckpt_path, uint64_t cfg_hash,
                                 uint64_t model_hash, int units_done) {
    const qd_config *cfg = ctx->cfg;
    qd_graph *g = S->g;
    qd_backend *b = S->b;
    int N = S->nunits;
    int start = units_done > N ? units_done - N : 0;
    qd_status st = QD_OK;
    if (start == 0) {
        qd_log_info("brecq_act_ranges", "BRECQ stage 2: activation ranges on %d images (hard weights, activations quantized)",
                    cfg->act_calib_samples);
        QD_TRY(qd_init_act_ranges(ctx, QD_EXEC_QUANT, NULL, cfg->act_calib_samples, 1));
    }
    qd_config c2 = *cfg;
    c2.recon.iters = cfg->brecq.act_iters;
    c2.recon.scale_lr = cfg->brecq.act_lr;
    c2.recon.lsq_grad_scale = 0;
    c2.recon.drop_prob = 1.0f;
    qd_recon_ctx saved = *ctx;
    ctx->cfg = &c2;
    ctx->weights_fixed = 1;
    ctx->loss_p = 2.4f;
    ctx->act_in_unit_quant = 1;
    ctx->learn_scales = 1;
    ctx->keep_prob = 1.0f;
    ctx->input_keep_prob = 1.0f;
    ctx->upstream_mode = QD_EXEC_FP;   /* "inputs taken from the FP model" */
    ctx->cut_q = ctx->cut_fp = NULL;
    ctx->cut_value = -1;
    float *cut = NULL;                 /* FP activations of the calibration set at the current unit input */
    int use_cut = getenv("QD_NO_INCREMENTAL_CACHE") == NULL;
    for (int i = start; i < N && st == QD_OK; i++) {
        const qd_unit_spec *u = &S->units[i];
        qd_unit_report *rep = &S->reps[N + i];
        int nq = 0;
        for (int a = 0; a < g->nact; a++) nq += g->act[a].unit == u->index;
        if (nq == 0) {
            /* nothing to learn in this unit (e.g. a classifier without an output quantizer) */
            memset(rep, 0, sizeof *rep);
            snprintf(rep->name, sizeof rep->name, "act %.120s", u->name);
            rep->nlayers = 0;
        } else {
            if (use_cut && !cut) {
                size_t bytes = sizeof(float) * (size_t)S->calib.n * (size_t)qd_value_sample_numel(&g->values[u->input_value]);
                int dev = 0;
                cut = b->ops->alloc_cache(b, bytes, &dev);
                if (!cut) { qd_error_clear(); use_cut = 0; }
                else if ((st = qd_cache_value(ctx, QD_EXEC_FP, u->node_begin, u->input_value, S->calib.n, cut)) != QD_OK) break;
            }
            ctx->cut_q = ctx->cut_fp = cut;
            ctx->cut_value = cut ? u->input_value : -1;
            ctx->progress_unit = i;
            ctx->progress_nunits = N;
            qd_log_info("unit_start", "BRECQ stage 2, unit %d/%d: %s", i + 1, N, u->name);
            st = qd_recon_unit(ctx, u, rep);
            for (int attempt = 1; st == QD_ERR_NUMERIC && attempt <= cfg->recon.nan_retries; attempt++) {
                qd_log_warn("nan_retry", "BRECQ stage 2, unit %d: %s; retrying with the scale lr / %d", i, qd_error_message(),
                            1 << (3 * attempt));
                qd_error_clear();
                free(rep->curve); free(rep->curve_iter);
                qd_config c3 = c2;
                c3.recon.scale_lr = c2.recon.scale_lr / (float)(1 << (3 * attempt));
                ctx->cfg = &c3;
                ctx->attempt = attempt;
                st = qd_recon_unit(ctx, u, rep);
                ctx->cfg = &c2;
                ctx->attempt = 0;
            }
            if (st != QD_OK) break;
            char nm[sizeof rep->name];
            snprintf(nm, sizeof nm, "act %.120s", rep->name);
            memcpy(rep->name, nm, sizeof nm);
            qd_log_info("unit_done", "BRECQ stage 2, unit %d/%d %s: %d iterations, L_2.4 %.5g -> %.5g, SQNR %.2f -> %.2f dB, %.1f s",
                        i + 1, N, u->name, rep->iters_run, rep->loss_start, rep->loss_end, rep->sqnr_before_db,
                        rep->sqnr_after_db, rep->seconds);
        }
        S->nreps = N + i + 1;
        if ((st = qd_ckpt_save(ckpt_path, g, cfg_hash, model_hash, N + i + 1, S->reps, S->nreps)) != QD_OK) break;
        S->ckpt_units = N + i + 1;
        if (qd_interrupted()) { st = QD_ERR_INTERRUPTED; break; }
        if (cut && i + 1 < N) {
            /* advance the FP cut to the next unit's input; recompute from the images when the units
             * do not form a simple chain */
            const qd_unit_spec *nx = &S->units[i + 1];
            size_t bytes = sizeof(float) * (size_t)S->calib.n * (size_t)qd_value_sample_numel(&g->values[nx->input_value]);
            int dev = 0;
            float *nc = b->ops->alloc_cache(b, bytes, &dev);
            if (nc && (st = qd_cache_from(ctx, QD_EXEC_FP, cut, u->input_value, u->node_begin, nx->node_begin,
                                           nx->input_value, S->calib.n, nc)) == QD_OK) {
                b->ops->free_cache(b, cut);
                cut = nc;
            } else {
                qd_error_clear();
                st = QD_OK;
                if (nc) b->ops->free_cache(b, nc);
                b->ops->free_cache(b, cut);
                cut = NULL;
                use_cut = 0;
            }
        }
    }
    if (cut) b->ops->free_cache(b, cut);
    saved.progress_unit = ctx->progress_unit;
    *ctx = saved;
    return st;
}

/* The one message of an interrupted run: stderr (by the CLI) and a run.log event. */
static qd_status interrupted(const run_state *S, const char *ckpt_path, int resume) {
    int sig = qd_interrupted();
    char fields[128];
    snprintf(fields, sizeof fields, "\"signal\":\"%s\",\"units_done\":%d,\"units\":%d", qd_signal_name(sig),
             S->ckpt_units, S->rep_cap);
    if (S->ckpt_units < 0 && resume && qd_file_exists(ckpt_path)) {
        /* a --resume stopped before it had read the checkpoint: the file is as it was */
        qd_log_file_only(QD_LOG_WARN, "interrupted", fields, "interrupted before resuming; resume with --resume");
        return qd_errorf(QD_ERR_INTERRUPTED, "interrupted by %s before resuming; resume with --resume (checkpoint %s kept)",
                         qd_signal_name(sig), ckpt_path);
    }
    if (S->ckpt_units < 0) {
        qd_log_file_only(QD_LOG_WARN, "interrupted", fields, "interrupted by %s before the first checkpoint; nothing to resume",
                         qd_signal_name(sig));
        return qd_errorf(QD_ERR_INTERRUPTED, "interrupted by %s before the first checkpoint; nothing to resume, run again "
                         "without --resume", qd_signal_name(sig));
    }
    qd_log_file_only(QD_LOG_WARN, "interrupted", fields, "interrupted after unit %d of %d; resume with --resume",
                     S->ckpt_units, S->rep_cap);
    return qd_errorf(QD_ERR_INTERRUPTED, "interrupted by %s after unit %d of %d; resume with --resume (checkpoint %s kept)",
                     qd_signal_name(sig), S->ckpt_units, S->rep_cap, ckpt_path);
}

static qd_status run_images(qd_config *cfg, const qd_run_options *opt, qd_outdir *od) {
    run_state S;
    memset(&S, 0, sizeof S);
    S.ckpt_units = -1;
    qd_status st = QD_OK;
    double t_start = now_s(), t_phase;
    cJSON *times = cJSON_CreateObject();
    mode_plan mp = plan_for(cfg->mode);
    char path[QD_PATH_MAX + 64];
    uint64_t cfg_hash = config_hash_for_resume(cfg), model_hash = 0;

    /* outputs: log, resolved config (the directory is locked and cleaned by qd_outdir_open) */
    if (!opt->dry_run) {
        snprintf(path, sizeof path, "%s/run.log", cfg->out_dir);
        if ((st = qd_log_open(path)) != QD_OK) goto done;
        char *js = qd_config_to_json(cfg);
        if (!js) { st = qd_errorf(QD_ERR_INTERNAL, "cannot serialise the resolved config"); goto done; }
        snprintf(path, sizeof path, "%s/resolved_config.json", cfg->out_dir);
        st = qd_write_file_atomic(path, js, strlen(js));
        free(js);
        if (st != QD_OK) goto done;
    }
    qd_log_info("start", "qdrop-gpu %s (%s): %s, mode %s, W%dA%d", qd_version(), qd_git_sha(), cfg->model_path,
                qd_mode_name(cfg->mode), cfg->w_qconfig.bit, cfg->a_qconfig.bit);

    /* model */
    t_phase = now_s();
    S.bert = strcmp(cfg->model_type, "bert") == 0;
    if (S.bert) {
        /* a HuggingFace BERT directory: the encoder graph and the calibration tensors come from
         * the BERT family (src/bert/bert_job.c); everything else is this run */
        if ((st = qd_bert_job_load(cfg, &S.job, &S.g)) != QD_OK) goto done;
        snprintf(path, sizeof path, "%s/model.safetensors", cfg->model_path);
        if ((st = file_hash(path, &model_hash)) != QD_OK) goto done;
        S.calib.n = S.job.cal.n;
        S.calib.c = 1; S.calib.h = S.job.S; S.calib.w = S.job.fp->cfg.hidden;
        S.calib.x = S.job.calib_q;
        S.job.calib_q = NULL;
    } else {
        if ((st = file_hash(cfg->model_path, &model_hash)) != QD_OK) goto done;
        if ((st = qd_graph_prepare(cfg->model_path, &S.g)) != QD_OK) goto done;
        qd_quant_plan_opts po = {cfg->w_qconfig.bit, cfg->a_qconfig.bit, cfg->first_last_8bit, cfg->brecq_setting};
        if ((st = qd_graph_place_quantizers(S.g, &po)) != QD_OK) goto done;
    }
    if (!S.bert && (S.g->ninputs != 1 || S.g->noutputs != 1)) {
        st = qd_errorf(QD_ERR_UNSUPPORTED, "%s: the engine needs exactly one graph input and one output (found %d and %d)",
                       cfg->model_path, S.g->ninputs, S.g->noutputs);
        goto done;
    }
    const qd_value *inv = &S.g->values[S.g->inputs[0]];
    if (S.bert) inv = NULL;
    else if (inv->ndim != 4) { st = qd_errorf(QD_ERR_UNSUPPORTED, "%s: input '%s' must be NCHW images", cfg->model_path, inv->name); goto done; }
    int C = inv ? (int)inv->dims[1] : S.calib.c, H = inv ? (int)inv->dims[2] : S.calib.h, W = inv ? (int)inv->dims[3] : S.calib.w;
    const qd_value *outv = &S.g->values[S.g->outputs[0]];
    int nclasses = (int)outv->dims[outv->ndim - 1];
    S.nunits = build_units(S.g, mp.layerwise, &S.units);
    if (S.nunits < 0) { st = qd_errorf(QD_ERR_INTERNAL, "out of host memory"); goto done; }
    cJSON_AddNumberToObject(times, "load_model_s", now_s() - t_phase);

    /* data */
    t_phase = now_s();
    if (!S.bert && (st = load_images(cfg, cfg->calib_path, NULL, C, H, W, cfg->calibrate, 0, &S.calib)) != QD_OK) goto done;
    if (S.calib.n < cfg->calibrate)
        qd_log_warn("calib_small", "calibration folder %s has %d images, fewer than quant.calibrate = %d: using all",
                    cfg->calib_path, S.calib.n, cfg->calibrate);
    if (!S.bert && cfg->eval_enabled && cfg->val_path[0]) {
        if ((st = load_images(cfg, cfg->val_path, cfg->val_labels_path[0] ? cfg->val_labels_path : NULL, C, H, W, 0,
                              cfg->eval_max_images, &S.val)) != QD_OK)
            goto done;
        if (!S.val.labels) { st = qd_errorf(QD_ERR_DATA, "%s: validation data has no labels", cfg->val_path); goto done; }
    }
    cJSON_AddNumberToObject(times, "load_data_s", now_s() - t_phase);

    if (opt->dry_run) {
        /* a dry run fails where the real run would: the requested device must exist, and the
         * checkpoint --resume would read must be there and valid for this model and config */
        if (cfg->device == QD_DEVICE_CUDA) {
            qd_backend_options bo = {1, cfg->deterministic, cfg->tf32, cfg->device_memory_budget_mb * 1024 * 1024};
            if ((st = qd_backend_create("cuda", &bo, &S.b)) != QD_OK) goto done;
        }
        if (opt->resume) {
            int rep_cap = mp.brecq_act ? 2 * S.nunits : S.nunits, done_units = 0;
            snprintf(path, sizeof path, "%s/checkpoint.bin", cfg->out_dir);
            if (access(path, F_OK) != 0) { /* anything else there is refused by qd_ckpt_load, saying what it is */
                st = qd_errorf(QD_ERR_NOINPUT, "%s: no checkpoint to resume from (run without --resume to start)", path);
                goto done;
            }
            S.reps = calloc((size_t)rep_cap + 1, sizeof(qd_unit_report));
            if (!S.reps) { st = qd_errorf(QD_ERR_INTERNAL, "out of host memory"); goto done; }
            S.rep_cap = rep_cap;
            if ((st = qd_ckpt_load(path, S.g, cfg_hash, model_hash, &done_units, S.reps, rep_cap, &S.nreps)) != QD_OK) goto done;
        }
        print_dry_run(cfg, &S, &mp);
        if (S.bert) {
            /* the cost estimate times units without their side inputs: not for BERT yet */
            printf("time estimate: not available for model.type bert\n");
            goto done;
        }
        qd_estimate_plan ep = {mp.reconstruct, mp.act_in_unit, mp.learn_scales, mp.brecq_act,
                               mp.drop ? cfg->recon.drop_prob : 1.0f, mp.upstream};
        fflush(stdout);
        st = qd_print_cost_estimate(cfg, S.g, S.units, S.nunits, S.calib.x, S.calib.n, (int64_t)C * H * W, S.val.n, &ep,
                                    stdout);
        goto done;
    }
    if (qd_interrupted()) { st = QD_ERR_INTERRUPTED; goto done; }

    /* backend */
    {
        /* quant.recon.keep_gpu=false puts every unit cache in pinned host memory (a 1-byte device
         * budget): the reference's keep_gpu: False, for GPUs too small for the caches */
        qd_backend_options bo = {qd_default_threads(cfg), cfg->deterministic, cfg->tf32,
                                 cfg->recon.keep_gpu ? cfg->device_memory_budget_mb * 1024 * 1024 : 1};
        const char *kind = cfg->device == QD_DEVICE_CPU ? "cpu" : cfg->device == QD_DEVICE_CUDA ? "cuda" : "auto";
        if ((st = qd_backend_create(kind, &bo, &S.b)) != QD_OK) goto done;
    }
    int maxb = cfg->eval_batch_size > 128 ? cfg->eval_batch_size : 128;
    if (cfg->recon.batch_size > maxb) maxb = cfg->recon.batch_size;
    if ((st = qd_exec_create(S.g, S.b, maxb, &S.ex)) != QD_OK) goto done;
    qd_log_info("backend", "backend %s (%s)", S.b->ops->name, S.b->device_name);

    qd_recon_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.g = S.g; ctx.b = S.b; ctx.exec = S.ex; ctx.cfg = cfg;
    ctx.calib_host = S.calib.x; ctx.ncal = S.calib.n; ctx.image_numel = (int64_t)C * H * W;
    ctx.act_in_unit_quant = mp.act_in_unit;
    ctx.learn_scales = mp.learn_scales;
    ctx.keep_prob = mp.drop ? cfg->recon.drop_prob : 1.0f;
    ctx.input_keep_prob = mp.drop ? cfg->recon.drop_prob : 1.0f;
    ctx.upstream_mode = mp.upstream;
    if (S.bert) {
        /* the FP path reads the FP embeddings; every unit reads the attention mask (a side
         * input) and weighs its loss by the token weights (recon.h) */
        size_t mb = sizeof(float) * (size_t)S.calib.n * (size_t)S.job.S;
        int dev = 0;
        ctx.calib_host_fp = S.job.calib_fp;
        S.side_dev = S.b->ops->alloc_cache(S.b, mb, &dev);
        S.loss_w_dev = S.b->ops->alloc_cache(S.b, mb, &dev);
        if (!S.side_dev || !S.loss_w_dev) { st = qd_errorf(QD_ERR_DEVICE_OOM, "BERT: cannot allocate the calibration masks"); goto done; }
        if ((st = S.b->ops->upload(S.b, S.side_dev, S.job.calib_mask, mb)) != QD_OK) goto done;
        if ((st = S.b->ops->upload(S.b, S.loss_w_dev, S.job.loss_w, mb)) != QD_OK) goto done;
        ctx.nside = 1;
        ctx.side_value[0] = S.g->inputs[1];
        ctx.side_dev[0] = S.side_dev;
        ctx.loss_w_dev = S.loss_w_dev;
        ctx.loss_w_host = S.job.loss_w;
        ctx.loss_w_numel = S.job.S;
    }

    double fp_top1 = NAN, fp_top5 = NAN, q_top1 = NAN, q_top5 = NAN;
    double fp_metric = NAN, q_metric = NAN;   /* BERT task metric */
    if (S.bert && cfg->eval_enabled && cfg->eval_fp32) {
        t_phase = now_s();
        if (!(S.bert_fp = calloc((size_t)S.job.n_eval + 1, sizeof(double)))) { st = qd_errorf(QD_ERR_INTERNAL, "out of host memory"); goto done; }
        if ((st = qd_bert_job_evaluate(&S.job, S.g, S.b, 0, &fp_metric, S.bert_fp)) != QD_OK) goto done;
        cJSON_AddNumberToObject(times, "eval_fp32_s", now_s() - t_phase);
        qd_log_info("eval_fp32", "FP32 %s %.6f (%d %s)", S.job.sst2 ? "SST-2 accuracy" : "STS-B Spearman", fp_metric,
                    S.job.n_eval, S.job.sst2 ? "sentences" : "pairs");
    }
    if (S.val.n > 0 && cfg->eval_fp32) {
        t_phase = now_s();
        if ((st = evaluate(S.ex, QD_EXEC_FP, &S.val, cfg->eval_batch_size, nclasses, &fp_top1, &fp_top5, &S.pred_fp,
                           cfg->logits ? &S.logits_fp : NULL)) != QD_OK) goto done;
        cJSON_AddNumberToObject(times, "eval_fp32_s", now_s() - t_phase);
        qd_log_info("eval_fp32", "FP32 top-1 %.2f%% top-5 %.2f%% (%d images)", 100 * fp_top1, 100 * fp_top5, S.val.n);
    }

    /* resume or calibrate */
    int units_done = 0;
    /* BRECQ: one report per unit and stage; checkpoint progress counts stage-2 units after the
     * stage-1 ones (units_done in [0, 2 * nunits]) */
    int rep_cap = mp.brecq_act ? 2 * S.nunits : S.nunits;
    S.reps = calloc((size_t)rep_cap + 1, sizeof(qd_unit_report));
    if (!S.reps) { st = qd_errorf(QD_ERR_INTERNAL, "out of host memory"); goto done; }
    S.rep_cap = rep_cap;
    snprintf(path, sizeof path, "%s/checkpoint.bin", cfg->out_dir);
    if (opt->resume) {
        if (access(path, F_OK) != 0) { /* anything else there is refused by qd_ckpt_load, saying what it is */
            st = qd_errorf(QD_ERR_NOINPUT, "%s: no checkpoint to resume from (run without --resume to start)", path);
            goto done;
        }
        if ((st = qd_ckpt_load(path, S.g, cfg_hash, model_hash, &units_done, S.reps, rep_cap, &S.nreps)) != QD_OK) goto done;
        if (units_done > rep_cap) { st = qd_errorf(QD_ERR_DATA, "%s: checkpoint records %d finished units, this run has %d", path, units_done, rep_cap); goto done; }
        S.ckpt_units = units_done;
        if ((st = qd_exec_sync_quant(S.ex)) != QD_OK) goto done;
        qd_log_info("resume", "resuming from %s: %d of %d units finished", path, units_done, rep_cap);
    } else {
        t_phase = now_s();
        if (S.bert) {
            /* ranges on valid tokens only, by the BERT calibration helpers (weights too) */
            if ((st = qd_bert_job_init_ranges(&S.job, S.g, cfg)) != QD_OK) goto done;
        } else if (mp.ranges_before &&
                   (st = qd_init_act_ranges(&ctx, mp.range_mode, NULL, cfg->act_calib_samples, mp.range_progressive)) != QD_OK)
            goto done;
        cJSON_AddNumberToObject(times, "act_ranges_s", now_s() - t_phase);
        t_phase = now_s();
        if (!S.bert && (st = qd_init_weight_ranges(S.g, qd_default_threads(cfg))) != QD_OK) goto done;
        if ((st = qd_exec_sync_quant(S.ex)) != QD_OK) goto done;
        cJSON_AddNumberToObject(times, "weight_ranges_s", now_s() - t_phase);
        if (mp.reconstruct && (st = qd_ckpt_save(path, S.g, cfg_hash, model_hash, 0, S.reps, 0)) != QD_OK) goto done;
        if (mp.reconstruct) S.ckpt_units = 0;
    }
    if (qd_interrupted()) { st = QD_ERR_INTERRUPTED; goto done; }

    /* reconstruction */
    t_phase = now_s();
    ctx.cut_value = -1;
    if (mp.reconstruct) {
        /* Block units form a chain: keep the calibration set's activations at the current cut
         * and advance them unit by unit instead of recomputing the prefix (layer-wise units
         * read values inside blocks, so they recompute). */
        int use_cut = !mp.layerwise && getenv("QD_NO_INCREMENTAL_CACHE") == NULL;
        for (int i = units_done; i < S.nunits; i++) {
            if (use_cut && !ctx.cut_q) {
                int v = S.units[i].input_value;
                size_t bytes = sizeof(float) * (size_t)S.calib.n * (size_t)qd_value_sample_numel(&S.g->values[v]);
                int dev = 0;
                ctx.cut_q = S.b->ops->alloc_cache(S.b, bytes, &dev);
                ctx.cut_fp = S.b->ops->alloc_cache(S.b, bytes, &dev);
                if (!ctx.cut_q || !ctx.cut_fp) {
                    st = qd_errorf(QD_ERR_DEVICE_OOM, "unit %d (%s): cannot allocate the %zu-byte calibration caches",
                                   i, S.units[i].name, bytes);
                    goto cut_fail;
                }
                if ((st = qd_cache_value(&ctx, ctx.upstream_mode, S.units[i].node_begin, v, S.calib.n, ctx.cut_q)) != QD_OK ||
                    (st = qd_cache_value(&ctx, QD_EXEC_FP, S.units[i].node_begin, v, S.calib.n, ctx.cut_fp)) != QD_OK)
                    goto cut_fail;
                ctx.cut_value = v;
            }
            ctx.progress_unit = i;
            ctx.progress_nunits = S.nunits;
            qd_log_info("unit_start", "unit %d/%d: %s", i + 1, S.nunits, S.units[i].name);
            qd_unit_report *rep = &S.reps[i];
            st = qd_recon_unit(&ctx, &S.units[i], rep);
            for (int attempt = 1; st == QD_ERR_NUMERIC && attempt <= cfg->recon.nan_retries; attempt++) {
                qd_log_warn("nan_retry", "unit %d: %s; retrying with both learning rates / %d", i, qd_error_message(), 1 << (3 * attempt));
                qd_error_clear();
                free(rep->curve); free(rep->curve_iter);
                qd_config c2 = *cfg;
                c2.recon.scale_lr = cfg->recon.scale_lr / (float)(1 << (3 * attempt));
                ctx.cfg = &c2;
                ctx.attempt = attempt;
                st = qd_recon_unit(&ctx, &S.units[i], rep);
                ctx.cfg = cfg;
                ctx.attempt = 0;
            }
            if (st != QD_OK) goto cut_fail;
            S.nreps = i + 1;
            if (mp.ranges_per_unit_after) {
                int *sel = calloc((size_t)S.g->nact + 1, sizeof(int));
                if (!sel) { st = qd_errorf(QD_ERR_INTERNAL, "out of host memory"); goto cut_fail; }
                for (int a = 0; a < S.g->nact; a++)
                    sel[a] = !S.g->act[a].initialized && S.g->act[a].unit >= 0 &&
                             S.g->nodes[S.g->values[S.g->act[a].value].producer].unit >= 0 &&
                             S.g->values[S.g->act[a].value].producer < S.units[i].node_end;
                st = qd_init_act_ranges(&ctx, QD_EXEC_QUANT, sel, cfg->act_calib_samples, 1);
                free(sel);
                if (st != QD_OK) goto cut_fail;
            }
            qd_log_info("unit_done", "unit %d/%d %s: %d iterations, loss %.5g -> %.5g, SQNR %.2f -> %.2f dB, %.1f s",
                        i + 1, S.nunits, rep->name, rep->iters_run, rep->loss_start, rep->loss_end, rep->sqnr_before_db,
                        rep->sqnr_after_db, rep->seconds);
            if ((st = qd_ckpt_save(path, S.g, cfg_hash, model_hash, i + 1, S.reps, S.nreps)) != QD_OK) goto cut_fail;
            S.ckpt_units = i + 1;
            if (qd_interrupted()) { st = QD_ERR_INTERRUPTED; goto cut_fail; }
            if (use_cut && ctx.cut_q && i + 1 < S.nunits) {
                const qd_unit_spec *nx = &S.units[i + 1];
                size_t bytes = sizeof(float) * (size_t)S.calib.n * (size_t)qd_value_sample_numel(&S.g->values[nx->input_value]);
                int dev = 0;
                float *nq = S.b->ops->alloc_cache(S.b, bytes, &dev), *nf = S.b->ops->alloc_cache(S.b, bytes, &dev);
                if (nq && nf &&
                    (st = qd_cache_from(&ctx, ctx.upstream_mode, ctx.cut_q, ctx.cut_value, S.units[i].node_begin,
                                        nx->node_begin, nx->input_value, S.calib.n, nq)) == QD_OK &&
                    (st = qd_cache_from(&ctx, QD_EXEC_FP, ctx.cut_fp, ctx.cut_value, S.units[i].node_begin,
                                        nx->node_begin, nx->input_value, S.calib.n, nf)) == QD_OK) {
                    S.b->ops->free_cache(S.b, ctx.cut_q);
                    S.b->ops->free_cache(S.b, ctx.cut_fp);
                    ctx.cut_q = nq; ctx.cut_fp = nf; ctx.cut_value = nx->input_value;
                } else {
                    /* not a simple chain here (or no memory): recompute from the images */
                    qd_error_clear();
                    st = QD_OK;
                    if (nq) S.b->ops->free_cache(S.b, nq);
                    if (nf) S.b->ops->free_cache(S.b, nf);
                    S.b->ops->free_cache(S.b, ctx.cut_q);
                    S.b->ops->free_cache(S.b, ctx.cut_fp);
                    ctx.cut_q = ctx.cut_fp = NULL;
                    ctx.cut_value = -1;
                    use_cut = 0;
                }
            }
        }
    cut_fail:
        if (ctx.cut_q) S.b->ops->free_cache(S.b, ctx.cut_q);
        if (ctx.cut_fp) S.b->ops->free_cache(S.b, ctx.cut_fp);
        ctx.cut_q = ctx.cut_fp = NULL;
        ctx.cut_value = -1;
        if (st != QD_OK) goto done;
    }
    if (mp.brecq_act && (st = brecq_act_stage(&S, &ctx, path, cfg_hash, model_hash, units_done)) != QD_OK) goto done;
    if (mp.ranges_after_all && (st = qd_init_act_ranges(&ctx, QD_EXEC_QUANT, NULL, cfg->act_calib_samples, 1)) != QD_OK) goto done;
    if (mp.ranges_per_unit_after && (st = qd_init_act_ranges(&ctx, QD_EXEC_QUANT, NULL, cfg->act_calib_samples, 1)) != QD_OK) goto done;
    cJSON_AddNumberToObject(times, "reconstruction_s", now_s() - t_phase);

    /* quantized evaluation */
    if (S.bert && cfg->eval_enabled) {
        t_phase = now_s();
        if (!(S.bert_q = calloc((size_t)S.job.n_eval + 1, sizeof(double)))) { st = qd_errorf(QD_ERR_INTERNAL, "out of host memory"); goto done; }
        if ((st = qd_bert_job_evaluate(&S.job, S.g, S.b, 1, &q_metric, S.bert_q)) != QD_OK) goto done;
        cJSON_AddNumberToObject(times, "eval_quant_s", now_s() - t_phase);
        qd_log_info("eval_quant", "quantized W%dA%d %s %.6f", cfg->w_qconfig.bit, cfg->a_qconfig.bit,
                    S.job.sst2 ? "SST-2 accuracy" : "STS-B Spearman", q_metric);
    }
    if (S.val.n > 0) {
        t_phase = now_s();
        if ((st = evaluate(S.ex, QD_EXEC_QUANT, &S.val, cfg->eval_batch_size, nclasses, &q_top1, &q_top5, &S.pred_q,
                           cfg->logits ? &S.logits_q : NULL)) != QD_OK) goto done;
        cJSON_AddNumberToObject(times, "eval_quant_s", now_s() - t_phase);
        qd_log_info("eval_quant", "quantized W%dA%d top-1 %.2f%% top-5 %.2f%%", cfg->w_qconfig.bit, cfg->a_qconfig.bit,
                    100 * q_top1, 100 * q_top5);
    }

    /* export */
    if (cfg->export_onnx) {
        t_phase = now_s();
        char onnx_path[QD_PATH_MAX + 64], enc_path[QD_PATH_MAX + 64];
        snprintf(onnx_path, sizeof onnx_path, "%s/model_qdq.onnx", od->stage);
        snprintf(enc_path, sizeof enc_path, "%s/encodings.json", od->stage);
        if ((st = qd_export_qdq_onnx(S.g, cfg, onnx_path)) != QD_OK) goto done;
        if ((st = qd_export_encodings(S.g, cfg, enc_path)) != QD_OK) goto done;
        cJSON_AddNumberToObject(times, "export_s", now_s() - t_phase);
    }
    if (S.bert_q) {
        /* per-example outputs of the quantized model (ONNX Runtime parity, resume checks) */
        char *csv = NULL;
        size_t len = 0;
        if ((st = qd_bert_job_predictions_csv(&S.job, S.bert_fp, S.bert_q, &csv, &len)) != QD_OK) goto done;
        snprintf(path, sizeof path, "%s/predictions.csv", od->stage);
        st = qd_write_file_atomic(path, csv, len);
        free(csv);
        if (st != QD_OK) goto done;
    }
    if (S.pred_q) {
        /* per-image predictions of the engine's quantized model (ONNX Runtime parity check) */
        size_t cap = (size_t)S.val.n * 16 + 64, len = 0;
        char *csv = malloc(cap);
        if (csv) {
            len += (size_t)snprintf(csv + len, cap - len, "index,label,fp32,quant\n");
            for (int i = 0; i < S.val.n; i++)
                len += (size_t)snprintf(csv + len, cap - len, "%d,%d,%d,%d\n", i, S.val.labels[i], S.pred_fp ? S.pred_fp[i] : -1, S.pred_q[i]);
            snprintf(path, sizeof path, "%s/predictions.csv", od->stage);
            st = qd_write_file_atomic(path, csv, len);
            free(csv);
            if (st != QD_OK) goto done;
        }
    }
    if (cfg->logits && (st = qd_write_logits(od->stage, S.logits_fp, S.logits_q, S.val.n, nclasses)) != QD_OK) goto done;

    /* results.json */
    {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "version", qd_version());
        cJSON_AddStringToObject(r, "git_sha", qd_git_sha());
        cJSON *dev = cJSON_AddObjectToObject(r, "device");
        cJSON_AddStringToObject(dev, "backend", S.b->ops->name);
        cJSON_AddStringToObject(dev, "name", S.b->device_name);
        cJSON_AddBoolToObject(dev, "deterministic", S.b->deterministic);
        cJSON_AddBoolToObject(dev, "tf32", S.b->tf32);
        cJSON_AddNumberToObject(dev, "threads", S.b->threads);
        char vers[512];
        qd_cuda_versions(vers, sizeof vers);
        cJSON_AddStringToObject(dev, "cuda_versions", vers);
        char hs[32];
        snprintf(hs, sizeof hs, "%016llx", (unsigned long long)cfg_hash);
        cJSON_AddStringToObject(r, "config_hash", hs);
        if (opt->command) cJSON_AddStringToObject(r, "command", opt->command);
        cJSON_AddStringToObject(r, "model", cfg->model_path);
        cJSON_AddStringToObject(r, "mode", qd_mode_name(cfg->mode));
        cJSON_AddNumberToObject(r, "w_bits", cfg->w_qconfig.bit);
        cJSON_AddNumberToObject(r, "a_bits", cfg->a_qconfig.bit);
        cJSON_AddNumberToObject(r, "iters_per_unit", cfg->recon.iters);
        if (mp.brecq_act) {
            cJSON_AddNumberToObject(r, "brecq_act_iters_per_unit", cfg->brecq.act_iters);
            cJSON_AddNumberToObject(r, "brecq_act_lr", cfg->brecq.act_lr);
        }
        cJSON_AddNumberToObject(r, "calibration_images", S.calib.n);
        cJSON_AddNumberToObject(r, "seed", (double)cfg->seed);
        cJSON *acc = cJSON_AddObjectToObject(r, "accuracy");
        if (S.bert) {
            cJSON_AddStringToObject(r, "model_type", "bert");
            cJSON_AddStringToObject(r, "task", cfg->task);
            cJSON_AddNumberToObject(r, "calibration_sentences", S.job.cal.n);
            cJSON_AddNumberToObject(r, "calibration_tokens", (double)S.job.cal.ntok);
            cJSON_AddNumberToObject(r, "calibration_seq_len", S.job.S);
            cJSON_AddStringToObject(acc, "metric", S.job.sst2 ? "accuracy" : "spearman_cosine");
            cJSON_AddStringToObject(acc, "eval_set", cfg->val_path);
            cJSON_AddNumberToObject(acc, S.job.sst2 ? "examples" : "pairs", S.job.n_eval);
            if (!isnan(fp_metric)) cJSON_AddNumberToObject(acc, "fp32", fp_metric);
            else cJSON_AddNullToObject(acc, "fp32");
            if (!isnan(q_metric)) cJSON_AddNumberToObject(acc, "quant", q_metric);
            else cJSON_AddNullToObject(acc, "quant");
        } else
        cJSON_AddNumberToObject(acc, "images", S.val.n);
        if (!isnan(fp_top1)) { cJSON_AddNumberToObject(acc, "fp32_top1", 100 * fp_top1); cJSON_AddNumberToObject(acc, "fp32_top5", 100 * fp_top5); }
        if (!isnan(q_top1)) { cJSON_AddNumberToObject(acc, "quant_top1", 100 * q_top1); cJSON_AddNumberToObject(acc, "quant_top5", 100 * q_top5); }
        if (S.pred_fp && S.pred_q && S.val.n > 0) {
            int same = 0;
            for (int i = 0; i < S.val.n; i++) same += S.pred_fp[i] == S.pred_q[i];
            cJSON_AddNumberToObject(acc, "agreement_with_fp32", 100.0 * same / S.val.n);
        }
        cJSON *us = cJSON_AddArrayToObject(r, "units");
        long total_iters = 0;
        for (int i = 0; i < S.nreps; i++) { cJSON_AddItemToArray(us, unit_json(&S.reps[i], i)); total_iters += S.reps[i].iters_run; }
        cJSON_AddNumberToObject(r, "total_iterations", (double)total_iters);
        cJSON_AddNumberToObject(times, "total_s", now_s() - t_start);
        cJSON_AddItemToObject(r, "timing", times);
        times = NULL;
        char *raw = cJSON_Print(r);
        char *txt = raw ? qd_utf8_valid_dup(raw) : NULL; /* paths may hold non-UTF-8 bytes */
        free(raw);
        cJSON_Delete(r);
        snprintf(path, sizeof path, "%s/results.json", od->stage);
        st = txt ? qd_write_file_atomic(path, txt, strlen(txt)) : qd_errorf(QD_ERR_INTERNAL, "cannot serialise results");
        free(txt);
        if (st != QD_OK) goto done;
    }
    /* every output is complete in the staging directory: publish them together, results.json
     * last (a signal after this point no longer stops the run: its work is done) */
    if (qd_interrupted()) { st = QD_ERR_INTERRUPTED; goto done; }
    if ((st = qd_outdir_publish(od)) != QD_OK) goto done;
    /* report.html / report.md (+ plots/): rendered from the published files, exactly as
     * `qdrop-gpu report DIR` would. The results are complete at this point, so a report that
     * cannot be written (disk full...) is a warning, not a failed run: it can be rendered again. */
    {
        qd_report_options ro = {cfg->plots};
        if (qd_report_render(cfg->out_dir, cfg->out_dir, &ro) != QD_OK) {
            qd_log_warn("report_failed", "report.html not written: %s (render it later with: qdrop-gpu report DIR)",
                        qd_error_message());
            qd_error_clear();
        }
    }
    if (!opt->quiet) {
        printf("model %s  mode %s  W%dA%d  units %d  iterations/unit %d\n", cfg->model_path, qd_mode_name(cfg->mode),
               cfg->w_qconfig.bit, cfg->a_qconfig.bit, S.nunits, mp.reconstruct ? cfg->recon.iters : 0);
        if (S.bert && cfg->eval_enabled) {
            char fps[32] = "n/a";
            if (!isnan(fp_metric)) snprintf(fps, sizeof fps, "%.4f", fp_metric);
            printf("%s (%d %s): FP32 %s | %s W%dA%d %.4f\n", S.job.sst2 ? "SST-2 accuracy" : "STS-B Spearman (cosine)",
                   S.job.n_eval, S.job.sst2 ? "sentences" : "pairs", fps, qd_mode_name(cfg->mode), cfg->w_qconfig.bit,
                   cfg->a_qconfig.bit, q_metric);
        }
        if (!isnan(fp_top1)) printf("FP32       top-1 %6.2f%%  top-5 %6.2f%%\n", 100 * fp_top1, 100 * fp_top5);
        if (!isnan(q_top1)) printf("quantized  top-1 %6.2f%%  top-5 %6.2f%%\n", 100 * q_top1, 100 * q_top5);
        printf("outputs in %s (results.json, report.html, model_qdq.onnx, encodings.json) — %.1f s\n", cfg->out_dir, now_s() - t_start);
    }
done:
    if (st == QD_ERR_INTERRUPTED) {
        snprintf(path, sizeof path, "%s/checkpoint.bin", cfg->out_dir);
        st = interrupted(&S, path, opt->resume);
    }
    if (times) cJSON_Delete(times);
    run_free(&S);
    if (!opt->dry_run) qd_log_close();
    return st;
}

qd_status qd_run(qd_config *cfg, const qd_run_options *opt) {
    qd_outdir od;
    memset(&od, 0, sizeof od);
    od.lock_fd = -1;
    qd_range_search_set_method(cfg->range_search == 1 ? QD_RANGE_EXACT : QD_RANGE_FAST);
    /* missing model or data: say how to get them before creating any output */
    QD_TRY(qd_check_run_inputs(cfg));
    /* the output directory: refused when it holds the model; locked, cleaned and staged for a
     * real run (recon/outdir.h) */
    qd_status st = opt->dry_run ? qd_outdir_check_model(cfg) : qd_outdir_open(&od, cfg, opt->resume);
    if (st != QD_OK) return st;
    {
        /* ONNX models and HuggingFace BERT directories (model.type bert) run the same pipeline */
        int handlers = !opt->dry_run && qd_interrupt_install() == 0;
        st = run_images(cfg, opt, &od);
        if (handlers) qd_interrupt_restore();
    }
    qd_outdir_close(&od);
    return st;
}

qd_status qd_inspect(const char *model_path, const qd_config *cfg) {
    qd_graph *g = NULL;
    QD_TRY(qd_graph_prepare(model_path, &g));
    qd_quant_plan_opts po = {cfg->w_qconfig.bit, cfg->a_qconfig.bit, cfg->first_last_8bit, cfg->brecq_setting};
    qd_status st = qd_graph_place_quantizers(g, &po);
    if (st == QD_OK) qd_graph_print_plan(g, stdout);
    qd_graph_free(g);
    return st;
}
