/* src/recon/memplan.c: the memory plan of a run (memplan.h, docs/memory.md).
 *
 * What it counts, from the graph's shapes and the run's sizes (float32 everywhere):
 *   loaded     measured: the resident memory once the model and the images are loaded (the
 *              libraries, the graph, the calibration and validation images), the base of every
 *              later phase (at least the model's and the images' bytes);
 *   model      every float constant + the quantized copy of every weight (export holds another);
 *   executor   qd_exec_create's constants, quantized weights, activation slots for the largest
 *              batch and the host staging buffers (src/graph/exec.c);
 *   ranges     per activation quantizer: its input on quant.act_calib_samples images, once as a
 *              cache (alloc_cache: budgeted, spillable) and once as the host copy the search
 *              reads (not spillable);
 *   caches     per unit, the live calibration caches of src/recon/unit_cache.c:
 *              block units keep the quantized and FP activations at the unit input (the running
 *              "cut") and the FP output; advancing the cut to the next unit holds both cuts;
 *              layer-wise units hold their quantized input, FP input (QDrop) and FP output;
 *   training   a unit's batch buffers (activations, gradients, regions) and AdaRound state.
 * The budget bounds the caches; the rest is the fixed overhead printed next to it. */
#define _GNU_SOURCE
#include "recon/memplan.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "qdrop/log.h"

static int64_t read_limit_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char buf[64] = {0};
    int64_t v = -1;
    if (fgets(buf, sizeof buf, f) && buf[0] >= '0' && buf[0] <= '9') v = strtoll(buf, NULL, 10);
    fclose(f);
    return v;
}

int64_t qd_host_memory_budget(const qd_config *cfg, int *is_auto, int64_t *machine) {
    long pages = sysconf(_SC_PHYS_PAGES), ps = sysconf(_SC_PAGESIZE);
    int64_t phys = pages > 0 && ps > 0 ? (int64_t)pages * ps : (int64_t)4 << 30;
    /* a container's limit (cgroup v2, then v1) is the machine this process really has */
    int64_t lim = read_limit_file("/sys/fs/cgroup/memory.max");
    if (lim <= 0) lim = read_limit_file("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    if (lim > 0 && lim < phys) phys = lim;
    if (machine) *machine = phys;
    if (is_auto) *is_auto = cfg->host_memory_budget <= 0;
    return cfg->host_memory_budget > 0 ? cfg->host_memory_budget : phys / 2;
}

/* Resident memory of this process now (VmRSS), -1 when unknown. */
static int64_t rss_now(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    int64_t kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) { kb = strtoll(line + 6, NULL, 10); break; }
    fclose(f);
    return kb >= 0 ? kb * 1024 : -1;
}

static int64_t numel_of(const qd_graph *g, int v) { return v >= 0 ? qd_value_sample_numel(&g->values[v]) : 0; }

/* Free bytes of the file system holding dir, or of its nearest existing ancestor (a dry run's
 * output directory may not exist yet). -1 when unknown. */
static int64_t disk_free(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (;;) {
        struct statvfs s;
        if (statvfs(p, &s) == 0) return (int64_t)s.f_bavail * (int64_t)s.f_frsize;
        if (errno != ENOENT && errno != ENOTDIR) return -1;
        char *slash = strrchr(p, '/');
        if (!slash) return -1;
        if (slash == p) { p[1] = 0; continue; }
        *slash = 0;
    }
}

/* Batch buffers and AdaRound state of one unit's training (recon_unit.c rt_setup). */
static int64_t training_bytes(const qd_graph *g, const qd_unit_spec *u, int B) {
    int64_t t = 0;
    for (int ni = u->node_begin; ni < u->node_end; ni++) {
        const qd_node *n = &g->nodes[ni];
        for (int o = 0; o < n->noutputs; o++) {
            int v = n->outputs[o];
            if (v < 0) continue;
            int64_t s = 4 * (int64_t)B * numel_of(g, v);
            t += g->values[v].act_quant >= 0 ? 4 * s + s / 4 : 2 * s; /* val, grad (+ pre, gpre, region) */
        }
        if (n->wq >= 0) t += 6 * 4 * (int64_t)g->wq[n->wq].channels * g->wq[n->wq].per_channel;
    }
    return t + 4 * (int64_t)B * (numel_of(g, u->input_value) + numel_of(g, u->output_value));
}

