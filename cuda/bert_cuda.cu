/* cuda/bert_cuda.cu: one BERT encoder layer (post-LN BertLayer) forward and backward on the
 * device, the twin of the CPU encoder in src/bert/encoder.c. API: include/qdrop/bert_cuda.h.
 *
 * Linear layers are cuBLAS sgemm; QK^T, PV and their gradients are cublasSgemmStridedBatched
 * over batch x heads. Everything else is a fused kernel here: LayerNorm forward/backward and the
 * masked softmax forward/backward (one warp per row, statistics accumulated in double exactly as
 * encoder.c does, reduced by a fixed xor-butterfly so every lane and every run gets the same
 * bits), exact-erf GELU and its derivative (erff/expf, same float expressions as encoder.c),
 * bias/residual adds, head split/merge, and column sums for the bias and LayerNorm parameter
 * gradients (two passes: fixed 256-row chunks summed in double, then the chunks in order; no
 * atomics, so gradients are reproducible run to run and independent of the SM count).
 * Activation quantizers (§8.8) are qd_fake_quant from src/core/qmath.h applied in place at the
 * sites where encoder.c calls its hook.
 *
 * Numerics vs the CPU (docs/bert.md, "CUDA encoder"): elementwise expressions are identical
 * (-fmad=false on both sides), double reductions differ only in summation order, CUDA erff/expf
 * are within 2 ulp of glibc, and the GEMMs accumulate in a different order (and in TF32 when
 * the backend was created with tf32 = 1). Expected agreement with TF32 off: NMSE ~1e-13..1e-11
 * per tensor; tests/cuda/test_cuda_bert.c allows 1e-9 (forward) / 1e-8 (gradients).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "qd_cuda.cuh"
#include "core/qmath.h"
#include "qdrop/bert_cuda.h"

#define BC_ROWS_PER_BLOCK 8    /* warp-per-row kernels: 8 warps = 256 threads */
#define BC_COL_CHUNK 256       /* rows per partial of the column sums (fixed: part of the numerics) */
#define BC_COL_TY 8            /* row threads per column in pass 1 */
#define BC_NT 16               /* tensors of a layer */

struct qd_bert_cuda {
    qd_backend *b;
    qd_cu *c;
    int H, NH, d, FF;
    float eps;
    int max_B, max_S;
    int B, S;          /* shape of the last forward (0: none yet) */
    int probs_quant;   /* PROBS was quantized in the last forward: probs_pre holds the input */
    qd_bert_aq aq[QD_BERT_SITE_COUNT];
    /* forward cache (layouts as qd_bert_layer_cache) */
    float *x, *q, *k, *v, *probs, *probs_pre, *ctx, *ln1_xhat, *ln1_rstd, *h1, *pre, *inter, *ln2_xhat, *ln2_rstd;
    /* scratch */
    float *tmp, *tmp2, *dz2, *dint, *dh1, *dz1, *dctx, *dq, *dk, *dv, *dP;
    double *colpart;   /* [ceil(max_T / BC_COL_CHUNK) * max(H, FF)] */
};

/* ------------------------------------------------------------------------------------------ */
/* Kernels                                                                                     */
/* ------------------------------------------------------------------------------------------ */
__device__ __forceinline__ double bc_warp_sum(double v) {
    /* xor butterfly: lane l adds s_l + s_{l^m} and its partner s_{l^m} + s_l, equal bits, so
     * all lanes hold the same sum and the order is fixed */
    for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
    return v;
}
__device__ __forceinline__ float bc_warp_max(float v) {
    for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, m));
    return v;
}

/* y = LN(x) * g + b per row of n (encoder.c layernorm): mean and variance in double. */
__global__ void bc_k_ln_fwd(const float *__restrict__ x, const float *__restrict__ g, const float *__restrict__ bb,
                            int T, int n, float eps, float *__restrict__ y, float *__restrict__ xhat,
                            float *__restrict__ rstd) {
    const int row = blockIdx.x * BC_ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= T) return;
    const float *r = x + (size_t)row * n;
    double s = 0.0;
    for (int i = lane; i < n; i += 32) s += r[i];
    const double mean = bc_warp_sum(s) / n;
    double v = 0.0;
    for (int i = lane; i < n; i += 32) {
        const double dl = r[i] - mean;
        v += dl * dl;
    }
    v = bc_warp_sum(v) / n;
    const float rs = (float)(1.0 / sqrt(v + (double)eps));
    if (lane == 0) rstd[row] = rs;
    for (int i = lane; i < n; i += 32) {
        const float h = (float)((r[i] - mean) * rs);
        xhat[(size_t)row * n + i] = h;
        y[(size_t)row * n + i] = h * g[i] + bb[i];
    }
}

/* dx = rstd * (dy*g - mean(dy*g) - xhat * mean(dy*g*xhat)) per row (encoder.c layernorm_backward). */
__global__ void bc_k_ln_bwd(const float *__restrict__ dy, const float *__restrict__ xhat,
                            const float *__restrict__ rstd, const float *__restrict__ g, int T, int n,
                            float *__restrict__ dx) {
    const int row = blockIdx.x * BC_ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= T) return;
    const float *d = dy + (size_t)row * n, *h = xhat + (size_t)row * n;
    double m1 = 0.0, m2 = 0.0;
    for (int i = lane; i < n; i += 32) {
        const double dh = (double)d[i] * g[i];
        m1 += dh;
        m2 += dh * h[i];
    }
    m1 = bc_warp_sum(m1) / n;
    m2 = bc_warp_sum(m2) / n;
    const float rs = rstd[row];
    for (int i = lane; i < n; i += 32)
        dx[(size_t)row * n + i] = (float)(rs * ((double)d[i] * g[i] - m1 - h[i] * m2));
}

