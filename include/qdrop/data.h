/* qdrop/data.h: image data input (JPEG ImageFolder, .npy tensors), preprocessing, calibration
 * sampling and classification metrics. Implemented in src/data/.
 *
 * Reference behaviour is torchvision's ImageFolder + transforms on Pillow (docs/algorithm.md §11):
 *   - ImageFolder: class sub-folders sorted by name (byte order, like Python's sorted()) give the
 *     label indices; files inside a class folder (recursively) sorted by (folder, name).
 *     Only JPEG files (.jpg / .jpeg, any letter case) are read; other files are ignored.
 *     Entries whose name starts with '.' are ignored (torchvision would list hidden folders).
 *   - JPEG decoding: libjpeg-turbo with Pillow's defaults (JDCT_ISLOW, fancy upsampling, RGB);
 *     grayscale is replicated to RGB (Pillow's convert("RGB")); CMYK/YCCK via Pillow's formula.
 *     A truncated file is an error, as in Pillow (libjpeg alone would pad it with gray).
 *   - Preprocessing (qd_preprocess, config data.preprocess):
 *       CIFAR:    no resize; ToTensor (x/255) then Normalize(mean, std)
 *       IMAGENET: Resize(resize_size) (shorter side, PIL antialiased BILINEAR, long side
 *                 int(resize_size * long / short)), CenterCrop(input_size), ToTensor, Normalize
 *       NONE:     x/255 only
 *     The arithmetic is float32 in the same order as torch ((x / 255 - mean) / std), so the
 *     tensors are bit-identical to torchvision's for the same decoded pixels.
 * Thread-safety: every function is reentrant; qd_dataset_load_folder starts its own threads.
 * Ownership: qd_dataset / qd_image_list / qd_npy own their arrays; release with the _free calls
 * (which accept zeroed structs and may be called twice).
 */
#ifndef QDROP_DATA_H
#define QDROP_DATA_H

#include <stddef.h>
#include <stdint.h>
#include "qdrop/config.h"
#include "qdrop/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_dataset {
    int n;             /* samples */
    int c, h, w;       /* per-sample shape */
    float *x;          /* [n, c, h, w] preprocessed, normalized */
    int *labels;       /* [n], or NULL when the source has none */
    char **paths;      /* [n] source file of each sample (ImageFolder), or NULL (.npy) */
    int nclasses;      /* class folders found (ImageFolder), else 0 */
    char **class_names;/* [nclasses] folder names, or NULL */
} qd_dataset;

void qd_dataset_free(qd_dataset *ds);

typedef struct qd_data_options {
    qd_preprocess preprocess;
    float mean[3], std[3];
    int input_size;    /* IMAGENET crop size */
    int resize_size;   /* IMAGENET shorter side before the crop */
    int skip_corrupt;  /* unreadable JPEG: warn and skip instead of QD_ERR_DATA */
    int threads;       /* decoding threads; 0 = online CPUs (at least 2) */
    int sample_n;      /* > 0: random sample of this many images without replacement (calibration) */
    int max_images;    /* > 0 (and sample_n == 0): this many images evenly spaced over the sorted
                          list (index floor(i * total / max_images)), so every class is represented */
    uint64_t seed;     /* sampling seed (process.seed) */
} qd_data_options;

/* Options from the config's data.* / process.* keys (sample_n, max_images set to 0). */
void qd_data_options_from_config(const qd_config *cfg, qd_data_options *o);

/* ---- ImageFolder listing ---- */
typedef struct qd_image_list {
    int n;
    char **paths;      /* [n] root/class/.../file */
    int *labels;       /* [n] class index */
    int nclasses;
    char **class_names;/* [nclasses] sorted */
} qd_image_list;

/* Missing/unreadable root -> QD_ERR_NOINPUT; no class folder with a JPEG -> QD_ERR_DATA
 * "ROOT: no JPEG images found (expected class sub-folders)". */
QD_MUST_USE qd_status qd_imagefolder_list(const char *root, qd_image_list *list);
void qd_image_list_free(qd_image_list *list);

/* ---- JPEG decoding ---- */
typedef struct qd_image_u8 {
    int w, h;          /* pixels */
    uint8_t *rgb;      /* [h, w, 3] interleaved RGB, owned */
} qd_image_u8;

