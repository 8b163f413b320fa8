/* tests/fuzz/fuzz_common.h: helpers shared by the libFuzzer targets.
 * Readers that only take a path get the input through a per-process temporary file (in /dev/shm
 * when present, so the fuzzer's exec/s is not bounded by the disk). */
#ifndef QD_FUZZ_COMMON_H
#define QD_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qdrop/status.h"

static char qd_fuzz_tmp[256];
/* results stored here are observable, so reads that only feed them are not optimised away */
volatile float qd_fuzz_sink;
static void qd_fuzz_tmp_remove(void) {
    if (qd_fuzz_tmp[0]) unlink(qd_fuzz_tmp);
}

static inline const char *qd_fuzz_tmp_path(const char *suffix) {
    if (!qd_fuzz_tmp[0]) {
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(qd_fuzz_tmp, sizeof qd_fuzz_tmp, "%s/qd_fuzz_%ld%s", dir, (long)getpid(), suffix);
        atexit(qd_fuzz_tmp_remove); /* libFuzzer exits normally at -max_total_time */
    }
    return qd_fuzz_tmp;
}

/* Write the input to the temp file; returns its path, or NULL when the write failed. */
static inline const char *qd_fuzz_write_tmp(const uint8_t *data, size_t size, const char *suffix) {
    const char *p = qd_fuzz_tmp_path(suffix);
    FILE *f = fopen(p, "wb");
    if (!f) return NULL;
    size_t w = size ? fwrite(data, 1, size, f) : 0;
    if (fclose(f) != 0 || w != size) return NULL;
    return p;
}

/* A reader that fails must leave a one-line message naming the problem: an empty message or a
 * multi-line one is a defect (the CLI prints exactly one line). */
static inline void qd_fuzz_check_error(qd_status st) {
    if (st == QD_OK) return;
    const char *m = qd_error_message();
    if (!m || !m[0]) {
        fprintf(stderr, "fuzz: status %d with an empty error message\n", (int)st);
        abort();
    }
    if (strchr(m, '\n')) {
        fprintf(stderr, "fuzz: multi-line error message: %s\n", m);
        abort();
    }
    if (qd_status_exit_code(st) == 70) {
        fprintf(stderr, "fuzz: bad input reported as an internal error (exit 70): %s\n", m);
        abort();
    }
}

#endif
