#!/usr/bin/env python3
"""tests/layering_test.py: the layers of CMakeLists.txt hold in the code.

The layer table is CMakeLists.txt's qd_add_layer(<target> DIRS <dirs> DEPS <targets>) calls.
A directory may use (include a header of, or call a symbol defined in):
  - the directories of every library below its own (DEPS, transitively);
  - within its own library, itself and the directories listed before it in DIRS.
Headers named *_internal.h are used only inside their own library. Public headers
(include/qdrop/*.h) belong to the directory that implements them (HEADER_DIR below).

Checks:
  1. every #include "..." in src/, cuda/ and include/qdrop/ against the table;
  2. with QD_BUILD_DIR set and the libraries built: every undefined symbol of every object in
     every layer library, against the directory that defines it (nm);
  3. first, the checker itself on a small synthetic tree with one violation of each kind, so a
     checker that finds nothing fails instead of passing.
Exit 0 when clean, 1 with one line per violation.
"""
import os
import re
import subprocess
import sys
import tempfile

# include/qdrop/<h> -> the source directory whose layer the header belongs to. A new public
# header must be added here (the test says so).
HEADER_DIR = {
    "status.h": "src/core", "log.h": "src/core", "fsutil.h": "src/core", "interrupt.h": "src/core",
    "utf8.h": "src/core", "rng_key.h": "src/core", "version.h": "src/core",
    "config.h": "src/config",
    "graph.h": "src/graph", "op_table.h": "src/graph", "exec.h": "src/graph", "backend.h": "src/graph",
    "export.h": "src/export",
    "data.h": "src/data",
    "report.h": "src/report",
    "qdrop.h": "src/recon",       # qd_run_options (used by src/bert); qd_run, qd_eval, qd_inspect are src/app
    "bert.h": "src/bert", "bert_job.h": "src/bert",
}

# Known exceptions, each with the reason it is tolerated; (file, header or symbol owner dir).
EXCEPTIONS = {
}

SRC_EXT = (".c", ".h", ".cu", ".cuh")


def strip_cmake_comments(text):
    return "\n".join(line.split("#", 1)[0] if not line.lstrip().startswith("#") else "" for line in text.splitlines())


def parse_layers(cmake_text):
    """{target: {"dirs": [...], "deps": [...]}} from the qd_add_layer calls."""
    layers = {}
    for m in re.finditer(r"\bqd_add_layer\(([^)]*)\)", strip_cmake_comments(cmake_text)):
        words = re.findall(r"[A-Za-z0-9_./:\-]+", m.group(1).replace("$<TARGET_NAME_IF_EXISTS:", " "))
        name, mode, dirs, deps = words[0], None, [], []
        for w in words[1:]:
            if w in ("DIRS", "DEPS", "EXECUTABLE"):
                mode = w
            elif mode == "DIRS":
                dirs.append(w.rstrip("/"))
            elif mode == "DEPS":
                deps.append(w)
        layers[name] = {"dirs": dirs, "deps": deps}
    return layers


class Table:
    def __init__(self, layers):
        self.layers = layers
        self.dir_lib, self.dir_idx = {}, {}
        for lib, L in layers.items():
            for i, d in enumerate(L["dirs"]):
                self.dir_lib[d] = lib
                self.dir_idx[d] = i
        self.below = {lib: self._closure(lib) for lib in layers}

    def _closure(self, lib):
        seen, todo = set(), list(self.layers[lib]["deps"])
        while todo:
            d = todo.pop()
            if d in self.layers and d not in seen:
                seen.add(d)
                todo.extend(self.layers[d]["deps"])
        return seen

    def may_use(self, user_dir, used_dir):
        a, b = self.dir_lib.get(user_dir), self.dir_lib.get(used_dir)
        if a is None or b is None:
            return False
        if a == b:
            return self.dir_idx[used_dir] <= self.dir_idx[user_dir]
        return b in self.below[a]


def file_dir(rel):
    if rel.startswith("include/qdrop/"):
        return HEADER_DIR.get(os.path.basename(rel))
    return os.path.dirname(rel)


def check_includes(root, table):
    errors = []
    files = []
    for top in ["src", "cuda", "include/qdrop"]:
        for dp, _, fns in os.walk(os.path.join(root, top)):
            files += [os.path.relpath(os.path.join(dp, f), root) for f in fns if f.endswith(SRC_EXT)]
    for rel in sorted(files):
        me = file_dir(rel)
        if me is None:
            errors.append(f"{rel}: public header not in HEADER_DIR of tests/layering_test.py: add the directory that implements it")
            continue
        if me not in table.dir_lib:
            errors.append(f"{rel}: directory {me} is in no qd_add_layer(... DIRS ...) of CMakeLists.txt")
            continue
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            for ln, line in enumerate(f, 1):
                m = re.match(r'\s*#\s*include\s*"([^"]+)"', line)
                if not m:
                    continue
                inc = m.group(1)
                if os.path.exists(os.path.join(root, os.path.dirname(rel), inc)):
                    target = os.path.normpath(os.path.join(os.path.dirname(rel), inc))
                elif os.path.exists(os.path.join(root, "include", inc)):
                    target = os.path.join("include", inc)
                elif os.path.exists(os.path.join(root, "src", inc)):
                    target = os.path.join("src", inc)
                else:
                    continue  # generated (onnx.pb-c.h) or a system header in quotes
                tdir = file_dir(target)
                if tdir is None:
                    errors.append(f"{rel}:{ln}: includes {inc}, a public header not in HEADER_DIR of tests/layering_test.py")
                    continue
                if (rel, target) in EXCEPTIONS:
                    continue
                if not table.may_use(me, tdir):
                    errors.append(f"{rel}:{ln}: includes {inc} ({tdir}, library {table.dir_lib.get(tdir)}), "
                                  f"which is not below {me} (library {table.dir_lib.get(me)}) in CMakeLists.txt's layers")
                elif target.endswith("_internal.h") and table.dir_lib.get(tdir) != table.dir_lib.get(me):
                    errors.append(f"{rel}:{ln}: includes {inc}, internal to library {table.dir_lib.get(tdir)}")
    return errors


