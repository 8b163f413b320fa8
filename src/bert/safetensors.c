/* src/bert/safetensors.c: .safetensors reader. Format: u64 little-endian header length N,
 * N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
 * then the data section; offsets are relative to the data section. Every structural property
 * is validated so a corrupt file yields QD_ERR_DATA with the file and tensor named. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bert/bert_internal.h"
#include "qdrop/fsutil.h"

static const struct { const char *name; qd_st_dtype d; size_t size; } k_dtypes[] = {
    {"BOOL", QD_ST_BOOL, 1}, {"U8", QD_ST_U8, 1},   {"I8", QD_ST_I8, 1},     {"I16", QD_ST_I16, 2},
    {"U16", QD_ST_U16, 2},   {"F16", QD_ST_F16, 2}, {"BF16", QD_ST_BF16, 2}, {"I32", QD_ST_I32, 4},
    {"U32", QD_ST_U32, 4},   {"F32", QD_ST_F32, 4}, {"F64", QD_ST_F64, 8},   {"I64", QD_ST_I64, 8},
    {"U64", QD_ST_U64, 8},
};

size_t qd_st_dtype_size(qd_st_dtype d) {
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
        if (k_dtypes[i].d == d) return k_dtypes[i].size;
    return 0;
}

qd_status qd_bert_read_file(const char *path, char **buf, size_t *n) {
    /* a regular file only (not a directory, FIFO or /dev/zero), bounded (qdrop/fsutil.h) */
    void *d = NULL;
    QD_TRY(qd_read_input(path, NULL, QD_INPUT_MAX_BYTES, &d, n));
    *buf = d;
    return QD_OK;
}

void qd_st_close(qd_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) free(st->t[i].name);
    free(st->t);
    free(st->buf);
    free(st->path);
    free(st);
}

static int cmp_begin(const void *a, const void *b) {
    const qd_st_tensor *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

/* Integer-valued JSON number in [0, 2^53]. */
static int json_u64(const cJSON *j, uint64_t *v) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) return 0;
    *v = (uint64_t)d;
    return 1;
}

