/* src/report/report.c: report.html / report.md of a finished run, and the comparison of several
 * runs (qdrop/report.h). Reads only the run directory's files: results.json (required),
 * resolved_config.json and predictions.csv (optional). Those files are untrusted input here
 * (`qdrop-gpu report` takes any directory): every field is type-checked, missing ones show as
 * "-", and every string is escaped for the format it lands in (report_text.c). */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "qdrop/config.h"
#include "qdrop/fsutil.h"
#include "qdrop/log.h"
#include "qdrop/report.h"
#include "qdrop/version.h"
#include "report/report_internal.h"

#define MAX_INPUT_BYTES (64u << 20)   /* results.json / predictions.csv: far above any real run */
#define MAX_UNITS 100000
#define MAX_CURVE 1000000

/* ---------------------------------------------------------------- reading a run */

typedef struct run_files {
    char dir[QD_PATH_MAX];
    char label[96];        /* "A: w4a4" in comparisons */
    char token[64];        /* the label as a chart data token */
    cJSON *res;            /* results.json */
    char *config;          /* resolved_config.json text, or NULL */
    double agreement;      /* % of evaluated images whose quantized top-1 equals the FP32 top-1; NAN if unknown */
} run_files;

static const cJSON *jget(const cJSON *o, const char *k) { return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL; }
static double jnum(const cJSON *o, const char *k) {
    const cJSON *v = jget(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}
static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = jget(o, k);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}
static int jbool(const cJSON *o, const char *k) {
    const cJSON *v = jget(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : -1;
}

/* A regular file of bounded size, read whole (NUL-terminated). *data NULL, QD_OK when it does not
 * exist and optional. */
static qd_status read_input(const char *path, int optional, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    struct stat st;
    if (stat(path, &st) != 0) {
        if (optional && errno == ENOENT) return QD_OK;
        return qd_errorf(QD_ERR_NOINPUT, "%s: cannot open: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) return qd_errorf(QD_ERR_DATA, "%s: not a regular file", path);
    if ((unsigned long long)st.st_size > MAX_INPUT_BYTES)
        return qd_errorf(QD_ERR_DATA, "%s: %lld bytes, more than a run writes (limit %u MiB)", path, (long long)st.st_size,
                         MAX_INPUT_BYTES >> 20);
    void *d = NULL;
    QD_TRY(qd_read_file(path, &d, len));
    *data = d;
    return QD_OK;
}

/* Agreement from predictions.csv ("index,label,fp32,quant"; fp32 -1 when not evaluated). */
static double agreement_from_csv(const char *text) {
    long same = 0, n = 0;
    const char *s = strchr(text, '\n');
    while (s && *++s) {
        long v[4];
        char *e = (char *)s;
        int k = 0;
        for (; k < 4; k++) {
            char *next;
            errno = 0;
            v[k] = strtol(e, &next, 10);
            if (next == e || errno) break;
            e = next;
            if (k < 3) { if (*e != ',') break; e++; }
        }
        if (k == 4 && v[2] >= 0) { n++; same += v[2] == v[3]; }
        s = strchr(s, '\n');
    }
    return n > 0 ? 100.0 * (double)same / (double)n : NAN;
}

static void run_files_free(run_files *r) {
    cJSON_Delete(r->res);
    free(r->config);
    memset(r, 0, sizeof *r);
}

static qd_status load_run(const char *dir, run_files *r) {
    memset(r, 0, sizeof *r);
    r->agreement = NAN;
    if (strlen(dir) >= sizeof r->dir) return qd_errorf(QD_ERR_USAGE, "%s: path too long", dir);
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    struct stat st;
    if (stat(dir, &st) != 0) return qd_errorf(QD_ERR_NOINPUT, "%s: run directory not found", dir);
    if (!S_ISDIR(st.st_mode)) return qd_errorf(QD_ERR_NOINPUT, "%s: not a directory (expected a run's output directory)", dir);
    char path[QD_PATH_MAX + 64];
    QD_TRY(qd_path_join(path, sizeof path, dir, "results.json"));
    char *text = NULL;
    size_t len = 0;
    qd_status s = read_input(path, 1, &text, &len);
    if (s != QD_OK) return s;
    if (!text) return qd_errorf(QD_ERR_NOINPUT, "%s: no results.json (not a finished qdrop-gpu run)", dir);
    const char *end = NULL;
    r->res = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!r->res || !cJSON_IsObject(r->res)) {
        long off = r->res ? 0 : (end ? (long)(end - text) : 0);
        free(text);
        cJSON_Delete(r->res);
        r->res = NULL;
        return qd_errorf(QD_ERR_DATA, "%s: malformed results (expected a JSON object; error near byte %ld)", path, off);
    }
    free(text);
    QD_TRY(qd_path_join(path, sizeof path, dir, "resolved_config.json"));
    if ((s = read_input(path, 1, &r->config, &len)) != QD_OK) return s;
    r->agreement = jnum(jget(r->res, "accuracy"), "agreement_with_fp32");
    if (isnan(r->agreement)) {
        QD_TRY(qd_path_join(path, sizeof path, dir, "predictions.csv"));
        if ((s = read_input(path, 1, &text, &len)) != QD_OK) return s;
        if (text) r->agreement = agreement_from_csv(text);
        free(text);
    }
    const cJSON *units = jget(r->res, "units");
    if (units && (!cJSON_IsArray(units) || cJSON_GetArraySize(units) > MAX_UNITS))
        return qd_errorf(QD_ERR_DATA, "%s/results.json: 'units' is not an array of at most %d units", dir, MAX_UNITS);
    return QD_OK;
}

static const cJSON *timing_of(const run_files *r) {
    const cJSON *t = jget(r->res, "timing");
    if (!cJSON_IsObject(t)) t = jget(r->res, "times");   /* BERT runs */
    return cJSON_IsObject(t) ? t : NULL;
}

static int nunits(const run_files *r) {
    const cJSON *u = jget(r->res, "units");
    return cJSON_IsArray(u) ? cJSON_GetArraySize(u) : 0;
}

static const cJSON *unit_at(const run_files *r, int i) { return cJSON_GetArrayItem(jget(r->res, "units"), i); }

/* "quant_top1" -> 73.2 etc. from the accuracy object (percent). */
static double acc(const run_files *r, const char *k) { return jnum(jget(r->res, "accuracy"), k); }

/* A phase name for display: the timing key without its "_s" suffix. */
static void phase_name(const char *key, char *out, size_t n) {
    size_t l = strlen(key);
    if (l > 2 && strcmp(key + l - 2, "_s") == 0) l -= 2;
    snprintf(out, n, "%.*s", (int)l, key);
}

/* ---------------------------------------------------------------- formatting */

static const char *fmt(char *buf, size_t n, const char *f, double v) {
    if (isnan(v) || isinf(v)) snprintf(buf, n, "-");
    else snprintf(buf, n, f, v);
    return buf;
}

static const char *str_or_dash(const char *s) { return s && *s ? s : "-"; }

static const char CSS[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1180px;padding:0 16px;"
    "color:#1b1b1b;background:#fff}"
    "h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}"
    "table{border-collapse:collapse;margin:8px 0;font-size:.92em}"
    "th,td{border:1px solid #d0d0d0;padding:4px 8px;text-align:left;vertical-align:top}"
    "th{background:#f3f5f8}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
    "code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}"
    "pre{background:#f6f8fa;padding:8px;overflow:auto;white-space:pre-wrap;word-break:break-all}"
    ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:12px}"
    "figure{margin:0;border:1px solid #e3e3e3;padding:6px}figure img{width:100%;height:auto;display:block}"
    "figcaption{font-size:.85em;color:#555;margin-top:4px}section>figure.chart{max-width:760px}.note{color:#8a5a00}.sub{color:#555}";

typedef struct picture {
    char file[64];          /* name under plots/ */
    char caption[200];      /* plain text (escaped when written) */
    unsigned char *png;
    size_t n;
} picture;

typedef struct pictures {
    picture *v;
    int n, cap;
    int enabled;            /* gnuplot available and plots wanted */
    char note[300];         /* why pictures are missing */
    qd_plotter pl;
} pictures;

static void pics_free(pictures *p) {
    for (int i = 0; i < p->n; i++) free(p->v[i].png);
    free(p->v);
    qd_plotter_close(&p->pl);
    memset(p, 0, sizeof *p);
}

/* Draw one chart; a failure leaves a note (the report is written without that picture). */
static const picture *pics_draw(pictures *p, const char *file, const char *caption, const char *kind, const char *data,
                                const char *title, const char *ylabel, const char *opt) {
    if (!p->enabled) return NULL;
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 16;
        picture *v = realloc(p->v, sizeof *v * (size_t)cap);
        if (!v) return NULL;
        p->v = v;
        p->cap = cap;
    }
    picture *pc = &p->v[p->n];
    memset(pc, 0, sizeof *pc);
    if (qd_plotter_draw(&p->pl, kind, data, title, ylabel, opt, &pc->png, &pc->n) != 0) {
        snprintf(p->note, sizeof p->note, "%s", p->pl.note);
        qd_log_warn("plot_failed", "%s chart: %s", kind, p->pl.note);
        return NULL;
    }
    snprintf(pc->file, sizeof pc->file, "%s", file);
    snprintf(pc->caption, sizeof pc->caption, "%s", caption);
    p->n++;
    return pc;
}

static void pics_open(pictures *p, const char *out_dir, const qd_report_options *opt) {
    memset(p, 0, sizeof *p);
    if (opt && !opt->plots) { snprintf(p->note, sizeof p->note, "pictures disabled (output.plots=false)"); return; }
    if (qd_plotter_open(&p->pl, out_dir) != 0) {
        snprintf(p->note, sizeof p->note, "%s", p->pl.note);
        qd_log_warn("plots_skipped", "%s", p->pl.note);
        return;
    }
    p->enabled = 1;
}

static void html_img(qd_sbuf *h, const picture *pc) {
    qd_sb_put(h, "<figure class=\"chart\"><img alt=\"");
    qd_sb_html(h, pc->caption);
    qd_sb_put(h, "\" src=\"data:image/png;base64,");
    qd_sb_base64(h, pc->png, pc->n);
    qd_sb_put(h, "\"><figcaption>");
    qd_sb_html(h, pc->caption);
    qd_sb_put(h, "</figcaption></figure>\n");
}

static void md_img(qd_sbuf *m, const picture *pc) {
    /* captions are made of fixed words and numbers; brackets and backslashes dropped anyway */
    char safe[200];
    size_t k = 0;
    for (const char *c = pc->caption; *c && k + 1 < sizeof safe; c++)
        if (*c != '[' && *c != ']' && *c != '\\' && (unsigned char)*c >= 0x20) safe[k++] = *c;
    safe[k] = 0;
    qd_sb_printf(m, "![%s](plots/%s)\n\n", safe, pc->file);
}

static void html_note(qd_sbuf *h, const char *note) {
    qd_sb_put(h, "<p class=\"note\">No picture: ");
    qd_sb_html(h, note);
    qd_sb_put(h, "</p>\n");
}

static void html_head(qd_sbuf *h, const char *title) {
    /* The policy forbids every fetch and every script: the page shows only what is inlined. */
    qd_sb_put(h, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                 "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
                 "style-src 'unsafe-inline'\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                 "<title>");
    qd_sb_html(h, title);
    qd_sb_printf(h, "</title>\n<style>%s</style>\n</head>\n<body>\n", CSS);
}

static void html_kv(qd_sbuf *h, const char *k, const char *v, int code) {
    qd_sb_put(h, "<tr><th>");
    qd_sb_html(h, k);
    qd_sb_put(h, code ? "</th><td><code>" : "</th><td>");
    qd_sb_html(h, str_or_dash(v));
    qd_sb_put(h, code ? "</code></td></tr>\n" : "</td></tr>\n");
}

static void md_kv(qd_sbuf *m, const char *k, const char *v) {
    qd_sb_printf(m, "| %s | ", k);
    if (v && *v) qd_sb_md_code(m, v);
    else qd_sb_put(m, "-");
    qd_sb_put(m, " |\n");
}

static qd_status write_outputs(const char *out_dir, const qd_sbuf *h, const qd_sbuf *m, const pictures *pics) {
    if (h->oom || m->oom) return qd_errorf(QD_ERR_INTERNAL, "out of host memory while writing the report");
    char path[QD_PATH_MAX + 64];
    QD_TRY(qd_mkdir_p(out_dir));
    if (pics->n > 0) {
        QD_TRY(qd_path_join(path, sizeof path, out_dir, "plots"));
        QD_TRY(qd_mkdir_p(path));
        for (int i = 0; i < pics->n; i++) {
            char rel[96];
            snprintf(rel, sizeof rel, "plots/%s", pics->v[i].file);
            QD_TRY(qd_path_join(path, sizeof path, out_dir, rel));
            QD_TRY(qd_write_file_atomic(path, pics->v[i].png, pics->v[i].n));
        }
    }
    QD_TRY(qd_path_join(path, sizeof path, out_dir, "report.md"));
    QD_TRY(qd_write_file_atomic(path, m->p, m->len));
    QD_TRY(qd_path_join(path, sizeof path, out_dir, "report.html"));
    return qd_write_file_atomic(path, h->p, h->len);
}

static void rendered_by(char *buf, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M UTC", &tm);
    snprintf(buf, n, "rendered %s by qdrop-gpu %s (git %s)", ts, qd_version(), qd_git_sha());
}

/* ---------------------------------------------------------------- one run */

static void section_run(qd_sbuf *h, qd_sbuf *m, const run_files *r) {
    const cJSON *R = r->res;
    char b[64];
    qd_sb_put(h, "<section id=\"run\">\n<h2>Command and configuration</h2>\n<table>\n");
    qd_sb_put(m, "## Command and configuration\n\n| | |\n|---|---|\n");
    const char *cmd = jstr(R, "command");
    html_kv(h, "command", cmd, 1);
    md_kv(m, "command", cmd);
    html_kv(h, "output directory", r->dir, 1);
    md_kv(m, "output directory", r->dir);
    html_kv(h, "model", jstr(R, "model"), 1);
    md_kv(m, "model", jstr(R, "model"));
    html_kv(h, "mode", jstr(R, "mode"), 0);
    md_kv(m, "mode", jstr(R, "mode"));
    double wb = jnum(R, "w_bits"), ab = jnum(R, "a_bits");
    char bits[64];
    if (isnan(wb) || isnan(ab)) snprintf(bits, sizeof bits, "-");
    else snprintf(bits, sizeof bits, "W%gA%g", wb, ab);
    html_kv(h, "bit widths", bits, 0);
    md_kv(m, "bit widths", bits);
    fmt(b, sizeof b, "%.0f", jnum(R, "iters_per_unit"));
    html_kv(h, "iterations per unit", b, 0);
    md_kv(m, "iterations per unit", b);
    double ci = jnum(R, "calibration_images");
    if (isnan(ci)) ci = jnum(R, "calibration_sentences");
    fmt(b, sizeof b, "%.0f", ci);
    html_kv(h, "calibration samples", b, 0);
    md_kv(m, "calibration samples", b);
    fmt(b, sizeof b, "%.0f", jnum(R, "seed"));
    html_kv(h, "seed", b, 0);
    md_kv(m, "seed", b);
    html_kv(h, "config hash", jstr(R, "config_hash"), 1);
    md_kv(m, "config hash", jstr(R, "config_hash"));
    qd_sb_put(h, "</table>\n");
    qd_sb_put(m, "\n");
    if (r->config) {
        qd_sb_put(h, "<details><summary>resolved configuration (resolved_config.json)</summary>\n<pre>");
        qd_sb_html(h, r->config);
        qd_sb_put(h, "</pre></details>\n");
        qd_sb_put(m, "<details><summary>resolved configuration (resolved_config.json)</summary>\n\n");
        qd_sb_md_block(m, r->config);
        qd_sb_put(m, "\n</details>\n\n");
    } else {
        qd_sb_put(h, "<p class=\"note\">resolved_config.json not found in the run directory.</p>\n");
        qd_sb_put(m, "resolved_config.json not found in the run directory.\n\n");
    }
    qd_sb_put(h, "</section>\n");
}

static void section_versions(qd_sbuf *h, qd_sbuf *m, const run_files *r) {
    const cJSON *R = r->res, *D = jget(r->res, "device");
    char b[64];
    qd_sb_put(h, "<section id=\"versions\">\n<h2>Versions and device</h2>\n<table>\n");
    qd_sb_put(m, "## Versions and device\n\n| | |\n|---|---|\n");
    html_kv(h, "qdrop-gpu version", jstr(R, "version"), 0);
    md_kv(m, "qdrop-gpu version", jstr(R, "version"));
    html_kv(h, "git sha", jstr(R, "git_sha"), 1);
    md_kv(m, "git sha", jstr(R, "git_sha"));
    html_kv(h, "backend", jstr(D, "backend"), 0);
    md_kv(m, "backend", jstr(D, "backend"));
    html_kv(h, "device", jstr(D, "name"), 0);
    md_kv(m, "device", jstr(D, "name"));
    fmt(b, sizeof b, "%.0f", jnum(D, "threads"));
    html_kv(h, "threads", b, 0);
    md_kv(m, "threads", b);
    int det = jbool(D, "deterministic"), tf32 = jbool(D, "tf32");
    html_kv(h, "deterministic", det < 0 ? "-" : det ? "yes" : "no", 0);
    md_kv(m, "deterministic", det < 0 ? "-" : det ? "yes" : "no");
    html_kv(h, "TF32", tf32 < 0 ? "-" : tf32 ? "yes" : "no", 0);
    md_kv(m, "TF32", tf32 < 0 ? "-" : tf32 ? "yes" : "no");
    html_kv(h, "CUDA / cuDNN / cuBLAS", jstr(D, "cuda_versions"), 0);
    md_kv(m, "CUDA / cuDNN / cuBLAS", jstr(D, "cuda_versions"));
    qd_sb_put(h, "</table>\n</section>\n");
    qd_sb_put(m, "\n");
}

static void section_accuracy(qd_sbuf *h, qd_sbuf *m, const run_files *r) {
    const cJSON *A = jget(r->res, "accuracy");
    char b1[32], b2[32], b3[32];
    qd_sb_put(h, "<section id=\"accuracy\">\n<h2>Accuracy</h2>\n");
    qd_sb_put(m, "## Accuracy\n\n");
    if (!cJSON_IsObject(A)) {
        qd_sb_put(h, "<p class=\"note\">No accuracy recorded (evaluation disabled).</p>\n</section>\n");
        qd_sb_put(m, "No accuracy recorded (evaluation disabled).\n\n");
        return;
    }
    const char *metric = jstr(A, "metric");
    if (metric) {   /* BERT runs: one task metric */
        qd_sb_put(h, "<table>\n<tr><th>model</th><th>");
        qd_sb_html(h, metric);
        qd_sb_put(h, "</th></tr>\n");
        qd_sb_put(m, "| model | ");
        qd_sb_md_code(m, metric);
        qd_sb_put(m, " |\n|---|---:|\n");
        qd_sb_printf(h, "<tr><td>FP32</td><td class=\"n\">%s</td></tr>\n", fmt(b1, sizeof b1, "%.4f", jnum(A, "fp32")));
        qd_sb_printf(h, "<tr><td>quantized</td><td class=\"n\">%s</td></tr>\n</table>\n</section>\n",
                     fmt(b2, sizeof b2, "%.4f", jnum(A, "quant")));
        qd_sb_printf(m, "| FP32 | %s |\n| quantized | %s |\n\n", b1, b2);
        return;
    }
    double imgs = jnum(A, "images");
    qd_sb_printf(h, "<p class=\"sub\">%s validation images; agreement = share of images whose quantized top-1 class "
                    "equals the FP32 model's.</p>\n", fmt(b1, sizeof b1, "%.0f", imgs));
    qd_sb_printf(m, "%s validation images; agreement = share of images whose quantized top-1 class equals the FP32 "
                    "model's.\n\n", b1);
    qd_sb_put(h, "<table>\n<tr><th>model</th><th>top-1 %</th><th>top-5 %</th><th>agreement with FP32 %</th></tr>\n");
    qd_sb_put(m, "| model | top-1 % | top-5 % | agreement with FP32 % |\n|---|---:|---:|---:|\n");
    fmt(b1, sizeof b1, "%.2f", jnum(A, "fp32_top1"));
    fmt(b2, sizeof b2, "%.2f", jnum(A, "fp32_top5"));
    qd_sb_printf(h, "<tr><td>FP32</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td class=\"n\">100.00</td></tr>\n", b1, b2);
    qd_sb_printf(m, "| FP32 | %s | %s | 100.00 |\n", b1, b2);
    char bits[64] = "quantized";
    double wb = jnum(r->res, "w_bits"), ab = jnum(r->res, "a_bits");
    if (!isnan(wb) && !isnan(ab)) snprintf(bits, sizeof bits, "quantized W%gA%g", wb, ab);
    fmt(b1, sizeof b1, "%.2f", jnum(A, "quant_top1"));
    fmt(b2, sizeof b2, "%.2f", jnum(A, "quant_top5"));
    fmt(b3, sizeof b3, "%.2f", r->agreement);
    qd_sb_printf(h, "<tr><td>%s</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td class=\"n\">%s</td></tr>\n</table>\n",
                 bits, b1, b2, b3);
    qd_sb_printf(m, "| %s | %s | %s | %s |\n\n", bits, b1, b2, b3);
    qd_sb_put(h, "</section>\n");
}

static void section_units(qd_sbuf *h, qd_sbuf *m, const run_files *r) {
    int n = nunits(r);
    qd_sb_put(h, "<section id=\"units\">\n<h2>Units</h2>\n");
    qd_sb_put(m, "## Units\n\n");
    if (n == 0) {
        qd_sb_put(h, "<p class=\"note\">No reconstruction units in this run.</p>\n</section>\n");
        qd_sb_put(m, "No reconstruction units in this run.\n\n");
        return;
    }
    qd_sb_put(h, "<table>\n<tr><th>#</th><th>unit</th><th>iterations</th><th>loss start &rarr; end</th>"
                 "<th>SQNR before &rarr; after (dB)</th><th>time (s)</th><th>it/s</th></tr>\n");
    qd_sb_put(m, "| # | unit | iterations | loss start → end | SQNR before → after (dB) | time (s) | it/s |\n"
                 "|---:|---|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        const cJSON *u = unit_at(r, i);
        char it[96], ls[32], le[32], sb[32], sa[32], t[32], ips[32], ir[32], ip[32];
        fmt(ir, sizeof ir, "%.0f", jnum(u, "iters_run"));
        fmt(ip, sizeof ip, "%.0f", jnum(u, "iters_planned"));
        snprintf(it, sizeof it, "%s / %s%s", ir, ip, jbool(u, "early_stopped") == 1 ? " (early stop)" : "");
        fmt(ls, sizeof ls, "%.4g", jnum(u, "loss_start"));
        fmt(le, sizeof le, "%.4g", jnum(u, "loss_end"));
        fmt(sb, sizeof sb, "%.2f", jnum(u, "sqnr_before_db"));
        fmt(sa, sizeof sa, "%.2f", jnum(u, "sqnr_after_db"));
        fmt(t, sizeof t, "%.2f", jnum(u, "seconds"));
        fmt(ips, sizeof ips, "%.1f", jnum(u, "it_per_s"));
        qd_sb_printf(h, "<tr><td class=\"n\">%d</td><td><code>", i);
        qd_sb_html(h, str_or_dash(jstr(u, "name")));
        qd_sb_printf(h, "</code></td><td class=\"n\">%s</td><td class=\"n\">%s &rarr; %s</td><td class=\"n\">%s &rarr; %s</td>"
                        "<td class=\"n\">%s</td><td class=\"n\">%s</td></tr>\n", it, ls, le, sb, sa, t, ips);
        qd_sb_printf(m, "| %d | ", i);
        qd_sb_md_code(m, str_or_dash(jstr(u, "name")));
        qd_sb_printf(m, " | %s | %s → %s | %s → %s | %s | %s |\n", it, ls, le, sb, sa, t, ips);
    }
    qd_sb_put(h, "</table>\n</section>\n");
    qd_sb_put(m, "\n");
}

/* "iteration loss" rows of unit u's loss curve; 0 when it has none. *positive: all losses > 0. */
static int loss_data(const cJSON *u, qd_sbuf *d, int *logscale) {
    const cJSON *c = jget(u, "loss_curve");
    const cJSON *xs = jget(c, "iteration"), *ys = jget(c, "loss");
    if (!cJSON_IsArray(xs) || !cJSON_IsArray(ys)) return 0;
    int n = cJSON_GetArraySize(xs);
    if (cJSON_GetArraySize(ys) < n) n = cJSON_GetArraySize(ys);
    if (n > MAX_CURVE) n = MAX_CURVE;
    int k = 0, positive = 1;
    double lo = INFINITY, hi = 0;
    const cJSON *x = xs->child, *y = ys->child;
    for (int i = 0; i < n && x && y; i++, x = x->next, y = y->next) {
        if (!cJSON_IsNumber(x) || !cJSON_IsNumber(y) || !isfinite(x->valuedouble) || !isfinite(y->valuedouble)) continue;
        double v = y->valuedouble;
        if (v <= 0) positive = 0;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
        qd_sb_printf(d, "%.17g %.9g\n", x->valuedouble, v);
        k++;
    }
    /* a log axis only where the loss spans more than a decade (otherwise it flattens the curve) */
    *logscale = positive && k > 0 && hi > 10 * lo;
    return k;
}

static void section_pictures(qd_sbuf *h, qd_sbuf *m, const run_files *r, pictures *pics) {
    int n = nunits(r);
    char caption[200], title[200], file[64];
    /* loss curves */
    qd_sb_put(h, "<section id=\"loss-curves\">\n<h2>Loss curves</h2>\n<p class=\"sub\">Reconstruction loss per unit, "
                 "mean over windows of at most 1% of the unit's iterations (first point: iteration 1, before any "
                 "update).</p>\n<div class=\"grid\">\n");
    qd_sb_put(m, "## Loss curves\n\n");
    int drawn = 0, with_curve = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *u = unit_at(r, i);
        qd_sbuf d = {0};
        int logscale = 0;
        int pts = loss_data(u, &d, &logscale);
        if (pts > 0 && !d.oom) {
            with_curve++;
            char nm[120];
            qd_chart_title(nm, sizeof nm, str_or_dash(jstr(u, "name")));
            snprintf(title, sizeof title, "unit %d: %s", i, nm);
            snprintf(caption, sizeof caption, "unit %d loss curve (%d points)", i, pts);
            snprintf(file, sizeof file, "unit%02d_loss.png", i);
            const picture *pc = pics_draw(pics, file, caption, "loss", d.p, title, "reconstruction loss (window mean)",
                                          logscale ? "log" : "lin");
            if (pc) { html_img(h, pc); md_img(m, pc); drawn++; }
        }
        qd_sb_free(&d);
    }
    qd_sb_put(h, "</div>\n");
    if (with_curve == 0) {
        qd_sb_put(h, "<p class=\"note\">No loss curves recorded in results.json.</p>\n");
        qd_sb_put(m, "No loss curves recorded in results.json.\n\n");
    } else if (drawn < with_curve) {
        html_note(h, pics->note);
        qd_sb_printf(m, "No picture: %s\n\n", pics->note);
    }
    qd_sb_put(h, "</section>\n");

    /* SQNR before/after */
    qd_sb_put(h, "<section id=\"sqnr\">\n<h2>SQNR per unit</h2>\n<p class=\"sub\">Signal-to-quantization-noise ratio "
                 "of each unit's output on calibration images, before and after its reconstruction.</p>\n");
    qd_sb_put(m, "## SQNR per unit\n\n");
    qd_sbuf d = {0};
    int rows = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *u = unit_at(r, i);
        double b = jnum(u, "sqnr_before_db"), a = jnum(u, "sqnr_after_db");
        if (!isfinite(b) || !isfinite(a)) continue;
        qd_sb_printf(&d, "%d %.6g %.6g\n", i, b, a);
        rows++;
    }
    const picture *pc = rows > 0 && !d.oom ? pics_draw(pics, "sqnr.png", "SQNR before and after reconstruction per unit",
                                                       "sqnr", d.p, "SQNR per unit", "SQNR (dB)", "") : NULL;
    qd_sb_free(&d);
    if (pc) { html_img(h, pc); md_img(m, pc); }
    else if (rows == 0) { qd_sb_put(h, "<p class=\"note\">No SQNR recorded.</p>\n"); qd_sb_put(m, "No SQNR recorded.\n\n"); }
    else { html_note(h, pics->note); qd_sb_printf(m, "No picture: %s\n\n", pics->note); }
    qd_sb_put(h, "</section>\n");

    /* time per phase */
    qd_sb_put(h, "<section id=\"timing\">\n<h2>Time per phase</h2>\n");
    qd_sb_put(m, "## Time per phase\n\n");
    const cJSON *T = timing_of(r);
    d = (qd_sbuf){0};
    rows = 0;
    qd_sb_put(h, "<table>\n<tr><th>phase</th><th>seconds</th></tr>\n");
    qd_sb_put(m, "| phase | seconds |\n|---|---:|\n");
    for (const cJSON *t = T ? T->child : NULL; t; t = t->next) {
        if (!cJSON_IsNumber(t) || !t->string) continue;
        char ph[64], tok[64], s[32];
        phase_name(t->string, ph, sizeof ph);
        fmt(s, sizeof s, "%.2f", t->valuedouble);
        qd_sb_put(h, "<tr><td>");
        qd_sb_html(h, ph);
        qd_sb_printf(h, "</td><td class=\"n\">%s</td></tr>\n", s);
        qd_sb_put(m, "| ");
        qd_sb_md_code(m, ph);
        qd_sb_printf(m, " | %s |\n", s);
        if (strcmp(t->string, "total_s") == 0 || !isfinite(t->valuedouble)) continue;
        qd_chart_token(tok, sizeof tok, ph);
        qd_sb_printf(&d, "%s %.6g\n", tok, t->valuedouble);
        rows++;
    }
    qd_sb_put(h, "</table>\n");
    qd_sb_put(m, "\n");
    pc = rows > 0 && !d.oom ? pics_draw(pics, "time.png", "time per phase (seconds)", "time", d.p, "time per phase",
                                        "seconds", "") : NULL;
    qd_sb_free(&d);
    if (pc) { html_img(h, pc); md_img(m, pc); }
    else if (rows > 0) { html_note(h, pics->note); qd_sb_printf(m, "No picture: %s\n\n", pics->note); }
    qd_sb_put(h, "</section>\n");
}