/* Decode one JPEG file to RGB. Missing file -> QD_ERR_NOINPUT; corrupt/truncated/not a JPEG ->
 * QD_ERR_DATA naming the file and libjpeg's reason. Never prints. */
QD_MUST_USE qd_status qd_jpeg_decode_file(const char *path, qd_image_u8 *img);
void qd_image_u8_free(qd_image_u8 *img);

/* PIL Image.resize(BILINEAR) on RGB uint8 (antialiased: support scaled by the downscale factor,
 * 22-bit fixed-point coefficients, horizontal pass then vertical, each rounded to uint8). */
QD_MUST_USE qd_status qd_image_resize_bilinear(const uint8_t *src, int w, int h, int ow, int oh, uint8_t *dst);

/* Preprocess one decoded image into out[3, H, W] per o->preprocess. A size after preprocessing
 * other than (H, W) -> QD_ERR_DATA naming `name`, its size and the expected size. */
QD_MUST_USE qd_status qd_preprocess_image(const qd_image_u8 *img, const char *name, const qd_data_options *o,
                                          int c, int h, int w, float *out);

/* ---- datasets ---- */
/* ImageFolder of JPEGs -> dataset of shape [n, c, h, w] (c must be 3). Sampling per o->sample_n /
 * o->max_images; with skip_corrupt a skipped image is replaced by the next one in sampling order.
 * The sample order is the order of a seeded Fisher-Yates shuffle (not sorted), so any prefix of a
 * calibration set is itself a random sample. Decoding runs on o->threads pthreads; the result
 * does not depend on the thread count. */
QD_MUST_USE qd_status qd_dataset_load_folder(const char *root, const qd_data_options *o, int c, int h, int w,
                                             qd_dataset *ds);
/* .npy float tensor [N, C, H, W] (float32 or float64) + optional 1-D integer labels [N]. */
QD_MUST_USE qd_status qd_dataset_load_npy(const char *x_path, const char *labels_path, int c, int h, int w,
                                          qd_dataset *ds);
/* Dispatch: a path ending in .npy is loaded with qd_dataset_load_npy (then sampled per o),
 * anything else as an ImageFolder. labels_path only applies to .npy. */
QD_MUST_USE qd_status qd_dataset_load(const char *path, const char *labels_path, const qd_data_options *o,
                                      int c, int h, int w, qd_dataset *ds);

/* Sampling: idx[0..k) = the first k entries of a Fisher-Yates permutation of [0, n) driven by
 * splitmix64(seed) (k <= n). Deterministic across platforms. */
void qd_sample_indices(int n, int k, uint64_t seed, int *idx);

/* ---- .npy ---- */
typedef struct qd_npy {
    int dtype;         /* QD_DT_FLOAT (float32/float64 input), QD_DT_INT64 (int64/int32/uint8 input) */
    int ndim;
    int64_t dims[8];
    int64_t numel;
    float *f;          /* when dtype == QD_DT_FLOAT */
    int64_t *i;        /* when dtype == QD_DT_INT64 */
} qd_npy;

/* Reads format versions 1.0-3.0, C order, little-endian '<f4' '<f8' '<i8' '<i4' '|u1'.
 * Malformed header, Fortran order, other dtypes, or a data size that disagrees with the file
 * length -> QD_ERR_DATA naming the file and the problem; missing file -> QD_ERR_NOINPUT. */
QD_MUST_USE qd_status qd_npy_load(const char *path, qd_npy *arr);
void qd_npy_free(qd_npy *arr);

/* ---- metrics ---- */
/* Fraction of rows whose label is the argmax (top1) / among the 5 largest (top5; all classes when
 * k < 5). Ties rank the lower class index first (argmax = first maximum, like torch); a NaN logit
 * for the label counts as a miss. Label outside [0, k) -> QD_ERR_DATA. */
QD_MUST_USE qd_status qd_topk_accuracy(const float *logits, const int *labels, int n, int k, double *top1,
                                       double *top5);
/* out[i] = index of the first maximum of row i (NaNs are skipped; an all-NaN row gives 0). */
void qd_argmax_rows(const float *logits, int n, int k, int *out);

#ifdef __cplusplus
}
#endif
#endif
