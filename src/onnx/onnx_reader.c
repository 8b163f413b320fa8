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
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph_internal.h"
#include "onnx.pb-c.h"
#include "qdrop/graph.h"
#include "qdrop/fsutil.h"

#define S(x) ((x) ? (x) : "")
#define MAX_CONST_NUMEL ((int64_t)1 << 31)

static const char k_supported[] =
    "Conv, Gemm, MatMul, Add, Sub, Mul, Div, Relu, Clip, Sigmoid, BatchNormalization, MaxPool, "
    "AveragePool, GlobalAveragePool, ReduceMean, Flatten, Reshape, Pad (constant), Slice, Concat, "
    "Transpose, Softmax, Identity, Dropout, Cast (to float), Constant; on constant inputs also "
    "ConstantOfShape, Shape, Gather, Unsqueeze, Squeeze";

typedef struct rd {
    const char *path;
    char *dir;       /* directory of the model file, for external data */
    qd_graph *g;
    int opset;
} rd;

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
/* New constant value of the given dtype (QD_DT_FLOAT or QD_DT_INT64) and shape, zero-filled. */
static int new_const(rd *r, const char *name, int dtype, int ndim, const int64_t *dims) {
    qd_graph *g = r->g;
    int64_t n = 1;
    if (ndim < 0 || ndim > QD_MAX_DIMS) return -2;
    /* dims may point into g->values, which qd_graph_add_value can reallocate: copy it first */
    int64_t dd[QD_MAX_DIMS];
    for (int d = 0; d < ndim; d++) dd[d] = dims[d];
    dims = dd;
    for (int d = 0; d < ndim; d++) n *= dims[d];
    if (n < 0 || n > MAX_CONST_NUMEL) return -2;
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

static qd_status read_external(rd *r, const Onnx__TensorProto *t, const char *tname, size_t want, unsigned char **out) {
    const char *loc = NULL;
    int64_t offset = 0, length = -1;
    for (size_t i = 0; i < t->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = t->external_data[i];
        if (!e) continue;
        const char *k = S(e->key), *val = S(e->value);
        if (strcmp(k, "location") == 0) loc = val;
        else if (strcmp(k, "offset") == 0) offset = strtoll(val, NULL, 10);
        else if (strcmp(k, "length") == 0) length = strtoll(val, NULL, 10);
    }
    if (!loc || !loc[0])
        return qd_errorf(QD_ERR_DATA, "%s: initializer '%s' is stored externally but has no location", r->path, tname);
    /* The location is relative to the model's directory and may not escape it. */
    if (loc[0] == '/' || strstr(loc, "..") != NULL)
        return qd_errorf(QD_ERR_DATA, "%s: initializer '%s': external data location '%s' must be a relative path "
                         "inside the model's directory", r->path, tname, loc);
    if (offset < 0 || (length >= 0 && (size_t)length != want))
        return qd_errorf(QD_ERR_DATA, "%s: initializer '%s': external data length %lld does not match its shape "
                         "(%zu bytes)", r->path, tname, (long long)length, want);
    size_t plen = strlen(r->dir) + strlen(loc) + 2;
    char *p = malloc(plen);
    if (!p) return oom(r);
    snprintf(p, plen, "%s/%s", r->dir, loc);
    FILE *f = fopen(p, "rb");
    if (!f) {
        qd_status st = qd_errorf(QD_ERR_NOINPUT, "%s: external data file '%s' of initializer '%s' cannot be opened: %s",
                                 r->path, p, tname, strerror(errno));
        free(p);
        return st;
    }
    unsigned char *buf = malloc(want ? want : 1);
    int ok = buf && fseeko(f, (off_t)offset, SEEK_SET) == 0 && fread(buf, 1, want, f) == want;
    fclose(f);
    if (!ok) {
        free(buf);
        qd_status st = qd_errorf(QD_ERR_DATA, "%s: external data file '%s' is too short for initializer '%s' "
                                 "(offset %lld, %zu bytes)", r->path, p, tname, (long long)offset, want);
        free(p);
        return st;
    }
    free(p);
    *out = buf;
    return QD_OK;
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
    int64_t n = 1;
    for (size_t d = 0; d < t->n_dims; d++) {
        dims[d] = t->dims[d];
        if (dims[d] < 0 || dims[d] > MAX_CONST_NUMEL)
            return qd_errorf(QD_ERR_DATA, "%s: tensor '%s' has invalid dimension %lld", r->path, name, (long long)dims[d]);
        n *= dims[d];
        if (n > MAX_CONST_NUMEL) return qd_errorf(QD_ERR_UNSUPPORTED, "%s: tensor '%s' is too large", r->path, name);
    }
    int v = new_const(r, name, is_float_dt(dt) ? QD_DT_FLOAT : QD_DT_INT64, (int)t->n_dims, dims);
    if (v < 0) return oom(r);
    qd_value *val = &r->g->values[v];
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
    }
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
static void cset(qd_value *v, int64_t i, double x) {
    if (v->fdata) v->fdata[i] = (float)x;
    else v->idata[i] = (int64_t)x;
}
static void ccopy(qd_value *dst, int64_t di, const qd_value *src, int64_t si) {
    if (dst->fdata) dst->fdata[di] = src->fdata ? src->fdata[si] : (float)src->idata[si];
    else dst->idata[di] = src->idata ? src->idata[si] : (int64_t)src->fdata[si];
}

static void unravel(int64_t i, int ndim, const int64_t *dims, int64_t *idx) {
    for (int d = ndim - 1; d >= 0; d--) {
        int64_t e = dims[d] > 0 ? dims[d] : 1;
        idx[d] = i % e;
        i /= e;
    }
}

static void strides_of(int ndim, const int64_t *dims, int64_t *st) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        st[d] = s;
        s *= dims[d];
    }
}

