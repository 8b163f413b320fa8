/* src/cpu/cpu_conv.c: 2-D convolution (groups, strides, pads, dilations, bias) for the CPU
 * backend. Ungrouped convolutions: oneDNN's direct (JIT) kernels when the build has oneDNN
 * (cpu_conv_dnnl.c; about 2-4x faster than im2col here), else, and for grouped ones, im2col +
 * single-threaded OpenBLAS sgemm per sample group, groups spread over the pool. Depthwise (one input channel per group): direct loops (a GEMM per channel
 * would be mostly call overhead). Weight gradients are reduced per fixed chunk of samples and
 * summed in chunk order, so the result does not depend on the thread count. */
#include <cblas.h>
#include <string.h>

#include "core/simd.h"
#include "cpu/cpu_conv.h"

static qd_status conv_setup(const qd_node *n, const qd_shape *is, const float *const *in, const qd_shape *os,
                            conv_p *p) {
    memset(p, 0, sizeof *p);
    if (is[0].ndim != 4 || is[1].ndim != 4 || os->ndim != 4)
        return qd_errorf(QD_ERR_UNSUPPORTED, "node %s: Conv: only 2-D convolution (4-D tensors) is supported (input rank %d)",
                         n->name, is[0].ndim);
    const qd_attrs *a = &n->a;
    p->N = is[0].dims[0]; p->C = is[0].dims[1]; p->H = is[0].dims[2]; p->W = is[0].dims[3];
    p->O = is[1].dims[0]; p->OH = os->dims[2]; p->OW = os->dims[3];
    p->kh = (int)is[1].dims[2]; p->kw = (int)is[1].dims[3];
    p->sh = a->stride[0] > 0 ? a->stride[0] : 1; p->sw = a->stride[1] > 0 ? a->stride[1] : 1;
    p->dh = a->dilation[0] > 0 ? a->dilation[0] : 1; p->dw = a->dilation[1] > 0 ? a->dilation[1] : 1;
    p->pt = a->pads[0]; p->pl = a->pads[1]; p->pb = a->pads[2]; p->pr = a->pads[3];
    p->G = a->group > 0 ? a->group : 1;
    if (p->C % p->G || p->O % p->G || is[1].dims[1] != p->C / p->G || os->dims[1] != p->O || os->dims[0] != p->N)
        return qd_errorf(QD_ERR_DATA, "node %s: Conv: inconsistent shapes (C=%lld O=%lld group=%d weight C/g=%lld)", n->name,
                         (long long)p->C, (long long)p->O, p->G, (long long)is[1].dims[1]);
    p->Cg = p->C / p->G; p->Og = p->O / p->G;
    p->CKK = p->Cg * p->kh * p->kw;
    p->OHW = p->OH * p->OW; p->HW = p->H * p->W;
    p->pointwise = p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && p->pt == 0 && p->pl == 0 &&
                   p->OH == p->H && p->OW == p->W;
    p->x = in[0]; p->w = in[1];
    p->bias = (n->ninputs > 2) ? in[2] : NULL;
    return QD_OK;
}

/* Output positions o in [lo, hi) whose input coordinate o*s - pad + k*d lies in [0, len). */
static void valid_range(int64_t out_len, int64_t len, int s, int pad, int64_t koff, int64_t *lo, int64_t *hi) {
    int64_t base = koff - pad;                /* coordinate = o*s + base */
    int64_t l = 0;
    if (base < 0) l = (-base + s - 1) / s;
    int64_t h = 0;
    if (len - 1 - base >= 0) h = (len - 1 - base) / s + 1;
    if (h > out_len) h = out_len;
    if (l > h) l = h;
    *lo = l; *hi = h;
}

/* col[(c*kh + ki)*kw + kj][oh*OW + ow] = x[c][ih][iw] (0 in the padding); rows are ld floats
 * apart (several samples share one column matrix, side by side). x points at the group's first
 * channel of one sample. */
