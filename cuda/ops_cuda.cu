/* cuda/ops_cuda.cu: every qd_op's forward and backward on the device (except Conv/Gemm/MatMul,
 * see conv_cuda.cu). Semantics follow the CPU reference (src/cpu/) and ONNX; backward ops
 * accumulate (+=) into din. Backward kernels are written as gathers (one thread per din
 * element, summing its contributions in a fixed order) instead of atomics, so results are
 * deterministic.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "qd_cuda.cuh"
#include "core/qmath.h"
#include "graph/resize_math.h"

#define ND QD_MAX_DIMS

/* Shapes and strides passed by value to kernels. */
typedef struct nd_t {
    int nd;
    int64_t dims[ND];
} nd_t;

typedef struct bc_t {
    int nd;                 /* rank of the (output / full) index space */
    int64_t dims[ND];       /* full dims */
    int64_t fstr[ND];       /* contiguous strides of the full space */
    int64_t sa[ND], sb[ND]; /* strides of operands a / b in the full space (0 = broadcast) */
} bc_t;

static void contiguous_strides(int nd, const int64_t *dims, int64_t *str) {
    int64_t s = 1;
    for (int i = nd - 1; i >= 0; i--) {
        str[i] = s;
        s *= dims[i];
    }
}

/* Strides of x (right-aligned, numpy) inside the full index space `full`; 0 where broadcast. */
static qd_status bcast_strides(const qd_shape *x, const qd_shape *full, int64_t *str, const char *node) {
    int64_t xs[ND];
    contiguous_strides(x->ndim, x->dims, xs);
    for (int i = 0; i < full->ndim; i++) {
        int xi = i - (full->ndim - x->ndim);
        if (xi < 0) {
            str[i] = 0;
        } else if (x->dims[xi] == full->dims[i]) {
            str[i] = x->dims[xi] == 1 ? 0 : xs[xi];
        } else if (x->dims[xi] == 1) {
            str[i] = 0;
        } else {
            return qd_errorf(QD_ERR_DATA, "cuda: %s: dimension %d (%lld) does not broadcast to %lld", node, xi,
                             (long long)x->dims[xi], (long long)full->dims[i]);
        }
    }
    return QD_OK;
}

static const char *nname(const qd_node *n) { return n->name ? n->name : "?"; }

/* Op names from the header-only table: keeps libqdrop_cuda free of references into the graph code. */
static const char *cu_op_name(qd_op op) {
    static const char *const names[QD_OP_COUNT] = {QD_OP_TABLE(QD_OP_TABLE_NAME_)};
    return ((int)op >= 0 && (int)op < QD_OP_COUNT) ? names[op] : "?";
}

/* ------------------------------------------------------------------------------------------ */
/* Binary elementwise with broadcasting                                                          */
/* ------------------------------------------------------------------------------------------ */
enum { BIN_ADD = 0, BIN_SUB, BIN_MUL, BIN_DIV };

__device__ __forceinline__ float bin_apply(int op, float a, float b) {
    switch (op) {
    case BIN_ADD: return a + b;
    case BIN_SUB: return a - b;
    case BIN_MUL: return a * b;
    default: return a / b;
    }
}

__global__ void qd_k_binary(bc_t bc, int op, int64_t total, const float *__restrict__ A, const float *__restrict__ B,
                            float *__restrict__ Y) {
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e, oa = 0, ob = 0;
        for (int d = 0; d < bc.nd; d++) {
            int64_t q = r / bc.fstr[d];
            r -= q * bc.fstr[d];
            oa += q * bc.sa[d];
            ob += q * bc.sb[d];
        }
        Y[e] = bin_apply(op, A[oa], B[ob]);
    }
}

__global__ void qd_k_binary_same(int op, int64_t total, const float *__restrict__ A, const float *__restrict__ B,
                                 float *__restrict__ Y) {
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x)
        Y[e] = bin_apply(op, A[e], B[e]);
}

/* Gradient of operand `which` (0 = a, 1 = b) of a broadcast binary op: one thread per element
 * of that operand sums dY over every full-space position mapping onto it.
 * sx = strides of the operand in the full space; its own (compact) shape is xdims. */
typedef struct red_t {
    int nd;
    int64_t xdims[ND];  /* operand dims aligned to the full rank (1 where broadcast) */
    int64_t xstr[ND];   /* contiguous strides of the aligned operand */
    int64_t rdims[ND];  /* full dims of the reduced (broadcast) axes, 1 elsewhere */
    int64_t rstr[ND];   /* contiguous strides over the reduced axes */
    int64_t rcount;     /* product of rdims */
} red_t;

static void make_red(const bc_t *bc, const int64_t *sx, red_t *r) {
    memset(r, 0, sizeof *r);
    r->nd = bc->nd;
    for (int d = 0; d < bc->nd; d++) {
        int bcast = (sx[d] == 0 && bc->dims[d] != 1);
        r->xdims[d] = bcast ? 1 : bc->dims[d];
        r->rdims[d] = bcast ? bc->dims[d] : 1;
    }
    contiguous_strides(bc->nd, r->xdims, r->xstr);
    contiguous_strides(bc->nd, r->rdims, r->rstr);
    r->rcount = 1;
    for (int d = 0; d < bc->nd; d++) r->rcount *= r->rdims[d];
}

__global__ void qd_k_binary_grad(bc_t bc, red_t rd, int op, int which, int64_t nx, const float *__restrict__ A,
                                 const float *__restrict__ B, const float *__restrict__ G, float *__restrict__ dX) {
    for (int64_t ix = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; ix < nx; ix += (int64_t)gridDim.x * blockDim.x) {
        int64_t base = 0, rem = ix;
        for (int d = 0; d < rd.nd; d++) {
            int64_t q = rem / rd.xstr[d];
            rem -= q * rd.xstr[d];
            base += q * bc.fstr[d];
        }
        float acc = 0.0f;
        for (int64_t k = 0; k < rd.rcount; k++) {
            int64_t off = base, rr = k;
            for (int d = 0; d < rd.nd; d++) {
                int64_t q = rr / rd.rstr[d];
                rr -= q * rd.rstr[d];
                off += q * bc.fstr[d];
            }
            float g = G[off];
            int64_t oa = 0, ob = 0, t = off;
            if (op == BIN_MUL || op == BIN_DIV) {
                for (int d = 0; d < bc.nd; d++) {
                    int64_t q = t / bc.fstr[d];
                    t -= q * bc.fstr[d];
                    oa += q * bc.sa[d];
                    ob += q * bc.sb[d];
                }
            }
            float v;
            switch (op) {
            case BIN_ADD: v = g; break;
            case BIN_SUB: v = which ? -g : g; break;
            case BIN_MUL: v = which ? g * A[oa] : g * B[ob]; break;
            default: v = which ? -g * A[oa] / (B[ob] * B[ob]) : g / B[ob]; break;
            }
            acc += v;
        }
        dX[ix] += acc;
    }
}

