/* bench/bench_gpu.c: GPU benchmark of one QDrop reconstruction iteration per unit type, run
 * through the backend ops (tests/cuda/unit_iter.h) and replayed as a CUDA Graph, against the
 * unit's cuDNN convolutions alone (forward + backward-data + backward-filter, also replayed as a
 * graph) measured in the same run. Full ResNet-18/50 reconstructions at 20,000 iterations per
 * unit (§8.1 units; the classifier is timed as a 1x1 conv on a 1x1 map), batch 32, 1,024
 * calibration samples, W2A2 by default: *measured* (every unit of the model replayed 20,000
 * times per occurrence) when the projection fits --full-budget-s, else *projected* from the
 * measured per-unit iteration times; the JSON says which ("resnet18_mode").
 *
 *   qd_bench_gpu [--out FILE.json] [--iters N] [--tf32 0|1] [--deterministic 0|1] [--ncal N]
 *                [--w-bits B] [--a-bits B] [--full-budget-s S] [--smoke] [--determinism-dump FILE]
 * Exit: 0 ok, 1 failure, 64 usage, 77 no usable CUDA device (1 with QD_REQUIRE_GPU=1).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/unit_iter.h"
#include "qdrop/backend.h"
#include "qdrop/status.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ui_layer L(int cin, int cout, int k, int stride, int group, int act, int fq) {
    ui_layer l = {cin, cout, k, stride, k / 2, group, act, fq};
    return l;
}

static int g_w_bits = 2, g_a_bits = 2; /* --w-bits / --a-bits: W2A2 is the headline setting */

static ui_spec base(const char *name, int cin, int hw, int count) {
    ui_spec s;
    memset(&s, 0, sizeof s);
    s.name = name;
    s.batch = 32; s.cin = cin; s.h = hw; s.w = hw;
    s.ncal = 64; s.w_bits = g_w_bits; s.a_bits = g_a_bits; s.keep_prob = 0.5f;
    s.count = count;
    return s;
}

static ui_spec basic(const char *name, int cin, int cout, int hw, int stride, int count) {
    ui_spec s = base(name, cin, hw, count);
    s.nlayers = 2;
    s.layers[0] = L(cin, cout, 3, stride, 1, UI_ACT_RELU, 1);
    s.layers[1] = L(cout, cout, 3, 1, 1, UI_ACT_NONE, 0);
    s.residual = 1;
    if (stride != 1 || cin != cout) { s.has_short = 1; s.shortcut = L(cin, cout, 1, stride, 1, UI_ACT_NONE, 0); }
    s.post_act = UI_ACT_RELU; s.out_fq = 1;
    return s;
}

static ui_spec bottleneck(const char *name, int cin, int mid, int cout, int hw, int stride, int count) {
    ui_spec s = base(name, cin, hw, count);
    s.nlayers = 3;
    s.layers[0] = L(cin, mid, 1, 1, 1, UI_ACT_RELU, 1);
    s.layers[1] = L(mid, mid, 3, stride, 1, UI_ACT_RELU, 1);
    s.layers[2] = L(mid, cout, 1, 1, 1, UI_ACT_NONE, 0);
    s.residual = 1;
    if (stride != 1 || cin != cout) { s.has_short = 1; s.shortcut = L(cin, cout, 1, stride, 1, UI_ACT_NONE, 0); }
    s.post_act = UI_ACT_RELU; s.out_fq = 1;
    return s;
}

static ui_spec single(const char *name, int cin, int cout, int k, int stride, int hw, int act, int count) {
    ui_spec s = base(name, cin, hw, count);
    s.nlayers = 1;
    s.layers[0] = L(cin, cout, k, stride, 1, act, 0);
    s.out_fq = 1;
    return s;
}

static ui_spec mbv2(const char *name, int count) {
    ui_spec s = base(name, 24, 56, count);
    s.nlayers = 3;
    s.layers[0] = L(24, 144, 1, 1, 1, UI_ACT_RELU6, 1);
    s.layers[1] = L(144, 144, 3, 1, 144, UI_ACT_RELU6, 1);
    s.layers[2] = L(144, 24, 1, 1, 1, UI_ACT_NONE, 0);
    s.residual = 1; s.out_fq = 1;
    return s;
}

typedef struct res_t {
    double iter_ms, eager_ms, conv_ms;
    double full_s; /* measured: `full` replays of the unit's iteration graph, seconds (0 = not run) */
} res_t;

static int64_t g_peak_used; /* max device memory in use seen after a unit was built and captured */
static void note_memory(void) {
    int64_t used = 0, total = 0;
    if (qd_cuda_memory_info(&used, &total) == 0 && used > g_peak_used) g_peak_used = used;
}

