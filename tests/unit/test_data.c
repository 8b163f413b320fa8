/* Unit tests for src/data/: ImageFolder listing, JPEG decoding against Pillow, preprocessing
 * against torchvision, calibration sampling, the .npy reader, metrics, and every bad input
 * (message + status). Fixtures: tests/fixtures/data/gen_fixtures.py (Pillow 13.0.0,
 * torchvision 0.29.2); decoded pixels and resized images must match Pillow EXACTLY, the
 * normalized tensors torchvision's bit for bit. Runs from the source root (CTest WORKING_DIRECTORY). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "qdrop/data.h"
#include "qdrop/graph.h"
#include "data/data_internal.h"

#define FX "tests/fixtures/data/"
#define BAD "tests/bad_inputs/data/"
#define CIFAR_TEST "assets/cifar10/test/"

static const float MEAN[3] = {0.485f, 0.456f, 0.406f}, STD[3] = {0.229f, 0.224f, 0.225f};

static qd_data_options opts(qd_preprocess p) {
    qd_data_options o;
    memset(&o, 0, sizeof o);
    o.preprocess = p;
    for (int i = 0; i < 3; i++) { o.mean[i] = MEAN[i]; o.std[i] = STD[i]; }
    o.input_size = 224;
    o.resize_size = 256;
    o.threads = 2;
    o.seed = 1005;
    return o;
}

/* Expect status st and a message containing every non-NULL needle. */
static void expect_err(qd_status got, qd_status want, const char *n1, const char *n2, const char *what) {
    const char *m = qd_error_message();
    CHECK(got == want, "%s: status %d (%s), want %d; message: %s", what, got, qd_status_name(got), want, m);
    if (n1) CHECK(strstr(m, n1) != NULL, "%s: message lacks '%s': %s", what, n1, m);
    if (n2) CHECK(strstr(m, n2) != NULL, "%s: message lacks '%s': %s", what, n2, m);
    CHECK(strchr(m, '\n') == NULL, "%s: message has a newline", what);
    qd_error_clear();
}

static void test_listing(void) {
    qd_image_list L;
    qd_status st = qd_imagefolder_list(FX "tree", &L);
    CHECK(st == QD_OK, "list tree: %s", qd_error_message());
    if (st != QD_OK) return;
    /* classes by byte order; hidden ".git_like" ignored; empty class keeps its index */
    const char *cls[] = {"Zebra", "apple", "b_cls", "empty_cls"};
    CHECK(L.nclasses == 4, "nclasses %d", L.nclasses);
    for (int i = 0; i < L.nclasses && i < 4; i++) CHECK(strcmp(L.class_names[i], cls[i]) == 0, "class %d = %s", i, L.class_names[i]);
    const char *files[] = {FX "tree/Zebra/z.jpg", FX "tree/apple/10.jpeg", FX "tree/apple/2.jpg",
                           FX "tree/b_cls/a.JPEG", FX "tree/b_cls/x.jpg", FX "tree/b_cls/sub/0.jpg"};
    const int labels[] = {0, 1, 1, 2, 2, 2};
    CHECK(L.n == 6, "n %d", L.n);
    for (int i = 0; i < L.n && i < 6; i++) {
        CHECK(strcmp(L.paths[i], files[i]) == 0, "file %d = %s, want %s", i, L.paths[i], files[i]);
        CHECK(L.labels[i] == labels[i], "label %d = %d", i, L.labels[i]);
    }
    qd_image_list_free(&L);
    qd_image_list_free(&L); /* idempotent */

    /* the committed CIFAR test set: 10 classes x 1000, standard label order */
    st = qd_imagefolder_list("assets/cifar10/test", &L);
    CHECK(st == QD_OK && L.n == 10000 && L.nclasses == 10, "cifar list: %d %d %s", L.n, L.nclasses, qd_error_message());
    if (st == QD_OK && L.n == 10000) {
        CHECK(strcmp(L.class_names[0], "airplane") == 0 && strcmp(L.class_names[9], "truck") == 0, "cifar classes");
        CHECK(strcmp(L.paths[1003], "assets/cifar10/test/automobile/0003.jpg") == 0 && L.labels[1003] == 1,
              "cifar path 1003 = %s", L.paths[1003]);
    }
    qd_image_list_free(&L);
}

