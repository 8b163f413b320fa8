#!/usr/bin/env python3
"""tests/report_test.py: the run report as a user sees it, and its safety against hostile names.

1. A tiny run (tiny 32x32 CNN, 100 iterations per unit, 500 validation images) writes report.html,
   report.md and plots/; results.json holds a loss curve with a point at least every 1% of each
   unit's iterations.
2. Headless Chromium renders report.html: the DOM (--dump-dom) has every section, every <img> is
   an inline data:image/png URI that decodes to a real PNG, nothing refers to the network; the
   screenshot (--screenshot) is not blank: it shows the charts' blue curves and bars.
3. Hostile input: a model whose node names hold gnuplot/shell/HTML payloads (quote + newline +
   `system "touch ..."`, `$(...)`, <script>, an ESC sequence), run with an --out path carrying the
   same kind of payload: no command runs (no PWNED file anywhere), the run succeeds, the plots are
   still drawn, and the names appear escaped in the HTML.
4. Without gnuplot on PATH the report is still written and says why it has no pictures.
5. `qdrop-gpu report DIR` re-renders; `qdrop-gpu compare A B --out DIR` writes the side-by-side
   report (Chromium-rendered too); bad arguments give the documented exit codes.

Usage: QD_BIN=build/qdrop-gpu python3 tests/report_test.py [--keep]
Exit: 0 pass, 1 fail; 77 only outside CI when Chromium is not installed (CI=true: fail).
"""
import base64
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

SRC = os.environ.get("QD_SRC_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests"))
import bad_inputs_test as bi  # noqa: E402  (tiny_config, paths)

BIN = os.path.abspath(os.environ.get("QD_BIN") or os.path.join(SRC, "build", "qdrop-gpu"))
SECTIONS_RUN = ["run", "versions", "accuracy", "units", "loss-curves", "sqnr", "timing"]
SECTIONS_COMPARE = ["runs", "accuracy", "sqnr", "timing"]
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)
    return cond


def tiny_report_config(model=None):
    c = bi.tiny_config(model=model)
    c["quant"]["recon"]["iters"] = 100
    c["quant"]["recon"]["log_every"] = 50
    c["eval"] = {"enabled": True, "max_images": 500}
    c["output"] = {"export_onnx": False, "plots": True}
    return c


def run_engine(cfg, out, work, env=None):
    path = os.path.join(work, "cfg_%d.json" % len(os.listdir(work)))
    json.dump(cfg, open(path, "w"), indent=1)
    return subprocess.run([BIN, "--config", path, "--out", out, "--quiet", "--progress", "never"], capture_output=True,
                          text=True, timeout=300, cwd=work, env=env)


# ---------- PNG decoding (no third-party imaging library needed) ----------