def nm_objects(archive):
    """{member: (defined set, undefined set)} of a static library."""
    out = subprocess.run(["nm", "-A", "-g", archive], capture_output=True, text=True, check=True).stdout
    objs = {}
    for line in out.splitlines():
        # libx.a:member.o:   U sym   |   libx.a:member.o:0000 T sym
        m = re.match(r"^[^:]+:([^:]+):\s*(?:[0-9a-fA-F]+\s+)?([A-Za-z])\s+(\S+)$", line)
        if not m:
            continue
        member, kind, sym = m.groups()
        d, u = objs.setdefault(member, (set(), set()))
        if kind == "U":
            u.add(sym)
        elif kind in "TDBRVWGS":
            d.add(sym)
    return objs


def check_symbols(root, build, table):
    """(errors, number of cross-directory references checked)."""
    errors, defined, users, ncross = [], {}, [], 0
    for lib, L in table.layers.items():
        archive = os.path.join(build, f"lib{lib}.a")
        if not os.path.exists(archive):
            continue  # executables, and qdrop_cuda in a build without CUDA
        by_base = {}
        for d in L["dirs"]:
            full = os.path.join(root, d)
            for f in os.listdir(full) if os.path.isdir(full) else []:
                if f.endswith((".c", ".cu")):
                    by_base.setdefault(f, []).append(d)
        for member, (defs, undefs) in nm_objects(archive).items():
            src = member[:-2] if member.endswith(".o") else member
            dirs = by_base.get(src, [])
            if len(dirs) != 1:
                continue  # stale object of a deleted source, or two sources with one name
            for s in defs:
                defined[s] = (dirs[0], src)
            users.append((dirs[0], src, undefs))
    for d, src, undefs in users:
        for s in sorted(undefs):
            if s not in defined:
                continue  # system library
            od, osrc = defined[s]
            ncross += od != d
            if od != d and not table.may_use(d, od) and (f"{d}/{src}", od) not in EXCEPTIONS:
                errors.append(f"{d}/{src}: calls {s} ({od}/{osrc}), which is not below {d} in CMakeLists.txt's layers")
    return errors, ncross


def selftest():
    """The checker finds a violation of each kind in a synthetic tree."""
    with tempfile.TemporaryDirectory() as t:
        for d in ["src/low", "src/mid", "src/high", "include/qdrop"]:
            os.makedirs(os.path.join(t, d))
        files = {
            "src/low/a.c": '#include "high/h.h"\n#include "mid/mid_internal.h"\n',
            "src/mid/b.c": '#include "low/l.h"\n#include "mid_internal.h"\n',
            "src/mid/mid_internal.h": "",
            "src/high/c.c": '#include "mid/mid_internal.h"\n#include "low/l.h"\n',
            "src/high/h.h": "", "src/low/l.h": "",
        }
        for p, text in files.items():
            with open(os.path.join(t, p), "w") as f:
                f.write(text)
        table = Table(parse_layers("qd_add_layer(lo DIRS src/low DEPS m)\nqd_add_layer(mi DIRS src/mid DEPS lo)\n"
                                   "# qd_add_layer(commented DIRS src/high)\nqd_add_layer(hi DIRS src/high DEPS mi)\n"))
        errs = check_includes(t, table)
        want = ["src/low/a.c:1: includes high/h.h", "src/low/a.c:2: includes mid/mid_internal.h",
                "src/high/c.c:1: includes mid/mid_internal.h, internal"]
        missing = [w for w in want if not any(e.startswith(w) for e in errs)]
        if missing or len(errs) != len(want):
            print("FAIL: checker self-test: expected", want, "got", errs)
            return False
    return True


def main():
    root = os.environ.get("QD_SRC_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not selftest():
        return 1
    with open(os.path.join(root, "CMakeLists.txt")) as f:
        table = Table(parse_layers(f.read()))
    if len(table.layers) < 5:
        print(f"FAIL: found only {len(table.layers)} qd_add_layer calls in CMakeLists.txt")
        return 1
    errors = check_includes(root, table)
    build = os.environ.get("QD_BUILD_DIR")
    nsym = "not checked (QD_BUILD_DIR unset)"
    if build:
        errs, ncross = check_symbols(root, build, table)
        errors += errs
        nsym = f"checked ({ncross} cross-directory references)"
        if ncross < 100:
            errors.append(f"only {ncross} cross-directory symbol references found in {build}: are the libraries built?")
    for e in errors:
        print("FAIL:", e)
    print(f"layering: {len(table.layers)} layers, {len(table.dir_lib)} directories; includes checked; symbols {nsym}; "
          f"{len(errors)} violation(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
