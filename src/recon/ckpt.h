/* src/recon/ckpt.h: unit-granular checkpoints (see ckpt.c). */
#ifndef QD_CKPT_H
#define QD_CKPT_H
#include <stddef.h>
#include <stdint.h>
#include "recon/recon.h"
uint64_t qd_fnv1a64(const void *data, size_t n, uint64_t h);
QD_MUST_USE qd_status qd_ckpt_save(const char *path, const qd_graph *g, uint64_t cfg_hash, uint64_t model_hash,
                                   int units_done, const qd_unit_report *reps, int nreps);
QD_MUST_USE qd_status qd_ckpt_load(const char *path, qd_graph *g, uint64_t cfg_hash, uint64_t model_hash,
                                   int *units_done, qd_unit_report *reps, int maxreps, int *nreps);
#endif