static int load_expected(const char *path, qd_npy *a) {
    qd_status st = qd_npy_load(path, a);
    CHECK(st == QD_OK, "fixture %s: %s", path, qd_error_message());
    return st == QD_OK;
}

static void test_decode(void) {
    const char *imgs[][2] = {{CIFAR_TEST "airplane/0000.jpg", FX "airplane0000.pixels.npy"},
                             {CIFAR_TEST "cat/0003.jpg", FX "cat0003.pixels.npy"},
                             {FX "color420.jpg", FX "color420.pixels.npy"},
                             {FX "progressive.jpg", FX "progressive.pixels.npy"},
                             {FX "gray.jpg", FX "gray.pixels.npy"}};
    for (size_t t = 0; t < sizeof imgs / sizeof imgs[0]; t++) {
        qd_image_u8 im;
        qd_npy e;
        qd_status st = qd_jpeg_decode_file(imgs[t][0], &im);
        CHECK(st == QD_OK, "decode %s: %s", imgs[t][0], qd_error_message());
        if (st != QD_OK) continue;
        if (load_expected(imgs[t][1], &e)) {
            CHECK(e.ndim == 3 && e.dims[0] == im.h && e.dims[1] == im.w && e.dims[2] == 3, "%s: size %dx%d vs Pillow",
                  imgs[t][0], im.w, im.h);
            if (e.ndim == 3 && e.dims[0] == im.h && e.dims[1] == im.w) {
                int64_t diff = 0;
                for (int64_t i = 0; i < e.numel; i++) diff += (float)im.rgb[i] != e.f[i];
                CHECK(diff == 0, "%s: %lld of %lld values differ from Pillow", imgs[t][0], (long long)diff,
                      (long long)e.numel);
            }
            qd_npy_free(&e);
        }
        qd_image_u8_free(&im);
    }
}

static void test_resize(void) {
    struct { const char *img, *exp; int ow, oh; } cases[] = {
        {FX "gray.jpg", FX "gray.resize40x33.npy", 40, 33},          /* upsampling 17x23 -> 40x33 */
        {FX "color420.jpg", FX "color420.resize13x9.npy", 13, 9},    /* antialiased downsampling */
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        qd_image_u8 im;
        qd_npy e;
        if (qd_jpeg_decode_file(cases[t].img, &im) != QD_OK) { CHECK(0, "%s", qd_error_message()); continue; }
        uint8_t *dst = malloc((size_t)cases[t].ow * cases[t].oh * 3);
        qd_status st = qd_image_resize_bilinear(im.rgb, im.w, im.h, cases[t].ow, cases[t].oh, dst);
        CHECK(st == QD_OK, "resize");
        if (load_expected(cases[t].exp, &e)) {
            CHECK(e.numel == (int64_t)cases[t].ow * cases[t].oh * 3, "resize fixture size");
            int64_t diff = 0, maxd = 0;
            for (int64_t i = 0; i < e.numel; i++) {
                int64_t d = llabs((int64_t)dst[i] - (int64_t)e.f[i]);
                diff += d != 0;
                if (d > maxd) maxd = d;
            }
            CHECK(diff == 0, "%s resize %dx%d: %lld values differ from Pillow (max %lld)", cases[t].img, cases[t].ow,
                  cases[t].oh, (long long)diff, (long long)maxd);
            qd_npy_free(&e);
        }
        free(dst);
        qd_image_u8_free(&im);
    }
}

static void compare_tensor(const float *got, const char *exp_path, int64_t numel, const char *what) {
    qd_npy e;
    if (!load_expected(exp_path, &e)) return;
    CHECK(e.numel == numel, "%s: fixture numel %lld vs %lld", what, (long long)e.numel, (long long)numel);
    if (e.numel == numel) {
        int64_t diff = 0;
        double maxd = 0;
        for (int64_t i = 0; i < numel; i++) {
            if (got[i] != e.f[i]) diff++;
            double d = fabs((double)got[i] - e.f[i]);
            if (d > maxd) maxd = d;
        }
        CHECK(diff == 0, "%s: %lld values differ from torchvision (max abs %.3g)", what, (long long)diff, maxd);
    }
    qd_npy_free(&e);
}