qd_status qd_mem_plan_make(const qd_mem_plan_in *in, qd_mem_plan *P) {
    memset(P, 0, sizeof *P);
    const qd_config *cfg = in->cfg;
    const qd_graph *g = in->g;
    P->budget = qd_host_memory_budget(cfg, &P->budget_auto, &P->machine);
    snprintf(P->spill_dir, sizeof P->spill_dir, "%s", cfg->out_dir);
    P->disk_free = disk_free(cfg->out_dir);
    P->cache_peak_unit = -1;
    P->spill_unit = -1;
    P->window_unit = -1;
    P->cache_max_unit = -1;
    struct rlimit rl;
    P->file_limit = getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (int64_t)rl.rlim_cur : -1;
    P->unit_cache = calloc((size_t)in->nunits + 1, sizeof(int64_t));
    if (!P->unit_cache) return qd_errorf(QD_ERR_INTERNAL, "out of host memory");

    int64_t model = 0;
    for (int v = 0; v < g->nvalues; v++)
        if (g->values[v].is_const && g->values[v].fdata) model += 4 * qd_value_numel(&g->values[v]);
    for (int k = 0; k < g->nwq; k++) model += 4 * (int64_t)g->wq[k].channels * g->wq[k].per_channel;
    int64_t images = 4 * in->image_numel * ((int64_t)in->ncal + in->nval);
    int maxb = cfg->eval_batch_size > 128 ? cfg->eval_batch_size : 128;
    if (cfg->recon.batch_size > maxb) maxb = cfg->recon.batch_size;
    int64_t exec = qd_exec_plan_bytes(g, maxb, NULL);
    int nclasses_numel = (int)numel_of(g, g->outputs[0]);
    int64_t logits = 2 * 4 * (int64_t)in->nval * nclasses_numel;
    int nb = in->ncal < QD_CALIB_BATCH ? in->ncal : QD_CALIB_BATCH;

    /* activation ranges: the largest quantizer input, cached and copied to the host */
    int nsamp = cfg->act_calib_samples < in->ncal ? cfg->act_calib_samples : in->ncal;
    int64_t range_buf = 0, range_numel = 0;
    for (int a = 0; a < g->nact; a++) {
        int64_t e = numel_of(g, g->act[a].value);
        if (e > range_numel) range_numel = e;
    }
    range_buf = 4 * (int64_t)nsamp * range_numel;
    P->window = 4 * (int64_t)nb * range_numel;

    /* caches per unit, and the streaming window: one calibration batch of a unit's input and
     * of what it writes (its output, or the next unit's input when the cut advances) */
    int64_t train_peak = 0;
    P->cache_peak = range_buf;
    for (int i = 0; in->reconstruct && i < in->nunits; i++) {
        const qd_unit_spec *u = &in->units[i];
        int64_t fin = numel_of(g, u->input_value), fout = numel_of(g, u->output_value);
        int64_t fnext = i + 1 < in->nunits ? numel_of(g, in->units[i + 1].input_value) : 0;
        int64_t live;
        if (in->layerwise) live = (in->fp_input ? 2 : 1) * fin + fout;
        else live = 2 * fin + (fout > 2 * fnext ? fout : 2 * fnext);
        P->unit_cache[i] = 4 * (int64_t)in->ncal * live;
        if (P->unit_cache[i] > P->cache_peak) { P->cache_peak = P->unit_cache[i]; P->cache_peak_unit = i; }
        int64_t one = 4 * (int64_t)in->ncal * (fin > fout ? (fin > fnext ? fin : fnext) : (fout > fnext ? fout : fnext));
        if (one > P->cache_max) { P->cache_max = one; P->cache_max_unit = i; }
        int64_t w = 4 * (int64_t)nb * (fin + (fout > fnext ? fout : fnext));
        if (w > P->window) { P->window = w; P->window_unit = i; }
        int64_t t = training_bytes(g, u, cfg->recon.batch_size);
        if (t > train_peak) train_peak = t;
    }
    if (range_buf > P->cache_max) { P->cache_max = range_buf; P->cache_max_unit = -1; }
    P->cache_budget = P->budget - P->window;
    if (P->cache_budget < 1) P->cache_budget = 1; /* every cache spills (the check refuses this plan) */
    /* caches are placed in allocation order, each whole in memory or whole in a file: up to one
     * cache's worth of the budget can stay unused, so the bound on disk adds the largest one */
    for (int i = 0; in->reconstruct && i < in->nunits; i++) {
        int64_t sp = P->unit_cache[i] > P->cache_budget && !in->cuda ? P->unit_cache[i] - P->cache_budget + P->cache_max : 0;
        if (sp > P->unit_cache[i]) sp = P->unit_cache[i];
        if (sp > P->spill_peak) { P->spill_peak = sp; P->spill_unit = i; }
    }
    if (!in->cuda && range_buf > P->cache_budget && range_buf - P->cache_budget > P->spill_peak) {
        P->spill_peak = range_buf - P->cache_budget;
        P->spill_unit = -1;
    }

    /* phases: host and device peaks (on the CPU the device is the host). The base is measured:
     * the process as it stands once the model and the images are loaded (libraries included). */
    int64_t base = rss_now();
    if (base < model + images) base = model + images;
    P->loaded = base;
    int64_t dev_exec = in->cuda ? exec : 0, host_exec = in->cuda ? 0 : exec;
    qd_mem_phase *ph = P->phases;
    int n = 0;
    ph[n++] = (qd_mem_phase){"load", base, 0, 0, 0};
    if (in->nval > 0 && cfg->eval_fp32) ph[n++] = (qd_mem_phase){"FP32 evaluation", base + host_exec + logits, dev_exec, 0, 0};
    {
        int64_t inmem = in->cuda ? 0 : (range_buf < P->cache_budget ? range_buf : P->cache_budget);
        ph[n++] = (qd_mem_phase){"activation ranges", base + host_exec + range_buf + inmem, dev_exec + (in->cuda ? range_buf : 0),
                                 range_buf, in->cuda ? 0 : range_buf - inmem};
    }
    if (in->reconstruct && in->nunits > 0) {
        int64_t c = P->cache_peak_unit >= 0 ? P->unit_cache[P->cache_peak_unit] : 0;
        int64_t inmem = in->cuda ? 0 : (c < P->cache_budget ? c : P->cache_budget);
        int64_t resident = inmem + (c > inmem ? P->window : 0);
        int64_t spilled = in->cuda ? 0 : c - inmem;
        ph[n++] = (qd_mem_phase){"unit caches", base + host_exec + resident, dev_exec + (in->cuda ? c : 0), c, spilled};
        ph[n++] = (qd_mem_phase){"reconstruction", base + host_exec + resident + (in->cuda ? 0 : train_peak),
                                 dev_exec + (in->cuda ? c + train_peak : 0), c, spilled};
    }
    if (in->nval > 0) ph[n++] = (qd_mem_phase){"quantized evaluation", base + host_exec + logits, dev_exec, 0, 0};
    if (cfg->export_onnx) ph[n++] = (qd_mem_phase){"export", base + host_exec + model, dev_exec, 0, 0};
    P->nphases = n;
    /* the overhead: each phase's host peak less the caches' resident share, which the budget bounds */
    for (int k = 0; k < n; k++) {
        int64_t cres = in->cuda ? 0 : ph[k].cache - ph[k].spilled;
        if (ph[k].spilled > 0) cres += P->window;
        if (ph[k].host - cres > P->overhead) P->overhead = ph[k].host - cres;
    }
    if (P->overhead < base) P->overhead = base;
    return QD_OK;
}

