"""Self-checks of the NumPy oracle in numbadeconv.testing, independent of the fast code.

Each identity here is derived from the definition, not from the implementation: a wrong
oracle would make every other test meaningless.
"""

import numpy as np
import pytest

from numbadeconv.testing import (
    reference_conv2d,
    reference_conv2d_backprop_filter,
    reference_conv2d_transpose,
    reference_output_size,
)

PADDINGS = ["SAME", "VALID", [[0, 0], [2, 1], [0, 3], [0, 0]]]


def to_nchw(pad):
    return pad if isinstance(pad, str) else [pad[0], pad[3], pad[1], pad[2]]


def basis(shape):
    for index in np.ndindex(*shape):
        e = np.zeros(shape)
        e[index] = 1.0
        yield index, e


def test_tutorial_numbers():
    k = np.ones((3, 3, 3, 1))
    y2 = reference_conv2d(np.ones((1, 5, 5, 3)), k, [1, 2, 2, 1], "SAME")
    np.testing.assert_array_equal(y2[0, :, :, 0], [[12, 18, 12], [18, 27, 18], [12, 18, 12]])
    y3 = reference_conv2d_transpose(y2, k, [1, 5, 5, 3], [1, 2, 2, 1], "SAME")
    grid = [
        [12, 30, 18, 30, 12],
        [30, 75, 45, 75, 30],
        [18, 45, 27, 45, 18],
        [30, 75, 45, 75, 30],
        [12, 30, 18, 30, 12],
    ]
    for c in range(3):
        np.testing.assert_array_equal(y3[0, :, :, c], grid)
    y4 = reference_conv2d(np.ones((1, 6, 6, 3)), k, [1, 2, 2, 1], "SAME")
    np.testing.assert_array_equal(y4[0, :, :, 0], [[27, 27, 18], [27, 27, 18], [18, 18, 12]])
    y1 = reference_conv2d_transpose(np.ones((1, 3, 3, 1)), k, [1, 6, 6, 3], [1, 2, 2, 1], "SAME")
    row, double = [1, 1, 2, 1, 2, 1], [2, 2, 4, 2, 4, 2]
    np.testing.assert_array_equal(y1[0, :, :, 0], [row, row, double, row, double, row])
    with pytest.raises(ValueError, match="output_shape"):
        reference_conv2d_transpose(np.ones((1, 3, 3, 1)), k, [1, 10, 10, 3], 2, "SAME")


@pytest.mark.parametrize(
    ("in_size", "kernel", "stride", "padding", "dilation", "expected"),
    [
        (5, 3, 2, "SAME", 1, 3),
        (6, 3, 2, "SAME", 1, 3),
        (1, 4, 2, "VALID", 1, 0),  # C++ truncation: trunc(-1 / 2) == 0
        (3, 4, 3, "VALID", 1, 0),
        (7, 3, 2, "VALID", 2, 2),
        (0, 3, 2, "SAME", 1, 0),
        (4, 3, 2, (1, 2), 1, 3),
        (2, 5, 1, (0, 2), 1, 0),
    ],
)
def test_reference_output_size(in_size, kernel, stride, padding, dilation, expected):
    assert reference_output_size(in_size, kernel, stride, padding, dilation) == expected


@pytest.mark.parametrize(
    "args", [(0, 4, 2, "VALID"), (1, 5, 1, "VALID"), (3, 3, 1, "VALID", 2), (0, 3, 1, (0, 1))]
)
def test_reference_output_size_negative_raises(args):
    with pytest.raises(ValueError):
        reference_output_size(*args)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(("strides", "dilations"), [(1, 1), ((2, 3), 1), (1, 2), (2, (2, 1))])
def test_transpose_and_filter_gradient_are_adjoints_brute_force(rng, padding, strides, dilations):
    """Check every entry of both adjoints against <conv(x, w), y> with basis vectors."""
    x = rng.standard_normal((2, 6, 5, 4))
    w = rng.standard_normal((3, 2, 2, 4))  # 2 groups
    y = rng.standard_normal(reference_conv2d(x, w, strides, padding, dilations=dilations).shape)
    dx = reference_conv2d_transpose(y, w, x.shape, strides, padding, dilations=dilations)
    dw = reference_conv2d_backprop_filter(x, w.shape, y, strides, padding, dilations=dilations)
    for index, e in basis(x.shape):
        expected = np.sum(reference_conv2d(e, w, strides, padding, dilations=dilations) * y)
        assert dx[index] == pytest.approx(expected, abs=1e-12)
    for index, e in basis(w.shape):
        expected = np.sum(reference_conv2d(x, e, strides, padding, dilations=dilations) * y)
        assert dw[index] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("padding", ["VALID", [[0, 0], [2, 1], [0, 3], [0, 0]]])
