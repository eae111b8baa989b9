"""Depthwise correlation (one input channel per group) over whole output rows, unpadded source.

The same jobs and phase table as :mod:`numbadeconv._kernels.correlate` (read its docstring for
``phases``, ``toffs`` and the job order), with these differences:

- ``src`` ``[N, H, W*C]`` is *not* padded: ``meta[11]`` and ``meta[12]`` are the (top, left)
  padding that the tap offsets assume, and a tap whose source row or column falls outside
  ``src`` is skipped (it would read a zero). No padded copy of the input is made.
- ``groups == C`` and output channel ``c*mult + j`` reads input channel ``c`` only. The weights
  of a phase (from its WS column on) are tiles ``[mult, T, U, L]`` with
  ``tile[i] = w(channel i % C, j, t, u)``, ``L = meta[13]`` a multiple of C: along an output
  row laid out ``[Q, C]``, the weight of element ``i`` is ``tile[i % L]``.
- An output row (for each ``j``) is one contiguous vector of ``Q*C`` elements, accumulated in
  ``dst`` itself when ``mult == 1`` and the output column stride is 1 (a convolution), else in a
  row buffer that is then stored. Over the pixels where every column tap reads inside ``src``,
  the taps are summed in vectorised passes over ``L`` elements, up to 9 taps per pass; edge
  pixels take their taps one by one. A 3x3 window on consecutive source rows (stride 1) computes
  four output rows per pass from six source rows, so that each source and weight element
  loaded serves several outputs.
- A source column stride ``ssw > 1`` makes a row's pixels non-contiguous: the source rows that a
  row needs are first split into column phases (pixel ``p`` to phase ``p % ssw``, position
  ``p // ssw``; only the phases that its taps read), so that every tap again reads a contiguous
  run.

The loops index flat arrays with unsigned offsets: Numba then emits no negative-index
wraparound, and LLVM vectorises them (with signed offsets it does not; with array views it
does, but each view costs reference counting). Every offset is in bounds by construction.
"""

import numpy as np
from numba import prange

from .._jit import kernel
from .correlate import C0, R0, _inside, _job


@kernel(internal=True)
def _fill(a, ao, b, e):
    """``a[ao:ao+e] = b[:e]``."""
    for i in range(np.uint64(e)):
        a[ao + i] = b[i]


@kernel(internal=True)
def _add9(a, ao, x, x0, x1, x2, x3, x4, x5, x6, x7, x8, w, w0, w1, w2, w3, w4, w5, w6, w7, w8,
          e):
    """``a[ao + i] += sum_k x[x_k + i] * w[w_k + i]`` for ``i < e`` (9 taps)."""
    for i in range(np.uint64(e)):
        a[ao + i] += (x[x0 + i] * w[w0 + i] + x[x1 + i] * w[w1 + i] + x[x2 + i] * w[w2 + i]
                      + x[x3 + i] * w[w3 + i] + x[x4 + i] * w[w4 + i] + x[x5 + i] * w[w5 + i]
                      + x[x6 + i] * w[w6 + i] + x[x7 + i] * w[w7 + i] + x[x8 + i] * w[w8 + i])


@kernel(internal=True)
def _add3(a, ao, x, x0, x1, x2, w, w0, w1, w2, e):
    """``a[ao + i] += sum_k x[x_k + i] * w[w_k + i]`` for ``i < e`` (3 taps)."""
    for i in range(np.uint64(e)):
        a[ao + i] += x[x0 + i] * w[w0 + i] + x[x1 + i] * w[w1 + i] + x[x2 + i] * w[w2 + i]


@kernel(internal=True)
def _add1(a, ao, x, x0, w, w0, e):
    """``a[ao + i] += x[x0 + i] * w[w0 + i]`` for ``i < e``."""
    for i in range(np.uint64(e)):
        a[ao + i] += x[x0 + i] * w[w0 + i]


