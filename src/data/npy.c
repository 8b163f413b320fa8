/* src/data/npy.c: NumPy .npy reader (format 1.0 / 2.0 / 3.0, numpy/lib/format.py).
 *
 * Layout: "\x93NUMPY", major, minor, header length (uint16 LE for 1.x, uint32 LE for 2.x/3.x),
 * then an ASCII (3.x: UTF-8) Python dict literal with exactly the keys 'descr', 'fortran_order'
 * and 'shape' — numpy itself rejects any other key set — padded with spaces and a newline, then
 * the raw C-order data. We parse the dict with a small tokenizer rather than by substring search,
 * so a malformed header is reported instead of being half-understood. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"
#include "qdrop/fsutil.h"
#include "qdrop/graph.h" /* QD_DT_*, QD_MAX_DIMS */

/* Largest header we accept (numpy's own limit for untrusted files is 10,000 bytes). */
#define QD_NPY_MAX_HEADER 100000

typedef struct hparse {
    const char *p, *end;
} hparse;

static void skip_ws(hparse *h) {
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r')) h->p++;
}

static int expect(hparse *h, char c) {
    skip_ws(h);
    if (h->p < h->end && *h->p == c) { h->p++; return 1; }
    return 0;
}

/* Python string literal in ' or " quotes (no escapes needed for the keys/descr we accept). */
static int parse_str(hparse *h, char *out, size_t cap) {
    skip_ws(h);
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"')) return 0;
    char q = *h->p++;
    size_t n = 0;
    while (h->p < h->end && *h->p != q) {
        if (*h->p == '\\' || n + 1 >= cap) return 0;
        out[n++] = *h->p++;
    }
    if (h->p >= h->end) return 0;
    h->p++;
    out[n] = 0;
    return 1;
}

static int parse_word(hparse *h, const char *w) {
    skip_ws(h);
    size_t n = strlen(w);
    if ((size_t)(h->end - h->p) >= n && memcmp(h->p, w, n) == 0) {
        h->p += n;
        return 1;
    }
    return 0;
}

/* Python tuple of non-negative ints: "()", "(5,)", "(2, 3)", "(2, 3,)". */
static int parse_shape(hparse *h, int *ndim, int64_t *dims) {
    if (!expect(h, '(')) return 0;
    int n = 0;
    for (;;) {
        skip_ws(h);
        if (h->p < h->end && *h->p == ')') { h->p++; break; }
        if (h->p >= h->end || *h->p < '0' || *h->p > '9') return 0;
        int64_t v = 0;
        while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
            if (v > (INT64_MAX - 9) / 10) return 0;
            v = v * 10 + (*h->p - '0');
            h->p++;
        }
        /* numpy writes Python ints; tolerate a trailing L from Python 2 writers */
        if (h->p < h->end && *h->p == 'L') h->p++;
        if (n >= QD_MAX_DIMS) return 0;
        dims[n++] = v;
        skip_ws(h);
        if (h->p < h->end && *h->p == ',') { h->p++; continue; }
        if (h->p < h->end && *h->p == ')') { h->p++; break; }
        return 0;
    }
    /* "(5)" is not a tuple in Python; numpy never writes it */
    *ndim = n;
    return 1;
}

void qd_npy_free(qd_npy *a) {
    if (!a) return;
    free(a->f);
    free(a->i);
    memset(a, 0, sizeof *a);
}

static uint64_t rd_le(const unsigned char *b, int n) {
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; k--) v = (v << 8) | b[k];
    return v;
}

