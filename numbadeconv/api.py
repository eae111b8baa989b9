"""The TensorFlow-flavoured operations: ``conv2d``, ``conv2d_transpose`` and the two gradients.

Semantics are TensorFlow's (``tf.nn.conv2d``, ``tf.nn.conv2d_transpose``,
``tf.raw_ops.Conv2DBackpropInput`` / ``Conv2DBackpropFilter``), including grouped convolution
when the input's channels are a multiple of the filters' ``in_channels``. NCHW, dilations > 1 and
float64 work in every operation.

Common arguments
----------------
strides, dilations : int or sequence of 1, 2 or 4 ints
    Per spatial axis; 4 numbers are in the data_format's order (``[1, sh, sw, 1]`` for NHWC,
    ``[1, 1, sh, sw]`` for NCHW) with 1 on the batch and channel axes. ``dilations=None`` is 1.
padding : "SAME", "VALID" or explicit pairs
    Explicit padding is ``[[0, 0], [top, bottom], [left, right], [0, 0]]`` (NHWC) or
    ``[[0, 0], [0, 0], [top, bottom], [left, right]]`` (NCHW), non-negative.
data_format : "NHWC" or "NCHW"
threads : int, optional
    Most threads the call may use; default: ``numba.get_num_threads()`` (``NUMBA_NUM_THREADS``).

dtypes: float32 and float64 are computed natively and the result has ``np.result_type`` of the
inputs; float16 is computed in float32 and returned as float16. Inputs may be lists,
non-contiguous, read-only or non-native byte order; they are never modified, and results are new
C-contiguous arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _args, _engine, _jit, sizes

IntOrInts = int | Sequence[int]
Padding = str | Sequence[Sequence[int]]

_ADJECTIVE = {"height": "high", "width": "wide"}


def _finish(out: np.ndarray, result_dtype: np.dtype, nhwc: bool) -> np.ndarray:
    """The engine's NHWC result in the caller's data_format and dtype.

    For NCHW, ``out`` is the NHWC view of the NCHW array that the kernels wrote.
    """
    if not nhwc:
        out = out.transpose(0, 3, 1, 2)
    return out if out.dtype == result_dtype else out.astype(result_dtype)


def _nhwc(shape, nhwc: bool) -> tuple[int, int, int, int]:
    """A 4-D shape in NHWC order."""
    n, a, b, c = shape
    return (n, a, b, c) if nhwc else (n, b, c, a)


def _filters_shape(name: str, shape) -> None:
    _args.rank4(name, shape)
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name} must have a height and width of at least 1 "
                         f"([height, width, in, out]); got shape {shape}")


def _sizes_text(admissible: range) -> str:
    sizes_ = list(admissible)
    if len(sizes_) == 1:
        return str(sizes_[0])
    if len(sizes_) == 2:
        return f"{sizes_[0]} or {sizes_[1]}"
    return f"{sizes_[0]} to {sizes_[-1]}"


def _check_admissible(name: str, axis: str, size: int, src_size: int, src_name: str,
                      kernel: int, stride: int, padding, dilation: int) -> int:
    """Pad-before of the convolution that maps ``size`` to ``src_size``; ValueError if none does."""
    out, before, _ = sizes.window(size, kernel, stride, padding, dilation)
    if out == src_size:
        return before
    adj = _ADJECTIVE[axis]
    how = f"kernel {kernel}, stride {stride}, {sizes.describe_padding(padding)}"
    if dilation != 1:
        how += f", dilation {dilation}"
    got = f"gives {out}, not {src_size}" if out >= 0 else "is impossible (the kernel does not fit)"
    admissible = sizes.admissible_range(src_size, kernel, stride, padding, dilation)
    if len(admissible):
        allowed = (f"admissible {axis}s for a {src_size}-{adj} {src_name} are "
                   f"{_sizes_text(admissible)}")
    else:
        allowed = f"no {axis} is admissible for a {src_size}-{adj} {src_name} with {how}"
    raise ValueError(f"{name} {axis} {size} is not admissible: conv2d of a {size}-{adj} input "
                     f"with {how} {got}; {allowed}")


def conv2d(
    input: ArrayLike,
    filters: ArrayLike,
    strides: IntOrInts,
    padding: Padding,
    data_format: str = "NHWC",
    dilations: IntOrInts | None = None,
    *,
    threads: int | None = None,
) -> NDArray[np.floating]:
    """2-D convolution (cross-correlation), as ``tf.nn.conv2d``.

    Parameters
    ----------
    input : array_like, shape ``[N, H, W, C]`` (NHWC) or ``[N, C, H, W]`` (NCHW)
    filters : array_like, shape ``[fh, fw, C / groups, out_channels]``
        ``groups = C / filters.shape[2]`` (1 unless grouped); ``out_channels`` must be a multiple
        of ``groups``.
    strides, padding, data_format, dilations, threads
        See the module documentation.

    Returns
    -------
    ndarray, shape ``[N, OH, OW, out_channels]`` (NHWC) or ``[N, out_channels, OH, OW]``
        ``OH = conv_output_size(H, fh, sh, padding, dh)``, likewise ``OW``.

    Raises
    ------
    TypeError
        For non-float arrays or arguments of the wrong kind.
    ValueError
        For wrong ranks, mismatched channels, bad strides/dilations/padding/data_format, or a
        filter that does not fit in the padded input.

    Examples
    --------
    >>> import numpy as np, numbadeconv as nd
    >>> y = nd.conv2d(np.ones((1, 5, 5, 3)), np.ones((3, 3, 3, 1)), strides=2, padding="SAME")
    >>> y[0, :, :, 0]
    array([[12., 18., 12.],
           [18., 27., 18.],
           [12., 18., 12.]])
    """
    x, w = np.asarray(input), np.asarray(filters)
    dtype, result, nhwc, plan = _conv2d_geometry(x.shape, x.dtype, w.shape, w.dtype, strides,
                                                 padding, data_format, dilations)
    out = _engine.correlate_run(plan, _args.prepared(x, dtype, nhwc),
                                _args.prepared(w, dtype, True), None,
                                _jit.resolve_threads(threads), channels_first=not nhwc)
    return _finish(out, result, nhwc)


@_args.memoised(trusted=4)
def _conv2d_geometry(x_shape, x_dtype, w_shape, w_dtype, strides, padding, data_format,
                     dilations):
    """A conv2d's settings, validated and lowered.

    Returns (compute dtype, result dtype, nhwc, the engine's plan).
    """
    _args.float_dtype("input", x_dtype)
    _args.float_dtype("filters", w_dtype)
    dtype, result = _args.compute_dtype(x_dtype, w_dtype)
    nhwc = _args.channels_last(data_format)
    _args.rank4("input", x_shape)
    _filters_shape("filters", w_shape)
    stride = _args.spatial_pair("strides", strides, nhwc)
    dilation = _args.spatial_pair("dilations", dilations, nhwc, 1)
    pads = _args.padding_pair(padding, nhwc)
    n, h, wd, c = _nhwc(x_shape, nhwc)
    fh, fw, f_in, f_out = w_shape
    groups = _args.groups_of(c, f_in, f_out, "input")
    oh, pt = _args.conv_window("height", h, fh, stride[0], pads[0], dilation[0])
    ow, pl = _args.conv_window("width", wd, fw, stride[1], pads[1], dilation[1])
    _args.check_output_bytes("output", (n, oh, ow, f_out), dtype.itemsize)
    return dtype, result, nhwc, _engine.plan_conv2d((n, h, wd, c), w_shape, stride, dilation,
                                                    (pt, pl), (oh, ow), groups,
                                                    itemsize=dtype.itemsize)


def _input_grad(shape_name, output_shape, filters, dy_name, dy, strides, padding, data_format,
                dilations, threads):
    y, w = np.asarray(dy), np.asarray(filters)
    dtype, result, nhwc, plan = _input_grad_geometry(
        y.shape, y.dtype, w.shape, w.dtype, shape_name, output_shape, dy_name, strides, padding,
        data_format, dilations)
    out = _engine.correlate_run(plan, _args.prepared(y, dtype, nhwc),
                                _args.prepared(w, dtype, True), None,
                                _jit.resolve_threads(threads), channels_first=not nhwc)
    return _finish(out, result, nhwc)


@_args.memoised(trusted=4)
def _input_grad_geometry(y_shape, y_dtype, w_shape, w_dtype, shape_name, output_shape, dy_name,
                         strides, padding, data_format, dilations):
    """A transpose's settings, validated and lowered.

    Returns (compute dtype, result dtype, nhwc, the engine's plan).
    """
    _args.float_dtype(dy_name, y_dtype)
    _args.float_dtype("filters", w_dtype)
    dtype, result = _args.compute_dtype(y_dtype, w_dtype)
    nhwc = _args.channels_last(data_format)
    _args.rank4(dy_name, y_shape)
    _filters_shape("filters", w_shape)
    shape = _args.shape4(shape_name, output_shape)
    stride = _args.spatial_pair("strides", strides, nhwc)
    dilation = _args.spatial_pair("dilations", dilations, nhwc, 1)
    pads = _args.padding_pair(padding, nhwc)
    n, h, wd, c = _nhwc(shape, nhwc)
    ny, hy, wy, cy = _nhwc(y_shape, nhwc)
    fh, fw, f_out, f_in = w_shape
    if ny != n:
        raise ValueError(f"{shape_name} has batch {n} but {dy_name} has batch {ny}")
    groups = _args.groups_of(c, f_out, f_in, shape_name)
    if cy != f_in:
        raise ValueError(f"{dy_name} has {cy} channels but the filters' in_channels (axis 3) "
                         f"is {f_in}; they must match")
    pt = _check_admissible(shape_name, "height", h, hy, dy_name, fh, stride[0], pads[0],
                           dilation[0])
    pl = _check_admissible(shape_name, "width", wd, wy, dy_name, fw, stride[1], pads[1],
                           dilation[1])
    _args.check_output_bytes(shape_name, shape, dtype.itemsize)
    return dtype, result, nhwc, _engine.plan_input_grad((ny, hy, wy, cy), w_shape, (h, wd),
                                                        stride, dilation, (pt, pl), groups,
                                                        itemsize=dtype.itemsize)


def conv2d_transpose(
    input: ArrayLike,
    filters: ArrayLike,
    output_shape: Sequence[int],
    strides: IntOrInts,
    padding: Padding = "SAME",
    data_format: str = "NHWC",
    dilations: IntOrInts | None = None,
    *,
    threads: int | None = None,
) -> NDArray[np.floating]:
    """Transposed convolution ("deconvolution"), as ``tf.nn.conv2d_transpose``.

    The exact adjoint of :func:`conv2d`: for ``x`` of shape ``output_shape``,
    ``<conv2d(x, w, ...), y> == <x, conv2d_transpose(y, w, x.shape, ...)>``. Each output element
    is a gather over the taps that reach it.

    Parameters
    ----------
    input : array_like, shape ``[N, H, W, in_channels]`` (NHWC) or ``[N, in_channels, H, W]``
    filters : array_like, shape ``[fh, fw, out_channels / groups, in_channels]``
        Note the order: the last two axes are swapped against :func:`conv2d`'s because this is
        its reverse. ``groups = out_channels / filters.shape[2]``.
    output_shape : sequence of 4 ints, in the data_format's order
        Several output sizes convolve to the same input size; ``output_shape`` chooses one of
        them. An output height (width) is admissible when ``conv2d`` of that height gives ``H``
        (``W``): see :func:`numbadeconv.transpose_output_sizes`.
    strides, padding, data_format, dilations, threads
        See the module documentation.

    Returns
    -------
    ndarray of shape ``output_shape``

    Raises
    ------
    TypeError
        For non-float arrays or arguments of the wrong kind.
    ValueError
        For an inadmissible ``output_shape`` (the message lists the admissible sizes), wrong
        ranks, mismatched channels or batch, or bad strides/dilations/padding/data_format.

    Examples
    --------
    >>> import numpy as np, numbadeconv as nd
    >>> y = nd.conv2d_transpose(np.ones((1, 3, 3, 1)), np.ones((3, 3, 3, 1)),
    ...                         output_shape=[1, 6, 6, 3], strides=2, padding="SAME")
    >>> y.shape
    (1, 6, 6, 3)
    >>> y[0, :2, :, 0]
    array([[1., 1., 2., 1., 2., 1.],
           [1., 1., 2., 1., 2., 1.]])
    """
    return _input_grad("output_shape", output_shape, filters, "input", input, strides, padding,
                       data_format, dilations, threads)


def conv2d_backprop_input(
    input_sizes: Sequence[int],
    filters: ArrayLike,
    out_backprop: ArrayLike,
    strides: IntOrInts,
    padding: Padding,
    data_format: str = "NHWC",
    dilations: IntOrInts | None = None,
    *,
    threads: int | None = None,
) -> NDArray[np.floating]:
    """Gradient of :func:`conv2d` with respect to its input (TensorFlow's ``Conv2DBackpropInput``).

    The same operation as :func:`conv2d_transpose` with TensorFlow's argument order:
    ``input_sizes`` is the convolution input's shape, ``filters`` ``[fh, fw, C / groups,
    out_channels]`` the convolution's filters and ``out_backprop`` the gradient of its output.

    Returns
    -------
    ndarray of shape ``input_sizes``

    Examples
    --------
    >>> import numpy as np, numbadeconv as nd
    >>> dx = nd.conv2d_backprop_input([1, 5, 5, 3], np.ones((3, 3, 3, 1)), np.ones((1, 3, 3, 1)),
    ...                               strides=2, padding="SAME")
    >>> dx.shape
    (1, 5, 5, 3)
    """
    return _input_grad("input_sizes", input_sizes, filters, "out_backprop", out_backprop, strides,
                       padding, data_format, dilations, threads)


def conv2d_backprop_filter(
    input: ArrayLike,
    filter_sizes: Sequence[int],
    out_backprop: ArrayLike,
    strides: IntOrInts,
    padding: Padding,
    data_format: str = "NHWC",
    dilations: IntOrInts | None = None,
    *,
    threads: int | None = None,
) -> NDArray[np.floating]:
    """Gradient of :func:`conv2d` with respect to its filters (``Conv2DBackpropFilter``).

    Parameters
    ----------
    input : array_like, shape ``[N, H, W, C]`` (NHWC) or ``[N, C, H, W]`` (NCHW)
    filter_sizes : sequence of 4 ints
        ``[fh, fw, C / groups, out_channels]``.
    out_backprop : array_like, shape of ``conv2d``'s output
        ``[N, OH, OW, out_channels]`` (NHWC) or ``[N, out_channels, OH, OW]`` (NCHW).
    strides, padding, data_format, dilations, threads
        See the module documentation.

    Returns
    -------
    ndarray of shape ``filter_sizes``
        ``<conv2d(x, w), dy> == <w, conv2d_backprop_filter(x, w.shape, dy)>``.

    Examples
    --------
    >>> import numpy as np, numbadeconv as nd
    >>> dw = nd.conv2d_backprop_filter(np.ones((1, 5, 5, 3)), [3, 3, 3, 1], np.ones((1, 3, 3, 1)),
    ...                                strides=2, padding="SAME")
    >>> dw[:, :, 0, 0]
    array([[4., 6., 4.],
           [6., 9., 6.],
           [4., 6., 4.]])
    """
    x, dy = np.asarray(input), np.asarray(out_backprop)
    dtype, result, nhwc, stride, dilation, pad, kernel_hw, groups = _filter_grad_geometry(
        x.shape, x.dtype, dy.shape, dy.dtype, filter_sizes, strides, padding, data_format,
        dilations)
    out = _engine.conv2d_filter_grad(_args.prepared(x, dtype, nhwc),
                                     _args.prepared(dy, dtype, nhwc), kernel_hw, stride, dilation,
                                     pad, groups, _jit.resolve_threads(threads))
    return _finish(out, result, True)


@_args.memoised(trusted=4)
def _filter_grad_geometry(x_shape, x_dtype, dy_shape, dy_dtype, filter_sizes, strides, padding,
                          data_format, dilations):
    """Validated settings of a filter gradient.

    Returns (compute dtype, result dtype, nhwc, stride, dilation, pad, kernel_hw, groups).
    """
    _args.float_dtype("input", x_dtype)
    _args.float_dtype("out_backprop", dy_dtype)
    dtype, result = _args.compute_dtype(x_dtype, dy_dtype)
    nhwc = _args.channels_last(data_format)
    _args.rank4("input", x_shape)
    _args.rank4("out_backprop", dy_shape)
    fh, fw, f_in, f_out = _args.shape4("filter_sizes", filter_sizes)
    if fh == 0 or fw == 0:
        raise ValueError(f"filter_sizes must have a height and width of at least 1; "
                         f"got {[fh, fw, f_in, f_out]}")
    stride = _args.spatial_pair("strides", strides, nhwc)
    dilation = _args.spatial_pair("dilations", dilations, nhwc, 1)
    pads = _args.padding_pair(padding, nhwc)
    n, h, wd, c = _nhwc(x_shape, nhwc)
    ny, hy, wy, cy = _nhwc(dy_shape, nhwc)
    groups = _args.groups_of(c, f_in, f_out, "input", "filter_sizes")
    if ny != n:
        raise ValueError(f"out_backprop has batch {ny} but input has batch {n}")
    if cy != f_out:
        raise ValueError(f"out_backprop has {cy} channels but filter_sizes out_channels "
                         f"(entry 3) is {f_out}; they must match")
    oh, pt = _args.conv_window("height", h, fh, stride[0], pads[0], dilation[0])
    ow, pl = _args.conv_window("width", wd, fw, stride[1], pads[1], dilation[1])
    if (hy, wy) != (oh, ow):
        raise ValueError(f"out_backprop is {hy}x{wy} (height x width) but conv2d of the "
                         f"{h}x{wd} input with these filter_sizes, strides, padding and "
                         f"dilations gives {oh}x{ow}")
    return dtype, result, nhwc, stride, dilation, (pt, pl), (fh, fw), groups