static const qd_value *in_value(const qd_graph *g, const int *in, int nin, int k) {
    return k < nin && in[k] >= 0 ? &g->values[in[k]] : NULL;
}

/* Evaluates node `n` (op `op`) on constant inputs `in[0..nin)`, creating the output constant. */
static qd_status fold_node(rd *r, const Onnx__NodeProto *n, const char *op, const int *in, int nin, int *out_v) {
    qd_graph *g = r->g;
    const char *oname = S(n->output[0]);
    const char *nm = node_label(n);
    const int nin_ = nin;
#define IN(k) in_value(g, in, nin_, (k))
#define BAD(...) qd_errorf(QD_ERR_DATA, __VA_ARGS__)
    const qd_value *x = IN(0);
    int v = -1;
    if (strcmp(op, "Identity") == 0 || strcmp(op, "Dropout") == 0 || strcmp(op, "Cast") == 0) {
        if (!x) return BAD("%s: node '%s' (%s) has no input", r->path, nm, op);
        int dt = x->dtype;
        if (strcmp(op, "Cast") == 0) dt = is_float_dt((int)attr_i(n, "to", 1)) ? QD_DT_FLOAT : QD_DT_INT64;
        v = new_const(r, oname, dt, x->ndim, x->dims);
        if (v < 0) return oom(r);
        x = IN(0); /* values may have moved */
        int64_t cnt = qd_value_numel(x);
        for (int64_t i = 0; i < cnt; i++) cset(&g->values[v], i, cget(x, i));
    } else if (strcmp(op, "Shape") == 0) {
        if (!x) return BAD("%s: node '%s' (Shape) has no input", r->path, nm);
        int64_t d1 = x->ndim;
        v = new_const(r, oname, QD_DT_INT64, 1, &d1);
        if (v < 0) return oom(r);
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
        int dt = fill_v >= 0 ? g->values[fill_v].dtype : QD_DT_FLOAT;
        double fill = fill_v >= 0 && qd_value_numel(&g->values[fill_v]) > 0 ? cget(&g->values[fill_v], 0) : 0.0;
        v = new_const(r, oname, dt, nd, dims);
        if (v == -2) return BAD("%s: node '%s' (ConstantOfShape): bad shape", r->path, nm);
        if (v < 0) return oom(r);
        int64_t cnt = qd_value_numel(&g->values[v]);
        for (int64_t i = 0; i < cnt; i++) cset(&g->values[v], i, fill);
    } else if (strcmp(op, "Concat") == 0) {
        if (!x) return BAD("%s: node '%s' (Concat) has no input", r->path, nm);
        int nd = x->ndim;
        int64_t axis = attr_i(n, "axis", 0);
        if (axis < 0) axis += nd;
        if (axis < 0 || axis >= nd) return BAD("%s: node '%s' (Concat): axis out of range", r->path, nm);
        int64_t dims[QD_MAX_DIMS];
        memcpy(dims, x->dims, sizeof dims);
        dims[axis] = 0;
        for (int k = 0; k < nin; k++) {
            const qd_value *a = IN(k);
            if (!a || a->ndim != nd) return BAD("%s: node '%s' (Concat): inputs of different rank", r->path, nm);
            for (int d = 0; d < nd; d++)
                if (d != axis && a->dims[d] != x->dims[d])
                    return BAD("%s: node '%s' (Concat): input shapes differ", r->path, nm);
            dims[axis] += a->dims[axis];
        }
        v = new_const(r, oname, x->dtype, nd, dims);
        if (v < 0) return oom(r);
        int64_t outer = 1, inner = 1;
        for (int d = 0; d < axis; d++) outer *= dims[d];
        for (int d = (int)axis + 1; d < nd; d++) inner *= dims[d];
        int64_t pos = 0;
        for (int64_t o = 0; o < outer; o++)
            for (int k = 0; k < nin; k++) {
                const qd_value *a = IN(k);
                int64_t blk = a->dims[axis] * inner;
                for (int64_t e = 0; e < blk; e++) ccopy(&g->values[v], pos++, a, o * blk + e);
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
                if (dims[d] == -1) neg = d;
                else known *= dims[d];
            }
            if (neg >= 0) dims[neg] = known ? numel / known : 0;
        } else if (op[0] == 'F') {
            int64_t axis = attr_i(n, "axis", 1);
            if (axis < 0) axis += x->ndim;
            int64_t a = 1;
            for (int d = 0; d < axis && d < x->ndim; d++) a *= x->dims[d];
            dims[0] = a;
            dims[1] = a ? numel / a : 0;
            nd = 2;
        } else {
            int64_t axes[QD_MAX_DIMS];
            int na = attr_ints(n, "axes", axes, QD_MAX_DIMS);
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
                    int64_t a = axes[k] < 0 ? axes[k] + nd : axes[k];
                    if (a < 0 || a >= nd) return BAD("%s: node '%s' (Unsqueeze): axis out of range", r->path, nm);
                    ins[a] = 1;
                }
                for (int d = 0, s = 0; d < nd; d++) dims[d] = ins[d] ? 1 : x->dims[s++];
            } else {
                for (int d = 0; d < x->ndim; d++) {
                    int drop = 0;
                    if (na < 0) drop = x->dims[d] == 1;
                    for (int k = 0; k < na; k++) drop |= (axes[k] < 0 ? axes[k] + x->ndim : axes[k]) == d;
                    if (!drop) dims[nd++] = x->dims[d];
                }
            }
        }
        int64_t check = 1;
        for (int d = 0; d < nd; d++) check *= dims[d];
        if (check != numel) return BAD("%s: node '%s' (%s): element count changes", r->path, nm, op);
        v = new_const(r, oname, x->dtype, nd, dims);
        if (v < 0) return oom(r);
        x = IN(0);
        for (int64_t i = 0; i < numel; i++) ccopy(&g->values[v], i, x, i);
    } else if (strcmp(op, "Transpose") == 0) {
        if (!x) return BAD("%s: node '%s' (Transpose) has no input", r->path, nm);
        int64_t perm[QD_MAX_DIMS], dims[QD_MAX_DIMS], st[QD_MAX_DIMS], idx[QD_MAX_DIMS];
        int np = attr_ints(n, "perm", perm, QD_MAX_DIMS);
        if (np < 0) {
            np = x->ndim;
            for (int d = 0; d < np; d++) perm[d] = np - 1 - d;
        }
        if (np != x->ndim) return BAD("%s: node '%s' (Transpose): perm length mismatch", r->path, nm);
        for (int d = 0; d < np; d++) {
            if (perm[d] < 0 || perm[d] >= np) return BAD("%s: node '%s' (Transpose): bad perm", r->path, nm);
            dims[d] = x->dims[perm[d]];
        }
        v = new_const(r, oname, x->dtype, np, dims);
        if (v < 0) return oom(r);
        x = IN(0);
        strides_of(x->ndim, x->dims, st);
        int64_t cnt = qd_value_numel(x);
        for (int64_t i = 0; i < cnt; i++) {
            unravel(i, np, dims, idx);
            int64_t s = 0;
            for (int d = 0; d < np; d++) s += idx[d] * st[perm[d]];
            ccopy(&g->values[v], i, x, s);
        }
    } else if (strcmp(op, "Slice") == 0) {
        if (!x) return BAD("%s: node '%s' (Slice) has no input", r->path, nm);
        int nd = x->ndim;
        int64_t start[QD_MAX_DIMS], step[QD_MAX_DIMS], dims[QD_MAX_DIMS];
        for (int d = 0; d < nd; d++) { start[d] = 0; step[d] = 1; dims[d] = x->dims[d]; }
        const qd_value *sv = IN(1), *ev = IN(2), *av = IN(3), *pv = IN(4);
        if (!sv || !ev || !sv->idata || !ev->idata) return BAD("%s: node '%s' (Slice): bad starts/ends", r->path, nm);
        int64_t k = qd_value_numel(sv);
        for (int64_t j = 0; j < k; j++) {
            int64_t a = av && av->idata ? av->idata[j] : j;
            if (a < 0) a += nd;
            if (a < 0 || a >= nd) return BAD("%s: node '%s' (Slice): axis out of range", r->path, nm);
            int64_t s = pv && pv->idata ? pv->idata[j] : 1, dim = x->dims[a];
            if (s == 0) return BAD("%s: node '%s' (Slice): step 0", r->path, nm);
            int64_t b = sv->idata[j], e = ev->idata[j];
            if (b < 0) b += dim;
            if (e < 0 && e > INT64_MIN + dim) e += dim;
            else if (e < 0) e = -1;
            if (s > 0) {
                b = b < 0 ? 0 : (b > dim ? dim : b);
                e = e < 0 ? 0 : (e > dim ? dim : e);
                dims[a] = e > b ? (e - b + s - 1) / s : 0;
            } else {
                b = b < 0 ? -1 : (b > dim - 1 ? dim - 1 : b);
                e = e < -1 ? -1 : (e > dim - 1 ? dim - 1 : e);
                dims[a] = b > e ? (b - e + (-s) - 1) / (-s) : 0;
            }
            start[a] = b;
            step[a] = s;
        }
        v = new_const(r, oname, x->dtype, nd, dims);
        if (v < 0) return oom(r);
        x = IN(0);
        int64_t st[QD_MAX_DIMS], idx[QD_MAX_DIMS];
        strides_of(nd, x->dims, st);
        int64_t cnt = qd_value_numel(&g->values[v]);
        for (int64_t i = 0; i < cnt; i++) {
            unravel(i, nd, dims, idx);
            int64_t s = 0;
            for (int d = 0; d < nd; d++) s += (start[d] + idx[d] * step[d]) * st[d];
            ccopy(&g->values[v], i, x, s);
        }
    } else if (strcmp(op, "Gather") == 0) {
        const qd_value *ix = IN(1);
        if (!x || !ix || !ix->idata) return BAD("%s: node '%s' (Gather): bad inputs", r->path, nm);
        int64_t axis = attr_i(n, "axis", 0);
        if (axis < 0) axis += x->ndim;
        if (axis < 0 || axis >= x->ndim || x->ndim - 1 + ix->ndim > QD_MAX_DIMS)
            return BAD("%s: node '%s' (Gather): axis out of range", r->path, nm);
        int64_t dims[QD_MAX_DIMS];
        int nd = 0;
        for (int d = 0; d < axis; d++) dims[nd++] = x->dims[d];
        for (int d = 0; d < ix->ndim; d++) dims[nd++] = ix->dims[d];
        for (int d = (int)axis + 1; d < x->ndim; d++) dims[nd++] = x->dims[d];
        v = new_const(r, oname, x->dtype, nd, dims);
        if (v < 0) return oom(r);
        x = IN(0);
        ix = IN(1);
        int64_t outer = 1, inner = 1, ni = qd_value_numel(ix), dim = x->dims[axis];
        for (int d = 0; d < axis; d++) outer *= x->dims[d];
        for (int d = (int)axis + 1; d < x->ndim; d++) inner *= x->dims[d];
        int64_t pos = 0;
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < ni; j++) {
                int64_t t = ix->idata[j] < 0 ? ix->idata[j] + dim : ix->idata[j];
                if (t < 0 || t >= dim) return BAD("%s: node '%s' (Gather): index out of range", r->path, nm);
                for (int64_t e = 0; e < inner; e++) ccopy(&g->values[v], pos++, x, (o * dim + t) * inner + e);
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
        v = new_const(r, oname, dt, nd, dims);
        if (v < 0) return oom(r);
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
                int64_t p = x->idata[a], q = y->idata[b];
                if (op[0] == 'D' && q == 0) return BAD("%s: node '%s' (Div): integer division by zero", r->path, nm);
                o->idata[i] = op[0] == 'A' ? p + q : op[0] == 'S' ? p - q : op[0] == 'M' ? p * q : p / q;
            }
        }
    } else {
        return QD_ERR_UNSUPPORTED; /* caller reports */
    }