@kernel(internal=True)
def _four_rows_3x3(a, a0, a1, a2, a3, b, x, r0, r1, r2, r3, r4, r5, c0, c1, c2, w, w0, w1, w2,
                   w3, w4, w5, w6, w7, w8, e):
    """Four rows of a 3x3 correlation from six consecutive source rows.

    For ``i < e``, row ``h`` (at ``a[a_h + i]``) is ``b[i]`` plus the taps ``(t, u)`` reading
    ``x[r_{h+t} + c_u + i]`` with weights ``w[w_{3t+u} + i]``.
    """
    for i in range(np.uint64(e)):
        v0 = w[w0 + i]
        v1 = w[w1 + i]
        v2 = w[w2 + i]
        v3 = w[w3 + i]
        v4 = w[w4 + i]
        v5 = w[w5 + i]
        v6 = w[w6 + i]
        v7 = w[w7 + i]
        v8 = w[w8 + i]
        p00, p01, p02 = x[r0 + c0 + i], x[r0 + c1 + i], x[r0 + c2 + i]
        p10, p11, p12 = x[r1 + c0 + i], x[r1 + c1 + i], x[r1 + c2 + i]
        p20, p21, p22 = x[r2 + c0 + i], x[r2 + c1 + i], x[r2 + c2 + i]
        p30, p31, p32 = x[r3 + c0 + i], x[r3 + c1 + i], x[r3 + c2 + i]
        p40, p41, p42 = x[r4 + c0 + i], x[r4 + c1 + i], x[r4 + c2 + i]
        p50, p51, p52 = x[r5 + c0 + i], x[r5 + c1 + i], x[r5 + c2 + i]
        bias = b[i]
        a[a0 + i] = bias + (p00 * v0 + p01 * v1 + p02 * v2 + p10 * v3 + p11 * v4 + p12 * v5
                            + p20 * v6 + p21 * v7 + p22 * v8)
        a[a1 + i] = bias + (p10 * v0 + p11 * v1 + p12 * v2 + p20 * v3 + p21 * v4 + p22 * v5
                            + p30 * v6 + p31 * v7 + p32 * v8)
        a[a2 + i] = bias + (p20 * v0 + p21 * v1 + p22 * v2 + p30 * v3 + p31 * v4 + p32 * v5
                            + p40 * v6 + p41 * v7 + p42 * v8)
        a[a3 + i] = bias + (p30 * v0 + p31 * v1 + p32 * v2 + p40 * v3 + p41 * v4 + p42 * v5
                            + p50 * v6 + p51 * v7 + p52 * v8)


@kernel(internal=True)
def _two_rows_3x3(a, a0, a1, b, x, r00, r01, r02, r10, r11, r12, c0, c1, c2, w, w0, w1, w2, w3,
                  w4, w5, w6, w7, w8, e):
    """Two rows of a 3x3 correlation from any source rows.

    For ``i < e``, row ``h`` (at ``a[a_h + i]``) is ``b[i]`` plus the taps ``(t, u)`` reading
    ``x[r_{ht} + c_u + i]`` with weights ``w[w_{3t+u} + i]``.
    """
    for i in range(np.uint64(e)):
        v0 = w[w0 + i]
        v1 = w[w1 + i]
        v2 = w[w2 + i]
        v3 = w[w3 + i]
        v4 = w[w4 + i]
        v5 = w[w5 + i]
        v6 = w[w6 + i]
        v7 = w[w7 + i]
        v8 = w[w8 + i]
        a[a0 + i] = b[i] + (x[r00 + c0 + i] * v0 + x[r00 + c1 + i] * v1 + x[r00 + c2 + i] * v2 +
                            x[r01 + c0 + i] * v3 + x[r01 + c1 + i] * v4 + x[r01 + c2 + i] * v5 +
                            x[r02 + c0 + i] * v6 + x[r02 + c1 + i] * v7 + x[r02 + c2 + i] * v8)
        a[a1 + i] = b[i] + (x[r10 + c0 + i] * v0 + x[r10 + c1 + i] * v1 + x[r10 + c2 + i] * v2 +
                            x[r11 + c0 + i] * v3 + x[r11 + c1 + i] * v4 + x[r11 + c2 + i] * v5 +
                            x[r12 + c0 + i] * v6 + x[r12 + c1 + i] * v7 + x[r12 + c2 + i] * v8)


