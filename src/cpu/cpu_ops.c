/* src/cpu/cpu_ops.c: forward and backward of every graph op except Conv (cpu_conv.c).
 * Layout: dense row-major float32. Backward ops ADD into din[i] (non-NULL only).
 * Parallel loops use fixed chunk boundaries and disjoint writes; reductions whose outputs
 * gather several inputs (broadcast gradients) run in a fixed serial order (determinism, see
 * cpu_internal.h). */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/qmath.h"
#include "graph/resize_math.h"
#include "core/nnmath.h"
#include "core/simd.h"
#include "cpu/cpu_internal.h"

static int64_t numel(const qd_shape *s) { return qd_shape_numel(s); }

static void strides_of(const qd_shape *s, int64_t *st) {
    int64_t acc = 1;
    for (int d = s->ndim - 1; d >= 0; d--) { st[d] = acc; acc *= s->dims[d]; }
}

/* ------------------------------------------------------------------------------------------ */
/* Strided views: linear index i over dims <-> offset base + sum(i_d * st[d]).                 */
/* ------------------------------------------------------------------------------------------ */
typedef struct {
    int nd;
    int64_t dims[QD_MAX_DIMS], st[QD_MAX_DIMS];
    int64_t base;
} gview;

enum { SV_GATHER = 0, SV_GATHER_ADD, SV_SCATTER, SV_SCATTER_ADD };

typedef struct { const gview *v; int mode; float *lin; float *sp; const float *clin; const float *csp; } sv_task;

static void sv_run(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    sv_task *t = vctx;
    const gview *v = t->v;
    int64_t idx[QD_MAX_DIMS];
    int64_t rem = b0, off = v->base;
    for (int d = v->nd - 1; d >= 0; d--) {
        idx[d] = v->dims[d] ? rem % v->dims[d] : 0;
        rem = v->dims[d] ? rem / v->dims[d] : 0;
        off += idx[d] * v->st[d];
    }
    for (int64_t i = b0; i < b1; i++) {
        switch (t->mode) {
        case SV_GATHER: t->lin[i] = t->csp[off]; break;
        case SV_GATHER_ADD: t->lin[i] += t->csp[off]; break;
        case SV_SCATTER: t->sp[off] = t->clin[i]; break;
        default: t->sp[off] += t->clin[i]; break;
        }
        for (int d = v->nd - 1; d >= 0; d--) {
            off += v->st[d];
            if (++idx[d] < v->dims[d]) break;
            off -= idx[d] * v->st[d];
            idx[d] = 0;
        }
    }
}

static void sv_exec(qd_backend *b, const gview *v, int mode, float *lin, const float *clin, float *sp, const float *csp) {
    int64_t n = 1;
    for (int d = 0; d < v->nd; d++) n *= v->dims[d];
    sv_task t = {v, mode, lin, sp, clin, csp};
    qd_cpu_parallel_for(qd_cpu(b)->pool, n, QD_CPU_EW_GRAIN, sv_run, &t);
}

/* ------------------------------------------------------------------------------------------ */
/* Elementwise helpers                                                                          */
/* ------------------------------------------------------------------------------------------ */
typedef struct {
    int op;                   /* qd_op */
    const float *x, *y, *dy;
    float *out;
    float lo, hi;
} ew_task;

QD_SIMD_CLONES
static void unary_fwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    ew_task *t = vctx;
    const float *x = t->x;
    float *y = t->out;
    switch (t->op) {
    case QD_OP_RELU: for (int64_t i = b0; i < b1; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f; break;
    case QD_OP_CLIP:
        for (int64_t i = b0; i < b1; i++) {
            float v = x[i] < t->lo ? t->lo : x[i];  /* selects: vectorised, NaN propagates as torch.clamp */
            y[i] = v > t->hi ? t->hi : v;
        }
        break;
    case QD_OP_SIGMOID: for (int64_t i = b0; i < b1; i++) y[i] = 1.0f / (1.0f + expf(-x[i])); break;
    case QD_OP_HARDSIGMOID: /* lo = alpha, hi = beta */
        for (int64_t i = b0; i < b1; i++) y[i] = qd_hardsigmoid(x[i], t->lo, t->hi);
        break;
    case QD_OP_HARDSWISH: for (int64_t i = b0; i < b1; i++) y[i] = qd_hardswish(x[i]); break;
    default: memcpy(y + b0, x + b0, sizeof(float) * (size_t)(b1 - b0)); break;
    }
}

/* The two float parameters of a unary op: Clip's bounds, HardSigmoid's alpha and beta. */
static float unary_lo(const qd_node *n) { return n->op == QD_OP_HARDSIGMOID ? n->a.alpha : n->a.clip_min; }
static float unary_hi(const qd_node *n) { return n->op == QD_OP_HARDSIGMOID ? n->a.beta : n->a.clip_max; }

/* Relu: gradient where x > 0 (torch threshold_backward). Clip: where lo < x < hi, the
 * hardtanh/ReLU6 rule (ONNX Clip in CNNs comes from ReLU6); the boundaries get 0. */
QD_SIMD_CLONES
static void unary_bwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    ew_task *t = vctx;
    const float *x = t->x, *dy = t->dy, *y = t->y;
    float *dx = t->out;
    switch (t->op) {
    /* selects rather than conditional stores so the loops vectorise */
    case QD_OP_RELU: for (int64_t i = b0; i < b1; i++) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f; break;
    case QD_OP_CLIP: for (int64_t i = b0; i < b1; i++) dx[i] += (x[i] > t->lo && x[i] < t->hi) ? dy[i] : 0.0f; break;
    case QD_OP_SIGMOID: for (int64_t i = b0; i < b1; i++) dx[i] += dy[i] * y[i] * (1.0f - y[i]); break;
    case QD_OP_HARDSIGMOID:
        for (int64_t i = b0; i < b1; i++) dx[i] += dy[i] * qd_hardsigmoid_grad(x[i], t->lo, t->hi);
        break;
    case QD_OP_HARDSWISH: for (int64_t i = b0; i < b1; i++) dx[i] += dy[i] * qd_hardswish_grad(x[i]); break;
    default: for (int64_t i = b0; i < b1; i++) dx[i] += dy[i]; break;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Broadcasting binary ops (numpy rules)                                                        */
/* ------------------------------------------------------------------------------------------ */
typedef struct {
    int op, nd;
    int64_t dims[QD_MAX_DIMS], sa[QD_MAX_DIMS], sb[QD_MAX_DIMS];
    const float *a, *b;
    float *out;
    int fast;                 /* 0 generic, 1 same shapes, 2 b scalar, 3 a scalar */
} bin_task;

static inline float bin_apply(int op, float a, float b) {
    switch (op) {
    case QD_OP_ADD: return a + b;
    case QD_OP_SUB: return a - b;
    case QD_OP_MUL: return a * b;
    default: return a / b;
    }
}

QD_SIMD_CLONES
static void bin_fwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    bin_task *t = vctx;
    if (t->fast == 1) { for (int64_t i = b0; i < b1; i++) t->out[i] = bin_apply(t->op, t->a[i], t->b[i]); return; }
    if (t->fast == 2) { float bv = t->b[0]; for (int64_t i = b0; i < b1; i++) t->out[i] = bin_apply(t->op, t->a[i], bv); return; }
    if (t->fast == 3) { float av = t->a[0]; for (int64_t i = b0; i < b1; i++) t->out[i] = bin_apply(t->op, av, t->b[i]); return; }
    int64_t idx[QD_MAX_DIMS], rem = b0, oa = 0, ob = 0;
    for (int d = t->nd - 1; d >= 0; d--) {
        idx[d] = rem % t->dims[d]; rem /= t->dims[d];
        oa += idx[d] * t->sa[d]; ob += idx[d] * t->sb[d];
    }
    for (int64_t i = b0; i < b1; i++) {
        t->out[i] = bin_apply(t->op, t->a[oa], t->b[ob]);
        for (int d = t->nd - 1; d >= 0; d--) {
            oa += t->sa[d]; ob += t->sb[d];
            if (++idx[d] < t->dims[d]) break;
            oa -= idx[d] * t->sa[d]; ob -= idx[d] * t->sb[d];
            idx[d] = 0;
        }
    }
}

