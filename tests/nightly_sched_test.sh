#!/usr/bin/env bash
# Tests of the nightly job's scheduler back ends (bench/nightly_sched.py, docs/nightly.md).
#   nightly_sched_test.sh unit   seconds, no scheduler: the Slurm batch scripts (--dry-run); the
#                                Kubernetes manifest validated offline against the Kubernetes
#                                schemas that the kubernetes-validate package bundles (strict, two
#                                API versions), a broken copy rejected, and the pods' shell program
#                                and the summary Job's command executed here with a fake engine;
#                                the GitHub Actions workflow: parsed, required keys, validated
#                                against SchemaStore's github-workflow schema (check-jsonschema
#                                --builtin-schema, offline), and actionlint when installed.
#   nightly_sched_test.sh slurm  a real single-node Slurm cluster on localhost (munged + slurmctld +
#                                slurmd from Debian's munge/slurm-wlm, config in a temp dir, free
#                                ports), a 3-element matrix with the real qdrop-gpu ($QD_BIN) and a
#                                tiny model submitted with `bench/nightly.sh slurm --wait` (one job
#                                array + an afterany summary job), results checked, cluster stopped.
#                                Needs root. Bounded: the whole test stops after QD_SLURM_TIMEOUT_S
#                                (default 180) s; the daemons are killed on every exit.
# Exit: 0 pass, 1 fail, 77 skip (never in CI for a missing package: install_deps.sh installs them).
set -uo pipefail
src="${QD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
nightly="$src/bench/nightly.py"
mode="${1:-unit}"
fails=0
passes=0
ok() { passes=$((passes + 1)); echo "ok: $*"; }
bad() { fails=$((fails + 1)); echo "FAIL: $*"; }
expect_rc() {
  local want="$1" what="$2"
  shift 2
  "$@" >"$tmp/last.out" 2>&1
  local rc=$?
  if [[ "$rc" == "$want" ]]; then ok "$what (exit $rc)"; else bad "$what: exit $rc, want $want"; sed 's/^/    /' "$tmp/last.out" | tail -30; fi
}
pycheck() {
  local what="$1" msg
  if msg=$(python3 -c "$2" 2>&1); then ok "$what"; [[ -n "$msg" ]] && echo "$msg" | sed 's/^/    /'; else bad "$what"; echo "$msg" | sed 's/^/    /' | tail -30; fi
}
finish() {
  echo "nightly-sched ($mode): $passes passed, $fails failed"
  [[ "$fails" == 0 ]] && exit 0 || exit 1
}
# missing TOOL WHY: a prerequisite is absent -> fail in CI (the list is install_deps.sh's), else skip
missing() {
  if [[ "${CI:-}" == true ]]; then
    echo "FAIL: $1 is missing ($2); scripts/install_deps.sh installs it"
    exit 1
  fi
  echo "skip: $1 is missing ($2); run scripts/install_deps.sh"
  exit 77
}

tmp="$(mktemp -d)"
cleanup_extra=""
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  if [[ -n "$cleanup_extra" ]]; then eval "$cleanup_extra"; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp" || exit 1

if [[ "$mode" == unit ]]; then
  python3 -c 'import yaml, kubernetes_validate' 2>/dev/null || missing "python packages pyyaml/kubernetes-validate" "pip"
  python3 -c "import check_jsonschema" 2>/dev/null || missing check-jsonschema "pip"
  cp "$src/tests/nightly_fake_engine.py" "$tmp/fake-qdrop-gpu"
  chmod +x "$tmp/fake-qdrop-gpu"
  cat >"$tmp/matrix.json" <<'J'
{"name": "sched-test", "default_device": "cpu", "timeout_s": 60, "set": {"quant.recon.iters": 50},
 "groups": [{"model": "resnet20_cifar10", "config": "configs/default.json", "bits": ["w4a4", "w2a4"],
             "modes": ["qdrop", "nearest"]},
            {"model": "resnet20_cifar10", "config": "configs/default.json", "device": "cuda", "bits": ["w4a4"],
             "modes": ["qdrop"], "set": {"eval.max_images": 10}}]}
