/* qdrop/version.h: version and git sha of this build (src/core/version.c). */
#ifndef QDROP_VERSION_H
#define QDROP_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

const char *qd_version(void);   /* "0.1.0" */
const char *qd_git_sha(void);

#ifdef __cplusplus
}
#endif
#endif