qd_status qd_report_render(const char *run_dir, const char *out_dir, const qd_report_options *opt) {
    run_files r;
    qd_status st = load_run(run_dir, &r);
    if (st != QD_OK) { run_files_free(&r); return st; }
    if (!out_dir) out_dir = run_dir;
    if ((st = qd_mkdir_p(out_dir)) != QD_OK) { run_files_free(&r); return st; }
    pictures pics;
    pics_open(&pics, out_dir, opt);
    qd_sbuf h = {0}, m = {0};
    char title[QD_PATH_MAX + 64], by[160];
    snprintf(title, sizeof title, "qdrop-gpu run report: %s", run_dir);
    rendered_by(by, sizeof by);
    html_head(&h, title);
    qd_sb_put(&h, "<h1>qdrop-gpu run report</h1>\n<p class=\"sub\"><code>");
    qd_sb_html(&h, run_dir);
    qd_sb_put(&h, "</code> &middot; ");
    qd_sb_html(&h, by);
    qd_sb_put(&h, "</p>\n");
    qd_sb_put(&m, "# qdrop-gpu run report\n\n");
    qd_sb_md_code(&m, run_dir);
    qd_sb_printf(&m, " · %s\n\n", by);
    section_run(&h, &m, &r);
    section_versions(&h, &m, &r);
    section_accuracy(&h, &m, &r);
    section_units(&h, &m, &r);
    section_pictures(&h, &m, &r, &pics);
    qd_sb_put(&h, "</body>\n</html>\n");
    qd_plotter_close(&pics.pl);
    st = write_outputs(out_dir, &h, &m, &pics);
    qd_sb_free(&h);
    qd_sb_free(&m);
    pics_free(&pics);
    run_files_free(&r);
    return st;
}