#undef IN
#undef BAD
    *out_v = v;
    return QD_OK;
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
        v = new_const(r, oname, QD_DT_FLOAT, 1, &one);
        for (size_t i = 0; v >= 0 && i < a->n_floats; i++) r->g->values[v].fdata[i] = a->floats[i];
    } else if ((a = find_attr(n, "value_ints"))) {
        one = (int64_t)a->n_ints;
        v = new_const(r, oname, QD_DT_INT64, 1, &one);
        for (size_t i = 0; v >= 0 && i < a->n_ints; i++) r->g->values[v].idata[i] = a->ints[i];
    } else {
        return qd_errorf(QD_ERR_UNSUPPORTED, "%s: Constant node '%s' has no value/value_float(s)/value_int(s) "
                         "attribute (sparse and string constants are not supported)", r->path, node_label(n));
    }
    if (v < 0) return oom(r);
    *out_v = v;
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* compute nodes                                                                               */
/* ------------------------------------------------------------------------------------------ */
static int map_op(const char *t, qd_op *op) {
    static const struct { const char *name; qd_op op; } tab[] = {
        {"Conv", QD_OP_CONV}, {"Gemm", QD_OP_GEMM}, {"MatMul", QD_OP_MATMUL}, {"Add", QD_OP_ADD},
        {"Mul", QD_OP_MUL}, {"Sub", QD_OP_SUB}, {"Div", QD_OP_DIV}, {"Relu", QD_OP_RELU}, {"Clip", QD_OP_CLIP},
        {"Sigmoid", QD_OP_SIGMOID}, {"BatchNormalization", QD_OP_BATCHNORM}, {"MaxPool", QD_OP_MAXPOOL},
        {"AveragePool", QD_OP_AVGPOOL}, {"GlobalAveragePool", QD_OP_GLOBALAVGPOOL},
        {"ReduceMean", QD_OP_REDUCEMEAN}, {"Flatten", QD_OP_FLATTEN}, {"Reshape", QD_OP_RESHAPE},
        {"Pad", QD_OP_PAD}, {"Slice", QD_OP_SLICE}, {"Concat", QD_OP_CONCAT}, {"Identity", QD_OP_IDENTITY},
        {"Dropout", QD_OP_IDENTITY}, {"Cast", QD_OP_IDENTITY}, {"Transpose", QD_OP_TRANSPOSE},
        {"Softmax", QD_OP_SOFTMAX}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(t, tab[i].name) == 0) {
            *op = tab[i].op;
            return 1;
        }
    return 0;
}

