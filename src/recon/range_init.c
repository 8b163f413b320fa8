/* src/recon/range_init.c: MSE range search of weight and activation quantizers (§3.1, §6.2).
 *
 * Q2's MSEObserver: L_2.4 error (mean of |Q(x) - x|^2.4), 100 range candidates; a one-sided
 * tensor gets the 1-D search (range [0, thr], thr = max * i/100), otherwise the 2-D search over
 * (width = R * i/100) x (every integer zero point), where 0 is always a grid point. The
 * candidate range goes through the same range->(scale, zp) formula as the observer (§2).
 * Strict "<" keeps the first best candidate, as torch.where(score < best) does.
 *
 * Work is split over channels (weights) or candidates (activations) across threads; every
 * score is summed by one thread in a fixed order, so results do not depend on thread count.
 */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/qmath.h"
#include "core/simd.h"
#include "recon/recon.h"

/* Sum of |Q(x)-x|^2.4 over contiguous x[0..n): 8 double lanes (element i -> lane i % 8, a
 * fixed order), qd_pow_lp24 instead of powf so every SIMD clone gives the same bits. */
QD_SIMD_CLONES
static double lp_sum_contig(const float *x, int64_t n, float s, float z, float qmin, float qmax) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) {
            float v = x[i + l];
            acc[l] += (double)qd_pow_lp24(qd_fake_quant(v, s, z, qmin, qmax) - v);
        }
    for (; i < n; i++) acc[i & 7] += (double)qd_pow_lp24(qd_fake_quant(x[i], s, z, qmin, qmax) - x[i]);
    double t = 0.0;
    for (int l = 0; l < 8; l++) t += acc[l];
    return t;
}

/* mean |Q(x)-x|^p of x[0..n) with stride, under the quantizer of range [lo, hi]. */
static double lp_score(const float *x, int64_t n, int64_t stride, float lo, float hi, int qmin, int qmax) {
    float s, z;
    qd_range_to_qparams(lo, hi, qmin, qmax, &s, &z);
    if (stride == 1) return lp_sum_contig(x, n, s, z, (float)qmin, (float)qmax) / (double)n;
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t k = 0; k < n; k++) {
        float v = x[k * stride];
        acc[k & 7] += (double)qd_pow_lp24(qd_fake_quant(v, s, z, (float)qmin, (float)qmax) - v);
    }
    double t = 0.0;
    for (int l = 0; l < 8; l++) t += acc[l];
    return t / (double)n;
}

/* Search one "tensor slice" (a channel, or a whole activation) sequentially. mode: 1 pos,
 * -1 neg, 0 both signs. Returns best range. */
static void search_slice(const float *x, int64_t n, int64_t stride, int mode, int qmin, int qmax,
                         float *best_lo, float *best_hi) {
    float mn = FLT_MAX, mx = -FLT_MAX;
    for (int64_t k = 0; k < n; k++) {
        float v = x[k * stride];
        mn = fminf(mn, v);
        mx = fmaxf(mx, v);
    }
    double best = 1e10;
    *best_lo = fminf(mn, 0.0f);
    *best_hi = fmaxf(mx, 0.0f);
    if (mode != 0) {
        float xrange = fmaxf(fabsf(mn), mx);
        for (int i = 1; i <= QD_MSE_CANDIDATES; i++) {
            float thr = xrange / (float)QD_MSE_CANDIDATES * (float)i;
            float lo = mode > 0 ? 0.0f : -thr;
            float hi = mode < 0 ? 0.0f : thr;
            double sc = lp_score(x, n, stride, lo, hi, qmin, qmax);
            if (sc < best) { best = sc; *best_lo = lo; *best_hi = hi; }
        }
        return;
    }
    float lo0 = fminf(mn, 0.0f), hi0 = fmaxf(mx, 0.0f);
    float xrange = hi0 - lo0;
    for (int i = 1; i <= QD_MSE_CANDIDATES; i++) {
        float tmp_max = xrange / (float)QD_MSE_CANDIDATES * (float)i;
        float delta = tmp_max / (float)(qmax - qmin);
        for (int zp = qmin; zp <= qmax; zp++) {
            float lo = -(float)zp * delta;
            float hi = tmp_max - (float)zp * delta;
            double sc = lp_score(x, n, stride, lo, hi, qmin, qmax);
            if (sc < best) { best = sc; *best_lo = lo; *best_hi = hi; }
        }
    }
}