static int fail_unit(ui_unit *u, const char *what) {
    fprintf(stderr, "bench_gpu: %s (%s): %s | %s\n", what, u->sp.name, u->err, qd_error_message());
    return 1;
}

/* Time one unit: eager iterations, then graph replays of a full iteration and of the convs;
 * with full > 0 also `full` back-to-back replays of the iteration (a unit's whole
 * reconstruction, measured). */
static int time_unit(qd_backend *b, const ui_spec *sp, int iters, long full, res_t *r) {
    static ui_unit u;
    if (ui_create(&u, b, sp, 1) != QD_OK) return fail_unit(&u, "create");
    const qd_backend_ops *o = b->ops;
    for (int k = 0; k < 3; k++)
        if (ui_iteration(&u) != QD_OK) return fail_unit(&u, "warm-up iteration");
    if (o->sync(b) != QD_OK) return fail_unit(&u, "sync");
    int ne = iters < 20 ? iters : 20;
    double t0 = now_s();
    for (int k = 0; k < ne; k++)
        if (ui_iteration(&u) != QD_OK) return fail_unit(&u, "eager iteration");
    if (o->sync(b) != QD_OK) return fail_unit(&u, "sync");
    r->eager_ms = 1e3 * (now_s() - t0) / ne;

    void *g_it = NULL, *g_conv = NULL;
    if (o->capture_begin(b) != QD_OK) return fail_unit(&u, "capture_begin");
    if (ui_iteration(&u) != QD_OK) return fail_unit(&u, "captured iteration");
    if (o->capture_end(b, &g_it) != QD_OK) return fail_unit(&u, "capture_end");
    if (ui_convs_only(&u) != QD_OK) return fail_unit(&u, "convs warm-up");
    if (o->capture_begin(b) != QD_OK) return fail_unit(&u, "capture_begin convs");
    if (ui_convs_only(&u) != QD_OK) return fail_unit(&u, "captured convs");
    if (o->capture_end(b, &g_conv) != QD_OK) return fail_unit(&u, "capture_end convs");
    for (int k = 0; k < 3; k++) {
        if (o->graph_launch(b, g_it) != QD_OK || o->graph_launch(b, g_conv) != QD_OK) return fail_unit(&u, "replay warm-up");
    }
    if (o->sync(b) != QD_OK) return fail_unit(&u, "sync");
    t0 = now_s();
    for (int k = 0; k < iters; k++)
        if (o->graph_launch(b, g_it) != QD_OK) return fail_unit(&u, "graph replay");
    if (o->sync(b) != QD_OK) return fail_unit(&u, "sync");
    r->iter_ms = 1e3 * (now_s() - t0) / iters;
    t0 = now_s();
    for (int k = 0; k < iters; k++)
        if (o->graph_launch(b, g_conv) != QD_OK) return fail_unit(&u, "conv graph replay");
    if (o->sync(b) != QD_OK) return fail_unit(&u, "sync");
    r->conv_ms = 1e3 * (now_s() - t0) / iters;
    note_memory();
    if (full > 0) {
        t0 = now_s();
        for (long k = 0; k < full; k++)
            if (o->graph_launch(b, g_it) != QD_OK) return fail_unit(&u, "full-run replay");
        if (o->sync(b) != QD_OK) return fail_unit(&u, "sync");
        r->full_s = now_s() - t0;
    }
    int32_t bad = 0;
    if (o->download(b, &bad, u.bad, 4) != QD_OK) return fail_unit(&u, "download");
    o->graph_destroy(b, g_it);
    o->graph_destroy(b, g_conv);
    ui_destroy(&u);
    if (bad) fprintf(stderr, "bench_gpu: warning: %s produced non-finite outputs (random data)\n", sp->name);
    return 0;
}

