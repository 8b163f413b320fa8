#!/usr/bin/env python3
"""ONNX Runtime parity and TensorRT-rule checks of an exported QDQ model (issue 6, docs/export.md).

Modes
  --run-dir DIR --val FOLDER
      DIR is a finished qdrop-gpu run (model_qdq.onnx, predictions.csv with index,label,fp32,quant
      in the order of FOLDER: classes sorted, files sorted). Runs onnx.checker, the structural
      TensorRT check, then ONNX Runtime (CPUExecutionProvider) on every image of FOLDER (Pillow ->
      RGB float/255 -> normalize, NCHW) and asserts >= --min-agree (0.995) of top-1 predictions
      equal the engine's quantized predictions and |top-1(ORT) - top-1(engine)| <= --max-top1-diff
      (0.1 percentage points).
  --selftest-bin BIN --workdir W
      Runs `BIN --ort-dir W` (tests/unit/test_export.c), which writes a tiny exported model plus
      input.bin / expected.bin (the C forward of the same quantized graph); checks the model and
      compares ORT's output with the C forward.
  --model FILE
      Only onnx.checker + the structural TensorRT check.

Exit codes: 0 pass, 1 fail, 77 skipped (onnx, onnxruntime, numpy or Pillow not importable).
"""
import argparse
import csv
import json
import os
import subprocess
import sys

try:
    import numpy as np
    import onnx
    from onnx import numpy_helper
    import onnxruntime as ort
    from PIL import Image
except Exception as e:  # pragma: no cover - depends on the environment
    print(f"export_ort_check: skipped: {e}")
    sys.exit(77)

INT8, UINT8, INT4 = onnx.TensorProto.INT8, onnx.TensorProto.UINT8, 22
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG"}


class CheckError(Exception):
    pass


def fail(msg):
    raise CheckError(msg)


# ------------------------------------------------------------------------------------------------
# structural check: what TensorRT's explicit quantization accepts (ECOSYSTEM §4.2)
# ------------------------------------------------------------------------------------------------
def structural_check(model):
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    consumers = {}
    for n in g.node:
        for i, x in enumerate(n.input):
            consumers.setdefault(x, []).append((n, i))

    def attr(n, name, default):
        for a in n.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    stats = {"weight_int8": 0, "weight_int4": 0, "weight_float": 0, "act_qdq": 0, "act_float_round": 0}
    for n in g.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        where = f"{n.op_type} {n.name or n.output[0]}"
        if len(n.input) < 2 or n.input[1] not in inits:
            fail(f"{where}: scale is not an initializer")
        scale = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
        if not np.all(np.isfinite(scale)) or not np.all(scale > 0):
            fail(f"{where}: scales must be finite and > 0 (min {scale.min()})")
        if len(n.input) >= 3 and n.input[2]:
            zt = inits.get(n.input[2])
            if zt is None:
                fail(f"{where}: zero point is not an initializer")
            if zt.data_type not in (INT8, INT4):
                fail(f"{where}: zero point type {zt.data_type}: TensorRT takes INT8/INT4 Q/DQ only")
            if np.any(numpy_helper.to_array(zt) != 0):
                fail(f"{where}: zero point must be 0 (TensorRT is symmetric)")
        is_weight = n.op_type == "DequantizeLinear" and n.input[0] in inits
        if is_weight:
            wt = inits[n.input[0]]
            if wt.data_type not in (INT8, INT4):
                fail(f"{where}: weight type {wt.data_type}, want INT8 or INT4")
            axis = attr(n, "axis", 1)
            if scale.ndim != 1 or scale.shape[0] != wt.dims[axis]:
                fail(f"{where}: weight scale shape {scale.shape} is not per-channel along axis {axis} of {list(wt.dims)}")
            for c, slot in consumers.get(n.output[0], []):
                if c.op_type == "Conv":
                    want = 0
                elif c.op_type == "ConvTranspose":
                    want = 1
                elif c.op_type == "Gemm":
                    want = 0 if attr(c, "transB", 0) else 1
                elif c.op_type == "MatMul":
                    want = 1
                else:
                    fail(f"{where}: weight feeds {c.op_type}")
                if slot != 1:
                    fail(f"{where}: weight feeds input {slot} of {c.op_type}")
                if axis != want:
                    fail(f"{where}: axis {axis} for {c.op_type} weight, TensorRT needs the output-channel axis {want}")
            stats["weight_int4" if wt.data_type == INT4 else "weight_int8"] += 1
        else:
            if scale.size != 1 or scale.ndim != 0:
                fail(f"{where}: activation scale must be a scalar (per-tensor), got shape {scale.shape}")
            if n.op_type == "QuantizeLinear":
                nxt = consumers.get(n.output[0], [])
                if not nxt or any(c.op_type != "DequantizeLinear" for c, _ in nxt):
                    fail(f"{where}: QuantizeLinear output must feed DequantizeLinear")
                for c, _ in nxt:
                    if c.input[1] != n.input[1] and not np.array_equal(
                            numpy_helper.to_array(inits[c.input[1]]), scale):
                        fail(f"{where}: Q and DQ scales differ")
                stats["act_qdq"] += 1
    for n in g.node:
        if n.op_type == "Round":
            stats["act_float_round"] += 1
        if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1 and n.input[1] in inits:
            stats["weight_float"] += 1
    return stats


