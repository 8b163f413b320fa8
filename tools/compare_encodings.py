#!/usr/bin/env python3
"""Compare the quantizer ranges of two runs (encodings.json), e.g. quant.range_search fast vs exact.

  python3 tools/compare_encodings.py runs/a/encodings.json runs/b/encodings.json

Prints one JSON line: quantizers compared, how many have identical (scale, zero point), and the
largest relative difference of the range width per kind (activations, weight channels)."""
import json
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = (json.load(open(p)) for p in sys.argv[1:])
    out = {}
    for kind in ("activations", "weights"):
        ea = {e["name"]: e for e in a[kind]}
        eb = {e["name"]: e for e in b[kind]}
        same = total = 0
        worst = 0.0
        for name, x in ea.items():
            y = eb[name]
            sx = x["scale"] if isinstance(x["scale"], list) else [x["scale"]]
            sy = y["scale"] if isinstance(y["scale"], list) else [y["scale"]]
            zx = x["zero_point"] if isinstance(x["zero_point"], list) else [x["zero_point"]]
            zy = y["zero_point"] if isinstance(y["zero_point"], list) else [y["zero_point"]]
            for s1, s2, z1, z2 in zip(sx, sy, zx, zy):
                total += 1
                same += s1 == s2 and z1 == z2
                worst = max(worst, abs(s1 - s2) / max(abs(s1), 1e-30))
        out[kind] = {"compared": total, "identical": same, "max_rel_diff_scale": worst}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
