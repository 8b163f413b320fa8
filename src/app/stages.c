/* src/app/stages.c: the stages of a run, one function each, over the explicit run state
 * (src/app/app.h). The order and what each reads and writes: docs/architecture.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app/app.h"
#include "qdrop/export.h"
#include "qdrop/fsutil.h"
#include "qdrop/interrupt.h"
#include "qdrop/log.h"
#include "recon/ckpt.h"

double qd_app_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void add_time(qd_run_state *S, const char *key, double t0) {
    if (S->times) cJSON_AddNumberToObject(S->times, key, qd_app_now_s() - t0);
}

void qd_run_state_init(qd_run_state *S, qd_config *cfg, const qd_run_options *opt, const qd_model_family *family) {
    memset(S, 0, sizeof *S);
    S->cfg = cfg;
    S->opt = opt;
    S->family = family;
    S->plan = qd_mode_plan_for(cfg->mode);
    S->ckpt_units = -1;
    S->t_start = qd_app_now_s();
    snprintf(S->ckpt_path, sizeof S->ckpt_path, "%s/checkpoint.bin", cfg->out_dir);
}

static void eval_result_free(qd_eval_result *r) {
    free(r->pred);
    free(r->outputs);
    memset(r, 0, sizeof *r);
}

void qd_run_state_free(qd_run_state *S) {
    /* every slot: a unit that failed may hold a curve without being counted in nreps */
    int nslots = S->rep_cap > S->nreps ? S->rep_cap : S->nreps;
    if (S->reps) for (int i = 0; i < nslots; i++) { free(S->reps[i].curve); free(S->reps[i].curve_iter); }
    free(S->reps);
    free(S->units);
    eval_result_free(&S->eval_fp);
    eval_result_free(&S->eval_q);
    if (S->times) cJSON_Delete(S->times);
    qd_exec_free(S->ex);
    for (int k = 0; S->b && k < S->ctx.nside; k++) if (S->ctx.side_dev[k]) S->b->ops->free_cache(S->b, S->ctx.side_dev[k]);
    if (S->b && S->ctx.loss_w_dev) S->b->ops->free_cache(S->b, S->ctx.loss_w_dev);
    if (S->b) qd_backend_destroy(S->b);
    if (S->family && S->family->release) S->family->release(S);
    qd_graph_free(S->g);
    qd_mem_plan_free(&S->mem);
    memset(S, 0, sizeof *S);
}

static qd_status file_hash(const char *path, uint64_t *h) {
    void *d = NULL;
    size_t n = 0;
    QD_TRY(qd_read_input(path, "ONNX model", (size_t)2 << 30, &d, &n));
    *h = qd_fnv1a64(d, n, 0);
    free(d);
    return QD_OK;
}

/* load: the model (a run hashes it for --resume and finds its units; `eval --from` reads the
 * quantized model back from the run's encodings.json), then the data. */
qd_status qd_stage_load(qd_run_state *S, int with_calibration) {
    const qd_config *cfg = S->cfg;
    double t = qd_app_now_s();
    if (with_calibration)
        QD_TRY(S->family->model_hash ? S->family->model_hash(S, &S->model_hash) : file_hash(cfg->model_path, &S->model_hash));
    QD_TRY(S->family->load_model(S));
    if (S->from_dir) {
        char path[QD_PATH_MAX + 64];
        QD_TRY(qd_path_join(path, sizeof path, S->from_dir, "encodings.json"));
        if (!qd_file_exists(path))
            return qd_errorf(QD_ERR_NOINPUT, "%s: not found (--from needs the output directory of a finished run with "
                             "output.export_onnx true)", path);
        QD_TRY(qd_import_encodings(S->g, path));
    }
    if (with_calibration) {
        S->nunits = qd_build_units(S->g, S->plan.layerwise, &S->units);
        if (S->nunits < 0) return qd_errorf(QD_ERR_INTERNAL, "out of host memory");
    }
    add_time(S, "load_model_s", t);
    t = qd_app_now_s();
    QD_TRY(S->family->load_data(S, with_calibration));
    add_time(S, "load_data_s", t);
    return QD_OK;
}

static qd_status alloc_reports(qd_run_state *S) {
    /* BRECQ: one report per unit and stage; checkpoint progress counts stage-2 units after the
     * stage-1 ones (units_done in [0, 2 * nunits]) */
    int rep_cap = S->plan.brecq_act ? 2 * S->nunits : S->nunits;
    S->reps = calloc((size_t)rep_cap + 1, sizeof(qd_unit_report));
    if (!S->reps) return qd_errorf(QD_ERR_INTERNAL, "out of host memory");
    S->rep_cap = rep_cap;
    return QD_OK;
}

