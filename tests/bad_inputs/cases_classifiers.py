"""Bad-input cases for fully connected layers, `qdrop-gpu eval` and the logits outputs
(tests/bad_inputs_test.py loads cases(m); m is that module)."""
import json
import os


def _prep_rank3_matmul(d):
    """Conv -> Reshape to [N, 4, 256] -> MatMul with a [256, 10] weight -> ReduceMean: a MatMul
    with no [out, in] form (rank-3 activation), which the plan must reject with the reason."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(1)
    T = lambda n, a: numpy_helper.from_array(np.asarray(a), n)
    nodes = [helper.make_node("Conv", ["input", "cw"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Reshape", ["r", "shp"], ["r3"], name="to3d"),
             helper.make_node("MatMul", ["r3", "mw"], ["m"], name="mm3"),
             helper.make_node("ReduceMean", ["m"], ["logits"], name="rm", axes=[1], keepdims=0)]
    g = helper.make_graph(nodes, "rank3", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
                          [T("cw", (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)),
                           T("shp", np.array([0, 4, 1024], np.int64)),
                           T("mw", (rng.standard_normal((1024, 10)) * 0.05).astype(np.float32))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.save(m, os.path.join(d, "rank3_matmul.onnx"))
    return {}


def _skip_no_onnx():
    try:
        import numpy  # noqa: F401
        import onnx  # noqa: F401
        return None
    except ImportError:
        return "python onnx/numpy not installed"


def _run_dir(m, d, encodings=None):
    """A directory that looks like a finished run: resolved_config.json (the tiny config) and,
    when given, an encodings.json with that content."""
    rd = os.path.join(d, "run")
    os.makedirs(rd)
    json.dump(m.tiny_config(), open(os.path.join(rd, "resolved_config.json"), "w"))
    if encodings is not None:
        with open(os.path.join(rd, "encodings.json"), "w") as f:
            f.write(encodings if isinstance(encodings, str) else json.dumps(encodings))
    return {"run": rd}


FOREIGN = {"format": "qdrop-encodings", "format_version": 1, "activations": [],
           "weights": [{"name": "other.weight", "node": "other_fc", "op": "Gemm", "bits": 4, "axis": 0, "channels": 1,
                        "shape": [1, 1], "scale": [0.5], "zero_point": [0], "q_encoding": "base64_uint8", "q": "AA=="}]}


def cases(m):
    C = []
    C.append(m.Case("plan_matmul_rank3_weight", 65,
                    r"rank3_matmul\.onnx: node 'mm3' \(MatMul\): weight 'mw' has its output channel on axis 1; only Conv, "
                    r"Gemm and MatMul on a 2-D",
                    config=m.tiny_config(model="{case}/rank3_matmul.onnx"), prep=_prep_rank3_matmul, skip=_skip_no_onnx,
                    what="MatMul on a rank-3 activation with a constant weight: rejected by the plan, not mid-run"))
    C.append(m.Case("eval_from_missing_dir", 66, r"no_such_run/resolved_config\.json: not found \(--from needs",
                    argv=["eval", "--from", "{case}/no_such_run"], config=False,
                    what="qdrop-gpu eval --from a directory that does not exist"))
    C.append(m.Case("eval_from_no_encodings", 66, r"run/encodings\.json: not found \(--from needs .*export_onnx",
                    argv=["eval", "--from", "{run}"], config=False, prep=lambda d: _run_dir(m, d),
                    what="eval --from a run directory without encodings.json (export off)"))
    C.append(m.Case("eval_from_malformed_encodings", 65, r"run/encodings\.json: malformed JSON",
                    argv=["eval", "--from", "{run}"], config=False, prep=lambda d: _run_dir(m, d, '{"weights": [\n'),
                    what="eval --from with a truncated encodings.json"))
    C.append(m.Case("eval_from_foreign_encodings", 65,
                    r"encodings\.json: weight 'other\.weight' of node 'other_fc' is not quantized in this model",
                    argv=["eval", "--from", "{run}"], config=False, prep=lambda d: _run_dir(m, d, FOREIGN),
                    what="eval --from with the encodings of another model"))
    C.append(m.Case("eval_without_val_path", 78, r"data\.val_path: `qdrop-gpu eval` needs an evaluation set",
                    argv=["eval"], sets=["data.val_path="], what="qdrop-gpu eval with no evaluation data"))
    C.append(m.Case("eval_with_resume", 64, r"--resume: not valid with the eval command", argv=["eval", "--resume"],
                    what="qdrop-gpu eval --resume"))
    C.append(m.Case("from_without_eval", 64, r"--from: only valid with the eval command", argv=["--from", "{case}"],
                    what="--from on a normal run"))
    return C
