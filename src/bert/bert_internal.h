/* src/bert/bert_internal.h: tables and helpers shared by the src/bert/ files. */
#ifndef QD_BERT_INTERNAL_H
#define QD_BERT_INTERNAL_H
#include <stdint.h>
#include "qdrop/bert.h"

typedef struct { uint32_t lo, hi; } qd_u_range;
typedef struct { uint32_t from, to; } qd_u_map1;
typedef struct { uint32_t from; uint32_t to[3]; } qd_u_map3;

extern const qd_u_range qd_u_punct[], qd_u_mn[], qd_u_zs[], qd_u_control[];
extern const int qd_u_punct_n, qd_u_mn_n, qd_u_zs_n, qd_u_control_n;
extern const qd_u_map1 qd_u_lower[];
extern const int qd_u_lower_n;
extern const qd_u_map3 qd_u_strip[];
extern const int qd_u_strip_n;

/* Read a whole file (NUL-terminated; *n excludes the NUL). QD_ERR_NOINPUT on failure. */
qd_status qd_bert_read_file(const char *path, char **buf, size_t *n);
#endif
