/* TEMPORARY: replaced by src/recon/run.c */
/* Lets the CLI link and its tests run before the engine lands: writes the resolved config and
 * run.log like the real qd_run, then stops. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qdrop/fsutil.h"
#include "qdrop/log.h"
#include "qdrop/qdrop.h"

qd_status qd_run(qd_config *cfg, const qd_run_options *opt) {
    char path[QD_PATH_MAX + 32];
    if (opt->dry_run) {
        printf("dry run: model %s, mode %s, W%dA%d, %d iterations per unit (plan not available yet)\n", cfg->model_path,
               qd_mode_name(cfg->mode), cfg->w_qconfig.bit, cfg->a_qconfig.bit, cfg->recon.iters);
        return QD_OK;
    }
    QD_TRY(qd_mkdir_p(cfg->out_dir));
    snprintf(path, sizeof path, "%s/run.log", cfg->out_dir);
    QD_TRY(qd_log_open(path));
    char *js = qd_config_to_json(cfg);
    qd_status st = js ? QD_OK : qd_errorf(QD_ERR_INTERNAL, "cannot serialise the resolved config");
    snprintf(path, sizeof path, "%s/resolved_config.json", cfg->out_dir);
    if (st == QD_OK) st = qd_write_file_atomic(path, js, strlen(js));
    free(js);
    if (st == QD_OK) qd_log_info("start", "qdrop-gpu %s: engine not built yet; wrote %s", qd_version(), path);
    qd_log_close();
    return st;
}

qd_status qd_inspect(const char *model_path, const qd_config *cfg) {
    (void)cfg;
    return qd_errorf(QD_ERR_INTERNAL, "--inspect %s: not built yet", model_path);
}
