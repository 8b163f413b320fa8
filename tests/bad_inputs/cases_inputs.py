"""tests/bad_inputs/cases_inputs.py: untrusted configs, checkpoints and data (docs/reliability.md,
sections "Configs", "Checkpoints", "Data").

Every binary input is generated here, in the case's prep function: crafted checkpoints start
from a real one (one short run of the tiny CNN, shared by the checkpoint cases) with one field
changed and the FNV-1a checksum recomputed, as an attacker would; JPEGs come from Pillow, with the
frame header patched where a case needs an absurd size.
"""
import io
import json
import os
import shutil
import struct
import subprocess

SST2_TINY_REL = os.path.join("tests", "fixtures", "bert", "sst2_tiny")

_ckpt_cache = {}


def _fnv1a64(b):
    h = 1469598103934665603
    for x in b:
        h ^= x
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def _reseal(body):
    """body = checkpoint without its checksum; returns the file with a valid checksum."""
    return body + struct.pack("<Q", _fnv1a64(body))


def _ckpt_layout(b):
    """Offsets of the fields of a checkpoint (layout: src/recon/ckpt.c, qd_ckpt_save)."""
    off = {"units_done": 24, "nwq": 32}
    o = 40
    nwq = struct.unpack_from("<q", b, 32)[0]
    for k in range(nwq):
        ch, numel, _ = struct.unpack_from("<qqq", b, o)
        if k == 0:
            off["wq0_channels"], off["wq0_scale"] = o, o + 24
        o += 24 + 4 * (2 * ch + numel)
    off["nact"] = o
    nact = struct.unpack_from("<q", b, o)[0]
    o += 8 + 16 * nact
    off["nreps"] = o
    nreps = struct.unpack_from("<q", b, o)[0]
    o += 8
    if nreps > 0:
        off["rep0_ncurve"] = o + 128 + 5 * 8 + 7 * 8
    return off


def _real_checkpoint(m, d):
    """A real checkpoint of the tiny CNN after its first unit (cached: one run for all cases)."""
    if "bytes" not in _ckpt_cache:
        out = os.path.join(d, "first_run")
        cfg = os.path.join(d, "first.json")
        c = m.tiny_config()
        c["quant"]["recon"]["iters"] = 2
        json.dump(c, open(cfg, "w"))
        r = subprocess.run([m.BIN, "--config", cfg, "--out", out, "--quiet", "--progress", "never"],
                           capture_output=True, text=True, timeout=300)
        p = os.path.join(out, "checkpoint.bin")
        if r.returncode != 0 or not os.path.exists(p):
            raise RuntimeError("preparatory run left no checkpoint (rc %d): %s" % (r.returncode, r.stderr.strip()))
        _ckpt_cache["bytes"] = open(p, "rb").read()
        _ckpt_cache["config"] = c
        shutil.rmtree(out)
    return _ckpt_cache["bytes"]


def _prep_ckpt(m, mutate):
    """Out dir holding the real checkpoint changed by mutate(bytearray body, layout) and resealed."""
    def prep(d):
        b = _real_checkpoint(m, d)
        body = bytearray(b[:-8])
        res = mutate(body, _ckpt_layout(b))
        data = res if isinstance(res, (bytes, bytearray)) and res is not body else _reseal(bytes(body))
        out = os.path.join(d, "out")
        os.makedirs(out)
        open(os.path.join(out, "checkpoint.bin"), "wb").write(data)
        json.dump(_ckpt_cache["config"], open(os.path.join(d, "first.json"), "w"))
        return {"out": out}
    return prep


def _set_i64(field, value):
    def mut(body, lay):
        struct.pack_into("<q", body, lay[field], value)
    return mut


def _set_scale_nan(body, lay):
    struct.pack_into("<f", body, lay["wq0_scale"], float("nan"))


def _truncate_resealed(body, lay):
    return _reseal(bytes(body[: len(body) - 100]))


def _odd_length(body, lay):
    return _reseal(bytes(body) + b"\x01\x02\x03")


