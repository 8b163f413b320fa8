#!/usr/bin/env python3
"""tests/json_utf8_test.py: JSON outputs stay valid UTF-8 when paths are not.

A Linux path is bytes; cJSON copies a string's bytes into its output unchanged. A tiny run (the
bad-input catalogue's 4 KB CNN, 1 iteration) into an output directory whose name holds the bytes
0xff and 0xc3 0x28 (invalid UTF-8), and a model path through a symlink of the same kind, must
still write resolved_config.json, results.json and run.log as strict UTF-8 JSON, with each bad
byte replaced by U+FFFD and valid UTF-8 (here "é") kept as it is.

Env: QD_BIN. Exit 0 pass, 1 fail, 77 no binary.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get("QD_SRC_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    spec = importlib.util.spec_from_file_location("bad_inputs_test", os.path.join(SRC, "tests", "bad_inputs_test.py"))
    bi = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bi)
    binary = bi.find_bin()
    if not binary:
        print("json_utf8_test: qdrop-gpu not found: skipping")
        return 77
    work = tempfile.mkdtemp(prefix="qd_json_utf8_")
    try:
        wb = os.fsencode(work)
        model = wb + b"/m\xe9\xff.onnx"  # latin-1 e-acute + 0xff: not UTF-8
        os.symlink(os.fsencode(os.path.join(bi.CAT, "tiny_cnn32.onnx")), model)
        out = wb + b"/out_\xff_\xc3\x28_\xc3\xa9"
        cfg = bi.tiny_config(model="MODEL")
        cfg_path = os.path.join(work, "c.json")
        json.dump(cfg, open(cfg_path, "w"))
        argv = [os.fsencode(binary), b"--config", os.fsencode(cfg_path), b"--set", b"model.path=" + model,
                b"--out", out, b"--quiet", b"--progress", b"never"]
        r = subprocess.run(argv, capture_output=True, timeout=300, cwd=SRC)
        errors = []
        if r.returncode != 0:
            errors.append("run exited %d: %s" % (r.returncode, r.stderr.decode("utf-8", "replace").strip()))
        else:
            for name in ("resolved_config.json", "results.json", "run.log"):
                raw = open(out + b"/" + name.encode(), "rb").read()
                try:
                    text = raw.decode("utf-8", "strict")
                except UnicodeDecodeError as e:
                    errors.append("%s: not valid UTF-8 (%s)" % (name, e))
                    continue
                docs = [json.loads(l) for l in text.splitlines() if l.strip()] if name == "run.log" else [json.loads(text)]
                if name == "resolved_config.json":
                    got = docs[0]["output"]["dir"]
                    if not got.endswith("out_\ufffd_\ufffd(_\u00e9"):
                        errors.append("resolved_config.json: output.dir %r: expected each bad byte as U+FFFD, é kept" % got)
                    if not docs[0]["model"]["path"].endswith("m\ufffd\ufffd.onnx"):
                        errors.append("resolved_config.json: model.path %r" % docs[0]["model"]["path"])
                if name == "run.log" and not any("\ufffd" in json.dumps(d, ensure_ascii=False) for d in docs):
                    errors.append("run.log: no line mentions the (repaired) model path")
        for e in errors:
            print("FAIL: " + e)
        if not errors:
            print("json_utf8: resolved_config.json, results.json and run.log are valid UTF-8 JSON")
        return 1 if errors else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
