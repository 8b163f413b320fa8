/* src/data/dataset.c: datasets from an ImageFolder or .npy files, calibration sampling.
 *
 * Decoding is parallel (pthreads) but every image is written to its own slot and errors are
 * reported for the lowest failing index, so the result and the message never depend on the
 * thread count or scheduling. */
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data_internal.h"
#include "qdrop/graph.h" /* QD_DT_* */

#if defined(__has_include)
#if __has_include("qdrop/log.h")
#include "qdrop/log.h"
#define QD_DATA_HAVE_LOG 1
#endif
#endif

void qd_data_warn(const char *event, const char *msg) {
#ifdef QD_DATA_HAVE_LOG
    qd_log_warn(event, "%s", msg);
#else
    fprintf(stderr, "qdrop-gpu: warning: %s (%s)\n", msg, event);
#endif
}

void qd_dataset_free(qd_dataset *ds) {
    if (!ds) return;
    if (ds->paths)
        for (int i = 0; i < ds->n; i++) free(ds->paths[i]);
    if (ds->class_names)
        for (int i = 0; i < ds->nclasses; i++) free(ds->class_names[i]);
    free(ds->paths);
    free(ds->class_names);
    free(ds->x);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

void qd_data_options_from_config(const qd_config *cfg, qd_data_options *o) {
    memset(o, 0, sizeof *o);
    o->preprocess = cfg->preprocess;
    for (int i = 0; i < 3; i++) {
        o->mean[i] = cfg->mean[i];
        o->std[i] = cfg->std[i];
    }
    o->input_size = cfg->input_size;
    o->resize_size = cfg->resize_size;
    o->skip_corrupt = cfg->skip_corrupt;
    o->threads = cfg->threads;
    o->seed = cfg->seed;
}

/* splitmix64 (Steele, Lea, Flood 2014): a simple, well-mixed 64-bit sequence. */
static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, bound) without modulo bias (rejection). */
static uint64_t uniform_below(uint64_t *s, uint64_t bound) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t r;
    do r = splitmix64(s);
    while (r >= limit);
    return r % bound;
}

/* Full permutation by a forward Fisher-Yates: perm[i] is swapped with a uniform j in [i, n). */
static void permute(int n, uint64_t seed, int *perm) {
    uint64_t s = seed;
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = 0; i + 1 < n; i++) {
        int j = i + (int)uniform_below(&s, (uint64_t)(n - i));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

void qd_sample_indices(int n, int k, uint64_t seed, int *idx) {
    if (n <= 0 || k <= 0) return;
    int *perm = malloc(sizeof(int) * (size_t)n);
    if (!perm) { /* tiny fallback: first k, never reached in practice */
        for (int i = 0; i < k && i < n; i++) idx[i] = i;
        return;
    }
    permute(n, seed, perm);
    memcpy(idx, perm, sizeof(int) * (size_t)(k < n ? k : n));
    free(perm);
}

/* Candidate order: sampled -> permutation; max_images -> evenly spaced; else 0..n-1.
 * *want = how many good images to return. Returns malloc'd order of length n_order. */
static int *candidate_order(int n, const qd_data_options *o, int *n_order, int *want) {
    int *ord = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!ord) return NULL;
    if (o->sample_n > 0) {
        permute(n, o->seed, ord);
        *n_order = n;
        *want = o->sample_n < n ? o->sample_n : n;
    } else if (o->max_images > 0 && o->max_images < n) {
        /* evenly spaced first, then the rest in order, so skipped images are replaced */
        char *used = calloc((size_t)n, 1);
        if (!used) { free(ord); return NULL; }
        int k = 0;
        for (int i = 0; i < o->max_images; i++) {
            int j = (int)((int64_t)i * n / o->max_images);
            ord[k++] = j;
            used[j] = 1;
        }
        for (int j = 0; j < n; j++)
            if (!used[j]) ord[k++] = j;
        free(used);
        *n_order = n;
        *want = o->max_images;
    } else {
        for (int i = 0; i < n; i++) ord[i] = i;
        *n_order = n;
        *want = n;
    }
    return ord;
}

typedef struct decode_job {
    const qd_image_list *list;
    const qd_data_options *o;
    int c, h, w;
    const int *order;      /* list indices to decode, in slot order */
    int nslots;
    float *x;              /* [nslots, c, h, w] */
    int *status;           /* [nslots] qd_status */
    char *skippable;       /* [nslots] 1 when the file itself is unreadable (skip_corrupt applies) */
    char **errs;           /* [nslots] message when status != OK */
    pthread_mutex_t mu;
    int next;              /* next slot to claim */
    int stop_after;        /* first fatal slot seen (no skip_corrupt): later slots may stop */
} decode_job;