static void test_preprocess(void) {
    qd_image_u8 im;
    float out[3 * 32 * 32];
    /* CIFAR: ToTensor + Normalize, no resize */
    qd_data_options o = opts(QD_PRE_CIFAR);
    if (qd_jpeg_decode_file(CIFAR_TEST "airplane/0000.jpg", &im) == QD_OK) {
        CHECK(qd_preprocess_image(&im, "a", &o, 3, 32, 32, out) == QD_OK, "cifar preprocess: %s", qd_error_message());
        compare_tensor(out, FX "airplane0000.cifar.npy", 3 * 32 * 32, "cifar normalize");
        /* spot value by hand: channel 1 pixel (5,7) */
        float v = (float)im.rgb[(5 * 32 + 7) * 3 + 1] / 255.0f;
        CHECK(out[1 * 1024 + 5 * 32 + 7] == (v - 0.456f) / 0.224f, "normalize formula");
        /* NONE: /255 only */
        qd_data_options on = opts(QD_PRE_NONE);
        CHECK(qd_preprocess_image(&im, "a", &on, 3, 32, 32, out) == QD_OK, "none preprocess");
        CHECK(out[2 * 1024 + 31 * 32 + 31] == (float)im.rgb[(31 * 32 + 31) * 3 + 2] / 255.0f, "none = x/255");
        /* size mismatch: a 32x32 image for a 28x28 model */
        expect_err(qd_preprocess_image(&im, "img.jpg", &o, 3, 28, 28, out), QD_ERR_DATA, "img.jpg: image is 32x32",
                   "model input is 28x28", "cifar size mismatch");
        expect_err(qd_preprocess_image(&im, "img.jpg", &o, 1, 32, 32, out), QD_ERR_DATA, "img.jpg", "3 (RGB)",
                   "channel mismatch");
        qd_image_u8_free(&im);
    } else {
        CHECK(0, "decode: %s", qd_error_message());
    }
    /* ImageNet-style: Resize(24) + CenterCrop(20) on a 61x45 image (long side 32, crop offset 6 from 12/2) */
    o = opts(QD_PRE_IMAGENET);
    o.resize_size = 24;
    o.input_size = 20;
    if (qd_jpeg_decode_file(FX "color420.jpg", &im) == QD_OK) {
        float o20[3 * 20 * 20];
        CHECK(qd_preprocess_image(&im, "c", &o, 3, 20, 20, o20) == QD_OK, "imagenet preprocess: %s", qd_error_message());
        compare_tensor(o20, FX "color420.imagenet.npy", 3 * 20 * 20, "imagenet resize+crop+normalize");
        expect_err(qd_preprocess_image(&im, FX "color420.jpg", &o, 3, 224, 224, o20), QD_ERR_DATA, "color420.jpg",
                   "224x224", "imagenet crop mismatch");
        qd_image_u8_free(&im);
    }
}

static int same_set(const int *a, const int *b, int k) {
    for (int i = 0; i < k; i++) {
        int found = 0;
        for (int j = 0; j < k; j++) found |= a[i] == b[j];
        if (!found) return 0;
    }
    return 1;
}

