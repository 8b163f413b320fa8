/* src/onnx/onnx_reader.c: ONNX ModelProto -> qd_graph, through the protobuf-c code generated at
 * build time from the installed onnx.proto (no hand-written protobuf decoding).
 *
 * What happens here:
 *   - initializers (raw_data, typed *_data fields, or external data files) become constant values
 *     (float32 or int64 in memory; double/int32/int8/uint8/bool are widened);
 *   - Constant nodes and every helper node whose inputs are all constant (the Shape-free chains
 *     torch emits around Pad/Reshape: ConstantOfShape, Concat, Cast, Slice, Transpose, ...) are
 *     evaluated here and become constant values, so the IR only holds real compute nodes;
 *   - shape-describing constant inputs (Clip bounds, Pad pads/value, ReduceMean axes) are resolved
 *     into qd_attrs; Reshape's shape and Slice's starts/ends/axes/steps stay as constant int64
 *     inputs until shape inference resolves them (it needs the input shape);
 *   - every failure is a qd_status with a one-line message naming the file and the node,
 *     initializer or input at fault. Nothing here aborts on bad input.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/checked.h"
#include "graph/graph_internal.h"
#include "onnx.pb-c.h"
#include "qdrop/graph.h"
#include "qdrop/fsutil.h"

#define S(x) ((x) ? (x) : "")
#define MAX_CONST_NUMEL QD_MAX_TENSOR_NUMEL

static const char k_supported[] =
    "Conv, Gemm, MatMul, Add, Sub, Mul, Div, Relu, Clip, Sigmoid, BatchNormalization, MaxPool, "
    "AveragePool, GlobalAveragePool, ReduceMean, Flatten, Reshape, Pad (constant), Slice, Concat, "
    "Transpose, Squeeze, Unsqueeze, Softmax (with an optional additive mask), HardSigmoid, HardSwish, "
    "Resize (2-D nearest/linear), Upsample, LayerNormalization (opset >= 17), Gelu (opset >= 20, exact erf "
    "form), Identity, Dropout, Cast (to float), Constant; on constant inputs also ConstantOfShape, Shape, Gather";

typedef struct rd {
    const char *path;
    char *dir;       /* directory of the model file, for external data */
    qd_graph *g;
    int opset;
    int64_t file_elems; /* elements of constant tensors stored in the file (initializers, Constant) */
    int64_t fold_elems; /* elements of constants computed by folding so far */
    /* The batch size as a symbol (x.view(x.size(0), -1)): per value id, SYM_SHAPE for the output of
     * Shape on an activation (only its element 0, the batch, can be read), SYM_MASK for a small
     * int64 constant whose elements in symm (bit e = element e) are the batch size; those
     * elements hold 0, which is what Reshape needs there ("copy dimension 0"). */
    unsigned char *symk;
    unsigned char *symm;
    int nsym;
} rd;

enum { SYM_NONE = 0, SYM_SHAPE = 1, SYM_MASK = 2 };

/* Constant folding may not amplify a small file into a huge amount of work and memory: all
 * constants it computes together hold at most 2^24 elements plus twice the constant data the
 * file itself stores (so a Transpose or Reshape of a large weight still folds). */
#define FOLD_BUDGET_BASE ((int64_t)1 << 24)

/* ------------------------------------------------------------------------------------------ */
/* small helpers                                                                               */
/* ------------------------------------------------------------------------------------------ */
static const Onnx__AttributeProto *find_attr(const Onnx__NodeProto *n, const char *name) {
    for (size_t i = 0; i < n->n_attribute; i++)
        if (n->attribute[i] && strcmp(S(n->attribute[i]->name), name) == 0) return n->attribute[i];
    return NULL;
}

static int64_t attr_i(const Onnx__NodeProto *n, const char *name, int64_t def) {
    const Onnx__AttributeProto *a = find_attr(n, name);
    return a ? a->i : def;
}

static const char *node_label(const Onnx__NodeProto *n);

/* An integer attribute stored in an int field: the int64 from the file must lie in [lo, hi]
 * (a plain cast would read 2^32 + 1 as 1). */
