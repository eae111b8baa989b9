"""The copies beside the kernels: padded inputs, packed filters, layout conversions.

All run as jobs (``X_serial`` over jobs ``first`` to ``last``), spread over threads by
:mod:`.parallel` when large: a serial copy would bound the speed-up of the kernel that follows it.

``pad``: the zero-padded copy of an NHWC input that the tiled, vector and filter-gradient
kernels read. ``out[n, i, j, c] = a[n, i - top, j - left, c]`` where that is inside ``a``, else
0, for ``out`` ``[N, height, width*C]`` (last two axes merged) and ``a`` ``[N, H, W*C]``; ``top``
and ``left`` are non-negative, and ``out`` may also crop ``a``. Job ``j`` writes row ``j`` of
the ``N*height`` rows.

``pad_channels_first``: the same copy from an NCHW input ``a`` ``[N, C, H, W]`` (``left`` in
pixels): the layout conversion of ``data_format="NCHW"`` and the padding in one pass.

``channels_first``: ``out[n, c, p] = a[n, p, c]`` for ``a`` ``[N, P, C]`` (an NHWC result, its
pixels merged) and ``out`` ``[N, C, P]``; job ``j`` converts a block of CONVERT_PIXELS pixels.

``pack``: the outer-product kernel's filters ``out[G, blocks, taps, cig, B]`` (see
:mod:`.outer`), zero past the ``cog`` channels of a group: the weight of tap ``k``, group ``g``,
input channel ``ci``, output channel ``co`` is ``w[bases[k] + ci*s_ci + g*s_g + co*s_co]``, with
``meta = [cig, cog, groups, blocks, B, s_ci, s_g, s_co]``. Job ``j`` writes one (group, block,
tap).
"""


from .._jit import kernel
from . import simd

#: Pixels per job of ``channels_first``: the job's reads (all channels of these pixels) stay in L2
#: and each of its writes is a run of this many elements.
CONVERT_PIXELS = 64


@kernel()
def pad_serial(a, out, top, left, first, last):
    n_ch_w = a.shape[2]  # W*C
    height = a.shape[1]
    row_len = out.shape[2]
    for job in range(first, last):
        n = job // out.shape[1]
        i = job % out.shape[1]
        dst = out[n, i]
        r = i - top
        if r < 0 or r >= height:
            for k in range(row_len):
                dst[k] = 0
            continue
        src = a[n, r]
        lo = min(row_len, left)  # ``left`` counts elements (pixels x channels)
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
    if simd.CHECK_BOUNDS:
        span = simd.VECTOR_BYTES // src.itemsize - 1
        if not (0 <= s0 and s0 + span * (s_step + 1) < src.shape[0] and 0 <= d0
                and d0 + span * (d_step + 1) < dst.shape[0]):
            raise IndexError("layout conversion: a tile would read or write out of bounds")
    simd.transpose_tile(src, s0, s_step, dst, d0, d_step)


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
        n_px = (hi - lo) // n_ch
        if n_px == 0:
            continue
        # tiles of lanes channels x lanes pixels, then the channels and pixels past them
        c_tiles = n_ch - n_ch % lanes
        q_tiles = n_px - n_px % lanes
        a0 = (n * n_ch * height + r) * width  # a[n, 0, r, 0]
        o0 = job * row_len + lo
        for c in range(0, c_tiles, lanes):
            for q in range(0, q_tiles, lanes):
                _tile(a_flat, a0 + c * height * width + q, height * width, out_flat,
                      o0 + q * n_ch + c, n_ch)
        for c in range(n_ch):
            src = a[n, c, r]
            run = dst[lo + c:]
            for q in range(q_tiles if c < c_tiles else 0, n_px):
                run[q * n_ch] = src[q]



@kernel()
def channels_first_serial(a, out, first, last):
    n_px, n_ch = a.shape[1], a.shape[2]
    lanes = simd.VECTOR_BYTES // a.itemsize
    blocks = -(-n_px // CONVERT_PIXELS)
    a_flat, out_flat = a.reshape(-1), out.reshape(-1)
    c_tiles = n_ch - n_ch % lanes
    for job in range(first, last):
        n = job // blocks
        p0 = job % blocks * CONVERT_PIXELS
        p1 = min(p0 + CONVERT_PIXELS, n_px)
        p_tiles = p0 + (p1 - p0) - (p1 - p0) % lanes
        # tiles of lanes pixels x lanes channels, then the pixels and channels past them
        for p in range(p0, p_tiles, lanes):
            for c in range(0, c_tiles, lanes):
                _tile(a_flat, (n * n_px + p) * n_ch + c, n_ch, out_flat,
                      (n * n_ch + c) * n_px + p, n_px)
        src = a[n]
        for c in range(n_ch):
            dst = out[n, c]
            for p in range(p_tiles if c < c_tiles else p0, p1):
                dst[p] = src[p, c]



@kernel()
def pack_serial(w, bases, meta, out, first, last):
    cig, cog, blocks, width, s_ci, s_g, s_co = (meta[0], meta[1], meta[3], meta[4], meta[5],
                                                 meta[6], meta[7])
    n_taps = bases.shape[0]
    for job in range(first, last):
        k = job % n_taps
        b = job // n_taps % blocks
        g = job // (n_taps * blocks)
        dst = out[job * cig * width:(job + 1) * cig * width]
        for j in range(width):
            co = b * width + j
            if co >= cog:
                for ci in range(cig):
                    dst[ci * width + j] = 0
                continue
            o = bases[k] + g * s_g + co * s_co
            for ci in range(cig):
                dst[ci * width + j] = w[o + ci * s_ci]
