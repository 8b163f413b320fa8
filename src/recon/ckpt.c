/* src/recon/ckpt.c: checkpoint after every finished unit (issue 6): everything needed to
 * continue — every weight quantizer's scales, zero points and effective weights, every
 * activation quantizer's scale/zero point/initialised flag, the unit reports, the config and
 * model hashes. The RNG needs no saved position: draws are keyed on (seed, unit, iteration).
 * Written atomically (temp file + rename), so a kill never leaves a torn checkpoint. */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qdrop/fsutil.h"
#include "recon/ckpt.h"

#define CKPT_MAGIC "QDCKPT01"

typedef struct { unsigned char *p; size_t n, cap; int oom; } buf_t;

static void put(buf_t *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 4096;
        while (nc < b->n + n) nc *= 2;
        unsigned char *np = realloc(b->p, nc);
        if (!np) { b->oom = 1; return; }
        b->p = np; b->cap = nc;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_i64(buf_t *b, int64_t v) { put(b, &v, sizeof v); }
static void put_f64(buf_t *b, double v) { put(b, &v, sizeof v); }

uint64_t qd_fnv1a64(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    if (!h) h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ULL; }
    return h;
}

qd_status qd_ckpt_save(const char *path, const qd_graph *g, uint64_t cfg_hash, uint64_t model_hash, int units_done,
                       const qd_unit_report *reps, int nreps) {
    buf_t b = {0};
    put(&b, CKPT_MAGIC, 8);
    put(&b, &cfg_hash, 8);
    put(&b, &model_hash, 8);
    put_i64(&b, units_done);
    put_i64(&b, g->nwq);
    for (int k = 0; k < g->nwq; k++) {
        const qd_weight_quant *q = &g->wq[k];
        int64_t numel = (int64_t)q->channels * q->per_channel;
        put_i64(&b, q->channels);
        put_i64(&b, numel);
        put_i64(&b, q->reconstructed);
        put(&b, q->scale, sizeof(float) * (size_t)q->channels);
        put(&b, q->zero_point, sizeof(float) * (size_t)q->channels);
        put(&b, q->qweight, sizeof(float) * (size_t)numel);
    }
    put_i64(&b, g->nact);
    for (int k = 0; k < g->nact; k++) {
        put(&b, &g->act[k].scale, sizeof(float));
        put(&b, &g->act[k].zero_point, sizeof(float));
        put_i64(&b, g->act[k].initialized);
    }
    put_i64(&b, nreps);
    for (int i = 0; i < nreps; i++) {
        const qd_unit_report *r = &reps[i];
        put(&b, r->name, sizeof r->name);
        put_i64(&b, r->iters_planned); put_i64(&b, r->iters_run); put_i64(&b, r->early_stopped);
        put_i64(&b, r->nlayers); put_i64(&b, r->nact);
        put_f64(&b, r->loss_start); put_f64(&b, r->loss_end); put_f64(&b, r->reg_end);
        put_f64(&b, r->sqnr_before_db); put_f64(&b, r->sqnr_after_db);
        put_f64(&b, r->seconds); put_f64(&b, r->it_per_s);
        put_i64(&b, r->ncurve);
        for (int c = 0; c < r->ncurve; c++) { put_f64(&b, r->curve[c]); put_i64(&b, r->curve_iter[c]); }
    }
    uint64_t sum = qd_fnv1a64(b.p, b.n, 0);
    put(&b, &sum, 8);
    if (b.oom) { free(b.p); return qd_errorf(QD_ERR_INTERNAL, "out of host memory writing checkpoint"); }
    qd_status st = qd_write_file_atomic(path, b.p, b.n);
    free(b.p);
    return st;
}

/* ---- reading: the file is untrusted input ----
 * The FNV-1a checksum only catches accidents (a torn copy, a flipped bit); anyone can write a
 * file with a valid checksum. So every count, flag and value is range-checked against this run's
 * graph before anything is used, and the parse runs twice: a first pass that only validates
 * (the graph and the reports are not touched), then a pass that copies. Reads go through memcpy,
 * so an odd-length or truncated file never causes a misaligned or out-of-bounds load. */

typedef struct {
    const unsigned char *p;
    size_t n, off;        /* n: bytes before the trailing checksum */
    const char *path;
    const char *field;    /* field being read, for the truncation message */
    qd_status st;         /* first failure */
} rd_t;

static int rd_ok(const rd_t *r) { return r->st == QD_OK; }

static void rd_fail(rd_t *r, qd_status st, const char *fmt, ...) QD_PRINTF(3, 4);
static void rd_fail(rd_t *r, qd_status st, const char *fmt, ...) {
    if (r->st != QD_OK) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->st = qd_errorf(st, "%s: %s", r->path, msg);
}

