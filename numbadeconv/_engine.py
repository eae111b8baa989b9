"""Lowering of the three operations onto the kernels: padding, phases, weight packing, dispatch.

A *plan* holds everything that depends only on shapes and settings (the phase table, tap offsets,
which kernel, the padded frame, and a gather index that packs the filters into the kernel's
layout, unless the kernel reads them in place); plans are cached, so a repeated call costs at most
a padding copy, one gather, one kernel launch and the allocations. Everything here takes
validated NHWC arrays of one float dtype (float32 or float64; C-contiguous, or the NHWC view of a
C-contiguous NCHW array, converted in the padding copy unless the outer-product kernel reads it as
it is) and plain ints, and returns a new NHWC array (with ``channels_first``, the NHWC view of a
new NCHW array, which the kernels write directly; NCHW correlations of unit steps and few
channels run on the planar kernel, which reads the input's planes as they are). Sizes are
TensorFlow's (see :mod:`numbadeconv.sizes`); ``pad`` is the (top, left) padding of the
convolution's input.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
from dataclasses import dataclass

import numba
import numpy as np

from . import _args, _jit
from ._kernels import copies, correlate, depthwise, outer, parallel, planar, simd, tiled
from ._kernels import filter_grad as _filter_grad

#: Below this many multiply-adds a call runs serially: a parallel launch costs microseconds.
PARALLEL_MIN_MACS = 200_000

#: Padded copies and packed filters of fewer elements than this are made serially.
PARALLEL_MIN_COPY = 100_000

#: The outer-product kernel's jobs cover at least this many pixels (rows, and images when rows
#: are few): a channel block's weights, read from L2, serve them all, and their source runs stay
#: in L2 too (128, 256 and 512 within 5 % of each other on channel-rich layers) ...
OUTER_JOB_PIXELS = 128

#: ... and, where a pixel's reduction (taps x input channels) is short, pixels for at least this
#: many multiply-adds per output channel, so that a job's setup stays small beside its work
#: (few-channel layers 15 % faster than with 128 pixels), ...
OUTER_JOB_MACS = 65536

#: ... and, doubled from there, at least one pixel per this many of the job's weights (a phase's
#: taps x input x output channels), which it brings into L2 from further out: the DCGAN
#: 16x16x256 -> 128 transpose's 1.2 MB per phase in jobs of 512 pixels took 0.96-0.97 of the
#: time of 128, on one and on two threads (in 576, 1.08: 3 of its 16 images, so uneven jobs;
#: layers whose weights fit in L2 keep their jobs); unless any of these leaves too few jobs.
OUTER_JOB_WEIGHTS_PER_PIXEL = 1024

#: The tiled kernel pays off, where the outer-product kernel would waste much of its channel
#: blocks, when a pixel's reduction runs (taps x input channels) are this long.
TILED_MIN_SPAN = 24

#: The outer-product kernel computes output channels in blocks of 8 to 64
#: (:func:`outer.block_width`): it is chosen when at least this fraction of a group's blocks are
#: real channels ...
OUTER_MIN_FILL = 0.6

#: ... and, where the tiled kernel could read the filters in place, the call does at least this
#: many multiply-adds per filter element (the outer kernel packs the filters on every call).
OUTER_MIN_MACS_PER_WEIGHT = 64

#: The tiled kernel reads the filters in place (no packing) when their input-channel runs are
#: contiguous and at least this long.
IN_PLACE_MIN_SPAN = 64

#: A filter-gradient job whose accumulators take more bytes than this (half an L2 cache, the
#: other half for the pixels of a pass) runs long passes over copies of its pixels
#: (:data:`._kernels.filter_grad.LONG_PASS_PIXELS`): DCGAN 16x16's 0.64 MiB, 0.82-0.94 of the
#: time of short passes in place.
FILTER_GRAD_ACC_BYTES = 512 * 1024

#: The filter gradient's slabs (each its own part of the result, summed after the call) take at
#: most this many bytes in all where splitting the output channels' blocks as well can keep them
#: within it: on many threads a slab each made the result's parts outgrow the work (DCGAN
#: 32x32x128's 3.3 MB gradient in 64 slabs: 210 MB to write, then read again to sum them).
FILTER_GRAD_SLAB_BYTES = 32 * 1024 * 1024

#: Long passes over rows of at least this many pixels copy the source rows once each, as planes
#: of each tile's channels (the micro-kernel then takes a run per row), else each pixel's pairs
#: (each source element once per column tap that reads it; one run of all the pixels). Against
#: the pairs, one thread: DCGAN 32x32x128's gradient 0.96 of the time (16 pixels a row), U-Net
#: 56x56x512's 0.96 (28), a 3x3 28x28x256 layer's 0.92; DCGAN 16x16x256's 1.01 (8 pixels),
#: DCGAN 8x8x512's 1.09 (4).
FILTER_GRAD_PLANE_ROW_PIXELS = 16

#: At most this many channels in all (in x out per group, times groups), one input or one output
#: channel per group, use the row-wise kernel ...
ROWWISE_MAX_CHANNELS = 4

#: ... except that one output channel from several input channels takes the tiled kernel's
#: one-channel tiles (row-wise reads every input channel's pixels strided) where a pixel's runs
#: are at least this long (a float32 vector) ...
ONE_CHANNEL_MIN_SPAN = simd.VECTOR_BYTES // 4

#: ... and, where the row-wise kernel is the other choice (a handful of channels), the call does at
#: least this many multiply-adds (below, the tiled kernel's setup costs more than its tiles save:
#: the tutorial's 3 -> 1 channel convolution of 9 pixels 1.08-1.13x the time, a 4x4 image under a
#: 5x5 window 1.27x). Tiled over row-wise: 2 -> 1 channels k3 (runs of 6) 1.3x the time, k4 (8)
#: 0.74, 3 -> 1 k3 (9) 0.79, 3 -> 1 k5 0.62, 4 -> 1 k7 0.35 (parallel calls); serial calls too,
#: since the tiled kernel reads the input unpadded: 3 -> 1 k5 on 32x32 0.46-0.55, 3 -> 1 k3 on 8x8
#: 0.83-0.96.
ONE_CHANNEL_MIN_MACS = 1024

#: A job computes a block of output rows whose source rows take about this many bytes (about an L2
#: cache: they are read once per block of output channels, the channels' weights once per job;
#: 1 MiB measured best against 256 KiB and 2 MiB) ...
ROW_BLOCK_BYTES = 1024 * 1024

#: ... unless that leaves fewer than this many jobs per thread.
JOBS_PER_THREAD = 4

#: Kernels that read the source unpadded, skipping the taps outside it (no padded copy; the tiled
#: kernel 0.72-0.93 of its time on a padded copy, 2 threads: DCGAN 32x32x128 -> 64x64x3 0.72,
#: 64 -> 3 channels k3 0.90, a sparse code's adjoint 0.93) ...
UNPADDED_KINDS = ("depthwise", "rowwise", "tiled")

#: ... and the outer-product kernel, where a call does at most this many multiply-adds per source
#: element: then the padded copy (memory-bound: it does not get faster with threads) costs more
#: than the kernel loses by splitting every job's pixels at the source's edges, which it must do
#: to read inside the source only. Time unpadded over padded, 2 threads (multiply-adds per
#: source element): ResNet 3x3 56x56x64 (576) 0.96-0.97, few-channel and small decoder layers
#: (72-128) 0.82-0.88, 3x3 on 8x8 to 28x28 (288-1152) 0.91-0.97; k4 s2 transposes 16x16x128
#: (1024) 0.97, 16x16x256 (2048) 1.02; 3x3 of 256 channels (2304) 0.97; k5 s2 DCGAN transposes
#: on 16x16 (3200) 1.03-1.11, on 8x8 and 4x4 (6400, 12800) 1.01-1.03, FCN k64 s32 1.03.
OUTER_UNPADDED_MACS = 1536

#: An NCHW input of the outer-product kernel is read as it is, its runs' elements a channel plane
#: apart, rather than converted to NHWC first (:func:`_reads_channels_first`), unless its planes
#: are a multiple of this many bytes: the channels of a pixel then fall in few sets of the
#: caches. Read as is over converted first, 3x3 layers, 8 images, 2 threads, in-process: 64 ->
#: 64 on 56x56 0.96, 40x40 0.98, 60x60 0.99; 128 -> 128 on 28x28 1.00; 1x1 512 -> 128 on 28x28
#: 0.79, 256 -> 64 on 56x56 0.66; planes of 4 KB multiples: 128 -> 128 on 32x32 1.01-1.02,
#: 64 -> 64 on 64x64 1.15, 32 -> 32 on 128x128 1.13-1.14 (48x48, 9 KB planes: 1.01).
NCHW_ALIASED_PLANE_BYTES = 4096

#: The depthwise kernel's weight tiles hold about this many elements (a multiple of the channels)
#: ...
DEPTHWISE_TILE = 1024

#: ... or, with fewer channels than a float32 vector (whose rows all take the single-row path,
#: every tap's tile read for every 4 vectors of a row), the least multiple of the channels and
#: of 32 (4 float32 vectors) that reaches this many: an RGB image's 15x15 taps then read 86 KB
#: of tiles, not 920 KB (3 channels: 1.4-2.3x faster, 15x15 and 5x5; 2 and 5 channels: 1.3-1.7x).
DEPTHWISE_FEW_TILE = 96

#: The tiled kernel sweeps a row block's pixels past blocks of output channels whose weights take
#: about this many bytes (they stay in L2).
WEIGHT_BLOCK_BYTES = 256 * 1024

#: NCHW correlations of unit steps (a stride-1 convolution or transpose) of at most this many
#: input channels take the planar kernel (:mod:`._kernels.planar`: the input's and result's
#: planes as they are, no layout conversions), whatever their output channels. Time planar over
#: the NHWC kernels with their conversions, k3, 2 threads: 8 images of 56x56, 1 -> 32 0.62,
#: 2 -> 32 0.73, 3 -> 32 0.82 (3 -> 64 0.81, 3 -> 128 0.82), 4 -> 32 0.96-1.02 (6 -> 32
#: 1.08-1.18, 8 -> 32 1.22-1.45), 1 -> 1..6 (k5) 0.23-0.80, 3 -> 1..6 0.44-0.62; 16 of 64x64
#: (planes 4 KB apart, where the NHWC kernels' NCHW stores are slowest) 1 -> 32 0.42-0.47,
#: 3 -> 32 0.60, 4 -> 32 0.66 (6 -> 32 0.74, 8 -> 32 0.94). Grouped ones too, with at most this
#: many input channels in all: per-channel filters against the depthwise kernel with its
#: conversion (and with MALLOC_TOP_PAD_, its best: see the README), 3x3, 5x5, 9x9 and 15x15: 3
#: channels of 56x56, 8 images, 0.56, 0.42, 0.21, 0.09; 4 of 128x128 0.44, 0.40, 0.26, 0.15; an
#: RGB 512x512 image 0.44, 0.45, 0.36, 0.24 (15x15: 2.7 ms, not 11.3) ...
PLANAR_MAX_CHANNELS = 4

#: ... and of at most PLANAR_FEW_MAX_CHANNELS input channels into at most this many output
#: channels (a tile of the planar kernel; the outer-product kernel's blocks of 8 would be mostly
#: empty): 4 -> 1..3 0.72-0.79, 5 -> 5 0.64, 6 -> 1..6 0.68-0.92, 7 -> 4 0.75 (8 -> 1 1.43,
#: 8 -> 3 0.92, 8 -> 6 0.97; 4 -> 8 1.04).
PLANAR_FEW_OUT = 6
PLANAR_FEW_MAX_CHANNELS = 7

#: One channel to one (an image's filter; NHWC and NCHW the same memory) takes the planar kernel's
#: bands of rows in NHWC as well, for windows of at least this many taps. Against the row-wise
#: kernel, 2 threads, 8 images of 56x56 to one of 1024x1024: 5x5 0.58-0.86 of the time, 7x7
#: 0.38-0.62, 9x9 0.28-0.56 (3x3 0.72-1.12: left to the row-wise kernel).
PLANAR_NHWC_MIN_TAPS = 25

#: ... and grouped ones (per-channel filters of an RGB image) for windows of at least this many
#: taps, their input copied into planes and their result out of them (2 to 4 channels in vector
#: shuffles: :func:`.simd.channel_planes`). Against the depthwise kernel, 2 threads, 2 to 4
#: channels of 64x64 (8 images) to an RGB 1024x1024 image, two runs: 9x9 0.23-0.71 of the
#: time, 7x7 0.33-0.79 (0.91-0.97 for 1024x1024); 5x5 0.59-0.74 up to 128x128 but 1.04-1.45
#: from 512x512 on, 3x3 1.2-2.6.
PLANAR_NHWC_GROUPED_MIN_TAPS = 49

_CORRELATE = {"outer": outer.outer_serial, "tiled": tiled.tiled_serial,
              "depthwise": depthwise.depthwise_serial, "rowwise": correlate.rowwise_serial}


def _threads_for(threads: int | None, macs: int, minimum: int | None = None) -> int:
    """Threads a call of ``macs`` multiply-adds (or a copy of that many elements) runs on.

    1 (the serial kernels) below ``minimum`` (default PARALLEL_MIN_MACS). ``threads`` None means
    Numba's current setting, asked only when the call is large enough. Serial also in a child
    forked from a GNU OpenMP process (see :func:`_jit.parallel_allowed`).
    """
    if minimum is None:
        minimum = PARALLEL_MIN_MACS
    if macs < minimum or threads == 1 or not _jit.parallel_allowed():
        return 1
    return numba.get_num_threads() if threads is None else threads


def _launch(serial, threads: int, n_jobs: int, *args) -> None:
    """Run jobs 0 to ``n_jobs`` of kernel ``serial`` on ``args``, on ``threads`` threads.

    On more than one thread, each thread runs its share of the jobs in one call
    (:func:`._kernels.parallel.run_jobs`); if any failed there, all are run again serially,
    which raises the error.
    """
    if threads > 1:
        address = parallel.address(serial, args)
        # a copy of args that run_jobs reads (``stored`` holds it: alive until it returns)
        stored, thunk, block = parallel.store(args)
        with _jit.parallel_launch(threads):
            failed = parallel.run_jobs(thunk, address, block, n_jobs, min(n_jobs, threads))
        if not failed:
            return
    serial(*args, 0, n_jobs)


#: A correlation's padded copy of its source (and the planar kernel's planes of an NHWC result)
#: up to this size is kept for the thread's next call of the same shapes (:func:`_kept_array`):
#: taking fresh pages for it at every call made some calls on large images several times slower
#: (the README's "Fresh pages").
KEPT_COPY_BYTES = 64 * 1024 * 1024

_kept = threading.local()  # the thread's kept arrays, by role


def _kept_array(role: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised array, the calling thread's last one for ``role`` when it fits.

    For arrays that a call is done with when it returns; each ``role`` is one such array a call.
    """
    kept = getattr(_kept, "arrays", None)
    if kept is None:
        kept = _kept.arrays = {}
    out = kept.get(role)
    if out is None or out.shape != shape or out.dtype != dtype:
        out = np.empty(shape, dtype)
        if out.nbytes <= KEPT_COPY_BYTES:
            kept[role] = out
    return out