qd_status qd_npy_load(const char *path, qd_npy *a) {
    memset(a, 0, sizeof *a);
    FILE *f = NULL;
    size_t fsize = 0;
    QD_TRY(qd_fopen_input(path, ".npy file", QD_INPUT_MAX_BYTES, &f, &fsize));
    qd_status st = QD_OK;
    char *hdr = NULL;
    unsigned char *raw = NULL;
    unsigned char pre[12];
    size_t got = fread(pre, 1, 10, f);
    if (got < 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        st = qd_errorf(QD_ERR_DATA, "%s: not a .npy file (missing \\x93NUMPY magic)", path);
        goto done;
    }
    int major = pre[6];
    size_t hlen, pre_len;
    if (major == 1) {
        hlen = (size_t)rd_le(pre + 8, 2);
        pre_len = 10;
    } else if (major == 2 || major == 3) {
        if (fread(pre + 10, 1, 2, f) != 2) {
            st = qd_errorf(QD_ERR_DATA, "%s: truncated .npy preamble", path);
            goto done;
        }
        hlen = (size_t)rd_le(pre + 8, 4);
        pre_len = 12;
    } else {
        st = qd_errorf(QD_ERR_DATA, "%s: unsupported .npy format version %d.%d", path, major, pre[7]);
        goto done;
    }
    if (hlen == 0 || hlen > QD_NPY_MAX_HEADER) {
        st = qd_errorf(QD_ERR_DATA, "%s: malformed .npy header (length %zu)", path, hlen);
        goto done;
    }
    hdr = malloc(hlen + 1);
    if (!hdr) { st = qd_errorf(QD_ERR_INTERNAL, "out of host memory"); goto done; }
    if (fread(hdr, 1, hlen, f) != hlen) {
        st = qd_errorf(QD_ERR_DATA, "%s: truncated .npy header (expected %zu bytes)", path, hlen);
        goto done;
    }
    hdr[hlen] = 0;

    char descr[32] = "";
    int fortran = -1, ndim = -1, seen = 0;
    int64_t dims[QD_MAX_DIMS];
    {
        hparse h = {hdr, hdr + hlen};
        int ok = expect(&h, '{');
        while (ok) {
            skip_ws(&h);
            if (h.p < h.end && *h.p == '}') { h.p++; break; }
            char key[32];
            if (!parse_str(&h, key, sizeof key) || !expect(&h, ':')) { ok = 0; break; }
            if (strcmp(key, "descr") == 0 && !(seen & 1)) {
                ok = parse_str(&h, descr, sizeof descr);
                seen |= 1;
            } else if (strcmp(key, "fortran_order") == 0 && !(seen & 2)) {
                if (parse_word(&h, "False")) fortran = 0;
                else if (parse_word(&h, "True")) fortran = 1;
                else ok = 0;
                seen |= 2;
            } else if (strcmp(key, "shape") == 0 && !(seen & 4)) {
                ok = parse_shape(&h, &ndim, dims);
                seen |= 4;
            } else {
                st = qd_errorf(QD_ERR_DATA, "%s: malformed .npy header: unexpected or repeated key '%s'", path, key);
                goto done;
            }
            if (!ok) break;
            skip_ws(&h);
            if (h.p < h.end && *h.p == ',') { h.p++; continue; }
            if (h.p < h.end && *h.p == '}') { h.p++; break; }
            ok = 0;
        }
        skip_ws(&h);
        if (!ok || h.p != h.end || seen != 7) {
            st = qd_errorf(QD_ERR_DATA, "%s: malformed .npy header (%s)", path,
                           seen != 7 && ok ? "needs 'descr', 'fortran_order' and 'shape'" : "not a valid dict literal");
            goto done;
        }
    }
    if (fortran) {
        st = qd_errorf(QD_ERR_DATA, "%s: Fortran-order arrays are not supported (save with np.ascontiguousarray)", path);
        goto done;
    }
    int itemsize = 0, kind = 0; /* kind: 'f' float, 'i' signed int, 'u' unsigned */
    if (strcmp(descr, "<f4") == 0) { itemsize = 4; kind = 'f'; }
    else if (strcmp(descr, "<f8") == 0) { itemsize = 8; kind = 'f'; }
    else if (strcmp(descr, "<i8") == 0) { itemsize = 8; kind = 'i'; }
    else if (strcmp(descr, "<i4") == 0) { itemsize = 4; kind = 'i'; }
    else if (strcmp(descr, "|u1") == 0) { itemsize = 1; kind = 'u'; }
    else {
        st = qd_errorf(QD_ERR_DATA,
                       "%s: unsupported dtype '%s' (supported: little-endian float32 '<f4', float64 '<f8', int64 '<i8', "
                       "int32 '<i4', uint8 '|u1')",
                       path, descr);
        goto done;
    }
    int64_t numel = 1;
    for (int k = 0; k < ndim; k++) {
        if (dims[k] != 0 && numel > INT64_MAX / 8 / dims[k]) {
            st = qd_errorf(QD_ERR_DATA, "%s: .npy shape too large", path);
            goto done;
        }
        numel *= dims[k];
    }
    /* data must fill the rest of the file exactly */
    long data_off = (long)(pre_len + hlen);
    if (fseek(f, 0, SEEK_END) != 0) { st = qd_errorf(QD_ERR_NOINPUT, "%s: cannot seek", path); goto done; }
    long flen = ftell(f);
    int64_t want = numel * itemsize;
    if (flen < 0 || (int64_t)flen - data_off != want) {
        st = qd_errorf(QD_ERR_DATA, "%s: data size mismatch: header says %lld elements of %d bytes (%lld bytes), file has %lld",
                       path, (long long)numel, itemsize, (long long)want, (long long)(flen - data_off));
        goto done;
    }
    if (fseek(f, data_off, SEEK_SET) != 0) { st = qd_errorf(QD_ERR_NOINPUT, "%s: cannot seek", path); goto done; }
    raw = malloc((size_t)(want > 0 ? want : 1));
    if (!raw) { st = qd_errorf(QD_ERR_INTERNAL, "out of host memory (%lld bytes for %s)", (long long)want, path); goto done; }
    if (want > 0 && fread(raw, 1, (size_t)want, f) != (size_t)want) {
        st = qd_errorf(QD_ERR_NOINPUT, "%s: read error", path);
        goto done;
    }
    a->ndim = ndim;
    for (int k = 0; k < ndim; k++) a->dims[k] = dims[k];
    a->numel = numel;
    size_t cnt = (size_t)(numel > 0 ? numel : 1);
    if (kind == 'f') {
        a->dtype = QD_DT_FLOAT;
        a->f = malloc(sizeof(float) * cnt);
        if (!a->f) { st = qd_errorf(QD_ERR_INTERNAL, "out of host memory"); goto done; }
        for (int64_t k = 0; k < numel; k++) {
            if (itemsize == 4) {
                uint32_t u = (uint32_t)rd_le(raw + 4 * k, 4);
                memcpy(&a->f[k], &u, 4);
            } else {
                uint64_t u = rd_le(raw + 8 * k, 8);
                double d;
                memcpy(&d, &u, 8);
                a->f[k] = (float)d;
            }
        }
    } else {
        a->dtype = QD_DT_INT64;
        a->i = malloc(sizeof(int64_t) * cnt);
        if (!a->i) { st = qd_errorf(QD_ERR_INTERNAL, "out of host memory"); goto done; }
        for (int64_t k = 0; k < numel; k++) {
            if (itemsize == 8) a->i[k] = (int64_t)rd_le(raw + 8 * k, 8);
            else if (itemsize == 4) a->i[k] = (int32_t)(uint32_t)rd_le(raw + 4 * k, 4);
            else a->i[k] = raw[k];
        }
    }
done:
    if (st != QD_OK) qd_npy_free(a);
    free(hdr);
    free(raw);
    fclose(f);
    return st;
}