/* ---------------------------------------------------------------- comparison */

static void run_label(run_files *r, int i) {
    /* the directory's last component ("runs/w4a4/" -> "w4a4") */
    size_t end = strlen(r->dir);
    while (end > 1 && r->dir[end - 1] == '/') end--;
    size_t start = end;
    while (start > 0 && r->dir[start - 1] != '/') start--;
    char name[QD_PATH_MAX];
    snprintf(name, sizeof name, "%.*s", (int)(end - start), r->dir + start);
    char letter = (char)('A' + i);   /* nruns <= 26 */
    snprintf(r->label, sizeof r->label, "%c: %.80s", letter, name);
    char tok[56];
    qd_chart_token(tok, sizeof tok, name);
    snprintf(r->token, sizeof r->token, "%c:%s", letter, tok);
}

static void cmp_runs(qd_sbuf *h, qd_sbuf *m, run_files *runs, int n) {
    qd_sb_put(h, "<section id=\"runs\">\n<h2>Runs</h2>\n<table>\n<tr><th>run</th><th>directory</th><th>mode</th><th>bits</th>"
                 "<th>iterations / unit</th><th>device</th><th>version</th><th>command</th></tr>\n");
    qd_sb_put(m, "## Runs\n\n| run | directory | mode | bits | iterations / unit | device | version | command |\n"
                 "|---|---|---|---|---:|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        const cJSON *R = runs[i].res, *D = jget(R, "device");
        char bits[64] = "-", it[32], dev[300];
        double wb = jnum(R, "w_bits"), ab = jnum(R, "a_bits");
        if (!isnan(wb) && !isnan(ab)) snprintf(bits, sizeof bits, "W%gA%g", wb, ab);
        fmt(it, sizeof it, "%.0f", jnum(R, "iters_per_unit"));
        snprintf(dev, sizeof dev, "%s %s", str_or_dash(jstr(D, "backend")), jstr(D, "name") ? jstr(D, "name") : "");
        qd_sb_put(h, "<tr><td>");
        qd_sb_html(h, runs[i].label);
        qd_sb_put(h, "</td><td><code>");
        qd_sb_html(h, runs[i].dir);
        qd_sb_put(h, "</code></td><td>");
        qd_sb_html(h, str_or_dash(jstr(R, "mode")));
        qd_sb_printf(h, "</td><td>%s</td><td class=\"n\">%s</td><td>", bits, it);
        qd_sb_html(h, dev);
        qd_sb_put(h, "</td><td>");
        qd_sb_html(h, str_or_dash(jstr(R, "version")));
        qd_sb_put(h, " <code>");
        qd_sb_html(h, str_or_dash(jstr(R, "git_sha")));
        qd_sb_put(h, "</code></td><td><code>");
        qd_sb_html(h, str_or_dash(jstr(R, "command")));
        qd_sb_put(h, "</code></td></tr>\n");
        qd_sb_put(m, "| ");
        qd_sb_md_code(m, runs[i].label);
        qd_sb_put(m, " | ");
        qd_sb_md_code(m, runs[i].dir);
        qd_sb_put(m, " | ");
        qd_sb_md_code(m, str_or_dash(jstr(R, "mode")));
        qd_sb_printf(m, " | %s | %s | ", bits, it);
        qd_sb_md_code(m, dev);
        qd_sb_put(m, " | ");
        qd_sb_md_code(m, str_or_dash(jstr(R, "version")));
        qd_sb_put(m, " | ");
        qd_sb_md_code(m, str_or_dash(jstr(R, "command")));
        qd_sb_put(m, " |\n");
    }
    qd_sb_put(h, "</table>\n</section>\n");
    qd_sb_put(m, "\n");
}

