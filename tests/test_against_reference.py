"""Compare the four operations of numbadeconv with the naive NumPy oracle.

Errors are measured against a per-element bound: the same operation applied to absolute
values, i.e. the sum of the absolute values of the terms each result element adds up. A
float32 result must lie within ~1e-4 of that (a few ulps per term), a float64 one within 1e-10.
"""

import itertools
import zlib

import numpy as np
import pytest

import numbadeconv as nd
from numbadeconv.testing import (
    reference_conv2d,
    reference_conv2d_backprop_filter,
    reference_conv2d_transpose,
    reference_output_size,
)

RTOL = {np.float16: 2e-3, np.float32: 1e-4, np.float64: 1e-10}

STRIDES = [(1, 1), (2, 2), (3, 3), (2, 3)]
DILATIONS = [(1, 1), (2, 2), (1, 2)]
# Explicit padding is written in NHWC order here and reordered for NCHW.
PADDINGS = ["SAME", "VALID", [[0, 0], [1, 2], [2, 0], [0, 0]]]

# (batch, height, width, filter height, filter width)
GEOMETRIES = [
    (2, 7, 6, 3, 2),
    (1, 3, 4, 4, 5),  # kernel larger than the input: SAME pads, VALID gives 0 or fails
    (1, 5, 1, 1, 3),
]
# (in_channels, filters.shape[2], out_channels): plain, two groups, depthwise (multiplier 2)
CHANNELS = [(3, 3, 4), (4, 2, 6), (3, 1, 6)]


def spatial_arg(pair, data_format, style):
    """Spell (h, w) strides/dilations in one of the forms the API accepts."""
    h, w = pair
    if style == "int" and h == w:
        return h
    if style == "four":
        return [1, h, w, 1] if data_format == "NHWC" else [1, 1, h, w]
    return [h, w]


def layout_padding(padding, data_format):
    if isinstance(padding, str) or data_format == "NHWC":
        return padding
    return [padding[0], padding[3], padding[1], padding[2]]


def spatial_pads(padding):
    if isinstance(padding, str):
        return padding, padding
    return tuple(padding[1]), tuple(padding[2])


def to_layout(array_nhwc, data_format):
    return (
        array_nhwc
        if data_format == "NHWC"
        else np.ascontiguousarray(array_nhwc.transpose(0, 3, 1, 2))
    )


def shape_in_layout(shape_nhwc, data_format):
    n, h, w, c = shape_nhwc
    return [n, h, w, c] if data_format == "NHWC" else [n, c, h, w]


def assert_matches(got, expected, bound, dtype, what):
    assert isinstance(got, np.ndarray), what
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    assert got.flags.c_contiguous, f"{what}: result is not C-contiguous"
    tol = RTOL[dtype] * bound + np.finfo(np.float64).tiny
    err = np.abs(got.astype(np.float64) - expected)
    if not np.all(err <= tol):
        worst = np.unravel_index(np.argmax(err - tol), err.shape)
        raise AssertionError(
            f"{what}: {np.count_nonzero(err > tol)} of {err.size} elements off; worst at "
            f"{worst}: got {got[worst]!r}, expected {expected[worst]!r} (bound {bound[worst]!r})"
        )


