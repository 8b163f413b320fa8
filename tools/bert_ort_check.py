#!/usr/bin/env python3
"""ONNX Runtime redoes a BERT run's quantized evaluation from its exported encoder (docs/bert.md).

Usage: bert_ort_check.py RUN_DIR [--tol 1e-4] [--batch 32] [--free-length] [--model DIR]
                         [--ort-opt disable|basic|extended|all] [--nbits-accuracy-level 0]
                         [--trace SENTENCE|worst [--trace-bin build/tests/bert_trace] [--trace-device cpu|cuda]]

RUN_DIR is a finished `model.type: "bert"` run with `output.export_onnx` and `output.logits`:
model_qdq.onnx (the quantized encoder: inputs `embeddings` [N,S,H] and `attention_mask`
[N,1,1,S], output the last hidden state), eval_embeddings.npy / eval_lengths.npy /
eval_outputs.npy (the encoder's input rows of every evaluation sentence's valid tokens, their
token counts, the engine's host results), predictions.csv, results.json and resolved_config.json.

ONNX Runtime (CPUExecutionProvider, graph optimizations off unless --ort-opt says otherwise; from
`extended` on, ONNX Runtime replaces each DequantizeLinear + MatMul of a weight of 4 bits or less
by its MatMulNBits kernel, which by default quantizes its float input to int8 (session option
session.qdq_matmulnbits_accuracy_level, default 4): this tool sets that option to
--nbits-accuracy-level, default 0 = float input, the exported model's own arithmetic) runs the
encoder on those inputs,
batches of --batch sentences sorted longest first, padded to the exported sequence length
(additive mask 0 / -inf; the export fixes the length at the calibration length: a batch with a
longer sentence runs on a copy of the model with a symbolic length, see seq_len_free), then the
host part of the evaluation in numpy:
  STS-B: mean pooling over the valid tokens, L2 norm, cosine of each pair (sentences i and n + i),
         Spearman (average ranks) against the gold scores of predictions.csv;
  SST-2: [CLS] -> pooler (tanh) -> classifier with the head of the checkpoint's
         model.safetensors, argmax, accuracy against the labels of predictions.csv.
Prints the engine's metric (results.json accuracy.quant), ONNX Runtime's, their difference and the
largest difference of the per-sentence results (embeddings / logits). Passes when
|difference| <= --tol, SST-2 predictions all equal the engine's, and the engine's own recorded
results give its metric again (the record is the evaluation that was scored).

--trace SENTENCE (an index into the recorded sentences) compares that sentence node by node instead
of the whole evaluation; `--trace worst` runs the whole comparison first and then traces the
sentence whose result differs most (the exit status is then the trace's): build/tests/bert_trace (tools/bert_trace.c)
computes every node's output of the run's quantized encoder graph as the engine does (CPU backend,
model from encodings.json), ONNX Runtime every tensor of the exported model, both on that sentence
alone. Prints each node whose outputs differ (largest difference relative to the tensor's largest
value; for a quantizer's output the number of rounding flips, i.e. elements one grid step apart)
up to the first flip and a summary after it, then the verdict. Passes when everything before the
first flip agrees to float rounding (relative 1e-5) and every flip of that first quantizer is of an
element whose pre-quantizer value lies within float rounding (1e-5 of the tensor's largest value)
of a rounding boundary: the two runtimes then compute the same function and the rest of the
differences follow from those flips. Fails naming the node otherwise. --trace-device cuda computes
the engine's side on the CUDA backend (FP32, no TF32), to compare a GPU's arithmetic the same way.

Exit codes: 0 pass, 1 fail, 2 usage / missing files, 77 numpy or onnxruntime not importable.
"""
import argparse
import csv
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import onnxruntime as ort
except Exception as e:  # pragma: no cover - depends on the environment
    print(f"bert_ort_check: skipped: {e}")
    sys.exit(77)


