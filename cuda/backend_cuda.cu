/* cuda/backend_cuda.cu: the CUDA backend's life cycle, memory, copies, error mapping, CUDA
 * Graph capture and the ops table. Graph ops live in ops_cuda.cu / conv_cuda.cu, the fused
 * reconstruction kernels in recon_cuda.cu. Numerical policy: docs/numerics.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd_cuda.cuh"

/* ------------------------------------------------------------------------------------------ */
/* Error mapping                                                                               */
/* ------------------------------------------------------------------------------------------ */
static const char *qd_cu_base(const char *file) {
    const char *s = strrchr(file, '/');
    return s ? s + 1 : file;
}

qd_status qd_cu_err(cudaError_t e, const char *api, const char *file, int line) {
    qd_status st = (e == cudaErrorMemoryAllocation) ? QD_ERR_DEVICE_OOM : QD_ERR_INTERNAL;
    (void)cudaGetLastError(); /* clear a non-sticky error so later calls are not blamed */
    return qd_errorf(st, "cuda: %s failed: %s at %s:%d", api, cudaGetErrorString(e), qd_cu_base(file), line);
}

qd_status qd_cu_dnn_err(cudnnStatus_t e, const char *api, const char *file, int line) {
    qd_status st = (e == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
                    e == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
                       ? QD_ERR_DEVICE_OOM
                       : QD_ERR_INTERNAL;
    /* cuDNN 9 keeps a message saying which descriptor field or limit it refused: the status name
     * alone (e.g. CUDNN_STATUS_BAD_PARAM) rarely tells. Newlines would break the one-line error. */
    char detail[512];
    detail[0] = 0;
#if defined(CUDNN_MAJOR) && CUDNN_MAJOR >= 9
    cudnnGetLastErrorString(detail, sizeof detail);
    detail[sizeof detail - 1] = 0;
    for (char *q = detail; *q; q++)
        if (*q == '\n' || *q == '\r') *q = ' ';
#endif
    const int have = detail[0] != 0;
    return qd_errorf(st, "cuda: %s failed: %s%s%s%s at %s:%d", api, cudnnGetErrorString(e), have ? " (cuDNN: " : "",
                     have ? detail : "", have ? ")" : "", qd_cu_base(file), line);
}

qd_status qd_cu_blas_err(cublasStatus_t e, const char *api, const char *file, int line) {
    qd_status st = (e == CUBLAS_STATUS_ALLOC_FAILED) ? QD_ERR_DEVICE_OOM : QD_ERR_INTERNAL;
    return qd_errorf(st, "cuda: %s failed: %s at %s:%d", api, cublasGetStatusString(e), qd_cu_base(file), line);
}

qd_status qd_cu_post(qd_backend *b, const char *what, const char *file, int line) {
    qd_cu *c = qd_cu_of(b);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return qd_cu_err(e, what, file, line);
    if (c->sync_each && !c->capturing) {
        e = cudaStreamSynchronize(c->stream);
        if (e != cudaSuccess) return qd_cu_err(e, what, file, line);
    }
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Deterministic reduction, pass 2                                                              */
/* ------------------------------------------------------------------------------------------ */
/* One block sums the per-block partials in a fixed order (strided per thread, then a fixed
 * shared-memory tree), so the result depends only on the partials, never on timing. */
__global__ void qd_k_reduce_finish(const double *partials, unsigned nblocks, double scale, float *acc) {
    __shared__ double sh[QD_CU_THREADS];
    double s = 0.0;
    for (unsigned i = threadIdx.x; i < nblocks; i += blockDim.x) s += partials[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (unsigned w = blockDim.x / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) *acc += (float)(scale * sh[0]);
}

qd_status qd_cu_reduce_finish(qd_backend *b, unsigned nblocks, double scale, float *acc) {
    qd_cu *c = qd_cu_of(b);
    qd_k_reduce_finish<<<1, QD_CU_THREADS, 0, c->stream>>>(c->partials, nblocks, scale, acc);
    return qd_cu_post(b, "reduce_finish", __FILE__, __LINE__);
}

/* ------------------------------------------------------------------------------------------ */
/* Availability, versions                                                                      */
/* ------------------------------------------------------------------------------------------ */
/* Why no device is usable, from the device-count call's error: the first thing to read when a
 * GPU machine's first run fails (no driver in the container, a driver older than the CUDA
 * runtime this binary was built with, no device visible). Filled by qd_cuda_available(). */
static char qd_cu_why[384];

static void qd_cu_explain(cudaError_t e, int n) {
    int rt = 0, drv = 0;
    if (cudaRuntimeGetVersion(&rt) != cudaSuccess) rt = 0;
    if (cudaDriverGetVersion(&drv) != cudaSuccess) drv = 0;
    (void)cudaGetLastError();
    const char *hint;
    switch (e) {
    case cudaSuccess: hint = n > 0 ? "a device is usable" : "the driver reports 0 devices"; break;
    case cudaErrorInsufficientDriver:
        /* the runtime reports this also when there is no driver at all (driver version 0) */
        hint = drv == 0 ? "no NVIDIA driver found (libcuda.so.1 is not installed or not loadable)"
                        : "the NVIDIA driver is older than this binary's CUDA runtime (update the driver, or build "
                          "with an older CUDA toolkit)";
        break;
    case cudaErrorNoDevice: hint = "no CUDA device is visible (check CUDA_VISIBLE_DEVICES, --gpus)"; break;
    case cudaErrorInitializationError:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice: hint = "the NVIDIA driver could not be initialised"; break;
    default: hint = "no usable NVIDIA driver or device"; break;
    }
    char dv[32];
    if (drv > 0) snprintf(dv, sizeof dv, "%d.%d", drv / 1000, (drv % 1000) / 10);
    else snprintf(dv, sizeof dv, "none");
    snprintf(qd_cu_why, sizeof qd_cu_why, "%s: cudaGetDeviceCount: %s (%s); driver supports CUDA %s, runtime %d.%d", hint,
             e == cudaSuccess ? "0 devices" : cudaGetErrorName(e), e == cudaSuccess ? "no error" : cudaGetErrorString(e),
             dv, rt / 1000, (rt % 1000) / 10);
}

extern "C" int qd_cuda_available(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) (void)cudaGetLastError();
    if (e != cudaSuccess || n <= 0) {
        qd_cu_explain(e, n);
        return 0;
    }
    qd_cu_why[0] = 0;
    return 1;
}

extern "C" const char *qd_cuda_unavailable_reason(void) {
    if (!qd_cu_why[0] && !qd_cuda_available()) return "no usable CUDA device";
    return qd_cu_why[0] ? qd_cu_why : "a CUDA device is usable";
}

extern "C" int qd_cuda_memory_info(int64_t *used_bytes, int64_t *total_bytes) {
    size_t fr = 0, tot = 0;
    if (used_bytes) *used_bytes = 0;
    if (total_bytes) *total_bytes = 0;
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
        (void)cudaGetLastError();
        return -1;
    }
    if (used_bytes) *used_bytes = (int64_t)(tot - fr);
    if (total_bytes) *total_bytes = (int64_t)tot;
    return 0;
}

extern "C" void qd_cuda_versions(char *buf, size_t n) {
    if (!buf || n == 0) return;
    int rt = 0, drv = 0;
    if (cudaRuntimeGetVersion(&rt) != cudaSuccess) rt = 0;
    if (cudaDriverGetVersion(&drv) != cudaSuccess) drv = 0;
    (void)cudaGetLastError();
    size_t dnn = cudnnGetVersion();
    int bmaj = 0, bmin = 0, bpat = 0;
    if (cublasGetProperty(MAJOR_VERSION, &bmaj) != CUBLAS_STATUS_SUCCESS) bmaj = 0;
    if (cublasGetProperty(MINOR_VERSION, &bmin) != CUBLAS_STATUS_SUCCESS) bmin = 0;
    if (cublasGetProperty(PATCH_LEVEL, &bpat) != CUBLAS_STATUS_SUCCESS) bpat = 0;
    char dstr[32];
    if (drv > 0)
        snprintf(dstr, sizeof dstr, "%d.%d", drv / 1000, (drv % 1000) / 10);
    else
        snprintf(dstr, sizeof dstr, "none");
    /* cuDNN 9 encodes major*10000 + minor*100 + patch. */
    snprintf(buf, n, "CUDA runtime %d.%d, driver %s, cuDNN %d.%d.%d, cuBLAS %d.%d.%d", rt / 1000,
             (rt % 1000) / 10, dstr, (int)(dnn / 10000), (int)((dnn % 10000) / 100), (int)(dnn % 100), bmaj,
             bmin, bpat);
}

/* ------------------------------------------------------------------------------------------ */
/* Memory                                                                                      */
/* ------------------------------------------------------------------------------------------ */
static qd_status qd_cu_not_capturing(qd_cu *c, const char *what) {
    if (c->capturing)
        return qd_errorf(QD_ERR_INTERNAL, "cuda: %s is not allowed while an iteration is being captured", what);
    return QD_OK;
}

static void *qd_cu_alloc(qd_backend *b, size_t bytes) {
    qd_cu *c = qd_cu_of(b);
    if (qd_cu_not_capturing(c, "alloc") != QD_OK) return NULL;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 16);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t fr = 0, tot = 0;
        if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) (void)cudaGetLastError();
        if (e == cudaErrorMemoryAllocation)
            qd_errorf(QD_ERR_DEVICE_OOM,
                      "cuda: out of device memory: %zu bytes needed, %zu of %zu bytes free, cache budget %lld bytes",
                      bytes, fr, tot, (long long)b->memory_budget);
        else
            qd_errorf(QD_ERR_INTERNAL, "cuda: cudaMalloc(%zu bytes) failed: %s", bytes, cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

/* cudaFree synchronises the device and is illegal while a stream captures: it would invalidate
 * the capture, and the error would surface later, far from here. Refused like alloc/upload: a
 * free during capture is a caller bug; the error is recorded (qd_error_message) and the block
 * is left allocated rather than breaking the capture. */
static void qd_cu_free(qd_backend *b, void *p) {
    if (!p) return;
    if (qd_cu_not_capturing(qd_cu_of(b), "free") != QD_OK) return;
    (void)cudaFree(p);
}

static int qd_cu_cache_push(qd_cu *c, void *p, size_t bytes, int on_device) {
    if (c->ncaches == c->caches_cap) {
        int cap = c->caches_cap ? c->caches_cap * 2 : 16;
        qd_cu_cache_rec *r = (qd_cu_cache_rec *)realloc(c->caches, (size_t)cap * sizeof *r);
        if (!r) return -1;
        c->caches = r;
        c->caches_cap = cap;
    }
    c->caches[c->ncaches].p = p;
    c->caches[c->ncaches].bytes = bytes;
    c->caches[c->ncaches].on_device = on_device;
    c->ncaches++;
    return 0;
}

/* Unit caches: device memory while the caches' total stays within memory_budget (0 = as long
 * as cudaMalloc succeeds), else mapped pinned host memory read by kernels over PCIe/NVLink-C2C
 * (zero-copy; the pointer is valid on the device through unified addressing). */
static void *qd_cu_alloc_cache(qd_backend *b, size_t bytes, int *on_device) {
    qd_cu *c = qd_cu_of(b);
    if (on_device) *on_device = 0;
    if (qd_cu_not_capturing(c, "alloc_cache") != QD_OK) return NULL;
    size_t want = bytes ? bytes : 16;
    int fits = b->memory_budget <= 0 || (int64_t)(c->cache_device_bytes + want) <= b->memory_budget;
    void *p = NULL;
    if (fits) {
        if (cudaMalloc(&p, want) == cudaSuccess) {
            if (qd_cu_cache_push(c, p, want, 1) != 0) {
                (void)cudaFree(p);
                qd_errorf(QD_ERR_INTERNAL, "cuda: out of host memory recording a cache allocation");
                return NULL;
            }
            c->cache_device_bytes += want;
            if (on_device) *on_device = 1;
            return p;
        }
        (void)cudaGetLastError();
        p = NULL;
    }
    cudaError_t e = cudaHostAlloc(&p, want, cudaHostAllocMapped);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        qd_errorf(QD_ERR_DEVICE_OOM,
                  "cuda: cannot place a %zu-byte cache: device cache budget %lld bytes (%zu in use) and pinned host "
                  "allocation failed: %s",
                  bytes, (long long)b->memory_budget, c->cache_device_bytes, cudaGetErrorString(e));
        return NULL;
    }
    void *dp = NULL;
    e = cudaHostGetDevicePointer(&dp, p, 0);
    if (e != cudaSuccess || dp != p) {
        (void)cudaGetLastError();
        (void)cudaFreeHost(p);
        qd_errorf(QD_ERR_INTERNAL, "cuda: mapped pinned memory is not unified-addressed (%s)",
                  e != cudaSuccess ? cudaGetErrorString(e) : "device pointer differs");
        return NULL;
    }
    if (qd_cu_cache_push(c, p, want, 0) != 0) {
        (void)cudaFreeHost(p);
        qd_errorf(QD_ERR_INTERNAL, "cuda: out of host memory recording a cache allocation");
        return NULL;
    }
    return p;
}

