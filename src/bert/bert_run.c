/* src/bert/bert_run.c: the model.type "bert" job (dispatched from qd_run): HuggingFace BERT
 * directory -> calibration sentences -> FP32 evaluation -> quantization (nearest, No-Drop or
 * QDrop reconstruction per encoder layer, src/bert/bert_recon.c) -> quantized evaluation ->
 * results.json and resolved_config.json written atomically into output.dir.
 *
 * Tasks (data.task):
 *  - stsb: sentence embeddings (mean pooling + L2 norm, sentence-transformers); calibration on
 *    the STS-B dev file (sentence1 and sentence2 of every pair), evaluation = Spearman of the
 *    cosine similarity vs the gold scores of data.val_path (test set).
 *  - sst2: sequence classifier (needs bert.pooler.dense.* and classifier.* in the checkpoint,
 *    i.e. a fine-tuned BertForSequenceClassification); calibration on the sentences of the SST-2
 *    TSV data.calib_path (sentence<TAB>label with header; labels unused), evaluation = accuracy of
 *    argmax(logits) on data.val_path, data.max_seq_len tokens. The pooler and classifier stay FP32
 *    (§8.8 leaves the head open; the last encoder output quantizer is 8-bit with
 *    quant.first_last_8bit, as the last quantizer before the head in §6.1).
 *
 * Calibration (§8.8: 1,024 examples): the calibration file's sentences shuffled with
 * process.seed, first quant.calibrate of them. The evaluation set is never used for calibration
 * unless the config points both paths at the same file. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/qmath.h"
#include "qdrop/bert.h"
#include "qdrop/config.h"
#include "qdrop/fsutil.h"
#include "qdrop/log.h"
#include "qdrop/qdrop.h"
#include "recon/recon.h"
#include "qdrop/utf8.h"

#define QD_BERT_RNG_T_CALIB 0xFFFFFFF2u /* calibration sentence shuffle */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Pointers to cfg->calibrate sentences of the calibration file (Fisher-Yates with the counter
 * RNG): STS-B both sentences of every pair (dev != NULL), SST-2 every sentence of glue. */
static qd_status pick_calibration(const qd_sts_set *dev, const qd_glue_set *glue, int want, uint64_t seed,
                                  const char ***out, int *n_out) {
    int pool = dev ? 2 * dev->n : glue->n;
    const char **all = malloc(sizeof(char *) * (size_t)(pool > 0 ? pool : 1));
    if (!all) return qd_errorf(QD_ERR_INTERNAL, "BERT calibration: out of memory");
    if (dev)
        for (int i = 0; i < dev->n; i++) { all[2 * i] = dev->a[i]; all[2 * i + 1] = dev->b[i]; }
    else
        for (int i = 0; i < glue->n; i++) all[i] = glue->a[i];
    qd_rng_key key = {(uint32_t)seed, (uint32_t)(seed >> 32), 0u, QD_BERT_RNG_T_CALIB};
    for (int i = pool - 1; i > 0; i--) {
        int j = (int)qd_draw_index(key, 0u, (uint32_t)i, (uint32_t)(i + 1));
        const char *t = all[i]; all[i] = all[j]; all[j] = t;
    }
    if (want > pool) {
        qd_log_warn("bert_calib_small", "quant.calibrate %d > %d calibration sentences: using all of them", want, pool);
        want = pool;
    }
    *out = all;
    *n_out = want;
    return QD_OK;
}