static qd_status attr_int(const rd *r, const Onnx__NodeProto *n, const char *name, int64_t def, int64_t lo,
                          int64_t hi, int *out) {
    int64_t v = attr_i(n, name, def);
    if (v < lo || v > hi)
        return qd_errorf(QD_ERR_DATA, "%s: node '%s' (%s): attribute '%s' is %lld (expected %lld..%lld)", r->path,
                         node_label(n), n->op_type ? n->op_type : "", name, (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return QD_OK;
}

static float attr_f(const Onnx__NodeProto *n, const char *name, float def) {
    const Onnx__AttributeProto *a = find_attr(n, name);
    return a ? a->f : def;
}

/* Copies up to max ints; returns the count, -1 when the attribute is absent, -2 when too long. */
static int attr_ints(const Onnx__NodeProto *n, const char *name, int64_t *out, int max) {
    const Onnx__AttributeProto *a = find_attr(n, name);
    if (!a) return -1;
    if (a->n_ints > (size_t)max) return -2;
    for (size_t i = 0; i < a->n_ints; i++) out[i] = a->ints[i];
    return (int)a->n_ints;
}

static void attr_str(const Onnx__NodeProto *n, const char *name, const char *def, char *buf, size_t cap) {
    const Onnx__AttributeProto *a = find_attr(n, name);
    if (!a || !a->has_s) {
        snprintf(buf, cap, "%s", def);
        return;
    }
    size_t len = a->s.len < cap - 1 ? a->s.len : cap - 1;
    memcpy(buf, a->s.data, len);
    buf[len] = 0;
}

static const char *node_label(const Onnx__NodeProto *n) {
    return (n->name && n->name[0]) ? n->name : (n->n_output > 0 ? S(n->output[0]) : "?");
}

static qd_status oom(const rd *r) { return qd_errorf(QD_ERR_INTERNAL, "%s: out of memory while reading", r->path); }

static int elem_size(int dt) {
    switch (dt) {
    case 1: return 4;   /* FLOAT */
    case 2: return 1;   /* UINT8 */
    case 3: return 1;   /* INT8 */
    case 4: return 2;   /* UINT16 */
    case 5: return 2;   /* INT16 */
    case 6: return 4;   /* INT32 */
    case 7: return 8;   /* INT64 */
    case 9: return 1;   /* BOOL */
    case 11: return 8;  /* DOUBLE */
    case 12: return 4;  /* UINT32 */
    case 13: return 8;  /* UINT64 */
    default: return 0;
    }
}

static int is_float_dt(int dt) { return dt == 1 || dt == 11; }

/* ------------------------------------------------------------------------------------------ */
/* constant values                                                                             */
/* ------------------------------------------------------------------------------------------ */
/* New constant value of the given dtype (QD_DT_FLOAT or QD_DT_INT64) and shape, zero-filled.
 * Returns the value id, -2 when the shape is invalid (rank > QD_MAX_DIMS, a negative dimension,
 * more than MAX_CONST_NUMEL elements), -1 when out of memory. */
static int new_const(rd *r, const char *name, int dtype, int ndim, const int64_t *dims) {
    qd_graph *g = r->g;
    int64_t n;
    if (ndim < 0 || ndim > QD_MAX_DIMS) return -2;
    /* dims may point into g->values, which qd_graph_add_value can reallocate: copy it first */
    int64_t dd[QD_MAX_DIMS];
    for (int d = 0; d < ndim; d++) dd[d] = dims[d];
    dims = dd;
    if (!qd_shape_numel_checked(ndim, dims, MAX_CONST_NUMEL, &n)) return -2;
    int v = qd_graph_add_value(g, name);
    if (v < 0) return -1;
    qd_value *val = &g->values[v];
    val->is_const = 1;
    val->dtype = dtype;
    val->ndim = ndim;
    for (int d = 0; d < ndim; d++) val->dims[d] = dims[d];
    size_t cnt = (size_t)(n > 0 ? n : 1);
    if (dtype == QD_DT_FLOAT) val->fdata = calloc(cnt, sizeof(float));
    else val->idata = calloc(cnt, sizeof(int64_t));
    if (!val->fdata && !val->idata) return -1;
    return v;
}

/* "[d0,d1,...]" into buf, for messages. */
static const char *fmt_dims(char *buf, size_t cap, int ndim, const int64_t *dims) {
    size_t o = 0;
    buf[0] = 0;
    o += (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", d ? "," : "", (long long)dims[d]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
    return buf;
}

/* The error for new_const's -2 (bad shape) or -1 (out of memory) on node `nm` (op `op`). */
static qd_status const_fail(const rd *r, int v, const char *nm, const char *op, int ndim, const int64_t *dims) {
    if (v != -2) return oom(r);
    if (ndim < 0 || ndim > QD_MAX_DIMS)
        return qd_errorf(QD_ERR_DATA, "%s: node '%s' (%s): result has rank %d (at most %d)", r->path, nm, op, ndim,
                         QD_MAX_DIMS);
    char b[256];
    return qd_errorf(QD_ERR_DATA, "%s: node '%s' (%s): result shape %s has a negative dimension or more than %lld "
                     "elements", r->path, nm, op, fmt_dims(b, sizeof b, ndim, dims), (long long)MAX_CONST_NUMEL);
}

/* Parses a decimal int64 external-data field; the whole string must be a number. */
static int parse_i64_field(const char *s, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!s[0] || errno || !end || *end) return 0;
    *out = v;
    return 1;
}

/* External data is untrusted like the model: the location must name a regular file inside the
 * model's directory after resolving symbolic links (no "..", no absolute path, no link to
 * /dev/zero or out of the directory, no FIFO that would block), and the file must hold the
 * declared bytes at the declared offset before anything is allocated or read. */
static qd_status read_external(rd *r, const Onnx__TensorProto *t, const char *tname, size_t want, unsigned char **out) {
    const char *loc = NULL;
    int64_t offset = 0, length = -1;
    for (size_t i = 0; i < t->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = t->external_data[i];
        if (!e) continue;
        const char *k = S(e->key), *val = S(e->value);
        if (strcmp(k, "location") == 0) loc = val;
        else if ((strcmp(k, "offset") == 0 && !parse_i64_field(val, &offset)) ||
                 (strcmp(k, "length") == 0 && !parse_i64_field(val, &length)))
            return qd_errorf(QD_ERR_DATA, "%s: initializer '%s': external data %s '%s' is not an integer", r->path,
                             tname, k, val);
    }
    if (!loc || !loc[0])
        return qd_errorf(QD_ERR_DATA, "%s: initializer '%s' is stored externally but has no location", r->path, tname);
    /* The location is relative to the model's directory and may not escape it. */
    if (loc[0] == '/' || strstr(loc, "..") != NULL)
        return qd_errorf(QD_ERR_DATA, "%s: initializer '%s': external data location '%s' must be a relative path "
                         "inside the model's directory", r->path, tname, loc);
    if (offset < 0 || (length >= 0 && (uint64_t)length != (uint64_t)want))
        return qd_errorf(QD_ERR_DATA, "%s: initializer '%s': external data offset %lld / length %lld do not match its "
                         "shape (%zu bytes)", r->path, tname, (long long)offset, (long long)length, want);
    size_t plen = strlen(r->dir) + strlen(loc) + 2;
    char *p = malloc(plen);
    if (!p) return oom(r);
    snprintf(p, plen, "%s/%s", r->dir, loc);
    qd_status st = QD_OK;
    unsigned char *buf = NULL;
    int fd = -1;
    char *rdir = realpath(r->dir, NULL);
    char *rfile = rdir ? realpath(p, NULL) : NULL;
    if (!rdir || !rfile) {
        st = qd_errorf(QD_ERR_NOINPUT, "%s: external data file '%s' of initializer '%s' cannot be opened: %s", r->path,
                       p, tname, strerror(errno));
        goto done;
    }
    size_t dl = strlen(rdir);
    int inside = strncmp(rfile, rdir, dl) == 0 && (dl == 1 || rfile[dl] == '/') && rfile[dl] != 0;
    if (!inside) {
        st = qd_errorf(QD_ERR_DATA, "%s: initializer '%s': external data '%s' resolves to '%s', outside the model's "
                       "directory", r->path, tname, loc, rfile);
        goto done;
    }
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then rejects it. */
    fd = open(rfile, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        st = qd_errorf(QD_ERR_NOINPUT, "%s: external data file '%s' of initializer '%s' cannot be opened: %s", r->path,
                       p, tname, strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = qd_errorf(QD_ERR_DATA, "%s: external data '%s' of initializer '%s' is not a regular file", r->path, p,
                       tname);
        goto done;
    }
    int64_t end;
    if (!qd_add_i64_checked(offset, (int64_t)want, &end) || (int64_t)sb.st_size < end) {
        st = qd_errorf(QD_ERR_DATA, "%s: external data file '%s' is too short for initializer '%s' (%lld bytes; needs "
                       "offset %lld + %zu bytes)", r->path, p, tname, (long long)sb.st_size, (long long)offset, want);
        goto done;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    buf = malloc(want ? want : 1);
    if (!buf) {
        st = oom(r);
        goto done;
    }
    for (size_t got = 0; got < want;) {
        ssize_t k = pread(fd, buf + got, want - got, (off_t)offset + (off_t)got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            st = qd_errorf(QD_ERR_DATA, "%s: external data file '%s' is too short for initializer '%s' (offset %lld, "
                           "%zu bytes)", r->path, p, tname, (long long)offset, want);
            goto done;
        }
        got += (size_t)k;
    }
    *out = buf;
    buf = NULL;
done:
    if (fd >= 0) close(fd);
    free(buf);
    free(rfile);
    free(rdir);
    free(p);
    return st;
}

/* TensorProto -> new constant value named `name`. */
static qd_status load_tensor(rd *r, const Onnx__TensorProto *t, const char *name, int *out_v) {
    int dt = t->has_data_type ? t->data_type : 0;
    int es = elem_size(dt);
    if (!es)
        return qd_errorf(QD_ERR_UNSUPPORTED, "%s: tensor '%s' has data type %d; supported: float32, float64, "
                         "int8/16/32/64, uint8/16/32/64, bool", r->path, name, dt);
    if (t->n_dims > QD_MAX_DIMS)
        return qd_errorf(QD_ERR_UNSUPPORTED, "%s: tensor '%s' has %zu dimensions (at most %d)", r->path, name,
                         t->n_dims, QD_MAX_DIMS);
    int64_t dims[QD_MAX_DIMS];
    int64_t n;
    for (size_t d = 0; d < t->n_dims; d++) {
        dims[d] = t->dims[d];
        if (dims[d] < 0)
            return qd_errorf(QD_ERR_DATA, "%s: tensor '%s' has invalid dimension %lld", r->path, name, (long long)dims[d]);
    }
    if (!qd_shape_numel_checked((int)t->n_dims, dims, MAX_CONST_NUMEL, &n))
        return qd_errorf(QD_ERR_UNSUPPORTED, "%s: tensor '%s' has more than %lld elements", r->path, name,
                         (long long)MAX_CONST_NUMEL);
    /* The data must be there before anything is allocated: a few bytes of file declaring a
     * 2^31-element tensor without its data cost nothing. */
    size_t want = (size_t)n * (size_t)es;
    const unsigned char *raw = NULL;
    unsigned char *ext = NULL;
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        QD_TRY(read_external(r, t, name, want, &ext));
        raw = ext;
    } else if (t->has_raw_data) {
        if (t->raw_data.len != want)
            return qd_errorf(QD_ERR_DATA, "%s: tensor '%s' has %zu bytes of raw data, its shape needs %zu", r->path,
                             name, t->raw_data.len, want);
        raw = t->raw_data.data;
    } else {
        size_t have;
        switch (dt) {
        case 1: have = t->n_float_data; break;
        case 11: have = t->n_double_data; break;
        case 7: have = t->n_int64_data; break;
        case 12: case 13: have = t->n_uint64_data; break;
        default: have = t->n_int32_data; break; /* int8/16/32, uint8/16, bool are stored as int32 */
        }
        if (have != (size_t)n)
            return qd_errorf(QD_ERR_DATA, "%s: tensor '%s' holds %zu values, its shape needs %lld", r->path, name, have,
                             (long long)n);
    }
    r->file_elems += n;
    int v = new_const(r, name, is_float_dt(dt) ? QD_DT_FLOAT : QD_DT_INT64, (int)t->n_dims, dims);
    if (v < 0) {
        free(ext);
        return oom(r);
    }
    qd_value *val = &r->g->values[v];
    if (raw) {
        /* ONNX raw_data is little-endian, as is every host we build for. */
        for (int64_t i = 0; i < n; i++) {
            const unsigned char *p = raw + (size_t)i * (size_t)es;
            switch (dt) {
            case 1: { float x; memcpy(&x, p, 4); val->fdata[i] = x; break; }
            case 11: { double x; memcpy(&x, p, 8); val->fdata[i] = (float)x; break; }
            case 2: case 9: val->idata[i] = p[0]; break;
            case 3: val->idata[i] = (int8_t)p[0]; break;
            case 4: { uint16_t x; memcpy(&x, p, 2); val->idata[i] = x; break; }
            case 5: { int16_t x; memcpy(&x, p, 2); val->idata[i] = x; break; }
            case 6: { int32_t x; memcpy(&x, p, 4); val->idata[i] = x; break; }
            case 12: { uint32_t x; memcpy(&x, p, 4); val->idata[i] = x; break; }
            case 7: case 13: { int64_t x; memcpy(&x, p, 8); val->idata[i] = x; break; }
            default: break;
            }
        }
        free(ext);
    } else {
        for (int64_t i = 0; i < n; i++) {
            switch (dt) {
            case 1: val->fdata[i] = t->float_data[i]; break;
            case 11: val->fdata[i] = (float)t->double_data[i]; break;
            case 7: val->idata[i] = t->int64_data[i]; break;
            case 12: case 13: val->idata[i] = (int64_t)t->uint64_data[i]; break;
            default: val->idata[i] = t->int32_data[i]; break;
            }
        }
    }
    *out_v = v;
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* constant folding of helper ops (all inputs constant)                                         */
/* ------------------------------------------------------------------------------------------ */
static double cget(const qd_value *v, int64_t i) { return v->fdata ? (double)v->fdata[i] : (double)v->idata[i]; }

/* Typed element copy; float -> int64 truncates toward zero like ONNX Cast and fails (returns 0)
 * for NaN, Inf and values outside the int64 range instead of invoking undefined behaviour. */
static int ccopy(qd_value *dst, int64_t di, const qd_value *src, int64_t si) {
    if (dst->fdata) {
        dst->fdata[di] = src->fdata ? src->fdata[si] : (float)src->idata[si];
        return 1;
    }
    if (src->idata) {
        dst->idata[di] = src->idata[si];
        return 1;
    }
    return qd_f64_to_i64_checked((double)src->fdata[si], &dst->idata[di]);
}

/* ONNX Cast 'to' -> the in-memory dtype: -1 for types the reader does not hold (strings, ...). */
static int cast_dtype(int64_t to) {
    switch (to) {
    case 1: case 10: case 11: case 16: return QD_DT_FLOAT;
    case 2: case 3: case 4: case 5: case 6: case 7: case 9: case 12: case 13: return QD_DT_INT64;
    default: return -1;
    }
}

static void unravel(int64_t i, int ndim, const int64_t *dims, int64_t *idx) {
    for (int d = ndim - 1; d >= 0; d--) {
        int64_t e = dims[d] > 0 ? dims[d] : 1;
        idx[d] = i % e;
        i /= e;
    }
}

/* Row-major strides of a shape whose element count is known to be <= MAX_CONST_NUMEL. */
static void strides_of(int ndim, const int64_t *dims, int64_t *st) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        st[d] = s;
        s *= dims[d] > 0 ? dims[d] : 1;
    }
}

/* Number of elements ONNX Slice takes from [b, e) (already clamped) with step s != 0, without
 * overflow for any step (INT64_MAX, INT64_MIN included). */
static int64_t slice_len(int64_t b, int64_t e, int64_t s) {
    uint64_t mag = s > 0 ? (uint64_t)s : (uint64_t)0 - (uint64_t)s;
    if (s > 0) return e > b ? (int64_t)((uint64_t)(e - b - 1) / mag + 1) : 0;
    return b > e ? (int64_t)((uint64_t)(b - e - 1) / mag + 1) : 0;
}

/* Clamps ONNX Slice starts/ends for a dimension of extent dim >= 0 (both may be any int64), as
 * the ONNX spec and ONNX Runtime do: start in [0, dim] ([0, dim-1] for negative steps), end in
 * [0, dim] ([-1, dim-1]). Negative values count from the back; b + dim is only formed when it
 * cannot overflow. */
static void slice_clamp(int64_t dim, int64_t s, int64_t *pb, int64_t *pe) {
    int64_t b = *pb, e = *pe;
    if (b < 0) b = b < -dim ? -1 : b + dim;
    if (e < 0) e = e < -dim ? -1 : e + dim;
    if (s > 0) {
        b = b < 0 ? 0 : (b > dim ? dim : b);
        e = e < 0 ? 0 : (e > dim ? dim : e);
    } else {
        b = b < 0 ? 0 : b;
        b = b > dim - 1 ? dim - 1 : b; /* an empty dimension: -1, nothing to take */
        e = e < -1 ? -1 : (e > dim - 1 ? dim - 1 : e);
    }
    *pb = b;
    *pe = e;
}

/* Normalises an axis in [-nd, nd) (or [-nd, nd] when allow_end) to >= 0; -1 when out of range. */
static int axis_norm(int64_t a, int nd, int allow_end) {
    int64_t hi = allow_end ? nd : nd - 1;
    if (a < -(int64_t)nd || a > hi) return -1;
    return (int)(a < 0 ? a + nd : a);
}

static int sym_kind(const rd *r, int v) { return v >= 0 && v < r->nsym ? r->symk[v] : SYM_NONE; }
static unsigned sym_mask(const rd *r, int v) { return v >= 0 && v < r->nsym ? r->symm[v] : 0u; }

static qd_status sym_set(rd *r, int v, int kind, unsigned mask) {
    if (v >= r->nsym) {
        int n = r->g->nvalues > v + 1 ? r->g->nvalues : v + 1;
        unsigned char *k = realloc(r->symk, (size_t)n), *m = realloc(r->symm, (size_t)n);
        if (k) r->symk = k;
        if (m) r->symm = m;
        if (!k || !m) return oom(r);
        memset(r->symk + r->nsym, 0, (size_t)(n - r->nsym));
        memset(r->symm + r->nsym, 0, (size_t)(n - r->nsym));
        r->nsym = n;
    }
    r->symk[v] = (unsigned char)kind;
    r->symm[v] = (unsigned char)mask;
    return QD_OK;
}

static qd_status fold_budget(rd *r, const char *nm, const char *op, int ndim, const int64_t *dims) {
    int64_t n;
    if (ndim < 0 || ndim > QD_MAX_DIMS || !qd_shape_numel_checked(ndim, dims, MAX_CONST_NUMEL, &n))
        return QD_OK; /* new_const reports the bad shape */
    int64_t budget = FOLD_BUDGET_BASE + 2 * r->file_elems;
    if (r->fold_elems + n > budget)
        return qd_errorf(QD_ERR_DATA, "%s: node '%s' (%s): constant folding would compute %lld more elements, over its "
                         "budget of %lld (2^24 + twice the model's stored constants)", r->path, nm, op, (long long)n,
                         (long long)budget);
    r->fold_elems += n;
    return QD_OK;
}

static const qd_value *in_value(const qd_graph *g, const int *in, int nin, int k) {
    return k < nin && in[k] >= 0 ? &g->values[in[k]] : NULL;
}

/* Evaluates node `n` (op `op`) on constant inputs `in[0..nin)`, creating the output constant.
 * Every size and int64 result is checked: a model whose constants overflow is a data error
 * naming the node, never undefined behaviour. */
static qd_status fold_plain(rd *r, const Onnx__NodeProto *n, const char *op, const int *in, int nin, int *out_v) {
    qd_graph *g = r->g;
    const char *oname = S(n->output[0]);
    const char *nm = node_label(n);
    const int nin_ = nin;
#define IN(k) in_value(g, in, nin_, (k))
#define BAD(...) qd_errorf(QD_ERR_DATA, __VA_ARGS__)
#define NEWC(dt, nd_, dims_)                                                  \
    do {                                                                      \
        QD_TRY(fold_budget(r, nm, op, (nd_), (dims_)));                       \
        v = new_const(r, oname, (dt), (nd_), (dims_));                        \
        if (v < 0) return const_fail(r, v, nm, op, (nd_), (dims_));           \
    } while (0)
#define NOT_INT(i) BAD("%s: node '%s' (%s): element %lld is not a finite value in the int64 range", r->path, nm, op, \
                       (long long)(i))
    const qd_value *x = IN(0);
    int v = -1;
    if (strcmp(op, "Identity") == 0 || strcmp(op, "Dropout") == 0 || strcmp(op, "Cast") == 0) {
        if (!x) return BAD("%s: node '%s' (%s) has no input", r->path, nm, op);
        int dt = x->dtype;
        if (strcmp(op, "Cast") == 0) {
            int64_t to = attr_i(n, "to", 1);
            dt = cast_dtype(to);
            if (dt < 0) return QD_ERR_UNSUPPORTED;
        }
        int64_t dims[QD_MAX_DIMS];
        int nd = x->ndim;
        memcpy(dims, x->dims, sizeof dims);
        NEWC(dt, nd, dims);
        x = IN(0); /* values may have moved */
        int64_t cnt = qd_value_numel(x);
        for (int64_t i = 0; i < cnt; i++)
            if (!ccopy(&g->values[v], i, x, i)) return NOT_INT(i);
    } else if (strcmp(op, "Shape") == 0) {
        if (!x) return BAD("%s: node '%s' (Shape) has no input", r->path, nm);
        int64_t d1 = x->ndim;
        NEWC(QD_DT_INT64, 1, &d1);
        x = IN(0);
        for (int d = 0; d < x->ndim; d++) g->values[v].idata[d] = x->dims[d];
    } else if (strcmp(op, "ConstantOfShape") == 0) {
        if (!x || !x->idata || x->ndim > 1 || qd_value_numel(x) > QD_MAX_DIMS)
            return BAD("%s: node '%s' (ConstantOfShape): bad shape input", r->path, nm);
        int64_t dims[QD_MAX_DIMS];
        int nd = (int)qd_value_numel(x);
        for (int d = 0; d < nd; d++) dims[d] = x->idata[d];
        const Onnx__AttributeProto *a = find_attr(n, "value");
        int fill_v = -1;
        if (a && a->t) QD_TRY(load_tensor(r, a->t, "", &fill_v));
        if (fill_v >= 0 && qd_value_numel(&g->values[fill_v]) != 1)
            return BAD("%s: node '%s' (ConstantOfShape): value must hold one element", r->path, nm);
        int dt = fill_v >= 0 ? g->values[fill_v].dtype : QD_DT_FLOAT;
        NEWC(dt, nd, dims);
        int64_t cnt = qd_value_numel(&g->values[v]);
        if (fill_v >= 0)
            for (int64_t i = 0; i < cnt; i++) (void)ccopy(&g->values[v], i, &g->values[fill_v], 0); /* same dtype */
    } else if (strcmp(op, "Concat") == 0) {
        if (!x) return BAD("%s: node '%s' (Concat) has no input", r->path, nm);
        int nd = x->ndim;
        int axis = axis_norm(attr_i(n, "axis", 0), nd, 0);
        if (axis < 0) return BAD("%s: node '%s' (Concat): axis out of range", r->path, nm);
        int64_t dims[QD_MAX_DIMS];
        memcpy(dims, x->dims, sizeof dims);
        dims[axis] = 0;
        for (int k = 0; k < nin; k++) {
            const qd_value *a = IN(k);
            if (!a || a->ndim != nd) return BAD("%s: node '%s' (Concat): inputs of different rank", r->path, nm);
            for (int d = 0; d < nd; d++)
                if (d != axis && a->dims[d] != x->dims[d])
                    return BAD("%s: node '%s' (Concat): input shapes differ", r->path, nm);
            dims[axis] += a->dims[axis]; /* each <= MAX_CONST_NUMEL, at most 16 inputs: no overflow */
        }
        NEWC(x->dtype, nd, dims);
        int64_t outer = 1, inner = 1;
        for (int d = 0; d < axis; d++) outer *= dims[d];
        for (int d = axis + 1; d < nd; d++) inner *= dims[d];
        int64_t pos = 0;
        for (int64_t o = 0; o < outer; o++)
            for (int k = 0; k < nin; k++) {
                const qd_value *a = IN(k);
                int64_t blk = a->dims[axis] * inner;
                for (int64_t e = 0; e < blk; e++)
                    if (!ccopy(&g->values[v], pos++, a, o * blk + e)) return NOT_INT(pos - 1);
            }
    } else if (strcmp(op, "Reshape") == 0 || strcmp(op, "Unsqueeze") == 0 || strcmp(op, "Squeeze") == 0 ||
               strcmp(op, "Flatten") == 0) {
        if (!x) return BAD("%s: node '%s' (%s) has no input", r->path, nm, op);
        int64_t dims[QD_MAX_DIMS], numel = qd_value_numel(x);
        int nd = 0;
        if (op[0] == 'R') {
            const qd_value *s = IN(1);
            if (!s || !s->idata || qd_value_numel(s) > QD_MAX_DIMS)
                return BAD("%s: node '%s' (Reshape): bad shape input", r->path, nm);
            nd = (int)qd_value_numel(s);
            int neg = -1;
            int64_t known = 1;
            for (int d = 0; d < nd; d++) {
                dims[d] = s->idata[d];
                if (dims[d] == 0 && d < x->ndim) dims[d] = x->dims[d];
                if (dims[d] == -1) {
                    if (neg >= 0) return BAD("%s: node '%s' (Reshape): two -1 dims", r->path, nm);
                    neg = d;
                } else if (dims[d] < 0) {
                    return BAD("%s: node '%s' (Reshape): bad target dim %lld", r->path, nm, (long long)dims[d]);
                } else if (!qd_mul_i64_checked(known, dims[d], &known) || known > MAX_CONST_NUMEL) {
                    return BAD("%s: node '%s' (Reshape): target shape has more than %lld elements", r->path, nm,
                               (long long)MAX_CONST_NUMEL);
                }
            }
            if (neg >= 0) dims[neg] = known ? numel / known : 0;
        } else if (op[0] == 'F') {
            int axis = axis_norm(attr_i(n, "axis", 1), x->ndim, 1);
            if (axis < 0) return BAD("%s: node '%s' (Flatten): axis out of range", r->path, nm);
            int64_t a = 1;
            for (int d = 0; d < axis; d++) a *= x->dims[d];
            dims[0] = a;
            dims[1] = a ? numel / a : 0;
            nd = 2;
        } else {
            int64_t axes[QD_MAX_DIMS];
            int na = attr_ints(n, "axes", axes, QD_MAX_DIMS);
            if (na == -2) return BAD("%s: node '%s' (%s): too many axes", r->path, nm, op);
            const qd_value *ax = IN(1);
            if (na < 0 && ax) {
                if (!ax->idata || qd_value_numel(ax) > QD_MAX_DIMS) return BAD("%s: node '%s': bad axes", r->path, nm);
                na = (int)qd_value_numel(ax);
                for (int k = 0; k < na; k++) axes[k] = ax->idata[k];
            }
            if (op[0] == 'U') {
                if (na < 0) return BAD("%s: node '%s' (Unsqueeze): no axes", r->path, nm);
                nd = x->ndim + na;
                if (nd > QD_MAX_DIMS) return BAD("%s: node '%s' (Unsqueeze): too many dims", r->path, nm);
                unsigned char ins[QD_MAX_DIMS] = {0};
                for (int k = 0; k < na; k++) {
                    int a = axis_norm(axes[k], nd, 0);
                    if (a < 0 || ins[a]) return BAD("%s: node '%s' (Unsqueeze): axis out of range or repeated", r->path, nm);
                    ins[a] = 1;
                }
                for (int d = 0, s = 0; d < nd; d++) dims[d] = ins[d] ? 1 : x->dims[s++];
            } else {
                unsigned char drop[QD_MAX_DIMS] = {0};
                for (int k = 0; k < na; k++) {
                    int a = axis_norm(axes[k], x->ndim, 0);
                    if (a < 0 || x->dims[a] != 1)
                        return BAD("%s: node '%s' (Squeeze): axis %lld out of range or not of size 1", r->path, nm,
                                   (long long)axes[k]);
                    drop[a] = 1;
                }
                for (int d = 0; d < x->ndim; d++)
                    if (!(na < 0 ? x->dims[d] == 1 : drop[d])) dims[nd++] = x->dims[d];
            }
        }
        int64_t check;
        if (!qd_shape_numel_checked(nd, dims, MAX_CONST_NUMEL, &check) || check != numel)
            return BAD("%s: node '%s' (%s): element count changes", r->path, nm, op);
        NEWC(x->dtype, nd, dims);
        x = IN(0);
        for (int64_t i = 0; i < numel; i++) (void)ccopy(&g->values[v], i, x, i); /* same dtype */
    } else if (strcmp(op, "Transpose") == 0) {
        if (!x) return BAD("%s: node '%s' (Transpose) has no input", r->path, nm);
        int64_t perm[QD_MAX_DIMS], dims[QD_MAX_DIMS], st[QD_MAX_DIMS], idx[QD_MAX_DIMS];
        int np = attr_ints(n, "perm", perm, QD_MAX_DIMS);
        if (np == -2) return BAD("%s: node '%s' (Transpose): perm too long", r->path, nm);
        if (np < 0) {
            np = x->ndim;
            for (int d = 0; d < np; d++) perm[d] = np - 1 - d;
        }
        if (np != x->ndim) return BAD("%s: node '%s' (Transpose): perm length mismatch", r->path, nm);
        unsigned char seen[QD_MAX_DIMS] = {0};
        for (int d = 0; d < np; d++) {
            if (perm[d] < 0 || perm[d] >= np || seen[perm[d]])
                return BAD("%s: node '%s' (Transpose): perm is not a permutation", r->path, nm);
            seen[perm[d]] = 1;
            dims[d] = x->dims[perm[d]];
        }
        NEWC(x->dtype, np, dims);
        x = IN(0);
        strides_of(x->ndim, x->dims, st);
        int64_t cnt = qd_value_numel(x);
        for (int64_t i = 0; i < cnt; i++) {
            unravel(i, np, dims, idx);
            int64_t s = 0;
            for (int d = 0; d < np; d++) s += idx[d] * st[perm[d]];
            (void)ccopy(&g->values[v], i, x, s); /* same dtype */
        }
    } else if (strcmp(op, "Slice") == 0) {
        if (!x) return BAD("%s: node '%s' (Slice) has no input", r->path, nm);
        int nd = x->ndim;
        int64_t start[QD_MAX_DIMS], step[QD_MAX_DIMS], dims[QD_MAX_DIMS];
        for (int d = 0; d < nd; d++) { start[d] = 0; step[d] = 1; dims[d] = x->dims[d]; }
        const qd_value *sv = IN(1), *ev = IN(2), *av = IN(3), *pv = IN(4);
        if (!sv || !ev || !sv->idata || !ev->idata) return BAD("%s: node '%s' (Slice): bad starts/ends", r->path, nm);
        int64_t k = qd_value_numel(sv);
        if (qd_value_numel(ev) != k || (av && (!av->idata || qd_value_numel(av) != k)) ||
            (pv && (!pv->idata || qd_value_numel(pv) != k)) || k > nd)
            return BAD("%s: node '%s' (Slice): starts/ends/axes/steps of different lengths", r->path, nm);
        unsigned char seen[QD_MAX_DIMS] = {0};
        for (int64_t j = 0; j < k; j++) {
            int a = axis_norm(av ? av->idata[j] : j, nd, 0);
            if (a < 0 || seen[a]) return BAD("%s: node '%s' (Slice): axis out of range or repeated", r->path, nm);
            seen[a] = 1;
            int64_t s = pv ? pv->idata[j] : 1, dim = x->dims[a];
            if (s == 0) return BAD("%s: node '%s' (Slice): step 0", r->path, nm);
            int64_t b = sv->idata[j], e = ev->idata[j];
            slice_clamp(dim, s, &b, &e);
            dims[a] = slice_len(b, e, s);
            start[a] = b;
            step[a] = s;
        }
        NEWC(x->dtype, nd, dims);
        x = IN(0);
        int64_t st[QD_MAX_DIMS], idx[QD_MAX_DIMS];
        strides_of(nd, x->dims, st);
        int64_t cnt = qd_value_numel(&g->values[v]);
        for (int64_t i = 0; i < cnt; i++) {
            unravel(i, nd, dims, idx);
            int64_t s = 0;
            /* start + idx * step stays inside [0, dim): idx < len, so |idx * step| < dim */
            for (int d = 0; d < nd; d++) s += (start[d] + idx[d] * step[d]) * st[d];
            (void)ccopy(&g->values[v], i, x, s); /* same dtype */
        }
    } else if (strcmp(op, "Gather") == 0) {
        const qd_value *ix = IN(1);
        if (!x || !ix || !ix->idata) return BAD("%s: node '%s' (Gather): bad inputs", r->path, nm);
        int axis = axis_norm(attr_i(n, "axis", 0), x->ndim, 0);
        if (axis < 0 || x->ndim - 1 + ix->ndim > QD_MAX_DIMS)
            return BAD("%s: node '%s' (Gather): axis out of range", r->path, nm);
        int64_t dims[QD_MAX_DIMS];
        int nd = 0;
        for (int d = 0; d < axis; d++) dims[nd++] = x->dims[d];
        for (int d = 0; d < ix->ndim; d++) dims[nd++] = ix->dims[d];
        for (int d = axis + 1; d < x->ndim; d++) dims[nd++] = x->dims[d];
        NEWC(x->dtype, nd, dims);
        x = IN(0);
        ix = IN(1);
        int64_t outer = 1, inner = 1, ni = qd_value_numel(ix), dim = x->dims[axis];
        for (int d = 0; d < axis; d++) outer *= x->dims[d];
        for (int d = axis + 1; d < x->ndim; d++) inner *= x->dims[d];
        int64_t pos = 0;
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < ni; j++) {
                int64_t t = ix->idata[j];
                if (t < -dim || t >= dim) return BAD("%s: node '%s' (Gather): index out of range", r->path, nm);
                if (t < 0) t += dim;
                for (int64_t e = 0; e < inner; e++) (void)ccopy(&g->values[v], pos++, x, (o * dim + t) * inner + e);
            }
    } else if (strcmp(op, "Add") == 0 || strcmp(op, "Sub") == 0 || strcmp(op, "Mul") == 0 ||
               strcmp(op, "Div") == 0) {
        const qd_value *y = IN(1);
        if (!x || !y) return BAD("%s: node '%s' (%s): needs two inputs", r->path, nm, op);
        int nd = x->ndim > y->ndim ? x->ndim : y->ndim;
        int64_t dims[QD_MAX_DIMS], xd[QD_MAX_DIMS], yd[QD_MAX_DIMS];
        for (int d = 0; d < nd; d++) {
            int ox = d - (nd - x->ndim), oy = d - (nd - y->ndim);
            xd[d] = ox >= 0 ? x->dims[ox] : 1;
            yd[d] = oy >= 0 ? y->dims[oy] : 1;
            if (xd[d] != yd[d] && xd[d] != 1 && yd[d] != 1)
                return BAD("%s: node '%s' (%s): shapes do not broadcast", r->path, nm, op);
            dims[d] = xd[d] == 1 ? yd[d] : xd[d];
        }
        int dt = (x->dtype == QD_DT_FLOAT || y->dtype == QD_DT_FLOAT) ? QD_DT_FLOAT : QD_DT_INT64;
        NEWC(dt, nd, dims);
        x = IN(0);
        y = IN(1);
        int64_t xs[QD_MAX_DIMS], ys[QD_MAX_DIMS], idx[QD_MAX_DIMS];
        strides_of(nd, xd, xs);
        strides_of(nd, yd, ys);
        int64_t cnt = qd_value_numel(&g->values[v]);
        for (int64_t i = 0; i < cnt; i++) {
            unravel(i, nd, dims, idx);
            int64_t a = 0, b = 0;
            for (int d = 0; d < nd; d++) {
                if (xd[d] > 1) a += idx[d] * xs[d];
                if (yd[d] > 1) b += idx[d] * ys[d];
            }
            qd_value *o = &g->values[v];
            if (dt == QD_DT_FLOAT) {
                float p = (float)cget(x, a), q = (float)cget(y, b);
                o->fdata[i] = op[0] == 'A' ? p + q : op[0] == 'S' ? p - q : op[0] == 'M' ? p * q : p / q;
            } else {
                int64_t p = x->idata[a], q = y->idata[b], res = 0;
                int ok = op[0] == 'A' ? qd_add_i64_checked(p, q, &res)
                       : op[0] == 'S' ? qd_sub_i64_checked(p, q, &res)
                       : op[0] == 'M' ? qd_mul_i64_checked(p, q, &res)
                                      : qd_div_i64_checked(p, q, &res);
                if (!ok)
                    return BAD("%s: node '%s' (%s): int64 %s of %lld and %lld at element %lld", r->path, nm, op,
                               op[0] == 'D' && q == 0 ? "division by zero" : "overflow", (long long)p, (long long)q,
                               (long long)i);
                o->idata[i] = res;
            }
        }
    } else {
        return QD_ERR_UNSUPPORTED; /* caller reports */
    }
#undef IN
#undef BAD
#undef NEWC
#undef NOT_INT
    *out_v = v;
    return QD_OK;
}