static void qd_cu_free_cache(qd_backend *b, void *p) {
    qd_cu *c = qd_cu_of(b);
    if (!p) return;
    if (qd_cu_not_capturing(c, "free_cache") != QD_OK) return; /* as qd_cu_free */
    for (int i = 0; i < c->ncaches; i++) {
        if (c->caches[i].p != p) continue;
        if (c->caches[i].on_device) {
            (void)cudaFree(p);
            c->cache_device_bytes -= c->caches[i].bytes;
        } else {
            (void)cudaFreeHost(p);
        }
        c->caches[i] = c->caches[--c->ncaches];
        return;
    }
    /* not a cache allocation: treat as plain device memory */
    (void)cudaFree(p);
}

static qd_status qd_cu_upload(qd_backend *b, void *dst, const void *src_host, size_t bytes) {
    qd_cu *c = qd_cu_of(b);
    QD_TRY(qd_cu_not_capturing(c, "upload"));
    if (bytes == 0) return QD_OK;
    QD_CUDA_TRY(cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyDefault, c->stream));
    /* synchronous like the CPU twin: the caller may reuse src_host at once */
    QD_CUDA_TRY(cudaStreamSynchronize(c->stream));
    return QD_OK;
}

static qd_status qd_cu_download(qd_backend *b, void *dst_host, const void *src, size_t bytes) {
    qd_cu *c = qd_cu_of(b);
    QD_TRY(qd_cu_not_capturing(c, "download"));
    if (bytes == 0) return QD_OK;
    QD_CUDA_TRY(cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDefault, c->stream));
    QD_CUDA_TRY(cudaStreamSynchronize(c->stream));
    return QD_OK;
}

