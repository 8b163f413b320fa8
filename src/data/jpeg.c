/* src/data/jpeg.c: JPEG file -> RGB uint8 with libjpeg-turbo, matching Pillow's decoding.
 *
 * Pillow (JpegDecode.c) uses libjpeg's defaults: JDCT_ISLOW, do_fancy_upsampling = TRUE, no
 * block smoothing override, output RGB (or L then convert("RGB") = replicate). We set the same
 * explicitly so a libjpeg built with other defaults cannot change pixels.
 * libjpeg reports fatal errors through error_exit, which must not return: a setjmp/longjmp error
 * manager turns them into QD_ERR_DATA. Its warnings are not printed. A premature end of data is
 * only a warning to libjpeg (it pads with gray) but an error to Pillow ("image file is
 * truncated"), so we treat JWRN_JPEG_EOF as fatal too. */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "data/data_internal.h"
#include "qdrop/fsutil.h"

/* Refuse absurd dimensions from the header, before libjpeg allocates anything (a progressive
 * file buffers 6 bytes of coefficients per pixel): Pillow's decompression-bomb limit,
 * 2 * Image.MAX_IMAGE_PIXELS = 178,956,970 pixels. The caller's own limit (the model input for
 * CIFAR preprocessing, the resized size for ImageNet) is usually far lower and is checked from
 * the header too (qd_jpeg_decode_mem_for). */
#define QD_JPEG_MAX_PIXELS 178956970LL
/* A JPEG file larger than this is not an image anyone calibrates with. */
#define QD_JPEG_MAX_FILE_BYTES ((size_t)256 << 20)

typedef struct jerr_mgr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jerr_mgr;

static void jerr_exit(j_common_ptr cinfo) {
    jerr_mgr *m = (jerr_mgr *)cinfo->err;
    cinfo->err->format_message(cinfo, m->msg);
    longjmp(m->jb, 1);
}

static void jerr_emit(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) jerr_exit(cinfo);
    if (level < 0) cinfo->err->num_warnings++;
}

static void jerr_output(j_common_ptr cinfo) { (void)cinfo; /* never print */ }

/* A progressive JPEG may hold any number of scans, and each scan makes libjpeg walk the whole
 * coefficient buffer: a few kilobytes of crafted scans keep the decoder busy for minutes (the
 * fuzz_jpeg timeout). Real files have about 10; libjpeg-turbo's own fuzzers stop at 500
 * (TJPARAM_SCANLIMIT), and so do we, through the progress monitor libjpeg calls per scan. */
#define QD_JPEG_MAX_SCANS 500

static void scan_limit_monitor(j_common_ptr cinfo) {
    if (!cinfo->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > QD_JPEG_MAX_SCANS) {
        jerr_mgr *m = (jerr_mgr *)cinfo->err;
        snprintf(m->msg, sizeof m->msg, "more than %d progressive scans", QD_JPEG_MAX_SCANS);
        longjmp(m->jb, 1);
    }
}

