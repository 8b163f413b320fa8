/* src/cpu/backend_cpu.c: the CPU reference backend (host memory, OpenBLAS, a pthread pool).
 * Parallelism: one pool of `threads` workers (0 = all online cores) runs every loop in fixed
 * chunks; OpenBLAS is pinned to one thread and called inside the chunks (per sample for convs,
 * per row/column block for GEMMs). Two thread pools competing for the same two cores would
 * slow both down, and a single-threaded sgemm per fixed block keeps results independent of the
 * thread count (cpu_internal.h). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu/cpu_conv.h"
#include "cpu/cpu_internal.h"

#define QD_CPU_ALIGN 64

static void *cpu_alloc(qd_backend *b, size_t bytes) {
    (void)b;
    size_t sz = (bytes + QD_CPU_ALIGN - 1) / QD_CPU_ALIGN * QD_CPU_ALIGN;
    if (sz == 0) sz = QD_CPU_ALIGN;
    void *p = aligned_alloc(QD_CPU_ALIGN, sz);
    if (!p) qd_errorf(QD_ERR_DEVICE_OOM, "cpu backend: out of memory allocating %zu bytes", bytes);
    return p;
}

/* Unit caches: in memory within the host-memory budget, else spilled to a mapped file
 * (cpu_spill.c). Either way host memory every op reads directly. */
static void *cpu_alloc_cache(qd_backend *b, size_t bytes, int *on_device) {
    if (on_device) *on_device = 1;  /* host memory is the device memory here */
    return qd_cpu_cache_alloc(b, bytes);
}

static void cpu_free(qd_backend *b, void *p) { (void)b; free(p); }

/* The ops that read or write unit caches (copies, forwards over cached activations, the
 * batch gather) release the spilled pages they touched afterwards, so a spilled cache never
 * sits in resident memory (docs/memory.md). Without spilled caches these are the plain ops. */
static qd_status cpu_copy(qd_backend *b, void *dst, const void *src, size_t bytes) {
    qd_cpu_spill_copy(b, dst, src, bytes);
    return QD_OK;
}

static qd_status cpu_zero(qd_backend *b, void *dst, size_t bytes) {
    (void)b;
    if (bytes) memset(dst, 0, bytes);
    return QD_OK;
}

static qd_status cpu_sync(qd_backend *b) { (void)b; return QD_OK; }

static qd_status cpu_node_forward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                                  const qd_shape *os, float *out) {
    qd_status st = qd_cpu_node_forward(b, n, is, in, os, out);
    if (qd_cpu(b)->nspilled > 0) {
        for (int i = 0; i < n->ninputs; i++)
            if (in[i]) qd_cpu_spill_release(b, in[i], sizeof(float) * (size_t)qd_shape_numel(&is[i]));
        qd_cpu_spill_release(b, out, sizeof(float) * (size_t)qd_shape_numel(os));
    }
    return st;
}


