/* qdrop/bert_cuda.h: one BERT encoder layer (post-LN BertLayer, the CPU encoder of
 * src/bert/encoder.c) forward and backward on a CUDA device. Implemented in cuda/bert_cuda.cu;
 * only available when the CUDA backend is built (QD_HAVE_CUDA). See docs/bert.md "CUDA encoder".
 *
 * Shape of the API:
 *   - a workspace qd_bert_cuda bound to a CUDA qd_backend (its stream and cuBLAS handle, so
 *     the backend's tf32 option decides the GEMM math mode) and sized for (max_B, max_S); it
 *     holds the forward cache and the backward scratch on the device;
 *   - layer weights and gradients are the ordinary qd_bert_layer / qd_bert_layer_grads structs
 *     holding DEVICE pointers (helpers below upload/allocate/download/free them), so a caller
 *     can swap a weight pointer for a fake-quantized device copy exactly as on the CPU;
 *   - activations x, y, dy, dx and the key mask are device pointers; every call is enqueued on
 *     the backend's stream (qd_bert_cuda_sync waits);
 *   - activation quantizers: a per-site descriptor (qd_bert_aq: scale, zero point, bits on the
 *     unsigned grid [0, 2^bits - 1]) set with qd_bert_cuda_set_act_quant makes the forward apply
 *     qd_fake_quant (src/core/qmath.h) in place at that site, exactly where the CPU encoder calls
 *     its hook (Q/K/V after the head split, PROBS, CTX, ATTN_LN, GELU, OUT_LN). The backward
 *     treats quantizers as identity (straight-through without clamping), as
 *     qd_bert_layer_backward does, and uses the pre-quantizer probabilities in the softmax
 *     backward.
 * Layouts are those of qdrop/bert.h: activations [B*S, features] row-major, Linear weights
 * [out, in], mask [B*S] ints (1 keep, 0 padding).
 */
#ifndef QDROP_BERT_CUDA_H
#define QDROP_BERT_CUDA_H

#include "qdrop/backend.h"
#include "qdrop/bert.h"
#include "qdrop/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_bert_cuda qd_bert_cuda;

/* Workspace for layers of shape cfg (hidden, heads, intermediate, ln_eps) and up to max_B x
 * max_S tokens. dev must be a CUDA backend (QD_ERR_USAGE otherwise); QD_ERR_DEVICE_OOM when
 * device memory runs out. Not while the backend is capturing a CUDA Graph. */
QD_MUST_USE qd_status qd_bert_cuda_create(qd_backend *dev, const qd_bert_config *cfg, int max_B, int max_S,
                                          qd_bert_cuda **out);
void qd_bert_cuda_destroy(qd_bert_cuda *w);

/* Activation quantizer at site (QD_BERT_SITE_Q .. QD_BERT_SITE_OUT_LN); aq NULL or bits 0
 * switches it off. QD_ERR_CONFIG for bits outside 1..16, a non-positive/non-finite scale or a
 * zero point outside the grid; QD_ERR_USAGE for QD_BERT_SITE_EMB_LN (not part of a layer). */
QD_MUST_USE qd_status qd_bert_cuda_set_act_quant(qd_bert_cuda *w, qd_bert_site site, const qd_bert_aq *aq);

/* y = layer(x) for B x S tokens (B <= max_B, S <= max_S), keeping the cache the backward needs.
 * L holds device pointers; x, mask, y are device buffers ([B*S*H], [B*S], [B*S*H]); y must not
 * alias x. */
QD_MUST_USE qd_status qd_bert_cuda_layer_forward(qd_bert_cuda *w, const qd_bert_layer *L, const float *x,
                                                 const int *mask, int B, int S, float *y);
/* Gradients of the last forward given dy (device, [B*S*H]): dx is written, every non-NULL
 * device pointer of g is ACCUMULATED into (as qd_bert_layer_backward). g may be NULL. */
QD_MUST_USE qd_status qd_bert_cuda_layer_backward(qd_bert_cuda *w, const qd_bert_layer *L, const float *dy,
                                                  float *dx, qd_bert_layer_grads *g);
/* Waits for the backend's stream; reports asynchronous kernel failures. */
QD_MUST_USE qd_status qd_bert_cuda_sync(qd_bert_cuda *w);

/* Device copies of a host layer's 16 tensors (each its own allocation); free with
 * qd_bert_cuda_layer_free, which also NULLs the pointers. */
QD_MUST_USE qd_status qd_bert_cuda_layer_upload(qd_backend *dev, const qd_bert_config *cfg, const qd_bert_layer *host,
                                                qd_bert_layer *dev_layer);
void qd_bert_cuda_layer_free(qd_backend *dev, qd_bert_layer *dev_layer);
/* Zeroed device gradient buffers for all 16 tensors / set them to zero / copy them to host
 * buffers (any host pointer may be NULL to skip that tensor) / free them. */
QD_MUST_USE qd_status qd_bert_cuda_grads_alloc(qd_backend *dev, const qd_bert_config *cfg, qd_bert_layer_grads *g);
QD_MUST_USE qd_status qd_bert_cuda_grads_zero(qd_backend *dev, const qd_bert_config *cfg, qd_bert_layer_grads *g);
QD_MUST_USE qd_status qd_bert_cuda_grads_download(qd_backend *dev, const qd_bert_config *cfg,
                                                  const qd_bert_layer_grads *g, qd_bert_layer_grads *host);
void qd_bert_cuda_grads_free(qd_backend *dev, qd_bert_layer_grads *g);

#ifdef __cplusplus
}
#endif
#endif