J

  # ---------------------------------------------------------------- Slurm scripts (--dry-run)
  expect_rc 0 "slurm --dry-run writes the batch scripts" python3 "$nightly" slurm --dry-run --matrix "$tmp/matrix.json" \
    --bin "$tmp/fake-qdrop-gpu" --out "$tmp/sl" --partition gpu --max-parallel 2 --cpus-per-task 8 --mem 32G \
    --only resnet20 --previous "$tmp/nope" --sbatch-arg=--constraint=h100
  cp "$tmp/last.out" "$tmp/sl.out"
  pycheck "slurm: array of 5, one GPU each, afterany summary, same matrix/selection" "
import re, shlex
e = open('$tmp/sl/slurm/element.sbatch').read()
s = open('$tmp/sl/slurm/summary.sbatch').read()
cmds = [l for l in open('$tmp/sl.out').read().splitlines() if l.startswith('sbatch')]
assert len(cmds) == 2, cmds
assert '--array=0-4%2' in cmds[0] and cmds[0].endswith('element.sbatch'), cmds[0]
assert '--dependency=afterany:{array_job}' in cmds[1] and cmds[1].endswith('summary.sbatch'), cmds[1]
for o in ('--gres=gpu:1', '--partition=gpu', '--cpus-per-task=8', '--mem=32G', '--time=0-00:11:00', '--constraint=h100',
          '--output=$tmp/sl/slurm/element-%A_%a.log'):
    assert '#SBATCH ' + o + '\n' in e, o
ids = shlex.split(re.search(r'^ids=\((.*)\)$', e, re.M).group(1))
assert ids == ['resnet20_cifar10/w4a4/qdrop', 'resnet20_cifar10/w4a4/nearest', 'resnet20_cifar10/w2a4/qdrop',
               'resnet20_cifar10/w2a4/nearest', 'resnet20_cifar10@cuda/w4a4/qdrop'], ids
run = shlex.split(e.strip().splitlines()[-1])
assert run[0] == 'exec' and run[2].endswith('bench/nightly.py') and run[3] == 'run-one', run
assert run[run.index('--only') + 1] == 'resnet20' and run[-2:] == ['--id', '\$id'], run
rep = shlex.split(s.strip().splitlines()[-1])
assert rep[3:5] == ['run', '--no-run'] and rep[rep.index('--out') + 1] == '$tmp/sl', rep
assert rep[rep.index('--previous') + 1] == '$tmp/nope' and rep[rep.index('--only') + 1] == 'resnet20', rep
assert '--gres' not in s and '#SBATCH --partition=gpu' in s, s
"
  expect_rc 0 "slurm --cpu-only: no --gres" python3 "$nightly" slurm --dry-run --cpu-only --matrix "$tmp/matrix.json" --bin "$tmp/fake-qdrop-gpu" --out "$tmp/sl2"
  if grep -q -- '--gres' "$tmp/sl2/slurm/element.sbatch"; then bad "--cpu-only element script asks for a GPU"; else ok "--cpu-only element script asks for no GPU"; fi
  expect_rc 2 "slurm: --out with white space is refused" python3 "$nightly" slurm --dry-run --matrix "$tmp/matrix.json" --bin "$tmp/fake-qdrop-gpu" --out "$tmp/a b"
  expect_rc 2 "slurm: no sbatch is a usage error naming it" python3 "$nightly" slurm --sbatch "$tmp/no-sbatch" --matrix "$tmp/matrix.json" --bin "$tmp/fake-qdrop-gpu" --out "$tmp/sl3"
  if grep -q "no-sbatch not found" "$tmp/last.out"; then ok "... named"; else bad "missing sbatch not named"; cat "$tmp/last.out"; fi
  # run-one by --id and --index, as an array task would, with the Slurm variables set
  SLURM_JOB_ID=41 SLURM_ARRAY_JOB_ID=40 SLURM_ARRAY_TASK_ID=1 SLURMD_NODENAME=n7 \
    expect_rc 0 "run-one --id (as Slurm array task 1)" python3 "$nightly" run-one --matrix "$tmp/matrix.json" --bin "$tmp/fake-qdrop-gpu" --out "$tmp/ro" --id resnet20_cifar10/w4a4/nearest
  FAKE_FAIL=qdrop expect_rc 3 "run-one --index 0 of a failing engine: exit 3" python3 "$nightly" run-one --matrix "$tmp/matrix.json" --bin "$tmp/fake-qdrop-gpu" --out "$tmp/ro" --index 0
  expect_rc 2 "run-one --index out of range" python3 "$nightly" run-one --matrix "$tmp/matrix.json" --bin "$tmp/fake-qdrop-gpu" --out "$tmp/ro" --index 5
  expect_rc 2 "run-one --id unknown" python3 "$nightly" run-one --matrix "$tmp/matrix.json" --bin "$tmp/fake-qdrop-gpu" --out "$tmp/ro" --id nope/w4a4/qdrop
  pycheck "run-one meta.json records the Slurm element" "
