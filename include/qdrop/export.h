/* qdrop/export.h: deployable outputs of a quantized graph (issue 6, ECOSYSTEM §4).
 *   - QDQ ONNX (protobuf-c writer): weights as INT8 initializers k = q - z with per-output-channel
 *     DequantizeLinear (zero point 0); activations as Clip to the b-bit grid's range, then
 *     QuantizeLinear/DequantizeLinear with zero point 0 (exact b-bit grid inside INT8); BN folded.
 *   - encodings.json: per tensor bits, scale(s), zero point(s), range and the integer weights.
 * Both files are written atomically. */
#ifndef QDROP_EXPORT_H
#define QDROP_EXPORT_H

#include "qdrop/config.h"
#include "qdrop/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

QD_MUST_USE qd_status qd_export_qdq_onnx(const qd_graph *g, const qd_config *cfg, const char *path);
QD_MUST_USE qd_status qd_export_encodings(const qd_graph *g, const qd_config *cfg, const char *path);
/* Load a run's quantized model back from its encodings.json into a graph prepared and planned
 * with the same model and setting (src/export/import_encodings.c): weights (q - z) * s, activation
 * grids; quantizers not listed stay uninitialized (not applied), as in the run's evaluation.
 * QD_ERR_DATA naming the file and tensor when the file does not match the graph. */
QD_MUST_USE qd_status qd_import_encodings(qd_graph *g, const char *path);

#ifdef __cplusplus
}
#endif
#endif
