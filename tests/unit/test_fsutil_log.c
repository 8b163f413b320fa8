/* tests/unit/test_fsutil_log.c: atomic writes (incl. a simulated full disk), reads, path
 * helpers, the streaming atomic file, the JSON Lines run log, and the output directory (lock,
 * tree removal without following links, all-or-nothing publication, cleanup of a previous run,
 * signals). */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, strtok_r, setrlimit: tests get no feature macros */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "qdrop/fsutil.h"
#include "qdrop/interrupt.h"
#include "qdrop/log.h"
#include "recon/outdir.h"

static char g_dir[64];

/* number of entries in dir whose name contains ".tmp." */
static int count_tmp(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static int file_is(const char *path, const char *want) {
    void *d = NULL;
    size_t n = 0;
    if (qd_read_file(path, &d, &n) != QD_OK) { qd_error_clear(); return 0; }
    int ok = n == strlen(want) && memcmp(d, want, n) == 0 && ((char *)d)[n] == 0;
    free(d);
    return ok;
}

static void test_paths(void) {
    char b[256];
    qd_path_stem("a/b/resnet20_cifar10.onnx", b, sizeof b);
    CHECK(strcmp(b, "resnet20_cifar10") == 0);
    qd_path_stem("models/bert-base/", b, sizeof b);
    CHECK(strcmp(b, "bert-base") == 0);
    qd_path_stem("x.tar.gz", b, sizeof b);
    CHECK(strcmp(b, "x.tar") == 0);
    qd_path_stem(".hidden", b, sizeof b);
    CHECK(strcmp(b, ".hidden") == 0);
    qd_path_stem("abcdef.onnx", b, 4);
    CHECK(strcmp(b, "abc") == 0);
    qd_path_dirname("a/b/c.json", b, sizeof b);
    CHECK(strcmp(b, "a/b") == 0);
    qd_path_dirname("c.json", b, sizeof b);
    CHECK(strcmp(b, ".") == 0);
    qd_path_dirname("/c.json", b, sizeof b);
    CHECK(strcmp(b, "/") == 0);
    qd_path_dirname("a//b/", b, sizeof b);
    CHECK(strcmp(b, "a") == 0);
    CHECK(qd_path_join(b, sizeof b, "runs/x", "run.log") == QD_OK && strcmp(b, "runs/x/run.log") == 0);
    CHECK(qd_path_join(b, sizeof b, "runs/x/", "run.log") == QD_OK && strcmp(b, "runs/x/run.log") == 0);
    CHECK(qd_path_join(b, sizeof b, "", "run.log") == QD_OK && strcmp(b, "run.log") == 0);
    CHECK(qd_path_join(b, sizeof b, "runs", "/abs") == QD_OK && strcmp(b, "/abs") == 0);
    qd_error_clear();
    CHECK(qd_path_join(b, 8, "runs/x", "run.log") == QD_ERR_IO);
    qd_error_clear();
}

static void test_files(void) {
    char p[256], q[256];
    /* mkdir -p, idempotent; a file in the way is an error */
    snprintf(p, sizeof p, "%s/a/b/c", g_dir);
    CHECK(qd_mkdir_p(p) == QD_OK);
    CHECK(qd_mkdir_p(p) == QD_OK);
    CHECK(qd_file_exists(p));
    snprintf(q, sizeof q, "%s/a/file", g_dir);
    CHECK(qd_write_file_atomic(q, "x", 1) == QD_OK);
    snprintf(p, sizeof p, "%s/a/file/sub", g_dir);
    qd_error_clear();
    CHECK(qd_mkdir_p(p) == QD_ERR_IO && strstr(qd_error_message(), "not a directory"));
    qd_error_clear();

    /* atomic write + read back, no temp left */
    snprintf(p, sizeof p, "%s/out.json", g_dir);
    CHECK(qd_write_file_atomic(p, "{\"a\":1}\n", 8) == QD_OK);
    CHECK(file_is(p, "{\"a\":1}\n"));
    CHECK(qd_write_file_atomic(p, "second", 6) == QD_OK && file_is(p, "second"));
    CHECK(count_tmp(g_dir) == 0);
    CHECK(qd_write_file_atomic(p, "", 0) == QD_OK && file_is(p, ""));

    /* target directory missing: I/O error naming the path */
    snprintf(q, sizeof q, "%s/nodir/x.json", g_dir);
    qd_error_clear();
    CHECK(qd_write_file_atomic(q, "x", 1) == QD_ERR_IO && strstr(qd_error_message(), q));
    qd_error_clear();

    /* read errors */
    snprintf(q, sizeof q, "%s/missing.bin", g_dir);
    void *d = (void *)1;
    size_t n = 7;
    CHECK(qd_read_file(q, &d, &n) == QD_ERR_NOINPUT && strstr(qd_error_message(), q) && d == NULL && n == 0);
    qd_error_clear();
    CHECK(qd_read_file(g_dir, &d, &n) == QD_ERR_NOINPUT && strstr(qd_error_message(), "is a directory"));
    qd_error_clear();
    CHECK(!qd_file_exists(q));
}

/* A full disk, simulated with RLIMIT_FSIZE (writes past the limit fail with EFBIG): the write
 * fails with QD_ERR_IO, the temp file is removed and the previous file stays intact. */
static void test_disk_full(void) {
    char p[256];
    snprintf(p, sizeof p, "%s/big.bin", g_dir);
    CHECK(qd_write_file_atomic(p, "old", 3) == QD_OK);
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 4096;
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    size_t big = 1 << 16;
    char *buf = calloc(big, 1);
    qd_error_clear();
    qd_status st = qd_write_file_atomic(p, buf, big);
    CHECK(st == QD_ERR_IO && strstr(qd_error_message(), p) && strstr(qd_error_message(), "too large"));
    qd_error_clear();
    /* streaming variant: the failure is detected at commit */
    qd_afile af;
    CHECK(qd_afile_open(&af, p) == QD_OK);
    for (int i = 0; i < 4; i++) fwrite(buf, 1, big, af.f);
    st = qd_afile_commit(&af);
    CHECK(st == QD_ERR_IO && strstr(qd_error_message(), p));
    qd_error_clear();
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    free(buf);
    CHECK(file_is(p, "old"));
    CHECK(count_tmp(g_dir) == 0);
}

static void test_afile(void) {
    char p[256];
    snprintf(p, sizeof p, "%s/stream.txt", g_dir);
    qd_afile af;
    CHECK(qd_afile_open(&af, p) == QD_OK);
    fprintf(af.f, "hello %d\n", 42);
    CHECK(!qd_file_exists(p)); /* nothing visible before commit */
    CHECK(qd_afile_commit(&af) == QD_OK);
    CHECK(file_is(p, "hello 42\n"));
    CHECK(qd_afile_open(&af, p) == QD_OK);
    fputs("partial", af.f);
    qd_afile_abort(&af);
    CHECK(file_is(p, "hello 42\n"));
    CHECK(count_tmp(g_dir) == 0);
    qd_error_clear();
    CHECK(qd_afile_commit(&af) == QD_ERR_INTERNAL); /* already finished */
    qd_error_clear();
}

static void test_log(void) {
    char p[256];
    snprintf(p, sizeof p, "%s/run.log", g_dir);
    qd_log_set_stderr(0, 1); /* quiet: keep the test output clean */
    CHECK(qd_log_open(p) == QD_OK);
    qd_log_info("start", "model %s", "m.onnx");
    qd_log_warn("calib_small", "only %d images \"quoted\"\nsecond line", 10);
    qd_log_event_json(QD_LOG_DEBUG, "recon_progress", "\"unit\":3,\"loss\":0.5", "unit %d", 3);
    qd_log_error("fail", "tab\there");
    qd_log_close();
    qd_log_info("after_close", "not in the file");
    void *d = NULL;
    size_t n = 0;
    CHECK(qd_read_file(p, &d, &n) == QD_OK);
    if (!d) return;
    const char *want_level[] = {"info", "warn", "debug", "error"};
    const char *want_event[] = {"start", "calib_small", "recon_progress", "fail"};
    int lines = 0;
    char *save = NULL;
    for (char *l = strtok_r((char *)d, "\n", &save); l; l = strtok_r(NULL, "\n", &save), lines++) {
        cJSON *o = cJSON_Parse(l);
        CHECK(o != NULL);
        if (!o || lines >= 4) { cJSON_Delete(o); continue; }
        CHECK(cJSON_IsString(cJSON_GetObjectItem(o, "ts")) && strlen(cJSON_GetObjectItem(o, "ts")->valuestring) == 24);
        CHECK(strcmp(cJSON_GetObjectItem(o, "level")->valuestring, want_level[lines]) == 0);
        CHECK(strcmp(cJSON_GetObjectItem(o, "event")->valuestring, want_event[lines]) == 0);
        const char *msg = cJSON_GetObjectItem(o, "msg")->valuestring;
        if (lines == 0) CHECK(strcmp(msg, "model m.onnx") == 0);
        if (lines == 1) CHECK(strcmp(msg, "only 10 images \"quoted\"\nsecond line") == 0);
        if (lines == 2) CHECK(cJSON_GetObjectItem(o, "unit")->valueint == 3 && cJSON_GetObjectItem(o, "loss")->valuedouble == 0.5);
        if (lines == 3) CHECK(strcmp(msg, "tab\there") == 0);
        cJSON_Delete(o);
    }
    CHECK(lines == 4);
    free(d);
    qd_error_clear();
    snprintf(p, sizeof p, "%s/nodir/run.log", g_dir);
    CHECK(qd_log_open(p) == QD_ERR_IO && strstr(qd_error_message(), p));
    qd_error_clear();

    qd_progress_set_mode(QD_PROGRESS_NEVER);
    CHECK(qd_progress_active() == 0);
    qd_progress_set_mode(QD_PROGRESS_ALWAYS);
    CHECK(qd_progress_active() == 1);
    qd_progress_set_mode(QD_PROGRESS_AUTO);
    CHECK(qd_progress_active() == 0); /* quiet */
    qd_log_set_stderr(0, 0);
}

static void put(const char *dir, const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) { fputs(text, f); fclose(f); }
}