static qd_status check_checkpoint_exists(const qd_run_state *S) {
    if (access(S->ckpt_path, F_OK) != 0) /* anything else there is refused by qd_ckpt_load, saying what it is */
        return qd_errorf(QD_ERR_NOINPUT, "%s: no checkpoint to resume from (run without --resume to start)", S->ckpt_path);
    return QD_OK;
}

static void print_dry_run(const qd_run_state *S) {
    const qd_config *cfg = S->cfg;
    const qd_mode_plan *mp = &S->plan;
    const qd_graph *g = S->g;
    printf("qdrop-gpu dry run: %s\n", cfg->model_path);
    qd_graph_print_plan(g, stdout);
    int64_t wbytes = 0;
    for (int k = 0; k < g->nwq; k++) wbytes += 4 * (int64_t)g->wq[k].channels * g->wq[k].per_channel;
    printf("mode: %s, W%dA%d, %d units (%s), %d iterations per unit, batch %d, total %lld iterations\n",
           qd_mode_name(cfg->mode), cfg->w_qconfig.bit, cfg->a_qconfig.bit, S->nunits, mp->layerwise ? "layer-wise" : "block-wise",
           mp->reconstruct ? cfg->recon.iters : 0, cfg->recon.batch_size,
           (long long)(mp->reconstruct ? (int64_t)cfg->recon.iters * S->nunits : 0));
    if (mp->brecq_act)
        printf("BRECQ activation stage: up to %d iterations per unit with activation quantizers (LSQ, lr %g cosine, L_2.4, FP "
               "inputs)\n", cfg->brecq.act_iters, (double)cfg->brecq.act_lr);
    S->family->describe_data(S, stdout);
    /* the unit caches and every other buffer: the memory plan printed next (recon/memplan.h) */
    printf("weights %.1f MiB (x ~6 while a unit trains: FP, V, Adam m/v, soft, grad)\n", wbytes / 1048576.0);
}

static qd_mem_plan_in mem_plan_in(const qd_run_state *S) {
    const qd_config *cfg = S->cfg;
    qd_mem_plan_in in = {cfg, S->g, S->units, S->nunits, S->ctx.ncal, S->neval, S->ctx.image_numel, S->plan.reconstruct,
                         S->plan.layerwise, S->plan.drop,
                         cfg->device == QD_DEVICE_CUDA || (cfg->device == QD_DEVICE_AUTO && qd_cuda_available())};
    return in;
}

qd_status qd_stage_memory(qd_run_state *S) {
    qd_mem_plan_in in = mem_plan_in(S);
    QD_TRY(qd_mem_plan_make(&in, &S->mem));
    if (S->opt->dry_run) return QD_OK; /* printed, then checked, by the dry run */
    QD_TRY(qd_mem_plan_check(&S->mem, &in));
    qd_log_info("memory_plan", "memory plan: host budget %.1f MiB for the caches (largest unit %.1f MiB)%s, planned peak "
                "RSS within budget + %.1f MiB", S->mem.budget / 1048576.0, S->mem.cache_peak / 1048576.0,
                !in.cuda && S->mem.spill_peak > 0 ? ", spilling to the output directory" : "", S->mem.overhead / 1048576.0);
    return QD_OK;
}

/* dry run: fails where the real run would (the requested device must exist, the checkpoint
 * --resume would read must be there and valid for this model and config), then prints the plan
 * and the cost estimate */