static qd_status cpu_gather_mix_spill(qd_backend *b, const float *quant_src, const float *fp_src, const int32_t *idx,
                                      int32_t batch, int64_t sample_numel, qd_rng_key key, float keep_prob,
                                      const int32_t *iter, float *out) {
    qd_cpu_impl *c = qd_cpu(b);
    int mix = fp_src != NULL && keep_prob < 1.0f;
    if (c->nspilled == 0 || batch < 1 || (!qd_cpu_is_spilled(b, quant_src) && !(mix && qd_cpu_is_spilled(b, fp_src))))
        return qd_cpu_gather_mix(b, quant_src, fp_src, idx, batch, sample_numel, key, keep_prob, iter, out);
    /* a spilled source: read the drawn samples (idx is host memory here) with pread into staging
     * rows 0..batch-1, then gather those in order. No page of the file is mapped in, and the
     * drop mask is keyed by the element's place in the batch, so the result is the same. */
    size_t need = (size_t)batch * (size_t)sample_numel * (mix ? 2 : 1);
    if (c->gather_stage_cap < need) {
        free(c->gather_stage);
        c->gather_stage = cpu_alloc(b, need * sizeof(float));
        c->gather_stage_cap = c->gather_stage ? need : 0;
        if (!c->gather_stage) return QD_ERR_DEVICE_OOM;
    }
    if (c->gather_ident_cap < batch) {
        free(c->gather_ident);
        c->gather_ident = malloc(sizeof(int32_t) * (size_t)batch);
        c->gather_ident_cap = c->gather_ident ? batch : 0;
        if (!c->gather_ident) return qd_errorf(QD_ERR_DEVICE_OOM, "cpu backend: out of host memory (gather)");
        for (int32_t k = 0; k < batch; k++) c->gather_ident[k] = k;
    }
    float *sq = c->gather_stage, *sf = mix ? c->gather_stage + (size_t)batch * (size_t)sample_numel : NULL;
    QD_TRY(qd_cpu_spill_stage(b, quant_src, idx, batch, sample_numel, sq));
    if (mix) QD_TRY(qd_cpu_spill_stage(b, fp_src, idx, batch, sample_numel, sf));
    return qd_cpu_gather_mix(b, sq, sf, c->gather_ident, batch, sample_numel, key, keep_prob, iter, out);
}

static qd_status cpu_node_backward(qd_backend *b, const qd_node *n, const qd_shape *is, const float *const *in,
                                   const qd_shape *os, const float *out, const float *dout, float *const *din) {
    return qd_cpu_node_backward(b, n, is, in, os, out, dout, din);
}

qd_status qd_cpu_scratch(qd_backend *b, size_t floats) {
    qd_cpu_impl *c = qd_cpu(b);
    for (int t = 0; t < c->nthreads; t++) {
        if (c->scratch_cap[t] >= floats) continue;
        free(c->scratch[t]);
        c->scratch[t] = cpu_alloc(b, floats * sizeof(float));
        c->scratch_cap[t] = c->scratch[t] ? floats : 0;
        if (!c->scratch[t]) return QD_ERR_DEVICE_OOM;
    }
    return QD_OK;
}

float *qd_cpu_shared(qd_backend *b, size_t floats) {
    qd_cpu_impl *c = qd_cpu(b);
    if (c->shared_cap < floats) {
        free(c->shared);
        c->shared = cpu_alloc(b, floats * sizeof(float));
        c->shared_cap = c->shared ? floats : 0;
    }
    return c->shared;
}

static void cpu_destroy(qd_backend *b) {
    if (!b) return;
    qd_cpu_impl *c = qd_cpu(b);
    if (c) {
        qd_cpu_pool_destroy(c->pool);
        qd_cpu_conv_dnnl_release(c);
        qd_cpu_cache_release_all(c);
        for (int t = 0; t < c->nthreads; t++) free(c->scratch[t]);
        free(c->scratch);
        free(c->scratch_cap);
        free(c->shared);
        free(c);
    }
    free(b);
}

/* backend.h describe: the convolution implementation (oneDNN, or im2col + OpenBLAS when oneDNN
 * is absent or switched off by QD_CPU_CONV=im2col; grouped convolutions always take im2col). */
static size_t cpu_describe(qd_backend *b, char *buf, size_t cap) {
    char txt[512];
    int n = snprintf(txt, sizeof txt,
                     "{\"conv\":\"%s\",\"conv_grouped\":\"im2col+openblas\",\"gemm\":\"openblas\","
                     "\"onednn_conv_calls\":%ld,\"threads\":%d}",
                     qd_cpu_conv_path(), qd_cpu_conv_dnnl_calls(), b->threads);
    size_t need = n > 0 ? (size_t)n : 0;
    if (buf && cap > 0) {
        if (need < cap) memcpy(buf, txt, need + 1);
        else buf[0] = 0;
    }
    return need;
}

