"""Python twin of the counter-based generator in src/core/qmath.h (Philox4x32-10 keyed on
(seed, unit), counter (element/4, tensor, iteration)). Used by tools/ scripts to reproduce the
engine's batch draws and QDrop masks exactly (golden fixtures, PyTorch reference)."""
import numpy as np

M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF
T_BATCH = 0xFFFFFFF0
T_INPUT = 0xFFFFFFF1


def _philox(c0, c1, c2, c3, k0, k1):
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in (c0, c1, c2, c3))
    k0 = np.uint64(k0)
    k1 = np.uint64(k1)
    for _ in range(10):
        p0 = np.uint64(M0) * c0
        p1 = np.uint64(M1) * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & np.uint64(MASK32)
        hi1, lo1 = p1 >> np.uint64(32), p1 & np.uint64(MASK32)
        n0 = hi1 ^ c1 ^ k0
        n2 = hi0 ^ c3 ^ k1
        c0, c1, c2, c3 = n0, lo1, n2, lo0
        k0 = (k0 + np.uint64(W0)) & np.uint64(MASK32)
        k1 = (k1 + np.uint64(W1)) & np.uint64(MASK32)
    return c0, c1, c2, c3


def rng_u32(seed, unit, tensor, iteration, elem):
    elem = np.asarray(elem, dtype=np.uint64)
    seed_lo = seed & MASK32
    seed_hi = (seed >> 32) & MASK32
    c0 = elem >> np.uint64(2)
    c1 = ((elem >> np.uint64(34)) ^ np.uint64((unit << 16) & MASK32)) & np.uint64(MASK32)
    c2 = np.full_like(elem, tensor)
    c3 = np.full_like(elem, iteration & MASK32)
    k0 = (seed_lo ^ ((unit * 0x85EBCA6B) & MASK32)) & MASK32
    out = _philox(c0, c1, c2, c3, k0, seed_hi)
    lane = (elem & np.uint64(3)).astype(np.int64)
    stacked = np.stack(out, axis=0)
    return stacked[lane, np.arange(elem.size).reshape(elem.shape)].astype(np.uint32) if elem.ndim else stacked[int(lane)].astype(np.uint32)


def rng_uniform(seed, unit, tensor, iteration, elem):
    return (rng_u32(seed, unit, tensor, iteration, elem) >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)


def keep_mask(seed, unit, tensor, iteration, n, keep_prob):
    if keep_prob >= 1.0:
        return np.ones(n, dtype=bool)
    return rng_uniform(seed, unit, tensor, iteration, np.arange(n, dtype=np.uint64)) < np.float32(keep_prob)


def draw_batch(seed, unit, iteration, n_total, batch):
    u = rng_u32(seed, unit, T_BATCH, iteration, np.arange(batch, dtype=np.uint64)).astype(np.uint64)
    return ((u * np.uint64(n_total)) >> np.uint64(32)).astype(np.int64)


if __name__ == "__main__":
    print(int(rng_u32(1005, 0, 0, 1, np.uint64(0))), float(rng_uniform(1005, 0, 0, 1, np.uint64(5))))
