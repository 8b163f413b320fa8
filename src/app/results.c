/* src/app/results.c: the report module — every file a run or `qdrop-gpu eval` writes about its
 * results, and the summary it prints: run.log and resolved_config.json at the start;
 * predictions.csv, logits_fp32.npy / logits_quant.npy and results.json (staged, published
 * together by the report stage); report.html / report.md and plots/ rendered from the published
 * files (src/report/, the same renderer as `qdrop-gpu report`); eval.json. All writes are
 * atomic. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "data/npy_write.h"
#include "qdrop/backend.h"
#include "qdrop/fsutil.h"
#include "qdrop/log.h"
#include "qdrop/report.h"
#include "qdrop/utf8.h"

qd_status qd_results_open_run(qd_run_state *S) {
    const qd_config *cfg = S->cfg;
    char path[QD_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/run.log", cfg->out_dir);
    QD_TRY(qd_log_open(path));
    char *js = qd_config_to_json(cfg);
    if (!js) return qd_errorf(QD_ERR_INTERNAL, "cannot serialise the resolved config");
    snprintf(path, sizeof path, "%s/resolved_config.json", cfg->out_dir);
    qd_status st = qd_write_file_atomic(path, js, strlen(js));
    free(js);
    return st;
}

qd_status qd_results_write_logits(const char *dir, const float *fp, const float *q, int n, int nout) {
    if (n == 0) {
        qd_log_warn("logits_skipped", "output.logits: no evaluation set (data.val_path, eval.enabled): no logits written");
        return QD_OK;
    }
    char path[QD_PATH_MAX + 64];
    int64_t dims[2] = {n, nout};
    if (fp) {
        QD_TRY(qd_path_join(path, sizeof path, dir, "logits_fp32.npy"));
        QD_TRY(qd_npy_write_f32(path, fp, 2, dims));
    }
    if (q) {
        QD_TRY(qd_path_join(path, sizeof path, dir, "logits_quant.npy"));
        QD_TRY(qd_npy_write_f32(path, q, 2, dims));
    }
    return QD_OK;
}

void qd_results_metrics_text(const qd_eval_result *r, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = 0;
    for (int k = 0; k < r->nmetrics && len < n; k++) {
        const qd_metric *m = &r->m[k];
        int w = m->percent ? snprintf(buf + len, n - len, "%s%s %.2f%%", k ? " " : "", m->label, m->value)
                           : snprintf(buf + len, n - len, "%s%s %.6f", k ? " " : "", m->label, m->value);
        if (w < 0) break;
        len += (size_t)w;
    }
}

/* "FP32       top-1  91.20%  top-5  99.70%" */
static void print_metrics_line(const char *what, const qd_eval_result *r, const char *suffix) {
    printf("%-10s", what);
    for (int k = 0; k < r->nmetrics; k++) {
        const qd_metric *m = &r->m[k];
        if (m->percent) printf("%s%s %6.2f%%", k ? "  " : " ", m->label, m->value);
        else printf("%s%s %9.6f", k ? "  " : " ", m->label, m->value);
    }
    printf("%s\n", suffix);
}

static void add_metrics(cJSON *acc, const char *prefix, const qd_eval_result *r) {
    char k[64];
    for (int i = 0; i < r->nmetrics; i++) {
        snprintf(k, sizeof k, "%s_%s", prefix, r->m[i].key);
        cJSON_AddNumberToObject(acc, k, r->m[i].value);
    }
}

/* results.json unit "rng_digest" (docs/numerics.md "Reproducibility digest"): what makes a CPU
 * run and a CUDA run comparable bit for bit. Absent for units restored from a checkpoint. */
static void unit_digest_json(cJSON *o, const qd_unit_report *r) {
    if (r->digest_iters <= 0) return;
    char hx[24];
    cJSON *d = cJSON_AddObjectToObject(o, "rng_digest");
    cJSON_AddNumberToObject(d, "iterations", r->digest_iters);
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)r->digest_batch);
    cJSON_AddStringToObject(d, "batch_indices", hx);
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)r->digest_input_mix);
    if (r->has_input_mix) cJSON_AddStringToObject(d, "input_mix", hx);
    else cJSON_AddNullToObject(d, "input_mix");
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)r->digest_act_masks);
    if (r->mask_sites > 0) cJSON_AddStringToObject(d, "act_drop_masks", hx);
    else cJSON_AddNullToObject(d, "act_drop_masks");
    cJSON_AddNumberToObject(d, "act_drop_sites", r->mask_sites);
    cJSON_AddNumberToObject(d, "mask_bits", (double)r->mask_bits);
}

/* results.json device "kernels": the backend's own account of how it computed (backend.h
 * describe: conv implementation; on CUDA the TF32 state and the cuDNN algorithms per conv
 * shape). run.log keeps its "cudnn_algo" events as well. */
