/* src/export/export_internal.h: pieces shared by the QDQ ONNX writer and the encodings sidecar
 * (issue 6, ECOSYSTEM §4.3). Both files must describe the same integer model, so the decision of
 * how each quantizer is stored lives here, once. See docs/export.md for every case. */
#ifndef QD_EXPORT_INTERNAL_H
#define QD_EXPORT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "qdrop/config.h"
#include "qdrop/graph.h"

/* How one weight quantizer lands in the ONNX file. */
typedef enum {
    QD_WSTORE_INT8 = 0,   /* k = q - z as INT8 + per-channel DequantizeLinear, zero point 0 */
    QD_WSTORE_INT4 = 1,   /* same as INT4 (opset >= 21, cfg->int4_weights, every k in [-8, 7]) */
    QD_WSTORE_FLOAT = 2   /* some |k| > 127 (8-bit asymmetric only): exact dequantized floats */
} qd_wstore;

/* How one activation quantizer lands in the ONNX file. */
typedef enum {
    QD_ASTORE_INT8 = 0,   /* [Clip] -> QuantizeLinear(s, int8 0) -> DequantizeLinear(s, int8 0) */
    QD_ASTORE_FLOAT = 1   /* Clip -> Div(s) -> Round -> Mul(s): grid wider than int8 with zp 0 */
} qd_astore;

const char *qd_wstore_name(qd_wstore k);
const char *qd_astore_name(qd_astore k);

/* Opset range the writer emits (per-axis DequantizeLinear needs 13; INT4 needs 21). */
#define QD_EXPORT_OPSET_MIN 13
#define QD_EXPORT_OPSET_MAX 21

/* Effective opset of an export (0 in the config means the default 13). */
int qd_export_opset(const qd_config *cfg);

/* Integer codes of weight quantizer wi: code[i] = q_i (in [0, 2^b - 1]) for every element of the
 * weight in its stored layout, recovered from qweight with qd_quant_code. Checks that
 * (q - z) * s reproduces qweight bit for bit (the export must be the evaluated model) and that the
 * scales are positive and finite. *store receives the ONNX storage chosen for the tensor.
 * code has qd_value_numel(weight) entries. */
QD_MUST_USE qd_status qd_export_weight_codes(const qd_graph *g, const qd_config *cfg, int wi, uint8_t *code,
                                             qd_wstore *store);

/* Channel of element i of weight quantizer wq in its stored layout (axis wq->ch_axis). */
int64_t qd_export_inner_stride(const qd_graph *g, const qd_weight_quant *wq);

/* 1 when activation quantizer ai is part of the evaluated model (QD_EXEC_QUANT): initialized and
 * on a value computed by a node. qd_exec_forward_host feeds the graph input as given and never
 * applies a quantizer placed on it (include/qdrop/exec.h), and QDrop places none there (§6.1),
 * so the export skips such quantizers too: the ONNX model must be the model that was evaluated. */
int qd_export_act_exported(const qd_graph *g, int ai);

/* Storage of activation quantizer ai (validates its scale and grid). */
QD_MUST_USE qd_status qd_export_act_store(const qd_graph *g, int ai, qd_astore *store);

/* Grid bounds of activation quantizer a as floats: lo = (qmin - z) * s, hi = (qmax - z) * s,
 * the same products the fake quantizer returns at its clamps. */
void qd_export_act_range(const qd_act_quant *a, float *lo, float *hi);

/* Standard base64 (RFC 4648, with padding) of n bytes; malloc'd NUL-terminated, NULL on OOM. */
char *qd_export_base64(const uint8_t *data, size_t n);

#endif