/* Masked softmax over keys, rows of S, in place (encoder.c): padded keys get exactly 0, the
 * maximum is over valid keys, the sum in double. Row r = (b*NH + h)*S + i. */
__global__ void bc_k_softmax_fwd(float *__restrict__ P, const int *__restrict__ mask, int rows, int S, int NH) {
    const int row = blockIdx.x * BC_ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    float *r = P + (size_t)row * S;
    const int *m = mask + (size_t)(row / S / NH) * S;
    float mx = -INFINITY;
    for (int j = lane; j < S; j += 32)
        if (m[j] && r[j] > mx) mx = r[j];
    mx = bc_warp_max(mx);
    double sum = 0.0;
    for (int j = lane; j < S; j += 32) {
        const float e = m[j] ? expf(r[j] - mx) : 0.0f;
        r[j] = e;
        sum += e;
    }
    const float inv = (float)(1.0 / bc_warp_sum(sum));
    for (int j = lane; j < S; j += 32) r[j] *= inv;
}

/* dS = P * (dP - sum_j dP*P) in place on dP, P = pre-quantizer probabilities. */
__global__ void bc_k_softmax_bwd(float *__restrict__ dP, const float *__restrict__ P, int rows, int S) {
    const int row = blockIdx.x * BC_ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    float *g = dP + (size_t)row * S;
    const float *p = P + (size_t)row * S;
    double s = 0.0;
    for (int j = lane; j < S; j += 32) s += (double)g[j] * p[j];
    s = bc_warp_sum(s);
    for (int j = lane; j < S; j += 32) g[j] = p[j] * (float)(g[j] - s);
}

/* [T,H] (+ bias) -> [B,NH,S,d] */
__global__ void bc_k_split_heads(const float *__restrict__ src, const float *__restrict__ bias, int B, int S, int NH,
                                 int d, float *__restrict__ dst) {
    const int64_t H = (int64_t)NH * d, n = (int64_t)B * S * H;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / H;
        const int col = (int)(i - t * H), h = col / d, e = col - h * d;
        const int64_t b = t / S, s = t - b * S;
        float v = src[i];
        if (bias) v = v + bias[col];
        dst[((b * NH + h) * S + s) * d + e] = v;
    }
}
/* [B,NH,S,d] -> [T,H] */
__global__ void bc_k_merge_heads(const float *__restrict__ src, int B, int S, int NH, int d, float *__restrict__ dst) {
    const int64_t H = (int64_t)NH * d, n = (int64_t)B * S * H;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / H;
        const int col = (int)(i - t * H), h = col / d, e = col - h * d;
        const int64_t b = t / S, s = t - b * S;
        dst[i] = src[((b * NH + h) * S + s) * d + e];
    }
}

/* y[t,c] = (y[t,c] + bias[c]) + res[t,c]; bias/res may be NULL (encoder.c: Linear adds the bias,
 * then the residual is added). */
__global__ void bc_k_bias_res(float *__restrict__ y, const float *__restrict__ bias, const float *__restrict__ res,
                              int64_t n, int cols) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = y[i];
        if (bias) v = v + bias[i % cols];
        if (res) v = v + res[i];
        y[i] = v;
    }
}

__device__ __forceinline__ float bc_gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float bc_gelu_grad(float x) {
    return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) + x * 0.39894228040143268f * expf(-0.5f * x * x);
}
__global__ void bc_k_gelu(const float *__restrict__ x, float *__restrict__ y, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = bc_gelu(x[i]);
}
__global__ void bc_k_gelu_bwd(float *__restrict__ g, const float *__restrict__ x, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        g[i] *= bc_gelu_grad(x[i]);
}

__global__ void bc_k_fake_quant(float *__restrict__ x, int64_t n, float s, float z, float qmax) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = qd_fake_quant(x[i], s, z, 0.0f, qmax);
}

/* Column sums, pass 1: part[chunk * n + c] = sum over rows of chunk of a[t,c] (* m[t,c]), in
 * double; block (32, BC_COL_TY), grid (ceil(n/32), chunks). */
__global__ void bc_k_colsum_part(const float *__restrict__ a, const float *__restrict__ m, int T, int n,
                                 double *__restrict__ part) {
    __shared__ double sh[BC_COL_TY][32];
    const int c = blockIdx.x * 32 + threadIdx.x;
    const int t0 = blockIdx.y * BC_COL_CHUNK, t1 = min(T, t0 + BC_COL_CHUNK);
    double s = 0.0;
    if (c < n)
        for (int t = t0 + threadIdx.y; t < t1; t += BC_COL_TY) {
            const size_t i = (size_t)t * n + c;
            s += m ? (double)a[i] * m[i] : (double)a[i];
        }
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < n) {
        double r = sh[0][threadIdx.x];
        for (int k = 1; k < BC_COL_TY; k++) r += sh[k][threadIdx.x];
        part[(size_t)blockIdx.y * n + c] = r;
    }
}
/* pass 2: acc[c] += (float)sum over chunks in order. */
__global__ void bc_k_colsum_finish(const double *__restrict__ part, int chunks, int n, float *__restrict__ acc) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= n) return;
    double s = 0.0;
    for (int k = 0; k < chunks; k++) s += part[(size_t)k * n + c];
    acc[c] += (float)s;
}

