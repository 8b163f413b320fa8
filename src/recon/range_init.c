/* src/recon/range_init.c: MSE range search of weight and activation quantizers (§3.1, §6.2).
 *
 * Q2's MSEObserver: L_2.4 error (mean of |Q(x) - x|^2.4), 100 range candidates; a one-sided
 * tensor gets the 1-D search (range [0, thr], thr = max * i/100), otherwise the 2-D search over
 * (width = R * i/100) x (every integer zero point), where 0 is always a grid point. The
 * candidate range goes through the same range->(scale, zp) formula as the observer (§2).
 * Strict "<" keeps the first best candidate, as torch.where(score < best) does.
 *
 * quant.range_search "exact" scores every candidate on every element. "fast" (default) bins the
 * tensor once, estimates every candidate's error from the histogram and scores only the best
 * few exactly (see "fast search" below; tolerance in docs/numerics.md).
 *
 * Work is split over channels (weights) or candidates and elements (activations) across
 * threads; every score is summed by one thread in a fixed order and histograms are integer
 * sums, so results do not depend on the thread count.
 */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/qmath.h"
#include "core/simd.h"
#include "qdrop/log.h"
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

/* Candidate ranges of the §3.1 search for a slice with extremes [mn, mx], in the reference's
 * order (the order decides ties). Returns the number of candidates (100, or 100 x 2^b). */
static int64_t build_candidates(float mn, float mx, int mode, int qmin, int qmax, float *lo, float *hi) {
    int64_t c = 0;
    if (mode != 0) {
        float xrange = fmaxf(fabsf(mn), mx);
        for (int i = 1; i <= QD_MSE_CANDIDATES; i++, c++) {
            float thr = xrange / (float)QD_MSE_CANDIDATES * (float)i;
            lo[c] = mode > 0 ? 0.0f : -thr;
            hi[c] = mode < 0 ? 0.0f : thr;
        }
        return c;
    }
    float xrange = fmaxf(mx, 0.0f) - fminf(mn, 0.0f);
    for (int i = 1; i <= QD_MSE_CANDIDATES; i++) {
        float tmp_max = xrange / (float)QD_MSE_CANDIDATES * (float)i;
        float delta = tmp_max / (float)(qmax - qmin);
        for (int zp = qmin; zp <= qmax; zp++, c++) {
            lo[c] = -(float)zp * delta;
            hi[c] = tmp_max - (float)zp * delta;
        }
    }
    return c;
}

static int64_t max_candidates(int qmin, int qmax) { return (int64_t)QD_MSE_CANDIDATES * (qmax - qmin + 1); }

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

/* ---- fast search: histogram estimate of every candidate, exact score of the best few ----
 *
 * One pass bins the non-zero elements into `bins` equal bins over [mn, mx], keeping per bin the
 * count and the sum of the in-bin offsets in 2^-20 bin units as integers (exact, so partial
 * histograms merge to the same bits in any order). Each candidate's error is estimated with
 * every element at its bin's mean (exact zeros quantize to exactly 0 in every candidate, §3.1:
 * 0 is always a grid point). The QD_FAST_REFINE candidates with the lowest estimate are then
 * scored exactly, by the same function and data as the exact search, and the lowest exact score
 * wins (ties: first candidate, as in the exact search). So the fast search returns the exact
 * result whenever the exact optimum is among those candidates, and otherwise a candidate whose
 * estimated error is at least as low; docs/numerics.md gives the measured agreement. */
#define QD_FAST_OFF_ONE 1048576.0 /* 2^20 fixed-point units per bin */
#define QD_FAST_REFINE_2D 8
#define QD_FAST_REFINE_1D 2
#define QD_FAST_ACT_BINS 65536                   /* 2-D search: >= 256 bins per grid step at 8 bits */
#define QD_FAST_ACT_BINS_1D 16384                /* 1-D: candidates 1% apart, >= 64 bins per step */
#define QD_FAST_ACT_MIN_N 16384                  /* below this the exact search is as cheap */
#define QD_FAST_W_MIN_N 512                      /* weight channels: fast only when this long
                                                  * (2 elements per bin, <= 4096 bins) */