static qd_status bin_setup(const qd_node *n, const qd_shape *is, const qd_shape *os, bin_task *t) {
    memset(t, 0, sizeof *t);
    t->op = n->op;
    t->nd = os->ndim;
    for (int d = 0; d < os->ndim; d++) t->dims[d] = os->dims[d];
    for (int k = 0; k < 2; k++) {
        const qd_shape *s = &is[k];
        int64_t st[QD_MAX_DIMS];
        strides_of(s, st);
        int off = os->ndim - s->ndim;
        if (off < 0) return qd_errorf(QD_ERR_DATA, "node %s: %s: input %d has rank %d > output rank %d", n->name,
                                      qd_op_name(n->op), k, s->ndim, os->ndim);
        for (int d = 0; d < os->ndim; d++) {
            int64_t v = 0;
            if (d >= off) {
                int64_t dim = s->dims[d - off];
                if (dim != 1 && dim != os->dims[d])
                    return qd_errorf(QD_ERR_DATA, "node %s: %s: input %d dim %d (%lld) does not broadcast to %lld", n->name,
                                     qd_op_name(n->op), k, d - off, (long long)dim, (long long)os->dims[d]);
                v = dim == 1 ? 0 : st[d - off];
            }
            if (k == 0) t->sa[d] = v; else t->sb[d] = v;
        }
    }
    int64_t na = numel(&is[0]), nb = numel(&is[1]), no = numel(os);
    if (na == no && nb == no) t->fast = 1;
    else if (na == no && nb == 1) t->fast = 2;
    else if (nb == no && na == 1) t->fast = 3;
    return QD_OK;
}

/* dA (k=0) or dB (k=1) for the same-shape case, parallel. */
typedef struct { const bin_task *t; int k; const float *dy; float *d; } binb_task;

static inline float bin_grad(int op, int k, float g, float av, float bv) {
    switch (op) {
    case QD_OP_ADD: return g;
    case QD_OP_SUB: return k == 0 ? g : -g;
    case QD_OP_MUL: return g * (k == 0 ? bv : av);
    default: return k == 0 ? g / bv : -g * av / (bv * bv);
    }
}

/* Gradient of an input with the output's shape (one writer per element); the partner may be
 * broadcast, so its offset follows the odometer. */
static void bin_bwd_same(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    binb_task *bt = vctx;
    const bin_task *t = bt->t;
    const float *dy = bt->dy;
    float *d = bt->d;
    if (t->fast) {
        int sa = t->fast == 3 ? 0 : 1, sb = t->fast == 2 ? 0 : 1;  /* scalar partner */
        for (int64_t i = b0; i < b1; i++) d[i] += bin_grad(t->op, bt->k, dy[i], t->a[i * sa], t->b[i * sb]);
        return;
    }
    int64_t idx[QD_MAX_DIMS], rem = b0, oa = 0, ob = 0;
    for (int dd = t->nd - 1; dd >= 0; dd--) {
        idx[dd] = rem % t->dims[dd]; rem /= t->dims[dd];
        oa += idx[dd] * t->sa[dd]; ob += idx[dd] * t->sb[dd];
    }
    for (int64_t i = b0; i < b1; i++) {
        d[i] += bin_grad(t->op, bt->k, dy[i], t->a[oa], t->b[ob]);
        for (int dd = t->nd - 1; dd >= 0; dd--) {
            oa += t->sa[dd]; ob += t->sb[dd];
            if (++idx[dd] < t->dims[dd]) break;
            oa -= idx[dd] * t->sa[dd]; ob -= idx[dd] * t->sb[dd];
            idx[dd] = 0;
        }
    }
}

static void bin_backward(qd_backend *b, const qd_shape *is, const qd_shape *os, bin_task *t, const float *dy,
                         float *const *din) {
    int64_t no = numel(os);
    for (int k = 0; k < 2; k++) {
        if (!din[k]) continue;
        if (numel(&is[k]) == no) {
            binb_task bt = {t, k, dy, din[k]};
            qd_cpu_parallel_for(qd_cpu(b)->pool, no, QD_CPU_EW_GRAIN, bin_bwd_same, &bt);
            continue;
        }
        /* broadcast input: serial accumulation in output order (deterministic) */
        float *d = din[k];
        int64_t idx[QD_MAX_DIMS] = {0}, oa = 0, ob = 0;
        for (int64_t i = 0; i < no; i++) {
            d[k == 0 ? oa : ob] += bin_grad(t->op, k, dy[i], t->a[oa], t->b[ob]);
            for (int dd = t->nd - 1; dd >= 0; dd--) {
                oa += t->sa[dd]; ob += t->sb[dd];
                if (++idx[dd] < t->dims[dd]) break;
                oa -= idx[dd] * t->sa[dd]; ob -= idx[dd] * t->sb[dd];
                idx[dd] = 0;
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* GEMM split over the pool: fixed blocks of rows (or columns when M is small); each block is */
/* one single-threaded sgemm with disjoint output.                                            */
/* ------------------------------------------------------------------------------------------ */
typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc, by_rows;
    float alpha, beta;
    const float *A, *B;
    float *C;
} pg_task;

#define QD_PG_ROWS 64
#define QD_PG_COLS 256

static void pg_run(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    pg_task *t = vctx;
    if (t->by_rows) {
        const float *A = t->ta ? t->A + b0 : t->A + b0 * t->lda;
        cblas_sgemm(CblasRowMajor, t->ta ? CblasTrans : CblasNoTrans, t->tb ? CblasTrans : CblasNoTrans, (int)(b1 - b0), t->N,
                    t->K, t->alpha, A, t->lda, t->B, t->ldb, t->beta, t->C + b0 * t->ldc, t->ldc);
    } else {
        const float *B = t->tb ? t->B + b0 * t->ldb : t->B + b0;
        cblas_sgemm(CblasRowMajor, t->ta ? CblasTrans : CblasNoTrans, t->tb ? CblasTrans : CblasNoTrans, t->M, (int)(b1 - b0),
                    t->K, t->alpha, t->A, t->lda, B, t->ldb, t->beta, t->C + b0, t->ldc);
    }
}

static void par_gemm(qd_backend *b, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                     int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    pg_task t = {ta, tb, M, N, K, lda, ldb, ldc, M >= 2 * QD_PG_ROWS || M >= N, alpha, beta, A, B, C};
    if (t.by_rows) qd_cpu_parallel_for(qd_cpu(b)->pool, M, QD_PG_ROWS, pg_run, &t);
    else qd_cpu_parallel_for(qd_cpu(b)->pool, N, QD_PG_COLS, pg_run, &t);
}

/* ------------------------------------------------------------------------------------------ */
/* Gemm: Y = alpha * A' B' + beta * C                                                         */
/* ------------------------------------------------------------------------------------------ */
/* A of rank > 2 (transA = 0) is a stack of rows: [N, T, F] is the [N*T, F] matrix (graph.h). */
static qd_status gemm_dims(const qd_node *n, const qd_shape *is, const qd_shape *os, int *M, int *N, int *K) {
    if (is[0].ndim < 2 || is[1].ndim != 2 || os->ndim != is[0].ndim || (is[0].ndim != 2 && n->a.trans_a))
        return qd_errorf(QD_ERR_UNSUPPORTED, "node %s: Gemm needs 2-D A and B (got rank %d and %d)", n->name, is[0].ndim,
                         is[1].ndim);
    int r = is[0].ndim;
    *K = (int)(n->a.trans_a ? is[0].dims[0] : is[0].dims[r - 1]);
    *M = (int)(n->a.trans_a ? is[0].dims[1] : numel(&is[0]) / (*K > 0 ? *K : 1));
    int kb = (int)(n->a.trans_b ? is[1].dims[1] : is[1].dims[0]);
    *N = (int)(n->a.trans_b ? is[1].dims[0] : is[1].dims[1]);
    if (kb != *K || numel(os) != (int64_t)*M * *N || os->dims[r - 1] != *N)
        return qd_errorf(QD_ERR_DATA, "node %s: Gemm: inner dimensions differ (%d vs %d)", n->name, *K, kb);
    return QD_OK;
}

/* Offset of C's element for output (i, j) given C's (broadcastable) shape. */
static int64_t gemm_c_off(const qd_shape *cs, int64_t i, int64_t j) {
    if (cs->ndim == 0) return 0;
    if (cs->ndim == 1) return cs->dims[0] == 1 ? 0 : j;
    int64_t r = cs->dims[0] == 1 ? 0 : i, c = cs->dims[1] == 1 ? 0 : j;
    return r * cs->dims[1] + c;
}

static qd_status gemm_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                              const qd_shape *os, float *out) {
    int M, N, K;
    QD_TRY(gemm_dims(n, is, os, &M, &N, &K));
    float alpha = n->a.alpha, beta = n->a.beta;
    const float *C = n->ninputs > 2 ? in[2] : NULL;
    if (C && beta != 0.0f) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) out[i * N + j] = beta * C[gemm_c_off(&is[2], i, j)];
    } else {
        memset(out, 0, sizeof(float) * (size_t)M * (size_t)N);
    }
    par_gemm(b, n->a.trans_a, n->a.trans_b, M, N, K, alpha, in[0], (int)is[0].dims[is[0].ndim - 1], in[1], (int)is[1].dims[1],
             1.0f, out, N);
    return QD_OK;
}