/* ---- a tiny deterministic parallel-for: items [0, n) split into contiguous chunks ---- */
typedef struct {
    void (*fn)(void *arg, int64_t begin, int64_t end);
    void *arg;
    int64_t begin, end;
} pf_job;

static void *pf_thread(void *p) {
    pf_job *j = (pf_job *)p;
    j->fn(j->arg, j->begin, j->end);
    return NULL;
}

static void parallel_for(int64_t n, int threads, void (*fn)(void *, int64_t, int64_t), void *arg) {
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    if (threads > n) threads = (int)(n > 0 ? n : 1);
    if (threads == 1) { fn(arg, 0, n); return; }
    pthread_t tid[64];
    pf_job jobs[64];
    int started[64] = {0};
    for (int t = 0; t < threads; t++) {
        jobs[t].fn = fn; jobs[t].arg = arg;
        jobs[t].begin = n * t / threads; jobs[t].end = n * (t + 1) / threads;
        started[t] = (t > 0) && pthread_create(&tid[t], NULL, pf_thread, &jobs[t]) == 0;
    }
    fn(arg, jobs[0].begin, jobs[0].end);
    for (int t = 1; t < threads; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else fn(arg, jobs[t].begin, jobs[t].end); /* could not start a thread: run inline */
    }
}

/* ---- weights: parallel over channels ---- */
typedef struct {
    const float *w;
    int channels;
    int64_t per_channel;
    int channel_major, mode, qmin, qmax;
    float *scale, *zp;
} wjob;

static void weight_chunk(void *p, int64_t b, int64_t e) {
    wjob *j = (wjob *)p;
    for (int64_t c = b; c < e; c++) {
        const float *x = j->channel_major ? j->w + c * j->per_channel : j->w + c;
        int64_t stride = j->channel_major ? 1 : j->channels;
        float lo, hi;
        search_slice(x, j->per_channel, stride, j->mode, j->qmin, j->qmax, &lo, &hi);
        qd_range_to_qparams(lo, hi, j->qmin, j->qmax, &j->scale[c], &j->zp[c]);
    }
}

static int sign_mode(const float *x, int64_t n) {
    float mn = FLT_MAX, mx = -FLT_MAX;
    for (int64_t k = 0; k < n; k++) { mn = fminf(mn, x[k]); mx = fmaxf(mx, x[k]); }
    if (mn >= 0.0f) return 1;
    if (mx <= 0.0f) return -1;
    return 0;
}

qd_status qd_weight_range_search(const float *w, int channels, int64_t per_channel, int channel_major,
                                 int bits, int threads, float *scale, float *zero_point) {
    if (bits < 2 || bits > 8 || channels <= 0 || per_channel <= 0)
        return qd_errorf(QD_ERR_INTERNAL, "weight range search: bad arguments (bits %d, channels %d)", bits, channels);
    for (int64_t k = 0; k < (int64_t)channels * per_channel; k++)
        if (!isfinite(w[k])) return qd_errorf(QD_ERR_DATA, "weight contains NaN/Inf at element %lld", (long long)k);
    wjob j = {w, channels, per_channel, channel_major, sign_mode(w, (int64_t)channels * per_channel), 0,
              qd_qmax_for_bits(bits), scale, zero_point};
    parallel_for(channels, threads, weight_chunk, &j);
    return QD_OK;
}

/* ---- activations: parallel over candidates ---- */
typedef struct {
    const float *x;   /* compacted: exact zeros removed for one-sided tensors (their error is 0) */
    int64_t n, n_total;
    int qmin, qmax, mode;
    float *lo, *hi;   /* candidate ranges */
    double *score;
} ajob;

static void act_chunk(void *p, int64_t b, int64_t e) {
    ajob *j = (ajob *)p;
    for (int64_t c = b; c < e; c++)
        j->score[c] = lp_score(j->x, j->n, 1, j->lo[c], j->hi[c], j->qmin, j->qmax) * (double)j->n / (double)j->n_total;
}