static void test_sampling(void) {
    enum { N = 1280, K = 256 };
    int a[K], b[K], c[K];
    qd_sample_indices(N, K, 1005, a);
    qd_sample_indices(N, K, 1005, b);
    qd_sample_indices(N, K, 1006, c);
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed -> same sample");
    CHECK(!same_set(a, c, K), "different seed -> different set");
    char seen[N] = {0};
    int dup = 0, range = 0, hist[10] = {0};
    for (int i = 0; i < K; i++) {
        if (a[i] < 0 || a[i] >= N) { range++; continue; }
        dup += seen[a[i]];
        seen[a[i]] = 1;
        hist[a[i] / 128]++;
    }
    CHECK(dup == 0 && range == 0, "sampling without replacement: %d duplicates, %d out of range", dup, range);
    /* 256 of 1280 = 25.6 per 128-image class on average; a sane generator stays well inside 8..50 */
    for (int i = 0; i < 10; i++) CHECK(hist[i] >= 8 && hist[i] <= 50, "class %d drawn %d times of 256", i, hist[i]);
    /* full permutation */
    int p[N];
    qd_sample_indices(N, N, 7, p);
    memset(seen, 0, sizeof seen);
    int bad = 0;
    for (int i = 0; i < N; i++) { bad += p[i] < 0 || p[i] >= N || seen[p[i]]; if (p[i] >= 0 && p[i] < N) seen[p[i]] = 1; }
    CHECK(bad == 0, "full permutation");

    /* dataset-level: calibration sample of 64 from train-calib, thread count must not matter */
    qd_data_options o = opts(QD_PRE_CIFAR);
    o.sample_n = 64;
    qd_dataset d1, d2, d3;
    qd_status s1 = qd_dataset_load_folder("assets/cifar10/train-calib", &o, 3, 32, 32, &d1);
    o.threads = 1;
    qd_status s2 = qd_dataset_load_folder("assets/cifar10/train-calib", &o, 3, 32, 32, &d2);
    o.seed = 1006;
    o.threads = 2;
    qd_status s3 = qd_dataset_load_folder("assets/cifar10/train-calib", &o, 3, 32, 32, &d3);
    CHECK(s1 == QD_OK && s2 == QD_OK && s3 == QD_OK, "calib load: %s", qd_error_message());
    if (s1 == QD_OK && s2 == QD_OK && s3 == QD_OK) {
        CHECK(d1.n == 64 && d2.n == 64 && d3.n == 64, "n");
        CHECK(memcmp(d1.x, d2.x, sizeof(float) * 64 * 3072) == 0, "1 vs 2 threads: same tensors");
        int same = 1, diff_paths = 0;
        for (int i = 0; i < 64; i++) {
            same &= strcmp(d1.paths[i], d2.paths[i]) == 0;
            diff_paths += strcmp(d1.paths[i], d3.paths[i]) != 0;
        }
        CHECK(same, "same seed -> same files");
        CHECK(diff_paths > 32, "different seed -> different files (%d differ)", diff_paths);
        /* the sample is the permutation prefix: matches qd_sample_indices over the sorted list */
        int idx[64];
        qd_sample_indices(1280, 64, 1005, idx);
        qd_image_list L;
        if (qd_imagefolder_list("assets/cifar10/train-calib", &L) == QD_OK) {
            int ok = 1;
            for (int i = 0; i < 64; i++) ok &= strcmp(L.paths[idx[i]], d1.paths[i]) == 0 && L.labels[idx[i]] == d1.labels[i];
            CHECK(ok, "dataset sample = qd_sample_indices order");
            qd_image_list_free(&L);
        }
    }
    qd_dataset_free(&d1);
    qd_dataset_free(&d2);
    qd_dataset_free(&d3);
    /* sample_n larger than the folder: everything, no error */
    o = opts(QD_PRE_CIFAR);
    o.sample_n = 100;
    CHECK(qd_dataset_load_folder(FX "tree", &o, 3, 32, 32, &d1) == QD_OK && d1.n == 6, "sample_n > n gives all (%d)", d1.n);
    qd_dataset_free(&d1);
    /* max_images: evenly spaced over the sorted list (every class represented) */
    o = opts(QD_PRE_CIFAR);
    o.max_images = 20;
    CHECK(qd_dataset_load_folder("assets/cifar10/test", &o, 3, 32, 32, &d1) == QD_OK && d1.n == 20, "max_images");
    if (d1.n == 20)
        for (int i = 0; i < 20; i++) CHECK(d1.labels[i] == i / 2, "max_images label %d = %d", i, d1.labels[i]);
    qd_dataset_free(&d1);
}

