"""The tiled correlation kernel: dot products of a few pixels' runs with a few channels' weights.

The phase table, jobs and tap runs are :mod:`numbadeconv._kernels.correlate`'s (read its
docstring). A tile is 4 output pixels x 3 output channels in scalar accumulators (LLVM vectorises
their reduction loop), reducing over contiguous spans of input channels (and adjacent taps),
three taps per pass; with one output channel per group (a sparse code's adjoint back to one
image), 8 pixels x 1 channel, a tap per pass. The engine takes it for long spans with few output
channels per group (which would leave the outer-product kernel's blocks mostly empty), and for
filters read in place. The weight of ``(g, co, tap, ci)`` is at
``g*w_g + co*w_co + toffs[WS + tap] + ci`` (``w_co`` and ``w_g``: ``meta[8]`` and ``meta[9]``):
the filters themselves when their input channels are contiguous (a transpose's
``[fh, fw, out, in]``), else a packed copy ``[G, cog, taps, cig]``. A job sweeps its pixels past
blocks of output channels whose weights take about ``meta[10]`` bytes (they stay in L2).

A job's pixels go in segments that read inside the same taps (:mod:`.segments`), each in tiles
of its own (a tile's pixels may span rows) that run only those taps, so that ``src`` can be the
source itself (``meta[20]`` 1: the engine makes no padded copy of the input for this kernel).
"""

import numpy as np

from .._jit import kernel
from . import segments
from .correlate import MERGED, _job, _tap_runs, out_layout


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
def _segment_runs(tap_x, tap_w, nu, merged, cig, t_lo, t_hi, u_lo, u_hi, run_x, run_w):
    """The runs of a segment: row taps ``t_lo`` to ``t_hi``, column taps ``u_lo`` to ``u_hi``.

    From the phase's runs ``tap_x``, ``tap_w`` (:func:`.correlate._tap_runs`; merged: one per row
    tap, of which the segment reads the columns' channels only). Fills ``run_x``, ``run_w``;
    returns (number of runs, elements per run).
    """
    n = 0
    for t in range(t_lo, t_hi if u_lo < u_hi else t_lo):
        if merged:
            run_x[n] = tap_x[t] + u_lo * cig
            run_w[n] = tap_w[t] + u_lo * cig
            n += 1
        else:
            for u in range(u_lo, u_hi):
                run_x[n] = tap_x[t * nu + u]
                run_w[n] = tap_w[t * nu + u]
                n += 1
    return n, (u_hi - u_lo) * cig if merged else cig


@kernel(internal=True)
def _one_channel(flat, weights, d_flat, base, out, first, last, x_add, run_x, run_w, n_runs, wb,
                 span, b, d_add):
    """One output channel of tiles ``first`` to ``last`` (8 pixels each of ``base``, ``out``).

    A pixel's runs ``k < n_runs`` start at ``base[j] + x_add + run_x[k]``, with weights at
    ``wb + run_w[k]`` (:func:`_dot8x1`); its sum starts from ``b`` and goes to
    ``d_flat[out[j] + d_add]``.
    """
    for i in range(first, last):
        j = 8 * i
        acc = (b, b, b, b, b, b, b, b)
        # the pixels' offsets in locals (loaded from base on every run: up to 1.1x the time)
        p0, p1, p2, p3 = base[j], base[j + 1], base[j + 2], base[j + 3]
        p4, p5, p6, p7 = base[j + 4], base[j + 5], base[j + 6], base[j + 7]
        for k in range(n_runs):
            t = x_add + run_x[k]
            acc = _dot8x1(flat, np.uint64(p0 + t), np.uint64(p1 + t), np.uint64(p2 + t),
                          np.uint64(p3 + t), np.uint64(p4 + t), np.uint64(p5 + t),
                          np.uint64(p6 + t), np.uint64(p7 + t), weights,
                          np.uint64(wb + run_w[k]), span, acc)
        for c in range(8):
            d_flat[np.uint64(out[j + c] + d_add)] = acc[c]


@kernel(internal=True)
def _store4x3(d_flat, out, j, d_add, s_ch, n_c, acc):
    """Store a 4-pixel x 3-channel tile: pixels ``j`` to ``j + 4`` of ``out``, ``n_c`` channels.

    Element (pixel ``k``, channel ``c``) goes to ``d_flat[out[j + k] + d_add + c*s_ch]``.
    """
    for k in range(4):
        for c in range(n_c):
            d_flat[np.uint64(out[j + k] + d_add + c * s_ch)] = acc[3 * k + c]


