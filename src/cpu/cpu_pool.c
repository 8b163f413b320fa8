/* src/cpu/cpu_pool.c: a small persistent pthread pool with a chunked parallel-for.
 * Workers sleep on a condition variable between jobs (they must not spin: the machine has two
 * cores shared with OpenBLAS and the rest of the process). The calling thread works as tid 0. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "cpu/cpu_internal.h"

struct qd_cpu_pool {
    int nthreads;                 /* including the caller */
    pthread_t *tids;
    pthread_mutex_t mu;
    pthread_cond_t cv_job, cv_done;
    uint64_t generation;          /* bumped per job */
    int active;                   /* workers still running the current job */
    int quit;
    /* current job */
    qd_cpu_fn fn;
    void *ctx;
    int64_t n, grain, nchunks;
    atomic_llong next;
};

typedef struct { qd_cpu_pool *p; int tid; } worker_arg;

static void run_chunks(qd_cpu_pool *p, int tid) {
    for (;;) {
        long long k = atomic_fetch_add(&p->next, 1);
        if (k >= p->nchunks) break;
        int64_t b = (int64_t)k * p->grain;
        int64_t e = b + p->grain;
        if (e > p->n) e = p->n;
        p->fn(p->ctx, b, e, tid);
    }
}

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    qd_cpu_pool *p = wa->p;
    int tid = wa->tid;
    free(wa);
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->cv_job, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_chunks(p, tid);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->cv_done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

qd_cpu_pool *qd_cpu_pool_create(int nthreads) {
    if (nthreads < 1) nthreads = 1;
    qd_cpu_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->nthreads = nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_job, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    atomic_init(&p->next, 0);
    if (nthreads > 1) {
        p->tids = calloc((size_t)nthreads, sizeof(pthread_t));
        if (!p->tids) { free(p); return NULL; }
        for (int t = 1; t < nthreads; t++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa) { p->nthreads = t; break; }
            wa->p = p; wa->tid = t;
            if (pthread_create(&p->tids[t], NULL, worker_main, wa) != 0) { free(wa); p->nthreads = t; break; }
        }
    }
    return p;
}

void qd_cpu_pool_destroy(qd_cpu_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->cv_job);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->nthreads; t++) pthread_join(p->tids[t], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_job);
    pthread_cond_destroy(&p->cv_done);
    free(p->tids);
    free(p);
}

int qd_cpu_pool_threads(const qd_cpu_pool *p) { return p ? p->nthreads : 1; }

void qd_cpu_parallel_for(qd_cpu_pool *p, int64_t n, int64_t grain, qd_cpu_fn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t nchunks = (n + grain - 1) / grain;
    if (!p || p->nthreads <= 1 || nchunks == 1) {
        for (int64_t k = 0; k < nchunks; k++) {
            int64_t b = k * grain, e = b + grain;
            fn(ctx, b, e > n ? n : e, 0);
        }
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn; p->ctx = ctx; p->n = n; p->grain = grain; p->nchunks = nchunks;
    atomic_store(&p->next, 0);
    p->active = p->nthreads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->cv_job);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->active > 0) pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
