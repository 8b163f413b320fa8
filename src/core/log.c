/* src/core/log.c: JSON Lines run log, human/JSON stderr log, progress bar (qdrop/log.h). */
#include "qdrop/log.h"
#include "qdrop/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static FILE *g_file;          /* run.log */
static int g_json, g_quiet;   /* stderr format */
static qd_progress_mode g_pmode = QD_PROGRESS_AUTO;
static int g_bar_drawn;       /* a bar is on the current stderr line */

static const char *level_name(qd_log_level l) {
    switch (l) {
    case QD_LOG_DEBUG: return "debug";
    case QD_LOG_INFO: return "info";
    case QD_LOG_WARN: return "warn";
    case QD_LOG_ERROR: return "error";
    }
    return "info";
}

qd_status qd_log_open(const char *path) {
    /* O_NOFOLLOW: a run.log planted as a symlink must not make the run append to the file it
     * points at (as root: any file). O_NONBLOCK: opening a FIFO without a reader fails (ENXIO)
     * instead of hanging; the fstat below then refuses anything that is not a regular file.
     * O_CLOEXEC: helpers the run starts (gnuplot) do not inherit the descriptor. */
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0666);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            return qd_errorf(QD_ERR_IO, "cannot open log %s: it is a symbolic link (not followed; remove it)", path);
        return qd_errorf(QD_ERR_IO, "cannot open log %s: %s", path, strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return qd_errorf(QD_ERR_IO, "cannot open log %s: not a regular file", path);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    FILE *f = fdopen(fd, "a");
    if (!f) {
        int e = errno;
        close(fd);
        return qd_errorf(QD_ERR_IO, "cannot open log %s: %s", path, strerror(e));
    }
    pthread_mutex_lock(&g_mu);
    if (g_file) fclose(g_file);
    g_file = f;
    pthread_mutex_unlock(&g_mu);
    return QD_OK;
}

void qd_log_close(void) {
    pthread_mutex_lock(&g_mu);
    if (g_file) fclose(g_file);
    g_file = NULL;
    pthread_mutex_unlock(&g_mu);
}

void qd_log_set_stderr(int json, int quiet) {
    pthread_mutex_lock(&g_mu);
    g_json = json;
    g_quiet = quiet;
    pthread_mutex_unlock(&g_mu);
}

/* caller holds g_mu */
static int bar_active_locked(void) {
    if (g_pmode == QD_PROGRESS_NEVER) return 0;
    if (g_pmode == QD_PROGRESS_ALWAYS) return 1;
    if (g_quiet || g_json) return 0;
    const char *term = getenv("TERM");
    return isatty(STDERR_FILENO) && !(term && strcmp(term, "dumb") == 0);
}

int qd_progress_active(void) {
    pthread_mutex_lock(&g_mu);
    int a = bar_active_locked();
    pthread_mutex_unlock(&g_mu);
    return a;
}

void qd_progress_set_mode(qd_progress_mode mode) {
    pthread_mutex_lock(&g_mu);
    g_pmode = mode;
    pthread_mutex_unlock(&g_mu);
}

/* JSON string escaping (RFC 8259) into a growing buffer. */
typedef struct sbuf { char *p; size_t n, cap; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + n + 1 > cap) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) return; /* drop the text rather than crash while logging */
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_json_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                sb_put(b, esc, 6);
            } else {
                sb_put(b, (const char *)p, 1);
            }
        }
    }
    sb_put(b, "\"", 1);
}

static void timestamp(char *buf, size_t n) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    time_t t = tv.tv_sec;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, n, "%s.%03dZ", base, (int)(tv.tv_usec / 1000));
}

