"""Naive NumPy reference implementations with TensorFlow semantics.

These functions are the test oracle of :mod:`numbadeconv`. They are written
straight from the definition of a strided, dilated, padded, grouped 2-D
convolution, favour readability over speed, compute in float64 and return
float64 arrays. They share no code with the rest of the package, so that a bug
in the fast path cannot hide itself by also being in the reference.

Conventions (those of TensorFlow):

* ``input`` is ``[batch, height, width, channels]`` ("NHWC") or
  ``[batch, channels, height, width]`` ("NCHW").
* ``filters`` is always ``[filter_height, filter_width, in_channels / groups,
  out_channels]`` for :func:`reference_conv2d`. The transposed convolution uses
  the very same array, read as ``[fh, fw, out_channels / groups,
  in_channels]`` from its own point of view.
* ``strides`` and ``dilations`` are an int, or 1, 2 or 4 numbers (4 numbers are
  ``[1, sh, sw, 1]`` for NHWC and ``[1, 1, sh, sw]`` for NCHW).
* ``padding`` is ``"SAME"``, ``"VALID"`` or four explicit ``(before, after)``
  pairs in data-format order, e.g. ``[[0, 0], [top, bottom], [left, right],
  [0, 0]]`` for NHWC.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "reference_conv2d",
    "reference_conv2d_backprop_filter",
    "reference_conv2d_transpose",
    "reference_output_size",
]

Padding1D = str | Sequence[int]


# --------------------------------------------------------------------------------------
# Argument normalisation (deliberately independent of numbadeconv's own)
# --------------------------------------------------------------------------------------


#: The references compute with IEEE arithmetic, so NaN and Inf inputs reach exactly the outputs
#: whose windows read them. Some BLAS kernels (OpenBLAS's AVX-512 ones) raise the "invalid"
#: flag on an Inf input even where the product is exactly Inf; with warnings as errors that
#: would fail the call, so the references run with that flag silenced.
_propagate_non_finite = np.errstate(invalid="ignore")


def _data_format(data_format: str) -> str:
    if data_format not in ("NHWC", "NCHW"):
        raise ValueError(f"data_format must be 'NHWC' or 'NCHW', got {data_format!r}")
    return data_format


def _pair(value, name: str, data_format: str) -> tuple[int, int]:
    """Turn an int or 1, 2 or 4 numbers into ``(height, width)``."""
    if value is None:
        return 1, 1
    if np.ndim(value) == 0:
        values = [value]
    else:
        values = list(value)
    if len(values) == 1:
        h = w = values[0]
    elif len(values) == 2:
        h, w = values
    elif len(values) == 4:
        if data_format == "NHWC":
            n, h, w, c = values
        else:
            n, c, h, w = values
        if n != 1 or c != 1:
            raise ValueError(f"{name} must be 1 in the batch and channel dimensions, got {value}")
    else:
        raise ValueError(f"{name} must be an int or 1, 2 or 4 numbers, got {value}")
    if int(h) != h or int(w) != w or h < 1 or w < 1:
        raise ValueError(f"{name} must be positive integers, got {value}")
    return int(h), int(w)


def _padding(padding, data_format: str) -> tuple[Padding1D, Padding1D]:
    """Return the padding of the height and of the width dimension."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"padding must be 'SAME', 'VALID' or 4 pairs, got {padding!r}")
        return padding.upper(), padding.upper()
    pairs = np.asarray(padding)
    if pairs.shape != (4, 2):
        raise ValueError(f"explicit padding must be 4 (before, after) pairs, got {padding}")
    if data_format == "NHWC":
        batch, height, width, channel = pairs
    else:
        batch, channel, height, width = pairs
    if np.any(batch != 0) or np.any(channel != 0):
        raise ValueError(f"padding must be 0 in the batch and channel dimensions, got {padding}")
    return tuple(int(p) for p in height), tuple(int(p) for p in width)


