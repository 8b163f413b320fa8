/* src/data/data_internal.h: helpers shared by the src/data/ files (not public API).
 * Worker threads cannot use qd_errorf (its buffer is thread-local), so the thread-safe
 * variants write their message into a caller buffer and return a qd_status value as int. */
#ifndef QD_DATA_INTERNAL_H
#define QD_DATA_INTERNAL_H

#include <stddef.h>
#include "qdrop/data.h"

#define QD_DATA_ERRLEN 512

int qd_jpeg_decode_mem(const unsigned char *buf, size_t len, const char *path, qd_image_u8 *img, char *err,
                       size_t errlen);
int qd_jpeg_decode_path(const char *path, qd_image_u8 *img, char *err, size_t errlen);
/* The same, refusing from the JPEG header (before any pixel is decoded) an image that
 * qd_preprocess_image_r(o, c, h, w) would refuse: QD_ERR_UNSUPPORTED (exit 65, and never skipped
 * by data.skip_corrupt, like a size mismatch found after decoding). o == NULL: no such check. */
int qd_jpeg_decode_mem_for(const unsigned char *buf, size_t len, const char *path, const qd_data_options *o, int c,
                           int h, int w, qd_image_u8 *img, char *err, size_t errlen);
int qd_jpeg_decode_path_for(const char *path, const qd_data_options *o, int c, int h, int w, qd_image_u8 *img,
                            char *err, size_t errlen);
/* Would qd_preprocess_image_r accept an iw x ih image? Same message as after decoding; an
 * ImageNet resize whose output would exceed min(64 * resize_size^2, QD_RESIZE_MAX_PIXELS) pixels
 * (an aspect ratio beyond 64:1: a 1x37633 image resized to shorter side 256 is 256x9634048) is
 * refused too. Returns QD_OK or
 * QD_ERR_DATA with the message in err. */
#define QD_RESIZE_MAX_PIXELS (1LL << 26)
int qd_preprocess_check_dims_r(int iw, int ih, const char *name, const qd_data_options *o, int c, int h, int w,
                               char *err, size_t errlen);
/* qd_preprocess_image with the message in err instead of qd_errorf. */
int qd_preprocess_image_r(const qd_image_u8 *img, const char *name, const qd_data_options *o, int c, int h, int w,
                          float *out, char *err, size_t errlen);
/* Warning about a skipped input: qd_log_warn when the logging module exists, else stderr. */
void qd_data_warn(const char *event, const char *msg);

#endif
