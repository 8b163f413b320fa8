#!/usr/bin/env python3
"""tools/results_table.py ROOT [ROOT...]: Markdown accuracy table from tools/results_table.sh runs
(each ROOT holds w{W}a{A}_{mode}/results.json and the .cmd file with the exact command)."""
import json
import os
import sys

MODES = [("nearest", "round-to-nearest"), ("adaround", "AdaRound (layer-wise)"), ("nodrop", "No-Drop"), ("qdrop", "QDrop")]
BITS = ["w4a4", "w2a4", "w3a3", "w2a2"]
for root in sys.argv[1:]:
    rows, cmds, fp32, iters, secs = {}, [], None, None, {}
    for b in BITS:
        for m, _ in MODES:
            p = os.path.join(root, f"{b}_{m}", "results.json")
            if not os.path.exists(p):
                continue
            r = json.load(open(p))
            acc = r["accuracy"]
            rows[(b, m)] = acc.get("quant_top1")
            secs[(b, m)] = r["timing"].get("total_s")
            if "fp32_top1" in acc:
                fp32 = acc["fp32_top1"]
            if m != "nearest":
                iters = r.get("iters_per_unit")
            c = os.path.join(root, f"{b}_{m}.cmd")
            if os.path.exists(c):
                cmds.append(open(c).read().strip())
    print(f"### ResNet-20, CIFAR-10 test (10,000 JPEGs), {iters} iterations per unit\n")
    print("| method | " + " | ".join(b.upper().replace("W", "W").replace("A", "A") for b in BITS) + " |")
    print("|---|" + "---:|" * len(BITS))
    print(f"| FP32 | " + " | ".join(f"{fp32:.2f}" if fp32 is not None else "–" for _ in BITS) + " |")
    for m, name in MODES:
        cells = [f"{rows[(b, m)]:.2f}" if rows.get((b, m)) is not None else "–" for b in BITS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nWall time per run (s, 2 shared cores): " + ", ".join(f"{b}/{m} {secs[(b, m)]:.0f}" for (b, m) in secs))
    print("\nCommands:\n\n```sh")
    for c in cmds:
        print(c)
    print("```\n")
