"""Strided, grouped 2-D correlation over a table of phases: the engine of conv2d and its transpose.

For each phase ``p`` (a row of ``phases``), every output element it owns is computed once (a
gather: no scatter, no races)::

    dst[n, r0 + m*rs, c0 + q*cs, g*cog + co] = bias[g*cog + co] +
        sum_{t < T, u < U, ci < cig} src[n, m*ssh + toffs[TH + t], (q*ssw + toffs[TW + u])*C
                                         + g*cig + ci] * weight(g, co, t, u, ci)

for ``m < M``, ``q < Q``, where ``src`` is ``[N, Hs, Ws*C]`` (an NHWC array with its last two
axes merged) and ``dst`` is ``[N, Hd, Wd, Cd]``, or ``[N, Cd, Hd, Wd]`` when ``meta[16]`` is 1
(an NCHW result, written in place of a layout conversion). A convolution is one phase; a
stride-``s`` transpose is ``s*s`` stride-1 phases, each with the taps that reach it. ``src`` is
zero-padded so that every read is in bounds (unless ``meta[20]`` says otherwise, below); the phases
partition ``dst``, so every element is written exactly once (a phase with no taps writes the
bias).

``phases`` columns (int64): r0, c0, M, Q, T, U, TH and TW (where the phase's row and column tap
offsets start in ``toffs``), WS (tiled kernel: where the phase's T*U weight-tap offsets start in
``toffs``; others: where its weights start in ``weights``), and MERGED (1 when the U taps are
adjacent columns and their weights adjacent too, so that the taps x channels of one output pixel
are one contiguous span of ``src`` and of ``weights``). ``meta`` (int64) is
``[C, ssh, ssw, rs, cs, groups, n_blocks, rows, w_co, w_g, w_bytes, top, left, tile, images,
chunk, channels_first, block, height, width, unpadded, src_channels_first]``: each job
computes ``rows`` consecutive rows (block ``b`` of ``n_blocks``) of one phase of one image;
``w_co`` and ``w_g`` are the tiled kernel's weight strides between output channels and between
groups, ``w_bytes`` the size of the block of weights it keeps in cache while sweeping a row
block's pixels; ``top``, ``left``, ``height`` and ``width`` where the source itself lies in the
zero-padded frame that the tap offsets assume, ``unpadded`` 1 when ``src`` is the source itself
rather than that frame (always for the depthwise and row-wise kernels, which skip the taps
outside it; the tiled and outer-product kernels skip the runs that read only zeros in either:
:mod:`.segments`), ``tile`` the depthwise kernel's weight tile length, ``images``, ``chunk``
and ``block`` the outer-product kernel's images and channel blocks per job and output channels
per block (:mod:`.outer`), ``channels_first`` the layout of ``dst``, ``src_channels_first`` 1
when ``src`` is an NCHW source as it is (the outer-product kernel's, unpadded:
:func:`src_layout`).

Four kernels run these jobs, each jobs ``first`` to ``last`` (``X_serial``; :mod:`.parallel`
spreads all jobs over threads): the outer-product one (:mod:`.outer`), for channel-rich layers;
the tiled one (:mod:`.tiled`), for few output channels per group; the depthwise one
(:mod:`.depthwise`); and the row-wise one here. Job ``j`` is (image, row block, phase) with the
phase innermost, so that uneven phases spread over the threads.

The row-wise kernel computes one output channel at a time, vectorised along the pixels of a row;
for very few channels (a single-channel image). Weights ``[G, T, U, cig, cog]`` per phase. Like
the depthwise kernel, it reads ``src`` unpadded: ``meta[11]`` and ``meta[12]`` are the (top,
left) padding that the tap offsets assume, and taps outside ``src`` are skipped.
"""

import numpy as np

from .._jit import kernel
from . import simd

N_COLUMNS = 10
R0, C0, M, Q, T, U, TH, TW, WS, MERGED = range(N_COLUMNS)