static void cmp_accuracy(qd_sbuf *h, qd_sbuf *m, run_files *runs, int n, pictures *pics) {
    qd_sb_put(h, "<section id=\"accuracy\">\n<h2>Accuracy</h2>\n<table>\n<tr><th>run</th><th>FP32 top-1 %</th>"
                 "<th>FP32 top-5 %</th><th>quantized top-1 %</th><th>quantized top-5 %</th><th>agreement with FP32 %</th>"
                 "<th>top-1 vs A</th></tr>\n");
    qd_sb_put(m, "## Accuracy\n\n| run | FP32 top-1 % | FP32 top-5 % | quantized top-1 % | quantized top-5 % | "
                 "agreement with FP32 % | top-1 vs A |\n|---|---:|---:|---:|---:|---:|---:|\n");
    double base = acc(&runs[0], "quant_top1");
    qd_sbuf d = {0};
    qd_sb_put(&d, "run FP32 quantized\n");
    int rows = 0;
    for (int i = 0; i < n; i++) {
        char f1[32], f5[32], q1[32], q5[32], ag[32], dl[32];
        double qt1 = acc(&runs[i], "quant_top1"), ft1 = acc(&runs[i], "fp32_top1");
        fmt(f1, sizeof f1, "%.2f", ft1);
        fmt(f5, sizeof f5, "%.2f", acc(&runs[i], "fp32_top5"));
        fmt(q1, sizeof q1, "%.2f", qt1);
        fmt(q5, sizeof q5, "%.2f", acc(&runs[i], "quant_top5"));
        fmt(ag, sizeof ag, "%.2f", runs[i].agreement);
        fmt(dl, sizeof dl, "%+.2f", i == 0 ? NAN : qt1 - base);
        qd_sb_put(h, "<tr><td>");
        qd_sb_html(h, runs[i].label);
        qd_sb_printf(h, "</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td class=\"n\">%s</td>"
                        "<td class=\"n\">%s</td><td class=\"n\">%s</td></tr>\n", f1, f5, q1, q5, ag, dl);
        qd_sb_put(m, "| ");
        qd_sb_md_code(m, runs[i].label);
        qd_sb_printf(m, " | %s | %s | %s | %s | %s | %s |\n", f1, f5, q1, q5, ag, dl);
        if (isfinite(qt1)) {
            qd_sb_printf(&d, "%s %s %.6g\n", runs[i].token, isfinite(ft1) ? f1 : "NaN", qt1);
            rows++;
        }
    }
    qd_sb_put(h, "</table>\n");
    qd_sb_put(m, "\n");
    const picture *pc = rows > 0 && !d.oom ? pics_draw(pics, "compare_accuracy.png", "top-1 accuracy per run", "clusters",
                                                       d.p, "top-1 accuracy", "top-1 %", "") : NULL;
    qd_sb_free(&d);
    if (pc) { html_img(h, pc); md_img(m, pc); }
    else if (rows > 0) { html_note(h, pics->note); qd_sb_printf(m, "No picture: %s\n\n", pics->note); }
    qd_sb_put(h, "</section>\n");
}

