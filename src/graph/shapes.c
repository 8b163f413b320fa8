/* src/graph/shapes.c: shape inference for every op of the IR.
 *
 * Convention: dims[0] of an activation is the batch; while symbolic it is carried as 1 and
 * batch_symbolic is set. Ops that would mix the batch into another axis (Flatten axis 0, a
 * Reshape/Transpose/Concat/Slice/Pad touching axis 0, ...) are rejected as unsupported, so an
 * executor can substitute any batch size without re-inferring shapes.
 * Also resolves what needs the input shape: Conv kernel from the weight, Slice starts/steps over
 * all dims, negative axes (Concat/Softmax/Flatten/ReduceMean), default Transpose perm.
 * Sizes come from an untrusted file: every sum and product is checked (core/checked.h) and every
 * output holds at most QD_MAX_TENSOR_NUMEL elements, so later int arithmetic cannot overflow.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "graph/graph_internal.h"
#include "qdrop/graph.h"

static const char *src(const qd_graph *g) { return g->source_path ? g->source_path : "graph"; }

#define FAIL(st, ...) return qd_errorf((st), __VA_ARGS__)

static qd_status set_out(qd_graph *g, const qd_node *n, int ndim, const int64_t *dims, int sym) {
    if (n->noutputs < 1 || n->outputs[0] < 0) FAIL(QD_ERR_DATA, "%s: node '%s' has no output", src(g), n->name);
    if (ndim > QD_MAX_DIMS) FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s': more than %d dims", src(g), n->name, QD_MAX_DIMS);
    for (int d = 0; d < ndim; d++)
        if (dims[d] < 0) FAIL(QD_ERR_DATA, "%s: node '%s': negative output dimension", src(g), n->name);
    int64_t numel;
    if (!qd_shape_numel_checked(ndim, dims, QD_MAX_TENSOR_NUMEL, &numel))
        FAIL(QD_ERR_DATA, "%s: node '%s' (%s): output has more than %lld elements", src(g), n->name, qd_op_name(n->op),
             (long long)QD_MAX_TENSOR_NUMEL);
    qd_value *o = &g->values[n->outputs[0]];
    o->ndim = ndim;
    for (int d = 0; d < ndim; d++) o->dims[d] = dims[d];
    o->dtype = QD_DT_FLOAT;
    o->batch_symbolic = sym;
    return QD_OK;
}

/* Axis in [-nd, nd) -> [0, nd); -1 when out of range (never truncates an int64 into range). */
static int norm_axis(int64_t a, int nd) {
    if (a < -(int64_t)nd || a >= nd) return -1;
    return (int)(a < 0 ? a + nd : a);
}

/* ONNX auto_pad -> explicit pads from the static spatial shape, as ONNX Runtime computes them:
 * VALID pads nothing; SAME_* pads so that out = ceil(in / stride), the odd pixel at the end
 * (SAME_UPPER) or the beginning (SAME_LOWER). ceil_mode does not apply to SAME (the output
 * size is fixed), so it is cleared to keep the explicit-pads formula exact. */
static qd_status resolve_auto_pad(qd_graph *g, qd_node *n, const qd_value *x) {
    qd_attrs *a = &n->a;
    if (a->auto_pad == QD_AUTO_PAD_NOTSET) return QD_OK;
    for (int i = 0; i < 2; i++) {
        int64_t in = x->dims[2 + i], s = a->stride[i];
        int64_t k = (int64_t)a->dilation[i] * (a->kernel[i] - 1) + 1;
        int64_t total = 0;
        if (a->auto_pad != QD_AUTO_PAD_VALID) {
            int64_t out = (in + s - 1) / s;
            total = (out - 1) * s + k - in;
            if (total < 0) total = 0;
        }
        if (total > INT32_MAX)
            FAIL(QD_ERR_DATA, "%s: node '%s' (%s): auto_pad needs %lld pixels of padding", src(g), n->name,
                 qd_op_name(n->op), (long long)total);
        int64_t lo = a->auto_pad == QD_AUTO_PAD_SAME_LOWER ? total - total / 2 : total / 2;
        a->pads[i] = (int)lo;
        a->pads[2 + i] = (int)(total - lo);
    }
    if (a->auto_pad != QD_AUTO_PAD_VALID) a->ceil_mode = 0;
    a->auto_pad = QD_AUTO_PAD_NOTSET;
    return QD_OK;
}

