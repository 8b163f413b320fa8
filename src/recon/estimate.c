/* src/recon/estimate.c: the wall-time estimate --dry-run prints per phase, for the chosen device.
 *
 * Measured, then extrapolated (an estimate, and printed as one):
 *   - a forward pass of a few calibration images (FP and quantized mode) -> per-image cost of the
 *     evaluations, of the prefix forwards of the activation-range initialisation and of the unit
 *     caches (about 3 passes over the calibration set in all);
 *   - the range search itself: on synthetic tensors of each kind (1-D / 2-D, bits) and on the
 *     first channels of every weight, scaled by element / channel counts;
 *   - reconstruction: a warm-up and a few timed iterations of each distinct unit type (same
 *     operators and shapes), on a calibration subset just large enough for one batch.
 * The graph's quantizers get throw-away min/max ranges for the timing; a dry run ends after. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/qmath.h"
#include "qdrop/log.h"
#include "recon/recon.h"

#define QD_EST_IMAGES 4          /* images per timed forward */
#define QD_EST_ITERS 2           /* timed iterations per unit type (after one warm-up) */
#define QD_EST_SEARCH_N (1 << 20)/* elements of the synthetic range-search tensors */
#define QD_EST_W_CHANNELS 4      /* weight channels searched per layer */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void fmt_dur(char *buf, size_t n, double s) {
    if (!(s >= 0)) { snprintf(buf, n, "--"); return; }
    if (s < 1) { snprintf(buf, n, "<1s"); return; }
    long t = (long)(s + 0.5);
    if (t >= 86400) snprintf(buf, n, "%ldd%02ldh", t / 86400, (t / 3600) % 24);
    else if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

/* Throw-away ranges so quantized forwards and training iterations run on sane numbers. */
static void minmax_ranges(qd_graph *g) {
    for (int k = 0; k < g->nwq; k++) {
        qd_weight_quant *q = &g->wq[k];
        const float *w = g->values[q->weight_value].fdata;
        if (!w) continue;
        for (int c = 0; c < q->channels; c++) {
            float lo = 0, hi = 0;
            for (int64_t i = 0; i < q->per_channel; i++) {
                float v = q->ch_axis == 0 ? w[(int64_t)c * q->per_channel + i] : w[i * q->channels + c];
                lo = fminf(lo, v); hi = fmaxf(hi, v);
            }
            qd_range_to_qparams(lo, hi, 0, qd_qmax_for_bits(q->bits), &q->scale[c], &q->zero_point[c]);
        }
        int64_t numel = (int64_t)q->channels * q->per_channel;
        float qmax = (float)qd_qmax_for_bits(q->bits);
        for (int64_t i = 0; i < numel; i++) {
            int64_t c = q->ch_axis == 0 ? i / q->per_channel : i % q->channels;
            q->qweight[i] = qd_fake_quant(w[i], q->scale[c], q->zero_point[c], 0.0f, qmax);
        }
    }
    for (int a = 0; a < g->nact; a++) {
        g->act[a].scale = 0.05f;
        g->act[a].zero_point = g->act[a].one_sided ? 0.0f : (float)((g->act[a].qmax + 1) / 2);
        g->act[a].initialized = 1;
    }
}

/* Seconds per element of one activation range search of this kind, measured once. */
static double search_cost(int one_sided, int bits, int threads, qd_range_method method, double *cache) {
    int slot = (one_sided ? 16 : 0) + bits;
    if (cache[slot] > 0) return cache[slot];
    int64_t n = method == QD_RANGE_EXACT ? (1 << 16) : QD_EST_SEARCH_N;
    float *x = malloc(sizeof(float) * (size_t)n);
    if (!x) return 0;
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        float u = (float)((s >> 40) & 0xFFFFFF) / 16777216.0f - 0.5f;
        float v = u * fabsf(u) * 8.0f; /* peaked, long-tailed */
        x[i] = one_sided ? fmaxf(v, 0.0f) : v;
    }
    float sc, zp;
    double t0 = now_s();
    if (qd_act_range_search_method(x, n, bits, threads, method, &sc, &zp) != QD_OK) qd_error_clear();
    cache[slot] = (now_s() - t0) / (double)n;
    free(x);
    return cache[slot];
}

