/* tests/unit/test_fsutil_log.c: atomic writes (incl. a simulated full disk), reads, path
 * helpers, the streaming atomic file, and the JSON Lines run log. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, strtok_r, setrlimit: tests get no feature macros */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "qdrop/fsutil.h"
#include "qdrop/log.h"

static int g_fail, g_checks;
#define CHECK(cond)                                                                   \
    do {                                                                              \
        g_checks++;                                                                   \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
            g_fail++;                                                                 \
        }                                                                             \
    } while (0)

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
    rm_rf(g_dir);
    printf("test_fsutil_log: %d checks, %d failed\n", g_checks, g_fail);
    return g_fail ? 1 : 0;
}