static qd_status unsupported(const rd *r, const Onnx__NodeProto *n, const char *why) {
    return qd_errorf(QD_ERR_UNSUPPORTED, "%s: node '%s': op %s%s%s (opset %d) is not supported%s%s; supported ops: %s",
                     r->path, node_label(n), S(n->domain)[0] ? S(n->domain) : "", S(n->domain)[0] ? "::" : "",
                     S(n->op_type), r->opset, why ? ": " : "", why ? why : "", k_supported);
}

/* 2-D spatial attributes of Conv / pools. */
static qd_status spatial_attrs(const rd *r, const Onnx__NodeProto *n, qd_attrs *a) {
    int64_t t[8];
    int k;
    char ap[32];
    attr_str(n, "auto_pad", "NOTSET", ap, sizeof ap);
    if (strcmp(ap, "NOTSET") != 0 && strcmp(ap, "VALID") != 0)
        return unsupported(r, n, "auto_pad SAME_UPPER/SAME_LOWER (export with explicit pads)");
    if ((k = attr_ints(n, "kernel_shape", t, 8)) >= 0) {
        if (k != 2) return unsupported(r, n, "only 2-D kernels");
        a->kernel[0] = (int)t[0];
        a->kernel[1] = (int)t[1];
    }
    if ((k = attr_ints(n, "strides", t, 8)) >= 0) {
        if (k != 2) return unsupported(r, n, "only 2-D strides");
        a->stride[0] = (int)t[0];
        a->stride[1] = (int)t[1];
    }
    if ((k = attr_ints(n, "dilations", t, 8)) >= 0) {
        if (k != 2) return unsupported(r, n, "only 2-D dilations");
        a->dilation[0] = (int)t[0];
        a->dilation[1] = (int)t[1];
    }
    if ((k = attr_ints(n, "pads", t, 8)) >= 0) {
        if (k != 4) return unsupported(r, n, "only 2-D pads");
        /* ONNX order [h_begin, w_begin, h_end, w_end] == qd_attrs top, left, bottom, right */
        for (int i = 0; i < 4; i++) a->pads[i] = (int)t[i];
    }
    for (int i = 0; i < 2; i++)
        if (a->stride[i] < 1 || a->dilation[i] < 1 || a->kernel[i] < 0 || a->pads[i] < 0 || a->pads[i + 2] < 0)
            return qd_errorf(QD_ERR_DATA, "%s: node '%s': invalid kernel/stride/dilation/pads", r->path, node_label(n));
    return QD_OK;
}

