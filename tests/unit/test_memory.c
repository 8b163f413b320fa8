/* tests/unit/test_memory.c: the host-memory budget of the CPU unit caches (docs/memory.md).
 *   1. process.host_memory_budget parses byte counts ("8G", "512M", "1.5GiB", 4096, "auto") and
 *      refuses anything else with QD_ERR_CONFIG;
 *   2. the CPU backend keeps caches in memory within the budget and spills the rest to a
 *      nameless memory-mapped file in the spill directory: the data round-trips bit for bit,
 *      the batch gather reads the same numbers, the spilled pages do not stay resident, nothing
 *      is left in the directory, and without a spill directory an over-budget cache fails;
 *   3. the plan check refuses a budget below the streaming window and a spill larger than the
 *      free disk, with QD_ERR_DEVICE_OOM (exit 75) naming the unit, the bytes and the budget. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qdrop/backend.h"
#include "qdrop/config.h"
#include "recon/memplan.h"
#include "test.h"

static int64_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int64_t kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtoll(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb * 1024;
}

static int dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void test_config(void) {
    static const struct { const char *set; int64_t want; } ok[] = {
        {"process.host_memory_budget=8G", (int64_t)8 << 30},
        {"process.host_memory_budget=512M", (int64_t)512 << 20},
        {"process.host_memory_budget=1.5GiB", (int64_t)3 << 29},
        {"process.host_memory_budget=100kB", 102400},
        {"process.host_memory_budget=4096", 4096},
        {"process.host_memory_budget=\"2g\"", (int64_t)2 << 30},
        {"process.host_memory_budget=auto", 0},
        {"process.host_memory_budget=0", 0},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        qd_config c;
        qd_config_defaults(&c);
        qd_status st = qd_config_set(&c, ok[i].set);
        CHECK(st == QD_OK && c.host_memory_budget == ok[i].want, "%s -> status %d, %lld bytes (want %lld): %s", ok[i].set, st,
              (long long)c.host_memory_budget, (long long)ok[i].want, qd_error_message());
        qd_error_clear();
    }
    static const char *bad[] = {"process.host_memory_budget=8X", "process.host_memory_budget=-1",
                                "process.host_memory_budget=1.5", "process.host_memory_budget=",
                                "process.host_memory_budget=true", "process.host_memory_budget=G",
                                "process.host_memory_budget=1e30", "process.host_memory_budget=8 G"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qd_config c;
        qd_config_defaults(&c);
        qd_status st = qd_config_set(&c, bad[i]);
        CHECK(st == QD_ERR_CONFIG && strstr(qd_error_message(), "process.host_memory_budget"), "%s -> status %d: %s", bad[i], st,
              qd_error_message());
        qd_error_clear();
    }
    /* a file: a string or a number; written back as bytes */
    qd_config c;
    qd_config_defaults(&c);
    qd_status st = qd_config_load_text(&c, "{\"process\": {\"host_memory_budget\": \"3M\"}}", "t.json");
    CHECK(st == QD_OK && c.host_memory_budget == 3 << 20, "file value: %s", qd_error_message());
    char *js = qd_config_to_json(&c);
    CHECK(js && strstr(js, "\"host_memory_budget\":\t3145728"), "resolved JSON lacks the byte count: %s", js ? js : "(null)");
    free(js);
    qd_error_clear();
    int is_auto = 0;
    int64_t machine = 0;
    qd_config_defaults(&c);
    int64_t b = qd_host_memory_budget(&c, &is_auto, &machine);
    CHECK(is_auto && machine > 0 && b == machine / 2, "auto budget %lld of %lld (auto %d)", (long long)b, (long long)machine, is_auto);
}

