"""Lowering of the three operations onto the kernels: padding, phases, weight packing, dispatch.

Everything here takes validated NHWC arrays of one float dtype (float32 or float64, C-contiguous)
and plain ints, and returns a new NHWC array. Sizes are TensorFlow's (see :mod:`numbadeconv.sizes`);
``pad`` is the (top, left) padding of the convolution's input.
"""

from __future__ import annotations

import time

import numpy as np
from numba import types

from . import _jit
from ._kernels import correlate, filter_grad as _filter_grad

#: Below this many multiply-adds a call runs serially: a parallel launch costs microseconds.
PARALLEL_MIN_MACS = 200_000

#: The tiled kernel pays off when a pixel's reduction span (taps x input channels) is this long.
TILED_MIN_SPAN = 16

_CORRELATE = {
    ("tiled", False): correlate.tiled_serial,
    ("tiled", True): correlate.tiled_parallel,
    ("vector", False): correlate.vector_serial,
    ("vector", True): correlate.vector_parallel,
    ("depthwise", False): correlate.depthwise_serial,
    ("depthwise", True): correlate.depthwise_parallel,
}


def _use_parallel(threads: int, macs: int) -> bool:
    return threads > 1 and macs >= PARALLEL_MIN_MACS


def _launch(func, parallel: bool, threads: int, *args) -> None:
    if parallel:
        with _jit.parallel_launch(threads):
            func(*args)
    else:
        func(*args)