static void test_npy(void) {
    const char *tmp = "build-npy-test.npy";
    char tdir[] = "/tmp/qd_data_test_XXXXXX";
    if (!mkdtemp(tdir)) { CHECK(0, "mkdtemp"); return; }
    char path[256], lpath[256];
    snprintf(path, sizeof path, "%s/x.npy", tdir);
    snprintf(lpath, sizeof lpath, "%s/y.npy", tdir);
    (void)tmp;
    /* valid v1.0 float32 [2,3,2,2] written by hand (exactly numpy's layout) */
    {
        FILE *f = fopen(path, "wb");
        const char *h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 2, 2), }";
        char hdr[128];
        int hl = (int)strlen(h);
        int pad = (64 - (10 + hl + 1) % 64) % 64;
        memcpy(hdr, h, (size_t)hl);
        memset(hdr + hl, ' ', (size_t)pad);
        hdr[hl + pad] = '\n';
        unsigned short total = (unsigned short)(hl + pad + 1);
        fwrite("\x93NUMPY\x01\x00", 1, 8, f);
        fputc(total & 255, f);
        fputc(total >> 8, f);
        fwrite(hdr, 1, total, f);
        for (int i = 0; i < 24; i++) { float v = (float)i * 0.5f - 3.0f; fwrite(&v, 4, 1, f); }
        fclose(f);
        /* int64 labels [2] in format 2.0 */
        f = fopen(lpath, "wb");
        const char *h2 = "{\"descr\": \"<i8\", \"fortran_order\": False, \"shape\": (2,)}";
        hl = (int)strlen(h2);
        pad = (64 - (12 + hl + 1) % 64) % 64;
        memcpy(hdr, h2, (size_t)hl);
        memset(hdr + hl, ' ', (size_t)pad);
        hdr[hl + pad] = '\n';
        unsigned int t2 = (unsigned)(hl + pad + 1);
        fwrite("\x93NUMPY\x02\x00", 1, 8, f);
        for (int k = 0; k < 4; k++) fputc((int)((t2 >> (8 * k)) & 255), f);
        fwrite(hdr, 1, t2, f);
        int64_t lab[2] = {7, 3};
        fwrite(lab, 8, 2, f);
        fclose(f);
    }
    qd_npy a;
    qd_status st = qd_npy_load(path, &a);
    CHECK(st == QD_OK, "npy valid: %s", qd_error_message());
    if (st == QD_OK) {
        CHECK(a.dtype == QD_DT_FLOAT && a.ndim == 4 && a.dims[0] == 2 && a.dims[1] == 3 && a.dims[3] == 2 && a.numel == 24,
              "npy shape");
        CHECK(a.f[0] == -3.0f && a.f[23] == 8.5f, "npy values %g %g", a.f[0], a.f[23]);
        qd_npy_free(&a);
    }
    qd_dataset ds;
    st = qd_dataset_load_npy(path, lpath, 3, 2, 2, &ds);
    CHECK(st == QD_OK && ds.n == 2 && ds.labels && ds.labels[0] == 7 && ds.labels[1] == 3 && ds.x[5] == -0.5f,
          "npy dataset: %s", qd_error_message());
    qd_dataset_free(&ds);
    qd_dataset_free(&ds);
    /* dispatch by extension, with sampling */
    qd_data_options o = opts(QD_PRE_CIFAR);
    o.sample_n = 1;
    st = qd_dataset_load(path, lpath, &o, 3, 2, 2, &ds);
    int idx[1];
    qd_sample_indices(2, 1, 1005, idx);
    CHECK(st == QD_OK && ds.n == 1 && ds.labels[0] == (idx[0] == 0 ? 7 : 3), "npy dispatch + sample");
    qd_dataset_free(&ds);
    expect_err(qd_dataset_load_npy(path, NULL, 3, 4, 4, &ds), QD_ERR_DATA, "x.npy: array shape (2, 3, 2, 2)",
               "[N, 3, 4, 4]", "npy shape mismatch");
    expect_err(qd_dataset_load_npy(BAD "x_wrong_shape.npy", NULL, 3, 32, 32, &ds), QD_ERR_DATA, "(4, 3, 16, 16)", NULL,
               "npy wrong shape file");
    expect_err(qd_dataset_load_npy(path, BAD "float_labels.npy", 3, 2, 2, &ds), QD_ERR_DATA, "float_labels.npy",
               "integer", "float labels");
    expect_err(qd_dataset_load_npy(path, path, 3, 2, 2, &ds), QD_ERR_DATA, "integer", NULL, "float tensor as labels");
    expect_err(qd_dataset_load_npy(lpath, NULL, 3, 2, 2, &ds), QD_ERR_DATA, "float32 or float64", NULL, "int tensor as x");
    /* numpy-written valid file (float_labels.npy is '<f4' [4]) */
    st = qd_npy_load(BAD "float_labels.npy", &a);
    CHECK(st == QD_OK && a.numel == 4 && a.ndim == 1, "numpy-written npy: %s", qd_error_message());
    qd_npy_free(&a);

    struct { const char *file, *needle; qd_status st; } bad[] = {
        {"bad_magic.npy", "magic", QD_ERR_DATA},
        {"fortran.npy", "Fortran", QD_ERR_DATA},
        {"big_endian.npy", "'>f4'", QD_ERR_DATA},
        {"complex.npy", "'<c8'", QD_ERR_DATA},
        {"short_data.npy", "size mismatch", QD_ERR_DATA},
        {"long_data.npy", "size mismatch", QD_ERR_DATA},
        {"extra_key.npy", "'extra'", QD_ERR_DATA},
        {"missing_shape.npy", "needs 'descr', 'fortran_order' and 'shape'", QD_ERR_DATA},
        {"bad_shape.npy", "malformed .npy header", QD_ERR_DATA},
        {"not_dict.npy", "malformed .npy header", QD_ERR_DATA},
        {"unterminated.npy", "malformed .npy header", QD_ERR_DATA},
        {"truncated_header.npy", "truncated .npy header", QD_ERR_DATA},
        {"version9.npy", "version 9.0", QD_ERR_DATA},
        {"empty.jpg", "magic", QD_ERR_DATA},
        {"does_not_exist.npy", "cannot open", QD_ERR_NOINPUT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char p[256];
        snprintf(p, sizeof p, BAD "%s", bad[i].file);
        st = qd_npy_load(p, &a);
        expect_err(st, bad[i].st, bad[i].file, bad[i].needle, bad[i].file);
        CHECK(a.f == NULL && a.i == NULL, "%s: no array left allocated", bad[i].file);
    }
    remove(path);
    remove(lpath);
    rmdir(tdir);
}

