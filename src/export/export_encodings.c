/* src/export/export_encodings.c: encodings.json, the exact b-bit model beside the INT8-container
 * ONNX (issue 6, ECOSYSTEM §4.3 item 4, docs/export.md).
 *
 * Our own schema keeps the b-bit grid (bits, qmin/qmax, scale, zero point, range) and the integer
 * weight codes q (base64 of one byte per weight, row-major in the stored layout); an "aimet"
 * section repeats the grids in AIMET .encodings form (offset = -z, min/max, bitwidth) so
 * Qualcomm QNN/SNPE tools (--quantization_overrides) can read them. Floats are printed with up
 * to 17 significant digits, so every float32 scale reads back bit for bit. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/qmath.h"
#include "export/export_internal.h"
#include "qdrop/export.h"
#include "qdrop/fsutil.h"
#include "qdrop/utf8.h"

#define ENC_FORMAT_VERSION 1

/* cJSON_Add* return NULL on allocation failure; one flag collects them all. */
typedef struct enc {
    int oom;
} enc;

static cJSON *chk(enc *e, cJSON *x) {
    if (!x) e->oom = 1;
    return x;
}

static void add_num(enc *e, cJSON *o, const char *k, double v) { chk(e, cJSON_AddNumberToObject(o, k, v)); }
static void add_str(enc *e, cJSON *o, const char *k, const char *v) { chk(e, cJSON_AddStringToObject(o, k, v ? v : "")); }
static void add_bool(enc *e, cJSON *o, const char *k, int v) { chk(e, cJSON_AddBoolToObject(o, k, v)); }

static cJSON *float_array(enc *e, const float *v, int n) {
    cJSON *a = chk(e, cJSON_CreateArray());
    if (!a) return NULL;
    for (int i = 0; i < n; i++) {
        cJSON *x = chk(e, cJSON_CreateNumber((double)v[i]));
        if (x) cJSON_AddItemToArray(a, x);
    }
    return a;
}

static void add_item(enc *e, cJSON *o, const char *k, cJSON *item) {
    if (!item) {
        e->oom = 1;
        return;
    }
    cJSON_AddItemToObject(o, k, item);
}

static cJSON *grid_obj(enc *e, int qmin, int qmax) {
    cJSON *gr = chk(e, cJSON_CreateObject());
    if (gr) {
        add_num(e, gr, "qmin", qmin);
        add_num(e, gr, "qmax", qmax);
    }
    return gr;
}

/* One AIMET encoding dict: x = (q + offset) * scale, offset = -z. */
static cJSON *aimet_enc(enc *e, int bits, float s, float z, float lo, float hi) {
    cJSON *o = chk(e, cJSON_CreateObject());
    if (!o) return NULL;
    add_num(e, o, "bitwidth", bits);
    add_str(e, o, "dtype", "int");
    add_str(e, o, "is_symmetric", "False");
    add_num(e, o, "max", hi);
    add_num(e, o, "min", lo);
    add_num(e, o, "offset", -(double)z);
    add_num(e, o, "scale", s);
    return o;
}

static const char *node_name_of(const qd_graph *g, int n) {
    return (n >= 0 && n < g->nnodes && g->nodes[n].name) ? g->nodes[n].name : "";
}