def png_info(data):
    """(width, height) of a PNG after checking its signature and that its IDAT stream inflates."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("no PNG signature")
    pos, w, h, idat = 8, 0, 0, b""
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if typ == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        elif typ == b"IDAT":
            idat += body
        pos += 12 + n
    zlib.decompress(idat)
    return w, h


def png_pixels(data):
    """Decode an 8-bit RGB/RGBA non-interlaced PNG into a numpy array [h, w, channels]."""
    import numpy as np
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("no PNG signature")
    pos, idat = 8, b""
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if typ == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif typ == b"IDAT":
            idat += body
        pos += 12 + n
    if depth != 8 or ctype not in (2, 6) or interlace:
        raise ValueError("unsupported PNG (depth %d, colour type %d, interlace %d)" % (depth, ctype, interlace))
    ch = 3 if ctype == 2 else 4
    stride = w * ch
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, stride + 1)
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if f == 0:
            cur = line
        elif f == 1:  # Sub: running sum per channel
            cur = (np.cumsum(line.reshape(w, ch), axis=0) % 256).reshape(stride)
        elif f == 2:  # Up
            cur = (line + prev) % 256
        else:         # Average / Paeth: sequential along the row
            cur = np.zeros(stride, dtype=np.int32)
            lin, pr = line.tolist(), prev.tolist()
            c = [0] * stride
            for i in range(stride):
                a = c[i - ch] if i >= ch else 0
                b = pr[i]
                if f == 3:
                    c[i] = (lin[i] + (a + b) // 2) % 256
                else:
                    cc = pr[i - ch] if i >= ch else 0
                    p = a + b - cc
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                    pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else cc)
                    c[i] = (lin[i] + pred) % 256
            cur = np.array(c, dtype=np.int32)
        out[y] = cur
        prev = cur
    return out.reshape(h, w, ch)[:, :, :3]


# ---------- Chromium ----------

def find_chromium():
    for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        p = shutil.which(n)
        if p:
            return p
    return None


def chromium(chrome, work, url, extra):
    profile = tempfile.mkdtemp(prefix="chromium_", dir=work)
    argv = [chrome, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-extensions", "--hide-scrollbars", "--user-data-dir=" + profile] + extra + [url]
    return subprocess.run(argv, capture_output=True, timeout=120)


def check_rendered(chrome, work, html_path, sections, nimg_min, tag):
    """Render html_path in headless Chromium: DOM sections, inline images, a non-blank screenshot."""
    url = "file://" + os.path.abspath(html_path)
    r = chromium(chrome, work, url, ["--dump-dom"])
    dom = r.stdout.decode("utf-8", "replace")
    check(r.returncode == 0 and "</html>" in dom, "%s: chromium --dump-dom rendered the page (rc %d)" % (tag, r.returncode))
    for s in sections:
        check(re.search(r'<section id="%s">\s*<h2>' % re.escape(s), dom) is not None, "%s: section '%s' in the DOM" % (tag, s))
    imgs = re.findall(r"<img\b[^>]*>", dom)
    check(len(imgs) >= nimg_min, "%s: %d <img> elements (expected >= %d)" % (tag, len(imgs), nimg_min))
    for i, tagtext in enumerate(imgs):
        m = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', tagtext)
        if not check(m is not None, "%s: image %d is an inline data:image/png URI" % (tag, i)):
            continue
        try:
            w, h = png_info(base64.b64decode(m.group(1)))
            check(w >= 300 and h >= 200, "%s: image %d decodes to a %dx%d PNG" % (tag, i, w, h))
        except Exception as e:  # noqa: BLE001
            check(False, "%s: image %d is a valid PNG (%s)" % (tag, i, e))
    check(re.search(r'(src|href)="(https?:)?//', dom) is None and "<script" not in dom.lower(),
          "%s: no network references and no scripts in the page" % tag)
    shot = os.path.join(os.path.dirname(html_path), "screenshot_%s.png" % tag)
    r = chromium(chrome, work, url, ["--screenshot=" + shot, "--window-size=1280,3600"])
    if not check(r.returncode == 0 and os.path.exists(shot), "%s: chromium --screenshot wrote %s" % (tag, shot)):
        return
    px = png_pixels(open(shot, "rb").read()).astype(int)
    # the charts draw in #1f77b4 (31,119,180) and gnuplot's default line colours; the page's CSS
    # has no blue, so blue-ish pixels in the screenshot are the rendered pictures
    blue = (abs(px[:, :, 0] - 31) < 40) & (abs(px[:, :, 1] - 119) < 40) & (abs(px[:, :, 2] - 180) < 40)
    nonwhite = (px.sum(axis=2) < 720).mean()
    colours = len(set(map(tuple, px[::7, ::7].reshape(-1, 3).tolist())))
    check(blue.sum() > 3000, "%s: screenshot shows chart curves/bars (%d chart-blue pixels)" % (tag, int(blue.sum())))
    check(nonwhite > 0.03 and colours > 40, "%s: screenshot is not blank (%.1f%% non-white, %d colours)" %
          (tag, 100 * nonwhite, colours))


# ---------- hostile names ----------

def evil_model(work):
    """Unit names are "layer k: FIRST..LAST" (at most 127 bytes): payloads stay short, so the marker
    files are relative (created in whatever directory the command would run in: all searched)."""
    import onnx
    m = onnx.load(os.path.join(bi.CAT, "tiny_cnn32.onnx"))
    touch = lambda tag: "PWNED_" + tag
    names = {
        "conv1": "c1'\nsystem \"touch %s\"\n'" % touch("gp_single"),
        "relu1": "r1\"\nsystem \"touch %s\"\n\"" % touch("gp_double"),
        "conv2": "c2`touch %s`$(touch %s)" % (touch("backtick"), touch("dollar")),
        "relu2": "<script>alert(1)</script><img src=x onerror=alert(2)>&amp;_sub^{sup}",
        "fc": "fc\x1b[31mred|pipe`tick",
    }
    for n in m.graph.node:
        if n.name in names:
            n.name = names[n.name]
    p = os.path.join(work, "evil_names.onnx")
    onnx.save(m, p)
    return p


def pwned_files(roots):
    hits = []
    for root in roots:
        for dp, _, fns in os.walk(root):
            hits += [os.path.join(dp, f) for f in fns if f.startswith("PWNED")]
    return hits


def main():
    keep = "--keep" in sys.argv
    if not os.path.exists(BIN):
        print("report_test: binary %s not found (set QD_BIN)" % BIN)
        return 1
    chrome = find_chromium()
    if not chrome:
        msg = "report_test: chromium not found (scripts/install_deps.sh installs the 'chromium' package for tests)"
        print(msg)
        return 1 if os.environ.get("CI") else 77
    work = tempfile.mkdtemp(prefix="qd_report_test_")
    t0 = time.time()
    try:
        # 1. a tiny run
        run_a = os.path.join(work, "run_a")
        r = run_engine(tiny_report_config(), run_a, work)
        check(r.returncode == 0, "tiny run exits 0 (%s)" % r.stderr.strip()[-300:])
        res = json.load(open(os.path.join(run_a, "results.json")))
        units = res["units"]
        for u in units:
            it = u["loss_curve"]["iteration"]
            gaps = [b - a for a, b in zip(it, it[1:])]
            check(len(it) >= 100 and it[0] == 1 and it[-1] == u["iters_run"] and max(gaps) <= u["iters_planned"] / 100 + 1e-9,
                  "unit %d: loss curve has %d points, at least every 1%% of %d iterations" %
                  (u["index"], len(it), u["iters_planned"]))
        check("agreement_with_fp32" in res["accuracy"] and 0 <= res["accuracy"]["agreement_with_fp32"] <= 100,
              "results.json: agreement_with_fp32 = %s" % res["accuracy"].get("agreement_with_fp32"))
        check(res.get("command", "").find("--out") > 0, "results.json: command line recorded")
        for f in ["report.html", "report.md", "plots/sqnr.png", "plots/time.png"] + \
                 ["plots/unit%02d_loss.png" % i for i in range(len(units))]:
            check(os.path.isfile(os.path.join(run_a, f)), "run wrote %s" % f)
        md = open(os.path.join(run_a, "report.md")).read()
        for h in ["## Command and configuration", "## Versions and device", "## Accuracy", "## Units",
                  "## Loss curves", "## SQNR per unit", "## Time per phase", "](plots/unit00_loss.png)"]:
            check(h in md, "report.md has '%s'" % h)

        # 2. Chromium renders it
        check_rendered(chrome, work, os.path.join(run_a, "report.html"), SECTIONS_RUN, len(units) + 2, "run")

        # 3. hostile node names and --out path
        marker = os.path.join(work, "markers")
        os.makedirs(marker)
        evil_out = os.path.join(work, "out'\nsystem \"touch %s/PWNED_out\"\n'$(touch %s/PWNED_outsh)" % (marker, marker))
        r = run_engine(tiny_report_config(model=evil_model(work)), evil_out, work)
        check(r.returncode == 0, "hostile names: run exits 0 (%s)" % r.stderr.strip()[-300:])
        hits = pwned_files([work, SRC, os.getcwd()])
        check(not hits, "hostile names: no command ran (PWNED files: %s)" % hits)
        for i in range(3):
            check(os.path.isfile(os.path.join(evil_out, "plots", "unit%02d_loss.png" % i)),
                  "hostile names: plots/unit%02d_loss.png still drawn" % i)
        html = open(os.path.join(evil_out, "report.html"), encoding="utf-8").read()
        check("<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "\x1b" not in html,
              "hostile names: HTML shows the names escaped (no <script>, no ESC)")
        check(not [n for n in os.listdir(evil_out) if n.startswith(".report_charts")],
              "hostile names: chart working directory removed")

        # 4. no gnuplot on PATH: report without pictures, says why
        run_b = os.path.join(work, "run_b")
        env = dict(os.environ, PATH="/nonexistent")
        c = tiny_report_config()
        c["quant"]["mode"] = "nodrop"
        r = run_engine(c, run_b, work, env=env)
        check(r.returncode == 0, "no gnuplot: run exits 0")
        html = open(os.path.join(run_b, "report.html")).read()
        check("gnuplot not found on PATH" in html and "<img" not in html and not os.path.exists(os.path.join(run_b, "plots")),
              "no gnuplot: report.html written without pictures and says why")

        # 5. report / compare subcommands
        os.remove(os.path.join(run_b, "report.html"))
        r = subprocess.run([BIN, "report", run_b], capture_output=True, text=True, timeout=120)
        check(r.returncode == 0 and os.path.isfile(os.path.join(run_b, "report.html")) and
              os.path.isfile(os.path.join(run_b, "plots", "unit00_loss.png")), "qdrop-gpu report re-renders (with pictures)")
        cmp_dir = os.path.join(work, "cmp")
        r = subprocess.run([BIN, "compare", run_a, run_b, "--out", cmp_dir], capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, "qdrop-gpu compare exits 0 (%s)" % r.stderr.strip())
        cmd_md = open(os.path.join(cmp_dir, "report.md")).read()
        check("A: run_a" in cmd_md and "B: run_b" in cmd_md and "qdrop" in cmd_md and "nodrop" in cmd_md,
              "compare: report.md names both runs and modes")
        check_rendered(chrome, work, os.path.join(cmp_dir, "report.html"), SECTIONS_COMPARE, 3, "compare")
        bad = [
            ([BIN, "report"], 64, r"report: expected a run directory"),
            ([BIN, "report", os.path.join(work, "nope")], 66, r"nope: run directory not found"),
            ([BIN, "report", marker], 66, r"markers: no results\.json"),
            ([BIN, "compare", run_a], 64, r"at least two run directories"),
            ([BIN, "compare", run_a, run_b, "--bogus"], 64, r"unknown option '--bogus'"),
        ]
        broken = os.path.join(work, "broken")
        os.makedirs(broken)
        open(os.path.join(broken, "results.json"), "w").write("{\"units\": [1, 2")
        bad.append(([BIN, "report", broken], 65, r"broken/results\.json: malformed results"))
        for argv, code, rx in bad:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            lines = r.stderr.strip().splitlines()
            check(r.returncode == code and len(lines) == 1 and lines[0].startswith("qdrop-gpu: error: ") and re.search(rx, lines[0]),
                  "%s -> exit %d, one error line /%s/ (got %d: %s)" % (" ".join(os.path.basename(a) for a in argv[1:]), code,
                                                                       rx, r.returncode, r.stderr.strip()))
    finally:
        if keep:
            print("work dir kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\nreport_test: %s in %.0f s" % ("FAILED: " + "; ".join(FAILS) if FAILS else "all checks passed", time.time() - t0))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