static void test_spill(void) {
    char dir[] = "/tmp/qd_test_memory.XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return; }
    qd_backend_options o = {.threads = 2, .deterministic = 1, .host_memory_budget = 1 << 20, .spill_dir = dir};
    qd_backend *b = NULL;
    qd_status st = qd_backend_create("cpu", &o, &b);
    CHECK(st == QD_OK, "create: %s", qd_error_message());
    if (st != QD_OK) return;
    const qd_backend_ops *ops = b->ops;
    int dev = 0;
    /* within the budget: memory */
    float *small = ops->alloc_cache(b, 512 << 10, &dev);
    qd_cache_stats cs;
    qd_backend_cache_stats(b, &cs);
    CHECK(small && cs.spill_files == 0 && cs.mem_peak == 512 << 10, "small cache: %p, %d files, %lld in memory", (void *)small,
          cs.spill_files, (long long)cs.mem_peak);
    /* over it: a spill file with no name in the directory */
    const int64_t n = (int64_t)16 << 20; /* 64 MiB of floats */
    float *big = ops->alloc_cache(b, sizeof(float) * (size_t)n, &dev);
    qd_backend_cache_stats(b, &cs);
    CHECK(big && cs.spill_files == 1 && cs.spill_peak >= (int64_t)sizeof(float) * n, "big cache: %p, %d files, %lld spilled (%s)",
          (void *)big, cs.spill_files, (long long)cs.spill_peak, qd_error_message());
    CHECK(dir_entries(dir) == 0, "the spill file has a name in %s (%d entries)", dir, dir_entries(dir));
    float *src = malloc(sizeof(float) * (size_t)n), *back = malloc(sizeof(float) * (size_t)n);
    float *mem = ops->alloc(b, sizeof(float) * (size_t)n);
    if (big && src && back && mem) {
        for (int64_t i = 0; i < n; i++) src[i] = (float)(i % 1000003) * 0.25f - 7.0f;
        for (int64_t i = 0; i < n; i += 1024) back[i] = 1.0f; /* touch: resident before the measurement */
        int64_t r0 = rss_bytes();
        CHECK(ops->upload(b, big, src, sizeof(float) * (size_t)n) == QD_OK, "upload");
        int64_t r1 = rss_bytes();
        /* 64 MiB went into the file; at most a few copy chunks may still be mapped in */
        CHECK(r1 - r0 < (16 << 20), "upload into the spilled cache left %lld bytes resident", (long long)(r1 - r0));
        CHECK(ops->download(b, back, big, sizeof(float) * (size_t)n) == QD_OK, "download");
        CHECK(memcmp(src, back, sizeof(float) * (size_t)n) == 0, "spilled cache does not round-trip");
        CHECK(rss_bytes() - r1 < (16 << 20), "download left %lld bytes resident", (long long)(rss_bytes() - r1));
        /* the batch gather reads the same samples from the spilled and an in-memory copy */
        memcpy(mem, src, sizeof(float) * (size_t)n);
        const int B = 32;
        const int64_t sn = 4096; /* sample numel: 4096 samples of 16 KiB */
        int32_t *idx = ops->alloc(b, sizeof(int32_t) * B), *it = ops->alloc(b, sizeof(int32_t));
        float *o1 = ops->alloc(b, sizeof(float) * B * (size_t)sn);
        qd_rng_key key = {1, 2, 3, 4};
        *it = 5;
        CHECK(ops->draw_batch(b, key, it, (int32_t)(n / sn), B, idx) == QD_OK, "draw");
        CHECK(ops->gather_mix(b, big, mem, idx, B, sn, key, 0.5f, it, o1) == QD_OK, "gather spilled");
        float *o3 = ops->alloc(b, sizeof(float) * B * (size_t)sn);
        CHECK(ops->gather_mix(b, mem, mem, idx, B, sn, key, 0.5f, it, o3) == QD_OK, "gather in memory");
        CHECK(memcmp(o1, o3, sizeof(float) * B * (size_t)sn) == 0, "the gather from a spilled cache differs");
        ops->free(b, idx); ops->free(b, it); ops->free(b, o1); ops->free(b, o3);
    }
    free(src); free(back);
    ops->free(b, mem);
    ops->free_cache(b, big);
    ops->free_cache(b, small);
    qd_backend_destroy(b);
    CHECK(dir_entries(dir) == 0, "files left in %s", dir);

    /* no spill directory: an over-budget cache is an out-of-memory error, not a crash */
    qd_backend_options o2 = {.threads = 1, .host_memory_budget = 4096};
    CHECK(qd_backend_create("cpu", &o2, &b) == QD_OK, "create 2");
    void *p = b->ops->alloc_cache(b, 1 << 20, &dev);
    CHECK(!p && strstr(qd_error_message(), "host_memory_budget"), "no spill dir: %p %s", p, qd_error_message());
    qd_error_clear();
    qd_backend_destroy(b);
    /* a spill directory that does not exist: an I/O error naming it */
    char gone[300];
    snprintf(gone, sizeof gone, "%s/missing", dir);
    qd_backend_options o3 = {.threads = 1, .host_memory_budget = 4096, .spill_dir = gone};
    CHECK(qd_backend_create("cpu", &o3, &b) == QD_OK, "create 3");
    p = b->ops->alloc_cache(b, 1 << 20, &dev);
    CHECK(!p && strstr(qd_error_message(), gone), "missing spill dir: %p %s", p, qd_error_message());
    qd_error_clear();
    qd_backend_destroy(b);
    rmdir(dir);
}

