"""Scheduler back ends of the nightly job (bench/nightly.py; docs/nightly.md).

  slurm  writes two batch scripts into OUT/slurm/ and submits them: one job array with one
         element per matrix run (each `nightly.py run-one --id ...`, one GPU each by default) and
         a summary job `--dependency=afterany:<array>` that runs the usual summariser
         (`nightly.py run --no-run`) over OUT. `--wait` blocks until the summary finished
         (`sbatch --wait`) and exits with its exit code (0 / 1 regression / 3 a run failed).
  k8s    writes a Kubernetes manifest: a ConfigMap (this job's Python files + the matrix), an
         Indexed Job whose pod JOB_COMPLETION_INDEX=i runs matrix element i with the qdrop-gpu
         image (one nvidia.com/gpu each by default), and a summary Job that waits for every
         element's meta.json on the shared results volume and then runs the summariser.

Only the standard library; the manifest is written as YAML documents in JSON (flow) style, which
every YAML parser and kubectl read.
"""
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import nightly as nt

UsageError = nt.UsageError

# run ids become file names, Slurm script words and Kubernetes shell words: keep them plain
SAFE_ID = re.compile(r"^[A-Za-z0-9._@/+-]+$")


def check_ids(runs):
    for r in runs:
        if not SAFE_ID.match(r["id"]):
            raise UsageError(f"run id {r['id']!r}: only letters, digits and . _ @ / + - can be scheduled")


def threshold_argv(a):
    out = []
    for k in nt.DEFAULT_THRESHOLDS:
        v = getattr(a, k, None)
        if v is not None:
            out += ["--" + k.replace("_", "-"), repr(float(v))]
    return out


# ------------------------------------------------------------------------------------------------
# Slurm


def sbatch_lines(opts):
    return [f"#SBATCH {o}" for o in opts]


def slurm_time(runs):
    """Default array time limit: the longest run's timeout_s (the runner kills it then) + 10 min
    for start-up and writing, as D-HH:MM:SS."""
    s = int(max(r["timeout_s"] for r in runs)) + 600
    return f"{s // 86400}-{s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def slurm_scripts(a, matrix_path, runs, binary, out, py):
    """-> (element script text, summary script text)."""
    nightly = os.path.join(nt.HERE, "nightly.py")
    only = [x for o in (a.only or []) for x in ("--only", o)]
    logs = os.path.join(out, "slurm")
    common = [f"--job-name={a.job_name}"]
    if a.partition:
        common.append(f"--partition={a.partition}")
    if a.account:
        common.append(f"--account={a.account}")
    elem = common + [f"--output={logs}/element-%A_%a.log", f"--time={a.time or slurm_time(runs)}"]
    if not a.cpu_only:
        elem.append(f"--gres={a.gres}")
    if a.cpus_per_task:
        elem.append(f"--cpus-per-task={a.cpus_per_task}")
    if a.mem:
        elem.append(f"--mem={a.mem}")
    elem += a.sbatch_arg or []
    ids = " ".join(shlex.quote(r["id"]) for r in runs)
    run_one = [py, nightly, "run-one", "--matrix", matrix_path, "--bin", binary, "--out", out] + only
    element = "\n".join(["#!/bin/bash",
                         f"# qdrop-gpu nightly: one element of the matrix per array task ({len(runs)} runs).",
                         "# Written by bench/nightly.sh slurm; submitted with --array=0-"
                         f"{len(runs) - 1}{'%' + str(a.max_parallel) if a.max_parallel else ''}.",
                         *sbatch_lines(elem),
                         "set -euo pipefail",
                         f"ids=({ids})",
                         'id="${ids[$SLURM_ARRAY_TASK_ID]}"',
                         f"cd {shlex.quote(nt.ROOT)}",
                         "exec " + shlex.join(run_one) + ' --id "$id"', ""])
    summ = common + [f"--output={logs}/summary-%j.log", f"--time={a.summary_time}", "--cpus-per-task=1"]
    if a.summary_partition:
        summ = [x for x in summ if not x.startswith("--partition=")] + [f"--partition={a.summary_partition}"]
    summ += a.summary_sbatch_arg or []
    report = [py, nightly, "run", "--no-run", "--matrix", matrix_path, "--bin", binary, "--out", out] + only
    if a.previous:
        report += ["--previous", os.path.abspath(a.previous)]
    if a.no_plots:
        report.append("--no-plots")
    report += threshold_argv(a)
    summary = "\n".join(["#!/bin/bash",
                         "# qdrop-gpu nightly: summarise the array's runs (submitted with --dependency=afterany:<array>).",
                         "# Exit code: the summariser's (0 ok, 1 regression, 3 a run failed).",
                         *sbatch_lines(summ),
                         "set -uo pipefail",
                         f"cd {shlex.quote(nt.ROOT)}",
                         "exec " + shlex.join(report), ""])
    return element, summary


