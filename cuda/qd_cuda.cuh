/* cuda/qd_cuda.cuh: private state and helpers of the CUDA backend (the .cu files here only; this
 * directory is the only place that includes CUDA, cuDNN and cuBLAS headers).
 *
 * Execution model: one backend = one device, one stream, one cuDNN and one cuBLAS handle bound
 * to that stream. Every op is enqueued on the stream; only download/upload/sync block. All
 * scratch the ops need (cuDNN workspace, cuBLAS workspace, reduction partials) is allocated at
 * creation, so any sequence of ops can be captured into a CUDA Graph (no cudaMalloc while a
 * stream is capturing).
 */
#ifndef QD_CUDA_CUH
#define QD_CUDA_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stddef.h>
#include <stdint.h>

#include "qdrop/backend.h"
#include "qdrop/status.h"

/* Fixed launch geometry: part of the numerical contract (reduction order depends on it and
 * must not depend on the device's SM count), see docs/numerics.md. */
#define QD_CU_THREADS 256
#define QD_CU_RED_BLOCKS 1024 /* max blocks of a reduction; partials buffer size */
#define QD_CU_MAX_GRID 65535LL * 16

/* cuDNN workspace reserved at creation; algorithms needing more are not considered. */
#define QD_CU_CUDNN_WS (256u << 20)
#define QD_CU_CUBLAS_WS (32u << 20)

typedef struct qd_cu_conv_algo {
    /* key */
    int n, c, h, w, k, r, s, ph, pw, sh, sw, dh, dw, g, oh, ow;
    /* value */
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    cudnnMathType_t fwd_math, bwd_data_math, bwd_filter_math;
} qd_cu_conv_algo;

typedef struct qd_cu_cache_rec {
    void *p;
    size_t bytes;
    int on_device;
} qd_cu_cache_rec;

typedef struct qd_cu {
    int device;
    cudaStream_t stream;
    cudnnHandle_t cudnn;
    cublasHandle_t cublas;
    void *cudnn_ws;
    size_t cudnn_ws_bytes;
    void *cublas_ws;
    double *partials;          /* QD_CU_RED_BLOCKS doubles: block partials of reductions */
    cudnnTensorDescriptor_t xd, yd, bd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    qd_cu_conv_algo *algos;
    int nalgos, algos_cap;
    qd_cu_cache_rec *caches;
    int ncaches, caches_cap;
    size_t cache_device_bytes; /* device bytes held by alloc_cache */
    int capturing;
    int sync_each;             /* QD_SYNC_EACH_OP=1 */
} qd_cu;

static inline qd_cu *qd_cu_of(qd_backend *b) { return (qd_cu *)b->impl; }

/* ---- error mapping ---- */
qd_status qd_cu_err(cudaError_t e, const char *api, const char *file, int line);
qd_status qd_cu_dnn_err(cudnnStatus_t e, const char *api, const char *file, int line);
qd_status qd_cu_blas_err(cublasStatus_t e, const char *api, const char *file, int line);

/* QD_CUDA_TRY / QD_CUDNN_TRY / QD_CUBLAS_TRY: any failure -> qd_errorf(QD_ERR_INTERNAL,
 * "<api> failed: <string> at file:line") (out of memory -> QD_ERR_DEVICE_OOM) and return. */