__global__ void qd_k_binary_grad_same(int op, int which, int64_t n, const float *__restrict__ A,
                                      const float *__restrict__ B, const float *__restrict__ G, float *__restrict__ dX) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float g = G[i], v;
        switch (op) {
        case BIN_ADD: v = g; break;
        case BIN_SUB: v = which ? -g : g; break;
        case BIN_MUL: v = which ? g * A[i] : g * B[i]; break;
        default: v = which ? -g * A[i] / (B[i] * B[i]) : g / B[i]; break;
        }
        dX[i] += v;
    }
}

static int bin_op(qd_op op) {
    switch (op) {
    case QD_OP_ADD: return BIN_ADD;
    case QD_OP_SUB: return BIN_SUB;
    case QD_OP_MUL: return BIN_MUL;
    default: return BIN_DIV;
    }
}

static qd_status make_bc(const qd_node *n, const qd_shape *is, const qd_shape *os, bc_t *bc) {
    memset(bc, 0, sizeof *bc);
    bc->nd = os->ndim;
    for (int i = 0; i < os->ndim; i++) bc->dims[i] = os->dims[i];
    contiguous_strides(os->ndim, os->dims, bc->fstr);
    QD_TRY(bcast_strides(&is[0], os, bc->sa, nname(n)));
    QD_TRY(bcast_strides(&is[1], os, bc->sb, nname(n)));
    return QD_OK;
}

static qd_status binary_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                                const qd_shape *os, float *out) {
    cudaStream_t st = qd_cu_of(b)->stream;
    int64_t total = qd_cu_numel(os);
    if (total == 0) return QD_OK;
    int op = bin_op(n->op);
    if (qd_cu_numel(&is[0]) == total && qd_cu_numel(&is[1]) == total) {
        qd_k_binary_same<<<qd_cu_blocks(total), QD_CU_THREADS, 0, st>>>(op, total, in[0], in[1], out);
    } else {
        bc_t bc;
        QD_TRY(make_bc(n, is, os, &bc));
        qd_k_binary<<<qd_cu_blocks(total), QD_CU_THREADS, 0, st>>>(bc, op, total, in[0], in[1], out);
    }
    return qd_cu_post(b, "binary forward", __FILE__, __LINE__);
}

static qd_status binary_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                                 const qd_shape *os, const float *dout, float *const *din) {
    cudaStream_t st = qd_cu_of(b)->stream;
    int64_t total = qd_cu_numel(os);
    if (total == 0) return QD_OK;
    int op = bin_op(n->op);
    bc_t bc;
    int same = qd_cu_numel(&is[0]) == total && qd_cu_numel(&is[1]) == total;
    if (!same) QD_TRY(make_bc(n, is, os, &bc));
    for (int w = 0; w < 2; w++) {
        if (!din[w]) continue;
        int64_t nx = qd_cu_numel(&is[w]);
        if (same) {
            qd_k_binary_grad_same<<<qd_cu_blocks(nx), QD_CU_THREADS, 0, st>>>(op, w, nx, in[0], in[1], dout, din[w]);
        } else {
            red_t rd;
            make_red(&bc, w ? bc.sb : bc.sa, &rd);
            qd_k_binary_grad<<<qd_cu_blocks(nx), QD_CU_THREADS, 0, st>>>(bc, rd, op, w, nx, in[0], in[1], dout, din[w]);
        }
    }
    return qd_cu_post(b, "binary backward", __FILE__, __LINE__);
}

/* ------------------------------------------------------------------------------------------ */
/* Unary: Relu, Clip, Sigmoid; copies; BatchNormalization (inference form)                      */
/* ------------------------------------------------------------------------------------------ */
enum { UN_RELU = 0, UN_CLIP, UN_SIGMOID, UN_HARDSIGMOID, UN_HARDSWISH };

/* Unary kernel id and its two float parameters (Clip bounds; HardSigmoid alpha, beta). */
static int unary_kind(const qd_node *n, float *lo, float *hi) {
    *lo = n->op == QD_OP_HARDSIGMOID ? n->a.alpha : n->a.clip_min;
    *hi = n->op == QD_OP_HARDSIGMOID ? n->a.beta : n->a.clip_max;
    switch (n->op) {
    case QD_OP_RELU: return UN_RELU;
    case QD_OP_CLIP: return UN_CLIP;
    case QD_OP_HARDSIGMOID: return UN_HARDSIGMOID;
    case QD_OP_HARDSWISH: return UN_HARDSWISH;
    default: return UN_SIGMOID;
    }
}

__global__ void qd_k_unary(int op, float lo, float hi, int64_t n, const float *__restrict__ x, float *__restrict__ y) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = x[i];
        switch (op) {
        case UN_RELU: y[i] = v > 0.0f ? v : 0.0f; break;
        case UN_CLIP: {
            /* selects, as the CPU twin (src/cpu/cpu_ops.c): NaN propagates (fmaxf would return lo)
             * and -0.0 stays -0.0 at lo = 0 (fmaxf(-0, +0) may return +0) */
            float c = v < lo ? lo : v;
            y[i] = c > hi ? hi : c;
        } break;
        case UN_HARDSIGMOID: y[i] = qd_hardsigmoid(v, lo, hi); break; /* lo = alpha, hi = beta */
        case UN_HARDSWISH: y[i] = qd_hardswish(v); break;
        default: y[i] = qd_sigmoid(v); break;
        }
    }
}

/* Relu passes the gradient where x > 0; Clip strictly inside (lo, hi) like PyTorch's
 * hardtanh/ReLU6 and the CPU twin; Sigmoid uses the forward output y(1-y). */
__global__ void qd_k_unary_grad(int op, float lo, float hi, int64_t n, const float *__restrict__ x,
                                const float *__restrict__ y, const float *__restrict__ g, float *__restrict__ dx) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = x[i], gi = g[i];
        switch (op) {
        case UN_RELU: dx[i] += v > 0.0f ? gi : 0.0f; break;
        case UN_CLIP: dx[i] += (v > lo && v < hi) ? gi : 0.0f; break;
        case UN_HARDSIGMOID: dx[i] += gi * qd_hardsigmoid_grad(v, lo, hi); break;
        case UN_HARDSWISH: dx[i] += gi * qd_hardswish_grad(v); break;
        default: {
            float s = y[i];
            dx[i] += gi * s * (1.0f - s);
        } break;
        }
    }
}

__global__ void qd_k_axpy1(int64_t n, const float *__restrict__ g, float *__restrict__ dx) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dx[i] += g[i];
}

__global__ void qd_k_bn(int64_t n, int64_t C, int64_t sp, float eps, const float *__restrict__ x,
                        const float *__restrict__ sc, const float *__restrict__ bi, const float *__restrict__ mean,
                        const float *__restrict__ var, float *__restrict__ y) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = (i / sp) % C;
        /* same expression as the CPU twin: y = x*k + (B - mean*k), k = scale/sqrt(var+eps) */
        float k = sc[c] / sqrtf(var[c] + eps);
        float sh = bi[c] - mean[c] * k;
        y[i] = x[i] * k + sh;
    }
}