static void device_kernels_json(cJSON *dev, qd_backend *b) {
    if (!b->ops->describe) return;
    size_t need = b->ops->describe(b, NULL, 0);
    char *txt = malloc(need + 1);
    cJSON *k = NULL;
    if (txt && b->ops->describe(b, txt, need + 1) == need && txt[0]) k = cJSON_Parse(txt);
    free(txt);
    if (k) cJSON_AddItemToObject(dev, "kernels", k);
    else qd_log_warn("describe_failed", "results.json: the %s backend's kernel description is missing or not JSON", b->ops->name);
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
    unit_digest_json(o, r);
    /* the loss curve for the run report: window means, a point at least every 1% of the iterations */
    cJSON *curve = cJSON_AddObjectToObject(o, "loss_curve");
    cJSON *xs = cJSON_AddArrayToObject(curve, "iteration"), *ys = cJSON_AddArrayToObject(curve, "loss");
    for (int c = 0; c < r->ncurve; c++) {
        cJSON_AddItemToArray(xs, cJSON_CreateNumber(r->curve_iter[c]));
        cJSON_AddItemToArray(ys, cJSON_CreateNumber(r->curve[c]));
    }
    return o;
}

/* per-example predictions of the engine's quantized model (ONNX Runtime parity check) */
static qd_status write_predictions(const qd_run_state *S) {
    const qd_eval_result *fp = &S->eval_fp, *q = &S->eval_q;
    if (!q->pred) return QD_OK;
    size_t cap = (size_t)q->n * 16 + 64, len = 0;
    char *csv = malloc(cap);
    if (!csv) return QD_OK;
    len += (size_t)snprintf(csv + len, cap - len, "index,label,fp32,quant\n");
    for (int i = 0; i < q->n; i++)
        len += (size_t)snprintf(csv + len, cap - len, "%d,%d,%d,%d\n", i, q->labels ? q->labels[i] : -1,
                                fp->pred ? fp->pred[i] : -1, q->pred[i]);
    char path[QD_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/predictions.csv", S->od->stage);
    qd_status st = qd_write_file_atomic(path, csv, len);
    free(csv);
    return st;
}

static qd_status write_results_json(qd_run_state *S) {
    const qd_config *cfg = S->cfg;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "version", qd_version());
    cJSON_AddStringToObject(r, "git_sha", qd_git_sha());
    cJSON *dev = cJSON_AddObjectToObject(r, "device");
    cJSON_AddStringToObject(dev, "backend", S->b->ops->name);
    cJSON_AddStringToObject(dev, "name", S->b->device_name);
    cJSON_AddBoolToObject(dev, "deterministic", S->b->deterministic);
    cJSON_AddBoolToObject(dev, "tf32", S->b->tf32);
    cJSON_AddNumberToObject(dev, "threads", S->b->threads);
    char vers[512];
    qd_cuda_versions(vers, sizeof vers);
    cJSON_AddStringToObject(dev, "cuda_versions", vers);
    device_kernels_json(dev, S->b);
    char hs[32];
    snprintf(hs, sizeof hs, "%016llx", (unsigned long long)S->cfg_hash);
    cJSON_AddStringToObject(r, "config_hash", hs);
    if (S->opt->command) cJSON_AddStringToObject(r, "command", S->opt->command);
    cJSON_AddStringToObject(r, "model", cfg->model_path);
    cJSON_AddStringToObject(r, "mode", qd_mode_name(cfg->mode));
    cJSON_AddNumberToObject(r, "w_bits", cfg->w_qconfig.bit);
    cJSON_AddNumberToObject(r, "a_bits", cfg->a_qconfig.bit);
    cJSON_AddNumberToObject(r, "iters_per_unit", cfg->recon.iters);
    if (S->plan.brecq_act) {
        cJSON_AddNumberToObject(r, "brecq_act_iters_per_unit", cfg->brecq.act_iters);
        cJSON_AddNumberToObject(r, "brecq_act_lr", cfg->brecq.act_lr);
    }
    cJSON_AddNumberToObject(r, "calibration_images", S->ctx.ncal);
    cJSON_AddNumberToObject(r, "seed", (double)cfg->seed);
    cJSON *acc = cJSON_AddObjectToObject(r, "accuracy");
    if (!S->family->results_json) cJSON_AddNumberToObject(acc, "images", S->neval);
    else S->family->results_json(S, r, acc);
    add_metrics(acc, "fp32", &S->eval_fp);
    add_metrics(acc, "quant", &S->eval_q);
    if (S->eval_fp.pred && S->eval_q.pred && S->neval > 0) {
        int same = 0;
        for (int i = 0; i < S->neval; i++) same += S->eval_fp.pred[i] == S->eval_q.pred[i];
        cJSON_AddNumberToObject(acc, "agreement_with_fp32", 100.0 * same / S->neval);
    }
    cJSON *us = cJSON_AddArrayToObject(r, "units");
    long total_iters = 0;
    for (int i = 0; i < S->nreps; i++) { cJSON_AddItemToArray(us, unit_json(&S->reps[i], i)); total_iters += S->reps[i].iters_run; }
    cJSON_AddNumberToObject(r, "total_iterations", (double)total_iters);
    cJSON_AddNumberToObject(S->times, "total_s", qd_app_now_s() - S->t_start);
    cJSON_AddItemToObject(r, "timing", S->times);
    S->times = NULL;
    char *raw = cJSON_Print(r);
    char *txt = raw ? qd_utf8_valid_dup(raw) : NULL; /* paths may hold non-UTF-8 bytes */
    free(raw);
    cJSON_Delete(r);
    char path[QD_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/results.json", S->od->stage);
    qd_status st = txt ? qd_write_file_atomic(path, txt, strlen(txt)) : qd_errorf(QD_ERR_INTERNAL, "cannot serialise results");
    free(txt);
    return st;
}

qd_status qd_results_write_run(qd_run_state *S) {
    if (S->family->write_predictions) {
        char path[QD_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/predictions.csv", S->od->stage);
        QD_TRY(S->family->write_predictions(S, path));
    } else {
        QD_TRY(write_predictions(S));
    }
    if (S->cfg->logits)
        QD_TRY(qd_results_write_logits(S->od->stage, S->eval_fp.outputs, S->eval_q.outputs, S->neval, S->nout));
    return write_results_json(S);
}

/* report.html / report.md (+ plots/): rendered from the published files, exactly as
 * `qdrop-gpu report DIR` would. The results are complete at this point, so a report that
 * cannot be written (disk full...) is a warning, not a failed run: it can be rendered again. */
void qd_results_render_report(const qd_run_state *S) {
    qd_report_options ro = {S->cfg->plots};
    if (qd_report_render(S->cfg->out_dir, S->cfg->out_dir, &ro) != QD_OK) {
        qd_log_warn("report_failed", "report.html not written: %s (render it later with: qdrop-gpu report DIR)",
                    qd_error_message());
        qd_error_clear();
    }
}

void qd_results_print_run_summary(const qd_run_state *S) {
    const qd_config *cfg = S->cfg;
    printf("model %s  mode %s  W%dA%d  units %d  iterations/unit %d\n", cfg->model_path, qd_mode_name(cfg->mode),
           cfg->w_qconfig.bit, cfg->a_qconfig.bit, S->nunits, S->plan.reconstruct ? cfg->recon.iters : 0);
    if (S->eval_fp.nmetrics) print_metrics_line("FP32", &S->eval_fp, "");
    if (S->eval_q.nmetrics) print_metrics_line("quantized", &S->eval_q, "");
    /* only the files this run wrote: the exports exist with output.export_onnx */
    printf("outputs in %s (results.json, report.html%s) — %.1f s\n", cfg->out_dir,
           cfg->export_onnx ? ", model_qdq.onnx, encodings.json" : "", qd_app_now_s() - S->t_start);
}

qd_status qd_results_write_eval(qd_run_state *S) {
    const qd_config *cfg = S->cfg;
    const qd_eval_result *fp = &S->eval_fp, *q = &S->eval_q;
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "version", qd_version());
    cJSON_AddStringToObject(res, "model", cfg->model_path);
    cJSON_AddStringToObject(res, "from", S->from_dir ? S->from_dir : "");
    cJSON_AddStringToObject(res, "data", cfg->val_path);
    cJSON_AddStringToObject(res, "backend", S->b->ops->name);
    cJSON_AddNumberToObject(res, "images", S->neval);
    cJSON_AddNumberToObject(res, "classes", S->nout);
    cJSON *acc = cJSON_AddObjectToObject(res, "accuracy");
    cJSON *files = cJSON_AddArrayToObject(res, "logits");
    if (fp->done) {
        add_metrics(acc, "fp32", fp);
        cJSON_AddItemToArray(files, cJSON_CreateString("logits_fp32.npy"));
    }
    if (q->done) {
        add_metrics(acc, "quant", q);
        cJSON_AddItemToArray(files, cJSON_CreateString("logits_quant.npy"));
    }
    qd_status st = qd_results_write_logits(cfg->out_dir, fp->outputs, q->outputs, S->neval, S->nout);
    if (st == QD_OK) {
        char *txt = cJSON_Print(res);
        char path[QD_PATH_MAX + 64];
        if (!txt) st = qd_errorf(QD_ERR_INTERNAL, "eval: cannot serialise eval.json");
        else if ((st = qd_path_join(path, sizeof path, cfg->out_dir, "eval.json")) == QD_OK)
            st = qd_write_file_atomic(path, txt, strlen(txt));
        free(txt);
    }
    cJSON_Delete(res);
    if (st != QD_OK || S->opt->quiet) return st;
    printf("eval %s on %s: %d images, %d classes\n", cfg->model_path, cfg->val_path, S->neval, S->nout);
    if (fp->outputs && fp->nmetrics) print_metrics_line("FP32", fp, "");
    if (q->outputs && q->nmetrics) {
        char suffix[QD_PATH_MAX + 16];
        snprintf(suffix, sizeof suffix, "  (from %s)", S->from_dir);
        print_metrics_line("quantized", q, suffix);
    }
    printf("outputs in %s (eval.json%s%s)\n", cfg->out_dir, fp->outputs ? ", logits_fp32.npy" : "",
           q->outputs ? ", logits_quant.npy" : "");
    return QD_OK;
}
