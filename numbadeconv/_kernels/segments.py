"""A job's pixels in segments that read inside the same taps: the tiled and outer-product kernels.

A phase's tap ``k`` of output row ``m`` reads source row ``m*ssh + toffs[TH + k] - top`` (likewise
for columns), where ``top`` is where the source lies in the zero-padded frame that the tap offsets
assume (``meta[11]``, ``meta[12]``, its size ``meta[18]``, ``meta[19]``): near the source's edges,
some taps read only zeros. The rows of a job, and the columns, fall into runs that read inside the
same range of taps (:func:`_tap_ranges`); a segment is a run of rows x a run of columns, and its
pixels go in tiles of their own that run only its taps. When ``src`` is the padded frame
(``meta[20]`` 0), rows or columns are split only where that saves more work than the segments'
partial tiles cost (:func:`_segments_cost`); when it is the source itself (``meta[20]`` 1), always:
then no tile reads outside it, and no padded copy of the input is made.
"""

import numpy as np

from .._jit import kernel
from .correlate import C0, R0, TH, TW, Q, T, U, src_layout

#: What a segment of a job's pixels costs beyond its tiles' work, in elements of a pixel's
#: reduction (about as many cycles): a job splits its pixels into segments that skip the taps
#: reading zero padding only where that saves more (FCN's 289-pixel jobs: 10 % slower split
#: without this term).
SEGMENT_ELEMENTS = 1024


@kernel(internal=True)
def _tap_ranges(toffs, at, n_taps, first, count, step, start, size, ranges):
    """Split positions ``first`` to ``first + count`` by the taps that read inside the source.

    Tap ``k`` (offsets ``toffs[at:at + n_taps]``, ascending) of position ``i`` reads index
    ``i*step + toffs[at + k] - start`` of a source of ``size``: the taps that read inside are a
    range ``[lo, hi)``, which only moves down as ``i`` grows, so that positions with the same
    range are consecutive. ``ranges`` ``[3, >= count + 3]``: fills ``ranges[0, c]`` with the
    first position of the ``c``-th such run of positions (``ranges[0, n]`` one past the last),
    ``ranges[1, c]`` and ``ranges[2, c]`` with its ``lo`` and ``hi``, and run ``n + 1`` with
    all of them merged into one, reading the taps that any of them reads; returns ``n``.
    """
    n = 0
    lo_all, hi_all = n_taps, 0
    for i in range(first, first + count):
        lo = 0
        while lo < n_taps and i * step + toffs[at + lo] - start < 0:
            lo += 1
        hi = lo
        while hi < n_taps and i * step + toffs[at + hi] - start < size:
            hi += 1
        if n == 0 or lo != ranges[1, n - 1] or hi != ranges[2, n - 1]:
            ranges[0, n], ranges[1, n], ranges[2, n] = i, lo, hi
            n += 1
        if lo < hi:
            lo_all, hi_all = min(lo_all, lo), max(hi_all, hi)
    ranges[0, n] = first + count
    ranges[0, n + 1], ranges[0, n + 2] = first, first + count
    ranges[1, n + 1], ranges[2, n + 1] = lo_all, hi_all
    return n


