/* qdrop/graph.h: the in-memory graph IR every backend and pass works on.
 *
 * Built by the ONNX reader (src/onnx/), then transformed in place by passes:
 *   qd_graph_infer_shapes -> qd_graph_fold_bn -> qd_graph_find_units -> qd_graph_place_quantizers.
 * Layout conventions:
 *   - activations are float32, NCHW (or [N, F] / [N, T, F]); dims[0] of every activation value is
 *     the batch dimension, which may be symbolic in the file and is substituted at run time;
 *   - constant inputs that only describe shapes (Reshape shape, Slice starts, Pad pads, ...) are
 *     resolved at load time into qd_attrs, so executors never read int64 tensors;
 *   - nodes are stored in a topological order that keeps every reconstruction unit contiguous.
 * Ownership: the graph owns every string and array it points to; qd_graph_free releases all.
 */
#ifndef QDROP_GRAPH_H
#define QDROP_GRAPH_H

#include <stddef.h>
#include <stdint.h>
#include "qdrop/op_table.h"
#include "qdrop/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QD_MAX_DIMS 8

/* ONNX TensorProto.DataType values we care about. */
enum { QD_DT_UNDEFINED = 0, QD_DT_FLOAT = 1, QD_DT_UINT8 = 2, QD_DT_INT8 = 3, QD_DT_INT32 = 6,
       QD_DT_INT64 = 7, QD_DT_BOOL = 9, QD_DT_DOUBLE = 11 };

typedef enum qd_op {
#define QD_OP_ENUM_(id, name, traits) QD_OP_##id,
    QD_OP_TABLE(QD_OP_ENUM_)
#undef QD_OP_ENUM_
    QD_OP_COUNT
} qd_op;

const char *qd_op_name(qd_op op);              /* ONNX name, "?" out of range */
int qd_op_traits(qd_op op);                     /* QD_OPT_* bits, 0 out of range */
qd_op qd_op_from_onnx(const char *onnx_name);   /* QD_OP_COUNT when not in the table */

/* ONNX auto_pad of Conv / pools; resolved to explicit pads from the static input shape. */
enum { QD_AUTO_PAD_NOTSET = 0, QD_AUTO_PAD_VALID, QD_AUTO_PAD_SAME_UPPER, QD_AUTO_PAD_SAME_LOWER };

/* Resize (and opset-7..9 Upsample), 2-D on NCHW: interpolation, the coordinate transformation
 * (ONNX coordinate_transformation_mode) and the rounding of nearest (ONNX nearest_mode). */
enum { QD_RESIZE_NEAREST = 0, QD_RESIZE_LINEAR };
enum { QD_RESIZE_HALF_PIXEL = 0, QD_RESIZE_PYTORCH_HALF_PIXEL, QD_RESIZE_ALIGN_CORNERS, QD_RESIZE_ASYMMETRIC };
enum { QD_RESIZE_ROUND_PREFER_FLOOR = 0, QD_RESIZE_ROUND_PREFER_CEIL, QD_RESIZE_FLOOR, QD_RESIZE_CEIL };

typedef struct qd_attrs {
    /* Conv, MaxPool, AveragePool (2-D spatial only) */
    int kernel[2], stride[2], dilation[2];
    int pads[4];              /* top, left, bottom, right */
    int auto_pad;             /* QD_AUTO_PAD_*: shape inference turns it into pads, then NOTSET */
    int group;
    int ceil_mode, count_include_pad;
    /* Gemm: Y = alpha * A' * B' + beta * C; HardSigmoid: Y = max(0, min(1, alpha * X + beta)) */
    float alpha, beta;
    int trans_a, trans_b;
    /* Clip: bounds (resolved from inputs or attributes; +-INFINITY when absent) */
    float clip_min, clip_max;
    /* BatchNormalization, LayerNormalization */
    float epsilon;
    /* Flatten / Concat / Softmax / LayerNormalization axis (normalised to >= 0). Softmax may
     * have a second input, an additive mask: a graph input of x's rank (e.g. [N,1,1,S] of 0 /
     * -inf) or a constant, broadcasting to x; y = softmax(x + mask), the mask gets no gradient. */
    int axis;
    /* Transpose permutation */
    int nperm;
    int64_t perm[QD_MAX_DIMS];
    /* ReduceMean, Squeeze, Unsqueeze axes (normalised to >= 0) */
    int naxes;
    int64_t axes[QD_MAX_DIMS];
    int keepdims;
    /* Pad (constant mode): per-dimension begin/end pads over all dims */
    int64_t pad_begin[QD_MAX_DIMS], pad_end[QD_MAX_DIMS];
    float pad_value;
    /* Slice, resolved over all dims (start, step; output extent comes from the output value) */
    int64_t slice_start[QD_MAX_DIMS], slice_step[QD_MAX_DIMS];
    /* Resize over H and W: the scale ONNX maps coordinates with (given, or output/input size when
     * the file gives sizes), the requested output size (0: floor(input * scale)), modes above */
    float resize_scale[2];
    int64_t resize_size[2];
    int resize_mode, resize_coord, resize_nearest;
} qd_attrs;

typedef struct qd_value {
    char *name;
    int dtype;                     /* QD_DT_* */
    int ndim;
    int64_t dims[QD_MAX_DIMS];     /* dims[0] = batch for activations (1 while symbolic) */
    int batch_symbolic;            /* dims[0] was a symbolic dimension in the file */
    int is_const;                  /* initializer or folded constant */
    float *fdata;                  /* owned, when is_const and dtype float */
    int64_t *idata;                /* owned, when is_const and integer dtype */
    int producer;                  /* node index, -1 for graph inputs and constants */
    int nconsumers;                /* number of node inputs that read this value */
    int act_quant;                 /* index into graph->act, -1 when not quantized */
} qd_value;

