"""Memory: each op's peak allocation is a small multiple of its arrays; repeated calls don't grow.

Peaks are traced with ``tracemalloc``, which sees NumPy's allocations (the kernels allocate
nothing). Measured ratios (peak / (input + filters + output)) were 0.5 to 1.6; the bound is loose.
"""

import gc
import sys
import tracemalloc

import numpy as np
import pytest

import numbadeconv as nd

RATIO = 8


def _problems(rng):
    x = rng.standard_normal((2, 48, 48, 16)).astype(np.float32)
    f = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    y = nd.conv2d(x, f, 2, "SAME")
    pad = [[0, 0], [9, 9], [9, 9], [0, 0]]
    return {
        "conv2d": (lambda: nd.conv2d(x, f, 2, "SAME"), [x, f]),
        "conv2d padded": (lambda: nd.conv2d(x, f, 1, pad), [x, f]),
        "conv2d NCHW float64": (lambda: nd.conv2d(x.transpose(0, 3, 1, 2).astype(np.float64),
                                                  f, 1, "SAME", "NCHW"), [x, x, f]),
        "conv2d_transpose": (lambda: nd.conv2d_transpose(y, f, x.shape, 2, "SAME"), [y, f]),
        "conv2d_backprop_input": (lambda: nd.conv2d_backprop_input(x.shape, f, y, 2, "SAME"),
                                  [y, f]),
        "conv2d_backprop_filter": (lambda: nd.conv2d_backprop_filter(x, f.shape, y, 2, "SAME"),
                                   [x, y]),
    }


@pytest.mark.parametrize("op", ["conv2d", "conv2d padded", "conv2d NCHW float64",
                                "conv2d_transpose", "conv2d_backprop_input",
                                "conv2d_backprop_filter"])
def test_peak_memory_is_a_small_multiple_of_the_arrays(rng, op):
    fn, arrays = _problems(rng)[op]
    fn()  # compile, plan caches
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    io = sum(a.nbytes for a in arrays) + out.nbytes
    assert peak <= RATIO * io, f"{op}: peak {peak} bytes, {peak / io:.2f} x {io}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_repeated_calls_do_not_grow_the_process(rng):
    def rss():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * 4096

    calls = list(_problems(rng).values())

    def round_():
        for fn, _ in calls:
            fn()

    for _ in range(20):
        round_()
    after_20 = rss()
    for _ in range(180):
        round_()
    growth = rss() - after_20
    assert growth < 32 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB from call 20 to 200"