@kernel(internal=True)
def slots(count, n_pix, n_small):
    """The pixel slots of a segment of ``count`` pixels: its tiles' pixels.

    Tiles of ``n_pix``, then those past them in small tiles of ``n_small`` where that takes fewer
    slots than one more tile of ``n_pix`` (``n_small == n_pix``: tiles of ``n_pix`` only).
    """
    whole = count // n_pix * n_pix
    small = -(-(count - whole) // n_small) * n_small
    return whole + (small if small < n_pix else n_pix)


@kernel(internal=True)
def _segments_cost(m_ranges, m_first, n_rc, q_ranges, q_first, n_cc, images, n_pix, n_small,
                   cig):
    """The cost of a job's pixels in segments: runs of rows x runs of columns (:func:`_tap_ranges`).

    The runs of rows ``m_first`` to ``m_first + n_rc`` in ``m_ranges``, likewise of columns.
    Each segment computes its :func:`slots`, each slot ``cig`` elements of every tap that the
    segment reads, and costs SEGMENT_ELEMENTS more.
    """
    cost = 0
    for rc in range(m_first, m_first + n_rc):
        for cc in range(q_first, q_first + n_cc):
            pixels = images * (m_ranges[0, rc + 1] - m_ranges[0, rc]) * (q_ranges[0, cc + 1]
                                                                          - q_ranges[0, cc])
            taps = max(0, m_ranges[2, rc] - m_ranges[1, rc]) * max(0, q_ranges[2, cc]
                                                                   - q_ranges[1, cc])
            cost += slots(pixels, n_pix, n_small) * taps * cig + SEGMENT_ELEMENTS
    return cost


@kernel(internal=True)
def split(src, meta, phases, toffs, p, n_lo, n_hi, m_lo, m_hi, s_img, s_row, s_col, n_pix,
          n_small, cig, m_ranges, q_ranges):
    """The pixels of images ``n_lo`` to ``n_hi``, rows ``m_lo`` to ``m_hi`` of phase ``p``.

    ``src`` ``[N, H, W*C]`` (the padded frame, or the source itself: ``meta[20]``), or an NCHW
    source (:func:`.correlate.src_layout`); ``s_img``, ``s_row`` and ``s_col`` the result's
    element strides (:func:`.correlate.out_layout`).
    Scratch ``m_ranges`` ``[3, >= m_hi - m_lo + 3]`` and ``q_ranges`` ``[3, >= Q + 3]`` int64
    receive the runs of rows and columns (:func:`_tap_ranges`). Returns ``(m_first, n_rc,
    q_first, n_cc, seg_slots, base, out)``: segment ``s`` (of ``n_rc * n_cc``) is the rows of run
    ``m_first + s // n_cc`` of ``m_ranges`` (row taps ``m_ranges[1]`` to ``m_ranges[2]`` of it)
    x the columns of run ``q_first + s % n_cc`` of ``q_ranges``; its pixels are the slots
    ``seg_slots[s]`` to ``seg_slots[s + 1]`` of ``base`` (the pixel's offset in
    ``src.reshape(-1)``, to which a tap adds its own: negative where the pixel's first taps lie
    outside the source) and ``out`` (its offset in the flat result), in tiles of ``n_pix`` and
    of ``n_small`` (:func:`slots`). A segment's pixels go image by image, row by row; its last
    tile repeats its last pixel.
    """
    ssh, ssw, rs, cs = meta[1], meta[2], meta[3], meta[4]
    x_img, x_row, x_col, _ = src_layout(src, meta)
    top, left, height, width = meta[11], meta[12], meta[18], meta[19]
    unpadded = meta[20] != 0
    # where the frame's row and column 0 lie in src: (0, 0) in the padded frame itself
    origin_row, origin_col = (top, left) if unpadded else (0, 0)
    nq, n_rows = phases[p, Q], m_hi - m_lo
    n_rc = _tap_ranges(toffs, phases[p, TH], phases[p, T], m_lo, n_rows, ssh, top, height,
                       m_ranges)
    # (np.int64: with a literal 0, Numba would compile _tap_ranges a second time for it)
    n_cc = _tap_ranges(toffs, phases[p, TW], phases[p, U], np.int64(0), nq, ssw, left, width,
                       q_ranges)
    # rows and columns split into those runs where that saves more work than the segments'
    # partial tiles cost, else kept as one run (reading the taps that any of them reads); always
    # split when src is unpadded: the merged runs would read outside it
    least, best = -1, 0
    for option in range(1 if unpadded else 4):  # split both, rows only, columns only, neither
        m_first, n_r = (0, n_rc) if option < 2 else (n_rc + 1, 1)
        q_first, n_c = (0, n_cc) if option % 2 == 0 else (n_cc + 1, 1)
        cost = _segments_cost(m_ranges, m_first, n_r, q_ranges, q_first, n_c, n_hi - n_lo,
                              n_pix, n_small, cig)
        if least < 0 or cost < least:
            least, best = cost, option
    m_first, n_rc = (0, n_rc) if best < 2 else (n_rc + 1, 1)
    q_first, n_cc = (0, n_cc) if best % 2 == 0 else (n_cc + 1, 1)
    n_seg = n_rc * n_cc
    seg_slots = np.empty(n_seg + 1, np.int64)
    n_slots = -(-(n_hi - n_lo) * n_rows * nq // n_pix) * n_pix + n_seg * (n_pix - 1)
    base = np.empty(n_slots, np.int64)
    out = np.empty(n_slots, np.int64)
    i = 0
    for s in range(n_seg):
        rc, cc = m_first + s // n_cc, q_first + s % n_cc
        seg_slots[s] = i
        for n in range(n_lo, n_hi):
            for m in range(m_ranges[0, rc], m_ranges[0, rc + 1]):
                x_at = n * x_img + (m * ssh - origin_row) * x_row - origin_col * x_col
                d_row = n * s_img + (phases[p, R0] + m * rs) * s_row + phases[p, C0] * s_col
                for q in range(q_ranges[0, cc], q_ranges[0, cc + 1]):
                    base[np.uint64(i)] = x_at + q * ssw * x_col  # unsigned: no wraparound
                    out[np.uint64(i)] = d_row + q * cs * s_col
                    i += 1
        end = seg_slots[s] + slots(i - seg_slots[s], n_pix, n_small)
        for j in range(i, end):
            base[j] = base[i - 1]
            out[j] = out[i - 1]
        i = end
    seg_slots[n_seg] = i
    return m_first, n_rc, q_first, n_cc, seg_slots, base, out