/* Stands for the batch while a symbolic shape vector is folded: data-movement folds (Gather,
 * Slice, Concat, Unsqueeze, ...) carry it to wherever the batch lands in their output, which
 * gives the output's mask; no real shape value comes near it. */
#define BATCH_SENTINEL (INT64_MIN + 0x5eed)

/* Folding when an input carries the batch size as a symbol. A SYM_MASK vector (Shape of an
 * activation with static non-batch dims, and what is derived from it) folds as a plain int64
 * constant with the batch elements followed through data movement; arithmetic or a
 * ConstantOfShape on a vector holding the batch is data-dependent and refused naming the node.
 * A SYM_SHAPE value (Shape of an activation whose other dims are unknown here) only allows
 * Gather of element 0, then the same data movement. */
static qd_status fold_node(rd *r, const Onnx__NodeProto *n, const char *op, const int *in, int nin, int *out_v) {
    int anysym = 0, anyshape = 0;
    for (int k = 0; k < nin; k++) {
        anysym |= sym_kind(r, in[k]) != SYM_NONE;
        anyshape |= sym_kind(r, in[k]) == SYM_SHAPE;
    }
    if (!anysym) return fold_plain(r, n, op, in, nin, out_v);
    qd_graph *g = r->g;
    const char *nm = node_label(n);
#define SYMFAIL(why) qd_errorf(QD_ERR_UNSUPPORTED, "%s: node '%s' (%s): %s (the batch size may only be moved " \
                               "into a Reshape target or Resize sizes, not computed with)", r->path, nm, op, why)
    int x = in[0];
    if (strcmp(op, "Shape") == 0 && sym_kind(r, x) == SYM_MASK) { /* the shape of a shape vector is static */
        QD_TRY(fold_plain(r, n, op, in, nin, out_v));
        return sym_set(r, *out_v, SYM_NONE, 0u);
    }
    for (int k = 1; k < nin; k++)
        if (sym_kind(r, in[k]) != SYM_NONE && strcmp(op, "Concat") != 0) return SYMFAIL("computes with the batch size");
    if (!anyshape) {
        int moves = strcmp(op, "Gather") == 0 || strcmp(op, "Slice") == 0 || strcmp(op, "Concat") == 0 ||
                    strcmp(op, "Unsqueeze") == 0 || strcmp(op, "Squeeze") == 0 || strcmp(op, "Identity") == 0 ||
                    strcmp(op, "Dropout") == 0 || strcmp(op, "Reshape") == 0 || strcmp(op, "Flatten") == 0 ||
                    (strcmp(op, "Cast") == 0 && cast_dtype(attr_i(n, "to", 1)) == QD_DT_INT64);
        if (strcmp(op, "ConstantOfShape") == 0) return SYMFAIL("builds a tensor sized by the batch size");
        if (!moves) return SYMFAIL("computes with the batch size");
        for (int k = 0; k < nin; k++)
            if (sym_kind(r, in[k]) == SYM_MASK)
                for (int e = 0; e < 8; e++)
                    if (sym_mask(r, in[k]) >> e & 1u) g->values[in[k]].idata[e] = BATCH_SENTINEL;
        qd_status st = fold_plain(r, n, op, in, nin, out_v);
        for (int k = 0; k < nin; k++) /* the inputs hold 0 at the batch again (Reshape's "copy") */
            if (sym_kind(r, in[k]) == SYM_MASK)
                for (int e = 0; e < 8; e++)
                    if (sym_mask(r, in[k]) >> e & 1u) g->values[in[k]].idata[e] = 0;
        QD_TRY(st);
        qd_value *o = &g->values[*out_v];
        unsigned mask = 0;
        int64_t cnt = qd_value_numel(o);
        for (int64_t i = 0; o->idata && i < cnt; i++)
            if (o->idata[i] == BATCH_SENTINEL) {
                if (i >= 8) return SYMFAIL("builds a shape of more than 8 dimensions");
                mask |= 1u << i;
                o->idata[i] = 0;
            }
        return sym_set(r, *out_v, mask ? SYM_MASK : SYM_NONE, mask);
    }
    if (strcmp(op, "Gather") == 0) {
        const qd_value *ix = nin > 1 && in[1] >= 0 ? &g->values[in[1]] : NULL;
        if (attr_i(n, "axis", 0) != 0 || !ix || !ix->idata || ix->ndim > 1 || qd_value_numel(ix) > QD_MAX_DIMS ||
            qd_value_numel(ix) < 1)
            return SYMFAIL("indexes a shape in an unsupported way");
        int64_t ni = qd_value_numel(ix);
        unsigned mask = 0;
        for (int64_t j = 0; j < ni; j++) {
            if (ix->idata[j] != 0)
                return SYMFAIL("reads a non-batch dimension of an activation whose shape is not static here");
            mask |= 1u << j;
        }
        /* the result holds zeros where the batch is: build it directly (the Shape value has no
         * real extent to gather from) */
        int64_t dims[1] = {ni};
        int v = new_const(r, S(n->output[0]), QD_DT_INT64, ix->ndim, dims);
        if (v < 0) return const_fail(r, v, nm, op, ix->ndim, dims);
        QD_TRY(sym_set(r, v, SYM_MASK, mask));
        *out_v = v;
        return QD_OK;
    }
    if (sym_kind(r, x) == SYM_SHAPE)
        return SYMFAIL("uses the whole shape of an activation whose shape is not static here");
    return SYMFAIL("concatenates shapes in an unsupported way");