__global__ void qd_k_bn_grad(int64_t n, int64_t C, int64_t sp, float eps, const float *__restrict__ sc,
                             const float *__restrict__ var, const float *__restrict__ g, float *__restrict__ dx) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = (i / sp) % C;
        float k = sc[c] / sqrtf(var[c] + eps);
        dx[i] += g[i] * k;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Pooling (NCHW, 2-D). Output extent comes from out_shape.                                      */
/* ------------------------------------------------------------------------------------------ */
typedef struct pool_t {
    int64_t nc, H, W, OH, OW;
    int kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, include_pad;
} pool_t;

static qd_status make_pool(const qd_node *n, const qd_shape *is, const qd_shape *os, pool_t *p) {
    if (is[0].ndim != 4 || os->ndim != 4)
        return qd_errorf(QD_ERR_UNSUPPORTED, "cuda: %s %s: only 2-D pooling is supported", cu_op_name(n->op), nname(n));
    const qd_attrs *a = &n->a;
    p->nc = is[0].dims[0] * is[0].dims[1];
    p->H = is[0].dims[2];
    p->W = is[0].dims[3];
    p->OH = os->dims[2];
    p->OW = os->dims[3];
    p->kh = a->kernel[0];
    p->kw = a->kernel[1];
    p->sh = a->stride[0] > 0 ? a->stride[0] : 1;
    p->sw = a->stride[1] > 0 ? a->stride[1] : 1;
    p->pt = a->pads[0];
    p->pl = a->pads[1];
    p->pb = a->pads[2];
    p->pr = a->pads[3];
    p->dh = a->dilation[0] > 0 ? a->dilation[0] : 1;
    p->dw = a->dilation[1] > 0 ? a->dilation[1] : 1;
    p->include_pad = a->count_include_pad;
    if (p->kh <= 0 || p->kw <= 0)
        return qd_errorf(QD_ERR_DATA, "cuda: %s %s: kernel size %dx%d", cu_op_name(n->op), nname(n), p->kh, p->kw);
    return QD_OK;
}

/* Index (ih*W+iw) of the first maximum of window (oh, ow) in scan order, -1 if empty. */
__device__ __forceinline__ int64_t maxpool_arg(const pool_t &p, const float *xc, int64_t oh, int64_t ow, float *mv) {
    float best = -INFINITY;
    int64_t arg = -1;
    for (int i = 0; i < p.kh; i++) {
        int64_t ih = oh * p.sh - p.pt + (int64_t)i * p.dh;
        if (ih < 0 || ih >= p.H) continue;
        for (int j = 0; j < p.kw; j++) {
            int64_t iw = ow * p.sw - p.pl + (int64_t)j * p.dw;
            if (iw < 0 || iw >= p.W) continue;
            float v = xc[ih * p.W + iw];
            if (arg < 0 || v > best || isnan(v)) { /* NaN propagates, as on the CPU twin */
                best = v;
                arg = ih * p.W + iw;
            }
        }
    }
    *mv = best;
    return arg;
}

__global__ void qd_k_maxpool(pool_t p, const float *__restrict__ x, float *__restrict__ y) {
    int64_t total = p.nc * p.OH * p.OW;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t ow = e % p.OW, oh = (e / p.OW) % p.OH, c = e / (p.OW * p.OH);
        float mv;
        (void)maxpool_arg(p, x + c * p.H * p.W, oh, ow, &mv);
        y[e] = mv;
    }
}

/* One thread per input element: sum the gradients of every window whose argmax it is. */
__global__ void qd_k_maxpool_grad(pool_t p, const float *__restrict__ x, const float *__restrict__ g,
                                  float *__restrict__ dx) {
    int64_t total = p.nc * p.H * p.W;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t iw = e % p.W, ih = (e / p.W) % p.H, c = e / (p.W * p.H);
        const float *xc = x + c * p.H * p.W;
        const float *gc = g + c * p.OH * p.OW;
        float acc = 0.0f;
        for (int i = 0; i < p.kh; i++) {
            int64_t t = ih + p.pt - (int64_t)i * p.dh;
            if (t < 0 || t % p.sh) continue;
            int64_t oh = t / p.sh;
            if (oh >= p.OH) continue;
            for (int j = 0; j < p.kw; j++) {
                int64_t u = iw + p.pl - (int64_t)j * p.dw;
                if (u < 0 || u % p.sw) continue;
                int64_t ow = u / p.sw;
                if (ow >= p.OW) continue;
                float mv;
                if (maxpool_arg(p, xc, oh, ow, &mv) == ih * p.W + iw) acc += gc[oh * p.OW + ow];
            }
        }
        dx[e] += acc;
    }
}

/* PyTorch avg_pool2d divisor: window clipped to the padded extent (count_include_pad) or to
 * the image. */
__device__ __forceinline__ int64_t avg_div(const pool_t &p, int64_t oh, int64_t ow) {
    int64_t hs = oh * p.sh - p.pt, ws = ow * p.sw - p.pl;
    int64_t he = hs + p.kh, we = ws + p.kw;
    if (he > p.H + p.pb) he = p.H + p.pb;
    if (we > p.W + p.pr) we = p.W + p.pr;
    int64_t full = (he - hs) * (we - ws);
    if (hs < 0) hs = 0;
    if (ws < 0) ws = 0;
    if (he > p.H) he = p.H;
    if (we > p.W) we = p.W;
    int64_t inner = (he - hs) * (we - ws);
    int64_t d = p.include_pad ? full : inner;
    return d > 0 ? d : 1;
}

__global__ void qd_k_avgpool(pool_t p, const float *__restrict__ x, float *__restrict__ y) {
    int64_t total = p.nc * p.OH * p.OW;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t ow = e % p.OW, oh = (e / p.OW) % p.OH, c = e / (p.OW * p.OH);
        const float *xc = x + c * p.H * p.W;
        float acc = 0.0f;
        for (int i = 0; i < p.kh; i++) {
            int64_t ih = oh * p.sh - p.pt + i;
            if (ih < 0 || ih >= p.H) continue;
            for (int j = 0; j < p.kw; j++) {
                int64_t iw = ow * p.sw - p.pl + j;
                if (iw < 0 || iw >= p.W) continue;
                acc += xc[ih * p.W + iw];
            }
        }
        y[e] = acc / (float)avg_div(p, oh, ow);
    }
}