def admissible_sizes(out_size, kernel, stride, padding, dilation):
    """All input sizes that convolve to out_size (brute force over the definition)."""
    sizes = []
    for size in range(out_size * stride + (kernel - 1) * dilation + stride + 8):
        try:
            if reference_output_size(size, kernel, stride, padding, dilation) == out_size:
                sizes.append(size)
        except ValueError:
            pass
    return sizes


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("padding", PADDINGS, ids=["SAME", "VALID", "explicit"])
@pytest.mark.parametrize("dilations", DILATIONS, ids=lambda d: f"d{d[0]}{d[1]}")
@pytest.mark.parametrize("strides", STRIDES, ids=lambda s: f"s{s[0]}{s[1]}")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_all_ops_against_reference(dtype, strides, dilations, padding, data_format):
    rng = np.random.default_rng(
        zlib.crc32(repr((strides, dilations, padding, data_format)).encode())
    )
    style = ["int", "pair", "four"][(strides[0] + dilations[1]) % 3]
    s_arg = spatial_arg(strides, data_format, style)
    d_arg = spatial_arg(dilations, data_format, style)
    p_arg = layout_padding(padding, data_format)
    pad_h, pad_w = spatial_pads(padding)
    for (n, h, w, fh, fw), (c, cg, o) in itertools.product(GEOMETRIES, CHANNELS):
        what = (
            f"x=(n={n}, h={h}, w={w}, c={c}) filters={(fh, fw, cg, o)} strides={s_arg} "
            f"dilations={d_arg} padding={p_arg} {data_format} {np.dtype(dtype).name}"
        )
        x = to_layout(rng.standard_normal((n, h, w, c)), data_format).astype(dtype)
        k = rng.standard_normal((fh, fw, cg, o)).astype(dtype)
        args = (s_arg, p_arg, data_format, d_arg)
        try:
            expected = reference_conv2d(x, k, *args)
        except ValueError:
            # Negative output size (kernel larger than a VALID input): must be rejected too.
            with pytest.raises(ValueError):
                nd.conv2d(x, k, *args)
            continue
        bound = reference_conv2d(np.abs(x), np.abs(k), *args)
        assert_matches(nd.conv2d(x, k, *args), expected, bound, dtype, f"conv2d {what}")

        dy = rng.standard_normal(expected.shape).astype(dtype)
        expected_dw = reference_conv2d_backprop_filter(x, k.shape, dy, *args)
        bound_dw = reference_conv2d_backprop_filter(np.abs(x), k.shape, np.abs(dy), *args)
        got_dw = nd.conv2d_backprop_filter(x, k.shape, dy, *args)
        assert_matches(got_dw, expected_dw, bound_dw, dtype, f"backprop_filter {what}")

        # The transpose, for every output size that convolves to dy's size.
        out_h, out_w = expected.shape[1:3] if data_format == "NHWC" else expected.shape[2:]
        heights = admissible_sizes(out_h, fh, strides[0], pad_h, dilations[0])
        widths = admissible_sizes(out_w, fw, strides[1], pad_w, dilations[1])
        assert h in heights and w in widths
        for th, tw in itertools.product(heights, widths):
            shape = shape_in_layout((n, th, tw, c), data_format)
            expected_dx = reference_conv2d_transpose(dy, k, shape, *args)
            bound_dx = reference_conv2d_transpose(np.abs(dy), np.abs(k), shape, *args)
            got = nd.conv2d_transpose(dy, k, shape, *args)
            assert_matches(got, expected_dx, bound_dx, dtype, f"transpose to {shape} {what}")
            got = nd.conv2d_backprop_input(shape, k, dy, *args)
            assert_matches(got, expected_dx, bound_dx, dtype, f"backprop_input {shape} {what}")
        # Just outside the admissible range is an error.
        for th in (heights[0] - 1, heights[-1] + 1):
            if th >= 0:
                shape = shape_in_layout((n, th, widths[0], c), data_format)
                with pytest.raises(ValueError, match="output_shape"):
                    nd.conv2d_transpose(dy, k, shape, *args)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_threads_keyword(rng, threads, data_format):
    x = to_layout(rng.standard_normal((3, 9, 8, 4)), data_format)
    k = rng.standard_normal((3, 3, 2, 6))
    args = ((2, 1), "SAME", data_format, 1)
    y = reference_conv2d(x, k, *args)
    dy = rng.standard_normal(y.shape)
    bound = reference_conv2d(np.abs(x), np.abs(k), *args)
    assert_matches(nd.conv2d(x, k, *args, threads=threads), y, bound, np.float64, "conv2d")
    expected = reference_conv2d_transpose(dy, k, x.shape, *args)
    bound = reference_conv2d_transpose(np.abs(dy), np.abs(k), x.shape, *args)
    got = nd.conv2d_transpose(dy, k, x.shape, *args, threads=threads)
    assert_matches(got, expected, bound, np.float64, "conv2d_transpose")
    got = nd.conv2d_backprop_input(x.shape, k, dy, *args, threads=threads)
    assert_matches(got, expected, bound, np.float64, "conv2d_backprop_input")
    expected = reference_conv2d_backprop_filter(x, k.shape, dy, *args)
    bound = reference_conv2d_backprop_filter(np.abs(x), k.shape, np.abs(dy), *args)
    got = nd.conv2d_backprop_filter(x, k.shape, dy, *args, threads=threads)
    assert_matches(got, expected, bound, np.float64, "conv2d_backprop_filter")


