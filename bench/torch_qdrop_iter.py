"""PyTorch-eager baseline for bench/bench_recon_cpu.sh: QDrop iterations/s of CIFAR ResNet-20
BasicBlock units (16ch 32x32, 32ch 16x16, 64ch 8x8) at batch 32 on the CPU, same thread count.
Prints one JSON line per unit type, including peak RSS."""
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
from qdrop_torch_ref import BasicBlockUnit, make_optimizers, qdrop_iteration  # noqa: E402

threads = int(os.environ.get("QD_BENCH_THREADS", "2"))
iters = int(os.environ.get("QD_BENCH_ITERS", "100"))
repeat = max(1, int(os.environ.get("QD_BENCH_REPEAT", "1")))  # best of `repeat` timed loops
torch.set_num_threads(threads)
torch.manual_seed(1005)

# The machine's practical FP32 limit on these cores: a large SGEMM (torch's BLAS), same threads.
# bench_recon_cpu.py sets the unit's required convolution FLOPs against it.
def sgemm_gflops(n=2048):
    a_m, b_m = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a_m, b_m)
    best = float("inf")
    for _ in range(3 * repeat):
        t0 = time.perf_counter()
        torch.mm(a_m, b_m)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


print(json.dumps({"impl": "sgemm_peak", "threads": threads, "n": 2048, "gflops": sgemm_gflops()}))
sys.stdout.flush()
for c, hw in ((16, 32), (32, 16), (64, 8)):
    unit = BasicBlockUnit(c)
    n = 1024
    fpin = torch.randn(n, c, hw, hw).relu()
    qin = fpin + 0.01 * torch.randn_like(fpin)
    with torch.no_grad():
        fpout = unit.forward_fp(fpin)
    opt_v, opt_s, sched = make_optimizers(unit, 20000)
    def step(cnt):
        idx = torch.randint(0, n, (32,))
        keep_in = torch.rand(32, c, hw, hw) < 0.5
        keep1 = torch.rand(32, c, hw, hw) < 0.5
        keep2 = torch.rand(32, c, hw, hw) < 0.5
        qdrop_iteration(unit, cnt, 20000, qin, fpin, fpout, idx, keep_in, keep1, keep2, opt_v, opt_s, sched)
    for i in range(5):
        step(i + 1)
    dt = float("inf")
    for r in range(repeat):
        t0 = time.perf_counter()
        for i in range(iters):
            step(4001 + i)  # regulariser active, as in 80% of a real run
        dt = min(dt, time.perf_counter() - t0)
    # The hardware-side bound: the unit's two 3x3 convolutions alone (forward, input gradient,
    # weight gradient; oneDNN through torch), same batch, no quantization or optimiser work.
    # No implementation built on convolutions this fast can beat (iteration / conv_only).
    xc = torch.randn(32, c, hw, hw, requires_grad=True)
    w1 = torch.randn(c, c, 3, 3, requires_grad=True)
    w2 = torch.randn(c, c, 3, 3, requires_grad=True)
    g = torch.randn(32, c, hw, hw)
    def convs():
        y = torch.nn.functional.conv2d(torch.nn.functional.conv2d(xc, w1, padding=1), w2, padding=1)
        torch.autograd.grad(y, [xc, w1, w2], grad_outputs=g)
    for i in range(3):
        convs()
    conv_s = float("inf")
    for r in range(repeat):
        t1 = time.perf_counter()
        for i in range(iters):
            convs()
        conv_s = min(conv_s, (time.perf_counter() - t1) / iters)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"impl": "pytorch_eager", "torch": torch.__version__, "unit": f"basicblock_c{c}_hw{hw}",
                      "batch": 32, "threads": threads, "iters": iters, "it_per_s": iters / dt, "peak_rss_mb": rss,
                      "iter_ms": 1000.0 * dt / iters, "conv_only_ms": 1000.0 * conv_s,
                      "bound_ratio": (dt / iters) / conv_s}))
    sys.stdout.flush()