__global__ void qd_k_avgpool_grad(pool_t p, const float *__restrict__ g, float *__restrict__ dx) {
    int64_t total = p.nc * p.H * p.W;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t iw = e % p.W, ih = (e / p.W) % p.H, c = e / (p.W * p.H);
        const float *gc = g + c * p.OH * p.OW;
        float acc = 0.0f;
        for (int i = 0; i < p.kh; i++) {
            int64_t t = ih + p.pt - i;
            if (t < 0 || t % p.sh) continue;
            int64_t oh = t / p.sh;
            if (oh >= p.OH) continue;
            for (int j = 0; j < p.kw; j++) {
                int64_t u = iw + p.pl - j;
                if (u < 0 || u % p.sw) continue;
                int64_t ow = u / p.sw;
                if (ow >= p.OW) continue;
                acc += gc[oh * p.OW + ow] / (float)avg_div(p, oh, ow);
            }
        }
        dx[e] += acc;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Mean reductions (GlobalAveragePool, ReduceMean): the output, reshaped with kept unit dims,  */
/* is an operand broadcast over the input's index space.                                        */
/* ------------------------------------------------------------------------------------------ */
__global__ void qd_k_reduce_mean(bc_t bc, red_t rd, int64_t nout, int64_t cnt, const float *__restrict__ x,
                                 float *__restrict__ y) {
    for (int64_t ix = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; ix < nout; ix += (int64_t)gridDim.x * blockDim.x) {
        int64_t base = 0, rem = ix;
        for (int d = 0; d < rd.nd; d++) {
            int64_t q = rem / rd.xstr[d];
            rem -= q * rd.xstr[d];
            base += q * bc.fstr[d];
        }
        double acc = 0.0; /* double accumulation, as the CPU twin */
        for (int64_t k = 0; k < rd.rcount; k++) {
            int64_t off = base, rr = k;
            for (int d = 0; d < rd.nd; d++) {
                int64_t q = rr / rd.rstr[d];
                rr -= q * rd.rstr[d];
                off += q * bc.fstr[d];
            }
            acc += (double)x[off];
        }
        y[ix] = (float)(acc / (double)cnt);
    }
}

/* dx[i] += g[reduced index of i] / count */
__global__ void qd_k_reduce_mean_grad(bc_t bc, int64_t n, float cnt, const float *__restrict__ g,
                                      float *__restrict__ dx) {
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e, oa = 0;
        for (int d = 0; d < bc.nd; d++) {
            int64_t q = r / bc.fstr[d];
            r -= q * bc.fstr[d];
            oa += q * bc.sa[d];
        }
        dx[e] += g[oa] / cnt;
    }
}

/* Build the index space of the input and the strides of the (keepdims) output in it. */
static qd_status make_reduce(const qd_node *n, const qd_shape *xs, bc_t *bc, red_t *rd, int64_t *count) {
    int red[ND] = {0};
    if (n->op == QD_OP_GLOBALAVGPOOL) {
        for (int d = 2; d < xs->ndim; d++) red[d] = 1;
    } else if (n->a.naxes == 0) {
        for (int d = 0; d < xs->ndim; d++) red[d] = 1;
    } else {
        for (int k = 0; k < n->a.naxes; k++) {
            int64_t ax = n->a.axes[k];
            if (ax < 0) ax += xs->ndim;
            if (ax < 0 || ax >= xs->ndim)
                return qd_errorf(QD_ERR_DATA, "cuda: ReduceMean %s: axis %lld out of range", nname(n),
                                 (long long)n->a.axes[k]);
            red[ax] = 1;
        }
    }
    memset(bc, 0, sizeof *bc);
    bc->nd = xs->ndim;
    int64_t kd[ND];
    *count = 1;
    for (int d = 0; d < xs->ndim; d++) {
        bc->dims[d] = xs->dims[d];
        kd[d] = red[d] ? 1 : xs->dims[d];
        if (red[d]) *count *= xs->dims[d];
    }
    contiguous_strides(xs->ndim, xs->dims, bc->fstr);
    int64_t ks[ND];
    contiguous_strides(xs->ndim, kd, ks);
    for (int d = 0; d < xs->ndim; d++) bc->sa[d] = red[d] ? 0 : ks[d];
    make_red(bc, bc->sa, rd);
    /* dims that are reduced but have extent 1 keep sa = 0 and rdims = 1: harmless */
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Pad (constant), Slice, Transpose, Concat                                                     */
/* ------------------------------------------------------------------------------------------ */
typedef struct map_t {
    int nd;
    int64_t odims[ND], ostr[ND]; /* output dims / contiguous strides */
    int64_t idims[ND], istr[ND]; /* input dims / contiguous strides */
    int64_t a[ND], c[ND];        /* input coord = a[d] + c[d] * out coord (pad: c=1, a=-begin) */
    int64_t perm[ND];            /* transpose: out dim d reads input dim perm[d] */
} map_t;

static void map_init(map_t *m, const qd_shape *is, const qd_shape *os) {
    memset(m, 0, sizeof *m);
    m->nd = os->ndim;
    for (int d = 0; d < os->ndim; d++) m->odims[d] = os->dims[d];
    for (int d = 0; d < is->ndim; d++) m->idims[d] = is->dims[d];
    contiguous_strides(os->ndim, os->dims, m->ostr);
    contiguous_strides(is->ndim, is->dims, m->istr);
}

/* Pad forward: one thread per output element. */
__global__ void qd_k_pad(map_t m, int64_t total, float value, const float *__restrict__ x, float *__restrict__ y) {
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e, off = 0;
        int inside = 1;
        for (int d = 0; d < m.nd; d++) {
            int64_t q = r / m.ostr[d];
            r -= q * m.ostr[d];
            int64_t ic = q + m.a[d];
            if (ic < 0 || ic >= m.idims[d]) inside = 0;
            off += ic * m.istr[d];
        }
        y[e] = inside ? x[off] : value;
    }
}

/* Pad backward: one thread per input element (negative pads crop: check the output range). */
__global__ void qd_k_pad_grad(map_t m, int64_t total, const float *__restrict__ g, float *__restrict__ dx) {
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e, off = 0;
        int inside = 1;
        for (int d = 0; d < m.nd; d++) {
            int64_t q = r / m.istr[d];
            r -= q * m.istr[d];
            int64_t oc = q - m.a[d];
            if (oc < 0 || oc >= m.odims[d]) inside = 0;
            off += oc * m.ostr[d];
        }
        if (inside) dx[e] += g[off];
    }
}

/* Slice (a = start, c = step) and Transpose (perm): out element -> input offset. */
__device__ __forceinline__ int64_t map_in_off(const map_t &m, int transpose, int64_t e) {
    int64_t r = e, off = 0;
    for (int d = 0; d < m.nd; d++) {
        int64_t q = r / m.ostr[d];
        r -= q * m.ostr[d];
        if (transpose)
            off += q * m.istr[m.perm[d]];
        else
            off += (m.a[d] + m.c[d] * q) * m.istr[d];
    }
    return off;
}

__global__ void qd_k_gather_map(map_t m, int transpose, int64_t total, const float *__restrict__ x,
                                float *__restrict__ y) {
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x)
        y[e] = x[map_in_off(m, transpose, e)];
}

/* Injective map: each output element owns a distinct input element, so no two threads write
 * the same dx. */
__global__ void qd_k_scatter_map_add(map_t m, int transpose, int64_t total, const float *__restrict__ g,
                                     float *__restrict__ dx) {
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x)
        dx[map_in_off(m, transpose, e)] += g[e];
}

