"""Bad-input cases of the run report (tests/bad_inputs_test.py loads this module).

Hostile strings in node names and in --out must never become gnuplot script or shell text. Each
payload, if it ran, would move the output directory away (`mv OUT MOVED`), so the run would fail
to write its outputs and the case would fail; the cases expect a clean success with plots on.
Unit names are cut at 127 bytes, so the payloads name the case directory through an environment
variable (QD_REPORT_CASE_DIR, set by the prep function and inherited by the run).
The model is tests/bad_inputs/catalogue/tiny_cnn32.onnx with nodes renamed (python onnx)."""
import os


def _evil_model(m, d, payload_for):
    import onnx
    model = onnx.load(os.path.join(m.CAT, "tiny_cnn32.onnx"))
    for n in model.graph.node:
        if n.name in payload_for:
            n.name = payload_for[n.name]
    p = os.path.join(d, "evil.onnx")
    onnx.save(model, p)
    return p


def cases(m):
    def prep_node_names(d):
        os.environ["QD_REPORT_CASE_DIR"] = d
        mv = "mv $QD_REPORT_CASE_DIR/out $QD_REPORT_CASE_DIR/moved"
        model = _evil_model(m, d, {
            "conv1": "c'\nsystem \"%s\"\n'" % mv,          # breaks out of a '...' gnuplot string
            "relu2": "r\"\nsystem \"%s\"\n\"" % mv,        # ... and out of a "..." one
            "fc": "f$(%s)`%s`" % (mv, mv),                 # shell substitutions
        })
        return {"model": model}

    def prep_out_path(d):
        # the output directory's own name carries the payload ("o?*" matches only that directory)
        os.environ["QD_REPORT_CASE_DIR"] = d
        out = os.path.join(d, "o'\nsystem \"mv $QD_REPORT_CASE_DIR/o?* $QD_REPORT_CASE_DIR/moved\"\n'")
        return {"out": out}

    evil_cfg = m.tiny_config(model="{model}", output__plots=True)
    return [
        m.Case("report_node_name_injection", 0, None, config=evil_cfg, prep=prep_node_names,
               what="node names with quote + newline + `system \"...\"` and $(...): plots drawn, nothing executed"),
        m.Case("report_out_dir_injection", 0, None, argv=["--out", "{out}"],
               config=m.tiny_config(output__plots=True), prep=prep_out_path,
               what="--out path with quote + newline + `system \"...\"`: plots drawn, nothing executed"),
    ]