/* Two units are of one type when they run the same operators on the same shapes. */
static int same_unit_type(const qd_graph *g, const qd_unit_spec *a, const qd_unit_spec *b) {
    if (a->node_end - a->node_begin != b->node_end - b->node_begin) return 0;
    if (qd_value_sample_numel(&g->values[a->input_value]) != qd_value_sample_numel(&g->values[b->input_value])) return 0;
    if (qd_value_sample_numel(&g->values[a->output_value]) != qd_value_sample_numel(&g->values[b->output_value])) return 0;
    for (int k = 0; k < a->node_end - a->node_begin; k++) {
        const qd_node *na = &g->nodes[a->node_begin + k], *nb = &g->nodes[b->node_begin + k];
        if (na->op != nb->op) return 0;
        if (na->noutputs > 0 && nb->noutputs > 0 &&
            qd_value_sample_numel(&g->values[na->outputs[0]]) != qd_value_sample_numel(&g->values[nb->outputs[0]]))
            return 0;
        if (na->wq >= 0 && nb->wq >= 0 &&
            (int64_t)g->wq[na->wq].channels * g->wq[na->wq].per_channel !=
                (int64_t)g->wq[nb->wq].channels * g->wq[nb->wq].per_channel)
            return 0;
    }
    return 1;
}

static void line(FILE *out, const char *phase, const char *what, double s) {
    char d[32];
    fmt_dur(d, sizeof d, s);
    fprintf(out, "  %-22s %-34s ~%s\n", phase, what, d);
}

