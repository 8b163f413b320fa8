/* src/export/import_encodings.c: load a finished run's quantized model back from its
 * encodings.json (`qdrop-gpu eval --from RUN_DIR`).
 *
 * encodings.json is the exact model the run evaluated and exported (docs/export.md §5): every
 * weight's integer codes q with per-channel scale s and zero point z, and every applied activation
 * quantizer's grid, scale and zero point, floats printed so that they read back bit for bit. The
 * effective weight is rebuilt as (q - z) * s, the same float product the exporter verified
 * against the engine's weight, so the reloaded model computes the run's quantized logits exactly.
 * The checkpoint is not used: it holds the state after the last reconstructed unit, which for
 * several modes (case1, case3, adaround, nearest) is not yet the final model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/qmath.h"
#include "export/export_internal.h"
#include "qdrop/export.h"
#include "qdrop/fsutil.h"

static int b64_val(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* RFC 4648 base64 (with '=' padding) into exactly n bytes; 0 on any malformed input. */
static int b64_decode(const char *s, uint8_t *out, size_t n) {
    size_t len = strlen(s), j = 0;
    if (len % 4 != 0 || len / 4 != (n + 2) / 3) return 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            v[k] = s[i + k] == '=' ? 0 : b64_val((unsigned char)s[i + k]);
            if (v[k] < 0) return 0;
        }
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        uint8_t b[3] = {(uint8_t)(x >> 16), (uint8_t)(x >> 8), (uint8_t)x};
        for (int k = 0; k < 3 && j < n; k++) out[j++] = b[k];
    }
    return j == n;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static int jnum(const cJSON *o, const char *k, double *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(x)) return 0;
    *v = x->valuedouble;
    return 1;
}

/* n floats from a JSON array (float32 values printed with 17 digits read back exactly). */
static int jfloats(const cJSON *o, const char *k, float *out, int n) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n) return 0;
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) {
        if (!cJSON_IsNumber(x)) return 0;
        out[i++] = (float)x->valuedouble;
    }
    return 1;
}

static qd_status load_weight(qd_graph *g, const char *path, const cJSON *e, unsigned char *seen) {
    const char *name = jstr(e, "name"), *node = jstr(e, "node"), *q = jstr(e, "q"), *qenc = jstr(e, "q_encoding");
    double bits, axis, channels;
    if (!name || !node || !q || !jnum(e, "bits", &bits) || !jnum(e, "axis", &axis) || !jnum(e, "channels", &channels))
        return qd_errorf(QD_ERR_DATA, "%s: a weight entry lacks name/node/bits/axis/channels/q", path);
    if (!qenc || strcmp(qenc, "base64_uint8") != 0)
        return qd_errorf(QD_ERR_DATA, "%s: weight '%s': q_encoding '%s' (expected base64_uint8)", path, name,
                         qenc ? qenc : "");
    int wi = -1;
    for (int k = 0; k < g->nwq && wi < 0; k++) {
        const qd_weight_quant *wq = &g->wq[k];
        const char *wn = g->values[wq->weight_value].name, *nn = g->nodes[wq->node].name;
        if (wn && nn && strcmp(wn, name) == 0 && strcmp(nn, node) == 0) wi = k;
    }
    if (wi < 0)
        return qd_errorf(QD_ERR_DATA, "%s: weight '%s' of node '%s' is not quantized in this model (encodings of another "
                         "model?)", path, name, node);
    qd_weight_quant *wq = &g->wq[wi];
    const qd_value *w = &g->values[wq->weight_value];
    if ((int)axis != wq->ch_axis || (int)channels != wq->channels || bits < 2 || bits > 8 || bits != floor(bits))
        return qd_errorf(QD_ERR_DATA, "%s: weight '%s': axis %g, %g channels, %g bits; this model has axis %d, %d channels",
                         path, name, axis, channels, bits, wq->ch_axis, wq->channels);
    if (seen[wi]) return qd_errorf(QD_ERR_DATA, "%s: weight '%s' of node '%s' listed twice", path, name, node);
    seen[wi] = 1;
    const int64_t n = qd_value_numel(w), inner = qd_export_inner_stride(g, wq);
    float *s = malloc(sizeof(float) * (size_t)wq->channels), *z = malloc(sizeof(float) * (size_t)wq->channels);
    uint8_t *code = malloc((size_t)(n > 0 ? n : 1));
    qd_status st = QD_OK;
    const int qmax = qd_qmax_for_bits((int)bits);
    if (!s || !z || !code) st = qd_errorf(QD_ERR_INTERNAL, "%s: out of host memory for weight '%s'", path, name);
    else if (!jfloats(e, "scale", s, wq->channels) || !jfloats(e, "zero_point", z, wq->channels))
        st = qd_errorf(QD_ERR_DATA, "%s: weight '%s': scale/zero_point are not %d numbers", path, name, wq->channels);
    else if (!b64_decode(q, code, (size_t)n))
        st = qd_errorf(QD_ERR_DATA, "%s: weight '%s': q is not the base64 of %lld codes", path, name, (long long)n);
    for (int c = 0; st == QD_OK && c < wq->channels; c++)
        if (!(s[c] > 0.0f) || !isfinite(s[c]) || z[c] < 0.0f || z[c] > (float)qmax || z[c] != rintf(z[c]))
            st = qd_errorf(QD_ERR_DATA, "%s: weight '%s' channel %d: scale %g / zero point %g off the %d-bit grid", path,
                           name, c, (double)s[c], (double)z[c], (int)bits);
    for (int64_t i = 0; st == QD_OK && i < n; i++)
        if (code[i] > qmax)
            st = qd_errorf(QD_ERR_DATA, "%s: weight '%s' element %lld: code %d outside [0, %d]", path, name, (long long)i,
                           code[i], qmax);
    if (st == QD_OK) {
        wq->bits = (int)bits;
        memcpy(wq->scale, s, sizeof(float) * (size_t)wq->channels);
        memcpy(wq->zero_point, z, sizeof(float) * (size_t)wq->channels);
        for (int64_t i = 0; i < n; i++) {
            int c = (int)((i / inner) % wq->channels);
            wq->qweight[i] = QD_MUL_RN((float)code[i] - z[c], s[c]); /* what DequantizeLinear computes */
        }
        wq->reconstructed = 1;
    }
    free(s);
    free(z);
    free(code);
    return st;
}

