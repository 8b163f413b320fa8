/* src/report/report_gnuplot.c: pictures through gnuplot with no shell and no script text built
 * from data.
 *
 * gnuplot is a full scripting language (its `system` runs commands), and node names come from
 * model files and paths from the command line, so nothing untrusted may become script text.
 * Here:
 *   - the script is the fixed constant CHART_SCRIPT below, written into a private working
 *     directory (mkdtemp) as "charts.gp";
 *   - gnuplot is found by walking PATH in C and started with fork + execv (no /bin/sh), its
 *     working directory set to that directory, so every file name it sees is a fixed relative one;
 *   - numbers and axis labels are in data files ("loss.dat", ...), read as data;
 *   - the chart kind and title are argv strings: `gnuplot -c charts.gp KIND TITLE YLABEL OPT`
 *     makes them the string variables ARG1..ARG4, which gnuplot never evaluates as commands;
 *   - text is literal: the terminal and every label are `noenhanced` (no `_` subscripts), and
 *     titles are reduced to printable ASCII before they are passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qdrop/fsutil.h"
#include "report/report_internal.h"

static const char CHART_SCRIPT[] =
    "# qdrop-gpu report charts (src/report/report_gnuplot.c). A fixed script: file names are fixed,\n"
    "# values come from data files, ARG1..ARG4 are plain strings that are never evaluated.\n"
    "# ARG1 chart kind, ARG2 title, ARG3 y-axis label, ARG4 option (loss: log|lin)\n"
    "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
    "    set terminal pngcairo size 720,405 noenhanced font 'sans,10'\n"
    "} else {\n"
    "    set terminal png size 720,405 noenhanced\n"
    "}\n"
    "set termoption noenhanced\n"
    "# one palette for every chart (the first series is always blue)\n"
    "set linetype 1 lc rgb '#1f77b4'\n"
    "set linetype 2 lc rgb '#ff7f0e'\n"
    "set linetype 3 lc rgb '#2ca02c'\n"
    "set linetype 4 lc rgb '#d62728'\n"
    "set linetype 5 lc rgb '#9467bd'\n"
    "set linetype 6 lc rgb '#8c564b'\n"
    "set linetype 7 lc rgb '#e377c2'\n"
    "set linetype 8 lc rgb '#7f7f7f'\n"
    "set linetype cycle 8\n"
    "set output 'chart.png'\n"
    "set title ARG2 noenhanced\n"
    "set ylabel ARG3 noenhanced\n"
    "set grid ytics\n"
    "set border 3\n"
    "set tics nomirror\n"
    "set key noenhanced\n"
    "if (ARG1 eq 'loss') {\n"
    "    set xlabel 'iteration' noenhanced\n"
    "    if (ARG4 eq 'log') { set logscale y }\n"
    "    set autoscale yfix\n"
    "    set offsets 0, 0, graph 0.05, graph 0.05\n"
    "    set grid xtics ytics\n"
    "    plot 'loss.dat' using 1:2 with linespoints lw 2 pt 7 ps 0.4 lc rgb '#1f77b4' notitle\n"
    "}\n"
    "if (ARG1 eq 'sqnr') {\n"
    "    set xlabel 'unit' noenhanced\n"
    "    set style data histograms\n"
    "    set style histogram clustered gap 1\n"
    "    set style fill solid 0.85 border -1\n"
    "    set key below\n"
    "    set yrange [*<0:0<*]\n"
    "    plot 'sqnr.dat' using 2:xtic(1) title 'before reconstruction' lc rgb '#b0b0b0', \\\n"
    "         '' using 3 title 'after reconstruction' lc rgb '#1f77b4'\n"
    "}\n"
    "if (ARG1 eq 'time') {\n"
    "    set style data histograms\n"
    "    set style fill solid 0.85 border -1\n"
    "    set xtics rotate by -25\n"
    "    set yrange [*<0:0<*]\n"
    "    plot 'time.dat' using 2:xtic(1) notitle lc rgb '#1f77b4'\n"
    "}\n"
    "if (ARG1 eq 'series') {\n"
    "    set xlabel 'unit' noenhanced\n"
    "    set key below\n"
    "    plot for [i=2:*] 'series.dat' using 1:i:xtic(1) with linespoints lw 2 pt 7 title columnheader(i)\n"
    "}\n"
    "if (ARG1 eq 'clusters') {\n"
    "    set style data histograms\n"
    "    set style histogram clustered gap 1\n"
    "    set style fill solid 0.85 border -1\n"
    "    set xtics rotate by -25\n"
    "    set yrange [*<0:0<*]\n"
    "    set key below\n"
    "    plot for [i=2:*] 'clusters.dat' using i:xtic(1) title columnheader(i)\n"
    "}\n";

/* Data and output files the script uses; removed with the working directory. */
static const char *const WORK_FILES[] = {"charts.gp", "loss.dat", "sqnr.dat", "time.dat", "series.dat",
                                         "clusters.dat", "chart.png", "gnuplot.log"};

static int find_on_path(const char *name, char *out, size_t n) {
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        /* an empty PATH element means the current directory: not searched (a run directory is
         * no place to pick a program from) */
        if (len > 0 && path[0] == '/' && len + strlen(name) + 2 <= n) {
            snprintf(out, n, "%.*s/%s", (int)len, path, name);
            struct stat st;
            if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0) return 1;
        }
        path += len;
        if (*path == ':') path++;
    }
    out[0] = 0;
    return 0;
}