import json
m = json.load(open('$tmp/ro/runs/resnet20_cifar10_w4a4_nearest/meta.json'))
assert m['exit_code'] == 0 and 'error' not in m, m
assert m['scheduler'] == {'kind': 'slurm', 'job': '41', 'array_job': '40', 'array_task': '1', 'node': 'n7',
                          'partition': None, 'gpus': None}, m['scheduler']
assert 24 <= m['peak_rss_mb'] < 130, m['peak_rss_mb']
f = json.load(open('$tmp/ro/runs/resnet20_cifar10_w4a4_qdrop/meta.json'))
assert f['error'] == 'exit code 70', f
"

  # ---------------------------------------------------------------- Kubernetes manifest
  expect_rc 0 "k8s manifest generated" python3 "$nightly" k8s --matrix "$tmp/matrix.json" --name qdn-test --namespace bench \
    --image registry.example/qdrop-gpu:1.0 --results-mount "$tmp/k8s-runs" --parallelism 2 --models-pvc models --node-selector gpu=h100 -o "$tmp/k8s.yaml"
  expect_rc 0 "kubernetes-validate --strict (schema of Kubernetes 1.37, bundled)" python3 -m kubernetes_validate --strict --quiet "$tmp/k8s.yaml"
  expect_rc 0 "kubernetes-validate --strict (schema of Kubernetes 1.30, bundled)" python3 -m kubernetes_validate --strict --quiet -k 1.30.0 "$tmp/k8s.yaml"
  pycheck "k8s: Indexed Job, one GPU per pod, index -> matrix element, summary Job" "
import json, yaml
d = list(yaml.safe_load_all(open('$tmp/k8s.yaml')))
assert [x['kind'] for x in d] == ['ConfigMap', 'Job', 'Job'], [x['kind'] for x in d]
cm, job, summ = d
sp = job['spec']
assert sp['completionMode'] == 'Indexed' and sp['completions'] == 5 and sp['parallelism'] == 2, sp
assert sp['backoffLimitPerIndex'] == 0 and job['metadata']['namespace'] == 'bench'
pod = sp['template']['spec']
c = pod['containers'][0]
assert c['image'] == 'registry.example/qdrop-gpu:1.0' and c['workingDir'] == '/work'
assert c['resources']['limits'] == {'nvidia.com/gpu': 1}, c['resources']
assert pod['restartPolicy'] == 'Never' and pod['nodeSelector'] == {'gpu': 'h100'}
assert {'name': 'models', 'persistentVolumeClaim': {'claimName': 'models', 'readOnly': True}} in pod['volumes']
assert json.loads(cm['data']['matrix.json']) == json.load(open('$tmp/matrix.json'))
assert cm['data']['nightly.py'] == open('$src/bench/nightly.py').read()
sc = summ['spec']['template']['spec']['containers'][0]['command']
assert sc[:5] == ['python3', '/opt/nightly/nightly.py', 'run', '--no-run', '--wait-for-runs'], sc
assert sc[sc.index('--out') + 1] == '$tmp/k8s-runs/qdn-test', sc
open('$tmp/pod.sh', 'w').write(c['command'][2])
import os
os.makedirs('$tmp/opt', exist_ok=True)
for k, v in cm['data'].items():
    open('$tmp/opt/' + k, 'w').write(v)
