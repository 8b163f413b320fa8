/* src/backend/registry.c: the backend registry ("cpu", "cuda", "auto"). It sits above the
 * backends it creates (src/cpu, cuda/), so nothing below this layer depends on a backend. */
#include <stddef.h>
#include <string.h>

#include "qdrop/backend.h"

#ifndef QD_HAVE_CUDA
/* Host-only build: no CUDA backend compiled in (cuda/ defines the real one). */
int qd_cuda_available(void) { return 0; }
const char *qd_cuda_unavailable_reason(void) { return "this build has no CUDA backend"; }
int qd_cuda_memory_info(int64_t *used_bytes, int64_t *total_bytes) {
    if (used_bytes) *used_bytes = 0;
    if (total_bytes) *total_bytes = 0;
    return -1;
}
/* There are no CUDA/cuDNN/cuBLAS versions to report. */
void qd_cuda_versions(char *buf, size_t n) {
    if (n > 0) buf[0] = 0;
}
#endif

qd_status qd_backend_create(const char *kind, const qd_backend_options *opt, qd_backend **out) {
    qd_backend_options defaults;
    *out = NULL;
    if (!opt) {
        memset(&defaults, 0, sizeof defaults);
        opt = &defaults;
    }
    if (!kind || !kind[0] || strcmp(kind, "auto") == 0) {
#ifdef QD_HAVE_CUDA
        if (qd_cuda_available()) return qd_cuda_backend_create(opt, out);
#endif
        return qd_cpu_backend_create(opt, out);
    }
    if (strcmp(kind, "cpu") == 0) return qd_cpu_backend_create(opt, out);
    if (strcmp(kind, "cuda") == 0) {
#ifdef QD_HAVE_CUDA
        if (!qd_cuda_available())
            return qd_errorf(QD_ERR_NODEVICE, "--device cuda: no usable CUDA device (%s; use --device cpu or auto)",
                             qd_cuda_unavailable_reason());
        return qd_cuda_backend_create(opt, out);
#else
        return qd_errorf(QD_ERR_NODEVICE, "--device cuda: no usable CUDA device (%s; use --device cpu or auto)",
                         qd_cuda_unavailable_reason());
#endif
    }
    return qd_errorf(QD_ERR_USAGE, "--device: unknown backend '%s' (expected cpu, cuda or auto)", kind);
}

void qd_backend_destroy(qd_backend *b) {
    if (b && b->ops && b->ops->destroy) b->ops->destroy(b);
}
