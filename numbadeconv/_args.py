"""Validation and normalisation of the public arguments (TensorFlow's conventions).

Every function raises ``TypeError`` for a wrong kind or dtype and ``ValueError`` for a wrong
shape or value, with a message that names the argument, what was given and what is allowed.
:func:`memoised` lets the operations validate a call's shapes and settings once: repeated calls
with the same ones cost a dictionary look-up.
"""

from __future__ import annotations

import functools
import numbers
import os

import numpy as np

from . import sizes

_FLOAT_DTYPES = frozenset((np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)))
_NATIVE_COMPUTE = frozenset((np.dtype(np.float32), np.dtype(np.float64)))  # native byte order


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX
        return 1 << 40


#: Largest stride, dilation or explicit padding: keeps every offset the kernels compute within
#: int64.
MAX_GEOMETRY = 2**31 - 1

#: Results (and the buffers the kernels need beside them) larger than the machine's memory are
#: refused before anything is allocated.
MAX_OUTPUT_BYTES = _physical_memory()


#: Argument types that are their own key (``bool`` is not: ``True == 1``).
_PLAIN = frozenset((int, str, type(None)))
_INT = frozenset((int,))


def _key(value):
    """A hashable, type-exact stand-in for a small argument; TypeError if there is none.

    Types are part of the key, so that ``True`` or ``2.0`` never hit the entry of ``1`` or ``2``.
    """
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is tuple or kind is list:
        if set(map(type, value)) <= _INT:
            return (kind, tuple(value))
        return (kind, tuple(map(_key, value)))
    if isinstance(value, (bool, np.integer, np.dtype)):
        return (kind, value)
    raise TypeError("no key")


def memoised(trusted: int = 0):
    """Memoise a pure function of small arguments on :func:`_key` of its arguments.

    Its first ``trusted`` arguments must be array shapes and dtypes (``ndarray.shape``, a tuple of
    Python ints, and ``ndarray.dtype``): type-exact already, they are their own keys. Calls with
    arguments that have no key (arrays, say) are not memoised; exceptions are never cached, so a
    bad call costs its full validation every time and leaves nothing behind.
    """

    def decorate(func):
        cache: dict = {}

        @functools.wraps(func)
        def wrapper(*args):
            key = list(args)
            try:
                for i in range(trusted, len(key)):
                    if type(key[i]) not in _PLAIN:
                        key[i] = _key(key[i])
            except TypeError:
                return func(*args)
            key = tuple(key)
            try:
                return cache[key]
            except KeyError:
                pass
            result = func(*args)
            if len(cache) >= 1024:
                cache.clear()
            cache[key] = result
            return result

        return wrapper

    return decorate


def _is_int(value) -> bool:
    return (isinstance(value, (numbers.Integral, np.integer))
            and not isinstance(value, (bool, np.bool_)))


def _int_list(name: str, value) -> list[int]:
    """``value`` as a list of Python ints (a scalar int becomes a 1-list)."""
    if _is_int(value):
        return [int(value)]
    if isinstance(value, np.ndarray):
        if value.ndim > 1:
            raise ValueError(f"{name} must be an int or a 1-D sequence of ints; got an array of "
                             f"shape {value.shape}")
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be an int or a sequence of ints; got {value!r}")
    if not all(_is_int(v) for v in value):
        raise TypeError(f"{name} must contain ints only; got {value!r}")
    return [int(v) for v in value]


def channels_last(data_format) -> bool:
    """True for ``"NHWC"``, False for ``"NCHW"``."""
    if data_format == "NHWC":
        return True
    if data_format == "NCHW":
        return False
    raise ValueError(f"data_format must be 'NHWC' or 'NCHW'; got {data_format!r}")


def spatial_pair(name: str, value, nhwc: bool, default: int | None = None) -> tuple[int, int]:
    """Strides or dilations: an int, or 1, 2 or 4 ints (4 in the data_format's axis order)."""
    if value is None and default is not None:
        return (default, default)
    values = _int_list(name, value)
    layout = "[1, h, w, 1]" if nhwc else "[1, 1, h, w]"
    if len(values) == 1:
        pair = (values[0], values[0])
    elif len(values) == 2:
        pair = (values[0], values[1])
    elif len(values) == 4:
        batch, channel = (values[0], values[3]) if nhwc else (values[0], values[1])
        if batch != 1 or channel != 1:
            raise ValueError(f"{name} must be 1 along the batch and channel axes ({layout} for "
                             f"{'NHWC' if nhwc else 'NCHW'}); got {values}")
        pair = (values[1], values[2]) if nhwc else (values[2], values[3])
    else:
        raise ValueError(f"{name} must be an int or a sequence of 1, 2 or 4 ints "
                         f"({layout} for {'NHWC' if nhwc else 'NCHW'}); got {values}")
    if min(pair) < 1 or max(pair) > MAX_GEOMETRY:
        raise ValueError(f"{name} must be between 1 and {MAX_GEOMETRY}; got {values}")
    return pair


