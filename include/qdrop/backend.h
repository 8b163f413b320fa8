/* qdrop/backend.h: the interface the scheduler, the training loop and the executors are
 * written against, once. Implementations: src/cpu/backend_cpu.c (reference) and
 * cuda/backend_cuda.cu (cuDNN/cuBLAS + fused kernels).
 *
 * Design rules:
 *   - All tensor pointers passed to ops are backend memory (host memory for the CPU backend,
 *     device memory for CUDA). Only upload/download cross the boundary.
 *   - Nothing in one training iteration needs the host: batch indices are drawn by the backend
 *     (draw_batch), and every schedule (beta, warm-up, cosine lr, Adam step, RNG counter) is read
 *     from `iter`, a backend-resident int32 counter advanced by iter_advance. That lets the CUDA
 *     backend capture one iteration as a CUDA Graph and replay it.
 *   - Backward ops ACCUMULATE (+=) into gradient buffers; callers zero them first.
 *   - Ops return qd_status; errors carry a message via qd_errorf.
 * Ownership: a qd_backend is created by qd_backend_create and released by qd_backend_destroy.
 * Thread-safety: one backend per thread.
 */
#ifndef QDROP_BACKEND_H
#define QDROP_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include "qdrop/graph.h"
#include "qdrop/rng_key.h"
#include "qdrop/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_backend qd_backend;

/* Shape of one runtime tensor (batch already substituted). */
typedef struct qd_shape {
    int ndim;
    int64_t dims[QD_MAX_DIMS];
} qd_shape;

int64_t qd_shape_numel(const qd_shape *s);   /* src/graph/exec.c */

typedef struct qd_fq_desc {
    float zero_point;
    float qmin, qmax;
    float keep_prob;        /* §7: probability of keeping quantization; >= 1 disables drop */
    int grad_scale;         /* multiply the reduced ds by 1/sqrt(numel*qmax) (Q2, §6.3) */
    int guard_scale;        /* use max(|s|, eps) as the scale (Q2 training forward, §6.3) */
    qd_rng_key key;       /* drop mask key; element index = flat index in the batch tensor */
} qd_fq_desc;

/* Per-channel AdaRound weight description (§4). */
typedef struct qd_adaround_desc {
    int64_t numel;          /* weight elements */
    int64_t per_channel;    /* elements per output channel (channel = i / per_channel) */
    int channels;
    float qmin, qmax;
} qd_adaround_desc;

/* Schedules of one unit's reconstruction (§4, §6.3). */
typedef struct qd_sched_desc {
    int total_iters;        /* T */
    float warm_up;          /* fraction */
    float b_start, b_end;
    float lambda;           /* rounding regulariser weight */
    float lr_v;             /* Adam lr for V (1e-3) */
    float lr_scale;         /* base lr of the scales' Adam (cosine to 0) */
} qd_sched_desc;