@kernel(internal=True)
def _job(phases, meta, job):
    """Job ``job`` (phase innermost, then row block, then image) and its phase's columns.

    Returns (image, phase, first row, end row, Q, T, U, TH, TW, WS).
    """
    n_phases = phases.shape[0]
    n_blocks = meta[6]
    rows = meta[7]
    p = job % n_phases
    m_lo = (job // n_phases) % n_blocks * rows
    ph = phases[p]
    return (job // (n_phases * n_blocks), p, m_lo, min(m_lo + rows, ph[M]), ph[Q], ph[T], ph[U],
            ph[TH], ph[TW], ph[WS])


@kernel(internal=True)
def out_layout(dst, meta):
    """``dst``'s (rows, columns, channels) and its element strides (image, row, column, channel).

    ``dst`` is ``[N, Hd, Wd, Cd]``, or ``[N, Cd, Hd, Wd]`` when ``meta[16]`` is 1. The kernels
    store into ``dst.reshape(-1)`` at unsigned offsets made of these strides: one code path for
    both layouts (per-element branches or 4-D indexing made the stores up to 25 % slower).
    """
    if meta[16]:
        rows, cols, chans = dst.shape[2], dst.shape[3], dst.shape[1]
        return rows, cols, chans, rows * cols * chans, cols, 1, rows * cols
    rows, cols, chans = dst.shape[1], dst.shape[2], dst.shape[3]
    return rows, cols, chans, rows * cols * chans, cols * chans, chans, 1


@kernel(internal=True)
def src_layout(src, meta):
    """``src``'s element strides (image, row, column, channel).

    ``src`` is ``[N, Hs, Ws*C]`` (NHWC, last two axes merged), or, when ``meta[21]`` is 1, the
    NCHW source itself as ``[N, C*H, W]`` (``H``, ``W``: ``meta[18]``, ``meta[19]``), which
    the outer-product kernel reads without a layout conversion.
    """
    if meta[21]:
        plane = meta[18] * meta[19]
        return meta[0] * plane, meta[19], 1, plane
    return src.shape[1] * src.shape[2], src.shape[2], meta[0], 1


@kernel(internal=True)
def _inside(off, ssw, width, nq):
    """The pixels ``[q_lo, q_hi)`` of ``nq`` whose source column ``q*ssw + off`` is inside.

    Inside is ``[0, width)``: for the kernels that read an unpadded source. An empty range has
    ``q_lo == q_hi``.
    """
    q_lo = min(nq, max(0, -(off // ssw)))
    return q_lo, max(q_lo, min(nq, (width - 1 - off) // ssw + 1))


@kernel(internal=True)
def _tap_runs(phases, toffs, p, merged, col_len, cig, row_len, tap_x, tap_w):
    """Fill in phase ``p``'s runs; returns (number of runs, elements per run).

    A run is what one output pixel reads for one tap (``cig`` input channels), or with
    ``merged`` (the phase is MERGED and the source NHWC) for all ``U`` taps of a tap row.
    ``tap_x[k]``: run ``k``'s source offset from the pixel's first element (source rows
    ``row_len`` elements apart, columns ``col_len``); ``tap_w[k]``: its weight offset (from the
    phase's WS entries of ``toffs``). Both hold at least T*U entries.
    """
    nt, nu, th, tw, ws = phases[p, T], phases[p, U], phases[p, TH], phases[p, TW], phases[p, WS]
    n_runs = 0 if nu == 0 else (1 if merged else nu)
    for t in range(nt):
        for r in range(n_runs):
            tap_x[t * n_runs + r] = toffs[th + t] * row_len + toffs[tw + r] * col_len
            tap_w[t * n_runs + r] = toffs[ws + t * nu + r]
    return nt * n_runs, nu * cig if merged else cig


@kernel(internal=True)
def _axpy(acc, a0, count, x, x0, step, v):
    """``acc[a0 + q] += x[x0 + q*step] * v`` for ``q < count`` (unsigned offsets: see _dot4x3)."""
    a0 = np.uint64(a0)
    x0 = np.uint64(x0)
    if step == 1:
        for q in range(np.uint64(count)):
            acc[a0 + q] += x[x0 + q] * v
    else:
        stride = np.uint64(step)
        for q in range(np.uint64(count)):
            acc[a0 + q] += x[x0 + q * stride] * v


@kernel()
def rowwise_serial(src, weights, dst, phases, toffs, meta, bias, first, last):
    simd.vex_only_here()
    top, left = meta[11], meta[12]  # src is not padded: taps outside it are skipped
    height = src.shape[1]
    width = src.shape[2] // meta[0]
    x = src.reshape(src.shape[0], -1)
    d_flat = dst.reshape(-1)
    _, d_cols, n_out, s_img, s_row, s_col, s_ch = out_layout(dst, meta)
    acc = np.empty(d_cols, dst.dtype)  # a phase's row: at most a row of dst
    inside = np.empty((2, toffs.shape[0]), np.int64)  # a column tap's pixels (toffs holds U)
    for job in range(first, last):
        n_ch, ssh, ssw, rs, cs, groups = meta[0], meta[1], meta[2], meta[3], meta[4], meta[5]
        n, p, m_lo, m_hi, nq, nt, nu, th, tw, ws = _job(phases, meta, job)
        cig = n_ch // groups
        cog = n_out // groups
        col0 = phases[p, C0]
        step = ssw * n_ch
        xn = x[n]
        for u in range(nu):  # source column of pixel q: q*ssw + toffs[tw + u] - left
            inside[0, u], inside[1, u] = _inside(toffs[tw + u] - left, ssw, width, nq)
        for m in range(m_lo, m_hi):
            d_row = n * s_img + (phases[p, R0] + m * rs) * s_row + col0 * s_col
            for g in range(groups):
                for co in range(cog):
                    for q in range(nq):
                        acc[q] = bias[g * cog + co]
                    for t in range(nt):
                        r = m * ssh + toffs[th + t] - top
                        if r < 0 or r >= height:
                            continue
                        for u in range(nu):
                            q_lo, q_hi = inside[0, u], inside[1, u]
                            if q_lo == q_hi:
                                continue
                            o = (r * width + q_lo * ssw + toffs[tw + u] - left) * n_ch + g * cig
                            wb = ws + ((g * nt + t) * nu + u) * cig * cog + co
                            for ci in range(cig):
                                _axpy(acc, q_lo, q_hi - q_lo, xn, o + ci, step,
                                      weights[wb + ci * cog])
                    at = d_row + (g * cog + co) * s_ch
                    for q in range(nq):
                        d_flat[np.uint64(at + q * cs * s_col)] = acc[q]