static int exists_in(const char *dir, const char *name) {
    char p[512];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return lstat(p, &sb) == 0;
}

static void test_outdir_primitives(void) {
    char d[256], victim[256], p[512];
    snprintf(d, sizeof d, "%s/od", g_dir);
    CHECK(qd_mkdir_p(d) == QD_OK);
    /* lock: a second lock (another open file description, as another process would have) fails */
    int fd1 = -1, fd2 = -1;
    CHECK(qd_dir_lock(d, ".lk", &fd1) == QD_OK && fd1 >= 0);
    qd_error_clear();
    CHECK(qd_dir_lock(d, ".lk", &fd2) == QD_ERR_IO && fd2 == -1 && strstr(qd_error_message(), "in use by another qdrop-gpu run"));
    qd_error_clear();
    qd_dir_unlock(fd1);
    CHECK(qd_dir_lock(d, ".lk", &fd2) == QD_OK);
    qd_dir_unlock(fd2);
    /* symlinks are never followed: lock file, run.log, temporary names, tree removal */
    snprintf(victim, sizeof victim, "%s/victim.txt", g_dir);
    put(g_dir, "victim.txt", "keep");
    snprintf(p, sizeof p, "%s/.lk2", d);
    CHECK(symlink(victim, p) == 0);
    CHECK(qd_dir_lock(d, ".lk2", &fd1) == QD_ERR_IO && strstr(qd_error_message(), "symbolic link"));
    qd_error_clear();
    snprintf(p, sizeof p, "%s/run.log", d);
    CHECK(symlink(victim, p) == 0);
    CHECK(qd_log_open(p) == QD_ERR_IO && strstr(qd_error_message(), "symbolic link"));
    qd_error_clear();
    snprintf(p, sizeof p, "%s/out.json.tmp.%ld", d, (long)getpid());
    CHECK(symlink(victim, p) == 0);
    snprintf(p, sizeof p, "%s/out.json", d);
    CHECK(qd_write_file_atomic(p, "new", 3) == QD_OK && file_is(p, "new"));
    CHECK(file_is(victim, "keep"));
    snprintf(p, sizeof p, "%s/tree/sub", d);
    CHECK(qd_mkdir_p(p) == QD_OK);
    put(p, "f", "x");
    snprintf(p, sizeof p, "%s/tree/sub/link_out", d);
    CHECK(symlink(g_dir, p) == 0);  /* a link to the directory above: removing must not descend */
    snprintf(p, sizeof p, "%s/tree", d);
    CHECK(qd_remove_tree(p) == QD_OK && !exists_in(d, "tree"));
    CHECK(file_is(victim, "keep") && exists_in(g_dir, "od"));
    CHECK(qd_remove_tree(p) == QD_OK); /* missing is fine */
    /* path_within: the model below (or at) the output directory, through links too */
    int w = -1;
    CHECK(qd_path_within(victim, g_dir, &w) == QD_OK && w == 1);
    CHECK(qd_path_within(g_dir, g_dir, &w) == QD_OK && w == 1);
    CHECK(qd_path_within(victim, d, &w) == QD_OK && w == 0);
    snprintf(p, sizeof p, "%s/../victim.txt", d);
    CHECK(qd_path_within(p, d, &w) == QD_OK && w == 0);
    CHECK(qd_path_within(victim, "/", &w) == QD_OK && w == 1);
    snprintf(p, sizeof p, "%s/no_such", g_dir);
    CHECK(qd_path_within(victim, p, &w) == QD_OK && w == 0);
    snprintf(p, sizeof p, "%s_sibling", g_dir);  /* a name prefix is not a parent */
    CHECK(qd_path_within(p, g_dir, &w) == QD_OK && w == 0);
}