def _padded(a: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """``a`` ``[N, H, W, C]`` placed at (top, left) in a zero ``[N, height, width, C]`` frame.

    Returns ``a`` itself when it already covers the frame from its origin (the kernels then read
    only its first ``height`` rows and ``width`` columns). Parts of ``a`` outside the frame are
    never read and are dropped.
    """
    n, h, w, c = a.shape
    if top == 0 and left == 0 and height <= h and width <= w:
        return a
    frame = np.zeros((n, height, width, c), a.dtype)
    rows = max(0, min(h, height - top))
    cols = max(0, min(w, width - left))
    frame[:, top:top + rows, left:left + cols] = a[:, :rows, :cols]
    return frame


def _bias(bias, dst: np.ndarray) -> np.ndarray:
    return np.zeros(dst.shape[3], dst.dtype) if bias is None else bias


def _merge_last_axes(a: np.ndarray) -> np.ndarray:
    n, h, w, c = a.shape
    return a.reshape(n, h, w * c)


def _choose_kernel(cig: int, groups: int, spans) -> str:
    if cig == 1 and groups > 1:
        return "depthwise"
    return "tiled" if min(spans) >= TILED_MIN_SPAN else "vector"


def _pack(kind: str, w5: np.ndarray) -> np.ndarray:
    """Flatten taps ``w5[t, u, ci, g, co]`` into the layout of ``kind``'s kernel."""
    if kind == "tiled":
        return w5.transpose(3, 4, 0, 1, 2).ravel()
    if kind == "vector":
        return w5.transpose(3, 0, 1, 2, 4).ravel()
    return w5[:, :, 0].ravel()  # depthwise: [T, U, G*cog]


def _correlate(src, dst, bias, groups, rows, cols, w5_of, src_stride, dst_stride, threads, macs):
    """Run the correlation whose phases are all pairs of ``rows`` x ``cols`` (1-D phases).

    A 1-D phase is ``(first, count, toffs, taps)``: ``first`` the first output index, ``count`` the
    number of outputs, ``toffs`` the source offsets of its taps (ascending) and ``taps`` their
    kernel indices. ``w5_of(taps_h, taps_w)`` gives the weights ``[T, U, cig, G, cog]``.
    """
    n_ch = src.shape[3]
    cig = n_ch // groups
    merged = [groups == 1 and bool(np.all(np.diff(c[2]) == 1)) for c in cols]
    spans = [len(c[2]) * cig if mg else cig for c, mg in zip(cols, merged) if len(c[2])]
    kind = _choose_kernel(cig, groups, spans or [cig])
    toff_h = np.array([o for r in rows for o in r[2]], np.int64)
    toff_w = np.array([o for c in cols for o in c[2]], np.int64)
    table, packed = [], []
    th = w_start = 0
    for first_r, n_r, offs_r, taps_r in rows:
        tw = 0
        for (first_c, n_c, offs_c, taps_c), mg in zip(cols, merged):
            w = _pack(kind, w5_of(taps_r, taps_c))
            table.append((first_r, first_c, n_r, n_c, len(offs_r), len(offs_c), th, tw, w_start,
                          mg))
            packed.append(w)
            w_start += w.size
            tw += len(offs_c)
        th += len(offs_r)
    phases = np.array(table, np.int64).reshape(-1, correlate.N_COLUMNS)
    weights = np.concatenate(packed) if packed else np.empty(0, dst.dtype)
    parallel = _use_parallel(threads, macs)
    m_max = max(r[1] for r in rows)
    _launch(_CORRELATE[kind, parallel], parallel, threads, _merge_last_axes(src), weights, dst,
            phases, toff_h, toff_w, n_ch, src_stride[0], src_stride[1], dst_stride[0],
            dst_stride[1], groups, m_max, _bias(bias, dst))


def conv2d(x, w, stride, dilation, pad, out_hw, groups, threads, bias=None):
    """``x`` ``[N, H, W, C]``, ``w`` ``[fh, fw, C/groups, Cout]`` -> ``[N, OH, OW, Cout]``.

    ``bias`` (``[Cout]`` of the same dtype, or None) is added to every output pixel.
    """
    n, _, _, c = x.shape
    fh, fw, cig, n_out = w.shape
    (oh, ow), (sh, sw), (dh, dw) = out_hw, stride, dilation
    out = np.empty((n, oh, ow, n_out), x.dtype)
    if out.size == 0:
        return out
    if cig == 0:
        out[...] = _bias(bias, out)
        return out
    src = _padded(x, pad[0], pad[1], (oh - 1) * sh + (fh - 1) * dh + 1,
                  (ow - 1) * sw + (fw - 1) * dw + 1)
    rows = [(0, oh, [kh * dh for kh in range(fh)], list(range(fh)))]
    cols = [(0, ow, [kw * dw for kw in range(fw)], list(range(fw)))]
    w5 = w.reshape(fh, fw, cig, groups, n_out // groups)
    _correlate(src, out, bias, groups, rows, cols, lambda _th, _tw: w5, stride, (1, 1), threads,
               out.size * fh * fw * cig)
    return out


def _transpose_phases(size, kernel, stride, dilation, pad_before, n_src):
    """1-D phases of a transposed convolution along one axis, and the source padding they need.

    Output index ``i`` reads source index ``(i + pad_before - k*dilation) / stride`` for every tap
    ``k`` that makes it an integer in ``[0, n_src)``. Outputs with ``(i + pad_before) % stride == rho``
    form phase ``rho``: ``i = m*stride + rho - pad_before`` and tap ``k`` (with
    ``k*dilation = rho + j*stride``) reads source ``m - j``. Taps that never land inside the
    source are dropped. Returns ``(phases, before, after)``: source offsets in the phases are into
    the source padded by ``before`` in front (and ``after`` behind).
    """
    raw = []
    for rho in range(stride):
        m_lo = -((rho - pad_before) // stride)  # ceil((pad_before - rho) / stride)
        m_hi = (size - 1 + pad_before - rho) // stride
        if m_hi < m_lo:
            continue
        taps = [k for k in range(kernel)
                if (k * dilation) % stride == rho
                and m_hi - (k * dilation - rho) // stride >= 0
                and m_lo - (k * dilation - rho) // stride < n_src]
        raw.append((rho, m_lo, m_hi, taps))
    js = [((k * dilation - rho) // stride, m_lo, m_hi) for rho, m_lo, m_hi, taps in raw
          for k in taps]
    before = max([j - m_lo for j, m_lo, _ in js] + [0])
    after = max([m_hi - j - n_src + 1 for j, _, m_hi in js] + [0])
    phases = []
    for rho, m_lo, m_hi, taps in raw:
        taps = taps[::-1]  # ascending source offset
        offs = [m_lo - (k * dilation - rho) // stride + before for k in taps]
        phases.append((m_lo * stride + rho - pad_before, m_hi - m_lo + 1, offs, taps))
    return phases, before, after


def conv2d_input_grad(dy, w, in_hw, stride, dilation, pad, groups, threads, bias=None):
    """Transpose of :func:`conv2d`: ``dy`` ``[N, OH, OW, Cout]`` -> ``[N, H, W, C]``.

    ``bias`` (``[C]`` of the same dtype, or None) is added to every output pixel.
    """
    n, oh, ow, n_out = dy.shape
    fh, fw, cig, _ = w.shape
    h, wd = in_hw
    dx = np.empty((n, h, wd, cig * groups), dy.dtype)
    if dx.size == 0:
        return dx
    if n_out == 0 or oh == 0 or ow == 0:
        dx[...] = _bias(bias, dx)
        return dx
    rows, top, bottom = _transpose_phases(h, fh, stride[0], dilation[0], pad[0], oh)
    cols, left, right = _transpose_phases(wd, fw, stride[1], dilation[1], pad[1], ow)
    src = _padded(dy, top, left, top + oh + bottom, left + ow + right)
    w5 = w.reshape(fh, fw, cig, groups, n_out // groups)
    _correlate(src, dx, bias, groups, rows, cols,
               lambda th, tw: w5[th][:, tw].transpose(0, 1, 4, 3, 2), (1, 1), stride, threads,
               dy.size * fh * fw * cig)
    return dx


def conv2d_filter_grad(x, dy, kernel_hw, stride, dilation, pad, groups, threads):
    """Filter gradient of :func:`conv2d`: ``x``, ``dy`` -> ``[fh, fw, C/groups, Cout]``."""
    n, _, _, c = x.shape
    _, oh, ow, n_out = dy.shape
    fh, fw = kernel_hw
    cig = c // groups
    if n * oh * ow == 0 or cig == 0 or n_out == 0:
        return np.zeros((fh, fw, cig, n_out), x.dtype)
    src = _padded(x, pad[0], pad[1], (oh - 1) * stride[0] + (fh - 1) * dilation[0] + 1,
                  (ow - 1) * stride[1] + (fw - 1) * dilation[1] + 1)
    macs = dy.size * fh * fw * cig
    parallel = _use_parallel(threads, macs)
    n_rows = n * oh
    slabs = 1
    if parallel:  # split the pixel sum when taps x channel blocks alone are too few jobs
        jobs = fh * fw * groups * -(-cig // _filter_grad.BLOCK)
        slabs = min(n_rows, -(-4 * threads // jobs))
    rows_per_slab = -(-n_rows // slabs)
    slabs = -(-n_rows // rows_per_slab)
    part = np.empty((slabs, fh, fw, cig, n_out), x.dtype)
    func = _filter_grad.filter_grad_parallel if parallel else _filter_grad.filter_grad_serial
    _launch(func, parallel, threads, _merge_last_axes(src), dy, part, c, stride[0], stride[1],
            dilation[0], dilation[1], groups, rows_per_slab, x.dtype.type(0))
    return part[0] if slabs == 1 else part.sum(axis=0)


def warmup(dtypes=("float32", "float64")) -> dict[str, float]:
    """Compile (or load from the on-disk cache) every kernel for ``dtypes``; seconds per dtype.

    Compiles by explicit signature: exactly the specialisations the operations call.
    """
    timings = {}
    i64 = types.int64
    for name in dtypes:
        dtype = np.dtype(name)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"warmup dtypes must be float32 or float64; got {name!r}")
        f = types.float32 if dtype == np.float32 else types.float64
        start = time.perf_counter()
        correlate_sig = (types.Array(f, 3, "C"), types.Array(f, 1, "C"), types.Array(f, 4, "C"),
                         types.Array(i64, 2, "C"), types.Array(i64, 1, "C"),
                         types.Array(i64, 1, "C"), i64, i64, i64, i64, i64, i64, i64,
                         types.Array(f, 1, "C"))
        for func in _CORRELATE.values():
            func.compile(correlate_sig)
        grad_sig = (types.Array(f, 3, "C"), types.Array(f, 4, "C"), types.Array(f, 5, "C"),
                    i64, i64, i64, i64, i64, i64, i64, f)
        _filter_grad.filter_grad_serial.compile(grad_sig)
        _filter_grad.filter_grad_parallel.compile(grad_sig)
        timings[dtype.name] = time.perf_counter() - start
    return timings
