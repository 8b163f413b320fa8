#!/usr/bin/env python3
"""Summarise a ctest run (JUnit XML from `ctest --output-junit`) in one closing line, and in CI
refuse skips that hide a missing dependency.

  python3 scripts/ctest_summary.py --junit build/ctest-junit.xml --tests-json build/ctest-tests.json [--ci]

Last line printed:  `N passed, N failed, N skipped` plus ` (skipped: name, ...)` when any skipped.

A skipped test (exit 77) is *allowed* only when it is a GPU test without a GPU: it carries the
ctest label `cuda` and its output says "no usable CUDA device". With --ci (scripts/test.sh passes
it when CI=true) every other skip is a failure of the run, reported with the test's own skip
message (what is missing), and counted as failed in the closing line. Exit: 0, or 1 when --ci found a disallowed skip (or the XML is unreadable).
"""
import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET

GPU_SKIP = re.compile(r"no usable CUDA device", re.I)
REASON = re.compile(r"(skip\w*[^\n]*)", re.I)


def labels_by_test(path):
    """{test name: [labels]} from `ctest --show-only=json-v1`."""
    if not path:
        return {}
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    out = {}
    for t in doc.get("tests", []):
        labels = []
        for p in t.get("properties", []):
            if p.get("name") == "LABELS":
                v = p.get("value")
                labels = v if isinstance(v, list) else [v]
        out[t.get("name")] = labels
    return out


def classify(tc):
    """'passed' | 'failed' | 'skipped' for one <testcase>."""
    status = (tc.get("status") or "").lower()
    if tc.find("failure") is not None or tc.find("error") is not None or status == "fail":
        return "failed"
    if tc.find("skipped") is not None or status in ("notrun", "disabled", "skipped"):
        return "skipped"
    return "passed"


def skip_reason(tc):
    texts = []
    sk = tc.find("skipped")
    if sk is not None and sk.get("message"):
        texts.append(sk.get("message"))
    so = tc.find("system-out")
    out = so.text if so is not None and so.text else ""
    m = REASON.search(out)
    if m:
        texts.append(m.group(1).strip())
    return out, "; ".join(t for t in texts if t) or "(no skip message printed)"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--junit", required=True)
    ap.add_argument("--tests-json", default=None)
    ap.add_argument("--ci", action="store_true", help="fail on any skip other than a GPU test without a GPU")
    a = ap.parse_args(argv)
    try:
        root = ET.parse(a.junit).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"ctest_summary: cannot read {a.junit}: {e}", file=sys.stderr)
        return 1
    labels = labels_by_test(a.tests_json)
    passed, failed, skipped, bad = [], [], [], []
    for tc in root.iter("testcase"):
        name = tc.get("name")
        kind = classify(tc)
        if kind == "passed":
            passed.append(name)
        elif kind == "failed":
            failed.append(name)
        else:
            skipped.append(name)
            out, why = skip_reason(tc)
            gpu = "cuda" in labels.get(name, []) and GPU_SKIP.search(out or why)
            if not gpu:
                bad.append((name, why))
    rc = 0
    if bad:
        for name, why in bad:
            print(f"ctest_summary: {'ERROR' if a.ci else 'note'}: {name} was skipped for a reason other than "
                  f"'no GPU': {why}", file=sys.stderr if a.ci else sys.stdout)
        if a.ci:
            print("ctest_summary: CI=true: only CUDA tests may skip (no GPU); install what is missing "
                  "(scripts/install_deps.sh)", file=sys.stderr)
            rc = 1
            # counted as failures in the closing line: the verdict and the counts agree
            names = {n for n, _ in bad}
            failed += [n for n in skipped if n in names]
            skipped = [n for n in skipped if n not in names]
    line = f"{len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped"
    if skipped:
        line += " (skipped: " + ", ".join(skipped) + ")"
    sys.stdout.flush()
    sys.stderr.flush()
    print(line)
    return rc


if __name__ == "__main__":
    sys.exit(main())