typedef struct {
    int bins;
    double origin, inv_w;   /* bin of v: (v - origin) * inv_w */
    int64_t *cnt, *off;     /* [bins] */
} qd_hist;

static void hist_add(qd_hist *h, const float *x, int64_t begin, int64_t end, int64_t stride) {
    int64_t B = h->bins;
    for (int64_t k = begin; k < end; k++) {
        float v = x[k * stride];
        if (v == 0.0f) continue;
        double t = ((double)v - h->origin) * h->inv_w;
        int64_t j = (int64_t)t;
        j = j < 0 ? 0 : (j >= B ? B - 1 : j);
        h->cnt[j]++;
        h->off[j] += (int64_t)((t - (double)j) * QD_FAST_OFF_ONE);
    }
}

/* Compact the non-empty bins into (representative value, weight) pairs; returns their number. */
static int64_t hist_points(const qd_hist *h, float *val, double *wt) {
    int64_t m = 0;
    for (int64_t j = 0; j < h->bins; j++) {
        if (!h->cnt[j]) continue;
        double mean = (double)j + (double)h->off[j] / ((double)h->cnt[j] * QD_FAST_OFF_ONE);
        val[m] = (float)(h->origin + mean / h->inv_w);
        wt[m] = (double)h->cnt[j];
        m++;
    }
    return m;
}

/* Estimated sum of |Q(x)-x|^2.4 from the histogram points; 8 lanes in a fixed order. */
QD_SIMD_CLONES
static double hist_estimate(const float *val, const double *wt, int64_t m, float lo, float hi, int qmin, int qmax) {
    float s, z;
    qd_range_to_qparams(lo, hi, qmin, qmax, &s, &z);
    float fqmin = (float)qmin, fqmax = (float)qmax;
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= m; i += 8)
        for (int l = 0; l < 8; l++) {
            float v = val[i + l];
            acc[l] += wt[i + l] * (double)qd_pow_lp24(qd_fake_quant(v, s, z, fqmin, fqmax) - v);
        }
    for (; i < m; i++) acc[i & 7] += wt[i] * (double)qd_pow_lp24(qd_fake_quant(val[i], s, z, fqmin, fqmax) - val[i]);
    double t = 0.0;
    for (int l = 0; l < 8; l++) t += acc[l];
    return t;
}

/* Indices of the k lowest est[] (ties: lower index first), written in increasing index order. */
static int select_lowest(const double *est, int64_t ncand, int k, int64_t *out) {
    if (k > ncand) k = (int)ncand;
    int n = 0;
    for (int64_t c = 0; c < ncand; c++) {
        if (n == k && !(est[c] < est[out[n - 1]])) continue;
        int pos = n < k ? n++ : k - 1;
        while (pos > 0 && est[c] < est[out[pos - 1]]) { out[pos] = out[pos - 1]; pos--; }
        out[pos] = c;
    }
    /* back to candidate order so the exact comparison breaks ties as the exact search does */
    for (int a = 1; a < n; a++) {
        int64_t v = out[a];
        int b = a;
        while (b > 0 && out[b - 1] > v) { out[b] = out[b - 1]; b--; }
        out[b] = v;
    }
    return n;
}

typedef struct {
    const float *val;
    const double *wt;
    int64_t m;
    const float *lo, *hi;
    const int64_t *idx;   /* NULL: candidate c; else candidate idx[c] */
    int qmin, qmax;
    double *est;
} ejob;

static void est_chunk(void *p, int64_t b, int64_t e) {
    ejob *j = (ejob *)p;
    for (int64_t c = b; c < e; c++) {
        int64_t k = j->idx ? j->idx[c] : c;
        j->est[c] = hist_estimate(j->val, j->wt, j->m, j->lo[k], j->hi[k], j->qmin, j->qmax);
    }
}

/* Merge runs of up to G consecutive points (val, wt)[0..m) (in increasing value order) at their
 * weighted mean into (cv, cw); returns the number of merged points. A run also ends before a
 * point more than max_span above its first one: merging by count alone would, in a long sparse
 * tail, put elements far apart at one mean, and the clipping error |Q(x)-x|^2.4 of a tail is
 * convex in x, so the tails (what tells candidate widths apart) would be underestimated
 * (measured: a GELU output with a long tail got a range 9 % worse than the optimum). */
