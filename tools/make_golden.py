#!/usr/bin/env python3
"""tools/make_golden.py: PyTorch golden fixtures for tests/unit/test_golden_quant.c.

Writes small float32 tensors to tests/golden/quant_*.bin (committed; CI reads them without torch)
plus tests/golden/quant_golden.json (torch version, command, tensor list).

File format (little endian): int32 header {magic 0x51444731 'QDG1', version 1, ndim, dims[4]}
followed by prod(dims) float32 values.

Cases (numerics from docs/algorithm.md):
  fqA/fqB  fake-quant forward (torch.round = ties-to-even, checked against
           torch.fake_quantize_per_tensor_affine) and its backward by autograd: STE on round,
           clamp passes the gradient at equality, Q2's grad_scale trick on s (§2, §6.3).
  ar       AdaRound (§4): init V, soft and hard weights, regulariser and dV of
           sum(soft * dy) + lambda * sum(1 - |2h-1|^beta) by autograd (Q2's AdaRoundFakeQuantize maths).
  adam     two steps of torch.optim.Adam (PyTorch defaults, lr 1e-2).

Usage: python3 tools/make_golden.py [--out tests/golden]
"""
import argparse
import json
import math
import os
import struct
import sys

import torch

MAGIC = 0x51444731
GAMMA, ZETA = -0.1, 1.1


def clamp_ste(t, lo, hi):
    """clamp whose gradient passes at equality (lo <= t <= hi), as in the PyTorch releases the
    reference ran on (spec §2). Recent torch.clamp gives 0 gradient at the bounds, so the
    fixtures do not rely on it."""
    inside = (t >= lo) & (t <= hi)
    return torch.where(inside, t, torch.clamp(t, lo, hi).detach())


def write(outdir, name, t, manifest):
    t = t.detach().to(torch.float32).contiguous()
    dims = list(t.shape) if t.dim() > 0 else [1]
    if len(dims) > 4:
        raise ValueError(name)
    path = os.path.join(outdir, f"quant_{name}.bin")
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", MAGIC, 1, len(dims), *(dims + [1] * (4 - len(dims)))))
        f.write(t.numpy().astype("<f4").tobytes())
    manifest.append({"name": name, "file": os.path.basename(path), "dims": dims})


def fake_quant_case(outdir, tag, x, s, z, qmin, qmax, dy, manifest):
    s_t = torch.tensor(s, dtype=torch.float32, requires_grad=True)
    x_t = x.clone().requires_grad_(True)
    g = 1.0 / math.sqrt(x.numel() * qmax)           # Q2 grad_scale (§6.3)
    s_g = (s_t - s_t * g).detach() + s_t * g
    v = x_t / s_g
    r = (torch.round(v) - v).detach() + v            # STE round (ties to even)
    q = clamp_ste(r + z, qmin, qmax)                 # gradient passes at equality (§2)
    y = (q - z) * s_g
    ref = torch.fake_quantize_per_tensor_affine(x, float(s), int(z), int(qmin), int(qmax))
    assert torch.equal(y.detach(), ref), f"{tag}: formula and torch.fake_quantize_per_tensor_affine differ"
    (y * dy).sum().backward()
    write(outdir, f"{tag}_params", torch.tensor([s, z, qmin, qmax]), manifest)
    write(outdir, f"{tag}_x", x, manifest)
    write(outdir, f"{tag}_dy", dy, manifest)
    write(outdir, f"{tag}_y", y, manifest)
    write(outdir, f"{tag}_dx", x_t.grad, manifest)
    write(outdir, f"{tag}_ds", s_t.grad.reshape(1), manifest)


