/* src/config/config.c: JSON -> qd_config, strict schema, --set overrides, resolved config.
 *
 * One table (SCHEMA below) drives everything: parsing a file, typing a --set value, listing the
 * expected keys of a section when a key is unknown, and writing the resolved JSON in a stable
 * order. Key names follow the reference QDrop YAML (docs/algorithm.md §10.2); docs/config.md documents
 * each one. Defaults live only in qd_config_defaults().
 *
 * Paths: a relative path inside a config file is resolved against the directory of that file
 * (so a config can sit next to its data); a path given with --set/--out is relative to the
 * current directory. qd_config_finalize makes every path absolute and lexically normalised so
 * resolved_config.json can be re-used from anywhere.
 */
#include "qdrop/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qdrop/fsutil.h"
#include "qdrop/utf8.h"

/* ------------------------------------------------------------------------------------------ */
/* schema                                                                                      */

typedef enum {
    K_INT,    /* int, integral number in [lo, hi] */
    K_I64,    /* int64_t */
    K_U64,    /* uint64_t (JSON numbers are doubles: at most 2^53 - 1) */
    K_BOOL,   /* int 0/1 */
    K_FALSE,  /* boolean that only accepts false (unimplemented feature switch) */
    K_FLOAT,  /* float in [lo, hi] (or (lo, hi] with lo_open) */
    K_ENUM,   /* int enum, index into choices */
    K_STR,    /* char[size], optionally restricted to choices */
    K_PATH,   /* char[size], resolved relative to the config file */
    K_FLOAT3, /* float[3], each in [lo, hi] / (lo, hi] */
    K_RANGE2, /* two floats (b_range: start, end), each in (lo, hi] */
    K_BYTES   /* int64_t byte count: an integer, or a string "8G" / "512M" / "1.5GiB" / "auto" (= 0) */
} key_type;

typedef struct key_def {
    const char *path;
    key_type type;
    size_t off;              /* offset in qd_config */
    size_t off2;             /* K_RANGE2: offset of the second float */
    size_t size;             /* K_STR / K_PATH buffer size */
    double lo, hi;
    int lo_open;
    const char *const *choices; /* NULL-terminated */
    const char *hint;        /* appended to a range error */
} key_def;

static const char *const MODE_NAMES[] = {"qdrop", "nodrop", "case1", "case2", "case3", "adaround", "brecq", "nearest", NULL};
static const char *const PRE_NAMES[] = {"cifar", "imagenet", "none", NULL};
static const char *const DEV_NAMES[] = {"auto", "cpu", "cuda", NULL};
static const char *const MODEL_TYPES[] = {"onnx", "bert", NULL};
static const char *const TASKS[] = {"classification", "stsb", "sst2", NULL};
static const char *const RANGE_SEARCH_NAMES[] = {"fast", "exact", NULL};

#define OFF(m) offsetof(qd_config, m)
#define SZ(m) sizeof(((qd_config *)0)->m)
#define BIG 1e15
/* 2^53 - 1: the largest integer a JSON number (a double) holds exactly. */
#define MAX_EXACT 9007199254740991.0

