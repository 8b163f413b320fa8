/* cuda/conv_cuda.cu: Conv through cuDNN's legacy API, Gemm/MatMul through cuBLAS.
 *
 * Convolution algorithms come from cudnnGetConvolution*Algorithm_v7 (heuristics, no timing
 * runs: the choice is reproducible and never allocates, so it is safe inside a stream capture),
 * filtered by: workspace <= the reserved workspace, CUDNN_DETERMINISTIC in deterministic mode
 * (which rules out e.g. CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0/3), and CUDNN_FMA_MATH when TF32
 * is off. The choice is cached per shape. Backward ops run with beta = 1: they accumulate into
 * the caller's zeroed gradient buffers (include/qdrop/backend.h).
 * Row-major GEMMs use the usual identity (A B)^T = B^T A^T: cuBLAS sees row-major matrices as
 * their column-major transposes.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd_cuda.cuh"
#include "qdrop/log.h"

/* Weak: libqdrop_cuda.a is linked after libqdrop_core.a, so a program that never logs (a
 * benchmark, a twin test) has no log.o to resolve this against; there the algorithm choice is
 * simply not logged. The CLI links log.o and gets every event in run.log. */
extern "C" __attribute__((weak)) void qd_log_event_json(qd_log_level level, const char *event, const char *fields_json,
                                                         const char *fmt, ...);

static const float qd_one = 1.0f;
static const float qd_zero = 0.0f;

void qd_cu_conv_cache_free(qd_cu *c) {
    free(c->algos);
    c->algos = NULL;
    c->nalgos = c->algos_cap = 0;
}

typedef struct conv_geom {
    int n, c, h, w, k, r, s, ph, pw, sh, sw, dh, dw, g, oh, ow;
} conv_geom;

static int conv_key_eq(const qd_cu_conv_algo *a, const conv_geom *g) {
    return a->n == g->n && a->c == g->c && a->h == g->h && a->w == g->w && a->k == g->k && a->r == g->r &&
           a->s == g->s && a->ph == g->ph && a->pw == g->pw && a->sh == g->sh && a->sw == g->sw &&
           a->dh == g->dh && a->dw == g->dw && a->g == g->g && a->oh == g->oh && a->ow == g->ow;
}

static int math_ok(cudnnMathType_t m, int tf32) {
    if (!tf32) return m == CUDNN_FMA_MATH;
    /* never down-convert FP32 data to FP16 */
    return m == CUDNN_DEFAULT_MATH || m == CUDNN_TENSOR_OP_MATH || m == CUDNN_FMA_MATH;
}

static cudnnMathType_t exec_math(cudnnMathType_t m, int tf32) { return tf32 ? m : CUDNN_FMA_MATH; }

