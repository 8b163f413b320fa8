/* qdrop/op_table.h: the one table of IR operators (X-macro), included by C and CUDA code.
 *
 * Each row: X(ID, "OnnxName", traits). ID becomes the enum constant QD_OP_<ID>; the ONNX name
 * is what the reader maps, what messages print and what the exporter writes; traits are
 * QD_OPT_* bits below. Adding an operator means adding one row here, then its shape rule
 * (src/graph/shapes.c), its kernels in every backend (forward and backward), and its export
 * attributes, and its answer in every backend's supports_op switch (qd_cpu_supports_op in
 * src/cpu/cpu_ops.c, qd_cu_supports_op in cuda/ops_cuda.cu; -Werror=switch fails the build until
 * it is there): an op, or attribute combination, a backend's kernels cannot run is refused there
 * at plan time, naming op, node and backend. The row order is the enum order; keep new rows at
 * the end so checkpoints and fixtures that store op ids stay valid.
 */
#ifndef QDROP_OP_TABLE_H
#define QDROP_OP_TABLE_H

/* traits */
#define QD_OPT_LAYER      0x01 /* carries a weight: Conv/Gemm/MatMul (AdaRound + weight quantizer) */
#define QD_OPT_BINARY     0x02 /* elementwise with two operands and ONNX broadcasting */
#define QD_OPT_POINTWISE  0x04 /* one input, elementwise, same shape out (activation functions) */
#define QD_OPT_TENSOR_IN  0x08 /* every input is a tensor the IR keeps (export writes them all);
                                  without it, inputs after the first were resolved into qd_attrs */
#define QD_OPT_NO_EXPORT  0x10 /* never written by the exporter (folded into initializers) */
#define QD_OPT_VIEW       0x20 /* reinterprets the layout only (no arithmetic) */

#define QD_OP_TABLE(X)                                                               \
    X(CONV,          "Conv",               QD_OPT_LAYER | QD_OPT_TENSOR_IN)          \
    X(GEMM,          "Gemm",               QD_OPT_LAYER | QD_OPT_TENSOR_IN)          \
    X(MATMUL,        "MatMul",             QD_OPT_LAYER | QD_OPT_TENSOR_IN)          \
    X(ADD,           "Add",                QD_OPT_BINARY | QD_OPT_TENSOR_IN)         \
    X(MUL,           "Mul",                QD_OPT_BINARY | QD_OPT_TENSOR_IN)         \
    X(RELU,          "Relu",               QD_OPT_POINTWISE | QD_OPT_TENSOR_IN)      \
    X(CLIP,          "Clip",               QD_OPT_POINTWISE)                         \
    X(SIGMOID,       "Sigmoid",            QD_OPT_POINTWISE | QD_OPT_TENSOR_IN)      \
    X(BATCHNORM,     "BatchNormalization", QD_OPT_TENSOR_IN)                         \
    X(MAXPOOL,       "MaxPool",            QD_OPT_TENSOR_IN)                         \
    X(AVGPOOL,       "AveragePool",        QD_OPT_TENSOR_IN)                         \
    X(GLOBALAVGPOOL, "GlobalAveragePool",  QD_OPT_TENSOR_IN)                         \
    X(REDUCEMEAN,    "ReduceMean",         0)                                        \
    X(FLATTEN,       "Flatten",            QD_OPT_VIEW | QD_OPT_TENSOR_IN)           \
    X(RESHAPE,       "Reshape",            QD_OPT_VIEW)                              \
    X(PAD,           "Pad",                0)                                        \
    X(SLICE,         "Slice",              0)                                        \
    X(CONCAT,        "Concat",             QD_OPT_TENSOR_IN)                         \
    X(IDENTITY,      "Identity",           QD_OPT_VIEW | QD_OPT_POINTWISE | QD_OPT_TENSOR_IN) \
    X(CONSTANT,      "Constant",           QD_OPT_NO_EXPORT)                         \
    X(TRANSPOSE,     "Transpose",          QD_OPT_TENSOR_IN)                         \
    X(SUB,           "Sub",                QD_OPT_BINARY | QD_OPT_TENSOR_IN)         \
    X(DIV,           "Div",                QD_OPT_BINARY | QD_OPT_TENSOR_IN)         \
    X(SOFTMAX,       "Softmax",            QD_OPT_TENSOR_IN)                         \
    X(HARDSIGMOID,   "HardSigmoid",        QD_OPT_POINTWISE | QD_OPT_TENSOR_IN)      \
    X(HARDSWISH,     "HardSwish",          QD_OPT_POINTWISE | QD_OPT_TENSOR_IN)      \
    X(RESIZE,        "Resize",             0)                                        \
    X(SQUEEZE,       "Squeeze",            QD_OPT_VIEW)                              \
    X(UNSQUEEZE,     "Unsqueeze",          QD_OPT_VIEW) \
    X(LAYERNORM,     "LayerNormalization", QD_OPT_TENSOR_IN)                         \
    X(GELU,          "Gelu",               QD_OPT_POINTWISE | QD_OPT_TENSOR_IN)

/* Name and traits of an op id, without a link dependency (usable from CUDA translation units). */
#define QD_OP_TABLE_NAME_(id, name, traits) name,
#define QD_OP_TABLE_TRAITS_(id, name, traits) (traits),

#endif