def run_cmd(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True)
    except OSError as e:
        raise UsageError(f"cannot run {argv[0]}: {e.strerror}")
    return r


def cmd_slurm(a):
    matrix_path = os.path.abspath(a.matrix)
    matrix = nt.load_matrix(matrix_path)
    runs = nt.select_runs(matrix, a.only, a.matrix)
    check_ids(runs)
    if a.max_parallel is not None and a.max_parallel < 1:
        raise UsageError(f"--max-parallel {a.max_parallel}: must be at least 1")
    out = os.path.abspath(a.out)
    if re.search(r"\s", out):
        raise UsageError(f"--out {out!r}: Slurm's #SBATCH --output cannot hold a path with white space")
    binary = os.path.abspath(a.bin) if os.sep in a.bin else (shutil.which(a.bin) or a.bin)
    py = a.python or sys.executable or "python3"
    if a.previous:
        nt.load_benchmark(a.previous)  # a malformed previous file fails now, not after the array
    element, summary = slurm_scripts(a, matrix_path, runs, binary, out, py)
    sdir = os.path.join(out, "slurm")
    os.makedirs(sdir, exist_ok=True)
    elem_path, summ_path = os.path.join(sdir, "element.sbatch"), os.path.join(sdir, "summary.sbatch")
    nt.write_text(elem_path, element)
    nt.write_text(summ_path, summary)
    array = f"--array=0-{len(runs) - 1}" + (f"%{a.max_parallel}" if a.max_parallel else "")
    sub_elem = [a.sbatch, "--parsable", array, elem_path]

    def summary_submit(array_job):
        return [a.sbatch, "--parsable", f"--dependency=afterany:{array_job}"] + (["--wait"] if a.wait else []) + [summ_path]
    sub_summ = summary_submit("{array_job}")
    if a.dry_run:
        print(shlex.join(sub_elem))
        print(shlex.join(sub_summ))
        return nt.EXIT_OK
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise UsageError(f"binary {binary} is not an executable file (build it, or pass --bin)")
    if not shutil.which(a.sbatch):
        raise UsageError(f"{a.sbatch} not found: run on a Slurm login node (or pass --sbatch PATH)")
    # Tonight's runs must not be reported from last night's files when an element never starts.
    for r in runs:
        for f in ("results.json", "meta.json"):
            p = os.path.join(out, "runs", r["slug"], f)
            if os.path.exists(p):
                os.remove(p)
    r = run_cmd(sub_elem)
    if r.returncode != 0:
        raise UsageError(f"sbatch (array) failed, exit {r.returncode}: {r.stderr.strip()}")
    array_job = r.stdout.strip().split(";")[0]
    if not array_job.isdigit():
        raise UsageError(f"sbatch (array) printed {r.stdout.strip()!r}, not a job id")
    sub_summ = summary_submit(array_job)
    jobs = {"array_job": array_job, "runs": [x["id"] for x in runs], "matrix": matrix_path, "out": out,
            "submitted_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    nt.write_json(os.path.join(sdir, "jobs.json"), jobs)
    print(f"nightly: slurm array job {array_job}: {len(runs)} runs ({array})", file=sys.stderr, flush=True)
    if not a.wait:
        r = run_cmd(sub_summ)
        if r.returncode != 0:
            raise UsageError(f"sbatch (summary) failed, exit {r.returncode}: {r.stderr.strip()}; the array job "
                             f"{array_job} runs anyway: summarise it later with bench/nightly.sh --no-run --out {out}")
        summary_job = r.stdout.strip().split(";")[0]
        jobs["summary_job"] = summary_job
        nt.write_json(os.path.join(sdir, "jobs.json"), jobs)
        print(f"nightly: slurm summary job {summary_job} after {array_job}; report in {out}/summary.md, "
              f"logs in {sdir}/", file=sys.stderr)
        print(array_job, summary_job)
        return nt.EXIT_OK
    # --wait: sbatch itself polls until the summary job ends and exits with its exit code
    print(f"nightly: waiting for the summary job (afterany:{array_job}) ...", file=sys.stderr, flush=True)
    try:
        p = subprocess.run(sub_summ, stdout=subprocess.PIPE, text=True)
    except OSError as e:
        raise UsageError(f"cannot run {a.sbatch}: {e.strerror}")
    summary_job = (p.stdout or "").strip().split(";")[0]
    jobs["summary_job"] = summary_job
    nt.write_json(os.path.join(sdir, "jobs.json"), jobs)
    for lg in sorted(os.listdir(sdir)):
        if lg == f"summary-{summary_job}.log":
            with open(os.path.join(sdir, lg), encoding="utf-8", errors="replace") as f:
                sys.stderr.write(f.read())
    print(f"nightly: slurm jobs {array_job} (array) and {summary_job} (summary) finished; "
          f"summary exit code {p.returncode}", file=sys.stderr)
    if p.returncode in (nt.EXIT_OK, nt.EXIT_REGRESSION, nt.EXIT_RUN_FAILED):
        return p.returncode
    raise UsageError(f"summary job {summary_job} ended with exit {p.returncode}: see {sdir}/summary-{summary_job}.log")


# ------------------------------------------------------------------------------------------------
# Kubernetes


def k8s_name(s):
    """RFC 1123 label: lower case alphanumerics and '-', at most 63 characters (Job names: the pod
    names add '-<index>-<hash>', so keep them shorter)."""
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", s) or len(s) > 50:
        raise UsageError(f"--name {s!r}: lower-case letters, digits and '-', at most 50 characters")
    return s


def pod_script(runs, binary, run_out):
    """The shell program of the indexed pods: JOB_COMPLETION_INDEX -> one qdrop-gpu command, with
    the same files as bench/nightly.py's own runner (stdout.log, stderr.log, meta.json with the
    exit code, wall time and the engine's peak RSS, its VmHWM sampled every 0.2 s)."""
    lines = ["set -u",
             'case "${JOB_COMPLETION_INDEX:?not an indexed Job pod}" in']
    for i, r in enumerate(runs):
        # the config as the matrix names it: relative to the repository root = the image's workdir
        argv = ["--config", r["config_arg"], "--device", r["device"]]
        for k, v in r["set"].items():
            argv += ["--set", f"{k}={nt.set_value_str(v)}"]
        lines.append(f"  {i}) id={shlex.quote(r['id'])}; slug={shlex.quote(r['slug'])}; "
                     f"tmo={int(r['timeout_s'])}; set -- {shlex.join(argv)} ;;")
    lines += ['  *) echo "no matrix element $JOB_COMPLETION_INDEX" >&2; exit 2 ;;', "esac",
              f'd={shlex.quote(run_out)}/runs/"$slug"',
              'mkdir -p "$d" && rm -f "$d/results.json" "$d/meta.json" || exit 74',
              't0=$(date +%s)',
              # in the background so that its peak RSS (VmHWM, a high-water mark) can be sampled and
              # the per-run timeout enforced without another process in between
              f'{shlex.quote(binary)} "$@" --out "$d" --progress never --quiet >"$d/stdout.log" 2>"$d/stderr.log" &',
              'pid=$!',
              'hwm=""',
              'timed_out=0',
              'while [ -r "/proc/$pid/status" ] && ! grep -q "^State:[[:space:]]*Z" "/proc/$pid/status" 2>/dev/null; do',
              '  h=$(sed -n "s/^VmHWM:[[:space:]]*\\([0-9]*\\) kB/\\1/p" "/proc/$pid/status" 2>/dev/null)',
              '  [ -n "$h" ] && hwm=$h',
              '  if [ $(( $(date +%s) - t0 )) -ge "$tmo" ]; then timed_out=1; kill -KILL "$pid" 2>/dev/null; fi',
              '  sleep 0.2',
              'done',
              'wait "$pid"',
              "rc=$?",
              'wall=$(( $(date +%s) - t0 ))',
              'peak=null',
              'if [ -n "$hwm" ]; then peak=$(( hwm / 1024 )); fi',
              'err=""',
              'if [ "$timed_out" = 1 ]; then err=", \\"error\\": \\"timed out after ${tmo} s\\""; '
              'elif [ "$rc" = 137 ]; then err=", \\"error\\": \\"killed (out of memory?)\\""; '
              'elif [ "$rc" != 0 ]; then err=", \\"error\\": \\"exit code $rc\\""; '
              'elif [ ! -s "$d/results.json" ]; then err=", \\"error\\": \\"exit code 0 but no results.json\\""; fi',
              'printf \'{"id": "%s", "exit_code": %s, "wall_s": %s, "peak_rss_mb": %s, '
              '"scheduler": {"kind": "kubernetes", "index": "%s", "node": "%s"}%s}\\n\' '
              '"$id" "$rc" "$wall" "$peak" "$JOB_COMPLETION_INDEX" "${NODE_NAME:-$(hostname)}" "$err" '
              '>"$d/meta.json.tmp" && mv "$d/meta.json.tmp" "$d/meta.json"',
              'echo "qdrop-nightly: $id: exit $rc, ${wall} s"',
              "exit $rc", ""]
    return "\n".join(lines)


def k8s_documents(a, matrix_path, runs):
    name, ns = k8s_name(a.name), a.namespace
    labels = {"app.kubernetes.io/name": "qdrop-nightly", "app.kubernetes.io/instance": name}
    run_out = a.results_mount.rstrip("/") + "/" + name
    with open(matrix_path, encoding="utf-8") as f:
        matrix_text = f.read()
    files = {"matrix.json": matrix_text}
    for fn in ("nightly.py", "nightly_sched.py"):
        with open(os.path.join(nt.HERE, fn), encoding="utf-8") as f:
            files[fn] = f.read()
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": f"{name}-job", "namespace": ns, "labels": labels},
          "data": files}
    limits = {} if a.cpu_only else {"nvidia.com/gpu": a.gpus}
    requests = {"cpu": a.cpu, "memory": a.memory}
    if a.memory_limit:
        limits["memory"] = a.memory_limit
    mounts = [{"name": "results", "mountPath": a.results_mount}]
    volumes = [{"name": "results", "persistentVolumeClaim": {"claimName": a.results_pvc}}]
    for what, pvc, path in (("models", a.models_pvc, a.models_mount), ("data", a.data_pvc, a.data_mount)):
        if pvc:
            mounts.append({"name": what, "mountPath": path, "readOnly": True})
            volumes.append({"name": what, "persistentVolumeClaim": {"claimName": pvc, "readOnly": True}})
    pod_sec = {"runAsUser": a.uid, "runAsGroup": a.uid, "fsGroup": a.uid, "runAsNonRoot": True}
    tolerations = [] if a.cpu_only else [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    pod = {"restartPolicy": "Never", "securityContext": pod_sec,
           "containers": [{"name": "qdrop", "image": a.image, "workingDir": a.workdir,
                           "command": ["/bin/sh", "-c", pod_script(runs, "qdrop-gpu", run_out)],
                           "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                           "resources": {"requests": requests, "limits": limits} if limits else {"requests": requests},
                           "volumeMounts": mounts}],
           "volumes": volumes}
    if tolerations:
        pod["tolerations"] = tolerations
    if a.node_selector:
        pod["nodeSelector"] = dict(kv.split("=", 1) for kv in a.node_selector)
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": name, "namespace": ns, "labels": dict(labels, **{"app.kubernetes.io/component": "matrix"})},
           "spec": {"completionMode": "Indexed", "completions": len(runs),
                    "parallelism": min(a.parallelism or len(runs), len(runs)),
                    # each index runs once, like a matrix row locally; a failure is reported by the
                    # summary, it does not stop the other indexes
                    "backoffLimitPerIndex": 0,
                    "ttlSecondsAfterFinished": a.ttl,
                    "template": {"metadata": {"labels": dict(labels, **{"app.kubernetes.io/component": "matrix"})},
                                 "spec": pod}}}
    only = [x for o in (a.only or []) for x in ("--only", o)]
    report = ["python3", "/opt/nightly/nightly.py", "run", "--no-run", "--wait-for-runs", str(a.summary_wait_s),
              "--matrix", "/opt/nightly/matrix.json", "--bin", "qdrop-gpu", "--out", run_out] + only
    if a.previous:
        report += ["--previous", a.previous]
    if a.no_plots:
        report.append("--no-plots")
    report += threshold_argv(a)
    summary = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": f"{name}-summary", "namespace": ns,
                            "labels": dict(labels, **{"app.kubernetes.io/component": "summary"})},
               "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": a.ttl,
                        "activeDeadlineSeconds": a.summary_wait_s + 1800,
                        "template": {"metadata": {"labels": dict(labels, **{"app.kubernetes.io/component": "summary"})},
                                     "spec": {"restartPolicy": "Never", "securityContext": pod_sec,
                                              "containers": [{"name": "summary", "image": a.summary_image,
                                                              "command": report,
                                                              "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                                                              "volumeMounts": [
                                                                  {"name": "results", "mountPath": a.results_mount},
                                                                  {"name": "job", "mountPath": "/opt/nightly", "readOnly": True}]}],
                                              "volumes": [volumes[0], {"name": "job", "configMap": {"name": f"{name}-job"}}]}}}}
    return [cm, job, summary]