def _padded(a: np.ndarray, frame: tuple[int, int, int, int] | None, threads: int,
            keep: bool = False, planes: bool = False) -> np.ndarray:
    """``a`` ``[N, H, W, C]`` placed at (top, left) in a zero ``[N, height, width, C]`` frame.

    ``a`` is C-contiguous, or the NHWC view of a C-contiguous NCHW array (``data_format="NCHW"``):
    its copy then converts the layout in the same pass. The result is C-contiguous with its last
    two axes merged; ``frame`` None means ``a``'s own size (``a`` itself, when C-contiguous). With
    ``planes``, a C-contiguous ``a``'s copy is ``[N*C, height, width]`` instead, its planes. The
    copy runs on up to ``threads`` threads. With ``keep``, the copy is the calling thread's kept
    one (:func:`_kept_array`), written over by its next call with ``keep``: for the one copy of a
    call that is done with it when the call returns.
    """
    n, h, w, c = a.shape
    channels_first = not a.flags.c_contiguous
    if frame is None:
        if not channels_first and not planes:
            return a.reshape(n, h, w * c)
        frame = (0, 0, h, w)
    top, left, height, width = frame
    _args.check_output_bytes("the zero-padded copy of the input that this padding, dilation and "
                             "stride need", (n, height, width, c), a.itemsize)
    shape = (n * c, height, width) if planes else (n, height, width * c)
    out = _kept_array("source", shape, a.dtype) if keep else np.empty(shape, a.dtype)
    copy_threads = _threads_for(threads, out.size, PARALLEL_MIN_COPY)
    if planes:
        _launch(copies.pad_planes_serial, copy_threads, n * height, a, out, top, left)
    elif channels_first:
        _launch(copies.pad_channels_first_serial, copy_threads, n * height,
                a.transpose(0, 3, 1, 2), out, top, left)
    else:
        _launch(copies.pad_serial, copy_threads, n * height, a, out, top, left)
    return out


