"""Golden fixture: complete QDrop training iterations of one BasicBlock unit, in PyTorch.

Writes tests/golden/iter_block.onnx (conv-relu-conv-add-relu block + GlobalAveragePool tail, so
the block output is not the network output) and tests/golden/iter_block.json with the
quantizer parameters, calibration inputs, and after each of ITERS iterations: the
reconstruction loss, the rounding loss, V of both layers and the learned scales. Batch indices
and drop masks come from tools/qd_philox.py, the same generator as the engine (unit 0, tensor j
= j-th activation quantizer of the unit in data-flow order), so the C test
(tests/unit/test_golden_iter.c) sees identical randomness.

Run: python3 tools/make_golden_iter.py   (needs torch, onnx; CI only reads the outputs)"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import qd_philox  # noqa: E402
from qdrop_torch_ref import ActQuant, AdaRoundWeight, beta_at  # noqa: E402

SEED = 1005
C, HW, NCAL, B = 4, 6, 16, 4
ITERS, TOTAL, WARM, LAM, SCALE_LR, KEEP = 3, 10, 0.2, 0.01, 4e-5, 0.5
WBITS, ABITS = 3, 3
out_dir = os.path.join(os.path.dirname(__file__), "..", "tests", "golden")

torch.manual_seed(0)
w1 = torch.randn(C, C, 3, 3) * 0.3
b1 = torch.randn(C) * 0.1
w2 = torch.randn(C, C, 3, 3) * 0.3
b2 = torch.randn(C) * 0.1
x_cal = torch.rand(NCAL, C, HW, HW) * 2.0


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(C, C, 3, padding=1)
        self.c2 = torch.nn.Conv2d(C, C, 3, padding=1)
        with torch.no_grad():
            self.c1.weight.copy_(w1); self.c1.bias.copy_(b1)
            self.c2.weight.copy_(w2); self.c2.bias.copy_(b2)

    def forward(self, x):
        y = F.relu(self.c1(x))
        y = F.relu(self.c2(y) + x)
        return F.adaptive_avg_pool2d(y, 1)


m = Block().eval()
torch.onnx.export(m, (x_cal[:2],), os.path.join(out_dir, "iter_block.onnx"), opset_version=13,
                  input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
                  dynamo=False)


def wqparams(w, bits):
    qmax = 2 ** bits - 1
    flat = w.reshape(w.shape[0], -1)
    lo = torch.clamp(flat.min(1).values, max=0)
    hi = torch.clamp(flat.max(1).values, min=0)
    s = torch.clamp((hi - lo) / qmax, min=1e-8)
    z = torch.clamp(0 - torch.round(lo / s), 0, qmax)
    return s, z


s1, z1 = wqparams(w1, WBITS)
s2, z2 = wqparams(w2, WBITS)
a1 = AdaRoundWeight(w1, s1, z1, WBITS)
a2 = AdaRoundWeight(w2, s2, z2, WBITS)
q1 = ActQuant(0.11, 0, ABITS)
q2 = ActQuant(0.23, 0, ABITS)
with torch.no_grad():
    fpout = F.relu(F.conv2d(F.relu(F.conv2d(x_cal, w1, b1, padding=1)), w2, b2, padding=1) + x_cal)

opt_v = torch.optim.Adam([a1.V, a2.V])
opt_s = torch.optim.Adam([q1.scale, q2.scale], lr=SCALE_LR)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt_s, T_max=TOTAL, eta_min=0.0)
n_el = B * C * HW * HW
trace = []
for c in range(1, ITERS + 1):
    idx = torch.from_numpy(qd_philox.draw_batch(SEED, 0, c, NCAL, B))
    k_in = torch.from_numpy(qd_philox.keep_mask(SEED, 0, qd_philox.T_INPUT, c, n_el, KEEP).reshape(B, C, HW, HW))
    k1 = torch.from_numpy(qd_philox.keep_mask(SEED, 0, 0, c, n_el, KEEP).reshape(B, C, HW, HW))
    k2 = torch.from_numpy(qd_philox.keep_mask(SEED, 0, 1, c, n_el, KEEP).reshape(B, C, HW, HW))
    x = torch.where(k_in, x_cal[idx], x_cal[idx])  # quant_in == fp_in for the first unit
    y = q1(F.relu(F.conv2d(x, a1.soft(), b1, padding=1)), k1)
    y = q2(F.relu(F.conv2d(y, a2.soft(), b2, padding=1) + x), k2)
    rec = (y - fpout[idx]).pow(2).sum(1).mean()
    beta = beta_at(c, TOTAL, WARM)
    reg = LAM * (a1.reg(beta) + a2.reg(beta)) if c >= int(WARM * TOTAL) else torch.zeros(())
    loss = rec + reg
    opt_v.zero_grad(); opt_s.zero_grad()
    loss.backward()
    opt_v.step(); opt_s.step(); sched.step()
    trace.append({"iter": c, "idx": idx.tolist(), "rec_loss": float(rec.detach()), "round_loss": float(reg.detach()),
                  "V1": a1.V.detach().flatten().tolist(), "V2": a2.V.detach().flatten().tolist(),
                  "scales": [float(q1.scale.detach()), float(q2.scale.detach())]})

fix = {"torch": torch.__version__, "command": "python3 tools/make_golden_iter.py", "seed": SEED, "C": C, "HW": HW,
       "ncal": NCAL, "batch": B, "iters": ITERS, "total_iters": TOTAL, "warm_up": WARM, "lambda": LAM,
       "scale_lr": SCALE_LR, "keep_prob": KEEP, "w_bits": WBITS, "a_bits": ABITS,
       "w_scale": [s1.tolist(), s2.tolist()], "w_zp": [z1.tolist(), z2.tolist()],
       "a_scale": [0.11, 0.23], "x_cal": x_cal.flatten().tolist(), "trace": trace}
with open(os.path.join(out_dir, "iter_block.json"), "w") as f:
    json.dump(fix, f)
print("wrote", os.path.join(out_dir, "iter_block.json"), [t["rec_loss"] for t in trace])
