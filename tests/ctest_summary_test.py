#!/usr/bin/env python3
"""scripts/ctest_summary.py on synthetic ctest JUnit reports: the closing line's format and
counts, and the CI rule (only a `cuda`-labelled test that says "no usable CUDA device" may skip).
Exit 0 pass, 1 fail."""
import json
import os
import subprocess
import sys
import tempfile

SRC = os.environ.get("QD_SRC_DIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUMMARY = os.path.join(SRC, "scripts", "ctest_summary.py")


def case(tc):
    name, status, out = tc
    body = {"passed": "", "failed": '<failure message="Failed"/>', "skipped": '<skipped message="Skipped"/>'}[status]
    st = {"passed": "run", "failed": "fail", "skipped": "notrun"}[status]
    return f'<testcase name="{name}" classname="{name}" time="0.1" status="{st}">{body}<system-out>{out}</system-out></testcase>'


def run(tests, labels, ci):
    d = tempfile.mkdtemp()
    x, j = os.path.join(d, "j.xml"), os.path.join(d, "t.json")
    with open(x, "w") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?><testsuite name="q" tests="%d">%s</testsuite>'
                % (len(tests), "".join(case(t) for t in tests)))
    with open(j, "w") as f:
        json.dump({"tests": [{"name": n, "properties": [{"name": "LABELS", "value": labels.get(n, [])}]}
                             for n, _, _ in tests]}, f)
    r = subprocess.run([sys.executable, SUMMARY, "--junit", x, "--tests-json", j] + (["--ci"] if ci else []),
                       capture_output=True, text=True)
    return r.returncode, r.stdout.strip().splitlines()[-1], r.stdout + r.stderr


fails = []


def expect(what, got, want):
    ok = got == want
    print(("ok   " if ok else "FAIL ") + f"{what}: {got!r}" + ("" if ok else f" (expected {want!r})"))
    if not ok:
        fails.append(what)


gpu_skip = ("test_cuda_ops", "skipped", "SKIP: no usable CUDA device (no NVIDIA driver found)")
pil_skip = ("test_export_ort", "skipped", "export_ort_check: skipped: No module named 'PIL'")
passed = ("test_qmath", "passed", "all ok")
failed = ("test_cli", "failed", "FAIL x")
labels = {"test_cuda_ops": ["cuda"], "test_export_ort": ["unit"], "test_qmath": ["unit"], "test_cli": ["e2e"]}

rc, line, _ = run([passed, gpu_skip], labels, ci=True)
expect("CI, GPU test skipped without a GPU: exit", rc, 0)
expect("CI, GPU test skipped: closing line", line, "1 passed, 0 failed, 1 skipped (skipped: test_cuda_ops)")
rc, line, out = run([passed, gpu_skip, pil_skip], labels, ci=True)
expect("CI, a test skipped for want of Pillow: exit", rc, 1)
expect("CI, Pillow skip counted as a failure", line, "1 passed, 1 failed, 1 skipped (skipped: test_cuda_ops)")
expect("CI, the error names what is missing", "No module named 'PIL'" in out and "test_export_ort" in out, True)
rc, line, _ = run([passed, gpu_skip, pil_skip], labels, ci=False)
expect("not CI: the same run only notes it: exit", rc, 0)
expect("not CI: closing line", line, "1 passed, 0 failed, 2 skipped (skipped: test_cuda_ops, test_export_ort)")
# a cuda-labelled test skipping for another reason is not a GPU skip
other = ("test_cuda_e2e_default", "skipped", "cli_e2e: skipped: python3 not found")
rc, _, _ = run([other], {"test_cuda_e2e_default": ["cuda"]}, ci=True)
expect("CI, cuda test skipped for a non-GPU reason: exit", rc, 1)
rc, line, _ = run([passed, failed], labels, ci=True)
expect("failed test: closing line", line, "1 passed, 1 failed, 0 skipped")
sys.exit(1 if fails else 0)