open('$tmp/summary.cmd', 'w').write('\n'.join(sc))
"
  python3 - "$tmp/k8s.yaml" "$tmp/k8s-bad.yaml" <<'PY'
import json, sys, yaml
d = list(yaml.safe_load_all(open(sys.argv[1])))
d[1]["spec"]["completionMode"] = 7            # wrong type
d[1]["spec"]["template"]["spec"]["containers"][0]["resource"] = {}   # misspelt key
open(sys.argv[2], "w").write("".join("---\n" + json.dumps(x) + "\n" for x in d))
PY
  expect_rc 1 "kubernetes-validate rejects a broken copy" python3 -m kubernetes_validate --strict --quiet "$tmp/k8s-bad.yaml"
  if grep -q "completionMode" "$tmp/last.out"; then ok "the rejection names completionMode"; else bad "the rejection does not name completionMode"; fi
  # the pods' program, run here: index i -> element i, with the fake engine as qdrop-gpu on PATH
  mkdir -p "$tmp/pbin"
  cp "$tmp/fake-qdrop-gpu" "$tmp/pbin/qdrop-gpu"
  pids=""
  for i in 0 1 2 3 4; do
    (PATH="$tmp/pbin:$PATH" JOB_COMPLETION_INDEX=$i FAKE_SLEEP_S=1.0 FAKE_FAIL=nearest NODE_NAME=node$i sh "$tmp/pod.sh" >"$tmp/pod$i.out" 2>&1; echo $? >"$tmp/pod$i.rc") &
    pids="$pids $!"
  done
  # shellcheck disable=SC2086
  wait $pids
  pycheck "k8s pods: exit codes, meta.json per element (exit code, peak RSS, index)" "
import json
rc = [int(open('$tmp/pod%d.rc' % i).read()) for i in range(5)]
assert rc == [0, 70, 0, 70, 0], rc
ids = ['resnet20_cifar10/w4a4/qdrop', 'resnet20_cifar10/w4a4/nearest', 'resnet20_cifar10/w2a4/qdrop',
       'resnet20_cifar10/w2a4/nearest', 'resnet20_cifar10@cuda/w4a4/qdrop']
for i, rid in enumerate(ids):
    m = json.load(open('$tmp/k8s-runs/qdn-test/runs/' + rid.replace('/', '_').replace('@', '-') + '/meta.json'))
    assert m['id'] == rid and m['exit_code'] == rc[i] and m['scheduler'] == {'kind': 'kubernetes', 'index': str(i), 'node': 'node%d' % i}, m
    assert ('error' in m) == (rc[i] != 0), m
    if rc[i] == 0:
        assert 100 <= m['peak_rss_mb'] < 300, m   # fake qdrop holds 160 MB; sampled every 0.2 s
"
  JOB_COMPLETION_INDEX=9 expect_rc 2 "k8s pod with an index outside the matrix: exit 2" sh "$tmp/pod.sh"
  mapfile -t scmd <"$tmp/summary.cmd"
  scmd[1]="$tmp/opt/nightly.py"
  for i in "${!scmd[@]}"; do [[ "${scmd[$i]}" == /opt/nightly/matrix.json ]] && scmd[i]="$tmp/opt/matrix.json"; done
  expect_rc 3 "k8s summary command (from the ConfigMap's files): two failed runs -> exit 3" "${scmd[@]}" --no-plots
  pycheck "k8s summary: metrics of the 3 good runs, failures and scheduler in summary.md" "
