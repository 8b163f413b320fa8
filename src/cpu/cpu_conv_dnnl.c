/* src/cpu/cpu_conv_dnnl.c: ungrouped 2-D convolutions of the CPU backend through oneDNN's direct
 * (JIT) kernels: forward, data gradient and weight gradient. On the CIFAR BasicBlock shapes they
 * take 1/2-1/4 of the time of im2col + OpenBLAS (bench/bench_recon_cpu.py prints both).
 *
 * Determinism (cpu_internal.h): the batch is cut into chunks of a size that depends only on the
 * shape; every chunk runs as one single-threaded oneDNN call inside the backend's own pool (the
 * oneDNN build's OpenMP is limited to one thread in each pool thread), weight gradients are
 * computed per chunk and summed in chunk order. Results are therefore identical for every
 * `threads` setting; they depend on the oneDNN kernel oneDNN picks for the CPU (avx512 vs avx2),
 * just as the OpenBLAS kernels do.
 *
 * Layouts: tensors stay NCHW in the engine; oneDNN picks its blocked layouts (nChw16c on AVX-512)
 * and each call reorders the chunk in and out (a copy, ~5% of the convolution's time).
 * Accumulating outputs (dx += ...) use a reorder with a sum post-op.
 *
 * Only oneDNN's v2 C API is supported (Debian 12: libdnnl-dev 2.6); without it, or with
 * QD_CPU_CONV=im2col in the environment, every convolution takes the im2col path. */
#include "cpu/cpu_conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(QD_HAVE_DNNL)
#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>

/* Samples per chunk: about 8k output positions, at most 8 samples (8 CIFAR samples at 32x32,
 * one ImageNet sample at 112x112). Part of the numerical contract, like the other grains. */
#define QD_DNNL_CHUNK_POSITIONS 8192
#define QD_DNNL_CHUNK_MAX 8
#define QD_DNNL_ALIGN 64

typedef struct dn_entry {
    int64_t key[19];
    int ok;                                   /* 0: oneDNN refused this shape (im2col instead) */
    dnnl_primitive_desc_t fpd, dpd, wpd;      /* forward / backward data / backward weights */
    dnnl_primitive_t fwd, bwd_d, bwd_w;
    /* plain (NCHW / OIHW) descriptions of one chunk and of the weights */
    dnnl_memory_desc_t x_md, y_md, w_md, b_md;
    /* reorders, NULL when the kernel's layout is the plain one */
    dnnl_primitive_t r_x_f, r_y_f;            /* x -> fwd src; fwd dst -> y */
    dnnl_primitive_t r_w_f, r_w_d;            /* w -> fwd weights; w -> bwd-data weights */
    dnnl_primitive_t r_dy_d, r_dy_w, r_x_w;   /* dy -> bwd-data/bwd-weights diff_dst; x -> bwd-weights src */
    dnnl_primitive_t r_dx_sum;                /* bwd-data diff_src -> dx (dx += ...) */
    dnnl_primitive_t r_dw;                    /* bwd-weights diff_weights -> plain partial */
    /* per-thread workspace layout (byte offsets into the thread's scratch) */
    size_t f_x, f_y, f_pad, f_total;
    size_t d_dy, d_dx, d_pad, w_x, w_dy, w_dw, w_pad, b_total;
    size_t w_f_bytes, w_d_bytes;
    float *w_f, *w_d;                         /* reordered weights (per call, before the pool runs) */
    struct dn_entry *next;
} dn_entry;

typedef struct {
    dnnl_engine_t eng;
    dnnl_stream_t *streams;                   /* one per pool thread */
    int nstreams;
    dn_entry *entries;
} dn_state;

static int g_dnnl_disabled = -1;              /* QD_CPU_CONV=im2col, read once */
static char g_path[96];                       /* "onednn 2.6.3 (jit:avx512_core)" */
static void (*g_omp_set_num_threads)(int);
static _Thread_local int t_omp_pinned;
static long g_calls;                          /* written by the calling thread only */

long qd_cpu_conv_dnnl_calls(void) { return g_calls; }

static size_t align_up(size_t v) { return (v + QD_DNNL_ALIGN - 1) / QD_DNNL_ALIGN * QD_DNNL_ALIGN; }