static const key_def SCHEMA[] = {
    {"model.path", K_PATH, OFF(model_path), 0, SZ(model_path), 0, 0, 0, NULL, NULL},
    {"model.type", K_STR, OFF(model_type), 0, SZ(model_type), 0, 0, 0, MODEL_TYPES, NULL},

    {"data.calib_path", K_PATH, OFF(calib_path), 0, SZ(calib_path), 0, 0, 0, NULL, NULL},
    {"data.val_path", K_PATH, OFF(val_path), 0, SZ(val_path), 0, 0, 0, NULL, NULL},
    {"data.val_labels_path", K_PATH, OFF(val_labels_path), 0, SZ(val_labels_path), 0, 0, 0, NULL, NULL},
    {"data.preprocess", K_ENUM, OFF(preprocess), 0, 0, 0, 0, 0, PRE_NAMES, NULL},
    {"data.mean", K_FLOAT3, OFF(mean), 0, 0, -BIG, BIG, 0, NULL, NULL},
    {"data.std", K_FLOAT3, OFF(std), 0, 0, 0, BIG, 1, NULL, NULL},
    {"data.input_size", K_INT, OFF(input_size), 0, 0, 1, 4096, 0, NULL, NULL},
    {"data.resize_size", K_INT, OFF(resize_size), 0, 0, 1, 8192, 0, NULL, NULL},
    {"data.skip_corrupt", K_BOOL, OFF(skip_corrupt), 0, 0, 0, 0, 0, NULL, NULL},
    {"data.task", K_STR, OFF(task), 0, SZ(task), 0, 0, 0, TASKS, NULL},
    {"data.max_seq_len", K_INT, OFF(max_seq_len), 0, 0, 1, 512, 0, NULL, "BERT position embeddings end at 512"},

    {"quant.w_qconfig.bit", K_INT, OFF(w_qconfig.bit), 0, 0, 2, 8, 0, NULL, NULL},
    {"quant.w_qconfig.symmetric", K_FALSE, OFF(w_qconfig.symmetric), 0, 0, 0, 0, 0, NULL, NULL},
    {"quant.w_qconfig.ch_axis", K_INT, OFF(w_qconfig.ch_axis), 0, 0, 0, 0, 0, NULL,
     "weights are quantized per output channel (0), the only granularity implemented"},
    {"quant.a_qconfig.bit", K_INT, OFF(a_qconfig.bit), 0, 0, 2, 8, 0, NULL, NULL},
    {"quant.a_qconfig.symmetric", K_FALSE, OFF(a_qconfig.symmetric), 0, 0, 0, 0, 0, NULL, NULL},
    {"quant.a_qconfig.ch_axis", K_INT, OFF(a_qconfig.ch_axis), 0, 0, -1, -1, 0, NULL,
     "activations are quantized per tensor (-1), the only granularity implemented"},
    {"quant.calibrate", K_INT, OFF(calibrate), 0, 0, 1, 1000000, 0, NULL, NULL},
    {"quant.act_calib_samples", K_INT, OFF(act_calib_samples), 0, 0, 0, 1000000, 0, NULL, "0 = min(256, quant.calibrate)"},
    {"quant.first_last_8bit", K_BOOL, OFF(first_last_8bit), 0, 0, 0, 0, 0, NULL, NULL},
    {"quant.brecq_setting", K_BOOL, OFF(brecq_setting), 0, 0, 0, 0, 0, NULL, NULL},
    {"quant.range_search", K_ENUM, OFF(range_search), 0, 0, 0, 0, 0, RANGE_SEARCH_NAMES, NULL},
    {"quant.mode", K_ENUM, OFF(mode), 0, 0, 0, 0, 0, MODE_NAMES, NULL},
    {"quant.recon.iters", K_INT, OFF(recon.iters), 0, 0, 1, 100000000, 0, NULL, NULL},
    {"quant.recon.batch_size", K_INT, OFF(recon.batch_size), 0, 0, 1, 65536, 0, NULL, NULL},
    {"quant.recon.scale_lr", K_FLOAT, OFF(recon.scale_lr), 0, 0, 0, 1, 0, NULL, NULL},
    {"quant.recon.warm_up", K_FLOAT, OFF(recon.warm_up), 0, 0, 0, 1, 0, NULL, NULL},
    {"quant.recon.weight", K_FLOAT, OFF(recon.weight), 0, 0, 0, 1000, 0, NULL, NULL},
    {"quant.recon.b_range", K_RANGE2, OFF(recon.b_start), OFF(recon.b_end), 0, 0, 1000, 1, NULL, NULL},
    {"quant.recon.drop_prob", K_FLOAT, OFF(recon.drop_prob), 0, 0, 0, 1, 0, NULL,
     "it is the probability of KEEPING quantization, docs/algorithm.md §7"},
    {"quant.recon.keep_gpu", K_BOOL, OFF(recon.keep_gpu), 0, 0, 0, 0, 0, NULL, NULL},
    {"quant.recon.lsq_grad_scale", K_BOOL, OFF(recon.lsq_grad_scale), 0, 0, 0, 0, 0, NULL, NULL},
    {"quant.recon.early_stop", K_BOOL, OFF(recon.early_stop), 0, 0, 0, 0, 0, NULL, NULL},
    {"quant.recon.early_stop_window", K_INT, OFF(recon.early_stop_window), 0, 0, 1, 100000000, 0, NULL, NULL},
    {"quant.recon.early_stop_min_delta", K_FLOAT, OFF(recon.early_stop_min_delta), 0, 0, 0, 1, 0, NULL, NULL},
    {"quant.recon.log_every", K_INT, OFF(recon.log_every), 0, 0, 1, 100000000, 0, NULL, NULL},
    {"quant.recon.nan_retries", K_INT, OFF(recon.nan_retries), 0, 0, 0, 10, 0, NULL, NULL},
    {"quant.brecq.act_iters", K_INT, OFF(brecq.act_iters), 0, 0, 1, 100000000, 0, NULL, NULL},
    {"quant.brecq.act_lr", K_FLOAT, OFF(brecq.act_lr), 0, 0, 0, 1, 0, NULL, NULL},

    {"process.seed", K_U64, OFF(seed), 0, 0, 0, MAX_EXACT, 0, NULL, NULL},
    {"process.threads", K_INT, OFF(threads), 0, 0, 0, 1024, 0, NULL, "0 = all cores"},
    {"process.host_memory_budget", K_BYTES, OFF(host_memory_budget), 0, 0, 0, MAX_EXACT, 0, NULL,
     "host memory for the unit caches; 0 or \"auto\" = half the machine's memory, docs/memory.md"},

    {"device.type", K_ENUM, OFF(device), 0, 0, 0, 0, 0, DEV_NAMES, NULL},
    {"device.deterministic", K_BOOL, OFF(deterministic), 0, 0, 0, 0, 0, NULL, NULL},
    {"device.tf32", K_BOOL, OFF(tf32), 0, 0, 0, 0, 0, NULL, NULL},
    {"device.memory_budget_mb", K_I64, OFF(device_memory_budget_mb), 0, 0, 0, 1e9, 0, NULL, "0 = what the device has"},

    {"eval.enabled", K_BOOL, OFF(eval_enabled), 0, 0, 0, 0, 0, NULL, NULL},
    {"eval.batch_size", K_INT, OFF(eval_batch_size), 0, 0, 1, 65536, 0, NULL, NULL},
    {"eval.max_images", K_INT, OFF(eval_max_images), 0, 0, 0, INT_MAX, 0, NULL, "0 = all"},
    {"eval.fp32", K_BOOL, OFF(eval_fp32), 0, 0, 0, 0, 0, NULL, NULL},

    {"output.dir", K_PATH, OFF(out_dir), 0, SZ(out_dir), 0, 0, 0, NULL, NULL},
    {"output.export_onnx", K_BOOL, OFF(export_onnx), 0, 0, 0, 0, 0, NULL, NULL},
    {"output.onnx_opset", K_INT, OFF(onnx_opset), 0, 0, 13, 21, 0, NULL, NULL},
    {"output.int4_weights", K_BOOL, OFF(int4_weights), 0, 0, 0, 0, 0, NULL, NULL},
    {"output.plots", K_BOOL, OFF(plots), 0, 0, 0, 0, 0, NULL, NULL},
    {"output.logits", K_BOOL, OFF(logits), 0, 0, 0, 0, 0, NULL, NULL},
};
#define NKEYS ((int)(sizeof SCHEMA / sizeof SCHEMA[0]))

/* ------------------------------------------------------------------------------------------ */
/* defaults                                                                                    */

static void set_str(char *dst, size_t cap, const char *src) {
    /* zero the whole buffer so a struct's bytes depend only on its values (tests memcmp them) */
    memset(dst, 0, cap);
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
}