/* ------------------------------------------------------------------------------------------ */
/* Launch helpers                                                                              */
/* ------------------------------------------------------------------------------------------ */
#define BC_POST(w, what) QD_TRY(qd_cu_post((w)->b, (what), __FILE__, __LINE__))

static unsigned bc_row_blocks(int64_t rows) { return (unsigned)((rows + BC_ROWS_PER_BLOCK - 1) / BC_ROWS_PER_BLOCK); }

/* Row-major C[M,N] = alpha op(A) op(B) + beta C (cblas_sgemm(CblasRowMajor, ...) semantics) via
 * column-major cuBLAS: C^T = op(B)^T op(A)^T. */
static qd_status bc_gemm(qd_bert_cuda *w, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc) {
    QD_CUBLAS_TRY(cublasSgemm(w->c->cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                              &alpha, B, ldb, A, lda, &beta, C, ldc));
    return QD_OK;
}
static qd_status bc_gemm_batched(qd_bert_cuda *w, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                                 int lda, long long sA, const float *B, int ldb, long long sB, float beta, float *C,
                                 int ldc, long long sC, int batch) {
    QD_CUBLAS_TRY(cublasSgemmStridedBatched(w->c->cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                            N, M, K, &alpha, B, ldb, sB, A, lda, sA, &beta, C, ldc, sC, batch));
    return QD_OK;
}
/* y[T,out] = x[T,in] W^T (+ bias, + residual) */
static qd_status bc_linear(qd_bert_cuda *w, const float *x, const float *W, const float *bias, const float *res, int T,
                           int in, int out, float *y) {
    QD_TRY(bc_gemm(w, 0, 1, T, out, in, 1.0f, x, in, W, in, 0.0f, y, out));
    if (bias || res) {
        const int64_t n = (int64_t)T * out;
        bc_k_bias_res<<<qd_cu_blocks(n), QD_CU_THREADS, 0, w->c->stream>>>(y, bias, res, n, out);
        BC_POST(w, "bert bias_res");
    }
    return QD_OK;
}
/* dW[out,in] += g[T,out]^T x[T,in] */
static qd_status bc_wgrad(qd_bert_cuda *w, const float *g, const float *x, int T, int in, int out, float *dW) {
    if (!dW) return QD_OK;
    return bc_gemm(w, 1, 0, out, in, T, 1.0f, g, out, x, in, 1.0f, dW, in);
}
/* acc[c] += sum_t a[t,c] (* m[t,c]) */
static qd_status bc_colsum(qd_bert_cuda *w, const float *a, const float *m, int T, int n, float *acc) {
    if (!acc) return QD_OK;
    const int chunks = (T + BC_COL_CHUNK - 1) / BC_COL_CHUNK;
    dim3 grid((unsigned)((n + 31) / 32), (unsigned)chunks), block(32, BC_COL_TY);
    bc_k_colsum_part<<<grid, block, 0, w->c->stream>>>(a, m, T, n, w->colpart);
    BC_POST(w, "bert colsum_part");
    bc_k_colsum_finish<<<(unsigned)((n + QD_CU_THREADS - 1) / QD_CU_THREADS), QD_CU_THREADS, 0, w->c->stream>>>(
        w->colpart, chunks, n, acc);
    BC_POST(w, "bert colsum_finish");
    return QD_OK;
}
static qd_status bc_quant(qd_bert_cuda *w, qd_bert_site site, float *x, int64_t n) {
    const qd_bert_aq *a = &w->aq[site];
    if (a->bits <= 0) return QD_OK;
    bc_k_fake_quant<<<qd_cu_blocks(n), QD_CU_THREADS, 0, w->c->stream>>>(x, n, a->scale, a->zp,
                                                                        (float)qd_qmax_for_bits(a->bits));
    BC_POST(w, "bert fake_quant");
    return QD_OK;
}
static qd_status bc_split(qd_bert_cuda *w, const float *src, const float *bias, int B, int S, float *dst) {
    bc_k_split_heads<<<qd_cu_blocks((int64_t)B * S * w->H), QD_CU_THREADS, 0, w->c->stream>>>(src, bias, B, S, w->NH,
                                                                                              w->d, dst);
    BC_POST(w, "bert split_heads");
    return QD_OK;
}
static qd_status bc_merge(qd_bert_cuda *w, const float *src, int B, int S, float *dst) {
    bc_k_merge_heads<<<qd_cu_blocks((int64_t)B * S * w->H), QD_CU_THREADS, 0, w->c->stream>>>(src, B, S, w->NH, w->d,
                                                                                              dst);
    BC_POST(w, "bert merge_heads");
    return QD_OK;
}
static qd_status bc_ln_fwd(qd_bert_cuda *w, const float *x, const float *g, const float *b, int T, float *y, float *xhat,
                           float *rstd) {
    bc_k_ln_fwd<<<bc_row_blocks(T), 32 * BC_ROWS_PER_BLOCK, 0, w->c->stream>>>(x, g, b, T, w->H, w->eps, y, xhat, rstd);
    BC_POST(w, "bert layernorm");
    return QD_OK;
}
/* LayerNorm backward: dx, and dg += sum dy*xhat, db += sum dy. */
static qd_status bc_ln_bwd(qd_bert_cuda *w, const float *dy, const float *xhat, const float *rstd, const float *g, int T,
                           float *dx, float *dg, float *db) {
    bc_k_ln_bwd<<<bc_row_blocks(T), 32 * BC_ROWS_PER_BLOCK, 0, w->c->stream>>>(dy, xhat, rstd, g, T, w->H, dx);
    BC_POST(w, "bert layernorm_backward");
    QD_TRY(bc_colsum(w, dy, xhat, T, w->H, dg));
    QD_TRY(bc_colsum(w, dy, NULL, T, w->H, db));
    return QD_OK;
}
static qd_status bc_copy(qd_bert_cuda *w, float *dst, const float *src, size_t n) {
    QD_CUDA_TRY(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, w->c->stream));
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Workspace                                                                                   */
/* ------------------------------------------------------------------------------------------ */
static int bc_is_cuda(const qd_backend *b) { return b && b->ops && b->ops->name && strcmp(b->ops->name, "cuda") == 0; }

