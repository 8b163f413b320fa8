/* bench/bench_range_search.c: time of the exact and the fast MSE range search (§3.1, §6.2;
 * quant.range_search) on MobileNet-style 224x224 activation tensors and ImageNet weight
 * tensors, in the same run, with the agreement of the two results.
 *
 *   qd_bench_range_search [--images N] [--threads T] [--quick] [--only SUBSTR]
 *   qd_bench_range_search --imagenet [--images N] [--images-2d M]   (ImageNet-scale tensors)
 *
 * One JSON line per tensor: shape, elements, bits, search (1-D for one-sided tensors, 2-D with
 * 100 x 2^b candidates for signed ones), exact_s, fast_s, speedup, the relative difference of
 * the chosen ranges and of their L_2.4 errors (fast vs exact; 0 = identical choice).
 * The tensors are synthetic with the sign structure of the real ones (ReLU6 outputs one-sided,
 * linear-bottleneck outputs and the normalised image signed); both searches cost time linear in
 * the element count, the fast one plus a fixed histogram part, so the speed-up at 256 images is
 * at least the one measured at --images (default 8). --quick: 2 images, no exact-only weight tensor. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/qmath.h"
#include "recon/recon.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* CPU seconds of the whole process (all threads): on a shared machine the ratio of CPU times is
 * the stable figure; wall times move with the other processes' load. */
static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static const char *g_only = NULL; /* --only SUBSTR: run the matching tensors only */
static int wanted(const char *name) { return !g_only || strstr(name, g_only) != NULL; }

