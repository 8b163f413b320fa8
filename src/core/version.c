/* src/core/version.c: version and git sha baked in by CMake (QD_VERSION_STRING, QD_GIT_SHA). */
#include "qdrop/version.h"

#ifndef QD_VERSION_STRING
#define QD_VERSION_STRING "0.0.0-unknown"
#endif
#ifndef QD_GIT_SHA
#define QD_GIT_SHA "unknown"
#endif

const char *qd_version(void) { return QD_VERSION_STRING; }
const char *qd_git_sha(void) { return QD_GIT_SHA; }