typedef struct qd_node {
    char *name;
    qd_op op;
    int opset;
    int ninputs, noutputs;
    int *inputs;                   /* value ids; -1 for an omitted optional input */
    int *outputs;
    qd_attrs a;
    int unit;                      /* reconstruction unit index, -1 for glue between units */
    int wq;                        /* weight quantizer index (Conv/Gemm/MatMul), -1 none */
} qd_node;

/* Per-output-channel weight quantizer of one Conv/Gemm/MatMul (asymmetric unsigned, §3). */
typedef struct qd_weight_quant {
    int node;                      /* node index */
    int weight_value;              /* value id of the FP weight initializer */
    int bits;
    int channels;                  /* output channels (axis 0 of Conv [O,I,kh,kw], Gemm [O,I]) */
    int64_t per_channel;           /* elements per output channel */
    int ch_axis;                   /* axis of the output channel in the stored weight tensor */
    float *scale;                  /* [channels], owned; 0 until range init */
    float *zero_point;             /* [channels] integers stored as float, owned */
    float *qweight;                /* [numel] effective (dequantized) weight used in quantized
                                      mode: nearest rounding after range init, hard AdaRound
                                      after the unit's reconstruction. owned */
    int reconstructed;             /* 1 once its unit has been reconstructed */
} qd_weight_quant;

/* Per-tensor activation quantizer placed on a value (§6.1). */
typedef struct qd_act_quant {
    int value;                     /* value id it quantizes */
    int bits;
    int qmin, qmax;
    float scale;                   /* learned by LSQ inside its unit */
    float zero_point;              /* integer stored as float, fixed */
    int one_sided;                 /* input is post-ReLU/ReLU6 (1-D search) */
    int unit;                      /* unit whose reconstruction learns it, -1 if none */
    int initialized;
} qd_act_quant;

typedef enum { QD_UNIT_LAYER = 0, QD_UNIT_BLOCK = 1 } qd_unit_kind;

typedef struct qd_unit {
    char *name;                    /* e.g. "block 3 (Conv_12..Relu_17)" */
    qd_unit_kind kind;
    int node_begin, node_end;      /* nodes [node_begin, node_end) */
    int input_value;               /* the single activation the unit reads (a cut) */
    int output_value;              /* the single activation the unit produces (a cut) */
    int nlayers;                   /* Conv/Gemm/MatMul nodes inside */
} qd_unit;

typedef struct qd_graph {
    int nvalues, values_cap;
    qd_value *values;
    int nnodes, nodes_cap;
    qd_node *nodes;
    int ninputs, noutputs;
    int *inputs;                   /* non-constant graph inputs */
    int *outputs;
    int opset;
    char *producer;
    char *source_path;             /* file it was read from (for messages) */
    int nunits;
    qd_unit *units;
    int nact;
    qd_act_quant *act;
    int nwq;
    qd_weight_quant *wq;
} qd_graph;

/* ---- construction / lookup (src/graph/graph.c) ---- */
qd_graph *qd_graph_new(void);
void qd_graph_free(qd_graph *g);
int qd_graph_add_value(qd_graph *g, const char *name);           /* returns id */
int qd_graph_find_value(const qd_graph *g, const char *name);    /* -1 when absent */
int qd_graph_add_node(qd_graph *g, const char *name, qd_op op, int ninputs, int noutputs);
int64_t qd_value_numel(const qd_value *v);                       /* product of dims; -1 if invalid */
int64_t qd_value_sample_numel(const qd_value *v);                /* product of dims[1..] */

/* ---- passes ---- */
QD_MUST_USE qd_status qd_onnx_load(const char *path, qd_graph **out);      /* src/onnx */
QD_MUST_USE qd_status qd_graph_toposort(qd_graph *g);
QD_MUST_USE qd_status qd_graph_infer_shapes(qd_graph *g);
QD_MUST_USE qd_status qd_graph_fold_bn(qd_graph *g);        /* §8.6; removes folded BN nodes */
QD_MUST_USE qd_status qd_graph_simplify(qd_graph *g);       /* drop Identity/Constant/Dropout */
/* Fully connected layers in one layout (src/graph/canon_linear.c): MatMul and Gemm transB=0 with a
 * 2-D constant weight become Gemm transB=1 with the weight transposed once to [out, in] (a MatMul's
 * bias Add becomes Gemm's C). Needs shapes; runs before BN folding. */
QD_MUST_USE qd_status qd_graph_canon_linear(qd_graph *g);
QD_MUST_USE qd_status qd_graph_find_units(qd_graph *g);     /* §8.1 */

typedef struct qd_quant_plan_opts {
    int w_bits, a_bits;
    int first_last_8bit;      /* Q2 §1.5: first/last weight and last activation quantizer 8 bit */
    int brecq_setting;        /* §8.7 row B: first layer output 8 bit too */
} qd_quant_plan_opts;
QD_MUST_USE qd_status qd_graph_place_quantizers(qd_graph *g, const qd_quant_plan_opts *o); /* §6.1 */

/* Convenience (src/onnx/onnx_prepare.c): load + simplify + drop dead nodes + shapes + canonical
 * linear layers + fold BN + units. */
QD_MUST_USE qd_status qd_graph_prepare(const char *path, qd_graph **out);

/* Human-readable summary of units, layers and quantizers (--inspect, --dry-run). */
void qd_graph_print_plan(const qd_graph *g, void *file /* FILE* */);

#ifdef __cplusplus
}
#endif
#endif
