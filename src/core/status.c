/* src/core/status.c: status codes -> exit codes, and the thread-local one-line error message. */
#include "qdrop/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>

#include "qdrop/interrupt.h"

static _Thread_local char qd_err_buf[1024];
static _Thread_local int qd_err_set;

int qd_status_exit_code(qd_status st) {
    switch (st) {
    case QD_OK: return QD_EXIT_OK;
    case QD_ERR_USAGE: return QD_EXIT_USAGE;
    case QD_ERR_DATA: return QD_EXIT_DATAERR;
    case QD_ERR_UNSUPPORTED: return QD_EXIT_DATAERR;
    case QD_ERR_NOINPUT: return QD_EXIT_NOINPUT;
    case QD_ERR_INTERNAL: return QD_EXIT_SOFTWARE;
    case QD_ERR_IO: return QD_EXIT_IOERR;
    case QD_ERR_CONFIG: return QD_EXIT_CONFIG;
    case QD_ERR_DEVICE_OOM: return QD_EXIT_DEVICE_OOM;
    case QD_ERR_NUMERIC: return QD_EXIT_NUMERIC;
    case QD_ERR_NODEVICE: return QD_EXIT_UNAVAILABLE;
    case QD_ERR_INTERRUPTED: {
        /* the shell's convention for death by a signal: 128 + its number */
        int sig = qd_interrupted();
        return 128 + (sig > 0 ? sig : SIGINT);
    }
    }
    return QD_EXIT_SOFTWARE;
}

const char *qd_status_name(qd_status st) {
    switch (st) {
    case QD_OK: return "ok";
    case QD_ERR_USAGE: return "usage error";
    case QD_ERR_DATA: return "data error";
    case QD_ERR_UNSUPPORTED: return "unsupported model";
    case QD_ERR_NOINPUT: return "missing input";
    case QD_ERR_INTERNAL: return "internal error";
    case QD_ERR_IO: return "I/O error";
    case QD_ERR_CONFIG: return "config error";
    case QD_ERR_DEVICE_OOM: return "out of device memory";
    case QD_ERR_NUMERIC: return "numerical fault";
    case QD_ERR_NODEVICE: return "device unavailable";
    case QD_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown error";
}

qd_status qd_errorf(qd_status st, const char *fmt, ...) {
    if (!qd_err_set) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(qd_err_buf, sizeof qd_err_buf, fmt, ap);
        va_end(ap);
        /* one line: fold any newline a caller let through */
        for (char *p = qd_err_buf; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
        qd_err_set = 1;
    }
    return st;
}

const char *qd_error_message(void) { return qd_err_set ? qd_err_buf : ""; }

void qd_error_clear(void) {
    qd_err_set = 0;
    qd_err_buf[0] = 0;
}

void qd_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "qdrop-gpu: internal error: assertion `%s' failed at %s:%d\n", expr, file, line);
    abort();
}
