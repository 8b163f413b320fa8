/* tests/fuzz/fuzz_jpeg.c: libFuzzer target for the JPEG decoder (libjpeg-turbo wrapper,
 * src/data/jpeg.c): first the path a run takes (qd_jpeg_decode_mem_for: sizes a 32x32 model
 * cannot use refused from the header), then the plain decoder on frames up to 4 Mpixel, then
 * CIFAR and ImageNet preprocessing of what decoded.
 * Checks: a decoded image has positive dimensions and a buffer of w*h*3 bytes (ASan verifies
 * the reads); a failure carries a message. */
#include "fuzz_common.h"
#include "data/data_internal.h"
#include "qdrop/data.h"

/* Frame size from the first SOF marker, or 0 when there is none before the first scan. */
static long long sof_pixels(const uint8_t *d, size_t n) {
    size_t i = 2;
    while (i + 9 < n && d[i] == 0xFF) {
        uint8_t mk = d[i + 1];
        if (mk == 0xFF) { i++; continue; } /* fill byte */
        if (mk == 0x01 || (mk >= 0xD0 && mk <= 0xD7)) { i += 2; continue; } /* no length */
        size_t len = ((size_t)d[i + 2] << 8) | d[i + 3];
        if (mk >= 0xC0 && mk <= 0xCF && mk != 0xC4 && mk != 0xC8 && mk != 0xCC)
            return (long long)(((unsigned)d[i + 5] << 8) | d[i + 6]) * (long long)(((unsigned)d[i + 7] << 8) | d[i + 8]);
        if (mk == 0xDA || len < 2) break;
        i += 2 + len;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 20) return 0;
    qd_image_u8 img = {0};
    char err[QD_DATA_ERRLEN] = "";
    /* The path a run takes: sizes the model cannot use are refused from the header, before any
     * pixel is decoded (here a 32x32 CIFAR model). */
    qd_data_options oc;
    memset(&oc, 0, sizeof oc);
    for (int c = 0; c < 3; c++) { oc.mean[c] = 0.5f; oc.std[c] = 0.25f; }
    oc.preprocess = QD_PRE_CIFAR;
    int st = qd_jpeg_decode_mem_for(data, size, "fuzz.jpg", &oc, 3, 32, 32, &img, err, sizeof err);
    if (st != QD_OK && !err[0]) { fprintf(stderr, "fuzz: jpeg decode_for failed (%d) without a message\n", st); abort(); }
    if (st == QD_OK && (img.w != 32 || img.h != 32)) { fprintf(stderr, "fuzz: %dx%d passed the 32x32 check\n", img.w, img.h); abort(); }
    qd_image_u8_free(&img);
    /* The decoder on any size: a frame declaring millions of pixels over a few hundred bytes of
     * data decodes (gray) for seconds, as in Pillow; that is not a finding, so only frames up to
     * 4 Mpixel are decoded in full. */
    if (sof_pixels(data, size) > (1LL << 22)) return 0;
    err[0] = 0;
    st = qd_jpeg_decode_mem(data, size, "fuzz.jpg", &img, err, sizeof err);
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