/* Deterministic mode: the same 20 graph-replayed iterations twice must give identical bytes. */
static int determinism(qd_backend *b, const ui_spec *sp, const char *dump, int *identical) {
    static ui_unit u;
    void *st[2] = {0, 0};
    size_t n[2] = {0, 0};
    for (int run = 0; run < 2; run++) {
        if (ui_create(&u, b, sp, 3) != QD_OK) return fail_unit(&u, "create");
        if (ui_iteration(&u) != QD_OK) return fail_unit(&u, "iteration");
        void *g = NULL;
        if (b->ops->capture_begin(b) != QD_OK || ui_iteration(&u) != QD_OK || b->ops->capture_end(b, &g) != QD_OK)
            return fail_unit(&u, "capture");
        for (int k = 0; k < 19; k++)
            if (b->ops->graph_launch(b, g) != QD_OK) return fail_unit(&u, "replay");
        if (b->ops->sync(b) != QD_OK) return fail_unit(&u, "sync");
        b->ops->graph_destroy(b, g);
        st[run] = ui_state(&u, &n[run]);
        ui_destroy(&u);
        if (!st[run]) return 1;
    }
    *identical = n[0] == n[1] && memcmp(st[0], st[1], n[0]) == 0;
    if (dump) {
        FILE *f = fopen(dump, "wb");
        if (!f || fwrite(st[0], 1, n[0], f) != n[0]) { fprintf(stderr, "bench_gpu: cannot write %s\n", dump); if (f) fclose(f); return 1; }
        fclose(f);
    }
    free(st[0]);
    free(st[1]);
    return 0;
}

