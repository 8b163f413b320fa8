/* qdrop/status.h: status codes, their process exit codes, and the one-line error message.
 *
 * Every fallible function returns qd_status (marked QD_MUST_USE). The first failure records a
 * one-line message with qd_errorf(); the CLI prints it and exits with qd_status_exit_code().
 * Exit codes follow sysexits(3), documented in README.md and `qdrop-gpu --help`.
 * Thread-safety: the message buffer is thread-local.
 */
#ifndef QDROP_STATUS_H
#define QDROP_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define QD_MUST_USE __attribute__((warn_unused_result))
#define QD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define QD_MUST_USE
#define QD_PRINTF(a, b)
#endif

typedef enum qd_status {
    QD_OK = 0,
    QD_ERR_USAGE = 1,      /* bad command line                         -> exit 64 */
    QD_ERR_DATA = 2,       /* malformed model/data content             -> exit 65 */
    QD_ERR_NOINPUT = 3,    /* input file/folder missing or unreadable  -> exit 66 */
    QD_ERR_INTERNAL = 4,   /* bug, CUDA/cuDNN failure                  -> exit 70 */
    QD_ERR_IO = 5,         /* write failure, disk full                 -> exit 74 */
    QD_ERR_CONFIG = 6,     /* config key/type/range                    -> exit 78 */
    QD_ERR_DEVICE_OOM = 7, /* device memory budget exceeded            -> exit 75 */
    QD_ERR_NUMERIC = 8,    /* NaN/Inf during reconstruction            -> exit 76 */
    QD_ERR_UNSUPPORTED = 9,/* valid model using something we do not run -> exit 65 */
    QD_ERR_NODEVICE = 10,  /* --device cuda without a usable GPU       -> exit 69 */
    QD_ERR_INTERRUPTED = 11/* SIGINT/SIGTERM (qdrop/interrupt.h)  -> exit 128 + signal: 130, 143 */
} qd_status;

/* Exit codes (sysexits style). */
enum {
    QD_EXIT_OK = 0,
    QD_EXIT_USAGE = 64,
    QD_EXIT_DATAERR = 65,
    QD_EXIT_NOINPUT = 66,
    QD_EXIT_UNAVAILABLE = 69, /* requested device not available */
    QD_EXIT_SOFTWARE = 70,
    QD_EXIT_IOERR = 74,
    QD_EXIT_DEVICE_OOM = 75,  /* out of device memory (EX_TEMPFAIL: retry with a budget) */
    QD_EXIT_NUMERIC = 76,     /* reconstruction diverged (NaN/Inf) */
    QD_EXIT_CONFIG = 78
};

int qd_status_exit_code(qd_status st);
const char *qd_status_name(qd_status st);

/* Record the error message (first error wins until qd_error_clear). Returns st for chaining:
 *   return qd_errorf(QD_ERR_CONFIG, "%s: expected an integer in 2..8, got %d", path, v); */
qd_status qd_errorf(qd_status st, const char *fmt, ...) QD_PRINTF(2, 3);
const char *qd_error_message(void);
void qd_error_clear(void);

#define QD_TRY(expr)                         \
    do {                                     \
        qd_status qd_try_st_ = (expr);       \
        if (qd_try_st_ != QD_OK) return qd_try_st_; \
    } while (0)

/* Assertion that stays on in release builds (a calibration run costs far more than a branch). */
#define QD_ASSERT(cond)                                                                  \
    do {                                                                                 \
        if (!(cond)) qd_assert_fail(#cond, __FILE__, __LINE__);                          \
    } while (0)
void qd_assert_fail(const char *expr, const char *file, int line);

#ifdef __cplusplus
}
#endif
#endif
