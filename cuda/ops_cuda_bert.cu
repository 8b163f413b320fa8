/* cuda/ops_cuda_bert.cu: the transformer ops of the graph IR on the device: LayerNormalization,
 * Gelu and Softmax with an additive mask input (graph.h), forward and backward; dispatched from
 * ops_cuda.cu. Backward ops accumulate (+=) into din like every other op.
 *
 * LayerNorm and the masked softmax are warp-per-row kernels (8 rows per block): statistics and
 * sums are accumulated in double per lane and reduced by a fixed xor butterfly, so every lane
 * holds the same bits and runs are reproducible; the element expressions are the ones of
 * src/core/nnmath.h that the CPU backend and the C BERT encoder use (-fmad=false). Against the CPU
 * the only differences are the order of the double reductions and CUDA's erff/expf (<= 2 ulp
 * from glibc); tests/cuda/test_cuda_ops.c holds them to the reduction NMSE budget.
 * LayerNorm backward recomputes the row statistics from x (Scale and B are frozen constants:
 * their gradients are never computed).
 */
#include <math.h>
#include <string.h>

#include "qd_cuda.cuh"
#include "core/nnmath.h"

#define QB_ROWS_PER_BLOCK 8 /* warp-per-row kernels: 8 warps = 256 threads */

__device__ __forceinline__ double qb_warp_sum(double v) {
    /* xor butterfly: lane l adds s_l + s_{l^m} and its partner s_{l^m} + s_l (equal bits), so
     * all lanes hold the same sum and the order is fixed */
    for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
    return v;
}
__device__ __forceinline__ float qb_warp_max(float v) {
    for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, m));
    return v;
}

static unsigned qb_row_blocks(int64_t rows) {
    int64_t g = (rows + QB_ROWS_PER_BLOCK - 1) / QB_ROWS_PER_BLOCK;
    return (unsigned)(g < 1 ? 1 : g);
}

/* ------------------------------------------------------------------------------------------ */
/* LayerNormalization over rows of n                                                           */
/* ------------------------------------------------------------------------------------------ */
__device__ __forceinline__ void qb_ln_stats(const float *__restrict__ r, int64_t n, float eps, int lane, double *mean,
                                            float *rs) {
    double s = 0.0;
    for (int64_t i = lane; i < n; i += 32) s += r[i];
    const double m = qb_warp_sum(s) / (double)n;
    double v = 0.0;
    for (int64_t i = lane; i < n; i += 32) {
        const double dl = r[i] - m;
        v += dl * dl;
    }
    v = qb_warp_sum(v) / (double)n;
    *mean = m;
    *rs = qd_ln_rstd(v, eps);
}

__global__ void qb_k_ln_fwd(const float *__restrict__ x, const float *__restrict__ g, const float *__restrict__ bb,
                            int64_t rows, int64_t n, float eps, float *__restrict__ y) {
    const int64_t row = (int64_t)blockIdx.x * QB_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float *r = x + row * n;
    double mean;
    float rs;
    qb_ln_stats(r, n, eps, lane, &mean, &rs);
    for (int64_t i = lane; i < n; i += 32) y[row * n + i] = qd_ln_affine(qd_ln_xhat(r[i], mean, rs), g[i], bb ? bb[i] : 0.0f);
}

/* dx += rstd * (dy*g - mean(dy*g) - xhat * mean(dy*g*xhat)), xhat recomputed from x */
__global__ void qb_k_ln_bwd(const float *__restrict__ x, const float *__restrict__ g, const float *__restrict__ dy,
                            int64_t rows, int64_t n, float eps, float *__restrict__ dx) {
    const int64_t row = (int64_t)blockIdx.x * QB_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float *r = x + row * n, *d = dy + row * n;
    double mean;
    float rs;
    qb_ln_stats(r, n, eps, lane, &mean, &rs);
    double m1 = 0.0, m2 = 0.0;
    for (int64_t i = lane; i < n; i += 32) {
        const double dh = qd_ln_dxhat(d[i], g[i]);
        m1 += dh;
        m2 += dh * qd_ln_xhat(r[i], mean, rs);
    }
    m1 = qb_warp_sum(m1) / (double)n;
    m2 = qb_warp_sum(m2) / (double)n;
    for (int64_t i = lane; i < n; i += 32)
        dx[row * n + i] += qd_ln_dx(rs, d[i], g[i], qd_ln_xhat(r[i], mean, rs), m1, m2);
}

/* ------------------------------------------------------------------------------------------ */
/* Softmax(x + mask) along one axis; row r = (outer index, inner index), elements at stride     */
/* inner; the mask broadcasts (stride 0 on its size-1 dims).                                   */
/* ------------------------------------------------------------------------------------------ */
typedef struct qb_sm_t {
    int nd, ax;
    int64_t rows, len, inner;
    int64_t dims[QD_MAX_DIMS], mst[QD_MAX_DIMS];
} qb_sm_t;