static qd_status add_weights(const qd_graph *g, const qd_config *cfg, enc *e, cJSON *arr, cJSON *aimet_params) {
    for (int wi = 0; wi < g->nwq; wi++) {
        const qd_weight_quant *wq = &g->wq[wi];
        if (wq->weight_value < 0 || wq->weight_value >= g->nvalues)
            return qd_errorf(QD_ERR_INTERNAL, "encodings: weight quantizer %d has no weight value", wi);
        const qd_value *w = &g->values[wq->weight_value];
        int64_t n = qd_value_numel(w);
        uint8_t *code = malloc((size_t)(n > 0 ? n : 1));
        if (!code) return qd_errorf(QD_ERR_INTERNAL, "encodings: out of host memory for weight %s", w->name);
        qd_wstore store;
        qd_status st = qd_export_weight_codes(g, cfg, wi, code, &store);
        if (st != QD_OK) {
            free(code);
            return st;
        }
        char *b64 = qd_export_base64(code, (size_t)n);
        free(code);
        if (!b64) return qd_errorf(QD_ERR_INTERNAL, "encodings: out of host memory for weight %s", w->name);

        const int qmax = qd_qmax_for_bits(wq->bits);
        float *lo = malloc(sizeof(float) * (size_t)wq->channels), *hi = malloc(sizeof(float) * (size_t)wq->channels);
        if (!lo || !hi) {
            free(lo); free(hi); free(b64);
            return qd_errorf(QD_ERR_INTERNAL, "encodings: out of host memory for weight %s", w->name);
        }
        for (int c = 0; c < wq->channels; c++) {
            lo[c] = QD_MUL_RN(0.0f - wq->zero_point[c], wq->scale[c]);
            hi[c] = QD_MUL_RN((float)qmax - wq->zero_point[c], wq->scale[c]);
        }
        cJSON *o = chk(e, cJSON_CreateObject());
        if (o) {
            cJSON_AddItemToArray(arr, o);
            const qd_node *nd = (wq->node >= 0 && wq->node < g->nnodes) ? &g->nodes[wq->node] : NULL;
            add_str(e, o, "name", w->name);
            add_str(e, o, "node", node_name_of(g, wq->node));
            add_str(e, o, "op", nd ? qd_op_name(nd->op) : "");
            add_num(e, o, "bits", wq->bits);
            add_num(e, o, "axis", wq->ch_axis);
            add_num(e, o, "channels", wq->channels);
            cJSON *shape = chk(e, cJSON_CreateArray());
            if (shape) {
                for (int d = 0; d < w->ndim; d++) {
                    cJSON *x = chk(e, cJSON_CreateNumber((double)w->dims[d]));
                    if (x) cJSON_AddItemToArray(shape, x);
                }
                cJSON_AddItemToObject(o, "shape", shape);
            }
            add_item(e, o, "grid", grid_obj(e, 0, qmax));
            add_item(e, o, "scale", float_array(e, wq->scale, wq->channels));
            add_item(e, o, "zero_point", float_array(e, wq->zero_point, wq->channels));
            add_item(e, o, "min", float_array(e, lo, wq->channels));
            add_item(e, o, "max", float_array(e, hi, wq->channels));
            add_bool(e, o, "reconstructed", wq->reconstructed);
            add_str(e, o, "onnx_storage", qd_wstore_name(store));
            add_str(e, o, "q_encoding", "base64_uint8");
            add_str(e, o, "q", b64);
        }
        cJSON *list = chk(e, cJSON_CreateArray());
        if (list) {
            for (int c = 0; c < wq->channels; c++) {
                cJSON *x = aimet_enc(e, wq->bits, wq->scale[c], wq->zero_point[c], lo[c], hi[c]);
                if (x) cJSON_AddItemToArray(list, x);
            }
            cJSON_AddItemToObject(aimet_params, w->name, list);
        }
        free(lo);
        free(hi);
        free(b64);
    }
    return QD_OK;
}

static qd_status add_acts(const qd_graph *g, enc *e, cJSON *arr, cJSON *aimet_acts) {
    for (int ai = 0; ai < g->nact; ai++) {
        const qd_act_quant *a = &g->act[ai];
        if (a->initialized && (a->value < 0 || a->value >= g->nvalues))
            return qd_errorf(QD_ERR_INTERNAL, "encodings: activation quantizer %d on unknown value %d", ai, a->value);
        if (!qd_export_act_exported(g, ai)) continue; /* not applied by the evaluated model either */
        qd_astore store;
        QD_TRY(qd_export_act_store(g, ai, &store));
        float lo, hi;
        qd_export_act_range(a, &lo, &hi);
        const char *name = g->values[a->value].name;
        cJSON *o = chk(e, cJSON_CreateObject());
        if (o) {
            cJSON_AddItemToArray(arr, o);
            add_str(e, o, "name", name);
            add_num(e, o, "bits", a->bits);
            add_item(e, o, "grid", grid_obj(e, a->qmin, a->qmax));
            add_num(e, o, "scale", a->scale);
            add_num(e, o, "zero_point", a->zero_point);
            add_num(e, o, "min", lo);
            add_num(e, o, "max", hi);
            float r[2] = {lo, hi};
            add_item(e, o, "range", float_array(e, r, 2));
            add_num(e, o, "unit", a->unit);
            add_bool(e, o, "one_sided", a->one_sided);
            add_str(e, o, "onnx_storage", qd_astore_name(store));
        }
        cJSON *list = chk(e, cJSON_CreateArray());
        if (list) {
            cJSON *x = aimet_enc(e, a->bits, a->scale, a->zero_point, lo, hi);
            if (x) cJSON_AddItemToArray(list, x);
            cJSON_AddItemToObject(aimet_acts, name, list);
        }
    }
    return QD_OK;
}