static void test_plan_check(void) {
    qd_unit_spec units[2];
    memset(units, 0, sizeof units);
    snprintf(units[0].name, sizeof units[0].name, "block 0");
    snprintf(units[1].name, sizeof units[1].name, "block 1");
    int64_t caches[2] = {(int64_t)300 << 20, (int64_t)900 << 20};
    qd_mem_plan_in in;
    memset(&in, 0, sizeof in);
    in.units = units;
    in.nunits = 2;
    in.ncal = 1024;
    in.reconstruct = 1;
    qd_mem_plan p;
    memset(&p, 0, sizeof p);
    p.unit_cache = caches;
    p.budget = (int64_t)100 << 20;
    p.window = (int64_t)16 << 20;
    p.cache_budget = p.budget - p.window;
    p.spill_peak = caches[1] - p.cache_budget;
    p.spill_unit = 1;
    p.window_unit = 0;
    snprintf(p.spill_dir, sizeof p.spill_dir, "/out");
    p.disk_free = (int64_t)10 << 30;
    p.file_limit = -1;
    p.cache_max = (int64_t)400 << 20;
    p.cache_max_unit = 1;
    CHECK(qd_mem_plan_check(&p, &in) == QD_OK, "a plan that fits was refused: %s", qd_error_message());
    qd_error_clear();
    p.file_limit = (int64_t)1 << 20; /* ulimit -f: one spill file cannot hold the cache */
    qd_status st0 = qd_mem_plan_check(&p, &in);
    CHECK(st0 == QD_ERR_DEVICE_OOM && strstr(qd_error_message(), "unit 1 (block 1): a 419430400-byte cache") &&
              strstr(qd_error_message(), "1048576"), "file size limit: %d %s", st0, qd_error_message());
    p.file_limit = -1;
    qd_error_clear();
    p.disk_free = (int64_t)500 << 20; /* less than the 816 MiB to spill */
    qd_status st = qd_mem_plan_check(&p, &in);
    CHECK(st == QD_ERR_DEVICE_OOM && qd_status_exit_code(st) == 75, "small disk: status %d", st);
    CHECK(strstr(qd_error_message(), "unit 1 (block 1)") && strstr(qd_error_message(), "943718400 bytes") &&
              strstr(qd_error_message(), "104857600") && strstr(qd_error_message(), "/out"),
          "small disk message: %s", qd_error_message());
    qd_error_clear();
    p.disk_free = (int64_t)10 << 30;
    p.budget = (int64_t)8 << 20; /* below the 16 MiB window */
    st = qd_mem_plan_check(&p, &in);
    CHECK(st == QD_ERR_DEVICE_OOM && strstr(qd_error_message(), "unit 0 (block 0)") && strstr(qd_error_message(), "16777216") &&
              strstr(qd_error_message(), "8388608"),
          "budget below the window: %d %s", st, qd_error_message());
    qd_error_clear();
    in.cuda = 1; /* CUDA caches never spill: no refusal from the host plan */
    CHECK(qd_mem_plan_check(&p, &in) == QD_OK, "cuda plan refused");
}

int main(void) {
    test_config();
    test_spill();
    test_plan_check();
    return qd_test_summary("test_memory");
}