void qd_mem_plan_free(qd_mem_plan *p) {
    free(p->unit_cache);
    p->unit_cache = NULL;
}

static void fmt_bytes(char *buf, size_t n, int64_t b) {
    double v = (double)b;
    if (b < 0) snprintf(buf, n, "?");
    else if (v >= 1024.0 * 1024 * 1024) snprintf(buf, n, "%.2f GiB", v / (1024.0 * 1024 * 1024));
    else if (v >= 1024.0 * 1024) snprintf(buf, n, "%.1f MiB", v / (1024.0 * 1024));
    else if (v >= 1024.0) snprintf(buf, n, "%.1f KiB", v / 1024.0);
    else snprintf(buf, n, "%lld B", (long long)b);
}

static const char *unit_name(const qd_mem_plan_in *in, int i) { return i >= 0 && i < in->nunits ? in->units[i].name : "-"; }

void qd_mem_plan_print(const qd_mem_plan *p, const qd_mem_plan_in *in, FILE *out) {
    char a[32], b[32], c[32], d[32];
    fmt_bytes(a, sizeof a, p->budget);
    fmt_bytes(b, sizeof b, p->machine);
    fmt_bytes(c, sizeof c, p->disk_free);
    fprintf(out, "memory plan -- peak memory per phase, computed from the shapes (an estimate):\n");
    if (p->budget_auto)
        fprintf(out, "  host budget for the unit caches: %s (process.host_memory_budget auto = half of %s)\n", a, b);
    else
        fprintf(out, "  host budget for the unit caches: %s (process.host_memory_budget; machine %s)\n", a, b);
    fmt_bytes(a, sizeof a, p->window);
    fprintf(out, "  spill directory %s (%s free); streaming window %s (one batch of %d images)\n", p->spill_dir, c, a,
            in->ncal < QD_CALIB_BATCH ? in->ncal : QD_CALIB_BATCH);
    fprintf(out, "  %-22s %12s %12s %12s %12s\n", "phase", "host peak", in->cuda ? "device peak" : "device", "caches", "spilled");
    for (int k = 0; k < p->nphases; k++) {
        const qd_mem_phase *ph = &p->phases[k];
        fmt_bytes(a, sizeof a, ph->host);
        if (in->cuda) fmt_bytes(b, sizeof b, ph->device);
        else snprintf(b, sizeof b, "(host)");
        fmt_bytes(c, sizeof c, ph->cache);
        fmt_bytes(d, sizeof d, ph->spilled);
        fprintf(out, "  %-22s %12s %12s %12s %12s\n", ph->name, a, b, ph->cache ? c : "-", ph->spilled ? d : "-");
    }
    if (in->reconstruct && in->nunits > 0) {
        fprintf(out, "  caches per unit (%d calibration images):\n", in->ncal);
        for (int i = 0; i < in->nunits; i++) {
            int64_t u = p->unit_cache[i], sp = !in->cuda && u > p->cache_budget ? u - p->cache_budget : 0;
            fmt_bytes(a, sizeof a, u);
            fmt_bytes(b, sizeof b, sp);
            fprintf(out, "    unit %-3d %-40.40s %12s  %s%s\n", i, in->units[i].name, a, sp ? b : "in memory",
                    sp ? " spilled" : "");
        }
    }
    fmt_bytes(a, sizeof a, p->spill_peak);
    if (in->cuda)
        fprintf(out, "  CUDA: caches go to device memory within device.memory_budget_mb, else pinned host memory "
                     "(not spilled)\n");
    else if (p->spill_peak > 0)
        fprintf(out, "  the budget forces spilling: up to %s of caches in a file in the output directory (largest at %s)\n",
                a, p->spill_unit >= 0 ? unit_name(in, p->spill_unit) : "the activation ranges");
    else
        fprintf(out, "  the caches fit in the budget: no spilling\n");
    fmt_bytes(a, sizeof a, p->overhead);
    fmt_bytes(b, sizeof b, p->budget);
    fprintf(out, "  peak RSS bound: budget %s + fixed overhead %s (model, images, executor, range-search copy, training "
                 "state)\n", b, a);
}

