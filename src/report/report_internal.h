/* src/report/report_internal.h: text building, escaping and the gnuplot runner shared by the
 * run report and the comparison report. Not public API. */
#ifndef QD_REPORT_INTERNAL_H
#define QD_REPORT_INTERNAL_H

#include <stddef.h>

#include "qdrop/status.h"

/* ---- report_text.c: a growing text buffer; escaping for HTML, Markdown and chart labels ---- */
typedef struct qd_sbuf {
    char *p;
    size_t len, cap;
    int oom;            /* an allocation failed: the text is incomplete */
} qd_sbuf;

void qd_sb_put(qd_sbuf *b, const char *s);
void qd_sb_putn(qd_sbuf *b, const char *s, size_t n);
void qd_sb_printf(qd_sbuf *b, const char *fmt, ...) QD_PRINTF(2, 3);
void qd_sb_free(qd_sbuf *b);
/* text for HTML element content and attribute values: & < > " ' as entities, control characters
 * other than newline/tab and invalid UTF-8 as U+FFFD */
void qd_sb_html(qd_sbuf *b, const char *s);
/* a Markdown inline code span holding s literally (table-safe: | escaped, newlines as spaces) */
void qd_sb_md_code(qd_sbuf *b, const char *s);
/* a fenced Markdown code block holding s literally (the fence is longer than any backtick run) */
void qd_sb_md_block(qd_sbuf *b, const char *s);
/* base64 (RFC 4648) of n bytes */
void qd_sb_base64(qd_sbuf *b, const unsigned char *d, size_t n);
/* chart text: printable ASCII only (other bytes as '?'), at most n-1 bytes */
void qd_chart_title(char *out, size_t n, const char *s);
/* one data-file token: [A-Za-z0-9_.:+-] kept, anything else '_', never empty */
void qd_chart_token(char *out, size_t n, const char *s);

/* ---- report_gnuplot.c: gnuplot without a shell ---- */
typedef struct qd_plotter {
    char gnuplot[1024];     /* absolute path found on PATH; "" when none */
    char work[1200];        /* private working directory (mkdtemp) holding the script and data */
    char note[256];         /* why there are no (or fewer) pictures, for the report */
} qd_plotter;

/* Find gnuplot on PATH (walked here, no shell) and create the working directory inside
 * parent_dir with the fixed chart script in it. Returns 0 when pictures can be drawn; otherwise
 * p->note says why (the report is still written, without pictures). */
int qd_plotter_open(qd_plotter *p, const char *parent_dir);
/* Write `data` to the working directory as the data file of chart `kind` (loss, sqnr, time,
 * series, clusters), run the fixed script for it and return the PNG (malloc'd) in png and n.
 * title/ylabel/opt are passed as gnuplot ARG strings (never evaluated). Returns 0 on success;
 * on failure p->note holds gnuplot's last error line. */
int qd_plotter_draw(qd_plotter *p, const char *kind, const char *data, const char *title, const char *ylabel,
                    const char *opt, unsigned char **png, size_t *n);
/* Remove the working directory and everything in it. */
void qd_plotter_close(qd_plotter *p);

#endif
