/* tests/fuzz/fuzz_npy.c: libFuzzer target for the .npy reader (src/data/npy.c), through a
 * temporary file (qd_npy_load takes a path). Checks: on success numel equals the product of the
 * dims and the data buffer holds numel elements (every element is read, so ASan verifies it). */
#include "fuzz_common.h"
#include "qdrop/data.h"
#include "qdrop/graph.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 20) return 0;
    const char *path = qd_fuzz_write_tmp(data, size, ".npy");
    if (!path) return 0;
    qd_npy a;
    memset(&a, 0, sizeof a);
    qd_error_clear();
    qd_status st = qd_npy_load(path, &a);
    qd_fuzz_check_error(st);
    if (st == QD_OK) {
        int64_t n = 1;
        for (int d = 0; d < a.ndim; d++) n *= a.dims[d];
        if (a.ndim < 0 || a.ndim > 8 || n != a.numel) {
            fprintf(stderr, "fuzz: npy numel %lld != product of dims %lld\n", (long long)a.numel, (long long)n);
            abort();
        }
        double s = 0;
        if (a.dtype == QD_DT_FLOAT) for (int64_t i = 0; i < a.numel; i++) s += a.f[i];
        else for (int64_t i = 0; i < a.numel; i++) s += (double)a.i[i];
        (void)s;
    }
    qd_npy_free(&a);
    qd_npy_free(&a); /* documented as safe to call twice */
    return 0;
}