static qd_status parse(qd_safetensors *st) {
    const char *p = st->path;
    if (st->size < 8) return qd_errorf(QD_ERR_DATA, "%s: safetensors file shorter than its 8-byte header length", p);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | st->buf[i];
    if (hl == 0 || hl > st->size - 8)
        return qd_errorf(QD_ERR_DATA, "%s: safetensors header length %llu beyond file size %zu", p,
                         (unsigned long long)hl, st->size);
    st->data_start = 8 + (size_t)hl;
    size_t data_len = st->size - st->data_start;
    cJSON *root = cJSON_ParseWithLength((const char *)st->buf + 8, (size_t)hl);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return qd_errorf(QD_ERR_DATA, "%s: safetensors header is not a JSON object", p);
    }
    int cnt = 0;
    for (cJSON *e = root->child; e; e = e->next)
        if (strcmp(e->string, "__metadata__") != 0) cnt++;
    st->t = calloc(cnt ? (size_t)cnt : 1, sizeof *st->t);
    if (!st->t) { cJSON_Delete(root); return qd_errorf(QD_ERR_INTERNAL, "%s: out of memory", p); }
    qd_status rc = QD_OK;
    for (cJSON *e = root->child; e && rc == QD_OK; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        const char *nm = e->string;
        qd_st_tensor *t = &st->t[st->n];
        t->name = strdup(nm);
        if (!t->name) { rc = qd_errorf(QD_ERR_INTERNAL, "%s: out of memory", p); break; }
        st->n++;
        if (!cJSON_IsObject(e)) { rc = qd_errorf(QD_ERR_DATA, "%s: tensor '%s': entry is not an object", p, nm); break; }
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
        cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsString(dt)) { rc = qd_errorf(QD_ERR_DATA, "%s: tensor '%s': missing string 'dtype'", p, nm); break; }
        if (!cJSON_IsArray(sh)) { rc = qd_errorf(QD_ERR_DATA, "%s: tensor '%s': missing array 'shape'", p, nm); break; }
        if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2) {
            rc = qd_errorf(QD_ERR_DATA, "%s: tensor '%s': missing 'data_offsets' [begin, end]", p, nm);
            break;
        }
        size_t esz = 0;
        for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
            if (strcmp(dt->valuestring, k_dtypes[i].name) == 0) { t->dtype = k_dtypes[i].d; esz = k_dtypes[i].size; }
        if (!esz) { rc = qd_errorf(QD_ERR_DATA, "%s: tensor '%s': unknown dtype '%s'", p, nm, dt->valuestring); break; }
        int nd = cJSON_GetArraySize(sh);
        if (nd > QD_ST_MAX_DIMS) { rc = qd_errorf(QD_ERR_DATA, "%s: tensor '%s': %d dims (max %d)", p, nm, nd, QD_ST_MAX_DIMS); break; }
        t->ndim = nd;
        uint64_t numel = 1;
        for (int i = 0; i < nd; i++) {
            uint64_t d;
            if (!json_u64(cJSON_GetArrayItem(sh, i), &d) || d > ((uint64_t)1 << 40)) {
                rc = qd_errorf(QD_ERR_DATA, "%s: tensor '%s': shape[%d] is not a non-negative integer", p, nm, i);
                break;
            }
            t->shape[i] = (int64_t)d;
            if (d && numel > (((uint64_t)1 << 53) / d)) { rc = qd_errorf(QD_ERR_DATA, "%s: tensor '%s': shape overflows", p, nm); break; }
            numel *= d;
        }
        if (rc != QD_OK) break;
        t->numel = (int64_t)numel;
        uint64_t b0, b1;
        if (!json_u64(cJSON_GetArrayItem(of, 0), &b0) || !json_u64(cJSON_GetArrayItem(of, 1), &b1) || b1 < b0) {
            rc = qd_errorf(QD_ERR_DATA, "%s: tensor '%s': data_offsets are not integers begin <= end", p, nm);
            break;
        }
        if (b1 > data_len) {
            rc = qd_errorf(QD_ERR_DATA, "%s: tensor '%s': data_offsets [%llu, %llu] beyond data section of %zu bytes",
                           p, nm, (unsigned long long)b0, (unsigned long long)b1, data_len);
            break;
        }
        if (b1 - b0 != numel * esz) {
            rc = qd_errorf(QD_ERR_DATA, "%s: tensor '%s': %llu bytes but dtype %s x %llu elements needs %llu", p, nm,
                           (unsigned long long)(b1 - b0), dt->valuestring, (unsigned long long)numel,
                           (unsigned long long)(numel * esz));
            break;
        }
        t->begin = (size_t)b0;
        t->end = (size_t)b1;
    }
    cJSON_Delete(root);
    if (rc != QD_OK) return rc;
    qsort(st->t, (size_t)st->n, sizeof *st->t, cmp_begin);
    /* The format requires the tensors to tile the data section: no overlap, no holes. */
    size_t pos = 0;
    for (int i = 0; i < st->n; i++) {
        if (st->t[i].begin != pos)
            return qd_errorf(QD_ERR_DATA, "%s: tensor '%s': data_offsets begin %zu %s (expected %zu)", p, st->t[i].name,
                             st->t[i].begin, st->t[i].begin < pos ? "overlaps the previous tensor" : "leaves a hole",
                             pos);
        pos = st->t[i].end;
    }
    if (pos != data_len)
        return qd_errorf(QD_ERR_DATA, "%s: tensors cover %zu of %zu data bytes", p, pos, data_len);
    return QD_OK;
}

