/* src/recon/recon_stages.c: the reconstruction stages of a run (§9) — what each quant.mode does
 * (qd_mode_plan), the per-unit parameters built from the config, the one NaN-retry wrapper, and
 * the two stage loops over the units: the weight stage (AdaRound + LSQ + drop, or a baseline's
 * variant) and BRECQ's activation stage. Both loops take their unit inputs from one
 * qd_unit_cache (recon/unit_cache.h) and checkpoint after every unit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/escape.h"
#include "core/qmath.h"
#include "qdrop/interrupt.h"
#include "qdrop/log.h"
#include "recon/ckpt.h"
#include "recon/recon.h"
#include "recon/unit_cache.h"

int qd_default_threads(const qd_config *cfg) {
    if (cfg->threads > 0) return cfg->threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* ---- mode table (§9) ---- */
qd_mode_plan qd_mode_plan_for(qd_mode m) {
    qd_mode_plan p;
    memset(&p, 0, sizeof p);
    p.reconstruct = 1;
    p.upstream = QD_EXEC_QUANT;
    switch (m) {
    case QD_MODE_QDROP: p.ranges_before = 1; p.range_mode = QD_EXEC_FP; p.act_in_unit = 1; p.learn_scales = 1; p.drop = 1; break;
    case QD_MODE_NODROP: p.ranges_before = 1; p.range_mode = QD_EXEC_FP; p.act_in_unit = 1; p.learn_scales = 1; break;
    case QD_MODE_CASE1: p.ranges_after_all = 1; p.upstream = QD_EXEC_WQ_ONLY; break;
    case QD_MODE_CASE2: p.ranges_before = 1; p.range_mode = QD_EXEC_AQ_ONLY; p.range_progressive = 1; p.act_in_unit = 1; break;
    case QD_MODE_CASE3: p.ranges_per_unit_after = 1; break;
    case QD_MODE_ADAROUND: p.ranges_after_all = 1; p.upstream = QD_EXEC_WQ_ONLY; p.layerwise = 1; break;
    case QD_MODE_BRECQ: p.brecq_act = 1; p.upstream = QD_EXEC_WQ_ONLY; break;
    case QD_MODE_NEAREST: p.ranges_before = 1; p.range_mode = QD_EXEC_FP; p.reconstruct = 0; break;
    }
    return p;
}

/* ---- per-unit parameters ---- */
qd_unit_params qd_unit_params_recon(const qd_config *cfg, const qd_mode_plan *mp) {
    const qd_recon_config *r = &cfg->recon;
    qd_unit_params p;
    memset(&p, 0, sizeof p);
    p.iters = r->iters;
    p.batch_size = r->batch_size;
    p.warm_up = r->warm_up;
    p.b_start = r->b_start;
    p.b_end = r->b_end;
    p.round_weight = r->weight;
    p.lr_v = QD_ADAM_LR_V;
    p.lr_scale = r->scale_lr;
    p.lsq_grad_scale = r->lsq_grad_scale;
    p.train_weights = 1;
    p.train_scales = mp->learn_scales;
    p.act_quant = mp->act_in_unit;
    p.keep_prob = mp->drop ? r->drop_prob : 1.0f;
    p.input_keep_prob = p.keep_prob;
    p.loss_p = 0.0f;
    p.upstream_mode = mp->upstream;
    p.early_stop = r->early_stop;
    p.early_stop_window = r->early_stop_window;
    p.early_stop_min_delta = r->early_stop_min_delta;
    p.log_every = r->log_every;
    return p;
}

/* BRECQ stage 2: LSQ of the unit's activation scales alone (weights fixed at their hard-rounded
 * values, no AdaRound, no drop), inputs and targets from the FP model, loss L_2.4 (§5
 * reduction), Adam lr quant.brecq.act_lr with cosine annealing to 0 over quant.brecq.act_iters,
 * no scale-gradient factor (B has none, §6.3). */
qd_unit_params qd_unit_params_brecq_act(const qd_config *cfg) {
    qd_mode_plan mp;
    memset(&mp, 0, sizeof mp);
    mp.act_in_unit = 1;
    mp.learn_scales = 1;
    mp.upstream = QD_EXEC_FP;   /* "inputs taken from the FP model" */
    qd_unit_params p = qd_unit_params_recon(cfg, &mp);
    p.iters = cfg->brecq.act_iters;
    p.lr_scale = cfg->brecq.act_lr;
    p.lsq_grad_scale = 0;
    p.train_weights = 0;
    p.loss_p = 2.4f;
    return p;
}

/* quant.recon.nan_retries: each retry divides both learning rates by 8 */
qd_unit_params qd_unit_params_retry(const qd_unit_params *base, int attempt) {
    qd_unit_params p = *base;
    float div = (float)(1 << (3 * attempt));
    p.lr_v = base->lr_v / div;
    p.lr_scale = base->lr_scale / div;
    p.attempt = attempt;
    return p;
}

