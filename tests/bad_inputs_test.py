#!/usr/bin/env python3
"""tests/bad_inputs_test.py: the bad-input catalogue (GitHub issue 9, docs/reliability.md).

Every case runs the qdrop-gpu CLI on one bad input and checks:
  1. the documented exit code (README "Exit codes");
  2. exactly one line on stderr (runs use --quiet), of the form "qdrop-gpu: error: ...", matching
     the case's regex (it names the file/key/value at fault);
  3. the output directory holds no partial files: no "*.tmp.*" file anywhere, and no
     model_qdq.onnx or results.json when the run failed.
Engine runs are tiny (tiny 32x32 CNN from tests/bad_inputs/catalogue/, 64 calibration images,
1 iteration, eval and export off) so the whole catalogue takes about a minute.

Usage: QD_BIN=build/qdrop-gpu python3 tests/bad_inputs_test.py [-k SUBSTRING] [-v]
Exit: 0 all pass, 1 a case failed, 77 no binary. Cases are listed with --list.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("QD_SRC_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAT = os.path.join(SRC, "tests", "bad_inputs", "catalogue")
CIFAR_CALIB = os.path.join(SRC, "assets", "cifar10", "train-calib")
CIFAR_TEST = os.path.join(SRC, "assets", "cifar10", "test")
RESNET20 = os.path.join(SRC, "assets", "models", "resnet20_cifar10.onnx")


def find_bin():
    b = os.environ.get("QD_BIN")
    if b and os.path.exists(b):
        return os.path.abspath(b)
    for d in ("build", "build-asan", "build-cli"):
        p = os.path.join(SRC, d, "qdrop-gpu")
        if os.path.exists(p):
            return p
    return None


def tiny_config(model=None, calib=CIFAR_CALIB, **over):
    """The base run: every case starts from this and breaks one thing."""
    c = {
        "model": {"path": model or os.path.join(CAT, "tiny_cnn32.onnx"), "type": "onnx"},
        "data": {"calib_path": calib, "val_path": CIFAR_TEST, "preprocess": "cifar"},
        "quant": {"w_qconfig": {"bit": 4}, "a_qconfig": {"bit": 4}, "calibrate": 64, "act_calib_samples": 32,
                  "mode": "qdrop", "recon": {"iters": 1, "batch_size": 8, "log_every": 1}},
        "process": {"seed": 1005, "threads": 2},
        "device": {"type": "cpu"},
        "eval": {"enabled": False},
        "output": {"export_onnx": False, "plots": False},
    }
    for k, v in over.items():
        sec, key = k.split("__", 1)
        c[sec][key] = v
    return c


def am_root():
    return hasattr(os, "geteuid") and os.geteuid() == 0


def gpu_present():
    return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvidiactl")


class Case:
    def __init__(self, name, expect, regex, argv=None, sets=(), config=None, prep=None, skip=None, limit_fsize=None,
                 check_partial=True, what=""):
        self.name, self.expect, self.regex = name, expect, regex
        self.argv = argv or []           # extra CLI arguments ({case} expands to the case dir)
        self.sets = list(sets)           # --set overrides
        self.config = config             # dict (written as JSON), str (written verbatim), or None (base)
        self.prep = prep                 # fn(case_dir) -> dict of replacements for {keys} in argv/config
        self.skip = skip                 # fn() -> reason string or None
        self.limit_fsize = limit_fsize   # RLIMIT_FSIZE in bytes (disk full)
        self.check_partial = check_partial
        self.what = what                 # one-line description for the docs table


# ---------- preparation helpers ----------

def mk_calib_with(case_dir, extra_files):
    """A calibration ImageFolder: two class folders with 40 real CIFAR JPEGs each, plus extra files."""
    root = os.path.join(case_dir, "calib")
    for cls in ("airplane", "cat"):
        d = os.path.join(root, cls)
        os.makedirs(d)
        srcd = os.path.join(CIFAR_CALIB, cls)
        for n in sorted(os.listdir(srcd))[:40]:
            shutil.copy(os.path.join(srcd, n), d)
    for rel, src in extra_files:
        shutil.copy(src, os.path.join(root, rel))
    return root


def prep_empty_calib(d):
    os.makedirs(os.path.join(d, "empty_calib"))
    return {"calib": os.path.join(d, "empty_calib")}


def prep_unreadable_calib(d):
    root = mk_calib_with(d, [])
    os.chmod(root, 0)
    return {"calib": root}


def prep_corrupt_jpeg(d):
    return {"calib": mk_calib_with(d, [("cat/zz_corrupt.jpg", os.path.join(CAT, "corrupt.jpg"))])}


def prep_out_under_file(d):
    f = os.path.join(d, "plainfile")
    open(f, "w").write("x")
    return {"out": os.path.join(f, "run")}


def prep_resume_mismatch(d):
    """A short real run (2 iterations, eval off) leaves a checkpoint; the case then resumes it with
    another weight bit width."""
    out = os.path.join(d, "out")
    cfg = os.path.join(d, "first.json")
    c = tiny_config()
    c["quant"]["recon"]["iters"] = 2
    json.dump(c, open(cfg, "w"))
    r = subprocess.run([BIN, "--config", cfg, "--out", out, "--quiet", "--progress", "never"], capture_output=True,
                       text=True, timeout=300)
    if r.returncode != 0 or not os.path.exists(os.path.join(out, "checkpoint.bin")):
        raise RuntimeError("preparatory run did not leave a checkpoint (rc %d): %s" % (r.returncode, r.stderr.strip()))
    for n in ("model_qdq.onnx", "results.json"):  # the failure check below is about the resumed run
        if os.path.exists(os.path.join(out, n)):
            os.remove(os.path.join(out, n))
    return {"out": out}


def skip_root():
    return "running as root: permissions do not restrict root" if am_root() else None


def skip_gpu():
    return "a GPU device node exists: --device cuda may legitimately succeed" if gpu_present() else None


def skip_no_proc():
    return None if os.path.isdir("/proc/self") else "no /proc"


# ---------- the catalogue ----------

def cases():
    C = []
    cat = lambda n: os.path.join(CAT, n)
    # --- models ---
    C.append(Case("onnx_truncated", 65, r"truncated\.onnx: not a valid ONNX model",
                  config=tiny_config(model=cat("truncated.onnx")), what="ONNX file cut at 2/3"))
    C.append(Case("onnx_random_bytes", 65, r"random_bytes\.onnx: not a valid ONNX model",
                  config=tiny_config(model=cat("random_bytes.onnx")), what="2 KiB of random bytes as .onnx"))
    C.append(Case("onnx_empty_file", 65, r"empty\.onnx: .*(not a valid ONNX|empty)",
                  config=tiny_config(model="{case}/empty.onnx"), prep=lambda d: open(os.path.join(d, "empty.onnx"), "w").close() or {},
                  what="0-byte model file"))
    C.append(Case("onnx_missing", 66, r"nonexistent\.onnx: cannot open",
                  config=tiny_config(model="{case}/nonexistent.onnx"), what="model path does not exist"))
    C.append(Case("onnx_is_directory", 66, r"onnx_is_directory: is a directory",
                  config=tiny_config(model="{case}"), what="model path is a directory"))
    C.append(Case("onnx_unsupported_op", 65, r"unsupported_op\.onnx: node 'odd_op': op Sin .*not supported",
                  config=tiny_config(model=cat("unsupported_op.onnx")), what="valid model with a Sin node"))
    C.append(Case("onnx_dynamic_hw", 65, r"dimension 2 is symbolic \('H'\)",
                  config=tiny_config(model=cat("dynamic_hw.onnx")), what="input [N,3,H,W]: symbolic spatial dims"))
    C.append(Case("onnx_nan_weight", 65, r"initializer 'W1' .*contains NaN at element 5",
                  config=tiny_config(model=cat("nan_weight.onnx")), what="NaN in a conv weight"))
    C.append(Case("onnx_inf_weight", 65, r"initializer 'W1' .*contains Inf at element 5",
                  config=tiny_config(model=cat("inf_weight.onnx")), what="+Inf in a conv weight"))
    C.append(Case("model_input_vs_data_size", 65, r"image is 32x32 \(WxH\) but the model input is 64x64",
                  config=tiny_config(model=cat("input64.onnx")), what="64x64-input model, 32x32 CIFAR images"))
    # --- data ---
    C.append(Case("calib_empty_folder", 65, r"empty_calib: no JPEG images found",
                  config=tiny_config(calib="{calib}"), prep=prep_empty_calib, what="calibration folder with no images"))
    C.append(Case("calib_missing_folder", 66, r"no_such_calib: image folder not found",
                  config=tiny_config(calib="{case}/no_such_calib"), what="calibration folder does not exist"))
    C.append(Case("calib_unreadable_folder", 66, r"calib.*(Permission denied|cannot|unreadable)",
                  config=tiny_config(calib="{calib}"), prep=prep_unreadable_calib, skip=skip_root,
                  what="calibration folder chmod 000 (skipped as root)"))
    C.append(Case("calib_corrupt_jpeg", 65, r"zz_corrupt\.jpg: corrupt",
                  config=tiny_config(calib="{calib}"), prep=prep_corrupt_jpeg,
                  sets=["quant.calibrate=81"], what="a truncated JPEG among the calibration images"))
    C.append(Case("calib_corrupt_jpeg_skip", 0, None,
                  config=tiny_config(calib="{calib}"), prep=prep_corrupt_jpeg,
                  sets=["quant.calibrate=80", "data.skip_corrupt=true"],
                  what="same with data.skip_corrupt=true: warns and succeeds"))
    C.append(Case("calib_npy_malformed", 65, r"malformed\.npy",
                  config=tiny_config(calib=cat("malformed.npy")), what=".npy whose header is not a dict"))
    C.append(Case("calib_npy_wrong_shape", 65, r"calib_16x16\.npy",
                  config=tiny_config(calib=cat("calib_16x16.npy")), what=".npy [4,3,16,16] for a 3x32x32 model"))
    # --- config ---
    C.append(Case("config_malformed_json", 78, r"malformed\.json:3:\d+: malformed JSON",
                  argv=["--config", cat("malformed.json")], config=False, what="JSON syntax error (line:col)"))
    C.append(Case("config_missing_file", 66, r"no_such\.json",
                  argv=["--config", "{case}/no_such.json"], config=False, what="--config file does not exist"))
    C.append(Case("config_not_object", 78, r"expected a JSON object", config="[1, 2, 3]\n",
                  what="top level is an array"))
    C.append(Case("config_unknown_key_file", 78, r"config\.json: quant\.recon\.iterz: unknown key",
                  config=dict(tiny_config(), quant=dict(tiny_config()["quant"], recon={"iterz": 2})),
                  what="unknown key in the file"))
    C.append(Case("config_unknown_key_set", 78, r"--set: quant\.recon\.iterz: unknown key", sets=["quant.recon.iterz=2"],
                  what="unknown key in --set"))
    C.append(Case("config_wrong_type_bool", 78, r"eval\.enabled: expected true or false, got the string \"yes\"", config=dict(tiny_config(), eval={"enabled": "yes"}),
                  what="string where a boolean is expected"))
    C.append(Case("config_wrong_type_int", 78, r"quant\.recon\.iters: expected an integer .*got the string \"many\"", sets=["quant.recon.iters=many"],
                  what="--set with a non-integer"))
    C.append(Case("config_set_no_equals", 78, r"expected key\.path=value", sets=["quant.recon.iters"],
                  what="--set without '='"))
    C.append(Case("config_w_bit_1", 78, r"quant\.w_qconfig\.bit: expected an integer in 2\.\.8, got 1$", sets=["quant.w_qconfig.bit=1"],
                  what="weight bits 1"))
    C.append(Case("config_a_bit_9", 78, r"quant\.a_qconfig\.bit: expected an integer in 2\.\.8, got 9$", sets=["quant.a_qconfig.bit=9"], what="activation bits 9"))
    C.append(Case("config_drop_prob_1_5", 78, r"quant\.recon\.drop_prob: expected a number in \[0, 1\], got 1\.5", sets=["quant.recon.drop_prob=1.5"],
                  what="drop_prob 1.5"))
    C.append(Case("config_warm_up_negative", 78, r"quant\.recon\.warm_up: expected a number in \[0, 1\], got -0\.1", sets=["quant.recon.warm_up=-0.1"],
                  what="warm_up -0.1"))
    C.append(Case("config_iters_zero", 78, r"quant\.recon\.iters: expected an integer in 1\.\.\d+, got 0$", sets=["quant.recon.iters=0"], what="iters 0"))
    C.append(Case("config_iters_negative", 78, r"quant\.recon\.iters: expected an integer in 1\.\.\d+, got -5$", sets=["quant.recon.iters=-5"], what="iters -5"))
    C.append(Case("config_batch_size_zero", 78, r"quant\.recon\.batch_size: expected an integer in 1\.\.\d+, got 0$", sets=["quant.recon.batch_size=0"],
                  what="batch_size 0"))
    C.append(Case("config_unknown_mode", 78, r"quant\.mode: expected one of \"qdrop\".*got the string \"frobnicate\"", sets=["quant.mode=frobnicate"],
                  what="unknown quant.mode"))
    # --- outputs ---
    C.append(Case("out_under_regular_file", 74, r"cannot create directory .*plainfile.*not a directory", argv=["--out", "{out}"], prep=prep_out_under_file,
                  what="--out below a regular file"))
    C.append(Case("out_in_proc", 74, r"/proc/qd", argv=["--out", "/proc/qd"], skip=skip_no_proc,
                  what="--out /proc/qd (not creatable)"))
    C.append(Case("disk_full_ulimit", 74, r"(File too large|No space|disk full|write)",
                  config=tiny_config(model=RESNET20, output__export_onnx=True), limit_fsize=64 * 1024,
                  what="RLIMIT_FSIZE 64 KiB (ulimit -f), SIGXFSZ at its default action"))
    # --- resume ---
    C.append(Case("resume_no_checkpoint", 66, r"no checkpoint", argv=["--resume"], what="--resume on an empty out dir"))
    C.append(Case("resume_config_mismatch", 78, r"checkpoint.*different config",
                  argv=["--resume", "--out", "{out}"], sets=["quant.w_qconfig.bit=2", "quant.recon.iters=2"],
                  prep=prep_resume_mismatch, what="--resume with another weight bit width"))
    # --- CLI / device ---
    C.append(Case("device_cuda_without_gpu", 69, r"--device cuda: no usable CUDA device", argv=["--device", "cuda"], skip=skip_gpu,
                  what="--device cuda on a machine without a GPU"))
    C.append(Case("cli_unknown_flag", 64, r"unknown option '--frobnicate'", argv=["--frobnicate"], what="unknown option"))
    C.append(Case("cli_bad_device", 64, r"--device: expected auto, cpu or cuda", argv=["--device", "tpu"],
                  what="--device tpu"))
    C.append(Case("cli_missing_value", 64, r"option --out needs a value", argv=["--out"], config=False,
                  what="option without its value"))
    C.append(Case("cli_stray_argument", 64, r"unexpected argument 'extra'", argv=["extra"], what="positional argument"))
    C.extend(area_cases())
    return C


def area_cases():
    """Cases kept beside the catalogue, one module per area: tests/bad_inputs/cases_<area>.py, each
    defining cases(m) that returns a list of Case built with this module's helpers (m: Case,
    tiny_config, CAT, RESNET20, CIFAR_CALIB, mk_calib_with, skip_root, ...)."""
    import importlib.util
    here = sys.modules[__name__]
    out = []
    d = os.path.join(SRC, "tests", "bad_inputs")
    for n in sorted(os.listdir(d)):
        if not (n.startswith("cases_") and n.endswith(".py")):
            continue
        spec = importlib.util.spec_from_file_location(n[:-3], os.path.join(d, n))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        out.extend(mod.cases(here))
    return out


# ---------- runner ----------

def expand(obj, subs):
    if isinstance(obj, str):
        for k, v in subs.items():
            obj = obj.replace("{%s}" % k, v)
        return obj
    if isinstance(obj, list):
        return [expand(x, subs) for x in obj]
    if isinstance(obj, dict):
        return {k: expand(v, subs) for k, v in obj.items() if v is not None}
    return obj


def partial_files(out):
    bad = []
    if not os.path.isdir(out):
        return bad
    for dp, _, fns in os.walk(out):
        for n in fns:
            if ".tmp." in n:
                bad.append(os.path.join(dp, n))
    return bad


def run_case(c, work, verbose):
    d = os.path.join(work, c.name)
    os.makedirs(d)
    subs = {"case": d, "out": os.path.join(d, "out")}
    if c.prep:
        subs.update(c.prep(d))
    argv = [BIN, "--quiet", "--progress", "never"]
    if c.config is not False:
        cfg = c.config if c.config is not None else tiny_config()
        cfg_path = os.path.join(d, "config.json")
        with open(cfg_path, "w") as f:
            if isinstance(cfg, str):
                f.write(cfg)
            else:
                json.dump(expand(cfg, subs), f, indent=1)
        argv += ["--config", cfg_path]
    if "--out" not in c.argv and c.config is not False:
        argv += ["--out", subs["out"]]
    for s in c.sets:
        argv += ["--set", expand(s, subs)]
    argv += expand(c.argv, subs)  # last: cli_missing_value ends with a dangling option

    def preexec():
        # Python ignores SIGXFSZ and children inherit that: restore the default so the test sees
        # what a shell user would (the binary must handle it itself).
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        if c.limit_fsize:
            resource.setrlimit(resource.RLIMIT_FSIZE, (c.limit_fsize, c.limit_fsize))

    t0 = time.time()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, preexec_fn=preexec, cwd=SRC)
    dt = time.time() - t0
    problems = []
    rc = r.returncode
    if rc < 0:
        problems.append("killed by signal %s" % signal.Signals(-rc).name)
    elif rc != c.expect:
        problems.append("exit %d, expected %d" % (rc, c.expect))
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    if c.expect != 0:
        errs = [l for l in lines if l.startswith("qdrop-gpu: error: ")]
        if len(errs) != 1 or len(lines) != 1:
            problems.append("expected exactly one 'qdrop-gpu: error:' line on stderr, got %d lines" % len(lines))
        if c.regex and not any(re.search(c.regex, l) for l in errs):
            problems.append("error line does not match /%s/" % c.regex)
    out = subs["out"]
    if c.name == "out_in_proc":
        out = "/proc/qd"
    if c.check_partial:
        tmp = sorted(set(partial_files(out) + partial_files(d)))
        if tmp:
            problems.append("partial files left: %s" % ", ".join(os.path.relpath(p, d) for p in tmp))
        if rc == 0 and c.expect == 0 and not os.path.exists(os.path.join(out, "results.json")):
            problems.append("successful run wrote no results.json")
        if rc != 0:
            for n in ("model_qdq.onnx", "results.json"):
                if os.path.exists(os.path.join(out, n)):
                    problems.append("failed run left %s" % n)
    msg = lines[-1] if lines else ""
    return problems, rc, msg, dt, argv


def main():
    global BIN
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", default="", help="run only cases whose name contains this")
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--list", action="store_true", help="print the catalogue as a Markdown table")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    allc = cases()
    if a.list:
        print("| case | input | exit | error must match |\n|---|---|---|---|")
        for c in allc:
            print("| `%s` | %s | %d | `%s` |" % (c.name, c.what, c.expect, (c.regex or "(success)").replace("|", "\\|")))
        return 0
    BIN = find_bin()
    if not BIN:
        print("bad_inputs_test: qdrop-gpu binary not found (set QD_BIN): skipping")
        return 77
    work = tempfile.mkdtemp(prefix="qd_bad_inputs_")
    failed, skipped, passed = [], [], 0
    t_all = time.time()
    try:
        for c in allc:
            if a.k and a.k not in c.name:
                continue
            why = c.skip() if c.skip else None
            if why:
                skipped.append(c.name)
                print("SKIP %-28s %s" % (c.name, why))
                continue
            try:
                problems, rc, msg, dt, argv = run_case(c, work, a.v)
            except Exception as e:  # a preparation step failed
                problems, rc, msg, dt, argv = ["preparation failed: %s" % e], None, "", 0.0, []
            if problems:
                failed.append(c.name)
                print("FAIL %-28s (%.1fs) %s\n     stderr: %s" % (c.name, dt, "; ".join(problems), msg))
                if a.v:
                    print("     argv: %s" % " ".join(argv))
            else:
                passed += 1
                print("ok   %-28s (%.1fs, exit %s) %s" % (c.name, dt, rc, msg[:150]))
    finally:
        for dp, dns, _ in os.walk(work):  # undo chmod 000 so the tree can be removed
            for n in dns:
                try:
                    os.chmod(os.path.join(dp, n), 0o755)
                except OSError:
                    pass
        if a.keep:
            print("work dir kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\nbad_inputs: %d passed, %d failed, %d skipped in %.0fs" % (passed, len(failed), len(skipped),
                                                                     time.time() - t_all))
    if failed:
        print("failed: %s" % " ".join(failed))
    return 1 if failed else 0


BIN = None
if __name__ == "__main__":
    sys.exit(main())
