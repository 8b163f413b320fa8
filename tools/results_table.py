#!/usr/bin/env python3
"""tools/results_table.py ROOT [ROOT...]: Markdown accuracy table from tools/results_table.sh runs
(each ROOT holds w{W}a{A}_{mode}/results.json and the .cmd file with the exact command).
--top5: cells read "top-1 / top-5". A cell whose run has not finished reads "–"."""
import json
import os
import sys

MODES = [("nearest", "round-to-nearest"), ("adaround", "AdaRound (layer-wise)"), ("nodrop", "No-Drop"), ("qdrop", "QDrop")]
BITS = ["w4a4", "w2a4", "w3a3", "w2a2"]
args = sys.argv[1:]
top5 = "--top5" in args
args = [a for a in args if a != "--top5"]
for root in args:
    rows, rows5, cmds, fp32, fp32_5, iters, secs = {}, {}, [], None, None, None, {}
    for b in BITS:
        for m, _ in MODES:
            p = os.path.join(root, f"{b}_{m}", "results.json")
            if not os.path.exists(p):
                continue
            r = json.load(open(p))
            acc = r["accuracy"]
            rows[(b, m)] = acc.get("quant_top1")
            rows5[(b, m)] = acc.get("quant_top5")
            secs[(b, m)] = r["timing"].get("total_s")
            if "fp32_top1" in acc:
                fp32, fp32_5 = acc["fp32_top1"], acc.get("fp32_top5")
            if m != "nearest":
                iters = r.get("iters_per_unit")
            c = os.path.join(root, f"{b}_{m}.cmd")
            if os.path.exists(c):
                cmds.append(open(c).read().strip())
    print(f"### ResNet-20, CIFAR-10 test (10,000 JPEGs), {iters} iterations per unit" + (", top-1 / top-5 %" if top5 else "") + "\n")
    print("| method | " + " | ".join(b.upper().replace("W", "W").replace("A", "A") for b in BITS) + " |")
    print("|---|" + "---:|" * len(BITS))
    def cell(t1, t5):
        if t1 is None:
            return "–"
        return f"{t1:.2f} / {t5:.2f}" if top5 and t5 is not None else f"{t1:.2f}"
    print(f"| FP32 | " + " | ".join(cell(fp32, fp32_5) for _ in BITS) + " |")
    for m, name in MODES:
        cells = [cell(rows.get((b, m)), rows5.get((b, m))) for b in BITS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nWall time per run (s, 2 shared cores): " + ", ".join(f"{b}/{m} {secs[(b, m)]:.0f}" for (b, m) in secs))
    print("\nCommands:\n\n```sh")
    for c in cmds:
        print(c)
    print("```\n")
