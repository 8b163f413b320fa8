/* src/app/run.c: qd_run and qd_eval — pick the pipeline for the job and run its stages
 * (src/app/stages.c) in the reference order (docs/algorithm.md §1):
 *   load ONNX -> fold BN -> units -> quantizer placement -> calibration data
 *   -> FP32 evaluation -> activation ranges (§6.2) -> weight ranges (§3.1)
 *   -> per unit: caches + reconstruction (§8) -> checkpoint -> next unit
 *   -> (mode-dependent late activation ranges, §9; BRECQ: its activation stage, §6.3)
 *   -> quantized evaluation
 *   -> results.json, encodings + QDQ ONNX export, run report (report.html/.md, plots/).
 * Every output file is written atomically; the final outputs are staged and published together
 * (recon/outdir.h), the report rendered from them after publication. SIGINT/SIGTERM stop the run
 * at the next iteration or stage boundary with the last checkpoint intact (qdrop/interrupt.h). */
#include <stdio.h>
#include <string.h>

#include "app/app.h"
#include "qdrop/fsutil.h"
#include "qdrop/interrupt.h"
#include "qdrop/log.h"

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
    c.host_memory_budget = 0; /* in memory or spilled, the caches hold the same numbers */
    if (c.mode != QD_MODE_BRECQ) memset(&c.brecq, 0, sizeof c.brecq);   /* unused by the other modes */
    return qd_config_hash(&c);
}

/* The one message of an interrupted run: stderr (by the CLI) and a run.log event. */
static qd_status interrupted(const qd_run_state *S) {
    int sig = qd_interrupted();
    const char *ckpt_path = S->ckpt_path;
    char fields[128];
    snprintf(fields, sizeof fields, "\"signal\":\"%s\",\"units_done\":%d,\"units\":%d", qd_signal_name(sig),
             S->ckpt_units, S->rep_cap);
    if (S->ckpt_units < 0 && S->opt->resume && qd_file_exists(ckpt_path)) {
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

/* The stages of a run, in order; a dry run stops after loading. */
static qd_status run_stages(qd_run_state *S) {
    const qd_config *cfg = S->cfg;
    const qd_run_options *opt = S->opt;
    if (!opt->dry_run) QD_TRY(qd_results_open_run(S));
    qd_log_info("start", "qdrop-gpu %s (%s): %s, mode %s, W%dA%d", qd_version(), qd_git_sha(), cfg->model_path,
                qd_mode_name(cfg->mode), cfg->w_qconfig.bit, cfg->a_qconfig.bit);
    QD_TRY(qd_stage_load(S, 1));
    QD_TRY(qd_stage_memory(S));
    if (opt->dry_run) return qd_stage_dry_run(S);
    if (qd_interrupted()) return QD_ERR_INTERRUPTED;

    /* quant.recon.keep_gpu=false puts every unit cache in pinned host memory (a 1-byte device
     * budget): the reference's keep_gpu: False, for GPUs too small for the caches */
    int64_t budget = cfg->recon.keep_gpu ? cfg->device_memory_budget_mb * 1024 * 1024 : 1;
    int maxb = cfg->eval_batch_size > 128 ? cfg->eval_batch_size : 128;
    if (cfg->recon.batch_size > maxb) maxb = cfg->recon.batch_size;
    QD_TRY(qd_stage_device(S, budget, maxb));
    qd_log_info("backend", "backend %s (%s)", S->b->ops->name, S->b->device_name);

    qd_eval_request rq = {.keep_outputs = cfg->logits, .predictions = 1, .progress = 1};
    if (S->neval > 0 && cfg->eval_fp32) QD_TRY(qd_stage_evaluate(S, QD_EXEC_FP, &rq));
    QD_TRY(qd_stage_calibrate(S));
    if (qd_interrupted()) return QD_ERR_INTERRUPTED;
    QD_TRY(qd_stage_reconstruct(S));
    if (S->neval > 0) QD_TRY(qd_stage_evaluate(S, QD_EXEC_QUANT, &rq));
    QD_TRY(qd_stage_export(S));
    qd_mem_log_peak(&S->mem, S->b);
    return qd_stage_report(S);
}

static qd_status run_graph_pipeline(qd_config *cfg, const qd_run_options *opt, qd_outdir *od,
                                    const qd_model_family *family) {
    qd_run_state S;
    qd_run_state_init(&S, cfg, opt, family);
    S.od = od;
    S.cfg_hash = config_hash_for_resume(cfg);
    S.times = cJSON_CreateObject();
    qd_status st = run_stages(&S);
    if (st == QD_ERR_INTERRUPTED) st = interrupted(&S);
    qd_run_state_free(&S);
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
        /* ONNX models and HuggingFace BERT directories (model.type bert): the same stages, the
         * model family supplies the graph, the calibration tensors and the metrics */
        int handlers = !opt->dry_run && qd_interrupt_install() == 0;
        st = run_graph_pipeline(cfg, opt, &od, strcmp(cfg->model_type, "bert") == 0 ? &qd_family_bert : &qd_family_image);
        if (handlers) qd_interrupt_restore();
    }
    qd_outdir_close(&od);
    return st;
}

/* `qdrop-gpu eval`: evaluate a model without calibrating or reconstructing.
 *
 *   qdrop-gpu eval --config C             the FP32 model of C on data.val_path
 *   qdrop-gpu eval --from RUN_DIR         a finished run: its resolved_config.json, the FP32 model
 *                                         and the quantized model read back from its encodings.json
 *
 * The same load stage (graph preparation, quantizer plan, data loading), executor and evaluator
 * as a run, so the logits are the ones a run computes: `eval --from` reproduces the run's
 * quantized logits bit for bit. Outputs (atomic, into cfg->out_dir): logits_fp32.npy,
 * logits_quant.npy ([N, classes] float32) and eval.json (accuracy when the data has labels). No
 * calibration data is read. */
qd_status qd_eval(qd_config *cfg, const char *from_dir, const qd_run_options *opt) {
    if (strcmp(cfg->model_type, "onnx") != 0)
        return qd_errorf(QD_ERR_CONFIG, "model.type: '%s': `qdrop-gpu eval` evaluates ONNX models only",
                         cfg->model_type);
    if (!cfg->val_path[0])
        return qd_errorf(QD_ERR_CONFIG, "data.val_path: `qdrop-gpu eval` needs an evaluation set (ImageFolder or .npy)");
    qd_run_state S;
    qd_run_state_init(&S, cfg, opt, &qd_family_image);
    S.from_dir = from_dir;
    qd_eval_request rq = {.keep_outputs = 1, .predictions = 0, .progress = 0};
    qd_status st = qd_stage_load(&S, 0);
    if (st == QD_OK) st = qd_stage_device(&S, cfg->device_memory_budget_mb * 1024 * 1024, cfg->eval_batch_size);
    if (st == QD_OK && from_dir) st = qd_exec_sync_quant(S.ex);
    if (st == QD_OK) st = qd_mkdir_p(cfg->out_dir);
    if (st == QD_OK && (!from_dir || cfg->eval_fp32)) st = qd_stage_evaluate(&S, QD_EXEC_FP, &rq);
    if (st == QD_OK && from_dir) st = qd_stage_evaluate(&S, QD_EXEC_QUANT, &rq);
    if (st == QD_OK) st = qd_results_write_eval(&S);
    qd_run_state_free(&S);
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