static void *decode_worker(void *arg) {
    decode_job *J = arg;
    size_t numel = (size_t)J->c * (size_t)J->h * (size_t)J->w;
    char err[QD_DATA_ERRLEN];
    for (;;) {
        pthread_mutex_lock(&J->mu);
        int s = J->next++;
        int stop = J->stop_after;
        pthread_mutex_unlock(&J->mu);
        if (s >= J->nslots || s > stop) break;
        const char *path = J->list->paths[J->order[s]];
        qd_image_u8 img;
        /* image sizes the model cannot take are refused from the JPEG header, before decoding */
        int st = qd_jpeg_decode_path_for(path, J->o, J->c, J->h, J->w, &img, err, sizeof err);
        /* A corrupt file may be skipped; a size mismatch, a vanished file or OOM never is. */
        J->skippable[s] = (char)(st == QD_ERR_DATA);
        if (st == QD_ERR_UNSUPPORTED) st = QD_ERR_DATA; /* the size mismatch: a data error all the same */
        if (st == QD_OK) {
            st = qd_preprocess_image_r(&img, path, J->o, J->c, J->h, J->w, J->x + (size_t)s * numel, err, sizeof err);
            qd_image_u8_free(&img);
        }
        J->status[s] = st;
        if (st != QD_OK) {
            J->errs[s] = strdup(err);
            int fatal = !(J->o->skip_corrupt && J->skippable[s]);
            if (fatal) {
                pthread_mutex_lock(&J->mu);
                if (s < J->stop_after) J->stop_after = s;
                pthread_mutex_unlock(&J->mu);
            }
        }
    }
    return NULL;
}

static int default_threads(const qd_data_options *o) {
    int t = o->threads;
    if (t <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        t = nc > 0 ? (int)nc : 2;
        if (t < 2) t = 2;
    }
    return t > 64 ? 64 : t;
}

/* Decode order[0..nslots) into J->x; returns QD_OK and fills status/errs. */
static qd_status decode_slots(decode_job *J, int nthreads) {
    if (nthreads > J->nslots) nthreads = J->nslots;
    if (nthreads < 1) nthreads = 1;
    pthread_t tid[64];
    int started = 0;
    for (int t = 1; t < nthreads; t++) {
        if (pthread_create(&tid[started], NULL, decode_worker, J) != 0) break;
        started++;
    }
    decode_worker(J); /* the calling thread works too */
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    return QD_OK;
}