static int64_t merge_points(const float *val, const double *wt, int64_t m, int64_t G, double max_span, float *cv,
                            double *cw) {
    int64_t mc = 0;
    for (int64_t i = 0, k; i < m; i = k, mc++) {
        double sw = 0, swv = 0;
        for (k = i; k < m && k < i + G && (k == i || (double)val[k] - (double)val[i] <= max_span); k++) {
            sw += wt[k];
            swv += wt[k] * (double)val[k];
        }
        cw[mc] = sw;
        cv[mc] = (float)(swv / sw);
    }
    return mc;
}

/* Rank the candidates on the histogram points (val, wt)[0..m) and write the `refine` best
 * (by estimate; ties: lower index) to pick[] in candidate order; returns their number.
 * Many candidates on many points (the 2-D search): first every candidate on coarse points
 * (up to QD_FAST_COARSE consecutive points merged at their weighted mean, keeping >= 64 coarse
 * points per grid step), then the QD_FAST_COARSE_KEEP best of those on all points.
 * With more candidates still (2-D at 4 bits and up: 1,600 to 25,600), a pre-filter comes first:
 * every candidate on "sparse" points (>= QD_FAST_SPARSE_PER_STEP per grid step, at least
 * QD_FAST_SPARSE_MERGE times coarser than the coarse points), keeping the QD_FAST_SPARSE_KEEP
 * best (4 % of the candidates, at least 256: 256 of 1,600 at 4 bits, 1,024 of 25,600 at 8) for
 * the coarse stage. Between candidates of one width the sparse estimates differ mainly by the
 * clipped tails, which few points estimate well (docs/numerics.md, "Range search").
 * scratch: ncand + 4 * (m + 1) doubles (a merged run can be a single point). Each estimate is summed by one thread in a fixed order. */
#define QD_FAST_COARSE 16
#define QD_FAST_COARSE_KEEP 64
#define QD_FAST_SPARSE_PER_STEP 8
#define QD_FAST_SPARSE_MERGE 4
#define QD_FAST_SPARSE_KEEP 256   /* at least; 4 % of the candidates */
static int rank_candidates(const float *val, const double *wt, int64_t m, const float *lo, const float *hi,
                           int64_t ncand, int qmin, int qmax, int refine, int threads, double *scratch, int64_t *pick) {
    double *est = scratch;
    int64_t steps = (int64_t)(qmax - qmin + 1);
    /* merge factor: coarse points must stay >= 64 per step of the full-range grid */
    int64_t G = m / (64 * steps);
    G = G > QD_FAST_COARSE ? QD_FAST_COARSE : G;
    /* pre-filter on sparse points when it saves most of the coarse stage's work */
    int64_t GS = m / (QD_FAST_SPARSE_PER_STEP * steps);
    int64_t sparse_keep = ncand / 25 > QD_FAST_SPARSE_KEEP ? ncand / 25 : QD_FAST_SPARSE_KEEP;
    int sparse = ncand > 4 * sparse_keep && GS >= QD_FAST_SPARSE_MERGE * (G > 1 ? G : 1);
    if (ncand > 4 * QD_FAST_COARSE_KEEP && (G >= 2 || sparse)) {
        double *cw = scratch + ncand;
        float *cv = (float *)(cw + m + 1);
        const float *pv = val;        /* coarse points: merged, or the points themselves (G < 2) */
        const double *pw = wt;
        int64_t mc = m;
        /* value span of a merged point: 1/64 (coarse) or 1/QD_FAST_SPARSE_PER_STEP (sparse) of a
         * step of the full-range grid, the density the point counts above assume */
        const double full_step = m > 1 ? ((double)val[m - 1] - (double)val[0]) / (double)steps : 0.0;
        if (G >= 2) { mc = merge_points(val, wt, m, G, full_step / 64.0, cv, cw); pv = cv; pw = cw; }
        const int64_t *cand = NULL;   /* candidates of the coarse stage: all, or the pre-filtered */
        int64_t ncoarse = ncand;
        int64_t *pre = NULL;
        if (sparse &&
            (pre = malloc(sizeof(int64_t) * (size_t)sparse_keep)) != NULL) {
            double *sw = cw + 2 * (m + 1);   /* past cv, double-aligned */
            float *sv = (float *)(sw + m + 1);
            int64_t ms = merge_points(val, wt, m, GS, full_step / QD_FAST_SPARSE_PER_STEP, sv, sw);
            ejob sj = {sv, sw, ms, lo, hi, NULL, qmin, qmax, est};
            parallel_for(ncand, threads, est_chunk, &sj);
            ncoarse = select_lowest(est, ncand, (int)sparse_keep, pre);
            cand = pre;
        }
        ejob cj = {pv, pw, mc, lo, hi, cand, qmin, qmax, est};
        parallel_for(ncoarse, threads, est_chunk, &cj);
        int64_t keep[QD_FAST_COARSE_KEEP];
        int nk = select_lowest(est, ncoarse, QD_FAST_COARSE_KEEP, keep);
        if (cand)
            for (int r = 0; r < nk; r++) keep[r] = cand[keep[r]]; /* cand increasing: keep stays increasing */
        free(pre);
        double fine[QD_FAST_COARSE_KEEP];
        ejob fj = {val, wt, m, lo, hi, keep, qmin, qmax, fine};
        parallel_for(nk, threads, est_chunk, &fj);
        int64_t sub[QD_FAST_REFINE_2D];
        int np = select_lowest(fine, nk, refine, sub);
        for (int r = 0; r < np; r++) pick[r] = keep[sub[r]]; /* sub is increasing, keep too */
        return np;
    }
    ejob ej = {val, wt, m, lo, hi, NULL, qmin, qmax, est};
    parallel_for(ncand, threads, est_chunk, &ej);
    return select_lowest(est, ncand, refine, pick);
}

