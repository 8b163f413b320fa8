#!/usr/bin/env python3
"""tests/classifier_forms_test.py: one classifier written three ways gives one quantized model.

Builds Conv+Relu -> Flatten -> fc1+Relu -> fc2 with the SAME weights as Gemm transB=1, Gemm
transB=0 and MatMul (+ bias Add) (tests/gen_small_models.py), runs each end to end (W4A4 QDrop,
reconstruction + export + output.logits) and checks:
  - --inspect shows every weight quantizer on axis 0 (the load-time canonical form,
    src/graph/canon_linear.c) and the plan is identical for the three;
  - the three runs are bit-identical: logits_fp32.npy, logits_quant.npy, encodings.json (but
    for its model path) and model_qdq.onnx (but for nothing);
  - each original model in ONNX Runtime matches the engine's FP32 logits (max relative error
    <= 1e-4), and the exported model_qdq.onnx in ONNX Runtime (optimizations disabled) matches the
    engine's quantized logits (same argmax everywhere, max relative error <= 1e-4);
  - the same in the layer-wise `adaround` and two-stage `brecq` modes (5 iterations), and on the
    CUDA backend where a GPU is usable;
  - `qdrop-gpu eval --from RUN_DIR` reproduces the run's quantized logits bit for bit.
Exit 0 pass, 1 fail, 77 without numpy/onnx/onnxruntime or the binary.
"""
import json
import os
import shutil
import sys

try:
    import numpy as np
    import onnxruntime  # noqa: F401
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gen_small_models as G
    import export_ort_check as XC  # exits 77 itself without onnx/onnxruntime/numpy/Pillow
except ImportError as e:
    print(f"SKIP: {e}")
    sys.exit(77)

BIN = os.environ.get("QD_BIN") or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build",
                                                "qdrop-gpu")
WORK = os.path.join(os.environ.get("QD_BUILD_DIR", "/tmp"), "classifier_forms")
FORMS = ("gemm_t1", "gemm_t0", "matmul")
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg)
    if not ok:
        failures.append(msg)