# --------------------------------------------------------------------------------------
# dtypes and kinds of input
# --------------------------------------------------------------------------------------


def four_ops(x, k, dy, **kwargs):
    """Run all four operations (strides 2, SAME) with the given inputs."""
    return {
        "conv2d": nd.conv2d(x, k, 2, "SAME", **kwargs),
        "conv2d_transpose": nd.conv2d_transpose(dy, k, np.shape(x), 2, "SAME", **kwargs),
        "conv2d_backprop_input": nd.conv2d_backprop_input(np.shape(x), k, dy, 2, "SAME", **kwargs),
        "conv2d_backprop_filter": nd.conv2d_backprop_filter(
            x, np.shape(k), dy, 2, "SAME", **kwargs
        ),
    }


def four_refs(x, k, dy):
    x, k, dy = (np.asarray(a, dtype=np.float64) for a in (x, k, dy))
    return {
        "conv2d": (
            reference_conv2d(x, k, 2, "SAME"),
            reference_conv2d(abs(x), abs(k), 2, "SAME"),
        ),
        "conv2d_transpose": (
            reference_conv2d_transpose(dy, k, x.shape, 2, "SAME"),
            reference_conv2d_transpose(abs(dy), abs(k), x.shape, 2, "SAME"),
        ),
        "conv2d_backprop_input": (
            reference_conv2d_transpose(dy, k, x.shape, 2, "SAME"),
            reference_conv2d_transpose(abs(dy), abs(k), x.shape, 2, "SAME"),
        ),
        "conv2d_backprop_filter": (
            reference_conv2d_backprop_filter(x, k.shape, dy, 2, "SAME"),
            reference_conv2d_backprop_filter(abs(x), k.shape, abs(dy), 2, "SAME"),
        ),
    }


@pytest.mark.parametrize(
    ("x_dtype", "k_dtype", "dy_dtype"),
    [
        (np.float32, np.float32, np.float32),
        (np.float64, np.float64, np.float64),
        (np.float32, np.float64, np.float32),
        (np.float64, np.float32, np.float64),
        (np.float16, np.float16, np.float16),
        (np.float16, np.float32, np.float16),
    ],
)
def test_result_dtype(rng, x_dtype, k_dtype, dy_dtype):
    x = rng.standard_normal((2, 5, 6, 3)).astype(x_dtype)
    k = rng.standard_normal((3, 2, 3, 2)).astype(k_dtype)
    dy = rng.standard_normal((2, 3, 3, 2)).astype(dy_dtype)
    refs = four_refs(x, k, dy)
    for name, got in four_ops(x, k, dy).items():
        # The dtypes that meet in each op decide its result dtype.
        inputs = {
            "conv2d": (x, k),
            "conv2d_transpose": (dy, k),
            "conv2d_backprop_input": (dy, k),
            "conv2d_backprop_filter": (x, dy),
        }[name]
        dtype = np.result_type(*inputs).type
        assert_matches(got, *refs[name], dtype, name)


@pytest.mark.parametrize(
    "bad_dtype", [np.int32, np.int64, np.bool_, np.complex128, object, np.str_]
)
def test_rejected_dtypes_raise_type_error(rng, bad_dtype):
    x = np.ones((1, 5, 6, 3))
    k = np.ones((3, 2, 3, 2))
    dy = np.ones((1, 3, 3, 2))
    with pytest.raises(TypeError):
        nd.conv2d(x.astype(bad_dtype), k, 2, "SAME")
    with pytest.raises(TypeError):
        nd.conv2d(x, k.astype(bad_dtype), 2, "SAME")
    with pytest.raises(TypeError):
        nd.conv2d_transpose(dy.astype(bad_dtype), k, x.shape, 2, "SAME")
    with pytest.raises(TypeError):
        nd.conv2d_backprop_input(x.shape, k.astype(bad_dtype), dy, 2, "SAME")
    with pytest.raises(TypeError):
        nd.conv2d_backprop_filter(x, k.shape, dy.astype(bad_dtype), 2, "SAME")