static qd_status bc_malloc(qd_bert_cuda *w, void *pp, size_t bytes) {
    if (w->c->capturing) return qd_errorf(QD_ERR_INTERNAL, "BERT CUDA: allocation while a CUDA Graph is being captured");
    void **p = (void **)pp;
    QD_CUDA_TRY(cudaMalloc(p, bytes ? bytes : 16));
    return QD_OK;
}

extern "C" void qd_bert_cuda_destroy(qd_bert_cuda *w) {
    if (!w) return;
    void *p[] = {w->x, w->q, w->k, w->v, w->probs, w->probs_pre, w->ctx, w->ln1_xhat, w->ln1_rstd, w->h1, w->pre,
                 w->inter, w->ln2_xhat, w->ln2_rstd, w->tmp, w->tmp2, w->dz2, w->dint, w->dh1, w->dz1, w->dctx, w->dq,
                 w->dk, w->dv, w->dP, w->colpart};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        if (p[i]) (void)cudaFree(p[i]);
    free(w);
}

static qd_status bc_alloc_all(qd_bert_cuda *w) {
    const size_t T = (size_t)w->max_B * w->max_S, TH = T * w->H, TF = T * w->FF;
    const size_t SS = (size_t)w->max_B * w->NH * w->max_S * w->max_S;
    float **th[] = {&w->x, &w->q, &w->k, &w->v, &w->ctx, &w->ln1_xhat, &w->h1, &w->ln2_xhat, &w->tmp, &w->tmp2,
                    &w->dz2, &w->dh1, &w->dz1, &w->dctx, &w->dq, &w->dk, &w->dv};
    for (size_t i = 0; i < sizeof th / sizeof th[0]; i++) QD_TRY(bc_malloc(w, th[i], TH * sizeof(float)));
    float **tf[] = {&w->pre, &w->inter, &w->dint};
    for (size_t i = 0; i < sizeof tf / sizeof tf[0]; i++) QD_TRY(bc_malloc(w, tf[i], TF * sizeof(float)));
    float **ss[] = {&w->probs, &w->probs_pre, &w->dP};
    for (size_t i = 0; i < sizeof ss / sizeof ss[0]; i++) QD_TRY(bc_malloc(w, ss[i], SS * sizeof(float)));
    QD_TRY(bc_malloc(w, &w->ln1_rstd, T * sizeof(float)));
    QD_TRY(bc_malloc(w, &w->ln2_rstd, T * sizeof(float)));
    const size_t chunks = (T + BC_COL_CHUNK - 1) / BC_COL_CHUNK, widest = (size_t)(w->FF > w->H ? w->FF : w->H);
    QD_TRY(bc_malloc(w, &w->colpart, chunks * widest * sizeof(double)));
    return QD_OK;
}