typedef struct qd_backend_ops {
    const char *name;                                   /* "cpu" | "cuda" */
    void (*destroy)(qd_backend *b);

    /* ---- memory ---- */
    /* Device memory; NULL on failure (qd_errorf set, QD_ERR_DEVICE_OOM). */
    void *(*alloc)(qd_backend *b, size_t bytes);
    /* Memory for big unit caches: device memory when within budget, otherwise pinned host
     * memory the device reads directly (zero-copy). *on_device reports which. */
    void *(*alloc_cache)(qd_backend *b, size_t bytes, int *on_device);
    void (*free)(qd_backend *b, void *p);
    void (*free_cache)(qd_backend *b, void *p);
    qd_status (*upload)(qd_backend *b, void *dst, const void *src_host, size_t bytes);
    qd_status (*download)(qd_backend *b, void *dst_host, const void *src, size_t bytes);
    qd_status (*copy)(qd_backend *b, void *dst, const void *src, size_t bytes);
    qd_status (*zero)(qd_backend *b, void *dst, size_t bytes);
    qd_status (*sync)(qd_backend *b);

    /* ---- plan-time check ----
     * 1 when node_forward and node_backward run node n of graph g: its op, and its attributes at
     * the ranks g records. Otherwise 0, with the reason in why (cap bytes, e.g. "asymmetric pads
     * (0,0,1,1)"). qd_backend_check_graph asks it for every node before anything is computed, so
     * an unsupported node fails the run up front, named, instead of midway. The answer must match
     * what the kernels do: an op or attribute the kernels refuse at run time is refused here. */
    int (*supports_op)(const qd_backend *b, const qd_graph *g, const qd_node *n, char *why, size_t cap);

    /* ---- graph ops ----
     * Forward of one node. in[i] / in_shapes[i] follow node->inputs (for Conv/Gemm the weight
     * pointer is whatever the caller wants used: FP, nearest-quantized or soft AdaRound). */
    qd_status (*node_forward)(qd_backend *b, const qd_node *n, const qd_shape *in_shapes,
                              const float *const *in, const qd_shape *out_shape, float *out);
    /* Backward: din[i] += dL/d in[i] for every non-NULL din[i] (bias gradients are never
     * requested: biases are frozen, §4). `out` is the forward output. */
    qd_status (*node_backward)(qd_backend *b, const qd_node *n, const qd_shape *in_shapes,
                               const float *const *in, const qd_shape *out_shape, const float *out,
                               const float *dout, float *const *din);

    /* ---- reconstruction kernels (math in src/core/qmath.h) ---- */
    /* iter counter: *iter += 1 (start of every iteration; the first iteration sees c = 1). */
    qd_status (*iter_advance)(qd_backend *b, int32_t *iter);
    /* idx[k] = uniform draw from [0, n_total) for k < batch, keyed (key, *iter, k). */
    qd_status (*draw_batch)(qd_backend *b, qd_rng_key key, const int32_t *iter, int32_t n_total,
                            int32_t batch, int32_t *idx);
    /* out[k] = quant_src[idx[k]] where keep(key, *iter, flat element) else fp_src[idx[k]]
     * (§7.1). fp_src == NULL or keep_prob >= 1: plain gather of quant_src. */
    qd_status (*gather_mix)(qd_backend *b, const float *quant_src, const float *fp_src,
                            const int32_t *idx, int32_t batch, int64_t sample_numel,
                            qd_rng_key key, float keep_prob, const int32_t *iter, float *out);
    /* Activation fake-quant with drop (§2, §7): y = keep ? Q(x) : x. region (may be NULL when
     * not training) receives QD_FQ_* codes for the backward. scale: backend scalar. iter may be
     * NULL when keep_prob >= 1. */
    qd_status (*fq_forward)(qd_backend *b, const qd_fq_desc *d, const float *scale, const int32_t *iter,
                            int64_t n, const float *x, float *y, uint8_t *region);
    /* dx += STE(dy); *dscale += factor * sum ds (block-reduced). */
    qd_status (*fq_backward)(qd_backend *b, const qd_fq_desc *d, const float *scale, int64_t n,
                             const float *x, const uint8_t *region, const float *dy, float *dx,
                             float *dscale);
    /* V = init(w, s) (§4). s, z: [channels]. */
    qd_status (*adaround_init)(qd_backend *b, const qd_adaround_desc *d, const float *w,
                               const float *s, const float *z, float *V);
    /* w_out = soft (hard=0) or hard (hard=1) AdaRound weight. */
    qd_status (*adaround_weight)(qd_backend *b, const qd_adaround_desc *d, const float *w,
                                 const float *V, const float *s, const float *z, int hard,
                                 float *w_out);
    /* One fused pass: dV = dW * dw/dV (+ reg gradient when c >= T_w), then Adam on V
     * (lr sched->lr_v, step c). *reg_loss += lambda * sum(1-|2h-1|^beta) when active (for logs). */
    qd_status (*adaround_step)(qd_backend *b, const qd_adaround_desc *d, const qd_sched_desc *s,
                               const int32_t *iter, const float *w, const float *sc, const float *z,
                               const float *dW, float *V, float *m, float *v, float *reg_loss);
    /* Adam on n scales with the cosine lr at step c (§6.3); grad zeroed afterwards. */
    qd_status (*scale_step)(qd_backend *b, const qd_sched_desc *s, const int32_t *iter, int n,
                            float *scales, float *grads, float *m, float *v);
    /* loss += sum_c (y - t)^2 / (N*HW); dy = 2 (y - t) / (N*HW) (§5). Shape [N, C, HW...]. */
    qd_status (*mse_loss)(qd_backend *b, int64_t n, int64_t c, int64_t hw, const float *y,
                          const float *t, float *dy, float *loss);
    /* L_p loss (§5 reduction; BRECQ's activation stage uses p = 2.4, §6.3):
     * loss += sum_c |y - t|^p / (N*HW); dy = p |y - t|^(p-1) sign(y - t) / (N*HW) (dy may be
     * NULL). Element formulas: qd_lp_loss_term / qd_lp_loss_grad in src/core/qmath.h. */
    qd_status (*lp_loss)(qd_backend *b, float p, int64_t n, int64_t c, int64_t hw, const float *y,
                         const float *t, float *dy, float *loss);
    /* Returns 1 in *bad (backend scalar int32) when any element of x is NaN/Inf. */
    qd_status (*check_finite)(qd_backend *b, int64_t n, const float *x, int32_t *bad);

    /* ---- optional: iteration capture (CUDA Graphs). NULL on the CPU backend. ---- */
    qd_status (*capture_begin)(qd_backend *b);
    qd_status (*capture_end)(qd_backend *b, void **graph);
    qd_status (*graph_launch)(qd_backend *b, void *graph);
    void (*graph_destroy)(qd_backend *b, void *graph);

    /* ---- optional: reproducibility evidence for results.json (NULL where not provided) ---- */
    /* bits[w] bit j (LSB first) = qd_keep_quant(key, *iter, 32 w + j, keep_prob) for elements
     * < n, 0 beyond n: the keep mask gather_mix and fq_forward apply, drawn by this backend's own
     * generator so a digest of it compares the backends' Philox bit for bit. bits: backend memory,
     * (n + 31) / 32 words. */
    qd_status (*keep_mask)(qd_backend *b, qd_rng_key key, const int32_t *iter, int64_t n, float keep_prob,
                           uint32_t *bits);
    /* A JSON object (text) naming how this backend computes what it has computed so far:
     * {"conv": "cudnn" | "onednn" | "im2col+openblas", ...; the CUDA backend adds "tf32",
     * "cublas_math" and "conv_algos": one entry per distinct convolution shape with the cuDNN
     * forward / backward-data / backward-filter algorithms and math modes it chose}. Writes at
     * most cap bytes (NUL included, truncated JSON is never returned: buf gets "" when it does not
     * fit) and returns the length the full text needs, snprintf-style. */
    size_t (*describe)(qd_backend *b, char *buf, size_t cap);
} qd_backend_ops;

