"""``nd.warmup``: its arguments, and where it compiles (the worker processes themselves are
tested in ``test_robustness_cache.py``)."""

import numba
import numpy as np
import pytest

import numbadeconv as nd
from numbadeconv import _jit, _warmup
from numbadeconv._kernels import correlate


@pytest.mark.parametrize("processes, error", [(0, ValueError), (-2, ValueError),
                                              (True, TypeError), ("2", TypeError),
                                              (1.5, TypeError)])
def test_bad_processes(processes, error):
    with pytest.raises(error, match="processes"):
        nd.warmup(("float32",), processes=processes)


@pytest.mark.parametrize("dtype", ["int8", "float16", "complex64", "no such dtype"])
def test_bad_dtypes(dtype):
    with pytest.raises(ValueError, match="'float32' or 'float64'"):
        nd.warmup((dtype,))


@pytest.mark.parametrize("dtypes", ["float64", np.float64, np.dtype("float64"), ["float64"]])
def test_one_dtype_or_a_sequence(dtypes):
    assert set(nd.warmup(dtypes, processes=1)) == {"float64"}


def test_warmup_compiles_what_the_operations_call():
    """``processes=1`` compiles every unit here, and the operations then compile nothing new."""
    timings = nd.warmup(("float32",), processes=1)
    assert set(timings) == {"float32"} and timings["float32"] >= 0
    units = _warmup._units(np.dtype("float32"))
    for dispatcher, signatures in units:
        assert {tuple(s) for s in signatures} <= set(dispatcher.overloads)
    compiled = {dispatcher: set(dispatcher.overloads) for dispatcher, _ in units}
    rng = np.random.default_rng(0)
    threads = min(2, numba.config.NUMBA_NUM_THREADS)
    # outer-product, tiled, depthwise, row-wise and (NCHW, stride 1) planar kernels; big enough
    # for parallel launches
    for c, w_shape in [(32, (3, 3, 32, 32)), (32, (3, 3, 32, 3)), (32, (3, 3, 1, 32)),
                       (1, (3, 3, 1, 1))]:
        x = rng.standard_normal((2, 40, 40, c)).astype(np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32)
        kw = dict(strides=2, padding="SAME", threads=threads)
        y = nd.conv2d(x, w, **kw)
        nd.conv2d_transpose(y, w, x.shape, **kw)
        nd.conv2d_backprop_filter(x, w.shape, y, **kw)
        nd.conv2d(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), w, data_format="NCHW", **kw)
        nd.conv2d(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), w, data_format="NCHW",
                  **dict(kw, strides=1))
    assert {dispatcher: set(dispatcher.overloads) for dispatcher, _ in units} == compiled


def test_helpers_have_no_cache_of_their_own():
    """Internal helpers are linked into the kernels' cache entries, never cached on their own."""
    assert _jit.on_disk(correlate._inside, ()) is None