extern "C" qd_status qd_bert_cuda_create(qd_backend *dev, const qd_bert_config *cfg, int max_B, int max_S,
                                         qd_bert_cuda **out) {
    *out = NULL;
    if (!bc_is_cuda(dev))
        return qd_errorf(QD_ERR_USAGE, "BERT CUDA: the backend is '%s', a CUDA backend is required",
                         dev && dev->ops && dev->ops->name ? dev->ops->name : "(none)");
    if (!cfg || cfg->hidden < 1 || cfg->heads < 1 || cfg->hidden % cfg->heads != 0 || cfg->intermediate < 1 ||
        !(cfg->ln_eps >= 0.0f))
        return qd_errorf(QD_ERR_CONFIG, "BERT CUDA: bad layer shape (hidden %d, heads %d, intermediate %d)",
                         cfg ? cfg->hidden : 0, cfg ? cfg->heads : 0, cfg ? cfg->intermediate : 0);
    if (max_B < 1 || max_S < 1 || (int64_t)max_B * max_S > INT32_MAX / (cfg->hidden > cfg->intermediate ? cfg->hidden : cfg->intermediate))
        return qd_errorf(QD_ERR_CONFIG, "BERT CUDA: bad workspace size %d x %d", max_B, max_S);
    if ((int64_t)max_B * max_S > (int64_t)65535 * BC_COL_CHUNK)
        return qd_errorf(QD_ERR_CONFIG, "BERT CUDA: workspace of %d x %d tokens is too large", max_B, max_S);
    qd_bert_cuda *w = (qd_bert_cuda *)calloc(1, sizeof *w);
    if (!w) return qd_errorf(QD_ERR_INTERNAL, "BERT CUDA: out of host memory");
    w->b = dev;
    w->c = qd_cu_of(dev);
    w->H = cfg->hidden;
    w->NH = cfg->heads;
    w->d = cfg->hidden / cfg->heads;
    w->FF = cfg->intermediate;
    w->eps = cfg->ln_eps;
    w->max_B = max_B;
    w->max_S = max_S;
    qd_status st = bc_alloc_all(w);
    if (st != QD_OK) {
        qd_bert_cuda_destroy(w);
        return st;
    }
    *out = w;
    return QD_OK;
}

extern "C" qd_status qd_bert_cuda_set_act_quant(qd_bert_cuda *w, qd_bert_site site, const qd_bert_aq *aq) {
    if ((int)site <= (int)QD_BERT_SITE_EMB_LN || (int)site >= (int)QD_BERT_SITE_COUNT)
        return qd_errorf(QD_ERR_USAGE, "BERT CUDA: activation site %d is not a site of an encoder layer", (int)site);
    if (!aq || aq->bits == 0) {
        memset(&w->aq[site], 0, sizeof w->aq[site]);
        return QD_OK;
    }
    if (aq->bits < 1 || aq->bits > 16)
        return qd_errorf(QD_ERR_CONFIG, "BERT CUDA: site %d: bits %d outside 1..16", (int)site, aq->bits);
    const float qmax = (float)qd_qmax_for_bits(aq->bits);
    if (!(aq->scale > 0.0f) || !isfinite(aq->scale) || !(aq->zp >= 0.0f && aq->zp <= qmax))
        return qd_errorf(QD_ERR_CONFIG, "BERT CUDA: site %d: scale %g / zero point %g invalid for %d bits", (int)site,
                         (double)aq->scale, (double)aq->zp, aq->bits);
    w->aq[site] = *aq;
    return QD_OK;
}

extern "C" qd_status qd_bert_cuda_sync(qd_bert_cuda *w) {
    QD_CUDA_TRY(cudaStreamSynchronize(w->c->stream));
    QD_CUDA_TRY(cudaGetLastError());
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Forward / backward (transliteration of encoder.c, same order of operations)                */
/* ------------------------------------------------------------------------------------------ */
static qd_status bc_check_layer(const qd_bert_layer *L) {
    const float *need[] = {L->wq, L->wk, L->wv, L->wo, L->ln1_g, L->ln1_b, L->w1, L->w2, L->ln2_g, L->ln2_b};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!need[i]) return qd_errorf(QD_ERR_USAGE, "BERT CUDA: layer tensor %zu is NULL", i);
    return QD_OK;
}