qd_status qd_mem_plan_check(const qd_mem_plan *p, const qd_mem_plan_in *in) {
    if (in->cuda) return QD_OK;
    int spills = p->spill_peak > 0;
    if (spills && p->budget < p->window) {
        int u = p->window_unit;
        char who[192];
        if (u >= 0) snprintf(who, sizeof who, "unit %d (%.160s)", u, unit_name(in, u));
        else snprintf(who, sizeof who, "activation ranges");
        return qd_errorf(QD_ERR_DEVICE_OOM,
                         "%s: streaming its spilled caches needs %lld bytes per batch of %d images, more than "
                         "process.host_memory_budget %lld bytes; raise the budget (docs/memory.md)",
                         who, (long long)p->window, in->ncal < QD_CALIB_BATCH ? in->ncal : QD_CALIB_BATCH, (long long)p->budget);
    }
    if (spills && p->file_limit >= 0 && p->cache_max > p->file_limit) {
        char who[192];
        if (p->cache_max_unit >= 0) snprintf(who, sizeof who, "unit %d (%.160s)", p->cache_max_unit, unit_name(in, p->cache_max_unit));
        else snprintf(who, sizeof who, "activation ranges");
        return qd_errorf(QD_ERR_DEVICE_OOM,
                         "%s: a %lld-byte cache may have to spill to one file, larger than the file size limit (ulimit -f) "
                         "of %lld bytes, with process.host_memory_budget %lld bytes; raise the budget or the limit "
                         "(docs/memory.md)", who, (long long)p->cache_max, (long long)p->file_limit, (long long)p->budget);
    }
    if (spills && p->disk_free >= 0 && p->spill_peak > p->disk_free) {
        int u = p->spill_unit;
        int64_t need = u >= 0 ? p->unit_cache[u] : p->spill_peak + p->cache_budget;
        char who[192];
        if (u >= 0) snprintf(who, sizeof who, "unit %d (%.160s)", u, unit_name(in, u));
        else snprintf(who, sizeof who, "activation ranges");
        return qd_errorf(QD_ERR_DEVICE_OOM,
                         "%s: caches need %lld bytes, process.host_memory_budget %lld bytes leaves %lld to spill, but %s "
                         "has only %lld bytes free; raise the budget or free disk space (docs/memory.md)",
                         who, (long long)need,
                         (long long)p->budget, (long long)p->spill_peak, p->spill_dir, (long long)p->disk_free);
    }
    return QD_OK;
}