static void vlog_to(int to_stderr, qd_log_level level, const char *event, const char *fields, const char *fmt, va_list ap) {
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    char ts[48];
    timestamp(ts, sizeof ts);
    sbuf j = {0};
    sb_str(&j, "{\"ts\":");
    sb_json_string(&j, ts);
    sb_str(&j, ",\"level\":");
    sb_json_string(&j, level_name(level));
    sb_str(&j, ",\"event\":");
    sb_json_string(&j, event ? event : "");
    sb_str(&j, ",\"msg\":");
    sb_json_string(&j, msg);
    if (fields && fields[0]) {
        sb_str(&j, ",");
        sb_str(&j, fields);
    }
    sb_str(&j, "}\n");
    if (j.p && !qd_utf8_valid(j.p)) { /* a path or name with non-UTF-8 bytes: keep run.log valid JSON lines */
        char *fixed = qd_utf8_valid_dup(j.p);
        if (fixed) { free(j.p); j.p = fixed; }
    }

    pthread_mutex_lock(&g_mu);
    if (g_file && j.p) {
        fputs(j.p, g_file);
        fflush(g_file); /* a killed run keeps every complete line */
    }
    int show = to_stderr && (level == QD_LOG_ERROR || !g_quiet);
    if (show && level == QD_LOG_DEBUG && !g_json && bar_active_locked()) show = 0; /* the bar shows it */
    if (show) {
        if (g_bar_drawn) { /* clear the bar; the next update redraws it under this line */
            fputs("\r\033[K", stderr);
            g_bar_drawn = 0;
        }
        if (g_json) {
            if (j.p) fputs(j.p, stderr);
        } else if (level == QD_LOG_INFO || level == QD_LOG_DEBUG) {
            fprintf(stderr, "qdrop-gpu: %s\n", msg);
        } else {
            fprintf(stderr, "qdrop-gpu: %s: %s\n", level == QD_LOG_WARN ? "warning" : "error", msg);
        }
        fflush(stderr);
    }
    pthread_mutex_unlock(&g_mu);
    free(j.p);
}

static void vlog(qd_log_level level, const char *event, const char *fields, const char *fmt, va_list ap) {
    vlog_to(1, level, event, fields, fmt, ap);
}

#define QD_LOG_FN(name, lvl)                              \
    void name(const char *event, const char *fmt, ...) {  \
        va_list ap;                                       \
        va_start(ap, fmt);                                \
        vlog(lvl, event, NULL, fmt, ap);                  \
        va_end(ap);                                       \
    }
QD_LOG_FN(qd_log_info, QD_LOG_INFO)
QD_LOG_FN(qd_log_warn, QD_LOG_WARN)
QD_LOG_FN(qd_log_error, QD_LOG_ERROR)

void qd_log_event_json(qd_log_level level, const char *event, const char *fields_json, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(level, event, fields_json, fmt, ap);
    va_end(ap);
}

void qd_log_file_only(qd_log_level level, const char *event, const char *fields_json, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog_to(0, level, event, fields_json, fmt, ap);
    va_end(ap);
}