static void test_bad_images(void) {
    qd_image_u8 im;
    expect_err(qd_jpeg_decode_file(BAD "truncated.jpg", &im), QD_ERR_DATA, "truncated.jpg", "Premature end", "truncated");
    CHECK(im.rgb == NULL, "no image after error");
    expect_err(qd_jpeg_decode_file(BAD "random_bytes.jpg", &im), QD_ERR_DATA, "random_bytes.jpg", "corrupt", "random");
    expect_err(qd_jpeg_decode_file(BAD "empty.jpg", &im), QD_ERR_DATA, "empty.jpg", "empty file", "empty");
    expect_err(qd_jpeg_decode_file(BAD "nope.jpg", &im), QD_ERR_NOINPUT, "nope.jpg", "cannot open", "missing image");

    qd_data_options o = opts(QD_PRE_CIFAR);
    qd_dataset ds;
    /* corrupt image in a folder: error naming the first bad file (slot order), regardless of threads */
    expect_err(qd_dataset_load_folder(BAD "corrupt_folder", &o, 3, 32, 32, &ds), QD_ERR_DATA,
               "corrupt_folder/cls/0001.jpg", "JPEG", "corrupt in folder");
    CHECK(ds.x == NULL && ds.n == 0, "nothing returned on error");
    /* skip_corrupt: two good images survive */
    o.skip_corrupt = 1;
    qd_status st = qd_dataset_load_folder(BAD "corrupt_folder", &o, 3, 32, 32, &ds);
    CHECK(st == QD_OK && ds.n == 2, "skip_corrupt: st %d n %d %s", st, ds.n, qd_error_message());
    if (st == QD_OK && ds.n == 2)
        CHECK(strstr(ds.paths[0], "0000.jpg") && strstr(ds.paths[1], "0003.jpg"), "skip_corrupt kept %s %s", ds.paths[0],
              ds.paths[1]);
    qd_dataset_free(&ds);
    /* skip_corrupt with sampling: a skipped image is replaced by the next candidate */
    o.sample_n = 2;
    st = qd_dataset_load_folder(BAD "corrupt_folder", &o, 3, 32, 32, &ds);
    CHECK(st == QD_OK && ds.n == 2, "skip_corrupt + sample refills: n %d", ds.n);
    qd_dataset_free(&ds);
    o.sample_n = 0;
    /* size mismatch is never skipped */
    expect_err(qd_dataset_load_folder(BAD "wrong_size_folder", &o, 3, 32, 32, &ds), QD_ERR_DATA, "big.jpg: image is 40x36",
               "model input is 32x32", "wrong size");
    o.skip_corrupt = 0;
    /* folder errors */
    expect_err(qd_dataset_load_folder(BAD "no_such_folder", &o, 3, 32, 32, &ds), QD_ERR_NOINPUT, "no_such_folder",
               "not found", "missing folder");
    expect_err(qd_dataset_load_folder(BAD "no_jpeg_folder", &o, 3, 32, 32, &ds), QD_ERR_DATA,
               "no_jpeg_folder: no JPEG images found (expected class sub-folders)", NULL, "no jpeg");
    expect_err(qd_dataset_load_folder(BAD "flat_folder", &o, 3, 32, 32, &ds), QD_ERR_DATA,
               "flat_folder: no JPEG images found (expected class sub-folders)", NULL, "flat folder");
    expect_err(qd_dataset_load_folder(BAD "truncated.jpg", &o, 3, 32, 32, &ds), QD_ERR_NOINPUT, "truncated.jpg",
               "not a folder", "file as folder");
    char tdir[] = "/tmp/qd_data_empty_XXXXXX";
    if (mkdtemp(tdir)) {
        expect_err(qd_dataset_load(tdir, NULL, &o, 3, 32, 32, &ds), QD_ERR_DATA, tdir, "no JPEG images found", "empty folder");
        char sub[300];
        snprintf(sub, sizeof sub, "%s/cls", tdir);
        mkdir(sub, 0700);
        expect_err(qd_dataset_load(tdir, NULL, &o, 3, 32, 32, &ds), QD_ERR_DATA, "no JPEG images found", NULL,
                   "empty class folder");
        rmdir(sub);
        rmdir(tdir);
    }
}