/* oneDNN's OpenMP would start its own threads inside each pool thread: one thread each. */
static void pin_omp(void) {
    if (t_omp_pinned) return;
    if (g_omp_set_num_threads) g_omp_set_num_threads(1);
    t_omp_pinned = 1;
}

static int disabled(void) {
    if (g_dnnl_disabled < 0) {
        const char *e = getenv("QD_CPU_CONV");
        g_dnnl_disabled = e && strcmp(e, "im2col") == 0;
        const dnnl_version_t *v = dnnl_version();
        snprintf(g_path, sizeof g_path, "onednn %d.%d.%d", v->major, v->minor, v->patch);
        g_omp_set_num_threads = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    }
    return g_dnnl_disabled;
}

void qd_cpu_conv_use_dnnl(int on) {
    disabled();
    g_dnnl_disabled = !on;
}

const char *qd_cpu_conv_path(void) {
    if (disabled()) return "im2col+openblas";
    return g_path;
}

static dn_state *state(qd_backend *b) {
    qd_cpu_impl *c = qd_cpu(b);
    if (c->dnnl) return c->dnnl;
    dn_state *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    if (dnnl_engine_create(&s->eng, dnnl_cpu, 0) != dnnl_success) { free(s); return NULL; }
    s->nstreams = c->nthreads;
    s->streams = calloc((size_t)s->nstreams, sizeof *s->streams);
    if (!s->streams) { dnnl_engine_destroy(s->eng); free(s); return NULL; }
    for (int t = 0; t < s->nstreams; t++)
        if (dnnl_stream_create(&s->streams[t], s->eng, dnnl_stream_default_flags) != dnnl_success) {
            for (int u = 0; u < t; u++) dnnl_stream_destroy(s->streams[u]);
            free(s->streams); dnnl_engine_destroy(s->eng); free(s);
            return NULL;
        }
    c->dnnl = s;
    return s;
}

static void entry_free(dn_entry *e) {
    dnnl_primitive_t prims[] = {e->fwd, e->bwd_d, e->bwd_w, e->r_x_f, e->r_y_f, e->r_w_f, e->r_w_d,
                                e->r_dy_d, e->r_dy_w, e->r_x_w, e->r_dx_sum, e->r_dw};
    for (size_t i = 0; i < sizeof prims / sizeof prims[0]; i++)
        if (prims[i]) dnnl_primitive_destroy(prims[i]);
    if (e->fpd) dnnl_primitive_desc_destroy(e->fpd);
    if (e->dpd) dnnl_primitive_desc_destroy(e->dpd);
    if (e->wpd) dnnl_primitive_desc_destroy(e->wpd);
    free(e->w_f);
    free(e->w_d);
    free(e);
}

void qd_cpu_conv_dnnl_release(qd_cpu_impl *c) {
    dn_state *s = c->dnnl;
    if (!s) return;
    for (dn_entry *e = s->entries, *nx; e; e = nx) { nx = e->next; entry_free(e); }
    for (int t = 0; t < s->nstreams; t++) dnnl_stream_destroy(s->streams[t]);
    free(s->streams);
    dnnl_engine_destroy(s->eng);
    free(s);
    c->dnnl = NULL;
}

static int64_t chunk_samples(const conv_p *p) {
    int64_t k = QD_DNNL_CHUNK_POSITIONS / (p->OHW > 0 ? p->OHW : 1);
    if (k > QD_DNNL_CHUNK_MAX) k = QD_DNNL_CHUNK_MAX;
    if (k < 1) k = 1;
    if (k > p->N) k = p->N;
    return k;
}

/* Reorder src_md -> dst_md (with dst += src when sum), or NULL (and *ok kept) when the layouts
 * are equal and no sum is wanted. Reorders need no scratchpad for these plain/blocked pairs. */