static qd_status qd_cu_copy(qd_backend *b, void *dst, const void *src, size_t bytes) {
    qd_cu *c = qd_cu_of(b);
    if (bytes == 0 || dst == src) return QD_OK;
    QD_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, c->stream));
    return qd_cu_post(b, "copy", __FILE__, __LINE__);
}

static qd_status qd_cu_zero(qd_backend *b, void *dst, size_t bytes) {
    qd_cu *c = qd_cu_of(b);
    if (bytes == 0) return QD_OK;
    QD_CUDA_TRY(cudaMemsetAsync(dst, 0, bytes, c->stream));
    return qd_cu_post(b, "zero", __FILE__, __LINE__);
}

static qd_status qd_cu_sync(qd_backend *b) {
    qd_cu *c = qd_cu_of(b);
    QD_TRY(qd_cu_not_capturing(c, "sync"));
    QD_CUDA_TRY(cudaStreamSynchronize(c->stream));
    QD_CUDA_TRY(cudaGetLastError());
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* CUDA Graph capture of one iteration                                                          */
/* ------------------------------------------------------------------------------------------ */
static qd_status qd_cu_capture_begin(qd_backend *b) {
    qd_cu *c = qd_cu_of(b);
    if (c->capturing) return qd_errorf(QD_ERR_INTERNAL, "cuda: capture_begin while already capturing");
    /* Thread-local mode: other threads' unrelated CUDA calls do not invalidate the capture. */
    QD_CUDA_TRY(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    c->capturing = 1;
    return QD_OK;
}

static qd_status qd_cu_capture_end(qd_backend *b, void **graph) {
    qd_cu *c = qd_cu_of(b);
    if (graph) *graph = NULL;
    if (!c->capturing) return qd_errorf(QD_ERR_INTERNAL, "cuda: capture_end without capture_begin");
    c->capturing = 0;
    cudaGraph_t g = NULL;
    QD_CUDA_TRY(cudaStreamEndCapture(c->stream, &g));
    cudaGraphExec_t ex = NULL;
    cudaError_t e = cudaGraphInstantiate(&ex, g, 0);
    (void)cudaGraphDestroy(g);
    if (e != cudaSuccess) return qd_cu_err(e, "cudaGraphInstantiate", __FILE__, __LINE__);
    if (graph) *graph = (void *)ex;
    else (void)cudaGraphExecDestroy(ex);
    return QD_OK;
}

static qd_status qd_cu_graph_launch(qd_backend *b, void *graph) {
    qd_cu *c = qd_cu_of(b);
    if (!graph) return qd_errorf(QD_ERR_INTERNAL, "cuda: graph_launch of a NULL graph");
    QD_CUDA_TRY(cudaGraphLaunch((cudaGraphExec_t)graph, c->stream));
    return qd_cu_post(b, "graph_launch", __FILE__, __LINE__);
}

static void qd_cu_graph_destroy(qd_backend *b, void *graph) {
    (void)b;
    if (graph) (void)cudaGraphExecDestroy((cudaGraphExec_t)graph);
}

/* ------------------------------------------------------------------------------------------ */
/* Life cycle                                                                                   */
/* ------------------------------------------------------------------------------------------ */
static void qd_cu_destroy(qd_backend *b) {
    if (!b) return;
    qd_cu *c = qd_cu_of(b);
    if (c) {
        if (c->stream) (void)cudaStreamSynchronize(c->stream);
        for (int i = 0; i < c->ncaches; i++) {
            if (c->caches[i].on_device) (void)cudaFree(c->caches[i].p);
            else (void)cudaFreeHost(c->caches[i].p);
        }
        free(c->caches);
        qd_cu_conv_cache_free(c);
        if (c->xd) cudnnDestroyTensorDescriptor(c->xd);
        if (c->yd) cudnnDestroyTensorDescriptor(c->yd);
        if (c->bd) cudnnDestroyTensorDescriptor(c->bd);
        if (c->wd) cudnnDestroyFilterDescriptor(c->wd);
        if (c->cd) cudnnDestroyConvolutionDescriptor(c->cd);
        if (c->cudnn) cudnnDestroy(c->cudnn);
        if (c->cublas) cublasDestroy(c->cublas);
        if (c->cudnn_ws) (void)cudaFree(c->cudnn_ws);
        if (c->cublas_ws) (void)cudaFree(c->cublas_ws);
        if (c->partials) (void)cudaFree(c->partials);
        if (c->stream) (void)cudaStreamDestroy(c->stream);
        (void)cudaGetLastError();
        free(c);
    }
    free(b);
}

/* The CUDA backend's operations, fixed at compile time. Designated initializers (C++20, accepted
 * by nvcc in its default dialect too) must follow the declaration order in C++. */
static const qd_backend_ops qd_cu_ops = {
    .name = "cuda",
    .destroy = qd_cu_destroy,
    .alloc = qd_cu_alloc,
    .alloc_cache = qd_cu_alloc_cache,
    .free = qd_cu_free,
    .free_cache = qd_cu_free_cache,
    .upload = qd_cu_upload,
    .download = qd_cu_download,
    .copy = qd_cu_copy,
    .zero = qd_cu_zero,
    .sync = qd_cu_sync,
    .supports_op = qd_cu_supports_op,
    .node_forward = qd_cu_node_forward,
    .node_backward = qd_cu_node_backward,
    .iter_advance = qd_cu_iter_advance,
    .draw_batch = qd_cu_draw_batch,
    .gather_mix = qd_cu_gather_mix,
    .fq_forward = qd_cu_fq_forward,
    .fq_backward = qd_cu_fq_backward,
    .adaround_init = qd_cu_adaround_init,
    .adaround_weight = qd_cu_adaround_weight,
    .adaround_step = qd_cu_adaround_step,
    .scale_step = qd_cu_scale_step,
    .mse_loss = qd_cu_mse_loss,
    .lp_loss = qd_cu_lp_loss,
    .check_finite = qd_cu_check_finite,
    .capture_begin = qd_cu_capture_begin,
    .capture_end = qd_cu_capture_end,
    .graph_launch = qd_cu_graph_launch,
    .graph_destroy = qd_cu_graph_destroy,
    .keep_mask = qd_cu_keep_mask,
    .describe = qd_cu_describe,
};

static qd_status qd_cu_setup(qd_backend *b, qd_cu *c, const qd_backend_options *opt) {
    QD_CUDA_TRY(cudaSetDevice(c->device));
    cudaDeviceProp prop;
    QD_CUDA_TRY(cudaGetDeviceProperties(&prop, c->device));
    snprintf(b->device_name, sizeof b->device_name, "%.120s", prop.name);
    QD_CUDA_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));

    QD_CUDNN_TRY(cudnnCreate(&c->cudnn));
    QD_CUDNN_TRY(cudnnSetStream(c->cudnn, c->stream));
    QD_CUDNN_TRY(cudnnCreateTensorDescriptor(&c->xd));
    QD_CUDNN_TRY(cudnnCreateTensorDescriptor(&c->yd));
    QD_CUDNN_TRY(cudnnCreateTensorDescriptor(&c->bd));
    QD_CUDNN_TRY(cudnnCreateFilterDescriptor(&c->wd));
    QD_CUDNN_TRY(cudnnCreateConvolutionDescriptor(&c->cd));

    /* Workspaces are reserved once: nothing may allocate while an iteration is captured. */
    size_t ws = QD_CU_CUDNN_WS;
    while (cudaMalloc(&c->cudnn_ws, ws) != cudaSuccess) {
        (void)cudaGetLastError();
        c->cudnn_ws = NULL;
        if (ws <= (4u << 20))
            return qd_errorf(QD_ERR_DEVICE_OOM, "cuda: cannot reserve a %zu-byte cuDNN workspace", ws);
        ws /= 2;
    }
    c->cudnn_ws_bytes = ws;
    QD_CUDA_TRY(cudaMalloc(&c->cublas_ws, QD_CU_CUBLAS_WS));
    QD_CUDA_TRY(cudaMalloc((void **)&c->partials, QD_CU_RED_BLOCKS * sizeof(double)));

    QD_CUBLAS_TRY(cublasCreate(&c->cublas));
    /* cublasSetStream resets the workspace to the default pool: set the stream first. */
    QD_CUBLAS_TRY(cublasSetStream(c->cublas, c->stream));
    QD_CUBLAS_TRY(cublasSetWorkspace(c->cublas, c->cublas_ws, QD_CU_CUBLAS_WS));
    QD_CUBLAS_TRY(cublasSetPointerMode(c->cublas, CUBLAS_POINTER_MODE_HOST));
    QD_CUBLAS_TRY(cublasSetAtomicsMode(c->cublas, CUBLAS_ATOMICS_NOT_ALLOWED));
    QD_CUBLAS_TRY(cublasSetMathMode(c->cublas, opt->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    QD_CUDA_TRY(cudaStreamSynchronize(c->stream));
    return QD_OK;
}

extern "C" qd_status qd_cuda_backend_create(const qd_backend_options *opt, qd_backend **out) {
    if (!out) return qd_errorf(QD_ERR_INTERNAL, "cuda: qd_cuda_backend_create: out is NULL");
    *out = NULL;
    qd_backend_options defaults;
    memset(&defaults, 0, sizeof defaults);
    if (!opt) opt = &defaults;
    if (!qd_cuda_available())
        return qd_errorf(QD_ERR_NODEVICE, "cuda: no usable CUDA device (%s)", qd_cuda_unavailable_reason());
    qd_backend *b = (qd_backend *)calloc(1, sizeof *b);
    qd_cu *c = (qd_cu *)calloc(1, sizeof *c);
    if (!b || !c) {
        free(b);
        free(c);
        return qd_errorf(QD_ERR_INTERNAL, "cuda: out of host memory creating the backend");
    }
    b->ops = &qd_cu_ops;
    b->impl = c;
    b->threads = 1;
    b->deterministic = opt->deterministic ? 1 : 0;
    b->tf32 = opt->tf32 ? 1 : 0;
    b->memory_budget = opt->memory_budget > 0 ? opt->memory_budget : 0;
    c->device = 0; /* device selection is CUDA_VISIBLE_DEVICES' job */
    const char *se = getenv("QD_SYNC_EACH_OP");
    c->sync_each = (se && se[0] == '1');
    qd_status st = qd_cu_setup(b, c, opt);
    if (st != QD_OK) {
        qd_cu_destroy(b);
        return st;
    }
    *out = b;
    return QD_OK;
}
