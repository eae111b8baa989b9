"""Every kernel path of the engine, serial and parallel, against the naive reference.

The engine picks a kernel from the channel counts (outer products in blocks of 16 or 8 output
channels with packed filters, tiled with filters read in place or packed, depthwise, row-wise, or a
plain fill when no tap reaches the output) and runs small calls serially; these cases force each
path and the parallel entry points.
"""

import types

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from llvmlite import ir

import numbadeconv as nd
from numbadeconv import _engine
from numbadeconv._kernels import copies, filter_grad, parallel, simd
from numbadeconv.testing import (
    reference_conv2d,
    reference_conv2d_backprop_filter,
    reference_conv2d_transpose,
    reference_output_size,
)

# (x shape NHWC, filter shape [fh, fw, C/groups, out], stride, padding, dilation)
CASES = {
    "tiled in place (transpose)": ((2, 8, 8, 70), (5, 5, 70, 96), 2, "SAME", 1),
    "tiled in place, k2 s2": ((1, 10, 10, 128), (2, 2, 128, 64), 2, "VALID", 1),
    "tiled packed, grouped": ((2, 12, 12, 96), (3, 3, 32, 9), 1, "SAME", 1),
    "tiled, dilated, stride 3": ((2, 12, 12, 64), (3, 3, 64, 67), 3, "VALID", 2),
    "tiled, explicit asymmetric": ((1, 16, 16, 70), (4, 4, 70, 65), 2,
                                   [[0, 0], [1, 2], [2, 0], [0, 0]], 1),
    "tiled, grouped in place": ((1, 17, 17, 130), (7, 7, 65, 128), 3, "SAME", 1),
    # one output channel (per group): 8-pixel tiles; the transpose of 1 -> 40 channels too
    "tiled, one output channel": ((2, 13, 11, 40), (3, 3, 40, 1), 1, "SAME", 1),
    "tiled, one output channel per group": ((1, 12, 21, 64), (3, 3, 32, 2), 2, "SAME", 1),
    "tiled, transpose to one channel": ((2, 10, 9, 1), (4, 4, 1, 40), 2, "SAME", 1),
    "tiled, 3 channels into one (RGB to gray)": ((2, 40, 41, 3), (5, 5, 3, 1), 1, "SAME", 1),
    # the tiled kernel reads the source unpadded: segments of pixels that read inside the same
    # taps, down to single pixels, whose tiles span rows; kernels wider than the image, padding
    # wider than the kernel (rows and columns that read padding only)
    "tiled, small image, taps skipped": ((2, 4, 5, 64), (5, 5, 64, 3), 2, "SAME", 1),
    "tiled, padding wider than the kernel": ((1, 6, 7, 40), (3, 3, 40, 2), 1,
                                             [[0, 0], [4, 5], [3, 4], [0, 0]], 1),
    "tiled, one channel, kernel wider than the image": ((2, 3, 4, 32), (7, 7, 32, 1), 1,
                                                         "SAME", 2),
    "tiled, one channel, dilated, wide padding": ((1, 9, 8, 24), (3, 3, 24, 1), 1,
                                                  [[0, 0], [5, 2], [1, 6], [0, 0]], 2),
    "outer, partial channel block": ((2, 7, 11, 20), (3, 3, 20, 37), 1, "SAME", 1),  # 5 x 8
    "outer, partial block of 16": ((2, 7, 11, 20), (3, 3, 20, 44), 1, "SAME", 1),  # 3 x 16
    "outer, grouped, strided": ((1, 13, 14, 48), (3, 3, 16, 60), 2, "SAME", 1),
    "outer, few input channels": ((2, 9, 9, 3), (3, 3, 3, 20), 2, "SAME", 1),
    "outer, blocks of 8": ((2, 9, 10, 6), (3, 3, 6, 8), 2, "SAME", 1),
    "outer, odd input channels, few outputs": ((2, 9, 10, 5), (3, 3, 5, 7), 2, "SAME", 1),
    "outer, blocks of 8, grouped, 1x1": ((1, 6, 7, 12), (1, 1, 4, 6), 1, "VALID", 1),
    "outer, two channels": ((1, 7, 9, 2), (5, 5, 2, 2), 1, "SAME", 1),
    # blocks of 4 AVX-512 vectors (64 float32, 32 float64 channels) where the target has them
    "outer, blocks of 4 wide vectors": ((2, 7, 11, 24), (3, 3, 24, 64), 1, "SAME", 1),
    "outer, two blocks of 4 wide vectors, dilated": ((1, 9, 13, 32), (3, 3, 32, 128), 1,
                                                     "SAME", 2),
    # pixels whose taps read zero padding: rows and columns split into segments that skip them
    # (long reductions), or not (short ones); rows and columns that read padding only
    "outer, small image, taps skipped": ((2, 4, 5, 256), (5, 5, 256, 32), 2, "SAME", 1),
    "outer, padding wider than the kernel": ((1, 6, 7, 24), (3, 3, 24, 20), 1,
                                             [[0, 0], [4, 5], [3, 4], [0, 0]], 1),
    "outer, wide padding, long runs": ((1, 3, 4, 160), (3, 3, 160, 16), 1,
                                       [[0, 0], [3, 2], [4, 3], [0, 0]], 1),
    # reductions longer than a pass of outer.CHUNK_BYTES of weights (16384 float32 or 8192
    # float64 steps of 16 channels): a run in chunks, and runs in several passes
    "outer, a run longer than a pass": ((1, 2, 3, 16500), (1, 1, 16500, 16), 1, "VALID", 1),
    "outer, runs in several passes": ((1, 4, 5, 2048), (3, 3, 2048, 16), 1, "SAME", 1),
    "depthwise": ((2, 9, 9, 12), (3, 3, 1, 12), 1, "SAME", 1),
    "depthwise multiplier": ((2, 9, 9, 6), (3, 3, 1, 18), 2, "SAME", 2),
    "depthwise, stride 2": ((2, 9, 10, 16), (3, 3, 1, 16), 2, "SAME", 1),
    "depthwise, 72 channels, 5x5": ((1, 7, 8, 72), (5, 5, 1, 72), 1, "SAME", 1),
    # (its filter gradient: a sliding window of 4 vectors of channels, then of 1)
    "depthwise, 40 channels, 3x3": ((2, 7, 9, 40), (3, 3, 1, 40), 1, "SAME", 1),
    "depthwise, 3 channels (an RGB image)": ((2, 11, 10, 3), (5, 5, 1, 3), 1, "SAME", 1),
    "depthwise, 2 channels, multiplier, stride 2": ((1, 9, 9, 2), (3, 3, 1, 4), 2, "SAME", 1),
    "rowwise (one channel)": ((2, 13, 11, 1), (3, 3, 1, 1), 2, "SAME", 1),
    "stride above kernel (empty phases)": ((1, 9, 9, 4), (2, 2, 4, 5), 3, "VALID", 1),
    "stride above kernel, channel-rich": ((1, 9, 10, 64), (2, 2, 64, 48), 3, "VALID", 1),
    "stride above kernel, in place": ((1, 9, 10, 64), (2, 1, 64, 64), 3, "VALID", 1),
    "no tap reaches the output (transpose)": ((1, 4, 1, 10), (3, 4, 5, 2), 2, "SAME", 2),
}


