#!/usr/bin/env python3
"""Tiny random BERT sequence classifier for the SST-2 tests (issue 7). Never needed by CI.

Writes tests/fixtures/bert/sst2_tiny/:
  config.json, tokenizer_config.json, vocab.txt, model.safetensors  (a HuggingFace
      BertForSequenceClassification directory: 2 layers, hidden 32, 2 heads, FFN 64, 2 labels,
      `bert.` key prefix, pooler + classifier head; weights random, NOT a trained model)
  golden.json  numpy float64 reference: token ids and logits of the first N_GOLD sentences of
      assets/sst2/sst2_dev.tsv, the argmax prediction of every dev sentence, FP32 accuracy.

The vocabulary is small (special tokens, every character of the dev file alone and as `##c`, the
most frequent dev words) so that every sentence tokenizes without [UNK] and the fixture stays
small. Token ids come from HuggingFace's BertTokenizer when transformers is installed
(required to regenerate; checked against the C tokenizer by test_bert_sst2). When torch is
installed the numpy forward is also checked against transformers' BertForSequenceClassification.

  python3 tools/make_bert_sst2_fixture.py            # regenerate (numpy + transformers)
"""
import collections
import json
import math
import os
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "bert", "sst2_tiny")
DEV = os.path.join(ROOT, "assets", "sst2", "sst2_dev.tsv")
H, L, NH, FF, MAXPOS, NLAB, NWORDS, MAXLEN, N_GOLD, SEED = 32, 2, 2, 64, 128, 2, 600, 128, 24, 20261129


def read_sst2(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        head = f.readline().rstrip("\n").split("\t")
        cs, cl = head.index("sentence"), head.index("label")
        for line in f:
            line = line.rstrip("\n").rstrip("\r")
            if not line:
                continue
            p = line.split("\t")
            rows.append((p[cs], int(p[cl])))
    return rows


def make_vocab(rows):
    words = collections.Counter()
    chars = set()
    for s, _ in rows:
        for w in s.split():
            words[w] += 1
            chars.update(w)
    chars = sorted(chars)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]
    seen = set(vocab)
    for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= NWORDS + 5 + 2 * len(chars):
            break
        # whole words only: the BasicTokenizer splits punctuation off, so keep alphanumeric words
        if w.isalnum() and w not in seen:
            vocab.append(w)
            seen.add(w)
    return vocab


def weights(vocab_size, rng):
    def n(*shape, sd):
        return rng.normal(0.0, sd, size=shape).astype(np.float32)
    w = {}
    p = "bert."
    w[p + "embeddings.word_embeddings.weight"] = n(vocab_size, H, sd=0.5)
    w[p + "embeddings.position_embeddings.weight"] = n(MAXPOS, H, sd=0.2)
    w[p + "embeddings.token_type_embeddings.weight"] = n(2, H, sd=0.2)
    w[p + "embeddings.LayerNorm.weight"] = 1.0 + n(H, sd=0.1)
    w[p + "embeddings.LayerNorm.bias"] = n(H, sd=0.1)
    for i in range(L):
        q = p + "encoder.layer.%d." % i
        for nm, o, k, sd in (("attention.self.query", H, H, 0.3), ("attention.self.key", H, H, 0.3),
                             ("attention.self.value", H, H, 0.2), ("attention.output.dense", H, H, 0.2),
                             ("intermediate.dense", FF, H, 0.2), ("output.dense", H, FF, 0.15)):
            w[q + nm + ".weight"] = n(o, k, sd=sd)
            w[q + nm + ".bias"] = n(o, sd=0.05)
        for nm in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[q + nm + ".weight"] = 1.0 + n(H, sd=0.1)
            w[q + nm + ".bias"] = n(H, sd=0.1)
    w[p + "pooler.dense.weight"] = n(H, H, sd=0.3)
    w[p + "pooler.dense.bias"] = n(H, sd=0.05)
    w["classifier.weight"] = n(NLAB, H, sd=0.5)
    w["classifier.bias"] = n(NLAB, sd=0.05)
    return w