/* One column per run: closes the HTML and Markdown header rows (md_lead = the Markdown alignment
 * cells of the leading columns) and starts the chart data file with the runs' tokens. */
static void run_columns(qd_sbuf *h, qd_sbuf *m, qd_sbuf *d, const run_files *runs, int n, const char *md_lead,
                        const char *d_first) {
    for (int i = 0; i < n; i++) {
        qd_sb_put(h, "<th>");
        qd_sb_html(h, runs[i].label);
        qd_sb_put(h, "</th>");
        qd_sb_put(m, " ");
        qd_sb_md_code(m, runs[i].label);
        qd_sb_put(m, " |");
    }
    qd_sb_put(h, "</tr>\n");
    qd_sb_printf(m, "\n%s", md_lead);
    for (int i = 0; i < n; i++) qd_sb_put(m, "---:|");
    qd_sb_put(m, "\n");
    qd_sb_put(d, d_first);
    for (int i = 0; i < n; i++) qd_sb_printf(d, " %s", runs[i].token);
    qd_sb_put(d, "\n");
}

static void cmp_sqnr(qd_sbuf *h, qd_sbuf *m, run_files *runs, int n, pictures *pics) {
    int maxu = 0;
    for (int i = 0; i < n; i++) if (nunits(&runs[i]) > maxu) maxu = nunits(&runs[i]);
    qd_sb_put(h, "<section id=\"sqnr\">\n<h2>SQNR per unit</h2>\n<p class=\"sub\">Unit output SQNR after reconstruction "
                 "(dB; before &rarr; after).</p>\n<table>\n<tr><th>#</th><th>unit</th>");
    qd_sb_put(m, "## SQNR per unit\n\nUnit output SQNR after reconstruction (dB; before → after).\n\n| # | unit |");
    qd_sbuf d = {0};
    run_columns(h, m, &d, runs, n, "|---:|---|", "unit");
    int points = 0;
    for (int u = 0; u < maxu; u++) {
        const char *name = NULL;
        for (int i = 0; i < n && !name; i++) name = jstr(unit_at(&runs[i], u), "name");
        qd_sb_printf(h, "<tr><td class=\"n\">%d</td><td><code>", u);
        qd_sb_html(h, str_or_dash(name));
        qd_sb_put(h, "</code></td>");
        qd_sb_printf(m, "| %d | ", u);
        qd_sb_md_code(m, str_or_dash(name));
        qd_sb_put(m, " |");
        qd_sb_printf(&d, "%d", u);
        for (int i = 0; i < n; i++) {
            const cJSON *U = unit_at(&runs[i], u);
            char b[32], a[32];
            double av = jnum(U, "sqnr_after_db");
            fmt(b, sizeof b, "%.2f", jnum(U, "sqnr_before_db"));
            fmt(a, sizeof a, "%.2f", av);
            qd_sb_printf(h, "<td class=\"n\">%s &rarr; <b>%s</b></td>", b, a);
            qd_sb_printf(m, " %s → **%s** |", b, a);
            if (isfinite(av)) { qd_sb_printf(&d, " %.6g", av); points++; }
            else qd_sb_put(&d, " NaN");
        }
        qd_sb_put(h, "</tr>\n");
        qd_sb_put(m, "\n");
        qd_sb_put(&d, "\n");
    }
    qd_sb_put(h, "</table>\n");
    qd_sb_put(m, "\n");
    const picture *pc = points > 0 && !d.oom ? pics_draw(pics, "compare_sqnr.png", "SQNR after reconstruction per unit, one "
                                                         "line per run", "series", d.p, "SQNR after reconstruction",
                                                         "SQNR (dB)", "") : NULL;
    qd_sb_free(&d);
    if (pc) { html_img(h, pc); md_img(m, pc); }
    else if (points > 0) { html_note(h, pics->note); qd_sb_printf(m, "No picture: %s\n\n", pics->note); }
    qd_sb_put(h, "</section>\n");
}

