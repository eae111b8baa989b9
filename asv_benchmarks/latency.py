"""Import time and first-call (compile) latency, each in a fresh interpreter.

``timeraw_*`` benchmarks return code that asv runs in a new Python process. NumPy is imported
and the inputs are built in the untimed setup part; the timed part is ``import numbadeconv``
(which imports Numba) plus, for ``FirstCall``, one call. The Numba cache is either

* ``cold``: a fresh, empty ``NUMBA_CACHE_DIR`` for every run (what a first-ever call costs:
  type inference, LLVM compilation and writing the cache), or
* ``warm``: a ``NUMBA_CACHE_DIR`` that ``setup`` filled by making the same call once in another
  process (what every later process pays: loading the compiled kernels).

``NUMBA_CACHE_DIR`` is set inside the timed process's code, before Numba is imported, so a
value in the caller's environment does not leak in.
"""

import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

# Where this process found numbadeconv: the timed interpreters get it on sys.path too, because
# asv passes neither PYTHONPATH nor ASV_PYTHONPATH on to processes a benchmark starts.
_spec = importlib.util.find_spec("numbadeconv")
_SYS_PATH = str(pathlib.Path(_spec.origin).parents[1]) if _spec and _spec.origin else ""

_INPUTS = {
    # The tutorial's shapes, so that the cost is the compile/load, not the arithmetic.
    "conv2d": (
        "x = np.ones((1, 5, 5, 3), np.float32); w = np.ones((3, 3, 3, 1), np.float32)",
        "nd.conv2d(x, w, 2, 'SAME')",
    ),
    "conv2d_transpose": (
        "y = np.ones((1, 3, 3, 1), np.float32); w = np.ones((3, 3, 3, 1), np.float32)",
        "nd.conv2d_transpose(y, w, (1, 5, 5, 3), 2, 'SAME')",
    ),
    "backprop_filter": (
        "x = np.ones((1, 5, 5, 3), np.float32); dy = np.ones((1, 3, 3, 1), np.float32)",
        "nd.conv2d_backprop_filter(x, (3, 3, 3, 1), dy, 2, 'SAME')",
    ),
}


def _setup_code(cache_dir: str, fresh: bool, inputs: str = "") -> str:
    if fresh:
        where = f"tempfile.mkdtemp(dir={cache_dir!r})"
    else:
        where = repr(cache_dir)
    return (
        "import os, sys, tempfile\n"
        f"sys.path.insert(0, {_SYS_PATH!r})\n"
        f"os.environ['NUMBA_CACHE_DIR'] = {where}\n"
        "os.environ.pop('NUMBADECONV_DISABLE_CACHE', None)\n"
        "import numpy as np\n"
        f"{inputs}\n"
    )


class Import:
    """``import numbadeconv`` (and Numba with it) in a fresh interpreter; nothing compiles."""

    timeout = 120.0

    def setup(self):
        self.root = tempfile.mkdtemp(prefix="asv-numbadeconv-cache-")

    def teardown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def timeraw_import(self):
        return "import numbadeconv", _setup_code(self.root, fresh=True)


class FirstCall:
    """``import numbadeconv`` + the first call, with an empty or a filled Numba cache."""

    params = [list(_INPUTS), ["cold", "warm"]]
    param_names = ["op", "cache"]
    timeout = 900.0
    repeat = (1, 3, 60.0)  # a cold run compiles for several seconds

    def setup(self, op, cache):
        self.root = tempfile.mkdtemp(prefix="asv-numbadeconv-cache-")
        inputs, call = _INPUTS[op]
        if cache == "warm":  # fill the cache in another process
            code = _setup_code(self.root, fresh=False, inputs=inputs)
            code += f"import numbadeconv as nd\n{call}\n"
            subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))

    def teardown(self, op, cache):
        shutil.rmtree(self.root, ignore_errors=True)

    def timeraw_first_call(self, op, cache):
        inputs, call = _INPUTS[op]
        setup = _setup_code(self.root, fresh=cache == "cold", inputs=inputs)
        return f"import numbadeconv as nd\n{call}", setup
