"""Shared helpers of the ``test_robustness_*`` modules: child processes and small problems.

The robustness checks run in child Python processes, because what they test (the threading layer,
fork, the cache location, bounds checking) is fixed when Numba starts, and because a failure may
be an abort or a hang that must not take the test runner with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

#: One (kind, arguments) problem per public op; ``make_problem`` fills in arrays.
OPS = ("conv2d", "conv2d_transpose", "conv2d_backprop_input", "conv2d_backprop_filter")


def child_env(**overrides: str | None) -> dict[str, str]:
    """The environment of a child: ours, with the repository importable and ``overrides`` applied
    (a value of None removes the variable)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_child(code: str, *, env: dict[str, str] | None = None, timeout: float = 120,
              cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` as a script in a fresh interpreter; a hang fails the test after ``timeout`` s.

    The script is a file (not ``-c``) so that ``spawn`` and ``forkserver`` pools can import it.
    """
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "child_script.py"
        script.write_text(textwrap.dedent(code))
        try:
            return subprocess.run([sys.executable, str(script)],
                                  env=env if env is not None else child_env(), cwd=cwd,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"child process hung for more than {timeout} s; output so "
                                 f"far:\n{exc.stdout}\n{exc.stderr}") from None


def check_child(proc: subprocess.CompletedProcess) -> str:
    """Assert that a child exited cleanly; returns its stdout."""
    assert proc.returncode == 0, (
        f"child exited with {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n"
        f"{proc.stderr}"
    )
    return proc.stdout


def tbb_library_dir() -> str | None:
    """The directory of a pip-installed ``libtbb.so.12`` (``sys.prefix/lib``), or None.

    numbadeconv loads it at import (Numba alone does not search a virtual environment's ``lib``),
    so the children that test the TBB layer get no LD_LIBRARY_PATH: they prove that it works.
    """
    for name in ("libtbb.so.12", "libtbb.12.dylib"):
        if (Path(sys.prefix) / "lib" / name).exists():
            return str(Path(sys.prefix) / "lib")
    return None


def make_problem(rng: np.random.Generator, op: str, dtype=np.float32, scale: int = 1):
    """Random arguments ``(args, kwargs)`` for ``op``: a strided, dilated, padded convolution."""
    n = int(rng.integers(1, 3))
    groups = int(rng.choice([1, 1, 2]))
    cg = int(rng.integers(1, 4)) * scale
    og = int(rng.integers(1, 4)) * scale
    c, o = cg * groups, og * groups
    h, w = (int(v) for v in rng.integers(4, 12, size=2) * scale)
    fh, fw = (int(v) for v in rng.integers(1, 4, size=2))
    strides = [int(v) for v in rng.integers(1, 3, size=2)]
    dilations = [int(v) for v in rng.integers(1, 3, size=2)]
    padding = str(rng.choice(["SAME", "VALID"]))
    if padding == "VALID":
        h = max(h, (fh - 1) * dilations[0] + 1)
        w = max(w, (fw - 1) * dilations[1] + 1)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    f = rng.standard_normal((fh, fw, cg, o)).astype(dtype)
    common = dict(strides=strides, padding=padding, dilations=dilations)
    import numbadeconv as nd

    y_shape = nd.conv2d(np.zeros((n, h, w, c), dtype), f, **common).shape
    dy = rng.standard_normal(y_shape).astype(dtype)
    if op == "conv2d":
        return (x, f), common
    if op == "conv2d_transpose":
        return (dy, f, list(x.shape)), common
    if op == "conv2d_backprop_input":
        return (list(x.shape), f, dy), common
    return (x, list(f.shape), dy), common