/* Search one "tensor slice" (a channel, or a whole activation) sequentially. mode: 1 pos,
 * -1 neg, 0 both signs. cand_lo/cand_hi: scratch of max_candidates() floats; fast: use the
 * histogram search when the slice is long enough. Returns best range. */
static void search_slice(const float *x, int64_t n, int64_t stride, int mode, int qmin, int qmax, int fast,
                         float *cand_lo, float *cand_hi, float *best_lo, float *best_hi) {
    float mn = FLT_MAX, mx = -FLT_MAX;
    for (int64_t k = 0; k < n; k++) {
        float v = x[k * stride];
        mn = fminf(mn, v);
        mx = fmaxf(mx, v);
    }
    double best = 1e10;
    *best_lo = fminf(mn, 0.0f);
    *best_hi = fmaxf(mx, 0.0f);
    int64_t ncand = build_candidates(mn, mx, mode, qmin, qmax, cand_lo, cand_hi);
    int bins = (int)(n / 2 > 4096 ? 4096 : n / 2);
    /* the bin means stand in for the elements only when bins are much finer than the grid
     * step: at least 16 bins per step of the full-range candidate */
    if (fast && n >= QD_FAST_W_MIN_N && bins >= 16 * (qmax - qmin + 1) && mx > mn) {
        int refine = mode != 0 ? QD_FAST_REFINE_1D : QD_FAST_REFINE_2D;
        int64_t *cnt = calloc((size_t)bins * 2, sizeof(int64_t));
        float *val = malloc(sizeof(float) * (size_t)bins);
        double *wt = malloc(sizeof(double) * (size_t)bins);
        double *est = malloc(sizeof(double) * (size_t)(ncand + 4 * (bins + 1)));
        if (cnt && val && wt && est) {
            qd_hist h = {bins, (double)mn, (double)bins / ((double)mx - (double)mn), cnt, cnt + bins};
            hist_add(&h, x, 0, n, stride);
            int64_t m = hist_points(&h, val, wt);
            int64_t pick[QD_FAST_REFINE_2D];
            int np = rank_candidates(val, wt, m, cand_lo, cand_hi, ncand, qmin, qmax, refine, 1, est, pick);
            for (int r = 0; r < np; r++) {
                double sc = lp_score(x, n, stride, cand_lo[pick[r]], cand_hi[pick[r]], qmin, qmax);
                if (sc < best) { best = sc; *best_lo = cand_lo[pick[r]]; *best_hi = cand_hi[pick[r]]; }
            }
            free(cnt); free(val); free(wt); free(est);
            return;
        }
        free(cnt); free(val); free(wt); free(est); /* out of memory: the exact search needs none */
    }
    for (int64_t c = 0; c < ncand; c++) {
        double sc = lp_score(x, n, stride, cand_lo[c], cand_hi[c], qmin, qmax);
        if (sc < best) { best = sc; *best_lo = cand_lo[c]; *best_hi = cand_hi[c]; }
    }
}

