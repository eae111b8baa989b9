"""Numerical edge cases: NaN/Inf propagate only where a window reads them; float32 stays accurate
on long reductions. (Denormal timings are measured by hand, not asserted: see the report.)"""

import numpy as np
import pytest

import numbadeconv as nd
from numbadeconv.testing import (
    reference_conv2d,
    reference_conv2d_backprop_filter,
    reference_conv2d_transpose,
)

KW = dict(strides=2, padding="SAME", dilations=1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("threads", [1, None])
def test_non_finite_values_reach_exactly_the_windows_that_read_them(rng, bad, threads):
    x = rng.standard_normal((2, 13, 11, 5)).astype(np.float32)
    f = rng.standard_normal((3, 3, 5, 4)).astype(np.float32)
    x[0, 4, 7, 2] = bad
    x[1, 0, 0, 0] = bad
    y = nd.conv2d(x, f, threads=threads, **KW)
    ref = reference_conv2d(x, f, **KW)
    assert np.array_equal(np.isnan(y), np.isnan(ref))
    assert np.array_equal(np.isposinf(y), np.isposinf(ref))
    assert np.array_equal(np.isneginf(y), np.isneginf(ref))
    assert 0 < np.count_nonzero(~np.isfinite(y)) < y.size

    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy[1, 2, 3, 1] = bad
    dx = nd.conv2d_transpose(dy, f, x.shape, threads=threads, **KW)
    ref = reference_conv2d_transpose(dy, f, x.shape, **KW)
    assert np.array_equal(np.isfinite(dx), np.isfinite(ref))
    assert np.array_equal(np.isnan(dx), np.isnan(ref))
    assert 0 < np.count_nonzero(~np.isfinite(dx)) < dx.size

    dw = nd.conv2d_backprop_filter(x, f.shape, np.ones_like(y), threads=threads, **KW)
    ref = reference_conv2d_backprop_filter(x, f.shape, np.ones_like(y), **KW)
    assert np.array_equal(np.isfinite(dw), np.isfinite(ref))
    assert np.array_equal(np.isnan(dw), np.isnan(ref))


def test_float32_long_reductions_stay_accurate(rng):
    # Cin * kh * kw = 4096 * 9 = 36864 terms per output element
    x = rng.standard_normal((1, 6, 6, 4096)).astype(np.float32)
    f = rng.standard_normal((3, 3, 4096, 8)).astype(np.float32)
    y = nd.conv2d(x, f, 1, "VALID")
    ref = reference_conv2d(x.astype(np.float64), f.astype(np.float64), 1, "VALID")
    scale = reference_conv2d(np.abs(x).astype(np.float64), np.abs(f).astype(np.float64), 1,
                             "VALID")
    assert np.max(np.abs(y - ref) / scale) < 1e-4
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = nd.conv2d_transpose(dy, f, x.shape, 1, "VALID")
    ref = reference_conv2d_transpose(dy.astype(np.float64), f.astype(np.float64), x.shape, 1,
                                     "VALID")
    assert np.max(np.abs(dx - ref)) / np.max(np.abs(ref)) < 1e-4
    dw = nd.conv2d_backprop_filter(x, f.shape, dy, 1, "VALID")
    ref = reference_conv2d_backprop_filter(x.astype(np.float64), f.shape,
                                           dy.astype(np.float64), 1, "VALID")
    assert np.max(np.abs(dw - ref)) / np.max(np.abs(ref)) < 1e-4


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("multiplier", [1, 2])
def test_non_finite_output_gradient_of_a_depthwise_filter_gradient(rng, bad, multiplier):
    # the depthwise filter gradient reads the input unpadded: its padding (rows and columns)
    # must still multiply dy, as the reference's zero padding does (zero times Inf is NaN)
    x = rng.standard_normal((2, 9, 10, 8)).astype(np.float32)
    w_shape = (3, 3, 1, 8 * multiplier)
    dy = rng.standard_normal((2, 9, 10, 8 * multiplier)).astype(np.float32)
    dy[0, 0, 0, 3] = bad  # reads padding through the top and left taps
    dy[1, 4, 9, 5] = bad  # through the right taps
    dw = nd.conv2d_backprop_filter(x, w_shape, dy, 1, "SAME")
    ref = reference_conv2d_backprop_filter(x, w_shape, dy, 1, "SAME")
    assert np.array_equal(np.isnan(dw), np.isnan(ref))
    assert np.array_equal(np.isposinf(dw) | np.isneginf(dw), np.isposinf(ref) | np.isneginf(ref))
    assert 0 < np.count_nonzero(~np.isfinite(dw)) < dw.size
