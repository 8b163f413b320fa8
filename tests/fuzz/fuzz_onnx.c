/* tests/fuzz/fuzz_onnx.c: libFuzzer target for the ONNX reader (src/onnx, protobuf-c), through a
 * temporary file (qd_onnx_load takes a path). When the graph passes exist (QD_FUZZ_HAVE_PREPARE,
 * detected by tests/fuzz.cmake) the whole preparation pipeline runs too, as --inspect does:
 * simplify, shapes, BN folding, units and quantizer placement. Checks besides memory safety: a
 * failure carries a one-line message and is never reported as an internal error. */
#include "fuzz_common.h"
#include "qdrop/graph.h"

#ifndef QD_FUZZ_HAVE_PREPARE
/* While the graph passes are being written, src/graph/graph.c may already reference some that do
 * not exist yet; weak stand-ins let this reader-only target link (a real definition, when the
 * linker pulls it in, takes precedence). Never called here. */
#define QD_FUZZ_STUB(fn)                                                       \
    __attribute__((weak)) qd_status fn(qd_graph *g) {                          \
        (void)g;                                                               \
        return qd_errorf(QD_ERR_INTERNAL, "fuzz_onnx: %s not built", #fn);     \
    }
QD_FUZZ_STUB(qd_graph_toposort)
QD_FUZZ_STUB(qd_graph_infer_shapes)
QD_FUZZ_STUB(qd_graph_fold_bn)
QD_FUZZ_STUB(qd_graph_simplify)
QD_FUZZ_STUB(qd_graph_find_units)
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 20) return 0;
    const char *path = qd_fuzz_write_tmp(data, size, ".onnx");
    if (!path) return 0;
    qd_graph *g = NULL;
    qd_error_clear();
    qd_status st = qd_onnx_load(path, &g);
    qd_fuzz_check_error(st);
    if (g) qd_graph_free(g);
    g = NULL;
#ifdef QD_FUZZ_HAVE_PREPARE
    if (st == QD_OK) {
        qd_error_clear();
        st = qd_graph_prepare(path, &g);
        qd_fuzz_check_error(st);
        if (st == QD_OK && g) {
            qd_quant_plan_opts o = {4, 4, 1, 0};
            qd_error_clear();
            qd_fuzz_check_error(qd_graph_place_quantizers(g, &o));
        }
        if (g) qd_graph_free(g);
    }
#endif
    return 0;
}
