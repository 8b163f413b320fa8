"""PyTorch-eager reference of one QDrop reconstruction unit, written from docs/algorithm.md (Q2 flow):
AdaRound soft weights (§4), LSQ activation quantizers with Q2's grad scale (§6.3), QDrop
element-wise drop of activation quantization and unit-input mixing (§7), loss §5, Adam on V
(lr 1e-3) and on scales (lr 4e-5, cosine) with the β/warm-up schedule (§4).

Used by bench/bench_recon_cpu.sh (speed baseline, same thread count) and by
tools/make_golden.py (one-iteration golden fixture with masks/batches drawn by tools/qd_philox.py,
so the C engine sees the same randomness)."""
import math

import torch
import torch.nn.functional as F

GAMMA, ZETA = -0.1, 1.1


def clamp_incl(x, lo, hi):
    """Clamp whose gradient passes at the bounds, as the reference's PyTorch did (docs/algorithm.md §2).
    PyTorch >= 2.x zeroes the gradient of torch.clamp with scalar bounds exactly at the bounds."""
    return torch.where((x >= lo) & (x <= hi), x, torch.clamp(x, lo, hi).detach())


def round_ste(x):
    return (x.round() - x).detach() + x


def grad_scale(t, factor):
    return (t - t * factor).detach() + t * factor


def lsq_fake_quant(x, scale, zp, qmin, qmax, grad_factor):
    s = grad_scale(scale, grad_factor)
    q = clamp_incl(round_ste(x / s) + zp, qmin, qmax)
    return (q - zp) * s


class ActQuant:
    def __init__(self, scale, zp, bits):
        self.scale = torch.nn.Parameter(torch.tensor(float(scale)))
        self.zp = float(zp)
        self.qmin, self.qmax = 0.0, float(2 ** bits - 1)

    def __call__(self, x, keep=None, grad_scale_on=True):
        s = self.scale.abs().clamp_min(1.1920929e-07)  # Q2 guard
        factor = 1.0 / math.sqrt(x.numel() * self.qmax) if grad_scale_on else 1.0
        y = lsq_fake_quant(x, s, self.zp, self.qmin, self.qmax, factor)
        if keep is None:
            return y
        return torch.where(keep, y, x)


class AdaRoundWeight:
    def __init__(self, w, scale, zp, bits):
        self.w = w.detach()
        shape = [-1] + [1] * (w.dim() - 1)
        self.s = scale.reshape(shape)
        self.z = zp.reshape(shape)
        self.qmin, self.qmax = 0.0, float(2 ** bits - 1)
        ws = self.w / self.s
        rest = ws - torch.floor(ws)
        self.V = torch.nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))

    def h(self):
        return clamp_incl(torch.sigmoid(self.V) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)

    def soft(self):
        x = torch.floor(self.w / self.s) + self.h() + self.z
        return (clamp_incl(x, self.qmin, self.qmax) - self.z) * self.s

    def reg(self, beta):
        return (1 - (2 * self.h() - 1).abs().pow(beta)).sum()


def beta_at(c, total, warm, b_start=20.0, b_end=2.0):
    tw = int(warm * total)
    if c < tw:
        return b_start
    return b_end + (b_start - b_end) * max(0.0, 1 - (c - tw) / (total - tw))


class BasicBlockUnit:
    """conv1+relu -> q1 -> conv2 -> +shortcut -> relu -> q_out (CIFAR BasicBlock, identity shortcut)."""

    def __init__(self, c, wbits=4, abits=4, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.randn(c, c, 3, 3, generator=g) * math.sqrt(2.0 / (9 * c))
        self.b1 = torch.randn(c, generator=g) * 0.1
        self.w2 = torch.randn(c, c, 3, 3, generator=g) * math.sqrt(2.0 / (9 * c))
        self.b2 = torch.randn(c, generator=g) * 0.1
        qmax = 2 ** wbits - 1
        self.ada = []
        for w in (self.w1, self.w2):
            flat = w.reshape(w.shape[0], -1)
            lo = torch.clamp(flat.min(1).values, max=0)
            hi = torch.clamp(flat.max(1).values, min=0)
            s = torch.clamp((hi - lo) / qmax, min=1e-8)
            z = torch.clamp(0 - torch.round(lo / s), 0, qmax)
            self.ada.append(AdaRoundWeight(w, s, z, wbits))
        self.q1 = ActQuant(0.05, 0, abits)
        self.q2 = ActQuant(0.08, 0, abits)

    def forward_fp(self, x):
        y = F.relu(F.conv2d(x, self.w1, self.b1, padding=1))
        return F.relu(F.conv2d(y, self.w2, self.b2, padding=1) + x)

    def forward_q(self, x, keep1=None, keep2=None):
        y = F.relu(F.conv2d(x, self.ada[0].soft(), self.b1, padding=1))
        y = self.q1(y, keep1)
        y = F.relu(F.conv2d(y, self.ada[1].soft(), self.b2, padding=1) + x)
        return self.q2(y, keep2)

    def params_v(self):
        return [a.V for a in self.ada]

    def params_s(self):
        return [self.q1.scale, self.q2.scale]

    def reg(self, beta):
        return sum(a.reg(beta) for a in self.ada)


def make_optimizers(unit, iters, scale_lr=4e-5):
    opt_v = torch.optim.Adam(unit.params_v())
    opt_s = torch.optim.Adam(unit.params_s(), lr=scale_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt_s, T_max=iters, eta_min=0.0)
    return opt_v, opt_s, sched


def qdrop_iteration(unit, c, iters, qin, fpin, fpout, idx, keep_in, keep1, keep2, opt_v, opt_s, sched,
                    lam=0.01, warm=0.2):
    """One iteration with 1-based counter c; masks are boolean tensors (True = keep quantization)."""
    x = torch.where(keep_in, qin[idx], fpin[idx])
    out = unit.forward_q(x, keep1, keep2)
    tgt = fpout[idx]
    rec = (out - tgt).pow(2).sum(1).mean()
    beta = beta_at(c, iters, warm)
    reg = unit.reg(beta) * lam if c >= int(warm * iters) else torch.zeros(())
    loss = rec + reg
    opt_v.zero_grad()
    opt_s.zero_grad()
    loss.backward()
    opt_v.step()
    opt_s.step()
    sched.step()
    return float(rec), float(reg)
