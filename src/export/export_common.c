/* src/export/export_common.c: storage decisions shared by the QDQ ONNX writer and encodings.json.
 *
 * The INT8-container rewrite (ECOSYSTEM §4.3 item 1): a b-bit asymmetric grid x = (q - z) s,
 * q in [0, 2^b - 1], is the zero-point-0 grid x = k s with k = q - z in [-z, 2^b - 1 - z].
 * For b <= 7 that interval always lies inside int8; for b = 8 only when z = 128 (activations) or
 * when the codes actually used happen to fit (weights). Everything else has an exact float
 * fallback, chosen here so both files agree. */
#include <math.h>
#include <stdlib.h>

#include "core/qmath.h"
#include "export/export_internal.h"

const char *qd_wstore_name(qd_wstore k) {
    switch (k) {
    case QD_WSTORE_INT8: return "int8";
    case QD_WSTORE_INT4: return "int4";
    case QD_WSTORE_FLOAT: return "float";
    }
    return "?";
}

const char *qd_astore_name(qd_astore k) {
    return k == QD_ASTORE_INT8 ? "int8" : "float_round";
}

int qd_export_opset(const qd_config *cfg) {
    return (cfg == NULL || cfg->onnx_opset == 0) ? QD_EXPORT_OPSET_MIN : cfg->onnx_opset;
}

int64_t qd_export_inner_stride(const qd_graph *g, const qd_weight_quant *wq) {
    const qd_value *w = &g->values[wq->weight_value];
    int64_t inner = 1;
    for (int d = wq->ch_axis + 1; d < w->ndim; d++) inner *= w->dims[d];
    return inner;
}

static const char *node_name(const qd_graph *g, int n) {
    return (n >= 0 && n < g->nnodes && g->nodes[n].name) ? g->nodes[n].name : "?";
}

qd_status qd_export_weight_codes(const qd_graph *g, const qd_config *cfg, int wi, uint8_t *code,
                                 qd_wstore *store) {
    const qd_weight_quant *wq = &g->wq[wi];
    if (wq->weight_value < 0 || wq->weight_value >= g->nvalues)
        return qd_errorf(QD_ERR_INTERNAL, "export: weight quantizer %d of node %s has no weight value", wi,
                         node_name(g, wq->node));
    const qd_value *w = &g->values[wq->weight_value];
    if (wq->bits < 2 || wq->bits > 8)
        return qd_errorf(QD_ERR_UNSUPPORTED, "export: weight %s: %d-bit weights cannot be exported (2..8)",
                         w->name, wq->bits);
    if (wq->ch_axis < 0 || wq->ch_axis >= w->ndim || w->dims[wq->ch_axis] != wq->channels || wq->channels <= 0)
        return qd_errorf(QD_ERR_INTERNAL, "export: weight %s: channel axis %d does not hold %d channels", w->name,
                         wq->ch_axis, wq->channels);
    if (!wq->scale || !wq->zero_point || !wq->qweight)
        return qd_errorf(QD_ERR_INTERNAL, "export: weight %s has no quantization state (range init not run)",
                         w->name);
    const float qmin = 0.0f, qmax = (float)qd_qmax_for_bits(wq->bits);
    for (int c = 0; c < wq->channels; c++) {
        float s = wq->scale[c], z = wq->zero_point[c];
        if (!(s > 0.0f) || !isfinite(s))
            return qd_errorf(QD_ERR_NUMERIC, "export: weight %s channel %d: scale %g is not positive and finite",
                             w->name, c, (double)s);
        if (!(z >= qmin && z <= qmax) || z != rintf(z))
            return qd_errorf(QD_ERR_INTERNAL, "export: weight %s channel %d: zero point %g is not an integer in [0, %d]",
                             w->name, c, (double)z, (int)qmax);
    }
    const int64_t n = qd_value_numel(w), inner = qd_export_inner_stride(g, wq);
    int kmin = 0, kmax = 0;
    for (int64_t i = 0; i < n; i++) {
        int c = (int)((i / inner) % wq->channels);
        float s = wq->scale[c], z = wq->zero_point[c];
        float q = qd_quant_code(wq->qweight[i], s, z, qmin, qmax);
        /* qweight must sit exactly on the grid: DequantizeLinear computes (q - z) * s in float */
        if (QD_MUL_RN(q - z, s) != wq->qweight[i])
            return qd_errorf(QD_ERR_INTERNAL,
                             "export: weight %s element %lld (channel %d) = %.9g is not on its %d-bit grid "
                             "(s=%.9g, z=%g); the ONNX model would differ from the evaluated one",
                             w->name, (long long)i, c, (double)wq->qweight[i], wq->bits, (double)s, (double)z);
        code[i] = (uint8_t)q;
        int k = (int)q - (int)z;
        if (k < kmin) kmin = k;
        if (k > kmax) kmax = k;
    }
    if (cfg && cfg->int4_weights && qd_export_opset(cfg) >= 21 && wq->bits <= 4 && kmin >= -8 && kmax <= 7)
        *store = QD_WSTORE_INT4;
    else if (kmin >= -128 && kmax <= 127)
        *store = QD_WSTORE_INT8;
    else
        *store = QD_WSTORE_FLOAT;
    return QD_OK;
}

void qd_export_act_range(const qd_act_quant *a, float *lo, float *hi) {
    *lo = QD_MUL_RN((float)a->qmin - a->zero_point, a->scale);
    *hi = QD_MUL_RN((float)a->qmax - a->zero_point, a->scale);
}

int qd_export_act_exported(const qd_graph *g, int ai) {
    const qd_act_quant *a = &g->act[ai];
    if (!a->initialized || a->value < 0 || a->value >= g->nvalues) return 0;
    const qd_value *v = &g->values[a->value];
    return !v->is_const && v->producer >= 0;
}

qd_status qd_export_act_store(const qd_graph *g, int ai, qd_astore *store) {
    const qd_act_quant *a = &g->act[ai];
    const char *vn = (a->value >= 0 && a->value < g->nvalues) ? g->values[a->value].name : "?";
    if (!(a->scale > 0.0f) || !isfinite(a->scale))
        return qd_errorf(QD_ERR_NUMERIC, "export: activation quantizer on %s: scale %g is not positive and finite",
                         vn, (double)a->scale);
    if (a->qmin >= a->qmax || a->zero_point != rintf(a->zero_point) || a->zero_point < (float)a->qmin ||
        a->zero_point > (float)a->qmax)
        return qd_errorf(QD_ERR_INTERNAL, "export: activation quantizer on %s: grid [%d, %d] with zero point %g",
                         vn, a->qmin, a->qmax, (double)a->zero_point);
    int klo = a->qmin - (int)a->zero_point, khi = a->qmax - (int)a->zero_point;
    /* UINT8 (zero point 0, k in [0, 255]) would also be exact, but TensorRT accepts only INT8
     * Q/DQ (ECOSYSTEM §4.2), so grids that do not fit int8 use the float emulation instead. */
    *store = (klo >= -128 && khi <= 127) ? QD_ASTORE_INT8 : QD_ASTORE_FLOAT;
    return QD_OK;
}

char *qd_export_base64(const uint8_t *data, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t out_len = 4 * ((n + 2) / 3);
    char *out = malloc(out_len + 1);
    if (!out) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < n) v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < n) v |= data[i + 2];
        out[j++] = tab[(v >> 18) & 63];
        out[j++] = tab[(v >> 12) & 63];
        out[j++] = (i + 1 < n) ? tab[(v >> 6) & 63] : '=';
        out[j++] = (i + 2 < n) ? tab[v & 63] : '=';
    }
    out[j] = '\0';
    return out;
}