@pytest.fixture(params=["serial", "parallel"])
def mode(request, monkeypatch):
    if request.param == "serial":
        yield 1
        return
    # every call runs its jobs over threads, and none of them may fail there (a failed job would
    # be run again serially: right results, but not from the parallel path under test)
    monkeypatch.setattr(_engine, "PARALLEL_MIN_MACS", 0)
    failures = []

    def run_jobs(*args):
        failures.append(real(*args))
        return failures[-1]

    real = parallel.run_jobs
    monkeypatch.setattr(parallel, "run_jobs", run_jobs)
    yield 2
    if nd._jit.numba.config.NUMBA_NUM_THREADS > 1:
        assert failures and not any(failures), failures


def _check_every_op(name, dtype, threads, tol, filter_atol):
    """conv2d, its transpose and its filter gradient of case ``name`` against the references."""
    x_shape, w_shape, stride, padding, dilation = CASES[name]
    rng = np.random.default_rng(len(name))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    threads = min(threads, nd._jit.numba.config.NUMBA_NUM_THREADS)
    y = nd.conv2d(x, w, stride, padding, dilations=dilation, threads=threads)
    np.testing.assert_allclose(y, reference_conv2d(x, w, stride, padding, dilations=dilation),
                               rtol=tol, atol=tol)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = nd.conv2d_transpose(dy, w, x_shape, stride, padding, dilations=dilation,
                             threads=threads)
    np.testing.assert_allclose(
        dx, reference_conv2d_transpose(dy, w, x_shape, stride, padding, dilations=dilation),
        rtol=tol, atol=tol)
    dw = nd.conv2d_backprop_filter(x, w_shape, dy, stride, padding, dilations=dilation,
                                   threads=threads)
    np.testing.assert_allclose(
        dw, reference_conv2d_backprop_filter(x, w_shape, dy, stride, padding,
                                             dilations=dilation),
        rtol=tol, atol=filter_atol)


@pytest.mark.parametrize("name", list(CASES))
def test_every_op_matches_reference(name, mode):
    _check_every_op(name, np.float64, mode, 1e-10, 1e-10)


@pytest.mark.parametrize("name", ["outer, partial channel block", "outer, grouped, strided",
                                  "outer, blocks of 8", "outer, two channels",
                                  "outer, blocks of 4 wide vectors",
                                  "outer, two blocks of 4 wide vectors, dilated",
                                  "outer, small image, taps skipped",
                                  "outer, odd input channels, few outputs",
                                  "tiled, explicit asymmetric", "tiled, one output channel",
                                  "tiled, transpose to one channel",
                                  "tiled, 3 channels into one (RGB to gray)",
                                  "depthwise, 3 channels (an RGB image)"])
def test_float32_matches_reference(name, mode):
    # float64 above; the outer-product kernel's float32 tiles are wider (6 or 12 pixels, not 2
    # or 6)
    _check_every_op(name, np.float32, mode, 1e-4, 1e-3)


@pytest.fixture(params=["planes", "pairs"])
def copied_pixels(request, monkeypatch):
    """Every filter-gradient job runs the long passes over copies of its pixels (large layers):
    of its source rows, in planes, or of each pixel's pairs."""
    monkeypatch.setattr(_engine, "FILTER_GRAD_ACC_BYTES", -1)
    monkeypatch.setattr(_engine, "FILTER_GRAD_PLANE_ROW_PIXELS",
                        1 if request.param == "planes" else 2**62)
    _engine.plan_filter_grad.cache_clear()
    yield
    _engine.plan_filter_grad.cache_clear()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(CASES))
def test_filter_grad_over_copied_pixels(name, dtype, mode, copied_pixels):
    x_shape, w_shape, stride, padding, dilation = CASES[name]
    rng = np.random.default_rng(len(name))
    x = rng.standard_normal(x_shape).astype(dtype)
    y_shape = nd.conv2d(x, np.zeros(w_shape, dtype), stride, padding, dilations=dilation).shape
    dy = rng.standard_normal(y_shape).astype(dtype)
    dw = nd.conv2d_backprop_filter(x, w_shape, dy, stride, padding, dilations=dilation,
                                   threads=min(mode, nd._jit.numba.config.NUMBA_NUM_THREADS))
    tol = 1e-10 if dtype == np.float64 else 1e-3
    np.testing.assert_allclose(
        dw, reference_conv2d_backprop_filter(x, w_shape, dy, stride, padding,
                                             dilations=dilation), rtol=tol, atol=tol)


