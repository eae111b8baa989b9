"""Adjoint identities, checked by hypothesis over random geometries (float64).

<conv2d(x, w), y> == <x, conv2d_transpose(y, w, x.shape)>
                 == <w, conv2d_backprop_filter(x, w.shape, y)>
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import numbadeconv as nd
from numbadeconv.testing import reference_output_size

SETTINGS = settings(
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

pad_amount = st.integers(0, 3)


@st.composite
def geometries(draw):
    data_format = draw(st.sampled_from(["NHWC", "NCHW"]))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(0 if groups == 1 else 1, 3))  # filters.shape[2] == 0 needs C == 0
    og = draw(st.integers(0, 3))
    n = draw(st.integers(0, 2))
    h, w = draw(st.integers(0, 9)), draw(st.integers(0, 9))
    fh, fw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    mode = draw(st.sampled_from(["SAME", "VALID", "EXPLICIT"]))
    if mode == "EXPLICIT":
        top, bottom, left, right = (draw(pad_amount) for _ in range(4))
        pad_h, pad_w = (top, bottom), (left, right)
        if data_format == "NHWC":
            padding = [[0, 0], [top, bottom], [left, right], [0, 0]]
        else:
            padding = [[0, 0], [0, 0], [top, bottom], [left, right]]
    else:
        padding = pad_h = pad_w = mode
    try:
        oh = reference_output_size(h, fh, sh, pad_h, dh)
        ow = reference_output_size(w, fw, sw, pad_w, dw)
    except ValueError:
        assume(False)
    c, o = groups * cg, groups * og
    if data_format == "NHWC":
        x_shape, y_shape = (n, h, w, c), (n, oh, ow, o)
    else:
        x_shape, y_shape = (n, c, h, w), (n, o, oh, ow)
    strides = draw(
        st.sampled_from([(sh, sw), [1, sh, sw, 1] if data_format == "NHWC" else [1, 1, sh, sw]])
    )
    dilations = (dh, dw) if dh != dw or draw(st.booleans()) else dh
    return {
        "x_shape": x_shape,
        "w_shape": (fh, fw, cg, o),
        "y_shape": y_shape,
        "args": (strides, padding, data_format, dilations),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def arrays(geometry):
    rng = np.random.default_rng(geometry["seed"])
    return tuple(rng.standard_normal(geometry[k]) for k in ("x_shape", "w_shape", "y_shape"))


def assert_inner_products_equal(lhs, rhs, scale, what):
    assert abs(lhs - rhs) <= 1e-10 * scale + 1e-300, f"{what}: {lhs!r} != {rhs!r} (scale {scale})"


@SETTINGS
@given(geometries())
def test_transpose_is_adjoint_of_conv2d(geometry):
    x, w, y = arrays(geometry)
    args = geometry["args"]
    forward = nd.conv2d(x, w, *args)
    assert forward.shape == geometry["y_shape"]
    transpose = nd.conv2d_transpose(y, w, x.shape, *args)
    assert transpose.shape == x.shape
    scale = np.sum(np.abs(nd.conv2d(np.abs(x), np.abs(w), *args)) * np.abs(y))
    assert_inner_products_equal(
        np.vdot(forward, y), np.vdot(x, transpose), scale, f"conv2d/conv2d_transpose {geometry}"
    )
    backprop = nd.conv2d_backprop_input(x.shape, w, y, *args)
    np.testing.assert_array_equal(backprop, transpose)


@SETTINGS
@given(geometries())
def test_backprop_filter_is_adjoint_of_conv2d(geometry):
    x, w, y = arrays(geometry)
    args = geometry["args"]
    forward = nd.conv2d(x, w, *args)
    dw = nd.conv2d_backprop_filter(x, w.shape, y, *args)
    assert dw.shape == w.shape
    scale = np.sum(np.abs(nd.conv2d(np.abs(x), np.abs(w), *args)) * np.abs(y))
    assert_inner_products_equal(
        np.vdot(forward, y), np.vdot(w, dw), scale, f"conv2d/conv2d_backprop_filter {geometry}"
    )


@pytest.mark.parametrize("shape", [(0, 4, 4, 2), (1, 0, 4, 2), (1, 4, 0, 2), (1, 4, 4, 0)])
def test_zero_sized_inputs(shape):
    cg = 2 if shape[3] else 0
    w = np.ones((3, 3, cg, 5))
    y = nd.conv2d(np.ones(shape), w, 2, "SAME")
    n, h, wd, _ = shape
    assert y.shape == (n, (h + 1) // 2, (wd + 1) // 2, 5)
    assert not y.any()
    dx = nd.conv2d_transpose(np.ones(y.shape), w, shape, 2, "SAME")
    assert dx.shape == shape
    dw = nd.conv2d_backprop_filter(np.ones(shape), w.shape, np.ones(y.shape), 2, "SAME")
    assert dw.shape == w.shape
    assert not dw.any()
