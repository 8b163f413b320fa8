/* src/data/preprocess.c: torchvision-equivalent preprocessing of decoded RGB images.
 *
 * Resize is a port of Pillow's Resample.c for 8-bit images (ImagingResample with the BILINEAR
 * filter, box = whole image, no reducing_gap), the path torchvision's Resize takes for PIL
 * images: coefficients in double, normalised per output pixel, converted to 22-bit fixed point
 * (PRECISION_BITS = 32 - 8 - 2), horizontal pass into a uint8 temporary covering only the rows
 * the vertical pass reads, then the vertical pass; each pass rounds (+ half) and clips to uint8.
 * The only intended difference from Pillow: none known; verified bit-exact against Pillow on the
 * committed fixture (tests/fixtures/data/). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

#define PRECISION_BITS (32 - 8 - 2)

static double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

/* Pillow precompute_coeffs + normalize_coeffs_8bpc. Returns ksize, or 0 on allocation failure. */
static int precompute_coeffs(int in_size, double in0, double in1, int out_size, int **boundsp, int **kkp) {
    const double support_base = 1.0; /* bilinear */
    double scale = (in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = support_base * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *kk = malloc((size_t)out_size * (size_t)ksize * sizeof(double));
    int *bounds = malloc((size_t)out_size * 2 * sizeof(int));
    int *ik = malloc((size_t)out_size * (size_t)ksize * sizeof(int));
    if (!kk || !bounds || !ik) {
        free(kk); free(bounds); free(ik);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5); /* truncation, as Pillow */
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = &kk[xx * ksize];
        int x;
        for (x = 0; x < xmax; x++) {
            double wv = bilinear_filter((x + xmin - center + 0.5) * ss);
            k[x] = wv;
            ww += wv;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        bounds[xx * 2 + 0] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    for (int i = 0; i < out_size * ksize; i++)
        ik[i] = kk[i] < 0 ? (int)(-0.5 + kk[i] * (1 << PRECISION_BITS)) : (int)(0.5 + kk[i] * (1 << PRECISION_BITS));
    free(kk);
    *boundsp = bounds;
    *kkp = ik;
    return ksize;
}

static uint8_t clip8(int in) {
    if (in >= (1 << PRECISION_BITS << 8)) return 255;
    if (in <= 0) return 0;
    return (uint8_t)(in >> PRECISION_BITS);
}

qd_status qd_image_resize_bilinear(const uint8_t *src, int w, int h, int ow, int oh, uint8_t *dst) {
    if (w <= 0 || h <= 0 || ow <= 0 || oh <= 0)
        return qd_errorf(QD_ERR_INTERNAL, "resize: bad sizes %dx%d -> %dx%d", w, h, ow, oh);
    int *bh = NULL, *kh = NULL, *bv = NULL, *kv = NULL;
    int ksh = precompute_coeffs(w, 0.0, (double)w, ow, &bh, &kh);
    int ksv = ksh ? precompute_coeffs(h, 0.0, (double)h, oh, &bv, &kv) : 0;
    if (!ksh || !ksv) {
        free(bh); free(kh);
        return qd_errorf(QD_ERR_INTERNAL, "out of host memory (resize)");
    }
    int need_h = ow != w, need_v = oh != h;
    int yfirst = bv[0], ylast = bv[oh * 2 - 2] + bv[oh * 2 - 1];
    const uint8_t *cur = src;
    int cur_w = w;
    uint8_t *tmp = NULL;
    if (need_h) {
        /* Pillow shifts the vertical bounds and only resamples rows [yfirst, ylast). */
        for (int i = 0; i < oh; i++) bv[i * 2] -= yfirst;
        int th = ylast - yfirst;
        tmp = malloc((size_t)ow * (size_t)th * 3);
        if (!tmp) {
            free(bh); free(kh); free(bv); free(kv);
            return qd_errorf(QD_ERR_INTERNAL, "out of host memory (resize)");
        }
        for (int yy = 0; yy < th; yy++) {
            const uint8_t *in_row = src + (size_t)(yy + yfirst) * (size_t)w * 3;
            uint8_t *out_row = tmp + (size_t)yy * (size_t)ow * 3;
            for (int xx = 0; xx < ow; xx++) {
                int xmin = bh[xx * 2], xmax = bh[xx * 2 + 1];
                const int *k = &kh[xx * ksh];
                int s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
                for (int x = 0; x < xmax; x++) {
                    const uint8_t *p = in_row + (size_t)(x + xmin) * 3;
                    s0 += p[0] * k[x];
                    s1 += p[1] * k[x];
                    s2 += p[2] * k[x];
                }
                out_row[xx * 3 + 0] = clip8(s0);
                out_row[xx * 3 + 1] = clip8(s1);
                out_row[xx * 3 + 2] = clip8(s2);
            }
        }
        cur = tmp;
        cur_w = ow;
    }
    if (need_v) {
        for (int yy = 0; yy < oh; yy++) {
            int ymin = bv[yy * 2], ymax = bv[yy * 2 + 1];
            const int *k = &kv[yy * ksv];
            uint8_t *out_row = dst + (size_t)yy * (size_t)cur_w * 3;
            for (int xx = 0; xx < cur_w; xx++) {
                int s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
                for (int y = 0; y < ymax; y++) {
                    const uint8_t *p = cur + ((size_t)(y + ymin) * (size_t)cur_w + (size_t)xx) * 3;
                    s0 += p[0] * k[y];
                    s1 += p[1] * k[y];
                    s2 += p[2] * k[y];
                }
                out_row[xx * 3 + 0] = clip8(s0);
                out_row[xx * 3 + 1] = clip8(s1);
                out_row[xx * 3 + 2] = clip8(s2);
            }
        }
    } else {
        /* no vertical pass: cur already has oh rows (yfirst = 0, ylast = h when oh == h) */
        memcpy(dst, cur, (size_t)cur_w * (size_t)oh * 3);
    }
    free(tmp);
    free(bh); free(kh); free(bv); free(kv);
    return QD_OK;
}

/* torchvision Resize(int): shorter side -> resize_size, longer side truncated int(size * long / short). */
static void resized_dims(int iw, int ih, int rs, long long *rw, long long *rh) {
    if (iw <= ih) {
        *rw = rs;
        *rh = (long long)rs * ih / iw;
    } else {
        *rh = rs;
        *rw = (long long)rs * iw / ih;
    }
}

int qd_preprocess_check_dims_r(int iw, int ih, const char *name, const qd_data_options *o, int c, int h, int w,
                               char *err, size_t errlen) {
    if (c != 3) {
        snprintf(err, errlen, "%s: the model expects %d input channels, JPEG images give 3 (RGB)", name, c);
        return QD_ERR_DATA;
    }
    if (iw <= 0 || ih <= 0) {
        snprintf(err, errlen, "%s: image is %dx%d", name, iw, ih);
        return QD_ERR_DATA;
    }
    if (o->preprocess == QD_PRE_IMAGENET) {
        int rs = o->resize_size;
        long long rw = 0, rh = 0;
        if (rs > 0) resized_dims(iw, ih, rs, &rw, &rh);
        if (rs <= 0 || rw <= 0 || rh <= 0) {
            snprintf(err, errlen, "%s: cannot resize a %dx%d image to shorter side %d", name, iw, ih, rs);
            return QD_ERR_DATA;
        }
        /* the resized image only feeds a center crop: an aspect ratio beyond 64:1 or more than
         * QD_RESIZE_MAX_PIXELS is not a photo but a memory (and time) bomb */
        long long limit = 64LL * rs * rs < QD_RESIZE_MAX_PIXELS ? 64LL * rs * rs : QD_RESIZE_MAX_PIXELS;
        if (rw * rh > limit) {
            snprintf(err, errlen,
                     "%s: image is %dx%d (WxH); resizing it to shorter side %d gives %lldx%lld, more than the %lld-pixel "
                     "limit (aspect ratio beyond 64:1 or too large for imagenet preprocessing)",
                     name, iw, ih, rs, rw, rh, limit);
            return QD_ERR_DATA;
        }
        int cs = o->input_size;
        if (cs != w || cs != h || cs > rw || cs > rh) {
            snprintf(err, errlen,
                     "%s: image is %lldx%lld after resizing to %d; center crop %dx%d does not give the model input %dx%d "
                     "(data.input_size / data.resize_size)",
                     name, rw, rh, o->resize_size, cs, cs, w, h);
            return QD_ERR_DATA;
        }
    } else if (iw != w || ih != h) {
        snprintf(err, errlen, "%s: image is %dx%d (WxH) but the model input is %dx%d; %s preprocessing does not resize",
                 name, iw, ih, w, h, o->preprocess == QD_PRE_CIFAR ? "cifar" : "'none'");
        return QD_ERR_DATA;
    }
    return QD_OK;
}

int qd_preprocess_image_r(const qd_image_u8 *img, const char *name, const qd_data_options *o, int c, int h, int w,
                          float *out, char *err, size_t errlen) {
    int cst = qd_preprocess_check_dims_r(img->w, img->h, name, o, c, h, w, err, errlen);
    if (cst != QD_OK) return cst;
    const uint8_t *px = img->rgb;
    int iw = img->w, ih = img->h;
    uint8_t *resized = NULL;
    int x0 = 0, y0 = 0; /* crop offset */
    if (o->preprocess == QD_PRE_IMAGENET) {
        /* CenterCrop offsets int(round((in - crop) / 2)), Python's round = ties-to-even (rint).
         * The sizes were checked above. */
        long long rwl, rhl;
        resized_dims(iw, ih, o->resize_size, &rwl, &rhl);
        int rw = (int)rwl, rh = (int)rhl;
        if (rw != iw || rh != ih) {
            resized = malloc((size_t)rw * (size_t)rh * 3);
            if (!resized) {
                snprintf(err, errlen, "%s: out of host memory (resize)", name);
                return QD_ERR_INTERNAL;
            }
            qd_status st = qd_image_resize_bilinear(px, iw, ih, rw, rh, resized);
            if (st != QD_OK) {
                free(resized);
                snprintf(err, errlen, "%s: resize failed", name);
                return st;
            }
            px = resized;
        }
        iw = rw;
        ih = rh;
        int cs = o->input_size;
        x0 = (int)rint((iw - cs) / 2.0);
        y0 = (int)rint((ih - cs) / 2.0);
    }
    int normalize = o->preprocess != QD_PRE_NONE;
    size_t plane = (size_t)h * (size_t)w;
    for (int ch = 0; ch < 3; ch++) {
        float m = normalize ? o->mean[ch] : 0.0f, s = normalize ? o->std[ch] : 1.0f;
        float *dst = out + (size_t)ch * plane;
        for (int y = 0; y < h; y++) {
            const uint8_t *row = px + ((size_t)(y + y0) * (size_t)iw + (size_t)x0) * 3 + ch;
            for (int x = 0; x < w; x++) {
                /* torch: ToTensor divides by 255 (float32), Normalize subtracts then divides */
                float v = (float)row[(size_t)x * 3] / 255.0f;
                dst[(size_t)y * w + x] = normalize ? (v - m) / s : v;
            }
        }
    }
    free(resized);
    return QD_OK;
}

qd_status qd_preprocess_image(const qd_image_u8 *img, const char *name, const qd_data_options *o, int c, int h,
                              int w, float *out) {
    char err[QD_DATA_ERRLEN];
    int st = qd_preprocess_image_r(img, name, o, c, h, w, out, err, sizeof err);
    if (st != QD_OK) return qd_errorf((qd_status)st, "%s", err);
    return QD_OK;
}