QD_SIMD_CLONES
static void im2col(const conv_p *p, const float *x, float *col, int64_t ld) {
    for (int64_t c = 0; c < p->Cg; c++) {
        const float *xc = x + c * p->HW;
        for (int ki = 0; ki < p->kh; ki++) {
            int64_t ohlo, ohhi;
            valid_range(p->OH, p->H, p->sh, p->pt, (int64_t)ki * p->dh, &ohlo, &ohhi);
            for (int kj = 0; kj < p->kw; kj++) {
                float *row = col + ((c * p->kh + ki) * p->kw + kj) * ld;
                int64_t owlo, owhi;
                valid_range(p->OW, p->W, p->sw, p->pl, (int64_t)kj * p->dw, &owlo, &owhi);
                for (int64_t oh = 0; oh < p->OH; oh++) {
                    float *r = row + oh * p->OW;
                    if (oh < ohlo || oh >= ohhi || owlo >= owhi) { memset(r, 0, sizeof(float) * (size_t)p->OW); continue; }
                    const float *xr = xc + (oh * p->sh - p->pt + (int64_t)ki * p->dh) * p->W;
                    int64_t iw0 = -p->pl + (int64_t)kj * p->dw;
                    for (int64_t ow = 0; ow < owlo; ow++) r[ow] = 0.0f;
                    if (p->sw == 1) { /* rows are short (8-56 floats): an inline loop beats a memcpy call */
                        const float *src = xr + iw0;
                        for (int64_t ow = owlo; ow < owhi; ow++) r[ow] = src[ow];
                    }
                    else for (int64_t ow = owlo; ow < owhi; ow++) r[ow] = xr[ow * p->sw + iw0];
                    for (int64_t ow = owhi; ow < p->OW; ow++) r[ow] = 0.0f;
                }
            }
        }
    }
}

/* dx[c][ih][iw] += col[...] (adjoint of im2col, rows ld floats apart), fixed loop order. */
QD_SIMD_CLONES
static void col2im_add(const conv_p *p, const float *col, int64_t ld, float *dx) {
    for (int64_t c = 0; c < p->Cg; c++) {
        float *xc = dx + c * p->HW;
        for (int ki = 0; ki < p->kh; ki++) {
            int64_t ohlo, ohhi;
            valid_range(p->OH, p->H, p->sh, p->pt, (int64_t)ki * p->dh, &ohlo, &ohhi);
            for (int kj = 0; kj < p->kw; kj++) {
                const float *row = col + ((c * p->kh + ki) * p->kw + kj) * ld;
                int64_t owlo, owhi;
                valid_range(p->OW, p->W, p->sw, p->pl, (int64_t)kj * p->dw, &owlo, &owhi);
                for (int64_t oh = ohlo; oh < ohhi; oh++) {
                    const float *r = row + oh * p->OW;
                    float *xr = xc + (oh * p->sh - p->pt + (int64_t)ki * p->dh) * p->W;
                    int64_t iw0 = -p->pl + (int64_t)kj * p->dw;
                    for (int64_t ow = owlo; ow < owhi; ow++) xr[ow * p->sw + iw0] += r[ow];
                }
            }
        }
    }
}

typedef struct { const conv_p *p; qd_backend *b; } conv_task;

/* Samples per GEMM: small feature maps (CIFAR 8x8, ImageNet 7x7) give per-sample GEMMs of 49-64
 * columns where packing the weights dominates, so up to QD_CONV_GROUP_COLS columns of several
 * samples share one column matrix. Depends on the shape only (never on the thread count). */
#ifndef QD_CONV_GROUP_COLS
#define QD_CONV_GROUP_COLS 512  /* task-clock of the default run: 128/512/1024/2048 cols -> 52.3/52.4/53.3/58.7 s */
#endif
static int64_t conv_group(const conv_p *p) {
    int64_t sg = QD_CONV_GROUP_COLS / p->OHW;
    if (sg < 1) sg = 1;
    if (sg > p->N) sg = p->N;
    return sg;
}

/* Per-thread scratch of the GEMM path: column matrix [CKK, sg*OHW] + output/gradient block
 * [Og, sg*OHW]. */
static size_t conv_scratch_floats(const conv_p *p, int64_t sg) { return (size_t)((p->CKK + p->Og) * sg * p->OHW); }