def load_and_check(path):
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    stats = structural_check(model)
    print(f"{path}: onnx.checker ok (ir {model.ir_version}, opset {model.opset_import[0].version}); "
          f"TensorRT rules ok; {stats}")
    return model


OPT_LEVELS = {"all": "ORT_ENABLE_ALL", "basic": "ORT_ENABLE_BASIC", "disable": "ORT_DISABLE_ALL"}


def session(path, opt="all"):
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(os.environ.get("QD_ORT_THREADS", "2"))
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[opt])
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------------------------
# modes
# ------------------------------------------------------------------------------------------------
def negative_checks(model):
    """The structural check must reject what TensorRT rejects (so it can fail)."""
    import copy

    def mutated(fn):
        m = copy.deepcopy(model)
        fn(m)
        try:
            structural_check(m)
        except CheckError as e:
            return str(e)
        return None

    def nonzero_zp(m):
        for t in m.graph.initializer:
            if t.data_type == INT8 and len(t.dims) == 0 and "zero_point" in t.name:
                t.raw_data = bytes([3])
                return

    def wrong_axis(m):
        for n in m.graph.node:
            if n.op_type == "DequantizeLinear":
                for a in n.attribute:
                    if a.name == "axis":
                        a.i = 1
                        return

    def negative_scale(m):
        qs = {n.input[1] for n in m.graph.node if n.op_type == "QuantizeLinear"}
        for t in m.graph.initializer:
            if t.name in qs:
                t.CopyFrom(numpy_helper.from_array(np.array(-0.5, np.float32), t.name))
                return

    for name, fn in (("non-zero zero point", nonzero_zp), ("wrong weight axis", wrong_axis),
                     ("negative scale", negative_scale)):
        msg = mutated(fn)
        if msg is None:
            fail(f"structural check accepted a model with a {name}")
        print(f"structural check rejects a {name}: {msg}")


def run_selftest(args):
    os.makedirs(args.workdir, exist_ok=True)
    r = subprocess.run([args.selftest_bin, "--ort-dir", args.workdir], capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if r.returncode != 0:
        fail(f"{args.selftest_bin} exited {r.returncode}")
    path = os.path.join(args.workdir, "model_qdq.onnx")
    model = load_and_check(path)
    negative_checks(model)
    int4 = os.path.join(args.workdir, "model_qdq_int4.onnx")
    inp = session(path).get_inputs()[0]
    feat = int(np.prod([d for d in inp.shape[1:]]))
    x = np.fromfile(os.path.join(args.workdir, "input.bin"), dtype="<f4")
    batch = x.size // feat
    x = x.reshape([batch] + list(inp.shape[1:]))
    want = np.fromfile(os.path.join(args.workdir, "expected.bin"), dtype="<f4").reshape(batch, -1)
    # Without graph optimizations ORT evaluates the QDQ graph op by op in float32: the export is
    # exact, so only a summation-order flip at a rounding tie may differ (at most one logit).
    # With optimizations ORT fuses Q/DQ into integer kernels with float requantization, which can
    # move values that sit within ~1e-4 of a tie (the reason for the 99.5% rule on real data).
    for opt, min_equal in (("disable", 1.0 - 1.0 / want.size - 1e-9), ("all", 0.95)):
        got = session(path, opt).run(None, {inp.name: x})[0].reshape(batch, -1)
        d = np.abs(got.astype(np.float64) - want)
        exact = float(np.mean(d <= 1e-5))
        print(f"ORT (graph optimizations: {opt}) vs C forward (QD_EXEC_QUANT): {got.size} logits, "
              f"{100 * exact:.1f}% equal within 1e-5, max |diff| {d.max():.3g}")
        if exact < min_equal or d.max() > 0.5:
            fail(f"ORT ({opt}) output differs from the C forward: {100 * exact:.1f}% equal, max |diff| {d.max():.3g}\n"
                 f"ort={got[:2]}\nc={want[:2]}")
    fp = os.path.join(args.workdir, "resnet20_fp.onnx")
    orig = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets", "models", "resnet20_cifar10.onnx")
    if os.path.exists(fp) and os.path.exists(orig):
        # node conversion on a real model: prepared (BN folded) graph exported without quantizers
        onnx.checker.check_model(onnx.load(fp), full_check=True)
        xr = np.random.RandomState(7).standard_normal((4, 3, 32, 32)).astype(np.float32)
        a = session(orig).run(None, {"input": xr})[0]
        b = session(fp).run(None, {"input": xr})[0]
        err = float(np.abs(a - b).max())
        print(f"ResNet-20 exported without quantizers vs original in ORT: max |diff| {err:.3g} "
              f"(logits up to {np.abs(a).max():.3g})")
        if not err <= 1e-3 * max(1.0, float(np.abs(a).max())) or not np.array_equal(a.argmax(1), b.argmax(1)):
            fail(f"ResNet-20 FP export differs from the original: max |diff| {err}")
    if os.path.exists(int4):
        load_and_check(int4)
        out4 = session(int4).run(None, {inp.name: x})[0]
        if not np.all(np.isfinite(out4)):
            fail("INT4 model produced non-finite logits")
    return 0


def list_images(folder):
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    if not classes:
        fail(f"{folder}: no class sub-folders")
    items = []
    for ci, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(folder, c))):
            if os.path.splitext(f)[1] in IMAGE_EXT:
                items.append((os.path.join(folder, c, f), ci))
    return items