/* Concat piece: in [outer, inner_j] <-> out [outer, inner_total] at column offset off. */
__global__ void qd_k_concat(int64_t outer, int64_t inner_j, int64_t inner_tot, int64_t off, int backward,
                            const float *__restrict__ src, float *__restrict__ dst) {
    int64_t total = outer * inner_j;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t o = e / inner_j, r = e - o * inner_j;
        int64_t oi = o * inner_tot + off + r;
        if (backward)
            dst[e] += src[oi];
        else
            dst[oi] = src[e];
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Softmax: opset >= 13 along one axis; older opsets over the flattened [axis, end) block.      */
/* ------------------------------------------------------------------------------------------ */
__global__ void qd_k_softmax(int64_t rows, int64_t len, int64_t inner, const float *__restrict__ x,
                             float *__restrict__ y) {
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
        int64_t o = r / inner, i = r - o * inner;
        const float *xr = x + o * len * inner + i;
        float *yr = y + o * len * inner + i;
        float m = -INFINITY;
        for (int64_t k = 0; k < len; k++) m = fmaxf(m, xr[k * inner]);
        float s = 0.0f;
        for (int64_t k = 0; k < len; k++) {
            float ev = expf(xr[k * inner] - m);
            yr[k * inner] = ev;
            s += ev;
        }
        for (int64_t k = 0; k < len; k++) yr[k * inner] = yr[k * inner] / s;
    }
}

__global__ void qd_k_softmax_grad(int64_t rows, int64_t len, int64_t inner, const float *__restrict__ y,
                                  const float *__restrict__ g, float *__restrict__ dx) {
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
        int64_t o = r / inner, i = r - o * inner;
        int64_t base = o * len * inner + i;
        float dot = 0.0f;
        for (int64_t k = 0; k < len; k++) dot += g[base + k * inner] * y[base + k * inner];
        for (int64_t k = 0; k < len; k++) {
            int64_t j = base + k * inner;
            dx[j] += y[j] * (g[j] - dot);
        }
    }
}

