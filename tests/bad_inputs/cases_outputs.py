"""tests/bad_inputs/cases_outputs.py: the output directory (docs/reliability.md "Output directory").

A second run into a locked directory, an output directory that holds the input model, symlinks
planted where the run writes (run.log, the lock file), a previous run's outputs beside a failing
run, leftovers of a killed run, and a full disk in the middle of the export.
"""
import fcntl
import os
import shutil

_held = []  # lock descriptors held for the life of the test process (a run in progress)


def _out(d):
    o = os.path.join(d, "out")
    os.makedirs(o, exist_ok=True)
    return o


def prep_locked(d):
    fd = os.open(os.path.join(_out(d), ".qdrop.lock"), os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _held.append(fd)
    return {}


def prep_model_in_out(m):
    def prep(d):
        shutil.copy(os.path.join(m.CAT, "tiny_cnn32.onnx"), os.path.join(_out(d), "model.onnx"))
        return {}
    return prep


def prep_out_links_to_model_dir(m):
    def prep(d):
        md = os.path.join(d, "models")
        os.makedirs(md)
        shutil.copy(os.path.join(m.CAT, "tiny_cnn32.onnx"), os.path.join(md, "model.onnx"))
        os.symlink(md, os.path.join(d, "out"))
        return {"model": os.path.join(md, "model.onnx")}
    return prep


def prep_run_log_symlink(d):
    victim = os.path.join(d, "victim.txt")
    with open(victim, "w") as f:
        f.write("must stay unchanged\n")
    os.symlink(victim, os.path.join(_out(d), "run.log"))
    return {}


def prep_lock_symlink(d):
    victim = os.path.join(d, "victim.txt")
    open(victim, "w").close()
    os.symlink(victim, os.path.join(_out(d), ".qdrop.lock"))
    return {}


def _old_outputs(o):
    for n in ("results.json", "model_qdq.onnx", "encodings.json", "predictions.csv"):
        with open(os.path.join(o, n), "w") as f:
            f.write("from an earlier run\n")


def prep_stale_outputs(d):
    _old_outputs(_out(d))
    return {}


def prep_killed_run_leftovers(d):
    o = _out(d)
    _old_outputs(o)
    st = os.path.join(o, ".qdrop-staging")
    os.makedirs(os.path.join(st, "plots"))
    for n in ("results.json", "plots/unit00_loss.png.tmp.99"):
        with open(os.path.join(st, n), "w") as f:
            f.write("staged by a killed run\n")
    for n in ("checkpoint.bin.tmp.4242", "results.json.tmp.77"):
        with open(os.path.join(o, n), "w") as f:
            f.write("partial\n")
    return {}


def cases(m):
    C = []
    C.append(m.Case("out_locked_by_another_run", 74,
                    r"output directory .*/out is in use by another qdrop-gpu run \(lock .*\.qdrop\.lock held\)",
                    prep=prep_locked, what="--out locked (flock on out/.qdrop.lock) by a run in progress"))
    C.append(m.Case("out_contains_model", 78, r"output\.dir \(--out\) .*/out contains the input model .*/out/model\.onnx",
                    config=m.tiny_config(model="{out}/model.onnx"), prep=prep_model_in_out(m),
                    what="the model file lies inside --out"))
    C.append(m.Case("out_symlink_to_model_dir", 78, r"output\.dir \(--out\) .*/out contains the input model .*/models/model\.onnx",
                    config=m.tiny_config(model="{model}"), prep=prep_out_links_to_model_dir(m),
                    what="--out is a symlink to the model's directory"))
    C.append(m.Case("out_run_log_symlink", 74, r"cannot open log .*/out/run\.log: it is a symbolic link",
                    prep=prep_run_log_symlink, what="out/run.log is a symlink to another file (not followed)"))
    C.append(m.Case("out_lock_file_symlink", 74, r"lock file .*/out/\.qdrop\.lock: it is a symbolic link",
                    prep=prep_lock_symlink, what="out/.qdrop.lock is a symlink (not followed)"))
    C.append(m.Case("out_stale_outputs_failed_run", 66, r"no_such_calib: image folder not found",
                    config=m.tiny_config(calib="{case}/no_such_calib"), prep=prep_stale_outputs,
                    what="an earlier run's results.json/model_qdq.onnx in --out, then a run that fails: none survive"))
    C.append(m.Case("out_killed_run_leftovers", 0, None, prep=prep_killed_run_leftovers,
                    what="staging directory and *.tmp.<pid> files of a killed run: removed, run succeeds"))
    C.append(m.Case("disk_full_during_export", 74, r"cannot write .*/encodings\.json.*File too large",
                    config=m.tiny_config(model=m.RESNET20, output__export_onnx=True),
                    sets=["quant.mode=nearest"], limit_fsize=400 * 1024,
                    what="RLIMIT_FSIZE 400 KiB: model_qdq.onnx (310 KB) fits, encodings.json (563 KB) does not; neither is left"))
    return C