static qd_status gemm_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                               const qd_shape *os, const float *dy, float *const *din) {
    int M, N, K;
    QD_TRY(gemm_dims(n, is, os, &M, &N, &K));
    float alpha = n->a.alpha;
    int ta = n->a.trans_a, tb = n->a.trans_b;
    int lda = (int)is[0].dims[is[0].ndim - 1], ldb = (int)is[1].dims[1];
    if (din[0]) {
        if (!ta) par_gemm(b, 0, !tb, M, K, N, alpha, dy, N, in[1], ldb, 1.0f, din[0], K);   /* dA = dY op(B)^T */
        else par_gemm(b, tb, 1, K, M, N, alpha, in[1], ldb, dy, N, 1.0f, din[0], M);        /* dA^T = op(B) dY^T */
    }
    if (n->ninputs > 1 && din[1]) {
        if (!tb) par_gemm(b, !ta, 0, K, N, M, alpha, in[0], lda, dy, N, 1.0f, din[1], N);   /* dB = op(A)^T dY */
        else par_gemm(b, 1, ta, N, K, M, alpha, dy, N, in[0], lda, 1.0f, din[1], K);        /* dB^T = dY^T op(A) */
    }
    if (n->ninputs > 2 && din[2]) {
        float beta = n->a.beta;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) din[2][gemm_c_off(&is[2], i, j)] += beta * dy[i * N + j];
    }
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* MatMul (numpy semantics, batched, broadcasting leading dims)                                */
/* ------------------------------------------------------------------------------------------ */
typedef struct {
    int64_t M, N, K, nbatch;
    int nbd;
    int64_t bdims[QD_MAX_DIMS], sa[QD_MAX_DIMS], sb[QD_MAX_DIMS]; /* in matrices */
    int a_bcast, b_bcast;     /* some output batch shares an A (B) matrix */
    int64_t a_mats, b_mats;
} mm_p;

static qd_status mm_setup(const qd_node *n, const qd_shape *is, const qd_shape *os, mm_p *p) {
    memset(p, 0, sizeof *p);
    const qd_shape *A = &is[0], *B = &is[1];
    if (A->ndim < 1 || B->ndim < 1) return qd_errorf(QD_ERR_DATA, "node %s: MatMul of a scalar", n->name);
    p->K = A->dims[A->ndim - 1];
    p->M = A->ndim >= 2 ? A->dims[A->ndim - 2] : 1;
    p->N = B->ndim >= 2 ? B->dims[B->ndim - 1] : 1;
    int64_t kb = B->ndim >= 2 ? B->dims[B->ndim - 2] : B->dims[0];
    if (kb != p->K) return qd_errorf(QD_ERR_DATA, "node %s: MatMul inner dims differ (%lld vs %lld)", n->name,
                                     (long long)p->K, (long long)kb);
    int abd = A->ndim >= 2 ? A->ndim - 2 : 0, bbd = B->ndim >= 2 ? B->ndim - 2 : 0;
    p->nbd = abd > bbd ? abd : bbd;
    p->nbatch = 1; p->a_mats = 1; p->b_mats = 1;
    int64_t accA = 1, accB = 1;
    for (int d = p->nbd - 1; d >= 0; d--) {
        int ia = d - (p->nbd - abd), ib = d - (p->nbd - bbd);
        int64_t da = ia >= 0 ? A->dims[ia] : 1, db = ib >= 0 ? B->dims[ib] : 1;
        int64_t dd = da > db ? da : db;
        if ((da != 1 && da != dd) || (db != 1 && db != dd))
            return qd_errorf(QD_ERR_DATA, "node %s: MatMul batch dims do not broadcast", n->name);
        p->bdims[d] = dd;
        p->sa[d] = da == 1 ? 0 : accA; p->sb[d] = db == 1 ? 0 : accB;
        if (da == 1 && dd > 1) p->a_bcast = 1;
        if (db == 1 && dd > 1) p->b_bcast = 1;
        accA *= da; accB *= db; p->nbatch *= dd;
    }
    p->a_mats = accA; p->b_mats = accB;
    if (numel(os) != p->nbatch * p->M * p->N) return qd_errorf(QD_ERR_DATA, "node %s: MatMul output size mismatch", n->name);
    return QD_OK;
}

static void mm_offsets(const mm_p *p, int64_t bi, int64_t *ai, int64_t *bj) {
    int64_t a = 0, bb = 0;
    for (int d = p->nbd - 1; d >= 0; d--) {
        int64_t i = bi % p->bdims[d];
        bi /= p->bdims[d];
        a += i * p->sa[d]; bb += i * p->sb[d];
    }
    *ai = a; *bj = bb;
}

typedef struct { const mm_p *p; const float *A, *B, *dY; float *Y, *dA, *dB; } mm_task;

static void mm_fwd_task(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    mm_task *t = vctx;
    const mm_p *p = t->p;
    for (int64_t bi = b0; bi < b1; bi++) {
        int64_t ai, bj;
        mm_offsets(p, bi, &ai, &bj);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)p->M, (int)p->N, (int)p->K, 1.0f, t->A + ai * p->M * p->K,
                    (int)p->K, t->B + bj * p->K * p->N, (int)p->N, 0.0f, t->Y + bi * p->M * p->N, (int)p->N);
    }
}

/* Backward per output batch when neither side is broadcast (one writer per matrix). */
static void mm_bwd_task(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    mm_task *t = vctx;
    const mm_p *p = t->p;
    for (int64_t bi = b0; bi < b1; bi++) {
        int64_t ai, bj;
        mm_offsets(p, bi, &ai, &bj);
        const float *dy = t->dY + bi * p->M * p->N;
        if (t->dA)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)p->M, (int)p->K, (int)p->N, 1.0f, dy, (int)p->N,
                        t->B + bj * p->K * p->N, (int)p->N, 1.0f, t->dA + ai * p->M * p->K, (int)p->K);
        if (t->dB)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)p->K, (int)p->N, (int)p->M, 1.0f, t->A + ai * p->M * p->K,
                        (int)p->K, dy, (int)p->N, 1.0f, t->dB + bj * p->K * p->N, (int)p->N);
    }
}

static qd_status matmul_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                                const qd_shape *os, float *out) {
    mm_p p;
    QD_TRY(mm_setup(n, is, os, &p));
    if (p.b_mats == 1 && !p.b_bcast && p.a_mats == p.nbatch) {
        /* B shared by every batch and A contiguous: one tall GEMM */
        par_gemm(b, 0, 0, (int)(p.nbatch * p.M), (int)p.N, (int)p.K, 1.0f, in[0], (int)p.K, in[1], (int)p.N, 0.0f, out, (int)p.N);
        return QD_OK;
    }
    mm_task t = {&p, in[0], in[1], NULL, out, NULL, NULL};
    qd_cpu_parallel_for(qd_cpu(b)->pool, p.nbatch, 1, mm_fwd_task, &t);
    return QD_OK;
}