qd_status qd_stage_dry_run(qd_run_state *S) {
    const qd_config *cfg = S->cfg;
    if (cfg->device == QD_DEVICE_CUDA) {
        qd_backend_options bo = {.threads = 1, .deterministic = cfg->deterministic, .tf32 = cfg->tf32,
                                 .memory_budget = cfg->device_memory_budget_mb * 1024 * 1024};
        QD_TRY(qd_backend_create("cuda", &bo, &S->b));
        QD_TRY(qd_backend_check_graph(S->b, S->g)); /* a node the device cannot run: refused here too */
    }
    if (S->opt->resume) {
        int done_units = 0;
        QD_TRY(check_checkpoint_exists(S));
        QD_TRY(alloc_reports(S));
        QD_TRY(qd_ckpt_load(S->ckpt_path, S->g, S->cfg_hash, S->model_hash, &done_units, S->reps, S->rep_cap, &S->nreps));
    }
    print_dry_run(S);
    qd_mem_plan_in mpin = mem_plan_in(S);
    qd_mem_plan_print(&S->mem, &mpin, stdout);
    QD_TRY(qd_mem_plan_check(&S->mem, &mpin));
    if (S->ctx.nside > 0) { /* the estimate's timing run feeds no side inputs */
        printf("time estimate: not available for units with side inputs (model.type %s)\n", cfg->model_type);
        return QD_OK;
    }
    qd_estimate_plan ep = {S->plan.reconstruct, S->plan.brecq_act, qd_unit_params_recon(cfg, &S->plan)};
    fflush(stdout);
    return qd_print_cost_estimate(cfg, S->g, S->units, S->nunits, S->ctx.calib_host, S->ctx.ncal, S->ctx.image_numel,
                                  S->neval, &ep, stdout);
}

qd_status qd_stage_device(qd_run_state *S, int64_t device_budget, int batch) {
    const qd_config *cfg = S->cfg;
    /* a run's unit caches within process.host_memory_budget (CPU), spilled to its output directory;
     * `qdrop-gpu eval` has no caches and no plan */
    qd_backend_options bo = {.threads = qd_default_threads(cfg), .deterministic = cfg->deterministic, .tf32 = cfg->tf32,
                             .memory_budget = device_budget,
                             .host_memory_budget = S->mem.unit_cache ? S->mem.cache_budget : 0,
                             .spill_dir = S->mem.unit_cache && S->od ? cfg->out_dir : NULL};
    const char *kind = cfg->device == QD_DEVICE_CPU ? "cpu" : cfg->device == QD_DEVICE_CUDA ? "cuda" : "auto";
    QD_TRY(qd_backend_create(kind, &bo, &S->b));
    QD_TRY(qd_exec_create(S->g, S->b, batch, &S->ex));
    S->ctx.g = S->g;
    S->ctx.b = S->b;
    S->ctx.exec = S->ex;
    S->ctx.cfg = cfg;
    /* the side inputs and loss weights of the calibration samples, uploaded once (recon.h) */
    qd_recon_ctx *c = &S->ctx;
    for (int k = 0; k < c->nside + (c->loss_w_host != NULL); k++) {
        int lw = k == c->nside;
        size_t bytes = sizeof(float) * (size_t)c->ncal *
                       (size_t)(lw ? c->loss_w_numel : qd_value_sample_numel(&S->g->values[c->side_value[k]]));
        int dev = 0;
        float *p = S->b->ops->alloc_cache(S->b, bytes, &dev);
        if (!p) return qd_errorf(QD_ERR_DEVICE_OOM, "cannot allocate %zu bytes for the calibration %s", bytes,
                                 lw ? "loss weights" : "side inputs");
        if (lw) c->loss_w_dev = p;
        else c->side_dev[k] = p;
        QD_TRY(S->b->ops->upload(S->b, p, lw ? c->loss_w_host : c->side_host[k], bytes));
    }
    return QD_OK;
}

/* calibrate: quantizer ranges — activations (when the mode sets them first, §6.2), weights
 * (§3.1) — and the first checkpoint; or, with --resume, the state of the checkpoint */
qd_status qd_stage_calibrate(qd_run_state *S) {
    const qd_config *cfg = S->cfg;
    const qd_mode_plan *mp = &S->plan;
    QD_TRY(alloc_reports(S));
    if (S->opt->resume) {
        QD_TRY(check_checkpoint_exists(S));
        QD_TRY(qd_ckpt_load(S->ckpt_path, S->g, S->cfg_hash, S->model_hash, &S->units_done, S->reps, S->rep_cap, &S->nreps));
        if (S->units_done > S->rep_cap)
            return qd_errorf(QD_ERR_DATA, "%s: checkpoint records %d finished units, this run has %d", S->ckpt_path,
                             S->units_done, S->rep_cap);
        S->ckpt_units = S->units_done;
        QD_TRY(qd_exec_sync_quant(S->ex));
        qd_log_info("resume", "resuming from %s: %d of %d units finished", S->ckpt_path, S->units_done, S->rep_cap);
        return QD_OK;
    }
    double t = qd_app_now_s();
    if (S->family->init_ranges) {
        QD_TRY(S->family->init_ranges(S));
        QD_TRY(qd_exec_sync_quant(S->ex));
        add_time(S, "ranges_s", t);
    } else {
        if (mp->ranges_before)
            QD_TRY(qd_init_act_ranges(&S->ctx, mp->range_mode, NULL, cfg->act_calib_samples, mp->range_progressive));
        add_time(S, "act_ranges_s", t);
        t = qd_app_now_s();
        QD_TRY(qd_init_weight_ranges(S->g, qd_default_threads(cfg)));
        QD_TRY(qd_exec_sync_quant(S->ex));
        add_time(S, "weight_ranges_s", t);
    }
    if (mp->reconstruct) {
        QD_TRY(qd_ckpt_save(S->ckpt_path, S->g, S->cfg_hash, S->model_hash, 0, S->reps, 0));
        S->ckpt_units = 0;
    }
    return QD_OK;
}