def _frame(shape, top: int, left: int, height: int, width: int):
    """The frame argument of :func:`_padded`: None when ``shape`` already covers it."""
    _, h, w, _ = shape
    if top == 0 and left == 0 and height <= h and width <= w:
        return None
    return (top, left, height, width)


# --- correlation plans ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CorrelationPlan:
    """A conv2d or a transpose, lowered onto one correlation kernel launch."""

    kind: str  # "outer", "tiled", "depthwise" or "rowwise"; "fill" when no tap contributes
    out_shape: tuple[int, int, int, int]
    frame: tuple[int, int, int, int] | None
    phases: np.ndarray
    toffs: np.ndarray
    meta: np.ndarray  # the job blocking (n_blocks, rows, images, chunk) is set by _blocked_meta
    weight_index: np.ndarray | None  # weights = filters.ravel()[weight_index]; None: in place
    pack: tuple[np.ndarray, np.ndarray] | None  # outer kernel: (bases, meta) of copies.pack
    macs: int
    max_rows: int  # rows per job that keep its source rows within ROW_BLOCK_BYTES
    planar: PlanarPlan | None = None  # the planar kernel's, for NCHW data (PLANAR_MAX_CHANNELS)


@dataclass(frozen=True, eq=False)
class PlanarPlan:
    """The planar kernel's part of a plan (:mod:`._kernels.planar`), for NCHW input and result."""

    frame: tuple[int, int, int, int] | None  # the padded planes, as _padded takes it
    # weights = filters.ravel()[weight_index], [Cout, C, T, U], or [Cout, band, C, T, U] where
    # -1 (a zero weight: see _planar_weights) marks a row tap that a row of the band skips
    weight_index: np.ndarray
    toffs: np.ndarray  # the row taps' offsets
    meta: np.ndarray  # the job blocking (meta[10:14]) is set by _planar_meta
    exact: PlanarPlan | None = None  # for a band of rows: the plan of one row, for Inf and NaN
    nhwc: bool = False  # NHWC calls take it too (one channel in and out: the same memory)