def _as_float64(array: ArrayLike, name: str) -> NDArray[np.float64]:
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real number array, got dtype {array.dtype}")
    return array.astype(np.float64)


def _to_nhwc(array: NDArray, data_format: str) -> NDArray:
    return array if data_format == "NHWC" else array.transpose(0, 2, 3, 1)


def _from_nhwc(array: NDArray, data_format: str) -> NDArray:
    array = array if data_format == "NHWC" else array.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(array)


def _check_rank4(array: NDArray, name: str) -> None:
    if array.ndim != 4:
        raise ValueError(f"{name} must be 4-dimensional, got shape {array.shape}")


def _groups(in_channels: int, filter_in_channels: int, out_channels: int) -> int:
    """Return the number of groups of a convolution with ``in_channels`` input channels."""
    if filter_in_channels == 0:
        if in_channels != 0:
            raise ValueError(
                f"filters have 0 input channels but the input has {in_channels} channels"
            )
        return 1
    if in_channels % filter_in_channels != 0:
        raise ValueError(
            f"input channels ({in_channels}) must be a multiple of the filters' "
            f"input channels ({filter_in_channels})"
        )
    groups = in_channels // filter_in_channels
    if out_channels % groups != 0:
        raise ValueError(
            f"out_channels ({out_channels}) must be divisible by the number of groups ({groups})"
        )
    return groups


# --------------------------------------------------------------------------------------
# Output size
# --------------------------------------------------------------------------------------


def _output_size_and_pad(
    in_size: int, kernel: int, stride: int, padding: Padding1D, dilation: int
) -> tuple[int, int, int]:
    """Return ``(out_size, pad_before, pad_after)`` as TensorFlow computes them."""
    if in_size < 0 or kernel < 1 or stride < 1 or dilation < 1:
        raise ValueError(
            f"need in_size >= 0, kernel >= 1, stride >= 1, dilation >= 1; got in_size={in_size}, "
            f"kernel={kernel}, stride={stride}, dilation={dilation}"
        )
    effective_kernel = (kernel - 1) * dilation + 1
    if isinstance(padding, str) and padding.upper() == "VALID":
        pad_before = pad_after = 0
        numerator = in_size - effective_kernel + stride
    elif isinstance(padding, str) and padding.upper() == "SAME":
        out_size = (in_size + stride - 1) // stride
        pad_needed = max(0, (out_size - 1) * stride + effective_kernel - in_size)
        pad_before = pad_needed // 2
        pad_after = pad_needed - pad_before
        numerator = in_size + pad_before + pad_after - effective_kernel + stride
    elif not isinstance(padding, str) and len(padding) == 2:
        pad_before, pad_after = (int(p) for p in padding)
        if pad_before < 0 or pad_after < 0:
            raise ValueError(f"explicit padding must be non-negative, got {padding}")
        numerator = in_size + pad_before + pad_after - effective_kernel + stride
    else:
        raise ValueError(
            f"padding must be 'SAME', 'VALID' or a (before, after) pair, got {padding}"
        )
    # C++ integer division truncates toward zero: -1 / 2 == 0.
    out_size = int(numerator / stride) if numerator < 0 else numerator // stride
    if out_size < 0:
        raise ValueError(
            f"negative output size {out_size}: in_size={in_size}, kernel={kernel}, "
            f"stride={stride}, padding={padding}, dilation={dilation}"
        )
    return out_size, pad_before, pad_after


