"""The copies beside the kernels: padded inputs, packed filters, layout conversions.

All run as jobs (``X_serial`` over jobs ``first`` to ``last``), spread over threads by
:mod:`.parallel` when large: a serial copy would bound the speed-up of the kernel that follows it.

``pad``: the zero-padded copy of an NHWC input that the outer-product kernel (where a call does
much work per input element) and the filter-gradient kernels read. ``out[n, i, j, c] = a[n, i -
top, j - left, c]`` where that is inside ``a``, else 0, for ``out`` ``[N, height, width*C]``
(last two axes merged) and ``a`` ``[N, H, W, C]``; ``top`` and ``left`` are non-negative, and
``out`` may also crop ``a``. Job ``j`` writes row ``j`` of the ``N*height`` rows. (Its
arguments have the types of ``pad_channels_first``'s: one parallel launcher compiled for both.)

``pad_channels_first``: the same copy from an NCHW input ``a`` ``[N, C, H, W]`` (``left`` in
pixels): the layout conversion of ``data_format="NCHW"`` and the padding in one pass. (NCHW
results need no conversion: the kernels write them so.)

``pad_planes``: the same copy into planes, ``out`` ``[N*C, height, width]`` from an NHWC ``a``:
the planar kernel's input for an NHWC call (an RGB image's per-channel filters). Job ``j``
writes row ``j % height`` of image ``j // height``'s ``C`` planes.

``pack``: the outer-product kernel's filters ``out[G, blocks, taps, cig / P, B, P]`` (see
:mod:`.outer`), zero past the ``cog`` channels of a group: the weight of tap ``k``, group ``g``,
input channel ``ci``, output channel ``co`` is ``w[bases[k] + ci*s_ci + g*s_g + co*s_co]``, with
``meta = [cig, cog, groups, blocks, B, s_ci, s_g, s_co, P]``: ``P`` (1 or 2, dividing ``cig``)
consecutive input channels of an output channel lie together. Job ``j`` writes one (group,
block, tap), or, from PyTorch's transpose filters (an input and output channel's taps together),
a share of the input channels of every tap of its (group, block).

``transpose``: a matrix transpose in SIMD register tiles, for the layout conversions (the
input's above, the depthwise and outer-product kernels' NCHW results) and the packing of
transposes' filters. The layout conversions of 2 to 4 channels (``FEW_CHANNELS``), too few for
its tiles, go a vector of pixels at a time in shuffles instead (:func:`.simd.channel_planes`).
"""

import numpy as np

from .._jit import kernel
from . import simd
from .simd import CHECK_BOUNDS


@kernel()
def pad_serial(a, out, top, left, first, last):
    n_ch_w = a.shape[2] * a.shape[3]  # W*C
    height = a.shape[1]
    row_len = out.shape[2]
    left = left * a.shape[3]  # in elements (pixels x channels)
    rows = a.reshape(a.shape[0], height, n_ch_w)
    for job in range(first, last):
        n = job // out.shape[1]
        i = job % out.shape[1]
        dst = out[n, i]
        r = i - top
        if r < 0 or r >= height:
            for k in range(row_len):
                dst[k] = 0
            continue
        src = rows[n, r]
        lo = min(row_len, left)
        hi = min(row_len, lo + n_ch_w)
        for k in range(lo):
            dst[k] = 0
        run = dst[lo:hi]
        for k in range(hi - lo):
            run[k] = src[k]
        for k in range(hi, row_len):
            dst[k] = 0


@kernel(internal=True)
def _tile(src, s0, s_step, dst, d0, d_step):
    """:func:`simd.transpose_tile`, each tile checked first under ``NUMBA_BOUNDSCHECK=1``."""
    if CHECK_BOUNDS:
        span = simd.VECTOR_BYTES // src.itemsize - 1
        if not (0 <= s0 and s0 + span * (s_step + 1) < src.shape[0] and 0 <= d0
                and d0 + span * (d_step + 1) < dst.shape[0]):
            raise IndexError("layout conversion: a tile would read or write out of bounds")
    simd.transpose_tile(src, s0, s_step, dst, d0, d_step)


@kernel(internal=True)
def transpose(src, s0, s_step, dst, d0, d_step, rows, cols):
    """``dst[d0 + j*d_step + i] = src[s0 + i*s_step + j]`` for ``i < rows``, ``j < cols``.

    In register tiles of lanes x lanes elements (:func:`simd.transpose_tile`), the last tile of
    rows (columns) ending at the last row (column), overlapping the one before it (``src`` and
    ``dst`` are different arrays: those elements are written twice, the same); element by element
    where the rows or the columns are fewer than a tile. (With the elements past the last whole
    tiles one by one, strided in ``dst``, a 3x3 64 -> 64 layer's NCHW result of 8 images of
    64x64 cost 0.9-1.1 ms more than its NHWC one, 11 ms; so, 0.5-0.6.)
    """
    lanes = simd.VECTOR_BYTES // src.itemsize
    if rows >= lanes and cols >= lanes:
        for i0 in range(0, rows, lanes):
            i = min(i0, rows - lanes)
            for j0 in range(0, cols, lanes):
                j = min(j0, cols - lanes)
                _tile(src, s0 + i * s_step + j, s_step, dst, d0 + j * d_step + i, d_step)
        return
    for i in range(rows):
        for j in range(cols):
            dst[d0 + j * d_step + i] = src[s0 + i * s_step + j]


