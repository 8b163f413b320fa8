/* src/export/export_onnx.c: the quantized graph as a deployable ONNX QDQ model (issue 6,
 * ECOSYSTEM §4.1-§4.3, docs/export.md).
 *
 * The model is built with the protobuf-c structs generated from onnx.proto and packed once:
 *   - every IR node goes back to its ONNX op (shape-describing inputs re-created as int64
 *     initializers from the resolved qd_attrs);
 *   - each weight quantizer: INT8 (or INT4) initializer k = q - z, a per-channel float scale and
 *     a zero-point-0 DequantizeLinear(axis = output-channel axis) feeding the weight input;
 *   - each initialized activation quantizer on value v: Clip(v, (qmin-z)s, (qmax-z)s) ->
 *     QuantizeLinear(s, int8 0) -> DequantizeLinear(s, int8 0); consumers read the DQ output.
 * Every allocation goes into one arena released after packing. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx.pb-c.h"

#include "core/qmath.h"
#include "export/export_internal.h"
#include "qdrop/export.h"
#include "qdrop/fsutil.h"

/* TensorProto.DataType values beyond the installed onnx.proto (1.12): data_type is an int32
 * field, so newer values can be written as plain integers. */
enum { XB_DT_INT4 = 22 };

typedef struct xb {
    const qd_graph *g;
    const qd_config *cfg;
    int opset;
    void **allocs;
    size_t nallocs, cap_allocs;
    Onnx__NodeProto **nodes;
    size_t nnodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t ninits, cap_inits;
    char **set;               /* open-addressing set of every tensor name in use */
    size_t set_cap, set_n;
    const char **read_name;   /* per value: the name consumers read (DQ output when quantized) */
    const char **prod_name;   /* per value: the name its producer writes */
    unsigned char *need_init; /* per value: constant to emit as an initializer */
    int *act_of;              /* per value: initialized activation quantizer, -1 none */
    const char **wq_read;     /* per weight quantizer: name of the (dequantized) weight */
} xb;

/* ------------------------------------------------------------------------------------------ */
/* arena and growable arrays                                                                   */
/* ------------------------------------------------------------------------------------------ */
static qd_status xb_alloc(xb *b, size_t n, void **out) {
    if (b->nallocs == b->cap_allocs) {
        size_t cap = b->cap_allocs ? 2 * b->cap_allocs : 256;
        void **p = realloc(b->allocs, cap * sizeof *p);
        if (!p) return qd_errorf(QD_ERR_INTERNAL, "export: out of host memory");
        b->allocs = p;
        b->cap_allocs = cap;
    }
    void *p = calloc(1, n ? n : 1);
    if (!p) return qd_errorf(QD_ERR_INTERNAL, "export: out of host memory (%zu bytes)", n);
    b->allocs[b->nallocs++] = p;
    *out = p;
    return QD_OK;
}
#define XB_ALLOC(b, ptr, n)                     \
    do {                                        \
        void *xb_p_ = NULL;                     \
        QD_TRY(xb_alloc((b), (n), &xb_p_));     \
        (ptr) = xb_p_;                          \
    } while (0)

static qd_status xb_grow(void ***arr, size_t *n, size_t *cap) {
    if (*n < *cap) return QD_OK;
    size_t c = *cap ? 2 * *cap : 64;
    void **p = realloc(*arr, c * sizeof *p);
    if (!p) return qd_errorf(QD_ERR_INTERNAL, "export: out of host memory");
    *arr = p;
    *cap = c;
    return QD_OK;
}