static void get(rd_t *r, const char *field, void *d, size_t n) {
    if (!rd_ok(r) || n > r->n - r->off) {
        if (rd_ok(r))
            rd_fail(r, QD_ERR_DATA, "checkpoint truncated: field %s needs %zu bytes at offset %zu, %zu left", field, n,
                    r->off, r->n - r->off);
        memset(d, 0, n);
        return;
    }
    memcpy(d, r->p + r->off, n);
    r->off += n;
}

/* An int64 field that must lie in [lo, hi]. */
static int64_t get_range(rd_t *r, const char *field, int64_t lo, int64_t hi) {
    int64_t v;
    get(r, field, &v, sizeof v);
    if (rd_ok(r) && (v < lo || v > hi))
        rd_fail(r, QD_ERR_DATA, "checkpoint field %s = %lld is out of range (expected %lld..%lld for this model)", field,
                (long long)v, (long long)lo, (long long)hi);
    return rd_ok(r) ? v : lo;
}

static double get_f64(rd_t *r, const char *field) {
    double v;
    get(r, field, &v, sizeof v);
    return v;
}

/* count floats, each finite and (when nonneg) >= 0 and (when maxabs > 0) |v| <= maxabs; copied
 * to dst when dst is not NULL. */
static void get_floats(rd_t *r, const char *field, int k, float *dst, size_t count, int nonneg, float maxabs) {
    if (!rd_ok(r)) return;
    if (count > (r->n - r->off) / sizeof(float)) {
        rd_fail(r, QD_ERR_DATA, "checkpoint truncated: field %s of quantizer %d needs %zu floats at offset %zu, %zu bytes left",
                field, k, count, r->off, r->n - r->off);
        return;
    }
    const unsigned char *src = r->p + r->off;
    for (size_t i = 0; i < count; i++) {
        float v;
        memcpy(&v, src + i * sizeof(float), sizeof v);
        if (!isfinite(v) || (nonneg && v < 0.0f) || (maxabs > 0.0f && fabsf(v) > maxabs)) {
            rd_fail(r, QD_ERR_DATA, "checkpoint field %s of quantizer %d holds %g at element %zu (expected a finite%s value)",
                    field, k, (double)v, i, nonneg ? ", non-negative" : maxabs > 0.0f ? ", small integer" : "");
            return;
        }
    }
    if (dst) memcpy(dst, src, count * sizeof(float));
    r->off += count * sizeof(float);
}

/* One pass over the body. commit = 0: validate only; commit = 1: copy into g and reps (only
 * after a validating pass succeeded). */
static void parse_body(rd_t *r, qd_graph *g, int commit, int maxreps, int *units_done, qd_unit_report *reps, int *nreps) {
    int64_t done = get_range(r, "units_done", 0, maxreps);
    get_range(r, "weight_quantizers", g->nwq, g->nwq);
    for (int k = 0; k < g->nwq && rd_ok(r); k++) {
        qd_weight_quant *q = &g->wq[k];
        int64_t numel = (int64_t)q->channels * q->per_channel;
        get_range(r, "channels", q->channels, q->channels);
        get_range(r, "weight_numel", numel, numel);
        int rec = (int)get_range(r, "reconstructed", 0, 1);
        get_floats(r, "scale", k, commit ? q->scale : NULL, (size_t)q->channels, 1, 0.0f);
        get_floats(r, "zero_point", k, commit ? q->zero_point : NULL, (size_t)q->channels, 0, 65536.0f);
        get_floats(r, "qweight", k, commit ? q->qweight : NULL, (size_t)numel, 0, 0.0f);
        if (commit && rd_ok(r)) q->reconstructed = rec;
    }
    get_range(r, "activation_quantizers", g->nact, g->nact);
    for (int k = 0; k < g->nact && rd_ok(r); k++) {
        float sz[2];
        get_floats(r, "activation scale/zero_point", k, sz, 2, 0, 0.0f);
        if (rd_ok(r) && (sz[0] < 0.0f || fabsf(sz[1]) > 65536.0f))
            rd_fail(r, QD_ERR_DATA, "checkpoint activation quantizer %d: scale %g / zero point %g out of range", k,
                    (double)sz[0], (double)sz[1]);
        int init = (int)get_range(r, "initialized", 0, 1);
        if (commit && rd_ok(r)) { g->act[k].scale = sz[0]; g->act[k].zero_point = sz[1]; g->act[k].initialized = init; }
    }
    int64_t nr = get_range(r, "unit_reports", 0, maxreps);
    if (rd_ok(r) && nr != done)
        rd_fail(r, QD_ERR_DATA, "checkpoint field unit_reports = %lld does not match units_done = %lld", (long long)nr,
                (long long)done);
    for (int i = 0; i < nr && rd_ok(r); i++) {
        qd_unit_report u;
        memset(&u, 0, sizeof u);
        get(r, "unit name", u.name, sizeof u.name);
        u.name[sizeof u.name - 1] = 0;
        u.iters_planned = (int)get_range(r, "iters_planned", 0, INT_MAX);
        u.iters_run = (int)get_range(r, "iters_run", 0, INT_MAX);
        u.early_stopped = (int)get_range(r, "early_stopped", 0, 1);
        u.nlayers = (int)get_range(r, "nlayers", 0, g->nwq);
        u.nact = (int)get_range(r, "nact", 0, g->nact);
        u.loss_start = get_f64(r, "loss_start"); u.loss_end = get_f64(r, "loss_end"); u.reg_end = get_f64(r, "reg_end");
        u.sqnr_before_db = get_f64(r, "sqnr_before_db"); u.sqnr_after_db = get_f64(r, "sqnr_after_db");
        u.seconds = get_f64(r, "seconds"); u.it_per_s = get_f64(r, "it_per_s");
        /* each curve point is 16 bytes: never more points than bytes left */
        int64_t left = (int64_t)((r->n - r->off) / 16);
        int64_t nc = get_range(r, "ncurve", 0, left < 1000000 ? left : 1000000);
        if (!rd_ok(r)) break;
        if (commit) {
            u.ncurve = (int)nc;
            u.curve = calloc((size_t)nc + 1, sizeof(double));
            u.curve_iter = calloc((size_t)nc + 1, sizeof(int));
            if (!u.curve || !u.curve_iter) {
                free(u.curve); free(u.curve_iter);
                rd_fail(r, QD_ERR_INTERNAL, "out of host memory reading the checkpoint");
                break;
            }
        }
        for (int64_t c = 0; c < nc && rd_ok(r); c++) {
            double v = get_f64(r, "curve");
            int it = (int)get_range(r, "curve_iter", 0, INT_MAX);
            if (commit) { u.curve[c] = v; u.curve_iter[c] = it; }
        }
        if (commit) {
            reps[i] = u;
            *nreps = i + 1;
        }
    }
    if (rd_ok(r) && r->off != r->n)
        rd_fail(r, QD_ERR_DATA, "checkpoint has %zu unexpected bytes after its last field", r->n - r->off);
    if (commit && rd_ok(r)) *units_done = (int)done;
}