#undef SYMFAIL
}

/* Constant node -> constant value. */
static qd_status load_constant(rd *r, const Onnx__NodeProto *n, int *out_v) {
    const char *oname = n->n_output > 0 ? S(n->output[0]) : "";
    const Onnx__AttributeProto *a;
    if ((a = find_attr(n, "value")) && a->t) return load_tensor(r, a->t, oname, out_v);
    int64_t one = 1;
    int v = -1;
    if ((a = find_attr(n, "value_float"))) {
        v = new_const(r, oname, QD_DT_FLOAT, 0, NULL);
        if (v >= 0) r->g->values[v].fdata[0] = a->f;
    } else if ((a = find_attr(n, "value_int"))) {
        v = new_const(r, oname, QD_DT_INT64, 0, NULL);
        if (v >= 0) r->g->values[v].idata[0] = a->i;
    } else if ((a = find_attr(n, "value_floats"))) {
        one = (int64_t)a->n_floats;
        r->file_elems += one;
        v = new_const(r, oname, QD_DT_FLOAT, 1, &one);
        for (size_t i = 0; v >= 0 && i < a->n_floats; i++) r->g->values[v].fdata[i] = a->floats[i];
    } else if ((a = find_attr(n, "value_ints"))) {
        one = (int64_t)a->n_ints;
        r->file_elems += one;
        v = new_const(r, oname, QD_DT_INT64, 1, &one);
        for (size_t i = 0; v >= 0 && i < a->n_ints; i++) r->g->values[v].idata[i] = a->ints[i];
    } else {
        return qd_errorf(QD_ERR_UNSUPPORTED, "%s: Constant node '%s' has no value/value_float(s)/value_int(s) "
                         "attribute (sparse and string constants are not supported)", r->path, node_label(n));
    }
    if (v < 0) return const_fail(r, v, node_label(n), "Constant", 1, &one);
    *out_v = v;
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* compute nodes                                                                               */
/* ------------------------------------------------------------------------------------------ */
static int map_op(const char *t, qd_op *op) {
    /* exporters' no-ops in inference graphs: Dropout (training-mode exports) and Cast to float
     * (checked where the node is read) pass their input through */
    if (strcmp(t, "Dropout") == 0 || strcmp(t, "Cast") == 0) {
        *op = QD_OP_IDENTITY;
        return 1;
    }
    if (strcmp(t, "Upsample") == 0) { /* opset 7..9: Resize with asymmetric coordinates */
        *op = QD_OP_RESIZE;
        return 1;
    }
    qd_op o = qd_op_from_onnx(t);
    if (o == QD_OP_COUNT || o == QD_OP_CONSTANT) return 0; /* Constant is read as a constant above */
    *op = o;
    return 1;
}

static qd_status unsupported(const rd *r, const Onnx__NodeProto *n, const char *why) {
    return qd_errorf(QD_ERR_UNSUPPORTED, "%s: node '%s': op %s%s%s (opset %d) is not supported%s%s; supported ops: %s",
                     r->path, node_label(n), S(n->domain)[0] ? S(n->domain) : "", S(n->domain)[0] ? "::" : "",
                     S(n->op_type), r->opset, why ? ": " : "", why ? why : "", k_supported);
}

/* Copies a 2- or 4-element int64 attribute into ints, rejecting values outside [lo, INT32_MAX]
 * (a cast would read 2^32 + 1 as 1). Absent: leaves out untouched. */
static qd_status spatial_ints(const rd *r, const Onnx__NodeProto *n, const char *name, int want, int64_t lo,
                              int *out) {
    int64_t t[8];
    int k = attr_ints(n, name, t, 8);
    if (k == -1) return QD_OK;
    if (k != want) return unsupported(r, n, want == 4 ? "only 2-D pads" : "only 2-D kernels/strides/dilations");
    for (int i = 0; i < k; i++)
        if (t[i] < lo || t[i] > INT32_MAX)
            return qd_errorf(QD_ERR_DATA, "%s: node '%s' (%s): %s[%d] is %lld (expected %lld..%d)", r->path,
                             node_label(n), S(n->op_type), name, i, (long long)t[i], (long long)lo, INT32_MAX);
    for (int i = 0; i < k; i++) out[i] = (int)t[i];
    return QD_OK;
}

/* 2-D spatial attributes of Conv / pools. auto_pad is kept as a mode: shape inference resolves
 * it to explicit pads from the static spatial shape (the export then writes explicit pads). */
static qd_status spatial_attrs(const rd *r, const Onnx__NodeProto *n, qd_attrs *a) {
    char ap[32];
    attr_str(n, "auto_pad", "NOTSET", ap, sizeof ap);
    if (strcmp(ap, "NOTSET") == 0) a->auto_pad = QD_AUTO_PAD_NOTSET;
    else if (strcmp(ap, "VALID") == 0) a->auto_pad = QD_AUTO_PAD_VALID;
    else if (strcmp(ap, "SAME_UPPER") == 0) a->auto_pad = QD_AUTO_PAD_SAME_UPPER;
    else if (strcmp(ap, "SAME_LOWER") == 0) a->auto_pad = QD_AUTO_PAD_SAME_LOWER;
    else return qd_errorf(QD_ERR_DATA, "%s: node '%s' (%s): unknown auto_pad value", r->path, node_label(n), S(n->op_type));
    QD_TRY(spatial_ints(r, n, "kernel_shape", 2, 1, a->kernel));
    QD_TRY(spatial_ints(r, n, "strides", 2, 1, a->stride));
    QD_TRY(spatial_ints(r, n, "dilations", 2, 1, a->dilation));
    /* ONNX order [h_begin, w_begin, h_end, w_end] == qd_attrs top, left, bottom, right */
    QD_TRY(spatial_ints(r, n, "pads", 4, 0, a->pads));
    if (a->auto_pad != QD_AUTO_PAD_NOTSET && (a->pads[0] || a->pads[1] || a->pads[2] || a->pads[3]))
        return qd_errorf(QD_ERR_DATA, "%s: node '%s' (%s): auto_pad %s together with non-zero pads", r->path,
                         node_label(n), S(n->op_type), ap);
    return QD_OK;
}

static const qd_value *const_input(const rd *r, const Onnx__NodeProto *n, size_t k) {
    if (k >= n->n_input || !S(n->input[k])[0]) return NULL;
    int v = qd_graph_find_value(r->g, n->input[k]);
    if (v < 0 || !r->g->values[v].is_const || sym_kind(r, v) != SYM_NONE) return NULL;
    return &r->g->values[v];
}

/* Resize (opset 10+) and Upsample (opset 7..9) -> qd_attrs. 2-D resizing of NCHW tensors:
 * constant scales (or sizes) that leave N and C alone; nearest or linear; the coordinate
 * transformations backbones and exporters use. Anything else is refused naming the attribute. */
static qd_status resize_attrs(rd *r, const Onnx__NodeProto *n, qd_attrs *a) {
    int upsample = strcmp(S(n->op_type), "Upsample") == 0;
    char buf[64];
    if (upsample && r->opset >= 10) return unsupported(r, n, "Upsample is deprecated from opset 10 (use Resize)");
    attr_str(n, "mode", "nearest", buf, sizeof buf);
    if (strcmp(buf, "nearest") == 0) a->resize_mode = QD_RESIZE_NEAREST;
    else if (strcmp(buf, "linear") == 0 || (upsample && strcmp(buf, "bilinear") == 0)) a->resize_mode = QD_RESIZE_LINEAR;
    else return unsupported(r, n, "attribute mode must be nearest or linear");
    /* before opset 11 there is no coordinate_transformation_mode: output x reads input x / scale */
    a->resize_coord = QD_RESIZE_ASYMMETRIC;
    a->resize_nearest = -1; /* ONNX Runtime's "simple" rounding, resolved per scale below */
    if (!upsample && r->opset >= 11) {
        attr_str(n, "coordinate_transformation_mode", "half_pixel", buf, sizeof buf);
        if (strcmp(buf, "half_pixel") == 0) a->resize_coord = QD_RESIZE_HALF_PIXEL;
        else if (strcmp(buf, "pytorch_half_pixel") == 0) a->resize_coord = QD_RESIZE_PYTORCH_HALF_PIXEL;
        else if (strcmp(buf, "align_corners") == 0) a->resize_coord = QD_RESIZE_ALIGN_CORNERS;
        else if (strcmp(buf, "asymmetric") == 0) a->resize_coord = QD_RESIZE_ASYMMETRIC;
        else {
            char why[256];
            snprintf(why, sizeof why, "attribute coordinate_transformation_mode=%s (supported: half_pixel, "
                     "pytorch_half_pixel, align_corners, asymmetric)", buf);
            return unsupported(r, n, why);
        }
        attr_str(n, "nearest_mode", "round_prefer_floor", buf, sizeof buf);
        if (strcmp(buf, "round_prefer_floor") == 0) a->resize_nearest = QD_RESIZE_ROUND_PREFER_FLOOR;
        else if (strcmp(buf, "round_prefer_ceil") == 0) a->resize_nearest = QD_RESIZE_ROUND_PREFER_CEIL;
        else if (strcmp(buf, "floor") == 0) a->resize_nearest = QD_RESIZE_FLOOR;
        else if (strcmp(buf, "ceil") == 0) a->resize_nearest = QD_RESIZE_CEIL;
        else return unsupported(r, n, "attribute nearest_mode must be round_prefer_floor, round_prefer_ceil, floor "
                                "or ceil");
        if (attr_i(n, "antialias", 0) != 0) return unsupported(r, n, "attribute antialias=1");
        attr_str(n, "keep_aspect_ratio_policy", "stretch", buf, sizeof buf);
        if (strcmp(buf, "stretch") != 0) return unsupported(r, n, "attribute keep_aspect_ratio_policy other than stretch");
    }
    /* scales (per dimension, or per listed axis from opset 18) or sizes */
    int64_t axes[QD_MAX_DIMS];
    int naxes = attr_ints(n, "axes", axes, QD_MAX_DIMS);
    if (naxes == -2 || naxes == 0) return unsupported(r, n, "attribute axes");
    float sc[QD_MAX_DIMS];
    int64_t sz[QD_MAX_DIMS];
    int nsc = -1, nsz = -1;
    if (upsample && r->opset < 9) {
        const Onnx__AttributeProto *as = find_attr(n, "scales");
        if (!as || as->n_floats > QD_MAX_DIMS) return unsupported(r, n, "attribute scales missing or too long");
        nsc = (int)as->n_floats;
        for (int i = 0; i < nsc; i++) sc[i] = as->floats[i];
    } else {
        size_t si = (upsample || r->opset < 11) ? 1 : 2; /* Resize-11+: X, roi, scales, sizes */
        const qd_value *cs = const_input(r, n, si), *cz = r->opset >= 11 && !upsample ? const_input(r, n, 3) : NULL;
        /* sizes built from the input's own shape (F.interpolate(x, size=...) with a dynamic batch):
         * element 0 is the batch symbol, which keeps the batch */
        int zbatch = 0;
        if (!cz && r->opset >= 11 && !upsample && n->n_input > 3 && S(n->input[3])[0]) {
            int zv = qd_graph_find_value(r->g, n->input[3]);
            if (zv >= 0 && r->g->values[zv].is_const && sym_kind(r, zv) == SYM_MASK && sym_mask(r, zv) == 1u) {
                cz = &r->g->values[zv];
                zbatch = 1;
            }
        }
        int has_s = si < n->n_input && S(n->input[si])[0], has_z = !upsample && r->opset >= 11 && n->n_input > 3 &&
                    S(n->input[3])[0];
        if ((has_s && !cs) || (has_z && !cz))
            return unsupported(r, n, "scales and sizes must be constant (computed from an activation's shape)");
        if (cs && qd_value_numel(cs) > 0) {
            if (!cs->fdata || qd_value_numel(cs) > QD_MAX_DIMS) return unsupported(r, n, "scales must be float");
            nsc = (int)qd_value_numel(cs);
            for (int i = 0; i < nsc; i++) sc[i] = cs->fdata[i];
        }
        if (cz && qd_value_numel(cz) > 0) {
            if (!cz->idata || qd_value_numel(cz) > QD_MAX_DIMS || nsc >= 0)
                return unsupported(r, n, "sizes must be int64 and given without scales");
            nsz = (int)qd_value_numel(cz);
            for (int i = 0; i < nsz; i++) sz[i] = cz->idata[i];
            if (zbatch) sz[0] = -1; /* shape inference: "the input's batch" */
        }
    }
    int cnt = nsc >= 0 ? nsc : nsz;
    if (cnt < 0) return qd_errorf(QD_ERR_DATA, "%s: node '%s' (%s): neither scales nor sizes given", r->path,
                                  node_label(n), S(n->op_type));
    /* the two spatial entries: the last two of a rank-4 list, or the listed axes 2, 3 (-2, -1) */
    int hw0;
    if (naxes > 0) {
        if (naxes != cnt || naxes != 2 || !((axes[0] == 2 || axes[0] == -2) && (axes[1] == 3 || axes[1] == -1)))
            return unsupported(r, n, "attribute axes other than [2, 3]");
        hw0 = 0;
    } else {
        if (cnt != 4) return unsupported(r, n, "only 2-D resizing of NCHW tensors (4 scales or sizes)");
        if (nsc >= 0 && (sc[0] != 1.0f || sc[1] != 1.0f))
            return unsupported(r, n, "scales other than 1 on the batch or channel dimension");
        hw0 = 2;
    }
    for (int i = 0; i < 2; i++) {
        if (nsc >= 0) {
            if (!(sc[hw0 + i] > 0.0f) || !isfinite(sc[hw0 + i]))
                return qd_errorf(QD_ERR_DATA, "%s: node '%s' (%s): scale %g must be positive and finite", r->path,
                                 node_label(n), S(n->op_type), (double)sc[hw0 + i]);
            a->resize_scale[i] = sc[hw0 + i];
        } else {
            if (sz[hw0 + i] < 1 || sz[hw0 + i] > INT32_MAX)
                return qd_errorf(QD_ERR_DATA, "%s: node '%s' (%s): size %lld out of range", r->path, node_label(n),
                                 S(n->op_type), (long long)sz[hw0 + i]);
            a->resize_size[i] = sz[hw0 + i];
        }
    }
    /* sizes over all four dims: N and C must be the input's; shape inference checks (nperm
     * carries them there, as for Pad) */
    if (nsz >= 0 && naxes < 0) {
        a->nperm = 2;
        a->perm[0] = sz[0];
        a->perm[1] = sz[1];
    }
    if (a->resize_nearest < 0) {
        /* ONNX Runtime's "simple": truncation when enlarging, ceil when shrinking (one rule for both axes) */
        int down0 = nsc >= 0 && a->resize_scale[0] < 1.0f, down1 = nsc >= 0 && a->resize_scale[1] < 1.0f;
        if (nsz >= 0) return unsupported(r, n, "sizes before opset 11");
        if (down0 != down1) return unsupported(r, n, "enlarging one axis and shrinking the other before opset 11");
        a->resize_nearest = down0 ? QD_RESIZE_CEIL : QD_RESIZE_FLOOR;
    }
    return QD_OK;
}

static qd_status node_attrs(rd *r, const Onnx__NodeProto *n, qd_op op, qd_attrs *a) {
    const char *nm = node_label(n);
    int64_t t[2 * QD_MAX_DIMS];
    int k;
    switch (op) {
    case QD_OP_CONV:
        QD_TRY(spatial_attrs(r, n, a));
        QD_TRY(attr_int(r, n, "group", 1, 1, INT32_MAX, &a->group));
        break;
    case QD_OP_MAXPOOL:
    case QD_OP_AVGPOOL:
        QD_TRY(spatial_attrs(r, n, a));
        if (a->kernel[0] <= 0 || a->kernel[1] <= 0) return unsupported(r, n, "kernel_shape missing");
        QD_TRY(attr_int(r, n, "ceil_mode", 0, 0, 1, &a->ceil_mode));
        QD_TRY(attr_int(r, n, "count_include_pad", 0, 0, 1, &a->count_include_pad));
        if (op == QD_OP_MAXPOOL && n->n_output > 1 && S(n->output[1])[0]) return unsupported(r, n, "Indices output");
        break;
    case QD_OP_GEMM:
        a->alpha = attr_f(n, "alpha", 1.0f);
        a->beta = attr_f(n, "beta", 1.0f);
        if (!isfinite(a->alpha) || !isfinite(a->beta))
            return qd_errorf(QD_ERR_DATA, "%s: node '%s' (Gemm): alpha/beta must be finite", r->path, nm);
        QD_TRY(attr_int(r, n, "transA", 0, 0, 1, &a->trans_a));
        QD_TRY(attr_int(r, n, "transB", 0, 0, 1, &a->trans_b));
        break;
    case QD_OP_BATCHNORM:
        a->epsilon = attr_f(n, "epsilon", 1e-5f);
        if (!(a->epsilon >= 0.0f) || !isfinite(a->epsilon))
            return qd_errorf(QD_ERR_DATA, "%s: node '%s' (BatchNormalization): epsilon %g must be finite and >= 0",
                             r->path, nm, (double)a->epsilon);
        /* a training-mode export normalises with batch statistics: not the network to quantize */
        if (attr_i(n, "training_mode", 0) != 0)
            return unsupported(r, n, "training_mode=1 (a training-mode export: export the model in eval mode)");
        for (size_t i = 1; i < n->n_output; i++)
            if (S(n->output[i])[0])
                return unsupported(r, n, "training outputs (running mean/var; a training-mode export: export the "
                                   "model in eval mode)");
        break;
    case QD_OP_CLIP:
        if (r->opset < 11) {
            a->clip_min = attr_f(n, "min", -INFINITY);
            a->clip_max = attr_f(n, "max", INFINITY);
        } else {
            for (size_t i = 1; i <= 2 && i < n->n_input; i++) {
                if (!S(n->input[i])[0]) continue;
                const qd_value *c = const_input(r, n, i);
                if (!c || qd_value_numel(c) != 1) return unsupported(r, n, "Clip bounds must be constant scalars");
                if (i == 1) a->clip_min = (float)cget(c, 0);
                else a->clip_max = (float)cget(c, 0);
            }
        }
        break;
    case QD_OP_HARDSIGMOID:
        a->alpha = attr_f(n, "alpha", 0.2f);
        a->beta = attr_f(n, "beta", 0.5f);
        if (!isfinite(a->alpha) || !isfinite(a->beta))
            return qd_errorf(QD_ERR_DATA, "%s: node '%s' (HardSigmoid): alpha %g / beta %g must be finite", r->path,
                             nm, (double)a->alpha, (double)a->beta);
        break;
    case QD_OP_RESIZE:
        QD_TRY(resize_attrs(r, n, a));
        break;
    case QD_OP_SQUEEZE: case QD_OP_UNSQUEEZE: /* on an activation: axes as attribute (< 13) or input */
        k = attr_ints(n, "axes", a->axes, QD_MAX_DIMS);
        if (k == -2) return unsupported(r, n, "more than 8 axes");
        if (k < 0 && n->n_input > 1 && S(n->input[1])[0]) {
            const qd_value *c = const_input(r, n, 1);
            if (!c || !c->idata || qd_value_numel(c) > QD_MAX_DIMS) return unsupported(r, n, "axes must be constant");
            k = (int)qd_value_numel(c);
            for (int i = 0; i < k; i++) a->axes[i] = c->idata[i];
        }
        if (k <= 0) return unsupported(r, n, "no axes on an activation (would squeeze a batch of 1)");
        a->naxes = k;
        break;
    case QD_OP_FLATTEN:
        QD_TRY(attr_int(r, n, "axis", 1, -QD_MAX_DIMS, QD_MAX_DIMS, &a->axis));
        break;
    case QD_OP_CONCAT:
        if (!find_attr(n, "axis")) return qd_errorf(QD_ERR_DATA, "%s: node '%s' (Concat) has no axis", r->path, nm);
        QD_TRY(attr_int(r, n, "axis", 1, -QD_MAX_DIMS, QD_MAX_DIMS - 1, &a->axis));
        break;
    case QD_OP_SOFTMAX:
        QD_TRY(attr_int(r, n, "axis", r->opset < 13 ? 1 : -1, -QD_MAX_DIMS, QD_MAX_DIMS - 1, &a->axis));
        break;
    case QD_OP_LAYERNORM: /* opset 17; stash_type (the statistics' precision) is ignored: always double */
        if (r->opset < 17) return unsupported(r, n, "LayerNormalization needs opset >= 17");
        QD_TRY(attr_int(r, n, "axis", -1, -QD_MAX_DIMS, QD_MAX_DIMS - 1, &a->axis));
        a->epsilon = attr_f(n, "epsilon", 1e-5f);
        if (!(a->epsilon >= 0.0f) || !isfinite(a->epsilon))
            return qd_errorf(QD_ERR_DATA, "%s: node '%s' (LayerNormalization): epsilon %g must be finite and >= 0",
                             r->path, nm, (double)a->epsilon);
        for (size_t i = 1; i < n->n_output; i++)
            if (S(n->output[i])[0]) return unsupported(r, n, "the Mean / InvStdDev outputs");
        break;
    case QD_OP_GELU: {
        if (r->opset < 20) return unsupported(r, n, "Gelu needs opset >= 20");
        char ap[32];
        attr_str(n, "approximate", "none", ap, sizeof ap);
        if (strcmp(ap, "tanh") == 0) return unsupported(r, n, "approximate=\"tanh\" (only the exact erf form)");
        if (strcmp(ap, "none") != 0)
            return qd_errorf(QD_ERR_DATA, "%s: node '%s' (Gelu): approximate \"%s\" is neither \"none\" nor \"tanh\"",
                             r->path, nm, ap);
        break;
    }
    case QD_OP_TRANSPOSE:
        k = attr_ints(n, "perm", a->perm, QD_MAX_DIMS);
        if (k == -2) return unsupported(r, n, "more than 8 dimensions");
        a->nperm = k > 0 ? k : 0;
        break;
    case QD_OP_REDUCEMEAN:
        QD_TRY(attr_int(r, n, "keepdims", 1, 0, 1, &a->keepdims));
        k = attr_ints(n, "axes", a->axes, QD_MAX_DIMS);
        if (k == -2) return unsupported(r, n, "more than 8 axes");
        if (k < 0 && n->n_input > 1 && S(n->input[1])[0]) { /* opset 18: axes as an input */
            const qd_value *c = const_input(r, n, 1);
            if (!c || !c->idata || qd_value_numel(c) > QD_MAX_DIMS) return unsupported(r, n, "axes must be constant");
            k = (int)qd_value_numel(c);
            for (int i = 0; i < k; i++) a->axes[i] = c->idata[i];
        }
        if (k <= 0 && attr_i(n, "noop_with_empty_axes", 0)) return unsupported(r, n, "noop_with_empty_axes");
        a->naxes = k > 0 ? k : 0; /* 0 = all axes, resolved by shape inference */
        break;
    case QD_OP_PAD: {
        char mode[32];
        attr_str(n, "mode", "constant", mode, sizeof mode);
        if (strcmp(mode, "constant") != 0) return unsupported(r, n, "only mode=constant");
        int np;
        if (r->opset < 11) {
            np = attr_ints(n, "pads", t, 2 * QD_MAX_DIMS);
            a->pad_value = attr_f(n, "value", 0.0f);
        } else {
            const qd_value *c = const_input(r, n, 1);
            if (!c || !c->idata || qd_value_numel(c) > 2 * QD_MAX_DIMS) return unsupported(r, n, "pads must be constant");
            np = (int)qd_value_numel(c);
            for (int i = 0; i < np; i++) t[i] = c->idata[i];
            const qd_value *cv = const_input(r, n, 2);
            if (n->n_input > 2 && S(n->input[2])[0] && !cv) return unsupported(r, n, "constant_value must be constant");
            if (cv && qd_value_numel(cv) >= 1) a->pad_value = (float)cget(cv, 0);
            if (n->n_input > 3 && S(n->input[3])[0]) return unsupported(r, n, "the axes input");
        }
        if (np < 0 || np % 2) return qd_errorf(QD_ERR_DATA, "%s: node '%s' (Pad): bad pads", r->path, nm);
        for (int d = 0; d < np / 2; d++) {
            a->pad_begin[d] = t[d];
            a->pad_end[d] = t[np / 2 + d];
            if (t[d] < 0 || t[np / 2 + d] < 0) return unsupported(r, n, "negative pads");
        }
        /* nperm (unused by Pad otherwise) carries the rank the pads describe until shape inference
         * checks it against the input and resets it. */
        a->nperm = np / 2;
        break;
    }
    default:
        break;
    }
    return QD_OK;
}

/* Inputs a compute node keeps: data inputs plus the constant inputs shape inference needs. */
static int kept_inputs(const rd *r, qd_op op, const Onnx__NodeProto *n) {
    int ni = (int)n->n_input;
    switch (op) {
    case QD_OP_CLIP: case QD_OP_PAD: case QD_OP_REDUCEMEAN: case QD_OP_IDENTITY: case QD_OP_RESIZE: case QD_OP_SQUEEZE:
    case QD_OP_UNSQUEEZE:
        return ni > 0 ? 1 : 0;
    case QD_OP_RESHAPE: return ni > 2 ? 2 : ni;
    case QD_OP_SLICE: return r->opset < 10 ? 1 : ni;
    default: return ni;
    }
}

/* Input k (value v) of a compute node may carry the batch symbol only where it means "the
 * input's batch": element 0 of a Reshape target (Reshape's "copy dimension 0", the element
 * holds 0; x.view(x.size(0), -1)) or element 0 of Resize sizes. Anywhere else it is refused. */
static qd_status check_batch_input(const rd *r, const Onnx__NodeProto *n, qd_op op, int k, int v) {
    if (sym_kind(r, v) == SYM_NONE) return QD_OK;
    int ok = op == QD_OP_RESHAPE && k == 1 && sym_kind(r, v) == SYM_MASK && (sym_mask(r, v) & ~1u) == 0 &&
             attr_i(n, "allowzero", 0) == 0;
    ok |= op == QD_OP_RESIZE && k == 3 && sym_kind(r, v) == SYM_MASK && sym_mask(r, v) == 1u;
    if (!ok)
        return unsupported(r, n, "the batch size (Shape of an activation) used other than as dimension 0 of a "
                           "Reshape target or of Resize sizes");
    return QD_OK;
}

static qd_status add_compute_node(rd *r, const Onnx__NodeProto *n, qd_op op) {
    qd_graph *g = r->g;
    const char *nm = node_label(n);
    if (n->n_output < 1) return qd_errorf(QD_ERR_DATA, "%s: node '%s' has no output", r->path, nm);
    /* before the attributes: "pads must be constant" would hide that they hold the batch size */
    for (size_t k = 0; k < n->n_input && k < 16; k++)
        if (S(n->input[k])[0]) QD_TRY(check_batch_input(r, n, op, (int)k, qd_graph_find_value(g, n->input[k])));
    if (op == QD_OP_IDENTITY && strcmp(S(n->op_type), "Cast") == 0 && cast_dtype(attr_i(n, "to", 1)) != QD_DT_FLOAT)
        return unsupported(r, n, "Cast of an activation to a non-float type");
    /* Dropout's optional mask output is not created: a node reading it fails as "never produced". */
    qd_attrs a;
    qd_attrs_defaults(&a);
    QD_TRY(node_attrs(r, n, op, &a));
    int nin = kept_inputs(r, op, n);
    int extra = (op == QD_OP_SLICE && r->opset < 10) ? 3 : 0; /* attribute form -> constant inputs */
    int nout = (op == QD_OP_BATCHNORM || op == QD_OP_MAXPOOL || op == QD_OP_IDENTITY || op == QD_OP_LAYERNORM)
                   ? 1 : (int)n->n_output;
    int64_t sl[3][QD_MAX_DIMS];
    int nsl[3] = {0, 0, 0};
    if (extra) {
        nsl[0] = attr_ints(n, "starts", sl[0], QD_MAX_DIMS);
        nsl[1] = attr_ints(n, "ends", sl[1], QD_MAX_DIMS);
        nsl[2] = attr_ints(n, "axes", sl[2], QD_MAX_DIMS);
        if (nsl[0] < 0 || nsl[1] != nsl[0]) return qd_errorf(QD_ERR_DATA, "%s: node '%s' (Slice): bad starts/ends", r->path, nm);
        if (nsl[2] < 0) {
            nsl[2] = nsl[0];
            for (int i = 0; i < nsl[0]; i++) sl[2][i] = i;
        }
    }
    int ins[16];
    if (nin + extra > 16) return unsupported(r, n, "more than 16 inputs");
    for (int k = 0; k < nin; k++) {
        const char *iname = S(n->input[k]);
        ins[k] = -1;
        if (!iname[0]) continue;
        ins[k] = qd_graph_find_value(g, iname);
        if (ins[k] < 0)
            return qd_errorf(QD_ERR_DATA, "%s: node '%s' reads '%s', which no node, initializer or graph input "
                             "produces (nodes out of order?)", r->path, nm, iname);
        QD_TRY(check_batch_input(r, n, op, k, ins[k]));
    }
    for (int e = 0; e < extra; e++) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s_%s", nm, e == 0 ? "starts" : e == 1 ? "ends" : "axes");
        int64_t len = nsl[e];
        int v = new_const(r, buf, QD_DT_INT64, 1, &len);
        if (v < 0) return oom(r);
        for (int i = 0; i < nsl[e]; i++) g->values[v].idata[i] = sl[e][i];
        ins[nin + e] = v;
    }
    int outs[16];
    if (nout > 16) return unsupported(r, n, "more than 16 outputs");
    for (int k = 0; k < nout; k++) {
        const char *oname = S(n->output[k]);
        if (!oname[0]) { outs[k] = -1; continue; }
        if (qd_graph_find_value(g, oname) >= 0)
            return qd_errorf(QD_ERR_DATA, "%s: node '%s' writes '%s', which is already defined", r->path, nm, oname);
        outs[k] = qd_graph_add_value(g, oname);
        if (outs[k] < 0) return oom(r);
    }
    int id = qd_graph_add_node(g, nm, op, nin + extra, nout);
    if (id < 0) return oom(r);
    qd_node *nd = &g->nodes[id];
    nd->opset = r->opset;
    nd->a = a;
    for (int k = 0; k < nin + extra; k++) nd->inputs[k] = ins[k];
    for (int k = 0; k < nout; k++) {
        nd->outputs[k] = outs[k];
        if (outs[k] >= 0) g->values[outs[k]].producer = id;
    }
    if (nd->ninputs < 1 || nd->inputs[0] < 0)
        return qd_errorf(QD_ERR_DATA, "%s: node '%s' (%s) has no data input", r->path, nm, S(n->op_type));
    return QD_OK;
}