#: Fewer channels than this (and more than one) go between pixels and planes a vector of pixels
#: at a time (:func:`.simd.channel_planes`), not in :func:`transpose`'s elements one by one (it
#: has tiles for vectors of channels): 3 channels of a 512x512 image 6x faster.
FEW_CHANNELS = 5

_planes2, _planes3, _planes4 = (simd.channel_planes(k, True) for k in (2, 3, 4))
_pixels2, _pixels3, _pixels4 = (simd.channel_planes(k, False) for k in (2, 3, 4))


@kernel(internal=True)
def _check_channel_tiles(src, src_end, dst, dst_end):
    """Raise IndexError unless the channel tiles' last reads and writes are in bounds.

    ``src_end`` and ``dst_end``: one past the last element that they read and write.
    """
    if not (src_end <= src.shape[0] and dst_end <= dst.shape[0]):
        raise IndexError("layout conversion: a tile would read or write out of bounds")


@kernel()
def pad_channels_first_serial(a, out, top, left, first, last):
    n_ch, height, width = a.shape[1], a.shape[2], a.shape[3]
    lanes = simd.VECTOR_BYTES // a.itemsize
    rows, row_len = out.shape[1], out.shape[2]
    a_flat, out_flat = a.reshape(-1), out.reshape(-1)
    for job in range(first, last):
        n = job // rows
        i = job % rows
        dst = out[n, i]
        r = i - top
        lo = min(row_len, left * n_ch)
        hi = min(row_len, lo + width * n_ch)
        if r < 0 or r >= height:
            lo = hi = row_len
        for k in range(lo):
            dst[k] = 0
        for k in range(hi, row_len):
            dst[k] = 0
        # channel c's row r (a[n, c, r, :]) to every n_ch-th element of the row from lo on: few
        # channels a vector of pixels at a time (simd.channel_planes), the rest in transposes
        at, to = (n * n_ch * height + r) * width, job * row_len + lo
        count = (hi - lo) // n_ch
        done = count - count % lanes if 1 < n_ch < FEW_CHANNELS else 0
        if CHECK_BOUNDS and done > 0:
            _check_channel_tiles(a_flat, at + (n_ch - 1) * height * width + done, out_flat,
                                 to + done * n_ch)
        for k in range(0, done, lanes):
            if n_ch == 2:
                _pixels2(a_flat, at + k, out_flat, to + k * 2, height * width)
            elif n_ch == 3:
                _pixels3(a_flat, at + k, out_flat, to + k * 3, height * width)
            else:
                _pixels4(a_flat, at + k, out_flat, to + k * 4, height * width)
        transpose(a_flat, at + done, height * width, out_flat, to + done * n_ch, n_ch, n_ch,
                  count - done)


@kernel()
def pad_planes_serial(a, out, top, left, first, last):
    height, width, n_ch = a.shape[1], a.shape[2], a.shape[3]
    lanes = simd.VECTOR_BYTES // a.itemsize
    rows, row_len = out.shape[1], out.shape[2]
    plane = rows * row_len
    a_flat, out_flat = a.reshape(-1), out.reshape(-1)
    for job in range(first, last):
        n = job // rows
        i = job % rows
        r = i - top
        lo = min(row_len, left)
        hi = min(row_len, lo + width)
        if r < 0 or r >= height:
            lo = hi = row_len
        at = n * n_ch * plane + i * row_len  # row i of the image's first plane
        for c in range(n_ch):
            for k in range(lo):
                out_flat[at + c * plane + k] = 0
            for k in range(hi, row_len):
                out_flat[at + c * plane + k] = 0
        if lo < hi:  # the row's pixels [W, C] to row i of each of the C planes from lo on (as
            # pad_channels_first_serial's, reversed)
            row, to = (n * height + r) * width * n_ch, at + lo
            done = (hi - lo) - (hi - lo) % lanes if 1 < n_ch < FEW_CHANNELS else 0
            if CHECK_BOUNDS and done > 0:
                _check_channel_tiles(a_flat, row + done * n_ch, out_flat,
                                     to + (n_ch - 1) * plane + done)
            for k in range(0, done, lanes):
                if n_ch == 2:
                    _planes2(a_flat, row + k * 2, out_flat, to + k, plane)
                elif n_ch == 3:
                    _planes3(a_flat, row + k * 3, out_flat, to + k, plane)
                else:
                    _planes4(a_flat, row + k * 4, out_flat, to + k, plane)
            transpose(a_flat, row + done * n_ch, n_ch, out_flat, to + done, plane, hi - lo - done,
                      n_ch)


