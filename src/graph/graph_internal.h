/* src/graph/graph_internal.h: helpers shared by the graph passes (graph.c, shapes.c, fold_bn.c,
 * units.c) and the ONNX reader. Not part of the public API. */
#ifndef QD_GRAPH_INTERNAL_H
#define QD_GRAPH_INTERNAL_H

#include "qdrop/graph.h"

/* Recompute value->producer and value->nconsumers from the node list. */
void qd_graph_recount(qd_graph *g);

/* Remove every node i with dead[i] != 0, keeping the order of the others; frees their names and
 * port arrays, then recounts. Units must not exist yet (indices shift). */
QD_MUST_USE qd_status qd_graph_remove_nodes(qd_graph *g, const unsigned char *dead);

/* Replace every use of value `from` (node inputs and graph outputs) by value `to`. */
void qd_graph_replace_uses(qd_graph *g, int from, int to);

/* 1 when v is one of the graph outputs. */
int qd_graph_is_output(const qd_graph *g, int v);

/* Index of the i-th non-constant input of node n (-1 when absent). */
int qd_node_act_input(const qd_graph *g, const qd_node *n, int i);

/* Fill attributes with the ONNX defaults (group 1, strides 1, clip +-inf, ...). */
void qd_attrs_defaults(qd_attrs *a);

/* Conv / Gemm / MatMul. */
static inline int qd_op_is_layer(qd_op op) { return (qd_op_traits(op) & QD_OPT_LAYER) != 0; }

#endif