/* The CPU backend's operations, fixed at compile time. capture_* / graph_*: NULL (no iteration
 * capture on the CPU). */
static const qd_backend_ops k_cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .alloc_cache = cpu_alloc_cache,
    .free = cpu_free,
    .free_cache = qd_cpu_cache_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .zero = cpu_zero,
    .sync = cpu_sync,
    .supports_op = qd_cpu_supports_op,
    .node_forward = cpu_node_forward,
    .node_backward = cpu_node_backward,
    .iter_advance = qd_cpu_iter_advance,
    .draw_batch = qd_cpu_draw_batch,
    .gather_mix = cpu_gather_mix_spill,
    .fq_forward = qd_cpu_fq_forward,
    .fq_backward = qd_cpu_fq_backward,
    .adaround_init = qd_cpu_adaround_init,
    .adaround_weight = qd_cpu_adaround_weight,
    .adaround_step = qd_cpu_adaround_step,
    .scale_step = qd_cpu_scale_step,
    .mse_loss = qd_cpu_mse_loss,
    .lp_loss = qd_cpu_lp_loss,
    .check_finite = qd_cpu_check_finite,
    .keep_mask = qd_cpu_keep_mask,
    .describe = cpu_describe,
};

qd_status qd_cpu_backend_create(const qd_backend_options *opt, qd_backend **out) {
    *out = NULL;
    int threads = opt ? opt->threads : 0;
    if (threads < 0) return qd_errorf(QD_ERR_CONFIG, "cpu backend: threads must be >= 0 (0 = all cores), got %d", threads);
    if (threads == 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        threads = nc > 0 ? (int)nc : 1;
    }
    if (threads > 256) threads = 256;
    qd_backend *b = calloc(1, sizeof *b);
    qd_cpu_impl *c = calloc(1, sizeof *c);
    if (!b || !c) { free(b); free(c); return qd_errorf(QD_ERR_INTERNAL, "cpu backend: out of host memory"); }
    b->ops = &k_cpu_ops;
    b->impl = c;
    c->pool = qd_cpu_pool_create(threads);
    if (!c->pool) { free(c); free(b); return qd_errorf(QD_ERR_INTERNAL, "cpu backend: cannot start %d threads", threads); }
    c->nthreads = qd_cpu_pool_threads(c->pool);
    c->scratch = calloc((size_t)c->nthreads, sizeof(float *));
    c->scratch_cap = calloc((size_t)c->nthreads, sizeof(size_t));
    if (!c->scratch || !c->scratch_cap) { cpu_destroy(b); return qd_errorf(QD_ERR_INTERNAL, "cpu backend: out of host memory"); }
    /* OpenBLAS single-threaded: it is called from inside the pool's chunks. */
    openblas_set_num_threads(1);
    b->threads = c->nthreads;
    b->deterministic = 1;
    b->tf32 = 0;
    b->memory_budget = opt ? opt->memory_budget : 0;
    if (opt && opt->host_memory_budget < 0) {
        cpu_destroy(b);
        return qd_errorf(QD_ERR_CONFIG, "cpu backend: host memory budget must be >= 0 (0 = no limit), got %lld",
                         (long long)opt->host_memory_budget);
    }
    c->cache_budget = opt ? opt->host_memory_budget : 0;
    if (opt && opt->spill_dir) {
        if (strlen(opt->spill_dir) >= sizeof c->spill_dir) {
            cpu_destroy(b);
            return qd_errorf(QD_ERR_CONFIG, "cpu backend: spill directory path too long (%zu bytes)", strlen(opt->spill_dir));
        }
        snprintf(c->spill_dir, sizeof c->spill_dir, "%s", opt->spill_dir);
    }
    snprintf(b->device_name, sizeof b->device_name, "cpu (%d thread%s, conv %s)", c->nthreads, c->nthreads == 1 ? "" : "s",
             qd_cpu_conv_path());
    *out = b;
    return QD_OK;
}