/* Descriptors for one call (shared descriptors: one backend per thread). */
static qd_status conv_describe(qd_backend *b, const qd_node *nd, const qd_shape *is, const qd_shape *os,
                               conv_geom *g) {
    qd_cu *c = qd_cu_of(b);
    if (is[0].ndim != 4 || is[1].ndim != 4 || os->ndim != 4)
        return qd_errorf(QD_ERR_UNSUPPORTED, "cuda: Conv %s: only 2-D convolutions (4-D tensors) are supported",
                         nd->name ? nd->name : "?");
    const qd_attrs *a = &nd->a;
    memset(g, 0, sizeof *g);
    g->n = (int)is[0].dims[0];
    g->c = (int)is[0].dims[1];
    g->h = (int)is[0].dims[2];
    g->w = (int)is[0].dims[3];
    g->k = (int)is[1].dims[0];
    g->r = (int)is[1].dims[2];
    g->s = (int)is[1].dims[3];
    g->g = a->group > 0 ? a->group : 1;
    g->sh = a->stride[0] > 0 ? a->stride[0] : 1;
    g->sw = a->stride[1] > 0 ? a->stride[1] : 1;
    g->dh = a->dilation[0] > 0 ? a->dilation[0] : 1;
    g->dw = a->dilation[1] > 0 ? a->dilation[1] : 1;
    g->oh = (int)os->dims[2];
    g->ow = (int)os->dims[3];
    if (a->pads[0] != a->pads[2] || a->pads[1] != a->pads[3])
        return qd_errorf(QD_ERR_UNSUPPORTED,
                         "cuda: Conv %s: asymmetric pads (%d,%d,%d,%d) are not supported by the cuDNN path",
                         nd->name ? nd->name : "?", a->pads[0], a->pads[1], a->pads[2], a->pads[3]);
    g->ph = a->pads[0];
    g->pw = a->pads[1];
    if (g->c != (int)is[1].dims[1] * g->g || g->k % g->g != 0 || os->dims[1] != g->k || os->dims[0] != g->n)
        return qd_errorf(QD_ERR_DATA, "cuda: Conv %s: inconsistent shapes (x C=%d, w [%d,%lld,%d,%d], group %d)",
                         nd->name ? nd->name : "?", g->c, g->k, (long long)is[1].dims[1], g->r, g->s, g->g);
    QD_CUDNN_TRY(cudnnSetTensor4dDescriptor(c->xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g->n, g->c, g->h, g->w));
    QD_CUDNN_TRY(cudnnSetFilter4dDescriptor(c->wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, g->k, g->c / g->g, g->r, g->s));
    QD_CUDNN_TRY(cudnnSetConvolution2dDescriptor(c->cd, g->ph, g->pw, g->sh, g->sw, g->dh, g->dw,
                                                 CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    QD_CUDNN_TRY(cudnnSetConvolutionGroupCount(c->cd, g->g));
    QD_CUDNN_TRY(cudnnSetConvolutionMathType(c->cd, b->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    int on, oc, oh, ow;
    QD_CUDNN_TRY(cudnnGetConvolution2dForwardOutputDim(c->cd, c->xd, c->wd, &on, &oc, &oh, &ow));
    if (on != g->n || oc != g->k || oh != g->oh || ow != g->ow)
        return qd_errorf(QD_ERR_DATA, "cuda: Conv %s: output shape [%d,%d,%d,%d] expected, cuDNN computes [%d,%d,%d,%d]",
                         nd->name ? nd->name : "?", g->n, g->k, g->oh, g->ow, on, oc, oh, ow);
    QD_CUDNN_TRY(cudnnSetTensor4dDescriptor(c->yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g->n, g->k, g->oh, g->ow));
    QD_CUDNN_TRY(cudnnSetTensor4dDescriptor(c->bd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, g->k, 1, 1));
    return QD_OK;
}

static qd_status pick_fwd(qd_backend *b, qd_cu_conv_algo *r) {
    qd_cu *c = qd_cu_of(b);
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int got = 0;
    QD_CUDNN_TRY(cudnnGetConvolutionForwardAlgorithm_v7(c->cudnn, c->xd, c->wd, c->cd, c->yd,
                                                        CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf));
    for (int i = 0; i < got; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > c->cudnn_ws_bytes) continue;
        if (b->deterministic && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
        if (!math_ok(perf[i].mathType, b->tf32)) continue;
        r->fwd = perf[i].algo;
        r->fwd_math = exec_math(perf[i].mathType, b->tf32);
        return QD_OK;
    }
    /* heuristics offered nothing usable: implicit GEMM needs no workspace and is deterministic */
    static const cudnnConvolutionFwdAlgo_t fb[] = {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                                                   CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM};
    QD_CUDNN_TRY(cudnnSetConvolutionMathType(c->cd, b->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    for (int i = 0; i < 2; i++) {
        size_t ws = 0;
        if (cudnnGetConvolutionForwardWorkspaceSize(c->cudnn, c->xd, c->wd, c->cd, c->yd, fb[i], &ws) ==
                CUDNN_STATUS_SUCCESS &&
            ws <= c->cudnn_ws_bytes) {
            r->fwd = fb[i];
            r->fwd_math = b->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
            return QD_OK;
        }
    }
    return qd_errorf(QD_ERR_INTERNAL, "cuda: no usable cuDNN forward convolution algorithm");
}

static qd_status pick_bwd_data(qd_backend *b, qd_cu_conv_algo *r) {
    qd_cu *c = qd_cu_of(b);
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int got = 0;
    QD_CUDNN_TRY(cudnnGetConvolutionBackwardDataAlgorithm_v7(c->cudnn, c->wd, c->yd, c->cd, c->xd,
                                                             CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, perf));
    for (int i = 0; i < got; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > c->cudnn_ws_bytes) continue;
        if (b->deterministic && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
        if (!math_ok(perf[i].mathType, b->tf32)) continue;
        r->bwd_data = perf[i].algo;
        r->bwd_data_math = exec_math(perf[i].mathType, b->tf32);
        return QD_OK;
    }
    /* ALGO_1 is deterministic; ALGO_0 (atomics) only when determinism is not required */
    static const cudnnConvolutionBwdDataAlgo_t fb[] = {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
                                                       CUDNN_CONVOLUTION_BWD_DATA_ALGO_0};
    QD_CUDNN_TRY(cudnnSetConvolutionMathType(c->cd, b->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    for (int i = 0; i < (b->deterministic ? 1 : 2); i++) {
        size_t ws = 0;
        if (cudnnGetConvolutionBackwardDataWorkspaceSize(c->cudnn, c->wd, c->yd, c->cd, c->xd, fb[i], &ws) ==
                CUDNN_STATUS_SUCCESS &&
            ws <= c->cudnn_ws_bytes) {
            r->bwd_data = fb[i];
            r->bwd_data_math = b->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
            return QD_OK;
        }
    }
    return qd_errorf(QD_ERR_INTERNAL, "cuda: no usable cuDNN backward-data convolution algorithm");
}

static qd_status pick_bwd_filter(qd_backend *b, qd_cu_conv_algo *r) {
    qd_cu *c = qd_cu_of(b);
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int got = 0;
    QD_CUDNN_TRY(cudnnGetConvolutionBackwardFilterAlgorithm_v7(c->cudnn, c->xd, c->yd, c->cd, c->wd,
                                                               CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, perf));
    for (int i = 0; i < got; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > c->cudnn_ws_bytes) continue;
        if (b->deterministic && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
        if (!math_ok(perf[i].mathType, b->tf32)) continue;
        r->bwd_filter = perf[i].algo;
        r->bwd_filter_math = exec_math(perf[i].mathType, b->tf32);
        return QD_OK;
    }
    /* ALGO_1 is the deterministic one; ALGO_0 and ALGO_3 use atomics */
    static const cudnnConvolutionBwdFilterAlgo_t fb[] = {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
                                                         CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
                                                         CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3};
    QD_CUDNN_TRY(cudnnSetConvolutionMathType(c->cd, b->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    for (int i = 0; i < (b->deterministic ? 1 : 3); i++) {
        size_t ws = 0;
        if (cudnnGetConvolutionBackwardFilterWorkspaceSize(c->cudnn, c->xd, c->yd, c->cd, c->wd, fb[i], &ws) ==
                CUDNN_STATUS_SUCCESS &&
            ws <= c->cudnn_ws_bytes) {
            r->bwd_filter = fb[i];
            r->bwd_filter_math = b->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
            return QD_OK;
        }
    }
    return qd_errorf(QD_ERR_INTERNAL, "cuda: no usable cuDNN backward-filter convolution algorithm");
}

static const char *math_name(cudnnMathType_t m) {
    switch (m) {
    case CUDNN_DEFAULT_MATH: return "default";
    case CUDNN_TENSOR_OP_MATH: return "tensor_op";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return "tensor_op_allow_conversion";
    case CUDNN_FMA_MATH: return "fma";
    default: return "?";
    }
}

/* One run.log event per convolution shape: which cuDNN algorithms (enum values of cudnn.h) and
 * math modes run it, so a run's numbers can be tied to its kernels (tests/cuda/cli_e2e.sh and
 * bench/gpu_check.sh read these). */
static void log_algos(qd_backend *b, const qd_cu_conv_algo *e) {
    char fields[512];
    snprintf(fields, sizeof fields,
             "\"shape\":\"n%d c%d %dx%d k%d %dx%d s%d g%d\",\"fwd_algo\":%d,\"bwd_data_algo\":%d,"
             "\"bwd_filter_algo\":%d,\"fwd_math\":\"%s\",\"bwd_data_math\":\"%s\",\"bwd_filter_math\":\"%s\","
             "\"deterministic\":%s,\"tf32\":%s",
             e->n, e->c, e->h, e->w, e->k, e->r, e->s, e->sh, e->g, (int)e->fwd, (int)e->bwd_data, (int)e->bwd_filter,
             math_name(e->fwd_math), math_name(e->bwd_data_math), math_name(e->bwd_filter_math),
             b->deterministic ? "true" : "false", b->tf32 ? "true" : "false");
    if (!qd_log_event_json) return;
    qd_log_event_json(QD_LOG_DEBUG, "cudnn_algo", fields, "cuDNN algorithms for conv n%d c%d %dx%d k%d %dx%d: fwd %d, bwd-data %d, bwd-filter %d",
                      e->n, e->c, e->h, e->w, e->k, e->r, e->s, (int)e->fwd, (int)e->bwd_data, (int)e->bwd_filter);
}

static const char *fwd_algo_name(cudnnConvolutionFwdAlgo_t a) {
    switch (a) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return "IMPLICIT_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: return "IMPLICIT_PRECOMP_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: return "GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: return "DIRECT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING: return "FFT_TILING";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    default: return "?";
    }
}

static const char *bwd_data_algo_name(cudnnConvolutionBwdDataAlgo_t a) {
    switch (a) {
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_0: return "ALGO_0";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_1: return "ALGO_1";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING: return "FFT_TILING";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    default: return "?";
    }
}

static const char *bwd_filter_algo_name(cudnnConvolutionBwdFilterAlgo_t a) {
    switch (a) {
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0: return "ALGO_0";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1: return "ALGO_1";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3: return "ALGO_3";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING: return "FFT_TILING";
    default: return "?";
    }
}

/* Appends to a bounded buffer; `len` counts what the full text needs even past `cap`. */
typedef struct desc_buf {
    char *p;
    size_t cap, len;
} desc_buf;

static void desc_put(desc_buf *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void desc_put(desc_buf *d, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *dst = d->p && d->len < d->cap ? d->p + d->len : NULL;
    size_t room = dst ? d->cap - d->len : 0;
    int n = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (n > 0) d->len += (size_t)n;
}

/* backend.h describe: the backend's math settings and, per distinct convolution shape seen so
 * far (evaluation, cache building and training batches alike), the cuDNN algorithms chosen
 * (cudnn.h enum value and name) and their math modes: "fma" means no TF32 anywhere. */
size_t qd_cu_describe(qd_backend *b, char *buf, size_t cap) {
    qd_cu *c = qd_cu_of(b);
    desc_buf d = {buf, cap, 0};
    desc_put(&d, "{\"conv\":\"cudnn\",\"gemm\":\"cublas\",\"tf32\":%s,\"deterministic\":%s,\"cublas_math\":\"%s\","
                 "\"cudnn_workspace_bytes\":%zu,\"conv_algos\":[",
             b->tf32 ? "true" : "false", b->deterministic ? "true" : "false",
             b->tf32 ? "tf32_tensor_op" : "default", c->cudnn_ws_bytes);
    for (int i = 0; i < c->nalgos; i++) {
        const qd_cu_conv_algo *e = &c->algos[i];
        desc_put(&d,
                 "%s{\"shape\":\"n%d c%d %dx%d k%d %dx%d s%dx%d p%dx%d d%dx%d g%d -> %dx%d\","
                 "\"fwd_algo\":%d,\"fwd_algo_name\":\"%s\",\"fwd_math\":\"%s\","
                 "\"bwd_data_algo\":%d,\"bwd_data_algo_name\":\"%s\",\"bwd_data_math\":\"%s\","
                 "\"bwd_filter_algo\":%d,\"bwd_filter_algo_name\":\"%s\",\"bwd_filter_math\":\"%s\"}",
                 i ? "," : "", e->n, e->c, e->h, e->w, e->k, e->r, e->s, e->sh, e->sw, e->ph, e->pw, e->dh, e->dw, e->g,
                 e->oh, e->ow, (int)e->fwd, fwd_algo_name(e->fwd), math_name(e->fwd_math), (int)e->bwd_data,
                 bwd_data_algo_name(e->bwd_data), math_name(e->bwd_data_math), (int)e->bwd_filter,
                 bwd_filter_algo_name(e->bwd_filter), math_name(e->bwd_filter_math));
    }
    desc_put(&d, "]}");
    if (buf && cap > 0 && d.len >= cap) buf[0] = 0; /* never a truncated JSON text */
    return d.len;
}

/* Cached algorithm triple for the described shape (all three chosen at first sight, so the
 * backward of a shape first seen inside a capture needs no further query). */
static qd_status conv_algos(qd_backend *b, const conv_geom *g, const qd_cu_conv_algo **out) {
    qd_cu *c = qd_cu_of(b);
    for (int i = 0; i < c->nalgos; i++)
        if (conv_key_eq(&c->algos[i], g)) {
            *out = &c->algos[i];
            return QD_OK;
        }
    if (c->nalgos == c->algos_cap) {
        int cap = c->algos_cap ? 2 * c->algos_cap : 32;
        qd_cu_conv_algo *r = (qd_cu_conv_algo *)realloc(c->algos, (size_t)cap * sizeof *r);
        if (!r) return qd_errorf(QD_ERR_INTERNAL, "cuda: out of host memory caching convolution algorithms");
        c->algos = r;
        c->algos_cap = cap;
    }
    qd_cu_conv_algo e;
    memset(&e, 0, sizeof e);
    e.n = g->n; e.c = g->c; e.h = g->h; e.w = g->w; e.k = g->k; e.r = g->r; e.s = g->s;
    e.ph = g->ph; e.pw = g->pw; e.sh = g->sh; e.sw = g->sw; e.dh = g->dh; e.dw = g->dw;
    e.g = g->g; e.oh = g->oh; e.ow = g->ow;
    QD_TRY(pick_fwd(b, &e));
    QD_TRY(pick_bwd_data(b, &e));
    QD_TRY(pick_bwd_filter(b, &e));
    log_algos(b, &e);
    c->algos[c->nalgos] = e;
    *out = &c->algos[c->nalgos++];
    return QD_OK;
}

qd_status qd_cu_conv_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                             const qd_shape *os, float *out) {
    qd_cu *c = qd_cu_of(b);
    conv_geom g;
    QD_TRY(conv_describe(b, n, is, os, &g));
    const qd_cu_conv_algo *al;
    QD_TRY(conv_algos(b, &g, &al));
    QD_CUDNN_TRY(cudnnSetConvolutionMathType(c->cd, al->fwd_math));
    QD_CUDNN_TRY(cudnnConvolutionForward(c->cudnn, &qd_one, c->xd, in[0], c->wd, in[1], c->cd, al->fwd, c->cudnn_ws,
                                         c->cudnn_ws_bytes, &qd_zero, c->yd, out));
    if (n->ninputs > 2 && in[2]) QD_CUDNN_TRY(cudnnAddTensor(c->cudnn, &qd_one, c->bd, in[2], &qd_one, c->yd, out));
    return qd_cu_post(b, "Conv forward", __FILE__, __LINE__);
}

qd_status qd_cu_conv_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                              const qd_shape *os, const float *dout, float *const *din) {
    qd_cu *c = qd_cu_of(b);
    conv_geom g;
    QD_TRY(conv_describe(b, n, is, os, &g));
    const qd_cu_conv_algo *al;
    QD_TRY(conv_algos(b, &g, &al));
    if (din[0]) {
        QD_CUDNN_TRY(cudnnSetConvolutionMathType(c->cd, al->bwd_data_math));
        QD_CUDNN_TRY(cudnnConvolutionBackwardData(c->cudnn, &qd_one, c->wd, in[1], c->yd, dout, c->cd, al->bwd_data,
                                                  c->cudnn_ws, c->cudnn_ws_bytes, &qd_one, c->xd, din[0]));
    }
    if (n->ninputs > 1 && din[1]) {
        QD_CUDNN_TRY(cudnnSetConvolutionMathType(c->cd, al->bwd_filter_math));
        QD_CUDNN_TRY(cudnnConvolutionBackwardFilter(c->cudnn, &qd_one, c->xd, in[0], c->yd, dout, c->cd,
                                                    al->bwd_filter, c->cudnn_ws, c->cudnn_ws_bytes, &qd_one, c->wd,
                                                    din[1]));
    }
    if (n->ninputs > 2 && din[2])
        QD_CUDNN_TRY(cudnnConvolutionBackwardBias(c->cudnn, &qd_one, c->yd, dout, &qd_one, c->bd, din[2]));
    return qd_cu_post(b, "Conv backward", __FILE__, __LINE__);
}

/* ------------------------------------------------------------------------------------------ */
/* Row-major GEMM: Z[M,N] = alpha op(X) op(Y) + beta Z, X stored [M,K] ([K,M] when tX),        */
/* Y stored [K,N] ([N,K] when tY). Column-major cuBLAS computes Z^T = op(Y)^T op(X)^T.          */
/* ------------------------------------------------------------------------------------------ */
static qd_status rm_gemm(qd_backend *b, int tX, int tY, int64_t M, int64_t N, int64_t K, float alpha, const float *X,
                         const float *Y, float beta, float *Z, int batch, int64_t sX, int64_t sY, int64_t sZ) {
    qd_cu *c = qd_cu_of(b);
    if (M <= 0 || N <= 0) return QD_OK;
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
        return qd_errorf(QD_ERR_UNSUPPORTED, "cuda: GEMM dimension over 2^31 (M=%lld N=%lld K=%lld)", (long long)M,
                         (long long)N, (long long)K);
    if (K == 0) return qd_errorf(QD_ERR_DATA, "cuda: GEMM with an empty inner dimension");
    cublasOperation_t oY = tY ? CUBLAS_OP_T : CUBLAS_OP_N, oX = tX ? CUBLAS_OP_T : CUBLAS_OP_N;
    int ldY = (int)(tY ? K : N), ldX = (int)(tX ? M : K), ldZ = (int)N;
    if (batch <= 1) {
        QD_CUBLAS_TRY(cublasSgemm(c->cublas, oY, oX, (int)N, (int)M, (int)K, &alpha, Y, ldY, X, ldX, &beta, Z, ldZ));
    } else {
        QD_CUBLAS_TRY(cublasSgemmStridedBatched(c->cublas, oY, oX, (int)N, (int)M, (int)K, &alpha, Y, ldY, sY, X, ldX,
                                                sX, &beta, Z, ldZ, sZ, batch));
    }
    return QD_OK;
}

/* Z[i,j] = beta * C[bcast(i,j)] for the Gemm bias term. */
__global__ void qd_k_gemm_bias(int64_t M, int64_t N, const float *C, int64_t cm, int64_t cn, float beta, float *Z) {
    int64_t total = M * N;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = e / N, j = e - i * N;
        Z[e] = beta * C[(cm > 1 ? i : 0) * cn + (cn > 1 ? j : 0)];
    }
}

/* dC[ci,cj] += beta * sum of G over the (i,j) that broadcast onto it. */
__global__ void qd_k_gemm_bias_grad(int64_t M, int64_t N, const float *G, int64_t cm, int64_t cn, float beta, float *dC) {
    int64_t total = cm * cn;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t ci = e / cn, cj = e - ci * cn;
        float acc = 0.0f;
        for (int64_t i = (cm > 1 ? ci : 0); i < (cm > 1 ? ci + 1 : M); i++)
            for (int64_t j = (cn > 1 ? cj : 0); j < (cn > 1 ? cj + 1 : N); j++) acc += G[i * N + j];
        dC[e] += beta * acc;
    }
}

static void bias_dims(const qd_shape *s, int64_t *cm, int64_t *cn) {
    if (s->ndim == 0) { *cm = 1; *cn = 1; }
    else if (s->ndim == 1) { *cm = 1; *cn = s->dims[0]; }
    else { *cm = s->dims[s->ndim - 2]; *cn = s->dims[s->ndim - 1]; }
}

static qd_status gemm_dims(const qd_node *n, const qd_shape *is, const qd_shape *os, int64_t *M, int64_t *N,
                           int64_t *K) {
    /* A of rank > 2 (transA = 0) is a stack of rows: [N, T, F] is the [N*T, F] matrix (graph.h) */
    if (is[0].ndim < 2 || is[1].ndim != 2 || os->ndim != is[0].ndim || (is[0].ndim != 2 && n->a.trans_a))
        return qd_errorf(QD_ERR_DATA, "cuda: Gemm %s: expects 2-D operands", n->name ? n->name : "?");
    int ta = n->a.trans_a, tb = n->a.trans_b, r = is[0].ndim;
    int64_t rows = 1;
    for (int d = 0; d < r - 1; d++) rows *= is[0].dims[d];
    *M = ta ? is[0].dims[1] : rows;
    *K = ta ? is[0].dims[0] : is[0].dims[r - 1];
    int64_t kb = tb ? is[1].dims[1] : is[1].dims[0];
    *N = tb ? is[1].dims[0] : is[1].dims[1];
    if (kb != *K || os->dims[r - 1] != *N)
        return qd_errorf(QD_ERR_DATA, "cuda: Gemm %s: inconsistent shapes", n->name ? n->name : "?");
    return QD_OK;
}

qd_status qd_cu_gemm_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                             const qd_shape *os, float *out) {
    int64_t M = 0, N = 0, K = 0;
    QD_TRY(gemm_dims(n, is, os, &M, &N, &K));
    float beta = 0.0f;
    if (n->ninputs > 2 && in[2] && n->a.beta != 0.0f) {
        int64_t cm = 0, cn = 0;
        bias_dims(&is[2], &cm, &cn);
        if ((cm != 1 && cm != M) || (cn != 1 && cn != N))
            return qd_errorf(QD_ERR_DATA, "cuda: Gemm %s: C does not broadcast to [%lld,%lld]", n->name ? n->name : "?",
                             (long long)M, (long long)N);
        qd_k_gemm_bias<<<qd_cu_blocks(M * N), QD_CU_THREADS, 0, qd_cu_of(b)->stream>>>(M, N, in[2], cm, cn, n->a.beta,
                                                                                       out);
        QD_CU_POST(b, "Gemm bias");
        beta = 1.0f;
    }
    QD_TRY(rm_gemm(b, n->a.trans_a, n->a.trans_b, M, N, K, n->a.alpha, in[0], in[1], beta, out, 1, 0, 0, 0));
    return qd_cu_post(b, "Gemm forward", __FILE__, __LINE__);
}

qd_status qd_cu_gemm_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                              const qd_shape *os, const float *dout, float *const *din) {
    int64_t M = 0, N = 0, K = 0;
    QD_TRY(gemm_dims(n, is, os, &M, &N, &K));
    int ta = n->a.trans_a, tb = n->a.trans_b;
    float al = n->a.alpha;
    if (din[0]) {
        if (!ta) /* dA[M,K] += al G[M,N] op(B)^T */
            QD_TRY(rm_gemm(b, 0, !tb, M, K, N, al, dout, in[1], 1.0f, din[0], 1, 0, 0, 0));
        else /* dA[K,M] += al op(B)[K,N] G^T */
            QD_TRY(rm_gemm(b, tb, 1, K, M, N, al, in[1], dout, 1.0f, din[0], 1, 0, 0, 0));
    }
    if (din[1]) {
        if (!tb) /* dB[K,N] += al op(A)^T G */
            QD_TRY(rm_gemm(b, !ta, 0, K, N, M, al, in[0], dout, 1.0f, din[1], 1, 0, 0, 0));
        else /* dB[N,K] += al G^T op(A) */
            QD_TRY(rm_gemm(b, 1, ta, N, K, M, al, dout, in[0], 1.0f, din[1], 1, 0, 0, 0));
    }
    if (n->ninputs > 2 && din[2] && in[2]) {
        int64_t cm = 0, cn = 0;
        bias_dims(&is[2], &cm, &cn);
        qd_k_gemm_bias_grad<<<qd_cu_blocks(cm * cn), QD_CU_THREADS, 0, qd_cu_of(b)->stream>>>(M, N, dout, cm, cn,
                                                                                              n->a.beta, din[2]);
    }
    return qd_cu_post(b, "Gemm backward", __FILE__, __LINE__);
}

/* ------------------------------------------------------------------------------------------ */
/* MatMul (numpy semantics): [..., M, K] x [..., K, N]. Supported batch patterns: B without
 * batch (folded into M), equal batches (strided batched), A without batch (stride 0). */
/* ------------------------------------------------------------------------------------------ */
typedef struct mm_geom {
    int64_t M = 0, N = 0, K = 0, ba = 0, bb = 0, bo = 0;
} mm_geom;

static qd_status mm_dims(const qd_node *n, const qd_shape *is, const qd_shape *os, mm_geom *g) {
    const qd_shape *A = &is[0], *B = &is[1];
    if (A->ndim < 1 || B->ndim < 1)
        return qd_errorf(QD_ERR_DATA, "cuda: MatMul %s: scalar operand", n->name ? n->name : "?");
    g->M = A->ndim >= 2 ? A->dims[A->ndim - 2] : 1;
    g->K = A->dims[A->ndim - 1];
    int64_t kb = B->ndim >= 2 ? B->dims[B->ndim - 2] : B->dims[0];
    g->N = B->ndim >= 2 ? B->dims[B->ndim - 1] : 1;
    g->ba = 1;
    for (int i = 0; i < A->ndim - 2; i++) g->ba *= A->dims[i];
    g->bb = 1;
    for (int i = 0; i < B->ndim - 2; i++) g->bb *= B->dims[i];
    g->bo = g->ba > g->bb ? g->ba : g->bb;
    if (kb != g->K || qd_cu_numel(os) != g->bo * g->M * g->N)
        return qd_errorf(QD_ERR_DATA, "cuda: MatMul %s: inconsistent shapes", n->name ? n->name : "?");
    if (!(g->bb == 1 || g->ba == g->bb || g->ba == 1))
        return qd_errorf(QD_ERR_UNSUPPORTED, "cuda: MatMul %s: broadcast of batch %lld against %lld is not supported",
                         n->name ? n->name : "?", (long long)g->ba, (long long)g->bb);
    return QD_OK;
}

qd_status qd_cu_matmul_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                               const qd_shape *os, float *out) {
    mm_geom g = {0};
    QD_TRY(mm_dims(n, is, os, &g));
    if (g.bb == 1)
        QD_TRY(rm_gemm(b, 0, 0, g.ba * g.M, g.N, g.K, 1.0f, in[0], in[1], 0.0f, out, 1, 0, 0, 0));
    else
        QD_TRY(rm_gemm(b, 0, 0, g.M, g.N, g.K, 1.0f, in[0], in[1], 0.0f, out, (int)g.bo, g.ba == 1 ? 0 : g.M * g.K,
                       g.K * g.N, g.M * g.N));
    return qd_cu_post(b, "MatMul forward", __FILE__, __LINE__);
}

qd_status qd_cu_matmul_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                                const qd_shape *os, const float *dout, float *const *din) {
    mm_geom g = {0};
    QD_TRY(mm_dims(n, is, os, &g));
    if (g.bb == 1) {
        int64_t Mf = g.ba * g.M;
        if (din[0]) QD_TRY(rm_gemm(b, 0, 1, Mf, g.K, g.N, 1.0f, dout, in[1], 1.0f, din[0], 1, 0, 0, 0));
        if (din[1]) QD_TRY(rm_gemm(b, 1, 0, g.K, g.N, Mf, 1.0f, in[0], dout, 1.0f, din[1], 1, 0, 0, 0));
    } else if (g.ba == g.bb) {
        int bt = (int)g.bo;
        if (din[0])
            QD_TRY(rm_gemm(b, 0, 1, g.M, g.K, g.N, 1.0f, dout, in[1], 1.0f, din[0], bt, g.M * g.N, g.K * g.N,
                           g.M * g.K));
        if (din[1])
            QD_TRY(rm_gemm(b, 1, 0, g.K, g.N, g.M, 1.0f, in[0], dout, 1.0f, din[1], bt, g.M * g.K, g.M * g.N,
                           g.K * g.N));
    } else { /* A broadcast over B's batch: dA sums over the batch in order */
        if (din[0])
            for (int64_t t = 0; t < g.bo; t++)
                QD_TRY(rm_gemm(b, 0, 1, g.M, g.K, g.N, 1.0f, dout + t * g.M * g.N, in[1] + t * g.K * g.N, 1.0f, din[0],
                               1, 0, 0, 0));
        if (din[1])
            QD_TRY(rm_gemm(b, 1, 0, g.K, g.N, g.M, 1.0f, in[0], dout, 1.0f, din[1], (int)g.bo, 0, g.M * g.N,
                           g.K * g.N));
    }
    return qd_cu_post(b, "MatMul backward", __FILE__, __LINE__);
}