static qd_status pool_dims(qd_graph *g, qd_node *n, const qd_value *x, int cout, int64_t *od) {
    QD_TRY(resolve_auto_pad(g, n, x));
    const qd_attrs *a = &n->a;
    od[0] = x->dims[0];
    od[1] = cout;
    for (int i = 0; i < 2; i++) {
        /* pads, kernel, stride, dilation are ints (checked at load), dims <= QD_MAX_TENSOR_NUMEL:
         * these int64 sums cannot overflow; the padded extent must still fit an int for the
         * backends' index arithmetic. */
        int64_t in = x->dims[2 + i] + a->pads[i] + a->pads[2 + i];
        int64_t k = (int64_t)a->dilation[i] * (a->kernel[i] - 1) + 1;
        if (in > INT32_MAX || k > INT32_MAX)
            FAIL(QD_ERR_DATA, "%s: node '%s' (%s): padded input %lld or dilated kernel %lld exceeds %d", src(g),
                 n->name, qd_op_name(n->op), (long long)in, (long long)k, INT32_MAX);
        if (n->op != QD_OP_CONV && (a->pads[i] >= a->kernel[i] || a->pads[2 + i] >= a->kernel[i]))
            FAIL(QD_ERR_DATA, "%s: node '%s' (%s): pads (%d, %d) must be smaller than the kernel (%d)", src(g), n->name,
                 qd_op_name(n->op), a->pads[i], a->pads[2 + i], a->kernel[i]);
        if (in < k) FAIL(QD_ERR_DATA, "%s: node '%s': kernel %d larger than padded input %lld", src(g), n->name,
                         a->kernel[i], (long long)in);
        int64_t num = in - k;
        int64_t o = (a->ceil_mode ? (num + a->stride[i] - 1) / a->stride[i] : num / a->stride[i]) + 1;
        /* ceil_mode: the last window must start inside the input or left padding (ONNX/PyTorch rule). */
        if (a->ceil_mode && (o - 1) * a->stride[i] >= x->dims[2 + i] + a->pads[i]) o--;
        od[2 + i] = o;
    }
    return QD_OK;
}

