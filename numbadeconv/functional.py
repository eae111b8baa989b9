"""The PyTorch-flavoured operations: ``conv2d`` and ``conv_transpose2d`` as ``torch.nn.functional``.

>>> from numbadeconv import functional as F

Same signatures, layouts and sizes as ``torch.nn.functional.conv2d`` / ``conv_transpose2d``, on the
same kernels as the TensorFlow-flavoured :mod:`numbadeconv.api`:

- ``input`` is ``[N, C, H, W]`` (NCHW) or unbatched ``[C, H, W]`` (the result is then unbatched).
- ``weight`` is ``[out_channels, in_channels / groups, kH, kW]`` for :func:`conv2d` and
  ``[in_channels, out_channels / groups, kH, kW]`` for :func:`conv_transpose2d`.
- ``stride``, ``dilation``, ``padding`` and ``output_padding`` are an int or a pair
  ``(height, width)``; :func:`conv2d` also takes ``padding="valid"`` or ``"same"``.
- ``bias`` is ``[out_channels]`` and is added inside the kernel (no extra pass over the output).

dtypes: float32 and float64 are computed natively; float16 is computed in float32 and returned as
float16. Unlike PyTorch, which refuses mixed dtypes, the result has ``np.result_type`` of
``input``, ``weight`` and ``bias`` (float32 with float64 gives float64). Inputs may be lists,
non-contiguous or read-only. Results are new C-contiguous NCHW arrays, except that, as PyTorch keeps
the memory format of its input, an NCHW view of an NHWC buffer (PyTorch's ``channels_last``) is read
without a copy and gives the same kind of view of a new NHWC result.

``threads`` (keyword only): most threads the call may use; default ``numba.get_num_threads()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _args, _engine, _jit

__all__ = ["conv2d", "conv_transpose2d"]

IntOrPair = int | Sequence[int]


def _input_shape(shape, dtype, op: str, layout: str) -> tuple[tuple[int, ...], bool]:
    """``input``'s 4-D shape (a 3-D one gets a batch of 1), and whether it was unbatched."""
    _args.float_dtype("input", dtype)
    if len(shape) == 3:
        return (1, *shape), True
    if len(shape) != 4:
        raise ValueError(f"{op}: input must be 4-D [N, {layout}] or unbatched 3-D [{layout}]; "
                         f"got {len(shape)}-D with shape {shape}")
    return shape, False


def _weight_shape(shape, dtype, op: str, layout: str) -> None:
    _args.float_dtype("weight", dtype)
    if len(shape) != 4:
        raise ValueError(f"{op}: weight must be 4-D [{layout}]; got {len(shape)}-D with shape "
                         f"{shape}")
    if shape[2] == 0 or shape[3] == 0:
        raise ValueError(f"{op}: weight must have a kernel height and width (axes 2 and 3) of at "
                         f"least 1 ([{layout}]); got shape {shape}")


def _groups(value) -> int:
    if not _args._is_int(value):
        raise TypeError(f"groups must be a positive int; got {value!r}")
    if value < 1:
        raise ValueError(f"groups must be a positive int; got {value}")
    return int(value)


def _bias_shape(shape, dtype, n_out: int, op: str) -> None:
    """ValueError/TypeError unless a given bias (``shape`` not None) is ``[n_out]`` floats."""
    if shape is None:
        return
    _args.float_dtype("bias", dtype)
    if shape != (n_out,):
        raise ValueError(f"{op}: bias must be 1-D of length out_channels = {n_out}; got shape "
                         f"{shape}")


def _dtypes(x_dtype, w_dtype, b_dtype) -> tuple[np.dtype, np.dtype]:
    """:func:`_args.compute_dtype` of input, weight and bias (``b_dtype`` None: no bias)."""
    if b_dtype is None:
        return _args.compute_dtype(x_dtype, w_dtype)
    return _args.compute_dtype(x_dtype, w_dtype, b_dtype)


def _arrays(input, weight, bias):
    """A call's arrays (bias None if not given), and the bias's shape and dtype (or None)."""
    b = None if bias is None else np.asarray(bias)
    return (np.asarray(input), np.asarray(weight), b, None if b is None else b.shape,
            None if b is None else b.dtype)


