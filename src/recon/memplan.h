/* src/recon/memplan.h: the memory plan of a run (docs/memory.md) — peak host and device memory
 * per phase, which unit caches the host-memory budget keeps in memory and which it spills to
 * disk, and whether the run can fit at all. Computed from shapes alone, before any forward:
 * --dry-run prints it, a real run refuses (exit 75) a plan that cannot fit before computing. */
#ifndef QD_RECON_MEMPLAN_H
#define QD_RECON_MEMPLAN_H

#include <stdint.h>
#include <stdio.h>

#include "recon/recon.h"

/* Images per calibration forward (src/recon/calib.c): the batches the caches are built and
 * advanced in, and so the pages of a spilled cache one op touches. */
#define QD_CALIB_BATCH 128

typedef struct qd_mem_plan_in {
    const qd_config *cfg;
    const qd_graph *g;
    const qd_unit_spec *units;
    int nunits;
    int ncal, nval;
    int64_t image_numel;
    int reconstruct, layerwise, fp_input;  /* fp_input: a second (FP) input cache (QDrop's drop) */
    int cuda;                              /* the device is CUDA: caches go to device memory first */
} qd_mem_plan_in;

#define QD_MEM_MAX_PHASES 8

typedef struct qd_mem_phase {
    const char *name;
    int64_t host, device;   /* peak bytes (device: CUDA only) */
    int64_t cache, spilled; /* unit caches in this phase: all of them, and the part spilled */
} qd_mem_phase;

typedef struct qd_mem_plan {
    int64_t budget;          /* process.host_memory_budget, resolved (bytes) */
    int budget_auto;         /* 1 when the default (half the memory) */
    int64_t machine;         /* physical memory, or the cgroup limit when lower */
    int64_t window;          /* bytes of spilled pages one op maps in: reserved inside the budget */
    int window_unit;
    int64_t cache_budget;    /* budget - window: caches kept in memory (the backend's limit) */
    int64_t cache_peak;      /* largest set of live caches */
    int cache_peak_unit;     /* -1 when the range-search buffer is the largest */
    int64_t spill_peak;      /* the most bytes in spill files at once */
    int spill_unit;
    int64_t disk_free;       /* of the spill directory (-1 unknown) */
    int64_t cache_max;       /* the largest single cache (one spill file) */
    int cache_max_unit;
    int64_t file_limit;      /* RLIMIT_FSIZE (ulimit -f), -1 none */
    int64_t loaded;          /* resident memory measured once the model and images are loaded */
    int64_t overhead;        /* peak host memory besides the caches */
    int64_t *unit_cache;     /* [nunits] live cache bytes while unit i runs (malloc'd) */
    int nphases;
    qd_mem_phase phases[QD_MEM_MAX_PHASES];
    char spill_dir[4096];
} qd_mem_plan;

/* process.host_memory_budget resolved: the configured bytes, or half of the machine's memory
 * (physical memory, or the cgroup limit when lower) when 0 ("auto"). */
int64_t qd_host_memory_budget(const qd_config *cfg, int *is_auto, int64_t *machine);

QD_MUST_USE qd_status qd_mem_plan_make(const qd_mem_plan_in *in, qd_mem_plan *out);
void qd_mem_plan_free(qd_mem_plan *p);
/* The table --dry-run prints. */
void qd_mem_plan_print(const qd_mem_plan *p, const qd_mem_plan_in *in, FILE *out);
/* QD_ERR_DEVICE_OOM (exit 75) with one line naming the unit, the bytes and the budget when the
 * plan cannot fit even with spilling: a budget below the streaming window, or a spill larger than
 * the free space of the output directory's file system. */
QD_MUST_USE qd_status qd_mem_plan_check(const qd_mem_plan *p, const qd_mem_plan_in *in);
/* run.log event "memory" at the end of a run: peak RSS (getrusage) and the backend's cache
 * peaks in memory and on disk, next to the plan. */
void qd_mem_log_peak(const qd_mem_plan *p, const qd_backend *b);

#endif
