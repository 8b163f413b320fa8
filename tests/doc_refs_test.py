#!/usr/bin/env python3
"""tests/doc_refs_test.py: every section reference (§N or §N.M) in the source, tests, tools and docs
points at a section that docs/algorithm.md defines (an anchor <a id="sN-M">), so a reference in a
comment can always be followed inside the repository. Exit 0 pass, 1 a dangling reference."""
import os
import re
import sys

SRC = os.environ.get("QD_SRC_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALGO = os.path.join(SRC, "docs", "algorithm.md")
anchors = set(re.findall(r'<a id="s([0-9-]+)"></a>', open(ALGO, encoding="utf-8").read()))
if len(anchors) < 10:
    print("doc_refs: docs/algorithm.md defines only %d anchors" % len(anchors))
    sys.exit(1)
ref = re.compile(r"§ ?(\d+(?:\.\d+)?)")
bad, n = [], 0
for top in ("src", "cuda", "include", "tests", "tools", "bench", "docs", "configs", "README.md"):
    root = os.path.join(SRC, top)
    paths = [root] if os.path.isfile(root) else [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
    for p in paths:
        if not p.endswith((".c", ".h", ".cu", ".py", ".sh", ".md", ".cmake", ".json")):
            continue
        try:
            text = open(p, encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        for m in ref.finditer(text):
            n += 1
            if m.group(1).replace(".", "-") not in anchors:
                line = text.count("\n", 0, m.start()) + 1
                bad.append("%s:%d: §%s" % (os.path.relpath(p, SRC), line, m.group(1)))
for b in bad:
    print("dangling section reference (no anchor in docs/algorithm.md):", b)
print("doc_refs: %d references, %d anchors, %d dangling" % (n, len(anchors), len(bad)))
sys.exit(1 if bad else 0)
