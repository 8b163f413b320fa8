#!/usr/bin/env python3
"""tests/config_docs_test.py: docs/config.md agrees with the code.

1. Every key of the Keys tables in docs/config.md whose "default" cell is a literal (a number,
   boolean, string or list, optionally in backticks) must equal that key in the resolved config of
   the built-in defaults (what resolved_config.json holds for a config that sets nothing but
   model.path). Computed defaults are checked too: "min(256, `calibrate`)" and
   "runs/<model file stem>". Every schema key must appear in a table, and every table key in the
   schema.
2. Every sentence in docs/config.md and README.md that gives the iteration count of
   configs/default.json ("`configs/default.json` uses 200", "The default config runs 200
   iterations", "`configs/default.json`'s 200 iterations") must match the file.

Usage: config_docs_test.py PRINT_RESOLVED_CONFIG_BINARY. Exit 0 pass, 1 fail.
"""
import json
import math
import os
import re
import subprocess
import sys

SRC = os.environ.get("QD_SRC_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resolved(binary, cfg=None):
    out = subprocess.run([binary] + ([cfg] if cfg else []), capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        p = prefix + k
        if isinstance(v, dict):
            out.update(flatten(v, p + "."))
        else:
            out[p] = v
    return out


def doc_defaults(md):
    """{key: default cell} from every Markdown table whose header has 'key' and 'default'."""
    rows = {}
    header = None
    for line in md.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if set(cells[0]) <= set("-: "):
            continue
        if "key" in header and "default" in header:
            key = cells[header.index("key")].strip("`")
            rows[key] = cells[header.index("default")]
    return rows


def literal(cell):
    """The JSON value of a default cell, or None when it is not a literal."""
    c = cell.strip().strip("`").strip()
    c = re.sub(r"10⁸", "100000000", c)
    try:
        return json.loads(c)
    except ValueError:
        return None


def same(doc, got):
    if isinstance(doc, bool) or isinstance(got, bool):
        return doc is got
    if isinstance(doc, (int, float)) and isinstance(got, (int, float)):
        return math.isclose(float(doc), float(got), rel_tol=1e-6, abs_tol=0.0)
    if isinstance(doc, list) and isinstance(got, list):
        return len(doc) == len(got) and all(same(a, b) for a, b in zip(doc, got))
    return doc == got


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    binary = sys.argv[1]
    md = open(os.path.join(SRC, "docs", "config.md"), encoding="utf-8").read()
    readme = open(os.path.join(SRC, "README.md"), encoding="utf-8").read()
    defaults = flatten(resolved(binary))
    docs = doc_defaults(md)
    errors = []
    checked = []
    for key in sorted(set(defaults) - set(docs)):
        errors.append("%s: in the schema but not in docs/config.md's tables" % key)
    for key in sorted(set(docs) - set(defaults)):
        errors.append("%s: documented in docs/config.md but not a config key" % key)
    for key, cell in sorted(docs.items()):
        if key not in defaults:
            continue
        got = defaults[key]
        m = re.match(r"`?min\((\d+), `?(?:quant\.)?(\w+)`?\)`?$", cell.strip())
        if m:
            want = min(int(m.group(1)), defaults["quant." + m.group(2)])
        elif cell.strip() == "`runs/<model file stem>`":
            want = os.path.join(os.getcwd(), "runs", "model")  # the placeholder model.path is .../model.onnx
        else:
            want = literal(cell)
            if want is None:
                if "required" not in cell:
                    errors.append("%s: default cell %r is neither a literal nor a known formula" % (key, cell))
                continue
        checked.append(key)
        if not same(want, got):
            errors.append("%s: docs/config.md says the default is %s, the code resolves %s" % (key, cell, json.dumps(got)))
    # configs/default.json iteration claims
    iters = flatten(resolved(binary, os.path.join(SRC, "configs", "default.json")))["quant.recon.iters"]
    claims = []
    pats = [r"`configs/default\.json`(?:'s)? (?:uses |runs )?([\d,]+) iterations?",
            r"`configs/default\.json` uses ([\d,]+)",
            r"[Tt]he default config runs ([\d,]+) iterations"]
    for name, text in (("docs/config.md", md), ("README.md", readme)):
        for p in pats:
            for mm in re.finditer(p, text):
                claims.append((name, mm.group(0), int(mm.group(1).replace(",", ""))))
    if not claims:
        errors.append("no statement of configs/default.json's iteration count found (patterns out of date?)")
    for name, text, n in claims:
        if n != iters:
            errors.append("%s: %r, but configs/default.json resolves quant.recon.iters = %d" % (name, text, iters))
    print("config_docs: %d documented defaults compared, %d default.json iteration claims (file: %d)" %
          (len(checked), len(claims), iters))
    for e in errors:
        print("FAIL: " + e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
