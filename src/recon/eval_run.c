/* src/recon/eval_run.c: `qdrop-gpu eval` — evaluate a model without calibrating or reconstructing.
 *
 *   qdrop-gpu eval --config C             the FP32 model of C on data.val_path
 *   qdrop-gpu eval --from RUN_DIR         a finished run: its resolved_config.json, the FP32 model
 *                                         and the quantized model read back from its encodings.json
 *
 * Same graph preparation, quantizer plan, data loading and executor as a run (qd_run), so the
 * logits are the ones a run computes: `eval --from` reproduces the run's quantized logits bit for
 * bit. Outputs (atomic, into cfg->out_dir): logits_fp32.npy, logits_quant.npy ([N, classes]
 * float32) and eval.json (accuracy when the data has labels). No calibration data is read. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/npy_write.h"
#include "qdrop/backend.h"
#include "qdrop/data.h"
#include "qdrop/exec.h"
#include "qdrop/export.h"
#include "qdrop/fsutil.h"
#include "qdrop/log.h"
#include "qdrop/qdrop.h"
#include "recon/recon.h"

/* Whole-set forward in eval.batch_size chunks into logits [n, nclasses]. */
static qd_status forward_all(qd_exec *ex, qd_exec_mode mode, const qd_dataset *val, int batch, int nclasses,
                             float **out) {
    float *all = malloc(sizeof(float) * (size_t)(val->n > 0 ? val->n : 1) * (size_t)nclasses);
    if (!all) return qd_errorf(QD_ERR_INTERNAL, "eval: out of host memory for %d x %d logits", val->n, nclasses);
    int64_t numel = (int64_t)val->c * val->h * val->w;
    qd_status st = QD_OK;
    for (int s0 = 0; s0 < val->n && st == QD_OK; s0 += batch) {
        int nb = val->n - s0 < batch ? val->n - s0 : batch;
        st = qd_exec_forward_host(ex, mode, val->x + (size_t)s0 * (size_t)numel, nb, all + (size_t)s0 * (size_t)nclasses);
    }
    if (st != QD_OK) { free(all); return st; }
    *out = all;
    return QD_OK;
}

static qd_status add_accuracy(cJSON *acc, const char *prefix, const float *logits, const qd_dataset *val, int nclasses,
                              double *top1, double *top5) {
    double t1 = NAN, t5 = NAN;
    if (val->labels) QD_TRY(qd_topk_accuracy(logits, val->labels, val->n, nclasses, &t1, &t5));
    char k[32];
    if (!isnan(t1)) {
        snprintf(k, sizeof k, "%s_top1", prefix);
        cJSON_AddNumberToObject(acc, k, 100 * t1);
        snprintf(k, sizeof k, "%s_top5", prefix);
        cJSON_AddNumberToObject(acc, k, 100 * t5);
    }
    *top1 = t1;
    *top5 = t5;
    return QD_OK;
}

qd_status qd_write_logits(const char *out_dir, const float *fp, const float *q, int n, int nclasses) {
    if (n == 0) {
        qd_log_warn("logits_skipped", "output.logits: no evaluation set (data.val_path, eval.enabled): no logits written");
        return QD_OK;
    }
    char path[QD_PATH_MAX + 64];
    int64_t dims[2] = {n, nclasses};
    if (fp) {
        QD_TRY(qd_path_join(path, sizeof path, out_dir, "logits_fp32.npy"));
        QD_TRY(qd_npy_write_f32(path, fp, 2, dims));
    }
    if (q) {
        QD_TRY(qd_path_join(path, sizeof path, out_dir, "logits_quant.npy"));
        QD_TRY(qd_npy_write_f32(path, q, 2, dims));
    }
    return QD_OK;
}