static dnnl_primitive_t make_reorder(dn_state *s, const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst,
                                     int sum, int *ok) {
    if (!sum && dnnl_memory_desc_equal(src, dst)) return NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) { *ok = 0; return NULL; }
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (sum) {
        dnnl_post_ops_t po = NULL;
        if (dnnl_post_ops_create(&po) != dnnl_success || dnnl_post_ops_append_sum(po, 1.0f) != dnnl_success ||
            dnnl_primitive_attr_set_post_ops(attr, po) != dnnl_success)
            *ok = 0;
        if (po) dnnl_post_ops_destroy(po);
    }
    if (*ok && dnnl_reorder_primitive_desc_create(&pd, src, s->eng, dst, s->eng, attr) == dnnl_success) {
        const dnnl_memory_desc_t *pad = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        if (pad && dnnl_memory_desc_get_size(pad) > 0) *ok = 0; /* not expected; keep im2col then */
        else if (dnnl_primitive_create(&prim, pd) != dnnl_success) *ok = 0;
    } else {
        *ok = 0;
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    return prim;
}

static const dnnl_memory_desc_t *qmd(dnnl_primitive_desc_t pd, dnnl_query_t what) {
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

static size_t md_bytes(const dnnl_memory_desc_t *md) { return md ? dnnl_memory_desc_get_size(md) : 0; }

static dn_entry *entry_create(dn_state *s, const conv_p *p, int64_t mb) {
    dn_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    /* oneDNN plans a kernel's thread split (and so its reduction order) when the primitive is
     * created, from the calling thread's OpenMP thread count: one thread, as when it runs. */
    pin_omp();
    int ok = 1;
    dnnl_dims_t xd = {mb, p->C, p->H, p->W}, yd = {mb, p->O, p->OH, p->OW}, wd = {p->O, p->C, p->kh, p->kw}, bd = {p->O};
    dnnl_dims_t strides = {p->sh, p->sw}, dil = {p->dh - 1, p->dw - 1}, pl = {p->pt, p->pl}, pr = {p->pb, p->pr};
    dnnl_memory_desc_t xa, ya, wa;
    ok &= dnnl_memory_desc_init_by_tag(&e->x_md, 4, xd, dnnl_f32, dnnl_nchw) == dnnl_success;
    ok &= dnnl_memory_desc_init_by_tag(&e->y_md, 4, yd, dnnl_f32, dnnl_nchw) == dnnl_success;
    ok &= dnnl_memory_desc_init_by_tag(&e->w_md, 4, wd, dnnl_f32, dnnl_oihw) == dnnl_success;
    ok &= dnnl_memory_desc_init_by_tag(&e->b_md, 1, bd, dnnl_f32, dnnl_x) == dnnl_success;
    ok &= dnnl_memory_desc_init_by_tag(&xa, 4, xd, dnnl_f32, dnnl_format_tag_any) == dnnl_success;
    ok &= dnnl_memory_desc_init_by_tag(&ya, 4, yd, dnnl_f32, dnnl_format_tag_any) == dnnl_success;
    ok &= dnnl_memory_desc_init_by_tag(&wa, 4, wd, dnnl_f32, dnnl_format_tag_any) == dnnl_success;
    dnnl_primitive_attr_t attr = NULL;
    ok &= dnnl_primitive_attr_create(&attr) == dnnl_success;
    if (ok) ok &= dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
    dnnl_convolution_desc_t fd, dd, wdsc;
    if (ok) ok &= dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &xa, &wa,
                                                             p->bias ? &e->b_md : NULL, &ya, strides, dil, pl, pr) == dnnl_success;
    if (ok) ok &= dnnl_primitive_desc_create(&e->fpd, &fd, attr, s->eng, NULL) == dnnl_success;
    if (ok) ok &= dnnl_dilated_convolution_backward_data_desc_init(&dd, dnnl_convolution_direct, &xa, &wa, &ya, strides, dil,
                                                                   pl, pr) == dnnl_success;
    if (ok) ok &= dnnl_primitive_desc_create(&e->dpd, &dd, attr, s->eng, e->fpd) == dnnl_success;
    if (ok) ok &= dnnl_dilated_convolution_backward_weights_desc_init(&wdsc, dnnl_convolution_direct, &xa, &wa, NULL, &ya,
                                                                      strides, dil, pl, pr) == dnnl_success;
    if (ok) ok &= dnnl_primitive_desc_create(&e->wpd, &wdsc, attr, s->eng, e->fpd) == dnnl_success;
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (ok) {
        ok &= dnnl_primitive_create(&e->fwd, e->fpd) == dnnl_success;
        ok &= dnnl_primitive_create(&e->bwd_d, e->dpd) == dnnl_success;
        ok &= dnnl_primitive_create(&e->bwd_w, e->wpd) == dnnl_success;
    }
    if (ok) {
        const dnnl_memory_desc_t *f_src = qmd(e->fpd, dnnl_query_src_md), *f_w = qmd(e->fpd, dnnl_query_weights_md),
                                 *f_dst = qmd(e->fpd, dnnl_query_dst_md);
        const dnnl_memory_desc_t *d_dsrc = qmd(e->dpd, dnnl_query_diff_src_md), *d_w = qmd(e->dpd, dnnl_query_weights_md),
                                 *d_ddst = qmd(e->dpd, dnnl_query_diff_dst_md);
        const dnnl_memory_desc_t *w_src = qmd(e->wpd, dnnl_query_src_md), *w_dw = qmd(e->wpd, dnnl_query_diff_weights_md),
                                 *w_ddst = qmd(e->wpd, dnnl_query_diff_dst_md);
        e->r_x_f = make_reorder(s, &e->x_md, f_src, 0, &ok);
        e->r_y_f = make_reorder(s, f_dst, &e->y_md, 0, &ok);
        e->r_w_f = make_reorder(s, &e->w_md, f_w, 0, &ok);
        e->r_w_d = make_reorder(s, &e->w_md, d_w, 0, &ok);
        e->r_dy_d = make_reorder(s, &e->y_md, d_ddst, 0, &ok);
        e->r_dy_w = make_reorder(s, &e->y_md, w_ddst, 0, &ok);
        e->r_x_w = make_reorder(s, &e->x_md, w_src, 0, &ok);
        e->r_dx_sum = make_reorder(s, d_dsrc, &e->x_md, 1, &ok);
        e->r_dw = make_reorder(s, w_dw, &e->w_md, 0, &ok);
        /* per-thread workspace: forward = [x blocked | y blocked | scratchpad];
         * backward = [dy (data) | dx | x (weights) | dy (weights) | dW | scratchpads] */
        size_t o = 0;
        e->f_x = o; o += e->r_x_f ? align_up(md_bytes(f_src)) : 0;
        e->f_y = o; o += e->r_y_f ? align_up(md_bytes(f_dst)) : 0;
        e->f_pad = o; o += align_up(md_bytes(qmd(e->fpd, dnnl_query_scratchpad_md)));
        e->f_total = o;
        o = 0;
        e->d_dy = o; o += e->r_dy_d ? align_up(md_bytes(d_ddst)) : 0;
        e->d_dx = o; o += align_up(md_bytes(d_dsrc));
        e->w_x = o; o += e->r_x_w ? align_up(md_bytes(w_src)) : 0;
        e->w_dy = o; o += e->r_dy_w ? align_up(md_bytes(w_ddst)) : 0;
        e->w_dw = o; o += align_up(md_bytes(w_dw));
        e->d_pad = o; o += align_up(md_bytes(qmd(e->dpd, dnnl_query_scratchpad_md)));
        e->w_pad = o; o += align_up(md_bytes(qmd(e->wpd, dnnl_query_scratchpad_md)));
        e->b_total = o;
        e->w_f_bytes = align_up(md_bytes(f_w));
        e->w_d_bytes = align_up(md_bytes(d_w));
        if (e->r_w_f && !(e->w_f = aligned_alloc(QD_DNNL_ALIGN, e->w_f_bytes))) ok = 0;
        if (e->r_w_d && !(e->w_d = aligned_alloc(QD_DNNL_ALIGN, e->w_d_bytes))) ok = 0;
        const char *impl = NULL;
        if (ok && dnnl_primitive_desc_query(e->fpd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl &&
            strchr(g_path, '(') == NULL) {
            size_t l = strlen(g_path);
            snprintf(g_path + l, sizeof g_path - l, " (%s)", impl);
        }
    }
    e->ok = ok;
    return e;
}

/* The cached primitives for this shape and mini-batch (created on first use, in the calling
 * thread, before any pool job). NULL on allocation failure. */
static dn_entry *entry_get(qd_backend *b, const conv_p *p, int64_t mb) {
    dn_state *s = state(b);
    if (!s) return NULL;
    int64_t key[19] = {mb, p->C, p->H, p->W, p->O, p->OH, p->OW, p->kh, p->kw, p->sh, p->sw,
                       p->dh, p->dw, p->pt, p->pl, p->pb, p->pr, p->bias != NULL, 0};
    for (dn_entry *e = s->entries; e; e = e->next)
        if (memcmp(e->key, key, sizeof key) == 0) return e;
    dn_entry *e = entry_create(s, p, mb);
    if (!e) return NULL;
    memcpy(e->key, key, sizeof key);
    e->next = s->entries;
    s->entries = e;
    return e;
}

int qd_cpu_conv_dnnl_usable(qd_backend *b, const conv_p *p) {
    if (disabled() || p->G != 1 || p->N < 1) return 0;
    int64_t k = chunk_samples(p);
    dn_entry *e = entry_get(b, p, k);
    if (!e || !e->ok) return 0;
    if (p->N % k) {
        e = entry_get(b, p, p->N % k);
        if (!e || !e->ok) return 0;
    }
    return 1;
}

typedef struct {
    qd_backend *b;
    conv_p *p;
    int64_t k;                  /* samples per chunk */
    dn_entry *full, *tail;
    int failed;                 /* set by any chunk whose oneDNN call failed */
} dn_job;

static dnnl_memory_t mem(dn_state *s, const dnnl_memory_desc_t *md, const void *ptr) {
    dnnl_memory_t m = NULL;
    if (dnnl_memory_create(&m, md, s->eng, (void *)ptr) != dnnl_success) return NULL;
    return m;
}

/* Runs prim with the given (arg, md, pointer) triples; memories are wrapped per call. */
typedef struct { int arg; const dnnl_memory_desc_t *md; const void *ptr; } dn_arg;

static int exec(dn_state *s, int tid, dnnl_primitive_t prim, const dn_arg *args, int nargs) {
    dnnl_exec_arg_t ea[8];
    int ok = 1, n = 0;
    for (int i = 0; i < nargs && ok; i++) {
        if (args[i].arg == DNNL_ARG_SCRATCHPAD && md_bytes(args[i].md) == 0) continue;
        ea[n].arg = args[i].arg;
        ea[n].memory = mem(s, args[i].md, args[i].ptr);
        if (!ea[n].memory) ok = 0; else n++;
    }
    if (ok) ok = dnnl_primitive_execute(prim, s->streams[tid], n, ea) == dnnl_success;
    for (int i = 0; i < n; i++) dnnl_memory_destroy(ea[i].memory);
    return ok;
}

static int reorder(dn_state *s, int tid, dnnl_primitive_t r, const dnnl_memory_desc_t *src_md, const void *src,
                   const dnnl_memory_desc_t *dst_md, void *dst) {
    dn_arg a[2] = {{DNNL_ARG_FROM, src_md, src}, {DNNL_ARG_TO, dst_md, dst}};
    return exec(s, tid, r, a, 2);
}

static void fwd_task(void *vctx, int64_t c0, int64_t c1, int tid) {
    dn_job *j = vctx;
    const conv_p *p = j->p;
    dn_state *s = qd_cpu(j->b)->dnnl;
    unsigned char *ws = (unsigned char *)qd_cpu(j->b)->scratch[tid];
    pin_omp();
    for (int64_t ch = c0; ch < c1 && !j->failed; ch++) {
        int64_t n0 = ch * j->k, mb = p->N - n0 < j->k ? p->N - n0 : j->k;
        dn_entry *e = mb == j->k ? j->full : j->tail;
        const float *x = p->x + n0 * p->C * p->HW;
        float *y = p->out + n0 * p->O * p->OHW;
        const dnnl_memory_desc_t *src_md = qmd(e->fpd, dnnl_query_src_md), *dst_md = qmd(e->fpd, dnnl_query_dst_md);
        const void *src = x;
        void *dst = e->r_y_f ? (void *)(ws + e->f_y) : (void *)y;
        int ok = 1;
        if (e->r_x_f) { ok = reorder(s, tid, e->r_x_f, &e->x_md, x, src_md, ws + e->f_x); src = ws + e->f_x; }
        dn_arg a[5] = {{DNNL_ARG_SRC, src_md, src},
                       {DNNL_ARG_WEIGHTS, qmd(e->fpd, dnnl_query_weights_md), e->r_w_f ? (const void *)e->w_f : p->w},
                       {DNNL_ARG_DST, dst_md, dst},
                       {DNNL_ARG_SCRATCHPAD, qmd(e->fpd, dnnl_query_scratchpad_md), ws + e->f_pad},
                       {DNNL_ARG_BIAS, &e->b_md, p->bias}};
        if (ok) ok = exec(s, tid, e->fwd, a, p->bias ? 5 : 4);
        if (ok && e->r_y_f) ok = reorder(s, tid, e->r_y_f, dst_md, dst, &e->y_md, y);
        if (!ok) j->failed = 1;
    }
}

static qd_status prepare(qd_backend *b, conv_p *p, dn_job *j, int backward) {
    j->b = b; j->p = p; j->k = chunk_samples(p); j->failed = 0;
    j->full = entry_get(b, p, j->k);
    j->tail = p->N % j->k ? entry_get(b, p, p->N % j->k) : j->full;
    if (!j->full || !j->tail)
        return qd_errorf(QD_ERR_DEVICE_OOM, "cpu backend: out of memory for oneDNN convolution primitives");
    size_t need = 0;
    dn_entry *es[2] = {j->full, j->tail};
    dn_state *s = qd_cpu(b)->dnnl;
    for (int i = 0; i < 2; i++) {
        dn_entry *e = es[i];
        if (i == 1 && e == es[0]) break;
        size_t t = backward ? e->b_total : e->f_total;
        if (t > need) need = t;
        /* the weights, reordered once per call by this thread (tid 0's stream; no job runs) */
        int ok = 1;
        pin_omp();
        if (!backward && e->r_w_f) ok = reorder(s, 0, e->r_w_f, &e->w_md, p->w, qmd(e->fpd, dnnl_query_weights_md), e->w_f);
        if (backward && p->dx && e->r_w_d)
            ok = reorder(s, 0, e->r_w_d, &e->w_md, p->w, qmd(e->dpd, dnnl_query_weights_md), e->w_d);
        if (!ok) return qd_errorf(QD_ERR_INTERNAL, "cpu backend: oneDNN weight reorder failed");
    }
    return qd_cpu_scratch(b, need / sizeof(float) + 1);
}

qd_status qd_cpu_conv_dnnl_forward(qd_backend *b, conv_p *p) {
    dn_job j;
    g_calls++;
    QD_TRY(prepare(b, p, &j, 0));
    qd_cpu_parallel_for(qd_cpu(b)->pool, (p->N + j.k - 1) / j.k, 1, fwd_task, &j);
    if (j.failed) return qd_errorf(QD_ERR_INTERNAL, "cpu backend: oneDNN convolution forward failed");
    return QD_OK;
}

static void bwd_task(void *vctx, int64_t c0, int64_t c1, int tid) {
    dn_job *j = vctx;
    const conv_p *p = j->p;
    dn_state *s = qd_cpu(j->b)->dnnl;
    unsigned char *ws = (unsigned char *)qd_cpu(j->b)->scratch[tid];
    int64_t wsz = p->O * p->CKK;
    pin_omp();
    for (int64_t ch = c0; ch < c1 && !j->failed; ch++) {
        int64_t n0 = ch * j->k, mb = p->N - n0 < j->k ? p->N - n0 : j->k;
        dn_entry *e = mb == j->k ? j->full : j->tail;
        const float *x = p->x + n0 * p->C * p->HW;
        const float *dy = p->dout + n0 * p->O * p->OHW;
        int ok = 1;
        if (p->dx) {
            const dnnl_memory_desc_t *ddst = qmd(e->dpd, dnnl_query_diff_dst_md), *dsrc = qmd(e->dpd, dnnl_query_diff_src_md);
            const void *dyb = dy;
            if (e->r_dy_d) { ok = reorder(s, tid, e->r_dy_d, &e->y_md, dy, ddst, ws + e->d_dy); dyb = ws + e->d_dy; }
            dn_arg a[4] = {{DNNL_ARG_DIFF_DST, ddst, dyb},
                           {DNNL_ARG_WEIGHTS, qmd(e->dpd, dnnl_query_weights_md), e->r_w_d ? (const void *)e->w_d : p->w},
                           {DNNL_ARG_DIFF_SRC, dsrc, ws + e->d_dx},
                           {DNNL_ARG_SCRATCHPAD, qmd(e->dpd, dnnl_query_scratchpad_md), ws + e->d_pad}};
            if (ok) ok = exec(s, tid, e->bwd_d, a, 4);
            if (ok) ok = reorder(s, tid, e->r_dx_sum, dsrc, ws + e->d_dx, &e->x_md, p->dx + n0 * p->C * p->HW);
        }
        if (ok && p->dw_out) {
            const dnnl_memory_desc_t *src = qmd(e->wpd, dnnl_query_src_md), *ddst = qmd(e->wpd, dnnl_query_diff_dst_md),
                                     *dw = qmd(e->wpd, dnnl_query_diff_weights_md);
            const void *xb = x, *dyb = dy;
            if (e->r_x_w) { ok = reorder(s, tid, e->r_x_w, &e->x_md, x, src, ws + e->w_x); xb = ws + e->w_x; }
            if (ok && e->r_dy_w) { ok = reorder(s, tid, e->r_dy_w, &e->y_md, dy, ddst, ws + e->w_dy); dyb = ws + e->w_dy; }
            float *part = p->partial + ch * wsz;
            void *dwb = e->r_dw ? (void *)(ws + e->w_dw) : (void *)part;
            dn_arg a[4] = {{DNNL_ARG_SRC, src, xb},
                           {DNNL_ARG_DIFF_DST, ddst, dyb},
                           {DNNL_ARG_DIFF_WEIGHTS, dw, dwb},
                           {DNNL_ARG_SCRATCHPAD, qmd(e->wpd, dnnl_query_scratchpad_md), ws + e->w_pad}};
            if (ok) ok = exec(s, tid, e->bwd_w, a, 4);
            if (ok && e->r_dw) ok = reorder(s, tid, e->r_dw, dw, dwb, &e->w_md, part);
        }
        if (!ok) j->failed = 1;
    }
}

qd_status qd_cpu_conv_dnnl_backward(qd_backend *b, conv_p *p) {
    dn_job j;
    g_calls++;
    QD_TRY(prepare(b, p, &j, 1));
    int64_t nch = (p->N + j.k - 1) / j.k;
    if (p->dw_out) {
        p->partial = qd_cpu_shared(b, (size_t)(nch * p->O * p->CKK));
        if (!p->partial) return QD_ERR_DEVICE_OOM;
    }
    qd_cpu_parallel_for(qd_cpu(b)->pool, nch, 1, bwd_task, &j);
    if (j.failed) return qd_errorf(QD_ERR_INTERNAL, "cpu backend: oneDNN convolution backward failed");
    if (p->dw_out) {
        p->chunk = j.k;
        qd_cpu_conv_sum_partials(b, p);
    }
    return QD_OK;
}

#else /* !QD_HAVE_DNNL */

int qd_cpu_conv_dnnl_usable(qd_backend *b, const conv_p *p) { (void)b; (void)p; return 0; }
qd_status qd_cpu_conv_dnnl_forward(qd_backend *b, conv_p *p) { (void)b; (void)p; return QD_ERR_INTERNAL; }
qd_status qd_cpu_conv_dnnl_backward(qd_backend *b, conv_p *p) { (void)b; (void)p; return QD_ERR_INTERNAL; }
void qd_cpu_conv_dnnl_release(qd_cpu_impl *c) { (void)c; }
void qd_cpu_conv_use_dnnl(int on) { (void)on; }
long qd_cpu_conv_dnnl_calls(void) { return 0; }
const char *qd_cpu_conv_path(void) { return "im2col+openblas"; }

#endif
