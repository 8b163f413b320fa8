#!/usr/bin/env python3
"""ONNX Runtime redoes a BERT run's quantized evaluation from its exported encoder (docs/bert.md).

Usage: bert_ort_check.py RUN_DIR [--tol 1e-4] [--batch 32] [--free-length]

RUN_DIR is a finished `model.type: "bert"` run with `output.export_onnx` and `output.logits`:
model_qdq.onnx (the quantized encoder: inputs `embeddings` [N,S,H] and `attention_mask`
[N,1,1,S], output the last hidden state), eval_embeddings.npy / eval_lengths.npy /
eval_outputs.npy (the encoder's input rows of every evaluation sentence's valid tokens, their
token counts, the engine's host results), predictions.csv, results.json and resolved_config.json.

ONNX Runtime (CPUExecutionProvider, graph optimizations off) runs the encoder on those inputs,
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

Exit codes: 0 pass, 1 fail, 2 usage / missing files, 77 numpy or onnxruntime not importable.
"""
import argparse
import csv
import json
import os
import struct
import sys

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


def run_encoder(model, emb, lens, batch, free_length=False):
    """Last hidden state of every sentence's valid tokens. Batches of sentences that fit the
    exported length run on the exported model as it is, padded to that length; a longer batch
    runs on seq_len_free(model), padded to its longest sentence (every batch with free_length)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--free-length", action="store_true",
                    help="run every batch on the symbolic-length copy, padded to its longest sentence")
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
    hid = run_encoder(os.path.join(d, "model_qdq.onnx"), emb, lens, a.batch, a.free_length)
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
        model_dir = cfg.get("model", {}).get("path", "")
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
