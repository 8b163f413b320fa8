/* src/data/npy_write.h: write a float32 array as a NumPy .npy file (format 1.0), atomically. */
#ifndef QD_NPY_WRITE_H
#define QD_NPY_WRITE_H

#include <stdint.h>
#include "qdrop/status.h"

/* C-order little-endian float32 ('<f4'), shape dims[0..ndim-1] (1 <= ndim <= 8). Written with
 * qd_write_file_atomic: temporary file, fsync, rename; QD_ERR_IO naming the path on failure. */
QD_MUST_USE qd_status qd_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *dims);

#endif