int main(int argc, char **argv) {
    const char *out = NULL, *dump = NULL;
    int iters = 200, tf32 = 1, det = 0, smoke = 0, ncal = 1024;
    double full_budget_s = 0.0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tf32") && i + 1 < argc) tf32 = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--deterministic") && i + 1 < argc) det = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ncal") && i + 1 < argc) ncal = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--determinism-dump") && i + 1 < argc) dump = argv[++i];
        else if (!strcmp(argv[i], "--w-bits") && i + 1 < argc) g_w_bits = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--a-bits") && i + 1 < argc) g_a_bits = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--full-budget-s") && i + 1 < argc) full_budget_s = atof(argv[++i]);
        else if (!strcmp(argv[i], "--smoke")) smoke = 1;
        else {
            fprintf(stderr, "usage: %s [--out FILE] [--iters N] [--tf32 0|1] [--deterministic 0|1] [--ncal N] "
                            "[--w-bits B] [--a-bits B] [--full-budget-s S] [--smoke] [--determinism-dump FILE]\n",
                    argv[0]);
            return 64;
        }
    }
    if (iters < 1) iters = 1;
    if (g_w_bits < 2 || g_w_bits > 8 || g_a_bits < 2 || g_a_bits > 8 || ncal < 1) {
        fprintf(stderr, "bench_gpu: --w-bits/--a-bits must be in 2..8 and --ncal >= 1\n");
        return 64;
    }
    const double t_start = now_s();
    const char *req = getenv("QD_REQUIRE_GPU");
    int require = req && !strcmp(req, "1");
    if (!qd_cuda_available()) {
        printf("bench_gpu: no usable CUDA device (%s)%s\n", qd_cuda_unavailable_reason(),
               require ? " (QD_REQUIRE_GPU=1: failing)" : ", skipped");
        return require ? 1 : 77;
    }
    qd_backend_options o;
    memset(&o, 0, sizeof o);
    o.tf32 = tf32;
    o.deterministic = det;
    qd_backend *b = NULL;
    if (qd_cuda_backend_create(&o, &b) != QD_OK) {
        fprintf(stderr, "bench_gpu: %s\n", qd_error_message());
        return 1;
    }
    char ver[256];
    qd_cuda_versions(ver, sizeof ver);

    ui_spec specs[32];
    int ns = 0, r18_begin, r18_end, r50_begin, r50_end;
    if (smoke) {
        specs[ns] = basic("smoke BasicBlock 16ch 14x14", 16, 16, 14, 1, 1);
        specs[ns].batch = 4;
        ns++;
        iters = 5;
        if (ncal > 64) ncal = 64;
        r18_begin = r18_end = r50_begin = r50_end = 0;
    } else {
        /* the three unit types of the issue first */
        specs[ns++] = basic("ResNet-18 BasicBlock 64ch 56x56", 64, 64, 56, 1, 2);
        specs[ns++] = bottleneck("ResNet-50 Bottleneck 256-64-256 56x56", 256, 64, 256, 56, 1, 2);
        specs[ns++] = mbv2("MobileNetV2 inverted residual 24-144-24 56x56", 1);
        r18_begin = ns;
        specs[ns++] = single("R18 conv1 7x7/2 3-64 224", 3, 64, 7, 2, 224, UI_ACT_RELU, 1);
        specs[ns++] = basic("R18 layer1 (reuse above)", 64, 64, 56, 1, 2);
        specs[ns++] = basic("R18 layer2.0", 64, 128, 56, 2, 1);
        specs[ns++] = basic("R18 layer2.1", 128, 128, 28, 1, 1);
        specs[ns++] = basic("R18 layer3.0", 128, 256, 28, 2, 1);
        specs[ns++] = basic("R18 layer3.1", 256, 256, 14, 1, 1);
        specs[ns++] = basic("R18 layer4.0", 256, 512, 14, 2, 1);
        specs[ns++] = basic("R18 layer4.1", 512, 512, 7, 1, 1);
        specs[ns++] = single("R18 fc 512-1000 (as 1x1 conv)", 512, 1000, 1, 1, 1, UI_ACT_NONE, 1);
        r18_end = ns;
        r50_begin = ns;
        specs[ns++] = single("R50 conv1 7x7/2 3-64 224", 3, 64, 7, 2, 224, UI_ACT_RELU, 1);
        specs[ns++] = bottleneck("R50 layer1.0", 64, 64, 256, 56, 1, 1);
        specs[ns++] = bottleneck("R50 layer1.x", 256, 64, 256, 56, 1, 2);
        specs[ns++] = bottleneck("R50 layer2.0", 256, 128, 512, 56, 2, 1);
        specs[ns++] = bottleneck("R50 layer2.x", 512, 128, 512, 28, 1, 3);
        specs[ns++] = bottleneck("R50 layer3.0", 512, 256, 1024, 28, 2, 1);
        specs[ns++] = bottleneck("R50 layer3.x", 1024, 256, 1024, 14, 1, 5);
        specs[ns++] = bottleneck("R50 layer4.0", 1024, 512, 2048, 14, 2, 1);
        specs[ns++] = bottleneck("R50 layer4.x", 2048, 512, 2048, 7, 1, 2);
        specs[ns++] = single("R50 fc 2048-1000 (as 1x1 conv)", 2048, 1000, 1, 1, 1, UI_ACT_NONE, 1);
        r50_end = ns;
    }
    for (int i = 0; i < ns; i++) specs[i].ncal = ncal;

    res_t res[32];
    memset(res, 0, sizeof res);
    int rc = 0;
    for (int i = 0; i < ns; i++) {
        if (i == r18_begin + 1 && !smoke) { res[i] = res[0]; continue; } /* R18 layer1 == unit type 0 */
        if (time_unit(b, &specs[i], iters, 0, &res[i]) != 0) { rc = 1; break; }
        printf("%-48s iter %8.3f ms (eager %8.3f)  convs %8.3f ms  ratio %.2f\n", specs[i].name, res[i].iter_ms,
               res[i].eager_ms, res[i].conv_ms, res[i].conv_ms > 0 ? res[i].iter_ms / res[i].conv_ms : 0.0);
        fflush(stdout);
    }
    double r18 = 0, r50 = 0, r18c = 0, r50c = 0;
    for (int i = r18_begin; i < r18_end; i++) { r18 += specs[i].count * res[i].iter_ms; r18c += specs[i].count * res[i].conv_ms; }
    for (int i = r50_begin; i < r50_end; i++) { r50 += specs[i].count * res[i].iter_ms; r50c += specs[i].count * res[i].conv_ms; }
    /* Measured full runs: a model whose projection fits what is left of --full-budget-s is run
     * for real, every unit 20,000 replays per occurrence (unit construction time excluded, as
     * the engine overlaps it with nothing either: it is reported as setup_s). */
    double r18_meas = -1, r50_meas = -1;
    const long full_iters = 20000;
    for (int m = 0; m < 2 && rc == 0 && !smoke; m++) {
        int lo = m ? r50_begin : r18_begin, hi = m ? r50_end : r18_end;
        double proj = (m ? r50 : r18) * (double)full_iters / 1e3;
        double left = full_budget_s - (now_s() - t_start);
        if (full_budget_s <= 0 || proj * 1.15 + 20.0 > left) {
            printf("%s full run: projected %.1f s, budget left %.1f s: projection only\n", m ? "ResNet-50" : "ResNet-18",
                   proj, left);
            continue;
        }
        double tot = 0;
        for (int i = lo; i < hi && rc == 0; i++) {
            res_t fr;
            memset(&fr, 0, sizeof fr);
            if (time_unit(b, &specs[i], 20, full_iters * specs[i].count, &fr) != 0) { rc = 1; break; }
            tot += fr.full_s;
            printf("  measured %-40s %ld iterations %.2f s\n", specs[i].name, full_iters * specs[i].count, fr.full_s);
            fflush(stdout);
        }
        if (rc == 0) {
            if (m) r50_meas = tot; else r18_meas = tot;
            printf("%s full run measured: %.2f s (projected %.2f s)\n", m ? "ResNet-50" : "ResNet-18", tot, proj);
        }
    }
    int identical = -1;
    if (rc == 0 && (det || dump)) {
        if (!det) {
            /* determinism needs deterministic algorithms: use a second backend */
            qd_backend *bd = NULL;
            o.deterministic = 1;
            if (qd_cuda_backend_create(&o, &bd) != QD_OK) { fprintf(stderr, "bench_gpu: %s\n", qd_error_message()); rc = 1; }
            else { if (determinism(bd, &specs[0], dump, &identical)) rc = 1; qd_backend_destroy(bd); }
        } else if (determinism(b, &specs[0], dump, &identical)) {
            rc = 1;
        }
        printf("determinism (deterministic mode, 20 replayed iterations twice): %s\n",
               identical == 1 ? "bit-identical" : identical == 0 ? "DIFFERENT" : "not run");
        if (identical == 0) rc = 1;
    }
    FILE *f = out ? fopen(out, "w") : stdout;
    if (!f) { fprintf(stderr, "bench_gpu: cannot write %s\n", out); f = stdout; rc = 1; }
    fprintf(f, "{\n  \"benchmark\": \"qdrop-gpu unit iteration\",\n  \"device\": \"%s\",\n  \"versions\": \"%s\",\n",
            b->device_name, ver);
    fprintf(f, "  \"tf32\": %d,\n  \"deterministic\": %d,\n  \"batch\": %d,\n  \"w_bits\": %d,\n  \"a_bits\": %d,\n"
               "  \"calibration_samples\": %d,\n  \"keep_prob\": 0.5,\n  \"replays\": %d,\n  \"units\": [\n",
            tf32, det, specs[0].batch, g_w_bits, g_a_bits, ncal, iters);
    for (int i = 0; i < ns; i++)
        fprintf(f, "    {\"name\": \"%s\", \"count\": %d, \"iter_ms\": %.5f, \"iter_eager_ms\": %.5f, \"convs_ms\": %.5f, "
                   "\"other_ms\": %.5f, \"ratio_iter_over_convs\": %.4f}%s\n",
                specs[i].name, specs[i].count, res[i].iter_ms, res[i].eager_ms, res[i].conv_ms,
                res[i].iter_ms - res[i].conv_ms, res[i].conv_ms > 0 ? res[i].iter_ms / res[i].conv_ms : 0.0,
                i + 1 < ns ? "," : "");
    fprintf(f, "  ],\n  \"projection_iters_per_unit\": 20000,\n");
    fprintf(f, "  \"resnet18_projected_s\": %.3f,\n  \"resnet18_convs_only_s\": %.3f,\n", r18 * 20000 / 1e3, r18c * 20000 / 1e3);
    fprintf(f, "  \"resnet50_projected_s\": %.3f,\n  \"resnet50_convs_only_s\": %.3f,\n", r50 * 20000 / 1e3, r50c * 20000 / 1e3);
    fprintf(f, "  \"resnet18_mode\": \"%s\",\n  \"resnet18_full_s\": %.3f,\n", r18_meas >= 0 ? "measured" : "projected",
            r18_meas >= 0 ? r18_meas : r18 * 20000 / 1e3);
    fprintf(f, "  \"resnet50_mode\": \"%s\",\n  \"resnet50_full_s\": %.3f,\n", r50_meas >= 0 ? "measured" : "projected",
            r50_meas >= 0 ? r50_meas : r50 * 20000 / 1e3);
    int64_t used = 0, total = 0;
    note_memory();
    (void)qd_cuda_memory_info(&used, &total);
    fprintf(f, "  \"peak_device_memory_mb\": %.1f,\n  \"device_memory_total_mb\": %.1f,\n", (double)g_peak_used / 1048576.0,
            (double)total / 1048576.0);
    fprintf(f, "  \"goals_h200\": {\"resnet18_w2a2_s\": 45, \"resnet50_w2a2_s\": 90, \"iter_over_convs\": 1.3, "
               "\"speedup_over_pytorch_eager\": 20},\n");
    fprintf(f, "  \"wall_s\": %.1f,\n", now_s() - t_start);
    fprintf(f, "  \"determinism_bitwise\": %s,\n  \"status\": \"%s\"\n}\n",
            identical == 1 ? "true" : identical == 0 ? "false" : "null", rc ? "failed" : "ok");
    if (f != stdout) fclose(f);
    if (!smoke)
        printf("projected full run at 20000 it/unit: ResNet-18 %.1f s (convs alone %.1f s), ResNet-50 %.1f s (convs alone %.1f s)\n",
               r18 * 20, r18c * 20, r50 * 20, r50c * 20);
    qd_backend_destroy(b);
    return rc;
}