def test_strided_is_subsampled_and_dilated_is_zero_inserted(rng, padding):
    x = rng.standard_normal((1, 9, 8, 2))
    w = rng.standard_normal((3, 2, 2, 3))
    dilated = np.zeros((5, 3, 2, 3))
    dilated[::2, ::2] = w
    full = reference_conv2d(x, dilated, 1, padding)
    np.testing.assert_allclose(reference_conv2d(x, w, 1, padding, dilations=2), full, atol=1e-12)
    got = reference_conv2d(x, w, (2, 3), padding, dilations=2)
    np.testing.assert_allclose(got, full[:, ::2, ::3], atol=1e-12)


def test_direct_sum_definition(rng):
    """SAME, stride 2, dilation 2, 3 groups: compare with the literal sextuple sum."""
    x = rng.standard_normal((1, 5, 4, 3))
    w = rng.standard_normal((2, 3, 1, 6))
    got = reference_conv2d(x, w, 2, "SAME", dilations=2)
    # ek = (3, 5); out = (3, 2); pad_needed = (2*2+3-5, 1*2+5-4) = (2, 3) -> top 1, left 1.
    assert got.shape == (1, 3, 2, 6)
    expected = np.zeros_like(got)
    for oy, ox, o, i, j in np.ndindex(3, 2, 6, 2, 3):
        y, xx = oy * 2 - 1 + 2 * i, ox * 2 - 1 + 2 * j
        if 0 <= y < 5 and 0 <= xx < 4:
            expected[0, oy, ox, o] += x[0, y, xx, o // 2] * w[i, j, 0, o]
    np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("padding", PADDINGS)
def test_nchw_is_transposed_nhwc(rng, padding):
    x = rng.standard_normal((2, 7, 6, 4))
    w = rng.standard_normal((3, 3, 2, 4))
    y = reference_conv2d(x, w, [1, 2, 1, 1], padding, dilations=[1, 1, 2, 1])
    nchw = reference_conv2d(
        x.transpose(0, 3, 1, 2), w, [1, 1, 2, 1], to_nchw(padding), "NCHW", [1, 1, 1, 2]
    )
    np.testing.assert_allclose(nchw, y.transpose(0, 3, 1, 2), atol=1e-12)
    dx = reference_conv2d_transpose(y, w, x.shape, (2, 1), padding, dilations=(1, 2))
    dx_nchw = reference_conv2d_transpose(
        nchw, w, [2, 4, 7, 6], (2, 1), to_nchw(padding), "NCHW", (1, 2)
    )
    np.testing.assert_allclose(dx_nchw, dx.transpose(0, 3, 1, 2), atol=1e-12)
    dw = reference_conv2d_backprop_filter(x, w.shape, y, (2, 1), padding, dilations=(1, 2))
    dw_nchw = reference_conv2d_backprop_filter(
        x.transpose(0, 3, 1, 2), w.shape, nchw, (2, 1), to_nchw(padding), "NCHW", (1, 2)
    )
    np.testing.assert_allclose(dw_nchw, dw, atol=1e-12)


def test_zero_sized():
    no_channels = reference_conv2d(np.ones((1, 3, 3, 0)), np.ones((2, 2, 0, 4)), 1, "SAME")
    assert no_channels.shape == (1, 3, 3, 4) and not no_channels.any()
    no_batch = reference_conv2d(np.ones((0, 3, 3, 2)), np.ones((2, 2, 2, 4)), 1, "VALID")
    assert no_batch.shape == (0, 2, 2, 4)
    no_rows = reference_conv2d(np.ones((1, 3, 4, 2)), np.ones((4, 2, 2, 1)), 2, "VALID")
    assert no_rows.shape == (1, 0, 2, 1)
    dx = reference_conv2d_transpose(no_rows, np.ones((4, 2, 2, 1)), [1, 3, 4, 2], 2, "VALID")
    assert dx.shape == (1, 3, 4, 2) and not dx.any()


def test_reference_rejects_bad_arguments():
    x, w = np.ones((1, 4, 4, 2)), np.ones((2, 2, 2, 2))
    with pytest.raises(TypeError):
        reference_conv2d(x.astype(complex), w, 1, "SAME")
    with pytest.raises(ValueError):
        reference_conv2d(np.ones((1, 4, 4, 3)), w, 1, "SAME")  # 3 not a multiple of 2
    with pytest.raises(ValueError):
        reference_conv2d(np.ones((1, 4, 4, 4)), np.ones((2, 2, 2, 3)), 1, "SAME")  # 3 % 2 groups
    with pytest.raises(ValueError):
        reference_conv2d(x, w, [2, 2, 2, 2], "SAME")
    with pytest.raises(ValueError):
        reference_conv2d(x, w, 0, "SAME")
    with pytest.raises(ValueError):
        reference_conv2d(x, w, 1, [[1, 0], [0, 0], [0, 0], [0, 0]])
    with pytest.raises(ValueError):
        reference_conv2d(x, w, 1, "FULL")