static const qd_value *const_input(const rd *r, const Onnx__NodeProto *n, size_t k) {
    if (k >= n->n_input || !S(n->input[k])[0]) return NULL;
    int v = qd_graph_find_value(r->g, n->input[k]);
    if (v < 0 || !r->g->values[v].is_const) return NULL;
    return &r->g->values[v];
}

static qd_status node_attrs(rd *r, const Onnx__NodeProto *n, qd_op op, qd_attrs *a) {
    const char *nm = node_label(n);
    int64_t t[2 * QD_MAX_DIMS];
    int k;
    switch (op) {
    case QD_OP_CONV:
        QD_TRY(spatial_attrs(r, n, a));
        a->group = (int)attr_i(n, "group", 1);
        if (a->group < 1) return qd_errorf(QD_ERR_DATA, "%s: node '%s': group %d", r->path, nm, a->group);
        break;
    case QD_OP_MAXPOOL:
    case QD_OP_AVGPOOL:
        QD_TRY(spatial_attrs(r, n, a));
        if (a->kernel[0] <= 0 || a->kernel[1] <= 0) return unsupported(r, n, "kernel_shape missing");
        a->ceil_mode = (int)attr_i(n, "ceil_mode", 0);
        a->count_include_pad = (int)attr_i(n, "count_include_pad", 0);
        if (op == QD_OP_MAXPOOL && n->n_output > 1 && S(n->output[1])[0]) return unsupported(r, n, "Indices output");
        break;
    case QD_OP_GEMM:
        a->alpha = attr_f(n, "alpha", 1.0f);
        a->beta = attr_f(n, "beta", 1.0f);
        a->trans_a = (int)attr_i(n, "transA", 0);
        a->trans_b = (int)attr_i(n, "transB", 0);
        break;
    case QD_OP_BATCHNORM:
        a->epsilon = attr_f(n, "epsilon", 1e-5f);
        if (attr_i(n, "training_mode", 0)) return unsupported(r, n, "training_mode=1");
        for (size_t i = 1; i < n->n_output; i++)
            if (S(n->output[i])[0]) return unsupported(r, n, "training outputs (running mean/var)");
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
    case QD_OP_FLATTEN:
        a->axis = (int)attr_i(n, "axis", 1);
        break;
    case QD_OP_CONCAT:
        if (!find_attr(n, "axis")) return qd_errorf(QD_ERR_DATA, "%s: node '%s' (Concat) has no axis", r->path, nm);
        a->axis = (int)attr_i(n, "axis", 1);
        break;
    case QD_OP_SOFTMAX:
        a->axis = (int)attr_i(n, "axis", r->opset < 13 ? 1 : -1);
        break;
    case QD_OP_TRANSPOSE:
        k = attr_ints(n, "perm", a->perm, QD_MAX_DIMS);
        if (k == -2) return unsupported(r, n, "more than 8 dimensions");
        a->nperm = k > 0 ? k : 0;
        break;
    case QD_OP_REDUCEMEAN:
        a->keepdims = (int)attr_i(n, "keepdims", 1);
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
    case QD_OP_CLIP: case QD_OP_PAD: case QD_OP_REDUCEMEAN: case QD_OP_IDENTITY: return ni > 0 ? 1 : 0;
    case QD_OP_RESHAPE: return ni > 2 ? 2 : ni;
    case QD_OP_SLICE: return r->opset < 10 ? 1 : ni;
    default: return ni;
    }
}