static void test_publish(void) {
    char st[256], d[256], p[512];
    snprintf(st, sizeof st, "%s/pub_stage", g_dir);
    snprintf(d, sizeof d, "%s/pub", g_dir);
    snprintf(p, sizeof p, "%s/plots", st);
    CHECK(qd_mkdir_p(p) == QD_OK && qd_mkdir_p(d) == QD_OK);
    put(st, "results.json", "R");
    put(st, "model_qdq.onnx", "M");
    put(st, "plots/unit00_loss.png", "P");
    CHECK(qd_publish_dir(st, d, "results.json") == QD_OK);
    CHECK(exists_in(d, "results.json") && exists_in(d, "model_qdq.onnx") && exists_in(d, "plots/unit00_loss.png"));
    CHECK(!exists_in(st, "results.json") && !exists_in(st, "plots/unit00_loss.png"));
    /* a rename that fails (a non-empty directory where encodings.json goes) takes back what was
     * moved: nothing new appears, results.json above all */
    snprintf(p, sizeof p, "%s/pub2", g_dir);
    CHECK(qd_mkdir_p(p) == QD_OK);
    char p2[600];
    snprintf(p2, sizeof p2, "%s/encodings.json", p);
    CHECK(qd_mkdir_p(p2) == QD_OK);
    put(p2, "keep", "k");
    put(st, "results.json", "R2");
    put(st, "a_first.onnx", "A");
    put(st, "encodings.json", "E");
    CHECK(qd_publish_dir(st, p, "results.json") == QD_ERR_IO && strstr(qd_error_message(), "encodings.json"));
    qd_error_clear();
    CHECK(!exists_in(p, "results.json") && !exists_in(p, "a_first.onnx"));
}