static uint64_t g_rng = 0x243F6A8885A308D3ull;
static double uni(void) {
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(void) { return sqrt(-2.0 * log(uni())) * cos(6.283185307179586 * uni()); }

typedef enum { SIGNED, RELU6, IMAGE } kind_t;

static void fill(float *x, int64_t n, kind_t k) {
    for (int64_t i = 0; i < n; i++) {
        double v = gauss();
        if (k == RELU6) { v = 1.5 * v + 0.3; v = v < 0 ? 0 : (v > 6 ? 6 : v); }
        else if (k == IMAGE) { v = 0.9 * v; v = v < -2.1 ? -2.1 : (v > 2.6 ? 2.6 : v); } /* normalised pixels */
        else v = v * (1.0 + 2.0 * uni() * uni()); /* heavier tails than a gaussian */
        x[i] = (float)v;
    }
}

static double lp_err(const float *x, int64_t n, float s, float z, int bits) {
    double acc = 0;
    float qmax = (float)qd_qmax_for_bits(bits);
    for (int64_t i = 0; i < n; i++) acc += pow(fabs((double)qd_fake_quant(x[i], s, z, 0.0f, qmax) - (double)x[i]), 2.4);
    return acc / (double)n;
}

static void act_case(const char *name, int c, int h, int w, kind_t k, int bits, int images, int threads) {
    if (!wanted(name)) return;
    int64_t n = (int64_t)images * c * h * w;
    float *x = malloc(sizeof(float) * (size_t)n);
    if (!x) { fprintf(stderr, "out of memory for %s\n", name); return; }
    fill(x, n, k);
    float se, ze, sf, zf;
    double t0 = now_s(), c0 = cpu_s();
    if (qd_act_range_search_method(x, n, bits, threads, QD_RANGE_EXACT, &se, &ze) != QD_OK) { free(x); return; }
    double t1 = now_s(), c1 = cpu_s();
    if (qd_act_range_search_method(x, n, bits, threads, QD_RANGE_FAST, &sf, &zf) != QD_OK) { free(x); return; }
    double t2 = now_s(), c2 = cpu_s();
    float qmax = (float)qd_qmax_for_bits(bits);
    double lo_e = -ze * se, hi_e = (qmax - ze) * se, lo_f = -zf * sf, hi_f = (qmax - zf) * sf;
    double ee = lp_err(x, n, se, ze, bits), ef = lp_err(x, n, sf, zf, bits);
    printf("{\"tensor\":\"%s\",\"shape\":[%d,%d,%d,%d],\"elements\":%lld,\"bits\":%d,\"search\":\"%s\","
           "\"exact_s\":%.4f,\"fast_s\":%.4f,\"speedup\":%.1f,\"exact_cpu_s\":%.4f,\"fast_cpu_s\":%.4f,"
           "\"speedup_cpu\":%.1f,\"range_rel_diff\":%.2e,\"lp_err_rel_diff\":%.2e}\n",
           name, images, c, h, w, (long long)n, bits, k == RELU6 ? "1-D" : "2-D", t1 - t0, t2 - t1,
           (t1 - t0) / (t2 - t1), c1 - c0, c2 - c1, (c1 - c0) / (c2 - c1),
           (fabs(lo_e - lo_f) + fabs(hi_e - hi_f)) / (hi_e - lo_e), ef / ee - 1.0);
    fflush(stdout);
    free(x);
}

static void weight_case(const char *name, int oc, int per, int bits, int threads) {
    if (!wanted(name)) return;
    int64_t n = (int64_t)oc * per;
    float *x = malloc(sizeof(float) * (size_t)n);
    float *s = malloc(sizeof(float) * 4 * (size_t)oc);
    if (!x || !s) { free(x); free(s); return; }
    fill(x, n, SIGNED);
    for (int64_t i = 0; i < n; i++) x[i] *= 0.02f;
    float *se = s, *ze = s + oc, *sf = s + 2 * oc, *zf = s + 3 * oc;
    double t0 = now_s(), c0 = cpu_s();
    if (qd_weight_range_search_method(x, oc, per, 1, bits, threads, QD_RANGE_EXACT, se, ze) != QD_OK) goto out;
    double t1 = now_s(), c1 = cpu_s();
    if (qd_weight_range_search_method(x, oc, per, 1, bits, threads, QD_RANGE_FAST, sf, zf) != QD_OK) goto out;
    double t2 = now_s(), c2 = cpu_s();
    int identical = 0;
    double worst = 0, worst_range = 0;
    float qmax = (float)qd_qmax_for_bits(bits);
    for (int c = 0; c < oc; c++) {
        identical += se[c] == sf[c] && ze[c] == zf[c];
        double ee = lp_err(x + (int64_t)c * per, per, se[c], ze[c], bits);
        double ef = lp_err(x + (int64_t)c * per, per, sf[c], zf[c], bits);
        if (ef / ee - 1.0 > worst) worst = ef / ee - 1.0;
        double lo_e = -ze[c] * se[c], hi_e = (qmax - ze[c]) * se[c], lo_f = -zf[c] * sf[c], hi_f = (qmax - zf[c]) * sf[c];
        double rd = (fabs(lo_e - lo_f) + fabs(hi_e - hi_f)) / (hi_e - lo_e);
        if (rd > worst_range) worst_range = rd;
    }
    printf("{\"tensor\":\"%s\",\"shape\":[%d,%d],\"elements\":%lld,\"bits\":%d,\"search\":\"2-D per channel\","
           "\"exact_s\":%.4f,\"fast_s\":%.4f,\"speedup\":%.1f,\"exact_cpu_s\":%.4f,\"fast_cpu_s\":%.4f,"
           "\"speedup_cpu\":%.1f,\"channels_identical\":%d,\"worst_range_rel_diff\":%.2e,\"worst_lp_err_rel_diff\":%.2e}\n",
           name, oc, per, (long long)n, bits, t1 - t0, t2 - t1, (t1 - t0) / (t2 - t1), c1 - c0, c2 - c1,
           (c1 - c0) / (c2 - c1), identical, worst_range, worst);
    fflush(stdout);
out:
    free(x);
    free(s);
}

int main(int argc, char **argv) {
    int images = 8, threads = 2, quick = 0, imagenet = 0, images_2d = 16;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--images") == 0 && i + 1 < argc) images = atoi(argv[++i]);
        else if (strcmp(argv[i], "--images-2d") == 0 && i + 1 < argc) images_2d = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) g_only = argv[++i];
        else if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--imagenet") == 0) imagenet = 1;
        else {
            fprintf(stderr, "usage: %s [--images N] [--threads T] [--quick] [--only SUBSTR] [--imagenet [--images-2d M]]\n",
                    argv[0]);
            return 64;
        }
    }
    if (quick) images = 2;
    if (images < 1 || threads < 1 || images_2d < 1) { fprintf(stderr, "--images, --images-2d and --threads must be >= 1\n"); return 64; }
    if (imagenet) {
        /* ImageNet scale: the two largest MobileNetV2 activation shapes at 224x224. The one-sided
         * (ReLU6) search at --images (default 256 = quant.act_calib_samples), the signed 2-D
         * search (a pre-activation tensor of the same shape) at --images-2d (default 16: its
         * exact search costs ~1,600 passes, minutes per 10^7 elements). */
        if (images == 8) images = 256;
        printf("{\"bench\":\"range_search\",\"set\":\"imagenet\",\"images\":%d,\"images_2d\":%d,\"threads\":%d}\n",
               images, images_2d, threads);
        act_case("in.stem_relu6", 32, 112, 112, RELU6, 4, images, threads);
        act_case("in.block2_expand_relu6", 96, 56, 56, RELU6, 4, images, threads);
        act_case("in.stem_preact", 32, 112, 112, SIGNED, 4, images_2d, threads);
        act_case("in.block2_expand_preact", 96, 56, 56, SIGNED, 4, images_2d, threads);
        return 0;
    }
    printf("{\"bench\":\"range_search\",\"images\":%d,\"threads\":%d}\n", images, threads);
    /* MobileNetV2 at 224x224: stem ReLU6, first linear bottleneck, later blocks */
    act_case("mbv2.stem_relu6", 32, 112, 112, RELU6, 4, images, threads);
    act_case("mbv2.stem_relu6_8bit", 32, 112, 112, RELU6, 8, images, threads); /* first layer at 8 bit */
    act_case("mbv2.block1_out", 16, 112, 112, SIGNED, 4, images, threads);
    act_case("mbv2.block1_out", 16, 112, 112, SIGNED, 2, images, threads);
    act_case("mbv2.block3_expand_relu6", 144, 56, 56, RELU6, 4, images, threads);
    act_case("mbv2.block3_out", 24, 56, 56, SIGNED, 4, images, threads);
    act_case("mbv2.block6_out", 32, 28, 28, SIGNED, 4, images, threads);
    act_case("mbv2.block16_out", 320, 7, 7, SIGNED, 4, images, threads);
    act_case("mbv2.block13_out_8bit", 96, 14, 14, SIGNED, 8, images, threads); /* 25 600 candidates */
    /* the network input at 8 bit (first layer): its exact 2-D search costs 25,600 passes, so
     * one image per 8 */
    act_case("mbv2.image_8bit", 3, 224, 224, IMAGE, 8, images >= 8 ? images / 8 : 1, threads);
    /* weights (per output channel): ResNet-50 layer4 3x3 conv, MobileNetV2 last 1x1, FC at 8 bit */
    weight_case("r50.layer4.conv2", 512, 512 * 9, 4, threads);
    weight_case("r50.layer3.conv2", 256, 256 * 9, 2, threads);
    weight_case("mbv2.block16_project_1x1", 320, 960, 4, threads);
    /* too short for a histogram finer than the 4-bit grid: both searches are exact */
    if (!quick) weight_case("mbv2.conv_1x1_last", 1280, 320, 4, threads);
    /* 8-bit weights (first/last layers): channels far too short for a histogram finer than the
     * 256-step grid, so exact in both; 100 of ResNet-50's 1,000 FC channels (the whole layer
     * costs 10x) */
    if (!quick) weight_case("r50.fc_8bit_100ch", 100, 2048, 8, threads);
    return 0;
}