static void fwd_gemm_task(void *vctx, int64_t b0, int64_t b1, int tid) {
    conv_task *t = vctx;
    const conv_p *p = t->p;
    int64_t sg = p->chunk;               /* samples per group (forward: conv_group) */
    float *col = qd_cpu(t->b)->scratch[tid];
    for (int64_t grp = b0; grp < b1; grp++) {
        int64_t n0 = grp * sg, n1 = n0 + sg < p->N ? n0 + sg : p->N, ns = n1 - n0, ld = ns * p->OHW;
        float *ob = col + p->CKK * ld;   /* [Og, ns*OHW] */
        for (int g = 0; g < p->G; g++) {
            const float *B = NULL;
            if (p->pointwise && ns == 1) B = p->x + (n0 * p->C + (int64_t)g * p->Cg) * p->HW;
            else {
                for (int64_t n = n0; n < n1; n++)
                    im2col(p, p->x + (n * p->C + (int64_t)g * p->Cg) * p->HW, col + (n - n0) * p->OHW, ld);
                B = col;
            }
            float *C = ns == 1 ? p->out + (n0 * p->O + (int64_t)g * p->Og) * p->OHW : ob;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)p->Og, (int)ld, (int)p->CKK, 1.0f,
                        p->w + (int64_t)g * p->Og * p->CKK, (int)p->CKK, B, (int)ld, 0.0f, C, (int)ld);
            for (int64_t n = n0; n < n1; n++) {
                float *o = p->out + (n * p->O + (int64_t)g * p->Og) * p->OHW;
                for (int64_t oc = 0; oc < p->Og; oc++) {
                    float bv = p->bias ? p->bias[g * p->Og + oc] : 0.0f;
                    float *r = o + oc * p->OHW;
                    if (ns > 1) {
                        const float *src = ob + oc * ld + (n - n0) * p->OHW;
                        for (int64_t i = 0; i < p->OHW; i++) r[i] = src[i] + bv;
                    } else if (p->bias) {
                        for (int64_t i = 0; i < p->OHW; i++) r[i] += bv;
                    }
                }
            }
        }
    }
}

/* Depthwise-style direct convolution: one input channel per group (Cg == 1). Task = (n, o). */
static void fwd_dw_task(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    const conv_p *p = ((conv_task *)vctx)->p;
    for (int64_t t = b0; t < b1; t++) {
        int64_t n = t / p->O, o = t % p->O, g = o / p->Og;
        const float *xc = p->x + (n * p->C + g) * p->HW;
        const float *wk = p->w + o * p->kh * p->kw;
        float *y = p->out + (n * p->O + o) * p->OHW;
        float bv = p->bias ? p->bias[o] : 0.0f;
        for (int64_t i = 0; i < p->OHW; i++) y[i] = 0.0f;
        for (int ki = 0; ki < p->kh; ki++) {
            int64_t ohlo, ohhi;
            valid_range(p->OH, p->H, p->sh, p->pt, (int64_t)ki * p->dh, &ohlo, &ohhi);
            for (int kj = 0; kj < p->kw; kj++) {
                int64_t owlo, owhi;
                valid_range(p->OW, p->W, p->sw, p->pl, (int64_t)kj * p->dw, &owlo, &owhi);
                float wv = wk[ki * p->kw + kj];
                int64_t iw0 = -p->pl + (int64_t)kj * p->dw;
                for (int64_t oh = ohlo; oh < ohhi; oh++) {
                    const float *xr = xc + (oh * p->sh - p->pt + (int64_t)ki * p->dh) * p->W;
                    float *yr = y + oh * p->OW;
                    for (int64_t ow = owlo; ow < owhi; ow++) yr[ow] += wv * xr[ow * p->sw + iw0];
                }
            }
        }
        if (bv != 0.0f) for (int64_t i = 0; i < p->OHW; i++) y[i] += bv;
    }
}

qd_status qd_cpu_conv_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                              const qd_shape *os, float *out) {
    conv_p p;
    QD_TRY(conv_setup(n, is, in, os, &p));
    p.out = out;
    if (qd_cpu_conv_dnnl_usable(b, &p)) return qd_cpu_conv_dnnl_forward(b, &p);
    conv_task t = {&p, b};
    qd_cpu_pool *pool = qd_cpu(b)->pool;
    if (p.Cg == 1 && p.G > 1) {
        qd_cpu_parallel_for(pool, p.N * p.O, 1, fwd_dw_task, &t);
        return QD_OK;
    }
    p.chunk = conv_group(&p);
    QD_TRY(qd_cpu_scratch(b, conv_scratch_floats(&p, p.chunk)));
    qd_cpu_parallel_for(pool, (p.N + p.chunk - 1) / p.chunk, 1, fwd_gemm_task, &t);
    return QD_OK;
}