/* Mutated and truncated copies of a real JPEG never crash: each decodes (libjpeg recovers from
 * some corrupt entropy data with a warning, as Pillow does) or fails with QD_ERR_DATA. */
static void test_jpeg_mutations(void) {
    FILE *f = fopen(CIFAR_TEST "dog/0007.jpg", "rb");
    if (!f) { CHECK(0, "open dog/0007.jpg"); return; }
    unsigned char buf[8192], mut[8192];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    uint64_t s = 12345;
    int ok = 0, data_err = 0, other = 0;
    char err[QD_DATA_ERRLEN];
    for (int it = 0; it < 400; it++) {
        memcpy(mut, buf, len);
        size_t n = len;
        if (it < 100) {
            n = (size_t)it * len / 100; /* truncations */
        } else {
            int flips = 1 + it % 8;
            for (int k = 0; k < flips; k++) {
                s = s * 6364136223846793005ULL + 1442695040888963407ULL;
                mut[(s >> 33) % len] = (unsigned char)(s >> 17);
            }
        }
        qd_image_u8 im;
        err[0] = 0;
        int st = qd_jpeg_decode_mem(mut, n, "fuzz.jpg", &im, err, sizeof err);
        if (st == QD_OK) { ok++; qd_image_u8_free(&im); }
        else if (st == QD_ERR_DATA && strncmp(err, "fuzz.jpg: ", 10) == 0) data_err++;
        else { other++; fprintf(stderr, "mutation %d: status %d '%s'\n", it, st, err); }
    }
    CHECK(other == 0, "%d mutations gave an unexpected status", other);
    CHECK(data_err >= 100, "truncations must all fail (%d data errors)", data_err);
}

static void test_metrics(void) {
    /* 4 samples x 6 classes */
    float lg[4 * 6] = {
        0, 5, 1, 2, 3, 4,      /* argmax 1; label 1 -> top1 */
        9, 1, 2, 3, 4, 5,      /* label 1 has rank 5 -> miss top5 */
        1, 1, 1, 1, 1, 1,      /* all tied: argmax 0; label 4 rank 4 -> top5 hit, top1 miss */
        0, 0, NAN, 0, 0, 0,    /* label 2 is NaN -> miss; argmax skips NaN -> 0 */
    };
    int lab[4] = {1, 1, 4, 2};
    double t1 = -1, t5 = -1;
    CHECK(qd_topk_accuracy(lg, lab, 4, 6, &t1, &t5) == QD_OK, "topk");
    CHECK(t1 == 0.25 && t5 == 0.5, "top1 %g top5 %g", t1, t5);
    int am[4];
    qd_argmax_rows(lg, 4, 6, am);
    CHECK(am[0] == 1 && am[1] == 0 && am[2] == 0 && am[3] == 0, "argmax %d %d %d %d", am[0], am[1], am[2], am[3]);
    /* k < 5: top5 covers every class */
    float l3[3] = {0, 1, 2};
    int y0 = 0;
    CHECK(qd_topk_accuracy(l3, &y0, 1, 3, &t1, &t5) == QD_OK && t1 == 0 && t5 == 1, "k<5");
    int ybad = 6;
    expect_err(qd_topk_accuracy(lg, &ybad, 1, 6, &t1, &t5), QD_ERR_DATA, "label 6", "6 classes", "label range");
}