def int_pair(name: str, value, minimum: int) -> tuple[int, int]:
    """PyTorch-style size argument: an int or 1 or 2 ints (height, width), each >= ``minimum``."""
    values = _int_list(name, value)
    if len(values) not in (1, 2):
        raise ValueError(f"{name} must be an int or a pair of ints (height, width); "
                         f"got {values}")
    pair = (values[0], values[-1])
    if min(pair) < minimum:
        what = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {what}; got {values if len(values) > 1 else pair[0]}")
    if max(pair) > MAX_GEOMETRY:
        raise ValueError(f"{name} must be at most {MAX_GEOMETRY}; got "
                         f"{values if len(values) > 1 else pair[0]}")
    return pair


def padding_pair(padding, nhwc: bool) -> tuple:
    """``"SAME"``, ``"VALID"`` or explicit pairs -> one 1-D padding per spatial axis (h, w)."""
    if isinstance(padding, str):
        mode = padding.upper()
        if mode not in ("SAME", "VALID"):
            raise ValueError(f"padding must be 'SAME', 'VALID' or explicit pairs "
                             f"[[0, 0], [top, bottom], [left, right], [0, 0]]; got {padding!r}")
        return (mode, mode)
    layout = ("[[0, 0], [top, bottom], [left, right], [0, 0]]" if nhwc
              else "[[0, 0], [0, 0], [top, bottom], [left, right]]")
    try:
        pairs = np.asarray(padding, dtype=object)
    except ValueError:
        pairs = None
    if pairs is None or pairs.shape != (4, 2):
        raise ValueError(f"explicit padding must be 4 pairs {layout}; got {padding!r}")
    if not all(_is_int(v) for v in pairs.ravel()):
        raise TypeError(f"explicit padding must contain ints only; got {padding!r}")
    pairs = [[int(a), int(b)] for a, b in pairs]
    if min(min(p) for p in pairs) < 0 or max(max(p) for p in pairs) > MAX_GEOMETRY:
        raise ValueError(f"explicit padding must be between 0 and {MAX_GEOMETRY}; got {pairs}")
    other = (0, 3) if nhwc else (0, 1)
    if any(pairs[i] != [0, 0] for i in other):
        raise ValueError(f"explicit padding must be [0, 0] along the batch and channel axes "
                         f"({layout}); got {pairs}")
    h, w = (1, 2) if nhwc else (2, 3)
    return (tuple(pairs[h]), tuple(pairs[w]))


def shape4(name: str, value) -> tuple[int, int, int, int]:
    """A 4-D shape (``output_shape``, ``input_sizes``): 4 non-negative ints."""
    values = _int_list(name, value)
    if len(values) != 4:
        raise ValueError(f"{name} must have 4 entries; got {values}")
    if min(values) < 0:
        raise ValueError(f"{name} must be non-negative; got {values}")
    # every result is computed in float32 or float64: refuse what cannot fit even in float32
    check_output_bytes(name, values, 4)
    return tuple(values)


def float_dtype(name: str, dtype: np.dtype) -> None:
    """TypeError unless ``dtype`` (of argument ``name``) is float16, float32 or float64.

    Non-native byte order is accepted: such arrays are converted with the compute dtype.
    """
    if dtype not in _FLOAT_DTYPES and not (
            dtype.kind == "f" and dtype.newbyteorder("=") in _FLOAT_DTYPES):
        raise TypeError(
            f"{name} must be a float16, float32 or float64 array; got dtype {dtype}. "
            f"Cast it first, e.g. {name}.astype(np.float32)"
        )


def rank4(name: str, shape) -> None:
    """ValueError unless ``shape`` (a shape tuple, or an array) is 4-D."""
    shape = getattr(shape, "shape", shape)
    if len(shape) != 4:
        raise ValueError(f"{name} must be 4-D; got {len(shape)}-D with shape {tuple(shape)}")