static qd_status matmul_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                                 const qd_shape *os, const float *dy, float *const *din) {
    mm_p p;
    QD_TRY(mm_setup(n, is, os, &p));
    float *dA = din[0], *dB = din[1];
    if (p.b_mats == 1 && p.a_mats == p.nbatch) {
        int64_t R = p.nbatch * p.M;
        if (dA) par_gemm(b, 0, 1, (int)R, (int)p.K, (int)p.N, 1.0f, dy, (int)p.N, in[1], (int)p.N, 1.0f, dA, (int)p.K);
        if (dB) par_gemm(b, 1, 0, (int)p.K, (int)p.N, (int)R, 1.0f, in[0], (int)p.K, dy, (int)p.N, 1.0f, dB, (int)p.N);
        return QD_OK;
    }
    mm_task t = {&p, in[0], in[1], dy, NULL, p.a_bcast ? NULL : dA, p.b_bcast ? NULL : dB};
    if (t.dA || t.dB) qd_cpu_parallel_for(qd_cpu(b)->pool, p.nbatch, 1, mm_bwd_task, &t);
    /* broadcast sides: serial over output batches, fixed order */
    mm_task s = {&p, in[0], in[1], dy, NULL, p.a_bcast ? dA : NULL, p.b_bcast ? dB : NULL};
    if (s.dA || s.dB) mm_bwd_task(&s, 0, p.nbatch, 0);
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Pooling (2-D, NCHW). Task = one (n, c) plane.                                               */
/* ------------------------------------------------------------------------------------------ */
typedef struct {
    int64_t H, W, OH, OW;
    int kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, include_pad;
    const float *x, *dy;
    float *y, *dx;
    float inv;                /* global pool: 1/HW */
} pool_p;

static qd_status pool_setup(const qd_node *n, const qd_shape *is, const qd_shape *os, pool_p *p) {
    memset(p, 0, sizeof *p);
    if (is[0].ndim != 4 || os->ndim != 4)
        return qd_errorf(QD_ERR_UNSUPPORTED, "node %s: %s: only 2-D pooling on 4-D tensors is supported", n->name,
                         qd_op_name(n->op));
    const qd_attrs *a = &n->a;
    p->H = is[0].dims[2]; p->W = is[0].dims[3]; p->OH = os->dims[2]; p->OW = os->dims[3];
    p->kh = a->kernel[0]; p->kw = a->kernel[1];
    p->sh = a->stride[0] > 0 ? a->stride[0] : 1; p->sw = a->stride[1] > 0 ? a->stride[1] : 1;
    p->dh = a->dilation[0] > 0 ? a->dilation[0] : 1; p->dw = a->dilation[1] > 0 ? a->dilation[1] : 1;
    p->pt = a->pads[0]; p->pl = a->pads[1]; p->pb = a->pads[2]; p->pr = a->pads[3];
    p->include_pad = a->count_include_pad;
    if (n->op != QD_OP_GLOBALAVGPOOL && (p->kh < 1 || p->kw < 1))
        return qd_errorf(QD_ERR_DATA, "node %s: %s without kernel_shape", n->name, qd_op_name(n->op));
    return QD_OK;
}

/* Window of output (oh, ow) clipped to the input; divisor follows torch's avg_pool2d:
 * with count_include_pad the window is clipped to the padded input (ceil_mode overhang is not
 * counted), otherwise to the input. */
static void avg_window(const pool_p *p, int64_t oh, int64_t ow, int64_t *h0, int64_t *h1, int64_t *w0, int64_t *w1,
                       float *div) {
    int64_t hs = oh * p->sh - p->pt, ws = ow * p->sw - p->pl;
    int64_t he = hs + p->kh, we = ws + p->kw;
    if (he > p->H + p->pb) he = p->H + p->pb;
    if (we > p->W + p->pr) we = p->W + p->pr;
    int64_t psize = (he - hs) * (we - ws);
    if (hs < 0) hs = 0;
    if (ws < 0) ws = 0;
    if (he > p->H) he = p->H;
    if (we > p->W) we = p->W;
    *h0 = hs; *h1 = he; *w0 = ws; *w1 = we;
    int64_t cnt = p->include_pad ? psize : (he - hs) * (we - ws);
    *div = cnt > 0 ? (float)cnt : 1.0f;
}

static void maxpool_fwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    const pool_p *p = vctx;
    for (int64_t pl = b0; pl < b1; pl++) {
        const float *x = p->x + pl * p->H * p->W;
        float *y = p->y + pl * p->OH * p->OW;
        for (int64_t oh = 0; oh < p->OH; oh++)
            for (int64_t ow = 0; ow < p->OW; ow++) {
                float m = -INFINITY;
                for (int ki = 0; ki < p->kh; ki++) {
                    int64_t ih = oh * p->sh - p->pt + (int64_t)ki * p->dh;
                    if (ih < 0 || ih >= p->H) continue;
                    for (int kj = 0; kj < p->kw; kj++) {
                        int64_t iw = ow * p->sw - p->pl + (int64_t)kj * p->dw;
                        if (iw < 0 || iw >= p->W) continue;
                        float v = x[ih * p->W + iw];
                        if (v > m || isnan(v)) m = v;
                    }
                }
                y[oh * p->OW + ow] = m;
            }
    }
}

/* Gradient goes to the first maximum in scan order (torch's rule). */
static void maxpool_bwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    const pool_p *p = vctx;
    for (int64_t pl = b0; pl < b1; pl++) {
        const float *x = p->x + pl * p->H * p->W;
        const float *dy = p->dy + pl * p->OH * p->OW;
        float *dx = p->dx + pl * p->H * p->W;
        for (int64_t oh = 0; oh < p->OH; oh++)
            for (int64_t ow = 0; ow < p->OW; ow++) {
                float m = -INFINITY;
                int64_t arg = -1;
                for (int ki = 0; ki < p->kh; ki++) {
                    int64_t ih = oh * p->sh - p->pt + (int64_t)ki * p->dh;
                    if (ih < 0 || ih >= p->H) continue;
                    for (int kj = 0; kj < p->kw; kj++) {
                        int64_t iw = ow * p->sw - p->pl + (int64_t)kj * p->dw;
                        if (iw < 0 || iw >= p->W) continue;
                        float v = x[ih * p->W + iw];
                        if (arg < 0 || v > m || isnan(v)) { m = v; arg = ih * p->W + iw; }
                    }
                }
                if (arg >= 0) dx[arg] += dy[oh * p->OW + ow];
            }
    }
}

static void avgpool_fwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    const pool_p *p = vctx;
    for (int64_t pl = b0; pl < b1; pl++) {
        const float *x = p->x + pl * p->H * p->W;
        float *y = p->y + pl * p->OH * p->OW;
        for (int64_t oh = 0; oh < p->OH; oh++)
            for (int64_t ow = 0; ow < p->OW; ow++) {
                int64_t h0, h1, w0, w1;
                float div;
                avg_window(p, oh, ow, &h0, &h1, &w0, &w1, &div);
                float s = 0.0f;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) s += x[ih * p->W + iw];
                y[oh * p->OW + ow] = s / div;
            }
    }
}

static void avgpool_bwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    const pool_p *p = vctx;
    for (int64_t pl = b0; pl < b1; pl++) {
        const float *dy = p->dy + pl * p->OH * p->OW;
        float *dx = p->dx + pl * p->H * p->W;
        for (int64_t oh = 0; oh < p->OH; oh++)
            for (int64_t ow = 0; ow < p->OW; ow++) {
                int64_t h0, h1, w0, w1;
                float div;
                avg_window(p, oh, ow, &h0, &h1, &w0, &w1, &div);
                float g = dy[oh * p->OW + ow] / div;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) dx[ih * p->W + iw] += g;
            }
    }
}

static void gap_fwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    const pool_p *p = vctx;
    int64_t hw = p->H * p->W;
    for (int64_t pl = b0; pl < b1; pl++) {
        const float *x = p->x + pl * hw;
        double s = 0.0;
        for (int64_t i = 0; i < hw; i++) s += x[i];
        p->y[pl] = (float)(s / (double)hw);
    }
}

static void gap_bwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    const pool_p *p = vctx;
    int64_t hw = p->H * p->W;
    for (int64_t pl = b0; pl < b1; pl++) {
        float g = p->dy[pl] * p->inv;
        float *dx = p->dx + pl * hw;
        for (int64_t i = 0; i < hw; i++) dx[i] += g;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* ReduceMean: task = one output element, summing its reduced sub-space in fixed order.        */
/* ------------------------------------------------------------------------------------------ */
typedef struct {
    int nk, nr;
    int64_t kdims[QD_MAX_DIMS], kst[QD_MAX_DIMS], rdims[QD_MAX_DIMS], rst[QD_MAX_DIMS];
    int64_t cnt;
    const float *x, *dy;
    float *y, *dx;
} red_p;

static qd_status red_setup(const qd_node *n, const qd_shape *is, red_p *p) {
    memset(p, 0, sizeof *p);
    int64_t st[QD_MAX_DIMS];
    strides_of(&is[0], st);
    int mask[QD_MAX_DIMS] = {0};
    if (n->a.naxes == 0) for (int d = 0; d < is[0].ndim; d++) mask[d] = 1;  /* ONNX: all axes */
    for (int k = 0; k < n->a.naxes; k++) {
        int64_t ax = n->a.axes[k];
        if (ax < 0 || ax >= is[0].ndim) return qd_errorf(QD_ERR_DATA, "node %s: ReduceMean axis %lld out of range", n->name, (long long)ax);
        mask[ax] = 1;
    }
    p->cnt = 1;
    for (int d = 0; d < is[0].ndim; d++) {
        if (mask[d]) { p->rdims[p->nr] = is[0].dims[d]; p->rst[p->nr++] = st[d]; p->cnt *= is[0].dims[d]; }
        else { p->kdims[p->nk] = is[0].dims[d]; p->kst[p->nk++] = st[d]; }
    }
    return QD_OK;
}

static void red_run(void *vctx, int64_t b0, int64_t b1, int tid, int bwd) {
    (void)tid;
    red_p *p = vctx;
    for (int64_t o = b0; o < b1; o++) {
        int64_t rem = o, base = 0;
        for (int d = p->nk - 1; d >= 0; d--) { base += (rem % p->kdims[d]) * p->kst[d]; rem /= p->kdims[d]; }
        int64_t idx[QD_MAX_DIMS] = {0}, off = base;
        double s = 0.0;
        float g = bwd ? p->dy[o] / (float)p->cnt : 0.0f;
        for (int64_t r = 0; r < p->cnt; r++) {
            if (bwd) p->dx[off] += g; else s += p->x[off];
            for (int d = p->nr - 1; d >= 0; d--) {
                off += p->rst[d];
                if (++idx[d] < p->rdims[d]) break;
                off -= idx[d] * p->rst[d];
                idx[d] = 0;
            }
        }
        if (!bwd) p->y[o] = (float)(s / (double)p->cnt);
    }
}
static void red_fwd(void *c, int64_t b0, int64_t b1, int tid) { red_run(c, b0, b1, tid, 0); }
static void red_bwd(void *c, int64_t b0, int64_t b1, int tid) { red_run(c, b0, b1, tid, 1); }

/* ------------------------------------------------------------------------------------------ */
/* Softmax. opset >= 13: along one axis; earlier opsets: over the flattened dims >= axis.      */
/* Task = one (outer, inner) row.                                                              */
/* ------------------------------------------------------------------------------------------ */
typedef struct { int64_t outer, len, inner; const float *x, *y, *dy; float *out, *dx; } sm_p;

static void sm_setup(const qd_node *n, const qd_shape *s, sm_p *p) {
    memset(p, 0, sizeof *p);
    int ax = n->a.axis;
    if (ax < 0) ax += s->ndim;
    if (ax >= s->ndim) ax = s->ndim - 1;
    p->outer = 1; p->len = 1; p->inner = 1;
    for (int d = 0; d < ax; d++) p->outer *= s->dims[d];
    if (n->opset > 0 && n->opset < 13) {
        for (int d = ax; d < s->ndim; d++) p->len *= s->dims[d];
    } else {
        p->len = s->dims[ax];
        for (int d = ax + 1; d < s->ndim; d++) p->inner *= s->dims[d];
    }
}

static void sm_fwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    sm_p *p = vctx;
    for (int64_t r = b0; r < b1; r++) {
        int64_t o = r / p->inner, i = r % p->inner, base = o * p->len * p->inner + i;
        const float *x = p->x + base;
        float *y = p->out + base;
        float m = -INFINITY;
        for (int64_t k = 0; k < p->len; k++) m = fmaxf(m, x[k * p->inner]);
        float s = 0.0f;
        for (int64_t k = 0; k < p->len; k++) { float e = expf(x[k * p->inner] - m); y[k * p->inner] = e; s += e; }
        for (int64_t k = 0; k < p->len; k++) y[k * p->inner] /= s;
    }
}