def cmd_k8s(a):
    matrix_path = os.path.abspath(a.matrix)
    matrix = nt.load_matrix(matrix_path)
    runs = nt.select_runs(matrix, a.only, a.matrix)
    check_ids(runs)
    if a.name is None:
        a.name = "qdrop-nightly-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    for opt, v in (("--parallelism", a.parallelism), ("--gpus", a.gpus)):
        if v is not None and v < 1:
            raise UsageError(f"{opt} {v}: must be at least 1")
    for kv in a.node_selector or []:
        if "=" not in kv:
            raise UsageError(f"--node-selector {kv!r}: expected KEY=VALUE")
    docs = k8s_documents(a, matrix_path, runs)
    head = ["# qdrop-gpu nightly matrix as a Kubernetes Indexed Job (docs/nightly.md, section Kubernetes).",
            f"# {len(runs)} runs of {nt.display_path(matrix_path)}; written by bench/nightly.sh k8s.",
            f"#   kubectl apply -f {os.path.basename(a.output) if a.output != '-' else 'FILE'}",
            f"#   kubectl -n {a.namespace} wait --for=condition=complete --timeout=24h job/{a.name}-summary",
            f"# Report: {a.results_mount.rstrip('/')}/{a.name}/summary.md on the volume {a.results_pvc}."]
    text = "\n".join(head) + "\n" + "".join("---\n" + json.dumps(d, indent=2) + "\n" for d in docs)
    if a.output == "-":
        sys.stdout.write(text)
    else:
        os.makedirs(os.path.dirname(os.path.abspath(a.output)) or ".", exist_ok=True)
        nt.write_text(a.output, text)
        print(f"nightly: wrote {a.output}: Indexed Job {a.name} ({len(runs)} completions) + {a.name}-summary",
              file=sys.stderr)
    return nt.EXIT_OK