/* The shape of activation v as far as the nodes read so far determine it (ONNX lists nodes in
 * topological order): shape inference runs over the partial graph and everything it resolves
 * (node attributes, dropped Reshape/Slice inputs, value shapes) is put back afterwards, so the
 * pipeline's own inference later sees the graph exactly as read. 0 when the shape cannot be
 * determined here (an op inference refuses before simplification, a graph input without dims):
 * the caller then follows only the batch. */
static int activation_shape(rd *r, int v, int *nd, int64_t *dims) {
    qd_graph *g = r->g;
    if (g->values[v].is_const) return 0;
    if (g->values[v].producer < 0) { /* a graph input: its dims are read already */
        if (g->values[v].ndim < 1) return 0;
        *nd = g->values[v].ndim;
        memcpy(dims, g->values[v].dims, sizeof g->values[v].dims);
        return 1;
    }
    qd_node *nsave = malloc((size_t)(g->nnodes > 0 ? g->nnodes : 1) * sizeof *nsave);
    qd_value *vsave = malloc((size_t)(g->nvalues > 0 ? g->nvalues : 1) * sizeof *vsave);
    int *isave = NULL;
    size_t nin = 0;
    for (int i = 0; i < g->nnodes; i++) nin += (size_t)g->nodes[i].ninputs;
    isave = malloc((nin ? nin : 1) * sizeof *isave);
    int ok = 0;
    if (nsave && vsave && isave) {
        memcpy(nsave, g->nodes, (size_t)g->nnodes * sizeof *nsave);
        memcpy(vsave, g->values, (size_t)g->nvalues * sizeof *vsave);
        size_t at = 0;
        for (int i = 0; i < g->nnodes; i++)
            for (int k = 0; k < g->nodes[i].ninputs; k++) isave[at++] = g->nodes[i].inputs[k];
        int nn = g->nnodes, nv = g->nvalues;
        qd_status st = qd_graph_infer_shapes(g);
        if (st == QD_OK && g->values[v].ndim >= 1) {
            *nd = g->values[v].ndim;
            memcpy(dims, g->values[v].dims, sizeof g->values[v].dims);
            ok = 1;
        }
        if (st != QD_OK) qd_error_clear();
        /* inference adds no nodes or values; it rewrites them in place */
        at = 0;
        for (int i = 0; i < nn; i++) {
            g->nodes[i] = nsave[i];
            for (int k = 0; k < g->nodes[i].ninputs; k++) g->nodes[i].inputs[k] = isave[at++];
        }
        memcpy(g->values, vsave, (size_t)nv * sizeof *vsave);
    }
    free(nsave);
    free(vsave);
    free(isave);
    return ok;
}

