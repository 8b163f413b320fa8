#!/usr/bin/env python3
"""Nightly benchmark job for qdrop-gpu (issue 8; dashboard conventions: ECOSYSTEM.md §5.3).

Subcommands
  run      run a matrix (model x bits x mode x device) of qdrop-gpu jobs, then report (and compare
           with --previous). `--no-run` reports from the runs/*/ directories already in --out
           (used by the tests with synthetic results.json files, and to re-render a report).
  compare  compare two combined benchmark JSON files (today's and the previous night's).
  run-one  run one element of the matrix (--id or --index) into --out/runs/<slug>/: what each Slurm
           array task runs; `run --no-run` then summarises.
  slurm    submit the matrix as one Slurm job array + an afterany summary job (nightly_sched.py).
  k8s      write a Kubernetes Indexed Job manifest for the matrix (nightly_sched.py).

Outputs in --out DIR (docs/nightly.md has the formats):
  benchmark.json          every metric, github-action-benchmark custom form [{"name","unit","value","extra"}]
  benchmark_bigger.json   accuracy metrics only  (tool: customBiggerIsBetter)
  benchmark_smaller.json  time / memory metrics  (tool: customSmallerIsBetter)
  summary.md              table, commands, machine, git sha, plots, regressions
  accuracy_<model>.png    top-1 per bit setting, one bar per mode (gnuplot)
  unit_time_<model>.png   seconds per reconstruction unit, one line per run (gnuplot)
  regressions.md          only with --previous
  runs/<slug>/            each run's --out (results.json, ...), meta.json (command, exit code,
                          wall time, peak RSS), stdout.log, stderr.log

Exit codes: 0 ok; 1 regressions against --previous; 2 usage / bad matrix / unreadable input;
3 one or more runs failed (no regression found otherwise).
Only the standard library is used, so the job runs on a bare CI image or in the Docker image.
"""
import argparse
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_RUN_FAILED = 0, 1, 2, 3

# Regression thresholds. 0.5 pt: the QDrop author's reproduction noise band (ECOSYSTEM.md §5.3,
# QDrop #4). Time +10%: issue 8. The absolute floors keep a 0.2 s -> 0.3 s jitter of a tiny CI run
# on a shared 2-core machine from being reported as a +50% regression.
DEFAULT_THRESHOLDS = {
    "accuracy_drop_pt": 0.5,
    "time_increase_pct": 10.0,
    "time_min_abs_s": 0.5,
    "memory_increase_pct": 10.0,
    "memory_min_abs_mb": 16.0,
}

# metric name suffix -> (unit, direction, where in results.json / meta.json)
BIGGER, SMALLER = "bigger", "smaller"


class UsageError(Exception):
    pass


def load_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise UsageError(f"{what} {path}: {e.strerror}")
    except json.JSONDecodeError as e:
        raise UsageError(f"{what} {path}: invalid JSON at line {e.lineno} col {e.colno}: {e.msg}")


def write_text(path, text):
    # write-then-rename so a crashed job never leaves a half-written file the next night reads
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2) + "\n")


# ------------------------------------------------------------------------------------------------
# matrix


def bits_label(w, a):
    return f"w{w}a{a}"


def parse_bits(v, where):
    """'w4a4' or [4, 4] or {"w": 4, "a": 4} -> (4, 4)."""
    if isinstance(v, str):
        s = v.lower()
        if s.startswith("w") and "a" in s:
            w, a = s[1:].split("a", 1)
            if w.isdigit() and a.isdigit():
                return int(w), int(a)
    elif isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return v[0], v[1]
    elif isinstance(v, dict) and set(v) == {"w", "a"}:
        return int(v["w"]), int(v["a"])
    raise UsageError(f"{where}: bit setting {v!r} is not 'wXaY', [w, a] or {{\"w\": w, \"a\": a}}")