qd_status qd_eval(qd_config *cfg, const char *from_dir, const qd_run_options *opt) {
    if (strcmp(cfg->model_type, "onnx") != 0)
        return qd_errorf(QD_ERR_CONFIG, "model.type: '%s': `qdrop-gpu eval` evaluates ONNX models only",
                         cfg->model_type);
    if (!cfg->val_path[0])
        return qd_errorf(QD_ERR_CONFIG, "data.val_path: `qdrop-gpu eval` needs an evaluation set (ImageFolder or .npy)");
    qd_graph *g = NULL;
    qd_backend *b = NULL;
    qd_exec *ex = NULL;
    qd_dataset val;
    memset(&val, 0, sizeof val);
    float *lf = NULL, *lq = NULL;
    cJSON *res = NULL;
    char path[QD_PATH_MAX + 64];
    qd_status st = qd_graph_prepare(cfg->model_path, &g);
    if (st != QD_OK) return st;
    qd_quant_plan_opts po = {cfg->w_qconfig.bit, cfg->a_qconfig.bit, cfg->first_last_8bit, cfg->brecq_setting};
    if ((st = qd_graph_place_quantizers(g, &po)) != QD_OK) goto done;
    if (g->ninputs != 1 || g->noutputs != 1) {
        st = qd_errorf(QD_ERR_UNSUPPORTED, "%s: the engine needs exactly one graph input and one output (found %d and %d)",
                       cfg->model_path, g->ninputs, g->noutputs);
        goto done;
    }
    const qd_value *inv = &g->values[g->inputs[0]];
    if (inv->ndim != 4) {
        st = qd_errorf(QD_ERR_UNSUPPORTED, "%s: input '%s' must be NCHW images", cfg->model_path, inv->name);
        goto done;
    }
    const qd_value *outv = &g->values[g->outputs[0]];
    int nclasses = (int)outv->dims[outv->ndim - 1];
    if (from_dir) {
        if ((st = qd_path_join(path, sizeof path, from_dir, "encodings.json")) != QD_OK) goto done;
        if (!qd_file_exists(path)) {
            st = qd_errorf(QD_ERR_NOINPUT, "%s: not found (--from needs the output directory of a finished run with "
                           "output.export_onnx true)", path);
            goto done;
        }
        if ((st = qd_import_encodings(g, path)) != QD_OK) goto done;
    }
    if ((st = qd_load_images(cfg, cfg->val_path, cfg->val_labels_path[0] ? cfg->val_labels_path : NULL,
                             (int)inv->dims[1], (int)inv->dims[2], (int)inv->dims[3], 0, cfg->eval_max_images, &val)) != QD_OK)
        goto done;
    {
        qd_backend_options bo = {.threads = qd_default_threads(cfg), .deterministic = cfg->deterministic, .tf32 = cfg->tf32,
                                 .memory_budget = cfg->device_memory_budget_mb * 1024 * 1024};
        const char *kind = cfg->device == QD_DEVICE_CPU ? "cpu" : cfg->device == QD_DEVICE_CUDA ? "cuda" : "auto";
        if ((st = qd_backend_create(kind, &bo, &b)) != QD_OK) goto done;
    }
    if ((st = qd_exec_create(g, b, cfg->eval_batch_size, &ex)) != QD_OK) goto done;
    if (from_dir && (st = qd_exec_sync_quant(ex)) != QD_OK) goto done;
    if ((st = qd_mkdir_p(cfg->out_dir)) != QD_OK) goto done;

    res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "version", qd_version());
    cJSON_AddStringToObject(res, "model", cfg->model_path);
    cJSON_AddStringToObject(res, "from", from_dir ? from_dir : "");
    cJSON_AddStringToObject(res, "data", cfg->val_path);
    cJSON_AddStringToObject(res, "backend", b->ops->name);
    cJSON_AddNumberToObject(res, "images", val.n);
    cJSON_AddNumberToObject(res, "classes", nclasses);
    cJSON *acc = cJSON_AddObjectToObject(res, "accuracy");
    cJSON *files = cJSON_AddArrayToObject(res, "logits");
    double fp1 = NAN, fp5 = NAN, q1 = NAN, q5 = NAN;
    if (!from_dir || cfg->eval_fp32) {
        if ((st = forward_all(ex, QD_EXEC_FP, &val, cfg->eval_batch_size, nclasses, &lf)) != QD_OK) goto done;
        if ((st = add_accuracy(acc, "fp32", lf, &val, nclasses, &fp1, &fp5)) != QD_OK) goto done;
        cJSON_AddItemToArray(files, cJSON_CreateString("logits_fp32.npy"));
    }
    if (from_dir) {
        if ((st = forward_all(ex, QD_EXEC_QUANT, &val, cfg->eval_batch_size, nclasses, &lq)) != QD_OK) goto done;
        if ((st = add_accuracy(acc, "quant", lq, &val, nclasses, &q1, &q5)) != QD_OK) goto done;
        cJSON_AddItemToArray(files, cJSON_CreateString("logits_quant.npy"));
    }
    if ((st = qd_write_logits(cfg->out_dir, lf, lq, val.n, nclasses)) != QD_OK) goto done;
    {
        char *txt = cJSON_Print(res);
        if (!txt) { st = qd_errorf(QD_ERR_INTERNAL, "eval: cannot serialise eval.json"); goto done; }
        if ((st = qd_path_join(path, sizeof path, cfg->out_dir, "eval.json")) == QD_OK)
            st = qd_write_file_atomic(path, txt, strlen(txt));
        free(txt);
        if (st != QD_OK) goto done;
    }
    if (!opt->quiet) {
        printf("eval %s on %s: %d images, %d classes\n", cfg->model_path, cfg->val_path, val.n, nclasses);
        if (lf && !isnan(fp1)) printf("FP32       top-1 %6.2f%%  top-5 %6.2f%%\n", 100 * fp1, 100 * fp5);
        if (lq && !isnan(q1)) printf("quantized  top-1 %6.2f%%  top-5 %6.2f%%  (from %s)\n", 100 * q1, 100 * q5, from_dir);
        printf("outputs in %s (eval.json%s%s)\n", cfg->out_dir, lf ? ", logits_fp32.npy" : "", lq ? ", logits_quant.npy" : "");
    }
done:
    cJSON_Delete(res);
    free(lf);
    free(lq);
    qd_exec_free(ex);
    if (b) qd_backend_destroy(b);
    qd_dataset_free(&val);
    qd_graph_free(g);
    return st;
}