static qd_status softmax_geom(const qd_node *n, const qd_shape *xs, int64_t *rows, int64_t *len, int64_t *inner) {
    int ax = n->a.axis;
    if (ax < 0) ax += xs->ndim;
    if (ax < 0 || ax >= xs->ndim) return qd_errorf(QD_ERR_DATA, "cuda: Softmax %s: axis %d", nname(n), n->a.axis);
    int64_t outer = 1;
    for (int d = 0; d < ax; d++) outer *= xs->dims[d];
    if (n->opset > 0 && n->opset < 13) {
        *len = 1;
        for (int d = ax; d < xs->ndim; d++) *len *= xs->dims[d];
        *inner = 1;
    } else {
        *len = xs->dims[ax];
        *inner = 1;
        for (int d = ax + 1; d < xs->ndim; d++) *inner *= xs->dims[d];
    }
    *rows = outer * *inner;
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Dispatch                                                                                     */
/* ------------------------------------------------------------------------------------------ */
static qd_status need_inputs(const qd_node *n, const float *const *in, int k) {
    if (n->ninputs < k) return qd_errorf(QD_ERR_DATA, "cuda: %s %s: expects %d inputs, has %d", cu_op_name(n->op), nname(n), k, n->ninputs);
    for (int i = 0; i < k; i++)
        if (!in[i]) return qd_errorf(QD_ERR_INTERNAL, "cuda: %s %s: input %d is NULL", cu_op_name(n->op), nname(n), i);
    return QD_OK;
}

static qd_status concat_geom(const qd_node *n, const qd_shape *os, int64_t *outer, int64_t *post) {
    int ax = n->a.axis;
    if (ax < 0) ax += os->ndim;
    if (ax < 0 || ax >= os->ndim) return qd_errorf(QD_ERR_DATA, "cuda: Concat %s: axis %d", nname(n), n->a.axis);
    *outer = 1;
    for (int d = 0; d < ax; d++) *outer *= os->dims[d];
    *post = 1;
    for (int d = ax + 1; d < os->ndim; d++) *post *= os->dims[d];
    return QD_OK;
}

static qd_status make_slice_map(const qd_node *n, const qd_shape *is, const qd_shape *os, map_t *m) {
    if (is->ndim != os->ndim) return qd_errorf(QD_ERR_DATA, "cuda: Slice %s: rank changes", nname(n));
    map_init(m, is, os);
    for (int d = 0; d < os->ndim; d++) {
        m->a[d] = n->a.slice_start[d];
        m->c[d] = n->a.slice_step[d] ? n->a.slice_step[d] : 1;
    }
    return QD_OK;
}

static qd_status make_transpose_map(const qd_node *n, const qd_shape *is, const qd_shape *os, map_t *m) {
    if (is->ndim != os->ndim) return qd_errorf(QD_ERR_DATA, "cuda: Transpose %s: rank changes", nname(n));
    map_init(m, is, os);
    for (int d = 0; d < os->ndim; d++) {
        /* default permutation reverses the dimensions */
        int64_t p = n->a.nperm == os->ndim ? n->a.perm[d] : os->ndim - 1 - d;
        if (p < 0 || p >= os->ndim) return qd_errorf(QD_ERR_DATA, "cuda: Transpose %s: perm[%d] = %lld", nname(n), d, (long long)p);
        m->perm[d] = p;
    }
    return QD_OK;
}

static qd_status make_pad_map(const qd_node *n, const qd_shape *is, const qd_shape *os, map_t *m) {
    if (is->ndim != os->ndim) return qd_errorf(QD_ERR_DATA, "cuda: Pad %s: rank changes", nname(n));
    map_init(m, is, os);
    for (int d = 0; d < os->ndim; d++) m->a[d] = -n->a.pad_begin[d];
    return QD_OK;
}

static const qd_value *in_value(const qd_graph *g, const qd_node *n, int k) {
    int v = k < n->ninputs ? n->inputs[k] : -1;
    return v >= 0 && v < g->nvalues ? &g->values[v] : NULL;
}
static int value_rank(const qd_value *v) { return v ? v->ndim : -1; }

/* MatMul batch dims as cuBLAS strided batches see them: the product of the dims before the last
 * two, of which dims[0] is the run-time batch N for an activation of rank > 2. *per_sample: 1
 * when the product scales with N. */
static int64_t matmul_lead(const qd_value *v, int *per_sample) {
    int64_t p = 1;
    *per_sample = !v->is_const && v->ndim > 2;
    for (int i = *per_sample ? 1 : 0; i < v->ndim - 2; i++) p *= v->dims[i];
    return p;
}

/* What qd_cu_node_forward / qd_cu_node_backward (and the cuDNN/cuBLAS paths in conv_cuda.cu)
 * refuse at run time, refused at plan time instead. No default: a new row in qdrop/op_table.h
 * does not compile (-Werror=switch) until it is answered here, next to its kernels. */
int qd_cu_supports_op(const qd_backend *b, const qd_graph *g, const qd_node *n, char *why, size_t cap) {
    (void)b;
    const qd_value *x = in_value(g, n, 0), *w = in_value(g, n, 1);
    int ro = n->noutputs > 0 && n->outputs[0] >= 0 && n->outputs[0] < g->nvalues ? g->values[n->outputs[0]].ndim : -1;
    switch (n->op) {
    case QD_OP_CONV: {
        const qd_attrs *a = &n->a;
        if (value_rank(x) != 4 || value_rank(w) != 4 || ro != 4) {
            snprintf(why, cap, "only 2-D convolution (4-D tensors) is supported, input rank %d", value_rank(x));
            return 0;
        }
        if (a->pads[0] != a->pads[2] || a->pads[1] != a->pads[3]) {
            snprintf(why, cap, "asymmetric pads (%d,%d,%d,%d) (the cuDNN path pads both sides alike)", a->pads[0],
                     a->pads[1], a->pads[2], a->pads[3]);
            return 0;
        }
        return 1;
    }
    case QD_OP_GEMM: /* A of rank > 2 with transA = 0: stacked rows (gemm_dims, conv_cuda.cu) */
        if (value_rank(x) < 2 || value_rank(w) != 2 || (value_rank(x) != 2 && n->a.trans_a)) {
            snprintf(why, cap, "Gemm needs 2-D A and B (got rank %d and %d)", value_rank(x), value_rank(w));
            return 0;
        }
        return 1;
    case QD_OP_MATMUL: {
        if (!x || !w) return 1; /* missing operands: the kernels' input checks say so */
        int fa, fb;
        int64_t pa = matmul_lead(x, &fa), pb = matmul_lead(w, &fb);
        /* cuBLAS batches: B shared (1 batch), A shared, or one to one, for every batch size N */
        if ((!fb && pb == 1) || (!fa && pa == 1) || (fa == fb && pa == pb)) return 1;
        snprintf(why, cap, "batch dims of A (%lld%s) and B (%lld%s) broadcast only partly", (long long)pa,
                 fa ? " x N" : "", (long long)pb, fb ? " x N" : "");
        return 0;
    }
    case QD_OP_MAXPOOL: case QD_OP_AVGPOOL:
        if (value_rank(x) != 4 || ro != 4) {
            snprintf(why, cap, "only 2-D pooling on 4-D tensors is supported, input rank %d", value_rank(x));
            return 0;
        }
        return 1;
    case QD_OP_ADD: case QD_OP_SUB: case QD_OP_MUL: case QD_OP_DIV: case QD_OP_RELU: case QD_OP_CLIP:
    case QD_OP_SIGMOID: case QD_OP_BATCHNORM: case QD_OP_GLOBALAVGPOOL: case QD_OP_REDUCEMEAN:
    case QD_OP_FLATTEN: case QD_OP_RESHAPE: case QD_OP_IDENTITY: case QD_OP_PAD: case QD_OP_SLICE:
    case QD_OP_TRANSPOSE: case QD_OP_CONCAT: case QD_OP_SOFTMAX: case QD_OP_HARDSIGMOID:
    case QD_OP_HARDSWISH: case QD_OP_SQUEEZE: case QD_OP_UNSQUEEZE: case QD_OP_LAYERNORM: case QD_OP_GELU:
        return 1;
    case QD_OP_RESIZE: /* make_resize: 2-D resizing of NCHW tensors only */
        if (value_rank(x) != 4 || ro != 4) {
            snprintf(why, cap, "only 2-D Resize of 4-D tensors is supported, input rank %d", value_rank(x));
            return 0;
        }
        return 1;
    case QD_OP_CONSTANT: /* folded into initializers at load; never run */
    case QD_OP_COUNT:
        break;
    }
    snprintf(why, cap, "no device kernel");
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Resize (2-D, NCHW): the CPU twin's taps (graph/resize_math.h). Backward: one thread per input */
/* row (plane, ih) summing, in the CPU's order, every output that reads it: no atomics.          */
/* ------------------------------------------------------------------------------------------ */
typedef struct rs_t {
    int64_t planes, H, W, OH, OW;
    int mode, coord, nearest;
    float sh, sw;
} rs_t;

static qd_status make_resize(const qd_node *n, const qd_shape *is, const qd_shape *os, rs_t *p) {
    if (is[0].ndim != 4 || os->ndim != 4 || is[0].dims[0] != os->dims[0] || is[0].dims[1] != os->dims[1])
        return qd_errorf(QD_ERR_UNSUPPORTED, "cuda: Resize %s: only 2-D resizing of NCHW tensors", nname(n));
    p->planes = is[0].dims[0] * is[0].dims[1];
    p->H = is[0].dims[2];
    p->W = is[0].dims[3];
    p->OH = os->dims[2];
    p->OW = os->dims[3];
    p->mode = n->a.resize_mode;
    p->coord = n->a.resize_coord;
    p->nearest = n->a.resize_nearest;
    p->sh = n->a.resize_scale[0];
    p->sw = n->a.resize_scale[1];
    return QD_OK;
}

__global__ void qd_k_resize(rs_t p, const float *__restrict__ x, float *__restrict__ y) {
    int64_t total = p.planes * p.OH * p.OW;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t ow = e % p.OW, oh = (e / p.OW) % p.OH, c = e / (p.OW * p.OH);
        const float *xc = x + c * p.H * p.W;
        qd_resize_tap th = qd_resize_tap_at(p.mode, p.coord, p.nearest, p.sh, p.H, p.OH, oh);
        qd_resize_tap tw = qd_resize_tap_at(p.mode, p.coord, p.nearest, p.sw, p.W, p.OW, ow);
        const float *r0 = xc + th.i0 * p.W, *r1 = xc + th.i1 * p.W;
        y[e] = th.w0 * (tw.w0 * r0[tw.i0] + tw.w1 * r0[tw.i1]) + th.w1 * (tw.w0 * r1[tw.i0] + tw.w1 * r1[tw.i1]);
    }
}

__global__ void qd_k_resize_grad(rs_t p, const float *__restrict__ g, float *__restrict__ dx) {
    int64_t rows = p.planes * p.H;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = r / p.H, ih = r % p.H;
        float *d = dx + r * p.W;
        const float *gc = g + c * p.OH * p.OW;
        for (int64_t oh = 0; oh < p.OH; oh++) {
            qd_resize_tap th = qd_resize_tap_at(p.mode, p.coord, p.nearest, p.sh, p.H, p.OH, oh);
            float wh = (th.i0 == ih ? th.w0 : 0.0f) + (th.i1 == ih ? th.w1 : 0.0f);
            if (wh == 0.0f) continue;
            for (int64_t ow = 0; ow < p.OW; ow++) {
                qd_resize_tap tw = qd_resize_tap_at(p.mode, p.coord, p.nearest, p.sw, p.W, p.OW, ow);
                float v = wh * gc[oh * p.OW + ow];
                d[tw.i0] += v * tw.w0;
                if (tw.w1 != 0.0f) d[tw.i1] += v * tw.w1;
            }
        }
    }
}

