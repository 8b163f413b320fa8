/* src/recon/inputs.c: check that a run's model and data exist before anything is loaded, and
 * when they do not, say how to get them (the paper configs point at models/<arch>.onnx and
 * data/imagenet/{train,val}, which a fresh checkout does not have). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "recon/recon.h"

/* torchvision architectures tools/export_onnx.py exports, by the model file's stem */
static const char *const EXPORTABLE[] = {"resnet18", "resnet50", "mobilenet_v2", "regnet_x_600mf",
                                         "regnet_x_3_2gf", "mnasnet1_0", NULL};

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void stem_of(const char *path, char *stem, size_t n) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(stem, n, "%s", base);
    char *dot = strrchr(stem, '.');
    if (dot) *dot = 0;
}

qd_status qd_check_run_inputs(const qd_config *cfg) {
    if (strcmp(cfg->model_type, "onnx") != 0) return QD_OK; /* BERT directories: their own messages */
    if (cfg->model_path[0] && !exists(cfg->model_path)) {
        char stem[QD_PATH_MAX];
        stem_of(cfg->model_path, stem, sizeof stem);
        for (int i = 0; EXPORTABLE[i]; i++)
            if (strcmp(stem, EXPORTABLE[i]) == 0)
                return qd_errorf(QD_ERR_NOINPUT,
                                 "%s: cannot open the model: no such file; export it with `python3 tools/export_onnx.py %s "
                                 "--pretrained --out %s` (needs torch and torchvision; see configs/imagenet/README.md)",
                                 cfg->model_path, stem, cfg->model_path);
        return qd_errorf(QD_ERR_NOINPUT,
                         "%s: cannot open the model: no such file (model.path; tools/export_onnx.py exports "
                         "torchvision networks to ONNX, see README \"ImageNet models\")",
                         cfg->model_path);
    }
    /* other data: the loaders' own messages name the file and what is wrong with it */
    if (cfg->preprocess != QD_PRE_IMAGENET) return QD_OK;
    const char *paths[2] = {cfg->calib_path, cfg->eval_enabled ? cfg->val_path : ""};
    const char *keys[2] = {"data.calib_path", "data.val_path"};
    for (int k = 0; k < 2; k++) {
        if (!paths[k][0] || exists(paths[k])) continue;
        return qd_errorf(QD_ERR_NOINPUT,
                         "%s: image folder not found (%s); ImageNet is expected as class sub-folders: "
                         "train/<wnid>/*.JPEG (quant.calibrate images are sampled from it) and "
                         "val/<wnid>/*.JPEG (the 50,000 validation images sorted into class folders); see "
                         "configs/imagenet/README.md",
                         paths[k], keys[k]);
    }
    return QD_OK;
}