static int write_work_file(const qd_plotter *p, const char *name, const char *text) {
    char path[1300];
    snprintf(path, sizeof path, "%s/%s", p->work, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return 0;
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { close(fd); return 0; }
        off += (size_t)w;
    }
    return close(fd) == 0;
}

int qd_plotter_open(qd_plotter *p, const char *parent_dir) {
    memset(p, 0, sizeof *p);
    if (!find_on_path("gnuplot", p->gnuplot, sizeof p->gnuplot)) {
        snprintf(p->note, sizeof p->note, "gnuplot not found on PATH: no pictures (install gnuplot and run qdrop-gpu report)");
        return -1;
    }
    if ((size_t)snprintf(p->work, sizeof p->work, "%s/.report_charts.XXXXXX", parent_dir) >= sizeof p->work ||
        !mkdtemp(p->work)) {
        snprintf(p->note, sizeof p->note, "cannot create a working directory for the pictures: %s", strerror(errno));
        p->work[0] = 0;
        return -1;
    }
    if (!write_work_file(p, "charts.gp", CHART_SCRIPT)) {
        snprintf(p->note, sizeof p->note, "cannot write the chart script: %s", strerror(errno));
        qd_plotter_close(p);
        return -1;
    }
    return 0;
}

void qd_plotter_close(qd_plotter *p) {
    if (!p->work[0]) return;
    char path[1300];
    for (size_t i = 0; i < sizeof WORK_FILES / sizeof WORK_FILES[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", p->work, WORK_FILES[i]);
        unlink(path);
    }
    rmdir(p->work);
    p->work[0] = 0;
}

/* The last non-empty line of gnuplot's output, for the report's note. */
static void last_log_line(const qd_plotter *p, char *out, size_t n) {
    char path[1300];
    snprintf(path, sizeof path, "%s/gnuplot.log", p->work);
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0] && strspn(line, " \t^") != strlen(line)) qd_chart_title(out, n, line);
    }
    fclose(f);
}

/* Run gnuplot -c charts.gp ARG1..ARG4 in the working directory; 0 when it exits 0 within the
 * time limit. */
static int run_gnuplot(qd_plotter *p, const char *a1, const char *a2, const char *a3, const char *a4) {
    char *const argv[] = {"gnuplot", "-c", "charts.gp", (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL};
    pid_t pid = fork();
    if (pid < 0) { snprintf(p->note, sizeof p->note, "cannot start gnuplot: %s", strerror(errno)); return -1; }
    if (pid == 0) {
        /* child: only async-signal-safe calls until execv (the parent has threads) */
        if (chdir(p->work) != 0) _exit(126);
        int in = open("/dev/null", O_RDONLY);
        int log = open("gnuplot.log", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
        if (in < 0 || log < 0) _exit(126);
        dup2(in, 0);
        dup2(log, 1);
        dup2(log, 2);
        execv(p->gnuplot, argv);
        _exit(127);
    }
    /* a chart takes well under a second; a gnuplot that hangs must not hang the run */
    struct timespec nap = {0, 5 * 1000 * 1000};
    int status = 0;
    for (int waited_ms = 0;; waited_ms += 5) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) { snprintf(p->note, sizeof p->note, "gnuplot: waitpid failed"); return -1; }
        if (waited_ms > 60 * 1000) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
            snprintf(p->note, sizeof p->note, "gnuplot did not finish a chart in 60 s");
            return -1;
        }
        nanosleep(&nap, NULL);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    char line[200];
    last_log_line(p, line, sizeof line);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        snprintf(p->note, sizeof p->note, "cannot run %.200s", p->gnuplot);
    else
        snprintf(p->note, sizeof p->note, "gnuplot failed: %s", line[0] ? line : "no message");
    return -1;
}

int qd_plotter_draw(qd_plotter *p, const char *kind, const char *data, const char *title, const char *ylabel,
                    const char *opt, unsigned char **png, size_t *n) {
    *png = NULL;
    *n = 0;
    if (!p->work[0]) return -1;
    int known = 0;   /* the kind names a data file: only the script's own */
    for (size_t i = 0; i < sizeof WORK_FILES / sizeof WORK_FILES[0]; i++) {
        size_t l = strlen(kind);
        known |= strncmp(WORK_FILES[i], kind, l) == 0 && strcmp(WORK_FILES[i] + l, ".dat") == 0;
    }
    if (!known) { snprintf(p->note, sizeof p->note, "unknown chart kind"); return -1; }
    char datname[32], safe_title[160];
    snprintf(datname, sizeof datname, "%s.dat", kind);
    qd_chart_title(safe_title, sizeof safe_title, title);
    char out[1300];
    snprintf(out, sizeof out, "%s/chart.png", p->work);
    unlink(out);
    if (!write_work_file(p, datname, data)) {
        snprintf(p->note, sizeof p->note, "cannot write chart data: %s", strerror(errno));
        return -1;
    }
    if (run_gnuplot(p, kind, safe_title, ylabel ? ylabel : "", opt ? opt : "") != 0) return -1;
    void *d = NULL;
    size_t len = 0;
    if (qd_read_file(out, &d, &len) != QD_OK || len < 8 || memcmp(d, "\x89PNG\r\n\x1a\n", 8) != 0) {
        qd_error_clear();
        free(d);
        snprintf(p->note, sizeof p->note, "gnuplot wrote no PNG for a %s chart", kind);
        return -1;
    }
    *png = d;
    *n = len;
    return 0;
}
