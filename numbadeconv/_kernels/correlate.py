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
chunk, channels_first, block, height, width, unpadded]``: each job computes ``rows``
consecutive rows (block ``b`` of ``n_blocks``) of one phase of one image; ``w_co`` and ``w_g``
are the tiled kernel's weight strides between output channels and between groups, ``w_bytes``
the size of the block of weights it keeps in cache while sweeping a row block's pixels; ``top``,
``left``, ``height`` and ``width`` where the source itself lies in the zero-padded frame that
the tap offsets assume, ``unpadded`` 1 when ``src`` is the source itself rather than that frame
(always for the depthwise and row-wise kernels, which skip the taps outside it; the
outer-product kernel skips the runs that read only zeros in either), ``tile`` the depthwise
kernel's weight tile length, ``images``, ``chunk`` and ``block`` the
outer-product kernel's images and channel blocks per job and output channels per block
(:mod:`.outer`), ``channels_first`` the layout of ``dst``.

Two kernels here, the outer-product one in :mod:`.outer` and the depthwise one in
:mod:`.depthwise`, each running jobs ``first`` to ``last`` (``X_serial``; :mod:`.parallel`
spreads all jobs over threads). Job ``j`` is (image, row block, phase) with the phase innermost,
so that uneven phases spread over the threads:

- ``tiled``: 4 output pixels x 3 output channels in scalar accumulators, reducing over contiguous
  spans of input channels (and adjacent taps), three taps per pass; with one output channel per
  group (a sparse code's adjoint back to one image), 8 pixels x 1 channel, a tap per pass; for
  long spans with few output channels per group (which would leave the outer-product kernel's
  blocks mostly empty), and for filters read in place.
  The weight of ``(g, co, tap, ci)`` is at ``g*w_g + co*w_co + toffs[WS + tap] + ci``: the
  filters themselves when their input channels are contiguous (a transpose's
  ``[fh, fw, out, in]``), else a packed copy ``[G, cog, taps, cig]``.
- ``rowwise``: one output channel at a time, vectorised along the pixels of a row; for very few
  channels (a single-channel image). Weights ``[G, T, U, cig, cog]`` per phase. Like the
  depthwise kernel (:mod:`.depthwise`), it reads ``src`` unpadded: ``meta[11]`` and ``meta[12]``
  are the (top, left) padding that the tap offsets assume, and taps outside ``src`` are skipped.
"""

import numpy as np

from .._jit import kernel

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
def _inside(off, ssw, width, nq):
    """The pixels ``[q_lo, q_hi)`` of ``nq`` whose source column ``q*ssw + off`` is inside.

    Inside is ``[0, width)``: for the kernels that read an unpadded source. An empty range has
    ``q_lo == q_hi``.
    """
    q_lo = min(nq, max(0, -(off // ssw)))
    return q_lo, max(q_lo, min(nq, (width - 1 - off) // ssw + 1))


@kernel(internal=True)
def _tap_runs(phases, toffs, p, n_ch, cig, row_len, tap_x, tap_w):
    """Fill in phase ``p``'s runs; returns (number of runs, elements per run).

    A run is what one output pixel reads for one tap (``cig`` input channels), or for all ``U``
    taps of a tap row when the phase is MERGED. ``tap_x[k]``: run ``k``'s source offset from the
    pixel's first element (source rows ``row_len`` elements apart); ``tap_w[k]``: its weight
    offset (from the phase's WS entries of ``toffs``). Both hold at least T*U entries.
    """
    nt, nu, th, tw, ws = phases[p, T], phases[p, U], phases[p, TH], phases[p, TW], phases[p, WS]
    merged = phases[p, MERGED] != 0
    n_runs = 0 if nu == 0 else (1 if merged else nu)
    for t in range(nt):
        for r in range(n_runs):
            tap_x[t * n_runs + r] = toffs[th + t] * row_len + toffs[tw + r] * n_ch
            tap_w[t * n_runs + r] = toffs[ws + t * nu + r]
    return nt * n_runs, nu * cig if merged else cig


@kernel(internal=True)
def _dot4x3(x, x0, x1, x2, x3, w, w0, w1, w2, span, acc):
    """``acc`` (12 sums) plus the dot products of 4 source runs with 3 weight runs.

    The runs are ``x[x_k:x_k + span]`` and ``w[w_k:w_k + span]``; the offsets are unsigned, so
    that Numba emits no negative-index wraparound and LLVM vectorises the loop (array views
    would cost reference counting on every call).
    """
    a00, a01, a02, a10, a11, a12, a20, a21, a22, a30, a31, a32 = acc
    for i in range(np.uint64(span)):
        v0 = w[w0 + i]
        v1 = w[w1 + i]
        v2 = w[w2 + i]
        s0 = x[x0 + i]
        s1 = x[x1 + i]
        s2 = x[x2 + i]
        s3 = x[x3 + i]
        a00 += s0 * v0
        a01 += s0 * v1
        a02 += s0 * v2
        a10 += s1 * v0
        a11 += s1 * v1
        a12 += s1 * v2
        a20 += s2 * v0
        a21 += s2 * v1
        a22 += s2 * v2
        a30 += s3 * v0
        a31 += s3 * v1
        a32 += s3 * v2
    return (a00, a01, a02, a10, a11, a12, a20, a21, a22, a30, a31, a32)


@kernel(internal=True)
def _dot4x3_taps3(x, p0, p1, p2, p3, t0, t1, t2, w, c0, c1, c2, u0, u1, u2, span, acc):
    """:func:`_dot4x3` over three taps at once: one reduction instead of three.

    Pixel ``j``'s run for tap ``k`` is ``x[p_j + t_k:...]``; channel ``c``'s weights for tap
    ``k`` are ``w[c_c + u_k:...]``.
    """
    a00, a01, a02, a10, a11, a12, a20, a21, a22, a30, a31, a32 = acc
    x00, x01, x02 = p0 + t0, p0 + t1, p0 + t2
    x10, x11, x12 = p1 + t0, p1 + t1, p1 + t2
    x20, x21, x22 = p2 + t0, p2 + t1, p2 + t2
    x30, x31, x32 = p3 + t0, p3 + t1, p3 + t2
    w00, w01, w02 = c0 + u0, c0 + u1, c0 + u2
    w10, w11, w12 = c1 + u0, c1 + u1, c1 + u2
    w20, w21, w22 = c2 + u0, c2 + u1, c2 + u2
    for i in range(np.uint64(span)):
        v00, v01, v02 = w[w00 + i], w[w01 + i], w[w02 + i]
        v10, v11, v12 = w[w10 + i], w[w11 + i], w[w12 + i]
        v20, v21, v22 = w[w20 + i], w[w21 + i], w[w22 + i]
        s0, s1, s2 = x[x00 + i], x[x01 + i], x[x02 + i]
        a00 += s0 * v00 + s1 * v01 + s2 * v02
        a01 += s0 * v10 + s1 * v11 + s2 * v12
        a02 += s0 * v20 + s1 * v21 + s2 * v22
        s0, s1, s2 = x[x10 + i], x[x11 + i], x[x12 + i]
        a10 += s0 * v00 + s1 * v01 + s2 * v02
        a11 += s0 * v10 + s1 * v11 + s2 * v12
        a12 += s0 * v20 + s1 * v21 + s2 * v22
        s0, s1, s2 = x[x20 + i], x[x21 + i], x[x22 + i]
        a20 += s0 * v00 + s1 * v01 + s2 * v02
        a21 += s0 * v10 + s1 * v11 + s2 * v12
        a22 += s0 * v20 + s1 * v21 + s2 * v22
        s0, s1, s2 = x[x30 + i], x[x31 + i], x[x32 + i]
        a30 += s0 * v00 + s1 * v01 + s2 * v02
        a31 += s0 * v10 + s1 * v11 + s2 * v12
        a32 += s0 * v20 + s1 * v21 + s2 * v22
    return (a00, a01, a02, a10, a11, a12, a20, a21, a22, a30, a31, a32)


@kernel(internal=True)
def _dot8x1(x, p0, p1, p2, p3, p4, p5, p6, p7, w, w0, span, acc):
    """``acc`` (8 sums) plus the dot products of 8 source runs with one weight run.

    The runs are ``x[p_j:p_j + span]`` and ``w[w0:w0 + span]``: one output channel's tile
    (as :func:`_dot4x3`, unsigned offsets).
    """
    a0, a1, a2, a3, a4, a5, a6, a7 = acc
    for i in range(np.uint64(span)):
        v = w[w0 + i]
        a0 += x[p0 + i] * v
        a1 += x[p1 + i] * v
        a2 += x[p2 + i] * v
        a3 += x[p3 + i] * v
        a4 += x[p4 + i] * v
        a5 += x[p5 + i] * v
        a6 += x[p6 + i] * v
        a7 += x[p7 + i] * v
    return (a0, a1, a2, a3, a4, a5, a6, a7)


@kernel(internal=True)
def _one_channel(flat, weights, d_flat, row, pixel_step, nq, tap_x, tap_w, n_taps, wb, span,
                 b, at, col_step):
    """A row of one output channel: its ``nq`` pixels, 8 at a time (:func:`_dot8x1`).

    Pixel ``q`` reads the runs at ``row + q*pixel_step + tap_x[k]`` with weights at
    ``wb + tap_w[k]`` (``k < n_taps``), starts from ``b`` and goes to
    ``d_flat[at + q*col_step]``.
    """
    last = row + (nq - 1) * pixel_step
    for q0 in range(0, nq, 8):
        p = row + q0 * pixel_step  # the tile's first pixel; past the row's end, its last
        acc = (b, b, b, b, b, b, b, b)
        for k in range(n_taps):
            t = tap_x[k]
            acc = _dot8x1(flat, np.uint64(p + t), np.uint64(min(p + pixel_step, last) + t),
                          np.uint64(min(p + 2 * pixel_step, last) + t),
                          np.uint64(min(p + 3 * pixel_step, last) + t),
                          np.uint64(min(p + 4 * pixel_step, last) + t),
                          np.uint64(min(p + 5 * pixel_step, last) + t),
                          np.uint64(min(p + 6 * pixel_step, last) + t),
                          np.uint64(min(p + 7 * pixel_step, last) + t), weights,
                          np.uint64(wb + tap_w[k]), span, acc)
        for j in range(min(8, nq - q0)):
            d_flat[np.uint64(at + (q0 + j) * col_step)] = acc[j]


@kernel(internal=True)
def _store4x3(d_flat, at, pixel_step, s_ch, n_pix, n_c, acc):
    """Store a 4-pixel x 3-channel tile: its first ``n_pix`` pixels and ``n_c`` channels.

    Element (pixel ``k``, channel ``c``) goes to ``d_flat[at + k*pixel_step + c*s_ch]``.
    """
    for k in range(n_pix):
        for c in range(n_c):
            d_flat[np.uint64(at + k * pixel_step + c * s_ch)] = acc[3 * k + c]


@kernel()
def tiled_serial(src, weights, dst, phases, toffs, meta, bias, first, last):
    flat = src.reshape(-1)
    d_flat = dst.reshape(-1)
    _, _, n_out, s_img, s_row, s_col, s_ch = out_layout(dst, meta)
    for job in range(first, last):
        n_ch, ssh, ssw, rs, cs, groups = meta[0], meta[1], meta[2], meta[3], meta[4], meta[5]
        w_co = meta[8]
        w_g = meta[9]
        n, p, m_lo, m_hi, nq, nt, nu, th, tw, ws = _job(phases, meta, job)
        cig = n_ch // groups
        cog = n_out // groups
        col0 = phases[p, C0]
        tap_x = np.empty(nt * nu, np.int64)  # as the outer-product kernel's: one _tap_runs
        tap_w = np.empty(nt * nu, np.int64)
        n_taps, span = _tap_runs(phases, toffs, p, n_ch, cig, src.shape[2], tap_x, tap_w)
        # Output channels in blocks whose weights (all this phase's taps) fit in about meta[10]
        # bytes, so that they stay in L2 while the block's pixels, 4 at a time, stream past them.
        c_block = max(3, min(cog, meta[10] // max(1, nt * nu * cig * dst.itemsize) // 3 * 3))
        for g in range(groups if cog == 1 else 0):  # one output channel: 8 x 1 tiles
            for m in range(m_lo, m_hi):
                _one_channel(flat, weights, d_flat,
                             (n * src.shape[1] + m * ssh) * src.shape[2] + g * cig, ssw * n_ch,
                             nq, tap_x, tap_w, n_taps, g * w_g, span, bias[g],
                             n * s_img + (phases[p, R0] + m * rs) * s_row + col0 * s_col
                             + g * s_ch, cs * s_col)
        for g in range(groups if cog > 1 else 0):
            ch0 = g * cig
            for cb in range(0, cog, c_block):
                for m in range(m_lo, m_hi):
                    d_row = n * s_img + (phases[p, R0] + m * rs) * s_row + col0 * s_col
                    for q0 in range(0, nq, 4):
                        q1 = min(q0 + 1, nq - 1)
                        q2 = min(q0 + 2, nq - 1)
                        q3 = min(q0 + 3, nq - 1)
                        for c0 in range(cb, min(cb + c_block, cog), 3):
                            c1 = min(c0 + 1, cog - 1)
                            c2 = min(c0 + 2, cog - 1)
                            wb0 = g * w_g + c0 * w_co
                            wb1 = g * w_g + c1 * w_co
                            wb2 = g * w_g + c2 * w_co
                            b0 = bias[g * cog + c0]
                            b1 = bias[g * cog + c1]
                            b2 = bias[g * cog + c2]
                            acc = (b0, b1, b2, b0, b1, b2, b0, b1, b2, b0, b1, b2)
                            row = (n * src.shape[1] + m * ssh) * src.shape[2] + ch0
                            x0 = row + q0 * ssw * n_ch
                            x1 = row + q1 * ssw * n_ch
                            x2 = row + q2 * ssw * n_ch
                            x3 = row + q3 * ssw * n_ch
                            k = 0
                            while k < n_taps:
                                if n_taps - k >= 3:
                                    acc = _dot4x3_taps3(
                                        flat, np.uint64(x0), np.uint64(x1), np.uint64(x2),
                                        np.uint64(x3), np.uint64(tap_x[k]),
                                        np.uint64(tap_x[k + 1]), np.uint64(tap_x[k + 2]),
                                        weights, np.uint64(wb0), np.uint64(wb1), np.uint64(wb2),
                                        np.uint64(tap_w[k]), np.uint64(tap_w[k + 1]),
                                        np.uint64(tap_w[k + 2]), span, acc)
                                    k += 3
                                else:
                                    x_k, w_k = np.uint64(tap_x[k]), np.uint64(tap_w[k])
                                    acc = _dot4x3(flat, np.uint64(x0) + x_k, np.uint64(x1) + x_k,
                                                  np.uint64(x2) + x_k, np.uint64(x3) + x_k,
                                                  weights, np.uint64(wb0) + w_k,
                                                  np.uint64(wb1) + w_k, np.uint64(wb2) + w_k,
                                                  span, acc)
                                    k += 1
                            _store4x3(d_flat, d_row + q0 * cs * s_col + (g * cog + c0) * s_ch,
                                      cs * s_col, s_ch, min(4, nq - q0), min(3, cog - c0), acc)


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
