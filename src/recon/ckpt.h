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
/* qd_ckpt_load on a checkpoint already in memory (n bytes at data; path only names it in
 * messages). Everything is validated before g or reps is modified: a wrong hash (config: 78,
 * model: 65), a count, flag or offset out of range for this graph, a non-finite or negative
 * scale, a truncated or over-long file all give QD_ERR_DATA naming the field. maxreps bounds
 * units_done and the number of unit reports. On failure *nreps = 0 and reps hold no memory. */
QD_MUST_USE qd_status qd_ckpt_parse(const void *data, size_t n, const char *path, qd_graph *g, uint64_t cfg_hash,
                                    uint64_t model_hash, int *units_done, qd_unit_report *reps, int maxreps, int *nreps);
#endif
