/* src/app/family_image.c: the image-classifier model family — an ONNX graph with one NCHW input
 * and one [N, classes] output, calibration and evaluation images from ImageFolders or .npy
 * (preprocessed per data.*), metrics top-1 / top-5 on labelled validation images. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "qdrop/data.h"
#include "qdrop/interrupt.h"
#include "qdrop/log.h"

typedef struct image_data {
    qd_dataset calib, val;
    int C, H, W;
} image_data;

static image_data *data_of(qd_run_state *S) {
    if (!S->family_data) S->family_data = calloc(1, sizeof(image_data));
    return S->family_data;
}

/* Images of `path` (ImageFolder or .npy) preprocessed per the config's data.* keys to [n, c, h, w].
 * sample_n > 0 draws that many (seeded), max_images > 0 keeps the first ones. */
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

static qd_status image_load_model(qd_run_state *S) {
    const qd_config *cfg = S->cfg;
    image_data *d = data_of(S);
    if (!d) return qd_errorf(QD_ERR_INTERNAL, "out of host memory");
    QD_TRY(qd_graph_prepare(cfg->model_path, &S->g));
    qd_quant_plan_opts po = {cfg->w_qconfig.bit, cfg->a_qconfig.bit, cfg->first_last_8bit, cfg->brecq_setting};
    QD_TRY(qd_graph_place_quantizers(S->g, &po));
    if (S->g->ninputs != 1 || S->g->noutputs != 1)
        return qd_errorf(QD_ERR_UNSUPPORTED, "%s: the engine needs exactly one graph input and one output (found %d and %d)",
                         cfg->model_path, S->g->ninputs, S->g->noutputs);
    const qd_value *inv = &S->g->values[S->g->inputs[0]];
    if (inv->ndim != 4) return qd_errorf(QD_ERR_UNSUPPORTED, "%s: input '%s' must be NCHW images", cfg->model_path, inv->name);
    d->C = (int)inv->dims[1];
    d->H = (int)inv->dims[2];
    d->W = (int)inv->dims[3];
    const qd_value *outv = &S->g->values[S->g->outputs[0]];
    S->nout = (int)outv->dims[outv->ndim - 1];
    return QD_OK;
}

static qd_status image_load_data(qd_run_state *S, int with_calibration) {
    const qd_config *cfg = S->cfg;
    image_data *d = data_of(S);
    const char *labels = cfg->val_labels_path[0] ? cfg->val_labels_path : NULL;
    if (with_calibration) {
        QD_TRY(load_images(cfg, cfg->calib_path, NULL, d->C, d->H, d->W, cfg->calibrate, 0, &d->calib));
        if (d->calib.n < cfg->calibrate)
            qd_log_warn("calib_small", "calibration folder %s has %d images, fewer than quant.calibrate = %d: using all",
                        cfg->calib_path, d->calib.n, cfg->calibrate);
        if (cfg->eval_enabled && cfg->val_path[0]) {
            QD_TRY(load_images(cfg, cfg->val_path, labels, d->C, d->H, d->W, 0, cfg->eval_max_images, &d->val));
            if (!d->val.labels) return qd_errorf(QD_ERR_DATA, "%s: validation data has no labels", cfg->val_path);
        }
    } else {
        /* `qdrop-gpu eval`: the evaluation images only, labels optional */
        QD_TRY(load_images(cfg, cfg->val_path, labels, d->C, d->H, d->W, 0, cfg->eval_max_images, &d->val));
    }
    S->ctx.calib_host = d->calib.x;
    S->ctx.ncal = d->calib.n;
    S->ctx.image_numel = (int64_t)d->C * d->H * d->W;
    S->neval = d->val.n;
    return QD_OK;
}

static void add_metric(qd_eval_result *res, const char *key, const char *label, double value) {
    qd_metric *m = &res->m[res->nmetrics++];
    snprintf(m->key, sizeof m->key, "%s", key);
    snprintf(m->label, sizeof m->label, "%s", label);
    m->value = value;
    m->percent = 1;
}

/* Forward the whole validation set in eval.batch_size chunks into logits [n, classes]; top-1/top-5
 * when the images have labels. */
static qd_status image_evaluate(qd_run_state *S, qd_exec_mode mode, const qd_eval_request *rq, qd_eval_result *res) {
    const image_data *d = S->family_data;
    const qd_dataset *val = &d->val;
    int batch = S->cfg->eval_batch_size, nclasses = S->nout;
    memset(res, 0, sizeof *res);
    float *all = malloc(sizeof(float) * (size_t)(val->n > 0 ? val->n : 1) * (size_t)nclasses);
    if (!all) return qd_errorf(QD_ERR_INTERNAL, "out of host memory for %d x %d logits", val->n, nclasses);
    int64_t numel = (int64_t)val->c * val->h * val->w;
    qd_status st = QD_OK;
    qd_phase ph;
    if (rq->progress)
        qd_phase_begin(&ph, mode == QD_EXEC_FP ? "FP32 evaluation" : "quantized evaluation", "images", val->n);
    for (int s0 = 0; s0 < val->n && st == QD_OK; s0 += batch) {
        int nb = val->n - s0 < batch ? val->n - s0 : batch;
        if (qd_interrupted()) { st = QD_ERR_INTERRUPTED; break; }
        if (rq->progress) qd_phase_update(&ph, s0);
        st = qd_exec_forward_host(S->ex, mode, val->x + (size_t)s0 * (size_t)numel, nb, all + (size_t)s0 * (size_t)nclasses);
    }
    if (rq->progress) {
        if (st == QD_OK) { qd_phase_update(&ph, val->n); qd_phase_end(&ph); }
        else qd_progress_done();
    }
    if (st == QD_OK && val->labels) {
        double top1 = 0, top5 = 0;
        st = qd_topk_accuracy(all, val->labels, val->n, nclasses, &top1, &top5);
        if (st == QD_OK) {
            add_metric(res, "top1", "top-1", 100 * top1);
            add_metric(res, "top5", "top-5", 100 * top5);
        }
    }
    if (st == QD_OK && rq->predictions) {
        res->pred = malloc(sizeof(int) * (size_t)(val->n > 0 ? val->n : 1));
        if (res->pred) qd_argmax_rows(all, val->n, nclasses, res->pred);
    }
    if (st == QD_OK && rq->keep_outputs) {
        res->outputs = all;
        all = NULL;
    }
    free(all);
    res->done = st == QD_OK;
    res->n = val->n;
    res->labels = val->labels;
    return st;
}

static void image_release(qd_run_state *S) {
    image_data *d = S->family_data;
    if (!d) return;
    qd_dataset_free(&d->calib);
    qd_dataset_free(&d->val);
    free(d);
    S->family_data = NULL;
}

static void image_describe_data(const qd_run_state *S, FILE *out) {
    const image_data *d = S->family_data;
    fprintf(out, "calibration: %d images (%s), activation ranges on %d; validation: %d images\n", d->calib.n,
            S->cfg->calib_path, S->cfg->act_calib_samples, d->val.n);
}

const qd_model_family qd_family_image = {
    .name = "image",
    .load_model = image_load_model,
    .load_data = image_load_data,
    .evaluate = image_evaluate,
    .release = image_release,
    .describe_data = image_describe_data,
};
