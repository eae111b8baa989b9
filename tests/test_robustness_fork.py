"""Process pools started after a parallel call: they must neither hang nor die.

With the PyPI wheel on Linux, Numba's ``omp`` layer is GNU OpenMP, and Numba terminates a forked
child at its first parallel launch ("fork() called from a process already using GNU OpenMP").
``_jit`` notices the fork (``os.register_at_fork``) and such a child runs the serial kernels. A
child also gets a fresh launch lock, in case another thread of the parent held it at fork time.

Every scenario runs in a child interpreter with a timeout, and the pool's results are fetched with
a timeout too: a pool whose workers die is restarted forever by ``multiprocessing``, which would
otherwise hang.
"""

import sys

import pytest
from _robustness import REPO, check_child, child_env, run_child, tbb_library_dir

SCRIPT = """
import multiprocessing as mp, sys, threading
import numpy as np
import numbadeconv as nd
from numbadeconv import _engine, _jit
sys.path.insert(0, {tests!r})
from _robustness import OPS, make_problem

_engine.PARALLEL_MIN_MACS = 0          # every call takes the parallel kernels
rng = np.random.default_rng(3)
PROBLEMS = [(op, *make_problem(rng, op)) for op in OPS for _ in range(3)]

def call(i):
    op, args, kwargs = PROBLEMS[i]
    return getattr(nd, op)(*args, **kwargs)

if __name__ == "__main__":
    expected = [call(i) for i in range(len(PROBLEMS))]   # parallel calls before the pool starts
    print("parent layer", _jit.threading_layer(), flush=True)
    if {hold_lock}:   # as if another thread were inside a parallel launch at fork time
        _jit._launch_lock.acquire()
    ctx = mp.get_context({method!r})
    with ctx.Pool(2) as pool:
        got = pool.map_async(call, range(len(PROBLEMS))).get(timeout={timeout})
        # a pool worker forks nothing, but a worker that forks again must be safe as well
    for (op, _, _), e, g in zip(PROBLEMS, expected, got):
        assert g.shape == e.shape and np.allclose(g, e, rtol=1e-5, atol=1e-5), op
    print("ok", len(got))
"""


def _env(layer):
    overrides = {"NUMBA_NUM_THREADS": "4", "NUMBA_THREADING_LAYER": layer}
    if layer == "tbb":
        if tbb_library_dir() is None:
            pytest.skip("the tbb package is not installed (pip install numbadeconv[tbb])")
    return child_env(**overrides)


def _run(method, layer, hold_lock=False, timeout=60):
    code = SCRIPT.format(tests=str(REPO / "tests"), method=method, hold_lock=hold_lock,
                         timeout=timeout)
    out = check_child(run_child(code, env=_env(layer), timeout=timeout + 120))
    assert f"ok {4 * 3}" in out, out


@pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")
@pytest.mark.parametrize("layer", ["omp", "workqueue", "tbb"])
def test_fork_pool_after_parallel_call(layer):
    _run("fork", layer)


@pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")
def test_fork_while_launch_lock_held():
    # workqueue is the layer under which launches take the lock; a child must not inherit it held
    _run("fork", "workqueue", hold_lock=True)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawn_pool_after_parallel_call(method):
    if method == "forkserver" and sys.platform == "win32":
        pytest.skip("no forkserver on Windows")
    _run(method, "omp")