def mean_std(run_dir, args):
    mean, std = args.mean, args.std
    res = os.path.join(run_dir, "results.json")
    if (mean is None or std is None) and os.path.exists(res):
        try:
            with open(res) as f:
                cfg = json.load(f).get("config", {})
            data = cfg.get("data", {}) if isinstance(cfg, dict) else {}
            mean = mean or data.get("mean")
            std = std or data.get("std")
        except (ValueError, OSError):
            pass
    return (np.array(mean or [0.485, 0.456, 0.406], np.float32),
            np.array(std or [0.229, 0.224, 0.225], np.float32))


def run_dir_check(args):
    path = os.path.join(args.run_dir, "model_qdq.onnx")
    load_and_check(path)
    rows = []
    with open(os.path.join(args.run_dir, "predictions.csv")) as f:
        for r in csv.DictReader(f):
            rows.append((int(r["index"]), int(r["label"]), int(r["quant"])))
    items = list_images(args.val)
    if args.max_images:
        items = items[:args.max_images]
    if len(rows) != len(items):
        fail(f"predictions.csv has {len(rows)} rows, {args.val} has {len(items)} images")
    for i, ((idx, label, _), (_, ci)) in enumerate(zip(rows, items)):
        if idx != i or label != ci:
            fail(f"predictions.csv row {i} (index {idx}, label {label}) does not match image {items[i][0]} "
                 f"(class {ci}): order must be classes sorted, files sorted")
    mean, std = mean_std(args.run_dir, args)
    sess = session(path, args.ort_opt)
    inp = sess.get_inputs()[0]
    h, w = int(inp.shape[2]), int(inp.shape[3])
    preds = []
    for b0 in range(0, len(items), args.batch):
        batch = []
        for p, _ in items[b0:b0 + args.batch]:
            with Image.open(p) as im:
                a = np.asarray(im.convert("RGB"), dtype=np.float32) / np.float32(255.0)
            if a.shape[0] != h or a.shape[1] != w:
                fail(f"{p}: {a.shape[1]}x{a.shape[0]} image, the model takes {w}x{h}")
            batch.append(((a - mean) / std).transpose(2, 0, 1))
        x = np.ascontiguousarray(np.stack(batch).astype(np.float32))
        preds.append(np.argmax(sess.run(None, {inp.name: x})[0].reshape(len(batch), -1), axis=1))
    ort_pred = np.concatenate(preds)
    labels = np.array([r[1] for r in rows])
    eng_pred = np.array([r[2] for r in rows])
    agree = float(np.mean(ort_pred == eng_pred))
    top1_ort = 100.0 * float(np.mean(ort_pred == labels))
    top1_eng = 100.0 * float(np.mean(eng_pred == labels))
    print(f"{len(items)} images: ORT top-1 {top1_ort:.2f}%, engine top-1 {top1_eng:.2f}%, "
          f"identical predictions {100 * agree:.2f}% ({int(np.sum(ort_pred != eng_pred))} differ)")
    if agree < args.min_agree:
        fail(f"only {100 * agree:.2f}% of ORT predictions equal the engine's (need {100 * args.min_agree:.1f}%)")
    if abs(top1_ort - top1_eng) > args.max_top1_diff + 1e-9:
        fail(f"top-1 differs by {abs(top1_ort - top1_eng):.3f} pt (limit {args.max_top1_diff})")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir")
    ap.add_argument("--val")
    ap.add_argument("--model")
    ap.add_argument("--selftest-bin")
    ap.add_argument("--workdir")
    ap.add_argument("--mean", type=float, nargs=3)
    ap.add_argument("--std", type=float, nargs=3)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--max-images", type=int, default=0)
    ap.add_argument("--min-agree", type=float, default=0.995)
    ap.add_argument("--max-top1-diff", type=float, default=0.1)
    ap.add_argument("--ort-opt", choices=sorted(OPT_LEVELS), default="all",
                    help="ONNX Runtime graph optimization level for --run-dir (default all)")
    args = ap.parse_args()
    try:
        if args.selftest_bin:
            if not args.workdir:
                ap.error("--selftest-bin needs --workdir")
            return run_selftest(args)
        if args.run_dir:
            if not args.val:
                ap.error("--run-dir needs --val")
            return run_dir_check(args)
        if args.model:
            load_and_check(args.model)
            return 0
        ap.error("one of --run-dir, --selftest-bin, --model is required")
    except CheckError as e:
        print(f"export_ort_check: FAIL: {e}", file=sys.stderr)
        return 1
    except (onnx.checker.ValidationError, OSError) as e:
        print(f"export_ort_check: FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
