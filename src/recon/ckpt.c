/* src/recon/ckpt.c: checkpoint after every finished unit (issue 6): everything needed to
 * continue — every weight quantizer's scales, zero points and effective weights, every
 * activation quantizer's scale/zero point/initialised flag, the unit reports, the config and
 * model hashes. The RNG needs no saved position: draws are keyed on (seed, unit, iteration).
 * Written atomically (temp file + rename), so a kill never leaves a torn checkpoint. */
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

typedef struct { const unsigned char *p; size_t n, off; int bad; } rd_t;
static void get(rd_t *r, void *d, size_t n) {
    if (r->bad || r->off + n > r->n) { r->bad = 1; memset(d, 0, n); return; }
    memcpy(d, r->p + r->off, n);
    r->off += n;
}
static int64_t get_i64(rd_t *r) { int64_t v; get(r, &v, sizeof v); return v; }
static double get_f64(rd_t *r) { double v; get(r, &v, sizeof v); return v; }

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

qd_status qd_ckpt_load(const char *path, qd_graph *g, uint64_t cfg_hash, uint64_t model_hash, int *units_done,
                       qd_unit_report *reps, int maxreps, int *nreps) {
    void *data = NULL;
    size_t n = 0;
    qd_status st = qd_read_file(path, &data, &n);
    if (st != QD_OK) return st;
    rd_t r = {data, n, 0, 0};
    char magic[8];
    get(&r, magic, 8);
    if (r.bad || memcmp(magic, CKPT_MAGIC, 8) != 0 || n < 16 ||
        qd_fnv1a64(data, n - 8, 0) != *(const uint64_t *)((const unsigned char *)data + n - 8)) {
        free(data);
        return qd_errorf(QD_ERR_DATA, "%s: not a qdrop-gpu checkpoint or corrupted", path);
    }
    uint64_t ch, mh;
    get(&r, &ch, 8);
    get(&r, &mh, 8);
    if (ch != cfg_hash) {
        free(data);
        return qd_errorf(QD_ERR_CONFIG, "%s: checkpoint was written with a different config (hash %016llx, this run %016llx); "
                         "refusing to resume — use a new output directory", path, (unsigned long long)ch, (unsigned long long)cfg_hash);
    }
    if (mh != model_hash) {
        free(data);
        return qd_errorf(QD_ERR_DATA, "%s: checkpoint was written for a different model file (hash %016llx, this model %016llx); "
                         "refusing to resume", path, (unsigned long long)mh, (unsigned long long)model_hash);
    }
    *units_done = (int)get_i64(&r);
    int64_t nwq = get_i64(&r);
    if (nwq != g->nwq) { free(data); return qd_errorf(QD_ERR_DATA, "%s: checkpoint has %lld weight quantizers, model has %d", path, (long long)nwq, g->nwq); }
    for (int k = 0; k < g->nwq && !r.bad; k++) {
        qd_weight_quant *q = &g->wq[k];
        int64_t ch2 = get_i64(&r), numel = get_i64(&r);
        if (ch2 != q->channels || numel != (int64_t)q->channels * q->per_channel) { r.bad = 1; break; }
        q->reconstructed = (int)get_i64(&r);
        get(&r, q->scale, sizeof(float) * (size_t)q->channels);
        get(&r, q->zero_point, sizeof(float) * (size_t)q->channels);
        get(&r, q->qweight, sizeof(float) * (size_t)numel);
    }
    int64_t nact = get_i64(&r);
    if (nact != g->nact) r.bad = 1;
    for (int k = 0; k < g->nact && !r.bad; k++) {
        get(&r, &g->act[k].scale, sizeof(float));
        get(&r, &g->act[k].zero_point, sizeof(float));
        g->act[k].initialized = (int)get_i64(&r);
    }
    int64_t nr = get_i64(&r);
    if (nr < 0 || nr > maxreps) r.bad = 1;
    for (int i = 0; i < nr && !r.bad; i++) {
        qd_unit_report *u = &reps[i];
        memset(u, 0, sizeof *u);
        get(&r, u->name, sizeof u->name);
        u->name[sizeof u->name - 1] = 0;
        u->iters_planned = (int)get_i64(&r); u->iters_run = (int)get_i64(&r); u->early_stopped = (int)get_i64(&r);
        u->nlayers = (int)get_i64(&r); u->nact = (int)get_i64(&r);
        u->loss_start = get_f64(&r); u->loss_end = get_f64(&r); u->reg_end = get_f64(&r);
        u->sqnr_before_db = get_f64(&r); u->sqnr_after_db = get_f64(&r);
        u->seconds = get_f64(&r); u->it_per_s = get_f64(&r);
        int64_t nc = get_i64(&r);
        if (nc < 0 || nc > 1000000) { r.bad = 1; break; }
        u->ncurve = (int)nc;
        u->curve = calloc((size_t)nc + 1, sizeof(double));
        u->curve_iter = calloc((size_t)nc + 1, sizeof(int));
        for (int c = 0; c < nc; c++) { u->curve[c] = get_f64(&r); u->curve_iter[c] = (int)get_i64(&r); }
    }
    *nreps = (int)nr;
    free(data);
    if (r.bad) return qd_errorf(QD_ERR_DATA, "%s: checkpoint does not match this model's quantizers", path);
    return QD_OK;
}