int qd_build_units(const qd_graph *g, int layerwise, qd_unit_spec **out) {
    qd_unit_spec *u = calloc((size_t)(g->nunits + g->nwq + 1), sizeof *u);
    if (!u) return -1;
    int n = 0;
    if (!layerwise) {
        for (int k = 0; k < g->nunits; k++) {
            qd_unit_spec *s = &u[n];
            snprintf(s->name, sizeof s->name, "%s", g->units[k].name ? g->units[k].name : "unit");
            s->node_begin = g->units[k].node_begin; s->node_end = g->units[k].node_end;
            s->input_value = g->units[k].input_value; s->output_value = g->units[k].output_value;
            s->index = n++;
        }
    } else {
        for (int ni = 0; ni < g->nnodes; ni++) {
            const qd_node *nd = &g->nodes[ni];
            if (nd->wq < 0 || nd->unit < 0) continue;
            qd_unit_spec *s = &u[n];
            int end = ni + 1;
            int outv = nd->outputs[0];
            if (end < g->nnodes) {
                const qd_node *nx = &g->nodes[end];
                if ((nx->op == QD_OP_RELU || nx->op == QD_OP_CLIP) && nx->inputs[0] == outv && g->values[outv].nconsumers == 1) {
                    outv = nx->outputs[0];
                    end++;
                }
            }
            char esc[sizeof s->name - 6]; /* "layer " + the escaped node name (untrusted: no control characters) */
            snprintf(s->name, sizeof s->name, "layer %s", qd_escape_text(nd->name, esc, sizeof esc));
            s->node_begin = ni; s->node_end = end;
            s->input_value = nd->inputs[0]; s->output_value = outv;
            s->index = n++;
        }
    }
    *out = u;
    return n;
}

qd_status qd_recon_unit_retrying(qd_recon_ctx *ctx, const qd_unit_spec *u, const qd_unit_params *p, int retries,
                                 const char *stage, qd_unit_report *rep) {
    qd_status st = qd_recon_unit(ctx, u, p, rep);
    for (int attempt = 1; st == QD_ERR_NUMERIC && attempt <= retries; attempt++) {
        qd_log_warn("nan_retry", "%sunit %d: %s; retrying with %s / %d", stage, u->index, qd_error_message(),
                    p->train_weights ? "both learning rates" : "the scale lr", 1 << (3 * attempt));
        qd_error_clear();
        qd_unit_params retry = qd_unit_params_retry(p, attempt);
        st = qd_recon_unit(ctx, u, &retry, rep);
    }
    return st;
}

static qd_status save_progress(const qd_recon_ctx *ctx, const qd_recon_progress *pr, int units_done) {
    QD_TRY(qd_ckpt_save(pr->ckpt_path, ctx->g, pr->cfg_hash, pr->model_hash, units_done, pr->reps, *pr->nreps));
    *pr->ckpt_units = units_done;
    return QD_OK;
}

qd_status qd_recon_weight_stage(qd_recon_ctx *ctx, const qd_mode_plan *mp, const qd_unit_spec *units, int nunits,
                                int units_done, const qd_recon_progress *pr) {
    const qd_config *cfg = ctx->cfg;
    qd_graph *g = ctx->g;
    /* block units form a chain: incremental caches (layer-wise units read values inside blocks) */
    qd_unit_cache cache;
    qd_unit_cache_init(&cache, !mp->layerwise, 0, 0);
    ctx->cache = &cache;
    qd_status st = QD_OK;
    for (int i = units_done; i < nunits && st == QD_OK; i++) {
        const qd_unit_spec *u = &units[i];
        qd_unit_params p = qd_unit_params_recon(cfg, mp);
        if ((st = qd_unit_cache_seek(&cache, ctx, u, p.upstream_mode)) != QD_OK) break;
        ctx->progress_unit = i;
        ctx->progress_nunits = nunits;
        qd_log_info("unit_start", "unit %d/%d: %s", i + 1, nunits, u->name);
        qd_unit_report *rep = &pr->reps[i];
        if ((st = qd_recon_unit_retrying(ctx, u, &p, cfg->recon.nan_retries, "", rep)) != QD_OK) break;
        *pr->nreps = i + 1;
        if (mp->ranges_per_unit_after) {
            /* Case 3: the ranges downstream of this unit, now that its weights are final */
            int *sel = calloc((size_t)g->nact + 1, sizeof(int));
            if (!sel) { st = qd_errorf(QD_ERR_INTERNAL, "out of host memory"); break; }
            for (int a = 0; a < g->nact; a++)
                sel[a] = !g->act[a].initialized && g->act[a].unit >= 0 &&
                         g->nodes[g->values[g->act[a].value].producer].unit >= 0 &&
                         g->values[g->act[a].value].producer < u->node_end;
            st = qd_init_act_ranges(ctx, QD_EXEC_QUANT, sel, cfg->act_calib_samples, 1);
            free(sel);
            if (st != QD_OK) break;
        }
        qd_log_info("unit_done", "unit %d/%d %s: %d iterations, loss %.5g -> %.5g, SQNR %.2f -> %.2f dB, %.1f s",
                    i + 1, nunits, rep->name, rep->iters_run, rep->loss_start, rep->loss_end, rep->sqnr_before_db,
                    rep->sqnr_after_db, rep->seconds);
        if ((st = save_progress(ctx, pr, i + 1)) != QD_OK) break;
        if (qd_interrupted()) { st = QD_ERR_INTERRUPTED; break; }
        if (i + 1 < nunits) qd_unit_cache_advance(&cache, ctx, u, &units[i + 1], p.upstream_mode);
    }
    qd_unit_cache_free(&cache, ctx->b);
    ctx->cache = NULL;
    return st;
}