def reference_output_size(
    in_size: int, kernel: int, stride: int, padding: Padding1D, dilation: int = 1
) -> int:
    """Output size of a convolution along one spatial dimension (TensorFlow rules).

    Parameters
    ----------
    in_size : int
        Input size along the dimension, ``>= 0``.
    kernel : int
        Filter size along the dimension, ``>= 1``.
    stride : int
        Step, ``>= 1``.
    padding : {"SAME", "VALID"} or (int, int)
        Padding mode, or explicit ``(before, after)`` padding.
    dilation : int, default 1
        Filter dilation, ``>= 1``.

    Returns
    -------
    int
        ``trunc((in_size + pad_before + pad_after - ek + stride) / stride)`` with
        ``ek = (kernel - 1) * dilation + 1``; for SAME simply
        ``ceil(in_size / stride)``.

    Raises
    ------
    ValueError
        For invalid arguments or a negative output size.

    Examples
    --------
    >>> reference_output_size(5, 3, 2, "SAME"), reference_output_size(6, 3, 2, "SAME")
    (3, 3)
    >>> reference_output_size(1, 4, 2, "VALID")
    0
    """
    return _output_size_and_pad(in_size, kernel, stride, padding, dilation)[0]


# --------------------------------------------------------------------------------------
# The three operations
# --------------------------------------------------------------------------------------


def _geometry(in_hw, kernel_hw, strides, padding, dilations):
    """Per dimension: ``(out_size, pad_before, pad_after)``."""
    return [
        _output_size_and_pad(in_hw[d], kernel_hw[d], strides[d], padding[d], dilations[d])
        for d in range(2)
    ]


def _tap_window(tap: int, dilation: int, stride: int, out_size: int) -> slice:
    """Rows (of the padded input) that tap ``tap`` reads, one per output row."""
    if out_size == 0:
        return slice(0, 0)
    start = tap * dilation
    return slice(start, start + (out_size - 1) * stride + 1, stride)


@_propagate_non_finite
def reference_conv2d(
    input: ArrayLike,
    filters: ArrayLike,
    strides,
    padding,
    data_format: str = "NHWC",
    dilations=None,
) -> NDArray[np.float64]:
    """Naive ``tf.nn.conv2d`` (a cross-correlation), grouped, in float64.

    ``out[n, y, x, o] = sum_{i, j, c} xpad[n, y*sh + i*dh, x*sw + j*dw, g*cg + c]
    * filters[i, j, c, o]`` where ``g = o // (out_channels // groups)``, ``cg =
    filters.shape[2]`` and ``xpad`` is the input zero-padded as TensorFlow does.

    Parameters
    ----------
    input : array_like, shape (N, H, W, C) or (N, C, H, W)
        Input, laid out as ``data_format`` says.
    filters : array_like, shape (fh, fw, C // groups, O)
        Filters. ``groups = C // filters.shape[2]``; ``O`` must be divisible by it.
    strides : int or sequence of int
        1, 2 or 4 numbers.
    padding : {"SAME", "VALID"} or sequence of 4 pairs
        Padding mode or explicit padding in data-format order.
    data_format : {"NHWC", "NCHW"}, default "NHWC"
    dilations : int or sequence of int, optional
        1, 2 or 4 numbers; default 1.

    Returns
    -------
    ndarray of float64, shape (N, OH, OW, O) or (N, O, OH, OW)

    Examples
    --------
    >>> x = np.ones((1, 5, 5, 3)); w = np.ones((3, 3, 3, 1))
    >>> reference_conv2d(x, w, 2, "SAME")[0, :, :, 0]
    array([[12., 18., 12.],
           [18., 27., 18.],
           [12., 18., 12.]])
    """
    data_format = _data_format(data_format)
    x = _as_float64(input, "input")
    w = _as_float64(filters, "filters")
    _check_rank4(x, "input")
    _check_rank4(w, "filters")
    x = _to_nhwc(x, data_format)
    strides = _pair(strides, "strides", data_format)
    dilations = _pair(dilations, "dilations", data_format)
    padding = _padding(padding, data_format)

    n, h, wd, c = x.shape
    fh, fw, cg, o = w.shape
    groups = _groups(c, cg, o)
    og = o // groups
    (oh, pt, pb), (ow, pl, pr) = _geometry((h, wd), (fh, fw), strides, padding, dilations)

    xpad = np.zeros((n, pt + h + pb, pl + wd + pr, c))
    xpad[:, pt : pt + h, pl : pl + wd, :] = x
    out = np.zeros((n, oh, ow, o))
    for i in range(fh):
        rows = _tap_window(i, dilations[0], strides[0], oh)
        for j in range(fw):
            cols = _tap_window(j, dilations[1], strides[1], ow)
            for g in range(groups):
                x_tap = xpad[:, rows, cols, g * cg : (g + 1) * cg]  # (n, oh, ow, cg)
                out[..., g * og : (g + 1) * og] += x_tap @ w[i, j, :, g * og : (g + 1) * og]
    return _from_nhwc(out, data_format)


