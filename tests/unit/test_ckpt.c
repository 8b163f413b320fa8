/* tests/unit/test_ckpt.c: the checkpoint reader treats checkpoint.bin as untrusted input.
 * A real checkpoint written by qd_ckpt_save round-trips; crafted ones (valid checksum, hostile
 * fields: counts of 2^31, 2^40 or -1, NaN scales, truncated or over-long bodies, odd lengths,
 * non-regular files) are refused with QD_ERR_DATA naming the field, and the graph is left
 * untouched. Offsets below follow the layout in src/recon/ckpt.c. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "ckpt_test_graph.h"
#include "qdrop/fsutil.h"
#include "recon/ckpt.h"

#define CFG_HASH 0x1111222233334444ULL
#define MODEL_HASH 0x5555666677778888ULL
/* body offsets: magic 8, config hash 8, model hash 8, then int64 units_done, int64 nwq, ... */
#define OFF_UNITS_DONE 24
#define OFF_NWQ 32
#define OFF_WQ0_CHANNELS 40
#define OFF_WQ0_NUMEL 48
#define OFF_WQ0_RECONSTRUCTED 56
#define OFF_WQ0_SCALE 64

static char g_dir[256];

static void fill(qd_graph *g) {
    for (int k = 0; k < g->nwq; k++) {
        qd_weight_quant *q = &g->wq[k];
        for (int c = 0; c < q->channels; c++) { q->scale[c] = 0.25f * (float)(c + 1 + k); q->zero_point[c] = (float)(c + 3); }
        for (int i = 0; i < q->channels * q->per_channel; i++) q->qweight[i] = 0.125f * (float)(i - 2) + (float)k;
        q->reconstructed = k == 0;
    }
    for (int a = 0; a < g->nact; a++) { g->act[a].scale = 0.5f + (float)a; g->act[a].zero_point = (float)a; g->act[a].initialized = 1; }
}

/* Two finished units with 3 curve points each. */
static void make_reports(qd_unit_report *r) {
    memset(r, 0, 2 * sizeof *r);
    for (int i = 0; i < 2; i++) {
        snprintf(r[i].name, sizeof r[i].name, "block %d", i);
        r[i].iters_planned = 100; r[i].iters_run = 100; r[i].nlayers = 1; r[i].nact = 1;
        r[i].loss_start = 1.0 + i; r[i].loss_end = 0.5;
        r[i].ncurve = 3;
        r[i].curve = calloc(3, sizeof(double));
        r[i].curve_iter = calloc(3, sizeof(int));
        for (int c = 0; c < 3; c++) { r[i].curve[c] = 1.0 / (c + 1); r[i].curve_iter[c] = 50 * c; }
    }
}

static void free_reports(qd_unit_report *r, int n) {
    for (int i = 0; i < n; i++) { free(r[i].curve); free(r[i].curve_iter); r[i].curve = NULL; r[i].curve_iter = NULL; }
}

static void write_bytes(const char *path, const unsigned char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n) { perror(path); exit(1); }
    fclose(f);
}

/* Re-seal a modified body with a valid checksum (what an attacker would do). */
static void reseal(unsigned char *b, size_t n) {
    uint64_t h = qd_fnv1a64(b, n - 8, 0);
    memcpy(b + n - 8, &h, 8);
}

static void put_i64(unsigned char *b, size_t off, int64_t v) { memcpy(b + off, &v, 8); }

/* Parse the (resealed) bytes into a fresh graph: expect status st and a message containing needle;
 * on failure the graph must still hold zeros (nothing applied before validation). */