void qd_mem_log_peak(const qd_mem_plan *p, const qd_backend *b) {
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    (void)getrusage(RUSAGE_SELF, &ru);
    int64_t rss = (int64_t)ru.ru_maxrss * 1024;
    qd_cache_stats cs;
    qd_backend_cache_stats(b, &cs);
    char fields[512];
    snprintf(fields, sizeof fields,
             "\"peak_rss_bytes\":%lld,\"host_budget_bytes\":%lld,\"fixed_overhead_bytes\":%lld,\"window_bytes\":%lld,"
             "\"cache_in_memory_peak_bytes\":%lld,\"cache_spilled_peak_bytes\":%lld,\"spill_files\":%d",
             (long long)rss, (long long)p->budget, (long long)p->overhead, (long long)p->window, (long long)cs.mem_peak,
             (long long)cs.spill_peak, cs.spill_files);
    qd_log_event_json(QD_LOG_INFO, "memory", fields,
                      "memory: peak RSS %.1f MiB (host budget %.1f MiB + planned overhead %.1f MiB); caches: %.1f MiB peak in "
                      "memory, %.1f MiB peak spilled (%d files)",
                      rss / 1048576.0, p->budget / 1048576.0, p->overhead / 1048576.0, cs.mem_peak / 1048576.0,
                      cs.spill_peak / 1048576.0, cs.spill_files);
}