@_propagate_non_finite
def reference_conv2d_transpose(
    input: ArrayLike,
    filters: ArrayLike,
    output_shape: Sequence[int],
    strides,
    padding="SAME",
    data_format: str = "NHWC",
    dilations=None,
) -> NDArray[np.float64]:
    """Naive ``tf.nn.conv2d_transpose`` (``Conv2DBackpropInput``), grouped, in float64.

    The exact adjoint of :func:`reference_conv2d` for an input of shape
    ``output_shape``: for every output position of that forward convolution and
    every filter tap, ``input * weight`` is added to the input position the
    forward convolution read it from (scatter-add); padding is cut off at the end.

    Parameters
    ----------
    input : array_like, shape (N, OH, OW, O) or (N, O, OH, OW)
        The tensor to transpose-convolve ("deconvolve"); ``O = filters.shape[3]``.
    filters : array_like, shape (fh, fw, C // groups, O)
        The filters of the forward convolution.
    output_shape : sequence of 4 int
        Shape of the result, ``(N, H, W, C)`` or ``(N, C, H, W)``. ``H`` and ``W``
        must convolve to ``OH`` and ``OW``.
    strides, padding, data_format, dilations
        As for :func:`reference_conv2d`.

    Returns
    -------
    ndarray of float64, shape ``output_shape``

    Raises
    ------
    ValueError
        If ``output_shape`` does not convolve back to the shape of ``input``.

    Examples
    --------
    >>> y = np.ones((1, 3, 3, 1)); w = np.ones((3, 3, 3, 1))
    >>> reference_conv2d_transpose(y, w, [1, 5, 5, 3], 2, "SAME")[0, :, :, 0]
    array([[1., 2., 1., 2., 1.],
           [2., 4., 2., 4., 2.],
           [1., 2., 1., 2., 1.],
           [2., 4., 2., 4., 2.],
           [1., 2., 1., 2., 1.]])
    """
    data_format = _data_format(data_format)
    dy = _as_float64(input, "input")
    w = _as_float64(filters, "filters")
    _check_rank4(dy, "input")
    _check_rank4(w, "filters")
    dy = _to_nhwc(dy, data_format)
    output_shape = [int(s) for s in output_shape]
    if len(output_shape) != 4:
        raise ValueError(f"output_shape must have 4 entries, got {output_shape}")
    if data_format == "NHWC":
        n, h, wd, c = output_shape
    else:
        n, c, h, wd = output_shape
    strides = _pair(strides, "strides", data_format)
    dilations = _pair(dilations, "dilations", data_format)
    padding = _padding(padding, data_format)

    fh, fw, cg, o = w.shape
    groups = _groups(c, cg, o)
    og = o // groups
    (oh, pt, pb), (ow, pl, pr) = _geometry((h, wd), (fh, fw), strides, padding, dilations)
    if dy.shape != (n, oh, ow, o):
        raise ValueError(
            f"output_shape {output_shape} convolves to {(n, oh, ow, o)} (NHWC), "
            f"but input has shape {dy.shape} (NHWC)"
        )

    dxpad = np.zeros((n, pt + h + pb, pl + wd + pr, c))
    for i in range(fh):
        rows = _tap_window(i, dilations[0], strides[0], oh)
        for j in range(fw):
            cols = _tap_window(j, dilations[1], strides[1], ow)
            for g in range(groups):
                contribution = dy[..., g * og : (g + 1) * og] @ w[i, j, :, g * og : (g + 1) * og].T
                # Within one tap the strided positions are distinct, so += is a true scatter-add.
                dxpad[:, rows, cols, g * cg : (g + 1) * cg] += contribution
    dx = dxpad[:, pt : pt + h, pl : pl + wd, :]
    return _from_nhwc(dx, data_format)