static qd_status xb_strdup(xb *b, const char *s, char **out) {
    size_t n = strlen(s);
    char *p;
    XB_ALLOC(b, p, n + 1);
    memcpy(p, s, n + 1);
    *out = p;
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* unique tensor names                                                                         */
/* ------------------------------------------------------------------------------------------ */
static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int set_has(const xb *b, const char *s) {
    if (!b->set_cap) return 0;
    for (size_t i = name_hash(s) & (b->set_cap - 1);; i = (i + 1) & (b->set_cap - 1)) {
        if (!b->set[i]) return 0;
        if (strcmp(b->set[i], s) == 0) return 1;
    }
}

static qd_status set_add(xb *b, char *s) { /* s lives in the arena */
    if (2 * (b->set_n + 1) > b->set_cap) {
        size_t cap = b->set_cap ? 2 * b->set_cap : 1024;
        char **t = calloc(cap, sizeof *t);
        if (!t) return qd_errorf(QD_ERR_INTERNAL, "export: out of host memory");
        for (size_t i = 0; i < b->set_cap; i++) {
            if (!b->set[i]) continue;
            size_t j = name_hash(b->set[i]) & (cap - 1);
            while (t[j]) j = (j + 1) & (cap - 1);
            t[j] = b->set[i];
        }
        free(b->set);
        b->set = t;
        b->set_cap = cap;
    }
    size_t j = name_hash(s) & (b->set_cap - 1);
    while (b->set[j]) {
        if (strcmp(b->set[j], s) == 0) return QD_OK;
        j = (j + 1) & (b->set_cap - 1);
    }
    b->set[j] = s;
    b->set_n++;
    return QD_OK;
}

/* A fresh tensor name "<base><suffix>" ("_2", "_3", ... appended on a clash). */
static qd_status xb_unique(xb *b, const char *base, const char *suffix, const char **out) {
    size_t n = strlen(base) + strlen(suffix) + 24;
    char *p;
    XB_ALLOC(b, p, n);
    snprintf(p, n, "%s%s", base, suffix);
    for (int k = 2; set_has(b, p); k++) snprintf(p, n, "%s%s_%d", base, suffix, k);
    QD_TRY(set_add(b, p));
    *out = p;
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* protobuf builders                                                                           */
/* ------------------------------------------------------------------------------------------ */
#define XB_MAX_ATTRS 8

static qd_status xb_node(xb *b, const char *op, const char *name, int nin, const char *const *in, int nout,
                         const char *const *out, Onnx__NodeProto **res) {
    Onnx__NodeProto *n;
    XB_ALLOC(b, n, sizeof *n);
    *n = (Onnx__NodeProto)ONNX__NODE_PROTO__INIT;
    QD_TRY(xb_strdup(b, op, &n->op_type));
    QD_TRY(xb_strdup(b, name, &n->name));
    while (nin > 0 && (in[nin - 1] == NULL || in[nin - 1][0] == '\0')) nin--; /* trailing optionals */
    XB_ALLOC(b, n->input, (size_t)(nin > 0 ? nin : 1) * sizeof(char *));
    for (int i = 0; i < nin; i++) QD_TRY(xb_strdup(b, in[i] ? in[i] : "", &n->input[i]));
    n->n_input = (size_t)nin;
    XB_ALLOC(b, n->output, (size_t)nout * sizeof(char *));
    for (int i = 0; i < nout; i++) QD_TRY(xb_strdup(b, out[i], &n->output[i]));
    n->n_output = (size_t)nout;
    XB_ALLOC(b, n->attribute, XB_MAX_ATTRS * sizeof(Onnx__AttributeProto *));
    QD_TRY(xb_grow((void ***)&b->nodes, &b->nnodes, &b->cap_nodes));
    b->nodes[b->nnodes++] = n;
    *res = n;
    return QD_OK;
}

static qd_status xb_attr(xb *b, Onnx__NodeProto *n, const char *name, Onnx__AttributeProto **res) {
    if (n->n_attribute >= XB_MAX_ATTRS)
        return qd_errorf(QD_ERR_INTERNAL, "export: node %s has too many attributes", n->name);
    Onnx__AttributeProto *a = NULL;
    XB_ALLOC(b, a, sizeof *a);
    *a = (Onnx__AttributeProto)ONNX__ATTRIBUTE_PROTO__INIT;
    QD_TRY(xb_strdup(b, name, &a->name));
    a->has_type = 1;
    n->attribute[n->n_attribute++] = a;
    *res = a;
    return QD_OK;
}

static qd_status attr_i(xb *b, Onnx__NodeProto *n, const char *name, int64_t v) {
    Onnx__AttributeProto *a = NULL;
    QD_TRY(xb_attr(b, n, name, &a));
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
    return QD_OK;
}

static qd_status attr_f(xb *b, Onnx__NodeProto *n, const char *name, float v) {
    Onnx__AttributeProto *a = NULL;
    QD_TRY(xb_attr(b, n, name, &a));
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1;
    a->f = v;
    return QD_OK;
}

static qd_status attr_ints(xb *b, Onnx__NodeProto *n, const char *name, const int64_t *v, int cnt) {
    Onnx__AttributeProto *a = NULL;
    QD_TRY(xb_attr(b, n, name, &a));
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    XB_ALLOC(b, a->ints, (size_t)(cnt > 0 ? cnt : 1) * sizeof(int64_t));
    for (int i = 0; i < cnt; i++) a->ints[i] = v[i];
    a->n_ints = (size_t)cnt;
    return QD_OK;
}

static qd_status attr_s(xb *b, Onnx__NodeProto *n, const char *name, const char *v) {
    Onnx__AttributeProto *a = NULL;
    QD_TRY(xb_attr(b, n, name, &a));
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    a->has_s = 1;
    size_t len = strlen(v);
    XB_ALLOC(b, a->s.data, len + 1);
    memcpy(a->s.data, v, len);
    a->s.len = len;
    return QD_OK;
}

/* Initializer with raw little-endian bytes (ONNX raw_data is little endian on every host). */
static qd_status xb_init_raw(xb *b, const char *name, int dtype, const int64_t *dims, int ndim, uint8_t *raw,
                             size_t nbytes) {
    Onnx__TensorProto *t;
    XB_ALLOC(b, t, sizeof *t);
    *t = (Onnx__TensorProto)ONNX__TENSOR_PROTO__INIT;
    QD_TRY(xb_strdup(b, name, &t->name));
    t->has_data_type = 1;
    t->data_type = dtype;
    XB_ALLOC(b, t->dims, (size_t)(ndim > 0 ? ndim : 1) * sizeof(int64_t));
    for (int i = 0; i < ndim; i++) t->dims[i] = dims[i];
    t->n_dims = (size_t)ndim;
    t->has_raw_data = 1;
    t->raw_data.data = raw;
    t->raw_data.len = nbytes;
    QD_TRY(xb_grow((void ***)&b->inits, &b->ninits, &b->cap_inits));
    b->inits[b->ninits++] = t;
    return QD_OK;
}

static void put_le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static qd_status xb_init_f32(xb *b, const char *name, const int64_t *dims, int ndim, const float *v, int64_t n) {
    uint8_t *raw;
    XB_ALLOC(b, raw, (size_t)n * 4);
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        put_le32(raw + 4 * i, u);
    }
    return xb_init_raw(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, dims, ndim, raw, (size_t)n * 4);
}

static qd_status xb_init_i64(xb *b, const char *name, const int64_t *dims, int ndim, const int64_t *v, int64_t n) {
    uint8_t *raw;
    XB_ALLOC(b, raw, (size_t)n * 8);
    for (int64_t i = 0; i < n; i++) put_le64(raw + 8 * i, (uint64_t)v[i]);
    return xb_init_raw(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, dims, ndim, raw, (size_t)n * 8);
}

/* Fresh scalar float / 1-D int64 constants. */
static qd_status xb_const_f(xb *b, const char *base, const char *suffix, float v, const char **name) {
    QD_TRY(xb_unique(b, base, suffix, name));
    return xb_init_f32(b, *name, NULL, 0, &v, 1);
}

static qd_status xb_const_i64v(xb *b, const char *base, const char *suffix, const int64_t *v, int n,
                               const char **name) {
    QD_TRY(xb_unique(b, base, suffix, name));
    int64_t d = n;
    return xb_init_i64(b, *name, &d, 1, v, n);
}

/* ValueInfo for a graph input/output: float tensor, batch dimension symbolic "N". */
static qd_status xb_value_info(xb *b, const char *name, const qd_value *v, Onnx__ValueInfoProto **res) {
    Onnx__ValueInfoProto *vi;
    Onnx__TypeProto *tp;
    Onnx__TypeProto__Tensor *tt;
    Onnx__TensorShapeProto *sh;
    XB_ALLOC(b, vi, sizeof *vi);
    XB_ALLOC(b, tp, sizeof *tp);
    XB_ALLOC(b, tt, sizeof *tt);
    XB_ALLOC(b, sh, sizeof *sh);
    *vi = (Onnx__ValueInfoProto)ONNX__VALUE_INFO_PROTO__INIT;
    *tp = (Onnx__TypeProto)ONNX__TYPE_PROTO__INIT;
    *tt = (Onnx__TypeProto__Tensor)ONNX__TYPE_PROTO__TENSOR__INIT;
    *sh = (Onnx__TensorShapeProto)ONNX__TENSOR_SHAPE_PROTO__INIT;
    QD_TRY(xb_strdup(b, name, &vi->name));
    vi->type = tp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sh;
    XB_ALLOC(b, sh->dim, (size_t)(v->ndim > 0 ? v->ndim : 1) * sizeof *sh->dim);
    for (int d = 0; d < v->ndim; d++) {
        Onnx__TensorShapeProto__Dimension *dm;
        XB_ALLOC(b, dm, sizeof *dm);
        *dm = (Onnx__TensorShapeProto__Dimension)ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
        if (d == 0) {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            QD_TRY(xb_strdup(b, "N", &dm->dim_param));
        } else {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dm->dim_value = v->dims[d];
        }
        sh->dim[d] = dm;
    }
    sh->n_dim = (size_t)v->ndim;
    *res = vi;
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* quantizers                                                                                  */
/* ------------------------------------------------------------------------------------------ */
/* Activation quantizer ai on value v: prod_name[v] -> chain -> read_name[v]. */
static qd_status emit_act(xb *b, int ai) {
    const qd_act_quant *a = &b->g->act[ai];
    const int v = a->value;
    const char *in = b->prod_name[v], *out = b->read_name[v];
    qd_astore store;
    QD_TRY(qd_export_act_store(b->g, ai, &store));
    float lo, hi;
    qd_export_act_range(a, &lo, &hi);
    const int klo = a->qmin - (int)a->zero_point, khi = a->qmax - (int)a->zero_point;
    Onnx__NodeProto *n;

    /* The Clip is redundant when the grid is the whole int8 range: QuantizeLinear saturates
     * to exactly the same bounds (clamp after rounding == fake quantizer's clamp, §2). */
    const char *clipped = in;
    if (!(store == QD_ASTORE_INT8 && klo == -128 && khi == 127)) {
        const char *cmin, *cmax, *cout;
        QD_TRY(xb_const_f(b, in, "_clip_min", lo, &cmin));
        QD_TRY(xb_const_f(b, in, "_clip_max", hi, &cmax));
        QD_TRY(xb_unique(b, in, "_clipped", &cout));
        const char *ins[3] = {in, cmin, cmax};
        QD_TRY(xb_node(b, "Clip", cout, 3, ins, 1, &cout, &n));
        clipped = cout;
    }
    const char *sname;
    QD_TRY(xb_const_f(b, in, "_scale", a->scale, &sname));
    if (store == QD_ASTORE_INT8) {
        const char *zname, *qname;
        QD_TRY(xb_unique(b, in, "_zero_point", &zname));
        uint8_t *raw;
        XB_ALLOC(b, raw, 1);
        QD_TRY(xb_init_raw(b, zname, ONNX__TENSOR_PROTO__DATA_TYPE__INT8, NULL, 0, raw, 1));
        QD_TRY(xb_unique(b, in, "_quantized", &qname));
        const char *qin[3] = {clipped, sname, zname};
        QD_TRY(xb_node(b, "QuantizeLinear", qname, 3, qin, 1, &qname, &n));
        const char *dqin[3] = {qname, sname, zname};
        QD_TRY(xb_node(b, "DequantizeLinear", out, 3, dqin, 1, &out, &n));
    } else {
        /* Same operations as the fake quantizer: x / s, round half to even, times s. */
        const char *dname, *rname;
        QD_TRY(xb_unique(b, in, "_div_scale", &dname));
        QD_TRY(xb_unique(b, in, "_rounded", &rname));
        const char *din[2] = {clipped, sname};
        QD_TRY(xb_node(b, "Div", dname, 2, din, 1, &dname, &n));
        QD_TRY(xb_node(b, "Round", rname, 1, &dname, 1, &rname, &n));
        const char *min[2] = {rname, sname};
        QD_TRY(xb_node(b, "Mul", out, 2, min, 1, &out, &n));
    }
    return QD_OK;
}

/* Weight quantizer wi: initializers + DequantizeLinear; sets wq_read[wi]. */
static qd_status emit_weight(xb *b, int wi) {
    const qd_graph *g = b->g;
    const qd_weight_quant *wq = &g->wq[wi];
    const qd_value *w = &g->values[wq->weight_value];
    const char *wname = b->read_name[wq->weight_value];
    const int64_t n = qd_value_numel(w);
    uint8_t *code = malloc((size_t)(n > 0 ? n : 1));
    if (!code) return qd_errorf(QD_ERR_INTERNAL, "export: out of host memory for weight %s", w->name);
    qd_wstore store;
    qd_status st = qd_export_weight_codes(g, b->cfg, wi, code, &store);
    if (st != QD_OK) {
        free(code);
        return st;
    }
    if (store == QD_WSTORE_FLOAT) {
        /* Codes span more than int8 (8-bit asymmetric): the dequantized values are exact floats. */
        free(code);
        const char *name;
        QD_TRY(xb_unique(b, wname, "_fakequant", &name));
        QD_TRY(xb_init_f32(b, name, w->dims, w->ndim, wq->qweight, n));
        b->wq_read[wi] = name;
        return QD_OK;
    }
    const int64_t inner = qd_export_inner_stride(g, wq);
    const char *kname, *sname, *zname, *dqname;
    QD_TRY(xb_unique(b, wname, "_quantized", &kname));
    QD_TRY(xb_unique(b, wname, "_scale", &sname));
    QD_TRY(xb_unique(b, wname, "_zero_point", &zname));
    QD_TRY(xb_unique(b, wname, "_dequantized", &dqname));
    uint8_t *raw = NULL, *zraw = NULL;
    size_t nbytes, zbytes;
    int dtype;
    if (store == QD_WSTORE_INT4) {
        /* opset 21 INT4: two per byte, first element in the low nibble, odd tail zero-padded */
        nbytes = (size_t)(n + 1) / 2;
        zbytes = (size_t)(wq->channels + 1) / 2;
        dtype = XB_DT_INT4;
    } else {
        nbytes = (size_t)n;
        zbytes = (size_t)wq->channels;
        dtype = ONNX__TENSOR_PROTO__DATA_TYPE__INT8;
    }
    void *praw = NULL, *pzraw = NULL;
    st = xb_alloc(b, nbytes, &praw);
    if (st == QD_OK) st = xb_alloc(b, zbytes, &pzraw); /* zero points: all 0 */
    raw = praw;
    zraw = pzraw;
    if (st != QD_OK) {
        free(code);
        return st;
    }
    for (int64_t i = 0; i < n; i++) {
        int c = (int)((i / inner) % wq->channels);
        int k = (int)code[i] - (int)wq->zero_point[c];
        uint8_t byte = (uint8_t)(int8_t)k;
        if (store == QD_WSTORE_INT4)
            raw[i / 2] |= (uint8_t)((byte & 0x0F) << ((i & 1) ? 4 : 0));
        else
            raw[i] = byte;
    }
    free(code);
    QD_TRY(xb_init_raw(b, kname, dtype, w->dims, w->ndim, raw, nbytes));
    int64_t cdim = wq->channels;
    QD_TRY(xb_init_f32(b, sname, &cdim, 1, wq->scale, wq->channels));
    QD_TRY(xb_init_raw(b, zname, dtype, &cdim, 1, zraw, zbytes));
    Onnx__NodeProto *node;
    const char *ins[3] = {kname, sname, zname};
    QD_TRY(xb_node(b, "DequantizeLinear", dqname, 3, ins, 1, &dqname, &node));
    QD_TRY(attr_i(b, node, "axis", wq->ch_axis));
    b->wq_read[wi] = dqname;
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* IR nodes                                                                                    */
/* ------------------------------------------------------------------------------------------ */
static const char *op_type(qd_op op) {
    if ((int)op < 0 || op >= QD_OP_COUNT || (qd_op_traits(op) & QD_OPT_NO_EXPORT)) return NULL;
    return qd_op_name(op);
}

/* Name node n reads for its input slot i (NULL for an omitted optional input). */
static const char *input_name(xb *b, const qd_node *nd, int i) {
    int v = nd->inputs[i];
    if (v < 0 || v >= b->g->nvalues) return NULL;
    if (nd->wq >= 0 && nd->wq < b->g->nwq && v == b->g->wq[nd->wq].weight_value) return b->wq_read[nd->wq];
    if (b->g->values[v].is_const) b->need_init[v] = 1;
    return b->read_name[v];
}

static qd_status pool_attrs(xb *b, Onnx__NodeProto *n, const qd_attrs *a, int with_dilation) {
    int64_t k[2] = {a->kernel[0], a->kernel[1]};
    int64_t s[2] = {a->stride[0] ? a->stride[0] : 1, a->stride[1] ? a->stride[1] : 1};
    int64_t p[4] = {a->pads[0], a->pads[1], a->pads[2], a->pads[3]}; /* top,left,bottom,right */
    if (k[0] > 0 && k[1] > 0) QD_TRY(attr_ints(b, n, "kernel_shape", k, 2)); /* Conv: else from W */
    QD_TRY(attr_ints(b, n, "strides", s, 2));
    QD_TRY(attr_ints(b, n, "pads", p, 4));
    if (with_dilation) {
        int64_t d[2] = {a->dilation[0] ? a->dilation[0] : 1, a->dilation[1] ? a->dilation[1] : 1};
        QD_TRY(attr_ints(b, n, "dilations", d, 2));
    }
    return QD_OK;
}

/* One extra ONNX node of a decomposition: name and output are fresh names from base + suffix
 * (out_given: the IR output's name instead). */
static qd_status xb_step(xb *b, const char *op, const char *base, const char *suffix, int nin, const char *const *in,
                         const char *out_given, const char **out, Onnx__NodeProto **res) {
    const char *name;
    QD_TRY(xb_unique(b, base, suffix, &name));
    *out = out_given ? out_given : name;
    return xb_node(b, op, name, nin, in, 1, out, res);
}

/* LayerNormalization below opset 17, as the ops of its definition: (x - mean) / sqrt(var + eps) *
 * Scale + B over the axes [axis, rank). */
static qd_status emit_layernorm_ops(xb *b, const qd_node *nd, const char *const *ins, int nin, const char *y,
                                    const char *nname, int rank) {
    int64_t axes[QD_MAX_DIMS];
    int na = 0;
    for (int d = nd->a.axis; d < rank; d++) axes[na++] = d;
    Onnx__NodeProto *n;
    const char *mean, *dev, *sq, *var, *ve, *sd, *h, *hs, *eps, *o;
    const char *i1[1] = {ins[0]};
    QD_TRY(xb_step(b, "ReduceMean", nname, "_mean", 1, i1, NULL, &mean, &n));
    QD_TRY(attr_ints(b, n, "axes", axes, na));
    QD_TRY(attr_i(b, n, "keepdims", 1));
    const char *i2[2] = {ins[0], mean};
    QD_TRY(xb_step(b, "Sub", nname, "_dev", 2, i2, NULL, &dev, &n));
    const char *i3[2] = {dev, dev};
    QD_TRY(xb_step(b, "Mul", nname, "_sq", 2, i3, NULL, &sq, &n));
    const char *i4[1] = {sq};
    QD_TRY(xb_step(b, "ReduceMean", nname, "_var", 1, i4, NULL, &var, &n));
    QD_TRY(attr_ints(b, n, "axes", axes, na));
    QD_TRY(attr_i(b, n, "keepdims", 1));
    QD_TRY(xb_const_f(b, nname, "_eps", nd->a.epsilon, &eps));
    const char *i5[2] = {var, eps};
    QD_TRY(xb_step(b, "Add", nname, "_ve", 2, i5, NULL, &ve, &n));
    const char *i6[1] = {ve};
    QD_TRY(xb_step(b, "Sqrt", nname, "_sd", 1, i6, NULL, &sd, &n));
    const char *i7[2] = {dev, sd};
    QD_TRY(xb_step(b, "Div", nname, "_xhat", 2, i7, NULL, &h, &n));
    const int has_b = nin > 2 && ins[2];
    const char *i8[2] = {h, ins[1]};
    QD_TRY(xb_step(b, "Mul", nname, "_scaled", 2, i8, has_b ? NULL : y, &hs, &n));
    if (has_b) {
        const char *i9[2] = {hs, ins[2]};
        QD_TRY(xb_step(b, "Add", nname, "_shift", 2, i9, y, &o, &n));
    }
    return QD_OK;
}

/* Gelu below opset 20: (0.5 x) * (1 + Erf(x * 1/sqrt 2)), the order of core/nnmath.h. */
static qd_status emit_gelu_ops(xb *b, const char *x, const char *y, const char *nname) {
    Onnx__NodeProto *n;
    const char *c, *half, *one, *t, *e, *a, *h, *o;
    QD_TRY(xb_const_f(b, nname, "_rsqrt2", 0.70710678118654752f, &c));
    QD_TRY(xb_const_f(b, nname, "_half", 0.5f, &half));
    QD_TRY(xb_const_f(b, nname, "_one", 1.0f, &one));
    const char *i1[2] = {x, c};
    QD_TRY(xb_step(b, "Mul", nname, "_scaled", 2, i1, NULL, &t, &n));
    const char *i2[1] = {t};
    QD_TRY(xb_step(b, "Erf", nname, "_erf", 1, i2, NULL, &e, &n));
    const char *i3[2] = {one, e};
    QD_TRY(xb_step(b, "Add", nname, "_cdf2", 2, i3, NULL, &a, &n));
    const char *i4[2] = {x, half};
    QD_TRY(xb_step(b, "Mul", nname, "_halfx", 2, i4, NULL, &h, &n));
    const char *i5[2] = {h, a};
    return xb_step(b, "Mul", nname, "_gelu", 2, i5, y, &o, &n);
}

static qd_status emit_ir_node(xb *b, int ni) {
    const qd_graph *g = b->g;
    const qd_node *nd = &g->nodes[ni];
    const qd_attrs *a = &nd->a;
    const char *op = op_type(nd->op);
    const char *nname = nd->name ? nd->name : "node";
    if (nd->op == QD_OP_CONSTANT) return QD_OK; /* its output is emitted as an initializer */
    if (!op)
        return qd_errorf(QD_ERR_UNSUPPORTED, "export: node %s: op %s has no ONNX export", nname, qd_op_name(nd->op));
    if (nd->ninputs < 1 || nd->noutputs < 1)
        return qd_errorf(QD_ERR_INTERNAL, "export: node %s has no inputs or outputs", nname);

    const char *ins[8] = {0};
    int nin = 0;
    const char *outs[4];
    if (nd->noutputs > 4) return qd_errorf(QD_ERR_UNSUPPORTED, "export: node %s has %d outputs", nname, nd->noutputs);
    for (int i = 0; i < nd->noutputs; i++) {
        int v = nd->outputs[i];
        if (v < 0 || v >= g->nvalues) return qd_errorf(QD_ERR_INTERNAL, "export: node %s: bad output", nname);
        outs[i] = b->prod_name[v];
    }
    const qd_value *x = (nd->inputs[0] >= 0) ? &g->values[nd->inputs[0]] : NULL;
    const qd_value *y = &g->values[nd->outputs[0]];

    if (qd_op_traits(nd->op) & QD_OPT_TENSOR_IN) { /* every input is a tensor the IR keeps */
        if (nd->ninputs > 8) return qd_errorf(QD_ERR_UNSUPPORTED, "export: node %s has %d inputs", nname, nd->ninputs);
        for (int i = 0; i < nd->ninputs; i++) ins[i] = input_name(b, nd, i);
        nin = nd->ninputs;
    } else { /* shape-describing inputs were resolved into qd_attrs at load time: re-create them */
        ins[0] = input_name(b, nd, 0);
        nin = 1;
    }
    if (nd->op == QD_OP_GEMM && x && x->ndim > 2) {
        /* a Linear on [N, T, F] (the IR's Gemm on stacked rows; ONNX Gemm is 2-D only):
         * MatMul(x, Transpose(W)) + C, with the dequantized weight W [out, in] */
        if (a->trans_a || !a->trans_b || a->alpha != 1.0f || (nin > 2 && ins[2] && a->beta != 1.0f))
            return qd_errorf(QD_ERR_UNSUPPORTED, "export: node %s: Gemm on a rank-%d input needs transB = 1, alpha = beta = 1",
                             nname, x->ndim);
        const int has_c = nin > 2 && ins[2];
        const char *wt, *mm;
        Onnx__NodeProto *tn, *mn;
        QD_TRY(xb_unique(b, nname, "_weight_t", &wt));
        const char *ti[1] = {ins[1]};
        QD_TRY(xb_node(b, "Transpose", wt, 1, ti, 1, &wt, &tn));
        const int64_t perm[2] = {1, 0};
        QD_TRY(attr_ints(b, tn, "perm", perm, 2));
        if (has_c) QD_TRY(xb_unique(b, nname, "_matmul", &mm));
        else mm = outs[0];
        const char *mi[2] = {ins[0], wt};
        QD_TRY(xb_node(b, "MatMul", has_c ? mm : nname, 2, mi, 1, &mm, &mn));
        if (!has_c) return QD_OK;
        const char *ai[2] = {mm, ins[2]};
        return xb_node(b, "Add", nname, 2, ai, 1, outs, &mn);
    }
    if (!ins[0] && nd->op != QD_OP_CONCAT)
        return qd_errorf(QD_ERR_INTERNAL, "export: node %s: first input missing", nname);

    Onnx__NodeProto *n = NULL;
    if (nd->op == QD_OP_HARDSWISH && b->opset < 14) {
        /* HardSwish is opset 14; before it, x * HardSigmoid(x) with alpha 1/6, beta 1/2 (what
         * torch.onnx.export writes at those opsets) */
        const char *gate;
        QD_TRY(xb_unique(b, nname, "_hardsigmoid", &gate));
        QD_TRY(xb_node(b, "HardSigmoid", gate, 1, ins, 1, &gate, &n));
        QD_TRY(attr_f(b, n, "alpha", 1.0f / 6.0f));
        QD_TRY(attr_f(b, n, "beta", 0.5f));
        const char *mins[2] = {ins[0], gate};
        return xb_node(b, "Mul", nname, 2, mins, nd->noutputs, outs, &n);
    }
    /* ops newer than the export opset, written as the ops of their definition */
    if (nd->op == QD_OP_LAYERNORM && b->opset < 17) return emit_layernorm_ops(b, nd, ins, nin, outs[0], nname, x ? x->ndim : 0);
    if (nd->op == QD_OP_GELU && b->opset < 20) return emit_gelu_ops(b, ins[0], outs[0], nname);
    if (nd->op == QD_OP_SOFTMAX && nin > 1 && ins[1]) {
        /* the masked softmax (graph.h): Add(scores, mask) -> Softmax */
        const char *sum;
        const char *ai[2] = {ins[0], ins[1]};
        QD_TRY(xb_step(b, "Add", nname, "_masked", 2, ai, NULL, &sum, &n));
        ins[0] = sum;
        ins[1] = NULL;
        nin = 1;
    }
    switch (nd->op) {
    case QD_OP_CLIP: {
        const char *cmin = NULL, *cmax = NULL;
        if (isfinite(a->clip_min)) QD_TRY(xb_const_f(b, nname, "_min", a->clip_min, &cmin));
        if (isfinite(a->clip_max)) QD_TRY(xb_const_f(b, nname, "_max", a->clip_max, &cmax));
        ins[1] = cmin;
        ins[2] = cmax;
        nin = 3;
        break;
    }
    case QD_OP_RESHAPE: {
        int64_t shape[QD_MAX_DIMS];
        /* batch stays dynamic: 0 copies the input's batch when it is unchanged, else -1 infers it */
        for (int d = 0; d < y->ndim; d++) shape[d] = y->dims[d];
        if (y->ndim > 0 && x && !x->is_const) shape[0] = (x->ndim > 0 && x->dims[0] == y->dims[0]) ? 0 : -1;
        QD_TRY(xb_const_i64v(b, nname, "_shape", shape, y->ndim, &ins[1]));
        nin = 2;
        break;
    }
    case QD_OP_PAD: {
        int nd2 = x ? x->ndim : 0;
        int64_t pads[2 * QD_MAX_DIMS];
        for (int d = 0; d < nd2; d++) {
            pads[d] = a->pad_begin[d];
            pads[nd2 + d] = a->pad_end[d];
        }
        QD_TRY(xb_const_i64v(b, nname, "_pads", pads, 2 * nd2, &ins[1]));
        QD_TRY(xb_const_f(b, nname, "_value", a->pad_value, &ins[2]));
        nin = 3;
        break;
    }
    case QD_OP_SLICE: {
        int64_t st[QD_MAX_DIMS], en[QD_MAX_DIMS], ax[QD_MAX_DIMS], sp[QD_MAX_DIMS];
        int k = 0;
        for (int d = 0; d < y->ndim && x; d++) {
            int64_t step = a->slice_step[d] ? a->slice_step[d] : 1;
            int64_t start = a->slice_start[d];
            if (d < x->ndim && start == 0 && step == 1 && y->dims[d] == x->dims[d]) continue; /* whole axis */
            if (d == 0 && !x->is_const) continue; /* never slice the (dynamic) batch */
            int64_t end = start + step * y->dims[d];
            if (step < 0 && end < 0) end = INT64_MIN; /* past the front: a negative end would wrap */
            st[k] = start; en[k] = end; ax[k] = d; sp[k] = step;
            k++;
        }
        if (k == 0) { /* identity slice: keep a valid node */
            st[0] = 0; en[0] = INT64_MAX; ax[0] = y->ndim > 1 ? 1 : 0; sp[0] = 1;
            k = 1;
        }
        QD_TRY(xb_const_i64v(b, nname, "_starts", st, k, &ins[1]));
        QD_TRY(xb_const_i64v(b, nname, "_ends", en, k, &ins[2]));
        QD_TRY(xb_const_i64v(b, nname, "_axes", ax, k, &ins[3]));
        QD_TRY(xb_const_i64v(b, nname, "_steps", sp, k, &ins[4]));
        nin = 5;
        break;
    }
    case QD_OP_SQUEEZE: case QD_OP_UNSQUEEZE: /* exported at opset >= 13: axes as an input */
        QD_TRY(xb_const_i64v(b, nname, "_axes", a->axes, a->naxes, &ins[1]));
        nin = 2;
        break;
    case QD_OP_RESIZE: {
        /* Resize-13 inputs X, roi, scales. Scales reproduce the IR's output size when
         * (int64)(scale * in) gives it back (ONNX Runtime's rule); a size that no float scale
         * reproduces is written as sizes (opset 18 axes [2, 3], keeping the batch dynamic) */
        float sc[4] = {1.0f, 1.0f, a->resize_scale[0], a->resize_scale[1]};
        int exact = 1;
        for (int i = 0; i < 2 && x; i++) {
            /* ONNX Runtime sizes the output as (int64)(scale * in) in float, ONNX shape inference
             * as floor(scale * in) in double: out / in as a float may land just below the size in
             * either (7/6 * 6 = 6.99999976 in double); the next float up gives it in both (a
             * relative change of 1e-7 in the sampling positions) */
            int64_t in = x->dims[2 + i], want = y->dims[2 + i];
            for (int step = 0; step < 4 && ((int64_t)(sc[2 + i] * (float)in) < want ||
                                            (int64_t)floor((double)sc[2 + i] * (double)in) < want); step++)
                sc[2 + i] = nextafterf(sc[2 + i], INFINITY);
            exact &= (int64_t)(sc[2 + i] * (float)in) == want && (int64_t)floor((double)sc[2 + i] * (double)in) == want;
        }
        if (exact || b->opset < 18) {
            if (!exact)
                return qd_errorf(QD_ERR_UNSUPPORTED, "export: node %s (Resize): output size %lldx%lld has no float scale "
                                 "at opset %d; set output.onnx_opset to 18 or more", nname, (long long)y->dims[2],
                                 (long long)y->dims[3], b->opset);
            const char *sn;
            int64_t d4 = 4;
            QD_TRY(xb_unique(b, nname, "_scales", &sn));
            QD_TRY(xb_init_f32(b, sn, &d4, 1, sc, 4));
            ins[2] = sn;
        } else {
            int64_t sz[2] = {y->dims[2], y->dims[3]};
            QD_TRY(xb_const_i64v(b, nname, "_sizes", sz, 2, &ins[3]));
        }
        ins[1] = "";
        nin = ins[3] ? 4 : 3;
        break;
    }
    case QD_OP_REDUCEMEAN:
        if (b->opset >= 18 && a->naxes > 0) {
            QD_TRY(xb_const_i64v(b, nname, "_axes", a->axes, a->naxes, &ins[1]));
            nin = 2;
        }
        break;
    default:
        break;
    }
    QD_TRY(xb_node(b, op, nname, nin, ins, nd->noutputs, outs, &n));

    switch (nd->op) {
    case QD_OP_CONV: {
        QD_TRY(pool_attrs(b, n, a, 1));
        QD_TRY(attr_i(b, n, "group", a->group > 0 ? a->group : 1));
        break;
    }
    case QD_OP_GEMM:
        QD_TRY(attr_f(b, n, "alpha", a->alpha));
        QD_TRY(attr_f(b, n, "beta", a->beta));
        QD_TRY(attr_i(b, n, "transA", a->trans_a));
        QD_TRY(attr_i(b, n, "transB", a->trans_b));
        break;
    case QD_OP_BATCHNORM:
        QD_TRY(attr_f(b, n, "epsilon", a->epsilon));
        break;
    case QD_OP_RESIZE: {
        static const char *const coord[] = {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"};
        static const char *const nearest[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
        QD_TRY(attr_s(b, n, "mode", a->resize_mode == QD_RESIZE_LINEAR ? "linear" : "nearest"));
        QD_TRY(attr_s(b, n, "coordinate_transformation_mode", coord[a->resize_coord & 3]));
        QD_TRY(attr_s(b, n, "nearest_mode", nearest[a->resize_nearest & 3]));
        if (nin == 4) {
            int64_t ax[2] = {2, 3};
            QD_TRY(attr_ints(b, n, "axes", ax, 2));
        }
        break;
    }
    case QD_OP_HARDSIGMOID:
        QD_TRY(attr_f(b, n, "alpha", a->alpha));
        QD_TRY(attr_f(b, n, "beta", a->beta));
        break;
    case QD_OP_MAXPOOL: {
        QD_TRY(pool_attrs(b, n, a, 1));
        QD_TRY(attr_i(b, n, "ceil_mode", a->ceil_mode));
        break;
    }
    case QD_OP_AVGPOOL:
        QD_TRY(pool_attrs(b, n, a, 0));
        QD_TRY(attr_i(b, n, "ceil_mode", a->ceil_mode));
        QD_TRY(attr_i(b, n, "count_include_pad", a->count_include_pad));
        break;
    case QD_OP_REDUCEMEAN:
        if (b->opset < 18 && a->naxes > 0) QD_TRY(attr_ints(b, n, "axes", a->axes, a->naxes));
        QD_TRY(attr_i(b, n, "keepdims", a->keepdims));
        break;
    case QD_OP_FLATTEN: case QD_OP_CONCAT: case QD_OP_SOFTMAX:
        QD_TRY(attr_i(b, n, "axis", a->axis));
        break;
    case QD_OP_LAYERNORM:
        QD_TRY(attr_i(b, n, "axis", a->axis));
        QD_TRY(attr_f(b, n, "epsilon", a->epsilon));
        break;
    case QD_OP_TRANSPOSE:
        if (a->nperm > 0) QD_TRY(attr_ints(b, n, "perm", a->perm, a->nperm));
        break;
    case QD_OP_PAD:
        QD_TRY(attr_s(b, n, "mode", "constant"));
        break;
    default:
        break;
    }
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* whole model                                                                                 */
/* ------------------------------------------------------------------------------------------ */
static int ir_version_for_opset(int opset) {
    /* onnx/docs/Versioning.md: opset 13-14 -> IR 7, 15-18 -> IR 8, 19-20 -> IR 9, 21 -> IR 10 */
    if (opset <= 14) return 7;
    if (opset <= 18) return 8;
    if (opset <= 20) return 9;
    return 10;
}

static qd_status build(xb *b, Onnx__ModelProto *model) {
    const qd_graph *g = b->g;
    const int nv = g->nvalues;
    XB_ALLOC(b, b->read_name, (size_t)(nv ? nv : 1) * sizeof(char *));
    XB_ALLOC(b, b->prod_name, (size_t)(nv ? nv : 1) * sizeof(char *));
    XB_ALLOC(b, b->need_init, (size_t)(nv ? nv : 1));
    XB_ALLOC(b, b->act_of, (size_t)(nv ? nv : 1) * sizeof(int));
    XB_ALLOC(b, b->wq_read, (size_t)(g->nwq ? g->nwq : 1) * sizeof(char *));

    for (int v = 0; v < nv; v++) {
        b->act_of[v] = -1;
        if (!g->values[v].name || !g->values[v].name[0]) continue; /* dead value left by a pass */
        char *nm;
        QD_TRY(xb_strdup(b, g->values[v].name, &nm));
        QD_TRY(set_add(b, nm));
        b->read_name[v] = b->prod_name[v] = nm;
    }
    for (int v = 0; v < nv; v++) /* unnamed values still read by a node get a fresh name */
        if (!b->read_name[v]) {
            char base[32];
            snprintf(base, sizeof base, "qd_value_%d", v);
            QD_TRY(xb_unique(b, base, "", &b->read_name[v]));
            b->prod_name[v] = b->read_name[v];
        }
    for (int i = 0; i < g->nact; i++) {
        const qd_act_quant *a = &g->act[i];
        if (a->initialized && (a->value < 0 || a->value >= nv))
            return qd_errorf(QD_ERR_INTERNAL, "export: activation quantizer %d on unknown value %d", i, a->value);
        if (qd_export_act_exported(g, i)) b->act_of[a->value] = i;
    }
    /* Graph outputs keep their names: a quantized output's producer writes "<name>_float" and
     * the DequantizeLinear writes <name>. Elsewhere consumers read "<name>_dq". */
    for (int v = 0; v < nv; v++) {
        if (b->act_of[v] < 0) continue;
        int is_out = 0;
        for (int o = 0; o < g->noutputs; o++) is_out |= (g->outputs[o] == v);
        if (is_out)
            QD_TRY(xb_unique(b, b->read_name[v], "_float", &b->prod_name[v]));
        else
            QD_TRY(xb_unique(b, b->prod_name[v], "_dq", &b->read_name[v]));
    }

    for (int wi = 0; wi < g->nwq; wi++) {
        const qd_weight_quant *wq = &g->wq[wi];
        if (wq->node < 0 || wq->node >= g->nnodes || g->nodes[wq->node].wq != wi)
            return qd_errorf(QD_ERR_INTERNAL, "export: weight quantizer %d is not attached to node %d", wi, wq->node);
        QD_TRY(emit_weight(b, wi));
    }
    for (int ni = 0; ni < g->nnodes; ni++) {
        QD_TRY(emit_ir_node(b, ni));
        const qd_node *nd = &g->nodes[ni];
        for (int o = 0; o < nd->noutputs; o++) {
            int v = nd->outputs[o];
            if (b->act_of[v] >= 0) QD_TRY(emit_act(b, b->act_of[v]));
        }
    }
    /* graph outputs that are constants or inputs would need Identity nodes; not produced by
     * any model we read, so refuse clearly rather than write an invalid graph */
    for (int o = 0; o < g->noutputs; o++)
        if (g->values[g->outputs[o]].producer < 0)
            return qd_errorf(QD_ERR_UNSUPPORTED, "export: graph output %s is not produced by a node",
                             b->read_name[g->outputs[o]]);

    /* constant initializers the emitted nodes read */
    for (int v = 0; v < nv; v++) {
        if (!b->need_init[v]) continue;
        const qd_value *cv = &g->values[v];
        int64_t n = qd_value_numel(cv);
        if (cv->dtype == QD_DT_FLOAT) {
            if (!cv->fdata) return qd_errorf(QD_ERR_INTERNAL, "export: constant %s has no data", cv->name);
            QD_TRY(xb_init_f32(b, b->read_name[v], cv->dims, cv->ndim, cv->fdata, n));
        } else {
            if (!cv->idata) return qd_errorf(QD_ERR_INTERNAL, "export: constant %s has no data", cv->name);
            QD_TRY(xb_init_i64(b, b->read_name[v], cv->dims, cv->ndim, cv->idata, n));
        }
    }

    Onnx__GraphProto *gp;
    XB_ALLOC(b, gp, sizeof *gp);
    *gp = (Onnx__GraphProto)ONNX__GRAPH_PROTO__INIT;
    QD_TRY(xb_strdup(b, "qdrop_qdq", &gp->name));
    gp->n_node = b->nnodes;
    gp->node = b->nodes;
    gp->n_initializer = b->ninits;
    gp->initializer = b->inits;
    XB_ALLOC(b, gp->input, (size_t)(g->ninputs ? g->ninputs : 1) * sizeof *gp->input);
    for (int i = 0; i < g->ninputs; i++)
        QD_TRY(xb_value_info(b, b->read_name[g->inputs[i]], &g->values[g->inputs[i]], &gp->input[i]));
    gp->n_input = (size_t)g->ninputs;
    XB_ALLOC(b, gp->output, (size_t)(g->noutputs ? g->noutputs : 1) * sizeof *gp->output);
    for (int i = 0; i < g->noutputs; i++)
        QD_TRY(xb_value_info(b, b->read_name[g->outputs[i]], &g->values[g->outputs[i]], &gp->output[i]));
    gp->n_output = (size_t)g->noutputs;

    Onnx__OperatorSetIdProto *os;
    XB_ALLOC(b, os, sizeof *os);
    *os = (Onnx__OperatorSetIdProto)ONNX__OPERATOR_SET_ID_PROTO__INIT;
    QD_TRY(xb_strdup(b, "", &os->domain));
    os->has_version = 1;
    os->version = b->opset;
    XB_ALLOC(b, model->opset_import, sizeof *model->opset_import);
    model->opset_import[0] = os;
    model->n_opset_import = 1;

    model->has_ir_version = 1;
    model->ir_version = ir_version_for_opset(b->opset);
    QD_TRY(xb_strdup(b, "qdrop-gpu", &model->producer_name));
#ifdef QD_VERSION_STRING
    QD_TRY(xb_strdup(b, QD_VERSION_STRING, &model->producer_version));
#endif
    QD_TRY(xb_strdup(b,
                     "QDrop post-training quantized model as QDQ: INT8 containers with clipped b-bit grids, "
                     "zero points 0 (docs/export.md)",
                     &model->doc_string));
    model->graph = gp;

    /* metadata: the b-bit setting the INT8 containers carry */
    const qd_config *c = b->cfg;
    char buf[3][32];
    snprintf(buf[0], sizeof buf[0], "%d", c->w_qconfig.bit);
    snprintf(buf[1], sizeof buf[1], "%d", c->a_qconfig.bit);
    snprintf(buf[2], sizeof buf[2], "%d", c->first_last_8bit);
    const char *keys[4] = {"qdrop.mode", "qdrop.w_bits", "qdrop.a_bits", "qdrop.first_last_8bit"};
    const char *vals[4] = {qd_mode_name(c->mode), buf[0], buf[1], buf[2]};
    XB_ALLOC(b, model->metadata_props, 4 * sizeof *model->metadata_props);
    for (int i = 0; i < 4; i++) {
        Onnx__StringStringEntryProto *e;
        XB_ALLOC(b, e, sizeof *e);
        *e = (Onnx__StringStringEntryProto)ONNX__STRING_STRING_ENTRY_PROTO__INIT;
        QD_TRY(xb_strdup(b, keys[i], &e->key));
        QD_TRY(xb_strdup(b, vals[i] ? vals[i] : "?", &e->value));
        model->metadata_props[i] = e;
    }
    model->n_metadata_props = 4;
    return QD_OK;
}

static void xb_free(xb *b) {
    for (size_t i = 0; i < b->nallocs; i++) free(b->allocs[i]);
    free(b->allocs);
    free(b->nodes);
    free(b->inits);
    free(b->set);
}

qd_status qd_export_qdq_onnx(const qd_graph *g, const qd_config *cfg, const char *path) {
    if (!g || !cfg || !path) return qd_errorf(QD_ERR_INTERNAL, "export: qd_export_qdq_onnx: NULL argument");
    const int opset = qd_export_opset(cfg);
    if (opset < QD_EXPORT_OPSET_MIN || opset > QD_EXPORT_OPSET_MAX)
        return qd_errorf(QD_ERR_CONFIG, "output.onnx_opset: expected %d..%d, got %d", QD_EXPORT_OPSET_MIN,
                         QD_EXPORT_OPSET_MAX, opset);
    if (cfg->int4_weights && opset < 21)
        return qd_errorf(QD_ERR_CONFIG, "output.int4_weights: INT4 initializers need output.onnx_opset 21, got %d",
                         opset);
    xb b;
    memset(&b, 0, sizeof b);
    b.g = g;
    b.cfg = cfg;
    b.opset = opset;
    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    qd_status st = build(&b, &model);
    if (st == QD_OK) {
        size_t len = onnx__model_proto__get_packed_size(&model);
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf) {
            st = qd_errorf(QD_ERR_INTERNAL, "export: out of host memory packing %s (%zu bytes)", path, len);
        } else {
            size_t packed = onnx__model_proto__pack(&model, buf);
            if (packed != len)
                st = qd_errorf(QD_ERR_INTERNAL, "export: packed %zu of %zu bytes for %s", packed, len, path);
            else
                st = qd_write_file_atomic(path, buf, len);
            free(buf);
        }
    }
    xb_free(&b);
    return st;
}
