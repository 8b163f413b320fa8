/* qdrop/exec.h: forward execution of a prepared graph on a backend (evaluation, calibration
 * forwards, unit caching). Implemented in src/graph/exec.c against qd_backend_ops only. */
#ifndef QDROP_EXEC_H
#define QDROP_EXEC_H

#include "qdrop/backend.h"
#include "qdrop/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    QD_EXEC_FP = 0,          /* FP32 weights, no activation quantizers */
    QD_EXEC_QUANT = 1,       /* effective quantized weights (wq->qweight) + every activation
                                quantizer whose `initialized` flag is set */
    QD_EXEC_WQ_ONLY = 2,     /* quantized weights, activations FP (Case 1 / AdaRound / BRECQ
                                upstream, §9) */
    QD_EXEC_AQ_ONLY = 3      /* FP weights, initialized activation quantizers on (Case 2 range
                                init, §9) */
} qd_exec_mode;

typedef struct qd_exec qd_exec;  /* per-graph device copies of weights + activation buffers */

/* Prepare an executor for batches of up to max_batch samples. Uploads weights. */
QD_MUST_USE qd_status qd_exec_create(const qd_graph *g, qd_backend *b, int max_batch, qd_exec **out);
void qd_exec_free(qd_exec *e);
/* Backend bytes qd_exec_create(g, b, max_batch) allocates and uses (constants, quantized weights,
 * activation slots, host staging), for memory planning; *slot_bytes (may be NULL) gets the
 * activation slots' share. Needs a graph with an input and an output. */
int64_t qd_exec_plan_bytes(const qd_graph *g, int max_batch, int64_t *slot_bytes);
/* Re-upload quantized weights/scales after the graph's quantization state changed. */
QD_MUST_USE qd_status qd_exec_sync_quant(qd_exec *e);

/* Run nodes [node_begin, node_end) for `batch` samples. `input` (backend memory) is the value
 * `input_value`; the result for `output_value` is copied to `output` (backend memory).
 * Use node_begin = 0, node_end = g->nnodes, graph input/output for a whole-network forward.
 * Activation quantizers are applied (QUANT mode) to every value that has one; the quantizer on
 * input_value itself is NOT re-applied (the caller passes already-quantized data). */
QD_MUST_USE qd_status qd_exec_run(qd_exec *e, qd_exec_mode mode, int node_begin, int node_end,
                                  int input_value, const float *input, int batch,
                                  int output_value, float *output);

/* Side inputs: graph inputs other than a run's input_value (e.g. an attention mask) read from
 * `data` (backend memory, [batch, ...] of the run) by every later qd_exec_run until rebound;
 * data NULL unbinds. */
QD_MUST_USE qd_status qd_exec_bind(qd_exec *e, int value, const float *data);

/* Backend pointer to value v's buffer as computed by the last qd_exec_run (post-quantizer
 * when its quantizer was applied); NULL when v was not computed. Valid until the next run. */
const float *qd_exec_value(const qd_exec *e, int v);

/* Whole network on host data: input [batch, ...] host floats -> logits host floats. */
QD_MUST_USE qd_status qd_exec_forward_host(qd_exec *e, qd_exec_mode mode, const float *input_host,
                                           int batch, float *output_host);

#ifdef __cplusplus
}
#endif
#endif