static qd_status infer_node(qd_graph *g, qd_node *n) {
    qd_attrs *a = &n->a;
    if (n->ninputs < 1 || n->inputs[0] < 0) FAIL(QD_ERR_DATA, "%s: node '%s' has no input", src(g), n->name);
    const qd_value *x = &g->values[n->inputs[0]];
    int sym = 0;
    for (int k = 0; k < n->ninputs; k++)
        if (n->inputs[k] >= 0 && !g->values[n->inputs[k]].is_const) sym |= g->values[n->inputs[k]].batch_symbolic;
    int batchy = !x->is_const; /* dims[0] of x is the batch */
    int64_t od[QD_MAX_DIMS];
    int nd = x->ndim;
    memcpy(od, x->dims, sizeof od);
    const qd_value *w = n->ninputs > 1 && n->inputs[1] >= 0 ? &g->values[n->inputs[1]] : NULL;
    /* Reshape/Slice drop their int64 inputs once resolved (graph.h: executors never read them);
     * a second pass keeps the resolved attrs and output shape. */
    if ((n->op == QD_OP_RESHAPE || n->op == QD_OP_SLICE) && n->ninputs == 1) return QD_OK;

    switch (n->op) {
    case QD_OP_CONV: {
        if (x->ndim != 4) FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Conv): only 2-D convolution on NCHW inputs "
                               "(input rank %d)", src(g), n->name, x->ndim);
        if (!w || w->ndim != 4) FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Conv): weight must be a 4-D tensor", src(g), n->name);
        if (a->kernel[0] == 0 && a->kernel[1] == 0) {
            a->kernel[0] = (int)w->dims[2];
            a->kernel[1] = (int)w->dims[3];
        }
        if (a->kernel[0] != w->dims[2] || a->kernel[1] != w->dims[3])
            FAIL(QD_ERR_DATA, "%s: node '%s' (Conv): kernel_shape disagrees with the weight", src(g), n->name);
        if (w->dims[1] * a->group != x->dims[1] || w->dims[0] % a->group != 0)
            FAIL(QD_ERR_DATA, "%s: node '%s' (Conv): input has %lld channels, weight [%lld,%lld,..] with group %d",
                 src(g), n->name, (long long)x->dims[1], (long long)w->dims[0], (long long)w->dims[1], a->group);
        if (n->ninputs > 2 && n->inputs[2] >= 0 && qd_value_numel(&g->values[n->inputs[2]]) != w->dims[0])
            FAIL(QD_ERR_DATA, "%s: node '%s' (Conv): bias size differs from %lld output channels", src(g), n->name,
                 (long long)w->dims[0]);
        QD_TRY(pool_dims(g, n, x, (int)w->dims[0], od));
        break;
    }
    case QD_OP_MAXPOOL:
    case QD_OP_AVGPOOL:
        if (x->ndim != 4) FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s': only 2-D pooling on NCHW inputs", src(g), n->name);
        QD_TRY(pool_dims(g, n, x, (int)x->dims[1], od));
        break;
    case QD_OP_GLOBALAVGPOOL:
        if (x->ndim < 3) FAIL(QD_ERR_DATA, "%s: node '%s' (GlobalAveragePool): rank %d", src(g), n->name, x->ndim);
        for (int d = 2; d < nd; d++) od[d] = 1;
        break;
    case QD_OP_GEMM: {
        /* Internally A may also be [N, T, F] (rows = every leading dim, a Linear applied per token
         * as built by src/bert/bert_graph.c); ONNX Gemm and the reader stay 2-D. */
        if (!w || x->ndim < 2 || w->ndim != 2 || (x->ndim != 2 && a->trans_a))
            FAIL(QD_ERR_DATA, "%s: node '%s' (Gemm): inputs must be 2-D", src(g), n->name);
        if (a->trans_a && batchy)
            FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Gemm): transA on an activation", src(g), n->name);
        int64_t M = a->trans_a ? x->dims[1] : x->dims[x->ndim - 2], K = a->trans_a ? x->dims[0] : x->dims[x->ndim - 1];
        int64_t K2 = a->trans_b ? w->dims[1] : w->dims[0], N = a->trans_b ? w->dims[0] : w->dims[1];
        if (K != K2) FAIL(QD_ERR_DATA, "%s: node '%s' (Gemm): inner dimensions %lld and %lld differ", src(g), n->name,
                          (long long)K, (long long)K2);
        if (n->ninputs > 2 && n->inputs[2] >= 0) {
            const qd_value *c = &g->values[n->inputs[2]];
            int64_t cn = qd_value_numel(c);
            if (cn != 1 && cn != N && !(c->ndim == 2 && c->dims[0] == M && c->dims[1] == N))
                FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Gemm): bias C must be a scalar or [%lld]", src(g), n->name,
                     (long long)N);
        }
        nd = x->ndim;
        od[nd - 2] = M;
        od[nd - 1] = N;
        break;
    }
    case QD_OP_MATMUL: {
        if (!w || x->ndim < 2 || w->ndim < 2)
            FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (MatMul): both inputs must have rank >= 2", src(g), n->name);
        if (x->dims[x->ndim - 1] != w->dims[w->ndim - 2])
            FAIL(QD_ERR_DATA, "%s: node '%s' (MatMul): inner dimensions differ", src(g), n->name);
        nd = x->ndim > w->ndim ? x->ndim : w->ndim;
        for (int d = 0; d < nd - 2; d++) {
            int ox = d - (nd - x->ndim), ow = d - (nd - w->ndim);
            int64_t p = ox >= 0 ? x->dims[ox] : 1, q = ow >= 0 ? w->dims[ow] : 1;
            if (p != q && p != 1 && q != 1) FAIL(QD_ERR_DATA, "%s: node '%s' (MatMul): batch dims differ", src(g), n->name);
            od[d] = p == 1 ? q : p;
        }
        od[nd - 2] = x->dims[x->ndim - 2];
        od[nd - 1] = w->dims[w->ndim - 1];
        if (batchy && nd != x->ndim)
            FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (MatMul): broadcasting adds dims before the batch", src(g), n->name);
        break;
    }
    case QD_OP_ADD: case QD_OP_SUB: case QD_OP_MUL: case QD_OP_DIV: {
        const qd_value *y = w;
        if (!y) FAIL(QD_ERR_DATA, "%s: node '%s' (%s) needs two inputs", src(g), n->name, qd_op_name(n->op));
        nd = x->ndim > y->ndim ? x->ndim : y->ndim;
        for (int d = 0; d < nd; d++) {
            int ox = d - (nd - x->ndim), oy = d - (nd - y->ndim);
            int64_t p = ox >= 0 ? x->dims[ox] : 1, q = oy >= 0 ? y->dims[oy] : 1;
            if (p != q && p != 1 && q != 1)
                FAIL(QD_ERR_DATA, "%s: node '%s' (%s): shapes do not broadcast at dim %d (%lld vs %lld)", src(g),
                     n->name, qd_op_name(n->op), d, (long long)p, (long long)q);
            od[d] = p == 1 ? q : p;
        }
        /* the batch must stay axis 0: an activation of lower rank than the result would not be batched */
        for (int k = 0; k < 2; k++) {
            const qd_value *t = &g->values[n->inputs[k]];
            if (!t->is_const && t->ndim != nd)
                FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (%s): broadcasting adds dims before the batch", src(g),
                     n->name, qd_op_name(n->op));
            if (t->is_const && t->ndim == nd && nd > 0 && t->dims[0] != 1 && sym)
                FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (%s): constant operand spans the batch dimension", src(g),
                     n->name, qd_op_name(n->op));
        }
        break;
    }
    case QD_OP_RELU: case QD_OP_CLIP: case QD_OP_SIGMOID: case QD_OP_IDENTITY: case QD_OP_HARDSIGMOID:
    case QD_OP_HARDSWISH: case QD_OP_GELU:
        break;
    case QD_OP_SOFTMAX:
        a->axis = norm_axis(a->axis, nd);
        if (a->axis < 0 || a->axis >= nd || (batchy && a->axis == 0))
            FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Softmax): axis out of range or over the batch", src(g), n->name);
        if (n->ninputs > 1 && n->inputs[1] >= 0) {
            /* additive mask (graph.h): broadcasts to x (numpy rules, right-aligned) without growing it;
             * an activation mask keeps x's rank so that its axis 0 is the batch */
            if (n->opset > 0 && n->opset < 13)
                FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Softmax): a mask input needs the opset-13 single-axis form",
                     src(g), n->name);
            if (w->ndim > nd || (!w->is_const && w->ndim != nd))
                FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Softmax): mask has rank %d, scores rank %d", src(g), n->name,
                     w->ndim, nd);
            for (int d = 0; d < w->ndim; d++)
                if (w->dims[d] != 1 && w->dims[d] != x->dims[nd - w->ndim + d])
                    FAIL(QD_ERR_DATA, "%s: node '%s' (Softmax): mask dim %d (%lld) does not broadcast to %lld", src(g),
                         n->name, d, (long long)w->dims[d], (long long)x->dims[nd - w->ndim + d]);
        }
        break;
    case QD_OP_LAYERNORM: {
        a->axis = norm_axis(a->axis, nd);
        if (a->axis < 0 || (batchy && a->axis == 0))
            FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (LayerNormalization): axis out of range or over the batch", src(g),
                 n->name);
        int64_t len = 1;
        for (int d = a->axis; d < nd; d++) len *= x->dims[d];
        for (int k = 1; k < 3 && k < n->ninputs; k++) {
            int v = n->inputs[k];
            if (v < 0) {
                if (k == 1) FAIL(QD_ERR_DATA, "%s: node '%s' (LayerNormalization): needs Scale", src(g), n->name);
                continue;
            }
            if (!g->values[v].is_const || !g->values[v].fdata || qd_value_numel(&g->values[v]) != len)
                FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (LayerNormalization): %s must be a constant float tensor of "
                     "%lld elements (the normalised dims)", src(g), n->name, k == 1 ? "Scale" : "B", (long long)len);
        }
        if (n->ninputs < 2) FAIL(QD_ERR_DATA, "%s: node '%s' (LayerNormalization): needs Scale", src(g), n->name);
        break;
    }
    case QD_OP_BATCHNORM: {
        if (nd < 2) FAIL(QD_ERR_DATA, "%s: node '%s' (BatchNormalization): rank %d", src(g), n->name, nd);
        if (n->ninputs < 5) FAIL(QD_ERR_DATA, "%s: node '%s' (BatchNormalization): needs 5 inputs", src(g), n->name);
        for (int k = 1; k < 5; k++) {
            int v = n->inputs[k];
            if (v < 0 || !g->values[v].is_const || !g->values[v].fdata || qd_value_numel(&g->values[v]) != x->dims[1])
                FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (BatchNormalization): parameters must be constant float "
                     "tensors of %lld channels", src(g), n->name, (long long)x->dims[1]);
        }
        break;
    }
    case QD_OP_REDUCEMEAN: {
        unsigned char red[QD_MAX_DIMS] = {0};
        if (a->naxes == 0) {
            a->naxes = nd;
            for (int d = 0; d < nd; d++) a->axes[d] = d;
        }
        for (int k = 0; k < a->naxes; k++) {
            int ax = norm_axis(a->axes[k], nd);
            if (ax < 0 || ax >= nd) FAIL(QD_ERR_DATA, "%s: node '%s' (ReduceMean): axis out of range", src(g), n->name);
            if (batchy && ax == 0)
                FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (ReduceMean): reducing over the batch", src(g), n->name);
            a->axes[k] = ax;
            red[ax] = 1;
        }
        int o = 0;
        for (int d = 0; d < nd; d++) {
            if (!red[d]) od[o++] = x->dims[d];
            else if (a->keepdims) od[o++] = 1;
        }
        nd = o;
        break;
    }
    case QD_OP_FLATTEN: {
        a->axis = a->axis == nd ? nd : norm_axis(a->axis, nd); /* Flatten allows axis == rank */
        if (a->axis < 0 || a->axis > nd) FAIL(QD_ERR_DATA, "%s: node '%s' (Flatten): axis out of range", src(g), n->name);
        if (batchy && a->axis == 0)
            FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Flatten): axis 0 would merge the batch", src(g), n->name);
        int64_t p = 1, q = 1;
        for (int d = 0; d < a->axis; d++) p *= x->dims[d];
        for (int d = a->axis; d < nd; d++) q *= x->dims[d];
        nd = 2;
        od[0] = p;
        od[1] = q;
        break;
    }
    case QD_OP_RESHAPE: {
        const qd_value *s = w;
        if (!s || !s->is_const || !s->idata || qd_value_numel(s) > QD_MAX_DIMS)
            FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Reshape): the target shape must be a constant int64 tensor",
                 src(g), n->name);
        nd = (int)qd_value_numel(s);
        int neg = -1;
        int64_t known = 1, numel = qd_value_numel(x);
        for (int d = 0; d < nd; d++) {
            od[d] = s->idata[d];
            if (od[d] == 0 && d < x->ndim) od[d] = x->dims[d];
            if (od[d] == -1) {
                if (neg >= 0) FAIL(QD_ERR_DATA, "%s: node '%s' (Reshape): two -1 dims", src(g), n->name);
                neg = d;
            } else if (od[d] < 0) {
                FAIL(QD_ERR_DATA, "%s: node '%s' (Reshape): bad target dim %lld", src(g), n->name, (long long)od[d]);
            } else if (!qd_mul_i64_checked(known, od[d], &known) || known > QD_MAX_TENSOR_NUMEL) {
                FAIL(QD_ERR_DATA, "%s: node '%s' (Reshape): target shape has more than %lld elements", src(g), n->name,
                     (long long)QD_MAX_TENSOR_NUMEL);
            }
        }
        if (neg >= 0) od[neg] = known ? numel / known : 0;
        int64_t chk;
        if (!qd_shape_numel_checked(nd, od, QD_MAX_TENSOR_NUMEL, &chk) || chk != numel)
            FAIL(QD_ERR_DATA, "%s: node '%s' (Reshape): %lld elements cannot take the target shape", src(g), n->name,
                 (long long)numel);
        /* With the batch carried as 1, the batch stays axis 0 only if the result keeps it there. */
        if (batchy && (nd < 1 || od[0] != x->dims[0] || (s->idata[0] > 0 && sym)))
            FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Reshape): the target shape must keep the batch as dimension 0 "
                 "(use 0 or -1 there)", src(g), n->name);
        break;
    }
    case QD_OP_PAD: {
        if (a->nperm != 0 && a->nperm != nd)
            FAIL(QD_ERR_DATA, "%s: node '%s' (Pad): pads describe %d dims, input has %d", src(g), n->name, a->nperm, nd);
        a->nperm = 0;
        for (int d = 0; d < nd; d++)
            if (a->pad_begin[d] < 0 || a->pad_end[d] < 0 || !qd_add_i64_checked(x->dims[d], a->pad_begin[d], &od[d]) ||
                !qd_add_i64_checked(od[d], a->pad_end[d], &od[d]) || od[d] > QD_MAX_TENSOR_NUMEL)
                FAIL(QD_ERR_DATA, "%s: node '%s' (Pad): pads %lld + %lld on dimension %d of %lld are too large", src(g),
                     n->name, (long long)a->pad_begin[d], (long long)a->pad_end[d], d, (long long)x->dims[d]);
        if (batchy && (a->pad_begin[0] || a->pad_end[0]))
            FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Pad): padding the batch dimension", src(g), n->name);
        break;
    }
    case QD_OP_SLICE: {
        const qd_value *sv = w, *ev = n->ninputs > 2 && n->inputs[2] >= 0 ? &g->values[n->inputs[2]] : NULL;
        const qd_value *av = n->ninputs > 3 && n->inputs[3] >= 0 ? &g->values[n->inputs[3]] : NULL;
        const qd_value *pv = n->ninputs > 4 && n->inputs[4] >= 0 ? &g->values[n->inputs[4]] : NULL;
        if (!sv || !ev || !sv->idata || !ev->idata || (av && !av->idata) || (pv && !pv->idata) ||
            qd_value_numel(ev) != qd_value_numel(sv))
            FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Slice): starts/ends/axes/steps must be constant int64", src(g),
                 n->name);
        for (int d = 0; d < nd; d++) { a->slice_start[d] = 0; a->slice_step[d] = 1; }
        int64_t k = qd_value_numel(sv);
        if ((av && qd_value_numel(av) != k) || (pv && qd_value_numel(pv) != k) || k > nd)
            FAIL(QD_ERR_DATA, "%s: node '%s' (Slice): starts/ends/axes/steps of different lengths", src(g), n->name);
        unsigned char seen[QD_MAX_DIMS] = {0};
        for (int64_t j = 0; j < k; j++) {
            int ax = norm_axis(av ? av->idata[j] : j, nd);
            if (ax < 0 || seen[ax]) FAIL(QD_ERR_DATA, "%s: node '%s' (Slice): axis out of range or repeated", src(g), n->name);
            seen[ax] = 1;
            int64_t st = pv ? pv->idata[j] : 1, dim = x->dims[ax];
            if (st == 0) FAIL(QD_ERR_DATA, "%s: node '%s' (Slice): step 0", src(g), n->name);
            /* ONNX/ONNX Runtime clamping, without overflow for any int64 start/end/step */
            int64_t b = sv->idata[j], e = ev->idata[j], len;
            if (b < 0) b = b < -dim ? -1 : b + dim;
            if (e < 0) e = e < -dim ? -1 : e + dim;
            uint64_t mag = st > 0 ? (uint64_t)st : (uint64_t)0 - (uint64_t)st;
            if (st > 0) {
                b = b < 0 ? 0 : (b > dim ? dim : b);
                e = e < 0 ? 0 : (e > dim ? dim : e);
                len = e > b ? (int64_t)((uint64_t)(e - b - 1) / mag + 1) : 0;
            } else {
                b = b < 0 ? 0 : b;
                b = b > dim - 1 ? dim - 1 : b; /* an empty dimension: -1, nothing to take */
                e = e < -1 ? -1 : (e > dim - 1 ? dim - 1 : e);
                len = b > e ? (int64_t)((uint64_t)(b - e - 1) / mag + 1) : 0;
            }
            /* one element or none: any step selects the same; 1 keeps the backends' start + i * step
             * and step * stride products small (with len >= 2, |step| < dim) */
            if (len <= 1) st = 1;
            if (batchy && ax == 0 && !(b == 0 && st == 1 && len == dim && sv->idata[j] == 0 && ev->idata[j] >= INT32_MAX))
                FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Slice): slicing the batch dimension", src(g), n->name);
            a->slice_start[ax] = b;
            a->slice_step[ax] = st;
            od[ax] = len;
        }
        break;
    }
    case QD_OP_CONCAT: {
        a->axis = norm_axis(a->axis, nd);
        if (a->axis < 0 || a->axis >= nd) FAIL(QD_ERR_DATA, "%s: node '%s' (Concat): axis out of range", src(g), n->name);
        if (batchy && a->axis == 0) FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Concat): along the batch", src(g), n->name);
        od[a->axis] = 0;
        for (int k = 0; k < n->ninputs; k++) {
            if (n->inputs[k] < 0) continue;
            const qd_value *t = &g->values[n->inputs[k]];
            if (t->ndim != nd) FAIL(QD_ERR_DATA, "%s: node '%s' (Concat): ranks differ", src(g), n->name);
            for (int d = 0; d < nd; d++)
                if (d != a->axis && t->dims[d] != x->dims[d])
                    FAIL(QD_ERR_DATA, "%s: node '%s' (Concat): shapes differ at dim %d", src(g), n->name, d);
            if (t->is_const && batchy) FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Concat): constant operand", src(g), n->name);
            od[a->axis] += t->dims[a->axis];
        }
        break;
    }
    case QD_OP_TRANSPOSE: {
        if (a->nperm == 0) {
            a->nperm = nd;
            for (int d = 0; d < nd; d++) a->perm[d] = nd - 1 - d;
        }
        if (a->nperm != nd) FAIL(QD_ERR_DATA, "%s: node '%s' (Transpose): perm length %d, rank %d", src(g), n->name,
                                 a->nperm, nd);
        unsigned char seen[QD_MAX_DIMS] = {0};
        for (int d = 0; d < nd; d++) {
            if (a->perm[d] < 0 || a->perm[d] >= nd || seen[a->perm[d]])
                FAIL(QD_ERR_DATA, "%s: node '%s' (Transpose): bad perm", src(g), n->name);
            seen[a->perm[d]] = 1;
            od[d] = x->dims[a->perm[d]];
        }
        if (batchy && a->perm[0] != 0)
            FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Transpose): the batch must stay dimension 0", src(g), n->name);
        break;
    }
    case QD_OP_SQUEEZE: case QD_OP_UNSQUEEZE: {
        int unsq = n->op == QD_OP_UNSQUEEZE, ond = unsq ? nd + a->naxes : nd;
        if (ond > QD_MAX_DIMS) FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Unsqueeze): more than %d dims", src(g), n->name,
                                    QD_MAX_DIMS);
        unsigned char mark[QD_MAX_DIMS] = {0};
        for (int k = 0; k < a->naxes; k++) {
            int ax = norm_axis(a->axes[k], ond);
            if (ax < 0 || mark[ax] || (!unsq && x->dims[ax] != 1))
                FAIL(QD_ERR_DATA, "%s: node '%s' (%s): axis %lld out of range, repeated or (Squeeze) not of size 1",
                     src(g), n->name, qd_op_name(n->op), (long long)a->axes[k]);
            if (batchy && ax == 0)
                FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (%s): axis 0 would move the batch", src(g), n->name,
                     qd_op_name(n->op));
            a->axes[k] = ax;
            mark[ax] = 1;
        }
        int o = 0;
        if (unsq) {
            for (int d = 0, s = 0; d < ond; d++) od[d] = mark[d] ? 1 : x->dims[s++];
            o = ond;
        } else {
            for (int d = 0; d < nd; d++)
                if (!mark[d]) od[o++] = x->dims[d];
        }
        nd = o;
        break;
    }
    case QD_OP_RESIZE: {
        if (x->ndim != 4) FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Resize): only 2-D resizing of NCHW tensors (input "
                               "rank %d)", src(g), n->name, x->ndim);
        if (a->nperm == 2) { /* sizes over all dims: N and C stay */
            /* perm[0] == -1: the reader's "sizes name the input's own batch" */
            if (a->perm[1] != x->dims[1] || (batchy && a->perm[0] != -1 && (sym || a->perm[0] != x->dims[0])))
            {
                char nb[32];
                snprintf(nb, sizeof nb, "%lld", (long long)x->dims[0]);
                FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s' (Resize): sizes [%lld, %lld, ..] change the batch or channels of "
                     "an input [%s, %lld, ..] (a symbolic batch takes scales, or sizes with axes [2, 3])", src(g),
                     n->name, (long long)a->perm[0], (long long)a->perm[1], sym ? "N" : nb, (long long)x->dims[1]);
            }
            a->nperm = 0;
        }
        for (int i = 0; i < 2; i++) {
            int64_t in = x->dims[2 + i];
            if (a->resize_size[i] > 0) {
                od[2 + i] = a->resize_size[i];
                a->resize_scale[i] = (float)od[2 + i] / (float)in; /* as ONNX Runtime maps coordinates */
            } else {
                float o = a->resize_scale[i] * (float)in; /* ONNX Runtime: (int64)(scale * in), in float */
                if (!(o < (float)INT32_MAX)) FAIL(QD_ERR_DATA, "%s: node '%s' (Resize): output extent %g too large",
                                                  src(g), n->name, (double)o);
                od[2 + i] = (int64_t)o;
            }
            if (od[2 + i] < 1 || in < 1)
                FAIL(QD_ERR_DATA, "%s: node '%s' (Resize): axis %d resizes %lld to %lld", src(g), n->name, 2 + i,
                     (long long)in, (long long)od[2 + i]);
        }
        break;
    }
    case QD_OP_CONSTANT:
        return QD_OK; /* constants carry their own shape */
    default:
        FAIL(QD_ERR_UNSUPPORTED, "%s: node '%s': no shape rule for op %s", src(g), n->name, qd_op_name(n->op));
    }
    QD_TRY(set_out(g, n, nd, od, sym));
    if (n->op == QD_OP_RESHAPE || n->op == QD_OP_SLICE) n->ninputs = 1;
    return QD_OK;
}

qd_status qd_graph_infer_shapes(qd_graph *g) {
    for (int i = 0; i < g->nnodes; i++) {
        qd_status st = infer_node(g, &g->nodes[i]);
        if (st == QD_ERR_UNSUPPORTED && g->nodes[i].opset > 0) {
            /* what the engine cannot run names the model's opset too (the reader's rule) */
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", qd_error_message());
            qd_error_clear();
            return qd_errorf(st, "%s (opset %d)", msg, g->nodes[i].opset);
        }
        QD_TRY(st);
    }
    qd_graph_recount(g);
    return QD_OK;
}