static void cmp_timing(qd_sbuf *h, qd_sbuf *m, run_files *runs, int n, pictures *pics) {
    /* phases: the union of the runs' timing keys, in first-seen order */
    const char *keys[64];
    int nk = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *T = timing_of(&runs[i]);
        for (const cJSON *t = T ? T->child : NULL; t && nk < 64; t = t->next) {
            if (!cJSON_IsNumber(t) || !t->string) continue;
            int seen = 0;
            for (int k = 0; k < nk && !seen; k++) seen = strcmp(keys[k], t->string) == 0;
            if (!seen) keys[nk++] = t->string;
        }
    }
    qd_sb_put(h, "<section id=\"timing\">\n<h2>Time per phase</h2>\n<table>\n<tr><th>phase (s)</th>");
    qd_sb_put(m, "## Time per phase\n\n| phase (s) |");
    qd_sbuf d = {0};
    run_columns(h, m, &d, runs, n, "|---|", "phase");
    int rows = 0;
    for (int k = 0; k < nk; k++) {
        char ph[64], tok[64];
        phase_name(keys[k], ph, sizeof ph);
        qd_chart_token(tok, sizeof tok, ph);
        int chart = strcmp(keys[k], "total_s") != 0;
        qd_sb_put(h, "<tr><td>");
        qd_sb_html(h, ph);
        qd_sb_put(h, "</td>");
        qd_sb_put(m, "| ");
        qd_sb_md_code(m, ph);
        qd_sb_put(m, " |");
        if (chart) qd_sb_put(&d, tok);
        for (int i = 0; i < n; i++) {
            double v = jnum(timing_of(&runs[i]), keys[k]);
            char s[32];
            fmt(s, sizeof s, "%.2f", v);
            qd_sb_printf(h, "<td class=\"n\">%s</td>", s);
            qd_sb_printf(m, " %s |", s);
            if (chart) qd_sb_printf(&d, isfinite(v) ? " %.6g" : " 0", v);
        }
        qd_sb_put(h, "</tr>\n");
        qd_sb_put(m, "\n");
        if (chart) { qd_sb_put(&d, "\n"); rows++; }
    }
    qd_sb_put(h, "</table>\n");
    qd_sb_put(m, "\n");
    const picture *pc = rows > 0 && !d.oom ? pics_draw(pics, "compare_time.png", "time per phase, one bar per run",
                                                       "clusters", d.p, "time per phase", "seconds", "") : NULL;
    qd_sb_free(&d);
    if (pc) { html_img(h, pc); md_img(m, pc); }
    else if (rows > 0) { html_note(h, pics->note); qd_sb_printf(m, "No picture: %s\n\n", pics->note); }
    qd_sb_put(h, "</section>\n");
}