static void sm_bwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    sm_p *p = vctx;
    for (int64_t r = b0; r < b1; r++) {
        int64_t o = r / p->inner, i = r % p->inner, base = o * p->len * p->inner + i;
        const float *y = p->y + base, *dy = p->dy + base;
        float *dx = p->dx + base;
        float s = 0.0f;
        for (int64_t k = 0; k < p->len; k++) s += dy[k * p->inner] * y[k * p->inner];
        for (int64_t k = 0; k < p->len; k++) dx[k * p->inner] += y[k * p->inner] * (dy[k * p->inner] - s);
    }
}

/* Softmax with an additive mask input (graph.h): y = softmax(x + mask) along the axis, with the
 * row function of core/nnmath.h (the BERT encoder's numerics: sum in double, padded keys 0). The
 * mask broadcasts to x; its offset for a row follows its strides (0 on broadcast dims). */
typedef struct {
    int64_t outer, len, inner;
    int nd, ax;
    int64_t dims[QD_MAX_DIMS], mst[QD_MAX_DIMS];
    const float *x, *mask, *y, *dy;
    float *out, *dx;
} smm_p;

static qd_status smm_setup(const qd_node *n, const qd_shape *is, const qd_shape *os, smm_p *p) {
    memset(p, 0, sizeof *p);
    const qd_shape *m = &is[1];
    int nd = os->ndim, ax = n->a.axis;
    if (ax < 0) ax += nd;
    if (ax < 0 || ax >= nd) return qd_errorf(QD_ERR_DATA, "node %s: Softmax axis %d out of range", n->name, n->a.axis);
    if (m->ndim > nd) return qd_errorf(QD_ERR_DATA, "node %s: Softmax mask rank %d vs scores rank %d", n->name, m->ndim, nd);
    int64_t st[QD_MAX_DIMS];
    strides_of(m, st);
    p->nd = nd; p->ax = ax;
    p->outer = 1; p->len = os->dims[ax]; p->inner = 1;
    for (int d = 0; d < nd; d++) {
        int md = d - (nd - m->ndim); /* right-aligned (numpy) */
        int64_t dim = md >= 0 ? m->dims[md] : 1;
        if (dim != 1 && dim != os->dims[d])
            return qd_errorf(QD_ERR_DATA, "node %s: Softmax mask dim %d (%lld) does not broadcast to %lld", n->name, md,
                             (long long)dim, (long long)os->dims[d]);
        p->dims[d] = os->dims[d];
        p->mst[d] = dim == 1 ? 0 : st[md];
        if (d < ax) p->outer *= os->dims[d];
        if (d > ax) p->inner *= os->dims[d];
    }
    return QD_OK;
}

/* mask offset of row r = (outer index, inner index) */
static int64_t smm_mask_off(const smm_p *p, int64_t r) {
    int64_t o = r / p->inner, i = r % p->inner, off = 0;
    for (int d = p->nd - 1; d > p->ax; d--) { off += (i % p->dims[d]) * p->mst[d]; i /= p->dims[d]; }
    for (int d = p->ax - 1; d >= 0; d--) { off += (o % p->dims[d]) * p->mst[d]; o /= p->dims[d]; }
    return off;
}

static void smm_fwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    smm_p *p = vctx;
    for (int64_t r = b0; r < b1; r++) {
        int64_t base = (r / p->inner) * p->len * p->inner + r % p->inner;
        qd_softmax_row(p->x + base, p->inner, p->mask + smm_mask_off(p, r), p->mst[p->ax], p->len, p->out + base);
    }
}

static void smm_bwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    smm_p *p = vctx;
    for (int64_t r = b0; r < b1; r++) {
        int64_t base = (r / p->inner) * p->len * p->inner + r % p->inner;
        qd_softmax_backward_row(p->y + base, p->dy + base, p->inner, p->len, p->dx + base, 1);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* LayerNormalization over dims [axis, ndim) (ONNX opset 17), row math from core/nnmath.h (the */
/* BERT encoder's). Scale and B are frozen constants: only dX is computed. Task = one row.      */
/* ------------------------------------------------------------------------------------------ */
typedef struct {
    qd_backend *b;
    int64_t len;
    float eps;
    const float *x, *g, *bias, *dy;
    float *y, *dx;
} ln_p;

static qd_status ln_setup(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in, ln_p *p,
                          int64_t *rows) {
    memset(p, 0, sizeof *p);
    int ax = n->a.axis;
    if (ax < 0) ax += is[0].ndim;
    if (ax < 0 || ax >= is[0].ndim)
        return qd_errorf(QD_ERR_DATA, "node %s: LayerNormalization axis %d out of range", n->name, n->a.axis);
    p->b = b;
    p->len = 1;
    for (int d = ax; d < is[0].ndim; d++) p->len *= is[0].dims[d];
    if (n->ninputs < 2 || !in[1]) return qd_errorf(QD_ERR_DATA, "node %s: LayerNormalization needs Scale", n->name);
    for (int k = 1; k < 3 && k < n->ninputs; k++)
        if (in[k] && numel(&is[k]) != p->len)
            return qd_errorf(QD_ERR_DATA, "node %s: LayerNormalization input %d has %lld elements, the normalised dims %lld",
                             n->name, k, (long long)numel(&is[k]), (long long)p->len);
    p->eps = n->a.epsilon;
    p->x = in[0];
    p->g = in[1];
    p->bias = n->ninputs > 2 ? in[2] : NULL;
    *rows = p->len ? numel(&is[0]) / p->len : 0;
    return QD_OK;
}

static void ln_fwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    ln_p *p = vctx;
    for (int64_t r = b0; r < b1; r++)
        qd_layernorm_row(p->x + r * p->len, p->g, p->bias, p->len, p->eps, p->y + r * p->len, NULL, NULL);
}

/* xhat is recomputed with the forward's expressions (same bits as a cached one) in scratch */
static void ln_bwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    ln_p *p = vctx;
    float *xhat = qd_cpu(p->b)->scratch[tid];
    for (int64_t r = b0; r < b1; r++) {
        const float *x = p->x + r * p->len;
        double mean;
        float rs;
        qd_ln_stats(x, p->len, p->eps, &mean, &rs);
        for (int64_t i = 0; i < p->len; i++) xhat[i] = qd_ln_xhat(x[i], mean, rs);
        qd_layernorm_backward_row(p->dy + r * p->len, xhat, rs, p->g, p->len, p->dx + r * p->len, 1, NULL, NULL);
    }
}

#define QD_CPU_ROW_GRAIN 16 /* rows per task of the row ops (no cross-row reduction) */

/* Gelu (exact erf), core/nnmath.h; plain loops (no SIMD clones) so erff/expf are the scalar libm
 * calls encoder.c makes. */
static void gelu_fwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    ew_task *t = vctx;
    for (int64_t i = b0; i < b1; i++) t->out[i] = qd_gelu(t->x[i]);
}
static void gelu_bwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    ew_task *t = vctx;
    for (int64_t i = b0; i < b1; i++) t->out[i] += t->dy[i] * qd_gelu_grad(t->x[i]);
}

