/* src/cli/cli_report.c: `qdrop-gpu report RUN_DIR` and `qdrop-gpu compare RUN_A RUN_B ...`:
 * the run report rendered again from a finished run's files, and several runs side by side
 * (qdrop/report.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_report.h"
#include "qdrop/log.h"
#include "qdrop/report.h"
#include "qdrop/status.h"

static int fail(qd_status st) {
    const char *m = qd_error_message();
    fprintf(stderr, "qdrop-gpu: error: %s\n", m[0] ? m : qd_status_name(st));
    return qd_status_exit_code(st);
}

static int usage_error(const char *cmd, const char *what, const char *arg) {
    fprintf(stderr, "qdrop-gpu: error: %s: %s%s%s%s (see qdrop-gpu %s --help)\n", cmd, what, arg ? " '" : "",
            arg ? arg : "", arg ? "'" : "", cmd);
    return QD_EXIT_USAGE;
}

static void usage_report(FILE *f) {
    fprintf(f,
            "usage: qdrop-gpu report RUN_DIR [--out DIR] [--no-plots] [--quiet]\n"
            "\n"
            "Render report.html and report.md (and plots/*.png) again from the files of a finished run\n"
            "(results.json, resolved_config.json, predictions.csv), by default into RUN_DIR itself.\n"
            "\n"
            "  --out DIR     write the report into DIR instead\n"
            "  --no-plots    no pictures (tables only)\n"
            "  --quiet       errors only on stderr\n");
}

static void usage_compare(FILE *f) {
    fprintf(f,
            "usage: qdrop-gpu compare RUN_A RUN_B [RUN ...] [--out DIR] [--no-plots] [--quiet]\n"
            "\n"
            "One side-by-side report of finished runs (accuracy, SQNR per unit, time per phase):\n"
            "DIR/report.html and DIR/report.md (and DIR/plots/compare_*.png). At most 26 runs.\n"
            "\n"
            "  --out DIR     output directory (default: runs/compare)\n"
            "  --no-plots    no pictures (tables only)\n"
            "  --quiet       errors only on stderr\n");
}

/* Shared option parsing: positional run directories, --out DIR, --no-plots, --quiet, --help.
 * Returns -1 to go on, else an exit code. */
static int parse(int argc, char **argv, const char ***dirs, int *ndirs, const char **out, int *plots, int *quiet,
                 void (*usage)(FILE *)) {
    const char *cmd = argv[0];
    *dirs = calloc((size_t)argc + 1, sizeof **dirs);
    if (!*dirs) return fail(qd_errorf(QD_ERR_INTERNAL, "out of host memory"));
    *ndirs = 0;
    int only_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_positional && a[0] == '-' && a[1]) {
            if (strcmp(a, "--") == 0) only_positional = 1;
            else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { usage(stdout); return 0; }
            else if (strcmp(a, "--no-plots") == 0) *plots = 0;
            else if (strcmp(a, "--quiet") == 0) *quiet = 1;
            else if (strcmp(a, "--out") == 0) {
                if (i + 1 >= argc) return usage_error(cmd, "option --out needs a value", NULL);
                *out = argv[++i];
                if (!(*out)[0]) return usage_error(cmd, "--out: empty path", NULL);
            } else if (strncmp(a, "--out=", 6) == 0) {
                *out = a + 6;
                if (!(*out)[0]) return usage_error(cmd, "--out: empty path", NULL);
            } else {
                return usage_error(cmd, "unknown option", a);
            }
        } else {
            if (!a[0]) return usage_error(cmd, "empty run directory path", NULL);
            (*dirs)[(*ndirs)++] = a;
        }
    }
    return -1;
}

int qd_cli_report(int argc, char **argv) {
    const char **dirs = NULL, *out = NULL;
    int n = 0, plots = 1, quiet = 0;
    int rc = parse(argc, argv, &dirs, &n, &out, &plots, &quiet, usage_report);
    if (rc < 0 && n != 1) rc = usage_error("report", n == 0 ? "expected a run directory" : "expected one run directory, got",
                                           n == 0 ? NULL : dirs[1]);
    if (rc >= 0) { free(dirs); return rc; }
    qd_log_set_stderr(0, quiet);
    qd_report_options o = {plots};
    qd_status st = qd_report_render(dirs[0], out ? out : dirs[0], &o);
    if (st == QD_OK && !quiet) printf("report: %s/report.html, %s/report.md\n", out ? out : dirs[0], out ? out : dirs[0]);
    free(dirs);
    return st == QD_OK ? 0 : fail(st);
}

int qd_cli_compare(int argc, char **argv) {
    const char **dirs = NULL, *out = NULL;
    int n = 0, plots = 1, quiet = 0;
    int rc = parse(argc, argv, &dirs, &n, &out, &plots, &quiet, usage_compare);
    if (rc < 0 && n < 2) rc = usage_error("compare", "expected at least two run directories", NULL);
    if (rc < 0 && n > 26) rc = usage_error("compare", "at most 26 run directories", NULL);
    if (rc >= 0) { free(dirs); return rc; }
    if (!out) out = "runs/compare";
    qd_log_set_stderr(0, quiet);
    qd_report_options o = {plots};
    qd_status st = qd_report_compare(dirs, n, out, &o);
    if (st == QD_OK && !quiet) printf("comparison of %d runs: %s/report.html, %s/report.md\n", n, out, out);
    free(dirs);
    return st == QD_OK ? 0 : fail(st);
}

char *qd_cli_command_line(int argc, char **argv) {
    size_t cap = 1;
    for (int i = 0; i < argc; i++) cap += 4 * strlen(argv[i]) + 3;
    char *s = malloc(cap), *o = s;
    if (!s) return NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int plain = a[0] != 0;
        for (const char *p = a; *p && plain; p++)
            plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./=:,+@%-", *p) != NULL;
        if (i) *o++ = ' ';
        if (plain) { memcpy(o, a, strlen(a)); o += strlen(a); continue; }
        *o++ = '\'';
        for (const char *p = a; *p; p++) {
            if (*p == '\'') { memcpy(o, "'\\''", 4); o += 4; }
            else *o++ = *p;
        }
        *o++ = '\'';
    }
    *o = 0;
    return s;
}
