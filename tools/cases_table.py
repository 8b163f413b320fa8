#!/usr/bin/env python3
"""tools/cases_table.py ROOT: Markdown table of the Case 1/2/3 / BRECQ / No-Drop / QDrop runs of
tools/cases_table.sh (ROOT holds w{W}a{A}_{mode}/results.json and w{W}a{A}_{mode}.cmd)."""
import json
import os
import sys

MODES = [("case1", "Case 1 (weights tuned with FP activations; ranges after all weights)"),
         ("case2", "Case 2 (ranges first; tuning sees all activation quantization)"),
         ("case3", "Case 3 (upstream quantized, current unit FP; its ranges right after)"),
         ("brecq_stage1only", "BRECQ stage 1 only (block AdaRound, FP activations; then ranges)"),
         ("brecq_act200", "BRECQ, activation stage shortened to 200 iterations (diagnostic)"),
         ("brecq", "BRECQ (stage 1 + activation stage: LSQ, FP inputs, L_2.4, 5,000 iterations)"),
         ("nodrop", "No-Drop"),
         ("qdrop", "QDrop")]
BITS = ["w2a4", "w3a3"]
root = sys.argv[1]
rows, cmds, secs, fp32, extra = {}, [], {}, None, {}
for m, _ in MODES:
    for b in BITS:
        name = f"{b}_{m}"
        p = os.path.join(root, name, "results.json")
        if not os.path.exists(p):
            continue
        r = json.load(open(p))
        rows[(b, m)] = r["accuracy"].get("quant_top1")
        fp32 = r["accuracy"].get("fp32_top1", fp32)
        secs[name] = r["timing"].get("total_s")
        if m.startswith("brecq"):
            st2 = [u for u in r.get("units", []) if u["name"].startswith("act ")]
            extra[name] = (sum(u["iters_run"] for u in st2), len([u for u in st2 if u["iters_run"] > 0]))
        c = os.path.join(root, name + ".cmd")
        if os.path.exists(c):
            cmds.append(open(c).read().strip())
print("### Case 1 / 2 / 3, BRECQ, No-Drop, QDrop (QDrop paper Table 1 / docs/algorithm.md §9), 200 iterations per unit\n")
print("| method | " + " | ".join(b.upper() for b in BITS) + " |")
print("|---|" + "---:|" * len(BITS))
if fp32 is not None:
    print("| FP32 | " + " | ".join(f"{fp32:.2f}" for _ in BITS) + " |")
for m, name in MODES:
    cells = [f"{rows[(b, m)]:.2f}" if rows.get((b, m)) is not None else "–" for b in BITS]
    print(f"| {name} | " + " | ".join(cells) + " |")
if extra:
    print("\nBRECQ activation stage, iterations run (units with activation quantizers): " +
          ", ".join(f"{k} {v[0]} ({v[1]} units)" for k, v in extra.items()))
print("\nWall time per run (s, 1 thread, nice 10, 2 shared cores with up to 3 runs at once): " +
      ", ".join(f"{k} {v:.0f}" for k, v in secs.items()))
print("\nCommands:\n\n```sh")
for c in cmds:
    print(c)
print("```\n")