/* Helper ops that are only ever evaluated on constants. */
static int foldable(const char *t) {
    static const char *const tab[] = {"Identity", "Dropout", "Cast", "Shape", "ConstantOfShape", "Concat",
                                      "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Transpose", "Slice",
                                      "Gather", "Add", "Sub", "Mul", "Div"};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(t, tab[i]) == 0) return 1;
    return 0;
}

static qd_status load_node(rd *r, const Onnx__NodeProto *n) {
    qd_graph *g = r->g;
    const char *type = S(n->op_type);
    const char *dom = S(n->domain);
    if (dom[0] && strcmp(dom, "ai.onnx") != 0) return unsupported(r, n, "custom domain");
    if (strcmp(type, "Constant") == 0) {
        if (n->n_output < 1) return qd_errorf(QD_ERR_DATA, "%s: Constant node '%s' has no output", r->path, node_label(n));
        if (qd_graph_find_value(g, S(n->output[0])) >= 0)
            return qd_errorf(QD_ERR_DATA, "%s: node '%s' writes '%s', which is already defined", r->path,
                             node_label(n), S(n->output[0]));
        int v;
        return load_constant(r, n, &v);
    }
    /* All inputs constant (and at least one)? then evaluate here when we know how. */
    int all_const = n->n_input > 0, ins[16];
    size_t nin = n->n_input < 16 ? n->n_input : 16;
    for (size_t k = 0; k < nin; k++) {
        ins[k] = S(n->input[k])[0] ? qd_graph_find_value(g, n->input[k]) : -1;
        if (S(n->input[k])[0] && ins[k] < 0)
            return qd_errorf(QD_ERR_DATA, "%s: node '%s' reads '%s', which no node, initializer or graph input "
                             "produces (nodes out of order?)", r->path, node_label(n), n->input[k]);
        if (k == 0 && ins[k] < 0) all_const = 0;
        if (ins[k] >= 0 && !g->values[ins[k]].is_const) all_const = 0;
    }
    if (n->n_input > 16) all_const = 0;
    if (all_const && foldable(type) && n->n_output >= 1) {
        if (qd_graph_find_value(g, S(n->output[0])) >= 0)
            return qd_errorf(QD_ERR_DATA, "%s: node '%s' writes '%s', which is already defined", r->path,
                             node_label(n), S(n->output[0]));
        int v;
        qd_status st = fold_node(r, n, type, ins, (int)nin, &v);
        if (st == QD_ERR_UNSUPPORTED) return unsupported(r, n, "on constant inputs");
        return st;
    }
    if (strcmp(type, "Shape") == 0 && nin >= 1 && ins[0] >= 0 && n->n_output >= 1) {
        if (qd_graph_find_value(g, S(n->output[0])) >= 0)
            return qd_errorf(QD_ERR_DATA, "%s: node '%s' writes '%s', which is already defined", r->path,
                             node_label(n), S(n->output[0]));
        const Onnx__AttributeProto *as = find_attr(n, "start"), *ae = find_attr(n, "end");
        int nd;
        int64_t dims[QD_MAX_DIMS];
        if (activation_shape(r, ins[0], &nd, dims)) {
            /* the shape is static but for the batch: a real vector, element 0 the batch symbol */
            int64_t s0 = as ? as->i : 0, e0 = ae ? ae->i : nd;
            if (s0 < 0) s0 = s0 < -nd ? 0 : s0 + nd;
            if (e0 < 0) e0 = e0 < -nd ? 0 : e0 + nd;
            s0 = s0 > nd ? nd : s0;
            e0 = e0 > nd ? nd : (e0 < s0 ? s0 : e0);
            int64_t len = e0 - s0;
            int v = new_const(r, S(n->output[0]), QD_DT_INT64, 1, &len);
            if (v < 0) return oom(r);
            for (int64_t i = 0; i < len; i++) g->values[v].idata[i] = s0 + i == 0 ? 0 : dims[s0 + i];
            return s0 == 0 && len > 0 ? sym_set(r, v, SYM_MASK, 1u) : QD_OK;
        }
        /* dims after the batch unknown here: only the batch (element 0) can be used, as a symbol */
        int64_t one = 1;
        int v = new_const(r, S(n->output[0]), QD_DT_INT64, 1, &one);
        if (v < 0) return oom(r);
        if (!as && !ae) return sym_set(r, v, SYM_SHAPE, 1u);
        if ((as ? as->i : 0) == 0 && ae && ae->i == 1) return sym_set(r, v, SYM_MASK, 1u);
        return unsupported(r, n, "Shape of an activation with start/end other than 0/1");
    }
    qd_op op;
    if (!map_op(type, &op)) {
        return unsupported(r, n, NULL);
    }
    return add_compute_node(r, n, op);
}