def ranks(x):
    """1-based ranks, ties get their average rank (as scipy.stats.rankdata)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    r = np.empty(len(x), dtype=np.float64)
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        r[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    return float((ra * rb).sum() / np.sqrt((ra * ra).sum() * (rb * rb).sum()))


def read_safetensors(path, names):
    """The named float32 tensors of a .safetensors file (8-byte header size, JSON header, data)."""
    with open(path, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen))
        base = 8 + hlen
        out = {}
        for n in names:
            t = header.get(n)
            if t is None:
                continue
            if t["dtype"] != "F32":
                raise SystemExit(f"bert_ort_check: {path}: {n}: dtype {t['dtype']}, expected F32")
            b, e = t["data_offsets"]
            f.seek(base + b)
            out[n] = np.frombuffer(f.read(e - b), dtype="<f4").reshape(t["shape"])
        return out


def seq_len_free(model_path):
    """The exported encoder with its sequence length made symbolic: the export fixes it at the
    graph's length (the calibration length); the head split / merge Reshape constants keep it as
    0 (copy the input's dimension), which is the same length for every sentence that fits."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(model_path)
    S = m.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    for vi in list(m.graph.input) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        k = 3 if vi.name == "attention_mask" else 1
        dims[k].dim_param = "S"
    consts = {i.name: i for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "Reshape" and n.input[1] in consts:
            t = consts[n.input[1]]
            v = numpy_helper.to_array(t).copy()
            if len(v) > 1 and v[1] == S:
                v[1] = 0
                t.CopyFrom(numpy_helper.from_array(v, t.name))
    return m.SerializeToString()


OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}


def run_encoder(model, emb, lens, batch, free_length=False, opt="disable", nbits_accuracy="0"):
    """Last hidden state of every sentence's valid tokens. Batches of sentences that fit the
    exported length run on the exported model as it is, padded to that length; a longer batch
    runs on seq_len_free(model), padded to its longest sentence (every batch with free_length)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[opt])
    so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", str(nbits_accuracy))
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    S_fixed = sess.get_inputs()[0].shape[1]
    free = None
    n, H = len(lens), emb.shape[1]
    off = np.concatenate([[0], np.cumsum(lens)])
    order = sorted(range(n), key=lambda i: (-lens[i], i))  # longest first, like the engine
    hid = [None] * n
    n_free = 0
    for s0 in range(0, n, batch):
        idx = order[s0:s0 + batch]
        S = max(lens[i] for i in idx)
        run = sess
        if isinstance(S_fixed, int) and S <= S_fixed and not free_length:
            S = S_fixed
        else:
            if free is None:
                free = ort.InferenceSession(seq_len_free(model), so, providers=["CPUExecutionProvider"])
            run = free
            n_free += len(idx)
        x = np.zeros((len(idx), S, H), dtype=np.float32)
        m = np.full((len(idx), 1, 1, S), -np.inf, dtype=np.float32)
        for b, i in enumerate(idx):
            x[b, :lens[i]] = emb[off[i]:off[i + 1]]
            m[b, 0, 0, :lens[i]] = 0.0
        y = run.run(None, {"embeddings": x, "attention_mask": m})[0]
        for b, i in enumerate(idx):
            hid[i] = y[b, :lens[i]].astype(np.float64)
    print(f"exported length {S_fixed}: {n - n_free} sentences on the exported model, {n_free} on its "
          f"symbolic-length copy")
    return hid


def read_trace(path):
    """bert_trace's OUT.bin: {value name: array} in node order."""
    vals = {}
    with open(path, "rb") as f:
        b = f.read()
    o = 0
    while o < len(b):
        (nl,) = struct.unpack_from("<I", b, o)
        o += 4
        name = b[o:o + nl].decode()
        o += nl
        (nd,) = struct.unpack_from("<I", b, o)
        o += 4
        dims = struct.unpack_from(f"<{nd}q", b, o)
        o += 8 * nd
        n = int(np.prod(dims))
        vals[name] = np.frombuffer(b, dtype="<f4", count=n, offset=o).reshape(dims)
        o += 4 * n
    return vals


def trace(d, which, emb, lens, trace_bin, model_dir, device="cpu"):
    """Node-by-node comparison of one sentence (module docstring, --trace). Returns 0, 1 or 2."""
    import onnx
    from onnx import numpy_helper
    n = len(lens)
    try:
        i = int(which)
    except ValueError:
        i = -1
    if not 0 <= i < n:
        print(f"bert_ort_check: --trace {which}: expected a sentence index in 0..{n - 1} or 'worst'")
        return 2
    if not os.access(trace_bin, os.X_OK):
        print(f"bert_ort_check: {trace_bin}: not found (build the tests: scripts/build.sh), or pass --trace-bin")
        return 2
    L = lens[i]
    off = int(np.sum(lens[:i]))
    x = np.ascontiguousarray(emb[off:off + L][None], dtype=np.float32)
    m = np.zeros((1, 1, 1, L), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        x.tofile(os.path.join(tmp, "x.f32"))
        m.tofile(os.path.join(tmp, "m.f32"))
        cmd = [trace_bin, "--device", device, d, os.path.join(tmp, "x.f32"), os.path.join(tmp, "m.f32"), "1", str(L),
               os.path.join(tmp, "engine.bin")] + ([model_dir] if model_dir else [])
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"bert_ort_check: {' '.join(cmd[:1])} exited {r.returncode}: {r.stderr.strip()}")
            return 2
        eng = read_trace(os.path.join(tmp, "engine.bin"))
    model = onnx.load_from_string(seq_len_free(os.path.join(d, "model_qdq.onnx")))
    known = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for o in node.output:
            if o and o not in known:
                model.graph.output.append(onnx.helper.make_empty_tensor_value_info(o))
                known.add(o)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    ortv = dict(zip(names, sess.run(None, {"embeddings": x, "attention_mask": m})))
    scales = {t.name: float(numpy_helper.to_array(t)) for t in model.graph.initializer
              if t.name.endswith("_scale") and not t.dims}
    outputs = {o.name for o in model.graph.output[:1]}
    print(f"trace: sentence {i} ({L} tokens), {len(eng)} nodes, engine on {device}")
    first, verdict, flips_total, after = None, 0, 0, []
    for name, e in eng.items():
        # the export's names (src/export/export_onnx.c): a quantized value v is produced as v and
        # read as v_dq (a graph output: produced as v_float, read as v)
        if name in outputs and name + "_float" in ortv:
            pre, post = name + "_float", name
        else:
            pre, post = name, name + "_dq"
        quant = pre + "_scale" in scales and post in ortv
        r = ortv.get(post if quant else name)
        if r is None or r.shape != e.shape:
            print(f"FAIL: node output {name}: no ONNX Runtime tensor of shape {e.shape}")
            return 1
        e64, r64 = e.astype(np.float64), r.astype(np.float64)
        diff = np.abs(e64 - r64)
        big = max(float(np.abs(r64).max()), 1e-30)
        rel = float(diff.max()) / big
        if rel == 0.0:
            continue
        line = f"  {name}: max difference {diff.max():.3g} ({rel:.2g} of its largest value), {int((diff > 0).sum())} of {diff.size} elements"
        if quant:
            s = scales[pre + "_scale"]
            flipped = diff > 0.5 * s
            nf = int(flipped.sum())
            flips_total += nf
            if nf:
                line += f", {nf} rounding flips (step {s:.3g})"
            if first is None and nf:
                first = name
                xpre = ortv[pre].astype(np.float64)
                t = xpre / s
                dist = np.abs(np.abs(t - np.floor(t)) - 0.5)[flipped] * s  # to the nearest boundary
                one_step = bool(np.all(np.abs(diff[flipped] - s) <= 1e-3 * s))
                worst = float(dist.max()) / max(float(np.abs(xpre).max()), 1e-30)
                line += f"; every flip one step: {'yes' if one_step else 'NO'}; largest distance of a flipped " \
                        f"element's input from a rounding boundary {worst:.2g} of the tensor's largest value"
                print(line)
                if not one_step or worst > 1e-5:
                    print(f"FAIL: node {name}: the quantizer's outputs differ by more than rounding flips at a boundary")
                    verdict = 1
                continue
        if first is None:
            print(line)
            if rel > 1e-5:
                print(f"FAIL: node {name}: outputs differ by {rel:.2g} of the largest value before any rounding flip")
                return 1
        else:
            after.append((name, rel))
    if first is None:
        print("trace: no rounding flip: every node agrees to float rounding")
        return verdict
    last = after[-1] if after else (first, 0.0)
    print(f"trace: first rounding flip at {first}; after it {len(after)} node outputs differ "
          f"({flips_total} flips in all), up to {max([r for _, r in after] + [0.0]):.2g} of a tensor's largest "
          f"value (output {last[0]}: {last[1]:.2g})")
    if verdict == 0:
        print("trace ok: before the first flip every node agrees to float rounding, and the first flips are of "
              "elements at a rounding boundary")
    return verdict


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--free-length", action="store_true",
                    help="run every batch on the symbolic-length copy, padded to its longest sentence")
    ap.add_argument("--ort-opt", choices=sorted(OPT_LEVELS), default="disable",
                    help="ONNX Runtime graph optimization level (default: disable)")
    ap.add_argument("--nbits-accuracy-level", default="0",
                    help="session.qdq_matmulnbits_accuracy_level (default 0: MatMulNBits keeps float inputs)")
    ap.add_argument("--model", help="the run's model directory (default: model.path of resolved_config.json)")
    ap.add_argument("--trace", metavar="SENTENCE", help="compare one sentence node by node (index or 'worst')")
    ap.add_argument("--trace-bin", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build",
                                                        "tests", "bert_trace"))
    ap.add_argument("--trace-device", choices=["cpu", "cuda"], default="cpu",
                    help="backend of the engine's side of --trace (default cpu)")
    a = ap.parse_args()
    d = a.run_dir
    need = ["model_qdq.onnx", "eval_embeddings.npy", "eval_lengths.npy", "eval_outputs.npy", "predictions.csv",
            "results.json", "resolved_config.json"]
    missing = [f for f in need if not os.path.isfile(os.path.join(d, f))]
    if missing:
        print(f"bert_ort_check: {d}: missing {', '.join(missing)} (a BERT run with output.export_onnx and output.logits)")
        return 2
    res = json.load(open(os.path.join(d, "results.json")))
    cfg = json.load(open(os.path.join(d, "resolved_config.json")))
    acc = res.get("accuracy", {})
    metric, engine = acc.get("metric"), acc.get("quant")
    if metric not in ("spearman_cosine", "accuracy") or engine is None:
        print(f"bert_ort_check: {d}/results.json: accuracy block {acc!r} has no quantized metric")
        return 2
    emb = np.load(os.path.join(d, "eval_embeddings.npy"))
    lens = [int(v) for v in np.load(os.path.join(d, "eval_lengths.npy"))]
    outs = np.load(os.path.join(d, "eval_outputs.npy")).astype(np.float64)
    with open(os.path.join(d, "predictions.csv")) as f:
        rows = list(csv.DictReader(f))
    if sum(lens) != emb.shape[0] or len(lens) != outs.shape[0]:
        print(f"FAIL: record sizes: {emb.shape[0]} token rows for {sum(lens)} tokens, {outs.shape[0]} results for {len(lens)} sentences")
        return 1
    if a.trace is not None and a.trace != "worst":
        return trace(d, a.trace, emb, lens, a.trace_bin, a.model, a.trace_device)
    hid = run_encoder(os.path.join(d, "model_qdq.onnx"), emb, lens, a.batch, a.free_length, a.ort_opt,
                      a.nbits_accuracy_level)
    fails = []
    if metric == "spearman_cosine":
        n = len(rows)
        if len(lens) != 2 * n:
            print(f"FAIL: {len(lens)} recorded sentences for {n} pairs")
            return 1
        pooled = np.stack([h.mean(axis=0) for h in hid])
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        gold = np.array([float(r["gold"]) for r in rows])
        cos_ort = (pooled[:n] * pooled[n:]).sum(axis=1)
        cos_rec = (outs[:n] * outs[n:]).sum(axis=1)
        cos_eng = np.array([float(r["quant"]) for r in rows])
        ours, rec = spearman(cos_ort, gold), spearman(cos_rec, gold)
        out_diff = float(np.abs(pooled - outs).max())
        per = np.abs(pooled - outs).max(axis=1)
        n_off, med = int((per > 1e-4).sum()), float(np.median(per))
        print(f"sentences {len(lens)}, tokens {emb.shape[0]}, pairs {n}")
        print(f"max |embedding(ORT) - embedding(engine)| = {out_diff:.3g} ({n_off} sentences above 1e-4, median "
              f"{med:.2g}); max |cosine(ORT) - cosine(engine)| = {float(np.abs(cos_ort - cos_eng).max()):.3g}")
        label = "Spearman"
    else:
        model_dir = a.model or cfg.get("model", {}).get("path", "")
        st = os.path.join(model_dir, "model.safetensors")
        pre = "bert."
        w = read_safetensors(st, [pre + "pooler.dense.weight", pre + "pooler.dense.bias", "pooler.dense.weight",
                                  "pooler.dense.bias", "classifier.weight", "classifier.bias"])
        if pre + "pooler.dense.weight" not in w:
            pre = ""
        if pre + "pooler.dense.weight" not in w or "classifier.weight" not in w:
            print(f"bert_ort_check: {st}: no pooler/classifier head")
            return 2
        cls = np.stack([h[0] for h in hid])
        pooled = np.tanh(cls @ w[pre + "pooler.dense.weight"].T.astype(np.float64) + w[pre + "pooler.dense.bias"])
        logits = pooled @ w["classifier.weight"].T.astype(np.float64) + w["classifier.bias"]
        pred_ort = logits.argmax(axis=1)
        pred_eng = np.array([int(float(r["quant"])) for r in rows])
        labels = np.array([int(r["label"]) for r in rows])
        if len(pred_eng) != len(lens):
            print(f"FAIL: {len(lens)} recorded sentences for {len(pred_eng)} examples")
            return 1
        ours, rec = float((pred_ort == labels).mean()), float((outs.argmax(axis=1) == labels).mean())
        out_diff = float(np.abs(logits - outs).max())
        per = np.abs(logits - outs).max(axis=1)
        n_off, med = int((per > 1e-4).sum()), float(np.median(per))
        same = int((pred_ort == pred_eng).sum())
        print(f"sentences {len(lens)}, tokens {emb.shape[0]}")
        print(f"max |logit(ORT) - logit(engine)| = {out_diff:.3g} ({n_off} sentences above 1e-4, median "
              f"{med:.2g}); predictions equal: {same} / {len(pred_eng)}")
        if same != len(pred_eng):
            fails.append(f"{len(pred_eng) - same} predictions differ")
        label = "accuracy"
    if a.trace == "worst":
        print(f"worst sentence: {int(np.argmax(per))} (difference {float(per.max()):.3g})")
        return trace(d, str(int(np.argmax(per))), emb, lens, a.trace_bin, a.model, a.trace_device)
    diff = ours - engine
    print(f"{label}: engine {engine:.6f}  ONNX Runtime {ours:.6f}  difference {diff:+.2e} (tolerance {a.tol:g})")
    if abs(rec - engine) > 1e-9:
        fails.append(f"the recorded engine results give {rec:.9f}, results.json {engine:.9f}")
    if not abs(diff) <= a.tol:
        fails.append(f"|{label} difference| {abs(diff):.3g} > {a.tol:g}")
    if fails:
        print("FAIL: " + "; ".join(fails))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