static qd_status add_compute_node(rd *r, const Onnx__NodeProto *n, qd_op op) {
    qd_graph *g = r->g;
    const char *nm = node_label(n);
    if (n->n_output < 1) return qd_errorf(QD_ERR_DATA, "%s: node '%s' has no output", r->path, nm);
    if (op == QD_OP_IDENTITY && strcmp(S(n->op_type), "Cast") == 0 && !is_float_dt((int)attr_i(n, "to", 1)))
        return unsupported(r, n, "Cast of an activation to a non-float type");
    /* Dropout's optional mask output is not created: a node reading it fails as "never produced". */
    qd_attrs a;
    qd_attrs_defaults(&a);
    QD_TRY(node_attrs(r, n, op, &a));
    int nin = kept_inputs(r, op, n);
    int extra = (op == QD_OP_SLICE && r->opset < 10) ? 3 : 0; /* attribute form -> constant inputs */
    int nout = (op == QD_OP_BATCHNORM || op == QD_OP_MAXPOOL || op == QD_OP_IDENTITY) ? 1 : (int)n->n_output;
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
    qd_op op;
    if (!map_op(type, &op)) {
        if (strcmp(type, "Shape") == 0)
            return unsupported(r, n, "Shape of an activation (export torch.flatten / a static reshape instead of "
                               "x.view(x.size(0), -1))");
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

static qd_status build(rd *r, const Onnx__ModelProto *m) {
    qd_graph *g = r->g;
    if (!m->graph) return qd_errorf(QD_ERR_DATA, "%s: not a valid ONNX model (no graph)", r->path);
    r->opset = -1;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if (o && (!S(o->domain)[0] || strcmp(o->domain, "ai.onnx") == 0)) r->opset = (int)o->version;
    }
    if (r->opset < 0) return qd_errorf(QD_ERR_DATA, "%s: not a valid ONNX model (no ai.onnx opset_import)", r->path);
    if (r->opset < 7 || r->opset > 22)
        return qd_errorf(QD_ERR_UNSUPPORTED, "%s: opset %d is not supported (7..22; exporters default to 13..17)",
                         r->path, r->opset);
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
        g->outputs[g->noutputs++] = v;
    }
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
    if (st != QD_OK) {
        qd_graph_free(r.g);
        return st;
    }
    *out = r.g;
    return QD_OK;
}