/* ------------------------------------------------------------------------------------------ */
/* model                                                                                       */
/* ------------------------------------------------------------------------------------------ */
static qd_status load_graph_input(rd *r, const Onnx__ValueInfoProto *vi) {
    qd_graph *g = r->g;
    const char *name = S(vi->name);
    if (qd_graph_find_value(g, name) >= 0) return QD_OK; /* an initializer also listed as input (IR < 4) */
    const Onnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return qd_errorf(QD_ERR_UNSUPPORTED, "%s: graph input '%s' is not a tensor", r->path, name);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (tt->elem_type != 1)
        return qd_errorf(QD_ERR_UNSUPPORTED, "%s: graph input '%s' has element type %d; only float32 inputs are "
                         "supported", r->path, name, tt->elem_type);
    if (!tt->shape)
        return qd_errorf(QD_ERR_UNSUPPORTED, "%s: graph input '%s' has no shape; export with a static input shape",
                         r->path, name);
    if (tt->shape->n_dim < 1 || tt->shape->n_dim > QD_MAX_DIMS)
        return qd_errorf(QD_ERR_UNSUPPORTED, "%s: graph input '%s' has rank %zu (1..%d supported)", r->path, name,
                         tt->shape->n_dim, QD_MAX_DIMS);
    int v = qd_graph_add_value(g, name);
    if (v < 0) return oom(r);
    qd_value *val = &g->values[v];
    val->ndim = (int)tt->shape->n_dim;
    for (size_t d = 0; d < tt->shape->n_dim; d++) {
        const Onnx__TensorShapeProto__Dimension *dim = tt->shape->dim[d];
        int sym = !dim || dim->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        if (sym && d == 0) {
            val->batch_symbolic = 1;
            val->dims[0] = 1; /* substituted at run time */
            continue;
        }
        if (sym)
            return qd_errorf(QD_ERR_UNSUPPORTED, "%s: graph input '%s' dimension %zu is symbolic ('%s'); only the "
                             "batch dimension (0) may be symbolic: export with a fixed input size", r->path, name, d,
                             dim && dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM ?
                             S(dim->dim_param) : "?");
        if (dim->dim_value <= 0)
            return qd_errorf(QD_ERR_DATA, "%s: graph input '%s' dimension %zu is %lld", r->path, name, d,
                             (long long)dim->dim_value);
        val->dims[d] = dim->dim_value;
    }
    int64_t numel;
    if (!qd_shape_numel_checked(val->ndim, val->dims, QD_MAX_TENSOR_NUMEL, &numel)) {
        char b[256];
        return qd_errorf(QD_ERR_DATA, "%s: graph input '%s' has shape %s: more than %lld elements", r->path, name,
                         fmt_dims(b, sizeof b, val->ndim, val->dims), (long long)QD_MAX_TENSOR_NUMEL);
    }
    int *ni = realloc(g->inputs, sizeof(int) * (size_t)(g->ninputs + 1));
    if (!ni) return oom(r);
    g->inputs = ni;
    g->inputs[g->ninputs++] = v;
    return QD_OK;
}