/* BRECQ stage 2 (docs/algorithm.md §6.2 "B", §6.3 last item, §9 "Original baselines"), after every unit's
 * weights are hard-rounded:
 *   1. activation ranges of all quantizers: one progressive forward of quant.act_calib_samples
 *      images with hard weights and all activations quantized (each quantizer initialised on its
 *      first call, in data-flow order — B's single 64-image forward);
 *   2. per unit, in order: qd_unit_params_brecq_act through the same training loop
 *      (qd_recon_unit), the FP activations at the unit input advanced incrementally.
 * Progress is checkpointed after every unit as units_done = nunits + i + 1, so --resume continues
 * exactly: ranges are recomputed (deterministically) only when no stage-2 unit had finished. */
qd_status qd_brecq_act_stage(qd_recon_ctx *ctx, const qd_unit_spec *units, int nunits, int units_done,
                             const qd_recon_progress *pr) {
    const qd_config *cfg = ctx->cfg;
    qd_graph *g = ctx->g;
    int N = nunits;
    int start = units_done > N ? units_done - N : 0;
    qd_status st = QD_OK;
    if (start == 0) {
        qd_log_info("brecq_act_ranges", "BRECQ stage 2: activation ranges on %d images (hard weights, activations quantized)",
                    cfg->act_calib_samples);
        QD_TRY(qd_init_act_ranges(ctx, QD_EXEC_QUANT, NULL, cfg->act_calib_samples, 1));
    }
    /* one FP path: the quantized-input cache of this stage is the FP model's */
    qd_unit_cache cache;
    qd_unit_cache_init(&cache, 1, 1, 1);
    ctx->cache = &cache;
    for (int i = start; i < N && st == QD_OK; i++) {
        const qd_unit_spec *u = &units[i];
        qd_unit_report *rep = &pr->reps[N + i];
        int nq = 0;
        for (int a = 0; a < g->nact; a++) nq += g->act[a].unit == u->index;
        if (nq == 0) {
            /* nothing to learn in this unit (e.g. a classifier without an output quantizer) */
            memset(rep, 0, sizeof *rep);
            snprintf(rep->name, sizeof rep->name, "act %.120s", u->name);
            rep->nlayers = 0;
        } else {
            qd_unit_params p = qd_unit_params_brecq_act(cfg);
            if ((st = qd_unit_cache_seek(&cache, ctx, u, p.upstream_mode)) != QD_OK) break;
            ctx->progress_unit = i;
            ctx->progress_nunits = N;
            qd_log_info("unit_start", "BRECQ stage 2, unit %d/%d: %s", i + 1, N, u->name);
            if ((st = qd_recon_unit_retrying(ctx, u, &p, cfg->recon.nan_retries, "BRECQ stage 2, ", rep)) != QD_OK) break;
            char nm[sizeof rep->name];
            snprintf(nm, sizeof nm, "act %.120s", rep->name);
            memcpy(rep->name, nm, sizeof nm);
            qd_log_info("unit_done", "BRECQ stage 2, unit %d/%d %s: %d iterations, L_2.4 %.5g -> %.5g, SQNR %.2f -> %.2f dB, %.1f s",
                        i + 1, N, u->name, rep->iters_run, rep->loss_start, rep->loss_end, rep->sqnr_before_db,
                        rep->sqnr_after_db, rep->seconds);
        }
        *pr->nreps = N + i + 1;
        if ((st = save_progress(ctx, pr, N + i + 1)) != QD_OK) break;
        if (qd_interrupted()) { st = QD_ERR_INTERRUPTED; break; }
        if (i + 1 < N) qd_unit_cache_advance(&cache, ctx, u, &units[i + 1], QD_EXEC_FP);
    }
    qd_unit_cache_free(&cache, ctx->b);
    ctx->cache = NULL;
    return st;
}