static qd_status write_json(const char *dir, const char *name, cJSON *j) {
    char path[QD_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *raw = cJSON_Print(j);
    char *txt = raw ? qd_utf8_valid_dup(raw) : NULL; /* paths may hold non-UTF-8 bytes */
    free(raw);
    if (!txt) return qd_errorf(QD_ERR_INTERNAL, "out of memory writing %s", path);
    size_t n = strlen(txt);
    char *buf = malloc(n + 2);
    if (!buf) { free(txt); return qd_errorf(QD_ERR_INTERNAL, "out of memory writing %s", path); }
    memcpy(buf, txt, n);
    buf[n] = '\n';
    free(txt);
    qd_status st = qd_write_file_atomic(path, buf, n + 1);
    free(buf);
    return st;
}

qd_status qd_bert_run(struct qd_config *cfg, const struct qd_run_options *opt) {
    double t_all = now_s();
    const int reconstruct = cfg->mode == QD_MODE_QDROP || cfg->mode == QD_MODE_NODROP;
    if (!reconstruct && cfg->mode != QD_MODE_NEAREST)
        return qd_errorf(QD_ERR_UNSUPPORTED, "quant.mode %s: model.type bert supports qdrop, nodrop and nearest",
                         qd_mode_name(cfg->mode));
    const int sst2 = strcmp(cfg->task, "sst2") == 0;
    if (!sst2 && strcmp(cfg->task, "stsb") != 0)
        return qd_errorf(QD_ERR_CONFIG, "data.task %s: model.type bert runs the stsb or sst2 task", cfg->task);
    if (!cfg->calib_path[0])
        return qd_errorf(QD_ERR_CONFIG, "data.calib_path: required (%s)", sst2 ? "SST-2 TSV sentence<TAB>label" : "STS-B dev TSV");
    qd_bert_model *fp = NULL, *qm = NULL;
    qd_bert_quant *q = NULL;
    qd_sts_set dev, test;
    qd_glue_set gcal, gval;
    memset(&dev, 0, sizeof dev);
    memset(&test, 0, sizeof test);
    memset(&gcal, 0, sizeof gcal);
    memset(&gval, 0, sizeof gval);
    int n_eval = 0;
    qd_bert_calib cal;
    memset(&cal, 0, sizeof cal);
    const char **sent = NULL;
    qd_bert_layer_report *reps = NULL;
    cJSON *res = NULL;
    double sp_fp = 0.0, sp_q = 0.0;
    int have_fp = 0, have_q = 0;
    double t_load = 0, t_eval_fp = 0, t_quant = 0, t_eval_q = 0;

    double t0 = now_s();
    qd_status st = qd_bert_load(cfg->model_path, &fp);
    if (st == QD_OK) st = qd_bert_load(cfg->model_path, &qm);
    if (st == QD_OK && sst2 && (!fp->pool_w || !fp->cls_w || fp->cfg.num_labels < 2))
        st = qd_errorf(QD_ERR_DATA, "%s: data.task sst2 needs a sequence classifier (bert.pooler.dense.* and "
                       "classifier.* with >= 2 labels, e.g. a fine-tuned BertForSequenceClassification); this "
                       "checkpoint has %s", cfg->model_path,
                       !fp->cls_w ? "no classifier head" : !fp->pool_w ? "no pooler" : "a 1-label classifier");
    if (st == QD_OK) st = sst2 ? qd_glue_read_sst2(cfg->calib_path, &gcal) : qd_sts_read(cfg->calib_path, &dev);
    if (st == QD_OK && cfg->eval_enabled) {
        if (!cfg->val_path[0])
            st = qd_errorf(QD_ERR_CONFIG, "data.val_path: required (%s) when eval.enabled", sst2 ? "SST-2 dev TSV" : "STS-B test TSV");
        else if (sst2) st = qd_glue_read_sst2(cfg->val_path, &gval);
        else st = qd_sts_read(cfg->val_path, &test);
        if (st == QD_OK && !sst2 && cfg->eval_max_images > 0 && cfg->eval_max_images < test.n) {
            for (int i = cfg->eval_max_images; i < test.n; i++) { free(test.a[i]); free(test.b[i]); }
            test.n = cfg->eval_max_images;
        }
        if (st == QD_OK && sst2 && cfg->eval_max_images > 0 && cfg->eval_max_images < gval.n) {
            for (int i = cfg->eval_max_images; i < gval.n; i++) free(gval.a[i]);
            gval.n = cfg->eval_max_images;
        }
        n_eval = sst2 ? gval.n : test.n;
    }
    int ncal = 0;
    if (st == QD_OK) st = pick_calibration(sst2 ? NULL : &dev, sst2 ? &gcal : NULL, cfg->calibrate, cfg->seed, &sent, &ncal);
    if (st == QD_OK) st = qd_bert_calib_build(fp, sent, ncal, cfg->max_seq_len, &cal);
    t_load = now_s() - t0;
    if (st == QD_OK)
        qd_log_info("bert_plan", "BERT %d layers, hidden %d: mode %s W%dA%d, %d calibration sentences (%lld tokens) from %s, "
                    "%d iterations per layer, evaluation (%s) on %d %s",
                    fp->cfg.layers, fp->cfg.hidden, qd_mode_name(cfg->mode), cfg->w_qconfig.bit, cfg->a_qconfig.bit, cal.n,
                    (long long)cal.ntok, cfg->calib_path, reconstruct ? cfg->recon.iters : 0, cfg->task, n_eval,
                    sst2 ? "sentences" : "pairs");
    if (st == QD_OK && opt && opt->dry_run) goto done;
    if (st == QD_OK) st = qd_mkdir_p(cfg->out_dir);

    if (st == QD_OK && cfg->eval_enabled && cfg->eval_fp32) {
        t0 = now_s();
        st = sst2 ? qd_bert_eval_sst2_model(fp, &gval, cfg->max_seq_len, NULL, NULL, &sp_fp, NULL)
                  : qd_bert_eval_stsb_model(fp, &test, NULL, NULL, &sp_fp);
        have_fp = st == QD_OK;
        t_eval_fp = now_s() - t0;
        if (st == QD_OK)
            qd_log_info("bert_eval_fp32", "FP32 %s %.6f (%d %s, %.1f s)", sst2 ? "SST-2 accuracy" : "STS-B Spearman", sp_fp,
                        n_eval, sst2 ? "sentences" : "pairs", t_eval_fp);
    }
    if (st == QD_OK) st = qd_bert_quant_create(fp, cfg->w_qconfig.bit, cfg->a_qconfig.bit, cfg->first_last_8bit,
                                               qd_default_threads(cfg), &q);
    if (st == QD_OK) {
        reps = calloc((size_t)fp->cfg.layers, sizeof *reps);
        if (!reps) st = qd_errorf(QD_ERR_INTERNAL, "out of memory");
    }
    if (st == QD_OK) {
        qd_bert_recon_opts o;
        memset(&o, 0, sizeof o);
        o.iters = cfg->recon.iters;
        o.batch_size = cfg->recon.batch_size;
        o.log_every = cfg->recon.log_every;
        o.scale_lr = cfg->recon.scale_lr;
        o.warm_up = cfg->recon.warm_up;
        o.lambda = cfg->recon.weight;
        o.b_start = cfg->recon.b_start;
        o.b_end = cfg->recon.b_end;
        /* §9: QDrop keeps quantization with probability drop_prob; No-Drop has it forced to 1 */
        o.keep_prob = cfg->mode == QD_MODE_QDROP ? cfg->recon.drop_prob : 1.0f;
        o.input_keep_prob = o.keep_prob;
        o.learn_scales = 1;
        o.lsq_grad_scale = cfg->recon.lsq_grad_scale;
        o.seed = cfg->seed;
        t0 = now_s();
        st = qd_bert_ptq(fp, qm, q, &cal, cfg->act_calib_samples, reconstruct, &o, reps);
        t_quant = now_s() - t0;
    }
    if (st == QD_OK && cfg->eval_enabled) {
        t0 = now_s();
        st = sst2 ? qd_bert_eval_sst2_model(qm, &gval, cfg->max_seq_len, qd_bert_quant_hook, q, &sp_q, NULL)
                  : qd_bert_eval_stsb_model(qm, &test, qd_bert_quant_hook, q, &sp_q);
        have_q = st == QD_OK;
        t_eval_q = now_s() - t0;
    }
    if (st == QD_OK) {
        res = cJSON_CreateObject();
        cJSON_AddStringToObject(res, "version", qd_version());
        cJSON_AddStringToObject(res, "git_sha", qd_git_sha());
        cJSON_AddStringToObject(res, "model", cfg->model_path);
        cJSON_AddStringToObject(res, "model_type", "bert");
        cJSON_AddStringToObject(res, "task", cfg->task);
        cJSON_AddStringToObject(res, "mode", qd_mode_name(cfg->mode));
        cJSON_AddNumberToObject(res, "w_bits", cfg->w_qconfig.bit);
        cJSON_AddNumberToObject(res, "a_bits", cfg->a_qconfig.bit);
        cJSON_AddNumberToObject(res, "emb_bits", q->emb_bits);
        cJSON_AddBoolToObject(res, "last_out_8bit", q->last_out_8bit);
        cJSON_AddNumberToObject(res, "iters_per_unit", reconstruct ? cfg->recon.iters : 0);
        cJSON_AddNumberToObject(res, "calibration_sentences", cal.n);
        cJSON_AddNumberToObject(res, "calibration_tokens", (double)cal.ntok);
        char hs[32];
        snprintf(hs, sizeof hs, "%016llx", (unsigned long long)qd_config_hash(cfg));
        cJSON_AddStringToObject(res, "config_hash", hs);
        cJSON *acc = cJSON_AddObjectToObject(res, "accuracy");
        cJSON_AddStringToObject(acc, "metric", sst2 ? "accuracy" : "spearman_cosine");
        cJSON_AddStringToObject(acc, "eval_set", cfg->val_path);
        cJSON_AddNumberToObject(acc, sst2 ? "examples" : "pairs", n_eval);
        if (have_fp) cJSON_AddNumberToObject(acc, "fp32", sp_fp);
        else cJSON_AddNullToObject(acc, "fp32");
        if (have_q) cJSON_AddNumberToObject(acc, "quant", sp_q);
        else cJSON_AddNullToObject(acc, "quant");
        cJSON *units = cJSON_AddArrayToObject(res, "units");
        for (int l = 0; reconstruct && l < fp->cfg.layers; l++) {
            cJSON *u = cJSON_CreateObject();
            char nm[64];
            snprintf(nm, sizeof nm, "encoder.layer.%d", l);
            cJSON_AddNumberToObject(u, "index", l);
            cJSON_AddStringToObject(u, "name", nm);
            cJSON_AddNumberToObject(u, "iters_planned", cfg->recon.iters);
            cJSON_AddNumberToObject(u, "iters_run", reps[l].iters);
            cJSON_AddNumberToObject(u, "loss_start", reps[l].loss_start);
            cJSON_AddNumberToObject(u, "loss_end", reps[l].loss_end);
            cJSON_AddNumberToObject(u, "round_loss_end", reps[l].reg_end);
            cJSON_AddNumberToObject(u, "calib_loss_before", reps[l].eval_before);
            cJSON_AddNumberToObject(u, "calib_loss_after", reps[l].eval_after);
            cJSON_AddNumberToObject(u, "seconds", reps[l].seconds);
            cJSON_AddItemToArray(units, u);
        }
        cJSON *times = cJSON_AddObjectToObject(res, "times");
        cJSON_AddNumberToObject(times, "load_s", t_load);
        cJSON_AddNumberToObject(times, "eval_fp32_s", t_eval_fp);
        cJSON_AddNumberToObject(times, "quantize_s", t_quant);
        cJSON_AddNumberToObject(times, "eval_quant_s", t_eval_q);
        cJSON_AddNumberToObject(times, "total_s", now_s() - t_all);
        st = write_json(cfg->out_dir, "results.json", res);
    }
    if (st == QD_OK) {
        char *rc = qd_config_to_json(cfg);
        char path[QD_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/resolved_config.json", cfg->out_dir);
        if (!rc) st = qd_errorf(QD_ERR_INTERNAL, "out of memory");
        else st = qd_write_file_atomic(path, rc, strlen(rc));
        free(rc);
    }
    if (st == QD_OK && cfg->eval_enabled) {
        char fps[32] = "n/a";
        if (have_fp) snprintf(fps, sizeof fps, "%.4f", sp_fp);
        if (sst2)
            printf("SST-2 accuracy (%d sentences): FP32 %s | %s W%dA%d %.4f\n", n_eval, fps, qd_mode_name(cfg->mode),
                   cfg->w_qconfig.bit, cfg->a_qconfig.bit, sp_q);
        else
            printf("STS-B Spearman (cosine, %d pairs): FP32 %s | %s W%dA%d %.4f\n", n_eval, fps, qd_mode_name(cfg->mode),
                   cfg->w_qconfig.bit, cfg->a_qconfig.bit, sp_q);
        fflush(stdout);
    }
done:
    cJSON_Delete(res);
    free(reps);
    free(sent);
    qd_bert_calib_free(&cal);
    qd_bert_quant_free(q);
    qd_sts_free(&dev);
    if (test.a) qd_sts_free(&test);
    if (gcal.a) qd_glue_free(&gcal);
    if (gval.a) qd_glue_free(&gval);
    qd_bert_free(fp);
    qd_bert_free(qm);
    return st;
}