extern "C" qd_status qd_bert_cuda_layer_forward(qd_bert_cuda *w, const qd_bert_layer *L, const float *x,
                                                const int *mask, int B, int S, float *y) {
    if (B < 1 || S < 1 || B > w->max_B || S > w->max_S)
        return qd_errorf(QD_ERR_USAGE, "BERT CUDA: batch %d x seq %d outside the workspace (%d x %d)", B, S, w->max_B,
                         w->max_S);
    QD_TRY(bc_check_layer(L));
    if (y == x) return qd_errorf(QD_ERR_USAGE, "BERT CUDA: forward output aliases its input");
    const int H = w->H, NH = w->NH, d = w->d, FF = w->FF, T = B * S, BH = B * NH;
    const size_t TH = (size_t)T * H, TF = (size_t)T * FF, BSS = (size_t)BH * S * S;
    const long long Sd = (long long)S * d, SS = (long long)S * S;
    w->B = w->S = 0; /* invalid until the forward is complete */
    QD_TRY(bc_copy(w, w->x, x, TH));
    /* Q, K, V: Linear then head split (bias added before the split, as encoder.c) */
    QD_TRY(bc_gemm(w, 0, 1, T, H, H, 1.0f, x, H, L->wq, H, 0.0f, w->tmp, H));
    QD_TRY(bc_split(w, w->tmp, L->bq, B, S, w->q));
    QD_TRY(bc_gemm(w, 0, 1, T, H, H, 1.0f, x, H, L->wk, H, 0.0f, w->tmp, H));
    QD_TRY(bc_split(w, w->tmp, L->bk, B, S, w->k));
    QD_TRY(bc_gemm(w, 0, 1, T, H, H, 1.0f, x, H, L->wv, H, 0.0f, w->tmp, H));
    QD_TRY(bc_split(w, w->tmp, L->bv, B, S, w->v));
    QD_TRY(bc_quant(w, QD_BERT_SITE_Q, w->q, (int64_t)TH));
    QD_TRY(bc_quant(w, QD_BERT_SITE_K, w->k, (int64_t)TH));
    QD_TRY(bc_quant(w, QD_BERT_SITE_V, w->v, (int64_t)TH));
    /* scores = Q K^T / sqrt(d), masked softmax over keys */
    const float alpha = 1.0f / sqrtf((float)d);
    QD_TRY(bc_gemm_batched(w, 0, 1, S, S, d, alpha, w->q, d, Sd, w->k, d, Sd, 0.0f, w->probs, S, SS, BH));
    bc_k_softmax_fwd<<<bc_row_blocks((int64_t)BH * S), 32 * BC_ROWS_PER_BLOCK, 0, w->c->stream>>>(w->probs, mask, BH * S,
                                                                                                   S, NH);
    BC_POST(w, "bert softmax");
    /* the softmax backward needs the probabilities before their quantizer */
    w->probs_quant = w->aq[QD_BERT_SITE_PROBS].bits > 0;
    if (w->probs_quant) {
        QD_TRY(bc_copy(w, w->probs_pre, w->probs, BSS));
        QD_TRY(bc_quant(w, QD_BERT_SITE_PROBS, w->probs, (int64_t)BSS));
    }
    /* context = P V, heads merged */
    QD_TRY(bc_gemm_batched(w, 0, 0, S, d, S, 1.0f, w->probs, S, SS, w->v, d, Sd, 0.0f, w->tmp, d, Sd, BH));
    QD_TRY(bc_merge(w, w->tmp, B, S, w->ctx));
    QD_TRY(bc_quant(w, QD_BERT_SITE_CTX, w->ctx, (int64_t)TH));
    /* attention output dense + residual + LayerNorm */
    QD_TRY(bc_linear(w, w->ctx, L->wo, L->bo, x, T, H, H, w->tmp));
    QD_TRY(bc_ln_fwd(w, w->tmp, L->ln1_g, L->ln1_b, T, w->h1, w->ln1_xhat, w->ln1_rstd));
    QD_TRY(bc_quant(w, QD_BERT_SITE_ATTN_LN, w->h1, (int64_t)TH));
    /* FFN */
    QD_TRY(bc_linear(w, w->h1, L->w1, L->b1, NULL, T, H, FF, w->pre));
    bc_k_gelu<<<qd_cu_blocks((int64_t)TF), QD_CU_THREADS, 0, w->c->stream>>>(w->pre, w->inter, (int64_t)TF);
    BC_POST(w, "bert gelu");
    QD_TRY(bc_quant(w, QD_BERT_SITE_GELU, w->inter, (int64_t)TF));
    QD_TRY(bc_linear(w, w->inter, L->w2, L->b2, w->h1, T, FF, H, w->tmp2));
    QD_TRY(bc_ln_fwd(w, w->tmp2, L->ln2_g, L->ln2_b, T, y, w->ln2_xhat, w->ln2_rstd));
    QD_TRY(bc_quant(w, QD_BERT_SITE_OUT_LN, y, (int64_t)TH));
    w->B = B;
    w->S = S;
    return QD_OK;
}