qd_status qd_cu_node_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                             const qd_shape *os, float *out) {
    cudaStream_t st = qd_cu_of(b)->stream;
    int64_t total = qd_cu_numel(os);
    switch (n->op) {
    case QD_OP_CONV:
        QD_TRY(need_inputs(n, in, 2));
        return qd_cu_conv_forward(b, n, is, in, os, out);
    case QD_OP_GEMM:
        QD_TRY(need_inputs(n, in, 2));
        return qd_cu_gemm_forward(b, n, is, in, os, out);
    case QD_OP_MATMUL:
        QD_TRY(need_inputs(n, in, 2));
        return qd_cu_matmul_forward(b, n, is, in, os, out);
    case QD_OP_ADD: case QD_OP_SUB: case QD_OP_MUL: case QD_OP_DIV:
        QD_TRY(need_inputs(n, in, 2));
        return binary_forward(b, n, is, in, os, out);
    case QD_OP_RELU: case QD_OP_CLIP: case QD_OP_SIGMOID: case QD_OP_HARDSIGMOID: case QD_OP_HARDSWISH: {
        QD_TRY(need_inputs(n, in, 1));
        float lo, hi;
        int op = unary_kind(n, &lo, &hi);
        if (total) qd_k_unary<<<qd_cu_blocks(total), QD_CU_THREADS, 0, st>>>(op, lo, hi, total, in[0], out);
        break;
    }
    case QD_OP_BATCHNORM: {
        QD_TRY(need_inputs(n, in, 5));
        int64_t C = is[0].ndim > 1 ? is[0].dims[1] : 1, sp = 1;
        for (int d = 2; d < is[0].ndim; d++) sp *= is[0].dims[d];
        if (total) qd_k_bn<<<qd_cu_blocks(total), QD_CU_THREADS, 0, st>>>(total, C, sp, n->a.epsilon, in[0], in[1], in[2], in[3], in[4], out);
        break;
    }
    case QD_OP_RESIZE: {
        QD_TRY(need_inputs(n, in, 1));
        rs_t p;
        QD_TRY(make_resize(n, is, os, &p));
        if (total) qd_k_resize<<<qd_cu_blocks(total), QD_CU_THREADS, 0, st>>>(p, in[0], out);
        break;
    }
    case QD_OP_MAXPOOL: case QD_OP_AVGPOOL: {
        QD_TRY(need_inputs(n, in, 1));
        pool_t p;
        QD_TRY(make_pool(n, is, os, &p));
        if (!total) break;
        if (n->op == QD_OP_MAXPOOL) qd_k_maxpool<<<qd_cu_blocks(total), QD_CU_THREADS, 0, st>>>(p, in[0], out);
        else qd_k_avgpool<<<qd_cu_blocks(total), QD_CU_THREADS, 0, st>>>(p, in[0], out);
        break;
    }
    case QD_OP_GLOBALAVGPOOL: case QD_OP_REDUCEMEAN: {
        QD_TRY(need_inputs(n, in, 1));
        bc_t bc;
        red_t rd;
        int64_t cnt;
        QD_TRY(make_reduce(n, &is[0], &bc, &rd, &cnt));
        int64_t nout = 1;
        for (int d = 0; d < rd.nd; d++) nout *= rd.xdims[d];
        if (nout != total) return qd_errorf(QD_ERR_DATA, "cuda: %s %s: output has %lld elements, expected %lld", cu_op_name(n->op), nname(n), (long long)total, (long long)nout);
        if (total) qd_k_reduce_mean<<<qd_cu_blocks(total), QD_CU_THREADS, 0, st>>>(bc, rd, total, cnt, in[0], out);
        break;
    }
    case QD_OP_FLATTEN: case QD_OP_RESHAPE: case QD_OP_IDENTITY: case QD_OP_SQUEEZE: case QD_OP_UNSQUEEZE:
        QD_TRY(need_inputs(n, in, 1));
        if (qd_cu_numel(&is[0]) != total) return qd_errorf(QD_ERR_DATA, "cuda: %s %s: element count changes", cu_op_name(n->op), nname(n));
        if (total && out != in[0]) QD_CUDA_TRY(cudaMemcpyAsync(out, in[0], (size_t)total * sizeof(float), cudaMemcpyDefault, st));
        break;
    case QD_OP_PAD: {
        QD_TRY(need_inputs(n, in, 1));
        map_t m;
        QD_TRY(make_pad_map(n, &is[0], os, &m));
        if (total) qd_k_pad<<<qd_cu_blocks(total), QD_CU_THREADS, 0, st>>>(m, total, n->a.pad_value, in[0], out);
        break;
    }
    case QD_OP_SLICE: case QD_OP_TRANSPOSE: {
        QD_TRY(need_inputs(n, in, 1));
        map_t m;
        int tr = n->op == QD_OP_TRANSPOSE;
        if (tr) QD_TRY(make_transpose_map(n, &is[0], os, &m));
        else QD_TRY(make_slice_map(n, &is[0], os, &m));
        if (total) qd_k_gather_map<<<qd_cu_blocks(total), QD_CU_THREADS, 0, st>>>(m, tr, total, in[0], out);
        break;
    }
    case QD_OP_CONCAT: {
        int64_t outer = 0, post = 0, off = 0;
        QD_TRY(concat_geom(n, os, &outer, &post));
        int ax = n->a.axis < 0 ? n->a.axis + os->ndim : n->a.axis;
        int64_t inner_tot = os->dims[ax] * post;
        for (int j = 0; j < n->ninputs; j++) {
            if (!in[j]) return qd_errorf(QD_ERR_INTERNAL, "cuda: Concat %s: input %d is NULL", nname(n), j);
            int64_t inner_j = is[j].dims[ax] * post;
            if (outer * inner_j > 0) qd_k_concat<<<qd_cu_blocks(outer * inner_j), QD_CU_THREADS, 0, st>>>(outer, inner_j, inner_tot, off, 0, in[j], out);
            off += inner_j;
        }
        if (off != inner_tot) return qd_errorf(QD_ERR_DATA, "cuda: Concat %s: input extents do not add up", nname(n));
        break;
    }
    case QD_OP_LAYERNORM: case QD_OP_GELU:
        QD_TRY(need_inputs(n, in, 1));
        return qd_cu_transformer_forward(b, n, is, in, os, out);
    case QD_OP_SOFTMAX: {
        QD_TRY(need_inputs(n, in, 1));
        if (n->ninputs > 1 && in[1]) return qd_cu_transformer_forward(b, n, is, in, os, out); /* additive mask */
        int64_t rows, len, inner;
        QD_TRY(softmax_geom(n, &is[0], &rows, &len, &inner));
        if (rows) qd_k_softmax<<<qd_cu_blocks(rows), QD_CU_THREADS, 0, st>>>(rows, len, inner, in[0], out);
        break;
    }
    default:
        return qd_errorf(QD_ERR_UNSUPPORTED, "cuda: node %s: op %s has no device forward", nname(n), cu_op_name(n->op));
    }
    return qd_cu_post(b, n->name ? n->name : "node_forward", __FILE__, __LINE__);
}