/* ---- method: process-wide default, set once from quant.range_search ---- */
static volatile int g_range_method = QD_RANGE_FAST;

void qd_range_search_set_method(qd_range_method method) { g_range_method = (int)method; }
qd_range_method qd_range_search_get_method(void) { return (qd_range_method)g_range_method; }

/* ---- weights: parallel over channels ---- */
typedef struct {
    const float *w;
    int channels;
    int64_t per_channel;
    int channel_major, mode, qmin, qmax, fast;
    float *scale, *zp;
} wjob;

static void weight_chunk(void *p, int64_t b, int64_t e) {
    wjob *j = (wjob *)p;
    int64_t nc = max_candidates(j->qmin, j->qmax);
    float *cand = malloc(sizeof(float) * 2 * (size_t)nc);
    for (int64_t c = b; c < e; c++) {
        const float *x = j->channel_major ? j->w + c * j->per_channel : j->w + c;
        int64_t stride = j->channel_major ? 1 : j->channels;
        float lo, hi;
        if (cand) {
            search_slice(x, j->per_channel, stride, j->mode, j->qmin, j->qmax, j->fast, cand, cand + nc, &lo, &hi);
        } else { /* out of host memory for 2 x 25 600 floats: min/max range, never a crash */
            lo = 0.0f; hi = 0.0f;
            for (int64_t k = 0; k < j->per_channel; k++) { lo = fminf(lo, x[k * stride]); hi = fmaxf(hi, x[k * stride]); }
        }
        qd_range_to_qparams(lo, hi, j->qmin, j->qmax, &j->scale[c], &j->zp[c]);
    }
    free(cand);
}

static int sign_mode(const float *x, int64_t n) {
    float mn = FLT_MAX, mx = -FLT_MAX;
    for (int64_t k = 0; k < n; k++) { mn = fminf(mn, x[k]); mx = fmaxf(mx, x[k]); }
    if (mn >= 0.0f) return 1;
    if (mx <= 0.0f) return -1;
    return 0;
}

qd_status qd_weight_range_search_method(const float *w, int channels, int64_t per_channel, int channel_major,
                                        int bits, int threads, qd_range_method method, float *scale,
                                        float *zero_point) {
    if (bits < 2 || bits > 8 || channels <= 0 || per_channel <= 0)
        return qd_errorf(QD_ERR_INTERNAL, "weight range search: bad arguments (bits %d, channels %d)", bits, channels);
    for (int64_t k = 0; k < (int64_t)channels * per_channel; k++)
        if (!isfinite(w[k])) return qd_errorf(QD_ERR_DATA, "weight contains NaN/Inf at element %lld", (long long)k);
    wjob j = {w, channels, per_channel, channel_major, sign_mode(w, (int64_t)channels * per_channel), 0,
              qd_qmax_for_bits(bits), method == QD_RANGE_FAST, scale, zero_point};
    parallel_for(channels, threads, weight_chunk, &j);
    return QD_OK;
}

qd_status qd_weight_range_search(const float *w, int channels, int64_t per_channel, int channel_major, int bits,
                                 int threads, float *scale, float *zero_point) {
    return qd_weight_range_search_method(w, channels, per_channel, channel_major, bits, threads,
                                         qd_range_search_get_method(), scale, zero_point);
}

/* ---- activations: parallel over elements (histogram) and candidates (scores) ---- */
typedef struct {
    const float *x;   /* compacted: exact zeros removed for one-sided tensors (their error is 0) */
    int64_t n, n_total;
    int qmin, qmax, mode;
    float *lo, *hi;   /* candidate ranges */
    const int64_t *pick; /* NULL: score candidate c; else candidate pick[c] */
    double *score;
} ajob;