extern "C" qd_status qd_bert_cuda_layer_backward(qd_bert_cuda *w, const qd_bert_layer *L, const float *dy, float *dx,
                                                 qd_bert_layer_grads *g) {
    if (w->B < 1) return qd_errorf(QD_ERR_USAGE, "BERT CUDA: backward without a completed forward");
    QD_TRY(bc_check_layer(L));
    qd_bert_layer_grads none;
    memset(&none, 0, sizeof none);
    if (!g) g = &none;
    const int B = w->B, S = w->S, H = w->H, NH = w->NH, d = w->d, FF = w->FF, T = B * S, BH = B * NH;
    const size_t TH = (size_t)T * H, TF = (size_t)T * FF;
    const long long Sd = (long long)S * d, SS = (long long)S * S;
    /* output LayerNorm and FFN (quantizers: straight-through identity) */
    QD_TRY(bc_ln_bwd(w, dy, w->ln2_xhat, w->ln2_rstd, L->ln2_g, T, w->dz2, g->ln2_g, g->ln2_b));
    QD_TRY(bc_wgrad(w, w->dz2, w->inter, T, FF, H, g->w2));
    QD_TRY(bc_colsum(w, w->dz2, NULL, T, H, g->b2));
    QD_TRY(bc_gemm(w, 0, 0, T, FF, H, 1.0f, w->dz2, H, L->w2, FF, 0.0f, w->dint, FF));
    bc_k_gelu_bwd<<<qd_cu_blocks((int64_t)TF), QD_CU_THREADS, 0, w->c->stream>>>(w->dint, w->pre, (int64_t)TF);
    BC_POST(w, "bert gelu_backward");
    QD_TRY(bc_wgrad(w, w->dint, w->h1, T, H, FF, g->w1));
    QD_TRY(bc_colsum(w, w->dint, NULL, T, FF, g->b1));
    QD_TRY(bc_copy(w, w->dh1, w->dz2, TH)); /* residual */
    QD_TRY(bc_gemm(w, 0, 0, T, H, FF, 1.0f, w->dint, FF, L->w1, H, 1.0f, w->dh1, H));
    /* attention output LayerNorm and dense */
    QD_TRY(bc_ln_bwd(w, w->dh1, w->ln1_xhat, w->ln1_rstd, L->ln1_g, T, w->dz1, g->ln1_g, g->ln1_b));
    QD_TRY(bc_wgrad(w, w->dz1, w->ctx, T, H, H, g->wo));
    QD_TRY(bc_colsum(w, w->dz1, NULL, T, H, g->bo));
    QD_TRY(bc_gemm(w, 0, 0, T, H, H, 1.0f, w->dz1, H, L->wo, H, 0.0f, w->tmp, H));
    QD_TRY(bc_split(w, w->tmp, NULL, B, S, w->dctx));
    /* attention core over all (batch, head) blocks; dq/dk/dv in head layout */
    const float alpha = 1.0f / sqrtf((float)d);
    const float *Pp = w->probs_quant ? w->probs_pre : w->probs;
    QD_TRY(bc_gemm_batched(w, 0, 1, S, S, d, 1.0f, w->dctx, d, Sd, w->v, d, Sd, 0.0f, w->dP, S, SS, BH));
    QD_TRY(bc_gemm_batched(w, 1, 0, S, d, S, 1.0f, w->probs, S, SS, w->dctx, d, Sd, 0.0f, w->dv, d, Sd, BH));
    bc_k_softmax_bwd<<<bc_row_blocks((int64_t)BH * S), 32 * BC_ROWS_PER_BLOCK, 0, w->c->stream>>>(w->dP, Pp, BH * S, S);
    BC_POST(w, "bert softmax_backward");
    QD_TRY(bc_gemm_batched(w, 0, 0, S, d, S, alpha, w->dP, S, SS, w->k, d, Sd, 0.0f, w->dq, d, Sd, BH));
    QD_TRY(bc_gemm_batched(w, 1, 0, S, d, S, alpha, w->dP, S, SS, w->q, d, Sd, 0.0f, w->dk, d, Sd, BH));
    /* back to [T,H] (reuse dctx/dz2/dh1 as merged buffers) */
    float *mq = w->dctx, *mk = w->dz2, *mv = w->dh1;
    QD_TRY(bc_merge(w, w->dq, B, S, mq));
    QD_TRY(bc_merge(w, w->dk, B, S, mk));
    QD_TRY(bc_merge(w, w->dv, B, S, mv));
    QD_TRY(bc_wgrad(w, mq, w->x, T, H, H, g->wq));
    QD_TRY(bc_colsum(w, mq, NULL, T, H, g->bq));
    QD_TRY(bc_wgrad(w, mk, w->x, T, H, H, g->wk));
    QD_TRY(bc_colsum(w, mk, NULL, T, H, g->bk));
    QD_TRY(bc_wgrad(w, mv, w->x, T, H, H, g->wv));
    QD_TRY(bc_colsum(w, mv, NULL, T, H, g->bv));
    QD_TRY(bc_copy(w, dx, w->dz1, TH)); /* residual */
    QD_TRY(bc_gemm(w, 0, 0, T, H, H, 1.0f, mq, H, L->wq, H, 1.0f, dx, H));
    QD_TRY(bc_gemm(w, 0, 0, T, H, H, 1.0f, mk, H, L->wk, H, 1.0f, dx, H));
    QD_TRY(bc_gemm(w, 0, 0, T, H, H, 1.0f, mv, H, L->wv, H, 1.0f, dx, H));
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Host <-> device helpers for layers and gradients                                           */
/* ------------------------------------------------------------------------------------------ */
static void bc_sizes(const qd_bert_config *cfg, size_t sz[BC_NT]) {
    const size_t H = (size_t)cfg->hidden, FF = (size_t)cfg->intermediate;
    const size_t s[BC_NT] = {H * H, H, H * H, H, H * H, H, H * H, H, H, H, FF * H, FF, H * FF, H, H, H};
    memcpy(sz, s, sizeof s);
}
static void bc_layer_ptrs(qd_bert_layer *L, float **p[BC_NT]) {
    float **q[BC_NT] = {&L->wq, &L->bq, &L->wk, &L->bk, &L->wv, &L->bv, &L->wo, &L->bo, &L->ln1_g, &L->ln1_b,
                        &L->w1, &L->b1, &L->w2, &L->b2, &L->ln2_g, &L->ln2_b};
    memcpy(p, q, sizeof q);
}
static void bc_grad_ptrs(qd_bert_layer_grads *g, float **p[BC_NT]) {
    float **q[BC_NT] = {&g->wq, &g->bq, &g->wk, &g->bk, &g->wv, &g->bv, &g->wo, &g->bo, &g->ln1_g, &g->ln1_b,
                        &g->w1, &g->b1, &g->w2, &g->b2, &g->ln2_g, &g->ln2_b};
    memcpy(p, q, sizeof q);
}
static void bc_free_ptrs(float **p[BC_NT]) {
    for (int i = 0; i < BC_NT; i++) {
        if (*p[i]) (void)cudaFree(*p[i]);
        *p[i] = NULL;
    }
}

static qd_status bc_upload_layer(qd_cu *c, const qd_bert_config *cfg, const qd_bert_layer *host, qd_bert_layer *dl) {
    size_t sz[BC_NT];
    bc_sizes(cfg, sz);
    float **dp[BC_NT], **hp[BC_NT];
    bc_layer_ptrs(dl, dp);
    bc_layer_ptrs((qd_bert_layer *)host, hp);
    for (int i = 0; i < BC_NT; i++) {
        if (!*hp[i]) continue; /* absent (e.g. no bias): stays NULL */
        QD_CUDA_TRY(cudaMalloc((void **)dp[i], sz[i] * sizeof(float)));
        QD_CUDA_TRY(cudaMemcpyAsync(*dp[i], *hp[i], sz[i] * sizeof(float), cudaMemcpyHostToDevice, c->stream));
    }
    QD_CUDA_TRY(cudaStreamSynchronize(c->stream));
    return QD_OK;
}

extern "C" qd_status qd_bert_cuda_layer_upload(qd_backend *dev, const qd_bert_config *cfg, const qd_bert_layer *host,
                                               qd_bert_layer *dev_layer) {
    memset(dev_layer, 0, sizeof *dev_layer);
    if (!bc_is_cuda(dev)) return qd_errorf(QD_ERR_USAGE, "BERT CUDA: layer upload needs a CUDA backend");
    if (qd_cu_of(dev)->capturing) return qd_errorf(QD_ERR_INTERNAL, "BERT CUDA: layer upload while capturing");
    qd_status st = bc_upload_layer(qd_cu_of(dev), cfg, host, dev_layer);
    if (st != QD_OK) qd_bert_cuda_layer_free(dev, dev_layer);
    return st;
}

extern "C" void qd_bert_cuda_layer_free(qd_backend *dev, qd_bert_layer *dev_layer) {
    (void)dev;
    if (!dev_layer) return;
    float **p[BC_NT];
    bc_layer_ptrs(dev_layer, p);
    bc_free_ptrs(p);
}

extern "C" qd_status qd_bert_cuda_grads_zero(qd_backend *dev, const qd_bert_config *cfg, qd_bert_layer_grads *g) {
    if (!bc_is_cuda(dev)) return qd_errorf(QD_ERR_USAGE, "BERT CUDA: gradients need a CUDA backend");
    size_t sz[BC_NT];
    bc_sizes(cfg, sz);
    float **p[BC_NT];
    bc_grad_ptrs(g, p);
    for (int i = 0; i < BC_NT; i++)
        if (*p[i]) QD_CUDA_TRY(cudaMemsetAsync(*p[i], 0, sz[i] * sizeof(float), qd_cu_of(dev)->stream));
    return QD_OK;
}

static qd_status bc_grads_alloc(qd_backend *dev, const qd_bert_config *cfg, qd_bert_layer_grads *g) {
    size_t sz[BC_NT];
    bc_sizes(cfg, sz);
    float **p[BC_NT];
    bc_grad_ptrs(g, p);
    for (int i = 0; i < BC_NT; i++) QD_CUDA_TRY(cudaMalloc((void **)p[i], sz[i] * sizeof(float)));
    QD_TRY(qd_bert_cuda_grads_zero(dev, cfg, g));
    QD_CUDA_TRY(cudaStreamSynchronize(qd_cu_of(dev)->stream));
    return QD_OK;
}

extern "C" qd_status qd_bert_cuda_grads_alloc(qd_backend *dev, const qd_bert_config *cfg, qd_bert_layer_grads *g) {
    memset(g, 0, sizeof *g);
    if (!bc_is_cuda(dev)) return qd_errorf(QD_ERR_USAGE, "BERT CUDA: gradients need a CUDA backend");
    if (qd_cu_of(dev)->capturing) return qd_errorf(QD_ERR_INTERNAL, "BERT CUDA: gradient allocation while capturing");
    qd_status st = bc_grads_alloc(dev, cfg, g);
    if (st != QD_OK) qd_bert_cuda_grads_free(dev, g);
    return st;
}

extern "C" qd_status qd_bert_cuda_grads_download(qd_backend *dev, const qd_bert_config *cfg,
                                                 const qd_bert_layer_grads *g, qd_bert_layer_grads *host) {
    if (!bc_is_cuda(dev)) return qd_errorf(QD_ERR_USAGE, "BERT CUDA: gradients need a CUDA backend");
    size_t sz[BC_NT];
    bc_sizes(cfg, sz);
    float **dp[BC_NT], **hp[BC_NT];
    bc_grad_ptrs((qd_bert_layer_grads *)g, dp);
    bc_grad_ptrs(host, hp);
    qd_cu *c = qd_cu_of(dev);
    for (int i = 0; i < BC_NT; i++)
        if (*hp[i] && *dp[i])
            QD_CUDA_TRY(cudaMemcpyAsync(*hp[i], *dp[i], sz[i] * sizeof(float), cudaMemcpyDeviceToHost, c->stream));
    QD_CUDA_TRY(cudaStreamSynchronize(c->stream));
    return QD_OK;
}

extern "C" void qd_bert_cuda_grads_free(qd_backend *dev, qd_bert_layer_grads *g) {
    (void)dev;
    if (!g) return;
    float **p[BC_NT];
    bc_grad_ptrs(g, p);
    bc_free_ptrs(p);
}