static void expect_parse(const unsigned char *bytes, size_t n, qd_status st, const char *needle, const char *what) {
    qd_graph *g = ckpt_test_graph();
    qd_unit_report reps[3];
    memset(reps, 0, sizeof reps);
    int done = -7, nreps = -7;
    /* an unaligned copy: reads must not assume 8-byte alignment (UBSan checks this) */
    unsigned char *buf = malloc(n + 1);
    memcpy(buf + 1, bytes, n);
    qd_error_clear();
    qd_status got = qd_ckpt_parse(buf + 1, n, "ck.bin", g, CFG_HASH, MODEL_HASH, &done, reps, 2, &nreps);
    const char *m = qd_error_message();
    CHECK(got == st && (!needle || strstr(m, needle)), "%s: got %d '%s', want %d with '%s'", what, got, m, st, needle ? needle : "");
    if (got != QD_OK) {
        CHECK(nreps == 0 && done == 0, "%s: counts reset on failure (%d, %d)", what, nreps, done);
        CHECK(g->wq[0].scale[0] == 0.0f && g->act[1].scale == 0.0f && g->wq[1].reconstructed == 0,
              "%s: graph untouched by a refused checkpoint", what);
        if (st != QD_ERR_CONFIG) CHECK(strncmp(m, "ck.bin: ", 8) == 0, "%s: message names the file: %s", what, m);
    }
    free_reports(reps, nreps > 0 ? nreps : 0);
    free(buf);
    qd_graph_free(g);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/qd_test_ckpt_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoint.bin", g_dir);

    /* 1. a real checkpoint round-trips */
    qd_graph *g = ckpt_test_graph();
    fill(g);
    qd_unit_report reps[2];
    make_reports(reps);
    CHECK(qd_ckpt_save(path, g, CFG_HASH, MODEL_HASH, 2, reps, 2) == QD_OK, "save: %s", qd_error_message());
    free_reports(reps, 2);
    qd_graph *h = ckpt_test_graph();
    qd_unit_report back[3];
    memset(back, 0, sizeof back);
    int done = 0, nreps = 0;
    CHECK(qd_ckpt_load(path, h, CFG_HASH, MODEL_HASH, &done, back, 2, &nreps) == QD_OK, "load: %s", qd_error_message());
    CHECK(done == 2 && nreps == 2, "units_done %d nreps %d", done, nreps);
    int same = 1;
    for (int k = 0; k < 2; k++) {
        const qd_weight_quant *a = &g->wq[k], *b = &h->wq[k];
        same &= memcmp(a->scale, b->scale, sizeof(float) * (size_t)a->channels) == 0;
        same &= memcmp(a->zero_point, b->zero_point, sizeof(float) * (size_t)a->channels) == 0;
        same &= memcmp(a->qweight, b->qweight, sizeof(float) * (size_t)(a->channels * a->per_channel)) == 0;
        same &= a->reconstructed == b->reconstructed;
        same &= g->act[k].scale == h->act[k].scale && g->act[k].initialized == h->act[k].initialized;
    }
    CHECK(same, "quantizer state restored bit for bit");
    CHECK(strcmp(back[1].name, "block 1") == 0 && back[1].ncurve == 3 && back[1].curve_iter[2] == 100 && back[0].curve[1] == 0.5,
          "unit reports restored");
    free_reports(back, nreps);
    qd_graph_free(h);
    qd_graph_free(g);

    void *data = NULL;
    size_t n = 0;
    CHECK(qd_read_file(path, &data, &n) == QD_OK, "read back");
    const unsigned char *orig = data;
    unsigned char *b = malloc(n + 64);

    /* 2. hostile fields behind a valid checksum */
    struct { size_t off; int64_t v; const char *needle; } fields[] = {
        {OFF_UNITS_DONE, (int64_t)1 << 31, "units_done = 2147483648 is out of range (expected 0..2"},
        {OFF_UNITS_DONE, -1, "units_done = -1 is out of range"},
        {OFF_UNITS_DONE, (int64_t)1 << 40, "units_done"},
        {OFF_UNITS_DONE, 1, "unit_reports = 2 does not match units_done = 1"},
        {OFF_NWQ, (int64_t)1 << 32, "weight_quantizers = 4294967296"},
        {OFF_NWQ, -2, "weight_quantizers = -2"},
        {OFF_WQ0_CHANNELS, (int64_t)1 << 31, "channels = 2147483648"},
        {OFF_WQ0_NUMEL, INT64_MAX, "weight_numel"},
        {OFF_WQ0_RECONSTRUCTED, 2, "reconstructed = 2"},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        memcpy(b, orig, n);
        put_i64(b, fields[i].off, fields[i].v);
        reseal(b, n);
        expect_parse(b, n, QD_ERR_DATA, fields[i].needle, fields[i].needle);
    }
    /* non-finite or negative scales, absurd zero points */
    float bad[3] = {NAN, -1.0f, INFINITY};
    for (int i = 0; i < 3; i++) {
        memcpy(b, orig, n);
        memcpy(b + OFF_WQ0_SCALE + 4, &bad[i], 4);
        reseal(b, n);
        expect_parse(b, n, QD_ERR_DATA, "field scale of quantizer 0 holds", "bad scale");
    }
    memcpy(b, orig, n);
    float zp = 1e9f;
    memcpy(b + OFF_WQ0_SCALE + 2 * 4, &zp, 4); /* zero_point[0] of quantizer 0 */
    reseal(b, n);
    expect_parse(b, n, QD_ERR_DATA, "zero_point of quantizer 0", "huge zero point");
    /* the report block: ncurve of the last report (8 bytes before its 3 curve points) */
    size_t off_ncurve = n - 8 - 3 * 16 - 8;
    int64_t nc_vals[3] = {(int64_t)1 << 31, -1, 4};
    for (int i = 0; i < 3; i++) {
        memcpy(b, orig, n);
        put_i64(b, off_ncurve, nc_vals[i]);
        reseal(b, n);
        expect_parse(b, n, QD_ERR_DATA, "ncurve", "ncurve");
    }
    /* a curve iteration index past INT_MAX */
    memcpy(b, orig, n);
    put_i64(b, n - 8 - 8, (int64_t)1 << 33);
    reseal(b, n);
    expect_parse(b, n, QD_ERR_DATA, "curve_iter = 8589934592", "curve_iter");
    /* truncated body (resealed), odd length, trailing bytes */
    for (size_t cut = 1; cut < 200; cut += 37) {
        memcpy(b, orig, n - 8 - cut);
        size_t m = n - cut;
        reseal(b, m);
        expect_parse(b, m, QD_ERR_DATA, "checkpoint", "truncated body");
    }
    memcpy(b, orig, n - 8);
    memcpy(b + n - 8, "\x01\x02\x03", 3); /* 3 extra bytes: odd length */
    reseal(b, n + 3);
    expect_parse(b, n + 3, QD_ERR_DATA, "3 unexpected bytes after its last field", "trailing bytes");
    /* accidents: flipped bit (no reseal), tiny and empty files, another magic */
    memcpy(b, orig, n);
    b[100] ^= 4;
    expect_parse(b, n, QD_ERR_DATA, "not a qdrop-gpu checkpoint or corrupted", "flipped bit");
    for (size_t m = 0; m < 40; m += 7) expect_parse(orig, m, QD_ERR_DATA, "not a qdrop-gpu checkpoint", "short file");
    /* hashes: another config (78) or another model (65) */
    memcpy(b, orig, n);
    b[8] ^= 1;
    reseal(b, n);
    expect_parse(b, n, QD_ERR_CONFIG, "different config", "config hash");
    memcpy(b, orig, n);
    b[16] ^= 1;
    reseal(b, n);
    expect_parse(b, n, QD_ERR_DATA, "different model file", "model hash");
    /* more reports than this run has units */
    {
        qd_graph *g2 = ckpt_test_graph();
        qd_unit_report r3[3];
        memset(r3, 0, sizeof r3);
        int d2, n2;
        qd_error_clear();
        CHECK(qd_ckpt_parse(orig, n, "ck.bin", g2, CFG_HASH, MODEL_HASH, &d2, r3, 1, &n2) == QD_ERR_DATA &&
                  strstr(qd_error_message(), "units_done = 2 is out of range (expected 0..1"),
              "fewer units in this run: %s", qd_error_message());
        qd_graph_free(g2);
    }

    /* the same through the file: what --resume reads */
    {
        memcpy(b, orig, n);
        put_i64(b, OFF_UNITS_DONE, (int64_t)1 << 31);
        reseal(b, n);
        char crafted[512];
        snprintf(crafted, sizeof crafted, "%s/crafted.bin", g_dir);
        write_bytes(crafted, b, n);
        qd_graph *g2 = ckpt_test_graph();
        qd_unit_report r3[3];
        memset(r3, 0, sizeof r3);
        int d2, n2;
        qd_error_clear();
        qd_status st = qd_ckpt_load(crafted, g2, CFG_HASH, MODEL_HASH, &d2, r3, 2, &n2);
        CHECK(st == QD_ERR_DATA && strstr(qd_error_message(), "crafted.bin: checkpoint field units_done = 2147483648"),
              "crafted file: %s", qd_error_message());
        qd_graph_free(g2);
        unlink(crafted);
    }

    /* 3. the file itself: a directory, a character device, a FIFO are refused before reading */
    qd_graph *g3 = ckpt_test_graph();
    qd_unit_report r4[3];
    memset(r4, 0, sizeof r4);
    const char *nonreg[] = {g_dir, "/dev/zero"};
    const char *kind[] = {"is a directory", "is a character device"};
    for (int i = 0; i < 2; i++) {
        qd_error_clear();
        qd_status st = qd_ckpt_load(nonreg[i], g3, CFG_HASH, MODEL_HASH, &done, r4, 2, &nreps);
        CHECK(st == QD_ERR_NOINPUT && strstr(qd_error_message(), kind[i]), "%s: %d %s", nonreg[i], st, qd_error_message());
    }
    char fifo[512];
    snprintf(fifo, sizeof fifo, "%s/fifo.bin", g_dir);
    if (mkfifo(fifo, 0600) == 0) {
        qd_error_clear();
        qd_status st = qd_ckpt_load(fifo, g3, CFG_HASH, MODEL_HASH, &done, r4, 2, &nreps); /* must not block */
        CHECK(st == QD_ERR_NOINPUT && strstr(qd_error_message(), "FIFO"), "fifo: %s", qd_error_message());
        unlink(fifo);
    }
    qd_graph_free(g3);

    /* the shared reader's size limit is checked from the size, before reading */
    {
        char big[512];
        snprintf(big, sizeof big, "%s/big.bin", g_dir);
        unsigned char zeros[100] = {0};
        write_bytes(big, zeros, sizeof zeros);
        void *d2 = NULL;
        size_t n2 = 0;
        qd_error_clear();
        qd_status st = qd_read_input(big, "test file", 50, &d2, &n2);
        CHECK(st == QD_ERR_DATA && d2 == NULL && strstr(qd_error_message(), "big.bin: 100 bytes, more than the 50-byte limit for a test file"),
              "size limit: %s", qd_error_message());
        qd_error_clear();
        st = qd_read_input(big, "test file", 100, &d2, &n2);
        CHECK(st == QD_OK && n2 == 100 && ((char *)d2)[100] == 0, "exactly at the limit: %s", qd_error_message());
        free(d2);
        unlink(big);
    }

    free(b);
    free(data);
    unlink(path);
    rmdir(g_dir);
    return qd_test_summary("test_ckpt");
}
