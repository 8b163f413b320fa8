/* The committed CIFAR-10 test set decodes exactly like Pillow, and the decode throughput.
 * Every one of the 10,000 assets/cifar10/test JPEGs is decoded and checked against Pillow's
 * per-image pixel sum and position-weighted sum (tests/fixtures/data/cifar_test_pixel_sums.npy,
 * made by gen_fixtures.py), then the whole folder is loaded as a dataset on 2 threads (labels
 * 1,000 per class) and the throughput printed as a JSON line:
 *   {"metric": "data/cifar10_test/decode_images_per_s", "value": ..., "threads": 2} */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "qdrop/data.h"
#include "qdrop/graph.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void) {
    qd_npy sums;
    qd_image_list L;
    if (qd_npy_load("tests/fixtures/data/cifar_test_pixel_sums.npy", &sums) != QD_OK ||
        qd_imagefolder_list("assets/cifar10/test", &L) != QD_OK) {
        fprintf(stderr, "FAIL: %s\n", qd_error_message());
        return 1;
    }
    if (L.n != 10000 || sums.numel != 20000) {
        fprintf(stderr, "FAIL: %d images, %lld checksums\n", L.n, (long long)sums.numel);
        return 1;
    }
    int mism = 0;
    for (int i = 0; i < L.n; i++) {
        qd_image_u8 im;
        if (qd_jpeg_decode_file(L.paths[i], &im) != QD_OK) {
            fprintf(stderr, "FAIL: %s\n", qd_error_message());
            return 1;
        }
        int64_t s = 0, ws = 0;
        for (int k = 0; k < im.w * im.h * 3; k++) {
            s += im.rgb[k];
            ws += (int64_t)im.rgb[k] * (k % 251 + 1);
        }
        if (im.w != 32 || im.h != 32 || s != sums.i[2 * i] || ws != sums.i[2 * i + 1]) {
            if (mism < 5) fprintf(stderr, "FAIL: %s decodes differently from Pillow\n", L.paths[i]);
            mism++;
        }
        qd_image_u8_free(&im);
    }
    CHECK(mism == 0, "%d of 10000 images differ from Pillow", mism);
    qd_image_list_free(&L);
    qd_npy_free(&sums);

    qd_data_options o;
    memset(&o, 0, sizeof o);
    o.preprocess = QD_PRE_CIFAR;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (int i = 0; i < 3; i++) { o.mean[i] = mean[i]; o.std[i] = std[i]; }
    o.threads = 2;
    qd_dataset ds;
    double t0 = now_s();
    qd_status st = qd_dataset_load_folder("assets/cifar10/test", &o, 3, 32, 32, &ds);
    double dt = now_s() - t0;
    if (st != QD_OK) { fprintf(stderr, "FAIL: %s\n", qd_error_message()); return 1; }
    int hist[10] = {0};
    for (int i = 0; i < ds.n; i++)
        if (ds.labels[i] >= 0 && ds.labels[i] < 10) hist[ds.labels[i]]++;
    for (int c = 0; c < 10; c++)
        CHECK(hist[c] == 1000, "class %d has %d images", c, hist[c]);
    CHECK(ds.n == 10000 && ds.nclasses == 10, "n %d classes %d", ds.n, ds.nclasses);
    printf("{\"metric\": \"data/cifar10_test/decode_images_per_s\", \"value\": %.0f, \"threads\": 2, \"seconds\": %.3f}\n",
           ds.n / dt, dt);
    qd_dataset_free(&ds);
    return qd_test_summary("test_data_cifar_decode");
}
