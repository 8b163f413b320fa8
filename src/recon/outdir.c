/* src/recon/outdir.c: lock, clean, stage and publish the outputs of a run (outdir.h). */
#include "recon/outdir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qdrop/fsutil.h"
#include "qdrop/log.h"

/* Everything a run writes into the output directory, besides run.log (appended: one "start"
 * event per run) and the lock file. A run removes these at its start so that a run that fails
 * never leaves a previous run's results beside its own files. */
static const char *const k_outputs[] = {"results.json", "model_qdq.onnx", "encodings.json", "predictions.csv",
                                        "resolved_config.json", "logits_fp32.npy", "logits_quant.npy",
                                        "report.html", "report.md"};
#define K_CHECKPOINT "checkpoint.bin"
#define K_PLOTS "plots"

static qd_status remove_file(const char *dir, const char *name) {
    char p[QD_PATH_MAX + 128];
    QD_TRY(qd_path_join(p, sizeof p, dir, name));
    struct stat sb;
    if (lstat(p, &sb) != 0) return QD_OK;
    if (S_ISDIR(sb.st_mode))
        return qd_errorf(QD_ERR_IO, "%s: is a directory where qdrop-gpu writes an output file; remove it or choose another --out", p);
    if (unlink(p) != 0 && errno != ENOENT)
        return qd_errorf(QD_ERR_IO, "cannot remove the previous run's %s: %s", p, strerror(errno));
    return QD_OK;
}

/* "<output>.tmp.<pid>": a temporary file of a killed run (always partial) */
static int is_leftover_tmp(const char *n) {
    const char *t = strstr(n, ".tmp.");
    if (!t || !t[5]) return 0;
    for (const char *p = t + 5; *p; p++) if (*p < '0' || *p > '9') return 0;
    size_t base = (size_t)(t - n);
    for (size_t i = 0; i < sizeof k_outputs / sizeof *k_outputs; i++)
        if (strlen(k_outputs[i]) == base && strncmp(n, k_outputs[i], base) == 0) return 1;
    return (base == strlen(K_CHECKPOINT) && strncmp(n, K_CHECKPOINT, base) == 0) ||
           (base == strlen("run.log") && strncmp(n, "run.log", base) == 0);
}

static qd_status remove_stale(const qd_outdir *od, int resume) {
    for (size_t i = 0; i < sizeof k_outputs / sizeof *k_outputs; i++) QD_TRY(remove_file(od->dir, k_outputs[i]));
    if (!resume) QD_TRY(remove_file(od->dir, K_CHECKPOINT));
    QD_TRY(qd_remove_tree(od->stage));
    DIR *d = opendir(od->dir);
    if (!d) return qd_errorf(QD_ERR_IO, "cannot read %s: %s", od->dir, strerror(errno));
    qd_status st = QD_OK;
    struct dirent *de;
    while (st == QD_OK && (de = readdir(d)) != NULL)
        if (is_leftover_tmp(de->d_name)) st = remove_file(od->dir, de->d_name);
    closedir(d);
    if (st != QD_OK) return st;
    /* plots/: the loss curves of the previous run (files directly inside; the directory goes when
     * nothing else is in it) */
    char pd[QD_PATH_MAX + 16];
    QD_TRY(qd_path_join(pd, sizeof pd, od->dir, K_PLOTS));
    struct stat sb;
    if (lstat(pd, &sb) == 0 && S_ISDIR(sb.st_mode) && (d = opendir(pd)) != NULL) {
        while (st == QD_OK && (de = readdir(d)) != NULL) {
            char f[QD_PATH_MAX + 300];
            if (snprintf(f, sizeof f, "%s/%s", pd, de->d_name) >= (int)sizeof f) continue;
            if (lstat(f, &sb) == 0 && !S_ISDIR(sb.st_mode)) st = remove_file(pd, de->d_name);
        }
        closedir(d);
        (void)rmdir(pd); /* ENOTEMPTY: the user's own files stay */
    } else if (lstat(pd, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        st = remove_file(od->dir, K_PLOTS);
    }
    return st;
}

qd_status qd_outdir_check_model(const qd_config *cfg) {
    int within = 0;
    QD_TRY(qd_path_within(cfg->model_path, cfg->out_dir, &within));
    if (within)
        return qd_errorf(QD_ERR_CONFIG, "output.dir (--out) %s contains the input model %s: a run replaces the outputs "
                         "of earlier runs there; choose a directory that does not hold the model",
                         cfg->out_dir, cfg->model_path);
    return QD_OK;
}

qd_status qd_outdir_open(qd_outdir *od, const qd_config *cfg, int resume) {
    memset(od, 0, sizeof *od);
    od->lock_fd = -1;
    if (!cfg->out_dir[0]) return qd_errorf(QD_ERR_CONFIG, "output.dir (--out): empty path");
    snprintf(od->dir, sizeof od->dir, "%s", cfg->out_dir);
    QD_TRY(qd_path_join(od->stage, sizeof od->stage, od->dir, QD_OUTDIR_STAGE));
    QD_TRY(qd_mkdir_p(od->dir));
    /* after mkdir: the directory exists, so links and ".." in the path resolve */
    QD_TRY(qd_outdir_check_model(cfg));
    QD_TRY(qd_dir_lock(od->dir, QD_OUTDIR_LOCK, &od->lock_fd));
    qd_status st = remove_stale(od, resume);
    if (st == QD_OK && mkdir(od->stage, 0777) != 0)
        st = qd_errorf(QD_ERR_IO, "cannot create the staging directory %s: %s", od->stage, strerror(errno));
    if (st != QD_OK) {
        qd_dir_unlock(od->lock_fd);
        od->lock_fd = -1;
    }
    return st;
}

qd_status qd_outdir_publish(qd_outdir *od) {
    return qd_publish_dir(od->stage, od->dir, "results.json");
}

void qd_outdir_close(qd_outdir *od) {
    if (od->lock_fd < 0) return;
    int had_error = qd_error_message()[0] != 0;  /* a failed run's message must survive */
    if (qd_remove_tree(od->stage) != QD_OK && !had_error) {
        qd_log_warn("staging_left", "%s", qd_error_message());
        qd_error_clear();
    }
    qd_dir_unlock(od->lock_fd);
    od->lock_fd = -1;
}