import json
e = {x['name']: x['value'] for x in json.load(open('$tmp/k8s-runs/qdn-test/benchmark.json'))}
assert e['resnet20_cifar10/w2a4/qdrop/top1'] == 78.0 and e['resnet20_cifar10@cuda/w4a4/qdrop/top1'] == 88.0, e
assert 'resnet20_cifar10/w4a4/nearest/top1' not in e
s = open('$tmp/k8s-runs/qdn-test/summary.md').read()
assert '- scheduler: kubernetes, 5 of 5 runs on node0, node1, node2, node3, node4' in s, s
assert s.count('FAILED: exit code 70') == 2, s
"
  rm -f "$tmp/k8s-runs/qdn-test/runs/resnet20_cifar10_w2a4_qdrop/meta.json"
  expect_rc 3 "--wait-for-runs gives up after its timeout and reports the missing run" python3 "$tmp/opt/nightly.py" run --no-run \
    --wait-for-runs 1 --matrix "$tmp/opt/matrix.json" --bin qdrop-gpu --out "$tmp/k8s-runs/qdn-test" --no-plots
  if grep -q "gave up waiting after 1 s for: resnet20_cifar10/w2a4/qdrop" "$tmp/last.out"; then ok "the missing run is named"; else bad "the missing run is not named"; fi
  expect_rc 2 "k8s: a bad --name is a usage error" python3 "$nightly" k8s --matrix "$tmp/matrix.json" --name Bad_Name
  expect_rc 0 "k8s --cpu-only for the shipped CI matrix" python3 "$nightly" k8s --cpu-only --matrix "$src/bench/nightly_matrix_ci.json" --name ci -o "$tmp/ci.yaml"
  pycheck "k8s --cpu-only: no GPU limit or toleration" "
import yaml
d = list(yaml.safe_load_all(open('$tmp/ci.yaml')))
pod = d[1]['spec']['template']['spec']
assert 'limits' not in pod['containers'][0]['resources'] and 'tolerations' not in pod, pod
assert d[1]['spec']['completions'] == 2
"
  expect_rc 0 "kubernetes-validate --strict the CPU manifest" python3 -m kubernetes_validate --strict --quiet "$tmp/ci.yaml"
  expect_rc 0 "k8s manifest of the shipped full matrix (65 runs)" python3 "$nightly" k8s --matrix "$src/bench/nightly_matrix_full.json" --name full -o "$tmp/full.yaml"
  expect_rc 0 "kubernetes-validate --strict the full manifest" python3 -m kubernetes_validate --strict --quiet "$tmp/full.yaml"

  # ---------------------------------------------------------------- GitHub Actions workflow
  wf="$src/.github/workflows/nightly.yml"
  pycheck "workflow: schedule, self-hosted GPU runner, the same script, both benchmark files" "
import yaml
w = yaml.safe_load(open('$wf'))
on = w.get('on', w.get(True))   # YAML 1.1 reads the bare key on as true
assert on['schedule'][0]['cron'].split()[2:] == ['*', '*', '*'], on   # every night
assert 'workflow_dispatch' in on
job = w['jobs']['nightly']
assert 'self-hosted' in job['runs-on'] and 'gpu' in job['runs-on'], job['runs-on']
steps = job['steps']
runs = '\n'.join(s.get('run', '') for s in steps)
assert 'bench/nightly.sh --matrix' in runs and 'bench/nightly.sh slurm' in runs, runs
assert 'scripts/install_deps.sh' in runs and 'scripts/build.sh' in runs
bench = [s for s in steps if s.get('uses', '').startswith('benchmark-action/github-action-benchmark@')]
got = {s['with']['tool']: s['with']['output-file-path'] for s in bench}
assert got == {'customBiggerIsBetter': 'nightly/benchmark_bigger.json',
               'customSmallerIsBetter': 'nightly/benchmark_smaller.json'}, got