def _bias_for_engine(b: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    """``bias`` as the engine needs it: C-contiguous, writeable, native ``dtype``."""
    return None if b is None else _args.prepared(b, dtype, True, "bias")


def _channels_last(x: np.ndarray) -> bool:
    """Whether ``x`` (NCHW) is an NCHW view of an NHWC buffer: PyTorch's ``channels_last``."""
    return x.transpose(0, 2, 3, 1).flags.c_contiguous and not x.flags.c_contiguous


def _finish(out: np.ndarray, result: np.dtype, unbatched: bool) -> np.ndarray:
    """NHWC engine result -> NCHW (or CHW) array of the result dtype.

    ``out`` is the NHWC view of the C-contiguous NCHW array that the kernels wrote, or, when the
    input was ``channels_last``, a C-contiguous NHWC result, returned as its NCHW view (PyTorch
    keeps the memory format of its input).
    """
    out = out.transpose(0, 3, 1, 2).astype(result, copy=False)
    return out[0] if unbatched else out


def _conv_padding(padding, kernel, dilation) -> tuple[tuple[int, int], bool]:
    """Return (pad top, pad left) for ``padding`` and whether it is ``"same"``."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0), False
        if mode == "same":
            return tuple((d * (k - 1)) // 2 for k, d in zip(kernel, dilation, strict=True)), True
        raise ValueError(f"padding must be 'valid', 'same', an int or a pair of ints; "
                         f"got {padding!r}")
    return _args.int_pair("padding", padding, 0), False


def conv2d(
    input: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrPair = 1,
    padding: str | IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    *,
    threads: int | None = None,
) -> NDArray[np.floating]:
    """2-D convolution (cross-correlation), as ``torch.nn.functional.conv2d``.

    ``out[n, o, y, x] = bias[o] + sum_{c, i, j} xpad[n, g*Cg + c, y*sh + i*dh, x*sw + j*dw]
    * weight[o, c, i, j]`` with ``g = o // (out_channels / groups)``, ``Cg = in_channels /
    groups`` and ``xpad`` the zero-padded input.

    Parameters
    ----------
    input : array_like, shape ``[N, in_channels, H, W]`` or ``[in_channels, H, W]``
    weight : array_like, shape ``[out_channels, in_channels / groups, kH, kW]``
    bias : array_like, shape ``[out_channels]``, optional
    stride : int or (int, int), default 1
    padding : int, (int, int), "valid" or "same", default 0
        Zeros added on both sides of each spatial axis. ``"same"`` (stride 1 only) pads
        ``dilation * (kernel - 1)`` in total with the odd pixel at the end (bottom/right), as
        PyTorch does.
    dilation : int or (int, int), default 1
    groups : int, default 1
        Must divide ``in_channels`` and ``out_channels``; ``groups == in_channels`` is a depthwise
        convolution (``out_channels`` a multiple of it).
    threads : int, optional
        Most threads the call may use; default ``numba.get_num_threads()``.

    Returns
    -------
    ndarray, shape ``[N, out_channels, OH, OW]`` (``[out_channels, OH, OW]`` if unbatched)
        ``OH = (H + 2 * padding - dilation * (kH - 1) - 1) // stride + 1`` (``H`` for "same"),
        likewise ``OW``. dtype: ``np.result_type`` of the arrays (float16 stays float16).

    Raises
    ------
    TypeError
        For non-float arrays or arguments of the wrong kind.
    ValueError
        For wrong ranks, channels that ``groups`` does not divide, ``input`` channels that do not
        match ``weight`` axis 1 times ``groups``, a bias of the wrong shape, non-positive
        ``stride``/``dilation``/``groups``, negative ``padding``, ``"same"`` with a stride above
        1, or a (dilated) kernel larger than the padded input.

    Examples
    --------
    >>> import numpy as np
    >>> from numbadeconv import functional as F
    >>> x = np.ones((1, 3, 5, 5), np.float32)
    >>> F.conv2d(x, np.ones((2, 3, 3, 3), np.float32), np.array([0, 100], np.float32),
    ...          stride=2, padding=1)[0, :, 0]
    array([[ 12.,  18.,  12.],
           [112., 118., 112.]], dtype=float32)
    >>> F.conv2d(x, np.ones((3, 1, 3, 3), np.float32), padding="same", groups=3).shape
    (1, 3, 5, 5)
    """
    x, w, b, b_shape, b_dtype = _arrays(input, weight, bias)
    unbatched, dtype, result, stride, dilation, pad, out_hw, groups = _conv2d_settings(
        x.shape, x.dtype, w.shape, w.dtype, b_shape, b_dtype, stride, padding, dilation, groups)
    if unbatched:
        x = x[np.newaxis]
    out = _engine.conv2d(_args.prepared(x, dtype, False), _args.prepared(w, dtype, True, "weight"),
                         stride, dilation, pad, out_hw, groups, _jit.resolve_threads(threads),
                         bias=_bias_for_engine(b, dtype), channels_first=not _channels_last(x),
                         torch_layout=True)
    return _finish(out, result, unbatched)


@_args.memoised(trusted=6)
def _conv2d_settings(x_shape, x_dtype, w_shape, w_dtype, b_shape, b_dtype, stride, padding,
                     dilation, groups):
    """A conv2d's arguments, validated and lowered.

    Returns (unbatched, compute dtype, result dtype, stride, dilation, pad, out_hw, groups).
    """
    op = "conv2d"
    (n, c, h, wd), unbatched = _input_shape(x_shape, x_dtype, op, "in_channels, H, W")
    _weight_shape(w_shape, w_dtype, op, "out_channels, in_channels / groups, kH, kW")
    groups = _groups(groups)
    stride = _args.int_pair("stride", stride, 1)
    dilation = _args.int_pair("dilation", dilation, 1)
    kernel = w_shape[2:]
    pad, same = _conv_padding(padding, kernel, dilation)
    n_out, cig = w_shape[:2]
    if same and stride != (1, 1):
        raise ValueError(f"padding='same' is not supported for strided convolutions (stride "
                         f"{stride}); use stride=1 or an explicit padding")
    if n_out % groups:
        raise ValueError(f"weight out_channels (axis 0) {n_out} must be divisible by groups "
                         f"{groups}")
    if c % groups:
        raise ValueError(f"input in_channels (axis {1 - unbatched}) {c} must be "
                         f"divisible by groups {groups}")
    if c != cig * groups:
        raise ValueError(f"input has {c} channels (axis {1 - unbatched}) but weight expects "
                         f"in_channels = weight axis 1 ({cig}) * groups ({groups}) = "
                         f"{cig * groups}")
    _bias_shape(b_shape, b_dtype, n_out, op)
    out_hw = []
    for axis, size, k, s, d, p in zip(("height", "width"), (h, wd), kernel, stride, dilation,
                                      pad, strict=True):
        extent = d * (k - 1) + 1
        if same:
            out_hw.append(size)
        elif size + 2 * p < extent:
            raise ValueError(
                f"kernel {axis} is larger than the padded input: input {axis} {size} + 2 * "
                f"padding {p} = {size + 2 * p} < dilated kernel {axis} {extent} (kernel {k}, "
                f"dilation {d})"
            )
        else:
            out_hw.append((size + 2 * p - extent) // s + 1)
    dtype, result = _dtypes(x_dtype, w_dtype, b_dtype)
    _args.check_output_bytes("output", (n, n_out, *out_hw), dtype.itemsize)
    return unbatched, dtype, result, stride, dilation, pad, tuple(out_hw), groups


def conv_transpose2d(
    input: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    output_padding: IntOrPair = 0,
    groups: int = 1,
    dilation: IntOrPair = 1,
    *,
    threads: int | None = None,
) -> NDArray[np.floating]:
    """Transposed convolution ("deconvolution"), as ``torch.nn.functional.conv_transpose2d``.

    Note PyTorch's positional order: ``groups`` comes before ``dilation``. Each input pixel
    ``(y, x)`` adds ``input[n, c, y, x] * weight[c, o, i, j]`` to output pixel
    ``(y*sh - ph + i*dh, x*sw - pw + j*dw)`` of channel ``g * out_channels / groups + o``; pixels
    outside the output are dropped. It is the adjoint of :func:`conv2d` with the same ``weight``,
    ``stride``, ``padding``, ``dilation`` and ``groups`` on an input of the output's size; in
    TensorFlow's terms, ``(padding=p, output_padding=op)`` is explicit padding ``[p, p - op]``.

    Parameters
    ----------
    input : array_like, shape ``[N, in_channels, H, W]`` or ``[in_channels, H, W]``
    weight : array_like, shape ``[in_channels, out_channels / groups, kH, kW]``
    bias : array_like, shape ``[out_channels]``, optional
    stride : int or (int, int), default 1
    padding : int or (int, int), default 0
        ``dilation * (kernel - 1) - padding`` zeros are implicitly added to both sides of the
        input; the output loses ``padding`` pixels at each end.
    output_padding : int or (int, int), default 0
        Pixels added at the end (bottom/right) of the output, to pick one of the ``stride`` sizes
        that :func:`conv2d` maps to ``H``. Must be smaller than the stride or the dilation.
    groups : int, default 1
        Must divide ``in_channels``; ``out_channels = weight.shape[1] * groups``.
    dilation : int or (int, int), default 1
    threads : int, optional
        Most threads the call may use; default ``numba.get_num_threads()``.

    Returns
    -------
    ndarray, shape ``[N, out_channels, OH, OW]`` (``[out_channels, OH, OW]`` if unbatched)
        ``OH = (H - 1) * stride - 2 * padding + dilation * (kH - 1) + output_padding + 1``,
        likewise ``OW``. dtype: ``np.result_type`` of the arrays (float16 stays float16).

    Raises
    ------
    TypeError
        For non-float arrays or arguments of the wrong kind.
    ValueError
        For wrong ranks, ``in_channels`` that ``groups`` does not divide, ``input`` channels that
        differ from ``weight`` axis 0, a bias of the wrong shape, non-positive
        ``stride``/``dilation``/``groups``, negative ``padding``/``output_padding``, an
        ``output_padding`` not smaller than the stride or the dilation, or a non-positive output
        size.

    Examples
    --------
    >>> import numpy as np
    >>> from numbadeconv import functional as F
    >>> y = F.conv_transpose2d(np.ones((1, 1, 3, 3)), np.ones((1, 2, 3, 3)), stride=2,
    ...                        padding=1, output_padding=1)
    >>> y.shape
    (1, 2, 6, 6)
    >>> y[0, 0, :2]
    array([[1., 2., 1., 2., 1., 1.],
           [2., 4., 2., 4., 2., 2.]])
    """
    x, w, b, b_shape, b_dtype = _arrays(input, weight, bias)
    unbatched, dtype, result, stride, dilation, pad, out_hw, groups = _transpose_settings(
        x.shape, x.dtype, w.shape, w.dtype, b_shape, b_dtype, stride, padding, output_padding,
        groups, dilation)
    if unbatched:
        x = x[np.newaxis]
    # The adjoint of conv2d on an out_hw input with pad-before ``padding``: the engine's transpose
    # needs only the pad before (the pixels beyond the last tap are zeros), so any padding and
    # output_padding PyTorch allows (TensorFlow's [p, p - op], even when p - op < 0) maps exactly.
    out = _engine.conv2d_input_grad(_args.prepared(x, dtype, False),
                                    _args.prepared(w, dtype, True, "weight"), out_hw, stride,
                                    dilation, pad, groups, _jit.resolve_threads(threads),
                                    bias=_bias_for_engine(b, dtype),
                                    channels_first=not _channels_last(x), torch_layout=True)
    return _finish(out, result, unbatched)


@_args.memoised(trusted=6)
def _transpose_settings(x_shape, x_dtype, w_shape, w_dtype, b_shape, b_dtype, stride, padding,
                        output_padding, groups, dilation):
    """A conv_transpose2d's arguments, validated and lowered.

    Returns (unbatched, compute dtype, result dtype, stride, dilation, pad, out_hw, groups).
    """
    op = "conv_transpose2d"
    (n, c, h, wd), unbatched = _input_shape(x_shape, x_dtype, op, "in_channels, H, W")
    _weight_shape(w_shape, w_dtype, op, "in_channels, out_channels / groups, kH, kW")
    groups = _groups(groups)
    stride = _args.int_pair("stride", stride, 1)
    if isinstance(padding, str):
        raise TypeError(f"conv_transpose2d: padding must be an int or a pair of ints (string "
                        f"padding is for conv2d only); got {padding!r}")
    pad = _args.int_pair("padding", padding, 0)
    out_pad = _args.int_pair("output_padding", output_padding, 0)
    dilation = _args.int_pair("dilation", dilation, 1)
    c_w, cog = w_shape[:2]
    kernel = w_shape[2:]
    if c_w % groups:
        raise ValueError(f"weight in_channels (axis 0) {c_w} must be divisible by groups "
                         f"{groups}")
    if c != c_w:
        raise ValueError(f"input has {c} channels (axis {1 - unbatched}) but weight in_channels "
                         f"(axis 0) is {c_w}; they must match")
    n_out = cog * groups
    _bias_shape(b_shape, b_dtype, n_out, op)
    out_hw = []
    for axis, size, k, s, d, p, op_ in zip(("height", "width"), (h, wd), kernel, stride,
                                           dilation, pad, out_pad, strict=True):
        if op_ >= s and op_ >= d:
            raise ValueError(f"output_padding {op_} (along the {axis}) must be smaller than "
                             f"either stride {s} or dilation {d}")
        size_out = (size - 1) * s - 2 * p + d * (k - 1) + op_ + 1
        if size_out <= 0:
            raise ValueError(
                f"output {axis} would be {size_out} (must be positive): (input {axis} {size} - "
                f"1) * stride {s} - 2 * padding {p} + dilation {d} * (kernel {k} - 1) + "
                f"output_padding {op_} + 1; reduce the padding"
            )
        out_hw.append(size_out)
    dtype, result = _dtypes(x_dtype, w_dtype, b_dtype)
    _args.check_output_bytes("output", (n, n_out, *out_hw), dtype.itemsize)
    return unbatched, dtype, result, stride, dilation, pad, tuple(out_hw), groups