qd_status qd_export_encodings(const qd_graph *g, const qd_config *cfg, const char *path) {
    if (!g || !cfg || !path) return qd_errorf(QD_ERR_INTERNAL, "encodings: NULL argument");
    enc e = {0};
    cJSON *root = cJSON_CreateObject();
    if (!root) return qd_errorf(QD_ERR_INTERNAL, "encodings: out of host memory");
    add_str(&e, root, "format", "qdrop-encodings");
    add_num(&e, root, "format_version", ENC_FORMAT_VERSION);
    add_str(&e, root, "producer", "qdrop-gpu");
#ifdef QD_VERSION_STRING
    add_str(&e, root, "version", QD_VERSION_STRING);
#endif
#ifdef QD_GIT_SHA
    add_str(&e, root, "git_sha", QD_GIT_SHA);
#endif
    add_str(&e, root, "model", g->source_path ? g->source_path : cfg->model_path);
    add_str(&e, root, "mode", qd_mode_name(cfg->mode));
    add_num(&e, root, "w_bits", cfg->w_qconfig.bit);
    add_num(&e, root, "a_bits", cfg->a_qconfig.bit);
    add_bool(&e, root, "first_last_8bit", cfg->first_last_8bit);
    add_bool(&e, root, "brecq_setting", cfg->brecq_setting);
    add_num(&e, root, "onnx_opset", qd_export_opset(cfg));
    add_bool(&e, root, "int4_weights", cfg->int4_weights);
    add_str(&e, root, "quantizer",
            "asymmetric unsigned: x = (q - zero_point) * scale, q in [grid.qmin, grid.qmax], round half to even; "
            "weights per channel along 'axis', activations per tensor");
    cJSON *weights = chk(&e, cJSON_AddArrayToObject(root, "weights"));
    cJSON *acts = chk(&e, cJSON_AddArrayToObject(root, "activations"));
    cJSON *aimet = chk(&e, cJSON_AddObjectToObject(root, "aimet"));
    cJSON *aimet_acts = aimet ? chk(&e, cJSON_AddObjectToObject(aimet, "activation_encodings")) : NULL;
    cJSON *aimet_params = aimet ? chk(&e, cJSON_AddObjectToObject(aimet, "param_encodings")) : NULL;
    if (aimet) add_str(&e, aimet, "version", "0.6.1");
    qd_status st = QD_OK;
    if (e.oom || !weights || !acts || !aimet_acts || !aimet_params) {
        cJSON_Delete(root);
        return qd_errorf(QD_ERR_INTERNAL, "encodings: out of host memory");
    }
    st = add_weights(g, cfg, &e, weights, aimet_params);
    if (st == QD_OK) st = add_acts(g, &e, acts, aimet_acts);
    if (st == QD_OK && e.oom) st = qd_errorf(QD_ERR_INTERNAL, "encodings: out of host memory building %s", path);
    if (st == QD_OK) {
        char *raw = cJSON_Print(root);
        char *text = raw ? qd_utf8_valid_dup(raw) : NULL; /* ONNX names are bytes: keep the JSON valid UTF-8 */
        free(raw);
        if (!text) {
            st = qd_errorf(QD_ERR_INTERNAL, "encodings: out of host memory printing %s", path);
        } else {
            size_t len = strlen(text);
            text[len] = '\n'; /* replace the NUL: files end with a newline */
            st = qd_write_file_atomic(path, text, len + 1);
            free(text);
        }
    }
    cJSON_Delete(root);
    return st;
}