def _prep_ckpt_special(m, kind):
    def prep(d):
        out = os.path.join(d, "out")
        os.makedirs(out)
        p = os.path.join(out, "checkpoint.bin")
        if kind == "dev_zero":
            os.symlink("/dev/zero", p)
        elif kind == "fifo":
            os.mkfifo(p)
        elif kind == "directory":
            os.makedirs(p)
        return {"out": out}
    return prep


# ---------- configs ----------

def _prep_fifo(name):
    def prep(d):
        p = os.path.join(d, name)
        os.mkfifo(p)
        return {name.replace(".", "_"): p}
    return prep


def _prep_config_dir(d):
    p = os.path.join(d, "conf_dir.json")
    os.makedirs(p)
    return {}


def _deep_json(n):
    return "[" * n + "]" * n


# ---------- data ----------

def _jpeg_bytes(w, h, color=(120, 30, 200)):
    from PIL import Image  # tests only
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _patch_sof(jpeg, w, h):
    """Rewrite the frame size in the SOF0/SOF2 header (the data no longer matches it: a decoder that
    looked past the header would report corrupt data, not the size)."""
    b = bytearray(jpeg)
    i = 2
    while i + 4 < len(b):
        if b[i] != 0xFF:
            raise ValueError("not a marker")
        mk = b[i + 1]
        ln = struct.unpack_from(">H", b, i + 2)[0]
        if mk in (0xC0, 0xC1, 0xC2):
            struct.pack_into(">HH", b, i + 5, h, w)
            return bytes(b)
        i += 2 + ln
    raise ValueError("no SOF marker")


def _many_scans_jpeg(nscans=600):
    """A valid 32x32 progressive JPEG whose last scan is repeated: libjpeg only warns about the
    bogus progression and walks the coefficient buffer once per scan."""
    import random
    from PIL import Image  # tests only
    rnd = random.Random(1)
    img = Image.new("RGB", (32, 32))
    img.putdata([(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)) for _ in range(1024)])
    buf = io.BytesIO()
    img.save(buf, format="JPEG", progressive=True, quality=90)
    j = buf.getvalue()
    last = j[j.rfind(b"\xff\xda"):-2]
    return j[:-2] + last * nscans + b"\xff\xd9"


def _prep_calib_extra(m, name, data):
    def prep(d):
        root = m.mk_calib_with(d, [])
        open(os.path.join(root, "cat", name), "wb").write(data() if callable(data) else data)
        return {"calib": root}
    return prep


def _prep_cycle(m):
    def prep(d):
        root = m.mk_calib_with(d, [])
        for n in ("a", "b", "c"):
            os.symlink(".", os.path.join(root, "cat", n))
        return {"calib": root}
    return prep


def _prep_npy(kind):
    def prep(d):
        import numpy as np  # tests only
        x = np.zeros((4, 3, 32, 32), dtype=np.float32)
        if kind == "nan":
            x[2, 1, 5, 7] = np.nan
        else:
            x[1, 0, 0, 3] = np.inf
        p = os.path.join(d, "%s_calib.npy" % kind)
        np.save(p, x)
        return {"npy": p}
    return prep


def _prep_npy_dev_zero(d):
    p = os.path.join(d, "zero.npy")
    os.symlink("/dev/zero", p)
    return {"npy": p}


# ---------- BERT ----------

def _bert_config(m):
    src = m.SRC
    return {
        "model": {"path": "{bert}", "type": "bert"},
        "data": {"calib_path": os.path.join(src, "assets", "sst2", "sst2_dev.tsv"), "task": "sst2", "max_seq_len": 32},
        "quant": {"calibrate": 16, "recon": {"iters": 1, "batch_size": 8}},
        "process": {"threads": 1},
        "device": {"type": "cpu"},
        "eval": {"enabled": False},
        "output": {"export_onnx": False, "plots": False},
    }


def _prep_bert(m, kind):
    def prep(d):
        dst = os.path.join(d, "bert")
        shutil.copytree(os.path.join(m.SRC, SST2_TINY_REL), dst)
        if kind == "no_vocab":
            os.remove(os.path.join(dst, "vocab.txt"))
        elif kind == "vocab_nul":
            p = os.path.join(dst, "vocab.txt")
            lines = open(p, "rb").read().split(b"\n")
            lines[7] = lines[7] + b"\x00evil"
            open(p, "wb").write(b"\n".join(lines))
        elif kind == "config_dir":
            os.remove(os.path.join(dst, "config.json"))
            os.makedirs(os.path.join(dst, "config.json"))
        elif kind == "vocab_dir":
            os.remove(os.path.join(dst, "vocab.txt"))
            os.makedirs(os.path.join(dst, "vocab.txt"))
        return {"bert": dst}
    return prep