def main():
    if not os.path.exists(BIN):
        print(f"SKIP: no binary {BIN}")
        return 77
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    data = G.write_data(os.path.join(WORK, "data"))
    x_val = np.load(data["val"])
    plans, runs = {}, {}
    for f in FORMS:
        model = G.classifier_model(os.path.join(WORK, f + ".onnx"), f)
        r = G.run(BIN, "--inspect", model)
        check(r.returncode == 0, f"{f}: --inspect exit {r.returncode} {r.stderr.strip()}")
        check("(axis 0)" in r.stdout and "(axis 1)" not in r.stdout, f"{f}: every weight quantizer on axis 0")
        plans[f] = "\n".join(r.stdout.splitlines()[1:])  # drop the model path line
        out = os.path.join(WORK, "run_" + f)
        cfg = G.write_config(os.path.join(WORK, f + ".json"), G.config(model, data, out, iters=30))
        r = G.run(BIN, "--config", cfg, "--quiet")
        check(r.returncode == 0, f"{f}: run exit {r.returncode} {r.stderr.strip()}")
        if r.returncode != 0:
            continue
        runs[f] = out
        lf, lq = np.load(os.path.join(out, "logits_fp32.npy")), np.load(os.path.join(out, "logits_quant.npy"))
        check(lf.shape == (len(x_val), G.NCLS) and lf.dtype == np.float32, f"{f}: logits_fp32.npy shape {lf.shape}")
        ref = G.ort_logits(model, x_val)
        e = G.max_rel_err(lf, ref)
        check(e <= 1e-4, f"{f}: FP32 logits vs ONNX Runtime on the original model: max rel err {e:.2e} (<= 1e-4)")
        try:
            XC.load_and_check(os.path.join(out, "model_qdq.onnx"))
            check(True, f"{f}: model_qdq.onnx passes onnx.checker (full) and the TensorRT structural rules")
        except Exception as ex:
            check(False, f"{f}: model_qdq.onnx fails onnx.checker / TensorRT rules: {ex}")
        qref = G.ort_logits(os.path.join(out, "model_qdq.onnx"), x_val)
        e = G.max_rel_err(lq, qref)
        same = float(np.mean(lq.argmax(1) == qref.argmax(1)))
        check(e <= 1e-4 and same == 1.0,
              f"{f}: quantized logits vs ONNX Runtime on model_qdq.onnx: max rel err {e:.2e}, argmax agree {same:.0%}")
        check(float(np.max(np.abs(lq - lf))) > 0, f"{f}: quantized logits differ from FP32 (quantizers applied)")
    for f in FORMS[1:]:
        check(plans[f] == plans[FORMS[0]], f"{f}: --inspect plan identical to gemm_t1")
    if len(runs) == len(FORMS):
        base = runs[FORMS[0]]

        def enc(d):
            e = json.load(open(os.path.join(d, "encodings.json")))
            e.pop("model")
            return e

        for f in FORMS[1:]:
            for fn in ("logits_fp32.npy", "logits_quant.npy", "model_qdq.onnx"):
                a, b = open(os.path.join(base, fn), "rb").read(), open(os.path.join(runs[f], fn), "rb").read()
                check(a == b, f"{f}: {fn} bit-identical to gemm_t1")
            check(enc(runs[f]) == enc(base), f"{f}: encodings.json identical to gemm_t1 (but for the model path)")
        # layer-wise AdaRound and BRECQ (other unit lists and stages): still one model for the three
        for mode in ("adaround", "brecq"):
            got = {}
            for f in FORMS:
                out = os.path.join(WORK, f"{mode}_{f}")
                r = G.run(BIN, "--config", os.path.join(WORK, f + ".json"), "--out", out, "--quiet",
                          "--set", f"quant.mode={mode}", "--set", "quant.recon.iters=5", "--set", "quant.brecq.act_iters=5")
                check(r.returncode == 0, f"{f} {mode}: exit {r.returncode} {r.stderr.strip()}")
                if r.returncode == 0:
                    got[f] = open(os.path.join(out, "logits_quant.npy"), "rb").read()
            for f in FORMS[1:]:
                check(f in got and got[f] == got.get(FORMS[0]), f"{f} {mode}: logits_quant.npy bit-identical to gemm_t1")
        # CUDA backend (where a GPU is usable): the same three forms, identical to each other
        if os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvidiactl"):
            cuda = {}
            for f in FORMS:
                out = os.path.join(WORK, "cuda_" + f)
                r = G.run(BIN, "--config", os.path.join(WORK, f + ".json"), "--device", "cuda", "--out", out, "--quiet")
                if r.returncode == 69:
                    print(f"SKIP cuda: {r.stderr.strip()}")
                    break
                check(r.returncode == 0, f"{f} on CUDA: exit {r.returncode} {r.stderr.strip()}")
                if r.returncode == 0:
                    cuda[f] = np.load(os.path.join(out, "logits_quant.npy"))
            if len(cuda) == len(FORMS):
                for f in FORMS[1:]:
                    check(np.array_equal(cuda[f], cuda[FORMS[0]]), f"{f} on CUDA: quantized logits identical to gemm_t1")
                qref = G.ort_logits(os.path.join(WORK, "cuda_matmul", "model_qdq.onnx"), x_val)
                check(float(np.mean(qref.argmax(1) == cuda["matmul"].argmax(1))) >= 0.95,
                      "matmul on CUDA: exported model in ONNX Runtime gives the engine's predictions (>= 95%)")
        # eval --from: the quantized model read back from encodings.json
        ev = os.path.join(WORK, "eval_matmul")
        r = G.run(BIN, "eval", "--from", runs["matmul"], "--out", ev, "--quiet")
        check(r.returncode == 0, f"eval --from: exit {r.returncode} {r.stderr.strip()}")
        if r.returncode == 0:
            for fn in ("logits_fp32.npy", "logits_quant.npy"):
                a, b = open(os.path.join(ev, fn), "rb").read(), open(os.path.join(runs["matmul"], fn), "rb").read()
                check(a == b, f"eval --from: {fn} bit-identical to the run's")
            res = json.load(open(os.path.join(ev, "eval.json")))
            run_res = json.load(open(os.path.join(runs["matmul"], "results.json")))
            check(abs(res["accuracy"]["quant_top1"] - run_res["accuracy"]["quant_top1"]) < 1e-9,
                  f"eval --from: quant top-1 {res['accuracy']['quant_top1']} == run's {run_res['accuracy']['quant_top1']}")
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