/* NaN/Inf in constant data a node computes with (weights, biases, BN statistics). Clip bounds
 * may legitimately be infinite. */
static qd_status check_finite(rd *r) {
    qd_graph *g = r->g;
    for (int i = 0; i < g->nnodes; i++) {
        const qd_node *n = &g->nodes[i];
        for (int k = 0; k < n->ninputs; k++) {
            int v = n->inputs[k];
            if (v < 0 || !g->values[v].is_const || !g->values[v].fdata) continue;
            const qd_value *val = &g->values[v];
            int64_t cnt = qd_value_numel(val);
            for (int64_t e = 0; e < cnt; e++)
                if (!isfinite(val->fdata[e]))
                    return qd_errorf(QD_ERR_DATA, "%s: initializer '%s' (read by node '%s') contains %s at element "
                                     "%lld", r->path, val->name, n->name, isnan(val->fdata[e]) ? "NaN" : "Inf",
                                     (long long)e);
        }
    }
    return QD_OK;
}

/* Add(scores, mask) -> Softmax (opset >= 13) becomes Softmax(scores, mask), the IR's masked
 * softmax (graph.h), when the Add feeds only the Softmax, the mask is a graph input or a constant
 * (not computed by a node) and the scores are computed by a node that is not a linear layer with
 * a constant weight (a MatMul + bias Add stays for qd_graph_canon_linear). The export writes the
 * Add and the Softmax back. */
static qd_status fuse_masked_softmax(rd *r) {
    qd_graph *g = r->g;
    qd_graph_recount(g);
    unsigned char *dead = NULL;
    for (int i = 0; i < g->nnodes; i++) {
        qd_node *sm = &g->nodes[i];
        if (sm->op != QD_OP_SOFTMAX || sm->ninputs != 1 || sm->opset < 13 || sm->inputs[0] < 0) continue;
        int sum = sm->inputs[0], ai = g->values[sum].producer;
        if (ai < 0 || g->nodes[ai].op != QD_OP_ADD || g->nodes[ai].ninputs != 2 || g->values[sum].nconsumers != 1 ||
            qd_graph_is_output(g, sum))
            continue;
        const qd_node *add = &g->nodes[ai];
        int scores = -1, mask = -1;
        for (int k = 0; k < 2; k++) {
            int v = add->inputs[k], o = add->inputs[1 - k];
            if (v < 0 || o < 0 || g->values[v].producer < 0 || g->values[o].producer >= 0) continue;
            const qd_node *p = &g->nodes[g->values[v].producer];
            if (qd_op_is_layer(p->op) && p->ninputs > 1 && p->inputs[1] >= 0 && g->values[p->inputs[1]].is_const) continue;
            scores = v;
            mask = o;
        }
        if (scores < 0) continue;
        int *ins = realloc(sm->inputs, 2 * sizeof(int));
        if (!ins) { free(dead); return oom(r); }
        sm->inputs = ins;
        sm->inputs[0] = scores;
        sm->inputs[1] = mask;
        sm->ninputs = 2;
        if (!dead && !(dead = calloc((size_t)g->nnodes, 1))) return oom(r);
        dead[ai] = 1;
    }
    qd_status st = dead ? qd_graph_remove_nodes(g, dead) : QD_OK;
    free(dead);
    return st;
}

static qd_status build(rd *r, const Onnx__ModelProto *m) {
    qd_graph *g = r->g;
    if (!m->graph) return qd_errorf(QD_ERR_DATA, "%s: not a valid ONNX model (no graph)", r->path);
    r->opset = -1;
    int64_t opset = -1;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if (o && (!S(o->domain)[0] || strcmp(o->domain, "ai.onnx") == 0)) opset = o->version;
    }
    if (opset == -1) return qd_errorf(QD_ERR_DATA, "%s: not a valid ONNX model (no ai.onnx opset_import)", r->path);
    /* compared as int64: a cast first would read 2^32 + 13 as 13 */
    if (opset < 7 || opset > 22)
        return qd_errorf(QD_ERR_UNSUPPORTED, "%s: opset %lld is not supported (7..22; exporters default to 13..17)",
                         r->path, (long long)opset);
    r->opset = (int)opset;
    g->opset = r->opset;
    const Onnx__GraphProto *gp = m->graph;
    if (gp->n_sparse_initializer)
        return qd_errorf(QD_ERR_UNSUPPORTED, "%s: sparse initializers are not supported", r->path);
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *t = gp->initializer[i];
        if (!t) continue;
        if (qd_graph_find_value(g, S(t->name)) >= 0)
            return qd_errorf(QD_ERR_DATA, "%s: initializer '%s' is defined twice", r->path, S(t->name));
        int v;
        QD_TRY(load_tensor(r, t, S(t->name), &v));
    }
    for (size_t i = 0; i < gp->n_input; i++)
        if (gp->input[i]) QD_TRY(load_graph_input(r, gp->input[i]));
    if (g->ninputs < 1) return qd_errorf(QD_ERR_DATA, "%s: the graph has no (non-constant) input", r->path);
    for (size_t i = 0; i < gp->n_node; i++)
        if (gp->node[i]) QD_TRY(load_node(r, gp->node[i]));
    if (gp->n_output < 1) return qd_errorf(QD_ERR_DATA, "%s: the graph has no output", r->path);
    g->outputs = malloc(sizeof(int) * gp->n_output);
    if (!g->outputs) return oom(r);
    for (size_t i = 0; i < gp->n_output; i++) {
        const char *oname = gp->output[i] ? S(gp->output[i]->name) : "";
        int v = qd_graph_find_value(g, oname);
        if (v < 0) return qd_errorf(QD_ERR_DATA, "%s: graph output '%s' is never produced", r->path, oname);
        if (g->values[v].is_const)
            return qd_errorf(QD_ERR_UNSUPPORTED, "%s: graph output '%s' is a constant", r->path, oname);
        for (int k = 0; k < g->ninputs; k++)
            if (g->inputs[k] == v)
                return qd_errorf(QD_ERR_UNSUPPORTED, "%s: graph output '%s' is the graph input: the model computes "
                                 "nothing to quantize", r->path, oname);
        g->outputs[g->noutputs++] = v;
    }
    QD_TRY(fuse_masked_softmax(r));
    qd_graph_recount(g);
    return check_finite(r);
}

qd_status qd_onnx_load(const char *path, qd_graph **out) {
    *out = NULL;
    if (!path || !path[0]) return qd_errorf(QD_ERR_NOINPUT, "no ONNX model path given");
    /* a regular file of at most protobuf's 2 GiB: never /dev/zero, a FIFO or a directory */
    void *data = NULL;
    size_t len = 0;
    QD_TRY(qd_read_input(path, "ONNX model", (size_t)2 << 30, &data, &len));
    unsigned char *buf = data;
    Onnx__ModelProto *m = len ? onnx__model_proto__unpack(NULL, len, buf) : NULL;
    free(buf);
    if (!m) return qd_errorf(QD_ERR_DATA, "%s: not a valid ONNX model (protobuf parse failed)", path);

    rd r;
    memset(&r, 0, sizeof r);
    r.path = path;
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) : 1;
    r.dir = malloc(dl + 1);
    r.g = qd_graph_new();
    if (!r.dir || !r.g) {
        free(r.dir);
        qd_graph_free(r.g);
        onnx__model_proto__free_unpacked(m, NULL);
        return qd_errorf(QD_ERR_INTERNAL, "%s: out of memory", path);
    }
    if (slash) {
        memcpy(r.dir, path, dl);
        r.dir[dl] = 0;
        if (dl == 0) strcpy(r.dir, "/");
    } else {
        strcpy(r.dir, ".");
    }
    size_t pl = strlen(path) + 1;
    r.g->source_path = malloc(pl);
    if (r.g->source_path) memcpy(r.g->source_path, path, pl);
    const char *prod = S(m->producer_name);
    r.g->producer = malloc(strlen(prod) + strlen(S(m->producer_version)) + 2);
    if (r.g->producer) sprintf(r.g->producer, "%s%s%s", prod, S(m->producer_version)[0] ? " " : "", S(m->producer_version));

    qd_status st = build(&r, m);
    onnx__model_proto__free_unpacked(m, NULL);
    free(r.dir);
    free(r.symk);
    free(r.symm);
    if (st != QD_OK) {
        qd_graph_free(r.g);
        return st;
    }
    *out = r.g;
    return QD_OK;
}
