/* src/core/version.c: version and git sha baked in by CMake (QD_VERSION_STRING, QD_GIT_SHA). */
#include <stddef.h>
#include <stdio.h>

#include "qdrop/backend.h"
#include "qdrop/qdrop.h"

#ifndef QD_VERSION_STRING
#define QD_VERSION_STRING "0.0.0-unknown"
#endif
#ifndef QD_GIT_SHA
#define QD_GIT_SHA "unknown"
#endif

const char *qd_version(void) { return QD_VERSION_STRING; }
const char *qd_git_sha(void) { return QD_GIT_SHA; }

#ifndef QD_HAVE_CUDA
/* Host-only build: there are no CUDA/cuDNN/cuBLAS versions to report. The CUDA backend
 * (cuda/) defines the real one when QD_HAVE_CUDA is set. */
void qd_cuda_versions(char *buf, size_t n) {
    if (n > 0) buf[0] = 0;
}
#endif
