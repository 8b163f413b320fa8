/* qdrop/log.h: run log (JSON Lines), human log on stderr, and the progress bar.
 *
 * Every event goes to run.log (when open) as one JSON object per line:
 *   {"ts":"2024-05-01T12:00:00.123Z","level":"info","event":"unit_done","msg":"...", <fields>}
 * and to stderr as a human line ("qdrop-gpu: [warn] msg"), or as the same JSON line with
 * qd_log_set_stderr(json=1). quiet leaves only errors on stderr; run.log always gets everything.
 * Debug events (per-iteration training progress) are shown on stderr only when no progress bar
 * is being drawn, so a terminal shows the bar and a CI log shows a line every log_every iterations.
 * All functions are thread-safe.
 */
#ifndef QDROP_LOG_H
#define QDROP_LOG_H

#include <stdint.h>

#include "qdrop/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Progress bar mode (qd_run_options.progress, --progress). */
typedef enum { QD_PROGRESS_AUTO = 0, QD_PROGRESS_ALWAYS = 1, QD_PROGRESS_NEVER = 2 } qd_progress_mode;

typedef enum { QD_LOG_DEBUG = 0, QD_LOG_INFO = 1, QD_LOG_WARN = 2, QD_LOG_ERROR = 3 } qd_log_level;

/* Open (append to) the JSON Lines run log. QD_ERR_IO naming the file on failure, also when the
 * path is a symbolic link (never followed) or not a regular file. */
QD_MUST_USE qd_status qd_log_open(const char *run_log_path);
void qd_log_close(void);
/* stderr format: json = 1 for JSON lines; quiet = 1 for errors only. */
void qd_log_set_stderr(int json, int quiet);

void qd_log_info(const char *event, const char *fmt, ...) QD_PRINTF(2, 3);
void qd_log_warn(const char *event, const char *fmt, ...) QD_PRINTF(2, 3);
void qd_log_error(const char *event, const char *fmt, ...) QD_PRINTF(2, 3);
/* fields_json: extra members without braces, e.g. "\"unit\":3,\"loss\":0.5" (may be NULL). */
void qd_log_event_json(qd_log_level level, const char *event, const char *fields_json, const char *fmt, ...)
    QD_PRINTF(4, 5);

/* The same event written to run.log only (the caller prints its own stderr line). */
void qd_log_file_only(qd_log_level level, const char *event, const char *fields_json, const char *fmt, ...)
    QD_PRINTF(4, 5);

/* Progress bar on stderr: AUTO draws when stderr is a terminal (and not quiet, not JSON),
 * ALWAYS draws, NEVER does not. */
void qd_progress_set_mode(qd_progress_mode mode);
/* 1 when qd_progress_update draws a bar under the current mode. */
int qd_progress_active(void);
/* unit is 0-based; draws "k/N name [####....] iter/iters loss L R it/s ETA this-unit/all-units". */
void qd_progress_update(int unit, int nunits, const char *unit_name, int iter, int iters, double loss, double it_per_s);
/* End the bar line (newline) if one is drawn. */
void qd_progress_done(void);

/* Progress of a long phase of known size (evaluation, range search, cache building):
 *   qd_phase ph; qd_phase_begin(&ph, "FP32 evaluation", "images", n);
 *   ... qd_phase_update(&ph, done); ... qd_phase_end(&ph);
 * With a bar (see above) it redraws "label [####....] done/total what, elapsed, ETA" at most
 * 10 times a second; otherwise it writes an info log line ("progress" event, with elapsed and
 * ETA) once the phase has run 10 s and every 30 s after. qd_phase_end writes a "phase_done"
 * line with the elapsed time (info for phases of 10 s or more, debug for shorter ones).
 * The ETA assumes the remaining items cost what the finished ones did. */
typedef struct qd_phase {
    char label[64];
    char what[24];
    int64_t total, done;
    double t0, last_log, last_draw;
    int logged;
} qd_phase;
void qd_phase_begin(qd_phase *p, const char *label, const char *what, int64_t total);
void qd_phase_update(qd_phase *p, int64_t done);
void qd_phase_end(qd_phase *p);

#ifdef __cplusplus
}
#endif
#endif