@kernel(internal=True)
def _spread(w, s0, out, d0, step, n_c, width):
    """``out[d0 + j*step] = w[s0 + j]`` for ``j < n_c``, then zeros up to ``j < width``.

    Unsigned offsets, so that LLVM vectorises the copy (see :mod:`.correlate`'s ``_dot4x3``);
    it versions the loop for ``step == 1`` itself (as fast as a loop of its own for that step).
    """
    s0, d0, stride = np.uint64(s0), np.uint64(d0), np.uint64(step)
    for j in range(np.uint64(n_c)):
        out[d0 + j * stride] = w[s0 + j]
    for j in range(np.uint64(n_c), np.uint64(width)):
        out[d0 + j * stride] = 0


@kernel(internal=True)
def _gather(w, s0, s_step, out, d0, d_step, n_c, width):
    """``out[d0 + j*d_step] = w[s0 + j*s_step]``: :func:`_spread` from a strided source.

    A helper of its own: a source step in :func:`_spread` would make its unit-step loop
    (conv2d's filters) 1.5x slower.
    """
    s0, d0 = np.uint64(s0), np.uint64(d0)
    s_step, d_step = np.uint64(s_step), np.uint64(d_step)
    for j in range(np.uint64(n_c)):
        out[d0 + j * d_step] = w[s0 + j * s_step]
    for j in range(np.uint64(n_c), np.uint64(width)):
        out[d0 + j * d_step] = 0


@kernel(internal=True)
def _rows_to_packs(buf, bases, out, at, tap_size, width, pair):
    """Row ``bases[k]`` of ``buf`` (``[taps, width]``) to ``out[at + k*tap_size + c*pair]``.

    For every tap ``k`` and ``c < width``; ``pair`` is 1 or 2 (a loop for each, whose step LLVM
    knows: it vectorises both without versioning them for the step).
    """
    for k in range(bases.shape[0]):
        src = np.uint64(bases[k] * width)
        dst = np.uint64(at + k * tap_size)
        if pair == 1:
            for c in range(np.uint64(width)):
                out[dst + c] = buf[src + c]
        else:
            for c in range(np.uint64(width)):
                out[dst + 2 * c] = buf[src + c]


@kernel()
def pack_serial(w, bases, meta, out, first, last):
    cig, cog, blocks, width, s_ci, s_g, s_co, pair = (meta[0], meta[1], meta[3], meta[4],
                                                       meta[5], meta[6], meta[7], meta[8])
    n_taps = bases.shape[0]
    # PyTorch's transpose filters, an (input, output channel)'s s_co = fh*fw taps together, at
    # least a vector of them: job (g, b, k) packs a k-th of the input channels of every tap
    by_channel = s_co < s_ci and s_co * w.itemsize >= simd.VECTOR_BYTES
    chunk = -(-cig // (n_taps * pair)) * pair
    buf = np.empty(s_co * width if by_channel else 0, w.dtype)
    for job in range(first, last):
        k = job % n_taps
        b = job // n_taps % blocks
        g = job // (n_taps * blocks)
        d0 = job * cig * width
        o = bases[k] + g * s_g + b * width * s_co
        n_c = max(0, min(width, cog - b * width))  # real channels; zeros after them
        if by_channel and n_c < width:
            buf[:] = 0  # the channels past n_c (the transposes write the others)
        if by_channel or (pair == 1 and s_ci == 1):
            # Register-tile transposes (one call: each call site is inlined, and compiled, on
            # its own): the tap's [n_c, cig] weights straight into its pack (a transpose's filters,
            # input channels contiguous), or each of the job's input channels' [n_c, s_co] into
            # buf, whose rows (taps) then go to their packs (2-2.5x faster for 5x5 taps than
            # gathering each tap's output channels).
            lo = min(cig, k * chunk) if by_channel else 0
            hi = min(cig, (k + 1) * chunk) if by_channel else 1
            for ci in range(lo, hi):
                transpose(w, o - bases[k] + ci * s_ci if by_channel else o, s_co,
                          buf if by_channel else out, 0 if by_channel else d0, width, n_c,
                          s_co if by_channel else cig)
                if by_channel:
                    _rows_to_packs(buf, bases, out, d0 - k * cig * width + ci // pair * width
                                   * pair + ci % pair, cig * width, width, pair)
            for ci in range(0 if by_channel else cig):
                for j in range(n_c, width):
                    out[d0 + ci * width + j] = 0
            continue
        if s_co == 1:  # output channels contiguous (conv2d's filters): a run per input channel
            for ci in range(cig):
                _spread(w, o + ci * s_ci, out, d0 + ci // pair * width * pair + ci % pair, pair,
                        n_c, width)
        elif s_co < s_ci:  # PyTorch's transpose filters, fewer taps: output channels fh*fw apart
            for ci in range(cig):
                _gather(w, o + ci * s_ci, s_co, out, d0 + ci // pair * width * pair + ci % pair,
                        pair, n_c, width)
        else:  # PyTorch's conv2d filters: a tap's input channels fh*fw apart
            for j in range(width):
                for p in range(pair):
                    _gather(w, o + j * s_co + p * s_ci, pair * s_ci, out, d0 + j * pair + p,
                            width * pair, cig // pair if j < n_c else 0, cig // pair)