def write_safetensors(path, tensors):
    header, off, blobs = {}, 0, []
    for k in sorted(tensors):
        b = np.ascontiguousarray(tensors[k], dtype="<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(tensors[k].shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


_erf = np.vectorize(math.erf)


def layer_norm(x, g, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def forward(w, ids):
    """float64 BertForSequenceClassification forward of one unpadded sentence -> logits [NLAB]."""
    W = {k: v.astype(np.float64) for k, v in w.items()}
    p = "bert."
    S = len(ids)
    x = W[p + "embeddings.word_embeddings.weight"][ids] + W[p + "embeddings.position_embeddings.weight"][:S] \
        + W[p + "embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, W[p + "embeddings.LayerNorm.weight"], W[p + "embeddings.LayerNorm.bias"])
    d = H // NH
    for i in range(L):
        q = p + "encoder.layer.%d." % i

        def lin(nm, v):
            return v @ W[q + nm + ".weight"].T + W[q + nm + ".bias"]
        Q = lin("attention.self.query", x).reshape(S, NH, d).transpose(1, 0, 2)
        K = lin("attention.self.key", x).reshape(S, NH, d).transpose(1, 0, 2)
        V = lin("attention.self.value", x).reshape(S, NH, d).transpose(1, 0, 2)
        sc = Q @ K.transpose(0, 2, 1) / math.sqrt(d)
        sc -= sc.max(-1, keepdims=True)
        pr = np.exp(sc)
        pr /= pr.sum(-1, keepdims=True)
        ctx = (pr @ V).transpose(1, 0, 2).reshape(S, H)
        h1 = layer_norm(lin("attention.output.dense", ctx) + x, W[q + "attention.output.LayerNorm.weight"],
                        W[q + "attention.output.LayerNorm.bias"])
        pre = lin("intermediate.dense", h1)
        inter = 0.5 * pre * (1.0 + _erf(pre / math.sqrt(2.0)))
        x = layer_norm(lin("output.dense", inter) + h1, W[q + "output.LayerNorm.weight"], W[q + "output.LayerNorm.bias"])
    pooled = np.tanh(W[p + "pooler.dense.weight"] @ x[0] + W[p + "pooler.dense.bias"])
    return W["classifier.weight"] @ pooled + W["classifier.bias"]


def main():
    from transformers import BertTokenizer
    rows = read_sst2(DEV)
    vocab = make_vocab(rows)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    cfg = {"architectures": ["BertForSequenceClassification"], "model_type": "bert", "hidden_size": H,
           "num_hidden_layers": L, "num_attention_heads": NH, "intermediate_size": FF, "hidden_act": "gelu",
           "max_position_embeddings": MAXPOS, "type_vocab_size": 2, "vocab_size": len(vocab),
           "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
           "initializer_range": 0.02, "pad_token_id": 0, "id2label": {"0": "negative", "1": "positive"},
           "label2id": {"negative": 0, "positive": 1}, "problem_type": "single_label_classification"}
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "model_max_length": MAXLEN, "tokenizer_class": "BertTokenizer"}, f, indent=2)
        f.write("\n")
    w = weights(len(vocab), np.random.default_rng(SEED))
    write_safetensors(os.path.join(OUT, "model.safetensors"), w)

    tok = BertTokenizer(os.path.join(OUT, "vocab.txt"), do_lower_case=True)
    ids_all = [tok(s, truncation=True, max_length=MAXLEN)["input_ids"] for s, _ in rows]
    unk = sum(i.count(tok.unk_token_id) for i in ids_all)
    logits = np.array([forward(w, ids) for ids in ids_all])
    pred = logits.argmax(1)
    gold = np.array([l for _, l in rows])
    acc = float((pred == gold).mean())
    margin = np.abs(logits[:, 1] - logits[:, 0])
    print("vocab %d, [UNK] %d, max tokens %d, truncated %d, FP32 accuracy %.6f (%d/%d), predicted positive %d, "
          "min |margin| %.3g" % (len(vocab), unk, max(map(len, ids_all)), sum(len(i) == MAXLEN for i in ids_all), acc,
                                 int((pred == gold).sum()), len(rows), int(pred.sum()), margin.min()))
    try:
        import torch
        from transformers import BertForSequenceClassification
        m = BertForSequenceClassification.from_pretrained(OUT).double().eval()
        worst = 0.0
        with torch.no_grad():
            for ids, ref in zip(ids_all[:64], logits[:64]):
                out = m(input_ids=torch.tensor([ids])).logits[0].numpy()
                worst = max(worst, float(np.abs(out - ref).max()))
        print("numpy vs transformers BertForSequenceClassification (float64, 64 sentences): max |diff| %.3g" % worst)
        assert worst < 1e-9
    except ImportError:
        print("torch not installed: transformers cross-check skipped")
    golden = {
        "generator": "tools/make_bert_sst2_fixture.py (numpy float64 forward; ids from transformers BertTokenizer)",
        "dev_file": "assets/sst2/sst2_dev.tsv", "max_len": MAXLEN, "n_dev": len(rows),
        "fp32_accuracy": acc, "fp32_correct": int((pred == gold).sum()), "min_abs_margin": float(margin.min()),
        "pred": "".join(str(int(v)) for v in pred),
        "sentences": [{"text": rows[i][0], "label": rows[i][1], "ids": ids_all[i], "logits": [float(v) for v in logits[i]]}
                      for i in range(N_GOLD)],
    }
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    tot = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print("wrote %s (%d bytes)" % (OUT, tot))


if __name__ == "__main__":
    sys.exit(main())