def _choose_kernel(cig: int, cog: int, groups: int, spans: list[int], macs: int, n_weights: int,
                   in_place: bool, affine: bool, itemsize: int) -> str:
    """The correlation kernel for ``cig`` -> ``cog`` channels per group, ``macs`` in all.

    Depthwise for one input channel per group (also for a handful of channels: an RGB image's
    per-channel filters, 1.5-2.9x faster than row-wise); the tiled kernel's one-channel tiles
    for one output channel from several input channels (ONE_CHANNEL_MIN_SPAN and _MACS);
    row-wise for a handful of channels otherwise; else the outer-product kernel, unless the
    tiled one reduces long ``spans`` (a phase's reduction runs) into output channels that would
    leave the outer kernel's blocks mostly empty, or reads the filters in place (``in_place``)
    on a call that does too few multiply-adds per filter element (of ``n_weights``) to pay for
    packing them. ``affine``: whether the outer kernel can pack the filters (always, in
    practice); ``itemsize``: the elements' (the outer kernel's blocks depend on it).
    """
    if cig == 1 and groups > 1:
        return "depthwise"
    few = cig * cog * groups <= ROWWISE_MAX_CHANNELS and min(cig, cog) == 1
    if (cog == 1 and cig > 1 and min(spans) >= ONE_CHANNEL_MIN_SPAN
            and not (few and macs < ONE_CHANNEL_MIN_MACS)):
        return "tiled"
    if few:
        return "rowwise"
    if not affine:  # the tiled kernel packs any layout of the filters
        return "tiled"
    block = outer.block_width(cig, cog, itemsize)
    filled = cog / (-(-cog // block) * block) >= OUTER_MIN_FILL
    if min(spans) >= TILED_MIN_SPAN and (
            not filled or (in_place and macs < OUTER_MIN_MACS_PER_WEIGHT * max(1, n_weights))):
        return "tiled"
    return "outer"


def _pack(kind: str, w5: np.ndarray, tile: int) -> np.ndarray:
    """Flatten taps ``w5[t, u, ci, g, co]`` into the layout of ``kind``'s kernel."""
    if kind == "depthwise":  # [cog, T, U, tile]: tile[i] = w5[t, u, 0, i % G, co]
        by_channel = w5[:, :, 0].transpose(3, 0, 1, 2)
        return np.tile(by_channel, tile // w5.shape[3]).ravel()
    return w5.transpose(3, 0, 1, 2, 4).ravel()  # rowwise: [G, T, U, cig, cog]


def _affine_strides(taps: list[np.ndarray]) -> tuple[int, int, int] | None:
    """(input channel, group, output channel) strides of the filters, if every tap shares them.

    ``taps`` are the phases' index arrays ``[T, U, cig, G, cog]`` into the flat filters: then the
    weight of a tap is at its first index plus ``ci*s_ci + g*s_g + co*s_co``. The tiled kernel
    reads the filters in place when ``s_ci == 1`` (a transpose's ``[fh, fw, out, in]``); the
    outer-product kernel packs them with these strides.
    """
    strides = None
    for i5 in taps:
        if i5.size == 0:
            continue
        first = i5[0, 0, 0, 0, 0]
        found = tuple(int(i5[(0, 0, *(int(a == b) for b in range(3)))] - first)
                      if i5.shape[2 + a] > 1 else 0 for a in range(3))
        ci, g, co = (np.arange(n).reshape(shape) for n, shape in zip(  # noqa: B905
            i5.shape[2:], ((-1, 1, 1), (1, -1, 1), (1, 1, -1))))
        expected = i5[:, :, :1, :1, :1] + ci * found[0] + g * found[1] + co * found[2]
        if not np.array_equal(i5, expected) or strides not in (None, found):
            return None
        strides = found
    return strides


def _correlation_plan(out_shape, n_ch, src_hw, src_width, groups, frame, rows, cols, w5_of,
                      src_stride, dst_stride, macs, n_weights, itemsize) -> CorrelationPlan:
    """The plan of the correlation whose phases are all pairs of ``rows`` x ``cols``.

    A 1-D phase is ``(first, count, offsets, taps)``: ``first`` the first output index, ``count``
    the number of outputs, ``offsets`` the source offsets of its taps (ascending) and ``taps``
    their kernel indices. ``w5_of(taps_h, taps_w)`` gives, for a phase, the positions in the flat
    filters of its weights ``[T, U, cig, G, cog]``; ``n_weights`` is the filters' size.
    ``src_hw`` is the (height, width) of the source itself, ``src_width`` that of its padded
    ``frame`` (None: no padding); ``itemsize`` that of the elements.
    """
    cig = n_ch // groups
    cog = out_shape[3] // groups
    taps = [[w5_of(r[3], c[3]) for c in cols] for r in rows]
    flat_taps = [i5 for row in taps for i5 in row]
    if not any(i5.size for i5 in flat_taps):
        return _fill_plan(out_shape)
    strides = _affine_strides(flat_taps)
    in_place = (strides[2], strides[1]) if (strides and strides[0] == 1
                                            and cig >= IN_PLACE_MIN_SPAN) else None
    adjacent = [bool(np.all(np.diff(c[2]) == 1)) for c in cols]
    spans = [len(c[2]) * cig if groups == 1 and adj else cig
             for c, adj in zip(cols, adjacent, strict=True) if len(c[2])]
    kind = _choose_kernel(cig, cog, groups, spans or [cig], macs, n_weights,
                          in_place is not None, strides is not None, itemsize)
    if kind == "outer":
        in_place = None
    merged = [in_place is None and groups == 1 and adj for adj in adjacent]

    # toffs: source row offsets of every row phase, then source column offsets of every column
    # phase, then (tiled and outer kernels) the offset of every phase's every tap in the weights.
    th_starts = np.cumsum([0] + [len(r[2]) for r in rows])
    tw_starts = th_starts[-1] + np.cumsum([0] + [len(c[2]) for c in cols])
    toffs = [o for r in rows for o in r[2]] + [o for c in cols for o in c[2]]
    table = []
    weight_index = None
    tile = DEPTHWISE_TILE
    lanes = simd.VECTOR_BYTES // 4  # float32 elements per vector
    if n_ch < lanes:  # (DEPTHWISE_FEW_TILE)
        tile = math.lcm(n_ch, 4 * lanes)
        tile *= max(1, DEPTHWISE_FEW_TILE // tile)
    tile = n_ch * max(1, min(max(c[1] for c in cols), tile // n_ch))
    w_co = w_g = block = 0
    pack = None
    if kind in ("tiled", "outer"):
        n_taps = sum(i5.shape[0] * i5.shape[1] for i5 in flat_taps)
        tap_size = cig  # weights of one tap (per output channel or block)
        if kind == "outer":  # packed [G, blocks, all taps, cig / P, block, P] by copies.pack
            block = outer.block_width(cig, cog, itemsize)
            blocks = -(-cog // block)
            bases = np.concatenate([i5[:, :, 0, 0, 0].ravel() for i5 in flat_taps])
            pack = (bases.astype(np.int64),
                    np.array((cig, cog, groups, blocks, block, *strides, outer.pair(block, cig)),
                             np.int64))
            tap_size = cig * block
            w_co, w_g = n_taps * tap_size, blocks * n_taps * tap_size
        elif in_place:
            w_co, w_g = in_place
        else:  # packed [G, cog, all taps, cig]
            w_co, w_g = n_taps * cig, cog * n_taps * cig
            weight_index = np.concatenate([i5.reshape(-1, cig, groups, cog) for i5 in flat_taps]
                                          ).transpose(2, 3, 0, 1).ravel()
        tap = 0
        for a, r in enumerate(rows):
            for b, c in enumerate(cols):
                i5 = taps[a][b]
                table.append((r[0], c[0], r[1], c[1], len(r[2]), len(c[2]), th_starts[a],
                              tw_starts[b], len(toffs), merged[b]))
                if in_place:
                    toffs += i5[:, :, 0, 0, 0].ravel().tolist()
                else:
                    toffs += [(tap + k) * tap_size for k in range(i5.shape[0] * i5.shape[1])]
                tap += i5.shape[0] * i5.shape[1]
    else:
        packed, w_start = [], tile if kind == "depthwise" else 0  # depthwise: a zero tile first
        for a, r in enumerate(rows):
            for b, c in enumerate(cols):
                index = _pack(kind, taps[a][b], tile)
                table.append((r[0], c[0], r[1], c[1], len(r[2]), len(c[2]), th_starts[a],
                              tw_starts[b], w_start, merged[b]))
                packed.append(index)
                w_start += index.size
        weight_index = np.concatenate(packed)
    planar_plan = _planar_plan(out_shape, cig, groups, frame, src_hw, rows, cols, taps[0][0],
                               (*src_stride, *dst_stride))
    top_left = (0, 0) if frame is None else frame[:2]
    src_size = out_shape[0] * src_hw[0] * src_hw[1] * n_ch
    unpadded = kind in UNPADDED_KINDS or (kind == "outer"
                                          and macs <= OUTER_UNPADDED_MACS * src_size)
    if unpadded:
        frame = None
    meta = (n_ch, src_stride[0], src_stride[1], dst_stride[0], dst_stride[1], groups, 0, 0, w_co,
            w_g, WEIGHT_BLOCK_BYTES, *top_left, tile, 1, 1, 0, block, *src_hw, int(unpadded), 0)
    src_row_bytes = src_stride[0] * src_width * n_ch * 4
    return CorrelationPlan(
        kind=kind,
        out_shape=out_shape,
        frame=frame,
        phases=np.array(table, np.int64).reshape(-1, correlate.N_COLUMNS),
        toffs=np.array(toffs, np.int64),
        meta=np.array(meta, np.int64),
        weight_index=None if weight_index is None else weight_index.astype(np.intp),
        pack=pack,
        macs=macs,
        max_rows=max(1, ROW_BLOCK_BYTES // max(1, src_row_bytes)),
        planar=planar_plan,
    )


def _planar_plan(out_shape, cig: int, groups: int, frame, src_hw, rows, cols, i5,
                 steps) -> PlanarPlan | None:
    """The planar kernel's plan of a correlation, where it applies (else None).

    One phase covering the result, unit source and result ``steps`` (a convolution of stride 1
    or a transpose of stride 1), few channels (PLANAR_MAX_CHANNELS, PLANAR_FEW_OUT; grouped: at
    most PLANAR_MAX_CHANNELS in all, each group's planes taken as an image of their own),
    column taps evenly spaced; ``frame`` is the padded source (top, left, height, width), or None
    for the source ``src_hw`` itself, ``i5`` the phase's filter index ``[T, U, cig, 1, cog]``.
    Rows shorter than a tile get zero rows below each plane (a tile reads past such a row).
    Fewer output channels than a tile, with adjacent row taps, take bands of rows (:func:`_band`)
    and keep the plan of one row as ``exact``.
    """
    _, oh, ow, n_out = out_shape
    cog = n_out // groups
    if groups == 1:
        few = cig <= PLANAR_MAX_CHANNELS or (cig <= PLANAR_FEW_MAX_CHANNELS
                                             and cog <= PLANAR_FEW_OUT)
    else:  # each group's planes an image of their own, with the group's filters
        few = cig * groups <= PLANAR_MAX_CHANNELS
    if (len(rows) != 1 or len(cols) != 1 or steps != (1, 1, 1, 1) or not few
            or i5.size == 0 or rows[0][:2] != (0, oh) or cols[0][:2] != (0, ow)):
        return None
    offsets = cols[0][2]
    spacings = set(np.diff(offsets).tolist()) or {1}
    if len(spacings) != 1:
        return None
    widest = planar.tile_shape(4)[1]  # pixels of a float32 tile, the wider
    if ow < widest:
        top, left, height, width = frame or (0, 0, *src_hw)
        frame = (top, left, height - (-widest // width), width)
    height, width = frame[2:] if frame else src_hw
    row_taps = list(rows[0][2])
    index = i5.transpose(3, 4, 2, 0, 1)  # [G, cog, cig, T, U]
    meta = [cig, cog, len(row_taps), len(offsets), spacings.pop(), offsets[0], oh, ow, height,
            width, 0, 0, 0, 0, 1, groups]
    exact = PlanarPlan(frame=frame, weight_index=index.ravel().astype(np.intp),
                       toffs=np.array(row_taps, np.int64), meta=np.array(meta, np.int64))
    adjacent = row_taps == list(range(row_taps[0], row_taps[0] + len(row_taps)))
    band = _band(cog, len(row_taps), oh) if adjacent else 1
    if band == 1:
        return exact
    taps = len(row_taps) * len(offsets)
    nhwc = ((cig * groups == 1 and cog == 1 and taps >= PLANAR_NHWC_MIN_TAPS)
            or (groups > 1 and taps >= PLANAR_NHWC_GROUPED_MIN_TAPS))
    # pseudo-channel co*band + dy: row dy of channel co, its taps at row taps dy to dy + T - 1
    n_t = len(row_taps) + band - 1
    banded = np.full((groups, cog, band, cig, n_t, len(offsets)), -1, np.intp)
    for dy in range(band):
        banded[:, :, dy, :, dy:dy + len(row_taps)] = index
    meta[2], meta[14] = n_t, band
    return PlanarPlan(frame=frame, weight_index=banded.ravel(),
                      toffs=np.arange(row_taps[0], row_taps[0] + n_t, dtype=np.int64),
                      meta=np.array(meta, np.int64), exact=exact, nhwc=nhwc)


def _band(cog: int, n_t: int, oh: int) -> int:
    """Output rows per channel of a planar tile for ``cog`` channels, ``n_t`` row taps, ``oh`` rows.

    The band (at most a tile's channels and ``oh``) whose tiles do the largest share of useful
    multiply-adds: (real channels / the tiles' channels) x ``n_t / (n_t + band - 1)`` (the rest
    are by zero weights). One channel to one, float32, 2 threads, time of bands over one row per
    tile: 8 images of 56x56, 3x3 0.89-0.91, 5x5 0.65-0.67, 9x9 0.43, 15x15 0.30; 16 of 28x28,
    3x3 0.75-0.77, 15x15 0.30; a 512x512 image, 9x9 0.29-0.30, 15x15 0.32-0.33, and with
    MALLOC_TOP_PAD_ (no fresh pages: see the README) 3x3 0.56, 5x5 0.42.
    """
    n_pix = planar.tile_shape(4)[0]  # (the same for float64: two vectors a pixel line)
    best, band = 0.0, 1
    for rows in range(1, min(n_pix, oh) + 1):
        share = cog * rows / (n_pix * -(-cog * rows // n_pix)) * n_t / (n_t + rows - 1)
        if share > best * (1 + 1e-9):
            best, band = share, rows
    return band


def _fill_plan(out_shape) -> CorrelationPlan:
    """A plan for a result that no tap reaches: all bias (or zeros)."""
    empty = np.empty(0, np.int64)
    return CorrelationPlan("fill", out_shape, None, empty, empty, empty, None, None, 0, 1)


def _filter_index(w_shape, groups: int, torch_layout: bool) -> np.ndarray:
    """The position in the flat filters of each weight, ``[fh, fw, A, groups, B / groups]``.

    ``w_shape`` is ``[fh, fw, A, B]``, TensorFlow's layout (conv2d ``[fh, fw, in / groups,
    out]``, a transpose ``[fh, fw, out / groups, in]``); with ``torch_layout`` the filters are
    PyTorch's ``[B, A, fh, fw]`` instead (conv2d ``[out, in / groups, kH, kW]``,
    conv_transpose2d ``[in, out / groups, kH, kW]``), read in place as well (no conversion).
    """
    fh, fw, a, b = w_shape
    index = np.arange(fh * fw * a * b)
    if torch_layout:
        return index.reshape(groups, b // groups, a, fh, fw).transpose(3, 4, 2, 0, 1)
    return index.reshape(fh, fw, a, groups, b // groups)


@functools.lru_cache(maxsize=256)
def plan_conv2d(x_shape, w_shape, stride, dilation, pad, out_hw, groups,
                torch_layout: bool = False, itemsize: int = 4) -> CorrelationPlan:
    """``x`` ``[N, H, W, C]``, ``w`` ``[fh, fw, C/groups, Cout]`` -> ``[N, OH, OW, Cout]``.

    ``torch_layout``: the filters are PyTorch's ``[Cout, C/groups, fh, fw]`` (``w_shape`` is
    still TensorFlow's): see :func:`_filter_index`. ``itemsize``: the compute dtype's (the plan
    runs on either dtype, fastest on this one).
    """
    n, _, _, c = x_shape
    fh, fw, cig, n_out = w_shape
    (oh, ow), (sh, sw), (dh, dw) = out_hw, stride, dilation
    out_shape = (n, oh, ow, n_out)
    if n * oh * ow * n_out == 0 or cig == 0:
        return _fill_plan(out_shape)
    frame = _frame(x_shape, pad[0], pad[1], (oh - 1) * sh + (fh - 1) * dh + 1,
                   (ow - 1) * sw + (fw - 1) * dw + 1)
    rows = [(0, oh, [kh * dh for kh in range(fh)], list(range(fh)))]
    cols = [(0, ow, [kw * dw for kw in range(fw)], list(range(fw)))]
    w5 = _filter_index(w_shape, groups, torch_layout)
    src_width = x_shape[2] if frame is None else frame[3]
    return _correlation_plan(out_shape, c, x_shape[1:3], src_width, groups, frame, rows, cols,
                             lambda _th, _tw: w5,
                             stride, (1, 1), n * oh * ow * n_out * fh * fw * cig, w5.size,
                             itemsize)


def _transpose_phases(size, kernel, stride, dilation, pad_before, n_src):
    """1-D phases of a transposed convolution along one axis, and the source padding they need.

    Output index ``i`` reads source index ``(i + pad_before - k*dilation) / stride`` for every tap
    ``k`` that makes it an integer in ``[0, n_src)``. Outputs with ``(i + pad_before) % stride ==
    rho`` form phase ``rho``: ``i = m*stride + rho - pad_before``, and tap ``k`` (with
    ``k*dilation = rho + j*stride``) reads source ``m - j``. Taps that never land inside the
    source are dropped. Returns ``(phases, before, after)``: the phases' source offsets are into
    the source padded by ``before`` in front (and ``after`` behind).
    """
    taps_of = {}  # residue -> taps with that residue, in increasing order
    for k in range(kernel):
        taps_of.setdefault(k * dilation % stride, []).append(k)
    raw = []
    # only residues that some output has (at most min(size, stride) of them)
    for rho in sorted({(i + pad_before) % stride for i in range(min(size, stride))}):
        m_lo = -((rho - pad_before) // stride)  # ceil((pad_before - rho) / stride)
        m_hi = (size - 1 + pad_before - rho) // stride
        taps = [k for k in taps_of.get(rho, ())
                if m_hi - (k * dilation - rho) // stride >= 0
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


@functools.lru_cache(maxsize=256)
def plan_input_grad(dy_shape, w_shape, in_hw, stride, dilation, pad, groups,
                    torch_layout: bool = False, itemsize: int = 4) -> CorrelationPlan:
    """Transpose of :func:`plan_conv2d`: ``dy`` ``[N, OH, OW, Cout]`` -> ``[N, H, W, C]``.

    ``torch_layout``: the filters are PyTorch's ``[Cout, C/groups, fh, fw]``; ``itemsize`` as
    for :func:`plan_conv2d`.
    """
    n, oh, ow, n_out = dy_shape
    fh, fw, cig, _ = w_shape
    h, wd = in_hw
    out_shape = (n, h, wd, cig * groups)
    if n * h * wd * cig == 0 or n_out * oh * ow == 0:
        return _fill_plan(out_shape)
    rows, top, bottom = _transpose_phases(h, fh, stride[0], dilation[0], pad[0], oh)
    cols, left, right = _transpose_phases(wd, fw, stride[1], dilation[1], pad[1], ow)
    frame = _frame(dy_shape, top, left, top + oh + bottom, left + ow + right)
    w5 = _filter_index(w_shape, groups, torch_layout)
    return _correlation_plan(out_shape, n_out, (oh, ow), left + ow + right, groups, frame, rows,
                             cols, lambda th, tw: w5[th][:, tw].transpose(0, 1, 4, 3, 2), (1, 1),
                             stride, n * oh * ow * n_out * fh * fw * cig, w5.size, itemsize)


def _pack_shape(pack: tuple[np.ndarray, np.ndarray]) -> tuple[int, int]:
    """The outer kernel's packed filters ``[G, blocks, taps, cig, B]`` as (packs, elements each).

    A pack is the ``[cig, B]`` weights of one (group, block, tap): a job of ``copies.pack``.
    """
    bases, pack_meta = pack
    cig, _, groups, blocks, block = pack_meta[:5].tolist()
    return groups * blocks * len(bases), cig * block


#: A job's setup (its runs of taps, segments and buffers), counted as this many multiply-adds
#: when :func:`_most_balanced` weighs the balance of smaller jobs against their number.
JOB_SETUP_MACS = 100_000

#: :func:`_most_balanced` makes jobs up to this many times smaller than the caches want.
JOB_SPLIT_MAX = 4


def _shares(work: np.ndarray, threads: int) -> tuple[float, float]:
    """The largest and the mean of ``threads`` shares of jobs of ``work`` multiply-adds each.

    Shared as :func:`.parallel.run_jobs` shares them (consecutive jobs, equal numbers); a job
    that does any work costs JOB_SETUP_MACS more.
    """
    cumulative = np.concatenate(([0.0], np.cumsum(work + np.where(work > 0, JOB_SETUP_MACS, 0))))
    n_calls = min(work.size, threads)
    bounds = np.arange(n_calls + 1) * work.size // n_calls
    return float(np.max(np.diff(cumulative[bounds]))), float(cumulative[-1]) / threads


def _finer(total: int, size: int, coarser: bool = False) -> list[int]:
    """Sizes of equal blocks of ``total``, from blocks of ``size`` to JOB_SPLIT_MAX times finer.

    With ``coarser``, from blocks up to twice as large.
    """
    count = -(-total // size)
    least = -(-count // 2) if coarser else count
    return sorted({-(-total // k) for k in range(least, min(total, JOB_SPLIT_MAX * count) + 1)},
                  reverse=True)


def _most_balanced(work_of, threads: int, preferred: tuple[int, ...],
                   sizes: list[list[int]]) -> tuple[int, ...]:
    """The job blocking that shares the work best over ``threads``.

    ``work_of(*blocking)`` gives the jobs' multiply-adds in their order; ``preferred`` is the
    blocking that the caches want and ``sizes`` each of its sizes' candidates, finer or coarser
    (:func:`_finer`; at most JOB_SPLIT_MAX times more jobs in all). The blocking whose largest
    share (:func:`_shares`) is least, by 1 % or more, else the one with the fewer jobs. Equal
    numbers of jobs per thread are equal work only when the jobs are: rows in blocks of 9 and 5
    (ResNet 14x14x256); 56 jobs on 16 threads (shares of 4 are 1.14x the mean); phases of 9, 6,
    6 and 4 taps (5x5 windows at stride 2).
    """
    work = work_of(*preferred)
    best, mean = _shares(work, threads)
    found, best_jobs, most_jobs = preferred, work.size, JOB_SPLIT_MAX * work.size
    if best <= 1.01 * mean:
        return found
    for candidate in itertools.product(*sizes):
        work = work_of(*candidate)
        if work.size > most_jobs:
            continue
        share, _ = _shares(work, threads)
        if share < 0.99 * best or (share <= best and work.size < best_jobs):
            best, best_jobs, found = share, work.size, candidate
    return found


def _balanced_blocking(plan: CorrelationPlan, threads: int, images: int, rows: int, chunk: int,
                       blocks: int) -> tuple[int, ...]:
    """(images, rows, chunk) per job, from those that the caches want, balanced for ``threads``.

    Jobs of ``images`` images, ``rows`` rows of a phase and ``chunk`` of ``blocks`` channel
    blocks, in :func:`.correlate._job`'s (:func:`.outer._outer_job`'s) order: see
    :func:`_most_balanced`.
    """
    phases = plan.phases
    m = phases[:, correlate.M]
    pixel_taps = phases[:, correlate.Q] * phases[:, correlate.T] * phases[:, correlate.U]
    n, m_max = plan.out_shape[0], int(m.max())
    per_row = pixel_taps * (plan.macs / max(1, n * int((m * pixel_taps).sum())) / blocks)
    # each row's part of that: the share of its row taps that read inside the source (the
    # kernels skip the others: the edge rows of a 4x4 image under a 5x5 window), summed from
    # row 0 of each phase
    top, step, height = int(plan.meta[11]), int(plan.meta[1]), int(plan.meta[18])
    inside = np.zeros((len(phases), m_max + 1))
    for p, (n_rows, n_taps, first_tap) in enumerate(phases[:, [correlate.M, correlate.T,
                                                                correlate.TH]]):
        source_rows = (np.arange(n_rows)[:, None] * step
                       + plan.toffs[first_tap:first_tap + n_taps] - top)
        reads = ((source_rows >= 0) & (source_rows < height)).sum(axis=1) / max(1, n_taps)
        inside[p, 1:] = np.cumsum(np.pad(reads, (0, m_max - n_rows)))

    def work_of(images: int, rows: int, chunk: int) -> np.ndarray:
        first_rows = np.arange(0, m_max, rows)
        in_phase = (inside[:, np.minimum(first_rows + rows, m_max)] - inside[:, first_rows]).T
        n_images = np.minimum(images, n - np.arange(0, n, images))
        n_blocks = np.minimum(chunk, blocks - np.arange(0, blocks, chunk))
        return (n_images[:, None, None, None] * n_blocks[None, :, None, None]
                * (in_phase * per_row)[None, None]).ravel()  # [image, chunk, row block, phase]

    # the outer-product kernel's jobs may also be larger than the caches want (at least
    # OUTER_JOB_PIXELS): 28 rows x 8 images x 2 blocks of 64 channels are 64 jobs of 7 rows,
    # not 56 of 4 rows x 2 images, on 64 threads
    coarser = plan.kind == "outer"
    row_sizes = _finer(m_max, rows, coarser)
    if plan.kind == "depthwise":  # (up to eight rows per pass)
        row_sizes = [r for r in row_sizes if r <= 8 or r % 8 == 0] or [rows]
    return _most_balanced(work_of, threads, (images, rows, chunk),
                          [_finer(n, images, coarser), row_sizes, _finer(blocks, chunk, coarser)])


@functools.lru_cache(maxsize=512)
def _blocked_meta(plan: CorrelationPlan, threads: int, channels_first: bool = False,
                  src_channels_first: bool = False) -> tuple[np.ndarray, int]:
    """``plan.meta`` for a call: the job blocking for ``threads``, the layouts.

    Returns the meta and the number of jobs.
    """
    m_max = int(plan.phases[:, correlate.M].max())
    n_images, n_phases = plan.out_shape[0], len(plan.phases)
    wanted = JOBS_PER_THREAD * threads if threads > 1 else 1
    rows = min(plan.max_rows, m_max)
    images = 1
    blocks = chunk = 1
    if plan.kind == "outer":
        groups, block = int(plan.meta[5]), int(plan.meta[17])
        blocks = groups * -(-plan.out_shape[3] // groups // block)
        # pixels per job (rows, then images), then split the channel blocks if that leaves too
        # few jobs; where the packed filters outweigh the source and the phases' blocks are
        # enough jobs, all of a phase's pixels, so that each block's weights come from memory
        # once per call (DCGAN 8x8x512: 13 MB of filters, 2 MB of source; 0.88 of the time of
        # 128-pixel jobs)
        q_max = int(plan.phases[:, correlate.Q].max())
        taps = int((plan.phases[:, correlate.T] * plan.phases[:, correlate.U]).max())
        n_packs, pack_size = _pack_shape(plan.pack)
        height, width = plan.frame[2:] if plan.frame else plan.meta[18:20]
        if (n_packs * pack_size > n_images * int(height) * int(width) * int(plan.meta[0])
                and n_phases * blocks >= wanted):
            pixels = n_images * m_max * q_max
        else:
            cig = int(plan.meta[0]) // groups
            pixels = OUTER_JOB_PIXELS
            while pixels * OUTER_JOB_WEIGHTS_PER_PIXEL < taps * cig * blocks * block:
                pixels *= 2
            pixels = max(pixels, OUTER_JOB_MACS // max(1, taps * cig))
            if threads > 1:
                pixels = min(pixels, max(OUTER_JOB_PIXELS,
                                         n_images * m_max * q_max * n_phases // wanted))
        rows = min(m_max, max(1, pixels // q_max))
        images = min(n_images, -(-pixels // (rows * q_max)))
        jobs = -(-n_images // images) * -(-m_max // rows) * n_phases
        chunk = -(-blocks // min(blocks, max(1, -(-wanted // jobs))))
    elif threads > 1:
        rows = max(1, min(rows, n_images * n_phases * m_max // wanted))
    if plan.kind == "depthwise" and rows > 8:
        rows -= rows % 8  # it computes up to eight rows per pass
    if threads > 1:
        images, rows, chunk = _balanced_blocking(plan, threads, images, rows, chunk, blocks)
    meta = plan.meta.copy()
    meta[6] = -(-m_max // rows)
    meta[7] = rows
    meta[14] = images
    meta[15] = chunk
    meta[16] = channels_first
    if src_channels_first:
        meta[21] = 1
    jobs = -(-n_images // images) * int(meta[6]) * n_phases
    return meta, jobs * -(-blocks // chunk) if plan.kind == "outer" else jobs


def correlate_run(plan: CorrelationPlan, src: np.ndarray, w: np.ndarray,
                  bias: np.ndarray | None, threads: int | None,
                  channels_first: bool = False) -> np.ndarray:
    """Execute ``plan`` on ``src`` (NHWC) and filters ``w``; ``bias`` ``[C_out]`` or None.

    Returns the NHWC result; with ``channels_first``, the kernels write it NCHW (no layout
    conversion) and this is the NHWC view of that C-contiguous array.
    """
    n, h, w_out, c = plan.out_shape
    dst = np.empty((n, c, h, w_out) if channels_first else plan.out_shape, src.dtype)
    nhwc = dst.transpose(0, 2, 3, 1) if channels_first else dst
    if bias is None:
        bias = _zeros(c, src.dtype)
    if plan.kind == "fill":
        nhwc[...] = bias
        return nhwc
    threads = _threads_for(threads, plan.macs)
    if plan.planar is not None and (
            src.transpose(0, 3, 1, 2).flags.c_contiguous if channels_first  # (not NHWC memory)
            else plan.planar.nhwc and src.flags.c_contiguous):
        _planar_run(plan.planar, src, w, bias, threads, dst, channels_first)
        return nhwc
    as_is = plan.kind == "outer" and _reads_channels_first(plan, src)
    meta, n_jobs = _blocked_meta(plan, threads, channels_first, as_is)
    if plan.pack is not None:
        bases, pack_meta = plan.pack
        n_packs, pack_size = _pack_shape(plan.pack)
        weights = np.empty(n_packs * pack_size, w.dtype)
        _launch(copies.pack_serial, _threads_for(threads, weights.size, PARALLEL_MIN_COPY),
                n_packs, w.ravel(), bases, pack_meta, weights)
    elif plan.weight_index is None:
        weights = w.ravel()
    else:
        weights = w.ravel()[plan.weight_index]
    if plan.kind == "depthwise":
        weights, bias = _depthwise_operands(weights, bias, int(meta[0]), int(meta[13]))
    if as_is:  # its memory as [N, C*H, W]
        source = src.transpose(0, 3, 1, 2).reshape(src.shape[0], -1, src.shape[2])
    else:
        source = _padded(src, plan.frame, threads, keep=True)
    _launch(_CORRELATE[plan.kind], threads, n_jobs, source, weights, dst, plan.phases,
            plan.toffs, meta, bias)
    return nhwc


def _reads_channels_first(plan: CorrelationPlan, src: np.ndarray) -> bool:
    """Whether the outer-product kernel of ``plan`` reads ``src`` as it is.

    It does (its runs' elements a channel plane apart) where ``src`` is the NHWC view of an NCHW
    array, the kernel reads the source unpadded, its filters are not packed in pairs
    (:func:`.outer.pair`), and the planes are not a multiple of NCHW_ALIASED_PLANE_BYTES.
    """
    if not plan.meta[20] or src.flags.c_contiguous:
        return False
    _, h, w, _ = src.shape
    pair = plan.pack[1][8]  # (copies.pack's P: input elements per broadcast)
    return bool(pair == 1 and h * w * src.itemsize % NCHW_ALIASED_PLANE_BYTES
                and src.transpose(0, 3, 1, 2).flags.c_contiguous)


@functools.lru_cache(maxsize=512)
def _planar_meta(plan: PlanarPlan, images: int, threads: int,
                 itemsize: int) -> tuple[np.ndarray, int]:
    """``plan.meta`` with the job blocking for ``images`` images on ``threads`` threads.

    A job is an image's rows (all of them, or enough blocks of bands of rows for JOBS_PER_THREAD
    jobs per thread), for all tiles of output channels (or, when rows are too few, a chunk of
    them), balanced for the threads (:func:`_most_balanced`); a grouped call's images are its
    images' groups. Returns the meta and the number of jobs.
    """
    band = int(plan.meta[14])
    oh, cog = -(-int(plan.meta[6]) // band), int(plan.meta[1]) * band  # bands of rows, channels
    wanted = JOBS_PER_THREAD * threads if threads > 1 else 1
    n_row_blocks = min(oh, -(-wanted // images))
    rows = -(-oh // n_row_blocks)
    n_row_blocks = -(-oh // rows)
    n_pix = planar.tile_shape(itemsize)[0]
    n_tiles = -(-cog // n_pix)
    n_chunks = min(n_tiles, -(-wanted // (images * n_row_blocks)))
    tiles = -(-n_tiles // n_chunks)
    if threads > 1:
        c, _, t, u = plan.meta[:4].tolist()
        per_tile_row = n_pix * int(plan.meta[7]) * c * t * u  # multiply-adds

        def work_of(rows: int, tiles: int) -> np.ndarray:  # [image, row block, chunk]
            in_block = np.minimum(rows, oh - np.arange(0, oh, rows))
            in_chunk = np.minimum(tiles, n_tiles - np.arange(0, n_tiles, tiles))
            return np.tile(np.outer(in_block, in_chunk).ravel() * per_tile_row, images)

        rows, tiles = _most_balanced(work_of, threads, (rows, tiles),
                                     [_finer(oh, rows), _finer(n_tiles, tiles)])
    n_row_blocks = -(-oh // rows)
    n_chunks = -(-n_tiles // tiles)
    meta = plan.meta.copy()
    meta[10:14] = rows, n_row_blocks, tiles, n_chunks
    return meta, images * n_row_blocks * n_chunks


def _planar_run(plan: PlanarPlan, src: np.ndarray, w: np.ndarray, bias: np.ndarray,
                threads: int, dst: np.ndarray, channels_first: bool) -> None:
    """Run the planar kernel on ``src`` ``[N, H, W, C]`` into ``dst``.

    ``src`` is the NHWC view of a C-contiguous NCHW input (its planes) or an NHWC input (copied
    into planes with its padding); ``dst`` is the C-contiguous result, ``[N, Cout, OH, OW]`` with
    ``channels_first``, else ``[N, OH, OW, Cout]``, which takes more than one channel from planes
    in a copy.
    """
    n, h, wd, c = src.shape
    planes = src.transpose(0, 3, 1, 2)
    nchw = planes.flags.c_contiguous  # (one channel: NHWC memory too)
    if plan.exact is not None and not _all_finite(planes if nchw else src):
        plan = plan.exact
    if nchw:
        padded = _padded(planes.reshape(n * c, h, wd, 1), plan.frame, threads, keep=True)
    else:
        padded = _padded(src, plan.frame, threads, keep=True, planes=True)
    n_out, oh, ow = (dst.shape[1:] if channels_first
                     else (dst.shape[3], dst.shape[1], dst.shape[2]))
    copied = not channels_first and n_out > 1
    result = (_kept_array("planes", (n, n_out, oh, ow), dst.dtype) if copied
              else dst.reshape(n, n_out, oh, ow))
    # grouped: each group's planes an image of their own, with the group's filters
    meta, n_jobs = _planar_meta(plan, n * c // int(plan.meta[0]), threads, src.itemsize)
    _launch(planar.planar_serial, threads, n_jobs, padded, _planar_weights(w, plan), result,
            plan.toffs, meta, bias)
    if copied:  # the result's planes to NHWC
        _launch(copies.pad_channels_first_serial,
                _threads_for(threads, result.size, PARALLEL_MIN_COPY), n * oh, result,
                dst.reshape(n, oh, ow * n_out), 0, 0)


def _all_finite(a: np.ndarray) -> bool:
    """Whether ``a`` (C-contiguous) holds no Inf or NaN; checked in chunks (no large temporary)."""
    flat = a.reshape(-1)
    step = 1 << 16
    return all(np.isfinite(flat[i:i + step]).all() for i in range(0, flat.size, step))


def _planar_weights(w: np.ndarray, plan: PlanarPlan) -> np.ndarray:
    """The planar kernel's weights: ``w.ravel()[plan.weight_index]``, zero where it is -1."""
    if plan.exact is None:
        return w.ravel()[plan.weight_index]
    return np.concatenate((w.ravel(), np.zeros(1, w.dtype)))[plan.weight_index]


@functools.lru_cache(maxsize=64)
def _zeros(n: int, dtype: np.dtype) -> np.ndarray:
    """A zero bias, shared between calls (the kernels never write their bias)."""
    return np.zeros(n, dtype)


def _depthwise_operands(weights, bias, channels, tile):
    """The depthwise kernel's weights (a zero tile in front) and bias tiles ``[mult, tile]``.

    ``tiles[j, i] = bias[(i % channels)*mult + j]``.
    """
    padded = np.zeros(tile + weights.size, weights.dtype)
    padded[tile:] = weights
    by_multiplier = bias.reshape(channels, -1).T  # [mult, channels]
    tiles = np.empty((len(by_multiplier), tile // channels, channels), bias.dtype)
    tiles[...] = by_multiplier[:, None, :]
    return padded, tiles.reshape(-1)


# --- filter gradient -----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FilterGradPlan:
    """The filter gradient of a conv2d, lowered onto one reduction kernel launch."""

    out_shape: tuple[int, int, int, int]
    slabs: int  # 0 when nothing contributes (the gradient is zero)
    frame: tuple[int, int, int, int] | None
    meta: np.ndarray
    threads: int
    jobs: int
    padded_groups: bool  # dy's groups are copied into whole blocks of output channels
    depthwise: bool  # one input channel per group: depthwise_filter_grad_serial


@functools.lru_cache(maxsize=256)
def plan_filter_grad(x_shape, dy_shape, kernel_hw, stride, dilation, pad, groups,
                     threads, itemsize: int = 4) -> FilterGradPlan:
    """Filter gradient of :func:`plan_conv2d`: ``x``, ``dy`` -> ``[fh, fw, C/groups, Cout]``.

    ``threads`` is the count the call runs on (1: serial); ``itemsize`` as for
    :func:`plan_conv2d`.
    """
    n, _, _, c = x_shape
    _, oh, ow, n_out = dy_shape
    fh, fw = kernel_hw
    cig = c // groups
    out_shape = (fh, fw, cig, n_out)
    if n * oh * ow == 0 or cig == 0 or n_out == 0:
        return FilterGradPlan(out_shape, 0, None, np.empty(0, np.int64), 1, 0, False, False)
    n_rows = n * oh
    depthwise = cig == 1 and groups > 1  # its own kernel: slabs of rows, every tap in each,
    # from the unpadded input
    frame = None if depthwise else _frame(x_shape, pad[0], pad[1],
                                          (oh - 1) * stride[0] + (fh - 1) * dilation[0] + 1,
                                          (ow - 1) * stride[1] + (fw - 1) * dilation[1] + 1)
    cog = n_out // groups
    # (its tiles in AVX-512's vectors, blocks of 64: 1.00 of the time of blocks of 32 for the
    # ResNet and DCGAN gradients)
    block = outer.block_width(cig, cog, itemsize, widest=False)
    blocks = -(-cog // block)
    jobs = 1 if depthwise else fh * groups
    slabs = chunks = 1
    if threads > 1:  # rows of taps x groups alone are too few jobs: split them, into as many
        # jobs for every thread (the jobs cost about the same)
        split = -(-JOBS_PER_THREAD * threads // jobs)
        while split * jobs % threads:
            split += 1
        if not depthwise and fh * fw * cig > n * oh * ow:  # a gradient larger than dy: split
            # the blocks of output channels (a sum of slabs would cost more than the work:
            # DCGAN 4x4x1024's 52 MB)
            chunks = min(blocks, split)
            chunks = -(-blocks // -(-blocks // chunks))  # none empty
        else:  # split the pixel sum into slabs, each with its own part of the result
            slabs = min(n_rows, split)
            # (within FILTER_GRAD_SLAB_BYTES: then the blocks of output channels too, in as
            # few chunks as leave slabs within it; they divide the split)
            most = max(1, FILTER_GRAD_SLAB_BYTES // (fh * fw * cig * n_out * itemsize))
            if not depthwise and slabs > most:
                chunks = next((k for k in range(2, min(blocks, split) + 1)
                               if split % k == 0 and split // k <= most), min(blocks, split))
                chunks = -(-blocks // -(-blocks // chunks))  # none empty
                slabs = min(n_rows, -(-split // chunks))
    rows_per_slab = -(-n_rows // slabs)
    slabs = -(-n_rows // rows_per_slab)
    head = (c, *stride, *dilation, groups, rows_per_slab)
    if depthwise:
        return FilterGradPlan(out_shape, slabs, frame, np.array((*head, *pad), np.int64),
                              threads, slabs, False, True)
    padded_groups = cog % block != 0
    d_g = blocks * block if padded_groups else cog
    meta = np.array((*head, d_g, block, FILTER_GRAD_ACC_BYTES, chunks,
                     FILTER_GRAD_PLANE_ROW_PIXELS), np.int64)
    return FilterGradPlan(out_shape, slabs, frame, meta, threads, slabs * jobs * chunks,
                          padded_groups, False)


def filter_grad_run(plan: FilterGradPlan, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Execute ``plan`` on ``x`` and ``dy`` (NHWC, each as :func:`_padded` takes it)."""
    if plan.slabs == 0:
        return np.zeros(plan.out_shape, x.dtype)
    if plan.padded_groups:  # each group's channels, then zeros to a whole block
        n, oh, ow, n_out = dy.shape
        groups, d_g = int(plan.meta[5]), int(plan.meta[7])
        by_group = np.zeros((n, oh, ow, groups, d_g), dy.dtype)
        by_group[..., :n_out // groups] = dy.reshape(n, oh, ow, groups, -1)
        dy = by_group.reshape(n, oh, ow, groups * d_g)
    elif not dy.flags.c_contiguous:  # the NHWC view of an NCHW array: convert it
        dy = _padded(dy, None, plan.threads).reshape(dy.shape)
    part = np.empty((plan.slabs, *plan.out_shape), x.dtype)
    kernel = (_filter_grad.depthwise_filter_grad_serial if plan.depthwise
              else _filter_grad.filter_grad_serial)
    # (the padded copy kept, as a correlation's: fresh pages for it at every call took 1.02-1.03x
    # the time of the ResNet and DCGAN gradients)
    _launch(kernel, plan.threads, plan.jobs, _padded(x, plan.frame, plan.threads, keep=True), dy,
            part, plan.meta)
    if plan.slabs == 1:
        return part[0]
    out = np.empty(plan.out_shape, x.dtype)
    size = out.size
    threads = _threads_for(plan.threads, part.size, PARALLEL_MIN_COPY)
    step = _filter_grad.SUM_ELEMENTS
    if threads > 1:
        align = _filter_grad.SUM_ALIGN
        step = min(step, max(_filter_grad.SUM_MIN_ELEMENTS,
                             -(-size // (JOBS_PER_THREAD * threads * align)) * align))
    _launch(_filter_grad.sum_slabs_serial, threads, -(-size // step),
            part.reshape(plan.slabs, size), out.reshape(size), step)
    return out


# --- the operations -----------------------------------------------------------------------------


def _tf_shape(w_shape, torch_layout: bool):
    """TensorFlow's ``[fh, fw, A, B]`` for filters of shape ``w_shape``.

    That is ``w_shape`` itself, or, with ``torch_layout``, PyTorch's ``[B, A, fh, fw]`` reordered.
    """
    return (*w_shape[2:], w_shape[1], w_shape[0]) if torch_layout else w_shape


def conv2d(x, w, stride, dilation, pad, out_hw, groups, threads, bias=None,
           channels_first=False, torch_layout=False):
    """``x`` ``[N, H, W, C]``, ``w`` ``[fh, fw, C/groups, Cout]`` -> ``[N, OH, OW, Cout]``.

    ``bias`` (``[Cout]`` of the same dtype, or None) is added to every output pixel;
    ``channels_first``: the result is the NHWC view of an NCHW array (see :func:`correlate_run`);
    ``torch_layout``: ``w`` is PyTorch's ``[Cout, C/groups, fh, fw]``.
    """
    plan = plan_conv2d(x.shape, _tf_shape(w.shape, torch_layout), stride, dilation, pad, out_hw,
                       groups, torch_layout, x.dtype.itemsize)
    return correlate_run(plan, x, w, bias, threads, channels_first)


def conv2d_input_grad(dy, w, in_hw, stride, dilation, pad, groups, threads, bias=None,
                      channels_first=False, torch_layout=False):
    """Transpose of :func:`conv2d`: ``dy`` ``[N, OH, OW, Cout]`` -> ``[N, H, W, C]``.

    ``bias`` (``[C]`` of the same dtype, or None) is added to every output pixel;
    ``channels_first`` as for :func:`conv2d`; ``torch_layout``: ``w`` is PyTorch's
    ``[Cout, C/groups, fh, fw]``.
    """
    plan = plan_input_grad(dy.shape, _tf_shape(w.shape, torch_layout), in_hw, stride, dilation,
                           pad, groups, torch_layout, dy.dtype.itemsize)
    return correlate_run(plan, dy, w, bias, threads, channels_first)


def conv2d_filter_grad(x, dy, kernel_hw, stride, dilation, pad, groups, threads):
    """Filter gradient of :func:`conv2d`: ``x``, ``dy`` -> ``[fh, fw, C/groups, Cout]``."""
    n, _, _, c = x.shape
    macs = dy.size * kernel_hw[0] * kernel_hw[1] * (c // groups)
    plan = plan_filter_grad(x.shape, dy.shape, kernel_hw, stride, dilation, pad, groups,
                            _threads_for(threads, macs), x.dtype.itemsize)
    return filter_grad_run(plan, x, dy)

