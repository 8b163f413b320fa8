/* src/data/npy_write.c: .npy writer (format 1.0, numpy/lib/format.py) for float32 outputs such
 * as the logits files. Header: "\x93NUMPY", 1, 0, uint16 LE header length, then the dict
 * "{'descr': '<f4', 'fortran_order': False, 'shape': (N, C), }" padded with spaces and ended by
 * a newline so that magic + length + header is a multiple of 64 bytes (numpy's alignment). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/npy_write.h"
#include "qdrop/fsutil.h"

qd_status qd_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *dims) {
    if (ndim < 1 || ndim > 8) return qd_errorf(QD_ERR_INTERNAL, "%s: .npy rank %d not supported", path, ndim);
    char dict[512];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (dims[d] < 0) return qd_errorf(QD_ERR_INTERNAL, "%s: negative dimension", path);
        numel *= dims[d];
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld%s", (long long)dims[d],
                      ndim == 1 ? "," : d + 1 < ndim ? ", " : "");
    }
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    size_t hlen = (size_t)n + 1;                       /* + '\n' */
    size_t total_hdr = 10 + hlen;
    size_t pad = (64 - total_hdr % 64) % 64;
    hlen += pad;
    size_t bytes = sizeof(float) * (size_t)numel;
    unsigned char *buf = malloc(10 + hlen + bytes);
    if (!buf) return qd_errorf(QD_ERR_INTERNAL, "%s: out of host memory", path);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (unsigned char)(hlen & 0xFF);
    buf[9] = (unsigned char)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)n);
    memset(buf + 10 + n, ' ', pad);
    buf[10 + hlen - 1] = '\n';
    /* little-endian float32: the host order on every platform this builds for (x86-64, aarch64) */
    if (bytes) memcpy(buf + 10 + hlen, data, bytes);
    qd_status st = qd_write_file_atomic(path, buf, 10 + hlen + bytes);
    free(buf);
    return st;
}