static void fmt_duration(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 360000.0 * 24) { snprintf(buf, n, "--"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

/* Fill bar[0..w) with '#' for the done fraction, '.' for the rest. */
static void fill_bar(char *bar, int w, double frac) {
    if (!(frac >= 0)) frac = 0;
    if (frac > 1) frac = 1;
    int fill = (int)(frac * w + 0.5);
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
    bar[w] = 0;
}

/* Replace the bar line on stderr with text (caller holds g_mu). */
static void draw_locked(const char *text) {
    fprintf(stderr, "\r\033[K%s", text);
    fflush(stderr);
    g_bar_drawn = 1;
}

void qd_progress_update(int unit, int nunits, const char *unit_name, int iter, int iters, double loss, double it_per_s) {
    pthread_mutex_lock(&g_mu);
    if (!bar_active_locked()) { pthread_mutex_unlock(&g_mu); return; }
    enum { W = 12 }; /* keep the line under 80 columns: a wrapped line cannot be redrawn with \r */
    char bar[W + 1];
    fill_bar(bar, W, iters > 0 ? (double)iter / iters : 1.0);
    /* ETA: the rest of this unit plus the later units at the same speed (units have equal
     * iteration counts; per-iteration cost differs, so this is an estimate). */
    char eta[32], eta_all[32];
    double rem_unit = it_per_s > 0 ? (iters - iter) / it_per_s : -1;
    double rem_all = it_per_s > 0 ? rem_unit + (double)(nunits - unit - 1) * iters / it_per_s : -1;
    fmt_duration(eta, sizeof eta, rem_unit);
    fmt_duration(eta_all, sizeof eta_all, rem_all);
    char name[15], line[160];
    snprintf(name, sizeof name, "%s", unit_name ? unit_name : "");
    snprintf(line, sizeof line, "%d/%d %s [%s] %d/%d loss %.3g %.0f it/s ETA %s/%s", unit + 1, nunits, name, bar, iter,
             iters, loss, it_per_s, eta, eta_all);
    draw_locked(line);
    pthread_mutex_unlock(&g_mu);
}

/* ---- phase progress (evaluation, range search, caches) ---- */
static double mono_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define QD_PHASE_FIRST_LOG_S 10.0  /* no log lines for phases shorter than this */
#define QD_PHASE_LOG_EVERY_S 30.0
#define QD_PHASE_REDRAW_S 0.1

void qd_phase_begin(qd_phase *p, const char *label, const char *what, int64_t total) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    snprintf(p->what, sizeof p->what, "%s", what ? what : "");
    p->total = total > 0 ? total : 0;
    p->t0 = mono_s();
    p->last_log = p->t0;
    p->last_draw = -1;
}

static void phase_times(const qd_phase *p, int64_t done, double now, char *el, size_t eln, char *eta, size_t etan) {
    double elapsed = now - p->t0;
    fmt_duration(el, eln, elapsed);
    double rem = done > 0 && p->total > 0 ? elapsed * (double)(p->total - done) / (double)done : -1;
    fmt_duration(eta, etan, rem);
}

void qd_phase_update(qd_phase *p, int64_t done) {
    double now = mono_s();
    p->done = done;
    char el[32], eta[32];
    pthread_mutex_lock(&g_mu);
    int bar = bar_active_locked();
    pthread_mutex_unlock(&g_mu);
    if (bar) {
        if (now - p->last_draw < QD_PHASE_REDRAW_S && done < p->total) return;
        p->last_draw = now;
        enum { W = 12 };
        char b[W + 1], line[200];
        fill_bar(b, W, p->total > 0 ? (double)done / (double)p->total : 1.0);
        phase_times(p, done, now, el, sizeof el, eta, sizeof eta);
        snprintf(line, sizeof line, "%s [%s] %lld/%lld %s, %s elapsed, ETA %s", p->label, b, (long long)done,
                 (long long)p->total, p->what, el, eta);
        pthread_mutex_lock(&g_mu);
        draw_locked(line);
        pthread_mutex_unlock(&g_mu);
        return;
    }
    /* no bar: a log line once the phase has run QD_PHASE_FIRST_LOG_S, then every
     * QD_PHASE_LOG_EVERY_S (short phases stay quiet until their end line) */
    double since = now - p->last_log;
    if (done >= p->total || since < (p->logged ? QD_PHASE_LOG_EVERY_S : QD_PHASE_FIRST_LOG_S)) return;
    p->last_log = now;
    p->logged = 1;
    phase_times(p, done, now, el, sizeof el, eta, sizeof eta);
    char fields[256];
    snprintf(fields, sizeof fields, "\"phase\":\"%s\",\"done\":%lld,\"total\":%lld,\"elapsed_s\":%.1f", p->label,
             (long long)done, (long long)p->total, now - p->t0);
    qd_log_event_json(QD_LOG_INFO, "progress", fields, "%s: %lld/%lld %s (%.0f%%), %s elapsed, ETA %s", p->label,
                      (long long)done, (long long)p->total, p->what, p->total ? 100.0 * (double)done / (double)p->total : 100.0,
                      el, eta);
}

void qd_phase_end(qd_phase *p) {
    double now = mono_s();
    char el[32], eta[32];
    phase_times(p, p->done, now, el, sizeof el, eta, sizeof eta);
    qd_progress_done();
    char fields[256];
    snprintf(fields, sizeof fields, "\"phase\":\"%s\",\"done\":%lld,\"total\":%lld,\"elapsed_s\":%.2f", p->label,
             (long long)p->done, (long long)p->total, now - p->t0);
    /* the end of a long phase is news; of a short one (a unit's cache) only a debug line */
    qd_log_event_json(now - p->t0 >= QD_PHASE_FIRST_LOG_S || p->logged ? QD_LOG_INFO : QD_LOG_DEBUG, "phase_done", fields,
                      "%s: %lld/%lld %s in %s", p->label, (long long)p->done, (long long)p->total, p->what, el);
}

void qd_progress_done(void) {
    pthread_mutex_lock(&g_mu);
    if (g_bar_drawn) {
        fputc('\n', stderr);
        fflush(stderr);
        g_bar_drawn = 0;
    }
    pthread_mutex_unlock(&g_mu);
}