/* ------------------------------------------------------------------------------------------ */
/* Shape ops as strided views                                                                   */
/* ------------------------------------------------------------------------------------------ */
static qd_status slice_view(const qd_node *n, const qd_shape *is, const qd_shape *os, gview *v) {
    int64_t st[QD_MAX_DIMS];
    if (is[0].ndim != os->ndim) return qd_errorf(QD_ERR_DATA, "node %s: Slice changes the rank", n->name);
    strides_of(&is[0], st);
    v->nd = os->ndim; v->base = 0;
    for (int d = 0; d < os->ndim; d++) {
        int64_t step = n->a.slice_step[d] ? n->a.slice_step[d] : 1;
        int64_t start = n->a.slice_start[d];
        v->dims[d] = os->dims[d];
        if (os->dims[d] > 0) {
            int64_t last = start + (os->dims[d] - 1) * step;
            if (start < 0 || start >= is[0].dims[d] || last < 0 || last >= is[0].dims[d])
                return qd_errorf(QD_ERR_DATA, "node %s: Slice dim %d: start %lld step %lld x %lld leaves the input (%lld)",
                                 n->name, d, (long long)start, (long long)step, (long long)os->dims[d], (long long)is[0].dims[d]);
        }
        v->base += start * st[d];
        v->st[d] = step * st[d];
    }
    return QD_OK;
}

static qd_status transpose_view(const qd_node *n, const qd_shape *is, const qd_shape *os, gview *v) {
    int64_t st[QD_MAX_DIMS];
    strides_of(&is[0], st);
    v->nd = os->ndim; v->base = 0;
    for (int d = 0; d < os->ndim; d++) {
        int64_t pd = n->a.nperm ? n->a.perm[d] : os->ndim - 1 - d;  /* default: reverse */
        if (pd < 0 || pd >= is[0].ndim) return qd_errorf(QD_ERR_DATA, "node %s: Transpose perm out of range", n->name);
        v->dims[d] = os->dims[d];
        v->st[d] = st[pd];
    }
    return QD_OK;
}

/* Pad (constant): task over output elements; in-range ones copy / pass the gradient back. */
typedef struct {
    int nd;
    int64_t odims[QD_MAX_DIMS], idims[QD_MAX_DIMS], ist[QD_MAX_DIMS], beg[QD_MAX_DIMS];
    float value;
    const float *x, *dy;
    float *y, *dx;
    int bwd;
} pad_p;

static void pad_run(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    pad_p *p = vctx;
    int last = p->nd - 1;
    if (last < 0) {  /* rank 0: a plain copy */
        for (int64_t o = b0; o < b1; o++) { if (p->bwd) p->dx[o] += p->dy[o]; else p->y[o] = p->x[o]; }
        return;
    }
    /* one row of the innermost dimension at a time: index arithmetic per row, not per element */
    int64_t L = p->odims[last], lb = p->beg[last], li = p->idims[last], ls = p->ist[last];
    for (int64_t o = b0; o < b1;) {
        int64_t row = o / L, j0 = o - row * L, n = L - j0 < b1 - o ? L - j0 : b1 - o;
        int64_t rem = row, off = 0;
        int inside = 1;
        for (int d = last - 1; d >= 0; d--) {
            int64_t i = rem % p->odims[d] - p->beg[d];
            rem /= p->odims[d];
            if (i < 0 || i >= p->idims[d]) inside = 0;
            off += i * p->ist[d];
        }
        for (int64_t j = 0; j < n; j++) {
            int64_t i = j0 + j - lb;
            int in = inside && i >= 0 && i < li;
            if (p->bwd) { if (in) p->dx[off + i * ls] += p->dy[o + j]; }
            else p->y[o + j] = in ? p->x[off + i * ls] : p->value;
        }
        o += n;
    }
}

static qd_status pad_setup(const qd_node *n, const qd_shape *is, const qd_shape *os, pad_p *p) {
    memset(p, 0, sizeof *p);
    if (is[0].ndim != os->ndim) return qd_errorf(QD_ERR_DATA, "node %s: Pad changes the rank", n->name);
    p->nd = os->ndim;
    strides_of(&is[0], p->ist);
    for (int d = 0; d < p->nd; d++) {
        p->odims[d] = os->dims[d]; p->idims[d] = is[0].dims[d]; p->beg[d] = n->a.pad_begin[d];
    }
    p->value = n->a.pad_value;
    return QD_OK;
}

/* Concat: each input is a strided window of the output. */
static void concat_view(const qd_shape *is, const qd_shape *os, int axis, int64_t offset, gview *v) {
    int64_t st[QD_MAX_DIMS] = {0};
    strides_of(os, st);
    int nd = os->ndim < QD_MAX_DIMS ? os->ndim : QD_MAX_DIMS; /* shapes are validated; bound for the compiler */
    if (axis < 0 || axis >= QD_MAX_DIMS) axis = 0;
    v->nd = nd;
    for (int d = 0; d < nd; d++) { v->dims[d] = is->dims[d]; v->st[d] = st[d]; }
    v->base = offset * st[axis];
}

/* ------------------------------------------------------------------------------------------ */
/* Resize (2-D, NCHW): taps from graph/resize_math.h. Forward task = one output row; backward   */
/* task = one input row (n, c, ih), summing every output that reads it in a fixed order, so    */
/* each gradient element has one writer (deterministic without atomics).                        */
/* ------------------------------------------------------------------------------------------ */
typedef struct {
    int64_t H, W, OH, OW;
    int mode, coord, nearest;
    float sh, sw;
    const float *x, *dy;
    float *y, *dx;
} rs_p;

static qd_status rs_setup(const qd_node *n, const qd_shape *is, const qd_shape *os, rs_p *p) {
    memset(p, 0, sizeof *p);
    if (is[0].ndim != 4 || os->ndim != 4 || is[0].dims[0] != os->dims[0] || is[0].dims[1] != os->dims[1])
        return qd_errorf(QD_ERR_UNSUPPORTED, "node %s: Resize: only 2-D resizing of NCHW tensors", n->name);
    p->H = is[0].dims[2]; p->W = is[0].dims[3]; p->OH = os->dims[2]; p->OW = os->dims[3];
    p->mode = n->a.resize_mode; p->coord = n->a.resize_coord; p->nearest = n->a.resize_nearest;
    p->sh = n->a.resize_scale[0]; p->sw = n->a.resize_scale[1];
    return QD_OK;
}

static void rs_fwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    const rs_p *p = vctx;
    for (int64_t r = b0; r < b1; r++) {
        int64_t plane = r / p->OH, oh = r % p->OH;
        const float *x = p->x + plane * p->H * p->W;
        float *y = p->y + r * p->OW;
        qd_resize_tap th = qd_resize_tap_at(p->mode, p->coord, p->nearest, p->sh, p->H, p->OH, oh);
        for (int64_t ow = 0; ow < p->OW; ow++) {
            qd_resize_tap tw = qd_resize_tap_at(p->mode, p->coord, p->nearest, p->sw, p->W, p->OW, ow);
            const float *r0 = x + th.i0 * p->W, *r1 = x + th.i1 * p->W;
            y[ow] = th.w0 * (tw.w0 * r0[tw.i0] + tw.w1 * r0[tw.i1]) + th.w1 * (tw.w0 * r1[tw.i0] + tw.w1 * r1[tw.i1]);
        }
    }
}

