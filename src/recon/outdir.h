/* src/recon/outdir.h: the output directory of a run (README "Outputs", docs/reliability.md
 * "Output directory").
 *
 *   qd_outdir od;
 *   QD_TRY(qd_outdir_open(&od, cfg, resume));   // mkdir -p, refuse a directory holding the model,
 *                                               // exclusive lock, remove a previous run's outputs,
 *                                               // fresh staging directory od.stage
 *   ... write results.json, model_qdq.onnx, ... into od.stage ...
 *   st = qd_outdir_publish(&od);                // all staged files into od.dir, results.json last
 *   qd_outdir_close(&od);                       // remove the staging directory, release the lock
 *
 * run.log, resolved_config.json and checkpoint.bin describe the run in progress and are written
 * into od.dir directly. */
#ifndef QD_OUTDIR_H
#define QD_OUTDIR_H

#include "qdrop/config.h"
#include "qdrop/status.h"

#define QD_OUTDIR_LOCK ".qdrop.lock"
#define QD_OUTDIR_STAGE ".qdrop-staging"

typedef struct qd_outdir {
    char dir[QD_PATH_MAX];
    char stage[QD_PATH_MAX];   /* dir/.qdrop-staging (a longer path is refused) */
    int lock_fd;   /* -1 when not locked */
} qd_outdir;

/* Refuse (QD_ERR_CONFIG, exit 78) an output directory that is the model's directory or holds
 * the model anywhere below it: cleaning a previous run's outputs there would be writing beside
 * the input. Also for --dry-run (the directory may not exist yet: then nothing is inside). */
QD_MUST_USE qd_status qd_outdir_check_model(const qd_config *cfg);

QD_MUST_USE qd_status qd_outdir_open(qd_outdir *od, const qd_config *cfg, int resume);
QD_MUST_USE qd_status qd_outdir_publish(qd_outdir *od);
void qd_outdir_close(qd_outdir *od);

#endif