def adaround_case(outdir, manifest, gen):
    O, I, K = 4, 3, 3
    qmin, qmax, beta, lam = 0.0, 15.0, 10.0, 0.01
    w = (torch.rand(O, I, K, K, generator=gen) - 0.5) * 0.6
    s = torch.rand(O, generator=gen) * 0.03 + 0.02
    z = torch.tensor([7.0, 3.0, 8.0, 0.0])
    sb, zb = s.view(O, 1, 1, 1), z.view(O, 1, 1, 1)
    ws = w / sb
    f = torch.floor(ws)
    rest = ws - f
    v_init = -torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1)
    V = (v_init + torch.randn(O, I, K, K, generator=gen) * 1.5).requires_grad_(True)

    def h_of(V):
        return clamp_ste(torch.sigmoid(V) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)

    h = h_of(V)
    soft = (clamp_ste(f + h + zb, qmin, qmax) - zb) * sb
    hard = (torch.clamp(f + (V >= 0).float() + zb, qmin, qmax) - zb) * sb
    reg = lam * (1 - (2 * h - 1).abs().pow(beta)).sum()
    dy = torch.rand(O, I, K, K, generator=gen) * 2 - 1
    ((soft * dy).sum() + reg).backward()
    write(outdir, "ar_params", torch.tensor([qmin, qmax, beta, lam]), manifest)
    write(outdir, "ar_w", w, manifest)
    write(outdir, "ar_s", s, manifest)
    write(outdir, "ar_z", z, manifest)
    write(outdir, "ar_vinit", v_init, manifest)
    write(outdir, "ar_v", V, manifest)
    write(outdir, "ar_soft", soft, manifest)
    write(outdir, "ar_hard", hard, manifest)
    write(outdir, "ar_dy", dy, manifest)
    write(outdir, "ar_reg", reg.reshape(1), manifest)
    write(outdir, "ar_dv", V.grad, manifest)


def adam_case(outdir, manifest, gen):
    p = torch.randn(16, generator=gen)
    g1 = torch.randn(16, generator=gen)
    g2 = torch.randn(16, generator=gen) * 0.1
    param = torch.nn.Parameter(p.clone())
    opt = torch.optim.Adam([param], lr=1e-2)
    out = []
    for g in (g1, g2):
        param.grad = g.clone()
        opt.step()
        out.append(param.detach().clone())
    write(outdir, "adam_p0", p, manifest)
    write(outdir, "adam_g1", g1, manifest)
    write(outdir, "adam_g2", g2, manifest)
    write(outdir, "adam_p1", out[0], manifest)
    write(outdir, "adam_p2", out[1], manifest)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    manifest = []
    # fqA: s = 0.25 (exact), includes exact ties x/s = k + 0.5 and both clamp sides
    ties = torch.tensor([0.625, 0.875, -0.375, -0.125, 0.125, 1.125, 2.875, 3.125, -0.875, 3.0, -0.75, 0.0])
    xa = torch.cat([ties, torch.rand(52, generator=gen) * 5.5 - 1.5])
    fake_quant_case(a.out, "fqA", xa, 0.25, 3.0, 0.0, 15.0, torch.rand(64, generator=gen) * 2 - 1, manifest)
    # fqB: a non-dyadic scale, 2-bit grid
    xb = torch.rand(2, 3, 4, 5, generator=gen) * 0.5 - 0.1
    fake_quant_case(a.out, "fqB", xb, 0.0731, 1.0, 0.0, 3.0, torch.rand(2, 3, 4, 5, generator=gen) * 2 - 1, manifest)
    adaround_case(a.out, manifest, gen)
    adam_case(a.out, manifest, gen)
    side = {"generator": "tools/make_golden.py", "command": " ".join(["python3"] + sys.argv),
            "torch": torch.__version__,
            "note": "clamp gradients use an explicit inclusive mask (spec §2); torch>=2.x clamp zeroes them at the bounds", "format": "int32 {0x51444731, 1, ndim, dims[4]} + float32 LE", "tensors": manifest}
    with open(os.path.join(a.out, "quant_golden.json"), "w") as f:
        json.dump(side, f, indent=1)
    print(f"wrote {len(manifest)} tensors to {a.out}")


if __name__ == "__main__":
    main()
