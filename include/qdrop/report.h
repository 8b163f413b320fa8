/* qdrop/report.h: the run report (report.html + report.md) of a finished run, and the
 * side-by-side comparison of several runs. Both read only what a run wrote into its output
 * directory (results.json, resolved_config.json, predictions.csv), so a report can be rendered
 * again at any time (`qdrop-gpu report RUN_DIR`, `qdrop-gpu compare RUN_A RUN_B ...`).
 *
 * Pictures are drawn by gnuplot when it is on PATH: a fixed script run without a shell, with
 * every value (numbers, labels, titles) passed as data, never as script text (docs/report.md).
 * report.html is self-contained (PNG pictures inlined as data: URIs, no scripts, no network). */
#ifndef QDROP_REPORT_H
#define QDROP_REPORT_H

#include "qdrop/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_report_options {
    int plots;          /* draw the pictures (needs gnuplot on PATH; without it the report says so) */
} qd_report_options;

/* Render out_dir/report.html, out_dir/report.md and out_dir/plots/ (PNG files) from the finished run in
 * run_dir (out_dir may equal run_dir). Errors: QD_ERR_NOINPUT when run_dir has no results.json,
 * QD_ERR_DATA when it is malformed, QD_ERR_IO when an output cannot be written. */
QD_MUST_USE qd_status qd_report_render(const char *run_dir, const char *out_dir, const qd_report_options *opt);

/* One side-by-side report of nruns finished runs (accuracy, per-unit SQNR, time per phase) in
 * out_dir/report.html + report.md (+ plots/compare_*.png). */
QD_MUST_USE qd_status qd_report_compare(const char *const *run_dirs, int nruns, const char *out_dir,
                                        const qd_report_options *opt);

#ifdef __cplusplus
}
#endif
#endif