@kernel()
def tiled_serial(src, weights, dst, phases, toffs, meta, bias, first, last):
    flat = src.reshape(-1)
    d_flat = dst.reshape(-1)
    _, n_cols, n_out, s_img, s_row, s_col, s_ch = out_layout(dst, meta)
    n_ch, groups, w_co, w_g = meta[0], meta[5], meta[8], meta[9]
    cig = n_ch // groups
    cog = n_out // groups
    n_pix = 8 if cog == 1 else 4
    # scratch for every job: the phase's runs, a segment's runs, the runs of rows and columns
    tap_x = np.empty(toffs.shape[0], np.int64)  # toffs holds every phase's T*U taps
    tap_w = np.empty_like(tap_x)
    run_x = np.empty_like(tap_x)
    run_w = np.empty_like(tap_x)
    m_ranges = np.empty((3, meta[7] + 3), np.int64)
    q_ranges = np.empty((3, n_cols + 3), np.int64)
    for job in range(first, last):
        n, p, m_lo, m_hi, _, nt, nu, _, _, _ = _job(phases, meta, job)
        # the phase's runs, of which each segment takes its own (_segment_runs)
        merged = phases[p, MERGED] != 0
        _tap_runs(phases, toffs, p, merged, n_ch, cig, src.shape[2], tap_x, tap_w)
        m_first, n_rc, q_first, n_cc, seg_slots, base, out = segments.split(
            src, meta, phases, toffs, p, n, n + 1, m_lo, m_hi, s_img, s_row, s_col, n_pix, n_pix,
            cig, m_ranges, q_ranges)  # (tiles of n_pix only: seg_slots are whole tiles)
        # Output channels in blocks whose weights (all this phase's taps) fit in about meta[10]
        # bytes, so that they stay in L2 while the block's pixels, a tile at a time, stream past.
        c_block = max(3, min(cog, meta[10] // max(1, nt * nu * cig * dst.itemsize) // 3 * 3))
        for g in range(groups):
            ch0 = g * cig
            for cb in range(0, cog, c_block):
                for s in range(n_rc * n_cc):
                    rc, cc = m_first + s // n_cc, q_first + s % n_cc
                    n_runs, r_span = _segment_runs(tap_x, tap_w, nu, merged, cig,
                                                   m_ranges[1, rc], m_ranges[2, rc],
                                                   q_ranges[1, cc], q_ranges[2, cc], run_x, run_w)
                    if cog == 1:  # one output channel: 8 x 1 tiles
                        _one_channel(flat, weights, d_flat, base, out, seg_slots[s] // n_pix,
                                     seg_slots[s + 1] // n_pix, ch0, run_x, run_w, n_runs,
                                     g * w_g, r_span, bias[g], g * s_ch)
                        continue
                    for i in range(seg_slots[s] // n_pix, seg_slots[s + 1] // n_pix):
                        j = i * n_pix
                        x0, x1 = np.uint64(base[j] + ch0), np.uint64(base[j + 1] + ch0)
                        x2, x3 = np.uint64(base[j + 2] + ch0), np.uint64(base[j + 3] + ch0)
                        for c0 in range(cb, min(cb + c_block, cog), 3):
                            c1 = min(c0 + 1, cog - 1)
                            c2 = min(c0 + 2, cog - 1)
                            wb0 = np.uint64(g * w_g + c0 * w_co)
                            wb1 = np.uint64(g * w_g + c1 * w_co)
                            wb2 = np.uint64(g * w_g + c2 * w_co)
                            b0 = bias[g * cog + c0]
                            b1 = bias[g * cog + c1]
                            b2 = bias[g * cog + c2]
                            acc = (b0, b1, b2, b0, b1, b2, b0, b1, b2, b0, b1, b2)
                            k = 0
                            while k < n_runs:
                                if n_runs - k >= 3:
                                    acc = _dot4x3_taps3(
                                        flat, x0, x1, x2, x3, np.uint64(run_x[k]),
                                        np.uint64(run_x[k + 1]), np.uint64(run_x[k + 2]),
                                        weights, wb0, wb1, wb2, np.uint64(run_w[k]),
                                        np.uint64(run_w[k + 1]), np.uint64(run_w[k + 2]),
                                        r_span, acc)
                                    k += 3
                                else:
                                    x_k, w_k = np.uint64(run_x[k]), np.uint64(run_w[k])
                                    acc = _dot4x3(flat, x0 + x_k, x1 + x_k, x2 + x_k, x3 + x_k,
                                                  weights, wb0 + w_k, wb1 + w_k, wb2 + w_k,
                                                  r_span, acc)
                                    k += 1
                            _store4x3(d_flat, out, j, (g * cog + c0) * s_ch, s_ch,
                                      min(3, cog - c0), acc)