def set_value_str(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def load_matrix(path):
    """Expand a matrix file into a list of run entries.

    {"name", "default_device", "thresholds": {...}, "timeout_s",
     "set": {key: value},                     applied to every run
     "groups": [{"model", "config", "device", "bits": [...], "modes": [...], "set": {...},
                 "mode_set": {mode: {...}}, "timeout_s"}]}
    Every group expands to bits x modes runs. The run id (metric name prefix) is
    model/wXaY/mode, with "@device" appended to the model when the device is not default_device.
    """
    m = load_json(path, "matrix")
    if not isinstance(m, dict) or not isinstance(m.get("groups"), list) or not m["groups"]:
        raise UsageError(f"matrix {path}: needs a non-empty \"groups\" list")
    known_top = {"name", "description", "default_device", "thresholds", "timeout_s", "set", "groups", "notes"}
    for k in m:
        if k not in known_top:
            raise UsageError(f"matrix {path}: unknown key \"{k}\" (known: {', '.join(sorted(known_top))})")
    default_device = m.get("default_device", "cpu")
    th = dict(DEFAULT_THRESHOLDS)
    for k, v in (m.get("thresholds") or {}).items():
        if k not in DEFAULT_THRESHOLDS:
            raise UsageError(f"matrix {path}: unknown threshold \"{k}\" (known: {', '.join(DEFAULT_THRESHOLDS)})")
        th[k] = float(v)
    base_dir = os.path.dirname(os.path.abspath(path))
    runs, seen = [], {}
    known_group = {"model", "config", "device", "bits", "modes", "set", "mode_set", "timeout_s", "notes"}
    for gi, g in enumerate(m["groups"]):
        where = f"matrix {path}: groups[{gi}]"
        for k in g:
            if k not in known_group:
                raise UsageError(f"{where}: unknown key \"{k}\" (known: {', '.join(sorted(known_group))})")
        for k in ("model", "config", "bits", "modes"):
            if k not in g:
                raise UsageError(f"{where}: missing \"{k}\"")
        model = g["model"]
        if not isinstance(model, str) or not model or "/" in model:
            raise UsageError(f"{where}: model must be a non-empty name without '/'")
        cfg = g["config"]
        # configs are named relative to the repository root (so matrix files can live anywhere)
        cfg_path = cfg if os.path.isabs(cfg) else os.path.join(ROOT, cfg)
        if not os.path.exists(cfg_path) and os.path.exists(os.path.join(base_dir, cfg)):
            cfg_path = os.path.join(base_dir, cfg)
        device = g.get("device", default_device)
        if device not in ("cpu", "cuda", "auto"):
            raise UsageError(f"{where}: device \"{device}\" is not cpu, cuda or auto")
        modes = g["modes"]
        if not isinstance(modes, list) or not modes or not all(isinstance(x, str) for x in modes):
            raise UsageError(f"{where}: modes must be a non-empty list of names")
        if not isinstance(g["bits"], list) or not g["bits"]:
            raise UsageError(f"{where}: bits must be a non-empty list")
        for w, a in (parse_bits(b, where) for b in g["bits"]):
            for mode in modes:
                sets = {}
                sets.update(m.get("set") or {})
                sets.update(g.get("set") or {})
                sets["quant.w_qconfig.bit"] = w
                sets["quant.a_qconfig.bit"] = a
                sets["quant.mode"] = mode
                sets.update((g.get("mode_set") or {}).get(mode, {}))
                mdl = model if device == default_device else f"{model}@{device}"
                rid = f"{mdl}/{bits_label(w, a)}/{mode}"
                if rid in seen:
                    raise UsageError(f"{where}: run id {rid} already produced by groups[{seen[rid]}]")
                seen[rid] = gi
                runs.append({
                    "id": rid, "model": model, "config": cfg_path, "config_arg": cfg, "device": device,
                    "w_bits": w, "a_bits": a, "mode": mode, "set": sets,
                    "timeout_s": float(g.get("timeout_s", m.get("timeout_s", 3600))),
                    "slug": rid.replace("/", "_").replace("@", "-"),
                })
    return {"name": m.get("name", os.path.basename(path)), "path": path, "runs": runs,
            "thresholds": th, "default_device": default_device, "notes": m.get("notes")}


def build_command(binary, run, out_dir):
    cmd = [binary, "--config", run["config"], "--device", run["device"], "--out", out_dir]
    for k, v in run["set"].items():
        cmd += ["--set", f"{k}={set_value_str(v)}"]
    cmd += ["--progress", "never", "--quiet"]
    return cmd


def display_command(run):
    """The command as a user would type it from the repository root (for summary.md)."""
    cmd = ["qdrop-gpu", "--config", run["config_arg"], "--device", run["device"], "--out", f"runs/{run['slug']}"]
    for k, v in run["set"].items():
        cmd += ["--set", f"{k}={set_value_str(v)}"]
    return shlex.join(cmd)


# ------------------------------------------------------------------------------------------------
# running


def run_one(binary, run, run_dir, extra_meta=None):
    """Run one job in a fresh child and measure ITS peak RSS with wait4() (RUSAGE_CHILDREN would
    be the maximum over every child this process has waited for, i.e. over all earlier runs).
    extra_meta: recorded in meta.json as is (where a scheduler ran it)."""
    os.makedirs(run_dir, exist_ok=True)
    res_path = os.path.join(run_dir, "results.json")
    if os.path.exists(res_path):
        os.remove(res_path)  # never report a stale result as tonight's
    cmd = build_command(binary, run, run_dir)
    meta = {"id": run["id"], "command": cmd, "display_command": display_command(run),
            "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    meta.update(extra_meta or {})
    t0 = time.monotonic()
    timed_out = threading.Event()
    with open(os.path.join(run_dir, "stdout.log"), "wb") as so, open(os.path.join(run_dir, "stderr.log"), "wb") as se:
        try:
            p = subprocess.Popen(cmd, stdout=so, stderr=se, stdin=subprocess.DEVNULL, cwd=ROOT)
        except OSError as e:
            meta.update(exit_code=None, error=f"cannot start {binary}: {e.strerror}", wall_s=0.0, peak_rss_mb=None)
            write_json(os.path.join(run_dir, "meta.json"), meta)
            return meta

        def kill():
            timed_out.set()
            p.kill()

        timer = threading.Timer(run["timeout_s"], kill)
        timer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)  # tell Popen it is reaped
    meta["wall_s"] = round(time.monotonic() - t0, 3)
    meta["exit_code"] = p.returncode
    meta["peak_rss_mb"] = round(ru.ru_maxrss / 1024.0, 1)  # Linux: ru_maxrss in KiB
    if timed_out.is_set():
        meta["error"] = f"timed out after {run['timeout_s']:g} s"
    elif p.returncode != 0:
        meta["error"] = f"exit code {p.returncode}"
    elif not os.path.exists(res_path):
        meta["error"] = "exit code 0 but no results.json"
    write_json(os.path.join(run_dir, "meta.json"), meta)
    return meta


# ------------------------------------------------------------------------------------------------
# metrics


def num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def collect(run, run_dir):
    """Read runs/<slug>/results.json + meta.json into a record for the report."""
    rec = {"run": run, "results": None, "meta": {}, "error": None}
    mp = os.path.join(run_dir, "meta.json")
    if os.path.exists(mp):
        try:
            rec["meta"] = load_json(mp, "run meta")
        except UsageError as e:
            rec["error"] = str(e)
    rp = os.path.join(run_dir, "results.json")
    if rec["meta"].get("error"):
        rec["error"] = rec["meta"]["error"]
    elif not os.path.exists(rp):
        rec["error"] = rec["error"] or "no results.json"
    else:
        try:
            res = load_json(rp, "results")
            rec["error"] = results_shape_error(res)
            rec["results"] = None if rec["error"] else res
        except UsageError as e:
            rec["error"] = str(e)
    return rec


def results_shape_error(res):
    """The parts of results.json the report reads must have the documented types."""
    if not isinstance(res, dict):
        return "results.json is not a JSON object"
    for key, typ in (("accuracy", dict), ("timing", dict), ("units", list), ("device", dict)):
        if key in res and not isinstance(res[key], typ):
            return f"results.json: \"{key}\" is not a JSON {'object' if typ is dict else 'array'}"
    return None


def metrics_of(rec):
    """-> list of (suffix, unit, direction, value) for one run."""
    res, meta = rec["results"] or {}, rec["meta"]
    acc = res.get("accuracy") or {}
    tim = res.get("timing") or {}
    out = []

    def add(suffix, unit, direction, v):
        if num(v):
            out.append((suffix, unit, direction, round(float(v), 4)))

    add("top1", "%", BIGGER, acc.get("quant_top1"))
    add("top5", "%", BIGGER, acc.get("quant_top5"))
    add("fp32_top1", "%", BIGGER, acc.get("fp32_top1"))
    add("recon_s", "s", SMALLER, tim.get("reconstruction_s"))
    add("total_s", "s", SMALLER, tim.get("total_s") if num(tim.get("total_s")) else meta.get("wall_s"))
    add("peak_rss_mb", "MB", SMALLER, meta.get("peak_rss_mb"))
    if num(res.get("peak_device_mb")):
        add("peak_device_mb", "MB", SMALLER, res.get("peak_device_mb"))
    elif isinstance(res.get("device"), dict) and num(res["device"].get("peak_mb")):
        add("peak_device_mb", "MB", SMALLER, res["device"]["peak_mb"])
    return out


def extra_of(rec):
    res = rec["results"] or {}
    dev = res.get("device") if isinstance(res.get("device"), dict) else {}
    acc = res.get("accuracy") or {}
    parts = [f"device={dev.get('backend', rec['run']['device'])}"]
    if dev.get("name"):
        parts.append(f"name={dev['name']}")
    if res.get("iters_per_unit") is not None:
        parts.append(f"iters={res['iters_per_unit']}")
    if acc.get("images") is not None:
        parts.append(f"images={acc['images']}")
    if res.get("git_sha"):
        parts.append(f"sha={res['git_sha']}")
    return " ".join(parts)


def benchmark_entries(records):
    entries = []
    for rec in records:
        if rec["error"]:
            continue  # a failed run has no meaningful time or memory; --previous reports it missing
        extra = extra_of(rec)
        for suffix, unit, _, v in metrics_of(rec):
            entries.append({"name": f"{rec['run']['id']}/{suffix}", "unit": unit, "value": v, "extra": extra})
    return entries


def direction_of(entry):
    # accuracy is the only bigger-is-better unit we emit; a future "it/s" metric would be too
    return BIGGER if entry.get("unit") in ("%", "it/s") else SMALLER


# ------------------------------------------------------------------------------------------------
# regression detection


def load_benchmark(path):
    """A combined benchmark JSON (file) or an output dir holding benchmark.json (or the two
    per-direction files). Returns {name: entry} or None when nothing is there."""
    if os.path.isdir(path):
        comb = os.path.join(path, "benchmark.json")
        if os.path.exists(comb):
            path = comb
        else:
            parts = [os.path.join(path, f) for f in ("benchmark_bigger.json", "benchmark_smaller.json")]
            parts = [p for p in parts if os.path.exists(p)]
            if not parts:
                return None
            out = {}
            for p in parts:
                out.update(load_benchmark(p))
            return out
    if not os.path.exists(path):
        return None
    data = load_json(path, "benchmark")
    if not isinstance(data, list):
        raise UsageError(f"benchmark {path}: expected a JSON list of {{name, unit, value}}")
    out = {}
    for i, e in enumerate(data):
        if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not num(e.get("value")):
            raise UsageError(f"benchmark {path}: entry {i} lacks a string name and a finite value")
        out[e["name"]] = e
    return out


def compare(current, previous, th, current_ids=None):
    """current/previous: {name: entry}. Returns (regressions, notes); each a list of dicts
    {name, unit, previous, current, delta, reason}."""
    regs, notes = [], []
    if current_ids is None:
        current_ids = {n.rsplit("/", 1)[0] for n in current}
    for name, pe in sorted(previous.items()):
        ce = current.get(name)
        pv = float(pe["value"])
        if ce is None:
            rid = name.rsplit("/", 1)[0]
            if rid in current_ids:
                regs.append({"name": name, "unit": pe.get("unit", ""), "previous": pv, "current": None,
                             "delta": None, "reason": "missing tonight (run failed or metric no longer written)"})
            else:
                notes.append({"name": name, "unit": pe.get("unit", ""), "previous": pv, "current": None,
                              "delta": None, "reason": "not in tonight's matrix"})
            continue
        cv = float(ce["value"])
        d = cv - pv
        unit = ce.get("unit", "")
        if direction_of(ce) == BIGGER:
            if unit == "%" and -d > th["accuracy_drop_pt"] + 1e-9:
                regs.append({"name": name, "unit": unit, "previous": pv, "current": cv, "delta": d,
                             "reason": f"accuracy down {-d:.2f} pt (> {th['accuracy_drop_pt']:g} pt)"})
            continue
        if unit == "MB":
            pct, floor, what = th["memory_increase_pct"], th["memory_min_abs_mb"], "memory"
        else:
            pct, floor, what = th["time_increase_pct"], th["time_min_abs_s"], "time"
        rel = (d / pv * 100.0) if pv > 0 else (math.inf if d > 0 else 0.0)
        if rel > pct + 1e-9 and d > floor:
            regs.append({"name": name, "unit": unit, "previous": pv, "current": cv, "delta": d,
                         "reason": f"{what} up {rel:.1f}% (> {pct:g}%, +{d:.3g} {unit} > {floor:g} {unit})"})
    for name in sorted(set(current) - set(previous)):
        ce = current[name]
        notes.append({"name": name, "unit": ce.get("unit", ""), "previous": None, "current": float(ce["value"]),
                      "delta": None, "reason": "new metric"})
    return regs, notes


def fmt(v, nd=2):
    return "–" if v is None else f"{v:.{nd}f}"


def regressions_md(regs, notes, th, prev_path):
    lines = ["# Nightly regressions", "",
             f"Compared with `{prev_path}`. Thresholds: accuracy down > {th['accuracy_drop_pt']:g} pt; "
             f"time up > {th['time_increase_pct']:g}% and > {th['time_min_abs_s']:g} s; "
             f"memory up > {th['memory_increase_pct']:g}% and > {th['memory_min_abs_mb']:g} MB.", ""]
    if regs:
        lines += [f"**{len(regs)} regression(s)**", "", "| metric | previous | tonight | delta | why |",
                  "|---|---:|---:|---:|---|"]
        for r in regs:
            lines.append(f"| `{r['name']}` | {fmt(r['previous'], 3)} {r['unit']} | {fmt(r['current'], 3)} | "
                         f"{fmt(r['delta'], 3)} | {r['reason']} |")
    else:
        lines.append("No regressions.")
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- `{n['name']}`: {n['reason']}" for n in notes]
    return "\n".join(lines) + "\n"


def print_regressions(regs):
    for r in regs:
        print(f"REGRESSION {r['name']}: {fmt(r['previous'], 3)} -> {fmt(r['current'], 3)} {r['unit']}: {r['reason']}",
              file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# machine / summary / plots


def machine_info():
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "mem_gb": None,
            "os": platform.platform(), "host": platform.node()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        info["usable_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["usable_cores"] = info["cores"]
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["mem_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    return info


def git_sha():
    try:
        r = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                           timeout=10)
        return r.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def gp_quote(s):
    # a newline would end the gnuplot command inside the string: keep printable characters only
    s = "".join(c if c.isprintable() else "?" for c in s)
    return "'" + s.replace("'", "''") + "'"


def make_plots(records, out_dir):
    """PNG plots with gnuplot (pngcairo if built in, else png). Returns (files, message)."""
    gp = shutil.which("gnuplot")
    if not gp:
        return [], "gnuplot not found: no plots"
    try:
        terms = subprocess.run([gp, "-e", "set terminal"], capture_output=True, text=True, timeout=30)
        term = "pngcairo" if "pngcairo" in (terms.stdout + terms.stderr) else "png"
    except (OSError, subprocess.SubprocessError):
        term = "png"
    files, errors = [], []
    plot_dir = os.path.join(out_dir, "plots_data")
    os.makedirs(plot_dir, exist_ok=True)
    by_model = {}
    for rec in records:
        mdl = rec["run"]["id"].split("/", 1)[0]
        by_model.setdefault(mdl, []).append(rec)
    for mdl, recs in by_model.items():
        safe = mdl.replace("@", "-")
        # accuracy: rows = bit settings, columns = modes (gnuplot clustered histogram), '?' = missing
        bits = []
        modes = []
        val = {}
        fp32 = None
        for rec in recs:
            r = rec["run"]
            b = bits_label(r["w_bits"], r["a_bits"])
            if b not in bits:
                bits.append(b)
            if r["mode"] not in modes:
                modes.append(r["mode"])
            acc = (rec["results"] or {}).get("accuracy") or {}
            if num(acc.get("quant_top1")):
                val[(b, r["mode"])] = acc["quant_top1"]
            if fp32 is None and num(acc.get("fp32_top1")):
                fp32 = acc["fp32_top1"]
        if val:
            dat = os.path.join(plot_dir, f"accuracy_{safe}.dat")
            with open(dat, "w", encoding="utf-8") as f:
                f.write("bits " + " ".join(modes) + "\n")
                for b in bits:
                    f.write(b + " " + " ".join(f"{val[(b, m)]:.4f}" if (b, m) in val else "?" for m in modes) + "\n")
            png = os.path.join(out_dir, f"accuracy_{safe}.png")
            script = [f"set terminal {term} noenhanced size 900,520", f"set output {gp_quote(png)}",
                      f"set title {gp_quote(mdl + ': quantized top-1 per bit setting and mode')}",
                      "set ylabel 'top-1 (%)'", "set xlabel 'bit setting'", "set yrange [0:100]",
                      "set grid ytics", "set key outside right top", "set datafile missing '?'",
                      "set style data histograms", "set style histogram clustered gap 1",
                      "set style fill solid 0.8 border -1", "set boxwidth 0.9"]
            plot = f"plot for [i=2:{len(modes) + 1}] {gp_quote(dat)} using i:xtic(1) title columnheader(i)"
            if fp32 is not None:
                plot += f", {fp32:.4f} with lines dashtype 2 lw 2 lc rgb 'black' title 'FP32 {fp32:.2f}%'"
            script.append(plot)
            err = run_gnuplot(gp, script)
            if err:
                errors.append(f"{png}: {err}")
            elif os.path.exists(png):
                files.append(png)
        # time per unit: one line per run with reconstruction (units[].seconds)
        series = []
        for rec in recs:
            units = (rec["results"] or {}).get("units") or []
            pts = [(u.get("index", i), u.get("seconds")) for i, u in enumerate(units) if isinstance(u, dict)]
            pts = [(i, s) for i, s in pts if num(i) and num(s)]
            if pts and any(s > 0 for _, s in pts):
                series.append((rec["run"]["id"].split("/", 1)[1], pts))
        if series:
            png = os.path.join(out_dir, f"unit_time_{safe}.png")
            plots = []
            for k, (label, pts) in enumerate(series):
                dat = os.path.join(plot_dir, f"unit_time_{safe}_{k}.dat")
                with open(dat, "w", encoding="utf-8") as f:
                    f.writelines(f"{i} {s:.6f}\n" for i, s in pts)
                plots.append(f"{gp_quote(dat)} using 1:2 with linespoints title {gp_quote(label)}")
            script = [f"set terminal {term} noenhanced size 900,520", f"set output {gp_quote(png)}",
                      f"set title {gp_quote(mdl + ': reconstruction time per unit')}",
                      "set xlabel 'unit index'", "set ylabel 'seconds'", "set grid", "set key outside right top",
                      "set yrange [0:*]", "set xtics 1", "plot " + ", ".join(plots)]
            err = run_gnuplot(gp, script)
            if err:
                errors.append(f"{png}: {err}")
            elif os.path.exists(png):
                files.append(png)
    return files, "; ".join(errors)


def run_gnuplot(gp, lines):
    try:
        r = subprocess.run([gp], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    if r.returncode != 0:
        return (r.stderr.strip().splitlines() or ["gnuplot failed"])[-1]
    return ""


def display_path(p):
    """Repository-relative when inside the repository, absolute otherwise."""
    ap = os.path.abspath(p)
    return os.path.relpath(ap, ROOT) if ap.startswith(ROOT + os.sep) else ap


def summary_md(matrix, records, machine, sha, plots, plot_msg, regs_text, started, binary):
    lines = [f"# qdrop-gpu nightly: {matrix['name']}", "",
             f"- date (UTC): {started}",
             f"- git sha: `{sha}`" + (f" (binary reports `{records[0]['results'].get('git_sha')}`)"
                                      if records and records[0]["results"] and records[0]["results"].get("git_sha")
                                      and records[0]["results"].get("git_sha") != sha else ""),
             f"- machine: {machine['cpu']}, {machine['cores']} cores ({machine.get('usable_cores')} usable)"
             + (f", {machine['mem_gb']} GB RAM" if machine.get("mem_gb") else "") + f", {machine['os']}",
             f"- matrix: `{display_path(matrix['path'])}`"
             f" ({len(records)} runs)", f"- binary: `{display_path(binary)}`"]
    devs = sorted({f"{(r['results'] or {}).get('device', {}).get('backend', '?')}: "
                   f"{(r['results'] or {}).get('device', {}).get('name', '?')}"
                   for r in records if isinstance((r['results'] or {}).get('device'), dict)})
    if devs:
        lines.append("- devices: " + "; ".join(devs))
    sched = [r["meta"]["scheduler"] for r in records if isinstance(r["meta"].get("scheduler"), dict)]
    if sched:
        kinds = sorted({str(x.get("kind", "?")) for x in sched})
        jobs = sorted({str(x["array_job"]) for x in sched if x.get("array_job")})
        nodes = sorted({str(x["node"]) for x in sched if x.get("node")})
        lines.append(f"- scheduler: {', '.join(kinds)}" + (f" job {', '.join(jobs)}" if jobs else "")
                     + f", {len(sched)} of {len(records)} runs" + (f" on {', '.join(nodes)}" if nodes else ""))
    lines += ["", "| run | device | iters/unit | images | FP32 top-1 | top-1 | top-5 | recon s | total s | peak RSS MB | status |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for rec in records:
        res = rec["results"] or {}
        acc = res.get("accuracy") or {}
        tim = res.get("timing") or {}
        dev = res.get("device") if isinstance(res.get("device"), dict) else {}
        m = rec["meta"]
        tot = tim.get("total_s") if num(tim.get("total_s")) else m.get("wall_s")
        status = "ok" if not rec["error"] else f"FAILED: {rec['error']}"
        lines.append(f"| `{rec['run']['id']}` | {dev.get('backend', rec['run']['device'])} | "
                     f"{res.get('iters_per_unit', '–')} | {acc.get('images', '–')} | "
                     f"{fmt(acc.get('fp32_top1') if num(acc.get('fp32_top1')) else None)} | "
                     f"{fmt(acc.get('quant_top1') if num(acc.get('quant_top1')) else None)} | "
                     f"{fmt(acc.get('quant_top5') if num(acc.get('quant_top5')) else None)} | "
                     f"{fmt(tim.get('reconstruction_s') if num(tim.get('reconstruction_s')) else None, 1)} | "
                     f"{fmt(tot if num(tot) else None, 1)} | "
                     f"{fmt(m.get('peak_rss_mb') if num(m.get('peak_rss_mb')) else None, 0)} | {status} |")
    lines += ["", "Peak RSS is the child's own maximum resident set (wait4 rusage), measured by bench/nightly.py.", ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots] + [""]
    elif plot_msg:
        lines += ["## Plots", "", f"No plots: {plot_msg}", ""]
    if plot_msg and plots:
        lines += [f"Plot warnings: {plot_msg}", ""]
    if regs_text:
        lines += ["## Comparison with the previous night", ""] + regs_text.split("\n", 2)[2].splitlines() + [""]
    lines += ["## Commands", "", "Run from the repository root (the job adds `--progress never --quiet`):", "", "```"]
    lines += [(rec["meta"].get("display_command") or display_command(rec["run"])) for rec in records]
    lines += ["```", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# subcommands


def thresholds_from_args(base, a):
    th = dict(base)
    for k in DEFAULT_THRESHOLDS:
        v = getattr(a, k, None)
        if v is not None:
            th[k] = v
    return th


def do_compare_and_report(current, prev_arg, previous, th, out_dir, current_ids):
    """previous: load_benchmark(prev_arg), read before tonight's files are written (--previous may
    name the --out directory itself). -> (exit code contribution, regressions.md text or None)."""
    if not prev_arg:
        return EXIT_OK, None
    if previous is None:
        print(f"nightly: no previous results at {prev_arg}: nothing to compare", file=sys.stderr)
        return EXIT_OK, None
    regs, notes = compare(current, previous, th, current_ids)
    text = regressions_md(regs, notes, th, prev_arg)
    if out_dir:
        write_text(os.path.join(out_dir, "regressions.md"), text)
    print_regressions(regs)
    print(f"nightly: {len(regs)} regression(s) against {prev_arg}", file=sys.stderr)
    return (EXIT_REGRESSION if regs else EXIT_OK), text


def cmd_run(a):
    matrix = load_matrix(a.matrix)
    th = thresholds_from_args(matrix["thresholds"], a)
    runs = select_runs(matrix, a.only, a.matrix)
    out = os.path.abspath(a.out)
    os.makedirs(os.path.join(out, "runs"), exist_ok=True)
    binary = os.path.abspath(a.bin) if os.sep in a.bin else (shutil.which(a.bin) or a.bin)
    # read (and validate) the previous night's results first: a malformed file fails before hours
    # of runs, and --previous may be this same --out directory, which the report overwrites
    previous = load_benchmark(a.previous) if a.previous else None
    if a.dry_run:
        for cfg in sorted({r["config"] for r in runs}):
            if not os.path.exists(cfg):
                print(f"nightly: warning: config {cfg} does not exist yet", file=sys.stderr)
        for r in runs:
            print(shlex.join(build_command(binary, r, os.path.join(out, "runs", r["slug"]))))
        return EXIT_OK
    if not a.no_run and not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise UsageError(f"binary {binary} is not an executable file (build it, or pass --bin)")
    if a.wait_for_runs is not None:
        if not a.no_run:
            raise UsageError("--wait-for-runs goes with --no-run (it waits for runs another job makes)")
        wait_for_runs(out, runs, a.wait_for_runs)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    records = []
    for i, r in enumerate(runs):
        rd = os.path.join(out, "runs", r["slug"])
        if not a.no_run:
            print(f"nightly: [{i + 1}/{len(runs)}] {r['id']} ...", file=sys.stderr, flush=True)
            meta = run_one(binary, r, rd)
            msg = meta.get("error") or "ok"
            print(f"nightly: [{i + 1}/{len(runs)}] {r['id']}: {msg}, {meta.get('wall_s', 0):.1f} s, "
                  f"peak RSS {meta.get('peak_rss_mb')} MB", file=sys.stderr, flush=True)
            if meta.get("error"):
                tail = ""
                try:
                    with open(os.path.join(rd, "stderr.log"), encoding="utf-8", errors="replace") as f:
                        tail = "".join(f.readlines()[-10:])
                except OSError:
                    pass
                if tail:
                    print(tail.rstrip(), file=sys.stderr)
        records.append(collect(r, rd))
    entries = benchmark_entries(records)
    write_json(os.path.join(out, "benchmark.json"), entries)
    write_json(os.path.join(out, "benchmark_bigger.json"), [e for e in entries if direction_of(e) == BIGGER])
    write_json(os.path.join(out, "benchmark_smaller.json"), [e for e in entries if direction_of(e) == SMALLER])
    plots, plot_msg = ([], "disabled (--no-plots)") if a.no_plots else make_plots(records, out)
    if plot_msg:
        print(f"nightly: plots: {plot_msg}", file=sys.stderr)
    current = {e["name"]: e for e in entries}
    rc, regs_text = do_compare_and_report(current, a.previous, previous, th, out, {r["id"] for r in runs})
    machine = machine_info()
    sha = git_sha()
    write_text(os.path.join(out, "summary.md"),
               summary_md(matrix, records, machine, sha, plots, plot_msg, regs_text, started, binary))
    write_json(os.path.join(out, "machine.json"), dict(machine, git_sha=sha, date_utc=started))
    failed = [rec["run"]["id"] for rec in records if rec["error"]]
    print(f"nightly: {len(records) - len(failed)}/{len(records)} runs ok, {len(entries)} metrics -> {out}",
          file=sys.stderr)
    if rc != EXIT_OK:
        return rc
    if failed:
        print(f"nightly: failed runs: {', '.join(failed)}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return EXIT_OK


def scheduler_facts():
    """Where this process runs, for meta.json: the Slurm array element or the Kubernetes index."""
    env = os.environ
    if env.get("SLURM_JOB_ID"):
        return {"kind": "slurm", "job": env.get("SLURM_JOB_ID"), "array_job": env.get("SLURM_ARRAY_JOB_ID"),
                "array_task": env.get("SLURM_ARRAY_TASK_ID"), "node": env.get("SLURMD_NODENAME") or platform.node(),
                "partition": env.get("SLURM_JOB_PARTITION"), "gpus": env.get("CUDA_VISIBLE_DEVICES")}
    if env.get("JOB_COMPLETION_INDEX"):
        return {"kind": "kubernetes", "index": env.get("JOB_COMPLETION_INDEX"), "node": platform.node(),
                "gpus": env.get("NVIDIA_VISIBLE_DEVICES") or env.get("CUDA_VISIBLE_DEVICES")}
    return {"kind": "local", "node": platform.node(), "gpus": env.get("CUDA_VISIBLE_DEVICES")}


def select_runs(matrix, only, where):
    runs = matrix["runs"]
    if only:
        runs = [r for r in runs if any(s in r["id"] for s in only)]
        if not runs:
            raise UsageError(f"--only {only}: matches no run id of {where}")
    return runs


def cmd_run_one(a):
    """One element of the matrix (a Slurm array task): --id, or --index into the selected runs."""
    matrix = load_matrix(a.matrix)
    runs = select_runs(matrix, a.only, a.matrix)
    if a.id is not None:
        pick = [r for r in runs if r["id"] == a.id]
        if not pick:
            raise UsageError(f"--id {a.id}: no such run id in {a.matrix}")
        run = pick[0]
    else:
        if a.index is None:
            raise UsageError("run-one needs --id ID or --index N")
        if not 0 <= a.index < len(runs):
            raise UsageError(f"--index {a.index}: the matrix has runs 0..{len(runs) - 1}")
        run = runs[a.index]
    binary = os.path.abspath(a.bin) if os.sep in a.bin else (shutil.which(a.bin) or a.bin)
    out = os.path.abspath(a.out)
    rd = os.path.join(out, "runs", run["slug"])
    print(f"nightly: {run['id']} on {platform.node()} ...", file=sys.stderr, flush=True)
    meta = run_one(binary, run, rd, {"scheduler": scheduler_facts()})
    print(f"nightly: {run['id']}: {meta.get('error') or 'ok'}, {meta.get('wall_s', 0):.1f} s, "
          f"peak RSS {meta.get('peak_rss_mb')} MB -> {rd}", file=sys.stderr, flush=True)
    return EXIT_RUN_FAILED if meta.get("error") else EXIT_OK


def wait_for_runs(out, runs, timeout_s):
    """--wait-for-runs: until every run's meta.json exists (the Kubernetes summary Job starts with
    the indexed Job and waits for its pods), at most timeout_s; the missing ones then report as
    failed. Returns the number still missing."""
    deadline = time.monotonic() + timeout_s
    while True:
        missing = [r["id"] for r in runs if not os.path.exists(os.path.join(out, "runs", r["slug"], "meta.json"))]
        if not missing or time.monotonic() >= deadline:
            if missing:
                print(f"nightly: gave up waiting after {timeout_s:g} s for: {', '.join(missing)}", file=sys.stderr)
            return len(missing)
        time.sleep(min(10.0, max(0.2, deadline - time.monotonic())))


def cmd_compare(a):
    cur = load_benchmark(a.current)
    if cur is None:
        raise UsageError(f"current results {a.current} not found")
    th = dict(DEFAULT_THRESHOLDS)
    if a.matrix:
        th = load_matrix(a.matrix)["thresholds"]
    th = thresholds_from_args(th, a)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
    rc, _ = do_compare_and_report(cur, a.previous, load_benchmark(a.previous), th, a.out, None)
    return rc


def add_threshold_args(p):
    p.add_argument("--accuracy-drop-pt", dest="accuracy_drop_pt", type=float,
                   help=f"flag accuracy drops larger than this (default {DEFAULT_THRESHOLDS['accuracy_drop_pt']} pt)")
    p.add_argument("--time-increase-pct", dest="time_increase_pct", type=float,
                   help=f"flag time increases larger than this (default {DEFAULT_THRESHOLDS['time_increase_pct']}%%)")
    p.add_argument("--time-min-abs-s", dest="time_min_abs_s", type=float,
                   help=f"...and larger than this many seconds (default {DEFAULT_THRESHOLDS['time_min_abs_s']})")
    p.add_argument("--memory-increase-pct", dest="memory_increase_pct", type=float,
                   help=f"flag memory increases larger than this (default {DEFAULT_THRESHOLDS['memory_increase_pct']}%%)")
    p.add_argument("--memory-min-abs-mb", dest="memory_min_abs_mb", type=float,
                   help=f"...and larger than this many MB (default {DEFAULT_THRESHOLDS['memory_min_abs_mb']})")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="nightly", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a matrix and write the report")
    r.add_argument("--matrix", default=os.path.join(HERE, "nightly_matrix_ci.json"))
    r.add_argument("--out", default=os.path.join(ROOT, "runs", "nightly"))
    r.add_argument("--bin", default=os.environ.get("QD_BIN") or os.path.join(ROOT, "build", "qdrop-gpu"))
    r.add_argument("--previous", help="previous night's benchmark.json, or its output dir")
    r.add_argument("--only", action="append", help="run only ids containing this text (repeatable)")
    r.add_argument("--no-run", action="store_true", help="report from the runs/ already in --out")
    r.add_argument("--no-plots", action="store_true")
    r.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    r.add_argument("--wait-for-runs", type=float, metavar="SECONDS",
                   help="with --no-run: first wait (at most SECONDS) until every run has its meta.json")
    add_threshold_args(r)
    o = sub.add_parser("run-one", help="run one element of the matrix (a Slurm array task)")
    o.add_argument("--matrix", default=os.path.join(HERE, "nightly_matrix_ci.json"))
    o.add_argument("--out", default=os.path.join(ROOT, "runs", "nightly"))
    o.add_argument("--bin", default=os.environ.get("QD_BIN") or os.path.join(ROOT, "build", "qdrop-gpu"))
    o.add_argument("--only", action="append", help="the same --only as the whole matrix's")
    o.add_argument("--id", help="the run id to run")
    o.add_argument("--index", type=int, help="the run's 0-based position in the (selected) matrix")
    # the scheduler back ends live in their own module; it imports this one by name
    sys.modules.setdefault("nightly", sys.modules[__name__])
    import nightly_sched
    nightly_sched.add_parsers(sub, add_threshold_args)
    c = sub.add_parser("compare", help="compare two combined benchmark JSON files")
    c.add_argument("--current", required=True, help="tonight's benchmark.json, or its output dir")
    c.add_argument("--previous", required=True, help="previous benchmark.json, or its output dir")
    c.add_argument("--matrix", help="take thresholds from this matrix file")
    c.add_argument("--out", help="write regressions.md here")
    add_threshold_args(c)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "run":
            return cmd_run(a)
        if a.cmd == "run-one":
            return cmd_run_one(a)
        if a.cmd == "compare":
            return cmd_compare(a)
        return a.func(a)
    except UsageError as e:
        print(f"nightly: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