/* ---- backward (GEMM path) ----
 * Task = chunk of samples, processed in groups of conv_group() samples: col = im2col(x group);
 * dy = the group's output gradients side by side; dWpartial[chunk] += dy col^T;
 * dcol = W^T dy (reusing col); dx += col2im(dcol). */
static void bwd_gemm_task(void *vctx, int64_t c0, int64_t c1, int tid) {
    conv_task *t = vctx;
    const conv_p *p = t->p;
    int64_t sg = conv_group(p);
    float *col = qd_cpu(t->b)->scratch[tid];
    int64_t wsz = p->O * p->CKK;
    for (int64_t ch = c0; ch < c1; ch++) {
        int64_t s0 = ch * p->chunk, s1 = s0 + p->chunk;
        if (s1 > p->N) s1 = p->N;
        float *part = p->dw_out ? p->partial + ch * wsz : NULL;
        if (part) memset(part, 0, sizeof(float) * (size_t)wsz);
        for (int64_t n0 = s0; n0 < s1; n0 += sg) {
            int64_t n1 = n0 + sg < s1 ? n0 + sg : s1, ns = n1 - n0, ld = ns * p->OHW;
            float *dyb = col + p->CKK * ld;   /* [Og, ns*OHW] */
            for (int g = 0; g < p->G; g++) {
                const float *wg = p->w + (int64_t)g * p->Og * p->CKK;
                const float *dy = p->dout + (n0 * p->O + (int64_t)g * p->Og) * p->OHW;
                if (ns > 1) {
                    for (int64_t n = n0; n < n1; n++)
                        for (int64_t oc = 0; oc < p->Og; oc++) {
                            const float *src = p->dout + (n * p->O + (int64_t)g * p->Og + oc) * p->OHW;
                            float *dst = dyb + oc * ld + (n - n0) * p->OHW;
                            for (int64_t i = 0; i < p->OHW; i++) dst[i] = src[i];
                        }
                    dy = dyb;
                }
                int direct = p->pointwise && ns == 1;  /* x itself is the column matrix */
                if (part) {
                    const float *B = p->x + (n0 * p->C + (int64_t)g * p->Cg) * p->HW;
                    if (!direct) {
                        for (int64_t n = n0; n < n1; n++)
                            im2col(p, p->x + (n * p->C + (int64_t)g * p->Cg) * p->HW, col + (n - n0) * p->OHW, ld);
                        B = col;
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)p->Og, (int)p->CKK, (int)ld, 1.0f, dy,
                                (int)ld, B, (int)ld, 1.0f, part + (int64_t)g * p->Og * p->CKK, (int)p->CKK);
                }
                if (p->dx) {
                    if (direct) {
                        float *dxg = p->dx + (n0 * p->C + (int64_t)g * p->Cg) * p->HW;
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)p->CKK, (int)p->OHW, (int)p->Og, 1.0f, wg,
                                    (int)p->CKK, dy, (int)p->OHW, 1.0f, dxg, (int)p->OHW);
                    } else {
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)p->CKK, (int)ld, (int)p->Og, 1.0f, wg,
                                    (int)p->CKK, dy, (int)ld, 0.0f, col, (int)ld);
                        for (int64_t n = n0; n < n1; n++)
                            col2im_add(p, col + (n - n0) * p->OHW, ld, p->dx + (n * p->C + (int64_t)g * p->Cg) * p->HW);
                    }
                }
            }
        }
    }
}

/* Depthwise backward: task = group g (its input channel and its Og output channels), looping
 * over samples in order, so dW[o] sums in a fixed order and dx[:, g] has a single writer. */