static qd_status load_act(qd_graph *g, const char *path, const cJSON *e) {
    const char *name = jstr(e, "name");
    double bits, scale, zp, qmin, qmax;
    const cJSON *grid = cJSON_GetObjectItemCaseSensitive(e, "grid");
    if (!name || !jnum(e, "bits", &bits) || !jnum(e, "scale", &scale) || !jnum(e, "zero_point", &zp) ||
        !cJSON_IsObject(grid) || !jnum(grid, "qmin", &qmin) || !jnum(grid, "qmax", &qmax))
        return qd_errorf(QD_ERR_DATA, "%s: an activation entry lacks name/bits/grid/scale/zero_point", path);
    int v = qd_graph_find_value(g, name);
    if (v < 0 || g->values[v].act_quant < 0)
        return qd_errorf(QD_ERR_DATA, "%s: activation '%s' has no quantizer in this model (encodings of another model "
                         "or quant.brecq_setting/first_last_8bit?)", path, name);
    qd_act_quant *a = &g->act[g->values[v].act_quant];
    float s = (float)scale;
    if (!(s > 0.0f) || !isfinite(s) || qmin != 0 || qmax <= qmin || qmax > 255 || zp < qmin || zp > qmax || zp != floor(zp))
        return qd_errorf(QD_ERR_DATA, "%s: activation '%s': scale %g, zero point %g, grid [%g, %g] is not a valid grid",
                         path, name, scale, zp, qmin, qmax);
    a->bits = (int)bits;
    a->qmin = (int)qmin;
    a->qmax = (int)qmax;
    a->scale = s;
    a->zero_point = (float)zp;
    a->initialized = 1;
    return QD_OK;
}

qd_status qd_import_encodings(qd_graph *g, const char *path) {
    void *data = NULL;
    size_t len = 0;
    QD_TRY(qd_read_file(path, &data, &len));
    cJSON *root = cJSON_ParseWithLength(data, len);
    free(data);
    if (!root) return qd_errorf(QD_ERR_DATA, "%s: malformed JSON", path);
    qd_status st = QD_OK;
    const char *fmt = jstr(root, "format");
    double ver = 0;
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(root, "weights");
    const cJSON *as = cJSON_GetObjectItemCaseSensitive(root, "activations");
    unsigned char *seen = calloc((size_t)g->nwq + 1, 1);
    if (!seen) st = qd_errorf(QD_ERR_INTERNAL, "out of host memory");
    else if (!fmt || strcmp(fmt, "qdrop-encodings") != 0 || !jnum(root, "format_version", &ver) || ver != 1)
        st = qd_errorf(QD_ERR_DATA, "%s: not a qdrop-gpu encodings file (format 'qdrop-encodings', version 1)", path);
    else if (!cJSON_IsArray(ws) || !cJSON_IsArray(as))
        st = qd_errorf(QD_ERR_DATA, "%s: 'weights' and 'activations' must be arrays", path);
    /* only the quantizers listed were applied in the run's evaluation */
    for (int k = 0; st == QD_OK && k < g->nact; k++) g->act[k].initialized = 0;
    const cJSON *e;
    if (st == QD_OK) cJSON_ArrayForEach(e, ws) {
        if ((st = load_weight(g, path, e, seen)) != QD_OK) break;
    }
    if (st == QD_OK) cJSON_ArrayForEach(e, as) {
        if ((st = load_act(g, path, e)) != QD_OK) break;
    }
    for (int k = 0; st == QD_OK && k < g->nwq; k++)
        if (!seen[k])
            st = qd_errorf(QD_ERR_DATA, "%s: no entry for weight '%s' of node '%s' (encodings of another model?)", path,
                           g->values[g->wq[k].weight_value].name, g->nodes[g->wq[k].node].name);
    free(seen);
    cJSON_Delete(root);
    return st;
}