__device__ __forceinline__ int64_t qb_mask_off(const qb_sm_t &p, int64_t r) {
    int64_t o = r / p.inner, i = r - o * p.inner, off = 0;
    for (int d = p.nd - 1; d > p.ax; d--) {
        off += (i % p.dims[d]) * p.mst[d];
        i /= p.dims[d];
    }
    for (int d = p.ax - 1; d >= 0; d--) {
        off += (o % p.dims[d]) * p.mst[d];
        o /= p.dims[d];
    }
    return off;
}

__global__ void qb_k_softmax_mask_fwd(qb_sm_t p, const float *__restrict__ x, const float *__restrict__ mask,
                                      float *__restrict__ y) {
    const int64_t row = (int64_t)blockIdx.x * QB_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= p.rows) return;
    const int64_t base = (row / p.inner) * p.len * p.inner + row % p.inner, st = p.inner;
    const float *m = mask + qb_mask_off(p, row);
    const int64_t ms = p.mst[p.ax];
    float mx = -INFINITY;
    for (int64_t j = lane; j < p.len; j += 32) {
        const float z = x[base + j * st] + m[j * ms];
        if (z > mx) mx = z;
    }
    mx = qb_warp_max(mx);
    double sum = 0.0;
    for (int64_t j = lane; j < p.len; j += 32) {
        const float e = qd_softmax_exp(x[base + j * st] + m[j * ms], mx);
        y[base + j * st] = e;
        sum += e;
    }
    const float inv = qd_softmax_inv(qb_warp_sum(sum));
    for (int64_t j = lane; j < p.len; j += 32) y[base + j * st] *= inv;
}

__global__ void qb_k_softmax_mask_bwd(qb_sm_t p, const float *__restrict__ y, const float *__restrict__ dy,
                                      float *__restrict__ dx) {
    const int64_t row = (int64_t)blockIdx.x * QB_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= p.rows) return;
    const int64_t base = (row / p.inner) * p.len * p.inner + row % p.inner, st = p.inner;
    double s = 0.0;
    for (int64_t j = lane; j < p.len; j += 32) s += (double)dy[base + j * st] * y[base + j * st];
    s = qb_warp_sum(s);
    for (int64_t j = lane; j < p.len; j += 32) {
        const int64_t k = base + j * st;
        dx[k] += qd_softmax_dx(y[k], dy[k], s);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Gelu (exact erf)                                                                            */
/* ------------------------------------------------------------------------------------------ */
__global__ void qb_k_gelu(int64_t n, const float *__restrict__ x, float *__restrict__ y) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = qd_gelu(x[i]);
}
__global__ void qb_k_gelu_bwd(int64_t n, const float *__restrict__ x, const float *__restrict__ dy,
                              float *__restrict__ dx) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dx[i] += dy[i] * qd_gelu_grad(x[i]);
}

/* ------------------------------------------------------------------------------------------ */
/* Host side                                                                                   */
/* ------------------------------------------------------------------------------------------ */
static const char *qb_name(const qd_node *n) { return n->name ? n->name : "?"; }

static qd_status qb_ln_geom(const qd_node *n, const qd_shape *is, const float *const *in, int64_t *rows, int64_t *len) {
    int ax = n->a.axis;
    if (ax < 0) ax += is[0].ndim;
    if (ax < 0 || ax >= is[0].ndim)
        return qd_errorf(QD_ERR_DATA, "cuda: LayerNormalization %s: axis %d out of range", qb_name(n), n->a.axis);
    if (n->ninputs < 2 || !in[0] || !in[1])
        return qd_errorf(QD_ERR_DATA, "cuda: LayerNormalization %s: needs X and Scale", qb_name(n));
    int64_t l = 1;
    for (int d = ax; d < is[0].ndim; d++) l *= is[0].dims[d];
    for (int k = 1; k < 3 && k < n->ninputs; k++)
        if (in[k] && qd_cu_numel(&is[k]) != l)
            return qd_errorf(QD_ERR_DATA, "cuda: LayerNormalization %s: input %d has %lld elements, the normalised dims %lld",
                             qb_name(n), k, (long long)qd_cu_numel(&is[k]), (long long)l);
    *len = l;
    *rows = l ? qd_cu_numel(&is[0]) / l : 0;
    return QD_OK;
}