def test_lists_noncontiguous_readonly_bigendian_inputs(rng):
    x = rng.standard_normal((2, 5, 6, 3))
    k = rng.standard_normal((3, 2, 3, 2))
    dy = rng.standard_normal((2, 3, 3, 2))
    refs = four_refs(x, k, dy)
    variants = {
        "lists": (x.tolist(), k.tolist(), dy.tolist()),
        "non-contiguous": (
            np.asfortranarray(x),
            np.repeat(k, 2, axis=1)[:, ::2],
            dy.transpose(3, 2, 1, 0).copy().transpose(3, 2, 1, 0),
        ),
        "big-endian": (x.astype(">f8"), k.astype(">f8"), dy.astype(">f8")),
    }
    readonly = [a.copy() for a in (x, k, dy)]
    for a in readonly:
        a.flags.writeable = False
    variants["read-only"] = tuple(readonly)
    for label, (xv, kv, dyv) in variants.items():
        before = [np.array(a, copy=True) for a in (xv, kv, dyv)]
        for name, got in four_ops(xv, kv, dyv).items():
            assert_matches(got, *refs[name], np.float64, f"{name} with {label} inputs")
        for a, b in zip((xv, kv, dyv), before, strict=True):
            np.testing.assert_array_equal(np.asarray(a), b, err_msg=f"{label} input modified")


def test_inputs_not_modified_and_results_are_new(rng):
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    k = rng.standard_normal((3, 2, 3, 2)).astype(np.float32)
    dy = rng.standard_normal((2, 3, 3, 2)).astype(np.float32)
    copies = [a.copy() for a in (x, k, dy)]
    for got in four_ops(x, k, dy).values():
        assert got.flags.c_contiguous and got.flags.writeable
        for a in (x, k, dy):
            assert not np.shares_memory(got, a)
    for a, b in zip((x, k, dy), copies, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------
# Larger cases: long reductions, channel counts that leave remainders in any channel or
# pixel tiling, enough work to run in parallel, phases of strided transposes.
# --------------------------------------------------------------------------------------

# (x shape NHWC, filter shape, strides, dilations, padding NHWC)
LARGE = {
    "wide": ((2, 17, 19, 19), (3, 3, 19, 23), (1, 1), (1, 1), "SAME"),
    "grouped": ((1, 15, 13, 34), (3, 2, 17, 14), (2, 1), (1, 2), [[0, 0], [2, 1], [0, 3], [0, 0]]),
    "depthwise": ((2, 31, 28, 13), (5, 5, 1, 26), (2, 2), (1, 1), "SAME"),
    "phases": ((1, 20, 22, 18), (5, 4, 18, 17), (3, 2), (1, 1), "VALID"),
    "pointwise": ((4, 40, 40, 3), (1, 1, 3, 32), (1, 1), (1, 1), "VALID"),
    "dilated": ((2, 16, 16, 21), (3, 3, 21, 5), (1, 1), (2, 3), "SAME"),
}


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(LARGE))
def test_large_cases(name, dtype, threads, data_format):
    x_shape, k_shape, strides, dilations, padding = LARGE[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = to_layout(rng.standard_normal(x_shape), data_format).astype(dtype)
    k = rng.standard_normal(k_shape).astype(dtype)
    args = (strides, layout_padding(padding, data_format), data_format, dilations)
    what = f"{name} {data_format} threads={threads} {np.dtype(dtype).name}"

    expected = reference_conv2d(x, k, *args)
    bound = reference_conv2d(np.abs(x), np.abs(k), *args)
    got = nd.conv2d(x, k, *args, threads=threads)
    assert_matches(got, expected, bound, dtype, f"conv2d {what}")

    dy = rng.standard_normal(expected.shape).astype(dtype)
    expected = reference_conv2d_transpose(dy, k, x.shape, *args)
    bound = reference_conv2d_transpose(np.abs(dy), np.abs(k), x.shape, *args)
    got = nd.conv2d_transpose(dy, k, x.shape, *args, threads=threads)
    assert_matches(got, expected, bound, dtype, f"conv2d_transpose {what}")

    expected = reference_conv2d_backprop_filter(x, k.shape, dy, *args)
    bound = reference_conv2d_backprop_filter(np.abs(x), k.shape, np.abs(dy), *args)
    got = nd.conv2d_backprop_filter(x, k.shape, dy, *args, threads=threads)
    assert_matches(got, expected, bound, dtype, f"conv2d_backprop_filter {what}")