void qd_config_defaults(qd_config *c) {
    memset(c, 0, sizeof *c);
    set_str(c->model_type, sizeof c->model_type, "onnx");
    c->preprocess = QD_PRE_CIFAR;
    /* ImageNet statistics: the reference CIFAR and ImageNet pipelines both normalise with them */
    c->mean[0] = 0.485f; c->mean[1] = 0.456f; c->mean[2] = 0.406f;
    c->std[0] = 0.229f; c->std[1] = 0.224f; c->std[2] = 0.225f;
    c->input_size = 224;   /* §10.2 data.input_size */
    c->resize_size = 256;  /* §10.2 data.test_resize */
    c->skip_corrupt = 0;
    set_str(c->task, sizeof c->task, "classification");
    c->max_seq_len = 128;

    c->w_qconfig.bit = 4; c->w_qconfig.symmetric = 0; c->w_qconfig.ch_axis = 0;   /* §10.2 */
    c->a_qconfig.bit = 4; c->a_qconfig.symmetric = 0; c->a_qconfig.ch_axis = -1;
    c->calibrate = 1024;          /* §10.2 quant.calibrate */
    c->act_calib_samples = 0;     /* §6.2: 256, or all of a smaller calibration set (finalize) */
    c->first_last_8bit = 1;       /* §1.5 */
    c->brecq_setting = 0;         /* §8.7 */
    c->mode = QD_MODE_QDROP;

    c->recon.iters = 20000;       /* §10.2 quant.recon */
    c->recon.batch_size = 32;
    c->recon.scale_lr = 4e-5f;
    c->recon.warm_up = 0.2f;
    c->recon.weight = 0.01f;
    c->recon.b_start = 20.0f;
    c->recon.b_end = 2.0f;
    c->recon.drop_prob = 0.5f;    /* keep probability, §7 */
    c->recon.keep_gpu = 1;
    c->recon.lsq_grad_scale = 1;
    c->recon.early_stop = 0;
    c->recon.early_stop_window = 500;
    c->recon.early_stop_min_delta = 1e-3f;
    c->recon.log_every = 500;     /* the reference logs every 500 iterations */
    c->recon.nan_retries = 0;
    c->brecq.act_iters = 5000;    /* §6.3 / §9 BRECQ activation stage: 5k iterations, */
    c->brecq.act_lr = 4e-4f;      /* Adam lr 4e-4 with cosine to 0 */

    c->seed = 1005;               /* §10.2 process.seed */
    c->threads = 0;
    c->host_memory_budget = 0;    /* auto: half the physical (or cgroup) memory, docs/memory.md */
    c->device = QD_DEVICE_AUTO;
    c->deterministic = 1;
    c->tf32 = 0;
    c->device_memory_budget_mb = 0;

    c->eval_enabled = 1;
    c->eval_batch_size = 250;
    c->eval_max_images = 0;
    c->eval_fp32 = 1;

    c->export_onnx = 1;
    c->onnx_opset = 13;
    c->int4_weights = 0;
    c->plots = 1;
}

const char *qd_mode_name(qd_mode m) {
    if ((int)m >= 0 && (int)m < (int)(sizeof MODE_NAMES / sizeof MODE_NAMES[0]) - 1) return MODE_NAMES[m];
    return "unknown";
}

/* ------------------------------------------------------------------------------------------ */
/* helpers for messages                                                                        */

/* "got ..." part: the offending value, compact and bounded. */
static void describe(const cJSON *v, char *buf, size_t n) {
    if (!v || cJSON_IsNull(v)) { snprintf(buf, n, "null"); return; }
    if (cJSON_IsTrue(v)) { snprintf(buf, n, "true"); return; }
    if (cJSON_IsFalse(v)) { snprintf(buf, n, "false"); return; }
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!isfinite(d)) snprintf(buf, n, "a non-finite number");
        else if (d == floor(d) && fabs(d) < 1e15) snprintf(buf, n, "%.0f", d);
        else snprintf(buf, n, "%.9g", d);
        return;
    }
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        if (strlen(s) > 48) snprintf(buf, n, "the string \"%.45s...\"", s);
        else snprintf(buf, n, "the string \"%s\"", s);
        return;
    }
    if (cJSON_IsObject(v)) { snprintf(buf, n, "an object"); return; }
    char *p = cJSON_PrintUnformatted(v);
    if (!p) { snprintf(buf, n, "an array"); return; }
    if (strlen(p) > 48) snprintf(buf, n, "%.45s...", p);
    else snprintf(buf, n, "%s", p);
    free(p);
}

static void fmt_num(char *buf, size_t n, double d) {
    if (d >= BIG) snprintf(buf, n, "inf");
    else if (d <= -BIG) snprintf(buf, n, "-inf");
    else snprintf(buf, n, "%g", d);
}

/* "expected ..." part for a key. */
static void expected(const key_def *k, char *buf, size_t n) {
    char lo[32], hi[32];
    fmt_num(lo, sizeof lo, k->lo);
    fmt_num(hi, sizeof hi, k->hi);
    switch (k->type) {
    case K_INT:
    case K_I64:
    case K_U64:
        if (k->lo == k->hi) snprintf(buf, n, "expected the integer %.0f", k->lo);
        else if (k->hi == INT_MAX) snprintf(buf, n, "expected an integer >= %.0f", k->lo);
        else snprintf(buf, n, "expected an integer in %.0f..%.0f", k->lo, k->hi);
        break;
    case K_BOOL: snprintf(buf, n, "expected true or false"); break;
    case K_FALSE: snprintf(buf, n, "expected false"); break;
    case K_FLOAT: snprintf(buf, n, "expected a number in %s%s, %s]", k->lo_open ? "(" : "[", lo, hi); break;
    case K_ENUM:
    case K_STR:
        if (k->choices) {
            size_t o = (size_t)snprintf(buf, n, "expected one of");
            for (int i = 0; k->choices[i] && o < n; i++)
                o += (size_t)snprintf(buf + o, n - o, "%s \"%s\"", i ? "," : "", k->choices[i]);
        } else {
            snprintf(buf, n, "expected a string");
        }
        break;
    case K_PATH: snprintf(buf, n, "expected a path string of fewer than %zu bytes", k->size); break;
    case K_FLOAT3:
        if (k->hi >= BIG && k->lo <= -BIG) snprintf(buf, n, "expected an array of 3 numbers");
        else snprintf(buf, n, "expected an array of 3 numbers in %s%s, %s]", k->lo_open ? "(" : "[", lo, hi);
        break;
    case K_RANGE2: snprintf(buf, n, "expected an array [start, end] of 2 numbers in %s%s, %s]", k->lo_open ? "(" : "[", lo, hi); break;
    case K_BYTES:
        snprintf(buf, n, "expected a byte count: an integer in 0..%.0f or a string like \"8G\", \"512M\", \"1.5GiB\", "
                 "\"auto\"", k->hi);
        break;
    }
}