static qd_status qb_sm_geom(const qd_node *n, const qd_shape *is, qb_sm_t *p) {
    memset(p, 0, sizeof *p);
    const qd_shape *x = &is[0], *m = &is[1];
    int ax = n->a.axis;
    if (ax < 0) ax += x->ndim;
    if (ax < 0 || ax >= x->ndim) return qd_errorf(QD_ERR_DATA, "cuda: Softmax %s: axis %d", qb_name(n), n->a.axis);
    if (m->ndim > x->ndim)
        return qd_errorf(QD_ERR_DATA, "cuda: Softmax %s: mask rank %d vs scores rank %d", qb_name(n), m->ndim, x->ndim);
    int64_t st = 1;
    p->nd = x->ndim;
    p->ax = ax;
    p->len = x->dims[ax];
    p->inner = 1;
    int64_t outer = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        const int md = d - (x->ndim - m->ndim); /* right-aligned (numpy) */
        const int64_t dim = md >= 0 ? m->dims[md] : 1;
        if (dim != 1 && dim != x->dims[d])
            return qd_errorf(QD_ERR_DATA, "cuda: Softmax %s: mask dim %d (%lld) does not broadcast to %lld", qb_name(n), md,
                             (long long)dim, (long long)x->dims[d]);
        p->dims[d] = x->dims[d];
        p->mst[d] = dim == 1 ? 0 : st;
        st *= dim;
        if (d < ax) outer *= x->dims[d];
        if (d > ax) p->inner *= x->dims[d];
    }
    p->rows = outer * p->inner;
    return QD_OK;
}

qd_status qd_cu_transformer_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                                    const qd_shape *os, float *out) {
    cudaStream_t st = qd_cu_of(b)->stream;
    switch (n->op) {
    case QD_OP_LAYERNORM: {
        int64_t rows, len;
        QD_TRY(qb_ln_geom(n, is, in, &rows, &len));
        const float *bias = n->ninputs > 2 ? in[2] : NULL;
        if (rows && len)
            qb_k_ln_fwd<<<qb_row_blocks(rows), 32 * QB_ROWS_PER_BLOCK, 0, st>>>(in[0], in[1], bias, rows, len,
                                                                              n->a.epsilon, out);
        break;
    }
    case QD_OP_GELU: {
        if (!in[0]) return qd_errorf(QD_ERR_INTERNAL, "cuda: Gelu %s: input is NULL", qb_name(n));
        int64_t total = qd_cu_numel(os);
        if (total) qb_k_gelu<<<qd_cu_blocks(total), QD_CU_THREADS, 0, st>>>(total, in[0], out);
        break;
    }
    case QD_OP_SOFTMAX: {
        if (n->ninputs < 2 || !in[0] || !in[1])
            return qd_errorf(QD_ERR_INTERNAL, "cuda: Softmax %s: scores or mask is NULL", qb_name(n));
        qb_sm_t p;
        QD_TRY(qb_sm_geom(n, is, &p));
        if (p.rows && p.len)
            qb_k_softmax_mask_fwd<<<qb_row_blocks(p.rows), 32 * QB_ROWS_PER_BLOCK, 0, st>>>(p, in[0], in[1], out);
        break;
    }
    default:
        return qd_errorf(QD_ERR_INTERNAL, "cuda: node %s: not a transformer op", qb_name(n));
    }
    return qd_cu_post(b, n->name ? n->name : "transformer_forward", __FILE__, __LINE__);
}

qd_status qd_cu_transformer_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                                     const qd_shape *os, const float *out, const float *dout, float *const *din) {
    cudaStream_t st = qd_cu_of(b)->stream;
    if (!din[0]) return QD_OK; /* LayerNorm Scale/B and the softmax mask get no gradient */
    switch (n->op) {
    case QD_OP_LAYERNORM: {
        int64_t rows, len;
        QD_TRY(qb_ln_geom(n, is, in, &rows, &len));
        if (rows && len)
            qb_k_ln_bwd<<<qb_row_blocks(rows), 32 * QB_ROWS_PER_BLOCK, 0, st>>>(in[0], in[1], dout, rows, len,
                                                                              n->a.epsilon, din[0]);
        break;
    }
    case QD_OP_GELU: {
        if (!in[0]) return qd_errorf(QD_ERR_INTERNAL, "cuda: Gelu %s: input is NULL", qb_name(n));
        int64_t total = qd_cu_numel(os);
        if (total) qb_k_gelu_bwd<<<qd_cu_blocks(total), QD_CU_THREADS, 0, st>>>(total, in[0], dout, din[0]);
        break;
    }
    case QD_OP_SOFTMAX: {
        if (!out) return qd_errorf(QD_ERR_INTERNAL, "cuda: Softmax %s backward needs the forward output", qb_name(n));
        qb_sm_t p;
        QD_TRY(qb_sm_geom(n, is, &p));
        if (p.rows && p.len)
            qb_k_softmax_mask_bwd<<<qb_row_blocks(p.rows), 32 * QB_ROWS_PER_BLOCK, 0, st>>>(p, out, dout, din[0]);
        break;
    }
    default:
        return qd_errorf(QD_ERR_INTERNAL, "cuda: node %s: not a transformer op", qb_name(n));
    }
    return qd_cu_post(b, n->name ? n->name : "transformer_backward", __FILE__, __LINE__);
}