static void act_chunk(void *p, int64_t b, int64_t e) {
    ajob *j = (ajob *)p;
    for (int64_t c = b; c < e; c++) {
        int64_t k = j->pick ? j->pick[c] : c;
        j->score[c] = lp_score(j->x, j->n, 1, j->lo[k], j->hi[k], j->qmin, j->qmax) * (double)j->n / (double)j->n_total;
    }
}

typedef struct {
    const float *x;
    int64_t n;
    int parts;
    qd_hist *h;       /* [parts], one per contiguous part of x */
} hjob;

static void hist_chunk(void *p, int64_t b, int64_t e) {
    hjob *j = (hjob *)p;
    for (int64_t t = b; t < e; t++) hist_add(&j->h[t], j->x, j->n * t / j->parts, j->n * (t + 1) / j->parts, 1);
}

/* Fast activation search (see the histogram comment above): fills pick[0..np) with the refined
 * candidates and score[0..np) with their exact scores. Returns np, or -1 when out of memory. */
static int act_fast(const float *xs, int64_t nn, int64_t n_total, float mn, float mx, int mode, int qmin, int qmax,
                    int threads, float *lo, float *hi, int64_t ncand, int64_t *pick, double *score) {
    int parts = threads < 1 ? 1 : (threads > 16 ? 16 : threads); /* integer sums: any split, same bits */
    int B = mode != 0 ? QD_FAST_ACT_BINS_1D : QD_FAST_ACT_BINS;
    int64_t *mem = calloc((size_t)parts * 2 * (size_t)B, sizeof(int64_t));
    qd_hist h[16];
    float *val = malloc(sizeof(float) * (size_t)B);
    double *wt = malloc(sizeof(double) * (size_t)B);
    double *est = malloc(sizeof(double) * (size_t)(ncand + 4 * (B + 1)));
    int np = -1;
    if (mem && val && wt && est) {
        for (int t = 0; t < parts; t++)
            h[t] = (qd_hist){B, (double)mn, (double)B / ((double)mx - (double)mn), mem + (size_t)t * 2 * B,
                             mem + (size_t)t * 2 * B + B};
        hjob hj = {xs, nn, parts, h};
        parallel_for(parts, parts, hist_chunk, &hj);
        for (int t = 1; t < parts; t++)
            for (int64_t b = 0; b < B; b++) { h[0].cnt[b] += h[t].cnt[b]; h[0].off[b] += h[t].off[b]; }
        int64_t m = hist_points(&h[0], val, wt);
        np = rank_candidates(val, wt, m, lo, hi, ncand, qmin, qmax, mode != 0 ? QD_FAST_REFINE_1D : QD_FAST_REFINE_2D,
                             threads, est, pick);
        ajob aj = {xs, nn, n_total, qmin, qmax, mode, lo, hi, pick, score};
        parallel_for(np, threads, act_chunk, &aj);
    }
    free(mem); free(val); free(wt); free(est);
    return np;
}

typedef struct {
    const float *x;
    int64_t n;
    float *mn, *mx;   /* [parts] */
    int *bad;         /* [parts] */
    int parts;
} mjob;

