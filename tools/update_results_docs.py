#!/usr/bin/env python3
"""Regenerates docs/results.md and the README's results table from runs/table_* (the output of
tools/results_table.sh). Usage: python3 tools/update_results_docs.py runs/table_200_dnnl [--long runs/long20k] [--cases ROOT]
--long ROOT puts the 20,000-iteration table (top-1 / top-5) first, in docs/results.md and the README.
The prose lives in tools/results_notes_{head,long,short}.md.
--cases ROOT appends the separate Case 1/2/3 / BRECQ table (tools/cases_table.sh, issue 4) to
docs/results.md only (the README table is unchanged)."""
import os
import subprocess
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = sys.argv[1:]
def take(flag):
    if flag not in args:
        return None
    i = args.index(flag)
    value = args[i + 1]
    del args[i:i + 2]
    return value
cases_root = take("--cases")
long_root = take("--long")
tables = subprocess.run([sys.executable, os.path.join(root, "tools", "results_table.py")] + args,
                        capture_output=True, text=True, check=True).stdout
CASES_HEAD = open(os.path.join(root, "tools", "cases_notes_head.md")).read() if os.path.exists(
    os.path.join(root, "tools", "cases_notes_head.md")) else ""
CASES_NOTES = open(os.path.join(root, "tools", "cases_notes_tail.md")).read() if os.path.exists(
    os.path.join(root, "tools", "cases_notes_tail.md")) else ""
head = open(os.path.join(root, "tools", "results_notes_head.md")).read()
long_notes = open(os.path.join(root, "tools", "results_notes_long.md")).read() if long_root else ""
short_notes = open(os.path.join(root, "tools", "results_notes_short.md")).read()
long_tables = ""
if long_root:
    long_tables = subprocess.run([sys.executable, os.path.join(root, "tools", "results_table.py"), "--top5", long_root],
                                 capture_output=True, text=True, check=True).stdout
cases = ""
if cases_root:
    cases = CASES_HEAD + subprocess.run([sys.executable, os.path.join(root, "tools", "cases_table.py"), cases_root],
                                        capture_output=True, text=True, check=True).stdout + CASES_NOTES
open(os.path.join(root, "docs", "results.md"), "w").write(head + long_tables + long_notes + tables + short_notes + cases)
readme = open(os.path.join(root, "README.md")).read()
a = readme.index("<!-- results-table -->") + len("<!-- results-table -->")
b = readme.index("<!-- /results-table -->")
def table_only(t, title):
    return title + "\n\n" + t.split("\nWall time")[0].split("\n", 2)[2].strip()
block = table_only(tables, "Default, 200 iterations per unit (`configs/default.json`), top-1 %:")
if long_root:
    block = table_only(long_tables, "The paper's budget, 20,000 iterations per unit, top-1 / top-5 %:") + "\n\n" + block
readme = readme[:a] + "\n" + block + "\n" + readme[b:]
open(os.path.join(root, "README.md"), "w").write(readme)
print(block)