qd_status qd_report_compare(const char *const *run_dirs, int nruns, const char *out_dir, const qd_report_options *opt) {
    if (nruns < 1) return qd_errorf(QD_ERR_USAGE, "compare: no run directories given");
    if (nruns > 26) return qd_errorf(QD_ERR_USAGE, "compare: at most 26 runs side by side, got %d", nruns);
    run_files *runs = calloc((size_t)nruns, sizeof *runs);
    if (!runs) return qd_errorf(QD_ERR_INTERNAL, "out of host memory");
    qd_status st = QD_OK;
    for (int i = 0; i < nruns && st == QD_OK; i++) {
        st = load_run(run_dirs[i], &runs[i]);
        if (st == QD_OK) run_label(&runs[i], i);
    }
    if (st == QD_OK) st = qd_mkdir_p(out_dir);
    if (st == QD_OK) {
        pictures pics;
        pics_open(&pics, out_dir, opt);
        qd_sbuf h = {0}, m = {0};
        char title[128], by[160];
        snprintf(title, sizeof title, "qdrop-gpu comparison of %d runs", nruns);
        rendered_by(by, sizeof by);
        html_head(&h, title);
        qd_sb_printf(&h, "<h1>qdrop-gpu comparison of %d runs</h1>\n<p class=\"sub\">", nruns);
        qd_sb_html(&h, by);
        qd_sb_put(&h, "</p>\n");
        qd_sb_printf(&m, "# qdrop-gpu comparison of %d runs\n\n%s\n\n", nruns, by);
        cmp_runs(&h, &m, runs, nruns);
        cmp_accuracy(&h, &m, runs, nruns, &pics);
        cmp_sqnr(&h, &m, runs, nruns, &pics);
        cmp_timing(&h, &m, runs, nruns, &pics);
        qd_sb_put(&h, "</body>\n</html>\n");
        qd_plotter_close(&pics.pl);
        st = write_outputs(out_dir, &h, &m, &pics);
        qd_sb_free(&h);
        qd_sb_free(&m);
        pics_free(&pics);
    }
    for (int i = 0; i < nruns; i++) run_files_free(&runs[i]);
    free(runs);
    return st;
}