qd_status qd_dataset_load_folder(const char *root, const qd_data_options *o, int c, int h, int w, qd_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    if (c <= 0 || h <= 0 || w <= 0)
        return qd_errorf(QD_ERR_INTERNAL, "%s: bad expected input shape %dx%dx%d", root, c, h, w);
    qd_image_list L;
    QD_TRY(qd_imagefolder_list(root, &L));
    int n_order = 0, want = 0;
    int *order = candidate_order(L.n, o, &n_order, &want);
    size_t numel = (size_t)c * (size_t)h * (size_t)w;
    float *x = order ? malloc(sizeof(float) * numel * (size_t)(want > 0 ? want : 1)) : NULL;
    int *labels = malloc(sizeof(int) * (size_t)(want > 0 ? want : 1));
    char **paths = calloc((size_t)(want > 0 ? want : 1), sizeof(char *));
    if (!order || !x || !labels || !paths) {
        free(order); free(x); free(labels); free(paths);
        qd_image_list_free(&L);
        return qd_errorf(QD_ERR_INTERNAL, "out of host memory loading %d images of %dx%dx%d from %s", want, c, h, w, root);
    }
    int nthreads = default_threads(o);
    int good = 0, pos = 0, nskipped = 0;
    qd_status st = QD_OK;
    /* Decode batches of the candidates still needed into the next free output slots; with
     * skip_corrupt, skipped images are replaced by the next candidates until want are found. */
    while (good < want && pos < n_order && st == QD_OK) {
        int need = want - good;
        int nslots = need < n_order - pos ? need : n_order - pos;
        decode_job J;
        memset(&J, 0, sizeof J);
        J.list = &L; J.o = o; J.c = c; J.h = h; J.w = w;
        J.order = order + pos;
        J.nslots = nslots;
        J.x = x + (size_t)good * numel;
        J.status = calloc((size_t)nslots, sizeof(int));
        J.errs = calloc((size_t)nslots, sizeof(char *));
        J.skippable = calloc((size_t)nslots, 1);
        J.stop_after = nslots;
        if (!J.status || !J.errs || !J.skippable || pthread_mutex_init(&J.mu, NULL) != 0) {
            free(J.status); free(J.errs); free(J.skippable);
            st = qd_errorf(QD_ERR_INTERNAL, "out of host memory");
            break;
        }
        decode_slots(&J, nthreads);
        pthread_mutex_destroy(&J.mu);
        /* compact in slot order */
        for (int s = 0; s < nslots; s++) {
            int li = J.order[s];
            if (st != QD_OK) break;
            if (J.status[s] == QD_OK) {
                float *dst = x + (size_t)good * numel;
                float *src = J.x + (size_t)s * numel;
                if (dst != src) memmove(dst, src, sizeof(float) * numel);
                labels[good] = L.labels[li];
                paths[good] = strdup(L.paths[li]);
                good++;
            } else {
                if (o->skip_corrupt && J.skippable[s]) {
                    char msg[QD_DATA_ERRLEN + 32];
                    snprintf(msg, sizeof msg, "skipping %s", J.errs[s]);
                    qd_data_warn("image_skipped", msg);
                    nskipped++;
                } else {
                    st = qd_errorf((qd_status)J.status[s], "%s",
                                   J.errs[s] ? J.errs[s] : "image decoding failed (out of memory)");
                }
            }
        }
        for (int s = 0; s < nslots; s++) free(J.errs[s]);
        free(J.errs);
        free(J.status);
        free(J.skippable);
        pos += nslots;
    }
    free(order);
    if (st == QD_OK && good == 0)
        st = qd_errorf(QD_ERR_DATA, "%s: no readable JPEG images (%d skipped as corrupt)", root, nskipped);
    if (st != QD_OK) {
        for (int i = 0; i < good; i++) free(paths[i]);
        free(paths); free(x); free(labels);
        qd_image_list_free(&L);
        return st;
    }
    ds->n = good;
    ds->c = c; ds->h = h; ds->w = w;
    ds->x = x;
    ds->labels = labels;
    ds->paths = paths;
    ds->nclasses = L.nclasses;
    ds->class_names = L.class_names;
    L.class_names = NULL;
    L.nclasses = 0;
    qd_image_list_free(&L);
    return QD_OK;
}

static int ends_with_npy(const char *p) {
    size_t n = strlen(p);
    return n >= 4 && (strcmp(p + n - 4, ".npy") == 0 || strcmp(p + n - 4, ".NPY") == 0);
}

