"""Concurrent calls from Python threads, under each Numba threading layer.

Each layer runs in a child process (``NUMBA_THREADING_LAYER`` is read once, when Numba first
launches a parallel kernel). The child lowers ``_engine.PARALLEL_MIN_MACS`` to 0 so that every call,
however small, goes through the parallel kernels, computes every problem once sequentially, then
has THREADS Python threads call every op CALLS times each at the same moment and checks that every
concurrent result is bit-identical to the sequential one. Under ``workqueue`` a concurrent launch
would abort the process ("Terminating: Concurrent access has been detected"):
``_jit.parallel_launch`` serialises them.
"""


import pytest
from _robustness import check_child, child_env, run_child, tbb_library_dir

SCRIPT = """
import sys, threading
import numpy as np
import numbadeconv as nd
from numbadeconv import _engine, _jit
sys.path.insert(0, {tests!r})
from _robustness import OPS, make_problem

_engine.PARALLEL_MIN_MACS = 0          # every call takes the parallel kernels
THREADS, CALLS = {threads}, {calls}
rng = np.random.default_rng(7)
work = [[(op, *make_problem(rng, op, np.float64 if i % 5 == 0 else np.float32))
         for i in range(CALLS) for op in OPS] for _ in range(THREADS)]
expected = [[getattr(nd, op)(*a, **k) for op, a, k in w] for w in work]
assert _jit.threading_layer() is not None, "no parallel kernel ran"

barrier = threading.Barrier(THREADS)
failures, done = [], [0] * THREADS

def worker(t):
    try:
        barrier.wait()
        for i, (op, a, k) in enumerate(work[t]):
            got = getattr(nd, op)(*a, **k)
            if not np.array_equal(got, expected[t][i]):
                failures.append((t, i, op))
            done[t] += 1
    except BaseException as exc:
        failures.append((t, repr(exc)))

pool = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
for th in pool: th.start()
for th in pool: th.join()
assert not failures, failures[:5]
print("layer", _jit.threading_layer(), "calls", sum(done))
"""


def _layer_env(layer):
    overrides = {"NUMBA_THREADING_LAYER": layer, "NUMBA_NUM_THREADS": "4"}
    if layer == "tbb":
        if tbb_library_dir() is None:
            pytest.skip("the tbb package is not installed (pip install numbadeconv[tbb])")
    return child_env(**overrides)


def _run(layer, threads, calls, timeout):
    from _robustness import REPO

    code = SCRIPT.format(tests=str(REPO / "tests"), threads=threads, calls=calls)
    out = check_child(run_child(code, env=_layer_env(layer), timeout=timeout))
    assert f"layer {layer} calls {threads * calls * 4}" in out, out


@pytest.mark.parametrize("layer", ["omp", "tbb", "workqueue"])
def test_concurrent_calls_match_sequential(layer):
    _run(layer, threads=8, calls=50, timeout=240)


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["omp", "tbb", "workqueue"])
def test_concurrent_calls_many(layer):
    _run(layer, threads=16, calls=200, timeout=900)