qd_status qd_print_cost_estimate(const qd_config *cfg, qd_graph *g, const qd_unit_spec *units, int nunits,
                                 const float *calib_host, int ncal, int64_t image_numel, int nval,
                                 const qd_estimate_plan *plan, FILE *out) {
    qd_status st = QD_OK;
    int threads = qd_default_threads(cfg);
    qd_backend *b = NULL;
    qd_exec *ex = NULL;
    float *logits = NULL;
    double t_total = 0;
    char what[96];
    qd_backend_options bo = {.threads = threads, .deterministic = cfg->deterministic, .tf32 = cfg->tf32,
                            .memory_budget = cfg->device_memory_budget_mb * 1024 * 1024};
    const char *kind = cfg->device == QD_DEVICE_CPU ? "cpu" : cfg->device == QD_DEVICE_CUDA ? "cuda" : "auto";
    if ((st = qd_backend_create(kind, &bo, &b)) != QD_OK) return st;
    int nimg = ncal < QD_EST_IMAGES ? ncal : QD_EST_IMAGES;
    int maxb = cfg->recon.batch_size > nimg ? cfg->recon.batch_size : nimg;
    if ((st = qd_exec_create(g, b, maxb, &ex)) != QD_OK) goto done;
    int64_t out_numel = qd_value_sample_numel(&g->values[g->outputs[0]]);
    logits = malloc(sizeof(float) * (size_t)maxb * (size_t)out_numel);
    if (!logits) { st = qd_errorf(QD_ERR_INTERNAL, "out of host memory"); goto done; }
    fprintf(out, "time estimate (%s, %d threads) -- an ESTIMATE from timed forwards, range searches and %d "
                 "iterations per unit type, not a measurement:\n", b->device_name, threads, QD_EST_ITERS);

    /* forwards: one warm-up, then timed */
    minmax_ranges(g);
    if ((st = qd_exec_sync_quant(ex)) != QD_OK) goto done;
    double t_fp = 0, t_q = 0;
    for (int rep = 0; rep < 2 && st == QD_OK; rep++) {
        double t0 = now_s();
        st = qd_exec_forward_host(ex, QD_EXEC_FP, calib_host, nimg, logits);
        double t1 = now_s();
        if (st == QD_OK) st = qd_exec_forward_host(ex, QD_EXEC_QUANT, calib_host, nimg, logits);
        t_fp = (t1 - t0) / nimg;
        t_q = (now_s() - t1) / nimg;
    }
    if (st != QD_OK) goto done;
    if (nval > 0 && cfg->eval_fp32) {
        snprintf(what, sizeof what, "%d images", nval);
        line(out, "FP32 evaluation", what, t_fp * nval);
        t_total += t_fp * nval;
    }

    /* activation ranges: a prefix forward per quantizer plus its search */
    qd_range_method method = cfg->range_search == 1 ? QD_RANGE_EXACT : QD_RANGE_FAST;
    double cost_cache[32] = {0};
    int nsamp = cfg->act_calib_samples < ncal ? cfg->act_calib_samples : ncal;
    double t_act = 0;
    for (int a = 0; a < g->nact; a++) {
        const qd_act_quant *A = &g->act[a];
        double frac = (double)(g->values[A->value].producer + 1) / (double)(g->nnodes > 0 ? g->nnodes : 1);
        int64_t elems = (int64_t)nsamp * qd_value_sample_numel(&g->values[A->value]);
        t_act += frac * t_fp * nsamp + search_cost(A->one_sided, A->bits, threads, method, cost_cache) * (double)elems;
    }
    snprintf(what, sizeof what, "%d quantizers on %d images (%s)", g->nact, nsamp, method == QD_RANGE_FAST ? "fast" : "exact");
    line(out, "activation ranges", what, t_act);
    t_total += t_act;

    /* weight ranges: the first channels of every layer, scaled */
    double t_w = 0;
    for (int k = 0; k < g->nwq && st == QD_OK; k++) {
        const qd_weight_quant *q = &g->wq[k];
        const float *w = g->values[q->weight_value].fdata;
        if (!w) continue;
        int sub = q->channels < QD_EST_W_CHANNELS ? q->channels : QD_EST_W_CHANNELS;
        float *tmp = malloc(sizeof(float) * (size_t)sub * (size_t)q->per_channel);
        float sc[QD_EST_W_CHANNELS], zp[QD_EST_W_CHANNELS];
        if (!tmp) { st = qd_errorf(QD_ERR_INTERNAL, "out of host memory"); break; }
        for (int c = 0; c < sub; c++)
            for (int64_t i = 0; i < q->per_channel; i++)
                tmp[(int64_t)c * q->per_channel + i] = q->ch_axis == 0 ? w[(int64_t)c * q->per_channel + i] : w[i * q->channels + c];
        double t0 = now_s();
        st = qd_weight_range_search_method(tmp, sub, q->per_channel, 1, q->bits, 1, method, sc, zp);
        t_w += (now_s() - t0) * (double)q->channels / (double)sub / (double)(threads < q->channels ? threads : q->channels);
        free(tmp);
    }
    if (st != QD_OK) goto done;
    snprintf(what, sizeof what, "%d layers", g->nwq);
    line(out, "weight ranges", what, t_w);
    t_total += t_w;

    if (plan->reconstruct && nunits > 0) {
        /* unit caches: the quantized-input, FP-input and FP-output passes over the calibration set */
        double t_cache = 3.0 * t_fp * ncal;
        snprintf(what, sizeof what, "~3 forward passes of %d images", ncal);
        line(out, "unit caches", what, t_cache);
        t_total += t_cache;

        /* reconstruction: time each distinct unit type */
        qd_recon_ctx ctx;
        memset(&ctx, 0, sizeof ctx);
        ctx.g = g; ctx.b = b; ctx.exec = ex; ctx.cfg = cfg;
        ctx.calib_host = calib_host;
        ctx.ncal = ncal < cfg->recon.batch_size ? ncal : cfg->recon.batch_size;
        ctx.image_numel = image_numel;
        ctx.cache_progress_off = 1;
        double *it_s = calloc((size_t)nunits, sizeof(double));
        if (!it_s) { st = qd_errorf(QD_ERR_INTERNAL, "out of host memory"); goto done; }
        int types = 0;
        double t_rec = 0;
        qd_phase ph;
        qd_phase_begin(&ph, "timing unit types", "units", nunits);
        for (int i = 0; i < nunits && st == QD_OK; i++) {
            qd_phase_update(&ph, i);
            int j = 0;
            while (j < i && !same_unit_type(g, &units[j], &units[i])) j++;
            if (j < i) { it_s[i] = it_s[j]; }
            else { types++; st = qd_recon_unit_time(&ctx, &units[i], &plan->unit, QD_EST_ITERS, &it_s[i]); }
            t_rec += it_s[i] * (double)cfg->recon.iters;
        }
        if (st == QD_OK) { qd_phase_update(&ph, nunits); qd_phase_end(&ph); }
        else qd_progress_done();
        free(it_s);
        if (st != QD_OK) goto done;
        snprintf(what, sizeof what, "%d units x %d iterations (%d types)", nunits, cfg->recon.iters, types);
        line(out, "reconstruction", what, t_rec);
        t_total += t_rec;
        if (plan->brecq_act) {
            double t_b = t_rec / (double)cfg->recon.iters * (double)cfg->brecq.act_iters;
            snprintf(what, sizeof what, "%d units x %d iterations", nunits, cfg->brecq.act_iters);
            line(out, "BRECQ activation stage", what, t_b);
            t_total += t_b;
        }
    }
    if (nval > 0) {
        snprintf(what, sizeof what, "%d images", nval);
        line(out, "quantized evaluation", what, t_q * nval);
        t_total += t_q * nval;
    }
    line(out, "total", "", t_total);

done:
    free(logits);
    qd_exec_free(ex);
    qd_backend_destroy(b);
    return st;
}