/* reconstruct: the weight stage over the units, BRECQ's activation stage, and the activation
 * ranges a mode sets after the weights (§9) */
qd_status qd_stage_reconstruct(qd_run_state *S) {
    const qd_config *cfg = S->cfg;
    const qd_mode_plan *mp = &S->plan;
    double t = qd_app_now_s();
    qd_recon_progress pr = {S->ckpt_path, S->cfg_hash, S->model_hash, S->reps, &S->nreps, &S->ckpt_units};
    if (mp->reconstruct) QD_TRY(qd_recon_weight_stage(&S->ctx, mp, S->units, S->nunits, S->units_done, &pr));
    if (mp->brecq_act) QD_TRY(qd_brecq_act_stage(&S->ctx, S->units, S->nunits, S->units_done, &pr));
    if (mp->ranges_after_all) QD_TRY(qd_init_act_ranges(&S->ctx, QD_EXEC_QUANT, NULL, cfg->act_calib_samples, 1));
    if (mp->ranges_per_unit_after) QD_TRY(qd_init_act_ranges(&S->ctx, QD_EXEC_QUANT, NULL, cfg->act_calib_samples, 1));
    add_time(S, "reconstruction_s", t);
    return QD_OK;
}

/* evaluate: the family's evaluator on the evaluation set, FP32 or quantized */
qd_status qd_stage_evaluate(qd_run_state *S, qd_exec_mode mode, const qd_eval_request *rq) {
    const qd_config *cfg = S->cfg;
    int fp = mode == QD_EXEC_FP;
    qd_eval_result *res = fp ? &S->eval_fp : &S->eval_q;
    double t = qd_app_now_s();
    QD_TRY(S->family->evaluate(S, mode, rq, res));
    if (!rq->progress) return QD_OK;
    add_time(S, fp ? "eval_fp32_s" : "eval_quant_s", t);
    char m[256];
    qd_results_metrics_text(res, m, sizeof m);
    if (fp) qd_log_info("eval_fp32", "FP32 %s (%d images)", m, res->n);
    else qd_log_info("eval_quant", "quantized W%dA%d %s", cfg->w_qconfig.bit, cfg->a_qconfig.bit, m);
    return QD_OK;
}

/* export: the QDQ ONNX model and encodings.json, staged with the other final outputs */
qd_status qd_stage_export(qd_run_state *S) {
    const qd_config *cfg = S->cfg;
    if (!cfg->export_onnx) return QD_OK;
    double t = qd_app_now_s();
    char onnx_path[QD_PATH_MAX + 64], enc_path[QD_PATH_MAX + 64];
    snprintf(onnx_path, sizeof onnx_path, "%s/model_qdq.onnx", S->od->stage);
    snprintf(enc_path, sizeof enc_path, "%s/encodings.json", S->od->stage);
    QD_TRY(qd_export_qdq_onnx(S->g, cfg, onnx_path));
    QD_TRY(qd_export_encodings(S->g, cfg, enc_path));
    add_time(S, "export_s", t);
    return QD_OK;
}

/* report: the result files, published together (results.json last; a signal after this point
 * no longer stops the run: its work is done), then report.html and the summary */
qd_status qd_stage_report(qd_run_state *S) {
    QD_TRY(qd_results_write_run(S));
    if (qd_interrupted()) return QD_ERR_INTERRUPTED;
    QD_TRY(qd_outdir_publish(S->od));
    qd_results_render_report(S);
    if (!S->opt->quiet) qd_results_print_run_summary(S);
    return QD_OK;
}