static void test_outdir_cleanup(void) {
    qd_config cfg;
    memset(&cfg, 0, sizeof cfg);
    char d[256], p[512];
    snprintf(d, sizeof d, "%s/run_out", g_dir);
    snprintf(cfg.out_dir, sizeof cfg.out_dir, "%s", d);
    snprintf(cfg.model_path, sizeof cfg.model_path, "%s/model.onnx", g_dir);
    put(g_dir, "model.onnx", "m");
    snprintf(p, sizeof p, "%s/plots", d);
    CHECK(qd_mkdir_p(p) == QD_OK);
    const char *old[] = {"results.json", "model_qdq.onnx", "encodings.json", "predictions.csv", "resolved_config.json",
                         "checkpoint.bin", "plots/unit00_loss.png", "checkpoint.bin.tmp.17", "my_notes.txt", "run.log"};
    for (size_t i = 0; i < sizeof old / sizeof *old; i++) put(d, old[i], "old");
    qd_outdir od;
    CHECK(qd_outdir_open(&od, &cfg, 1) == QD_OK);  /* --resume: the checkpoint stays */
    CHECK(exists_in(d, "checkpoint.bin") && !exists_in(d, "results.json") && !exists_in(d, "model_qdq.onnx") &&
          !exists_in(d, "encodings.json") && !exists_in(d, "predictions.csv") && !exists_in(d, "resolved_config.json") &&
          !exists_in(d, "plots") && !exists_in(d, "checkpoint.bin.tmp.17"));
    CHECK(exists_in(d, "my_notes.txt") && exists_in(d, "run.log") && exists_in(d, QD_OUTDIR_STAGE));
    qd_outdir od2;  /* a second run into the same directory */
    CHECK(qd_outdir_open(&od2, &cfg, 0) == QD_ERR_IO && strstr(qd_error_message(), "in use"));
    qd_error_clear();
    put(od.stage, "results.json", "new");
    CHECK(qd_outdir_publish(&od) == QD_OK);
    snprintf(p, sizeof p, "%s/results.json", d);
    CHECK(file_is(p, "new"));
    qd_outdir_close(&od);
    CHECK(!exists_in(d, QD_OUTDIR_STAGE));
    CHECK(qd_outdir_open(&od, &cfg, 0) == QD_OK);  /* without --resume the checkpoint goes too */
    CHECK(!exists_in(d, "checkpoint.bin") && !exists_in(d, "results.json"));
    qd_outdir_close(&od);
    /* the model inside the output directory, or the output directory being its directory */
    snprintf(cfg.out_dir, sizeof cfg.out_dir, "%s", g_dir);
    CHECK(qd_outdir_check_model(&cfg) == QD_ERR_CONFIG && strstr(qd_error_message(), "contains the input model"));
    qd_error_clear();
    CHECK(qd_outdir_open(&od, &cfg, 0) == QD_ERR_CONFIG && exists_in(g_dir, "model.onnx"));
    qd_error_clear();
}

static void test_interrupt(void) {
    CHECK(qd_interrupted() == 0);
    CHECK(qd_interrupt_install() == 0);
    raise(SIGTERM);  /* recorded, not fatal */
    CHECK(qd_interrupted() == SIGTERM);
    CHECK(qd_status_exit_code(QD_ERR_INTERRUPTED) == 143);
    CHECK(strcmp(qd_signal_name(SIGINT), "SIGINT") == 0);
    qd_interrupt_restore();
    qd_interrupt_reset();
    CHECK(qd_interrupt_install() == 0);
    raise(SIGINT);
    CHECK(qd_interrupted() == SIGINT && qd_status_exit_code(QD_ERR_INTERRUPTED) == 130);
    qd_interrupt_restore();
    qd_interrupt_reset();
}

static void rm_rf(const char *dir) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/qd_test_fs_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    test_paths();
    test_files();
    test_disk_full();
    test_afile();
    test_log();
    test_outdir_primitives();
    test_publish();
    test_outdir_cleanup();
    test_interrupt();
    rm_rf(g_dir);
    return qd_test_summary("test_fsutil_log");
}