/* The --set value being applied, exactly as typed: error messages quote it rather than what
 * JSON made of it (so "0x10" is reported as 0x10, not 0). NULL while a file is parsed. */
static _Thread_local const char *g_typed;

static qd_status bad_value(const char *origin, const key_def *k, const cJSON *v) {
    char exp[256], got[128];
    expected(k, exp, sizeof exp);
    if (g_typed && !cJSON_IsString(v)) {
        if (strlen(g_typed) > 48) snprintf(got, sizeof got, "%.45s...", g_typed);
        else snprintf(got, sizeof got, "%s", g_typed);
    } else {
        describe(v, got, sizeof got);
    }
    return qd_errorf(QD_ERR_CONFIG, "%s%s%s: %s, got %s%s%s%s", origin ? origin : "", origin ? ": " : "", k->path, exp, got,
                     k->hint ? " (" : "", k->hint ? k->hint : "", k->hint ? ")" : "");
}

static int levenshtein(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na > 63 || nb > 63) return 99;
    int d[64][64];
    for (size_t i = 0; i <= na; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= nb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= na; i++)
        for (size_t j = 1; j <= nb; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            d[i][j] = best;
        }
    return d[na][nb];
}

/* Is `path` a section (an object with keys below it)? */
static int is_section(const char *path) {
    size_t n = strlen(path);
    for (int i = 0; i < NKEYS; i++)
        if (strncmp(SCHEMA[i].path, path, n) == 0 && SCHEMA[i].path[n] == '.') return 1;
    return 0;
}

static const key_def *find_key(const char *path) {
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(SCHEMA[i].path, path) == 0) return &SCHEMA[i];
    return NULL;
}

/* The direct children of section `parent` ("" = top level), comma separated, in schema order. */
static void children(const char *parent, char *buf, size_t n, const char *near_to, char *suggest, size_t ns) {
    size_t pl = strlen(parent), o = 0;
    int best = 99;
    buf[0] = 0;
    if (suggest) suggest[0] = 0;
    for (int i = 0; i < NKEYS; i++) {
        const char *p = SCHEMA[i].path;
        if (pl) {
            if (strncmp(p, parent, pl) != 0 || p[pl] != '.') continue;
            p += pl + 1;
        }
        size_t len = strcspn(p, ".");
        char name[64];
        if (len >= sizeof name) continue;
        memcpy(name, p, len);
        name[len] = 0;
        /* dedupe: already listed? */
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) {
            const char *q = SCHEMA[j].path;
            if (pl) {
                if (strncmp(q, parent, pl) != 0 || q[pl] != '.') continue;
                q += pl + 1;
            }
            if (strncmp(q, name, len) == 0 && (q[len] == '.' || q[len] == 0)) seen = 1;
        }
        if (seen) continue;
        if (o < n) o += (size_t)snprintf(buf + o, n - o, "%s%s", o ? ", " : "", name);
        if (near_to && suggest) {
            int d = levenshtein(near_to, name);
            if (d < best && d <= 2) { best = d; snprintf(suggest, ns, "%s", name); }
        }
    }
}

static qd_status unknown_key(const char *origin, const char *parent, const char *key) {
    char list[512], sug[64], full[256];
    children(parent, list, sizeof list, key, sug, sizeof sug);
    snprintf(full, sizeof full, "%s%s%s", parent, parent[0] ? "." : "", key);
    return qd_errorf(QD_ERR_CONFIG, "%s%s%s: unknown key (expected one of: %s)%s%s%s", origin ? origin : "", origin ? ": " : "",
                     full, list, sug[0] ? "; did you mean '" : "", sug, sug[0] ? "'?" : "");
}

/* ------------------------------------------------------------------------------------------ */
/* paths                                                                                       */