static void bwd_dw_task(void *vctx, int64_t g0, int64_t g1, int tid) {
    (void)tid;
    const conv_p *p = ((conv_task *)vctx)->p;
    int kk = p->kh * p->kw;
    for (int64_t g = g0; g < g1; g++) {
        for (int64_t oc = 0; oc < p->Og; oc++) {
            int64_t o = g * p->Og + oc;
            const float *wk = p->w + o * kk;
            for (int ki = 0; ki < p->kh; ki++) {
                int64_t ohlo, ohhi;
                valid_range(p->OH, p->H, p->sh, p->pt, (int64_t)ki * p->dh, &ohlo, &ohhi);
                for (int kj = 0; kj < p->kw; kj++) {
                    int64_t owlo, owhi;
                    valid_range(p->OW, p->W, p->sw, p->pl, (int64_t)kj * p->dw, &owlo, &owhi);
                    int64_t iw0 = -p->pl + (int64_t)kj * p->dw;
                    float wv = wk[ki * p->kw + kj];
                    double acc = 0.0;
                    for (int64_t n = 0; n < p->N; n++) {
                        const float *dy = p->dout + (n * p->O + o) * p->OHW;
                        const float *xc = p->x + (n * p->C + g) * p->HW;
                        float *dxc = p->dx ? p->dx + (n * p->C + g) * p->HW : NULL;
                        float sacc = 0.0f;
                        for (int64_t oh = ohlo; oh < ohhi; oh++) {
                            int64_t roff = (oh * p->sh - p->pt + (int64_t)ki * p->dh) * p->W;
                            const float *dyr = dy + oh * p->OW;
                            if (p->dw_out) {
                                const float *xr = xc + roff;
                                for (int64_t ow = owlo; ow < owhi; ow++) sacc += dyr[ow] * xr[ow * p->sw + iw0];
                            }
                            if (dxc) {
                                float *xr = dxc + roff;
                                for (int64_t ow = owlo; ow < owhi; ow++) xr[ow * p->sw + iw0] += wv * dyr[ow];
                            }
                        }
                        acc += sacc;
                    }
                    if (p->dw_out) p->dw_out[o * kk + ki * p->kw + kj] += (float)acc;
                }
            }
        }
    }
}

static void add_partials(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    const conv_p *p = ((conv_task *)vctx)->p;
    int64_t wsz = p->O * p->CKK, nch = (p->N + p->chunk - 1) / p->chunk;
    for (int64_t i = b0; i < b1; i++) {
        float s = p->dw_out[i];
        for (int64_t c = 0; c < nch; c++) s += p->partial[c * wsz + i];
        p->dw_out[i] = s;
    }
}

void qd_cpu_conv_sum_partials(qd_backend *b, const conv_p *p) {
    conv_task t = {p, b};
    qd_cpu_parallel_for(qd_cpu(b)->pool, p->O * p->CKK, QD_CPU_EW_GRAIN, add_partials, &t);
}

qd_status qd_cpu_conv_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                               const qd_shape *os, const float *dout, float *const *din) {
    conv_p p;
    QD_TRY(conv_setup(n, is, in, os, &p));
    p.dout = dout;
    p.dx = din[0];
    p.dw_out = n->ninputs > 1 ? din[1] : NULL;
    if (n->ninputs > 2 && din[2]) {
        /* Bias gradient (never needed by reconstruction, §4, but cheap and tested). */
        for (int64_t o = 0; o < p.O; o++) {
            double acc = 0.0;
            for (int64_t s = 0; s < p.N; s++) {
                const float *r = dout + (s * p.O + o) * p.OHW;
                float sa = 0.0f;
                for (int64_t i = 0; i < p.OHW; i++) sa += r[i];
                acc += sa;
            }
            din[2][o] += (float)acc;
        }
    }
    if (!p.dx && !p.dw_out) return QD_OK;
    if (qd_cpu_conv_dnnl_usable(b, &p)) return qd_cpu_conv_dnnl_backward(b, &p);
    conv_task t = {&p, b};
    qd_cpu_pool *pool = qd_cpu(b)->pool;
    if (p.Cg == 1 && p.G > 1) {
        qd_cpu_parallel_for(pool, p.G, 1, bwd_dw_task, &t);
        return QD_OK;
    }
    /* at most 8 weight-gradient chunks, each at least one sample group; sized from the shape
     * only (thread-count independent) */
    p.chunk = (p.N + 7) / 8;
    if (p.chunk < conv_group(&p)) p.chunk = conv_group(&p);
    if (p.chunk < 1) p.chunk = 1;
    int64_t nch = (p.N + p.chunk - 1) / p.chunk;
    QD_TRY(qd_cpu_scratch(b, conv_scratch_floats(&p, conv_group(&p))));
    if (p.dw_out) {
        p.partial = qd_cpu_shared(b, (size_t)(nch * p.O * p.CKK));
        if (!p.partial) return QD_ERR_DEVICE_OOM;
    }
    qd_cpu_parallel_for(pool, nch, 1, bwd_gemm_task, &t);
    if (p.dw_out) qd_cpu_conv_sum_partials(b, &p);
    return QD_OK;
}
