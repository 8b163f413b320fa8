"""Shared by the ONNX parity scripts (onnx_parity.py, onnx_shape_parity.py, onnx_view_parity.py,
onnx_autopad_parity.py): ONNX Runtime's output of a model as the reference, then the engine's
test_onnx_parity binary on the same input (relative error <= 1e-4, see tests/unit/test_onnx_parity.c).

Importing it exits 77 (skip) when numpy, onnx or onnxruntime is missing; the scripts take np, onnx,
TensorProto, helper and numpy_helper from it.
"""
import os
import subprocess
import sys

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper  # noqa: F401 (for the scripts)
except ImportError as e:  # CI without the python test extras
    print(f"SKIP: {e}")
    sys.exit(77)


def session(model_path, optimize=False, quiet=False):
    """A CPU session; graph optimizations off unless asked (the model as written, op by op)."""
    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if quiet:
        so.log_severity_level = 3  # no notes about initializers the variant does not use
    return ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])


def reference(model_path, x, sess=None):
    """ONNX Runtime's first output of model_path on x, float32."""
    sess = sess or session(model_path)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0].astype(np.float32)


def run_engine(binary, out_dir, name, model_path, x, ref, units_arg, extra=()):
    """Save x and ref as out_dir/name.{x,ref}.npy and run `binary MODEL X REF UNITS [extra...]`,
    echoing its output. Returns (exit code, stdout); prints a FAIL line for a code other than 0 / 77."""
    xp, rp = os.path.join(out_dir, name + ".x.npy"), os.path.join(out_dir, name + ".ref.npy")
    np.save(xp, x)
    np.save(rp, ref)
    r = subprocess.run([binary, model_path, xp, rp, str(units_arg), *[str(e) for e in extra]], capture_output=True,
                       text=True)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if r.returncode not in (0, 77):
        print(f"FAIL {name} (exit {r.returncode})")
    return r.returncode, r.stdout
