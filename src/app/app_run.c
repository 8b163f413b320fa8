/* src/app/app_run.c: qd_run, the top of the library: checks the inputs, opens the output
 * directory and picks the pipeline for the model type (ONNX image classifier: src/recon/run.c;
 * HuggingFace BERT: src/bert/bert_run.c). It sits above both, so neither calls the other. */
#include <string.h>

#include "qdrop/bert.h"
#include "qdrop/interrupt.h"
#include "qdrop/qdrop.h"
#include "recon/outdir.h"
#include "recon/recon.h"

qd_status qd_run(qd_config *cfg, const qd_run_options *opt) {
    qd_outdir od;
    memset(&od, 0, sizeof od);
    od.lock_fd = -1;
    qd_range_search_set_method(cfg->range_search == 1 ? QD_RANGE_EXACT : QD_RANGE_FAST);
    /* missing model or data: say how to get them before creating any output */
    QD_TRY(qd_check_run_inputs(cfg));
    /* the output directory: refused when it holds the model; locked, cleaned and staged for a
     * real run (recon/outdir.h) */
    qd_status st = opt->dry_run ? qd_outdir_check_model(cfg) : qd_outdir_open(&od, cfg, opt->resume);
    if (st != QD_OK) return st;
    if (strcmp(cfg->model_type, "bert") == 0) {
        /* HuggingFace BERT directories run the per-encoder-layer pipeline (src/bert/bert_run.c);
         * it does not poll for signals, so SIGINT/SIGTERM keep their default action there */
        st = qd_bert_run(cfg, opt);
    } else {
        int handlers = !opt->dry_run && qd_interrupt_install() == 0;
        st = qd_run_images(cfg, opt, &od);
        if (handlers) qd_interrupt_restore();
    }
    qd_outdir_close(&od);
    return st;
}