static void minmax_chunk(void *p, int64_t b, int64_t e) {
    mjob *j = (mjob *)p;
    for (int64_t t = b; t < e; t++) {
        float mn = FLT_MAX, mx = -FLT_MAX;
        int bad = 0;
        /* comparisons, not fminf/fmaxf calls, so the loop vectorises (NaN/Inf set bad either way) */
        for (int64_t k = j->n * t / j->parts; k < j->n * (t + 1) / j->parts; k++) {
            float v = j->x[k];
            bad |= !(fabsf(v) <= FLT_MAX);
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
        j->mn[t] = mn; j->mx[t] = mx; j->bad[t] = bad;
    }
}

qd_status qd_act_range_search_method(const float *x, int64_t n, int bits, int threads, qd_range_method method,
                                     float *scale, float *zero_point) {
    if (n <= 0) return qd_errorf(QD_ERR_INTERNAL, "activation range search on an empty tensor");
    int qmin = 0, qmax = qd_qmax_for_bits(bits);
    float mn = FLT_MAX, mx = -FLT_MAX;
    {   /* min/max are order-independent: any split gives the same values */
        enum { P = 16 };
        float pmn[P], pmx[P];
        int bad[P];
        int parts = threads < 1 ? 1 : (threads > P ? P : threads);
        if (n < 65536) parts = 1;
        mjob mj = {x, n, pmn, pmx, bad, parts};
        parallel_for(parts, parts, minmax_chunk, &mj);
        for (int t = 0; t < parts; t++) {
            if (bad[t]) return qd_errorf(QD_ERR_NUMERIC, "activation contains NaN/Inf during range calibration");
            mn = fminf(mn, pmn[t]); mx = fmaxf(mx, pmx[t]);
        }
    }
    int mode = mn >= 0.0f ? 1 : (mx <= 0.0f ? -1 : 0);
    int64_t nmax = max_candidates(qmin, qmax);
    float *lo = malloc(sizeof(float) * nmax), *hi = malloc(sizeof(float) * nmax);
    double *score = malloc(sizeof(double) * nmax);
    int64_t *pick = malloc(sizeof(int64_t) * nmax);
    float *compact = NULL;
    const float *xs = x;
    int64_t nn = n;
    if (!lo || !hi || !score || !pick) {
        free(lo); free(hi); free(score); free(pick);
        return qd_errorf(QD_ERR_INTERNAL, "out of host memory");
    }
    if (mode != 0) {
        /* Exact zeros (most of a post-ReLU tensor) quantize to exactly 0 when z = 0: skip them. */
        compact = malloc(sizeof(float) * (size_t)n);
        if (compact) {
            nn = 0;
            /* branch-free: a post-ReLU tensor's zeros are too irregular to predict */
            for (int64_t k = 0; k < n; k++) { compact[nn] = x[k]; nn += x[k] != 0.0f; }
            xs = compact;
        }
    }
    int64_t ncand = build_candidates(mn, mx, mode, qmin, qmax, lo, hi);
    int64_t nscored = -1;
    if (method == QD_RANGE_FAST && nn >= QD_FAST_ACT_MIN_N && mx > mn)
        nscored = act_fast(xs, nn, n, mn, mx, mode, qmin, qmax, threads, lo, hi, ncand, pick, score);
    if (nscored < 0) { /* exact search (or the fast one could not get its memory) */
        ajob j = {xs, nn, n, qmin, qmax, mode, lo, hi, NULL, score};
        if (nn > 0) parallel_for(ncand, threads, act_chunk, &j);
        else for (int64_t c = 0; c < ncand; c++) score[c] = 0.0;
        for (int64_t c = 0; c < ncand; c++) pick[c] = c;
        nscored = ncand;
    }
    double best = 1e10;
    float blo = fminf(mn, 0.0f), bhi = fmaxf(mx, 0.0f);
    for (int64_t r = 0; r < nscored; r++)
        if (score[r] < best) { best = score[r]; blo = lo[pick[r]]; bhi = hi[pick[r]]; }
    qd_range_to_qparams(blo, bhi, qmin, qmax, scale, zero_point);
    free(lo); free(hi); free(score); free(pick); free(compact);
    return QD_OK;
}

qd_status qd_act_range_search(const float *x, int64_t n, int bits, int threads, float *scale, float *zero_point) {
    return qd_act_range_search_method(x, n, bits, threads, qd_range_search_get_method(), scale, zero_point);
}

qd_status qd_init_weight_ranges(qd_graph *g, int threads) {
    qd_phase ph;
    qd_phase_begin(&ph, "weight ranges", "layers", g->nwq);
    for (int k = 0; k < g->nwq; k++) {
        qd_phase_update(&ph, k);
        qd_weight_quant *q = &g->wq[k];
        const qd_value *wv = &g->values[q->weight_value];
        if (!wv->fdata) return qd_errorf(QD_ERR_INTERNAL, "weight of node %s has no data", g->nodes[q->node].name);
        qd_status st = qd_weight_range_search(wv->fdata, q->channels, q->per_channel, q->ch_axis == 0, q->bits,
                                              threads, q->scale, q->zero_point);
        if (st != QD_OK) {
            qd_progress_done();
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
    qd_phase_update(&ph, g->nwq);
    qd_phase_end(&ph);
    return QD_OK;
}