@kernel(internal=True)
def _interior(a, ao, b, x, xo, w, wo, wj, n_taps, first, end, xs, ws):
    """``a[ao + i] = b[i % L] + sum_k x[xo[k] + i] * w[wo[k] + wj + i % L]``, ``first <= i < end``.

    ``L = len(b)``; ``first`` is a multiple of the channel count (the tiles' period), and every
    tap is in bounds over the range. The taps go 9, then 3, then 1 at a time; the slots of a
    group past the last tap read the last tap's source and multiply it by ``w[0:L]``, zeros.
    ``xs`` and ``ws`` (uint64, 9 each) hold a group's offsets.
    """
    tile = b.shape[0]
    for s in range(first, end, tile):
        e = min(tile, end - s)
        out = np.uint64(ao + s)
        _fill(a, out, b, e)
        k = 0
        while k < n_taps:
            size = 9 if n_taps - k >= 7 else (3 if n_taps - k >= 2 else 1)
            for slot in range(size):
                xs[slot] = xo[min(k + slot, n_taps - 1)] + s
                ws[slot] = wo[k + slot] + wj if k + slot < n_taps else 0
            if size == 9:
                _add9(a, out, x, xs[0], xs[1], xs[2], xs[3], xs[4], xs[5], xs[6], xs[7], xs[8],
                      w, ws[0], ws[1], ws[2], ws[3], ws[4], ws[5], ws[6], ws[7], ws[8], e)
            elif size == 3:
                _add3(a, out, x, xs[0], xs[1], xs[2], w, ws[0], ws[1], ws[2], e)
            else:
                _add1(a, out, x, xs[0], w, ws[0], e)
            k += size


@kernel(internal=True)
def _edge(a, ao, n_ch, b, x, xo, w, wo, wj, n_taps, q_lo, q_hi, first, end):
    """Pixels ``first`` to ``end`` of the row at ``a[ao:]`` (``[Q, n_ch]``), one tap at a time.

    As :func:`_interior`; tap ``k`` (column tap ``k % len(q_lo)``) reads inside the source for
    pixels ``q_lo`` to ``q_hi`` only.
    """
    nu = q_lo.shape[0]
    for q in range(first, end):
        out = np.uint64(ao + q * n_ch)
        _fill(a, out, b, n_ch)
        for k in range(n_taps):
            if q_lo[k % nu] <= q < q_hi[k % nu]:
                _add1(a, out, x, np.uint64(xo[k] + q * n_ch), w, np.uint64(wo[k] + wj), n_ch)