struct qd_backend {
    const qd_backend_ops *ops;
    void *impl;              /* backend private state */
    int threads;             /* CPU threads (CPU backend) */
    int deterministic, tf32; /* CUDA options, echoed into results.json */
    int64_t memory_budget;   /* bytes, 0 = device capacity */
    char device_name[128];   /* "cpu (2 threads)", "NVIDIA H200" */
};

typedef struct qd_backend_options {
    int threads;             /* CPU threads, 0 = all cores */
    int deterministic;       /* CUDA: deterministic cuDNN algorithms */
    int tf32;                /* CUDA: allow TF32 */
    int64_t memory_budget;   /* CUDA: bytes of device memory the caches may use, 0 = all */
    /* CPU: bytes of host memory the unit caches (alloc_cache) may hold, 0 = no limit. A cache
     * that would go over it is spilled to a memory-mapped file in spill_dir (docs/memory.md);
     * without a spill_dir it fails with QD_ERR_DEVICE_OOM. */
    int64_t host_memory_budget;
    const char *spill_dir;   /* CPU: directory of the spill files (the output directory), or NULL */
} qd_backend_options;

/* CPU backend cache accounting (docs/memory.md): peak bytes of caches held in memory and in
 * spill files, and the number of spill files created. Zeros for other backends. */
typedef struct qd_cache_stats {
    int64_t mem_peak, spill_peak;
    int spill_files;
} qd_cache_stats;
void qd_backend_cache_stats(const qd_backend *b, qd_cache_stats *out);

/* Plan-time check of a whole graph (src/graph/exec.c; qd_exec_create calls it): QD_OK, or
 * QD_ERR_UNSUPPORTED (exit 65) naming the model, the first node the backend cannot run, its op
 * and the backend, e.g. "m.onnx: node conv1 (Conv): asymmetric pads (0,0,1,1): not supported by
 * the cuda backend". */
QD_MUST_USE qd_status qd_backend_check_graph(const qd_backend *b, const qd_graph *g);

/* Backend registry (src/backend/registry.c). kind: "cpu", "cuda" or "auto" (cuda when usable, else cpu).
 * "cuda" without a usable device fails with QD_ERR_NODEVICE. */
QD_MUST_USE qd_status qd_backend_create(const char *kind, const qd_backend_options *opt, qd_backend **out);
/* 1 when the CUDA backend is compiled in and a device is usable (any cudaGetDeviceCount error
 * counts as no device). */
int qd_cuda_available(void);
/* Why qd_cuda_available() returned 0, in words, for error messages: the device-count call's
 * error (no driver, driver too old for this binary's CUDA runtime, no device visible) with the
 * driver's and runtime's CUDA versions, or "this build has no CUDA backend". Static storage. */
const char *qd_cuda_unavailable_reason(void);
/* Device memory in use (total - free, this process and others) and the device's capacity, for
 * benchmarks' peak-memory figures. 0 on success, -1 without a usable CUDA device or backend. */
int qd_cuda_memory_info(int64_t *used_bytes, int64_t *total_bytes);
/* CUDA backend constructor (cuda/backend_cuda.cu); only when built with QD_HAVE_CUDA. */
QD_MUST_USE qd_status qd_cuda_backend_create(const qd_backend_options *opt, qd_backend **out);
QD_MUST_USE qd_status qd_cpu_backend_create(const qd_backend_options *opt, qd_backend **out);
/* Version string of CUDA runtime/driver, cuDNN, cuBLAS ("" without CUDA). */
void qd_cuda_versions(char *buf, size_t n);
void qd_backend_destroy(qd_backend *b);

#ifdef __cplusplus
}
#endif
#endif
