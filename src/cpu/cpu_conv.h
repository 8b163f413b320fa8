/* src/cpu/cpu_conv.h: the convolution problem shared by the CPU backend's two convolution paths
 * (im2col + OpenBLAS in cpu_conv.c, oneDNN in cpu_conv_dnnl.c). Private to src/cpu. */
#ifndef QD_CPU_CONV_H
#define QD_CPU_CONV_H

#include "cpu/cpu_internal.h"

typedef struct {
    int64_t N, C, H, W, O, OH, OW;
    int kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, G;
    int64_t Cg, Og, CKK, OHW, HW;
    int pointwise;            /* 1x1, stride 1, no pad: the input is already the column matrix */
    const float *x, *w, *bias, *dout;
    float *out, *dx, *dw_out, *partial;
    int64_t chunk;            /* samples per weight-gradient chunk */
} conv_p;

/* dw_out += partial[0] + partial[1] + ... (chunks of p->chunk samples), in chunk order: the
 * thread-count independent weight-gradient reduction of both paths. */
void qd_cpu_conv_sum_partials(qd_backend *b, const conv_p *p);

/* oneDNN path (cpu_conv_dnnl.c). usable: the build has oneDNN, it is not switched off
 * (QD_CPU_CONV=im2col in the environment, read once) and the convolution is ungrouped. */
int qd_cpu_conv_dnnl_usable(qd_backend *b, const conv_p *p);
qd_status qd_cpu_conv_dnnl_forward(qd_backend *b, conv_p *p);
qd_status qd_cpu_conv_dnnl_backward(qd_backend *b, conv_p *p);
/* Frees the primitive cache held in the backend (called by cpu_destroy). */
void qd_cpu_conv_dnnl_release(qd_cpu_impl *c);
/* Tests: 1 = oneDNN where usable (the default), 0 = im2col everywhere; overrides QD_CPU_CONV. */
void qd_cpu_conv_use_dnnl(int on);
/* Convolution calls (forward or backward) that took the oneDNN path so far (tests). */
long qd_cpu_conv_dnnl_calls(void);
/* "onednn <version> (<isa>)" or "im2col+openblas": which path ungrouped convolutions take. */
const char *qd_cpu_conv_path(void);

#endif