#define QD_CUDA_TRY(call)                                                          \
    do {                                                                           \
        cudaError_t qd_cu_e_ = (call);                                             \
        if (qd_cu_e_ != cudaSuccess) return qd_cu_err(qd_cu_e_, #call, __FILE__, __LINE__); \
    } while (0)
#define QD_CUDNN_TRY(call)                                                         \
    do {                                                                           \
        cudnnStatus_t qd_cu_e_ = (call);                                           \
        if (qd_cu_e_ != CUDNN_STATUS_SUCCESS) return qd_cu_dnn_err(qd_cu_e_, #call, __FILE__, __LINE__); \
    } while (0)
#define QD_CUBLAS_TRY(call)                                                        \
    do {                                                                           \
        cublasStatus_t qd_cu_e_ = (call);                                          \
        if (qd_cu_e_ != CUBLAS_STATUS_SUCCESS) return qd_cu_blas_err(qd_cu_e_, #call, __FILE__, __LINE__); \
    } while (0)

/* After a kernel launch: launch errors, and a full sync when QD_SYNC_EACH_OP=1 (not while
 * capturing). */
qd_status qd_cu_post(qd_backend *b, const char *what, const char *file, int line);
#define QD_CU_POST(b, what) QD_TRY(qd_cu_post((b), (what), __FILE__, __LINE__))

static inline unsigned qd_cu_blocks(int64_t n) {
    int64_t g = (n + QD_CU_THREADS - 1) / QD_CU_THREADS;
    if (g < 1) g = 1;
    if (g > QD_CU_MAX_GRID) g = QD_CU_MAX_GRID;
    return (unsigned)g;
}
/* Blocks of a reduction over n items: depends on n only (never on the device). */
static inline unsigned qd_cu_red_blocks(int64_t n) {
    int64_t g = (n + QD_CU_THREADS - 1) / QD_CU_THREADS;
    if (g < 1) g = 1;
    if (g > QD_CU_RED_BLOCKS) g = QD_CU_RED_BLOCKS;
    return (unsigned)g;
}

static inline int64_t qd_cu_numel(const qd_shape *s) {
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) n *= s->dims[i];
    return n;
}

/* Finish a two-pass reduction: partials[0..nblocks) (doubles, written by pass 1) are summed in
 * block order by one block and `*acc += (float)(scale * sum)` (deterministic), or atomically
 * added when the backend is not deterministic. Implemented in backend_cuda.cu. */
qd_status qd_cu_reduce_finish(qd_backend *b, unsigned nblocks, double scale, float *acc);

/* Graph ops (ops_cuda.cu, conv_cuda.cu). */
qd_status qd_cu_node_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                             const qd_shape *os, float *out);
qd_status qd_cu_node_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                              const qd_shape *os, const float *out, const float *dout, float *const *din);
qd_status qd_cu_conv_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                             const qd_shape *os, float *out);
qd_status qd_cu_conv_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                              const qd_shape *os, const float *dout, float *const *din);
qd_status qd_cu_gemm_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                             const qd_shape *os, float *out);
qd_status qd_cu_gemm_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                              const qd_shape *os, const float *dout, float *const *din);
qd_status qd_cu_matmul_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                               const qd_shape *os, float *out);
qd_status qd_cu_matmul_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                                const qd_shape *os, const float *dout, float *const *din);
void qd_cu_conv_cache_free(qd_cu *c);
/* backend.h describe (conv_cuda.cu): settings and the cuDNN algorithms chosen per conv shape. */
size_t qd_cu_describe(qd_backend *b, char *buf, size_t cap);
/* LayerNormalization, Gelu and Softmax with a mask input (ops_cuda_bert.cu). */
qd_status qd_cu_transformer_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                                    const qd_shape *os, float *out);
qd_status qd_cu_transformer_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                                     const qd_shape *os, const float *out, const float *dout, float *const *din);

/* Plan-time check (ops_cuda.cu, beside node_forward's switch): qd_backend_ops.supports_op.
 * C linkage: tests/unit/test_supports_op.c asks it directly (no device needed to answer). */
extern "C" int qd_cu_supports_op(const qd_backend *b, const qd_graph *g, const qd_node *n, char *why, size_t cap);

/* Reconstruction kernels (recon_cuda.cu); qd_backend_ops documents each. */
qd_status qd_cu_iter_advance(qd_backend *b, int32_t *iter);
qd_status qd_cu_draw_batch(qd_backend *b, qd_rng_key key, const int32_t *iter, int32_t n_total, int32_t batch,
                           int32_t *idx);
qd_status qd_cu_gather_mix(qd_backend *b, const float *quant_src, const float *fp_src, const int32_t *idx,
                           int32_t batch, int64_t sample_numel, qd_rng_key key, float keep_prob,
                           const int32_t *iter, float *out);
qd_status qd_cu_fq_forward(qd_backend *b, const qd_fq_desc *d, const float *scale, const int32_t *iter,
                           int64_t n, const float *x, float *y, uint8_t *region);
qd_status qd_cu_fq_backward(qd_backend *b, const qd_fq_desc *d, const float *scale, int64_t n, const float *x,
                            const uint8_t *region, const float *dy, float *dx, float *dscale);
qd_status qd_cu_adaround_init(qd_backend *b, const qd_adaround_desc *d, const float *w, const float *s,
                              const float *z, float *V);
qd_status qd_cu_adaround_weight(qd_backend *b, const qd_adaround_desc *d, const float *w, const float *V,
                                const float *s, const float *z, int hard, float *w_out);
qd_status qd_cu_adaround_step(qd_backend *b, const qd_adaround_desc *d, const qd_sched_desc *s,
                              const int32_t *iter, const float *w, const float *sc, const float *z,
                              const float *dW, float *V, float *m, float *v, float *reg_loss);
qd_status qd_cu_scale_step(qd_backend *b, const qd_sched_desc *s, const int32_t *iter, int n, float *scales,
                           float *grads, float *m, float *v);
qd_status qd_cu_mse_loss(qd_backend *b, int64_t n, int64_t c, int64_t hw, const float *y, const float *t,
                         float *dy, float *loss);
qd_status qd_cu_lp_loss(qd_backend *b, float p, int64_t n, int64_t c, int64_t hw, const float *y, const float *t,
                        float *dy, float *loss);
qd_status qd_cu_check_finite(qd_backend *b, int64_t n, const float *x, int32_t *bad);
qd_status qd_cu_keep_mask(qd_backend *b, qd_rng_key key, const int32_t *iter, int64_t n, float keep_prob,
                          uint32_t *bits);

#endif
