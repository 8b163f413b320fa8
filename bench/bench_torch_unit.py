#!/usr/bin/env python3
"""PyTorch-eager baseline on the GPU for bench/bench_gpu.c: the same reconstruction unit
(ResNet-18 BasicBlock, 64 channels, 56x56, identity shortcut, batch 32, W2A2 by default, QDrop
input mixing and drop masks, AdaRound + LSQ with Adam) iterated in PyTorch eager mode on the same
GPU, plus its convolutions alone (forward, input and weight gradients) through PyTorch/cuDNN.
bench/gpu_check.sh puts this beside bench_gpu's figure for the ratio (goal: >= 20x).

  python3 bench/bench_torch_unit.py [--iters N] [--wbits B] [--abits B] [--device cuda] [--out FILE]
  python3 bench/bench_torch_unit.py --dry     # tiny CPU run: checks the script (CI, no GPU)

The unit and one iteration are tools/qdrop_torch_ref.py's (the golden reference of the CPU
engine), so both sides do the same arithmetic. Timing: CUDA events around `iters` iterations
after 5 warm-up ones, one host read of the loss per iteration as eager training code does.
Prints (and writes with --out) one JSON object. Exit 0, 1 on error, 77 when torch or the device
is missing (1 instead with QD_REQUIRE_GPU=1).
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))


def move_unit(unit, dev):
    """Move every tensor of a qdrop_torch_ref unit to `dev`, keeping parameters leaf parameters."""
    import torch

    def mv(obj):
        for k, v in list(vars(obj).items()):
            if isinstance(v, torch.nn.Parameter):
                setattr(obj, k, torch.nn.Parameter(v.detach().to(dev)))
            elif isinstance(v, torch.Tensor):
                setattr(obj, k, v.to(dev))
    mv(unit)
    for a in unit.ada:
        mv(a)
    mv(unit.q1)
    mv(unit.q2)
    return unit


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--wbits", type=int, default=2)
    ap.add_argument("--abits", type=int, default=2)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--hw", type=int, default=56)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--ncal", type=int, default=1024)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=None)
    ap.add_argument("--dry", action="store_true", help="tiny run on the CPU (checks the script without a GPU)")
    a = ap.parse_args(argv)
    require = os.environ.get("QD_REQUIRE_GPU") == "1"
    try:
        import torch
        from qdrop_torch_ref import BasicBlockUnit, make_optimizers, qdrop_iteration
    except Exception as e:  # pragma: no cover - depends on the machine
        print(f"bench_torch_unit: skipped: {e}")
        return 1 if require else 77
    if a.dry:
        a.device, a.iters, a.channels, a.hw, a.batch, a.ncal = "cpu", 3, 8, 8, 4, 16
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("bench_torch_unit: skipped: torch sees no CUDA device")
        return 1 if require else 77
    torch.manual_seed(1005)
    c, hw, B, n = a.channels, a.hw, a.batch, a.ncal
    unit = move_unit(BasicBlockUnit(c, wbits=a.wbits, abits=a.abits), dev)
    fpin = torch.randn(n, c, hw, hw, device=dev).relu()
    qin = fpin + 0.01 * torch.randn_like(fpin)
    with torch.no_grad():
        fpout = unit.forward_fp(fpin)
    total = 20000
    opt_v, opt_s, sched = make_optimizers(unit, total)

    def step(cnt):
        idx = torch.randint(0, n, (B,), device=dev)
        keep_in = torch.rand(B, c, hw, hw, device=dev) < 0.5
        keep1 = torch.rand(B, c, hw, hw, device=dev) < 0.5
        keep2 = torch.rand(B, c, hw, hw, device=dev) < 0.5
        return qdrop_iteration(unit, cnt, total, qin, fpin, fpout, idx, keep_in, keep1, keep2, opt_v, opt_s, sched)

    def timed(fn, iters):
        if dev.type == "cuda":
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            e0.record()
            for i in range(iters):
                fn(i)
            e1.record()
            torch.cuda.synchronize()
            return e0.elapsed_time(e1) / iters
        t0 = time.perf_counter()
        for i in range(iters):
            fn(i)
        return 1e3 * (time.perf_counter() - t0) / iters

    for i in range(5):
        step(i + 1)
    # iterations past the warm-up (regulariser active), as in 80% of a real run
    iter_ms = timed(lambda i: step(4001 + i), a.iters)

    xc = torch.randn(B, c, hw, hw, device=dev, requires_grad=True)
    w1 = torch.randn(c, c, 3, 3, device=dev, requires_grad=True)
    w2 = torch.randn(c, c, 3, 3, device=dev, requires_grad=True)
    g = torch.randn(B, c, hw, hw, device=dev)
    F = torch.nn.functional

    def convs(_i):
        y = F.conv2d(F.conv2d(xc, w1, padding=1), w2, padding=1)
        torch.autograd.grad(y, [xc, w1, w2], grad_outputs=g)

    for i in range(3):
        convs(i)
    conv_ms = timed(convs, a.iters)
    peak_mb = torch.cuda.max_memory_allocated() / 1048576.0 if dev.type == "cuda" else 0.0
    rec = {
        "impl": "pytorch_eager",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
        "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
        "tf32_conv": bool(torch.backends.cudnn.allow_tf32) if dev.type == "cuda" else False,
        "unit": f"ResNet-18 BasicBlock {c}ch {hw}x{hw}",
        "batch": B, "w_bits": a.wbits, "a_bits": a.abits, "calibration_samples": n, "iters": a.iters,
        "iter_ms": iter_ms, "conv_only_ms": conv_ms, "iter_over_convs": iter_ms / conv_ms if conv_ms > 0 else None,
        "peak_device_memory_mb": peak_mb, "dry": bool(a.dry),
    }
    text = json.dumps(rec)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