qd_status qd_cu_node_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                              const qd_shape *os, const float *out, const float *dout, float *const *din) {
    cudaStream_t st = qd_cu_of(b)->stream;
    int64_t total = qd_cu_numel(os);
    switch (n->op) {
    case QD_OP_CONV:
        QD_TRY(need_inputs(n, in, 2));
        return qd_cu_conv_backward(b, n, is, in, os, dout, din);
    case QD_OP_GEMM:
        QD_TRY(need_inputs(n, in, 2));
        return qd_cu_gemm_backward(b, n, is, in, os, dout, din);
    case QD_OP_MATMUL:
        QD_TRY(need_inputs(n, in, 2));
        return qd_cu_matmul_backward(b, n, is, in, os, dout, din);
    case QD_OP_ADD: case QD_OP_SUB: case QD_OP_MUL: case QD_OP_DIV:
        QD_TRY(need_inputs(n, in, 2));
        return binary_backward(b, n, is, in, os, dout, din);
    case QD_OP_RELU: case QD_OP_CLIP: case QD_OP_SIGMOID: case QD_OP_HARDSIGMOID: case QD_OP_HARDSWISH: {
        if (!din[0]) return QD_OK;
        QD_TRY(need_inputs(n, in, 1));
        float lo, hi;
        int op = unary_kind(n, &lo, &hi);
        if (op == UN_SIGMOID && !out) return qd_errorf(QD_ERR_INTERNAL, "cuda: Sigmoid %s backward needs the forward output", nname(n));
        if (total) qd_k_unary_grad<<<qd_cu_blocks(total), QD_CU_THREADS, 0, st>>>(op, lo, hi, total, in[0], out, dout, din[0]);
        break;
    }
    case QD_OP_BATCHNORM: {
        if (!din[0]) return QD_OK;
        QD_TRY(need_inputs(n, in, 5));
        int64_t C = is[0].ndim > 1 ? is[0].dims[1] : 1, sp = 1;
        for (int d = 2; d < is[0].ndim; d++) sp *= is[0].dims[d];
        if (total) qd_k_bn_grad<<<qd_cu_blocks(total), QD_CU_THREADS, 0, st>>>(total, C, sp, n->a.epsilon, in[1], in[4], dout, din[0]);
        break;
    }
    case QD_OP_RESIZE: {
        if (!din[0]) return QD_OK;
        rs_t p;
        QD_TRY(make_resize(n, is, os, &p));
        int64_t rows = p.planes * p.H;
        if (rows) qd_k_resize_grad<<<qd_cu_blocks(rows), QD_CU_THREADS, 0, st>>>(p, dout, din[0]);
        break;
    }
    case QD_OP_MAXPOOL: case QD_OP_AVGPOOL: {
        if (!din[0]) return QD_OK;
        QD_TRY(need_inputs(n, in, 1));
        pool_t p;
        QD_TRY(make_pool(n, is, os, &p));
        int64_t nin = qd_cu_numel(&is[0]);
        if (!nin) break;
        if (n->op == QD_OP_MAXPOOL) qd_k_maxpool_grad<<<qd_cu_blocks(nin), QD_CU_THREADS, 0, st>>>(p, in[0], dout, din[0]);
        else qd_k_avgpool_grad<<<qd_cu_blocks(nin), QD_CU_THREADS, 0, st>>>(p, dout, din[0]);
        break;
    }
    case QD_OP_GLOBALAVGPOOL: case QD_OP_REDUCEMEAN: {
        if (!din[0]) return QD_OK;
        bc_t bc;
        red_t rd;
        int64_t cnt;
        QD_TRY(make_reduce(n, &is[0], &bc, &rd, &cnt));
        int64_t nin = qd_cu_numel(&is[0]);
        if (nin) qd_k_reduce_mean_grad<<<qd_cu_blocks(nin), QD_CU_THREADS, 0, st>>>(bc, nin, (float)cnt, dout, din[0]);
        break;
    }
    case QD_OP_FLATTEN: case QD_OP_RESHAPE: case QD_OP_IDENTITY: case QD_OP_SQUEEZE: case QD_OP_UNSQUEEZE:
        if (!din[0]) return QD_OK;
        if (total) qd_k_axpy1<<<qd_cu_blocks(total), QD_CU_THREADS, 0, st>>>(total, dout, din[0]);
        break;
    case QD_OP_PAD: {
        if (!din[0]) return QD_OK;
        map_t m;
        QD_TRY(make_pad_map(n, &is[0], os, &m));
        int64_t nin = qd_cu_numel(&is[0]);
        if (nin) qd_k_pad_grad<<<qd_cu_blocks(nin), QD_CU_THREADS, 0, st>>>(m, nin, dout, din[0]);
        break;
    }
    case QD_OP_SLICE: case QD_OP_TRANSPOSE: {
        if (!din[0]) return QD_OK;
        map_t m;
        int tr = n->op == QD_OP_TRANSPOSE;
        if (tr) QD_TRY(make_transpose_map(n, &is[0], os, &m));
        else QD_TRY(make_slice_map(n, &is[0], os, &m));
        if (total) qd_k_scatter_map_add<<<qd_cu_blocks(total), QD_CU_THREADS, 0, st>>>(m, tr, total, dout, din[0]);
        break;
    }
    case QD_OP_CONCAT: {
        int64_t outer = 0, post = 0, off = 0;
        QD_TRY(concat_geom(n, os, &outer, &post));
        int ax = n->a.axis < 0 ? n->a.axis + os->ndim : n->a.axis;
        int64_t inner_tot = os->dims[ax] * post;
        for (int j = 0; j < n->ninputs; j++) {
            int64_t inner_j = is[j].dims[ax] * post;
            if (din[j] && outer * inner_j > 0) qd_k_concat<<<qd_cu_blocks(outer * inner_j), QD_CU_THREADS, 0, st>>>(outer, inner_j, inner_tot, off, 1, dout, din[j]);
            off += inner_j;
        }
        break;
    }
    case QD_OP_LAYERNORM: case QD_OP_GELU:
        if (!din[0]) return QD_OK;
        QD_TRY(need_inputs(n, in, 1));
        return qd_cu_transformer_backward(b, n, is, in, os, out, dout, din);
    case QD_OP_SOFTMAX: {
        if (!din[0]) return QD_OK;
        if (n->ninputs > 1 && in[1]) return qd_cu_transformer_backward(b, n, is, in, os, out, dout, din);
        if (!out) return qd_errorf(QD_ERR_INTERNAL, "cuda: Softmax %s backward needs the forward output", nname(n));
        int64_t rows, len, inner;
        QD_TRY(softmax_geom(n, &is[0], &rows, &len, &inner));
        if (rows) qd_k_softmax_grad<<<qd_cu_blocks(rows), QD_CU_THREADS, 0, st>>>(rows, len, inner, out, dout, din[0]);
        break;
    }
    default:
        return qd_errorf(QD_ERR_UNSUPPORTED, "cuda: node %s: op %s has no device backward", nname(n), cu_op_name(n->op));
    }
    return qd_cu_post(b, n->name ? n->name : "node_backward", __FILE__, __LINE__);
}
