"""Output sizes of a convolution and the admissible sizes of its transpose (TensorFlow's rules).

``padding`` here is one spatial dimension's: ``"SAME"``, ``"VALID"`` or a ``(before, after)`` pair.
The rules are TensorFlow's ``GetWindowedOutputSizeVerbose``, with C++ truncating division:

- effective kernel ``ek = (kernel - 1) * dilation + 1``;
- VALID: ``out = trunc((in - ek + stride) / stride)``;
- explicit ``(before, after)``: ``out = trunc((in + before + after - ek + stride) / stride)``;
- SAME: ``out = ceil(in / stride)``, padding ``max(0, (out - 1) * stride + ek - in)`` split with the
  odd pixel after (bottom/right); SAME works for kernels larger than the input.

A negative ``out`` is an error. The transpose of a convolution that maps ``n`` to ``m`` can produce
any ``n`` whose convolution gives ``m``: :func:`transpose_output_sizes` lists them.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

Padding1D = str | tuple[int, int]


def _trunc_div(a: int, b: int) -> int:
    """C++ integer division (rounds toward zero); ``b > 0``."""
    return a // b if a >= 0 else -((-a) // b)


def effective_kernel(kernel: int, dilation: int) -> int:
    """Extent of a dilated kernel: ``(kernel - 1) * dilation + 1``."""
    return (kernel - 1) * dilation + 1


def describe_padding(padding: Padding1D) -> str:
    """``SAME``, ``VALID`` or ``padding (1, 2)``, for messages."""
    return padding if isinstance(padding, str) else f"padding {tuple(padding)}"


def window(
    in_size: int, kernel: int, stride: int, padding: Padding1D, dilation: int = 1
) -> tuple[int, int, int]:
    """Output size and padding ``(out, before, after)`` of one spatial dimension (no checks).

    The output may be negative: callers decide how to report that.
    """
    ek = effective_kernel(kernel, dilation)
    if padding == "VALID":
        return _trunc_div(in_size - ek + stride, stride), 0, 0
    if padding == "SAME":
        out = (in_size + stride - 1) // stride
        needed = max(0, (out - 1) * stride + ek - in_size)
        return out, needed // 2, needed - needed // 2
    before, after = padding
    return _trunc_div(in_size + before + after - ek + stride, stride), before, after


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {value!r} of type {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return value


def check_padding_1d(padding: object) -> Padding1D:
    """Normalise one dimension's padding: ``"SAME"``, ``"VALID"`` or a non-negative pair."""
    if isinstance(padding, str):
        upper = padding.upper()
        if upper in ("SAME", "VALID"):
            return upper
        raise ValueError(
            f"padding must be 'SAME', 'VALID' or a (before, after) pair; got {padding!r}")
    if isinstance(padding, Sequence) and len(padding) == 2:
        return (
            _check_int("padding before", padding[0], 0),
            _check_int("padding after", padding[1], 0),
        )
    raise ValueError(f"padding must be 'SAME', 'VALID' or a (before, after) pair; got {padding!r}")


def conv_output_size(
    in_size: int, kernel: int, stride: int, padding: Padding1D, dilation: int = 1
) -> int:
    """Size of a convolution's output along one spatial dimension, as TensorFlow computes it.

    Parameters
    ----------
    in_size : int
        Input size (>= 0).
    kernel : int
        Kernel size (>= 1).
    stride : int
        Stride (>= 1).
    padding : {"SAME", "VALID"} or (int, int)
        Padding mode, or explicit ``(before, after)`` padding.
    dilation : int, default 1
        Dilation rate (>= 1).

    Returns
    -------
    int
        The output size (may be 0).

    Raises
    ------
    ValueError
        If an argument is out of range or the output size would be negative (the dilated kernel
        does not fit in the padded input).

    Examples
    --------
    >>> conv_output_size(5, 3, 2, "SAME"), conv_output_size(6, 3, 2, "SAME")
    (3, 3)
    >>> conv_output_size(10, 3, 2, "VALID")
    4
    """
    in_size = _check_int("in_size", in_size, 0)
    kernel = _check_int("kernel", kernel, 1)
    stride = _check_int("stride", stride, 1)
    dilation = _check_int("dilation", dilation, 1)
    padding = check_padding_1d(padding)
    out, _, _ = window(in_size, kernel, stride, padding, dilation)
    if out < 0:
        raise ValueError(
            f"conv output size would be negative ({out}): an input of size {in_size} with "
            f"{describe_padding(padding)} is smaller than the dilated kernel "
            f"{effective_kernel(kernel, dilation)} (kernel {kernel}, dilation {dilation})"
        )
    return out


def admissible_range(
    out_size: int, kernel: int, stride: int, padding: Padding1D, dilation: int = 1
) -> range:
    """Every input size that convolves to ``out_size``, as a range (no checks)."""
    ek = effective_kernel(kernel, dilation)
    if padding == "SAME":
        if out_size == 0:
            return range(0, 1)
        return range((out_size - 1) * stride + 1, out_size * stride + 1)
    total = 0 if padding == "VALID" else padding[0] + padding[1]
    # out = trunc(t / stride) with t = in + total - ek + stride: out == m >= 1 iff
    # m*stride <= t < (m+1)*stride; out == 0 iff -stride < t < stride (truncation toward 0).
    if out_size == 0:
        lo, hi = ek - total - 2 * stride + 1, ek - total - 1
    else:
        lo = out_size * stride - total + ek - stride
        hi = lo + stride - 1
    return range(max(lo, 0), max(hi + 1, 0))


def transpose_output_sizes(
    in_size: int, kernel: int, stride: int, padding: Padding1D, dilation: int = 1
) -> tuple[int, ...]:
    """Every output size a transposed convolution of an ``in_size`` input may have, in order.

    These are the sizes ``n`` for which ``conv_output_size(n, kernel, stride, padding, dilation)
    == in_size``: the transpose is the reverse of that convolution, and ``output_shape`` chooses
    among them.

    Parameters
    ----------
    in_size : int
        Size of the transpose's input (the convolution's output), >= 0.
    kernel, stride, padding, dilation
        As in :func:`conv_output_size`.

    Returns
    -------
    tuple of int
        The admissible sizes in increasing order; empty when none exists.

    Examples
    --------
    >>> transpose_output_sizes(3, 3, 2, "SAME")
    (5, 6)
    >>> transpose_output_sizes(3, 3, 1, "VALID")
    (5,)
    """
    in_size = _check_int("in_size", in_size, 0)
    kernel = _check_int("kernel", kernel, 1)
    stride = _check_int("stride", stride, 1)
    dilation = _check_int("dilation", dilation, 1)
    padding = check_padding_1d(padding)
    return tuple(admissible_range(in_size, kernel, stride, padding, dilation))