qd_status qd_act_range_search(const float *x, int64_t n, int bits, int threads, float *scale, float *zero_point) {
    if (n <= 0) return qd_errorf(QD_ERR_INTERNAL, "activation range search on an empty tensor");
    int qmin = 0, qmax = qd_qmax_for_bits(bits);
    float mn = FLT_MAX, mx = -FLT_MAX;
    for (int64_t k = 0; k < n; k++) {
        if (!isfinite(x[k])) return qd_errorf(QD_ERR_NUMERIC, "activation contains NaN/Inf during range calibration");
        mn = fminf(mn, x[k]); mx = fmaxf(mx, x[k]);
    }
    int mode = mn >= 0.0f ? 1 : (mx <= 0.0f ? -1 : 0);
    int64_t ncand = mode != 0 ? QD_MSE_CANDIDATES : (int64_t)QD_MSE_CANDIDATES * (qmax - qmin + 1);
    float *lo = malloc(sizeof(float) * ncand), *hi = malloc(sizeof(float) * ncand);
    double *score = malloc(sizeof(double) * ncand);
    float *compact = NULL;
    const float *xs = x;
    int64_t nn = n;
    if (!lo || !hi || !score) { free(lo); free(hi); free(score); return qd_errorf(QD_ERR_INTERNAL, "out of host memory"); }
    if (mode != 0) {
        /* Exact zeros (most of a post-ReLU tensor) quantize to exactly 0 when z = 0: skip them. */
        compact = malloc(sizeof(float) * (size_t)n);
        if (compact) {
            nn = 0;
            for (int64_t k = 0; k < n; k++) if (x[k] != 0.0f) compact[nn++] = x[k];
            xs = compact;
        }
        float xrange = fmaxf(fabsf(mn), mx);
        for (int i = 1; i <= QD_MSE_CANDIDATES; i++) {
            float thr = xrange / (float)QD_MSE_CANDIDATES * (float)i;
            lo[i - 1] = mode > 0 ? 0.0f : -thr;
            hi[i - 1] = mode < 0 ? 0.0f : thr;
        }
    } else {
        float xrange = fmaxf(mx, 0.0f) - fminf(mn, 0.0f);
        int64_t c = 0;
        for (int i = 1; i <= QD_MSE_CANDIDATES; i++) {
            float tmp_max = xrange / (float)QD_MSE_CANDIDATES * (float)i;
            float delta = tmp_max / (float)(qmax - qmin);
            for (int zp = qmin; zp <= qmax; zp++, c++) {
                lo[c] = -(float)zp * delta;
                hi[c] = tmp_max - (float)zp * delta;
            }
        }
    }
    ajob j = {xs, nn, n, qmin, qmax, mode, lo, hi, score};
    if (nn > 0) parallel_for(ncand, threads, act_chunk, &j);
    else for (int64_t c = 0; c < ncand; c++) score[c] = 0.0;
    double best = 1e10;
    float blo = fminf(mn, 0.0f), bhi = fmaxf(mx, 0.0f);
    for (int64_t c = 0; c < ncand; c++)
        if (score[c] < best) { best = score[c]; blo = lo[c]; bhi = hi[c]; }
    qd_range_to_qparams(blo, bhi, qmin, qmax, scale, zero_point);
    free(lo); free(hi); free(score); free(compact);
    return QD_OK;
}

qd_status qd_init_weight_ranges(qd_graph *g, int threads) {
    for (int k = 0; k < g->nwq; k++) {
        qd_weight_quant *q = &g->wq[k];
        const qd_value *wv = &g->values[q->weight_value];
        if (!wv->fdata) return qd_errorf(QD_ERR_INTERNAL, "weight of node %s has no data", g->nodes[q->node].name);
        qd_status st = qd_weight_range_search(wv->fdata, q->channels, q->per_channel, q->ch_axis == 0, q->bits,
                                              threads, q->scale, q->zero_point);
        if (st != QD_OK) {
            qd_error_clear();
            return qd_errorf(st, "weight range search of node %s failed: NaN/Inf in weight '%s'",
                             g->nodes[q->node].name, wv->name);
        }
        /* Nearest rounding until the unit is reconstructed (§1 step 9). */
        float qmax = (float)qd_qmax_for_bits(q->bits);
        int64_t numel = (int64_t)q->channels * q->per_channel;
        for (int64_t i = 0; i < numel; i++) {
            int64_t c = q->ch_axis == 0 ? i / q->per_channel : i % q->channels;
            q->qweight[i] = qd_fake_quant(wv->fdata[i], q->scale[c], q->zero_point[c], 0.0f, qmax);
        }
    }
    return QD_OK;
}