def compute_dtype(*dtypes: np.dtype) -> tuple[np.dtype, np.dtype]:
    """(dtype the kernels compute in, dtype of the result) for inputs of float ``dtypes``.

    float16 is computed in float32.
    """
    first = dtypes[0]
    if first in _NATIVE_COMPUTE and dtypes.count(first) == len(dtypes):
        return first, first
    result = np.result_type(*(d.newbyteorder("=") for d in dtypes))
    return (np.dtype(np.float32) if result == np.float16 else result), result


def prepared(array: np.ndarray, dtype: np.dtype, nhwc: bool,
             name: str = "an input") -> np.ndarray:
    """``array``'s values as the engine takes them: native ``dtype``, writeable, NHWC-indexed.

    NHWC (``nhwc``) arrays come back C-contiguous. NCHW arrays come back as an NHWC view
    (``transpose(0, 2, 3, 1)``): of a C-contiguous NHWC buffer when ``array`` is one (PyTorch's
    ``channels_last``), else of a C-contiguous NCHW array, which the engine converts while it
    copies (pads) its input. Copies only when needed; read-only arrays are copied so that every
    call hits the same compiled kernel (Numba specialises on read-only arrays). A copy larger
    than the machine's memory (say of a zero-stride ``np.broadcast_to`` view) is refused with
    ValueError first.
    """
    if nhwc:
        return array if _ready(array, dtype) else _copy(array, dtype, name)
    view = array.transpose(0, 2, 3, 1)
    if _ready(view, dtype):
        return view
    return (array if _ready(array, dtype) else _copy(array, dtype, name)).transpose(0, 2, 3, 1)


def _ready(array: np.ndarray, dtype: np.dtype) -> bool:
    """Whether the engine can take ``array`` as it is: C-contiguous, writeable, ``dtype``."""
    flags = array.flags
    return flags.c_contiguous and flags.writeable and array.dtype == dtype


def _copy(array: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    """A C-contiguous, writeable copy of ``array`` in ``dtype`` (float32 or float64)."""
    # (the message names the dtype by its size: ``dtype.name`` takes microseconds)
    check_output_bytes(f"a C-contiguous float{8 * dtype.itemsize} copy of {name}", array.shape,
                       dtype.itemsize)
    return np.array(array, dtype=dtype, order="C")


def groups_of(in_channels: int, filter_in: int, filter_out: int, what: str,
              filters: str = "filters") -> int:
    """Number of groups: ``in_channels / filter_in``, which must divide ``filter_out`` too.

    ``what`` names the array whose channels are ``in_channels``; ``filters`` the filters'
    argument (``filters`` or ``filter_sizes``).
    """
    if filter_in == 0:
        if in_channels != 0:
            raise ValueError(f"{filters} have 0 input channels (axis 2) but {what} has "
                             f"{in_channels} channels")
        return 1
    if in_channels == 0:  # would be 0 groups
        raise ValueError(f"{what} has 0 channels but the {filters} have {filter_in} input "
                         f"channels (axis 2); give {filters} with 0 input channels or {what} "
                         f"with a multiple of {filter_in} channels")
    if in_channels % filter_in:
        raise ValueError(
            f"{what} has {in_channels} channels, which is not a multiple of the {filters}' "
            f"in_channels ({filters} axis 2) {filter_in}; for a grouped convolution it must be "
            f"groups * {filter_in}"
        )
    groups = in_channels // filter_in
    if groups > 1 and filter_out % groups:
        raise ValueError(
            f"grouped convolution with {groups} groups ({what} channels {in_channels} / {filters} "
            f"axis 2 {filter_in}) needs out_channels ({filters} axis 3) divisible by {groups}; "
            f"got {filter_out}"
        )
    return groups


def check_output_bytes(name: str, shape, itemsize: int) -> None:
    total = itemsize
    for s in shape:
        total *= s
    if total > MAX_OUTPUT_BYTES:
        raise ValueError(f"{name} {list(shape)} would need {total:,} bytes, more than this "
                         f"machine's memory ({MAX_OUTPUT_BYTES:,} bytes)")


def conv_window(axis: str, in_size: int, kernel: int, stride: int, padding, dilation: int):
    """(out, pad_before) along one axis; ValueError when the output would be negative."""
    out, before, _ = sizes.window(in_size, kernel, stride, padding, dilation)
    if out < 0:
        raise ValueError(
            f"the input's {axis} {in_size} is too small for the filter: with "
            f"{sizes.describe_padding(padding)} the dilated filter {axis} "
            f"{sizes.effective_kernel(kernel, dilation)} (kernel {kernel}, dilation {dilation}) "
            f"does not fit, so the output {axis} would be {out}"
        )
    return out, before