static void rs_bwd(void *vctx, int64_t b0, int64_t b1, int tid) {
    (void)tid;
    const rs_p *p = vctx;
    for (int64_t r = b0; r < b1; r++) {
        int64_t plane = r / p->H, ih = r % p->H;
        float *dx = p->dx + r * p->W;
        const float *dy = p->dy + plane * p->OH * p->OW;
        for (int64_t oh = 0; oh < p->OH; oh++) {
            qd_resize_tap th = qd_resize_tap_at(p->mode, p->coord, p->nearest, p->sh, p->H, p->OH, oh);
            float wh = (th.i0 == ih ? th.w0 : 0.0f) + (th.i1 == ih ? th.w1 : 0.0f);
            if (wh == 0.0f) continue;
            for (int64_t ow = 0; ow < p->OW; ow++) {
                qd_resize_tap tw = qd_resize_tap_at(p->mode, p->coord, p->nearest, p->sw, p->W, p->OW, ow);
                float g = wh * dy[oh * p->OW + ow];
                dx[tw.i0] += g * tw.w0;
                if (tw.w1 != 0.0f) dx[tw.i1] += g * tw.w1;
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* BatchNormalization (inference; normally folded, §8.6)                                        */
/* ------------------------------------------------------------------------------------------ */
static qd_status bn_apply(const qd_node *n, const qd_shape *is, const float *const *in, const float *src, float *dst,
                          int bwd) {
    if (n->ninputs < 5 || !in[1] || !in[2] || !in[3] || !in[4])
        return qd_errorf(QD_ERR_DATA, "node %s: BatchNormalization needs scale, B, mean and var", n->name);
    int64_t N = is[0].dims[0], C = is[0].ndim > 1 ? is[0].dims[1] : 1, inner = 1;
    for (int d = 2; d < is[0].ndim; d++) inner *= is[0].dims[d];
    for (int64_t c = 0; c < C; c++) {
        float k = in[1][c] / sqrtf(in[4][c] + n->a.epsilon);
        float sh = in[2][c] - in[3][c] * k;
        for (int64_t s = 0; s < N; s++) {
            const float *x = src + (s * C + c) * inner;
            float *y = dst + (s * C + c) * inner;
            if (bwd) for (int64_t i = 0; i < inner; i++) y[i] += x[i] * k;
            else for (int64_t i = 0; i < inner; i++) y[i] = x[i] * k + sh;
        }
    }
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Dispatch                                                                                     */
/* ------------------------------------------------------------------------------------------ */
static qd_status need_inputs(const qd_node *n, const float *const *in, int k) {
    if (n->ninputs < k) return qd_errorf(QD_ERR_DATA, "node %s: %s needs %d inputs, has %d", n->name, qd_op_name(n->op), k, n->ninputs);
    for (int i = 0; i < k; i++)
        if (!in[i]) return qd_errorf(QD_ERR_INTERNAL, "node %s: %s input %d has no buffer", n->name, qd_op_name(n->op), i);
    return QD_OK;
}

static int value_rank(const qd_graph *g, int v) { return v >= 0 && v < g->nvalues ? g->values[v].ndim : -1; }

/* What qd_cpu_node_forward / qd_cpu_node_backward below refuse at run time, refused at plan time
 * instead. No default: a new row in qdrop/op_table.h does not compile (-Werror=switch) until it
 * is answered here, next to its kernels. */
int qd_cpu_supports_op(const qd_backend *b, const qd_graph *g, const qd_node *n, char *why, size_t cap) {
    (void)b;
    int r0 = n->ninputs > 0 ? value_rank(g, n->inputs[0]) : -1;
    int r1 = n->ninputs > 1 ? value_rank(g, n->inputs[1]) : -1;
    int ro = n->noutputs > 0 ? value_rank(g, n->outputs[0]) : -1;
    switch (n->op) {
    case QD_OP_CONV:
        if (r0 != 4 || r1 != 4 || ro != 4) {
            snprintf(why, cap, "only 2-D convolution (4-D tensors) is supported, input rank %d", r0);
            return 0;
        }
        return 1;
    case QD_OP_GEMM: /* A of rank > 2 with transA = 0: stacked rows (gemm_dims) */
        if (r0 < 2 || r1 != 2 || (r0 != 2 && n->a.trans_a)) {
            snprintf(why, cap, "Gemm needs 2-D A and B (got rank %d and %d)", r0, r1);
            return 0;
        }
        return 1;
    case QD_OP_MAXPOOL: case QD_OP_AVGPOOL: case QD_OP_GLOBALAVGPOOL:
        if (r0 != 4 || ro != 4) {
            snprintf(why, cap, "only 2-D pooling on 4-D tensors is supported, input rank %d", r0);
            return 0;
        }
        return 1;
    case QD_OP_MATMUL: case QD_OP_ADD: case QD_OP_SUB: case QD_OP_MUL: case QD_OP_DIV:
    case QD_OP_RELU: case QD_OP_CLIP: case QD_OP_SIGMOID: case QD_OP_FLATTEN: case QD_OP_RESHAPE:
    case QD_OP_IDENTITY: case QD_OP_SOFTMAX: case QD_OP_REDUCEMEAN: case QD_OP_PAD: case QD_OP_SLICE:
    case QD_OP_TRANSPOSE: case QD_OP_CONCAT: case QD_OP_BATCHNORM: case QD_OP_HARDSIGMOID:
    case QD_OP_HARDSWISH: case QD_OP_SQUEEZE: case QD_OP_UNSQUEEZE: case QD_OP_LAYERNORM: case QD_OP_GELU:
        return 1;
    case QD_OP_RESIZE: /* the kernel: 2-D resizing of NCHW tensors only */
        if (r0 != 4 || ro != 4) {
            snprintf(why, cap, "only 2-D Resize of 4-D tensors is supported, input rank %d", r0);
            return 0;
        }
        return 1;
    case QD_OP_CONSTANT: /* folded into initializers at load; never run */
    case QD_OP_COUNT:
        break;
    }
    snprintf(why, cap, "no CPU kernel");
    return 0;
}

qd_status qd_cpu_node_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                              const qd_shape *os, float *out) {
    qd_cpu_pool *pool = qd_cpu(b)->pool;
    switch (n->op) {
    case QD_OP_CONV: QD_TRY(need_inputs(n, in, 2)); return qd_cpu_conv_forward(b, n, is, in, os, out);
    case QD_OP_GEMM: QD_TRY(need_inputs(n, in, 2)); return gemm_forward(b, n, is, in, os, out);
    case QD_OP_MATMUL: QD_TRY(need_inputs(n, in, 2)); return matmul_forward(b, n, is, in, os, out);
    case QD_OP_ADD: case QD_OP_SUB: case QD_OP_MUL: case QD_OP_DIV: {
        QD_TRY(need_inputs(n, in, 2));
        bin_task t;
        QD_TRY(bin_setup(n, is, os, &t));
        t.a = in[0]; t.b = in[1]; t.out = out;
        qd_cpu_parallel_for(pool, numel(os), QD_CPU_EW_GRAIN, bin_fwd, &t);
        return QD_OK;
    }
    case QD_OP_RELU: case QD_OP_CLIP: case QD_OP_SIGMOID: case QD_OP_FLATTEN: case QD_OP_RESHAPE: case QD_OP_IDENTITY:
    case QD_OP_HARDSIGMOID: case QD_OP_HARDSWISH: case QD_OP_SQUEEZE: case QD_OP_UNSQUEEZE: {
        QD_TRY(need_inputs(n, in, 1));
        if (numel(&is[0]) != numel(os))
            return qd_errorf(QD_ERR_DATA, "node %s: %s: %lld input elements vs %lld output elements", n->name, qd_op_name(n->op),
                             (long long)numel(&is[0]), (long long)numel(os));
        if (in[0] == out && (n->op == QD_OP_FLATTEN || n->op == QD_OP_RESHAPE || n->op == QD_OP_IDENTITY ||
                             n->op == QD_OP_SQUEEZE || n->op == QD_OP_UNSQUEEZE))
            return QD_OK;
        ew_task t = {n->op, in[0], NULL, NULL, out, unary_lo(n), unary_hi(n)};
        qd_cpu_parallel_for(pool, numel(os), QD_CPU_EW_GRAIN, unary_fwd, &t);
        return QD_OK;
    }
    case QD_OP_SOFTMAX: {
        QD_TRY(need_inputs(n, in, 1));
        if (n->ninputs > 1 && in[1]) {
            smm_p p;
            QD_TRY(smm_setup(n, is, os, &p));
            p.x = in[0]; p.mask = in[1]; p.out = out;
            qd_cpu_parallel_for(pool, p.outer * p.inner, 64, smm_fwd, &p);
            return QD_OK;
        }
        sm_p p;
        sm_setup(n, os, &p);
        p.x = in[0]; p.out = out;
        qd_cpu_parallel_for(pool, p.outer * p.inner, 64, sm_fwd, &p);
        return QD_OK;
    }
    case QD_OP_MAXPOOL: case QD_OP_AVGPOOL: case QD_OP_GLOBALAVGPOOL: {
        QD_TRY(need_inputs(n, in, 1));
        pool_p p;
        QD_TRY(pool_setup(n, is, os, &p));
        p.x = in[0]; p.y = out;
        int64_t planes = is[0].dims[0] * is[0].dims[1];
        qd_cpu_fn fn = n->op == QD_OP_MAXPOOL ? maxpool_fwd : n->op == QD_OP_AVGPOOL ? avgpool_fwd : gap_fwd;
        qd_cpu_parallel_for(pool, planes, n->op == QD_OP_GLOBALAVGPOOL ? 256 : 4, fn, &p);
        return QD_OK;
    }
    case QD_OP_REDUCEMEAN: {
        QD_TRY(need_inputs(n, in, 1));
        red_p p;
        QD_TRY(red_setup(n, is, &p));
        p.x = in[0]; p.y = out;
        qd_cpu_parallel_for(pool, numel(os), 64, red_fwd, &p);
        return QD_OK;
    }
    case QD_OP_PAD: {
        QD_TRY(need_inputs(n, in, 1));
        pad_p p;
        QD_TRY(pad_setup(n, is, os, &p));
        p.x = in[0]; p.y = out;
        qd_cpu_parallel_for(pool, numel(os), QD_CPU_EW_GRAIN, pad_run, &p);
        return QD_OK;
    }
    case QD_OP_SLICE: case QD_OP_TRANSPOSE: {
        QD_TRY(need_inputs(n, in, 1));
        gview v;
        QD_TRY(n->op == QD_OP_SLICE ? slice_view(n, is, os, &v) : transpose_view(n, is, os, &v));
        sv_exec(b, &v, SV_GATHER, out, NULL, NULL, in[0]);
        return QD_OK;
    }
    case QD_OP_CONCAT: {
        int ax = n->a.axis;
        int64_t off = 0;
        if (ax < 0 || ax >= os->ndim) return qd_errorf(QD_ERR_DATA, "node %s: Concat axis %d out of range", n->name, ax);
        for (int i = 0; i < n->ninputs; i++) {
            if (!in[i]) return qd_errorf(QD_ERR_INTERNAL, "node %s: Concat input %d has no buffer", n->name, i);
            gview v;
            concat_view(&is[i], os, ax, off, &v);
            sv_exec(b, &v, SV_SCATTER, NULL, in[i], out, NULL);
            off += is[i].dims[ax];
        }
        return QD_OK;
    }
    case QD_OP_BATCHNORM: QD_TRY(need_inputs(n, in, 1)); return bn_apply(n, is, in, in[0], out, 0);
    case QD_OP_RESIZE: {
        QD_TRY(need_inputs(n, in, 1));
        rs_p p;
        QD_TRY(rs_setup(n, is, os, &p));
        p.x = in[0]; p.y = out;
        qd_cpu_parallel_for(pool, os->dims[0] * os->dims[1] * p.OH, 16, rs_fwd, &p);
        return QD_OK;
    }
    case QD_OP_LAYERNORM: {
        QD_TRY(need_inputs(n, in, 1));
        ln_p p;
        int64_t rows;
        QD_TRY(ln_setup(b, n, is, in, &p, &rows));
        p.y = out;
        qd_cpu_parallel_for(pool, rows, QD_CPU_ROW_GRAIN, ln_fwd, &p);
        return QD_OK;
    }
    case QD_OP_GELU: {
        QD_TRY(need_inputs(n, in, 1));
        ew_task t = {n->op, in[0], NULL, NULL, out, 0.0f, 0.0f};
        qd_cpu_parallel_for(pool, numel(os), QD_CPU_EW_GRAIN, gelu_fwd, &t);
        return QD_OK;
    }
    default:
        return qd_errorf(QD_ERR_UNSUPPORTED, "node %s: op %s is not supported by the CPU backend", n->name, qd_op_name(n->op));
    }
}

qd_status qd_cpu_node_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                               const qd_shape *os, const float *out, const float *dout, float *const *din) {
    qd_cpu_pool *pool = qd_cpu(b)->pool;
    switch (n->op) {
    case QD_OP_CONV: QD_TRY(need_inputs(n, in, 2)); return qd_cpu_conv_backward(b, n, is, in, os, dout, din);
    case QD_OP_GEMM: QD_TRY(need_inputs(n, in, 2)); return gemm_backward(b, n, is, in, os, dout, din);
    case QD_OP_MATMUL: QD_TRY(need_inputs(n, in, 2)); return matmul_backward(b, n, is, in, os, dout, din);
    case QD_OP_ADD: case QD_OP_SUB: case QD_OP_MUL: case QD_OP_DIV: {
        QD_TRY(need_inputs(n, in, 2));
        bin_task t;
        QD_TRY(bin_setup(n, is, os, &t));
        t.a = in[0]; t.b = in[1];
        bin_backward(b, is, os, &t, dout, din);
        return QD_OK;
    }
    case QD_OP_RELU: case QD_OP_CLIP: case QD_OP_SIGMOID: case QD_OP_FLATTEN: case QD_OP_RESHAPE: case QD_OP_IDENTITY:
    case QD_OP_HARDSIGMOID: case QD_OP_HARDSWISH: case QD_OP_SQUEEZE: case QD_OP_UNSQUEEZE: {
        if (!din[0]) return QD_OK;
        QD_TRY(need_inputs(n, in, 1));
        ew_task t = {n->op, in[0], out, dout, din[0], unary_lo(n), unary_hi(n)};
        qd_cpu_parallel_for(pool, numel(os), QD_CPU_EW_GRAIN, unary_bwd, &t);
        return QD_OK;
    }
    case QD_OP_SOFTMAX: {
        if (!din[0]) return QD_OK;
        if (n->ninputs > 1 && in[1]) { /* the mask is data: no gradient for din[1] */
            smm_p p;
            QD_TRY(smm_setup(n, is, os, &p));
            p.y = out; p.dy = dout; p.dx = din[0];
            qd_cpu_parallel_for(pool, p.outer * p.inner, 64, smm_bwd, &p);
            return QD_OK;
        }
        sm_p p;
        sm_setup(n, os, &p);
        p.y = out; p.dy = dout; p.dx = din[0];
        qd_cpu_parallel_for(pool, p.outer * p.inner, 64, sm_bwd, &p);
        return QD_OK;
    }
    case QD_OP_MAXPOOL: case QD_OP_AVGPOOL: case QD_OP_GLOBALAVGPOOL: {
        if (!din[0]) return QD_OK;
        QD_TRY(need_inputs(n, in, 1));
        pool_p p;
        QD_TRY(pool_setup(n, is, os, &p));
        p.x = in[0]; p.dy = dout; p.dx = din[0];
        p.inv = 1.0f / (float)(p.H * p.W);
        int64_t planes = is[0].dims[0] * is[0].dims[1];
        qd_cpu_fn fn = n->op == QD_OP_MAXPOOL ? maxpool_bwd : n->op == QD_OP_AVGPOOL ? avgpool_bwd : gap_bwd;
        qd_cpu_parallel_for(pool, planes, n->op == QD_OP_GLOBALAVGPOOL ? 256 : 4, fn, &p);
        return QD_OK;
    }
    case QD_OP_REDUCEMEAN: {
        if (!din[0]) return QD_OK;
        red_p p;
        QD_TRY(red_setup(n, is, &p));
        p.dy = dout; p.dx = din[0];
        qd_cpu_parallel_for(pool, numel(os), 64, red_bwd, &p);
        return QD_OK;
    }
    case QD_OP_PAD: {
        if (!din[0]) return QD_OK;
        pad_p p;
        QD_TRY(pad_setup(n, is, os, &p));
        p.dy = dout; p.dx = din[0]; p.bwd = 1;
        qd_cpu_parallel_for(pool, numel(os), QD_CPU_EW_GRAIN, pad_run, &p);
        return QD_OK;
    }
    case QD_OP_SLICE: case QD_OP_TRANSPOSE: {
        if (!din[0]) return QD_OK;
        gview v;
        QD_TRY(n->op == QD_OP_SLICE ? slice_view(n, is, os, &v) : transpose_view(n, is, os, &v));
        sv_exec(b, &v, SV_SCATTER_ADD, NULL, dout, din[0], NULL);
        return QD_OK;
    }
    case QD_OP_CONCAT: {
        int ax = n->a.axis;
        int64_t off = 0;
        if (ax < 0 || ax >= os->ndim) return qd_errorf(QD_ERR_DATA, "node %s: Concat axis %d out of range", n->name, ax);
        for (int i = 0; i < n->ninputs; i++) {
            if (din[i]) {
                gview v;
                concat_view(&is[i], os, ax, off, &v);
                sv_exec(b, &v, SV_GATHER_ADD, din[i], NULL, NULL, dout);
            }
            off += is[i].dims[ax];
        }
        return QD_OK;
    }
    case QD_OP_BATCHNORM:
        /* frozen statistics: dx = dy * scale / sqrt(var + eps) */
        if (!din[0]) return QD_OK;
        return bn_apply(n, is, in, dout, din[0], 1);
    case QD_OP_RESIZE: {
        if (!din[0]) return QD_OK;
        rs_p p;
        QD_TRY(rs_setup(n, is, os, &p));
        p.dy = dout; p.dx = din[0];
        qd_cpu_parallel_for(pool, is[0].dims[0] * is[0].dims[1] * p.H, 16, rs_bwd, &p);
        return QD_OK;
    }
    case QD_OP_LAYERNORM: {
        /* Scale and B are frozen (like biases, backend.h): din[1] / din[2] are ignored */
        if (!din[0]) return QD_OK;
        QD_TRY(need_inputs(n, in, 1));
        ln_p p;
        int64_t rows;
        QD_TRY(ln_setup(b, n, is, in, &p, &rows));
        QD_TRY(qd_cpu_scratch(b, (size_t)p.len));
        p.dy = dout; p.dx = din[0];
        qd_cpu_parallel_for(pool, rows, QD_CPU_ROW_GRAIN, ln_bwd, &p);
        return QD_OK;
    }
    case QD_OP_GELU: {
        if (!din[0]) return QD_OK;
        QD_TRY(need_inputs(n, in, 1));
        ew_task t = {n->op, in[0], out, dout, din[0], 0.0f, 0.0f};
        qd_cpu_parallel_for(pool, numel(os), QD_CPU_EW_GRAIN, gelu_bwd, &t);
        return QD_OK;
    }
    default:
        return qd_errorf(QD_ERR_UNSUPPORTED, "node %s: op %s has no backward on the CPU backend", n->name, qd_op_name(n->op));
    }
}
