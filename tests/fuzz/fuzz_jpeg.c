/* tests/fuzz/fuzz_jpeg.c: libFuzzer target for the JPEG decoder (libjpeg-turbo wrapper,
 * src/data/jpeg.c) through its in-memory entry point, then CIFAR preprocessing of what decoded.
 * Checks: a decoded image has positive dimensions and a buffer of w*h*3 bytes (ASan verifies
 * the reads); a failure carries a message. */
#include "fuzz_common.h"
#include "data/data_internal.h"
#include "qdrop/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 20) return 0;
    qd_image_u8 img = {0};
    char err[QD_DATA_ERRLEN] = "";
    int st = qd_jpeg_decode_mem(data, size, "fuzz.jpg", &img, err, sizeof err);
    if (st != QD_OK) {
        if (!err[0]) { fprintf(stderr, "fuzz: jpeg decode failed (%d) without a message\n", st); abort(); }
        qd_image_u8_free(&img);
        return 0;
    }
    if (img.w <= 0 || img.h <= 0 || !img.rgb) { fprintf(stderr, "fuzz: bad image %dx%d\n", img.w, img.h); abort(); }
    /* touch every byte so ASan checks the buffer size */
    unsigned sum = 0;
    for (size_t i = 0; i < (size_t)img.w * (size_t)img.h * 3; i++) sum += img.rgb[i];
    (void)sum;
    /* preprocessing: CIFAR (no resize: must be 32x32 or fail cleanly) and a small IMAGENET crop */
    if ((size_t)img.w * (size_t)img.h <= 1u << 20) {
        qd_data_options o;
        memset(&o, 0, sizeof o);
        for (int c = 0; c < 3; c++) { o.mean[c] = 0.5f; o.std[c] = 0.25f; }
        o.preprocess = QD_PRE_CIFAR;
        float *out = malloc(3 * 32 * 32 * sizeof(float));
        if (out) {
            char e2[QD_DATA_ERRLEN] = "";
            int s2 = qd_preprocess_image_r(&img, "fuzz.jpg", &o, 3, 32, 32, out, e2, sizeof e2);
            if (s2 != QD_OK && !e2[0]) abort();
            o.preprocess = QD_PRE_IMAGENET;
            o.resize_size = 36;
            o.input_size = 32;
            e2[0] = 0;
            s2 = qd_preprocess_image_r(&img, "fuzz.jpg", &o, 3, 32, 32, out, e2, sizeof e2);
            if (s2 != QD_OK && !e2[0]) abort();
            free(out);
        }
    }
    qd_image_u8_free(&img);
    return 0;
}