/* Pillow's cmyk2rgb (Convert.c): r = 255 - c - k + c*k/255 computed as nk - nk*c/255. */
static uint8_t muldiv255(int a, int b) {
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

int qd_jpeg_decode_mem_for(const unsigned char *buf, size_t len, const char *path, const qd_data_options *o, int c_model,
                           int h_model, int w_model, qd_image_u8 *img, char *err, size_t errlen) {
    struct jpeg_decompress_struct cinfo;
    jerr_mgr jerr;
    /* volatile: modified between setjmp and a possible longjmp */
    uint8_t *volatile rgb = NULL;
    JSAMPLE *volatile row = NULL;

    memset(img, 0, sizeof *img);
    if (len == 0) {
        snprintf(err, errlen, "%s: corrupt JPEG (empty file)", path);
        return QD_ERR_DATA;
    }
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = jerr_exit;
    jerr.pub.emit_message = jerr_emit;
    jerr.pub.output_message = jerr_output;
    jerr.msg[0] = 0;
    if (setjmp(jerr.jb)) {
        snprintf(err, errlen, "%s: corrupt or unsupported JPEG (%s)", path, jerr.msg);
        jpeg_destroy_decompress(&cinfo);
        free(rgb);
        free(row);
        return QD_ERR_DATA;
    }
    jpeg_create_decompress(&cinfo);
    struct jpeg_progress_mgr progress;
    memset(&progress, 0, sizeof progress);
    progress.progress_monitor = scan_limit_monitor;
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, (unsigned char *)buf, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    {
        long long hw = (long long)cinfo.image_width, hh = (long long)cinfo.image_height;
        if (hw <= 0 || hh <= 0 || hw * hh > QD_JPEG_MAX_PIXELS) {
            snprintf(err, errlen, "%s: JPEG header declares %lldx%lld pixels, more than the %lld-pixel limit", path, hw, hh,
                     QD_JPEG_MAX_PIXELS);
            jpeg_destroy_decompress(&cinfo);
            return QD_ERR_DATA;
        }
        /* what preprocessing would refuse after decoding is refused before it */
        if (o) {
            int pst = qd_preprocess_check_dims_r((int)hw, (int)hh, path, o, c_model, h_model, w_model, err, errlen);
            if (pst != QD_OK) {
                jpeg_destroy_decompress(&cinfo);
                return QD_ERR_UNSUPPORTED; /* not a corrupt file: data.skip_corrupt must not skip it */
            }
        }
    }
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    if (cmyk) {
        cinfo.out_color_space = JCS_CMYK;
    } else if (cinfo.num_components == 1 || cinfo.num_components == 3) {
        cinfo.out_color_space = JCS_RGB; /* gray -> RGB replicates, as convert("RGB") */
    } else {
        snprintf(err, errlen, "%s: unsupported JPEG with %d colour components", path, cinfo.num_components);
        jpeg_destroy_decompress(&cinfo);
        return QD_ERR_DATA;
    }
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    cinfo.do_block_smoothing = TRUE; /* libjpeg default; only affects progressive files */
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height, nc = cinfo.output_components;
    if (w <= 0 || h <= 0 || (long long)w * h > QD_JPEG_MAX_PIXELS) {
        snprintf(err, errlen, "%s: JPEG dimensions %dx%d out of range", path, w, h);
        jpeg_destroy_decompress(&cinfo);
        return QD_ERR_DATA;
    }
    rgb = malloc((size_t)w * (size_t)h * 3);
    row = malloc((size_t)w * (size_t)nc);
    if (!rgb || !row) {
        snprintf(err, errlen, "%s: out of host memory decoding %dx%d image", path, w, h);
        jpeg_destroy_decompress(&cinfo);
        free(rgb); free(row);
        return QD_ERR_INTERNAL;
    }
    /* Pillow reads Adobe CMYK JPEGs as inverted ("CMYK;I"). */
    int inverted = cmyk && cinfo.saw_Adobe_marker;
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW rp = row;
        int y = (int)cinfo.output_scanline;
        if (jpeg_read_scanlines(&cinfo, &rp, 1) != 1) {
            snprintf(jerr.msg, sizeof jerr.msg, "no scanline returned");
            longjmp(jerr.jb, 1);
        }
        uint8_t *dst = rgb + (size_t)y * (size_t)w * 3;
        if (!cmyk) {
            memcpy(dst, row, (size_t)w * 3);
        } else {
            for (int x = 0; x < w; x++) {
                int cc[4];
                for (int k = 0; k < 4; k++) cc[k] = inverted ? 255 - row[4 * x + k] : row[4 * x + k];
                int nk = 255 - cc[3];
                for (int k = 0; k < 3; k++) dst[3 * x + k] = (uint8_t)(nk - muldiv255(cc[k], nk));
            }
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    img->w = w;
    img->h = h;
    img->rgb = rgb;
    return QD_OK;
}

int qd_jpeg_decode_mem(const unsigned char *buf, size_t len, const char *path, qd_image_u8 *img, char *err,
                       size_t errlen) {
    return qd_jpeg_decode_mem_for(buf, len, path, NULL, 0, 0, 0, img, err, errlen);
}

int qd_jpeg_decode_path_for(const char *path, const qd_data_options *o, int c, int h, int w, qd_image_u8 *img,
                            char *err, size_t errlen) {
    void *buf = NULL;
    size_t len = 0;
    memset(img, 0, sizeof *img);
    int st = qd_read_input_r(path, "JPEG image", QD_JPEG_MAX_FILE_BYTES, &buf, &len, err, errlen);
    if (st != QD_OK) return st;
    st = qd_jpeg_decode_mem_for(buf, len, path, o, c, h, w, img, err, errlen);
    free(buf);
    return st;
}

int qd_jpeg_decode_path(const char *path, qd_image_u8 *img, char *err, size_t errlen) {
    return qd_jpeg_decode_path_for(path, NULL, 0, 0, 0, img, err, errlen);
}

qd_status qd_jpeg_decode_file(const char *path, qd_image_u8 *img) {
    char err[QD_DATA_ERRLEN];
    int st = qd_jpeg_decode_path(path, img, err, sizeof err);
    if (st != QD_OK) return qd_errorf((qd_status)st, "%s", err);
    return QD_OK;
}

void qd_image_u8_free(qd_image_u8 *img) {
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}