@kernel(internal=True)
def _store(out_row, acc, ao, row_len, cs, n_ch, mult):
    """``out_row[q*cs, c*mult + j] = acc[ao + j*row_len + q*n_ch + c]``."""
    for q in range(row_len // n_ch):
        pixel = out_row[q * cs]
        for c in range(n_ch):
            for j in range(mult):
                pixel[c * mult + j] = acc[ao + j * row_len + q * n_ch + c]


@kernel(internal=True)
def _rows_3x3(a, a_off, n_rows, b, x, xo, c_off, w, wo, wj, row_step, first, end):
    """``n_rows`` output rows of a 3x3 window, every tap in bounds over ``first <= i < end``.

    Row ``h``'s tap ``(t, u)`` reads ``x[xo[h, 3t+u] + i]``, a row offset plus ``c_off[u]``.
    Four rows: their source rows are six consecutive rows ``row_step`` apart; two rows: any.
    (A block of two consecutive-row outputs takes the two-row form too.)
    """
    tile = b.shape[0]
    c_min = min(c_off[0], c_off[1], c_off[2])
    d0 = np.uint64(c_off[0] - c_min)
    d1 = np.uint64(c_off[1] - c_min)
    d2 = np.uint64(c_off[2] - c_min)
    w0, w1, w2 = np.uint64(wo[0] + wj), np.uint64(wo[1] + wj), np.uint64(wo[2] + wj)
    w3, w4, w5 = np.uint64(wo[3] + wj), np.uint64(wo[4] + wj), np.uint64(wo[5] + wj)
    w6, w7, w8 = np.uint64(wo[6] + wj), np.uint64(wo[7] + wj), np.uint64(wo[8] + wj)
    base = c_min - c_off[0]  # from a tap (t, 0) offset to its row's offset plus c_min
    for s in range(first, end, tile):
        e = min(tile, end - s)
        if n_rows == 4:
            r0 = xo[0, 0] + base + s
            _four_rows_3x3(
                a, np.uint64(a_off[0] + s), np.uint64(a_off[1] + s), np.uint64(a_off[2] + s),
                np.uint64(a_off[3] + s), b, x, np.uint64(r0), np.uint64(r0 + row_step),
                np.uint64(r0 + 2 * row_step), np.uint64(r0 + 3 * row_step),
                np.uint64(r0 + 4 * row_step), np.uint64(r0 + 5 * row_step), d0, d1, d2, w,
                w0, w1, w2, w3, w4, w5, w6, w7, w8, e)
        else:
            _two_rows_3x3(
                a, np.uint64(a_off[0] + s), np.uint64(a_off[1] + s), b, x,
                np.uint64(xo[0, 0] + base + s), np.uint64(xo[0, 3] + base + s),
                np.uint64(xo[0, 6] + base + s), np.uint64(xo[1, 0] + base + s),
                np.uint64(xo[1, 3] + base + s), np.uint64(xo[1, 6] + base + s), d0, d1, d2, w,
                w0, w1, w2, w3, w4, w5, w6, w7, w8, e)


@kernel(internal=True)
def _split_row(split, so, split_len, srow, ssw, n_ch, phases):
    """Column phase ``phases[k]`` of ``srow`` (``[W*n_ch]``) to ``split[so + k*split_len:]``.

    Pixel ``i*ssw + phases[k]`` goes to position ``i``.
    """
    width = srow.shape[0] // n_ch
    for k in range(phases.shape[0]):
        for i in range((width - phases[k] + ssw - 1) // ssw):
            o = np.uint64((i * ssw + phases[k]) * n_ch)
            d = np.uint64(so + k * split_len + i * n_ch)
            for c in range(np.uint64(n_ch)):
                split[d + c] = srow[o + c]


@kernel()
def depthwise_serial(src, weights, dst, phases, toffs, meta, bias, first, last):
    n_ch, ssh, ssw, rs, cs = meta[0], meta[1], meta[2], meta[3], meta[4]
    top, left, tile = meta[11], meta[12], meta[13]
    height = src.shape[1]
    width = src.shape[2] // n_ch
    d_rows, d_cols, n_out = dst.shape[1], dst.shape[2], dst.shape[3]
    mult = n_out // n_ch
    direct = mult == 1 and cs == 1  # accumulate in dst itself
    split_len = -(-width // ssw) * n_ch  # elements per column phase of a split source row
    w = weights
    b = bias.reshape(mult, tile)
    d_flat = dst.reshape(-1)
    for job in range(first, last):
        n, p, m_lo, m_hi, nq, nt, nu, th, tw, ws = _job(phases, meta, job)
        row_len = nq * n_ch
        acc = np.empty(0 if direct else 4 * mult * row_len, dst.dtype)
        a = d_flat if direct else acc
        # column taps: the split phase and the pixel shift they read, their valid pixels [lo, hi)
        c_phase = np.empty(nu, np.int64)
        c_shift = np.empty(nu, np.int64)
        q_lo = np.empty(nu, np.int64)
        q_hi = np.empty(nu, np.int64)
        qa, qb = 0, nq  # pixels where every column tap is valid
        for u in range(nu):
            off = toffs[tw + u] - left  # source column of pixel q: q*ssw + off
            c_phase[u] = off % ssw
            c_shift[u] = off // ssw
            q_lo[u], q_hi[u] = _inside(off, ssw, width, nq)
            qa = max(qa, q_lo[u])
            qb = min(qb, q_hi[u])
        qb = max(qa, qb)
        # split source rows: only the column phases that some tap reads, ``phase_of[u]`` the
        # index of tap u's among them; row r of the rows of two output rows is in slot
        # r % n_slots when they span few rows (so that rows shared with the next output row are
        # kept), else tap row t of output row h in slot h*nt + t
        used = np.empty(nu, np.int64)
        phase_of = np.empty(nu, np.int64)
        n_used = 0
        for u in range(nu):
            phase_of[u] = -1
            for k in range(n_used):
                if used[k] == c_phase[u]:
                    phase_of[u] = k
            if phase_of[u] < 0:
                used[n_used] = c_phase[u]
                phase_of[u] = n_used
                n_used += 1
        row_span = toffs[th + nt - 1] - toffs[th] + 1 + ssh if nt > 0 else 0
        by_row = row_span <= 2 * nt
        n_slots = 0 if ssw == 1 else (row_span if by_row else 2 * nt)
        slot_len = n_used * split_len
        split = np.empty(n_slots * slot_len, dst.dtype)
        held = np.full(n_slots, -1, np.int64)  # the source row each slot holds
        x = src[n].reshape(-1) if ssw == 1 else split
        # column taps' offsets within a (split) row
        c_off = np.empty(nu, np.int64)
        for u in range(nu):
            c_off[u] = c_shift[u] * n_ch + (phase_of[u] * split_len if ssw > 1 else 0)
        # several rows at a time for a 3x3 window: four when their source rows are consecutive
        # (stride 1, no dilation), else two
        three = nt == 3 and nu == 3
        block = 4 if (three and ssh == 1 and ssw == 1 and toffs[th + 1] == toffs[th] + 1
                      and toffs[th + 2] == toffs[th] + 2) else 2
        xo = np.empty((4, nt * nu), np.int64)
        wo = np.empty(nt * nu, np.int64)
        a_off = np.empty(4, np.int64)
        slot_x = np.empty(9, np.uint64)  # scratch for _interior
        slot_w = np.empty(9, np.uint64)
        m = m_lo
        while m < m_hi:
            # as many rows as the block allows whose taps all read inside src (else one)
            n_rows = 1
            if three and m * ssh + toffs[th] - top >= 0:
                for rows in (block, 2):
                    if (m + rows <= m_hi
                            and (m + rows - 1) * ssh + toffs[th + nt - 1] - top < height):
                        n_rows = rows
                        break
            n_taps = 0
            for h in range(n_rows):
                n_taps = 0
                for t in range(nt):
                    r = (m + h) * ssh + toffs[th + t] - top
                    if r < 0 or r >= height:
                        continue
                    slot = 0 if ssw == 1 else (r % n_slots if by_row else h * nt + t)
                    if ssw > 1 and held[slot] != r:
                        _split_row(split, slot * slot_len, split_len, src[n, r], ssw, n_ch,
                                   used[:n_used])
                        held[slot] = r
                    row = r * width * n_ch if ssw == 1 else slot * slot_len
                    for u in range(nu):
                        xo[h, n_taps] = row + c_off[u]
                        wo[n_taps] = ws + (t * nu + u) * tile
                        n_taps += 1
            for j in range(mult):
                for h in range(n_rows):
                    a_off[h] = (((n * d_rows + phases[p, R0] + (m + h) * rs) * d_cols
                                 + phases[p, C0]) * n_out if direct
                                else (h * mult + j) * row_len)
                w_j = j * nt * nu * tile
                if n_rows > 1:
                    _rows_3x3(a, a_off, n_rows, b[j], x, xo, c_off, w, wo, w_j, width * n_ch,
                              qa * n_ch, qb * n_ch)
                else:
                    _interior(a, a_off[0], b[j], x, xo[0], w, wo, w_j, n_taps, qa * n_ch,
                              qb * n_ch, slot_x, slot_w)
                for h in range(n_rows):
                    _edge(a, a_off[h], n_ch, b[j], x, xo[h], w, wo, w_j, n_taps, q_lo, q_hi, 0,
                          qa)
                    _edge(a, a_off[h], n_ch, b[j], x, xo[h], w, wo, w_j, n_taps, q_lo, q_hi, qb,
                          nq)
            if not direct:
                for h in range(n_rows):
                    _store(dst[n, phases[p, R0] + (m + h) * rs, phases[p, C0]:], acc,
                           h * mult * row_len, row_len, cs, n_ch, mult)
            m += n_rows


@kernel(parallel=True)
def depthwise_parallel(src, weights, dst, phases, toffs, meta, bias):
    for j in prange(dst.shape[0] * meta[6] * phases.shape[0]):
        depthwise_serial(src, weights, dst, phases, toffs, meta, bias, j, j + 1)