qd_status qd_dataset_load_npy(const char *x_path, const char *labels_path, int c, int h, int w, qd_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    qd_npy X, Y;
    memset(&Y, 0, sizeof Y);
    QD_TRY(qd_npy_load(x_path, &X));
    if (X.dtype != QD_DT_FLOAT) {
        qd_npy_free(&X);
        return qd_errorf(QD_ERR_DATA, "%s: input tensor must be float32 or float64 (preprocessed), got an integer array",
                         x_path);
    }
    if (X.ndim != 4 || X.dims[1] != c || X.dims[2] != h || X.dims[3] != w || X.dims[0] <= 0 || X.dims[0] > INT32_MAX) {
        char shp[128];
        int k = 0;
        shp[0] = 0;
        for (int i = 0; i < X.ndim && k < (int)sizeof shp - 24; i++)
            k += snprintf(shp + k, sizeof shp - (size_t)k, "%s%lld", i ? ", " : "", (long long)X.dims[i]);
        qd_npy_free(&X);
        return qd_errorf(QD_ERR_DATA, "%s: array shape (%s) does not match the model input [N, %d, %d, %d]", x_path, shp,
                         c, h, w);
    }
    int n = (int)X.dims[0];
    /* Calibration and evaluation tensors are preprocessed pixels: a NaN or Inf is a broken file
     * (it would only surface later as a numerical fault in reconstruction, or not at all). */
    {
        size_t per = (size_t)c * (size_t)h * (size_t)w, total = per * (size_t)n;
        for (size_t i = 0; i < total; i++) {
            if (!isfinite(X.f[i])) {
                size_t e = i % per;
                qd_status r = qd_errorf(QD_ERR_DATA, "%s: sample %zu contains %s at element %zu (channel %zu, y %zu, x %zu)",
                                        x_path, i / per, isnan(X.f[i]) ? "NaN" : "Inf", e, e / ((size_t)h * (size_t)w),
                                        e / (size_t)w % (size_t)h, e % (size_t)w);
                qd_npy_free(&X);
                return r;
            }
        }
    }
    int *labels = NULL;
    if (labels_path && labels_path[0]) {
        qd_status st = qd_npy_load(labels_path, &Y);
        if (st != QD_OK) { qd_npy_free(&X); return st; }
        const char *why = NULL;
        if (Y.dtype != QD_DT_INT64) why = "labels must be an integer array";
        else if (!(Y.ndim == 1 || (Y.ndim == 2 && Y.dims[1] == 1)) || Y.dims[0] != n) why = "labels must have shape [N]";
        if (why) {
            qd_status r = qd_errorf(QD_ERR_DATA, "%s: %s matching %s (N = %d), got %d-D with %lld elements", labels_path,
                                    why, x_path, n, Y.ndim, (long long)Y.numel);
            qd_npy_free(&X); qd_npy_free(&Y);
            return r;
        }
        labels = malloc(sizeof(int) * (size_t)n);
        if (!labels) { qd_npy_free(&X); qd_npy_free(&Y); return qd_errorf(QD_ERR_INTERNAL, "out of host memory"); }
        for (int i = 0; i < n; i++) {
            if (Y.i[i] < 0 || Y.i[i] > INT32_MAX) {
                qd_status r = qd_errorf(QD_ERR_DATA, "%s: label %lld at index %d is negative or too large", labels_path,
                                        (long long)Y.i[i], i);
                free(labels); qd_npy_free(&X); qd_npy_free(&Y);
                return r;
            }
            labels[i] = (int)Y.i[i];
        }
        qd_npy_free(&Y);
    }
    ds->n = n;
    ds->c = c; ds->h = h; ds->w = w;
    ds->x = X.f;
    ds->labels = labels;
    return QD_OK;
}

/* Keep rows idx[0..k) of ds (in that order). */
static qd_status dataset_select(qd_dataset *ds, const int *idx, int k) {
    size_t numel = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    float *x = malloc(sizeof(float) * numel * (size_t)(k > 0 ? k : 1));
    int *lab = ds->labels ? malloc(sizeof(int) * (size_t)(k > 0 ? k : 1)) : NULL;
    if (!x || (ds->labels && !lab)) { free(x); free(lab); return qd_errorf(QD_ERR_INTERNAL, "out of host memory"); }
    for (int i = 0; i < k; i++) {
        memcpy(x + (size_t)i * numel, ds->x + (size_t)idx[i] * numel, sizeof(float) * numel);
        if (lab) lab[i] = ds->labels[idx[i]];
    }
    free(ds->x);
    free(ds->labels);
    ds->x = x;
    ds->labels = lab;
    ds->n = k;
    return QD_OK;
}

qd_status qd_dataset_load(const char *path, const char *labels_path, const qd_data_options *o, int c, int h, int w,
                          qd_dataset *ds) {
    if (!ends_with_npy(path)) return qd_dataset_load_folder(path, o, c, h, w, ds);
    QD_TRY(qd_dataset_load_npy(path, labels_path, c, h, w, ds));
    int n = ds->n, k = 0;
    int *idx = NULL;
    if (o->sample_n > 0 && o->sample_n <= n) {
        /* same permutation as for a folder of n images */
        k = o->sample_n;
        idx = malloc(sizeof(int) * (size_t)k);
        if (idx) qd_sample_indices(n, k, o->seed, idx);
    } else if (o->sample_n > 0) {
        k = n;
        idx = malloc(sizeof(int) * (size_t)k);
        if (idx) qd_sample_indices(n, k, o->seed, idx);
    } else if (o->max_images > 0 && o->max_images < n) {
        k = o->max_images;
        idx = malloc(sizeof(int) * (size_t)k);
        if (idx)
            for (int i = 0; i < k; i++) idx[i] = (int)((int64_t)i * n / k);
    } else {
        return QD_OK;
    }
    if (!idx) { qd_dataset_free(ds); return qd_errorf(QD_ERR_INTERNAL, "out of host memory"); }
    qd_status st = dataset_select(ds, idx, k);
    free(idx);
    if (st != QD_OK) qd_dataset_free(ds);
    return st;
}