/* Lexical normalisation: collapse "//", "/./" and "x/.." (never above the root or a leading ".."). */
static void normalize_path(char *p, size_t cap) {
    int abs = p[0] == '/';
    char *segs[512];
    int ns = 0;
    char tmp[2 * QD_PATH_MAX];
    size_t pl = strlen(p);
    if (pl >= sizeof tmp) pl = sizeof tmp - 1;
    memcpy(tmp, p, pl);
    tmp[pl] = 0;
    char *save = NULL;
    for (char *s = strtok_r(tmp, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
        if (strcmp(s, ".") == 0) continue;
        if (strcmp(s, "..") == 0) {
            if (ns > 0 && strcmp(segs[ns - 1], "..") != 0) { ns--; continue; }
            if (abs) continue; /* "/.." is "/" */
        }
        if (ns < 512) segs[ns++] = s;
    }
    size_t o = 0;
    if (abs && o + 1 < cap) p[o++] = '/';
    for (int i = 0; i < ns; i++) {
        size_t sl = strlen(segs[i]);
        if (i && o + 1 < cap) p[o++] = '/';
        if (o + sl >= cap) sl = cap - 1 - o;
        memcpy(p + o, segs[i], sl);
        o += sl;
    }
    if (o == 0 && cap > 1) p[o++] = '.';
    p[o] = 0;
}

/* base + "/" + rel when rel is relative; result normalised. Fails when too long. */
static int resolve_path(char *dst, size_t cap, const char *base, const char *rel) {
    char buf[2 * QD_PATH_MAX];
    if (rel[0] == 0) { dst[0] = 0; return 0; }
    if (rel[0] == '/' || !base || !base[0]) snprintf(buf, sizeof buf, "%s", rel);
    else snprintf(buf, sizeof buf, "%s/%s", base, rel);
    normalize_path(buf, sizeof buf);
    if (strlen(buf) >= cap) return -1;
    set_str(dst, cap, buf);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* applying one value                                                                          */

static int num_in(const key_def *k, double d) {
    if (!isfinite(d)) return 0;
    if (k->lo_open ? !(d > k->lo) : !(d >= k->lo)) return 0;
    return d <= k->hi;
}

/* "8G", "512m", "1.5GiB", "4096", "100kB": binary multiples (K = 1024). -1 when malformed. */
static double parse_bytes(const char *s) {
    const char *p = s;
    if (!(*p >= '0' && *p <= '9')) return -1;
    double v = 0;
    while (*p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0');
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9')) return -1;
        for (double f = 0.1; *p >= '0' && *p <= '9'; f /= 10) v += f * (*p++ - '0');
    }
    static const char UNITS[] = "KMGT";
    double mul = 1;
    if (*p) {
        const char *u = strchr(UNITS, *p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        if (u && *p) {
            for (const char *q = UNITS; q <= u; q++) mul *= 1024;
            p++;
            if (*p == 'i') p++;
        }
        if (*p == 'B' || *p == 'b') p++;
    }
    if (*p) return -1;
    return floor(v * mul);
}

static qd_status apply(qd_config *c, const key_def *k, const cJSON *v, const char *origin, const char *base) {
    char *field = (char *)c + k->off;
    switch (k->type) {
    case K_INT:
    case K_I64:
    case K_U64: {
        if (!cJSON_IsNumber(v)) return bad_value(origin, k, v);
        double d = v->valuedouble;
        if (!isfinite(d) || d != floor(d) || d < k->lo || d > k->hi) return bad_value(origin, k, v);
        if (k->type == K_INT) *(int *)field = (int)d;
        else if (k->type == K_I64) *(int64_t *)field = (int64_t)d;
        else *(uint64_t *)field = (uint64_t)d;
        return QD_OK;
    }
    case K_BOOL:
        if (!cJSON_IsBool(v)) return bad_value(origin, k, v);
        *(int *)field = cJSON_IsTrue(v) ? 1 : 0;
        return QD_OK;
    case K_FALSE:
        if (cJSON_IsTrue(v))
            return qd_errorf(QD_ERR_CONFIG,
                             "%s%s%s: symmetric quantization is not supported (only asymmetric quantization, false, as in "
                             "every reference QDrop config)", origin ? origin : "", origin ? ": " : "", k->path);
        if (!cJSON_IsFalse(v)) return bad_value(origin, k, v);
        *(int *)field = 0;
        return QD_OK;
    case K_FLOAT:
        if (!cJSON_IsNumber(v) || !num_in(k, v->valuedouble)) return bad_value(origin, k, v);
        *(float *)field = (float)v->valuedouble;
        return QD_OK;
    case K_ENUM:
    case K_STR: {
        if (!cJSON_IsString(v)) return bad_value(origin, k, v);
        int idx = -1;
        if (k->choices) {
            for (int i = 0; k->choices[i]; i++)
                if (strcmp(k->choices[i], v->valuestring) == 0) idx = i;
            if (idx < 0) return bad_value(origin, k, v);
        }
        if (k->type == K_ENUM) { *(int *)field = idx; return QD_OK; }
        if (strlen(v->valuestring) >= k->size) return bad_value(origin, k, v);
        set_str(field, k->size, v->valuestring);
        return QD_OK;
    }
    case K_PATH:
        if (!cJSON_IsString(v)) return bad_value(origin, k, v);
        if (strlen(v->valuestring) >= k->size || resolve_path(field, k->size, base, v->valuestring) != 0)
            return bad_value(origin, k, v);
        return QD_OK;
    case K_BYTES: {
        double d;
        if (cJSON_IsNumber(v)) d = v->valuedouble;
        else if (cJSON_IsString(v)) d = strcmp(v->valuestring, "auto") == 0 ? 0 : parse_bytes(v->valuestring);
        else return bad_value(origin, k, v);
        if (!isfinite(d) || d != floor(d) || d < k->lo || d > k->hi) return bad_value(origin, k, v);
        *(int64_t *)field = (int64_t)d;
        return QD_OK;
    }
    case K_FLOAT3:
    case K_RANGE2: {
        int want = k->type == K_FLOAT3 ? 3 : 2;
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != want) return bad_value(origin, k, v);
        float vals[3];
        for (int i = 0; i < want; i++) {
            const cJSON *e = cJSON_GetArrayItem(v, i);
            if (!cJSON_IsNumber(e) || !num_in(k, e->valuedouble)) return bad_value(origin, k, v);
            vals[i] = (float)e->valuedouble;
        }
        if (k->type == K_FLOAT3) memcpy(field, vals, sizeof(float) * 3);
        else { *(float *)field = vals[0]; *(float *)((char *)c + k->off2) = vals[1]; }
        return QD_OK;
    }
    }
    return qd_errorf(QD_ERR_INTERNAL, "config key %s has no type", k->path);
}

/* Walk one JSON object (section `parent`) applying every key. */
static qd_status walk(qd_config *c, const cJSON *obj, const char *parent, const char *origin, const char *base) {
    for (const cJSON *it = obj->child; it; it = it->next) {
        const char *key = it->string ? it->string : "";
        char full[256];
        if ((size_t)snprintf(full, sizeof full, "%s%s%s", parent, parent[0] ? "." : "", key) >= sizeof full)
            return unknown_key(origin, parent, key);
        for (const cJSON *p = obj->child; p != it; p = p->next)
            if (p->string && strcmp(p->string, key) == 0)
                return qd_errorf(QD_ERR_CONFIG, "%s: %s: duplicate key", origin, full);
        const key_def *k = find_key(full);
        if (k) {
            QD_TRY(apply(c, k, it, origin, base));
        } else if (is_section(full)) {
            if (!cJSON_IsObject(it)) {
                char got[128], list[512];
                describe(it, got, sizeof got);
                children(full, list, sizeof list, NULL, NULL, 0);
                return qd_errorf(QD_ERR_CONFIG, "%s: %s: expected an object with keys (%s), got %s", origin, full, list, got);
            }
            QD_TRY(walk(c, it, full, origin, base));
        } else {
            return unknown_key(origin, parent, key);
        }
    }
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* loading                                                                                     */

/* Deepest nesting a config can need is 4 (quant.recon.b_range); anything deeper than this is
 * not a config, and is refused before cJSON recurses into it. */
#define QD_CONFIG_MAX_DEPTH 32
/* A config is a few KiB; 16 MiB leaves room for anything generated. */
#define QD_CONFIG_MAX_BYTES ((size_t)16 << 20)

static void line_col(const char *text, const char *at, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (const char *p = text; p < at && *p; p++) {
        if (*p == '\n') { (*line)++; *col = 1; }
        else (*col)++;
    }
}

/* What cJSON would silently accept or answer vaguely: bytes that are not UTF-8, a \u0000 escape
 * inside a string (cJSON keeps the bytes before it, so "o_nul\u0000/../../etc/evil" would become
 * "o_nul"), and nesting deeper than QD_CONFIG_MAX_DEPTH (100,000 '[' would only give "malformed
 * JSON"). A lexical pass: strings and escapes are tracked so brackets inside strings do not count. */
static qd_status scan_json(const char *text, const char *origin) {
    int depth = 0, in_str = 0;
    /* JSON text is UTF-8 (RFC 8259 §8.1); a path with other bytes could not be written back
     * into resolved_config.json as the same path */
    {
        const unsigned char *u = (const unsigned char *)text;
        size_t left = strlen(text);
        while (left > 0) {
            size_t l = qd_utf8_seq_len(u, left);
            if (l == 0) {
                int line, col;
                line_col(text, (const char *)u, &line, &col);
                return qd_errorf(QD_ERR_CONFIG, "%s:%d:%d: not valid UTF-8 (byte 0x%02x); a JSON config is UTF-8 text",
                                 origin, line, col, *u);
            }
            u += l;
            left -= l;
        }
    }
    for (const char *p = text; *p; p++) {
        if (in_str) {
            if (*p == '"') in_str = 0;
            else if (*p == '\\' && p[1]) {
                if (p[1] == 'u' && p[2] == '0' && p[3] == '0' && p[4] == '0' && p[5] == '0') {
                    int line, col;
                    line_col(text, p, &line, &col);
                    return qd_errorf(QD_ERR_CONFIG, "%s:%d:%d: a string contains \\u0000 (a NUL character), which no "
                                     "config value (a path, a name) may hold", origin, line, col);
                }
                p++; /* skip the escaped character */
            }
        } else if (*p == '"') {
            in_str = 1;
        } else if (*p == '[' || *p == '{') {
            if (++depth > QD_CONFIG_MAX_DEPTH) {
                int line, col;
                line_col(text, p, &line, &col);
                return qd_errorf(QD_ERR_CONFIG, "%s:%d:%d: JSON nested more than %d levels deep (a config needs at most 4)",
                                 origin, line, col, QD_CONFIG_MAX_DEPTH);
            }
        } else if (*p == ']' || *p == '}') {
            if (depth > 0) depth--;
        }
    }
    return QD_OK;
}

static qd_status load_text_base(qd_config *c, const char *text, const char *origin, const char *base) {
    const char *end = NULL;
    if (!origin) origin = "config";
    QD_TRY(scan_json(text, origin));
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root) {
        const char *at = end ? end : cJSON_GetErrorPtr();
        if (!at) at = text;
        /* cJSON may stop on the whitespace after the offending token: point at the token, unless
         * only whitespace is left (truncated input) */
        const char *q = at;
        while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n') q++;
        int eoi = *q == 0;
        if (!eoi)
            while (at > text && (*at == ' ' || *at == '\t' || *at == '\r' || *at == '\n')) at--;
        int line = 1, col = 1;
        for (const char *p = text; p < at && *p; p++) {
            if (*p == '\n') { line++; col = 1; }
            else col++;
        }
        char near[32];
        size_t n = 0;
        for (const char *p = at; *p && *p != '\n' && n < 20; p++) near[n++] = (*p == '"' ? '\'' : *p);
        near[n] = 0;
        if (eoi) return qd_errorf(QD_ERR_CONFIG, "%s:%d:%d: malformed JSON (unexpected end of input)", origin, line, col);
        return qd_errorf(QD_ERR_CONFIG, "%s:%d:%d: malformed JSON near \"%s\"", origin, line, col, near);
    }
    qd_status st;
    if (!cJSON_IsObject(root)) {
        char got[128];
        describe(root, got, sizeof got);
        st = qd_errorf(QD_ERR_CONFIG, "%s: expected a JSON object at the top level, got %s", origin, got);
    } else {
        st = walk(c, root, "", origin, base);
    }
    cJSON_Delete(root);
    return st;
}

qd_status qd_config_load_text(qd_config *c, const char *text, const char *origin) {
    return load_text_base(c, text, origin, NULL);
}

qd_status qd_config_load_file(qd_config *c, const char *path) {
    void *data = NULL;
    size_t n = 0;
    /* a regular file (not /dev/zero, a FIFO or a directory) of a config's size */
    QD_TRY(qd_read_input(path, "config file", QD_CONFIG_MAX_BYTES, &data, &n));
    if (strlen((const char *)data) != n) {
        free(data);
        return qd_errorf(QD_ERR_CONFIG, "%s: malformed JSON (contains a NUL byte)", path);
    }
    char dir[QD_PATH_MAX];
    qd_path_dirname(path, dir, sizeof dir);
    qd_status st = load_text_base(c, (const char *)data, path, dir);
    free(data);
    if (st == QD_OK) set_str(c->config_path, sizeof c->config_path, path);
    return st;
}

/* --set key.path=value. The value is typed by the schema: numbers/booleans/arrays are JSON
 * ("[20,2]" or "20,2" for arrays), strings may be bare (mode=nodrop) or JSON-quoted. */
qd_status qd_config_set(qd_config *c, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return qd_errorf(QD_ERR_CONFIG, "--set %s: expected key.path=value (e.g. --set quant.w_qconfig.bit=2)", assignment);
    char key[256];
    size_t kl = (size_t)(eq - assignment);
    if (kl >= sizeof key) return qd_errorf(QD_ERR_CONFIG, "--set: key too long");
    memcpy(key, assignment, kl);
    key[kl] = 0;
    const char *val = eq + 1;
    const key_def *k = find_key(key);
    if (!k) {
        if (is_section(key)) {
            char list[512];
            children(key, list, sizeof list, NULL, NULL, 0);
            return qd_errorf(QD_ERR_CONFIG, "--set: %s is a section, not a value (set one of its keys: %s)", key, list);
        }
        /* name the deepest known section, like the file parser does */
        char parent[256];
        snprintf(parent, sizeof parent, "%s", key);
        char *leaf = key;
        for (;;) {
            char *dot = strrchr(parent, '.');
            if (!dot) { leaf = key; parent[0] = 0; break; }
            *dot = 0;
            if (is_section(parent)) { leaf = key + strlen(parent) + 1; break; }
        }
        /* report the first unknown segment below the known section */
        char seg[128];
        size_t sl = strcspn(leaf, ".");
        if (sl >= sizeof seg) sl = sizeof seg - 1;
        memcpy(seg, leaf, sl);
        seg[sl] = 0;
        return unknown_key("--set", parent, seg);
    }
    /* The whole value must parse: cJSON_Parse alone stops after the first value and ignores the
     * rest, so iters=5abc, bit=4,8, enabled=truefalse, iters=1=2 and mode="nodrop"xyz would all
     * be taken as their prefix. ParseWithOpts(require_null_terminated) refuses trailing text;
     * a value that is not JSON as a whole is kept as the string it is, and typed by the schema
     * (a bare string is fine for names and paths, an error for numbers and booleans). */
    cJSON *v = NULL;
    int textual = k->type == K_STR || k->type == K_ENUM || k->type == K_PATH;
    if (val[0] == '"' || val[0] == '[' || val[0] == '{') {
        /* a JSON-quoted string must not smuggle a NUL (\u0000) into a path or name */
        QD_TRY(scan_json(val, "--set"));
    }
    if (textual) {
        if (val[0] == '"') v = cJSON_ParseWithOpts(val, NULL, 1);
        if (!v || !cJSON_IsString(v)) { cJSON_Delete(v); v = cJSON_CreateString(val); }
    } else if (k->type == K_FLOAT3 || k->type == K_RANGE2) {
        if (val[0] == '[') v = cJSON_ParseWithOpts(val, NULL, 1);
        else {
            size_t n = strlen(val) + 3;
            char *b = malloc(n);
            if (b) { snprintf(b, n, "[%s]", val); v = cJSON_ParseWithOpts(b, NULL, 1); free(b); }
        }
    } else {
        v = cJSON_ParseWithOpts(val, NULL, 1);
    }
    if (!v) v = cJSON_CreateString(val); /* not JSON: report it as the string it is */
    if (!v) return qd_errorf(QD_ERR_INTERNAL, "out of memory");
    g_typed = val;
    qd_status st = apply(c, k, v, "--set", NULL);
    g_typed = NULL;
    cJSON_Delete(v);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* finalize                                                                                    */

static qd_status absolutize(char *p, size_t cap, const char *key) {
    if (!p[0]) return QD_OK;
    char cwd[QD_PATH_MAX];
    if (p[0] != '/') {
        if (!getcwd(cwd, sizeof cwd)) return qd_errorf(QD_ERR_IO, "cannot read the current directory: %s", strerror(errno));
    } else {
        cwd[0] = 0;
    }
    if (resolve_path(p, cap, cwd, p) != 0) return qd_errorf(QD_ERR_CONFIG, "%s: path too long (%s)", key, p);
    return QD_OK;
}

qd_status qd_config_finalize(qd_config *c) {
    /* §9: only QDrop mixes; every other mode runs with full quantization (keep probability 1) */
    if (c->mode != QD_MODE_QDROP) c->recon.drop_prob = 1.0f;
    if (c->recon.iters < 1) return qd_errorf(QD_ERR_CONFIG, "quant.recon.iters: must be >= 1, got %d", c->recon.iters);
    if (c->recon.batch_size < 1)
        return qd_errorf(QD_ERR_CONFIG, "quant.recon.batch_size: must be >= 1, got %d", c->recon.batch_size);
    if (c->brecq.act_iters < 1)
        return qd_errorf(QD_ERR_CONFIG, "quant.brecq.act_iters: must be >= 1, got %d", c->brecq.act_iters);
    if (!(c->brecq.act_lr >= 0.0f && c->brecq.act_lr <= 1.0f))
        return qd_errorf(QD_ERR_CONFIG, "quant.brecq.act_lr: expected a number in [0, 1], got %g", c->brecq.act_lr);
    if (c->w_qconfig.bit < 2 || c->w_qconfig.bit > 8)
        return qd_errorf(QD_ERR_CONFIG, "quant.w_qconfig.bit: expected an integer in 2..8, got %d", c->w_qconfig.bit);
    if (c->a_qconfig.bit < 2 || c->a_qconfig.bit > 8)
        return qd_errorf(QD_ERR_CONFIG, "quant.a_qconfig.bit: expected an integer in 2..8, got %d", c->a_qconfig.bit);
    if (c->w_qconfig.symmetric || c->a_qconfig.symmetric)
        return qd_errorf(QD_ERR_CONFIG, "quant.%s_qconfig.symmetric: symmetric quantization is not supported",
                         c->w_qconfig.symmetric ? "w" : "a");
    if (c->calibrate < c->recon.batch_size)
        return qd_errorf(QD_ERR_CONFIG, "quant.calibrate: must be >= quant.recon.batch_size (%d), got %d",
                         c->recon.batch_size, c->calibrate);
    /* 0 = the reference's 256 images, or all of them when quant.calibrate is smaller, so a small
     * calibration set (--set quant.calibrate=64) needs no second override */
    if (c->act_calib_samples == 0) c->act_calib_samples = c->calibrate < 256 ? c->calibrate : 256;
    if (c->act_calib_samples > c->calibrate)
        return qd_errorf(QD_ERR_CONFIG, "quant.act_calib_samples: must be <= quant.calibrate (%d), got %d", c->calibrate,
                         c->act_calib_samples);
    if (!(c->recon.drop_prob >= 0.0f && c->recon.drop_prob <= 1.0f))
        return qd_errorf(QD_ERR_CONFIG, "quant.recon.drop_prob: expected a number in [0, 1], got %g", c->recon.drop_prob);
    if (!(c->recon.warm_up >= 0.0f && c->recon.warm_up <= 1.0f))
        return qd_errorf(QD_ERR_CONFIG, "quant.recon.warm_up: expected a number in [0, 1], got %g", c->recon.warm_up);
    if (c->onnx_opset < 13 || c->onnx_opset > 21)
        return qd_errorf(QD_ERR_CONFIG, "output.onnx_opset: expected an integer in 13..21, got %d", c->onnx_opset);
    if (c->int4_weights && c->onnx_opset < 21)
        return qd_errorf(QD_ERR_CONFIG,
                         "output.int4_weights: INT4 QuantizeLinear/DequantizeLinear needs output.onnx_opset >= 21, got %d",
                         c->onnx_opset);
    if (c->preprocess == QD_PRE_IMAGENET && c->resize_size < c->input_size)
        return qd_errorf(QD_ERR_CONFIG, "data.resize_size: must be >= data.input_size (%d) for imagenet preprocessing, got %d",
                         c->input_size, c->resize_size);
    if (c->eval_batch_size < 1)
        return qd_errorf(QD_ERR_CONFIG, "eval.batch_size: must be >= 1, got %d", c->eval_batch_size);
    if (!c->model_path[0]) return qd_errorf(QD_ERR_CONFIG, "model.path: required (the .onnx model to quantize)");
    if (!c->out_dir[0]) {
        char stem[256], d[QD_PATH_MAX];
        qd_path_stem(c->model_path, stem, sizeof stem);
        snprintf(d, sizeof d, "runs/%s", stem[0] ? stem : "run");
        set_str(c->out_dir, sizeof c->out_dir, d);
    }
    QD_TRY(absolutize(c->model_path, sizeof c->model_path, "model.path"));
    QD_TRY(absolutize(c->calib_path, sizeof c->calib_path, "data.calib_path"));
    QD_TRY(absolutize(c->val_path, sizeof c->val_path, "data.val_path"));
    QD_TRY(absolutize(c->val_labels_path, sizeof c->val_labels_path, "data.val_labels_path"));
    QD_TRY(absolutize(c->out_dir, sizeof c->out_dir, "output.dir"));
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* resolved JSON                                                                               */

/* Shortest decimal that reads back as the same float (so 4e-5 prints as 4e-05, not 3.99999990e-05). */
static void float_text(float f, char *buf, size_t n) {
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) return;
    }
}

static cJSON *section(cJSON *root, const char *path) {
    /* create/find every section of "a.b.c" except the leaf; returns the parent object */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    cJSON *o = root;
    char *s = buf;
    for (char *dot = strchr(s, '.'); dot; dot = strchr(s, '.')) {
        *dot = 0;
        cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, s);
        if (!ch) ch = cJSON_AddObjectToObject(o, s);
        if (!ch) return NULL;
        o = ch;
        s = dot + 1;
    }
    return o;
}

char *qd_config_to_json(const qd_config *c) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    int ok = 1;
    for (int i = 0; i < NKEYS && ok; i++) {
        const key_def *k = &SCHEMA[i];
        const char *field = (const char *)c + k->off;
        cJSON *parent = section(root, k->path);
        const char *leaf = strrchr(k->path, '.') + 1;
        char num[64];
        cJSON *v = NULL;
        if (!parent) { ok = 0; break; }
        switch (k->type) {
        case K_INT: snprintf(num, sizeof num, "%d", *(const int *)field); v = cJSON_CreateRaw(num); break;
        case K_I64:
        case K_BYTES: snprintf(num, sizeof num, "%lld", (long long)*(const int64_t *)field); v = cJSON_CreateRaw(num); break;
        case K_U64: snprintf(num, sizeof num, "%llu", (unsigned long long)*(const uint64_t *)field); v = cJSON_CreateRaw(num); break;
        case K_BOOL:
        case K_FALSE: v = cJSON_CreateBool(*(const int *)field != 0); break;
        case K_FLOAT: float_text(*(const float *)field, num, sizeof num); v = cJSON_CreateRaw(num); break;
        case K_ENUM: {
            int e = *(const int *)field, n = 0;
            while (k->choices[n]) n++;
            v = cJSON_CreateString(e >= 0 && e < n ? k->choices[e] : "unknown");
            break;
        }
        case K_STR:
        case K_PATH: v = cJSON_CreateString(field); break;
        case K_FLOAT3:
        case K_RANGE2: {
            v = cJSON_CreateArray();
            int want = k->type == K_FLOAT3 ? 3 : 2;
            for (int j = 0; v && j < want; j++) {
                float f = k->type == K_FLOAT3 ? ((const float *)field)[j]
                                              : *(const float *)((const char *)c + (j ? k->off2 : k->off));
                float_text(f, num, sizeof num);
                cJSON_AddItemToArray(v, cJSON_CreateRaw(num));
            }
            break;
        }
        }
        if (!v) ok = 0;
        else cJSON_AddItemToObject(parent, leaf, v);
    }
    char *raw = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    /* paths are bytes: a non-UTF-8 byte becomes U+FFFD so the file stays valid JSON */
    char *txt = raw ? qd_utf8_valid_dup(raw) : NULL;
    free(raw);
    if (!txt) return NULL;
    /* newline-terminated, so the file is a proper text file */
    size_t n = strlen(txt);
    char *out = realloc(txt, n + 2);
    if (!out) { free(txt); return NULL; }
    out[n] = '\n';
    out[n + 1] = 0;
    return out;
}

uint64_t qd_config_hash(const qd_config *c) {
    char *js = qd_config_to_json(c);
    uint64_t h = 1469598103934665603ULL; /* FNV-1a 64 offset basis */
    if (!js) return 0;
    for (const unsigned char *p = (const unsigned char *)js; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL; /* FNV-1a 64 prime */
    }
    free(js);
    return h;
}