@_propagate_non_finite
def reference_conv2d_backprop_filter(
    input: ArrayLike,
    filter_sizes: Sequence[int],
    out_backprop: ArrayLike,
    strides,
    padding,
    data_format: str = "NHWC",
    dilations=None,
) -> NDArray[np.float64]:
    """Naive ``Conv2DBackpropFilter``, grouped, in float64.

    The gradient of ``sum(reference_conv2d(input, w, ...) * out_backprop)`` with
    respect to ``w``: ``dw[i, j, c, o] = sum_{n, y, x} xpad[n, y*sh + i*dh,
    x*sw + j*dw, g*cg + c] * out_backprop[n, y, x, o]``.

    Parameters
    ----------
    input : array_like, shape (N, H, W, C) or (N, C, H, W)
        Input of the forward convolution.
    filter_sizes : sequence of 4 int
        ``(fh, fw, C // groups, O)``, whatever the data format.
    out_backprop : array_like, shape (N, OH, OW, O) or (N, O, OH, OW)
        Gradient with respect to the forward convolution's output.
    strides, padding, data_format, dilations
        As for :func:`reference_conv2d`.

    Returns
    -------
    ndarray of float64, shape ``filter_sizes``

    Examples
    --------
    >>> x = np.ones((1, 5, 5, 3)); dy = np.ones((1, 3, 3, 1))
    >>> reference_conv2d_backprop_filter(x, [3, 3, 3, 1], dy, 2, "SAME")[:, :, 0, 0]
    array([[4., 6., 4.],
           [6., 9., 6.],
           [4., 6., 4.]])
    """
    data_format = _data_format(data_format)
    x = _as_float64(input, "input")
    dy = _as_float64(out_backprop, "out_backprop")
    _check_rank4(x, "input")
    _check_rank4(dy, "out_backprop")
    x = _to_nhwc(x, data_format)
    dy = _to_nhwc(dy, data_format)
    filter_sizes = [int(s) for s in filter_sizes]
    if len(filter_sizes) != 4:
        raise ValueError(f"filter_sizes must have 4 entries, got {filter_sizes}")
    strides = _pair(strides, "strides", data_format)
    dilations = _pair(dilations, "dilations", data_format)
    padding = _padding(padding, data_format)

    n, h, wd, c = x.shape
    fh, fw, cg, o = filter_sizes
    groups = _groups(c, cg, o)
    og = o // groups
    (oh, pt, pb), (ow, pl, pr) = _geometry((h, wd), (fh, fw), strides, padding, dilations)
    if dy.shape != (n, oh, ow, o):
        raise ValueError(
            f"out_backprop has shape {dy.shape} (NHWC) but the convolution gives {(n, oh, ow, o)}"
        )

    xpad = np.zeros((n, pt + h + pb, pl + wd + pr, c))
    xpad[:, pt : pt + h, pl : pl + wd, :] = x
    dw = np.zeros((fh, fw, cg, o))
    for i in range(fh):
        rows = _tap_window(i, dilations[0], strides[0], oh)
        for j in range(fw):
            cols = _tap_window(j, dilations[1], strides[1], ow)
            for g in range(groups):
                x_tap = xpad[:, rows, cols, g * cg : (g + 1) * cg].reshape(n * oh * ow, cg)
                dy_g = dy[..., g * og : (g + 1) * og].reshape(n * oh * ow, og)
                dw[i, j, :, g * og : (g + 1) * og] = x_tap.T @ dy_g
    return dw