# ------------------------------------------------------------------------------------------------
# command line


def add_parsers(sub, add_threshold_args):
    s = sub.add_parser("slurm", help="submit the matrix as a Slurm job array + a summary job")
    s.add_argument("--matrix", default=os.path.join(nt.HERE, "nightly_matrix_ci.json"))
    s.add_argument("--out", default=os.path.join(nt.ROOT, "runs", "nightly"),
                   help="on a file system every node sees at the same path")
    s.add_argument("--bin", default=os.environ.get("QD_BIN") or os.path.join(nt.ROOT, "build", "qdrop-gpu"))
    s.add_argument("--only", action="append")
    s.add_argument("--previous")
    s.add_argument("--no-plots", action="store_true")
    s.add_argument("--partition", help="partition of the array (default: the cluster's default)")
    s.add_argument("--summary-partition", help="partition of the summary job (default: --partition)")
    s.add_argument("--account")
    s.add_argument("--gres", default="gpu:1", help="per array element (default gpu:1)")
    s.add_argument("--cpu-only", action="store_true", help="no --gres (CPU partitions, the CPU matrix)")
    s.add_argument("--cpus-per-task", type=int)
    s.add_argument("--mem", help="per array element, e.g. 32G")
    s.add_argument("--time", help="per array element (default: the matrix's longest timeout_s + 10 min)")
    s.add_argument("--summary-time", default="00:30:00")
    s.add_argument("--max-parallel", type=int, help="at most this many elements at once (--array=...%%N)")
    s.add_argument("--job-name", default="qdrop-nightly")
    s.add_argument("--sbatch-arg", action="append", help="extra #SBATCH option for the array (repeatable)")
    s.add_argument("--summary-sbatch-arg", action="append", help="extra #SBATCH option for the summary job")
    s.add_argument("--python", help="python3 on the compute nodes (default: this interpreter)")
    s.add_argument("--sbatch", default="sbatch")
    s.add_argument("--wait", action="store_true", help="wait for the summary job; exit with its code")
    s.add_argument("--dry-run", action="store_true", help="write the scripts, print the sbatch commands")
    add_threshold_args(s)
    s.set_defaults(func=cmd_slurm)

    k = sub.add_parser("k8s", help="write a Kubernetes Indexed Job manifest for the matrix")
    k.add_argument("--matrix", default=os.path.join(nt.HERE, "nightly_matrix_full.json"))
    k.add_argument("--only", action="append")
    k.add_argument("--output", "-o", default="-", help="manifest file (default: stdout)")
    k.add_argument("--name", help="Job name and results folder (default qdrop-nightly-YYYYMMDD)")
    k.add_argument("--namespace", default="default")
    k.add_argument("--image", default="qdrop-gpu:latest", help="the image of docker/Dockerfile")
    k.add_argument("--workdir", default="/work", help="configs/ and assets/ in the image (docker/Dockerfile)")
    k.add_argument("--summary-image", default="python:3.12-slim", help="any image with python3")
    k.add_argument("--results-pvc", default="qdrop-nightly-results",
                   help="ReadWriteMany claim shared by the pods and the summary")
    k.add_argument("--results-mount", default="/runs")
    k.add_argument("--models-pvc", help="read-only claim mounted at --models-mount (ImageNet models)")
    k.add_argument("--models-mount", default="/work/models")
    k.add_argument("--data-pvc", help="read-only claim mounted at --data-mount (ImageNet folders)")
    k.add_argument("--data-mount", default="/work/data")
    k.add_argument("--gpus", type=int, default=1, help="nvidia.com/gpu per pod (default 1)")
    k.add_argument("--cpu-only", action="store_true", help="no GPU limit, no GPU toleration")
    k.add_argument("--cpu", default="8", help="CPU request per pod")
    k.add_argument("--memory", default="32Gi", help="memory request per pod")
    k.add_argument("--memory-limit", help="memory limit per pod (default none)")
    k.add_argument("--parallelism", type=int, help="pods at once (default: all)")
    k.add_argument("--node-selector", action="append", help="KEY=VALUE (repeatable)")
    k.add_argument("--uid", type=int, default=10001, help="the image's user (docker/Dockerfile: 10001)")
    k.add_argument("--ttl", type=int, default=3 * 86400, help="ttlSecondsAfterFinished")
    k.add_argument("--summary-wait-s", type=int, default=24 * 3600,
                   help="the summary waits at most this long for all runs")
    k.add_argument("--previous", help="previous night's output dir on the results volume, e.g. /runs/qdrop-nightly-20261204")
    k.add_argument("--no-plots", action="store_true")
    add_threshold_args(k)
    k.set_defaults(func=cmd_k8s)