@pytest.mark.parametrize("op", ["conv2d_transpose", "conv2d_backprop_filter"])
def test_kept_padded_copy_is_written_over(op, mode, monkeypatch):
    """A thread's kept zero-padded copy serves its next call of the same shapes: each call gets
    its own result, the first call's NaN (at corners where the second call's frame has padding)
    gone."""
    kept = []
    real = _engine._kept_array
    monkeypatch.setattr(_engine, "_kept_array", lambda role, *a: kept.append(role) or real(
        role, *a))
    rng = np.random.default_rng(5)
    # a k5 s2 transpose 48 -> 256 (the outer-product kernel reads a padded copy), and a
    # filter gradient; padding 3 before, then 3 after: frames of one size, the data elsewhere
    w_shape = (5, 5, 256, 48)
    pads = [[[0, 0], [3, 0], [3, 0], [0, 0]], [[0, 0], [0, 3], [0, 3], [0, 0]]]
    x = rng.standard_normal((2, 2, 10, 10, 256))
    x[0, 0, [0, -1], [0, -1]] = np.nan
    dy = rng.standard_normal((2, 2, 5, 5, 48))
    dy[0, 0, [0, -1], [0, -1]] = np.nan
    w = rng.standard_normal(w_shape)
    threads = min(mode, numba.config.NUMBA_NUM_THREADS)
    for k in range(2):
        if op == "conv2d_transpose":
            got = nd.conv2d_transpose(dy[k], w, x[k].shape, 2, pads[k], threads=threads)
            expected = reference_conv2d_transpose(dy[k], w, x[k].shape, 2, pads[k])
        else:
            got = nd.conv2d_backprop_filter(x[k], w_shape, dy[k], 2, pads[k], threads=threads)
            expected = reference_conv2d_backprop_filter(x[k], w_shape, dy[k], 2, pads[k])
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    assert kept.count("source") == 2, kept


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("step", [filter_grad.SUM_ELEMENTS, filter_grad.SUM_MIN_ELEMENTS])
def test_slab_sum_is_numpys_sum(dtype, step, mode):
    """The filter gradient's slabs summed in jobs: NumPy's sum bit for bit, Inf and NaN too."""
    rng = np.random.default_rng(3)
    size = 2 * step + 5  # and a last job of a few elements
    part = rng.standard_normal((3, size)).astype(dtype)
    part[1, 7], part[2, 9], part[0, -1] = np.inf, np.nan, -np.inf
    out = np.full(size, -1.0, dtype)
    _engine._launch(filter_grad.sum_slabs_serial, min(mode, numba.config.NUMBA_NUM_THREADS),
                    -(-size // step), part, out, step)
    np.testing.assert_array_equal(out, part.sum(axis=0))


@pytest.fixture(params=[3, 16, 64])
def many_threads(request, monkeypatch):
    """Calls with their jobs blocked and shared for more threads than this machine has.

    The calls' jobs and thread shares are those of this many threads (finer jobs, or for the
    outer-product kernel coarser ones, where they balance the shares better:
    ``_engine._most_balanced``; filter gradients in slabs and chunks
    of output channels, as FILTER_GRAD_SLAB_BYTES makes large ones; the slab sum's smaller
    jobs); the shares run on the threads there are.
    """
    monkeypatch.setattr(_engine, "_threads_for", lambda *args: request.param)
    monkeypatch.setattr(_engine, "FILTER_GRAD_SLAB_BYTES", 0)
    real = nd._jit.parallel_launch
    monkeypatch.setattr(nd._jit, "parallel_launch", lambda n: real(
        min(n, numba.config.NUMBA_NUM_THREADS)))
    _engine.plan_filter_grad.cache_clear()
    yield
    _engine.plan_filter_grad.cache_clear()


def test_job_sizes_for_the_balance():
    # equal blocks of 28 rows from blocks of 4: up to 4x finer, or (the outer-product kernel's)
    # up to twice as large
    assert _engine._finer(28, 4) == [4, 3, 2, 1]
    assert _engine._finer(28, 4, coarser=True) == [7, 6, 5, 4, 3, 2, 1]
    assert _engine._finer(6, 2, coarser=True) == [3, 2, 1]
    # 8 images x 28 rows x 2 blocks of 64 output channels (AVX-512) on 64 threads: 64 jobs of
    # 7 rows, not 56 of 2 images x 4 rows
    plan = _engine.plan_conv2d((8, 28, 28, 512), (1, 1, 512, 128), (1, 1), (1, 1), (0, 0),
                               (28, 28), 1, itemsize=4)
    if plan.meta[17] == 64:
        assert _engine._blocked_meta(plan, 64)[1] == 64


@pytest.mark.parametrize("name", ["outer, partial channel block", "outer, grouped, strided",
                                  "outer, small image, taps skipped", "outer, blocks of 8",
                                  "outer, runs in several passes", "outer, few input channels",
                                  "outer, two blocks of 4 wide vectors, dilated",
                                  "tiled, explicit asymmetric", "depthwise, stride 2",
                                  "rowwise (one channel)"])
def test_job_blocking_for_many_threads(name, many_threads):
    _check_every_op(name, np.float64, 1, 1e-10, 1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cin, cout", [(20, 64), (24, 32), (12, 16), (6, 8), (5, 8)])
def test_outer_small_tiles(cin, cout, dtype, mode):
    """Segments of every size past whole tiles: small tiles, whole ones, or both; every block."""
    rng = np.random.default_rng(cin)
    w = rng.standard_normal((3, 3, cin, cout)).astype(dtype)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    threads = min(mode, nd._jit.numba.config.NUMBA_NUM_THREADS)
    for width in range(1, 15):  # segments of 1 to 14 pixels in a row, whole images, edges
        x = rng.standard_normal((2, 3, width, cin)).astype(dtype)
        for padding in ("SAME", "VALID"):
            if width < 3 and padding == "VALID":
                continue
            np.testing.assert_allclose(nd.conv2d(x, w, 1, padding, threads=threads),
                                       reference_conv2d(x, w, 1, padding), rtol=tol, atol=tol)


@pytest.mark.parametrize("cin", [24, 160])
def test_outer_bias_where_only_padding_is_read(cin, mode):
    # output rows and columns that read zero padding only hold the bias (NCHW: through acc)
    rng = np.random.default_rng(cin)
    x = rng.standard_normal((2, cin, 3, 4))
    w = rng.standard_normal((20, cin, 3, 3))
    b = rng.standard_normal(20)
    threads = min(mode, nd._jit.numba.config.NUMBA_NUM_THREADS)
    y = nd.functional.conv2d(x, w, b, padding=(4, 5), threads=threads)
    expected = reference_conv2d(x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0), 1,
                                [[0, 0], [4, 4], [5, 5], [0, 0]]).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(y, expected + b[:, None, None], rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(y[:, :, 0], np.broadcast_to(b[:, None], (2, 20, 12)))


def _plans(name, cached=True):
    """The engine's plans of case ``name``'s conv2d and of its transpose (``cached``: memoised)."""
    x_shape, w_shape, stride, padding, dilation = CASES[name]
    groups = x_shape[3] // w_shape[2]
    (oh, pt, _), (ow, pl, _) = (
        nd.sizes.window(x_shape[1 + axis], w_shape[axis], stride,
                        padding if isinstance(padding, str) else tuple(padding[1 + axis]),
                        dilation) for axis in (0, 1))
    conv, transpose = _engine.plan_conv2d, _engine.plan_input_grad
    if not cached:
        conv, transpose = conv.__wrapped__, transpose.__wrapped__
    return (conv(x_shape, w_shape, (stride,) * 2, (dilation,) * 2, (pt, pl), (oh, ow), groups),
            transpose((x_shape[0], oh, ow, w_shape[3]), w_shape, x_shape[1:3], (stride,) * 2,
                      (dilation,) * 2, (pt, pl), groups))


def test_cases_cover_every_kernel():
    kinds = set()
    for name in CASES:
        for plan in _plans(name):
            kinds.add((plan.kind, int(plan.meta[17]) if plan.kind == "outer"
                       else plan.weight_index is None))
            if plan.kind == "tiled" and plan.out_shape[3] == plan.meta[5]:
                kinds.add(("tiled", "one output channel per group"))
            if plan.kind == "outer" and plan.pack[1][8] == 1 and plan.meta[17] == 8:
                kinds.add(("outer", "8, single elements"))
    # float32 blocks of 32 and 64 (the cases' plans are float32's)
    wide = {("outer", 32), ("outer", 64)} if simd.REGISTERS == 32 else set()
    assert {("outer", 16), ("outer", 8), ("tiled", True), ("tiled", False), ("depthwise", False),
            ("rowwise", False), ("fill", True), ("tiled", "one output channel per group"),
            ("outer", "8, single elements"), *wide} <= kinds


# (filter shape, block, pair): conv2d's filters (output channels contiguous), a transpose's (input
# channels contiguous), PyTorch's of both (taps contiguous), partial blocks, input channels in
# several jobs and passes (PyTorch's transposes: copies.PASS_CHANNELS)
@pytest.mark.parametrize("layout", ["conv2d", "transpose", "torch conv2d", "torch transpose"])
@pytest.mark.parametrize("taps, cig, groups, cog, block, pair", [
    (9, 6, 1, 8, 8, 2), (4, 5, 1, 20, 16, 1), (3, 4, 3, 12, 8, 2), (2, 7, 2, 37, 16, 1),
    (1, 2, 1, 3, 8, 2), (3, 5, 2, 7, 8, 1), (2, 20, 1, 10, 8, 2), (1, 19, 1, 16, 16, 1),
])
def test_pack_matches_its_definition(layout, taps, cig, groups, cog, block, pair):
    # copies.pack: out[g, b, k, ci // P, c, ci % P] = w[bases[k] + ci*s_ci + g*s_g + co*s_co]
    # for co = b*B + c < cog, else 0
    rng = np.random.default_rng(taps * cig + cog)
    if layout == "conv2d":  # [taps, cig, groups, cog]
        w = rng.standard_normal((taps, cig, groups, cog))
        s_ci, s_g, s_co = groups * cog, cog, 1
    elif layout == "transpose":  # [taps, groups, cog, cig]
        w = rng.standard_normal((taps, groups, cog, cig))
        s_ci, s_g, s_co = 1, cog * cig, cig
    elif layout == "torch conv2d":  # [groups, cog, cig, taps]
        w = rng.standard_normal((groups, cog, cig, taps))
        s_ci, s_g, s_co = taps, cog * cig * taps, cig * taps
    else:  # torch transpose: [groups, cig, cog, taps]
        w = rng.standard_normal((groups, cig, cog, taps))
        s_ci, s_g, s_co = cog * taps, cig * cog * taps, taps
    tap_step = 1 if layout.startswith("torch") else cig * groups * cog
    bases = rng.permutation(taps).astype(np.int64) * tap_step  # a transpose's phases reorder taps
    blocks = -(-cog // block)
    meta = np.array((cig, cog, groups, blocks, block, s_ci, s_g, s_co, pair), np.int64)
    n_jobs = groups * blocks * taps
    out = np.full(n_jobs * cig * block, np.nan)
    copies.pack_serial(w.ravel(), bases, meta, out, 0, n_jobs)
    expected = np.zeros((groups, blocks, taps, cig // pair, block, pair))
    flat = w.ravel()
    for g in range(groups):
        for co in range(cog):
            for k in range(taps):
                for ci in range(cig):
                    expected[g, co // block, k, ci // pair, co % block, ci % pair] = flat[
                        bases[k] + ci * s_ci + g * s_g + co * s_co]
    np.testing.assert_array_equal(out, expected.ravel())


@pytest.mark.parametrize("unpadded", [False, True])
@pytest.mark.parametrize("name", [name for name in CASES if name.startswith("outer")])
def test_outer_reads_padded_or_unpadded_source(name, unpadded, mode, monkeypatch):
    # the outer-product kernel reads the source unpadded (splitting every job's pixels at its
    # edges) or its padded copy (merging segments where that is cheaper), by the call's work
    monkeypatch.setattr(_engine, "OUTER_UNPADDED_MACS", 10**9 if unpadded else -1)
    x_shape, w_shape, stride, padding, dilation = CASES[name]
    conv, transpose = _plans(name, cached=False)
    assert conv.kind == transpose.kind == "outer"
    assert conv.meta[20] == transpose.meta[20] == unpadded
    if unpadded:
        assert conv.frame is None and transpose.frame is None
    rng = np.random.default_rng(len(name))
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    threads = min(mode, nd._jit.numba.config.NUMBA_NUM_THREADS)
    y = _engine.correlate_run(conv, x, w, None, threads)
    np.testing.assert_allclose(y, reference_conv2d(x, w, stride, padding, dilations=dilation),
                               rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(
        _engine.correlate_run(transpose, dy, w, None, threads),
        reference_conv2d_transpose(dy, w, x_shape, stride, padding, dilations=dilation),
        rtol=1e-10, atol=1e-10)


# The depthwise kernel's own paths: vector runs of four rows (3x3, stride 1), two rows (3x3 with a
# stride or dilation) or eight rows (other windows), whose last channel vector overlaps the one
# before (channels not a multiple of the lanes); one row at a time (fewer channels than a vector,
# rows near the top and bottom: four vectors, one vector, then single elements at a time) over
# split source rows (column stride > 1); rows longer than a weight tile, edge pixels, rows and
# pixels that no tap reaches, a channel multiplier (row buffer), and transposes (output column
# stride > 1); in float64 (4 lanes) and float32 (8 lanes).
DEPTHWISE = [
    # (x shape, kernel, multiplier, stride, dilation, padding)
    ((2, 11, 9, 5), 3, 1, 1, 1, "SAME"),
    ((1, 12, 7, 5), 3, 2, 1, 1, "VALID"),
    ((2, 13, 12, 6), 3, 1, 2, 1, "SAME"),
    ((1, 10, 11, 5), 3, 1, (1, 2), 1, "SAME"),
    ((1, 9, 10, 5), 3, 1, (2, 1), 1, "VALID"),
    ((1, 12, 12, 5), 3, 2, 1, 2, "SAME"),
    ((1, 12, 13, 6), 5, 1, 1, 1, "SAME"),
    ((1, 8, 9, 5), 2, 3, 3, 1, "SAME"),
    ((1, 9, 8, 5), (1, 4), 1, 1, 1, "SAME"),
    ((1, 3, 2, 5), 5, 1, 1, 1, "SAME"),
    ((1, 6, 7, 5), 3, 1, 1, 1, [[0, 0], [4, 1], [0, 5], [0, 0]]),
    ((1, 7, 120, 40), 3, 1, 1, 1, "SAME"),
    ((1, 9, 130, 36), 3, 1, 2, 1, "SAME"),
    ((1, 6, 110, 40), 5, 2, 1, 1, "VALID"),
    # found by the fuzz: transpose phases with no row or no column taps (all bias); a transpose
    # that some tap reaches, with phases that none does
    ((1, 4, 2, 5), (2, 1), 1, 3, 3, [[0, 0], [1, 3], [1, 2], [0, 0]]),
    ((1, 7, 8, 5), (2, 1), 1, 3, 1, [[0, 0], [1, 0], [0, 0], [0, 0]]),
    # eight-row runs of other windows: strided, dilated
    ((2, 20, 11, 9), 5, 1, 2, 1, "SAME"),
    ((1, 22, 10, 8), (2, 3), 1, 1, 2, "VALID"),
    # channels: fewer than a float32 vector, exactly one, one and a half
    ((2, 10, 9, 6), 3, 1, 1, 1, "SAME"),
    ((1, 11, 10, 8), 3, 1, 1, 1, "SAME"),
    ((1, 11, 12, 12), 3, 1, 2, 1, [[0, 0], [0, 4], [3, 0], [0, 0]]),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", DEPTHWISE, ids=str)
def test_depthwise_paths(case, dtype, mode, monkeypatch):
    x_shape, k, mult, stride, dilation, padding = case
    kh, kw = (k, k) if isinstance(k, int) else k
    c = x_shape[3]
    kinds = []
    run = _engine.correlate_run
    monkeypatch.setattr(_engine, "correlate_run",
                        lambda plan, *args, **kwargs: kinds.append(plan.kind)
                        or run(plan, *args, **kwargs))
    rng = np.random.default_rng(sum(x_shape))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((kh, kw, 1, c * mult)).astype(dtype)
    tol = 1e-10 if dtype == np.float64 else 1e-5
    threads = min(mode, nd._jit.numba.config.NUMBA_NUM_THREADS)
    y = nd.conv2d(x, w, stride, padding, dilations=dilation, threads=threads)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, reference_conv2d(x, w, stride, padding, dilations=dilation),
                               rtol=tol, atol=tol)
    # the transpose of a multiplier-1 depthwise convolution is depthwise too
    w1 = w[..., :c]
    y1 = rng.standard_normal(nd.conv2d(x, w1, stride, padding, dilations=dilation).shape)
    y1 = y1.astype(dtype)
    dx = nd.conv2d_transpose(y1, w1, x_shape, stride, padding, dilations=dilation,
                             threads=threads)
    np.testing.assert_allclose(
        dx, reference_conv2d_transpose(y1, w1, x_shape, stride, padding, dilations=dilation),
        rtol=tol, atol=tol)
    # (a transpose that no tap reaches is a plain fill)
    assert kinds[0] == "depthwise" and set(kinds) <= {"depthwise", "fill"}


def test_depthwise_rows_span_several_tiles():
    plan = _engine.plan_conv2d((1, 7, 120, 40), (3, 3, 1, 40), (1, 1), (1, 1), (1, 1), (7, 120),
                               40)
    assert plan.kind == "depthwise" and plan.meta[13] < 120 * 40


# NCHW: the input's layout conversion runs in the padded copy (unit steps and few channels:
# none, the planar kernel below) (or alone, for the kernels that read
# the input unpadded), in vector tiles of 8 (float32) or 4 (float64) channels x pixels, then the
# channels and pixels past the tiles; every kernel writes NCHW results itself (the depthwise one
# from its row buffer, in the same tiles when the output column stride is 1).
NCHW = [
    # (x shape NCHW, filter shape, stride, padding)
    ((2, 16, 9, 19), (3, 3, 16, 12), 1, "SAME"),  # tiled/outer, padded: conversion in the pad
    ((1, 20, 8, 8), (2, 2, 20, 9), 2, "VALID"),  # no padding: a conversion alone
    ((2, 12, 10, 11), (3, 3, 1, 12), 2, "SAME"),  # depthwise: reads the converted input
    ((1, 16, 11, 21), (5, 5, 1, 32), 1, "SAME"),  # depthwise multiplier 2, eight-row runs
    ((2, 3, 7, 5), (3, 3, 3, 2), 2, "SAME"),  # outer kernel, few channels (8 in the transpose)
    ((1, 2, 9, 11), (3, 3, 2, 5), 2, "SAME"),  # 2 and 4 channels: a vector of pixels at a time
    ((2, 4, 8, 9), (3, 3, 4, 6), 2, "VALID"),
    ((2, 1, 9, 13), (3, 3, 1, 2), 2, "SAME"),  # one input channel (row-wise kernel)
    ((1, 64, 6, 7), (3, 3, 64, 64), 1, "SAME"),  # tiled, filters in place (the transpose)
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", NCHW, ids=str)
def test_nchw_layout_conversions(case, dtype, mode, monkeypatch):
    if mode > 1:
        monkeypatch.setattr(_engine, "PARALLEL_MIN_COPY", 0)
    x_shape, w_shape, stride, padding = case
    rng = np.random.default_rng(sum(x_shape))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    threads = min(mode, nd._jit.numba.config.NUMBA_NUM_THREADS)
    to_nhwc = (0, 2, 3, 1)
    y = nd.conv2d(x, w, stride, padding, data_format="NCHW", threads=threads)
    assert y.flags.c_contiguous and y.dtype == dtype
    y_nhwc = nd.conv2d(np.ascontiguousarray(x.transpose(to_nhwc)), w, stride, padding,
                       threads=threads)
    np.testing.assert_array_equal(y, y_nhwc.transpose(0, 3, 1, 2))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dy_nhwc = np.ascontiguousarray(dy.transpose(to_nhwc))
    dx = nd.conv2d_transpose(dy, w, x_shape, stride, padding, data_format="NCHW",
                             threads=threads)
    assert dx.flags.c_contiguous
    np.testing.assert_array_equal(
        dx, nd.conv2d_transpose(dy_nhwc, w, dx.transpose(to_nhwc).shape, stride, padding,
                                threads=threads).transpose(0, 3, 1, 2))
    dw = nd.conv2d_backprop_filter(x, w_shape, dy, stride, padding, data_format="NCHW",
                                   threads=threads)
    np.testing.assert_array_equal(
        dw, nd.conv2d_backprop_filter(np.ascontiguousarray(x.transpose(to_nhwc)), w_shape,
                                      dy_nhwc, stride, padding, threads=threads))


# The outer-product kernel reads an NCHW input as it is (runs of input channels a plane apart) where
# it reads the source unpadded, unless its filters are packed in pairs (blocks of 8 of an even
# number of input channels) or its planes are a multiple of 4 KB (then converted): blocks of 32,
# 16 and 8 (single elements: odd input channels), groups, strides, dilations, transposes.
NCHW_AS_IS = [
    # (x shape NCHW, filter shape, stride, padding, dilation, whether the outer-product kernel
    # reads conv2d's input and the transpose's as they are)
    ((2, 64, 9, 11), (3, 3, 64, 32), 1, "SAME", 1, [True, True]),
    ((2, 5, 12, 10), (3, 3, 5, 7), 1, "VALID", 1, [True]),  # (the transpose: planar kernel)
    ((1, 48, 13, 14), (3, 3, 16, 96), 2, "SAME", 1, [True, True]),  # 3 groups of 32 channels
    ((2, 32, 11, 12), (3, 3, 32, 16), 1, [[0, 0], [0, 0], [3, 1], [0, 2]], 2, [True, True]),
    ((1, 24, 10, 13), (3, 3, 24, 20), 2, "SAME", 1, [False, False]),  # pairs
    ((1, 32, 32, 32), (3, 3, 32, 32), 1, "SAME", 1, [False, False]),  # 4 KB planes (f64: 8 KB)
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", NCHW_AS_IS, ids=str)
def test_outer_reads_nchw_as_is(case, dtype, mode, monkeypatch):
    x_shape, w_shape, stride, padding, dilation, as_is = case
    reads = []  # the outer-product kernel's calls: whether each reads its input as it is
    decide = _engine._reads_channels_first
    monkeypatch.setattr(_engine, "_reads_channels_first",
                        lambda plan, src: reads.append(decide(plan, src)) or reads[-1])
    rng = np.random.default_rng(sum(x_shape))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    threads = min(mode, nd._jit.numba.config.NUMBA_NUM_THREADS)
    to_nhwc, to_nchw = (0, 2, 3, 1), (0, 3, 1, 2)
    kw = {"dilations": dilation, "threads": threads}
    y = nd.conv2d(x, w, stride, padding, data_format="NCHW", **kw)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = nd.conv2d_transpose(dy, w, x_shape, stride, padding, data_format="NCHW", **kw)
    assert reads == as_is
    # the same sums in the same order as from NHWC memory
    nhwc_padding = padding if isinstance(padding, str) else [padding[i] for i in to_nhwc]
    x_nhwc = np.ascontiguousarray(x.transpose(to_nhwc))
    np.testing.assert_array_equal(y, nd.conv2d(x_nhwc, w, stride, nhwc_padding, **kw
                                               ).transpose(to_nchw))
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(dx, reference_conv2d_transpose(
        np.ascontiguousarray(dy.transpose(to_nhwc)), w, x_nhwc.shape, stride, nhwc_padding,
        dilations=dilation).transpose(to_nchw), rtol=tol, atol=tol)


# NCHW correlations of unit steps and few channels read the input's planes and write the
# result's (the planar kernel): rows shorter than a tile, of whole tiles and longer (a last tile
# that overlaps the one before it), dilations, padding wider than the kernel, more input channels
# into few outputs; an NCHW-labelled view of NHWC memory (PyTorch's channels_last) takes the
# NHWC kernels instead.
PLANAR = [
    # (x shape NCHW, filter shape [fh, fw, C, out], padding, dilation)
    ((2, 1, 9, 13), (3, 3, 1, 32), "SAME", 1),
    ((1, 3, 5, 16), (5, 5, 3, 7), "SAME", 1),
    ((2, 2, 6, 40), (3, 4, 2, 13), [[0, 0], [0, 0], [4, 1], [2, 5]], 1),
    ((1, 3, 7, 17), (3, 3, 3, 2), "VALID", 2),
    ((3, 6, 4, 9), (2, 3, 6, 5), "SAME", 1),
    ((1, 1, 1, 1), (3, 3, 1, 1), "SAME", 1),
    # fewer output channels than a tile: bands of rows (6, 3 and 2 per tile channel), a last band
    # that overlaps the one before it, fewer rows than a band, row dilation (no band)
    ((2, 1, 23, 37), (15, 15, 1, 1), "SAME", 1),
    ((1, 1, 9, 20), (5, 4, 1, 2), "VALID", 1),
    ((2, 2, 7, 18), (7, 3, 2, 3), "SAME", 1),
    ((1, 1, 4, 50), (3, 3, 1, 1), "VALID", 1),
    ((1, 1, 12, 12), (3, 3, 1, 1), "SAME", 2),
    # depthwise (each plane with its channel's filters), channel multipliers 1 and 2
    ((2, 3, 17, 23), (5, 5, 1, 3), "SAME", 1),
    ((1, 2, 9, 40), (3, 4, 1, 4), [[0, 0], [0, 0], [1, 2], [0, 3]], 1),
    ((1, 4, 6, 9), (3, 3, 1, 4), "VALID", (1, 2)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", PLANAR, ids=str)
def test_planar_kernel(case, dtype, mode):
    _check_planar(case, dtype, min(mode, nd._jit.numba.config.NUMBA_NUM_THREADS))


@pytest.mark.parametrize("case", [PLANAR[0], PLANAR[6], PLANAR[11]], ids=str)
def test_planar_blocking_for_many_threads(case, many_threads):
    _check_planar(case, np.float64, 1)


def _check_planar(case, dtype, threads):
    """conv2d and its transpose of PLANAR ``case`` (NCHW) against the references."""
    x_shape, w_shape, padding, dilation = case
    rng = np.random.default_rng(sum(x_shape))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    plan = nd.api._conv2d_geometry(x.shape, x.dtype, w.shape, w.dtype, 1, padding, "NCHW",
                                   dilation)[3]
    assert plan.planar is not None
    padding_nhwc = padding if isinstance(padding, str) else [padding[i] for i in (0, 2, 3, 1)]
    expected = reference_conv2d(x_nhwc, w, 1, padding_nhwc, dilations=dilation
                                ).transpose(0, 3, 1, 2)
    for x_in in (x, x_nhwc.transpose(0, 3, 1, 2)):  # planes; NHWC memory
        y = nd.conv2d(x_in, w, 1, padding, data_format="NCHW", dilations=dilation,
                      threads=threads)
        assert y.flags.c_contiguous
        np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)
    dy = rng.standard_normal(expected.shape).astype(dtype)
    np.testing.assert_allclose(
        nd.conv2d_transpose(dy, w, x_shape, 1, padding, data_format="NCHW",
                            dilations=dilation, threads=threads),
        reference_conv2d_transpose(np.ascontiguousarray(dy.transpose(0, 2, 3, 1)), w,
                                   x_nhwc.shape, 1, padding_nhwc, dilations=dilation
                                   ).transpose(0, 3, 1, 2), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_planar_bands_keep_inf_and_nan_where_they_are(dtype, mode):
    # a band's tiles multiply rows outside a row's window by zero weights: a source with Inf or
    # NaN takes one row per tile, so that they reach the rows whose windows hold them, no others
    x = np.random.default_rng(5).standard_normal((2, 1, 30, 40)).astype(dtype)
    x[0, 0, 12, 7], x[1, 0, 3, 30], x[1, 0, 20, 0] = np.inf, -np.inf, np.nan
    w = np.random.default_rng(6).standard_normal((3, 5, 1, 1)).astype(dtype)
    plan = nd.api._conv2d_geometry(x.shape, x.dtype, w.shape, w.dtype, 1, "SAME", "NCHW",
                                   None)[3]
    assert plan.planar is not None and plan.planar.exact is not None  # a band of rows
    threads = min(mode, nd._jit.numba.config.NUMBA_NUM_THREADS)
    y = nd.conv2d(x, w, 1, "SAME", data_format="NCHW", threads=threads)
    expected = nd.conv2d(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), w, 1, "SAME",
                         threads=threads).transpose(0, 3, 1, 2)  # the row-wise kernel
    assert np.isnan(y).any() and np.isinf(y).any()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    np.testing.assert_allclose(y, expected, rtol=1e-5)  # Inf where Inf, with its sign


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", [
    # one channel in and out, the same memory in NHWC and NCHW: windows of 5x5 and more
    ((2, 20, 33, 1), (7, 9, 1, 1), "SAME"),
    ((2, 20, 33, 1), (5, 5, 1, 1), "VALID"),
    # per-channel filters of 7x7 and more: the input copied into planes, the result out of them
    ((2, 17, 23, 3), (9, 9, 1, 3), "SAME"),
    ((2, 13, 19, 3), (7, 7, 1, 3), "SAME"),
    ((1, 20, 40, 2), (9, 10, 1, 4), "VALID"),  # a channel multiplier: its transpose, 2 groups of 2
    ((1, 30, 31, 4), (10, 9, 1, 4), [[0, 0], [3, 1], [0, 5], [0, 0]]),
    ((1, 9, 12, 3), (11, 11, 1, 3), "SAME"),  # fewer rows than the window
], ids=str)
def test_nhwc_takes_the_planar_bands(case, dtype, mode):
    # NHWC calls on the planar kernel's bands of rows, conv2d and its transpose; Inf and NaN stay
    # where they are
    x_shape, w_shape, padding = case
    rng = np.random.default_rng(sum(x_shape))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    plan = nd.api._conv2d_geometry(x.shape, x.dtype, w.shape, w.dtype, 1, padding, "NHWC",
                                   None)[3]
    assert plan.planar is not None and plan.planar.nhwc
    threads = min(mode, nd._jit.numba.config.NUMBA_NUM_THREADS)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    y = nd.conv2d(x, w, 1, padding, threads=threads)
    assert y.flags.c_contiguous
    np.testing.assert_allclose(y, reference_conv2d(x, w, 1, padding), rtol=tol, atol=tol)
    dy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(nd.conv2d_transpose(dy, w, x.shape, 1, padding, threads=threads),
                               reference_conv2d_transpose(dy, w, x.shape, 1, padding),
                               rtol=tol, atol=tol)
    x[0, 5, 3, -1], x[-1, -1, 0, 0] = np.inf, np.nan
    y, expected = nd.conv2d(x, w, 1, padding, threads=threads), reference_conv2d(x, w, 1, padding)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(expected))


def _window(draw, max_pad: int = 5) -> dict:
    """Any window, dilation and padding (explicit up to ``max_pad``), a dtype and a data seed."""
    pads = [draw(st.integers(0, max_pad)) for _ in range(4)]
    return dict(
        kernel=(draw(st.integers(1, 6)), draw(st.integers(1, 6))),
        dilations=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        padding=draw(st.sampled_from(["SAME", "VALID", [[0, 0], pads[:2], pads[2:], [0, 0]]])),
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


#: The property tests that force a kernel (they patch the engine: a function-scoped fixture).
FORCED_KERNEL = settings(deadline=None, max_examples=60,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                HealthCheck.function_scoped_fixture])


@st.composite
def planar_geometries(draw):
    """Unit-step geometries for the planar kernel: any window, dilation and padding, empty
    images (explicit padding makes their results)."""
    depthwise = draw(st.booleans())  # each channel its own filters, a multiplier of 1 to 3
    return dict(
        x_shape=(draw(st.integers(0, 2)), draw(st.integers(1, 4 if depthwise else 5)),
                 draw(st.integers(0, 8)), draw(st.integers(0, 40))),
        out_channels=draw(st.integers(1, 3 if depthwise else 14)),
        depthwise=depthwise,
        **_window(draw),
    )


@FORCED_KERNEL
@given(g=planar_geometries())
def test_planar_matches_reference(g, mode, monkeypatch):
    # every NCHW call of unit steps on the planar kernel, conv2d (with a bias) and its transpose
    monkeypatch.setattr(_engine, "PLANAR_MAX_CHANNELS", 64)
    (n, c, h, w_), (kh, kw), padding = g["x_shape"], g["kernel"], g["padding"]
    groups = c if g["depthwise"] else 1
    w_shape = (kh, kw, c // groups, g["out_channels"] * groups)
    pads = (padding,) * 2 if isinstance(padding, str) else (tuple(padding[1]), tuple(padding[2]))
    (oh, pt, _), (ow, pl, _) = (
        nd.sizes.window(size, k, 1, p, d) for size, k, p, d in
        zip((h, w_), (kh, kw), pads, g["dilations"], strict=True))
    assume(oh > 0 and ow > 0)
    conv = _engine.plan_conv2d.__wrapped__((n, h, w_, c), w_shape, (1, 1), g["dilations"],
                                           (pt, pl), (oh, ow), groups)
    transpose = _engine.plan_input_grad.__wrapped__(
        (n, oh, ow, w_shape[3]), w_shape, (h, w_), (1, 1), g["dilations"], (pt, pl), groups)
    assert all(plan.kind == "fill" or plan.planar is not None for plan in (conv, transpose))
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((n, c, h, w_)).astype(g["dtype"])
    w = rng.standard_normal(w_shape).astype(g["dtype"])
    bias = rng.standard_normal(w_shape[3]).astype(g["dtype"])
    dy = rng.standard_normal((n, w_shape[3], oh, ow)).astype(g["dtype"])
    tol = 1e-10 if g["dtype"] == np.float64 else 1e-4
    threads = min(mode, nd._jit.numba.config.NUMBA_NUM_THREADS)
    to_nhwc = (0, 2, 3, 1)
    x_nhwc, dy_nhwc = (np.ascontiguousarray(a.transpose(to_nhwc)) for a in (x, dy))
    y = _engine.correlate_run(conv, x.transpose(to_nhwc), w, bias, threads, channels_first=True)
    np.testing.assert_allclose(
        y, reference_conv2d(x_nhwc, w, 1, padding, dilations=g["dilations"]) + bias,
        rtol=tol, atol=tol)
    dx = _engine.correlate_run(transpose, dy.transpose(to_nhwc), w, None, threads,
                               channels_first=True)
    np.testing.assert_allclose(
        dx, reference_conv2d_transpose(dy_nhwc, w, x_nhwc.shape, 1, padding,
                                       dilations=g["dilations"]), rtol=tol, atol=tol)


@numba.njit(cache=False)
def _transpose(src, s0, s_step, dst, d0, d_step, rows, cols):
    copies.transpose(src, s0, s_step, dst, d0, d_step, rows, cols)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_register_tile_transpose(dtype):
    """Whole tiles, last tiles overlapping the ones before, fewer rows or columns than a tile;
    inside larger strides, nothing written outside the block."""
    rng = np.random.default_rng(5)
    for rows in (0, 1, 3, 4, 7, 8, 9, 16, 19):
        for cols in (0, 1, 3, 4, 7, 8, 9, 16, 19):
            s_step, d_step = cols + 3, rows + 5
            src = rng.standard_normal(2 + rows * s_step).astype(dtype)
            dst = np.full(7 + cols * d_step, -1.0, dtype)
            _transpose(src, 2, s_step, dst, 7, d_step, rows, cols)
            expected = np.full_like(dst, -1.0)
            block = expected[7:].reshape(cols, d_step)
            block[:, :rows] = src[2:].reshape(rows, s_step)[:, :cols].T
            np.testing.assert_array_equal(dst, expected, f"{rows} x {cols}")


@pytest.mark.parametrize("features, expected", [
    ("+avx2,+fma,+avx512f,+avx512vl", '"target-features"="+avx2,+fma,+avx512f,+avx512vl,-avx512f"'),
    ("+avx2,+fma,-avx512f", None),
    ("", None),
])
def test_vex_only_drops_avx512_where_the_target_has_it(features, expected):
    """The micro-kernel's function keeps the target's features, less AVX-512 where present."""
    class Context:
        def codegen(self):
            return types.SimpleNamespace(_tm_features=features)

    function = ir.Function(ir.Module(), ir.FunctionType(ir.VoidType(), []), "f")
    simd.vex_only(Context(), function)
    assert set(function.attributes) == ({expected} if expected else set())


@pytest.mark.parametrize("features, registers", [
    ("+avx2,+fma,+avx512f,+avx512vl", 32),
    ("+avx2,+fma,+avx512f,-avx512vl", 16),
    ("+avx2,+fma,-avx512f", 16),
    ("", 16),
])
def test_wide_tiles_only_where_the_target_has_avx512_registers(features, registers):
    assert simd._registers(features.split(",")) == registers


@st.composite
def depthwise_geometries(draw):
    """Depthwise calls that fill vectors (the vector runs): any window, padding and layout."""
    c = draw(st.integers(4, 20))
    return dict(
        x_shape=(draw(st.integers(0, 2)), draw(st.integers(0, 14)), draw(st.integers(0, 14)), c),
        mult=draw(st.integers(1, 2)),
        strides=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        data_format=draw(st.sampled_from(["NHWC", "NCHW"])),
        **_window(draw, max_pad=4),
    )


@settings(deadline=None, max_examples=80,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(depthwise_geometries())
def test_depthwise_matches_reference(g):
    """conv2d, its transpose and its filter gradient (vector runs, a ring of padded rows)."""
    n, h, w_, c = g["x_shape"]
    (kh, kw), padding = g["kernel"], g["padding"]
    args = (g["strides"], padding)
    pads = (padding,) * 2 if isinstance(padding, str) else (tuple(padding[1]), tuple(padding[2]))
    try:
        oh, ow = (reference_output_size(size, k, s, p, d) for size, k, s, p, d in
                  zip((h, w_), (kh, kw), g["strides"], pads, g["dilations"], strict=True))
    except ValueError:
        assume(False)
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal(g["x_shape"]).astype(g["dtype"])
    w = rng.standard_normal((kh, kw, 1, c * g["mult"])).astype(g["dtype"])
    tol = 1e-10 if g["dtype"] == np.float64 else 1e-4
    w1 = w[..., :c]
    dy = rng.standard_normal((n, oh, ow, c)).astype(g["dtype"])
    dy_all = rng.standard_normal((n, oh, ow, c * g["mult"])).astype(g["dtype"])  # for w's gradient
    expected = (reference_conv2d(x, w, *args, dilations=g["dilations"]),
                reference_conv2d_transpose(dy, w1, x.shape, *args, dilations=g["dilations"]))
    expected_dw = reference_conv2d_backprop_filter(x, w.shape, dy_all, *args,
                                                   dilations=g["dilations"])
    dw_scale = reference_conv2d_backprop_filter(np.abs(x), w.shape, np.abs(dy_all), *args,
                                                dilations=g["dilations"])
    if g["data_format"] == "NCHW":  # the same calls on NCHW arrays (the kernel writes NCHW)
        nchw = (0, 3, 1, 2)
        x, dy, dy_all = (np.ascontiguousarray(a.transpose(nchw)) for a in (x, dy, dy_all))
        if not isinstance(padding, str):
            args = (g["strides"], [padding[i] for i in nchw])
        expected = tuple(e.transpose(nchw) for e in expected)
    kwargs = dict(dilations=g["dilations"], data_format=g["data_format"])
    y = nd.conv2d(x, w, *args, **kwargs)
    np.testing.assert_allclose(y, expected[0], rtol=tol, atol=tol)
    np.testing.assert_allclose(nd.conv2d_transpose(dy, w1, x.shape, *args, **kwargs),
                               expected[1], rtol=tol, atol=tol)
    np.testing.assert_allclose(nd.conv2d_backprop_filter(x, w.shape, dy_all, *args, **kwargs),
                               expected_dw, rtol=tol, atol=tol * max(1.0, dw_scale.max(initial=0)))


@st.composite
def tiled_geometries(draw):
    """Any geometry, for the tiled kernel: segments of pixels down to single pixels, tiles that
    span rows, kernels wider than the image, padding wider than the kernel."""
    groups = draw(st.integers(1, 2))
    return dict(
        x_shape=(draw(st.integers(1, 2)), draw(st.integers(1, 12)), draw(st.integers(1, 12)),
                 groups * draw(st.integers(1, 12))),
        groups=groups,
        out_channels=groups * draw(st.integers(1, 4)),
        strides=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        **_window(draw),
    )


@FORCED_KERNEL
@given(g=tiled_geometries())
def test_tiled_matches_reference(g, mode, monkeypatch):
    # every call on the tiled kernel (it reads the source unpadded), conv2d and its transpose
    monkeypatch.setattr(_engine, "_choose_kernel", lambda *args: "tiled")
    (n, h, w_, c), (kh, kw), groups = g["x_shape"], g["kernel"], g["groups"]
    padding = g["padding"]
    w_shape = (kh, kw, c // groups, g["out_channels"])
    pads = (padding,) * 2 if isinstance(padding, str) else (tuple(padding[1]), tuple(padding[2]))
    (oh, pt, _), (ow, pl, _) = (
        nd.sizes.window(size, k, s, p, d) for size, k, s, p, d in
        zip((h, w_), (kh, kw), g["strides"], pads, g["dilations"], strict=True))
    assume(oh > 0 and ow > 0)
    conv = _engine.plan_conv2d.__wrapped__(g["x_shape"], w_shape, g["strides"], g["dilations"],
                                           (pt, pl), (oh, ow), groups)
    transpose = _engine.plan_input_grad.__wrapped__(
        (n, oh, ow, w_shape[3]), w_shape, (h, w_), g["strides"], g["dilations"], (pt, pl),
        groups)
    assert {conv.kind, transpose.kind} <= {"tiled", "fill"}
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal(g["x_shape"]).astype(g["dtype"])
    w = rng.standard_normal(w_shape).astype(g["dtype"])
    dy = rng.standard_normal((n, oh, ow, w_shape[3])).astype(g["dtype"])
    tol = 1e-10 if g["dtype"] == np.float64 else 1e-4
    threads = min(mode, nd._jit.numba.config.NUMBA_NUM_THREADS)
    args = (g["strides"], padding)
    np.testing.assert_allclose(
        _engine.correlate_run(conv, x, w, None, threads),
        reference_conv2d(x, w, *args, dilations=g["dilations"]), rtol=tol, atol=tol)
    np.testing.assert_allclose(
        _engine.correlate_run(transpose, dy, w, None, threads),
        reference_conv2d_transpose(dy, w, x.shape, *args, dilations=g["dilations"]),
        rtol=tol, atol=tol)