qd_status qd_st_open_mem(const void *buf, size_t n, const char *name, qd_safetensors **out) {
    *out = NULL;
    qd_safetensors *st = calloc(1, sizeof *st);
    if (!st) return qd_errorf(QD_ERR_INTERNAL, "%s: out of memory", name);
    st->path = strdup(name);
    st->buf = malloc(n ? n : 1);
    if (!st->path || !st->buf) { qd_st_close(st); return qd_errorf(QD_ERR_INTERNAL, "%s: out of memory", name); }
    if (n) memcpy(st->buf, buf, n);
    st->size = n;
    qd_status rc = parse(st);
    if (rc != QD_OK) { qd_st_close(st); return rc; }
    *out = st;
    return QD_OK;
}

qd_status qd_st_open(const char *path, qd_safetensors **out) {
    *out = NULL;
    qd_safetensors *st = calloc(1, sizeof *st);
    if (!st) return qd_errorf(QD_ERR_INTERNAL, "%s: out of memory", path);
    st->path = strdup(path);
    if (!st->path) { free(st); return qd_errorf(QD_ERR_INTERNAL, "%s: out of memory", path); }
    char *b = NULL;
    qd_status rc = qd_bert_read_file(path, &b, &st->size);
    if (rc != QD_OK) { qd_st_close(st); return rc; }
    st->buf = (unsigned char *)b;
    rc = parse(st);
    if (rc != QD_OK) { qd_st_close(st); return rc; }
    *out = st;
    return QD_OK;
}

const qd_st_tensor *qd_st_find(const qd_safetensors *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->t[i].name, name) == 0) return &st->t[i];
    return NULL;
}

static float half_to_float(uint16_t h) {
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
    if (e == 0) {
        if (m == 0) u = s;
        else { /* subnormal: renormalise */
            e = 127 - 15 + 1;
            while (!(m & 0x400)) { m <<= 1; e--; }
            u = s | (e << 23) | ((m & 0x3ff) << 13);
        }
    } else if (e == 31) u = s | 0x7f800000u | (m << 13);
    else u = s | ((e + 127 - 15) << 23) | (m << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

qd_status qd_st_read_f32(const qd_safetensors *st, const char *name, int ndim, const int64_t *shape, float **out) {
    *out = NULL;
    const qd_st_tensor *t = qd_st_find(st, name);
    if (!t) return qd_errorf(QD_ERR_DATA, "%s: tensor '%s' not found", st->path, name);
    if (ndim > 0) {
        int ok = t->ndim == ndim;
        for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
        if (!ok) {
            char e[128] = "", f[128] = "";
            for (int i = 0; i < ndim; i++) snprintf(e + strlen(e), sizeof e - strlen(e), "%s%lld", i ? "," : "", (long long)shape[i]);
            for (int i = 0; i < t->ndim; i++) snprintf(f + strlen(f), sizeof f - strlen(f), "%s%lld", i ? "," : "", (long long)t->shape[i]);
            return qd_errorf(QD_ERR_DATA, "%s: tensor '%s': shape [%s], expected [%s]", st->path, name, f, e);
        }
    }
    float *o = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
    if (!o) return qd_errorf(QD_ERR_INTERNAL, "%s: out of memory for '%s'", st->path, name);
    const unsigned char *src = st->buf + st->data_start + t->begin;
    /* The format is little-endian; so is every host this builds on (x86-64, aarch64). */
    for (int64_t i = 0; i < t->numel; i++) {
        switch (t->dtype) {
        case QD_ST_F32: memcpy(&o[i], src + 4 * i, 4); break;
        case QD_ST_F64: { double d; memcpy(&d, src + 8 * i, 8); o[i] = (float)d; break; }
        case QD_ST_F16: { uint16_t h; memcpy(&h, src + 2 * i, 2); o[i] = half_to_float(h); break; }
        case QD_ST_BF16: { uint16_t h; memcpy(&h, src + 2 * i, 2); uint32_t u = (uint32_t)h << 16; memcpy(&o[i], &u, 4); break; }
        default:
            free(o);
            return qd_errorf(QD_ERR_UNSUPPORTED, "%s: tensor '%s': dtype is not a float type", st->path, name);
        }
    }
    *out = o;
    return QD_OK;
}