def _prep_loop(d):
    os.symlink("loop2", os.path.join(d, "loop1"))
    os.symlink("loop1", os.path.join(d, "loop2"))
    return {"out": os.path.join(d, "loop1", "run")}


def _skip_no_numpy():
    try:
        import numpy  # noqa: F401
        return None
    except ImportError:
        return "numpy not installed"


def _skip_no_pil():
    try:
        import PIL  # noqa: F401
        return None
    except ImportError:
        return "Pillow not installed"


def _skip_no_sst2(m):
    def skip():
        if not os.path.exists(os.path.join(m.SRC, "assets", "sst2", "sst2_dev.tsv")):
            return "assets/sst2/sst2_dev.tsv missing"
        return None
    return skip


def cases(m):
    C = []
    tiny = m.tiny_config
    # --- checkpoints: --resume reads an untrusted file ---
    resume = ["--resume", "--out", "{out}"]
    ck_cfg = tiny()  # the config of the run that wrote the checkpoint (its hash must match)
    ck_cfg["quant"]["recon"]["iters"] = 2
    ck = [
        ("ckpt_units_done_2p31", _set_i64("units_done", 1 << 31), r"checkpoint\.bin: checkpoint field units_done = 2147483648 is out of range",
         "units_done = 2^31 (checksum recomputed)"),
        ("ckpt_units_done_negative", _set_i64("units_done", -1), r"checkpoint field units_done = -1 is out of range",
         "units_done = -1 (checksum recomputed)"),
        ("ckpt_nwq_2p32", _set_i64("nwq", 1 << 32), r"checkpoint field weight_quantizers = 4294967296",
         "weight quantizer count 2^32"),
        ("ckpt_channels_2p31", _set_i64("wq0_channels", 1 << 31), r"checkpoint field channels = 2147483648",
         "channel count 2^31"),
        ("ckpt_ncurve_huge", _set_i64("rep0_ncurve", 1 << 40), r"checkpoint field ncurve = 1099511627776",
         "loss-curve length 2^40"),
        ("ckpt_scale_nan", _set_scale_nan, r"checkpoint field scale of quantizer 0 holds nan",
         "NaN weight scale"),
        ("ckpt_truncated_resealed", _truncate_resealed, r"checkpoint truncated: field",
         "last 100 bytes cut, checksum recomputed"),
        ("ckpt_odd_length", _odd_length, r"checkpoint has 3 unexpected bytes after its last field",
         "3 bytes appended (odd length), checksum recomputed"),
    ]
    for name, mut, rx, what in ck:
        C.append(m.Case(name, 65, rx, argv=resume, config=ck_cfg, prep=_prep_ckpt(m, mut), what=what))
    C.append(m.Case("ckpt_dev_zero", 66, r"checkpoint\.bin: is a character device, expected a regular file \(checkpoint\)",
                    argv=resume, prep=_prep_ckpt_special(m, "dev_zero"), what="checkpoint.bin -> /dev/zero"))
    C.append(m.Case("ckpt_fifo", 66, r"checkpoint\.bin: is a FIFO", argv=resume, prep=_prep_ckpt_special(m, "fifo"),
                    what="checkpoint.bin is a FIFO (must not block)"))
    C.append(m.Case("ckpt_directory", 66, r"checkpoint\.bin: is a directory", argv=resume,
                    prep=_prep_ckpt_special(m, "directory"), what="checkpoint.bin is a directory"))
    C.append(m.Case("dry_run_resume_no_checkpoint", 66, r"no checkpoint to resume from", argv=["--dry-run", "--resume"],
                    what="--dry-run --resume on an empty out dir fails like the run"))
    C.append(m.Case("dry_run_resume_bad_checkpoint", 65, r"checkpoint field units_done = 2147483648",
                    argv=["--dry-run"] + resume, config=ck_cfg,
                    prep=_prep_ckpt(m, _set_i64("units_done", 1 << 31)), what="--dry-run --resume validates the checkpoint"))
    C.append(m.Case("dry_run_cuda_without_gpu", 69, r"--device cuda: no usable CUDA device", argv=["--dry-run", "--device", "cuda"],
                    skip=m.skip_gpu, what="--dry-run --device cuda without a GPU fails like the run"))
    # --- configs ---
    C.append(m.Case("config_dev_zero", 66, r"/dev/zero: is a character device, expected a regular file \(config file\)",
                    argv=["--config", "/dev/zero"], config=False, what="--config /dev/zero"))
    C.append(m.Case("config_fifo", 66, r"conf\.json: is a FIFO", argv=["--config", "{conf_json}"], config=False,
                    prep=_prep_fifo("conf.json"), what="--config names a FIFO (must not block)"))
    C.append(m.Case("config_is_directory", 66, r"conf_dir\.json: is a directory", argv=["--config", "{case}/conf_dir.json"],
                    config=False, prep=_prep_config_dir, what="--config names a directory"))
    C.append(m.Case("config_deep_nesting", 78, r"config\.json:1:33: JSON nested more than 32 levels deep",
                    config=_deep_json(100000), what="100,000 nested arrays"))
    nul_cfg = json.dumps(tiny(), indent=1).replace('"plots": false', '"plots": false, "dir": "o_nul\\u0000/../../etc/evil"')
    C.append(m.Case("config_nul_in_path", 78, r"config\.json:\d+:\d+: a string contains \\u0000",
                    config=nul_cfg, argv=[], what="output.dir \"o_nul\\u0000/../../etc/evil\" in the file"))
    for name, assign, rx in [
        ("set_trailing_garbage", "quant.recon.iters=5abc", r"quant\.recon\.iters: expected an integer .*got the string \"5abc\"$"),
        ("set_two_values", "quant.w_qconfig.bit=4,8", r"quant\.w_qconfig\.bit: .*got the string \"4,8\"$"),
        ("set_bool_concat", "eval.enabled=truefalse", r"eval\.enabled: expected true or false, got the string \"truefalse\"$"),
        ("set_double_equals", "quant.recon.iters=1=2", r"quant\.recon\.iters: .*got the string \"1=2\"$"),
        ("set_quoted_trailing", 'quant.mode="nodrop"xyz', r"quant\.mode: expected one of .*got the string \"\"nodrop\"xyz\"$"),
        ("set_hex", "quant.recon.iters=0x10", r"quant\.recon\.iters: .*got the string \"0x10\"$"),
        ("set_nul_in_path", 'output.dir="o_nul\\u0000/../evil"', r"--set:1:\d+: a string contains \\u0000"),
    ]:
        C.append(m.Case(name, 78, rx, sets=[assign], what="--set %s" % assign))
    small = tiny()
    del small["quant"]["act_calib_samples"]
    small["quant"]["calibrate"] = 40
    C.append(m.Case("calib_small_default_act_samples", 0, None, config=small,
                    what="quant.calibrate=40 without act_calib_samples: defaults to 40, succeeds"))
    # --- models ---
    C.append(m.Case("model_dev_zero", 66, r"/dev/zero: is a character device, expected a regular file \(ONNX model\)",
                    sets=["model.path=/dev/zero"], what="model.path=/dev/zero"))
    C.append(m.Case("inspect_dev_urandom", 66, r"/dev/urandom: is a character device, expected a regular file",
                    argv=["--inspect", "/dev/urandom"], config=False, what="--inspect /dev/urandom"))
    C.append(m.Case("inspect_directory", 66, r"inspect_directory: is a directory, expected a regular file \(ONNX model\)",
                    argv=["--inspect", "{case}"], config=False, what="--inspect DIR"))
    # --- data ---
    C.append(m.Case("calib_npy_nan", 65, r"nan_calib\.npy: sample 2 contains NaN at element 1191 \(channel 1, y 5, x 7\)",
                    config=tiny(calib="{npy}"), prep=_prep_npy("nan"), skip=_skip_no_numpy,
                    what="NaN pixel in a calibration .npy"))
    C.append(m.Case("calib_npy_inf", 65, r"inf_calib\.npy: sample 1 contains Inf at element 3",
                    config=tiny(calib="{npy}"), prep=_prep_npy("inf"), skip=_skip_no_numpy,
                    what="Inf pixel in a calibration .npy"))
    C.append(m.Case("calib_npy_dev_zero", 66, r"zero\.npy: is a character device", config=tiny(calib="{npy}"),
                    prep=_prep_npy_dev_zero, what="calibration .npy -> /dev/zero"))
    C.append(m.Case("jpeg_header_16000", 65, r"zz_huge\.jpg: JPEG header declares 16000x16000 pixels",
                    config=tiny(calib="{calib}"), sets=["quant.calibrate=81"],
                    prep=_prep_calib_extra(m, "zz_huge.jpg", lambda: _patch_sof(_jpeg_bytes(16, 16), 16000, 16000)),
                    skip=_skip_no_pil, what="JPEG header 16000x16000 (refused before decoding)"))
    C.append(m.Case("jpeg_header_vs_model", 65, r"zz_big\.jpg: image is 8000x6000 \(WxH\) but the model input is 32x32",
                    config=tiny(calib="{calib}"), sets=["quant.calibrate=81"],
                    prep=_prep_calib_extra(m, "zz_big.jpg", lambda: _patch_sof(_jpeg_bytes(16, 16), 8000, 6000)),
                    skip=_skip_no_pil, what="8000x6000 header for a 32x32 model (size checked from the header)"))
    C.append(m.Case("jpeg_extreme_aspect_imagenet", 65, r"zz_thin\.jpg: image is 1x37633 \(WxH\); resizing it to shorter side 256 gives 256x9634048",
                    config=tiny(calib="{calib}"),
                    sets=["quant.calibrate=81", "data.preprocess=imagenet", "data.input_size=32", "data.resize_size=256"],
                    prep=_prep_calib_extra(m, "zz_thin.jpg", lambda: _jpeg_bytes(1, 37633)),
                    skip=_skip_no_pil, what="1x37633 JPEG, imagenet resize to 256 (would be 7 GB)"))
    C.append(m.Case("jpeg_many_scans", 65, r"zz_scans\.jpg: corrupt or unsupported JPEG \(more than 500 progressive scans\)",
                    config=tiny(calib="{calib}"), sets=["quant.calibrate=81"],
                    prep=_prep_calib_extra(m, "zz_scans.jpg", _many_scans_jpeg), skip=_skip_no_pil,
                    what="progressive 32x32 JPEG with 600 scans (decoder time bomb)"))
    C.append(m.Case("calib_symlink_cycle", 65, r"calib/cat/a: folder cycle", config=tiny(calib="{calib}"),
                    prep=_prep_cycle(m), what="three symlinks to '.' in a class folder"))
    # --- BERT model directories ---
    bert_skip = _skip_no_sst2(m)
    C.append(m.Case("bert_missing_vocab", 66, r"bert/vocab\.txt: cannot open", config=_bert_config(m),
                    prep=_prep_bert(m, "no_vocab"), skip=bert_skip, what="BERT directory without vocab.txt"))
    C.append(m.Case("bert_vocab_nul", 65, r"vocab\.txt: line 8 contains a NUL byte", config=_bert_config(m),
                    prep=_prep_bert(m, "vocab_nul"), skip=bert_skip, what="a NUL byte in vocab.txt"))
    C.append(m.Case("bert_config_json_dir", 66, r"bert/config\.json: is a directory", config=_bert_config(m),
                    prep=_prep_bert(m, "config_dir"), skip=bert_skip, what="BERT config.json is a directory"))
    C.append(m.Case("bert_vocab_dir", 66, r"bert/vocab\.txt: is a directory", config=_bert_config(m),
                    prep=_prep_bert(m, "vocab_dir"), skip=bert_skip, what="vocab.txt is a directory"))
    # --- outputs ---
    C.append(m.Case("out_empty", 64, r"--out: expected a directory, got an empty path", argv=["--out", ""],
                    what="--out \"\""))
    C.append(m.Case("out_symlink_loop", 74, r"loop1 is a symbolic link loop", argv=["--out", "{out}"], prep=_prep_loop,
                    what="--out below a symlink loop"))
    return C