qd_status qd_ckpt_parse(const void *data, size_t n, const char *path, qd_graph *g, uint64_t cfg_hash,
                        uint64_t model_hash, int *units_done, qd_unit_report *reps, int maxreps, int *nreps) {
    const unsigned char *p = data;
    *units_done = 0;
    *nreps = 0;
    uint64_t sum = 0;
    if (n >= 32) memcpy(&sum, p + n - 8, 8);
    if (n < 32 || memcmp(p, CKPT_MAGIC, 8) != 0 || qd_fnv1a64(p, n - 8, 0) != sum)
        return qd_errorf(QD_ERR_DATA, "%s: not a qdrop-gpu checkpoint or corrupted", path);
    uint64_t ch, mh;
    memcpy(&ch, p + 8, 8);
    memcpy(&mh, p + 16, 8);
    if (ch != cfg_hash)
        return qd_errorf(QD_ERR_CONFIG, "%s: checkpoint was written with a different config (hash %016llx, this run %016llx); "
                         "refusing to resume — use a new output directory", path, (unsigned long long)ch, (unsigned long long)cfg_hash);
    if (mh != model_hash)
        return qd_errorf(QD_ERR_DATA, "%s: checkpoint was written for a different model file (hash %016llx, this model %016llx); "
                         "refusing to resume", path, (unsigned long long)mh, (unsigned long long)model_hash);
    if (maxreps < 0) maxreps = 0;
    rd_t r = {p, n - 8, 24, path, NULL, QD_OK};
    parse_body(&r, g, 0, maxreps, units_done, reps, nreps);
    if (r.st != QD_OK) return r.st;
    rd_t r2 = {p, n - 8, 24, path, NULL, QD_OK};
    parse_body(&r2, g, 1, maxreps, units_done, reps, nreps);
    if (r2.st != QD_OK) { /* only out of memory can fail here */
        for (int i = 0; i < *nreps; i++) { free(reps[i].curve); free(reps[i].curve_iter); reps[i].curve = NULL; reps[i].curve_iter = NULL; }
        *nreps = 0;
        *units_done = 0;
    }
    return r2.st;
}

qd_status qd_ckpt_load(const char *path, qd_graph *g, uint64_t cfg_hash, uint64_t model_hash, int *units_done,
                       qd_unit_report *reps, int maxreps, int *nreps) {
    void *data = NULL;
    size_t n = 0;
    *units_done = 0;
    *nreps = 0;
    QD_TRY(qd_read_input(path, "checkpoint", QD_INPUT_MAX_BYTES, &data, &n));
    qd_status st = qd_ckpt_parse(data, n, path, g, cfg_hash, model_hash, units_done, reps, maxreps, nreps);
    free(data);
    return st;
}