/* Sizes refused from the header, before decoding (docs/reliability.md "Data"). */
static void test_size_limits(void) {
    char err[QD_DATA_ERRLEN];
    qd_data_options c = opts(QD_PRE_CIFAR), in = opts(QD_PRE_IMAGENET);
    CHECK(qd_preprocess_check_dims_r(32, 32, "a.jpg", &c, 3, 32, 32, err, sizeof err) == QD_OK, "cifar 32x32: %s", err);
    CHECK(qd_preprocess_check_dims_r(16000, 16000, "a.jpg", &c, 3, 32, 32, err, sizeof err) == QD_ERR_DATA &&
              strstr(err, "a.jpg: image is 16000x16000 (WxH) but the model input is 32x32"), "cifar 16000x16000: %s", err);
    /* imagenet: ordinary photos and a 10:1 panorama pass; beyond 64:1 is refused */
    CHECK(qd_preprocess_check_dims_r(4000, 3000, "p.jpg", &in, 3, 224, 224, err, sizeof err) == QD_OK, "4000x3000: %s", err);
    CHECK(qd_preprocess_check_dims_r(2560, 256, "p.jpg", &in, 3, 224, 224, err, sizeof err) == QD_OK, "10:1: %s", err);
    CHECK(qd_preprocess_check_dims_r(64, 1, "p.jpg", &in, 3, 224, 224, err, sizeof err) == QD_OK, "64:1: %s", err);
    CHECK(qd_preprocess_check_dims_r(65, 1, "p.jpg", &in, 3, 224, 224, err, sizeof err) == QD_ERR_DATA &&
              strstr(err, "gives 16640x256, more than the 4194304-pixel limit"), "65:1: %s", err);
    CHECK(qd_preprocess_check_dims_r(1, 37633, "thin.jpg", &in, 3, 224, 224, err, sizeof err) == QD_ERR_DATA &&
              strstr(err, "thin.jpg: image is 1x37633 (WxH); resizing it to shorter side 256 gives 256x9634048"), "1x37633: %s", err);
    /* a 1x37633 image through the decoder: refused from the header, nothing resized */
    in.resize_size = 36;
    in.input_size = 32;
    unsigned char *jpg = NULL;
    size_t n = 0;
    FILE *f = fopen("tests/fuzz/corpus/jpeg/thin_1x37633.jpg", "rb");
    if (f) {
        jpg = malloc(1 << 16);
        n = fread(jpg, 1, 1 << 16, f);
        fclose(f);
        qd_image_u8 im;
        int st = qd_jpeg_decode_mem_for(jpg, n, "thin.jpg", &in, 3, 32, 32, &im, err, sizeof err);
        CHECK(st == QD_ERR_UNSUPPORTED && strstr(err, "resizing it to shorter side 36 gives 36x1354788") && !im.rgb,
              "decode 1x37633 for imagenet 36: %d %s", st, err);
        st = qd_jpeg_decode_mem(jpg, n, "thin.jpg", &im, err, sizeof err);
        CHECK(st == QD_OK && im.w == 1 && im.h == 37633, "plain decode of 1x37633: %s", err);
        qd_image_u8_free(&im);
        free(jpg);
    } else {
        CHECK(0, "tests/fuzz/corpus/jpeg/thin_1x37633.jpg missing");
    }
}

int main(void) {
    test_size_limits();
    test_listing();
    test_decode();
    test_resize();
    test_preprocess();
    test_sampling();
    test_npy();
    test_bad_images();
    test_jpeg_mutations();
    test_metrics();
    return qd_test_summary("test_data");
}