assert any(s.get('uses', '').startswith('actions/upload-artifact@') for s in steps)
assert steps[-1]['run'].startswith('exit'), steps[-1]
"
  expect_rc 0 "workflow validates against SchemaStore's github-workflow schema (check-jsonschema, offline)" \
    python3 -m check_jsonschema --builtin-schema vendor.github-workflows "$wf"
  printf 'on: {schedule: [{cron: 1}]}\njobs: {nightly: {steps: []}}\n' >"$tmp/bad.yml"
  expect_rc 1 "... and that schema rejects a broken workflow" python3 -m check_jsonschema --builtin-schema vendor.github-workflows "$tmp/bad.yml"
  if command -v actionlint >/dev/null 2>&1; then
    (cd "$src" && expect_rc 0 "actionlint .github/workflows/nightly.yml" actionlint .github/workflows/nightly.yml)
  else
    echo "note: actionlint not installed: the schema check above is the lint"
  fi
  # the files the workflow uploads are github-action-benchmark's custom format
  out="$tmp/gab"
  expect_rc 0 "summariser run for the benchmark files" python3 "$nightly" run --matrix "$tmp/matrix.json" --only w4a4 --bin "$tmp/fake-qdrop-gpu" --out "$out" --no-plots
  pycheck "benchmark_bigger/smaller.json: lists of {name, unit, value[, extra]}, % only in bigger" "
import json, math
for f, units in (('benchmark_bigger.json', {'%'}), ('benchmark_smaller.json', {'s', 'MB'})):
    e = json.load(open('$out/' + f))
    assert isinstance(e, list) and e, f
    for x in e:
        assert set(x) <= {'name', 'unit', 'value', 'range', 'extra'} and {'name', 'unit', 'value'} <= set(x), x
        assert isinstance(x['name'], str) and isinstance(x['value'], (int, float)) and math.isfinite(x['value']), x
        assert x['unit'] in units, (f, x)
    assert len({x['name'] for x in e}) == len(e), 'duplicate names in ' + f
"
  finish
fi

if [[ "$mode" == slurm ]]; then
  limit="${QD_SLURM_TIMEOUT_S:-180}"
  t_start=$(date +%s)
  bin="${QD_BIN:-}"
  if [[ -z "$bin" || ! -x "$bin" ]]; then
    echo "skip: qdrop-gpu binary not built (QD_BIN=$bin)"
    exit 77
  fi
  if [[ "$(id -u)" != 0 ]]; then
    echo "skip: the local Slurm cluster needs root (slurmd runs jobs as their user)"
    exit 77
  fi
  for t in munged slurmctld slurmd sbatch squeue sinfo scontrol; do
    command -v "$t" >/dev/null 2>&1 || missing "$t" "Debian packages slurm-wlm and munge"
  done
  # ---------------------------------------------------------------- the cluster
  c="$tmp/cluster"
  mkdir -p "$c/munge" "$c/state" "$c/spool" "$c/log"
  chmod 755 "$tmp" "$c"   # munged refuses sockets in directories others cannot traverse
  chmod 700 "$c/munge"
  head -c 1024 /dev/urandom >"$c/munge/munge.key"
  chmod 400 "$c/munge/munge.key"
  read -r p_ctl p_d < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s:
    x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
  export SLURM_CONF="$c/slurm.conf"
  cat >"$SLURM_CONF" <<EOF
# single-node test cluster of tests/nightly_sched_test.sh (torn down at the end of the test)
ClusterName=qdtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$p_ctl
SlurmdPort=$p_d
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$c/munge/munged.sock
StateSaveLocation=$c/state
SlurmdSpoolDir=$c/spool
SlurmctldPidFile=$c/slurmctld.pid
SlurmdPidFile=$c/slurmd.pid
SlurmctldLogFile=$c/log/slurmctld.log
SlurmdLogFile=$c/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=1024 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=30 State=UP
EOF
  # Stop everything this test started, on every exit: cancel this cluster's jobs, stop the daemons
  # by their pid files, then kill any job step daemon (slurmstepd) still working in this cluster's
  # directory (they run with their working directory there).
  stop_cluster() {
    scancel --user="$(id -un)" >/dev/null 2>&1 && sleep 1
    scontrol shutdown >/dev/null 2>&1
    for f in "$c/slurmd.pid" "$c/slurmctld.pid" "$c/munge/munged.pid"; do
      if [[ -s "$f" ]]; then kill "$(cat "$f")" 2>/dev/null; fi
    done
    sleep 1
    for f in "$c/slurmd.pid" "$c/slurmctld.pid" "$c/munge/munged.pid"; do
      if [[ -s "$f" ]]; then kill -KILL "$(cat "$f")" 2>/dev/null; fi
    done
    local p
    for p in $(pgrep -x slurmstepd); do
      case "$(readlink "/proc/$p/cwd" 2>/dev/null)" in "$c"/* | "$c") kill -KILL "$p" 2>/dev/null ;; esac
    done
  }
  cleanup_extra=stop_cluster
  munged -f -S "$c/munge/munged.sock" --key-file="$c/munge/munge.key" --pid-file="$c/munge/munged.pid" \
    --log-file="$c/log/munged.log" --seed-file="$c/munge/munged.seed" || { bad "munged did not start"; cat "$c/log/munged.log"; finish; }
  slurmctld -f "$SLURM_CONF" || { bad "slurmctld did not start"; cat "$c/log/slurmctld.log"; finish; }
  slurmd -f "$SLURM_CONF" -N localhost || { bad "slurmd did not start"; cat "$c/log/slurmd.log"; finish; }
  up=0
  for _ in $(seq 1 60); do
    if [[ "$(sinfo -h -o %T 2>/dev/null)" == idle ]]; then up=1; break; fi
    sleep 0.5
  done
  if [[ "$up" != 1 ]]; then
    bad "the node did not come up idle in 30 s: $(sinfo 2>&1)"
    tail -n 20 "$c/log/slurmctld.log" "$c/log/slurmd.log"
    finish
  fi
  ok "single-node cluster up ($(sinfo -h -o '%P %D %T %c CPUs'), ports $p_ctl/$p_d) in $(($(date +%s) - t_start)) s"

  # ---------------------------------------------------------------- a tiny matrix
  python3 - "$src" "$tmp" <<'PY'
import json, os, sys
src, tmp = sys.argv[1:]
cfg = {"model": {"path": os.path.join(src, "tests/bad_inputs/catalogue/tiny_cnn32.onnx"), "type": "onnx"},
       "data": {"calib_path": os.path.join(src, "assets/cifar10/train-calib"),
                "val_path": os.path.join(src, "assets/cifar10/test"), "preprocess": "cifar"},
       "quant": {"w_qconfig": {"bit": 4}, "a_qconfig": {"bit": 4}, "calibrate": 64, "act_calib_samples": 32,
                 "mode": "qdrop", "recon": {"iters": 5, "batch_size": 8, "log_every": 5}},
       "process": {"seed": 1005, "threads": 1}, "device": {"type": "cpu"},
       "eval": {"enabled": True, "max_images": 100}, "output": {"export_onnx": False, "plots": False}}
json.dump(cfg, open(os.path.join(tmp, "tiny.json"), "w"), indent=1)
# two good elements, and one whose run fails (an unknown mode): the summary job must still run
# (afterany) and report it
m = {"name": "slurm-test", "default_device": "cpu", "timeout_s": 90,
     "groups": [{"model": "tiny", "config": os.path.join(tmp, "tiny.json"), "bits": ["w4a4"],
                 "modes": ["qdrop", "nearest"]},
                {"model": "tinybad", "config": os.path.join(tmp, "tiny.json"), "bits": ["w4a4"],
                 "modes": ["nosuchmode"]}]}
json.dump(m, open(os.path.join(tmp, "matrix.json"), "w"), indent=1)
PY
  left=$((limit - ($(date +%s) - t_start) - 10))
  t0=$(date +%s)
  timeout "$left" bash "$src/bench/nightly.sh" slurm --matrix "$tmp/matrix.json" --bin "$bin" --out "$tmp/out" \
    --partition debug --cpu-only --cpus-per-task 1 --summary-time 00:05:00 --wait >"$tmp/sl.out" 2>&1
  rc=$?
  sed 's/^/    /' "$tmp/sl.out" | tail -n 30
  if [[ "$rc" == 3 ]]; then
    ok "bench/nightly.sh slurm --wait: array + summary done in $(($(date +%s) - t0)) s, exit 3 (the bad element failed)"
  else
    bad "bench/nightly.sh slurm --wait: exit $rc, want 3 (124 = timed out after $left s)"
    squeue 2>&1 | tail -5
    tail -n 20 "$c/log/slurmctld.log" "$tmp"/out/slurm/*.log 2>/dev/null
  fi
  pycheck "every element ran as a task of one array, the summary job after it" "
import json, os
out = '$tmp/out'
jobs = json.load(open(out + '/slurm/jobs.json'))
aj, sj = jobs['array_job'], jobs['summary_job']
assert aj.isdigit() and sj.isdigit() and int(sj) > int(aj), jobs
assert jobs['runs'] == ['tiny/w4a4/qdrop', 'tiny/w4a4/nearest', 'tinybad/w4a4/nosuchmode'], jobs
tasks = {}
for rid in jobs['runs']:
    m = json.load(open(out + '/runs/' + rid.replace('/', '_') + '/meta.json'))
    s = m['scheduler']
    assert s['kind'] == 'slurm' and s['array_job'] == aj and s['node'] == 'localhost' and s['partition'] == 'debug', s
    tasks[rid] = s['array_task']
    assert os.path.exists(out + '/slurm/element-%s_%s.log' % (aj, s['array_task'])), s
assert sorted(tasks.values()) == ['0', '1', '2'], tasks
assert os.path.exists(out + '/slurm/summary-%s.log' % sj)
print('array job', aj, 'tasks', tasks, 'summary job', sj)
"
  pycheck "summarised: real results of the good runs, the bad one FAILED" "
import json
out = '$tmp/out'
e = {x['name']: x['value'] for x in json.load(open(out + '/benchmark.json'))}
for m in ('qdrop', 'nearest'):
    for k in ('top1', 'top5', 'fp32_top1', 'total_s', 'peak_rss_mb'):
        assert 'tiny/w4a4/%s/%s' % (m, k) in e, (m, k, sorted(e))
    r = json.load(open(out + '/runs/tiny_w4a4_%s/results.json' % m))
    assert r['mode'] == m and r['accuracy']['images'] == 100, r['accuracy']
    assert e['tiny/w4a4/%s/top1' % m] == r['accuracy']['quant_top1']
assert e['tiny/w4a4/qdrop/recon_s'] > 0 and 5 < e['tiny/w4a4/qdrop/peak_rss_mb'] < 4096, e
assert not any(n.startswith('tinybad/') for n in e), e
s = open(out + '/summary.md').read()
assert '| \`tinybad/w4a4/nosuchmode\` |' in s and 'FAILED: exit code' in s, s
assert '- scheduler: slurm job %s, 3 of 3 runs on localhost' % json.load(open(out + '/slurm/jobs.json'))['array_job'] in s, s
print({k: v for k, v in e.items() if k.endswith('top1') or k.endswith('total_s')})
"
  q=$(squeue -h 2>&1)
  if [[ -z "$q" ]]; then ok "queue empty after --wait"; else bad "jobs still queued: $q"; fi
  stop_cluster
  cleanup_extra=""
  sleep 0.5
  alive=""
  for f in "$c/slurmd.pid" "$c/slurmctld.pid" "$c/munge/munged.pid"; do
    if [[ -s "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null; then alive="$alive $(basename "$f")"; fi
  done
  if [[ -z "$alive" ]]; then ok "cluster stopped"; else bad "still running:$alive"; fi
  echo "slurm test took $(($(date +%s) - t_start)) s"
  finish
fi
echo "usage: nightly_sched_test.sh unit|slurm" >&2
exit 2
